//! The control protocol between `guard daemon` and its clients (`guard sessions`,
//! `events`, `status`, `kill`, `run`, `top`, and the benchmarks): JSON lines over a
//! Unix stream socket. One request per line; one [`Reply`] per request, except
//! `subscribe`, answered by a stream of [`EventLine`](crate::line::EventLine)s (the audit log's schema,
//! docs/events.md) until the client leaves.
//!
//! Every message is a type here, used by both ends, so the two cannot drift.

extern crate alloc;
extern crate std;

use alloc::{collections::BTreeMap, string::String, vec::Vec};

use serde::{Deserialize, Serialize};

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/guard/guard.sock";

/// Events a slow subscriber may have queued before it starts missing some.
pub const SUBSCRIBER_QUEUE: usize = 8192;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Track the calling process (from the socket's credentials, never a pid the
    /// client names) as the root of a new session; it will exec `argv`.
    /// Answered with [`Registered`]; with `landlock` or `mount_ns`, it carries what
    /// the policy forbids every process of the session to read and to change, for
    /// the client to confine itself (Landlock, a mount namespace of its own).
    Run {
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "core::ops::Not::not")]
        landlock: bool,
        #[serde(default, skip_serializing_if = "core::ops::Not::not")]
        mount_ns: bool,
        /// The client's `$HOME`: the home whose protected files it hides besides the
        /// caller's own (`guard run` by root, dropping to a user after). Taken from
        /// root only, or when it is the caller's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        home: Option<String>,
    },
    /// What guard stopped (killed or refused) of the processes working for agent
    /// thread `thread` (Codex's `CODEX_THREAD_ID`, the hook's `session_id`) since
    /// the last time this was asked: `Vec<Stop>`. Asked by an agent's hook (`guard
    /// hook`) through the hook socket, for the caller's own sessions only.
    Stops { thread: String },
    /// An agent's hook (`guard hook`, through the hook socket) declares a tool call
    /// of the calling process's session: its start, before the call's processes run
    /// (Codex's and Claude Code's `PreToolUse`), or its end (`PostToolUse`).
    /// Answered, as `Stops` is, with what guard stopped for the call's thread
    /// since that was last asked (empty at a start): `Vec<Stop>`.
    ToolCall(ToolCall),
    /// The calling process (a session's root, after `run`) confined itself: with
    /// Landlock as `landlock` says (`fully enforced, 42 rules`, …), in a mount
    /// namespace of its own as `mount_ns` says (`3 read-only, 2 hidden`). Answered
    /// with the session id.
    Confined {
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        landlock: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_ns: Option<String>,
    },
    /// Every session the daemon knows, with its live process tree: `Vec<SessionInfo>`.
    Sessions,
    /// The daemon's health: [`Status`].
    Status,
    /// Stream events, optionally one session's or some kinds only. A slow reader
    /// gets [`EventDetail::Missed`](crate::line::EventDetail::Missed) notices instead of stalling the daemon.
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kinds: Vec<String>,
    },
    /// Kill a whole session, or the subtree rooted at `pid` (root clients only):
    /// [`KillReport`].
    Kill {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// The report of a running or recently ended session (an id or a unique prefix
    /// of one): [`crate::report::Report`].
    Report { session: String },
}

/// The answer to one request: `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> Reply<T> {
    /// A successful answer.
    pub fn data(data: T) -> Self {
        Self {
            ok: true,
            error: None,
            data: Some(data),
        }
    }

    /// A refusal, with the reason for people.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            data: None,
        }
    }
}

/// Something guard stopped, as an agent's hook tells the agent (never the content
/// of a file: its name, the command, the rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub ts: String,
    pub pid: u32,
    pub comm: String,
    /// What was stopped: `open /home/a/.ssh/id_rsa`, `exec curl …`, `connect 1.2.3.4:443`.
    pub what: String,
    pub rule: String,
    /// The rule's description, from the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub action: Action,
    pub outcome: Outcome,
}

/// A tool call an agent declared (its hook's input): what the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub phase: CallPhase,
    /// The call's id, as the agent and the model know it (Codex's and Claude Code's
    /// `tool_use_id`: the model's `call_id`).
    pub id: String,
    /// The agent's thread (the hook's `session_id`: `CODEX_THREAD_ID`,
    /// `CLAUDE_CODE_SESSION_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The agent's name for the tool (`Bash`, `Write`, an MCP tool's).
    pub tool: String,
    /// What the call declared it would do: a shell tool's command line, else the
    /// tool's input as JSON (cut to [`CALL_INPUT_MAX`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Bytes of a declared call's input kept (a command line, a tool's JSON input).
