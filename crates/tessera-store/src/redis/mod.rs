//! Redis or Redis Cluster, shared by several Tessera nodes (Valkey works the same).
//!
//! # Keys
//!
//! Every key starts with `tessera:` and carries a hash tag, so that what one atomic step touches sits in one slot:
//!
//! | key | what |
//! | --- | --- |
//! | `tessera:{user:NAME}` | a user (hash) |
//! | `tessera:{client:ID}` | a client (hash) |
//! | `tessera:{client:ID}:assertion:JTI` | a used client assertion, collected once expired |
//! | `tessera:{sid:SID}` | a session: refresh-token family and rotation state (hash), expiring two days after it does |
//! | `tessera:{sub:SUB}:state` | the subject's "not before" instant (hash) |
//! | `tessera:{sub:SUB}:sids` | the subject's sessions (sorted set, by when each may be forgotten), expiring with the longest-lived |
//! | `tessera:{tessera-log}:…` | partition 0 of the revocation log (its entries, position counter, time index, committed position, revoked tokens), the number of partitions when more than one, the security events and their id counter |
//! | `tessera:{tessera-log-N}:…` | partition N of the revocation log, when it has several |
//! | `tessera:{tessera-index}:users`, `…:clients` | the names, for the listings |
//! | `tessera:{tessera-live-N}:sessions` | shard N (of 16, by the session id) of the live sessions (sorted set, by when each expires), for the active-sessions gauge |
//!
//! Names are escaped (`%`, `{`, `}`), so each tag is exactly the name and no two keys can collide.
//!
//! # Atomicity
//!
//! Each step runs as one Lua script (or one command) on one slot. Refresh rotation is `refresh.lua`, the port of
//! [`decide`](crate::decide) applied on the family's slot: concurrent presentations of one generation, on any
//! node, produce exactly one rotation. Steps that span slots are ordered so that a crash between two of them
//! leaves only harmless states, and the caller, who got an error, may retry (every step is idempotent):
//!
//! - a revocation (session, subject, token) is appended to the log *first*, then applied: a crash leaves a logged
//!   revocation not yet applied (retrying applies it; verifiers already honour it), never an applied one missing
//!   from the log. Reuse detection works the same way: the script only reports the theft, then the revocation and
//!   the security event are logged, then the family is marked revoked (a rotation in between is harmless: the mark
//!   kills the whole family). Concurrent calls may log one revocation twice; merging it is idempotent;
//! - a client change is applied *first*, then logged: verifiers reload clients when they see the entry, so the
//!   entry must follow the state it announces (logged first, a verifier would reload and keep the old state);
//! - a new user, client or session is added to its listing (users, clients, the subject's sessions, the live
//!   sessions) first, then created: a listed name with nothing behind it is skipped by the listings, and counted
//!   by the active-sessions gauge only until it would have expired. A revoked session leaves the live sessions
//!   after it is marked; the live-session index is written without `WAIT`, being only a gauge's.
//!
//! The subject's state is read just before the rotation script runs (it lives in other slots), as the PostgreSQL
//! backend's single-statement rotation reads it at the statement's start: a refresh racing a logout-everywhere may
//! still rotate once, and the family it rotates is dead to every later refresh and to every verifier.
//!
//! # Partitions of the log
//!
//! The log is one partition (`{tessera-log}`) unless [`RedisSettings::log_partitions`] says more: each partition a
//! hash tag of its own, so that on a Redis Cluster revocation writes spread over the masters instead of all taking
//! one slot's. A revocation goes to the partition of its target (`jti`, `sid`, `sub`, client id; by a hash every
//! node computes alike), so a token's entry is where [`Store::token_revoked`] looks. Positions count up within each
//! partition; readers keep one position per partition ([`LogCursor`]) and tell per partition whether the log went
//! back. Reuse detection logs its revocation to partition 0, in the same step as its security event. The number of
//! partitions is recorded in the store; a store configured with another number refuses to connect, and
//! [`RedisStore::repartition`] moves the entries to a new number, with every node stopped.
//!
//! # Durability
//!
//! After every write a caller may acknowledge, `WAIT wait_replicas` on the connection that made it (pipelined
//! with the write, so in a cluster it goes to the master that took it): fewer replicas within [`WAIT_TIMEOUT_MS`]
//! and the call fails, nothing acknowledged. With one replica per master (`wait_replicas = 1`), an acknowledged
//! refresh or revocation survives the loss of any single Redis node. `wait_replicas = 0` skips `WAIT`: a single
//! Redis is then durable only with `appendonly yes` and `appendfsync always`. Redis replication stays
//! asynchronous underneath: a write that failed its `WAIT` may still be visible until a failover drops it.
//!
//! # Propagation
//!
//! Appending to the log publishes the committed position on [`LOG_CHANNEL`] (classic Pub/Sub, which a cluster delivers to
//! every node); each store keeps one subscription, on any of the configured nodes, and signals
//! [`Store::log_changes`] on every message and on every (re)subscription.
//!
//! # Faults
//!
//! Every command goes through a circuit breaker ([`breaker`]): once Redis stops answering, calls fail at once
//! with [`StoreError::Unavailable`] (the server answers 503) instead of each waiting out the timeouts, and verifiers
//! keep answering from their in-process index. The log subscription reconnects on its own and is not guarded.
//!
//! # Layout of this module
//!
//! [`keys`] names every key; [`codec`] lays records out in hashes and JSON; [`scripts`] holds the Lua steps;
//! [`connection`] talks to Redis (breaker, `WAIT`, script retries); [`log`] appends to and follows the revocation
//! log and writes revocations in batches; [`events`] records and reads security events; this file is the [`Store`] itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::Value;

