//! Events and session summaries as OpenTelemetry log records (docs/export.md):
//! the event as the audit log writes it becomes the body, and the attributes a
//! receiver indexes on are lifted from it under their semantic-convention names.

use guard_common::otlp::{self, attr, kv, kv_int, severity};
use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    logs::v1::LogRecord,
    resource::v1::Resource,
};
use serde_json::Value;

/// The host guard runs on, as the resource of every batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// `/etc/machine-id`.
    pub id: String,
    pub boot_id: String,
    pub arch: String,
    pub kernel: String,
    pub policy: String,
    pub mode: String,
    /// Enforcement action → tier, as `policy_loaded` reports them.
    pub tiers: Vec<(String, String)>,
    /// Extra resource attributes (`[export] resource`, `k8s.node.name` from the
    /// environment).
    pub extra: Vec<(String, String)>,
}

impl Host {
    /// The resource of every batch this host sends.
    pub fn resource(&self) -> Resource {
        let mut attributes = vec![
            kv(attr::SERVICE_NAME, "guard"),
            kv(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
            kv(attr::HOST_NAME, &self.name),
            kv(attr::HOST_ID, &self.id),
            kv(attr::HOST_ARCH, &self.arch),
            kv(attr::OS_TYPE, "linux"),
            kv(attr::OS_VERSION, &self.kernel),
            kv(attr::BOOT_ID, &self.boot_id),
            kv(attr::POLICY_NAME, &self.policy),
            kv(attr::POLICY_MODE, &self.mode),
        ];
        let tiers: serde_json::Map<String, Value> = self
            .tiers
            .iter()
            .map(|(a, t)| (a.clone(), Value::String(t.clone())))
            .collect();
        attributes.push(KeyValue {
            key: attr::TIERS.to_owned(),
            value: Some(otlp::json_to_any(&Value::Object(tiers))),
            ..Default::default()
        });
        attributes.extend(self.extra.iter().map(|(k, v)| kv(k, v)));
        Resource {
            attributes,
            ..Default::default()
        }
    }

    /// The session's id across this host's boots.
    pub fn session_uid(&self, session: &str) -> String {
        otlp::session_uid(&self.id, &self.boot_id, session)
    }
}

/// The instrumentation scope of every batch.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: otlp::SCOPE.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// An RFC 3339 time (an event's `ts`) as ns since the epoch; 0 when it is not one.
pub(super) fn rfc3339_ns(ts: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .map_or(0, |n| n.max(0) as u64)
}

pub(super) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The severity of an event by its `outcome`: WARN for a violation only reported,
/// ERROR for one that was stopped, INFO otherwise.
pub(super) fn severity(outcome: Option<&str>) -> (i32, &'static str) {
    match outcome {
        Some("killed" | "denied" | "deferred") => (severity::ERROR, "ERROR"),
        Some(_) => (severity::WARN, "WARN"),
        None => (severity::INFO, "INFO"),
    }
}

/// The top-level strings of an event lifted into attributes, in their order.
pub(super) const LIFTED_STRINGS: [(&str, &str); 14] = [
    ("comm", attr::PROCESS_EXECUTABLE_NAME),
    ("exe", attr::PROCESS_EXECUTABLE_PATH),
    ("role", attr::PROCESS_ROLE),
    ("agent_thread", attr::CONVERSATION_ID),
    ("package", attr::PACKAGE_NAME),
    ("tool_call", attr::TOOL_CALL_ID),
    ("user", attr::USER_NAME),
    ("container", attr::CONTAINER_ID),
    ("pod_name", attr::K8S_POD_NAME),
    ("namespace", attr::K8S_NAMESPACE_NAME),
    ("dest_class", attr::DESTINATION_CLASS),
    ("rule", attr::RULE),
    ("action", attr::ACTION),
    ("outcome", attr::OUTCOME),
];

/// Whether an event of `kind` has its `path` as `file.path`.
pub(super) fn has_file_path(kind: &str) -> bool {
    matches!(kind, "open" | "unix" | "route")
}

/// Whether an event of `kind` has a server (address, port, transport).
pub(super) fn has_server(kind: &str) -> bool {
    matches!(kind, "connect" | "send" | "flow")
}

/// An audit-log event (one JSON object) as a log record, without its id (the
/// spool adds it). `session_uid` names the session across boots. The export
/// writes events with [`super::wire::Encoder`], which makes the same record
/// straight from the line; this one serves the OCSF bodies and the tests.
pub fn event(event: &Value, host: &Host) -> LogRecord {
    let kind = str_of(event, "kind").unwrap_or("unknown");
    let mut a: Vec<KeyValue> = vec![kv(attr::EVENT_KIND, kind)];
    if let Some(s) = str_of(event, "session") {
        a.push(kv(attr::SESSION_ID, s));
        a.push(kv(attr::SESSION_UID, host.session_uid(s)));
    }
    let int = |key| event.get(key).and_then(Value::as_i64);
    if let Some(pid) = int("pid") {
        a.push(kv_int(attr::PROCESS_PID, pid));
    }
    if let Some(ppid) = int("ppid") {
        a.push(kv_int(attr::PROCESS_PARENT_PID, ppid));
    }
    for (key, name) in LIFTED_STRINGS {
        if let Some(v) = str_of(event, key) {
            a.push(kv(name, v));
        }
    }
    if let Some(uid) = int("uid") {
        a.push(kv_int(attr::USER_ID, uid));
    }
    if let Some(argv) = event.get("argv").and_then(Value::as_array) {
        let line: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        a.push(kv(attr::PROCESS_COMMAND_LINE, line.join(" ")));
    }
    if has_file_path(kind)
        && let Some(path) = str_of(event, "path")
    {
        a.push(kv(attr::FILE_PATH, path));
    }
    if has_server(kind) {
        if let Some(server) = str_of(event, "host").or_else(|| str_of(event, "addr")) {
            a.push(kv(attr::SERVER_ADDRESS, server));
        }
        if let Some(port) = int("port") {
            a.push(kv_int(attr::SERVER_PORT, port));
        }
        if let Some(proto) = str_of(event, "proto") {
            a.push(kv(attr::NETWORK_TRANSPORT, proto));
        }
    }
    let (number, text) = severity(str_of(event, "outcome"));
    LogRecord {
        time_unix_nano: str_of(event, "ts").map_or(0, rfc3339_ns),
        observed_time_unix_nano: now_ns(),
        severity_number: number,
        severity_text: text.to_owned(),
        event_name: format!("{}{kind}", otlp::EVENT_PREFIX),
        body: Some(otlp::json_to_any(event)),
        attributes: a,
        ..Default::default()
    }
}

/// A heartbeat: the daemon is alive (its host is the batch's resource).
pub fn heartbeat() -> LogRecord {
    let now = now_ns();
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number: severity::INFO,
        severity_text: "INFO".to_owned(),
        event_name: otlp::HEARTBEAT_EVENT.to_owned(),
        ..Default::default()
    }
}

