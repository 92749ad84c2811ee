//! `guard-fleet sessions` and `guard-fleet report SESSION`: the JSON API read from a
//! terminal, as a table for people or as the API's JSON (`--json`).

use std::{fmt::Write as _, path::PathBuf};

use guard_common::report::Report;
use serde::de::DeserializeOwned;

use crate::{
    store::read::{SessionDetail, SessionPage},
    web::{fmt, params::SessionParams},
};

/// Where the server is and how to sign in.
#[derive(Clone, Debug)]
pub struct Remote {
    /// `http://127.0.0.1:4318`, `https://fleet.example.org`.
    pub server: String,
    /// A dashboard token.
    pub token: String,
    /// Trust this CA (PEM) instead of the system's roots.
    pub ca: Option<PathBuf>,
}

/// Why a command against the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA file {path}")]
    Ca {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable certificate")]
    CaPem {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot reach {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {status}: {message}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        message: String,
    },
}

/// What a request sends.
#[derive(Debug)]
pub enum Body {
    Json(serde_json::Value),
    Text(String),
}

impl Remote {
    fn client(&self) -> Result<reqwest::Client, ClientError> {
        // reqwest is built without a default crypto provider: use ring, as the server does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(path) = &self.ca {
            let pem = std::fs::read(path).map_err(|source| ClientError::Ca {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                ClientError::CaPem {
                    path: path.clone(),
                    source,
                }
            })?;
            b = b.tls_certs_only(certs);
        }
        b.build().map_err(|source| ClientError::Http {
            url: self.server.clone(),
            source,
        })
    }

    /// GET `path_and_query` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::GET, path_and_query, None).await
    }

    /// `method` on `path_and_query` with `body` (JSON, or text for a policy), its
    /// answer as JSON; an error answer says why (a policy's diagnostics too).
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path_and_query}", self.server.trim_end_matches('/'));
        let http = |source| ClientError::Http {
            url: url.clone(),
            source,
        };
        let mut request = self
            .client()?
            .request(method, &url)
            .bearer_auth(&self.token);
        request = match body {
            Some(Body::Json(v)) => request.json(&v),
            Some(Body::Text(t)) => request.body(t),
            None => request,
        };
        let resp = request.send().await.map_err(http)?;
        let status = resp.status();
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let mut message = body["error"].as_str().unwrap_or("no message").to_owned();
            if let Some(d) = body["diagnostics"].as_str() {
                message = format!("{message}:\n{d}");
            }
            return Err(ClientError::Status {
                url,
                status,
                message,
            });
        }
        resp.json().await.map_err(http)
    }

    /// One page of sessions.
    pub async fn sessions(&self, p: &SessionParams) -> Result<SessionPage, ClientError> {
        self.get(&format!("/api/sessions?{}", p.to_query_string()))
            .await
    }

    /// A page of stored violations after `after` (else from `since`), as OCSF
    /// Detection Findings (`json`: as stored).
    pub async fn violations(
        &self,
        after: Option<&str>,
        since: Option<&str>,
        json: bool,
    ) -> Result<crate::web::api::ViolationsPage, ClientError> {
        let mut q = format!(
            "/api/violations?format={}",
            if json { "json" } else { "ocsf" }
        );
        if let Some(a) = after {
            let _ = write!(q, "&after={}", fmt::url(a));
        } else if let Some(s) = since {
            let _ = write!(q, "&since={}", fmt::url(s));
        }
        self.get(&q).await
    }

    /// A session's detail.
    pub async fn session(
        &self,
        id: &str,
        host: Option<&str>,
    ) -> Result<SessionDetail, ClientError> {
        let mut path = format!("/api/sessions/{}", fmt::url(id));
        if let Some(h) = host {
            let _ = write!(path, "?host={}", fmt::url(h));
        }
        self.get(&path).await
    }
}

fn cell(s: &str, width: usize) -> String {
    let mut out: String = s.chars().take(width).collect();
    if s.chars().count() > width {
        out.pop();
        out.push('…');
    }
    format!("{out:<width$}")
}

/// The sessions as a table.
pub fn sessions_table(page: &SessionPage) -> String {
    let mut out = format!(
        "{} {} {} {} {} {} {:>8} {:>5} {:>4} {:>9} {:>9} {:>4}  {}\n",
        cell("STARTED (UTC)", 16),
        cell("USER", 10),
        cell("AGENT", 8),
        cell("REPOSITORY", 32),
        cell("HOST", 14),
        cell("STATE", 7),
        "DURATION",
        "CMDS",
        "SECR",
        "TO MODEL",
        "SENT",
        "VIOL",
        "SESSION"
    );
    for s in &page.sessions {
        let _ = writeln!(
            out,
            "{} {} {} {} {} {} {:>8} {:>5} {:>4} {:>9} {:>9} {:>4}  {}",
            cell(&fmt::time(s.started_ms), 16),
            cell(fmt::or_dash(s.user_name.as_deref()), 10),
            cell(fmt::or_dash(s.agent.as_deref()), 8),
            cell(fmt::or_dash(s.repo_url.as_deref()), 32),
            cell(&s.host, 14),
            cell(&s.state, 7),
            fmt::duration(s.duration_ms),
            s.commands,
            s.secrets_read,
            fmt::bytes(s.model_bytes_out),
            fmt::bytes(s.bytes_out),
            s.violations,
            s.session_uid
        );
    }
    let pages = (page.total + i64::from(page.per_page) - 1) / i64::from(page.per_page);
    let _ = writeln!(
        out,
        "{} sessions; page {} of {}",
        page.total,
        page.page,
        pages.max(1)
    );
    out
}

