//! `[migration]`: moving users from a legacy application's session cookies to Tessera's tokens. The rollout
//! itself (phase, percentage, canary users) is not configuration: it is changed at runtime with `tessera migrate`
//! or the admin API and kept in the store. What is configured here is how legacy sessions are read, and the
//! triggers and gates the rollout is held to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tessera_legacy::{Cached, ExpressRedis, ExpressRedisConfig, LegacySessions, WhoAmI, WhoAmIConfig};

use super::duration_text;

/// The migration from legacy session cookies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MigrationConfig {
    /// Accept legacy session cookies at `/verify` and offer `/auth/migrate`. Default false.
    pub(crate) enabled: bool,
    /// How legacy sessions are read: `express-redis` (express-session's sessions in Redis, read directly) or
    /// `whoami` (the legacy application's "who am I" endpoint, called with the cookie). Default `express-redis`.
    pub(crate) adapter: AdapterKind,
    /// After `/auth/migrate`: `keep` the legacy session (default: a rollback then finds the user still logged in
    /// there) or `end` it through the adapter.
    pub(crate) legacy_session: AfterMigrate,
    /// When the legacy store or endpoint fails or is slow: `deny` (default: fail closed, 503) or `stale` (answer
    /// from the last good answer for that cookie, if younger than `stale_for` and never past the session's expiry).
    pub(crate) on_unavailable: OnUnavailable,
    /// With `on_unavailable = "stale"`: how old an answer may stand in. Default 60 s.
    #[serde(with = "duration_text")]
    pub(crate) stale_for: Duration,
    /// Audiences a legacy session satisfies at `/verify?audience=...`. Default none: a legacy session opens only
    /// gateways whose auth URL names no audience.
    pub(crate) session_audiences: Vec<String>,
    /// How often each node re-reads the rollout from the store. Default 250 ms (a change reaches every node
    /// within a second).
    #[serde(with = "duration_text")]
    pub(crate) poll_interval: Duration,
    /// `adapter = "express-redis"`.
    pub(crate) express: ExpressConfig,
    /// `adapter = "whoami"`.
    pub(crate) whoami: WhoAmIConfigFile,
    /// What returns the rollout to its previous phase.
    pub(crate) triggers: TriggersConfig,
    /// What must hold before the rollout may advance.
    pub(crate) gates: GatesConfig,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            adapter: AdapterKind::ExpressRedis,
            legacy_session: AfterMigrate::Keep,
            on_unavailable: OnUnavailable::Deny,
            stale_for: Duration::from_secs(60),
            session_audiences: Vec::new(),
            poll_interval: Duration::from_millis(250),
            express: ExpressConfig::default(),
            whoami: WhoAmIConfigFile::default(),
            triggers: TriggersConfig::default(),
            gates: GatesConfig::default(),
        }
    }
}

/// How legacy sessions are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AdapterKind {
    /// express-session + connect-redis.
    ExpressRedis,
    /// The legacy application's "who am I" endpoint.
    Whoami,
}

/// What becomes of the legacy session after `/auth/migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AfterMigrate {
    /// It lives on until it expires or the user logs out of the legacy application.
    Keep,
    /// It is ended through the adapter (the Redis key deleted, or the who-am-I adapter's `logout_url` called).
    End,
}

/// What happens while the legacy store or endpoint cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnUnavailable {
    /// Fail closed: 503.
    Deny,
    /// A recent good answer stands in, within `stale_for` and the session's own expiry.
    Stale,
}

/// express-session's sessions in Redis (connect-redis).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ExpressConfig {
    /// The Redis the sessions are in. Default `redis://127.0.0.1:6379`.
    pub(crate) redis_url: String,
    /// connect-redis's key prefix. Default `sess:`.
    pub(crate) prefix: String,
    /// The session cookie. Default `connect.sid`.
    pub(crate) cookie_name: String,
    /// express-session's `secret`s, newest first (every one is accepted, as express-session does). Prefer
    /// `secrets_file`, or `TESSERA_MIGRATION__EXPRESS__SECRETS='["..."]'`, to keeping them in this file.
    pub(crate) secrets: Vec<String>,
    /// A file with one secret per line, newest first, read at startup (added after `secrets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secrets_file: Option<PathBuf>,
    /// JSON pointer to the user id in the session. Default `/user/id`.
    pub(crate) user_id_field: String,
    /// JSON pointer to the user's roles (a list of strings). Default `/user/roles`.
    pub(crate) roles_field: String,
    /// Attributes rollout segments may select users by: name → JSON pointer (`plan = "/user/plan"`). Default none.
    pub(crate) attribute_fields: BTreeMap<String, String>,
    /// Longest wait for Redis. Default 250 ms.
    #[serde(with = "duration_text")]
    pub(crate) timeout: Duration,
    /// How long an answer is reused for the same cookie. Default 0 s: every request reads Redis, as
    /// express-session does, so a legacy logout counts at once.
    #[serde(with = "duration_text")]
    pub(crate) cache_ttl: Duration,
}

