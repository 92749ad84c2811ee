//! The process tree: sessions start at an agent's exec, children inherit at fork
//! (before they run), and entries leave when the last thread exits.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_ktime_get_boot_ns},
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};
use guard_common::{
    ARGV_MAX, DELEGATE, EventKind, ExecBody, ExitBody, ForkBody, INSTALLER, PATH_DEPTH, PATH_MAX,
    TAINTED, THREAD_ID_LEN, Tracked, counter, flags, role,
};

use crate::{
    core_read::{self, WALK_TRUNCATED},
    emit::{Draft, HEADER_LEN, current_ids},
    enforce,
    fetched::hold,
    maps::{
        AGENT_CGROUPS, AGENTS, DELEGATE_ARM, DIGEST_SIZES, EVENT_SCRATCH, PATH_END, PATH_MASK,
        PATH_SCRATCH, TRACKED, count, tracked,
    },
};

/// `sched_process_fork(parent, child)`: runs in the parent before the child is woken.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub(crate) fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    match try_fork(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), ()> {
    let (tgid, _) = current_ids();
    let child: *const core_read::Task = ctx.arg::<u64>(1) as *const core_read::Task;
    let Some(parent) = tracked(tgid) else {
        // Untracked: guard's own new threads (self-protection), and a spawner's
        // fork right after a session asked it to work (delegation).
        crate::tamper::thread_born(tgid, core_read::pid(child), core_read::tgid(child));
        return delegate(tgid, child);
    };
    let child_pid = core_read::pid(child);
    if child_pid != core_read::tgid(child) {
        return Ok(()); // a new thread: its process is tracked already
    }
    let child_start_ns = core_read::start_ns(child);
    let entry = Tracked {
        session: parent.session,
        start_ns: child_start_ns,
        root_pid: parent.root_pid,
        // The child has its parent's role (children of a tool are tools) until an
        // exec of its own decides again; and its taint, for good.
        flags: parent.flags
            & (role::MASK | role::STRUCTURED | role::HAS_THREAD | TAINTED | DELEGATE | INSTALLER),
    };
    if TRACKED.insert(child_pid, entry, 0).is_err() {
        count(counter::TRACK_FULL);
        crate::emit::untracked_child(parent.session, parent.flags, child_pid);
    }
    let mut draft = Draft::begin(EventKind::Fork, 0, parent.session, parent.flags).ok_or(())?;
    draft.body(ForkBody {
        child_pid,
        _reserved: 0,
        child_start_ns,
    });
    draft.submit::<ForkBody>(0);
    Ok(())
}

/// The fork of an untracked process `tgid`: when it is a spawner a session process
/// just asked to work (`DELEGATE_ARM`, armed by net.rs), its child joins that
/// session as a delegate, judged as a tool. One fork per request.
#[inline(always)]
fn delegate(tgid: u32, child: *const core_read::Task) -> Result<(), ()> {
    // SAFETY: read-only copy of the map value.
    let arm = (unsafe { DELEGATE_ARM.get(tgid) }).copied().ok_or(())?;
    let _ = DELEGATE_ARM.remove(tgid);
    // SAFETY: helper without arguments.
    if unsafe { bpf_ktime_get_boot_ns() } > arm.deadline_ns {
        return Err(());
    }
    let child_pid = core_read::pid(child);
    if child_pid != core_read::tgid(child) {
        return Err(()); // a new thread of the spawner
    }
    let child_start_ns = core_read::start_ns(child);
    let flags = (arm.flags & TAINTED) | DELEGATE | (u32::from(role::TOOL) << role::SHIFT);
    let entry = Tracked {
        session: arm.session,
        start_ns: child_start_ns,
        root_pid: arm.root_pid,
        flags,
    };
    if TRACKED.insert(child_pid, entry, 0).is_err() {
        count(counter::TRACK_FULL);
        crate::emit::untracked_child(arm.session, flags, child_pid);
        return Err(());
    }
    let mut draft = Draft::begin(EventKind::Fork, 0, arm.session, flags).ok_or(())?;
    draft.body(ForkBody {
        child_pid,
        _reserved: 0,
        child_start_ns,
    });
    draft.submit::<ForkBody>(0);
    Ok(())
}

