//! Legacy sessions, for Tessera's migration from session cookies to tokens: checks a legacy session cookie and says
//! whose it is.
//!
//! While an application moves from its old session cookies to Tessera's tokens, both must be accepted: Tessera
//! asks the legacy system who a cookie belongs to and answers for it as it would for a token. Two adapters:
//!
//! - [`ExpressRedis`]: express-session's signed cookie (`connect.sid`), checked here against the application's
//!   secrets, then its session read from Redis where connect-redis keeps it. The legacy application is not asked.
//! - [`WhoAmI`]: any other legacy system, asked through an HTTP endpoint that answers with the session's user.
//!
//! [`Cached`] wraps either to spare the legacy system a request per check, and can answer from the last good
//! answer for a bounded time while the legacy system is down.
//!
//! No HTTP server code: the server finds the cookie ([`find_cookie`]) and maps [`LegacyError`] to its answers
//! (forged or ended session → 401, legacy system down → 503). No cookie value is ever logged or put in an error:
//! a session cookie is a bearer credential.

mod cached;
mod express;
mod fields;
mod signed;
mod whoami;

use std::sync::Arc;

pub use cached::Cached;
pub use express::{ExpressRedis, ExpressRedisConfig};
pub use whoami::{WhoAmI, WhoAmIConfig};

/// Whose a legacy session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyIdentity {
    /// The user's id in the legacy system (1..=256 bytes, no control characters).
    pub user_id: String,
    /// The user's roles (each 1..=256 bytes, no control characters, no `,`: the server joins them with commas).
    pub roles: Vec<String>,
    /// When the session ends (Unix milliseconds), when the legacy system says: an answer is never used past it.
    pub expires_at_ms: Option<i64>,
    /// The configured attributes the session has (name → value as text), for rollout segments; one the session
    /// lacks, or holds as an object or array, is absent.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Why a cookie names nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    /// The cookie is malformed, unsigned, or its signature matches none of the secrets (forged).
    #[error("invalid legacy session cookie: {0}")]
    Invalid(&'static str),
    /// A well-formed, correctly signed cookie whose session does not exist (expired, ended) or is unusable (no user
    /// id field).
    #[error("no such legacy session")]
    NoSession,
    /// The legacy store or endpoint failed or did not answer in time. Never contains the cookie.
    #[error("legacy sessions unavailable: {0}")]
    Unavailable(String),
}

/// A legacy session system: who a cookie belongs to, and ending its session.
#[async_trait::async_trait]
pub trait LegacySessions: Send + Sync + 'static {
    /// The cookie's name (e.g. `connect.sid`).
    fn cookie_name(&self) -> &str;

    /// Whose session `cookie_value` (the raw value from the Cookie header, still URL-encoded) is, at `now_ms`.
    ///
    /// # Errors
    /// [`LegacyError::Invalid`] for a malformed or forged cookie, [`LegacyError::NoSession`] for a session that
    /// does not exist (any more) or is unusable, [`LegacyError::Unavailable`] when the legacy system cannot tell.
    async fn identify(&self, cookie_value: &str, now_ms: i64) -> Result<LegacyIdentity, LegacyError>;

    /// Ends the session if the adapter can; Ok(true) if ended, Ok(false) if this adapter cannot end sessions.
    ///
    /// # Errors
    /// As [`identify`](Self::identify): a cookie that is not genuine ends nothing.
    async fn end(&self, cookie_value: &str) -> Result<bool, LegacyError>;
}

/// So one adapter can be shared (`Arc<dyn LegacySessions>`).
#[async_trait::async_trait]
impl<T: LegacySessions + ?Sized> LegacySessions for Arc<T> {
    fn cookie_name(&self) -> &str {
        (**self).cookie_name()
    }

    async fn identify(&self, cookie_value: &str, now_ms: i64) -> Result<LegacyIdentity, LegacyError> {
        (**self).identify(cookie_value, now_ms).await
    }

    async fn end(&self, cookie_value: &str) -> Result<bool, LegacyError> {
        (**self).end(cookie_value).await
    }
}

/// The value of the cookie named `name` in request `Cookie` headers (all of them, `;`-separated pairs, whitespace
/// trimmed). `Err(Invalid("ambiguous"))` if the name occurs more than once with different values (cookie tossing),
/// Ok(None) if absent.
///
/// A value in double quotes is returned without them, as express-session's cookie parser does. The name is
/// compared exactly (cookie names are case-sensitive). Two different values are refused rather than one picked:
/// a sibling subdomain can plant a second cookie of the same name (cookie tossing), and whichever the server picked,
/// the legacy application might pick the other, so the user would be one person to Tessera and another to it.
///
/// # Errors
/// [`LegacyError::Invalid`]`("ambiguous")` as above.
pub fn find_cookie<'a>(
    cookie_headers: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> Result<Option<&'a str>, LegacyError> {
    let mut found: Option<&'a str> = None;
    for header in cookie_headers {
        for pair in header.split(';') {
            let Some((pair_name, value)) = pair.split_once('=') else { continue };
            if pair_name.trim() != name {
                continue;
            }
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(value);
            match found {
                Some(earlier) if earlier != value => return Err(LegacyError::Invalid("ambiguous")),
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

/// A configuration an adapter cannot work with: every problem found, so the operator fixes them in one go. No
/// message contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The problems, one sentence each, naming the field (`secrets: ...`).
    #[error("invalid legacy-session configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// The problems, one sentence each.
    #[must_use]
    pub fn problems(&self) -> &[String] {
        match self {
            Self::Invalid(problems) => problems,
        }
    }
}

/// Cookies longer than this are refused before any work: browsers keep cookies to about 4 KiB, and a signature
/// check or a request to the legacy system should not be had for free with a megabyte of input.
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;
