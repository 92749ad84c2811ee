//! A fleet server of the test's own: `guard-fleet serve` as a trial (SQLite and its
//! tokens file in a temporary directory), listening on a loopback port the kernel
//! picks, stopped (SIGKILL, by its pid) when the fixture drops. Read through
//! `guard fleet …`, the CLI a security team uses.

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::{TempDir, guard_bin, scaled, wait_until, wait_until_every, watch};

/// How long the server may take to open its database and listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The `guard-fleet` binary: `$GUARD_FLEET_BIN`, else the one beside guard's.
pub fn fleet_bin() -> PathBuf {
    let path = std::env::var_os("GUARD_FLEET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| guard_bin().with_file_name("guard-fleet"));
    assert!(
        path.is_file(),
        "guard-fleet binary not found at {}: build it (cargo build --release -p guard-fleet) or \
         set GUARD_FLEET_BIN",
        path.display()
    );
    path
}

pub struct Fleet {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The trial's cluster token: hosts send with it.
    pub ingest_token: String,
    /// The trial's dashboard token: people (and `guard fleet sessions`) read with it.
    pub dashboard_token: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Fleet {
    /// Starts the trial and waits until it listens.
    pub fn start() -> Fleet {
        let dir = TempDir::new("guard-e2e-fleet");
        let config = dir.join("fleet.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
                dir.path().display()
            ),
        )
        .expect("write the fleet's configuration");
        let mut child = Command::new(fleet_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn guard-fleet serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let keep = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().expect("log").push(line);
            }
        });
        let mut fleet = Fleet {
            child,
            base: String::new(),
            ingest_token: String::new(),
            dashboard_token: String::new(),
            log,
            _dir: dir,
        };
        let after = |log: &[String], marker: &str| {
            log.iter().find_map(|l| {
                Some(
                    l.split(marker)
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .to_owned(),
                )
            })
        };
        wait_until("guard-fleet to listen", scaled(LISTEN_TIMEOUT), || {
            if let Ok(Some(status)) = fleet.child.try_wait() {
                panic!("guard-fleet serve exited ({status}):\n{}", fleet.log());
            }
            let log = fleet.log.lock().expect("log");
            match (
                after(&log, "guard-fleet listening addr="),
                after(&log, "Authorization: Bearer "),
                after(&log, "dashboard token:"),
            ) {
                (Some(addr), Some(ingest), Some(dashboard)) => {
                    fleet.base = format!("http://{addr}");
                    fleet.ingest_token = ingest;
                    fleet.dashboard_token = dashboard;
                    true
                }
                _ => false,
            }
        });
        fleet
    }

    /// Where hosts send: `/v1/logs`.
    pub fn ingest_url(&self) -> String {
        format!("{}/v1/logs", self.base)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// `guard fleet ARGS --server … --token …` (guard's own command, which runs
    /// guard-fleet): its stdout, or why it failed.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(guard_bin());
        cmd.arg("fleet")
            .args(args)
            .args([
                OsStr::new("--server"),
                OsStr::new(&self.base),
                OsStr::new("--token"),
                OsStr::new(&self.dashboard_token),
            ])
            .env_remove("GUARD_FLEET_SERVER")
            .env_remove("GUARD_FLEET_TOKEN");
        let out = watch::output(&mut cmd, scaled(Duration::from_secs(30)));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "guard fleet {args:?}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Waits until the fleet has `session`'s final summary; its `SessionDetail` as
    /// `guard fleet report SESSION --json` prints it.
    pub fn wait_ended(&self, session: &str, timeout: Duration) -> Value {
        let mut last = String::new();
        let mut detail = Value::Null;
        // Each check runs `guard fleet`, which runs guard-fleet: not every 20 ms.
        wait_until_every(
            &format!("the fleet to hold the end of session {session}"),
            timeout,
            Duration::from_millis(250),
            || match self.cli(&["report", session, "--json"]) {
                Ok(out) => {
                    detail = serde_json::from_str(&out).unwrap_or(Value::Null);
                    last = out;
                    detail["session"]["state"] == "ended"
                }
                Err(e) => {
                    last = e;
                    false
                }
            },
        );
        assert!(!detail.is_null(), "{last}\nserver log:\n{}", self.log());
        detail
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- guard-fleet log ---\n{}", self.log());
        }
    }
}
