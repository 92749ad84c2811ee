//! Work handed to a process outside the tree (issue 40, docs/policy.md
//! "[delegation]"): long-lived servers started before the daemon, outside every
//! session, run commands when a session asks them. A session's connect to one is
//! an event naming it (program, pid, user, kind of spawner) and a violation of
//! `delegation.spawner`; where the policy refuses delegation the connect fails
//! (BPF-LSM) or its caller dies before the connect returns, and nothing is asked;
//! where it only alerts, what the spawner forks right after the request joins the
//! session as a `delegate` and the policy's rules stop it there.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use guard_tests::{Enforcing, Event, dump, fake_agent_exe, scaled, wait_until};

/// A tmux server on the test's own socket, started outside every session (before
/// the daemon), with one window; killed at drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("tmux.sock").display().to_string();
        let ok = Command::new("tmux")
            .args([
                "-S",
                &socket,
                "new-session",
                "-d",
                "-s",
                "guard",
                "sleep 600",
            ])
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .status()
            .expect("run tmux (a test dependency)");
        assert!(ok.success(), "tmux new-session failed");
        Self { socket }
    }

    fn server_pid(&self) -> i64 {
        let out = Command::new("tmux")
            .args(["-S", &self.socket, "display-message", "-p", "#{pid}"])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the tmux server's pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .status();
    }
}

fn rules(action: &str) -> String {
    format!(
        r#"
[delegation]
action = "{action}"

[[rule]]
id = "keys"
kind = "file"
access = ["read"]
paths = ["{{dir}}/keys/**"]
action = "kill"
"#
    )
}

fn prepare(dir: &guard_tests::TempDir) {
    std::fs::create_dir_all(dir.join("keys")).expect("mkdir keys");
    std::fs::write(dir.join("keys/id_test"), "PRIVATE KEY\n").expect("write the key");
}

/// The `unix` event of the session's connect to the tmux server.
fn connect_to<'e>(events: &'e [&'e Event], socket: &str) -> &'e Event {
    events
        .iter()
        .copied()
        .find(|e| e.kind() == "unix" && e.str("path") == Some(socket))
        .unwrap_or_else(|| panic!("no unix event for {socket}"))
}

/// Alert: the connect is reported with its listener; the window tmux opens for the
/// session is the session's (a delegate), so the copy it runs of a key is killed at
/// the read and no copy is made.
#[test]
fn a_tmux_server_s_window_asked_for_by_a_session_is_the_session_s() {
    let tmux_dir = guard_tests::TempDir::new("guard-e2e-tmux");
    let tmux = Tmux::start(tmux_dir.path());
    let server = tmux.server_pid();
    let mut t = Enforcing::start(
        fake_agent_exe!(),
        "guard-e2e-delegation",
        &rules("alert"),
        prepare,
    );
    let copy = t.path("copy");
    let script = format!(
        "tmux -S {} new-window -d 'cp {{dir}}/keys/id_test {copy}; touch {{dir}}/ran'",
        tmux.socket
    );
    let (run, _) = t.sh(&script);
    run.assert_success();
    // The window's shell ran, and its cp was killed reading the key.
    let ran = t.dir.join("ran");
    wait_until(
        "the window's command ran",
        scaled(Duration::from_secs(20)),
        || ran.exists(),
    );
    let events = t.daemon.wait_for("the delegate's kill", |evs| {
        evs.iter()
            .any(|e| e.str("rule") == Some("keys") && e.str("outcome") == Some("killed"))
    });
    assert!(
        !Path::new(&copy).exists(),
        "the copy was made\n{}",
        dump(&events)
    );
    let mine = Enforcing::of_run(&events, &run);
    let connect = connect_to(&mine, &tmux.socket);
    let listener = connect.get("listener").expect("the listener");
    assert_eq!(listener["pid"], server, "{connect}");
    assert_eq!(listener["program"], "tmux", "{connect}");
    assert_eq!(listener["spawner"], "tmux", "{connect}");
    assert_eq!(listener["user"], "root", "{connect}");
    let v = mine
        .iter()
        .find(|e| e.str("rule") == Some("delegation.spawner"))
        .unwrap_or_else(|| panic!("no delegation violation\n{}", dump(&events)));
    assert_eq!(
        (v.str("action"), v.str("outcome")),
        (Some("alert"), Some("alerted"))
    );
    // The server's fork joined the session; the cp was its process.
    let fork = mine
        .iter()
        .find(|e| e.kind() == "fork" && e.pid() == Some(server))
        .unwrap_or_else(|| panic!("no fork of the tmux server\n{}", dump(&events)));
    assert_eq!(fork.str("role"), Some("delegate"), "{fork}");
    let killed = mine
        .iter()
        .find(|e| e.str("rule") == Some("keys"))
        .unwrap_or_else(|| panic!("the read is not in the session\n{}", dump(&events)));
    assert_eq!(killed.str("role"), Some("delegate"), "{killed}");
    assert_eq!(killed.str("comm"), Some("cp"));
    t.finish();
}

/// Deny: the connect to the spawner fails (BPF-LSM: EPERM) or its caller dies
/// before it returns (tracepoint tier): tmux is never asked, nothing runs.
#[test]
fn a_refusing_policy_stops_the_request_to_a_tmux_server() {
    let tmux_dir = guard_tests::TempDir::new("guard-e2e-tmux");
    let tmux = Tmux::start(tmux_dir.path());
    let mut t = Enforcing::start(
        fake_agent_exe!(),
        "guard-e2e-delegation-deny",
        &rules("deny"),
        prepare,
    );
    let script = format!(
        "tmux -S {} new-window -d 'touch {{dir}}/ran'; echo $? > {{dir}}/code",
        tmux.socket
    );
    let (_run, events) = t.sh(&script);
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.str("rule") == Some("delegation.spawner"))
        .collect();
    let v = mine
        .first()
        .unwrap_or_else(|| panic!("no delegation violation\n{}", dump(&events)));
    assert_eq!(v.kind(), "unix");
    assert_eq!(v.str("outcome"), Some(t.deny_outcome()), "{v}");
    // Nothing was asked of tmux: the window's command never ran (tmux's own
    // windows: the first, still there).
    let windows = Command::new("tmux")
        .args(["-S", &tmux.socket, "list-windows"])
        .output()
        .expect("list-windows");
    assert_eq!(
        String::from_utf8_lossy(&windows.stdout).lines().count(),
        1,
        "{}",
        dump(&events)
    );
    assert!(!t.dir.join("ran").exists());
    t.finish();
}

