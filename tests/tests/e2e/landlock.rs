//! `guard run --landlock` (issue 26 item 3): a true deny on kernels without
//! BPF-LSM. The command confines itself with Landlock derived from the daemon's
//! policy before it runs: reading a protected file and writing outside the
//! workspace fail with EACCES, nothing changes, and the command lives; guard
//! reports each attempt with its rule, `denied`.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use guard_tests::{
    Daemon, Enforcing, EventsTo, Finished, Running, TempDir, guard_bin, session_ended, unique_name,
    write_policy,
};

const SECRET: &str = "landlock-secret-5d2e";
const HOOK: &str = "#!/bin/sh\n# the repository's hook\n";

fn guard_run(daemon: &Daemon, dir: &Path, script: &str) -> Finished {
    guard_run_in(daemon, &dir.join("ws"), &dir.join("home"), &[], script)
}

/// `guard run --landlock` of `sh -c script` in `ws`, with `home` as `$HOME` and
/// `writable` besides the defaults.
fn guard_run_in(
    daemon: &Daemon,
    ws: &Path,
    home: &Path,
    writable: &[&Path],
    script: &str,
) -> Finished {
    let mut command = Command::new(guard_bin());
    command
        .arg("run")
        .arg("--socket")
        .arg(daemon.socket())
        .arg("--landlock");
    for w in writable {
        command.arg("--writable").arg(w);
    }
    command
        .args(["--", "sh", "-c", script])
        .current_dir(ws)
        .env("HOME", home)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running::spawn(command).finish()
}

#[test]
fn landlock_refuses_reads_and_writes_and_the_command_lives() {
    // Not under /tmp: the temporary directories stay writable under Landlock.
    let dir = TempDir::new_in("/var/lib", "guard-e2e-landlock");
    let d = dir.path().display().to_string();
    for sub in ["secret", "ws", "home", "etc"] {
        fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    fs::write(dir.join("secret/key"), SECRET).expect("write secret");
    fs::write(dir.join("etc/hook"), HOOK).expect("write hook");
    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            "mode = \"enforce\"\n[agents]\nnames = [\"{}\"]\n\
             [[rule]]\nid = \"no-secret\"\nkind = \"file\"\naccess = [\"read\"]\npaths = [\"{d}/secret/**\"]\naction = \"kill\"\n\
             [[rule]]\nid = \"no-hook\"\nkind = \"file\"\naccess = [\"write\"]\npaths = [\"{d}/etc/hook\"]\naction = \"deny\"\n",
            unique_name("gl")
        ),
    );
    let mut daemon = Daemon::start_with_args(
        &[],
        EventsTo::File,
        &[OsStr::new("--policy"), policy.as_os_str()],
    );
    let run = guard_run(
        &daemon,
        dir.path(),
        &format!(
            "cat {d}/secret/key; echo read=$?; printf evil > {d}/etc/hook; echo write=$?; \
             echo ok > out.txt; echo workspace=$?"
        ),
    );
    assert_eq!(run.code(), Some(0), "the command did not live: {run:?}");
    assert!(!run.stdout.contains(SECRET), "the secret was read: {run:?}");
    assert_eq!(run.report("read"), 1, "{run:?}");
    // dash: a redirection that cannot open its file is status 2.
    assert_eq!(run.report("write"), 2, "{run:?}");
    assert!(run.stderr.contains("Permission denied"), "{run:?}");
    assert_eq!(run.report("workspace"), 0, "{run:?}");
    assert_eq!(
        fs::read_to_string(dir.join("etc/hook")).expect("hook"),
        HOOK,
        "the protected file changed"
    );
    assert_eq!(
        fs::read_to_string(dir.join("ws/out.txt")).expect("out"),
        "ok\n"
    );
    let events = daemon.wait_for("the end of the session", session_ended(run.pid));
    let evs = Enforcing::of_run(&events, &run);
    for (rule, path) in [
        ("no-secret", format!("{d}/secret/key")),
        ("no-hook", format!("{d}/etc/hook")),
    ] {
        let e = evs
            .iter()
            .find(|e| e.kind() == "open" && e.str("rule") == Some(rule))
            .unwrap_or_else(|| panic!("no {rule} event"));
        assert_eq!(e.str("path"), Some(path.as_str()), "{e}");
        assert_eq!(e.str("result"), Some("EACCES"), "{e}");
        assert_eq!(e.str("outcome"), Some("denied"), "{e}");
    }
    let sessions: serde_json::Value =
        serde_json::from_str(&daemon.client(&["sessions", "--json"])).expect("JSON");
    let confined = sessions
        .as_array()
        .and_then(|all| all.iter().find(|s| s["root_pid"] == run.pid))
        .and_then(|s| s["landlock"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        confined.starts_with("fully enforced") || confined.starts_with("partly enforced"),
        "{sessions:#}"
    );
    daemon.stop_ok();
}