use self::breaker::Breaker;
pub use self::breaker::{BreakerSettings, BreakerState};
use self::codec::EventRecord;
use self::codec::{client_fields, flag, hex, pairs, refusal, session_fields, session_from_value, user_fields};
use self::connection::{Connection, Opener};
use self::keys::{
    assertion_key, client_key, document_key, family_key, live_sessions_key, live_sessions_shard, log_partition,
    sessions_key, set_members, user_key, LogKeys, CLIENTS_KEY, LIVE_SESSION_SHARDS, USERS_KEY,
};
use self::scripts::Scripts;
use crate::batch::PendingRevocation;
use crate::codec as records;
use crate::model::{
    AutomaticRevocation, Client, Document, Millis, NewSecurityEvent, NewSession, Provenance, RefreshOutcome,
    RefreshRules, Refusal, Revocation, SecurityEventKind, SecurityEventQuery, Session, SessionState,
    MAX_LOG_PARTITIONS,
};
use crate::{
    LogCursor, RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User, EXPIRED_SESSION_KEPT_MS,
};

mod breaker;
mod codec;
mod connection;
mod events;
mod keys;
mod log;
mod partitions;
mod replicas;
mod scripts;

/// How long a write waits for its replicas before it fails.
const WAIT_TIMEOUT_MS: u64 = 1_000;
/// The channel log growth is published on.
const LOG_CHANNEL: &str = "tessera:log";
/// Giving up on connecting to one node.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before subscribing again after the subscription was lost.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// Log entries read per round trip at most.
const LOG_PAGE: usize = 1_000;
/// Log entries one run of `prune_log.lua` forgets at most. Redis runs a script alone, every other client waiting
/// meanwhile, and the script costs about 13 µs an entry (Redis's SLOWLOG in the compressed day: 12–14 ms for
/// 1,000): 200 keep each run near 3 ms, so writes and reads slip in between runs.
const PRUNED_PER_SCRIPT: usize = 200;

/// How a store uses Redis, besides where it is (see [`RedisStore::connect_with`]).
#[derive(Debug, Clone, Copy)]
pub struct RedisSettings {
    /// The URLs are nodes of a Redis Cluster.
    pub cluster: bool,
    /// Replicas that must acknowledge each write (see [`RedisStore::connect`]).
    pub wait_replicas: u32,
    /// Connections for writes, used in turn. Redis serves one connection's commands in order and `WAIT` holds
    /// the connection until the replicas answer, so one connection would make every write wait for the one
    /// before it to be replicated.
    pub write_connections: usize,
    /// The circuit breaker around every call.
    pub breaker: BreakerSettings,
    /// Partitions of the revocation log (1 to [`MAX_LOG_PARTITIONS`]; see the module documentation). It must be the
    /// number the store records: [`RedisStore::repartition`] changes it.
    pub log_partitions: usize,
}

