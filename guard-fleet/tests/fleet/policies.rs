//! Policies from the fleet over HTTP, as a security team and hosts use them: an
//! admin uploads versions (checked by the daemon's own parser) and assigns them to
//! groups, observe then enforce; a host pulls its group's assignment, signed with
//! the fleet's key. Each test runs on SQLite, and on PostgreSQL when
//! `GUARD_FLEET_TEST_PG` is set.

use crate::support;

use guard_common::otlp::{self, attr};
use guard_fleet::signing::Signer;
use guard_policy::{model::Mode, signed::Envelope};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, CLUSTER_TOKEN, DASH_TOKEN, Db, Fleet, HOST_TOKEN, records};

on_both!(
    an_admin_uploads_and_assigns_and_a_host_pulls_it_signed,
    a_fleet_without_a_signing_key_serves_no_policy,
    the_fleet_shows_what_an_observed_policy_would_stop,
    a_credential_s_assignment_covers_hosts_without_one_of_their_own,
    a_label_s_assignment_covers_hosts_that_say_it,
    a_version_replayed_on_a_stored_session_says_what_would_fire,
);

const GOOD: &str = "mode = \"enforce\"\n\n[[rule]]\nid = \"no-ssh-keys\"\nkind = \"file\"\n\
                    paths = [\"~/.ssh/**\"]\naction = \"kill\"\n";
const BAD: &str = "[[rule]]\nid = \"x\"\nkind = \"file\"\npaths = [\"~/.ssh/**\"]\n\
                   action = \"explode\"\n";

async fn upload(fleet: &Fleet, token: &str, name: &str, text: &str) -> (StatusCode, Value) {
    let path = format!("/api/policies/{name}");
    fleet
        .call(
            reqwest::Method::POST,
            &path,
            Some(token),
            Some(text.to_owned().into()),
            None,
        )
        .await
}

async fn assign(fleet: &Fleet, group: &str, version: i64, mode: &str) -> (StatusCode, Value) {
    let path = format!("/api/assignments/{group}");
    let body = json!({"policy": "ssh", "version": version, "mode": mode});
    fleet
        .call(
            reqwest::Method::PUT,
            &path,
            Some(ADMIN_TOKEN),
            None,
            Some(body),
        )
        .await
}

/// `GET path` with the dashboard token.
async fn get(fleet: &Fleet, path: &str) -> (StatusCode, Value) {
    fleet
        .call(reqwest::Method::GET, path, Some(DASH_TOKEN), None, None)
        .await
}

async fn would(fleet: &Fleet, group: &str) -> (StatusCode, Value) {
    get(fleet, &format!("/api/assignments/{group}/would")).await
}

async fn pull(fleet: &Fleet, group: &str, token: Option<&str>) -> (StatusCode, Value) {
    let path = format!("/v1/policy?group={group}");
    fleet
        .call(reqwest::Method::GET, &path, token, None, None)
        .await
}

/// A fleet with a signing key of its own (read at start-up), and the key's public
/// half as hosts pin it.
async fn signing_fleet(db: Db) -> (Fleet, [u8; 32]) {
    let keys = tempfile::tempdir().expect("tempdir");
    let key_path = keys.path().join("policy.key");
    let signer = Signer::create(&key_path).expect("a key");
    let extra = format!("[policy]\nsigning_key = \"{}\"\n", key_path.display());
    let fleet = Fleet::start(db, &extra).await;
    (fleet, base64_key(&signer.public_key()))
}

