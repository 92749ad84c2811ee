//! Self-protection (docs/threat-model.md, "Self-protection"): a process of a session,
//! running as root, may not signal guard's daemon, trace it, read its memory or its
//! files under /proc, open its pins, or call bpf(2) or perf_event_open(2). Where
//! BPF-LSM runs each attempt fails with EPERM and the process lives; on the
//! tracepoint tier the process is killed at the system call. Either way each attempt
//! is a `tamper` event naming it, and processes outside the session are not affected.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use guard_tests::{
    Daemon, Event, EventsTo, FakeAgent, Finished, PinDir, REQUIRE_LSM_ENV, TempDir, dump,
    fake_agent_exe, find, write_policy,
};

const EPERM: i64 = libc::EPERM as i64;

/// How self-protection runs here, from the daemon's `policy_loaded` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    /// BPF-LSM refuses with EPERM.
    Lsm,
    /// The tracepoints kill the offender at the system call.
    Tracepoint,
}

struct Setup {
    agent: FakeAgent,
    dir: TempDir,
    pins: Arc<PinDir>,
    policy: PathBuf,
    daemon: Daemon,
    tier: Tier,
}

impl Setup {
    fn new() -> Self {
        let agent = FakeAgent::install(fake_agent_exe!());
        let dir = TempDir::new("guard-e2e-tamper");
        let secret = dir.join("secret.txt");
        fs::write(&secret, "TAMPER-SECRET-5be\n").expect("write secret");
        let policy = dir.join("guard.toml");
        write_policy(
            &policy,
            &format!(
                "mode = \"enforce\"\n\n[agents]\nnames = [\"{}\"]\n\n\
                 [[rule]]\nid = \"no-secret\"\nkind = \"file\"\npaths = [\"{}\"]\n\
                 access = [\"read\"]\naction = \"kill\"\n",
                agent.name(),
                secret.display()
            ),
        );
        let pins = Arc::new(PinDir::new());
        let mut daemon = start(&pins, &policy);
        let events = daemon.wait_for("policy_loaded", |ev| {
            ev.iter().any(|e| e.kind() == "policy_loaded")
        });
        let loaded = find(&events, "policy_loaded", |e| e.kind() == "policy_loaded");
        let tier = tier_of(loaded);
        if std::env::var_os(REQUIRE_LSM_ENV).is_some() {
            assert_eq!(
                tier,
                Tier::Lsm,
                "BPF-LSM is required on this kernel but self-protection runs on {tier:?}: {loaded}"
            );
        }
        Self {
            agent,
            dir,
            pins,
            policy,
            daemon,
            tier,
        }
    }

    fn guard_pid(&self) -> u32 {
        self.daemon.pid().expect("the daemon runs")
    }

    /// One attempt, as the root of a session of its own.
    fn attempt(&self, args: &[&str]) -> Finished {
        let mut all = vec!["tamper"];
        all.extend_from_slice(args);
        self.agent.spawn(&all).finish()
    }

    /// Asserts the attempt was stopped as this tier stops it, and that the daemon
    /// reported it as a `tamper` event with `op` (and `target_pid` when given);
    /// returns the event.
    fn stopped(&mut self, what: &str, f: &Finished, op: &str, target: Option<u32>) -> Event {
        match self.tier {
            Tier::Lsm => {
                assert_eq!(
                    (f.signal(), f.reports.get("attempt").map(String::as_str)),
                    (None, Some("-1")),
                    "{what}: expected EPERM and a live process: {f:?}"
                );
                assert_eq!(f.report("alive"), 1, "{what}: {f:?}");
            }
            Tier::Tracepoint => {
                assert_eq!(
                    f.signal(),
                    Some(libc::SIGKILL),
                    "{what}: expected the process killed at the system call: {f:?}"
                );
                assert!(
                    !f.reports.contains_key("attempt"),
                    "{what}: the killed process saw its system call return: {f:?}"
                );
            }
        }
        let pid = f.pid;
        let events = self
            .daemon
            .wait_for(&format!("the tamper event of {what}"), |ev| {
                ev.iter()
                    .any(|e| e.kind() == "tamper" && e.pid() == Some(pid))
            });
        let ev = find(&events, what, |e| {
            e.kind() == "tamper" && e.pid() == Some(pid)
        })
        .clone();
        assert_eq!(ev.str("op"), Some(op), "{what}: {ev}");
        if let Some(target) = target {
            assert_eq!(
                ev.int("target_pid"),
                Some(i64::from(target)),
                "{what}: {ev}"
            );
        }
        let done = match self.tier {
            Tier::Lsm => ("denied", "deny", "denied"),
            Tier::Tracepoint => ("killed", "kill", "killed"),
        };
        assert_eq!(
            (ev.str("done"), ev.str("action"), ev.str("outcome")),
            (Some(done.0), Some(done.1), Some(done.2)),
            "{what}: {ev}"
        );
        assert_eq!(ev.str("rule"), Some("self_protection"), "{what}: {ev}");
        assert_eq!(ev.bool("alert"), Some(true), "{what}: {ev}");
        ev
    }

