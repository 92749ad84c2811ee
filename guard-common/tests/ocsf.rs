//! guard's OCSF records against the published OCSF schema (1.7.0, vendored in
//! `tests/data/ocsf-schema-1.7.0` with its licence), validated by a JSON Schema
//! validator: python-jsonschema, the reference implementation (Debian's
//! `python3-jsonschema`, which `cargo xtask test` installs; `ocsf_schema.py`).
//!
//! The OCSF repository holds OCSF's own definitions, not JSON Schema: this file
//! compiles them as OCSF's schema server does (a class's attributes are its
//! parents' and its includes' (`$include` of a profile), each one's definition the
//! dictionary's deep-merged with the class's or object's own; objects extend
//! objects; `constraints` say which of a set must be there), then writes JSON Schema
//! from the result:
//!
//! - every class and object is closed (`additionalProperties: false`): a field
//!   OCSF has no place for must be under `unmapped` (type `object`, open);
//! - `required` attributes are required, `is_array` ones are arrays;
//! - an attribute with an `enum` takes only its values (integer ids);
//! - a scalar type brings its base type and its `regex`, `max_len`, `range` and
//!   `values`;
//! - `at_least_one` and `just_one` constraints become `anyOf`/`oneOf` of
//!   `required`;
//! - `class_uid` and `category_uid` are the class's, `type_uid` one of
//!   `class_uid × 100 + activity_id`;
//! - the profiles are those guard's records apply (`metadata.profiles`,
//!   [`ocsf::PROFILES`]): a profile's attributes are part of the class only then, as
//!   OCSF's server compiles a class for a set of profiles.

#![cfg(feature = "ocsf")]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use guard_common::ocsf::{self, Context};
use serde_json::{Map, Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ocsf-schema-1.7.0")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `over` deep-merged onto `base` (objects key by key, anything else replaced).
fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut m = b.clone();
            for (k, v) in o {
                let merged = match m.get(k) {
                    Some(old) => merge(old, v),
                    None => v.clone(),
                };
                m.insert(k.clone(), merged);
            }
            Value::Object(m)
        }
        (_, o) => o.clone(),
    }
}

/// The OCSF schema's definitions, compiled.
struct Ocsf {
    dictionary: Map<String, Value>,
    types: Map<String, Value>,
    objects: BTreeMap<String, Value>,
    events: BTreeMap<String, Value>,
    categories: Map<String, Value>,
}

