//! The policies' JSON API (docs/fleet.md, "Policy from the fleet"):
//!
//! - `GET /api/policies`: every stored version and every group's assignment;
//! - `POST /api/policies/{name}` (admin; the body is the TOML file): checked by
//!   the daemon's own parser and stored as the next version, or refused with its
//!   diagnostics (`file:line:col: error[Gnnn]: …`, HTTP 422);
//! - `GET /api/policies/{name}/{version}`: the text of a version;
//! - `PUT /api/assignments/{group}` (admin; `{"policy", "version", "mode"}`):
//!   assigns a version to a group of hosts, `observe` first, then `enforce`;
//! - `GET /api/assignments/{group}/would`: what the group's hosts would have
//!   stopped since the assignment (violations only logged whose action is `kill`
//!   or `deny`), by rule and host.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use guard_policy::{
    diag,
    model::{Labels, valid_name},
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::{
    app::App,
    auth::{Viewer, tokens::hex},
    store::{
        now_ms,
        policy::{AssignError, Assignment, PolicyVersion},
    },
};

/// Longest policy text accepted.
const TEXT_MAX: usize = 1 << 20;

/// An error answer as the JSON API writes it: `{"error": "…"}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The database failed: 503, and the cause in the log.
pub(crate) fn store_error(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "policy store failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable",
    )
}

/// The refusal of a change by someone who is not an admin.
pub(crate) fn not_admin(viewer: &Viewer) -> Option<Response> {
    (!viewer.admin).then(|| error(StatusCode::FORBIDDEN, "this change needs an admin token"))
}

/// What `GET /api/policies` answers.
#[derive(Debug, serde::Serialize)]
pub struct Policies {
    pub versions: Vec<PolicyVersion>,
    pub assignments: Vec<Assignment>,
}

/// `GET /api/policies`.
pub async fn list(State(app): State<Arc<App>>) -> Response {
    let versions = match app.store.policies().await {
        Ok(v) => v,
        Err(e) => return store_error(&e),
    };
    match app.store.assignments().await {
        Ok(assignments) => Json(Policies {
            versions,
            assignments,
        })
        .into_response(),
        Err(e) => store_error(&e),
    }
}

/// 422: a policy with errors, its diagnostics rendered (`file:line:col: error[…]`).
fn has_errors(error: String, file: &str, diags: &[diag::Diagnostic]) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(serde_json::json!({
            "error": error,
            "diagnostics": diag::render(file, diags),
        })),
    )
        .into_response()
}

/// `POST /api/policies/{name}`.
pub async fn upload(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    if let Some(refusal) = not_admin(&viewer) {
        return refusal;
    }
    if !valid_name(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            "a policy's name is 1 to 128 letters, digits, `-`, `_` or `.`",
        );
    }
    if body.len() > TEXT_MAX {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "a policy is at most 1 MiB");
    }
    let file = format!("{name}.toml");
    let warnings = match guard_policy::parse::parse(&file, &body) {
        Ok((_, warnings)) => diag::render(&file, &warnings),
        Err(diags) => return has_errors(format!("policy {name} has errors"), &file, &diags),
    };
    let sha256 = hex(&Sha256::digest(body.as_bytes()));
    match app
        .store
        .add_policy(&name, &body, &sha256, &viewer.name, now_ms())
        .await
    {
        Ok(version) => {
            tracing::info!(policy = %name, version, author = %viewer.name, "policy stored");
            (
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "policy": name,
                    "version": version,
                    "sha256": sha256,
                    "warnings": warnings,
                })),
            )
                .into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// `GET /api/policies/{name}/{version}`.
pub async fn text(
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, i64)>,
) -> Response {
    match app.store.policy_text(&name, version).await {
        Ok(Some(text)) => ([(header::CONTENT_TYPE, "application/toml")], text).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("policy {name} has no version {version}"),
        ),
        Err(e) => store_error(&e),
    }
}

/// Events of one session replayed, at most (a longer session is replayed up to there,
/// and the answer says so).
const REPLAYED_MAX: i64 = 200_000;

#[derive(Deserialize)]
pub struct TestQuery {
    session: String,
    host: Option<String>,
}

