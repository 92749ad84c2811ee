//! The maps shared by every program, and with user space (by name).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use guard_common::{
    AgentName, Bucket, Config, DelegateArm, DnsOrig, DnsStub, FETCHED_MAX, Fetched, FileId,
    IdentityTail, NetBody, NetData, PathData, RuleRef, SessionVar, StubPeer, Tracked, counter,
    daemon_state, dns_stub, epoch,
    rules::{INODE_RULES_MAX, InodeKey},
};

/// Tracked processes by tgid. Children are added at fork, before they run; entries
/// leave when the last thread exits. Not an LRU: a full map must be counted
/// (`counter::TRACK_FULL`), never evict a live session member silently.
#[map]
pub(crate) static TRACKED: HashMap<u32, Tracked> = HashMap::with_max_entries(65536, 0);

/// The entry of process `tgid` when it is tracked (a copy): the lookup every hook
/// makes first, so that a process outside every session pays it and nothing more.
#[inline(always)]
pub(crate) fn tracked(tgid: u32) -> Option<Tracked> {
    // SAFETY: a copy of the value, read while the program runs (the kernel keeps
    // a hash map's values alive under RCU until it returns).
    unsafe { TRACKED.get(tgid) }.copied()
}

/// The current process's entry when it is tracked: [`tracked`] of its tgid.
#[inline(always)]
pub(crate) fn current_tracked() -> Option<Tracked> {
    tracked((aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32)
}

/// Whether process `tgid` is tracked (a presence check: nothing is copied).
#[inline(always)]
pub(crate) fn is_tracked(tgid: u32) -> bool {
    // SAFETY: presence check only.
    unsafe { TRACKED.get(tgid) }.is_some()
}

/// Program names (as `comm`) whose exec starts a session.
#[map]
pub(crate) static AGENTS: HashMap<AgentName, u32> = HashMap::with_max_entries(256, 0);

/// Agent programs by the name of their file (cut to 15 bytes like `comm`): an exec
/// of one inside a session decides the agent role (`guard_common::role`). Values:
/// `role::PROGRAM_*` bits. Never starts a session.
#[map]
pub(crate) static AGENT_PROGRAMS: HashMap<AgentName, u32> = HashMap::with_max_entries(256, 0);

/// The environment variables that carry agents' session ids (`CODEX_THREAD_ID`,
/// `CLAUDE_CODE_SESSION_ID`, …), from the agents' profiles: a tool's exec record
/// carries the first one its environment holds.
#[map]
pub(crate) static SESSION_VARS: Array<SessionVar> =
    Array::with_max_entries(guard_common::SESSION_VARS_MAX, 0);

/// cgroup v2 ids whose processes start a session at their first exec: the cgroups
/// of the containers the policy chose, and every cgroup below them.
#[map]
pub(crate) static AGENT_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(16384, 0);

/// Sizes of the files exec rules name by digest (`guard_common::DIGEST_SIZES_MAX`):
/// a session's exec of a file of one of these sizes is held (SIGSTOP) until user
/// space has hashed it. Values unused.
#[map]
pub(crate) static DIGEST_SIZES: HashMap<u64, u32> =
    HashMap::with_max_entries(guard_common::DIGEST_SIZES_MAX, 0);

/// Programs (as `comm` after their exec, cut to 15 bytes) whose exec records
/// wake the daemon at once: the programs of the exec rules user space decides
/// (`Config::exec_wakeup`). Values unused.
#[map]
pub(crate) static EXEC_WAKE: HashMap<AgentName, u32> =
    HashMap::with_max_entries(guard_common::rules::EXEC_WAKE_MAX, 0);

/// Processes held at exec for their digest, by tgid: when they were stopped
/// (boot ns). User space removes each entry as it decides.
#[map]
pub(crate) static HELD: LruHashMap<u32, u64> =
    LruHashMap::with_max_entries(guard_common::HELD_MAX, 0);

/// Events to user space. 8 MiB: about 60,000 open events of a typical path length.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Lost records by kind, and other counters (`guard_common::counter`).
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

/// User space's own state, kept in the pinned maps so a restarted daemon knows when
/// the last one stopped and what it had reported (`guard_common::daemon_state`).
/// No program reads it.
#[map]
pub(crate) static DAEMON: Array<u64> = Array::with_max_entries(daemon_state::LEN, 0);

/// An open's arguments, and its process's session and flags, as its exit needs
/// them.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct PendingOpen {
    pub filename: u64,
    pub flags: u64,
    pub dfd: i64,
    /// The process's `Tracked::session` and `Tracked::flags` when the open was
    /// seen: the exit needs no second look at [`TRACKED`]. (A flag another thread
    /// sets while the open runs — taint, network — applies from the thread's next
    /// open, as it would had it been set just after this one.)
    pub session: u64,
    pub who: u32,
    /// An `OpenCall` number, or [`PendingOpen::DONE`].
    pub call: u32,
    pub mode: u32,
    pub _pad: u32,
}

