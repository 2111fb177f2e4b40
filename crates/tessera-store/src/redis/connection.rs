//! Talking to Redis: one connection type for a single node and a cluster, how connections are opened, the
//! circuit breaker around every call, writes that `WAIT` for their replicas, scripts retried whole on a node that
//! does not know them, and the reads and writes of hashes and sets the store is built from.

use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind, Value};

use super::breaker::Outcome;
use super::codec::Fields;
use super::scripts::Lua;
use super::{RedisStore, CONNECTION_TIMEOUT, WAIT_TIMEOUT_MS};
use crate::model::Millis;
use crate::StoreError;

/// One code path for both deployments: a single node behind a reconnecting multiplexed connection, or a cluster
/// client that routes each command (and each pipeline) to the master owning its keys' slot.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
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

/// Opens connections to the configured Redis or Redis Cluster.
pub(super) enum Opener {
    Single(::redis::Client, Duration),
    Cluster(Box<::redis::cluster::ClusterClient>),
}

impl Opener {
    /// Replies slower than `response_timeout` fail (it includes a write's wait for its replicas).
    pub(super) fn new(urls: &[String], cluster: bool, response_timeout: Duration) -> Result<Self, StoreError> {
        if cluster {
            if urls.is_empty() {
                return Err(StoreError::backend("Redis Cluster: no node URL"));
            }
            let client = ::redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                .connection_timeout(CONNECTION_TIMEOUT)
                .response_timeout(response_timeout)
                .build()
                .map_err(|err| StoreError::backend_because("Redis Cluster URLs", err))?;
            return Ok(Self::Cluster(Box::new(client)));
        }
        let [url] = urls else {
            return Err(StoreError::backend(format!(
                "a single Redis takes one URL, not {} (a cluster needs the cluster setting)",
                urls.len()
            )));
        };
        let client =
            ::redis::Client::open(url.as_str()).map_err(|err| StoreError::backend_because("Redis URL", err))?;
        Ok(Self::Single(client, response_timeout))
    }

    pub(super) async fn connection(&self) -> Result<Connection, StoreError> {
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
        Self::Backend(Box::new(err))
    }
}

impl From<::redis::ParsingError> for StoreError {
    fn from(err: ::redis::ParsingError) -> Self {
        Self::backend_because("unexpected Redis reply", err)
    }
}

/// What a failed call shows about Redis, for the breaker: unreachable (refused, dropped, timed out, a cluster or
/// a master down, a server still loading its data), or reached (any other error is Redis answering: a script
/// error, a wrong type, a missing script).
pub(super) fn outcome(err: &RedisError) -> Outcome {
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

/// Why a call failed: Redis itself (a missing script is retried whole), or the store's own checks (too few
/// replicas, an open circuit breaker).
pub(super) enum RedisWriteError {
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

impl RedisStore {
    /// Runs one call to Redis through the breaker: refused at once while it is open, its outcome reported.
    pub(super) async fn guarded<T>(
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
        let reply =
            replies.next().ok_or_else(|| RedisWriteError::Store(StoreError::backend("empty Redis pipeline reply")))?;
        if self.wait_replicas > 0 {
            let acknowledged: i64 = replies
                .next()
                .map(::redis::from_redis_value)
                .transpose()
                .map_err(|err| RedisWriteError::Store(err.into()))?
                .unwrap_or(0);
            if acknowledged < i64::from(self.wait_replicas) {
                return Err(RedisWriteError::Store(StoreError::backend(format!(
                    "only {acknowledged} of {} Redis replicas acknowledged the write within {WAIT_TIMEOUT_MS} ms; \
                     not acknowledged",
                    self.wait_replicas
                ))));
            }
        }
        Ok(reply)
    }

    pub(super) async fn command<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        let reply = self.write(cmd).await.map_err(StoreError::from)?;
        Ok(::redis::from_redis_value(reply)?)
    }

    /// Runs a script on its keys' slot, durable once it returns.
    pub(super) async fn script<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let reply = match self.write(lua.command(false, keys, args)).await {
            Err(RedisWriteError::Redis(err)) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.write(lua.command(true, keys, args)).await
            }
            other => other,
        }
        .map_err(StoreError::from)?;
        Ok(::redis::from_redis_value(reply)?)
    }

    /// A write no caller acknowledges to anyone (the live-session index behind a gauge): through the breaker, but
    /// without `WAIT`, so it costs one round trip and no replica's.
    pub(super) async fn unwaited(&self, cmd: &Cmd) -> Result<(), StoreError> {
        let writer = self.writers.first().unwrap_or(&self.reader);
        Ok(self.guarded(writer.query::<Value>(cmd)).await.map(drop)?)
    }

    pub(super) async fn read<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        Ok(self.guarded(self.reader.query(cmd)).await?)
    }

    pub(super) async fn hash(&self, key: &str) -> Result<Option<Fields>, StoreError> {
        Fields::from_value(self.read(::redis::cmd("HGETALL").arg(key)).await?)
    }

    /// Creates a hash unless another write did: `false` when one did (see `create.lua`).
    pub(super) async fn create(
        &self,
        key: String,
        ttl_ms: Option<Millis>,
        fields: Vec<String>,
    ) -> Result<bool, StoreError> {
        let mut write_id = [0_u8; 8];
        #[allow(
            clippy::disallowed_methods,
            reason = "an id that never leaves Redis and that no test needs to fix: only unique among the writes racing for one key"
        )]
        getrandom::fill(&mut write_id)
            .map_err(|err| StoreError::backend(format!("the OS random source failed: {err}")))?;
        let write_id = write_id.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
        let args: Vec<String> = [ttl_ms.unwrap_or(0).to_string(), write_id].into_iter().chain(fields).collect();
        Ok(self.script::<i64>(&self.scripts.create, &[key], &args).await? == 1)
    }

    /// Updates an existing hash, guarded (see `update.lua`): `false` when missing or the guard failed.
    pub(super) async fn update(&self, key: String, guard: [&str; 2], fields: Vec<String>) -> Result<bool, StoreError> {
        let args = guard.iter().map(|part| (*part).to_owned()).chain(fields).collect::<Vec<_>>();
        Ok(self.script::<i64>(&self.scripts.update, &[key], &args).await? == 1)
    }

    /// Adds a name to a set (a listing, a subject's sessions).
    pub(super) async fn add_to(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.command::<i64>(::redis::cmd("SADD").arg(set).arg(member).clone()).await.map(drop)
    }

    /// Every hash whose name `members` lists, skipping names with nothing behind them.
    pub(super) async fn listed<T>(
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use super::super::RedisStore;

    #[tokio::test]
    async fn a_create_run_twice_by_the_same_write_is_one_create_and_another_write_finds_it_taken() {
        let redis = tessera_test_support::Redis::start();
        let store = RedisStore::connect(&[redis.url()], false, 0).await.unwrap();
        let key = "tessera:test:created".to_owned();
        let create = |write_id: &str| {
            let args = ["0", write_id, "field", "value"].map(str::to_owned);
            let keys = [key.clone()];
            let store = &store;
            async move { store.script::<i64>(&store.scripts.create, &keys, &args).await.unwrap() }
        };
        assert_eq!(create("write-1").await, 1);
        assert_eq!(create("write-1").await, 1, "the cluster client's retry of a write whose reply was lost");
        assert_eq!(create("write-2").await, 0, "another write");
        assert!(!store.create(key, None, vec!["field".into(), "value".into()]).await.unwrap(), "a fresh write id");
    }
}
