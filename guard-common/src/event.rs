//! Records the kernel writes to the ring buffer.

/// Length of `task_struct::comm`, NUL included.
pub const COMM_LEN: usize = 16;
/// Longest path a record carries (the kernel's `PATH_MAX`, NUL excluded).
pub const PATH_MAX: usize = 4095;
/// Longest argv block (NUL-separated arguments) an exec record carries.
pub const ARGV_MAX: usize = 4095;
/// Deepest directory nesting the kernel walks when it resolves a path.
pub const PATH_DEPTH: usize = 96;
/// A path's length masked for the verifier (`len & PATH_LEN_MASK`): a bound it
/// can follow through arithmetic, where a `min` alone is lost; never above
/// [`PATH_MAX`].
pub const PATH_LEN_MASK: u32 = 0xfff;
const _: () = assert!(PATH_LEN_MASK as usize == PATH_MAX);
/// An argv block's length masked for the verifier, as [`PATH_LEN_MASK`].
pub const ARGV_LEN_MASK: u32 = 0xfff;
const _: () = assert!(ARGV_LEN_MASK as usize == ARGV_MAX);
/// `EPERM`, what a refusing LSM hook returns (negated).
pub const EPERM: i32 = 1;
/// `SIGKILL`, what the kernel programs send.
pub const SIGKILL: u32 = 9;
/// open(2)'s `O_PATH`: a handle that neither reads nor writes.
pub const O_PATH: u64 = 0o10000000;

