//! A decoded request and its sender → a [`Batch`]: each resource's host decided from
//! the sender's identity, each record checked (record id, session, sizes, body)
//! and turned into rows, or counted as rejected with a reason.

use chrono::DateTime;
use guard_common::{
    line::EventLine,
    otlp::{self, RecordKind, attr},
    report::Report,
};
use guard_policy::model::Labels;
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, common::v1::KeyValue, logs::v1::LogRecord,
};
use serde::Deserialize as _;
use serde_json::Value;

use crate::store::rows::{
    Batch, DestinationRow, EventRow, HostRow, PackageRow, SummaryRow, ViolationRow,
};
use crate::{
    auth::{Claim, Sender},
    config::Limits,
};

/// Longest string kept in an indexed column (a repository URL, a user name).
pub const MAX_FIELD: usize = 2048;
/// Longest session uid (`<machine id>-<boot id>-<session id>` is 86 bytes).
pub const MAX_SESSION_UID: usize = 200;
/// Longest one-line text of an event.
pub const MAX_TEXT: usize = 300;
/// A time further ahead of the server's clock than this is the host's clock's
/// doing (its skew is then taken off).
pub const FUTURE_MS: i64 = 60_000;

/// Event kinds about the daemon, not a session: they carry no session.
const DAEMON_KINDS: &[&str] = guard_common::line::EventDetail::DAEMON_KINDS;

/// Why a record is skipped (each a reason of the answer's message).
mod why {
    pub(super) const NOT_GUARD: &str = "not guard records (event_name)";
    pub(super) const RECORD_ID: &str = "without a valid guard.record.id";
    pub(super) const SESSION: &str = "without a valid guard.session.id and guard.session.uid";
    pub(super) const NO_HOST: &str = "of a resource without a valid host.name";
    pub(super) const TOO_BIG: &str = "with a body over the size limit";
    pub(super) const FIELD: &str = "with an attribute over 2048 bytes";
    pub(super) const REPORT: &str = "summaries whose body is not a session report";
    pub(super) const STATE: &str = "summaries with a bad guard.session.state or guard.summary.seq";
    pub(super) const EVENT: &str = "events whose body is not an object or whose kind is not valid";
}

/// The rows of `request` from `sender`. Refused whole (nothing stored) when a
/// host's credential sent records of another host.
pub fn batch(
    request: &ExportLogsServiceRequest,
    sender: &Sender,
    limits: &Limits,
    now_ms: i64,
) -> Result<Batch, Claim> {
    let mut out = Batch::default();
    for rl in &request.resource_logs {
        let empty = Vec::new();
        let attrs = rl.resource.as_ref().map_or(&empty, |r| &r.attributes);
        let records = rl.scope_logs.iter().flat_map(|s| &s.log_records);
        let host = match sender.host_for(otlp::get_str(attrs, attr::HOST_NAME)) {
            Ok(host) => host,
            Err(e @ Claim::OtherHost { .. }) => return Err(e),
            Err(Claim::NoHost(_)) => {
                out.reject(why::NO_HOST, records.count() as u64);
                continue;
            }
        };
        // The host's clock: its newest record against the server's.
        let newest_ns = rl
            .scope_logs
            .iter()
            .flat_map(|s| &s.log_records)
            .map(|r| match r.observed_time_unix_nano {
                0 => r.time_unix_nano,
                t => t,
            })
            .max()
            .unwrap_or(0);
        let skew = if newest_ns == 0 {
            0
        } else {
            (ns_to_ms(newest_ns) - now_ms).max(0)
        };
        match host_row(&host, sender, attrs, now_ms) {
            Some(mut row) => {
                row.clock_skew_ms = skew;
                row.heartbeat_ms = rl
                    .scope_logs
                    .iter()
                    .flat_map(|s| &s.log_records)
                    .any(|r| otlp::record_kind(r) == RecordKind::Heartbeat)
                    .then_some(now_ms);
                // One row per host: a request with several resources of one host
                // keeps the last description.
                out.hosts.retain(|h| h.host != row.host);
                out.hosts.push(row);
            }
            None => {
                out.reject(why::FIELD, records.count() as u64);
                continue;
            }
        }
        let clock = Clock {
            now_ms,
            skew_ms: skew,
        };
        for record in records {
            if let Err(reason) = one(&mut out, &host, record, limits, clock) {
                out.reject(reason, 1);
            }
        }
    }
    Ok(out)
}