/// `GET /api/policies/{name}/{version}/test?session=ID[&host=H]`: the session's
/// stored events judged again by that version (`guard policy test`, in the fleet).
pub async fn test(
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, i64)>,
    Query(q): Query<TestQuery>,
) -> Response {
    let text = match app.store.policy_text(&name, version).await {
        Ok(Some(text)) => text,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("policy {name} has no version {version}"),
            );
        }
        Err(e) => return store_error(&e),
    };
    let session = match app.store.session(&q.session, q.host.as_deref()).await {
        Ok(Some(s)) => s.session,
        Ok(None) => {
            return error(StatusCode::NOT_FOUND, format!("no session {}", q.session));
        }
        Err(e) => return store_error(&e),
    };
    let stored = match app
        .store
        .session_lines(&session.host, &session.session_uid, REPLAYED_MAX + 1)
        .await
    {
        Ok(lines) => lines,
        Err(e) => return store_error(&e),
    };
    let truncated = stored.len() as i64 > REPLAYED_MAX;
    // Bodies in OCSF (a host that exports OCSF) are no event lines: counted.
    let replayed = &stored[..stored.len().min(REPLAYED_MAX as usize)];
    let lines: Vec<guard_common::line::EventLine> = replayed
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let unreadable = replayed.len() - lines.len();
    // Stored only once it parsed: a stored version that no longer does is a
    // fleet of another guard version's; said as such.
    let file = format!("{name}.toml");
    let policy = match guard_policy::parse::parse(&file, &text) {
        Ok((p, _)) => p,
        Err(diags) => {
            return has_errors(
                format!("policy {name} version {version} has errors"),
                &file,
                &diags,
            );
        }
    };
    match guard_policy::replay::replay(policy, &lines) {
        Ok(report) => Json(serde_json::json!({
            "policy": name,
            "version": version,
            "host": session.host,
            "session_uid": session.session_uid,
            "unreadable": unreadable,
            "truncated": truncated,
            "report": report,
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("policy {name} version {version} does not compile: {e}"),
        ),
    }
}

/// `GET /api/assignments/{group}/would`.
pub async fn would(State(app): State<Arc<App>>, Path(group): Path<String>) -> Response {
    let assignment = match app.store.assigned(&group).await {
        Ok(Some((a, _))) => a,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no policy is assigned to group {group}"),
            );
        }
        Err(e) => return store_error(&e),
    };
    match app.store.would_stop(&group, assignment.updated_ms).await {
        Ok(rows) => Json(serde_json::json!({
            "group": group,
            "policy": assignment.policy,
            "version": assignment.version,
            "mode": assignment.mode,
            "since_ms": assignment.updated_ms,
            "would_stop": rows,
        }))
        .into_response(),
        Err(e) => store_error(&e),
    }
}

/// `PUT /api/assignments/{group}`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub policy: String,
    pub version: i64,
    /// `observe` (what it would do, shown in the fleet) or `enforce`.
    pub mode: String,
}

/// `PUT /api/assignments/{group}`.
pub async fn assign(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Path(group): Path<String>,
    Json(a): Json<Assign>,
) -> Response {
    if let Some(refusal) = not_admin(&viewer) {
        return refusal;
    }
    // A group of hosts (their `[fleet] group`), every host of a credential, or
    // every host that says a label of itself.
    let valid = match group.split_once(':') {
        None => valid_name(&group),
        Some(("host" | "cluster", name)) => valid_name(name),
        Some(("label", label)) => label.parse::<Labels>().is_ok_and(|l| l.0.len() == 1),
        Some(_) => false,
    };
    if !valid {
        return error(
            StatusCode::BAD_REQUEST,
            "an assignment's target is a group's name (1 to 128 letters, digits, `-`, `_` or \
             `.`), `host:` or `cluster:` and a token's name, or `label:KEY=VALUE`",
        );
    }
    if !matches!(a.mode.as_str(), "observe" | "enforce") {
        return error(StatusCode::BAD_REQUEST, "mode is observe or enforce");
    }
    match app
        .store
        .assign(
            &group,
            &a.policy,
            a.version,
            &a.mode,
            &viewer.name,
            now_ms(),
        )
        .await
    {
        Ok(serial) => {
            tracing::info!(%group, policy = %a.policy, version = a.version, mode = %a.mode,
                serial, author = %viewer.name, "policy assigned");
            Json(serde_json::json!({
                "group": group,
                "policy": a.policy,
                "version": a.version,
                "mode": a.mode,
                "serial": serial,
            }))
            .into_response()
        }
        Err(e @ AssignError::NoSuchVersion { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(AssignError::Store(e)) => store_error(&e),
    }
}
