//! Small helpers shared by the subcommands: logging, paths, running commands.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};

/// Prints a progress line to stderr, prefixed with `xtask [mm:ss]: ` (the time since
/// xtask started, so a slow step shows in any log).
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("xtask [{}]: {}", $crate::util::elapsed(), format_args!($($arg)*))
    };
}
pub(crate) use log;

static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Starts the clock of the progress lines (first call; `main` makes it).
pub(crate) fn start_clock() {
    STARTED.get_or_init(std::time::Instant::now);
}

/// `mm:ss` since [`start_clock`].
pub(crate) fn elapsed() -> String {
    let secs = STARTED
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs();
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, else `<root>/target`), absolute.
pub(crate) fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Path of the `guard` binary for a profile (`release` or `debug`).
pub(crate) fn guard_bin(release: bool) -> PathBuf {
    target_dir()
        .join(if release { "release" } else { "debug" })
        .join("guard")
}

/// The cargo profile of the tests and of the binaries they run (Cargo.toml).
pub(crate) const TEST_PROFILE: &str = "tests";

/// Path of the `guard` binary the tests run.
pub(crate) fn tested_guard_bin() -> PathBuf {
    target_dir().join(TEST_PROFILE).join("guard")
}

/// A `cargo` command run in the workspace root, in the environment a user's own
/// `cargo build` has: guard's build script gives aya-build the `-Z build-std` it
/// needs by itself. (A `RUSTC_BOOTSTRAP` here and not in `cargo xtask`'s own build
/// would make each rebuild the crates whose build scripts watch it, proc-macro2 and
/// all that derives, every time one follows the other.)
pub(crate) fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root())
        .env_remove("RUSTC_BOOTSTRAP");
    cmd
}

/// [`cargo`] with `RUSTC_BOOTSTRAP=1`, for the `-Z` flags of the stable toolchain
/// (clippy of the eBPF crate with `-Z build-std`, cargo-fuzz's instrumentation): in
/// target directories of their own, or for crates the plain builds never share.
pub(crate) fn cargo_unstable() -> Command {
    let mut cmd = cargo();
    cmd.env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Runs `cmd` at the lowest CPU priority (nice 19): it takes what the rest leaves idle.
pub(crate) fn niced(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: nice(2) in the child before it execs; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::nice(19);
            Ok(())
        })
    }
}

/// An `apt-get` command that waits (up to 10 minutes) for another apt or dpkg run on
/// the machine to let go of the package database instead of failing at once, with
/// no questions asked and no standard input.
pub(crate) fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(["-o", "DPkg::Lock::Timeout=600"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Whether the effective user is root.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A shell-like rendering of a command, for progress lines and errors.
pub(crate) fn display(cmd: &Command) -> String {
    let program = cmd.get_program();
    // Show `cargo` rather than the full toolchain path from `$CARGO`.
    let program = if std::env::var_os("CARGO").as_deref() == Some(program) {
        OsStr::new("cargo")
    } else {
        program
    };
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command with inherited stdio and fails unless it exits successfully.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    log!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command capturing its output (stdin closed); errors only if it cannot start.
pub(crate) fn output(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(std::process::Stdio::null()).output()
}

/// Runs a command and returns its stdout, failing unless it exits successfully.
pub(crate) fn stdout_of(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = output(cmd).with_context(|| format!("failed to start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}
