//! The export (issue 28, docs/export.md): a session's events and summary reach an
//! OTLP/HTTP receiver, decoded with the maintained OpenTelemetry crates, with their
//! record ids and attributes, and with the numbers `guard report` has; and nothing
//! is lost when the receiver is down, dies mid-batch, or the daemon is SIGKILLed with
//! a spool full of records: each record arrives once by its id. And the fleet of
//! issue 24 as an organisation runs it (two replicas on PostgreSQL behind a load
//! balancer) loses no session to a killed replica, a partition or a database
//! outage.

use std::ffi::OsStr;
use std::fs;
use std::sync::Arc;
use std::time::Duration;

use guard_tests::fleet::{Balancer, Fleet};
use guard_tests::otlp::{Answer, Received, Receiver, wait_for};
use guard_tests::pg::Postgres;
use guard_tests::{
    Daemon, Enforcing, Event, EventsTo, FakeAgent, NetNs, PinDir, TempDir, fake_agent_exe, scaled,
    session_ended, write_policy,
};
use serde_json::Value;

const SECRET: &str = "export-secret-41c9";

/// The rules of these tests: reading `{dir}/secret` is killed in the kernel.
const RULES: &str = r#"
[[rule]]
id = "no-secret"
kind = "file"
access = ["read"]
paths = ["{dir}/secret"]
action = "kill"
"#;

/// `[export]` to `url`, spooling under `{dir}/spool`, quick to send and summarise.
fn export(url: &str, extra: &str) -> String {
    format!(
        "[export]\nendpoint = \"{url}\"\nspool_dir = \"{{dir}}/spool\"\nsummary_interval = \
         \"1s\"\nbatch_interval = \"100ms\"\n{extra}\n"
    )
}

fn start(url: &str, extra: &str) -> Enforcing {
    Enforcing::start(
        fake_agent_exe!(),
        "guard-e2e-export",
        &format!("{}{RULES}", export(url, extra)),
        |dir| fs::write(dir.join("secret"), SECRET).expect("write the secret"),
    )
}

/// The session's events as the audit log has them (the exported kinds: all).
fn session_lines(events: &[Event], session: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.session() == Some(session))
        .map(|e| e.value.clone())
        .collect()
}

fn summaries<'r>(records: &'r [Received], session: &str) -> Vec<&'r Received> {
    records
        .iter()
        .filter(|r| {
            r.event_name == "guard.session.summary" && r.attr("guard.session.id") == Some(session)
        })
        .collect()
}

/// Waits until every event of `session` in the audit log and its final summary
/// have arrived; returns the records.
fn all_of(rx: &Receiver, events: &[Event], session: &str, timeout: Duration) -> Vec<Received> {
    let want = session_lines(events, session);
    wait_for(
        rx,
        &format!(
            "the {} events and the final summary of {session}",
            want.len()
        ),
        timeout,
        |records| {
            let bodies: Vec<&Value> = records
                .iter()
                .filter(|r| r.event_name.starts_with("guard.event."))
                .map(|r| &r.body)
                .collect();
            want.iter().all(|w| bodies.contains(&w))
                && summaries(records, session)
                    .iter()
                    .any(|r| r.attr("guard.session.state") == Some("ended"))
        },
    )
}

/// A session that reads a file, is killed reading the secret, and ends.
fn session(s: &mut Enforcing) -> String {
    let (run, events) = s.sh("cat /etc/hostname > /dev/null; cat {dir}/secret");
    Enforcing::of_run(&events, &run)[0]
        .session()
        .expect("a session")
        .to_owned()
}

