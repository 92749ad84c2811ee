//! Whole lists of the rollup's names, paged: developers, destinations,
//! repositories, agents, hosts, rules and outcomes, each over a window of days with
//! the window before it for the trend, and what the whole list adds up to.
//!
//! One query shape serves every list: `session_days` rows of one dimension, of the
//! window and the one before, grouped by name (a few rows per name and day, not
//! one per session). Columns are read by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{Row as _, any::AnyRow};

use super::{
    super::{
        Store, StoreError,
        sql::{Arg, Sql},
    },
    DAY_MS,
};

/// A list the rollup keeps (its `dim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// Developers (the session's user; `` none).
    Developers,
    /// Destinations (`<class>/<name or address>`), split by developer.
    Destinations,
    /// Repository URLs, split by developer.
    Repositories,
    /// Agents, split by developer.
    Agents,
    Hosts,
    /// Violations by rule (of their own day).
    Rules,
    /// Violations by outcome.
    Outcomes,
}

impl Dim {
    fn key(self) -> &'static str {
        match self {
            Self::Developers => "user",
            Self::Destinations => "dest",
            Self::Repositories => "repo",
            Self::Agents => "agent",
            Self::Hosts => "host",
            Self::Rules => "rule",
            Self::Outcomes => "outcome",
        }
    }

    /// Whether its rows count violations rather than sessions.
    pub fn counts_violations(self) -> bool {
        matches!(self, Self::Rules | Self::Outcomes)
    }
}

/// What a list is sorted by (always descending; the name breaks ties).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum DimSort {
    #[default]
    #[strum(to_string = "sessions", serialize = "count")]
    Sessions,
    Bytes,
    #[strum(serialize = "model")]
    ModelBytes,
    #[strum(to_string = "other", serialize = "elsewhere")]
    OtherBytes,
    Secrets,
    Violations,
    Change,
    Name,
    Last,
}

impl DimSort {
    /// From the `sort` parameter.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Sessions => "sessions DESC, name",
            Self::Bytes => "bytes_out DESC, name",
            Self::ModelBytes => "model_bytes_out DESC, name",
            Self::OtherBytes => "(bytes_out - model_bytes_out) DESC, name",
            Self::Secrets => "secrets_read DESC, name",
            Self::Violations => "violations DESC, name",
            Self::Change => "(sessions - prev_sessions) DESC, name",
            Self::Name => "name",
            Self::Last => "last_ms DESC, name",
        }
    }
}

/// A window of whole UTC days ending today, and the same length before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub days: u32,
    pub now_ms: i64,
    /// The first day's midnight (UTC).
    pub since_ms: i64,
    /// The window before: from here to `since_ms`.
    pub prev_since_ms: i64,
}

impl Window {
    /// The last `days` days at `now_ms` (today included), as the overview counts
    /// them.
    pub fn last(days: u32, now_ms: i64) -> Self {
        let days = days.max(1);
        let since_ms = (now_ms / DAY_MS - i64::from(days) + 1) * DAY_MS;
        Self {
            days,
            now_ms,
            since_ms,
            prev_since_ms: since_ms - i64::from(days) * DAY_MS,
        }
    }

    /// The window's first day, `YYYY-MM-DD` (the sessions list's `from`).
    pub fn from_date(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.since_ms)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    }
}

/// One name of a list: its window, and the window before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimRow {
    pub name: String,
    /// Sessions (violations, for rules and outcomes) in the window.
    pub sessions: i64,
    /// The same in the window before.
    pub prev_sessions: i64,
    /// Distinct developers (lists split by developer; 1 for a developer).
    pub developers: i64,
    pub sessions_reading_secrets: i64,
    pub secrets_read: i64,
    pub violations: i64,
    pub bytes_out: i64,
    pub model_bytes_out: i64,
    pub duration_ms: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Per day of the window (sessions, or violations), oldest first; filled for
    /// the rows of a page that asks for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_day: Vec<i64>,
}

impl DimRow {
    /// Bytes to everything but model APIs.
    pub fn other_bytes_out(&self) -> i64 {
        (self.bytes_out - self.model_bytes_out).max(0)
    }

    /// A destination's class and name (`model`, `api.openai.com`).
    pub fn class_and_dest(&self) -> (&str, &str) {
        self.name.split_once('/').unwrap_or(("other", &self.name))
    }

