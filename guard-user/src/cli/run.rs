//! `guard run -- CMD ARGS…`: have the daemon track this very process as a new
//! session root, then exec CMD in place. Tracking happens before exec, so nothing
//! CMD does escapes; if the daemon cannot be reached, CMD does not run.

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use anyhow::Context as _;

use guard_common::protocol::Registered;

use crate::control::{Request, client};

pub fn run(socket: &Path, argv: &[String]) -> anyhow::Result<()> {
    let (program, args) = argv
        .split_first()
        .context("guard run needs a command after `--`")?;
    let registered: Registered = client::call(
        socket,
        &Request::Run {
            argv: argv.to_vec(),
        },
    )
    .context("not starting the command unguarded")?;
    tracing::debug!(session = %registered.session, "tracked; executing {program}");
    let err = Command::new(program).args(args).exec();
    Err(err).with_context(|| format!("cannot execute {program}"))
}
