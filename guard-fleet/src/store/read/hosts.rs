//! The hosts: each as the fleet last heard from it, the hosts page, and the counts
//! the overview shows of them.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use sqlx::{Row as _, any::AnyRow};

use super::int;
use crate::store::{
    Store, StoreError,
    policy::HOST_TARGET,
    sql::{Arg, Sql},
};

/// One host, as the fleet last heard from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub host: String,
    pub host_name: String,
    pub host_id: Option<String>,
    pub arch: Option<String>,
    pub guard_version: Option<String>,
    pub os_version: Option<String>,
    pub policy_name: Option<String>,
    pub policy_mode: Option<String>,
    /// The fleet group it names (`[fleet] group`) and the labels it says of
    /// itself (`env=ci,team=payments`).
    pub fleet_group: Option<String>,
    pub labels: Option<String>,
    /// The assignment it takes (its group's, its credential's or a label's:
    /// `ci-pool`, `cluster:eu`, `label:env=ci`), that assignment's version
    /// (`fleet:NAME@VERSION`) and mode.
    pub target: Option<String>,
    pub assigned: Option<String>,
    pub assigned_mode: Option<String>,
    /// The policy in force is not its group's assignment (or not in its mode):
    /// the host has not taken it yet, or refused it (its `policy_rejected` events
    /// say why).
    pub drift: bool,
    /// Enforcement action → tier.
    pub tiers: BTreeMap<String, String>,
    pub k8s_cluster: Option<String>,
    pub k8s_node: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// No batch for longer than `dashboard.stale_after` (its daemon sends a
    /// heartbeat when idle: a silent host's guard stopped, or the host is gone).
    pub stale: bool,
    /// The host's clock less the server's at its last batch (ahead: positive).
    pub clock_skew_ms: i64,
    /// Its daemon's last heartbeat (sent when it had nothing else to send).
    pub heartbeat_ms: Option<i64>,
    /// Sessions started in the window.
    pub sessions: i64,
    /// Sessions running now.
    pub running: i64,
}

impl Host {
    /// In observe mode: nothing is stopped there.
    pub fn observes(&self) -> bool {
        self.policy_mode.as_deref() == Some("observe")
    }

    /// Enforcement actions the host cannot take (no tier, or absent).
    pub fn missing_tiers(&self) -> Vec<&'static str> {
        EXPECTED_TIERS
            .iter()
            .copied()
            .filter(|a| self.tiers.get(*a).is_none_or(|t| t == "none"))
            .collect()
    }

    /// Its clock is more than a minute off the server's.
    pub fn skewed(&self) -> bool {
        self.clock_skew_ms.abs() > 60_000
    }
}

/// The enforcement actions every guard reports a tier for (`guard.tiers`, as
/// `policy_loaded`'s `enforcement` lists them).
pub const EXPECTED_TIERS: &[&str] = &[
    "exec_kill",
    "file_read_kill",
    "file_write_kill",
    "exec_deny",
    "file_read_deny",
    "file_write_deny",
    "network_deny",
    "self_protection",
];

/// `0.1.10` → (0, 1, 10); what does not parse sorts first.
pub fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// A host's columns (of the row `h` of [`HOSTS_FROM`]), with the assignment it
/// takes (`t`).
pub(super) const HOST_COLUMNS: &str = "h.host, h.host_name, h.host_id, h.arch, h.guard_version, \
    h.os_version, h.policy_name, h.policy_mode, h.tiers, h.k8s_cluster, h.k8s_node, \
    h.first_seen_ms, h.last_seen_ms, h.clock_skew_ms, h.heartbeat_ms, h.fleet_group, \
    h.labels, h.target, 'fleet:' || t.policy || '@' || CAST(t.version AS TEXT) AS assigned, \
    t.mode AS assigned_mode";

/// The hosts, each with the target of the assignment it takes ([`HOST_TARGET`],
/// worked out once per host) and that assignment (`t`, none when it takes none).
pub(super) static HOSTS_FROM: LazyLock<String> = LazyLock::new(|| {
    format!(
        " FROM (SELECT h.*, {HOST_TARGET} AS target FROM hosts h) h \
         LEFT JOIN policy_assignments t ON t.group_name = h.target"
    )
});

