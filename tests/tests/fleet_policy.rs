//! Policy from the fleet, end to end: a fleet server (SQLite) with its signing key,
//! an admin who uploads a policy and assigns it to a group with `guard-fleet
//! policy`, and a daemon whose own file names that fleet (`[fleet]`). Requires
//! root.

use std::{ffi::OsStr, fs};

use guard_tests::{
    Enforcing, Event, Finished, HttpServer, TempDir, dump, fake_agent_exe, fleet::Fleet,
    unique_name,
};
use serde_json::Value;

/// `guard-fleet token --scope SCOPE`: the token and its tokens-file entry.
fn token(name: &str, scope: &str) -> (String, String) {
    let out = Fleet::admin(&[
        OsStr::new("token"),
        OsStr::new("--name"),
        OsStr::new(name),
        OsStr::new("--scope"),
        OsStr::new(scope),
    ])
    .expect("guard-fleet token");
    let lines: Vec<&str> = out.lines().collect();
    let entry = lines[3..].join("\n") + "\n";
    (lines[1].trim().to_owned(), entry)
}

/// `guard-fleet policy ARGS --server … --token ADMIN`.
fn policy(fleet: &Fleet, admin: &str, args: &[&str]) -> Value {
    let mut all: Vec<&OsStr> = vec![OsStr::new("policy")];
    all.extend(args.iter().map(OsStr::new));
    all.extend([
        OsStr::new("--server"),
        OsStr::new(&fleet.base),
        OsStr::new("--token"),
        OsStr::new(admin),
    ]);
    let out = Fleet::admin(&all).unwrap_or_else(|e| panic!("{e}\n{}", fleet.log()));
    serde_json::from_str(&out).expect("guard-fleet policy prints JSON")
}

/// The violation of the open of `secret` in the session of `run`: its rule,
/// outcome and (observe mode) what enforce would have done.
fn violation_of<'e>(
    events: &'e [Event],
    run: &Finished,
    secret: &str,
) -> (Option<&'e str>, Option<&'e str>, Option<&'e str>) {
    let open = Enforcing::of_run(events, run)
        .into_iter()
        .find(|e| e.kind() == "open" && e.str("path") == Some(secret) && e.str("rule").is_some())
        .unwrap_or_else(|| panic!("no violation on {secret}:\n{}", dump(events)));
    (open.str("rule"), open.str("outcome"), open.str("would"))
}

/// Waits for a `kind` event of the daemon about policy `name`; returns it.
fn policy_event(s: &mut Enforcing, kind: &str, name: &str) -> Event {
    let events = s.daemon.wait_for(&format!("{kind} of {name}"), |ev| {
        ev.iter()
            .any(|e| e.kind() == kind && e.str("policy") == Some(name))
    });
    events
        .iter()
        .rev()
        .find(|e| e.kind() == kind && e.str("policy") == Some(name))
        .cloned()
        .expect("found above")
}

