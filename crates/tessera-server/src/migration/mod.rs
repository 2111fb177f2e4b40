//! The migration from a legacy application's session cookies to Tessera's tokens, on this node.
//!
//! - The rollout (`tessera_migration::MigrationState`) lives in one store document. Every node reads it every
//!   `poll_interval` ([`keep_current`]) and applies a new version at once, so a change made on any node, by the CLI
//!   or by a trigger reaches every node within a second. Changes are compare-and-swap writes ([`update`]): two
//!   operators, or an operator and a trigger, never overwrite each other.
//! - Legacy session cookies are checked by a `tessera_legacy::LegacySessions` adapter (express-session in Redis,
//!   or the legacy application's who-am-I endpoint); `/verify` accepts them beside tokens, `/auth/migrate` turns
//!   one into a Tessera session.
//! - The token path's requests are measured here ([`record`]); [`watch_triggers`] returns the rollout to its
//!   previous phase when a trigger fires, and the admin API checks the gate before an advance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tessera_legacy::{LegacyError, LegacyIdentity, LegacySessions};
use tessera_migration::{Health, HealthWindow, Method, MigrationState, SetError, DOCUMENT};
use tessera_store::StoreError;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::settings::MigrationSettings;
use crate::state::AppState;

/// The rollout as this node last read it.
#[derive(Debug, Default)]
pub(crate) struct Current {
    pub(crate) state: MigrationState,
    /// The document's version; `None` before the first change is stored.
    pub(crate) version: Option<u64>,
}

/// This node's side of the migration.
pub(crate) struct Migration {
    sessions: Arc<dyn LegacySessions>,
    current: ArcSwap<Current>,
    window: HealthWindow,
    /// An automatic rollback in effect on this node and not stored yet, and the document version it was made
    /// from (the store may be what is failing). Written when the store answers again, unless another change was
    /// stored first, which then stands.
    pending: std::sync::Mutex<Option<(MigrationState, Option<u64>)>>,
    /// Distinct users per method, per minute.
    users: tessera_migration::DistinctUsers,
    started: Instant,
    /// Who this node is, in the history when its trigger fires.
    node: String,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Migration {
    pub(crate) fn new(settings: &MigrationSettings, sessions: Arc<dyn LegacySessions>) -> Self {
        // Counters that alerts take a rate of exist from the start, at zero, not from their first event.
        for trigger in ["error_rate", "p95_latency"] {
            metrics::counter!("tessera_migration_auto_rollbacks_total", "trigger" => trigger).increment(0);
        }
        metrics::counter!("tessera_migration_migrated_total").increment(0);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        Self {
            sessions,
            current: ArcSwap::from_pointee(Current::default()),
            window: HealthWindow::new(settings.triggers.window.max(settings.gates.window)),
            pending: std::sync::Mutex::new(None),
            users: tessera_migration::DistinctUsers::default(),
            started: Instant::now(),
            node: format!("tessera@{host}:{}", std::process::id()),
        }
    }

    pub(crate) fn current(&self) -> Arc<Current> {
        self.current.load_full()
    }

    pub(crate) fn sessions(&self) -> &dyn LegacySessions {
        &*self.sessions
    }

    fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The token path's health over `window`, as this node measured it.
    pub(crate) fn health(&self, window: Duration) -> Health {
        self.window.health(self.now_secs(), window)
    }

    /// Puts `read` in service if it is newer than what this node has; a changed rollout starts a fresh window, so
    /// triggers and gates judge each phase on its own requests.
    fn apply(&self, read: Current) {
        if read.version <= self.current.load().version {
            return;
        }
        self.install(read);
    }

    /// Puts `next` in service whatever its version: a rollback this node decided while the store cannot take it.
    fn install(&self, next: Current) {
        let read = next;
        let mine = self.current.load();
        if read.state.rollout != mine.state.rollout {
            self.window.clear();
            tracing::info!(
                rollout = %read.state.rollout.describe(),
                version = read.version,
                "migration rollout in effect on this node"
            );
        }
        metrics::gauge!("tessera_migration_phase").set(f64::from(read.state.rollout.phase.ordinal()));
        metrics::gauge!("tessera_migration_rollout_percent").set(read.state.rollout.percent);
        self.current.store(Arc::new(read));
    }

    /// `user_id` was authenticated by `method` (for the users-per-method gauge).
    pub(crate) fn saw(&self, method: Method, user_id: &str) {
        if !user_id.is_empty() {
            self.users.saw(method, user_id);
        }
    }

    /// The legacy session cookie of a request, if it carries one.
    ///
    /// # Errors
    /// 401 when the cookie's name occurs with two values (a cookie planted beside the real one).
    pub(crate) fn cookie<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, ApiError> {
        let values = headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok());
        tessera_legacy::find_cookie(values, self.sessions.cookie_name()).map_err(|_| {
            metrics::counter!("tessera_legacy_session_rejections_total", "reason" => "ambiguous_cookie").increment(1);
            ApiError::invalid_token()
        })
    }
}

