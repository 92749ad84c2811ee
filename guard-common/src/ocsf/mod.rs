//! guard's events in the SIEM's own schema: OCSF 1.7 (the Open Cybersecurity Schema
//! Framework, docs/export.md "OCSF").
//!
//! Each audit-log event becomes one OCSF record of the class that fits its kind
//! (Process Activity, File System Activity, Network Activity, DNS Activity, or the
//! Base Event for the daemon's own kinds), and an event that broke a rule is
//! followed by a Detection Finding that names it (`finding_info.related_events`).
//!
//! The mapping works on the event's JSON object, so that a field this code does not
//! know (a newer daemon's) is never lost: a field OCSF has a place for is *moved*
//! there unchanged, and every other field is kept under `unmapped`. The event is
//! therefore read back exactly from its activity record ([`event_of`]): `guard
//! events` reads an audit log written as OCSF as it reads the native one.

extern crate alloc;
extern crate std;

mod finding;

use self::finding::finding;
pub use self::finding::{StoredViolation, violation_finding};

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec,
    vec::Vec,
};

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// The OCSF version the records follow (`metadata.version`).
pub const VERSION: &str = "1.7.0";

/// The profiles the records use: `host` (`device`, `actor`) and `security_control`
/// (`action_id`, `disposition_id`, `is_alert`).
pub const PROFILES: &[&str] = &["host", "security_control"];

/// Where an event happened: the host, and the guard that saw it.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// `uname -n`.
    pub hostname: &'a str,
    /// `/etc/machine-id`, when known.
    pub host_uid: Option<&'a str>,
    /// guard's version.
    pub product_version: &'a str,
}

/// An OCSF class guard's records use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub uid: u32,
    pub name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
}

pub const BASE_EVENT: Class = Class {
    uid: 0,
    name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
};
pub const FILE_SYSTEM_ACTIVITY: Class = Class {
    uid: 1001,
    name: "File System Activity",
    category_uid: 1,
    category_name: "System Activity",
};
pub const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};
pub const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};
pub const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub const DNS_ACTIVITY: Class = Class {
    uid: 4003,
    name: "DNS Activity",
    category_uid: 4,
    category_name: "Network Activity",
};

/// The class of an event kind's records (a kind this code does not know: the Base
/// Event, its fields all under `unmapped`).
pub fn class_of(kind: &str) -> Class {
    match kind {
        "exec" | "fork" | "exit" | "route" | "tamper" | "session_start" | "session_end"
        | "tool_call" | "limit" => PROCESS_ACTIVITY,
        "open" => FILE_SYSTEM_ACTIVITY,
        "connect" | "send" | "flow" | "unix" => NETWORK_ACTIVITY,
        "dns" => DNS_ACTIVITY,
        _ => BASE_EVENT,
    }
}

/// A value's expected JSON type where it is moved to.
#[derive(Clone, Copy)]
enum Is {
    Str,
    Int,
    Ip,
}

impl Is {
    fn holds(self, v: &Value) -> bool {
        match self {
            Self::Str => v.as_str().is_some_and(|s| !s.is_empty()),
            Self::Int => v.is_i64() || v.is_u64(),
            Self::Ip => v
                .as_str()
                .is_some_and(|s| s.parse::<core::net::IpAddr>().is_ok()),
        }
    }
}

/// Where the process that acted is: `process` in Process Activity about itself,
/// else `actor.process`.
const ACTOR: &str = "/actor/process";
const PROCESS: &str = "/process";

