//! True denial through BPF-LSM, where the kernel loads it (`bpf` among the active
//! LSMs and BPF trampolines): `file_open` refuses opens and `bprm_check_security`
//! refuses execs that a `deny` rule matches, with EPERM, before anything happens.
//! The `path_*` hooks (CONFIG_SECURITY_PATH) refuse every other change a `deny` on
//! writes covers: creating a file (open with O_CREAT and mknod reach
//! `path_mknod` before the inode exists), mkdir, links, symlinks and renames into
//! or out of a protected path, unlink, rmdir, truncate(2), chmod and chown.
//! Where these programs cannot load, user space compiles `deny` rules as kills
//! instead and says so (see guard-user's `ebpf::tiers`).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use guard_common::{
    EPERM, EventKind, ExecBody, OpenBody, OpenCall, UnixBody, UnixCall, flags, rules::enforced,
};

use crate::{
    core_read::{self, WALK_TRUNCATED},
    emit::{Draft, current_ids},
    enforce,
    hooks::earlier,
    maps::{PATH_END, PATH_MASK, PATH_SCRATCH, PENDING_UNIX, current_tracked, is_tracked, tracked},
    tamper,
};

type Ptr = *const core::ffi::c_void;

/// Resolves `file`'s path into the path scratch; returns (pointer, its offset in
/// the scratch, length).
#[inline(always)]
fn path_of(file: *const core::ffi::c_void) -> Option<(*const u8, u32, u32)> {
    let pbuf = PATH_SCRATCH.get_ptr_mut(0)?.cast::<u8>();
    enforce::before_walk();
    let walk = core_read::file_path(file, pbuf, PATH_END, guard_common::PATH_DEPTH as u32);
    let start = walk & !WALK_TRUNCATED;
    let at = start & PATH_MASK;
    Some((pbuf.wrapping_add(at as usize), at, PATH_END - start))
}

#[lsm(hook = "file_open")]
pub(crate) fn file_open(ctx: LsmContext) -> i32 {
    // file_open(struct file *file), then the previous hooks' verdict.
    let (file, retval): (*const core::ffi::c_void, i32) = (ctx.arg(0), ctx.arg(1));
    if retval != 0 {
        return earlier(retval);
    }
    let (tgid, _) = current_ids();
    let Some(t) = tracked(tgid) else {
        return 0;
    };
    let is_root = t.flags;
    let Some((path, at, len)) = path_of(file) else {
        return 0;
    };
    let f_flags = u64::from(core_read::file_flags(file));
    if tamper::lsm_file_open(t.session, file, f_flags, path, len) {
        return -EPERM;
    }
    if enforce::deny_open(file, at, len, f_flags, is_root).is_some() {
        -EPERM
    } else {
        0
    }
}

/// A refused exec never reaches sched_process_exec: report it here (no argv yet).
#[inline(always)]
fn report_denied_exec(path: *const u8, len: u32, rule: u16) {
    let (tgid, _) = current_ids();
    let Some(t) = tracked(tgid) else {
        return;
    };
    let by = if enforce::exec_by_identity() {
        flags::BY_IDENTITY
    } else {
        0
    };
    let Some(mut draft) = Draft::begin(EventKind::Exec, by, t.session, t.flags) else {
        return;
    };
    draft.header().rule = ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED;
    let n = len.min(guard_common::PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
    // SAFETY: bounded copy from the path scratch into the event scratch.
    unsafe {
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            draft.payload_ptr::<ExecBody>(0).cast(),
            n,
            path.cast(),
        );
    }
    draft.body(ExecBody {
        start_ns: t.start_ns,
        exe_len: n,
        argv_len: 0,
        confinement: core_read::confinement(core_read::current()),
        cwd_len: 0,
        _reserved: 0,
    });
    draft.submit::<ExecBody>(n);
}

#[lsm(hook = "bprm_check_security")]
pub(crate) fn bprm_check_security(ctx: LsmContext) -> i32 {
    // bprm_check_security(struct linux_binprm *bprm), then the verdict.
    let (bprm, retval): (*const core::ffi::c_void, i32) = (ctx.arg(0), ctx.arg(1));
    if retval != 0 {
        return earlier(retval);
    }
    let Some(is_root) = current_tracked().map(|t| t.flags) else {
        return 0;
    };
    let file = core_read::binprm_file(bprm);
    let Some((path, at, len)) = path_of(file) else {
        return 0;
    };
    let comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]);
    match enforce::deny_exec(file, at, len, &comm, is_root) {
        Some(rule) => {
            report_denied_exec(path, len, rule);
            -EPERM
        }
        None => 0,
    }
}

