//! The pages' GET parameters (plain HTML forms, so everything works without
//! JavaScript), as the same strings for the pages, the API and the CLI, and their
//! checked form.

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::store::read::{DimSort, Query, Sort};

/// Sessions per page unless asked otherwise.
pub const PER_PAGE: u32 = 50;

/// A parameter that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("{name}: `{value}` is not a date (YYYY-MM-DD), a time (RFC 3339) or an age (7d, 12h)")]
    Time { name: &'static str, value: String },
    #[error("sort: `{0}` is not start, duration, bytes or violations")]
    Sort(String),
    #[error("order: `{0}` is not asc or desc")]
    Order(String),
    #[error("state: `{0}` is not running or ended")]
    State(String),
    #[error(
        "sort: `{0}` is not sessions, bytes, model, other, secrets, violations, change, name or last"
    )]
    ListSort(String),
    #[error("format: `{0}` is not html or csv")]
    Format(String),
    #[error("after: `{0}` is not a cursor of this API (a page's `next`)")]
    Cursor(String),
    #[error("format: `{0}` is not ocsf or json")]
    RecordFormat(String),
    #[error("{name}: `{value}` is not a number from 1 to {max}")]
    Number {
        name: &'static str,
        value: String,
        max: u32,
    },
}

/// The sessions table's parameters, as the query string carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// A destination's name (else address), exactly as the destinations page
    /// lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
    /// `csv`: the whole list as CSV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Whether a page's `format` asks for CSV (`html`, empty or absent: the page).
pub fn wants_csv(format: Option<&str>) -> Result<bool, ParamError> {
    match format.map(str::trim) {
        None | Some("" | "html") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ParamError::Format(other.chars().take(16).collect())),
    }
}

/// An empty form field is no filter.
fn set(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A point in time: `YYYY-MM-DD` (its midnight UTC, or the next one for an end),
/// RFC 3339, or an age before `now_ms` (`7d`, `12h`).
pub fn time(name: &'static str, value: &str, now_ms: i64, end: bool) -> Result<i64, ParamError> {
    let err = || ParamError::Time {
        name,
        value: value.chars().take(64).collect(),
    };
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let d = if end {
            d.succ_opt().ok_or_else(err)?
        } else {
            d
        };
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(err)?
            .and_utc()
            .timestamp_millis());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    let age = humantime::parse_duration(value).map_err(|_| err())?;
    Ok(now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
}

/// A number from 1 to `max`.
pub fn number(
    name: &'static str,
    value: Option<&str>,
    default: u32,
    max: u32,
) -> Result<u32, ParamError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ParamError::Number {
            name,
            value: value.chars().take(32).collect(),
            max,
        })
}

impl SessionParams {
    /// The checked query, at `now_ms`; `running_since`: when a running session's
    /// last summary must have come to count as running now.
    pub fn query(&self, now_ms: i64, running_since: i64) -> Result<Query, ParamError> {
        let sort = match set(&self.sort) {
            None => Sort::Start,
            Some(s) => Sort::parse(&s).ok_or(ParamError::Sort(s))?,
        };
        let descending = match set(&self.order).as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(o) => return Err(ParamError::Order(o.to_owned())),
        };
        let state = match set(&self.state) {
            None => None,
            Some(s) if s == "running" || s == "ended" => Some(s),
            Some(s) => return Err(ParamError::State(s)),
        };
        Ok(Query {
            from_ms: set(&self.from)
                .map(|v| time("from", &v, now_ms, false))
                .transpose()?,
            to_ms: set(&self.to)
                .map(|v| time("to", &v, now_ms, true))
                .transpose()?,
            user: set(&self.user),
            repo: set(&self.repo),
            host: set(&self.host),
            agent: set(&self.agent),
            rule: set(&self.rule),
            outcome: set(&self.outcome),
            state,
            dest: set(&self.dest),
            running_since: Some(running_since),
            sort,
            descending,
            page: number("page", self.page.as_deref(), 1, 1_000_000)?,
            per_page: number("per_page", self.per_page.as_deref(), PER_PAGE, 500)?,
        })
    }

    /// The query string of these parameters (empty ones left out).
    pub fn to_query_string(&self) -> String {
        let cleaned = Self {
            from: set(&self.from),
            to: set(&self.to),
            user: set(&self.user),
            repo: set(&self.repo),
            host: set(&self.host),
            agent: set(&self.agent),
            rule: set(&self.rule),
            outcome: set(&self.outcome),
            state: set(&self.state),
            dest: set(&self.dest),
            sort: set(&self.sort),
            order: set(&self.order),
            page: set(&self.page),
            per_page: set(&self.per_page),
            format: None,
        };
        serde_urlencoded::to_string(&cleaned).unwrap_or_default()
    }

    /// The same filters, on page `page`.
    pub fn on_page(&self, page: u32) -> String {
        let mut p = self.clone();
        p.page = Some(page.to_string());
        p.to_query_string()
    }

    /// The same filters sorted by `sort` (descending; ascending when it already was
    /// sorted so), from the first page.
    pub fn sorted_by(&self, sort: Sort) -> String {
        let mut p = self.clone();
        let current = set(&self.sort)
            .and_then(|s| Sort::parse(&s))
            .unwrap_or_default();
        let descending = set(&self.order).as_deref() != Some("asc");
        p.order = Some(
            if current == sort && descending {
                "asc"
            } else {
                "desc"
            }
            .to_owned(),
        );
        p.sort = Some(sort.as_str().to_owned());
        p.page = None;
        p.to_query_string()
    }
}

