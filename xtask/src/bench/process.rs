//! Interruption (Ctrl-C), child processes stopped on drop, the temporary
//! directory and running a command under a watchdog.

use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

use crate::util::{self, log};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(super) fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

pub(super) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub(super) fn sleep(d: Duration) -> Result<()> {
    std::thread::sleep(d);
    check_interrupted()
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub(super) struct Proc {
    name: String,
    child: Option<Child>,
    stderr: Option<PathBuf>,
}

impl Proc {
    pub(super) fn spawn(name: &str, cmd: &mut Command, stderr: Option<&Path>) -> Result<Self> {
        let shown = util::display(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: `{shown}`"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            stderr: stderr.map(Path::to_path_buf),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it still runs.
    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn stderr_tail(&self) -> String {
        self.stderr
            .as_deref()
            .and_then(|p| fs::read_to_string(p).ok())
            .map(|s| tail(&s, 800))
            .unwrap_or_default()
    }

    /// Sends `sig`, waits up to `grace`, then SIGKILLs. Returns the exit status.
    pub(super) fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        signal(child.id(), sig);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        log!("{} did not stop within {grace:?}; killing it", self.name);
        let _ = child.kill();
        child.wait().ok()
    }

    /// Polls `ready` until it holds; fails if the process exits or `timeout` passes.
    pub(super) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if !self.alive() {
                bail!(
                    "{} exited before it was ready: {}",
                    self.name,
                    self.stderr_tail()
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} not ready after {timeout:?}: {}",
                    self.name,
                    self.stderr_tail()
                );
            }
            sleep(Duration::from_millis(20))?;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM, Duration::from_secs(5));
    }
}

/// A temporary directory (tempfile's), removed when dropped. A failed removal is
/// reported: tempfile's own drop ignores it, and a bench that leaves files behind
/// on a shared machine should say so.
pub(super) struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    /// Creates `<parent>/<prefix><random>`, readable by everyone (the workloads run
    /// as another account); returns it and its path.
    pub(super) fn new_in(parent: &Path, prefix: &str) -> Result<(Self, PathBuf)> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
        let path = dir.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} readable", path.display()))?;
        Ok((Self(Some(dir)), path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let shown = dir.path().display().to_string();
            if let Err(e) = dir.close() {
                log!("warning: cannot remove {shown}: {e}");
            }
        }
    }
}

/// Random hex from /dev/urandom (falls back to time and pid).
pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let ok = fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(super) fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub(super) fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].replace('\n', " | ")
}

/// The seconds a workload printed (its first word: it times its own loop).
pub(super) fn printed_seconds(out: &str) -> Result<f64> {
    out.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("the workload printed no time: {out:?}"))
}

/// Runs `cmd` to completion with a watchdog; returns stdout.
pub(super) fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let shown = util::display(cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            signal(pid, libc::SIGKILL);
            true
        } else {
            false
        }
    });
    let out = child.wait_with_output();
    let _ = tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let out = out.with_context(|| format!("cannot wait for `{shown}`"))?;
    check_interrupted()?;
    if timed_out {
        bail!("`{shown}` timed out after {timeout:?}");
    }
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 800)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn file_for(path: &Path) -> Result<fs::File> {
    fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Changes the owner of `path` and of everything under it (symbolic links themselves).
pub(super) fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot chown {}", path.display()))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for e in fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Where `bin` is, on `PATH` or in the system's directories.
pub(super) fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Whether process `pid` holds an epoll instance (a daemon waiting in its loop).
pub(super) fn has_eventpoll(pid: u32) -> bool {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("eventpoll")))
}
