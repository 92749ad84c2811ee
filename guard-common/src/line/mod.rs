//! One line of guard's event stream: the audit log's JSON object, the control
//! protocol's `subscribe` stream and the export's event bodies (schema in
//! docs/events.md). This is the only description of an event's fields: the daemon
//! builds an [`EventLine`] from each typed event and serialises it with serde; clients
//! read the same type back. Field order is the declaration order.

extern crate alloc;

pub mod values;
mod what;

use alloc::{collections::BTreeMap, format, string::String, vec::Vec};

use serde::{Deserialize, Serialize};

pub use self::values::{
    Access, By, CallResult, DestClass, DnsDirection, Family, FlowReason, HostSource, Known,
    LimitReason, Proto, SockType, TamperDone, TamperOp, Via,
};
use crate::{
    event::{OpenCall, UnixCall},
    protocol::{Action, ConfinementLine, Enforcement, How, Mode, Outcome, Route},
};

/// The version of the events' schema (`schema` of every line).
pub const SCHEMA: u32 = 2;

fn is_false(b: &bool) -> bool {
    !*b
}

/// One line of the event stream (and of the audit log).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// [`SCHEMA`] (absent on `missed` notices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schema: u32,
    /// RFC 3339, UTC, nanoseconds (absent on `missed` notices).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The process that did it; absent on events about the daemon itself.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskLine>,
    #[serde(flatten)]
    pub detail: EventDetail,
    /// The name of a connect's, send's or flow's destination: the one the session's
    /// DNS answers gave its address, else the policy name it resolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Where `host` came from: `dns` or `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_source: Option<Known<HostSource>>,
    /// The process read a secret a rule let it read (or its ancestors did).
    #[serde(default, skip_serializing_if = "is_false")]
    pub tainted: bool,
    /// Connects, sends and flows of a tainted process: the secrets it (and its
    /// ancestors) read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tainted_by: Vec<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<ViolationLine>,
}

/// Bytes in binary units, 4 significant characters at most: `512B`, `1.0Ki`,
/// `37Mi`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventLine {
    /// The process's pid, when the event has a process.
    pub fn pid(&self) -> Option<u32> {
        self.task.as_ref().map(|t| t.pid)
    }

    /// The process's program name, when the event has a process.
    pub fn comm(&self) -> Option<&str> {
        self.task.as_ref().map(|t| t.comm.as_str())
    }
}

/// Who did it: the fields of every event about a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLine {
    /// Present on every event about a process (the others have defaults, for lines
    /// of other writers).
    pub pid: u32,
    #[serde(default)]
    pub ppid: u32,
    #[serde(default)]
    pub tid: u32,
    #[serde(default)]
    pub comm: String,
    /// The thread's own name, when it is not the program's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The process's agent role (`wrapper`, `agent`, `sandbox`, `tool`, `mcp`,
    /// `helper`, `unknown`).
    #[serde(default)]
    pub role: String,
    /// The agent's thread id (its session variable) the process works for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_thread: Option<String>,
    /// The package whose script the process runs (npm's `npm_package_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The declared tool call the process works for (its agent's hook named it:
    /// the model's call id). Not `call`: an open's and a Unix socket's say which
    /// system call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<String>,
    #[serde(default)]
    pub uid: u32,
    /// `null` when the host has no name for `uid`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub cgroup_id: u64,
    /// `null` outside a container.
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The fields a violation adds to an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationLine {
    pub rule: String,
    pub action: Action,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_error: Option<String>,
    #[serde(default)]
    pub alert: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would: Option<Action>,
    #[serde(default)]
    pub rules: Vec<String>,
    /// One of the rules protects a secret (`secret = true` in the policy).
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_latency_us: Option<u64>,
    /// Anomaly rules: what crossed which threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<String>,
}

/// One record of a DNS answer (`answers` of a `dns` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswer {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, …
    #[serde(rename = "type")]
    pub rtype: String,
    pub data: String,
    pub ttl: u32,
}

/// How a `daemon_resumed`'s hooks were handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinksLine {
    /// Links whose program was swapped in place.
    pub updated: usize,
    /// Links detached and attached again.
    pub replaced: usize,
    /// Hooks the previous daemon had not attached.
    pub new: usize,
}

