//! `cargo xtask`: setup, build, run, test, lint and bench for guard.

mod bench;
mod fuzz;
mod install;
mod lint;
mod setup;
mod tally;
mod util;
mod vm;

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::util::log;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Development tasks for guard"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install build prerequisites: rust-src, clang-19, libbpf-dev, bpf-linker.
    Setup {
        /// Also install what the end-to-end tests use (iproute2, tmux, procps,
        /// prometheus, python3-venv, bubblewrap, git, lsb-release, curl, passwd, and
        /// the pinned Codex CLI from npm into target/codex, and the pinned Claude Code,
        /// Gemini and Copilot CLIs into target/agents).
        #[arg(long)]
        test_deps: bool,
    },
    /// Set up, then build the guard binary (release unless --debug).
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Set up, build (release), then exec `guard daemon ARGS...` (needs root).
    Run {
        /// Arguments passed to `guard daemon`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, build (the `tests` profile), run the unit tests, then the end-to-end tests (root),
    /// then a subset of them in Debian's stock kernels (`vm-test`).
    Test {
        /// Skip the end-to-end tests (they need root), the kernel matrix included.
        #[arg(long)]
        no_e2e: bool,
        /// Skip the kernel matrix (`vm-test`).
        #[arg(long)]
        no_vm: bool,
        /// Also run the bounded fuzz run (`cargo xtask fuzz`: its first build takes
        /// about 7 minutes on 2 cores, so CI leaves it to `cargo xtask fuzz`).
        #[arg(long)]
        fuzz: bool,
    },
    /// Replay the fuzz regressions, then fuzz the ring-buffer decoder, the policy
    /// parser and the control protocol readers (cargo-fuzz, installed by set-up).
    Fuzz {
        /// Seconds of fuzzing in all, split evenly between the targets.
        #[arg(long, default_value_t = 90)]
        seconds: u64,
    },
    /// Set up, build (the `tests` profile), then boot Debian's 5.10 (Debian 11's, guard's compat
    /// build), 6.1 and 6.12 kernels (from Debian's apt suites, one VM at a time,
    /// software emulation) and run a subset of the end-to-end tests in each (root).
    VmTest(vm::Options),
    /// Check formatting (rustfmt, taplo), run clippy with warnings denied, and check
    /// spelling (typos).
    Lint,
    /// Build (release) and install the binary, the systemd unit and a starting
    /// policy (kept if one exists) for a workstation (root).
    Install {
        /// Install under this directory instead of / (for packaging and tests).
        #[arg(long, default_value = "/")]
        prefix: PathBuf,
    },
    /// Set up, build (release), then measure guard's overhead next to no monitoring,
    /// empty programs on the same hooks, auditd, libbpf-tools and bpftrace (root).
    /// Writes BENCHMARKS.md and bench-results.json.
    Bench(bench::Options),
}

fn main() -> ExitCode {
    // Errors are printed here (not by anyhow's `Termination`), so a set
    // RUST_BACKTRACE does not bury the message under a backtrace.
    util::start_clock();
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Cmd) -> Result<()> {
    match command {
        Cmd::Setup { test_deps } => setup::setup(test_deps),
        Cmd::Build { debug } => {
            setup::setup(false)?;
            build(!debug).map(|_| ())
        }
        Cmd::Run { args } => run(args),
        Cmd::Test {
            no_e2e,
            no_vm,
            fuzz,
        } => test(no_e2e, no_vm, !fuzz),
        Cmd::Fuzz { seconds } => {
            setup::setup(false)?;
            fuzz::run(seconds)
        }
        Cmd::VmTest(opts) => vm_test(&opts),
        Cmd::Lint => lint::run(),
        Cmd::Install { prefix } => {
            setup::setup(false)?;
            let bin = build(true)?;
            install::install(&bin, &prefix)
        }
        Cmd::Bench(opts) => bench(&opts),
    }
}