impl Default for RedisSettings {
    /// One Redis, writes waiting for one replica, 8 write connections, the breaker's defaults, one log partition.
    fn default() -> Self {
        Self {
            cluster: false,
            wait_replicas: 1,
            write_connections: 8,
            breaker: BreakerSettings::default(),
            log_partitions: 1,
        }
    }
}

/// The longest a session key may live (ten years): a bound for Redis's expiry arithmetic, not a policy.
const MAX_SESSION_TTL_MS: Millis = 10 * 365 * 86_400_000;

/// Sessions whose subject a store remembers, at most (about 100 bytes each).
const REMEMBERED_SUBJECTS: usize = 100_000;

/// The Redis backend: one Redis, or a Redis Cluster, shared by several Tessera nodes. Refresh rotation is one Lua
/// script on the session's slot; revocations are logged before they are applied; every acknowledged write has
/// been acknowledged by `wait_replicas` replicas (`WAIT`). The design notes at the top of `redis/mod.rs` give the key
/// layout and the order of the steps that span slots.
pub struct RedisStore {
    /// Writes, spread over several connections: Redis serves one connection's commands in order, and a `WAIT`
    /// holds its connection until the replicas answer, so on one connection every write would queue behind the
    /// previous write's replication (and behind a full second whenever a replica is away).
    writers: Vec<Connection>,
    next_writer: std::sync::atomic::AtomicUsize,
    /// Reads, on a connection of their own: never behind a `WAIT`.
    reader: Connection,
    /// Sessions' subjects, as read (see `subject_of`).
    subjects: std::sync::Mutex<HashMap<String, String>>,
    /// Revocations waiting to be written, and the turn to write them (see [`Store::revoke`]).
    breaker: Breaker,
    scripts: Scripts,
    wait_replicas: u32,
    /// Partitions of the revocation log (how many, and each).
    log_partitions: usize,
    log: Vec<log::Partition>,
    log_changes: tokio::sync::watch::Receiver<u64>,
    subscriber: tokio::task::JoinHandle<()>,
    /// The shards and their replicas online, as the probe last saw them (see [`replicas`]).
    shards: replicas::Shards,
    replica_probe: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
        self.replica_probe.abort();
    }
}

/// What the rotation script found (see [`RedisStore::rotate`]).
pub(crate) enum Rotation {
    /// Rotated, replayed or refused: the answer as it stands.
    Decided(RefreshOutcome),
    /// A rotated generation came back: nothing changed yet; the family as the script read it.
    Theft(Session),
}

impl RedisStore {
    /// Connects to one Redis (`urls` holds its one URL, `redis://host:port/db`) or to a Redis Cluster (`cluster`;
    /// `urls` lists some of its nodes, the client discovers the rest). Plain TCP on a trusted network.
    ///
    /// `wait_replicas`: how many replicas must acknowledge each write (`WAIT`, one second at most) before the
    /// store acknowledges it; 1 with a replica per master, so an acknowledged refresh or revocation survives the
    /// loss of any one node. 0 skips `WAIT`: a single Redis is then durable only when it runs with
    /// `appendonly yes` and `appendfsync always`.
    ///
    /// The circuit breaker has its [default settings](BreakerSettings::default).
    ///
    /// # Errors
    /// No URL or several for a single node, a bad URL, or no node answering.
    pub async fn connect(urls: &[String], cluster: bool, wait_replicas: u32) -> Result<Self, StoreError> {
        Self::connect_with(urls, RedisSettings { cluster, wait_replicas, ..RedisSettings::default() }).await
    }

    /// [`connect`](Self::connect), with all of these settings.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    /// As [`connect`](Self::connect); also a number of log partitions out of range, or other than the store
    /// records.
    pub async fn connect_with(urls: &[String], settings: RedisSettings) -> Result<Self, StoreError> {
        let store = Self::open(urls, settings).await?;
        store.check_partitions().await?;
        store.upgrade_events().await?;
        Ok(store)
    }