/// Whose the legacy session `cookie` is. Failures are counted by reason; an unavailable legacy store is a 503 (the
/// adapter's cache decides whether a recent answer may stand in for it), never an identity.
///
/// # Errors
/// 401 for a cookie that is forged, malformed or names no session; 503 when the legacy store cannot answer.
pub(crate) async fn identify(
    state: &AppState,
    migration: &Migration,
    cookie: &str,
) -> Result<LegacyIdentity, ApiError> {
    let now = state.clock().now_ms();
    let span = tracing::info_span!(target: tessera_model::SPAN_TARGET, "legacy.identify");
    let identity = migration.sessions.identify(cookie, now).instrument(span).await.map_err(|err| {
        let reason = match &err {
            LegacyError::Invalid(_) => "invalid_cookie",
            LegacyError::NoSession => "no_session",
            LegacyError::Unavailable(_) => "legacy_unavailable",
        };
        metrics::counter!("tessera_legacy_session_rejections_total", "reason" => reason).increment(1);
        match err {
            LegacyError::Unavailable(detail) => {
                // At most a line a second: during an outage every request with a legacy cookie fails alike.
                let now = u64::try_from(state.clock().now_secs()).unwrap_or(0);
                if crate::error::first_in_its_second(&LAST_UNAVAILABLE_LOG, now) {
                    tracing::error!(error = %detail, "legacy sessions unavailable (further failures this second are only counted)");
                }
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the legacy session store is unavailable; retry",
                )
            }
            LegacyError::Invalid(_) | LegacyError::NoSession => ApiError::invalid_token(),
        }
    })?;
    // Roles travel comma-joined in X-User-Roles and into the `roles` claim: one that cannot is refused, not
    // dropped or passed on altered.
    if !identity.roles.iter().all(|role| tessera_model::is_safe_role(role)) {
        metrics::counter!("tessera_legacy_session_rejections_total", "reason" => "unsafe_roles").increment(1);
        return Err(ApiError::invalid_token());
    }
    Ok(identity)
}

/// The second of the last "legacy sessions unavailable" log line.
static LAST_UNAVAILABLE_LOG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where a user is steered by the rollout in effect: `attributes` are a legacy session's (none for a user who
/// logs in to Tessera).
pub(crate) fn steer(
    migration: &Migration,
    user_id: &str,
    roles: &[String],
    attributes: &std::collections::BTreeMap<String, String>,
) -> Method {
    migration.current().state.rollout.steer(user_id, roles, attributes)
}

/// Why a rollout change did not happen.
#[derive(Debug)]
pub(crate) enum UpdateError {
    /// The change itself was refused (invalid, or a closed gate).
    Refused(SetError),
    /// The stored document cannot be read or written.
    Store(ApiError),
}

/// Reads the stored rollout, applies `change` and writes it back if it changed, retrying when another writer got
/// there first; the result is in service on this node before this returns. `Ok((state, false))` when `change`
/// changed nothing.
pub(crate) async fn update(
    state: &AppState,
    mut change: impl FnMut(&mut MigrationState) -> Result<bool, SetError>,
) -> Result<(MigrationState, bool), UpdateError> {
    let Some(migration) = state.migration() else {
        return Err(UpdateError::Store(ApiError::no_such_endpoint()));
    };
    for _ in 0..8 {
        let read = read_document(state).await.map_err(|err| UpdateError::Store(err.into()))?;
        let mut next = read.state.clone();
        if !change(&mut next).map_err(UpdateError::Refused)? {
            migration.apply(read);
            return Ok((next, false));
        }
        let written = state
            .store()
            .replace_document(DOCUMENT, read.version, next.to_document())
            .await
            .map_err(|err| UpdateError::Store(err.into()))?;
        if written {
            let version = Some(read.version.map_or(1, |version| version + 1));
            migration.apply(Current { state: next.clone(), version });
            return Ok((next, true));
        }
    }
    Err(UpdateError::Store(ApiError::unavailable("the migration document kept changing under this update")))
}

async fn read_document(state: &AppState) -> Result<Current, StoreError> {
    match state.store().document(DOCUMENT).await? {
        None => Ok(Current::default()),
        Some(document) => {
            let parsed = MigrationState::from_document(&document.contents)
                .map_err(|detail| StoreError::Corrupt { what: "migration rollout", detail })?;
            Ok(Current { state: parsed, version: Some(document.version) })
        }
    }
}

