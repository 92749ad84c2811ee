//! Driving guard: starting the daemon and reading its status.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use guard_common::protocol::Status;

use super::ctx::Ctx;
use super::process::{Proc, file_for, run_timed, sleep};
use crate::util::log;

/// The pin directory of the bench's daemons (one at a time).
fn pin_dir() -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/guard-bench-{}", std::process::id()))
}

/// Unloads what a daemon left pinned: `--lift-on-stop` removes its pins when it
/// stops, not when it had to be killed, and its programs would stay attached
/// through the setups measured after it.
fn lift_leftover_pins(guard: &Path) {
    let dir = pin_dir();
    if !dir.exists() {
        return;
    }
    log!(
        "unloading what a killed daemon left pinned in {}",
        dir.display()
    );
    match Command::new(guard)
        .args(["unload", "--pin-dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        other => log!(
            "warning: `guard unload --pin-dir {}`: {other:?}",
            dir.display()
        ),
    }
}

/// Lifts a killed daemon's pins when the run ends (dropped), whatever ended it.
pub(super) struct Pins(pub(super) PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        lift_leftover_pins(&self.0);
    }
}

/// `guard status --json`, read through the control protocol's own type.
pub(super) fn guard_status(ctx: &Ctx) -> Result<Status> {
    let out = run_timed(
        Command::new(&ctx.guard)
            .args(["status", "--json", "--socket"])
            .arg(&ctx.socket),
        Duration::from_secs(20),
    )?;
    serde_json::from_str(&out).context("`guard status --json` printed no status")
}

pub(super) fn lost_sum(status: &Status) -> u64 {
    status.lost_total()
}

pub(super) fn events_total(status: &Status) -> u64 {
    status.events_total
}

pub(super) fn cpu_seconds(status: &Status) -> f64 {
    status.cpu_seconds
}

/// Waits until the daemon's event count stops moving (it has drained what the
/// workload produced); returns the last status.
pub(super) fn guard_idle(ctx: &Ctx) -> Result<Status> {
    let start = Instant::now();
    let mut last = guard_status(ctx)?;
    loop {
        sleep(Duration::from_millis(150))?;
        let now = guard_status(ctx)?;
        if events_total(&now) == events_total(&last) || start.elapsed() > Duration::from_secs(60) {
            return Ok(now);
        }
        last = now;
    }
}

/// Starts `guard daemon` (`floor`: the empty programs) and waits for its ready line.
pub(super) fn start_guard(
    ctx: &mut Ctx,
    policy: &Path,
    floor: bool,
    events: &Path,
) -> Result<Proc> {
    start_guard_within(ctx, policy, floor, events, Duration::from_secs(60))
}

/// [`start_guard`], waiting up to `ready_within` for the ready line.
pub(super) fn start_guard_within(
    ctx: &mut Ctx,
    policy: &Path,
    floor: bool,
    events: &Path,
    ready_within: Duration,
) -> Result<Proc> {
    let _ = fs::remove_file(&ctx.socket);
    lift_leftover_pins(&ctx.guard);
    let stderr = ctx.next_file("guard", "err");
    let mut cmd = Command::new(&ctx.guard);
    cmd.arg("daemon");
    if floor {
        cmd.arg("--floor");
    } else {
        cmd.arg("--policy")
            .arg(policy)
            .arg("--agent")
            .arg(&ctx.agent)
            .arg("--events")
            .arg(events)
            .arg("--socket")
            .arg(&ctx.socket)
            // Pins of its own, removed when it stops: the next setup measures no
            // program of this one.
            .arg("--pin-dir")
            .arg(pin_dir())
            .arg("--lift-on-stop");
    }
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file_for(&stderr)?);
    let mut proc = Proc::spawn(
        if floor {
            "guard daemon --floor"
        } else {
            "guard daemon"
        },
        &mut cmd,
        Some(&stderr),
    )?;
    proc.wait_ready(ready_within, || {
        fs::read_to_string(&stderr).is_ok_and(|s| s.contains("guard daemon ready"))
    })?;
    ctx.own_pids.push(proc.pid());
    Ok(proc)
}

/// VmHWM (peak resident set) of a process, in bytes.
pub(super) fn vm_hwm(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
