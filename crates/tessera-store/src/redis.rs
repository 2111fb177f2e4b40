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
//! | `tessera:{tessera-log}:…` | the revocation log, its position counter, its time index, the security events, the revoked tokens |
//! | `tessera:{tessera-index}:users`, `…:clients` | the names, for the listings |
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
//! - a new user, client or session is added to its listing (users, clients, the subject's sessions) first, then
//!   created: a listed name with nothing behind it is skipped by the listings.
//!
//! The subject's state is read just before the rotation script runs (it lives in other slots), as the PostgreSQL
//! backend's single-statement rotation reads it at the statement's start: a refresh racing a logout-everywhere may
//! still rotate once, and the family it rotates is dead to every later refresh and to every verifier.
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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind, Value};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use self::breaker::{Breaker, Outcome};
pub use self::breaker::{BreakerSettings, BreakerState};
use crate::batch::{PendingRevocation, REVOCATION_BATCH};
use crate::model::{
    Client, Document, Family, Millis, NewFamily, Provenance, RefreshOutcome, RefreshRules, Refusal, Revocation,
};
use crate::{RevocationEntry, SecurityEvent, Store, StoreError, SubjectState, User, EXPIRED_SESSION_KEPT_MS};

mod breaker;

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

/// A Lua script, run by hash (`EVALSHA`) and sent whole (`EVAL`) when the node does not know it yet (a fresh node,
/// a promoted replica).
struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self { code, hash: ::redis::Script::new(code).get_hash().to_owned() }
    }

    fn command(&self, whole: bool, keys: &[String], args: &[String]) -> Cmd {
        let mut cmd = if whole { ::redis::cmd("EVAL") } else { ::redis::cmd("EVALSHA") };
        cmd.arg(if whole { self.code } else { self.hash.as_str() }).arg(keys.len()).arg(keys).arg(args);
        cmd
    }
}

/// The scripts, loaded once per store.
struct Scripts {
    create: Lua,
    add_session: Lua,
    update: Lua,
    refresh: Lua,
    revoke_family: Lua,
    not_before: Lua,
    append: Lua,
    commit: Lua,
    assertion: Lua,
    document: Lua,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Lua::new(include_str!("redis/create.lua")),
            add_session: Lua::new(include_str!("redis/add_session.lua")),
            update: Lua::new(include_str!("redis/update.lua")),
            refresh: Lua::new(include_str!("redis/refresh.lua")),
            revoke_family: Lua::new(include_str!("redis/revoke_family.lua")),
            not_before: Lua::new(include_str!("redis/not_before.lua")),
            append: Lua::new(include_str!("redis/append.lua")),
            commit: Lua::new(include_str!("redis/commit.lua")),
            assertion: Lua::new(include_str!("redis/assertion.lua")),
            document: Lua::new(include_str!("redis/document.lua")),
        }
    }
}

/// One code path for both deployments: a single node behind a reconnecting multiplexed connection, or a cluster
/// client that routes each command (and each pipeline) to the master owning its keys' slot.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self.clone() {
            Self::Single(mut conn) => cmd.query_async(&mut conn).await,
            Self::Cluster(mut conn) => cmd.query_async(&mut conn).await,
        }
    }

    async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        match self.clone() {
            Self::Single(mut conn) => pipe.query_async(&mut conn).await,
            Self::Cluster(mut conn) => pipe.query_async(&mut conn).await,
        }
    }
}

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
}

impl Default for RedisSettings {
    /// One Redis, writes waiting for one replica, 8 write connections, the breaker's defaults.
    fn default() -> Self {
        Self { cluster: false, wait_replicas: 1, write_connections: 8, breaker: BreakerSettings::default() }
    }
}

/// The longest a session key may live (ten years): a bound for Redis's expiry arithmetic, not a policy.
const MAX_SESSION_TTL_MS: Millis = 10 * 365 * 86_400_000;

/// Sessions whose subject a store remembers, at most (about 100 bytes each).
const REMEMBERED_SUBJECTS: usize = 100_000;

/// Opens connections to the configured Redis or Redis Cluster.
enum Opener {
    Single(::redis::Client, Duration),
    Cluster(Box<::redis::cluster::ClusterClient>),
}

impl Opener {
    /// Replies slower than `response_timeout` fail (it includes a write's wait for its replicas).
    fn new(urls: &[String], cluster: bool, response_timeout: Duration) -> Result<Self, StoreError> {
        if cluster {
            if urls.is_empty() {
                return Err(StoreError::Backend("Redis Cluster: no node URL".into()));
            }
            let client = ::redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                .connection_timeout(CONNECTION_TIMEOUT)
                .response_timeout(response_timeout)
                .build()
                .map_err(|err| StoreError::Backend(format!("Redis Cluster URLs: {err}")))?;
            return Ok(Self::Cluster(Box::new(client)));
        }
        let [url] = urls else {
            return Err(StoreError::Backend(format!(
                "a single Redis takes one URL, not {} (a cluster needs the cluster setting)",
                urls.len()
            )));
        };
        let client =
            ::redis::Client::open(url.as_str()).map_err(|err| StoreError::Backend(format!("Redis URL: {err}")))?;
        Ok(Self::Single(client, response_timeout))
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        Ok(match self {
            Self::Cluster(client) => Connection::Cluster(client.get_async_connection().await?),
            Self::Single(client, response_timeout) => {
                // Few retries per reconnection: a request fails fast while Redis is away, the next one tries again.
                let config = ::redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(2)
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(*response_timeout));
                Connection::Single(client.get_connection_manager_with_config(config).await?)
            }
        })
    }
}