/// Loads the stored rollout (the first time, before the node serves).
///
/// # Errors
/// When the store cannot be read or holds an unreadable rollout: the node does not start on a guess.
pub(crate) async fn load(state: &AppState) -> Result<(), StoreError> {
    if let Some(migration) = state.migration() {
        let read = read_document(state).await?;
        migration.apply(read);
    }
    Ok(())
}

/// Re-reads the stored rollout every `poll_interval`. A document that cannot be read leaves the rollout in
/// effect in place (and is logged once, then every so often).
pub(crate) async fn keep_current(state: AppState, poll_interval: Duration) {
    let Some(migration) = state.migration() else { return };
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = crate::repeated::Repeated::new("reading the migration rollout (the one in effect stays)");
    loop {
        tick.tick().await;
        let read = read_document(&state).await;
        failures.record(read.map(|read| migration.apply(read)).map_err(|err| err.to_string()));
    }
}

/// The period of the users-per-method gauge.
const USERS_PERIOD_SECS: u64 = 60;

/// Every second, judges the token path against the triggers; one that fires returns the rollout to its previous
/// phase, then rests for a window. Every minute, publishes how many distinct users each method
/// saw in it.
pub(crate) async fn watch_triggers(state: AppState, settings: MigrationSettings) {
    let Some(migration) = state.migration() else { return };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seconds: u64 = 0;
    let mut resting_until: Option<Instant> = None;
    loop {
        tick.tick().await;
        seconds += 1;
        if seconds.is_multiple_of(USERS_PERIOD_SECS) {
            migration.users.rotate();
            let (token, session) = migration.users.last();
            #[allow(clippy::cast_precision_loss)] // a gauge
            {
                metrics::gauge!("tessera_migration_users", "method" => "token").set(token as f64);
                metrics::gauge!("tessera_migration_users", "method" => "session").set(session as f64);
            }
        }
        persist_pending(&state, migration).await;
        // After an automatic rollback the triggers rest for one window, then judge afresh: requests that were
        // already failing when it fired (waiting out a store timeout, say) must not roll the rollout back a second
        // step. An incident that goes on is seen again once the rest is over.
        if let Some(until) = resting_until {
            if Instant::now() < until {
                continue;
            }
            resting_until = None;
            migration.window.clear();
        }
        let current = migration.current();
        if current.state.rollout.phase == tessera_migration::Phase::Off {
            continue;
        }
        let health = migration.health(settings.triggers.window);
        let Some(trigger) = settings.triggers.fired(&health) else { continue };
        let reason = trigger.to_string();
        let mut next = current.state.clone();
        if !next.auto_rollback(&migration.node, &reason, state.clock().now_ms()) {
            continue;
        }
        // In effect on this node at once, stored or not: the store may be what is failing. Other nodes see the
        // same failures and roll back by their own triggers, or read this rollback once it is stored.
        migration.install(Current { state: next.clone(), version: current.version });
        resting_until = Some(Instant::now() + settings.triggers.window);
        if let Ok(mut pending) = migration.pending.lock() {
            *pending = Some((next.clone(), current.version));
        }
        metrics::counter!("tessera_migration_auto_rollbacks_total", "trigger" => trigger.label()).increment(1);
        tracing::warn!(
            security_event = "migration_auto_rollback",
            trigger = trigger.label(),
            from = %current.state.rollout.describe(),
            to = %next.rollout.describe(),
            requests = health.requests,
            errors = health.errors,
            "migration trigger fired: {reason}; rollout returned to the previous phase"
        );
        state.events().migration_auto_rollback(&current.state.rollout.describe(), &next.rollout.describe(), &reason);
        persist_pending(&state, migration).await;
    }
}

/// Stores this node's pending automatic rollback, if any, as the successor of the version it was made from. A
/// store that still fails keeps it pending; a change stored meanwhile by someone else wins, and this node takes
/// it at its next poll.
async fn persist_pending(state: &AppState, migration: &Migration) {
    let Some((pending, base)) = migration.pending.lock().ok().and_then(|pending| pending.clone()) else { return };
    let outcome = state.store().replace_document(DOCUMENT, base, pending.to_document()).await;
    let stored = match outcome {
        Err(_) => return,
        Ok(stored) => stored,
    };
    if let Ok(mut slot) = migration.pending.lock() {
        *slot = None;
    }
    if stored {
        migration.apply(Current { state: pending, version: Some(base.map_or(1, |version| version + 1)) });
        tracing::info!("the automatic migration rollback is stored: every node follows it");
    } else {
        tracing::info!("another migration change was stored before this node's automatic rollback; it stands");
    }
}

