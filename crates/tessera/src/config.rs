//! Configuration: `tessera.toml`, then `TESSERA_*` environment variables, then flags, in rising precedence.
//! One typed struct; every default documented here and in `tessera.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use tessera_jose::{Algorithm, RsaBits};
use tessera_keys::{MasterKey, RotationPolicy};

/// The configuration file read when `--config` and `TESSERA_CONFIG` are not given (if it exists).
pub(crate) const DEFAULT_CONFIG_FILE: &str = "tessera.toml";
/// The environment variable holding the master key that seals signing keys at rest.
pub(crate) const MASTER_KEY_ENV: &str = "TESSERA_MASTER_KEY";

/// Everything `tessera` can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Where signing keys and the embedded database live (with a shared store, keys live there). Default
    /// `./tessera-data`.
    pub(crate) data_dir: PathBuf,
    /// The `iss` of every token Tessera issues, and the issuer its verifiers require: the public URL clients
    /// reach Tessera at. Default none: `tessera serve` uses the address it really serves (`http`, or `https` with
    /// TLS, and the port bound), so tokens, metadata and the JWKS URL agree; see [`Config::issuer`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) issuer: Option<String>,
    /// Where users, clients, sessions and revocations live.
    pub(crate) store: StoreConfig,
    /// What verification does when the revocation index cannot be kept current.
    pub(crate) revocation: RevocationConfig,
    /// Token lifetimes and verification limits.
    pub(crate) tokens: TokenConfig,
    /// Signing keys: algorithm, rotation schedule, encryption at rest.
    pub(crate) keys: KeyConfig,
    /// The HTTP server.
    pub(crate) server: ServerConfig,
    /// Sessions and refresh tokens.
    pub(crate) sessions: SessionConfig,
    /// Rate limits, per minute.
    pub(crate) rate_limits: RateLimitConfig,
    /// Token exchange (RFC 8693): which client may exchange for which audience, and with which scopes at most.
    pub(crate) token_exchange: Vec<ExchangeRuleConfig>,
    /// Forward authentication (`/verify`).
    pub(crate) gateway: GatewayConfig,
    /// Other issuers whose access tokens are accepted too, verified with their published JWKS.
    pub(crate) trusted_issuers: Vec<TrustedIssuerConfig>,
}

/// A trusted external issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustedIssuerConfig {
    /// Its exact `iss`.
    pub(crate) issuer: String,
    /// Its JWKS URL (fetched in the background, honouring Cache-Control).
    pub(crate) jwks_url: String,
    /// Audiences its tokens must name (one of).
    pub(crate) audiences: Vec<String>,
    /// Whether its tokens may be the subject of a token exchange (RFC 8693). Default false: Tessera signs
    /// derived tokens only for subjects it vouches for, unless the operator says this issuer's users may be
    /// represented too (the derived token then names the issuer, see docs/security.md).
    #[serde(default)]
    pub(crate) allow_exchange: bool,
    /// Its role names that `/verify` passes on, each as the local role it stands for (`{ "partner-admin" =
    /// "partner_admin" }`); its other roles are dropped. Default none: its tokens carry no local role.
    #[serde(default)]
    pub(crate) role_map: std::collections::BTreeMap<String, String>,
    /// The same for its scopes: route rules and `X-Scope` see only the mapped names. Default none.
    #[serde(default)]
    pub(crate) scope_map: std::collections::BTreeMap<String, String>,
}

/// One token-exchange rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExchangeRuleConfig {
    /// The calling client's id.
    pub(crate) client: String,
    /// The audience it may exchange tokens for.
    pub(crate) audience: String,
    /// The most the derived token may carry.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
}

/// Forward authentication.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GatewayConfig {
    /// Which headers of `/verify` carry the original method and URI. Default `auto`.
    pub(crate) forwarded_headers: ForwardedHeadersConfig,
    /// With `forwarded_headers = "custom"`: the header carrying the original method.
    pub(crate) method_header: Option<String>,
    /// With `forwarded_headers = "custom"`: the header carrying the original URI.
    pub(crate) uri_header: Option<String>,
    /// The audience `/verify` requires when the gateway's auth URL names none. Default none.
    pub(crate) audience: Option<String>,
    /// Refuse a `/verify` request that names no audience (neither `?audience=` nor `audience`). Default false.
    pub(crate) require_audience: bool,
    /// Per-route requirements, first match wins. Unmatched routes need only a valid token for an audience
    /// Tessera issues to.
    pub(crate) routes: Vec<RouteConfig>,
}

/// Where `/verify` reads the original method and URI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ForwardedHeadersConfig {
    /// Both `X-Original-*` (nginx) and `X-Forwarded-*` (Traefik); refused when they disagree; `/verify/<path>`.
    #[default]
    Auto,
    /// `X-Original-Method` / `X-Original-URI` only.
    Nginx,
    /// `X-Forwarded-Method` / `X-Forwarded-Uri` only.
    Traefik,
    /// `/verify/<path>` only (Envoy `ext_authz`).
    Envoy,
    /// `gateway.method_header` / `gateway.uri_header`.
    Custom,
}