/// The process on the other side of a session's connect, outside every session
/// (a Unix socket's listener, a loopback port's owner): work handed to it is done
/// outside the session's tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerLine {
    pub pid: u32,
    /// Its executable's file name (else its command name) and path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The kind of known spawner it is (it runs commands on request: `tmux`,
    /// `sshd`, `docker`, …), per the policy's `[delegation]` list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spawner: Option<String>,
}

/// What happened, by kind. Kinds this client does not know read as `Other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventDetail {
    /// A process of a session replaced its image.
    Exec {
        #[serde(default)]
        exe: String,
        #[serde(default)]
        exe_truncated: bool,
        #[serde(default)]
        argv: Vec<String>,
        #[serde(default)]
        argv_truncated: bool,
        /// Something that looked like a credential was taken out of `argv`.
        #[serde(default, skip_serializing_if = "is_false")]
        redacted: bool,
        /// This exec started the session.
        #[serde(default)]
        root: bool,
        /// An agent program's exec: which agent it is (`codex`, `claude-code`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// An agent program's exec: the agent's version, from its package.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_version: Option<String>,
        /// `identity`: the kernel's rule matched the file by (device, inode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Known<By>>,
        /// The kernel held the process at exec for its program's digest.
        #[serde(default, skip_serializing_if = "is_false")]
        held: bool,
        /// The kernel's record of this exec never came (lost, or held while no
        /// daemon ran): built from `/proc` when the process's hold went stale.
        #[serde(default, skip_serializing_if = "is_false")]
        from_proc: bool,
        /// The program's SHA-256 (`sha256:<hex>`), when it was held and hashed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        /// A held exec that runs a file its session downloaded: the exec'd file
        /// itself, or the script an interpreter was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        download: Option<DownloadLine>,
        /// What confined the process at this exec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confinement: Option<ConfinementLine>,
        /// A loader or interpreter's exec: `loader` or `interpreter`, and the
        /// program it runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<Known<Via>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// `open`, `openat`, `openat2` or `creat`.
    Open {
        #[serde(default)]
        path: String,
        #[serde(default)]
        path_resolved: bool,
        #[serde(default)]
        path_truncated: bool,
        /// `read`, `write`, `create`, `truncate`, …
        #[serde(default)]
        access: Vec<Known<Access>>,
        #[serde(default)]
        flags: u64,
        #[serde(default)]
        call: Known<OpenCall>,
        /// `ok`, an errno's name, or `invalid`.
        #[serde(default)]
        result: CallResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fd: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        /// A return value no system call gives (a damaged record).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ret: Option<i64>,
        /// `identity`: a rule's file matched by (device, inode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Known<By>>,
        /// The protected file the identity match names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protected: Option<String>,
        /// Too deep for the kernel to place: judged fail-closed.
        #[serde(default, skip_serializing_if = "is_false")]
        identity_unknown: bool,
        /// Not an open of its own: how many more times the process opened the file
        /// of an open line before it (same path, same flags) since that line or
        /// the last `repeats` line for it. The kernel counts such opens instead of
        /// reporting each (docs/events.md).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repeats: Option<u64>,
        /// The file opened is a directory: its open reads names, no file's data,
        /// and no rule on reads is its.
        #[serde(default, skip_serializing_if = "is_false")]
        directory: bool,
    },
    Connect {
        #[serde(flatten)]
        to: Address,
        #[serde(default)]
        result: CallResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ret: Option<i64>,
        /// Port 53: the kernel pointed the call at guard's resolver, which answers
        /// the names the policy allows (`to` is the server as given).
        #[serde(default, skip_serializing_if = "is_false")]
        via_resolver: bool,
        /// A loopback port's owner outside every session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listener: Option<ListenerLine>,
    },
    Send {
        #[serde(flatten)]
        to: Address,
        #[serde(default)]
        result: CallResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ret: Option<i64>,
        /// Port 53: the kernel pointed the call at guard's resolver, which answers
        /// the names the policy allows (`to` is the server as given).
        #[serde(default, skip_serializing_if = "is_false")]
        via_resolver: bool,
    },
    Fork {
        #[serde(default)]
        child_pid: u32,
    },
    /// A connect or send to a Unix domain socket.
    Unix {
        #[serde(default)]
        path: String,
        #[serde(default)]
        path_resolved: bool,
        #[serde(default)]
        path_truncated: bool,
        /// `connect`, `sendto`, `send`, `sendmsg` or `sendmmsg`.
        #[serde(default)]
        call: Known<UnixCall>,
        /// `stream`, `dgram`, `seqpacket` or `unknown`.
        #[serde(default)]
        socket: Known<SockType>,
        #[serde(default)]
        result: CallResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ret: Option<i64>,
        /// The socket's listener, when it is outside every session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listener: Option<ListenerLine>,
    },
    /// A route around the hooks, refused or killed by the kernel.
    Route {
        route: Route,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        truncated: Option<bool>,
        /// Sockets: address family and socket type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sock_type: Option<u16>,
        /// `listen`: the address and port the socket was bound to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// An errno's name, `killed`, or `ok`.
        #[serde(default)]
        result: CallResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
    },
    Exit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<u32>,
        #[serde(default)]
        root: bool,
    },
    SessionStart {
        #[serde(default)]
        agent: String,
        #[serde(default)]
        root_pid: u32,
        #[serde(default)]
        how: How,
        #[serde(default)]
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repository: Option<crate::report::Repository>,
    },
    SessionEnd {
        #[serde(default)]
        root_pid: u32,
        #[serde(default)]
        stragglers: Vec<u32>,
        #[serde(default)]
        killed: Vec<u32>,
        /// The session's agent and user as known at its end (the agent's program,
        /// or its profile's id; the user the agent ran as).
        #[serde(default)]
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_user: Option<String>,
    },
    /// A tool call the agent declared through its hook (`guard hook`): its start,
    /// before its processes run, or its end. The process is the hook's; the call's
    /// id is the task's `tool_call`.
    ToolCall {
        #[serde(default)]
        phase: crate::protocol::CallPhase,
        #[serde(default)]
        tool: String,
        /// What it declared (a shell tool's command line), redacted as an exec's
        /// command line is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        redacted: bool,
        /// Read from the agent's rollout file at the session's end (Codex's), its
        /// time the rollout's: the agent ran without guard's hook.
        #[serde(default, skip_serializing_if = "is_false")]
        rollout: bool,
    },
    /// Records the kernel could not put in the ring buffer, by kind.
    Lost {
        #[serde(default)]
        by_kind: BTreeMap<String, u64>,
        #[serde(default)]
        total: u64,
    },
    PolicyLoaded {
        #[serde(default)]
        policy: String,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        rules: usize,
        #[serde(default)]
        kernel_entries: usize,
        #[serde(default)]
        identity_entries: usize,
        #[serde(default)]
        identity_missing: usize,
        #[serde(default)]
        identity_fail_closed: usize,
        /// Paths past the identity set's bounds.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        identity_over: Vec<String>,
        #[serde(default)]
        user_space_rules: Vec<String>,
        /// Rendered diagnostics, one per line.
        #[serde(default)]
        warnings: String,
        /// How each kind of enforcement runs on this host.
        #[serde(default)]
        enforcement: Vec<Enforcement>,
        /// How each `deny` rule with a `fallback` acts on this host.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fallbacks: Vec<crate::protocol::Fallback>,
    },
    PolicyRejected {
        #[serde(default)]
        policy: String,
        /// Rendered diagnostics, one per line.
        #[serde(default)]
        errors: String,
    },
    /// A process of the session tried to signal, trace, read or blind guard itself
    /// (docs/events.md, `tamper`).
    Tamper {
        /// What was attempted: `signal`, `ptrace`, `process_vm`, `pidfd_getfd`,
        /// `ptrace_access`, `proc_open`, `pin_open`, `pin_change`, `bpf`,
        /// `perf_event_open`, `set_owner`.
        #[serde(default)]
        op: Known<TamperOp>,
        /// The system call, where a tracepoint saw it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        syscall: Option<String>,
        /// guard's pid (or thread id) it aimed at.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_pid: Option<i32>,
        /// The op's argument, under the op's own name.
        #[serde(flatten)]
        arg: TamperArg,
        /// The file, for `proc_open` and `pin_open`, and the access asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<Vec<Known<Access>>>,
        /// What the kernel did: `denied`, `killed` or `kill_failed`.
        #[serde(default)]
        done: Known<TamperDone>,
    },
    /// A daemon took over pinned enforcement after a gap.
    DaemonResumed {
        #[serde(default)]
        previous_pid: u32,
        #[serde(default)]
        clean_stop: bool,
        #[serde(default)]
        gap_ms: u64,
        #[serde(default)]
        lost_by_kind: BTreeMap<String, u64>,
        #[serde(default)]
        lost_total: u64,
        #[serde(default)]
        untracked_children: u64,
        #[serde(default)]
        sessions: Vec<String>,
        #[serde(default)]
        links: LinksLine,
    },
    /// Bytes of one socket of a session, each way (IP level), since the flow started.
    Flow {
        #[serde(flatten)]
        to: Address,
        #[serde(default)]
        bytes_out: u64,
        #[serde(default)]
        bytes_in: u64,
        #[serde(default)]
        packets_out: u64,
        #[serde(default)]
        packets_in: u64,
        /// `periodic`, `close` or `redirect`.
        #[serde(default)]
        reason: Known<FlowReason>,
        /// The flow's identity across its records (socket cookie and start).
        #[serde(default)]
        flow_id: String,
        /// When the flow started (RFC 3339).
        #[serde(default)]
        started: String,
        /// Destination class (`local`, `model`, `registry`, `code_host`,
        /// `allowlisted`, `other`).
        #[serde(default)]
        dest_class: Known<DestClass>,
        /// A connection a session's listening socket accepted: the address is its
        /// peer's, `bytes_out` what the session served it.
        #[serde(default, skip_serializing_if = "is_false")]
        accepted: bool,
    },
    /// A DNS message of a session socket: a query it sent (logged when it broke
    /// an anomaly rule) or an answer it received.
    Dns {
        /// `query` or `answer`.
        #[serde(default)]
        direction: Known<DnsDirection>,
        /// The DNS server and its port.
        #[serde(default)]
        server: String,
        #[serde(default)]
        port: u16,
        #[serde(default)]
        proto: Known<Proto>,
        /// The question's name and type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qtype: Option<String>,
        /// Answers: the response code (`NoError`, `NXDomain`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rcode: Option<String>,
        /// Answers: their records.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answers: Option<Vec<DnsAnswer>>,
        /// The message's length in bytes.
        #[serde(default)]
        len: u32,
        /// The message was longer than what the kernel copied.
        #[serde(default, skip_serializing_if = "is_false")]
        cut: bool,
        /// Why the message could not be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default)]
        dest_class: Known<DestClass>,
        /// The socket's DNS goes through guard's resolver: a query it refused
        /// never left the host.
        #[serde(default, skip_serializing_if = "is_false")]
        via_resolver: bool,
    },
    /// Records of a session the kernel dropped (over `[limits]`, or a child it
    /// could not track).
    Limit {
        /// `rate` or `track_full`.
        #[serde(default)]
        reason: Known<LimitReason>,
        #[serde(default)]
        dropped: u64,
        #[serde(default)]
        dropped_total: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child_pid: Option<u32>,
    },
    /// This subscriber read too slowly and missed `count` events.
    Missed { count: u64 },
    /// A kind this client does not know (a newer daemon).
    #[default]
    #[serde(other)]
    Other,
}

