//! A deadline on every call of a store, which is also where each call is timed and its failures counted: one that stops answering (a paused PostgreSQL, a partition that keeps
//! TCP connections up, a Redis stuck in a long command) turns into [`StoreError::TimedOut`] — a 503 — after a
//! bounded time, instead of holding each request until the HTTP timeout and the background sync for ever.
//!
//! A call cut off this way has an unknown outcome, as any lost answer does: a refresh may have rotated (its retry
//! is a grace-window replay), a revocation may still be applied (revoking again changes nothing). Nothing
//! acknowledged is lost, since nothing was acknowledged.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use crate::model::{
    Client, Document, Millis, NewSecurityEvent, NewSession, Provenance, RefreshOutcome, RefreshRules, Revocation,
    SecurityEventQuery, Session,
};
use crate::{LogCursor, RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User};

/// `inner`, with every call bounded by `limit`, timed and counted.
pub struct Deadline<S> {
    inner: S,
    limit: Option<Duration>,
    backend: &'static str,
    /// Each operation's latency histogram, resolved at the first call (so the metrics recorder must be installed
    /// before the store is first used): a lookup by name and labels on every store call costs a refresh (several
    /// calls) a few percent of its throughput.
    timers: OnceLock<HashMap<&'static str, metrics::Histogram>>,
}

/// The operations [`Deadline`] times: every method of [`Store`] it forwards.
const OPERATIONS: [&str; 30] = [
    "create_user",
    "user",
    "users",
    "set_user_disabled",
    "set_password",
    "create_client",
    "client",
    "clients",
    "set_client_disabled",
    "set_client_secret",
    "set_client_jwks",
    "use_assertion",
    "create_session",
    "session",
    "refresh",
    "revoke",
    "live_sessions",
    "subject",
    "revocations_after",
    "forget_sessions_expired_before",
    "forget_revocations_recorded_before",
    "token_revoked",
    "log_head",
    "head_and_revocations_after",
    "record_security_event",
    "security_events",
    "ping",
    "live_session_count",
    "document",
    "replace_document",
];

impl<S: Store> Deadline<S> {
    /// Bounds every call of `inner` by `limit`; `backend` names it in the metrics (`postgres`, `redis`, ...).
    pub fn new(inner: S, limit: Duration, backend: &'static str) -> Self {
        Self { inner, limit: Some(limit), backend, timers: OnceLock::new() }
    }

    /// Times and counts the calls of `inner` without bounding them: for the embedded SQLite, which has no
    /// network to stall on and whose long calls (a batch of forgotten sessions) must not be cut off.
    pub fn measured(inner: S, backend: &'static str) -> Self {
        Self { inner, limit: None, backend, timers: OnceLock::new() }
    }

    /// Runs one call of the store: its latency by operation goes to `tessera_store_operation_duration_seconds`,
    /// its failures (a timeout included) to `tessera_store_errors_total`.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            target: crate::model::SPAN_TARGET,
            "store",
            otel.name = %format_args!("store {operation}"),
            db.system = self.backend,
            db.operation = operation,
        );
        let call = tracing::Instrument::instrument(call, span);
        let answer = match self.limit {
            Some(limit) => {
                tokio::time::timeout(limit, call).await.map_err(|_| StoreError::TimedOut(limit)).and_then(|a| a)
            }
            None => call.await,
        };
        let timers = self.timers.get_or_init(|| {
            let timer = |operation| {
                metrics::histogram!(
                    "tessera_store_operation_duration_seconds",
                    "backend" => self.backend,
                    "operation" => operation
                )
            };
            OPERATIONS.iter().map(|operation| (*operation, timer(*operation))).collect()
        });
        let elapsed = started.elapsed().as_secs_f64();
        match timers.get(operation) {
            Some(timer) => timer.record(elapsed),
            // An operation missing from OPERATIONS is still timed, only at the cost of a lookup.
            None => metrics::histogram!(
                "tessera_store_operation_duration_seconds",
                "backend" => self.backend,
                "operation" => operation
            )
            .record(elapsed),
        }
        if answer.is_err() {
            let labels = [("backend", self.backend), ("operation", operation)];
            metrics::counter!("tessera_store_errors_total", &labels).increment(1);
        }
        answer
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Deadline<S> {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        self.bounded("create_user", self.inner.create_user(user)).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.bounded("user", self.inner.user(username)).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.bounded("users", self.inner.users()).await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        self.bounded("set_user_disabled", self.inner.set_user_disabled(username, disabled, now)).await
    }

    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError> {
        self.bounded("set_password", self.inner.set_password(username, password_hash)).await
    }

    async fn create_client(&self, client: Client) -> Result<(), StoreError> {
        self.bounded("create_client", self.inner.create_client(client)).await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.bounded("client", self.inner.client(client_id)).await
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.bounded("clients", self.inner.clients()).await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        self.bounded("set_client_disabled", self.inner.set_client_disabled(client_id, disabled, now)).await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        self.bounded("set_client_secret", self.inner.set_client_secret(client_id, secret_hash, now)).await
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        self.bounded("set_client_jwks", self.inner.set_client_jwks(client_id, jwks, now)).await
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.bounded("use_assertion", self.inner.use_assertion(client_id, jti, expires_at, now)).await
    }

    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError> {
        self.bounded("create_session", self.inner.create_session(session)).await
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        self.bounded("session", self.inner.session(sid)).await
    }

    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError> {
        self.bounded("refresh", self.inner.refresh(sid, presented, now, rules)).await
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        self.bounded("revoke", self.inner.revoke(revocation, provenance, now)).await
    }

    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError> {
        self.bounded("live_sessions", self.inner.live_sessions(sub, now, rules)).await
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        self.bounded("subject", self.inner.subject(sub)).await
    }

    async fn revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.bounded("revocations_after", self.inner.revocations_after(after, since, limit)).await
    }

    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        self.bounded("forget_sessions_expired_before", self.inner.forget_sessions_expired_before(before, limit)).await
    }

    async fn forget_revocations_recorded_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let forgetting = self.inner.forget_revocations_recorded_before(before, limit);
        self.bounded("forget_revocations_recorded_before", forgetting).await
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.bounded("token_revoked", self.inner.token_revoked(jti)).await
    }

    async fn log_head(&self) -> Result<LogCursor, StoreError> {
        self.bounded("log_head", self.inner.log_head()).await
    }

    async fn head_and_revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<(LogCursor, Vec<RevocationEntry>), StoreError> {
        let read = self.inner.head_and_revocations_after(after, since, limit);
        self.bounded("head_and_revocations_after", read).await
    }

    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.bounded("record_security_event", self.inner.record_security_event(event)).await
    }

    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.bounded("security_events", self.inner.security_events(query)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded("ping", self.inner.ping()).await
    }

    async fn live_session_count(&self, now: Millis) -> Result<Option<u64>, StoreError> {
        self.bounded("live_session_count", self.inner.live_session_count(now)).await
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        self.bounded("document", self.inner.document(name)).await
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        self.bounded("replace_document", self.inner.replace_document(name, expected, contents)).await
    }

    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.log_changes()
    }

    fn health(&self) -> Option<&'static str> {
        self.inner.health()
    }

    fn unwritable(&self) -> Vec<String> {
        self.inner.unwritable()
    }

    fn record_metrics(&self) {
        self.inner.record_metrics();
    }
}
