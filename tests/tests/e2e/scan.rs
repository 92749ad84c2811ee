//! An agent already running when the daemon starts is found in /proc and tracked,
//! with the children it already has: what they do afterwards is in its session.

use std::time::{Duration, SystemTime};

use guard_tests::{
    Daemon, FakeAgent, Fifo, TempDir, check_schema, children, comm, fake_agent_exe, wait_until,
};

#[test]
fn agents_running_before_the_daemon_are_tracked_with_their_children() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    let dir = TempDir::new("guard-e2e-scan");
    // The agent's child waits on a pipe until the daemon is up, then reads.
    let go = Fifo::new(dir.path(), "go");
    let script = format!("read _ < {}; cat /etc/hostname > /dev/null", go.path_str());
    let running = agent.spawn(&["run", "sh", "-c", &script]);
    let root = running.pid();
    // The scan must find the child already running sh.
    wait_until(
        "the agent's child to run sh",
        Duration::from_secs(10),
        || {
            children(root)
                .into_iter()
                .any(|child| comm(child).as_deref() == Some("sh"))
        },
    );

    let mut daemon = Daemon::start(&[agent.name()]);
    go.release();
    let events = daemon.wait_for("the scanned session's child to read /etc/hostname", |evs| {
        evs.iter()
            .any(|e| e.kind() == "open" && e.str("path") == Some("/etc/hostname"))
    });
    check_schema(&events, since);

    let start = events
        .iter()
        .find(|e| e.kind() == "session_start")
        .unwrap_or_else(|| panic!("no session_start in {events:?}"));
    assert_eq!(start.str("how"), Some("scan"), "{start}");
    assert_eq!(start.int("root_pid"), Some(root), "{start}");
    let session = start.session().expect("session").to_owned();

    // The child (sh, already running at the scan) forked cat after it: cat's exec and
    // its open belong to the session.
    for (kind, what) in [("exec", "exe"), ("open", "path")] {
        let e = events
            .iter()
            .find(|e| e.kind() == kind && e.str("comm") == Some("cat"))
            .unwrap_or_else(|| panic!("no {kind} by cat in {events:?}"));
        assert_eq!(e.session(), Some(session.as_str()), "{kind} {what}: {e}");
    }
    let outside: Vec<_> = events
        .iter()
        .filter(|e| !e.about_daemon() && e.session() != Some(session.as_str()))
        .collect();
    assert!(
        outside.is_empty(),
        "events outside the scanned session: {outside:?}"
    );
    drop(running.finish());
}
