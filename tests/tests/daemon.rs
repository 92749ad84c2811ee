//! The daemon's own behaviour: several agent names, events on stdout, SIGINT, and how
//! processes ended.

use std::time::SystemTime;

use guard_tests::{
    Daemon, Event, EventsTo, FakeAgent, check_schema, dump, fake_agent_exe, find, session_ended,
    session_of,
};

#[test]
fn each_agent_name_starts_its_own_session() {
    let since = SystemTime::now();
    let first = FakeAgent::install(fake_agent_exe!());
    let second = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start(&[first.name(), second.name()]);

    let run1 = first.spawn(&["exit", "0"]).finish();
    let run2 = second.spawn(&["exit", "5"]).finish();
    assert_eq!(run2.code(), Some(5), "{run2:?}");
    let events = daemon.wait_for("both sessions to end", |ev| {
        session_ended(run1.pid)(ev) && session_ended(run2.pid)(ev)
    });
    check_schema(&events, since);

    let s1 = session_of(&events, run1.pid);
    let s2 = session_of(&events, run2.pid);
    assert_ne!(s1, s2, "two agents share a session\n{}", dump(&events));
    for (agent, run, session, code) in [(&first, &run1, &s1, 0), (&second, &run2, &s2, 5)] {
        let start = find(&events, "session_start", |e| {
            e.kind() == "session_start" && e.int("root_pid") == Some(run.pid)
        });
        assert_eq!(
            start.str("agent"),
            Some(agent.name()),
            "session_start: {start}"
        );
        assert_eq!(start.str("how"), Some("exec"), "session_start: {start}");
        for event in events.iter().filter(|e| e.pid() == Some(run.pid)) {
            assert_eq!(
                event.session(),
                Some(session.as_str()),
                "wrong session: {event}"
            );
        }
        let exit = find(&events, &format!("exit of {}", agent.name()), |e| {
            e.is("exit", run.pid)
        });
        assert_eq!(exit.int("exit_code"), Some(code), "exit: {exit}");
        assert_eq!(exit.bool("root"), Some(true), "exit: {exit}");
    }

    let events = daemon.stop_ok();
    check_schema(&events, since);
}

#[test]
fn events_go_to_stdout_and_sigint_stops_cleanly() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start_with(&[agent.name()], EventsTo::Stdout);

    let run = agent.spawn(&["exit", "7"]).finish();
    assert_eq!(run.code(), Some(7), "{run:?}");
    let events = daemon.wait_for("the session's end, on stdout", session_ended(run.pid));
    check_schema(&events, since);
    let session = session_of(&events, run.pid);
    let exit = find(&events, "exit of the agent", |e| e.is("exit", run.pid));
    assert_eq!(exit.int("exit_code"), Some(7), "exit: {exit}");
    assert_eq!(exit.session(), Some(session.as_str()), "exit: {exit}");

    let status = daemon.stop_with(libc::SIGINT);
    assert!(
        status.success(),
        "guard daemon exited with {status} after SIGINT (expected 0)"
    );
    // Everything on stdout is events; what was already there is still there.
    let after = daemon.events();
    check_schema(&after, since);
    assert!(
        events.iter().all(|e| after.contains(e)),
        "events seen before SIGINT are missing after it\n{}",
        dump(&after)
    );
}

#[test]
fn killed_processes_report_their_signal() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start(&[agent.name()]);

    let run = agent.spawn(&["signals"]).finish();
    assert_eq!(
        run.signal(),
        Some(libc::SIGTERM),
        "the agent did not die of SIGTERM: {run:?}"
    );
    let root = run.pid;
    let killed = run.report("killed");
    let events = daemon.wait_for("the session's end", session_ended(root));
    check_schema(&events, since);
    let session = session_of(&events, root);

    let check = |what: &str, pid: i64, signal: i32, root: bool| {
        let exit: &Event = find(&events, &format!("exit of the {what} ({pid})"), |e| {
            e.is("exit", pid)
        });
        assert_eq!(
            exit.int("signal"),
            Some(i64::from(signal)),
            "exit of the {what}: {exit}"
        );
        assert_eq!(exit.bool("root"), Some(root), "exit of the {what}: {exit}");
        assert_eq!(
            exit.session(),
            Some(session.as_str()),
            "exit of the {what}: {exit}"
        );
    };
    check("child", killed, libc::SIGKILL, false);
    check("agent", root, libc::SIGTERM, true);
    let end = find(&events, "session_end", |e| e.kind() == "session_end");
    assert_eq!(end.ints("stragglers"), Some(vec![]), "session_end: {end}");

    let events = daemon.stop_ok();
    check_schema(&events, since);
}
