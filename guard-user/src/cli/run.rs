//! `guard run -- CMD ARGS…`: have the daemon track this very process as a new
//! session root, then exec CMD in place. Tracking happens before exec, so nothing
//! CMD does escapes; if the daemon cannot be reached, CMD does not run. With
//! `--landlock`, the process confines itself first (crate::confine), as the
//! daemon's policy says, and tells the daemon how.

use std::{os::unix::process::CommandExt, path::Path, path::PathBuf, process::Command};

use anyhow::Context as _;

use guard_common::protocol::Registered;

use crate::control::{Request, client};

/// `landlock`: confine with Landlock, these paths writable besides the defaults.
pub fn run(socket: &Path, argv: &[String], landlock: Option<&[PathBuf]>) -> anyhow::Result<()> {
    let (program, args) = argv
        .split_first()
        .context("guard run needs a command after `--`")?;
    let registered: Registered = client::call(
        socket,
        &Request::Run {
            argv: argv.to_vec(),
            landlock: landlock.is_some(),
        },
    )
    .context("not starting the command unguarded")?;
    tracing::debug!(session = %registered.session, "tracked; executing {program}");
    if let Some(extra) = landlock {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("--landlock needs $HOME (the agent's state is there)")?;
        let workspace = std::env::current_dir().context("cannot tell the working directory")?;
        let mut writable = crate::confine::writable(&home, &workspace, program);
        writable.extend(extra.iter().cloned());
        let read_deny: Vec<PathBuf> = registered.read_deny.iter().map(PathBuf::from).collect();
        let plan = crate::confine::plan(&read_deny, &writable);
        for p in &plan.not_covered {
            eprintln!(
                "guard run: {} is inside a writable tree: Landlock leaves it to guard's other tiers",
                p.display()
            );
        }
        let applied =
            crate::confine::apply(&plan).context("not starting the command unconfined")?;
        let summary = applied.summary();
        if !applied.enforced() {
            anyhow::bail!("Landlock is {summary}: not starting the command unconfined");
        }
        let _: String = client::call(
            socket,
            &Request::Confined {
                session: registered.session.clone(),
                status: summary,
            },
        )
        .context("cannot tell the daemon how the session is confined")?;
    }
    let err = Command::new(program).args(args).exec();
    Err(err).with_context(|| format!("cannot execute {program}"))
}