/// `sched_process_exec(task, old_pid, bprm)`: the new image is in place and has not
/// run yet.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub(crate) fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    match try_exec(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the exec's steps in order in one frame, as the verifier walks them: a call would add a frame"
)]
fn try_exec(ctx: &RawTracePointContext) -> Result<(), ()> {
    let (tgid, tid) = current_ids();
    let task = core_read::current();
    // Opens counted before the exec belong to the old program (sent under the new
    // one's name: the record's comm is the task's at sending). A thread other than
    // the leader that execs takes the leader's id: its old id is `old_pid`.
    crate::repeat::forget_thread(tid, task);
    let old_tid = ctx.arg::<u64>(1) as u32;
    if old_tid != tid {
        crate::repeat::forget_thread(old_tid, task);
    }
    let mut event_flags = 0u16;
    let mut tracked = match tracked(tgid) {
        Some(mut t) => {
            if t.start_ns == 0 {
                // Registered by user space (`guard run`) before this first exec.
                t.start_ns = core_read::start_ns(task);
                event_flags |= flags::CWD;
            }
            t
        }
        None => {
            let comm = bpf_get_current_comm().map_err(|_| ())?;
            // SAFETY: presence checks only; the helper takes no arguments.
            if unsafe { AGENTS.get(comm) }.is_none() {
                if unsafe { AGENT_CGROUPS.get(bpf_get_current_cgroup_id()) }.is_none() {
                    return Ok(());
                }
                event_flags |= flags::BY_CGROUP;
            }
            let t = Tracked {
                // SAFETY: helper without arguments.
                session: unsafe { bpf_ktime_get_boot_ns() },
                start_ns: core_read::start_ns(task),
                root_pid: tgid,
                flags: u32::from(flags::ROOT_PROCESS),
            };
            if TRACKED.insert(tgid, t, 0).is_err() {
                count(counter::TRACK_FULL);
                return Err(());
            }
            event_flags |= flags::SESSION_START | flags::CWD;
            t
        }
    };
    if tracked.flags & u32::from(flags::ROOT_PROCESS) != 0 {
        event_flags |= flags::ROOT_PROCESS;
    }
    let mut draft =
        Draft::begin(EventKind::Exec, event_flags, tracked.session, tracked.flags).ok_or(())?;
    let bprm = ctx.arg::<u64>(2) as *const core::ffi::c_void;
    let file = core_read::binprm_file(bprm);
    // The role this exec gives the process, in force before its first instruction
    // (the kill rules below and every later hook see it). The new comm is read in the
    // record's header, not copied to the stack: with the env scan's callback frames,
    // Linux 6.1 allows this program 512 bytes of stack in all.
    // SAFETY: the header lives in this CPU's scratch for the whole program.
    let program = crate::role::program_of(bprm, file, unsafe { &*draft.comm_ptr() });
    let program = crate::role::with_script(program, task);
    tracked.flags = crate::role::at_exec(tracked.flags, program);
    draft.header().role = u16::from(role::reported(tracked.flags));
    let has_thread = tracked.flags & role::MASK == u32::from(role::TOOL) << role::SHIFT;
    tracked.flags &= !role::HAS_THREAD;

    // The executable as the kernel resolved it: bprm->file, not the string passed.
    let pbuf = PATH_SCRATCH.get_ptr_mut(0).ok_or(())?.cast::<u8>();
    let walk = core_read::file_path(file, pbuf, PATH_END, PATH_DEPTH as u32);
    let start = walk & !WALK_TRUNCATED;
    let mut exe_len = PATH_END.saturating_sub(start);
    if walk & WALK_TRUNCATED != 0 || exe_len > PATH_MAX as u32 {
        draft.header().flags |= flags::PATH_TRUNCATED;
    }
    exe_len = exe_len.min(PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
    let src = PATH_END - exe_len;
    // Decided before the new image runs its first instruction.
    // SAFETY: as above.
    let mut rule = enforce::on_exec(
        file,
        src & PATH_MASK,
        exe_len,
        unsafe { &*draft.comm_ptr() },
        tracked.flags,
    );
    if rule == 0 {
        // A multi-call binary's applet (`busybox nc`) is the program it names.
        // SAFETY: the header lives in this CPU's scratch for the whole program.
        rule = enforce::on_applet(file, task, unsafe { &*draft.comm_ptr() }, tracked.flags);
    }
    draft.header().rule = rule;
    if rule != 0 && enforce::exec_by_identity() {
        draft.header().flags |= flags::BY_IDENTITY;
    }
    if rule == 0 && hold_for_digest(file, tgid) {
        draft.header().flags |= flags::HELD;
    }
    // SAFETY: both regions are bounded by masks the verifier tracks.
    unsafe {
        let dst = draft.payload_ptr::<ExecBody>(0);
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            dst.cast(),
            exe_len,
            pbuf.add((src & PATH_MASK) as usize).cast(),
        );
    }
    // A memfd has no path (the walk gives `/`): name it as the kernel does,
    // `memfd:NAME`, its dentry's name (the rules above judged `/`, and the
    // `fileless_exec` route judges it by kind). A deleted file keeps its old path;
    // the flag tells user space to name it `(deleted)`.
    let fileless = core_read::file_fileless(file);
    if fileless != 0 {
        draft.header().flags |= flags::FILELESS;
    }
    if exe_len == 1 && fileless == 1 {
        exe_len = core_read::dentry_name(
            core_read::file_dentry(file),
            draft.payload_ptr::<ExecBody>(0),
            253,
        ) & 0xff;
    }

    // argv as the new image sees it: mm->arg_start..arg_end in its memory.
    let (arg_start, arg_end) = core_read::arg_span(task);
    let mut argv_len = arg_end.saturating_sub(arg_start) as u32;
    if argv_len > ARGV_MAX as u32 {
        draft.header().flags |= flags::ARGV_TRUNCATED;
        argv_len = ARGV_MAX as u32;
    }
    argv_len &= guard_common::ARGV_LEN_MASK;
    // SAFETY: destination bounded by (exe_len & PATH_LEN_MASK) + (argv_len & ARGV_LEN_MASK), well
    // inside the scratch buffer; the source is user memory, read with its helper.
    let ok = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            draft
                .payload_ptr::<ExecBody>((exe_len & guard_common::PATH_LEN_MASK) as usize)
                .cast(),
            argv_len,
            arg_start as *const core::ffi::c_void,
        )
    } == 0;
    if !ok {
        argv_len = 0;
    }
    // A tool's agent session: the first session variable (CODEX_THREAD_ID, …) in
    // its environment, after argv.
    let mut thread_len = 0u32;
    if has_thread {
        let dst = draft.payload_ptr::<ExecBody>(
            ((exe_len & guard_common::PATH_LEN_MASK) + (argv_len & guard_common::ARGV_LEN_MASK))
                as usize,
        );
        if crate::role::thread_id(task, dst) {
            draft.header().flags |= flags::THREAD_ID;
            tracked.flags |= role::HAS_THREAD;
            thread_len = THREAD_ID_LEN as u32;
        }
    }
    // A session's first exec: its working directory, read now (a session that
    // ends within milliseconds is gone before user space could read /proc).
    let mut cwd_len = 0u32;
    if event_flags & flags::CWD != 0 {
        let at = (exe_len & guard_common::PATH_LEN_MASK)
            + (argv_len & guard_common::ARGV_LEN_MASK)
            + (thread_len & 0x3f);
        // The callback clears the record's CWD flag when it read nothing.
        cwd_len = cwd_in_record(at);
    }
    let confinement = core_read::confinement(task);
    if crate::dns::unserved(confinement.net_ns) {
        // The first exec in a network namespace guard's resolver does not serve yet:
        // the daemon starts one there as soon as it reads this.
        draft.urgent();
    }
    let _ = TRACKED.insert(tgid, tracked, 0);
    draft.body(ExecBody {
        start_ns: tracked.start_ns,
        exe_len,
        argv_len,
        confinement,
        cwd_len,
        _reserved: 0,
    });
    draft.submit::<ExecBody>(exe_len + argv_len + thread_len + cwd_len);
    Ok(())
}