/// Refuses a change to the entry whose path the walk left in the scratch (at
/// `walk`, ending at PATH_END) when a deny rule on writes covers it, and reports
/// the refusal as a failed open for writing of that path, its `call` naming the
/// change (`None`: the open that reaches this hook reports it itself). With
/// `as_dir`, the path is also looked up with a `/` appended, so that a protected
/// directory itself (`.git/hooks` for `.git/hooks/**`) cannot be renamed.
#[inline(always)]
fn refuse(walk: u32, dentry: Ptr, is_root: u32, as_dir: bool, call: Option<OpenCall>) -> bool {
    let Some(pbuf) = PATH_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let pbuf = pbuf.cast::<u8>();
    let start = walk & !WALK_TRUNCATED;
    let at = start & PATH_MASK;
    let len = PATH_END - start;
    let dentry = core_read::address(dentry);
    let mut rule = enforce::deny_write(dentry, at, len, is_root, false);
    if rule.is_none() && as_dir {
        // SAFETY: PATH_END < the scratch's size; past the path's end is free.
        unsafe { *pbuf.add(PATH_END as usize) = b'/' };
        rule = enforce::deny_write(dentry, at, len + 1, is_root, false);
    }
    let Some(rule) = rule else {
        return false;
    };
    if let Some(call) = call {
        report_change(
            call,
            pbuf.wrapping_add(at as usize),
            len,
            walk & WALK_TRUNCATED != 0,
            rule,
        );
    }
    true
}

/// A change refused by a path hook, as an `Open` record: the path, opened for
/// writing (O_WRONLY), failed with EPERM, `call` saying which change it was.
#[inline(always)]
fn report_change(call: OpenCall, path: *const u8, len: u32, truncated: bool, rule: u16) {
    let (tgid, _) = current_ids();
    let Some(t) = tracked(tgid) else {
        return;
    };
    let Some(mut draft) = Draft::begin(EventKind::Open, 0, t.session, t.flags) else {
        return;
    };
    draft.header().rule = ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED;
    if truncated {
        draft.header().flags |= flags::PATH_TRUNCATED;
    }
    let n = len.min(guard_common::PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
    // SAFETY: bounded copy from the path scratch into the event scratch.
    unsafe {
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            draft.payload_ptr::<OpenBody>(0).cast(),
            n,
            path.cast(),
        );
    }
    draft.body(OpenBody {
        flags: 0o1,
        ret: -i64::from(EPERM),
        call: call as u32,
        mode: 0,
        repeats: 0,
        file_type: 0,
        _reserved: [0; 3],
    });
    draft.submit::<OpenBody>(n);
}

/// The entry `dentry` of directory `dir`: refused?
#[inline(always)]
fn refuse_entry(dir: Ptr, dentry: Ptr, is_root: u32, as_dir: bool, call: Option<OpenCall>) -> bool {
    let Some(pbuf) = PATH_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let walk = core_read::dir_entry_path(
        dir,
        dentry,
        pbuf.cast(),
        PATH_END,
        guard_common::PATH_DEPTH as u32,
    );
    refuse(walk, dentry, is_root, as_dir, call)
}

/// The file at `path` (a kernel `struct path`): refused?
#[inline(always)]
fn refuse_path(path: Ptr, is_root: u32, call: OpenCall) -> bool {
    let Some(pbuf) = PATH_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let walk = core_read::path_of(path, pbuf.cast(), PATH_END, guard_common::PATH_DEPTH as u32);
    refuse(
        walk,
        core_read::path_dentry(path),
        is_root,
        false,
        Some(call),
    )
}

#[inline(always)]
fn verdict(refused: bool) -> i32 {
    if refused { -EPERM } else { 0 }
}

/// The hooks below get the previous BPF-LSM program's verdict as their last
/// argument; a refusal stands.
macro_rules! tracked_or_return {
    ($ctx:expr, $nargs:expr) => {{
        let retval: i32 = $ctx.arg($nargs);
        if retval != 0 {
            return earlier(retval);
        }
        match current_tracked().map(|t| t.flags) {
            Some(is_root) => is_root,
            None => return 0,
        }
    }};
}

/// A change in guard's pin directory (`tamper`): refused whatever the rules say.
#[inline(always)]
fn pin_change(dentry: Ptr) -> bool {
    let (tgid, _) = current_ids();
    match tracked(tgid) {
        Some(t) => tamper::lsm_pin_change(t.session, dentry),
        None => false,
    }
}

