//! The alerts' outbox (schema 6): rows queued in the transaction that stores their
//! event, then leased, sent and marked by whichever replica gets them first.
//!
//! A lease is an `UPDATE` of pending, unleased rows to this claim's owner (a random
//! token per claim): PostgreSQL re-checks the condition of a row another
//! transaction just leased and skips it, SQLite has one writer; so two replicas
//! never hold one row. A replica that dies while it sends leaves the lease to run
//! out ([`crate::config::Alerts::lease`]), then another sends the rows: nothing is
//! lost, and nothing is sent twice unless the replica died between the
//! destination's answer and the mark.

use sqlx::{AnyConnection, Row as _};

use super::rows::EventRow;
use super::{
    DAY_MS, Store, StoreError,
    sql::{Arg, Sql},
};
use crate::config::{AlertRule, HOST_SILENT, routes};

/// Rows of one alert and destination sent as one message at most (the rest go in
/// the next).
pub const CLAIM_MAX: i64 = 10_000;

/// One queued alert: an event an alert rule caught.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub host: String,
    pub record_id: String,
    pub session_uid: String,
    pub ts_ms: i64,
    pub rule: String,
    pub outcome: String,
    pub text: String,
    pub attempts: i64,
}

/// The rows one claim holds: an alert's, for one destination.
#[derive(Clone, Debug)]
pub struct Claim {
    pub alert: String,
    pub destination: String,
    pub owner: String,
    pub rows: Vec<Queued>,
}

/// What a claim's delivery came to.
#[derive(Clone, Debug)]
pub enum Delivery {
    Sent,
    /// Try again at `due_ms`, or give up (`due_ms` `None`): the error says why.
    Failed {
        error: String,
        due_ms: Option<i64>,
    },
}

/// Queues the events new to the database that an alert rule catches (inside the
/// batch's transaction).
pub(super) async fn enqueue(
    tx: &mut AnyConnection,
    rules: &[AlertRule],
    new: &[&EventRow],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut rows: Vec<(&str, &str, &EventRow)> = Vec::new();
    for e in new {
        rows.extend(
            routes(rules, &e.kind, e.rule.as_deref(), e.outcome.as_deref())
                .map(|(a, d)| (a, d, *e)),
        );
    }
    for chunk in rows.chunks(50) {
        let mut insert = Sql::new(
            "INSERT INTO alert_outbox (alert, destination, host, record_id, session_uid, ts_ms, \
             rule, outcome, text, created_ms, state, due_ms, attempts, lease_ms) VALUES ",
        );
        for (i, (alert, destination, e)) in chunk.iter().enumerate() {
            if i > 0 {
                insert.push(", ");
            }
            insert.tuple([
                Arg::Text((*alert).to_owned()),
                Arg::Text((*destination).to_owned()),
                Arg::Text(e.host.clone()),
                Arg::Text(e.record_id.clone()),
                Arg::Text(e.session_uid.clone()),
                Arg::Int(e.ts_ms),
                // An event with no rule (a refused policy) is named by its kind.
                Arg::Text(e.rule.clone().unwrap_or_else(|| e.kind.clone())),
                Arg::Text(e.outcome.clone().unwrap_or_default()),
                Arg::Text(e.text.clone()),
                Arg::Int(now_ms),
                Arg::Text("pending".to_owned()),
                Arg::Int(now_ms),
                Arg::Int(0),
                Arg::Int(0),
            ]);
        }
        insert.push(" ON CONFLICT (alert, destination, host, record_id) DO NOTHING");
        insert
            .query()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("queue alerts"))?;
    }
    Ok(())
}

