//! The event model: what the kernel reported, and the events user space derives
//! (session start/end, lost counts), as the judge and every consumer read them.
//! Decoding kernel records into events, enriching and writing them is the
//! daemon's (`guard::event`).

pub mod dns;
pub mod redact;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod via;

use std::{net::IpAddr, sync::Arc};

use guard_common::{
    OpenCall,
    protocol::{Action, Enforcement, Mode, Outcome},
};

/// Version of the JSON event schema (docs/events.md).
pub const SCHEMA: u32 = 2;

/// A session id: the boot-clock ns at which its root was first tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

pub use guard_common::protocol::How;

pub use guard_common::line::{
    DestClass, FlowReason, HostSource, LimitReason, Proto, TamperDone, TamperOp,
};

/// Event details by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    Exec {
        exe: String,
        exe_truncated: bool,
        argv: Vec<String>,
        argv_truncated: bool,
        root: bool,
        /// This exec started the session because the process runs in a chosen
        /// cgroup (`[agents] containers`/`cgroups`); not written out.
        by_cgroup: bool,
        /// The kernel's rule matched the executed file by identity (device, inode):
        /// a hard link or bind mount of a program a rule names.
        by_identity: bool,
        /// The program has no name in the file system (a memfd, a deleted file):
        /// the enricher names it as `/proc/<pid>/exe` does.
        fileless: bool,
        /// The kernel's record of the exec never came (lost, or held while no
        /// daemon ran): the event was built from `/proc` when the process's hold
        /// went stale, so `exe` and `argv` are what `/proc` showed then.
        from_proc: bool,
    },
    Open {
        path: String,
        resolved: bool,
        truncated: bool,
        flags: u64,
        call: OpenCall,
        ret: i64,
        /// With `flags::REPEATS`: not an open of its own, but how many more times
        /// the thread opened this file with these flags (the kernel counted them);
        /// else 0.
        repeats: u64,
        /// The file opened is a directory (its open reads no file's data: no rule
        /// on reads is its).
        dir: bool,
    },
    Connect {
        addr: IpAddr,
        port: u16,
        proto: Proto,
        ret: i64,
    },
    Send {
        addr: IpAddr,
        port: u16,
        proto: Proto,
        ret: i64,
    },
    Fork {
        child_pid: u32,
    },
    Exit {
        status: u32,
        root: bool,
    },
    /// The kernel dropped records of the session (over its `[limits]`), or could not
    /// track one of its children (the map of tracked processes is full).
    Limit {
        reason: LimitReason,
        /// Records dropped since the previous report.
        dropped: u64,
        /// Records of the session dropped in all.
        total: u64,
        /// With [`LimitReason::TrackFull`]: the child that escaped tracking.
        child_pid: Option<u32>,
    },
    /// A process of the session tried to signal, trace, read or blind guard itself
    /// (see [`Tamper`]).
    Tamper(Box<Tamper>),
    /// Bytes of one socket of the session, each way (IP level, headers included),
    /// since the flow started: periodically while it lasts and at its end.
    Flow(Flow),
    /// A DNS message of a session socket: a query it sent or an answer it got.
    Dns(Box<dns::Dns>),
    /// A route around the open, exec or network hooks, refused or killed by the
    /// kernel (`[sessions]`, or an exec rule on an executable mapping).
    Route {
        route: Route,
        /// The file involved (an executable mapping), as the kernel resolved it.
        path: Option<String>,
        truncated: bool,
        /// Sockets: address family and socket type.
        family: u16,
        sock_type: u16,
        /// `listen`: the address and port bound.
        bound: Option<(IpAddr, u16)>,
        /// `-errno` when refused (EPERM), 0 when killed before the call returned.
        ret: i64,
    },
    /// A connect or send to a Unix domain socket.
    Unix {
        /// The socket file it reached, as the kernel resolved it (`resolved`), or
        /// the name as the process gave it (a relative path joined to its working
        /// directory; `@name` for an abstract one).
        path: String,
        resolved: bool,
        truncated: bool,
        call: guard_common::UnixCall,
        /// `SOCK_STREAM` 1, `SOCK_DGRAM` 2, `SOCK_SEQPACKET` 5; 0 unknown.
        sock_type: u16,
        ret: i64,
    },
    SessionStart {
        agent: String,
        root_pid: u32,
        how: How,
        cwd: Option<String>,
        /// The repository `cwd` belongs to (session/repo.rs).
        repository: Option<guard_common::report::Repository>,
    },
    SessionEnd {
        root_pid: u32,
        stragglers: Vec<u32>,
        /// Stragglers killed because the policy says so (`kill_stragglers`).
        killed: Vec<u32>,
        /// The session's agent and user as known at its end: the agent's program
        /// (its profile's id once recognised) and the user it ran as, which a
        /// wrapper that drops privileges (`guard run` as root, then `setpriv`)
        /// makes other than the root's at `session_start`.
        agent: String,
        agent_user: Option<String>,
    },
    /// A tool call the agent declared through its hook (its process is the hook's;
    /// the call's id is its task's `call`).
    ToolCall {
        phase: guard_common::protocol::CallPhase,
        tool: String,
        command: Option<String>,
        /// Read from the agent's rollout file at the session's end (Codex's),
        /// rather than declared by its hook as the call ran.
        rollout: bool,
    },
    Lost {
        by_kind: Vec<(String, u64)>,
        total: u64,
    },
    PolicyLoaded {
        name: String,
        mode: Mode,
        rules: usize,
        kernel_entries: usize,
        /// The identity set: entries installed, paths past the bound.
        identity: crate::identity::Summary,
        user_space_rules: Vec<String>,
        warnings: String,
        /// How each kind of enforcement runs on this host.
        enforcement: Vec<Enforcement>,
        /// How each `deny` rule with a `fallback` acts on this host.
        fallbacks: Vec<guard_common::protocol::Fallback>,
    },
    PolicyRejected {
        name: String,
        errors: String,
    },
    /// A daemon took over the pinned programs and maps of one that had stopped or
    /// died: how long no daemon ran, and what the kernel could not hand over meanwhile.
    Resumed(Box<Resumed>),
}

