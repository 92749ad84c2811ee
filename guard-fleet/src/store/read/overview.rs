//! The overview page: the window's totals, its days, repositories, agents,
//! violations and the hosts in short, each one query, awaited together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::{
    Count, HOST_COLUMNS, HOSTS_FROM, Host, SESSION_COLUMNS, SessionRow, count_row, fetch_rows,
    host_row, int, session_row,
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

impl Store {
    /// The overview of the last `days` days, at `now_ms`; a host with no batch since
    /// `stale_before` has stopped reporting.
    #[expect(
        clippy::too_many_lines,
        reason = "thirteen independent queries awaited together, so the page waits for the slowest"
    )]
    pub async fn overview(
        &self,
        days: u32,
        now_ms: i64,
        stale_before: i64,
    ) -> Result<Overview, StoreError> {
        let pool = self.pool();
        let e = StoreError::query;
        let first_day = (now_ms / DAY_MS - i64::from(days.max(1)) + 1) * DAY_MS;
        let since = Arg::Int(first_day);
        let since_day = Arg::Int(first_day / DAY_MS);
        // The questions are independent: they run at once, each on a connection
        // of its own, so the page waits for the slowest rather than for the sum.
        let counts = |sql: Sql, what: &'static str| fetch_rows(pool, sql, what, count_row);

        let mut running = Sql::new("SELECT ");
        running
            .push(SESSION_COLUMNS)
            .push(" FROM sessions s WHERE s.state = 'running' AND s.updated_ms >= ")
            .arg(Arg::Int(stale_before))
            .push(" ORDER BY s.started_ms DESC LIMIT 20");
        let running = fetch_rows(pool, running, "list running sessions", session_row);

        let mut running_count = Sql::new(
            "SELECT COUNT(*) FROM sessions s WHERE s.state = 'running' AND s.updated_ms >= ",
        );
        running_count.arg(Arg::Int(stale_before));
        let running_count = async {
            let what = "count running sessions";
            int(
                &running_count
                    .query()
                    .fetch_one(pool)
                    .await
                    .map_err(e(what))?,
                0,
            )
            .map_err(e(what))
        };

        // The window's numbers come from the rollup (session_days: a few rows per
        // developer and day, kept with the sessions), not from every session in it.
        let mut totals = Sql::new(
            "SELECT CAST(SUM(sessions) AS BIGINT), COUNT(DISTINCT NULLIF(name, '')), \
             (SELECT COUNT(DISTINCT name) FROM session_days WHERE dim = 'host' AND sessions > 0 \
               AND day >= ",
        );
        totals
            .arg(since_day.clone())
            .push(
                "), (SELECT COUNT(DISTINCT name) FROM session_days WHERE dim = 'repo' \
                 AND sessions > 0 AND day >= ",
            )
            .arg(since_day.clone())
            .push(
                "), CAST(SUM(secrets_read) AS BIGINT), CAST(SUM(sessions_reading_secrets) AS BIGINT), \
                 CAST(SUM(violations) AS BIGINT), CAST(SUM(bytes_out) AS BIGINT), \
                 CAST(SUM(model_bytes_out) AS BIGINT) FROM session_days \
                 WHERE dim = 'user' AND sessions > 0 AND day >= ",
            )
            .arg(since_day.clone());
        let totals = async {
            let what = "sum sessions";
            let t = totals.query().fetch_one(pool).await.map_err(e(what))?;
            (|| -> Result<Totals, sqlx::Error> {
                Ok(Totals {
                    sessions: int(&t, 0)?,
                    developers: int(&t, 1)?,
                    hosts_with_sessions: int(&t, 2)?,
                    repositories: int(&t, 3)?,
                    secrets_read: int(&t, 4)?,
                    sessions_reading_secrets: int(&t, 5)?,
                    violations: int(&t, 6)?,
                    bytes_out: int(&t, 7)?,
                    model_bytes_out: int(&t, 8)?,
                })
            })()
            .map_err(e(what))
        };

        let mut per_day = Sql::new(
            "SELECT day, CAST(SUM(sessions) AS BIGINT), COUNT(DISTINCT NULLIF(name, '')), \
             CAST(SUM(model_bytes_out) AS BIGINT), CAST(SUM(bytes_out - model_bytes_out) AS BIGINT), \
             CAST(SUM(violations) AS BIGINT) FROM session_days \
             WHERE dim = 'user' AND sessions > 0 AND day >= ",
        );
        per_day
            .arg(since_day.clone())
            .push(" GROUP BY day ORDER BY 1");
        let per_day = async {
            let rows = fetch_rows(pool, per_day, "count sessions per day", |r| {
                Ok(Day {
                    day_ms: int(r, 0)? * DAY_MS,
                    sessions: int(r, 1)?,
                    developers: int(r, 2)?,
                    model_bytes_out: int(r, 3)?,
                    other_bytes_out: int(r, 4)?.max(0),
                    violations: int(r, 5)?,
                })
            })
            .await?;
            // Every day of the window, those without sessions too.
            let mut by_day: BTreeMap<i64, Day> = rows.into_iter().map(|d| (d.day_ms, d)).collect();
            Ok::<_, StoreError>(
                (first_day / DAY_MS..=now_ms / DAY_MS)
                    .map(|day| {
                        by_day.remove(&(day * DAY_MS)).unwrap_or(Day {
                            day_ms: day * DAY_MS,
                            ..Day::default()
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        };

        let mut repos = Sql::new(
            "SELECT name, CAST(SUM(sessions) AS BIGINT), COUNT(DISTINCT NULLIF(user_name, '')), \
             CAST(SUM(model_bytes_out) AS BIGINT), MAX(last_ms), \
             CAST(SUM(bytes_out - model_bytes_out) AS BIGINT) FROM session_days \
             WHERE dim = 'repo' AND sessions > 0 AND day >= ",
        );
        repos
            .arg(since_day.clone())
            .push(" GROUP BY name ORDER BY 2 DESC, 1 LIMIT 10");
        let repositories = fetch_rows(pool, repos, "list repositories", |r| {
            Ok(Repository {
                url: r.try_get(0)?,
                sessions: int(r, 1)?,
                developers: int(r, 2)?,
                model_bytes_out: int(r, 3)?,
                last_ms: int(r, 4)?,
                other_bytes_out: int(r, 5)?.max(0),
            })
        });

        let mut agents = Sql::new(
            "SELECT name, CAST(SUM(sessions) AS BIGINT), COUNT(DISTINCT NULLIF(user_name, '')), \
             MIN(first_ms), MAX(last_ms), CAST(SUM(duration_ms) AS BIGINT) FROM session_days \
             WHERE dim = 'agent' AND sessions > 0 AND day >= ",
        );
        agents
            .arg(since_day.clone())
            .push(" GROUP BY name ORDER BY 2 DESC, 1 LIMIT 10");
        let agents = fetch_rows(pool, agents, "list agents", |r| {
            Ok(Agent {
                agent: r.try_get(0)?,
                sessions: int(r, 1)?,
                developers: int(r, 2)?,
                first_ms: int(r, 3)?,
                last_ms: int(r, 4)?,
                duration_ms: int(r, 5)?,
            })
        });

        let mut by_rule = Sql::new(
            "SELECT name, CAST(SUM(sessions) AS BIGINT) FROM session_days \
             WHERE dim = 'rule' AND sessions > 0 AND day >= ",
        );
        by_rule
            .arg(since_day.clone())
            .push(" GROUP BY name ORDER BY 2 DESC, 1 LIMIT 12");
        let by_rule = counts(by_rule, "count violations by rule");
        let mut by_outcome = Sql::new(
            "SELECT name, CAST(SUM(sessions) AS BIGINT) FROM session_days \
             WHERE dim = 'outcome' AND sessions > 0 AND day >= ",
        );
        by_outcome
            .arg(since_day.clone())
            .push(" GROUP BY name ORDER BY 2 DESC, 1");
        let by_outcome = counts(by_outcome, "count violations by outcome");

        let mut secrets = Sql::new("SELECT ");
        secrets
            .push(SESSION_COLUMNS)
            .push(" FROM sessions s WHERE s.secrets_read > 0 AND s.started_ms >= ")
            .arg(since.clone())
            .push(" ORDER BY s.started_ms DESC LIMIT 10");
        let secrets = fetch_rows(
            pool,
            secrets,
            "list sessions that read secrets",
            session_row,
        );

        let mut host_counts = Sql::new("SELECT COUNT(*), CAST(SUM(CASE WHEN last_seen_ms < ");
        host_counts
            .arg(Arg::Int(stale_before))
            .push(" THEN 1 ELSE 0 END) AS BIGINT) FROM hosts");
        let host_counts = async {
            let what = "count hosts";
            let hc = host_counts.query().fetch_one(pool).await.map_err(e(what))?;
            Ok::<_, StoreError>((int(&hc, 0).map_err(e(what))?, int(&hc, 1).map_err(e(what))?))
        };
        let mut stale = Sql::new("SELECT ");
        stale
            .push(HOST_COLUMNS)
            .push(&HOSTS_FROM)
            .push(" WHERE h.last_seen_ms < ")
            .arg(Arg::Int(stale_before))
            .push(" ORDER BY h.last_seen_ms DESC LIMIT 50");
        let stale = fetch_rows(pool, stale, "list stale hosts", |r| {
            host_row(r, stale_before)
        });
        let versions = counts(
            Sql::new(
                "SELECT COALESCE(guard_version, '?'), COUNT(*) FROM hosts \
                 GROUP BY COALESCE(guard_version, '?') ORDER BY 2 DESC, 1",
            ),
            "count hosts by version",
        );
        let modes = counts(
            Sql::new(
                "SELECT COALESCE(policy_mode, '?'), COUNT(*) FROM hosts \
                 GROUP BY COALESCE(policy_mode, '?') ORDER BY 2 DESC, 1",
            ),
            "count hosts by mode",
        );

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
            (total, stale_count),
            stale,
            versions,
            modes,
        ) = tokio::try_join!(
            running,
            running_count,
            totals,
            per_day,
            repositories,
            agents,
            by_rule,
            by_outcome,
            secrets,
            host_counts,
            stale,
            versions,
            modes,
        )?;
        Ok(Overview {
            now_ms,
            since_ms: first_day,
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
            hosts: HostsSummary {
                total,
                stale_count,
                stale,
                versions,
                modes,
            },
        })
    }
}
