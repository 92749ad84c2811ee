//! `guard daemon --metrics ADDR` scraped by a real Prometheus server.
//!
//! The test starts the daemon with its metrics endpoint on a free loopback port, and
//! Prometheus (Debian's `prometheus` package, installed with apt-get when it is
//! missing) scraping it every second. A fake agent runs a session, held open until a
//! scrape has seen it active; the test then asks Prometheus's HTTP API until what it
//! scraped agrees with the events the daemon wrote: `guard_events_total` by kind equals
//! the events of that kind in the events file, `guard_sessions_total` (summed over
//! agents) equals its `session_start` events, and `guard_active_sessions` was at
//! least 1 while the session lived.
//!
//! Run as root, like every end-to-end test:
//! `cargo test -p guard-tests --test e2e metrics:: -- --test-threads=1`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use guard_tests::{
    FakeAgent, Fifo, PIPE_CLOSE_TIMEOUT, PinDir, READY_LINE, READY_TIMEOUT, TempDir,
    fake_agent_exe, guard_bin, require_root,
};
use serde_json::Value;

/// The most sessions a scrape saw active in the last five minutes.
const ACTIVE_SESSIONS_SEEN: &str = "max_over_time(guard_active_sessions{job=\"guard\"}[5m])";

/// How long Prometheus may take to start, scrape and answer with the expected values.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1 (free when this returns; the caller binds it soon).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A hand-written HTTP/1.0 GET: the status and the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("read the answer to GET {path} from {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP header in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A process killed (SIGKILL to its process group) on drop, with its output collected.
struct Proc {
    child: Child,
    what: String,
    log: Arc<Mutex<String>>,
    /// Signalled by the readers of stdout and stderr at the end of their pipe.
    closed: Vec<mpsc::Receiver<()>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {what}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let mut closed = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            let (tx, rx) = mpsc::channel();
            closed.push(rx);
            thread::spawn(move || {
                let mut pipe = pipe;
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
                let _ = tx.send(());
            });
        }
        Ok(Self {
            child,
            what,
            log,
            closed,
        })
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Fails if the process has exited.
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            // The log is whole once the readers reach the end of the pipes.
            for closed in &self.closed {
                let _ = closed.recv_timeout(PIPE_CLOSE_TIMEOUT);
            }
            bail!("{} exited ({status}):\n{}", self.what, self.log());
        }
        Ok(())
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: our child leads its own process group and has not been reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
        if thread::panicking() {
            eprintln!("--- {} ---\n{}\n--- end ---", self.what, self.log());
        }
    }
}