/// Where a connect, send or flow went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub addr: String,
    pub port: u16,
    /// `tcp`, `udp`, …
    pub proto: Known<Proto>,
    /// `ipv4` or `ipv6`.
    pub family: Known<Family>,
}

/// A `tamper`'s argument, named by its op (at most one is set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TamperArg {
    /// `signal`: the signal number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<u64>,
    /// `ptrace`: the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    /// `ptrace_access`: the `PTRACE_MODE_*` bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ptrace_mode: Option<u64>,
    /// `pidfd_getfd`: the file descriptor asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_fd: Option<u64>,
    /// `proc_open`, `pin_open`: the open flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// `bpf`: the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_cmd: Option<u64>,
    /// `set_owner`: the `fcntl` command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcntl_cmd: Option<u64>,
}

impl EventDetail {
    /// Every kind a daemon writes to the audit log (not `missed`, a subscriber's
    /// notice, nor `other`), in the order docs/events.md describes them.
    pub const KINDS: &[&str] = &[
        "exec",
        "open",
        "connect",
        "send",
        "flow",
        "dns",
        "route",
        "unix",
        "fork",
        "exit",
        "session_start",
        "session_end",
        "tool_call",
        "lost",
        "limit",
        "tamper",
        "daemon_resumed",
        "policy_loaded",
        "policy_rejected",
    ];

