//! The export's records as OpenTelemetry logs (docs/export.md): the attribute and
//! event names both ends use, record ids, and the mapping between JSON (the audit
//! log's events, the session reports) and OTLP's `AnyValue`. The daemon's exporter
//! builds records with these; the fleet server reads them back with the same.

extern crate alloc;
extern crate std;

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec::Vec,
};

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as Any,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Map, Number, Value};

/// Names of the resource's and the records' attributes (OpenTelemetry semantic
/// conventions where one exists, guard's own under `guard.`).
pub mod attr {
    pub const SERVICE_NAME: &str = "service.name";
    pub const SERVICE_VERSION: &str = "service.version";
    pub const HOST_NAME: &str = "host.name";
    pub const HOST_ID: &str = "host.id";
    pub const HOST_ARCH: &str = "host.arch";
    pub const OS_TYPE: &str = "os.type";
    pub const OS_VERSION: &str = "os.version";
    pub const BOOT_ID: &str = "guard.boot.id";
    pub const POLICY_NAME: &str = "guard.policy.name";
    pub const POLICY_MODE: &str = "guard.policy.mode";
    pub const TIERS: &str = "guard.tiers";
    /// The fleet group whose policy the host takes (`[fleet] group`).
    pub const FLEET_GROUP: &str = "guard.fleet.group";
    /// What the host says of itself (`[fleet] labels`), `env=ci,team=payments`.
    pub const FLEET_LABELS: &str = "guard.fleet.labels";
    pub const K8S_NODE_NAME: &str = "k8s.node.name";
    pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";

    pub const RECORD_ID: &str = "guard.record.id";
    pub const SESSION_ID: &str = "guard.session.id";
    pub const SESSION_UID: &str = "guard.session.uid";
    pub const SESSION_STATE: &str = "guard.session.state";
    pub const SUMMARY_SEQ: &str = "guard.summary.seq";

    pub const EVENT_KIND: &str = "guard.event.kind";
    pub const PROCESS_PID: &str = "process.pid";
    pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
    pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
    pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
    pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
    pub const PROCESS_ROLE: &str = "guard.process.role";
    pub const USER_ID: &str = "user.id";
    pub const USER_NAME: &str = "user.name";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const AGENT_NAME: &str = "guard.agent.name";
    pub const AGENT_VERSION: &str = "guard.agent.version";
    pub const FILE_PATH: &str = "file.path";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    pub const DESTINATION_CLASS: &str = "guard.destination.class";
    pub const PACKAGE_NAME: &str = "guard.package.name";
    /// OpenTelemetry's GenAI convention for a tool call's id.
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const CONTAINER_ID: &str = "container.id";
    pub const K8S_POD_NAME: &str = "k8s.pod.name";
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    pub const RULE: &str = "guard.rule";
    pub const ACTION: &str = "guard.action";
    pub const OUTCOME: &str = "guard.outcome";
    pub const VCS_URL: &str = "vcs.repository.url.full";
    pub const VCS_BRANCH: &str = "vcs.ref.head.name";
    pub const VCS_REVISION: &str = "vcs.ref.head.revision";
}

/// `event_name` of a session summary.
pub const SUMMARY_EVENT: &str = "guard.session.summary";
/// `event_name` of a daemon's heartbeat: sent every summary interval when nothing
/// else left, so that an idle host still reports (its resource is the host).
pub const HEARTBEAT_EVENT: &str = "guard.host.heartbeat";
/// `event_name` prefix of an event record: `guard.event.<kind>`.
pub const EVENT_PREFIX: &str = "guard.event.";
/// The instrumentation scope's name.
pub const SCOPE: &str = "guard";

/// Severity numbers guard uses (OpenTelemetry's scale).
pub mod severity {
    pub const INFO: i32 = 9;
    pub const WARN: i32 = 13;
    pub const ERROR: i32 = 17;
}

/// A record id: the spool's own id (random, made with the spool) and the record's
/// sequence number in it, as 32 hex digits.
pub fn record_id(spool: u64, seq: u64) -> String {
    write_record_id(spool, seq, &mut [0; 32]).to_owned()
}

/// [`record_id`] written into `buf`: no allocation, for the export's every event.
pub fn write_record_id(spool: u64, seq: u64, buf: &mut [u8; 32]) -> &str {
    let (a, b) = buf.split_at_mut(16);
    // 8 bytes into 16 digits each: the sizes match, neither can fail.
    let _ = hex::encode_to_slice(spool.to_be_bytes(), a);
    let _ = hex::encode_to_slice(seq.to_be_bytes(), b);
    std::str::from_utf8(buf).unwrap_or_default()
}

