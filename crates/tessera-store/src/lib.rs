//! # tessera-store
//!
//! The storage behind Tessera: users, sessions (refresh-token families), per-subject "not before" instants, the
//! revocation log verifiers follow, and security events. [`Store`] is the trait the server uses; [`SqliteStore`]
//! is the embedded, durable default; [`PostgresStore`] and [`RedisStore`] (Redis or Redis Cluster) are shared by
//! several nodes; [`TieredStore`] puts Redis, for rotations, in front of PostgreSQL, for everything else. The
//! refresh-rotation rules live in one pure function, [`decide`], that every backend applies inside its own atomic
//! step, and the `conformance` feature holds the one test suite every backend must pass. The types stored are
//! `tessera-model`'s, re-exported here.
//!
//! Each backend is a cargo feature: `sqlite` (the default), `postgres`, `redis`; the tiered store needs both
//! `postgres` and `redis`. A crate that needs only the trait builds none of them.

#[cfg(any(feature = "postgres", feature = "redis"))]
mod batch;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod codec;
mod deadline;
mod error;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(all(feature = "postgres", feature = "redis"))]
mod tiered;

#[cfg(feature = "conformance")]
pub mod conformance;

/// The data model, from `tessera-model`: `tessera_store::model::X` and the re-exports below keep working.
pub use tessera_model as model;

#[cfg(feature = "redis")]
pub use crate::redis::{BreakerSettings, BreakerState, RedisSettings, RedisStore};
pub use deadline::Deadline;
pub use error::{BackendCause, StoreError};
pub use model::{
    decide, AutomaticRevocation, Client, Decision, Document, LogCursor, Millis, NewSecurityEvent, NewSession,
    Provenance, RefreshOutcome, RefreshRules, Refusal, Revocation, RevocationEntry, SecurityEvent, SecurityEventKind,
    SecurityEventQuery, Session, SessionState, SubjectState, User,
};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
#[cfg(all(feature = "postgres", feature = "redis"))]
pub use tiered::TieredStore;

/// How long a session is kept after it expires before it is forgotten (see
/// [`Store::forget_sessions_expired_before`]): two days, so the access tokens issued by its last refresh (a day at
/// most, `tokens.access_ttl` is bounded so) have expired too — revoking a session that is no longer there would
/// log nothing and leave them valid — and a late refresh is refused as expired, not unknown.
pub const EXPIRED_SESSION_KEPT_MS: Millis = 2 * 86_400_000;

/// The longest access-token lifetime a server may configure: its tokens carry the `sid` of a session that must
/// still be known (as revoked or not) while they live, so they must be gone well before the session is forgotten.
pub const MAX_ACCESS_TTL_MS: Millis = EXPIRED_SESSION_KEPT_MS / 2;

