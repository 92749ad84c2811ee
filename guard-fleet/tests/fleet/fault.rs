//! A replica killed in the middle of ingest loses nothing it acknowledged, and the
//! hosts' retries against another replica on the same database store every record
//! exactly once. The replicas are the built binary, killed with SIGKILL.

use crate::support;

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use guard_common::otlp;
use prost::Message as _;
use sqlx::Row as _;
use support::{Db, HOST_TOKEN, Setup, process, records};

on_both!(a_replica_killed_mid_ingest_loses_nothing_it_acknowledged);

const BATCHES: u64 = 48;
const EVENTS: u64 = 400;
const SESSIONS: u64 = 8;
const SPOOL: u64 = 0x5eed;

/// Batch `b`: a summary of session `b % SESSIONS` (its `b / SESSIONS + 1`th) and
/// `EVENTS` exec events, record ids `SPOOL`/`b * (EVENTS + 1) + …`.
fn batch(b: u64) -> Vec<u8> {
    let first = b * (EVENTS + 1);
    let session = format!("{:016x}", 0xc0 + b % SESSIONS);
    let report = records::report(&session, "alice", "https://github.com/acme/app", false);
    let mut recs = vec![records::summary(
        "build-01",
        SPOOL,
        first,
        &report,
        (b / SESSIONS + 1) as i64,
        records::T0_NS + b * 1_000_000_000,
    )];
    for i in 1..=EVENTS {
        let argv = format!("step-{b}-{i}");
        recs.push(records::exec_event(
            "build-01",
            SPOOL,
            first + i,
            &session,
            records::T0_NS + i,
            &["make", &argv],
        ));
    }
    records::request("build-01", recs).encode_to_vec()
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    http.post(format!("{base}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .bearer_auth(HOST_TOKEN)
        .body(body)
        .send()
        .await
        .map(|r| r.status())
}

/// Events of batch `b` in the database.
async fn stored(pool: &sqlx::AnyPool, b: u64) -> i64 {
    let first = otlp::record_id(SPOOL, b * (EVENTS + 1));
    let end = otlp::record_id(SPOOL, (b + 1) * (EVENTS + 1));
    sqlx::query("SELECT COUNT(*) FROM events WHERE record_id >= $1 AND record_id < $2")
        .bind(first)
        .bind(end)
        .fetch_one(pool)
        .await
        .expect("count")
        .try_get(0)
        .expect("count")
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario in order: kill replica A mid-ingest, check what it acknowledged, retry"
)]
async fn a_replica_killed_mid_ingest_loses_nothing_it_acknowledged(db: Db) {
    support::init();
    let setup = Setup::new(db);
    let config = setup.config(0, "");
    let config_arg = config.to_str().expect("utf-8 path");
    let (ok, _, err) = process::cli(&["migrate", "--config", config_arg]);
    assert!(ok, "migrate: {err}");
    let batches: Arc<Vec<Vec<u8>>> = Arc::new((0..BATCHES).map(batch).collect());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    // Replica A gets the batches from four senders and is killed right after its
    // fourth 200.
    let mut a = process::Replica::spawn(&config);
    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (first_ack, mut got_ack) = tokio::sync::mpsc::channel::<()>(BATCHES as usize);
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (batches, next, killed, acked, in_flight, first_ack, http, base) = (
            Arc::clone(&batches),
            Arc::clone(&next),
            Arc::clone(&killed),
            Arc::clone(&acked),
            Arc::clone(&in_flight),
            first_ack.clone(),
            http.clone(),
            a.base.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = batches.get(b) else { return };
                let sent_before_kill = !killed.load(Ordering::SeqCst);
                match post(&http, &base, body.clone()).await {
                    Ok(s) if s.is_success() => {
                        acked.lock().expect("acked").insert(b as u64);
                        let _ = first_ack.try_send(());
                    }
                    Ok(s) => panic!("batch {b}: {s}"),
                    Err(e) if sent_before_kill && !e.is_connect() => {
                        in_flight.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    drop(first_ack);
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(60), got_ack.recv())
            .await
            .expect("200s within 60 s")
            .expect("a 200");
    }
    killed.store(true, Ordering::SeqCst);
    a.kill();
    for s in senders {
        s.await.expect("sender");
    }
    let acked: Vec<u64> = acked.lock().expect("acked").iter().copied().collect();
    let in_flight = in_flight.load(Ordering::SeqCst);
    assert!(!acked.is_empty());
    assert!(
        acked.len() < BATCHES as usize,
        "A was killed before the end"
    );
    assert!(in_flight > 0, "some requests were under way when A died");
    eprintln!(
        "A acknowledged {} batches; {in_flight} requests were under way when it died",
        acked.len()
    );

    // What A acknowledged is in the database, whole.
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&setup.db_url)
        .await
        .expect("connect");
    for b in &acked {
        assert_eq!(
            stored(&pool, *b).await,
            EVENTS as i64,
            "acknowledged batch {b} is whole"
        );
    }
    // Nothing is half stored: a batch is there whole or not at all.
    for b in 0..BATCHES {
        let n = stored(&pool, b).await;
        assert!(
            n == 0 || n == EVENTS as i64,
            "batch {b}: {n} of {EVENTS} events"
        );
    }

    // The hosts retry everything (what got no 200, and some that did) on B.
    let b = process::Replica::spawn(&config);
    for (i, body) in batches.iter().enumerate() {
        let status = post(&http, &b.base, body.clone()).await.expect("B answers");
        assert!(status.is_success(), "batch {i} on B: {status}");
    }
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .expect("count")
                .try_get::<i64, _>(0)
                .expect("count")
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM events").await,
        (BATCHES * EVENTS) as i64,
        "each event once"
    );
    assert_eq!(
        count("SELECT COUNT(DISTINCT record_id) FROM events").await,
        (BATCHES * EVENTS) as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sessions").await,
        SESSIONS as i64
    );
    assert_eq!(
        count("SELECT MIN(seq) FROM sessions").await,
        (BATCHES / SESSIONS) as i64,
        "each session holds its newest summary"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM violations").await,
        (SESSIONS * 2) as i64
    );
    assert_eq!(count("SELECT COUNT(*) FROM hosts").await, 1);
    // The overview's rollup, written by four senders at once, a killed replica and
    // the retries, counts what the tables hold.
    for (rollup, scan) in [
        (
            "SELECT CAST(SUM(sessions) AS BIGINT) FROM session_days WHERE dim = 'user'",
            "SELECT COUNT(*) FROM sessions",
        ),
        (
            "SELECT CAST(SUM(sessions) AS BIGINT) FROM session_days WHERE dim = 'host'",
            "SELECT COUNT(*) FROM sessions",
        ),
        (
            "SELECT CAST(SUM(duration_ms) AS BIGINT) FROM session_days WHERE dim = 'agent'",
            "SELECT CAST(SUM(duration_ms) AS BIGINT) FROM sessions",
        ),
        (
            "SELECT CAST(SUM(violations) AS BIGINT) FROM session_days WHERE dim = 'user'",
            "SELECT CAST(SUM(violations) AS BIGINT) FROM sessions",
        ),
        (
            "SELECT CAST(SUM(sessions) AS BIGINT) FROM session_days WHERE dim = 'rule'",
            "SELECT COUNT(*) FROM violations",
        ),
    ] {
        assert_eq!(count(rollup).await, count(scan).await, "{rollup}");
    }
    pool.close().await;
    drop(b);
}