impl Store {
    /// Queues a [`HOST_SILENT`] alert, for each rule that wants one, of every host
    /// that sent nothing since `stale_before_ms` and had sent something in the day
    /// before (a host retired long ago is not news). Once per silence: the row's
    /// id is the host's last batch time.
    pub async fn queue_silent_hosts(
        &self,
        rules: &[AlertRule],
        stale_before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let silent: Vec<(&str, &str)> = routes(rules, HOST_SILENT, None, None).collect();
        if silent.is_empty() {
            return Ok(0);
        }
        let mut queued = 0;
        let _writer = self.writer().await;
        for (alert, destination) in silent {
            let mut q = Sql::new(
                "INSERT INTO alert_outbox (alert, destination, host, record_id, session_uid, \
                 ts_ms, rule, outcome, text, created_ms, state, due_ms, attempts, lease_ms) SELECT ",
            );
            q.arg(Arg::Text(alert.to_owned()))
                .push(", ")
                .arg(Arg::Text(destination.to_owned()))
                .push(", host, 'silent-' || CAST(last_seen_ms AS TEXT), '', last_seen_ms, ")
                .arg(Arg::Text(HOST_SILENT.to_owned()))
                .push(", 'silent', ")
                .arg(Arg::Text(
                    "sent nothing, not even a heartbeat: its guard stopped, or the host is gone"
                        .to_owned(),
                ))
                .push(", ")
                .arg(Arg::Int(now_ms))
                .push(", 'pending', ")
                .arg(Arg::Int(now_ms))
                .push(", 0, 0 FROM hosts WHERE last_seen_ms < ")
                .arg(Arg::Int(stale_before_ms))
                .push(" AND last_seen_ms >= ")
                .arg(Arg::Int(stale_before_ms - DAY_MS))
                .push(" ON CONFLICT (alert, destination, host, record_id) DO NOTHING");
            queued += q
                .query()
                .execute(self.pool())
                .await
                .map_err(StoreError::query("queue alerts of silent hosts"))?
                .rows_affected();
        }
        Ok(queued)
    }

    /// The (alert, destination) pairs with rows due now whose last message is at
    /// least `window_ms` old.
    pub async fn alerts_due(
        &self,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut q = Sql::new(
            "SELECT DISTINCT o.alert, o.destination FROM alert_outbox o \
             WHERE o.state = 'pending' AND o.due_ms <= ",
        );
        q.arg(Arg::Int(now_ms))
            .push(" AND o.lease_ms <= ")
            .arg(Arg::Int(now_ms))
            .push(
                " AND NOT EXISTS (SELECT 1 FROM alert_sends s WHERE s.alert = o.alert \
                 AND s.destination = o.destination AND s.last_ms > ",
            )
            .arg(Arg::Int(now_ms - window_ms))
            .push(") ORDER BY o.alert, o.destination");
        let rows = q
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("find due alerts"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("alert")?, r.try_get("destination")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("find due alerts"))
    }

