//! Opening what the commands and the server work on: the configured store, and the keyring (in the data
//! directory, or in a shared store as documents).

use std::sync::Arc;

use anyhow::Context as _;
use tessera_keys::{Documents, KeyStore, KeyringError};
use tessera_store::{Deadline, PostgresStore, RedisStore, SqliteStore, Store, TieredStore};

use crate::config::{Config, StoreBackend};

/// How much longer than `store.timeout` a Redis call may take in all before the deadline cuts it off.
const REDIS_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The database file in the data directory.
const DATABASE_FILE: &str = "tessera.db";

/// The configured store: SQLite in the data directory (created and migrated), PostgreSQL (migrated on connect),
/// Redis / Redis Cluster, or Redis in front of PostgreSQL.
pub(crate) async fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = &config.store;
    match store.backend {
        StoreBackend::Postgres => {
            let postgres = connect_postgres(config).await?;
            Ok(Arc::new(Deadline::new(postgres, store.timeout, "postgres")))
        }
        // Redis fails a slow reply itself at store.timeout, where the breaker counts it; the deadline is only the
        // backstop for whatever else could wait (a connection, a turn in the revocation batch).
        StoreBackend::Redis => {
            let redis = connect_redis(config).await?;
            Ok(Arc::new(Deadline::new(redis, store.timeout + REDIS_DEADLINE_MARGIN, "redis")))
        }
        StoreBackend::Tiered => {
            let (redis, postgres) = tokio::try_join!(connect_redis(config), connect_postgres(config))?;
            Ok(Arc::new(Deadline::new(
                TieredStore::new(redis, postgres),
                store.timeout + REDIS_DEADLINE_MARGIN,
                "tiered",
            )))
        }
        StoreBackend::Sqlite => {
            prepare_data_dir(&config.data_dir)?;
            let path = config.data_dir.join(DATABASE_FILE);
            let store = SqliteStore::open(&path).with_context(|| format!("opening the database {}", path.display()))?;
            Ok(Arc::new(Deadline::measured(store, "sqlite")))
        }
    }
}

/// Creates the data directory readable by its owner only (0700), before anything is written in it; warns when an
/// existing one is open to others, since it holds the database and, without a shared store, the keys.
fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir).with_context(|| format!("examining {}", dir.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is open to other users of this machine (it holds the database and may hold the \
                 keys): `chmod 700` it"
            );
        }
    }
    Ok(())
}

async fn connect_postgres(config: &Config) -> anyhow::Result<PostgresStore> {
    let url = config.store.postgres_url.as_deref().context("store.postgres_url is not set")?;
    PostgresStore::connect(url, config.store.pool_size).await.context("connecting to PostgreSQL")
}

async fn connect_redis(config: &Config) -> anyhow::Result<RedisStore> {
    let store = &config.store;
    let what = if store.redis_cluster { "connecting to the Redis Cluster" } else { "connecting to Redis" };
    let log_partitions = if store.backend == StoreBackend::Redis { store.redis_log_partitions } else { 1 };
    RedisStore::connect_with(&store.redis_urls, redis_settings(config, log_partitions)).await.context(what)
}

/// How the configuration says to use Redis, with the revocation log in `log_partitions` partitions.
fn redis_settings(config: &Config, log_partitions: usize) -> tessera_store::RedisSettings {
    let store = &config.store;
    tessera_store::RedisSettings {
        cluster: store.redis_cluster,
        wait_replicas: store.redis_wait_replicas,
        write_connections: store.redis_connections,
        breaker: tessera_store::BreakerSettings {
            failure_threshold: store.redis_breaker_failures,
            cool_down: store.redis_breaker_cool_down,
            response_timeout: store.timeout,
        },
        log_partitions,
    }
}

/// `tessera store repartition`: moves the Redis revocation log to `partitions` partitions, with every node
/// stopped (see `RedisStore::repartition`).
pub(crate) fn repartition(config: &Config, partitions: usize) -> anyhow::Result<std::process::ExitCode> {
    if config.store.backend != StoreBackend::Redis {
        anyhow::bail!("only the redis backend partitions its revocation log (store.backend is not \"redis\")");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let settings = redis_settings(config, partitions);
    let moved = runtime
        .block_on(RedisStore::repartition(&config.store.redis_urls, settings))
        .context("repartitioning the revocation log")?;
    println!(
        "the revocation log has {partitions} partition(s) ({moved} entries moved): set store.redis_log_partitions = \
         {partitions} on every node before starting it"
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// The keyring, unlocked with the master key if one is configured: in the data directory on the embedded store;
/// in the shared store on PostgreSQL or Redis, so that every node signs with the same keys and accepts the same
/// refresh tokens (see [`shared`]).
pub(crate) fn keyring(config: &Config) -> anyhow::Result<KeyStore> {
    config.require_master_key_for_shared_store()?;
    if config.store.backend == StoreBackend::Sqlite {
        return Ok(KeyStore::open(&config.data_dir, config.master_key()?)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = runtime.block_on(open(config))?;
    shared(config, store, Bridge::Owned(runtime))
}

/// [`keyring`] for `tessera serve`, whose store is already open on the runtime it runs on.
pub(crate) fn keyring_in_server(config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<KeyStore> {
    config.require_master_key_for_shared_store()?;
    if config.store.backend == StoreBackend::Sqlite {
        return Ok(KeyStore::open(&config.data_dir, config.master_key()?)?);
    }
    shared(config, Arc::clone(store), Bridge::Borrowed(tokio::runtime::Handle::current()))
}

/// The keyring in the shared store. A deployment that used the data directory before keeps its keys: they are
/// copied into a store that has none yet.
fn shared(config: &Config, store: Arc<dyn Store>, bridge: Bridge) -> anyhow::Result<KeyStore> {
    let keystore = KeyStore::shared(Arc::new(StoreDocuments { store, bridge }), config.master_key()?);
    for file in keystore.import_files(&config.data_dir)? {
        tracing::info!(file, "copied from the data directory into the shared store");
    }
    Ok(keystore)
}

/// The keyring's documents in a [`Store`], for the keyring's blocking calls.
struct StoreDocuments {
    store: Arc<dyn Store>,
    bridge: Bridge,
}

/// How blocking code reaches the async store.
enum Bridge {
    /// A command's own runtime (the command itself runs outside any runtime).
    Owned(tokio::runtime::Runtime),
    /// The server's multi-threaded runtime: a worker steps aside (`block_in_place`) while it waits.
    Borrowed(tokio::runtime::Handle),
}

impl Bridge {
    fn block_on<F: std::future::Future>(&self, work: F) -> F::Output {
        match self {
            Self::Owned(runtime) => runtime.block_on(work),
            Self::Borrowed(handle) => tokio::task::block_in_place(|| handle.block_on(work)),
        }
    }
}

impl std::fmt::Debug for StoreDocuments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreDocuments")
    }
}

impl Documents for StoreDocuments {
    fn read(&self, name: &str) -> Result<Option<(u64, String)>, KeyringError> {
        let document = self.bridge.block_on(self.store.document(name));
        Ok(document.map_err(|err| KeyringError::Store(err.to_string()))?.map(|d| (d.version, d.contents)))
    }

    fn replace(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, KeyringError> {
        self.bridge
            .block_on(self.store.replace_document(name, expected, contents))
            .map_err(|err| KeyringError::Store(err.to_string()))
    }
}
