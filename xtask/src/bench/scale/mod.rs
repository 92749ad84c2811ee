//! `cargo xtask bench --scale`: what guard costs as the work grows, one dimension at
//! a time, everything else as in the `guard-inside` setup (log-only policy, no record
//! budget, a fresh daemon for each point):
//! - concurrent sessions (1, 10, 100), all opening files at once;
//! - the policy's size (10, 100, 1,000 file rules of three shapes: a path glob, a
//!   file name, a concrete directory matched by identity too);
//! - files under a protected directory (10,000 to 1,000,000: the identity index
//!   that guard builds of them and keeps current with inotify);
//! - distinct destinations of a session's datagrams (1 to 1,000).
//!
//! The kernel's figure is the run time of guard's programs as the kernel counts it
//! (`kernel.bpf_stats_enabled`, on for this phase only), summed over the programs
//! and divided by the operations the workload made, the median of three runs; the
//! daemon's are its CPU time per event (`guard status`) and its peak resident set.
//! [`report`] writes the tables into BENCHMARKS.md and draws the chart.

mod report;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

pub(super) use self::report::write_report;
use super::costs::{BpfStats, bpf_programs, ran};
use super::ctx::Ctx;
use super::guard::{cpu_seconds, events_total, guard_idle, lost_sum, start_guard_within, vm_hwm};
use super::process::which;
use super::process::{
    Proc, TempDir, check_interrupted, path_str, printed_seconds, run_timed, sleep,
};
use super::setups::{Setup, Workload};
use crate::util::log;

/// Runs of the workload at each point; the kernel's figure is their median (this
/// 2-CPU VM's noise is ±30% on one run).
const RUNS: usize = 5;

/// How long a daemon may take to be ready (the identity index of a large tree
/// is built before it is).
const READY_WITHIN: Duration = Duration::from_secs(600);

/// Files per directory of a protected tree.
const FILES_PER_DIR: u64 = 1_000;

/// The points measured along each dimension.
struct Sizes {
    sessions: &'static [u64],
    rules: &'static [u64],
    files: &'static [u64],
    destinations: &'static [u64],
}

impl Sizes {
    const FULL: Self = Self {
        sessions: &[1, 10, 100],
        rules: &[10, 100, 1_000],
        files: &[10_000, 100_000, 1_000_000],
        destinations: &[1, 10, 100, 1_000],
    };
    const QUICK: Self = Self {
        sessions: &[1, 10],
        rules: &[10, 100],
        files: &[1_000, 10_000],
        destinations: &[1, 100],
    };
}

/// The scale phase: every dimension's points (see the module's comment).
pub(super) fn scale(ctx: &mut Ctx, quick: bool) -> Result<Value> {
    if which("bpftool").is_none() {
        bail!("bpftool not found (Debian package bpftool)");
    }
    let sizes = if quick { Sizes::QUICK } else { Sizes::FULL };
    let _stats = BpfStats::enable()?;
    let mut out = json!({});
    log!("scale: concurrent sessions {:?}", sizes.sessions);
    out["sessions"] = points(sizes.sessions, |n| sessions(ctx, n))?;
    log!("scale: policy rules {:?}", sizes.rules);
    out["rules"] = points(sizes.rules, |n| rules(ctx, n))?;
    log!("scale: files under a protected directory {:?}", sizes.files);
    out["protected_files"] = points(sizes.files, |n| protected_files(ctx, n))?;
    log!("scale: distinct destinations {:?}", sizes.destinations);
    out["destinations"] = points(sizes.destinations, |n| destinations(ctx, n))?;
    Ok(out)
}

fn points(sizes: &[u64], mut one: impl FnMut(u64) -> Result<Value>) -> Result<Value> {
    let mut rows = Vec::new();
    for &n in sizes {
        check_interrupted()?;
        let row = one(n)?;
        log!("scale: {n}: {row}");
        rows.push(row);
    }
    Ok(Value::Array(rows))
}

/// A daemon started for one point, with what it took to be ready.
struct Daemon {
    proc: Proc,
    pid: u64,
    /// The BPF programs loaded before it (its own are the others).
    before: Vec<u64>,
    events: PathBuf,
    ready_seconds: f64,
}