/// What `/verify` requires for one part of the upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteConfig {
    /// The original (normalised) path must be this or lie below it, segment by segment.
    pub(crate) path_prefix: String,
    /// Compare the path ignoring ASCII case. Default false.
    #[serde(default)]
    pub(crate) case_insensitive: bool,
    /// The original method must be this (any when absent); upper-cased when loaded.
    #[serde(default)]
    pub(crate) method: Option<String>,
    /// The token must be for this audience (any accepted when absent).
    #[serde(default)]
    pub(crate) audience: Option<String>,
    /// The token must carry all of these scopes.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
}

/// The HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub(crate) listen: String,
    /// Origins (besides the server's own) allowed to call the browser endpoints: CORS and the CSRF origin check.
    pub(crate) allowed_origins: Vec<String>,
    /// Addresses or ranges (`10.0.0.0/8`) of reverse proxies in front of Tessera, whose `X-Forwarded-For` then
    /// names the client for the per-address rate limits. Default none: the header is ignored.
    pub(crate) trusted_proxies: Vec<String>,
    /// Largest request body. Default 65536 bytes.
    pub(crate) max_body_bytes: usize,
    /// Longest time a request may take. Default 10 seconds.
    #[serde(with = "duration_text")]
    pub(crate) request_timeout: Duration,
    /// Longest time a client may take over its TLS handshake (when Tessera serves TLS). Default 10 seconds.
    #[serde(with = "duration_text")]
    pub(crate) tls_handshake_timeout: Duration,
    /// Longest time a client may take to send a request's line and headers, from the start of its connection or
    /// the end of its previous request; also how long an idle keep-alive connection stays open. Default 10 s.
    #[serde(with = "duration_text")]
    pub(crate) header_read_timeout: Duration,
    /// Logins that may wait for a password check while every core is busy with one (one runs per core at a
    /// time); a login beyond them is answered 503 with `Retry-After`. Default 32.
    pub(crate) password_hash_queue: usize,
    /// How often the server polls the store for revocations, client changes and keys made elsewhere (the
    /// PostgreSQL backend also pushes revocations at once). Default 250 ms.
    #[serde(with = "duration_text")]
    pub(crate) reload_interval: Duration,
    /// Log format: `text` (default) or `json`.
    pub(crate) log_format: LogFormat,
    /// A file holding the admin API credential. `TESSERA_ADMIN_TOKEN` takes precedence. Neither: admin API off.
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Set when a TLS-terminating proxy fronts Tessera: turns on HSTS.
    pub(crate) behind_tls: bool,
    /// PEM certificate chain: with `tls_key_file`, Tessera serves HTTPS itself (and sends HSTS).
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub(crate) tls_key_file: Option<PathBuf>,
}

/// The revocation index's staleness bound and policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RevocationConfig {
    /// How long the index may go without a successful sync with the store before it counts as stale. Default 60s.
    #[serde(with = "duration_text")]
    pub(crate) stale_after: Duration,
    /// While stale: `fail_closed` (default: refuse every token, so no revocation made elsewhere is ignored) or
    /// `fail_open` (accept, log and count: availability over revocation freshness).
    pub(crate) stale_policy: StalePolicyConfig,
    /// Compact mode, for long-lived tokens whose revoked `jti`s run into the millions: they are held in a
    /// prefilter of about 14 bits each (0.1% false positives) instead of exactly, and a token the prefilter may
    /// hold is looked up in the store before it is refused or accepted. Default false (exact, no store lookups).
    pub(crate) compact: bool,
    /// With `compact`: the width of an expiry bucket, dropped whole once its tokens have expired. Default 1h.
    #[serde(with = "duration_text")]
    pub(crate) compact_bucket_width: Duration,
    /// With `compact`: the revocations one bucket is sized for (about 1.7 MB per million); a fuller bucket grows
    /// and its false-positive rate adds up. Size it for the busiest bucket. Default 1,000,000.
    pub(crate) compact_bucket_capacity: usize,
}

/// See [`RevocationConfig::stale_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StalePolicyConfig {
    /// Refuse every token while stale.
    FailClosed,
    /// Accept tokens not known to be revoked while stale, and report it.
    FailOpen,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(60),
            stale_policy: StalePolicyConfig::FailClosed,
            compact: false,
            compact_bucket_width: Duration::from_secs(3600),
            compact_bucket_capacity: 1_000_000,
        }
    }
}

