//! The command line: clap's types, and the client commands that talk to a running
//! daemon (`clients`) or become a session (`run`).

pub mod clients;
pub mod hook;
pub mod policy_test;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{control, policy};

#[derive(Parser)]
#[command(
    name = "guard",
    version,
    about = "Watch AI coding agents from the Linux kernel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Load the kernel programs and report every agent session as JSON lines (root).
    Daemon {
        /// Program name whose exec starts a session (repeatable; replaces the
        /// policy's `[agents] names`). Compared with the first 15 bytes, as the
        /// kernel's `comm`.
        #[arg(long = "agent", value_name = "NAME")]
        agents: Vec<String>,
        /// The policy: a TOML file, or a built-in (`workstation`, the default, or
        /// `ci`). Reloaded on SIGHUP and when the file changes.
        #[arg(long, value_name = "FILE|workstation|ci")]
        policy: Option<PathBuf>,
        /// Serve Prometheus metrics (`/metrics`) and health (`/healthz`) on this
        /// address, e.g. `127.0.0.1:9464`.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Where the container runtimes keep their state (containerd's bundles,
        /// CRI-O's and Docker's container configs), for `[agents] containers` terms by
        /// name, image, pod and namespace: `/`, or where the host's `/run` and
        /// `/var/lib/docker` are mounted below a directory.
        #[arg(long, value_name = "DIR", default_value = "/")]
        runtime_root: PathBuf,
        /// Turn on the kernel's BPF run-time statistics while guard runs, for the
        /// `guard_program_*` metrics. They cost every BPF program on the host two
        /// clock reads per run (about 0.2 µs here); off by default.
        #[arg(long)]
        bpf_stats: bool,
        /// Benchmarks only: attach empty programs to guard's hooks and wait for
        /// SIGTERM/SIGINT (the cost of the hooks alone).
        #[arg(long, hide = true)]
        floor: bool,
        /// Where to write events: a file, or `-` for standard output.
        #[arg(long, value_name = "PATH|-", default_value = "-")]
        events: PathBuf,
        /// The control socket (`guard run` registers through it).
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Where the programs, links and maps are pinned, on a BPF file system. They
        /// stay there when the daemon stops or dies, so the kernel keeps enforcing; the
        /// next daemon takes them over. One daemon per directory.
        #[arg(long, env = "GUARD_PIN_DIR", default_value = crate::ebpf::pins::DEFAULT_DIR)]
        pin_dir: PathBuf,
        /// At a clean stop (SIGTERM/SIGINT), remove the pins: enforcement ends with this
        /// daemon (for one-off runs and benchmarks; a crash still leaves them).
        #[arg(long)]
        lift_on_stop: bool,
        /// Size of the ring buffer that carries records to the daemon, in KiB: a power
        /// of two from 64 to 1048576. It holds what a burst (or a daemon restart) leaves
        /// unread; what does not fit is counted as lost. Applies when the pins are
        /// created (first start, or after `guard unload`); a daemon adopting pins keeps
        /// the ring it finds there.
        #[arg(long, value_name = "KIB", default_value_t = crate::ebpf::RING_KIB_DEFAULT,
              value_parser = crate::ebpf::parse_ring_kib)]
        ring_buffer_kib: u32,
        /// Which build of guard's eBPF programs to load: `auto` takes the default
        /// build where the kernel has `bpf_loop` (Linux 5.17), the compat build
        /// (bounded loops over global functions) where it does not (docs/kernels.md).
        #[arg(long, value_enum, value_name = "BUILD", default_value = "auto")]
        ebpf_build: crate::ebpf::object::Choice,
        /// Send events and session summaries as OTLP/HTTP logs to this URL (an
        /// OpenTelemetry collector's or guard's fleet server's `/v1/logs`), in place
        /// of the policy's `[export] endpoint` (docs/export.md).
        #[arg(long, env = "GUARD_EXPORT_ENDPOINT", value_name = "URL")]
        export_endpoint: Option<String>,
        /// A file holding the export's bearer token (`Authorization: Bearer
        /// <content>`), in place of the policy's `[export] token_file`: a mounted
        /// Kubernetes Secret, a systemd credential.
        #[arg(long, env = "GUARD_EXPORT_TOKEN_FILE", value_name = "PATH")]
        export_token_file: Option<PathBuf>,
        /// The socket agents' hooks ask what guard stopped for them (`guard hook`):
        /// anyone may connect, and learn only about their own sessions. Default:
        /// `hook.sock` beside the control socket.
        #[arg(long, env = "GUARD_HOOK_SOCKET", value_name = "PATH")]
        hook_socket: Option<PathBuf>,
        /// Where guard keeps state that outlives it: the export's spool
        /// (`<dir>/spool`, unless `[export] spool_dir` says otherwise).
        #[arg(
            long,
            env = "GUARD_STATE_DIR",
            value_name = "DIR",
            default_value = "/var/lib/guard"
        )]
        state_dir: PathBuf,
    },
    /// Stop enforcing: remove guard's pinned programs, links and maps (the daemon
    /// leaves them in place when it stops, on purpose). Refused while a daemon runs.
    Unload {
        #[arg(long, env = "GUARD_PIN_DIR", default_value = crate::ebpf::pins::DEFAULT_DIR)]
        pin_dir: PathBuf,
    },
    /// Check a policy file or print a built-in one.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// List agent sessions known to the running daemon.
    Sessions {
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Stream events from the running daemon.
    Events {
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Keep streaming (the only mode: events are a live stream).
        #[arg(long, short)]
        follow: bool,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// Only events of this kind (repeatable).
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// JSON lines instead of the human-readable form (`--format json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// `human`, `json` (guard's event lines, docs/events.md) or `ocsf` (OCSF 1.7
        /// records: an activity per event, a Detection Finding after a violation).
        #[arg(long, value_enum)]
        format: Option<clients::EventFormat>,
        /// Read this audit log (`-`: standard input) instead of the daemon's
        /// stream, written as guard's lines or as OCSF (`[audit] format`); stops at
        /// its end.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
    /// The daemon's health: event rate, lost events, CPU and memory, programs, and
    /// how each action is enforced on this kernel.
    Status {
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// A session's report: who and where, commands, files read and written by class,
    /// destinations, violations and what guard did. Markdown unless --json, --sarif
    /// or --html.
    Report {
        /// The session id (or a unique prefix of it).
        session: String,
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Build it from an audit log (the daemon's `--events` file) instead of
        /// asking the daemon: for sessions the daemon no longer keeps.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print its violations as SARIF 2.1.0 (for a code host's code scanning).
        #[arg(long, conflicts_with = "json")]
        sarif: bool,
        /// Print it as one HTML page (the Markdown's content, its timeline drawn as
        /// SVG; no script): the artifact a CI job attaches for a reviewer.
        #[arg(long, conflicts_with_all = ["json", "sarif"])]
        html: bool,
    },
    /// Kill a session (every process in it) or a process subtree.
    Kill {
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long, conflicts_with = "pid", required_unless_present = "pid")]
        session: Option<String>,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Live terminal view of agent sessions.
    Top {
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `guard man | man -l -`.
    Man,
    /// The fleet server and its client (`serve`, `sessions`, `report`, `token`,
    /// `migrate`): runs `guard-fleet`, installed beside `guard` or on the PATH, with
    /// these arguments (docs/fleet.md). A second binary keeps the host daemon free of
    /// the server's database and web code.
    #[command(disable_help_flag = true)]
    Fleet {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// An agent's hook: tells the agent what guard stopped of its last tool call and
    /// why, in the form the agent reads (docs/agents.md). Codex: a `PostToolUse`
    /// hook (`/etc/codex/hooks.json`); Claude Code: a `PostToolUse` hook of its
    /// settings; given the hook's JSON on stdin.
    Hook {
        /// The agent: `codex`, `claude` or `gemini`.
        agent: String,
        #[arg(long, env = "GUARD_HOOK_SOCKET", default_value = control::DEFAULT_HOOK_SOCKET)]
        socket: PathBuf,
    },
    /// Run a command as a new agent session, tracked from its first instruction.
    Run {
        /// The daemon's control socket.
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Confine the command with Landlock too, derived from the daemon's policy:
        /// the files and directories `kill`/`deny` rules on reads name cannot be
        /// read, and only the working directory, the agent's state, the temporary
        /// directories, the caches and /dev can be written; a refused operation
        /// fails with EACCES and the command lives (docs/policy.md, "Landlock").
        /// An agent's own bubblewrap sandbox cannot start inside it.
        #[arg(long)]
        landlock: bool,
        /// With --landlock: also writable (repeatable).
        #[arg(long, value_name = "PATH", requires = "landlock")]
        writable: Vec<PathBuf>,
        /// No mount namespace: by default the command runs in one of its own, where
        /// what the policy forbids every process of the session to change is
        /// read-only and what it forbids them to read is hidden (docs/policy.md,
        /// "The mount namespace of `guard run`").
        #[arg(long)]
        no_mount_namespace: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Report every problem with file:line:col and a stable code; exit 1 on errors.
    Check {
        /// A policy file (or a built-in's name).
        file: PathBuf,
    },
    /// Print a built-in policy, as a starting point for your own.
    Show {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(policy::builtin::NAMES))]
        name: String,
    },
    /// Print the `digest` line of an exec rule that names this program by its
    /// content: a copy of it under any name is then the same program.
    Digest {
        /// The program (a file).
        file: PathBuf,
    },
    /// Print what the built-in policies answer, technique by technique (MITRE
    /// ATT&CK ids where one fits), as a Markdown table.
    Coverage,
    /// Replay recorded events (audit logs, `guard top`'s or the export's lines)
    /// against a policy: which rules would fire, against what fired when they were
    /// recorded. Exit 0 when nothing changes, 2 when something would fire
    /// differently, 1 on errors.
    Test {
        /// A policy file (or a built-in's name).
        policy: PathBuf,
        /// Event logs, one JSON event per line (`-`: standard input).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}