pub const CALL_INPUT_MAX: usize = 4_096;

/// Which end of a tool call a hook declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CallPhase {
    #[default]
    Start,
    End,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// `run`: the session the calling process now roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The session id (16 hex digits).
    pub session: String,
    /// With `landlock` or `mount_ns`: the files and directories the policy forbids
    /// every process of the session to read (`kill` or `deny` rules on reads, for
    /// every role): its concrete paths in the caller's home and the system, and what
    /// its patterns match in the workspace. The client hides them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_deny: Vec<String>,
    /// The same for changes (rules on writes): the client makes them read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_deny: Vec<String>,
    /// What the daemon could not look at (a workspace too large to walk whole): for
    /// the client to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How a session came to be tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum How {
    /// An agent program was executed (kernel match on its name).
    #[default]
    Exec,
    /// A process in a chosen container or cgroup executed a program.
    Container,
    /// `guard run` registered it before exec.
    Run,
    /// Already running when the daemon started (or moved into a chosen cgroup
    /// without an exec); found in /proc.
    Scan,
    /// Tracked by the kernel while no daemon ran (enforcement pinned); taken over,
    /// with its id, by the daemon that started next.
    Adopted,
}

impl How {
    /// The name used in events and views.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether a session's root still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum SessionState {
    #[default]
    Running,
    Ended,
}

/// A session's event counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub exec: u64,
    pub open: u64,
    pub connect: u64,
    pub send: u64,
    pub fork: u64,
    /// Policy violations (any action).
    pub violations: u64,
    /// Records of the session the kernel dropped (over its `[limits]`), as reported
    /// by its `limit` events.
    #[serde(default)]
    pub dropped: u64,
    /// Bytes the session's sockets sent and received (IP level, headers included),
    /// from its `flow` records.
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub bytes_in: u64,
}

/// A live process of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// The program it runs, once an exec was seen (a fork inherits its parent's).
    pub exe: Option<String>,
    #[serde(default)]
    pub argv: Vec<String>,
    /// Its agent role (`wrapper`, `agent`, `sandbox`, `tool`, `mcp`, `helper`,
    /// `unknown`).
    #[serde(default)]
    pub role: String,
    /// The agent thread id (`CODEX_THREAD_ID`) it works for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_thread: Option<String>,
    /// The package whose script it runs (npm's `npm_package_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The declared tool call it works for (its agent's hook named it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<String>,
    /// Its agent declares its calls and none accounts for this process: its call
    /// ended (`outlived_call`), or the agent started it outside every call
    /// (`outside_calls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeclared: Option<String>,
    /// A tool's program: inside its agent's sandbox (`true`) or outside it, as its
    /// exec event's `confinement.sandboxed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxed: Option<bool>,
}

/// One session in the `sessions` answer. Readers are lenient: a field an older
/// daemon did not send takes its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionInfo {
    /// 16 hex digits.
    pub id: String,
    pub agent: String,
    pub root_pid: u32,
    pub how: How,
    pub uid: u32,
    pub user: Option<String>,
    pub cwd: Option<String>,
    /// Container id, from the cgroup path.
    pub container: Option<String>,
    /// Kubernetes pod uid, from the cgroup path.
    pub pod: Option<String>,
    /// The container's names, from its runtime's state.
    pub container_name: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    /// RFC 3339, UTC.
    pub started: String,
    pub ended: Option<String>,
    pub state: SessionState,
    pub counts: Counts,
    /// The process running the agent's program (role `agent`), once seen.
    pub agent_pid: Option<u32>,
    /// The agent thread ids (`CODEX_THREAD_ID`) its tools carried, first seen first.
    pub agent_threads: Vec<String>,
    /// How its root confined itself with Landlock (`guard run --landlock`).
    pub landlock: Option<String>,
    /// What its root's mount namespace hides and makes read-only (`guard run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_ns: Option<String>,
    /// The repository its working directory belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<crate::report::Repository>,
    /// Sorted by pid.
    pub processes: Vec<ProcessInfo>,
}