impl Ocsf {
    fn load() -> Self {
        let root = root();
        let dict = read(&root.join("dictionary.json"));
        let mut objects = BTreeMap::new();
        for entry in std::fs::read_dir(root.join("objects")).expect("objects") {
            let o = read(&entry.expect("entry").path());
            objects.insert(o["name"].as_str().expect("name").to_owned(), o);
        }
        let mut events = BTreeMap::new();
        for dir in [
            "events",
            "events/system",
            "events/network",
            "events/findings",
        ] {
            for entry in std::fs::read_dir(root.join(dir)).expect("events") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "json") {
                    let e = read(&path);
                    events.insert(e["name"].as_str().expect("name").to_owned(), e);
                }
            }
        }
        Self {
            dictionary: dict["attributes"].as_object().expect("attributes").clone(),
            types: dict["types"]["attributes"]
                .as_object()
                .expect("types")
                .clone(),
            objects,
            events,
            categories: read(&root.join("categories.json"))["attributes"]
                .as_object()
                .expect("categories")
                .clone(),
        }
    }

    /// An item's own attribute overrides, its includes' first.
    fn own_attributes(&self, item: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        let Some(attrs) = item["attributes"].as_object() else {
            return out;
        };
        if let Some(includes) = attrs.get("$include").and_then(Value::as_array) {
            for inc in includes {
                let inc = inc.as_str().expect("include path");
                // A profile's attributes only where the record applies it.
                let profile = inc
                    .strip_prefix("profiles/")
                    .and_then(|p| p.strip_suffix(".json"));
                if profile.is_some_and(|p| !ocsf::PROFILES.contains(&p)) {
                    continue;
                }
                let inc = read(&root().join(inc));
                for (k, v) in inc["attributes"].as_object().into_iter().flatten() {
                    let merged = out.get(k).map_or_else(|| v.clone(), |old| merge(old, v));
                    out.insert(k.clone(), merged);
                }
            }
        }
        for (k, v) in attrs {
            if k == "$include" {
                continue;
            }
            let merged = out.get(k).map_or_else(|| v.clone(), |old| merge(old, v));
            out.insert(k.clone(), merged);
        }
        out
    }

    /// The overrides of an item and its parents (`extends`), the child's last.
    fn overrides(&self, item: &Value, pool: &BTreeMap<String, Value>) -> Map<String, Value> {
        let mut out = match item["extends"].as_str().and_then(|p| pool.get(p)) {
            Some(parent) => self.overrides(parent, pool),
            None => Map::new(),
        };
        for (k, v) in self.own_attributes(item) {
            let merged = out.get(&k).map_or_else(|| v.clone(), |old| merge(old, &v));
            out.insert(k, merged);
        }
        out
    }

    /// An item's attributes, each the dictionary's definition with the overrides.
    fn attributes(&self, item: &Value, pool: &BTreeMap<String, Value>) -> Map<String, Value> {
        self.overrides(item, pool)
            .into_iter()
            // An attribute of a profile the record does not apply is not there.
            .filter(|(_, v)| {
                v["profile"]
                    .as_str()
                    .is_none_or(|p| ocsf::PROFILES.contains(&p))
            })
            .map(|(k, v)| {
                let base = self
                    .dictionary
                    .get(&k)
                    .unwrap_or_else(|| panic!("{k} is not in the dictionary"));
                let def = merge(base, &v);
                (k, def)
            })
            .collect()
    }

    fn constraints(item: &Value, pool: &BTreeMap<String, Value>) -> Option<Value> {
        item.get("constraints")
            .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            .cloned()
            .or_else(|| {
                let parent = pool.get(item["extends"].as_str()?)?;
                Self::constraints(parent, pool)
            })
    }

    /// The JSON Schema of a scalar type (`*_t`).
    fn scalar(&self, t: &str) -> Value {
        let def = self.types.get(t).unwrap_or_else(|| panic!("no type {t}"));
        let mut s = match t {
            "string_t" => json!({"type": "string"}),
            "integer_t" | "long_t" => json!({"type": "integer"}),
            "float_t" => json!({"type": "number"}),
            "boolean_t" => json!({"type": "boolean"}),
            "json_t" => json!({}),
            _ => self.scalar(
                def["type"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{t}: no base")),
            ),
        };
        if let Some(re) = def["regex"].as_str() {
            s["pattern"] = json!(re);
        }
        if let Some(n) = def["max_len"].as_u64() {
            s["maxLength"] = json!(n);
        }
        if let Some(r) = def["range"].as_array() {
            s["minimum"] = r[0].clone();
            s["maximum"] = r[1].clone();
        }
        if let Some(v) = def["values"].as_array() {
            s["enum"] = Value::Array(v.clone());
        }
        s
    }

    /// The schema of one attribute; object types are added to `defs`.
    fn attribute(&self, name: &str, def: &Value, defs: &mut Map<String, Value>) -> Value {
        let t = def["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no type"));
        let mut s = if t.ends_with("_t") {
            let mut s = self.scalar(t);
            if let Some(e) = def["enum"].as_object() {
                let integer = s["type"] == "integer";
                let values: Vec<Value> = e
                    .keys()
                    .map(|k| {
                        if integer {
                            json!(k.parse::<i64>().unwrap_or_else(|_| panic!("{name}: {k}")))
                        } else {
                            json!(k)
                        }
                    })
                    .collect();
                s["enum"] = Value::Array(values);
            }
            s
        } else if t == "object" {
            // The generic object (`unmapped`, …): anything.
            json!({"type": "object"})
        } else {
            self.object(t, defs);
            json!({"$ref": format!("#/$defs/{t}")})
        };
        if def["is_array"] == true {
            s = json!({"type": "array", "items": s});
        }
        s
    }

    /// Adds object `name` (and what it refers to) to `defs`.
    fn object(&self, name: &str, defs: &mut Map<String, Value>) {
        if defs.contains_key(name) {
            return;
        }
        defs.insert(name.to_owned(), json!({})); // recursion guard
        let item = self
            .objects
            .get(name)
            .unwrap_or_else(|| panic!("no object {name}"));
        let attrs = self.attributes(item, &self.objects);
        let mut s = self.closed(&attrs, defs);
        if let Some(c) = Self::constraints(item, &self.objects) {
            add_constraints(&mut s, &c);
        }
        defs.insert(name.to_owned(), s);
    }

    /// A closed object schema of `attrs`.
    fn closed(&self, attrs: &Map<String, Value>, defs: &mut Map<String, Value>) -> Value {
        let mut props = Map::new();
        let mut required = Vec::new();
        for (k, def) in attrs {
            props.insert(k.clone(), self.attribute(k, def, defs));
            if def["requirement"] == "required" {
                required.push(json!(k));
            }
        }
        json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// The JSON Schema of the class named `name`.
    fn class_schema(&self, name: &str) -> (u64, Value) {
        let item = self
            .events
            .get(name)
            .unwrap_or_else(|| panic!("no class {name}"));
        let attrs = self.attributes(item, &self.events);
        let mut defs = Map::new();
        let mut s = self.closed(&attrs, &mut defs);
        // The category: the class's own, else its parent's.
        let mut at = item;
        let category = loop {
            if let Some(c) = at["category"].as_str() {
                break c.to_owned();
            }
            at = &self.events[at["extends"].as_str().expect("a category or a parent")];
        };
        let category_uid = if category == "other" {
            0
        } else {
            self.categories[&category]["uid"].as_u64().expect("uid")
        };
        let class_uid = category_uid * 1000 + item["uid"].as_u64().unwrap_or(0);
        let activities: Vec<u64> = attrs["activity_id"]["enum"]
            .as_object()
            .expect("activities")
            .keys()
            .map(|k| k.parse().expect("an id"))
            .collect();
        s["properties"]["class_uid"] = json!({"const": class_uid});
        s["properties"]["category_uid"] = json!({"const": category_uid});
        s["properties"]["type_uid"] = json!({
            "enum": activities.iter().map(|a| class_uid * 100 + a).collect::<Vec<_>>()
        });
        if let Some(c) = Self::constraints(item, &self.events) {
            add_constraints(&mut s, &c);
        }
        s["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        s["$defs"] = Value::Object(defs);
        (class_uid, s)
    }
}

fn add_constraints(s: &mut Value, c: &Value) {
    let one_of = |names: &Value| -> Vec<Value> {
        names
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| json!({"required": [n]}))
            .collect()
    };
    let mut all = Vec::new();
    if let Some(names) = c.get("at_least_one") {
        all.push(json!({"anyOf": one_of(names)}));
    }
    if let Some(names) = c.get("just_one") {
        all.push(json!({"oneOf": one_of(names)}));
    }
    if !all.is_empty() {
        s["allOf"] = Value::Array(all);
    }
}

