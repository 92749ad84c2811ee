//! Code from the network: files a session process wrote while it talked to the
//! network (downloads: `curl -o x`, `wget`, `curl URL > x`, a script's HTTP
//! client), and the execs that could run one.
//!
//! - A tracked process whose connect or send (not DNS) went through becomes a
//!   fetcher (`FETCHER`), unless it is the agent's own process or its sandbox step
//!   (what they write after talking to the model's API is the agent's edits), a
//!   package manager, or runs below one (`INSTALLER`: what `npm install` or `pip
//!   install` fetches is its registry's).
//!   The regular files it has open for writing then (descriptors 0 to 7: `curl URL
//!   > x` opens `x` before curl runs) and those it opens for writing later are
//!   downloads: their identity goes into [`FETCHED`], and their session into
//!   [`FETCH_SESSIONS`].
//! - At exec, in a session with downloads: the exec of a download, and the exec of
//!   a shell, interpreter or the loader (its script may be one), is held (SIGSTOP
//!   before its first instruction, as for a digest) for user space to decide by the
//!   script it names: a download is killed before it runs.
//!
//! Data passed through a pipe to another writer (`git clone`'s checkout, `curl |
//! tee x`) is not followed: the writer did not reach the network itself.

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_send_signal},
    macros::map,
    maps::LruHashMap,
};
use guard_common::{FETCHER, Fetched, FileId, INSTALLER, held_for, role};

use crate::{
    core_read,
    maps::{FETCHED, HELD, HELD_FOR, TRACKED, tracked},
};

/// Sessions with downloads: their interpreters' execs are held.
#[map]
static FETCH_SESSIONS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(1024, 0);

/// Room to read a Python's first arguments (`-m pip`), one at a time.
#[repr(C)]
struct ArgScratch {
    buf: [u8; 256],
}

#[map]
static ARG_SCRATCH: aya_ebpf::maps::PerCpuArray<ArgScratch> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(1, 0);

/// `O_ACCMODE` of an open file's flags.
const O_ACCMODE: u32 = 0o3;
/// Descriptors looked at when a process first reaches the network.
const FDS: u32 = 8;

/// Remembers `file` (a regular file, open for writing by `pid` of `session`) as a
/// download.
#[inline(always)]
fn mark(file: *const core::ffi::c_void, session: u64, pid: u32) {
    let (dev, ino) = core_read::dentry_ident(core_read::file_dentry(file));
    if ino == 0 {
        return;
    }
    let key = FileId {
        dev,
        _reserved: 0,
        ino,
    };
    let value = Fetched {
        session,
        pid,
        _reserved: 0,
    };
    let _ = FETCHED.insert(key, value, 0);
    let _ = FETCH_SESSIONS.insert(session, 1, 0);
}

/// Whether `file` is a regular file open for writing.
#[inline(always)]
fn written(file: *const core::ffi::c_void) -> bool {
    !file.is_null()
        && core_read::dentry_type(core_read::file_dentry(file)) == core_read::TYPE_REG
        && matches!(core_read::file_flags(file) & O_ACCMODE, 1 | 2)
}

/// A tracked process `tgid` (its `Tracked::flags` and session) reached the
/// network: a fetcher from now on, and the regular files it has open for writing
/// are downloads. A global function (scalars in, verified once, apart from its
/// callers): the exit of the network calls stays well inside the verifier's budget.
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn guard_fetch_connected(tgid: u32, flags: u32, session: u64) -> i64 {
    // The agent's own process (and its sandbox steps) reaches the model's API and
    // writes what the model asked for: edits, not downloads.
    let own = matches!(role::of(flags), role::AGENT | role::SANDBOX);
    if own || flags & (FETCHER | INSTALLER) != 0 || crate::maps::config().downloads == 0 {
        return 0;
    }
    if let Some(t) = TRACKED.get_ptr_mut(tgid) {
        // SAFETY: this process's entry; only its own threads write it.
        unsafe { (*t).flags |= FETCHER };
    }
    let task = core_read::current();
    let mut fd = 0u32;
    while fd < FDS {
        let file = core_read::fd_file(task, fd);
        if written(file) {
            mark(file, session, tgid);
        }
        fd += 1;
    }
    0
}

/// An open (with `open_flags`: its access mode, and bit 31 when it was killed) by
/// tracked process `tgid` (its `Tracked::flags` and session) of `file` (a `struct
/// file *`): a fetcher's regular file opened for writing is a download. Global, as
/// [`guard_fetch_connected`]: the open's exit is the largest program.
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn guard_fetch_opened(
    file: u64,
    open_flags: u32,
    flags: u32,
    session: u64,
    tgid: u32,
) -> i64 {
    let file = file as *const core::ffi::c_void;
    let killed = open_flags >> 31 != 0;
    if flags & FETCHER == 0 || killed || file.is_null() || !matches!(open_flags & O_ACCMODE, 1 | 2)
    {
        return 0;
    }
    if core_read::dentry_type(core_read::file_dentry(file)) == core_read::TYPE_REG {
        mark(file, session, tgid);
    }
    0
}

