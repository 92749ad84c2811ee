//! The store on SQLite: migrations, writes, dedupe, the summary order, reads and
//! retention. (The integration tests run the same against PostgreSQL.)

use std::time::Duration;

use serde_json::json;

use super::{
    read::{Query, Sort},
    write::{Table, count},
    *,
};
use crate::{
    auth::Sender,
    config::{Limits, Retention},
    ingest::validate,
};

use crate::records;

const S1: &str = "00000000000000a1";
const S2: &str = "00000000000000a2";

fn no_alerts() -> Vec<crate::config::AlertRule> {
    Vec::new()
}

async fn store(dir: &tempfile::TempDir) -> Store {
    let db = Database {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("fleet.db").display()
        ),
        backend: Backend::Sqlite,
        max_connections: 4,
        migrate: true,
        connect_timeout: Duration::from_secs(5),
    };
    let store = Store::connect(&db).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn batch(
    req: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) -> rows::Batch {
    validate::batch(
        req,
        &Sender::Host("build-01".into()),
        &Limits::default(),
        // The server's clock a day after the records' (before them, every record
        // would be in the future).
        records::T0_MS + 86_400_000,
    )
    .expect("batch")
}

#[tokio::test]
async fn migrations_apply_once_and_again_do_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir).await;
    s.migrate().await.expect("second run");
    for t in [
        Table::Hosts,
        Table::Sessions,
        Table::Violations,
        Table::Events,
    ] {
        assert_eq!(count(&s, t).await.expect("count"), 0);
    }
    let applied: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(s.pool())
            .await
            .expect("migrations table"),
        0,
    )
    .expect("count");
    assert_eq!(
        applied, 11,
        "init, session_days, questions, destinations, policies, alerts, credential \
         targets, host labels, alert rules, packages and package names, once each"
    );
}

#[tokio::test]
async fn a_batch_sent_twice_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir).await;
    let report = records::report(S1, "alice", "https://github.com/acme/app", false);
    let req = records::request(
        "build-01",
        vec![
            records::summary("build-01", 1, 1, &report, 1, records::T0_NS),
            records::exec_event("build-01", 1, 2, S1, records::T0_NS, &["git", "status"]),
            records::exec_event("build-01", 1, 3, S1, records::T0_NS, &["cargo", "test"]),
        ],
    );
    let b = batch(&req);
    let first = s
        .write(&b, records::T0_MS, &no_alerts())
        .await
        .expect("write");
    assert_eq!((first.events_new, first.summaries_applied), (2, 1));
    let again = s
        .write(&b, records::T0_MS + 1, &no_alerts())
        .await
        .expect("write again");
    assert_eq!(
        (again.events_new, again.summaries_applied),
        (0, 0),
        "a retry changes nothing"
    );
    assert_eq!(count(&s, Table::Events).await.expect("count"), 2);
    assert_eq!(count(&s, Table::Sessions).await.expect("count"), 1);
    assert_eq!(count(&s, Table::Violations).await.expect("count"), 2);
    assert_eq!(count(&s, Table::Hosts).await.expect("count"), 1);
}

