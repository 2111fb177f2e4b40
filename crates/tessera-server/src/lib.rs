//! # tessera-server
//!
//! Tessera's HTTP service, built on axum. Routes are grouped by who calls them:
//!
//! - `auth/` — browsers and first-party apps: login, cookie refresh with CSRF, logout, logout everywhere, sessions;
//! - `oauth2/` — OAuth clients: the token endpoint (refresh grant);
//! - `admin/` — applications that authenticate users themselves: mint a session;
//! - `gateway/` — gateways: `/verify` forward authentication;
//! - `wellknown/` — anyone: JWKS and authorization-server metadata;
//! - `ops` — operators: health, readiness, Prometheus metrics.
//!
//! [`app`] builds the router without a listener, so tests drive it in-process; [`serve`] runs it.

mod admin;
mod auth;
mod clients;
pub mod clock;
mod error;
mod extract;
pub mod gateway;
pub mod issuers;
pub mod keys;
mod listen;
mod oauth2;
mod ops;
pub mod password;
mod repeated;
pub mod secrets;
mod session;
pub mod settings;
mod state;
pub mod tls;
mod wellknown;

use std::future::Future;
use std::sync::OnceLock;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use clients::assertion_keys as client_assertion_keys;
pub use error::ApiError;
pub use oauth2::client_auth::secret_hash as client_secret_hash;
pub use settings::{
    CompactRevocations, ExchangeRule, ForwardedHeaders, RateLimits, RouteRule, Settings, StalePolicy, TrustedIssuer,
};
pub use state::AppState;

