//! File opens: open, openat, openat2 and creat. The exit resolves what was actually
//! opened from the new descriptor, so relative paths, dirfds, `..`, symlinks and
//! `/proc/self/root` all come out as the real absolute path. The call's arguments
//! (flags, mode, the name passed, for an open that failed) are read at the exit from
//! the registers the thread entered the call with; the compat build, for kernels
//! without `bpf_task_pt_regs`, notes them at the entry instead.

use aya_ebpf::{
    helpers::{bpf_probe_read_user_str_bytes, generated as gen_helpers},
    macros::tracepoint,
    programs::TracePointContext,
};
use guard_common::{
    EventKind, IdentityTail, OpenBody, OpenCall, PATH_DEPTH, PATH_MAX, TAINTED, flags,
    rules::enforced,
};

use crate::{
    core_read::{self, WALK_TRUNCATED},
    emit::{Draft, current_ids},
    enforce,
    maps::{PATH_END, PATH_MASK, PATH_SCRATCH, PendingOpen, TRACKED, tracked},
    repeat,
};

const AT_FDCWD: i64 = -100;
/// `creat(path, mode)` is `open(path, O_CREAT|O_WRONLY|O_TRUNC, mode)`.
const CREAT_FLAGS: u64 = 0o100 | 0o1 | 0o1000;

// Field offsets in the syscalls:sys_enter_* records (tracefs `format` files): each
// argument is an 8-byte slot after the 16-byte common header and syscall number.
#[cfg(feature = "compat")]
const ARG0: usize = 16;
#[cfg(feature = "compat")]
const ARG1: usize = 24;
#[cfg(feature = "compat")]
const ARG2: usize = 32;
#[cfg(feature = "compat")]
const ARG3: usize = 40;
const RET: usize = 16;

fn arg(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: offsets within the tracepoint record.
    unsafe { ctx.read_at::<u64>(off) }.unwrap_or(0)
}

/// The current thread's id and its process's entry when it is tracked. Checked
/// before anything else: a process outside every session pays this one lookup and
/// nothing more.
#[cfg(feature = "compat")]
#[inline(always)]
fn tracked_thread() -> Option<(u32, guard_common::Tracked)> {
    let (tgid, tid) = current_ids();
    Some((tid, tracked(tgid)?))
}

#[cfg(feature = "compat")]
#[inline(always)]
fn note(
    (tid, tracked): (u32, guard_common::Tracked),
    call: OpenCall,
    dfd: i64,
    filename: u64,
    flags: u64,
    mode: u64,
) -> u32 {
    let pending = PendingOpen::new(&tracked, call, dfd, filename, (flags, mode));
    if let Some(p) = crate::maps::PENDING_OPEN.get_ptr_mut(tid) {
        // SAFETY: this thread's entry; only this thread (and its exit) touch it.
        unsafe { *p = pending };
    } else if crate::maps::PENDING_OPEN.insert(tid, pending, 0).is_err() {
        crate::maps::count(guard_common::counter::PENDING_FULL);
    }
    0
}

#[cfg(feature = "compat")]
#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub(crate) fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let Some(thread) = tracked_thread() else {
        return 0;
    };
    let dfd = i64::from(arg(&ctx, ARG0) as i32);
    note(
        thread,
        OpenCall::Openat,
        dfd,
        arg(&ctx, ARG1),
        arg(&ctx, ARG2),
        arg(&ctx, ARG3),
    )
}

#[cfg(feature = "compat")]
#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub(crate) fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let Some(thread) = tracked_thread() else {
        return 0;
    };
    note(
        thread,
        OpenCall::Open,
        AT_FDCWD,
        arg(&ctx, ARG0),
        arg(&ctx, ARG1),
        arg(&ctx, ARG2),
    )
}

#[cfg(feature = "compat")]
#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub(crate) fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    let Some(thread) = tracked_thread() else {
        return 0;
    };
    note(
        thread,
        OpenCall::Creat,
        AT_FDCWD,
        arg(&ctx, ARG0),
        CREAT_FLAGS,
        arg(&ctx, ARG1),
    )
}

#[cfg(feature = "compat")]
#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub(crate) fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let Some(thread) = tracked_thread() else {
        return 0;
    };
    let dfd = i64::from(arg(&ctx, ARG0) as i32);
    let [flags, mode] = open_how(arg(&ctx, ARG2));
    note(thread, OpenCall::Openat2, dfd, arg(&ctx, ARG1), flags, mode)
}

/// The flags and mode of an `openat2` call's `struct open_how { u64 flags; u64
/// mode; u64 resolve; }` at `how` in user memory (zeroes when unreadable).
#[inline(always)]
fn open_how(how: u64) -> [u64; 2] {
    let mut fm = [0u64; 2];
    // SAFETY: reads 16 bytes of user memory into a stack array.
    let ok = unsafe {
        gen_helpers::bpf_probe_read_user(
            fm.as_mut_ptr().cast(),
            16,
            how as *const core::ffi::c_void,
        )
    } == 0;
    if ok { fm } else { [0, 0] }
}