    /// Connects, checking nothing the store holds.
    async fn open(urls: &[String], settings: RedisSettings) -> Result<Self, StoreError> {
        let RedisSettings { cluster, wait_replicas, write_connections, breaker, log_partitions } = settings;
        if !(1..=MAX_LOG_PARTITIONS).contains(&log_partitions) {
            return Err(StoreError::backend(format!(
                "the revocation log can have 1 to {MAX_LOG_PARTITIONS} partitions, not {log_partitions}"
            )));
        }
        let open = Opener::new(urls, cluster, breaker.response_timeout)?;
        let reader = open.connection().await?;
        reader.query::<String>(&::redis::cmd("PING")).await?;
        let mut writers = Vec::with_capacity(write_connections.max(1));
        for _ in 0..write_connections.max(1) {
            writers.push(open.connection().await?);
        }
        let (changes, log_changes) = tokio::sync::watch::channel(0);
        let subscriber = tokio::spawn(log::subscribe(urls.to_vec(), changes));
        let breaker = Breaker::new(breaker);
        let shards = replicas::Shards::default();
        let replica_probe = tokio::spawn(replicas::watch(reader.clone(), cluster, Arc::clone(&shards), wait_replicas));
        let store = Self {
            writers,
            next_writer: std::sync::atomic::AtomicUsize::new(0),
            reader,
            subjects: std::sync::Mutex::default(),
            breaker,
            scripts: Scripts::new(),
            wait_replicas,
            log_partitions,
            log: (0..log_partitions)
                .map(|partition| log::Partition::new(LogKeys::of(partition, log_partitions)))
                .collect(),
            log_changes,
            subscriber,
            shards,
            replica_probe,
        };
        Ok(store)
    }

    /// The circuit breaker's state (see [`BreakerSettings`]).
    #[must_use]
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// A write command, durable once it returns.
    /// Applies [`decide`](crate::decide) to session `sid` in one script on its slot, given its subject's state:
    /// the rotation, replay or refusal, or — changing nothing — the reuse of a rotated generation, which the
    /// caller records and answers. The tiered store calls this with the subject's state from PostgreSQL.
    pub(crate) async fn rotate(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
        subject: &SubjectState,
    ) -> Result<Rotation, StoreError> {
        let args = [
            presented.to_string(),
            now.to_string(),
            rules.grace_ms.to_string(),
            rules.idle_timeout_ms.to_string(),
            subject.not_before.map(|at| at.to_string()).unwrap_or_default(),
            flag(subject.disabled),
        ];
        let (outcome, detail): (String, Value) = self.script(&self.scripts.refresh, &[family_key(sid)], &args).await?;
        Ok(match outcome.as_str() {
            "rotated" => Rotation::Decided(RefreshOutcome::Rotated(session_from_value(detail)?)),
            "replayed" => Rotation::Decided(RefreshOutcome::Replayed(session_from_value(detail)?)),
            "refused" => {
                Rotation::Decided(RefreshOutcome::Refused(refusal(&::redis::from_redis_value::<String>(detail)?)?))
            }
            "theft" => Rotation::Theft(session_from_value(detail)?),
            other => return Err(StoreError::corrupt("refresh script reply", format!("answered {other:?}"))),
        })
    }

