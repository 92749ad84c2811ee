//! Portable kernel reads: thin Rust faces over the CO-RE accessors in `shim.c`.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_current_task, generated::bpf_probe_read_kernel};

/// Set in a walk result when the path was cut short (deeper or longer than fits).
pub(crate) const WALK_TRUNCATED: u32 = 0x8000_0000;

/// The address `p` holds, as a plain number to the verifier. A pointer the kernel
/// hands a BPF-LSM hook is a typed (BTF) pointer, which no global function takes
/// (their arguments are numbers); read back through the helper it is a number.
#[inline(always)]
pub(crate) fn address(p: *const c_void) -> *const c_void {
    let mut v = 0u64;
    // SAFETY: copies the 8 bytes of one local into another.
    unsafe { bpf_probe_read_kernel((&raw mut v).cast(), 8, (&raw const p).cast()) };
    v as *const c_void
}

/// Opaque kernel `struct task_struct`.
pub(crate) type Task = c_void;

// The CO-RE accessors of `shim.c`, each wrapped below by a safe function.
unsafe extern "C" {
    fn guard_task_pid(t: *const Task) -> u32;
    fn guard_task_leader_comm(t: *const Task, dst: *mut u8);
    fn guard_task_tgid(t: *const Task) -> u32;
    fn guard_task_start_ns(t: *const Task) -> u64;
    fn guard_task_ppid(t: *const Task) -> u32;
    fn guard_task_exit_code(t: *const Task) -> u32;
    fn guard_task_live_threads(t: *const Task) -> i32;
    fn guard_task_seccomp_mode(t: *const Task) -> u32;
    fn guard_task_no_new_privs(t: *const Task) -> u32;
    fn guard_task_net_ns(t: *const Task) -> u32;
    fn guard_task_mnt_ns(t: *const Task) -> u32;
    fn guard_task_user_ns(t: *const Task) -> u32;
    fn guard_task_arg_start(t: *const Task) -> u64;
    fn guard_task_arg_end(t: *const Task) -> u64;
    fn guard_task_env_start(t: *const Task) -> u64;
    fn guard_task_env_end(t: *const Task) -> u64;
    fn guard_binprm_file(b: *const c_void) -> *const c_void;
    fn guard_binprm_interpreted(b: *const c_void) -> u32;
    fn guard_task_fd_file(t: *const Task, fd: u32) -> *const c_void;
    #[cfg(not(feature = "compat"))]
    fn guard_syscall_args(a: *mut u64);
    #[cfg(not(feature = "compat"))]
    fn guard_open_call(nr: i32) -> i32;
    #[cfg(not(feature = "compat"))]
    fn guard_current_start_ns() -> u64;
    #[cfg(not(feature = "compat"))]
    fn guard_current_new_fd_file(fd: u32) -> *const c_void;
    fn guard_file_path(f: *const c_void, buf: *mut u8, end: u32, depth: u32) -> u32;
    fn guard_task_cwd_path(t: *const Task, buf: *mut u8, end: u32, depth: u32) -> u32;
    fn guard_dentry_name(d: *const c_void, dst: *mut u8, max: u32) -> u32;
    fn guard_file_dentry(f: *const c_void) -> *const c_void;
    fn guard_file_fileless(f: *const c_void) -> u32;
    fn guard_file_size(f: *const c_void) -> u64;
    fn guard_reverse(dst: *mut u8, src: *const u8, len: u32);
    fn guard_path_of(p: *const c_void, buf: *mut u8, end: u32, depth: u32) -> u32;
    fn guard_dentry_path_on(
        on: *const c_void,
        d: *const c_void,
        buf: *mut u8,
        end: u32,
        depth: u32,
    ) -> u32;
    fn guard_dir_entry_path(
        dir: *const c_void,
        d: *const c_void,
        buf: *mut u8,
        end: u32,
        depth: u32,
    ) -> u32;
    fn guard_file_flags(f: *const c_void) -> u32;
    fn guard_path_dentry(p: *const c_void) -> *const c_void;
    fn guard_file_proc_pid(f: *const c_void) -> u32;
    fn guard_file_target_pid(f: *const c_void) -> u32;
    fn guard_dentry_short_name(d: *const c_void) -> u64;
    fn guard_dentry_under(d: *const c_void, dev: u32, ino: u64) -> u32;
    fn guard_mount_dev(m: *const c_void) -> u32;
    fn guard_dentry_ident(d: *const c_void, ino: *mut u64) -> u32;
    fn guard_dentry_up(d: *const c_void) -> *const c_void;
    fn guard_dentry_links(d: *const c_void) -> u32;
    fn guard_dentry_type(d: *const c_void) -> u32;
    fn guard_file_unix_sock(f: *const c_void) -> *const c_void;
    fn guard_sock_type(sk: *const c_void) -> u32;
    fn guard_unix_peer(sk: *const c_void) -> *const c_void;
    fn guard_sock_peer_pid(sk: *const c_void) -> u32;
    fn guard_sock_peer_uid(sk: *const c_void) -> u32;
    fn guard_unix_path(sk: *const c_void) -> *const c_void;
    fn guard_socket_sock(s: *const c_void) -> *const c_void;
    fn guard_file_repeat_key(f: *const c_void, k: *mut FileName);
}