/// The open that exits now on thread `tid` of process `tgid`, when the process is
/// tracked: its arguments as the compat build's entry programs noted them (an
/// open whose entry was not seen is not reported).
#[cfg(feature = "compat")]
#[inline(always)]
fn exiting_open(_ctx: &TracePointContext, _tgid: u32, tid: u32) -> Option<PendingOpen> {
    let p = crate::maps::PENDING_OPEN.get_ptr_mut(tid)?;
    // SAFETY: this thread's entry; only this thread (and its exit) touch it.
    let pending = unsafe { *p };
    if pending.call == PendingOpen::DONE {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*p).call = PendingOpen::DONE };
    Some(pending)
}

/// The open that exits now on thread `tid` of process `tgid`, when the process is
/// tracked: its arguments read from the registers the thread entered the call with
/// (no program runs at an open's entry in the default build).
#[cfg(not(feature = "compat"))]
#[inline(always)]
fn exiting_open(ctx: &TracePointContext, tgid: u32, _tid: u32) -> Option<PendingOpen> {
    let tracked = tracked(tgid)?;
    // SAFETY: `__syscall_nr` of the sys_exit record.
    let nr = unsafe { ctx.read_at::<i32>(8) }.ok()?;
    let [a0, a1, a2, a3] = core_read::syscall_args();
    let at = i64::from(a0 as i32);
    let pending = match core_read::open_call(nr) {
        c if c == OpenCall::Open as i32 => {
            PendingOpen::new(&tracked, OpenCall::Open, AT_FDCWD, a0, (a1, a2))
        }
        c if c == OpenCall::Creat as i32 => {
            PendingOpen::new(&tracked, OpenCall::Creat, AT_FDCWD, a0, (CREAT_FLAGS, a1))
        }
        c if c == OpenCall::Openat as i32 => {
            PendingOpen::new(&tracked, OpenCall::Openat, at, a1, (a2, a3))
        }
        c if c == OpenCall::Openat2 as i32 => {
            let [flags, mode] = open_how(a2);
            PendingOpen::new(&tracked, OpenCall::Openat2, at, a1, (flags, mode))
        }
        _ => return None,
    };
    let slot = crate::maps::OPEN_ARGS.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; the program runs to its end on this CPU.
    unsafe {
        *slot = pending;
        Some(core::ptr::read_volatile(slot))
    }
}

