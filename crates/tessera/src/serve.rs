//! `tessera serve`: wiring configuration, store, keys and the HTTP service together.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tessera_jose::{KeySet, Policy};
use tessera_server::clock::{Clock as _, SystemClock};
use tessera_server::keys::KeyService;
use tessera_server::{AppState, ExchangeRule, RateLimits, RouteRule, Settings, TrustedIssuer};
use tessera_store::{Deadline, PostgresStore, RedisStore, SqliteStore, Store, TieredStore};
use tracing_subscriber::EnvFilter;

use crate::config::{secs, Config, LogFormat, StoreBackend, MASTER_KEY_ENV};

/// How much longer than `store.timeout` a Redis call may take in all before the deadline cuts it off.
const REDIS_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The database file in the data directory.
pub(crate) const DATABASE_FILE: &str = "tessera.db";

pub(crate) fn run(config: &Config, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    init_logging(config.server.log_format);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(serve(config, listen))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: in a log file or a collector they are noise in every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The configured store: SQLite in the data directory (created and migrated), PostgreSQL (migrated on connect),
/// Redis / Redis Cluster, or Redis in front of PostgreSQL.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = &config.store;
    match store.backend {
        StoreBackend::Postgres => {
            let postgres = connect_postgres(config).await?;
            Ok(Arc::new(Deadline::new(postgres, store.timeout)))
        }
        // Redis fails a slow reply itself at store.timeout, where the breaker counts it; the deadline is only the
        // backstop for whatever else could wait (a connection, a turn in the revocation batch).
        StoreBackend::Redis => {
            let redis = connect_redis(config).await?;
            Ok(Arc::new(Deadline::new(redis, store.timeout + REDIS_DEADLINE_MARGIN)))
        }
        StoreBackend::Tiered => {
            let (redis, postgres) = tokio::try_join!(connect_redis(config), connect_postgres(config))?;
            Ok(Arc::new(Deadline::new(TieredStore::new(redis, postgres), store.timeout + REDIS_DEADLINE_MARGIN)))
        }
        StoreBackend::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let path = config.data_dir.join(DATABASE_FILE);
            let store = SqliteStore::open(&path).with_context(|| format!("opening the database {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

async fn connect_postgres(config: &Config) -> anyhow::Result<PostgresStore> {
    let url = config.store.postgres_url.as_deref().context("store.postgres_url is not set")?;
    PostgresStore::connect(url, config.store.pool_size).await.context("connecting to PostgreSQL")
}

async fn connect_redis(config: &Config) -> anyhow::Result<RedisStore> {
    let store = &config.store;
    let what = if store.redis_cluster { "connecting to the Redis Cluster" } else { "connecting to Redis" };
    let settings = tessera_store::RedisSettings {
        cluster: store.redis_cluster,
        wait_replicas: store.redis_wait_replicas,
        write_connections: store.redis_connections,
        breaker: tessera_store::BreakerSettings {
            failure_threshold: store.redis_breaker_failures,
            cool_down: store.redis_breaker_cool_down,
            response_timeout: store.timeout,
        },
    };
    RedisStore::connect_with(&store.redis_urls, settings).await.context(what)
}

pub(crate) fn settings(config: &Config) -> anyhow::Result<Settings> {
    Ok(Settings {
        issuer: config.issuer.clone(),
        audience: config.tokens.audience.clone(),
        access_ttl_secs: secs(config.tokens.access_ttl),
        service_ttl_secs: secs(config.tokens.service_ttl),
        refresh_ttl: config.sessions.refresh_ttl,
        idle_timeout: config.sessions.idle_timeout,
        grace: config.sessions.grace,
        leeway_secs: secs(config.tokens.leeway),
        max_token_bytes: config.tokens.max_token_bytes,
        remembered_verifications: config.tokens.remembered_verifications,
        client_id: config.sessions.client_id.clone(),
        allowed_origins: config.server.allowed_origins.clone(),
        trusted_proxies: config
            .server
            .trusted_proxies
            .iter()
            .map(|proxy| crate::config::parse_proxy(proxy))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        admin_token: config.admin_token()?,
        rate_limits: RateLimits {
            login_per_ip: config.rate_limits.login_per_ip,
            login_per_user: config.rate_limits.login_per_user,
            failed_refresh_per_ip: config.rate_limits.failed_refresh_per_ip,
            failed_refresh_per_user: config.rate_limits.failed_refresh_per_user,
        },
        max_body_bytes: config.server.max_body_bytes,
        request_timeout: config.server.request_timeout,
        reload_interval: config.server.reload_interval,
        revocations_stale_after: config.revocation.stale_after,
        stale_revocations: match config.revocation.stale_policy {
            crate::config::StalePolicyConfig::FailClosed => tessera_server::StalePolicy::FailClosed,
            crate::config::StalePolicyConfig::FailOpen => tessera_server::StalePolicy::FailOpen,
        },
        compact_revocations: config.revocation.compact.then_some(tessera_server::CompactRevocations {
            bucket_width: config.revocation.compact_bucket_width,
            bucket_capacity: config.revocation.compact_bucket_capacity,
        }),
        tls: config.server.behind_tls || config.server.tls_cert_file.is_some(),
        exchange_rules: config
            .token_exchange
            .iter()
            .map(|rule| ExchangeRule {
                client_id: rule.client.clone(),
                audience: rule.audience.clone(),
                scopes: rule.scopes.clone(),
            })
            .collect(),
        trusted_issuers: config
            .trusted_issuers
            .iter()
            .map(|i| TrustedIssuer {
                issuer: i.issuer.clone(),
                jwks_url: i.jwks_url.clone(),
                audiences: i.audiences.clone(),
            })
            .collect(),
        routes: config
            .gateway
            .routes
            .iter()
            .map(|route| RouteRule {
                path_prefix: route.path_prefix.clone(),
                method: route.method.clone(),
                audience: route.audience.clone(),
                scopes: route.scopes.clone(),
            })
            .collect(),
    })
}

async fn serve(config: &Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let settings = settings(config)?;
    let store = open_store(config).await?;
    let keystore = crate::keys::open_in_server(config, &store)?;
    if !keystore.seals() {
        tracing::warn!("no master key ({MASTER_KEY_ENV}): signing keys and server secrets are stored UNENCRYPTED in the data directory");
    }
    let clock = Arc::new(SystemClock);
    let mut policy = Policy::access(settings.issuer.clone(), vec![settings.audience.clone()]);
    policy.leeway_secs = settings.leeway_secs;
    policy.max_token_len = settings.max_token_bytes;
    let verifier = tessera_jose::Verifier::remembering(KeySet::new(), policy, settings.remembered_verifications);
    let keys = KeyService::load(keystore, config.rotation_policy(), verifier, clock.now_secs())
        .context("loading signing keys")?;
    let state = AppState::new(settings, store, keys, clock, tessera_server::metrics_handle())?;
    let background = tessera_server::start_background(&state).await.context("loading the revocation log")?;

    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(tessera_server::tls::acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = listen.map_or_else(|| config.server.listen.clone(), |a| a.to_string());
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("listening on {address}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, issuer = %state.settings().issuer, "tessera is serving");
    // A line on stdout for scripts and tests that start the server on port 0.
    println!("listening on {scheme}://{local}");
    tessera_server::serve(listener, state, tls, tessera_server::shutdown_signal()).await?;
    background.abort();
    Ok(())
}