// By hand: the signing secrets never reach a log line.
impl std::fmt::Debug for ExpressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpressConfig")
            .field("redis_url", &self.redis_url)
            .field("prefix", &self.prefix)
            .field("cookie_name", &self.cookie_name)
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .field("secrets_file", &self.secrets_file)
            .field("user_id_field", &self.user_id_field)
            .field("roles_field", &self.roles_field)
            .field("attribute_fields", &self.attribute_fields)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

impl Default for ExpressConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            prefix: "sess:".into(),
            cookie_name: "connect.sid".into(),
            secrets: Vec::new(),
            secrets_file: None,
            user_id_field: "/user/id".into(),
            roles_field: "/user/roles".into(),
            attribute_fields: BTreeMap::new(),
            timeout: Duration::from_millis(250),
            cache_ttl: Duration::ZERO,
        }
    }
}

/// The legacy application's "who am I" endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WhoAmIConfigFile {
    /// The endpoint, called with `GET` and only the session cookie. Required with `adapter = "whoami"`.
    pub(crate) url: String,
    /// The session cookie. Default `connect.sid`.
    pub(crate) cookie_name: String,
    /// Longest wait for an answer. Default 500 ms.
    #[serde(with = "duration_text")]
    pub(crate) timeout: Duration,
    /// How long an answer is reused for the same cookie (never past the session's expiry). Default 5 s.
    #[serde(with = "duration_text")]
    pub(crate) cache_ttl: Duration,
    /// JSON pointer to the user id in the answer. Default `/id`.
    pub(crate) user_id_field: String,
    /// JSON pointer to the roles. Default `/roles`.
    pub(crate) roles_field: String,
    /// Attributes rollout segments may select users by: name → JSON pointer. Default none.
    pub(crate) attribute_fields: BTreeMap<String, String>,
    /// JSON pointer to the session's expiry (Unix seconds or RFC 3339), if the answer has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_field: Option<String>,
    /// Called with `POST` and the cookie to end the legacy session (`legacy_session = "end"`), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logout_url: Option<String>,
}

impl Default for WhoAmIConfigFile {
    fn default() -> Self {
        Self {
            url: String::new(),
            cookie_name: "connect.sid".into(),
            timeout: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(5),
            user_id_field: "/id".into(),
            roles_field: "/roles".into(),
            attribute_fields: BTreeMap::new(),
            expires_field: None,
            logout_url: None,
        }
    }
}

/// What returns the rollout to its previous phase (the reference plan's defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TriggersConfig {
    /// The window judged. Default 30 s.
    #[serde(with = "duration_text")]
    pub(crate) window: Duration,
    /// Fewer token-path requests than this in the window: nothing is judged. Default 50.
    pub(crate) min_requests: u64,
    /// Fires above this share of server errors on the token path. Default 0.01 (1%).
    pub(crate) rollback_error_rate: f64,
    /// Fires when the token path's p95 latency is above this. Default 200 ms.
    #[serde(with = "duration_text")]
    pub(crate) rollback_p95: Duration,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            min_requests: 50,
            rollback_error_rate: 0.01,
            rollback_p95: Duration::from_millis(200),
        }
    }
}

/// What must hold before the rollout may advance from a phase with token traffic (the reference plan's canary
/// gate).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GatesConfig {
    /// The window judged. Default 60 s.
    #[serde(with = "duration_text")]
    pub(crate) window: Duration,
    /// At least this many token-path requests in the window. Default 100.
    pub(crate) min_requests: u64,
    /// Server errors below this share. Default 0.001 (0.1%).
    pub(crate) max_error_rate: f64,
    /// p95 latency below this. Default 50 ms.
    #[serde(with = "duration_text")]
    pub(crate) max_p95: Duration,
}

impl Default for GatesConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            min_requests: 100,
            max_error_rate: 0.001,
            max_p95: Duration::from_millis(50),
        }
    }
}

/// The longest window a trigger or gate may judge (the health window keeps a slot a second).
const MAX_WINDOW: Duration = Duration::from_secs(3600);