/// The details of [`Detail::Tamper`]: what was attempted against guard, and what
/// the kernel did (`Event::enforced`: denied or killed).
#[derive(Clone, Debug, PartialEq)]
pub struct Tamper {
    pub op: TamperOp,
    /// The system call's name, where a tracepoint saw it (a BPF-LSM hook does not).
    pub syscall: Option<String>,
    /// guard's pid or thread id the attempt aimed at (-1: `kill(-1)`, every process).
    pub target: Option<i32>,
    /// Op-specific: signal number, ptrace request, `PTRACE_MODE_*` bits, bpf
    /// command, open flags.
    pub arg: u64,
    /// The file, for opens of guard's /proc files and pins.
    pub path: Option<String>,
}

/// The details of [`Detail::Flow`].
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// Bytes sent and received since the flow started.
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    /// Why this record: periodic, close, redirect.
    pub reason: FlowReason,
    /// The socket's cookie and the flow's start (boot-clock ns): the flow's identity.
    pub cookie: u64,
    pub start_boot_ns: u64,
    /// Wall-clock ns of the flow's start.
    pub start_ns: i128,
    /// The bytes (out, in) this record adds to the flow's earlier records: set
    /// once by the daemon's pipeline ([`flows::FlowDeltas`]) for every view that
    /// sums bytes; (0, 0) as decoded.
    pub new_out: u64,
    pub new_in: u64,
    /// A connection a session's listening socket accepted: `addr` and `port` are
    /// its peer's.
    pub accepted: bool,
}

impl Flow {
    /// The flow's identity across its records: its socket's cookie and its start,
    /// in hex (`flow_id` in JSON).
    pub fn id(&self) -> String {
        format!("{:x}-{:x}", self.cookie, self.start_boot_ns)
    }

    /// Whether this is the flow's last record.
    pub fn is_final(&self) -> bool {
        matches!(self.reason, FlowReason::Close | FlowReason::Redirect)
    }
}

/// Names whose destinations are the model's API (`dest_class` `model`).
const MODEL_HOSTS: &[&str] = &[
    "openai.com",
    "chatgpt.com",
    "anthropic.com",
    "claude.ai",
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "openai.azure.com",
    "mistral.ai",
    "openrouter.ai",
];
/// Package registries (`registry`).
const REGISTRY_HOSTS: &[&str] = &[
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "pypi.org",
    "files.pythonhosted.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
    "repo.maven.apache.org",
    "repo1.maven.org",
    "rubygems.org",
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
];
/// Code hosts (`code_host`).
const CODE_HOSTS: &[&str] = &[
    "github.com",
    "githubusercontent.com",
    "gitlab.com",
    "bitbucket.org",
    "codeberg.org",
];

