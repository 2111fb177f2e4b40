//! express-session with connect-redis: the cookie's signature checked here with the application's secrets, the
//! session read from Redis (`<prefix><session id>`, express-session's JSON) without asking the application.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Pipeline};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::fields::{check_cookie_name, check_pointer, check_timeout, expiry_ms, redact_url, Fields};
use crate::signed::Secrets;
use crate::{ConfigError, LegacyError, LegacyIdentity, LegacySessions};

/// Where express-session keeps the cookie's expiry in the session (`cookie.expires`, a date, `null` for a browser
/// session cookie).
const COOKIE_EXPIRES: &str = "/cookie/expires";

/// How to read express-session's sessions.
#[derive(Clone)]
pub struct ExpressRedisConfig {
    /// The Redis connect-redis writes to (`redis://[[user]:password@]host[:port][/db]`).
    pub redis_url: String,
    /// connect-redis's key prefix (its default: `sess:`).
    pub prefix: String,
    /// express-session's cookie name (its default: `connect.sid`).
    pub cookie_name: String,
    /// express-session's secrets, newest first: a cookie signed with any of them is genuine (rotation).
    pub secrets: Vec<String>,
    /// JSON pointer to the user id in the session (e.g. `/user/id`).
    pub user_id_field: String,
    /// JSON pointer to the roles array in the session (e.g. `/user/roles`).
    pub roles_field: String,
    /// Attribute name → JSON pointer: what rollout segments may select users by (`plan` → `/user/plan`).
    pub attribute_fields: std::collections::BTreeMap<String, String>,
    /// How long a Redis lookup may take, connecting included, before the answer is
    /// [`Unavailable`](LegacyError::Unavailable).
    pub timeout: Duration,
}

impl Default for ExpressRedisConfig {
    /// express-session's and connect-redis's defaults, Tessera's field pointers, and no secret (which must be set).
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "sess:".to_owned(),
            cookie_name: "connect.sid".to_owned(),
            secrets: Vec::new(),
            user_id_field: "/user/id".to_owned(),
            roles_field: "/user/roles".to_owned(),
            attribute_fields: std::collections::BTreeMap::new(),
            timeout: Duration::from_millis(250),
        }
    }
}

/// The secrets are shown by number only, the URL without its password: configurations get logged.
impl std::fmt::Debug for ExpressRedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpressRedisConfig")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("prefix", &self.prefix)
            .field("cookie_name", &self.cookie_name)
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .field("user_id_field", &self.user_id_field)
            .field("roles_field", &self.roles_field)
            .field("attribute_fields", &self.attribute_fields)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// express-session's sessions in Redis (connect-redis).
///
/// Connects lazily: construction never blocks, and a Redis that is down at startup is only an
/// [`Unavailable`](LegacyError::Unavailable) when a cookie is checked (the connection is retried then). Sessions are
/// only read, never touched: reading one does not extend it.
pub struct ExpressRedis {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    secrets: Secrets,
    prefix: String,
    cookie_name: String,
    fields: Fields,
    timeout: Duration,
    redis_url: String,
}

impl std::fmt::Debug for ExpressRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpressRedis")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("prefix", &self.prefix)
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

impl ExpressRedis {
    /// An adapter for `config`; it connects to Redis on first use.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem: no secret or an empty one, a URL that is not a Redis URL, a field that
    /// is not a JSON pointer, a bad cookie name, a zero timeout.
    pub fn new(config: ExpressRedisConfig) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let client = match redis::Client::open(config.redis_url.as_str()) {
            Ok(client) => Some(client),
            Err(_) => {
                // Not the URL itself: it may hold a password.
                problems.push("redis_url: not a usable Redis URL (redis://[[user]:password@]host[:port][/db])".into());
                None
            }
        };
        if config.secrets.is_empty() {
            problems.push("secrets: at least one (express-session's `secret`, newest first)".into());
        }
        if config.secrets.iter().any(String::is_empty) {
            problems.push("secrets: an empty secret signs nothing (every cookie would be forgeable)".into());
        }
        check_cookie_name(&config.cookie_name, &mut problems);
        check_pointer("user_id_field", &config.user_id_field, &mut problems);
        check_pointer("roles_field", &config.roles_field, &mut problems);
        crate::fields::check_attributes(&config.attribute_fields, &mut problems);
        check_timeout(config.timeout, &mut problems);
        let Some(client) = client.filter(|_| problems.is_empty()) else {
            return Err(ConfigError::Invalid(problems));
        };
        Ok(Self {
            client,
            connection: OnceCell::new(),
            secrets: Secrets::new(config.secrets.iter().map(String::as_str)),
            prefix: config.prefix,
            cookie_name: config.cookie_name,
            fields: Fields {
                user_id: config.user_id_field,
                roles: config.roles_field,
                attributes: config.attribute_fields,
            },
            timeout: config.timeout,
            redis_url: config.redis_url,
        })
    }

    /// Runs `pipe` within the timeout, connecting first if need be.
    async fn run<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, LegacyError> {
        let work = async {
            let connection = self
                .connection
                .get_or_try_init(|| async {
                    // Lazy: the connection is opened by the first command, and reopened by the next one after a
                    // failure. A single retry: a request fails fast while Redis is away, the next tries again.
                    let config = ConnectionManagerConfig::new()
                        .set_number_of_retries(1)
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout));
                    self.client.get_connection_manager_lazy(config)
                })
                .await?;
            pipe.query_async::<T>(&mut connection.clone()).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(answer)) => Ok(answer),
            // Redis's errors name no key, so no session id.
            Ok(Err(err)) => Err(LegacyError::Unavailable(format!("Redis: {err}"))),
            Err(_) => Err(LegacyError::Unavailable(format!("Redis did not answer within {:?}", self.timeout))),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }
}

