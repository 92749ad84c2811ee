//! The Detection Findings: one after each event that broke a rule, and one for a
//! violation the fleet stored.

extern crate alloc;

use alloc::{borrow::ToOwned, format, string::String};

use serde_json::{Map, Value, json};

use super::{Context, DETECTION_FINDING, control, records, str_of, violation_severity};

/// The Detection Finding of a violation: the rule (as the analytic), what guard
/// did (`action_id`, `disposition_id`), and the activity it is about
/// (`finding_info.related_events`, by its `metadata.uid`).
pub(super) fn finding(
    activity: &Value,
    e: &Map<String, Value>,
    activity_uid: &str,
    time: i64,
    ts: Option<&str>,
    session: Option<&str>,
) -> Value {
    let rule = str_of(e, "rule").unwrap_or("?");
    let (severity_id, severity) = violation_severity(e);
    let (action_id, action, disposition_id, disposition) = control(e);
    let uid = format!("{activity_uid}-finding");
    let mut metadata = activity["metadata"].clone();
    metadata["uid"] = json!(uid);
    if let Some(ts) = ts {
        metadata["original_time"] = json!(ts);
    }
    if let Some(s) = session {
        metadata["correlation_uid"] = json!(s);
    }
    let mut f = json!({
        "class_uid": DETECTION_FINDING.uid,
        "class_name": DETECTION_FINDING.name,
        "category_uid": DETECTION_FINDING.category_uid,
        "category_name": DETECTION_FINDING.category_name,
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": u64::from(DETECTION_FINDING.uid) * 100 + 1,
        "type_name": "Detection Finding: Create",
        "time": time,
        "severity_id": severity_id,
        "severity": severity,
        "metadata": metadata,
        "finding_info": {
            "uid": uid,
            "title": format!("guard rule {rule}"),
            "desc": activity["message"],
            "analytic": {"type_id": 1, "type": "Rule", "name": rule, "uid": rule},
            "related_events": [{
                "uid": activity_uid,
                "type_uid": activity["type_uid"],
                "severity_id": activity["severity_id"],
            }],
            "types": [str_of(e, "kind").unwrap_or("other")],
        },
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "is_alert": e.get("alert") == Some(&Value::Bool(true)),
        "message": activity["message"],
        "device": activity["device"],
    });
    if let Some(actor) = activity.get("actor") {
        f["actor"] = actor.clone();
    }
    let mut evidence = Map::new();
    for key in ["process", "file", "dst_endpoint", "query"] {
        if let Some(v) = activity.get(key) {
            evidence.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(p) = activity.pointer("/actor/process")
        && !evidence.contains_key("process")
    {
        evidence.insert("process".to_owned(), p.clone());
    }
    if !evidence.is_empty() {
        f["evidences"] = json!([evidence]);
    }
    // guard's own words for what it did, as the event has them.
    let mut unmapped = Map::new();
    for key in [
        "rule",
        "rules",
        "action",
        "outcome",
        "outcome_error",
        "would",
        "secret",
        "kill_latency_us",
        "anomaly",
    ] {
        if let Some(v) = e.get(key) {
            unmapped.insert(key.to_owned(), v.clone());
        }
    }
    f["unmapped"] = Value::Object(unmapped);
    f
}

/// A violation as a store keeps it (the fleet server's, from the sessions'
/// summaries): when, which process, what it did, and what guard did.
#[derive(Clone, Copy, Debug)]
pub struct StoredViolation<'a> {
    /// A stable id of this violation where it is stored (deduplication).
    pub uid: &'a str,
    pub ts_ms: i64,
    /// The session (16 hex digits).
    pub session: &'a str,
    pub pid: i64,
    pub comm: &'a str,
    /// `open /home/dev/.ssh/id_rsa`, as the report words it.
    pub what: &'a str,
    pub rule: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub alert: bool,
}

/// The Detection Finding of a stored violation (no activity record with it: the
/// finding stands alone, its `what` in the message and under `unmapped`).
pub fn violation_finding(v: &StoredViolation<'_>, ctx: &Context<'_>) -> Value {
    let ts = chrono::DateTime::from_timestamp_millis(v.ts_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let kind = v.what.split_whitespace().next().unwrap_or("violation");
    let mut e = Map::new();
    if let Some(ts) = &ts {
        e.insert("ts".to_owned(), json!(ts));
    }
    e.insert("session".to_owned(), json!(v.session));
    e.insert("pid".to_owned(), json!(v.pid));
    e.insert("comm".to_owned(), json!(v.comm));
    e.insert("kind".to_owned(), json!(kind));
    e.insert("rule".to_owned(), json!(v.rule));
    e.insert("action".to_owned(), json!(v.action));
    e.insert("outcome".to_owned(), json!(v.outcome));
    e.insert("alert".to_owned(), json!(v.alert));
    e.insert("rules".to_owned(), json!([v.rule]));
    let event = Value::Object(e);
    let records = records(&event, ctx);
    let Some(mut f) = records.into_iter().nth(1) else {
        return Value::Null;
    };
    f["metadata"]["uid"] = json!(v.uid);
    f["metadata"]["log_name"] = json!("fleet");
    f["finding_info"]["uid"] = json!(v.uid);
    if let Some(info) = f["finding_info"].as_object_mut() {
        info.remove("related_events");
    }
    let message = format!("{} broke rule {} ({})", v.what, v.rule, v.outcome);
    f["message"] = json!(message);
    f["finding_info"]["desc"] = json!(message);
    f["unmapped"]["what"] = json!(v.what);
    f
}