/// The JSON Schemas of the classes guard writes, by class_uid, and a validator.
struct Schemas(BTreeMap<u64, Value>);

impl Schemas {
    fn load() -> Self {
        let ocsf = Ocsf::load();
        Self(
            [
                "base_event",
                "process_activity",
                "file_activity",
                "network_activity",
                "dns_activity",
                "detection_finding",
            ]
            .iter()
            .map(|name| ocsf.class_schema(name))
            .collect(),
        )
    }

    /// What is wrong with each of `records` against its class's schema (by its
    /// `class_uid`), by `ocsf_schema.py`; `None` when Debian's python3-jsonschema
    /// is not installed (the test is then skipped, and says so).
    fn errors(&self, records: &[&Value]) -> Option<Vec<Vec<String>>> {
        use std::io::Write as _;
        let python = Path::new("/usr/bin/python3");
        let has_jsonschema = std::process::Command::new(python)
            .args(["-c", "import jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_jsonschema {
            return None;
        }
        let input = json!({
            "schemas": self.0.iter().map(|(uid, s)| (uid.to_string(), s.clone())).collect::<Map<_, _>>(),
            "records": records,
        });
        let mut child = std::process::Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf_schema.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the validator");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("hand the validator its input");
        let out = child.wait_with_output().expect("the validator's answer");
        assert!(
            out.status.success(),
            "the validator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout).expect("a list of error lists"))
    }
}

/// The errors of `records` (each against its class), or a recorded skip of `test`
/// when the validator is missing.
fn errors_or_skip(test: &str, records: &[&Value]) -> Option<Vec<Vec<String>>> {
    let errors = Schemas::load().errors(records);
    if errors.is_none() {
        record_skip(
            test,
            "no python3-jsonschema (Debian's; `cargo xtask test` installs it)",
        );
    }
    errors
}

const CTX: Context<'static> = Context {
    hostname: "build-01",
    host_uid: Some("0123456789abcdef0123456789abcdef"),
    product_version: "0.1.0",
};

/// One event of every kind the daemon writes, as the audit log has them
/// (docs/events.md), several with a violation.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one sample audit-log event per kind the daemon writes"
)]
fn events() -> Vec<Value> {
    let task = json!({"schema": 2, "ts": "2026-11-22T08:00:00.123456789Z",
        "session": "000000f27677c8c0", "pid": 4242, "ppid": 4200, "tid": 4243, "comm": "bash",
        "thread": "worker", "role": "tool", "agent_thread": "019aa2b0-0000-7000-8000-000000000001",
        "uid": 1000, "user": "dev", "cgroup_id": 77, "container": null});
    let with = |kind: &str, fields: Value| {
        let mut e = task.clone();
        e["kind"] = json!(kind);
        for (k, v) in fields.as_object().expect("fields") {
            e[k] = v.clone();
        }
        e
    };
    let daemon = |kind: &str, fields: Value| {
        let mut e = json!({"schema": 2, "ts": "2026-11-22T08:00:00Z", "kind": kind});
        for (k, v) in fields.as_object().expect("fields") {
            e[k] = v.clone();
        }
        e
    };
    let violation = json!({"rule": "ssh-keys", "action": "kill", "outcome": "killed",
        "alert": true, "rules": ["ssh-keys"], "secret": true});
    let mut out = vec![
        with(
            "exec",
            json!({"exe": "/usr/bin/git", "exe_truncated": false, "argv": ["git", "status"],
            "argv_truncated": false, "root": false, "confinement": {"seccomp": "filter",
            "no_new_privs": true, "net_ns": 4026531840u64, "mnt_ns": 4026531841u64,
            "user_ns": 4026531837u64}}),
        ),
        with(
            "exec",
            json!({"exe": "/usr/bin/sudo", "argv": ["sudo", "id"], "root": false,
            "rule": "no-sudo", "action": "kill", "outcome": "killed", "alert": true,
            "rules": ["no-sudo"], "kill_latency_us": 0}),
        ),
        with(
            "open",
            json!({"path": "/home/dev/.ssh/id_rsa", "path_resolved": true, "path_truncated": false,
            "access": ["read"], "flags": 0, "call": "openat", "result": "ok", "fd": 3}),
        ),
        with(
            "open",
            json!({"path": "/home/dev/.ssh/id_rsa", "path_resolved": true, "access": ["read"],
            "flags": 0, "call": "openat", "result": "EPERM", "errno": 1}),
        ),
        with(
            "open",
            json!({"path": "/w/.git/hooks/pre-commit", "path_resolved": false, "access": ["write"],
            "flags": 0, "call": "unlink", "result": "EPERM", "errno": 1, "rule": "git-hooks",
            "action": "deny", "outcome": "denied", "alert": true, "rules": ["git-hooks"]}),
        ),
        with(
            "connect",
            json!({"addr": "162.159.140.245", "port": 443, "proto": "tcp", "family": "ipv4",
            "result": "EINPROGRESS", "host": "api.openai.com", "host_source": "dns"}),
        ),
        with(
            "connect",
            json!({"addr": "169.254.169.254", "port": 80, "proto": "tcp", "family": "ipv4",
            "result": "EPERM", "errno": 1, "rule": "metadata", "action": "deny",
            "outcome": "denied", "alert": true, "rules": ["metadata"]}),
        ),
        with(
            "send",
            json!({"addr": "::1", "port": 53, "proto": "udp", "family": "ipv6", "result": "ok"}),
        ),
        with(
            "flow",
            json!({"addr": "162.159.140.245", "port": 443, "proto": "tcp", "family": "ipv4",
            "bytes_out": 1_900_000, "bytes_in": 52_000, "packets_out": 1400, "packets_in": 900,
            "reason": "close", "flow_id": "1a2b-3c4d", "started": "2026-11-22T07:59:00Z",
            "dest_class": "model", "host": "api.openai.com", "host_source": "dns"}),
        ),
        with(
            "dns",
            json!({"direction": "answer", "server": "127.0.0.53", "port": 53, "proto": "udp",
            "name": "api.openai.com", "qtype": "A", "rcode": "NoError",
            "answers": [{"name": "api.openai.com", "type": "A", "data": "162.159.140.245", "ttl": 300}],
            "len": 64, "dest_class": "local"}),
        ),
        with(
            "dns",
            json!({"direction": "query", "server": "127.0.0.53", "port": 53, "proto": "udp",
            "name": "aGVsbG8gd29ybGQ.exfil.example", "qtype": "TXT", "len": 48,
            "dest_class": "local", "rule": "anomaly.dns-entropy", "action": "alert",
            "outcome": "alerted", "alert": true, "rules": ["anomaly.dns-entropy"],
            "anomaly": "entropy 4.2 bits over 3.5"}),
        ),
        with(
            "route",
            json!({"route": "io_uring", "result": "killed", "rule": "sessions.io_uring",
            "action": "kill", "outcome": "killed", "alert": true, "rules": ["sessions.io_uring"]}),
        ),
        with(
            "unix",
            json!({"path": "/run/docker.sock", "path_resolved": true, "path_truncated": false,
            "call": "connect", "socket": "stream", "result": "ok"}),
        ),
        with("fork", json!({"child_pid": 4300})),
        with("exit", json!({"exit_code": 0, "root": false})),
        with("exit", json!({"signal": 9, "root": true})),
        with(
            "session_start",
            json!({"agent": "codex", "root_pid": 4200, "how": "exec", "cwd": "/w",
            "repository": {"url": "https://github.com/acme/app", "branch": "main",
            "commit": "0123456789abcdef0123456789abcdef01234567", "root": "/w"}}),
        ),
        with(
            "session_end",
            json!({"root_pid": 4200, "stragglers": [4300], "killed": []}),
        ),
        with(
            "tool_call",
            json!({"tool_call": "call_0", "phase": "start", "tool": "Bash",
            "command": "npm install ./pkg"}),
        ),
        with(
            "limit",
            json!({"reason": "rate", "dropped": 120, "dropped_total": 120}),
        ),
        with(
            "tamper",
            json!({"op": "signal", "syscall": "kill", "target_pid": 900, "signal": 9,
            "done": "killed", "rule": "self_protection", "action": "kill", "outcome": "killed",
            "alert": true, "rules": ["self_protection"]}),
        ),
        with(
            "tamper",
            json!({"op": "bpf", "bpf_cmd": 0, "done": "denied", "rule": "self_protection",
            "action": "deny", "outcome": "denied", "alert": true, "rules": ["self_protection"]}),
        ),
        daemon(
            "lost",
            json!({"by_kind": {"open": 141_784}, "total": 141_784}),
        ),
        daemon(
            "policy_loaded",
            json!({"policy": "workstation", "mode": "enforce", "rules": 40,
            "kernel_entries": 120, "identity_entries": 30, "identity_missing": 2,
            "identity_fail_closed": 0, "user_space_rules": [], "warnings": "",
            "enforcement": [{"action": "exec_kill", "tier": "bpf_lsm", "guarantee": "never runs",
            "fallback_reason": null}]}),
        ),
        daemon(
            "policy_rejected",
            json!({"policy": "/etc/guard/policy.toml", "errors": "error: x"}),
        ),
        daemon(
            "daemon_resumed",
            json!({"previous_pid": 77, "clean_stop": false, "gap_ms": 1200,
            "lost_by_kind": {}, "lost_total": 0, "untracked_children": 0,
            "sessions": ["000000f27677c8c0"], "links": {"updated": 3, "replaced": 0, "new": 1}}),
        ),
    ];
    out.push(with("open", violation));
    out
}

