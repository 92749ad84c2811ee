use guard_common::otlp::{self, attr};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use serde_json::{Value, json};

use super::Encoder;
use crate::export::record::{self, tests::host};

/// The line through the encoder and through `record::event` + `encode_with_id`,
/// both decoded: equal but for the time each was observed and the body's order.
fn same_record(line: &str) {
    let mut out = vec![0xAA];
    Encoder::default()
        .event(line, &host(), 7, 9, &mut out)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(out[0], 0xAA, "appended to what was there");
    let mut fast = LogRecord::decode(&out[1..]).unwrap_or_else(|e| panic!("{line}: {e}"));
    let value: Value = serde_json::from_str(line).expect("json");
    let slow = record::encode_with_id(record::event(&value, &host()), 7, 9);
    // As many bytes (the observed time is a fixed64 in both; the body's order
    // changes no size).
    assert_eq!(out.len() - 1, slow.len(), "{line}: the same size");
    let mut slow = LogRecord::decode(slow.as_slice()).expect("decodes");
    assert!(fast.observed_time_unix_nano > 0, "observed now");
    fast.observed_time_unix_nano = 0;
    slow.observed_time_unix_nano = 0;
    // The same body but for its order (json_to_any's tree is sorted by key).
    assert_eq!(
        otlp::body_json(&fast),
        otlp::body_json(&slow),
        "{line}: the body"
    );
    fast.body = None;
    slow.body = None;
    assert_eq!(fast, slow, "{line}");
}

#[test]
fn an_audit_line_becomes_the_record_the_tree_would_make() {
    let lines = [
        r#"{"schema":2,"ts":"2026-11-23T10:00:00.5Z","kind":"exec","session":"00000000000000aa","pid":42,"ppid":41,"comm":"curl","role":"tool","agent_thread":"0199-thread","exe":"/usr/bin/curl","argv":["curl","-s","http://x"],"rule":"no-curl","action":"kill","outcome":"killed"}"#,
        r#"{"schema":2,"ts":"2026-11-29T12:00:06.650659595Z","session":"00002a716b1bf991","pid":5513,"ppid":5512,"tid":5513,"comm":"gbw","role":"wrapper","uid":5,"user":"games","cgroup_id":1,"container":null,"kind":"open","path":"/srv/gex/target.6","path_resolved":true,"path_truncated":false,"access":["read"],"flags":524288,"call":"openat","result":"ok","fd":3}"#,
        r#"{"ts":"2026-11-29T12:00:06Z","kind":"connect","session":"s","addr":"10.0.0.1","port":443,"proto":"tcp","dest_class":"public","outcome":"reported"}"#,
        r#"{"ts":"2026-11-29T12:00:06Z","kind":"flow","host":"api.example.com","addr":"10.0.0.1","port":53,"proto":"udp"}"#,
        r#"{"kind":"open","path":"C:\\odd \"quoted\" \u00e9\n","argv":"not an array","pid":-3,"uid":18446744073709551615,"port":1.5}"#,
        r#"{"kind":"exec","argv":["", "a", 3, null, "b", ""],"outcome":null,"ts":"not a time"}"#,
        r#"{"kind":"exec","argv":[]}"#,
        r#"{"nested":{"a":[1,{"b":[]},{}],"c":{"d":true,"e":false}},"f":-0.25,"g":[[],[[]]]}"#,
        r#"{}"#,
        r#"{"kind":"route","path":"/run/x.sock","comm":"a\u0000b","session":"\u00e9t\u00e9"}"#,
    ];
    for line in lines {
        same_record(line);
    }
}

#[test]
fn what_the_daemon_writes_becomes_the_record_the_tree_would_make() {
    // One line of each shape the pipeline writes, built as it builds them.
    let base = json!({"schema": 2, "ts": "2026-11-29T12:01:00.005629792Z",
        "session": "00002a7dd76d1075", "pid": 5712, "ppid": 5669, "tid": 5712, "comm": "gbw",
        "role": "wrapper", "uid": 0, "user": "root", "cgroup_id": 1, "container": null});
    let extra = [
        json!({"kind": "session_start", "agent": "gbw", "root_pid": 5712, "how": "run",
               "cwd": "/tmp/ex", "repository": {"note": "not a git repository"}}),
        json!({"kind": "exec", "exe": "/tmp/gbw", "exe_truncated": false,
               "argv": ["/tmp/gbw", "5:60", "gen"], "argv_truncated": false}),
        json!({"kind": "exit", "exit_code": 0, "root": true}),
        json!({"kind": "session_end", "root_pid": 5712, "stragglers": [], "killed": []}),
        json!({"kind": "open", "path": "/home/dev/.ssh/id_ed25519", "access": ["read"],
               "rule": "ssh-keys", "action": "kill", "outcome": "killed", "count": 3}),
    ];
    for e in extra {
        let mut v = base.clone();
        v.as_object_mut()
            .expect("object")
            .extend(e.as_object().expect("object").clone());
        same_record(&v.to_string());
    }
}

/// Random events (a fixed seed): every JSON type, at every depth, under the keys
/// the attributes lift and others.
#[test]
fn random_events_become_the_record_the_tree_would_make() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const KEYS: [&str; 16] = [
        "kind", "session", "pid", "ppid", "uid", "port", "argv", "path", "host", "addr", "proto",
        "outcome", "comm", "ts", "x", "y",
    ];
    const KINDS: [&str; 5] = ["open", "connect", "flow", "exec", "unix"];
    fn value(next: &mut impl FnMut() -> u64, depth: u32) -> Value {
        match next() % if depth > 2 { 6 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(next().is_multiple_of(2)),
            2 => json!(next() as i64),
            3 => json!(next()),
            4 => json!((next() % 1000) as f64 / 7.0),
            5 => json!(format!("s{}\"\\é", next() % 100)),
            6 => Value::Array((0..next() % 4).map(|_| value(next, depth + 1)).collect()),
            _ => Value::Object(
                (0..next() % 4)
                    .map(|i| (format!("k{i}"), value(next, depth + 1)))
                    .collect(),
            ),
        }
    }
    for _ in 0..2_000 {
        let mut event = serde_json::Map::new();
        for _ in 0..next() % 10 {
            let key = KEYS[(next() % KEYS.len() as u64) as usize];
            let v = if key == "kind" && next().is_multiple_of(2) {
                json!(KINDS[(next() % KINDS.len() as u64) as usize])
            } else {
                value(&mut next, 0)
            };
            event.insert(key.to_owned(), v);
        }
        same_record(&Value::Object(event).to_string());
    }
}

#[test]
fn a_line_that_is_not_an_object_is_refused_and_leaves_nothing() {
    let mut encoder = Encoder::default();
    for line in [
        "[1,2]",
        "\"open\"",
        "{\"kind\":\"open\"",
        "{\"kind\":\"open\"} x",
        "",
    ] {
        let mut out = vec![1, 2, 3];
        assert!(
            encoder.event(line, &host(), 7, 9, &mut out).is_err(),
            "{line:?}"
        );
        assert_eq!(out, [1, 2, 3], "{line:?}");
    }
    // The encoder is fine after a refusal.
    let mut out = Vec::new();
    encoder
        .event(r#"{"kind":"open"}"#, &host(), 7, 9, &mut out)
        .expect("an object");
    let record = LogRecord::decode(out.as_slice()).expect("decodes");
    assert_eq!(record.event_name, "guard.event.open");
    assert_eq!(
        otlp::get_str(&record.attributes, attr::RECORD_ID),
        Some("00000000000000070000000000000009")
    );
}
