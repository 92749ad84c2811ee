//! A batch → rows, in one transaction: a host hears 200 only once its records are
//! committed, and a retry of the same batch (after a lost answer, a killed
//! replica) changes nothing, since
//!
//! - events are inserted `ON CONFLICT (host, record_id) DO NOTHING`;
//! - a summary replaces its session's row only when it is newer: ended beats
//!   running, then the later observed time, then the higher `guard.summary.seq`
//!   (the sequence restarts with the daemon, the clock does not), and its violation
//!   list replaces the session's in the same transaction;
//! - a host's row takes the description of its latest batch.
//!
//! Rows are written in one order (hosts, then sessions, then events, each sorted
//! by key) so that two replicas writing overlapping batches wait for each other
//! instead of deadlocking.

use sqlx::{AnyConnection, Row as _, any::AnyRow};

use super::rows::{Batch, EventRow, HostRow, SummaryRow};
use super::{
    Store, StoreError, alerts,
    rollup::{self, Contribution, DestinationContribution, Rollup},
    sql::{Arg, Sql},
};
use crate::config::{AlertRule, Backend};

/// Rows per multi-row `INSERT` (10 values each: well under both backends' limits on
/// bound parameters).
const CHUNK: usize = 100;

/// What a write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Events new to the database (the rest were already there).
    pub events_new: u64,
    /// Summaries that replaced (or created) their session's row.
    pub summaries_applied: u64,
}

impl Store {
    /// Writes `batch` in one transaction, received at `now_ms`, and queues the
    /// alerts its new events raise under `rules`.
    pub async fn write(
        &self,
        batch: &Batch,
        now_ms: i64,
        rules: &[AlertRule],
    ) -> Result<Written, StoreError> {
        let _writer = self.writer().await;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin a transaction"))?;
        let mut written = Written::default();

        let mut hosts: Vec<&HostRow> = batch.hosts.iter().collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        for h in hosts {
            host(h)
                .query()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("store a host"))?;
        }

        let mut summaries: Vec<&SummaryRow> = batch.summaries.iter().collect();
        summaries.sort_by(|a, b| {
            (&a.host, &a.session_uid, a.state_rank, a.observed_ns, a.seq).cmp(&(
                &b.host,
                &b.session_uid,
                b.state_rank,
                b.observed_ns,
                b.seq,
            ))
        });
        let mut rollup = Rollup::default();
        for s in summaries {
            if !store_summary(&mut tx, s, now_ms, self.backend(), &mut rollup).await? {
                continue;
            }
            written.summaries_applied += 1;
            let mut delete = Sql::new("DELETE FROM violations WHERE host = ");
            delete
                .arg(Arg::Text(s.host.clone()))
                .push(" AND session_uid = ")
                .arg(Arg::Text(s.session_uid.clone()))
                .push(" RETURNING ")
                .push(rollup::VIOLATION_COLUMNS);
            let replaced = delete
                .query()
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query("replace a session's violations"))?;
            rollup
                .violations_removed(&replaced)
                .map_err(StoreError::query("replace a session's violations"))?;
            for v in &s.violation_rows {
                rollup.violation(v.ts_ms, &v.rule, &v.outcome, 1);
            }
            replace_destinations(&mut tx, s, &mut rollup).await?;
            replace_packages(&mut tx, s, now_ms).await?;
            for chunk in s.violation_rows.chunks(CHUNK) {
                let mut insert = Sql::new(
                    "INSERT INTO violations (host, session_uid, ordinal, ts_ms, pid, comm, what, \
                     rule, action, outcome, alert) VALUES ",
                );
                for (i, v) in chunk.iter().enumerate() {
                    if i > 0 {
                        insert.push(", ");
                    }
                    insert.tuple([
                        Arg::Text(s.host.clone()),
                        Arg::Text(s.session_uid.clone()),
                        Arg::Int(v.ordinal),
                        Arg::Int(v.ts_ms),
                        Arg::Int(v.pid),
                        Arg::Text(v.comm.clone()),
                        Arg::Text(v.what.clone()),
                        Arg::Text(v.rule.clone()),
                        Arg::Text(v.action.clone()),
                        Arg::Text(v.outcome.clone()),
                        Arg::Int(i64::from(v.alert)),
                    ]);
                }
                insert
                    .query()
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("store a session's violations"))?;
            }
        }

        let mut events: Vec<&EventRow> = batch.events.iter().collect();
        events.sort_by(|a, b| (&a.host, &a.record_id).cmp(&(&b.host, &b.record_id)));
        events.dedup_by(|a, b| a.host == b.host && a.record_id == b.record_id);
        let mut new: Vec<&EventRow> = Vec::new();
        for chunk in events.chunks(CHUNK) {
            let rows = insert_events(chunk, now_ms)
                .query()
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query("store events"))?;
            written.events_new += rows.len() as u64;
            if rules.is_empty() {
                continue;
            }
            for row in &rows {
                let (host, id) = event_key(row).map_err(StoreError::query("store events"))?;
                new.extend(chunk.iter().find(|e| e.host == host && e.record_id == id));
            }
        }
        alerts::enqueue(&mut tx, rules, &new, now_ms).await?;

        // Last, after every other row: see rollup.rs.
        rollup
            .apply(&mut tx)
            .await
            .map_err(StoreError::query("count sessions per day"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit a batch"))?;
        Ok(written)
    }
}