pub(crate) fn current() -> *const Task {
    // SAFETY: the helper only returns the current task pointer.
    unsafe { bpf_get_current_task() as *const Task }
}

// SAFETY (all below): the accessors read through bpf_probe_read_kernel, which
// tolerates any pointer value; a bad pointer yields zeroes, never a fault.
/// The thread group leader's comm (the program's name) into `dst` (16 bytes).
pub(crate) fn leader_comm(t: *const Task, dst: &mut [u8; 16]) {
    unsafe { guard_task_leader_comm(t, dst.as_mut_ptr()) }
}
pub(crate) fn pid(t: *const Task) -> u32 {
    unsafe { guard_task_pid(t) }
}
pub(crate) fn tgid(t: *const Task) -> u32 {
    unsafe { guard_task_tgid(t) }
}
pub(crate) fn start_ns(t: *const Task) -> u64 {
    unsafe { guard_task_start_ns(t) }
}
pub(crate) fn ppid(t: *const Task) -> u32 {
    unsafe { guard_task_ppid(t) }
}
pub(crate) fn exit_code(t: *const Task) -> u32 {
    unsafe { guard_task_exit_code(t) }
}
pub(crate) fn live_threads(t: *const Task) -> i32 {
    unsafe { guard_task_live_threads(t) }
}
/// What confines `t`, as the exec record carries it.
pub(crate) fn confinement(t: *const Task) -> guard_common::Confinement {
    unsafe {
        guard_common::Confinement {
            net_ns: guard_task_net_ns(t),
            mnt_ns: guard_task_mnt_ns(t),
            user_ns: guard_task_user_ns(t),
            seccomp: guard_task_seccomp_mode(t) as u8,
            no_new_privs: guard_task_no_new_privs(t) as u8,
            _reserved: 0,
        }
    }
}
/// The inode number of `t`'s network namespace (as `/proc/PID/ns/net` names it).
pub(crate) fn net_ns(t: *const Task) -> u32 {
    unsafe { guard_task_net_ns(t) }
}
pub(crate) fn arg_span(t: *const Task) -> (u64, u64) {
    unsafe { (guard_task_arg_start(t), guard_task_arg_end(t)) }
}
pub(crate) fn env_span(t: *const Task) -> (u64, u64) {
    unsafe { (guard_task_env_start(t), guard_task_env_end(t)) }
}
/// Whether an interpreter runs the exec'd file (`#!` script, binfmt_misc).
pub(crate) fn binprm_interpreted(bprm: *const c_void) -> bool {
    unsafe { guard_binprm_interpreted(bprm) != 0 }
}
pub(crate) fn binprm_file(bprm: *const c_void) -> *const c_void {
    unsafe { guard_binprm_file(bprm) }
}
pub(crate) fn fd_file(t: *const Task, fd: u32) -> *const c_void {
    unsafe { guard_task_fd_file(t, fd) }
}
/// The first four arguments of the current task's system call, read from the
/// registers it entered the call with (shim.c).
#[cfg(not(feature = "compat"))]
pub(crate) fn syscall_args() -> [u64; 4] {
    let mut a = [0u64; 4];
    unsafe { guard_syscall_args(a.as_mut_ptr()) };
    a
}
/// The [`guard_common::OpenCall`] number of system call `nr` on this architecture,
/// or a negative number for another call.
#[cfg(not(feature = "compat"))]
pub(crate) fn open_call(nr: i32) -> i32 {
    unsafe { guard_open_call(nr) }
}
/// [`fd_file`] of a descriptor the current task's system call returned.
pub(crate) fn new_fd_file(fd: u32) -> *const c_void {
    #[cfg(feature = "compat")]
    return fd_file(current(), fd);
    #[cfg(not(feature = "compat"))]
    unsafe {
        guard_current_new_fd_file(fd)
    }
}
/// [`start_ns`] of the current task.
pub(crate) fn current_start_ns() -> u64 {
    #[cfg(feature = "compat")]
    return start_ns(current());
    #[cfg(not(feature = "compat"))]
    unsafe {
        guard_current_start_ns()
    }
}

