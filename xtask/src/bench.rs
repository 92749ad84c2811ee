//! `cargo xtask bench`: what guard costs the processes it watches, next to no
//! monitoring, empty programs on the same hooks, auditd, libbpf-tools and bpftrace.
//!
//! Every workload runs under every setup, interleaved (round by round, and within
//! a round workload by workload with the setups one after the other), so drift on
//! a shared machine hits all setups alike. Each measurement starts its setup fresh
//! (daemon or tracer attached and ready), runs the workload, then stops the setup.
//! The workload times itself (CLOCK_MONOTONIC around its loop), so starting and
//! stopping setups is not in the numbers.
//!
//! Every workload drops to a uid of its own, unused on the host, so the peers can
//! filter it and everything it starts in the kernel (guard follows the process tree
//! of a session instead). Then the capacity of the daemon (highest event rate with
//! zero loss) and the user-space kill latency are measured.
//!
//! Everything started is stopped on the way out, failure or Ctrl-C included: the
//! daemons and tracers (`Proc` kills on drop), the audit rules and settings
//! (`AuditState` restores on drop) and the temporary directory (`TempDir`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::util::{self, log};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Smoke run: 2 rounds, fewer iterations, short capacity steps; results go to
    /// target/bench-quick unless --out is given.
    #[arg(long)]
    pub quick: bool,
    /// Rounds, each running every workload under every setup once (default 9; 2 with
    /// --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Use the existing release binary (target/release/guard) instead of building it.
    #[arg(long)]
    pub no_build: bool,
    /// Do not apt-get install missing peers (auditd, libbpf-tools, bpftrace).
    #[arg(long)]
    pub no_install: bool,
    /// Skip the PNG chart (it needs a Python venv with matplotlib, made on first use).
    #[arg(long)]
    pub no_chart: bool,
    /// Where BENCHMARKS.md, bench-results.json and bench-ratios.png go
    /// (default: the workspace root; target/bench-quick with --quick).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Sizes of a run.
#[derive(Debug, Clone)]
struct Params {
    rounds: u32,
    open_n: u64,
    forkexec_n: u64,
    connect_n: u64,
    git_n: u64,
    build_n: u64,
    files: u64,
    changed: u64,
    cap_step_secs: u64,
    cap_start_rate: f64,
    cap_max_steps: u32,
    cap_procs: u32,
    kill_runs: u32,
}

impl Params {
    fn new(opts: &Options) -> Self {
        let (rounds, p) = if opts.quick {
            (
                2,
                Self {
                    rounds: 0,
                    open_n: 50_000,
                    forkexec_n: 200,
                    connect_n: 5_000,
                    git_n: 1,
                    build_n: 2,
                    files: 5_000,
                    changed: 1_000,
                    cap_step_secs: 2,
                    cap_start_rate: 100_000.0,
                    cap_max_steps: 6,
                    cap_procs: 2,
                    kill_runs: 10,
                },
            )
        } else {
            (
                9,
                Self {
                    rounds: 0,
                    open_n: 200_000,
                    forkexec_n: 1_000,
                    connect_n: 20_000,
                    git_n: 6,
                    build_n: 5,
                    files: 5_000,
                    changed: 1_000,
                    cap_step_secs: 4,
                    cap_start_rate: 50_000.0,
                    cap_max_steps: 12,
                    cap_procs: 2,
                    kill_runs: 50,
                },
            )
        };
        Self {
            rounds: opts.rounds.unwrap_or(rounds),
            ..p
        }
    }
}

// ---------------------------------------------------------------------------
// Setups and workloads
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Setup {
    None,
    Floor,
    GuardOutside,
    GuardInside,
    GuardEnforce,
    Auditd,
    LibbpfTools,
    Bpftrace,
}

const SETUPS: [Setup; 8] = [
    Setup::None,
    Setup::Floor,
    Setup::GuardOutside,
    Setup::GuardInside,
    Setup::GuardEnforce,
    Setup::Auditd,
    Setup::LibbpfTools,
    Setup::Bpftrace,
];

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Floor => "floor",
            Self::GuardOutside => "guard-outside",
            Self::GuardInside => "guard-inside",
            Self::GuardEnforce => "guard-enforce",
            Self::Auditd => "auditd",
            Self::LibbpfTools => "libbpf-tools",
            Self::Bpftrace => "bpftrace",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::None => "nothing attached",
            Self::Floor => "`guard daemon --floor`: empty programs on exactly guard's hooks",
            Self::GuardOutside => {
                "guard daemon running (log-only policy), the workload not in a session"
            }
            Self::GuardInside => {
                "workload run with `guard run` (log-only policy): every event logged to a file"
            }
            Self::GuardEnforce => {
                "workload run with `guard run` under `--policy workstation` (enforce mode)"
            }
            Self::Auditd => {
                "auditd (Debian config, own log file) with exit rules for open/openat/openat2/creat, \
                 execve/execveat, connect, sendto/sendmsg/sendmmsg, clone/clone3/fork/vfork and \
                 exit_group, filtered by the workload's uid"
            }
            Self::LibbpfTools => {
                "`opensnoop -u UID` + `execsnoop -u UID` (+ `tcpconnect -u UID` where the kernel \
                 allows it), output to files"
            }
            Self::Bpftrace => {
                "bpftrace script printing fork/exec/exit, open* (path and result) and \
                 connect/send events with `uid == UID` predicates, output to a file"
            }
        }
    }

    fn in_session(self) -> bool {
        matches!(self, Self::GuardInside | Self::GuardEnforce)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    Open,
    ForkExec,
    Connect,
    Real,
    Build,
}

const WORKLOADS: [Workload; 5] = [
    Workload::Open,
    Workload::ForkExec,
    Workload::Connect,
    Workload::Real,
    Workload::Build,
];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::ForkExec => "fork-exec",
            Self::Connect => "connect",
            Self::Real => "real",
            Self::Build => "build",
        }
    }

    fn description(self, p: &Params) -> String {
        match self {
            Self::Open => format!("open(O_RDONLY) + close of one file, {} times", p.open_n),
            Self::ForkExec => format!("fork + exec /bin/true + wait, {} times", p.forkexec_n),
            Self::Connect => format!(
                "TCP connect to a loopback listener the bench owns + close (RST), {} times",
                p.connect_n
            ),
            Self::Real => format!(
                "git over a generated repository of {} files (in tmpfs): `git checkout -q b` \
                 (rewrites {} files), `git checkout -q a`, `git status --porcelain`, {} times",
                p.files, p.changed, p.git_n
            ),
            Self::Build => format!(
                "a small C build (in tmpfs): `gcc -O2 -c` of {} generated files (41 functions \
                 each, including stdio.h, stdlib.h and string.h), one after the other",
                p.build_n
            ),
        }
    }

    /// The micro workloads; the others are real programs (git, gcc).
    fn micro(self) -> bool {
        matches!(self, Self::Open | Self::ForkExec | Self::Connect)
    }

    /// The workload's default size.
    fn size(self, p: &Params) -> u64 {
        match self {
            Self::Open => p.open_n,
            Self::ForkExec => p.forkexec_n,
            Self::Connect => p.connect_n,
            Self::Real => p.git_n,
            Self::Build => p.build_n,
        }
    }

    /// Arguments of the workload program for `n` iterations.
    fn args_n(self, ctx: &Ctx, n: u64) -> Vec<String> {
        let n = n.to_string();
        let mut a = vec![ctx.ids()];
        match self {
            Self::Open => a.extend(["open".into(), n, path_str(&ctx.open_target)]),
            Self::ForkExec => a.extend(["forkexec".into(), n]),
            Self::Connect => a.extend(["connect".into(), n, ctx.port.to_string()]),
            Self::Real => a.extend(["git".into(), n, path_str(&ctx.repo)]),
            Self::Build => a.extend(["build".into(), n, path_str(&ctx.build_dir)]),
        }
        a
    }
}

