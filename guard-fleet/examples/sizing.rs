//! The fleet view at an organisation's size, on a real PostgreSQL: how fast the
//! dashboard answers and how much the database holds per session and per event.
//!
//! ```sh
//! cargo run --release -p guard-fleet --example sizing -- [SESSIONS] [EVENTS] [HOSTS]
//! ```
//!
//! (defaults: a million sessions, a million events, 10,000 hosts). It starts a
//! PostgreSQL cluster of its own (`tests/support/pg.rs`: initdb in a temporary
//! directory, 127.0.0.1, removed at the end; or the server `GUARD_FLEET_TEST_PG`
//! names) and the server on it, sends 100 sessions through the ingest as hosts send
//! them (summaries, violations, events), then multiplies them in SQL into SESSIONS
//! sessions of HOSTS hosts and 2,000 developers over 14 days, EVENTS event rows (at
//! the ingest's rate that would take hours; its rate is `seed`'s measure), and times
//! each page and API call of the dashboard (five runs each). It prints one JSON
//! object: `cargo xtask bench` (or `--fleet-only`) runs it and keeps the result.

#[allow(clippy::duplicate_mod)]
#[path = "../tests/support/pg.rs"]
mod pg;
#[allow(clippy::duplicate_mod)]
#[path = "../tests/support/records.rs"]
mod records;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use guard_fleet::auth::{Scope, tokens};
use prost::Message as _;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, Row as _};

const CLUSTER_TOKEN: &str = "sizing-cluster-token-eu";
const DASH_TOKEN: &str = "sizing-dashboard-token";