/// Stable numeric kinds of ring-buffer records. Numbers are never reused;
/// retired kinds are listed here with the release that retired them.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "protocol",
    derive(strum::IntoStaticStr, strum::VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum EventKind {
    /// A tracked process replaced its image ([`ExecBody`], then exe and argv bytes).
    Exec = 1,
    /// A tracked process opened (or failed to open) a file ([`OpenBody`], then the path).
    Open = 2,
    /// A tracked process connected a socket ([`NetBody`]).
    Connect = 3,
    /// A tracked process sent a datagram to an explicit address ([`NetBody`]).
    Send = 4,
    /// A tracked process created a child process ([`ForkBody`]).
    Fork = 5,
    /// The last thread of a tracked process exited ([`ExitBody`]).
    Exit = 6,
    /// The kernel could not deliver records of a session, or could not track one of
    /// its children ([`LimitBody`]).
    Limit = 8,
    /// A tracked process tried to signal, trace, read or blind guard itself, and
    /// was refused or killed ([`TamperBody`], then the path for opens).
    Tamper = 9,
    /// A tracked process took a route around the hooks of opens, execs or the
    /// network that guard refuses or reports on its own ([`RouteBody`], then the path
    /// of the file involved, if any): io_uring, open_by_handle_at, a raw or packet
    /// socket, an executable mapping a rule forbids (a program run by the dynamic
    /// loader).
    Route = 10,
    /// Bytes a tracked socket sent and received, reported periodically and when the
    /// socket is released ([`FlowBody`]). The header is the process that tagged the
    /// socket (its connect or send), whichever process uses the socket later.
    Flow = 11,
    /// A DNS message on a tracked socket to or from port 53 (UDP or TCP): a query
    /// a session process sent, or the answer it received ([`DnsBody`], then up to
    /// [`DNS_PAYLOAD_MAX`] bytes of the message). The header is the process that
    /// tagged the socket, like [`EventKind::Flow`].
    Dns = 12,
    /// A tracked process connected to, or sent a datagram to an explicit address of,
    /// a Unix domain socket ([`UnixBody`], then the socket's name: the path of the
    /// socket file it reached, resolved in the kernel; or, with
    /// [`flags::PATH_UNRESOLVED`], the name as the process gave it, `@name` for an
    /// abstract one).
    Unix = 13,
}

impl EventKind {
    /// Every kind, in numeric order.
    pub const ALL: [Self; 12] = [
        Self::Exec,
        Self::Open,
        Self::Connect,
        Self::Send,
        Self::Fork,
        Self::Exit,
        Self::Limit,
        Self::Tamper,
        Self::Route,
        Self::Flow,
        Self::Dns,
        Self::Unix,
    ];

    /// Decodes a kind number; `None` for numbers this build does not know.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Open,
            3 => Self::Connect,
            4 => Self::Send,
            5 => Self::Fork,
            6 => Self::Exit,
            8 => Self::Limit,
            9 => Self::Tamper,
            10 => Self::Route,
            11 => Self::Flow,
            12 => Self::Dns,
            13 => Self::Unix,
            _ => return None,
        })
    }

    /// The lower-case name used in JSON events and metrics.
    #[cfg(feature = "protocol")]
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Bits of [`Header::flags`].
pub mod flags {
    /// This exec made the process the root of a new session (agent name matched).
    pub const SESSION_START: u16 = 1 << 0;
    /// The path payload was cut to fit; it holds the last components.
    pub const PATH_TRUNCATED: u16 = 1 << 1;
    /// The argv payload was cut to fit; it holds the first arguments.
    pub const ARGV_TRUNCATED: u16 = 1 << 2;
    /// The open failed, so the path is the string the process passed, joined to the
    /// resolved directory it was relative to; the kernel did not resolve it further.
    pub const PATH_UNRESOLVED: u16 = 1 << 3;
    /// The process is the root process of its session.
    pub const ROOT_PROCESS: u16 = 1 << 4;
    /// With [`SESSION_START`]: the session started because the process runs in a
    /// cgroup the policy chose (`[agents] containers`/`cgroups`), not by its name.
    pub const BY_CGROUP: u16 = 1 << 5;
    /// Exec records: the payload ends with [`THREAD_ID_LEN`] bytes (NUL padded) of the
    /// value of `CODEX_THREAD_ID` in the new image's environment (see [`crate::role`]).
    pub const THREAD_ID: u16 = 1 << 6;
    /// The process is tainted: it (or an ancestor, before forking it) opened for
    /// reading a file that a `secret = true` rule matched and let it open
    /// ([`crate::TAINTED`]). Set on every record of the process from that open on.
    pub const TAINTED: u16 = 1 << 9;
    /// The session is over its record limit: the kernel drops its plain records
    /// (counted) and still sends this one (an enforcement, a session start, the root's
    /// exit, a [`crate::EventKind::Limit`] report).
    pub const OVER_LIMIT: u16 = 1 << 11;
    /// Open records: a rule matched the opened file by identity (device, inode), not
    /// by the path it was opened at: the payload ends with an
    /// [`crate::IdentityTail`] naming the protected file or directory. Exec records:
    /// the rule matched the executed file by identity, not by its path or names
    /// (no tail).
    pub const BY_IDENTITY: u16 = 1 << 7;
    /// Open records: identity rules exist, and the opened file's ancestors could not
    /// be walked to its file system's root within [`crate::IDENTITY_DEPTH`] levels:
    /// whether it lies in a protected directory by identity is unknown.
    pub const IDENTITY_UNKNOWN: u16 = 1 << 8;
    /// Exec records: the program has no name in the file system: a memfd (the
    /// payload names it `memfd:NAME`) or a file with no links left (deleted).
    pub const FILELESS: u16 = 1 << 10;
    /// Exec records: the executed file's size is one that an exec rule's digest
    /// names (`DIGEST_SIZES`), so the kernel stopped the process (SIGSTOP) before
    /// its first instruction, for user space to hash the file and then kill or
    /// continue it (`HELD` lists it until then).
    pub const HELD: u16 = 1 << 12;
    /// Open records: not an open of its own but the count of further opens
    /// ([`crate::OpenBody::repeats`]) that the thread made of the file of an open
    /// reported before, with the same flags, which the kernel counted instead of
    /// sending (see `OPEN_CACHE` in the eBPF crate). The path and flags are those of
    /// that open; the record is sent when the count is due: every second of a busy
    /// file, and when the thread's cache slot is reused, it execs or it exits.
    pub const REPEATS: u16 = 1 << 13;
    /// Connect and send records: the destination's port was 53 (DNS), and the
    /// kernel pointed the call at guard's resolver in the process's network
    /// namespace instead (the record keeps the destination as given).
    pub const REDIRECTED: u16 = 1 << 14;
    /// Exec records of a session's first exec ([`SESSION_START`], or the first exec
    /// of a process `guard run` registered): the payload ends with the process's
    /// working directory as the kernel resolved it, after argv and the thread id
    /// ([`crate::ExecBody::cwd_len`] bytes).
    pub const CWD: u16 = 1 << 15;
}

/// Most distinct file sizes the exec rules' digests name (`DIGEST_SIZES`).
pub const DIGEST_SIZES_MAX: u32 = 1024;