/// Where a session's first exec record takes its working directory: the payload
/// offset after the exe, argv and thread id (set before the walk), and the bytes
/// the walk copied (after it). Per CPU: Linux 6.1 leaves this program no stack to
/// spare.
#[repr(C)]
struct CwdSlot {
    at: u32,
    len: u32,
}

#[map]
static CWD_SLOT: PerCpuArray<CwdSlot> = PerCpuArray::with_max_entries(1, 0);

/// Most payload bytes before the working directory: exe, argv and thread id.
const CWD_AT_MAX: u32 = guard_common::PATH_LEN_MASK + guard_common::ARGV_LEN_MASK + 0x3f;

/// The current task's working directory, copied into the record being drafted at
/// payload offset `at`; returns its length (0 when it could not be read: the
/// record's `CWD` flag is then cleared). The walk and the copy run in a `bpf_loop`
/// callback: the verifier checks them once, and the length comes back as a number
/// read from memory. Inlined, each way the walk could end was another state carried
/// through the rest of the exec program (200,000 of its verified instructions,
/// 2026-11-27).
#[inline(always)]
fn cwd_in_record(at: u32) -> u32 {
    let Some(slot) = CWD_SLOT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; the callback reads it and writes its length.
    unsafe {
        (*slot).at = at;
        (*slot).len = 0;
        crate::each::each!(1, cwd_step, guard_each_cwd);
        (*slot).len & guard_common::PATH_LEN_MASK
    }
}