impl PendingOpen {
    /// `call` of an entry whose open has exited: no open is in flight.
    #[cfg(feature = "compat")]
    pub(crate) const DONE: u32 = u32::MAX;

    /// The open by `call` of a process whose entry is `tracked`.
    #[inline(always)]
    pub(crate) fn new(
        tracked: &Tracked,
        call: guard_common::OpenCall,
        dfd: i64,
        filename: u64,
        (flags, mode): (u64, u64),
    ) -> Self {
        Self {
            filename,
            flags,
            dfd,
            session: tracked.session,
            who: tracked.flags,
            call: call as u32,
            mode: mode as u32,
            _pad: 0,
        }
    }
}

/// The compat build's opens seen at their entry, finished at their exit; keyed by
/// thread id (the default build reads an open's arguments at its exit).
///
/// Not an LRU: an eviction would silently drop another thread's open in flight, and
/// with it the check of the rules at its exit. A thread's entry is written in place
/// at each open's entry and marked done ([`PendingOpen::DONE`]) at its exit (cheaper
/// than an insert and a delete per open); it leaves when the thread exits
/// (`sched_process_exit`), so the map holds at most one entry per tracked thread that
/// opened something; a full map is counted (`counter::PENDING_FULL`) at the insert
/// that fails.
#[cfg(feature = "compat")]
#[map]
pub(crate) static PENDING_OPEN: HashMap<u32, PendingOpen> = HashMap::with_max_entries(16384, 0);

/// The default build's open at its exit, passed through this CPU's slot: values read
/// back from a map are unknown to the verifier, so the paths after the four system
/// calls' decodings (file.rs `exiting_open`) are verified once, not once per call.
#[cfg(not(feature = "compat"))]
#[map]
pub(crate) static OPEN_ARGS: PerCpuArray<PendingOpen> = PerCpuArray::with_max_entries(1, 0);

/// A destination seen by a cgroup sock_addr hook, reported with the result at the
/// system call's exit; keyed by thread id. Not an LRU, as [`PENDING_OPEN`].
#[map]
pub(crate) static PENDING_NET: HashMap<u32, PendingNet> = HashMap::with_max_entries(16384, 0);

/// A Unix socket name a tracked thread passed to `connect` or `sendto`, noted at the
/// call's entry for its exit; keyed by thread id. An LRU: an entry whose exit
/// nobody saw (a thread killed in the call) must not fill it. Not pinned: a call in
/// flight across a daemon restart goes unreported (its rule still applied).
#[map]
pub(crate) static PENDING_UNIX: LruHashMap<u32, PendingUnix> =
    LruHashMap::with_max_entries(4096, 0);

/// Bytes of a noted Unix socket name: `sun_path` (108) rounded up to a power of two,
/// so that a length masked with `UNIX_NAME - 1` stays inside.
pub(crate) const UNIX_NAME: usize = 128;

/// See [`PENDING_UNIX`].
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct PendingUnix {
    /// The socket's descriptor.
    pub fd: u32,
    /// A `guard_common::UnixCall` number.
    pub call: u32,
    /// Bytes of `name` given (`addrlen` minus the family), at most 108.
    pub len: u32,
    /// What the BPF-LSM hook refused it by (`guard_common::rules::enforced`), set by
    /// the hook; 0 for nothing.
    pub rule: u32,
    /// The listener the BPF-LSM hook found on the other side (0: none seen), and its
    /// effective uid: the exit of a refused connect has no peer to read.
    pub peer_pid: u32,
    pub peer_uid: u32,
    /// `sun_path` as given: a NUL-terminated path, or a 0 byte and an abstract name.
    pub name: [u8; UNIX_NAME],
}

