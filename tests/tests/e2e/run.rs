//! `guard run -- CMD` makes CMD a session root whatever its name, and refuses to run
//! untracked when no daemon answers.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use guard_tests::home::{self, HomeSecrets, ORIGINAL_HOOK, TestUser, run_ok};
use guard_tests::{
    Daemon, Event, EventsTo, Finished, Running, TempDir, assert_same_identity, check_schema, dump,
    find, guard_bin, session_ended, session_of, unique_name,
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

/// What the confinement test's shell tries, one report each: a write to the
/// repository's hook, reads of its `.env`, of what its committed ignore file names
/// and of the user's SSH key, an edit of the ignore file, moving `.git` aside (to
/// put a copy without the covers in its place), and the work it may do.
const CONFINED: &str = "echo evil > .git/hooks/pre-commit; echo hook=$?; \
     cat .env; echo env=$?; \
     cat private/notes.txt; echo private=$?; \
     cat db.dump; echo dump=$?; \
     echo loosened > .codexignore; echo ignorefile=$?; \
     cat ~/.ssh/id_rsa; echo ssh=$?; \
     mv .git .git-aside; echo mv=$?; \
     echo ok > out.txt; echo workspace=$?; \
     t=$(mktemp) && rm \"$t\"; echo tmp=$?";

/// The ignore file the confinement test's repository commits.
const IGNORE: &str = "/private/\n*.dump\n";

fn git(ws: &Path, home: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .args(args)
            .current_dir(ws)
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1"),
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "the same confined shell run as root then as the user, each run checked on disk, in events and in sessions"
)]
fn run_confines_the_session_in_a_mount_namespace_for_root_and_for_a_user() {
    let user = TestUser::create("gmn");
    let secrets = HomeSecrets::new();
    let ws = home::furnish(&user, &secrets);
    let private = home::secret("private");
    fs::write(ws.join(".codexignore"), IGNORE).expect("write .codexignore");
    git(&ws, &user.home, &["add", ".codexignore"]);
    git(
        &ws,
        &user.home,
        &["commit", "--quiet", "-m", "agents keep out"],
    );
    fs::create_dir(ws.join("private")).expect("mkdir");
    fs::write(ws.join("private/notes.txt"), &private).expect("write");
    fs::write(ws.join("db.dump"), &private).expect("write");
    user.chown_home();
    let mut daemon = Daemon::start_with_args(
        &[&unique_name("gm")],
        EventsTo::File,
        &[OsStr::new("--policy"), OsStr::new("workstation")],
    );
    // The user's own `guard run` reaches the daemon (a `guard` group would).
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o711)).expect("chmod");
    fs::set_permissions(daemon.socket(), fs::Permissions::from_mode(0o666)).expect("chmod");
    let setpriv = |cmd: &mut Command| {
        cmd.arg("setpriv")
            .arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--init-groups");
    };
    // Root's `guard run` (its mount namespace needs no user namespace) drops to the
    // user; then the user's own (in a user namespace of its own). Before the second,
    // the ignore file is emptied in the working copy: only the committed one counts.
    for by_user in [false, true] {
        let how = if by_user {
            "the user's guard run"
        } else {
            "root's guard run"
        };
        if by_user {
            fs::write(ws.join(".codexignore"), "").expect("loosen the working copy");
        }
        let ignore_before = fs::read_to_string(ws.join(".codexignore")).expect("read");
        let mut cmd = if by_user {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .arg("--init-groups")
                .arg(guard_bin());
            c
        } else {
            Command::new(guard_bin())
        };
        cmd.arg("run")
            .arg("--socket")
            .arg(daemon.socket())
            .arg("--");
        if !by_user {
            setpriv(&mut cmd);
        }
        cmd.args(["sh", "-c", CONFINED]).current_dir(&ws);
        user.login_env(&mut cmd)
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = Running::spawn(cmd).finish();
        assert_eq!(
            run.code(),
            Some(0),
            "[{how}] the shell did not live: {run:?}"
        );
        // dash: a redirection that cannot open its file is status 2.
        for (key, want) in [
            ("hook", 2),
            ("env", 1),
            ("private", 1),
            ("dump", 1),
            ("ignorefile", 2),
            ("ssh", 1),
            ("mv", 1),
            ("workspace", 0),
            ("tmp", 0),
        ] {
            assert_eq!(run.report(key), want, "[{how}] {key}: {run:?}");
        }
        for secret in [&secrets.ssh, &secrets.dotenv, &private] {
            assert!(
                !run.stdout.contains(secret.as_str()),
                "[{how}] read: {run:?}"
            );
        }
        assert_eq!(
            fs::read_to_string(ws.join(".git/hooks/pre-commit")).expect("the hook"),
            ORIGINAL_HOOK,
            "[{how}] the hook changed"
        );
        assert_eq!(
            fs::read_to_string(ws.join(".codexignore")).expect("the ignore file"),
            ignore_before,
            "[{how}] the ignore file changed"
        );
        assert!(ws.join(".git").is_dir(), "[{how}] .git was moved");
        let events = daemon.wait_for("the end of the session", session_ended(run.pid));
        // The session is the shell's, run by the user, whoever started `guard run`.
        let end = find(&events, "session_end", |e| {
            e.kind() == "session_end" && e.int("root_pid") == Some(run.pid)
        });
        assert_eq!(
            (end.str("agent"), end.str("agent_user")),
            (Some("sh"), Some(user.name.as_str())),
            "[{how}] {end}"
        );
        let session = session_of(&events, run.pid);
        let of_session: Vec<&Event> = events
            .iter()
            .filter(|e| e.session() == Some(session.as_str()))
            .collect();
        for (rule, path, result) in [
            (
                "repo-hooks-write",
                ws.join(".git/hooks/pre-commit"),
                "EROFS",
            ),
            ("dotenv-read", ws.join(".env"), "EACCES"),
            ("files.ignore", ws.join("private/notes.txt"), "EACCES"),
            ("files.ignore", ws.join("db.dump"), "EACCES"),
            ("files.ignore-files", ws.join(".codexignore"), "EROFS"),
            ("credentials-read", user.home.join(".ssh/id_rsa"), "EACCES"),
        ] {
            let path = path.display().to_string();
            let e = of_session
                .iter()
                .find(|e| e.kind() == "open" && e.str("path") == Some(path.as_str()))
                .unwrap_or_else(|| {
                    panic!(
                        "[{how}] no open of {path}:\n{}",
                        dump(&of_session.iter().map(|e| (*e).clone()).collect::<Vec<_>>())
                    )
                });
            assert_eq!(
                (e.str("rule"), e.str("result"), e.str("outcome")),
                (Some(rule), Some(result), Some("denied")),
                "[{how}] {e}"
            );
        }
        let sessions: serde_json::Value =
            serde_json::from_str(&daemon.client(&["sessions", "--json"])).expect("JSON");
        let this = sessions
            .as_array()
            .and_then(|all| all.iter().find(|s| s["root_pid"] == run.pid));
        assert_eq!(
            this.map(|s| (&s["agent"], &s["user"])),
            Some((&serde_json::json!("sh"), &serde_json::json!(user.name))),
            "[{how}] {sessions:#}"
        );
        let mount_ns = sessions
            .as_array()
            .and_then(|all| all.iter().find(|s| s["root_pid"] == run.pid))
            .and_then(|s| s["mount_ns"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            mount_ns.contains("read-only") && mount_ns.contains("hidden"),
            "[{how}] {sessions:#}"
        );
        assert_eq!(
            mount_ns.contains("user namespace"),
            by_user,
            "[{how}] {mount_ns}"
        );
    }
    let events = daemon.stop_ok();
    check_schema(
        &events
            .into_iter()
            .filter(|e| !e.kind().starts_with("policy_"))
            .collect::<Vec<_>>(),
        SystemTime::UNIX_EPOCH,
    );
}