/// Most processes held at exec for their digest at once (`HELD`, an LRU: past it
/// the oldest hold is forgotten by the kernel, and user space's sweep of stopped
/// session processes still finds it).
pub const HELD_MAX: u32 = 4096;

/// Levels of directories above an opened file the kernel checks against the
/// identity rules (the file itself is level 0).
pub const IDENTITY_DEPTH: usize = 64;

/// The end of an open record's payload with [`flags::BY_IDENTITY`]: what matched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityTail {
    /// The kernel's device number (`MKDEV(major, minor)`) of the protected entry.
    pub dev: u32,
    /// How many levels above the opened file the protected entry is (0: the file).
    pub up: u16,
    /// The rule index the entry names.
    pub rule: u16,
    /// Its inode number.
    pub ino: u64,
}

/// [`IdentityTail::up`] of a `file_open` refusal (BPF-LSM) matched by the rule's
/// path, not by identity: only the rule is passed on to the open's exit.
pub const DENIED_BY_PATH: u16 = u16::MAX;

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// An [`EventKind`] number.
    pub kind: u16,
    /// [`flags`] bits.
    pub flags: u16,
    /// Bytes of payload after the body.
    pub payload_len: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds when the kernel saw the event.
    pub ts_ns: u64,
    /// Session id (see [`Tracked::session`]).
    pub session: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Process id (thread group id) in the initial pid namespace.
    pub pid: u32,
    /// Thread id in the initial pid namespace.
    pub tid: u32,
    /// Parent process id (`real_parent->tgid`).
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// What the kernel enforced: [`crate::rules::enforced`] bits and rule index.
    pub rule: u16,
    /// The process's agent role: a [`crate::role`] number (0: unknown).
    pub role: u16,
    /// Command name of the thread, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Body of [`EventKind::Exec`]; payload: `exe_len` bytes of the resolved executable
/// path, then `argv_len` bytes of NUL-separated arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecBody {
    /// Process start time (`task_struct::start_time`, boot-based ns): with the pid it
    /// identifies the process across pid reuse.
    pub start_ns: u64,
    /// Bytes of exe path in the payload.
    pub exe_len: u32,
    /// Bytes of argv in the payload.
    pub argv_len: u32,
    /// What confined the process at its exec.
    pub confinement: Confinement,
    /// With [`flags::CWD`]: bytes of the working directory at the payload's end.
    pub cwd_len: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// What confines a process (sandbox truth), read from its task at exec: the
/// namespaces it runs in and its seccomp and no_new_privs state. Landlock has no
/// field a program can read portably (its domain lives in the LSM blob); it is not
/// here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Inode numbers of its network, mount and user namespaces (as
    /// `/proc/PID/ns/*` name them); 0 when unreadable.
    pub net_ns: u32,
    pub mnt_ns: u32,
    pub user_ns: u32,
    /// `SECCOMP_MODE_*`: 0 disabled, 1 strict, 2 filter.
    pub seccomp: u8,
    /// 1 when `no_new_privs` is set.
    pub no_new_privs: u8,
    pub _reserved: u16,
}

/// Which system call opened the file, or, for a change a BPF-LSM `path_*` hook
/// refused (reported as an open of the path for writing that failed with EPERM),
/// which change it was.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "protocol",
    derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray),
    strum(serialize_all = "lowercase")
)]
pub enum OpenCall {
    /// `open(2)`
    Open = 0,
    /// `openat(2)`
    Openat = 1,
    /// `openat2(2)`
    Openat2 = 2,
    /// `creat(2)`
    Creat = 3,
    /// A refused mkdir.
    Mkdir = 4,
    /// A refused rmdir.
    Rmdir = 5,
    /// A refused unlink.
    Unlink = 6,
    /// A refused rename (the path is the side that is protected).
    Rename = 7,
    /// A refused hard link (the path is the side that is protected).
    Link = 8,
    /// A refused symlink.
    Symlink = 9,
    /// A refused truncate(2).
    Truncate = 10,
    /// A refused chmod.
    Chmod = 11,
    /// A refused chown.
    Chown = 12,
}