/// Counts and times the requests of the two ways of authenticating — `/verify` (by what it was shown),
/// `/auth/refresh` and `/auth/migrate` (the token path) — and feeds the token path's into the health window.
pub(crate) async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let method = if path == "/verify" || path.starts_with("/verify/") {
        if request.headers().contains_key(header::AUTHORIZATION) {
            Some(Method::Token)
        } else {
            state
                .migration()
                .and_then(|migration| migration.cookie(request.headers()).ok().flatten())
                .map(|_| Method::Session)
        }
    } else if path == "/auth/refresh" || (path == "/auth/migrate" && request.method() == axum::http::Method::POST) {
        Some(Method::Token)
    } else {
        None
    };
    let Some(method) = method else { return next.run(request).await };
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let label = method.as_str();
    let (requests, duration) = auth_metrics(method);
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        metrics::counter!("tessera_auth_errors_total", "method" => label, "reason" => status_reason(status))
            .increment(1);
    }
    if let (Method::Token, Some(migration)) = (method, state.migration()) {
        migration.window.record(migration.now_secs(), elapsed, status.is_server_error());
    }
    response
}

/// The request counter and latency histogram of `method`, registered once: `/verify` is a hot path, and a
/// registration is a lookup in the recorder's map on every call. Taken on the first request, after `tessera serve`
/// has installed the recorder.
fn auth_metrics(method: Method) -> &'static (metrics::Counter, metrics::Histogram) {
    static TOKEN: std::sync::OnceLock<(metrics::Counter, metrics::Histogram)> = std::sync::OnceLock::new();
    static SESSION: std::sync::OnceLock<(metrics::Counter, metrics::Histogram)> = std::sync::OnceLock::new();
    let cell = match method {
        Method::Token => &TOKEN,
        Method::Session => &SESSION,
    };
    cell.get_or_init(|| {
        let label = method.as_str();
        (
            metrics::counter!("tessera_auth_requests_total", "method" => label),
            metrics::histogram!("tessera_auth_request_duration_seconds", "method" => label),
        )
    })
}

fn status_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        409 => "conflict",
        429 => "rate_limited",
        503 => "unavailable",
        500..=599 => "server_error",
        _ => "refused",
    }
}

/// Why a legacy session was not turned into a Tessera session.
#[derive(Debug)]
pub(crate) enum MigrateRefusal {
    /// The cookie is forged, malformed or names no session (or the user is disabled here).
    NoSession,
    /// The rollout does not steer the user to tokens.
    NotInRollout,
    /// The legacy store or Tessera's own failed; nothing was issued.
    Failed(ApiError),
}

/// A Tessera session made from a legacy one.
pub(crate) struct Migrated {
    pub(crate) issued: crate::session::Issued,
    /// Whether the legacy session was ended (as configured, and where the adapter can).
    pub(crate) legacy_ended: bool,
}

/// Turns the legacy session `cookie` into a Tessera session of `client_id`, with the legacy session's roles, if the
/// rollout steers its user to tokens; then ends the legacy session when configured. Shared by `/auth/migrate`
/// (browsers) and token exchange (other clients).
pub(crate) async fn start_session(
    state: &AppState,
    migration: &Migration,
    cookie: &str,
    client_id: String,
    user_agent: Option<String>,
) -> Result<Migrated, MigrateRefusal> {
    let identity = match identify(state, migration, cookie).await {
        Ok(identity) => identity,
        Err(err) if err.status() == StatusCode::SERVICE_UNAVAILABLE => return Err(MigrateRefusal::Failed(err)),
        Err(_) => return Err(MigrateRefusal::NoSession),
    };
    if steer(migration, &identity.user_id, &identity.roles, &identity.attributes) != Method::Token {
        return Err(MigrateRefusal::NotInRollout);
    }
    // A user this server also knows, and has disabled, does not get a session by another door.
    let user = state.store().user(&identity.user_id).await.map_err(|err| MigrateRefusal::Failed(err.into()))?;
    if user.is_some_and(|user| user.disabled) {
        return Err(MigrateRefusal::NoSession);
    }
    let request = crate::session::SessionRequest {
        sub: identity.user_id.clone(),
        client_id,
        scope: state.settings().user_scope.clone(),
        roles: identity.roles,
        claims: serde_json::Map::new(),
        user_agent,
    };
    let issued = crate::session::start(state, request).await.map_err(MigrateRefusal::Failed)?;
    metrics::counter!("tessera_migration_migrated_total").increment(1);
    let end = state.settings().migration.as_ref().is_some_and(|settings| settings.end_legacy_session);
    let legacy_ended = end
        && match migration
            .sessions
            .end(cookie)
            .instrument(tracing::info_span!(target: tessera_model::SPAN_TARGET, "legacy.end"))
            .await
        {
            Ok(ended) => ended,
            Err(err) => {
                // The Tessera session stands; the legacy one lives on until it expires or the user logs out.
                tracing::warn!(error = %err, sub = %identity.user_id, "migrated, but the legacy session could not be ended");
                false
            }
        };
    Ok(Migrated { issued, legacy_ended })
}
