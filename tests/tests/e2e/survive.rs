//! Enforcement that outlives the daemon (docs/threat-model.md, "Survival"): the
//! programs, links and maps are pinned, so a daemon killed from inside a session
//! leaves the kernel killing protected reads; the next daemon takes over the pins,
//! adopts the sessions with their ids and reports the gap with what the kernel
//! counted as lost; a restart replaces the programs with no moment unenforced; two
//! daemons never share pins; `guard unload` lifts it all.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guard_tests::{
    Daemon, Event, EventsTo, FakeAgent, Fifo, PinDir, TempDir, dump, fake_agent_exe, guard_bin,
    scaled, session_of, wait_until, write_policy,
};

/// The daemons' ring buffer here: small, so that a short flood overflows it (the
/// default 8 MiB would take 200,000 opens, minutes under the VMs' emulation).
const RING_KIB: &str = "256";

/// Opens of one file while no daemon runs: some four times what the 256 KiB ring
/// buffer holds, so the kernel must count some as lost.
const FLOOD: u64 = 10_000;

/// A policy for `agent` that kills readers of `secret` in the kernel.
fn write_kill_policy(dir: &TempDir, agent: &str, secret: &Path) -> PathBuf {
    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            "mode = \"enforce\"\n\n[agents]\nnames = [\"{agent}\"]\n\n\
             [[rule]]\nid = \"no-secret\"\nkind = \"file\"\npaths = [\"{}\"]\n\
             access = [\"read\"]\naction = \"kill\"\n",
            secret.display()
        ),
    );
    policy
}

fn start(pins: &Arc<PinDir>, policy: &Path) -> Daemon {
    let args = [
        OsStr::new("--policy"),
        policy.as_os_str(),
        OsStr::new("--ring-buffer-kib"),
        OsStr::new(RING_KIB),
    ];
    Daemon::start_on(pins, &[], EventsTo::File, &args)
}

fn resumed(events: &[Event]) -> Option<&Event> {
    events.iter().find(|e| e.kind() == "daemon_resumed")
}

