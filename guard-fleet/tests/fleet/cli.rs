//! The `guard-fleet` binary as people run it: a trial with nothing configured,
//! `token`, `sessions`, `report`, and a bad configuration.

use crate::support;

use std::path::Path;

use guard_fleet::{auth::Tokens, store::read::SessionDetail};
use prost::Message as _;
use support::{process, records};

const S1: &str = "00000000000000a1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one trial in order: the tokens it prints at start are used by each command after"
)]
async fn a_trial_makes_its_tokens_and_the_cli_reads_the_sessions() {
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("trial.toml");
    // Only what a test must change from the defaults: a free port, a temporary state.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let replica = process::Replica::spawn(&config);
    assert!(
        dir.path().join("fleet.db").exists(),
        "SQLite in the state directory"
    );
    let tokens_file = dir.path().join("tokens.toml");
    let text = std::fs::read_to_string(&tokens_file).expect("tokens file");
    let log = replica.log.lock().expect("log").join("\n");
    let after = |marker: &str| {
        log.split(marker)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("{marker} in {log}"))
            .to_owned()
    };
    let ingest = after("Authorization: Bearer ");
    let dashboard = after("dashboard token:");
    assert!(
        !text.contains(&ingest) && !text.contains(&dashboard),
        "only hashes on disk"
    );
    let log_of = |r: &process::Replica, needle: &str| {
        // The note follows the "listening" line: wait for it.
        let start = std::time::Instant::now();
        loop {
            let log = r.log.lock().expect("log").join("\n");
            if log.contains(needle) || start.elapsed() > std::time::Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let url = format!("the dashboard is at {}/", replica.base);
    assert!(
        log_of(&replica, &url).contains(&url),
        "the trial names its dashboard's URL:\n{log}"
    );
    // Started again (here: a second process on the same state), it makes no new
    // tokens and says where they are.
    let again = process::Replica::spawn(&config);
    let again_log = log_of(&again, "tokens: ");
    assert!(
        again_log.contains(&format!("tokens: {}", tokens_file.display()))
            && again_log.contains(&format!("the dashboard is at {}/", again.base)),
        "{again_log}"
    );
    assert!(!again_log.contains("Authorization: Bearer"), "{again_log}");
    assert_eq!(
        std::fs::read_to_string(&tokens_file).expect("tokens file"),
        text,
        "the tokens stay"
    );
    drop(again);

    let report = records::report(S1, "alice", "https://github.com/acme/app", true);
    let req = records::request(
        "laptop",
        vec![records::summary("laptop", 1, 1, &report, 1, records::T0_NS)],
    );
    let status = reqwest::Client::new()
        .post(format!("{}/v1/logs", replica.base))
        .header("content-type", "application/x-protobuf")
        .bearer_auth(&ingest)
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("send")
        .status();
    assert!(status.is_success(), "{status}");

    let base = replica.base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        process::cli(&[
            "sessions", "--server", &base, "--token", &dashboard, "--user", "alice",
        ])
    })
    .await
    .expect("cli");
    assert!(ok, "{err}");
    assert!(
        out.contains("alice") && out.contains("trial/laptop"),
        "{out}"
    );
    assert!(out.contains("1 sessions; page 1 of 1"), "{out}");

    let token_file = dir.path().join("dash-token");
    std::fs::write(&token_file, format!("{}\n", after("dashboard token:"))).expect("token file");
    let tf = token_file.display().to_string();
    let base = replica.base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        process::cli(&["report", S1, "--server", &base, "--token-file", &tf])
    })
    .await
    .expect("cli");
    assert!(ok, "{err}");
    for needle in [
        "Secrets read, then sent",
        "/home/dev/.aws/credentials",
        "network.egress",
        "api.openai.com",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    let base = replica.base.clone();
    let dash = after("dashboard token:");
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        process::cli(&["report", S1, "--server", &base, "--token", &dash, "--json"])
    })
    .await
    .expect("cli");
    assert!(ok, "{err}");
    let d: SessionDetail = serde_json::from_str(&out).expect("the API's JSON");
    assert_eq!(d.report, report);

    // The violations forwarded as OCSF: one Detection Finding a line, the cursor
    // on stderr; from that cursor, nothing again.
    let base = replica.base.clone();
    let dash = after("dashboard token:");
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        process::cli(&["violations", "--server", &base, "--token", &dash])
    })
    .await
    .expect("cli");
    assert!(ok, "{err}");
    let findings: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(findings.len(), report.violations.items.len(), "{out}");
    assert!(findings.iter().all(|f| f["class_uid"] == 2004), "{out}");
    let cursor = err
        .lines()
        .find_map(|l| l.strip_prefix("next: "))
        .expect("the cursor")
        .to_owned();
    let base = replica.base.clone();
    let dash = after("dashboard token:");
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        process::cli(&[
            "violations",
            "--server",
            &base,
            "--token",
            &dash,
            "--after",
            &cursor,
        ])
    })
    .await
    .expect("cli");
    assert!(ok, "{err}");
    assert!(out.is_empty(), "nothing twice: {out}");

    let base = replica.base.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        process::cli(&["sessions", "--server", &base, "--token", "nope"])
    })
    .await
    .expect("cli");
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    drop(replica);
}

#[test]
fn token_prints_a_token_and_its_entry() {
    let (ok, out, err) = process::cli(&["token", "--name", "build-42", "--scope", "host"]);
    assert!(ok, "{err}");
    let token = out
        .lines()
        .nth(1)
        .expect("the token line")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    let entry: String = out.lines().skip(3).collect::<Vec<_>>().join("\n");
    let tokens = Tokens::parse(Path::new("stdout"), &entry).expect("an entry for the tokens file");
    let t = tokens.verify(&token).expect("the token verifies");
    assert_eq!(t.name, "build-42");
    let (ok, _, err) = process::cli(&["token", "--name", "a/b"]);
    assert!(!ok && err.contains("--name"), "{err}");
}

#[test]
fn a_bad_configuration_is_named_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("lisen = \"127.0.0.1:0\"\n", "lisen"),
        ("[limits]\nmax_body = \"huge\"\n", "limits.max_body"),
        ("[tls]\ncert = \"/nonexistent\"\n", "go together"),
        (
            "listen = \"127.0.0.1:0\"\ntokens_file = \"/nonexistent/tokens.toml\"\n",
            "/nonexistent/tokens.toml",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(
            &path,
            format!("state_dir = \"{}\"\n{text}", dir.path().display()),
        )
        .expect("write");
        let (ok, _, err) = process::cli(&["serve", "--config", path.to_str().expect("path")]);
        assert!(!ok, "{text}");
        assert!(err.contains(needle), "{needle} in {err}");
    }
}