    /// Leases the due rows of `alert` for `destination` until `now_ms + lease_ms`;
    /// `None` when another replica has them.
    pub async fn claim_alerts(
        &self,
        alert: &str,
        destination: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, StoreError> {
        let owner = owner_token()?;
        let _writer = self.writer().await;
        let mut lease = Sql::new("UPDATE alert_outbox SET lease_owner = ");
        lease
            .arg(Arg::Text(owner.clone()))
            .push(", lease_ms = ")
            .arg(Arg::Int(now_ms + lease_ms))
            .push(", attempts = attempts + 1 WHERE state = 'pending' AND lease_ms <= ")
            .arg(Arg::Int(now_ms))
            .push(
                " AND (host, record_id) IN (SELECT host, record_id FROM alert_outbox \
                 WHERE state = 'pending' AND alert = ",
            )
            .arg(Arg::Text(alert.to_owned()))
            .push(" AND destination = ")
            .arg(Arg::Text(destination.to_owned()))
            .push(" AND due_ms <= ")
            .arg(Arg::Int(now_ms))
            .push(" AND lease_ms <= ")
            .arg(Arg::Int(now_ms))
            .push(" ORDER BY ts_ms LIMIT ")
            .arg(Arg::Int(CLAIM_MAX))
            .push(") AND alert = ")
            .arg(Arg::Text(alert.to_owned()))
            .push(" AND destination = ")
            .arg(Arg::Text(destination.to_owned()))
            .push(" RETURNING host, record_id, session_uid, ts_ms, rule, outcome, text, attempts");
        let rows = lease
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("lease alerts"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut rows = rows
            .iter()
            .map(|r| {
                Ok(Queued {
                    host: r.try_get("host")?,
                    record_id: r.try_get("record_id")?,
                    session_uid: r.try_get("session_uid")?,
                    ts_ms: r.try_get("ts_ms")?,
                    rule: r.try_get("rule")?,
                    outcome: r.try_get("outcome")?,
                    text: r.try_get("text")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::query("lease alerts"))?;
        rows.sort_by(|a, b| {
            (a.ts_ms, &a.host, &a.record_id).cmp(&(b.ts_ms, &b.host, &b.record_id))
        });
        Ok(Some(Claim {
            alert: alert.to_owned(),
            destination: destination.to_owned(),
            owner,
            rows,
        }))
    }

    /// Records what became of `claim`'s rows (those it still holds).
    pub async fn finish_alerts(
        &self,
        claim: &Claim,
        delivery: &Delivery,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let _writer = self.writer().await;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin a transaction"))?;
        let mut update = match delivery {
            Delivery::Sent => {
                let mut u = Sql::new("UPDATE alert_outbox SET state = 'sent', done_ms = ");
                u.arg(Arg::Int(now_ms)).push(", error = NULL");
                u
            }
            Delivery::Failed {
                error,
                due_ms: Some(due),
            } => {
                let mut u = Sql::new("UPDATE alert_outbox SET lease_ms = 0, due_ms = ");
                u.arg(Arg::Int(*due))
                    .push(", error = ")
                    .arg(Arg::Text(error.clone()));
                u
            }
            Delivery::Failed {
                error,
                due_ms: None,
            } => {
                let mut u = Sql::new("UPDATE alert_outbox SET state = 'failed', done_ms = ");
                u.arg(Arg::Int(now_ms))
                    .push(", error = ")
                    .arg(Arg::Text(error.clone()));
                u
            }
        };
        update
            .push(" WHERE state = 'pending' AND lease_owner = ")
            .arg(Arg::Text(claim.owner.clone()));
        let done = update
            .query()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("mark alerts"))?
            .rows_affected();
        if matches!(delivery, Delivery::Sent) {
            let mut sent =
                Sql::new("INSERT INTO alert_sends (alert, destination, last_ms) VALUES ");
            sent.tuple([
                Arg::Text(claim.alert.clone()),
                Arg::Text(claim.destination.clone()),
                Arg::Int(now_ms),
            ])
            .push(" ON CONFLICT (alert, destination) DO UPDATE SET last_ms = excluded.last_ms");
            sent.query()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("mark alerts"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("mark alerts"))?;
        Ok(done)
    }

    /// How many outbox rows are in `state` (tests, diagnostics).
    pub async fn alerts_in(&self, state: &str) -> Result<i64, StoreError> {
        let mut q = Sql::new("SELECT COUNT(*) AS alerts FROM alert_outbox WHERE state = ");
        q.arg(Arg::Text(state.to_owned()));
        let row = q
            .query()
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::query("count alerts"))?;
        row.try_get("alerts")
            .map_err(StoreError::query("count alerts"))
    }
}

/// Deliveries of one alert rule to one destination, for the alerts page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertStats {
    pub alert: String,
    pub destination: String,
    pub sent: i64,
    pub pending: i64,
    pub failed: i64,
    pub last_sent_ms: Option<i64>,
}

/// One queued event and what became of it, for the alerts page.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AlertRow {
    pub alert: String,
    pub destination: String,
    pub host: String,
    pub session_uid: String,
    pub ts_ms: i64,
    pub rule: String,
    pub outcome: String,
    pub text: String,
    pub state: String,
    pub attempts: i64,
    pub done_ms: Option<i64>,
    pub error: Option<String>,
}

impl Store {
    /// Sent, pending and failed rows per alert rule and destination.
    pub async fn alert_stats(&self) -> Result<Vec<AlertStats>, StoreError> {
        let e = || StoreError::query("count alerts");
        let rows = sqlx::query(
            "SELECT alert, destination, \
             SUM(CASE WHEN state = 'sent' THEN 1 ELSE 0 END) AS sent, \
             SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, \
             SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, \
             MAX(CASE WHEN state = 'sent' THEN done_ms END) AS last_sent_ms \
             FROM alert_outbox GROUP BY alert, destination ORDER BY alert, destination",
        )
        .fetch_all(self.pool())
        .await
        .map_err(e())?;
        rows.iter()
            .map(|r| {
                Ok(AlertStats {
                    alert: r.try_get("alert")?,
                    destination: r.try_get("destination")?,
                    sent: r.try_get("sent")?,
                    pending: r.try_get("pending")?,
                    failed: r.try_get("failed")?,
                    last_sent_ms: r.try_get("last_sent_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(e())
    }

    /// The `limit` alerts queued last, newest first.
    pub async fn recent_alerts(&self, limit: i64) -> Result<Vec<AlertRow>, StoreError> {
        let e = || StoreError::query("read alerts");
        let mut q = Sql::new(
            "SELECT alert, destination, host, session_uid, ts_ms, rule, outcome, text, state, \
             attempts, done_ms, error FROM alert_outbox \
             ORDER BY created_ms DESC, ts_ms DESC LIMIT ",
        );
        q.arg(Arg::Int(limit));
        let rows = q.query().fetch_all(self.pool()).await.map_err(e())?;
        rows.iter()
            .map(|r| {
                Ok(AlertRow {
                    alert: r.try_get("alert")?,
                    destination: r.try_get("destination")?,
                    host: r.try_get("host")?,
                    session_uid: r.try_get("session_uid")?,
                    ts_ms: r.try_get("ts_ms")?,
                    rule: r.try_get("rule")?,
                    outcome: r.try_get("outcome")?,
                    text: r.try_get("text")?,
                    state: r.try_get("state")?,
                    attempts: r.try_get("attempts")?,
                    done_ms: r.try_get("done_ms")?,
                    error: r.try_get("error")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(e())
    }
}

/// A claim's owner: 16 random bytes, hex.
fn owner_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(StoreError::Random)?;
    Ok(crate::auth::tokens::hex(&bytes))
}

impl Store {
    /// The alert rules kept in the fleet, by name.
    pub async fn stored_alert_rules(&self) -> Result<Vec<AlertRule>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, kinds, rules, outcomes, destinations, updated_ms, author \
             FROM alert_rules ORDER BY name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read the alert rules"))?;
        let list = |r: &sqlx::any::AnyRow, column: &str| -> Result<Vec<String>, sqlx::Error> {
            let text: String = r.try_get(column)?;
            serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        };
        rows.iter()
            .map(|r| {
                Ok(AlertRule {
                    name: r.try_get("name")?,
                    kinds: list(r, "kinds")?,
                    rules: list(r, "rules")?,
                    outcomes: list(r, "outcomes")?,
                    to: list(r, "destinations")?,
                    author: Some(r.try_get("author")?),
                    updated_ms: Some(r.try_get("updated_ms")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("read the alert rules"))
    }

    /// Keeps `rule` in the fleet (made, or replaced when its name is taken), as
    /// `author` made it at `now_ms`. Whether it was new.
    pub async fn put_alert_rule(
        &self,
        rule: &AlertRule,
        author: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let json = |v: &[String]| serde_json::Value::from(v).to_string();
        let _writer = self.writer().await;
        let existed = sqlx::query("SELECT name FROM alert_rules WHERE name = $1")
            .bind(&rule.name)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::query("keep an alert rule"))?
            .is_some();
        sqlx::query(
            "INSERT INTO alert_rules (name, kinds, rules, outcomes, destinations, updated_ms, \
             author) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
             kinds = excluded.kinds, rules = excluded.rules, outcomes = excluded.outcomes, \
             destinations = excluded.destinations, updated_ms = excluded.updated_ms, \
             author = excluded.author",
        )
        .bind(&rule.name)
        .bind(json(&rule.kinds))
        .bind(json(&rule.rules))
        .bind(json(&rule.outcomes))
        .bind(json(&rule.to))
        .bind(now_ms)
        .bind(author)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("keep an alert rule"))?;
        Ok(!existed)
    }

    /// Removes the kept rule `name`; whether there was one. What it queued is
    /// still delivered.
    pub async fn delete_alert_rule(&self, name: &str) -> Result<bool, StoreError> {
        let _writer = self.writer().await;
        let done = sqlx::query("DELETE FROM alert_rules WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(StoreError::query("remove an alert rule"))?;
        Ok(done.rows_affected() > 0)
    }
}
