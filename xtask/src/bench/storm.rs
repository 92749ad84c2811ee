//! The storm phase: three sessions at the machine's maximum at once (an open loop,
//! a fork+exec flood, a connect loop to the bench's loopback listener) for
//! `storm_secs` under record budgets of 10000/s per session (burst
//! 50000, `on_loss = "log"` so the sessions live through it). What it shows: the
//! daemon's CPU and peak memory stay bounded (64 MiB is the bar), and every record
//! the kernel did not deliver is counted, the sessions' own `limit` reports against
//! the kernel's counter.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::ctx::Ctx;
use super::guard::{cpu_seconds, events_total, guard_idle, lost_sum, start_guard, vm_hwm};
use super::process::{Proc, path_str, sleep};
use super::setups::Workload;
use crate::util::log;

/// The bar the daemon's peak resident memory must stay under.
const RSS_BAR: u64 = 64 << 20;

/// Iterations no storm workload reaches in its time: it is stopped, not finished.
const ENDLESS: u64 = 1 << 40;

pub(super) fn storm(ctx: &mut Ctx) -> Result<Value> {
    let secs = ctx.params.storm_secs;
    let policy = ctx.dir.join("storm.toml");
    fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n[agents]\nnames = [\"{}\"]\n\
             [limits]\nrate = 10000\nburst = 50000\non_loss = \"log\"\n",
            ctx.agent
        ),
    )?;
    let events = ctx.next_file("storm", "jsonl");
    let mut daemon = start_guard(ctx, &policy, false, &events)?;
    let pid = daemon.pid();
    let s0 = guard_idle(ctx)?;

    let started = Instant::now();
    let mut load = Vec::new();
    for w in [Workload::Open, Workload::ForkExec, Workload::Connect] {
        let mut cmd = Command::new(&ctx.guard);
        cmd.arg("run")
            .arg("--socket")
            .arg(&ctx.socket)
            .arg("--")
            .arg(&ctx.workload_bin)
            .args(ctx.workload_args(w, ENDLESS));
        ctx.workload_env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        load.push(Proc::spawn(&format!("storm {}", w.name()), &mut cmd, None)?);
    }
    let mut rss_samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        sleep(Duration::from_millis(500))?;
        if let Some(rss) = vm_rss(pid) {
            rss_samples.push(rss);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for mut p in load {
        p.stop(libc::SIGKILL, Duration::from_secs(10));
    }
    let s1 = guard_idle(ctx)?;
    let peak_rss = vm_hwm(pid);
    daemon.stop(libc::SIGTERM, Duration::from_secs(10));

    let lost = s1.lost.clone().unwrap_or_default();
    let kernel_over_limit = lost.get("over_session_limit").copied().unwrap_or(0);
    let ring_lost: u64 = lost
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "over_session_limit" | "pending_full" | "untracked_children" | "undecodable"
            )
        })
        .map(|(_, n)| n)
        .sum();
    let (reported, limit_events) = limit_reports(&events)?;
    let written = events_total(&s1).saturating_sub(events_total(&s0));
    let cpu = (cpu_seconds(&s1) - cpu_seconds(&s0)) / elapsed;
    let rss_mean = if rss_samples.is_empty() {
        None
    } else {
        Some(rss_samples.iter().sum::<u64>() / rss_samples.len() as u64)
    };
    let v = json!({
        "seconds": elapsed,
        "workloads": ["open loop", "fork+exec flood", "connect loop (loopback)"],
        "limits": { "rate": 10000, "burst": 50000, "on_loss": "log" },
        "events_written": written,
        "events_per_second": (written as f64 / elapsed).round(),
        "dropped_by_kernel": kernel_over_limit,
        "dropped_reported_by_sessions": reported,
        "limit_events": limit_events,
        "ring_buffer_lost": ring_lost,
        "pending_full": lost.get("pending_full").copied().unwrap_or(0),
        "untracked_children": lost.get("untracked_children").copied().unwrap_or(0),
        "lost_total": lost_sum(&s1).saturating_sub(lost_sum(&s0)),
        "daemon_cpu_cores": cpu,
        "daemon_peak_rss_bytes": peak_rss,
        "daemon_mean_rss_bytes": rss_mean,
        "rss_bar_bytes": RSS_BAR,
        "rss_under_bar": peak_rss.map(|r| r < RSS_BAR),
    });
    log!(
        "storm: {elapsed:.0} s, {written} events ({:.0}/s), dropped {kernel_over_limit} (kernel) \
         vs {reported} (sessions' reports), ring lost {ring_lost}, daemon cpu {cpu:.2} cores, \
         peak rss {:.1} MiB",
        written as f64 / elapsed,
        peak_rss.unwrap_or(0) as f64 / f64::from(1 << 20)
    );
    Ok(v)
}

/// The sum of `dropped` over the `limit` events in the events file, and their number.
fn limit_reports(path: &Path) -> Result<(u64, u64)> {
    let f = fs::File::open(path).with_context(|| format!("cannot open {}", path_str(path)))?;
    let mut dropped = 0;
    let mut n = 0;
    for line in BufReader::with_capacity(1 << 20, f).lines() {
        let line = line?;
        if !line.contains("\"kind\":\"limit\"") {
            continue;
        }
        let ev: Value = serde_json::from_str(&line).context("a limit event that is not JSON")?;
        dropped += ev["dropped"].as_u64().unwrap_or(0);
        n += 1;
    }
    Ok((dropped, n))
}

/// VmRSS (resident set now) of a process, in bytes.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
