//! A deadline on every call of a store: one that stops answering (a paused PostgreSQL, a partition that keeps
//! TCP connections up, a Redis stuck in a long command) turns into [`StoreError::TimedOut`] — a 503 — after a
//! bounded time, instead of holding each request until the HTTP timeout and the background sync for ever.
//!
//! A call cut off this way has an unknown outcome, as any lost answer does: a refresh may have rotated (its retry
//! is a grace-window replay), a revocation may still be applied (revoking again changes nothing). Nothing
//! acknowledged is lost, since nothing was acknowledged.

use std::future::Future;
use std::time::Duration;

use crate::model::{
    Client, Document, Millis, NewSecurityEvent, NewSession, Provenance, RefreshOutcome, RefreshRules, Revocation,
    SecurityEventQuery, Session,
};
use crate::{RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User};

/// `inner`, with every call bounded by `limit`.
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S: Store> Deadline<S> {
    /// Bounds every call of `inner` by `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        tokio::time::timeout(self.limit, call).await.map_err(|_| StoreError::TimedOut(self.limit))?
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Deadline<S> {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        self.bounded(self.inner.create_user(user)).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.bounded(self.inner.user(username)).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.bounded(self.inner.users()).await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        self.bounded(self.inner.set_user_disabled(username, disabled, now)).await
    }

    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError> {
        self.bounded(self.inner.set_password(username, password_hash)).await
    }

    async fn create_client(&self, client: Client) -> Result<(), StoreError> {
        self.bounded(self.inner.create_client(client)).await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.bounded(self.inner.client(client_id)).await
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.bounded(self.inner.clients()).await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        self.bounded(self.inner.set_client_disabled(client_id, disabled, now)).await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        self.bounded(self.inner.set_client_secret(client_id, secret_hash, now)).await
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        self.bounded(self.inner.set_client_jwks(client_id, jwks, now)).await
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.bounded(self.inner.use_assertion(client_id, jti, expires_at, now)).await
    }

    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError> {
        self.bounded(self.inner.create_session(session)).await
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        self.bounded(self.inner.session(sid)).await
    }

    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError> {
        self.bounded(self.inner.refresh(sid, presented, now, rules)).await
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        self.bounded(self.inner.revoke(revocation, provenance, now)).await
    }

    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError> {
        self.bounded(self.inner.live_sessions(sub, now, rules)).await
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        self.bounded(self.inner.subject(sub)).await
    }

    async fn revocations_after(
        &self,
        after_id: i64,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.bounded(self.inner.revocations_after(after_id, since, limit)).await
    }

    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        self.bounded(self.inner.forget_sessions_expired_before(before, limit)).await
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.bounded(self.inner.token_revoked(jti)).await
    }

    async fn log_head(&self) -> Result<i64, StoreError> {
        self.bounded(self.inner.log_head()).await
    }

    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.bounded(self.inner.record_security_event(event)).await
    }

    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.bounded(self.inner.security_events(query)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(self.inner.ping()).await
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        self.bounded(self.inner.document(name)).await
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        self.bounded(self.inner.replace_document(name, expected, contents)).await
    }

    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.log_changes()
    }

    fn health(&self) -> Option<&'static str> {
        self.inner.health()
    }

    fn record_metrics(&self) {
        self.inner.record_metrics();
    }
}
