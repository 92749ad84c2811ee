//! Policy from the fleet, end to end: two fleet replicas on PostgreSQL with their
//! signing key, an admin who uploads a policy and assigns it to a group with
//! `guard-fleet policy`, and two daemons whose own files name that fleet (`[fleet]`).
//! Requires root.

use std::{ffi::OsStr, fs, path::Path};

use guard_policy::signed::Envelope;
use guard_tests::{
    Enforcing, Event, Finished, HttpServer, TempDir, dump, fake_agent_exe, fleet::Fleet,
    pg::Postgres, unique_name,
};
use ring::signature::Ed25519KeyPair;
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
/// A host: a daemon whose own file names the fleet replica `fleet` for its policy
/// and its export, with `[fleet]` lines `member` (its group, its labels), named
/// `name` in the fleet.
fn host(fleet: &Fleet, public_key: &str, member: &str, name: &str, token: &Path) -> Enforcing {
    let local = format!(
        "[fleet]\npolicy_url = \"{base}/v1/policy\"\npublic_key = \"{public_key}\"\n\
         {member}\ninterval = \"1s\"\n\n\
         [export]\nendpoint = \"{base}/v1/logs\"\ntoken_file = \"{token}\"\nbatch_interval = \"100ms\"\n\
         summary_interval = \"1s\"\nresource = {{ \"host.name\" = \"{name}\" }}\n",
        base = fleet.base,
        token = token.display(),
    );
    let s = Enforcing::start(fake_agent_exe!(), "guard-e2e-fleetpol", &local, |dir| {
        fs::write(dir.join("secret.txt"), "the fleet protects this\n").expect("the secret");
    });
    // No assignment yet: the host's own policy, which has no rule on the secret.
    assert_eq!(
        s.loaded.str("policy"),
        Some(s.dir.join("guard.toml").to_str().expect("UTF-8"))
    );
    s
}

