//! Tokens kept until a margin before they expire, each fetched by one caller while the others wait for it.
//!
//! A key (a service-token target, or a subject token's hash with its target) has a slot; a caller that finds
//! the slot's token stale takes the slot's lock and fetches, and the callers queued behind it find the fresh
//! token when they get the lock. When that one fetch fails, they get its error rather than each trying again:
//! one token request however many calls wait, in failure too.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::{AccessToken, TokenError};

/// A fetched token and until when it is handed out (its expiry less the refresh margin).
pub(crate) struct Fetched {
    pub(crate) token: AccessToken,
    pub(crate) fresh_until: Instant,
}

#[derive(Default)]
struct Slot {
    /// Fetches finished (successful or not): a caller that saw another number before it queued lets that
    /// fetch's outcome answer it.
    finished: AtomicU64,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    held: Option<Fetched>,
    last_error: Option<TokenError>,
}

/// The slots, at most `capacity` of them (beyond it, those holding nothing current are dropped first).
pub(crate) struct TokenCache<K> {
    slots: Mutex<HashMap<K, Arc<Slot>>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> TokenCache<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { slots: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The token for `key`: the held one while fresh, else the one `fetch` brings — fetched by one caller at a
    /// time. A failed refresh falls back on the held token while it has not expired.
    pub(crate) async fn get<F, Fut>(&self, key: &K, fetch: F) -> Result<AccessToken, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, TokenError>>,
    {
        let slot = self.slot(key);
        let seen = slot.finished.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        let now = Instant::now();
        if let Some(held) = state.held.as_ref().filter(|held| held.fresh_until > now) {
            return Ok(held.token.clone());
        }
        if slot.finished.load(Ordering::Acquire) != seen {
            if let Some(error) = &state.last_error {
                return match state.held.as_ref().filter(|held| held.token.expires_at() > now) {
                    Some(held) => Ok(held.token.clone()),
                    None => Err(error.clone()),
                };
            }
        }
        let outcome = fetch().await;
        slot.finished.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(fetched) => {
                let token = fetched.token.clone();
                *state = State { held: Some(fetched), last_error: None };
                Ok(token)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                match state.held.as_ref().filter(|held| held.token.expires_at() > Instant::now()) {
                    Some(held) => {
                        tracing::warn!(%error, "token refresh failed; the current token serves until it expires");
                        Ok(held.token.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Drops the token held for `key` if it is `token` (a destination refused it: revoked, or signed with a key
    /// that is gone), so the next call fetches another.
    pub(crate) fn forget(&self, key: &K, token: &AccessToken) {
        let slot = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned();
        if let Some(slot) = slot {
            if let Ok(mut state) = slot.state.try_lock() {
                if state.held.as_ref().is_some_and(|held| held.token.same_as(token)) {
                    state.held = None;
                }
            }
        }
    }

    fn slot(&self, key: &K) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get(key) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.capacity {
            Self::shrink(&mut slots, self.capacity);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key.clone(), Arc::clone(&slot));
        slot
    }

    /// Makes room: first the slots nobody is using whose token has expired, then, while more than nine tenths of
    /// `capacity` remain, any slot nobody is using (so a full cache is not swept on every insert).
    fn shrink(slots: &mut HashMap<K, Arc<Slot>>, capacity: usize) {
        let now = Instant::now();
        let unused = |slot: &Arc<Slot>| Arc::strong_count(slot) == 1;
        slots.retain(|_, slot| {
            !unused(slot)
                || slot
                    .state
                    .try_lock()
                    .map_or(true, |state| state.held.as_ref().is_some_and(|held| held.token.expires_at() > now))
        });
        let target = capacity - capacity / 10;
        if slots.len() >= target {
            let surplus: Vec<K> = slots
                .iter()
                .filter(|(_, slot)| unused(slot))
                .map(|(key, _)| key.clone())
                .take(slots.len() - target + 1)
                .collect();
            for key in surplus {
                slots.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn fetched(value: &str, lives: Duration, margin: Duration) -> Fetched {
        let now = Instant::now();
        Fetched { token: AccessToken::new(value.into(), now + lives, None), fresh_until: now + lives - margin }
    }

    /// `callers` concurrent gets of one key whose fetch takes 50 ms and ends in `outcome`: their answers, and how
    /// many fetches were made.
    async fn concurrently(
        cache: &Arc<TokenCache<&'static str>>,
        callers: usize,
        outcome: fn() -> Result<Fetched, TokenError>,
    ) -> (Vec<Result<AccessToken, TokenError>>, usize) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..callers)
            .map(|_| {
                let (cache, fetches) = (Arc::clone(cache), Arc::clone(&fetches));
                tokio::spawn(async move {
                    cache
                        .get(&"payments", || async {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            outcome()
                        })
                        .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for caller in callers {
            answers.push(caller.await.unwrap());
        }
        (answers, fetches.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn one_fetch_serves_every_waiting_caller() {
        let cache = Arc::new(TokenCache::new(10));
        let (answers, fetches) =
            concurrently(&cache, 50, || Ok(fetched("t1", Duration::from_secs(60), Duration::from_secs(10)))).await;
        assert!(answers.iter().all(|answer| answer.as_ref().is_ok_and(|token| token.secret() == "t1")));
        assert_eq!(fetches, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_answers_every_caller_that_waited_for_it() {
        let cache = Arc::new(TokenCache::new(10));
        let (answers, fetches) =
            concurrently(&cache, 20, || Err(TokenError::Unreachable("connection refused".into()))).await;
        assert!(answers.iter().all(|answer| matches!(answer, Err(TokenError::Unreachable(_)))));
        assert_eq!(fetches, 1);
        // A later call, after the failure, tries again.
        let again = cache.get(&"payments", || async { Ok(fetched("t2", Duration::from_secs(60), Duration::ZERO)) });
        assert_eq!(again.await.unwrap().secret(), "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_refetched_a_margin_before_it_expires_and_kept_when_that_fails() {
        let cache = TokenCache::<&str>::new(10);
        let lives = Duration::from_secs(60);
        let margin = Duration::from_secs(10);
        let first = cache.get(&"k", || async { Ok(fetched("t1", lives, margin)) }).await.unwrap();
        tokio::time::advance(Duration::from_secs(49)).await;
        let held = cache.get(&"k", || async { Ok(fetched("unused", lives, margin)) }).await.unwrap();
        assert_eq!(held.secret(), first.secret(), "still fresh at 49 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        // Within the margin: refetched; the refresh fails, and the token, not yet expired, still serves.
        let kept = cache.get(&"k", || async { Err(TokenError::Unreachable("down".into())) }).await.unwrap();
        assert_eq!(kept.secret(), "t1");
        tokio::time::advance(Duration::from_secs(10)).await;
        let gone = cache.get(&"k", || async { Err(TokenError::Unreachable("down".into())) }).await;
        assert!(gone.is_err(), "an expired token is never handed out");
        let renewed = cache.get(&"k", || async { Ok(fetched("t2", lives, margin)) }).await.unwrap();
        assert_eq!(renewed.secret(), "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_token_is_fetched_again() {
        let cache = TokenCache::<&str>::new(10);
        let lives = Duration::from_secs(60);
        let first = cache.get(&"k", || async { Ok(fetched("t1", lives, Duration::ZERO)) }).await.unwrap();
        cache.forget(&"k", &fetched("other", lives, Duration::ZERO).token);
        let same = cache.get(&"k", || async { Ok(fetched("t2", lives, Duration::ZERO)) }).await.unwrap();
        assert_eq!(same.secret(), "t1", "forgetting another token changes nothing");
        cache.forget(&"k", &first);
        let next = cache.get(&"k", || async { Ok(fetched("t2", lives, Duration::ZERO)) }).await.unwrap();
        assert_eq!(next.secret(), "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_stays_within_its_capacity() {
        let cache = TokenCache::<u32>::new(100);
        for key in 0..1_000 {
            cache.get(&key, || async { Ok(fetched("t", Duration::from_secs(60), Duration::ZERO)) }).await.unwrap();
            assert!(cache.len() <= 100, "{} slots after {key}", cache.len());
        }
    }
}