/// Record budgets of the sessions (`[limits]`), by session id. Created at a
/// session's first limited record and removed at its root's exit. An LRU: only a
/// bucket idle while 8192 other sessions sent records is evicted, and its drops
/// stay counted in `counter::OVER_LIMIT` (only their session is forgotten).
#[map]
pub(crate) static SESSION_LIMITS: LruHashMap<u64, Bucket> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU scratch: an event is assembled here, then copied to the ring buffer at its
/// exact size. Too big for the 512-byte BPF stack.
pub(crate) const EVENT_BUF: usize = 16384;
#[repr(C)]
pub(crate) struct EventBuf {
    pub bytes: [u8; EVENT_BUF],
}
#[map]
pub(crate) static EVENT_SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch for path walks, which write components back to front ending at
/// [`PATH_END`]; a failed relative open appends the string it passed after that.
pub(crate) const PATH_BUF: usize = 16384;
/// Mask for offsets into the path scratch (the shim masks its walk with the same
/// value, WALK_MASK, leaving room for a 255-byte name past any masked offset).
pub(crate) const PATH_MASK: u32 = (PATH_BUF / 2 - 1) as u32;
pub(crate) const PATH_END: u32 = 4096;
#[repr(C)]
pub(crate) struct PathBuf {
    pub bytes: [u8; PATH_BUF],
}
#[map]
pub(crate) static PATH_SCRATCH: PerCpuArray<PathBuf> = PerCpuArray::with_max_entries(1, 0);

/// The compat build's path walk in progress (shim.c `struct walk_state`): its steps
/// run as chunks of a global function, which reads it here (core_read.rs).
#[cfg(feature = "compat")]
#[repr(C)]
pub(crate) struct WalkState {
    pub d: u64,
    pub mnt: u64,
    pub root: u64,
    pub off: u32,
    pub depth: u32,
    pub truncated: u32,
    pub stopped: u32,
}
#[cfg(feature = "compat")]
#[map]
pub(crate) static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

pub(crate) fn count(index: u32) {
    count_n(index, 1);
}

/// Adds `n` to counter `index`.
#[inline(always)]
pub(crate) fn count_n(index: u32, n: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += n };
    }
}

/// A destination noted by a sock_addr hook, with the record kind to report.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct PendingNet {
    pub body: NetBody,
    pub kind: u16,
    /// What the hook enforced (`guard_common::rules::enforced`), for the event.
    pub rule: u16,
    /// Header flags for the event (`guard_common::flags::REDIRECTED`).
    pub flags: u32,
}

/// guard's daemon: each of its thread ids (its tgid included) → its tgid. The daemon
/// puts itself and its threads in at start; the kernel adds the threads it creates
/// later (`sched_process_fork`) and removes each thread at its exit, so no entry
/// outlives the thread it names (a dead daemon's ids cannot point at a process that
/// reuses them). Tracked processes may not signal, trace or read these
/// (`tamper`). Sized for the daemon's runtime threads and blocking pool.
#[map]
pub(crate) static GUARD_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// Identity of guard's pin directory (`guard_common::guard_pin`): tracked processes
/// may not open it or change anything in it.
#[map]
pub(crate) static GUARD_PIN: Array<u64> = Array::with_max_entries(guard_common::guard_pin::LEN, 0);

/// Where guard's resolver listens, by network namespace (inode number): a tracked
/// process's DNS in that namespace goes there (`dns.rs`). Written by user space.
#[map]
pub(crate) static DNS_STUB: HashMap<u32, DnsStub> = HashMap::with_max_entries(1024, 0);

/// `guard_common::dns_stub` slots: whether sessions' DNS goes to guard's resolver,
/// and the rule that refuses it where no resolver of guard's runs.
#[map]
pub(crate) static DNS_CONFIG: Array<u32> = Array::with_max_entries(dns_stub::LEN, 0);

/// Sockets whose DNS the sock_addr hooks pointed at guard's resolver, by socket
/// cookie: where it was sent (`dns.rs`), for the answers' source. An LRU: a socket's
/// entry is not removed when it closes.
#[map]
pub(crate) static DNS_ORIG: LruHashMap<u64, DnsOrig> = LruHashMap::with_max_entries(16384, 0);