fn host(h: &HostRow) -> Sql {
    let mut s = Sql::new(
        "INSERT INTO hosts (host, host_name, host_id, arch, guard_version, os_version, boot_id, \
         policy_name, policy_mode, tiers, k8s_cluster, k8s_node, first_seen_ms, last_seen_ms, \
         clock_skew_ms, heartbeat_ms, fleet_group, credential, labels) VALUES ",
    );
    s.tuple([
        Arg::Text(h.host.clone()),
        Arg::Text(h.host_name.clone()),
        Arg::OptText(h.host_id.clone()),
        Arg::OptText(h.arch.clone()),
        Arg::OptText(h.guard_version.clone()),
        Arg::OptText(h.os_version.clone()),
        Arg::OptText(h.boot_id.clone()),
        Arg::OptText(h.policy_name.clone()),
        Arg::OptText(h.policy_mode.clone()),
        Arg::OptText(h.tiers.clone()),
        Arg::OptText(h.k8s_cluster.clone()),
        Arg::OptText(h.k8s_node.clone()),
        Arg::Int(h.seen_ms),
        Arg::Int(h.seen_ms),
        Arg::Int(h.clock_skew_ms),
        Arg::OptInt(h.heartbeat_ms),
        Arg::OptText(h.fleet_group.clone()),
        Arg::Text(h.credential.clone()),
        Arg::OptText(h.labels.clone()),
    ]);
    s.push(
        " ON CONFLICT (host) DO UPDATE SET host_name = excluded.host_name, \
         host_id = excluded.host_id, arch = excluded.arch, guard_version = excluded.guard_version, \
         os_version = excluded.os_version, boot_id = excluded.boot_id, \
         policy_name = excluded.policy_name, policy_mode = excluded.policy_mode, \
         fleet_group = excluded.fleet_group, credential = excluded.credential, \
         labels = excluded.labels, \
         tiers = excluded.tiers, k8s_cluster = excluded.k8s_cluster, k8s_node = excluded.k8s_node, \
         last_seen_ms = excluded.last_seen_ms, clock_skew_ms = excluded.clock_skew_ms, \
         heartbeat_ms = COALESCE(excluded.heartbeat_ms, hosts.heartbeat_ms) \
         WHERE excluded.last_seen_ms >= hosts.last_seen_ms",
    );
    s
}

