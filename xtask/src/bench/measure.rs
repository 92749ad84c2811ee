//! The measurements: one workload under one setup, the daemon's capacity, and the
//! user-space kill latency.

use std::fs;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::ctx::Ctx;
use super::guard::{cpu_seconds, events_total, guard_idle, lost_sum, start_guard, vm_hwm};
use super::host::{foreign_guards, loadavg};
use super::prepare::prewarm;
use super::process::{check_interrupted, path_str, printed_seconds, run_timed};
use super::running::{finish, start};
use super::setups::{Setup, Workload};
use crate::util::log;

pub(super) fn measure(ctx: &mut Ctx, setup: Setup, w: Workload, round: u32) -> Result<Value> {
    if !w.micro() {
        prewarm(ctx, w)?;
    }
    let running = start(ctx, setup)?;
    let foreign = foreign_guards(&ctx.own_pids);
    let load = loadavg();
    let result = run_timed(
        &mut ctx.workload_command(setup, w),
        Duration::from_secs(900),
    );
    let seen = finish(ctx, running)?;
    let out = result?;
    let seconds = printed_seconds(&out)?;
    log!(
        "round {round} {:<9} {:<13} {seconds:8.3} s{}{}",
        w.name(),
        setup.name(),
        seen.events
            .map(|e| format!("  events {e}"))
            .unwrap_or_default(),
        seen.lost
            .filter(|l| *l > 0)
            .map(|l| format!("  LOST {l}"))
            .unwrap_or_default(),
    );
    Ok(json!({
        "round": round,
        "workload": w.name(),
        "setup": setup.name(),
        "seconds": seconds,
        "events": seen.events,
        "lost": seen.lost,
        "daemon_peak_rss_bytes": seen.daemon_hwm,
        "loadavg": load,
        "other_guard_processes": foreign,
    }))
}

/// Events-file bytes from `offset` on; whether any line is a `lost` event.
fn lost_in_file(path: &Path, offset: &mut u64) -> Result<bool> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let mut found = false;
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        *offset += n as u64;
        if line.windows(14).any(|w| w == b"\"kind\":\"lost\"") {
            found = true;
        }
    }
    Ok(found)
}

/// Runs the open generator in a session (`guard run`) at `rate` opens/s for `secs`
/// with the capacity's generator processes; the opens it made and the seconds it
/// took, as it counted them.
pub(super) fn generate(ctx: &Ctx, rate: f64, secs: u64) -> Result<(f64, f64)> {
    let out = run_timed(
        Command::new(&ctx.guard)
            .arg("run")
            .arg("--socket")
            .arg(&ctx.socket)
            .arg("--")
            .arg(&ctx.workload_bin)
            .args([
                ctx.ids(),
                "gen".into(),
                format!("{rate:.0}"),
                secs.to_string(),
                ctx.params.cap_procs.to_string(),
                path_str(&ctx.open_target),
            ])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
        Duration::from_secs(secs * 10 + 60),
    )?;
    let mut it = out.split_whitespace();
    let opens: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let took: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    if took <= 0.0 {
        bail!("the generator printed {out:?}");
    }
    Ok((opens, took))
}

