//! What one request amounts to once checked: the rows the store writes, in one
//! transaction. Every string here is bounded and every number fits its column.

/// A host, as its latest batch describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRow {
    /// The authenticated identity: a host token's or certificate's name, or
    /// `<cluster token>/<host.name>`.
    pub host: String,
    /// What the host calls itself (`host.name`).
    pub host_name: String,
    pub host_id: Option<String>,
    pub arch: Option<String>,
    pub guard_version: Option<String>,
    /// The kernel release (`os.version`).
    pub os_version: Option<String>,
    pub boot_id: Option<String>,
    pub policy_name: Option<String>,
    pub policy_mode: Option<String>,
    /// The fleet group whose policy it takes (`guard.fleet.group`).
    pub fleet_group: Option<String>,
    /// The credential it sent with, as an assignment names it (`host:NAME`,
    /// `cluster:NAME`).
    pub credential: String,
    /// What it says of itself (`guard.fleet.labels`), `env=ci,team=payments`.
    pub labels: Option<String>,
    /// `guard.tiers` as a JSON object: enforcement action → tier.
    pub tiers: Option<String>,
    pub k8s_cluster: Option<String>,
    pub k8s_node: Option<String>,
    /// When the server received the batch (unix ms).
    pub seen_ms: i64,
    /// The host's clock less the server's, from the newest record of the batch
    /// (positive: ahead; a batch of spooled records reads as behind, so only an
    /// ahead clock is trusted: else 0).
    pub clock_skew_ms: i64,
    /// The batch held a heartbeat: when it was received.
    pub heartbeat_ms: Option<i64>,
}

/// A session summary, with the columns the dashboard filters and sorts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub host: String,
    pub session_uid: String,
    pub session_id: String,
    pub record_id: String,
    pub seq: i64,
    /// The record's `observed_time_unix_nano` (else its time).
    pub observed_ns: i64,
    /// `running` or `ended`.
    pub state: &'static str,
    /// 1 for `ended`, 0 for `running`: an ended summary beats any running one.
    pub state_rank: i64,
    pub agent: Option<String>,
    pub agent_version: Option<String>,
    pub user_name: Option<String>,
    pub uid: Option<i64>,
    pub repo_url: Option<String>,
    pub repo_branch: Option<String>,
    pub repo_commit: Option<String>,
    pub workspace: Option<String>,
    pub conversation_id: Option<String>,
    /// The start, less the host's clock skew when its host stamped it in the future.
    pub started_ms: i64,
    /// The start the host gave, when it was in the future (and so corrected).
    pub host_started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub duration_ms: i64,
    pub commands: i64,
    pub files_read: i64,
    pub files_written: i64,
    pub secrets_read: i64,
    pub bytes_out: i64,
    pub bytes_in: i64,
    /// Bytes to and from destinations of class `model` (the agents' model APIs).
    pub model_bytes_out: i64,
    pub model_bytes_in: i64,
    pub violations: i64,
    /// The report as JSON (guard_common::report::Report).
    pub summary: String,
    /// The summary's violation list: replaces the stored one with the summary.
    pub violation_rows: Vec<ViolationRow>,
    /// The summary's destinations, by name (else address): replace the stored ones.
    pub destination_rows: Vec<DestinationRow>,
    /// The summary's packages, each version once: replace the stored ones.
    pub package_rows: Vec<PackageRow>,
}

/// A package a session installed: one of its summary's `packages`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageRow {
    pub ecosystem: String,
    pub name: String,
    /// Empty when the host could not tell.
    pub version: String,
    /// An install script of it ran in the session.
    pub install_script: bool,
}

/// Where a session sent bytes: one destination name (or address) of its summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationRow {
    pub dest: String,
    /// `model`, `registry`, `code_host`, `allowlisted`, `local`, `other`.
    pub class: String,
    pub bytes_out: i64,
    /// Connects and sends.
    pub connects: i64,
}

/// One violation of a session's summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViolationRow {
    /// Its place in the summary's list.
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

/// An event for the bounded index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub host: String,
    pub record_id: String,
    /// Empty for the daemon's own events (`lost`, `policy_loaded`, …).
    pub session_uid: String,
    pub ts_ms: i64,
    pub kind: String,
    pub rule: Option<String>,
    pub outcome: Option<String>,
    /// One line for people: `exec /usr/bin/git status`.
    pub text: String,
    /// The event as the audit log writes it.
    pub event: String,
}

/// One request's rows, and what was skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub hosts: Vec<HostRow>,
    pub summaries: Vec<SummaryRow>,
    pub events: Vec<EventRow>,
    /// Records skipped as invalid, by reason.
    pub rejected: Vec<(&'static str, u64)>,
}

impl Batch {
    /// Records skipped as invalid.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// Why records were skipped, for the answer's `error_message`.
    pub fn rejected_message(&self) -> String {
        self.rejected
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) fn reject(&mut self, why: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.rejected.iter_mut().find(|(w, _)| *w == why) {
            Some((_, count)) => *count += n,
            None => self.rejected.push((why, n)),
        }
    }
}
