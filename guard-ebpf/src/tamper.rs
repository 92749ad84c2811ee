//! Self-protection: processes of a session may not signal guard's daemon, trace it,
//! read or write its memory or its files under /proc, open or change its pins, or
//! use bpf(2) and perf_event_open(2) at all.
//!
//! Where BPF-LSM runs, the hooks below refuse the attempt with EPERM before it
//! happens (`task_kill`, `ptrace_access_check`, `bpf`, `perf_event_open`,
//! `sb_umount`; opens and pin changes in lsm.rs's `file_open` and `path_*`). Where it
//! does not, the syscall tracepoints kill the offender: the signal is acted on when
//! the system call returns, so the call itself completes (a signal sent to guard has
//! been sent), except an open, which the kill at its exit stops before the process
//! can read what it opened. User space attaches the tracepoints of a group only when
//! the BPF-LSM hook of that group is missing. Every attempt is a `Tamper` record.
//!
//! Every hook looks up `TRACKED` first: a process outside every session pays that
//! one lookup and nothing more.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_send_signal},
    macros::{lsm, tracepoint},
    programs::{LsmContext, TracePointContext},
};
use guard_common::{
    EPERM, EventKind, O_PATH, SIGKILL, TamperBody, Tracked, counter, guard_pin, rules::enforced,
    tamper as op,
};

use crate::{
    core_read,
    emit::Draft,
    maps::{GUARD_PIDS, GUARD_PIN, count, current_tracked},
};

const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;
/// `PTRACE_MODE_NOAUDIT`: the caller only asks (`/proc/<pid>/stat` hides fields it
/// may not see): refused, but not reported, or every `ps` would be.
const PTRACE_MODE_NOAUDIT: u32 = 0x04;
const O_ACCMODE: u64 = 0o3;

/// The names under /proc/<guard>/ a tracked process may open for reading: what
/// `ps`, `top` and `pgrep` read (procps 4's `pgrep` reads every process's
/// `cgroup`: Copilot CLI runs `pgrep -P` at start-up), nothing `ps` would not show.
const PS_FILES: [u64; 6] = [
    u64::from_le_bytes(*b"cgroup\0\0"),
    u64::from_le_bytes(*b"stat\0\0\0\0"),
    u64::from_le_bytes(*b"status\0\0"),
    u64::from_le_bytes(*b"statm\0\0\0"),
    u64::from_le_bytes(*b"cmdline\0"),
    u64::from_le_bytes(*b"comm\0\0\0\0"),
];

/// guard's tgid when `pid` is one of its daemon's threads.
#[inline(always)]
fn guard(pid: u32) -> Option<u32> {
    if pid == 0 {
        return None;
    }
    // SAFETY: read-only copy of the map value.
    unsafe { GUARD_PIDS.get(pid) }.copied()
}

/// Writes the `Tamper` record; `path` is a kernel buffer (the path scratch).
#[inline(always)]
fn report(session: u64, body: TamperBody, done: u16, path: Option<(*const u8, u32)>) {
    count(counter::TAMPER);
    // The role bits of the record come from the offender's entry (a rare path: one
    // more lookup costs nothing that matters).
    let who = current_tracked().map_or(0, |t| t.flags);
    let Some(mut draft) = Draft::begin(EventKind::Tamper, 0, session, who) else {
        return;
    };
    draft.header().rule = done;
    let mut n = 0;
    if let Some((path, len)) = path {
        n = len.min(guard_common::PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
        // SAFETY: bounded copy from the path scratch into the event scratch.
        unsafe {
            let _ =
                bpf_probe_read_kernel(draft.payload_ptr::<TamperBody>(0).cast(), n, path.cast());
        }
    }
    draft.body(body);
    draft.submit::<TamperBody>(n);
}

/// Kills the current process; the `rule` bits of the record (`KILLED` when the
/// signal was queued).
#[inline(always)]
fn kill() -> u16 {
    // SAFETY: signals the current task's process; acted on at return to user mode.
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        enforced::KILLED
    } else {
        0
    }
}

