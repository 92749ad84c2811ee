//! An agent already running when the daemon starts is found in /proc and tracked,
//! with the children it already has: what they do afterwards is in its session.

use std::time::{Duration, SystemTime};

use guard_tests::{Daemon, FakeAgent, check_schema, fake_agent_exe};

#[test]
fn agents_running_before_the_daemon_are_tracked_with_their_children() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    // The agent's child waits, then reads: by then the daemon is up.
    let running = agent.spawn(&["run", "sh", "-c", "sleep 3; cat /etc/hostname > /dev/null"]);
    let root = running.pid();
    std::thread::sleep(Duration::from_millis(300));

    let mut daemon = Daemon::start(&[agent.name()]);
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
