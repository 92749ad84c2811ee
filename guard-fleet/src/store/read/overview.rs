//! The overview page: the window's totals, its days, repositories, agents,
//! violations and the hosts in short, each one query, awaited together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::{
    Count, HOST_COLUMNS, HOSTS_FROM, Host, SESSION_COLUMNS, SessionRow, Window, count_row,
    fetch_rows, host_row, int, session_row,
};
use crate::store::{
    DAY_MS, Store, StoreError,
    sql::{Arg, Sql},
};

/// One day of the fleet (UTC).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    /// The day's start, unix ms.
    pub day_ms: i64,
    pub sessions: i64,
    /// Distinct users who ran a session.
    pub developers: i64,
    pub model_bytes_out: i64,
    pub other_bytes_out: i64,
    pub violations: i64,
}

/// A repository agents worked in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub url: String,
    pub sessions: i64,
    pub developers: i64,
    pub model_bytes_out: i64,
    /// Bytes to everything but model APIs.
    #[serde(default)]
    pub other_bytes_out: i64,
    pub last_ms: i64,
}

/// An agent and who uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub agent: String,
    pub sessions: i64,
    pub developers: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub duration_ms: i64,
}

/// Sums over the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub sessions: i64,
    pub developers: i64,
    pub hosts_with_sessions: i64,
    pub repositories: i64,
    pub secrets_read: i64,
    pub sessions_reading_secrets: i64,
    pub violations: i64,
    pub bytes_out: i64,
    pub model_bytes_out: i64,
}

/// The hosts, in short.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsSummary {
    pub total: i64,
    pub stale_count: i64,
    /// Hosts that stopped reporting, most recently heard first (at most 50).
    pub stale: Vec<Host>,
    /// Hosts by guard version.
    pub versions: Vec<Count>,
    /// Hosts by policy mode.
    pub modes: Vec<Count>,
}

/// The overview page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub now_ms: i64,
    pub since_ms: i64,
    pub days: u32,
    pub running_count: i64,
    /// Running now (at most 20, newest first).
    pub running: Vec<SessionRow>,
    pub totals: Totals,
    /// Every day of the window, empty days included.
    pub per_day: Vec<Day>,
    pub repositories: Vec<Repository>,
    pub agents: Vec<Agent>,
    pub violations_by_rule: Vec<Count>,
    pub violations_by_outcome: Vec<Count>,
    /// Recent sessions that read secrets (at most 10).
    pub secret_sessions: Vec<SessionRow>,
    pub hosts: HostsSummary,
}

/// The rollup's `day` from which `window` counts.
const fn since_day(window: Window) -> Arg {
    Arg::Int(window.since_ms / DAY_MS)
}

impl Store {
    /// The overview of the last `days` days, at `now_ms`; a host with no batch since
    /// `stale_before` has stopped reporting.
    ///
    /// Each panel is a query of its own. They are independent: they run at once,
    /// each on a connection of its own, so the page waits for the slowest rather
    /// than for the sum. The window's numbers come from the rollup (`session_days`:
    /// a few rows per developer and day, kept with the sessions), not from every
    /// session in it.
    pub async fn overview(
        &self,
        days: u32,
        now_ms: i64,
        stale_before: i64,
    ) -> Result<Overview, StoreError> {
        let window = Window::last(days, now_ms);
        let (
            running,
            running_count,
            totals,
            per_day,
            repositories,
            agents,
            violations_by_rule,
            violations_by_outcome,
            secret_sessions,
            hosts,
        ) = tokio::try_join!(
            self.running(stale_before),
            self.running_count(stale_before),
            self.totals(window),
            self.overview_days(window),
            self.repositories(window),
            self.agents(window),
            self.counts_of("rule", window, " LIMIT 12", "count violations by rule"),
            self.counts_of("outcome", window, "", "count violations by outcome"),
            self.secret_sessions(window),
            self.hosts_summary(stale_before),
        )?;
        Ok(Overview {
            now_ms,
            since_ms: window.since_ms,
            days,
            running_count,
            running,
            totals,
            per_day,
            repositories,
            agents,
            violations_by_rule,
            violations_by_outcome,
            secret_sessions,
            hosts,
        })
    }