#[inline(always)]
fn body(op: u32, syscall: i32, target: u32, arg: u64) -> TamperBody {
    TamperBody {
        op,
        syscall,
        target,
        _reserved: 0,
        arg,
    }
}

/// The pin directory's (device, inode); inode 0 when user space set none.
#[inline(always)]
fn pin_dir() -> (u32, u64) {
    let dev = GUARD_PIN.get(guard_pin::DEV).copied().unwrap_or(0);
    let ino = GUARD_PIN.get(guard_pin::INO).copied().unwrap_or(0);
    (dev as u32, ino)
}

/// Whether `dentry` is guard's pin directory or inside it.
#[inline(always)]
fn in_pins(dentry: *const core::ffi::c_void) -> bool {
    let (dev, ino) = pin_dir();
    ino != 0 && core_read::dentry_under(dentry, dev, ino)
}

/// What an open of `file` with `open_flags` attempts against guard: (op, target
/// pid), or `None` when it is not guard's (or is a read `ps` makes).
#[inline(always)]
pub(crate) fn guarded_file(file: *const core::ffi::c_void, open_flags: u64) -> Option<(u32, u32)> {
    let dentry = core_read::file_dentry(file);
    if in_pins(dentry) {
        return Some((op::PIN_OPEN, 0));
    }
    let owner = core_read::file_proc_pid(file);
    let pid = owner & !core_read::PROC_DIR;
    guard(pid)?;
    if open_flags & O_PATH != 0 {
        return None;
    }
    let read_only = open_flags & O_ACCMODE == 0;
    if read_only
        && (owner & core_read::PROC_DIR != 0
            || PS_FILES.contains(&core_read::dentry_short_name(dentry)))
    {
        return None;
    }
    Some((op::PROC_OPEN, pid))
}

/// lsm.rs's `file_open`: refuses a tracked process's open of guard's files.
#[inline(always)]
pub(crate) fn lsm_file_open(
    session: u64,
    file: *const core::ffi::c_void,
    f_flags: u64,
    path: *const u8,
    len: u32,
) -> bool {
    let Some((what, target)) = guarded_file(file, f_flags) else {
        return false;
    };
    report(
        session,
        body(what, -1, target, f_flags),
        enforced::DENIED,
        Some((path, len)),
    );
    true
}

/// The open tracepoints' exit (file.rs): kills a tracked process that opened
/// guard's files, before the open returns to it. True when it did.
#[inline(always)]
pub(crate) fn opened(
    session: u64,
    syscall: i32,
    file: *const core::ffi::c_void,
    open_flags: u64,
    path: *const u8,
    len: u32,
) -> bool {
    let Some((what, target)) = guarded_file(file, open_flags) else {
        return false;
    };
    let done = kill();
    report(
        session,
        body(what, syscall, target, open_flags),
        done,
        Some((path, len)),
    );
    true
}

/// lsm.rs's `path_unlink`, `path_rmdir` and `path_rename`: a change in guard's pin
/// directory by a tracked process is refused.
#[inline(always)]
pub(crate) fn lsm_pin_change(session: u64, dentry: *const core::ffi::c_void) -> bool {
    if !in_pins(dentry) {
        return false;
    }
    report(
        session,
        body(op::PIN_CHANGE, -1, 0, 0),
        enforced::DENIED,
        None,
    );
    true
}

/// A thread created by guard's daemon counts as guard (the fork hook calls this for
/// untracked parents only).
#[inline(always)]
pub(crate) fn thread_born(parent_tgid: u32, child_pid: u32, child_tgid: u32) {
    if child_pid != child_tgid && guard(parent_tgid).is_some() {
        let _ = GUARD_PIDS.insert(child_pid, parent_tgid, 0);
    }
}