#[test]
fn every_kind_validates_against_the_ocsf_schema() {
    let mut kinds = BTreeSet::new();
    let mut records = Vec::new();
    for e in events() {
        kinds.insert(e["kind"].as_str().expect("kind").to_owned());
        records.extend(
            ocsf::records(&e, &CTX)
                .into_iter()
                .map(|r| (e["kind"].clone(), r)),
        );
    }
    let refs: Vec<&Value> = records.iter().map(|(_, r)| r).collect();
    let Some(errors) = errors_or_skip("every_kind_validates_against_the_ocsf_schema", &refs) else {
        return;
    };
    for ((kind, r), errors) in records.iter().zip(errors) {
        assert!(
            errors.is_empty(),
            "{kind} ({}) is not valid OCSF {}:\n{}\n{}",
            r["class_name"],
            ocsf::VERSION,
            errors.join("\n"),
            serde_json::to_string_pretty(r).expect("json")
        );
    }
    let expected: BTreeSet<String> = guard_common::line::EventDetail::KINDS
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    assert_eq!(kinds, expected, "an event of every kind");
}

#[test]
fn a_violation_is_a_detection_finding_linked_to_its_activity() {
    for e in events().into_iter().filter(|e| e.get("rule").is_some()) {
        let records = ocsf::records(&e, &CTX);
        assert_eq!(records.len(), 2, "{e}");
        let (activity, finding) = (&records[0], &records[1]);
        assert_eq!(finding["class_uid"], 2004);
        assert_eq!(
            finding["finding_info"]["related_events"][0]["uid"],
            activity["metadata"]["uid"]
        );
        assert_eq!(
            finding["finding_info"]["related_events"][0]["type_uid"],
            activity["type_uid"]
        );
        assert_eq!(finding["finding_info"]["analytic"]["name"], e["rule"]);
        assert_eq!(finding["unmapped"]["outcome"], e["outcome"]);
        let stopped = matches!(e["outcome"].as_str(), Some("killed" | "denied"));
        assert_eq!(finding["disposition_id"] == 2, stopped, "{e}");
        assert_eq!(finding["action_id"] == 2, stopped, "{e}");
    }
}

