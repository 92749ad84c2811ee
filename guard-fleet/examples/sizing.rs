//! The fleet view at an organisation's size, on either database: how fast one
//! replica ingests from a thousand hosts, how fast the dashboard answers, and how
//! much the database holds per session and per event.
//!
//! ```sh
//! cargo run --release -p guard-fleet --example sizing -- [postgres|sqlite] [SESSIONS] [EVENTS] [HOSTS]
//! ```
//!
//! (defaults: PostgreSQL, a million sessions, a million events, 10,000 hosts).
//! PostgreSQL is a cluster of its own (`tests/fleet/support/pg.rs`: initdb in a temporary
//! directory, 127.0.0.1, removed at the end; or the server `GUARD_FLEET_TEST_PG`
//! names); SQLite is the trial's file in a temporary state directory. Then:
//!
//! 1. **Ingest**: 1,000 simulated hosts (fewer if HOSTS is smaller) each send one
//!    session as a guard does, in two OTLP/HTTP protobuf requests (a running
//!    summary with 50 `exec` events, then the ended summary with 50 more), eight
//!    requests in flight at a time, to one replica: sessions, summaries and events
//!    stored per second, and each request's latency.
//! 2. **Size**: those sessions are multiplied in SQL into SESSIONS sessions of HOSTS
//!    hosts and 2,000 developers (each in three of 500 repositories) over 14 days,
//!    and EVENTS event rows (at the ingest's rate that would take hours); the
//!    overview's rollup is then built from them as the migration builds it.
//! 3. **Dashboard**: each page and API call a security team uses, repeated (up to
//!    100 runs, at least 5, about 20 s each): p50, p99 and the slowest.
//!
//! It prints one JSON object: `cargo xtask bench` (or `--fleet-only`) runs it on both
//! databases and keeps the results.

#[path = "../tests/fleet/support/pg.rs"]
mod pg;
#[path = "../tests/fleet/support/records.rs"]
mod records;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use guard_fleet::auth::{Scope, tokens};
use prost::Message as _;
use serde_json::{Value, json};
use sqlx::{AnyConnection, AssertSqlSafe, Connection as _, Executor as _, Row as _};

const CLUSTER_TOKEN: &str = "sizing-cluster-token-eu";
const DASH_TOKEN: &str = "sizing-dashboard-token";