/// A thread of guard's daemon exited (the exit hook calls this for untracked
/// processes only).
#[inline(always)]
pub(crate) fn thread_gone(tid: u32) {
    if guard(tid).is_some() {
        let _ = GUARD_PIDS.remove(tid);
    }
}

// ---- BPF-LSM: refuse ----

/// The previous BPF-LSM program's verdict is the hook's last argument: a refusal
/// stands; else the tracked entry of the current process, or allow.
macro_rules! tracked_or_return {
    ($ctx:expr, $nargs:expr) => {{
        let retval: i32 = $ctx.arg($nargs);
        if retval != 0 {
            return crate::hooks::earlier(retval);
        }
        match current_tracked() {
            Some(t) => t,
            None => return 0,
        }
    }};
}

/// A signal from a tracked process to guard (kill, tkill, tgkill, sigqueue,
/// pidfd_send_signal; `kill(-1)` reaches here once per target).
#[lsm(hook = "task_kill")]
pub(crate) fn task_kill(ctx: LsmContext) -> i32 {
    // (struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred)
    let t = tracked_or_return!(ctx, 4);
    let sig: i32 = ctx.arg(2);
    let target: *const core_read::Task = ctx.arg(0);
    let tgid = core_read::tgid(target);
    if sig == 0 || guard(tgid).is_none() {
        return 0;
    }
    report(
        t.session,
        body(op::SIGNAL, -1, tgid, sig as u64),
        enforced::DENIED,
        None,
    );
    -EPERM
}

/// Every access the kernel checks with ptrace rules: ptrace attach and seize,
/// process_vm_readv/writev, /proc/<guard>/{mem,environ,maps,…} (also refused at
/// `file_open`), the /proc/<guard>/fd/* and exe/cwd/root links, pidfd_getfd, kcmp.
#[lsm(hook = "ptrace_access_check")]
pub(crate) fn ptrace_access_check(ctx: LsmContext) -> i32 {
    // (struct task_struct *child, unsigned int mode)
    let t = tracked_or_return!(ctx, 2);
    let child: *const core_read::Task = ctx.arg(0);
    let tgid = core_read::tgid(child);
    if guard(tgid).is_none() {
        return 0;
    }
    let mode: u32 = ctx.arg(1);
    if mode & PTRACE_MODE_NOAUDIT == 0 {
        report(
            t.session,
            body(op::PTRACE_ACCESS, -1, tgid, u64::from(mode)),
            enforced::DENIED,
            None,
        );
    }
    -EPERM
}

/// bpf(2), any command: a session has no business there (listing, detaching or
/// getting guard's programs, maps and links; loading its own).
#[lsm(hook = "bpf")]
pub(crate) fn bpf(ctx: LsmContext) -> i32 {
    // (int cmd, union bpf_attr *attr, unsigned int size), then the verdict (6.1 to
    // 6.15). Kernels from 6.16 pass a `bool kernel` fourth: at index 3 it reads 0 or
    // 1, never a refusal, so only a negative value is taken as one.
    let retval: i32 = ctx.arg(3);
    if retval < 0 {
        return crate::hooks::earlier(retval);
    }
    let Some(t) = current_tracked() else { return 0 };
    let cmd: u32 = ctx.arg(0);
    report(
        t.session,
        body(op::BPF, -1, 0, u64::from(cmd)),
        enforced::DENIED,
        None,
    );
    -EPERM
}

/// perf_event_open(2), up to 6.10: `(struct perf_event_attr *attr, int type)`.
#[lsm(hook = "perf_event_open")]
pub(crate) fn perf_event_open(ctx: LsmContext) -> i32 {
    let t = tracked_or_return!(ctx, 2);
    perf_refused(&t)
}

/// perf_event_open(2) from 6.11, whose hook lost its `attr` argument: `(int type)`.
/// User space loads whichever the kernel's BTF accepts.
#[lsm(hook = "perf_event_open")]
pub(crate) fn perf_event_open_1(ctx: LsmContext) -> i32 {
    let t = tracked_or_return!(ctx, 1);
    perf_refused(&t)
}

