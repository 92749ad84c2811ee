//! Repeated opens. A build or a test suite opens the same files again and again; a
//! thread that opens a file it opened before, with the same flags, while nothing that
//! decided that open's verdict has changed, costs a lookup and a counter instead of
//! the path walk, the rules' checks and a record. The count reaches user space in an
//! open record flagged [`flags::REPEATS`] (path and flags of the first open, the
//! number of further opens in [`OpenBody::repeats`]): every second while the file is
//! busy, when its slot is taken by another file, and when the thread execs or exits.
//!
//! Only opens that succeeded, that no kernel rule stopped or matched, that did not
//! taint the process, and whose record was sent are remembered. A remembered open
//! stands for a new one only when all of these are unchanged:
//! - the thread (its start time) and its session, role and taint (`Tracked::flags`);
//! - the file as named where it was opened: the dentry and mount, the dentry's parent,
//!   name hash and length, and the inode number;
//! - the open flags;
//! - the file system's names: [`epoch::FILES`] moves before and after every rename,
//!   link, unlink, rmdir and mount change on the host ([`names_change`],
//!   [`tree_change`], [`mounts_change`]), so a file moved or linked into a
//!   protected directory is judged again at its next open;
//! - the rules: [`epoch::RULES`] moves at every policy load and identity refresh.
//!
//! Files under /proc and /sys are never remembered (guard's own files are there).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_probe_read_kernel},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};
use guard_common::{EventKind, OpenBody, counter, epoch, flags};

use crate::{
    core_read::{self, FileName, Task},
    emit::Draft,
    maps::{OPEN_EPOCH, PATH_MASK, TREE_DIRS, TREE_EPOCH, TREE_MOUNTS, count_n},
};

/// Files a thread's cache holds.
const SLOTS: usize = 4;
/// Bytes of a remembered path: longer paths are not remembered.
const PATH: usize = 256;
/// A busy file's count is sent at least this often.
const FLUSH_NS: u64 = 1_000_000_000;
/// Opens between looks at the clock.
const CLOCK_EVERY: u64 = 1024;

/// One remembered open.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    name: FileName,
    /// The open flags as passed.
    flags: u64,
    /// `RULES << 32 | FILES` when it was judged.
    epoch: u64,
    /// The descriptor the last counted open returned.
    fd: i64,
    /// Opens counted and not yet sent.
    count: u64,
    /// When the count was last sent (or the open reported).
    since: u64,
    /// `Tracked::flags` of the process when it was judged.
    who: u32,
    call: u32,
    mode: u32,
    /// Bytes of `path`; 0: the slot is empty.
    len: u32,
    path: [u8; PATH],
}

/// A thread's remembered opens, by thread id.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Thread {
    /// The thread's start time: an entry of a thread id that was reused is stale.
    start_ns: u64,
    session: u64,
    /// The slot to take next when all are busy.
    next: u32,
    _pad: u32,
    slots: [Slot; SLOTS],
}

/// Not an LRU: an eviction would lose counts silently. A full map remembers no more
/// threads (their opens are reported one by one). Entries leave when their thread
/// exits or execs.
#[map]
static OPEN_CACHE: HashMap<u32, Thread> = HashMap::with_max_entries(2048, 0);

/// A zeroed [`Thread`] to insert from (too large for the stack).
#[map]
static OPEN_CACHE_BLANK: PerCpuArray<Thread> = PerCpuArray::with_max_entries(1, 0);

/// An open at its exit, as the cache keys it.
pub(crate) struct Open {
    pub name: FileName,
    pub flags: u64,
    pub epoch: u64,
    pub who: u32,
    pub session: u64,
}

impl Open {
    /// The open of `file` with `flags` by a process whose Tracked entry has `who` and
    /// `session`; `None` while the daemon has not enabled the cache (no rules yet) or
    /// when the file cannot be read.
    #[inline(always)]
    pub(crate) fn of(
        file: *const core::ffi::c_void,
        flags: u64,
        who: u32,
        session: u64,
    ) -> Option<Self> {
        let rules = *OPEN_EPOCH.get(epoch::RULES)?;
        if rules == 0 {
            return None;
        }
        let files = *OPEN_EPOCH.get(epoch::FILES)?;
        let name = core_read::file_name(file);
        if name.dentry == 0 {
            return None;
        }
        Some(Self {
            name,
            flags,
            epoch: (rules << 32) | (files & 0xffff_ffff),
            who,
            session,
        })
    }

    #[inline(always)]
    fn same_file(&self, s: &Slot) -> bool {
        s.len != 0 && s.name == self.name && s.flags == self.flags
    }
}