impl OpenCall {
    /// Decodes a call number; `None` for numbers this build does not know.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Open,
            1 => Self::Openat,
            2 => Self::Openat2,
            3 => Self::Creat,
            4 => Self::Mkdir,
            5 => Self::Rmdir,
            6 => Self::Unlink,
            7 => Self::Rename,
            8 => Self::Link,
            9 => Self::Symlink,
            10 => Self::Truncate,
            11 => Self::Chmod,
            12 => Self::Chown,
            _ => return None,
        })
    }

    /// The name in JSON events (`call`).
    #[cfg(feature = "protocol")]
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Body of [`EventKind::Open`]; payload: the path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenBody {
    /// The open flags (`O_*`), as passed (`creat` is `O_CREAT|O_WRONLY|O_TRUNC`).
    pub flags: u64,
    /// The system call's return value: a descriptor, or `-errno`.
    pub ret: i64,
    /// An [`OpenCall`] number.
    pub call: u32,
    /// The mode passed with `O_CREAT`.
    pub mode: u32,
    /// With [`flags::REPEATS`]: how many more times the file was opened; else 0.
    pub repeats: u64,
    /// The type of the file opened (its mode's `S_IFMT` bits shifted down:
    /// [`file_type::DIR`], [`file_type::REG`], …); 0 when nothing was opened.
    pub file_type: u16,
    /// Reserved, zero.
    pub _reserved: [u16; 3],
}

/// [`OpenBody::file_type`] values (`S_IFMT >> 12`).
pub mod file_type {
    /// A directory: its open reads no file's data, so no rule on reads is its.
    pub const DIR: u16 = 0o04;
    /// A regular file.
    pub const REG: u16 = 0o10;
}

/// Socket address families in [`NetBody::family`].
pub const AF_INET: u16 = 2;
/// See [`AF_INET`].
pub const AF_INET6: u16 = 10;

/// Body of [`EventKind::Connect`] and [`EventKind::Send`]; no payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetBody {
    /// Destination address: 4 bytes for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// The system call's return value (`-errno` on failure).
    pub ret: i64,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Destination port, host order.
    pub port: u16,
    /// `SOCK_STREAM` (1) or `SOCK_DGRAM` (2).
    pub sock_type: u16,
    /// `IPPROTO_*` of the socket.
    pub protocol: u16,
}

/// `AF_UNIX`.
pub const AF_UNIX: u16 = 1;

/// Bytes of a Unix socket name a record carries at most (`sun_path`).
pub const UNIX_PATH_MAX: usize = 108;

/// The system call of an [`EventKind::Unix`] record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "protocol",
    derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray),
    strum(serialize_all = "lowercase")
)]
pub enum UnixCall {
    /// `connect(2)`.
    Connect = 1,
    /// `sendto(2)` with a destination address.
    SendTo = 2,
    /// Another send (`write` on a connected socket, a send without an address),
    /// refused by BPF-LSM `unix_may_send`.
    Send = 3,
    /// `sendmsg(2)` with a destination address.
    SendMsg = 4,
    /// `sendmmsg(2)`: the address of its first message.
    SendMmsg = 5,
}

impl UnixCall {
    /// Decodes a call number; `None` for numbers this build does not know.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Connect),
            2 => Some(Self::SendTo),
            3 => Some(Self::Send),
            4 => Some(Self::SendMsg),
            5 => Some(Self::SendMmsg),
            _ => None,
        }
    }

    /// The system call's name.
    #[cfg(feature = "protocol")]
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Body of [`EventKind::Unix`], then the socket's name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixBody {
    /// The system call's return value (`-errno` on failure).
    pub ret: i64,
    /// A [`UnixCall`] number.
    pub call: u32,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5); 0 when unknown.
    pub sock_type: u16,
    /// Reserved, zero.
    pub _reserved: u16,
    /// A connected stream socket: the process that listens on the other side (its
    /// pid in the initial namespace, as `SO_PEERCRED` says); 0 when unknown.
    pub peer_pid: u32,
    /// Its effective user id then (`u32::MAX` when unknown).
    pub peer_uid: u32,
}

/// Body of [`EventKind::Fork`]; no payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkBody {
    /// The child's process id.
    pub child_pid: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// The child's start time (see [`ExecBody::start_ns`]).
    pub child_start_ns: u64,
}

/// Body of [`EventKind::Exit`]; no payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitBody {
    /// The exit status as `wait(2)` reports it (code << 8, or the signal number).
    pub status: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// The process's start time.
    pub start_ns: u64,
}

