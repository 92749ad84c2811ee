//! Unit tests of the parts that need no root and no peers.

use std::fs;

use anyhow::Result;
use serde_json::json;

use super::markdown::{BEGIN, END, write_markdown};
use super::process::tail;
use super::summary::quantile;

#[test]
fn quantiles() {
    let v = [1.0, 2.0, 3.0, 4.0];
    assert!((quantile(&v, 0.5) - 2.5).abs() < 1e-9);
    assert!((quantile(&v, 0.0) - 1.0).abs() < 1e-9);
    assert!((quantile(&[5.0], 0.75) - 5.0).abs() < 1e-9);
    assert!(quantile(&[], 0.5).is_nan());
}

#[test]
fn markdown_markers_keep_the_rest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("B.md");
    fs::write(&path, format!("# Top\nintro\n{BEGIN}\nold\n{END}\ntail\n"))?;
    let r = json!({"machine": {}, "params": {"rounds": 1}, "capacity": {}, "kill_latency": {}});
    write_markdown(&path, &r)?;
    let s = fs::read_to_string(&path)?;
    assert!(s.starts_with("# Top\nintro\n"));
    assert!(s.ends_with("\ntail\n"));
    assert!(!s.contains("\nold\n"));
    Ok(())
}

#[test]
fn tail_is_char_safe() {
    assert_eq!(tail("aé\nb", 4), "é | b");
    assert_eq!(tail("aé\nb", 3), " | b");
}

#[test]
fn a_peer_ahead_in_one_round_misses_the_every_round_target() {
    use super::setups::{SETUPS, Setup};
    use super::summary::{summarize, targets};
    let sample = |setup: &str, round: u32, seconds: f64| json!({ "workload": "open", "setup": setup, "round": round, "seconds": seconds, "events": 100 });
    // guard ahead of auditd by median (1.0 vs 2.0), behind it in round 3.
    let mut samples = Vec::new();
    for (round, g, a) in [(1, 1.0, 2.0), (2, 1.0, 2.0), (3, 3.0, 2.5)] {
        samples.push(sample("none", round, 0.5));
        samples.push(sample("guard-inside", round, g));
        samples.push(sample("auditd", round, a));
    }
    let setups: Vec<Setup> = SETUPS
        .into_iter()
        .filter(|s| ["none", "guard-inside", "auditd"].contains(&s.name()))
        .collect();
    let summary = summarize(&samples, &setups);
    let t = targets(&summary, &samples, &json!({}));
    let find = |prefix: &str| {
        t.as_array()
            .into_iter()
            .flatten()
            .find(|x| x["target"].as_str().is_some_and(|s| s.starts_with(prefix)))
            .cloned()
            .unwrap_or_else(|| panic!("no target {prefix}: {t:#}"))
    };
    let each = find("inside a session, below each of those peers in every round");
    assert_eq!(each["met"], json!(false), "{each}");
    assert!(
        each["measured"]
            .as_str()
            .is_some_and(|m| m.contains("open vs auditd: 2 of 3")),
        "{each}"
    );
}