/// A list page's parameters (developers, destinations, repositories, agents,
/// rules).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl ListParams {
    /// (days, sort, page, per_page).
    pub fn checked(&self) -> Result<(u32, DimSort, u32, u32), ParamError> {
        let sort = match set(&self.sort) {
            None => DimSort::default(),
            Some(s) => DimSort::parse(&s).ok_or(ParamError::ListSort(s))?,
        };
        Ok((
            number("days", self.days.as_deref(), 30, 365)?,
            sort,
            number("page", self.page.as_deref(), 1, 1_000_000)?,
            number("per_page", self.per_page.as_deref(), PER_PAGE, 1000)?,
        ))
    }

    /// The same list on page `page` (or sorted by `sort`, from its first page).
    pub fn link(&self, page: Option<u32>, sort: Option<DimSort>) -> String {
        let mut p = self.clone();
        p.format = None;
        if let Some(page) = page {
            p.page = Some(page.to_string());
        }
        if let Some(sort) = sort {
            p.sort = Some(sort.as_str().to_owned());
            p.page = None;
        }
        serde_urlencoded::to_string(&p).unwrap_or_default()
    }
}

/// `/api/violations`'s parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ViolationParams {
    /// A page's `next`: the violations after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Without `after`: from this time (a date, RFC 3339, or an age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// `ocsf` (Detection Findings, the default) or `json` (as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// The overview's parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OverviewParams {
    #[serde(default)]
    pub days: Option<String>,
}

impl OverviewParams {
    /// The overview's window: `days` from 1 to 365, 30 unless asked.
    pub fn days(&self) -> Result<u32, ParamError> {
        number("days", self.days.as_deref(), 30, 365)
    }
}

/// The hosts page's parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct HostParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
    /// `1`: only hosts that stopped reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// `csv`: every host as CSV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A session page's parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SessionIdParams {
    /// Which host's session, when several share the uid.
    #[serde(default)]
    pub host: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_237_200_000;

    #[test]
    fn form_fields_become_a_query() {
        let p: SessionParams = serde_urlencoded::from_str(
            "from=2026-11-20&to=2026-11-20&user=alice&repo=&host=&sort=bytes&order=asc&page=2",
        )
        .expect("params");
        let q = p.query(NOW, 0).expect("query");
        assert_eq!(q.from_ms, Some(NOW - 86_400_000 - 5 * 3_600_000));
        assert_eq!(
            q.to_ms,
            Some(NOW - 5 * 3_600_000),
            "the end date is inclusive"
        );
        assert_eq!(q.user.as_deref(), Some("alice"));
        assert_eq!(q.repo, None, "an empty field is no filter");
        assert_eq!(
            (q.sort, q.descending, q.page, q.per_page),
            (Sort::Bytes, false, 2, PER_PAGE)
        );
        let age = SessionParams {
            from: Some("7d".into()),
            ..Default::default()
        };
        assert_eq!(
            age.query(NOW, 0).expect("age").from_ms,
            Some(NOW - 7 * 86_400_000)
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |p: SessionParams| p.query(NOW, 0).expect_err("bad").to_string();
        assert!(
            bad(SessionParams {
                from: Some("yesterday-ish".into()),
                ..Default::default()
            })
            .starts_with("from:")
        );
        assert!(
            bad(SessionParams {
                sort: Some("name".into()),
                ..Default::default()
            })
            .starts_with("sort:")
        );
        assert!(
            bad(SessionParams {
                page: Some("0".into()),
                ..Default::default()
            })
            .starts_with("page:")
        );
        assert!(
            bad(SessionParams {
                state: Some("x".into()),
                ..Default::default()
            })
            .starts_with("state:")
        );
    }

    #[test]
    fn links_keep_the_filters() {
        let p = SessionParams {
            user: Some("a b&c".into()),
            repo: Some(String::new()),
            sort: Some("bytes".into()),
            ..Default::default()
        };
        assert_eq!(p.on_page(3), "user=a+b%26c&sort=bytes&page=3");
        assert_eq!(
            p.sorted_by(Sort::Bytes),
            "user=a+b%26c&sort=bytes&order=asc"
        );
        assert_eq!(
            p.sorted_by(Sort::Duration),
            "user=a+b%26c&sort=duration&order=desc"
        );
    }
}