pub(super) fn capacity(ctx: &mut Ctx) -> Result<Value> {
    let events = ctx.next_file("capacity", "jsonl");
    let policy = ctx.log_policy.clone();
    let mut daemon = start_guard(ctx, &policy, false, &events)?;
    let pid = daemon.pid();
    let p = ctx.params.clone();
    let mut offset = 0;
    let mut steps: Vec<Value> = Vec::new();
    let mut step = |ctx: &mut Ctx, target: f64| -> Result<Value> {
        let s0 = guard_idle(ctx)?;
        let (opens, secs) = generate(ctx, target, p.cap_step_secs)?;
        let s1 = guard_idle(ctx)?;
        let lost = lost_sum(&s1).saturating_sub(lost_sum(&s0));
        let lost_line = lost_in_file(&events, &mut offset).unwrap_or(false);
        let ev = events_total(&s1).saturating_sub(events_total(&s0));
        let v = json!({
            "target_opens_per_second": target.round(),
            "opens_per_second": (opens / secs).round(),
            "events_per_second": (ev as f64 / secs).round(),
            "events": ev,
            "seconds": secs,
            "lost": lost,
            "lost_event_in_file": lost_line,
            "daemon_cpu_cores": (cpu_seconds(&s1) - cpu_seconds(&s0)) / secs,
            "daemon_peak_rss_bytes": vm_hwm(pid),
        });
        log!(
            "capacity: target {:>7.0}/s  opens {:>7.0}/s  events {:>7.0}/s  lost {lost}{}  cpu {:.2}",
            target,
            opens / secs,
            ev as f64 / secs,
            if lost_line {
                " (lost event in file)"
            } else {
                ""
            },
            (cpu_seconds(&s1) - cpu_seconds(&s0)) / secs,
        );
        Ok(v)
    };
    let zero_loss = |v: &Value| {
        v["lost"].as_u64() == Some(0) && v["lost_event_in_file"].as_bool() == Some(false)
    };
    let reached =
        |v: &Value, target: f64| v["opens_per_second"].as_f64().unwrap_or(0.0) >= 0.9 * target;
    let mut good: Option<f64> = None;
    let mut bad: Option<f64> = None;
    let mut generator_bound = false;
    let mut target = p.cap_start_rate;
    for _ in 0..p.cap_max_steps {
        check_interrupted()?;
        let v = step(ctx, target)?;
        let ok = zero_loss(&v);
        let hit = reached(&v, target);
        steps.push(v);
        if !ok {
            bad = Some(target);
            break;
        }
        good = Some(target);
        if !hit {
            generator_bound = true;
            break;
        }
        target *= 1.4;
    }
    // Narrow down between the last rate without loss and the first with.
    if let (Some(mut lo), Some(mut hi)) = (good, bad) {
        for _ in 0..2 {
            check_interrupted()?;
            let mid = (lo + hi) / 2.0;
            let v = step(ctx, mid)?;
            if zero_loss(&v) {
                lo = mid;
            } else {
                hi = mid;
            }
            steps.push(v);
        }
    }
    let overall_hwm = vm_hwm(pid);
    daemon.stop(libc::SIGTERM, Duration::from_secs(30));
    let _ = fs::remove_file(&events);
    let best = steps
        .iter()
        .filter(|v| zero_loss(v))
        .max_by(|a, b| {
            let a = a["events_per_second"].as_f64().unwrap_or(0.0);
            let b = b["events_per_second"].as_f64().unwrap_or(0.0);
            a.total_cmp(&b)
        })
        .cloned();
    // The daemon's CPU per event at the best step, and what one core would carry.
    let per_event_us = best.as_ref().and_then(|b| {
        let cores = b["daemon_cpu_cores"].as_f64()?;
        let rate = b["events_per_second"].as_f64()?;
        (cores > 0.0 && rate > 0.0).then(|| cores / rate * 1e6)
    });
    Ok(json!({
        "daemon_cpu_us_per_event": per_event_us,
        "events_per_daemon_core_estimate": per_event_us.map(|us| (1e6 / us).round()),
        "generator_processes": p.cap_procs,
        "step_seconds": p.cap_step_secs,
        "steps": steps,
        "max_zero_loss": best,
        "first_lossy_target": bad,
        "limited_by_generator": generator_bound,
        "daemon_peak_rss_bytes": overall_hwm,
    }))
}

pub(super) fn kill_latency(ctx: &mut Ctx) -> Result<Value> {
    let policy = ctx.dir.join("kill.toml");
    fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n[agents]\nnames = [\"{}\"]\n\n[[rule]]\nid = \"bench-kill-sleep\"\n\
             kind = \"exec\"\nexe = [\"sleep\"]\nargv_contains = [\"4242\"]\naction = \"kill\"\n",
            ctx.agent
        ),
    )?;
    let events = ctx.next_file("kill", "jsonl");
    let mut daemon = start_guard(ctx, &policy, false, &events)?;
    let runs = ctx.params.kill_runs;
    let script = format!(
        "i=0; killed=0; while [ $i -lt {runs} ]; do timeout 10 sleep 4242; \
         [ $? -ne 124 ] && killed=$((killed+1)); i=$((i+1)); done; echo $killed"
    );
    let out = run_timed(
        Command::new(&ctx.guard)
            .arg("run")
            .arg("--socket")
            .arg(&ctx.socket)
            .args(["--", "sh", "-c", &script])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
        Duration::from_secs(u64::from(runs) * 12 + 60),
    )?;
    let status = guard_idle(ctx)?;
    daemon.stop(libc::SIGTERM, Duration::from_secs(15));
    let mut latencies: Vec<u64> = Vec::new();
    if let Ok(f) = fs::File::open(&events) {
        for line in BufReader::new(f).lines().map_while(std::result::Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let l = v
                    .get("kill_latency_us")
                    .or_else(|| v.get("violation").and_then(|x| x.get("kill_latency_us")));
                if let Some(us) = l.and_then(Value::as_u64) {
                    latencies.push(us);
                }
            }
        }
    }
    let _ = fs::remove_file(&events);
    latencies.sort_unstable();
    let q = |p: f64| -> Option<u64> {
        if latencies.is_empty() {
            return None;
        }
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        latencies.get(i).copied()
    };
    Ok(json!({
        "runs": runs,
        "killed_before_timeout": out.trim().parse::<u64>().ok(),
        "status_kill_latency_us": status.kill_latency_us,
        "events_with_latency": latencies.len(),
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "max_us": latencies.last(),
    }))
}
