//! The dashboard's questions as queries, and their answers as plain types: the
//! JSON API serialises them, the HTML pages render them, the CLI prints them.

use guard_common::report::Report;
use serde::{Deserialize, Serialize};
use sqlx::{Row as _, any::AnyRow};

use super::{
    DAY_MS, Store, StoreError,
    sql::{Arg, Sql},
};

/// The columns of [`SessionRow`], in its order.
const SESSION_COLUMNS: &str = "s.host, s.session_uid, s.session_id, s.state, s.agent, \
    s.agent_version, s.user_name, s.repo_url, s.repo_branch, s.started_ms, s.ended_ms, \
    s.duration_ms, s.commands, s.files_read, s.files_written, s.secrets_read, s.bytes_out, \
    s.bytes_in, s.model_bytes_out, s.violations, s.updated_ms, s.host_started_ms";

/// One session, as lists show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub host: String,
    pub session_uid: String,
    pub session_id: String,
    /// `running` or `ended`.
    pub state: String,
    pub agent: Option<String>,
    pub agent_version: Option<String>,
    pub user_name: Option<String>,
    pub repo_url: Option<String>,
    pub repo_branch: Option<String>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub duration_ms: i64,
    pub commands: i64,
    pub files_read: i64,
    pub files_written: i64,
    pub secrets_read: i64,
    pub bytes_out: i64,
    pub bytes_in: i64,
    /// Bytes sent to model APIs (destinations of class `model`).
    pub model_bytes_out: i64,
    pub violations: i64,
    /// When the server stored its latest summary.
    pub updated_ms: i64,
    /// The start its host gave, when that was in the future (its clock ahead):
    /// `started_ms` is then corrected by the host's clock skew.
    #[serde(default)]
    pub host_started_ms: Option<i64>,
}

fn session_row(r: &AnyRow) -> Result<SessionRow, sqlx::Error> {
    Ok(SessionRow {
        host: r.try_get("host")?,
        session_uid: r.try_get("session_uid")?,
        session_id: r.try_get("session_id")?,
        state: r.try_get("state")?,
        agent: r.try_get("agent")?,
        agent_version: r.try_get("agent_version")?,
        user_name: r.try_get("user_name")?,
        repo_url: r.try_get("repo_url")?,
        repo_branch: r.try_get("repo_branch")?,
        started_ms: r.try_get("started_ms")?,
        ended_ms: r.try_get("ended_ms")?,
        duration_ms: r.try_get("duration_ms")?,
        commands: r.try_get("commands")?,
        files_read: r.try_get("files_read")?,
        files_written: r.try_get("files_written")?,
        secrets_read: r.try_get("secrets_read")?,
        bytes_out: r.try_get("bytes_out")?,
        bytes_in: r.try_get("bytes_in")?,
        model_bytes_out: r.try_get("model_bytes_out")?,
        violations: r.try_get("violations")?,
        updated_ms: r.try_get("updated_ms")?,
        host_started_ms: r.try_get("host_started_ms")?,
    })
}

/// A value and how many times it occurs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

/// Filters of the sessions table: the page's GET parameters, as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Started at or after (unix ms).
    pub from_ms: Option<i64>,
    /// Started before (unix ms).
    pub to_ms: Option<i64>,
    pub user: Option<String>,
    /// A part of the repository URL (case-insensitive).
    pub repo: Option<String>,
    pub host: Option<String>,
    pub agent: Option<String>,
    /// Broke this rule.
    pub rule: Option<String>,
    /// Had a violation with this outcome.
    pub outcome: Option<String>,
    /// `running` or `ended`.
    pub state: Option<String>,
    /// Sent bytes to this destination (a name, else an address).
    #[serde(default)]
    pub dest: Option<String>,
    /// With `state` `running`: only those whose summary came since (running
    /// *now*, as the overview counts them: a host that died leaves its sessions
    /// `running`).
    #[serde(default)]
    pub running_since: Option<i64>,
    pub sort: Sort,
    pub descending: bool,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

impl Query {
    /// No filter: every session.
    fn selects_all(&self) -> bool {
        let Self {
            from_ms,
            to_ms,
            user,
            repo,
            host,
            agent,
            rule,
            outcome,
            state,
            dest,
            running_since: _,
            sort: _,
            descending: _,
            page: _,
            per_page: _,
        } = self;
        from_ms.is_none()
            && to_ms.is_none()
            && [user, repo, host, agent, rule, outcome, state, dest]
                .iter()
                .all(|f| f.is_none())
    }

