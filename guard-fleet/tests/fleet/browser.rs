//! The dashboard in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver, with fantoccini), at a desktop's width and at a phone's
//! (390 px), as a security team would use it: sign in; the overview and its charts;
//! a click from the overview that keeps its window and its count; the developers and
//! destinations pages; a filtered list and its totals; the filter form keeping
//! `from=7d`; a session stamped in the future by its host's clock; an idle host that
//! sends heartbeats beside one whose guard stopped; a session's page and timeline.
//! Screenshots go to `target/fleet-browser/` (docs/img has copies).

use crate::support;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use guard_common::otlp::{self, attr};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde_json::{Value, json};
use sqlx::Executor as _;
use support::{ADMIN_TOKEN, CLUSTER_TOKEN, DASH_TOKEN, Db, Fleet, records};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to be what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// chromedriver on a loopback port of its own, stopped (with its browsers) on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        // A port the kernel picked, free again for chromedriver to take.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: the browsers it starts go with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start chromedriver");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group started above.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A WebDriver session with headless Chromium (chromedriver may take a moment to
/// listen: retried until `PAGE_TIMEOUT`).
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                // root, in a container: Chromium's own sandbox needs user namespaces.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let start = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url())
            .await
        {
            Ok(client) => return client,
            Err(_) if start.elapsed() < PAGE_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session with Chromium: {e}"),
        }
    }
}

/// Waits until `done(url, text)` holds for the page shown; the page's text. While
/// the browser is between two pages the body may be missing or stale: tried again.
async fn wait_for(client: &Client, what: &str, done: impl Fn(&url::Url, &str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let url = client.current_url().await.map_err(|e| e.to_string());
        let text = match client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let (Ok(url), Ok(text)) = (&url, &text)
            && done(url, text)
        {
            return text.clone();
        }
        assert!(
            start.elapsed() < PAGE_TIMEOUT,
            "the page never showed {what}: at {url:?}, {}",
            text.unwrap_or_else(|e| format!("(no body: {e})"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The size the browser gave each `svg` of the page (width, height in CSS pixels).
async fn svg_sizes(client: &Client) -> Vec<(f64, f64)> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('svg')).map(s => { \
               const r = s.getBoundingClientRect(); return [r.width, r.height]; });",
            vec![],
        )
        .await
        .expect("run the size script");
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| (p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0)))
        .collect()
}

/// Types `text` into the field `css` names.
async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
}

/// Clicks the first element `css` names.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fleet-browser");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(shots_dir().join(name), png).expect("write the screenshot");
}

/// The text of the first element `css` names.
async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("no text in {css}: {e}"))
}

/// Opens `path` and waits until its text contains `needle`.
async fn open(client: &Client, base: &str, path: &str, needle: &str) -> String {
    client
        .goto(&format!("{base}{path}"))
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    wait_for(client, &format!("{path} with {needle:?}"), |url, text| {
        url.path() == path.split('?').next().unwrap_or(path) && text.contains(needle)
    })
    .await
}

/// The count in a page's `<h1>` (`Sessions · 1,234` gives 1234).
async fn heading_count(client: &Client) -> i64 {
    let h1 = text_of(client, "h1").await;
    h1.split('·')
        .nth(1)
        .map(|n| n.trim().replace(',', ""))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in {h1:?}"))
}

/// The page is no wider than the window: (page width, window width).
async fn widths(client: &Client) -> (f64, f64) {
    let v = client
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await
        .expect("widths");
    (v[0].as_f64().unwrap_or(0.0), v[1].as_f64().unwrap_or(0.0))
}