/// Findings of violations as the fleet server stores them (no event with them).
fn stored_findings() -> Vec<Value> {
    [
        (
            "open /home/dev/.ssh/id_rsa",
            "secrets.ssh",
            "kill",
            "killed",
        ),
        (
            "connect 203.0.113.9:443",
            "network.egress",
            "alert",
            "alerted",
        ),
        ("exec sudo id", "no-sudo", "log", "logged"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (what, rule, action, outcome))| {
        let uid = format!("eu/build-01/m-b-000000f27677c8c0/{i}");
        ocsf::violation_finding(
            &ocsf::StoredViolation {
                uid: &uid,
                ts_ms: 1_795_334_400_123,
                session: "000000f27677c8c0",
                pid: 4242,
                comm: "cat",
                what,
                rule,
                action,
                outcome,
                alert: *action != "log",
            },
            &CTX,
        )
    })
    .collect()
}

#[test]
fn stored_violations_are_valid_detection_findings() {
    let findings = stored_findings();
    let refs: Vec<&Value> = findings.iter().collect();
    let Some(errors) = errors_or_skip("stored_violations_are_valid_detection_findings", &refs)
    else {
        return;
    };
    for (f, errors) in findings.iter().zip(errors) {
        assert_eq!(f["class_uid"], 2004, "{f}");
        assert!(errors.is_empty(), "{}\n{f}", errors.join("\n"));
        assert!(f["finding_info"].get("related_events").is_none());
        assert_eq!(f["finding_info"]["uid"], f["metadata"]["uid"]);
    }
}

