//! Deadlines, and what a test was doing when one expired.
//!
//! Every wait of a test is bounded: each has its own timeout (events, a run, a stop),
//! and a process-wide deadline ([`arm`], by the first fixture a test makes) bounds the
//! whole test, the waits no timeout covers included (a process stuck in the kernel
//! that a `wait(2)` would wait for forever). When either expires the test prints
//! what it was waiting for ([`waiting`]) and the state it can see: each live
//! daemon's last events and log, the processes it started (with their kernel state
//! and, when stuck, their kernel stack), and its pin directories. A deadline that
//! expires then ends the test's processes, removes its pins and network
//! namespaces, and exits the test process with a failure: a hung test never hangs
//! the run and never leaves programs attached.
//!
//! Fixtures register what they own ([`own_group`], [`own_daemon`], [`own_pins`],
//! [`own_netns`]) and drop it from the registry when they clean up themselves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};
use std::{env, fs, process, thread};

/// The whole test's deadline by default (`GUARD_E2E_TEST_DEADLINE` seconds
/// overrides it; `cargo xtask vm-test` sets it in the VMs). Below the test
/// runner's own limit (`.config/nextest.toml`), so that this one speaks first.
pub const TEST_DEADLINE: Duration = Duration::from_secs(240);

/// The environment variable that sets [`TEST_DEADLINE`], in seconds.
pub const DEADLINE_ENV: &str = "GUARD_E2E_TEST_DEADLINE";

/// Events shown per daemon in a state dump.
const EVENTS_SHOWN: usize = 40;
/// Log lines shown per daemon in a state dump.
const LOG_SHOWN: usize = 40;

/// What a live daemon shows in a state dump.
struct DaemonView {
    pid: u32,
    events: Option<PathBuf>,
    log: std::sync::Arc<Mutex<String>>,
}

#[derive(Default)]
struct Registry {
    /// What the test is waiting for, innermost last.
    waits: BTreeMap<u64, String>,
    /// Process groups the test started (their leaders' pids).
    groups: BTreeMap<u64, i32>,
    daemons: BTreeMap<u64, DaemonView>,
    pins: BTreeMap<u64, PathBuf>,
    netns: BTreeMap<u64, String>,
    links: BTreeMap<u64, String>,
    /// The test's name and when its deadline expires, once armed.
    armed: Option<(String, Instant)>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    // A test that panicked while holding the lock leaves it poisoned; the registry
    // stays usable (every update is a single insert or remove).
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = registry();
    f(guard.get_or_insert_with(Registry::default))
}

/// Set to print, on stderr, how long each wait of [`waiting`] took (to see where a
/// slow test's time goes: `--nocapture` shows it).
pub const TRACE_ENV: &str = "GUARD_E2E_TRACE_WAITS";

/// The first traced wait's start: the trace's times are from it.
static TRACE_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// What a registration returns: dropping it removes the entry.
#[must_use = "the entry is removed when this is dropped"]
pub struct Entry {
    id: u64,
    remove: fn(&mut Registry, u64),
    /// A wait's description and start, when [`TRACE_ENV`] is set.
    traced: Option<(String, Instant)>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let (id, remove) = (self.id, self.remove);
        with(|r| remove(r, id));
        if let Some((what, started)) = self.traced.take() {
            let _ = writeln!(
                std::io::stderr().lock(),
                "[at {:>6} ms, waited {:>6} ms] {what}",
                started
                    .duration_since(TRACE_START.get().copied().unwrap_or(started))
                    .as_millis(),
                started.elapsed().as_millis()
            );
        }
    }
}

fn entry(add: impl FnOnce(&mut Registry, u64), remove: fn(&mut Registry, u64)) -> Entry {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    with(|r| add(r, id));
    Entry {
        id,
        remove,
        traced: None,
    }
}

/// Says what the test waits for until the returned value is dropped; a deadline
/// that expires meanwhile names it.
pub fn waiting(what: impl Into<String>) -> Entry {
    let what = what.into();
    let traced = env::var_os(TRACE_ENV).map(|_| {
        let now = Instant::now();
        TRACE_START.get_or_init(|| now);
        (what.clone(), now)
    });
    let mut e = entry(
        |r, id| {
            r.waits.insert(id, what);
        },
        |r, id| {
            r.waits.remove(&id);
        },
    );
    e.traced = traced;
    e
}

/// A process group the test started (`pgid`, its leader's pid): shown in state
/// dumps, killed when the deadline expires.
pub fn own_group(pgid: i32) -> Entry {
    entry(
        |r, id| {
            r.groups.insert(id, pgid);
        },
        |r, id| {
            r.groups.remove(&id);
        },
    )
}

