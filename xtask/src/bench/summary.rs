//! Summaries of the samples, the targets they are held to, and the summary printed
//! at the end.

use serde_json::{Value, json};

use super::setups::{SETUPS, Setup, WORKLOADS};
use crate::util::log;

pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = (sorted.len() - 1) as f64 * q;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (sorted[lo], sorted[hi.min(sorted.len() - 1)]);
    a + (b - a) * (pos - lo as f64)
}

fn median_u64(v: &mut [u64]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// Per workload and setup: median, quartiles, ratio to `none`.
pub(super) fn summarize(samples: &[Value], setups: &[Setup]) -> Value {
    let mut out = serde_json::Map::new();
    for w in WORKLOADS {
        let of = |s: Setup| -> Vec<&Value> {
            samples
                .iter()
                .filter(|v| v["workload"] == w.name() && v["setup"] == s.name())
                .collect()
        };
        let secs = |s: Setup| -> Vec<f64> {
            let mut v: Vec<f64> = of(s).iter().filter_map(|x| x["seconds"].as_f64()).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let none = quantile(&secs(Setup::None), 0.5);
        let floor = quantile(&secs(Setup::Floor), 0.5);
        let mut per = serde_json::Map::new();
        for &s in setups {
            let v = secs(s);
            let med = quantile(&v, 0.5);
            let mut events: Vec<u64> = of(s).iter().filter_map(|x| x["events"].as_u64()).collect();
            let lost: u64 = of(s).iter().filter_map(|x| x["lost"].as_u64()).sum();
            let finite = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
            per.insert(
                s.name().into(),
                json!({
                    "runs": v.len(),
                    "median_seconds": finite(med),
                    "p25_seconds": finite(quantile(&v, 0.25)),
                    "p75_seconds": finite(quantile(&v, 0.75)),
                    "min_seconds": finite(v.first().copied().unwrap_or(f64::NAN)),
                    "ratio_to_none": finite(med / none),
                    "ratio_to_floor": finite(med / floor),
                    "median_events": median_u64(&mut events),
                    "lost_total": lost,
                }),
            );
        }
        out.insert(w.name().into(), Value::Object(per));
    }
    Value::Object(out)
}

fn ratio(summary: &Value, w: &str, s: &str, key: &str) -> Option<f64> {
    summary.get(w)?.get(s)?.get(key)?.as_f64()
}

/// Rounds in which guard inside a session took less time on `w` than `peer`, and
/// rounds in which both ran.
fn rounds_ahead(samples: &[Value], w: &str, peer: &str) -> (usize, usize) {
    let secs = |setup: &str, round: &Value| {
        samples
            .iter()
            .find(|x| x["workload"] == w && x["setup"] == setup && x["round"] == *round)
            .and_then(|x| x["seconds"].as_f64())
    };
    let mut rounds: Vec<&Value> = samples
        .iter()
        .filter(|x| x["workload"] == w && x["setup"] == "guard-inside")
        .map(|x| &x["round"])
        .collect();
    rounds.dedup();
    rounds
        .into_iter()
        .filter_map(|r| Some((secs("guard-inside", r)?, secs(peer, r)?)))
        .fold((0, 0), |(ahead, both), (g, p)| {
            (ahead + usize::from(g < p), both + 1)
        })
}

pub(super) fn targets(summary: &Value, samples: &[Value], capacity: &Value) -> Value {
    let mut t = Vec::new();
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name()).collect();

    // Outside a session: within 3% of the floor.
    let outside: Vec<(String, Option<f64>)> = names
        .iter()
        .map(|w| {
            (
                (*w).to_owned(),
                ratio(summary, w, "guard-outside", "ratio_to_floor"),
            )
        })
        .collect();
    let met = outside.iter().all(|(_, r)| r.is_some_and(|r| r <= 1.03));
    t.push(json!({
        "target": "outside a session, within 3% of the floor",
        "measured": outside.iter().map(|(w, r)| format!("{w} {}", fmt_ratio(*r))).collect::<Vec<_>>().join(", "),
        "met": outside.iter().all(|(_, r)| r.is_some()).then_some(met),
    }));

    // Inside a session: below auditd, opensnoop (libbpf-tools) and bpftrace for the
    // same events. A peer is compared on a workload only where it recorded at least
    // 90% as many events as guard wrote lines (libbpf-tools has no fork/exit events,
    // and no connect events where tcpconnect cannot run; a line of guard's counting
    // repeated opens stands for many).
    let mut parts = Vec::new();
    let mut all = Some(true);
    let mut each_round = Vec::new();
    let mut every = Some(true);
    for w in &names {
        let g = ratio(summary, w, "guard-inside", "median_seconds");
        let ge = ratio(summary, w, "guard-inside", "median_events");
        for peer in ["auditd", "libbpf-tools", "bpftrace"] {
            let p = ratio(summary, w, peer, "median_seconds");
            let pe = ratio(summary, w, peer, "median_events");
            match (g, p, ge, pe) {
                (Some(_), Some(_), Some(ge), Some(pe)) if pe < 0.9 * ge => {
                    parts.push(format!(
                        "{w}: {peer} not compared ({pe:.0} events/run vs guard's {ge:.0})"
                    ));
                }
                (Some(g), Some(p), _, _) => {
                    parts.push(format!("{w}: {g:.3} s vs {peer} {p:.3} s"));
                    if g >= p {
                        all = Some(false);
                    }
                    let (ahead, both) = rounds_ahead(samples, w, peer);
                    if ahead < both {
                        each_round.push(format!("{w} vs {peer}: {ahead} of {both}"));
                        every = Some(false);
                    }
                }
                // Not measured: unknown, unless already missed.
                _ => {
                    all = all.filter(|met| !met);
                    every = every.filter(|met| !met);
                }
            }
        }
    }
    t.push(json!({
        "target": "inside a session, below auditd, opensnoop (libbpf-tools) and bpftrace for the same events",
        "measured": parts.join("; "),
        "met": all,
    }));
    t.push(json!({
        "target": "inside a session, below each of those peers in every round (rounds ahead where not all)",
        "measured": if each_round.is_empty() { "every round".to_owned() } else { each_round.join("; ") },
        "met": every,
    }));

    // The open loop inside a session: at most 1.5× nothing attached.
    let r = ratio(summary, "open", "guard-inside", "ratio_to_none");
    t.push(json!({
        "target": "open loop inside a session at most 1.5× nothing attached",
        "measured": fmt_ratio(r),
        "met": r.map(|r| r <= 1.5),
    }));
    // Real workloads inside a session: at most 5% slower than nothing.
    for (w, what) in [
        ("real", "git"),
        ("build", "gcc build"),
        ("fetch", "a build that resolves names"),
        ("cargo", "Rust build"),
        ("npm", "npm ci && npm test"),
        ("codex", "a Codex session"),
    ] {
        let r = ratio(summary, w, "guard-inside", "ratio_to_none");
        t.push(json!({
            "target": format!("real workload ({what}) inside a session at most 1.05× nothing attached"),
            "measured": fmt_ratio(r),
            "met": r.map(|r| r <= 1.05),
        }));
    }

    // Capacity.
    let best = capacity["max_zero_loss"]["events_per_second"].as_f64();
    let bound = capacity["limited_by_generator"].as_bool() == Some(true);
    t.push(json!({
        "target": ">= 400,000 events/s sustained with zero loss",
        "measured": best.map(|b| format!(
            "{b:.0} events/s{}",
            if bound {
                format!(
                    " (generator-bound, no loss seen; daemon CPU suggests ~{:.0}/s per core)",
                    capacity["events_per_daemon_core_estimate"].as_f64().unwrap_or(0.0)
                )
            } else {
                String::new()
            }
        )),
        "met": best.map(|b| b >= 400_000.0),
    }));

    // Memory.
    let mem = capacity["daemon_peak_rss_bytes"].as_f64();
    t.push(json!({
        "target": "daemon peak memory under 64 MiB",
        "measured": mem.map(|m| format!("{:.1} MiB (VmHWM over the whole capacity run)", m / 1048576.0)),
        "met": mem.map(|m| m < 64.0 * 1048576.0),
    }));
    Value::Array(t)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.3}×"))
}

pub(super) fn print_summary(r: &Value) {
    for w in WORKLOADS {
        let Some(per) = r["summary"][w.name()].as_object() else {
            continue;
        };
        let line: Vec<String> = SETUPS
            .iter()
            .filter_map(|s| {
                let x = per.get(s.name())?;
                Some(format!(
                    "{} {:.3}s ({})",
                    s.name(),
                    x["median_seconds"].as_f64()?,
                    fmt_ratio(x["ratio_to_none"].as_f64())
                ))
            })
            .collect();
        if line.is_empty() {
            // Not run (`--workload` picked others).
            continue;
        }
        log!("{:<9} {}", w.name(), line.join("  "));
    }
    for t in r["targets"].as_array().into_iter().flatten() {
        log!(
            "target: {} -> {} [{}]",
            t["target"].as_str().unwrap_or("?"),
            t["measured"].as_str().unwrap_or("n/a"),
            match t["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            }
        );
    }
}