/// Stores a summary if it is new or newer than its session's row (ended beats
/// running, then the later observed time, then the higher sequence), and notes
/// in `rollup` what the row counted before and counts now. Whether it was stored.
async fn store_summary(
    tx: &mut AnyConnection,
    s: &SummaryRow,
    now_ms: i64,
    backend: Backend,
    rollup: &mut Rollup,
) -> Result<bool, StoreError> {
    let e = || StoreError::query("store a session");
    let values = summary_values(s, now_ms);
    let mut insert = Sql::new("INSERT INTO sessions (");
    for (i, (column, _)) in values.iter().enumerate() {
        insert.push(if i > 0 { ", " } else { "" }).push(column);
    }
    insert
        .push(") VALUES ")
        .tuple(values.iter().map(|(_, v)| v.clone()))
        .push(" ON CONFLICT (host, session_uid) DO NOTHING RETURNING host");
    // The row as it is, locked until the batch commits (SQLite has one writer).
    let mut old = Sql::new("SELECT ");
    old.push(rollup::SESSION_COLUMNS)
        .push(" FROM sessions WHERE host = ")
        .arg(Arg::Text(s.host.clone()))
        .push(" AND session_uid = ")
        .arg(Arg::Text(s.session_uid.clone()));
    if backend == Backend::Postgres {
        old.push(" FOR UPDATE");
    }
    let mut update = Sql::new("UPDATE sessions SET ");
    for (i, (column, value)) in values.into_iter().skip(2).enumerate() {
        update
            .push(if i > 0 { ", " } else { "" })
            .push(column)
            .push(" = ")
            .arg(value);
    }
    update
        .push(" WHERE host = ")
        .arg(Arg::Text(s.host.clone()))
        .push(" AND session_uid = ")
        .arg(Arg::Text(s.session_uid.clone()))
        .push(" AND (")
        .arg(Arg::Int(s.state_rank))
        .push(", ")
        .arg(Arg::Int(s.observed_ns))
        .push(", ")
        .arg(Arg::Int(s.seq))
        .push(") > (state_rank, observed_ns, seq) RETURNING host");
    // A session deleted by retention between the insert and the read is inserted
    // on the next turn; a third turn would need retention to delete it twice.
    for _ in 0..3 {
        if insert
            .query()
            .fetch_optional(&mut *tx)
            .await
            .map_err(e())?
            .is_some()
        {
            rollup.session(&Contribution::of_summary(s), 1);
            return Ok(true);
        }
        let Some(old) = old.query().fetch_optional(&mut *tx).await.map_err(e())? else {
            continue;
        };
        let old = Contribution::of_row(&old, 0).map_err(e())?;
        let applied = update
            .query()
            .fetch_optional(&mut *tx)
            .await
            .map_err(e())?
            .is_some();
        if applied {
            rollup.session(&old, -1);
            rollup.session(&Contribution::of_summary(s), 1);
        }
        return Ok(applied);
    }
    Err(e()(sqlx::Error::RowNotFound))
}