/// A daemon the test started: its events file (None: on its stdout) and log.
pub fn own_daemon(pid: u32, events: Option<PathBuf>, log: &std::sync::Arc<Mutex<String>>) -> Entry {
    let log = std::sync::Arc::clone(log);
    entry(
        |r, id| {
            r.daemons.insert(id, DaemonView { pid, events, log });
        },
        |r, id| {
            r.daemons.remove(&id);
        },
    )
}

/// A pin directory the test owns: listed in state dumps, removed when the deadline
/// expires.
pub fn own_pins(path: &Path) -> Entry {
    let path = path.to_path_buf();
    entry(
        |r, id| {
            r.pins.insert(id, path);
        },
        |r, id| {
            r.pins.remove(&id);
        },
    )
}

/// A network namespace the test made: deleted when the deadline expires.
pub fn own_netns(name: &str) -> Entry {
    let name = name.to_owned();
    entry(
        |r, id| {
            r.netns.insert(id, name);
        },
        |r, id| {
            r.netns.remove(&id);
        },
    )
}

/// A network link the test made (one end of a veth pair): deleted when the
/// deadline expires.
pub fn own_link(name: &str) -> Entry {
    let name = name.to_owned();
    entry(
        |r, id| {
            r.links.insert(id, name);
        },
        |r, id| {
            r.links.remove(&id);
        },
    )
}

/// The deadline of the whole test: [`TEST_DEADLINE`] or `$GUARD_E2E_TEST_DEADLINE`.
pub fn test_deadline() -> Duration {
    env::var(DEADLINE_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(TEST_DEADLINE, Duration::from_secs)
}

/// Starts the test's deadline (once per process: the test runner runs each test in
/// a process of its own). `extra` lengthens it for a test known to take long (a
/// real agent's session). Called by the fixtures; a test need not call it.
pub fn arm(extra: Duration) {
    static STARTED: Once = Once::new();
    let name = thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    let until = Instant::now() + test_deadline() + extra;
    with(|r| match &mut r.armed {
        Some((_, at)) if *at >= until => {}
        armed => *armed = Some((name, until)),
    });
    STARTED.call_once(|| {
        thread::Builder::new()
            .name("guard-e2e-deadline".to_owned())
            .spawn(deadline_thread)
            .expect("spawn the deadline thread");
    });
}

fn deadline_thread() {
    loop {
        let armed = with(|r| r.armed.clone());
        let Some((test, until)) = armed else {
            return;
        };
        let now = Instant::now();
        if now < until {
            thread::sleep((until - now).min(Duration::from_secs(1)));
            continue;
        }
        let report = format!(
            "\nDEADLINE: {test} did not finish within its deadline ({:?}; {DEADLINE_ENV} \
             sets it)\n{}",
            test_deadline(),
            state()
        );
        // Straight to the descriptor: the harness captures what the test prints.
        let _ = std::io::stderr().lock().write_all(report.as_bytes());
        clean_up();
        let _ = std::io::stderr().lock().flush();
        process::exit(101);
    }
}

/// Ends what the registry says the test owns: its process groups and daemons
/// (SIGKILL), its pins and its network namespaces. For a test that will not get to
/// its own clean-up.
fn clean_up() {
    let (groups, daemons, pins, netns, links) = with(|r| {
        (
            r.groups.values().copied().collect::<Vec<_>>(),
            r.daemons.values().map(|d| d.pid).collect::<Vec<_>>(),
            r.pins.values().cloned().collect::<Vec<_>>(),
            r.netns.values().cloned().collect::<Vec<_>>(),
            r.links.values().cloned().collect::<Vec<_>>(),
        )
    });
    for link in links {
        let _ = process::Command::new("ip")
            .args(["link", "del", &link])
            .status();
    }
    for pgid in groups {
        // SAFETY: signalling a process group this test started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    for pid in daemons {
        // SAFETY: signalling a daemon this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    for pins in pins {
        if let Err(e) = fs::remove_dir_all(&pins)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            let _ = writeln!(
                std::io::stderr().lock(),
                "cannot remove the test's pins {}: {e}",
                pins.display()
            );
        }
    }
    for name in netns {
        let _ = process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
    }
}