#[test]
fn landlock_keeps_tmp_writable_when_the_workspace_is_below_it() {
    // Issue 48: a workspace below /tmp, or a --writable path below it, made /tmp a
    // split directory that only could be listed: `mktemp` failed.
    let outside = TempDir::new_in("/var/lib", "guard-e2e-landlock-tmp");
    let o = outside.path().display().to_string();
    for sub in ["secret", "home", "etc"] {
        fs::create_dir_all(outside.join(sub)).expect("mkdir");
    }
    fs::write(outside.join("secret/key"), SECRET).expect("write secret");
    let ws = TempDir::new("guard-e2e-landlock-ws");
    let extra = TempDir::new("guard-e2e-landlock-extra");
    let policy = outside.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            "mode = \"enforce\"\n[agents]\nnames = [\"{}\"]\n\
             [[rule]]\nid = \"no-secret\"\nkind = \"file\"\naccess = [\"read\"]\npaths = [\"{o}/secret/**\"]\naction = \"kill\"\n",
            unique_name("gl")
        ),
    );
    let mut daemon = Daemon::start_with_args(
        &[],
        EventsTo::File,
        &[OsStr::new("--policy"), policy.as_os_str()],
    );
    let run = guard_run_in(
        &daemon,
        ws.path(),
        &outside.join("home"),
        &[extra.path()],
        &format!(
            "t=$(mktemp) && echo x > \"$t\" && rm \"$t\"; echo tmp=$?; \
             d=$(mktemp -d) && rmdir \"$d\"; echo tmpdir=$?; \
             e=$(mktemp -p {extra}) && echo x > \"$e\"; echo extra=$?; \
             echo ok > out.txt; echo workspace=$?; \
             echo x > {o}/etc/new; echo outside=$?; \
             cat {o}/secret/key; echo read=$?",
            extra = extra.path().display()
        ),
    );
    assert_eq!(run.code(), Some(0), "the command did not live: {run:?}");
    for key in ["tmp", "tmpdir", "extra", "workspace"] {
        assert_eq!(run.report(key), 0, "{key}: {run:?}");
    }
    // The earlier cases hold: nothing outside the writable trees changes, the
    // secret is not read.
    assert_eq!(run.report("outside"), 2, "{run:?}");
    assert_eq!(run.report("read"), 1, "{run:?}");
    assert!(!run.stdout.contains(SECRET), "the secret was read: {run:?}");
    assert!(!outside.join("etc/new").exists());
    assert_eq!(fs::read_to_string(ws.join("out.txt")).expect("out"), "ok\n");
    assert_eq!(
        fs::read_dir(extra.path()).expect("extra").count(),
        1,
        "mktemp -p made its file"
    );
    let events = daemon.wait_for("the end of the session", session_ended(run.pid));
    let evs = Enforcing::of_run(&events, &run);
    let e = evs
        .iter()
        .find(|e| e.kind() == "open" && e.str("rule") == Some("no-secret"))
        .unwrap_or_else(|| panic!("no no-secret event"));
    assert_eq!(e.str("result"), Some("EACCES"), "{e}");
    assert_eq!(e.str("outcome"), Some("denied"), "{e}");
    daemon.stop_ok();
}
