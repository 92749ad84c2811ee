//! `POST /v1/logs`: OTLP/HTTP logs from guard hosts.
//!
//! A request goes one way: authenticate the sender ([`crate::auth`]) → read the
//! body within the limits and decode it ([`decode`]) → check each record and make
//! rows ([`validate`]) → write them in one transaction ([`crate::store::write`]) →
//! answer. The answers follow the OTLP/HTTP specification, so a host's exporter
//! knows what to retry: 200 (with `partial_success` for records skipped as
//! invalid), 400 malformed, 401 no or a wrong credential, 403 records of another
//! host, 413 too large, 415 unknown content type or encoding, 503 the database is
//! unavailable (retry).

pub mod decode;
pub mod validate;

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use axum_server::tls::TlsInfo;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use self::decode::{DecodeError, Encoding};
use crate::{app::App, auth, store::now_ms};

/// A body declared over `max_body` but at most this long is read and dropped before
/// the 413 (larger ones are answered at once, and the connection closes).
const DRAIN_MAX: u64 = 16 << 20;

/// gRPC's status codes, which OTLP/HTTP's error bodies carry.
mod code {
    pub(super) const INVALID_ARGUMENT: i32 = 3;
    pub(super) const PERMISSION_DENIED: i32 = 7;
    pub(super) const RESOURCE_EXHAUSTED: i32 = 8;
    pub(super) const UNAVAILABLE: i32 = 14;
    pub(super) const UNAUTHENTICATED: i32 = 16;
}

/// An answer other than 200.
fn error(encoding: Encoding, status: StatusCode, code: i32, message: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        decode::status(encoding, code, message),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn decode_error(encoding: Encoding, e: &DecodeError) -> Response {
    let (status, code) = match e {
        DecodeError::ContentType(_) | DecodeError::ContentEncoding(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, code::INVALID_ARGUMENT)
        }
        DecodeError::TooLarge { .. } | DecodeError::TooLargeDecompressed { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, code::RESOURCE_EXHAUSTED)
        }
        DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => {
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
        }
    };
    error(encoding, status, code, &e.to_string())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The name a verified client certificate gives its host.
pub(crate) fn cert_name(tls: Option<&TlsInfo>) -> Option<String> {
    tls?.peer_certificates
        .first()
        .and_then(|der| auth::cert::host_name(der))
}

/// Who sent a request to `/v1/logs` or `/v1/policy`: its bearer token, else its
/// verified client certificate's name.
pub(crate) fn sender_of(
    app: &App,
    headers: &HeaderMap,
    tls: Option<&Arc<TlsInfo>>,
) -> Result<auth::Sender, auth::Refusal> {
    auth::sender(
        &app.tokens.get(),
        header_str(headers, header::AUTHORIZATION),
        cert_name(tls.map(Arc::as_ref)).as_deref(),
    )
}

/// `POST /v1/logs`.
#[expect(
    clippy::too_many_lines,
    reason = "the request's checks in order, from sender to storage, each failure with its answer"
)]
pub async fn logs(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let tls = parts.extensions.get::<Arc<TlsInfo>>();
    let encoding = decode::encoding(header_str(headers, header::CONTENT_TYPE));
    // Until the content type is known, errors are answered in JSON.
    let answer_in = *encoding.as_ref().unwrap_or(&Encoding::Json);

    let sender = match sender_of(&app, headers, tls) {
        Ok(s) => s,
        Err(refusal) => {
            tracing::warn!(%refusal, "ingest refused");
            let code = match refusal {
                auth::Refusal::Unauthorized(_) => code::UNAUTHENTICATED,
                auth::Refusal::Forbidden(_) => code::PERMISSION_DENIED,
            };
            return error(answer_in, refusal.status(), code, &refusal.to_string());
        }
    };
    let encoding = match encoding {
        Ok(e) => e,
        Err(e) => return decode_error(answer_in, &e),
    };
    let gzipped = match decode::gzipped(header_str(headers, header::CONTENT_ENCODING)) {
        Ok(g) => g,
        Err(e) => return decode_error(encoding, &e),
    };
    let limits = app.config.limits;
    let too_large = DecodeError::TooLarge {
        limit: limits.max_body,
    };
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if let Some(length) = declared.filter(|l| *l > limits.max_body as u64) {
        // The client is still sending: what it sends (up to DRAIN_MAX) is read and
        // dropped first, so that it gets the 413 rather than a reset connection.
        if length <= DRAIN_MAX {
            let _ = tokio::time::timeout(
                limits.body_timeout,
                Limited::new(body, DRAIN_MAX as usize).collect(),
            )
            .await;
        }
        return decode_error(encoding, &too_large);
    }
    let read = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body).collect(),
    );
    let bytes = match read.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return decode_error(encoding, &too_large),
        Err(_) => {
            return error(
                encoding,
                StatusCode::REQUEST_TIMEOUT,
                code::UNAVAILABLE,
                "the body did not arrive in time",
            );
        }
        Ok(Err(_)) => {
            return error(
                encoding,
                StatusCode::BAD_REQUEST,
                code::INVALID_ARGUMENT,
                "the body could not be read",
            );
        }
    };

    // Inflating and decoding take memory and CPU in proportion to the body: a
    // bounded number at once, off the async workers.
    let Ok(_slot) = app.ingest_slots.acquire().await else {
        return error(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            "shutting down",
        );
    };
    let now = now_ms();
    let checked = tokio::task::spawn_blocking(move || {
        let request = if gzipped {
            decode::decode(encoding, &decode::gunzip(&bytes, limits.max_decompressed)?)?
        } else {
            decode::decode(encoding, &bytes)?
        };
        Ok::<_, DecodeError>(validate::batch(&request, &sender, &limits, now))
    })
    .await;
    let batch = match checked {
        Ok(Ok(Ok(batch))) => batch,
        Ok(Ok(Err(claim))) => {
            tracing::warn!(%claim, "ingest refused");
            return error(
                encoding,
                StatusCode::FORBIDDEN,
                code::PERMISSION_DENIED,
                &claim.to_string(),
            );
        }
        Ok(Err(e)) => return decode_error(encoding, &e),
        Err(_) => {
            return error(
                encoding,
                StatusCode::INTERNAL_SERVER_ERROR,
                code::UNAVAILABLE,
                "the request could not be checked",
            );
        }
    };

    let written = match app.alert_rules().await {
        Ok(rules) => app.store.write(&batch, now, &rules).await,
        Err(e) => Err(e),
    };
    match written {
        Ok(written) => {
            tracing::debug!(
                hosts = batch.hosts.len(),
                summaries = batch.summaries.len(),
                summaries_applied = written.summaries_applied,
                events = batch.events.len(),
                events_new = written.events_new,
                rejected = batch.rejected_count(),
                "batch stored"
            );
            let message = batch.rejected_message();
            if !message.is_empty() {
                tracing::info!(rejected = batch.rejected_count(), %message, "records skipped");
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                decode::response(encoding, batch.rejected_count(), &message),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "batch not stored");
            error(
                encoding,
                StatusCode::SERVICE_UNAVAILABLE,
                code::UNAVAILABLE,
                "the database is unavailable; retry",
            )
        }
    }
}
