//! Shared fixtures for the end-to-end tests.
//!
//! The tests run the real `guard daemon` (path in `$GUARD_BIN`, by default
//! `target/release/guard` of this workspace) as root, each with its own events file,
//! control socket and a unique agent name, so that it never tracks anything but the
//! fake agent the test starts under that name.
//!
//! - [`Daemon`] starts the daemon, waits until it is ready, reads its events and stops it.
//! - [`FakeAgent`] installs a copy of `guard-fake-agent` under a unique name and runs it.
//! - [`check_schema`] checks the fields every event must have; [`assert_same_identity`]
//!   that the events of one process agree on who it is.
//!
//! Run them as root, one test at a time:
//! `cargo test -p guard-tests -- --test-threads=1`. Environment: `GUARD_BIN` (the binary
//! under test), `GUARD_E2E_KEEP=1` (keep the temp dirs, events file included),
//! `GUARD_E2E_FULL_LOG=1` (do not shorten the daemon's log in failure messages),
//! `GUARD_E2E_ALLOW_SKIP=1` (a check whose tool is missing is skipped, with a
//! `SKIPPED:` line on stderr, instead of failing: see [`skip`]).

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guard_common::line::{EventDetail, EventLine};
use std::{env, fs, thread};

use serde_json::Value;

pub mod chain;
pub mod dnsmasq;
pub mod fleet;
pub mod home;
pub mod model;
pub mod otlp;
pub mod packages;
pub mod pg;
pub mod watch;

/// How long the daemon may take to load and attach its programs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long events may take to reach the events file.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fake agent scenario (or `guard run`) may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, once a process has exited, the readers of its pipes may take to reach their
/// end (longer only if something it started still holds them open).
pub const PIPE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Multiplies a timeout by `$GUARD_E2E_TIME_SCALE` (default 1): `cargo xtask vm-test`
/// sets it where the tests run under software emulation, many times slower.
pub fn scaled(timeout: Duration) -> Duration {
    let scale = env::var("GUARD_E2E_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1);
    timeout * scale
}

/// The line the daemon logs on stderr once every program is attached.
pub const READY_LINE: &str = "guard daemon ready";

/// Expands to the path of the `guard-fake-agent` binary (only defined in integration tests).
#[macro_export]
macro_rules! fake_agent_exe {
    () => {
        env!("CARGO_BIN_EXE_guard-fake-agent")
    };
}

/// The environment variable that lets a test skip a check whose tool is missing.
pub const ALLOW_SKIP: &str = "GUARD_E2E_ALLOW_SKIP";

/// A check of `test` cannot run, for `reason` (a tool is missing). With
/// `GUARD_E2E_ALLOW_SKIP=1` this prints `SKIPPED: <test>: <reason>` on stderr and returns,
/// and the caller returns early; otherwise it fails the test with the reason, so that a
/// run that must check everything (CI's `cargo xtask test`, which never sets it) does
/// not pass a check it did not make.
///
/// Cargo's harness has no skipped state: a test that returns early is listed as `ok`.
/// The stderr line is what says it was not. It is written to the stderr descriptor
/// itself, not through `eprintln!`, which the harness captures and throws away for a
/// test that passes.
pub fn skip(test: &str, reason: &str) {
    let allowed = env::var_os(ALLOW_SKIP).is_some_and(|v| v == "1");
    assert!(
        allowed,
        "{test}: {reason}\n(set {ALLOW_SKIP}=1 to skip this check instead of failing)"
    );
    record_skip(test, reason);
}

/// The environment variable naming the file where skipped tests are recorded (one
/// JSON object a line: `test`, `reason`): `cargo xtask test` sets it and lists them
/// in its summary, so that a skip is never counted as a pass.
pub const SKIP_LOG_ENV: &str = "GUARD_E2E_SKIP_LOG";

/// Says that `test` was skipped and why: on stderr (`SKIPPED: test: reason`, to the
/// descriptor itself, which the harness does not capture) and in
/// `$GUARD_E2E_SKIP_LOG`.
pub fn record_skip(test: &str, reason: &str) {
    let _ = writeln!(io::stderr().lock(), "{SKIP_PREFIX} {test}: {reason}");
    if let Some(path) = env::var_os(SKIP_LOG_ENV) {
        let line = serde_json::json!({ "test": test, "reason": reason }).to_string() + "\n";
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!(
                "cannot record the skip of {test} in {}: {e}",
                Path::new(&path).display()
            );
        }
    }
}

/// Fails the test unless it runs as root: loading eBPF programs needs it.
pub fn require_root() {
    watch::arm(Duration::ZERO);
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the guard end-to-end tests load eBPF programs and must run as root (euid is {euid}); \
         run them with sudo, e.g. `sudo -E cargo test -p guard-tests -- --test-threads=1`"
    );
}

/// The guard binary under test: `$GUARD_BIN`, or `target/release/guard` of this workspace.
pub fn guard_bin() -> PathBuf {
    let path = match env::var_os("GUARD_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/guard"),
    };
    assert!(
        path.is_file(),
        "guard binary not found at {}: build it (cargo build --release -p guard) or set GUARD_BIN",
        path.display()
    );
    fs::canonicalize(&path).expect("canonicalize the guard binary path")
}

/// A name of at most 15 bytes (a whole `comm`) that no other process on the host uses:
/// `prefix` followed by 8 random hex digits.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    let name = format!("{prefix}{:08x}", u32::from_ne_bytes(bytes));
    assert!(name.len() <= 15, "{name:?} does not fit in a comm");
    name
}

/// A directory under /tmp, removed on drop (kept if `GUARD_E2E_KEEP` is set).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        Self::new_in("/tmp", prefix)
    }

    /// A directory under `parent` (which must exist), removed on drop.
    pub fn new_in(parent: &str, prefix: &str) -> Self {
        let template = CString::new(format!("{parent}/{prefix}-XXXXXX")).expect("no NUL in prefix");
        let mut bytes = template.into_bytes_with_nul();
        // SAFETY: mkdtemp rewrites the XXXXXX of the NUL-terminated template in place.
        let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        assert!(
            !made.is_null(),
            "mkdtemp {parent}/{prefix}-XXXXXX: {}",
            io::Error::last_os_error()
        );
        bytes.pop();
        let path = PathBuf::from(OsString::from_vec(bytes));
        let path = fs::canonicalize(&path).expect("canonicalize the temp dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path()` joined with `name`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if env::var_os("GUARD_E2E_KEEP").is_some() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _w = watch::waiting(format!("{} removed", self.path.display()));
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// One JSON line of the events file.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The parsed object.
    pub value: Value,
    /// The line as the daemon wrote it.
    pub line: String,
}

impl Event {
    /// Events about the daemon itself (`lost`, `policy_loaded`, `policy_rejected`,
    /// `daemon_resumed`): no session, no process.
    pub fn about_daemon(&self) -> bool {
        EventDetail::DAEMON_KINDS.contains(&self.kind())
    }

    pub fn kind(&self) -> &str {
        self.str("kind").unwrap_or("")
    }

    pub fn session(&self) -> Option<&str> {
        self.str("session")
    }

    pub fn pid(&self) -> Option<i64> {
        self.int("pid")
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(Value::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.value.get(key).and_then(Value::as_i64)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.value.get(key).and_then(Value::as_bool)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key)
    }

    /// The strings of an array field (`argv`, `access`); None if it is not an array of strings.
    pub fn strings(&self, key: &str) -> Option<Vec<&str>> {
        self.value
            .get(key)?
            .as_array()?
            .iter()
            .map(Value::as_str)
            .collect()
    }

    /// The integers of an array field (`stragglers`).
    pub fn ints(&self, key: &str) -> Option<Vec<i64>> {
        self.value
            .get(key)?
            .as_array()?
            .iter()
            .map(Value::as_i64)
            .collect()
    }

    /// Is this a `kind` event of process `pid`?
    pub fn is(&self, kind: &str, pid: i64) -> bool {
        self.kind() == kind && self.pid() == Some(pid)
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

/// Formats events one per line for failure messages (the last 300 at most).
pub fn dump(events: &[Event]) -> String {
    let skip = events.len().saturating_sub(300);
    let mut out = format!("{} events", events.len());
    if skip > 0 {
        let _ = write!(out, " (first {skip} left out)");
    }
    out.push_str(":\n");
    for event in &events[skip..] {
        let _ = writeln!(out, "  {event}");
    }
    out
}

/// The one event matching `pred`, or the first of several; fails the test with `what` and
/// the events if there is none.
pub fn find<'a>(events: &'a [Event], what: &str, pred: impl Fn(&Event) -> bool) -> &'a Event {
    match events.iter().find(|e| pred(e)) {
        Some(event) => event,
        None => panic!("no event: {what}\n{}", dump(events)),
    }
}

/// The session id of the session whose root is `root_pid` (from its session_start).
pub fn session_of(events: &[Event], root_pid: i64) -> String {
    let start = find(
        events,
        &format!("session_start with root_pid {root_pid}"),
        |e| e.kind() == "session_start" && e.int("root_pid") == Some(root_pid),
    );
    start
        .session()
        .expect("session_start has a session")
        .to_owned()
}

/// Checks that every event of process `pid` tells the same story about who it is: the same
/// `ppid`, `uid`, `user`, `cgroup_id` and `container` (none of them changes in these tests).
pub fn assert_same_identity(events: &[Event], pid: i64) {
    let of_pid: Vec<&Event> = events.iter().filter(|e| e.pid() == Some(pid)).collect();
    let Some(first) = of_pid.first() else {
        panic!("no events of process {pid}\n{}", dump(events));
    };
    for key in ["ppid", "uid", "user", "cgroup_id", "container"] {
        let differ: Vec<String> = of_pid
            .iter()
            .filter(|e| e.get(key) != first.get(key))
            .map(|e| format!("  {e}"))
            .collect();
        assert!(
            differ.is_empty(),
            "events of process {pid} disagree on {key}: {:?} in\n  {first}\nbut not in\n{}",
            first.get(key),
            differ.join("\n")
        );
    }
}

/// Polls `done` until it holds; fails the test, saying it waited for `what`, after
/// `timeout`.
pub fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    wait_until_every(what, timeout, Duration::from_millis(20), done);
}

