//! The alert rules' JSON API (docs/fleet.md, "Alerts"): the rules of the
//! configuration file are read-only here; the fleet keeps the others, made and
//! removed with an admin token, and every replica takes them within
//! [`ALERT_RULES_FRESH`].
//!
//! - `GET /api/alert-rules`: the rules in force (`author` and `updated_ms` on a
//!   kept one; none on the file's) and the destinations they may name;
//! - `PUT /api/alert-rules/{name}` (admin; `{"kinds", "rules", "outcomes", "to"}`,
//!   lists of strings, `to` required): makes or replaces a kept rule, checked as
//!   the file's are (its destinations exist, its outcomes are outcomes);
//! - `DELETE /api/alert-rules/{name}` (admin): removes a kept rule (what it queued
//!   is still delivered); answers `{"removed": NAME}`.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use guard_policy::model::valid_name;
use serde::Deserialize;

use super::policies::{error, not_admin, store_error};
use crate::{
    app::{ALERT_RULES_FRESH, App},
    auth::Viewer,
    config::AlertRule,
    store::now_ms,
};

/// `PUT /api/alert-rules/{name}`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// Event kinds; none: violations.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Policy rule ids; none: any.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Outcomes; none: any.
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// Destinations (names in `[[alerts.destination]]`).
    pub to: Vec<String>,
}

/// `GET /api/alert-rules`.
pub async fn list(State(app): State<Arc<App>>) -> Response {
    match app.alert_rules().await {
        Ok(rules) => {
            let destinations: Vec<_> = app
                .config
                .alerts
                .destinations
                .iter()
                .map(|d| serde_json::json!({ "name": d.name, "kind": d.kind.as_str() }))
                .collect();
            Json(serde_json::json!({
                "rules": *rules,
                "destinations": destinations,
                "fresh_within_s": ALERT_RULES_FRESH.as_secs(),
            }))
            .into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// Whether `name` is one of the configuration file's rules: 409 then.
fn in_file(app: &App, name: &str) -> Option<Response> {
    app.config
        .alerts
        .rules
        .iter()
        .any(|r| r.name == name)
        .then(|| {
            error(
                StatusCode::CONFLICT,
                format!("alert rule {name:?} is the configuration file's: change it there"),
            )
        })
}

/// `PUT /api/alert-rules/{name}`.
pub async fn put(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Json(body): Json<RuleBody>,
) -> Response {
    if let Some(refusal) = not_admin(&viewer) {
        return refusal;
    }
    if !valid_name(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            "an alert rule's name is 1 to 128 letters, digits, `-`, `_` or `.`",
        );
    }
    if let Some(refusal) = in_file(&app, &name) {
        return refusal;
    }
    let now = now_ms();
    let rule = AlertRule {
        name,
        kinds: body.kinds,
        rules: body.rules,
        outcomes: body.outcomes,
        to: body.to,
        author: Some(viewer.name.clone()),
        updated_ms: Some(now),
    };
    if let Err(reason) = rule.check(&app.config.alerts.destinations) {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    match app.store.put_alert_rule(&rule, &viewer.name, now).await {
        Ok(new) => {
            app.alert_rules.forget();
            tracing::info!(rule = %rule.name, author = %viewer.name, new, "alert rule kept");
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(rule)).into_response()
        }
        Err(e) => store_error(&e),
    }
}

/// `DELETE /api/alert-rules/{name}`.
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Response {
    if let Some(refusal) = not_admin(&viewer) {
        return refusal;
    }
    if let Some(refusal) = in_file(&app, &name) {
        return refusal;
    }
    match app.store.delete_alert_rule(&name).await {
        Ok(true) => {
            app.alert_rules.forget();
            tracing::info!(rule = %name, author = %viewer.name, "alert rule removed");
            Json(serde_json::json!({ "removed": name })).into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no alert rule {name:?} is kept in the fleet"),
        ),
        Err(e) => store_error(&e),
    }
}
