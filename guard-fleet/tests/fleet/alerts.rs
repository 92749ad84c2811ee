//! Alerts as a security team sets them up: a killed read reaches a webhook, Slack,
//! Teams, PagerDuty and a mailbox once each, in the form each one's real endpoint
//! takes (decoded here into the fields that service documents, unknown fields
//! refused; the mail through Debian's aiosmtpd, over STARTTLS, from its Maildir);
//! a storm is a message with a count; a destination that is down gets the alert
//! when it is back; and two replicas never both hold an alert. Each test runs on
//! SQLite, and on PostgreSQL when `GUARD_FLEET_TEST_PG` is set.

use crate::support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use guard_common::otlp::attr;
use guard_fleet::alerts::message::sign;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, DASH_TOKEN, Db, Fleet, HOST_TOKEN, pki::Pki, records};

on_both!(
    a_killed_read_reaches_each_destination_once_in_its_own_form,
    a_storm_is_a_few_messages_with_its_count,
    a_destination_that_was_down_gets_the_alert_when_it_is_back,
    two_replicas_never_hold_one_alert_and_a_dead_one_s_lease_runs_out,
    a_silent_host_and_a_refused_policy_are_alerts_once_each,
    an_admin_keeps_an_alert_rule_in_the_fleet_and_removes_it,
);

const WEBHOOK_SECRET: &str = "whsec-test-0123456789";
const ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";

/// What a receiver got: the path it was posted to, its headers, its body.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answers 503 to this many requests first.
    refuse: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start(refuse: u32) -> (Self, String, tokio::task::JoinHandle<()>) {
        let r = Self {
            refuse: Arc::new(Mutex::new(refuse)),
            ..Self::default()
        };
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, base, task)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.got().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `done` holds for what arrived (30 s at most).
    async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what}; got {:?}",
                got.iter().map(|r| &r.path).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The alerts marked sent, once `n` are: a destination answers before the fleet
