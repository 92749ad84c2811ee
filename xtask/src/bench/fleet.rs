//! The fleet phase: the fleet view at an organisation's size on each database
//! (`guard-fleet/examples/sizing.rs`: PostgreSQL a cluster of its own, SQLite the
//! trial's file; one replica ingesting from 1,000 simulated hosts, then a million
//! sessions of 10,000 hosts and a million events, fewer with `--quick`), each
//! dashboard page and API call timed (p50, p99), and the database's bytes per
//! session and per event.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::util::{self, log};

/// The databases, in the order the results list them.
pub(super) const BACKENDS: [&str; 2] = ["postgres", "sqlite"];

/// Runs the sizing on each database; a database whose run failed has `error`.
pub(super) fn fleet(quick: bool) -> Result<Value> {
    let (sessions, events, hosts) = if quick {
        (100_000, 100_000, 1_000)
    } else {
        (1_000_000, 1_000_000, 10_000)
    };
    let mut out = serde_json::Map::new();
    for backend in BACKENDS {
        log!("fleet sizing: {sessions} sessions, {events} events, {hosts} hosts on {backend}");
        let result = sizing(backend, sessions, events, hosts).unwrap_or_else(|e| {
            log!("fleet sizing on {backend} failed: {e:#}");
            json!({ "error": format!("{e:#}") })
        });
        out.insert(backend.to_owned(), result);
    }
    Ok(Value::Object(out))
}

fn sizing(backend: &str, sessions: u64, events: u64, hosts: u64) -> Result<Value> {
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
        backend,
    ])
    .args([sessions, events, hosts].map(|n: u64| n.to_string()));
    let out = util::stdout_of(&mut cmd).context("the fleet sizing example failed")?;
    serde_json::from_str(&out).with_context(|| format!("the sizing example printed {out:?}"))
}