/// Why a [`EventKind::Limit`] record was sent: [`LimitBody::reason`].
pub mod limit {
    /// Records of the session were dropped: it went over its records-per-second
    /// limit (`[limits] rate`/`burst`).
    pub const RATE: u32 = 1;
    /// A child of the session could not be tracked: the map of tracked processes is
    /// full. [`super::LimitBody::child_pid`] names it.
    pub const TRACK_FULL: u32 = 2;
}

/// Body of [`EventKind::Limit`]; no payload. Sent, never rate-limited: before a
/// record of the session after drops (at most once a second), before every record
/// that is never dropped (a kill or denial, the root's exit) when drops were not
/// reported yet, and at each fork whose child could not be tracked.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitBody {
    /// Records of the session dropped since its previous report.
    pub dropped: u64,
    /// Records of the session dropped in all (while the kernel kept its count; see
    /// docs/events.md).
    pub total: u64,
    /// A [`limit`] reason.
    pub reason: u32,
    /// With [`limit::TRACK_FULL`]: the child that could not be tracked.
    pub child_pid: u32,
}

/// What a [`EventKind::Tamper`] record says was attempted: [`TamperBody::op`].
pub mod tamper {
    /// A signal to guard (kill, tkill, tgkill, rt_(tg)sigqueueinfo,
    /// pidfd_send_signal); `arg` is the signal number.
    pub const SIGNAL: u32 = 1;
    /// ptrace(PTRACE_ATTACH/PTRACE_SEIZE) of guard; `arg` is the request.
    pub const PTRACE: u32 = 2;
    /// process_vm_readv/process_vm_writev on guard.
    pub const PROCESS_VM: u32 = 3;
    /// pidfd_getfd on guard (taking one of its descriptors).
    pub const PIDFD_GETFD: u32 = 4;
    /// BPF-LSM `ptrace_access_check` refused access to guard (ptrace attach,
    /// process_vm_*, /proc/<guard>/fd links, pidfd_getfd…); `arg` is the
    /// `PTRACE_MODE_*` bits.
    pub const PTRACE_ACCESS: u32 = 5;
    /// An open of a file of guard's under /proc (`/proc/<guard>/environ`, `mem`,
    /// `maps`, …, also through a thread's `task/<tid>/`); the path follows; `arg`
    /// is the open flags.
    pub const PROC_OPEN: u32 = 6;
    /// An open of guard's pin directory or a pin in it; the path follows; `arg` is
    /// the open flags.
    pub const PIN_OPEN: u32 = 7;
    /// A change in guard's pin directory (unlink, rmdir, rename) or an unmount of
    /// the BPF file system holding it.
    pub const PIN_CHANGE: u32 = 8;
    /// bpf(2), any command; `arg` is the command.
    pub const BPF: u32 = 9;
    /// perf_event_open(2).
    pub const PERF_EVENT_OPEN: u32 = 10;
    /// fcntl(F_SETOWN/F_SETOWN_EX) naming guard: the file's I/O signals (SIGIO, or
    /// any signal `F_SETSIG` picks) would go to guard; `arg` is the command. Where
    /// BPF-LSM runs, such signals are refused when sent (`file_send_sigiotask`).
    pub const SET_OWNER: u32 = 11;
}

/// Body of [`EventKind::Tamper`]; payload: the path for [`tamper::PROC_OPEN`],
/// [`tamper::PIN_OPEN`] and [`tamper::PIN_CHANGE`], else none. What was done is in
/// [`Header::rule`]: [`crate::rules::enforced::DENIED`] (BPF-LSM refused it with
/// EPERM) or [`crate::rules::enforced::KILLED`] (SIGKILL sent from the system
/// call), with no rule index.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TamperBody {
    /// A [`tamper`] operation.
    pub op: u32,
    /// The system call number (`__syscall_nr` of the tracepoint), or -1 where a
    /// BPF-LSM hook refused it (the hook does not see the call).
    pub syscall: i32,
    /// The pid or thread id of guard's daemon the attempt aimed at; 0 when it
    /// aimed at no process (bpf, perf_event_open, pins), or -1 cast (`kill(-1)`).
    pub target: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// Op-specific: signal number, ptrace request, `PTRACE_MODE_*` bits, bpf
    /// command, open flags.
    pub arg: u64,
}

/// Bytes of the agent thread id an exec record carries with [`flags::THREAD_ID`].
pub const THREAD_ID_LEN: usize = 48;

/// First byte of an exec record's thread id bytes that hold a package's name
/// instead (the value of a [`crate::SessionVar::PACKAGE`] variable, up to
/// `THREAD_ID_LEN - 2` bytes): the process runs that package's script.
pub const PACKAGE_MARK: u8 = 1;

