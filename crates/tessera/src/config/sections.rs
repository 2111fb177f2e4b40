//! The configuration's sections (`[store]`, `[tokens]`, `[gateway]`, ...), each with its documented defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_jose::Algorithm;

use super::duration_text;

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
    /// How long the revocation log keeps each entry (who revoked what, when, why) before the nodes forget it, in
    /// the background and in batches. Never less than verification needs (the longest token lifetime plus
    /// leeway), whatever is set. Default 90 days.
    #[serde(with = "duration_text")]
    pub(crate) log_retention: Duration,
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
            log_retention: Duration::from_secs(90 * 86_400),
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
    /// With `redis`: partitions of the revocation log, each in a hash slot of its own, so that on a Redis Cluster
    /// revocation writes spread over every master instead of all taking one (16 to 64 for a cluster of several
    /// masters). Default 1. It must match the number the store records: change it with every node stopped, by
    /// `tessera store repartition` (docs/scaling.md). With `tiered` the log is PostgreSQL's and this stays 1.
    pub(crate) redis_log_partitions: usize,
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
            redis_log_partitions: 1,
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
    /// Revocation-feed requests per client (`/gateway/v1/revocations`), shared by every instance that
    /// authenticates as that client: a follower asks again after each answer, so a busy log means a request per
    /// revocation or batch of them. Default 600.
    pub(crate) feed_per_client: u32,
    /// Revocation-feed long polls (`wait`) one client may have waiting at once, across all its instances; one more
    /// is answered 429 with `Retry-After: 1`. Each waiting poll holds a connection and a task for up to 30 s. Set it
    /// above the number of instances sharing one client. Default 64.
    pub(crate) feed_waits_per_client: u32,
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
            feed_per_client: 600,
            feed_waits_per_client: 64,
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
    /// Scopes of users' own access tokens (login, migration, and every refresh after), space-separated: what a
    /// service may narrow a user's token to when it exchanges it for the next hop. Default none.
    pub(crate) user_scope: String,
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
    /// Whether RS256 keys are kept beside the signing keys (when `algorithm` is another), on the same schedule, for
    /// the ID tokens of applications registered for RS256 (OpenID Connect Core §15.1). Default true.
    pub(crate) rs256_id_tokens: bool,
    /// How long the MAC keys of refresh and CSRF tokens issue before their successors take over; the previous
    /// key is still accepted for one more interval, so at least `sessions.idle_timeout`. Default 30 days.
    #[serde(with = "duration_text")]
    pub(crate) secrets_rotation_interval: Duration,
    /// A file holding the master key (32 random bytes, base64 or hex). `TESSERA_MASTER_KEY` takes precedence.
    /// With neither, keys are stored unencrypted and Tessera says so on every write; a shared store (PostgreSQL,
    /// Redis, tiered) refuses to start without one.
    pub(crate) master_key_file: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            audience: "tessera".into(),
            access_ttl: Duration::from_secs(15 * 60),
            service_ttl: Duration::from_secs(60),
            user_scope: String::new(),
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
            rs256_id_tokens: true,
            secrets_rotation_interval: Duration::from_secs(30 * 86_400),
            master_key_file: None,
        }
    }
}

/// Signing users in for other applications (`/oauth2/authorize`, OpenID Connect): how long a login at the
/// login page lasts, and the look of the login, consent and logout pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SignInConfig {
    /// How long a login at the login page lasts: applications get the person back without a password until then
    /// (or until they sign out). Default 12 hours.
    #[serde(with = "duration_text")]
    pub(crate) login_ttl: Duration,
    /// The name in the pages' titles and headings. Default "Tessera".
    pub(crate) name: String,
    /// A logo above the forms: an `https` URL, or a path on this server. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logo_url: Option<String>,
    /// The colour of buttons and focus rings, `#RGB` or `#RRGGBB`. Default "#1f5fbf".
    pub(crate) accent_color: String,
    /// The page background, `#RGB` or `#RRGGBB`. Default "#f4f5f7".
    pub(crate) background_color: String,
}

impl Default for SignInConfig {
    fn default() -> Self {
        let look = tessera_server::settings::PageLook::default();
        Self {
            login_ttl: tessera_server::settings::SignInSettings::default().login_ttl,
            name: look.name,
            logo_url: look.logo_url,
            accent_color: look.accent_color,
            background_color: look.background_color,
        }
    }
}

impl SignInConfig {
    /// What is wrong with the section, every problem at once.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.login_ttl < Duration::from_secs(60) {
            problems.push("sign_in.login_ttl must be at least 1 minute".to_owned());
        }
        if self.name.trim().is_empty() || self.name.len() > 100 {
            problems.push("sign_in.name must be 1 to 100 characters".to_owned());
        }
        for (field, color) in [("accent_color", &self.accent_color), ("background_color", &self.background_color)] {
            if !tessera_server::settings::is_hex_color(color) {
                problems.push(format!("sign_in.{field} must be a hex colour such as \"#1f5fbf\", not {color:?}"));
            }
        }
        if let Some(logo) = &self.logo_url {
            let https = logo.strip_prefix("https://").is_some_and(|rest| !rest.is_empty());
            let local = logo.starts_with('/') && !logo.starts_with("//");
            if !(https || local) || logo.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems
                    .push("sign_in.logo_url must be an https URL or a path on this server (\"/logo.svg\")".to_owned());
            }
        }
        problems
    }

    /// The service's settings of this section.
    pub(crate) fn settings(&self) -> tessera_server::settings::SignInSettings {
        tessera_server::settings::SignInSettings {
            login_ttl: self.login_ttl,
            look: tessera_server::settings::PageLook {
                name: self.name.clone(),
                logo_url: self.logo_url.clone(),
                accent_color: self.accent_color.clone(),
                background_color: self.background_color.clone(),
            },
        }
    }
}

/// The demo application: a login page at `/`, a protected demo API called through `@tessera/browser`, the user's
/// sessions. It only calls Tessera's own endpoints; turn it off where nobody should see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DemoConfig {
    /// Serve the demo at `/`. Default true.
    pub(crate) enabled: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}