/// What `cargo xtask test` builds and runs, in every one of its cargo commands (its
/// last argument is nextest's filter, `-E EXPR`, given after it): the same packages
/// resolve to the same dependency features, so the dependencies are built once for
/// the binaries, the unit tests, the end-to-end tests and the VMs' test binaries.
const TESTED: &[&str] = &["--workspace", "--exclude", "guard-ebpf", "-E"];

/// Builds every test binary and, with them, the `guard` and `guard-fleet` binaries
/// the end-to-end tests run (cargo builds a package's binaries for its integration
/// tests); returns guard's path.
fn build_for_tests() -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.args([
        "nextest",
        "run",
        "--no-run",
        "--cargo-profile",
        util::TEST_PROFILE,
    ])
    .args(&TESTED[..TESTED.len() - 1]);
    util::run(&mut cmd)?;
    let bin = util::tested_guard_bin();
    for built in [bin.clone(), bin.with_file_name("guard-fleet")] {
        if !built.is_file() {
            bail!("the test build made no {}", built.display());
        }
    }
    log!("built {}", bin.display());
    Ok(bin)
}

/// Builds the `guard` binary and returns its path.
fn build(release: bool) -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    // guard-fleet too: `guard fleet` runs the one beside guard, and the e2e tests
    // export to it.
    cmd.args(["-p", "guard", "-p", "guard-fleet"]);
    util::run(&mut cmd)?;
    let bin = util::guard_bin(release);
    if !bin.is_file() {
        bail!("build succeeded but {} does not exist", bin.display());
    }
    log!("built {}", bin.display());
    Ok(bin)
}

fn run(args: Vec<OsString>) -> Result<()> {
    if !util::is_root() {
        bail!(
            "guard needs root (it loads eBPF programs); run:\n  sudo -E env PATH=$PATH cargo xtask run"
        );
    }
    setup::setup(false)?;
    let bin = build(true)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("daemon").args(&args);
    log!("exec {}", util::display(&cmd));
    // Replaces this process, so signals (Ctrl-C, SIGTERM) reach guard directly.
    let err = cmd.exec();
    Err(err).with_context(|| format!("failed to exec {}", bin.display()))
}

fn vm_test(opts: &vm::Options) -> Result<()> {
    if !util::is_root() {
        bail!(
            "the kernel matrix runs root tests; run `sudo -E env PATH=$PATH cargo xtask vm-test`"
        );
    }
    setup::setup(true)?;
    let prepared = prepare_vms(opts);
    // The test build, as `cargo xtask test` makes it: the VMs run its test binaries.
    let bin = build_for_tests()?;
    let mut tally = tally::Tally::default();
    for suite in vm_suites(&bin, opts, prepared) {
        tally.add(suite);
    }
    finish(&tally)
}

/// The kernel matrix's set-up (QEMU, virtme-ng, the kernels: about a minute of
/// downloads and unpacking) in a thread of its own, beside the test build.
fn prepare_vms(opts: &vm::Options) -> std::thread::JoinHandle<Result<vm::Prepared>> {
    let opts = opts.clone();
    std::thread::spawn(move || vm::prepare(&opts))
}

/// The kernel matrix as suites, one a kernel (a matrix that could not be set up is
/// one failed suite).
fn vm_suites(
    bin: &std::path::Path,
    opts: &vm::Options,
    prepared: std::thread::JoinHandle<Result<vm::Prepared>>,
) -> Vec<tally::Suite> {
    let ran = prepared
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the kernel matrix's set-up panicked")))
        .and_then(|p| vm::run_prepared(bin, opts, p));
    match ran {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| {
                let mut suite = tally::Suite::new(format!("vm {}", o.abi));
                suite.wall = o.wall;
                suite.error = o.error;
                suite.notes = o.notes;
                suite.tests = o
                    .tests
                    .into_iter()
                    .map(|t| {
                        let verdict = match t.verdict {
                            vm::Verdict::Passed => tally::Verdict::Passed,
                            vm::Verdict::Failed(why) => tally::Verdict::Failed(why),
                            vm::Verdict::Missing => tally::Verdict::Failed(
                                "the harness ran no test of that name (renamed?)".to_owned(),
                            ),
                            vm::Verdict::CutOff { started } => tally::Verdict::Failed(format!(
                                "never {} (the VM stopped first, twice)",
                                if started { "finished" } else { "started" }
                            )),
                            // Where the kernel has what the test needs, a skip is
                            // a failure.
                            vm::Verdict::Skipped(why) => {
                                tally::Verdict::Failed(format!("skipped in the VM: {why}"))
                            }
                        };
                        (format!("{}::{}", t.bin, t.name), verdict)
                    })
                    .collect();
                suite
            })
            .collect(),
        Err(e) => {
            let mut suite = tally::Suite::new("vm");
            suite.error = Some(format!("the kernel matrix could not run: {e:#}"));
            vec![suite]
        }
    }
}