    /// Asserts that the attempt was allowed and nothing was reported about it.
    fn allowed(&mut self, what: &str, f: &Finished) -> i64 {
        assert_eq!(f.signal(), None, "{what}: killed: {f:?}");
        assert_eq!(f.report("alive"), 1, "{what}: {f:?}");
        let rc = f.report("attempt");
        // The session's end comes after anything the attempt made the kernel report.
        let pid = f.pid;
        let events = self
            .daemon
            .wait_for(&format!("the session of {what} to end"), |ev| {
                ev.iter()
                    .any(|e| e.kind() == "session_end" && e.int("root_pid") == Some(pid))
            });
        assert!(
            !events
                .iter()
                .any(|e| e.kind() == "tamper" && e.pid() == Some(pid)),
            "{what} was reported as tamper:\n{}",
            dump(&events)
        );
        rc
    }
}

fn start(pins: &Arc<PinDir>, policy: &Path) -> Daemon {
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    Daemon::start_on(pins, &[], EventsTo::File, &args)
}

fn tier_of(loaded: &Event) -> Tier {
    let row = loaded
        .get("enforcement")
        .and_then(Value::as_array)
        .and_then(|rows| {
            rows.iter()
                .find(|r| r.get("action").and_then(Value::as_str) == Some("self_protection"))
        })
        .unwrap_or_else(|| panic!("no self_protection row in policy_loaded: {loaded}"));
    match row.get("tier").and_then(Value::as_str) {
        Some("bpf_lsm") => Tier::Lsm,
        Some("tracepoint") => Tier::Tracepoint,
        other => panic!("self-protection runs on {other:?}: {loaded}"),
    }
}

/// A thread of the daemon, other than its main one where it has more (the daemon
/// runs single-threaded today: then the main thread's own task/ entry).
fn a_thread(pid: u32) -> u32 {
    let tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list the daemon's threads")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    tids.iter().copied().find(|tid| *tid != pid).unwrap_or(pid)
}

/// ptrace, process_vm_readv, reads of /proc/<guard>/environ (also through a thread's
/// task/ directory), the pin directory, bpf() and perf_event_open() from a session
/// are stopped and reported; `ps`-like reads and `kill -0` are not; the daemon is
/// untouched; the test itself (outside any session) still reads what the session
/// may not.
#[test]
fn attempts_on_guard_from_a_session_are_stopped_and_reported() {
    let mut s = Setup::new();
    let guard = s.guard_pid();
    let g = guard.to_string();
    let tid = a_thread(guard);
    let pins = s.pins.path().display().to_string();

    let f = s.attempt(&["seize", &g]);
    let op = if s.tier == Tier::Lsm {
        "ptrace_access"
    } else {
        "ptrace"
    };
    let ev = s.stopped("ptrace(PTRACE_SEIZE) of guard", &f, op, Some(guard));
    if s.tier == Tier::Tracepoint {
        assert_eq!(ev.str("syscall"), Some("ptrace"), "{ev}");
        assert_eq!(ev.int("request"), Some(0x4206), "{ev}");
    }

    let f = s.attempt(&["vmread", &g]);
    let op = if s.tier == Tier::Lsm {
        "ptrace_access"
    } else {
        "process_vm"
    };
    s.stopped("process_vm_readv of guard", &f, op, Some(guard));

    let environ = format!("/proc/{guard}/environ");
    let f = s.attempt(&["read", &environ]);
    let ev = s.stopped(
        "a read of /proc/<guard>/environ",
        &f,
        "proc_open",
        Some(guard),
    );
    assert_eq!(ev.str("path"), Some(environ.as_str()), "{ev}");
    assert!(
        !f.stdout.contains("GUARD") && !f.stdout.contains("PATH="),
        "the environment leaked: {f:?}"
    );

    let thread_environ = format!("/proc/{guard}/task/{tid}/environ");
    let f = s.attempt(&["read", &thread_environ]);
    let ev = s.stopped(
        "a read of a thread's /proc/<guard>/task/<tid>/environ",
        &f,
        "proc_open",
        Some(tid),
    );
    assert_eq!(ev.str("path"), Some(thread_environ.as_str()), "{ev}");

    let f = s.attempt(&["opendir", &pins]);
    let ev = s.stopped("opening the pin directory", &f, "pin_open", None);
    assert_eq!(ev.str("path"), Some(pins.as_str()), "{ev}");

    let f = s.attempt(&["bpf"]);
    let ev = s.stopped("bpf(BPF_PROG_GET_NEXT_ID)", &f, "bpf", None);
    assert_eq!(ev.int("bpf_cmd"), Some(11), "{ev}");

    let f = s.attempt(&["perf"]);
    s.stopped("perf_event_open", &f, "perf_event_open", None);

    // What `ps` reads, and a mere existence check, are allowed.
    let status = format!("/proc/{guard}/status");
    let f = s.attempt(&["read", &status]);
    assert!(s.allowed("a read of /proc/<guard>/status", &f) > 0, "{f:?}");
    let f = s.attempt(&["signal", &g, "0"]);
    assert_eq!(s.allowed("kill -0 of guard", &f), 0, "{f:?}");

    // guard is untouched, and outside the session nothing changed.
    assert!(s.daemon.pid().is_some());
    let mine = fs::read(&environ).expect("the test reads the daemon's environ");
    assert!(!mine.is_empty(), "the daemon's environment is empty?");
    let state = fs::read_to_string(&status).expect("the daemon's status");
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("State:") && !l.contains("T (stopped)")),
        "{state}"
    );

    // On BPF-LSM, removing a pin is refused too (the tracepoint tier cannot refuse an
    // unlink: threat-model.md says so).
    if s.tier == Tier::Lsm {
        let prog = fs::read_dir(s.pins.path().join("progs"))
            .expect("list progs/")
            .filter_map(|e| Some(e.ok()?.path()))
            .next()
            .expect("a pinned program");
        let spec = format!("unlink:{}", prog.display());
        let f = s.agent.spawn(&["fs-try", &spec]).finish();
        assert_eq!(f.report(&spec), EPERM, "{f:?}");
        assert!(prog.exists(), "{} was removed", prog.display());
        let pid = f.pid;
        let events = s.daemon.wait_for("the pin change's tamper event", |ev| {
            ev.iter()
                .any(|e| e.kind() == "tamper" && e.pid() == Some(pid))
        });
        let ev = find(&events, "pin_change", |e| {
            e.kind() == "tamper" && e.pid() == Some(pid)
        });
        assert_eq!(ev.str("op"), Some("pin_change"), "{ev}");
    }
    let _ = s.dir.path();
    s.daemon.stop_ok();
}