fn host_row(host: &str, sender: &Sender, attrs: &[KeyValue], now_ms: i64) -> Option<HostRow> {
    let s = |key| field(attrs, key).ok();
    let tiers = attrs
        .iter()
        .find(|a| a.key == attr::TIERS)
        .and_then(|a| a.value.as_ref())
        .map(otlp::any_to_json)
        .filter(Value::is_object)
        .map(|v| v.to_string())
        .filter(|t| t.len() <= MAX_FIELD);
    Some(HostRow {
        host: host.to_owned(),
        host_name: field(attrs, attr::HOST_NAME).ok()??,
        host_id: s(attr::HOST_ID)?,
        arch: s(attr::HOST_ARCH)?,
        guard_version: s(attr::SERVICE_VERSION)?,
        os_version: s(attr::OS_VERSION)?,
        boot_id: s(attr::BOOT_ID)?,
        policy_name: s(attr::POLICY_NAME)?,
        policy_mode: s(attr::POLICY_MODE)?,
        fleet_group: s(attr::FLEET_GROUP)?,
        credential: sender.assignment_target(),
        // Labels that do not parse are left out (the host's own check refuses them).
        labels: s(attr::FLEET_LABELS)?
            .and_then(|l| l.parse::<Labels>().ok())
            .map(|l| l.to_string())
            .filter(|l| !l.is_empty()),
        tiers,
        k8s_cluster: s(attr::K8S_CLUSTER_NAME)?,
        k8s_node: s(attr::K8S_NODE_NAME)?,
        seen_ms: now_ms,
        clock_skew_ms: 0,
        heartbeat_ms: None,
    })
}

/// A string attribute bounded to [`MAX_FIELD`] bytes (empty counts as absent).
fn field(attrs: &[KeyValue], key: &str) -> Result<Option<String>, &'static str> {
    match otlp::get_str(attrs, key) {
        None | Some("") => Ok(None),
        Some(s) if s.len() > MAX_FIELD => Err(why::FIELD),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The record's session id and uid: 16 hex digits, and `<…>-<session id>`.
fn session(attrs: &[KeyValue]) -> Result<Option<(String, String)>, &'static str> {
    let id = otlp::get_str(attrs, attr::SESSION_ID);
    let uid = otlp::get_str(attrs, attr::SESSION_UID);
    let (id, uid) = match (id, uid) {
        (None, None) => return Ok(None),
        (Some(id), Some(uid)) => (id, uid),
        _ => return Err(why::SESSION),
    };
    let valid = id.len() == 16
        && is_hex(id)
        && uid.len() <= MAX_SESSION_UID
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && uid.strip_suffix(id).is_some_and(|rest| rest.ends_with('-'));
    if valid {
        Ok(Some((id.to_owned(), uid.to_owned())))
    } else {
        Err(why::SESSION)
    }
}

fn ns_to_ms(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn rfc3339_ms(s: Option<&str>) -> Option<i64> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The server's clock, and how far ahead the host's is.
#[derive(Clone, Copy, Debug)]
struct Clock {
    now_ms: i64,
    skew_ms: i64,
}

impl Clock {
    /// A host's time as the server's: one in the future (past [`FUTURE_MS`]) less
    /// the host's skew, and never after now.
    fn fix(self, t: i64) -> i64 {
        if t > self.now_ms + FUTURE_MS {
            (t - self.skew_ms).min(self.now_ms)
        } else {
            t
        }
    }
}

fn one(
    out: &mut Batch,
    host: &str,
    record: &LogRecord,
    limits: &Limits,
    clock: Clock,
) -> Result<(), &'static str> {
    let kind = otlp::record_kind(record);
    match kind {
        RecordKind::Other => return Err(why::NOT_GUARD),
        // The host's row is the heartbeat.
        RecordKind::Heartbeat => return Ok(()),
        RecordKind::Summary | RecordKind::Event(_) => {}
    }
    let attrs = &record.attributes;
    let record_id = otlp::get_str(attrs, attr::RECORD_ID)
        .filter(|id| otlp::is_record_id(id))
        .ok_or(why::RECORD_ID)?
        .to_owned();
    let session = session(attrs)?;
    let mut body = otlp::body_json(record);
    // A host exporting OCSF (`[export] schema = "ocsf"`): the event is read back
    // from its activity record; its Detection Finding repeats the violation the
    // activity carries (violations are counted from the summaries), so it is
    // taken as received and not stored.
    if matches!(kind, RecordKind::Event(_)) && guard_common::ocsf::is_ocsf(&body) {
        match guard_common::ocsf::event_of(&body) {
            Ok(Some(event)) => body = event,
            Ok(None) => return Ok(()),
            Err(_) => return Err(why::EVENT),
        }
    }
    let time_ms = ns_to_ms(record.time_unix_nano);
    match kind {
        RecordKind::Summary => {
            let (session_id, session_uid) = session.ok_or(why::SESSION)?;
            let text = body.to_string();
            if text.len() > limits.max_summary {
                return Err(why::TOO_BIG);
            }
            let report: Report = serde_json::from_value(body).map_err(|_| why::REPORT)?;
            let observed = match record.observed_time_unix_nano {
                0 => record.time_unix_nano,
                t => t,
            };
            let row = summary(SummaryInput {
                host,
                session_id,
                session_uid,
                record_id,
                attrs,
                report: &report,
                text,
                time_ms,
                observed_ns: clamp(observed),
                clock,
            })?;
            out.summaries.push(row);
        }
        RecordKind::Event(kind) => {
            let valid_kind = !kind.is_empty()
                && kind.len() <= 32
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
            if !valid_kind || !body.is_object() {
                return Err(why::EVENT);
            }
            let session_uid = match session {
                Some((_, uid)) => uid,
                None if DAEMON_KINDS.contains(&kind.as_str()) => String::new(),
                None => return Err(why::SESSION),
            };
            let event = body.to_string();
            if event.len() > limits.max_event {
                return Err(why::TOO_BIG);
            }
            let ts_ms = if time_ms > 0 {
                time_ms
            } else {
                rfc3339_ms(body.get("ts").and_then(Value::as_str)).unwrap_or(0)
            };
            let rule = field(attrs, attr::RULE)?.or_else(|| bounded(body.get("rule")));
            let outcome = field(attrs, attr::OUTCOME)?.or_else(|| bounded(body.get("outcome")));
            out.events.push(EventRow {
                host: host.to_owned(),
                record_id,
                session_uid,
                ts_ms,
                text: text_of(&kind, &body, rule.as_deref(), outcome.as_deref()),
                kind,
                rule,
                outcome,
                event,
            });
        }
        RecordKind::Other | RecordKind::Heartbeat => return Err(why::NOT_GUARD),
    }
    Ok(())
}

