//! Tiered mode — Redis holding rotations in front of PostgreSQL holding everything else — passes the conformance
//! suite and serves two nodes, against a Redis and a PostgreSQL the tests start themselves. With Redis gone, what
//! PostgreSQL holds keeps working and rotations fail cleanly; a session revoked meanwhile stays revoked when
//! Redis is back, though Redis never heard of the revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_store::{
    conformance, BreakerSettings, LogCursor, PostgresStore, Provenance, RedisSettings, RedisStore, RefreshOutcome,
    RefreshRules, Refusal, Revocation, Store, StoreError, TieredStore,
};
use tessera_test_support::{Postgres, Redis};

const RULES: RefreshRules = RefreshRules { grace_ms: 10_000, idle_timeout_ms: 86_400_000 };

async fn tiered(redis: &Redis, postgres_url: &str, breaker: BreakerSettings) -> TieredStore {
    let settings = RedisSettings { wait_replicas: 0, breaker, ..RedisSettings::default() };
    let rotations = RedisStore::connect_with(&[redis.url()], settings).await.unwrap();
    TieredStore::new(rotations, PostgresStore::connect(postgres_url, 8).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiered_passes_the_conformance_suite_and_serves_two_nodes() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let store = Arc::new(tiered(&redis, &pg.database("conformance").await, BreakerSettings::default()).await);
    conformance::run_all(Arc::clone(&store) as Arc<dyn Store>).await;
    conformance::expired_sessions_are_forgotten_on_request(&*store).await;

    let other = Redis::start();
    let url = pg.database("nodes").await;
    let (a, b) = tokio::join!(
        tiered(&other, &url, BreakerSettings::default()),
        tiered(&other, &url, BreakerSettings::default())
    );
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a), Arc::new(b));
    conformance::two_nodes_share_one_store(Arc::clone(&a), Arc::clone(&b)).await;
    conformance::many_revocations_at_once_on_two_nodes(a, b, true).await;
}

/// The rotation state is in Redis only: PostgreSQL's copy of a session keeps the generation it was created with,
/// while reads of the session show Redis's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_happen_in_redis_and_reads_show_them() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let url = pg.database("rotations").await;
    let store = tiered(&redis, &url, BreakerSettings::default()).await;
    store.create_session(conformance::new_session("s", "u", 1_000)).await.unwrap();
    for generation in 0..3 {
        assert!(matches!(store.refresh("s", generation, 2_000, RULES).await.unwrap(), RefreshOutcome::Rotated(_)));
    }
    let records = PostgresStore::connect(&url, 1).await.unwrap();
    assert_eq!(records.session("s").await.unwrap().unwrap().generation, 0, "no rotation written to PostgreSQL");
    assert_eq!(store.session("s").await.unwrap().unwrap().generation, 3);
    let live = store.live_sessions("u", 3_000, RULES).await.unwrap();
    assert_eq!(live.iter().map(|f| (f.sid.as_str(), f.generation)).collect::<Vec<_>>(), [("s", 3)]);
}

/// Redis killed: the breaker opens; revocations, the log, users and sessions' records go on from PostgreSQL, and
/// refreshes fail as unavailable (nothing rotates against PostgreSQL's stale generation). Redis back: the breaker
/// closes, a live session rotates from where it was, and the session revoked during the outage is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_revocations_go_on_and_stay_in_force_when_it_returns() {
    let pg = Postgres::start();
    let mut redis = Redis::start_durable();
    let breaker =
        BreakerSettings { failure_threshold: 2, cool_down: Duration::from_millis(200), ..BreakerSettings::default() };
    let store = tiered(&redis, &pg.database("outage").await, breaker).await;
    for sid in ["kept", "revoked"] {
        store.create_session(conformance::new_session(sid, "u", 1_000)).await.unwrap();
        assert!(matches!(store.refresh(sid, 0, 2_000, RULES).await.unwrap(), RefreshOutcome::Rotated(_)));
    }
    let head = store.log_head().await.unwrap();

    redis.kill();
    for _ in 0..2 {
        assert!(matches!(store.refresh("kept", 1, 3_000, RULES).await, Err(StoreError::Backend(_))));
    }
    assert!(
        matches!(store.refresh("kept", 1, 3_000, RULES).await, Err(StoreError::Unavailable)),
        "the breaker is open and fails fast"
    );
    assert!(store.create_session(conformance::new_session("new", "u", 3_000)).await.is_err());
    let revocation = Revocation::Session { sid: "revoked".into() };
    assert!(store.revoke(revocation.clone(), Provenance::new("admin", "outage"), 3_000).await.unwrap());
    let log = store.revocations_after(&head, 0, 10).await.unwrap();
    assert_eq!(log.iter().map(|e| &e.revocation).collect::<Vec<_>>(), [&revocation], "verifiers still follow");
    store.ping().await.expect("ready: PostgreSQL answers");
    let recorded = store.session("kept").await.unwrap().unwrap();
    assert_eq!(recorded.generation, 0, "read from PostgreSQL's record while Redis is away");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = loop {
        match store.refresh("kept", 1, 4_000, RULES).await {
            Ok(outcome) => break outcome,
            Err(_) => assert!(Instant::now() < deadline, "the breaker never closed"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(matches!(rotated, RefreshOutcome::Rotated(ref f) if f.generation == 2), "{rotated:?}");
    assert_eq!(
        store.refresh("revoked", 1, 4_000, RULES).await.unwrap(),
        RefreshOutcome::Refused(Refusal::Revoked),
        "revoked while Redis was down, and Redis never told"
    );
}

/// Reuse found by Redis is recorded in PostgreSQL: the session revoked, its log entry for verifiers and the
/// security event, so every later presentation is refused there before Redis is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_found_in_redis_revokes_the_session_in_postgresql() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let store = tiered(&redis, &pg.database("reuse").await, BreakerSettings::default()).await;
    store.create_session(conformance::new_session("s", "u", 1_000)).await.unwrap();
    assert!(matches!(store.refresh("s", 0, 2_000, RULES).await.unwrap(), RefreshOutcome::Rotated(_)));
    let late = 2_000 + RULES.grace_ms + 1;
    let RefreshOutcome::TheftDetected(family) = store.refresh("s", 0, late, RULES).await.unwrap() else {
        panic!("reuse after the grace window must be theft")
    };
    assert_eq!((family.generation, family.revoked_at()), (1, Some(late)));
    let log = store.revocations_after(&LogCursor::default(), 0, 10).await.unwrap();
    assert!(log.iter().any(|e| e.revocation == Revocation::Session { sid: "s".into() }));
    let events = store.security_events(&tessera_store::SecurityEventQuery::latest(10)).await.unwrap();
    assert_eq!(events[0].kind, "refresh_token_reuse");
    assert_eq!(store.refresh("s", 1, late, RULES).await.unwrap(), RefreshOutcome::Refused(Refusal::Revoked));
}