#[test]
fn a_session_arrives_with_ids_attributes_and_the_report_s_numbers() {
    let rx = Receiver::start();
    let mut s = start(&rx.url(), "");
    let id = session(&mut s);
    let events = s.daemon.events();
    let records = all_of(&rx, &events, &id, scaled(Duration::from_secs(20)));
    let report = s.daemon.report(&id);

    // Each record once, with a well-formed id.
    assert_eq!(rx.duplicates(), 0, "a record arrived twice");
    for r in &records {
        assert!(
            r.id.len() == 32 && r.id.bytes().all(|b| b.is_ascii_hexdigit()),
            "bad record id {:?}",
            r.id
        );
    }
    // The host as the resource.
    let resource = &records[0].resource;
    assert_eq!(resource["service.name"], "guard");
    assert!(
        resource["host.name"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{resource:?}"
    );
    let host_id = resource["host.id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(host_id.len(), 32, "{resource:?}");
    assert!(
        resource["guard.tiers"].get("exec_kill").is_some(),
        "{resource:?}"
    );

    // The kill, as a violation with its rule and outcome.
    let kill = records
        .iter()
        .find(|r| r.attr("guard.rule") == Some("no-secret"))
        .unwrap_or_else(|| panic!("no violation record among {}", records.len()));
    assert_eq!(kill.event_name, "guard.event.open");
    assert_eq!(kill.attr("guard.outcome"), Some("killed"));
    assert_eq!(kill.attr("guard.session.id"), Some(id.as_str()));
    assert!(
        kill.attr("guard.session.uid")
            .is_some_and(|u| u.starts_with(&host_id) && u.ends_with(&id)),
        "{:?}",
        kill.attributes
    );
    assert_eq!(
        kill.attr("file.path"),
        Some(s.path("secret").as_str()),
        "{:?}",
        kill.attributes
    );

    // The summary: the report's numbers.
    let ended = summaries(&records, &id)
        .into_iter()
        .rfind(|r| r.attr("guard.session.state") == Some("ended"))
        .expect("an ended summary");
    assert_eq!(ended.attr("guard.agent.name"), Some(s.agent.name()));
    assert_eq!(ended.attr("user.name"), Some("root"));
    for key in ["bytes_out", "bytes_in", "forks", "dropped"] {
        assert_eq!(ended.body[key], report[key], "{key}");
    }
    for list in ["commands", "violations"] {
        assert_eq!(
            ended.body[list]["items"], report[list]["items"],
            "{list} differ from guard report"
        );
    }
    assert_eq!(
        ended.body["read"]["secrets"], report["read"]["secrets"],
        "secrets read"
    );
    // The requests: protobuf, gzip'd.
    assert!(
        rx.content()
            .iter()
            .all(|(t, e)| t == "application/x-protobuf" && e == "gzip"),
        "{:?}",
        rx.content()
    );
    s.finish();
}

#[test]
fn json_without_compression_and_a_token_from_a_file_and_the_environment() {
    let rx = Receiver::start();
    let dir = TempDir::new("guard-e2e-export-token");
    let token = dir.join("token");
    fs::write(&token, "s3cr3t-t0ken\n").expect("write token");
    let extra = format!(
        "protocol = \"http/json\"\ncompression = \"none\"\ntoken_file = \"{}\"\nheaders = {{ x-guard-cluster = \"${{GUARD_E2E_CLUSTER}}\" }}\n",
        token.display()
    );
    // SAFETY: the test sets a variable only the daemon it starts reads.
    unsafe { std::env::set_var("GUARD_E2E_CLUSTER", "ci-east") };
    let mut s = start(&rx.url(), &extra);
    let id = session(&mut s);
    let events = s.daemon.events();
    all_of(&rx, &events, &id, scaled(Duration::from_secs(20)));
    assert!(
        rx.content()
            .iter()
            .all(|(t, e)| t == "application/json" && e.is_empty()),
        "{:?}",
        rx.content()
    );
    assert!(
        rx.auth().iter().all(|a| a == "Bearer s3cr3t-t0ken"),
        "{:?}",
        rx.auth()
    );
    s.finish();
}

/// The receiver down for 60 seconds (while a session runs and ends), then back:
/// everything arrives, each record once.
#[test]
fn a_receiver_down_for_a_minute_loses_nothing() {
    let rx = Receiver::start();
    let url = rx.url();
    let bind = rx.addr().to_string();
    drop(rx);
    let mut s = start(&url, "");
    let id = session(&mut s);
    let down = std::time::Instant::now();
    // The records wait in the spool.
    wait_until_status(
        &mut s.daemon,
        "records in the spool while the receiver is down",
        |x| x["spool_records"].as_u64().unwrap_or(0) > 0 && x["state"] == "retrying",
    );
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    let rx = Receiver::start_on(&bind);
    let events = s.daemon.events();
    // Back-off is at most 60 s.
    all_of(&rx, &events, &id, scaled(Duration::from_secs(90)));
    assert_eq!(rx.duplicates(), 0);
    let status = s.daemon.status();
    assert!(
        status["export"]["retries"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    s.finish();
}

/// A network partition (the receiver's side of a link goes quiet, packets vanish)
/// while a session runs, then healed: everything arrives, each record once.
#[test]
fn a_partition_and_its_healing_lose_nothing() {
    let ns = NetNs::new();
    let link = ns.veth();
    let peer = link.peer;
    let rx = ns.enter(|| Receiver::start_on(&format!("{peer}:0")));
    link.set_peer_up(false);
    let mut s = start(&rx.url(), "");
    let id = session(&mut s);
    wait_until_status(
        &mut s.daemon,
        "a failed attempt across the partition",
        |x| x["retries"].as_u64().unwrap_or(0) > 0,
    );
    assert_eq!(rx.records().len(), 0, "records crossed the partition");
    link.set_peer_up(true);
    let events = s.daemon.events();
    all_of(&rx, &events, &id, scaled(Duration::from_secs(90)));
    assert_eq!(rx.duplicates(), 0);
    s.finish();
}

/// The fleet of issue 24 as an organisation runs it: two guard-fleet replicas on a
/// real PostgreSQL behind a load balancer, the daemon exporting to the balancer
/// with the fleet's token.
struct Org {
    pg: Postgres,
    replicas: Vec<Fleet>,
    balancer: Balancer,
    _token: TempDir,
    s: Enforcing,
}

impl Org {
    fn start() -> Self {
        let pg = Postgres::start();
        let a = Fleet::replica(&pg.url(), None);
        let b = Fleet::replica(&pg.url(), Some(&a));
        let balancer = Balancer::start(vec![a.addr().to_owned(), b.addr().to_owned()]);
        let token = TempDir::new("guard-e2e-token");
        let token_file = token.join("fleet-token");
        fs::write(&token_file, &a.ingest_token).expect("write the token");
        let s = start(
            &balancer.ingest_url(),
            &format!("token_file = \"{}\"", token_file.display()),
        );
        Self {
            pg,
            replicas: vec![a, b],
            balancer,
            _token: token,
            s,
        }
    }

    /// The replica that answers the checks: the last, never killed.
    fn fleet(&self) -> &Fleet {
        self.replicas.last().expect("a replica")
    }

    /// The session is in the fleet once, ended, with `guard report`'s numbers and
    /// each of its violations once.
    fn stored_once(&mut self, id: &str) {
        let detail = self
            .fleet()
            .wait_ended(id, scaled(Duration::from_secs(150)));
        let report = self.s.daemon.report(id);
        let row = &detail["session"];
        assert_eq!(
            self.pg.value(&format!(
                "SELECT COUNT(*) FROM sessions WHERE session_id = '{id}'"
            )),
            "1",
            "session {id} stored once"
        );
        let items = report["violations"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!items.is_empty(), "the secret's kill: {report}");
        assert_eq!(
            self.pg.value(&format!(
                "SELECT COUNT(*) FROM violations v JOIN sessions s \
                 ON s.host = v.host AND s.session_uid = v.session_uid WHERE s.session_id = '{id}'"
            )),
            items.len().to_string(),
            "each violation of {id} once"
        );
        assert_eq!(
            detail["report"]["violations"]["items"],
            report["violations"]["items"]
        );
        assert_eq!(row["bytes_out"], report["bytes_out"], "{row}");
        assert_eq!(row["user_name"], report["user"], "{row}");
        assert_eq!(
            row["violations"],
            items.len() as u64 + report["violations"]["omitted"].as_u64().unwrap_or(0),
            "{row}"
        );
        // The session's page shows it, its rule and what was done.
        let uid = row["session_uid"].as_str().expect("a session uid");
        let page = self.fleet().page(&format!("/sessions/{uid}"));
        for shown in [id, "no-secret", "killed"] {
            assert!(page.contains(shown), "{shown} is not on the page of {id}");
        }
        // What the daemon logged of the session is in the event index, once.
        let events = session_lines(&self.s.daemon.events(), id).len();
        assert_eq!(
            self.pg.value(&format!(
                "SELECT COUNT(*) FROM events e JOIN sessions s ON s.host = e.host \
                 AND s.session_uid = e.session_uid WHERE s.session_id = '{id}'"
            )),
            events.to_string(),
            "each event of {id} once"
        );
    }
}

/// Issue 24's faults at the replicas: one replica killed (SIGKILL) after the first
/// session, the link to the fleet cut while a session runs and then healed; every
/// session reaches the fleet once, with the numbers of `guard report`.
#[test]
fn a_killed_replica_and_a_partition_lose_no_session_of_the_fleet() {
    let mut org = Org::start();
    let first = session(&mut org.s);
    org.stored_once(&first);
    org.replicas[0].kill();
    let second = session(&mut org.s);
    org.stored_once(&second);
    let retries = org.s.daemon.status()["export"]["retries"]
        .as_u64()
        .unwrap_or(0);
    org.balancer.partition(true);
    let third = session(&mut org.s);
    wait_until_status(
        &mut org.s.daemon,
        "a failed attempt across the partition",
        |x| x["retries"].as_u64().unwrap_or(0) > retries,
    );
    org.balancer.partition(false);
    org.stored_once(&third);
    assert_eq!(org.pg.value("SELECT COUNT(*) FROM sessions"), "3");
    org.s.finish();
}

/// Issue 24's fault at the database: PostgreSQL stopped for a minute while a session
/// runs and ends (the replicas answer 503, the daemon keeps it in its spool), then
/// started again: the session reaches the fleet once.
#[test]
fn a_database_stopped_for_a_minute_loses_no_session_of_the_fleet() {
    let mut org = Org::start();
    let first = session(&mut org.s);
    org.stored_once(&first);
    org.pg.stop();
    let down = std::time::Instant::now();
    let second = session(&mut org.s);
    wait_until_status(
        &mut org.s.daemon,
        "the fleet refusing while its database is down",
        |x| x["retries"].as_u64().unwrap_or(0) > 0 && x["spool_records"].as_u64().unwrap_or(0) > 0,
    );
    // The outage is the scenario: a minute, whatever the retries do meanwhile.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    org.pg.resume();
    org.stored_once(&second);
    assert_eq!(org.pg.value("SELECT COUNT(*) FROM sessions"), "2");
    org.s.finish();
}

/// `git` for a test's own repository (its set-up, not guard's way of reading one).
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A session that works in a git repository whose remote URL carries credentials:
/// its start event, report and exported summary name the repository (the URL
/// without the credentials), the branch and the HEAD commit; the credentials are
/// in no record.
#[test]
fn a_session_names_its_repository_without_the_remote_s_credentials() {
    const PASSWORD: &str = "e2e-remote-password-77f1";
    let rx = Receiver::start();
    let mut s = start(&rx.url(), "");
    let work = s.dir.join("work");
    fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "feature/x"]);
    let remote = format!("https://alice:{PASSWORD}@git.example.com/org/app.git");
    git(&work, &["remote", "add", "origin", &remote]);
    git(
        &work,
        &[
            "-c",
            "user.name=guard e2e",
            "-c",
            "user.email=e2e@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ],
    );
    let head = git(&work, &["rev-parse", "HEAD"]);
    // The session lives until the daemon has started it (it reads the root's
    // working directory then), and ends when the test says so.
    let go = s.dir.join("go");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    let running = s.agent.spawn_in(&work, &["run", "sh", "-c", &script]);
    let pid = running.pid();
    s.daemon
        .wait_for("the session's start", |events: &[Event]| {
            events
                .iter()
                .any(|e| e.kind() == "session_start" && e.int("root_pid") == Some(pid))
        });
    fs::write(&go, "").expect("write the go file");
    let run = running.finish();
    run.assert_success();
    let events = s
        .daemon
        .wait_for("the end of the session", session_ended(run.pid));
    let start = events
        .iter()
        .find(|e| e.kind() == "session_start" && e.int("root_pid") == Some(run.pid))
        .expect("session_start");
    let id = start.session().expect("a session").to_owned();
    let want = serde_json::json!({
        "url": "https://git.example.com/org/app.git",
        "branch": "feature/x",
        "commit": head,
        "root": work.display().to_string(),
    });
    assert_eq!(start.value["repository"], want, "{start}");
    let report = s.daemon.report(&id);
    assert_eq!(report["repository"], want, "{report}");
    let records = all_of(&rx, &events, &id, scaled(Duration::from_secs(20)));
    let summary = summaries(&records, &id)
        .into_iter()
        .find(|r| r.attr("guard.session.state") == Some("ended"))
        .expect("the final summary");
    assert_eq!(
        summary.attr("vcs.repository.url.full"),
        Some("https://git.example.com/org/app.git")
    );
    assert_eq!(summary.attr("vcs.ref.head.name"), Some("feature/x"));
    assert_eq!(summary.attr("vcs.ref.head.revision"), Some(head.as_str()));
    for r in &records {
        assert!(!format!("{r:?}").contains(PASSWORD), "exported: {r:?}");
    }
    for e in &events {
        assert!(
            !e.value.to_string().contains(PASSWORD),
            "in the audit log: {e}"
        );
    }
    s.finish();
}

/// Secrets on command lines never leave the host (issue 48): the shell string an
/// agent runs (`sh -c "mysql -pS3cret …; PGPASSWORD='…' psql …; curl -u …:… -H
/// 'Authorization: Bearer …' …"`) reaches the audit log with each secret cut and
/// nothing else changed, and no secret is in the audit log, any exported record, the
/// report or `guard sessions`; the execs say they were redacted. Plain `guard
/// status` shows the export.
#[test]
fn secrets_on_command_lines_and_in_shell_strings_never_leave_the_host() {
    const TOKEN: &str = "sk-proj-e2eRedactMe0123456789abcdefXYZ";
    const MYSQL: &str = "S3cretE2eMy41";
    const PG: &str = "pg E2e secret";
    const CURL: &str = "curlE2ePass7";
    let secrets = [TOKEN, MYSQL, PG, CURL];
    let rx = Receiver::start();
    let mut s = start(&rx.url(), "");
    // Nothing listens on port 9 on loopback: psql and curl fail at once; no mysql
    // client needs to be installed (the shell's own exec is what is checked).
    let script = format!(
        "mysql -uroot -p{MYSQL} -e 'select 1' 2>/dev/null; PGPASSWORD='{PG}' psql -h 127.0.0.1 \
         -p 9 -c 'select 1' 2>/dev/null; curl -s -m 5 -u alice:{CURL} -H 'Authorization: Bearer \
         {TOKEN}' http://127.0.0.1:9/; exit 0"
    );
    let want = "mysql -uroot -p[REDACTED] -e 'select 1' 2>/dev/null; PGPASSWORD='[REDACTED]' psql \
                -h 127.0.0.1 -p 9 -c 'select 1' 2>/dev/null; curl -s -m 5 -u alice:[REDACTED] -H \
                'Authorization: [REDACTED]' http://127.0.0.1:9/; exit 0";
    let (run, events) = s.sh(&script);
    let session = Enforcing::of_run(&events, &run);
    let id = session[0].session().expect("a session").to_owned();
    let shell = session
        .iter()
        .find(|e| {
            e.kind() == "exec"
                && e.strings("argv")
                    .is_some_and(|a| a.first() == Some(&"sh") && a.get(1) == Some(&"-c"))
        })
        .unwrap_or_else(|| panic!("no exec of the shell in {id}"));
    assert_eq!(shell.bool("redacted"), Some(true), "{shell}");
    assert_eq!(
        shell.strings("argv").unwrap_or_default(),
        ["sh", "-c", want],
        "the shell string, each secret cut and nothing else"
    );
    let curl = session
        .iter()
        .find(|e| e.kind() == "exec" && e.str("exe").is_some_and(|x| x.ends_with("/curl")))
        .unwrap_or_else(|| panic!("no exec of curl in {id}"));
    assert_eq!(curl.bool("redacted"), Some(true), "{curl}");
    let argv = curl.strings("argv").unwrap_or_default();
    assert!(
        argv.contains(&"alice:[REDACTED]") && argv.contains(&"Authorization: [REDACTED]"),
        "{curl}"
    );
    let leaked = |text: &str| {
        secrets
            .iter()
            .find(|secret| text.contains(*secret))
            .copied()
    };
    for e in &events {
        assert_eq!(leaked(&e.value.to_string()), None, "in the audit log: {e}");
    }
    let records = all_of(&rx, &events, &id, scaled(Duration::from_secs(20)));
    assert!(
        records
            .iter()
            .any(|r| r.body.to_string().contains("[REDACTED]")),
        "no record carries the redacted command line"
    );
    for r in &records {
        assert_eq!(leaked(&format!("{r:?}")), None, "exported: {r:?}");
    }
    let report = s.daemon.report(&id).to_string();
    assert_eq!(leaked(&report), None, "in the report: {report}");
    assert!(report.contains("[REDACTED]"), "{report}");
    let sessions = s.daemon.client(&["sessions", "--json"]);
    assert_eq!(leaked(&sessions), None, "in guard sessions: {sessions}");
    // `guard status` for people has the export's line.
    let status = s.daemon.client(&["status"]);
    let export = status
        .lines()
        .find(|l| l.starts_with("export "))
        .unwrap_or_else(|| panic!("no export line in guard status:\n{status}"));
    assert!(
        export.contains(&format!(" to {}; pending ", rx.url()))
            && export.contains("dropped 0")
            && !export.contains("last success never"),
        "{export}"
    );
    s.finish();
}

/// A receiver that reads a batch and dies before answering: guard sends it again,
/// and the receiver, deduplicating on the record id, stores each record once.
#[test]
fn a_receiver_killed_mid_batch_gets_every_record_once() {
    let rx = Receiver::start();
    rx.answer(Answer::Hangup);
    // The receiver reads the batch and never answers: the request fails at its timeout.
    let mut s = start(&rx.url(), "timeout = \"2s\"");
    let id = session(&mut s);
    wait_until_status(&mut s.daemon, "a failed attempt", |x| {
        x["retries"].as_u64().unwrap_or(0) > 0
    });
    rx.answer(Answer::Store);
    let events = s.daemon.events();
    let records = all_of(&rx, &events, &id, scaled(Duration::from_secs(30)));
    let ids: std::collections::HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        records.len(),
        "the receiver stored a record twice"
    );
    s.finish();
}

/// The daemon SIGKILLed with records in its spool (the receiver down): the next
/// daemon on the same pins and spool delivers them, each once.
#[test]
fn a_sigkilled_daemon_s_spool_is_delivered_by_the_next() {
    let rx = Receiver::start();
    let url = rx.url();
    let bind = rx.addr().to_string();
    drop(rx);
    let agent = FakeAgent::install(fake_agent_exe!());
    let dir = TempDir::new("guard-e2e-export-kill");
    fs::write(dir.join("secret"), SECRET).expect("write the secret");
    let policy = dir.join("guard.toml");
    let body = format!(
        "mode = \"enforce\"\n[agents]\nnames = [\"{}\"]\n{}{RULES}",
        agent.name(),
        export(&url, "")
    )
    .replace("{dir}", &dir.path().display().to_string());
    write_policy(&policy, &body);
    let pins = Arc::new(PinDir::new());
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    let mut first = Daemon::start_on(&pins, &[], EventsTo::File, &args);
    let run = agent.run(&["run", "sh", "-c", "cat /etc/hostname > /dev/null; exit 0"]);
    let events = first.wait_for("the session's end", session_ended(run.pid));
    let e = events
        .iter()
        .find(|e| e.kind() == "session_end" && e.int("root_pid") == Some(run.pid))
        .expect("session_end");
    let id = e.session().expect("a session").to_owned();
    // The audit log's lines were offered to the export before they were written:
    // once none waits to be spooled, the session's records are all in the spool.
    wait_until_status(&mut first, "the session's records in the spool", |x| {
        x["spool_records"].as_u64().unwrap_or(0) >= 3 && x["pending"].as_u64() == Some(0)
    });
    let held = first.status()["export"]["spool_records"]
        .as_u64()
        .unwrap_or(0);
    // SAFETY: signalling the test's own daemon.
    unsafe { libc::kill(first.pid().expect("running") as libc::pid_t, libc::SIGKILL) };
    first.wait_exited();

    let rx = Receiver::start_on(&bind);
    let mut second = Daemon::start_on(&pins, &[], EventsTo::File, &args);
    let records = all_of(&rx, &events, &id, scaled(Duration::from_secs(30)));
    assert!(
        records.len() as u64 >= held,
        "{} records arrived, {held} were spooled",
        records.len()
    );
    assert_eq!(rx.duplicates(), 0);
    second.stop_ok();
}

/// A spool too small for what a session produces while the receiver is down drops
/// the oldest events, counts them, and keeps the summaries.
#[test]
fn a_full_spool_drops_the_oldest_events_and_counts_them() {
    let rx = Receiver::start();
    let url = rx.url();
    let bind = rx.addr().to_string();
    drop(rx);
    let mut s = start(&url, "spool_max = \"1MiB\"\n");
    // Some 8,000 opens: far more than 1 MiB of records. Eight files in turn: more than
    // the kernel counts repeated opens of per thread (4), so every open is a record.
    let (run, events) = s.sh("for j in 0 1 2 3 4 5 6 7; do : > {dir}/f$j; done; \
         for i in $(seq 1 8000); do : < {dir}/f$((i % 8)); done");
    let id = Enforcing::of_run(&events, &run)[0]
        .session()
        .expect("a session")
        .to_owned();
    wait_until_status(&mut s.daemon, "dropped records", |x| {
        x["dropped"]["spool_full_events"].as_u64().unwrap_or(0) > 0
    });
    let rx = Receiver::start_on(&bind);
    let records = wait_for(
        &rx,
        "the final summary",
        scaled(Duration::from_secs(60)),
        |r| {
            summaries(r, &id)
                .iter()
                .any(|s| s.attr("guard.session.state") == Some("ended"))
        },
    );
    let status = s.daemon.status();
    let dropped = status["export"]["dropped"]["spool_full_events"]
        .as_u64()
        .unwrap_or(0);
    assert!(dropped > 0, "{status}");
    assert_eq!(
        status["export"]["dropped"]["spool_full_summaries"].as_u64(),
        Some(0),
        "{status}"
    );
    let opens = records
        .iter()
        .filter(|r| r.event_name == "guard.event.open")
        .count() as u64;
    assert!(
        opens < 8000,
        "{opens} opens arrived though {dropped} were dropped"
    );
    let metrics = s.daemon.client(&["status", "--json"]);
    assert!(metrics.contains("spool_full_events"), "{metrics}");
    s.finish();
}

/// A receiver that refuses (400), is out of order (500), answers garbage, or needs a
/// smaller batch (413): counted, retried or split as OTLP says, and enforcement
/// carries on meanwhile.
#[test]
fn bad_answers_are_counted_and_never_stop_enforcement() {
    let rx = Receiver::start();
    rx.answer(Answer::Status(500));
    let mut s = start(&rx.url(), "");
    let id = session(&mut s);
    wait_until_status(&mut s.daemon, "a retry after a 500", |x| {
        x["retries"].as_u64().unwrap_or(0) > 0
            && x["last_error"].as_str().is_some_and(|e| e.contains("500"))
    });
    // Enforcement is the kernel's: the secret's reader was killed all the same.
    let events = s.daemon.events();
    assert!(
        events
            .iter()
            .any(|e| e.session() == Some(id.as_str()) && e.str("outcome") == Some("killed")),
        "the read of the secret was not killed"
    );
    rx.answer(Answer::Garbage);
    all_of(&rx, &events, &id, scaled(Duration::from_secs(30)));

    rx.answer(Answer::Status(400));
    let id2 = session(&mut s);
    wait_until_status(&mut s.daemon, "a batch refused for good", |x| {
        x["dropped"]["rejected"].as_u64().unwrap_or(0) > 0
    });
    let records = rx.records();
    assert!(
        !records
            .iter()
            .any(|r| r.attr("guard.session.id") == Some(id2.as_str())),
        "a refused batch was stored"
    );
    s.finish();
}

fn wait_until_status(daemon: &mut Daemon, what: &str, done: impl Fn(&Value) -> bool) {
    let _w = guard_tests::watch::waiting(what);
    let start = std::time::Instant::now();
    loop {
        let status = daemon.status();
        let export = &status["export"];
        if done(export) {
            return;
        }
        assert!(
            start.elapsed() < scaled(Duration::from_secs(30)),
            "timed out waiting for {what}: {export}\n{}",
            guard_tests::watch::state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