/// `enforce` applies every action; `observe` downgrades every action to `log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Observe,
}

impl Mode {
    /// The name used in policies, events and views.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Percentiles of user-space kill latency, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
}

/// How one kind of enforcement runs on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// What is enforced, e.g. `exec_kill`, `file_write_deny`, `network_deny`.
    pub action: String,
    /// Where it is decided: `bpf_lsm`, `tracepoint`, `cgroup_sock_addr`, `user_space`.
    pub tier: String,
    /// What it guarantees there, for people.
    pub guarantee: String,
    /// Why a stronger tier is not in use, when one exists elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// How a `deny` rule with a `fallback` acts on this host (`policy_loaded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    /// The rule's id.
    pub rule: String,
    /// `deny` where BPF-LSM refuses its operations here, else its fallback.
    pub acts_as: Action,
    /// What it guarantees here, for people.
    pub guarantee: String,
    /// Its patterns only user space matches: for these it acts as its fallback on
    /// every kernel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_space: Vec<String>,
}

/// The `status` answer (read leniently, as [`SessionInfo`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub events_total: u64,
    pub events_per_second: f64,
    /// Records lost, by kind, counted in the kernel (plus `undecodable`, counted by
    /// the daemon). Absent when the kernel's counters could not be read.
    pub lost: Option<BTreeMap<String, u64>>,
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    /// guard's programs that the kernel runs from a live link now.
    pub programs: Vec<String>,
    /// Live links of guard's programs, as the kernel lists them…
    pub attachments: usize,
    /// …and how many the daemon made at start-up.
    pub attachments_expected: usize,
    /// The build of guard's eBPF programs loaded: `default`, or `compat` on a kernel
    /// without `bpf_loop` (docs/kernels.md); empty from a daemon before it was said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ebpf_build: String,
    pub subscribers: usize,
    pub policy: String,
    pub mode: Mode,
    /// Rules whose kill or deny is applied in part from user space, after the fact.
    pub user_space_rules: Vec<String>,
    pub kill_latency_us: Option<Latency>,
    /// How each kind of enforcement runs on this host.
    #[serde(default)]
    pub enforcement: Vec<Enforcement>,
    /// Session opens the kernel judged by identity. Absent when the kernel's
    /// counters could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityOpens>,
    /// The export to the organisation's pipeline, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportStatus>,
    /// The instructions the kernel's verifier processed to accept each loaded
    /// program (its work at every daemon start, within the kernel's limit of
    /// 1,000,000), by program; empty where the kernel does not count (before 5.16).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verified_insns: BTreeMap<String, u32>,
    /// The programs the verifier refused at one of its limits (instructions,
    /// states, the stack of a call chain), with the line of its log that says so:
    /// a fault of guard's build on this kernel (what each costs is in `enforcement`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub over_verifier_limits: BTreeMap<String, String>,
    /// The organisation's package names `[packages] first_seen` is judged against,
    /// when the policy in force sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_names: Option<PackageNames>,
}

/// The organisation's package names a host holds (`guard status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageNames {
    /// Names held: the fleet's, and those this host judged new since.
    pub names: usize,
    /// The fleet's whole list has arrived: packages are judged. Until then none is.
    pub ready: bool,
    /// Why none can arrive (no `[fleet]` in the host's own file), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// What confined a process at its exec, read by the kernel from its task
/// (`confinement` of `exec` events, docs/events.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfinementLine {
    /// Its seccomp mode: `disabled`, `strict` or `filter`.
    pub seccomp: String,
    pub no_new_privs: bool,
    /// Inode numbers of its network, mount and user namespaces (`/proc/PID/ns/*`).
    pub net_ns: u32,
    pub mnt_ns: u32,
    pub user_ns: u32,
    /// Tools: whether it runs inside a sandbox, namespaces or a seccomp filter that
    /// its agent's process does not have. Absent for other roles, or when the
    /// agent's process was not seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandboxed: Option<bool>,
}

impl ConfinementLine {
    /// The name of a `SECCOMP_MODE_*` value.
    pub fn seccomp_name(mode: u8) -> &'static str {
        match mode {
            0 => "disabled",
            1 => "strict",
            2 => "filter",
            _ => "unknown",
        }
    }
}

