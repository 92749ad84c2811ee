use guard_common::otlp::{self, attr};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;
use serde_json::json;

use super::*;
use crate::ingest::decode::{self, Encoding};

use crate::records;

const S1: &str = "00000000000000a1";
/// The server's clock in these tests: a day after the records' (a clock before
/// them would make every record the future).
const NOW: i64 = records::T0_MS + 86_400_000;

fn host() -> Sender {
    Sender::Host("build-01".into())
}

fn limits() -> Limits {
    Limits::default()
}

/// Through the wire and back, as the server gets it.
fn wire(req: &ExportLogsServiceRequest) -> ExportLogsServiceRequest {
    let bytes = req.encode_to_vec();
    decode::decode(Encoding::Protobuf, &bytes).expect("decode")
}

#[test]
fn a_summary_becomes_a_session_row_with_its_counts() {
    let report = records::report(S1, "alice", "https://github.com/acme/app", true);
    let req = records::request(
        "build-01",
        vec![records::summary(
            "build-01",
            7,
            1,
            &report,
            3,
            records::T0_NS,
        )],
    );
    let b = batch(&wire(&req), &host(), &limits(), NOW).expect("batch");
    assert_eq!(b.rejected_count(), 0, "{}", b.rejected_message());
    assert_eq!(b.hosts.len(), 1);
    let h = &b.hosts[0];
    assert_eq!(h.host, "build-01");
    assert_eq!(h.guard_version.as_deref(), Some("0.1.0"));
    assert_eq!(h.os_version.as_deref(), Some("6.12.0-guard"));
    assert_eq!(h.policy_mode.as_deref(), Some("enforce"));
    let tiers: Value = serde_json::from_str(h.tiers.as_deref().expect("tiers")).expect("json");
    assert_eq!(tiers["exec_deny"], "bpf_lsm");
    assert_eq!(h.seen_ms, NOW);
    assert_eq!(h.clock_skew_ms, 0, "a record of a day ago: not ahead");
    assert_eq!(h.heartbeat_ms, None);

    let s = &b.summaries[0];
    assert_eq!(s.session_uid, records::session_uid("build-01", S1));
    assert_eq!(s.record_id, otlp::record_id(7, 1));
    assert_eq!((s.state, s.state_rank, s.seq), ("ended", 1, 3));
    assert_eq!(s.user_name.as_deref(), Some("alice"));
    assert_eq!(s.uid, Some(1000));
    assert_eq!(s.agent.as_deref(), Some("codex"));
    assert_eq!(
        s.agent_version.as_deref(),
        Some("0.98.0"),
        "from the report"
    );
    assert_eq!(s.repo_url.as_deref(), Some("https://github.com/acme/app"));
    assert_eq!(s.repo_branch.as_deref(), Some("main"));
    assert_eq!(s.workspace.as_deref(), Some("/home/dev/src/app"));
    assert_eq!(s.started_ms, records::T0_MS);
    assert_eq!(s.ended_ms, Some(records::T0_MS + 600_000));
    assert_eq!(s.duration_ms, 600_000);
    assert_eq!(s.host_started_ms, None);
    assert_eq!(s.commands, 3);
    let dests: Vec<(&str, &str, i64)> = s
        .destination_rows
        .iter()
        .map(|d| (d.dest.as_str(), d.class.as_str(), d.bytes_out))
        .collect();
    assert_eq!(
        dests,
        [
            ("api.openai.com", "model", 4_000_000),
            ("github.com", "code_host", 1_000_000)
        ]
    );
    assert_eq!(
        s.files_read,
        2 + 120,
        "listed and counted-only system files"
    );
    assert_eq!(s.files_written, 1);
    assert_eq!(s.secrets_read, 1);
    assert_eq!((s.bytes_out, s.bytes_in), (5_000_000, 9_000_000));
    assert_eq!(
        (s.model_bytes_out, s.model_bytes_in),
        (4_000_000, 8_000_000)
    );
    assert_eq!(s.violations, 2);
    assert_eq!(s.violation_rows.len(), 2);
    assert_eq!(s.violation_rows[1].rule, "network.egress");
    assert_eq!(s.violation_rows[1].outcome, "denied");
    let back: Report = serde_json::from_str(&s.summary).expect("summary json");
    assert_eq!(back, report);
}