/// The rollout as a security team runs it: two fleet replicas on one PostgreSQL,
/// two hosts each pulling from its own replica (two daemons on this one kernel: each
/// also sees the other's sessions, as the policy names both agents); a version assigned in observe
/// reaches both, the fleet shows what it would have stopped on a real session,
/// promotion (through the other replica) makes the next read on each host killed;
/// a forged, an unsigned-by-the-key and an invalid but signed policy are refused on
/// the host and reported; the fleet gone, enforcement stays.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "the rollout in order: each step needs the fleet, keys and hosts that the steps before it set up"
)]
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
    let pg = Postgres::start();
    let config = format!(
        "tokens_file = \"{}\"\n[policy]\nsigning_key = \"{}\"\n\
         [database]\nurl = \"{}\"\nmax_connections = 4\n",
        tokens.display(),
        key.display(),
        pg.url()
    );
    let mut a = Fleet::configured(&config, &cluster, &dashboard);
    let mut b = Fleet::configured(&config, &cluster, &dashboard);

    // Host 1 takes its group's assignment; host 2, in a group without one, takes
    // the assignment of a label it says of itself.
    let group = unique_name("grp");
    let pool = unique_name("pool");
    let label = format!("label:pool={pool}");
    let (h1, h2) = (unique_name("h1"), unique_name("h2"));
    let mut s1 = host(
        &a,
        &public_key,
        &format!("group = \"{group}\""),
        &h1,
        &host_token,
    );
    let member2 = format!(
        "group = \"{}\"\nlabels = {{ pool = \"{pool}\" }}",
        unique_name("own")
    );
    let mut s2 = host(&b, &public_key, &member2, &h2, &host_token);
    let (secret1, secret2) = (s1.path("secret.txt"), s2.path("secret.txt"));

    // The admin uploads the fleet's policy (both hosts' agents, a kill on the secret).
    let text = format!(
        "mode = \"enforce\"\n\n[agents]\nnames = [\"{}\", \"{}\"]\n\n[[rule]]\n\
         id = \"fleet-secret\"\nkind = \"file\"\npaths = [\"{secret1}\", \"{secret2}\"]\n\
         action = \"kill\"\n",
        s1.agent.name(),
        s2.agent.name()
    );
    let file = keys.join("fleet-policy.toml");
    fs::write(&file, &text).expect("the policy file");
    let file = file.to_str().expect("UTF-8");
    let pushed = policy(&a, &admin, &["push", "protect", file]);
    assert_eq!(pushed["version"], 1, "{pushed}");

    // Observe first, through replica a: both hosts apply it in observe mode; a read
    // is reported, not killed.
    for target in [&group, &label] {
        policy(
            &a,
            &admin,
            &["assign", target, "protect", "1", "--mode", "observe"],
        );
    }
    for s in [&mut s1, &mut s2] {
        let loaded = policy_event(s, "policy_loaded", "fleet:protect@1");
        assert_eq!(loaded.str("mode"), Some("observe"), "{loaded:?}");
    }
    let (run, events) = s1.sh(&format!("cat {secret1}"));
    assert!(run.status.success(), "observe kills nothing: {run:?}");
    assert!(run.stdout.contains("the fleet protects this"));
    assert_eq!(
        violation_of(&events, &run, &secret1),
        (Some("fleet-secret"), Some("logged"), Some("kill"))
    );
    // What it would have stopped, on that real session, from the other replica.
    guard_tests::wait_until(
        "the fleet to show what the observed policy would stop",
        std::time::Duration::from_secs(30),
        || {
            let would = b.page(&format!("/api/assignments/{group}/would"));
            would.contains("\"rule\":\"fleet-secret\"") && would.contains(&format!("/{h1}\""))
        },
    );
    // Each host's policy in force, on the hosts view.
    guard_tests::wait_until(
        "the fleet to show both hosts' policy",
        std::time::Duration::from_secs(30),
        || {
            let hosts = b.page("/api/hosts");
            hosts.matches("fleet:protect@1").count() >= 2
                && hosts.contains(&h1)
                && hosts.contains(&h2)
        },
    );

    // Promoted to enforce through replica b: the next read on each host is killed.
    for target in [&group, &label] {
        policy(
            &b,
            &admin,
            &["assign", target, "protect", "1", "--mode", "enforce"],
        );
    }
    wait_mode(&mut s1, "enforce");
    wait_mode(&mut s2, "enforce");
    guard_tests::wait_until(
        "the fleet to see both hosts enforce their assignment",
        std::time::Duration::from_secs(30),
        || {
            let page = a.page("/api/hosts");
            page.matches("\"policy_mode\":\"enforce\"").count() >= 2
                && page.contains("\"assigned_mode\":\"enforce\"")
                && page.contains(&format!("\"target\":\"{label}\""))
                && !page.contains("\"drift\":true")
        },
    );
    let enforced = |s: &mut Enforcing, secret: &str, when: &str| {
        let (run, events) = s.sh(&format!("cat {secret}; echo status=$?"));
        assert_eq!(
            violation_of(&events, &run, secret),
            (Some("fleet-secret"), Some("killed"), None),
            "{when}"
        );
        assert!(
            !run.stdout.contains("the fleet protects this"),
            "{when}: {run:?}"
        );
    };
    enforced(&mut s1, &secret1, "enforce from the fleet");
    enforced(&mut s2, &secret2, "enforce from the fleet");

    // Answers that are not the fleet's, served where host 1 asks: refused,
    // reported, the policy in force stays. Forged (a signature not the fleet
    // key's), then signed by the key but invalid (a policy this host cannot read).
    let served = TempDir::new("guard-e2e-forged");
    let forged = serde_json::json!({
        "group": group,
        "serial": 1000,
        "policy": "protect",
        "version": 2,
        "mode": "enforce",
        "text": format!("[agents]\nnames = [\"{}\"]\n", s1.agent.name()),
        "signature": "A".repeat(86) + "==",
    });
    fs::write(served.join("policy"), forged.to_string()).expect("the forged answer");
    let server = HttpServer::serve(served.path(), &served.join("http.log"));
    let own = s1.dir.join("guard.toml");
    let rewritten = fs::read_to_string(&own)
        .expect("the host's policy")
        .replace(
            &format!("{}/v1/policy", a.base),
            &format!("http://127.0.0.1:{}/policy", server.port),
        );
    guard_tests::write_policy(&own, &rewritten);
    let rejected = policy_event(&mut s1, "policy_rejected", "fleet:protect@2");
    assert!(
        rejected
            .str("errors")
            .is_some_and(|e| e.contains("signature")),
        "{rejected:?}"
    );
    enforced(&mut s1, &secret1, "after a forged policy");
    let invalid = signed(
        &key,
        Envelope {
            group,
            serial: 1001,
            policy: "protect".into(),
            version: 3,
            mode: "enforce".into(),
            text: "[[rule]]\nid = \"x\"\nkind = \"file\"\naction = \"explode\"\n".into(),
            signature: String::new(),
        },
    );
    fs::write(served.join("policy"), invalid).expect("the invalid answer");
    let rejected = policy_event(&mut s1, "policy_rejected", "fleet:protect@3");
    assert!(
        rejected
            .str("errors")
            .is_some_and(|e| e.contains("explode")),
        "{rejected:?}"
    );
    enforced(&mut s1, &secret1, "after an invalid policy");
    // Both refusals reached the fleet, as host 1's events.
    guard_tests::wait_until(
        "the fleet to hold host 1's refusals",
        std::time::Duration::from_secs(30),
        || {
            // Each refused version once (the host asks again every second).
            pg.value(&format!(
                "SELECT COUNT(DISTINCT event::json->>'policy') FROM events \
                 WHERE host LIKE '%/{h1}' AND kind = 'policy_rejected'"
            )) == "2"
        },
    );

    // The fleet gone (both replicas): enforcement unchanged.
    a.kill();
    b.kill();
    enforced(&mut s2, &secret2, "with the fleet down");
    drop(server);
    s1.finish();
    s2.finish();
}

/// `envelope` signed with the fleet's key at `key` (PKCS#8), as the fleet serves it.
fn signed(key: &Path, envelope: Envelope) -> String {
    let der = fs::read(key).expect("the fleet's key");
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).expect("an Ed25519 key");
    let envelope = envelope.sign(|m| pair.sign(m).as_ref().to_vec());
    serde_json::to_string(&envelope).expect("JSON")
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