/// Size of the biggest record: an exec with a full exe path, a full argv, a
/// thread id and a full working directory.
pub const MAX_RECORD: usize =
    size_of::<Header>() + size_of::<ExecBody>() + PATH_MAX + ARGV_MAX + THREAD_ID_LEN + PATH_MAX;

/// Why a [`EventKind::Flow`] record was sent: [`FlowBody::reason`].
pub mod flow {
    /// The flow is still open: at least the report interval passed since its
    /// previous record, and it moved bytes since.
    pub const PERIODIC: u32 = 1;
    /// The socket was released (its last descriptor closed): the flow's final record.
    pub const CLOSE: u32 = 2;
    /// A tracked process connected or sent on the socket to another destination:
    /// the final record of the flow to the previous one (the socket's counts start
    /// again for the new destination).
    pub const REDIRECT: u32 = 3;
    /// Least time between two periodic records of one flow.
    pub const REPORT_NS: u64 = 10_000_000_000;
    /// [`super::FlowBody::flags`]: a connection a session's listening socket
    /// accepted (its address and port are the peer's).
    pub const ACCEPTED: u32 = 1;
}

/// Body of [`EventKind::Flow`]; no payload. Bytes are IP-level: IP and transport
/// headers included (see docs/events.md).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowBody {
    /// Destination address: 4 bytes for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// Bytes sent since the flow started.
    pub bytes_out: u64,
    /// Bytes received since the flow started.
    pub bytes_in: u64,
    /// Packets sent since the flow started (a TSO/GSO batch counts once).
    pub packets_out: u64,
    /// Packets received since the flow started.
    pub packets_in: u64,
    /// `CLOCK_BOOTTIME` ns when the flow started (its socket was tagged).
    pub start_ns: u64,
    /// The socket's cookie (`SO_COOKIE`): with `start_ns`, identifies the flow.
    pub cookie: u64,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Destination port, host order.
    pub port: u16,
    /// `SOCK_STREAM` (1) or `SOCK_DGRAM` (2).
    pub sock_type: u16,
    /// `IPPROTO_*` of the socket.
    pub protocol: u16,
    /// A [`flow`] reason.
    pub reason: u32,
    /// [`flow::ACCEPTED`] for a connection a session's listening socket accepted
    /// (the address and port are its peer's); else 0.
    pub flags: u32,
}

/// Most bytes of a DNS message a [`EventKind::Dns`] record carries (the classic
/// UDP message size; longer messages are cut, see [`DnsBody::len`]).
pub const DNS_PAYLOAD_MAX: usize = 512;

/// Which way a [`EventKind::Dns`] message went: [`DnsBody::direction`].
pub mod dns {
    /// Sent by the session's socket (a query).
    pub const OUT: u16 = 0;
    /// Received by the session's socket (an answer).
    pub const IN: u16 = 1;
    /// [`super::DnsBody::flags`]: the socket's DNS goes to guard's resolver (the
    /// address is the server it was sent to): a query guard refuses never left the
    /// host.
    pub const VIA_RESOLVER: u32 = 1;
}

/// Body of [`EventKind::Dns`]; payload: the first `payload_len` bytes (at most
/// [`DNS_PAYLOAD_MAX`]) of the packet's transport payload: the DNS message (for
/// TCP, the segment's bytes, which start with the message's 2-byte length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsBody {
    /// The DNS server: the socket's destination, 4 bytes for IPv4, 16 for IPv6.
    pub addr: [u8; 16],
    /// The socket's cookie (its flow's, see [`FlowBody::cookie`]).
    pub cookie: u64,
    /// Bytes of transport payload in the packet (more than the payload when cut).
    pub len: u32,
    /// [`AF_INET`] or [`AF_INET6`] (of the socket's destination).
    pub family: u16,
    /// The server's port, host order (53).
    pub port: u16,
    /// `SOCK_STREAM` (1) or `SOCK_DGRAM` (2).
    pub sock_type: u16,
    /// A [`dns`] direction.
    pub direction: u16,
    /// [`dns::VIA_RESOLVER`] bits.
    pub flags: u32,
}

