//! What the integration tests share: a fleet server on 127.0.0.1 over SQLite in a
//! temporary directory or a real PostgreSQL ([`pg`]), requests as hosts make them
//! ([`records`]), and the built binary as a separate process ([`process`]).

pub(crate) mod pg;
pub(crate) mod pki;
pub(crate) mod process;
pub(crate) mod records;

use std::{io::Write as _, path::PathBuf, time::Duration};

use guard_fleet::{
    auth::{Scope, tokens},
    config::{Backend, Config},
    server::{self, Running},
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;
use reqwest::StatusCode;

/// A host token named `build-01`.
pub(crate) const HOST_TOKEN: &str = "test-host-token-build-01";
/// A cluster token named `eu`.
pub(crate) const CLUSTER_TOKEN: &str = "test-cluster-token-eu";
/// A dashboard token named `sec-team`.
pub(crate) const DASH_TOKEN: &str = "test-dashboard-token-sec";
/// An admin token named `sec-lead`: the dashboard, and policies.
pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-sec-lead";

/// Which database a test runs on.
pub(crate) enum Db {
    Sqlite,
    Postgres(pg::TestPg),
}

/// Runs each named `async fn(Db)` of the test file twice: on SQLite, and on
/// PostgreSQL when `GUARD_FLEET_TEST_PG` is set (else it says it skipped).
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::support::pg::database().await {
                        Some(pg) => super::$name($crate::support::Db::Postgres(pg)).await,
                        None => $crate::support::record_skip(
                            concat!("postgres::", stringify!($name)),
                            &format!(
                                "no PostgreSQL: set {}=initdb (or postgres://…)",
                                $crate::support::pg::ENV
                            ),
                        ),
                    }
                }
            )*
        }
    };
}

/// Says that `test` was skipped and why, as the root end-to-end tests do
/// (tests/src/lib.rs): `SKIPPED: test: reason` on the stderr descriptor itself (the
/// harness captures `eprintln!`), and a line `{"test", "reason"}` in
/// `$GUARD_E2E_SKIP_LOG` when set, so that `cargo xtask test` counts a skip, not a
/// pass.
pub(crate) fn record_skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
    if let Some(path) = std::env::var_os("GUARD_E2E_SKIP_LOG") {
        let line = serde_json::json!({ "test": test, "reason": reason }).to_string() + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot record the skip of {test}: {e}"));
    }
}

/// reqwest is built without a default crypto provider (as guard-fleet is).
pub(crate) fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The tokens file of the tests.
pub(crate) fn tokens_file() -> String {
    [
        tokens::entry("build-01", Scope::Host, HOST_TOKEN),
        tokens::entry("eu", Scope::Cluster, CLUSTER_TOKEN),
        tokens::entry("sec-team", Scope::Dashboard, DASH_TOKEN),
        tokens::entry("sec-lead", Scope::Admin, ADMIN_TOKEN),
    ]
    .join("\n")
}

/// A fleet server's directory and database, before or without a server.
pub(crate) struct Setup {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub pg: Option<pg::TestPg>,
}

impl Setup {
    pub(crate) fn new(db: Db) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tokens.toml"), tokens_file()).expect("tokens");
        let (db_url, pg) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("fleet.db").display()),
                None,
            ),
            Db::Postgres(pg) => (pg.url.clone(), Some(pg)),
        };
        Self { dir, db_url, pg }
    }

    /// A configuration file for a server on 127.0.0.1 (`port` 0: any), with
    /// `extra` TOML appended.
    pub(crate) fn config(&self, port: u16, extra: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("fleet-{port}-{}.toml", extra.len()));
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{dir}\"\ntokens_file = \"{dir}/tokens.toml\"\n\
             [database]\nurl = \"{url}\"\nmax_connections = 8\n{extra}\n",
            dir = self.dir.path().display(),
            url = self.db_url,
        );
        let mut f = std::fs::File::create(&path).expect("config");
        f.write_all(text.as_bytes()).expect("config");
        path
    }
}

/// A fleet server in this process.
pub(crate) struct Fleet {
    pub setup: Setup,
    pub running: Option<Running>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub http: reqwest::Client,
}

impl Fleet {
    /// Starts a server on `db` with `extra` configuration.
    pub(crate) async fn start(db: Db, extra: &str) -> Self {
        init();
        let setup = Setup::new(db);
        let path = setup.config(0, extra);
        let config = Config::load(Some(&path)).expect("config");
        let running = server::start(config).await.expect("start");
        let expected = if setup.pg.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        assert_eq!(
            running.app.store.backend(),
            expected,
            "the database the test asked for"
        );
        let base = format!("http://{}", running.addr);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Self {
            setup,
            running: Some(running),
            base,
            http,
        }
    }

    pub(crate) fn app(&self) -> &server::App {
        &self.running.as_ref().expect("running").app
    }

    /// POSTs `req` as protobuf with `token`.
    pub(crate) async fn send(
        &self,
        req: &ExportLogsServiceRequest,
        token: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        self.post(req.encode_to_vec(), "application/x-protobuf", None, token)
            .await
    }

    /// POSTs `req` as protobuf with `token`, expecting 200; the records rejected.
    pub(crate) async fn send_ok(&self, req: &ExportLogsServiceRequest, token: &str) -> i64 {
        let (status, body) = self.send(req, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        ExportLogsServiceResponse::decode(body.as_slice())
            .expect("an ExportLogsServiceResponse")
            .partial_success
            .map_or(0, |p| p.rejected_log_records)
    }

    /// POSTs raw bytes.
    pub(crate) async fn post(
        &self,
        body: Vec<u8>,
        content_type: &str,
        encoding: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let mut r = self
            .http
            .post(format!("{}/v1/logs", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.expect("send");
        let status = resp.status();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    /// `method` on `path` with `token` and a body (raw, or JSON): the status and
    /// the answer's JSON (null when it is none).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<reqwest::Body>,
        json_body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        if let Some(j) = json_body {
            r = r.json(&j);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// GETs an API path with the dashboard token, expecting 200 and JSON.
    pub(crate) async fn api<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(DASH_TOKEN)
            .send()
            .await
            .expect("get");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// GETs a path with `cookie`; status, headers and body.
    pub(crate) async fn page(
        &self,
        path: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        let resp = r.send().await.expect("get");
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await.expect("shutdown");
        }
    }
}
