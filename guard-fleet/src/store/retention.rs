//! What is kept: events for `retention.events_days` and at most
//! `retention.events_max_rows` of them, sessions (with their violations) for
//! `retention.sessions_days` when set. Every replica runs this; the deletes are
//! idempotent, in chunks so no transaction grows with the backlog.

use sqlx::Row as _;

use super::{
    Store, StoreError,
    sql::{Arg, Sql},
};
use crate::config::Retention;

/// Rows deleted per statement.
const CHUNK: i64 = 5_000;
const DAY_MS: i64 = 86_400_000;

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
                .try_get(0)
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
                // Ingest waits for one chunk at most (SQLite's one writer).
                let _writer = self.writer().await;
                let mut del = Sql::new(
                    "DELETE FROM violations WHERE (host, session_uid) IN (SELECT host, session_uid \
                     FROM sessions WHERE updated_ms < ",
                );
                del.arg(Arg::Int(cutoff)).push(")");
                del.query()
                    .execute(self.pool())
                    .await
                    .map_err(StoreError::query("delete old violations"))?;
                let mut del = Sql::new(
                    "DELETE FROM sessions WHERE (host, session_uid) IN (SELECT host, session_uid \
                     FROM sessions WHERE updated_ms < ",
                );
                del.arg(Arg::Int(cutoff))
                    .push(" LIMIT ")
                    .arg(Arg::Int(CHUNK))
                    .push(")");
                let n = del
                    .query()
                    .execute(self.pool())
                    .await
                    .map_err(StoreError::query("delete old sessions"))?
                    .rows_affected();
                pruned.sessions += n;
                if n < CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }

    async fn delete_events_before(&self, received_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let _writer = self.writer().await;
            let mut del = Sql::new(
                "DELETE FROM events WHERE (host, record_id) IN (SELECT host, record_id FROM events \
                 WHERE received_ms < ",
            );
            del.arg(Arg::Int(received_ms))
                .push(" LIMIT ")
                .arg(Arg::Int(CHUNK))
                .push(")");
            let n = del
                .query()
                .execute(self.pool())
                .await
                .map_err(StoreError::query("delete old events"))?
                .rows_affected();
            total += n;
            if n < CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}
