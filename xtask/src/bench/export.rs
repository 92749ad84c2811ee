//! The export phase: what `[export]` costs the host, and what it puts on the wire.
//!
//! guard's own fleet server receives (`guard-fleet serve` as a trial: SQLite in the
//! bench's directory, a loopback port the kernel picks). The open generator runs in
//! a session at the same rate twice, once with a daemon that only writes its audit
//! log and once with one that also exports every event, each daemon fresh: the
//! difference is the export's CPU and memory. Then the export drains (spool empty,
//! nothing more sent) and its counters say what crossed the wire and whether any
//! record was dropped. A last daemon exports summaries only (`kinds = []`, one a
//! second) of sessions running `git status` on the bench's repository, so the size
//! of a summary whose lists are full is measured on its own.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use guard_common::protocol::{ExportStatus, Status};
use serde_json::{Value, json};

use super::ctx::Ctx;
use super::guard::{
    cpu_seconds, events_total, guard_idle, guard_status, lost_sum, start_guard, vm_hwm,
};
use super::measure::generate;
use super::process::{Proc, file_for, path_str, run_timed, sleep};
use super::setups::{Setup, Workload};
use crate::util::log;

/// How long the export may take to send what a step made.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A fleet server of the bench's own, stopped when dropped.
struct Fleet {
    proc: Proc,
    /// `http://127.0.0.1:PORT/v1/logs`.
    ingest: String,
    /// The trial's cluster token.
    token: String,
}

impl Fleet {
    fn start(ctx: &mut Ctx) -> Result<Self> {
        let bin = ctx.guard.with_file_name("guard-fleet");
        if !bin.is_file() {
            bail!("no guard-fleet beside guard ({})", bin.display());
        }
        let state = ctx.dir.join("fleet");
        fs::create_dir_all(&state)?;
        let config = state.join("fleet.toml");
        fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
                path_str(&state)
            ),
        )?;
        let stderr = ctx.next_file("fleet", "err");
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file_for(&stderr)?);
        let mut proc = Proc::spawn("guard-fleet serve", &mut cmd, Some(&stderr))?;
        let after = |text: &str, marker: &str| -> Option<String> {
            Some(
                text.split(marker)
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_owned(),
            )
        };
        let mut found = None;
        proc.wait_ready(Duration::from_secs(60), || {
            let text = fs::read_to_string(&stderr).unwrap_or_default();
            found = after(&text, "guard-fleet listening addr=")
                .zip(after(&text, "Authorization: Bearer "));
            found.is_some()
        })?;
        let (addr, token) = found.context("guard-fleet printed no address and token")?;
        ctx.own_pids.push(proc.pid());
        Ok(Self {
            proc,
            ingest: format!("http://{addr}/v1/logs"),
            token,
        })
    }
}

/// CPU seconds (user + system) a process has used so far.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// The export's counters of a status (a daemon with `[export]` always has them).
fn export_of(status: &Status) -> Result<ExportStatus> {
    status
        .export
        .clone()
        .context("`guard status` shows no export: is [export] in the policy?")
}

fn dropped(e: &ExportStatus) -> u64 {
    e.dropped.values().sum()
}

/// Waits until the export has sent everything: the spool empty and the sent count
/// still for a second. Returns the last status.
fn drained(ctx: &Ctx) -> Result<Status> {
    let start = Instant::now();
    let mut last = guard_status(ctx)?;
    loop {
        sleep(Duration::from_secs(1))?;
        let now = guard_status(ctx)?;
        let (a, b) = (export_of(&last)?, export_of(&now)?);
        if b.spool_records == 0 && a.sent_records == b.sent_records {
            return Ok(now);
        }
        if start.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "the export did not drain in {DRAIN_TIMEOUT:?}: {} records in the spool, last \
                 error {:?}",
                b.spool_records,
                b.last_error
            );
        }
        last = now;
    }
}

/// A policy for the bench's agent: the log-only one, with `export` appended.
fn policy(ctx: &mut Ctx, stem: &str, export: Option<String>) -> Result<std::path::PathBuf> {
    let path = ctx.next_file(stem, "toml");
    let mut text = fs::read_to_string(&ctx.log_policy)?;
    if let Some(export) = export {
        text.push_str(&export);
    }
    fs::write(&path, text)?;
    Ok(path)
}

fn export_table(fleet: &Fleet, spool: &Path, extra: &str) -> String {
    format!(
        "[export]\nendpoint = \"{}\"\nheaders = {{ authorization = \"Bearer {}\" }}\n\
         spool_dir = \"{}\"\n{extra}",
        fleet.ingest,
        fleet.token,
        path_str(spool)
    )
}