/// The fields of `kind` OCSF has a place for, moved there unchanged (and read back
/// from there): (field, pointer, type). A pointer starting with `@` is under the
/// acting process's place.
fn moves(kind: &str) -> Vec<(&'static str, &'static str, Is)> {
    let mut m = vec![
        ("pid", "@/pid", Is::Int),
        ("tid", "@/tid", Is::Int),
        ("comm", "@/name", Is::Str),
        ("ppid", "@/parent_process/pid", Is::Int),
        ("user", "@/user/name", Is::Str),
        ("container", "@/container/uid", Is::Str),
        ("container_name", "@/container/name", Is::Str),
        ("image", "@/container/image/name", Is::Str),
    ];
    match kind {
        "exec" => m.push(("exe", "@/file/path", Is::Str)),
        "fork" => m.push(("child_pid", "/process/pid", Is::Int)),
        "exit" => m.push(("exit_code", "/exit_code", Is::Int)),
        "open" => {
            m.push(("path", "/file/path", Is::Str));
            m.push(("result", "/status_detail", Is::Str));
        }
        "connect" | "send" | "flow" => {
            m.push(("addr", "/dst_endpoint/ip", Is::Ip));
            m.push(("port", "/dst_endpoint/port", Is::Int));
            m.push(("host", "/dst_endpoint/hostname", Is::Str));
            m.push(("proto", "/connection_info/protocol_name", Is::Str));
            m.push(("result", "/status_detail", Is::Str));
            m.push(("flow_id", "/connection_info/uid", Is::Str));
            m.push(("bytes_out", "/traffic/bytes_out", Is::Int));
            m.push(("bytes_in", "/traffic/bytes_in", Is::Int));
            m.push(("packets_out", "/traffic/packets_out", Is::Int));
            m.push(("packets_in", "/traffic/packets_in", Is::Int));
        }
        "unix" => {
            m.push(("path", "/dst_endpoint/name", Is::Str));
            m.push(("result", "/status_detail", Is::Str));
        }
        "dns" => {
            m.push(("server", "/dst_endpoint/ip", Is::Ip));
            m.push(("port", "/dst_endpoint/port", Is::Int));
            m.push(("name", "/query/hostname", Is::Str));
            m.push(("qtype", "/query/type", Is::Str));
            m.push(("rcode", "/rcode", Is::Str));
        }
        "route" | "tamper" | "session_start" | "session_end" | "limit" => {
            m.push(("result", "/status_detail", Is::Str));
        }
        _ => {}
    }
    m
}

/// The acting process's place in `kind`'s records.
fn actor_place(kind: &str) -> &'static str {
    match class_of(kind) {
        PROCESS_ACTIVITY if !matches!(kind, "fork" | "tamper") => PROCESS,
        _ => ACTOR,
    }
}

fn resolve(pointer: &'static str, actor: &'static str) -> String {
    match pointer.strip_prefix('@') {
        Some(rest) => format!("{actor}{rest}"),
        None => pointer.to_owned(),
    }
}

/// Sets `pointer` (`/a/b`) in `root`, making the objects on the way.
fn put(root: &mut Map<String, Value>, pointer: &str, value: Value) {
    let mut parts: Vec<&str> = pointer.split('/').skip(1).collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut at = root;
    for p in parts {
        let next = at
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(m) = next else {
            return;
        };
        at = m;
    }
    at.insert(last.to_owned(), value);
}

fn get<'v>(root: &'v Map<String, Value>, pointer: &str) -> Option<&'v Value> {
    let mut parts = pointer.split('/').skip(1);
    let mut v = root.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn str_of<'v>(e: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    e.get(key).and_then(Value::as_str)
}

