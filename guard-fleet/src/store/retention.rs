//! What is kept: events for `retention.events_days` and at most
//! `retention.events_max_rows` of them, sessions (with their violations) for
//! `retention.sessions_days` when set. Every replica runs this; the deletes are
//! idempotent, in chunks so no transaction grows with the backlog.

use sqlx::Row as _;

use super::{
    DAY_MS, Store, StoreError,
    rollup::{self, Contribution, Rollup},
    sql::{Arg, Sql},
};
use crate::config::Retention;

/// Rows deleted per statement.
const CHUNK: i64 = 5_000;
/// Sessions deleted per transaction, and sessions whose violations one statement
/// deletes (two bound values each).
const SESSIONS_CHUNK: i64 = 1_000;
const VIOLATIONS_CHUNK: usize = 500;

/// What one pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub sessions: u64,
}

impl Store {
    /// One pass of retention at `now_ms`.
    pub async fn prune(&self, r: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let cutoff = now_ms.saturating_sub(i64::from(r.events_days) * DAY_MS);
        pruned.events += self.delete_events_before(cutoff).await?;
        // Alerts delivered (or given up) go with the events they were about.
        self.delete_alerts_before(cutoff).await?;

        // Past the cap: the received time of the newest row that is over it.
        let mut over =
            Sql::new("SELECT received_ms FROM events ORDER BY received_ms DESC LIMIT 1 OFFSET ");
        over.arg(Arg::Int(
            i64::try_from(r.events_max_rows).unwrap_or(i64::MAX),
        ));
        let row = over
            .query()
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::query("find the oldest events"))?;
        if let Some(row) = row {
            let newest_over: i64 = row
                .try_get("received_ms")
                .map_err(StoreError::query("find the oldest events"))?;
            // Rows received in the same millisecond as the cap's edge go too: the
            // table stays at most at the cap.
            pruned.events += self
                .delete_events_before(newest_over.saturating_add(1))
                .await?;
        }

        if r.sessions_days > 0 {
            let cutoff = now_ms.saturating_sub(i64::from(r.sessions_days) * DAY_MS);
            loop {
                let n = self.delete_sessions_before(cutoff).await?;
                pruned.sessions += n;
                if n < SESSIONS_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }

    /// Deletes up to [`SESSIONS_CHUNK`] sessions last updated before `updated_ms`,
    /// with their violations, and takes them out of the overview's rollup, in one
    /// transaction.
    async fn delete_sessions_before(&self, updated_ms: i64) -> Result<u64, StoreError> {
        let e = || StoreError::query("delete old sessions");
        // Ingest waits for one chunk at most (SQLite's one writer).
        let _writer = self.writer().await;
        let mut tx = self.pool().begin().await.map_err(e())?;
        let mut del = Sql::new(
            "DELETE FROM sessions WHERE (host, session_uid) IN (SELECT host, session_uid \
             FROM sessions WHERE updated_ms < ",
        );
        // The second test holds for a row a batch updated while this waited for it.
        del.arg(Arg::Int(updated_ms))
            .push(" LIMIT ")
            .arg(Arg::Int(SESSIONS_CHUNK))
            .push(") AND updated_ms < ")
            .arg(Arg::Int(updated_ms))
            .push(" RETURNING session_uid, ")
            .push(rollup::SESSION_COLUMNS);
        let deleted = del.query().fetch_all(&mut *tx).await.map_err(e())?;
        let mut rollup = Rollup::default();
        let mut keys = Vec::with_capacity(deleted.len());
        for row in &deleted {
            let c = Contribution::of_row(row, 1).map_err(e())?;
            keys.push((c.host.clone(), row.try_get::<String, _>(0).map_err(e())?));
            rollup.session(&c, -1);
        }
        for chunk in keys.chunks(VIOLATIONS_CHUNK) {
            let mut del = of_sessions(
                "DELETE FROM violations WHERE (host, session_uid) IN (VALUES ",
                chunk,
            );
            del.push(" RETURNING ").push(rollup::VIOLATION_COLUMNS);
            let removed = del.query().fetch_all(&mut *tx).await.map_err(e())?;
            rollup.violations_removed(&removed).map_err(e())?;
            let mut del = of_sessions(
                "DELETE FROM session_destinations WHERE (host, session_uid) IN (VALUES ",
                chunk,
            );
            del.push(" RETURNING ").push(rollup::DESTINATION_COLUMNS);
            let removed = del.query().fetch_all(&mut *tx).await.map_err(e())?;
            rollup.destinations_removed(&removed).map_err(e())?;
            // The organisation's first sight of each package stays (`packages`).
            let del = of_sessions(
                "DELETE FROM session_packages WHERE (host, session_uid) IN (VALUES ",
                chunk,
            );
            del.query().execute(&mut *tx).await.map_err(e())?;
        }
        rollup.apply(&mut tx).await.map_err(e())?;
        tx.commit().await.map_err(e())?;
        Ok(deleted.len() as u64)
    }

    /// Deletes the finished alerts queued before `created_ms`.
    async fn delete_alerts_before(&self, created_ms: i64) -> Result<u64, StoreError> {
        self.delete_chunked(
            "DELETE FROM alert_outbox WHERE (alert, destination, host, record_id) IN \
             (SELECT alert, destination, host, record_id FROM alert_outbox \
             WHERE state <> 'pending' AND created_ms < ",
            created_ms,
            "delete old alerts",
        )
        .await
    }

    async fn delete_events_before(&self, received_ms: i64) -> Result<u64, StoreError> {
        self.delete_chunked(
            "DELETE FROM events WHERE (host, record_id) IN (SELECT host, record_id FROM events \
             WHERE received_ms < ",
            received_ms,
            "delete old events",
        )
        .await
    }

    /// Runs `delete … IN (SELECT … < before LIMIT CHUNK)` until it deletes fewer than
    /// [`CHUNK`] rows, letting the writer go between statements; `delete` ends
    /// where the cut-off goes. Returns the rows deleted.
    async fn delete_chunked(
        &self,
        delete: &'static str,
        before: i64,
        what: &'static str,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let _writer = self.writer().await;
            let mut del = Sql::new(delete);
            del.arg(Arg::Int(before))
                .push(" LIMIT ")
                .arg(Arg::Int(CHUNK))
                .push(")");
            let n = del
                .query()
                .execute(self.pool())
                .await
                .map_err(StoreError::query(what))?
                .rows_affected();
            total += n;
            if n < CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

/// `delete` (`DELETE FROM T WHERE (host, session_uid) IN (VALUES `) of the rows of
/// sessions `keys` (host, session uid).
fn of_sessions(delete: &'static str, keys: &[(String, String)]) -> Sql {
    let mut del = Sql::new(delete);
    for (i, (host, uid)) in keys.iter().enumerate() {
        if i > 0 {
            del.push(", ");
        }
        del.tuple([Arg::Text(host.clone()), Arg::Text(uid.clone())]);
    }
    del.push(")");
    del
}