/// `name` is `base` or a name under it.
fn under(name: &str, base: &str) -> bool {
    name.strip_suffix(base)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

/// The class of a destination, a bounded label for metrics and views: `local`
/// (loopback, unspecified), `model`, `registry`, `code_host` (by the name the
/// policy resolved it from), `allowlisted` (another name of the policy's network
/// rules), `other`.
pub fn dest_class(addr: IpAddr, host: Option<&str>) -> DestClass {
    let addr = addr.to_canonical();
    if addr.is_loopback() || addr.is_unspecified() {
        return DestClass::Local;
    }
    let Some(host) = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase()) else {
        return DestClass::Other;
    };
    let is = |list: &[&str]| list.iter().any(|b| under(&host, b));
    if is(MODEL_HOSTS) {
        DestClass::Model
    } else if is(REGISTRY_HOSTS) {
        DestClass::Registry
    } else if is(CODE_HOSTS) {
        DestClass::CodeHost
    } else {
        DestClass::Allowlisted
    }
}

/// The class of a destination named by a session's own DNS answers: by the
/// name lists, else `allowlisted` when the policy's names resolved to the address
/// too, else `other` (a name is not an allowance).
pub fn dns_dest_class(addr: IpAddr, host: &str, allowlisted: bool) -> DestClass {
    match dest_class(addr, Some(host)) {
        DestClass::Allowlisted if !allowlisted => DestClass::Other,
        class => class,
    }
}

/// Where an event's `host` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFrom {
    /// The session's own DNS answers; `allowlisted`: the policy's network rules
    /// name the address too.
    Dns { allowlisted: bool },
    /// The policy's resolution of the names in its network rules.
    Policy,
}

impl HostFrom {
    /// What events say of it (`host_source`).
    pub fn source(self) -> HostSource {
        match self {
            Self::Dns { .. } => HostSource::Dns,
            Self::Policy => HostSource::Policy,
        }
    }
}

impl Event {
    /// The class of the event's destination (connects, sends, flows, DNS servers).
    pub fn dest_class(&self, addr: IpAddr) -> DestClass {
        match (&self.host, self.host_from) {
            (Some(host), Some(HostFrom::Dns { allowlisted })) => {
                dns_dest_class(addr, host, allowlisted)
            }
            (host, _) => dest_class(addr, host.as_deref()),
        }
    }
}

/// The name of a system call number on this architecture, for the calls a tamper
/// record can name; `nr <n>` for others.
pub fn syscall_name(nr: i32) -> String {
    let nr = libc::c_long::from(nr);
    let known: &[(libc::c_long, &str)] = &[
        (libc::SYS_kill, "kill"),
        (libc::SYS_tkill, "tkill"),
        (libc::SYS_tgkill, "tgkill"),
        (libc::SYS_rt_sigqueueinfo, "rt_sigqueueinfo"),
        (libc::SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo"),
        (libc::SYS_pidfd_send_signal, "pidfd_send_signal"),
        (libc::SYS_pidfd_getfd, "pidfd_getfd"),
        (libc::SYS_ptrace, "ptrace"),
        (libc::SYS_process_vm_readv, "process_vm_readv"),
        (libc::SYS_process_vm_writev, "process_vm_writev"),
        (libc::SYS_bpf, "bpf"),
        (libc::SYS_perf_event_open, "perf_event_open"),
        (libc::SYS_fcntl, "fcntl"),
        (libc::SYS_openat, "openat"),
        (libc::SYS_openat2, "openat2"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_open, "open"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_creat, "creat"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("nr {nr}"), |(_, name)| (*name).to_owned())
}

/// The details of [`Detail::Resumed`].
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed {
    pub previous_pid: u32,
    /// Whether the previous daemon stopped cleanly (else it died: crash, SIGKILL).
    pub clean_stop: bool,
    /// From the previous daemon's last sign of life (within 10 ms of its end) to now.
    pub gap_ms: u64,
    /// Records the kernel could not put in the ring buffer since the previous
    /// daemon's last report, by kind (counted in the kernel).
    pub lost_by_kind: Vec<(String, u64)>,
    pub lost_total: u64,
    /// Children that escaped tracking meanwhile (tracked-process map full).
    pub untracked_children: u64,
    /// The sessions the kernel kept tracking, now this daemon's, with their ids.
    pub sessions: Vec<SessionId>,
    /// How each hook's program was replaced by this daemon's (see `ebpf::pins::Swaps`).
    pub links_updated: usize,
    pub links_replaced: usize,
    pub links_new: usize,
}

impl Detail {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec { .. } => "exec",
            Self::Open { .. } => "open",
            Self::Connect { .. } => "connect",
            Self::Send { .. } => "send",
            Self::Fork { .. } => "fork",
            Self::Exit { .. } => "exit",
            Self::SessionStart { .. } => "session_start",
            Self::SessionEnd { .. } => "session_end",
            Self::ToolCall { .. } => "tool_call",
            Self::Lost { .. } => "lost",
            Self::Limit { .. } => "limit",
            Self::Tamper(_) => "tamper",
            Self::Flow(_) => "flow",
            Self::Dns(_) => "dns",
            Self::Route { .. } => "route",
            Self::Unix { .. } => "unix",
            Self::PolicyLoaded { .. } => "policy_loaded",
            Self::PolicyRejected { .. } => "policy_rejected",
            Self::Resumed(_) => "daemon_resumed",
        }
    }

    /// Events about the daemon itself (policy, lost counts): no process.
    pub fn of_daemon(&self) -> bool {
        matches!(
            self,
            Self::Lost { .. }
                | Self::PolicyLoaded { .. }
                | Self::PolicyRejected { .. }
                | Self::Resumed(_)
        )
    }
}

