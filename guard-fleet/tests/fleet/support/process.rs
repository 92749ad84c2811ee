//! The built `guard-fleet` binary as a separate process: a replica the tests can
//! kill at any moment (SIGKILL, by its pid), and the CLI.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the support module"
)]

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// The binary cargo built for these tests.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_guard-fleet");

/// A `guard-fleet serve` process.
pub(crate) struct Replica {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Replica {
    /// Starts `guard-fleet serve --config CONFIG` and waits (30 s at most) until it
    /// listens.
    pub(crate) fn spawn(config: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn guard-fleet");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let plain = strip_ansi(&line);
                let addr = plain
                    .contains("guard-fleet listening")
                    .then(|| plain.split("addr=").nth(1))
                    .flatten()
                    .and_then(|s| s.split_whitespace().next());
                if let Some(addr) = addr {
                    let _ = tx.send(addr.to_owned());
                }
                if let Ok(mut l) = keep.lock() {
                    l.push(plain);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "guard-fleet did not listen within 30 s: {:?}",
                    log.lock().map(|l| l.join("\n"))
                );
            }
        };
        Self {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    /// SIGKILL, now: no shutdown, no flush, nothing.
    pub(crate) fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the CLI with `args`; its exit status, stdout and stderr.
pub(crate) fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("GUARD_FLEET_TOKEN")
        .env_remove("GUARD_FLEET_SERVER")
        .env("NO_COLOR", "1")
        .output()
        .expect("run guard-fleet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
