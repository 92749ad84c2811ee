//! The JSON API under every page: the same parameters, the same read models.
//!
//! - `GET /api/overview?days=30`
//! - `GET /api/sessions?from=&to=&user=&repo=&host=&agent=&rule=&outcome=&state=&sort=&order=&page=&per_page=`
//! - `GET /api/sessions/{uid or id}?host=`
//! - `GET /api/hosts?page=&per_page=&stale=1`

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};

use super::{
    WebError, pages,
    params::{HostParams, OverviewParams, SessionIdParams, SessionParams},
};
use crate::{
    server::App,
    store::{
        now_ms,
        read::{HostPage, Overview, SessionDetail, SessionPage},
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
    Ok(Json(app.overview(pages::days(&p)?).await?))
}

/// `GET /api/sessions`.
pub async fn sessions(
    State(app): State<Arc<App>>,
    Query(p): Query<SessionParams>,
) -> Result<Json<SessionPage>, ApiError> {
    let q = p.query(now_ms())?;
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