impl From<RedisError> for StoreError {
    fn from(err: RedisError) -> Self {
        Self::Backend(format!("Redis: {err}"))
    }
}

impl From<::redis::ParsingError> for StoreError {
    fn from(err: ::redis::ParsingError) -> Self {
        Self::Backend(format!("unexpected Redis reply: {err}"))
    }
}

/// What a failed call shows about Redis, for the breaker: unreachable (refused, dropped, timed out, a cluster or
/// a master down, a server still loading its data), or reached (any other error is Redis answering: a script
/// error, a wrong type, a missing script).
fn outcome(err: &RedisError) -> Outcome {
    let unreachable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::BusyLoading
                )
        );
    if unreachable {
        Outcome::Unreachable
    } else {
        Outcome::Reached
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt Redis data: {what}"))
}

/// A name inside a hash tag: `%`, `{` and `}` escaped, so the tag ends exactly after the name.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('{', "%7B").replace('}', "%7D")
}

fn user_key(name: &str) -> String {
    format!("tessera:{{user:{}}}", escape(name))
}

fn client_key(id: &str) -> String {
    format!("tessera:{{client:{}}}", escape(id))
}

fn document_key(name: &str) -> String {
    format!("tessera:{{document:{}}}", escape(name))
}

fn assertion_key(client_id: &str, jti: &str) -> String {
    format!("tessera:{{client:{}}}:assertion:{jti}", escape(client_id))
}

fn family_key(sid: &str) -> String {
    format!("tessera:{{sid:{}}}", escape(sid))
}

fn subject_key(sub: &str) -> String {
    format!("tessera:{{sub:{}}}:state", escape(sub))
}

fn set_members(key: &str) -> Cmd {
    ::redis::cmd("SMEMBERS").arg(key).clone()
}

fn sessions_key(sub: &str) -> String {
    format!("tessera:{{sub:{}}}:sids", escape(sub))
}

const USERS_KEY: &str = "tessera:{tessera-index}:users";
const CLIENTS_KEY: &str = "tessera:{tessera-index}:clients";
const LOG_SEQ_KEY: &str = "tessera:{tessera-log}:seq";
const LOG_KEY: &str = "tessera:{tessera-log}:entries";
const LOG_TIME_KEY: &str = "tessera:{tessera-log}:by-time";
const LOG_HIGHEST_AT_KEY: &str = "tessera:{tessera-log}:highest-at";
const EVENTS_KEY: &str = "tessera:{tessera-log}:events";
/// The highest log position whose write the replicas acknowledged: readers never read past it (`commit.lua`).
const LOG_COMMITTED_KEY: &str = "tessera:{tessera-log}:committed";
/// The `jti`s of revoked access tokens (a hash, `jti` → 1), written with their log entries.
const REVOKED_TOKENS_KEY: &str = "tessera:{tessera-log}:revoked-tokens";

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend(err.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| corrupt(format!("JSON: {err}")))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn unhex(text: &str) -> Result<Vec<u8>, StoreError> {
    if !text.len().is_multiple_of(2) {
        return Err(corrupt("odd-length hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()).ok_or_else(|| corrupt("bad hex"))
        })
        .collect()
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

/// A stored hash, as its fields.
struct Fields(HashMap<String, String>);

impl Fields {
    fn from_value(value: Value) -> Result<Option<Self>, StoreError> {
        let map: HashMap<String, String> = ::redis::from_redis_value(value)?;
        Ok((!map.is_empty()).then_some(Self(map)))
    }

    fn text(&self, name: &str) -> Result<String, StoreError> {
        self.0.get(name).cloned().ok_or_else(|| corrupt(format!("field {name} missing")))
    }

    fn optional(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.0.get(name).ok_or_else(|| corrupt(format!("field {name} missing")))?.parse().map_err(|_| corrupt(name))
    }

    fn optional_parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        self.0.get(name).map(|text| text.parse().map_err(|_| corrupt(name))).transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.text(name)? == "1")
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        from_json(&self.text(name)?)
    }
}

/// Field/value pairs, flattened for `HSET`.
fn pairs<'a>(fields: impl IntoIterator<Item = (&'a str, String)>) -> Vec<String> {
    fields.into_iter().flat_map(|(name, value)| [name.to_owned(), value]).collect()
}

