//! Fills a fleet server with made-up sessions of many hosts, as their guards would
//! send them (real OTLP protobuf over HTTP): for a demo, screenshots, or a rough
//! measure of ingest.
//!
//! ```sh
//! cargo run -p guard-fleet --example seed -- http://127.0.0.1:4318 CLUSTER_TOKEN [HOSTS] [SESSIONS] [EVENTS_PER_SESSION] [SENDERS]
//! ```
//!
//! It prints records per second and the latency of the requests (p50, p99).
//!
//! The token must be a cluster token (the hosts are `<token name>/host-NN`).

use std::time::Instant;

use prost::Message as _;

#[path = "../tests/fleet/support/records.rs"]
mod records;

/// A small deterministic generator (no dependency for made-up data).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];
const REPOS: &[&str] = &[
    "https://github.com/acme/payments",
    "https://github.com/acme/web",
    "https://github.com/acme/infra",
    "git@gitlab.com:acme/mobile.git",
    "https://github.com/acme/ml-pipeline",
    "https://github.com/acme/docs",
];
const AGENTS: &[&str] = &["codex", "codex", "codex", "claude", "gemini"];
const RULES: &[(&str, &str, &str)] = &[
    ("secrets.cloud", "alert", "alerted"),
    ("secrets.ssh", "deny", "denied"),
    ("network.egress", "deny", "denied"),
    ("exec.curl-pipe-sh", "kill", "killed"),
    ("taint.egress", "log", "logged"),
];

#[tokio::main]
#[expect(
    clippy::too_many_lines,
    reason = "one run in order: build each session's request, send them all, print the rates"
)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(server), Some(token)) = (args.first(), args.get(1)) else {
        anyhow::bail!(
            "usage: seed URL CLUSTER_TOKEN [HOSTS] [SESSIONS] [EVENTS_PER_SESSION] [SENDERS]"
        );
    };
    let n = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (hosts, sessions, events, senders) = (n(2, 12), n(3, 300), n(4, 40), n(5, 1));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let now_ms = guard_fleet::store::now_ms();
    let mut rng = Lcg(42);
    let (mut records_sent, mut bytes_sent) = (0u64, 0usize);
    let mut bodies = Vec::new();
    for s in 0..sessions {
        let host = format!("host-{:02}", rng.below(hosts));
        let session = format!("{:016x}", 0x5e55_0000 + s);
        let user = rng.pick(USERS);
        let mut report = records::report(&session, user, rng.pick(REPOS), true);
        report.agent = Some(rng.pick(AGENTS).to_owned());
        // Spread over the last 14 days; the newest few still run.
        let start_ms = now_ms - 14 * 86_400_000 + (s as i64 * 14 * 86_400_000 / sessions as i64);
        let duration_ms = 60_000 + rng.below(3_600_000) as i64;
        let iso = |ms: i64| {
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        report.started = Some(iso(start_ms));
        report.ended = (s + 5 < sessions).then(|| iso(start_ms + duration_ms));
        report.duration_ms = Some(duration_ms as u64);
        for (i, c) in report.commands.items.iter_mut().enumerate() {
            c.ts = iso(start_ms + (i as i64 + 1) * duration_ms / 4);
        }
        report.destinations.items[0].bytes_out = rng.below(20_000_000);
        report.destinations.items[1].bytes_out = rng.below(5_000_000);
        report.bytes_out =
            report.destinations.items[0].bytes_out + report.destinations.items[1].bytes_out;
        report.violations.items.clear();
        for _ in 0..rng.below(4) {
            let (rule, action, outcome) = RULES[rng.below(RULES.len() as u64) as usize];
            report.violations.push(guard_common::report::Violation {
                ts: iso(start_ms + rng.below(duration_ms as u64) as i64),
                pid: 4000,
                comm: "sh".into(),
                what: "open /home/dev/.aws/credentials".into(),
                path: Some("/home/dev/.aws/credentials".into()),
                rule: rule.into(),
                action: action.into(),
                outcome: outcome.into(),
                alert: action != "log",
            });
        }
        if rng.below(3) > 0 {
            report.secret_egress = Default::default();
            report.read.secrets = Default::default();
        }
        let spool = 0xfeed_0000 + s;
        let mut recs = vec![records::summary(
            &host,
            spool,
            0,
            &report,
            1,
            (start_ms + duration_ms) as u64 * 1_000_000,
        )];
        for e in 0..events {
            let ts = (start_ms + e as i64 * duration_ms / events.max(1) as i64) as u64 * 1_000_000;
            recs.push(records::exec_event(
                &host,
                spool,
                e + 1,
                &session,
                ts,
                &["cargo", "build", "--release"],
            ));
        }
        records_sent += recs.len() as u64;
        let body = records::request(&host, recs).encode_to_vec();
        bytes_sent += body.len();
        bodies.push(body);
    }
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("{}/v1/logs", server.trim_end_matches('/'));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders.max(1) {
        let (bodies, next, http, url, token) = (
            std::sync::Arc::clone(&bodies),
            std::sync::Arc::clone(&next),
            http.clone(),
            url.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let t = Instant::now();
                let status = http
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .bearer_auth(&token)
                    .body(body.clone())
                    .send()
                    .await?
                    .status();
                anyhow::ensure!(status.is_success(), "session {i}: {status}");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: usize| {
        latencies
            .get(latencies.len() * p / 100)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{sessions} sessions, {records_sent} records, {:.1} MiB in {secs:.1} s with {senders} senders: \
         {:.0} records/s, {:.0} requests/s; latency p50 {:.1} ms, p99 {:.1} ms",
        bytes_sent as f64 / 1_048_576.0,
        records_sent as f64 / secs,
        sessions as f64 / secs,
        pct(50),
        pct(99)
    );
    Ok(())
}
