//! Session reports, end to end: a scripted session under `guard run` reads a file of
//! its workspace, writes one, tries a secret (killed in the kernel), connects to a
//! listener on loopback and to a denied address; when it ends, the daemon writes its
//! report to the policy's `[report] dir`, and the report lists exactly those commands,
//! files and destinations with what guard did. `guard report` gives the same document
//! from the daemon and from the audit log.

use std::ffi::OsStr;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use guard_tests::{
    Daemon, EventsTo, Running, TempDir, find, guard, guard_bin, scaled, session_ended, session_of,
    unique_name, wait_until, write_policy,
};
use serde_json::Value;

/// Paths of one list of a JSON report (`read.workspace`…).
fn paths(report: &Value, access: &str, class: &str) -> Vec<String> {
    report[access][class]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no {access}.{class} in {report:#}"))
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_owned())
        .collect()
}

#[test]
fn a_scripted_sessions_report_lists_its_commands_files_and_destinations() {
    let dir = TempDir::new("guard-e2e-report");
    let ws = dir.join("ws");
    let secrets = dir.join("secrets");
    let reports = dir.join("reports");
    fs::create_dir_all(&ws).expect("mkdir ws");
    fs::create_dir_all(&secrets).expect("mkdir secrets");
    fs::write(ws.join("notes.txt"), "notes\n").expect("notes");
    fs::write(secrets.join("token"), "s3cr3t\n").expect("token");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let port = listener.local_addr().expect("addr").port();

    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            r#"mode = "enforce"

[agents]
names = ["{agent}"]

[report]
dir = "{reports}"

[[rule]]
id = "test-secret"
kind = "file"
secret = true
access = ["read"]
paths = ["{secrets}/**"]
action = "kill"

[[rule]]
id = "test-denied-net"
kind = "network"
deny = ["127.0.0.9"]
action = "deny"
"#,
            agent = unique_name("ga"),
            reports = reports.display(),
            secrets = secrets.display(),
        ),
    );
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);

    // bash for /dev/tcp; every step's failure is expected or ignored: the script
    // itself must reach its end.
    let script = format!(
        "cat notes.txt > /dev/null; echo out > out.txt; cat {secret} > /dev/null; \
         echo hi > /dev/tcp/127.0.0.1/{port}; echo no > /dev/tcp/127.0.0.9/{port}; exit 0",
        secret = secrets.join("token").display(),
    );
    let mut cmd = Command::new(guard_bin());
    cmd.arg("run")
        .arg("--socket")
        .arg(daemon.socket())
        .arg("--")
        .args(["bash", "-c", &script])
        .current_dir(&ws)
        .env_remove("LD_LIBRARY_PATH") // cargo's; it only adds dynamic-loader noise
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = Running::spawn(cmd).finish();
    run.assert_success();
    let root = run.pid;
    let events = daemon.wait_for("the end of the session", session_ended(root));
    let session = session_of(&events, root);

    // The file the daemon wrote at the end.
    let json_path = reports.join(format!("{session}.json"));
    let md_path = reports.join(format!("{session}.md"));
    wait_until("the report files", scaled(Duration::from_secs(10)), || {
        json_path.exists() && md_path.exists()
    });
    let text = fs::read_to_string(&json_path).expect("read the JSON report");
    let report: Value = serde_json::from_str(&text).expect("JSON report");
    let ws_canon = fs::canonicalize(&ws).expect("canonical ws");
    let in_ws = |name: &str| ws_canon.join(name).display().to_string();

    assert_eq!(report["session"], session.as_str(), "{report:#}");
    assert_eq!(
        report["workspace"],
        ws_canon.display().to_string().as_str(),
        "{report:#}"
    );
    assert!(report["ended"].is_string(), "{report:#}");
    let commands: Vec<String> = report["commands"]["items"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| {
            c["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|a| a.as_str().expect("arg"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        commands,
        [
            format!("bash -c {script}"),
            "cat notes.txt".to_owned(),
            format!("cat {}", secrets.join("token").display()),
        ],
        "{report:#}"
    );
    assert_eq!(paths(&report, "read", "workspace"), [in_ws("notes.txt")]);
    assert_eq!(paths(&report, "written", "workspace"), [in_ws("out.txt")]);
    let secret = fs::canonicalize(secrets.join("token")).expect("canonical secret");
    assert_eq!(
        paths(&report, "read", "secrets"),
        [secret.display().to_string()]
    );
    assert_eq!(
        // `guard run` hid the secrets' directory (its mount namespace): the read
        // was refused before it happened, and `cat` lived to say so.
        report["read"]["secrets"]["items"][0]["verdicts"][0],
        "test-secret: denied",
        "{report:#}"
    );

    let dests = report["destinations"]["items"]
        .as_array()
        .expect("destinations");
    let dest = |addr: &str| {
        dests
            .iter()
            .find(|d| d["addr"] == addr && d["port"] == port)
            .unwrap_or_else(|| panic!("no destination {addr}:{port} in {report:#}"))
    };
    assert_eq!(dest("127.0.0.1")["connects"], 1, "{report:#}");
    assert_eq!(dest("127.0.0.1")["failed"], 0, "{report:#}");
    assert_eq!(dest("127.0.0.9")["failed"], 1, "{report:#}");
    assert_eq!(
        dest("127.0.0.9")["verdicts"][0],
        "test-denied-net: denied",
        "{report:#}"
    );
    assert_eq!(dests.len(), 2, "only the two destinations: {report:#}");

    let rules: Vec<&str> = report["violations"]["items"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| v["rule"].as_str().expect("rule"))
        .collect();
    assert_eq!(rules, ["test-secret", "test-denied-net"], "{report:#}");

    // The violations as SARIF 2.1.0, valid by its schema (checked with a maintained
    // validator), one result per violation.
    let sarif_path = reports.join(format!("{session}.sarif"));
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sarif/sarif-schema-2.1.0.json");
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
        ])
        .arg(&sarif_path)
        .arg(&schema)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the SARIF log is not valid SARIF 2.1.0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sarif: Value =
        serde_json::from_str(&fs::read_to_string(&sarif_path).expect("read the SARIF log"))
            .expect("JSON");
    let results: Vec<(&str, &str)> = sarif["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| {
            (
                x["ruleId"].as_str().unwrap_or("-"),
                x["level"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        results,
        [("test-secret", "error"), ("test-denied-net", "error")],
        "{sarif:#}"
    );

    // The Markdown names the same facts for people.
    let md = fs::read_to_string(&md_path).expect("read the Markdown report");
    for needle in [
        "## Violations and what guard did",
        "test-secret | kill | denied",
        &format!("127.0.0.9:{port}"),
        &format!("`{}`", in_ws("out.txt")),
    ] {
        assert!(md.contains(needle), "{needle:?} not in:\n{md}");
    }

    // The daemon answers with the same report, and so does the audit log.
    assert_eq!(daemon.report(&session[..12]), report);
    daemon.stop_ok();
    let log = daemon.events_path().expect("events file").to_owned();
    let from_log = guard(&[
        OsStr::new("report"),
        OsStr::new(&session),
        OsStr::new("--json"),
        OsStr::new("--log"),
        log.as_os_str(),
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&from_log).expect("json"),
        report
    );
    let _ = find(&events, "the secret's open", |e| {
        e.kind() == "open" && e.str("path") == Some(secret.to_str().expect("utf-8"))
    });
    drop(listener);
    assert!(Path::new(&reports).is_dir());
}
