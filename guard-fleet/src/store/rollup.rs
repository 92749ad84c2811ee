//! The overview's rollup (`session_days`, migrations/common/0002_dashboard_at_size.sql):
//! what sessions and violations add to each day, dimension and name.
//!
//! A transaction that changes sessions or violations gathers their changes here
//! (a session or violation stored adds itself, one replaced or deleted takes
//! itself away) and writes them last, as increments, in key order:
//!
//! - increments commute, so two replicas storing sessions of the same day at once
//!   both count (a value computed from a read could overwrite the other's);
//! - every transaction takes the rollup's rows after its other rows, in one order,
//!   so transactions wait for each other instead of deadlocking;
//! - a summary that changes none of the counted fields (a running session's next
//!   summary with the same numbers) writes no rollup row.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row as _, any::AnyRow};

use super::rows::SummaryRow;
use super::{
    DAY_MS,
    sql::{Arg, Sql},
};

/// Rows per multi-row upsert (13 values each).
const CHUNK: usize = 100;

/// The columns of `sessions` a session's contribution is read from, in
/// [`Contribution::of_row`]'s order.
pub(crate) const SESSION_COLUMNS: &str = "host, user_name, repo_url, agent, started_ms, \
    secrets_read, violations, bytes_out, model_bytes_out, duration_ms";

/// The columns of `violations` a violation's contribution is read from, by name, in
/// [`Rollup::violations_removed`].
pub(crate) const VIOLATION_COLUMNS: &str = "ts_ms, rule, outcome";

/// The columns of `session_destinations` a destination's contribution is read
/// from, by name, in [`Rollup::destinations_removed`].
pub(crate) const DESTINATION_COLUMNS: &str =
    "started_ms, dest, class, user_name, bytes_out, secrets_read, violations";

/// What one session's destination counts for: a session to it (with the
/// session's secrets read and violations), its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DestinationContribution<'a> {
    pub started_ms: i64,
    pub dest: &'a str,
    pub class: &'a str,
    pub user: &'a str,
    pub bytes_out: i64,
    pub secrets_read: i64,
    pub violations: i64,
}

/// What one stored session counts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Contribution {
    pub host: String,
    pub user: Option<String>,
    pub repo: Option<String>,
    pub agent: Option<String>,
    pub started_ms: i64,
    pub secrets_read: i64,
    pub violations: i64,
    pub bytes_out: i64,
    pub model_bytes_out: i64,
    pub duration_ms: i64,
}

impl Contribution {
    pub(crate) fn of_summary(s: &SummaryRow) -> Self {
        Self {
            host: s.host.clone(),
            user: s.user_name.clone(),
            repo: s.repo_url.clone(),
            agent: s.agent.clone(),
            started_ms: s.started_ms,
            secrets_read: s.secrets_read,
            violations: s.violations,
            bytes_out: s.bytes_out,
            model_bytes_out: s.model_bytes_out,
            duration_ms: s.duration_ms,
        }
    }

    /// From a row of [`SESSION_COLUMNS`], starting at column `at`.
    pub(crate) fn of_row(r: &AnyRow, at: usize) -> Result<Self, sqlx::Error> {
        Ok(Self {
            host: r.try_get(at)?,
            user: r.try_get(at + 1)?,
            repo: r.try_get(at + 2)?,
            agent: r.try_get(at + 3)?,
            started_ms: r.try_get(at + 4)?,
            secrets_read: r.try_get(at + 5)?,
            violations: r.try_get(at + 6)?,
            bytes_out: r.try_get(at + 7)?,
            model_bytes_out: r.try_get(at + 8)?,
            duration_ms: r.try_get(at + 9)?,
        })
    }
}

/// A row's change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Delta {
    sessions: i64,
    sessions_reading_secrets: i64,
    secrets_read: i64,
    violations: i64,
    bytes_out: i64,
    model_bytes_out: i64,
    duration_ms: i64,
    /// The earliest and latest start added (`i64::MAX` / `i64::MIN`: none).
    first_ms: i64,
    last_ms: i64,
}