#[test]
fn every_event_reads_back_from_its_activity_record() {
    for e in events() {
        let records = ocsf::records(&e, &CTX);
        assert_eq!(
            ocsf::event_of(&records[0]).expect("an activity"),
            Some(e.clone()),
            "{}",
            serde_json::to_string_pretty(&records[0]).expect("json")
        );
        // Through the typed line too: the same line comes out.
        let line: guard_common::line::EventLine = serde_json::from_value(e.clone()).expect("line");
        let back: guard_common::line::EventLine =
            serde_json::from_value(ocsf::event_of(&records[0]).expect("read").expect("event"))
                .expect("line again");
        assert_eq!(back, line);
    }
}

#[test]
fn the_schema_is_strict_enough_to_refuse_what_is_not_ocsf() {
    let e = &events()[0];
    let good = ocsf::records(e, &CTX)[0].clone();
    assert_eq!(good["class_uid"], 1007);
    let mut stray = good.clone();
    stray["argv"] = json!(["git"]);
    let mut no_device = good.clone();
    no_device.as_object_mut().expect("object").remove("device");
    let mut bad_type = good.clone();
    bad_type["type_uid"] = json!(100_750);
    let mut bad_pid = good.clone();
    bad_pid["process"]["pid"] = json!("4242");
    let mut bad_ip = ocsf::records(&events()[5], &CTX)[0].clone();
    assert_eq!(bad_ip["class_uid"], 4001);
    bad_ip["dst_endpoint"]["ip"] = json!("api.openai.com");
    let Some(errors) = errors_or_skip(
        "the_schema_is_strict_enough_to_refuse_what_is_not_ocsf",
        &[&good, &stray, &no_device, &bad_type, &bad_pid, &bad_ip],
    ) else {
        return;
    };
    let valid: Vec<bool> = errors.iter().map(Vec::is_empty).collect();
    assert_eq!(
        valid,
        [true, false, false, false, false, false],
        "valid as it is; refused: a field OCSF has no place for outside unmapped, \
         no device (required in System Activity), a type_uid that is not class_uid × \
         100 + activity_id, a pid that is no integer, an ip that breaks ip_t's pattern: \
         {errors:?}"
    );
}