impl Daemon {
    fn start(ctx: &mut Ctx, policy: &Path) -> Result<Self> {
        let before = bpf_programs()?.into_keys().collect();
        let events = ctx.next_file("scale", "jsonl");
        let t = Instant::now();
        let proc = start_guard_within(ctx, policy, false, &events, READY_WITHIN)?;
        let ready_seconds = t.elapsed().as_secs_f64();
        Ok(Self {
            pid: u64::from(proc.pid()),
            proc,
            before,
            events,
            ready_seconds,
        })
    }

    /// Runs `work` (which returns the operations it made) `RUNS` times; the median
    /// kernel time per operation, and the daemon's CPU time per event and events and
    /// losses over all runs.
    fn measure(&self, ctx: &Ctx, mut work: impl FnMut() -> Result<u64>) -> Result<Window> {
        let s0 = guard_idle(ctx)?;
        let mut per_op = Vec::new();
        let mut ops = 0;
        for _ in 0..RUNS {
            check_interrupted()?;
            let k0 = bpf_programs()?;
            let n = work()?;
            let k1 = bpf_programs()?;
            let ns: u64 = ran(&k0, &k1, self.pid, &self.before)
                .iter()
                .map(|(_, _, ns)| ns)
                .sum();
            per_op.push(ns as f64 / n.max(1) as f64);
            ops += n;
        }
        let s1 = guard_idle(ctx)?;
        per_op.sort_by(f64::total_cmp);
        let events = events_total(&s1).saturating_sub(events_total(&s0));
        Ok(Window {
            kernel_ns_per_op: per_op[per_op.len() / 2],
            ops,
            events,
            lost: lost_sum(&s1).saturating_sub(lost_sum(&s0)),
            daemon_us_per_event: (cpu_seconds(&s1) - cpu_seconds(&s0)) * 1e6 / events.max(1) as f64,
        })
    }

    /// [`Self::measure`] of a session opening the eight files in turn (every open
    /// judged and recorded).
    fn opens_in_session(&self, ctx: &Ctx) -> Result<Window> {
        let opens = (ctx.params.open_n / 2).max(1000);
        self.measure(ctx, || {
            run_timed(
                &mut ctx.workload_command_n(Setup::GuardInside, Workload::Files, opens),
                Duration::from_secs(600),
            )?;
            Ok(opens)
        })
    }

    /// The last `policy_loaded` line of its events file.
    fn policy_loaded(&self) -> Value {
        fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .rev()
            .filter(|l| l.contains("\"kind\":\"policy_loaded\""))
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null)
    }

    fn stop(mut self) -> Option<u64> {
        let hwm = vm_hwm(self.proc.pid());
        self.proc.stop(libc::SIGTERM, Duration::from_secs(30));
        let _ = fs::remove_file(&self.events);
        hwm
    }
}

/// What one point measured while the workload ran.
struct Window {
    kernel_ns_per_op: f64,
    ops: u64,
    events: u64,
    lost: u64,
    daemon_us_per_event: f64,
}

impl Window {
    fn json(&self, op: &str) -> Value {
        json!({
            format!("kernel_ns_per_{op}"): self.kernel_ns_per_op,
            format!("{op}s"): self.ops,
            "events": self.events,
            "lost": self.lost,
            "daemon_us_per_event": self.daemon_us_per_event,
        })
    }
}

/// Adds `more`'s fields to `v`.
fn with(mut v: Value, more: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), more) {
        a.extend(b);
    }
    v
}

