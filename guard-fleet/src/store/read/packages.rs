//! The organisation's package inventory: every package version a session
//! installed, when and where the organisation first saw it, and the sessions and
//! repositories that installed it (those the store still keeps).

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

impl Store {
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