/// The storage backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// `sqlite` (default: embedded, in the data directory, one node), `postgres` or `redis` (shared by several
    /// nodes), or `tiered`: Redis for refresh rotations in front of PostgreSQL for everything else, which keeps
    /// verification, revocation and `client_credentials` working while Redis is away (docs/scaling.md).
    pub(crate) backend: StoreBackend,
    /// With `postgres` or `tiered`: the connection URL, e.g. `postgres://tessera@db.internal:5432/tessera` (better set as
    /// `TESSERA_STORE__POSTGRES_URL` when it holds a password). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) postgres_url: Option<String>,
    /// With `postgres` or `tiered`: PostgreSQL connections per node. Default 16.
    pub(crate) pool_size: usize,
    /// With `redis` or `tiered`: the URL of the one Redis (`redis://:password@cache.internal:6379/0`), or of some nodes of a
    /// Redis Cluster (the client discovers the others). Better set as `TESSERA_STORE__REDIS_URLS` when they hold a
    /// password. Never logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) redis_urls: Vec<String>,
    /// With `redis` or `tiered`: the URLs are nodes of a Redis Cluster. Default false.
    pub(crate) redis_cluster: bool,
    /// With `redis` or `tiered`: connections per node for writes, used in turn (reads have one more). A write
    /// holds its connection while it waits for its replicas, so this bounds the writes in flight. Default 8.
    pub(crate) redis_connections: usize,
    /// With `redis` or `tiered`: replicas that must acknowledge every write (`WAIT`) before Tessera acknowledges it, so an
    /// acknowledged refresh or revocation survives the loss of a Redis node. Default 1 (one replica per master);
    /// 0 only for a single development Redis, durable then only with `appendonly yes` and `appendfsync always`.
    pub(crate) redis_wait_replicas: u32,
    /// With `redis` or `tiered`: consecutive calls that cannot reach Redis before the circuit breaker opens and calls fail at
    /// once (503) instead of waiting out their timeouts. Default 5.
    pub(crate) redis_breaker_failures: u32,
    /// With `redis` or `tiered`: how long an open breaker fails calls before one probe may try Redis again. Default 2 s.
    #[serde(with = "duration_text")]
    pub(crate) redis_breaker_cool_down: Duration,
    /// With a shared backend: the longest any one store call may take; a store that stops answering (paused,
    /// partitioned with connections still up) then fails calls with 503 instead of holding every request until
    /// the HTTP timeout, and the background sync reports it. With Redis it is the reply timeout, which counts
    /// against the circuit breaker (at least 2 s, since a write may wait 1 s for its replicas). Default 5 s.
    #[serde(with = "duration_text")]
    pub(crate) timeout: Duration,
}

/// See [`StoreConfig::backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreBackend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// Redis or Redis Cluster.
    Redis,
    /// Redis (rotations) in front of PostgreSQL (everything else).
    Tiered,
}

impl StoreBackend {
    /// The name configuration files use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Tiered => "tiered",
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            postgres_url: None,
            pool_size: 16,
            redis_urls: Vec::new(),
            redis_cluster: false,
            redis_connections: 8,
            redis_wait_replicas: 1,
            redis_breaker_failures: 5,
            redis_breaker_cool_down: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sessions and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SessionConfig {
    /// Absolute lifetime of a session's refresh tokens; rotation never extends it. Default 7 days.
    #[serde(with = "duration_text")]
    pub(crate) refresh_ttl: Duration,
    /// A session unused this long cannot be refreshed. Default 1 day.
    #[serde(with = "duration_text")]
    pub(crate) idle_timeout: Duration,
    /// Re-presenting the previous refresh token within this window returns the same successor. Default 10 s.
    #[serde(with = "duration_text")]
    pub(crate) grace: Duration,
    /// `client_id` of sessions started by `/auth/login`. Default `tessera`.
    pub(crate) client_id: String,
}

/// Rate limits, per minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RateLimitConfig {
    /// Login attempts per client IP, failed or not (each costs a password hash). Default 60.
    pub(crate) login_per_ip: u32,
    /// Failed logins per username from one client IP; beyond them that address is refused for that user. Default 10.
    pub(crate) failed_login_per_user_and_ip: u32,
    /// Failed logins per username from all addresses together; beyond them the user is refused from the addresses
    /// that failed for them in the last minute, and still served from any other. Default 100.
    pub(crate) failed_login_per_user: u32,
    /// Failed refreshes per client IP (successful ones are never limited). Default 60.
    pub(crate) failed_refresh_per_ip: u32,
    /// Failed refreshes per user, counted when the refresh token names one of their sessions (a replayed
    /// stolen or revoked token, a wrong CSRF token); successful ones are never limited. Default 30.
    pub(crate) failed_refresh_per_user: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            password_hash_queue: 32,
            reload_interval: Duration::from_millis(250),
            log_format: LogFormat::Text,
            admin_token_file: None,
            behind_tls: false,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::from_secs(7 * 86_400),
            idle_timeout: Duration::from_secs(86_400),
            grace: Duration::from_secs(10),
            client_id: "tessera".into(),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_per_ip: 60,
            failed_login_per_user_and_ip: 10,
            failed_login_per_user: 100,
            failed_refresh_per_ip: 60,
            failed_refresh_per_user: 30,
        }
    }
}