/// Attached to sys_exit_{open,openat,openat2,creat}: the records share a layout.
#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub(crate) fn sys_exit_open(ctx: TracePointContext) -> u32 {
    match try_exit_open(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the open's exit in order in one frame: a call adds a frame, and the chain is at 512 of 512 bytes"
)]
fn try_exit_open(ctx: &TracePointContext) -> Result<(), ()> {
    let (tgid, tid) = current_ids();
    let pending = exiting_open(ctx, tgid, tid).ok_or(())?;
    let session = pending.session;
    let who = pending.who;
    let ret = arg(ctx, RET) as i64;
    let task = core_read::current();
    let pbuf = PATH_SCRATCH.get_ptr_mut(0).ok_or(())?.cast::<u8>();
    let file = if ret >= 0 {
        core_read::new_fd_file(ret as u32)
    } else {
        core::ptr::null()
    };
    // A repeat of an open reported before (repeat.rs): counted, nothing more.
    let repeat = if ret >= 0 {
        repeat::Open::of(file, pending.flags, who, session)
    } else {
        None
    };
    if let Some(open) = &repeat
        && repeat::counted(tid, open, ret)
    {
        return Ok(());
    }

    let mut draft = Draft::begin(EventKind::Open, 0, session, who).ok_or(())?;
    let mut tail = IdentityTail::default();
    let depth = PATH_DEPTH as u32;
    // Whether a repeat of this open may be counted instead of reported.
    let mut plain = false;
    // The opened file's type: a directory's open reads no file's data.
    let mut file_type = 0u32;
    let (start, end) = if ret >= 0 {
        enforce::before_walk();
        let walk = core_read::file_path(file, pbuf, PATH_END, depth);
        if walk & WALK_TRUNCATED != 0 {
            draft.header().flags |= flags::PATH_TRUNCATED;
        }
        let start = walk & !WALK_TRUNCATED;
        let path = pbuf.wrapping_add((start & PATH_MASK) as usize);
        // guard's own files (/proc/<guard>/…, its pins): the opener dies before the
        // open returns, and the record says tamper, not open.
        // SAFETY: `__syscall_nr` of the sys_exit record.
        let syscall = unsafe { ctx.read_at::<i32>(8) }.unwrap_or(-1);
        if crate::tamper::opened(
            session,
            syscall,
            file,
            pending.flags,
            path,
            PATH_END - start,
        ) {
            return Ok(());
        }
        // Decided before the open returns: a killed process never sees the file.
        // Taint (a secret read that nothing stopped) is marked before the open
        // returns too, so before the process can send a byte of it; checked once per
        // process (a tainted process stays tainted).
        file_type = core_read::dentry_type(core_read::file_dentry(file));
        let verdict = enforce::on_open(
            file,
            start & PATH_MASK,
            PATH_END - start,
            pending.flags,
            (who, file_type == core_read::TYPE_DIR),
            who & TAINTED != 0,
        );
        draft.header().rule = verdict.rule;
        draft.header().flags |= verdict.found;
        if verdict.found & flags::BY_IDENTITY != 0 {
            tail = enforce::identity_tail();
        }
        if verdict.taints {
            if let Some(t) = TRACKED.get_ptr_mut(tgid) {
                // SAFETY: this process's entry; only its own threads write it.
                unsafe { (*t).flags |= TAINTED };
            }
            draft.header().flags |= flags::TAINTED;
        }
        // A fetcher's written file is a download (fetched.rs), unless the open was
        // killed (bit 31). No branch here: each doubles the verifier's paths.
        crate::fetched::guard_fetch_opened(
            file as u64,
            (pending.flags as u32 & 0o3) | (u32::from(verdict.rule & enforced::KILLED) << 17),
            who,
            session,
            tgid,
        );
        plain = verdict.rule == 0
            && verdict.found == 0
            && !verdict.taints
            && draft.header().flags & (flags::PATH_TRUNCATED | flags::IDENTITY_UNKNOWN) == 0;
        (start, PATH_END)
    } else {
        // Nothing was opened: report the string passed, joined to the directory it was
        // relative to (resolved here, as the kernel would have started from it).
        draft.header().flags |= flags::PATH_UNRESOLVED;
        // Refused by BPF-LSM `file_open`: name the rule, and the match when it was
        // by identity.
        // SAFETY: read-only copy of the map value.
        let refused = unsafe { crate::maps::IDENT_DENIED.get(tid) }.copied();
        if refused.is_some() {
            let _ = crate::maps::IDENT_DENIED.remove(tid);
        }
        // Only an EPERM (-1) is that refusal (an entry a killed open left is stale).
        if let Some(t) = refused.filter(|_| ret == -1) {
            if t.up != guard_common::DENIED_BY_PATH {
                draft.header().flags |= if t.ino == 0 {
                    flags::IDENTITY_UNKNOWN
                } else {
                    flags::BY_IDENTITY
                };
                tail = t;
            }
            draft.header().rule = ((t.rule + 1) & enforced::RULE_MASK) | enforced::DENIED;
        }
        // SAFETY: PATH_END + 1 + PATH_MAX + 1 <= PATH_BUF; dest is this CPU's scratch.
        let name = unsafe {
            let dst =
                core::slice::from_raw_parts_mut(pbuf.add(PATH_END as usize + 1), PATH_MAX + 1);
            bpf_probe_read_user_str_bytes(pending.filename as *const u8, dst)
        }
        .map_err(|_| ())?;
        let name_len = name.len() as u32;
        let absolute = name.first() == Some(&b'/');
        if absolute {
            (PATH_END + 1, PATH_END + 1 + name_len)
        } else {
            let walk = if pending.dfd == AT_FDCWD {
                core_read::cwd_path(task, pbuf, PATH_END, depth)
            } else {
                core_read::file_path(
                    core_read::fd_file(task, pending.dfd as u32),
                    pbuf,
                    PATH_END,
                    depth,
                )
            };
            if walk & WALK_TRUNCATED != 0 {
                draft.header().flags |= flags::PATH_TRUNCATED;
            }
            // SAFETY: PATH_END < PATH_BUF.
            unsafe { *pbuf.add(PATH_END as usize) = b'/' };
            (walk & !WALK_TRUNCATED, PATH_END + 1 + name_len)
        }
    };
    let len = draft.path_payload::<OpenBody>(pbuf, start, end);
    draft.body(OpenBody {
        flags: pending.flags,
        ret,
        call: pending.call,
        mode: pending.mode,
        repeats: 0,
        file_type: file_type as u16,
        _reserved: [0; 3],
    });
    let mut payload = len;
    if draft.header().flags & flags::BY_IDENTITY != 0 {
        // SAFETY: len <= PATH_MAX; the tail fits in the event scratch after it.
        unsafe {
            core::ptr::write_unaligned(
                draft
                    .payload_ptr::<OpenBody>(len as usize)
                    .cast::<IdentityTail>(),
                tail,
            );
        }
        payload += size_of::<IdentityTail>() as u32;
    }
    let sent = draft.submit::<OpenBody>(payload);
    if sent
        && plain
        && let Some(open) = &repeat
    {
        repeat::remember(
            tid,
            task,
            open,
            (pending.call, pending.mode),
            pbuf,
            (start, end),
        );
    }
    Ok(())
}