/// Counts `open` (which returned `fd`) when it repeats one the thread `tid` (the
/// current task) had reported: then nothing else is to be done for it.
#[inline(always)]
pub(crate) fn counted(tid: u32, open: &Open, fd: i64) -> bool {
    let Some(t) = OPEN_CACHE.get_ptr_mut(tid) else {
        return false;
    };
    // SAFETY: this thread's entry; only this thread (or its exit) touches it.
    let t = unsafe { &mut *t };
    if t.start_ns != core_read::current_start_ns() || t.session != open.session {
        return false;
    }
    for s in t.slots.iter_mut() {
        if open.same_file(s) && s.epoch == open.epoch && s.who == open.who {
            s.count += 1;
            s.fd = fd;
            if s.count % CLOCK_EVERY == 0 {
                // SAFETY: helper without arguments.
                let now = unsafe { bpf_ktime_get_boot_ns() };
                if now.wrapping_sub(s.since) >= FLUSH_NS {
                    send(s, t.session);
                }
            }
            return true;
        }
    }
    false
}

/// Remembers `open`, reported just now with `call`, `mode` and the path at
/// `pbuf[start..end]` (the path scratch), in the cache of the thread `tid`.
#[inline(always)]
pub(crate) fn remember(
    tid: u32,
    task: *const Task,
    open: &Open,
    (call, mode): (u32, u32),
    pbuf: *const u8,
    (start, end): (u32, u32),
) {
    let len = end.wrapping_sub(start);
    if len == 0 || len >= PATH as u32 {
        return;
    }
    let path = pbuf.wrapping_add((start & PATH_MASK) as usize);
    let mut head = [0u8; 8];
    // SAFETY: reads 8 bytes of this CPU's path scratch (the path buffer is far longer).
    unsafe { bpf_probe_read_kernel(head.as_mut_ptr().cast(), 8, path.cast()) };
    if head.starts_with(b"/proc/") || head.starts_with(b"/sys/") || head[..5] == *b"/proc" {
        return;
    }
    let start_ns = core_read::start_ns(task);
    let t = match OPEN_CACHE.get_ptr_mut(tid) {
        Some(t) => t,
        None => {
            let Some(blank) = OPEN_CACHE_BLANK.get_ptr(0) else {
                return;
            };
            // By reference: a copy would not fit the 512-byte stack.
            // SAFETY: a per-CPU value nothing writes (all zeroes).
            #[expect(
                clippy::needless_borrows_for_generic_args,
                reason = "by reference: a copy would not fit the 512-byte stack"
            )]
            if OPEN_CACHE
                .insert(tid, unsafe { &*blank }, u64::from(BPF_NOEXIST))
                .is_err()
            {
                return;
            }
            let Some(t) = OPEN_CACHE.get_ptr_mut(tid) else {
                return;
            };
            // SAFETY: just inserted for this thread.
            unsafe {
                (*t).start_ns = start_ns;
                (*t).session = open.session;
            }
            t
        }
    };
    // SAFETY: this thread's entry; only this thread (or its exit) touches it.
    let t = unsafe { &mut *t };
    if t.start_ns != start_ns {
        // Left by an earlier thread of this id whose exit was not seen.
        drop_stale(t);
        t.start_ns = start_ns;
    }
    if t.session != open.session {
        send_all(t);
        t.session = open.session;
    }
    let mut pick = SLOTS;
    for (i, s) in t.slots.iter().enumerate() {
        if s.len == 0 || open.same_file(s) {
            pick = i;
            break;
        }
    }
    if pick == SLOTS {
        pick = t.next as usize % SLOTS;
        t.next = t.next.wrapping_add(1);
    }
    let session = t.session;
    let s = &mut t.slots[pick % SLOTS];
    send(s, session);
    s.name = open.name;
    s.flags = open.flags;
    s.epoch = open.epoch;
    s.who = open.who;
    s.call = call;
    s.mode = mode;
    s.fd = 0;
    s.count = 0;
    // SAFETY: helper without arguments.
    s.since = unsafe { bpf_ktime_get_boot_ns() };
    // Read back through memory: the compiler, knowing len < PATH, would drop the
    // mask the verifier needs to bound the copy.
    // SAFETY: a local.
    let n = unsafe { core::ptr::read_volatile(&len) } & (PATH as u32 - 1);
    // SAFETY: n < PATH, the slot's path holds PATH bytes; the source is this CPU's
    // path scratch.
    let copied = unsafe { bpf_probe_read_kernel(s.path.as_mut_ptr().cast(), n, path.cast()) };
    s.len = if copied == 0 { len } else { 0 };
}

