//! The daemon follows an agent's whole process tree: shell children, a setsid double fork,
//! vfork, execveat and threads, and nothing else on the host.

use std::collections::HashSet;
use std::fs;
use std::time::SystemTime;

use guard_tests::{
    Daemon, Event, FakeAgent, TempDir, assert_same_identity, check_schema, dump, fake_agent_exe,
    find, session_of,
};

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one agent run beside a bystander's, then every process of the tree checked against the one session's events"
)]
fn agent_process_tree_is_one_session() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    let bystander = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start(&[agent.name()]);

    let dir = TempDir::new("guard-e2e-tree");
    let other_dir = TempDir::new("guard-e2e-tree-bystander");
    for d in [&dir, &other_dir] {
        fs::write(d.join("marker"), "marker").expect("write marker");
        fs::write(d.join("thread-file"), "thread").expect("write thread-file");
    }
    let dir_arg = dir.path().to_str().expect("UTF-8 temp dir");
    let other_arg = other_dir.path().to_str().expect("UTF-8 temp dir");

    // The same scenario, at the same time, by a binary that is not an agent.
    let bystander_run = bystander.spawn(&["tree", other_arg]);
    let run = agent.run(&["tree", dir_arg]);
    let bystander_run = bystander_run.finish();
    bystander_run.assert_success();

    let root = run.pid;
    let sh = run.report("sh");
    let intermediate = run.report("intermediate");
    let grandchild = run.report("grandchild");
    let vfork = run.report("vfork");
    let execveat = run.report("execveat");
    let thread_tid = run.report("thread_tid");
    assert!(
        run.report("grandchild_fd") >= 0,
        "the grandchild could not open its marker"
    );

    let events = daemon.wait_for("the session's end and the setsid grandchild's exit", |ev| {
        guard_tests::session_ended(root)(ev) && ev.iter().any(|e| e.is("exit", grandchild))
    });
    check_schema(&events, since);
    let session = session_of(&events, root);
    let in_session = |e: &Event| e.session() == Some(session.as_str());

    // The session starts when the agent execs, before its exec event.
    let start_at = events
        .iter()
        .position(|e| e.kind() == "session_start" && e.int("root_pid") == Some(root))
        .expect("session_start");
    let start = &events[start_at];
    assert_eq!(start.str("how"), Some("exec"), "session_start: {start}");
    assert_eq!(start.pid(), Some(root), "session_start: {start}");
    assert_eq!(
        start.str("agent"),
        Some(agent.name()),
        "session_start: {start}"
    );
    let exec_at = events
        .iter()
        .position(|e| e.is("exec", root))
        .unwrap_or_else(|| panic!("no exec event of the agent ({root})\n{}", dump(&events)));
    assert!(
        start_at < exec_at,
        "session_start comes after the root's exec\n{}",
        dump(&events)
    );

    // The root's exec: the binary it ran, its argv, and who it is.
    let exec = &events[exec_at];
    let agent_path = agent.path().to_str().expect("UTF-8 path");
    assert_eq!(exec.str("exe"), Some(agent_path), "root exec: {exec}");
    assert_eq!(
        exec.strings("argv"),
        Some(vec![agent_path, "tree", dir_arg]),
        "root exec: {exec}"
    );
    assert_eq!(
        exec.bool("argv_truncated"),
        Some(false),
        "root exec: {exec}"
    );
    assert_eq!(exec.bool("root"), Some(true), "root exec: {exec}");
    assert_eq!(exec.str("comm"), Some(agent.name()), "root exec: {exec}");
    assert_eq!(
        exec.int("ppid"),
        Some(i64::from(std::process::id())),
        "root exec: {exec}"
    );
    assert_eq!(exec.int("uid"), Some(0), "root exec: {exec}");
    assert_eq!(exec.str("user"), Some("root"), "root exec: {exec}");
    assert!(in_session(exec), "root exec is not in the session: {exec}");

    // Only the agent is tracked here, so every event belongs to its one session.
    let starts: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind() == "session_start")
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "expected one session_start\n{}",
        dump(&events)
    );
    let strays: Vec<Event> = events
        .iter()
        .filter(|e| !e.about_daemon() && !in_session(e))
        .cloned()
        .collect();
    assert!(
        strays.is_empty(),
        "events outside session {session}:\n{}",
        dump(&strays)
    );

    // Each child process was forked by the agent (or, for the grandchild, by the
    // intermediate child), exited cleanly, and all of it is in the agent's session.
    let children = [
        ("sh", sh, root),
        ("setsid intermediate", intermediate, root),
        ("setsid grandchild", grandchild, intermediate),
        ("vfork child", vfork, root),
        ("execveat child", execveat, root),
    ];
    for (what, pid, parent) in children {
        let fork = find(&events, &format!("fork of the {what} ({pid})"), |e| {
            e.kind() == "fork" && e.int("child_pid") == Some(pid)
        });
        assert_eq!(
            fork.pid(),
            Some(parent),
            "fork of the {what} is not by {parent}: {fork}"
        );
        assert!(
            in_session(fork),
            "fork of the {what} is not in the session: {fork}"
        );
        let exit = find(&events, &format!("exit of the {what} ({pid})"), |e| {
            e.is("exit", pid)
        });
        assert_eq!(exit.int("exit_code"), Some(0), "exit of the {what}: {exit}");
        assert_eq!(exit.bool("root"), Some(false), "exit of the {what}: {exit}");
        assert!(
            in_session(exit),
            "exit of the {what} is not in the session: {exit}"
        );
        for event in events.iter().filter(|e| e.pid() == Some(pid)) {
            assert!(
                in_session(event),
                "event of the {what} is not in the session: {event}"
            );
        }
    }

    // The execs, with the paths the kernel resolved (/bin is a symlink on merged-/usr hosts).
    let canonical = |p: &str| {
        fs::canonicalize(p)
            .expect("canonicalize")
            .to_str()
            .expect("UTF-8")
            .to_owned()
    };
    let execs = [
        (
            "sh",
            sh,
            canonical("/bin/sh"),
            vec!["sh", "-c", "true; /bin/echo hi > /dev/null"],
        ),
        (
            "vfork child",
            vfork,
            canonical("/bin/true"),
            vec!["/bin/true"],
        ),
        (
            "execveat child",
            execveat,
            canonical("/bin/true"),
            vec!["true"],
        ),
    ];
    for (what, pid, exe, argv) in execs {
        let exec = find(&events, &format!("exec of the {what} ({pid})"), |e| {
            e.is("exec", pid)
        });
        assert_eq!(
            exec.str("exe"),
            Some(exe.as_str()),
            "exec of the {what}: {exec}"
        );
        assert_eq!(
            exec.strings("argv"),
            Some(argv),
            "exec of the {what}: {exec}"
        );
        assert_eq!(exec.bool("root"), Some(false), "exec of the {what}: {exec}");
        assert_eq!(exec.int("ppid"), Some(root), "exec of the {what}: {exec}");
    }

    // The shell's /bin/echo, run in a child of sh (or in sh itself, if it execs directly).
    let echo = find(&events, "exec of /bin/echo hi", |e| {
        e.kind() == "exec" && e.strings("argv") == Some(vec!["/bin/echo", "hi"])
    });
    let echo_pid = echo.pid().expect("pid");
    assert_eq!(
        echo.str("exe"),
        Some(canonical("/bin/echo").as_str()),
        "echo exec: {echo}"
    );
    assert!(in_session(echo), "echo exec is not in the session: {echo}");
    if echo_pid != sh {
        find(
            &events,
            &format!("fork of echo ({echo_pid}) by sh ({sh})"),
            |e| e.is("fork", sh) && e.int("child_pid") == Some(echo_pid),
        );
        let exit = find(&events, &format!("exit of echo ({echo_pid})"), |e| {
            e.is("exit", echo_pid)
        });
        assert_eq!(exit.int("exit_code"), Some(0), "echo exit: {exit}");
    }

    // The grandchild escaped with setsid and a double fork, yet its open is in the session.
    let marker = dir.join("marker");
    let open = find(&events, "the setsid grandchild's open of its marker", |e| {
        e.is("open", grandchild) && e.str("path") == marker.to_str()
    });
    assert!(
        in_session(open),
        "grandchild open is not in the session: {open}"
    );
    assert_eq!(open.str("result"), Some("ok"), "grandchild open: {open}");
    assert_eq!(
        open.int("fd"),
        Some(run.report("grandchild_fd")),
        "grandchild open: {open}"
    );

    // The thread's open: the agent's pid, the thread's tid.
    let thread_file = dir.join("thread-file");
    let open = find(&events, "the thread's open", |e| {
        e.kind() == "open" && e.str("path") == thread_file.to_str()
    });
    assert_eq!(open.pid(), Some(root), "thread open: {open}");
    assert_eq!(open.int("tid"), Some(thread_tid), "thread open: {open}");
    assert_ne!(thread_tid, root, "the thread has its own tid");
    assert!(
        in_session(open),
        "thread open is not in the session: {open}"
    );

    // The agent's exit ends the session; the grandchild was still alive then.
    let exits: Vec<Event> = events
        .iter()
        .filter(|e| e.is("exit", root))
        .cloned()
        .collect();
    assert_eq!(
        exits.len(),
        1,
        "expected one exit of the agent process\n{}",
        dump(&exits)
    );
    let exit = &exits[0];
    assert_eq!(exit.int("exit_code"), Some(0), "root exit: {exit}");
    assert_eq!(exit.bool("root"), Some(true), "root exit: {exit}");
    let end = find(&events, "session_end", |e| e.kind() == "session_end");
    assert_eq!(end.int("root_pid"), Some(root), "session_end: {end}");
    assert!(in_session(end), "session_end is not in the session: {end}");
    let stragglers = end.ints("stragglers").expect("stragglers");
    assert!(
        stragglers.contains(&grandchild),
        "the grandchild is not a straggler: {end}"
    );
    for (what, pid) in [
        ("sh", sh),
        ("vfork child", vfork),
        ("execveat child", execveat),
    ] {
        assert!(
            !stragglers.contains(&pid),
            "the {what} ({pid}) had been reaped: {end}"
        );
    }

    // The bystander did the same things, but it is not an agent: not one event about it.
    let bystander_pids: HashSet<i64> = ["sh", "intermediate", "grandchild", "vfork", "execveat"]
        .iter()
        .map(|key| bystander_run.report(key))
        .chain([bystander_run.pid, bystander_run.report("thread_tid")])
        .collect();
    let test_pid = i64::from(std::process::id());
    let about_bystander = |e: &Event| {
        ["pid", "tid", "child_pid", "root_pid"]
            .iter()
            .any(|key| e.int(key).is_some_and(|p| bystander_pids.contains(&p)))
            || e.pid() == Some(test_pid)
            || e.str("comm") == Some(bystander.name())
            || e.line.contains(other_arg)
    };
    let leaked: Vec<Event> = events
        .iter()
        .filter(|e| about_bystander(e))
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "events about processes that are not agents:\n{}",
        dump(&leaked)
    );

    // Every event of the root agrees on who it is.
    assert_same_identity(&events, root);

    let events = daemon.stop_ok();
    check_schema(&events, since);
}