pub use guard_common::protocol::Route;

/// Who did it: the task the kernel saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The program's name: the thread group leader's `comm` (as of its exec, when
    /// user space saw one).
    pub comm: String,
    /// The name of the thread that did it, when it is not the program's
    /// (`tokio-rt-worker`).
    pub thread: Option<String>,
    /// The process's agent role (`guard_common::role`), as the kernel decided it.
    pub role: u8,
    /// The agent thread (conversation) id the process works for: `CODEX_THREAD_ID`
    /// of its environment at exec, else its parent's.
    pub agent_thread: Option<Arc<str>>,
    /// The package whose script the process runs (npm's `npm_package_name` of its
    /// environment at exec, else its parent's): an install script, a project's
    /// script. What the environment claims, as `agent_thread` is.
    pub package: Option<Arc<str>>,
    /// The tool call the process works for, as its agent's hook declared it: the
    /// call open when the agent started the process (session/mod.rs), else its
    /// parent's.
    pub call: Option<Arc<str>>,
    pub cgroup_id: u64,
    pub user: Option<Arc<str>>,
    pub container: Option<Arc<str>>,
    /// Kubernetes pod uid, from the cgroup path.
    pub pod: Option<Arc<str>>,
    /// The container's names, from its runtime's state.
    pub meta: Option<Arc<crate::container::ContainerMeta>>,
}

/// A policy rule the event broke, and what was done about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// The rule reported as the outcome (the one enforced, else the strongest).
    pub rule: String,
    pub action: Action,
    pub outcome: Outcome,
    /// Why a kill failed (`outcome` is `failed`).
    pub error: Option<String>,
    pub alert: bool,
    /// Observe mode: the action enforce mode would have taken.
    pub would: Option<Action>,
    /// Every rule the event broke.
    pub rules: Vec<String>,
    /// One of them protects a secret (`secret = true`): the event is about one.
    pub secret: bool,
    /// User-space kills: from the kernel seeing the event to the kill.
    pub kill_latency_us: Option<u64>,
    /// Anomaly rules: what crossed which threshold (`anomaly` in JSON).
    pub anomaly: Option<String>,
}