fn user_fields(user: &User) -> Result<Vec<String>, StoreError> {
    Ok(pairs([
        ("username", user.username.clone()),
        ("password_hash", user.password_hash.clone()),
        ("roles", to_json(&user.roles)?),
        ("disabled", flag(user.disabled)),
        ("created_at", user.created_at.to_string()),
    ]))
}

fn user_from(fields: &Fields) -> Result<User, StoreError> {
    Ok(User {
        username: fields.text("username")?,
        password_hash: fields.text("password_hash")?,
        roles: fields.json("roles")?,
        disabled: fields.flag("disabled")?,
        created_at: fields.parsed("created_at")?,
    })
}

fn client_fields(client: &Client) -> Result<Vec<String>, StoreError> {
    let mut fields = vec![
        ("client_id", client.client_id.clone()),
        ("secret_hash", hex(&client.secret_hash)),
        ("scopes", to_json(&client.scopes)?),
        ("audiences", to_json(&client.audiences)?),
        ("grants", to_json(&client.grants)?),
        ("disabled", flag(client.disabled)),
        ("created_at", client.created_at.to_string()),
    ];
    fields.extend(client.jwks.clone().map(|jwks| ("jwks", jwks)));
    Ok(pairs(fields))
}

fn client_from(fields: &Fields) -> Result<Client, StoreError> {
    Ok(Client {
        client_id: fields.text("client_id")?,
        secret_hash: unhex(&fields.text("secret_hash")?)?,
        scopes: fields.json("scopes")?,
        audiences: fields.json("audiences")?,
        grants: fields.json("grants")?,
        disabled: fields.flag("disabled")?,
        jwks: fields.optional("jwks"),
        created_at: fields.parsed("created_at")?,
    })
}

/// A new family's fields; the optional ones (scope, user agent, revocation) are absent rather than empty.
fn family_fields(family: &Family) -> Result<Vec<String>, StoreError> {
    let s = &family.session;
    let mut fields = vec![
        ("sid", s.sid.clone()),
        ("sub", s.sub.clone()),
        ("client_id", s.client_id.clone()),
        ("roles", to_json(&s.roles)?),
        ("claims", to_json(&s.claims)?),
        ("created_at", s.created_at.to_string()),
        ("expires_at", s.expires_at.to_string()),
        ("last_used_at", family.last_used_at.to_string()),
        ("generation", family.generation.to_string()),
        ("generation_issued_at", family.generation_issued_at.to_string()),
    ];
    fields.extend(s.scope.clone().map(|scope| ("scope", scope)));
    fields.extend(s.user_agent.clone().map(|agent| ("user_agent", agent)));
    fields.extend(family.revoked_at.map(|at| ("revoked_at", at.to_string())));
    fields.extend(family.revoked_reason.clone().map(|reason| ("revoked_reason", reason)));
    Ok(pairs(fields))
}

fn family_from(fields: &Fields) -> Result<Family, StoreError> {
    Ok(Family {
        session: NewFamily {
            sid: fields.text("sid")?,
            sub: fields.text("sub")?,
            client_id: fields.text("client_id")?,
            scope: fields.optional("scope"),
            roles: fields.json("roles")?,
            claims: fields.json("claims")?,
            user_agent: fields.optional("user_agent"),
            created_at: fields.parsed("created_at")?,
            expires_at: fields.parsed("expires_at")?,
        },
        last_used_at: fields.parsed("last_used_at")?,
        generation: fields.parsed("generation")?,
        generation_issued_at: fields.parsed("generation_issued_at")?,
        revoked_at: fields.optional_parsed("revoked_at")?,
        revoked_reason: fields.optional("revoked_reason"),
    })
}

fn family_from_value(value: Value) -> Result<Family, StoreError> {
    family_from(&Fields::from_value(value)?.ok_or_else(|| corrupt("a script returned an empty family"))?)
}

/// A revocation log entry as stored (its position is the member's prefix and the score).
#[derive(Serialize, Deserialize)]
struct LogRecord {
    at: Millis,
    kind: String,
    value: String,
    instant: Option<Millis>,
    actor: String,
    reason: String,
}

/// A security event as stored.
#[derive(Serialize, Deserialize)]
struct EventRecord {
    at: Millis,
    kind: String,
    sub: String,
    sid: String,
    detail: String,
}

fn refusal(reason: &str) -> Result<Refusal, StoreError> {
    Ok(match reason {
        "unknown" => Refusal::Unknown,
        "revoked" => Refusal::Revoked,
        "expired" => Refusal::Expired,
        "idle" => Refusal::Idle,
        "logged_out_everywhere" => Refusal::LoggedOutEverywhere,
        "user_disabled" => Refusal::UserDisabled,
        other => return Err(corrupt(format!("refresh script refused for {other:?}"))),
    })
}

