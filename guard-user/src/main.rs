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
mod metrics;
mod policy;
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

#[derive(Subcommand)]
enum PolicyCmd {
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
}

fn policy_command(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Show { name } => {
            print!("{}", policy::builtin::get(&name).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Check { file } => match policy::load(&policy::Source::from_arg(Some(&file))) {
            Ok((p, warnings)) => {
                print!(
                    "{}",
                    policy::diag::render(&file.display().to_string(), &warnings)
                );
                eprintln!(
                    "guard: policy {} is valid: {} rule(s), {} warning(s)",
                    p.name,
                    p.rules.len(),
                    warnings.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(policy::LoadError::Invalid {
                rendered, errors, ..
            }) => {
                print!("{rendered}");
                eprintln!("guard: policy {} has {errors} error(s)", file.display());
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        },
    }
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
        Cmd::Policy { command } => {
            return policy_command(command).unwrap_or_else(|e| {
                eprintln!("guard: error: {e:#}");
                ExitCode::FAILURE
            });
        }
        Cmd::Daemon {
            agents,
            events,
            socket,
            policy,
            metrics,
            runtime_root,
            bpf_stats,
            floor,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                if floor {
                    return rt.block_on(daemon::floor());
                }
                rt.block_on(daemon::run(daemon::Options {
                    agents,
                    events,
                    socket,
                    policy: policy::Source::from_arg(policy.as_deref()),
                    metrics,
                    runtime_root,
                    bpf_stats,
                }))
            }),
        Cmd::Run { socket, command } => run::run(&socket, &command),
        Cmd::Sessions { socket, json } => clients::sessions(&socket, json),
        Cmd::Events {
            socket,
            follow: _,
            session,
            kinds,
            json,
        } => clients::events(&socket, session, kinds, json),
        Cmd::Status { socket } => clients::status(&socket),
        Cmd::Kill {
            socket,
            session,
            pid,
        } => clients::kill(&socket, session, pid),
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