/// Mounts a BPF file system at /sys/fs/bpf if none is there (as the daemon would).
fn mount_bpffs() {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let path = c("/sys/fs/bpf");
    // SAFETY: statfs into a zeroed struct; the path outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(path.as_ptr(), &mut st), st)
    };
    #[expect(
        clippy::useless_conversion,
        reason = "f_type's type differs by architecture"
    )]
    if rc == 0 && i64::from(st.f_type) == 0xcafe_4a11 {
        return;
    }
    let bpf = c("bpf");
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            path.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "mount bpffs: {}", std::io::Error::last_os_error());
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// The daemon is killed with SIGKILL while a session runs; the next read of the secret is
/// still killed, by the kernel alone; a flood of opens while no daemon runs is counted
/// in the kernel; the next daemon adopts the session with its id, hands over the
/// records that fitted in the ring buffer, and reports the gap.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one session across two daemons in order: kill the first, the kernel alone enforces, the second adopts"
)]
fn sigkill_of_the_daemon_leaves_the_kernel_enforcing_and_the_next_daemon_adopts() {
    let dir = TempDir::new("guard-e2e-survive");
    let agent = FakeAgent::install(fake_agent_exe!());
    let secret = dir.join("secret.txt");
    fs::write(&secret, "SURVIVE-SECRET-7d1").expect("write secret");
    // Eight files in turn: more than the kernel counts repeats of per thread (4), so
    // that every open of the flood is a record while the ring buffer has room. Once it
    // is full, nothing new is remembered and the four files last remembered are
    // counted: their counts, sent every second and at the shell's exit, either reach
    // the next daemon or are counted lost as the opens they stand for.
    let flood = dir.join("flood");
    for i in 0..8 {
        fs::write(dir.join(format!("flood.{i}")), "").expect("write flood");
    }
    let (out, status, flooded) = (dir.join("out"), dir.join("status"), dir.join("flooded"));
    let policy = write_kill_policy(&dir, agent.name(), &secret);
    let pins = Arc::new(PinDir::new());
    let mut first = start(&pins, &policy);
    let guard_pid = first.pid().expect("running");

    let (f0, f1, f2) = (
        Fifo::new(dir.path(), "f0"),
        Fifo::new(dir.path(), "f1"),
        Fifo::new(dir.path(), "f2"),
    );
    let script = format!(
        "read _ < {f0}; read _ < {f1}; \
         cat {secret} > {out}; echo \"cat=$?\" > {status}; \
         i=0; while [ $i -lt {FLOOD} ]; do : < {flood}.$((i % 8)); i=$((i+1)); done; \
         echo done > {flooded}; read _ < {f2}",
        f0 = f0.path_str(),
        f1 = f1.path_str(),
        f2 = f2.path_str(),
        secret = path_str(&secret),
        out = path_str(&out),
        status = path_str(&status),
        flood = path_str(&flood),
        flooded = path_str(&flooded),
    );
    let run = agent.spawn(&["run", "sh", "-c", &script]);
    let root = run.pid();
    let events = first.wait_for("the session's start", |ev| {
        ev.iter()
            .any(|e| e.kind() == "session_start" && e.int("root_pid") == Some(root))
    });
    let session = session_of(&events, root);

    // The daemon dies by SIGKILL while the session runs. (From inside the session
    // the kill is refused or costs the killer its life: tests/tests/e2e/tamper.rs.)
    // It answers a client first: it stamps a sign of life after each turn of its
    // loop, so its last one comes after this moment.
    let released = Instant::now();
    first.status();
    f0.release();
    // SAFETY: signalling the test's own daemon, which has not been reaped.
    unsafe { libc::kill(guard_pid as libc::pid_t, libc::SIGKILL) };
    let exit = first.wait_exited();
    let dead = Instant::now();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(exit.signal(), Some(libc::SIGKILL), "guard daemon: {exit:?}");
    assert!(
        !pins.links().is_empty(),
        "the dead daemon left no pinned link in {}",
        pins.path().display()
    );

    // With no daemon, the kernel kills the reader before the read returns.
    f1.release();
    wait_until("the cat's status", scaled(Duration::from_secs(30)), || {
        fs::read_to_string(&status).is_ok_and(|s| s.ends_with('\n'))
    });
    let cat = fs::read_to_string(&status).expect("status");
    assert_eq!(
        cat.trim(),
        "cat=137",
        "cat of the secret with no daemon running was not killed by SIGKILL"
    );
    let copied = fs::read_to_string(&out).expect("the shell created OUT");
    assert!(copied.is_empty(), "the secret leaked: {copied:?}");
    wait_until("the flood's end", scaled(Duration::from_secs(120)), || {
        flooded.exists()
    });

    // The next daemon on the same pins.
    let restarted = Instant::now();
    let mut second = start(&pins, &policy);
    let events = second.wait_for("daemon_resumed", |ev| resumed(ev).is_some());
    let seen = Instant::now();
    let r = resumed(&events).expect("daemon_resumed").clone();
    assert_eq!(r.int("previous_pid"), Some(i64::from(guard_pid)), "{r}");
    assert_eq!(
        r.bool("clean_stop"),
        Some(false),
        "a SIGKILL is no clean stop: {r}"
    );
    let gap = r.int("gap_ms").expect("gap_ms") as u128;
    let at_least = restarted.duration_since(dead).as_millis();
    let at_most = seen.duration_since(released).as_millis();
    assert!(
        (at_least..=at_most).contains(&gap),
        "gap_ms {gap} outside what the test saw: no daemon for at least {at_least} ms, \
         at most {at_most} ms: {r}"
    );
    assert!(
        r.strings("sessions")
            .is_some_and(|s| s.contains(&session.as_str())),
        "session {session} not adopted: {r}"
    );

    // What the kernel counted, against what it handed over.
    let lost_open = r
        .get("lost_by_kind")
        .and_then(|m| m.get("open"))
        .and_then(|n| n.as_u64())
        .unwrap_or(0);
    assert!(
        lost_open > 0,
        "{FLOOD} opens with no reader fit in the ring buffer? {r}"
    );
    // The records that fitted in the ring buffer come after the adoption.
    let flood_path = format!("{}.", path_str(&flood));
    // Opens of the flood's files (a line counting repeats stands for that many).
    let flood_opens = |ev: &[Event]| {
        ev.iter()
            .filter(|e| {
                e.kind() == "open" && e.str("path").is_some_and(|p| p.starts_with(&flood_path))
            })
            .map(|e| e.int("repeats").unwrap_or(1) as u64)
            .sum::<u64>()
    };
    let events = second.wait_for("the records before the flood handed over", |ev| {
        ev.iter().any(|e| {
            e.kind() == "open"
                && e.str("path") == Some(path_str(&secret))
                && e.session() == Some(session.as_str())
        })
    });

    // The adopted session keeps its id, and the kill made with no daemon is reported.
    let adopted = events
        .iter()
        .find(|e| e.kind() == "session_start" && e.str("how") == Some("adopted"))
        .expect("adopted session_start");
    assert_eq!(adopted.session(), Some(session.as_str()), "{adopted}");
    assert_eq!(adopted.int("root_pid"), Some(root), "{adopted}");
    let kill = events.iter().find(|e| {
        e.kind() == "open"
            && e.str("path") == Some(path_str(&secret))
            && e.session() == Some(session.as_str())
    });
    match kill {
        Some(e) => {
            assert_eq!(e.str("action"), Some("kill"), "{e}");
            assert_eq!(e.str("outcome"), Some("killed"), "{e}");
        }
        None => panic!(
            "the read killed while no daemon ran is not among the records handed over\n{}",
            dump(&events)
        ),
    }

    // The session goes on under the new daemon, to its end, with the same id.
    f2.release();
    let events = second.wait_for("the session's end", |ev| {
        ev.iter()
            .any(|e| e.kind() == "session_end" && e.int("root_pid") == Some(root))
    });
    let end = events
        .iter()
        .find(|e| e.kind() == "session_end" && e.int("root_pid") == Some(root))
        .expect("session_end");
    assert_eq!(end.session(), Some(session.as_str()), "{end}");
    // Every open of the flood is accounted for: a record handed over, a count of
    // repeats the kernel sent when the shell exited (opens of files it still
    // remembered once the ring was full), or counted lost.
    let delivered = flood_opens(&events);
    assert!(
        (FLOOD..=FLOOD + 16).contains(&(delivered + lost_open)),
        "{delivered} opens of the flood handed over and {lost_open} counted lost, \
         for {FLOOD} made: {r}"
    );
    eprintln!(
        "no daemon for {gap} ms (test saw {at_least}..={at_most}); {lost_open} opens counted \
         lost in the kernel, {delivered} handed over"
    );
    run.finish().assert_success();
    second.stop_ok();
}