#[inline(always)]
fn perf_refused(t: &Tracked) -> i32 {
    report(
        t.session,
        body(op::PERF_EVENT_OPEN, -1, 0, 0),
        enforced::DENIED,
        None,
    );
    -EPERM
}

/// An I/O signal (SIGIO, or what `F_SETSIG` chose) on its way to guard because a
/// file's owner was set to it (`fcntl(F_SETOWN)`). guard never asks for these: all
/// are refused, whoever triggers them (often an interrupt, with no session at hand);
/// reported when the current process is tracked.
#[lsm(hook = "file_send_sigiotask")]
pub(crate) fn file_send_sigiotask(ctx: LsmContext) -> i32 {
    // (struct task_struct *tsk, struct fown_struct *fown, int sig)
    let retval: i32 = ctx.arg(3);
    if retval != 0 {
        return crate::hooks::earlier(retval);
    }
    let target: *const core_read::Task = ctx.arg(0);
    let tgid = core_read::tgid(target);
    if guard(tgid).is_none() {
        return 0;
    }
    if let Some(t) = current_tracked() {
        let sig: i32 = ctx.arg(2);
        report(
            t.session,
            body(op::SIGNAL, -1, tgid, sig as u64),
            enforced::DENIED,
            None,
        );
    }
    -EPERM
}

/// Unmounting the BPF file system that holds guard's pins would release them.
#[lsm(hook = "sb_umount")]
pub(crate) fn sb_umount(ctx: LsmContext) -> i32 {
    // (struct vfsmount *mnt, int flags)
    let t = tracked_or_return!(ctx, 2);
    let (dev, ino) = pin_dir();
    let mnt: *const core::ffi::c_void = ctx.arg(0);
    if ino == 0 || core_read::mount_dev(mnt) != dev {
        return 0;
    }
    report(
        t.session,
        body(op::PIN_CHANGE, -1, 0, 0),
        enforced::DENIED,
        None,
    );
    -EPERM
}

// ---- tracepoints: kill at the system call ----

const NR: usize = 8;
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;

fn arg(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: offsets within the sys_enter record.
    unsafe { ctx.read_at::<u64>(off) }.unwrap_or(0)
}

fn nr(ctx: &TracePointContext) -> i32 {
    // SAFETY: `__syscall_nr` of the sys_enter record.
    unsafe { ctx.read_at::<i32>(NR) }.unwrap_or(-1)
}

#[inline(always)]
fn kill_for(ctx: &TracePointContext, t: &Tracked, what: u32, target: u32, a: u64) -> u32 {
    let done = kill();
    report(t.session, body(what, nr(ctx), target, a), done, None);
    0
}

/// A signal to `pid` (negative: a process group, -1: every process guard included).
#[inline(always)]
fn signal(ctx: &TracePointContext, t: &Tracked, pid: i64, sig: u64) -> u32 {
    if sig as u32 == 0 {
        return 0;
    }
    let pid = pid as i32;
    let hit = pid == -1 || guard(pid.unsigned_abs()).is_some();
    if !hit {
        return 0;
    }
    kill_for(ctx, t, op::SIGNAL, pid as u32, u64::from(sig as u32))
}

/// kill(pid, sig), tkill(tid, sig), rt_sigqueueinfo(tgid, sig, info).
#[tracepoint(category = "syscalls", name = "sys_enter_kill")]
pub(crate) fn tamper_signal(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    signal(&ctx, &t, arg(&ctx, ARG0) as i64, arg(&ctx, ARG1))
}

/// tgkill(tgid, tid, sig), rt_tgsigqueueinfo(tgid, tid, sig, info).
#[tracepoint(category = "syscalls", name = "sys_enter_tgkill")]
pub(crate) fn tamper_tgsignal(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    signal(&ctx, &t, arg(&ctx, ARG1) as i64, arg(&ctx, ARG2))
}