/// Hosts of the ingest phase, one session each.
const INGEST_HOSTS: u64 = 1_000;
/// `exec` events in each of a session's two requests.
const EVENTS_PER_REQUEST: u64 = 50;
/// Requests in flight at a time during the ingest.
const SENDERS: usize = 8;
/// Runs of each timed request: at most, at least, and the time after which a
/// request stops once it has its least.
const MAX_RUNS: usize = 100;
const MIN_RUNS: usize = 5;
const RUN_BUDGET: Duration = Duration::from_secs(20);
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let backend = match args.first().map(String::as_str) {
        Some("sqlite") => Some(Backend::Sqlite),
        Some("postgres") => Some(Backend::Postgres),
        _ => None,
    };
    if backend.is_some() {
        args.remove(0);
    }
    let backend = backend.unwrap_or(Backend::Postgres);
    let args: Vec<u64> = args
        .iter()
        .map(|a| a.parse().with_context(|| format!("{a:?} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let n = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let (sessions, events, hosts) = (n(0, 1_000_000), n(1, 1_000_000), n(2, 10_000));
    anyhow::ensure!(
        hosts > 0 && sessions >= hosts.min(INGEST_HOSTS) && events >= 10,
        "at least one host, as many sessions as ingested hosts and 10 events"
    );
    if backend == Backend::Postgres && std::env::var_os(pg::ENV).is_none() {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var(pg::ENV, "initdb") };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(run(backend, sessions, events, hosts))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[expect(
    clippy::too_many_lines,
    reason = "the measurement in order: each step reads what the one before put in the database"
)]
async fn run(backend: Backend, sessions: u64, events: u64, hosts: u64) -> anyhow::Result<Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let pg = match backend {
        Backend::Postgres => Some(pg::database().await.context("no PostgreSQL")?),
        Backend::Sqlite => None,
    };
    let (url, database_section, database) = match &pg {
        Some(db) => (
            db.url.clone(),
            format!("[database]\nurl = \"{}\"\nmax_connections = 8\n", db.url),
            "PostgreSQL 15 (Debian), a cluster of this run: shared_buffers 32MB, fsync off",
        ),
        // No [database]: the trial's SQLite file in the state directory.
        None => (
            format!("sqlite://{}", dir.path().join("fleet.db").display()),
            String::new(),
            "SQLite (bundled with sqlx), the trial's file: WAL, synchronous FULL",
        ),
    };
    std::fs::write(
        dir.path().join("tokens.toml"),
        [
            tokens::entry("eu", Scope::Cluster, CLUSTER_TOKEN),
            tokens::entry("sec-team", Scope::Dashboard, DASH_TOKEN),
        ]
        .join("\n"),
    )?;
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{dir}\"\ntokens_file = \"{dir}/tokens.toml\"\n\
             {database_section}",
            dir = dir.path().display(),
        ),
    )?;
    let running =
        guard_fleet::server::start(guard_fleet::config::Config::load(Some(&config))?).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let now_ms = guard_fleet::store::now_ms();

    let ingest_hosts = hosts.min(INGEST_HOSTS);
    let ingest = ingest(&http, &base, ingest_hosts, now_ms).await?;

    let mut conn = AnyConnection::connect(&url).await?;
    for (table, want) in [
        ("sessions", ingest_hosts),
        ("events", ingest_hosts * 2 * EVENTS_PER_REQUEST),
    ] {
        let have: i64 = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
        anyhow::ensure!(
            have == want as i64,
            "after the ingest {table} holds {have} rows, not {want}"
        );
    }
    let started = Instant::now();
    let script = multiply(backend, sessions, events, hosts, ingest_hosts, now_ms);
    conn.execute(AssertSqlSafe(script))
        .await
        .context("multiplying the sessions")?;
    let load_secs = started.elapsed().as_secs_f64();
    // The rows were made in SQL, past the store: the overview's rollup is built
    // from them as the migration builds it for a database that has sessions.
    let started = Instant::now();
    let migration = include_str!("../migrations/common/0002_dashboard_at_size.sql");
    let backfill = migration
        .find("-- What the database already holds.")
        .map(|at| &migration[at..])
        .context("the migration's backfill")?;
    conn.execute(AssertSqlSafe(format!(
        "DELETE FROM session_days; {backfill} ANALYZE;"
    )))
    .await
    .context("building the rollup")?;
    let rollup_secs = started.elapsed().as_secs_f64();
    // The sessions' destinations and their rollup rows, read from the summaries as
    // schema 4's migration does.
    let started = Instant::now();
    let destinations = match backend {
        Backend::Postgres => include_str!("../migrations/postgres/0004_destinations.sql"),
        Backend::Sqlite => include_str!("../migrations/sqlite/0004_destinations.sql"),
    };
    conn.execute(AssertSqlSafe(format!(
        "DELETE FROM session_destinations; DELETE FROM session_days WHERE dim = 'dest'; \
         {destinations} ANALYZE;"
    )))
    .await
    .context("reading the destinations")?;
    let destinations_secs = started.elapsed().as_secs_f64();
    let rollup_rows: i64 = sqlx::query("SELECT COUNT(*) FROM session_days")
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    let mut sizes = serde_json::Map::new();
    for table in [
        "sessions",
        "violations",
        "events",
        "hosts",
        "session_days",
        "session_destinations",
    ] {
        let size = match backend {
            Backend::Postgres => format!("pg_total_relation_size('{table}')::bigint"),
            // dbstat (compiled into the bundled SQLite): the pages of the table and
            // of its indexes.
            Backend::Sqlite => format!(
                "(SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN \
                 (SELECT name FROM sqlite_schema WHERE tbl_name = '{table}'))"
            ),
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {size}, COUNT(*) FROM {table}"
        )))
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("the size of {table}"))?;
        let (bytes, rows): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        sizes.insert(
            table.to_owned(),
            json!({
                "rows": rows,
                "bytes": bytes,
                "bytes_per_row": (bytes as f64 / rows.max(1) as f64).round(),
            }),
        );
    }
    conn.close().await?;

    let requests = dashboard(&http, &base, now_ms).await?;
    running.shutdown(Duration::from_secs(5)).await?;
    drop(pg);
    Ok(json!({
        "backend": match backend { Backend::Postgres => "postgres", Backend::Sqlite => "sqlite" },
        "database": database,
        "sessions": sessions,
        "events": events,
        "hosts": hosts,
        "developers": 2000,
        "repositories": 500,
        "ingest": ingest,
        "templates_ingested": ingest_hosts,
        "sql_load_seconds": load_secs,
        "rollup_build_seconds": rollup_secs,
        "destinations_build_seconds": destinations_secs,
        "rollup_rows": rollup_rows,
        "tables": sizes,
        "requests": requests,
    }))
}