    /// The subject of session `sid` (whose hash is `key`), remembered once read: a session's subject never
    /// changes, so a refresh saves a round trip. The memory is bounded: it starts over when full.
    async fn subject_of(&self, sid: &str, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(sub) = self.subjects.lock().ok().and_then(|known| known.get(sid).cloned()) {
            return Ok(Some(sub));
        }
        let sub: Option<String> = self.read(::redis::cmd("HGET").arg(key).arg("sub")).await?;
        if let (Some(sub), Ok(mut known)) = (&sub, self.subjects.lock()) {
            if known.len() >= REMEMBERED_SUBJECTS {
                known.clear();
            }
            known.insert(sid.to_owned(), sub.clone());
        }
        Ok(sub)
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        self.add_to(USERS_KEY, &user.username).await?;
        if !self.create(user_key(&user.username), None, user_fields(&user)?).await? {
            return Err(StoreError::AlreadyExists(format!("user {:?}", user.username)));
        }
        Ok(())
    }

    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.hash(&user_key(username)).await?.as_ref().map(records::user_from).transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let mut users = self.listed(&set_members(USERS_KEY), user_key, records::user_from).await?;
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        let not_found = || StoreError::NotFound(format!("user {username:?}"));
        if disabled {
            // The subject revocation first (logged, then applied), the flag last: a crash in between leaves the
            // user's tokens dead and the user still enabled, which retrying completes.
            let exists: bool = self.read(::redis::cmd("EXISTS").arg(user_key(username))).await?;
            if !exists {
                return Err(not_found());
            }
            let revocation = Revocation::Subject { sub: username.to_owned(), not_before: now };
            self.revoke(revocation, Provenance::automatic(AutomaticRevocation::UserDisabled), now).await?;
        }
        if !self.update(user_key(username), ["any", ""], pairs([("disabled", flag(disabled))])).await? {
            return Err(not_found());
        }
        Ok(())
    }

    async fn set_password(&self, username: &str, password_hash: String) -> Result<(), StoreError> {
        if !self.update(user_key(username), ["any", ""], pairs([("password_hash", password_hash)])).await? {
            return Err(StoreError::NotFound(format!("user {username:?}")));
        }
        Ok(())
    }

    async fn create_client(&self, client: Client) -> Result<(), StoreError> {
        self.add_to(CLIENTS_KEY, &client.client_id).await?;
        if !self.create(client_key(&client.client_id), None, client_fields(&client)?).await? {
            return Err(StoreError::AlreadyExists(format!("client {:?}", client.client_id)));
        }
        // Instant 0: a new client has no tokens to cut off; verifiers only learn that it exists.
        self.client_changed(&client.client_id, client.created_at, 0, AutomaticRevocation::ClientAdded).await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.hash(&client_key(client_id)).await?.as_ref().map(records::client_from).transpose()
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut clients = self.listed(&set_members(CLIENTS_KEY), client_key, records::client_from).await?;
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(clients)
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        if !self.update(client_key(client_id), ["any", ""], pairs([("disabled", flag(disabled))])).await? {
            return Err(StoreError::NotFound(format!("client {client_id:?}")));
        }
        // Re-enabling revives nothing: the tokens from before the disabling stay dead.
        let (instant, reason) =
            if disabled { (now, AutomaticRevocation::ClientDisabled) } else { (0, AutomaticRevocation::ClientEnabled) };
        self.client_changed(client_id, now, instant, reason).await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        let fields = pairs([("secret_hash", hex(&secret_hash))]);
        if !self.update(client_key(client_id), ["without", "jwks"], fields).await? {
            return Err(StoreError::NotFound(format!("client {client_id:?}")));
        }
        self.client_changed(client_id, now, now, AutomaticRevocation::ClientSecretRotated).await
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        if !self.update(client_key(client_id), ["with", "jwks"], pairs([("jwks", jwks)])).await? {
            return Err(StoreError::NotFound(format!("private_key_jwt client {client_id:?}")));
        }
        self.client_changed(client_id, now, now, AutomaticRevocation::ClientKeysReplaced).await
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        // Redis only collects the record; whether it still counts is decided by the caller's clock.
        // At most a century: Redis refuses expiry times past its clock's range.
        let ttl = expires_at.saturating_sub(now).saturating_add(1).clamp(1, 100 * 365 * 86_400_000);
        let args = [expires_at.to_string(), now.to_string(), ttl.to_string()];
        let first: i64 = self.script(&self.scripts.assertion, &[assertion_key(client_id, jti)], &args).await?;
        Ok(first == 1)
    }

    async fn create_session(&self, session: NewSession) -> Result<Session, StoreError> {
        let session = Session::new(session);
        let (sid, sub) = (&session.sid, &session.sub);
        // Redis forgets a session by itself (see `Store::forget_sessions_expired_before`), a while after it expires.
        let forgettable_at = session.expires_at.saturating_add(EXPIRED_SESSION_KEPT_MS);
        let ttl = forgettable_at.saturating_sub(session.created_at).clamp(1, MAX_SESSION_TTL_MS);
        let args = [sid.clone(), session.created_at.to_string(), forgettable_at.to_string(), ttl.to_string()];
        self.script::<i64>(&self.scripts.add_session, &[sessions_key(sub)], &args).await?;
        let live = ::redis::cmd("ZADD").arg(live_sessions_key(sid)).arg(session.expires_at).arg(sid).clone();
        self.unwaited(&live).await?;
        if !self.create(family_key(sid), Some(ttl), session_fields(&session)?).await? {
            return Err(StoreError::AlreadyExists(format!("session {sid:?}")));
        }
        Ok(session)
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        self.hash(&family_key(sid)).await?.as_ref().map(records::session_from).transpose()
    }

    async fn refresh(
        &self,
        sid: &str,
        presented: u64,
        now: Millis,
        rules: RefreshRules,
    ) -> Result<RefreshOutcome, StoreError> {
        let key = family_key(sid);
        let Some(sub) = self.subject_of(sid, &key).await? else {
            return Ok(RefreshOutcome::Refused(Refusal::Unknown));
        };
        // Read after this call began, so a logout-everywhere acknowledged before it is seen (module docs).
        let subject = self.subject(&sub).await?;
        match self.rotate(sid, presented, now, rules, &subject).await? {
            Rotation::Decided(outcome) => Ok(outcome),
            Rotation::Theft(family) => {
                // Logged (with the security event) first, then marked: never revoked without its log entry.
                let detail = format!("generation {presented} presented while generation {} is live", family.generation);
                let event = NewSecurityEvent::new(SecurityEventKind::RefreshTokenReuse, now, detail)
                    .about(family.sub.clone())
                    .in_session(sid);
                let provenance = Provenance::automatic(AutomaticRevocation::ReuseDetected);
                let revocation = Revocation::Session { sid: sid.to_owned() };
                self.append(&revocation, &provenance, now, Some(&EventRecord::of(&event))).await?;
                let (_, revoked) = self.mark_revoked(sid, now, &provenance.reason).await?;
                Ok(RefreshOutcome::TheftDetected(revoked.unwrap_or(family)))
            }
        }
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        // Group commit, per log partition: revocations queue; callers take turns, and whoever has the turn writes
        // everything queued for the partition (up to REVOCATION_BATCH per append) — its own revocation and those
        // that arrived meanwhile — so under load many revocations share one append, one commit and their WAITs,
        // and a lone one waits for nothing. A caller whose turn is cancelled (its client went away) drops the
        // answers of the batch it held; their callers submit again (revoking twice is harmless), a few times at most.
        let partition = self.partition_of(&revocation);
        let queue = &self.partition(partition)?.queue;
        for _ in 0..3 {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let pending =
                PendingRevocation { revocation: revocation.clone(), provenance: provenance.clone(), now, reply };
            queue.lock().map_err(|_| StoreError::Unavailable)?.push(pending);
            if let Some(answered) = self.take_turns(partition, answer).await? {
                return answered;
            }
        }
        Err(StoreError::Unavailable)
    }
    async fn live_sessions(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Session>, StoreError> {
        let not_before = self.not_before(sub).await?.unwrap_or(Millis::MIN);
        let idle_since = now.saturating_sub(rules.idle_timeout_ms);
        let key = sessions_key(sub);
        // A list not touched since sessions were scored is still a plain set (`add_session.lua` converts it).
        let sessions = if self.read::<String>(::redis::cmd("TYPE").arg(&key)).await? == "set" {
            set_members(&key)
        } else {
            ::redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone()
        };
        let mut families = self.listed(&sessions, family_key, records::session_from).await?;
        // The list may name a session that was never created, or a duplicate `sid` refused under another subject.
        families.retain(|f| {
            f.sub == sub
                && f.created_at > not_before
                && f.state == SessionState::Active
                && f.expires_at > now
                && f.last_used_at > idle_since
        });
        families.sort_by_key(|family| std::cmp::Reverse(family.created_at));
        Ok(families)
    }

    async fn subject(&self, sub: &str) -> Result<SubjectState, StoreError> {
        // The instant and the user's flag live in two slots; the two reads go out together.
        let disabled_cmd = ::redis::cmd("HGET").arg(user_key(sub)).arg("disabled").clone();
        let (not_before, disabled) =
            tokio::try_join!(self.not_before(sub), self.read::<Option<String>>(&disabled_cmd))?;
        Ok(SubjectState { not_before, disabled: disabled.as_deref() == Some("1") })
    }

    async fn revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.read_log(after, None, since, limit).await
    }

    async fn forget_sessions_expired_before(&self, _before: Millis, _limit: usize) -> Result<usize, StoreError> {
        // Every session key, and every subject's session set, expires by itself (see `create_session`).
        Ok(0)
    }

    async fn forget_revocations_recorded_before(&self, before: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        for partition in &self.log {
            let log = partition.keys.clone();
            let keys = [log.entries, log.by_time, log.revoked_tokens, log.committed];
            while forgotten < limit {
                let most = (limit - forgotten).min(PRUNED_PER_SCRIPT);
                let args = [before.to_string(), most.to_string()];
                let pruned =
                    usize::try_from(self.script::<i64>(&self.scripts.prune_log, &keys, &args).await?).unwrap_or(0);
                forgotten += pruned;
                if pruned < most {
                    break;
                }
            }
        }
        Ok(forgotten)
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let revoked_tokens = &self.partition(log_partition(jti, self.log_partitions))?.keys.revoked_tokens;
        self.read(::redis::cmd("HEXISTS").arg(revoked_tokens).arg(jti)).await
    }

    async fn log_head(&self) -> Result<LogCursor, StoreError> {
        // Readers see only committed positions (see `commit.lua`).
        self.committed_positions().await
    }

    async fn head_and_revocations_after(
        &self,
        after: &LogCursor,
        since: Millis,
        limit: usize,
    ) -> Result<(LogCursor, Vec<RevocationEntry>), StoreError> {
        let head = self.committed_positions().await?;
        let entries = self.read_log(after, Some(&head), since, limit).await?;
        Ok((head, entries))
    }

    async fn record_security_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        self.record_event(event).await
    }

    async fn security_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.query_events(query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read::<String>(&::redis::cmd("PING")).await.map(drop)
    }

    /// Two commands per shard of the live-session index: the sessions expired by `now` are dropped from it (so it
    /// stays as large as the live sessions), then the rest are counted. A session created by a version without the
    /// index is not counted.
    async fn live_session_count(&self, now: Millis) -> Result<Option<u64>, StoreError> {
        let mut live = 0_u64;
        for shard in 0..LIVE_SESSION_SHARDS {
            let key = live_sessions_shard(shard);
            self.unwaited(::redis::cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now)).await?;
            let count: u64 = self.read(::redis::cmd("ZCOUNT").arg(&key).arg(format!("({now}")).arg("+inf")).await?;
            live = live.saturating_add(count);
        }
        Ok(Some(live))
    }

    async fn document(&self, name: &str) -> Result<Option<Document>, StoreError> {
        let Some(fields) = self.hash(&document_key(name)).await? else { return Ok(None) };
        Ok(Some(Document { version: fields.parsed("version")?, contents: fields.text("contents")? }))
    }

    async fn replace_document(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, StoreError> {
        let expected = expected.map_or_else(String::new, |version| version.to_string());
        let written = self.script::<i64>(&self.scripts.document, &[document_key(name)], &[expected, contents]).await?;
        Ok(written == 1)
    }

    fn log_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.log_changes.clone())
    }

    fn health(&self) -> Option<&'static str> {
        match self.breaker_state() {
            BreakerState::Open => Some("Redis circuit breaker open"),
            BreakerState::Closed | BreakerState::HalfOpen => None,
        }
    }

    fn unwritable(&self) -> Vec<String> {
        let shards = self.shards.lock().map(|shards| shards.clone()).unwrap_or_default();
        shards.iter().filter_map(|shard| shard.unwritable_because(self.wait_replicas)).collect()
    }

    fn record_metrics(&self) {
        metrics::gauge!("tessera_redis_breaker_state").set(self.breaker_state().gauge());
        let shards = self.shards.lock().map(|shards| shards.clone()).unwrap_or_default();
        let unwritable = shards.iter().filter(|shard| shard.unwritable_because(self.wait_replicas).is_some()).count();
        for shard in &shards {
            let writable = shard.unwritable_because(self.wait_replicas).is_none();
            metrics::gauge!("tessera_redis_shard_acknowledges_writes", "slots" => shard.slots.clone())
                .set(if writable { 1.0 } else { 0.0 });
        }
        #[allow(clippy::cast_precision_loss)] // a handful of shards
        metrics::gauge!("tessera_redis_shards_unable_to_acknowledge_writes").set(unwritable as f64);
    }
}