#[test]
fn events_are_indexed_with_a_line_and_their_rule() {
    let ts = records::T0_NS + 5_000_000_000;
    let req = records::request(
        "build-01",
        vec![
            records::exec_event(
                "build-01",
                7,
                2,
                S1,
                ts,
                &["/usr/bin/git", "push", "--force"],
            ),
            records::event(
                "build-01",
                7,
                3,
                S1,
                ts,
                json!({"kind": "open", "path": "/home/dev/.ssh/id_rsa", "access": ["read"],
                       "result": "EPERM", "rule": "secrets.ssh", "outcome": "denied"}),
            ),
            records::event(
                "build-01",
                7,
                4,
                S1,
                ts,
                json!({"kind": "flow", "addr": "1.2.3.4", "host": "api.openai.com", "port": 443,
                       "proto": "tcp", "bytes_out": 100, "bytes_in": 200}),
            ),
        ],
    );
    let b = batch(&wire(&req), &host(), &limits(), NOW).expect("batch");
    assert_eq!(b.rejected_count(), 0, "{}", b.rejected_message());
    let texts: Vec<&str> = b.events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "/usr/bin/git [/usr/bin/git push --force]",
            "/home/dev/.ssh/id_rsa (read) EPERM [secrets.ssh: denied]",
            "tcp 1.2.3.4:443 (api.openai.com) out 100B in 200B",
        ]
    );
    assert_eq!(b.events[1].rule.as_deref(), Some("secrets.ssh"));
    assert_eq!(b.events[1].outcome.as_deref(), Some("denied"));
    assert_eq!(b.events[0].ts_ms, records::T0_MS + 5_000);
    assert_eq!(b.events[0].kind, "exec");
}

#[test]
fn invalid_records_are_counted_with_reasons_and_the_rest_kept() {
    let report = records::report(S1, "alice", "r", false);
    let good = records::exec_event("build-01", 1, 1, S1, records::T0_NS, &["ls"]);
    let mut no_id = good.clone();
    no_id.attributes.retain(|a| a.key != attr::RECORD_ID);
    let mut upper_id = good.clone();
    upper_id.attributes.retain(|a| a.key != attr::RECORD_ID);
    upper_id.attributes.push(otlp::kv(
        attr::RECORD_ID,
        otlp::record_id(0xabcdef, 9).to_uppercase(),
    ));
    let mut no_uid = good.clone();
    no_uid.attributes.retain(|a| a.key != attr::SESSION_UID);
    let mut wrong_uid = good.clone();
    wrong_uid.attributes.retain(|a| a.key != attr::SESSION_UID);
    wrong_uid
        .attributes
        .push(otlp::kv(attr::SESSION_UID, "x-y-00000000000000b2"));
    let mut foreign = good.clone();
    foreign.event_name = "k8s.event".into();
    let mut bad_body = records::summary("build-01", 1, 5, &report, 1, records::T0_NS);
    bad_body.body = Some(otlp::json_to_any(&json!({"session": 5})));
    let mut bad_state = records::summary("build-01", 1, 6, &report, 1, records::T0_NS);
    bad_state
        .attributes
        .retain(|a| a.key != attr::SESSION_STATE);
    bad_state
        .attributes
        .push(otlp::kv(attr::SESSION_STATE, "paused"));
    let huge = records::exec_event(
        "build-01",
        1,
        7,
        S1,
        records::T0_NS,
        &["echo", &"x".repeat(70_000)],
    );
    let lost = records::event(
        "build-01",
        1,
        8,
        S1,
        records::T0_NS,
        json!({"kind": "lost", "total": 3}),
    );
    let mut lost = lost;
    lost.attributes
        .retain(|a| a.key != attr::SESSION_ID && a.key != attr::SESSION_UID);
    let req = records::request(
        "build-01",
        vec![
            good, no_id, upper_id, no_uid, wrong_uid, foreign, bad_body, bad_state, huge, lost,
        ],
    );
    let b = batch(&wire(&req), &host(), &limits(), NOW).expect("batch");
    assert_eq!(b.events.len(), 2, "the good exec and the daemon's `lost`");
    assert_eq!(b.events[1].session_uid, "", "a daemon event has no session");
    assert_eq!(b.rejected_count(), 8);
    let msg = b.rejected_message();
    for needle in [
        "2 without a valid guard.record.id",
        "2 without a valid guard.session.id",
        "1 not guard records",
        "1 summaries whose body is not a session report",
        "1 summaries with a bad guard.session.state",
        "1 with a body over the size limit",
    ] {
        assert!(msg.contains(needle), "{needle} in {msg}");
    }
}