/// A GNU screen server's window, asked for by a session: reported and the
/// session's, like tmux's.
#[test]
fn a_screen_server_s_window_asked_for_by_a_session_is_the_session_s() {
    let dir = guard_tests::TempDir::new("guard-e2e-screen");
    let name = guard_tests::unique_name("gs");
    // Screen's sockets live in $SCREENDIR: the test's own directory (mode 700).
    let screendir = dir.join("s");
    std::fs::create_dir_all(&screendir).expect("mkdir");
    std::fs::set_permissions(
        &screendir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let ok = Command::new("screen")
        .args(["-dmS", &name, "sleep", "600"])
        .env("SCREENDIR", &screendir)
        .stdin(Stdio::null())
        .status()
        .expect("run screen (a test dependency)");
    assert!(ok.success());
    struct Quit(String, std::path::PathBuf);
    impl Drop for Quit {
        fn drop(&mut self) {
            let _ = Command::new("screen")
                .args(["-S", &self.0, "-X", "quit"])
                .env("SCREENDIR", &self.1)
                .status();
        }
    }
    let _quit = Quit(name.clone(), screendir.clone());
    let mut t = Enforcing::start(
        fake_agent_exe!(),
        "guard-e2e-delegation-screen",
        &rules("alert"),
        prepare,
    );
    let copy = t.path("copy");
    let script = format!(
        "SCREENDIR={} screen -S {name} -X screen sh -c 'cp {{dir}}/keys/id_test {copy}; touch {{dir}}/ran'",
        screendir.display()
    );
    let (run, _) = t.sh(&script);
    run.assert_success();
    let ran = t.dir.join("ran");
    wait_until(
        "the window's command ran",
        scaled(Duration::from_secs(20)),
        || ran.exists(),
    );
    let events = t.daemon.wait_for("the delegate's kill", |evs| {
        evs.iter()
            .any(|e| e.str("rule") == Some("keys") && e.str("outcome") == Some("killed"))
    });
    assert!(
        !Path::new(&copy).exists(),
        "the copy was made\n{}",
        dump(&events)
    );
    let mine = Enforcing::of_run(&events, &run);
    assert!(
        mine.iter()
            .any(|e| e.kind() == "unix"
                && e.get("listener").is_some_and(|l| l["spawner"] == "screen")),
        "{}",
        dump(&events)
    );
    t.finish();
}