/// A session's report as text.
#[expect(
    clippy::too_many_lines,
    reason = "one section of the report after another, in the order the text prints them"
)]
pub fn report_text(d: &SessionDetail) -> String {
    let s = &d.session;
    let r: &Report = &d.report;
    let mut o = String::new();
    let _ = writeln!(o, "Session {} on {} ({})", s.session_uid, s.host, s.state);
    let _ = writeln!(
        o,
        "  agent {} {} · user {}{}",
        fmt::or_dash(s.agent.as_deref()),
        fmt::or_empty(s.agent_version.as_deref()),
        fmt::or_dash(s.user_name.as_deref()),
        d.uid.map(|u| format!(" (uid {u})")).unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  repository {} {} {}",
        fmt::or_dash(s.repo_url.as_deref()),
        fmt::or_empty(s.repo_branch.as_deref()),
        fmt::or_empty(d.repo_commit.as_deref())
    );
    let _ = writeln!(o, "  workspace {}", fmt::or_dash(d.workspace.as_deref()));
    let _ = writeln!(
        o,
        "  {} → {} ({}) UTC",
        fmt::time_s(s.started_ms),
        fmt::time_opt(s.ended_ms),
        fmt::duration(s.duration_ms)
    );
    let _ = writeln!(
        o,
        "  {} commands, {} files read, {} written, {} secrets read, {} sent ({} to model APIs), {} received, {} violations",
        s.commands,
        s.files_read,
        s.files_written,
        s.secrets_read,
        fmt::bytes(s.bytes_out),
        fmt::bytes(s.model_bytes_out),
        fmt::bytes(s.bytes_in),
        s.violations
    );
    if r.dropped > 0 {
        let _ = writeln!(
            o,
            "  INCOMPLETE: the kernel dropped {} records of this session",
            r.dropped
        );
    }
    let more = |o: &mut String, n: u64| {
        if n > 0 {
            let _ = writeln!(o, "  … and {n} more");
        }
    };
    if !r.secret_egress.secrets.items.is_empty() {
        let _ = writeln!(o, "\nSecrets read, then sent");
        for x in &r.secret_egress.secrets.items {
            let _ = writeln!(
                o,
                "  read {} at {} ({}, pid {})",
                x.path, x.ts, x.comm, x.pid
            );
        }
        for a in &r.secret_egress.sent_after.items {
            let _ = writeln!(
                o,
                "  then sent {} to {} ({}:{}/{}){}",
                fmt::ubytes(a.bytes_out),
                fmt::or_dash(a.host.as_deref()),
                a.addr,
                a.port,
                a.proto,
                if a.tainted { ", tainted" } else { "" }
            );
        }
    }
    let _ = writeln!(o, "\nViolations");
    for v in &r.violations.items {
        let _ = writeln!(
            o,
            "  {} {} ({}) {}: {} → {}",
            v.ts, v.comm, v.pid, v.what, v.rule, v.outcome
        );
    }
    more(&mut o, r.violations.omitted);
    let _ = writeln!(o, "\nCommands");
    for c in &r.commands.items {
        let verdict = c
            .verdict
            .as_deref()
            .map(|v| format!("  [{v}]"))
            .unwrap_or_default();
        let _ = writeln!(o, "  {} {:>7} {}{}", c.ts, c.pid, c.argv.join(" "), verdict);
    }
    more(&mut o, r.commands.omitted);
    for (access, files) in [("read", &r.read), ("written", &r.written)] {
        let _ = writeln!(o, "\nFiles {access}");
        for (class, b) in [
            ("secret", &files.secrets),
            ("workspace", &files.workspace),
            ("outside", &files.outside),
        ] {
            for f in &b.items {
                let _ = writeln!(
                    o,
                    "  {class:<9} {} ({} opens, first by {})",
                    f.path, f.opens, f.by
                );
            }
            more(&mut o, b.omitted);
        }
        let system = files.system.items.len() as u64 + files.system.omitted;
        if system > 0 {
            let _ = writeln!(o, "  system    {system} files");
        }
    }
    let _ = writeln!(o, "\nDestinations");
    for x in &r.destinations.items {
        let _ = writeln!(
            o,
            "  {} {}:{}/{} [{}] sent {} received {}",
            fmt::or_dash(x.host.as_deref()),
            x.addr,
            x.port,
            x.proto,
            fmt::or_dash(x.class.as_deref()),
            fmt::ubytes(x.bytes_out),
            fmt::ubytes(x.bytes_in)
        );
    }
    more(&mut o, r.destinations.omitted);
    o
}
