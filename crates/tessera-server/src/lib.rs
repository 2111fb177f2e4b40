//! # tessera-server
//!
//! Tessera's HTTP service, built on axum. Routes are grouped by who calls them:
//!
//! - `auth/` — browsers and first-party apps: login, cookie refresh with CSRF, the session of a reloaded page,
//!   logout, logout everywhere, sessions;
//! - `oauth2/` — OAuth clients: the token endpoint (refresh grant);
//! - `admin/` — applications that authenticate users themselves: mint a session; operators: revocations, the
//!   migration, security events (`events` records them and sends them to a webhook);
//! - `gateway/` — gateways: `/verify` forward authentication;
//! - `wellknown/` — anyone: JWKS and authorization-server metadata;
//! - `ops` — operators: health, readiness, Prometheus metrics;
//! - `demo` — people trying Tessera out: the demo application at `/` (off with `demo: false`).
//!
//! [`app`] builds the router without a listener, so tests drive it in-process; [`serve`] runs it. The work that
//! keeps a node current between requests (sync, key reload, pruning) is [`start_background`]'s.
#![warn(missing_docs)]

mod admin;
mod auth;
mod background;
mod clients;
mod demo;
mod error;
mod events;
mod extract;
pub mod gateway;
pub mod issuers;
pub mod keys;
mod listen;
mod migration;
mod oauth2;
mod ops;
pub mod password;
mod repeated;
pub mod secrets;
mod series;
mod session;
pub mod settings;
mod state;
pub mod tls;
pub mod trace;
mod wellknown;

/// The clock, from `tessera-model`, so `tessera_server::clock::*` keeps working.
pub use tessera_model::clock;

use std::future::Future;
use std::sync::OnceLock;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use background::{forget_expired_sessions, forget_old_revocations, start_background, sync};
pub use clients::assertion_keys as client_assertion_keys;
pub use error::ApiError;
pub use events::{check_webhook_url, WebhookSettings};
pub use oauth2::client_auth::secret_hash as client_secret_hash;
pub use oauth2::request::check_redirect_uri;
pub use settings::{
    CompactRevocations, ExchangeRule, ForwardedHeaders, MigrationSettings, RateLimits, RouteRule, Settings,
    StalePolicy, TrustedIssuer,
};
pub use state::AppState;

/// The whole service as a router.
pub fn app(state: AppState) -> Router {
    let settings = state.settings().clone();
    let mut router = Router::new();
    if settings.demo {
        router = router.merge(demo::routes());
    }
    let mut router = router
        .merge(auth::routes())
        .merge(oauth2::routes())
        .merge(admin::routes())
        .merge(gateway::routes())
        .merge(wellknown::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::no_such_endpoint() });
    // Per-method measurements of the token and session paths, only where a migration is configured: they feed its
    // triggers and gates, and the layer costs `/verify` several percent of its throughput (BENCHMARKS.md).
    if settings.migration.is_some() {
        router = router.layer(axum::middleware::from_fn_with_state(state.clone(), migration::record));
    }
    let mut router = router
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        .layer(axum::middleware::from_fn(error::json_error_bodies))
        // Outside the limits, so requests they refuse are counted (and given an id) too.
        .layer(axum::middleware::from_fn(ops::record));
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value)));
    }
    if settings.tls {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    if !settings.allowed_origins.is_empty() {
        let origins: Vec<HeaderValue> =
            settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    HeaderName::from_static(auth::CSRF_HEADER),
                ]),
        );
    }
    // Requests are logged (at debug) with method, path and status: never headers, cookies, bodies, or the query
    // string, where a client may have put a token (`?access_token=`, RFC 6750 §2.3).
    router.layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<axum::body::Body>| {
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
    }))
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
            // In-process checks take microseconds; propagation takes milliseconds to a minute.
            let micros = [
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
            ];
            let propagation = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            let store = [5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 5.0];
            let full = |name: &str| Matcher::Full(name.to_owned());
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .set_buckets_for_metric(full("tessera_token_validation_duration_seconds"), &micros)
                .ok()?
                .set_buckets_for_metric(full("tessera_revocation_check_duration_seconds"), &micros)
                .ok()?
                .set_buckets_for_metric(full("tessera_revocation_propagation_seconds"), &propagation)
                .ok()?
                .set_buckets_for_metric(full("tessera_store_operation_duration_seconds"), &store)
                .ok()?
                .install_recorder()
                .map_err(|err| tracing::warn!(error = %err, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// Serves `app` on `listener` (over TLS when an acceptor is given) until `shutdown` resolves, then finishes the
/// requests in flight. Clients that are slow to shake hands or to send a request's head are cut off at the
/// settings' timeouts.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, &state, app(state.clone()), tls, shutdown).await
}

/// [`serve`] with the router given: [`app`]'s, wrapped in what the binary adds around it (a request span for
/// exported traces).
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    state: &AppState,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeouts = listen::Timeouts {
        handshake: state.settings().tls_handshake_timeout,
        header_read: state.settings().header_read_timeout,
    };
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Requests in flight are answered before the server stops: long polls must not make it wait.
        closing.close();
    };
    listen::serve(listener, tls, router, timeouts, shutdown).await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