/// Token lifetimes and verification limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TokenConfig {
    /// The audience of tokens issued without one, and the audience verifiers accept by default. Default `tessera`.
    pub(crate) audience: String,
    /// Access-token lifetime. Default 15 minutes.
    #[serde(with = "duration_text")]
    pub(crate) access_ttl: Duration,
    /// Lifetime of service tokens from the client-credentials grant. Default 60 seconds.
    #[serde(with = "duration_text")]
    pub(crate) service_ttl: Duration,
    /// The longest lifetime any token may be issued with; retired keys stay published this long (plus leeway).
    /// Default 24 hours.
    #[serde(with = "duration_text")]
    pub(crate) max_ttl: Duration,
    /// Clock skew allowed on `exp`, `nbf` and `iat`. Default 30 seconds; at most 5 minutes.
    #[serde(with = "duration_text")]
    pub(crate) leeway: Duration,
    /// Tokens longer than this are refused unread. Default 8192 bytes.
    pub(crate) max_token_bytes: usize,
    /// How many verified access tokens each verifier remembers by their exact text, so that a token presented
    /// again skips the signature check (expiry and revocation are still checked every time). 0 turns it off.
    /// Default 10000 (at most a few tens of MB).
    pub(crate) remembered_verifications: usize,
    /// `client_id` of tokens issued from the command line. Default `tessera-cli`.
    pub(crate) cli_client_id: String,
}

/// Signing keys: algorithm, rotation schedule, encryption at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct KeyConfig {
    /// Algorithm of automatically generated keys: `EdDSA` (default, fastest), `ES256` or `RS256`.
    pub(crate) algorithm: Algorithm,
    /// RSA modulus size for RS256 keys: 2048 (default) or 3072.
    pub(crate) rsa_bits: u32,
    /// How long a key signs before its successor takes over. Default 30 days.
    #[serde(with = "duration_text")]
    pub(crate) rotation_interval: Duration,
    /// How long a new key is published in the JWKS before it signs. Default 1 day.
    #[serde(with = "duration_text")]
    pub(crate) prepublish: Duration,
    /// How long the MAC keys of refresh and CSRF tokens issue before their successors take over; the previous
    /// key is still accepted for one more interval, so at least `sessions.idle_timeout`. Default 30 days.
    #[serde(with = "duration_text")]
    pub(crate) secrets_rotation_interval: Duration,
    /// A file holding the master key (32 random bytes, base64 or hex). `TESSERA_MASTER_KEY` takes precedence.
    /// With neither, keys are stored unencrypted and Tessera says so on every write; a shared store (PostgreSQL,
    /// Redis, tiered) refuses to start without one.
    pub(crate) master_key_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tessera-data"),
            issuer: None,
            store: StoreConfig::default(),
            revocation: RevocationConfig::default(),
            tokens: TokenConfig::default(),
            keys: KeyConfig::default(),
            server: ServerConfig::default(),
            sessions: SessionConfig::default(),
            rate_limits: RateLimitConfig::default(),
            token_exchange: Vec::new(),
            gateway: GatewayConfig::default(),
            trusted_issuers: Vec::new(),
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            audience: "tessera".into(),
            access_ttl: Duration::from_secs(15 * 60),
            service_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            leeway: Duration::from_secs(30),
            max_token_bytes: tessera_jose::DEFAULT_MAX_TOKEN_LEN,
            remembered_verifications: 10_000,
            cli_client_id: "tessera-cli".into(),
        }
    }
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::EdDSA,
            rsa_bits: 2048,
            rotation_interval: Duration::from_secs(30 * 86_400),
            prepublish: Duration::from_secs(86_400),
            secrets_rotation_interval: Duration::from_secs(30 * 86_400),
            master_key_file: None,
        }
    }
}

