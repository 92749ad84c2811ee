//! `guard`: watch AI coding agents from the Linux kernel.
//!
//! The kernel side (guard-ebpf) follows each agent's process tree and reports its
//! exec, open and connect; this binary decodes, labels and reports them.
//! Data flows one way: `ebpf` → `event` → `session` → `audit`; `control` is the
//! daemon's socket, `daemon` the loop that owns them all.

mod action;
mod audit;
mod clients;
mod clock;
mod control;
mod daemon;
mod ebpf;
mod event;
mod run;
mod session;
mod top;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "guard",
    version,
    about = "Watch AI coding agents from the Linux kernel"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the kernel programs and report every agent session as JSON lines (root).
    Daemon {
        /// Program name whose exec starts a session (repeatable; replaces the
        /// default list). Compared with the first 15 bytes, as the kernel's `comm`.
        #[arg(long = "agent", value_name = "NAME", default_values_t = default_agents())]
        agents: Vec<String>,
        /// Where to write events: a file, or `-` for standard output.
        #[arg(long, value_name = "PATH|-", default_value = "-")]
        events: PathBuf,
        /// The control socket (`guard run` registers through it).
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
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
        /// JSON lines instead of the human-readable form.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's health: event rate, lost events, CPU and memory, programs.
    Status {
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
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
    /// Run a command as a new agent session, tracked from its first instruction.
    Run {
        /// The daemon's control socket.
        #[arg(long, env = "GUARD_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

fn default_agents() -> Vec<String> {
    vec!["codex".to_owned()]
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Daemon {
            agents,
            events,
            socket,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(daemon::run(daemon::Options {
                    agents,
                    events,
                    socket,
                }))
            }),
        Cmd::Run { socket, command } => run::run(&socket, &command),
        Cmd::Sessions { socket, json } => clients::sessions(&socket, json),
        Cmd::Events { socket, follow: _, session, kinds, json } => clients::events(&socket, session, kinds, json),
        Cmd::Status { socket } => clients::status(&socket),
        Cmd::Kill { socket, session, pid } => clients::kill(&socket, session, pid),
        Cmd::Top { socket } => top::run(&socket),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