/// Who sent the DNS message guard's resolver gets from a loopback port
/// (`guard_common::stub_peer_key`), written as the packet leaves the session's
/// socket (`flow.rs`). An LRU: ports are reused.
#[map]
pub(crate) static STUB_PEERS: LruHashMap<u32, StubPeer> = LruHashMap::with_max_entries(8192, 0);

/// Known spawners outside every session (tmux and screen servers, sshd, dockerd,
/// …: processes that run commands on request), by tgid, kept by user space. The
/// value is what a session's connect to one gets: 0 reported (and its next fork
/// joins the session, `DELEGATE_ARM`), or the rule bits of a refusal
/// (`guard_common::rules::enforced::DENIED` and the rule index plus one).
#[map]
pub(crate) static SPAWNERS: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// Ports on which a known spawner listens on loopback (sshd on 127.0.0.1:22),
/// mapped to its tgid, kept by user space.
#[map]
pub(crate) static SPAWNER_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(1024, 0);

/// Spawners a session process just connected to, by tgid: their next fork before
/// the deadline joins that session as a delegate (`process.rs`). An LRU: an arm
/// no fork used must not fill it.
#[map]
pub(crate) static DELEGATE_ARM: LruHashMap<u32, DelegateArm> =
    LruHashMap::with_max_entries(4096, 0);

/// Arms spawner `tgid` for `tracked`'s session: its next fork within
/// `guard_common::DELEGATE_WINDOW_NS` joins the session.
#[inline(always)]
pub(crate) fn arm_delegate(tgid: u32, tracked: &Tracked, now_ns: u64) {
    let arm = DelegateArm {
        session: tracked.session,
        deadline_ns: now_ns + guard_common::DELEGATE_WINDOW_NS,
        root_pid: tracked.root_pid,
        flags: tracked.flags,
    };
    let _ = DELEGATE_ARM.insert(tgid, arm, 0);
}

// The policy's kernel tables (enforce.rs reads them; user space fills them).

#[map]
pub(crate) static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// The policy's settings (`CONFIG`), defaults when user space has not set them.
#[inline(always)]
pub(crate) fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

/// Path and file-name rules (see `guard_common::rules::PathData`).
#[map]
pub(crate) static PATH_RULES: LpmTrie<PathData, RuleRef> = LpmTrie::with_max_entries(16384, 0);

/// Network rules by destination prefix.
#[map]
pub(crate) static NET_RULES: LpmTrie<NetData, RuleRef> = LpmTrie::with_max_entries(8192, 0);

/// The `[taint]` allowlist of tainted processes' egress, when the policy denies it
/// (see `guard_common::rules::NetData`).
#[map]
pub(crate) static TAINT_NET: LpmTrie<NetData, RuleRef> = LpmTrie::with_max_entries(4096, 0);

/// File rules on concrete files and directories by identity (see
/// `guard_common::rules::InodeKey`): two generations of each kind's entries.
#[map]
pub(crate) static INODE_RULES: HashMap<InodeKey, RuleRef> =
    HashMap::with_max_entries(INODE_RULES_MAX, 0);

/// Entries of `INODE_RULES` by generation: 0 for the generation in force means no
/// identity walk at all.
#[map]
pub(crate) static INODE_COUNT: Array<u32> = Array::with_max_entries(2, 0);

/// An open the BPF-LSM `file_open` hook refused by identity, by thread id, for the
/// open's exit to report (the refused open has no file to walk there). An LRU: an
/// entry left by an open that no syscall exit sees (io_uring) must not fill it.
#[map]
pub(crate) static IDENT_DENIED: LruHashMap<u32, IdentityTail> =
    LruHashMap::with_max_entries(4096, 0);

// The open cache's epochs (repeat.rs).

/// [`epoch::FILES`] and [`epoch::RULES`] (see `crate::repeat`).
#[map]
pub(crate) static OPEN_EPOCH: Array<u64> = Array::with_max_entries(epoch::LEN, 0);

