//! The JSON API under every page: the same parameters, the same read models.
//!
//! - `GET /api/overview?days=30`
//! - `GET /api/sessions?from=&to=&user=&repo=&host=&agent=&rule=&outcome=&state=&sort=&order=&page=&per_page=`
//! - `GET /api/sessions/{uid or id}?host=`
//! - `GET /api/hosts?page=&per_page=&stale=1`
//! - `GET /api/{developers,destinations,repositories,agents,rules,outcomes}?days=&sort=&page=&per_page=`

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};

use super::{
    WebError, pages,
    params::{HostParams, ListParams, OverviewParams, SessionIdParams, SessionParams},
};
use crate::{
    server::App,
    store::read::{Dim, DimPage, HostPage, Overview, SessionDetail, SessionPage},
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
    Ok(Json(app.overview(pages::days(&p)?).await?))
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