// The compat build's path walk (shim.c `guard_path_walk`): the shim keeps its state
// in this CPU's [`WALK`](crate::maps::WALK) and runs its steps as chunks of this
// global function (each.rs), which the verifier checks once per program. A step
// writes into the path scratch: every walk's `buf` below must be
// [`PATH_SCRATCH`](crate::maps::PATH_SCRATCH), as it is.
#[cfg(feature = "compat")]
unsafe extern "C" {
    fn guard_walk_step(s: *mut crate::maps::WalkState, buf: *mut u8) -> i64;
}

/// Steps `base..base + 8` (below `n`) of the compat walk; non-zero when it is over.
/// The 8 is shim.c's `WALK_CHUNK`, by which its caller steps `base`: change both.
#[cfg(feature = "compat")]
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn guard_each_walk(base: u32, n: u32) -> i64 {
    crate::each::chunk::<8>(base, n, walk_step)
}

#[cfg(feature = "compat")]
#[inline(always)]
extern "C" fn walk_step(_index: u32, _ctx: *mut c_void) -> i64 {
    let (Some(s), Some(buf)) = (
        crate::maps::WALK.get_ptr_mut(0),
        crate::maps::PATH_SCRATCH.get_ptr_mut(0),
    ) else {
        return 1;
    };
    // SAFETY: this CPU's walk state and path scratch; the step masks its offsets.
    unsafe { guard_walk_step(s, buf.cast()) }
}

/// Writes the absolute path of `file` so that it ends just before `buf[end]`;
/// returns the start offset, with [`WALK_TRUNCATED`] set when it was cut.
pub(crate) fn file_path(file: *const c_void, buf: *mut u8, end: u32, depth: u32) -> u32 {
    unsafe { guard_file_path(file, buf, end, depth) }
}

/// Like [`file_path`] for the task's working directory.
pub(crate) fn cwd_path(t: *const Task, buf: *mut u8, end: u32, depth: u32) -> u32 {
    unsafe { guard_task_cwd_path(t, buf, end, depth) }
}

/// Copies the name of `dentry` to `dst` (room for 256 bytes), cut to `max` bytes
/// (253 at most); returns its length. The cut is made in the shim, where the
/// verifier of older kernels can follow it (see shim.c).
pub(crate) fn dentry_name(dentry: *const c_void, dst: *mut u8, max: u32) -> u32 {
    unsafe { guard_dentry_name(dentry, dst, max) }
}

/// Whether `file` has no name in the file system: 1 a pseudo file (a memfd), 2 a
/// file with no links left (deleted), 0 a named file.
pub(crate) fn file_fileless(file: *const c_void) -> u32 {
    // SAFETY: reads through the helpers, which tolerate any pointer.
    unsafe { guard_file_fileless(file) }
}

/// The size in bytes of `file`.
pub(crate) fn file_size(file: *const c_void) -> u64 {
    // SAFETY: reads through the helpers, which tolerate any pointer.
    unsafe { guard_file_size(file) }
}

/// The dentry `file` was opened at.
pub(crate) fn file_dentry(file: *const c_void) -> *const c_void {
    unsafe { guard_file_dentry(file) }
}

/// Like [`file_path`] for a kernel `struct path`.
pub(crate) fn path_of(path: *const c_void, buf: *mut u8, end: u32, depth: u32) -> u32 {
    unsafe { guard_path_of(path, buf, end, depth) }
}

/// Like [`file_path`] for the entry `dentry` of directory `dir` (which may not exist
/// yet: the path_* hooks run before a create).
pub(crate) fn dir_entry_path(
    dir: *const c_void,
    dentry: *const c_void,
    buf: *mut u8,
    end: u32,
    depth: u32,
) -> u32 {
    unsafe { guard_dir_entry_path(dir, dentry, buf, end, depth) }
}

/// Writes `src[..len]` reversed to `dst` (both with room for 256 bytes, len <= 253).
pub(crate) fn reverse(dst: *mut u8, src: *const u8, len: u32) {
    unsafe { guard_reverse(dst, src, len) }
}

/// `file->f_flags`: the flags the file was opened with.
pub(crate) fn file_flags(file: *const c_void) -> u32 {
    unsafe { guard_file_flags(file) }
}

/// Like [`file_path`] for `dentry` on the mount of the path `on`.
pub(crate) fn dentry_path_on(
    on: *const c_void,
    dentry: *const c_void,
    buf: *mut u8,
    end: u32,
    depth: u32,
) -> u32 {
    unsafe { guard_dentry_path_on(on, dentry, buf, end, depth) }
}

/// The dentry of a kernel `struct path`.
pub(crate) fn path_dentry(path: *const c_void) -> *const c_void {
    unsafe { guard_path_dentry(path) }
}