#[async_trait::async_trait]
impl LegacySessions for ExpressRedis {
    fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The session's user if the cookie is genuine and its session lives: present in Redis, its `cookie.expires`
    /// (when set) still ahead. The answer expires at the earlier of `cookie.expires` and the key's time to live,
    /// both read in one round trip.
    async fn identify(&self, cookie_value: &str, now_ms: i64) -> Result<LegacyIdentity, LegacyError> {
        let id = self.secrets.session_id(cookie_value)?;
        let key = self.key(&id);
        let (stored, pttl): (Option<Vec<u8>>, i64) = self.run(redis::pipe().get(&key).pttl(&key)).await?;
        // PTTL -2: the key went between the two commands; -1: no time to live.
        let Some(stored) = stored.filter(|_| pttl != -2) else { return Err(LegacyError::NoSession) };
        // Not JSON: not a session this adapter can read (another serializer, another application's key).
        let session: Value = serde_json::from_slice(&stored).map_err(|_| LegacyError::NoSession)?;
        // express-session refuses a session whose cookie has expired even while Redis still holds it.
        let cookie_expires = expiry_ms(&session, COOKIE_EXPIRES, false).map_err(|()| LegacyError::NoSession)?;
        let key_expires = (pttl >= 0).then(|| now_ms.saturating_add(pttl));
        let expires_at_ms = match (cookie_expires, key_expires) {
            (Some(cookie), Some(key)) => Some(cookie.min(key)),
            (cookie, key) => cookie.or(key),
        };
        if expires_at_ms.is_some_and(|expires| expires <= now_ms) {
            return Err(LegacyError::NoSession);
        }
        self.fields.identity(&session, expires_at_ms)
    }

    /// Deletes the session from Redis (only for a genuine cookie): the application sees it logged out too.
    async fn end(&self, cookie_value: &str) -> Result<bool, LegacyError> {
        let id = self.secrets.session_id(cookie_value)?;
        let key = self.key(&id);
        let (_deleted,): (i64,) = self.run(redis::pipe().del(&key)).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExpressRedisConfig {
        ExpressRedisConfig { secrets: vec!["keyboard cat".into()], ..ExpressRedisConfig::default() }
    }

    #[test]
    fn every_configuration_problem_is_reported_at_once() {
        let bad = ExpressRedisConfig {
            redis_url: "http://[::1".into(),
            secrets: vec![],
            cookie_name: "connect sid".into(),
            user_id_field: "user.id".into(),
            roles_field: String::new(),
            timeout: Duration::ZERO,
            ..config()
        };
        let problems = ExpressRedis::new(bad).unwrap_err().problems().to_vec();
        for field in ["redis_url", "secrets", "cookie_name", "user_id_field", "roles_field", "timeout"] {
            assert!(problems.iter().any(|problem| problem.starts_with(field)), "{field} in {problems:?}");
        }
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let err = ExpressRedis::new(ExpressRedisConfig { secrets: vec!["ok".into(), String::new()], ..config() });
        assert!(err.unwrap_err().problems()[0].starts_with("secrets"));
    }

    #[test]
    fn construction_does_not_connect() {
        // Nothing listens on port 1; no runtime either: construction must not need one.
        let adapter = ExpressRedis::new(ExpressRedisConfig { redis_url: "redis://127.0.0.1:1/".into(), ..config() });
        assert!(adapter.is_ok());
    }

    #[test]
    fn debug_shows_neither_secrets_nor_the_redis_password() {
        let config = ExpressRedisConfig {
            redis_url: "redis://:hunter2@127.0.0.1:6379/".into(),
            secrets: vec!["keyboard cat".into(), "old secret".into()],
            ..config()
        };
        let shown = format!("{config:?} {:?}", ExpressRedis::new(config.clone()).unwrap());
        for secret in ["keyboard cat", "old secret", "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("[2 redacted]"), "{shown}");
    }
}
