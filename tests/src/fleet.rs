//! A fleet server of the test's own: `guard-fleet serve` as a trial (SQLite and its
//! tokens file in a temporary directory), listening on a loopback port the kernel
//! picks, stopped (SIGKILL, by its pid) when the fixture drops. Read through
//! `guard fleet …`, the CLI a security team uses.

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    net::{Shutdown, TcpListener, TcpStream},
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
    pub fn start() -> Self {
        Self::spawn("", None)
    }

    /// A replica on the PostgreSQL at `database_url`. The first (`tokens_of`
    /// `None`) makes the tokens as a trial does; the others read its tokens file.
    pub fn replica(database_url: &str, tokens_of: Option<&Self>) -> Self {
        let mut config = format!("[database]\nurl = \"{database_url}\"\nmax_connections = 4\n");
        if let Some(first) = tokens_of {
            config.insert_str(
                0,
                &format!(
                    "tokens_file = \"{}\"\n",
                    first._dir.join("tokens.toml").display()
                ),
            );
        }
        Self::spawn(&config, tokens_of)
    }

    /// A server with `extra` configuration whose tokens file (named there) holds
    /// `ingest_token` (hosts) and `dashboard_token` (people).
    pub fn configured(extra: &str, ingest_token: &str, dashboard_token: &str) -> Self {
        Self::spawn_with(extra, Some((ingest_token, dashboard_token)))
    }

    /// Starts `guard-fleet serve` with `extra` configuration and waits until it
    /// listens; the tokens are its own (printed) or `tokens_of`'s.
    fn spawn(extra: &str, tokens_of: Option<&Self>) -> Self {
        Self::spawn_with(
            extra,
            tokens_of.map(|f| (f.ingest_token.as_str(), f.dashboard_token.as_str())),
        )
    }

    fn spawn_with(extra: &str, tokens: Option<(&str, &str)>) -> Self {
        let dir = TempDir::new("guard-e2e-fleet");
        let config = dir.join("fleet.toml");
        // Top-level keys before the tables of `extra`.
        let (keys, tables) = extra.split_at(extra.find('[').unwrap_or(extra.len()));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n{keys}{tables}",
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
        let mut fleet = Self {
            child,
            base: String::new(),
            ingest_token: String::new(),
            dashboard_token: String::new(),
            log,
            _dir: dir,
        };
        if let Some((ingest, dashboard)) = tokens {
            fleet.ingest_token = ingest.to_owned();
            fleet.dashboard_token = dashboard.to_owned();
        }
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
            let Some(addr) = after(&log, "guard-fleet listening addr=") else {
                return false;
            };
            if fleet.ingest_token.is_empty() {
                match (
                    after(&log, "Authorization: Bearer "),
                    after(&log, "dashboard token:"),
                ) {
                    (Some(ingest), Some(dashboard)) => {
                        fleet.ingest_token = ingest;
                        fleet.dashboard_token = dashboard;
                    }
                    _ => return false,
                }
            }
            fleet.base = format!("http://{addr}");
            true
        });
        fleet
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Kills the server (SIGKILL, by its pid), as a replica dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A daemon (agents `agents`, policy `policy`) that exports every session to
    /// this fleet with its ingest token, from a file in `state` (its state
    /// directory, which holds the spool).
    pub fn host(&self, agents: &[&str], policy: &str, state: &TempDir) -> crate::Daemon {
        let token = state.join("export-token");
        std::fs::write(&token, &self.ingest_token).expect("write the export token");
        let url = self.ingest_url();
        crate::Daemon::start_with_args(
            agents,
            crate::EventsTo::File,
            &[
                OsStr::new("--policy"),
                OsStr::new(policy),
                OsStr::new("--export-endpoint"),
                OsStr::new(&url),
                OsStr::new("--export-token-file"),
                token.as_os_str(),
                OsStr::new("--state-dir"),
                state.path().as_os_str(),
            ],
        )
    }

    /// Where hosts send: `/v1/logs`.
    pub fn ingest_url(&self) -> String {
        format!("{}/v1/logs", self.base)
    }

    /// A dashboard page's HTML, fetched as the organisation's proxy would (the
    /// dashboard token as a bearer; HTTP/1.0, so the body is not chunked).
    pub fn page(&self, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = TcpStream::connect(self.addr()).expect("connect to the fleet");
        s.set_read_timeout(Some(scaled(Duration::from_secs(30))))
            .expect("a read timeout");
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.addr(),
            self.dashboard_token
        )
        .expect("send the request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read the page");
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{path}: {}",
            answer.lines().next().unwrap_or_default()
        );
        answer
    }

    /// `guard-fleet ARGS` (the server's own binary, as an admin runs it): its
    /// stdout, or why it failed.
    pub fn admin(args: &[&OsStr]) -> Result<String, String> {
        let mut cmd = Command::new(fleet_bin());
        cmd.args(args)
            .env_remove("GUARD_FLEET_SERVER")
            .env_remove("GUARD_FLEET_TOKEN");
        let out = watch::output(&mut cmd, scaled(Duration::from_secs(30)));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "guard-fleet {args:?}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
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

/// A load balancer in front of replicas, as an organisation puts one: TCP on
/// 127.0.0.1, each connection piped to the next replica that accepts it (a dead one
/// is skipped). [`Balancer::partition`] makes it a black hole, as a host's link to the
/// fleet that drops every packet: the connections under way are cut and new ones
/// are accepted and never answered, until it heals.
pub struct Balancer {
    addr: String,
    partitioned: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The piped connections (client and replica sides), to cut.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Balancer {
    pub fn start(replicas: Vec<String>) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
        let addr = listener.local_addr().expect("its address").to_string();
        let balancer = Self {
            addr,
            partitioned: Arc::default(),
            stop: Arc::default(),
            open: Arc::default(),
        };
        let (partitioned, stop, open) = (
            Arc::clone(&balancer.partitioned),
            Arc::clone(&balancer.stop),
            Arc::clone(&balancer.open),
        );
        thread::spawn(move || {
            let mut next = 0;
            let mut held = Vec::new();
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if partitioned.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                held.clear();
                let n = replicas.len();
                let upstream = (0..n).find_map(|i| {
                    let to = replicas[(next + i) % n].parse().ok()?;
                    let s = TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()?;
                    next = (next + i + 1) % n;
                    Some(s)
                });
                let Some(upstream) = upstream else { continue };
                pipe(client, upstream, &open);
            }
        });
        balancer
    }

    /// Where hosts send: `/v1/logs`.
    pub fn ingest_url(&self) -> String {
        format!("http://{}/v1/logs", self.addr)
    }

    /// Cuts the link (every connection under way, and each new one is held
    /// unanswered), or heals it.
    pub fn partition(&self, on: bool) {
        use std::sync::atomic::Ordering;
        self.partitioned.store(on, Ordering::SeqCst);
        if on {
            for s in self.open.lock().expect("connections").drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies `a` to `b` and `b` to `a` until either side closes.
fn pipe(a: TcpStream, b: TcpStream, open: &Mutex<Vec<TcpStream>>) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    if let (Ok(a3), Ok(b3)) = (a.try_clone(), b.try_clone()) {
        open.lock().expect("connections").extend([a3, b3]);
    }
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::SeqCst);
        self.partition(true);
        // Wakes the accept loop, which sees `stop`.
        let _ = TcpStream::connect(&self.addr);
    }
}
