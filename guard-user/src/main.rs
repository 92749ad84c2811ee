//! `guard`: watch AI coding agents from the Linux kernel.
//!
//! The kernel side (guard-ebpf) follows each agent's process tree, reports its
//! exec, open and connect, and kills or denies what it can decide itself. This
//! binary decides and acts on the rest, and reports. Data flows one way:
//! `ebpf` (ring buffer) → `event` (decode, enrich) → `session` (trees) → `policy`
//! (the judge's verdict) → `action` (kills) → `audit`, `control` (subscribers,
//! `guard top`), `metrics`. `daemon` wires them in one loop; `cli` holds the
//! command line and the client commands. This file parses and dispatches.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use guard::cli::{Cli, Cmd, PolicyCmd, clients, hook, run};
use guard::{daemon, ebpf, policy, top};

fn policy_command(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Show { name } => {
            print!("{}", policy::builtin::get(&name).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Digest { file } => {
            let (sha256, size) = guard::digest::of_file(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let digest = policy::model::Digest { sha256, size };
            println!("# {} ({size} bytes), in an exec rule:", file.display());
            println!("digest = [\"{digest}\"]");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Coverage => {
            let techniques = policy::coverage::techniques()
                .context("the built-in coverage data (guard-policy/data/coverage.toml)")?;
            print!("{}", policy::coverage::table(&techniques));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Test { policy, logs, json } => {
            guard::cli::policy_test::run(&policy, &logs, json)
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
                    p.own_rules(),
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

#[expect(
    clippy::too_many_lines,
    reason = "one arm per subcommand, each passing its options on: the command line in one place"
)]
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
            pin_dir,
            lift_on_stop,
            ring_buffer_kib,
            ebpf_build,
            export_endpoint,
            export_token_file,
            state_dir,
            hook_socket,
        } => {
            guard::host::one_malloc_arena();
            tokio::runtime::Builder::new_current_thread()
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
                    policy: policy::Source::from_arg(policy.as_deref()),
                    metrics,
                    runtime_root,
                    bpf_stats,
                    pin_dir,
                    lift_on_stop,
                    ring_bytes: ring_buffer_kib * 1024,
                    ebpf_build,
                    export_endpoint,
                    export_token_file,
                    state_dir,
                    hook_socket: hook_socket
                        .unwrap_or_else(|| socket.with_file_name("hook.sock")),
                    socket,
                }))
            })
        }
        Cmd::Hook { agent, socket } => hook::run(&agent, &socket),
        Cmd::Run {
            socket,
            landlock,
            writable,
            no_mount_namespace,
            command,
        } => run::run(
            &socket,
            &command,
            &run::Confine {
                landlock: landlock.then_some(writable.as_slice()),
                mount_ns: !no_mount_namespace,
            },
        ),
        Cmd::Sessions { socket, json } => clients::sessions(&socket, json),
        Cmd::Events {
            socket,
            follow: _,
            session,
            kinds,
            json,
            format,
            log,
        } => {
            let format = format.unwrap_or(if json {
                clients::EventFormat::Json
            } else {
                clients::EventFormat::Human
            });
            match log {
                Some(log) => clients::events_of_log(&log, session, kinds, format),
                None => clients::events(&socket, session, kinds, format),
            }
        }
        Cmd::Status { socket, json } => clients::status(&socket, json),
        Cmd::Report {
            session,
            socket,
            log,
            json,
            sarif,
            html,
        } => {
            let format = match (json, sarif, html) {
                (true, _, _) => clients::ReportFormat::Json,
                (_, true, _) => clients::ReportFormat::Sarif,
                (_, _, true) => clients::ReportFormat::Html,
                _ => clients::ReportFormat::Markdown,
            };
            clients::report(&session, &socket, log.as_deref(), format)
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "guard", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Unload { pin_dir } => ebpf::pins::unload(&pin_dir)
            .map(|links| {
                println!(
                    "removed {links} pinned links and every map under {}: guard enforces nothing now",
                    pin_dir.display()
                );
            })
            .map_err(anyhow::Error::from),
        Cmd::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(anyhow::Error::from),
        Cmd::Kill {
            socket,
            session,
            pid,
        } => clients::kill(&socket, session, pid),
        Cmd::Top { socket } => top::run(&socket),
        Cmd::Fleet { args } => clients::fleet(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