// ---------------------------------------------------------------------------
// Interruption, processes, temporary directory
// ---------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn sleep(d: Duration) -> Result<()> {
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
struct Proc {
    name: String,
    child: Option<Child>,
    stderr: Option<PathBuf>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, stderr: Option<&Path>) -> Result<Self> {
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

    fn pid(&self) -> u32 {
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
    fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
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
    fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
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

/// A directory removed (recursively) when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            log!("warning: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Random hex from /dev/urandom (falls back to time and pid).
fn random_hex(bytes: usize) -> String {
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

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].replace('\n', " | ")
}

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

/// What every measurement needs.
struct Ctx {
    guard: PathBuf,
    dir: PathBuf,
    params: Params,
    workload_bin: PathBuf,
    /// The account the workloads run as (an existing one no process uses).
    account: String,
    uid: u32,
    gid: u32,
    /// CPU the micro workloads are pinned to (None on one CPU).
    pin_cpu: Option<usize>,
    agent: String,
    port: u16,
    open_target: PathBuf,
    repo: PathBuf,
    build_dir: PathBuf,
    home: PathBuf,
    log_policy: PathBuf,
    socket: PathBuf,
    bpftrace_script: PathBuf,
    audit_dir: PathBuf,
    /// Why tcpconnect cannot run, if it cannot.
    tcpconnect_problem: Option<String>,
    /// Files read before each real-workload run (git and its libraries).
    warm_files: Vec<PathBuf>,
    /// Pids of the daemons and tracers this bench runs (to tell other guards apart).
    own_pids: Vec<u32>,
    counter: u64,
}

impl Ctx {
    fn ids(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }

    fn next_file(&mut self, stem: &str, ext: &str) -> PathBuf {
        self.counter += 1;
        self.dir.join(format!("{stem}-{}.{ext}", self.counter))
    }

    /// The workload command, as a setup runs it.
    fn workload_command(&self, setup: Setup, w: Workload) -> Command {
        self.workload_command_n(setup, w, w.size(&self.params))
    }

    /// The workload command with `n` iterations.
    fn workload_command_n(&self, setup: Setup, w: Workload, n: u64) -> Command {
        let mut cmd = if setup.in_session() {
            let mut c = Command::new(&self.guard);
            c.arg("run")
                .arg("--socket")
                .arg(&self.socket)
                .arg("--")
                .arg(&self.workload_bin);
            c
        } else {
            Command::new(&self.workload_bin)
        };
        cmd.args(w.args_n(self, n));
        self.workload_env(&mut cmd);
        // The micro workloads run on one CPU: their parent/child and client/server
        // wake-ups then do not depend on waking an idle virtual CPU. The real
        // workloads (git, gcc) run where the scheduler puts them.
        if let (Some(cpu), true) = (self.pin_cpu, w.micro()) {
            cmd.env("GBENCH_CPU", cpu.to_string());
        }
        cmd
    }

    fn workload_env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(&self.dir);
    }
}

/// Runs `cmd` to completion with a watchdog; returns stdout.
fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<String> {
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

// ---------------------------------------------------------------------------
// guard
// ---------------------------------------------------------------------------

fn guard_status(ctx: &Ctx) -> Result<Value> {
    let out = run_timed(
        Command::new(&ctx.guard)
            .arg("status")
            .arg("--socket")
            .arg(&ctx.socket),
        Duration::from_secs(20),
    )?;
    serde_json::from_str(&out).context("`guard status` printed something that is not JSON")
}

fn lost_sum(status: &Value) -> u64 {
    status
        .get("lost")
        .and_then(Value::as_object)
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

fn events_total(status: &Value) -> u64 {
    status
        .get("events_total")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn cpu_seconds(status: &Value) -> f64 {
    status
        .get("cpu_seconds")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// Waits until the daemon's event count stops moving (it has drained what the
/// workload produced); returns the last status.
fn guard_idle(ctx: &Ctx) -> Result<Value> {
    let start = Instant::now();
    let mut last = guard_status(ctx)?;
    loop {
        sleep(Duration::from_millis(150))?;
        let now = guard_status(ctx)?;
        if events_total(&now) == events_total(&last) || start.elapsed() > Duration::from_secs(60) {
            return Ok(now);
        }
        last = now;
    }
}

/// Starts `guard daemon` (`floor`: the empty programs) and waits for its ready line.
fn start_guard(ctx: &mut Ctx, policy: &Path, floor: bool, events: &Path) -> Result<Proc> {
    let _ = fs::remove_file(&ctx.socket);
    let stderr = ctx.next_file("guard", "err");
    let mut cmd = Command::new(&ctx.guard);
    cmd.arg("daemon");
    if floor {
        cmd.arg("--floor");
    } else {
        cmd.arg("--policy")
            .arg(policy)
            .arg("--agent")
            .arg(&ctx.agent)
            .arg("--events")
            .arg(events)
            .arg("--socket")
            .arg(&ctx.socket);
    }
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file_for(&stderr)?);
    let mut proc = Proc::spawn(
        if floor {
            "guard daemon --floor"
        } else {
            "guard daemon"
        },
        &mut cmd,
        Some(&stderr),
    )?;
    proc.wait_ready(Duration::from_secs(60), || {
        fs::read_to_string(&stderr).is_ok_and(|s| s.contains("guard daemon ready"))
    })?;
    ctx.own_pids.push(proc.pid());
    Ok(proc)
}

fn file_for(path: &Path) -> Result<fs::File> {
    fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// VmHWM (peak resident set) of a process, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------------------
// auditd
// ---------------------------------------------------------------------------

/// Kernel audit status from `auditctl -s`.
fn audit_status() -> Result<BTreeMap<String, String>> {
    let out = util::stdout_of(Command::new("auditctl").arg("-s"))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(2, ' ');
            Some((it.next()?.to_owned(), it.next()?.trim().to_owned()))
        })
        .collect())
}

fn audit_u64(s: &BTreeMap<String, String>, key: &str) -> u64 {
    s.get(key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn auditctl(args: &[&str]) -> Result<()> {
    util::stdout_of(Command::new("auditctl").args(args)).map(|_| ())
}

/// The syscalls the auditd setup logs: those guard reports (fork/exec/exit,
/// open*, connect, send*).
const AUDIT_SYSCALLS: &str = "open,openat,openat2,creat,execve,execveat,connect,sendto,sendmsg,\
                              sendmmsg,clone,clone3,fork,vfork,exit_group";

/// Owns the kernel audit configuration while the bench runs; restores it on drop.
///
/// Once audit has been enabled, the kernel gives every new task an audit context
/// (a syscall slow path) until reboot, even with audit disabled again. So that the
/// other setups measure a kernel as if audit had never been on, a `-a never,task`
/// rule is in place whenever the auditd setup is not running: new tasks (every
/// workload) then get no audit context.
struct AuditState {
    enabled: u64,
    backlog_limit: u64,
    backlog_wait_time: u64,
}

impl AuditState {
    fn take() -> Result<Self> {
        let s = audit_status()?;
        let state = Self {
            enabled: audit_u64(&s, "enabled"),
            backlog_limit: audit_u64(&s, "backlog_limit"),
            backlog_wait_time: audit_u64(&s, "backlog_wait_time"),
        };
        Self::quiet()?;
        Ok(state)
    }

    /// No rules but `-a never,task`; audit disabled.
    fn quiet() -> Result<()> {
        auditctl(&["-e", "0"])?;
        auditctl(&["-D"])?;
        auditctl(&["-a", "never,task"])
    }
}

impl Drop for AuditState {
    fn drop(&mut self) {
        let enabled = self.enabled.to_string();
        let backlog = self.backlog_limit.to_string();
        let wait = self.backlog_wait_time.to_string();
        for args in [
            vec!["-D"],
            vec!["-e", enabled.as_str()],
            vec!["-b", backlog.as_str()],
            vec!["--backlog_wait_time", wait.as_str()],
        ] {
            if let Err(e) = auditctl(&args) {
                log!(
                    "warning: cleanup `auditctl {}` failed: {e:#}",
                    args.join(" ")
                );
            }
        }
    }
}

/// Why the auditd setup cannot run, if it cannot.
fn auditd_problem() -> Option<String> {
    for bin in ["auditd", "auditctl"] {
        if which(bin).is_none() {
            return Some(format!("{bin} not found (Debian package auditd)"));
        }
    }
    let status = match audit_status() {
        Ok(s) => s,
        Err(e) => return Some(format!("`auditctl -s` failed: {e:#}")),
    };
    let pid = audit_u64(&status, "pid");
    if pid != 0 {
        return Some(format!(
            "an audit daemon (pid {pid}) is already running; stop it (e.g. `systemctl stop auditd`) \
             to include auditd"
        ));
    }
    if audit_u64(&status, "enabled") == 2 {
        return Some("the audit configuration is locked (enabled 2)".into());
    }
    match util::stdout_of(Command::new("auditctl").arg("-l")) {
        Ok(rules) if rules.trim() == "No rules" || rules.trim().is_empty() => None,
        Ok(rules) => Some(format!(
            "audit rules are loaded on this host; the bench does not touch them: {}",
            tail(&rules, 300)
        )),
        Err(e) => Some(format!("`auditctl -l` failed: {e:#}")),
    }
}

fn write_auditd_conf(ctx: &Ctx) -> Result<()> {
    let base = fs::read_to_string("/etc/audit/auditd.conf")
        .context("cannot read /etc/audit/auditd.conf")?;
    let log_file = ctx.audit_dir.join("audit.log");
    let mut conf = String::new();
    for line in base.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "log_file" => {
                let _ = writeln!(conf, "log_file = {}", log_file.display());
            }
            // One file per measurement, counted afterwards: no rotation.
            "max_log_file_action" => conf.push_str("max_log_file_action = IGNORE\n"),
            _ => {
                conf.push_str(line);
                conf.push('\n');
            }
        }
    }
    fs::create_dir_all(&ctx.audit_dir)?;
    fs::set_permissions(&ctx.audit_dir, fs::Permissions::from_mode(0o750))?;
    let path = ctx.audit_dir.join("auditd.conf");
    fs::write(&path, conf)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Running setups
// ---------------------------------------------------------------------------

/// A setup in place for one measurement.
struct Running {
    setup: Setup,
    procs: Vec<Proc>,
    /// Output files of the tracers (or guard's events file), removed after counting.
    outputs: Vec<PathBuf>,
    audit_lost0: u64,
}

/// What a setup saw of one workload run.
#[derive(Default)]
struct Seen {
    events: Option<u64>,
    lost: Option<u64>,
    daemon_hwm: Option<u64>,
}

fn has_eventpoll(pid: u32) -> bool {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("eventpoll")))
}