/// Whether an exec of `file` (a `struct file *`), a program that is `program`
/// (`role::PROGRAM_*` bits), in `session` is to be held, and why (`held_for` bits;
/// 0: not held).
#[inline(always)]
pub(crate) fn hold_reason(file: u64, program: u32, session: u64) -> u32 {
    let file = file as *const core::ffi::c_void;
    // SAFETY: presence check only.
    if unsafe { FETCH_SESSIONS.get(session) }.is_none() || crate::maps::config().downloads == 0 {
        return 0;
    }
    let (dev, ino) = core_read::dentry_ident(core_read::file_dentry(file));
    let key = FileId {
        dev,
        _reserved: 0,
        ino,
    };
    // SAFETY: presence check only.
    if ino != 0 && unsafe { FETCHED.get(key) }.is_some() {
        return held_for::DOWNLOAD;
    }
    if program & role::PROGRAM_INTERPRETER != 0 {
        return held_for::INTERPRETER;
    }
    0
}

/// Marks tracked process `tgid`, which is exec'ing a program that is `program`,
/// an [`INSTALLER`] (in `TRACKED`) when it runs a package manager, or a Python
/// running one (`python3 -m pip`, read from `task`'s arguments): what it and its
/// children fetch is theirs, no download of the session's.
#[inline(always)]
fn mark_installer(tgid: u32, program: u32, task: *const core_read::Task) {
    if program & (role::PROGRAM_INSTALLER | role::PROGRAM_INTERPRETER) == 0 {
        return;
    }
    let Some(t) = TRACKED.get_ptr_mut(tgid) else {
        return;
    };
    // SAFETY: this process's entry; its exec runs on its only thread, and the exec
    // program reads it after this one.
    let flags = unsafe { (*t).flags };
    if flags & INSTALLER == 0
        && (program & role::PROGRAM_INSTALLER != 0 || runs_installer_module(task))
    {
        // SAFETY: as above.
        unsafe { (*t).flags = flags | INSTALLER };
    }
}

/// Whether the Python just exec'd runs a package manager's module (`python3 -m
/// pip install …`): its `argv[1]` is `-m` and its `argv[2]` a name
/// `AGENT_PROGRAMS` marks `PROGRAM_INSTALLER`.
#[inline(always)]
fn runs_installer_module(task: *const core_read::Task) -> bool {
    use aya_ebpf::helpers::generated::bpf_probe_read_user_str;
    let Some(s) = ARG_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let (start, end) = core_read::arg_span(task);
    // SAFETY: this CPU's scratch; each read is bounded by its size; the sources
    // are the new image's memory, read with its helper.
    unsafe {
        let buf = (*s).buf.as_mut_ptr();
        // argv[0], for its length.
        let n0 = bpf_probe_read_user_str(buf.cast(), 256, start as *const core::ffi::c_void);
        if n0 <= 0 || n0 >= 256 {
            return false;
        }
        let mut at = start + n0 as u64;
        let n1 = bpf_probe_read_user_str(buf.cast(), 16, at as *const core::ffi::c_void);
        if n1 != 3 || (*s).buf[0] != b'-' || (*s).buf[1] != b'm' || at + 3 >= end {
            return false;
        }
        at += 3;
        // The module's name as an `AGENT_PROGRAMS` key: NUL padded.
        buf.cast::<u64>().write_volatile(0);
        buf.cast::<u64>().add(1).write_volatile(0);
        if bpf_probe_read_user_str(buf.cast(), 16, at as *const core::ffi::c_void) <= 1 {
            return false;
        }
        let name: &[u8; 16] = &*buf.cast::<[u8; 16]>();
        crate::maps::AGENT_PROGRAMS
            .get(name)
            .is_some_and(|bits| bits & role::PROGRAM_INSTALLER != 0)
    }
}

/// At the exec of a tracked process (route_exec, attached before the exec
/// program, with a verifier budget of its own: the exec program has no room for
/// this on 6.1): marks a package manager an [`INSTALLER`], and holds (SIGSTOP
/// before the first instruction, `HELD` and [`HELD_FOR`]) the exec of a download,
/// or of an interpreter, in a session with downloads.
#[inline(always)]
pub(crate) fn at_exec(bprm: *const core::ffi::c_void) {
    if crate::maps::config().downloads == 0 {
        return;
    }
    let (tgid, _) = crate::emit::current_ids();
    let Some(session) = tracked(tgid).map(|t| t.session) else {
        return;
    };
    let Ok(comm) = aya_ebpf::helpers::bpf_get_current_comm() else {
        return;
    };
    let file = core_read::binprm_file(bprm);
    let program = crate::role::program_of(bprm, file, &comm);
    mark_installer(tgid, program, core_read::current());
    let why = hold_reason(file as u64, program, session);
    if why != 0 && hold(tgid) {
        let _ = HELD_FOR.insert(tgid, why, 0);
    } else {
        let _ = HELD_FOR.remove(tgid);
    }
}

const SIGSTOP: u32 = 19;

/// Stops the process before its first instruction, listed in `HELD`, for user
/// space to kill or continue it.
#[inline(always)]
pub(crate) fn hold(tgid: u32) -> bool {
    // SAFETY: signals the current task's process; acted on at return to user mode,
    // before the new image runs.
    if unsafe { bpf_send_signal(SIGSTOP) } != 0 {
        return false;
    }
    // SAFETY: helper without arguments.
    let _ = HELD.insert(tgid, unsafe { bpf_ktime_get_boot_ns() }, 0);
    true
}
