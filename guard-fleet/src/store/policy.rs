//! Policies from the fleet: every uploaded version, and what each group of hosts is
//! assigned (a version, in `observe` or `enforce`). Versions are never changed once
//! stored; an assignment's `serial` grows with every change, so hosts can refuse an
//! older one replayed (docs/fleet.md, "Policy from the fleet").

use serde::Serialize;
use sqlx::Row as _;

use guard_policy::model::Labels;

use super::{Store, StoreError};

/// One stored version of a policy, without its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyVersion {
    pub name: String,
    pub version: i64,
    /// SHA-256 of the text (lowercase hex).
    pub sha256: String,
    pub created_ms: i64,
    /// Who uploaded it: the admin token's name.
    pub author: String,
}

/// What a group of hosts is assigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub group: String,
    pub policy: String,
    pub version: i64,
    /// `observe` or `enforce`.
    pub mode: String,
    pub serial: i64,
    pub updated_ms: i64,
    pub author: String,
}

/// The assignment target a host (the row `h` of `hosts`) takes, or NULL: its
/// group's, else its credential's (`host:NAME`, `cluster:NAME`), else the first of
/// its labels' (`label:KEY=VALUE`, in byte order) that has one; as
/// [`Store::assigned_to_host`] chooses. `labels` is `KEY=VALUE,…`: a label matches
/// when removing `,KEY=VALUE,` from `,labels,` changes it (both databases have
/// `replace`; `LIKE` would read `_` as a wildcard).
pub(super) const HOST_TARGET: &str = "COALESCE(\
    (SELECT t.group_name FROM policy_assignments t WHERE t.group_name = h.fleet_group), \
    (SELECT t.group_name FROM policy_assignments t WHERE t.group_name = h.credential), \
    (SELECT MIN(t.group_name) FROM policy_assignments t WHERE t.group_name LIKE 'label:%' \
     AND replace(',' || h.labels || ',', ',' || substr(t.group_name, 7) || ',', '') \
     <> ',' || h.labels || ','))";

/// Why an assignment was not made.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("policy {policy} has no version {version}")]
    NoSuchVersion { policy: String, version: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Stores `text` as the next version of policy `name`; returns the version.
    /// Two uploads of one policy at once: one of them fails (the key is taken) and
    /// can be sent again.
    pub async fn add_policy(
        &self,
        name: &str,
        text: &str,
        sha256: &str,
        author: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let _writer = self.writer().await;
        let row = sqlx::query(
            "INSERT INTO policies (name, version, text, sha256, created_ms, author) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM policies \
             WHERE name = $1 RETURNING version",
        )
        .bind(name)
        .bind(text)
        .bind(sha256)
        .bind(now_ms)
        .bind(author)
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("store a policy version"))?;
        row.try_get("version")
            .map_err(StoreError::query("read the new version"))
    }

    /// Every stored version, newest policy change first.
    pub async fn policies(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, sha256, created_ms, author FROM policies \
             ORDER BY created_ms DESC, name, version DESC",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("list the policies"))?;
        rows.iter()
            .map(|r| {
                Ok(PolicyVersion {
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    sha256: r.try_get("sha256")?,
                    created_ms: r.try_get("created_ms")?,
                    author: r.try_get("author")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("read the policies"))
    }

    /// The text of one version.
    pub async fn policy_text(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT text FROM policies WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::query("read a policy version"))?
            .map(|r| r.try_get("text"))
            .transpose()
            .map_err(StoreError::query("read a policy version"))
    }

    /// Assigns a version to `group` in `mode`; returns the assignment's serial.
    pub async fn assign(
        &self,
        group: &str,
        policy: &str,
        version: i64,
        mode: &str,
        author: &str,
        now_ms: i64,
    ) -> Result<i64, AssignError> {
        if self.policy_text(policy, version).await?.is_none() {
            return Err(AssignError::NoSuchVersion {
                policy: policy.to_owned(),
                version,
            });
        }
        let _writer = self.writer().await;
        // One serial across every assignment: a host that moves from its credential's
        // assignment to its group's (or back) sees it grow, never fall.
        let row = sqlx::query(
            "INSERT INTO policy_assignments \
             (group_name, policy, version, mode, serial, updated_ms, author) \
             VALUES ($1, $2, $3, $4, \
             COALESCE((SELECT MAX(serial) FROM policy_assignments), 0) + 1, $5, $6) \
             ON CONFLICT (group_name) DO UPDATE SET policy = $2, version = $3, mode = $4, \
             serial = (SELECT MAX(serial) FROM policy_assignments) + 1, updated_ms = $5, \
             author = $6 RETURNING serial",
        )
        .bind(group)
        .bind(policy)
        .bind(version)
        .bind(mode)
        .bind(now_ms)
        .bind(author)
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("assign a policy"))?;
        Ok(row
            .try_get("serial")
            .map_err(StoreError::query("read the assignment's serial"))?)
    }

    /// Every group's assignment, by group.
    pub async fn assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_name, policy, version, mode, serial, updated_ms, author \
             FROM policy_assignments ORDER BY group_name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("list the assignments"))?;
        rows.iter()
            .map(assignment)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("read the assignments"))
    }

    /// The assignment a host of `group` that sends with `credential` (`host:NAME`,
    /// `cluster:NAME`) and says `labels` of itself takes: its group's, else its
    /// credential's, else its first label's that has one ([`Labels::targets`]'s
    /// order, as [`HOST_TARGET`]).
    pub async fn assigned_to_host(
        &self,
        group: &str,
        credential: &str,
        labels: &Labels,
    ) -> Result<Option<(Assignment, String)>, StoreError> {
        let targets = [group.to_owned(), credential.to_owned()];
        for target in targets.into_iter().chain(labels.targets()) {
            if let Some(a) = self.assigned(&target).await? {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// `group`'s assignment and the text of its version.
    pub async fn assigned(&self, group: &str) -> Result<Option<(Assignment, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT a.group_name, a.policy, a.version, a.mode, a.serial, a.updated_ms, \
             a.author, p.text FROM policy_assignments a JOIN policies p \
             ON p.name = a.policy AND p.version = a.version WHERE a.group_name = $1",
        )
        .bind(group)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query("read an assignment"))?;
        row.map(|r| Ok((assignment(&r)?, r.try_get("text")?)))
            .transpose()
            .map_err(StoreError::query("read an assignment"))
    }
}