impl MigrationConfig {
    /// Every problem of the section, when enabled.
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if !self.enabled {
            return;
        }
        let rate = |name: &str, value: f64, problems: &mut Vec<String>| {
            if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
                problems.push(format!("migration.{name} must be a share between 0 and 1 (0.01 is 1%), not {value}"));
            }
        };
        rate("triggers.rollback_error_rate", self.triggers.rollback_error_rate, problems);
        rate("gates.max_error_rate", self.gates.max_error_rate, problems);
        for (name, window) in [("triggers.window", self.triggers.window), ("gates.window", self.gates.window)] {
            if !(Duration::from_secs(1)..=MAX_WINDOW).contains(&window) {
                problems.push(format!("migration.{name} must be between 1s and 1h"));
            }
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(1)).contains(&self.poll_interval) {
            problems.push(
                "migration.poll_interval must be between 10ms and 1s (a change must reach every node within a second)"
                    .into(),
            );
        }
        for audience in &self.session_audiences {
            if audience.is_empty() {
                problems.push("migration.session_audiences must not hold an empty audience".into());
            }
        }
        // The adapter's own checks (URLs, JSON pointers, secrets) run when it is built: see `legacy_sessions`.
        if self.adapter == AdapterKind::Whoami && self.whoami.url.is_empty() {
            problems.push("migration.whoami.url is required with migration.adapter = \"whoami\"".into());
        }
        if self.adapter == AdapterKind::ExpressRedis
            && self.express.secrets.is_empty()
            && self.express.secrets_file.is_none()
        {
            problems.push(
                "migration.express.secrets (or secrets_file) is required with migration.adapter = \"express-redis\": \
                 an unsigned session cookie is never trusted"
                    .into(),
            );
        }
    }

    /// The server's settings for the migration.
    pub(crate) fn settings(&self) -> tessera_server::MigrationSettings {
        tessera_server::MigrationSettings {
            end_legacy_session: self.legacy_session == AfterMigrate::End,
            session_audiences: self.session_audiences.clone(),
            poll_interval: self.poll_interval,
            triggers: tessera_migration::Triggers {
                window: self.triggers.window,
                min_requests: self.triggers.min_requests,
                error_rate: self.triggers.rollback_error_rate,
                p95: self.triggers.rollback_p95,
            },
            gates: tessera_migration::Gates {
                window: self.gates.window,
                min_requests: self.gates.min_requests,
                max_error_rate: self.gates.max_error_rate,
                max_p95: self.gates.max_p95,
            },
        }
    }

    /// The adapter that reads legacy sessions, behind its cache.
    ///
    /// # Errors
    /// An unreadable secrets file, or every problem the adapter finds with its settings.
    pub(crate) fn legacy_sessions(&self) -> anyhow::Result<Arc<dyn LegacySessions>> {
        let stale_for = (self.on_unavailable == OnUnavailable::Stale).then_some(self.stale_for);
        // Enough entries for the cookies of a busy node's last few seconds; each is a user id, roles and a hash.
        const CACHE_CAPACITY: usize = 100_000;
        Ok(match self.adapter {
            AdapterKind::ExpressRedis => {
                let mut secrets = self.express.secrets.clone();
                if let Some(file) = &self.express.secrets_file {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading migration.express.secrets_file {}", file.display()))?;
                    secrets.extend(text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned));
                }
                let adapter = ExpressRedis::new(ExpressRedisConfig {
                    redis_url: self.express.redis_url.clone(),
                    prefix: self.express.prefix.clone(),
                    cookie_name: self.express.cookie_name.clone(),
                    secrets,
                    user_id_field: self.express.user_id_field.clone(),
                    roles_field: self.express.roles_field.clone(),
                    attribute_fields: self.express.attribute_fields.clone(),
                    timeout: self.express.timeout,
                })
                .context("migration.express")?;
                Arc::new(Cached::new(adapter, self.express.cache_ttl, stale_for, CACHE_CAPACITY))
            }
            AdapterKind::Whoami => {
                let adapter = WhoAmI::new(WhoAmIConfig {
                    url: self.whoami.url.clone(),
                    cookie_name: self.whoami.cookie_name.clone(),
                    timeout: self.whoami.timeout,
                    user_id_field: self.whoami.user_id_field.clone(),
                    roles_field: self.whoami.roles_field.clone(),
                    attribute_fields: self.whoami.attribute_fields.clone(),
                    expires_field: self.whoami.expires_field.clone(),
                    logout_url: self.whoami.logout_url.clone(),
                })
                .context("migration.whoami")?
                .passing_on(tessera_server::trace::outgoing_headers);
                Arc::new(Cached::new(adapter, self.whoami.cache_ttl, stale_for, CACHE_CAPACITY))
            }
        })
    }
}