    /// Appends ` AND …` for each filter set.
    fn filter(&self, sql: &mut Sql) {
        let text = |v: &String| Arg::Text(v.clone());
        if let Some(from) = self.from_ms {
            sql.push(" AND s.started_ms >= ").arg(Arg::Int(from));
        }
        if let Some(to) = self.to_ms {
            sql.push(" AND s.started_ms < ").arg(Arg::Int(to));
        }
        if let Some(v) = &self.user {
            sql.push(" AND s.user_name = ").arg(text(v));
        }
        if let Some(v) = &self.repo {
            sql.push(" AND LOWER(s.repo_url) LIKE ")
                .arg(Arg::Text(like(v)))
                .push(" ESCAPE '\\'");
        }
        if let Some(v) = &self.host {
            sql.push(" AND s.host = ").arg(text(v));
        }
        if let Some(v) = &self.agent {
            sql.push(" AND s.agent = ").arg(text(v));
        }
        if let Some(v) = &self.state {
            sql.push(" AND s.state = ").arg(text(v));
            if let (Some(since), "running") = (self.running_since, v.as_str()) {
                sql.push(" AND s.updated_ms >= ").arg(Arg::Int(since));
            }
        }
        if let Some(v) = &self.dest {
            // The destination's sessions from its own index (dest, started_ms), not a
            // probe per session of the window (SQLite took 6.7 s for 7 days of a
            // million sessions that way; this way it walks the destination's rows).
            sql.push(
                " AND (s.host, s.session_uid) IN (SELECT d.host, d.session_uid \
                 FROM session_destinations d WHERE d.dest = ",
            )
            .arg(text(v));
            if let Some(from) = self.from_ms {
                sql.push(" AND d.started_ms >= ").arg(Arg::Int(from));
            }
            if let Some(to) = self.to_ms {
                sql.push(" AND d.started_ms < ").arg(Arg::Int(to));
            }
            sql.push(")");
        }
        if self.rule.is_some() || self.outcome.is_some() {
            sql.push(
                " AND EXISTS (SELECT 1 FROM violations v WHERE v.host = s.host \
                 AND v.session_uid = s.session_uid",
            );
            if let Some(v) = &self.rule {
                sql.push(" AND v.rule = ").arg(text(v));
            }
            if let Some(v) = &self.outcome {
                sql.push(" AND v.outcome = ").arg(text(v));
            }
            sql.push(")");
        }
    }
}

/// What the sessions table is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Sort {
    #[default]
    #[strum(to_string = "start", serialize = "started")]
    Start,
    Duration,
    Bytes,
    Violations,
}

impl Sort {
    /// From the `sort` parameter.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// The parameter's value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn column(self) -> &'static str {
        match self {
            Self::Start => "s.started_ms",
            Self::Duration => "s.duration_ms",
            Self::Bytes => "s.bytes_out",
            Self::Violations => "s.violations",
        }
    }
}

/// What a list's rows add up to (every row the filters select, not one page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTotals {
    pub sessions: i64,
    /// Distinct developers.
    pub developers: i64,
    pub bytes_out: i64,
    pub model_bytes_out: i64,
    pub secrets_read: i64,
    pub sessions_reading_secrets: i64,
    pub violations: i64,
}

impl ListTotals {
    /// Bytes to everything but model APIs.
    pub fn other_bytes_out(&self) -> i64 {
        (self.bytes_out - self.model_bytes_out).max(0)
    }
}

/// One page of the sessions table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPage {
    pub total: i64,
    /// The sums of every session selected.
    pub totals: ListTotals,
    pub page: u32,
    pub per_page: u32,
    pub sessions: Vec<SessionRow>,
}

/// One event of a session's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ms: i64,
    pub kind: String,
    pub rule: Option<String>,
    pub outcome: Option<String>,
    pub text: String,
}

/// One flow record: bytes of one socket so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub ts_ms: i64,
    pub flow_id: String,
    pub bytes_out: i64,
}

/// A session's page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionDetail {
    pub session: SessionRow,
    pub uid: Option<i64>,
    pub repo_commit: Option<String>,
    pub workspace: Option<String>,
    pub conversation_id: Option<String>,
    pub summary_seq: i64,
    /// The session's report, as its latest summary carries it (lists cut to the
    /// summary's bound; `omitted` counts the rest).
    pub report: Report,
    /// Its events still in the index (at most 500, oldest first).
    pub events: Vec<Event>,
    /// Its flow records still in the index, for the timeline's bytes.
    pub flows: Vec<Flow>,
    /// Other hosts with a session of the same uid (a copy, or a forgery).
    pub other_hosts: Vec<String>,
}

/// The rows `sql` selects, each read by `read`.
async fn fetch_rows<T>(
    pool: &sqlx::AnyPool,
    sql: Sql,
    what: &'static str,
    read: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, StoreError> {
    sql.query()
        .fetch_all(pool)
        .await
        .map_err(StoreError::query(what))?
        .iter()
        .map(read)
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::query(what))
}