#[tokio::test]
async fn the_newest_summary_wins_and_ended_beats_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir).await;
    let uid = records::session_uid("build-01", S1);
    let mut running = records::report(S1, "alice", "r", false);
    let write = |r: &guard_common::report::Report, spool_seq: u64, summary_seq: i64, t: u64| {
        let req = records::request(
            "build-01",
            vec![records::summary(
                "build-01",
                1,
                spool_seq,
                r,
                summary_seq,
                t,
            )],
        );
        batch(&req)
    };
    s.write(&write(&running, 1, 1, records::T0_NS), 0, &no_alerts())
        .await
        .expect("1");
    running.commands.omitted = 10;
    running.violations.items.truncate(1);
    s.write(
        &write(&running, 2, 2, records::T0_NS + 60_000_000_000),
        0,
        &no_alerts(),
    )
    .await
    .expect("2");
    let d = s.session(&uid, None).await.expect("read").expect("found");
    assert_eq!((d.summary_seq, d.session.commands), (2, 13));
    assert_eq!(
        count(&s, Table::Violations).await.expect("count"),
        1,
        "the list was replaced"
    );

    // A late retry of the first summary does not go back in time.
    s.write(&write(&running, 1, 1, records::T0_NS), 0, &no_alerts())
        .await
        .expect("late");
    assert_eq!(
        s.session(&uid, None)
            .await
            .expect("read")
            .expect("found")
            .summary_seq,
        2
    );

    let ended = records::report(S1, "alice", "r", true);
    s.write(
        &write(&ended, 3, 3, records::T0_NS + 120_000_000_000),
        0,
        &no_alerts(),
    )
    .await
    .expect("3");
    // A running summary made later (a restarted daemon's, seq 1) cannot reopen it.
    s.write(
        &write(&running, 4, 1, records::T0_NS + 180_000_000_000),
        0,
        &no_alerts(),
    )
    .await
    .expect("4");
    let d = s.session(&uid, None).await.expect("read").expect("found");
    assert_eq!(d.session.state, "ended");
    assert_eq!(d.summary_seq, 3);
    assert_eq!(count(&s, Table::Violations).await.expect("count"), 2);
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "two sessions written once, then read through each filter, sort and page in turn"
)]
async fn reads_filter_sort_and_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir).await;
    let mut a = records::report(S1, "alice", "https://github.com/acme/app", true);
    a.bytes_out = 1;
    let mut b = records::report(S2, "bob", "https://gitlab.com/acme/100%_api", false);
    b.violations = Default::default();
    b.started = Some("2026-11-21T06:00:00Z".into());
    let req = records::request(
        "build-01",
        vec![
            records::summary("build-01", 1, 1, &a, 1, records::T0_NS),
            records::summary("build-01", 1, 2, &b, 1, records::T0_NS),
        ],
    );
    s.write(&batch(&req), records::T0_MS, &no_alerts())
        .await
        .expect("write");
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query {
            page: 1,
            per_page: 50,
            descending: true,
            ..Query::default()
        };
        f(&mut q);
        q
    };
    let users = |p: read::SessionPage| {
        p.sessions
            .into_iter()
            .map(|s| s.user_name.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        users(s.sessions(&q(&|_| {})).await.expect("all")),
        ["bob", "alice"]
    );
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.user = Some("alice".into())))
                .await
                .expect("u")
        ),
        ["alice"]
    );
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.repo = Some("GITLAB".into())))
                .await
                .expect("r")
        ),
        ["bob"]
    );
    // LIKE's wildcards in the filter are literal.
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.repo = Some("100%_".into())))
                .await
                .expect("r")
        ),
        ["bob"]
    );
    assert!(
        users(
            s.sessions(&q(&|q| q.repo = Some("1_0".into())))
                .await
                .expect("r")
        )
        .is_empty()
    );
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.rule = Some("network.egress".into())))
                .await
                .expect("rule")
        ),
        ["alice"]
    );
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.outcome = Some("denied".into())))
                .await
                .expect("o")
        ),
        ["alice"]
    );
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.state = Some("running".into())))
                .await
                .expect("s")
        ),
        ["bob"]
    );
    assert_eq!(
        users(
            s.sessions(&q(&|q| q.from_ms = Some(records::T0_MS + 1)))
                .await
                .expect("from")
        ),
        ["bob"]
    );
    let by_bytes = s
        .sessions(&q(&|q| {
            q.sort = Sort::Bytes;
            q.descending = false;
        }))
        .await
        .expect("sort");
    assert_eq!(users(by_bytes), ["alice", "bob"]);
    let second = q(&|q| {
        q.per_page = 1;
        q.page = 2;
    });
    let page2 = s.sessions(&second).await.expect("page");
    assert_eq!((page2.total, users(page2)), (2, vec!["alice".to_owned()]));

    let o = s
        .overview(30, records::T0_MS + 3_600_000, 0)
        .await
        .expect("overview");
    assert_eq!(o.totals.sessions, 2);
    assert_eq!(o.totals.developers, 2);
    assert_eq!(o.totals.model_bytes_out, 8_000_000);
    assert_eq!(o.totals.secrets_read, 2);
    assert_eq!(o.per_day.len(), 30);
    assert_eq!(
        o.per_day.last().map(|d| (d.sessions, d.developers)),
        Some((2, 2))
    );
    assert_eq!(o.violations_by_rule.len(), 2);
    assert_eq!(o.running_count, 1, "bob's session runs");
    assert_eq!(o.repositories.len(), 2);
    assert_eq!(o.hosts.total, 1);
}

#[tokio::test]
async fn retention_keeps_the_newest_events_under_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir).await;
    for round in 0..3u64 {
        let events = (0..10)
            .map(|i| {
                records::event(
                    "build-01",
                    7,
                    round * 100 + i,
                    S1,
                    records::T0_NS,
                    json!({"kind": "exec", "exe": "/bin/true", "argv": ["true"]}),
                )
            })
            .collect();
        // Received a second apart: the cap keeps the newest rounds.
        s.write(
            &batch(&records::request("build-01", events)),
            records::T0_MS + round as i64 * 1000,
            &no_alerts(),
        )
        .await
        .expect("write");
    }
    let r = Retention {
        events_days: 30,
        events_max_rows: 15,
        sessions_days: 0,
        interval: Duration::from_secs(60),
    };
    let p = s.prune(&r, records::T0_MS + 10_000).await.expect("prune");
    assert_eq!(
        p.events, 20,
        "the two oldest rounds go: one of 10 would leave 20 > 15"
    );
    assert_eq!(count(&s, Table::Events).await.expect("count"), 10);
    let p = s
        .prune(&r, records::T0_MS + 31 * 86_400_000)
        .await
        .expect("prune");
    assert_eq!(p.events, 10, "past events_days");
}