/// `guard daemon --agent NAME --events FILE --socket SOCK --metrics 127.0.0.1:PORT`,
/// started like the fixtures' `Daemon` (which takes no extra arguments), ready.
fn start_daemon(agent: &str, dir: &Path, pins: &PinDir, metrics: SocketAddr) -> Result<Proc> {
    let mut cmd = Command::new(guard_bin());
    cmd.arg("daemon")
        .arg("--pin-dir")
        .arg(pins.path())
        .args(["--agent", agent])
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--socket")
        .arg(dir.join("guard.sock"))
        .arg("--metrics")
        .arg(metrics.to_string());
    let mut daemon = Proc::spawn(cmd)?;
    let start = Instant::now();
    while !daemon.log().contains(READY_LINE) {
        daemon.check_running()?;
        ensure!(
            start.elapsed() < READY_TIMEOUT,
            "guard daemon did not log {READY_LINE:?} within {READY_TIMEOUT:?}:\n{}",
            daemon.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(daemon)
}

/// The prometheus binary, installed from Debian if it is missing.
fn prometheus_bin() -> Result<PathBuf> {
    let installed = || {
        ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(bin) = installed() {
        return Ok(bin);
    }
    eprintln!("prometheus is not installed; installing Debian's package");
    let apt = |args: &[&str]| -> Result<bool> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("run apt-get")?;
        Ok(status.success())
    };
    let install = ["install", "-y", "--no-install-recommends", "prometheus"];
    if !apt(&install)? {
        ensure!(apt(&["update"])?, "apt-get update failed");
        ensure!(apt(&install)?, "apt-get install prometheus failed");
    }
    installed().context("apt-get installed prometheus, but /usr/bin/prometheus is missing")
}

/// Prometheus on 127.0.0.1:`port`, scraping `target` every second, storing in `dir`.
fn start_prometheus(dir: &Path, port: u16, target: SocketAddr) -> Result<Proc> {
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: guard\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )?;
    let mut cmd = Command::new(prometheus_bin()?);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(dir);
    let mut prometheus = Proc::spawn(cmd)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        prometheus.check_running()?;
        if let Ok((200, _)) = http_get(addr, "/-/ready") {
            return Ok(prometheus);
        }
        ensure!(
            start.elapsed() < PROMETHEUS_TIMEOUT,
            "prometheus was not ready within {PROMETHEUS_TIMEOUT:?}:\n{}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The instant vector of `query`: each sample's labels and value.
fn query(prometheus: SocketAddr, query: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(query)),
    )?;
    ensure!(status == 200, "query {query:?}: HTTP {status}: {body}");
    let answer: Value =
        serde_json::from_str(&body).with_context(|| format!("query {query:?}: {body}"))?;
    ensure!(
        answer.get("status") == Some(&Value::from("success")),
        "query {query:?}: {body}"
    );
    let result = answer
        .pointer("/data/result")
        .and_then(Value::as_array)
        .with_context(|| format!("query {query:?}: no result in {body}"))?;
    result
        .iter()
        .map(|sample| {
            let labels = sample
                .get("metric")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let value = sample
                .pointer("/value/1")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("query {query:?}: bad sample {sample}"))?;
            Ok((labels, value))
        })
        .collect()
}

