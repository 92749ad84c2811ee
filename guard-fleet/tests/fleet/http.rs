//! The fleet server over HTTP on 127.0.0.1, as hosts and a security team use it:
//! each test runs on SQLite, and on PostgreSQL when `GUARD_FLEET_TEST_PG` is set.

use crate::support;

use std::io::Write as _;

use guard_common::otlp::attr;
use guard_fleet::store::read::{HostPage, Overview, SessionDetail, SessionPage};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::json;
use support::{CLUSTER_TOKEN, DASH_TOKEN, Db, Fleet, HOST_TOKEN, records};

const S1: &str = "00000000000000a1";
const S2: &str = "00000000000000a2";

on_both!(
    ingest_in_every_encoding_stores_each_record_once,
    credentials_decide_the_host_and_nothing_else,
    limits_and_malformed_bodies_get_their_status,
    dashboard_pages_escape_what_hosts_send,
    filters_sort_and_pages_select_sessions,
    overview_and_hosts_show_the_fleet,
    an_unavailable_database_asks_hosts_to_retry,
    the_overview_s_rollup_agrees_with_the_sessions,
    lists_csv_and_violations_for_the_siem,
    the_package_inventory_lists_each_version_once_with_its_first_sighting,
);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

async fn ingest_in_every_encoding_stores_each_record_once(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let report = records::report(S1, "alice", "https://github.com/acme/app", false);
    let uid = records::session_uid("build-01", S1);
    let pb = records::request(
        "build-01",
        vec![
            records::summary("build-01", 1, 1, &report, 1, records::T0_NS),
            records::exec_event("build-01", 1, 2, S1, records::T0_NS, &["git", "status"]),
        ],
    );
    assert_eq!(fleet.send_ok(&pb, HOST_TOKEN).await, 0);
    // The same batch again (a lost answer): 200, nothing new.
    assert_eq!(fleet.send_ok(&pb, HOST_TOKEN).await, 0);

    // OTLP JSON, answered in JSON.
    let json_req = records::request(
        "build-01",
        vec![records::exec_event(
            "build-01",
            1,
            3,
            S1,
            records::T0_NS + 1_000_000_000,
            &["cargo", "build"],
        )],
    );
    let (status, body) = fleet
        .post(
            serde_json::to_vec(&json_req).expect("json"),
            "application/json",
            None,
            Some(HOST_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    assert!(answer.get("partialSuccess").is_none(), "{answer}");

    // gzip, both encodings.
    let gz_req = records::request(
        "build-01",
        vec![records::exec_event(
            "build-01",
            1,
            4,
            S1,
            records::T0_NS + 2_000_000_000,
            &["make"],
        )],
    );
    let (status, _) = fleet
        .post(
            gzip(&gz_req.encode_to_vec()),
            "application/x-protobuf",
            Some("gzip"),
            Some(HOST_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = fleet
        .post(
            gzip(&serde_json::to_vec(&gz_req).expect("json")),
            "application/json; charset=utf-8",
            Some("gzip"),
            Some(HOST_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A batch with invalid records among good ones: 200 with them counted.
    let mut bad = records::exec_event("build-01", 1, 5, S1, records::T0_NS, &["ls"]);
    bad.attributes.retain(|a| a.key != attr::RECORD_ID);
    let mixed = records::request(
        "build-01",
        vec![
            bad,
            records::exec_event(
                "build-01",
                1,
                6,
                S1,
                records::T0_NS + 3_000_000_000,
                &["ls"],
            ),
        ],
    );
    let (status, body) = fleet.send(&mixed, Some(HOST_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let ps = ExportLogsServiceResponse::decode(body.as_slice())
        .expect("answer")
        .partial_success
        .expect("partial success");
    assert_eq!(ps.rejected_log_records, 1);
    assert!(
        ps.error_message.contains("guard.record.id"),
        "{}",
        ps.error_message
    );

    let d: SessionDetail = fleet.api(&format!("/api/sessions/{uid}")).await;
    let kinds: Vec<&str> = d.events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "git [git status]",
            "cargo [cargo build]",
            "make [make]",
            "ls [ls]"
        ],
        "each record once, in time order"
    );
    assert_eq!(d.report, report);
    assert_eq!(d.session.host, "build-01");
    // The 16-digit id finds it too.
    let by_id: SessionDetail = fleet.api(&format!("/api/sessions/{S1}")).await;
    assert_eq!(by_id.session.session_uid, uid);
    let (status, _, _) = fleet.page("/api/sessions/ffffffffffffffff", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = fleet
        .http
        .get(format!("{}/api/sessions/ffffffffffffffff", fleet.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    fleet.stop().await;
}

async fn credentials_decide_the_host_and_nothing_else(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let req = |host: &str, spool: u64| {
        records::request(
            host,
            vec![records::exec_event(
                host,
                spool,
                1,
                S1,
                records::T0_NS,
                &["id"],
            )],
        )
    };
    let status = |r: (StatusCode, Vec<u8>)| r.0;
    assert_eq!(
        status(fleet.send(&req("build-01", 1), None).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(fleet.send(&req("build-01", 1), Some("wrong")).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(fleet.send(&req("build-01", 1), Some(DASH_TOKEN)).await),
        StatusCode::UNAUTHORIZED,
        "a dashboard token cannot send"
    );
    // A host token with records of another host: 403, nothing stored.
    let (code, body) = fleet.send(&req("build-02", 2), Some(HOST_TOKEN)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let st = guard_fleet::ingest::decode::Status::decode(body.as_slice()).expect("a Status body");
    assert!(st.message.contains("build-02"), "{}", st.message);
    // A cluster token: each host under the cluster's name.
    fleet.send_ok(&req("node-7", 3), CLUSTER_TOKEN).await;
    fleet.send_ok(&req("build-01", 4), HOST_TOKEN).await;
    let hosts: HostPage = fleet.api("/api/hosts").await;
    let names: Vec<&str> = hosts.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(
        names,
        ["build-01", "eu/node-7"],
        "build-02 was never stored"
    );
    assert_eq!(hosts.hosts[1].host_name, "node-7");

    // The dashboard: a dashboard token only.
    let get = |token: Option<&'static str>| {
        let mut r = fleet.http.get(format!("{}/api/hosts", fleet.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.expect("get").status() }
    };
    assert_eq!(get(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some(HOST_TOKEN)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some(CLUSTER_TOKEN)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some(DASH_TOKEN)).await, StatusCode::OK);
    fleet.stop().await;
}

async fn limits_and_malformed_bodies_get_their_status(db: Db) {
    let fleet = Fleet::start(
        db,
        "[limits]\nmax_body = \"64KiB\"\nmax_decompressed = \"1MiB\"\n",
    )
    .await;
    let pb = "application/x-protobuf";
    let big = records::request(
        "build-01",
        (0..40)
            .map(|i| {
                records::exec_event(
                    "build-01",
                    1,
                    i,
                    S1,
                    records::T0_NS,
                    &["echo", &"x".repeat(4000)],
                )
            })
            .collect(),
    )
    .encode_to_vec();
    assert!(big.len() > 64 << 10);
    assert_eq!(
        fleet.post(big.clone(), pb, None, Some(HOST_TOKEN)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Compressed it fits; the gzip bomb does not.
    assert_eq!(
        fleet
            .post(gzip(&big), pb, Some("gzip"), Some(HOST_TOKEN))
            .await
            .0,
        StatusCode::OK
    );
    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    assert_eq!(
        fleet.post(bomb, pb, Some("gzip"), Some(HOST_TOKEN)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        fleet
            .post(b"{}".to_vec(), "text/plain", None, Some(HOST_TOKEN))
            .await
            .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        fleet
            .post(b"x".to_vec(), pb, Some("br"), Some(HOST_TOKEN))
            .await
            .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        fleet
            .post(vec![0xff, 0xff, 0xff], pb, None, Some(HOST_TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        fleet
            .post(b"not gzip".to_vec(), pb, Some("gzip"), Some(HOST_TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = fleet
        .post(
            b"{\"resourceLogs\": 7}".to_vec(),
            "application/json",
            None,
            Some(HOST_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let st: serde_json::Value = serde_json::from_slice(&body).expect("a JSON Status");
    assert_eq!(st["code"], 3);
    // Authentication comes first: an unknown token never gets its body read.
    assert_eq!(
        fleet.post(vec![0xff], pb, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    fleet.stop().await;
}

/// Strings a host controls that look like HTML or SQL.
const HOSTILE: &str = "<script>alert(1)</script>";
const SQLISH: &str = "'; DROP TABLE sessions; --";

async fn dashboard_pages_escape_what_hosts_send(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let mut report = records::report(
        S1,
        "<b>mallory</b>",
        &format!("https://x.example/{HOSTILE}"),
        true,
    );
    report.commands.items[0].argv = vec!["sh".into(), "-c".into(), HOSTILE.into(), SQLISH.into()];
    report.read.workspace.items[0].path = format!("/home/dev/{SQLISH}");
    report.violations.items[0].rule = "<img src=x onerror=alert(2)>".into();
    report.violations.items[0].what = format!("open /tmp/{HOSTILE}");
    let uid = records::session_uid("build-01", S1);
    let req = records::request(
        "build-01",
        vec![
            records::summary("build-01", 1, 1, &report, 1, records::T0_NS),
            records::event(
                "build-01",
                1,
                2,
                S1,
                records::T0_NS,
                json!({"kind": "open", "path": format!("/x/{HOSTILE}"), "access": ["read"]}),
            ),
        ],
    );
    fleet.send_ok(&req, HOST_TOKEN).await;

    // No viewer: the login form, which comes back here.
    let (status, headers, _) = fleet.page("/sessions?user=a", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login?next=%2Fsessions%3Fuser%3Da");
    let login = |token: &'static str| {
        fleet
            .http
            .post(format!("{}/login", fleet.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([("token", token), ("next", "/hosts")]).expect("form"),
            )
            .send()
    };
    let bad = login(HOST_TOKEN).await.expect("login");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let ok = login(DASH_TOKEN).await.expect("login");
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()["location"], "/hosts");
    let set_cookie = ok.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();

    let session_page = format!("/sessions/{uid}?host=build-01");
    for path in [
        "/",
        "/sessions",
        session_page.as_str(),
        "/hosts",
        "/sessions?rule=%3Cimg",
    ] {
        let (status, headers, body) = fleet.page(path, Some(&cookie)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(!body.contains("<script"), "{path} has a script tag");
        assert!(!body.contains("<img"), "{path} has an img tag");
        assert!(
            !body.contains("<b>mallory"),
            "{path} rendered a host's markup"
        );
        assert!(
            !body.contains("style=\""),
            "{path}: an inline style breaks the CSP"
        );
    }
    let (_, _, body) = fleet.page(&session_page, Some(&cookie)).await;
    // askama writes `<`, `>` and `'` as `&#60;`, `&#62;` and `&#39;`.
    assert!(
        body.contains("sh -c &#60;script&#62;alert(1)&#60;/script&#62;"),
        "argv shown, escaped"
    );
    assert!(
        body.contains("/home/dev/&#39;; DROP TABLE sessions; --"),
        "the path shown, escaped"
    );
    assert!(
        body.contains("&#60;img src=x onerror=alert(2)&#62;"),
        "the rule shown, escaped"
    );
    assert!(body.contains("<svg"), "the timeline");
    // The SQL-looking strings did nothing to the database.
    let page: SessionPage = fleet.api("/api/sessions").await;
    assert_eq!(page.total, 1);
    let (_, _, css) = fleet.page("/static/fleet.css", None).await;
    assert!(css.contains(".card"));
    // Logging out forgets the cookie.
    let out = fleet
        .http
        .post(format!("{}/logout", fleet.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
    fleet.stop().await;
}

#[expect(
    clippy::too_many_lines,
    reason = "five sessions stored once, then each filter, sort and page checked against them"
)]
async fn filters_sort_and_pages_select_sessions(db: Db) {
    let fleet = Fleet::start(db, "").await;
    // Five sessions: three hosts of the cluster, two users, two repositories.
    let specs = [
        (
            "node-1",
            "00000000000000b1",
            "alice",
            "https://github.com/acme/app",
            1_000,
            true,
        ),
        (
            "node-1",
            "00000000000000b2",
            "bob",
            "https://github.com/acme/app",
            5_000,
            false,
        ),
        (
            "node-2",
            "00000000000000b3",
            "alice",
            "https://gitlab.com/acme/api",
            3_000,
            true,
        ),
        (
            "node-3",
            "00000000000000b4",
            "carol",
            "https://gitlab.com/acme/api",
            2_000,
            true,
        ),
        (
            "node-3",
            "00000000000000b5",
            "alice",
            "https://github.com/acme/app",
            4_000,
            true,
        ),
    ];
    for (i, (host, session, user, repo, bytes, violations)) in specs.iter().enumerate() {
        let mut r = records::report(session, user, repo, true);
        r.bytes_out = *bytes;
        r.started = Some(format!("2026-11-{:02}T05:00:00Z", 16 + i));
        r.ended = Some(format!("2026-11-{:02}T05:10:00Z", 16 + i));
        if !violations {
            r.violations = Default::default();
        }
        let req = records::request(
            host,
            vec![records::summary(
                host,
                10 + i as u64,
                1,
                &r,
                1,
                records::T0_NS,
            )],
        );
        fleet.send_ok(&req, CLUSTER_TOKEN).await;
    }
    let users = |p: SessionPage| {
        p.sessions
            .iter()
            .map(|s| s.user_name.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    };
    let api = |q: &'static str| fleet.api::<SessionPage>(q);
    assert_eq!(
        users(api("/api/sessions").await),
        "alice,carol,alice,bob,alice",
        "newest first"
    );
    assert_eq!(
        users(api("/api/sessions?user=alice").await),
        "alice,alice,alice"
    );
    assert_eq!(
        users(api("/api/sessions?repo=GitLab.com").await),
        "carol,alice"
    );
    assert_eq!(
        users(api("/api/sessions?host=eu%2Fnode-1").await),
        "bob,alice"
    );
    assert_eq!(
        users(api("/api/sessions?rule=secrets.cloud&user=alice").await),
        "alice,alice,alice"
    );
    assert_eq!(
        users(api("/api/sessions?outcome=denied&host=eu%2Fnode-1").await),
        "alice"
    );
    assert_eq!(
        users(api("/api/sessions?from=2026-11-18&to=2026-11-19").await),
        "carol,alice"
    );
    assert_eq!(
        users(api("/api/sessions?sort=bytes&order=asc").await),
        "alice,carol,alice,alice,bob"
    );
    assert_eq!(
        users(api("/api/sessions?sort=violations&order=asc&per_page=1").await),
        "bob"
    );
    let page2 = api("/api/sessions?per_page=2&page=2").await;
    assert_eq!(
        (page2.total, page2.page, users(page2)),
        (5, 2, "alice,bob".to_owned())
    );
    let resp = fleet
        .http
        .get(format!("{}/api/sessions?sort=name", fleet.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: serde_json::Value = resp.json().await.expect("json");
    assert!(
        err["error"].as_str().unwrap_or("").starts_with("sort:"),
        "{err}"
    );

    // The page: a plain GET form, its filters kept in the pager's links.
    let cookie = format!("guard_fleet={DASH_TOKEN}");
    let (status, _, body) = fleet
        .page("/sessions?user=alice&per_page=2", Some(&cookie))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<form class=\"filters\" method=\"get\""));
    assert!(body.contains("page 1 of 2"), "{body}");
    // askama writes `&` as `&#38;`.
    assert!(
        body.contains("href=\"/sessions?user=alice&#38;page=2&#38;per_page=2\""),
        "{body}"
    );
    assert!(!body.contains(">bob<"));
    fleet.stop().await;
}

async fn overview_and_hosts_show_the_fleet(db: Db) {
    let fleet = Fleet::start(db, "[dashboard]\nstale_after = \"2s\"\n").await;
    // A host that reports, goes silent, and one that keeps reporting.
    let now_ns = u64::try_from(guard_fleet::store::now_ms()).expect("now") * 1_000_000;
    // The overview counts a rule on its violation's day: stamped now, so that the
    // last 7 days hold them whatever the day the test runs.
    let today = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let this_week = |report: &mut guard_common::report::Report| {
        for v in &mut report.violations.items {
            v.ts.clone_from(&today);
        }
    };
    let mut r = records::report(S2, "dave", "https://github.com/acme/old", true);
    r.started = None;
    this_week(&mut r);
    let old = records::request(
        "silent",
        vec![records::summary("silent", 1, 1, &r, 1, now_ns)],
    );
    fleet.send_ok(&old, CLUSTER_TOKEN).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let mut running = records::report(S1, "alice", "https://github.com/acme/app", false);
    running.started = None;
    this_week(&mut running);
    let req = records::request(
        "busy",
        vec![records::summary("busy", 2, 1, &running, 1, now_ns)],
    );
    fleet.send_ok(&req, CLUSTER_TOKEN).await;

    let o: Overview = fleet.api("/api/overview?days=7").await;
    assert_eq!(o.per_day.len(), 7);
    assert_eq!(o.totals.sessions, 2);
    assert_eq!(o.totals.developers, 2);
    assert_eq!(o.totals.model_bytes_out, 8_000_000);
    assert_eq!(o.totals.secrets_read, 2);
    assert_eq!(o.running_count, 1);
    assert_eq!(o.running[0].user_name.as_deref(), Some("alice"));
    let rules: Vec<(&str, i64)> = o
        .violations_by_rule
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(rules, [("network.egress", 2), ("secrets.cloud", 2)]);
    let outcomes: Vec<&str> = o
        .violations_by_outcome
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(outcomes, ["alerted", "denied"]);
    assert_eq!(o.repositories.len(), 2);
    assert_eq!(o.hosts.total, 2);
    assert_eq!(o.hosts.stale_count, 1);
    assert_eq!(o.hosts.stale[0].host, "eu/silent");
    assert_eq!(o.agents[0].agent, "codex");

    let h: HostPage = fleet.api("/api/hosts").await;
    assert_eq!(h.hosts[0].host, "eu/silent", "silent hosts first");
    assert!(h.hosts[0].stale && !h.hosts[1].stale);
    assert_eq!(
        h.hosts[1].tiers.get("exec_deny").map(String::as_str),
        Some("bpf_lsm")
    );
    assert_eq!(h.hosts[1].guard_version.as_deref(), Some("0.1.0"));
    assert_eq!(h.hosts[1].os_version.as_deref(), Some("6.12.0-guard"));
    assert_eq!((h.hosts[1].sessions, h.hosts[1].running), (1, 1));
    let stale_only: HostPage = fleet.api("/api/hosts?stale=1").await;
    assert_eq!(stale_only.hosts.len(), 1);

    let cookie = format!("guard_fleet={DASH_TOKEN}");
    let (status, _, body) = fleet.page("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.matches("<svg class=\"chart\"").count(),
        3,
        "three charts (rules are a table: one hit shows beside six hundred)"
    );
    assert!(
        body.contains("class=\"stale\""),
        "the silent host is highlighted"
    );
    assert!(body.contains("eu/silent"));
    // The test hosts report 3 of the 8 enforcement actions: the rest is missing.
    let missing =
        "missing: exec_kill, file_read_kill, file_write_kill, file_write_deny, self_protection";
    assert!(
        body.contains(missing),
        "the hosts' missing enforcement tiers"
    );
    let (_, _, hosts) = fleet.page("/hosts", Some(&cookie)).await;
    assert!(hosts.contains("silent</span>") || hosts.contains("badge stale"));
    assert!(hosts.contains(missing));
    fleet.stop().await;
}

async fn an_unavailable_database_asks_hosts_to_retry(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let req = records::request(
        "build-01",
        vec![records::exec_event(
            "build-01",
            1,
            1,
            S1,
            records::T0_NS,
            &["id"],
        )],
    );
    let (status, _, _) = fleet.page("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    // Every connection gone, as when the database is down.
    fleet.app().store.close().await;
    let resp = fleet
        .http
        .post(format!("{}/v1/logs", fleet.base))
        .header("content-type", "application/x-protobuf")
        .bearer_auth(HOST_TOKEN)
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "retryable, per OTLP/HTTP"
    );
    assert_eq!(resp.headers()["retry-after"], "5");
    let st =
        guard_fleet::ingest::decode::Status::decode(resp.bytes().await.expect("body").as_ref())
            .expect("Status");
    assert_eq!(st.code, 14, "UNAVAILABLE");
    let (status, _, _) = fleet.page("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = fleet.page("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "alive, not ready");
    let resp = fleet
        .http
        .get(format!("{}/api/overview", fleet.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    fleet.stop().await;
}

/// The overview reads the rollup (session_days); here it must say what a scan of
/// the sessions and violations it stands for says, after new sessions, a newer
/// summary that changes the developer, repository and numbers, a late retry that
/// changes nothing, and retention deleting a session; and the rows kept step by
/// step must be the rows the migration would build from the tables now.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario in order: after each change the rollup is checked against a scan"
)]
async fn the_overview_s_rollup_agrees_with_the_sessions(db: Db) {
    use guard_fleet::store::read::{Agent, Count, Day, Repository, Totals};
    use sqlx::{AssertSqlSafe, Executor as _, Row as _};

    let fleet = Fleet::start(db, "").await;
    let store = &fleet.app().store;
    let at = |r: &mut guard_common::report::Report, days_ago: i64| {
        let t = records::T0_MS - days_ago * 86_400_000;
        r.started = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    };
    // One session of another host, two days earlier, stored first: retention
    // will take it.
    let mut old = records::report(S2, "dave", "https://github.com/acme/old", true);
    at(&mut old, 2);
    old.agent = Some("claude".into());
    fleet
        .send_ok(
            &records::request(
                "ci-07",
                vec![records::summary("ci-07", 9, 1, &old, 1, records::T0_NS)],
            ),
            CLUSTER_TOKEN,
        )
        .await;
    let stored_old = guard_fleet::store::now_ms();
    while guard_fleet::store::now_ms() <= stored_old {
        tokio::task::yield_now().await;
    }
    let a1 = records::report(S1, "alice", "https://github.com/acme/app", false);
    let mut b = records::report(S2, "bob", "https://github.com/acme/app", true);
    b.violations = Default::default();
    b.read.secrets = Default::default();
    let mut nobody = records::report("00000000000000a3", "x", "https://github.com/acme/web", true);
    nobody.user = None;
    nobody.repository = None;
    at(&mut nobody, 1);
    let first = records::request(
        "build-01",
        vec![
            records::summary("build-01", 1, 1, &a1, 1, records::T0_NS),
            records::summary("build-01", 1, 2, &b, 1, records::T0_NS),
            records::summary("build-01", 1, 3, &nobody, 1, records::T0_NS),
        ],
    );
    fleet.send_ok(&first, HOST_TOKEN).await;
    // S1's next summary: another developer and repository, more bytes, one
    // violation fewer; then the first one again, late, which changes nothing.
    let mut a2 = records::report(S1, "carol", "https://github.com/acme/infra", true);
    a2.bytes_out = 7_777;
    a2.violations.items.truncate(1);
    fleet
        .send_ok(
            &records::request(
                "build-01",
                vec![records::summary(
                    "build-01",
                    1,
                    4,
                    &a2,
                    2,
                    records::T0_NS + 60_000_000_000,
                )],
            ),
            HOST_TOKEN,
        )
        .await;
    fleet.send_ok(&first, HOST_TOKEN).await;

    let pool = sqlx::AnyPool::connect(&fleet.setup.db_url)
        .await
        .expect("connect");
    let now = records::T0_MS + 3_600_000;
    let check = |what: &'static str| {
        let pool = pool.clone();
        async move {
            let o = store.overview(7, now, 0).await.expect("overview");
            let first_ms = o.since_ms;
            let q = |sql: String| {
                let pool = pool.clone();
                async move { pool.fetch_all(AssertSqlSafe(sql)).await.expect("the scan") }
            };
            let int = |r: &sqlx::any::AnyRow, i: usize| {
                r.try_get::<Option<i64>, _>(i).expect("int").unwrap_or(0)
            };
            let t = &q(format!(
                "SELECT COUNT(*), COUNT(DISTINCT user_name), COUNT(DISTINCT host), \
                 COUNT(DISTINCT repo_url), CAST(SUM(secrets_read) AS BIGINT), \
                 CAST(SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(violations) AS BIGINT), CAST(SUM(bytes_out) AS BIGINT), \
                 CAST(SUM(model_bytes_out) AS BIGINT) FROM sessions WHERE started_ms >= {first_ms}"
            ))
            .await[0];
            let totals = Totals {
                sessions: int(t, 0),
                developers: int(t, 1),
                hosts_with_sessions: int(t, 2),
                repositories: int(t, 3),
                secrets_read: int(t, 4),
                sessions_reading_secrets: int(t, 5),
                violations: int(t, 6),
                bytes_out: int(t, 7),
                model_bytes_out: int(t, 8),
            };
            assert_eq!(o.totals, totals, "{what}: totals");
            let days: Vec<Day> = q(format!(
                "SELECT started_ms / 86400000, COUNT(*), COUNT(DISTINCT user_name), \
                 CAST(SUM(model_bytes_out) AS BIGINT), \
                 CAST(SUM(bytes_out - model_bytes_out) AS BIGINT), \
                 CAST(SUM(violations) AS BIGINT) FROM sessions WHERE started_ms >= {first_ms} \
                 GROUP BY started_ms / 86400000 ORDER BY 1"
            ))
            .await
            .iter()
            .map(|r| Day {
                day_ms: int(r, 0) * 86_400_000,
                sessions: int(r, 1),
                developers: int(r, 2),
                model_bytes_out: int(r, 3),
                // As the overview shows it: a report's model bytes can exceed its
                // total (bytes_out counts what it listed).
                other_bytes_out: int(r, 4).max(0),
                violations: int(r, 5),
            })
            .collect();
            let shown: Vec<Day> = o
                .per_day
                .iter()
                .filter(|d| d.sessions > 0)
                .cloned()
                .collect();
            assert_eq!(shown, days, "{what}: per day");
            let repos: Vec<Repository> = q(format!(
                "SELECT repo_url, COUNT(*), COUNT(DISTINCT user_name), \
                 CAST(SUM(model_bytes_out) AS BIGINT), MAX(started_ms), \
                 CAST(SUM(bytes_out - model_bytes_out) AS BIGINT) FROM sessions \
                 WHERE repo_url IS NOT NULL AND started_ms >= {first_ms} \
                 GROUP BY repo_url ORDER BY 2 DESC, 1"
            ))
            .await
            .iter()
            .map(|r| Repository {
                url: r.try_get(0).expect("url"),
                sessions: int(r, 1),
                developers: int(r, 2),
                model_bytes_out: int(r, 3),
                last_ms: int(r, 4),
                other_bytes_out: int(r, 5).max(0),
            })
            .collect();
            // last_ms: the latest start the rollup's row has seen, which is the
            // scan's while no session has left the row.
            assert_eq!(
                o.repositories
                    .iter()
                    .map(|r| (
                        &r.url,
                        r.sessions,
                        r.developers,
                        r.model_bytes_out,
                        r.other_bytes_out
                    ))
                    .collect::<Vec<_>>(),
                repos
                    .iter()
                    .map(|r| (
                        &r.url,
                        r.sessions,
                        r.developers,
                        r.model_bytes_out,
                        r.other_bytes_out
                    ))
                    .collect::<Vec<_>>(),
                "{what}: repositories"
            );
            let agents: Vec<Agent> = q(format!(
                "SELECT COALESCE(agent, '?'), COUNT(*), COUNT(DISTINCT user_name), \
                 MIN(started_ms), MAX(started_ms), CAST(SUM(duration_ms) AS BIGINT) \
                 FROM sessions WHERE started_ms >= {first_ms} \
                 GROUP BY COALESCE(agent, '?') ORDER BY 2 DESC, 1"
            ))
            .await
            .iter()
            .map(|r| Agent {
                agent: r.try_get(0).expect("agent"),
                sessions: int(r, 1),
                developers: int(r, 2),
                first_ms: int(r, 3),
                last_ms: int(r, 4),
                duration_ms: int(r, 5),
            })
            .collect();
            assert_eq!(
                o.agents
                    .iter()
                    .map(|a| (&a.agent, a.sessions, a.developers, a.duration_ms))
                    .collect::<Vec<_>>(),
                agents
                    .iter()
                    .map(|a| (&a.agent, a.sessions, a.developers, a.duration_ms))
                    .collect::<Vec<_>>(),
                "{what}: agents"
            );
            for (column, shown) in [
                ("rule", &o.violations_by_rule),
                ("outcome", &o.violations_by_outcome),
            ] {
                let counts: Vec<Count> = q(format!(
                    "SELECT {column}, COUNT(*) FROM violations WHERE ts_ms >= {first_ms} \
                     GROUP BY {column} ORDER BY 2 DESC, 1"
                ))
                .await
                .iter()
                .map(|r| Count {
                    key: r.try_get(0).expect("key"),
                    count: int(r, 1),
                })
                .collect();
                assert_eq!(shown, &counts, "{what}: violations by {column}");
            }
            o
        }
    };
    let o = check("stored").await;
    assert_eq!(
        (
            o.totals.sessions,
            o.totals.developers,
            o.totals.hosts_with_sessions
        ),
        (4, 3, 2),
        "carol, bob, dave and a session without a developer on two hosts"
    );
    assert!(o.agents.iter().any(|a| a.agent == "claude"));

    // Retention: sessions not updated since `old` was stored.
    let kept = guard_fleet::config::Retention {
        events_days: 30,
        events_max_rows: 1_000_000,
        sessions_days: 1,
        interval: std::time::Duration::from_secs(60),
    };
    let pruned = store
        .prune(&kept, stored_old + 1 + 86_400_000)
        .await
        .expect("prune");
    assert_eq!(pruned.sessions, 1);
    let o = check("after retention").await;
    assert_eq!(o.totals.sessions, 3);
    // The unfiltered list's total comes from the rollup too.
    let page: SessionPage = fleet.api("/api/sessions").await;
    assert_eq!((page.total, page.sessions.len()), (3, 3));
    assert!(o.agents.iter().all(|a| a.agent != "claude"));

    // The rows kept step by step are the rows the migration builds from the
    // tables as they are now (first_ms and last_ms aside: they are not taken back).
    let rows =
        |pool: sqlx::AnyPool| async move {
            pool.fetch_all(
            "SELECT dim, day, name, user_name, sessions, sessions_reading_secrets, secrets_read, \
             violations, bytes_out, model_bytes_out, duration_ms FROM session_days \
             WHERE sessions <> 0 OR secrets_read <> 0 OR violations <> 0 OR bytes_out <> 0 \
             OR model_bytes_out <> 0 OR duration_ms <> 0 OR sessions_reading_secrets <> 0 \
             ORDER BY dim, day, name, user_name",
        )
        .await
        .expect("rollup")
        .iter()
        .map(|r| {
            let text = |i| r.try_get::<String, _>(i).expect("text");
            let nums: Vec<i64> = (4..11).map(|i| r.try_get(i).expect("number")).collect();
            (text(0), r.try_get::<i64, _>(1).expect("day"), text(2), text(3), nums)
        })
        .collect::<Vec<_>>()
        };
    let kept_rows = rows(pool.clone()).await;
    assert!(kept_rows.len() >= 10, "{kept_rows:?}");
    let migration = include_str!("../../migrations/common/0002_dashboard_at_size.sql");
    let backfill = &migration[migration
        .find("-- What the database already holds.")
        .expect("the backfill")..];
    // The destinations, as schema 4 reads them from the summaries.
    let destinations = match fleet.app().store.backend() {
        guard_fleet::config::Backend::Postgres => {
            include_str!("../../migrations/postgres/0004_destinations.sql")
        }
        guard_fleet::config::Backend::Sqlite => {
            include_str!("../../migrations/sqlite/0004_destinations.sql")
        }
    };
    let dest_rows = |pool: sqlx::AnyPool| async move {
        pool.fetch_all(
            "SELECT host, session_uid, dest, class, started_ms, user_name, secrets_read, \
             violations, bytes_out, connects FROM session_destinations \
             ORDER BY host, session_uid, dest",
        )
        .await
        .expect("destinations")
        .iter()
        .map(|r| {
            let text = |i| r.try_get::<String, _>(i).expect("text");
            let nums: Vec<i64> = (6..10).map(|i| r.try_get(i).expect("number")).collect();
            (
                text(0),
                text(1),
                text(2),
                text(3),
                r.try_get::<i64, _>(4).expect("start"),
                text(5),
                nums,
            )
        })
        .collect::<Vec<_>>()
    };
    let kept_dests = dest_rows(pool.clone()).await;
    assert!(kept_dests.len() >= 4, "{kept_dests:?}");
    pool.execute("DELETE FROM session_days")
        .await
        .expect("empty");
    pool.execute("DELETE FROM session_destinations")
        .await
        .expect("empty");
    pool.execute(AssertSqlSafe(backfill.to_owned()))
        .await
        .expect("backfill");
    pool.execute(AssertSqlSafe(destinations.to_owned()))
        .await
        .expect("destinations backfill");
    assert_eq!(dest_rows(pool.clone()).await, kept_dests);
    assert_eq!(rows(pool.clone()).await, kept_rows);
    pool.close().await;
    fleet.stop().await;
}

/// The lists a security team hands on: every list as CSV, whole, and the stored
/// violations as OCSF Detection Findings, page after page without a repeat.
async fn lists_csv_and_violations_for_the_siem(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let now = chrono::Utc::now();
    let observed = now.timestamp_nanos_opt().expect("in range") as u64;
    for (i, (user, host)) in [("alice", "laptop"), ("bob", "ci-runner")]
        .iter()
        .enumerate()
    {
        let id = format!("00000000000000c{i}");
        let mut r = records::report(&id, user, "https://github.com/acme/app", true);
        r.started = Some((now - chrono::Duration::minutes(30 + i as i64)).to_rfc3339());
        for (n, v) in r.violations.items.iter_mut().enumerate() {
            v.ts = (now - chrono::Duration::minutes(20 - n as i64 - 5 * i as i64)).to_rfc3339();
        }
        let req = records::request(
            host,
            vec![records::summary(host, 1 + i as u64, 1, &r, 1, observed)],
        );
        assert_eq!(fleet.send_ok(&req, CLUSTER_TOKEN).await, 0);
    }

    // The developers as CSV: a header and each developer, with their bytes.
    let resp = fleet
        .http
        .get(format!("{}/developers?days=7&format=csv", fleet.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let csv = resp.text().await.expect("body");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("name,from,days,sessions,previous_period,developers"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("alice,") && l.contains(",4000000,")),
        "{csv}"
    );
    // The sessions as CSV, filtered.
    let resp = fleet
        .http
        .get(format!("{}/sessions?user=bob&format=csv", fleet.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .expect("get");
    let csv = resp.text().await.expect("body");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.contains(",eu/ci-runner,") && !csv.contains("alice"),
        "{csv}"
    );
    // The destinations list, and its totals.
    let d: serde_json::Value = fleet.api("/api/destinations?days=7&sort=bytes").await;
    assert_eq!(d["total"], 2, "{d}");
    assert_eq!(d["totals"]["bytes_out"], 10_000_000, "{d}");
    assert_eq!(d["rows"][0]["name"], "model/api.openai.com", "{d}");
    assert_eq!(d["rows"][0]["sessions"], 2, "{d}");
    // The sessions that sent there, with their totals.
    let to: SessionPage = fleet.api("/api/sessions?dest=github.com&from=1d").await;
    assert_eq!((to.total, to.totals.developers), (2, 2));
    assert_eq!(
        to.totals.bytes_out, 10_000_000,
        "the sessions' bytes, all of them"
    );
    let none: SessionPage = fleet.api("/api/sessions?dest=example.invalid").await;
    assert_eq!(none.total, 0);

    // The violations, as OCSF, three at a time.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..3 {
        let path = match &after {
            Some(a) => format!(
                "/api/violations?limit=3&after={}",
                guard_fleet::web::fmt::url(a)
            ),
            None => "/api/violations?limit=3&since=1d".to_owned(),
        };
        let page: serde_json::Value = fleet.api(&path).await;
        for r in page["records"].as_array().expect("records") {
            assert_eq!(r["class_uid"], 2004, "{r}");
            assert_eq!(r["metadata"]["version"], "1.7.0");
            assert!(r["finding_info"]["analytic"]["name"].is_string(), "{r}");
            seen.push(r["finding_info"]["uid"].as_str().expect("uid").to_owned());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (4, 4),
        "each violation once: {seen:?}"
    );
    let stored: serde_json::Value = fleet.api("/api/violations?format=json").await;
    assert_eq!(stored["records"].as_array().map(Vec::len), Some(4));
    assert!(stored["records"][0]["rule"].is_string());
    let resp = fleet
        .http
        .get(format!("{}/api/violations?after=nonsense", fleet.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    fleet.stop().await;
}

/// A report of `session` on `repo` started at `started` that installed `packages`
/// (ecosystem, name, version), with an install script of `scripted`.
fn installing(
    session: &str,
    repo: &str,
    started: &str,
    packages: &[(&str, &str, &str)],
    scripted: Option<&str>,
) -> guard_common::report::Report {
    let mut r = records::report(session, "alice", repo, true);
    r.started = Some(started.to_owned());
    r.ended = None;
    for (ecosystem, name, version) in packages {
        r.packages.push(guard_common::report::Package {
            ecosystem: (*ecosystem).to_owned(),
            name: (*name).to_owned(),
            version: Some((*version).to_owned()),
            manifest: format!("/w/node_modules/{name}/package.json"),
            ..Default::default()
        });
    }
    if let Some(package) = scripted {
        r.scripts.push(guard_common::report::Script {
            package: package.to_owned(),
            install: true,
            command: "sh -c node postinstall.js".to_owned(),
            ..Default::default()
        });
    }
    r
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario in order: each summary sent changes what the next checks read"
)]
async fn the_package_inventory_lists_each_version_once_with_its_first_sighting(db: Db) {
    let fleet = Fleet::start(db, "").await;
    let send = |host: &'static str, seq: u64, r: guard_common::report::Report, n: i64| {
        let fleet = &fleet;
        async move {
            let req = records::request(
                host,
                vec![records::summary(host, seq, 1, &r, n, records::T0_NS)],
            );
            fleet.send_ok(&req, CLUSTER_TOKEN).await;
        }
    };
    let evil = ("npm", "evil-pkg", "1.0.0");
    let good = ("pypi", "good", "2.1");
    // Host a's session installs both (evil's install script ran); host b's installs
    // evil twice over (two manifests of one version).
    send(
        "a",
        1,
        installing(
            S1,
            "https://x/app",
            "2026-11-21T05:00:00Z",
            &[evil, good],
            Some("evil-pkg"),
        ),
        1,
    )
    .await;
    // Host b's agent declared its calls: one, and a process that outlived it.
    let mut declared = installing(
        S2,
        "https://x/web",
        "2026-11-21T06:00:00Z",
        &[evil, evil],
        None,
    );
    declared.calls.push(guard_common::report::Call {
        id: "call_7".to_owned(),
        tool: "Bash".to_owned(),
        command: Some("npm install evil-pkg".to_owned()),
        started: "2026-11-21T06:00:01Z".to_owned(),
        ended: Some("2026-11-21T06:00:09Z".to_owned()),
        ..Default::default()
    });
    declared.undeclared.push(guard_common::report::Undeclared {
        ts: "2026-11-21T06:00:10Z".to_owned(),
        pid: 4242,
        command: "sleep 60".to_owned(),
        why: "outlived_call".to_owned(),
        call: Some("call_7".to_owned()),
        did: vec!["curl http://x".to_owned()],
    });
    send("b", 1, declared, 1).await;
    #[derive(serde::Deserialize)]
    struct Row {
        ecosystem: String,
        name: String,
        version: String,
        first_seen_ms: i64,
        first_host: String,
        sessions: i64,
        repositories: Vec<String>,
        install_script: bool,
    }
    // One line per version: what a reader of the inventory checks.
    let rows = |v: &[Row]| -> Vec<String> {
        let mut out: Vec<String> = v
            .iter()
            .map(|r| {
                format!(
                    "{}/{} {} first at {} on {}, {} sessions, repos {:?}, script {}",
                    r.ecosystem,
                    r.name,
                    r.version,
                    r.first_seen_ms,
                    r.first_host,
                    r.sessions,
                    r.repositories,
                    r.install_script
                )
            })
            .collect();
        out.sort();
        out
    };
    let t = |rfc: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc)
            .expect("time")
            .timestamp_millis()
    };
    let (five, four) = (t("2026-11-21T05:00:00Z"), t("2026-11-21T04:00:00Z"));
    let inv: Vec<Row> = fleet.api("/api/packages").await;
    assert_eq!(
        rows(&inv),
        [
            format!(
                "npm/evil-pkg 1.0.0 first at {five} on eu/a, 2 sessions, \
                 repos [\"https://x/app\", \"https://x/web\"], script true"
            ),
            format!(
                "pypi/good 2.1 first at {five} on eu/a, 1 sessions, repos [\"https://x/app\"], script false"
            ),
        ]
    );

    // Host a's next summary of the same session no longer lists evil (its summary
    // replaces the last): one session has it, the organisation first saw it still
    // at a. A session that started earlier on host c makes c good's first sighting.
    send(
        "a",
        2,
        installing(S1, "https://x/app", "2026-11-21T05:00:00Z", &[good], None),
        2,
    )
    .await;
    send(
        "c",
        1,
        installing(S1, "https://x/lib", "2026-11-21T04:00:00Z", &[good], None),
        1,
    )
    .await;
    let inv: Vec<Row> = fleet.api("/api/packages").await;
    assert_eq!(
        rows(&inv),
        [
            format!(
                "npm/evil-pkg 1.0.0 first at {five} on eu/a, 1 sessions, repos [\"https://x/web\"], script false"
            ),
            format!(
                "pypi/good 2.1 first at {four} on eu/c, 2 sessions, \
                 repos [\"https://x/app\", \"https://x/lib\"], script false"
            ),
        ]
    );
    assert_eq!(inv[0].name, "evil-pkg", "newest to the organisation first");

    // What hosts judge `[packages] first_seen` against: the names (each once), with
    // a host's credential only, from a cursor the answer gives.
    let names = |since: i64, token: Option<&'static str>| {
        let mut r = fleet
            .http
            .get(format!("{}/v1/packages?since={since}", fleet.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.expect("get /v1/packages");
            let status = r.status();
            (status, r.text().await.expect("body"))
        }
    };
    let (status, body) = names(0, Some(HOST_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page: guard_policy::packages::NamesPage = serde_json::from_str(&body).expect("a page");
    let mut got = page.names.clone();
    got.sort();
    assert_eq!(
        got,
        [
            ("npm".to_owned(), "evil-pkg".to_owned()),
            ("pypi".to_owned(), "good".to_owned())
        ]
    );
    assert!(!page.more, "{body}");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - 120_000..now).contains(&page.until),
        "the cursor is the fleet's clock less a minute: {body}"
    );
    // From the cursor: what was recorded in the last minute (here, all of it) comes
    // again; from the future, nothing.
    let (_, body) = names(now + 3_600_000, Some(CLUSTER_TOKEN)).await;
    let later: guard_policy::packages::NamesPage = serde_json::from_str(&body).expect("a page");
    assert!(later.names.is_empty(), "{body}");
    assert_eq!(later.until, now + 3_600_000, "the cursor never goes back");
    assert_eq!(names(0, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(names(0, Some(DASH_TOKEN)).await.0, StatusCode::UNAUTHORIZED);

    let cookie = format!("guard_fleet={DASH_TOKEN}");
    let (status, _, body) = fleet.page("/packages", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    for needle in ["evil-pkg", "1.0.0", "pypi", "https://x/lib", ">eu/c</a>"] {
        assert!(
            body.contains(needle),
            "{needle:?} not in the packages page:\n{body}"
        );
    }
    // Host b's session page lists what it installed.
    let href = format!("/sessions/{S2}?host=eu/b");
    let (status, _, body) = fleet.page(&href, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Packages installed (2)"), "{body}");
    // And what its agent declared against what ran.
    for needle in [
        "Tool calls the agent declared (1)",
        "npm install evil-pkg",
        "outlived its call</span> call_7",
        "curl http://x",
    ] {
        assert!(
            body.contains(needle),
            "{needle:?} not in the session page:\n{body}"
        );
    }
    // The story tells the call, then the process it left behind, in that order.
    let story = body
        .split("<h2>The session, in order</h2>")
        .nth(1)
        .and_then(|s| s.split("</ol>").next())
        .unwrap_or_else(|| panic!("no story on the session page:\n{body}"));
    let at = |needle: &str| {
        story
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the story:\n{story}"))
    };
    let call = at(
        "06:00:01.000</span>\n      <strong>Call</strong> <span class=\"code\">Bash</span>: \
         <span class=\"code\">npm install evil-pkg</span>",
    );
    let left = at(
        "06:00:10.000</span>\n      <strong>Undeclared</strong> <span class=\"code\">sleep 60</span> \
         (pid 4242): worked on after its call ended (call <span class=\"code\">call_7</span>)",
    );
    assert!(call < left, "{story}");
    // With the timeline drawn above it: the call as a bar, named by its command.
    let panel = body
        .split("<h2>The session, in order</h2>")
        .nth(1)
        .and_then(|s| s.split("<ol class=\"story\">").next())
        .unwrap_or_default();
    assert!(
        panel.contains("<svg class=\"timeline\"") && panel.contains("npm install evil-pkg"),
        "no timeline over the story:\n{panel}"
    );
    fleet.stop().await;
}
