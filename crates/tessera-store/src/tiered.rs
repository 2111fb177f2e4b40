//! Tiered mode: Redis in front of PostgreSQL.
//!
//! Each engine holds what it is good at, and no fact lives in two places that could disagree:
//!
//! - **Redis holds the rotation state** of every session (generation, when it was issued, last use), the one
//!   write on the hot path: a refresh is one Lua script on the family's slot, as with the Redis backend.
//! - **PostgreSQL holds everything else, and is authoritative**: users, clients, the session records (who, when,
//!   whether revoked), subjects' "not before" instants, the revocation log verifiers follow, security events,
//!   signing keys. A revocation is acknowledged once PostgreSQL has committed it, in batches of up to 100.
//!
//! A refresh reads the session's record and its subject's state from PostgreSQL (one indexed read), then lets
//! Redis rotate with those facts. So a revocation committed before a refresh began is always seen, whether or not
//! Redis was reachable when it was made, and Redis never needs to be told about revocations or caught up after an
//! outage. A refresh that read PostgreSQL just before a revocation committed may still rotate, as if it came
//! first: after a session revocation its new tokens are refused everywhere (they carry the `sid`); after a
//! logout-everywhere its new access token lives out its lifetime, as with the other backends' in-flight refreshes,
//! while its refresh token is refused.
//!
//! When Redis is unreachable (its circuit breaker open), only logins and refreshes fail, with a clean 503:
//! verification (the in-process index fed by PostgreSQL's log), logout, revocation, introspection and
//! `client_credentials` go on. Rotations do not fall back to PostgreSQL, whose copy of a session's generation is
//! the one it was created with: rotating from it would take the live token for a reused one and revoke the
//! session, or accept a token Redis had already rotated. Reads of sessions fall back to PostgreSQL's record.
//!
//! What each acknowledgement survives: a revocation, any loss of Redis; a rotation, what `WAIT` gives on Redis
//! (the loss of one node, if writes wait for a replica). A rotation lost with a Redis master makes the client's
//! newest token unknown or its older one look reused: the session ends, never the reverse.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{
    Client, Document, Millis, NewSecurityEvent, NewSession, Provenance, RefreshOutcome, RefreshRules, Revocation,
    SecurityEventQuery, Session, SessionState,
};
use crate::redis::Rotation;
use crate::{
    LogCursor, PostgresStore, RedisStore, Refusal, RevocationEntry, SecurityEvent, Store, StoreError, SubjectState,
    User,
};

/// How often each node pings Redis. Only logins and refreshes need Redis, so without this a quiet node would
/// learn of an outage — and of the end of one, with its connections re-established — from its users' requests.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Redis (rotation state) in front of PostgreSQL (everything else); see the module docs.
pub struct TieredStore {
    rotations: Arc<RedisStore>,
    records: PostgresStore,
    probe: tokio::task::JoinHandle<()>,
}

impl TieredStore {
    /// Rotation state in `rotations`, everything else in `records`. Starts pinging Redis every
    /// [`PROBE_INTERVAL`] through its circuit breaker, so the breaker opens and closes (and its gauge says so)
    /// whether or not requests come; call within a Tokio runtime.
    #[must_use]
    pub fn new(rotations: RedisStore, records: PostgresStore) -> Self {
        let rotations = Arc::new(rotations);
        let probed = Arc::downgrade(&rotations);
        let probe = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PROBE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(redis) = probed.upgrade() else { return };
                // Failures are the breaker's to count and log.
                let _ = redis.ping().await;
            }
        });
        Self { rotations, records, probe }
    }
}

impl Drop for TieredStore {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// `recorded` (PostgreSQL's record) with the rotation state of `rotated` (Redis's).
fn with_rotation_of(mut recorded: Session, rotated: &Session) -> Session {
    recorded.generation = rotated.generation;
    recorded.generation_issued_at = rotated.generation_issued_at;
    recorded.last_used_at = rotated.last_used_at;
    recorded
}

#[async_trait::async_trait]
impl Store for TieredStore {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        self.records.create_user(user).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.records.user(username).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.records.users().await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        self.records.set_user_disabled(username, disabled, now).await
    }

    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError> {
        self.records.set_password(username, password_hash).await
    }