/// `kill -9 <guard>` from a session. BPF-LSM: refused with EPERM, the daemon lives.
/// Tracepoint tier: the kill(2) completes before the killer's own SIGKILL lands, so
/// the daemon dies too — and the pinned programs go on enforcing: a new session's
/// read of the secret is killed with no daemon, and the next daemon reports the
/// attempt.
#[test]
fn kill_9_of_guard_from_a_session() {
    let mut s = Setup::new();
    let guard = s.guard_pid();
    let g = guard.to_string();
    let f = s.attempt(&["signal", &g, "9"]);
    match s.tier {
        Tier::Lsm => {
            let ev = s.stopped("kill -9 of guard", &f, "signal", Some(guard));
            assert_eq!(ev.int("signal"), Some(9), "{ev}");
            assert!(s.daemon.pid().is_some());
            // Still enforcing, still reporting.
            let secret = s.dir.join("secret.txt");
            let read = s
                .agent
                .spawn(&["read", secret.to_str().expect("UTF-8")])
                .finish();
            assert_eq!(read.signal(), Some(libc::SIGKILL), "{read:?}");
            s.daemon.stop_ok();
        }
        Tier::Tracepoint => {
            assert_eq!(f.signal(), Some(libc::SIGKILL), "the killer lives: {f:?}");
            use std::os::unix::process::ExitStatusExt as _;
            let exit = s.daemon.wait_exited();
            assert_eq!(
                exit.signal(),
                Some(libc::SIGKILL),
                "on the tracepoint tier the kill(2) completes: {exit:?}"
            );
            let before = s.daemon.events();
            // No daemon: the kernel still kills the reader before the read returns.
            let secret = s.dir.join("secret.txt");
            let read = s
                .agent
                .spawn(&["read", secret.to_str().expect("UTF-8")])
                .finish();
            assert_eq!(
                read.signal(),
                Some(libc::SIGKILL),
                "a read of the secret with the daemon dead was not killed: {read:?}"
            );
            assert!(!read.stdout.contains("TAMPER-SECRET"), "{read:?}");
            // The next daemon adopts the pins; the attempt is reported by one of the two
            // (the record may have been read before the daemon died, or waited in the
            // ring buffer).
            let mut next = start(&s.pins, &s.policy);
            let killer = f.pid;
            let is_attempt = |e: &Event| e.kind() == "tamper" && e.pid() == Some(killer);
            let reported = if before.iter().any(is_attempt) {
                before
            } else {
                next.wait_for("the kill's tamper event", |ev| ev.iter().any(is_attempt))
            };
            let ev = find(&reported, "the kill's tamper event", is_attempt);
            assert_eq!(
                (
                    ev.str("op"),
                    ev.str("syscall"),
                    ev.int("target_pid"),
                    ev.int("signal"),
                    ev.str("done")
                ),
                (
                    Some("signal"),
                    Some("kill"),
                    Some(i64::from(guard)),
                    Some(9),
                    Some("killed")
                ),
                "{ev}"
            );
            let events = next.wait_for("daemon_resumed", |ev| {
                ev.iter().any(|e| e.kind() == "daemon_resumed")
            });
            let resumed = find(&events, "daemon_resumed", |e| e.kind() == "daemon_resumed");
            assert_eq!(resumed.bool("clean_stop"), Some(false), "{resumed}");
            next.stop_ok();
        }
    }
}
