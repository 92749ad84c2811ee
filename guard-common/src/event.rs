//! Records the kernel writes to the ring buffer.

/// Length of `task_struct::comm`, NUL included.
pub const COMM_LEN: usize = 16;
/// Longest path a record carries (the kernel's `PATH_MAX`, NUL excluded).
pub const PATH_MAX: usize = 4095;
/// Longest argv block (NUL-separated arguments) an exec record carries.
pub const ARGV_MAX: usize = 4095;
/// Deepest directory nesting the kernel walks when it resolves a path.
pub const PATH_DEPTH: usize = 96;

/// Stable numeric kinds of ring-buffer records. Numbers are never reused;
/// retired kinds are listed here with the release that retired them.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// A tracked process took a route around the hooks of opens, execs or the
    /// network that guard refuses or reports on its own ([`RouteBody`], then the path
    /// of the file involved, if any): io_uring, open_by_handle_at, a raw or packet
    /// socket, an executable mapping a rule forbids (a program run by the dynamic
    /// loader).
    Route = 10,
}

impl EventKind {
    /// Every kind, in numeric order.
    pub const ALL: [EventKind; 8] = [
        EventKind::Exec,
        EventKind::Open,
        EventKind::Connect,
        EventKind::Send,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Limit,
        EventKind::Route,
    ];

    /// Decodes a kind number; `None` for numbers this build does not know.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => EventKind::Exec,
            2 => EventKind::Open,
            3 => EventKind::Connect,
            4 => EventKind::Send,
            5 => EventKind::Fork,
            6 => EventKind::Exit,
            8 => EventKind::Limit,
            10 => EventKind::Route,
            _ => return None,
        })
    }

    /// The lower-case name used in JSON events and metrics.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Open => "open",
            EventKind::Connect => "connect",
            EventKind::Send => "send",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Limit => "limit",
            EventKind::Route => "route",
        }
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
    /// The session is over its record limit: the kernel drops its plain records
    /// (counted) and still sends this one (an enforcement, a session start, the root's
    /// exit, a [`crate::EventKind::Limit`] report).
    pub const OVER_LIMIT: u16 = 1 << 11;
}

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
    /// Reserved, zero.
    pub _reserved: u16,
    /// Command name, NUL padded.
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
}

/// Which system call opened the file, or, for a change a BPF-LSM `path_*` hook
/// refused (reported as an open of the path for writing that failed with EPERM),
/// which change it was.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
            0 => OpenCall::Open,
            1 => OpenCall::Openat,
            2 => OpenCall::Openat2,
            3 => OpenCall::Creat,
            4 => OpenCall::Mkdir,
            5 => OpenCall::Rmdir,
            6 => OpenCall::Unlink,
            7 => OpenCall::Rename,
            8 => OpenCall::Link,
            9 => OpenCall::Symlink,
            10 => OpenCall::Truncate,
            11 => OpenCall::Chmod,
            12 => OpenCall::Chown,
            _ => return None,
        })
    }

    /// The name in JSON events (`call`).
    pub fn name(self) -> &'static str {
        match self {
            OpenCall::Open => "open",
            OpenCall::Openat => "openat",
            OpenCall::Openat2 => "openat2",
            OpenCall::Creat => "creat",
            OpenCall::Mkdir => "mkdir",
            OpenCall::Rmdir => "rmdir",
            OpenCall::Unlink => "unlink",
            OpenCall::Rename => "rename",
            OpenCall::Link => "link",
            OpenCall::Symlink => "symlink",
            OpenCall::Truncate => "truncate",
            OpenCall::Chmod => "chmod",
            OpenCall::Chown => "chown",
        }
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
    /// Highest route number.
    pub const MAX: u32 = 6;
}

/// Body of [`EventKind::Route`]; payload: the path of the file involved (the
/// mapped file of [`route::EXEC_MAPPING`]), else none.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Size of the biggest record: an exec with a full exe path and a full argv.
pub const MAX_RECORD: usize =
    core::mem::size_of::<Header>() + core::mem::size_of::<ExecBody>() + PATH_MAX + ARGV_MAX;