/// Epochs of the file system's shape, each moved before and after every change of
/// its kind on the host: [`TREE_DIRS`] by `crate::repeat::tree_change` (a rename, a
/// directory's removal) and by `mounts_change`, [`TREE_MOUNTS`] by `mounts_change`
/// (mount, umount, move_mount, pivot_root). Not by a link or an unlink of a file: no
/// directory's place changes then. Not pinned: each program set has its own, as it
/// has its own [`IDENT_CLEAR`] and [`PATH_CLEAR`], and both programs are attached
/// before any program that reads them (user space's attach table).
#[map]
pub(crate) static TREE_EPOCH: Array<u64> = Array::with_max_entries(2, 0);
/// [`TREE_EPOCH`]'s entry for moves of directories (and mounts).
pub(crate) const TREE_DIRS: u32 = 0;
/// [`TREE_EPOCH`]'s entry for mounts.
pub(crate) const TREE_MOUNTS: u32 = 1;

/// Directories known to have no rule on a concrete directory above them, up to their
/// file system's root, nor on themselves: their `InodeKey` (generation 0, kind
/// `TREE`) and the epochs they were walked under (`RULES << 32 | TREE_DIRS`). An open
/// of a file in one of them looks its file up and stops there, instead of walking
/// every directory above it (enforce/identity.rs). Not pinned (see [`TREE_EPOCH`]).
#[map]
pub(crate) static IDENT_CLEAR: LruHashMap<InodeKey, u64> = LruHashMap::with_max_entries(8192, 0);

/// A path the file checks looked up found nothing for (enforce/mod.rs
/// `guard_file_check`): the path, zero-padded, as the key. Paths longer than
/// [`PathKey`] holds are not remembered. Not pinned (see [`TREE_EPOCH`]).
#[map]
pub(crate) static PATH_CLEAR: LruHashMap<PathKey, PathClear> =
    LruHashMap::with_max_entries(16384, 0);

/// A value of [`PATH_CLEAR`].
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct PathClear {
    /// `RULES << 32 | TREE_MOUNTS` when the checks found nothing.
    pub epoch: u64,
    /// The checks that found nothing: bit `2 * taint + writes`.
    pub checks: u64,
}

/// Bytes of a path [`PATH_CLEAR`] remembers.
pub(crate) const PATH_KEY_BYTES: usize = 120;

/// A key of [`PATH_CLEAR`]: the path's length and bytes, zero past them.
#[repr(C)]
pub(crate) struct PathKey {
    pub len: u64,
    pub bytes: [u64; PATH_KEY_BYTES / 8],
}

/// The key of the path being checked, built in place (too big for the stack), and
/// what [`PATH_CLEAR`] held for it: the taint check of an open that follows its
/// kill check on the same path reads it from here.
#[repr(C)]
pub(crate) struct PathKeyScratch {
    pub key: PathKey,
    /// The key holds the last checked path.
    pub built: u64,
    /// [`PATH_CLEAR`]'s value for it (zero: none).
    pub seen: PathClear,
    /// `OPEN_EPOCH`'s rules epoch, read before the check read the rules.
    pub rules: u64,
    /// [`TREE_MOUNTS`] as read before the walk that gave the path (`enforce::before_walk`):
    /// what the path is remembered under. An older value (a walk's that had no check
    /// after it) is as good, only staler.
    pub mounts: u64,
}

#[map]
pub(crate) static PATH_KEY: PerCpuArray<PathKeyScratch> = PerCpuArray::with_max_entries(1, 0);

// The route hooks this daemon attached (route.rs).

/// Which route hooks of the BPF-LSM tier this daemon attached (bit `1 << route`).
/// A `deny` rule leaves a route to its LSM hook only when that hook runs; else the
/// tracepoint kills. Not pinned: each daemon's programs read their daemon's copy.
#[map]
pub(crate) static ROUTE_HOOKS: Array<u32> = Array::with_max_entries(1, 0);

// Downloads, and the execs held for them (fetched.rs).

/// Files sessions downloaded, by identity.
#[map]
pub(crate) static FETCHED: LruHashMap<FileId, Fetched> =
    LruHashMap::with_max_entries(FETCHED_MAX, 0);

/// Processes held at their exec for a download (`held_for` bits), by tgid: user
/// space finds them here (the exec record says nothing of it: see
/// `crate::fetched::at_exec`).
#[map]
pub(crate) static HELD_FOR: LruHashMap<u32, u32> =
    LruHashMap::with_max_entries(guard_common::HELD_MAX, 0);
