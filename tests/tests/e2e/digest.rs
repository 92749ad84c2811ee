//! Programs by what they are (issue 26 item 5, docs/policy.md "Programs by
//! digest"): an exec rule's `digest` names a program by its SHA-256, so a copy of
//! it under any name is that program. The kernel holds (SIGSTOP) a session's exec
//! of a file whose size a digest names, before its first instruction; user space
//! hashes it and kills it or lets it go. Each test asserts what a user would:
//! the copy never ran, or ran as if nothing happened, and the exec event says
//! `held`, the digest and the rule.

use std::ffi::OsStr;
use std::fs;
use std::sync::Arc;
use std::time::Duration;

use guard_tests::{
    Daemon, Enforcing, Event, EventsTo, FakeAgent, Fifo, Finished, PinDir, Running, TempDir,
    fake_agent_exe, find, guard, scaled, wait_until, write_policy,
};

const SIGKILL: i64 = libc::SIGKILL as i64;

/// `{tool}`: the digest line of `/usr/bin/touch` as `guard policy digest` prints
/// it; `{decoy}`: a digest no file has, of `/usr/bin/true`'s size.
const RULES: &str = r#"
[[rule]]
id = "known-tool"
description = "a program known by its content"
kind = "exec"
{tool}
action = "kill"

[[rule]]
id = "decoy"
kind = "exec"
digest = ["sha256:{zeros}:{true_size}"]
action = "kill"
"#;

/// The `digest = [...]` line `guard policy digest FILE` prints for `file`.
fn digest_line(file: &str) -> String {
    let out = guard(&[OsStr::new("policy"), "digest".as_ref(), file.as_ref()]);
    out.lines()
        .find(|l| l.starts_with("digest = [\"sha256:"))
        .unwrap_or_else(|| panic!("no digest line from guard policy digest {file}:\n{out}"))
        .to_owned()
}

/// The SHA-256 (hex) in [`digest_line`].
fn hex_of(file: &str) -> String {
    let line = digest_line(file);
    line.trim_start_matches("digest = [\"sha256:")
        .split(':')
        .next()
        .expect("hex")
        .to_owned()
}

/// [`RULES`] with its digests filled in.
fn rules() -> String {
    let true_size = fs::metadata("/usr/bin/true").expect("stat true").len();
    RULES
        .replace("{tool}", &digest_line("/usr/bin/touch"))
        .replace("{zeros}", &"0".repeat(64))
        .replace("{true_size}", &true_size.to_string())
}

/// The programs the tests run: `bin/tool` (a copy of touch), `bin/same-size` (of
/// true).
fn programs(dir: &TempDir) {
    fs::create_dir_all(dir.join("bin")).expect("mkdir");
    fs::copy("/usr/bin/touch", dir.join("bin/tool")).expect("copy touch");
    fs::copy("/usr/bin/true", dir.join("bin/same-size")).expect("copy true");
}

fn start() -> Enforcing {
    Enforcing::start(fake_agent_exe!(), "guard-e2e-digest", &rules(), programs)
}

/// The state letter of process `pid` (`/proc/PID/stat`), `None` once it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The pid of the process running `exe`, when there is one.
fn running(exe: &std::path::Path) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|d| {
        let pid: u32 = d.file_name().to_str()?.parse().ok()?;
        (fs::read_link(d.path().join("exe")).ok()? == exe).then_some(pid)
    })
}

/// The exec of `exe` in the session of `run`.
fn exec_of<'e>(events: &'e [Event], run: &Finished, exe: &str) -> &'e Event {
    let of_run = Enforcing::of_run(events, run);
    let session = of_run[0].session().map(str::to_owned);
    find(events, &format!("the exec of {exe}"), |e| {
        e.session() == session.as_deref() && e.kind() == "exec" && e.str("exe") == Some(exe)
    })
}

/// `e`, an exec of a copy of the known tool, was held, hashed and killed by its rule.
fn held_and_killed_as_the_known_tool(e: &Event) {
    assert_eq!(e.bool("held"), Some(true), "{e}");
    let hex = hex_of("/usr/bin/touch");
    assert_eq!(
        e.str("digest"),
        Some(format!("sha256:{hex}").as_str()),
        "{e}"
    );
    assert_eq!(e.str("rule"), Some("known-tool"), "{e}");
    assert_eq!(e.str("outcome"), Some("killed"), "{e}");
}

/// For a test that starts (and stops) its daemon itself: a directory with the
/// programs (`prefix`), an agent, and the policy of [`rules`] for it, written there.
fn own_daemon_set_up(prefix: &str) -> (TempDir, FakeAgent, std::path::PathBuf) {
    let dir = TempDir::new(prefix);
    programs(&dir);
    let agent = FakeAgent::install(fake_agent_exe!());
    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            "mode = \"enforce\"\n\n[agents]\nnames = [\"{}\"]\n\n{}",
            agent.name(),
            rules()
        ),
    );
    (dir, agent, policy)
}

