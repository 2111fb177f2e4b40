//! Configuration: `tessera.toml`, then `TESSERA_*` environment variables, then flags, in rising precedence.
//! One typed struct; every default documented here and in `tessera.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use tessera_jose::RsaBits;
use tessera_keys::{MasterKey, RotationPolicy};

/// The configuration file read when `--config` and `TESSERA_CONFIG` are not given (if it exists).
pub(crate) const DEFAULT_CONFIG_FILE: &str = "tessera.toml";
/// The environment variable holding the master key that seals signing keys at rest.
pub(crate) const MASTER_KEY_ENV: &str = "TESSERA_MASTER_KEY";

mod events;
mod migration;
mod sections;
#[cfg(test)]
mod tests;
mod tracing;
mod validate;

pub(crate) use events::EventsConfig;
pub(crate) use migration::MigrationConfig;
pub(crate) use sections::{
    DemoConfig, ExchangeRuleConfig, ForwardedHeadersConfig, GatewayConfig, KeyConfig, LogFormat, RateLimitConfig,
    RevocationConfig, ServerConfig, SessionConfig, SignInConfig, StalePolicyConfig, StoreBackend, StoreConfig,
    TokenConfig, TrustedIssuerConfig,
};
pub(crate) use tracing::{OtlpProtocol, TracingConfig};

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
    /// Signing users in for other applications: the login's lifetime and the pages' look.
    pub(crate) sign_in: SignInConfig,
    /// The demo application.
    pub(crate) demo: DemoConfig,
    /// The migration from a legacy application's session cookies to tokens.
    pub(crate) migration: MigrationConfig,
    /// Trace export over OTLP.
    pub(crate) tracing: TracingConfig,
    /// Security events: the webhook they are sent to.
    pub(crate) events: EventsConfig,
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
            sign_in: SignInConfig::default(),
            demo: DemoConfig::default(),
            migration: MigrationConfig::default(),
            tracing: TracingConfig::default(),
            events: EventsConfig::default(),
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
        let env =
            Env::prefixed("TESSERA_").ignore(&["MASTER_KEY", "CONFIG", "ADMIN_TOKEN", "WEBHOOK_SECRET"]).split("__");
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
    /// How long revocations matter: the longest lifetime of the tokens the server issues, plus leeway.
    pub(crate) fn retention(&self) -> tessera_revocation::Retention {
        let t = &self.tokens;
        tessera_server::settings::revocation_retention(secs(t.access_ttl), secs(t.service_ttl), secs(t.leeway))
    }

    /// The key rotation policy these settings describe.
    #[must_use]
    pub(crate) fn rotation_policy(&self) -> RotationPolicy {
        RotationPolicy {
            algorithm: self.keys.algorithm,
            rsa_bits: if self.keys.rsa_bits == 3072 { RsaBits::Bits3072 } else { RsaBits::Bits2048 },
            rotation_interval: secs(self.keys.rotation_interval),
            prepublish: secs(self.keys.prepublish),
            retain_after_retirement: secs(self.tokens.max_ttl + self.tokens.leeway),
            secrets_rotation_interval: secs(self.keys.secrets_rotation_interval),
            rs256_id_tokens: self.keys.rs256_id_tokens,
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