/// The export's state (`guard status`, docs/export.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportStatus {
    pub endpoint: String,
    /// `ok`, or `retrying` when the last attempt failed (`last_error` says why).
    pub state: String,
    /// Records handed to the export and not yet written to the spool: a SIGKILL
    /// now would lose them (a clean stop writes them first).
    pub pending: u64,
    /// Records waiting in the spool, and their bytes.
    pub spool_records: u64,
    pub spool_bytes: u64,
    /// Records the endpoint took, and the bytes sent (compressed, as on the wire).
    pub sent_records: u64,
    pub sent_bytes: u64,
    pub retries: u64,
    /// Records that will never arrive, by reason: `queue_full`, `spool_full_events`,
    /// `spool_full_summaries`, `spool_error`, `spool_lost`, `unreadable`, `rejected`.
    pub dropped: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RFC 3339 time of the last batch the endpoint took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
}

/// Session opens judged by identity (device, inode), counted in the kernel since
/// the pins were created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityOpens {
    /// Opens a rule matched by identity and not by path.
    pub matched: u64,
    /// Opens whose file was too deep to place inside or outside a protected
    /// directory (the rules on concrete directories applied: fail closed).
    pub unknown: u64,
}

impl Status {
    /// Every record lost so far.
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().flat_map(|m| m.values()).sum()
    }
}

/// A pid `kill` could not signal, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillError {
    pub pid: u32,
    pub error: String,
}

/// The `kill` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillReport {
    /// Processes that received SIGKILL, deepest first.
    pub killed: Vec<u32>,
    /// Targets that had already exited.
    #[serde(default)]
    pub gone: Vec<u32>,
    pub errors: Vec<KillError>,
}

impl KillReport {
    /// What the kills come to for a violation: the first error (`failed`), else
    /// `gone` when nothing was left to kill, else `killed`.
    pub fn outcome(&self) -> (Outcome, Option<String>) {
        match self.errors.first() {
            Some(e) => (
                Outcome::Failed,
                Some(alloc::format!("{}: {}", e.pid, e.error)),
            ),
            None if self.killed.is_empty() => (Outcome::Gone, None),
            None => (Outcome::Killed, None),
        }
    }
}

/// What a policy rule says to do when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray, strum::EnumString, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    /// Write the event with the rule id; nothing is stopped.
    Log,
    /// Like `log`, flagged for attention (`"alert": true`).
    Alert,
    /// Kill the process (in the kernel where it can decide, else from user space).
    Kill,
    /// Refuse the operation with EPERM: network connects and sends always; files
    /// and execs where BPF-LSM runs (elsewhere it acts as `kill`).
    Deny,
}

impl Action {
    /// The name used in policies and events.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The action a policy names, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// What actually happened about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// The process was killed (in the kernel, or from user space through a pidfd).
    Killed,
    /// The operation failed with EPERM (BPF-LSM or a cgroup hook).
    Denied,
    /// Written to the audit log only (a `log` rule, observe mode, or nothing left
    /// to stop).
    Logged,
    /// Written and flagged as an alert.
    Alerted,
    /// The process had exited before user space could kill it.
    Gone,
    /// A destination the kernel had no rule for yet (a name not yet resolved).
    NotDenied,
    /// The kill failed; the event says why (`outcome_error`).
    Failed,
    /// Stopped by the kernel at a later hook: the dynamic loader was killed when it
    /// mapped the program a rule forbids (the session's `route` event
    /// `exec_mapping` says so).
    Deferred,
}

impl Outcome {
    /// The name used in events and metrics.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the operation went ahead: only logged or alerted, or the kill
    /// failed (a secret read with such an outcome taints its reader).
    pub fn let_through(self) -> bool {
        matches!(self, Self::Logged | Self::Alerted | Self::Failed)
    }
}

/// A route around the open, exec and network hooks (`route` events, and the
/// `[sessions]` keys of a policy that refuse them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Route {
    /// `io_uring_setup(2)`.
    IoUring,
    /// `open_by_handle_at(2)`.
    OpenByHandleAt,
    /// The exec of a memfd or a deleted file.
    FilelessExec,
    /// A raw IPv4/IPv6 socket.
    RawSocket,
    /// A packet socket (`AF_PACKET`).
    PacketSocket,
    /// A file mapped executable that an exec rule forbids (the dynamic loader's
    /// route).
    ExecMapping,
    /// Listening beyond loopback: a TCP socket bound (or a UDP socket bound to a
    /// port) to an address that is not a loopback one.
    Listen,
    /// A route number this build does not know.
    #[serde(other)]
    Unknown,
}

