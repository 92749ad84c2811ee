//! Real OTLP requests as a guard host builds them (docs/export.md), for the unit
//! tests (included by path) and the integration tests.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the support module"
)]

use guard_common::{
    otlp::{self, attr},
    report::{Bounded, Command, Destination, FileUse, Report, Repository, SecretRead, Violation},
};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as Any},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use serde_json::{Value, json};

/// 2026-11-21T05:00:00Z in unix nanoseconds.
pub(crate) const T0_NS: u64 = 1_795_237_200_000_000_000;
pub(crate) const T0_MS: i64 = 1_795_237_200_000;

/// A host's resource attributes, as its daemon sends them.
pub(crate) fn resource(host_name: &str) -> Resource {
    let tiers = KeyValue {
        key: attr::TIERS.to_owned(),
        value: Some(AnyValue {
            value: Some(Any::KvlistValue(KeyValueList {
                values: vec![
                    otlp::kv("file_read_deny", "bpf_lsm"),
                    otlp::kv("exec_deny", "bpf_lsm"),
                    otlp::kv("network_deny", "cgroup_sock_addr"),
                ],
            })),
        }),
        ..Default::default()
    };
    Resource {
        attributes: vec![
            otlp::kv(attr::SERVICE_NAME, "guard"),
            otlp::kv(attr::SERVICE_VERSION, "0.1.0"),
            otlp::kv(attr::HOST_NAME, host_name),
            otlp::kv(attr::HOST_ID, machine_id(host_name)),
            otlp::kv(attr::HOST_ARCH, "amd64"),
            otlp::kv(attr::OS_TYPE, "linux"),
            otlp::kv(attr::OS_VERSION, "6.12.0-guard"),
            otlp::kv(attr::BOOT_ID, "b00710000000000000000000000000b0"),
            otlp::kv(attr::POLICY_NAME, "workstation"),
            otlp::kv(attr::POLICY_MODE, "enforce"),
            tiers,
        ],
        ..Default::default()
    }
}

/// A stable 32-hex machine id for a host name.
pub(crate) fn machine_id(host_name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:016x}", h.rotate_left(17))
}

/// The session uid of `session` (16 hex digits) on `host_name`.
pub(crate) fn session_uid(host_name: &str, session: &str) -> String {
    otlp::session_uid(
        &machine_id(host_name),
        "b00710000000000000000000000000b0",
        session,
    )
}

