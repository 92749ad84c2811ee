//! The dashboard: HTML pages for a security team, and the JSON API under each of
//! them. Reads only: store → read models → pages (askama, escaped), charts
//! (plotters SVG) and JSON.
//!
//! Every page needs a viewer ([`login`]): a dashboard token (bearer header, or the
//! login form's HttpOnly cookie) or the organisation's proxy's header when the
//! configuration trusts one. Every answer carries a strict Content-Security-Policy:
//! no script at all, styles only from `/static`.

pub mod alert_rules;
pub mod api;
pub mod charts;
pub mod csv;
pub mod fmt;
pub mod login;
pub mod pages;
pub mod params;
pub mod policies;

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use self::params::{HostParams, ParamError, SessionParams};
use crate::{
    app::App,
    store::{
        StoreError, now_ms,
        read::{HostPage, Overview, Query, Window},
    },
};

/// The policy of every answer: nothing runs, nothing is framed, styles come from
/// this server, forms post back to it.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's and the API's routes (all behind a viewer), the login pages and
/// the stylesheet (not).
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    let private = Router::new()
        .route("/", get(pages::overview))
        .route("/sessions", get(pages::sessions))
        .route("/sessions/{id}", get(pages::session))
        .route("/hosts", get(pages::hosts))
        .route("/developers", get(pages::developers))
        .route("/destinations", get(pages::destinations))
        .route("/repositories", get(pages::repositories))
        .route("/agents", get(pages::agents))
        .route("/rules", get(pages::rules))
        .route("/policies", get(pages::policies))
        .route("/alerts", get(pages::alerts))
        .route("/packages", get(pages::packages))
        .route("/api/overview", get(api::overview))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/{id}", get(api::session))
        .route("/api/hosts", get(api::hosts))
        .route("/api/developers", get(api::developers))
        .route("/api/destinations", get(api::destinations))
        .route("/api/repositories", get(api::repositories))
        .route("/api/agents", get(api::agents))
        .route("/api/rules", get(api::rules))
        .route("/api/outcomes", get(api::outcomes))
        .route("/api/violations", get(api::violations))
        .route("/api/alerts", get(api::alerts))
        .route("/api/packages", get(api::packages))
        .route("/api/policies", get(policies::list))
        .route("/api/policies/{name}", post(policies::upload))
        .route("/api/policies/{name}/{version}", get(policies::text))
        .route("/api/policies/{name}/{version}/test", get(policies::test))
        .route(
            "/api/assignments/{group}",
            axum::routing::put(policies::assign),
        )
        .route("/api/assignments/{group}/would", get(policies::would))
        .route("/api/alert-rules", get(alert_rules::list))
        .route(
            "/api/alert-rules/{name}",
            axum::routing::put(alert_rules::put).delete(alert_rules::delete),
        )
        .route_layer(middleware::from_fn_with_state(app, login::require_viewer));
    Router::new()
        .merge(private)
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/static/fleet.css", get(stylesheet))
        .route("/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
}

/// guard's mark: a shield (SVG; browsers take it for `/favicon.ico` too).
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../static/favicon.svg"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/fleet.css"),
    )
        .into_response()
}

/// Adds the security headers to every answer (`tls`: also HSTS).
pub async fn security_headers(tls: bool, request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it a browser sends `Origin: null` with the page's own
    // form posts, which the login's same-origin check must refuse (found by the
    // Chromium test). Other sites still get no referrer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}

/// Why a page or an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("no such session")]
    NoSession,
    #[error("the database is unavailable")]
    Store(#[from] StoreError),
    #[error("the page could not be rendered")]
    Render(#[from] askama::Error),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Params(_) => StatusCode::BAD_REQUEST,
            Self::NoSession => StatusCode::NOT_FOUND,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn log(&self) {
        match self {
            Self::Store(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "dashboard query failed");
            }
            Self::Render(e) => tracing::error!(error = %e, "page not rendered"),
            Self::Params(_) | Self::NoSession => {}
        }
    }
}

impl App {
    /// When a host's last batch must be after to count as reporting.
    fn stale_before(&self, now_ms: i64) -> i64 {
        let stale =
            i64::try_from(self.config.dashboard.stale_after.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(stale)
    }

    /// The sessions `p` selects, now ("running" meaning running now, as the
    /// overview counts them).
    pub fn sessions_query(&self, p: &SessionParams) -> Result<Query, ParamError> {
        let now = now_ms();
        p.query(now, self.stale_before(now))
    }

    /// The last `days` days, now.
    pub fn window(&self, days: u32) -> Window {
        Window::last(days, now_ms())
    }

    /// The overview of the last `days` days.
    pub async fn overview(&self, days: u32) -> Result<Overview, StoreError> {
        let now = now_ms();
        self.store.overview(days, now, self.stale_before(now)).await
    }

    /// A page of hosts, with their sessions of the last 30 days.
    pub async fn hosts(&self, p: &HostParams) -> Result<HostPage, WebError> {
        let now = now_ms();
        let page = params::number("page", p.page.as_deref(), 1, 1_000_000)?;
        let per_page = params::number("per_page", p.per_page.as_deref(), 100, 1000)?;
        let stale_only = p.stale.as_deref().is_some_and(|s| s == "1" || s == "true");
        Ok(self
            .store
            .hosts(
                now,
                now - 30 * 86_400_000,
                self.stale_before(now),
                page,
                per_page,
                stale_only,
            )
            .await?)
    }
}