/// [`wait_until`], asking every `interval`: for a condition that costs a process
/// or a request to check.
pub fn wait_until_every(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut done: impl FnMut() -> bool,
) {
    let _w = watch::waiting(what);
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}\n{}",
            watch::state()
        );
        thread::sleep(interval);
    }
}

/// The children of process `pid` (empty if it is gone).
pub fn children(pid: i64) -> Vec<i64> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `comm` of process `pid`, if it exists.
pub fn comm(pid: i64) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// Whether process `pid` is dead: gone, or a zombie its parent has not collected yet.
pub fn gone(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// A named pipe in `dir`, to hold a process of a test (`read _ < FIFO` in a shell) until
/// the test has seen what it waits for; [`Fifo::release`] lets it go on.
pub struct Fifo {
    path: PathBuf,
}

impl Fifo {
    pub fn new(dir: &Path, name: &str) -> Self {
        let path = dir.join(name);
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in path");
        // SAFETY: mkfifo with a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a `str`, to put in a shell command.
    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("UTF-8 temp path")
    }

    /// Writes a line to the pipe once its reader has opened it (up to [`RUN_TIMEOUT`]).
    pub fn release(&self) {
        use std::os::unix::fs::OpenOptionsExt;
        let start = Instant::now();
        let mut pipe = loop {
            // Non-blocking: ENXIO until a reader has it open, so a reader that never comes
            // fails the test instead of hanging it.
            match fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
            {
                Ok(pipe) => break pipe,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    assert!(
                        start.elapsed() < scaled(RUN_TIMEOUT),
                        "no reader opened {} within {RUN_TIMEOUT:?}",
                        self.path.display()
                    );
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("open {}: {e}", self.path.display()),
            }
        };
        io::Write::write_all(&mut pipe, b"go\n")
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
    }
}

/// A pin directory under `/sys/fs/bpf` that a test owns: the daemons it starts pin
/// their programs, links and maps there (and leave them when they stop, as guard
/// does); on drop everything under it is removed, which detaches the programs and
/// frees the maps. Share it (`Arc`) between daemons that take over from each other;
/// it goes when the last of them is dropped, after each stopped.
pub struct PinDir {
    path: PathBuf,
    _owned: watch::Entry,
}

impl std::fmt::Debug for PinDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinDir").field("path", &self.path).finish()
    }
}