/// The ingest phase: `hosts` hosts send a session each, [`SENDERS`] requests at a
/// time.
async fn ingest(
    http: &reqwest::Client,
    base: &str,
    hosts: u64,
    now_ms: i64,
) -> anyhow::Result<Value> {
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut bytes = 0;
    for h in 0..hosts {
        let host = format!("host-{h:05}");
        let session = format!("{:016x}", 0x5e55_0000 + h);
        let spool = 0xfeed_0000 + h;
        let mut report =
            records::report(&session, "dev", "https://git.example.org/acme/repo", false);
        report.agent = Some(["codex", "claude", "gemini", "copilot"][h as usize % 4].to_owned());
        // Besides the model API and the code host, one of 200 other destinations.
        report.destinations.push(guard_common::report::Destination {
            addr: format!("198.51.100.{}", h % 200),
            port: 443,
            proto: "tcp".to_owned(),
            host: Some(format!("dest-{}.example.net", h % 200)),
            connects: 1,
            bytes_out: 10_000 + h,
            flows: 1,
            class: Some("other".to_owned()),
            ..Default::default()
        });
        let events = |from: u64| {
            (from..from + EVENTS_PER_REQUEST).map(|seq| {
                records::exec_event(
                    &host,
                    spool,
                    seq,
                    &session,
                    (now_ms as u64 - 60_000 + seq) * 1_000_000,
                    &["cargo", "test", "--workspace"],
                )
            })
        };
        let observed = (now_ms as u64 - 60_000) * 1_000_000;
        let mut recs = vec![records::summary(&host, spool, 1, &report, 1, observed)];
        recs.extend(events(2));
        first.push(records::request(&host, recs).encode_to_vec());
        report.ended = Some("2026-11-21T05:10:00Z".to_owned());
        let seq = 2 + EVENTS_PER_REQUEST;
        let mut recs = vec![records::summary(
            &host,
            spool,
            seq,
            &report,
            2,
            observed + 30_000_000_000,
        )];
        recs.extend(events(seq + 1));
        second.push(records::request(&host, recs).encode_to_vec());
    }
    first.append(&mut second);
    for b in &first {
        bytes += b.len();
    }
    let bodies = Arc::new(first);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (bodies, next, http) = (Arc::clone(&bodies), Arc::clone(&next), http.clone());
        let url = format!("{base}/v1/logs");
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .bearer_auth(CLUSTER_TOKEN)
                    .body(body.clone())
                    .timeout(Duration::from_secs(120))
                    .send()
                    .await?;
                let status = resp.status();
                anyhow::ensure!(status.is_success(), "the ingest answered {status}");
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(ms)
        }));
    }
    let mut ms = Vec::new();
    for t in tasks {
        ms.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = bodies.len() as f64;
    let events = (hosts * 2 * EVENTS_PER_REQUEST) as f64;
    let latency = Latency::of(ms);
    Ok(json!({
        "hosts": hosts,
        "senders": SENDERS,
        "requests": bodies.len(),
        "request_bytes_mean": (bytes as f64 / requests).round(),
        "seconds": secs,
        "sessions_per_second": hosts as f64 / secs,
        "summaries_per_second": requests / secs,
        "events_per_second": events / secs,
        "records_per_second": (events + requests) / secs,
        "requests_per_second": requests / secs,
        "latency_p50_ms": latency.p50,
        "latency_p99_ms": latency.p99,
        "latency_max_ms": latency.max,
    }))
}

