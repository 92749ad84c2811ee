//! The organisation's package inventory: every package version a session
//! installed, when and where the organisation first saw it, and the sessions and
//! repositories that installed it (those the store still keeps).

use guard_policy::packages::NamesPage;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::super::{Store, StoreError};

/// Package versions the inventory lists at most, newest first.
pub const INVENTORY_MAX: i64 = 1_000;

/// One package version of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRow {
    /// `npm`, `pypi`, `crates.io`, `go`.
    pub ecosystem: String,
    pub name: String,
    /// Empty when the host could not tell.
    pub version: String,
    /// When the organisation first saw it installed (the session's start), and where.
    pub first_seen_ms: i64,
    pub first_host: String,
    pub first_session_uid: String,
    /// Sessions (kept) that installed it, and their distinct repositories.
    pub sessions: i64,
    pub repositories: Vec<String>,
    /// An install script of it ran in one of them.
    pub install_script: bool,
}

/// Package names a host's pull gets at most per answer.
pub const NAMES_MAX: i64 = 10_000;

/// How far behind its clock a finished pull's cursor stays (writes in flight).
pub const NAMES_SLACK_MS: i64 = 60_000;

impl Store {
    /// The package names recorded at or after `since` (the fleet's clock), the
    /// oldest first, at most [`NAMES_MAX`] versions' worth; `now_ms` is the fleet's
    /// clock.
    pub async fn package_names(&self, since: i64, now_ms: i64) -> Result<NamesPage, StoreError> {
        let what = "read the organisation's package names";
        let rows = sqlx::query(
            "SELECT ecosystem, name, recorded_ms FROM packages WHERE recorded_ms >= $1 \
             ORDER BY recorded_ms LIMIT $2",
        )
        .bind(since)
        .bind(NAMES_MAX)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query(what))?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= NAMES_MAX;
        let mut names = Vec::with_capacity(rows.len());
        let mut last = since;
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let name: (String, String) = (
                r.try_get("ecosystem").map_err(StoreError::query(what))?,
                r.try_get("name").map_err(StoreError::query(what))?,
            );
            last = r.try_get("recorded_ms").map_err(StoreError::query(what))?;
            if seen.insert(name.clone()) {
                names.push(name);
            }
        }
        let until = if more {
            last
        } else {
            since.max(now_ms - NAMES_SLACK_MS)
        };
        Ok(NamesPage { names, until, more })
    }

    /// The inventory, the versions first seen last first (at most
    /// [`INVENTORY_MAX`]).
    pub async fn packages(&self) -> Result<Vec<InventoryRow>, StoreError> {
        let what = "read the package inventory";
        let rows = sqlx::query(
            "SELECT p.ecosystem, p.name, p.version, p.first_seen_ms, p.first_host, \
             p.first_session_uid, s.session_uid, s.repo_url, s.install_script \
             FROM (SELECT * FROM packages ORDER BY first_seen_ms DESC, ecosystem, name, version \
                   LIMIT $1) p \
             LEFT JOIN session_packages s ON s.ecosystem = p.ecosystem AND s.name = p.name \
               AND s.version = p.version \
             ORDER BY p.first_seen_ms DESC, p.ecosystem, p.name, p.version",
        )
        .bind(INVENTORY_MAX)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query(what))?;
        let mut out: Vec<InventoryRow> = Vec::new();
        for r in &rows {
            (|| -> Result<(), sqlx::Error> {
                let key: (String, String, String) = (
                    r.try_get("ecosystem")?,
                    r.try_get("name")?,
                    r.try_get("version")?,
                );
                let same = out.last().is_some_and(|l: &InventoryRow| {
                    (&l.ecosystem, &l.name, &l.version) == (&key.0, &key.1, &key.2)
                });
                if !same {
                    out.push(InventoryRow {
                        ecosystem: key.0,
                        name: key.1,
                        version: key.2,
                        first_seen_ms: r.try_get("first_seen_ms")?,
                        first_host: r.try_get("first_host")?,
                        first_session_uid: r.try_get("first_session_uid")?,
                        sessions: 0,
                        repositories: Vec::new(),
                        install_script: false,
                    });
                }
                let Some(row) = out.last_mut() else {
                    return Ok(());
                };
                if r.try_get::<Option<String>, _>("session_uid")?.is_some() {
                    row.sessions += 1;
                    row.install_script |= r.try_get::<Option<i64>, _>("install_script")? == Some(1);
                    if let Some(repo) = r.try_get::<Option<String>, _>("repo_url")?
                        && !row.repositories.contains(&repo)
                    {
                        row.repositories.push(repo);
                    }
                }
                Ok(())
            })()
            .map_err(StoreError::query(what))?;
        }
        Ok(out)
    }
}