/// One run of the open generator in a session at `rate` for the capacity step's
/// length, under a fresh daemon with `policy`: the daemon's numbers, and with
/// export, what it sent once drained.
fn loaded(ctx: &mut Ctx, policy: &Path, rate: f64, fleet: Option<&Fleet>) -> Result<Value> {
    let events = ctx.next_file("export", "jsonl");
    let mut daemon = start_guard(ctx, policy, false, &events)?;
    let pid = daemon.pid();
    let secs = ctx.params.cap_step_secs * 2;
    let s0 = guard_idle(ctx)?;
    let f0 = fleet.and_then(|f| proc_cpu_seconds(f.proc.pid()));
    let (opens, elapsed) = generate(ctx, rate, secs)?;
    let s1 = guard_idle(ctx)?;
    let written = events_total(&s1).saturating_sub(events_total(&s0));
    let mut v = json!({
        "export": fleet.is_some(),
        "opens_per_second": (opens / elapsed).round(),
        "seconds": elapsed,
        "events_written": written,
        "events_per_second": (written as f64 / elapsed).round(),
        "lost_by_daemon": lost_sum(&s1).saturating_sub(lost_sum(&s0)),
        "daemon_cpu_cores": (cpu_seconds(&s1) - cpu_seconds(&s0)) / elapsed,
    });
    if let Some(fleet) = fleet {
        let drain_start = Instant::now();
        let s2 = drained(ctx)?;
        let drain_secs = drain_start.elapsed().as_secs_f64();
        let (e0, e2) = (export_of(&s0)?, export_of(&s2)?);
        let records = e2.sent_records - e0.sent_records;
        let bytes = e2.sent_bytes - e0.sent_bytes;
        let f2 = proc_cpu_seconds(fleet.proc.pid());
        v["sent_records"] = json!(records);
        v["sent_bytes"] = json!(bytes);
        v["bytes_per_record"] = json!((bytes as f64 / records.max(1) as f64).round());
        v["records_dropped"] = json!(dropped(&e2) - dropped(&e0));
        v["dropped_by_reason"] = json!(e2.dropped);
        v["retries"] = json!(e2.retries - e0.retries);
        // Every event written was sent (the rest of the records are the session's
        // summaries): none lost.
        v["events_not_sent"] = json!(written.saturating_sub(records));
        v["drain_seconds_after_load"] = json!(drain_secs);
        v["daemon_cpu_seconds_with_drain"] = json!(cpu_seconds(&s2) - cpu_seconds(&s0));
        v["fleet_cpu_seconds"] = json!(f0.zip(f2).map(|(a, b)| b - a));
        v["fleet_peak_rss_bytes"] = json!(vm_hwm(fleet.proc.pid()));
    }
    v["daemon_peak_rss_bytes"] = json!(vm_hwm(pid));
    daemon.stop(libc::SIGTERM, Duration::from_secs(30));
    let _ = fs::remove_file(&events);
    Ok(v)
}

/// Summaries only, one a second, of sessions running `git status` on the bench's
/// repository: bytes per summary on the wire.
fn summaries(ctx: &mut Ctx, fleet: &Fleet) -> Result<Value> {
    let spool = ctx.dir.join("spool-summaries");
    let table = export_table(fleet, &spool, "kinds = []\nsummary_interval = \"1s\"\n");
    let policy = policy(ctx, "export-summaries", Some(table))?;
    let events = ctx.next_file("export-summaries", "jsonl");
    let mut daemon = start_guard(ctx, &policy, false, &events)?;
    let s0 = guard_status(ctx)?;
    let sessions = 3;
    for _ in 0..sessions {
        let mut cmd =
            ctx.workload_command_n(Setup::GuardInside, Workload::Real, ctx.params.git_n * 4);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        run_timed(&mut cmd, Duration::from_secs(600))?;
    }
    let s1 = drained(ctx)?;
    daemon.stop(libc::SIGTERM, Duration::from_secs(30));
    let _ = fs::remove_file(&events);
    let (e0, e1) = (export_of(&s0)?, export_of(&s1)?);
    let records = e1.sent_records - e0.sent_records;
    let bytes = e1.sent_bytes - e0.sent_bytes;
    if records == 0 {
        bail!("no summary was sent");
    }
    Ok(json!({
        "sessions": sessions,
        "workload": format!("git status on {} files, {} times per session", ctx.params.files, ctx.params.git_n * 4),
        "summaries_sent": records,
        "bytes_sent": bytes,
        "bytes_per_summary": (bytes as f64 / records as f64).round(),
        "records_dropped": dropped(&e1) - dropped(&e0),
    }))
}

/// The export phase at `rate` opens per second (the capacity's best zero-loss rate).
pub(super) fn export(ctx: &mut Ctx, rate: f64) -> Result<Value> {
    let fleet = Fleet::start(ctx)?;
    let plain = ctx.log_policy.clone();
    let without = loaded(ctx, &plain, rate, None)?;
    let spool = ctx.dir.join("spool-events");
    let table = export_table(&fleet, &spool, "");
    let exporting = policy(ctx, "export-all", Some(table))?;
    let with = loaded(ctx, &exporting, rate, Some(&fleet))?;
    let summary = summaries(ctx, &fleet)?;
    let cores = |v: &Value| v["daemon_cpu_cores"].as_f64().unwrap_or(0.0);
    let rss = |v: &Value| v["daemon_peak_rss_bytes"].as_f64().unwrap_or(0.0);
    let mib = f64::from(1 << 20);
    log!(
        "export: {} events/s; daemon cpu {:.2} -> {:.2} cores, peak rss {:.1} -> {:.1} MiB; \
         {} B/event on the wire, {} B/summary; {} records dropped, {} events not sent",
        with["events_per_second"],
        cores(&without),
        cores(&with),
        rss(&without) / mib,
        rss(&with) / mib,
        with["bytes_per_record"],
        summary["bytes_per_summary"],
        with["records_dropped"],
        with["events_not_sent"],
    );
    Ok(json!({
        "target_opens_per_second": rate.round(),
        "receiver": "guard-fleet serve (trial: SQLite), loopback, http/protobuf, gzip",
        "without_export": without,
        "with_export": with,
        "summaries": summary,
    }))
}
