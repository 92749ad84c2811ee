//! Policies served to hosts: the fleet's Ed25519 key ([`crate::signing::Signer`]) and
//! `GET /v1/policy?group=G[&labels=K=V,…]`, where a host (its own credential, as for `/v1/logs`)
//! pulls its group's assignment as a signed [`Envelope`]. The host checks the
//! signature with the key it pinned, then applies the policy like a reload
//! (docs/fleet.md, "Policy from the fleet"). And `GET /v1/packages?since=MS`, the
//! organisation's package names a page at a time, which hosts judge
//! `[packages] first_seen` against.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use axum_server::tls::TlsInfo;
use guard_policy::{model::Labels, signed::Envelope};
use serde::Deserialize;

use crate::{
    app::App,
    ingest::sender_of,
    web::policies::{error, store_error},
};

/// `GET /v1/policy`'s parameters.
#[derive(Debug, Deserialize)]
pub struct PolicyParams {
    /// The host's group (`[fleet] group`, else its name).
    pub group: String,
    /// What the host says of itself (`[fleet] labels`): `env=ci,team=payments`.
    #[serde(default)]
    pub labels: Option<String>,
}

/// `GET /v1/packages`'s parameters.
#[derive(Debug, Deserialize)]
pub struct NamesParams {
    /// The `until` of the host's last answer (the fleet's clock); 0 at first.
    #[serde(default)]
    pub since: i64,
}

/// `GET /v1/packages?since=MS`: the package names the organisation's sessions
/// installed, recorded since `since`, a page at a time
/// ([`guard_policy::packages::NamesPage`]).
pub async fn package_names(
    State(app): State<Arc<App>>,
    Query(params): Query<NamesParams>,
    request: Request,
) -> Response {
    let tls = request.extensions().get::<Arc<TlsInfo>>();
    if let Err(refusal) = sender_of(&app, request.headers(), tls) {
        tracing::warn!(%refusal, "package names request refused");
        return error(refusal.status(), refusal.to_string());
    }
    match app
        .store
        .package_names(params.since, crate::store::now_ms())
        .await
    {
        Ok(names) => Json(names).into_response(),
        Err(e) => store_error(&e),
    }
}

/// `GET /v1/policy?group=G`: the group's assignment, signed; 404 when the group
/// has none, 503 when the fleet has no signing key or the database is away.
pub async fn serve(
    State(app): State<Arc<App>>,
    Query(params): Query<PolicyParams>,
    request: Request,
) -> Response {
    let tls = request.extensions().get::<Arc<TlsInfo>>();
    let sender = match sender_of(&app, request.headers(), tls) {
        Ok(s) => s,
        Err(refusal) => {
            tracing::warn!(%refusal, "policy request refused");
            return error(refusal.status(), refusal.to_string());
        }
    };
    let Some(signer) = &app.signer else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this fleet serves no policy: [policy] signing_key is not set",
        );
    };
    let labels = match params.labels.as_deref().unwrap_or("").parse::<Labels>() {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("labels: {e}")),
    };
    // The host's group's assignment, else its credential's, else a label's: signed
    // for the group the host asked as (the one it checks).
    let assigned = match app
        .store
        .assigned_to_host(&params.group, &sender.assignment_target(), &labels)
        .await
    {
        Ok(a) => a,
        Err(e) => return store_error(&e),
    };
    let Some((a, text)) = assigned else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no policy is assigned to group {}", params.group),
        );
    };
    tracing::debug!(?sender, group = %a.group, serial = a.serial, "policy served");
    let envelope = Envelope {
        group: params.group,
        serial: u64::try_from(a.serial).unwrap_or(0),
        policy: a.policy,
        version: u64::try_from(a.version).unwrap_or(0),
        mode: a.mode,
        text,
        signature: String::new(),
    };
    Json(signer.sign(envelope)).into_response()
}