/// Prints the summary line (and every failure and skip) and fails if anything
/// failed.
fn finish(tally: &tally::Tally) -> Result<()> {
    for line in tally.summary().lines() {
        log!("{line}");
    }
    if tally.failed() > 0 {
        bail!("{} test(s) failed", tally.failed());
    }
    Ok(())
}

/// Seconds of fuzzing in `cargo xtask test`, all targets together.
const FUZZ_SECONDS: u64 = 90;

/// Runs `cargo nextest run ARGS --profile PROFILE` and reads its JUnit report into
/// a suite (the skips the tests recorded in `skip_log` marked as such).
fn nextest_suite(
    name: &str,
    profile: &str,
    args: &[&str],
    envs: &[(&str, &std::ffi::OsStr)],
    skip_log: &std::path::Path,
) -> tally::Suite {
    let started = std::time::Instant::now();
    let mut suite = tally::Suite::new(name);
    let junit = util::target_dir()
        .join("nextest")
        .join(profile)
        .join("junit.xml");
    let _ = std::fs::remove_file(&junit);
    let _ = std::fs::remove_file(skip_log);
    let mut cmd = util::cargo();
    // The profile the guard binary under test is built with: its dependencies are
    // built once for both.
    cmd.args([
        "nextest",
        "run",
        "--cargo-profile",
        util::TEST_PROFILE,
        "--profile",
        profile,
    ])
    .args(args)
    .env(tests_skip_log(), skip_log);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let ran = util::run(&mut cmd);
    match tally::junit(&junit) {
        Ok(tests) => suite.tests = tests,
        Err(e) => {
            suite.error = Some(match &ran {
                Err(run) => format!("{run:#} (and no report: {e:#})"),
                Ok(()) => format!("no report: {e:#}"),
            })
        }
    }
    if let (Err(run), None) = (&ran, &suite.error)
        && suite.failed() == 0
    {
        // nextest failed but its report names no failure (a build error, a
        // harness crash): that is a failure of the suite.
        suite.error = Some(format!("{run:#}"));
    }
    suite.apply_skips(&tally::skips(skip_log));
    suite.wall = started.elapsed();
    suite
}

/// The variable the end-to-end tests record their skips in (tests/src/lib.rs).
fn tests_skip_log() -> &'static str {
    "GUARD_E2E_SKIP_LOG"
}