/// What a policy in observe would have stopped: a rule's violations on one host
/// that were only logged while their action is `kill` or `deny`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WouldStop {
    pub rule: String,
    pub host: String,
    /// `kill` or `deny`: what enforce would have done.
    pub action: String,
    pub count: i64,
    pub last_ms: i64,
}

/// The hosts of a group, as the hosts table last heard them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupHosts {
    pub group: String,
    pub hosts: i64,
    /// Of them, those whose policy in force is not the group's assignment.
    pub drifting: i64,
}

impl Store {
    /// What the hosts that take `group`'s assignment ([`HOST_TARGET`]) would have
    /// stopped since `since_ms` (the assignment's time): by rule and host, most
    /// first (at most 200 rows).
    pub async fn would_stop(
        &self,
        group: &str,
        since_ms: i64,
    ) -> Result<Vec<WouldStop>, StoreError> {
        let query = format!(
            "SELECT v.rule, v.host, v.action, COUNT(*) AS n, MAX(v.ts_ms) AS last_ms \
             FROM violations v JOIN hosts h ON h.host = v.host \
             WHERE {HOST_TARGET} = $1 AND v.ts_ms >= $2 \
             AND v.outcome = 'logged' \
             AND v.action IN ('kill', 'deny') \
             GROUP BY v.rule, v.host, v.action ORDER BY n DESC, v.rule, v.host LIMIT 200"
        );
        // Built from constants only: nothing of a request is in the text.
        let rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .bind(group)
            .bind(since_ms)
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("read what a policy would stop"))?;
        rows.iter()
            .map(|r| {
                Ok(WouldStop {
                    rule: r.try_get("rule")?,
                    host: r.try_get("host")?,
                    action: r.try_get("action")?,
                    count: r.try_get("n")?,
                    last_ms: r.try_get("last_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("read what a policy would stop"))
    }

    /// The events a session's host sent, as sent (one JSON event each), in their
    /// order: at most `max`, for `guard policy test` in the fleet.
    pub async fn session_lines(
        &self,
        host: &str,
        session_uid: &str,
        max: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT event FROM events WHERE host = $1 AND session_uid = $2 \
             ORDER BY ts_ms, record_id LIMIT $3",
        )
        .bind(host)
        .bind(session_uid)
        .bind(max)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a session's events"))?;
        rows.iter()
            .map(|r| r.try_get("event"))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("read a session's events"))
    }

    /// Every group hosts named (`guard.fleet.group`), with its host counts.
    pub async fn group_hosts(&self) -> Result<Vec<GroupHosts>, StoreError> {
        // Each host under the assignment it takes ([`HOST_TARGET`]), or its group
        // when it takes none.
        let query = format!(
            "SELECT hh.target AS grp, COUNT(*) AS hosts, CAST(SUM(CASE WHEN \
             a.group_name IS NOT NULL AND (hh.policy_name IS NULL OR hh.policy_mode IS NULL \
             OR hh.policy_name <> 'fleet:' || a.policy || '@' || CAST(a.version AS TEXT) \
             OR hh.policy_mode <> a.mode) THEN 1 ELSE 0 END) AS BIGINT) AS drifting \
             FROM (SELECT COALESCE({HOST_TARGET}, h.fleet_group) AS target, \
             h.policy_name, h.policy_mode FROM hosts h) hh \
             LEFT JOIN policy_assignments a ON a.group_name = hh.target \
             WHERE hh.target IS NOT NULL GROUP BY hh.target ORDER BY hh.target"
        );
        // Built from constants only: nothing of a request is in the text.
        let rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("count the groups' hosts"))?;
        rows.iter()
            .map(|r| {
                Ok(GroupHosts {
                    group: r.try_get("grp")?,
                    hosts: r.try_get("hosts")?,
                    drifting: r.try_get::<Option<i64>, _>("drifting")?.unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query("read the groups' hosts"))
    }
}

fn assignment(r: &sqlx::any::AnyRow) -> Result<Assignment, sqlx::Error> {
    Ok(Assignment {
        group: r.try_get("group_name")?,
        policy: r.try_get("policy")?,
        version: r.try_get("version")?,
        mode: r.try_get("mode")?,
        serial: r.try_get("serial")?,
        updated_ms: r.try_get("updated_ms")?,
        author: r.try_get("author")?,
    })
}