/// One event, ready for every consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Wall-clock time, ns since the Unix epoch.
    pub ts_ns: i128,
    pub session: Option<SessionId>,
    pub task: Task,
    pub detail: Detail,
    /// What the kernel enforced itself: rule and verdict bits
    /// (`guard_common::rules::enforced`).
    pub enforced: u16,
    /// The name of a connect's, send's or flow's destination: the name the
    /// session's DNS answers gave the address, else the policy name it resolved from.
    pub host: Option<String>,
    /// Where `host` came from.
    pub host_from: Option<HostFrom>,
    /// The kernel marked the process tainted: it, or an ancestor before forking it,
    /// read a file a `secret = true` rule let it open (`guard_common::TAINTED`).
    pub tainted: bool,
    /// Connects, sends and flows of a tainted process: the secrets it and its
    /// ancestors read (user space's memory of their opens), first read first.
    pub tainted_by: Vec<Arc<str>>,
    /// Opens: what the kernel found matching the file by identity (device, inode).
    pub identity: Option<Identity>,
    pub violation: Option<Violation>,
    /// Something that looked like a credential was taken out of the command line
    /// before the event was written anywhere (`[redact]`, event/redact.rs).
    pub redacted: bool,
    /// An exec of a program the kernel gave the agent role: which agent it is (its
    /// profile's id, `agents::profile`).
    pub agent: Option<Arc<str>>,
    /// An exec of a program the kernel gave the agent role: the agent's version,
    /// from its package (`agents::version`).
    pub agent_version: Option<Arc<str>>,
    /// Execs: what confined the process, as the kernel read it from its task.
    pub confinement: Option<guard_common::Confinement>,
    /// Execs of tools: whether the tool runs inside a sandbox, namespaces or a
    /// seccomp filter its agent's process does not have (the session registry
    /// decides, against the agent's own exec); `None` for other roles, or before
    /// the agent was seen.
    pub sandboxed: Option<bool>,
    /// Execs: the kernel held the process before its first instruction, its file
    /// having a size an exec rule's digest names (`guard_common::flags::HELD`).
    pub held: bool,
    /// Held execs: the SHA-256 of the program (lowercase hex), as user space read
    /// it; `None` when it could not be read (the event says why in the log).
    pub digest: Option<Arc<str>>,
    /// Held execs: the download it runs (the exec'd file, or the script an
    /// interpreter was given), when it runs one.
    pub download: Option<Download>,
    /// Connects and sends to port 53: the kernel pointed the call at guard's
    /// resolver (`guard_common::flags::REDIRECTED`); DNS messages: the socket's
    /// DNS goes through it, so a query the resolver refused never left the host.
    pub via_resolver: bool,
    /// A session's first exec: the working directory as the kernel read it at the
    /// exec (the session's workspace even when the process is gone before user
    /// space could read `/proc`).
    pub cwd: Option<String>,
    /// Connects to a Unix socket or a loopback port: the process listening there,
    /// when it is outside every session (work handed to it is done outside the
    /// tree: delegation).
    pub listener: Option<Box<Listener>>,
}

/// A download a held exec runs: the exec'd file itself, or the script an
/// interpreter (or the loader) was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    /// The file, as the exec or the interpreter's argument names it.
    pub path: String,
    /// The process that wrote it (having reached the network).
    pub by_pid: u32,
}

/// The process on the other side of a session's connect (a Unix socket's
/// listener, or the owner of a listening loopback port), outside every session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    /// Its effective uid (Unix sockets: when it listened), and its user name.
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// Its program: the file name of its executable, and the executable's path.
    pub program: Option<String>,
    pub exe: Option<String>,
    /// The kind of known spawner it is (it runs commands on request), per the
    /// policy's list (`[delegation]`); `None`: not one.
    pub spawner: Option<String>,
}

/// An open's file matched by identity, or not known to be outside every
/// protected directory (`flags::IDENTITY_UNKNOWN`).
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The protected entry the file is, or lies under.
    pub matched: Option<IdentityMatch>,
    /// That entry's path as the policy names it (`crate::identity`), when known.
    pub protected: Option<String>,
    /// The walk to the file system's root was cut short.
    pub unknown: bool,
}

/// The (device, inode) of a protected entry and how far above the opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityMatch {
    pub dev: u32,
    pub ino: u64,
    pub up: u16,
}

impl Event {
    /// Whether the event's process read a secret: the kernel's mark, or user space's
    /// memory (a secret rule the kernel cannot express).
    pub fn is_tainted(&self) -> bool {
        self.tainted || !self.tainted_by.is_empty()
    }

    /// `confinement` as the audit log and the protocol write it.
    pub fn confinement_line(&self) -> Option<guard_common::protocol::ConfinementLine> {
        let c = self.confinement?;
        Some(guard_common::protocol::ConfinementLine {
            seccomp: guard_common::protocol::ConfinementLine::seccomp_name(c.seccomp).to_owned(),
            no_new_privs: c.no_new_privs != 0,
            net_ns: c.net_ns,
            mnt_ns: c.mnt_ns,
            user_ns: c.user_ns,
            sandboxed: self.sandboxed,
        })
    }

    /// `digest` as events write it: `sha256:<hex>`.
    pub fn digest_text(&self) -> Option<String> {
        self.digest.as_ref().map(|d| format!("sha256:{d}"))
    }