pub(super) fn host_row(r: &AnyRow, stale_before: i64) -> Result<Host, sqlx::Error> {
    let tiers: Option<String> = r.try_get("tiers")?;
    let tiers = tiers
        .and_then(|t| serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k, v)
        })
        .collect();
    let last_seen_ms: i64 = r.try_get("last_seen_ms")?;
    let policy_name: Option<String> = r.try_get("policy_name")?;
    let policy_mode: Option<String> = r.try_get("policy_mode")?;
    let assigned: Option<String> = r.try_get("assigned")?;
    let assigned_mode: Option<String> = r.try_get("assigned_mode")?;
    let drift = assigned.is_some() && (policy_name != assigned || policy_mode != assigned_mode);
    Ok(Host {
        host: r.try_get("host")?,
        host_name: r.try_get("host_name")?,
        host_id: r.try_get("host_id")?,
        arch: r.try_get("arch")?,
        guard_version: r.try_get("guard_version")?,
        os_version: r.try_get("os_version")?,
        policy_name,
        policy_mode,
        fleet_group: r.try_get("fleet_group")?,
        labels: r.try_get("labels")?,
        target: r.try_get("target")?,
        assigned,
        assigned_mode,
        drift,
        tiers,
        k8s_cluster: r.try_get("k8s_cluster")?,
        k8s_node: r.try_get("k8s_node")?,
        first_seen_ms: r.try_get("first_seen_ms")?,
        last_seen_ms,
        stale: last_seen_ms < stale_before,
        clock_skew_ms: r.try_get::<Option<i64>, _>("clock_skew_ms")?.unwrap_or(0),
        heartbeat_ms: r.try_get("heartbeat_ms")?,
        sessions: 0,
        running: 0,
    })
}

/// The hosts page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPage {
    pub now_ms: i64,
    pub total: i64,
    pub stale_count: i64,
    /// The newest guard version in the fleet (hosts below it are highlighted).
    pub newest_version: Option<String>,
    pub page: u32,
    pub per_page: u32,
    pub hosts: Vec<Host>,
}

impl Store {
    /// One page of hosts, stopped ones first, then by name; with their sessions
    /// since `since_ms` and running now.
    pub async fn hosts(
        &self,
        now_ms: i64,
        since_ms: i64,
        stale_before: i64,
        page: u32,
        per_page: u32,
        stale_only: bool,
    ) -> Result<HostPage, StoreError> {
        let e = StoreError::query;
        let (total, stale_count) = self.host_counts(stale_before).await?;
        let per_page = per_page.clamp(1, 1000);
        let page = page.max(1);
        let mut q = Sql::new("SELECT ");
        q.push(HOST_COLUMNS)
            .push(", (SELECT COUNT(*) FROM sessions s WHERE s.host = h.host AND s.started_ms >= ")
            .arg(Arg::Int(since_ms))
            .push(") AS sessions, (SELECT COUNT(*) FROM sessions s WHERE s.host = h.host AND s.state = 'running' AND s.updated_ms >= ")
            .arg(Arg::Int(stale_before))
            .push(") AS running")
            .push(&HOSTS_FROM);
        if stale_only {
            q.push(" WHERE h.last_seen_ms < ")
                .arg(Arg::Int(stale_before));
        }
        q.push(" ORDER BY CASE WHEN h.last_seen_ms < ")
            .arg(Arg::Int(stale_before))
            .push(" THEN 0 ELSE 1 END, h.host LIMIT ")
            .arg(Arg::Int(i64::from(per_page)))
            .push(" OFFSET ")
            .arg(Arg::Int(i64::from(page - 1) * i64::from(per_page)));
        let hosts = q
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(e("list hosts"))?
            .iter()
            .map(|r| {
                let mut h = host_row(r, stale_before)?;
                h.sessions = r.try_get::<Option<i64>, _>("sessions")?.unwrap_or(0);
                h.running = r.try_get::<Option<i64>, _>("running")?.unwrap_or(0);
                Ok(h)
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(e("read hosts"))?;
        let versions =
            Sql::new("SELECT DISTINCT guard_version FROM hosts WHERE guard_version IS NOT NULL")
                .query()
                .fetch_all(self.pool())
                .await
                .map_err(e("list guard versions"))?;
        let newest_version = versions
            .iter()
            .filter_map(|r| r.try_get::<String, _>("guard_version").ok())
            .max_by_key(|v| version_key(v));
        Ok(HostPage {
            now_ms,
            newest_version,
            total,
            stale_count,
            page,
            per_page,
            hosts,
        })
    }

    /// How many hosts there are, and how many stopped reporting (no batch since
    /// `stale_before`).
    pub(super) async fn host_counts(&self, stale_before: i64) -> Result<(i64, i64), StoreError> {
        let mut sql = Sql::new("SELECT COUNT(*) AS total, CAST(SUM(CASE WHEN last_seen_ms < ");
        sql.arg(Arg::Int(stale_before))
            .push(" THEN 1 ELSE 0 END) AS BIGINT) AS stale FROM hosts");
        self.fetch_one(sql, "count hosts", |r| {
            Ok((int(r, "total")?, int(r, "stale")?))
        })
        .await
    }
}