    /// The kinds about the daemon itself: no session, no process.
    pub const DAEMON_KINDS: &[&str] =
        &["lost", "policy_loaded", "policy_rejected", "daemon_resumed"];

    /// The `kind` field.
    pub fn kind(&self) -> &'static str {
        self.into()
    }
}

/// A download a held exec runs (`EventDetail::Exec`'s `download`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadLine {
    /// The file, as the exec or the interpreter's argument names it.
    pub path: String,
    /// The process that wrote it after it reached the network.
    pub by_pid: u32,
}

#[cfg(test)]
mod tests {
    use alloc::{string::ToString, vec};

    use super::*;

    fn round_trip(line: &EventLine) {
        let text = serde_json::to_string(line).expect("serialise");
        let back: EventLine = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(&back, line, "{text}");
        assert_eq!(serde_json::to_string(&back).expect("again"), text);
    }

    fn open_line() -> EventLine {
        EventLine {
            schema: SCHEMA,
            ts: "2026-11-22T08:00:00.000000000Z".into(),
            session: Some("000000f27677c8c0".into()),
            task: Some(TaskLine {
                pid: 42,
                ppid: 10,
                tid: 42,
                comm: "cat".into(),
                role: "tool".into(),
                agent_thread: Some("019aa2b0-0000-7000-8000-000000000001".into()),
                ..TaskLine::default()
            }),
            detail: EventDetail::Open {
                path: "/root/.ssh/id_rsa".into(),
                path_resolved: true,
                path_truncated: false,
                access: vec![Access::Read.into()],
                flags: 0,
                call: OpenCall::Openat.into(),
                result: CallResult::Ok,
                fd: Some(3),
                errno: None,
                ret: None,
                by: None,
                protected: None,
                identity_unknown: false,
                repeats: None,
                directory: false,
            },
            host: None,
            host_source: None,
            tainted: false,
            tainted_by: Vec::new(),
            violation: Some(ViolationLine {
                rule: "ssh-keys".into(),
                action: Action::Kill,
                outcome: Outcome::Killed,
                outcome_error: None,
                alert: true,
                would: None,
                rules: vec!["ssh-keys".into()],
                secret: true,
                kill_latency_us: None,
                anomaly: None,
            }),
        }
    }

