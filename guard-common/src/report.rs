//! Session reports (`guard report`, `[report] dir`): one document per session, who
//! ran what and where, files read and written by class, destinations, violations and
//! what guard did. The daemon and `guard report` build it (guard's `report` module);
//! this is its shape, the same in the `report` reply and in the JSON files.

extern crate alloc;

use alloc::{borrow::ToOwned, format, string::String, vec::Vec};

use serde::{Deserialize, Serialize};

/// Most entries a list of a report keeps (commands, files of one class,
/// destinations, violations); past it the report counts what it left out.
pub const MAX_ITEMS: usize = 2_000;

/// A list that stops growing at [`MAX_ITEMS`] and counts the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounded<T> {
    pub items: Vec<T>,
    /// Entries past the bound: counted, not listed.
    pub omitted: u64,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            omitted: 0,
        }
    }
}

impl<T> Bounded<T> {
    /// Keeps the first `n` entries; the rest are counted in `omitted`.
    pub fn cut(&mut self, n: usize) {
        if self.items.len() > n {
            self.omitted += (self.items.len() - n) as u64;
            self.items.truncate(n);
        }
    }

    /// Adds `item`, or counts it when the list is full.
    pub fn push(&mut self, item: T) {
        if self.items.len() < MAX_ITEMS {
            self.items.push(item);
        } else {
            self.omitted += 1;
        }
    }
}

/// A program a session ran (one `exec`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub ts: String,
    pub pid: u32,
    pub exe: String,
    pub argv: Vec<String>,
    /// What guard did, when the exec broke a rule: `rule: outcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// A tool's exec: whether it ran inside a sandbox (the exec event's
    /// `confinement.sandboxed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxed: Option<bool>,
}

/// A Unix domain socket a session connected or sent to, every use folded in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocket {
    /// The socket file it reached (`@name` for an abstract socket).
    pub path: String,
    pub connects: u64,
    pub sends: u64,
    /// Calls that failed (no listener, refused by guard).
    pub failed: u64,
    /// The first program that used it.
    pub by: String,
    /// Rules the calls broke, with what guard did (`rule: outcome`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
}

/// One file a session opened, with every open of it folded in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUse {
    pub path: String,
    /// Opens of this path.
    pub opens: u64,
    /// Opens that failed (the file absent, permission, refused by guard).
    pub failed: u64,
    /// The first program that opened it.
    pub by: String,
    /// Rules the opens broke, with what guard did (`rule: outcome`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
}

/// Where files are, as a report sorts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileClass {
    /// Matched a rule marked `secret` (credentials, keys, dotenv files).
    Secret,
    /// Under the session's working directory.
    Workspace,
    /// The system's own files: libraries, programs, configuration, `/proc`, `/sys`, `/dev`.
    System,
    /// Anything else (the user's home outside the workspace, /tmp, other trees).
    Outside,
}

/// Files by class and access.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Files {
    pub secrets: Bounded<FileUse>,
    pub workspace: Bounded<FileUse>,
    pub outside: Bounded<FileUse>,
    /// The system's files: listed in JSON, counted in Markdown.
    pub system: Bounded<FileUse>,
}

/// One destination a session connected or sent to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub addr: String,
    pub port: u16,
    pub proto: String,
    /// The policy name the address resolved from, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub connects: u64,
    pub sends: u64,
    /// Attempts that failed (refused by guard with EPERM, or by the network).
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
    /// Bytes sent to and received from it (IP level, headers included), over the
    /// session's flows (sockets) to it, as of their latest `flow` records.
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub bytes_in: u64,
    /// Flows (sockets) to it that reported bytes.
    #[serde(default)]
    pub flows: u64,
    /// What it is (`model`, `registry`, `code_host`, `allowlisted`, `local`,
    /// `other`): the same classes as the events' `dest_class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// The repository a session's workspace belongs to, read from its git metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `remote.origin.url` (or the first remote's), credentials stripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The checked-out branch (none when HEAD is detached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The HEAD commit (none in a repository with no commit yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The repository's top directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Why something is missing, for people: `not a git repository`, `no remote`,
    /// `unreadable: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Repository {
    /// One line for people: `URL (BRANCH @ COMMIT12)`, or the note.
    pub fn summary(&self) -> String {
        let Some(url) = &self.url else {
            return self.note.clone().unwrap_or_else(|| "-".to_owned());
        };
        let at = self.commit.as_deref().map(|c| &c[..c.len().min(12)]);
        match (self.branch.as_deref(), at) {
            (Some(b), Some(c)) => format!("{url} ({b} @ {c})"),
            (Some(b), None) => format!("{url} ({b})"),
            (None, Some(c)) => format!("{url} (@ {c})"),
            (None, None) => url.clone(),
        }
    }
}