/// A session that ends within milliseconds of its start (the agent exits at once)
/// still has its workspace and repository: the kernel reads the working directory
/// at the session's first exec, before the process can be gone from /proc.
#[test]
fn a_session_of_a_few_milliseconds_has_its_workspace_and_repository() {
    let agent = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start(&[agent.name()]);
    let dir = TempDir::new("guard-e2e-short-session");
    let work = dir.join("work");
    fs::create_dir_all(&work).expect("mkdir");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&work)
            .env("HOME", dir.path())
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "-c",
        "user.name=guard e2e",
        "-c",
        "user.email=e2e@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "first",
    ]);
    let head = git(&["rev-parse", "HEAD"]);
    let run = agent.spawn_in(&work, &["exit", "0"]).finish();
    run.assert_success();
    let events = daemon.wait_for("the end of the session", |evs| {
        evs.iter()
            .any(|e| e.kind() == "session_end" && e.int("root_pid") == Some(run.pid))
    });
    let start = find(&events, "session_start", |e| {
        e.kind() == "session_start" && e.int("root_pid") == Some(run.pid)
    });
    let work = fs::canonicalize(&work).expect("canonical");
    assert_eq!(
        start.str("cwd"),
        Some(work.to_str().expect("UTF-8")),
        "{}",
        dump(&events)
    );
    assert_eq!(
        start.value["repository"]["commit"],
        head.as_str(),
        "{start}"
    );
    assert_eq!(start.value["repository"]["branch"], "main", "{start}");
    daemon.stop_ok();
}