/// The routes of [`RouteBody::route`] (stable numbers). Also the byte a
/// `path_kind::ROUTE` rule key holds.
pub mod route {
    /// `io_uring_setup(2)`: a ring whose operations (opens, reads, connects, sends)
    /// bypass the system-call hooks.
    pub const IO_URING: u32 = 1;
    /// `open_by_handle_at(2)`: an open by file handle, not by path.
    pub const OPEN_BY_HANDLE: u32 = 2;
    /// The exec of a file that has no name in the file system: a memfd or a
    /// deleted file (reported in the exec event's `rule` when refused; not a
    /// route record).
    pub const FILELESS_EXEC: u32 = 3;
    /// `socket(2)` of a raw IPv4/IPv6 socket (`SOCK_RAW`).
    pub const RAW_SOCKET: u32 = 4;
    /// `socket(2)` of a packet socket (`AF_PACKET`, or the obsolete `SOCK_PACKET`).
    pub const PACKET_SOCKET: u32 = 5;
    /// `mmap(2)` with `PROT_EXEC` of a file an exec rule forbids: a program run
    /// by the dynamic loader (`ld.so ./prog`) or loaded by hand.
    pub const EXEC_MAPPING: u32 = 6;
    /// `bind(2)` of a TCP socket, or of a UDP socket to a port, to an address that
    /// is not a loopback one: a session's server reachable from other hosts
    /// (cgroup `bind4`/`bind6`, refused with EPERM on every tier).
    pub const LISTEN: u32 = 7;
    /// Highest route number.
    pub const MAX: u32 = 7;
    /// Not a route: the bit (`1 << UNIX_SOCKET_HOOKS`) of the kernel's route-hook
    /// set that says the BPF-LSM Unix socket hooks (`unix_stream_connect`,
    /// `unix_may_send`) run, so that `deny` rules on socket files are theirs.
    pub const UNIX_SOCKET_HOOKS: u32 = 31;
}

/// Body of [`EventKind::Route`]; payload: the path of the file involved (the
/// mapped file of [`route::EXEC_MAPPING`]), else none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteBody {
    /// What the system call returned, when the record was made after it (`-errno`
    /// for a refusal); 0 when the process was killed before it returned.
    pub ret: i64,
    /// A [`route`] number.
    pub route: u32,
    /// Sockets: the address family; else 0.
    pub family: u16,
    /// Sockets: the socket type (`SOCK_RAW` 3, `SOCK_PACKET` 10, …); else 0.
    pub sock_type: u16,
    /// [`route::LISTEN`]: the address bound (4 bytes for IPv4, 16 for IPv6,
    /// network order); else zero.
    pub addr: [u8; 16],
    /// [`route::LISTEN`]: the port bound (host order; 0: one the kernel picks).
    pub port: u16,
    /// Reserved, zero.
    pub _reserved: [u16; 3],
}

#[cfg(all(test, feature = "protocol"))]
mod tests {
    extern crate alloc;

    use alloc::vec::Vec;

    use strum::VariantArray;

    use super::{EventKind, OpenCall, UnixCall};

    /// The names events carry (`kind`, an open's and a Unix socket's `call`) are
    /// the schema's (docs/events.md): derived, and held here word for word.
    #[test]
    fn records_decode_to_themselves_under_the_schema_s_names() {
        let names = |vs: &[&'static str]| vs.join(" ");
        let kinds: Vec<&str> = EventKind::VARIANTS.iter().map(|k| k.name()).collect();
        assert_eq!(
            names(&kinds),
            "exec open connect send fork exit limit tamper route flow dns unix"
        );
        for &k in EventKind::VARIANTS {
            assert_eq!(EventKind::from_u16(k as u16), Some(k));
        }
        let calls: Vec<&str> = OpenCall::VARIANTS.iter().map(|c| c.name()).collect();
        assert_eq!(
            names(&calls),
            "open openat openat2 creat mkdir rmdir unlink rename link symlink truncate chmod chown"
        );
        for &c in OpenCall::VARIANTS {
            assert_eq!(OpenCall::from_u32(c as u32), Some(c));
        }
        let calls: Vec<&str> = UnixCall::VARIANTS.iter().map(|c| c.name()).collect();
        assert_eq!(names(&calls), "connect sendto send sendmsg sendmmsg");
        for &c in UnixCall::VARIANTS {
            assert_eq!(UnixCall::from_u32(c as u32), Some(c));
        }
        assert_eq!(UnixCall::from_u32(0), None);
        assert_eq!(UnixCall::from_u32(6), None);
    }
}