fn start(ctx: &mut Ctx, setup: Setup) -> Result<Running> {
    let mut r = Running {
        setup,
        procs: Vec::new(),
        outputs: Vec::new(),
        audit_lost0: 0,
    };
    match setup {
        Setup::None => {}
        Setup::Floor => {
            let events = ctx.dir.join("unused");
            let p = start_guard(ctx, Path::new("unused"), true, &events)?;
            r.procs.push(p);
        }
        Setup::GuardOutside | Setup::GuardInside | Setup::GuardEnforce => {
            let events = ctx.next_file("events", "jsonl");
            let policy = if setup == Setup::GuardEnforce {
                PathBuf::from("workstation")
            } else {
                ctx.log_policy.clone()
            };
            r.outputs.push(events.clone());
            let p = start_guard(ctx, &policy, false, &events)?;
            r.procs.push(p);
        }
        Setup::Auditd => {
            let log = ctx.audit_dir.join("audit.log");
            let _ = fs::remove_file(&log);
            r.outputs.push(log.clone());
            auditctl(&["-D"])?;
            auditctl(&["-b", "8192"])?;
            auditctl(&["--backlog_wait_time", "60000"])?;
            let stderr = ctx.next_file("auditd", "err");
            let mut cmd = Command::new("auditd");
            cmd.arg("-n")
                .arg("-c")
                .arg(&ctx.audit_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file_for(&stderr)?);
            let mut p = Proc::spawn("auditd", &mut cmd, Some(&stderr))?;
            let pid = u64::from(p.pid());
            p.wait_ready(Duration::from_secs(30), || {
                audit_status().is_ok_and(|s| audit_u64(&s, "pid") == pid)
            })?;
            ctx.own_pids.push(p.pid());
            r.procs.push(p);
            let uid = format!("uid={}", ctx.uid);
            auditctl(&[
                "-a",
                "always,exit",
                "-F",
                "arch=b64",
                "-S",
                AUDIT_SYSCALLS,
                "-F",
                &uid,
                "-k",
                "gbench",
            ])?;
            auditctl(&["-e", "1"])?;
            r.audit_lost0 = audit_u64(&audit_status()?, "lost");
        }
        Setup::LibbpfTools => {
            let mut tools = vec!["opensnoop", "execsnoop"];
            if ctx.tcpconnect_problem.is_none() {
                tools.push("tcpconnect");
            }
            let uid = ctx.uid.to_string();
            for tool in tools {
                let out = ctx.next_file(tool, "out");
                let err = ctx.next_file(tool, "err");
                r.outputs.push(out.clone());
                r.outputs.push(err.clone());
                let mut cmd = Command::new(tool);
                cmd.arg("-u")
                    .arg(&uid)
                    .stdin(Stdio::null())
                    .stdout(file_for(&out)?)
                    .stderr(file_for(&err)?);
                let mut p = Proc::spawn(tool, &mut cmd, Some(&err))?;
                let pid = p.pid();
                // libbpf-tools create their perf buffer's epoll after attaching.
                p.wait_ready(Duration::from_secs(30), || has_eventpoll(pid))?;
                ctx.own_pids.push(pid);
                r.procs.push(p);
            }
        }
        Setup::Bpftrace => {
            let out = ctx.next_file("bpftrace", "out");
            let err = ctx.next_file("bpftrace", "err");
            r.outputs.push(out.clone());
            r.outputs.push(err.clone());
            let mut cmd = Command::new("bpftrace");
            cmd.arg(&ctx.bpftrace_script)
                .env("BPFTRACE_STRLEN", "200")
                .stdin(Stdio::null())
                .stdout(file_for(&out)?)
                .stderr(file_for(&err)?);
            let mut p = Proc::spawn("bpftrace", &mut cmd, Some(&err))?;
            p.wait_ready(Duration::from_secs(120), || {
                fs::read_to_string(&out).is_ok_and(|s| s.contains("READY"))
            })?;
            ctx.own_pids.push(p.pid());
            r.procs.push(p);
        }
    }
    Ok(r)
}