#[test]
fn a_host_token_cannot_send_another_hosts_records() {
    let req = records::request(
        "build-02",
        vec![records::exec_event(
            "build-02",
            1,
            1,
            S1,
            records::T0_NS,
            &["ls"],
        )],
    );
    assert!(matches!(
        batch(&req, &host(), &limits(), NOW),
        Err(Claim::OtherHost { claimed, .. }) if claimed == "build-02"
    ));
    // One foreign resource among good ones refuses the whole request.
    let mut mixed = records::request(
        "build-01",
        vec![records::exec_event(
            "build-01",
            1,
            1,
            S1,
            records::T0_NS,
            &["ls"],
        )],
    );
    mixed.resource_logs.extend(req.resource_logs);
    assert!(batch(&mixed, &host(), &limits(), NOW).is_err());
}

#[test]
fn a_cluster_token_prefixes_each_resources_host() {
    let mut req = records::request(
        "node-1",
        vec![records::exec_event(
            "node-1",
            1,
            1,
            S1,
            records::T0_NS,
            &["ls"],
        )],
    );
    req.resource_logs.extend(
        records::request(
            "node-2",
            vec![records::exec_event(
                "node-2",
                2,
                1,
                S1,
                records::T0_NS,
                &["ls"],
            )],
        )
        .resource_logs,
    );
    let mut nameless = records::request(
        "x",
        vec![records::exec_event("x", 3, 1, S1, records::T0_NS, &["ls"])],
    );
    if let Some(r) = nameless.resource_logs[0].resource.as_mut() {
        r.attributes.retain(|a| a.key != attr::HOST_NAME);
    }
    req.resource_logs.extend(nameless.resource_logs);
    let b = batch(&req, &Sender::Cluster("eu".into()), &limits(), NOW).expect("batch");
    let hosts: Vec<&str> = b.events.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(hosts, ["eu/node-1", "eu/node-2"]);
    assert_eq!(b.hosts.len(), 2);
    assert_eq!(b.hosts[1].host_name, "node-2");
    assert_eq!(
        b.rejected_message(),
        "1 of a resource without a valid host.name"
    );
}

#[test]
fn the_json_mapping_reads_the_same_request() {
    let report = records::report(S1, "bob", "git@github.com:acme/api.git", false);
    let req = records::request(
        "build-01",
        vec![
            records::summary("build-01", 9, 1, &report, 1, records::T0_NS),
            records::exec_event("build-01", 9, 2, S1, records::T0_NS, &["make"]),
        ],
    );
    let json = serde_json::to_vec(&req).expect("json");
    let text = String::from_utf8_lossy(&json);
    assert!(
        text.contains("resourceLogs") && text.contains("timeUnixNano"),
        "OTLP JSON keys"
    );
    let back = decode::decode(Encoding::Json, &json).expect("decode json");
    let from_json = batch(&back, &host(), &limits(), NOW).expect("batch");
    let from_pb = batch(&wire(&req), &host(), &limits(), NOW).expect("batch");
    assert_eq!(from_json, from_pb);
    assert_eq!(from_json.summaries[0].state, "running");
}

#[test]
fn event_lines_are_cut_on_a_character_boundary() {
    assert_eq!(cut("héllo", 2), "h");
    assert_eq!(cut("héllo", 3), "hé");
    assert_eq!(cut("abc", 10), "abc");
}