/// RFC 3339 → unix milliseconds.
fn ms_of(ts: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some(t.timestamp_millis())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A stable id for the event on this host: the same line gives the same id, so a
/// receiver can deduplicate a resend.
fn event_uid(e: &Map<String, Value>, ctx: &Context<'_>) -> String {
    let mut h = Sha256::new();
    h.update(ctx.host_uid.unwrap_or(ctx.hostname).as_bytes());
    h.update([0]);
    h.update(Value::Object(e.clone()).to_string().as_bytes());
    hex(&h.finalize()[..16])
}

/// (activity_id, activity_name) of an event.
fn activity(kind: &str, e: &Map<String, Value>) -> (u32, String) {
    let result = str_of(e, "result").unwrap_or("ok");
    let refused = result == "EPERM";
    let named = |id: u32, name: &str| (id, name.to_owned());
    match kind {
        "exec" | "fork" => named(1, "Launch"),
        "exit" => named(2, "Terminate"),
        "open" => match str_of(e, "call").unwrap_or("") {
            "mkdir" | "link" | "symlink" => named(1, "Create"),
            "rmdir" | "unlink" => named(4, "Delete"),
            "rename" => named(5, "Rename"),
            "truncate" => named(3, "Update"),
            "chmod" | "chown" => named(7, "Set Security"),
            _ => named(14, "Open"),
        },
        "connect" | "unix" if str_of(e, "call").is_none_or(|c| c == "connect") => {
            if refused {
                named(5, "Refuse")
            } else if matches!(result, "ok" | "EINPROGRESS") {
                named(1, "Open")
            } else {
                named(4, "Fail")
            }
        }
        "send" | "unix" => {
            if refused {
                named(5, "Refuse")
            } else if result == "ok" {
                named(6, "Traffic")
            } else {
                named(4, "Fail")
            }
        }
        "flow" => match str_of(e, "reason") {
            Some("close" | "redirect") => named(2, "Close"),
            _ => named(6, "Traffic"),
        },
        "dns" => match str_of(e, "direction") {
            Some("query") => named(1, "Query"),
            _ => named(2, "Response"),
        },
        "tamper" => match str_of(e, "op").unwrap_or("") {
            "signal" => named(2, "Terminate"),
            "ptrace" | "ptrace_access" | "process_vm" | "pidfd_getfd" => named(3, "Open"),
            op => (99, format!("Tamper: {op}")),
        },
        "route" => (
            99,
            format!(
                "Route around the hooks: {}",
                str_of(e, "route").unwrap_or("?")
            ),
        ),
        "session_start" => named(99, "Session Start"),
        "session_end" => named(99, "Session End"),
        "tool_call" => match str_of(e, "phase") {
            Some("end") => named(99, "Tool Call End"),
            _ => named(99, "Tool Call Start"),
        },
        "limit" => named(99, "Records Dropped"),
        other => (99, other.to_owned()),
    }
}

/// OCSF's severity of a violation: stopped 4 (High), reported 3 (Medium), logged
/// 2 (Low); a secret's one level up.
fn violation_severity(e: &Map<String, Value>) -> (u32, &'static str) {
    let base = match str_of(e, "action") {
        Some("kill" | "deny") => 4,
        Some("alert") => 3,
        _ => 2,
    };
    let id = if e.get("secret") == Some(&Value::Bool(true)) {
        base + 1
    } else {
        base
    };
    (
        id,
        match id {
            2 => "Low",
            3 => "Medium",
            4 => "High",
            _ => "Critical",
        },
    )
}

/// (action_id, action, disposition_id, disposition) of a violation's outcome.
fn control(e: &Map<String, Value>) -> (u32, &'static str, u32, &'static str) {
    let (action_id, action) = match str_of(e, "outcome") {
        Some("killed" | "denied") => (2, "Denied"),
        _ => (1, "Allowed"),
    };
    let (disposition_id, disposition) = match str_of(e, "outcome") {
        Some("killed" | "denied") => (2, "Blocked"),
        Some("alerted") => (19, "Alert"),
        Some("logged") => (17, "Logged"),
        Some("not_denied") => (1, "Allowed"),
        Some("gone") => (16, "No Action"),
        Some("failed") => (27, "Error"),
        _ => (0, "Unknown"),
    };
    (action_id, action, disposition_id, disposition)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').find(|p| !p.is_empty()).unwrap_or(path)
}

/// The OCSF records of one audit-log event (its JSON object): the activity, and
/// a Detection Finding after it when the event broke a rule. Anything but an
/// object gives no record.
#[expect(
    clippy::too_many_lines,
    reason = "built in stages that share the event's leftover fields and the record being filled"
)]
pub fn records(event: &Value, ctx: &Context<'_>) -> Vec<Value> {
    let Some(e) = event.as_object() else {
        return Vec::new();
    };
    let kind = str_of(e, "kind").unwrap_or("other").to_owned();
    let class = class_of(&kind);
    let uid = event_uid(e, ctx);
    let mut rest = e.clone();
    let mut r = Map::new();

    // What every record has.
    let ts = match rest.remove("ts") {
        Some(Value::String(ts)) => Some(ts),
        Some(other) => {
            rest.insert("ts".to_owned(), other);
            None
        }
        None => None,
    };
    let time = ts.as_deref().and_then(ms_of).unwrap_or(0);
    rest.remove("kind");
    let session = match rest.remove("session") {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            rest.insert("session".to_owned(), other);
            None
        }
        None => None,
    };
    let (activity_id, activity_name) = activity(&kind, e);
    let violated = e.contains_key("rule") && e.contains_key("outcome");
    let (severity_id, severity) = if violated {
        violation_severity(e)
    } else {
        (1, "Informational")
    };
    let mut metadata = json!({
        "version": VERSION,
        "product": {"name": "guard", "vendor_name": "guard", "version": ctx.product_version},
        "profiles": PROFILES,
        "uid": uid,
        "event_code": kind,
        "log_name": "audit",
    });
    if let Some(ts) = &ts {
        metadata["original_time"] = json!(ts);
    }
    if let Some(s) = &session {
        metadata["correlation_uid"] = json!(s);
    }
    let mut device = json!({"type_id": 0, "type": "Unknown", "hostname": ctx.hostname});
    if let Some(id) = ctx.host_uid {
        device["uid"] = json!(id);
    }
    for (k, v) in [
        ("class_uid", json!(class.uid)),
        ("class_name", json!(class.name)),
        ("category_uid", json!(class.category_uid)),
        ("category_name", json!(class.category_name)),
        ("activity_id", json!(activity_id)),
        ("activity_name", json!(activity_name)),
        (
            "type_uid",
            json!(u64::from(class.uid) * 100 + u64::from(activity_id)),
        ),
        (
            "type_name",
            json!(format!("{}: {activity_name}", class.name)),
        ),
        ("time", json!(time)),
        ("severity_id", json!(severity_id)),
        ("severity", json!(severity)),
        ("metadata", metadata),
        ("device", device),
    ] {
        r.insert(k.to_owned(), v);
    }

    // The fields with a place, moved.
    let actor = actor_place(&kind);
    let has_process = e.contains_key("pid");
    for (field, pointer, is) in moves(&kind) {
        if pointer.starts_with('@') && !has_process {
            continue;
        }
        if let Some(v) = rest.get(field).filter(|v| is.holds(v)) {
            let v = v.clone();
            rest.remove(field);
            put(&mut r, &resolve(pointer, actor), v);
        }
    }

    // What is derived (the originals stay where they are).
    if has_process {
        if let Some(uid) = e.get("uid").and_then(Value::as_u64) {
            put(&mut r, &format!("{actor}/user/uid"), json!(uid.to_string()));
        }
        if actor == PROCESS {
            // Who acted on the process: its parent (or itself, for an exit).
            let parent = if kind == "exec" {
                e.get("ppid").cloned()
            } else {
                e.get("pid").cloned()
            };
            if let Some(p) = parent {
                put(&mut r, "/actor/process/pid", p);
            }
        }
    }
    match kind.as_str() {
        "exec" => {
            if let Some(argv) = e.get("argv").and_then(Value::as_array) {
                let line: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                put(&mut r, "/process/cmd_line", json!(line.join(" ")));
            }
            if let Some(exe) = get(&r, "/process/file/path").and_then(Value::as_str) {
                let name = basename(exe).to_owned();
                put(&mut r, "/process/file/name", json!(name));
                put(&mut r, "/process/file/type_id", json!(1));
            }
            r.insert("launch_type_id".to_owned(), json!(3));
            r.insert("launch_type".to_owned(), json!("Exec"));
        }
        "fork" => {
            r.insert("launch_type_id".to_owned(), json!(2));
            r.insert("launch_type".to_owned(), json!("Fork"));
        }
        "tamper" => {
            // The process it went for: guard's (else itself).
            let target = e.get("target_pid").or_else(|| e.get("pid")).cloned();
            put(&mut r, "/process/pid", target.unwrap_or(json!(0)));
        }
        "open" => {
            let path = get(&r, "/file/path")
                .and_then(Value::as_str)
                .or_else(|| str_of(e, "path"))
                .unwrap_or("?");
            let name = basename(path).to_owned();
            put(&mut r, "/file/name", json!(name));
            put(&mut r, "/file/type_id", json!(0));
        }
        "connect" | "send" | "flow" | "unix" | "dns" => {
            put(&mut r, "/connection_info/direction_id", json!(2));
            put(&mut r, "/connection_info/direction", json!("Outbound"));
            if kind == "unix" {
                put(&mut r, "/connection_info/protocol_name", json!("unix"));
            } else if let Some(p) = e.get("proto").and_then(Value::as_str) {
                let num = match p {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    _ => None,
                };
                if let Some(n) = num {
                    put(&mut r, "/connection_info/protocol_num", json!(n));
                }
            }
            if kind == "flow" {
                let bytes = ["bytes_out", "bytes_in"]
                    .iter()
                    .filter_map(|k| e.get(*k).and_then(Value::as_u64))
                    .fold(0u64, u64::saturating_add);
                put(&mut r, "/traffic/bytes", json!(bytes));
                if let Some(started) = str_of(e, "started").and_then(ms_of) {
                    r.insert("start_time".to_owned(), json!(started));
                }
            }
            if kind == "dns" {
                if let Some(answers) = e.get("answers").and_then(Value::as_array) {
                    let ocsf: Vec<Value> = answers
                        .iter()
                        .filter_map(|a| {
                            let mut o = json!({"rdata": a.get("data")?.as_str()?});
                            if let Some(t) = a.get("type").and_then(Value::as_str) {
                                o["type"] = json!(t);
                            }
                            if let Some(ttl) = a.get("ttl").and_then(Value::as_u64) {
                                o["ttl"] = json!(ttl);
                            }
                            Some(o)
                        })
                        .collect();
                    r.insert("answers".to_owned(), Value::Array(ocsf));
                }
                if let Some(rcode) = str_of(e, "rcode") {
                    let id = dns_rcode_id(rcode);
                    r.insert("rcode_id".to_owned(), json!(id));
                }
            }
        }
        _ => {}
    }
    if let Some(result) = get(&r, "/status_detail")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        let ok = matches!(result.as_str(), "ok" | "EINPROGRESS");
        r.insert("status_id".to_owned(), json!(if ok { 1 } else { 2 }));
        r.insert(
            "status".to_owned(),
            json!(if ok { "Success" } else { "Failure" }),
        );
    }
    // Process Activity needs an actor and a process; File System Activity an actor.
    if class == PROCESS_ACTIVITY {
        if !r.contains_key("process") {
            put(&mut r, "/process/name", json!("?"));
            put(&mut r, "/process/pid", json!(0));
        }
        if !r.contains_key("actor") {
            put(&mut r, "/actor/app_name", json!("guard"));
        }
    }
    if class == FILE_SYSTEM_ACTIVITY && !r.contains_key("actor") {
        put(&mut r, "/actor/app_name", json!("guard"));
    }
    if violated {
        let (action_id, action, disposition_id, disposition) = control(e);
        r.insert("action_id".to_owned(), json!(action_id));
        r.insert("action".to_owned(), json!(action));
        r.insert("disposition_id".to_owned(), json!(disposition_id));
        r.insert("disposition".to_owned(), json!(disposition));
        r.insert(
            "is_alert".to_owned(),
            json!(e.get("alert") == Some(&Value::Bool(true))),
        );
    }
    r.insert(
        "message".to_owned(),
        json!(message(&kind, e, &activity_name)),
    );
    if !rest.is_empty() {
        r.insert("unmapped".to_owned(), Value::Object(rest));
    }
    let activity = Value::Object(r);
    let mut out = vec![];
    if violated {
        let finding = finding(&activity, e, &uid, time, ts.as_deref(), session.as_deref());
        out.push(activity);
        out.push(finding);
    } else {
        out.push(activity);
    }
    out
}

