//! The cache in front of a legacy adapter: it spares the legacy system, never outlives a session, and stands in for
//! a legacy system that is down only when allowed and only for a bounded time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_legacy::{Cached, LegacyError, LegacyIdentity, LegacySessions};

const NOW_MS: i64 = 1_777_636_800_000;
const COOKIE: &str = "s%3Aabc.sig";

/// An adapter that answers what it is told and counts how often it is asked.
struct Fake {
    answer: Mutex<Result<LegacyIdentity, LegacyError>>,
    identify_calls: AtomicUsize,
    end_calls: AtomicUsize,
}

impl Fake {
    fn new(answer: Result<LegacyIdentity, LegacyError>) -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(answer),
            identify_calls: AtomicUsize::new(0),
            end_calls: AtomicUsize::new(0),
        })
    }

    fn answer(&self, answer: Result<LegacyIdentity, LegacyError>) {
        *self.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.identify_calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl LegacySessions for Fake {
    fn cookie_name(&self) -> &str {
        "connect.sid"
    }

    async fn identify(&self, _cookie_value: &str, _now_ms: i64) -> Result<LegacyIdentity, LegacyError> {
        self.identify_calls.fetch_add(1, Ordering::SeqCst);
        self.answer.lock().unwrap().clone()
    }

    async fn end(&self, _cookie_value: &str) -> Result<bool, LegacyError> {
        self.end_calls.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

fn alice(expires_at_ms: Option<i64>) -> LegacyIdentity {
    LegacyIdentity {
        user_id: "alice".into(),
        roles: vec!["staff".into()],
        expires_at_ms,
        attributes: Default::default(),
    }
}

fn unavailable() -> Result<LegacyIdentity, LegacyError> {
    Err(LegacyError::Unavailable("down".into()))
}

const TTL: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_second_identify_within_the_ttl_does_not_ask_the_inner_adapter() {
    let fake = Fake::new(Ok(alice(None)));
    let cached = Cached::new(fake.clone(), TTL, None, 100);
    assert_eq!(cached.identify(COOKIE, NOW_MS).await, Ok(alice(None)));
    assert_eq!(cached.identify(COOKIE, NOW_MS + 4_999).await, Ok(alice(None)));
    assert_eq!(fake.calls(), 1);
    // Another cookie is another entry.
    assert_eq!(cached.identify("s%3Aother.sig", NOW_MS).await, Ok(alice(None)));
    assert_eq!(fake.calls(), 2);
    // At the ttl, asked again.
    assert_eq!(cached.identify(COOKIE, NOW_MS + 5_000).await, Ok(alice(None)));
    assert_eq!(fake.calls(), 3);
    assert_eq!(cached.cookie_name(), "connect.sid");
}

#[tokio::test]
async fn an_answer_is_not_served_past_the_sessions_expiry() {
    let fake = Fake::new(Ok(alice(Some(NOW_MS + 1_000))));
    let cached = Cached::new(fake.clone(), TTL, None, 100);
    cached.identify(COOKIE, NOW_MS).await.unwrap();
    cached.identify(COOKIE, NOW_MS + 999).await.unwrap();
    assert_eq!(fake.calls(), 1);
    fake.answer(Err(LegacyError::NoSession));
    assert_eq!(cached.identify(COOKIE, NOW_MS + 1_000).await, Err(LegacyError::NoSession));
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn an_answer_from_a_clock_that_went_back_is_not_trusted() {
    let fake = Fake::new(Ok(alice(None)));
    let cached = Cached::new(fake.clone(), TTL, None, 100);
    cached.identify(COOKIE, NOW_MS).await.unwrap();
    cached.identify(COOKIE, NOW_MS - 1).await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn with_stale_for_an_unavailable_legacy_system_is_answered_from_the_last_good_answer() {
    let fake = Fake::new(Ok(alice(None)));
    let cached = Cached::new(fake.clone(), TTL, Some(Duration::from_secs(30)), 100);
    cached.identify(COOKIE, NOW_MS).await.unwrap();
    fake.answer(unavailable());
    // Past the ttl: asked, down, answered stale.
    assert_eq!(cached.identify(COOKIE, NOW_MS + 6_000).await, Ok(alice(None)));
    assert_eq!(cached.identify(COOKIE, NOW_MS + 29_999).await, Ok(alice(None)));
    assert_eq!(fake.calls(), 3, "a stale answer does not stop asking");
    // The bound: stale_for after the last good answer, errors again.
    assert_eq!(cached.identify(COOKIE, NOW_MS + 30_000).await, unavailable());
}

#[tokio::test]
async fn a_stale_answer_never_outlives_its_session() {
    let fake = Fake::new(Ok(alice(Some(NOW_MS + 10_000))));
    let cached = Cached::new(fake.clone(), TTL, Some(Duration::from_secs(30)), 100);
    cached.identify(COOKIE, NOW_MS).await.unwrap();
    fake.answer(unavailable());
    assert!(cached.identify(COOKIE, NOW_MS + 9_999).await.is_ok());
    assert_eq!(cached.identify(COOKIE, NOW_MS + 10_000).await, unavailable());
}

#[tokio::test]
async fn without_stale_for_an_unavailable_legacy_system_fails_closed() {
    let fake = Fake::new(Ok(alice(None)));
    let cached = Cached::new(fake.clone(), TTL, None, 100);
    cached.identify(COOKIE, NOW_MS).await.unwrap();
    fake.answer(unavailable());
    assert_eq!(cached.identify(COOKIE, NOW_MS + 5_000).await, unavailable());
}

#[tokio::test]
async fn an_invalid_cookie_is_never_cached_and_erases_an_earlier_good_answer() {
    let fake = Fake::new(Err(LegacyError::Invalid("bad signature")));
    let cached = Cached::new(fake.clone(), TTL, Some(Duration::from_secs(30)), 100);
    for _ in 0..2 {
        assert_eq!(cached.identify(COOKIE, NOW_MS).await, Err(LegacyError::Invalid("bad signature")));
    }
    assert_eq!(fake.calls(), 2);
    // Good once, then refused (its secret retired), then the legacy system down: nothing stale to serve.
    fake.answer(Ok(alice(None)));
    cached.identify(COOKIE, NOW_MS + 1_000).await.unwrap();
    fake.answer(Err(LegacyError::Invalid("bad signature")));
    assert_eq!(cached.identify(COOKIE, NOW_MS + 7_000).await, Err(LegacyError::Invalid("bad signature")));
    fake.answer(unavailable());
    assert_eq!(cached.identify(COOKIE, NOW_MS + 8_000).await, unavailable());
}

#[tokio::test]
async fn no_session_is_cached_for_the_ttl_but_never_served_stale() {
    let fake = Fake::new(Err(LegacyError::NoSession));
    let cached = Cached::new(fake.clone(), TTL, Some(Duration::from_secs(30)), 100);
    assert_eq!(cached.identify(COOKIE, NOW_MS).await, Err(LegacyError::NoSession));
    assert_eq!(cached.identify(COOKIE, NOW_MS + 4_999).await, Err(LegacyError::NoSession));
    assert_eq!(fake.calls(), 1);
    fake.answer(unavailable());
    assert_eq!(cached.identify(COOKIE, NOW_MS + 5_000).await, unavailable());
}

#[tokio::test]
async fn ending_a_session_forgets_its_answer_and_asks_the_inner_adapter_to_end_it() {
    let fake = Fake::new(Ok(alice(None)));
    let cached = Cached::new(fake.clone(), TTL, Some(Duration::from_secs(30)), 100);
    cached.identify(COOKIE, NOW_MS).await.unwrap();
    assert_eq!(cached.end(COOKIE).await, Ok(true));
    assert_eq!(fake.end_calls.load(Ordering::SeqCst), 1);
    fake.answer(Err(LegacyError::NoSession));
    assert_eq!(cached.identify(COOKIE, NOW_MS + 1).await, Err(LegacyError::NoSession));
    // Nothing left to stand in for the ended session either.
    fake.answer(unavailable());
    assert_eq!(cached.identify(COOKIE, NOW_MS + 6_000).await, unavailable());
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let fake = Fake::new(Ok(alice(None)));
    let cached = Cached::new(fake.clone(), TTL, None, 10);
    for cookie in 0..1_000 {
        cached.identify(&cookie.to_string(), NOW_MS).await.unwrap();
    }
    assert!(!cached.is_empty());
    assert!(cached.len() <= 10, "{}", cached.len());
}