impl Default for Delta {
    fn default() -> Self {
        Self {
            sessions: 0,
            sessions_reading_secrets: 0,
            secrets_read: 0,
            violations: 0,
            bytes_out: 0,
            model_bytes_out: 0,
            duration_ms: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

impl Delta {
    fn counts_nothing(&self) -> bool {
        [
            self.sessions,
            self.sessions_reading_secrets,
            self.secrets_read,
            self.violations,
            self.bytes_out,
            self.model_bytes_out,
            self.duration_ms,
        ]
        .iter()
        .all(|v| *v == 0)
    }
}

/// (dim, day, name, user_name)
type Key = (&'static str, i64, String, String);

/// The changes a transaction makes to the rollup.
#[derive(Debug, Default)]
pub(crate) struct Rollup {
    rows: BTreeMap<Key, Delta>,
}

impl Rollup {
    /// Adds a session (`sign` 1) or takes it away (-1).
    pub(crate) fn session(&mut self, c: &Contribution, sign: i64) {
        let day = c.started_ms / DAY_MS;
        let user = c.user.clone().unwrap_or_default();
        let mut keys: Vec<Key> = vec![
            ("user", day, user.clone(), String::new()),
            ("host", day, c.host.clone(), String::new()),
            (
                "agent",
                day,
                c.agent.clone().unwrap_or_else(|| "?".to_owned()),
                user.clone(),
            ),
        ];
        if let Some(repo) = &c.repo {
            keys.push(("repo", day, repo.clone(), user));
        }
        for key in keys {
            let d = self.rows.entry(key).or_default();
            d.sessions += sign;
            d.sessions_reading_secrets += sign * i64::from(c.secrets_read > 0);
            d.secrets_read += sign * c.secrets_read;
            d.violations += sign * c.violations;
            d.bytes_out += sign * c.bytes_out;
            d.model_bytes_out += sign * c.model_bytes_out;
            d.duration_ms += sign * c.duration_ms;
            if sign > 0 {
                d.first_ms = d.first_ms.min(c.started_ms);
                d.last_ms = d.last_ms.max(c.started_ms);
            }
        }
    }

    /// Adds a violation (`sign` 1) or takes it away (-1).
    pub(crate) fn violation(&mut self, ts_ms: i64, rule: &str, outcome: &str, sign: i64) {
        let day = ts_ms / DAY_MS;
        for (dim, name) in [("rule", rule), ("outcome", outcome)] {
            let d = self
                .rows
                .entry((dim, day, name.to_owned(), String::new()))
                .or_default();
            d.sessions += sign;
            if sign > 0 {
                d.first_ms = d.first_ms.min(ts_ms);
                d.last_ms = d.last_ms.max(ts_ms);
            }
        }
    }

    /// Adds a session's destination (`sign` 1) or takes it away (-1): a session to
    /// it, its bytes (to a model API when its class is `model`), by the session's
    /// day and developer.
    pub(crate) fn destination(&mut self, d: &DestinationContribution<'_>, sign: i64) {
        let DestinationContribution {
            started_ms,
            dest,
            class,
            user,
            bytes_out,
            secrets_read,
            violations,
        } = *d;
        let key = (
            "dest",
            started_ms / DAY_MS,
            format!("{class}/{dest}"),
            user.to_owned(),
        );
        let d = self.rows.entry(key).or_default();
        d.sessions += sign;
        d.sessions_reading_secrets += sign * i64::from(secrets_read > 0);
        d.secrets_read += sign * secrets_read;
        d.violations += sign * violations;
        d.bytes_out += sign * bytes_out;
        if class == "model" {
            d.model_bytes_out += sign * bytes_out;
        }
        if sign > 0 {
            d.first_ms = d.first_ms.min(started_ms);
            d.last_ms = d.last_ms.max(started_ms);
        }
    }

    /// Takes away the destinations of `rows`, each of [`DESTINATION_COLUMNS`].
    pub(crate) fn destinations_removed(&mut self, rows: &[AnyRow]) -> Result<(), sqlx::Error> {
        for r in rows {
            let dest: String = r.try_get("dest")?;
            let class: String = r.try_get("class")?;
            let user: String = r.try_get("user_name")?;
            let d = DestinationContribution {
                started_ms: r.try_get("started_ms")?,
                dest: &dest,
                class: &class,
                user: &user,
                bytes_out: r.try_get("bytes_out")?,
                secrets_read: r.try_get("secrets_read")?,
                violations: r.try_get("violations")?,
            };
            self.destination(&d, -1);
        }
        Ok(())
    }

    /// Takes away the violations of `rows`, each of [`VIOLATION_COLUMNS`] (what a
    /// `DELETE … RETURNING` of them gave).
    pub(crate) fn violations_removed(&mut self, rows: &[AnyRow]) -> Result<(), sqlx::Error> {
        for r in rows {
            let rule: String = r.try_get("rule")?;
            let outcome: String = r.try_get("outcome")?;
            self.violation(r.try_get("ts_ms")?, &rule, &outcome, -1);
        }
        Ok(())
    }

    /// Writes the changes, in key order.
    pub(crate) async fn apply(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let rows: Vec<(Key, Delta)> = self
            .rows
            .into_iter()
            .filter(|(_, d)| !d.counts_nothing())
            .collect();
        for chunk in rows.chunks(CHUNK) {
            upsert(chunk).query().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

fn upsert(rows: &[(Key, Delta)]) -> Sql {
    let mut s = Sql::new(
        "INSERT INTO session_days (dim, day, name, user_name, sessions, \
         sessions_reading_secrets, secrets_read, violations, bytes_out, model_bytes_out, \
         duration_ms, first_ms, last_ms) VALUES ",
    );
    for (i, ((dim, day, name, user), d)) in rows.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.tuple([
            Arg::Text((*dim).to_owned()),
            Arg::Int(*day),
            Arg::Text(name.clone()),
            Arg::Text(user.clone()),
            Arg::Int(d.sessions),
            Arg::Int(d.sessions_reading_secrets),
            Arg::Int(d.secrets_read),
            Arg::Int(d.violations),
            Arg::Int(d.bytes_out),
            Arg::Int(d.model_bytes_out),
            Arg::Int(d.duration_ms),
            Arg::Int(d.first_ms),
            Arg::Int(d.last_ms),
        ]);
    }
    s.push(
        " ON CONFLICT (dim, day, name, user_name) DO UPDATE SET \
         sessions = session_days.sessions + excluded.sessions, \
         sessions_reading_secrets = session_days.sessions_reading_secrets \
           + excluded.sessions_reading_secrets, \
         secrets_read = session_days.secrets_read + excluded.secrets_read, \
         violations = session_days.violations + excluded.violations, \
         bytes_out = session_days.bytes_out + excluded.bytes_out, \
         model_bytes_out = session_days.model_bytes_out + excluded.model_bytes_out, \
         duration_ms = session_days.duration_ms + excluded.duration_ms, \
         first_ms = CASE WHEN excluded.first_ms < session_days.first_ms \
           THEN excluded.first_ms ELSE session_days.first_ms END, \
         last_ms = CASE WHEN excluded.last_ms > session_days.last_ms \
           THEN excluded.last_ms ELSE session_days.last_ms END",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, repo: Option<&str>, secrets: i64) -> Contribution {
        Contribution {
            host: "eu/build-01".into(),
            user: Some(user.into()),
            repo: repo.map(str::to_owned),
            agent: None,
            started_ms: 3 * DAY_MS + 5,
            secrets_read: secrets,
            violations: 2,
            bytes_out: 100,
            model_bytes_out: 40,
            duration_ms: 60_000,
        }
    }

    #[test]
    fn a_session_counts_in_each_dimension_of_its_day() {
        let mut r = Rollup::default();
        r.session(&session("alice", Some("https://g/x"), 3), 1);
        let keys: Vec<_> = r.rows.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                ("agent", 3, "?".to_owned(), "alice".to_owned()),
                ("host", 3, "eu/build-01".to_owned(), String::new()),
                ("repo", 3, "https://g/x".to_owned(), "alice".to_owned()),
                ("user", 3, "alice".to_owned(), String::new()),
            ]
        );
        let d = r.rows[&("user", 3, "alice".to_owned(), String::new())];
        assert_eq!(
            (d.sessions, d.sessions_reading_secrets, d.secrets_read),
            (1, 1, 3)
        );
        assert_eq!((d.first_ms, d.last_ms), (3 * DAY_MS + 5, 3 * DAY_MS + 5));
    }

    #[test]
    fn a_replaced_session_with_the_same_numbers_writes_nothing() {
        let mut r = Rollup::default();
        r.session(&session("alice", None, 0), -1);
        r.session(&session("alice", None, 0), 1);
        assert!(r.rows.values().all(Delta::counts_nothing));
    }

    #[test]
    fn a_session_that_changes_developer_moves_between_rows() {
        let mut r = Rollup::default();
        r.session(&session("alice", None, 1), -1);
        r.session(&session("bob", None, 1), 1);
        let alice = r.rows[&("user", 3, "alice".to_owned(), String::new())];
        let bob = r.rows[&("user", 3, "bob".to_owned(), String::new())];
        let host = r.rows[&("host", 3, "eu/build-01".to_owned(), String::new())];
        assert_eq!((alice.sessions, alice.secrets_read), (-1, -1));
        assert_eq!((bob.sessions, bob.secrets_read), (1, 1));
        assert!(host.counts_nothing());
    }
}