/// DNS Activity's `rcode_id` of a response code's name (as hickory names them).
fn dns_rcode_id(rcode: &str) -> u32 {
    const CODES: &[&str] = &[
        "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "yxdomain", "yxrrset",
        "nxrrset", "notauth", "notzone",
    ];
    let lower = rcode.to_ascii_lowercase();
    CODES
        .iter()
        .position(|c| *c == lower)
        .map_or(99, |i| i as u32)
}

/// One line for people: what happened.
fn message(kind: &str, e: &Map<String, Value>, activity: &str) -> String {
    let s = |k: &str| str_of(e, k).unwrap_or("");
    let what = match kind {
        "exec" => {
            let argv: Vec<&str> = e
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "exec {}",
                if argv.is_empty() {
                    s("exe").to_owned()
                } else {
                    argv.join(" ")
                }
            )
        }
        "open" | "unix" => format!("{kind} {} {}", s("path"), s("result")),
        "connect" | "send" | "flow" => {
            let to = if s("host").is_empty() {
                s("addr")
            } else {
                s("host")
            };
            let port = e.get("port").and_then(Value::as_u64).unwrap_or(0);
            format!("{kind} {to}:{port}/{} {}", s("proto"), s("result"))
        }
        "dns" => format!("dns {} {} {}", s("direction"), s("name"), s("qtype")),
        _ => format!("{kind}: {activity}"),
    };
    let what = what.trim_end().to_owned();
    match (str_of(e, "rule"), str_of(e, "outcome")) {
        (Some(rule), Some(outcome)) => format!("{what} broke rule {rule} ({outcome})"),
        _ => what,
    }
}

