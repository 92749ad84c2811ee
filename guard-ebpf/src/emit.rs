//! Assembling records in per-CPU scratch and handing them to the ring buffer at
//! their exact size; a record that does not fit is counted, never dropped silently.

use core::{mem::size_of, slice};

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::generated::{
    bpf_get_current_comm as bpf_get_current_comm_into, bpf_probe_read_kernel,
};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_ktime_get_boot_ns,
};
use guard_common::{EventKind, Header, LimitBody, PATH_MAX, counter, flags, limit::RATE};

use crate::{
    core_read,
    limit::{self, Take},
    maps::{EVENT_BUF, EVENT_SCRATCH, EVENTS, PATH_MASK, count, count_n},
};

pub(crate) const HEADER_LEN: usize = size_of::<Header>();

/// Pending bytes past which a record wakes the daemon whatever its kind…
const WAKEUP_BYTES: u64 = 1 << 20;
/// …while they are less than this above it: the records that cross the mark wake
/// it, the records after them do not. A daemon that lags by more is awake and
/// reading already, and a forced wake-up is an interrupt on this CPU (an IPI, a
/// trap to the hypervisor in a VM: ~10 µs here), which every record paid when the
/// daemon fell behind, ten times an open's whole cost. Wider than any record, so
/// that records written at once on several CPUs cannot all step over it.
const WAKEUP_WINDOW: u64 = 64 << 10;

/// Waking the daemon for every record costs a context switch each (on a busy
/// session, more than the rest of the pipeline). An exec whose kill user space
/// decides wakes it at once ([`exec_wakes`]). Other records wait for the daemon's
/// 10 ms drain, unless a megabyte is pending (see [`WAKEUP_WINDOW`]).
#[inline(always)]
fn wakeup_flags(h: &Header, exec_wakeup: u32) -> u64 {
    if h.kind == EventKind::Exec as u16 && exec_wakes(h, exec_wakeup) {
        // Forced: a plain output only wakes a reader that has consumed everything
        // before it, and the records just before an exec were queued quietly.
        return u64::from(BPF_RB_FORCE_WAKEUP);
    }
    pending_wakeup()
}

