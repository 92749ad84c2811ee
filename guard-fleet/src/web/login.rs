//! Who may look: the middleware in front of every page and API call, and the login
//! form that trades a dashboard token for a cookie (HttpOnly, SameSite=Strict,
//! Secure over TLS). The cookie holds the token itself, so every replica checks it
//! against the same tokens file and a token removed there stops working at once.

use std::sync::Arc;

use askama::Template;
use axum::{
    Form,
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::fmt;
use crate::{app::App, auth};

/// The login cookie's name.
pub const COOKIE: &str = "guard_fleet";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    next: &'a str,
    error: Option<&'a str>,
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Where to go after logging in: a path of this server, never another site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("://") =>
        {
            n
        }
        _ => "/",
    }
}

/// Whether a form post comes from a page of this server: browsers send `Origin`
/// with every POST, so another site's form (a login as the attacker, a forced
/// logout) is refused. A request without `Origin` is not a browser's form.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    origin.split_once("://").map(|(_, h)| h) == host
}

/// Lets a request through with its viewer, or sends people to the login form and
/// programs a 401.
pub async fn require_viewer(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let proxy_user = app
        .config
        .dashboard
        .trusted_header
        .as_ref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok());
    let viewer = auth::viewer(
        &app.tokens.get(),
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        cookie(headers, COOKIE),
        proxy_user,
    );
    match viewer {
        Some(v) => {
            request.extensions_mut().insert(v);
            next.run(request).await
        }
        None if request.uri().path().starts_with("/api/") => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "a dashboard token is needed"})),
        )
            .into_response(),
        None => {
            let here = request.uri().path_and_query().map_or("/", |p| p.as_str());
            Redirect::to(&format!("/login?next={}", fmt::url(here))).into_response()
        }
    }
}

/// The login form's parameters.
#[derive(Debug, Default, Deserialize)]
pub struct NextParam {
    #[serde(default)]
    next: Option<String>,
}

fn page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    match (LoginPage { next, error }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "login page not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /login`.
pub async fn form(Query(p): Query<NextParam>) -> Response {
    page(StatusCode::OK, safe_next(p.next.as_deref()), None)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: a dashboard token → the cookie, and on to `next`.
pub async fn submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    if !same_origin(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            next,
            Some("That form was not this server's."),
        );
    }
    let token = f.token.trim();
    let cookie_safe = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    let valid = cookie_safe
        && app
            .tokens
            .get()
            .verify(token)
            .is_some_and(|t| matches!(t.scope, auth::Scope::Dashboard | auth::Scope::Admin));
    if !valid {
        tracing::warn!("dashboard login refused");
        return page(
            StatusCode::UNAUTHORIZED,
            next,
            Some("That is not a dashboard token."),
        );
    }
    let secure = if app.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        app.config.dashboard.cookie_max_age.as_secs()
    );
    let mut r = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /logout`: forgets the cookie.
pub async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("guard_fleet=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/sessions?user=a")), "/sessions?user=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn forms_must_come_from_this_server() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h), "no Origin: not a browser form");
        h.insert(
            header::HOST,
            HeaderValue::from_static("fleet.example.org:4318"),
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://fleet.example.org:4318"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; guard_fleet=abc; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