/// What the test was waiting for and what it can see: for failure messages.
pub fn state() -> String {
    let (waits, groups, daemons, pins) = with(|r| {
        (
            r.waits.values().cloned().collect::<Vec<_>>(),
            r.groups.values().copied().collect::<Vec<_>>(),
            r.daemons
                .values()
                .map(|d| (d.pid, d.events.clone(), std::sync::Arc::clone(&d.log)))
                .collect::<Vec<_>>(),
            r.pins.values().cloned().collect::<Vec<_>>(),
        )
    });
    let mut out = String::from("--- test state ---\n");
    if waits.is_empty() {
        out.push_str("waiting for: nothing registered\n");
    } else {
        let _ = writeln!(out, "waiting for: {}", waits.join(" / "));
    }
    for (pid, events, log) in &daemons {
        let _ = writeln!(out, "daemon {pid}:");
        match events {
            Some(path) => {
                let text = fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(EVENTS_SHOWN);
                let _ = writeln!(
                    out,
                    "  last {} of {} events ({}):",
                    lines.len() - from,
                    lines.len(),
                    path.display()
                );
                for line in &lines[from..] {
                    let _ = writeln!(out, "    {line}");
                }
            }
            None => out.push_str("  (events on its stdout)\n"),
        }
        let log = log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(LOG_SHOWN);
        let _ = writeln!(out, "  last {} log lines:", lines.len() - from);
        for line in &lines[from..] {
            let _ = writeln!(out, "    {line}");
        }
    }
    out.push_str(&processes(
        &groups,
        &daemons.iter().map(|d| d.0).collect::<Vec<_>>(),
    ));
    for path in &pins {
        let _ = writeln!(
            out,
            "pins {}: {}",
            path.display(),
            list_tree(path).join(" ")
        );
    }
    out.push_str("--- end of test state ---");
    out
}

/// One line per process of the test (its descendants, its process groups, its
/// daemons): pid, ppid, state, what it waits on in the kernel and its command
/// line; the kernel stack of any in uninterruptible sleep.
fn processes(groups: &[i32], daemons: &[u32]) -> String {
    let me = process::id() as i32;
    let all = all_processes();
    let mut mine: Vec<&Proc> = all
        .iter()
        .filter(|p| {
            groups.contains(&p.pgid)
                || daemons.contains(&(p.pid as u32))
                || descends_from(&all, p.pid, me)
        })
        .collect();
    mine.sort_by_key(|p| p.pid);
    let mut out = format!("processes ({}):\n", mine.len());
    for p in mine {
        let wchan = fs::read_to_string(format!("/proc/{}/wchan", p.pid)).unwrap_or_default();
        let cmdline = fs::read(format!("/proc/{}/cmdline", p.pid))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim_end()
                    .chars()
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:>7} {:>7} {} {:<24} {} [{}]",
            p.pid, p.ppid, p.state, wchan, cmdline, p.comm
        );
        if p.state == 'D' {
            let stack = fs::read_to_string(format!("/proc/{}/stack", p.pid)).unwrap_or_default();
            for line in stack.lines() {
                let _ = writeln!(out, "            {line}");
            }
        }
    }
    out
}

struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
    state: char,
    comm: String,
}

fn all_processes() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            let pgid = fields.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                pgid,
                state,
                comm,
            })
        })
        .collect()
}

fn descends_from(all: &[Proc], pid: i32, ancestor: i32) -> bool {
    let mut at = pid;
    for _ in 0..64 {
        if at == ancestor {
            return pid != ancestor;
        }
        match all.iter().find(|p| p.pid == at) {
            Some(p) if p.ppid > 0 => at = p.ppid,
            _ => return false,
        }
    }
    false
}

/// The paths under `dir`, relative to it.
fn list_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = fs::read_dir(&at) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        out.push("(empty or absent)".to_owned());
    }
    out
}

/// Waits for `child` to be reaped, up to `timeout`; `None` if it was not (a
/// process stuck in the kernel ignores even SIGKILL): the caller says so instead
/// of waiting forever.
pub fn reap(child: &mut process::Child, timeout: Duration) -> Option<process::ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if start.elapsed() >= timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` to its end with its output captured, up to `timeout`; a command
/// still running then is killed and the test fails, saying what it ran and the
/// state.
pub fn output(cmd: &mut process::Command, timeout: Duration) -> process::Output {
    use std::io::Read as _;
    let what = format!("{cmd:?}");
    let _w = waiting(format!("{what} to finish"));
    let mut child = cmd
        .stdin(process::Stdio::null())
        .stdout(process::Stdio::piped())
        .stderr(process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut pipes = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .map(|pipe| {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut pipe) = pipe {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                let _ = tx.send(bytes);
            });
        }
        rx
    });
    let Some(status) = reap(&mut child, timeout) else {
        let _ = child.kill();
        let reaped = reap(&mut child, Duration::from_secs(5)).is_some();
        panic!(
            "{what} did not finish within {timeout:?}{}\n{}",
            if reaped {
                "; killed it"
            } else {
                "; it ignores SIGKILL"
            },
            state()
        );
    };
    let [out, err] = &mut pipes;
    process::Output {
        status,
        stdout: out.recv_timeout(Duration::from_secs(5)).unwrap_or_default(),
        stderr: err.recv_timeout(Duration::from_secs(5)).unwrap_or_default(),
    }
}
