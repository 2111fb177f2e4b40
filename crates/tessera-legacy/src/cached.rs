//! Remembered answers of a legacy adapter: the legacy system is asked about a cookie at most once per `ttl`, and,
//! when allowed, the last good answer stands in for a bounded time while it is down.

use std::time::Duration;

use aws_lc_rs::digest;
use quick_cache::sync::Cache;

use crate::{LegacyError, LegacyIdentity, LegacySessions};

/// Caches answers of an inner adapter: keyed by SHA-256 of the cookie value (never the raw cookie), bounded
/// capacity (quick_cache), each answer kept at most `ttl` and never past the session's `expires_at_ms`.
///
/// `stale_for`: when `Some`, an [`Unavailable`](LegacyError::Unavailable) from the inner adapter is answered with the
/// last good answer if it is younger than `stale_for` and the session has not expired (fail open, within a bound);
/// when `None`, errors pass through (fail closed). [`NoSession`](LegacyError::NoSession) and
/// [`Invalid`](LegacyError::Invalid) answers are never served stale; `NoSession` is cached for `ttl` (so a dead
/// cookie presented again and again costs the legacy system one request per `ttl`), `Invalid` never (it costs no
/// request: the inner adapter sees it alone).
///
/// The key is a hash so that the memory holding the cache holds no usable cookie. Ages are measured with the
/// `now_ms` the caller passes, so a clock that goes back makes an entry old, not young.
///
/// [`end`](LegacySessions::end) forgets the cached entry and calls the inner adapter.
pub struct Cached<A> {
    inner: A,
    ttl_ms: i64,
    stale_for_ms: Option<i64>,
    entries: Cache<[u8; 32], Entry>,
}

/// One remembered answer: whose the session was (`None`: no session), and when it was asked.
#[derive(Clone)]
struct Entry {
    identity: Option<LegacyIdentity>,
    asked_at_ms: i64,
}

impl Entry {
    /// Whether it is younger than `max_age_ms` at `now_ms` (and not from the future) and its session has not ended.
    fn usable(&self, now_ms: i64, max_age_ms: i64) -> bool {
        let age = now_ms.saturating_sub(self.asked_at_ms);
        let expired =
            self.identity.as_ref().and_then(|identity| identity.expires_at_ms).is_some_and(|end| end <= now_ms);
        (0..max_age_ms).contains(&age) && !expired
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// SHA-256 of the cookie value.
fn key(cookie_value: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, cookie_value.as_bytes());
    let mut key = [0; 32];
    for (to, from) in key.iter_mut().zip(digest.as_ref()) {
        *to = *from;
    }
    key
}

impl<A: LegacySessions> Cached<A> {
    /// `inner`'s answers, each kept at most `ttl`, at most `capacity` of them (at least one); see [`Cached`] for
    /// `stale_for`.
    #[must_use]
    pub fn new(inner: A, ttl: Duration, stale_for: Option<Duration>, capacity: usize) -> Self {
        Self { inner, ttl_ms: millis(ttl), stale_for_ms: stale_for.map(millis), entries: Cache::new(capacity.max(1)) }
    }

    /// The adapter asked on a miss.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// How many answers are remembered (for metrics).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no answer is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }
}

impl<A: std::fmt::Debug> std::fmt::Debug for Cached<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("inner", &self.inner)
            .field("ttl_ms", &self.ttl_ms)
            .field("stale_for_ms", &self.stale_for_ms)
            .field("entries", &self.entries.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl<A: LegacySessions> LegacySessions for Cached<A> {
    fn cookie_name(&self) -> &str {
        self.inner.cookie_name()
    }

    async fn identify(&self, cookie_value: &str, now_ms: i64) -> Result<LegacyIdentity, LegacyError> {
        let key = key(cookie_value);
        if let Some(entry) = self.entries.get(&key).filter(|entry| entry.usable(now_ms, self.ttl_ms)) {
            return entry.identity.ok_or(LegacyError::NoSession);
        }
        match self.inner.identify(cookie_value, now_ms).await {
            Ok(identity) => {
                self.entries.insert(key, Entry { identity: Some(identity.clone()), asked_at_ms: now_ms });
                Ok(identity)
            }
            Err(LegacyError::NoSession) => {
                self.entries.insert(key, Entry { identity: None, asked_at_ms: now_ms });
                Err(LegacyError::NoSession)
            }
            Err(LegacyError::Invalid(why)) => {
                // E.g. its secret was retired: what was remembered must not stand in later.
                self.entries.remove(&key);
                Err(LegacyError::Invalid(why))
            }
            Err(LegacyError::Unavailable(why)) => {
                let stale = self.stale_for_ms.and_then(|stale_for_ms| {
                    self.entries.get(&key).filter(|entry| entry.usable(now_ms, stale_for_ms))?.identity
                });
                stale.ok_or(LegacyError::Unavailable(why))
            }
        }
    }

    async fn end(&self, cookie_value: &str) -> Result<bool, LegacyError> {
        self.entries.remove(&key(cookie_value));
        self.inner.end(cookie_value).await
    }
}