fn bounded(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD)
        .map(str::to_owned)
}

struct SummaryInput<'a> {
    host: &'a str,
    session_id: String,
    session_uid: String,
    record_id: String,
    attrs: &'a [KeyValue],
    report: &'a Report,
    text: String,
    time_ms: i64,
    observed_ns: i64,
    clock: Clock,
}

fn summary(i: SummaryInput<'_>) -> Result<SummaryRow, &'static str> {
    let r = i.report;
    let attrs = i.attrs;
    let state = match otlp::get_str(attrs, attr::SESSION_STATE) {
        Some("running") => "running",
        Some("ended") => "ended",
        None if r.ended.is_some() => "ended",
        None => "running",
        Some(_) => return Err(why::STATE),
    };
    let seq = otlp::get_int(attrs, attr::SUMMARY_SEQ).unwrap_or(0);
    if seq < 0 {
        return Err(why::STATE);
    }
    let from_report =
        |v: Option<&String>| v.filter(|s| !s.is_empty() && s.len() <= MAX_FIELD).cloned();
    // The attributes first (the contract), the report where they are missing.
    let or_report = |key, v: Option<&String>| -> Result<Option<String>, &'static str> {
        Ok(field(attrs, key)?.or_else(|| from_report(v)))
    };
    let repo = r.repository.as_ref();
    let count = |items: usize, omitted: u64| clamp(items as u64 + omitted);
    let files = |f: &guard_common::report::Files| {
        count(f.secrets.items.len(), f.secrets.omitted)
            + count(f.workspace.items.len(), f.workspace.omitted)
            + count(f.outside.items.len(), f.outside.omitted)
            + count(f.system.items.len(), f.system.omitted)
    };
    let model = r
        .destinations
        .items
        .iter()
        .filter(|d| d.class.as_deref() == Some("model"));
    let model_out = model
        .clone()
        .map(|d| d.bytes_out)
        .fold(0u64, u64::saturating_add);
    let model_in = model.map(|d| d.bytes_in).fold(0u64, u64::saturating_add);
    let host_started_ms = rfc3339_ms(r.started.as_deref()).unwrap_or(i.time_ms);
    let started_ms = i.clock.fix(host_started_ms);
    let ended_ms = rfc3339_ms(r.ended.as_deref()).map(|t| i.clock.fix(t));
    let violation_rows = r
        .violations
        .items
        .iter()
        .enumerate()
        .map(|(n, v)| ViolationRow {
            ordinal: n as i64,
            ts_ms: rfc3339_ms(Some(&v.ts)).map_or(started_ms, |t| i.clock.fix(t)),
            pid: i64::from(v.pid),
            comm: cut(&v.comm, MAX_FIELD),
            what: cut(&v.what, MAX_FIELD),
            rule: cut(&v.rule, MAX_FIELD),
            action: cut(&v.action, MAX_FIELD),
            outcome: cut(&v.outcome, MAX_FIELD),
            alert: v.alert,
        })
        .collect();
    Ok(SummaryRow {
        host: i.host.to_owned(),
        session_uid: i.session_uid,
        session_id: i.session_id,
        record_id: i.record_id,
        seq,
        observed_ns: i.observed_ns,
        state,
        state_rank: i64::from(state == "ended"),
        agent: or_report(attr::AGENT_NAME, r.agent.as_ref())?,
        agent_version: or_report(attr::AGENT_VERSION, r.agent_version.as_ref())?,
        user_name: or_report(attr::USER_NAME, r.user.as_ref())?,
        uid: otlp::get_int(attrs, attr::USER_ID).or(r.uid.map(i64::from)),
        repo_url: or_report(attr::VCS_URL, repo.and_then(|r| r.url.as_ref()))?,
        repo_branch: or_report(attr::VCS_BRANCH, repo.and_then(|r| r.branch.as_ref()))?,
        repo_commit: or_report(attr::VCS_REVISION, repo.and_then(|r| r.commit.as_ref()))?,
        workspace: from_report(r.workspace.as_ref()),
        conversation_id: or_report(attr::CONVERSATION_ID, r.agent_threads.first())?,
        started_ms,
        host_started_ms: (host_started_ms != started_ms).then_some(host_started_ms),
        ended_ms,
        duration_ms: r.duration_ms.map_or_else(
            || ended_ms.map_or(0, |e| e.saturating_sub(started_ms).max(0)),
            clamp,
        ),
        commands: count(r.commands.items.len(), r.commands.omitted),
        files_read: files(&r.read),
        files_written: files(&r.written),
        secrets_read: count(
            r.secret_egress.secrets.items.len(),
            r.secret_egress.secrets.omitted,
        ),
        bytes_out: clamp(r.bytes_out),
        bytes_in: clamp(r.bytes_in),
        model_bytes_out: clamp(model_out),
        model_bytes_in: clamp(model_in),
        violations: count(r.violations.items.len(), r.violations.omitted),
        summary: i.text,
        violation_rows,
        destination_rows: destinations(r),
        package_rows: packages(r),
    })
}