/// Why an OCSF record could not be read back as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Not an object with a `class_uid`.
    NotOcsf,
    /// An OCSF record guard did not write (no `metadata.event_code`).
    NotGuard,
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotOcsf => "not an OCSF record (no class_uid)",
            Self::NotGuard => "an OCSF record guard did not write (no metadata.event_code)",
        })
    }
}

impl core::error::Error for ReadError {}

/// Whether a JSON object is an OCSF record (rather than a native event line).
pub fn is_ocsf(v: &Value) -> bool {
    v.get("class_uid").is_some_and(Value::is_u64)
}

/// The audit-log event an OCSF record carries: its activity record gives it back
/// field for field; a Detection Finding gives `None` (it repeats its activity's
/// violation, which the activity record carries itself).
pub fn event_of(record: &Value) -> Result<Option<Value>, ReadError> {
    let r = record.as_object().ok_or(ReadError::NotOcsf)?;
    let class = r
        .get("class_uid")
        .and_then(Value::as_u64)
        .ok_or(ReadError::NotOcsf)?;
    if class == u64::from(DETECTION_FINDING.uid) {
        return Ok(None);
    }
    let kind = get(r, "/metadata/event_code")
        .and_then(Value::as_str)
        .ok_or(ReadError::NotGuard)?
        .to_owned();
    let mut e = match r.get("unmapped") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(ts) = get(r, "/metadata/original_time") {
        e.insert("ts".to_owned(), ts.clone());
    }
    if let Some(s) = get(r, "/metadata/correlation_uid") {
        e.insert("session".to_owned(), s.clone());
    }
    let actor = actor_place(&kind);
    for (field, pointer, _) in moves(&kind) {
        if let Some(v) = get(r, &resolve(pointer, actor)) {
            e.insert(field.to_owned(), v.clone());
        }
    }
    e.insert("kind".to_owned(), Value::String(kind));
    Ok(Some(Value::Object(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        hostname: "build-01",
        host_uid: Some("0123456789abcdef0123456789abcdef"),
        product_version: "0.1.0",
    };

    #[test]
    fn an_open_that_broke_a_rule_is_an_activity_and_a_finding_that_names_it() {
        let e = json!({"schema":2,"ts":"2026-11-22T08:00:00.123456789Z","session":"000000f27677c8c0",
            "pid":42,"ppid":10,"tid":42,"comm":"cat","role":"tool","uid":1000,"user":"dev",
            "cgroup_id":7,"container":null,"kind":"open","path":"/home/dev/.ssh/id_rsa",
            "path_resolved":true,"path_truncated":false,"access":["read"],"flags":0,"call":"openat",
            "result":"ok","fd":3,"rule":"ssh-keys","action":"kill","outcome":"killed","alert":true,
            "rules":["ssh-keys"],"secret":true});
        let out = records(&e, &CTX);
        assert_eq!(out.len(), 2);
        let (a, f) = (&out[0], &out[1]);
        assert_eq!(a["class_uid"], 1001);
        assert_eq!(a["type_uid"], 100_114);
        assert_eq!(a["time"], 1_795_334_400_123_i64);
        assert_eq!(a["file"]["path"], "/home/dev/.ssh/id_rsa");
        assert_eq!(a["file"]["name"], "id_rsa");
        assert_eq!(a["actor"]["process"]["pid"], 42);
        assert_eq!(a["actor"]["process"]["user"]["uid"], "1000");
        assert_eq!(a["disposition_id"], 2);
        assert_eq!(a["unmapped"]["role"], "tool");
        assert!(a["unmapped"].get("path").is_none(), "moved, not copied");
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["severity_id"], 5, "a killed read of a secret is critical");
        assert_eq!(
            f["finding_info"]["related_events"][0]["uid"],
            a["metadata"]["uid"]
        );
        assert_eq!(f["finding_info"]["analytic"]["name"], "ssh-keys");
        assert_eq!(event_of(&a.clone()).expect("read"), Some(e));
        assert_eq!(event_of(f).expect("read"), None);
    }

    #[test]
    fn a_kind_this_code_does_not_know_keeps_every_field() {
        let e = json!({"ts":"2026-11-22T08:00:00Z","kind":"warp","session":"00000000000000aa",
            "pid":1,"comm":"x","speed":9});
        let out = records(&e, &CTX);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["class_uid"], 0);
        assert_eq!(out[0]["activity_name"], "warp");
        assert_eq!(out[0]["unmapped"]["speed"], 9);
        assert_eq!(event_of(&out[0]).expect("read"), Some(e));
    }
}