/// One request: `records` from `host_name`.
pub(crate) fn request(host_name: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(host_name)),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: otlp::SCOPE.to_owned(),
                    version: "0.1.0".to_owned(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn common(host_name: &str, spool: u64, seq: u64, session: &str) -> Vec<KeyValue> {
    vec![
        otlp::kv(attr::RECORD_ID, otlp::record_id(spool, seq)),
        otlp::kv(attr::SESSION_ID, session),
        otlp::kv(attr::SESSION_UID, session_uid(host_name, session)),
    ]
}

/// A session summary record (`seq` is the spool's sequence number; `summary_seq`
/// the summary's number for its session).
pub(crate) fn summary(
    host_name: &str,
    spool: u64,
    seq: u64,
    report: &Report,
    summary_seq: i64,
    observed_ns: u64,
) -> LogRecord {
    let state = if report.ended.is_some() {
        "ended"
    } else {
        "running"
    };
    let mut attributes = common(host_name, spool, seq, &report.session);
    attributes.extend([
        otlp::kv(attr::SESSION_STATE, state),
        otlp::kv_int(attr::SUMMARY_SEQ, summary_seq),
        otlp::kv(attr::AGENT_NAME, report.agent.clone().unwrap_or_default()),
        otlp::kv(attr::USER_NAME, report.user.clone().unwrap_or_default()),
        otlp::kv_int(attr::USER_ID, 1000),
    ]);
    if let Some(repo) = &report.repository {
        attributes.push(otlp::kv(
            attr::VCS_URL,
            repo.url.clone().unwrap_or_default(),
        ));
        attributes.push(otlp::kv(
            attr::VCS_BRANCH,
            repo.branch.clone().unwrap_or_default(),
        ));
        attributes.push(otlp::kv(
            attr::VCS_REVISION,
            repo.commit.clone().unwrap_or_default(),
        ));
    }
    let body = serde_json::to_value(report).expect("report json");
    LogRecord {
        time_unix_nano: observed_ns,
        observed_time_unix_nano: observed_ns,
        event_name: otlp::SUMMARY_EVENT.to_owned(),
        severity_number: otlp::severity::INFO,
        severity_text: "INFO".to_owned(),
        body: Some(otlp::json_to_any(&body)),
        attributes,
        ..Default::default()
    }
}

/// A daemon's heartbeat (it had nothing else to send).
pub(crate) fn heartbeat() -> LogRecord {
    LogRecord {
        time_unix_nano: T0_NS,
        observed_time_unix_nano: T0_NS,
        event_name: otlp::HEARTBEAT_EVENT.to_owned(),
        severity_number: otlp::severity::INFO,
        ..Default::default()
    }
}

/// An event record with `body` (an audit-log event, `kind` included).
pub(crate) fn event(
    host_name: &str,
    spool: u64,
    seq: u64,
    session: &str,
    ts_ns: u64,
    body: Value,
) -> LogRecord {
    // An OCSF body names its kind in metadata.event_code.
    let kind = body["kind"]
        .as_str()
        .or_else(|| body["metadata"]["event_code"].as_str())
        .unwrap_or("exec")
        .to_owned();
    let mut attributes = common(host_name, spool, seq, session);
    attributes.push(otlp::kv(attr::EVENT_KIND, kind.clone()));
    if let Some(rule) = body.get("rule").and_then(Value::as_str) {
        attributes.push(otlp::kv(attr::RULE, rule));
        attributes.push(otlp::kv(
            attr::OUTCOME,
            body["outcome"].as_str().unwrap_or_default(),
        ));
    }
    LogRecord {
        time_unix_nano: ts_ns,
        observed_time_unix_nano: ts_ns + 1_000,
        event_name: format!("{}{kind}", otlp::EVENT_PREFIX),
        severity_number: otlp::severity::INFO,
        body: Some(otlp::json_to_any(&body)),
        attributes,
        ..Default::default()
    }
}

/// An `exec` event of `argv`.
pub(crate) fn exec_event(
    host_name: &str,
    spool: u64,
    seq: u64,
    session: &str,
    ts_ns: u64,
    argv: &[&str],
) -> LogRecord {
    event(
        host_name,
        spool,
        seq,
        session,
        ts_ns,
        json!({"schema": 2, "ts": "2026-11-21T05:00:01Z", "kind": "exec", "session": session,
               "pid": 4242, "comm": "sh", "exe": argv.first().copied().unwrap_or("/bin/sh"),
               "argv": argv}),
    )
}

/// A report with a bit of everything: commands, files by class, destinations
/// (one a model API), a secret read then egress, and violations.
pub(crate) fn report(session: &str, user: &str, repo: &str, ended: bool) -> Report {
    let file = |path: &str| FileUse {
        path: path.to_owned(),
        opens: 2,
        by: "cat".to_owned(),
        ..Default::default()
    };
    let mut commands = Bounded::default();
    for (i, argv) in [
        vec!["git", "status"],
        vec!["cargo", "test"],
        vec!["cat", "/home/dev/.aws/credentials"],
    ]
    .into_iter()
    .enumerate()
    {
        commands.push(Command {
            ts: format!("2026-11-21T05:0{i}:10Z"),
            pid: 100 + i as u32,
            exe: format!("/usr/bin/{}", argv[0]),
            argv: argv.into_iter().map(str::to_owned).collect(),
            verdict: None,
            sandboxed: Some(i != 3),
        });
    }
    let mut report = Report {
        session: session.to_owned(),
        agent: Some("codex".to_owned()),
        agent_version: Some("0.98.0".to_owned()),
        root_pid: Some(100),
        how: Some("exec".to_owned()),
        user: Some(user.to_owned()),
        uid: Some(1000),
        host: None,
        workspace: Some("/home/dev/src/app".to_owned()),
        repository: Some(Repository {
            url: Some(repo.to_owned()),
            branch: Some("main".to_owned()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            ..Default::default()
        }),
        started: Some("2026-11-21T05:00:00Z".to_owned()),
        ended: ended.then(|| "2026-11-21T05:10:00Z".to_owned()),
        duration_ms: Some(600_000),
        commands,
        bytes_out: 5_000_000,
        bytes_in: 9_000_000,
        ..Default::default()
    };
    report
        .read
        .workspace
        .push(file("/home/dev/src/app/src/main.rs"));
    report.read.secrets.push(file("/home/dev/.aws/credentials"));
    report.read.system.omitted = 120;
    report
        .written
        .workspace
        .push(file("/home/dev/src/app/src/lib.rs"));
    report.destinations.push(Destination {
        addr: "162.159.140.245".to_owned(),
        port: 443,
        proto: "tcp".to_owned(),
        host: Some("api.openai.com".to_owned()),
        connects: 3,
        bytes_out: 4_000_000,
        bytes_in: 8_000_000,
        flows: 3,
        class: Some("model".to_owned()),
        ..Default::default()
    });
    report.destinations.push(Destination {
        addr: "140.82.121.4".to_owned(),
        port: 443,
        proto: "tcp".to_owned(),
        host: Some("github.com".to_owned()),
        connects: 1,
        bytes_out: 1_000_000,
        bytes_in: 1_000_000,
        flows: 1,
        class: Some("code_host".to_owned()),
        ..Default::default()
    });
    report.secret_egress.secrets.push(SecretRead {
        ts: "2026-11-21T05:02:10Z".to_owned(),
        pid: 102,
        comm: "cat".to_owned(),
        path: "/home/dev/.aws/credentials".to_owned(),
    });
    report.violations.push(Violation {
        ts: "2026-11-21T05:02:10Z".to_owned(),
        pid: 102,
        comm: "cat".to_owned(),
        what: "open /home/dev/.aws/credentials".to_owned(),
        path: Some("/home/dev/.aws/credentials".to_owned()),
        rule: "secrets.cloud".to_owned(),
        action: "alert".to_owned(),
        outcome: "alerted".to_owned(),
        alert: true,
    });
    report.violations.push(Violation {
        ts: "2026-11-21T05:03:00Z".to_owned(),
        pid: 103,
        comm: "curl".to_owned(),
        what: "connect 203.0.113.9:443".to_owned(),
        path: None,
        rule: "network.egress".to_owned(),
        action: "deny".to_owned(),
        outcome: "denied".to_owned(),
        alert: true,
    });
    report
}