/// Sessions sent through the ingest, the templates of the rest.
const TEMPLATES: u64 = 100;
/// Runs of each timed request.
const RUNS: usize = 5;
const DAY_MS: i64 = 86_400_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().with_context(|| format!("{a:?} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let n = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let (sessions, events, hosts) = (n(0, 1_000_000), n(1, 1_000_000), n(2, 10_000));
    anyhow::ensure!(
        sessions >= TEMPLATES && hosts > 0,
        "at least {TEMPLATES} sessions and one host"
    );
    if std::env::var_os(pg::ENV).is_none() {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var(pg::ENV, "initdb") };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(run(sessions, events, hosts))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn run(sessions: u64, events: u64, hosts: u64) -> anyhow::Result<Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = pg::database().await.context("no PostgreSQL")?;
    let url = db.url.clone();
    let dir = tempfile::tempdir()?;
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
             [database]\nurl = \"{url}\"\nmax_connections = 8\n",
            dir = dir.path().display(),
        ),
    )?;
    let running =
        guard_fleet::server::start(guard_fleet::config::Config::load(Some(&config))?).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let now_ms = guard_fleet::store::now_ms();

    // The templates, through the ingest: each a summary with its lists full and
    // a few violations, and 10 exec events.
    let started = Instant::now();
    for s in 0..TEMPLATES {
        let session = format!("{:016x}", 0x5e55_0000 + s);
        let mut report =
            records::report(&session, "dev", "https://git.example.org/acme/repo", true);
        report.agent = Some(["codex", "claude", "gemini", "copilot"][s as usize % 4].to_owned());
        let host = format!("host-{s:05}");
        let mut recs = vec![records::summary(&host, 0xfeed_0000 + s, 0, &report, 1, 0)];
        for e in 0..10 {
            recs.push(records::exec_event(
                &host,
                0xfeed_0000 + s,
                e + 1,
                &session,
                (now_ms as u64 - e * 1000) * 1_000_000,
                &["cargo", "test", "--workspace"],
            ));
        }
        let resp = http
            .post(format!("{base}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .bearer_auth(CLUSTER_TOKEN)
            .body(records::request(&host, recs).encode_to_vec())
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "the ingest answered {}",
            resp.status()
        );
    }
    let ingest_secs = started.elapsed().as_secs_f64();

    // The rest, in SQL.
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    let started = Instant::now();
    let columns = "seq, observed_ns, state, state_rank, agent, agent_version, uid, repo_branch, \
                   repo_commit, workspace, conversation_id, commands, files_read, files_written, \
                   secrets_read, bytes_in, model_bytes_out, model_bytes_in, violations, summary";
    let span = 14 * DAY_MS;
    conn.execute(AssertSqlSafe(
        format!(
            "CREATE TEMP TABLE template AS SELECT row_number() OVER (ORDER BY session_uid) - 1 \
             AS i, * FROM sessions;
             DELETE FROM events; DELETE FROM violations; DELETE FROM sessions; DELETE FROM hosts;
             INSERT INTO sessions (host, session_uid, session_id, record_id, user_name, repo_url, \
               started_ms, ended_ms, duration_ms, updated_ms, bytes_out, {columns})
             SELECT 'eu/host-' || lpad((g % {hosts})::text, 5, '0'), 'uid-' || g, \
               lpad(to_hex(g), 16, '0'), 'rec-' || g, 'dev' || (g * 7919 % 2000), \
               'https://git.example.org/acme/repo-' || (g * 104729 % 500), \
               {now_ms} - {span} + g * {span} / {sessions}, \
               {now_ms} - {span} + g * {span} / {sessions} + 60000 + g % 3600000, \
               60000 + g % 3600000, {now_ms} - {span} + g * {span} / {sessions} + 60000, \
               g * 7 % 20000000, {columns}
             FROM generate_series(1::bigint, {sessions}) g JOIN template t ON t.i = g % {TEMPLATES};
             UPDATE sessions SET state = 'running', ended_ms = NULL, updated_ms = {now_ms} \
               WHERE session_uid IN (SELECT 'uid-' || g FROM generate_series({sessions} - 50, \
               {sessions}) g);
             INSERT INTO violations (host, session_uid, ordinal, ts_ms, pid, comm, what, rule, \
               action, outcome, alert)
             SELECT s.host, s.session_uid, v.ordinal, s.started_ms + 1000, v.pid, v.comm, v.what, \
               v.rule, v.action, v.outcome, v.alert
             FROM sessions s JOIN template t ON t.i = substr(s.session_uid, 5)::bigint % \
               {TEMPLATES} JOIN violations_template v ON v.session_uid = t.session_uid;
             INSERT INTO hosts (host, host_name, guard_version, policy_name, policy_mode, tiers, \
               first_seen_ms, last_seen_ms)
             SELECT 'eu/host-' || lpad(g::text, 5, '0'), 'host-' || lpad(g::text, 5, '0'), \
               '0.1.0', 'workstation', 'enforce', '{{}}', {now_ms} - {span}, \
               {now_ms} - (g % 100) * 60000
             FROM generate_series(0, {hosts} - 1) g;
             INSERT INTO events (host, record_id, session_uid, ts_ms, kind, rule, outcome, text, \
               event, received_ms)
             SELECT 'eu/host-' || lpad((g / 10 % {hosts})::text, 5, '0'), 'ev-' || g, \
               'uid-' || (g / 10 % {sessions} + 1), {now_ms} - g % {span}, e.kind, e.rule, \
               e.outcome, e.text, e.event, {now_ms} - g % {span}
             FROM generate_series(1::bigint, {events}) g JOIN events_template e ON e.i = g % 10;
             ANALYZE;"
        )
        .replace(
            "CREATE TEMP TABLE template AS",
            "CREATE TEMP TABLE violations_template AS SELECT * FROM violations; \
             CREATE TEMP TABLE events_template AS SELECT row_number() OVER (PARTITION BY \
             session_uid ORDER BY record_id) - 1 AS i, * FROM events WHERE session_uid = \
             (SELECT min(session_uid) FROM events); \
             CREATE TEMP TABLE template AS",
        ),
    ))
    .await
    .context("multiplying the sessions")?;
    let load_secs = started.elapsed().as_secs_f64();

    let mut sizes = serde_json::Map::new();
    for table in ["sessions", "violations", "events", "hosts"] {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT pg_total_relation_size('{table}')::bigint, count(*)::bigint FROM {table}"
        )))
        .fetch_one(&mut conn)
        .await?;
        let (bytes, rows): (i64, i64) = (row.get(0), row.get(1));
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

    // The dashboard, as a security team uses it.
    let from = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms - 7 * DAY_MS)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let requests = [
        ("overview (JSON)", "/api/overview".to_owned()),
        ("overview page (four charts)", "/".to_owned()),
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
            "/api/sessions?repo=https://git.example.org/acme/repo-7&rule=secrets.ssh".to_owned(),
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
    ];
    let mut timed = Vec::new();
    for (what, path) in requests {
        let mut ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
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
        ms.sort_by(f64::total_cmp);
        timed.push(json!({
            "what": what,
            "path": path,
            "median_ms": ms[RUNS / 2],
            "max_ms": ms[RUNS - 1],
            "response_bytes": bytes,
        }));
    }
    running.shutdown(Duration::from_secs(5)).await?;
    drop(db);
    Ok(json!({
        "database": "PostgreSQL 15 (Debian), a cluster of this run: shared_buffers 32MB, fsync off",
        "sessions": sessions,
        "events": events,
        "hosts": hosts,
        "developers": 2000,
        "repositories": 500,
        "templates_ingested": TEMPLATES,
        "template_ingest_seconds": ingest_secs,
        "sql_load_seconds": load_secs,
        "tables": sizes,
        "requests": timed,
    }))
}
