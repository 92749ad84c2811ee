//! `cargo xtask lint`: rustfmt, clippy (with warnings denied), cargo-deny, typos,
//! taplo, and the length of the production files.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::setup;
use crate::util::{self, log};

/// Clippy on the workspace, and on the eBPF crate for its own target, as aya-build
/// builds it (core from source; its own target dir, so host builds are not
/// invalidated), in its default build and in its `compat` build (src/each.rs).
fn clippy_commands() -> [Command; 3] {
    let mut workspace = util::cargo();
    workspace.args([
        "clippy",
        "--workspace",
        "--exclude",
        "guard-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    let ebpf = |features: &[&str]| {
        let mut ebpf = util::cargo_unstable();
        ebpf.args([
            "clippy",
            "-p",
            "guard-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .args(features)
        .args(["--", "-D", "warnings"])
        .env("CARGO_TARGET_DIR", "target/ebpf-lint");
        ebpf
    };
    [workspace, ebpf(&[]), ebpf(&["--features", "compat"])]
}

/// Runs lint's clippy at the lowest priority beside the unit and end-to-end tests
/// and the kernel matrix, which leave part of the CPU idle (the end-to-end tests a
/// core of two on average; QEMU 1.6 cores). On a fresh machine it needs some 800 s
/// of CPU: started with the VMs, it slowed them (5.10's set 259 s instead of ~220)
/// and ended 68 s after them (2026-11-29). `cargo xtask lint`, next in CI, then
/// finds its checks built. Its output goes to `target/lint-warm.log`; lint itself
/// says what clippy found.
pub(crate) fn warm() -> std::thread::JoinHandle<()> {
    std::thread::spawn(|| {
        let started = std::time::Instant::now();
        let log_path = util::target_dir().join("lint-warm.log");
        for mut cmd in clippy_commands() {
            let Ok(out) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
            else {
                return;
            };
            let err = out
                .try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null());
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(err);
            let _ = util::niced(&mut cmd).status();
        }
        log!(
            "lint's clippy ran beside the tests ({:.0} s; {})",
            started.elapsed().as_secs_f64(),
            log_path.display()
        );
    })
}

pub(crate) fn run() -> Result<()> {
    // Clippy on guard runs its build script, which builds the eBPF programs.
    setup::setup(false)?;
    setup::lint_tools()?;
    setup::cargo_deny(false)?;
    let tools = setup::LINT_TOOLS.bin();
    let tool = |name: &str| {
        let mut cmd = Command::new(tools.join(name));
        cmd.current_dir(util::workspace_root())
            .env("RUST_LOG", "warn");
        cmd
    };
    let mut checks = vec![(
        "formatting (run `cargo fmt --all`)",
        util::run(util::cargo().args(["fmt", "--all", "--check"])),
    )];
    let mut clippy = Ok(());
    for mut cmd in clippy_commands() {
        clippy = clippy.and(util::run(&mut cmd));
    }
    checks.push(("clippy", clippy));
    // Every file git tracks, by the rules of `_typos.toml`.
    checks.push((
        "spelling (typos; a word that is right goes in _typos.toml)",
        util::run(tool("typos").arg("--format=brief")),
    ));
    checks.push((
        "file length (split the file, see xtask/src/lint.rs)",
        file_lengths(&util::workspace_root()),
    ));
    // The dependency graph by `deny.toml` (advisories: see there).
    checks.push((
        "dependencies (cargo-deny, deny.toml)",
        util::run(
            Command::new(setup::cargo_deny_bin())
                .current_dir(util::workspace_root())
                .args(["check", "licenses", "bans", "sources"]),
        ),
    ));
    // The project's TOML by `.taplo.toml`: laid out as taplo lays it out, and valid.
    let taplo = util::run(tool("taplo").args(["fmt", "--check"]))
        .and_then(|()| util::run(tool("taplo").arg("check")));
    checks.push(("TOML (run `taplo fmt`, from target/lint-venv/bin)", taplo));
    let failed: Vec<&str> = checks
        .iter()
        .filter_map(|(name, result)| {
            if let Err(e) = result {
                log!("{e:#}");
            }
            result.is_err().then_some(*name)
        })
        .collect();
    if failed.is_empty() {
        log!("summary: lint passed (rustfmt, clippy, file length, cargo-deny, typos, taplo)");
        Ok(())
    } else {
        bail!("lint failed: {}", failed.join("; "))
    }
}

/// The most lines of code a production source file may have (lines that are neither
/// blank nor only a comment, outside `#[cfg(test)]` modules). A function's own limit
/// is clippy's `too_many_lines` (clippy.toml).
const MAX_FILE_LINES: usize = 700;

/// Fails when a production source file has more than [`MAX_FILE_LINES`] lines of
/// code, naming each.
fn file_lengths(root: &Path) -> Result<()> {
    let tracked = util::stdout_of(
        Command::new("git")
            .args(["ls-files", "-z", "--", "*.rs"])
            .current_dir(root),
    )?;
    let mut over = Vec::new();
    let mut longest = (0, "");
    for path in tracked.split('\0').filter(|p| is_production(p)) {
        let text =
            std::fs::read_to_string(root.join(path)).with_context(|| format!("read {path}"))?;
        let lines = code_lines(&text);
        longest = longest.max((lines, path));
        if lines > MAX_FILE_LINES {
            over.push(format!("{path}: {lines} lines of code"));
        }
    }
    if !over.is_empty() {
        bail!(
            "over {MAX_FILE_LINES} lines of code (split them):\n  {}",
            over.join("\n  ")
        );
    }
    log!(
        "file length: every production file within {MAX_FILE_LINES} lines of code (the \
         longest: {}, {})",
        longest.1,
        longest.0
    );
    Ok(())
}

/// Whether `path` (relative to the workspace root) is a crate's production source:
/// under `<crate>/src/`, not the end-to-end tests' crate (`tests/`) nor the fuzz
/// targets, and not a test module of its own (`tests.rs`, `*_tests.rs`, the names
/// the workspace gives the files of its `#[cfg(test)] mod …;`).
fn is_production(path: &str) -> bool {
    let path = Path::new(path);
    let mut parts = path.components().map(|c| c.as_os_str().to_string_lossy());
    let (Some(krate), Some(src)) = (parts.next(), parts.next()) else {
        return false;
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    src == "src"
        && krate != "tests"
        && krate != "fuzz"
        && stem != "tests"
        && !stem.ends_with("_tests")
}

/// The lines of `text` that are neither blank nor only a comment, outside its
/// `#[cfg(test)]` modules written inline (`#[cfg(test)]` then `mod … {` up to the
/// `}` at that line's indentation).
fn code_lines(text: &str) -> usize {
    let mut lines = text.lines();
    let mut count = 0;
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]" {
            let Some(next) = lines.next() else { break };
            let item = next.trim_start();
            if (item.starts_with("mod ") || item.starts_with("pub(crate) mod "))
                && item.ends_with('{')
            {
                let close = format!("{}}}", &next[..next.len() - item.len()]);
                lines.by_ref().find(|l| *l == close);
                continue;
            }
            count += usize::from(is_code(next));
            continue;
        }
        count += usize::from(is_code(line));
    }
    count
}

fn is_code(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with("//")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_code_outside_test_modules() {
        let text = "//! A module.\n\
                    use std::fmt;\n\
                    \n\
                    /// Doc.\n\
                    fn a() {\n    // comment\n    let x = 1;\n}\n\
                    #[cfg(test)]\n\
                    mod tests {\n    #[test]\n    fn t() {\n    }\n}\n\
                    fn b() {}\n";
        // use, fn a, let, }, fn b: the attribute of the test module goes with it.
        assert_eq!(code_lines(text), 5);
    }

    #[test]
    fn a_test_module_in_its_own_file_is_left_out_by_name() {
        assert!(is_production("guard-user/src/session/mod.rs"));
        assert!(is_production("xtask/src/vm/mod.rs"));
        assert!(!is_production("guard-user/src/session/tree_tests.rs"));
        assert!(!is_production("guard-fleet/src/store/tests.rs"));
        assert!(!is_production("guard-fleet/tests/fleet/http.rs"));
        assert!(!is_production("tests/src/lib.rs"));
        assert!(!is_production("fuzz/fuzz_targets/decode.rs"));
        assert!(!is_production("guard-fleet/examples/seed.rs"));
    }
}