/// The SQL that turns the ingested sessions (`templates` of them) into the
/// organisation: `sessions` sessions of `hosts` hosts over 14 days, each with the
/// violations of the template it copies, and `events` event rows.
fn multiply(
    backend: Backend,
    sessions: u64,
    events: u64,
    hosts: u64,
    templates: u64,
    now_ms: i64,
) -> String {
    let columns = "seq, observed_ns, state, state_rank, agent, agent_version, uid, repo_branch, \
                   repo_commit, workspace, conversation_id, commands, files_read, files_written, \
                   secrets_read, bytes_in, model_bytes_out, model_bytes_in, violations, summary";
    let span = 14 * DAY_MS;
    // The dialects differ in numbers (a series, or a recursive count), in padding
    // and in casts; the rest is the same statement.
    type Sql = fn(&str) -> String;
    let (numbers, pad5, hex16, int): (String, Sql, Sql, Sql) = match backend {
        Backend::Postgres => (
            String::new(),
            |e| format!("lpad(({e})::text, 5, '0')"),
            |e| format!("lpad(to_hex({e}), 16, '0')"),
            |e| format!("({e})::bigint"),
        ),
        Backend::Sqlite => (
            format!(
                "CREATE TEMP TABLE numbers AS WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL \
                 SELECT g + 1 FROM c WHERE g < {}) SELECT g FROM c;",
                sessions.max(events).max(hosts)
            ),
            |e| format!("printf('%05d', {e})"),
            |e| format!("printf('%016x', {e})"),
            |e| format!("CAST({e} AS INTEGER)"),
        ),
    };
    let series = |from: u64, to: u64| match backend {
        Backend::Postgres => format!("generate_series({from}::bigint, {to}) g"),
        Backend::Sqlite => format!("(SELECT g FROM numbers WHERE g BETWEEN {from} AND {to})"),
    };
    let host_of = |e: &str| format!("'eu/host-' || {}", pad5(e));
    format!(
        "{numbers}
         CREATE TEMP TABLE violations_template AS SELECT * FROM violations;
         CREATE TEMP TABLE events_template AS SELECT row_number() OVER (PARTITION BY \
           session_uid ORDER BY record_id) - 1 AS i, * FROM events WHERE session_uid = \
           (SELECT min(session_uid) FROM events);
         CREATE TEMP TABLE template AS SELECT row_number() OVER (ORDER BY session_uid) - 1 \
           AS i, * FROM sessions;
         DELETE FROM events; DELETE FROM violations; DELETE FROM sessions; DELETE FROM hosts;
         INSERT INTO sessions (host, session_uid, session_id, record_id, user_name, repo_url, \
           started_ms, ended_ms, duration_ms, updated_ms, bytes_out, {columns})
         SELECT {host}, 'uid-' || g, {hex}, 'rec-' || g, 'dev' || (g * 7919 % 2000), \
           'https://git.example.org/acme/repo-' || (((g * 7919 % 2000) * 7 + g % 3) % 500), \
           {now_ms} - {span} + g * {span} / {sessions}, \
           {now_ms} - {span} + g * {span} / {sessions} + 60000 + g % 3600000, \
           60000 + g % 3600000, {now_ms} - {span} + g * {span} / {sessions} + 60000, \
           g * 7 % 20000000, {columns}
         FROM {all_sessions} JOIN template t ON t.i = g % {templates};
         UPDATE sessions SET state = 'running', ended_ms = NULL, \
           updated_ms = {now_ms} WHERE session_uid IN (SELECT 'uid-' || g FROM {newest});
         INSERT INTO violations (host, session_uid, ordinal, ts_ms, pid, comm, what, rule, \
           action, outcome, alert)
         SELECT s.host, s.session_uid, v.ordinal, s.started_ms + 1000, v.pid, v.comm, v.what, \
           v.rule, v.action, v.outcome, v.alert
         FROM sessions s JOIN template t ON t.i = {uid_number} % {templates} \
           JOIN violations_template v ON v.session_uid = t.session_uid;
         INSERT INTO hosts (host, host_name, guard_version, policy_name, policy_mode, tiers, \
           first_seen_ms, last_seen_ms)
         SELECT {host_g}, 'host-' || {pad_g}, '0.1.0', 'workstation', 'enforce', '{{}}', \
           {now_ms} - {span}, {now_ms} - (g % 100) * 60000
         FROM {all_hosts};
         INSERT INTO events (host, record_id, session_uid, ts_ms, kind, rule, outcome, text, \
           event, received_ms)
         SELECT {event_host}, 'ev-' || g, 'uid-' || (g / 10 % {sessions} + 1), \
           {now_ms} - g % {span}, e.kind, e.rule, e.outcome, e.text, e.event, \
           {now_ms} - g % {span}
         FROM {all_events} JOIN events_template e ON e.i = g % 10;
         ANALYZE;",
        host = host_of(&format!("g % {hosts}")),
        hex = hex16("g"),
        all_sessions = series(1, sessions),
        newest = series(sessions.saturating_sub(50).max(1), sessions),
        uid_number = int("substr(s.session_uid, 5)"),
        host_g = host_of("g - 1"),
        pad_g = pad5("g - 1"),
        all_hosts = series(1, hosts),
        event_host = host_of(&format!("g / 10 % {hosts}")),
        all_events = series(1, events),
    )
}