/// A broken rule and what guard did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub ts: String,
    pub pid: u32,
    pub comm: String,
    /// The event's kind and what it was about: `open /home/a/.ssh/id_rsa`.
    pub what: String,
    /// The file it was about (an open's, a route's, a tamper attempt's), when there
    /// is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub rule: String,
    pub action: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub alert: bool,
}

/// A secret the session read: an open for reading, matched by a `secret = true`
/// rule, that nothing stopped (a `log` or `alert` rule, observe mode, a failed kill).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRead {
    /// The first read of the path.
    pub ts: String,
    pub pid: u32,
    pub comm: String,
    pub path: String,
}

/// What the session sent to one destination after its first secret read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentAfter {
    pub addr: String,
    pub port: u16,
    pub proto: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Bytes sent (IP level) by flow records dated after the first secret read:
    /// each record's bytes since the flow's previous record.
    pub bytes_out: u64,
    /// Connects and sends to it after the first secret read.
    pub attempts: u64,
    /// Of those, the ones that failed (refused by guard, or by the network).
    pub failed: u64,
    /// Some of them came from a tainted process (one that read a secret itself, or
    /// descends from one); the rest were the session's other processes, which taint
    /// does not follow (a secret passed through a pipe or a file).
    pub tainted: bool,
}

/// The session-level fact: which secrets it read, then what it sent where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEgress {
    /// Secrets read, first read first.
    pub secrets: Bounded<SecretRead>,
    /// Destinations contacted after the first secret read.
    pub sent_after: Bounded<SentAfter>,
}

/// A package a session installed, recognised by the manifest its install wrote
/// (`node_modules/NAME/package.json`, `NAME-VERSION.dist-info/METADATA`, a crate's
/// `Cargo.toml` under cargo's registry, a module's `go.mod` under Go's cache).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// `npm`, `pypi`, `crates.io` or `go`.
    pub ecosystem: String,
    pub name: String,
    /// From the manifest (or its directory's name); none when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The manifest file it was recognised by.
    pub manifest: String,
    /// When the manifest was first written.
    pub ts: String,
    /// The process that wrote it, and its command line (`npm install …`).
    pub pid: u32,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Package registries (destinations of class `registry`) that process connected
    /// to before writing it, by host name where known: where the package came from.
    /// Empty for an install from local files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
    /// Why the version is missing, for people (`manifest gone`, `unreadable: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A package's script that ran: npm runs a package's lifecycle scripts (`preinstall`,
/// `install`, `postinstall`, `prepare`) when it installs it, and a project's own
/// scripts on `npm run`, with `npm_package_name` in their environment; cargo runs
/// a crate's build script (`build.rs`) when it builds it. The script's processes are
/// every process that carried it, from its first one down.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// The package it belongs to (its environment's `npm_package_name`; the crate
    /// whose `build/NAME-HASH/build-script-build` it runs).
    pub package: String,
    /// The package is one the session installed: an install script (an npm
    /// package's, or the build script of a crate the session downloaded).
    pub install: bool,
    /// Its first process: when it started and what it ran.
    pub ts: String,
    pub pid: u32,
    pub command: String,
    /// Programs its processes ran (execs).
    pub execs: u64,
    /// Opens of files for reading, and for writing.
    pub reads: u64,
    pub writes: u64,
    /// Secrets (files matched by a `secret = true` rule) it opened, first first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Destinations it connected or sent to (`host:port` or `addr:port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Rules its processes broke, with what guard did (`rule: outcome`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
}

/// A tool call the agent declared through its hook (`guard hook`), with what its
/// processes did: every process the daemon tied to it (`call` on their events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The call's id (the model's `call_id`, the hook's `tool_use_id`).
    pub id: String,
    pub tool: String,
    /// What it declared: a shell tool's command line (redacted as commands are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub started: String,
    /// Its end as the agent declared it; none while it runs (or when its hook for
    /// the end did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// The programs its processes ran, as the commands list gives them, first first
    /// (at most [`CALL_LIST_MAX`]; `execs` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Command>,
    pub execs: u64,
    /// What its processes did beyond a command line's reach, for a reviewer to set
    /// against what it declared: destinations reached (`host:port`), secrets opened
    /// (tried or done), files written outside the workspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub written_outside: Vec<String>,
    /// Rules its processes broke, with what guard did (`rule: outcome`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
}

/// Items of each of a call's lists kept.
pub const CALL_LIST_MAX: usize = 32;