/// A report's packages, each version once, with whether an install script of it
/// ran.
fn packages(r: &Report) -> Vec<PackageRow> {
    let mut rows: Vec<PackageRow> = r
        .packages
        .items
        .iter()
        .map(|p| PackageRow {
            ecosystem: cut(&p.ecosystem, MAX_FIELD),
            name: cut(&p.name, MAX_FIELD),
            version: cut(p.version.as_deref().unwrap_or_default(), MAX_FIELD),
            install_script: r
                .scripts
                .items
                .iter()
                .any(|s| s.install && s.package == p.name),
        })
        .collect();
    rows.sort();
    // `later` goes, `kept` stays with both's install script.
    rows.dedup_by(|later, kept| {
        let same = (&later.ecosystem, &later.name, &later.version)
            == (&kept.ecosystem, &kept.name, &kept.version);
        kept.install_script |= same && later.install_script;
        same
    });
    rows
}

/// A report's destinations by name (else address), their bytes and connects added.
fn destinations(r: &Report) -> Vec<DestinationRow> {
    let mut by: std::collections::BTreeMap<String, DestinationRow> = Default::default();
    for d in &r.destinations.items {
        let dest = d
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(&d.addr);
        if dest.is_empty() {
            continue;
        }
        let dest = cut(dest, MAX_FIELD);
        let row = by.entry(dest.clone()).or_insert_with(|| DestinationRow {
            dest,
            class: cut(d.class.as_deref().unwrap_or("other"), 32),
            bytes_out: 0,
            connects: 0,
        });
        row.bytes_out = row.bytes_out.saturating_add(clamp(d.bytes_out));
        row.connects = row
            .connects
            .saturating_add(clamp(d.connects.saturating_add(d.sends)));
    }
    by.into_values().collect()
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// One line for people about an event: the host's own words for it (what `guard
/// logs` shows, [`EventLine::what_resolved`]), and the rule's outcome. A body
/// whose fields this server cannot read is stored as it came, under a line that
/// says so.
fn text_of(kind: &str, e: &Value, rule: Option<&str>, outcome: Option<&str>) -> String {
    let mut line = match EventLine::deserialize(e) {
        Ok(line) => line.what_resolved(),
        Err(_) => format!("{kind} (fields this server cannot read)"),
    };
    if let Some(rule) = rule {
        line = format!("{line} [{rule}: {}]", outcome.unwrap_or("?"));
    }
    cut(line.trim_end(), MAX_TEXT)
}

#[cfg(test)]
mod tests;
