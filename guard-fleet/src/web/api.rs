//! The JSON API under every page: the same parameters, the same read models.
//!
//! - `GET /api/overview?days=30`
//! - `GET /api/sessions?from=&to=&user=&repo=&host=&agent=&rule=&outcome=&state=&sort=&order=&page=&per_page=`
//! - `GET /api/sessions/{uid or id}?host=`
//! - `GET /api/hosts?page=&per_page=&stale=1`
//! - `GET /api/{developers,destinations,repositories,agents,rules,outcomes}?days=&sort=&page=&per_page=`
//! - `GET /api/violations?after=&since=&limit=&format=ocsf|json`: the stored
//!   violations in the order they happened, as OCSF Detection Findings (for the SIEM)

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};

use super::{
    WebError, pages,
    params::{
        self, HostParams, ListParams, OverviewParams, ParamError, SessionIdParams, SessionParams,
        ViolationParams,
    },
};
use crate::{
    app::App,
    store::{
        now_ms,
        read::{Cursor, Dim, DimPage, HostPage, Overview, SessionDetail, SessionPage},
    },
};

/// An error as JSON: `{"error": "…"}`.
pub struct ApiError(WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        (
            self.0.status(),
            Json(serde_json::json!({"error": self.0.to_string()})),
        )
            .into_response()
    }
}

/// `GET /api/overview`.
pub async fn overview(
    State(app): State<Arc<App>>,
    Query(p): Query<OverviewParams>,
) -> Result<Json<Overview>, ApiError> {
    Ok(Json(app.overview(p.days()?).await?))
}

/// `GET /api/sessions`.
pub async fn sessions(
    State(app): State<Arc<App>>,
    Query(p): Query<SessionParams>,
) -> Result<Json<SessionPage>, ApiError> {
    let q = app.sessions_query(&p)?;
    Ok(Json(app.store.sessions(&q).await?))
}

/// `GET /api/sessions/{id}`.
pub async fn session(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(p): Query<SessionIdParams>,
) -> Result<Json<SessionDetail>, ApiError> {
    app.store
        .session(&id, p.host.as_deref().filter(|h| !h.is_empty()))
        .await?
        .map(Json)
        .ok_or(ApiError(WebError::NoSession))
}

/// `GET /api/alerts`: deliveries per alert rule and destination, and the alerts
/// queued last.
pub async fn alerts(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = app.store.alert_stats().await?;
    let recent = app.store.recent_alerts(pages::RECENT_ALERTS).await?;
    Ok(Json(
        serde_json::json!({ "deliveries": stats, "recent": recent }),
    ))
}

/// `GET /api/packages`: the organisation's package inventory.
pub async fn packages(
    State(app): State<Arc<App>>,
) -> Result<Json<Vec<crate::store::read::InventoryRow>>, ApiError> {
    Ok(Json(app.store.packages().await?))
}

/// `GET /api/hosts`.
pub async fn hosts(
    State(app): State<Arc<App>>,
    Query(p): Query<HostParams>,
) -> Result<Json<HostPage>, ApiError> {
    Ok(Json(app.hosts(&p).await?))
}

async fn list(app: &App, dim: Dim, p: &ListParams) -> Result<Json<DimPage>, ApiError> {
    let (days, sort, page, per_page) = p.checked()?;
    Ok(Json(
        app.store
            .dimension(
                dim,
                app.window(days),
                sort,
                page,
                per_page,
                dim.counts_violations(),
            )
            .await?,
    ))
}

/// `GET /api/developers`.
pub async fn developers(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<DimPage>, ApiError> {
    list(&app, Dim::Developers, &p).await
}

/// `GET /api/destinations`.
pub async fn destinations(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<DimPage>, ApiError> {
    list(&app, Dim::Destinations, &p).await
}

/// `GET /api/repositories`.
pub async fn repositories(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<DimPage>, ApiError> {
    list(&app, Dim::Repositories, &p).await
}

/// `GET /api/agents`.
pub async fn agents(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<DimPage>, ApiError> {
    list(&app, Dim::Agents, &p).await
}

/// `GET /api/rules`.
pub async fn rules(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<DimPage>, ApiError> {
    list(&app, Dim::Rules, &p).await
}

/// `GET /api/outcomes`.
pub async fn outcomes(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<DimPage>, ApiError> {
    list(&app, Dim::Outcomes, &p).await
}

/// A page of stored violations for the SIEM: `records` (OCSF Detection Findings,
/// or the stored rows) and `next`, the cursor of the page after (absent at the
/// end: ask again later with the last `next`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ViolationsPage {
    pub records: Vec<serde_json::Value>,
    pub next: Option<String>,
}

/// `GET /api/violations`.
pub async fn violations(
    State(app): State<Arc<App>>,
    Query(p): Query<ViolationParams>,
) -> Result<Json<ViolationsPage>, ApiError> {
    let after = match p.after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => {
            Some(Cursor::parse(a).ok_or_else(|| ParamError::Cursor(a.chars().take(64).collect()))?)
        }
        None => None,
    };
    let since = match p.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(params::time("since", s, now_ms(), false)?),
        None => None,
    };
    let limit = params::number("limit", p.limit.as_deref(), 1000, 10_000)?;
    let ocsf = match p.format.as_deref().map(str::trim) {
        None | Some("" | "ocsf") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ParamError::RecordFormat(other.chars().take(16).collect()).into());
        }
    };
    let rows = app
        .store
        .violations_after(after.as_ref(), since, limit)
        .await?;
    let next = rows.last().map(|v| v.cursor());
    let records = rows
        .iter()
        .map(|v| {
            if !ocsf {
                return serde_json::to_value(v).unwrap_or_default();
            }
            // The stored host (`cluster/host`) is the device the SIEM sees.
            let uid = v.uid();
            guard_common::ocsf::violation_finding(
                &guard_common::ocsf::StoredViolation {
                    uid: &uid,
                    ts_ms: v.ts_ms,
                    session: v.session_id(),
                    pid: v.pid,
                    comm: &v.comm,
                    what: &v.what,
                    rule: &v.rule,
                    action: &v.action,
                    outcome: &v.outcome,
                    alert: v.alert,
                },
                &guard_common::ocsf::Context {
                    hostname: &v.host,
                    host_uid: None,
                    product_version: env!("CARGO_PKG_VERSION"),
                },
            )
        })
        .collect();
    Ok(Json(ViolationsPage { records, next }))
}