/// The seconds each command's workload printed, the commands run all at once.
fn run_together(cmds: Vec<Command>) -> Result<Vec<f64>> {
    std::thread::scope(|s| {
        let running: Vec<_> = cmds
            .into_iter()
            .map(|mut cmd| s.spawn(move || run_timed(&mut cmd, Duration::from_secs(900))))
            .collect();
        running
            .into_iter()
            .map(|t| {
                let out = t
                    .join()
                    .map_err(|_| anyhow::anyhow!("a workload thread panicked"))??;
                printed_seconds(&out)
            })
            .collect()
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// `n` sessions at once, each opening the eight files in turn (every open judged
/// and recorded), the opens of a run shared among them.
fn sessions(ctx: &mut Ctx, n: u64) -> Result<Value> {
    let total = ctx.params.open_n;
    let each = (total / n).max(100);
    let batch = |ctx: &Ctx, setup: Setup| -> Result<Vec<f64>> {
        run_together(
            (0..n)
                .map(|_| ctx.workload_command_n(setup, Workload::Files, each))
                .collect(),
        )
    };
    let none = batch(ctx, Setup::None)?;
    let policy = ctx.log_policy.clone();
    let daemon = Daemon::start(ctx, &policy)?;
    let mut inside = Vec::new();
    let window = daemon.measure(ctx, || {
        inside = batch(ctx, Setup::GuardInside)?;
        Ok(each * n)
    })?;
    let hwm = daemon.stop();
    Ok(with(
        json!({
            "sessions": n,
            "opens_per_session": each,
            "loop_seconds_mean_none": mean(&none),
            "loop_seconds_mean_inside": mean(&inside),
            "daemon_peak_rss_bytes": hwm,
        }),
        window.json("open"),
    ))
}

/// A policy of the log-only one and `n` file rules that kill on reads, of three
/// shapes in turn; none matches what the workloads open, so every check runs to
/// its end. The concrete directories are made under `root`.
fn rules_policy(ctx: &Ctx, root: &Path, n: u64) -> Result<String> {
    let mut text = fs::read_to_string(&ctx.log_policy)?;
    let root = path_str(root);
    for i in 0..n {
        let paths = match i % 3 {
            0 => format!("{root}/p{i}/*.key"),
            1 => format!("*.scale{i}"),
            _ => {
                let dir = format!("{root}/c{i}");
                fs::create_dir_all(&dir)?;
                format!("{dir}/**")
            }
        };
        let _ = write!(
            text,
            "\n[[rule]]\nid = \"scale-{i}\"\nkind = \"file\"\naccess = [\"read\"]\n\
             paths = [\"{paths}\"]\naction = \"kill\"\n"
        );
    }
    Ok(text)
}

/// Seconds `cmd` took; it must exit with one of `codes`.
fn timed(cmd: &mut Command, codes: &[i32]) -> Result<f64> {
    let t = Instant::now();
    let out = crate::util::output(cmd).with_context(|| crate::util::display(cmd))?;
    let took = t.elapsed().as_secs_f64();
    if !out.status.code().is_some_and(|c| codes.contains(&c)) {
        bail!(
            "`{}` failed ({}): {}",
            crate::util::display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// A policy of `n` rules: checking it, loading it, what an open costs under it in the
/// kernel and in the daemon, and replaying a run's events against it.
fn rules(ctx: &mut Ctx, n: u64) -> Result<Value> {
    let root = ctx.dir.join(format!("scale-rules-{n}"));
    let policy = ctx.next_file("scale-rules", "toml");
    fs::write(&policy, rules_policy(ctx, &root, n)?)?;
    let check_seconds = timed(
        Command::new(&ctx.guard)
            .args(["policy", "check"])
            .arg(&policy),
        &[0],
    )?;
    let daemon = Daemon::start(ctx, &policy)?;
    // Read while the events file is short (the run adds 500,000 lines).
    let loaded = daemon.policy_loaded();
    let window = daemon.opens_in_session(ctx)?;
    // The replay reads the run's events (the file is the daemon's until it stops).
    let events = ctx.next_file("scale-replay", "jsonl");
    fs::copy(&daemon.events, &events)?;
    let ready_seconds = daemon.ready_seconds;
    let hwm = daemon.stop();
    let lines = fs::read_to_string(&events)?.lines().count();
    // Exit 2: something would fire differently (the policy is not the one the
    // events were recorded under): a replay all the same.
    let replay_seconds = timed(
        Command::new(&ctx.guard)
            .args(["policy", "test", "--json"])
            .arg(&policy)
            .arg(&events),
        &[0, 2],
    )?;
    let _ = fs::remove_file(&events);
    let _ = fs::remove_dir_all(&root);
    Ok(with(
        json!({
            "rules": n,
            "kernel_entries": loaded["kernel_entries"],
            "identity_entries": loaded["identity_entries"],
            "check_seconds": check_seconds,
            "ready_seconds": ready_seconds,
            "replay_events": lines,
            "replay_us_per_event": replay_seconds * 1e6 / lines.max(1) as f64,
            "daemon_peak_rss_bytes": hwm,
        }),
        window.json("open"),
    ))
}

/// Makes `n` files under `root`, [`FILES_PER_DIR`] a directory: the seconds it took.
fn make_tree(root: &Path, n: u64) -> Result<f64> {
    let t = Instant::now();
    for i in 0..n {
        let dir = root.join(format!("d{}", i / FILES_PER_DIR));
        if i % FILES_PER_DIR == 0 {
            fs::create_dir_all(&dir)?;
        }
        fs::File::create(dir.join(format!("f{i}")))?.write_all(b"x")?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Inotify watches a process holds.
fn inotify_watches(pid: u32) -> u64 {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|s| s.lines().filter(|l| l.starts_with("inotify wd:")).count() as u64)
        .sum()
}

/// The daemon's CPU seconds, once it has held still for half a second.
fn settled_cpu(ctx: &Ctx) -> Result<f64> {
    let start = Instant::now();
    let mut last = cpu_seconds(&guard_idle(ctx)?);
    loop {
        sleep(Duration::from_millis(500))?;
        let now = cpu_seconds(&guard_idle(ctx)?);
        if now - last < 0.005 || start.elapsed() > Duration::from_secs(120) {
            return Ok(now);
        }
        last = now;
    }
}

/// Changes, one at a time, that keep-current is measured with; spaced past the
/// index's debounce (50 ms), so each is indexed on its own.
const CHANGES: u64 = 20;

/// `n` files under a directory a kill rule protects: the time and memory the
/// identity index takes to build, the daemon's CPU time to keep it current (a file
/// created at a time, then a thousand at once), and what an open elsewhere costs.
fn protected_files(ctx: &mut Ctx, n: u64) -> Result<Value> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm } else { ctx.dir.as_path() };
    let (_tmp, root) = TempDir::new_in(base, "gbench-vault-")?;
    let make_seconds = make_tree(&root, n)?;
    let mut text = fs::read_to_string(&ctx.log_policy)?;
    let _ = write!(
        text,
        "\n[[rule]]\nid = \"vault\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{}/**\"]\naction = \"kill\"\n",
        path_str(&root)
    );
    let policy = ctx.next_file("scale-vault", "toml");
    fs::write(&policy, text)?;
    let daemon = Daemon::start(ctx, &policy)?;
    let loaded = daemon.policy_loaded();
    let watches = inotify_watches(daemon.proc.pid());
    let rss_ready = vm_hwm(daemon.proc.pid());
    // Keeping current: one file at a time, then a thousand at once, in a new
    // directory of the tree.
    let fresh = root.join("fresh");
    fs::create_dir(&fresh)?;
    let c0 = settled_cpu(ctx)?;
    for i in 0..CHANGES {
        fs::write(fresh.join(format!("one-{i}")), "x")?;
        sleep(Duration::from_millis(150))?;
    }
    let c1 = settled_cpu(ctx)?;
    for i in 0..1_000 {
        fs::write(fresh.join(format!("many-{i}")), "x")?;
    }
    let c2 = settled_cpu(ctx)?;
    let window = daemon.opens_in_session(ctx)?;
    let ready_seconds = daemon.ready_seconds;
    let hwm = daemon.stop();
    Ok(with(
        json!({
            "files": n,
            "directories": n.div_ceil(FILES_PER_DIR),
            "make_seconds": make_seconds,
            "ready_seconds": ready_seconds,
            "identity_entries": loaded["identity_entries"],
            "identity_over": loaded["identity_over"],
            "inotify_watches": watches,
            "daemon_rss_bytes_at_ready": rss_ready,
            "daemon_cpu_ms_per_change": (c1 - c0) * 1e3 / CHANGES as f64,
            "daemon_cpu_ms_for_1000_at_once": (c2 - c1) * 1e3,
            "daemon_peak_rss_bytes": hwm,
        }),
        window.json("open"),
    ))
}

/// A session sending datagrams to `n` distinct destinations in turn.
fn destinations(ctx: &mut Ctx, n: u64) -> Result<Value> {
    let sends = ctx.params.connect_n.max(1_000);
    let policy = ctx.log_policy.clone();
    let daemon = Daemon::start(ctx, &policy)?;
    let window = daemon.measure(ctx, || {
        let args = vec![ctx.ids(), "sendto".into(), sends.to_string(), n.to_string()];
        run_timed(
            &mut ctx.program_command(true, args),
            Duration::from_secs(600),
        )?;
        Ok(sends)
    })?;
    let hwm = daemon.stop();
    Ok(with(
        json!({
            "destinations": n,
            "daemon_peak_rss_bytes": hwm,
        }),
        window.json("send"),
    ))
}
