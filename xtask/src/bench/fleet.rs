//! The fleet phase: the fleet view at an organisation's size on a real PostgreSQL
//! (`guard-fleet/examples/sizing.rs`: a cluster of its own, a million sessions of
//! 10,000 hosts and a million events; fewer with `--quick`), each dashboard page
//! and API call timed, and the database's bytes per session and per event.

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::util::{self, log};

pub(super) fn fleet(quick: bool) -> Result<Value> {
    let (sessions, events, hosts) = if quick {
        (100_000, 100_000, 1_000)
    } else {
        (1_000_000, 1_000_000, 10_000)
    };
    log!("fleet sizing: {sessions} sessions, {events} events, {hosts} hosts on PostgreSQL");
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "guard-fleet",
        "--example",
        "sizing",
        "--",
    ])
    .args([sessions, events, hosts].map(|n: u64| n.to_string()));
    let out = util::stdout_of(&mut cmd).context("the fleet sizing example failed")?;
    serde_json::from_str(&out).with_context(|| format!("the sizing example printed {out:?}"))
}