/// `agent` running `sh -c script` in a session `daemon` has started.
fn session_of(agent: &FakeAgent, daemon: &mut Daemon, script: &str) -> Running {
    let run = agent.spawn(&["run", "sh", "-c", script]);
    let root = run.pid();
    daemon.wait_for("the session's start", |ev| {
        ev.iter()
            .any(|e| e.kind() == "session_start" && e.int("root_pid") == Some(root))
    });
    run
}

/// A copy of a program a rule names by digest, made by the session and run under
/// a new name, never runs an instruction: killed while held, with the rule.
#[test]
fn a_copy_of_a_program_named_by_digest_is_that_program() {
    let mut s = start();
    let (run, events) = s.sh(
        "cp {dir}/bin/tool {dir}/renamed && {dir}/renamed {dir}/ran; echo status=$?; \
         {dir}/renamed {dir}/ran; echo again=$?",
    );
    assert!(
        !s.dir.join("ran").exists(),
        "the copy ran under another name: {run:?}"
    );
    assert_eq!(run.report("status"), 128 + SIGKILL, "{run:?}");
    assert_eq!(run.report("again"), 128 + SIGKILL, "{run:?}");
    let renamed = s.path("renamed");
    let e = exec_of(&events, &run, &renamed);
    held_and_killed_as_the_known_tool(e);
    s.finish();
}

/// A program of a size some digest names, but other content, is held, hashed and
/// let go: it runs to its end with its own exit status, and is no violation.
#[test]
fn a_program_of_the_same_size_is_held_and_let_go() {
    let mut s = start();
    let (run, events) = s.sh("{dir}/bin/same-size; echo status=$?; echo done");
    assert_eq!(run.report("status"), 0, "{run:?}");
    assert!(run.stdout.contains("done"), "{run:?}");
    let exe = s.path("bin/same-size");
    let e = exec_of(&events, &run, &exe);
    assert_eq!(e.bool("held"), Some(true), "{e}");
    let hex = hex_of("/usr/bin/true");
    assert_eq!(
        e.str("digest"),
        Some(format!("sha256:{hex}").as_str()),
        "{e}"
    );
    assert_eq!(e.str("rule"), None, "no rule matched: {e}");
    // Programs of other sizes are never held.
    let sh = find(&events, "the shell's exec", |x| {
        x.session() == e.session()
            && x.kind() == "exec"
            && x.str("exe")
                .is_some_and(|p| p.ends_with("/sh") || p.ends_with("/dash"))
    });
    assert_eq!(sh.get("held"), None, "{sh}");
    s.finish();
}

/// A hold outlives the daemon, failing closed: an exec held while no daemon runs
/// stays stopped (it never runs an instruction); the next daemon, on the same pins,
/// decides it (here: lets it go, and kills the banned copy that comes after).
#[test]
fn a_hold_with_no_daemon_waits_for_the_next_daemon() {
    let (dir, agent, policy) = own_daemon_set_up("guard-e2e-digest-nodaemon");
    let pins = Arc::new(PinDir::new());
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    let mut first = Daemon::start_on(&pins, &[], EventsTo::File, &args);
    let guard_pid = first.pid().expect("running");
    let go = Fifo::new(dir.path(), "go");
    let d = dir.path().display().to_string();
    let script = format!(
        "read _ < {go}; {d}/bin/same-size; echo $? > {d}/status; \
         {d}/bin/tool {d}/ran; echo $? > {d}/tool",
        go = go.path_str(),
    );
    let run = session_of(&agent, &mut first, &script);
    // SAFETY: signalling the test's own daemon, which has not been reaped.
    unsafe { libc::kill(guard_pid as libc::pid_t, libc::SIGKILL) };
    first.wait_exited();
    go.release();

    let same_size = dir.join("bin/same-size");
    let mut held = None;
    wait_until(
        "the held exec, stopped",
        scaled(Duration::from_secs(30)),
        || {
            held = running(&same_size).filter(|p| state(*p) == Some('T'));
            held.is_some()
        },
    );
    let held = held.expect("held");
    assert!(
        !dir.join("status").exists(),
        "the held program ran to its end"
    );

    let mut second = Daemon::start_on(&pins, &[], EventsTo::File, &args);
    wait_until("the tool's status", scaled(Duration::from_secs(30)), || {
        fs::read_to_string(dir.join("tool")).is_ok_and(|s| s.ends_with('\n'))
    });
    let status = |f: &str| fs::read_to_string(dir.join(f)).expect("status");
    assert_eq!(
        status("status").trim(),
        "0",
        "the held program, let go, ended well"
    );
    assert_eq!(status("tool").trim(), "137", "the banned copy was killed");
    assert!(!dir.join("ran").exists(), "the banned copy ran");
    run.finish();
    let events = second.stop_ok();
    let e = find(&events, "the held exec's event", |e| {
        e.kind() == "exec" && e.int("pid") == Some(i64::from(held))
    });
    assert_eq!(e.bool("held"), Some(true), "{e}");
}