fn test(no_e2e: bool, no_vm: bool, no_fuzz: bool) -> Result<()> {
    let e2e = !no_e2e;
    if e2e && !util::is_root() {
        bail!(
            "the end-to-end tests need root; run `sudo -E env PATH=$PATH cargo xtask test`, \
             or `cargo xtask test --no-e2e` for the unit tests only"
        );
    }
    setup::build_tools(e2e)?;
    // Fetched while the build runs (network against CPU): needed from the unit tests on.
    let tools = e2e.then(|| std::thread::spawn(setup::test_tools));
    // Lint's cargo-deny, built at the lowest priority on the CPU the build's serial
    // tail and the end-to-end tests leave idle (lint, next in CI, runs it).
    let deny = e2e.then(|| std::thread::spawn(|| setup::cargo_deny(true)));
    let vm_opts = vm::Options::default();
    let prepared = (e2e && !no_vm).then(|| prepare_vms(&vm_opts));
    let bin = build_for_tests()?;
    // Lint's clippy (next in CI) checks the workspace at the lowest priority from
    // here on, on what the unit and end-to-end tests (a core of two, on average)
    // and then the VMs leave idle: a cargo listing the tests beside it is not held.
    let warm = (e2e && !no_vm).then(lint::warm);
    if let Some(tools) = tools {
        tools
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the test tools' set-up panicked")))?;
        log!("setup complete");
    }
    let mut tally = tally::Tally::default();
    let skip_log = util::target_dir().join("nextest").join("skips.jsonl");

    log!("unit tests");
    // As root with the test packages installed, guard-fleet's tests run on a real
    // PostgreSQL too (each starts its own cluster in a temporary directory).
    let pg_env = [("GUARD_FLEET_TEST_PG", std::ffi::OsStr::new("initdb"))];
    let pg: &[(&str, &std::ffi::OsStr)] = if e2e { &pg_env } else { &[] };
    tally.add(nextest_suite(
        "unit",
        "unit",
        &[TESTED, &["not package(guard-tests)"]].concat(),
        pg,
        &skip_log,
    ));

    if no_fuzz {
        tally.not_run(
            "fuzz",
            "run by `cargo xtask fuzz` or `cargo xtask test --fuzz`",
        );
    } else {
        log!("fuzz targets (bounded run)");
        let started = std::time::Instant::now();
        let mut suite = tally::Suite::new("fuzz");
        let verdict = match fuzz::run(FUZZ_SECONDS) {
            Ok(()) => tally::Verdict::Passed,
            Err(e) => tally::Verdict::Failed(format!("{e:#}")),
        };
        suite.tests.push((
            format!("{} targets, {FUZZ_SECONDS} s", fuzz::TARGETS.len()),
            verdict,
        ));
        suite.wall = started.elapsed();
        tally.add(suite);
    }

    if !e2e {
        tally.not_run("e2e", "--no-e2e");
        tally.not_run("vm", "--no-e2e");
        return finish(&tally);
    }

    log!("end-to-end tests (GUARD_BIN={})", bin.display());
    let codex = util::target_dir().join("codex");
    let agents = util::target_dir().join("agents");
    tally.add(nextest_suite(
        "e2e",
        "e2e",
        &[TESTED, &["package(guard-tests)"]].concat(),
        &[
            ("GUARD_BIN", bin.as_os_str()),
            ("GUARD_CODEX_DIR", codex.as_os_str()),
            ("GUARD_AGENTS_DIR", agents.as_os_str()),
        ],
        &skip_log,
    ));

    if no_vm {
        tally.not_run(
            "vm",
            "--no-vm: nothing was proved on Debian's 6.1 and 6.12 kernels (BPF-LSM deny among it)",
        );
    } else {
        log!("kernel matrix (vm-test)");
        let prepared = prepared.unwrap_or_else(|| prepare_vms(&vm_opts));
        for suite in vm_suites(&bin, &vm_opts, prepared) {
            tally.add(suite);
        }
    }
    if let Some(warm) = warm {
        let _ = warm.join();
    }
    if let Some(Ok(Err(e))) = deny.map(std::thread::JoinHandle::join) {
        // Not a test: lint installs it again, and fails if it cannot.
        log!("cargo-deny's install failed: {e:#}");
    }
    finish(&tally)
}

fn bench(opts: &bench::Options) -> Result<()> {
    if !util::is_root() {
        bail!(
            "the benchmarks need root (they load eBPF programs and audit rules); run:\n  \
             sudo -E env PATH=$PATH cargo xtask bench"
        );
    }
    let bin = if opts.no_build {
        util::guard_bin(true)
    } else {
        setup::setup(false)?;
        build(true)?
    };
    bench::run(&bin, opts)
}