/// Request latencies, in milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    /// Nearest-rank percentiles (with fewer than 100 samples, p99 is the slowest).
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            ms.get(i.saturating_sub(1)).copied().unwrap_or(0.0)
        };
        Self {
            p50: rank(50.0),
            p99: rank(99.0),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// Each page and API call of the dashboard, as a security team uses it.
async fn dashboard(http: &reqwest::Client, base: &str, now_ms: i64) -> anyhow::Result<Vec<Value>> {
    let from = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms - 7 * DAY_MS)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let requests = [
        ("overview (JSON)", "/api/overview".to_owned()),
        ("overview page (three charts)", "/".to_owned()),
        (
            "overview of the last day (JSON)",
            "/api/overview?days=1".to_owned(),
        ),
        ("sessions, newest first (JSON)", "/api/sessions".to_owned()),
        ("sessions page", "/sessions".to_owned()),
        (
            "sessions of one developer, last 7 days, by bytes (JSON)",
            format!("/api/sessions?user=dev42&from={from}&sort=bytes"),
        ),
        (
            "sessions of one repository with a rule broken (JSON)",
            "/api/sessions?repo=https://git.example.org/acme/repo-7&rule=network.egress".to_owned(),
        ),
        (
            "sessions of one host (JSON)",
            "/api/sessions?host=eu/host-00042".to_owned(),
        ),
        (
            "one session's report (JSON)",
            "/api/sessions/uid-4242".to_owned(),
        ),
        ("one session's page", "/sessions/uid-4242".to_owned()),
        ("hosts (JSON)", "/api/hosts".to_owned()),
        ("hosts page", "/hosts".to_owned()),
        (
            "developers, 14 days (JSON)",
            "/api/developers?days=14".to_owned(),
        ),
        ("developers page, 14 days", "/developers?days=14".to_owned()),
        (
            "destinations, 14 days (JSON)",
            "/api/destinations?days=14".to_owned(),
        ),
        (
            "destinations page, 14 days",
            "/destinations?days=14".to_owned(),
        ),
        (
            "repositories page, 14 days",
            "/repositories?days=14".to_owned(),
        ),
        ("agents page, 14 days", "/agents?days=14".to_owned()),
        (
            "rules page, 14 days, with each rule's days",
            "/rules?days=14".to_owned(),
        ),
        (
            "sessions to one destination, 7 days (JSON, with totals)",
            format!("/api/sessions?dest=dest-7.example.net&from={from}"),
        ),
        (
            "sessions of one developer as CSV",
            "/sessions?user=dev42&format=csv".to_owned(),
        ),
        (
            "developers as CSV, 14 days",
            "/developers?days=14&format=csv".to_owned(),
        ),
        (
            "violations as OCSF findings, a page of 1,000 from a day ago",
            "/api/violations?since=1d".to_owned(),
        ),
    ];
    let mut timed = Vec::new();
    for (what, path) in requests {
        let mut ms = Vec::new();
        let mut bytes = 0;
        let started = Instant::now();
        while ms.len() < MAX_RUNS && (ms.len() < MIN_RUNS || started.elapsed() < RUN_BUDGET) {
            let t = Instant::now();
            let resp = http
                .get(format!("{base}{path}"))
                .bearer_auth(DASH_TOKEN)
                .timeout(Duration::from_secs(300))
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                status.is_success(),
                "{path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
            bytes = body.len();
        }
        let runs = ms.len();
        let latency = Latency::of(ms);
        timed.push(json!({
            "what": what,
            "path": path,
            "runs": runs,
            "p50_ms": latency.p50,
            "p99_ms": latency.p99,
            "max_ms": latency.max,
            "response_bytes": bytes,
        }));
    }
    Ok(timed)
}
