//! The Redis backend passes the conformance suite on a single Redis and on a Redis Cluster of three masters and
//! three replicas (writes wait for one replica), both started by the tests on free loopback ports. Two stores on
//! one Redis — two Tessera nodes — rotate a session exactly once between them and hear each other's revocations,
//! and the rotation script decides exactly as `decide` does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_store::{
    conformance, decide, BreakerSettings, BreakerState, Decision, LogCursor, NewSecurityEvent, NewSession, Provenance,
    RedisSettings, RedisStore, RefreshOutcome, RefreshRules, Revocation, SecurityEventKind, SecurityEventQuery, Store,
    StoreError, User, EXPIRED_SESSION_KEPT_MS,
};
use tessera_test_support::{Redis, RedisCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_passes_the_conformance_suite_and_serves_two_nodes() {
    let redis = Redis::start();
    let url = vec![redis.url()];
    let store = RedisStore::connect(&url, false, 0).await.unwrap();
    conformance::run_all(Arc::new(store)).await;
    // Redis forgets sessions by itself: each session key, and the subject's set, expires a while after the session.
    let ttl = |key: &str| redis.cli(&["PTTL", key]).trim().parse::<i64>().unwrap();
    let session = conformance::new_session("expiring", "ttl-subject", 1_000);
    let lifetime = session.expires_at - session.created_at;
    let store = RedisStore::connect(&url, false, 0).await.unwrap();
    store.create_session(session).await.unwrap();
    for key in ["tessera:{sid:expiring}", "tessera:{sub:ttl-subject}:sids"] {
        let left = ttl(key);
        assert!(lifetime < left && left <= lifetime + EXPIRED_SESSION_KEPT_MS, "{key} expires in {left} ms");
    }
    assert_eq!(store.forget_sessions_expired_before(i64::MAX, 100).await.unwrap(), 0, "nothing to do on request");
    // A subject who keeps logging in: each new session drops the names of those already forgettable.
    let later = conformance::new_session("later", "ttl-subject", 1_000 + lifetime + EXPIRED_SESSION_KEPT_MS + 1);
    store.create_session(later).await.unwrap();
    assert_eq!(redis.cli(&["ZRANGE", "tessera:{sub:ttl-subject}:sids", "0", "-1"]).trim(), "later");

    // A subject's list written before sessions were scored is a plain set: it is listed as it is, and the next
    // login turns it into the sorted set, keeping its sessions.
    let rules = RefreshRules { grace_ms: 0, idle_timeout_ms: 1 << 40 };
    let legacy = "tessera:{sub:legacy-subject}:sids";
    store.create_session(conformance::new_session("old-1", "legacy-subject", 2_000)).await.unwrap();
    assert_eq!(redis.cli(&["DEL", legacy]).trim(), "1");
    assert_eq!(redis.cli(&["SADD", legacy, "old-1"]).trim(), "1");
    let listed = |now| {
        let store = &store;
        async move {
            let families = store.live_sessions("legacy-subject", now, rules).await.unwrap();
            families.into_iter().map(|f| f.sid).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(2_001).await, ["old-1"]);
    store.create_session(conformance::new_session("new-1", "legacy-subject", 3_000)).await.unwrap();
    assert_eq!(redis.cli(&["TYPE", legacy]).trim(), "zset");
    assert_eq!(listed(3_001).await, ["new-1", "old-1"]);

    let other = Redis::start();
    let url = vec![other.url()];
    let (a, b) = tokio::join!(RedisStore::connect(&url, false, 0), RedisStore::connect(&url, false, 0));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    conformance::two_nodes_share_one_store(Arc::clone(&a), Arc::clone(&b)).await;
    conformance::many_revocations_at_once_on_two_nodes(a, b, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_the_conformance_suite_with_a_partitioned_log_and_serves_two_nodes() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    // The log spread over 8 partitions (slots), as a cluster runs it: every check holds across them.
    let settings = RedisSettings { cluster: true, wait_replicas: 1, log_partitions: 8, ..RedisSettings::default() };
    let store = RedisStore::connect_with(&urls, settings).await.unwrap();
    conformance::run_all(Arc::new(store)).await;
    // A second pair of stores, on the same (now non-empty) cluster: names below are fresh.
    let (a, b) =
        tokio::join!(RedisStore::connect_with(&urls[..1], settings), RedisStore::connect_with(&urls[3..], settings));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    conformance::two_nodes_share_one_store(Arc::clone(&a), Arc::clone(&b)).await;
    conformance::many_revocations_at_once_on_two_nodes(a, b, false).await;
}

/// A log written with one partition is moved to four by `repartition`, and back: until then a store configured
/// with another number refuses to connect; afterwards every entry is read, every revoked token is still found, and
/// a reader that followed the log before the change goes on from where it was without missing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_moved_to_another_number_of_partitions_only_on_purpose_and_loses_nothing() {
    let redis = Redis::start();
    let url = vec![redis.url()];
    let partitions = |log_partitions| RedisSettings { wait_replicas: 0, log_partitions, ..RedisSettings::default() };
    let by = Provenance::new("admin", "partitions");
    let one = RedisStore::connect_with(&url, partitions(1)).await.unwrap();
    let mut written = Vec::new();
    for n in 0..40 {
        let revocation = match n % 3 {
            0 => Revocation::Token { jti: format!("t{n}"), expires_at: 1 << 40 },
            1 => Revocation::TokenById { jti: format!("b{n}"), expires_at: 1 << 40 },
            _ => Revocation::Subject { sub: format!("u{n}"), not_before: n },
        };
        assert!(one.revoke(revocation.clone(), by.clone(), 1_000 + n).await.unwrap());
        written.push(revocation);
    }
    let reader = one.log_head().await.unwrap();
    assert_eq!(reader, LogCursor::at(vec![40]));
    drop(one);

    let Err(refused) = RedisStore::connect_with(&url, partitions(4)).await else { panic!("connected with 4") };
    assert!(refused.to_string().contains("tessera store repartition"), "{refused}");
    assert_eq!(RedisStore::repartition(&url, partitions(4)).await.unwrap(), 40);
    assert_eq!(RedisStore::repartition(&url, partitions(4)).await.unwrap(), 0, "done once");
    assert!(RedisStore::connect_with(&url, partitions(1)).await.is_err(), "one partition no longer");
    let four = RedisStore::connect_with(&url, partitions(4)).await.unwrap();
    let head = four.log_head().await.unwrap();
    assert_eq!(head.partitions(), 4);
    assert!(!reader.is_past(&head), "partition 0 kept counting up: the earlier reader did not see the log go back");
    let log = four.revocations_after(&reader, 0, 1_000).await.unwrap();
    let mut read: Vec<_> = log.iter().map(|entry| entry.revocation.clone()).collect();
    read.sort_by_key(|revocation| format!("{revocation:?}"));
    let mut expected = written.clone();
    expected.sort_by_key(|revocation| format!("{revocation:?}"));
    assert_eq!(read, expected, "every entry, once, after where the earlier reader stood");
    let used: std::collections::BTreeSet<_> = log.iter().map(|entry| entry.partition).collect();
    assert_eq!(used.len(), 4, "spread over every partition");
    for revocation in &written {
        if let Revocation::Token { jti, .. } | Revocation::TokenById { jti, .. } = revocation {
            assert!(four.token_revoked(jti).await.unwrap(), "{jti}");
        }
    }
    assert!(!four.token_revoked("t1").await.unwrap());

    // One partition's keys lost (a shard gone with its replica): only that partition is read again.
    let mut applied = LogCursor::default();
    log.iter().for_each(|entry| applied.advance(entry));
    let keys = redis.cli(&["KEYS", "tessera:{tessera-log-2-*}:*"]);
    let keys: Vec<&str> = keys.lines().map(str::trim).filter(|key| !key.is_empty()).collect();
    assert!(keys.len() >= 4, "{keys:?}");
    for key in keys {
        assert_eq!(redis.cli(&["DEL", key]).trim(), "1", "{key}");
    }
    let rewound = four.log_head().await.unwrap();
    assert!(applied.is_past(&rewound));
    let restarted = applied.restarted_where_behind(&rewound);
    assert_eq!((0..4).map(|p| restarted.position(p) == 0).collect::<Vec<_>>(), [false, false, true, false]);
    drop(four);

    assert_eq!(
        RedisStore::repartition(&url, partitions(1)).await.unwrap(),
        40 - log.iter().filter(|e| e.partition == 2).count()
    );
    let back = RedisStore::connect_with(&url, partitions(1)).await.unwrap();
    let log = back.revocations_after(&LogCursor::default(), 0, 1_000).await.unwrap();
    assert!(log.iter().all(|entry| entry.partition == 0));
    assert_eq!(back.log_head().await.unwrap().partitions(), 1);
    assert!(log.iter().all(|entry| written.contains(&entry.revocation)));
    assert_eq!(redis.cli(&["EXISTS", "tessera:{tessera-log}:partitions"]).trim(), "0", "one partition, as before");
}

/// A change of partitions that stopped half-way keeps every node out until it is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_change_of_partitions_keeps_nodes_out_until_finished() {
    let redis = Redis::start();
    let url = vec![redis.url()];
    let settings = |log_partitions| RedisSettings { wait_replicas: 0, log_partitions, ..RedisSettings::default() };
    let store = RedisStore::connect_with(&url, settings(1)).await.unwrap();
    let token = Revocation::Token { jti: "kept".into(), expires_at: 1 << 40 };
    assert!(store.revoke(token, Provenance::new("admin", ""), 1_000).await.unwrap());
    drop(store);
    // What `repartition` leaves when it stops after setting the entries aside.
    assert_eq!(redis.cli(&["RENAME", "tessera:{tessera-log}:entries", "tessera:{tessera-log}:moving"]).trim(), "OK");
    assert_eq!(
        redis.cli(&["DEL", "tessera:{tessera-log}:revoked-tokens", "tessera:{tessera-log}:by-time"]).trim(),
        "2"
    );
    assert_eq!(redis.cli(&["SET", "tessera:{tessera-log}:repartitioning", "4"]).trim(), "OK");
    for n in [1, 4] {
        let Err(err) = RedisStore::connect_with(&url, settings(n)).await else { panic!("connected with {n}") };
        assert!(err.to_string().contains("interrupted"), "{err}");
    }
    assert!(RedisStore::repartition(&url, settings(2)).await.is_err(), "another number first");
    assert_eq!(RedisStore::repartition(&url, settings(4)).await.unwrap(), 1);
    let store = RedisStore::connect_with(&url, settings(4)).await.unwrap();
    assert!(store.token_revoked("kept").await.unwrap());
}

/// Security events kept before they had ids (a list, newest first) are given ids in their order when a store
/// connects, and read like every later event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_events_kept_before_they_had_ids_are_given_them_in_order() {
    let redis = Redis::start();
    let legacy = "tessera:{tessera-log}:events";
    for (at, sid, length) in [(10, "s1", "1"), (20, "s2", "2")] {
        let json = format!(r#"{{"at":{at},"kind":"refresh_token_reuse","sub":"ann","sid":"{sid}","detail":"d"}}"#);
        assert_eq!(redis.cli(&["LPUSH", legacy, &json]).trim(), length);
    }
    let store = RedisStore::connect(&[redis.url()], false, 0).await.unwrap();
    assert_eq!(redis.cli(&["EXISTS", legacy]).trim(), "0", "moved");
    let event = NewSecurityEvent::new(SecurityEventKind::KeyRotated, 30, "now signing with k2");
    assert_eq!(store.record_security_event(event).await.unwrap().id, 3);
    let events = store.security_events(&SecurityEventQuery::latest(10)).await.unwrap();
    let read: Vec<_> = events.iter().map(|e| (e.id, e.at, e.sid.as_deref(), e.actor.as_deref())).collect();
    assert_eq!(read, [(3, 30, None, None), (2, 20, Some("s2"), None), (1, 10, Some("s1"), None)]);
    // A second store finds nothing left to move.
    RedisStore::connect(&[redis.url()], false, 0).await.unwrap();
    assert_eq!(store.security_events(&SecurityEventQuery::latest(10)).await.unwrap(), events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_when_too_few_replicas_acknowledge_them() {
    let redis = Redis::start();
    // A single Redis has no replica: asking for one must refuse to acknowledge.
    let store = RedisStore::connect(&[redis.url()], false, 1).await.unwrap();
    let err = store.create_session(conformance::new_session("s", "u", 1)).await.unwrap_err();
    assert!(err.to_string().contains("replicas acknowledged"), "{err}");
}

/// The rotation script is a port of `decide`: on many families in many states, the script's outcome is the one
/// `decide` gives for the family and subject as they were just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_script_decides_exactly_as_decide() {
    let redis = Redis::start();
    let store = RedisStore::connect(&[redis.url()], false, 0).await.unwrap();
    let rules = RefreshRules { grace_ms: 1_000, idle_timeout_ms: 50_000 };
    // A small deterministic generator (xorshift), so failures replay.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let disabled = User {
        username: "user-6".into(),
        password_hash: "h".into(),
        roles: vec![],
        disabled: true,
        created_at: 1,
        profile: Default::default(),
    };
    store.create_user(disabled).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for case in 0..400 {
        let sid = format!("case-{case}");
        let sub = format!("user-{}", case % 7);
        let created_at = 100_000 + i64::try_from(next(1_000)).unwrap();
        store
            .create_session(NewSession {
                expires_at: created_at + 60_000,
                ..conformance::new_session(&sid, &sub, created_at)
            })
            .await
            .unwrap();
        let mut now = created_at;
        for _ in 0..next(4) {
            now += i64::try_from(next(3_000)).unwrap();
            let live = store.session(&sid).await.unwrap().unwrap().generation;
            store.refresh(&sid, live, now, rules).await.unwrap();
        }
        match next(10) {
            0 => drop(store.revoke(Revocation::Session { sid: sid.clone() }, Provenance::new("t", "t"), now).await),
            1 => {
                let instant = created_at + i64::try_from(next(2_000)).unwrap() - 1_000;
                drop(
                    store
                        .revoke(
                            Revocation::Subject { sub: sub.clone(), not_before: instant },
                            Provenance::new("t", "t"),
                            now,
                        )
                        .await,
                );
            }
            _ => {}
        }
        let family = store.session(&sid).await.unwrap().unwrap();
        let subject = store.subject(&sub).await.unwrap();
        let presented = family.generation.saturating_sub(next(3)) + u64::from(next(5) == 0);
        let at = now + i64::try_from(next(3)).unwrap() * i64::try_from(next(40_000)).unwrap();
        let expected = decide(&family, presented, &subject, at, rules);
        let got = match store.refresh(&sid, presented, at, rules).await.unwrap() {
            RefreshOutcome::Rotated(_) => Decision::Rotate,
            RefreshOutcome::Replayed(_) => Decision::Replay,
            RefreshOutcome::TheftDetected(_) => Decision::Theft,
            RefreshOutcome::Refused(refusal) => Decision::Refuse(refusal),
        };
        assert_eq!(got, expected, "case {case}: {family:?} presented {presented} at {at} with {subject:?}");
        seen.insert(format!("{expected:?}"));
    }
    assert_eq!(seen.len(), 9, "the cases cover every decision: {seen:?}");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Err(err) = RedisStore::connect(&[format!("redis://127.0.0.1:{port}/")], false, 0).await else {
        panic!("connected to nothing")
    };
    assert!(err.to_string().contains("storage backend failed"), "{err}");
    let Err(err) = RedisStore::connect(&["not a url".to_owned()], false, 0).await else { panic!("parsed garbage") };
    assert!(err.to_string().contains("Redis URL"), "{err}");
    let two = ["redis://127.0.0.1:1/".to_owned(), "redis://127.0.0.1:2/".to_owned()];
    let Err(err) = RedisStore::connect(&two, false, 0).await else { panic!("took two URLs for one node") };
    assert!(err.to_string().contains("one URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_log_entry_the_replicas_have_not_acknowledged() {
    let redis = Redis::start();
    let store = RedisStore::connect(&[redis.url()], false, 0).await.unwrap();
    let token = |jti: &str| Revocation::Token { jti: jti.into(), expires_at: 10_000 };
    assert!(store.revoke(token("first"), Provenance::new("t", ""), 1_000).await.unwrap());
    assert_eq!(store.revocations_after(&LogCursor::default(), 0, 10).await.unwrap().len(), 1);

    // What a failover can leave behind: an entry appended on the master whose replicas never acknowledged it
    // (its position may be reused once the master is gone), so it was never committed.
    let first = redis.cli(&["ZRANGE", "tessera:{tessera-log}:entries", "0", "0"]);
    let unacknowledged = first.trim().replacen("1 ", "2 ", 1).replace("first", "unacknowledged");
    assert_eq!(redis.cli(&["INCR", "tessera:{tessera-log}:seq"]).trim(), "2");
    assert_eq!(redis.cli(&["ZADD", "tessera:{tessera-log}:entries", "2", &unacknowledged]).trim(), "1");
    assert!(
        store.revocations_after(&LogCursor::at(vec![1]), 0, 10).await.unwrap().is_empty(),
        "no reader sees an uncommitted entry"
    );

    // The next acknowledged append commits past it.
    assert!(store.revoke(token("third"), Provenance::new("t", ""), 1_001).await.unwrap());
    let log = store.revocations_after(&LogCursor::at(vec![1]), 0, 10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(log[1].revocation, token("third"));
}

/// Against a real Redis that goes away: the errors the client gives for a dead server count as unreachable, the
/// breaker opens and then refuses without the network, and the first probe after the restart closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_when_redis_is_gone_and_closes_when_it_is_back() {
    let mut redis = Redis::start_durable();
    let settings =
        BreakerSettings { failure_threshold: 3, cool_down: Duration::from_millis(200), ..BreakerSettings::default() };
    let settings = RedisSettings { wait_replicas: 0, breaker: settings, ..RedisSettings::default() };
    let store = RedisStore::connect_with(&[redis.url()], settings).await.unwrap();
    store.create_session(conformance::new_session("s", "u", 1)).await.unwrap();
    assert_eq!((store.breaker_state(), store.health()), (BreakerState::Closed, None));

    redis.kill();
    for _ in 0..3 {
        assert!(matches!(store.session("s").await, Err(StoreError::Backend(_))));
    }
    assert_eq!(store.breaker_state(), BreakerState::Open);
    assert_eq!(store.health(), Some("Redis circuit breaker open"));
    assert!(matches!(store.session("s").await, Err(StoreError::Unavailable)), "fails fast while open");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable)));

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.session("s").await.is_err() {
        assert!(Instant::now() < deadline, "the breaker never closed: {:?}", store.breaker_state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    assert_eq!(store.session("s").await.unwrap().unwrap().generation, 0, "acknowledged before the outage");
}