/// A host with `[export] schema = "ocsf"`: its events arrive as OCSF records and
/// are indexed as the events they carry; their Detection Findings are taken, not
/// stored twice, and not counted as rejected.
#[test]
fn ocsf_bodies_are_read_back_as_the_events_they_carry() {
    let ts = records::T0_NS + 5_000_000_000;
    let event = json!({"schema": 2, "ts": "2026-11-21T05:00:05Z", "session": S1, "pid": 7,
        "comm": "cat", "kind": "open", "path": "/home/dev/.ssh/id_rsa", "access": ["read"],
        "result": "EPERM", "rule": "secrets.ssh", "action": "deny", "outcome": "denied",
        "alert": true, "rules": ["secrets.ssh"]});
    let ctx = guard_common::ocsf::Context {
        hostname: "build-01",
        host_uid: None,
        product_version: "0.1.0",
    };
    let ocsf = guard_common::ocsf::records(&event, &ctx);
    assert_eq!(ocsf.len(), 2, "the open and its finding");
    let req = records::request(
        "build-01",
        ocsf.iter()
            .enumerate()
            .map(|(i, r)| records::event("build-01", 7, 10 + i as u64, S1, ts, r.clone()))
            .collect(),
    );
    let b = batch(&wire(&req), &host(), &limits(), NOW).expect("batch");
    assert_eq!(b.rejected_count(), 0, "{}", b.rejected_message());
    assert_eq!(b.events.len(), 1, "the finding is not a second event");
    let e = &b.events[0];
    assert_eq!(e.kind, "open");
    assert_eq!(e.rule.as_deref(), Some("secrets.ssh"));
    assert_eq!(
        e.text,
        "/home/dev/.ssh/id_rsa (read) EPERM [secrets.ssh: denied]"
    );
    let stored: Value = serde_json::from_str(&e.event).expect("json");
    assert_eq!(stored, event, "the event as the host's audit log has it");
}

/// A host whose clock is three days ahead: its session is counted at its start
/// less the skew (never after the server's now), the host's start is kept, and
/// the host's row says how far ahead it is.
#[test]
fn a_host_clock_ahead_is_measured_and_its_sessions_corrected() {
    const DAY: i64 = 86_400_000;
    let now = records::T0_MS + 3_600_000;
    let mut report = records::report(S1, "alice", "https://github.com/acme/app", false);
    // The host believes it is three days later than it is.
    let ahead = 3 * DAY;
    let host_now_ns = ((now + ahead) * 1_000_000) as u64;
    report.started = Some("2026-11-24T05:30:00Z".into()); // T0 + 3 d + 30 min
    report.violations.items[0].ts = "2026-11-24T05:40:00Z".into();
    let req = records::request(
        "build-01",
        vec![
            records::summary("build-01", 7, 1, &report, 1, host_now_ns),
            records::heartbeat(),
        ],
    );
    let b = batch(&wire(&req), &host(), &limits(), now).expect("batch");
    assert_eq!(b.rejected_count(), 0, "{}", b.rejected_message());
    let h = &b.hosts[0];
    assert_eq!(h.clock_skew_ms, ahead);
    assert_eq!(h.heartbeat_ms, Some(now), "the batch held a heartbeat");
    let s = &b.summaries[0];
    assert_eq!(s.host_started_ms, Some(records::T0_MS + ahead + 1_800_000));
    assert_eq!(s.started_ms, records::T0_MS + 1_800_000, "less the skew");
    assert!(s.started_ms <= now);
    assert_eq!(
        s.violation_rows[0].ts_ms,
        records::T0_MS + 2_400_000,
        "its violations too"
    );
    // A host on time: nothing corrected.
    let on_time = records::request(
        "build-01",
        vec![records::summary(
            "build-01",
            7,
            2,
            &records::report(S1, "a", "r", false),
            1,
            records::T0_NS,
        )],
    );
    let b = batch(&wire(&on_time), &host(), &limits(), now).expect("batch");
    assert_eq!(b.summaries[0].host_started_ms, None);
    assert_eq!(b.summaries[0].started_ms, records::T0_MS);
}
