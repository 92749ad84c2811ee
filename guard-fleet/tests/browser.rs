//! The dashboard in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver, with fantoccini), signs in with a dashboard token, reads
//! the overview (its charts laid out by the browser, with a size), filters the
//! sessions table with its form and opens a session's page with its timeline, as a
//! security team would. Screenshots go to `target/fleet-browser/`.

mod support;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{CLUSTER_TOKEN, DASH_TOKEN, Db, Fleet, records};

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
    fn start() -> Driver {
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
        Driver { child, port }
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

/// Waits until the page's text contains `needle`; the page's text.
async fn wait_for_text(client: &Client, needle: &str) -> String {
    wait_for(client, &format!("the text {needle:?}"), |_, text| {
        text.contains(needle)
    })
    .await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_team_reads_the_dashboard_in_chromium() {
    if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
        support::record_skip(
            "a_security_team_reads_the_dashboard_in_chromium",
            "no Chromium: Debian's chromium and chromium-driver (cargo xtask test installs them)",
        );
        return;
    }
    let fleet = Fleet::start(Db::Sqlite, "").await;
    // Sessions of the last hour, so that the overview's default window holds them.
    let now = chrono::Utc::now();
    let at = |minutes_ago: i64| {
        (now - chrono::Duration::minutes(minutes_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut alice = records::report(
        "00000000000000b1",
        "alice",
        "https://github.com/acme/app",
        true,
    );
    (alice.started, alice.ended) = (Some(at(60)), Some(at(50)));
    let mut bob = records::report(
        "00000000000000b2",
        "bob",
        "https://github.com/acme/infra",
        false,
    );
    bob.started = Some(at(20));
    let observed = now.timestamp_nanos_opt().expect("a time in range") as u64;
    for (host, report, spool) in [("laptop", &alice, 1), ("ci-runner", &bob, 2)] {
        let req = records::request(
            host,
            vec![records::summary(host, spool, 1, report, 1, observed)],
        );
        assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0, "rejected");
    }

    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile directory");
    let client = browser(&driver, profile.path()).await;
    // Not signed in: the login form, then back to the page asked for.
    client
        .goto(&format!("{}/?days=7", fleet.base))
        .await
        .expect("open the overview");
    assert_eq!(client.current_url().await.expect("url").path(), "/login");
    type_into(&client, "#token", DASH_TOKEN).await;
    click(&client, "button.go").await;
    let overview = wait_for(&client, "the overview", |url, text| {
        url.path() == "/" && text.contains("acme/app")
    })
    .await;
    for expected in ["alice", "bob", "acme/infra", "laptop", "ci-runner"] {
        assert!(
            overview.contains(expected),
            "{expected} not on the overview:\n{overview}"
        );
    }
    // The four charts, drawn on the server as SVG, laid out by the browser.
    let sizes = svg_sizes(&client).await;
    assert!(sizes.len() >= 4, "{} charts on the overview", sizes.len());
    for (w, h) in &sizes[..4] {
        assert!(
            *w >= 200.0 && *h >= 100.0,
            "a chart drawn {w}×{h}: {sizes:?}"
        );
    }
    screenshot(&client, "overview.png").await;

    // The sessions table, filtered by its form.
    client
        .goto(&format!("{}/sessions", fleet.base))
        .await
        .expect("open the sessions");
    wait_for_text(&client, "acme/infra").await;
    type_into(&client, "form.filters input[name=user]", "alice").await;
    click(&client, "form.filters button.go").await;
    let filtered = wait_for(&client, "the sessions of alice", |url, _| {
        url.query().is_some_and(|q| q.contains("user=alice"))
    })
    .await;
    assert!(filtered.contains("acme/app"), "{filtered}");
    assert!(
        !filtered.contains("acme/infra"),
        "bob's session stayed:\n{filtered}"
    );
    screenshot(&client, "sessions.png").await;

    // Alice's session: its page, who, which repository, its timeline.
    click(&client, "a[href^='/sessions/']").await;
    let page = wait_for(&client, "alice's session page", |url, text| {
        url.path().starts_with("/sessions/") && text.contains("alice")
    })
    .await;
    assert!(page.contains("acme/app"), "{page}");
    assert!(
        page.contains("api.openai.com"),
        "the model API destination:\n{page}"
    );
    let sizes = svg_sizes(&client).await;
    assert!(
        sizes.iter().any(|(w, h)| *w >= 200.0 && *h >= 50.0),
        "no timeline drawn: {sizes:?}"
    );
    screenshot(&client, "session.png").await;
    let detail: Value = fleet.api("/api/sessions/00000000000000b1").await;
    assert_eq!(detail["session"]["user_name"], "alice");
    client.close().await.expect("end the WebDriver session");
}