/// Values from global flags, which override the file and the environment.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FlagOverrides {
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration: defaults, then the file (`explicit_file`, or `tessera.toml` if present), then
    /// `TESSERA_*` variables (nested keys with `__`, e.g. `TESSERA_KEYS__ALGORITHM`), then flags. Every invalid
    /// value is reported at once.
    ///
    /// # Errors
    /// A message naming each bad value and where it came from.
    pub(crate) fn load(explicit_file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        match explicit_file {
            Some(path) => {
                if !path.is_file() {
                    bail!("configuration file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let env = Env::prefixed("TESSERA_").ignore(&["MASTER_KEY", "CONFIG", "ADMIN_TOKEN"]).split("__");
        let config: Self = figment.merge(env).merge(Serialized::defaults(flags)).extract().map_err(|err| {
            let all: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("invalid configuration:\n  - {}", all.join("\n  - "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The issuer: the configured one, or the URL of the configured listen address (`https` when Tessera serves
    /// TLS itself). `tessera serve` derives its own from the address it actually binds (see `serve`), which
    /// differs from this only when `--listen` overrides the configuration.
    pub(crate) fn issuer(&self) -> String {
        match &self.issuer {
            Some(issuer) => issuer.clone(),
            None => {
                let scheme = if self.server.tls_cert_file.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.server.listen)
            }
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let t = &self.tokens;
        let k = &self.keys;
        if self.issuer.as_deref().is_some_and(|issuer| issuer.trim().is_empty()) {
            problems.push("issuer must not be empty (leave it out to use the address served)".to_owned());
        }
        if t.audience.trim().is_empty() {
            problems.push("tokens.audience must not be empty".to_owned());
        }
        if t.access_ttl.is_zero() || t.access_ttl > t.max_ttl {
            problems.push(format!(
                "tokens.access_ttl must be between 1s and tokens.max_ttl ({})",
                humantime::format_duration(t.max_ttl)
            ));
        }
        if t.access_ttl.as_millis() > u128::try_from(tessera_store::MAX_ACCESS_TTL_MS).unwrap_or(0) {
            problems.push(format!(
                "tokens.access_ttl must be at most {}",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(tessera_store::MAX_ACCESS_TTL_MS).unwrap_or(0)
                ))
            ));
        }
        if t.service_ttl.is_zero() || t.service_ttl > t.max_ttl {
            problems.push("tokens.service_ttl must be between 1s and tokens.max_ttl".to_owned());
        }
        let backend = self.store.backend;
        let (uses_postgres, uses_redis) = (
            matches!(backend, StoreBackend::Postgres | StoreBackend::Tiered),
            matches!(backend, StoreBackend::Redis | StoreBackend::Tiered),
        );
        match (uses_postgres, &self.store.postgres_url) {
            (true, None) => {
                problems.push(format!("store.postgres_url is required with store.backend = {:?}", backend.name()))
            }
            (false, Some(_)) => problems
                .push("store.postgres_url is set but store.backend is neither \"postgres\" nor \"tiered\"".to_owned()),
            _ => {}
        }
        let redis_urls = self.store.redis_urls.len();
        match uses_redis {
            true if redis_urls == 0 => {
                problems.push(format!("store.redis_urls is required with store.backend = {:?}", backend.name()));
            }
            true if redis_urls > 1 && !self.store.redis_cluster => problems.push(
                "store.redis_urls must hold one URL unless store.redis_cluster = true (a Redis Cluster)".to_owned(),
            ),
            false if redis_urls > 0 => problems
                .push("store.redis_urls is set but store.backend is neither \"redis\" nor \"tiered\"".to_owned()),
            _ => {}
        }
        if self.store.redis_breaker_failures == 0 {
            problems.push("store.redis_breaker_failures must be at least 1".to_owned());
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.store.timeout) {
            problems.push("store.timeout must be between 100ms and 1m".to_owned());
        }
        if uses_redis && self.store.timeout < Duration::from_secs(2) {
            problems.push(
                "with Redis, store.timeout must be at least 2s (a write may wait 1 s for its replicas)".to_owned(),
            );
        }
        if self.server.reload_interval < Duration::from_millis(10)
            || self.server.reload_interval > Duration::from_secs(60)
        {
            problems.push("server.reload_interval must be between 10ms and 60s".to_owned());
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.revocation.compact_bucket_width) {
            problems.push("revocation.compact_bucket_width must be between 1m and 1d".to_owned());
        }
        if !(1..=100_000_000).contains(&self.revocation.compact_bucket_capacity) {
            problems.push("revocation.compact_bucket_capacity must be between 1 and 100000000".to_owned());
        }
        if self.revocation.stale_after <= self.server.reload_interval {
            problems.push("revocation.stale_after must be longer than server.reload_interval".to_owned());
        }
        if !(1..=1024).contains(&self.store.pool_size) {
            problems.push("store.pool_size must be between 1 and 1024".to_owned());
        }
        if !(1..=256).contains(&self.store.redis_connections) {
            problems.push("store.redis_connections must be between 1 and 256".to_owned());
        }
        if t.leeway > Duration::from_secs(300) {
            problems.push("tokens.leeway must be at most 5m".to_owned());
        }
        if !(1024..=65_536).contains(&t.max_token_bytes) {
            problems.push("tokens.max_token_bytes must be between 1024 and 65536".to_owned());
        }
        if t.remembered_verifications > 1_000_000 {
            problems.push("tokens.remembered_verifications must be at most 1000000".to_owned());
        }
        if !k.algorithm.can_sign() {
            problems.push(format!("keys.algorithm {} cannot sign; use EdDSA, ES256 or RS256", k.algorithm));
        }
        if ![2048, 3072].contains(&k.rsa_bits) {
            problems.push("keys.rsa_bits must be 2048 or 3072".to_owned());
        }
        if k.prepublish >= k.rotation_interval {
            problems.push("keys.prepublish must be shorter than keys.rotation_interval".to_owned());
        }
        // A token is made with a key until its successor issues, and accepted until the next one does: one interval
        // after it stopped issuing, which must cover a session left unused for up to the idle timeout.
        if k.secrets_rotation_interval < self.sessions.idle_timeout {
            problems.push("keys.secrets_rotation_interval must be at least sessions.idle_timeout".to_owned());
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("server.listen {:?} is not an address like 127.0.0.1:8080", self.server.listen));
        }
        if self.sessions.grace >= self.sessions.idle_timeout || self.sessions.idle_timeout > self.sessions.refresh_ttl {
            problems.push("sessions: grace < idle_timeout <= refresh_ttl is required".to_owned());
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            problems.push("server.tls_cert_file and server.tls_key_file go together".to_owned());
        }
        let r = &self.rate_limits;
        let budgets = [
            r.login_per_ip,
            r.failed_login_per_user_and_ip,
            r.failed_login_per_user,
            r.failed_refresh_per_ip,
            r.failed_refresh_per_user,
        ];
        if budgets.contains(&0) {
            problems.push("rate_limits must be at least 1 per minute".to_owned());
        }
        for (name, timeout) in [
            ("server.tls_handshake_timeout", self.server.tls_handshake_timeout),
            ("server.header_read_timeout", self.server.header_read_timeout),
        ] {
            if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&timeout) {
                problems.push(format!("{name} must be between 100ms and 10m"));
            }
        }
        if self.server.password_hash_queue > 10_000 {
            problems.push("server.password_hash_queue must be at most 10000".to_owned());
        }
        if self
            .server
            .allowed_origins
            .iter()
            .any(|o| o == "*" || !(o.starts_with("https://") || o.starts_with("http://")))
        {
            problems
                .push("server.allowed_origins must be exact origins like https://app.example.com (no *)".to_owned());
        }
        for proxy in &self.server.trusted_proxies {
            if let Err(why) = parse_proxy(proxy) {
                problems.push(why);
            }
        }
        for issuer in &self.trusted_issuers {
            if let Err(why) = tessera_server::issuers::check_jwks_url(&issuer.jwks_url) {
                problems.push(format!("trusted_issuers {:?}: {why}", issuer.issuer));
            }
            if issuer.audiences.is_empty() {
                problems.push(format!("trusted_issuers {:?}: needs at least one audience", issuer.issuer));
            }
            if issuer.issuer == self.issuer() {
                problems.push("trusted_issuers must not include Tessera's own issuer".to_owned());
            }
        }
        self.validate_gateway(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
        }
    }

    fn validate_gateway(&self, problems: &mut Vec<String>) {
        let gateway = &self.gateway;
        let custom = gateway.forwarded_headers == ForwardedHeadersConfig::Custom;
        for (name, header) in [("method_header", &gateway.method_header), ("uri_header", &gateway.uri_header)] {
            match header {
                Some(header)
                    if custom
                        && (header.is_empty()
                            || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) =>
                {
                    problems.push(format!("gateway.{name} {header:?} is not a header name"));
                }
                Some(_) if !custom => {
                    problems.push(format!("gateway.{name} is set but gateway.forwarded_headers is not \"custom\""));
                }
                None if custom => {
                    problems.push(format!("gateway.{name} is required with forwarded_headers = \"custom\""))
                }
                _ => {}
            }
        }
        if gateway.audience.as_deref().is_some_and(|audience| audience.trim().is_empty()) {
            problems.push("gateway.audience must not be empty".to_owned());
        }
        for route in &gateway.routes {
            if let Err(why) = tessera_server::gateway::path::normalise_prefix(&route.path_prefix) {
                problems.push(format!("gateway.routes: path_prefix {:?}: {why}", route.path_prefix));
            }
            if let Some(method) = &route.method {
                if !tessera_server::gateway::is_method(&method.to_ascii_uppercase()) {
                    problems.push(format!("gateway.routes: method {method:?} is not an HTTP method"));
                }
            }
            if route.audience.as_deref().is_some_and(str::is_empty) {
                problems.push("gateway.routes: audience must not be empty".to_owned());
            }
            if let Some(scope) = route.scopes.iter().find(|scope| !tessera_server::gateway::is_scope_token(scope)) {
                problems.push(format!("gateway.routes: scope {scope:?} is not one scope name"));
            }
        }
        for issuer in &self.trusted_issuers {
            let name = &issuer.issuer;
            if let Err(why) = tessera_server::gateway::check_roles(issuer.role_map.values()) {
                problems.push(format!("trusted_issuers {name:?}: role_map: {why}"));
            }
            if let Some(scope) = issuer.scope_map.values().find(|scope| !tessera_server::gateway::is_scope_token(scope))
            {
                problems.push(format!("trusted_issuers {name:?}: scope_map: {scope:?} is not one scope name"));
            }
        }
    }

    /// The key rotation policy these settings describe.
    #[must_use]
    /// How long revocations matter: the longest lifetime of the tokens the server issues, plus leeway.
    pub(crate) fn retention(&self) -> tessera_revocation::Retention {
        let t = &self.tokens;
        tessera_revocation::Retention {
            max_token_lifetime_ms: secs(t.access_ttl.max(t.service_ttl)).saturating_mul(1000),
            leeway_ms: secs(t.leeway).saturating_mul(1000),
        }
    }

    pub(crate) fn rotation_policy(&self) -> RotationPolicy {
        RotationPolicy {
            algorithm: self.keys.algorithm,
            rsa_bits: if self.keys.rsa_bits == 3072 { RsaBits::Bits3072 } else { RsaBits::Bits2048 },
            rotation_interval: secs(self.keys.rotation_interval),
            prepublish: secs(self.keys.prepublish),
            retain_after_retirement: secs(self.tokens.max_ttl + self.tokens.leeway),
            secrets_rotation_interval: secs(self.keys.secrets_rotation_interval),
            ..RotationPolicy::default()
        }
    }

    /// Refuses a shared store without a master key: there, every node reads the signing keys and the MAC keys of
    /// refresh tokens from the store, and whoever can read the store (a replica, a backup, a Redis `MONITOR`) could
    /// sign tokens and rebuild every session's refresh token offline. Checked before connecting.
    pub(crate) fn require_master_key_for_shared_store(&self) -> anyhow::Result<()> {
        if self.store.backend == StoreBackend::Sqlite || self.master_key()?.is_some() {
            return Ok(());
        }
        bail!(
            "store.backend = {:?} needs a master key: the signing keys and the refresh-token MAC key are kept in the \
             shared store, and in clear anyone who can read the store could sign tokens and take over every session. \
             Make one with `tessera keys master-key` and give it to every node in {MASTER_KEY_ENV}, or in a file \
             named by keys.master_key_file (TESSERA_KEYS__MASTER_KEY_FILE)",
            self.store.backend.name()
        )
    }

    /// The master key from `TESSERA_MASTER_KEY` or `keys.master_key_file`, if either is set.
    ///
    /// # Errors
    /// When the file cannot be read or the key is not 32 random bytes.
    pub(crate) fn master_key(&self) -> anyhow::Result<Option<MasterKey>> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return MasterKey::parse(&text).map(Some).with_context(|| format!("{MASTER_KEY_ENV} is invalid"));
        }
        match &self.keys.master_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading master key file {}", path.display()))?;
                MasterKey::parse(&text)
                    .map(Some)
                    .with_context(|| format!("master key file {} is invalid", path.display()))
            }
            None => Ok(None),
        }
    }
}

/// The admin API credential from `TESSERA_ADMIN_TOKEN` or `server.admin_token_file`, if either is set.
pub(crate) const ADMIN_TOKEN_ENV: &str = "TESSERA_ADMIN_TOKEN";

impl Config {
    /// The admin credential, if configured (at least 32 characters).
    ///
    /// # Errors
    /// When the file cannot be read or the credential is too short.
    pub(crate) fn admin_token(&self) -> anyhow::Result<Option<String>> {
        let token = match (std::env::var(ADMIN_TOKEN_ENV), &self.server.admin_token_file) {
            (Ok(token), _) => token,
            (Err(_), Some(path)) => {
                std::fs::read_to_string(path).with_context(|| format!("reading admin token file {}", path.display()))?
            }
            (Err(_), None) => return Ok(None),
        };
        let token = token.trim().to_owned();
        if token.len() < 32 {
            bail!("the admin token must be at least 32 characters (e.g. `tessera keys master-key` output)");
        }
        Ok(Some(token))
    }
}

/// Whole seconds, saturating: durations come from validated configuration.
pub(crate) fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Durations written as text: `15m`, `30s`, `24h`, `30d`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map_err(|err| serde::de::Error::custom(format_args!("{text:?} is not a duration like 15m or 30d: {err}")))
    }
}