/// A held exec whose record the kernel could not write (the ring buffer full while
/// the daemon was stopped: every record after that is lost) is judged from what
/// `/proc` shows once the daemon runs again: the banned copy is killed without
/// having run, and its exec is in the audit log, flagged `from_proc`, with the
/// violation.
#[test]
fn a_held_exec_whose_record_was_lost_is_judged_from_proc() {
    let (dir, agent, policy) = own_daemon_set_up("guard-e2e-digest-lost");
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
    let guard_pid = daemon.pid().expect("running") as libc::pid_t;
    let go = Fifo::new(dir.path(), "go");
    let d = dir.path().display().to_string();
    // 6,000 execs with 3,000 bytes of arguments each: some 20 MB of records, more
    // than twice the ring buffer (8 MiB), so the banned copy's exec that follows
    // finds it full. Of a program no digest's size names (none of them is held).
    let flood = "/usr/bin/test";
    let size = |f: &str| fs::metadata(f).expect("stat").len();
    assert!(
        ![size("/usr/bin/touch"), size("/usr/bin/true")].contains(&size(flood)),
        "{flood} has the size of a program the rules name"
    );
    let script = format!(
        "read _ < {go}; x=$(printf '%03000d' 0); i=0; \
         while [ $i -lt 6000 ]; do {flood} $x; i=$((i+1)); done; \
         {d}/bin/tool {d}/ran; echo $? > {d}/tool",
        go = go.path_str(),
    );
    let run = session_of(&agent, &mut daemon, &script);
    // SAFETY: signalling the test's own daemon, which has not been reaped.
    unsafe { libc::kill(guard_pid, libc::SIGSTOP) };
    go.release();
    let tool = dir.join("bin/tool");
    wait_until(
        "the banned copy's exec, held",
        scaled(Duration::from_secs(120)),
        || running(&tool).is_some_and(|p| state(p) == Some('T')),
    );
    // SAFETY: as above.
    unsafe { libc::kill(guard_pid, libc::SIGCONT) };
    wait_until("the tool's status", scaled(Duration::from_secs(60)), || {
        fs::read_to_string(dir.join("tool")).is_ok_and(|s| s.ends_with('\n'))
    });
    let status = fs::read_to_string(dir.join("tool")).expect("status");
    assert_eq!(status.trim(), "137", "the banned copy was killed");
    assert!(!dir.join("ran").exists(), "the banned copy ran");
    run.finish();
    let events = daemon.stop_ok();
    let exe = tool.display().to_string();
    let e = find(&events, "the banned copy's exec", |e| {
        e.kind() == "exec" && e.str("exe") == Some(exe.as_str())
    });
    assert_eq!(e.bool("from_proc"), Some(true), "{e}");
    held_and_killed_as_the_known_tool(e);
    assert!(
        events.iter().any(|e| e.kind() == "lost"),
        "the records the full ring buffer refused are reported lost"
    );
}

/// A session over its record budget still has its held execs decided from their
/// records: where user space decides exec rules (a digest here) the kernel sends
/// every exec whatever the budget, so the banned copy is killed at once, by its
/// record rather than from `/proc` seconds later.
#[test]
fn a_held_exec_is_sent_whatever_the_session_s_budget() {
    let rules = format!("[limits]\nrate = 1\nburst = 1\n\n{}", rules());
    let mut s = Enforcing::start(
        fake_agent_exe!(),
        "guard-e2e-digest-budget",
        &rules,
        programs,
    );
    let (run, events) = s.sh(
        "i=0; while [ $i -lt 50 ]; do : > {dir}/f$i; i=$((i+1)); done; \
         {dir}/bin/tool {dir}/ran; echo status=$?",
    );
    assert_eq!(run.report("status"), 128 + SIGKILL, "{run:?}");
    assert!(!s.dir.join("ran").exists(), "the banned copy ran: {run:?}");
    assert!(
        events.iter().any(|e| e.kind() == "limit"),
        "the session went over its budget: no limit event"
    );
    let tool = s.path("bin/tool");
    let e = exec_of(&events, &run, &tool);
    assert_eq!(e.get("from_proc"), None, "judged by its record: {e}");
    assert_eq!(e.bool("held"), Some(true), "{e}");
    assert_eq!(
        (e.str("rule"), e.str("outcome")),
        (Some("known-tool"), Some("killed")),
        "{e}"
    );
    s.finish();
}