/// A [`Count`] from its columns `key` and `count`.
fn count_row(r: &AnyRow) -> Result<Count, sqlx::Error> {
    Ok(Count {
        key: r.try_get("key")?,
        count: int(r, "count")?,
    })
}

/// The integer in `column`, 0 for NULL (SUM over no rows is NULL).
fn int(r: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    Ok(r.try_get::<Option<i64>, _>(column)?.unwrap_or(0))
}

/// `%part%` for LIKE, with LIKE's own characters escaped by `\`.
fn like(part: &str) -> String {
    let mut s = String::from("%");
    for c in part.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

impl Store {
    /// One page of the sessions `q` selects.
    pub async fn sessions(&self, q: &Query) -> Result<SessionPage, StoreError> {
        let e = StoreError::query;
        // Every session: the rollup has the count (a scan of a million rows would
        // take a quarter of a second).
        let count = if q.selects_all() {
            Sql::new(
                "SELECT CAST(SUM(sessions) AS BIGINT) AS sessions, \
                 COUNT(DISTINCT CASE WHEN sessions > 0 THEN NULLIF(name, '') END) AS developers, \
                 CAST(SUM(bytes_out) AS BIGINT) AS bytes_out, \
                 CAST(SUM(model_bytes_out) AS BIGINT) AS model_bytes_out, \
                 CAST(SUM(secrets_read) AS BIGINT) AS secrets_read, \
                 CAST(SUM(sessions_reading_secrets) AS BIGINT) AS sessions_reading_secrets, \
                 CAST(SUM(violations) AS BIGINT) AS violations \
                 FROM session_days WHERE dim = 'user'",
            )
        } else {
            let mut count = Sql::new(
                "SELECT COUNT(*) AS sessions, COUNT(DISTINCT s.user_name) AS developers, \
                 CAST(SUM(s.bytes_out) AS BIGINT) AS bytes_out, \
                 CAST(SUM(s.model_bytes_out) AS BIGINT) AS model_bytes_out, \
                 CAST(SUM(s.secrets_read) AS BIGINT) AS secrets_read, \
                 CAST(SUM(CASE WHEN s.secrets_read > 0 THEN 1 ELSE 0 END) AS BIGINT) \
                   AS sessions_reading_secrets, \
                 CAST(SUM(s.violations) AS BIGINT) AS violations FROM sessions s WHERE 1 = 1",
            );
            q.filter(&mut count);
            count
        };
        let count = async {
            let row = count
                .query()
                .fetch_one(self.pool())
                .await
                .map_err(e("count sessions"))?;
            let n = |c: &str| -> Result<i64, sqlx::Error> {
                Ok(row.try_get::<Option<i64>, _>(c)?.unwrap_or(0))
            };
            (|| {
                Ok::<_, sqlx::Error>(ListTotals {
                    sessions: n("sessions")?,
                    developers: n("developers")?,
                    bytes_out: n("bytes_out")?,
                    model_bytes_out: n("model_bytes_out")?,
                    secrets_read: n("secrets_read")?,
                    sessions_reading_secrets: n("sessions_reading_secrets")?,
                    violations: n("violations")?,
                })
            })()
            .map_err(e("count sessions"))
        };

        let per_page = q.per_page.clamp(1, 500);
        let page = q.page.max(1);
        let mut list = Sql::new("SELECT ");
        list.push(SESSION_COLUMNS)
            .push(" FROM sessions s WHERE 1 = 1");
        q.filter(&mut list);
        // The tie-breakers go the sort's way: the newest-first list is then one
        // backward walk of the (started_ms, host, session_uid) index.
        let direction = if q.descending { " DESC" } else { " ASC" };
        list.push(" ORDER BY ")
            .push(q.sort.column())
            .push(direction)
            .push(", s.host")
            .push(direction)
            .push(", s.session_uid")
            .push(direction)
            .push(" LIMIT ")
            .arg(Arg::Int(i64::from(per_page)))
            .push(" OFFSET ")
            .arg(Arg::Int(i64::from(page - 1) * i64::from(per_page)));
        let sessions = fetch_rows(self.pool(), list, "list sessions", session_row);
        let (totals, sessions) = tokio::try_join!(count, sessions)?;
        Ok(SessionPage {
            total: totals.sessions,
            totals,
            page,
            per_page,
            sessions,
        })
    }

    /// The first `max` sessions `q` selects, in its order (a CSV export).
    pub async fn sessions_list(&self, q: &Query, max: u32) -> Result<Vec<SessionRow>, StoreError> {
        let mut list = Sql::new("SELECT ");
        list.push(SESSION_COLUMNS)
            .push(" FROM sessions s WHERE 1 = 1");
        q.filter(&mut list);
        let direction = if q.descending { " DESC" } else { " ASC" };
        list.push(" ORDER BY ")
            .push(q.sort.column())
            .push(direction)
            .push(", s.host")
            .push(direction)
            .push(", s.session_uid")
            .push(direction)
            .push(" LIMIT ")
            .arg(Arg::Int(i64::from(max)));
        fetch_rows(self.pool(), list, "list sessions", session_row).await
    }

    /// The session `id` (its uid, or its 16-digit id) on `host` (any host when
    /// `None`: the most recently updated).
    pub async fn session(
        &self,
        id: &str,
        host: Option<&str>,
    ) -> Result<Option<SessionDetail>, StoreError> {
        let e = StoreError::query;
        let mut q = Sql::new("SELECT ");
        q.push(SESSION_COLUMNS)
            .push(", s.uid, s.repo_commit, s.workspace, s.conversation_id, s.seq, s.summary FROM sessions s WHERE (s.session_uid = ")
            .arg(Arg::Text(id.to_owned()))
            .push(" OR s.session_id = ")
            .arg(Arg::Text(id.to_owned()))
            .push(")");
        if let Some(h) = host {
            q.push(" AND s.host = ").arg(Arg::Text(h.to_owned()));
        }
        q.push(" ORDER BY s.updated_ms DESC, s.host LIMIT 20");
        let rows = q
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(e("find a session"))?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let session = session_row(r).map_err(e("read a session"))?;
        let other_hosts = rows
            .iter()
            .skip(1)
            .filter_map(|r| r.try_get::<String, _>("host").ok())
            .collect();
        let summary: String = r.try_get("summary").map_err(e("read a session"))?;
        // Stored only once it parsed: a failure here is a damaged row.
        let report: Report = serde_json::from_str(&summary).unwrap_or_default();

        let mut ev = Sql::new("SELECT ts_ms, kind, rule, outcome, text FROM events WHERE host = ");
        ev.arg(Arg::Text(session.host.clone()))
            .push(" AND session_uid = ")
            .arg(Arg::Text(session.session_uid.clone()))
            .push(" ORDER BY ts_ms, record_id LIMIT 500");
        let events = ev
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(e("list a session's events"))?
            .iter()
            .map(|r| {
                Ok(Event {
                    ts_ms: r.try_get("ts_ms")?,
                    kind: r.try_get("kind")?,
                    rule: r.try_get("rule")?,
                    outcome: r.try_get("outcome")?,
                    text: r.try_get("text")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(e("read events"))?;

        let mut fl = Sql::new("SELECT ts_ms, event FROM events WHERE host = ");
        fl.arg(Arg::Text(session.host.clone()))
            .push(" AND session_uid = ")
            .arg(Arg::Text(session.session_uid.clone()))
            .push(" AND kind = 'flow' ORDER BY ts_ms, record_id LIMIT 10000");
        let flows = fl
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(e("list a session's flows"))?
            .iter()
            .filter_map(|r| {
                let ts_ms: i64 = r.try_get("ts_ms").ok()?;
                let event: String = r.try_get("event").ok()?;
                let v: serde_json::Value = serde_json::from_str(&event).ok()?;
                Some(Flow {
                    ts_ms,
                    flow_id: v
                        .get("flow_id")
                        .and_then(|f| f.as_str())
                        .unwrap_or("")
                        .to_owned(),
                    bytes_out: v
                        .get("bytes_out")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0),
                })
            })
            .collect();

        let detail = (|| -> Result<SessionDetail, sqlx::Error> {
            Ok(SessionDetail {
                uid: r.try_get("uid")?,
                repo_commit: r.try_get("repo_commit")?,
                workspace: r.try_get("workspace")?,
                conversation_id: r.try_get("conversation_id")?,
                summary_seq: r.try_get("seq")?,
                session,
                report,
                events,
                flows,
                other_hosts,
            })
        })()
        .map_err(e("read a session"))?;
        Ok(Some(detail))
    }
}

impl Store {
    /// The one row of `sql`, read by `read`.
    async fn fetch_one<T>(
        &self,
        sql: Sql,
        what: &'static str,
        read: impl FnOnce(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let row = sql
            .query()
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::query(what))?;
        read(&row).map_err(StoreError::query(what))
    }
}

mod hosts;
mod lists;
mod overview;
mod packages;
mod violations;
pub use hosts::{EXPECTED_TIERS, Host, HostPage, version_key};
use hosts::{HOST_COLUMNS, HOSTS_FROM, host_row};
pub use lists::{Dim, DimPage, DimRow, DimSort, Suggestions, Window};
pub use overview::{Agent, Day, HostsSummary, Overview, Repository, Totals};
pub use packages::{INVENTORY_MAX, InventoryRow, NAMES_MAX, NAMES_SLACK_MS};
pub use violations::{Cursor, ViolationRecord};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like("Acme/App"), "%acme/app%");
        assert_eq!(like("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