/// The smallest height of a chart's text as laid out (CSS px).
async fn chart_text_px(client: &Client) -> f64 {
    let v = client
        .execute(
            "const t = Array.from(document.querySelectorAll('svg.chart text')) \
               .map(e => e.getBoundingClientRect().height).filter(h => h > 0); \
             return t.length ? Math.min(...t) : 0;",
            vec![],
        )
        .await
        .expect("chart text");
    v.as_f64().unwrap_or(0.0)
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one browser session in order: each page is checked against the fleet seeded first"
)]
async fn a_security_team_reads_the_dashboard_in_chromium() {
    if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
        support::record_skip(
            "a_security_team_reads_the_dashboard_in_chromium",
            "no Chromium: Debian's chromium and chromium-driver (cargo xtask test installs them)",
        );
        return;
    }
    let fleet = Fleet::start(Db::Sqlite, "").await;
    let now = chrono::Utc::now();
    let ago = |minutes: i64| now - chrono::Duration::minutes(minutes);
    let observed = now.timestamp_nanos_opt().expect("a time in range") as u64;
    let session =
        |id: &str, user: &str, repo: &str, started: chrono::DateTime<chrono::Utc>, ended: bool| {
            let mut r = records::report(id, user, repo, true);
            r.started = Some(rfc3339(started));
            r.ended = ended.then(|| rfc3339(started + chrono::Duration::minutes(10)));
            for v in &mut r.violations.items {
                v.ts = rfc3339(started + chrono::Duration::minutes(2));
            }
            for c in &mut r.commands.items {
                c.ts = rfc3339(started + chrono::Duration::minutes(1));
            }
            r
        };
    // alice: ended an hour ago; bob: running now; carol: ten days ago (outside the
    // 7-day window); erin: running on a host that died an hour ago (not "now").
    let mut alice = session(
        "00000000000000b1",
        "alice",
        "https://github.com/acme/app",
        ago(60),
        true,
    );
    // One rule broken once, beside rules broken by every session.
    let mut once = alice.violations.items[1].clone();
    once.rule = "git-hooks".into();
    once.what = "open /w/.git/hooks/pre-commit".into();
    alice.violations.push(once);
    let bob = session(
        "00000000000000b2",
        "bob",
        "https://github.com/acme/infra",
        ago(20),
        false,
    );
    let carol = session(
        "00000000000000b3",
        "carol",
        "https://github.com/acme/app",
        ago(10 * 1440),
        true,
    );
    let erin = session(
        "00000000000000b5",
        "erin",
        "https://github.com/acme/infra",
        ago(70),
        false,
    );
    // The hosts: most with every enforcement tier; ci-runner in observe mode,
    // old-box with an older guard.
    let as_host = |host: &str, version: &str, mode: &str, records: Vec<_>| {
        let mut req = records::request(host, records);
        if let Some(res) = req.resource_logs[0].resource.as_mut() {
            res.attributes.retain(|a| {
                ![attr::SERVICE_VERSION, attr::POLICY_MODE, attr::TIERS].contains(&a.key.as_str())
            });
            res.attributes
                .push(otlp::kv(attr::SERVICE_VERSION, version));
            res.attributes.push(otlp::kv(attr::POLICY_MODE, mode));
            let tiers: serde_json::Map<String, Value> = guard_fleet::store::read::EXPECTED_TIERS
                .iter()
                .map(|a| ((*a).to_owned(), json!("bpf_lsm")))
                .collect();
            res.attributes.push(KeyValue {
                key: attr::TIERS.to_owned(),
                value: Some(otlp::json_to_any(&Value::Object(tiers))),
                ..Default::default()
            });
        }
        req
    };
    for (host, report, spool, version, mode) in [
        ("laptop", &alice, 1, "0.2.0", "enforce"),
        ("ci-runner", &bob, 2, "0.2.0", "observe"),
        ("old-box", &carol, 3, "0.1.0", "enforce"),
        ("dead-box", &erin, 5, "0.2.0", "enforce"),
    ] {
        let req = as_host(
            host,
            version,
            mode,
            vec![records::summary(host, spool, 1, report, 1, observed)],
        );
        assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0, "rejected");
    }
    // dave's host's clock is three days ahead: it stamps his session (90 minutes
    // ago) three days into the future.
    let ahead = chrono::Duration::days(3);
    let dave = session(
        "00000000000000b4",
        "dave",
        "https://github.com/acme/app",
        ago(90) + ahead,
        true,
    );
    let skewed_now = (now + ahead).timestamp_nanos_opt().expect("in range") as u64;
    let req = as_host(
        "skewed",
        "0.2.0",
        "enforce",
        vec![records::summary("skewed", 4, 1, &dave, 1, skewed_now)],
    );
    assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0, "rejected");
    // Two hosts without sessions: one idle (its guard's heartbeat just came), one
    // whose guard stopped an hour ago (its last heartbeat then).
    for host in ["idle-ws", "stopped-ws"] {
        let req = as_host(host, "0.2.0", "enforce", vec![records::heartbeat()]);
        assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0, "rejected");
    }
    let pool = sqlx::AnyPool::connect(&fleet.setup.db_url)
        .await
        .expect("connect");
    let hour_ago = (now - chrono::Duration::hours(1)).timestamp_millis();
    pool.execute(sqlx::AssertSqlSafe(format!(
        "UPDATE hosts SET last_seen_ms = {hour_ago}, heartbeat_ms = {hour_ago} \
         WHERE host IN ('eu/stopped-ws', 'eu/dead-box')"
    )))
    .await
    .expect("age the stopped hosts");
    pool.execute(sqlx::AssertSqlSafe(format!(
        "UPDATE sessions SET updated_ms = {hour_ago} WHERE host = 'eu/dead-box'"
    )))
    .await
    .expect("age the dead host's session");
    pool.close().await;

    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile directory");
    let client = browser(&driver, profile.path()).await;
    let base = fleet.base.clone();
    // Not signed in: the login form, then back to the page asked for.
    client
        .goto(&format!("{base}/?days=7"))
        .await
        .expect("open the overview");
    assert_eq!(client.current_url().await.expect("url").path(), "/login");
    type_into(&client, "#token", DASH_TOKEN).await;
    click(&client, "button.go").await;
    let overview = wait_for(&client, "the overview", |url, text| {
        url.path() == "/" && text.contains("acme/app")
    })
    .await;
    for expected in [
        "alice",
        "bob",
        "acme/infra",
        "eu/laptop",
        "eu/ci-runner",
        "eu/idle-ws",
    ] {
        assert!(
            overview.contains(expected),
            "{expected} not on the overview:\n{overview}"
        );
    }
    // The three charts, drawn on the server as SVG, laid out by the browser.
    let sizes = svg_sizes(&client).await;
    let charts: Vec<_> = sizes.iter().filter(|(w, _)| *w >= 200.0).collect();
    assert!(charts.len() >= 3, "charts on the overview: {sizes:?}");
    screenshot(&client, "overview.png").await;

    // A click keeps the window: the 7-day card's count is the list's.
    let card = text_of(&client, "a.card[href^='/sessions?from='] .n").await;
    assert_eq!(
        card, "4",
        "alice, bob, dave (corrected) and erin: carol is older"
    );
    click(&client, "a.card[href^='/sessions?from=']").await;
    wait_for(&client, "the 7-day list", |url, _| {
        url.path() == "/sessions" && url.query().is_some_and(|q| q.contains("from="))
    })
    .await;
    assert_eq!(
        heading_count(&client).await,
        4,
        "the list counts what the card counted"
    );
    // Running now: the card and the list count the same (erin's host died).
    open(&client, &base, "/?days=7", "Running now").await;
    let running = text_of(&client, "a.card[href='/sessions?state=running'] .n").await;
    assert_eq!(running, "1", "bob only");
    click(&client, "a.card[href='/sessions?state=running']").await;
    let list = wait_for(&client, "the running list", |url, _| {
        url.query().is_some_and(|q| q.contains("state=running"))
    })
    .await;
    assert_eq!(heading_count(&client).await, 1);
    assert!(list.contains("bob") && !list.contains("erin"), "{list}");

    // The filter form keeps `from=7d`, and its count.
    open(&client, &base, "/sessions?from=7d", "Sessions").await;
    let before = heading_count(&client).await;
    assert_eq!(before, 4);
    click(&client, "form.filters button.go").await;
    wait_for(&client, "the same filter again", |url, _| {
        url.query().is_some_and(|q| q.contains("from=7d"))
    })
    .await;
    assert_eq!(
        heading_count(&client).await,
        before,
        "pressing Filter keeps the window"
    );

    // The clock-skew case: dave's session is counted at its real time (not first
    // in the newest-first list), flagged, and its host's skew is shown.
    let list = open(&client, &base, "/sessions", "dave").await;
    let first = text_of(&client, "table tbody tr td:nth-child(2)").await;
    assert_eq!(first, "bob", "a future stamp does not sort first:\n{list}");
    assert!(
        client.find(Locator::Css("span.badge.skew")).await.is_ok(),
        "dave's row is flagged"
    );

    // A filtered list and its totals: alice's sessions.
    type_into(&client, "form.filters input[name=user]", "alice").await;
    click(&client, "form.filters button.go").await;
    let filtered = wait_for(&client, "the sessions of alice", |url, _| {
        url.query().is_some_and(|q| q.contains("user=alice"))
    })
    .await;
    let totals = text_of(&client, ".cards.totals").await;
    assert!(
        totals.contains("3.8 MiB") && totals.contains("976.6 KiB"),
        "alice's sessions sent 4,000,000 bytes to the model, 1,000,000 elsewhere:\n{totals}"
    );
    assert!(
        filtered.contains("acme/app") && !filtered.contains("acme/infra"),
        "{filtered}"
    );
    assert!(
        filtered.contains("exact, case counts"),
        "the filter says how it matches"
    );
    screenshot(&client, "sessions.png").await;

    // The developers page: who, with their bytes; carol is outside 7 days.
    let devs = open(&client, &base, "/developers?days=7", "Developers").await;
    for who in ["alice", "bob", "dave", "erin"] {
        assert!(devs.contains(who), "{who}:\n{devs}");
    }
    assert!(!devs.contains("carol"), "{devs}");
    assert_eq!(heading_count(&client).await, 4);
    screenshot(&client, "developers.png").await;
    let devs = open(&client, &base, "/developers?days=30", "carol").await;
    assert!(
        devs.contains("new"),
        "a developer with no session before: {devs}"
    );

    // The destinations page, and a click to the sessions that sent there.
    let dests = open(&client, &base, "/destinations?days=7", "api.openai.com").await;
    assert!(
        dests.contains("github.com") && dests.contains("model"),
        "{dests}"
    );
    screenshot(&client, "destinations.png").await;
    click(&client, "a[href^='/sessions?dest=api.openai.com']").await;
    wait_for(&client, "the sessions to the model API", |url, _| {
        url.query()
            .is_some_and(|q| q.contains("dest=api.openai.com") && q.contains("from="))
    })
    .await;
    assert_eq!(
        heading_count(&client).await,
        4,
        "every 7-day session sent to it"
    );

    // Rules: every rule, with its days.
    let rules = open(&client, &base, "/rules?days=7", "secrets.cloud").await;
    assert!(
        rules.contains("network.egress") && rules.contains("Outcomes"),
        "{rules}"
    );
    let once = rules
        .lines()
        .find(|l| l.starts_with("git-hooks"))
        .unwrap_or_else(|| panic!("the rule broken once is listed:\n{rules}"));
    assert!(once.contains(" 1 "), "{once}");
    let bars = client
        .execute(
            "return Array.from(document.querySelectorAll('table.list tbody tr')) \
               .filter(r => r.textContent.includes('git-hooks')) \
               .map(r => r.querySelector('svg.spark rect').getBoundingClientRect().height);",
            vec![],
        )
        .await
        .expect("the bars");
    let h = bars[0].as_f64().unwrap_or(0.0);
    assert!(
        h >= 15.0,
        "one hit's bar is as tall as its day allows: {h} px"
    );
    screenshot(&client, "rules.png").await;

    // Hosts: the idle one reports (its heartbeats), the stopped one is silent, the
    // skewed one shows its clock.
    let hosts = open(&client, &base, "/hosts", "eu/stopped-ws").await;
    let row = |host: &str| {
        hosts
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("no row of {host}:\n{hosts}"))
            .to_owned()
    };
    assert!(row("eu/idle-ws").contains("idle"), "{}", row("eu/idle-ws"));
    assert!(
        row("eu/stopped-ws").contains("silent"),
        "{}",
        row("eu/stopped-ws")
    );
    assert!(
        row("eu/skewed").contains("3d 0h ahead"),
        "{}",
        row("eu/skewed")
    );
    assert!(
        row("eu/laptop").contains("all 8 actions"),
        "{}",
        row("eu/laptop")
    );
    assert!(
        row("eu/ci-runner").contains("observe"),
        "{}",
        row("eu/ci-runner")
    );
    assert!(
        row("eu/old-box").contains("0.1.0 old"),
        "{}",
        row("eu/old-box")
    );
    screenshot(&client, "hosts.png").await;

    // Alice's session: its page, who, which repository, its timeline.
    let page = open(&client, &base, "/sessions?user=alice", "acme/app").await;
    assert!(page.contains("alice"));
    click(&client, "a[href^='/sessions/']").await;
    let page = wait_for(&client, "alice's session page", |url, text| {
        url.path().starts_with("/sessions/") && text.contains("alice")
    })
    .await;
    assert!(
        page.contains("api.openai.com"),
        "the model API destination:\n{page}"
    );
    let sizes = svg_sizes(&client).await;
    assert!(
        sizes.iter().any(|(w, h)| *w >= 200.0 && *h >= 50.0),
        "no timeline drawn: {sizes:?}"
    );
    let timeline = client
        .find(Locator::Css("svg.chart"))
        .await
        .expect("the timeline")
        .html(false)
        .await
        .expect("its svg");
    assert!(
        timeline.contains("MiB"),
        "the timeline's bytes axis reaches the session's 4.8 MiB (no flow records in the index)"
    );
    screenshot(&client, "session.png").await;
    let detail: Value = fleet.api("/api/sessions/00000000000000b1").await;
    assert_eq!(detail["session"]["user_name"], "alice");
    // Dave's page says his host's clock is ahead.
    let dave_page = open(&client, &base, "/sessions/00000000000000b4", "dave").await;
    assert!(
        dave_page.contains("the host's clock is ahead"),
        "{dave_page}"
    );

    // At a phone's width (390 px) every page fits, and charts' text stays legible.
    client
        .set_window_size(390, 844)
        .await
        .expect("a phone's window");
    for (path, needle) in [
        ("/?days=7", "Running now"),
        ("/sessions?from=7d", "Sessions"),
        ("/developers?days=7", "alice"),
        ("/destinations?days=7", "api.openai.com"),
        ("/rules?days=7", "secrets.cloud"),
        ("/hosts", "eu/idle-ws"),
        ("/sessions/00000000000000b1", "alice"),
    ] {
        open(&client, &base, path, needle).await;
        let (page, window) = widths(&client).await;
        assert!(window <= 400.0, "the window is a phone's: {window}");
        assert!(
            page <= window,
            "{path} is {page} px wide in a {window} px window"
        );
        if path.starts_with("/?") {
            let px = chart_text_px(&client).await;
            assert!(px >= 8.0, "chart text {px} px high on a phone");
            screenshot(&client, "overview-phone.png").await;
        }
        if path.starts_with("/sessions?") {
            screenshot(&client, "sessions-phone.png").await;
        }
    }
    client.close().await.expect("end the WebDriver session");
}