    async fn create_client(&self, client: Client) -> Result<(), StoreError> {
        self.records.create_client(client).await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.records.client(client_id).await
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.records.clients().await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        self.records.set_client_disabled(client_id, disabled, now).await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        self.records.set_client_secret(client_id, secret_hash, now).await
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        self.records.set_client_jwks(client_id, jwks, now).await
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.records.use_assertion(client_id, jti, expires_at, now).await
    }

    async fn create_session(&self, family: NewSession) -> Result<Session, StoreError> {
        // The record first: a session Redis could rotate always has one to be revoked by. If Redis then fails,
        // the record names a session no client was ever given.
        self.records.create_session(family.clone()).await?;
        self.rotations.create_session(family).await
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        let Some(recorded) = self.records.session(sid).await? else { return Ok(None) };
        match self.rotations.session(sid).await {
            Ok(Some(rotated)) => Ok(Some(with_rotation_of(recorded, &rotated))),
            // Redis lost it (its rotations with it): the record as created, which no later token matches.
            Ok(None) => Ok(Some(recorded)),
            Err(err) => {
                tracing::debug!(error = %err, "Redis unavailable; session read from PostgreSQL");
                Ok(Some(recorded))
            }
        }
    }

    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError> {
        let Some((recorded, subject)) = self.records.session_and_subject(sid).await? else {
            return Ok(RefreshOutcome::Refused(Refusal::Unknown));
        };
        if recorded.state != SessionState::Active {
            return Ok(RefreshOutcome::Refused(Refusal::Revoked));
        }
        match self.rotations.rotate(sid, presented, now, rules, &subject).await? {
            Rotation::Decided(outcome) => Ok(outcome),
            Rotation::Theft(rotated) => {
                // Revoked where verifiers and later refreshes look: PostgreSQL.
                let mut family = with_rotation_of(recorded, &rotated);
                self.records.record_theft(&mut family, presented, now).await?;
                Ok(RefreshOutcome::TheftDetected(family))
            }
        }
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        self.records.revoke(revocation, provenance, now).await
    }

    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError> {
        // PostgreSQL knows which sessions are revoked, expired or cut off by a subject instant; only Redis knows
        // when each was last used, so idleness is judged there.
        let unexpired = RefreshRules { idle_timeout_ms: Millis::MAX, ..rules };
        let recorded = self.records.live_sessions(sub, now, unexpired).await?;
        let rotated = match self.rotations.live_sessions(sub, now, rules).await {
            Ok(rotated) => rotated,
            Err(err) => {
                tracing::debug!(error = %err, "Redis unavailable; sessions listed from PostgreSQL");
                return self.records.live_sessions(sub, now, rules).await;
            }
        };
        Ok(recorded
            .into_iter()
            .filter_map(|record| {
                let rotated = rotated.iter().find(|family| family.sid == record.sid)?;
                Some(with_rotation_of(record, rotated))
            })
            .collect())
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        self.records.subject(sub).await
    }

    async fn revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.records.revocations_after(after, since, limit).await
    }

    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        // Redis's copies expire by themselves.
        self.records.forget_sessions_expired_before(before, limit).await
    }

    async fn forget_revocations_recorded_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        // The log is PostgreSQL's.
        self.records.forget_revocations_recorded_before(before, limit).await
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.records.token_revoked(jti).await
    }

    async fn log_head(&self) -> Result<LogCursor, StoreError> {
        self.records.log_head().await
    }

    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.records.record_security_event(event).await
    }

    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.records.security_events(query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Ready while PostgreSQL answers: without Redis, all but logins and refreshes still work (module docs).
        self.records.ping().await
    }

    async fn live_session_count(&self, now: Millis) -> Result<Option<u64>, StoreError> {
        self.records.live_session_count(now).await
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        self.records.document(name).await
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        self.records.replace_document(name, expected, contents).await
    }

    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.records.log_changes()
    }

    // No `health()` from the Redis part: with Redis away a tiered node still verifies, revokes and logs out
    // (PostgreSQL holds all of that), so its open breaker must not take the node out of rotation.
    fn unwritable(&self) -> Vec<String> {
        self.rotations.unwritable()
    }

    fn record_metrics(&self) {
        self.rotations.record_metrics();
    }
}
