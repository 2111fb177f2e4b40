//! Liveness, readiness and metrics.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(render_metrics))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers and the revocation index synced recently (so tokens revoked elsewhere are known).
/// A store known to be down (Redis behind an open circuit breaker) is not asked: it is not ready, and says why.
///
/// A store that answers but has parts that cannot acknowledge writes (a Redis shard short of replicas) is still
/// ready, and `/readyz` names those parts: verification and the writes to every other part go on, and taking
/// every node out of rotation for it would turn the loss of some writes into the loss of all traffic.
async fn readyz(State(state): State<AppState>) -> Response {
    if let Some(reason) = state.store().health() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {reason}")).into_response();
    }
    let store = state.store().ping().await;
    let age_ms = state.clock().now_ms() - state.revocations().last_sync_ms();
    let fresh = age_ms <= (crate::state::millis(state.settings().reload_interval) * 20).max(5_000);
    match (store, fresh) {
        (Ok(()), true) => {
            let unwritable = state.store().unwritable();
            if unwritable.is_empty() {
                (StatusCode::OK, "ready").into_response()
            } else {
                (
                    StatusCode::OK,
                    format!("ready, degraded: writes cannot be acknowledged on\n{}", unwritable.join("\n")),
                )
                    .into_response()
            }
        }
        (Err(err), _) => {
            tracing::warn!(error = %err, "not ready: store");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
        (Ok(()), false) => (StatusCode::SERVICE_UNAVAILABLE, "revocation index not synced").into_response(),
    }
}

#[allow(clippy::cast_precision_loss)] // counts and seconds far below 2^52
async fn render_metrics(State(state): State<AppState>) -> Response {
    let index = state.revocations();
    metrics::gauge!("tessera_revocation_index_entries").set(index.len() as f64);
    metrics::gauge!("tessera_revocation_index_memory_bytes").set(index.memory_bytes() as f64);
    let now_ms = state.clock().now_ms();
    let age_ms = now_ms.saturating_sub(index.last_sync_ms());
    metrics::gauge!("tessera_revocation_index_age_seconds").set(age_ms as f64 / 1000.0);
    metrics::gauge!("tessera_revocation_index_stale_after_seconds")
        .set(state.settings().revocations_stale_after.as_secs_f64());
    let keys = state.keys().schedule();
    for (phase, count) in [("next", keys.next), ("active", keys.active), ("retired", keys.retired)] {
        metrics::gauge!("tessera_signing_keys", "phase" => phase).set(count as f64);
    }
    if let Some(due_at) = keys.rotation_due_at {
        metrics::gauge!("tessera_signing_key_rotation_due_seconds").set((due_at - now_ms.div_euclid(1000)) as f64);
    }
    state.store().record_metrics();
    process_collector().collect();
    match state.metrics() {
        Some(handle) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// The process_* metrics, described once.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    })
}

/// Counts requests by route, method and status and records their latency. Every label has a fixed set of values
/// whatever the client sends: a label value taken from the request would let anyone create series without end (a
/// Prometheus series lives until the process does). The route is the matched template (`/auth/sessions/{sid}`),
/// never the raw path; the status is a three-digit code.
///
/// It also gives each request its id (`crate::trace`): one middleware for both, since each one a request passes
/// costs `/verify` measurably.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    // The matched route shares its text with the router (an `Arc<str>`): cloned, not copied.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let id = crate::trace::request_id_of(&request);
    let started = std::time::Instant::now();
    let response = crate::trace::identified(id, next.run(request)).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let (requests, duration) = request_series().get(route, (method, status), || {
        let requests = metrics::counter!(
            "tessera_http_requests_total",
            "route" => route.to_owned(),
            "method" => method,
            "status" => status.to_string()
        );
        (requests, metrics::histogram!("tessera_http_request_duration_seconds", "route" => route.to_owned()))
    });
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

/// The per-request series by route, method and status: the request counter and the route's duration histogram,
/// found with one lookup.
type RequestSeries = crate::series::Resolved<(&'static str, u16), (metrics::Counter, metrics::Histogram)>;

fn request_series() -> &'static RequestSeries {
    static SERIES: std::sync::OnceLock<RequestSeries> = std::sync::OnceLock::new();
    SERIES.get_or_init(crate::series::Resolved::new)
}

/// The method as a label: the standard methods (RFC 9110 §9, and PATCH) by name, any other `other`.
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN.iter().find(|known| *known == method).map_or("other", Method::as_str)
}