/// A summary's columns and values, `host` and `session_uid` first.
fn summary_values(r: &SummaryRow, now_ms: i64) -> Vec<(&'static str, Arg)> {
    vec![
        ("host", Arg::Text(r.host.clone())),
        ("session_uid", Arg::Text(r.session_uid.clone())),
        ("session_id", Arg::Text(r.session_id.clone())),
        ("record_id", Arg::Text(r.record_id.clone())),
        ("seq", Arg::Int(r.seq)),
        ("observed_ns", Arg::Int(r.observed_ns)),
        ("state", Arg::Text(r.state.to_owned())),
        ("state_rank", Arg::Int(r.state_rank)),
        ("agent", Arg::OptText(r.agent.clone())),
        ("agent_version", Arg::OptText(r.agent_version.clone())),
        ("user_name", Arg::OptText(r.user_name.clone())),
        ("uid", Arg::OptInt(r.uid)),
        ("repo_url", Arg::OptText(r.repo_url.clone())),
        ("repo_branch", Arg::OptText(r.repo_branch.clone())),
        ("repo_commit", Arg::OptText(r.repo_commit.clone())),
        ("workspace", Arg::OptText(r.workspace.clone())),
        ("conversation_id", Arg::OptText(r.conversation_id.clone())),
        ("started_ms", Arg::Int(r.started_ms)),
        ("host_started_ms", Arg::OptInt(r.host_started_ms)),
        ("ended_ms", Arg::OptInt(r.ended_ms)),
        ("duration_ms", Arg::Int(r.duration_ms)),
        ("commands", Arg::Int(r.commands)),
        ("files_read", Arg::Int(r.files_read)),
        ("files_written", Arg::Int(r.files_written)),
        ("secrets_read", Arg::Int(r.secrets_read)),
        ("bytes_out", Arg::Int(r.bytes_out)),
        ("bytes_in", Arg::Int(r.bytes_in)),
        ("model_bytes_out", Arg::Int(r.model_bytes_out)),
        ("model_bytes_in", Arg::Int(r.model_bytes_in)),
        ("violations", Arg::Int(r.violations)),
        ("updated_ms", Arg::Int(now_ms)),
        ("summary", Arg::Text(r.summary.clone())),
    ]
}

/// Replaces a session's stored destinations with its summary's, and notes both in
/// the rollup.
async fn replace_destinations(
    tx: &mut AnyConnection,
    s: &SummaryRow,
    rollup: &mut Rollup,
) -> Result<(), StoreError> {
    let e = || StoreError::query("replace a session's destinations");
    let mut delete = Sql::new("DELETE FROM session_destinations WHERE host = ");
    delete
        .arg(Arg::Text(s.host.clone()))
        .push(" AND session_uid = ")
        .arg(Arg::Text(s.session_uid.clone()))
        .push(" RETURNING ")
        .push(rollup::DESTINATION_COLUMNS);
    let replaced = delete.query().fetch_all(&mut *tx).await.map_err(e())?;
    rollup.destinations_removed(&replaced).map_err(e())?;
    let user = s.user_name.clone().unwrap_or_default();
    for d in &s.destination_rows {
        let c = DestinationContribution {
            started_ms: s.started_ms,
            dest: &d.dest,
            class: &d.class,
            user: &user,
            bytes_out: d.bytes_out,
            secrets_read: s.secrets_read,
            violations: s.violations,
        };
        rollup.destination(&c, 1);
    }
    for chunk in s.destination_rows.chunks(CHUNK) {
        let mut insert = Sql::new(
            "INSERT INTO session_destinations (host, session_uid, dest, class, started_ms, \
             user_name, secrets_read, violations, bytes_out, connects) VALUES ",
        );
        for (i, d) in chunk.iter().enumerate() {
            if i > 0 {
                insert.push(", ");
            }
            insert.tuple([
                Arg::Text(s.host.clone()),
                Arg::Text(s.session_uid.clone()),
                Arg::Text(d.dest.clone()),
                Arg::Text(d.class.clone()),
                Arg::Int(s.started_ms),
                Arg::Text(user.clone()),
                Arg::Int(s.secrets_read),
                Arg::Int(s.violations),
                Arg::Int(d.bytes_out),
                Arg::Int(d.connects),
            ]);
        }
        insert.query().execute(&mut *tx).await.map_err(e())?;
    }
    Ok(())
}