/// The Redis backend: one Redis, or a Redis Cluster, shared by several Tessera nodes. Refresh rotation is one Lua
/// script on the session's slot; revocations are logged before they are applied; every acknowledged write has
/// been acknowledged by `wait_replicas` replicas (`WAIT`). The design notes at the top of `redis.rs` give the key
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
    revocations: std::sync::Mutex<Vec<PendingRevocation>>,
    revocation_turn: tokio::sync::Mutex<()>,
    breaker: Breaker,
    scripts: Scripts,
    wait_replicas: u32,
    log_changes: tokio::sync::watch::Receiver<u64>,
    subscriber: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// Keeps one subscription to [`LOG_CHANNEL`], on the configured nodes in turn, and bumps `changes` on every
/// message and on every (re)subscription (messages may have been missed meanwhile).
/// What the rotation script found (see [`RedisStore::rotate`]).
pub(crate) enum Rotation {
    /// Rotated, replayed or refused: the answer as it stands.
    Decided(RefreshOutcome),
    /// A rotated generation came back: nothing changed yet; the family as the script read it.
    Theft(Family),
}

async fn subscribe(urls: Vec<String>, changes: tokio::sync::watch::Sender<u64>) {
    let bump = || changes.send_modify(|n| *n = n.wrapping_add(1));
    for url in urls.iter().cycle() {
        let subscribed = async {
            let client = ::redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(LOG_CHANNEL).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECTION_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                bump();
                let mut messages = pubsub.into_on_message();
                while messages.next().await.is_some() {
                    bump();
                }
                tracing::warn!("Redis subscription to the revocation log lost; subscribing again");
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "subscribing to the Redis revocation log failed; retrying"),
            Err(_) => tracing::warn!("subscribing to the Redis revocation log timed out; retrying"),
        }
        bump();
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
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
    pub async fn connect_with(urls: &[String], settings: RedisSettings) -> Result<Self, StoreError> {
        let RedisSettings { cluster, wait_replicas, write_connections, breaker } = settings;
        let open = Opener::new(urls, cluster, breaker.response_timeout)?;
        let reader = open.connection().await?;
        reader.query::<String>(&::redis::cmd("PING")).await?;
        let mut writers = Vec::with_capacity(write_connections.max(1));
        for _ in 0..write_connections.max(1) {
            writers.push(open.connection().await?);
        }
        let (changes, log_changes) = tokio::sync::watch::channel(0);
        let subscriber = tokio::spawn(subscribe(urls.to_vec(), changes));
        let breaker = Breaker::new(breaker);
        Ok(Self {
            writers,
            next_writer: std::sync::atomic::AtomicUsize::new(0),
            reader,
            subjects: std::sync::Mutex::default(),
            revocations: std::sync::Mutex::default(),
            revocation_turn: tokio::sync::Mutex::default(),
            breaker,
            scripts: Scripts::new(),
            wait_replicas,
            log_changes,
            subscriber,
        })
    }

    /// The circuit breaker's state (see [`BreakerSettings`]).
    #[must_use]
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// Runs one call to Redis through the breaker: refused at once while it is open, its outcome reported.
    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisWriteError> {
        let permit = self.breaker.admit(Instant::now()).map_err(RedisWriteError::Store)?;
        let result = call.await;
        if permit.record(result.as_ref().map_or_else(outcome, |_| Outcome::Reached), Instant::now()) {
            self.reconnect_all().await;
        }
        result.map_err(RedisWriteError::Redis)
    }

    /// Brings every connection back after an outage, before the call that closed the breaker returns: a
    /// connection learns that its socket died only when it is next used, and that use fails; left alone, the
    /// first request after the outage on each writer would fail. A failed PING starts the reconnection, the
    /// second waits for it.
    async fn reconnect_all(&self) {
        let ping = ::redis::cmd("PING");
        let connections = self.writers.iter().chain(std::iter::once(&self.reader));
        futures_util::future::join_all(connections.map(|connection| async {
            if connection.query::<String>(&ping).await.is_err() {
                let _ = connection.query::<String>(&ping).await;
            }
        }))
        .await;
    }

    /// Runs a write command, then (pipelined, on the same connection) `WAIT`s for the replicas. Errors when fewer
    /// acknowledged it: the caller must not acknowledge the write.
    async fn write(&self, cmd: Cmd) -> Result<Value, RedisWriteError> {
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd);
        if self.wait_replicas > 0 {
            pipe.cmd("WAIT").arg(self.wait_replicas).arg(WAIT_TIMEOUT_MS);
        }
        let turn = self.next_writer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let writer = self.writers.get(turn % self.writers.len().max(1)).unwrap_or(&self.reader);
        let mut replies = self.guarded(writer.pipeline(&pipe)).await?.into_iter();
        let reply = replies.next().ok_or_else(|| RedisWriteError::Store(corrupt("empty pipeline reply")))?;
        if self.wait_replicas > 0 {
            let acknowledged: i64 = replies
                .next()
                .map(::redis::from_redis_value)
                .transpose()
                .map_err(|err| RedisWriteError::Store(err.into()))?
                .unwrap_or(0);
            if acknowledged < i64::from(self.wait_replicas) {
                return Err(RedisWriteError::Store(StoreError::Backend(format!(
                    "only {acknowledged} of {} Redis replicas acknowledged the write within {WAIT_TIMEOUT_MS} ms; \
                     not acknowledged",
                    self.wait_replicas
                ))));
            }
        }
        Ok(reply)
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
            "rotated" => Rotation::Decided(RefreshOutcome::Rotated(family_from_value(detail)?)),
            "replayed" => Rotation::Decided(RefreshOutcome::Replayed(family_from_value(detail)?)),
            "refused" => {
                Rotation::Decided(RefreshOutcome::Refused(refusal(&::redis::from_redis_value::<String>(detail)?)?))
            }
            "theft" => Rotation::Theft(family_from_value(detail)?),
            other => return Err(corrupt(format!("refresh script answered {other:?}"))),
        })
    }

    async fn command<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        let reply = self.write(cmd).await.map_err(StoreError::from)?;
        Ok(::redis::from_redis_value(reply)?)
    }

    /// Runs a script on its keys' slot, durable once it returns.
    async fn script<T: FromRedisValue>(&self, lua: &Lua, keys: &[String], args: &[String]) -> Result<T, StoreError> {
        let reply = match self.write(lua.command(false, keys, args)).await {
            Err(RedisWriteError::Redis(err)) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.write(lua.command(true, keys, args)).await
            }
            other => other,
        }
        .map_err(StoreError::from)?;
        Ok(::redis::from_redis_value(reply)?)
    }

    async fn read<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        Ok(self.guarded(self.reader.query(cmd)).await?)
    }

    async fn hash(&self, key: &str) -> Result<Option<Fields>, StoreError> {
        Fields::from_value(self.read(::redis::cmd("HGETALL").arg(key)).await?)
    }

    /// Creates a hash unless it exists: `false` when it did.
    async fn create(&self, key: String, ttl_ms: Option<Millis>, fields: Vec<String>) -> Result<bool, StoreError> {
        let args: Vec<String> = std::iter::once(ttl_ms.unwrap_or(0).to_string()).chain(fields).collect();
        Ok(self.script::<i64>(&self.scripts.create, &[key], &args).await? == 1)
    }

    /// Updates an existing hash, guarded (see `update.lua`): `false` when missing or the guard failed.
    async fn update(&self, key: String, guard: [&str; 2], fields: Vec<String>) -> Result<bool, StoreError> {
        let args = guard.iter().map(|part| (*part).to_owned()).chain(fields).collect::<Vec<_>>();
        Ok(self.script::<i64>(&self.scripts.update, &[key], &args).await? == 1)
    }

    /// Adds a name to a set (a listing, a subject's sessions).
    async fn add_to(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.command::<i64>(::redis::cmd("SADD").arg(set).arg(member).clone()).await.map(drop)
    }

    /// Every hash whose name `members` lists, skipping names with nothing behind them.
    async fn listed<T>(
        &self,
        members: &Cmd,
        key: fn(&str) -> String,
        parse: fn(&Fields) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let names: Vec<String> = self.read(members).await?;
        let hashes = futures_util::future::try_join_all(names.iter().map(|name| {
            let key = key(name);
            async move { self.hash(&key).await }
        }))
        .await?;
        hashes.iter().flatten().map(parse).collect()
    }

    /// Appends to the revocation log (and the security events), publishing the growth.
    async fn append(
        &self,
        revocation: &Revocation,
        provenance: &Provenance,
        now: Millis,
        event: Option<&EventRecord>,
    ) -> Result<(), StoreError> {
        self.append_all(&[(revocation, provenance, now)], event).await
    }

    /// Appends entries to the revocation log in one step (and the security event, if any), publishing the growth.
    async fn append_all(
        &self,
        entries: &[(&Revocation, &Provenance, Millis)],
        event: Option<&EventRecord>,
    ) -> Result<(), StoreError> {
        let keys =
            [LOG_SEQ_KEY, LOG_KEY, LOG_TIME_KEY, LOG_HIGHEST_AT_KEY, EVENTS_KEY, REVOKED_TOKENS_KEY].map(str::to_owned);
        let mut args = vec![event.map(to_json).transpose()?.unwrap_or_default()];
        for (revocation, provenance, at) in entries {
            let (kind, value, instant) = revocation.to_columns();
            let record = LogRecord {
                at: *at,
                kind: kind.to_owned(),
                value: value.to_owned(),
                instant,
                actor: provenance.actor.clone(),
                reason: provenance.reason.clone(),
            };
            args.push(at.to_string());
            args.push(to_json(&record)?);
            args.push(match revocation {
                Revocation::Token { jti, .. } | Revocation::TokenById { jti, .. } => jti.clone(),
                _ => String::new(),
            });
        }
        // Two steps, each acknowledged by the replicas: the entries, then the committed position that lets readers
        // see them. A failover can lose entries that were appended but not yet acknowledged, and the next append
        // then reuses their positions; readers never saw them, so they skip nothing.
        let position: i64 = self.script(&self.scripts.append, &keys, &args).await?;
        let commit = [position.to_string(), LOG_CHANNEL.to_owned()];
        self.script::<i64>(&self.scripts.commit, &[LOG_COMMITTED_KEY.to_owned()], &commit).await.map(drop)
    }

    /// The subject's "not before" instant.
    async fn not_before(&self, sub: &str) -> Result<Option<Millis>, StoreError> {
        let value: Option<String> = self.read(::redis::cmd("HGET").arg(subject_key(sub)).arg("not_before")).await?;
        value.map(|text| text.parse().map_err(|_| corrupt("not_before"))).transpose()
    }

    /// Marks a family revoked (sticky): whether it changed, and the family after (`None` when unknown).
    async fn mark_revoked(&self, sid: &str, now: Millis, reason: &str) -> Result<(bool, Option<Family>), StoreError> {
        let (changed, family): (i64, Value) =
            self.script(&self.scripts.revoke_family, &[family_key(sid)], &[now.to_string(), reason.to_owned()]).await?;
        let family = Fields::from_value(family)?.as_ref().map(family_from).transpose()?;
        Ok((changed == 1, family))
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

    /// Waits for the turn to write queued revocations and writes them until `answer` has come: `None` when it was
    /// dropped unanswered (the turn that took it was cancelled).
    async fn take_turns(
        &self,
        mut answer: tokio::sync::oneshot::Receiver<Result<bool, StoreError>>,
    ) -> Result<Option<Result<bool, StoreError>>, StoreError> {
        let _turn = self.revocation_turn.lock().await;
        loop {
            match answer.try_recv() {
                Ok(answered) => return Ok(Some(answered)),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Ok(None),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<PendingRevocation> = {
                let mut queue = self.revocations.lock().map_err(|_| StoreError::Unavailable)?;
                let take = queue.len().min(REVOCATION_BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                // Taken by a turn that is still writing it (answers arrive before a turn ends, so this turn
                // only comes after that one was cancelled): wait for the answer or its loss.
                return Ok(answer.await.ok());
            }
            self.revoke_batch(batch).await;
        }
    }

    /// Whether a revocation would change anything: a live session, an instant that moves forward, or a token or
    /// client entry (always added).
    async fn would_change(&self, revocation: &Revocation) -> Result<bool, StoreError> {
        Ok(match revocation {
            Revocation::Session { sid } => {
                let state: (Option<String>, Option<String>) =
                    self.read(::redis::cmd("HMGET").arg(family_key(sid)).arg("sid").arg("revoked_at")).await?;
                matches!(state, (Some(_), None))
            }
            // Instants only move forward: an older instant arriving late never un-revokes anything.
            Revocation::Subject { sub, not_before } => {
                self.not_before(sub).await?.is_none_or(|current| current < *not_before)
            }
            Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => true,
        })
    }

    /// Applies a logged revocation to the state it changes; whether it changed it.
    async fn apply(&self, revocation: &Revocation, provenance: &Provenance, now: Millis) -> Result<bool, StoreError> {
        match revocation {
            Revocation::Session { sid } => Ok(self.mark_revoked(sid, now, &provenance.reason).await?.0),
            Revocation::Subject { sub, not_before } => {
                let moved: i64 =
                    self.script(&self.scripts.not_before, &[subject_key(sub)], &[not_before.to_string()]).await?;
                Ok(moved == 1)
            }
            Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => Ok(true),
        }
    }

    /// [`Store::revoke`] for a batch: log first (every revocation that would change something, in one append),
    /// then apply (see the module documentation); each caller gets its own answer.
    async fn revoke_batch(&self, batch: Vec<PendingRevocation>) {
        let wanted = futures_util::future::join_all(batch.iter().map(|p| self.would_change(&p.revocation))).await;
        let mut logged = Vec::new();
        for (pending, wanted) in batch.into_iter().zip(wanted) {
            match wanted {
                Ok(true) => logged.push(pending),
                Ok(false) => drop(pending.reply.send(Ok(false))),
                Err(err) => drop(pending.reply.send(Err(err))),
            }
        }
        if logged.is_empty() {
            return;
        }
        let entries: Vec<_> = logged.iter().map(|p| (&p.revocation, &p.provenance, p.now)).collect();
        if let Err(err) = self.append_all(&entries, None).await {
            // Nothing acknowledged: every caller in the batch gets the error and may retry.
            let why = err.to_string();
            for pending in logged {
                let _ = pending.reply.send(Err(StoreError::Backend(why.clone())));
            }
            return;
        }
        let applied =
            futures_util::future::join_all(logged.iter().map(|p| self.apply(&p.revocation, &p.provenance, p.now)))
                .await;
        for (pending, applied) in logged.into_iter().zip(applied) {
            let _ = pending.reply.send(applied);
        }
    }

    /// Logs a client change at `now`, ending its tokens issued up to `not_before` — after the change is applied.
    async fn client_changed(
        &self,
        client_id: &str,
        now: Millis,
        not_before: Millis,
        reason: &str,
    ) -> Result<(), StoreError> {
        let revocation = Revocation::Client { client_id: client_id.to_owned(), not_before };
        self.append(&revocation, &Provenance::new("tessera", reason), now, None).await
    }
}

/// Why a call failed: Redis itself (a missing script is retried whole), or the store's own checks (too few
/// replicas, an open circuit breaker).
enum RedisWriteError {
    Redis(RedisError),
    Store(StoreError),
}

impl From<RedisWriteError> for StoreError {
    fn from(err: RedisWriteError) -> Self {
        match err {
            RedisWriteError::Redis(err) => err.into(),
            RedisWriteError::Store(err) => err,
        }
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
        self.hash(&user_key(username)).await?.as_ref().map(user_from).transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let mut users = self.listed(&set_members(USERS_KEY), user_key, user_from).await?;
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
            self.revoke(revocation, Provenance::new("tessera", "user_disabled"), now).await?;
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
        self.client_changed(&client.client_id, client.created_at, 0, "client_added").await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.hash(&client_key(client_id)).await?.as_ref().map(client_from).transpose()
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut clients = self.listed(&set_members(CLIENTS_KEY), client_key, client_from).await?;
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(clients)
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool, now: Millis) -> Result<(), StoreError> {
        if !self.update(client_key(client_id), ["any", ""], pairs([("disabled", flag(disabled))])).await? {
            return Err(StoreError::NotFound(format!("client {client_id:?}")));
        }
        // Re-enabling revives nothing: the tokens from before the disabling stay dead.
        let (instant, reason) = if disabled { (now, "client_disabled") } else { (0, "client_enabled") };
        self.client_changed(client_id, now, instant, reason).await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: Vec<u8>, now: Millis) -> Result<(), StoreError> {
        let fields = pairs([("secret_hash", hex(&secret_hash))]);
        if !self.update(client_key(client_id), ["without", "jwks"], fields).await? {
            return Err(StoreError::NotFound(format!("client {client_id:?}")));
        }
        self.client_changed(client_id, now, now, "client_secret_rotated").await
    }

    async fn set_client_jwks(&self, client_id: &str, jwks: String, now: Millis) -> Result<(), StoreError> {
        if !self.update(client_key(client_id), ["with", "jwks"], pairs([("jwks", jwks)])).await? {
            return Err(StoreError::NotFound(format!("private_key_jwt client {client_id:?}")));
        }
        self.client_changed(client_id, now, now, "client_keys_replaced").await
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

    async fn create_family(&self, family: NewFamily) -> Result<Family, StoreError> {
        let family = Family::new(family);
        let (sid, sub) = (&family.session.sid, &family.session.sub);
        // Redis forgets a session by itself (see `Store::forget_sessions_expired_before`), a while after it expires.
        let forgettable_at = family.session.expires_at.saturating_add(EXPIRED_SESSION_KEPT_MS);
        let ttl = forgettable_at.saturating_sub(family.session.created_at).clamp(1, MAX_SESSION_TTL_MS);
        let args = [sid.clone(), family.session.created_at.to_string(), forgettable_at.to_string(), ttl.to_string()];
        self.script::<i64>(&self.scripts.add_session, &[sessions_key(sub)], &args).await?;
        if !self.create(family_key(sid), Some(ttl), family_fields(&family)?).await? {
            return Err(StoreError::AlreadyExists(format!("session {sid:?}")));
        }
        Ok(family)
    }

    async fn family(&self, sid: &str) -> Result<Option<Family>, StoreError> {
        self.hash(&family_key(sid)).await?.as_ref().map(family_from).transpose()
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
                let event = EventRecord {
                    at: now,
                    kind: "refresh_token_reuse".into(),
                    sub: family.session.sub.clone(),
                    sid: sid.to_owned(),
                    detail: format!("generation {presented} presented while generation {} is live", family.generation),
                };
                let provenance = Provenance::new("tessera", "reuse_detected");
                self.append(&Revocation::Session { sid: sid.to_owned() }, &provenance, now, Some(&event)).await?;
                let (_, revoked) = self.mark_revoked(sid, now, "reuse_detected").await?;
                Ok(RefreshOutcome::TheftDetected(revoked.unwrap_or(family)))
            }
        }
    }

    async fn revoke(&self, revocation: Revocation, provenance: Provenance, now: Millis) -> Result<bool, StoreError> {
        // Group commit: revocations queue; callers take turns, and whoever has the turn writes everything queued
        // (up to REVOCATION_BATCH per append) — its own revocation and those that arrived meanwhile — so under
        // load many revocations share one append, one commit and their WAITs, and a lone one waits for nothing.
        // A caller whose turn is cancelled (its client went away) drops the answers of the batch it held; their
        // callers submit again (revoking twice is harmless), a few times at most.
        for _ in 0..3 {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let pending =
                PendingRevocation { revocation: revocation.clone(), provenance: provenance.clone(), now, reply };
            self.revocations.lock().map_err(|_| StoreError::Unavailable)?.push(pending);
            if let Some(answered) = self.take_turns(answer).await? {
                return answered;
            }
        }
        Err(StoreError::Unavailable)
    }
    async fn live_families(&self, sub: &str, now: Millis, rules: RefreshRules) -> Result<Vec<Family>, StoreError> {
        let not_before = self.not_before(sub).await?.unwrap_or(Millis::MIN);
        let idle_since = now.saturating_sub(rules.idle_timeout_ms);
        let key = sessions_key(sub);
        // A list not touched since sessions were scored is still a plain set (`add_session.lua` converts it).
        let sessions = if self.read::<String>(::redis::cmd("TYPE").arg(&key)).await? == "set" {
            set_members(&key)
        } else {
            ::redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone()
        };
        let mut families = self.listed(&sessions, family_key, family_from).await?;
        // The list may name a session that was never created, or a duplicate `sid` refused under another subject.
        families.retain(|f| {
            f.session.sub == sub
                && f.session.created_at > not_before
                && f.revoked_at.is_none()
                && f.session.expires_at > now
                && f.last_used_at > idle_since
        });
        families.sort_by_key(|family| std::cmp::Reverse(family.session.created_at));
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
        after_id: i64,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Only what the replicas acknowledged (see `commit.lua`).
        let committed: Option<i64> = self.read(::redis::cmd("GET").arg(LOG_COMMITTED_KEY)).await?;
        let Some(committed) = committed.filter(|&committed| committed > after_id) else {
            return Ok(Vec::new());
        };
        // The first position whose running highest `at` reaches `since` bounds every match from below.
        let first: Vec<String> = self
            .read(::redis::cmd("ZRANGEBYSCORE").arg(LOG_TIME_KEY).arg(since).arg("+inf").arg("LIMIT").arg(0).arg(1))
            .await?;
        let Some(first) = first.first() else {
            return Ok(Vec::new());
        };
        let first: i64 = first.parse().map_err(|_| corrupt("log time index"))?;
        let mut cursor = after_id.max(first.saturating_sub(1));
        let page = limit.min(LOG_PAGE);
        let mut entries = Vec::new();
        loop {
            let members: Vec<String> = self
                .read(
                    ::redis::cmd("ZRANGEBYSCORE")
                        .arg(LOG_KEY)
                        .arg(format!("({cursor}"))
                        .arg(committed)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(page),
                )
                .await?;
            for member in &members {
                let (id, json) = member.split_once(' ').ok_or_else(|| corrupt("log entry"))?;
                let id: i64 = id.parse().map_err(|_| corrupt("log position"))?;
                cursor = id;
                let record: LogRecord = from_json(json)?;
                if record.at >= since {
                    entries.push(RevocationEntry {
                        id,
                        at: record.at,
                        revocation: Revocation::from_columns(&record.kind, record.value, record.instant),
                        provenance: Provenance { actor: record.actor, reason: record.reason },
                    });
                    if entries.len() == limit {
                        return Ok(entries);
                    }
                }
            }
            if members.len() < page {
                return Ok(entries);
            }
        }
    }

    async fn forget_sessions_expired_before(&self, _before: Millis, _limit: usize) -> Result<usize, StoreError> {
        // Every session key, and every subject's session set, expires by itself (see `create_family`).
        Ok(0)
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.read(::redis::cmd("HEXISTS").arg(REVOKED_TOKENS_KEY).arg(jti)).await
    }

    async fn log_head(&self) -> Result<i64, StoreError> {
        // Readers see only committed positions (see `commit.lua`).
        let committed: Option<i64> = self.read(::redis::cmd("GET").arg(LOG_COMMITTED_KEY)).await?;
        Ok(committed.unwrap_or(0))
    }

    async fn security_events(&self, limit: usize) -> Result<Vec<SecurityEvent>, StoreError> {
        let Some(last) = limit.checked_sub(1) else {
            return Ok(Vec::new());
        };
        let events: Vec<String> = self.read(::redis::cmd("LRANGE").arg(EVENTS_KEY).arg(0).arg(last)).await?;
        events
            .iter()
            .map(|json| {
                let event: EventRecord = from_json(json)?;
                Ok(SecurityEvent {
                    at: event.at,
                    kind: event.kind,
                    sub: event.sub,
                    sid: event.sid,
                    detail: event.detail,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read::<String>(&::redis::cmd("PING")).await.map(drop)
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

    fn record_metrics(&self) {
        metrics::gauge!("tessera_redis_breaker_state").set(self.breaker_state().gauge());
    }
}