async fn an_admin_uploads_and_assigns_and_a_host_pulls_it_signed(db: Db) {
    let (fleet, public) = signing_fleet(db).await;

    // Only an admin changes policies; a dashboard token looks.
    let (status, _) = upload(&fleet, DASH_TOKEN, "ssh", GOOD).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A policy with errors is refused with the daemon's diagnostics, line and column.
    let (status, body) = upload(&fleet, ADMIN_TOKEN, "ssh", BAD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let diagnostics = body["diagnostics"].as_str().expect("diagnostics");
    assert!(
        diagnostics.contains("ssh.toml:5:10: error[G005]"),
        "{diagnostics}"
    );
    // Valid versions are numbered in turn.
    for version in 1..=2 {
        let (status, body) = upload(&fleet, ADMIN_TOKEN, "ssh", GOOD).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["version"], version);
    }

    // No assignment yet; credentials as for /v1/logs.
    assert_eq!(
        pull(&fleet, "ci", Some(HOST_TOKEN)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(pull(&fleet, "ci", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        pull(&fleet, "ci", Some(DASH_TOKEN)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Observe first: the host gets version 1, signed, in observe.
    let (status, body) = assign(&fleet, "ci", 1, "observe").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["serial"], 1);
    let (status, body) = pull(&fleet, "ci", Some(CLUSTER_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: Envelope = serde_json::from_value(body).expect("an envelope");
    assert_eq!(
        (first.version, first.serial, first.text.as_str()),
        (1, 1, GOOD)
    );
    assert_eq!(first.verify(&public, "ci", None), Ok(Mode::Observe));

    // Then enforce, with a newer serial; an older answer replayed is refused.
    let (status, body) = assign(&fleet, "ci", 2, "enforce").await;
    assert_eq!((status, body["serial"].clone()), (StatusCode::OK, json!(2)));
    let (_, body) = pull(&fleet, "ci", Some(HOST_TOKEN)).await;
    let second: Envelope = serde_json::from_value(body).expect("an envelope");
    assert_eq!(second.verify(&public, "ci", Some(1)), Ok(Mode::Enforce));
    assert!(first.verify(&public, "ci", Some(2)).is_err());

    // A version that does not exist, a bad mode: refused, nothing changes.
    assert_eq!(
        assign(&fleet, "ci", 9, "enforce").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        assign(&fleet, "ci", 1, "maybe").await.0,
        StatusCode::BAD_REQUEST
    );
    let listed: Value = fleet.api("/api/policies").await;
    assert_eq!(listed["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(listed["assignments"][0]["serial"], 2);
    assert_eq!(listed["assignments"][0]["version"], 2);

    // The hosts view compares each host's policy in force with its group's
    // assignment: drift until the host reports version 2 in enforce.
    for (policy, mode, drift) in [
        ("fleet:ssh@1", "observe", true),
        ("fleet:ssh@2", "enforce", false),
    ] {
        let mut req = records::request("build-01", vec![records::heartbeat()]);
        let resource = req.resource_logs[0].resource.as_mut().expect("a resource");
        resource
            .attributes
            .retain(|a| a.key != attr::POLICY_NAME && a.key != attr::POLICY_MODE);
        resource.attributes.extend([
            otlp::kv(attr::POLICY_NAME, policy),
            otlp::kv(attr::POLICY_MODE, mode),
            otlp::kv(attr::FLEET_GROUP, "ci"),
        ]);
        assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0);
        let hosts: Value = fleet.api("/api/hosts").await;
        let host = &hosts["hosts"][0];
        assert_eq!(
            (
                &host["fleet_group"],
                &host["assigned"],
                &host["assigned_mode"],
                &host["drift"]
            ),
            (
                &json!("ci"),
                &json!("fleet:ssh@2"),
                &json!("enforce"),
                &json!(drift)
            ),
            "{host}"
        );
    }
    fleet.stop().await;
}

/// Uploads policy `ssh` `n` times: versions 1 to `n`.
async fn upload_versions(fleet: &Fleet, n: i64) {
    for _ in 1..=n {
        assert_eq!(
            upload(fleet, ADMIN_TOKEN, "ssh", GOOD).await.0,
            StatusCode::CREATED
        );
    }
}

/// Assigns policy `ssh`'s `version` to `target` in `mode`, then pulls the answer of
/// a host of group `laptops` sending with `token`.
async fn assigned_then_pulled(
    fleet: &Fleet,
    target: &str,
    version: i64,
    mode: &str,
    token: &str,
) -> Envelope {
    let (status, body) = assign(fleet, target, version, mode).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = pull(fleet, "laptops", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).expect("an envelope")
}

/// Assignments by credential: `cluster:NAME` covers every host of a cluster token,
/// `host:NAME` one host's token; the host's own group's assignment comes first, and
/// every answer is signed for the group the host asked as.
async fn a_credential_s_assignment_covers_hosts_without_one_of_their_own(db: Db) {
    let (fleet, public) = signing_fleet(db).await;
    upload_versions(&fleet, 2).await;
    // The cluster `eu`: its token's hosts take version 1, whatever their group.
    let first = assigned_then_pulled(&fleet, "cluster:eu", 1, "observe", CLUSTER_TOKEN).await;
    assert_eq!(
        (first.version, first.serial, first.group.as_str()),
        (1, 1, "laptops")
    );
    assert_eq!(first.verify(&public, "laptops", None), Ok(Mode::Observe));
    // Not another credential's.
    assert_eq!(
        pull(&fleet, "laptops", Some(HOST_TOKEN)).await.0,
        StatusCode::NOT_FOUND
    );

    // One host by its own token.
    let mine = assigned_then_pulled(&fleet, "host:build-01", 2, "enforce", HOST_TOKEN).await;
    assert_eq!((mine.version, mine.serial), (2, 2));
    assert_eq!(mine.verify(&public, "laptops", Some(1)), Ok(Mode::Enforce));

    // The group's own assignment comes first, with a serial above both.
    let group = assigned_then_pulled(&fleet, "laptops", 1, "enforce", CLUSTER_TOKEN).await;
    assert_eq!((group.version, group.serial), (1, 3));
    assert_eq!(group.verify(&public, "laptops", Some(2)), Ok(Mode::Enforce));

    // A name that is neither a group nor a credential: refused.
    assert_eq!(
        assign(&fleet, "cluster:", 1, "enforce").await.0,
        StatusCode::BAD_REQUEST
    );

    // The hosts view: a host of the cluster whose group has no assignment is
    // compared with the cluster's.
    let mut req = records::request("edge-7", vec![records::heartbeat()]);
    let resource = req.resource_logs[0].resource.as_mut().expect("a resource");
    resource
        .attributes
        .retain(|a| a.key != attr::POLICY_NAME && a.key != attr::POLICY_MODE);
    resource.attributes.extend([
        otlp::kv(attr::POLICY_NAME, "fleet:ssh@1"),
        otlp::kv(attr::POLICY_MODE, "observe"),
        otlp::kv(attr::FLEET_GROUP, "edge"),
    ]);
    assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0);
    let hosts: Value = fleet.api("/api/hosts").await;
    let host = hosts["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == "eu/edge-7"))
        .unwrap_or_else(|| panic!("no eu/edge-7: {hosts}"));
    assert_eq!(
        (&host["assigned"], &host["assigned_mode"], &host["drift"]),
        (&json!("fleet:ssh@1"), &json!("observe"), &json!(false)),
        "{host}"
    );
    let groups = fleet.app().store.group_hosts().await.expect("groups");
    let eu = groups
        .iter()
        .find(|g| g.group == "cluster:eu")
        .unwrap_or_else(|| panic!("no cluster:eu: {groups:?}"));
    assert_eq!((eu.hosts, eu.drifting), (1, 0));
    fleet.stop().await;
}

/// Assignments by label: `label:KEY=VALUE` covers the hosts that say it of
/// themselves (`[fleet] labels`) when neither their group nor their credential has
/// one; of two labels' assignments, the first in byte order; a `_` in a label is a
/// letter, not a wildcard.
async fn a_label_s_assignment_covers_hosts_that_say_it(db: Db) {
    let (fleet, public) = signing_fleet(db).await;
    upload_versions(&fleet, 2).await;
    for (target, version, mode) in [
        ("label:env=ci", 1, "observe"),
        ("label:team=pay_ments", 2, "enforce"),
    ] {
        let (status, body) = assign(&fleet, target, version, mode).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let pulled = |labels: &'static str| {
        let path = format!(
            "/v1/policy?group=laptops&labels={}",
            labels.replace('=', "%3D").replace(',', "%2C")
        );
        let fleet = &fleet;
        async move {
            fleet
                .call(reqwest::Method::GET, &path, Some(HOST_TOKEN), None, None)
                .await
        }
    };
    let envelope = |(status, body): (StatusCode, Value)| -> Envelope {
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).expect("an envelope")
    };
    let ci = envelope(pulled("env=ci").await);
    assert_eq!((ci.version, ci.mode.as_str()), (1, "observe"));
    assert_eq!(ci.verify(&public, "laptops", None), Ok(Mode::Observe));
    let team = envelope(pulled("team=pay_ments").await);
    assert_eq!(team.verify(&public, "laptops", None), Ok(Mode::Enforce));
    // Both: `label:env=ci` comes first.
    assert_eq!(envelope(pulled("env=ci,team=pay_ments").await).version, 1);
    // `_` is not a wildcard; no label, no assignment; a bad label is refused.
    assert_eq!(pulled("team=payXments").await.0, StatusCode::NOT_FOUND);
    assert_eq!(pulled("").await.0, StatusCode::NOT_FOUND);
    assert_eq!(pulled("env=c i").await.0, StatusCode::BAD_REQUEST);
    for bad in ["label:env", "label:=ci", "label:e v=ci", "role:x"] {
        assert_eq!(
            assign(&fleet, bad, 1, "enforce").await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // The hosts view: each host under the assignment it takes, its labels shown.
    for (host, labels, policy) in [
        ("ci-1", "env=ci,team=pay_ments", "fleet:ssh@1"),
        ("ci-2", "team=payXments", "local"),
    ] {
        let mut req = records::request(host, vec![records::heartbeat()]);
        let resource = req.resource_logs[0].resource.as_mut().expect("a resource");
        resource
            .attributes
            .retain(|a| a.key != attr::POLICY_NAME && a.key != attr::POLICY_MODE);
        resource.attributes.extend([
            otlp::kv(attr::POLICY_NAME, policy),
            otlp::kv(attr::POLICY_MODE, "observe"),
            otlp::kv(attr::FLEET_GROUP, "edge"),
            otlp::kv(attr::FLEET_LABELS, labels),
        ]);
        assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0);
    }
    let hosts: Value = fleet.api("/api/hosts").await;
    let of = |name: &str| {
        hosts["hosts"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["host"] == name))
            .unwrap_or_else(|| panic!("no {name}: {hosts}"))
            .clone()
    };
    let (one, two) = (of("eu/ci-1"), of("eu/ci-2"));
    assert_eq!(
        (
            &one["labels"],
            &one["target"],
            &one["assigned"],
            &one["drift"]
        ),
        (
            &json!("env=ci,team=pay_ments"),
            &json!("label:env=ci"),
            &json!("fleet:ssh@1"),
            &json!(false)
        ),
        "{one}"
    );
    assert_eq!(
        (&two["target"], &two["assigned"], &two["drift"]),
        (&Value::Null, &Value::Null, &json!(false)),
        "{two}"
    );
    let groups = fleet.app().store.group_hosts().await.expect("groups");
    let counted: Vec<_> = groups
        .iter()
        .map(|g| (g.group.as_str(), g.hosts, g.drifting))
        .collect();
    assert_eq!(counted, [("edge", 1, 0), ("label:env=ci", 1, 0)]);
    fleet.stop().await;
}

async fn a_fleet_without_a_signing_key_serves_no_policy(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let (status, body) = pull(&fleet, "ci", Some(HOST_TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("signing_key")),
        "{body}"
    );
    fleet.stop().await;
}

/// A group in observe: the violations its hosts only logged while the rule says
/// `kill` or `deny` are what the policy would stop, by rule and host, since the
/// assignment; other outcomes, other groups and earlier violations are not.
async fn the_fleet_shows_what_an_observed_policy_would_stop(db: Db) {
    let keys = tempfile::tempdir().expect("tempdir");
    let key_path = keys.path().join("policy.key");
    Signer::create(&key_path).expect("a key");
    let extra = format!("[policy]\nsigning_key = \"{}\"\n", key_path.display());
    let fleet = Fleet::start(db, &extra).await;
    assert_eq!(
        upload(&fleet, ADMIN_TOKEN, "ssh", GOOD).await.0,
        StatusCode::CREATED
    );
    let (status, _) = would(&fleet, "ci").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no assignment yet");
    assert_eq!(assign(&fleet, "ci", 1, "observe").await.0, StatusCode::OK);

    let now = chrono::Utc::now();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let observed = now.timestamp_nanos_opt().expect("in range") as u64;
    // build-01 in group ci: one deny only logged (would stop), one alert; an
    // older logged kill. eu/other in another group: a logged kill.
    for (host, token, group, session) in [
        ("build-01", HOST_TOKEN, "ci", "00000000000000c1"),
        ("other", CLUSTER_TOKEN, "laptops", "00000000000000c2"),
    ] {
        let mut report = records::report(session, "dev", "https://github.com/acme/app", true);
        for v in &mut report.violations.items {
            v.ts.clone_from(&ts);
            if v.action == "deny" {
                v.outcome = "logged".into();
            }
        }
        let mut old = report.violations.items[1].clone();
        old.ts = "2026-01-01T00:00:00Z".into();
        old.action = "kill".into();
        report.violations.push(old);
        let mut req = records::request(
            host,
            vec![records::summary(host, 7, 1, &report, 1, observed)],
        );
        let res = req.resource_logs[0].resource.as_mut().expect("a resource");
        res.attributes.push(otlp::kv(attr::FLEET_GROUP, group));
        assert_eq!(fleet.send_ok(&req, token).await, 0, "rejected");
    }
    let (status, body) = would(&fleet, "ci").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["would_stop"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(
        (
            rows[0]["rule"].as_str(),
            rows[0]["host"].as_str(),
            rows[0]["action"].as_str(),
            rows[0]["count"].as_i64()
        ),
        (
            Some("network.egress"),
            Some("build-01"),
            Some("deny"),
            Some(1)
        ),
        "{body}"
    );
    let last = rows[0]["last_ms"].as_i64().expect("last_ms");
    assert!((now.timestamp_millis() - last).abs() < 2000, "{body}");
    fleet.stop().await;
}

/// `guard policy test` in the fleet: a stored session (the replay fixture of
/// guard-policy, as its host exported it) judged again by a stored version.
async fn a_version_replayed_on_a_stored_session_says_what_would_fire(db: Db) {
    let fleet = Fleet::start(db, "").await;
    assert_eq!(
        upload(&fleet, ADMIN_TOKEN, "ssh", GOOD).await.0,
        StatusCode::CREATED
    );
    let session = "00000000000000a1";
    let events: Vec<_> = include_str!("../../../guard-policy/tests/fixtures/replay/session.jsonl")
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let body: Value = serde_json::from_str(line).expect("JSON");
            let seq = n as u64 + 1;
            records::event(
                "build-01",
                1,
                seq,
                session,
                records::T0_NS + seq * 1_000,
                body,
            )
        })
        .collect::<Vec<_>>();
    let mut records = events;
    let report = records::report(session, "dev", "https://github.com/acme/app", true);
    records.push(records::summary(
        "build-01",
        1,
        100,
        &report,
        1,
        records::T0_NS + 100_000,
    ));
    let req = records::request("build-01", records);
    assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0, "rejected");

    let (status, body) = get(
        &fleet,
        &format!("/api/policies/ssh/1/test?session={session}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["host"], "build-01");
    assert_eq!(body["unreadable"], 0, "{body}");
    let report = &body["report"];
    assert_eq!(
        (report["lines"].as_u64(), report["judged"].as_u64()),
        (Some(15), Some(10)),
        "{body}"
    );
    let row = |rule: &str| {
        report["rules"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["rule"] == rule))
            .map(|r| (r["would"].as_u64(), r["before"].as_u64()))
            .unwrap_or_else(|| panic!("no row for {rule}: {body}"))
    };
    // The version's own rule would kill the key read; the recording's rules are gone.
    assert_eq!(row("no-ssh-keys"), (Some(1), Some(0)));
    assert_eq!(row("credentials-read"), (Some(0), Some(1)));
    assert_eq!(row("cloud-metadata"), (Some(0), Some(1)));

    // The same through the CLI.
    let base = fleet.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(support::process::BIN)
            .args(["policy", "test", "ssh", "1", "--session", session])
            .args(["--server", &base])
            .env("GUARD_FLEET_TOKEN", DASH_TOKEN)
            .output()
    })
    .await
    .expect("joined")
    .expect("guard-fleet policy test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(cli["report"], body["report"]);

    let (status, _) = get(&fleet, "/api/policies/ssh/2/test?session=00000000000000a1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no version 2");
    let (status, _) = get(&fleet, "/api/policies/ssh/1/test?session=00000000000000ff").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such session");
    fleet.stop().await;
}

fn base64_key(text: &str) -> [u8; 32] {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}