/// Replaces a session's stored packages with its summary's, and notes each version
/// the organisation sees for the first time (recorded at `now_ms`, the fleet's
/// clock, for hosts' pulls), or earlier than it had.
async fn replace_packages(
    tx: &mut AnyConnection,
    s: &SummaryRow,
    now_ms: i64,
) -> Result<(), StoreError> {
    let e = || StoreError::query("replace a session's packages");
    let mut delete = Sql::new("DELETE FROM session_packages WHERE host = ");
    delete
        .arg(Arg::Text(s.host.clone()))
        .push(" AND session_uid = ")
        .arg(Arg::Text(s.session_uid.clone()));
    delete.query().execute(&mut *tx).await.map_err(e())?;
    for chunk in s.package_rows.chunks(CHUNK) {
        let mut insert = Sql::new(
            "INSERT INTO session_packages (host, session_uid, ecosystem, name, version, \
             started_ms, repo_url, install_script) VALUES ",
        );
        let mut first = Sql::new(
            "INSERT INTO packages (ecosystem, name, version, first_seen_ms, first_host, \
             first_session_uid, recorded_ms) VALUES ",
        );
        for (i, p) in chunk.iter().enumerate() {
            if i > 0 {
                insert.push(", ");
                first.push(", ");
            }
            insert.tuple([
                Arg::Text(s.host.clone()),
                Arg::Text(s.session_uid.clone()),
                Arg::Text(p.ecosystem.clone()),
                Arg::Text(p.name.clone()),
                Arg::Text(p.version.clone()),
                Arg::Int(s.started_ms),
                Arg::OptText(s.repo_url.clone()),
                Arg::Int(i64::from(p.install_script)),
            ]);
            first.tuple([
                Arg::Text(p.ecosystem.clone()),
                Arg::Text(p.name.clone()),
                Arg::Text(p.version.clone()),
                Arg::Int(s.started_ms),
                Arg::Text(s.host.clone()),
                Arg::Text(s.session_uid.clone()),
                Arg::Int(now_ms),
            ]);
        }
        insert.query().execute(&mut *tx).await.map_err(e())?;
        first.push(
            " ON CONFLICT (ecosystem, name, version) DO UPDATE SET \
             first_seen_ms = excluded.first_seen_ms, first_host = excluded.first_host, \
             first_session_uid = excluded.first_session_uid \
             WHERE excluded.first_seen_ms < packages.first_seen_ms",
        );
        first.query().execute(&mut *tx).await.map_err(e())?;
    }
    Ok(())
}

fn insert_events(rows: &[&EventRow], now_ms: i64) -> Sql {
    let mut s = Sql::new(
        "INSERT INTO events (host, record_id, session_uid, ts_ms, kind, rule, outcome, text, event, \
         received_ms) VALUES ",
    );
    for (i, e) in rows.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.tuple([
            Arg::Text(e.host.clone()),
            Arg::Text(e.record_id.clone()),
            Arg::Text(e.session_uid.clone()),
            Arg::Int(e.ts_ms),
            Arg::Text(e.kind.clone()),
            Arg::OptText(e.rule.clone()),
            Arg::OptText(e.outcome.clone()),
            Arg::Text(e.text.clone()),
            Arg::Text(e.event.clone()),
            Arg::Int(now_ms),
        ]);
    }
    s.push(" ON CONFLICT (host, record_id) DO NOTHING RETURNING host, record_id");
    s
}

/// The key of an event row `insert_events` returned (`RETURNING host, record_id`).
fn event_key(row: &AnyRow) -> Result<(String, String), sqlx::Error> {
    Ok((row.try_get("host")?, row.try_get("record_id")?))
}

/// How many rows a table has (tests and `guard-fleet` diagnostics).
pub async fn count(store: &Store, table: Table) -> Result<i64, StoreError> {
    let sql: &'static str = match table {
        Table::Hosts => "SELECT COUNT(*) AS n FROM hosts",
        Table::Sessions => "SELECT COUNT(*) AS n FROM sessions",
        Table::Violations => "SELECT COUNT(*) AS n FROM violations",
        Table::Events => "SELECT COUNT(*) AS n FROM events",
    };
    let row = sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .map_err(StoreError::query("count rows"))?;
    row.try_get("n").map_err(StoreError::query("count rows"))
}

/// The tables, for [`count`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Hosts,
    Sessions,
    Violations,
    Events,
}