/// The whole service as a router.
pub fn app(state: AppState) -> Router {
    let settings = state.settings().clone();
    let mut router = Router::new()
        .merge(auth::routes())
        .merge(oauth2::routes())
        .merge(admin::routes())
        .merge(gateway::routes())
        .merge(wellknown::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        .layer(axum::middleware::from_fn(error::json_error_bodies))
        // Outside the limits, so requests they refuse are counted too.
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
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .map_err(|err| tracing::warn!(error = %err, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// Loads the revocation log into the index (from as far back as any live token reaches) and the registered
/// clients, then keeps the keys, the index and the clients current: changes made by `tessera` commands or other
/// nodes arrive within one `reload_interval`, or at once when the store pushes log growth.
///
/// # Errors
/// When the initial load fails.
pub async fn start_background(state: &AppState) -> Result<tokio::task::JoinHandle<()>, tessera_store::StoreError> {
    sync(state).await?;
    let mut fetchers: Vec<_> = state
        .0
        .issuers
        .iter()
        .map(|issuer| {
            tokio::spawn(issuers::keep_current(std::sync::Arc::clone(issuer), std::sync::Arc::clone(state.clock())))
        })
        .collect();
    fetchers.push(tokio::spawn(keep_forgetting_expired_sessions(state.clone())));
    fetchers.push(tokio::spawn(keep_forgetting_idle_rate_limits(state.clone())));
    let state = state.clone();
    Ok(tokio::spawn(async move {
        // The fetchers live as long as this task: aborting it aborts them.
        let _fetchers = AbortOnDrop(fetchers);
        let mut tick = tokio::time::interval(state.settings().reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A backend that pushes log growth (PostgreSQL's LISTEN/NOTIFY) makes revocations from other nodes
        // apply at once; the tick stays as the fallback and for keys.
        let mut log_changes = state.store().log_changes();
        // While the store is down every tick fails: say so once, then every so often, and when it recovers.
        let mut sync_failures = repeated::Repeated::new("revocation and client sync");
        let mut key_failures = repeated::Repeated::new("reloading signing keys (the current ones stay in service)");
        loop {
            let pushed = tokio::select! {
                _ = tick.tick() => false,
                changed = async {
                    match &mut log_changes {
                        Some(changes) => changes.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if !changed {
                        log_changes = None;
                    }
                    true
                }
            };
            sync_failures.record(sync(&state).await.map(drop));
            if pushed {
                continue;
            }
            let keys_state = state.clone();
            let now = state.clock().now_secs();
            let reloaded = tokio::task::spawn_blocking(move || keys_state.keys().refresh(now)).await;
            key_failures.record(match reloaded {
                Ok(outcome) => outcome.map(drop).map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            });
        }
    }))
}

/// How often a node forgets expired sessions.
const FORGET_SESSIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Sessions forgotten per store call, and calls per round at most: a store with a backlog (the first round after
/// an upgrade) catches up over a few rounds instead of holding its writer for long.
const FORGET_BATCH: usize = 10_000;
const FORGET_BATCHES_PER_ROUND: usize = 10;

/// Forgets sessions that expired more than [`tessera_store::EXPIRED_SESSION_KEPT_MS`] ago, in batches; how many. Without it, a
/// store would keep every session ever started. Every node runs it (each deletion is idempotent).
///
/// # Errors
/// Store failures (what was forgotten before one stays forgotten).
pub async fn forget_expired_sessions(state: &AppState) -> Result<usize, tessera_store::StoreError> {
    let before = state.clock().now_ms().saturating_sub(tessera_store::EXPIRED_SESSION_KEPT_MS);
    let mut forgotten = 0;
    for _ in 0..FORGET_BATCHES_PER_ROUND {
        let batch = state.store().forget_sessions_expired_before(before, FORGET_BATCH).await?;
        forgotten += batch;
        if batch < FORGET_BATCH {
            break;
        }
    }
    Ok(forgotten)
}

/// How often the rate limiters drop the addresses and usernames whose budget is full again: the budgets are per
/// minute, so a key idle for longer is the same as one never seen.
const FORGET_IDLE_RATE_LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

async fn keep_forgetting_idle_rate_limits(state: AppState) {
    let mut tick = tokio::time::interval(FORGET_IDLE_RATE_LIMITS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.0.limits.forget_idle();
    }
}

async fn keep_forgetting_expired_sessions(state: AppState) {
    let mut tick = tokio::time::interval(FORGET_SESSIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = repeated::Repeated::new("forgetting expired sessions");
    loop {
        tick.tick().await;
        let outcome = forget_expired_sessions(&state).await;
        if let Ok(forgotten) = &outcome {
            metrics::counter!("tessera_sessions_forgotten_total").increment(u64::try_from(*forgotten).unwrap_or(0));
        }
        failures.record(outcome.map(drop));
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Brings this node up to date with the store: applies new revocation log entries to the index, and reloads the
/// clients (and the audiences tokens may carry) when the log says a client changed, and on the first sync.
///
/// # Errors
/// Store failures; nothing is half-applied (the next sync resumes from the last applied log position).
pub async fn sync(state: &AppState) -> Result<(), tessera_store::StoreError> {
    let now = state.clock().now_ms();
    let index = state.revocations();
    let clients = &state.0.clients;
    // A log that went back (a restore from an older backup, a Redis shard lost with its replica) would hand out
    // positions this node has passed, and their entries would be skipped for good: read it all again instead.
    let head = state.store().log_head().await?;
    if head < index.applied_through() {
        tracing::error!(
            head,
            applied = index.applied_through(),
            "the revocation log went back (restored or lost): reading it again from the start"
        );
        metrics::counter!("tessera_revocation_log_rewound_total").increment(1);
        index.rewind();
        clients.mark_stale();
    }
    loop {
        let after = index.applied_through();
        let entries = state.store().revocations_after(after, index.retention().horizon(now), 10_000).await?;
        if entries.iter().any(|entry| matches!(entry.revocation, tessera_store::Revocation::Client { .. })) {
            clients.mark_stale();
        }
        index.apply(&entries, now);
        if entries.len() < 10_000 {
            break;
        }
    }
    if clients.take_stale() {
        reload_clients(state).await.inspect_err(|_| clients.mark_stale())?;
    }
    index.prune_if_due(now);
    index.mark_synced(now);
    Ok(())
}

/// Loads every registered client, and the audiences tokens of this server may carry: the user audience, every
/// client's and every token-exchange target.
async fn reload_clients(state: &AppState) -> Result<(), tessera_store::StoreError> {
    let clients = state.store().clients().await?;
    let mut audiences = vec![state.settings().audience.clone()];
    let exchanged = state.settings().exchange_rules.iter().map(|rule| rule.audience.clone());
    for audience in clients.iter().flat_map(|client| client.audiences.iter().cloned()).chain(exchanged) {
        if !audiences.contains(&audience) {
            audiences.push(audience);
        }
    }
    state.keys().set_audiences(audiences);
    state.0.clients.replace(clients, &state.settings().issuer, state.settings().leeway_secs);
    Ok(())
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
    let timeouts = listen::Timeouts {
        handshake: state.settings().tls_handshake_timeout,
        header_read: state.settings().header_read_timeout,
    };
    listen::serve(listener, tls, app(state), timeouts, shutdown).await
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