    /// The change against the window before, for people: `+12`, `−3`, `new`.
    pub fn change(&self) -> String {
        match (self.prev_sessions, self.sessions - self.prev_sessions) {
            (0, d) if d > 0 => "new".to_owned(),
            (_, 0) => "=".to_owned(),
            (_, d) if d > 0 => format!("+{d}"),
            (_, d) => format!("−{}", -d),
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimPage {
    pub dim: Dim,
    pub window: Window,
    /// Names with something in the window.
    pub total: i64,
    /// The whole list's sums (developers: distinct over it).
    pub totals: DimRow,
    pub page: u32,
    pub per_page: u32,
    pub sort: DimSort,
    pub rows: Vec<DimRow>,
}

fn n(r: &AnyRow, c: &str) -> Result<i64, sqlx::Error> {
    Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0))
}

fn dim_row(r: &AnyRow) -> Result<DimRow, sqlx::Error> {
    Ok(DimRow {
        name: r.try_get("name")?,
        sessions: n(r, "sessions")?,
        prev_sessions: n(r, "prev_sessions")?,
        developers: n(r, "developers")?,
        sessions_reading_secrets: n(r, "sessions_reading_secrets")?,
        secrets_read: n(r, "secrets_read")?,
        violations: n(r, "violations")?,
        bytes_out: n(r, "bytes_out")?,
        model_bytes_out: n(r, "model_bytes_out")?,
        duration_ms: n(r, "duration_ms")?,
        first_ms: n(r, "first_ms")?,
        last_ms: n(r, "last_ms")?,
        per_day: Vec::new(),
    })
}

/// The sums of the window (`CASE` on the day) and the window before.
fn sums(sql: &mut Sql, since_day: i64) {
    let this = |sql: &mut Sql, column: &'static str, alias: &'static str| {
        sql.push("CAST(SUM(CASE WHEN day >= ")
            .arg(Arg::Int(since_day))
            .push(" THEN ")
            .push(column)
            .push(" ELSE 0 END) AS BIGINT) AS ")
            .push(alias);
    };
    this(sql, "sessions", "sessions");
    sql.push(", CAST(SUM(CASE WHEN day < ")
        .arg(Arg::Int(since_day))
        .push(" THEN sessions ELSE 0 END) AS BIGINT) AS prev_sessions, ");
    sql.push("COUNT(DISTINCT CASE WHEN day >= ")
        .arg(Arg::Int(since_day))
        .push(" AND sessions > 0 THEN NULLIF(user_name, '') END) AS developers, ");
    for (i, c) in [
        "sessions_reading_secrets",
        "secrets_read",
        "violations",
        "bytes_out",
        "model_bytes_out",
        "duration_ms",
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            sql.push(", ");
        }
        this(sql, c, c);
    }
    sql.push(", MIN(CASE WHEN day >= ")
        .arg(Arg::Int(since_day))
        .push(" AND sessions > 0 THEN first_ms END) AS first_ms, MAX(CASE WHEN day >= ")
        .arg(Arg::Int(since_day))
        .push(" AND sessions > 0 THEN last_ms END) AS last_ms");
}

