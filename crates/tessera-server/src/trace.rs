//! Request ids, and what a request's span learns as it is served.
//!
//! Every request has an id: the client's `X-Request-ID` when it is a sane one (1–128 visible ASCII characters,
//! no quote or backslash, so it can go into a log line or a JSON field as it is), otherwise one made here. The
//! id is echoed in the answer, attached to the request's span and, through [`current_request_id`], to the log
//! lines written while the request is served. The span itself is made by whoever serves the router (`tessera
//! serve` makes it when traces are exported); this module records the status and the id into it.
//!
//! The calls Tessera makes itself (JWKS fetches, who-am-I lookups, webhooks) pass the request on: its id, and
//! when traces are exported the current span's W3C `traceparent` ([`outgoing_headers`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tessera_model::SPAN_TARGET;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header a request id travels in.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// The id of the request being served on this task, if any (always visible ASCII: see [`acceptable`]).
#[must_use]
pub fn current_request_id() -> Option<HeaderValue> {
    REQUEST_ID.try_with(HeaderValue::clone).ok()
}

/// The headers that carry the current request on to a call Tessera makes: W3C `traceparent` (and `tracestate`)
/// naming the current span, when traces are exported, and `X-Request-ID` while a request is served. Empty when
/// there is neither.
#[must_use]
pub fn outgoing_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    if tracing::enabled!(target: SPAN_TARGET, tracing::Level::INFO) {
        let context = tracing::Span::current().context();
        TraceContextPropagator::new().inject_context(&context, &mut opentelemetry_http::HeaderInjector(&mut headers));
    }
    if let Some(id) = current_request_id() {
        headers.insert(X_REQUEST_ID, id);
    }
    headers
}

/// Whether a client's request id can be used as it is.
fn acceptable(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\')
}

/// A new request id: a prefix drawn once per process and a counter. Unique across nodes and restarts, cheap, and
/// not a secret (it is echoed to whoever sent the request), so the prefix comes from the randomly keyed hasher the
/// standard library seeds per process rather than from the injected generator a secret would need.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), std::process::id());
        format!("{seed:016x}")
    });
    let id = format!("{prefix}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed));
    // Hex digits and a dash: always a valid header value.
    HeaderValue::try_from(id).unwrap_or_else(|_| HeaderValue::from_static("unnamed"))
}

/// The request's id: the client's when acceptable (shared with the request's buffer, not copied), else a new one.
pub(crate) fn request_id_of(request: &Request) -> HeaderValue {
    match request.headers().get(X_REQUEST_ID).filter(|id| acceptable(id.as_bytes())) {
        Some(id) => id.clone(),
        None => new_request_id(),
    }
}

/// Serves `answer` with `id` in scope (for log lines), recording it and then the status in the request's span,
/// and echoes the id in the answer. One step of the one middleware every request passes (`ops::record`): a
/// middleware of its own would cost `/verify` a few percent.
pub(crate) async fn identified(id: HeaderValue, answer: impl std::future::Future<Output = Response>) -> Response {
    let traced = tracing::enabled!(target: SPAN_TARGET, tracing::Level::INFO);
    if traced {
        tracing::Span::current().record("request_id", id.to_str().unwrap_or_default());
    }
    let mut response = REQUEST_ID.scope(id.clone(), answer).await;
    if traced {
        tracing::Span::current().record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            tracing::Span::current().record("otel.status_code", "ERROR");
        }
    }
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_id_is_kept_only_when_it_is_safe_to_log_as_it_is() {
        for id in ["req-42", "0af7651916cd43dd8448eb211c80319c", "a:b/c=d+e.f_g"] {
            assert!(acceptable(id.as_bytes()), "{id}");
        }
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for id in ["", "with space", "quote\"", "back\\slash", "caf\u{e9}", "tab\there", long.as_str()] {
            assert!(!acceptable(id.as_bytes()), "{id:?}");
        }
    }

    #[test]
    fn made_request_ids_are_unique_and_acceptable() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| acceptable(id.as_bytes())));
    }
}