/// Sends the counts of thread `tid` and forgets it: it exits or execs.
#[inline(always)]
pub(crate) fn forget_thread(tid: u32, task: *const Task) {
    let Some(t) = OPEN_CACHE.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: this thread's entry.
    let t = unsafe { &mut *t };
    if t.start_ns == core_read::start_ns(task) {
        send_all(t);
    } else {
        drop_stale(t);
    }
    let _ = OPEN_CACHE.remove(tid);
}

#[inline(always)]
fn send_all(t: &mut Thread) {
    let session = t.session;
    for s in t.slots.iter_mut() {
        send(s, session);
    }
}

/// Counts the opens of a thread that is gone as unreported (the current task is
/// another one: a record would name it).
#[inline(always)]
fn drop_stale(t: &mut Thread) {
    for s in t.slots.iter_mut() {
        if s.count > 0 {
            count_n(counter::REPEATS_UNREPORTED, s.count);
        }
        s.count = 0;
        s.len = 0;
    }
}

/// Sends the slot's count, if any, as a [`flags::REPEATS`] open record of the
/// current task.
#[inline(never)]
fn send(s: &mut Slot, session: u64) {
    if s.count == 0 || s.len == 0 {
        return;
    }
    let n = s.count;
    s.count = 0;
    // SAFETY: helper without arguments.
    s.since = unsafe { bpf_ktime_get_boot_ns() };
    let Some(mut draft) = Draft::begin(EventKind::Open, flags::REPEATS, session, s.who) else {
        count_n(counter::REPEATS_UNREPORTED, n);
        return;
    };
    let len = s.len & (PATH as u32 - 1);
    // SAFETY: len < PATH bytes into the payload (the event scratch is far larger).
    unsafe {
        bpf_probe_read_kernel(
            draft.payload_ptr::<OpenBody>(0).cast(),
            len,
            s.path.as_ptr().cast(),
        );
    }
    draft.body(OpenBody {
        flags: s.flags,
        ret: s.fd,
        call: s.call,
        mode: s.mode,
        repeats: n,
        // The count stands for opens judged before; their file's type is not kept.
        file_type: 0,
        _reserved: [0; 3],
    });
    // A record the ring buffer had no room for (or over the session's budget) is
    // counted as `n` lost (or dropped) opens: the opens it stood for.
    draft.standing_for(n);
    draft.submit::<OpenBody>(len);
}

/// Attached to the entry and exit of every system call that gives a file another
/// name without moving a directory (link, unlink: user space lists them):
/// [`epoch::FILES`] moves, so no remembered open outlives a change of the names it
/// was judged by. Before the change (entry): an open judged after it sees the new
/// epoch; after it (exit): an open judged while it ran sees a newer one next time.
#[tracepoint(category = "syscalls", name = "sys_enter_link")]
pub(crate) fn names_change(_ctx: TracePointContext) -> u32 {
    bump(&OPEN_EPOCH, epoch::FILES);
    0
}

/// [`names_change`] for the system calls that may move or remove a directory
/// (rename, rmdir, `unlinkat`, which removes directories too: user space lists
/// them): the directories' epoch ([`TREE_EPOCH`]) moves as well, so no directory
/// the identity walk found clear (enforce/identity.rs) stays clear past a change of
/// what lies above it, or of which directory its inode number is.
#[tracepoint(category = "syscalls", name = "sys_enter_rename")]
pub(crate) fn tree_change(_ctx: TracePointContext) -> u32 {
    bump(&TREE_EPOCH, TREE_DIRS);
    bump(&OPEN_EPOCH, epoch::FILES);
    0
}

/// [`tree_change`] for the system calls that change the mounts: the mounts' epoch
/// moves as well, so no path the file checks found nothing for
/// (`enforce::guard_file_check`) stays so past a mount that puts a file of another
/// name at that path (a bind mount of one file over another).
#[tracepoint(category = "syscalls", name = "sys_enter_mount")]
pub(crate) fn mounts_change(_ctx: TracePointContext) -> u32 {
    bump(&TREE_EPOCH, TREE_MOUNTS);
    bump(&TREE_EPOCH, TREE_DIRS);
    bump(&OPEN_EPOCH, epoch::FILES);
    0
}

#[inline(always)]
fn bump(map: &Array<u64>, at: u32) {
    if let Some(e) = map.get_ptr_mut(at) {
        // SAFETY: an 8-aligned u64 of an array map; an atomic add.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(e, 1) };
    }
}