impl Store {
    /// One page of `dim` over `window`, sorted by `sort`; with `per_day`, each
    /// row's days too.
    pub async fn dimension(
        &self,
        dim: Dim,
        window: Window,
        sort: DimSort,
        page: u32,
        per_page: u32,
        per_day: bool,
    ) -> Result<DimPage, StoreError> {
        let e = StoreError::query;
        let since_day = window.since_ms / DAY_MS;
        let prev_day = window.prev_since_ms / DAY_MS;
        let per_page = per_page.clamp(1, 1000);
        let page = page.max(1);

        // Sorted outside the grouping: PostgreSQL sorts by an expression of output
        // columns only from a subquery.
        let mut list = Sql::new("SELECT * FROM (SELECT name, ");
        sums(&mut list, since_day);
        list.push(" FROM session_days WHERE dim = ")
            .arg(Arg::Text(dim.key().to_owned()))
            .push(" AND day >= ")
            .arg(Arg::Int(prev_day))
            .push(" GROUP BY name HAVING SUM(CASE WHEN day >= ")
            .arg(Arg::Int(since_day))
            .push(" THEN sessions ELSE 0 END) > 0) t ORDER BY ")
            .push(sort.order_by())
            .push(" LIMIT ")
            .arg(Arg::Int(i64::from(per_page)))
            .push(" OFFSET ")
            .arg(Arg::Int(i64::from(page - 1) * i64::from(per_page)));
        let rows = async {
            list.query()
                .fetch_all(self.pool())
                .await
                .map_err(e("list a dimension"))?
                .iter()
                .map(dim_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(e("read a dimension"))
        };

        // The whole list: its names, and its sums.
        let mut all = Sql::new("SELECT '' AS name, COUNT(DISTINCT CASE WHEN day >= ");
        all.arg(Arg::Int(since_day))
            .push(" AND sessions > 0 THEN name END) AS names, ");
        sums(&mut all, since_day);
        all.push(" FROM session_days WHERE dim = ")
            .arg(Arg::Text(dim.key().to_owned()))
            .push(" AND day >= ")
            .arg(Arg::Int(prev_day));
        let totals = async {
            let r = all
                .query()
                .fetch_one(self.pool())
                .await
                .map_err(e("sum a dimension"))?;
            let names = n(&r, "names").map_err(e("sum a dimension"))?;
            let mut totals = dim_row(&r).map_err(e("sum a dimension"))?;
            if dim == Dim::Developers {
                totals.developers = names;
            }
            Ok::<_, StoreError>((names, totals))
        };
        let (mut rows, (total, totals)) = tokio::try_join!(rows, totals)?;
        if dim == Dim::Developers {
            for r in &mut rows {
                r.developers = i64::from(!r.name.is_empty());
            }
        }
        if per_day && !rows.is_empty() {
            let days = self.per_day(dim, window, &rows).await?;
            for r in &mut rows {
                if let Some(d) = days.get(&r.name) {
                    r.per_day.clone_from(d);
                }
            }
        }
        Ok(DimPage {
            dim,
            window,
            total,
            totals,
            page,
            per_page,
            sort,
            rows,
        })
    }

    /// Each row's count per day of the window, oldest first.
    async fn per_day(
        &self,
        dim: Dim,
        window: Window,
        rows: &[DimRow],
    ) -> Result<BTreeMap<String, Vec<i64>>, StoreError> {
        let since_day = window.since_ms / DAY_MS;
        let days = usize::try_from(window.days).unwrap_or(1);
        let mut q = Sql::new(
            "SELECT name, day, CAST(SUM(sessions) AS BIGINT) AS sessions FROM session_days \
             WHERE dim = ",
        );
        q.arg(Arg::Text(dim.key().to_owned()))
            .push(" AND day >= ")
            .arg(Arg::Int(since_day))
            .push(" AND name IN ")
            .tuple(rows.iter().map(|r| Arg::Text(r.name.clone())))
            .push(" GROUP BY name, day");
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in q
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("count a dimension per day"))?
        {
            let (name, day, count) = (|| {
                Ok::<_, sqlx::Error>((
                    r.try_get::<String, _>("name")?,
                    r.try_get::<i64, _>("day")?,
                    n(&r, "sessions")?,
                ))
            })()
            .map_err(StoreError::query("count a dimension per day"))?;
            let series = out.entry(name).or_insert_with(|| vec![0; days]);
            if let Some(slot) = usize::try_from(day - since_day)
                .ok()
                .and_then(|i| series.get_mut(i))
            {
                *slot += count;
            }
        }
        Ok(out)
    }

    /// Names of `dim` seen in the last `days` (most sessions first, at most
    /// `limit`): the filters' suggestions.
    pub async fn suggestions(
        &self,
        dim: Dim,
        window: Window,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut q = Sql::new("SELECT name FROM session_days WHERE dim = ");
        q.arg(Arg::Text(dim.key().to_owned()))
            .push(" AND day >= ")
            .arg(Arg::Int(window.since_ms / DAY_MS))
            .push(" AND sessions > 0 AND name <> '' GROUP BY name ORDER BY SUM(sessions) DESC, name LIMIT ")
            .arg(Arg::Int(i64::from(limit)));
        q.query()
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("suggest filter values"))?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::query("suggest filter values"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_whole_days_and_the_one_before() {
        let now = 20 * DAY_MS + 5_000;
        let w = Window::last(7, now);
        assert_eq!(w.since_ms, 14 * DAY_MS);
        assert_eq!(w.prev_since_ms, 7 * DAY_MS);
        assert_eq!(Window::last(1, now).since_ms, 20 * DAY_MS);
    }

    #[test]
    fn changes_read_as_people_say_them() {
        let row = |sessions, prev_sessions| DimRow {
            sessions,
            prev_sessions,
            ..DimRow::default()
        };
        assert_eq!(row(5, 0).change(), "new");
        assert_eq!(row(5, 5).change(), "=");
        assert_eq!(row(7, 5).change(), "+2");
        assert_eq!(row(1, 600).change(), "−599");
    }
}

/// What the dashboard's filters suggest: the rollup's names of the last 90 days.
#[derive(Debug, Default)]
pub struct Suggestions {
    pub users: Vec<String>,
    pub hosts: Vec<String>,
    pub agents: Vec<String>,
    pub repos: Vec<String>,
    pub rules: Vec<String>,
    pub dests: Vec<String>,
}