/// A policy version assigned in the fleet reaches the daemon in observe (the read
/// it would kill is reported with `would`, and lives), then in enforce (the next
/// read is killed); a policy not signed by the pinned key is refused on the host and
/// the refusal reported; with the fleet gone, enforcement stays.
#[test]
fn a_fleet_policy_is_observed_then_enforced_and_a_forged_one_is_refused() {
    guard_tests::require_root();
    let keys = TempDir::new("guard-e2e-fleetkeys");
    let key = keys.join("policy.key");
    let out = Fleet::admin(&[
        OsStr::new("policy-key"),
        OsStr::new("--new"),
        key.as_os_str(),
    ])
    .expect("guard-fleet policy-key --new");
    let public_key = out
        .lines()
        .nth(1)
        .expect("the public key")
        .trim()
        .to_owned();
    let (admin, admin_entry) = token("e2e-admin", "admin");
    let (cluster, cluster_entry) = token("e2e-hosts", "cluster");
    let (dashboard, dashboard_entry) = token("e2e-look", "dashboard");
    let tokens = keys.join("tokens.toml");
    fs::write(
        &tokens,
        [admin_entry, cluster_entry, dashboard_entry].concat(),
    )
    .expect("tokens");
    let host_token = keys.join("host-token");
    fs::write(&host_token, &cluster).expect("the host's token");
    let mut fleet = Fleet::configured(
        &format!(
            "tokens_file = \"{}\"\n[policy]\nsigning_key = \"{}\"\n",
            tokens.display(),
            key.display()
        ),
        &cluster,
        &dashboard,
    );

    let group = unique_name("grp");
    let local = format!(
        "[fleet]\npolicy_url = \"{base}/v1/policy\"\npublic_key = \"{public_key}\"\n\
         group = \"{group}\"\ninterval = \"1s\"\n\n\
         [export]\nendpoint = \"{base}/v1/logs\"\ntoken_file = \"{token}\"\nbatch_interval = \"100ms\"\n",
        base = fleet.base,
        token = host_token.display(),
    );
    let mut s = Enforcing::start(fake_agent_exe!(), "guard-e2e-fleetpol", &local, |dir| {
        fs::write(dir.join("secret.txt"), "the fleet protects this\n").expect("the secret");
    });
    let secret = s.path("secret.txt");
    // No assignment yet: the host's own policy, which has no rule on the secret.
    assert_eq!(
        s.loaded.str("policy"),
        Some(s.dir.join("guard.toml").to_str().expect("UTF-8"))
    );

    // The admin uploads the fleet's policy (the test's agent, a kill on the secret).
    let text = format!(
        "mode = \"enforce\"\n\n[agents]\nnames = [\"{agent}\"]\n\n[[rule]]\nid = \"fleet-secret\"\n\
         kind = \"file\"\npaths = [\"{secret}\"]\naction = \"kill\"\n",
        agent = s.agent.name()
    );
    let file = keys.join("fleet-policy.toml");
    fs::write(&file, &text).expect("the policy file");
    let file = file.to_str().expect("UTF-8");
    let pushed = policy(&fleet, &admin, &["push", "protect", file]);
    assert_eq!(pushed["version"], 1, "{pushed}");

    // Observe first: applied in observe mode; the read is reported, not killed.
    policy(
        &fleet,
        &admin,
        &["assign", &group, "protect", "1", "--mode", "observe"],
    );
    let loaded = policy_event(&mut s, "policy_loaded", "fleet:protect@1");
    assert_eq!(loaded.str("mode"), Some("observe"), "{loaded:?}");
    let (run, events) = s.sh(&format!("cat {secret}"));
    assert!(run.status.success(), "observe kills nothing: {run:?}");
    assert!(run.stdout.contains("the fleet protects this"));
    assert_eq!(
        violation_of(&events, &run, &secret),
        (Some("fleet-secret"), Some("logged"), Some("kill"))
    );

    // The fleet's hosts view says which policy the host has in force.
    guard_tests::wait_until(
        "the fleet to show the host's policy",
        std::time::Duration::from_secs(30),
        || fleet.page("/api/hosts").contains("fleet:protect@1"),
    );

    // Promoted to enforce: the next read is killed.
    policy(
        &fleet,
        &admin,
        &["assign", &group, "protect", "1", "--mode", "enforce"],
    );
    wait_mode(&mut s, "enforce");
    // The fleet sees the host take it: its group's assignment, no drift.
    guard_tests::wait_until(
        "the fleet to see the host enforce its assignment",
        std::time::Duration::from_secs(30),
        || {
            let page = fleet.page("/api/hosts");
            page.contains(&format!("\"fleet_group\":\"{group}\""))
                && page.contains("\"assigned_mode\":\"enforce\"")
                && page.contains("\"policy_mode\":\"enforce\"")
                && page.contains("\"drift\":false")
        },
    );
    let enforced = |s: &mut Enforcing, when: &str| {
        let (run, events) = s.sh(&format!("cat {secret}; echo status=$?"));
        assert_eq!(
            violation_of(&events, &run, &secret),
            (Some("fleet-secret"), Some("killed"), None),
            "{when}"
        );
        assert!(
            !run.stdout.contains("the fleet protects this"),
            "{when}: {run:?}"
        );
    };
    enforced(&mut s, "enforce from the fleet");

    // A forged answer (the text changed, a signature not the fleet key's, a newer
    // serial) served where the host asks: refused, reported, the policy stays.
    let served = TempDir::new("guard-e2e-forged");
    let forged = serde_json::json!({
        "group": group,
        "serial": 1000,
        "policy": "protect",
        "version": 2,
        "mode": "enforce",
        "text": format!("[agents]\nnames = [\"{}\"]\n", s.agent.name()),
        "signature": "A".repeat(86) + "==",
    });
    fs::write(served.join("policy"), forged.to_string()).expect("the forged answer");
    let server = HttpServer::serve(served.path(), &served.join("http.log"));
    let own = s.dir.join("guard.toml");
    let rewritten = fs::read_to_string(&own)
        .expect("the host's policy")
        .replace(
            &format!("{}/v1/policy", fleet.base),
            &format!("http://127.0.0.1:{}/policy", server.port),
        );
    guard_tests::write_policy(&own, &rewritten);
    let rejected = policy_event(&mut s, "policy_rejected", "fleet:protect@2");
    assert!(
        rejected
            .str("errors")
            .is_some_and(|e| e.contains("signature")),
        "{rejected:?}"
    );
    enforced(&mut s, "after a forged policy");

    // The fleet gone: enforcement unchanged.
    fleet.kill();
    enforced(&mut s, "with the fleet down");
    drop(server);
    s.finish();
}

/// Waits until the daemon's latest `policy_loaded` is in `mode`.
fn wait_mode(s: &mut Enforcing, mode: &str) {
    s.daemon
        .wait_for(&format!("a policy in {mode} mode"), |ev| {
            ev.iter()
                .rev()
                .find(|e| e.kind() == "policy_loaded")
                .is_some_and(|e| e.str("mode") == Some(mode))
        });
}