/// The policies page as an admin reads it in Chromium: each group's assignment
/// (observe shown as such), how many of its hosts do not enforce it yet, a group
/// hosts name with no assignment, and every stored version; the page fits a phone.
/// Then the alerts page: the rule and its destination, a delivery pending after a
/// refused try, and the event (its markup as text) linking to its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_the_policies_and_alerts_pages_in_chromium() {
    if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
        support::record_skip(
            "an_admin_reads_the_policies_and_alerts_pages_in_chromium",
            "no Chromium: Debian's chromium and chromium-driver (cargo xtask test installs them)",
        );
        return;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("policy.key");
    guard_fleet::signing::Signer::create(&key).expect("a key");
    // An alert to a destination that refuses: it stays pending, with its error.
    let fleet = Fleet::start(
        Db::Sqlite,
        &format!(
            "[policy]\nsigning_key = \"{}\"\n\
             [alerts]\ndashboard_url = \"https://fleet.example.org\"\n\
             [[alerts.destination]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[alerts.rule]]\nname = \"keys-stopped\"\nrules = [\"ssh\"]\noutcomes = [\"killed\"]\n\
             to = [\"soc\"]\n",
            key.display()
        ),
    )
    .await;
    let text =
        "[[rule]]\nid = \"ssh\"\nkind = \"file\"\npaths = [\"~/.ssh/**\"]\naction = \"kill\"\n";
    for _ in 0..2 {
        let r = fleet
            .http
            .post(format!("{}/api/policies/protect", fleet.base))
            .bearer_auth(ADMIN_TOKEN)
            .body(text)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }
    let r = fleet
        .http
        .put(format!("{}/api/assignments/ci-pool", fleet.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"policy": "protect", "version": 2, "mode": "observe"}))
        .send()
        .await
        .expect("assign");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // Two hosts of ci-pool, one of which still runs version 1; one host of a group
    // with no assignment.
    // runner-1's batch has a read of an SSH key its guard killed (an alert).
    let killed = records::event(
        "runner-1",
        1,
        7,
        "00000000000000f1",
        records::T0_NS,
        json!({"kind": "open", "pid": 4242, "comm": "cat", "path": "/home/ci/.ssh/id_<b>rsa",
               "rule": "ssh", "action": "kill", "outcome": "killed"}),
    );
    for (host, group, policy, mode) in [
        ("runner-1", "ci-pool", "fleet:protect@2", "observe"),
        ("runner-2", "ci-pool", "fleet:protect@1", "observe"),
        ("laptop", "laptops", "workstation", "enforce"),
    ] {
        let mut recs = vec![records::heartbeat()];
        if host == "runner-1" {
            recs.push(killed.clone());
        }
        let mut req = records::request(host, recs);
        let res = req.resource_logs[0].resource.as_mut().expect("a resource");
        res.attributes
            .retain(|a| ![attr::POLICY_NAME, attr::POLICY_MODE].contains(&a.key.as_str()));
        res.attributes.extend([
            otlp::kv(attr::POLICY_NAME, policy),
            otlp::kv(attr::POLICY_MODE, mode),
            otlp::kv(attr::FLEET_GROUP, group),
        ]);
        assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0, "rejected");
    }
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile directory");
    let client = browser(&driver, profile.path()).await;
    let base = fleet.base.clone();
    client
        .goto(&format!("{base}/policies"))
        .await
        .expect("open the policies page");
    type_into(&client, "#token", ADMIN_TOKEN).await;
    click(&client, "button.go").await;
    let page = wait_for(&client, "the policies page", |url, text| {
        url.path() == "/policies" && text.contains("ci-pool")
    })
    .await;
    let assignments = text_of(&client, "table.assignments tbody").await;
    let rows: Vec<&str> = assignments.lines().collect();
    assert!(
        rows.iter().any(|r| r.contains("ci-pool")
            && r.contains("protect@2")
            && r.contains("observe")
            && r.split_whitespace().rev().take(2).eq(["1", "2"])),
        "ci-pool: 2 hosts, 1 not enforcing its assignment:\n{assignments}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("laptops") && r.contains("no assignment")),
        "{assignments}"
    );
    let versions = text_of(&client, "table.versions tbody").await;
    assert_eq!(versions.lines().count(), 2, "{versions}");
    assert!(page.contains("sec-lead"), "the uploader is named:\n{page}");
    assert!(
        page.contains("What ci-pool's assignment would stop"),
        "an assignment in observe shows what it would stop:\n{page}"
    );
    screenshot(&client, "policies.png").await;
    client
        .set_window_size(390, 844)
        .await
        .expect("a phone's window");
    open(&client, &base, "/policies", "ci-pool").await;
    let (page_px, window) = widths(&client).await;
    assert!(
        page_px <= window,
        "/policies is {page_px} px wide in a {window} px window"
    );

    // The alerts page: the rule, its delivery pending after the refused try, and
    // the event (its markup shown as text) linking to its session.
    client
        .set_window_size(1400, 1000)
        .await
        .expect("a desktop window");
    let start = Instant::now();
    loop {
        let r = fleet.app().store.recent_alerts(1).await.expect("alerts");
        if r.first()
            .is_some_and(|a| a.attempts >= 1 && a.error.is_some())
        {
            break;
        }
        assert!(start.elapsed() < PAGE_TIMEOUT, "no refused try: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    click(&client, "nav a[href='/alerts']").await;
    let page = wait_for(
        &client,
        "the alerts page after a refused try",
        |url, text| url.path() == "/alerts" && text.contains("pending · try"),
    )
    .await;
    let rules = text_of(&client, "table.alert-rules tbody").await;
    assert!(
        rules.contains("keys-stopped")
            && rules.contains("soc (webhook)")
            && rules.contains("killed"),
        "{rules}"
    );
    let deliveries = text_of(&client, "table.deliveries tbody").await;
    assert!(
        deliveries.contains("keys-stopped")
            && deliveries
                .split_whitespace()
                .collect::<Vec<_>>()
                .ends_with(&["0", "1", "0", "never"]),
        "nothing sent, one pending, none failed:\n{deliveries}"
    );
    let recent = text_of(&client, "table.recent-alerts tbody").await;
    assert!(
        recent.contains("/home/ci/.ssh/id_<b>rsa"),
        "escaped, shown as text:\n{recent}"
    );
    let link = client
        .find(Locator::Css("table.recent-alerts tbody a"))
        .await
        .expect("a link to the session")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    assert!(link.starts_with("/sessions/"), "{link}");
    assert!(page.contains("window 1m"), "{page}");
    screenshot(&client, "alerts.png").await;
    client.close().await.expect("end the WebDriver session");
}