impl PinDir {
    /// A new, unique path; the daemon creates the directory (and mounts the BPF file
    /// system when absent).
    pub fn new() -> Self {
        let path = Path::new("/sys/fs/bpf").join(format!("guard-e2e-{}", unique_name("p")));
        Self {
            _owned: watch::own_pins(&path),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The links pinned now (one per attached hook).
    pub fn links(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path.join("links"))
            .map(|r| {
                r.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Set by `cargo xtask vm-test` in its throwaway guests: a test's pins are moved
/// aside and removed by a detached `rm`, so that the kernel's teardown of the
/// programs (waits for RCU grace periods, long under software emulation: 6.4 s for
/// a daemon's pins on 6.1 under TCG) overlaps the next test instead of adding to it.
const DETACHED_UNPIN: &str = "GUARD_E2E_DETACHED_UNPIN";

impl Drop for PinDir {
    fn drop(&mut self) {
        let _w = watch::waiting(format!("the pins {} removed", self.path.display()));
        if env::var_os(DETACHED_UNPIN).is_some() {
            // No dot: bpffs refuses every name with one (EPERM, even to look it up).
            let mut aside = self.path.clone().into_os_string();
            aside.push("-unpinning");
            let moved = fs::rename(&self.path, &aside);
            if let Err(e) = &moved {
                eprintln!(
                    "cannot move the pins {} aside: {e}; removing them in place",
                    self.path.display()
                );
            }
            if moved.is_ok() {
                let removing = Command::new("rm")
                    .arg("-rf")
                    .arg(&aside)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                match removing {
                    Ok(_) => return,
                    Err(e) => {
                        eprintln!("cannot start rm for {}: {e}", aside.display());
                        let _ = fs::remove_dir_all(&aside);
                        return;
                    }
                }
            }
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "cannot remove the test's pins {}: {e}; remove them with \
                 `guard unload --pin-dir {}`",
                self.path.display(),
                self.path.display()
            ),
        }
    }
}

/// Predicate for [`Daemon::wait_for`]: the session rooted at `root_pid` has ended.
pub fn session_ended(root_pid: i64) -> impl Fn(&[Event]) -> bool {
    move |events| {
        events
            .iter()
            .any(|e| e.kind() == "session_end" && e.int("root_pid") == Some(root_pid))
    }
}

/// Where [`Daemon`] has the daemon write its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsTo {
    /// `--events <temp dir>/events.jsonl`.
    File,
    /// `--events -`: standard output.
    Stdout,
}

/// A running `guard daemon`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
    dir: TempDir,
    /// The events file, or None when the events go to stdout (collected in `stdout`).
    events_path: Option<PathBuf>,
    stdout: Arc<Mutex<Vec<u8>>>,
    /// Signalled when stdout reaches its end (events on stdout only).
    stdout_closed: Option<mpsc::Receiver<()>>,
    socket_path: PathBuf,
    log: Arc<Mutex<String>>,
    /// Whether a failure message already carried the log (so Drop need not print it).
    log_shown: bool,
    /// Where it pins (removed when the last daemon sharing it is dropped).
    pins: Arc<PinDir>,
    /// Its entry in the test's registry (state dumps, the deadline's clean-up).
    _owned: watch::Entry,
}

impl Daemon {
    /// Starts `guard daemon --agent A... --events <temp> --socket <temp>` and waits until it
    /// logs that it is ready. Fails the test with the daemon's output if it exits first or
    /// takes longer than [`READY_TIMEOUT`].
    pub fn start(agents: &[&str]) -> Self {
        Self::start_with(agents, EventsTo::File)
    }

    /// [`Daemon::start`], with the events written where `to` says.
    pub fn start_with(agents: &[&str], to: EventsTo) -> Self {
        Self::start_with_args(agents, to, &[])
    }

    /// [`Daemon::start_with`], with `extra` arguments after `daemon` (`--policy FILE`).
    /// With no `agents`, the policy's `[agents] names` start sessions.
    pub fn start_with_args(agents: &[&str], to: EventsTo, extra: &[&OsStr]) -> Self {
        Self::start_on(&Arc::new(PinDir::new()), agents, to, extra)
    }

    /// [`Daemon::start_with_args`] on the pins `pins` (another daemon's, to take over
    /// from it).
    pub fn start_on(pins: &Arc<PinDir>, agents: &[&str], to: EventsTo, extra: &[&OsStr]) -> Self {
        require_root();
        let bin = guard_bin();
        let dir = TempDir::new("guard-e2e-daemon");
        let events_path = (to == EventsTo::File).then(|| dir.join("events.jsonl"));
        let socket_path = dir.join("guard.sock");
        let mut cmd = Command::new(&bin);
        cmd.arg("daemon")
            .arg("--pin-dir")
            .arg(pins.path())
            // State of its own (the export's spool, the fleet's policy), not the
            // host's /var/lib/guard; `--state-dir` in `extra` wins.
            .env("GUARD_STATE_DIR", dir.join("state"))
            .args(extra);
        for agent in agents {
            cmd.arg("--agent").arg(agent);
        }
        match &events_path {
            Some(path) => cmd.arg("--events").arg(path),
            None => cmd.args(["--events", "-"]),
        };
        cmd.arg("--socket")
            .arg(&socket_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let owned = watch::own_daemon(child.id(), events_path.clone(), &log);
        let stderr_closed = collect_lines(child.stderr.take().expect("piped stderr"), "", &log);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let child_stdout = child.stdout.take().expect("piped stdout");
        let (stdout_closed, log_stdout_closed) = if events_path.is_some() {
            (None, Some(collect_lines(child_stdout, "[stdout] ", &log)))
        } else {
            (Some(collect_bytes(child_stdout, &stdout)), None)
        };
        let mut daemon = Self {
            child: Some(child),
            dir,
            events_path,
            stdout,
            stdout_closed,
            socket_path,
            log: Arc::clone(&log),
            log_shown: false,
            pins: Arc::clone(pins),
            _owned: owned,
        };

        let _w = watch::waiting(format!("the daemon to log {READY_LINE:?}"));
        let start = Instant::now();
        loop {
            if daemon.log().contains(READY_LINE) {
                return daemon;
            }
            if let Some(status) = daemon.try_wait() {
                // The log is whole once the readers reach the end of the pipes.
                for closed in [Some(&stderr_closed), log_stdout_closed.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    let _ = closed.recv_timeout(PIPE_CLOSE_TIMEOUT);
                }
                daemon.fail(format!(
                    "guard daemon exited ({status}) before logging {READY_LINE:?}\n\
                     command: {cmd:?}"
                ));
            }
            if start.elapsed() > scaled(READY_TIMEOUT) {
                daemon.kill();
                daemon.fail(format!(
                    "guard daemon did not log {READY_LINE:?} within {:?}\n\
                     command: {cmd:?}",
                    scaled(READY_TIMEOUT)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket_path
    }

    /// `guard report SESSION --json` from this daemon.
    pub fn report(&self, session: &str) -> Value {
        serde_json::from_str(&self.report_text(session, true)).expect("JSON report")
    }

    /// `guard report SESSION` from this daemon: Markdown, or JSON with `json`.
    pub fn report_text(&self, session: &str, json: bool) -> String {
        let mut args = vec!["report", session];
        if json {
            args.push("--json");
        }
        self.client(&args)
    }

    /// `guard status --json` from this daemon.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.client(&["status", "--json"]))
            .expect("guard status --json prints JSON")
    }

    /// [`guard`]`(args… --socket <this daemon's>)`: a client command's output.
    pub fn client(&self, args: &[&str]) -> String {
        let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        argv.push(OsStr::new("--socket"));
        argv.push(self.socket().as_os_str());
        guard(&argv)
    }

    /// The daemon's pid (None once it was stopped), to signal it (SIGHUP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its pin directory.
    pub fn pins(&self) -> &Arc<PinDir> {
        &self.pins
    }

    /// Waits for the daemon to exit on its own (something else killed it), up to
    /// [`STOP_TIMEOUT`]; fails the test if it still runs.
    pub fn wait_exited(&mut self) -> ExitStatus {
        let _w = watch::waiting("the daemon to exit");
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return status;
            }
            if start.elapsed() > scaled(STOP_TIMEOUT) {
                self.fail(format!(
                    "guard daemon still runs {:?} after it should have been killed",
                    scaled(STOP_TIMEOUT)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The events file (None with [`EventsTo::Stdout`]).
    pub fn events_path(&self) -> Option<&Path> {
        self.events_path.as_deref()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the daemon wrote on stderr (and on stdout, prefixed, when the events go
    /// to a file) so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// The events written so far: every complete line of the events file (or of stdout),
    /// parsed. A line that is not a JSON object fails the test.
    pub fn events(&self) -> Vec<Event> {
        let (bytes, source) = match &self.events_path {
            Some(path) => match fs::read(path) {
                Ok(bytes) => (bytes, path.display().to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), String::new()),
                Err(e) => panic!("read {}: {e}", path.display()),
            },
            None => {
                let bytes = self.stdout.lock().map(|b| b.clone()).unwrap_or_default();
                (bytes, "the daemon's stdout".to_owned())
            }
        };
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("the events in {source} are not UTF-8: {e}"));
        // A last line without its newline may still be being written.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| match serde_json::from_str::<Value>(line) {
                Ok(value) if value.is_object() => Event {
                    value,
                    line: line.to_owned(),
                },
                Ok(_) => panic!("events line {} is not a JSON object: {line}", n + 1),
                Err(e) => panic!("events line {} is not JSON ({e}): {line}", n + 1),
            })
            .collect()
    }

    /// Polls the events until `done` holds (up to [`EVENT_TIMEOUT`]) and returns them.
    /// Fails the test, with the events and the daemon's log, on timeout or if the daemon exits.
    pub fn wait_for(&mut self, what: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let _w = watch::waiting(what);
        let start = Instant::now();
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if let Some(status) = self.try_wait() {
                self.fail(format!(
                    "guard daemon exited ({status}) while waiting for {what}\n{}",
                    dump(&events)
                ));
            }
            if start.elapsed() > scaled(EVENT_TIMEOUT) {
                self.fail(format!(
                    "timed out after {:?} waiting for {what}\n{}",
                    scaled(EVENT_TIMEOUT),
                    dump(&events)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Watches the events for `window` and fails the test, with the events, as soon as
    /// `bad` finds `what` in them; returns the events seen at the end of the window.
    ///
    /// For what must not happen, which no event can announce: the window is as long as
    /// the daemon would take to do it (a number of its one-second beats).
    pub fn never_within(
        &mut self,
        what: &str,
        window: Duration,
        bad: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let _w = watch::waiting(format!("{window:?} to pass without {what}"));
        let start = Instant::now();
        loop {
            let events = self.events();
            if bad(&events) {
                self.fail(format!(
                    "{what} within {:?}\n{}",
                    start.elapsed(),
                    dump(&events)
                ));
            }
            if let Some(status) = self.try_wait() {
                self.fail(format!(
                    "guard daemon exited ({status}) while watching that it does not do {what}\n{}",
                    dump(&events)
                ));
            }
            if start.elapsed() >= window {
                return events;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits for the daemon to exit (SIGKILL after [`STOP_TIMEOUT`]).
    /// Returns how it exited; fails the test if it had to be killed.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// [`Daemon::stop`] with another signal (SIGINT).
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        assert!(self.child.is_some(), "the daemon was already stopped");
        match self.terminate(signal) {
            Ok(status) => status,
            Err(e) => self.fail(e),
        }
    }

    /// `signal`, then SIGKILL if it has not exited after [`STOP_TIMEOUT`]. Never panics.
    fn terminate(&mut self, signal: libc::c_int) -> Result<ExitStatus, String> {
        let Some(child) = self.child.as_mut() else {
            return Err("the daemon was already stopped".to_owned());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, signal) };
        let _w = watch::waiting(format!("the daemon to exit after signal {signal}"));
        let start = Instant::now();
        loop {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => {
                    self.child = None;
                    if let Some(closed) = &self.stdout_closed {
                        // Every event it wrote on stdout is read once the pipe is closed.
                        let _ = closed.recv_timeout(Duration::from_secs(5));
                    }
                    return Ok(status);
                }
                Some(Ok(None)) => {}
                Some(Err(e)) => {
                    self.kill();
                    return Err(format!("waitpid on the daemon: {e}"));
                }
                None => return Err("the daemon was already stopped".to_owned()),
            }
            if start.elapsed() > scaled(STOP_TIMEOUT) {
                self.kill();
                return Err(format!(
                    "guard daemon did not exit within {:?} of signal {signal}; \
                     killed it",
                    scaled(STOP_TIMEOUT)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon, checks that it exited 0, and returns the final events.
    pub fn stop_ok(&mut self) -> Vec<Event> {
        let status = self.stop();
        if !status.success() {
            self.fail(format!(
                "guard daemon exited with {status} after SIGTERM (expected 0)"
            ));
        }
        self.events()
    }

    /// Fails the test with `msg` and the end of the daemon's log.
    pub fn fail(&mut self, msg: String) -> ! {
        self.log_shown = true;
        panic!("{msg}\n{}\n{}", self.log_tail(), watch::state());
    }

    /// The log, framed, for failure messages: its first and last lines if it is long
    /// (`GUARD_E2E_FULL_LOG=1` shows all of it).
    pub fn log_tail(&self) -> String {
        const HEAD: usize = 30;
        const TAIL: usize = 120;
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = String::from("--- guard daemon log ---\n");
        if lines.len() <= HEAD + TAIL || env::var_os("GUARD_E2E_FULL_LOG").is_some() {
            lines.iter().for_each(|line| out.extend([line, "\n"]));
        } else {
            lines[..HEAD]
                .iter()
                .for_each(|line| out.extend([line, "\n"]));
            let left_out = lines.len() - HEAD - TAIL;
            let _ = writeln!(
                out,
                "[... {left_out} lines left out; GUARD_E2E_FULL_LOG=1 shows them]"
            );
            lines[lines.len() - TAIL..]
                .iter()
                .for_each(|line| out.extend([line, "\n"]));
        }
        out.push_str("--- end of guard daemon log ---");
        out
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("waitpid on the daemon")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if watch::reap(&mut child, scaled(STOP_TIMEOUT)).is_none() {
                let _ = writeln!(
                    io::stderr().lock(),
                    "guard daemon {} was not reaped {:?} after SIGKILL\n{}",
                    child.id(),
                    scaled(STOP_TIMEOUT),
                    watch::state()
                );
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.terminate(libc::SIGTERM)
        {
            eprintln!("{e}");
        }
        if thread::panicking() && !self.log_shown {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// Appends every line read from `from` to `log` (with `prefix`), on a thread; signals
/// the receiver at the end.
fn collect_lines(
    from: impl Read + Send + 'static,
    prefix: &'static str,
    log: &Arc<Mutex<String>>,
) -> mpsc::Receiver<()> {
    let log = Arc::clone(log);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut log) = log.lock() {
                let _ = writeln!(log, "{prefix}{line}");
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Appends everything read from `from` to `buf`, on a thread; signals the receiver at the end.
fn collect_bytes(
    mut from: impl Read + Send + 'static,
    buf: &Arc<Mutex<Vec<u8>>>,
) -> mpsc::Receiver<()> {
    let buf = Arc::clone(buf);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut buf) = buf.lock() {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Accepts the one connection the agent made (already queued) and reads it to the end.
pub fn accept_and_read(listener: &std::net::TcpListener) -> String {
    listener.set_nonblocking(true).expect("set_nonblocking");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no connection on {:?}: {e}", listener.local_addr()),
        }
    };
    stream.set_nonblocking(false).expect("set_nonblocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set_read_timeout");
    let mut data = String::new();
    Read::read_to_string(&mut stream, &mut data).expect("read what the agent sent");
    data
}

/// Replaces the policy file `path` with `text` at once (write aside, then rename), so
/// that the daemon's file watcher never reads half a policy.
pub fn write_policy(path: &Path, text: &str) {
    let aside = path.with_extension("writing");
    fs::write(&aside, text).unwrap_or_else(|e| panic!("write {}: {e}", aside.display()));
    fs::rename(&aside, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// Runs `guard ARGS…` (a client command) and returns what it printed; fails the
/// test with its stderr when it fails.
pub fn guard(args: &[&OsStr]) -> String {
    let out = watch::output(Command::new(guard_bin()).args(args), scaled(RUN_TIMEOUT));
    assert!(
        out.status.success(),
        "guard {args:?} failed ({})\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A daemon enforcing a policy for one fresh agent, with a directory of the test's
/// own: the fixture of the tests that each try one way around a rule.
pub struct Enforcing {
    pub agent: FakeAgent,
    pub dir: TempDir,
    pub daemon: Daemon,
    /// The daemon's first `policy_loaded` event.
    pub loaded: Event,
    /// Whether BPF-LSM deny is in force (`deny` refuses with EPERM), else `deny`
    /// acts as kill.
    pub lsm: bool,
    /// When the fixture started, for [`check_schema`].
    pub since: SystemTime,
}

impl Enforcing {
    /// The outcome of a `deny` rule's event here: `denied` where BPF-LSM refuses,
    /// else `killed`.
    pub fn deny_outcome(&self) -> &'static str {
        if self.lsm { "denied" } else { "killed" }
    }

    /// Whether BPF-LSM refuses `action` here, all of it (its `enforcement` row in
    /// `policy_loaded`: `route_raw_sockets`, `unix_socket_deny`, …): a refusal with
    /// EPERM, else the action's fallback. Linux 5.10 has some of BPF-LSM's hooks
    /// and not others.
    pub fn denies(&self, action: &str) -> bool {
        bpf_lsm_deny_of(&self.loaded, &[action]).is_ok()
    }

    /// The outcome of `action`'s events here: `denied` where BPF-LSM refuses it,
    /// else `killed`.
    pub fn outcome_of(&self, action: &str) -> &'static str {
        if self.denies(action) {
            "denied"
        } else {
            "killed"
        }
    }

    /// Writes `mode = "enforce"`, the agent's name and `rules` (with `{dir}` the
    /// test's directory, made under `/tmp` with `prefix`) as the policy, after
    /// `prepare` has set up the directory; starts the daemon and waits for the
    /// policy to be in force. `fake_agent` is [`fake_agent_exe!()`].
    pub fn start(
        fake_agent: &str,
        prefix: &str,
        rules: &str,
        prepare: impl FnOnce(&TempDir),
    ) -> Self {
        let since = SystemTime::now();
        let agent = FakeAgent::install(fake_agent);
        let dir = TempDir::new(prefix);
        prepare(&dir);
        let rules = rules.replace("{dir}", &dir.path().display().to_string());
        let text = format!(
            "mode = \"enforce\"\n\n[agents]\nnames = [\"{}\"]\n\n{rules}",
            agent.name()
        );
        Self::start_text(agent, dir, &text, since)
    }

    /// [`Self::start`] with the built-in policy `name` (`workstation`, `ci`) as it
    /// ships, its agents' names replaced by the fresh agent's.
    pub fn start_builtin(
        fake_agent: &str,
        prefix: &str,
        name: &str,
        prepare: impl FnOnce(&TempDir),
    ) -> Self {
        let since = SystemTime::now();
        let agent = FakeAgent::install(fake_agent);
        let dir = TempDir::new(prefix);
        prepare(&dir);
        let builtin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../guard-policy/policies/{name}.toml"));
        let shipped = fs::read_to_string(&builtin)
            .unwrap_or_else(|e| panic!("read {}: {e}", builtin.display()));
        let names = "\nnames = [\"codex\", \"claude\", \"gemini\", \"copilot\"]\n";
        assert!(
            shipped.contains(names),
            "{name}: its [agents] names changed"
        );
        let text = shipped.replace(names, &format!("\nnames = [\"{}\"]\n", agent.name()));
        Self::start_text(agent, dir, &text, since)
    }

    /// Writes `text` as the policy in `dir`, starts the daemon and waits for the
    /// policy to be in force.
    fn start_text(agent: FakeAgent, dir: TempDir, text: &str, since: SystemTime) -> Self {
        let policy = dir.join("guard.toml");
        write_policy(&policy, text);
        let args = [OsStr::new("--policy"), policy.as_os_str()];
        let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
        let events = daemon.wait_for("policy_loaded", |ev| {
            ev.iter().any(|e| e.kind() == "policy_loaded")
        });
        let loaded = find(&events, "policy_loaded", |e| e.kind() == "policy_loaded").clone();
        let lsm = bpf_lsm_deny(&loaded).is_ok();
        Self {
            agent,
            dir,
            daemon,
            loaded,
            lsm,
            since,
        }
    }

    /// `rel` under the test's directory, as a string.
    pub fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// Runs `prog args…` as the agent's child and waits for the end of its session;
    /// returns the run and the daemon's events so far.
    pub fn run(&mut self, prog: &str, args: &[&str]) -> (Finished, Vec<Event>) {
        let mut argv = vec!["run", prog];
        argv.extend_from_slice(args);
        self.session(&argv)
    }

    /// Runs the agent with `args` (one of its scenarios), which must succeed, and
    /// waits for the end of its session; returns the run and the daemon's events so
    /// far.
    pub fn session(&mut self, args: &[&str]) -> (Finished, Vec<Event>) {
        let run = self.agent.run(args);
        let events = self
            .daemon
            .wait_for("the end of the session", session_ended(run.pid));
        (run, events)
    }

    /// [`Self::run`] of `sh -c script` (`{dir}` expanded).
    pub fn sh(&mut self, script: &str) -> (Finished, Vec<Event>) {
        let script = script.replace("{dir}", &self.dir.path().display().to_string());
        self.run("sh", &["-c", &script])
    }

    /// [`Self::run`] of a Python program (`{dir}` expanded).
    pub fn python(&mut self, script: &str) -> (Finished, Vec<Event>) {
        let script = script.replace("{dir}", &self.dir.path().display().to_string());
        self.run("python3", &["-c", &script])
    }

    /// The events of the session of the agent run `run`.
    pub fn of_run<'e>(events: &'e [Event], run: &Finished) -> Vec<&'e Event> {
        let session = events
            .iter()
            .find(|e| e.kind() == "session_start" && e.int("root_pid") == Some(run.pid))
            .and_then(Event::session)
            .unwrap_or_else(|| panic!("no session of {}:\n{}", run.pid, dump(events)));
        events
            .iter()
            .filter(|e| e.session() == Some(session))
            .collect()
    }

    /// Stops the daemon and checks every process event it wrote against the
    /// schema.
    pub fn finish(mut self) {
        let events = self.daemon.stop_ok();
        let process: Vec<Event> = events
            .into_iter()
            .filter(|e| !e.kind().starts_with("policy_"))
            .collect();
        check_schema(&process, self.since);
    }
}

/// Python has no `sendmmsg`: the C types a script passes to libc's (`libc`,
/// `iovec`, `msghdr`, `mmsghdr`), to put before it.
pub const PY_SENDMMSG_TYPES: &str = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
"#;

/// Debian's Python HTTP server on a loopback port of its choosing, serving `root`;
/// stopped when dropped.
pub struct HttpServer {
    child: Child,
    pub port: u16,
}

impl HttpServer {
    pub fn serve(root: &Path, log: &Path) -> Self {
        let out = fs::File::create(log).expect("the server's log");
        let child = Command::new(python3())
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .arg("0")
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let port = || -> Option<u16> {
            let text = fs::read_to_string(log).ok()?;
            text.split(" port ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        wait_until("the HTTP server's port", Duration::from_secs(30), || {
            port().is_some()
        });
        Self {
            child,
            port: port().expect("the port"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python interpreter `python3` on PATH runs, by its own path: a version
/// manager's shim (pyenv) picks a version by the working directory and runs a few
/// dozen processes first, neither of which a test's session should depend on.
pub fn python3() -> &'static str {
    static PYTHON3: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON3.get_or_init(|| {
        let out = watch::output(
            Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .current_dir("/"),
            scaled(RUN_TIMEOUT),
        );
        assert!(out.status.success(), "python3: {out:?}");
        let exe = String::from_utf8(out.stdout).expect("a UTF-8 path");
        let exe = exe.trim();
        assert!(
            exe.starts_with('/'),
            "python3 names no interpreter: {exe:?}"
        );
        exe.to_owned()
    })
}

/// A copy of the `guard-fake-agent` binary under a unique name of at most 15 bytes.
pub struct FakeAgent {
    _dir: TempDir,
    name: String,
    path: PathBuf,
}

impl FakeAgent {
    /// Copies `exe` (pass [`fake_agent_exe!()`]) into a new temp dir as `ga` + 8 hex digits.
    pub fn install(exe: &str) -> Self {
        let dir = TempDir::new("guard-e2e-agent");
        let name = unique_name("ga");
        let path = dir.join(&name);
        let _w = watch::waiting(format!("{exe} copied"));
        fs::copy(exe, &path).unwrap_or_else(|e| panic!("copy {exe} to {}: {e}", path.display()));
        Self {
            _dir: dir,
            name,
            path,
        }
    }

    /// The name (and `comm`) it runs under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its absolute, canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The agent's command. Python's `print(…, flush=True)` in its scripts is one
    /// write, the report with its line end, unless `PYTHONUNBUFFERED` is set (some
    /// machines set it): then a kill between the two writes leaves a report without
    /// its newline, joined to the next one.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.env_remove("PYTHONUNBUFFERED");
        cmd
    }

    /// Starts a scenario in its own process group.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut cmd = self.command();
        cmd.args(args);
        Running::spawn_group(cmd)
    }

    /// Runs a scenario to the end and checks that it succeeded.
    pub fn run(&self, args: &[&str]) -> Finished {
        let finished = self.spawn(args).finish();
        finished.assert_success();
        finished
    }

    /// [`Self::spawn`] with `dir` as the working directory.
    pub fn spawn_in(&self, dir: &Path, args: &[&str]) -> Running {
        let mut cmd = self.command();
        cmd.args(args).current_dir(dir);
        Running::spawn_group(cmd)
    }
}

/// A running process whose stdout and stderr are collected; its process group is killed
/// on drop if it is still running.
pub struct Running {
    child: Option<Child>,
    what: String,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    /// Its process group in the test's registry, when it leads one.
    _group: Option<watch::Entry>,
}

impl Running {
    /// Spawns `cmd` in a process group of its own, stdin closed, stdout and stderr
    /// collected.
    pub fn spawn_group(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Cargo's LD_LIBRARY_PATH only makes the dynamic loader of every process in the
            // tree try dozens of paths, each an open event; the programs need no more than libc.
            .env_remove("LD_LIBRARY_PATH")
            .process_group(0);
        let mut running = Self::spawn(cmd);
        running._group = Some(watch::own_group(running.pid() as i32));
        running
    }

    /// Spawns `cmd`, which must have piped stdout and stderr.
    pub fn spawn(mut cmd: Command) -> Self {
        let what = format!("{cmd:?}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = read_all(child.stdout.take().expect("piped stdout"));
        let err = read_all(child.stderr.take().expect("piped stderr"));
        Self {
            child: Some(child),
            what,
            out,
            err,
            _group: None,
        }
    }

    pub fn pid(&self) -> i64 {
        i64::from(self.child.as_ref().expect("not finished").id())
    }

    /// Waits for it to exit and for its stdout and stderr to close (that is, for every
    /// process that inherited them to exit too), up to [`RUN_TIMEOUT`].
    pub fn finish(mut self) -> Finished {
        let mut child = self.child.take().expect("not finished");
        let pid = i64::from(child.id());
        let deadline = Instant::now() + scaled(RUN_TIMEOUT);
        let _w = watch::waiting(format!("{} to finish", self.what));
        let status = loop {
            if let Some(status) = child.try_wait().expect("waitpid") {
                break status;
            }
            if Instant::now() > deadline {
                let state = watch::state();
                kill_group(&mut child);
                panic!(
                    "{} did not finish within {:?}\n{state}",
                    self.what,
                    scaled(RUN_TIMEOUT)
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let stdout = self.out.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "stdout of {} was not closed within {:?} (a process it started still holds it)\n{}",
                self.what,
                scaled(RUN_TIMEOUT),
                watch::state()
            )
        });
        let stderr = self
            .err
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        let reports = stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Finished {
            what: self.what.clone(),
            pid,
            status,
            stdout,
            stderr,
            reports,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_group(child);
        }
    }
}

fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: the child was spawned as the leader of its own process group and has not
        // been reaped, so the group id is still ours to signal.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    }
    if watch::reap(child, scaled(STOP_TIMEOUT)).is_none() {
        let _ = writeln!(
            io::stderr().lock(),
            "process {} was not reaped {:?} after SIGKILL\n{}",
            child.id(),
            scaled(STOP_TIMEOUT),
            watch::state()
        );
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// A process that has exited, with what it printed.
#[derive(Debug)]
pub struct Finished {
    pub what: String,
    pub pid: i64,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The `key=value` lines of stdout.
    pub reports: HashMap<String, String>,
}

impl Finished {
    /// The child's call was refused: with `denied` (BPF-LSM) it lived and reported
    /// EPERM under `key`; else it was killed (SIGKILL) before the call returned to
    /// it (nothing under `key`).
    pub fn assert_refused(&self, key: &str, denied: bool) {
        if denied {
            assert_eq!(self.report(key), i64::from(libc::EPERM), "{self:?}");
        } else {
            assert_eq!(
                self.report("child_signal"),
                i64::from(libc::SIGKILL),
                "{self:?}"
            );
            assert!(
                !self.reports.contains_key(key),
                "the call returned to the process: {self:?}"
            );
        }
    }

    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{} failed ({})\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The integer it reported as `key=<n>`.
    pub fn report(&self, key: &str) -> i64 {
        let value = self.reports.get(key).unwrap_or_else(|| {
            panic!(
                "{} did not report {key}=...\nstdout:\n{}",
                self.what, self.stdout
            )
        });
        value
            .parse()
            .unwrap_or_else(|e| panic!("{key}={value}: {e}"))
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

/// Checks every event against the schema: the common fields and those of its kind, and a
/// `ts` between `since` (minus a minute of slack) and now (plus a minute). Fails the test
/// with every violation found.
pub fn check_schema(events: &[Event], since: SystemTime) {
    let _w = watch::waiting(format!("the schema of {} events checked", events.len()));
    let lo = unix_secs(since) - 60;
    let hi = unix_secs(SystemTime::now()) + 60;
    let mut problems = String::new();
    for event in events {
        let errors = schema_errors(event, lo, hi);
        if !errors.is_empty() {
            let _ = writeln!(problems, "  {event}\n    -> {}", errors.join("; "));
        }
    }
    assert!(
        problems.is_empty(),
        "events that break the schema:\n{problems}"
    );
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[expect(
    clippy::too_many_lines,
    reason = "the whole event schema in one place: the common fields' checks, then one match arm per event kind"
)]
fn schema_errors(e: &Event, ts_lo: i64, ts_hi: i64) -> Vec<String> {
    let mut errors = Vec::new();
    let mut need = |ok: bool, msg: &str| {
        if !ok {
            errors.push(msg.to_owned());
        }
    };
    let v = &e.value;
    let is_int = |key: &str| v.get(key).is_some_and(|x| x.is_i64() || x.is_u64());
    let is_str = |key: &str| v.get(key).is_some_and(Value::is_string);

    // The line is the protocol's `EventLine` byte for byte: read as that type and
    // written again by serde, it is the line the daemon wrote. A field the type
    // lacks, one of another type, one out of order, or a field it always writes
    // that is missing would each change it.
    match serde_json::from_str::<EventLine>(&e.line) {
        Ok(line) if matches!(line.detail, EventDetail::Other) => {
            need(false, "a kind EventLine does not know");
        }
        Ok(line) => need(
            serde_json::to_string(&line).ok().as_deref() == Some(e.line.trim_end()),
            "read as EventLine and written again, it differs",
        ),
        Err(_) => need(false, "not an EventLine"),
    }
    need(v.get("schema") == Some(&Value::from(2)), "schema is not 2");
    match e.str("ts").map(parse_rfc3339) {
        None => need(false, "ts is not a string"),
        Some(None) => need(false, "ts is not RFC 3339"),
        Some(Some(secs)) => need(
            (ts_lo..=ts_hi).contains(&secs),
            "ts is not the wall-clock time of the test run",
        ),
    }
    let kind = e.kind();
    need(EventDetail::KINDS.contains(&kind), "unknown kind");
    // Events about the daemon itself carry no session and no process.
    let about_daemon = e.about_daemon();
    if about_daemon {
        need(v.get("pid").is_none(), "a daemon event carries a pid");
        need(
            v.get("session").is_none(),
            "a daemon event carries a session",
        );
    }
    if !about_daemon {
        need(
            e.session()
                .is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())),
            "session is not 16 hex digits",
        );
        need(
            e.pid().is_some_and(|p| p > 0),
            "pid is not a positive integer",
        );
        need(
            e.int("tid").is_some_and(|t| t > 0),
            "tid is not a positive integer",
        );
        need(
            e.str("comm").is_some_and(|c| c.len() <= 15),
            "comm is not a string of <= 15 bytes",
        );
        need(
            v.get("thread").is_none_or(|t| {
                t.as_str()
                    .is_some_and(|t| t.len() <= 15 && Some(t) != e.str("comm"))
            }),
            "thread is not a string of <= 15 bytes other than comm",
        );
        need(
            e.str("role").is_some_and(|r| {
                [
                    "wrapper", "agent", "sandbox", "tool", "mcp", "helper", "delegate", "unknown",
                ]
                .contains(&r)
            }),
            "role is not one of the roles",
        );
        need(
            v.get("agent_thread")
                .is_none_or(|t| t.as_str().is_some_and(|t| !t.is_empty() && t.len() < 48)),
            "agent_thread is not a non-empty string of < 48 bytes",
        );
    }
    let result_ok = e.str("result") == Some("ok");
    match kind {
        "exec" => {
            need(
                e.str("exe")
                    .is_some_and(|p| p.starts_with('/') || p.starts_with("memfd:")),
                "exe is neither an absolute path nor memfd:NAME",
            );
            need(
                v.get("via").is_none_or(|_| {
                    matches!(e.str("via"), Some("loader" | "interpreter" | "applet"))
                        && is_str("target")
                }),
                "via is not loader/interpreter/applet with a target",
            );
            need(
                e.get("redacted").is_none() || e.bool("redacted") == Some(true),
                "redacted is present and not true",
            );
            need(
                v.get("agent_version")
                    .is_none_or(|_| is_str("agent_version") && e.str("role") == Some("agent")),
                "agent_version is there but not a string on an agent's exec",
            );
            need(
                v.get("agent")
                    .is_none_or(|_| is_str("agent") && e.str("role") == Some("agent")),
                "agent is there but not a string on an agent's exec",
            );
            need(
                v.get("held").is_none() || e.bool("held") == Some(true),
                "held is present and not true",
            );
            need(
                v.get("digest").is_none_or(|_| {
                    e.bool("held") == Some(true)
                        && e.str("digest").is_some_and(|d| {
                            d.strip_prefix("sha256:").is_some_and(|h| {
                                h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
                            })
                        })
                }),
                "digest is there but not sha256:<64 hex> on a held exec",
            );
        }
        "open" => {
            need(
                e.str("path").is_some_and(|p| p.starts_with('/')),
                "path is not absolute",
            );
            need(
                e.strings("access").is_some_and(|a| {
                    a.iter()
                        .all(|x| ["read", "write", "create", "truncate"].contains(x))
                }),
                "access is not an array of read/write/create/truncate",
            );
            // The changes after `creat` are refusals by BPF-LSM path hooks.
            const CALLS: [&str; 13] = [
                "open", "openat", "openat2", "creat", "mkdir", "rmdir", "unlink", "rename", "link",
                "symlink", "truncate", "chmod", "chown",
            ];
            let call = e.str("call");
            need(
                call.is_some_and(|c| CALLS.contains(&c)),
                "call is not an open or a refused change",
            );
            need(
                call.is_none_or(|c| CALLS[..4].contains(&c))
                    || (e.str("result") == Some("EPERM") && e.str("outcome") == Some("denied")),
                "a change other than an open is reported only as a refusal",
            );
            if result_ok {
                need(
                    e.int("fd").is_some_and(|fd| fd >= 0),
                    "fd is missing on success",
                );
            } else {
                need(
                    e.int("errno").is_some_and(|n| n > 0),
                    "errno is missing on failure",
                );
            }
        }
        "connect" | "send" => {
            need(
                e.int("port").is_some_and(|p| (0..=65535).contains(&p)),
                "port is not a port",
            );
            need(
                matches!(e.str("proto"), Some("tcp" | "udp")),
                "proto is not tcp/udp",
            );
            need(
                matches!(e.str("family"), Some("ipv4" | "ipv6")),
                "family is not ipv4/ipv6",
            );
            if !result_ok && e.str("result") != Some("EINPROGRESS") {
                need(
                    e.int("errno").is_some_and(|n| n > 0),
                    "errno is missing on failure",
                );
            }
        }
        "flow" => {
            need(
                e.int("port").is_some_and(|p| (0..=65535).contains(&p)),
                "port is not a port",
            );
            need(
                matches!(e.str("proto"), Some("tcp" | "udp")),
                "proto is not tcp/udp",
            );
            need(
                matches!(e.str("family"), Some("ipv4" | "ipv6")),
                "family is not ipv4/ipv6",
            );
            for key in ["bytes_out", "bytes_in", "packets_out", "packets_in"] {
                need(e.int(key).is_some_and(|n| n >= 0), "a count is not a count");
            }
            need(
                matches!(e.str("reason"), Some("periodic" | "close" | "redirect")),
                "reason is not periodic/close/redirect",
            );
            need(
                matches!(
                    e.str("dest_class"),
                    Some("local" | "model" | "registry" | "code_host" | "allowlisted" | "other")
                ),
                "dest_class is not a class",
            );
        }
        "fork" => need(
            e.int("child_pid").is_some_and(|p| p > 0),
            "child_pid is not a pid",
        ),
        "route" => {
            need(
                matches!(
                    e.str("route"),
                    Some(
                        "io_uring"
                            | "open_by_handle_at"
                            | "raw_socket"
                            | "packet_socket"
                            | "exec_mapping"
                            | "listen"
                            | "fileless_exec"
                    )
                ),
                "route is not a known route",
            );
            // A memfd is named `memfd:NAME`, without a leading slash.
            need(
                v.get("path").is_none_or(|_| {
                    e.str("path")
                        .is_some_and(|p| p.starts_with('/') || p.starts_with("memfd:"))
                }),
                "path is there but not absolute (nor a memfd's name)",
            );
            // A listen names what was bound; no other route does.
            need(
                (e.str("route") == Some("listen"))
                    == (e
                        .str("addr")
                        .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok())
                        && e.int("port").is_some()),
                "a listen without its address and port (or another route with them)",
            );
            need(
                matches!(e.str("result"), Some("killed" | "EPERM"))
                    || (matches!(e.str("route"), Some("fileless_exec" | "listen")) && result_ok),
                "result is not killed or EPERM (or ok for a fileless exec or a listen only \
                 reported)",
            );
            need(e.str("rule").is_some(), "a route event names no rule");
        }
        "dns" => {
            need(
                matches!(e.str("direction"), Some("query" | "answer")),
                "direction is not query/answer",
            );
            need(
                e.int("port").is_some_and(|p| (0..=65535).contains(&p)),
                "port is not a port",
            );
            need(
                e.str("name").is_none_or(|n| n.chars().count() <= 64),
                "a name longer than 64 characters was written whole",
            );
        }
        "unix" => {
            need(
                e.str("path")
                    .is_some_and(|p| p.starts_with('/') || p.starts_with('@')),
                "path is not absolute nor an abstract @name",
            );
            need(
                matches!(
                    e.str("call"),
                    Some("connect" | "sendto" | "sendmsg" | "sendmmsg" | "send")
                ),
                "call is not connect, sendto, sendmsg, sendmmsg or send",
            );
            need(
                matches!(
                    e.str("socket"),
                    Some("stream" | "dgram" | "seqpacket" | "unknown")
                ),
                "socket is not a socket type",
            );
            need(e.str("result").is_some(), "no result");
        }
        "exit" => {
            need(
                is_int("exit_code") || is_int("signal"),
                "neither exit_code nor signal",
            );
        }
        "session_start" => {
            need(
                e.int("root_pid").is_some_and(|p| p > 0),
                "root_pid is not a pid",
            );
            need(
                matches!(e.str("how"), Some("exec" | "container" | "run" | "scan")),
                "how is not exec/container/run/scan",
            );
            need(
                e.get("repository").is_none_or(|r| {
                    r.as_object().is_some_and(|o| {
                        o.iter().all(|(k, v)| {
                            matches!(k.as_str(), "url" | "branch" | "commit" | "root" | "note")
                                && v.is_string()
                        })
                    })
                }),
                "repository is not an object of url, branch, commit, root and note strings",
            );
        }
        "session_end" => {
            need(
                e.int("root_pid").is_some_and(|p| p > 0),
                "root_pid is not a pid",
            );
            need(
                e.ints("stragglers").is_some(),
                "stragglers is not an array of pids",
            );
        }
        "tool_call" => {
            need(
                e.str("tool_call").is_some_and(|c| !c.is_empty()),
                "tool_call is not a call id",
            );
            need(
                matches!(e.str("phase"), Some("start" | "end")),
                "phase is not start or end",
            );
        }
        "lost" => {
            need(
                v.get("by_kind").is_some_and(Value::is_object),
                "by_kind is not an object",
            );
        }
        "policy_loaded" => {
            need(
                e.str("mode")
                    .is_some_and(|m| m == "enforce" || m == "observe"),
                "mode is not enforce or observe",
            );
            need(
                v.get("enforcement")
                    .and_then(Value::as_array)
                    .is_some_and(|rows| {
                        !rows.is_empty()
                            && rows.iter().all(|r| {
                                ["action", "tier", "guarantee"]
                                    .iter()
                                    .all(|k| r.get(k).is_some_and(Value::is_string))
                            })
                    }),
                "enforcement is not a list of {action, tier, guarantee}",
            );
        }
        "policy_rejected" => {}
        _ => {}
    }
    errors
}

/// Seconds since the epoch of an RFC 3339 timestamp such as `2025-01-02T03:04:05.123456789Z`
/// or `...+01:00`; None if it is not one.
pub fn parse_rfc3339(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = ts.get(from..from + len)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let sep = |at: usize, chars: &[u8]| b.get(at).is_some_and(|c| chars.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &ts[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let secs = num(ts.len() - 5, 2)? * 3600 + num(ts.len() - 2, 2)? * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

/// Set by `cargo xtask vm-test` inside kernels that must run BPF-LSM: a test that
/// would skip for want of it fails instead.
pub const REQUIRE_LSM_ENV: &str = "GUARD_E2E_REQUIRE_LSM";

/// The line a skipped test prints; `cargo xtask vm-test` fails a kernel whose run
/// printed it where the feature is expected.
pub const SKIP_PREFIX: &str = "SKIPPED:";

/// Whether BPF-LSM deny is in force, from the daemon's `policy_loaded` event: `Err`
/// carries the daemon's reason. Its `enforcement` rows say which tier each operation
/// runs on (`bpf_lsm` for refusals in the kernel, with no `fallback_reason` when the
/// tier is complete).
pub fn bpf_lsm_deny(loaded: &Event) -> Result<(), String> {
    bpf_lsm_deny_of(loaded, &["exec_deny", "file_read_deny", "file_write_deny"])
}

/// [`bpf_lsm_deny`] for `actions` only (`file_read_deny`: Linux 5.10 refuses reads
/// with BPF-LSM but has no chown hook for writes).
pub fn bpf_lsm_deny_of(loaded: &Event, actions: &[&str]) -> Result<(), String> {
    for action in actions {
        let r = enforcement_row(loaded, action);
        let full = r.get("tier").and_then(Value::as_str) == Some("bpf_lsm")
            && r.get("fallback_reason").is_none_or(Value::is_null);
        if !full {
            return Err(format!("{action}: {r}"));
        }
    }
    Ok(())
}

/// The `policy_loaded` event's `enforcement` row of `action` (`file_write_deny`, …).
pub fn enforcement_row<'a>(loaded: &'a Event, action: &str) -> &'a Value {
    loaded
        .get("enforcement")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("policy_loaded has no enforcement rows: {loaded}"))
        .iter()
        .find(|r| r.get("action").and_then(Value::as_str) == Some(action))
        .unwrap_or_else(|| panic!("enforcement has no {action} row: {loaded}"))
}

/// Whether the running kernel is `major.minor` or later.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("read osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// For a test that needs BPF-LSM: true when it is in force; otherwise prints why the
/// test is skipped and returns false, or fails the test where `REQUIRE_LSM_ENV` says
/// this kernel must have it.
pub fn lsm_or_skip(test: &str, loaded: &Event) -> bool {
    lsm_or_skip_of(
        test,
        loaded,
        &["exec_deny", "file_read_deny", "file_write_deny"],
    )
}

/// [`lsm_or_skip`] for BPF-LSM's deny of `actions` only.
pub fn lsm_or_skip_of(test: &str, loaded: &Event, actions: &[&str]) -> bool {
    match bpf_lsm_deny_of(loaded, actions) {
        Ok(()) => true,
        Err(why) if env::var_os(REQUIRE_LSM_ENV).is_some() => {
            panic!("{test}: BPF-LSM deny is required on this kernel but not in force: {why}")
        }
        Err(why) => {
            // A kernel without BPF-LSM is not a missing tool: this skip needs no
            // GUARD_E2E_ALLOW_SKIP (see `skip`); vm-test fails it where the kernel
            // must have BPF-LSM.
            record_skip(
                test,
                &format!("BPF-LSM deny is not in force on this kernel ({why})"),
            );
            false
        }
    }
}

/// A network namespace of the test's own (`ip netns add`), with only its loopback up,
/// deleted at drop: programs that would talk to the world (a real agent's start-up
/// traffic) run in it and reach nothing but the test's own listeners there.
pub struct NetNs {
    name: String,
    _owned: watch::Entry,
}

impl NetNs {
    pub fn new() -> Self {
        let name = unique_name("gn");
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let out = watch::output(Command::new("ip").args(&args), scaled(RUN_TIMEOUT));
            assert!(
                out.status.success(),
                "ip {args:?}: {} {} (iproute2 is a test dependency)",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self {
            _owned: watch::own_netns(&name),
            name,
        }
    }

    /// `ip netns exec NAME program`: `program` runs in the namespace. `ip` by its
    /// path, so that a command with a cleared environment finds it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("ip");
        let mut cmd = Command::new(ip);
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Its name (`ip netns`, `/run/netns/NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread that joined the namespace (sockets it makes live there;
    /// the calling thread stays where it is).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|s| {
            s.spawn(|| {
                let ns = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a descriptor this thread owns; it changes only
                // this thread's network namespace.
                let rc = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET)
                };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread in the namespace panicked")
        })
    }
}

/// A veth pair between the host and a [`NetNs`]: `host` on the host's side,
/// `peer` in the namespace, a /30 of 10.200.0.0/16 of its own. Deleted at drop.
pub struct Veth {
    host_if: String,
    ns: String,
    pub host: std::net::Ipv4Addr,
    pub peer: std::net::Ipv4Addr,
    _owned: watch::Entry,
}

impl Veth {
    /// Takes the namespace's side down (`up` false: packets vanish, as in a
    /// partition) or up again.
    pub fn set_peer_up(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns, "link", "set", "veth0", state]);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = watch::output(Command::new("ip").args(args), scaled(RUN_TIMEOUT));
    assert!(
        out.status.success(),
        "ip {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// A veth pair from the host into this namespace, both ends up and addressed.
    pub fn veth(&self) -> Veth {
        let mut bytes = [0u8; 2];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("read /dev/urandom");
        let (a, b) = (bytes[0], bytes[1] & 0xfc);
        let host = std::net::Ipv4Addr::new(10, 200, a, b + 1);
        let peer = std::net::Ipv4Addr::new(10, 200, a, b + 2);
        let host_if = unique_name("gv");
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "veth0", "netns", &self.name,
        ]);
        let owned = watch::own_link(&host_if);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{peer}/30"),
            "dev",
            "veth0",
        ]);
        ip(&["-n", &self.name, "link", "set", "veth0", "up"]);
        Veth {
            host_if,
            ns: self.name.clone(),
            host,
            peer,
            _owned: owned,
        }
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, parse_rfc3339, schema_errors};

    /// The harness's schema check reads each line as `EventLine`: a line the type
    /// would write otherwise is flagged, whatever its fields' values.
    #[test]
    fn a_line_that_is_not_event_line_s_json_is_flagged() {
        let good = r#"{"schema":2,"ts":"2026-11-29T12:00:00.000000000Z","session":"00000000000000aa","pid":7,"ppid":1,"tid":7,"comm":"sh","role":"tool","uid":0,"user":"root","cgroup_id":1,"container":null,"kind":"fork","child_pid":8}"#;
        let at = parse_rfc3339("2026-11-29T12:00:00Z").unwrap();
        let errors = |line: &str| {
            let event = Event {
                value: serde_json::from_str(line).unwrap(),
                line: line.to_owned(),
            };
            schema_errors(&event, at - 60, at + 60)
        };
        assert_eq!(errors(good), Vec::<String>::new());
        let differs = "read as EventLine and written again, it differs".to_owned();
        // A field the type lacks, a field out of its order, one it always writes missing.
        let extra = good.replace(r#""child_pid":8"#, r#""child_pid":8,"bogus":1"#);
        let moved = good.replace(r#""ppid":1,"tid":7"#, r#""tid":7,"ppid":1"#);
        let missing = good.replace(r#""cgroup_id":1,"#, "");
        for line in [extra, moved, missing] {
            assert!(errors(&line).contains(&differs), "{line}");
        }
        let typed = good.replace(r#""child_pid":8"#, r#""child_pid":"8""#);
        assert!(errors(&typed).contains(&"not an EventLine".to_owned()));
        let unknown = good.replace(r#""kind":"fork""#, r#""kind":"teleport""#);
        assert!(errors(&unknown).contains(&"a kind EventLine does not know".to_owned()));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.123456789Z"),
            Some(1_709_210_096)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T13:34:56.5+01:00"),
            Some(1_709_210_096)
        );
        assert_eq!(parse_rfc3339("2024-02-29 12:34:56Z"), Some(1_709_210_096));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56"), None);
        assert_eq!(parse_rfc3339("1709210096"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }
}