/// The process a pidfd (or /proc/<pid> directory descriptor) of the current task
/// refers to.
#[inline(always)]
fn pidfd_target(fd: u64) -> u32 {
    let file = core_read::fd_file(core_read::current(), fd as u32);
    core_read::file_target_pid(file)
}

/// pidfd_send_signal(pidfd, sig, info, flags).
#[tracepoint(category = "syscalls", name = "sys_enter_pidfd_send_signal")]
pub(crate) fn tamper_pidfd_signal(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    let target = pidfd_target(arg(&ctx, ARG0));
    signal(&ctx, &t, i64::from(target), arg(&ctx, ARG1))
}

/// pidfd_getfd(pidfd, targetfd, flags): a copy of one of guard's descriptors.
#[tracepoint(category = "syscalls", name = "sys_enter_pidfd_getfd")]
pub(crate) fn tamper_pidfd_getfd(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    let target = pidfd_target(arg(&ctx, ARG0));
    if guard(target).is_none() {
        return 0;
    }
    kill_for(&ctx, &t, op::PIDFD_GETFD, target, arg(&ctx, ARG1))
}

/// ptrace(request, pid, addr, data): attaching is the only way in (every other
/// request needs a tracee attached already).
#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub(crate) fn tamper_ptrace(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    let request = arg(&ctx, ARG0);
    let pid = arg(&ctx, ARG1) as u32;
    if (request != PTRACE_ATTACH && request != PTRACE_SEIZE) || guard(pid).is_none() {
        return 0;
    }
    kill_for(&ctx, &t, op::PTRACE, pid, request)
}

/// process_vm_readv/process_vm_writev(pid, …).
#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_readv")]
pub(crate) fn tamper_process_vm(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    let pid = arg(&ctx, ARG0) as u32;
    if guard(pid).is_none() {
        return 0;
    }
    kill_for(&ctx, &t, op::PROCESS_VM, pid, 0)
}

/// bpf(cmd, attr, size): any command.
#[tracepoint(category = "syscalls", name = "sys_enter_bpf")]
pub(crate) fn tamper_bpf(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    kill_for(&ctx, &t, op::BPF, 0, u64::from(arg(&ctx, ARG0) as u32))
}

const F_SETOWN: u64 = 8;
const F_SETOWN_EX: u64 = 15;

/// fcntl(fd, F_SETOWN, pid) or fcntl(fd, F_SETOWN_EX, &{type, pid}) naming guard (a
/// negative pid is a process group). The owner is set before the kill lands; the
/// file's descriptors close with the killed process (unless another process holds
/// one too).
#[tracepoint(category = "syscalls", name = "sys_enter_fcntl")]
pub(crate) fn tamper_fcntl(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    let cmd = arg(&ctx, ARG1) & 0xffff_ffff;
    let pid = match cmd {
        F_SETOWN => arg(&ctx, ARG2) as i32,
        F_SETOWN_EX => {
            let mut owner = [0i32; 2];
            // SAFETY: reads 8 bytes of user memory into a stack array.
            let ok = unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_user(
                    owner.as_mut_ptr().cast(),
                    8,
                    arg(&ctx, ARG2) as *const core::ffi::c_void,
                )
            } == 0;
            if !ok {
                return 0;
            }
            owner[1]
        }
        _ => return 0,
    };
    if pid == 0 || guard(pid.unsigned_abs()).is_none() {
        return 0;
    }
    kill_for(&ctx, &t, op::SET_OWNER, pid as u32, cmd)
}

/// perf_event_open(attr, pid, cpu, group_fd, flags).
#[tracepoint(category = "syscalls", name = "sys_enter_perf_event_open")]
pub(crate) fn tamper_perf(ctx: TracePointContext) -> u32 {
    let Some(t) = current_tracked() else { return 0 };
    kill_for(&ctx, &t, op::PERF_EVENT_OPEN, 0, 0)
}
