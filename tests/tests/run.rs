//! `guard run -- CMD` makes CMD a session root whatever its name, and refuses to run
//! untracked when no daemon answers.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use guard_tests::{
    Daemon, Event, Finished, Running, TempDir, assert_same_identity, check_schema, dump, find,
    guard_bin, session_ended, session_of, unique_name,
};

const SCRIPT: &str = "cat /etc/hostname > /dev/null; exit 3";

fn guard_run(socket: &Path, cmd: &[&str]) -> Finished {
    let mut command = Command::new(guard_bin());
    command
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .arg("--")
        .args(cmd)
        .env_remove("LD_LIBRARY_PATH") // cargo's; it only adds dynamic-loader noise
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running::spawn(command).finish()
}

#[test]
fn run_tracks_the_command_as_a_session() {
    let since = SystemTime::now();
    // An agent name nothing uses: the daemon tracks only what `guard run` asks for.
    let mut daemon = Daemon::start(&[&unique_name("ga")]);

    let run = guard_run(daemon.socket(), &["sh", "-c", SCRIPT]);
    assert_eq!(
        run.code(),
        Some(3),
        "guard run did not exit with the command's status\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let root = run.pid;
    let events = daemon.wait_for("the end of the `guard run` session", session_ended(root));
    check_schema(&events, since);
    let session = session_of(&events, root);
    let in_session = |e: &Event| e.session() == Some(session.as_str());

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

    let start_at = events
        .iter()
        .position(|e| e.kind() == "session_start")
        .expect("session_start (found by session_of)");
    let start = &events[start_at];
    assert_eq!(start.str("how"), Some("run"), "session_start: {start}");
    assert_eq!(start.int("root_pid"), Some(root), "session_start: {start}");
    assert_eq!(start.pid(), Some(root), "session_start: {start}");

    // The command replaced `guard run` in the same process, the session root.
    let canonical = |p: &str| {
        fs::canonicalize(p)
            .expect("canonicalize")
            .to_str()
            .map(String::from)
    };
    let exec_at = events
        .iter()
        .position(|e| {
            e.is("exec", root)
                && e.strings("argv")
                    .is_some_and(|argv| argv.get(1..) == Some(&["-c", SCRIPT]))
        })
        .unwrap_or_else(|| panic!("no exec of sh -c by {root}\n{}", dump(&events)));
    assert!(
        start_at < exec_at,
        "session_start comes after the exec of sh\n{}",
        dump(&events)
    );
    let exec = &events[exec_at];
    assert_eq!(
        exec.str("exe").map(String::from),
        canonical("/bin/sh"),
        "exec of sh: {exec}"
    );
    assert!(
        exec.strings("argv")
            .is_some_and(|argv| argv.first().is_some_and(|a| a.ends_with("sh"))),
        "argv[0] of sh: {exec}"
    );
    assert_eq!(exec.bool("root"), Some(true), "exec of sh: {exec}");

    // sh's child cat, and the file it read.
    let cat = find(&events, "exec of cat /etc/hostname", |e| {
        e.kind() == "exec" && e.strings("argv") == Some(vec!["cat", "/etc/hostname"])
    });
    let cat_pid = cat.pid().expect("pid");
    assert_eq!(
        cat.str("exe").map(String::from),
        canonical("/bin/cat"),
        "exec of cat: {cat}"
    );
    assert_eq!(cat.bool("root"), Some(false), "exec of cat: {cat}");
    if cat_pid != root {
        find(
            &events,
            &format!("fork of cat ({cat_pid}) by sh ({root})"),
            |e| e.is("fork", root) && e.int("child_pid") == Some(cat_pid),
        );
    }
    let hostname = canonical("/etc/hostname");
    let open = find(&events, "cat's open of /etc/hostname", |e| {
        e.is("open", cat_pid) && e.str("path").map(String::from) == hostname
    });
    assert_eq!(
        open.str("result"),
        Some("ok"),
        "open of /etc/hostname: {open}"
    );
    assert_eq!(
        open.strings("access"),
        Some(vec!["read"]),
        "open of /etc/hostname: {open}"
    );
    assert_eq!(
        open.bool("path_resolved"),
        Some(true),
        "open of /etc/hostname: {open}"
    );

    let exit = find(&events, "exit of the session root", |e| e.is("exit", root));
    assert_eq!(exit.int("exit_code"), Some(3), "exit of sh: {exit}");
    assert_eq!(exit.bool("root"), Some(true), "exit of sh: {exit}");
    let end = find(&events, "session_end", |e| e.kind() == "session_end");
    assert_eq!(end.int("root_pid"), Some(root), "session_end: {end}");
    assert_eq!(
        end.ints("stragglers"),
        Some(vec![]),
        "nothing outlived sh: {end}"
    );

    // Every event of the root agrees on who it is.
    assert_same_identity(&events, root);

    let events = daemon.stop_ok();
    check_schema(&events, since);
}

#[test]
fn run_fails_without_a_daemon() {
    let dir = TempDir::new("guard-e2e-nodaemon");
    let ran = dir.join("ran");
    let script = format!("echo ran > {}", ran.display());

    // No socket file at all, and a socket file nobody listens on any more.
    let missing = dir.join("missing.sock");
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind a unix socket"));
    assert!(stale.exists(), "the stale socket file stays behind");

    for socket in [&missing, &stale] {
        let run = guard_run(socket, &["sh", "-c", &script]);
        assert!(
            !run.status.success() && run.code().is_some(),
            "guard run --socket {} exited with {} without a daemon (expected a non-zero exit)\n\
             stdout:\n{}\nstderr:\n{}",
            socket.display(),
            run.status,
            run.stdout,
            run.stderr
        );
        assert!(
            !run.stderr.trim().is_empty(),
            "guard run --socket {} failed without saying why on stderr",
            socket.display()
        );
        assert!(
            !ran.exists(),
            "guard run --socket {} ran the command untracked\nstderr:\n{}",
            socket.display(),
            run.stderr
        );
    }
}
