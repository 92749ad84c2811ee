//! `cargo xtask`: setup, build, run, test, lint and bench for guard.

mod bench;
mod fuzz;
mod install;
mod setup;
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
        /// the pinned Codex CLI from npm into target/codex).
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
    /// Set up, build (release), run the unit tests, then the end-to-end tests (root),
    /// then a subset of them in Debian's stock kernels (`vm-test`).
    Test {
        /// Skip the end-to-end tests (they need root), the kernel matrix included.
        #[arg(long)]
        no_e2e: bool,
        /// Skip the kernel matrix (`vm-test`).
        #[arg(long)]
        no_vm: bool,
        /// Skip the bounded fuzz run (`cargo xtask fuzz`).
        #[arg(long)]
        no_fuzz: bool,
    },
    /// Replay the fuzz regressions, then fuzz the ring-buffer decoder, the policy
    /// parser and the control protocol readers (cargo-fuzz, installed by set-up).
    Fuzz {
        /// Seconds of fuzzing in all, split evenly between the targets.
        #[arg(long, default_value_t = 90)]
        seconds: u64,
    },
    /// Set up, build (release), then boot Debian's 6.1 and 6.12 kernels (from the
    /// configured apt suites, one VM at a time, software emulation) and run a subset of
    /// the end-to-end tests in each (root).
    VmTest,
    /// Check formatting and run clippy with warnings denied.
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
            no_fuzz,
        } => test(no_e2e, no_vm, no_fuzz),
        Cmd::Fuzz { seconds } => {
            setup::setup(false)?;
            fuzz::run(seconds)
        }
        Cmd::VmTest => vm_test(),
        Cmd::Lint => lint(),
        Cmd::Install { prefix } => {
            setup::setup(false)?;
            let bin = build(true)?;
            install::install(&bin, &prefix)
        }
        Cmd::Bench(opts) => bench(&opts),
    }
}

/// Builds the `guard` binary and returns its path.
fn build(release: bool) -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    cmd.args(["-p", "guard"]);
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

fn vm_test() -> Result<()> {
    if !util::is_root() {
        bail!(
            "the kernel matrix runs root tests; run `sudo -E env PATH=$PATH cargo xtask vm-test`"
        );
    }
    setup::setup(true)?;
    let bin = build(true)?;
    vm::run(&bin)
}

/// Seconds of fuzzing in `cargo xtask test`, all targets together.
const FUZZ_SECONDS: u64 = 90;

fn test(no_e2e: bool, no_vm: bool, no_fuzz: bool) -> Result<()> {
    let e2e = !no_e2e;
    if e2e && !util::is_root() {
        bail!(
            "the end-to-end tests need root; run `sudo -E env PATH=$PATH cargo xtask test`, \
             or `cargo xtask test --no-e2e` for the unit tests only"
        );
    }
    setup::setup(e2e)?;
    let bin = build(true)?;

    log!("unit tests");
    util::run(util::cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "guard-ebpf",
        "--exclude",
        "guard-tests",
    ]))
    .context("unit tests failed")?;

    if no_fuzz {
        log!("fuzz run skipped (--no-fuzz)");
    } else {
        log!("fuzz targets (bounded run)");
        fuzz::run(FUZZ_SECONDS).context("fuzz run failed")?;
    }

    if !e2e {
        log!("summary: unit tests passed; end-to-end tests skipped (--no-e2e)");
        return Ok(());
    }

    log!("end-to-end tests (GUARD_BIN={})", bin.display());
    util::run(
        util::cargo()
            .args(["test", "-p", "guard-tests", "--", "--test-threads=1"])
            .env("GUARD_BIN", &bin)
            .env("GUARD_CODEX_DIR", util::target_dir().join("codex")),
    )
    .context("end-to-end tests failed")?;

    if no_vm {
        log!("summary: unit tests and end-to-end tests passed; kernel matrix skipped (--no-vm)");
        return Ok(());
    }
    log!("kernel matrix (vm-test)");
    vm::run(&bin).context("kernel matrix failed")?;

    log!("summary: unit tests, end-to-end tests and the kernel matrix passed");
    Ok(())
}

fn lint() -> Result<()> {
    // Clippy on guard runs its build script, which builds the eBPF programs.
    setup::setup(false)?;
    let fmt = util::run(util::cargo().args(["fmt", "--all", "--check"]));
    if let Err(e) = &fmt {
        log!("{e:#}");
    }
    let clippy = util::run(util::cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "guard-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]));
    if let Err(e) = &clippy {
        log!("{e:#}");
    }
    // The eBPF crate for its own target, as aya-build builds it (core from source;
    // its own target dir, so host builds are not invalidated).
    let ebpf = util::run(
        util::cargo()
            .args([
                "clippy",
                "-p",
                "guard-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ])
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", "target/ebpf-lint"),
    );
    if let Err(e) = &ebpf {
        log!("{e:#}");
    }
    let clippy = clippy.and(ebpf);
    match (fmt.is_ok(), clippy.is_ok()) {
        (true, true) => {
            log!("summary: lint passed (rustfmt, clippy)");
            Ok(())
        }
        (false, true) => bail!("lint failed: formatting (run `cargo fmt --all`)"),
        (true, false) => bail!("lint failed: clippy"),
        (false, false) => bail!("lint failed: formatting (run `cargo fmt --all`) and clippy"),
    }
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