/// A normal stop and a start of a (new) daemon: the programs are replaced hook by hook
/// while a session keeps trying to read the secret; not one read gets through, before,
/// during or after.
#[test]
fn restart_replaces_the_programs_with_no_read_getting_through() {
    let dir = TempDir::new("guard-e2e-survive");
    let agent = FakeAgent::install(fake_agent_exe!());
    let secret = dir.join("secret.txt");
    fs::write(&secret, "SURVIVE-SECRET-upgrade").expect("write secret");
    let (leak, count, stop) = (dir.join("leak"), dir.join("count"), dir.join("stop"));
    let policy = write_kill_policy(&dir, agent.name(), &secret);
    let pins = Arc::new(PinDir::new());
    let mut first = start(&pins, &policy);
    let script = format!(
        "n=0; while [ ! -e {stop} ]; do cat {secret} >> {leak}; n=$((n+1)); \
         echo $n > {count}.new; mv {count}.new {count}; done",
        stop = path_str(&stop),
        secret = path_str(&secret),
        leak = path_str(&leak),
        count = path_str(&count),
    );
    let run = agent.spawn(&["run", "sh", "-c", &script]);
    let tries = || -> u64 {
        fs::read_to_string(&count)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until(
        "reads under the first daemon",
        scaled(Duration::from_secs(30)),
        || tries() >= 5,
    );
    let status = first.stop();
    assert!(status.success(), "first daemon: {status:?}");
    let stopped = tries();
    let links = pins.links();
    assert!(!links.is_empty(), "a clean stop removed the pins");

    let mut second = start(&pins, &policy);
    let ready = tries();
    let events = second.wait_for("daemon_resumed", |ev| resumed(ev).is_some());
    let r = resumed(&events).expect("daemon_resumed").clone();
    assert_eq!(r.bool("clean_stop"), Some(true), "{r}");
    let links_of = |k: &str| {
        r.get("links")
            .and_then(|l| l.get(k))
            .and_then(|n| n.as_u64())
            .unwrap_or(u64::MAX)
    };
    assert_eq!(links_of("new"), 0, "every hook had a pinned link: {r}");
    assert!(links_of("replaced") > 0, "no program replaced: {r}");
    assert_eq!(
        links_of("replaced") + links_of("updated"),
        links.len() as u64,
        "each pinned link {links:?} replaced or updated once: {r}"
    );
    assert_eq!(pins.links(), links, "the hooks' pins changed names");
    wait_until(
        "reads under the second daemon",
        scaled(Duration::from_secs(30)),
        || tries() >= ready + 5,
    );
    fs::write(&stop, "").expect("write stop");
    let finished = run.finish();
    finished.assert_success();

    eprintln!(
        "{} reads tried with no daemon or during the swap, {} in all, none got through",
        ready - stopped,
        tries()
    );
    assert!(
        ready > stopped,
        "no read was tried between the first daemon's stop ({stopped} tries) and the \
         second's start ({ready}): the test shows nothing about the gap"
    );
    let leaked = fs::read_to_string(&leak).unwrap_or_default();
    assert!(
        leaked.is_empty(),
        "a read of the secret got through across the restart: {leaked:?}"
    );
    second.stop_ok();
}

/// A second daemon on pins another one holds is refused, names the holder, and
/// changes nothing: the first goes on.
#[test]
fn a_second_daemon_on_the_same_pins_is_refused() {
    let dir = TempDir::new("guard-e2e-survive");
    let agent = FakeAgent::install(fake_agent_exe!());
    let secret = dir.join("secret.txt");
    let policy = write_kill_policy(&dir, agent.name(), &secret);
    let pins = Arc::new(PinDir::new());
    let mut first = start(&pins, &policy);
    let links = pins.links();
    let out = Command::new(guard_bin())
        .arg("daemon")
        .arg("--pin-dir")
        .arg(pins.path())
        .arg("--policy")
        .arg(&policy)
        .arg("--events")
        .arg(dir.join("second.jsonl"))
        .arg("--socket")
        .arg(dir.join("second.sock"))
        .stdin(Stdio::null())
        .output()
        .expect("run a second guard daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second daemon ran: {stderr}");
    let expected = format!(
        "another guard daemon (pid {}) holds the pins in {}",
        first.pid().expect("running"),
        pins.path().display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert_eq!(pins.links(), links, "the refused daemon touched the pins");
    first.stop_ok();
}

/// After a normal stop the kernel still enforces; `guard unload` removes every pin,
/// and then nothing is enforced any more (what an operator asks for).
#[test]
fn unload_lifts_what_a_stopped_daemon_left() {
    let dir = TempDir::new("guard-e2e-survive");
    let agent = FakeAgent::install(fake_agent_exe!());
    let secret = dir.join("secret.txt");
    fs::write(&secret, "SURVIVE-SECRET-unload\n").expect("write secret");
    let policy = write_kill_policy(&dir, agent.name(), &secret);
    let pins = Arc::new(PinDir::new());
    let mut daemon = start(&pins, &policy);
    assert!(daemon.stop().success());

    let read = agent.run(&["run", "cat", path_str(&secret)]);
    assert_eq!(
        read.report("child_signal"),
        i64::from(libc::SIGKILL),
        "with the daemon stopped, the kernel did not kill the reader: {read:?}"
    );

    let out = Command::new(guard_bin())
        .arg("unload")
        .arg("--pin-dir")
        .arg(pins.path())
        .output()
        .expect("guard unload");
    assert!(
        out.status.success(),
        "guard unload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !pins.path().exists(),
        "guard unload left {}",
        pins.path().display()
    );
    let read = agent.run(&["run", "cat", path_str(&secret)]);
    assert_eq!(
        read.report("child_code"),
        0,
        "after guard unload the reader was still stopped: {read:?}"
    );
    assert!(
        read.stdout.contains("SURVIVE-SECRET-unload"),
        "after guard unload cat read nothing: {read:?}"
    );
}

/// `guard unload` on a directory that is not guard's (a wrong `--pin-dir`, the
/// bpffs root) removes nothing.
#[test]
fn unload_refuses_a_directory_that_is_not_guards() {
    guard_tests::require_root();
    // Mounted by the daemons of the other tests, but this one may run first.
    mount_bpffs();
    let other = PinDir::new();
    let kept = other.path().join("someone-elses");
    fs::create_dir_all(&kept).expect("mkdir under the BPF file system");
    let out = Command::new(guard_bin())
        .arg("unload")
        .arg("--pin-dir")
        .arg(other.path())
        .output()
        .expect("guard unload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "guard unload removed {}",
        other.path().display()
    );
    assert!(
        stderr.contains("is not a guard pin directory"),
        "unexpected refusal: {stderr}"
    );
    assert!(kept.is_dir(), "guard unload removed {}", kept.display());
}