/// A wake-up for the records that cross the pending megabyte ([`WAKEUP_WINDOW`]).
#[inline(always)]
fn pending_wakeup() -> u64 {
    let pending = EVENTS.query(u64::from(BPF_RB_AVAIL_DATA));
    if (WAKEUP_BYTES..WAKEUP_BYTES + WAKEUP_WINDOW).contains(&pending) {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Whether the exec whose record has header `h` is one user space may kill, so
/// that the daemon must read it at once (`exec_wakeup`: `Config`'s): every exec
/// under a rule on a glob of programs; otherwise an exec the kernel held (a digest,
/// a download: stopped until the daemon decides), of a program an argv rule names,
/// or one that starts a session. Other execs' records wait for the drain beat (an
/// exec of a copy of such a program under another name too: killed all the same,
/// within the beat).
#[inline(always)]
fn exec_wakes(h: &Header, exec_wakeup: u32) -> bool {
    match exec_wakeup {
        0 => false,
        guard_common::rules::EXEC_WAKE_ALL => true,
        // A session's start too: what the daemon does for it (its repository, its
        // working directory) would otherwise come before the next named exec's kill.
        // SAFETY: presence checks only.
        _ => unsafe {
            h.flags & flags::SESSION_START != 0
                || crate::maps::HELD.get(h.pid).is_some()
                || crate::maps::EXEC_WAKE.get(h.comm).is_some()
        },
    }
}

/// The current thread's ids: (tgid, tid).
#[inline(always)]
pub(crate) fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// A record being assembled in this CPU's scratch buffer.
pub(crate) struct Draft {
    buf: *mut u8,
    kind: EventKind,
    /// The system calls the record stands for (a count of repeated opens stands for
    /// that many): a record dropped or lost is counted this many times.
    weight: u64,
    /// Wake the daemon for this record whatever its kind.
    urgent: bool,
}

impl Draft {
    /// Starts a record about the current task with the common header filled in.
    #[inline(always)]
    pub(crate) fn begin(kind: EventKind, flags: u16, session: u64, who: u32) -> Option<Self> {
        let buf = EVENT_SCRATCH.get_ptr_mut(0)?.cast::<u8>();
        let (pid, tid) = current_ids();
        let uid_gid = bpf_get_current_uid_gid();
        let tainted = if who & guard_common::TAINTED != 0 {
            flags::TAINTED
        } else {
            0
        };
        let h = buf.cast::<Header>();
        // Written field by field in place: a `Header` built on the stack and copied
        // would take its size from the frame of every program and function that
        // sends a record (Linux 6.1 allows a call chain 512 bytes of stack).
        // SAFETY: the scratch value is EVENT_BUF bytes, 8-aligned, owned by this CPU;
        // helpers without arguments.
        unsafe {
            (*h).kind = kind as u16;
            (*h).flags = flags | tainted;
            (*h).payload_len = 0;
            (*h).ts_ns = bpf_ktime_get_boot_ns();
            (*h).session = session;
            (*h).cgroup_id = bpf_get_current_cgroup_id();
            (*h).pid = pid;
            (*h).tid = tid;
            (*h).ppid = core_read::ppid(core_read::current());
            (*h).uid = uid_gid as u32;
            (*h).gid = (uid_gid >> 32) as u32;
            (*h).rule = 0;
            (*h).role = u16::from(guard_common::role::reported(who));
            // The helper zeroes the name when it fails.
            bpf_get_current_comm_into((&raw mut (*h).comm).cast(), 16);
        }
        Some(Self {
            buf,
            kind,
            weight: 1,
            urgent: false,
        })
    }

    /// The record's `comm`, in the scratch buffer (not on the stack).
    #[inline(always)]
    pub(crate) fn comm_ptr(&self) -> *const [u8; 16] {
        // SAFETY: the header was written in `begin`; only its address is taken.
        unsafe { &raw const (*self.buf.cast::<Header>()).comm }
    }

    /// The daemon is to read this record at once, not at its drain beat.
    #[inline(always)]
    pub(crate) fn urgent(&mut self) {
        self.urgent = true;
    }

    /// The record stands for `n` system calls: a drop or a loss counts `n`.
    #[inline(always)]
    pub(crate) fn standing_for(&mut self, n: u64) {
        self.weight = n;
    }

    pub(crate) fn header(&mut self) -> &mut Header {
        // SAFETY: written in `begin`.
        unsafe { &mut *self.buf.cast::<Header>() }
    }

    /// Writes the kind's fixed body right after the header.
    #[inline(always)]
    pub(crate) fn body<T>(&mut self, body: T) {
        // SAFETY: HEADER_LEN is 8-aligned and every body fits well within EVENT_BUF.
        unsafe { self.buf.add(HEADER_LEN).cast::<T>().write(body) };
    }

    /// Pointer to payload byte `at` (bounded by the caller's masks).
    #[inline(always)]
    pub(crate) fn payload_ptr<T>(&mut self, at: usize) -> *mut u8 {
        // SAFETY: callers keep `at` below EVENT_BUF - HEADER_LEN - size_of::<T>().
        unsafe { self.buf.add(HEADER_LEN + size_of::<T>() + at) }
    }

    /// Copies the path at `pbuf[start..end]` (the path scratch) into the payload
    /// after a `T` body: its last `PATH_MAX` bytes when it is longer (the file name
    /// and its nearest directories matter most), flagged `PATH_TRUNCATED`. Returns
    /// the bytes copied.
    #[inline(always)]
    pub(crate) fn path_payload<T>(&mut self, pbuf: *const u8, start: u32, end: u32) -> u32 {
        let mut len = end.saturating_sub(start);
        let mut from = start;
        if len > PATH_MAX as u32 {
            self.header().flags |= flags::PATH_TRUNCATED;
            from = end - PATH_MAX as u32;
            len = PATH_MAX as u32;
        }
        len &= guard_common::PATH_LEN_MASK;
        // SAFETY: the copy is bounded by masks on both sides.
        unsafe {
            let _ = bpf_probe_read_kernel(
                self.payload_ptr::<T>(0).cast(),
                len,
                pbuf.wrapping_add((from & PATH_MASK) as usize).cast(),
            );
        }
        len
    }

    /// Sends the record: header, a `T` body and `payload_len` payload bytes; unless
    /// the session is over its budget and the record is a plain observation, which
    /// is then dropped and counted. Whether it went into the ring buffer.
    #[inline(always)]
    pub(crate) fn submit<T>(self, payload_len: u32) -> bool {
        let sizes = u64::from(payload_len) << 32 | (HEADER_LEN + size_of::<T>()) as u64;
        let how = self.kind as u64 | u64::from(self.urgent) << 16;
        guard_submit(sizes, self.weight, how) != 0
    }
}

/// Whether the record whose header is `h` carries something user space must see
/// whatever the session's budget: a decision the kernel took, a session start, the
/// root's exit, a report; an exec when user space decides exec kills (argv rules).
#[inline(always)]
fn exempt(h: &Header, exec_wakeup: bool) -> bool {
    let kind = h.kind;
    h.rule != 0
        || h.flags & flags::SESSION_START != 0
        || (kind == EventKind::Exit as u16 && h.flags & flags::ROOT_PROCESS != 0)
        || kind == EventKind::Limit as u16
        || (kind == EventKind::Exec as u16 && exec_wakeup)
}

/// [`Draft::submit`] of the record in this CPU's scratch buffer: `sizes` is its
/// payload's length (high half) and the header's and body's (low half), `weight`
/// the system calls it stands for, `how` its kind (bits 0-15) and whether it is
/// urgent (bit 16). Returns 1 when it went into the ring buffer.
///
/// Global (its own BTF function): the verifier checks the budget, the drop report
/// and the output once per program, not once for every state a program reaches
/// its submit in (the exec program reached it in some 300; see docs/kernels.md).
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn guard_submit(sizes: u64, weight: u64, how: u64) -> i64 {
    let Some(buf) = EVENT_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let header = buf.cast::<Header>();
    let kind = how as u16;
    let cfg = crate::maps::config();
    // SAFETY: this CPU's scratch, its header written by `Draft::begin`.
    let session = unsafe { (*header).session };
    if cfg.limit_rate != 0 {
        // SAFETY: as above.
        let exempt = exempt(unsafe { &*header }, cfg.exec_wakeup != 0);
        match limit::take(session, &cfg, exempt, weight) {
            Take::Drop => return 0,
            Take::Send {
                unreported,
                total,
                over,
            } => {
                if over {
                    // SAFETY: as above.
                    unsafe { (*header).flags |= flags::OVER_LIMIT };
                }
                if unreported > 0 {
                    report(header, unreported, total);
                }
            }
        }
        // SAFETY: as above.
        if kind == EventKind::Exit as u16 && unsafe { (*header).flags } & flags::ROOT_PROCESS != 0 {
            limit::forget(session);
        }
    }
    let payload_len = (sizes >> 32) as u32;
    // SAFETY: as above.
    unsafe { (*header).payload_len = payload_len };
    let len = (sizes as u32 as usize + payload_len as usize) & (EVENT_BUF - 1);
    // SAFETY: len is masked to the scratch buffer's size.
    let record = unsafe { slice::from_raw_parts(buf as *const u8, len) };
    let wakeup = if (how >> 16) & 1 != 0 {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        // SAFETY: as above.
        wakeup_flags(unsafe { &*header }, cfg.exec_wakeup)
    };
    if EVENTS.output::<[u8]>(record, wakeup).is_err() {
        count_n(counter::lost(kind), weight);
        return 0;
    }
    1
}

/// A [`EventKind::Limit`] record, written straight into the ring buffer: the
/// scratch buffer holds the record it goes before, and the stack has no room.
#[repr(C)]
struct LimitRecord {
    header: Header,
    body: LimitBody,
}

/// Reports `dropped` records of the session of the record whose header is `about`.
#[inline(always)]
fn report(about: *const Header, dropped: u64, total: u64) {
    let Some(mut entry) = EVENTS.reserve::<LimitRecord>(0) else {
        count(counter::LOST_BASE + EventKind::Limit as u32);
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reserved ring-buffer slot of LimitRecord's size; `about`
    // points at a header in this CPU's scratch buffer.
    unsafe {
        core::ptr::copy_nonoverlapping(about, &raw mut (*record).header, 1);
        (*record).header.kind = EventKind::Limit as u16;
        (*record).header.flags = flags::OVER_LIMIT;
        (*record).header.payload_len = 0;
        (*record).header.rule = 0;
        (*record).body = LimitBody {
            dropped,
            total,
            reason: RATE,
            child_pid: 0,
        };
    }
    entry.submit(pending_wakeup());
}

/// Reports a child of `session` that the full map of tracked processes could not
/// take (never rate-limited).
#[inline(always)]
pub(crate) fn untracked_child(session: u64, who: u32, child_pid: u32) {
    if let Some(mut draft) = Draft::begin(EventKind::Limit, 0, session, who) {
        draft.body(LimitBody {
            dropped: 0,
            total: 0,
            reason: guard_common::limit::TRACK_FULL,
            child_pid,
        });
        draft.submit::<LimitBody>(0);
    }
}