fn count_lines(path: &Path, pred: impl Fn(&str) -> bool) -> u64 {
    let Ok(f) = fs::File::open(path) else {
        return 0;
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(std::result::Result::ok)
        .filter(|l| pred(&String::from_utf8_lossy(l)))
        .count() as u64
}

/// Numbers in lines like "Lost 12 events" (libbpf-tools, bpftrace).
fn lost_from_text(path: &Path) -> u64 {
    let Ok(s) = fs::read_to_string(path) else {
        return 0;
    };
    s.lines()
        .filter(|l| l.to_ascii_lowercase().contains("lost"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
        .sum()
}

/// Stops the setup and reports what it saw.
fn finish(ctx: &mut Ctx, mut r: Running) -> Result<Seen> {
    let mut seen = Seen::default();
    match r.setup {
        Setup::None => {}
        Setup::Floor => {
            for p in &mut r.procs {
                p.stop(libc::SIGTERM, Duration::from_secs(15));
            }
        }
        Setup::GuardOutside | Setup::GuardInside | Setup::GuardEnforce => {
            let status = guard_idle(ctx)?;
            seen.events = Some(events_total(&status));
            seen.lost = Some(lost_sum(&status));
            seen.daemon_hwm = r.procs.first().and_then(|p| vm_hwm(p.pid()));
            for p in &mut r.procs {
                p.stop(libc::SIGTERM, Duration::from_secs(15));
            }
        }
        Setup::Auditd => {
            // Let the kernel's queue drain into auditd before stopping it.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if audit_status().is_ok_and(|s| audit_u64(&s, "backlog") == 0) {
                    break;
                }
                sleep(Duration::from_millis(50))?;
            }
            let lost = audit_u64(&audit_status()?, "lost").saturating_sub(r.audit_lost0);
            auditctl(&["-e", "0"])?;
            auditctl(&["-D"])?;
            for p in &mut r.procs {
                p.stop(libc::SIGTERM, Duration::from_secs(15));
            }
            AuditState::quiet()?;
            let log = ctx.audit_dir.join("audit.log");
            seen.events = Some(count_lines(&log, |l| l.starts_with("type=SYSCALL")));
            seen.lost = Some(lost);
        }
        Setup::LibbpfTools => {
            for p in &mut r.procs {
                p.stop(libc::SIGINT, Duration::from_secs(15));
            }
            let mut events = 0;
            let mut lost = 0;
            for o in &r.outputs {
                if o.extension().is_some_and(|e| e == "out") {
                    // Minus the header line.
                    events += count_lines(o, |l| !l.trim().is_empty()).saturating_sub(1);
                } else {
                    lost += lost_from_text(o);
                }
            }
            seen.events = Some(events);
            seen.lost = Some(lost);
        }
        Setup::Bpftrace => {
            for p in &mut r.procs {
                p.stop(libc::SIGINT, Duration::from_secs(15));
            }
            let mut events = 0;
            let mut lost = 0;
            for o in &r.outputs {
                if o.extension().is_some_and(|e| e == "out") {
                    events += count_lines(o, |l| {
                        ["open ", "exec ", "fork ", "exit ", "connect ", "send "]
                            .iter()
                            .any(|k| l.starts_with(k))
                    });
                }
                lost += lost_from_text(o);
            }
            seen.events = Some(events);
            seen.lost = Some(lost);
        }
    }
    for o in &r.outputs {
        let _ = fs::remove_file(o);
    }
    r.procs.clear();
    Ok(seen)
}

// ---------------------------------------------------------------------------
// Preparation
// ---------------------------------------------------------------------------

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn dpkg_installed(package: &str) -> bool {
    util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn dpkg_version(package: &str) -> Option<String> {
    let out =
        util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", package])).ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// apt-get installs the peers that are missing; failures are reported, not fatal.
fn install_peers() {
    let missing: Vec<&str> = ["auditd", "libbpf-tools", "bpftrace"]
        .into_iter()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        log!("peers: auditd, libbpf-tools, bpftrace present");
        return;
    }
    if which("apt-get").is_none() {
        log!(
            "warning: apt-get not found; cannot install {}",
            missing.join(" ")
        );
        return;
    }
    log!("peers: installing {}", missing.join(" "));
    let update = util::run(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    );
    if let Err(e) = update {
        log!("warning: {e:#}");
    }
    let install = util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    );
    if let Err(e) = install {
        log!("warning: {e:#}");
    }
}

/// Uids of running processes (real, effective, saved, fs).
fn uids_in_use() -> Vec<u32> {
    let Ok(d) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut uids: Vec<u32> = d
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|u| u.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// An existing account that no process runs as: (name, uid, gid).
///
/// The workloads run as that account so the peers can filter them by uid. It must
/// exist: auditd's default (ENRICHED) log format looks every uid up, and a uid
/// without an account costs it a failed NSS lookup per record (through
/// nss-systemd), which slows auditd down by an order of magnitude.
fn pick_account() -> Result<(String, u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    let in_use = uids_in_use();
    let accounts: Vec<(String, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                (*f.first()?).to_owned(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let preferred = [
        "games", "news", "uucp", "irc", "gnats", "list", "backup", "proxy", "lp", "man",
    ];
    preferred
        .iter()
        .filter_map(|name| accounts.iter().find(|a| a.0 == *name))
        .chain(accounts.iter().filter(|a| a.1 >= 1000 && a.1 < 65534))
        .find(|a| a.1 != 0 && a.2 != 0 && !in_use.contains(&a.1))
        .cloned()
        .ok_or_else(|| anyhow!("no account in /etc/passwd that no process runs as"))
}

/// Reads every file under `dir`, so the page cache holds it.
fn read_tree(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            read_tree(&path)?;
        } else if meta.is_file() {
            let _ = fs::read(&path);
        }
    }
    Ok(())
}

/// `program` and the shared libraries `ldd` lists for it.
fn program_files(program: &Path) -> Vec<PathBuf> {
    let mut files = vec![program.to_path_buf()];
    if let Ok(out) = util::stdout_of(Command::new("ldd").arg(program)) {
        files.extend(
            out.lines()
                .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
                .map(PathBuf::from),
        );
    }
    files
}

/// Brings a real workload to the same starting state before every timed run:
/// reads the repository, git and its libraries (this machine pages cold file pages
/// out), then runs one untimed iteration as the workload account. Without that,
/// the first git run after a minute was several times slower on this VM whatever
/// was attached (cold pages back from disk; files written back meanwhile whose
/// blocks are then freed with `discard`), and gcc's 30 MB of cc1 likewise.
fn prewarm(ctx: &Ctx, w: Workload) -> Result<()> {
    if w == Workload::Real {
        read_tree(&ctx.repo)?;
        for f in &ctx.warm_files {
            let _ = fs::read(f);
        }
    }
    // One iteration, whatever the timed runs do.
    let mut cmd = Command::new(&ctx.workload_bin);
    cmd.args(w.args_n(ctx, 1));
    ctx.workload_env(&mut cmd);
    run_timed(&mut cmd, Duration::from_secs(300)).map(|_| ())
}

/// `n` C files for the build workload.
fn make_build_sources(dir: &Path, n: u64, uid: u32, gid: u32) -> Result<()> {
    fs::create_dir_all(dir)?;
    for i in 0..n {
        let mut src =
            String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n");
        for f in 0..41 {
            let _ = writeln!(
                src,
                "int f{i}_{f}(const char *s, int n) {{\n    int h = {f};\n    \
                 for (int k = 0; k < n; k++)\n        h = h * 31 + s[k % (int)strlen(s)];\n    \
                 if (h % 7 == 3)\n        printf(\"%d\\n\", h);\n    \
                 return h ^ atoi(s);\n}}\n"
            );
        }
        fs::write(dir.join(format!("m{i}.c")), src)?;
    }
    chown_tree(dir, uid, gid)
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot chown {}", path.display()))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for e in fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A repository with `files` files on branch `a`, and branch `b` changing `changed` of them.
fn make_repo(repo: &Path, files: u64, changed: u64, uid: u32, gid: u32) -> Result<()> {
    fs::create_dir_all(repo)?;
    let per_dir = 100;
    for i in 0..files {
        let dir = repo.join(format!("src/m{:02}", i / per_dir));
        if i % per_dir == 0 {
            fs::create_dir_all(&dir)?;
        }
        let mut body = String::new();
        for line in 0..20 {
            let _ = writeln!(
                body,
                "// file {i} line {line}: generated for cargo xtask bench"
            );
        }
        fs::write(dir.join(format!("f{i:05}.rs")), body)?;
    }
    let git = |args: &[&str]| -> Result<()> {
        util::stdout_of(
            Command::new("git")
                .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
                .args([
                    "-c",
                    "commit.gpgsign=false",
                    "-c",
                    "core.hooksPath=/dev/null",
                ])
                .args(args)
                .current_dir(repo)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", repo),
        )
        .map(|_| ())
    };
    git(&["init", "-q", "-b", "a", "."])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "a"])?;
    git(&["checkout", "-q", "-b", "b"])?;
    for i in 0..changed.min(files) {
        let f = repo.join(format!("src/m{:02}/f{i:05}.rs", i / per_dir));
        let mut body = fs::read_to_string(&f)?;
        body.push_str("// changed on branch b\n");
        fs::write(&f, body)?;
    }
    git(&["commit", "-q", "-a", "-m", "b"])?;
    git(&["checkout", "-q", "a"])?;
    chown_tree(repo, uid, gid)
}

/// Listener on 127.0.0.1 whose thread accepts and drops connections forever.
fn listener() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    // A long accept queue: a busy machine must not drop SYNs (a 1 s retry).
    // SAFETY: listen on a socket we own; re-listening only changes the backlog.
    unsafe {
        libc::listen(l.as_raw_fd(), 4096);
    }
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    Ok(port)
}

const BPFTRACE_SCRIPT: &str = r#"BEGIN { printf("READY\n"); }
tracepoint:sched:sched_process_fork /uid == UID/ { printf("fork %d %s %d\n", pid, comm, args->child_pid); }
tracepoint:sched:sched_process_exec /uid == UID/ { printf("exec %d %s %s\n", pid, comm, str(args->filename)); }
tracepoint:sched:sched_process_exit /uid == UID/ { printf("exit %d %s\n", pid, comm); }
tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_openat2, tracepoint:syscalls:sys_enter_open /uid == UID/ { @path[tid] = args->filename; }
tracepoint:syscalls:sys_enter_creat /uid == UID/ { @path[tid] = args->pathname; }
tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_openat2, tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_creat /@path[tid]/ { printf("open %d %s %s %d\n", pid, comm, str(@path[tid]), args->ret); delete(@path[tid]); }
tracepoint:syscalls:sys_enter_connect /uid == UID/ { @sa[tid] = args->uservaddr; }
tracepoint:syscalls:sys_exit_connect /@sa[tid]/ { $s = (struct sockaddr_in *)@sa[tid]; printf("connect %d %s %s %d %d\n", pid, comm, ntop(2, $s->sin_addr.s_addr), bswap($s->sin_port), args->ret); delete(@sa[tid]); }
tracepoint:syscalls:sys_exit_sendto, tracepoint:syscalls:sys_exit_sendmsg, tracepoint:syscalls:sys_exit_sendmmsg /uid == UID/ { printf("send %d %s %d\n", pid, comm, args->ret); }
"#;

/// Why tcpconnect cannot run here (it needs kprobes), if it cannot.
fn tcpconnect_problem(uid: u32, dir: &Path) -> Option<String> {
    which("tcpconnect")?;
    let err = dir.join("tcpconnect-probe.err");
    let mut cmd = Command::new("tcpconnect");
    cmd.arg("-u")
        .arg(uid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file_for(&err).ok()?);
    let mut p = Proc::spawn("tcpconnect", &mut cmd, Some(&err)).ok()?;
    let pid = p.pid();
    let problem = match p.wait_ready(Duration::from_secs(20), || has_eventpoll(pid)) {
        Ok(()) => None,
        Err(e) => Some(format!("{e:#}")),
    };
    p.stop(libc::SIGINT, Duration::from_secs(5));
    let _ = fs::remove_file(&err);
    problem
}

/// Processes named `guard` that are not this bench's (other people's daemons and
/// tests, which add their own hooks to the machine).
fn foreign_guards(own: &[u32]) -> u64 {
    let Ok(d) = fs::read_dir("/proc") else {
        return 0;
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| !own.contains(pid))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "guard")
        })
        .count() as u64
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn machine(guard: &Path) -> Value {
    let first_line = |cmd: &mut Command| {
        util::stdout_of(cmd)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
    };
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned());
    json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nproc": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "memory_bytes": mem_kb * 1024,
        "cpu": cpu,
        "os": fs::read_to_string("/etc/os-release").ok().and_then(|s| s.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))),
        "date": first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        "guard": first_line(Command::new(guard).arg("--version")),
        "auditd": dpkg_version("auditd"),
        "libbpf_tools": dpkg_version("libbpf-tools"),
        "bpftrace": first_line(Command::new("bpftrace").arg("--version")),
        "gcc": first_line(Command::new("gcc").arg("--version")),
        "git": first_line(Command::new("git").arg("--version")),
    })
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