/// A program on a `path_*` hook that changes one entry of a directory: refused
/// when the write rules cover it (`refuse_entry` on the hook's first two arguments,
/// `dir` and `dentry`; with `as_dir`, also as a directory), and, with `pinned`, when
/// it is one of guard's pins. `nargs`: the hook's own arguments (the previous
/// program's verdict follows them).
macro_rules! entry_hook {
    ($(#[$doc:meta])* $hook:literal => $name:ident(nargs: $nargs:literal, as_dir: $as_dir:literal,
        pinned: $pinned:literal, call: $call:expr)) => {
        $(#[$doc])*
        #[lsm(hook = $hook)]
        pub(crate) fn $name(ctx: LsmContext) -> i32 {
            let is_root = tracked_or_return!(ctx, $nargs);
            if $pinned && pin_change(ctx.arg(1)) {
                return -EPERM;
            }
            verdict(refuse_entry(ctx.arg(0), ctx.arg(1), is_root, $as_dir, $call))
        }
    };
}

entry_hook! {
    /// Creating a file: open(O_CREAT) (through may_o_create), mknod, mkfifo.
    /// `(const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev)`
    "path_mknod" => path_mknod(nargs: 4, as_dir: false, pinned: false,
        call: None)
}

entry_hook! {
    /// `(const struct path *dir, struct dentry *dentry, umode_t mode)`
    "path_mkdir" => path_mkdir(nargs: 3, as_dir: false, pinned: false,
        call: Some(OpenCall::Mkdir))
}

entry_hook! {
    /// `(const struct path *dir, struct dentry *dentry)`
    "path_rmdir" => path_rmdir(nargs: 2, as_dir: true, pinned: true,
        call: Some(OpenCall::Rmdir))
}

entry_hook! {
    /// `(const struct path *dir, struct dentry *dentry)`
    "path_unlink" => path_unlink(nargs: 2, as_dir: false, pinned: true,
        call: Some(OpenCall::Unlink))
}

entry_hook! {
    /// `(const struct path *dir, struct dentry *dentry, const char *old_name)`
    "path_symlink" => path_symlink(nargs: 3, as_dir: false, pinned: false,
        call: Some(OpenCall::Symlink))
}

/// A hard link: neither a new name in a protected place nor a second name for a
/// protected file (writes through it would not be opens of the protected path).
#[lsm(hook = "path_link")]
pub(crate) fn path_link(ctx: LsmContext) -> i32 {
    // (struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry)
    let is_root = tracked_or_return!(ctx, 3);
    let (old, new_dir, new): (Ptr, Ptr, Ptr) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
    if refuse_entry(new_dir, new, is_root, false, Some(OpenCall::Link)) {
        return -EPERM;
    }
    let Some(pbuf) = PATH_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let walk = core_read::dentry_path_on(
        new_dir,
        old,
        pbuf.cast(),
        PATH_END,
        guard_common::PATH_DEPTH as u32,
    );
    verdict(refuse(walk, old, is_root, false, Some(OpenCall::Link)))
}

/// A rename moves a name out of one place and into another: both are checked,
/// each also as a directory.
#[lsm(hook = "path_rename")]
pub(crate) fn path_rename(ctx: LsmContext) -> i32 {
    // (const struct path *old_dir, struct dentry *old_dentry,
    //  const struct path *new_dir, struct dentry *new_dentry, unsigned int flags)
    let is_root = tracked_or_return!(ctx, 5);
    rename(&ctx, is_root)
}

/// `path_rename` before Linux 5.19, whose hook had no `flags` (Debian 11's 5.10).
/// User space loads whichever the kernel's BTF accepts.
#[lsm(hook = "path_rename")]
pub(crate) fn path_rename_4(ctx: LsmContext) -> i32 {
    let is_root = tracked_or_return!(ctx, 4);
    rename(&ctx, is_root)
}

#[inline(always)]
fn rename(ctx: &LsmContext, is_root: u32) -> i32 {
    if pin_change(ctx.arg(1)) || pin_change(ctx.arg(3)) {
        return -EPERM;
    }
    if refuse_entry(
        ctx.arg(0),
        ctx.arg(1),
        is_root,
        true,
        Some(OpenCall::Rename),
    ) {
        return -EPERM;
    }
    verdict(refuse_entry(
        ctx.arg(2),
        ctx.arg(3),
        is_root,
        true,
        Some(OpenCall::Rename),
    ))
}

/// A program on a `path_*` hook that changes a file in place (its first argument,
/// a `struct path`): refused when the write rules cover it (`refuse_path`).
macro_rules! path_hook {
    ($(#[$doc:meta])* $hook:literal => $name:ident(nargs: $nargs:literal, call: $call:expr)) => {
        $(#[$doc])*
        #[lsm(hook = $hook)]
        pub(crate) fn $name(ctx: LsmContext) -> i32 {
            let is_root = tracked_or_return!(ctx, $nargs);
            verdict(refuse_path(ctx.arg(0), is_root, $call))
        }
    };
}

path_hook! {
    /// truncate(2) and ftruncate(2); an O_TRUNC open is refused at file_open.
    /// `(const struct path *path)`
    "path_truncate" => path_truncate(nargs: 1, call: OpenCall::Truncate)
}

path_hook! {
    /// `(const struct path *path, umode_t mode)`
    "path_chmod" => path_chmod(nargs: 2, call: OpenCall::Chmod)
}

path_hook! {
    /// `(const struct path *path, kuid_t uid, kgid_t gid)`
    "path_chown" => path_chown(nargs: 3, call: OpenCall::Chown)
}

/// Refuses reaching the Unix socket `other` (a `struct sock`) when a `deny` file rule
/// on writes covers the file it is bound to. The call's exit (net.rs) reports a
/// `connect` or a send with an address its entry noted; any other send (`write` or
/// `send` on a connected socket) is reported here. A socket with no file (abstract, unnamed)
/// is not judged here.
#[inline(always)]
fn refuse_unix(other: Ptr) -> i32 {
    let (tgid, tid) = current_ids();
    let Some(t) = tracked(tgid) else {
        return 0;
    };
    let path = core_read::unix_path(other);
    if path.is_null() {
        return 0;
    }
    let Some(pbuf) = PATH_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let pbuf = pbuf.cast::<u8>();
    let walk = core_read::path_of(path, pbuf, PATH_END, guard_common::PATH_DEPTH as u32);
    let start = walk & !WALK_TRUNCATED;
    let len = PATH_END - start;
    let Some(rule) = enforce::deny_write(
        core_read::path_dentry(path),
        start & PATH_MASK,
        len,
        t.flags,
        true,
    ) else {
        return 0;
    };
    let denied = ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED;
    match PENDING_UNIX.get_ptr_mut(tid) {
        // SAFETY: this thread's entry, noted at the call's entry.
        Some(p) => unsafe { (*p).rule = u32::from(denied) },
        None => {
            if let Some(mut draft) = Draft::begin(EventKind::Unix, 0, t.session, t.flags) {
                draft.header().rule = denied;
                if walk & WALK_TRUNCATED != 0 {
                    draft.header().flags |= flags::PATH_TRUNCATED;
                }
                let n = draft.path_payload::<UnixBody>(pbuf, start, PATH_END);
                draft.body(UnixBody {
                    ret: -i64::from(EPERM),
                    call: UnixCall::Send as u32,
                    sock_type: core_read::sock_type(other) as u16,
                    _reserved: 0,
                    peer_pid: 0,
                    peer_uid: u32::MAX,
                });
                draft.submit::<UnixBody>(n);
            }
        }
    }
    -EPERM
}

#[lsm(hook = "unix_stream_connect")]
pub(crate) fn unix_stream_connect(ctx: LsmContext) -> i32 {
    // unix_stream_connect(struct sock *sock, struct sock *other, struct sock *newsk),
    // then the previous hooks' verdict.
    let (other, retval): (Ptr, i32) = (ctx.arg(1), ctx.arg(3));
    if retval != 0 {
        return earlier(retval);
    }
    // A constant on the refusing path: 6.1's verifier loses the range of a verdict
    // merged from two callees (R0 up to i32::MAX at exit) and refuses the program.
    if refuse_spawner(other) {
        return -EPERM;
    }
    refuse_unix(other)
}

/// Whether to refuse a session process's connect to a known spawner outside every
/// session (`SPAWNERS`): where the policy refuses delegation; `other` is the listening
/// socket, whose credentials are the listener's. The call's exit reports it.
#[inline(always)]
fn refuse_spawner(other: Ptr) -> bool {
    let (tgid, tid) = current_ids();
    if !is_tracked(tgid) {
        return false;
    }
    let (peer, uid) = core_read::sock_peer(other);
    // SAFETY: presence check and a read-only copy of the map value.
    if peer == 0 || is_tracked(peer) {
        return false;
    }
    // SAFETY: read-only copy of the map value.
    let Some(verdict) = (unsafe { crate::maps::SPAWNERS.get(peer) }).copied() else {
        return false;
    };
    if verdict & u32::from(enforced::DENIED) == 0 {
        return false;
    }
    if let Some(p) = PENDING_UNIX.get_ptr_mut(tid) {
        // SAFETY: this thread's entry, noted at the call's entry.
        unsafe {
            (*p).rule = verdict;
            (*p).peer_pid = peer;
            (*p).peer_uid = uid;
        }
    }
    true
}

#[lsm(hook = "unix_may_send")]
pub(crate) fn unix_may_send(ctx: LsmContext) -> i32 {
    // unix_may_send(struct socket *sock, struct socket *other), then the verdict.
    let (other, retval): (Ptr, i32) = (ctx.arg(1), ctx.arg(2));
    if retval != 0 {
        return earlier(retval);
    }
    refuse_unix(core_read::socket_sock(other))
}