impl Route {
    /// From a `crate::route` number.
    pub fn from_u32(v: u32) -> Self {
        match v {
            crate::route::IO_URING => Self::IoUring,
            crate::route::OPEN_BY_HANDLE => Self::OpenByHandleAt,
            crate::route::FILELESS_EXEC => Self::FilelessExec,
            crate::route::RAW_SOCKET => Self::RawSocket,
            crate::route::PACKET_SOCKET => Self::PacketSocket,
            crate::route::EXEC_MAPPING => Self::ExecMapping,
            crate::route::LISTEN => Self::Listen,
            _ => Self::Unknown,
        }
    }

    /// The name in events (`route`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use alloc::{string::ToString, vec};

    use strum::VariantArray;

    use super::*;

    /// Each name exists twice, derived: serde's (events, the control protocol) and
    /// strum's (`as_str`: views, metrics, policies). They must be the same words.
    fn names_agree<T: VariantArray + Serialize + Copy + Into<&'static str>>() {
        for &v in T::VARIANTS {
            let name: &'static str = v.into();
            assert_eq!(serde_json::to_value(v).unwrap(), name);
        }
    }

    #[test]
    fn serde_and_strum_name_every_variant_alike() {
        names_agree::<CallPhase>();
        names_agree::<How>();
        names_agree::<SessionState>();
        names_agree::<Mode>();
        names_agree::<Action>();
        names_agree::<Outcome>();
        names_agree::<Route>();
        for a in Action::VARIANTS {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert_eq!(a.to_string(), a.as_str());
        }
        assert_eq!(
            Action::parse("Kill"),
            None,
            "policies spell actions in lower case"
        );
        assert_eq!(Route::OpenByHandleAt.as_str(), "open_by_handle_at");
        assert_eq!(Outcome::NotDenied.as_str(), "not_denied");
    }

    #[test]
    fn a_kill_report_comes_to_one_outcome() {
        let mut r = KillReport::default();
        assert_eq!(r.outcome(), (Outcome::Gone, None));
        r.killed.push(7);
        assert_eq!(r.outcome(), (Outcome::Killed, None));
        r.errors.push(KillError {
            pid: 8,
            error: "EPERM".to_string(),
        });
        assert_eq!(r.outcome(), (Outcome::Failed, Some("8: EPERM".to_string())));
    }

    /// Serialises and reads back; the two must be equal.
    fn round_trip<T>(value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + core::fmt::Debug,
    {
        let text = serde_json::to_string(value).expect("serialise");
        let back: T = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(&back, value, "{text}");
    }

    #[test]
    fn every_request_round_trips() {
        for r in [
            Request::Run {
                argv: vec!["codex".into(), "exec".into()],
                landlock: false,
                mount_ns: false,
                home: None,
            },
            Request::Run {
                argv: vec!["codex".into()],
                landlock: true,
                mount_ns: true,
                home: Some("/home/alice".into()),
            },
            Request::Sessions,
            Request::Status,
            Request::Subscribe {
                session: Some("00ab".into()),
                kinds: vec!["exec".into()],
            },
            Request::Subscribe {
                session: None,
                kinds: vec![],
            },
            Request::Kill {
                session: None,
                pid: Some(42),
            },
            Request::Report {
                session: "00ab".into(),
            },
            Request::Confined {
                session: "00ab".into(),
                landlock: Some("fully enforced, 12 rules".into()),
                mount_ns: None,
            },
            Request::Confined {
                session: "00ab".into(),
                landlock: None,
                mount_ns: Some("2 read-only, 1 hidden".into()),
            },
        ] {
            round_trip(&r);
        }
        let r: Request = serde_json::from_str(r#"{"op":"kill","pid":42}"#).expect("parse");
        assert_eq!(
            r,
            Request::Kill {
                session: None,
                pid: Some(42)
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }

    fn session() -> SessionInfo {
        SessionInfo {
            id: "000000f27677c8c0".into(),
            agent: "codex".into(),
            root_pid: 10,
            how: How::Run,
            uid: 1000,
            user: Some("alice".into()),
            cwd: Some("/home/alice/repo".into()),
            container: None,
            pod: None,
            container_name: None,
            pod_name: None,
            namespace: None,
            started: "2026-11-22T08:00:00.000000000Z".into(),
            ended: None,
            state: SessionState::Running,
            counts: Counts {
                exec: 2,
                open: 3,
                ..Counts::default()
            },
            processes: vec![ProcessInfo {
                pid: 10,
                ppid: 1,
                comm: "codex".into(),
                exe: Some("/usr/bin/codex".into()),
                argv: vec!["codex".into()],
                role: "agent".into(),
                agent_thread: None,
                package: None,
                tool_call: None,
                undeclared: None,
                sandboxed: None,
            }],
            agent_pid: Some(10),
            agent_threads: vec!["019aa2b0-0000-7000-8000-000000000001".into()],
            landlock: Some("fully enforced, 12 rules".into()),
            mount_ns: Some("2 read-only, 1 hidden".into()),
            repository: Some(crate::report::Repository {
                url: Some("git@github.com:alice/repo.git".into()),
                branch: Some("main".into()),
                commit: None,
                root: Some("/home/alice/repo".into()),
                note: Some("no commit yet".into()),
            }),
        }
    }

    #[test]
    fn every_reply_round_trips() {
        round_trip(&Reply::data(Registered {
            session: "00000000000000ab".into(),
            read_deny: vec!["/home/alice/.ssh/id_ed25519".into()],
            write_deny: vec!["/home/alice/src/app/.git/hooks".into()],
            notes: vec!["the workspace has more than 20000 entries".into()],
        }));
        round_trip(&Reply::data(vec![session()]));
        round_trip(&Reply::<Vec<SessionInfo>>::error("no such session"));
        round_trip(&Reply::data(Status {
            events_total: 5,
            events_per_second: 1.5,
            lost: Some(BTreeMap::from([("open".to_string(), 2)])),
            cpu_seconds: 0.25,
            rss_bytes: 1 << 20,
            programs: vec!["sched_process_exec".into()],
            attachments: 1,
            attachments_expected: 1,
            ebpf_build: "default".into(),
            subscribers: 0,
            policy: "workstation".into(),
            mode: Mode::Enforce,
            user_space_rules: vec!["pipe-to-shell".into()],
            kill_latency_us: Some(Latency {
                p50: 180,
                p99: 1000,
            }),
            enforcement: vec![Enforcement {
                action: "file_write_deny".into(),
                tier: "tracepoint".into(),
                guarantee: "kill after the open".into(),
                fallback_reason: Some("BPF-LSM not active".into()),
            }],
            identity: Some(IdentityOpens {
                matched: 3,
                unknown: 1,
            }),
            export: Some(ExportStatus {
                endpoint: "https://fleet.example:4318/v1/logs".into(),
                state: "retrying".into(),
                pending: 5,
                spool_records: 12,
                spool_bytes: 4096,
                sent_records: 100,
                sent_bytes: 20_000,
                retries: 2,
                dropped: BTreeMap::from([("queue_full".to_string(), 1)]),
                last_error: Some("503 Service Unavailable".into()),
                last_success: Some("2026-11-22T08:00:01Z".into()),
            }),
            verified_insns: BTreeMap::from([("sys_exit_open".to_string(), 256_139)]),
            over_verifier_limits: BTreeMap::new(),
            package_names: Some(PackageNames {
                names: 12,
                ready: true,
                unavailable: None,
            }),
        }));
        round_trip(&Reply::data(crate::report::Report {
            session: "000000f27677c8c0".into(),
            agent: Some("codex".into()),
            commands: crate::report::Bounded {
                items: vec![crate::report::Command {
                    ts: "2026-11-22T08:00:00.000000000Z".into(),
                    pid: 10,
                    exe: "/usr/bin/git".into(),
                    argv: vec!["git".into(), "status".into()],
                    verdict: None,
                    sandboxed: Some(false),
                }],
                omitted: 3,
            },
            ..Default::default()
        }));
        round_trip(&Reply::data(KillReport {
            killed: vec![3, 2],
            gone: vec![4],
            errors: vec![KillError {
                pid: 5,
                error: "EPERM".into(),
            }],
        }));
    }
}