#[cfg_attr(feature = "compat", inline(always))]
extern "C" fn cwd_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(slot), Some(pbuf), Some(buf)) = (
        CWD_SLOT.get_ptr_mut(0),
        PATH_SCRATCH.get_ptr_mut(0),
        EVENT_SCRATCH.get_ptr_mut(0),
    ) else {
        return 1;
    };
    // SAFETY: this CPU's scratch buffers; `at` is clamped to what the exec program
    // can have written before it, so the copy stays inside the record's buffer.
    unsafe {
        let at = (*slot).at.min(CWD_AT_MAX) as usize;
        let dst = buf
            .cast::<u8>()
            .add(HEADER_LEN + size_of::<ExecBody>() + at);
        let len = cwd(core_read::current(), pbuf.cast(), dst);
        (*slot).len = len;
        if len == 0 {
            (*buf.cast::<guard_common::Header>()).flags &= !flags::CWD;
        }
    }
    1
}

/// Copies `task`'s working directory, as the kernel resolves it, to `dst` (walked
/// in the path scratch `pbuf`): its last `PATH_MAX` bytes. Returns the bytes
/// copied (0 when it could not be read).
#[inline(always)]
fn cwd(task: *const core_read::Task, pbuf: *mut u8, dst: *mut u8) -> u32 {
    let walk = core_read::cwd_path(task, pbuf, PATH_END, PATH_DEPTH as u32);
    let start = walk & !WALK_TRUNCATED;
    let len = PATH_END.saturating_sub(start).min(PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
    if len == 0 {
        return 0;
    }
    let src = PATH_END - len;
    // SAFETY: both regions bounded by masks the verifier tracks; the scratch holds
    // the walk's result.
    let read = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            dst.cast(),
            len,
            pbuf.wrapping_add((src & PATH_MASK) as usize).cast(),
        )
    };
    if read == 0 { len } else { 0 }
}

/// Stops the process before its first instruction when its file has a size some
/// exec rule's digest names, for user space to hash it and kill or continue it.
#[inline(always)]
fn hold_for_digest(file: *const core::ffi::c_void, tgid: u32) -> bool {
    let size = core_read::file_size(file);
    // SAFETY: presence check only.
    if unsafe { DIGEST_SIZES.get(size) }.is_none() {
        return false;
    }
    hold(tgid)
}

/// `sched_process_exit(task)`: runs in the exiting thread; the process is gone
/// when its last thread gets here.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub(crate) fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    match try_exit() {
        Ok(()) | Err(()) => 0,
    }
}

fn try_exit() -> Result<(), ()> {
    let (tgid, tid) = current_ids();
    // The thread's counted opens go out first: its process may have left its session
    // (and `TRACKED`) already.
    crate::repeat::forget_thread(tid, core_read::current());
    let Some(tracked) = tracked(tgid) else {
        crate::tamper::thread_gone(tid);
        return Err(());
    };
    #[cfg(feature = "compat")]
    let _ = crate::maps::PENDING_OPEN.remove(tid);
    let _ = crate::maps::PENDING_NET.remove(tid);
    let task = core_read::current();
    if core_read::live_threads(task) > 0 {
        return Ok(());
    }
    // The last threads of a process can exit together: each decrements `live` before
    // this tracepoint, so more than one may read 0 here. The one whose delete removes
    // the entry reports the exit; the others would report it again.
    if TRACKED.remove(tgid).is_err() {
        return Ok(());
    }
    let root = if tracked.flags & u32::from(flags::ROOT_PROCESS) != 0 {
        flags::ROOT_PROCESS
    } else {
        0
    };
    let mut draft = Draft::begin(EventKind::Exit, root, tracked.session, tracked.flags).ok_or(())?;
    draft.body(ExitBody {
        status: core_read::exit_code(task),
        _reserved: 0,
        start_ns: tracked.start_ns,
    });
    draft.submit::<ExitBody>(0);
    Ok(())
}
