//! The stored violations in the order they happened, page after page from a
//! cursor, for the SIEM (`GET /api/violations`, `guard-fleet violations`).

use serde::{Deserialize, Serialize};
use sqlx::{Row as _, any::AnyRow};

use super::super::{
    Store, StoreError,
    sql::{Arg, Sql},
};

/// One stored violation, where it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationRecord {
    pub host: String,
    pub session_uid: String,
    /// Its place in its session's list.
    pub ordinal: i64,
    pub ts_ms: i64,
    pub pid: i64,
    pub comm: String,
    pub what: String,
    pub rule: String,
    pub action: String,
    pub outcome: String,
    pub alert: bool,
}

impl ViolationRecord {
    /// The session's 16-digit id (the uid's end).
    pub fn session_id(&self) -> &str {
        self.session_uid
            .rsplit('-')
            .next()
            .unwrap_or(&self.session_uid)
    }

    /// Where the next page starts: after this one.
    pub fn cursor(&self) -> String {
        let host: String = self.host.bytes().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}:{}:{host}:{}",
            self.ts_ms, self.ordinal, self.session_uid
        )
    }

    /// A stable id (a receiver deduplicates on it).
    pub fn uid(&self) -> String {
        format!("{}/{}/{}", self.host, self.session_uid, self.ordinal)
    }
}

/// A position in the violations' order (`ts_ms`, host, session uid, ordinal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub ts_ms: i64,
    pub host: String,
    pub session_uid: String,
    pub ordinal: i64,
}

impl Cursor {
    /// From [`ViolationRecord::cursor`]'s text.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(4, ':');
        let ts_ms = parts.next()?.parse().ok()?;
        let ordinal = parts.next()?.parse().ok()?;
        let hex = parts.next()?;
        let session_uid = parts.next()?.to_owned();
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self {
            ts_ms,
            host: String::from_utf8(bytes).ok()?,
            session_uid,
            ordinal,
        })
    }
}

fn record(r: &AnyRow) -> Result<ViolationRecord, sqlx::Error> {
    Ok(ViolationRecord {
        host: r.try_get("host")?,
        session_uid: r.try_get("session_uid")?,
        ordinal: r.try_get("ordinal")?,
        ts_ms: r.try_get("ts_ms")?,
        pid: r.try_get("pid")?,
        comm: r.try_get("comm")?,
        what: r.try_get("what")?,
        rule: r.try_get("rule")?,
        action: r.try_get("action")?,
        outcome: r.try_get("outcome")?,
        alert: r.try_get::<i64, _>("alert")? != 0,
    })
}

impl Store {
    /// At most `limit` violations after `after` (else from `since_ms`, else the
    /// first), in the order they happened.
    pub async fn violations_after(
        &self,
        after: Option<&Cursor>,
        since_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ViolationRecord>, StoreError> {
        let mut q = Sql::new(
            "SELECT host, session_uid, ordinal, ts_ms, pid, comm, what, rule, action, outcome, \
             alert FROM violations WHERE 1 = 1",
        );
        if let Some(c) = after {
            q.push(" AND (ts_ms, host, session_uid, ordinal) > ")
                .tuple([
                    Arg::Int(c.ts_ms),
                    Arg::Text(c.host.clone()),
                    Arg::Text(c.session_uid.clone()),
                    Arg::Int(c.ordinal),
                ]);
        } else if let Some(since) = since_ms {
            q.push(" AND ts_ms >= ").arg(Arg::Int(since));
        }
        q.push(" ORDER BY ts_ms, host, session_uid, ordinal LIMIT ")
            .arg(Arg::Int(i64::from(limit.clamp(1, 10_000))));
        q.query()
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("list violations"))?
            .iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::query("read violations"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back() {
        let v = ViolationRecord {
            host: "eu/build:01".into(),
            session_uid: "m-b-00000000000000a1".into(),
            ordinal: 3,
            ts_ms: 42,
            pid: 1,
            comm: "cat".into(),
            what: "open x".into(),
            rule: "r".into(),
            action: "kill".into(),
            outcome: "killed".into(),
            alert: true,
        };
        let c = Cursor::parse(&v.cursor()).expect("a cursor");
        assert_eq!(
            (c.ts_ms, c.host.as_str(), c.session_uid.as_str(), c.ordinal),
            (42, "eu/build:01", "m-b-00000000000000a1", 3)
        );
        assert_eq!(v.session_id(), "00000000000000a1");
        assert!(Cursor::parse("1:2:zz:x").is_none());
    }
}