/// A process of the session that no declared call accounts for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeclared {
    /// Its first exec (or, for a process that never exec'd, its first event).
    pub ts: String,
    pub pid: u32,
    pub command: String,
    /// `outlived_call`: it worked on after its call ended (a process left behind in
    /// the background); `outside_calls`: the agent started it outside every call
    /// (its own helpers, or work no call asked for); `install_script`: a package's
    /// script ran it, inside the call that installed the package.
    pub why: String,
    /// The call it belongs to (`outlived_call`, `install_script`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// What it did once undeclared: execs, and destinations reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub did: Vec<String>,
}

/// Why a process is undeclared ([`Undeclared::why`]).
pub mod why {
    /// It worked on after its call ended (a process left behind).
    pub const OUTLIVED: &str = "outlived_call";
    /// The agent started it outside every call.
    pub const OUTSIDE: &str = "outside_calls";
    /// A package's install script ran it, inside the call that installed the package.
    pub const INSTALL_SCRIPT: &str = "install_script";
}

/// The report of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub session: String,
    /// The agent program that started it.
    pub agent: Option<String>,
    /// The agent's version, where guard could tell (its package, its environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The agent's own session or thread ids its tools carried (Codex's
    /// `CODEX_THREAD_ID`), first seen first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_threads: Vec<String>,
    pub root_pid: Option<u32>,
    /// How the session started (`exec`, `run`, `container`, `scan`, `adopted`).
    pub how: Option<String>,
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The root's working directory: the repository the agent worked in.
    pub workspace: Option<String>,
    /// The workspace's repository: remote, branch, commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    pub container: Option<String>,
    pub started: Option<String>,
    pub ended: Option<String>,
    /// From start to end (to the last event while it runs).
    pub duration_ms: Option<u64>,
    /// Processes the session forked.
    pub forks: u64,
    pub commands: Bounded<Command>,
    /// Files opened for reading only.
    pub read: Files,
    /// Files opened for writing (created, truncated, appended).
    pub written: Files,
    pub destinations: Bounded<Destination>,
    /// Unix domain sockets: local services the session reached (a proxy, the
    /// Docker socket, an agent's socket).
    #[serde(default)]
    pub unix_sockets: Bounded<UnixSocket>,
    /// Bytes the session's sockets sent and received in all (IP level), from its
    /// `flow` records; includes flows to destinations the list had no room for.
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub bytes_in: u64,
    pub violations: Bounded<Violation>,
    /// Secrets read, then egress ("this session read secret X, then sent N bytes to
    /// Y"): what taint cannot follow, at the session's level.
    #[serde(default)]
    pub secret_egress: SecretEgress,
    /// Records of the session the kernel dropped (over its `[limits]`): what the
    /// report could not see.
    pub dropped: u64,
    /// Processes the policy killed when the root exited (`kill_stragglers`).
    pub stragglers_killed: Vec<u32>,
    /// Packages the session installed, in the order their manifests were written.
    #[serde(default)]
    pub packages: Bounded<Package>,
    /// Packages' scripts that ran (npm's lifecycle and run scripts), first first.
    #[serde(default)]
    pub scripts: Bounded<Script>,
    /// Tool calls the agent declared, first first: through its hook as they ran, or
    /// (Codex run without guard's hook) in its rollout file, read at the session's
    /// end. Empty when the agent declared none either way: then nothing is said of
    /// declared work, and `undeclared` stays empty too.
    #[serde(default)]
    pub calls: Bounded<Call>,
    /// Where `calls` come from: `hook` (guard's hook, as each call ran) or `rollout`
    /// (the agent's rollout file, each process tied to its call after the session
    /// by the time it started and the command it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<String>,
    /// Records of the session's processes the report could not tie to the rollout's
    /// calls (more than it keeps for that: counted, not tied).
    #[serde(default, skip_serializing_if = "none")]
    pub untied: u64,
    /// Processes no declared call accounts for (with `calls` only).
    #[serde(default)]
    pub undeclared: Bounded<Undeclared>,
}

fn none(n: &u64) -> bool {
    *n == 0
}

impl Files {
    fn cut(&mut self, n: usize) {
        self.secrets.cut(n);
        self.workspace.cut(n);
        self.outside.cut(n);
        // The system's files are counted, not listed, in a summary.
        self.system.cut(0);
    }
}

impl Report {
    /// The report as a session summary (the export's, docs/export.md): every list
    /// cut to its first `n` entries (the rest counted in `omitted`), the system's
    /// files only counted; counts and byte totals unchanged.
    pub fn summary(mut self, n: usize) -> Self {
        self.commands.cut(n);
        self.read.cut(n);
        self.written.cut(n);
        self.destinations.cut(n);
        self.unix_sockets.cut(n);
        self.violations.cut(n);
        self.secret_egress.secrets.cut(n);
        self.secret_egress.sent_after.cut(n);
        self.packages.cut(n);
        self.scripts.cut(n);
        self.calls.cut(n);
        self.undeclared.cut(n);
        self
    }
}