/// An audit-log event as log records whose bodies are its OCSF records (`[export]
/// schema = "ocsf"`): the activity, and a Detection Finding after a violation. Each
/// has the event's attributes; a receiver that wants guard's own event reads it
/// back from the activity (guard_common::ocsf::event_of), as the fleet server does.
pub fn ocsf_events(ev: &Value, host: &Host) -> Vec<LogRecord> {
    let native = event(ev, host);
    let ctx = guard_common::ocsf::Context {
        hostname: &host.name,
        host_uid: (!host.id.is_empty()).then_some(host.id.as_str()),
        product_version: env!("CARGO_PKG_VERSION"),
    };
    guard_common::ocsf::records(ev, &ctx)
        .iter()
        .map(|r| LogRecord {
            body: Some(otlp::json_to_any(r)),
            ..native.clone()
        })
        .collect()
}

/// What a summary says about its session beyond the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SummaryMeta {
    pub session: String,
    pub ended: bool,
    /// 1, 2, … for this session on this daemon.
    pub seq: u64,
}

/// A session's summary (its report, as JSON, already bounded) as a log record,
/// without its id.
pub fn summary(report: &Value, meta: &SummaryMeta, host: &Host) -> LogRecord {
    let mut a = vec![
        kv(attr::SESSION_ID, &meta.session),
        kv(attr::SESSION_UID, host.session_uid(&meta.session)),
        kv(
            attr::SESSION_STATE,
            if meta.ended { "ended" } else { "running" },
        ),
        kv_int(attr::SUMMARY_SEQ, meta.seq as i64),
    ];
    let strings = [
        ("agent", attr::AGENT_NAME),
        ("agent_version", attr::AGENT_VERSION),
        ("user", attr::USER_NAME),
    ];
    for (key, name) in strings {
        if let Some(v) = str_of(report, key) {
            a.push(kv(name, v));
        }
    }
    if let Some(uid) = report.get("uid").and_then(Value::as_i64) {
        a.push(kv_int(attr::USER_ID, uid));
    }
    if let Some(thread) = report
        .get("agent_threads")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(Value::as_str)
    {
        a.push(kv(attr::CONVERSATION_ID, thread));
    }
    if let Some(repo) = report.get("repository") {
        for (key, name) in [
            ("url", attr::VCS_URL),
            ("branch", attr::VCS_BRANCH),
            ("commit", attr::VCS_REVISION),
        ] {
            if let Some(v) = str_of(repo, key) {
                a.push(kv(name, v));
            }
        }
    }
    let now = now_ns();
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number: severity::INFO,
        severity_text: "INFO".to_owned(),
        event_name: otlp::SUMMARY_EVENT.to_owned(),
        body: Some(otlp::json_to_any(report)),
        attributes: a,
        ..Default::default()
    }
}