/// The Python with py-ocsf-models that `cargo xtask setup --test-deps` makes
/// (`target/ocsf-venv`), or `$GUARD_OCSF_PYTHON`.
fn ocsf_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GUARD_OCSF_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ocsf-venv/bin/python3");
    p.is_file().then_some(p)
}

/// Says that `test` was skipped and why, as the other suites do: `SKIPPED:` on
/// stderr, and a line in `$GUARD_E2E_SKIP_LOG` so that `cargo xtask test` counts a
/// skip, not a pass.
fn record_skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
    if let Some(path) = std::env::var_os("GUARD_E2E_SKIP_LOG") {
        let line = json!({ "test": test, "reason": reason }).to_string() + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot record the skip of {test}: {e}"));
    }
}

#[test]
fn detection_findings_are_what_py_ocsf_models_reads() {
    let Some(python) = ocsf_python() else {
        record_skip(
            "detection_findings_are_what_py_ocsf_models_reads",
            "no py-ocsf-models: `cargo xtask setup --test-deps` makes target/ocsf-venv",
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("guard-ocsf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("records.jsonl");
    let mut text = String::new();
    for e in events() {
        for r in ocsf::records(&e, &CTX) {
            text.push_str(&r.to_string());
            text.push('\n');
        }
    }
    for f in stored_findings() {
        text.push_str(&f.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write the records");
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf_models.py"))
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "py-ocsf-models refused a finding:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("11 detection findings valid"), "{stdout}");
}