    #[test]
    fn event_lines_round_trip_and_tolerate_new_kinds() {
        let line = open_line();
        round_trip(&line);
        let text = serde_json::to_string(&line).expect("serialise");
        assert!(
            text.contains(r#""container":null,"kind":"open","path""#),
            "the process fields, then the kind: {text}"
        );
        let route = EventLine {
            detail: EventDetail::Route {
                route: Route::ExecMapping,
                path: Some("/tmp/denied-prog".into()),
                truncated: Some(false),
                family: None,
                sock_type: None,
                addr: None,
                port: None,
                result: CallResult::Killed,
                errno: None,
            },
            ..line.clone()
        };
        round_trip(&route);
        let tamper = EventLine {
            detail: EventDetail::Tamper {
                op: TamperOp::Signal.into(),
                syscall: Some("kill".into()),
                target_pid: Some(4242),
                arg: TamperArg {
                    signal: Some(9),
                    ..TamperArg::default()
                },
                path: None,
                access: None,
                done: TamperDone::Killed.into(),
            },
            ..line.clone()
        };
        round_trip(&tamper);
        let daemon = EventLine {
            session: None,
            task: None,
            detail: EventDetail::Lost {
                by_kind: [("open".to_string(), 2)].into_iter().collect(),
                total: 2,
            },
            violation: None,
            ..line
        };
        round_trip(&daemon);
        let newer: EventLine =
            serde_json::from_str(r#"{"ts":"t","kind":"route","route":"warp_drive"}"#)
                .expect("parse");
        assert!(
            matches!(
                newer.detail,
                EventDetail::Route {
                    route: Route::Unknown,
                    ..
                }
            ),
            "{newer:?}"
        );
        let flow: EventLine =
            serde_json::from_str(r#"{"ts":"t","kind":"flow","bytes_out":9,"port":443}"#)
                .expect("parse");
        assert!(
            matches!(
                &flow.detail,
                EventDetail::Flow {
                    bytes_out: 9,
                    bytes_in: 0,
                    to,
                    ..
                } if to.port == 443
            ),
            "{:?}",
            flow.detail
        );
        assert_eq!(flow.task, None, "no process fields, no process");
        let future: EventLine =
            serde_json::from_str(r#"{"ts":"t","kind":"taint","path":"x"}"#).expect("parse");
        assert_eq!(future.detail, EventDetail::Other);
        let missed: EventLine =
            serde_json::from_str(r#"{"kind":"missed","count":3}"#).expect("parse");
        assert_eq!(missed.detail, EventDetail::Missed { count: 3 });
    }
}
