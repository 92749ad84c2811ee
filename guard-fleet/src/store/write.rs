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

use sqlx::Row as _;

use super::{
    Store, StoreError,
    sql::{Arg, Sql},
};
use crate::ingest::batch::{Batch, EventRow, HostRow, SummaryRow};

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
    /// Writes `batch` in one transaction, received at `now_ms`.
    pub async fn write(&self, batch: &Batch, now_ms: i64) -> Result<Written, StoreError> {
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
        for s in summaries {
            let applied = summary(s, now_ms)
                .query()
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("store a session"))?
                .is_some();
            if !applied {
                continue;
            }
            written.summaries_applied += 1;
            let mut delete = Sql::new("DELETE FROM violations WHERE host = ");
            delete
                .arg(Arg::Text(s.host.clone()))
                .push(" AND session_uid = ")
                .arg(Arg::Text(s.session_uid.clone()));
            delete
                .query()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("replace a session's violations"))?;
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
        for chunk in events.chunks(CHUNK) {
            let rows = insert_events(chunk, now_ms)
                .query()
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query("store events"))?;
            written.events_new += rows.len() as u64;
        }

        tx.commit()
            .await
            .map_err(StoreError::query("commit a batch"))?;
        Ok(written)
    }
}

fn host(h: &HostRow) -> Sql {
    let mut s = Sql::new(
        "INSERT INTO hosts (host, host_name, host_id, arch, guard_version, os_version, boot_id, \
         policy_name, policy_mode, tiers, k8s_cluster, k8s_node, first_seen_ms, last_seen_ms) VALUES ",
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
    ]);
    s.push(
        " ON CONFLICT (host) DO UPDATE SET host_name = excluded.host_name, \
         host_id = excluded.host_id, arch = excluded.arch, guard_version = excluded.guard_version, \
         os_version = excluded.os_version, boot_id = excluded.boot_id, \
         policy_name = excluded.policy_name, policy_mode = excluded.policy_mode, \
         tiers = excluded.tiers, k8s_cluster = excluded.k8s_cluster, k8s_node = excluded.k8s_node, \
         last_seen_ms = excluded.last_seen_ms \
         WHERE excluded.last_seen_ms >= hosts.last_seen_ms",
    );
    s
}

fn summary(r: &SummaryRow, now_ms: i64) -> Sql {
    let mut s = Sql::new(
        "INSERT INTO sessions (host, session_uid, session_id, record_id, seq, observed_ns, state, \
         state_rank, agent, agent_version, user_name, uid, repo_url, repo_branch, repo_commit, \
         workspace, conversation_id, started_ms, ended_ms, duration_ms, commands, files_read, \
         files_written, secrets_read, bytes_out, bytes_in, model_bytes_out, model_bytes_in, \
         violations, updated_ms, summary) VALUES ",
    );
    s.tuple([
        Arg::Text(r.host.clone()),
        Arg::Text(r.session_uid.clone()),
        Arg::Text(r.session_id.clone()),
        Arg::Text(r.record_id.clone()),
        Arg::Int(r.seq),
        Arg::Int(r.observed_ns),
        Arg::Text(r.state.to_owned()),
        Arg::Int(r.state_rank),
        Arg::OptText(r.agent.clone()),
        Arg::OptText(r.agent_version.clone()),
        Arg::OptText(r.user_name.clone()),
        Arg::OptInt(r.uid),
        Arg::OptText(r.repo_url.clone()),
        Arg::OptText(r.repo_branch.clone()),
        Arg::OptText(r.repo_commit.clone()),
        Arg::OptText(r.workspace.clone()),
        Arg::OptText(r.conversation_id.clone()),
        Arg::Int(r.started_ms),
        Arg::OptInt(r.ended_ms),
        Arg::Int(r.duration_ms),
        Arg::Int(r.commands),
        Arg::Int(r.files_read),
        Arg::Int(r.files_written),
        Arg::Int(r.secrets_read),
        Arg::Int(r.bytes_out),
        Arg::Int(r.bytes_in),
        Arg::Int(r.model_bytes_out),
        Arg::Int(r.model_bytes_in),
        Arg::Int(r.violations),
        Arg::Int(now_ms),
        Arg::Text(r.summary.clone()),
    ]);
    s.push(
        " ON CONFLICT (host, session_uid) DO UPDATE SET session_id = excluded.session_id, \
         record_id = excluded.record_id, seq = excluded.seq, observed_ns = excluded.observed_ns, \
         state = excluded.state, state_rank = excluded.state_rank, agent = excluded.agent, \
         agent_version = excluded.agent_version, user_name = excluded.user_name, uid = excluded.uid, \
         repo_url = excluded.repo_url, repo_branch = excluded.repo_branch, \
         repo_commit = excluded.repo_commit, workspace = excluded.workspace, \
         conversation_id = excluded.conversation_id, started_ms = excluded.started_ms, \
         ended_ms = excluded.ended_ms, duration_ms = excluded.duration_ms, \
         commands = excluded.commands, files_read = excluded.files_read, \
         files_written = excluded.files_written, secrets_read = excluded.secrets_read, \
         bytes_out = excluded.bytes_out, bytes_in = excluded.bytes_in, \
         model_bytes_out = excluded.model_bytes_out, model_bytes_in = excluded.model_bytes_in, \
         violations = excluded.violations, updated_ms = excluded.updated_ms, \
         summary = excluded.summary \
         WHERE (excluded.state_rank, excluded.observed_ns, excluded.seq) \
         > (sessions.state_rank, sessions.observed_ns, sessions.seq) \
         RETURNING host",
    );
    s
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
    s.push(" ON CONFLICT (host, record_id) DO NOTHING RETURNING record_id");
    s
}

/// How many rows a table has (tests and `guard-fleet` diagnostics).
pub async fn count(store: &Store, table: Table) -> Result<i64, StoreError> {
    let sql: &'static str = match table {
        Table::Hosts => "SELECT COUNT(*) FROM hosts",
        Table::Sessions => "SELECT COUNT(*) FROM sessions",
        Table::Violations => "SELECT COUNT(*) FROM violations",
        Table::Events => "SELECT COUNT(*) FROM events",
    };
    let row = sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .map_err(StoreError::query("count rows"))?;
    row.try_get(0).map_err(StoreError::query("count rows"))
}

/// The tables, for [`count`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Hosts,
    Sessions,
    Violations,
    Events,
}