    /// Running now, newest first (at most 20).
    async fn running(&self, stale_before: i64) -> Result<Vec<SessionRow>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(SESSION_COLUMNS)
            .push(" FROM sessions s WHERE s.state = 'running' AND s.updated_ms >= ")
            .arg(Arg::Int(stale_before))
            .push(" ORDER BY s.started_ms DESC LIMIT 20");
        fetch_rows(self.pool(), sql, "list running sessions", session_row).await
    }

    async fn running_count(&self, stale_before: i64) -> Result<i64, StoreError> {
        let mut sql = Sql::new(
            "SELECT COUNT(*) AS running FROM sessions s \
             WHERE s.state = 'running' AND s.updated_ms >= ",
        );
        sql.arg(Arg::Int(stale_before));
        self.fetch_one(sql, "count running sessions", |r| int(r, "running"))
            .await
    }

    async fn totals(&self, window: Window) -> Result<Totals, StoreError> {
        let since_day = since_day(window);
        let mut sql = Sql::new(
            "SELECT CAST(SUM(sessions) AS BIGINT) AS sessions, \
             COUNT(DISTINCT NULLIF(name, '')) AS developers, \
             (SELECT COUNT(DISTINCT name) FROM session_days WHERE dim = 'host' AND sessions > 0 \
               AND day >= ",
        );
        sql.arg(since_day.clone())
            .push(
                ") AS hosts_with_sessions, (SELECT COUNT(DISTINCT name) FROM session_days \
                 WHERE dim = 'repo' AND sessions > 0 AND day >= ",
            )
            .arg(since_day.clone())
            .push(
                ") AS repositories, CAST(SUM(secrets_read) AS BIGINT) AS secrets_read, \
                 CAST(SUM(sessions_reading_secrets) AS BIGINT) AS sessions_reading_secrets, \
                 CAST(SUM(violations) AS BIGINT) AS violations, \
                 CAST(SUM(bytes_out) AS BIGINT) AS bytes_out, \
                 CAST(SUM(model_bytes_out) AS BIGINT) AS model_bytes_out FROM session_days \
                 WHERE dim = 'user' AND sessions > 0 AND day >= ",
            )
            .arg(since_day);
        self.fetch_one(sql, "sum sessions", |r| {
            Ok(Totals {
                sessions: int(r, "sessions")?,
                developers: int(r, "developers")?,
                hosts_with_sessions: int(r, "hosts_with_sessions")?,
                repositories: int(r, "repositories")?,
                secrets_read: int(r, "secrets_read")?,
                sessions_reading_secrets: int(r, "sessions_reading_secrets")?,
                violations: int(r, "violations")?,
                bytes_out: int(r, "bytes_out")?,
                model_bytes_out: int(r, "model_bytes_out")?,
            })
        })
        .await
    }

    /// Every day of the window, those without sessions too.
    async fn overview_days(&self, window: Window) -> Result<Vec<Day>, StoreError> {
        let mut sql = Sql::new(
            "SELECT day, CAST(SUM(sessions) AS BIGINT) AS sessions, \
             COUNT(DISTINCT NULLIF(name, '')) AS developers, \
             CAST(SUM(model_bytes_out) AS BIGINT) AS model_bytes_out, \
             CAST(SUM(bytes_out - model_bytes_out) AS BIGINT) AS other_bytes_out, \
             CAST(SUM(violations) AS BIGINT) AS violations FROM session_days \
             WHERE dim = 'user' AND sessions > 0 AND day >= ",
        );
        sql.arg(since_day(window)).push(" GROUP BY day ORDER BY 1");
        let rows = fetch_rows(self.pool(), sql, "count sessions per day", |r| {
            Ok(Day {
                day_ms: int(r, "day")? * DAY_MS,
                sessions: int(r, "sessions")?,
                developers: int(r, "developers")?,
                model_bytes_out: int(r, "model_bytes_out")?,
                other_bytes_out: int(r, "other_bytes_out")?.max(0),
                violations: int(r, "violations")?,
            })
        })
        .await?;
        let mut by_day: BTreeMap<i64, Day> = rows.into_iter().map(|d| (d.day_ms, d)).collect();
        Ok((window.since_ms / DAY_MS..=window.now_ms / DAY_MS)
            .map(|day| {
                by_day.remove(&(day * DAY_MS)).unwrap_or(Day {
                    day_ms: day * DAY_MS,
                    ..Day::default()
                })
            })
            .collect())
    }

    /// The ten repositories with the most sessions.
    async fn repositories(&self, window: Window) -> Result<Vec<Repository>, StoreError> {
        let mut sql = Sql::new(
            "SELECT name, CAST(SUM(sessions) AS BIGINT) AS sessions, \
             COUNT(DISTINCT NULLIF(user_name, '')) AS developers, \
             CAST(SUM(model_bytes_out) AS BIGINT) AS model_bytes_out, \
             MAX(last_ms) AS last_ms, \
             CAST(SUM(bytes_out - model_bytes_out) AS BIGINT) AS other_bytes_out \
             FROM session_days WHERE dim = 'repo' AND sessions > 0 AND day >= ",
        );
        sql.arg(since_day(window))
            .push(" GROUP BY name ORDER BY 2 DESC, 1 LIMIT 10");
        fetch_rows(self.pool(), sql, "list repositories", |r| {
            Ok(Repository {
                url: r.try_get("name")?,
                sessions: int(r, "sessions")?,
                developers: int(r, "developers")?,
                model_bytes_out: int(r, "model_bytes_out")?,
                last_ms: int(r, "last_ms")?,
                other_bytes_out: int(r, "other_bytes_out")?.max(0),
            })
        })
        .await
    }

    /// The ten agents with the most sessions.
    async fn agents(&self, window: Window) -> Result<Vec<Agent>, StoreError> {
        let mut sql = Sql::new(
            "SELECT name, CAST(SUM(sessions) AS BIGINT) AS sessions, \
             COUNT(DISTINCT NULLIF(user_name, '')) AS developers, MIN(first_ms) AS first_ms, \
             MAX(last_ms) AS last_ms, CAST(SUM(duration_ms) AS BIGINT) AS duration_ms \
             FROM session_days WHERE dim = 'agent' AND sessions > 0 AND day >= ",
        );
        sql.arg(since_day(window))
            .push(" GROUP BY name ORDER BY 2 DESC, 1 LIMIT 10");
        fetch_rows(self.pool(), sql, "list agents", |r| {
            Ok(Agent {
                agent: r.try_get("name")?,
                sessions: int(r, "sessions")?,
                developers: int(r, "developers")?,
                first_ms: int(r, "first_ms")?,
                last_ms: int(r, "last_ms")?,
                duration_ms: int(r, "duration_ms")?,
            })
        })
        .await
    }

    /// The rollup's names of `dim` (`rule`, `outcome`) by their sessions in the
    /// window, most first; `limit` ends the query.
    async fn counts_of(
        &self,
        dim: &'static str,
        window: Window,
        limit: &'static str,
        what: &'static str,
    ) -> Result<Vec<Count>, StoreError> {
        let mut sql = Sql::new(
            "SELECT name AS key, CAST(SUM(sessions) AS BIGINT) AS count FROM session_days \
             WHERE dim = ",
        );
        sql.arg(Arg::Text(dim.to_owned()))
            .push(" AND sessions > 0 AND day >= ")
            .arg(since_day(window))
            .push(" GROUP BY name ORDER BY 2 DESC, 1")
            .push(limit);
        fetch_rows(self.pool(), sql, what, count_row).await
    }

    /// Recent sessions that read secrets (at most 10).
    async fn secret_sessions(&self, window: Window) -> Result<Vec<SessionRow>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(SESSION_COLUMNS)
            .push(" FROM sessions s WHERE s.secrets_read > 0 AND s.started_ms >= ")
            .arg(Arg::Int(window.since_ms))
            .push(" ORDER BY s.started_ms DESC LIMIT 10");
        fetch_rows(
            self.pool(),
            sql,
            "list sessions that read secrets",
            session_row,
        )
        .await
    }

    /// The hosts in short: how many, those that stopped reporting, and the counts
    /// by guard version and by policy mode.
    async fn hosts_summary(&self, stale_before: i64) -> Result<HostsSummary, StoreError> {
        let mut stale = Sql::new("SELECT ");
        stale
            .push(HOST_COLUMNS)
            .push(&HOSTS_FROM)
            .push(" WHERE h.last_seen_ms < ")
            .arg(Arg::Int(stale_before))
            .push(" ORDER BY h.last_seen_ms DESC LIMIT 50");
        let by = |column: &'static str, what: &'static str| {
            let mut sql = Sql::new("SELECT COALESCE(");
            sql.push(column)
                .push(", '?') AS key, COUNT(*) AS count FROM hosts GROUP BY COALESCE(")
                .push(column)
                .push(", '?') ORDER BY 2 DESC, 1");
            fetch_rows(self.pool(), sql, what, count_row)
        };
        let ((total, stale_count), stale, versions, modes) = tokio::try_join!(
            self.host_counts(stale_before),
            fetch_rows(self.pool(), stale, "list stale hosts", |r| {
                host_row(r, stale_before)
            }),
            by("guard_version", "count hosts by version"),
            by("policy_mode", "count hosts by mode"),
        )?;
        Ok(HostsSummary {
            total,
            stale_count,
            stale,
            versions,
            modes,
        })
    }
}