/// Whether `id` has a record id's form (32 lowercase hex digits).
pub fn is_record_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `<host id>-<boot id>-<session id>`: a session's id across boots of its host.
pub fn session_uid(host_id: &str, boot_id: &str, session: &str) -> String {
    let mut uid = String::new();
    write_session_uid(&mut uid, host_id, boot_id, session);
    uid
}

/// [`session_uid`] written into `out` (cleared first).
pub fn write_session_uid(out: &mut String, host_id: &str, boot_id: &str, session: &str) {
    out.clear();
    out.push_str(host_id);
    out.push('-');
    out.push_str(boot_id);
    out.push('-');
    out.push_str(session);
}

/// JSON as an OTLP value: objects become key-value lists (in their order),
/// arrays arrays, integers `int_value` (an unsigned past `i64` a double), other
/// numbers `double_value`, null an empty value.
pub fn json_to_any(value: &Value) -> AnyValue {
    let v = match value {
        Value::Null => None,
        Value::Bool(b) => Some(Any::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(Any::StringValue(s.clone())),
        Value::Array(items) => Some(Any::ArrayValue(ArrayValue {
            values: items.iter().map(json_to_any).collect(),
        })),
        Value::Object(map) => Some(Any::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(json_to_any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value: v }
}

/// An OTLP value as JSON: the inverse of [`json_to_any`] (bytes become base64-free
/// hex strings; a value with nothing set is null).
pub fn any_to_json(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => Value::Number((*i).into()),
        Some(Any::DoubleValue(d)) => Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::BytesValue(b)) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.iter().map(any_to_json).collect()),
        Some(Any::KvlistValue(kv)) => {
            let mut map = Map::new();
            for KeyValue { key, value, .. } in &kv.values {
                map.insert(key.clone(), value.as_ref().map_or(Value::Null, any_to_json));
            }
            Value::Object(map)
        }
        // A value type newer than this guard (none today): kept as its debug form.
        Some(other) => Value::String(format!("{other:?}")),
    }
}

/// A string attribute.
pub fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Any::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Any::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The string value of attribute `key` among `attrs`.
pub fn get_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The integer value of attribute `key` among `attrs` (an integer, or a string of
/// one).
pub fn get_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Any::IntValue(i) => Some(*i),
            Any::StringValue(s) => s.parse().ok(),
            _ => None,
        })
}

/// What a record is, by its `event_name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Summary,
    /// The daemon is alive (and had nothing else to send).
    Heartbeat,
    /// An event of this kind.
    Event(String),
    /// Not one of guard's (another source through a shared collector).
    Other,
}

/// A record's kind from its `event_name`.
pub fn record_kind(record: &LogRecord) -> RecordKind {
    if record.event_name == SUMMARY_EVENT {
        RecordKind::Summary
    } else if record.event_name == HEARTBEAT_EVENT {
        RecordKind::Heartbeat
    } else if let Some(kind) = record.event_name.strip_prefix(EVENT_PREFIX) {
        RecordKind::Event(kind.to_string())
    } else {
        RecordKind::Other
    }
}

/// The record's body as JSON (null when it has none).
pub fn body_json(record: &LogRecord) -> Value {
    record.body.as_ref().map_or(Value::Null, any_to_json)
}

/// Every attribute of `attrs` as a JSON object (for views that show them all).
pub fn attributes_json(attrs: &[KeyValue]) -> Value {
    let mut map = Map::new();
    for a in attrs {
        map.insert(
            a.key.clone(),
            a.value.as_ref().map_or(Value::Null, any_to_json),
        );
    }
    Value::Object(map)
}

/// Keys of `attrs`, for error messages.
pub fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|a| a.key.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_the_round_trip_through_anyvalue() {
        let json: Value = serde_json::from_str(
            r#"{"kind":"exec","pid":42,"argv":["sh","-c","x"],"big":18446744073709551615,
                "ratio":0.5,"ok":true,"none":null,"nested":{"a":[1,{"b":"c"}]}}"#,
        )
        .expect("json");
        let back = any_to_json(&json_to_any(&json));
        assert_eq!(back["kind"], "exec");
        assert_eq!(back["pid"], 42);
        assert_eq!(back["argv"][2], "x");
        assert_eq!(back["ok"], true);
        assert_eq!(back["none"], Value::Null);
        assert_eq!(back["nested"]["a"][1]["b"], "c");
        assert_eq!(back["ratio"], 0.5);
        // Past i64: a double, not a wrapped negative number.
        assert!(back["big"].as_f64().is_some_and(|f| f > 1.8e19));
    }

    #[test]
    fn record_ids_are_fixed_width_hex() {
        let id = record_id(0xdead_beef, 7);
        assert_eq!(id, "00000000deadbeef0000000000000007");
        assert!(is_record_id(&id));
        assert!(!is_record_id("xyz"));
        assert!(!is_record_id(&id.to_uppercase()));
    }
}