/// `record` with its id (made from the spool's id and its sequence number), encoded.
pub fn encode_with_id(mut record: LogRecord, spool: u64, seq: u64) -> Vec<u8> {
    use prost::Message as _;
    record
        .attributes
        .insert(0, kv(attr::RECORD_ID, otlp::record_id(spool, seq)));
    record.encode_to_vec()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use guard_common::otlp::{get_int, get_str};

    pub(in crate::export) fn host() -> Host {
        Host {
            name: "ws-1".into(),
            id: "0123456789abcdef0123456789abcdef".into(),
            boot_id: "b007".into(),
            ..Host::default()
        }
    }

    #[test]
    fn an_event_keeps_its_json_as_body_and_lifts_semantic_attributes() {
        let ev: Value = serde_json::from_str(
            r#"{"schema":2,"ts":"2026-11-23T10:00:00.5Z","kind":"exec","session":"00000000000000aa",
               "pid":42,"ppid":41,"comm":"curl","role":"tool","agent_thread":"0199-thread",
               "exe":"/usr/bin/curl","argv":["curl","-s","http://x"],"rule":"no-curl",
               "action":"kill","outcome":"killed"}"#,
        )
        .expect("json");
        let r = event(&ev, &host());
        assert_eq!(r.event_name, "guard.event.exec");
        assert_eq!(r.severity_number, severity::ERROR);
        assert_eq!(r.time_unix_nano, 1_795_428_000_500_000_000);
        let a = &r.attributes;
        assert_eq!(get_int(a, attr::PROCESS_PID), Some(42));
        assert_eq!(
            get_str(a, attr::PROCESS_COMMAND_LINE),
            Some("curl -s http://x")
        );
        assert_eq!(get_str(a, attr::CONVERSATION_ID), Some("0199-thread"));
        assert_eq!(
            get_str(a, attr::SESSION_UID),
            Some("0123456789abcdef0123456789abcdef-b007-00000000000000aa")
        );
        assert_eq!(get_str(a, attr::OUTCOME), Some("killed"));
        let body = otlp::body_json(&r);
        assert_eq!(body, ev, "the body is the event as written");
        let ocsf = ocsf_events(&ev, &host());
        assert_eq!(ocsf.len(), 2, "the activity, and the kill's finding");
        assert_eq!(otlp::body_json(&ocsf[1])["class_uid"], 2004);
        let activity = otlp::body_json(&ocsf[0]);
        assert!(guard_common::ocsf::is_ocsf(&activity), "{activity}");
        assert_eq!(
            guard_common::ocsf::event_of(&activity).expect("an activity"),
            Some(ev),
            "the OCSF body carries the event"
        );
        assert_eq!(ocsf[0].attributes, r.attributes, "the same attributes");
        let encoded = encode_with_id(r, 7, 9);
        use prost::Message as _;
        let back = LogRecord::decode(encoded.as_slice()).expect("decodes");
        assert_eq!(
            get_str(&back.attributes, attr::RECORD_ID),
            Some("00000000000000070000000000000009")
        );
    }
}