/// writes down that it delivered, so a test that saw the message waits for the
/// mark (30 s at most, then says what the store holds).
async fn sent(store: &guard_fleet::store::Store, n: i64) -> i64 {
    let start = Instant::now();
    loop {
        let sent = store.alerts_in("sent").await.expect("count");
        if sent >= n || start.elapsed() > Duration::from_secs(30) {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    {
        let mut refuse = r.refuse.lock().expect("lock");
        if *refuse > 0 {
            *refuse -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    r.got.lock().expect("lock").push(Received {
        path,
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// Debian's SMTP server (python3-aiosmtpd) on 127.0.0.1, requiring STARTTLS with a
/// certificate of the run's own CA, keeping what it receives in a Maildir; stopped
/// on drop.
struct Smtp {
    child: std::process::Child,
    port: u16,
    pki: Pki,
}

impl Smtp {
    fn start() -> Self {
        let pki = Pki::new();
        let (cert, key) = pki.leaf(&["127.0.0.1", "localhost"], "smtp", false);
        let dir = pki.dir.path();
        std::fs::write(dir.join("smtp.pem"), cert).expect("cert");
        std::fs::write(dir.join("smtp-key.pem"), key).expect("key");
        std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("ca");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(dir.join("smtp.pem"))
            .arg("--tlskey")
            .arg(dir.join("smtp-key.pem"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("maildir"))
            .spawn()
            .expect("Debian's python3-aiosmtpd (cargo xtask setup installs it)");
        let smtp = Self { child, port, pki };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        smtp
    }

    /// The `[[alerts.destination]]` named `mail`.
    fn destination(&self) -> String {
        format!(
            "[[alerts.destination]]\nname = \"mail\"\nkind = \"email\"\n\
             url = \"smtp://127.0.0.1:{}?tls=required\"\nca_file = \"{}\"\n\
             from = \"guard-fleet <guard@fleet.example.org>\"\n\
             recipients = [\"SecOps <secops@example.org>\", \"oncall@example.org\"]\n",
            self.port,
            self.pki.dir.path().join("ca.pem").display()
        )
    }

    /// The messages in the Maildir, as received.
    fn mails(&self) -> Vec<Vec<u8>> {
        let new = self.pki.dir.path().join("maildir/new");
        std::fs::read_dir(&new)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `n` messages arrived (30 s at most).
    async fn until(&self, n: usize) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {n} mail(s); got {}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration: four destinations on `base` (and the mailbox of `smtp`), one
/// rule for stopped reads of `ssh-keys`, with `window`.
fn config(fleet_dir: &std::path::Path, base: &str, window: &str) -> String {
    config_with(fleet_dir, base, window, None)
}

fn config_with(
    fleet_dir: &std::path::Path,
    base: &str,
    window: &str,
    smtp: Option<&Smtp>,
) -> String {
    let secret = fleet_dir.join("webhook.key");
    std::fs::write(&secret, WEBHOOK_SECRET).expect("secret");
    let key = fleet_dir.join("pagerduty.key");
    std::fs::write(&key, format!("{ROUTING_KEY}\n")).expect("key");
    let slack_url = fleet_dir.join("slack-url");
    std::fs::write(&slack_url, format!("{base}/slack")).expect("url");
    format!(
        "[alerts]\ndashboard_url = \"https://fleet.example.org/\"\nwindow = \"{window}\"\n\
         retry = \"200ms\"\n\
         [[alerts.destination]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"{base}/webhook\"\n\
         secret_file = \"{secret}\"\n\
         [[alerts.destination]]\nname = \"chat\"\nkind = \"slack\"\nurl_file = \"{slack}\"\n\
         [[alerts.destination]]\nname = \"channel\"\nkind = \"teams\"\nurl = \"{base}/teams\"\n\
         [[alerts.destination]]\nname = \"oncall\"\nkind = \"pagerduty\"\nurl = \"{base}/pagerduty\"\n\
         routing_key_file = \"{key}\"\n\
         {mail}\
         [[alerts.rule]]\nname = \"secret-reads-stopped\"\nrules = [\"ssh-keys\"]\n\
         outcomes = [\"killed\", \"denied\"]\nto = [\"soc\", \"chat\", \"channel\", \"oncall\"{to_mail}]\n",
        secret = secret.display(),
        slack = slack_url.display(),
        key = key.display(),
        mail = smtp.map(Smtp::destination).unwrap_or_default(),
        to_mail = if smtp.is_some() { ", \"mail\"" } else { "" },
    )
}

/// A fleet whose configuration needs files in its own directory.
async fn fleet_with(db: Db, extra: impl FnOnce(&std::path::Path) -> String) -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = extra(dir.path());
    let fleet = Fleet::start(db, &text).await;
    // The files were read at start-up.
    drop(dir);
    fleet
}

/// `n` open events of host build-01's session, `outcome` for rule `ssh-keys`,
/// sequence numbers from `first`.
fn reads(first: u64, n: u64, outcome: &str) -> Vec<LogRecord> {
    (first..first + n)
        .map(|seq| {
            records::event(
                "build-01",
                1,
                seq,
                "00000000000000e1",
                records::T0_NS + seq * 1_000,
                json!({"kind": "open", "pid": 4242, "comm": "cat",
                       "path": format!("/home/dev/.ssh/id_ed25519.{seq}"),
                       "rule": "ssh-keys", "action": "kill", "outcome": outcome}),
            )
        })
        .collect()
}

// What the services document, as each decodes it (unknown fields refused).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackMessage {
    text: String,
    blocks: Vec<SlackBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum SlackBlock {
    Section { text: SlackText },
    Context { elements: Vec<SlackText> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackText {
    #[serde(rename = "type")]
    kind: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamsMessage {
    #[serde(rename = "type")]
    kind: String,
    attachments: Vec<TeamsAttachment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TeamsAttachment {
    content_type: String,
    content_url: Option<String>,
    content: AdaptiveCard,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveCard {
    #[serde(rename = "$schema")]
    schema: String,
    #[serde(rename = "type")]
    kind: String,
    version: String,
    body: Vec<Value>,
    #[serde(default)]
    actions: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDutyEvent {
    routing_key: String,
    event_action: String,
    dedup_key: String,
    payload: PagerDutyPayload,
    client: Option<String>,
    client_url: Option<String>,
    #[serde(default)]
    links: Vec<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDutyPayload {
    summary: String,
    source: String,
    severity: String,
    timestamp: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    custom_details: Option<Value>,
}

fn webhook_body(r: &Received) -> Value {
    let ts = r.headers["x-guard-timestamp"].to_str().expect("ascii");
    let sig = r.headers["x-guard-signature"].to_str().expect("ascii");
    assert_eq!(
        sig,
        format!(
            "sha256={}",
            sign(
                WEBHOOK_SECRET.as_bytes(),
                ts.parse().expect("secs"),
                &r.body
            )
        ),
        "the signature a receiver checks"
    );
    serde_json::from_slice(&r.body).expect("json")
}

async fn a_killed_read_reaches_each_destination_once_in_its_own_form(db: Db) {
    let (rx, base, _server) = Receiver::start(0).await;
    let smtp = Smtp::start();
    let fleet = fleet_with(db, |dir| config_with(dir, &base, "1m", Some(&smtp))).await;
    let mut events = reads(1, 1, "killed");
    // Not an alert: another outcome.
    events.extend(reads(2, 1, "logged"));
    let req = records::request("build-01", events);
    assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0);
    let got = rx
        .until("one message per destination", |g| g.len() >= 4)
        .await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["pagerduty", "slack", "teams", "webhook"]);

    let w = webhook_body(&rx.on("webhook")[0]);
    assert_eq!(w["alert"], "secret-reads-stopped");
    assert_eq!(w["count"], 1);
    assert_eq!(w["events"][0]["outcome"], "killed");
    assert_eq!(w["events"][0]["host"], "build-01");
    let url = w["events"][0]["url"].as_str().expect("a link");
    assert!(
        url.starts_with("https://fleet.example.org/sessions/"),
        "{url}"
    );

    let slack: SlackMessage = serde_json::from_slice(&rx.on("slack")[0].body).expect("slack");
    assert!(
        slack.text.starts_with("guard: killed ssh-keys on build-01"),
        "{}",
        slack.text
    );
    for b in &slack.blocks {
        let texts: Vec<&SlackText> = match b {
            SlackBlock::Section { text } => vec![text],
            SlackBlock::Context { elements } => elements.iter().collect(),
        };
        for t in texts {
            assert_eq!(t.kind, "mrkdwn");
            assert!(t.text.len() <= 3000, "Slack's limit on a text object");
        }
    }

    let teams: TeamsMessage = serde_json::from_slice(&rx.on("teams")[0].body).expect("teams");
    assert_eq!(teams.kind, "message");
    let card = &teams.attachments[0];
    assert_eq!(card.content_type, "application/vnd.microsoft.card.adaptive");
    assert!(card.content_url.is_none());
    assert_eq!(card.content.kind, "AdaptiveCard");
    assert_eq!(card.content.version, "1.4");
    assert!(card.content.schema.contains("adaptive-card"));
    assert!(
        card.content.body[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("ssh-keys"))
    );
    assert_eq!(card.content.actions[0]["type"], "Action.OpenUrl");

    let pd: PagerDutyEvent =
        serde_json::from_slice(&rx.on("pagerduty")[0].body).expect("pagerduty");
    assert_eq!(pd.routing_key, ROUTING_KEY);
    assert_eq!(pd.event_action, "trigger");
    assert!(pd.dedup_key.len() <= 255 && !pd.dedup_key.is_empty());
    assert!(pd.payload.summary.len() <= 1024);
    assert_eq!(pd.payload.source, "build-01");
    assert_eq!(pd.payload.severity, "critical");
    assert!(
        pd.payload
            .timestamp
            .is_some_and(|t| humantime::parse_rfc3339(&t).is_ok())
    );
    assert_eq!(pd.payload.group.as_deref(), Some("ssh-keys"));
    assert_eq!(pd.payload.class.as_deref(), Some("killed"));
    assert!(pd.payload.component.is_some() && pd.payload.custom_details.is_some());
    assert!(pd.client.is_some() && pd.client_url.is_some() && !pd.links.is_empty());

    // The mail, as the mailbox holds it (aiosmtpd refuses a sender that did not
    // start TLS: it came encrypted, the server's certificate checked against ca_file).
    let mails = smtp.until(1).await;
    let mail = mailparse::parse_mail(&mails[0]).expect("an RFC 5322 message");
    let header = |name: &str| {
        mail.headers
            .iter()
            .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
    };
    assert!(
        header("Subject").is_some_and(|s| s.starts_with("guard: killed ssh-keys on build-01")),
        "{:?}",
        header("Subject")
    );
    assert_eq!(
        header("From").as_deref(),
        Some("guard-fleet <guard@fleet.example.org>")
    );
    assert_eq!(
        header("X-RcptTo").as_deref(),
        Some("secops@example.org, oncall@example.org"),
        "the envelope's recipients"
    );
    assert!(header("Content-Type").is_some_and(|t| t.starts_with("text/plain")));
    let text = mail.get_body().expect("the text");
    assert!(text.contains("- killed ssh-keys on build-01 at "), "{text}");
    assert!(
        text.contains("  https://fleet.example.org/sessions/"),
        "{text}"
    );

    // The host sends the batch again (its answer was lost): nothing new is queued.
    assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0);
    let store = &fleet.app().store;
    assert_eq!(sent(store, 5).await, 5);
    assert_eq!(store.alerts_in("pending").await.expect("count"), 0);
    assert_eq!(rx.got().len(), 4, "each destination got the alert once");
    assert_eq!(smtp.mails().len(), 1, "and the mailbox once");
    // Retention: sent alerts go with the events they were about.
    let retention = guard_fleet::config::Retention {
        events_days: 1,
        ..guard_fleet::config::Retention::default()
    };
    let later = guard_fleet::store::now_ms() + 2 * 86_400_000;
    store.prune(&retention, later).await.expect("prune");
    assert_eq!(store.alerts_in("sent").await.expect("count"), 0);
    fleet.stop().await;
}

async fn a_storm_is_a_few_messages_with_its_count(db: Db) {
    let (rx, base, _server) = Receiver::start(0).await;
    let fleet = fleet_with(db, |dir| config(dir, &base, "1s")).await;
    // The first read goes at once; the storm after it waits out the window.
    fleet
        .send_ok(
            &records::request("build-01", reads(1, 1, "killed")),
            HOST_TOKEN,
        )
        .await;
    rx.until("the first alert", |g| g.iter().any(|r| r.path == "webhook"))
        .await;
    for batch in 0..2 {
        let req = records::request("build-01", reads(2 + batch * 500, 500, "denied"));
        assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0);
    }
    let counted = |g: &[Received]| -> u64 {
        g.iter()
            .filter(|r| r.path == "webhook")
            .map(|r| webhook_body(r)["count"].as_u64().unwrap_or(0))
            .sum()
    };
    let got = rx
        .until("1,001 reads counted by the webhook", |g| counted(g) >= 1001)
        .await;
    assert_eq!(counted(&got), 1001);
    for path in ["webhook", "slack", "teams", "pagerduty"] {
        let n = got.iter().filter(|r| r.path == path).count();
        assert!((2..=3).contains(&n), "{path}: {n} messages for 1,001 reads");
    }
    let storm = rx.on("slack").last().cloned().expect("a storm message");
    let slack: SlackMessage = serde_json::from_slice(&storm.body).expect("slack");
    assert!(
        slack.text.contains("events of secret-reads-stopped"),
        "{}",
        slack.text
    );
    fleet.stop().await;
}

async fn a_destination_that_was_down_gets_the_alert_when_it_is_back(db: Db) {
    // Down for the first try of each destination.
    let (rx, base, _server) = Receiver::start(4).await;
    let fleet = fleet_with(db, |dir| config(dir, &base, "1m")).await;
    fleet
        .send_ok(
            &records::request("build-01", reads(1, 1, "killed")),
            HOST_TOKEN,
        )
        .await;
    rx.until("every destination, after a retry", |g| g.len() >= 4)
        .await;
    assert_eq!(
        *rx.refuse.lock().expect("lock"),
        0,
        "the first tries were refused"
    );
    let store = &fleet.app().store;
    assert_eq!(sent(store, 4).await, 4);
    fleet.stop().await;
}

async fn two_replicas_never_hold_one_alert_and_a_dead_one_s_lease_runs_out(db: Db) {
    use guard_fleet::store::alerts::Delivery;
    // No destination answers here: the leases are taken by hand, at chosen times.
    let fleet = fleet_with(db, |dir| config(dir, "http://127.0.0.1:9", "1m")).await;
    let other = guard_fleet::store::Store::connect(&fleet.app().config.database)
        .await
        .expect("a second replica's pool");
    let store = &fleet.app().store;
    // Queue with no delivery loop competing: the rows are due at `now`, and the
    // hand-made leases below start later than any the loop could have taken.
    fleet
        .send_ok(
            &records::request("build-01", reads(1, 3, "killed")),
            HOST_TOKEN,
        )
        .await;
    let later = guard_fleet::store::now_ms() + 3_600_000;
    let a = store
        .claim_alerts("secret-reads-stopped", "soc", later, 30_000)
        .await
        .expect("claim")
        .expect("replica A holds the rows");
    assert_eq!(a.rows.len(), 3);
    assert!(
        other
            .claim_alerts("secret-reads-stopped", "soc", later + 1_000, 30_000)
            .await
            .expect("claim")
            .is_none(),
        "replica B gets nothing while A's lease runs"
    );
    // A dies mid-delivery; past its lease, B takes the rows and sends them.
    let b = other
        .claim_alerts("secret-reads-stopped", "soc", later + 31_000, 30_000)
        .await
        .expect("claim")
        .expect("replica B holds the rows");
    assert_eq!(b.rows.len(), 3);
    assert_eq!(
        other
            .finish_alerts(&b, &Delivery::Sent, later + 32_000)
            .await
            .expect("mark"),
        3
    );
    // A comes back with its stale claim: it marks nothing.
    assert_eq!(
        store
            .finish_alerts(&a, &Delivery::Sent, later + 33_000)
            .await
            .expect("mark"),
        0
    );
    fleet.stop().await;
}

async fn a_silent_host_and_a_refused_policy_are_alerts_once_each(db: Db) {
    let (rx, base, _server) = Receiver::start(0).await;
    let fleet = fleet_with(db, |_| {
        format!(
            "[dashboard]\nstale_after = \"2s\"\n\
             [alerts]\nwindow = \"1s\"\n[[alerts.destination]]\nname = \"soc\"\nkind = \"webhook\"\n\
             url = \"{base}/webhook\"\n\
             [[alerts.rule]]\nname = \"hosts\"\nkinds = [\"host_silent\", \"policy_rejected\"]\n\
             to = [\"soc\"]\n"
        )
    })
    .await;
    // A host refuses the fleet's policy, then falls silent.
    let mut refused = records::event(
        "build-01",
        1,
        1,
        "0000000000000000",
        records::T0_NS,
        json!({"kind": "policy_rejected", "name": "fleet:protect@3",
               "errors": "policy:3:1: unknown action"}),
    );
    // The daemon's own events belong to no session.
    refused
        .attributes
        .retain(|a| ![attr::SESSION_ID, attr::SESSION_UID].contains(&a.key.as_str()));
    let req = records::request("build-01", vec![refused]);
    assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0, "rejected");
    let rules = |g: &[Received]| -> Vec<String> {
        g.iter()
            .flat_map(|r| {
                // No secret here: unsigned.
                let body: Value = serde_json::from_slice(&r.body).expect("json");
                body["events"].as_array().cloned().unwrap_or_default()
            })
            .map(|e| e["rule"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let got = rx
        .until("the refusal and the silence", |g| rules(g).len() >= 2)
        .await;
    let mut seen = rules(&got);
    seen.sort();
    assert_eq!(seen, ["host_silent", "policy_rejected"]);
    // Checked again, the same silence queues nothing new.
    let store = &fleet.app().store;
    let now = guard_fleet::store::now_ms();
    let again = store
        .queue_silent_hosts(&fleet.app().config.alerts.rules, now - 2_000, now)
        .await
        .expect("queue");
    assert_eq!(again, 0, "one alert per silence");
    fleet.stop().await;
}

/// Alert rules kept in the fleet: an admin makes one (checked as the file's are),
/// it catches the next killed read at once, the alerts page and `guard-fleet
/// alert-rule list` show it beside the file's; removed, it catches nothing more.
async fn an_admin_keeps_an_alert_rule_in_the_fleet_and_removes_it(db: Db) {
    let (rx, base, _server) = Receiver::start(0).await;
    let fleet = fleet_with(db, |_| {
        format!(
            "[alerts]\nwindow = \"1s\"\n[[alerts.destination]]\nname = \"soc\"\n\
             kind = \"webhook\"\nurl = \"{base}/webhook\"\n\
             [[alerts.rule]]\nname = \"from-file\"\nkinds = [\"tamper\"]\nto = [\"soc\"]\n"
        )
    })
    .await;
    let put = |name: &'static str, token: &'static str, body: Value| {
        let fleet = &fleet;
        async move {
            fleet
                .call(
                    reqwest::Method::PUT,
                    &format!("/api/alert-rules/{name}"),
                    Some(token),
                    None,
                    Some(body),
                )
                .await
        }
    };
    let keys = json!({"rules": ["ssh-keys"], "outcomes": ["killed"], "to": ["soc"]});
    // Only an admin; checked as the file's rules; the file's own are not changed here.
    assert_eq!(
        put("keys", DASH_TOKEN, keys.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    for (name, body, status) in [
        ("keys", json!({"to": ["nowhere"]}), StatusCode::BAD_REQUEST),
        (
            "keys",
            json!({"to": ["soc"], "outcomes": ["stopped"]}),
            StatusCode::BAD_REQUEST,
        ),
        ("keys", json!({"to": []}), StatusCode::BAD_REQUEST),
        ("from-file", keys.clone(), StatusCode::CONFLICT),
    ] {
        let (got, answer) = put(name, ADMIN_TOKEN, body).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, made) = put("keys", ADMIN_TOKEN, keys.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["author"], "sec-lead");
    assert_eq!(
        put("keys", ADMIN_TOKEN, keys).await.0,
        StatusCode::OK,
        "replaced"
    );

    // The next killed read is caught and delivered.
    let req = records::request("build-01", reads(1, 1, "killed"));
    assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0);
    let got = rx
        .until("the kept rule's alert", |g| {
            g.iter().any(|r| r.path == "webhook")
        })
        .await;
    // No secret here: unsigned.
    let body: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    assert_eq!(body["alert"], "keys", "{body}");

    // Listed beside the file's rule, with who made it.
    let base = fleet.base.clone();
    let listed = tokio::task::spawn_blocking(move || {
        std::process::Command::new(support::process::BIN)
            .args(["alert-rule", "list", "--server", &base])
            .env("GUARD_FLEET_TOKEN", DASH_TOKEN)
            .output()
    })
    .await
    .expect("joined")
    .expect("guard-fleet alert-rule list");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let names: Vec<(&str, Option<&str>)> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| (r["name"].as_str().unwrap_or(""), r["author"].as_str()))
        .collect();
    assert_eq!(names, [("from-file", None), ("keys", Some("sec-lead"))]);
    let (_, _, page) = fleet
        .page("/alerts", Some(&format!("guard_fleet={DASH_TOKEN}")))
        .await;
    assert!(page.contains("in the fleet · sec-lead"), "{page}");

    // Removed: the next read is queued for no one.
    let delete = || {
        fleet.call(
            reqwest::Method::DELETE,
            "/api/alert-rules/keys",
            Some(ADMIN_TOKEN),
            None,
            None,
        )
    };
    let (status, answer) = delete().await;
    assert_eq!(
        (status, &answer["removed"]),
        (StatusCode::OK, &json!("keys"))
    );
    assert_eq!(delete().await.0, StatusCode::NOT_FOUND, "removed once");
    let store = &fleet.app().store;
    let before = store.alerts_in("pending").await.expect("count")
        + store.alerts_in("sent").await.expect("count");
    let req = records::request("build-01", reads(2, 1, "killed"));
    assert_eq!(fleet.send_ok(&req, HOST_TOKEN).await, 0);
    let after = store.alerts_in("pending").await.expect("count")
        + store.alerts_in("sent").await.expect("count");
    assert_eq!(after, before, "a removed rule queues nothing");
    fleet.stop().await;
}