/// Authoritative state, shared by every node that uses the same backend.
///
/// Every method that changes something returns only after the change is durable: a caller may acknowledge it.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds a user.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when the name is taken.
    async fn create_user(&self, user: User) -> Result<(), StoreError>;

    /// The user with this name.
    ///
    /// # Errors
    /// Backend failures.
    async fn user(&self, username: &str) -> Result<Option<User>, StoreError>;

    /// Every user, by name.
    ///
    /// # Errors
    /// Backend failures.
    async fn users(&self) -> Result<Vec<User>, StoreError>;

    /// Disables or re-enables a user. Disabling also ends every session and outstanding token of the user
    /// (a subject revocation at `now`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown user.
    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError>;

    /// Replaces a user's password hash.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown user.
    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError>;

    /// Adds a client.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when the id is taken.
    async fn create_client(&self, client: Client) -> Result<(), StoreError>;

    /// The client with this id.
    ///
    /// # Errors
    /// Backend failures.
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;

    /// Every client, by id.
    ///
    /// # Errors
    /// Backend failures.
    async fn clients(&self) -> Result<Vec<Client>, StoreError>;

    /// Disables or re-enables a client, and logs a [`Revocation::Client`] so verifiers reload it (disabling at
    /// `now` also ends its outstanding tokens). Adding a client logs one too.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown client.
    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError>;

    /// Replaces a client's secret hash, ending the tokens issued to it up to `now` (a leaked secret's tokens).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown client or one that authenticates with keys.
    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError>;

    /// Replaces the public keys of a `private_key_jwt` client, ending the tokens issued to it up to `now`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown client or one that authenticates with a secret.
    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError>;

    /// Records the use of client assertion `jti` of `client_id` (RFC 7523), valid until `expires_at`. `false` when
    /// it was used before: a replay, refused on every node sharing the store. Expired records are dropped along
    /// the way (an expired assertion fails verification anyway).
    ///
    /// # Errors
    /// Backend failures.
    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Starts a session at generation 0.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] for a duplicate `sid`.
    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError>;

    /// The session with this `sid`.
    ///
    /// # Errors
    /// Backend failures; [`StoreError::Corrupt`] for a record that cannot be read as written (a revocation instant
    /// without its reason, or the reverse, among others).
    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError>;

    /// Presents generation `presented` of session `sid`, applying [`decide`] atomically: any number of concurrent
    /// calls with the same generation produce exactly one rotation.
    ///
    /// # Errors
    /// Backend failures only; every refusal is an [`RefreshOutcome::Refused`].
    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError>;

    /// Forgets up to `limit` sessions that expired before `before`; how many. Their refresh tokens were refused
    /// already (expired) and still are (unknown); revocations and security events about them stay in the log.
    /// Redis forgets expired sessions by itself (each key expires with its session) and answers 0.
    ///
    /// # Errors
    /// Backend failures.
    async fn forget_sessions_expired_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError>;

    /// Forgets up to `limit` revocation log entries recorded before `before`, oldest first; how many. The
    /// newest entry always stays, whatever its age: it is the log's head, by which readers tell a log that went
    /// back. A token entry forgotten is no longer [`token_revoked`](Self::token_revoked). The caller picks
    /// `before` so that nothing forgotten can match a valid token and the audit history is kept as long as
    /// configured; each call is one short write, so pruning in batches never holds writers up for long.
    ///
    /// # Errors
    /// Backend failures (what was forgotten before one stays forgotten).
    async fn forget_revocations_recorded_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError>;

    /// Applies a revocation and logs it, with who and why, for verifiers and for audit. Sessions are marked
    /// revoked (sticky), subject instants only move forward, token and client entries are added. Returns whether
    /// it changed anything (a session that was live, an instant that moved); nothing is logged when it did not.
    ///
    /// # Errors
    /// Backend failures.
    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError>;

    /// The subject's usable sessions at `now`, newest first.
    ///
    /// # Errors
    /// Backend failures.
    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError>;

    /// The subject's "not before" instant and disabled flag.
    ///
    /// # Errors
    /// Backend failures.
    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError>;

    /// Revocations after the positions of `after` (in each partition) and recorded at or after `since`, at most
    /// `limit`, each partition's oldest first: a reader that advances its cursor past each entry it gets misses
    /// nothing. A log of several partitions interleaves them by record time.
    ///
    /// # Errors
    /// Backend failures.
    async fn revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError>;

    /// Whether access token `jti` is revoked: a [`Revocation::Token`] or [`Revocation::TokenById`] of it is in the
    /// log, whatever its expiry (an expired token fails verification anyway). The exact answer compact mode
    /// confirms its prefilter's positives with; it sees at least every entry
    /// [`revocations_after`](Self::revocations_after) has shown.
    ///
    /// # Errors
    /// Backend failures.
    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    /// The position of the newest entry of each partition of the revocation log a reader can see (0 for an empty
    /// one), one for each partition the log has. A reader that has applied more than this in a partition reads a
    /// log that went back there — a database restored from an older backup, a Redis shard lost with its replica —
    /// whose next entries would reuse positions it has passed, and must read that partition again from the start
    /// ([`LogCursor::restarted_where_behind`]).
    ///
    /// # Errors
    /// Backend failures.
    async fn log_head(&self) -> Result<LogCursor, StoreError>;

    /// [`log_head`](Self::log_head), then [`revocations_after`](Self::revocations_after) up to at least that head,
    /// as a reader syncing does: backends that read the head on the way (Redis, a committed position per
    /// partition) answer with one read of it instead of two.
    ///
    /// # Errors
    /// Backend failures.
    async fn head_and_revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<(LogCursor, Vec<RevocationEntry>), StoreError> {
        let head = self.log_head().await?;
        Ok((head, self.revocations_after(after, since, limit).await?))
    }

    /// Records a security event (reuse detection records its own, inside the refresh's atomic step) and returns
    /// it with its id: larger than every id recorded before it on any node.
    ///
    /// # Errors
    /// Backend failures.
    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError>;

    /// The security events `query` asks for, newest (highest id) first.
    ///
    /// # Errors
    /// Backend failures.
    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError>;

    /// Whether the backend answers.
    ///
    /// # Errors
    /// When it does not.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many sessions are live at `now` (not expired, not revoked by session id — a subject logged out
    /// everywhere still counts its sessions until they expire), when the backend can count them from an index at a
    /// bounded cost; `None` when it cannot. For the `tessera_sessions_active` gauge, read at most once a minute per
    /// node.
    ///
    /// # Errors
    /// Backend failures.
    async fn live_session_count(&self, now: Millis) -> Result<Option<u64>, StoreError> {
        let _ = now;
        Ok(None)
    }

    /// The small named document `name` (the keyring, the server secrets: text, sealed by its owner)
    /// and its version, if it exists.
    ///
    /// # Errors
    /// Backend failures.
    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError>;

    /// Writes document `name` if its version is still `expected` (`None`: only if it does not exist yet), as
    /// version `expected + 1` (or 1). `Ok(false)` when another writer got there first: nothing was written.
    ///
    /// # Errors
    /// Backend failures.
    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError>;

    /// A signal that the revocation log may have grown — on any node — for backends that can push it, so
    /// verifiers sync at once instead of at their next poll. `None` when readers must poll. Only the change
    /// matters, not the value; a lost connection also signals (readers resync, which is always safe).
    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Why the backend is known to be unusable right now without asking it — an open circuit breaker — so
    /// `/readyz` can say so at once. `None` when nothing is known against it (then [`ping`](Self::ping) decides).
    fn health(&self) -> Option<&'static str> {
        None
    }

    /// Parts of the backend that answer but cannot acknowledge writes now — a Redis shard with fewer replicas online
    /// than writes wait for — each described, for `/readyz`. Empty when every part can, or when the backend cannot
    /// tell.
    fn unwritable(&self) -> Vec<String> {
        Vec::new()
    }

    /// Sets the backend's own gauges (the Redis circuit breaker's state). Called on every metrics scrape, so they
    /// show from the first scrape on, whichever of the store and the metrics recorder was set up first.
    fn record_metrics(&self) {}
}

/// Puts the calling thread under Linux's `SCHED_BATCH` policy: a wake-up of it no longer preempts the thread
/// running on that core, it waits until a core frees up (at once if one is idle). For threads that serve others
/// in batches and should not interrupt the request handlers: the SQLite writer, a load generator beside the
/// server it measures.
///
/// # Errors
/// When the kernel refuses, or off Linux, where the thread keeps its policy.
pub fn sched_batch_for_this_thread() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
        };
        use thread_priority::{ThreadPriority, ThreadPriorityOsValue};
        // The crate also sets the thread's nice value: 0, the default. Under `nice -n N` an unprivileged process
        // keeps N (lowering it is refused, after the policy is set); a privileged one gets 0 for this thread.
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Os(ThreadPriorityOsValue::default()), batch)
            .map_err(|err| format!("{err:?}"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("SCHED_BATCH exists only on Linux".to_owned())
    }
}
