//! `guard top` in a real terminal (a detached tmux session): it shows a live session
//! and its process tree, and kills the session once the kill is confirmed. Without a
//! daemon, or without the right to connect, it says so in one line and exits 1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use guard_tests::{Daemon, Running, TempDir, children, gone, guard_bin, require_root, unique_name};

/// How long the screen may take to show something.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A detached tmux session on a tmux server of its own (its socket in a temp dir),
/// killed on drop.
struct Tmux {
    dir: TempDir,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a `width` x `height` terminal.
    fn start(width: u16, height: u16, command: &str) -> Self {
        let tmux = Self {
            dir: TempDir::new("guard-e2e-tmux"),
        };
        let out = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "top",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                command,
            ])
            .output()
            .expect(
                "run tmux (install it: apt-get install tmux, or cargo xtask setup --test-deps)",
            );
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        // -u: UTF-8 whatever the locale; -S: a server of our own.
        cmd.args(["-u", "-S"])
            .arg(self.dir.join("tmux.sock"))
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null());
        cmd
    }

    /// The screen, as text.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types keys (tmux key names: `K`, `y`, `Tab`, `Enter`).
    fn keys(&self, keys: &[&str]) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .output()
            .expect("tmux send-keys");
        assert!(
            out.status.success(),
            "tmux send-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until the screen satisfies `done`; fails the test with the screen if it never does.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if start.elapsed() > SCREEN_TIMEOUT {
                panic!("the screen did not show {what} within {SCREEN_TIMEOUT:?}:\n{screen}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Single quotes for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `line` has each of `words` as a whole word (between spaces or box lines).
fn has_words(line: &str, words: &[&str]) -> bool {
    let have: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || "│┃>─├└".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().all(|w| have.contains(w))
}

#[test]
fn top_shows_a_session_and_kills_it() {
    require_root();
    let mut daemon = Daemon::start(&[&unique_name("ga")]);
    let socket = daemon.socket().to_owned();

    // A session with a tree: sh (the root) and its child sleep.
    let mut run = Command::new(guard_bin());
    run.arg("run")
        .arg("--socket")
        .arg(&socket)
        .args(["--", "/bin/sh", "-c", "sleep 60; true"])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let run = Running::spawn(run);
    let root = run.pid();
    let start = Instant::now();
    let sleep = loop {
        if let Some(&child) = children(root).first()
            && fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == "sleep")
        {
            break child;
        }
        assert!(
            start.elapsed() < SCREEN_TIMEOUT,
            "sh ({root}) did not start sleep"
        );
        thread::sleep(Duration::from_millis(20));
    };
    daemon.wait_for(&format!("the exec of sleep ({sleep})"), |events| {
        events.iter().any(|e| e.is("exec", sleep))
    });

    let command = format!(
        "{} top --socket {}; echo \"guard top exited with $?\"; sleep 600",
        quote(&guard_bin().to_string_lossy()),
        quote(&socket.to_string_lossy())
    );
    let tmux = Tmux::start(150, 40, &command);

    // The session (agent sh, root pid) and its tree (sleep's pid and command line).
    let (root_s, sleep_s) = (root.to_string(), sleep.to_string());
    let screen = tmux.wait_for("the session and its tree", |s| {
        // The sessions row: agent sh (named after the command guard run ran), root pid, running.
        s.lines().any(|l| has_words(l, &["sh", &root_s, "run"]))
            // The tree: sh's command line and its child sleep.
            && s.lines().any(|l| has_words(l, &[&root_s, "/bin/sh", "-c", "sleep", "60;", "true"]))
            && s.lines().any(|l| has_words(l, &[&sleep_s, "60"]) && l.contains("sleep 60"))
            // The status line, once the daemon's status has come.
            && s.contains(" ev/s │ lost ")
    });
    eprintln!("guard top, root {root}, sleep {sleep}:\n{screen}");

    // K asks first; y kills.
    tmux.keys(&["K"]);
    tmux.wait_for("the kill confirmation", |s| {
        s.contains(&format!("root pid {root}")) && s.contains("Kill session")
    });
    tmux.keys(&["y"]);

    let finished = run.finish();
    assert_eq!(
        finished.signal(),
        Some(libc::SIGKILL),
        "the session root ({root}) was not killed: {finished:?}"
    );
    let start = Instant::now();
    while !gone(sleep) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "sleep ({sleep}) outlived its killed session"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let screen = tmux.wait_for("the session ended", |s| {
        s.contains("killed session") && s.lines().any(|l| has_words(l, &["sh", &root_s, "ended"]))
    });
    eprintln!("after the kill:\n{screen}");

    tmux.keys(&["q"]);
    tmux.wait_for("guard top exiting 0", |s| {
        s.contains("guard top exited with 0")
    });
}

fn top(socket: &Path, uid: Option<u32>, bin: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("top")
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("run guard top")
}

#[test]
fn top_says_when_it_cannot_reach_the_daemon() {
    let dir = TempDir::new("guard-e2e-top");
    let missing = dir.join("missing.sock");
    let out = top(&missing, None, &guard_bin());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "guard top: cannot reach the guard daemon at {} (is guard daemon running?)\n",
            missing.display()
        )
    );
}

#[test]
fn top_says_when_it_may_not_connect() {
    require_root();
    // A socket only root may use, and guard top run as nobody.
    let dir = TempDir::new("guard-e2e-top");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
    let bin = dir.join("guard");
    fs::copy(guard_bin(), &bin).expect("copy guard");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod guard");
    let socket = dir.join("root-only.sock");
    let _listener = UnixListener::bind(&socket).expect("bind a unix socket");
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600)).expect("chmod the socket");

    let out = top(&socket, Some(65534), &bin);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "guard top: permission denied on the guard daemon's socket {}",
            socket.display()
        )) && stderr.lines().count() == 1,
        "{stderr}"
    );
}
