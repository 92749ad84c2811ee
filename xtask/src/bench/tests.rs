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