    /// An event user space derives (no kernel record behind it).
    pub fn derived(ts_ns: i128, session: Option<SessionId>, task: Task, detail: Detail) -> Self {
        Self {
            ts_ns,
            session,
            task,
            detail,
            enforced: 0,
            host: None,
            host_from: None,
            tainted: false,
            tainted_by: Vec::new(),
            identity: None,
            violation: None,
            redacted: false,
            agent: None,
            agent_version: None,
            confinement: None,
            sandboxed: None,
            held: false,
            digest: None,
            download: None,
            via_resolver: false,
            cwd: None,
            listener: None,
        }
    }
}

/// Open-flag view of an open event.
pub mod access {
    pub use guard_common::line::Access;

    pub const O_ACCMODE: u64 = 0o3;
    pub const O_WRONLY: u64 = 0o1;
    pub const O_RDWR: u64 = 0o2;
    pub const O_CREAT: u64 = 0o100;
    pub const O_TRUNC: u64 = 0o1000;
    pub const O_PATH: u64 = 0o10000000;

    /// Whether the open may change the file: written, created or truncated.
    pub fn changes(flags: u64) -> bool {
        writes(flags) || flags & (O_CREAT | O_TRUNC) != 0
    }

    /// Whether the open asks to read the file's data (an `O_PATH` open reads none).
    pub fn reads(flags: u64) -> bool {
        let mode = flags & O_ACCMODE;
        flags & O_PATH == 0 && (mode == 0 || mode == O_RDWR)
    }

    /// Whether the open asks to write the file's data.
    pub fn writes(flags: u64) -> bool {
        let mode = flags & O_ACCMODE;
        mode == O_WRONLY || mode == O_RDWR
    }

    /// The accesses an open asks for: read, write, create, truncate.
    pub fn of(flags: u64) -> Vec<Access> {
        let mut out = Vec::with_capacity(4);
        if reads(flags) {
            out.push(Access::Read);
        }
        if writes(flags) {
            out.push(Access::Write);
        }
        if flags & O_CREAT != 0 {
            out.push(Access::Create);
        }
        if flags & O_TRUNC != 0 {
            out.push(Access::Truncate);
        }
        out
    }
}

/// Normalises `.` and `..` lexically (for paths the kernel did not resolve).
pub fn normalize_lexically(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_s_source_is_named_without_its_allowance() {
        let from = [HostFrom::Dns { allowlisted: true }, HostFrom::Policy];
        assert_eq!(from.map(|f| f.source().as_str()), ["dns", "policy"]);
    }

    #[test]
    fn access_from_flags() {
        use access::Access::{Create, Read, Truncate, Write};
        assert_eq!(access::of(0), [Read]);
        assert_eq!(access::of(0o1 | 0o100 | 0o1000), [Write, Create, Truncate]);
        assert_eq!(access::of(0o2), [Read, Write]);
        assert!(access::of(access::O_PATH).is_empty());
    }

    #[test]
    fn lexical_normalisation() {
        assert_eq!(normalize_lexically("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(normalize_lexically("/../x"), "/x");
        assert_eq!(normalize_lexically("/tmp//x/"), "/tmp/x");
    }

    #[test]
    fn protocol_from_socket() {
        assert_eq!(Proto::from_socket(1, 6), Proto::Tcp);
        assert_eq!(Proto::from_socket(2, 0), Proto::Udp);
        assert_eq!(Proto::from_socket(2, 17), Proto::Udp);
    }

    #[test]
    fn destination_classes() {
        let a: IpAddr = "203.0.113.5".parse().expect("ip");
        assert_eq!(
            dest_class("127.0.0.1".parse().expect("ip"), None).as_str(),
            "local"
        );
        assert_eq!(
            dest_class("::1".parse().expect("ip"), None).as_str(),
            "local"
        );
        assert_eq!(
            dest_class("::ffff:127.0.0.1".parse().expect("ip"), None).as_str(),
            "local"
        );
        assert_eq!(dest_class(a, Some("api.openai.com")).as_str(), "model");
        assert_eq!(
            dest_class(a, Some("registry.npmjs.org")).as_str(),
            "registry"
        );
        assert_eq!(dest_class(a, Some("github.com")).as_str(), "code_host");
        assert_eq!(dest_class(a, Some("notgithub.com")).as_str(), "allowlisted");
        assert_eq!(dest_class(a, Some("example.org")).as_str(), "allowlisted");
        assert_eq!(dest_class(a, None).as_str(), "other");
    }

    #[test]
    fn session_id_is_16_hex_digits() {
        assert_eq!(SessionId(0xab).to_string(), "00000000000000ab");
    }
}