pub fn run(guard: &Path, opts: &Options) -> Result<()> {
    if !util::is_root() {
        bail!("the benchmarks need root; run `sudo -E env PATH=$PATH cargo xtask bench`");
    }
    install_signal_handlers();
    let params = Params::new(opts);
    let out_dir = opts.out.clone().unwrap_or_else(|| {
        if opts.quick {
            util::target_dir().join("bench-quick")
        } else {
            util::workspace_root()
        }
    });
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    if !opts.no_install {
        install_peers();
    }
    for bin in ["gcc", "git"] {
        if which(bin).is_none() {
            bail!("{bin} is needed (apt-get install {bin})");
        }
    }
    let guard = fs::canonicalize(guard)
        .with_context(|| format!("no guard binary at {}", guard.display()))?;
    let started = Instant::now();

    // The temporary directory is on disk (guard's events file is a real file).
    let hex = random_hex(4);
    let dir = PathBuf::from(format!("/var/tmp/gbench-{hex}"));
    fs::create_dir_all(&dir)?;
    let _tmp = TempDir(dir.clone());
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;

    let (account, uid, gid) = pick_account()?;
    let agent = format!("gbench{hex}");
    log!(
        "temp dir {}, workloads run as {account} ({uid}:{gid}), agent name {agent}",
        dir.display()
    );

    // The workload program, under a name of its own.
    let workload_bin = dir.join(format!("gbw-{hex}"));
    let source = util::workspace_root().join("bench/workload.c");
    util::stdout_of(
        Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&workload_bin)
            .arg(&source),
    )
    .context("cannot compile bench/workload.c")?;

    let open_target = dir.join("open-target");
    fs::write(&open_target, "guard bench\n")?;
    fs::set_permissions(&open_target, fs::Permissions::from_mode(0o644))?;
    let home = dir.join("home");
    fs::create_dir_all(&home)?;
    chown_tree(&home, uid, gid)?;
    // The repository lives in tmpfs where there is one: on this kind of VM the
    // disk's latency spikes (seconds, now and then) would swamp the comparison.
    // Outputs (guard's events, the peers' logs) stay on disk.
    let shm = Path::new("/dev/shm");
    let (repo, _repo_tmp) = if shm.is_dir() {
        let d = shm.join(format!("gbench-{hex}"));
        fs::create_dir_all(&d)?;
        let guard = TempDir(d.clone());
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        (d.join("repo"), Some(guard))
    } else {
        (dir.join("repo"), None)
    };
    log!(
        "generating a git repository of {} files in {}",
        params.files,
        repo.display()
    );
    make_repo(&repo, params.files, params.changed, uid, gid)?;
    let build_dir = repo.with_file_name("build");
    make_build_sources(&build_dir, params.build_n, uid, gid)?;
    let log_policy = dir.join("log-only.toml");
    fs::write(
        &log_policy,
        format!("mode = \"enforce\"\n[agents]\nnames = [\"{agent}\"]\n"),
    )?;
    let bpftrace_script = dir.join("bench.bt");
    fs::write(
        &bpftrace_script,
        BPFTRACE_SCRIPT.replace("UID", &uid.to_string()),
    )?;
    let port = listener()?;

    let mut ctx = Ctx {
        guard: guard.clone(),
        dir: dir.clone(),
        params: params.clone(),
        workload_bin,
        account,
        uid,
        gid,
        pin_cpu: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() - 1)
            .filter(|n| *n > 0),
        agent,
        port,
        open_target,
        repo,
        build_dir,
        home,
        log_policy,
        socket: dir.join("guard.sock"),
        bpftrace_script,
        audit_dir: dir.join("audit"),
        tcpconnect_problem: None,
        warm_files: which("git").map(|g| program_files(&g)).unwrap_or_default(),
        own_pids: vec![std::process::id()],
        counter: 0,
    };

    // Which setups can run here.
    let mut problems: BTreeMap<Setup, String> = BTreeMap::new();
    let audit_problem = auditd_problem();
    let _audit_state = match &audit_problem {
        Some(p) => {
            problems.insert(Setup::Auditd, p.clone());
            None
        }
        None => {
            write_auditd_conf(&ctx)?;
            Some(AuditState::take()?)
        }
    };
    for tool in ["opensnoop", "execsnoop"] {
        if which(tool).is_none() {
            problems.insert(
                Setup::LibbpfTools,
                format!("{tool} not found (Debian package libbpf-tools)"),
            );
        }
    }
    if which("bpftrace").is_none() {
        problems.insert(Setup::Bpftrace, "bpftrace not found".into());
    }
    ctx.tcpconnect_problem = match which("tcpconnect") {
        None => Some("tcpconnect not found".into()),
        Some(_) => tcpconnect_problem(uid, &dir),
    };
    if let Some(p) = &ctx.tcpconnect_problem {
        log!("tcpconnect cannot run; libbpf-tools runs without it: {p}");
    }
    // Start each setup once: whatever cannot start is left out (with the reason).
    for setup in SETUPS {
        if problems.contains_key(&setup) {
            continue;
        }
        check_interrupted()?;
        let result = start(&mut ctx, setup).and_then(|r| finish(&mut ctx, r));
        if let Err(e) = result {
            check_interrupted()?;
            log!("{} cannot run: {e:#}", setup.name());
            problems.insert(setup, format!("{e:#}"));
        }
    }
    let setups: Vec<Setup> = SETUPS
        .into_iter()
        .filter(|s| !problems.contains_key(s))
        .collect();
    log!(
        "setups: {}",
        setups
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Warm-up (page cache, git's index): each workload once, not recorded.
    for w in WORKLOADS {
        run_timed(
            &mut ctx.workload_command(Setup::None, w),
            Duration::from_secs(600),
        )
        .with_context(|| format!("warm-up of {} failed", w.name()))?;
    }

    let mut samples = Vec::new();
    for round in 1..=params.rounds {
        // Each round starts one setup further on, so no setup is always first
        // (or always right after the same other one).
        let mut order = setups.clone();
        order.rotate_left((round as usize - 1) % setups.len().max(1));
        for w in WORKLOADS {
            for &setup in &order {
                check_interrupted()?;
                let sample = measure(&mut ctx, setup, w, round).with_context(|| {
                    format!("{} under {} (round {round})", w.name(), setup.name())
                })?;
                samples.push(sample);
                sleep(Duration::from_millis(100))?;
            }
        }
        log!(
            "round {round}/{} done ({:.0} s so far)",
            params.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    log!("capacity");
    let capacity = capacity(&mut ctx).unwrap_or_else(|e| {
        log!("capacity failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    log!("kill latency");
    let kill = kill_latency(&mut ctx).unwrap_or_else(|e| {
        log!("kill latency failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    log!("in-kernel cost of guard's programs");
    let costs = program_costs(&mut ctx).unwrap_or_else(|e| {
        log!("program costs not measured: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;

    let summary = summarize(&samples, &setups);
    let targets = targets(&summary, &capacity);
    let results = json!({
        "schema": 1,
        "quick": opts.quick,
        "machine": machine(&guard),
        "duration_seconds": started.elapsed().as_secs_f64(),
        "params": {
            "rounds": params.rounds,
            "open_iterations": params.open_n,
            "forkexec_iterations": params.forkexec_n,
            "connect_iterations": params.connect_n,
            "git_iterations": params.git_n,
            "build_files": params.build_n,
            "repo_files": params.files,
            "repo_changed_files": params.changed,
            "capacity_step_seconds": params.cap_step_secs,
            "capacity_generator_processes": params.cap_procs,
            "kill_runs": params.kill_runs,
            "workload_account": format!("{} ({})", ctx.account, ctx.ids()),
            "micro_workloads_pinned_to_cpu": ctx.pin_cpu,
        },
        "setups": SETUPS.iter().map(|s| json!({
            "name": s.name(),
            "description": s.description(),
            "available": !problems.contains_key(s),
            "problem": problems.get(s),
        })).collect::<Vec<_>>(),
        "tcpconnect_problem": ctx.tcpconnect_problem,
        "workloads": WORKLOADS.iter().map(|w| json!({
            "name": w.name(),
            "description": w.description(&params),
        })).collect::<Vec<_>>(),
        "samples": samples,
        "summary": summary,
        "capacity": capacity,
        "kill_latency": kill,
        "program_costs": costs,
        "targets": targets,
    });
    let json_path = out_dir.join("bench-results.json");
    fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    log!("wrote {}", json_path.display());
    let md_path = out_dir.join("BENCHMARKS.md");
    write_markdown(&md_path, &results)?;
    log!("wrote {}", md_path.display());
    if !opts.no_chart {
        let png = out_dir.join("bench-ratios.png");
        match chart(&json_path, &png) {
            Ok(()) => log!("wrote {}", png.display()),
            Err(e) => log!("no chart: {e:#}"),
        }
    }
    print_summary(&results);
    log!(
        "summary: benchmarks finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn measure(ctx: &mut Ctx, setup: Setup, w: Workload, round: u32) -> Result<Value> {
    if !w.micro() {
        prewarm(ctx, w)?;
    }
    let running = start(ctx, setup)?;
    let foreign = foreign_guards(&ctx.own_pids);
    let load = loadavg();
    let result = run_timed(
        &mut ctx.workload_command(setup, w),
        Duration::from_secs(900),
    );
    let seen = finish(ctx, running)?;
    let out = result?;
    let seconds: f64 = out
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("the workload printed no time: {out:?}"))?;
    log!(
        "round {round} {:<9} {:<13} {seconds:8.3} s{}{}",
        w.name(),
        setup.name(),
        seen.events
            .map(|e| format!("  events {e}"))
            .unwrap_or_default(),
        seen.lost
            .filter(|l| *l > 0)
            .map(|l| format!("  LOST {l}"))
            .unwrap_or_default(),
    );
    Ok(json!({
        "round": round,
        "workload": w.name(),
        "setup": setup.name(),
        "seconds": seconds,
        "events": seen.events,
        "lost": seen.lost,
        "daemon_peak_rss_bytes": seen.daemon_hwm,
        "loadavg": load,
        "other_guard_processes": foreign,
    }))
}

// ---------------------------------------------------------------------------
// Capacity and kill latency
// ---------------------------------------------------------------------------

/// Events-file bytes from `offset` on; whether any line is a `lost` event.
fn lost_in_file(path: &Path, offset: &mut u64) -> Result<bool> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let mut found = false;
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        *offset += n as u64;
        if line.windows(14).any(|w| w == b"\"kind\":\"lost\"") {
            found = true;
        }
    }
    Ok(found)
}

fn capacity(ctx: &mut Ctx) -> Result<Value> {
    let events = ctx.next_file("capacity", "jsonl");
    let policy = ctx.log_policy.clone();
    let mut daemon = start_guard(ctx, &policy, false, &events)?;
    let pid = daemon.pid();
    let p = ctx.params.clone();
    let mut offset = 0;
    let mut steps: Vec<Value> = Vec::new();
    let mut step = |ctx: &mut Ctx, target: f64| -> Result<Value> {
        let s0 = guard_idle(ctx)?;
        let out = run_timed(
            Command::new(&ctx.guard)
                .arg("run")
                .arg("--socket")
                .arg(&ctx.socket)
                .arg("--")
                .arg(&ctx.workload_bin)
                .args([
                    ctx.ids(),
                    "gen".into(),
                    format!("{target:.0}"),
                    p.cap_step_secs.to_string(),
                    p.cap_procs.to_string(),
                    path_str(&ctx.open_target),
                ])
                .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
            Duration::from_secs(p.cap_step_secs * 10 + 60),
        )?;
        let s1 = guard_idle(ctx)?;
        let mut it = out.split_whitespace();
        let opens: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let secs: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if secs <= 0.0 {
            bail!("the generator printed {out:?}");
        }
        let lost = lost_sum(&s1).saturating_sub(lost_sum(&s0));
        let lost_line = lost_in_file(&events, &mut offset).unwrap_or(false);
        let ev = events_total(&s1).saturating_sub(events_total(&s0));
        let v = json!({
            "target_opens_per_second": target.round(),
            "opens_per_second": (opens / secs).round(),
            "events_per_second": (ev as f64 / secs).round(),
            "events": ev,
            "seconds": secs,
            "lost": lost,
            "lost_event_in_file": lost_line,
            "daemon_cpu_cores": (cpu_seconds(&s1) - cpu_seconds(&s0)) / secs,
            "daemon_peak_rss_bytes": vm_hwm(pid),
        });
        log!(
            "capacity: target {:>7.0}/s  opens {:>7.0}/s  events {:>7.0}/s  lost {lost}{}  cpu {:.2}",
            target,
            opens / secs,
            ev as f64 / secs,
            if lost_line {
                " (lost event in file)"
            } else {
                ""
            },
            (cpu_seconds(&s1) - cpu_seconds(&s0)) / secs,
        );
        Ok(v)
    };
    let zero_loss = |v: &Value| {
        v["lost"].as_u64() == Some(0) && v["lost_event_in_file"].as_bool() == Some(false)
    };
    let reached =
        |v: &Value, target: f64| v["opens_per_second"].as_f64().unwrap_or(0.0) >= 0.9 * target;
    let mut good: Option<f64> = None;
    let mut bad: Option<f64> = None;
    let mut generator_bound = false;
    let mut target = p.cap_start_rate;
    for _ in 0..p.cap_max_steps {
        check_interrupted()?;
        let v = step(ctx, target)?;
        let ok = zero_loss(&v);
        let hit = reached(&v, target);
        steps.push(v);
        if !ok {
            bad = Some(target);
            break;
        }
        good = Some(target);
        if !hit {
            generator_bound = true;
            break;
        }
        target *= 1.4;
    }
    // Narrow down between the last rate without loss and the first with.
    if let (Some(mut lo), Some(mut hi)) = (good, bad) {
        for _ in 0..2 {
            check_interrupted()?;
            let mid = (lo + hi) / 2.0;
            let v = step(ctx, mid)?;
            if zero_loss(&v) {
                lo = mid;
            } else {
                hi = mid;
            }
            steps.push(v);
        }
    }
    let overall_hwm = vm_hwm(pid);
    daemon.stop(libc::SIGTERM, Duration::from_secs(30));
    let _ = fs::remove_file(&events);
    let best = steps
        .iter()
        .filter(|v| zero_loss(v))
        .max_by(|a, b| {
            let a = a["events_per_second"].as_f64().unwrap_or(0.0);
            let b = b["events_per_second"].as_f64().unwrap_or(0.0);
            a.total_cmp(&b)
        })
        .cloned();
    // The daemon's CPU per event at the best step, and what one core would carry.
    let per_event_us = best.as_ref().and_then(|b| {
        let cores = b["daemon_cpu_cores"].as_f64()?;
        let rate = b["events_per_second"].as_f64()?;
        (cores > 0.0 && rate > 0.0).then(|| cores / rate * 1e6)
    });
    Ok(json!({
        "daemon_cpu_us_per_event": per_event_us,
        "events_per_daemon_core_estimate": per_event_us.map(|us| (1e6 / us).round()),
        "generator_processes": p.cap_procs,
        "step_seconds": p.cap_step_secs,
        "steps": steps,
        "max_zero_loss": best,
        "first_lossy_target": bad,
        "limited_by_generator": generator_bound,
        "daemon_peak_rss_bytes": overall_hwm,
    }))
}

fn kill_latency(ctx: &mut Ctx) -> Result<Value> {
    let policy = ctx.dir.join("kill.toml");
    fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n[agents]\nnames = [\"{}\"]\n\n[[rule]]\nid = \"bench-kill-sleep\"\n\
             kind = \"exec\"\nexe = [\"sleep\"]\nargv_contains = [\"4242\"]\naction = \"kill\"\n",
            ctx.agent
        ),
    )?;
    let events = ctx.next_file("kill", "jsonl");
    let mut daemon = start_guard(ctx, &policy, false, &events)?;
    let runs = ctx.params.kill_runs;
    let script = format!(
        "i=0; killed=0; while [ $i -lt {runs} ]; do timeout 10 sleep 4242; \
         [ $? -ne 124 ] && killed=$((killed+1)); i=$((i+1)); done; echo $killed"
    );
    let out = run_timed(
        Command::new(&ctx.guard)
            .arg("run")
            .arg("--socket")
            .arg(&ctx.socket)
            .args(["--", "sh", "-c", &script])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
        Duration::from_secs(u64::from(runs) * 12 + 60),
    )?;
    let status = guard_idle(ctx)?;
    daemon.stop(libc::SIGTERM, Duration::from_secs(15));
    let mut latencies: Vec<u64> = Vec::new();
    if let Ok(f) = fs::File::open(&events) {
        for line in BufReader::new(f).lines().map_while(std::result::Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let l = v
                    .get("kill_latency_us")
                    .or_else(|| v.get("violation").and_then(|x| x.get("kill_latency_us")));
                if let Some(us) = l.and_then(Value::as_u64) {
                    latencies.push(us);
                }
            }
        }
    }
    let _ = fs::remove_file(&events);
    latencies.sort_unstable();
    let q = |p: f64| -> Option<u64> {
        if latencies.is_empty() {
            return None;
        }
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        latencies.get(i).copied()
    };
    Ok(json!({
        "runs": runs,
        "killed_before_timeout": out.trim().parse::<u64>().ok(),
        "status_kill_latency_us": status.get("kill_latency_us"),
        "events_with_latency": latencies.len(),
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "max_us": latencies.last(),
    }))
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns on the kernel's BPF run-time statistics; restores the setting on drop.
struct BpfStats(String);

impl BpfStats {
    fn enable() -> Result<Self> {
        let prev =
            fs::read_to_string(BPF_STATS).with_context(|| format!("cannot read {BPF_STATS}"))?;
        fs::write(BPF_STATS, "1").with_context(|| format!("cannot write {BPF_STATS}"))?;
        Ok(Self(prev.trim().to_owned()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS, &self.0) {
            log!("warning: cannot restore {BPF_STATS}: {e}");
        }
    }
}

/// A loaded BPF program, from `bpftool prog show`.
struct BpfProg {
    name: String,
    run_time_ns: u64,
    run_cnt: u64,
    pids: Vec<u64>,
}

/// Loaded BPF programs by id.
fn bpf_programs() -> Result<BTreeMap<u64, BpfProg>> {
    let out = util::stdout_of(Command::new("bpftool").args(["prog", "show", "--json"]))?;
    let v: Value =
        serde_json::from_str(&out).context("bpftool printed something that is not JSON")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let pids = p["pids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["pid"].as_u64())
                .collect();
            Some((
                p["id"].as_u64()?,
                BpfProg {
                    name: p["name"].as_str().unwrap_or("?").to_owned(),
                    run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                    run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
                    pids,
                },
            ))
        })
        .collect())
}

/// Where the time goes: the kernel's own run-time statistics of guard's programs
/// (`kernel.bpf_stats_enabled`, on only for this short phase, since it adds to every
/// program run) while the micro workloads run outside and inside a session.
fn program_costs(ctx: &mut Ctx) -> Result<Value> {
    if which("bpftool").is_none() {
        bail!("bpftool not found (Debian package bpftool)");
    }
    let stats = BpfStats::enable()?;
    let mut rows = Vec::new();
    let policy = ctx.log_policy.clone();
    for floor in [true, false] {
        let before: Vec<u64> = bpf_programs()?.into_keys().collect();
        let events = ctx.next_file("costs", "jsonl");
        let mut daemon = start_guard(ctx, &policy, floor, &events)?;
        let setups: &[Setup] = if floor {
            &[Setup::Floor]
        } else {
            &[Setup::GuardOutside, Setup::GuardInside]
        };
        let result = program_rows(ctx, u64::from(daemon.pid()), &before, setups, &mut rows);
        daemon.stop(libc::SIGTERM, Duration::from_secs(15));
        let _ = fs::remove_file(&events);
        result?;
    }
    drop(stats);
    Ok(json!({ "rows": rows }))
}

/// Runs the micro workloads (a quarter of their size) under `setups` and adds the
/// run-time statistics of the daemon's programs (those bpftool says `pid` holds,
/// else those loaded since `before`) to `rows`.
fn program_rows(
    ctx: &Ctx,
    pid: u64,
    before: &[u64],
    setups: &[Setup],
    rows: &mut Vec<Value>,
) -> Result<()> {
    let ours = |all: &BTreeMap<u64, BpfProg>| -> Vec<u64> {
        let by_pid: Vec<u64> = all
            .iter()
            .filter(|(_, p)| p.pids.contains(&pid))
            .map(|(id, _)| *id)
            .collect();
        if by_pid.is_empty() {
            all.keys()
                .filter(|id| !before.contains(id))
                .copied()
                .collect()
        } else {
            by_pid
        }
    };
    let p = &ctx.params;
    for (w, n) in [
        (Workload::Open, (p.open_n / 4).max(1000)),
        (Workload::ForkExec, (p.forkexec_n / 4).max(50)),
        (Workload::Connect, (p.connect_n / 4).max(1000)),
    ] {
        for &setup in setups {
            check_interrupted()?;
            let s0 = bpf_programs()?;
            run_timed(
                &mut ctx.workload_command_n(setup, w, n),
                Duration::from_secs(600),
            )?;
            let s1 = bpf_programs()?;
            for id in ours(&s1) {
                let (Some(a), Some(b)) = (s0.get(&id), s1.get(&id)) else {
                    continue;
                };
                let runs = b.run_cnt.saturating_sub(a.run_cnt);
                if runs == 0 {
                    continue;
                }
                let ns = b.run_time_ns.saturating_sub(a.run_time_ns);
                rows.push(json!({
                    "workload": w.name(),
                    "iterations": n,
                    "setup": setup.name(),
                    "program": b.name,
                    "runs": runs,
                    "ns_per_run": ns as f64 / runs as f64,
                    "ns_per_iteration": ns as f64 / n as f64,
                }));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Summaries
// ---------------------------------------------------------------------------

fn quantile(sorted: &[f64], q: f64) -> f64 {
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
fn summarize(samples: &[Value], setups: &[Setup]) -> Value {
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

fn targets(summary: &Value, capacity: &Value) -> Value {
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

    // Inside a session: below auditd and opensnoop (libbpf-tools) for the same
    // events. A peer is compared on a workload only where it recorded at least 90%
    // as many events as guard (libbpf-tools has no fork/exit events, and no connect
    // events where tcpconnect cannot run).
    let mut parts = Vec::new();
    let mut all = Some(true);
    for w in &names {
        let g = ratio(summary, w, "guard-inside", "median_seconds");
        let ge = ratio(summary, w, "guard-inside", "median_events");
        for peer in ["auditd", "libbpf-tools"] {
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
                        all = all.map(|_| false);
                    }
                }
                _ => all = None,
            }
        }
    }
    t.push(json!({
        "target": "inside a session, below auditd and opensnoop (libbpf-tools) for the same events",
        "measured": parts.join("; "),
        "met": all,
    }));

    // Real workloads inside a session: under 5% slower than nothing.
    for (w, what) in [("real", "git"), ("build", "gcc build")] {
        let r = ratio(summary, w, "guard-inside", "ratio_to_none");
        t.push(json!({
            "target": format!("real workload ({what}) inside a session under 5% slower than nothing attached"),
            "measured": fmt_ratio(r),
            "met": r.map(|r| r < 1.05),
        }));
    }

    // Capacity.
    let best = capacity["max_zero_loss"]["events_per_second"].as_f64();
    let bound = capacity["limited_by_generator"].as_bool() == Some(true);
    t.push(json!({
        "target": ">= 200,000 events/s sustained with zero loss",
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
        "met": best.map(|b| b >= 200_000.0),
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

fn fmt_opt_u64(v: &Value) -> String {
    v.as_u64().map_or_else(|| "–".into(), |n| n.to_string())
}

const BEGIN: &str = "<!-- BEGIN GENERATED by `cargo xtask bench`: edits inside are overwritten -->";
const END: &str = "<!-- END GENERATED -->";

/// The generated part of BENCHMARKS.md.
fn results_markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let _ = writeln!(s, "## Results");
    let _ = writeln!(s);
    if r["quick"].as_bool() == Some(true) {
        let _ = writeln!(
            s,
            "**Quick (smoke) run: too few rounds for conclusions.**\n"
        );
    }
    let _ = writeln!(
        s,
        "Machine: Linux {}, {} CPUs ({}), {:.1} GiB memory, {}; {}. Run {} ({:.0} s in all).",
        m["kernel"].as_str().unwrap_or("?"),
        m["nproc"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory_bytes"].as_f64().unwrap_or(0.0) / 1073741824.0,
        m["os"].as_str().unwrap_or("?"),
        m["guard"].as_str().unwrap_or("guard"),
        m["date"].as_str().unwrap_or("?"),
        r["duration_seconds"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(
        s,
        "Peers: auditd {}, libbpf-tools {}, {}.",
        m["auditd"].as_str().unwrap_or("n/a"),
        m["libbpf_tools"].as_str().unwrap_or("n/a"),
        m["bpftrace"].as_str().unwrap_or("bpftrace n/a"),
    );
    let _ = writeln!(s);
    let unavailable: Vec<String> = r["setups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["available"] == false)
        .map(|x| {
            format!(
                "`{}`: {}",
                x["name"].as_str().unwrap_or("?"),
                x["problem"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !unavailable.is_empty() {
        let _ = writeln!(s, "Not run: {}.\n", unavailable.join("; "));
    }
    if let Some(p) = r["tcpconnect_problem"].as_str() {
        let _ = writeln!(
            s,
            "`tcpconnect` could not run on this kernel, so `libbpf-tools` is opensnoop + execsnoop only: {p}\n"
        );
    }
    let rounds = r["params"]["rounds"].as_u64().unwrap_or(0);
    for w in r["workloads"].as_array().into_iter().flatten() {
        let name = w["name"].as_str().unwrap_or("?");
        let _ = writeln!(
            s,
            "### `{name}`: {}\n",
            w["description"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            s,
            "| setup | median s | ratio to none | ratio to floor | p25–p75 s | runs | events/run | lost |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let Some(per) = r["summary"][name].as_object() else {
            continue;
        };
        for setup in SETUPS {
            let Some(x) = per.get(setup.name()) else {
                continue;
            };
            let f = |k: &str, d: usize| {
                x[k].as_f64()
                    .map_or_else(|| "–".into(), |v| format!("{v:.d$}"))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}–{} | {}/{rounds} | {} | {} |",
                setup.name(),
                f("median_seconds", 3),
                f("ratio_to_none", 3),
                f("ratio_to_floor", 3),
                f("p25_seconds", 3),
                f("p75_seconds", 3),
                x["runs"],
                fmt_opt_u64(&x["median_events"]),
                if matches!(setup, Setup::None | Setup::Floor) {
                    "–".into()
                } else {
                    fmt_opt_u64(&x["lost_total"])
                },
            );
        }
        let _ = writeln!(s);
    }

    let c = &r["capacity"];
    let _ = writeln!(s, "### Capacity\n");
    if let Some(e) = c["error"].as_str() {
        let _ = writeln!(s, "Capacity measurement failed: {e}\n");
    } else {
        let _ = writeln!(
            s,
            "An open/close generator in a session ({} processes, paced), {} s per step, \
             ramping ×1.4 until the daemon loses events, then two bisection steps. \
             Events/s is the daemon's own count over the step.\n",
            c["generator_processes"], c["step_seconds"]
        );
        let _ = writeln!(
            s,
            "| target opens/s | achieved opens/s | events/s | lost | daemon CPU (cores) | daemon VmHWM MiB |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
        for st in c["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "| {:.0} | {:.0} | {:.0} | {}{} | {:.2} | {:.1} |",
                st["target_opens_per_second"].as_f64().unwrap_or(0.0),
                st["opens_per_second"].as_f64().unwrap_or(0.0),
                st["events_per_second"].as_f64().unwrap_or(0.0),
                st["lost"],
                if st["lost_event_in_file"] == true {
                    " (in file)"
                } else {
                    ""
                },
                st["daemon_cpu_cores"].as_f64().unwrap_or(0.0),
                st["daemon_peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            );
        }
        let best = &c["max_zero_loss"];
        let _ = writeln!(
            s,
            "\n**Max sustained with zero loss: {:.0} events/s** (daemon CPU {:.2} cores at that rate); \
             daemon peak memory (VmHWM, whole capacity run): **{:.1} MiB**{}.\n",
            best["events_per_second"].as_f64().unwrap_or(0.0),
            best["daemon_cpu_cores"].as_f64().unwrap_or(0.0),
            c["daemon_peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            if c["limited_by_generator"] == true {
                "; the generator could not go faster on this machine, so this is a lower bound"
            } else {
                ""
            }
        );
        if let Some(us) = c["daemon_cpu_us_per_event"].as_f64() {
            let _ = writeln!(
                s,
                "The daemon spent {us:.2} µs of CPU per event at that rate: one core would \
                 carry about {:.0} events/s (an estimate, not a measurement).\n",
                1e6 / us
            );
        }
    }

    let k = &r["kill_latency"];
    let _ = writeln!(s, "### User-space kill latency\n");
    if let Some(e) = k["error"].as_str() {
        let _ = writeln!(s, "Measurement failed: {e}\n");
    } else {
        let _ = writeln!(
            s,
            "Policy rule `exe = [\"sleep\"]`, `argv_contains = [\"4242\"]`, action kill (decided in \
             user space); `timeout 10 sleep 4242` run {} times in one session: {} killed. From the \
             events' `kill_latency_us`: p50 {} µs, p99 {} µs, max {} µs ({} events). `guard status` \
             reported `kill_latency_us` = `{}`.\n",
            k["runs"],
            fmt_opt_u64(&k["killed_before_timeout"]),
            fmt_opt_u64(&k["p50_us"]),
            fmt_opt_u64(&k["p99_us"]),
            fmt_opt_u64(&k["max_us"]),
            k["events_with_latency"],
            k["status_kill_latency_us"],
        );
    }

    let pc = &r["program_costs"];
    let _ = writeln!(
        s,
        "### Where the time goes: guard's programs in the kernel\n"
    );
    if let Some(e) = pc["error"].as_str() {
        let _ = writeln!(s, "Not measured: {e}\n");
    } else {
        let _ = writeln!(
            s,
            "From the kernel's BPF statistics (`kernel.bpf_stats_enabled`, on only for this \
             phase), with the micro workloads at a quarter of their size, under the floor's empty programs \
             and guard's own outside and inside a session. A program attached to several hooks \
             is counted once, over all of them. Programs that did not run are left out.\n"
        );
        let _ = writeln!(
            s,
            "| workload | setup | program | runs | ns/run | µs per workload iteration |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|");
        let mut rows: Vec<&Value> = pc["rows"].as_array().into_iter().flatten().collect();
        let rank = |x: &Value| {
            (
                WORKLOADS
                    .iter()
                    .position(|w| x["workload"] == w.name())
                    .unwrap_or(usize::MAX),
                SETUPS
                    .iter()
                    .position(|st| x["setup"] == st.name())
                    .unwrap_or(usize::MAX),
            )
        };
        rows.sort_by_key(|x| rank(x));
        for x in rows {
            let _ = writeln!(
                s,
                "| {} | {} | `{}` | {} | {:.0} | {:.2} |",
                x["workload"].as_str().unwrap_or("?"),
                x["setup"].as_str().unwrap_or("?"),
                x["program"].as_str().unwrap_or("?"),
                x["runs"],
                x["ns_per_run"].as_f64().unwrap_or(0.0),
                x["ns_per_iteration"].as_f64().unwrap_or(0.0) / 1000.0,
            );
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "### Targets\n");
    let _ = writeln!(s, "| target | measured | met |");
    let _ = writeln!(s, "|---|---|---|");
    for t in r["targets"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t["target"].as_str().unwrap_or("?"),
            t["measured"].as_str().unwrap_or("n/a"),
            match t["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "n/a",
            }
        );
    }
    let _ = writeln!(s);
    s
}

const DEFAULT_HEADER: &str = "# Benchmarks\n\n\
Run as root: `sudo -E env PATH=$PATH cargo xtask bench` (`--quick` for a smoke run, \
`--rounds N`). Raw timings: `bench-results.json`.\n\n";

/// Writes BENCHMARKS.md: the generated part between the markers, the rest kept.
fn write_markdown(path: &Path, r: &Value) -> Result<()> {
    let generated = format!("{BEGIN}\n{}{END}", results_markdown(r));
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{generated}{}", &old[..b], &old[e + END.len()..])
        }
        _ if old.is_empty() => format!("{DEFAULT_HEADER}{generated}\n"),
        _ => format!("{}\n{generated}\n", old.trim_end()),
    };
    fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))
}

fn print_summary(r: &Value) {
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

const CHART_PY: &str = r#"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
r = json.load(open(sys.argv[1]))
workloads = [w["name"] for w in r["workloads"]]
setups = [s["name"] for s in r["setups"] if s["available"] and s["name"] != "none"]
fig, ax = plt.subplots(figsize=(11, 5))
width = 0.8 / max(len(setups), 1)
for i, s in enumerate(setups):
    ys = [(r["summary"].get(w, {}).get(s, {}) or {}).get("ratio_to_none") or 0 for w in workloads]
    xs = [j + (i - (len(setups) - 1) / 2) * width for j in range(len(workloads))]
    bars = ax.bar(xs, ys, width, label=s)
    for x, y in zip(xs, ys):
        if y:
            ax.text(x, y, f"{y:.2f}", ha="center", va="bottom", fontsize=6, rotation=90)
ax.set_yscale("log")
ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
ax.axhline(1.0, color="black", linewidth=0.8)
ax.set_xticks(range(len(workloads)))
ax.set_xticklabels(workloads)
ax.set_ylabel("median time / median with nothing attached (log scale)")
m = r["machine"]
ax.set_title(f"guard benchmark: Linux {m['kernel']}, {m['nproc']} CPUs, {r['params']['rounds']} rounds")
ax.legend(fontsize=8, ncol=4)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"#;

/// bench-ratios.png through matplotlib in a venv under target/ (made on first use).
fn chart(json_path: &Path, png: &Path) -> Result<()> {
    let venv = util::target_dir().join("bench-venv");
    let python = venv.join("bin/python");
    let has_mpl = |py: &Path| {
        util::output(Command::new(py).args(["-c", "import matplotlib"]))
            .is_ok_and(|o| o.status.success())
    };
    if !has_mpl(&python) {
        log!("chart: making a venv with matplotlib in {}", venv.display());
        util::stdout_of(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        util::stdout_of(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "matplotlib",
        ]))?;
    }
    util::stdout_of(
        Command::new(&python)
            .args(["-c", CHART_PY])
            .arg(json_path)
            .arg(png),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dir = std::env::temp_dir().join(format!("xtask-bench-md-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let path = dir.join("B.md");
        fs::write(&path, format!("# Top\nintro\n{BEGIN}\nold\n{END}\ntail\n"))?;
        let r = json!({"machine": {}, "params": {"rounds": 1}, "capacity": {}, "kill_latency": {}});
        write_markdown(&path, &r)?;
        let s = fs::read_to_string(&path)?;
        fs::remove_dir_all(&dir)?;
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
}