/// Set in [`file_proc_pid`]'s result when the file is a directory.
pub(crate) const PROC_DIR: u32 = 0x8000_0000;

/// For a file under /proc/<pid>/: that pid (initial namespace; a thread's id for
/// task/<tid>/ entries), with [`PROC_DIR`] set for directories; 0 otherwise.
pub(crate) fn file_proc_pid(file: *const c_void) -> u32 {
    unsafe { guard_file_proc_pid(file) }
}

/// The pid a pidfd or a /proc/<pid> directory descriptor refers to; 0 otherwise.
pub(crate) fn file_target_pid(file: *const c_void) -> u32 {
    unsafe { guard_file_target_pid(file) }
}

/// A dentry's name in the low bytes of a u64 when 7 bytes or shorter; else 0.
pub(crate) fn dentry_short_name(dentry: *const c_void) -> u64 {
    unsafe { guard_dentry_short_name(dentry) }
}

/// Whether `dentry` is the directory (dev, ino) or within 4 levels below it.
pub(crate) fn dentry_under(dentry: *const c_void, dev: u32, ino: u64) -> bool {
    unsafe { guard_dentry_under(dentry, dev, ino) != 0 }
}

/// The kernel device number of the file system a `struct vfsmount` shows.
pub(crate) fn mount_dev(mnt: *const c_void) -> u32 {
    unsafe { guard_mount_dev(mnt) }
}

/// The (kernel device number, inode number) of `dentry`'s inode; (0, 0) when it
/// has none.
pub(crate) fn dentry_ident(dentry: *const c_void) -> (u32, u64) {
    let mut ino = 0u64;
    let dev = unsafe { guard_dentry_ident(dentry, &raw mut ino) };
    (dev, ino)
}

/// The link count of `dentry`'s inode when it is a regular file, else 0.
pub(crate) fn dentry_links(dentry: *const c_void) -> u32 {
    unsafe { guard_dentry_links(dentry) }
}

/// The file type of `dentry`'s inode (`S_IFMT` bits shifted down: [`TYPE_DIR`],
/// [`TYPE_REG`], …), or 0 when it has none.
pub(crate) fn dentry_type(dentry: *const c_void) -> u32 {
    unsafe { guard_dentry_type(dentry) }
}

/// [`dentry_type`] of a directory.
pub(crate) const TYPE_DIR: u32 = 0o04;

/// [`dentry_type`] of a regular file.
pub(crate) const TYPE_REG: u32 = 0o10;

/// `dentry`'s parent, or null at the root of its file system.
pub(crate) fn dentry_up(dentry: *const c_void) -> *const c_void {
    unsafe { guard_dentry_up(dentry) }
}

/// The `struct sock` behind `file` when it is an `AF_UNIX` socket, else null.
pub(crate) fn file_unix_sock(file: *const c_void) -> *const c_void {
    unsafe { guard_file_unix_sock(file) }
}

/// `sk->sk_type`: `SOCK_STREAM` 1, `SOCK_DGRAM` 2, `SOCK_SEQPACKET` 5.
pub(crate) fn sock_type(sk: *const c_void) -> u32 {
    unsafe { guard_sock_type(sk) }
}

/// The socket a connected `AF_UNIX` socket `sk` is connected to, or null.
pub(crate) fn unix_peer(sk: *const c_void) -> *const c_void {
    unsafe { guard_unix_peer(sk) }
}
/// The pid and effective uid of the process on the other side of a connected
/// stream socket (`SO_PEERCRED`): the listener, for a client; (0, u32::MAX) when
/// unknown.
pub(crate) fn sock_peer(sk: *const c_void) -> (u32, u32) {
    unsafe { (guard_sock_peer_pid(sk), guard_sock_peer_uid(sk)) }
}

/// The `struct path` of the socket file an `AF_UNIX` socket is bound to (a kernel
/// pointer, for [`path_of`]), or null (abstract or unnamed).
pub(crate) fn unix_path(sk: *const c_void) -> *const c_void {
    unsafe { guard_unix_path(sk) }
}

/// `sock->sk` of a `struct socket`.
pub(crate) fn socket_sock(sock: *const c_void) -> *const c_void {
    unsafe { guard_socket_sock(sock) }
}

/// See `struct repeat_key` in shim.c.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FileName {
    pub dentry: u64,
    pub mnt: u64,
    pub parent: u64,
    pub name: u64,
    pub ino: u64,
}

/// What names `file` where it was opened: its dentry and mount, the dentry's
/// parent, name hash and length, and inode number (`dentry` 0: unreadable).
pub(crate) fn file_name(file: *const c_void) -> FileName {
    let mut k = FileName::default();
    unsafe { guard_file_repeat_key(file, &raw mut k) };
    k
}
