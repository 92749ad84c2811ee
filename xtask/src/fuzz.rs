//! The bounded fuzz run of `cargo xtask test` (and `cargo xtask fuzz`): the
//! cargo-fuzz targets in `fuzz/` over guard's parsers of untrusted input.
//!
//! Each target first replays its regression inputs (`fuzz/regressions/<target>/`:
//! every crash found so far, fixed), then fuzzes for its share of the time from its
//! seeds (`fuzz/seeds/<target>/`, the policy fixtures for `policy`) and the corpus earlier runs grew (`fuzz/corpus/`,
//! not checked in). A crash fails the run and leaves the input in
//! `fuzz/artifacts/<target>/`.
//!
//! Sanitizer: none (`-s none`). guard is safe Rust but for one bounds-checked
//! unaligned read, so AddressSanitizer would find little that a panic does not,
//! at a third of the speed; what the run hunts is panics, overflow checks
//! included (cargo-fuzz builds with debug assertions). libFuzzer's coverage
//! instrumentation needs `-Z` flags: `RUSTC_BOOTSTRAP=1` (set by `util::cargo_unstable`)
//! lets the stable toolchain take them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::setup;
use crate::util::{self, log};

/// The targets, in the order they run.
pub(crate) const TARGETS: &[&str] = &["decode", "policy", "control", "ingest"];

/// Fuzzes every target for `total_secs` seconds in all (split evenly).
pub(crate) fn run(total_secs: u64) -> Result<()> {
    setup::fuzz_tools()?;
    let dir = util::workspace_root().join("fuzz");
    util::run(fuzz_cmd(&dir, "build").args(["-s", "none"])).context("fuzz targets do not build")?;
    let per_target = (total_secs / TARGETS.len() as u64).max(1);
    for target in TARGETS {
        replay(&dir, target)?;
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let mut cmd = fuzz_cmd(&dir, "run");
        cmd.args(["-s", "none", target])
            .arg(&corpus)
            .arg(seeds(target))
            .arg("--")
            .arg(format!("-max_total_time={per_target}"))
            // Flat memory is part of the contract; a leak shows up as a crash.
            .arg("-rss_limit_mb=1024")
            .arg("-print_final_stats=1");
        util::run(&mut cmd).with_context(|| {
            format!(
                "fuzz target {target} failed: the input is in fuzz/artifacts/{target}/; \
                 fix the panic, then move the input to fuzz/regressions/{target}/"
            )
        })?;
    }
    log!(
        "fuzz: {} targets, {per_target} s each, no crash",
        TARGETS.len()
    );
    Ok(())
}

/// Where a target's seeds are: the policy target starts from the policy test
/// fixtures, kept where the parser's tests use them.
fn seeds(target: &str) -> std::path::PathBuf {
    let root = util::workspace_root();
    if target == "policy" {
        root.join("guard-policy/tests/fixtures/policy")
    } else {
        root.join("fuzz/seeds").join(target)
    }
}

/// Runs the target once over each regression input.
fn replay(dir: &Path, target: &str) -> Result<()> {
    let regressions = dir.join("regressions").join(target);
    let mut inputs = Vec::new();
    if regressions.is_dir() {
        for entry in std::fs::read_dir(&regressions)
            .with_context(|| format!("cannot list {}", regressions.display()))?
        {
            inputs.push(entry?.path());
        }
    }
    if inputs.is_empty() {
        log!("fuzz: {target}: no regression inputs");
        return Ok(());
    }
    inputs.sort();
    // Inputs given as files are run once each, not fuzzed.
    let mut cmd = fuzz_cmd(dir, "run");
    cmd.args(["-s", "none", target]).args(&inputs);
    util::run(&mut cmd).with_context(|| format!("a regression input of {target} fails again"))?;
    log!("fuzz: {target}: {} regression input(s) pass", inputs.len());
    Ok(())
}

/// `cargo fuzz <subcommand> --fuzz-dir <dir>` (the option belongs to the subcommand).
fn fuzz_cmd(dir: &Path, subcommand: &str) -> Command {
    let mut cmd = util::cargo_unstable();
    cmd.args(["fuzz", subcommand, "--fuzz-dir"]).arg(dir);
    cmd
}