/// A trusted proxy: one address (`10.1.2.3`) or a range (`10.0.0.0/8`).
pub(crate) fn parse_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("server.trusted_proxies: {text:?} is not an IP address or a range like 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_example_file() {
        Config::default().validate().unwrap();
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tessera.example.toml")).unwrap();
        let from_example: Config = Figment::from(Toml::string(&example)).extract().unwrap();
        assert_eq!(
            serde_json::to_value(&from_example).unwrap(),
            serde_json::to_value(Config::default()).unwrap(),
            "tessera.example.toml must show the defaults"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut config = Config::default();
        config.tokens.access_ttl = Duration::from_secs(48 * 3600);
        config.keys.rsa_bits = 1024;
        config.keys.algorithm = Algorithm::HS256;
        config.store.backend = StoreBackend::Postgres;
        config.store.pool_size = 0;
        config.store.redis_breaker_failures = 0;
        config.store.redis_connections = 0;
        let message = config.validate().unwrap_err().to_string();
        for needle in [
            "access_ttl",
            "rsa_bits",
            "cannot sign",
            "postgres_url is required",
            "pool_size",
            "redis_breaker",
            "redis_connections",
        ] {
            assert!(message.contains(needle), "{message}");
        }
    }

    #[test]
    fn tiered_needs_both_postgresql_and_redis() {
        let mut config = Config::default();
        config.store.backend = StoreBackend::Tiered;
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("postgres_url is required with store.backend = \"tiered\""), "{message}");
        assert!(message.contains("redis_urls is required with store.backend = \"tiered\""), "{message}");
        config.store.postgres_url = Some("postgres://tessera@127.0.0.1/tessera".into());
        config.store.redis_urls = vec!["redis://127.0.0.1:6379".into()];
        config.validate().unwrap();
        config.store.backend = StoreBackend::Postgres;
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("redis_urls is set but store.backend is neither"), "{message}");
    }

    #[test]
    fn the_redis_store_needs_its_urls_and_one_url_without_a_cluster() {
        let mut config = Config::default();
        config.store.backend = StoreBackend::Redis;
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("redis_urls is required"), "{message}");
        config.store.redis_urls = vec!["redis://a:6379/".into(), "redis://b:6379/".into()];
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("one URL unless store.redis_cluster"), "{message}");
        config.store.redis_cluster = true;
        config.validate().unwrap();
        config.store.backend = StoreBackend::Sqlite;
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("redis_urls is set"), "{message}");
    }

    #[test]
    fn trusted_issuers_publish_their_keys_over_https_or_on_this_machine() {
        let mut config = Config::default();
        let issuer = |jwks_url: &str| -> TrustedIssuerConfig {
            serde_json::from_value(serde_json::json!({"issuer": jwks_url, "jwks_url": jwks_url, "audiences": ["api"]}))
                .unwrap()
        };
        config.trusted_issuers =
            ["https://partner.test/jwks", "http://127.0.0.1:9000/jwks", "http://localhost/jwks"].map(issuer).into();
        config.validate().unwrap();
        config.trusted_issuers.push(issuer("http://partner.test/jwks"));
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("must be https (plain http only to a loopback address)"), "{message}");
    }

    #[test]
    fn without_an_issuer_the_configured_address_is_the_issuer() {
        let mut config = Config::default();
        assert_eq!(config.issuer(), "http://127.0.0.1:8080");
        config.server.listen = "127.0.0.1:9443".into();
        config.server.tls_cert_file = Some("cert.pem".into());
        assert_eq!(config.issuer(), "https://127.0.0.1:9443");
        config.issuer = Some("https://auth.example.com".into());
        assert_eq!(config.issuer(), "https://auth.example.com");
        config.issuer = Some(" ".into());
        assert!(config.validate().unwrap_err().to_string().contains("issuer must not be empty"));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let mut config = Config::default();
        config.server.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.7".into(), "2001:db8::/32".into()];
        config.validate().unwrap();
        config.server.trusted_proxies.push("proxy.internal".into());
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains(r#""proxy.internal" is not an IP address"#), "{message}");
    }

    #[test]
    fn gateway_routes_headers_and_issuer_maps_are_checked_at_load() {
        let route = |prefix: &str, method: Option<&str>, scopes: &[&str]| RouteConfig {
            path_prefix: prefix.into(),
            case_insensitive: false,
            method: method.map(str::to_owned),
            audience: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut config = Config::default();
        config.gateway.routes = vec![route("/admin/", Some("delete"), &["admin"]), route("/", None, &[])];
        config.validate().unwrap();
        let settings = crate::serve::settings(&config).unwrap();
        assert_eq!(settings.routes[0].path_prefix, "/admin", "normalised, without the trailing slash");
        assert_eq!(settings.routes[0].method.as_deref(), Some("DELETE"), "upper-cased at load");

        config.gateway.routes = vec![
            route("admin", None, &[]),
            route("/a%2Fb", None, &[]),
            route("/x", Some("GET /"), &[]),
            route("/y", None, &["a b"]),
        ];
        config.gateway.forwarded_headers = ForwardedHeadersConfig::Custom;
        config.trusted_issuers = vec![TrustedIssuerConfig {
            issuer: "https://partner.test".into(),
            jwks_url: "https://partner.test/jwks.json".into(),
            audiences: vec!["api".into()],
            allow_exchange: false,
            role_map: [("partner-admin".to_owned(), "partner,admin".to_owned())].into(),
            scope_map: [("orders.read".to_owned(), "orders read".to_owned())].into(),
        }];
        let message = config.validate().unwrap_err().to_string();
        for needle in [
            r#"path_prefix "admin": the path must start with /"#,
            r#"path_prefix "/a%2Fb": the path has an encoded /"#,
            r#"method "GET /" is not an HTTP method"#,
            r#"scope "a b" is not one scope name"#,
            "gateway.method_header is required",
            "gateway.uri_header is required",
            r#"role_map: role "partner,admin" is not allowed"#,
            r#"scope_map: "orders read" is not one scope name"#,
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }
}
