//! `guard run -- CMD ARGS…`: have the daemon track this very process as a new
//! session root, then exec CMD in place. Tracking happens before exec, so nothing
//! CMD does escapes; if the daemon cannot be reached, CMD does not run. The process
//! confines itself first (crate::confine), as the daemon's policy says, and tells
//! the daemon how: in a mount namespace of its own, what the policy forbids every
//! process of the session to change is read-only and what it forbids them to read
//! is hidden; with `--landlock`, Landlock also confines it. A confinement that
//! cannot be set up stops the command from running.

use std::{os::unix::process::CommandExt, path::Path, path::PathBuf, process::Command};

use anyhow::Context as _;

use guard_common::protocol::Registered;

use crate::control::{Request, client};

/// How the command is confined.
pub struct Confine<'a> {
    /// Landlock, with these paths writable besides the defaults.
    pub landlock: Option<&'a [PathBuf]>,
    /// A mount namespace of its own.
    pub mount_ns: bool,
}

pub fn run(socket: &Path, argv: &[String], confine: &Confine<'_>) -> anyhow::Result<()> {
    let (program, args) = argv
        .split_first()
        .context("guard run needs a command after `--`")?;
    let registered: Registered = client::call(
        socket,
        &Request::Run {
            argv: argv.to_vec(),
            landlock: confine.landlock.is_some(),
            mount_ns: confine.mount_ns,
            home: std::env::var("HOME").ok(),
        },
    )
    .context("not starting the command unguarded")?;
    tracing::debug!(session = %registered.session, "tracked; executing {program}");
    for note in &registered.notes {
        eprintln!("guard run: {note}");
    }
    let paths = |v: &[String]| -> Vec<PathBuf> { v.iter().map(PathBuf::from).collect() };
    let (read_deny, write_deny) = (paths(&registered.read_deny), paths(&registered.write_deny));
    // With Landlock, the mount namespace covers what lies inside the trees the
    // command may write (which Landlock cannot carve out), and Landlock the rest.
    let writable = match confine.landlock {
        Some(extra) => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .context("--landlock needs $HOME (the agent's state is there)")?;
            let workspace = std::env::current_dir().context("cannot tell the working directory")?;
            let mut writable = crate::confine::writable(&home, &workspace, argv);
            writable.extend(extra.iter().cloned());
            Some(writable)
        }
        None => None,
    };
    let mut mount_ns = None;
    if confine.mount_ns {
        let inside = |v: &[PathBuf]| match &writable {
            Some(w) => crate::confine::inside(v, w),
            None => v.to_vec(),
        };
        let plan = crate::confine::mount::Plan {
            hide: inside(&read_deny),
            read_only: inside(&write_deny),
        };
        if !plan.is_empty() {
            let entered = crate::confine::mount::enter(&plan).context(
                "not starting the command without its mount namespace (--no-mount-namespace \
                 runs it without)",
            )?;
            mount_ns = Some(entered.summary());
        }
    }
    let mut landlock = None;
    if let Some(writable) = &writable {
        let plan = crate::confine::plan(&read_deny, writable);
        if mount_ns.is_none() {
            for p in &plan.not_covered {
                eprintln!(
                    "guard run: {} is inside a writable tree: Landlock leaves it to guard's other tiers",
                    p.display()
                );
            }
        }
        let applied =
            crate::confine::apply(&plan).context("not starting the command unconfined")?;
        let summary = applied.summary();
        if !applied.enforced() {
            anyhow::bail!("Landlock is {summary}: not starting the command unconfined");
        }
        landlock = Some(summary);
    }
    if landlock.is_some() || mount_ns.is_some() {
        let _: String = client::call(
            socket,
            &Request::Confined {
                session: registered.session,
                landlock,
                mount_ns,
            },
        )
        .context("cannot tell the daemon how the session is confined")?;
    }
    let err = Command::new(program).args(args).exec();
    Err(err).with_context(|| format!("cannot execute {program}"))
}
