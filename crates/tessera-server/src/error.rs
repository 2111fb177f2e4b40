//! Errors as HTTP callers see them: the RFC 6749 §5.2 JSON shape `{"error", "error_description"}` everywhere, a
//! generic message for internal failures (details go to the log, never to the client).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_store::StoreError;

use crate::clock::{Clock as _, SystemClock};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: Cow<'static, str>,
    retry_after: Option<u64>,
    www_authenticate: Option<&'static str>,
}

impl ApiError {
    /// An error with status, RFC error code and a description safe to show.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, description: description.into(), retry_after: None, www_authenticate: None }
    }

    /// 400 `invalid_request`.
    #[must_use]
    pub fn bad_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 429 with `Retry-After`.
    #[must_use]
    pub fn too_many(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", "too many attempts; retry later")
        }
    }

    /// 503 with `Retry-After`: the server is at its limit for this kind of work (password checks) and the same
    /// request will succeed shortly.
    #[must_use]
    pub fn overloaded(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the server is busy; retry shortly")
        }
    }

    /// 401 for a missing or bad bearer token, with the RFC 6750 challenge.
    #[must_use]
    pub fn invalid_token() -> Self {
        Self {
            www_authenticate: Some(r#"Bearer error="invalid_token""#),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is missing, invalid, expired or revoked",
            )
        }
    }

    /// 401 for a request without any bearer token: RFC 6750 §3.1 says the challenge then carries no error code,
    /// since the client may not know the route needs one.
    #[must_use]
    pub fn missing_token() -> Self {
        Self {
            www_authenticate: Some("Bearer"),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", "a bearer access token is required")
        }
    }

    /// 403 for a valid token without the scopes the route needs (RFC 6750 §3.1).
    #[must_use]
    pub fn insufficient_scope() -> Self {
        Self {
            www_authenticate: Some(r#"Bearer error="insufficient_scope""#),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the access token lacks a scope this route requires",
            )
        }
    }

    /// 404 for a path no route serves.
    #[must_use]
    pub fn no_such_endpoint() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 500 with a generic body; `detail` goes to the log only.
    #[must_use]
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
    }

    /// 503 for a storage failure; `detail` goes to the log only — at most one line a second: during an outage
    /// every request fails alike, and a line each would bury everything else (the count is in
    /// `tessera_storage_unavailable_total`).
    #[must_use]
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        note_storage_failure(detail);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "storage is unavailable; retry")
    }

    /// Sets the `WWW-Authenticate` challenge.
    #[must_use]
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    /// The status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// Counts a storage failure and logs it — at most one line a second (see [`ApiError::unavailable`]).
pub(crate) fn note_storage_failure(detail: impl std::fmt::Display) {
    metrics::counter!("tessera_storage_unavailable_total").increment(1);
    // Wall time, not the injected clock: this limits log lines, which are read in real time.
    let now = u64::try_from(SystemClock.now_secs()).unwrap_or(0);
    if first_in_its_second(&LAST_UNAVAILABLE_LOG, now) {
        tracing::error!(error = %detail, "storage unavailable (further failures this second are only counted)");
    }
}

/// The second (Unix time) of the last "storage unavailable" log line.
static LAST_UNAVAILABLE_LOG: AtomicU64 = AtomicU64::new(0);

/// Whether `now_secs` is a new second for `last`, recording it: one caller per second gets `true`.
pub(crate) fn first_in_its_second(last: &AtomicU64, now_secs: u64) -> bool {
    last.swap(now_secs, Ordering::Relaxed) != now_secs
}

/// The store's contract (see [`StoreError`]): a conflict or an unknown row is the caller's to fix (409, 404, with
/// a generic description: the store's message names rows); a row that cannot be read back is this server's fault
/// (500); everything else is an outage the caller may retry through (503).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists(_) => {
                tracing::debug!(error = %err, "refused: conflicts with a stored row");
                Self::new(StatusCode::CONFLICT, "invalid_request", "it exists already")
            }
            StoreError::NotFound(_) => {
                tracing::debug!(error = %err, "refused: no such stored row");
                Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
            }
            StoreError::Corrupt { .. } => Self::internal(err),
            _ => Self::unavailable(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": self.code, "error_description": self.description}));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// Gives the client errors that do not come from a handler (413 from the body limit, 408 from the timeout, 405
/// for a wrong method, axum's plain-text rejections) the JSON body every handler error has, keeping their headers
/// (`Allow`, say). Server-side answers keep their own bodies: `/readyz` says in plain text why it is not ready. The
/// sign-in pages' errors are HTML written for a person, and stay so.
pub(crate) async fn json_error_bodies(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(axum::http::HeaderValue::as_bytes);
    let is_json = content_type == Some(b"application/json");
    let is_page = content_type.is_some_and(|v| v.starts_with(b"text/html"));
    if is_json || is_page || !status.is_client_error() {
        return response;
    }
    let description = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        StatusCode::REQUEST_TIMEOUT => "the request took too long",
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method",
        _ => status.canonical_reason().unwrap_or("the request was refused"),
    };
    let (parts, _) = response.into_parts();
    let mut answer = ApiError::new(status, "invalid_request", description).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_the_statuses_the_store_documents() {
        let answer = |err: StoreError| {
            let error = ApiError::from(err);
            (error.status(), error.code, error.description.into_owned())
        };
        let conflict = answer(StoreError::AlreadyExists("session \"s1\"".into()));
        assert_eq!(conflict, (StatusCode::CONFLICT, "invalid_request", "it exists already".into()));
        let unknown = answer(StoreError::NotFound("client \"c1\"".into()));
        assert_eq!(unknown, (StatusCode::NOT_FOUND, "not_found", "no such resource".into()));
        let corrupt = answer(StoreError::Corrupt { what: "revocation kind", detail: "\"x\" is no kind".into() });
        assert_eq!(corrupt, (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error".into()));
        let outages = [
            StoreError::Backend(Box::new(std::io::Error::other("connection refused"))),
            StoreError::Unavailable,
            StoreError::TimedOut(std::time::Duration::from_secs(2)),
        ];
        for outage in outages {
            let expected =
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "storage is unavailable; retry");
            assert_eq!(answer(outage), (expected.0, expected.1, expected.2.into()));
        }
    }

    #[test]
    fn one_storage_failure_a_second_is_logged() {
        let last = AtomicU64::new(0);
        assert!(first_in_its_second(&last, 100));
        assert!(!first_in_its_second(&last, 100), "the rest of that second is only counted");
        assert!(!first_in_its_second(&last, 100));
        assert!(first_in_its_second(&last, 101));
    }
}