/// The events file's events, counted by kind.
fn events_by_kind(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        let kind = event
            .get("kind")
            .and_then(Value::as_str)
            .with_context(|| format!("no kind: {line}"))?;
        *counts.entry(kind.to_owned()).or_insert(0.0) += 1.0;
    }
    Ok(counts)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one daemon and one Prometheus, waited on in order: first scrape, live session, matching counts, gauge at 0"
)]
fn prometheus_scrapes_the_daemon() -> Result<()> {
    require_root();
    let dir = TempDir::new("guard-e2e-metrics");
    let agent = FakeAgent::install(fake_agent_exe!());
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    // Declared before the daemon, so removed after it stopped.
    let pins = PinDir::new();
    let mut daemon = start_daemon(agent.name(), dir.path(), &pins, metrics)?;

    // The daemon's own endpoints, before Prometheus looks at them.
    let (status, body) = http_get(metrics, "/healthz")?;
    ensure!(
        status == 200,
        "/healthz of a ready daemon: {status} {body:?}"
    );
    let (status, body) = http_get(metrics, "/metrics")?;
    ensure!(
        status == 200 && body.contains("# TYPE guard_events counter"),
        "/metrics: {status}\n{body}"
    );
    let (status, _) = http_get(metrics, "/nothing-here")?;
    ensure!(status == 404, "an unknown path answered {status}");

    let prometheus_dir = TempDir::new("guard-e2e-prometheus");
    let prometheus_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut prometheus = start_prometheus(prometheus_dir.path(), prometheus_addr.port(), metrics)?;

    // Prometheus applies new targets a few seconds after it is ready: wait for its
    // first scrape of the daemon, so that the session below is scraped while it lives.
    let start = Instant::now();
    loop {
        prometheus.check_running()?;
        let up = query(prometheus_addr, "up{job=\"guard\"}")?;
        if up.first().is_some_and(|(_, v)| *v == 1.0) {
            break;
        }
        ensure!(
            start.elapsed() < PROMETHEUS_TIMEOUT,
            "Prometheus did not scrape the daemon within {PROMETHEUS_TIMEOUT:?}: up = {up:?}\n{}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(250));
    }

    // A session that lives until a scrape has seen it active: a shell that reads a file
    // and runs a program (exec and open events), then waits on a pipe.
    let go = Fifo::new(dir.path(), "go");
    let script = format!(
        "cat /etc/hostname >/dev/null; /bin/true; read _ < {}",
        go.path_str()
    );
    let running = agent.spawn(&["run", "/bin/sh", "-c", &script]);
    let start = Instant::now();
    loop {
        daemon.check_running()?;
        prometheus.check_running()?;
        let active = query(prometheus_addr, ACTIVE_SESSIONS_SEEN)?;
        if active.first().is_some_and(|(_, v)| *v >= 1.0) {
            break;
        }
        ensure!(
            start.elapsed() < PROMETHEUS_TIMEOUT,
            "no scrape saw the session active within {PROMETHEUS_TIMEOUT:?}: {active:?}\n\
             --- guard daemon ---\n{}",
            daemon.log()
        );
        thread::sleep(Duration::from_millis(250));
    }
    go.release();
    let run = running.finish();
    run.assert_success();
    let events_path = dir.join("events.jsonl");

    let start = Instant::now();
    let report = loop {
        daemon.check_running()?;
        prometheus.check_running()?;
        let ended = fs::read_to_string(&events_path)
            .unwrap_or_default()
            .contains("\"session_end\"");
        let in_file = events_by_kind(&events_path)?;
        let scraped: BTreeMap<String, f64> = query(prometheus_addr, "guard_events_total")?
            .into_iter()
            .filter_map(|(labels, value)| labels.get("kind").map(|k| (k.clone(), value)))
            .collect();
        let up = query(prometheus_addr, "up{job=\"guard\"}")?;
        let sessions = query(prometheus_addr, ACTIVE_SESSIONS_SEEN)?;
        let attached = query(
            prometheus_addr,
            "guard_programs_attached == guard_programs_expected",
        )?;
        let max_sessions = sessions.first().map_or(0.0, |(_, v)| *v);
        // Sessions started, by agent: as many as the session_start events written.
        let started = query(prometheus_addr, "sum(guard_sessions_total{job=\"guard\"})")?;
        let started = started.first().map_or(0.0, |(_, v)| *v);
        let report = format!(
            "session ended: {ended}\nevents in the file by kind: {in_file:?}\n\
             guard_events_total by kind: {scraped:?}\nup: {up:?}\n\
             max_over_time(guard_active_sessions[5m]): {max_sessions}\n\
             sum(guard_sessions_total): {started}\n\
             attached == expected: {attached:?}"
        );
        let done = ended
            && up.first().is_some_and(|(_, v)| *v == 1.0)
            && ["exec", "open", "session_start", "session_end"]
                .iter()
                .all(|k| in_file.get(*k).is_some_and(|n| *n > 0.0))
            && in_file.iter().all(|(kind, n)| scraped.get(kind) == Some(n))
            && max_sessions >= 1.0
            && in_file.get("session_start") == Some(&started)
            && attached.first().is_some_and(|(_, v)| *v > 0.0);
        if done {
            break report;
        }
        ensure!(
            start.elapsed() < PROMETHEUS_TIMEOUT,
            "Prometheus did not see what the daemon wrote within {PROMETHEUS_TIMEOUT:?}\n{report}\n\
             --- guard daemon ---\n{}\n--- prometheus ---\n{}",
            daemon.log(),
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{report}");

    // The session is over: the gauge goes back to 0.
    let start = Instant::now();
    loop {
        let now = query(prometheus_addr, "guard_active_sessions{job=\"guard\"}")?;
        if now.first().is_some_and(|(_, v)| *v == 0.0) {
            break;
        }
        ensure!(
            start.elapsed() < PROMETHEUS_TIMEOUT,
            "guard_active_sessions did not return to 0 after the session ended: {now:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }

    // The lost-events counters are exported (zero on this quiet machine is fine).
    let lost = query(prometheus_addr, "guard_lost_events_total")?;
    ensure!(
        !lost.is_empty(),
        "no guard_lost_events_total series was scraped"
    );

    drop(prometheus);
    daemon.terminate();
    Ok(())
}
