//! A single Redis under `tessera serve`, with real processes on loopback ports:
//!
//! - it goes away entirely: `/verify` keeps answering from the in-process index, writes answer a clean 503, the
//!   circuit breaker opens (`/metrics`, `/readyz`) and closes again once Redis is back;
//! - it freezes: slow replies count against the breaker, which opens as for a dead Redis, and closes once Redis
//!   runs on;
//! - a node loses its Pub/Sub subscription: it subscribes again and catches up, so revocations still arrive in
//!   seconds with polling set to a minute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::time::{Duration, Instant};

use common::store_faults::{
    before_the_outage, breaker_state, configure, field, get, login, loses_its_push_subscription_and_catches_up,
    refresh, transitions, verify, Thaw,
};
use common::{add_user, eventually, Server};
use tessera_test_support::Redis;

mod common;

#[test]
fn with_redis_down_verify_answers_from_the_index_writes_fail_cleanly_and_the_breaker_closes_when_it_returns() {
    // A single Redis that fsyncs every write, so it comes back with everything it acknowledged.
    let mut redis = Redis::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Long enough that the index does not go stale during the test, even on a busy machine.
    configure(d, &[redis.url()], false, 0, "60s");
    add_user(d, "alice");
    let node = Server::start(d);
    let addr = node.addr;

    let (valid, refresh_token, revoked) = before_the_outage(addr);
    assert_eq!(get(addr, "/readyz").0, 200);

    redis.kill();
    let down = Instant::now();
    // Writes answer a clean 503 (the API's JSON error, never a 500); the node's own polling and these requests
    // open the breaker.
    for _ in 0..5 {
        let (status, body) = refresh(addr, &refresh_token).unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(field(&body, "error"), "temporarily_unavailable");
        let (status, body) = login(addr, "alice").unwrap();
        assert_eq!(status, 503, "{body}");
    }
    eventually("the breaker opens", || breaker_state(addr) == Some(2));
    let opened = down.elapsed();
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("breaker open"), "{body}");
    // While open, a write fails without touching the network.
    let fast = Instant::now();
    assert_eq!(refresh(addr, &refresh_token).unwrap().0, 503);
    let fail_fast = fast.elapsed();
    // Verification answers from the index all along.
    for _ in 0..20 {
        assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401));
        std::thread::sleep(Duration::from_millis(50));
    }

    redis.restart();
    let back = Instant::now();
    eventually("the breaker closes once Redis is back", || breaker_state(addr) == Some(0));
    let closed = back.elapsed();
    let (status, body) = refresh(addr, &refresh_token).unwrap();
    assert_eq!(status, 200, "the refresh token from before the outage: {body}");
    assert_eq!(login(addr, "alice").unwrap().0, 200);
    eventually("ready again", || get(addr, "/readyz").0 == 200);
    assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401));
    assert!(transitions(addr, "open") >= 1 && transitions(addr, "closed") >= 1);
    eprintln!(
        "Redis fully down: breaker open {:.2} s after the kill, a refresh while open answered 503 in {:.1} ms, \
         closed {:.2} s after Redis came back",
        opened.as_secs_f64(),
        fail_fast.as_secs_f64() * 1e3,
        closed.as_secs_f64()
    );
}

#[test]
fn with_redis_frozen_slow_replies_open_the_breaker_and_it_closes_when_redis_runs_on() {
    let redis = Redis::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure(d, &[redis.url()], false, 0, "60s");
    let config = std::fs::read_to_string(d.join("tessera.toml")).unwrap();
    std::fs::write(d.join("tessera.toml"), config.replace("[store]\n", "[store]\ntimeout = \"2s\"\n")).unwrap();
    add_user(d, "alice");
    let node = Server::start(d);
    let addr = node.addr;
    let (valid, refresh_token, revoked) = before_the_outage(addr);

    redis.pause();
    let thaw = Thaw(|| redis.resume());
    // Each write waits out the 2 s reply timeout and answers 503; with the node's own polling they open the
    // breaker, after which writes fail at once.
    let asked = Instant::now();
    let (status, body) = refresh(addr, &refresh_token).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(8), "a frozen Redis held the request {:?}", asked.elapsed());
    eventually("the breaker opens on slow replies", || {
        let _ = login(addr, "alice");
        breaker_state(addr) == Some(2)
    });
    let fast = Instant::now();
    assert_eq!(refresh(addr, &refresh_token).unwrap().0, 503);
    assert!(fast.elapsed() < Duration::from_secs(1), "an open breaker answers without waiting for Redis");
    assert_eq!(get(addr, "/readyz").0, 503);
    for _ in 0..10 {
        assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401), "verification from the index");
    }

    drop(thaw);
    eventually("the breaker closes once Redis runs on", || breaker_state(addr) == Some(0));
    // The first refresh may have rotated once Redis ran on: the retry is then a grace-window replay.
    let (status, body) = refresh(addr, &refresh_token).unwrap();
    assert_eq!(status, 200, "the refresh token from before the freeze: {body}");
    assert_eq!(login(addr, "alice").unwrap().0, 200);
    eventually("ready again", || get(addr, "/readyz").0 == 200);
}

/// A node that loses its Pub/Sub subscription to the revocation log subscribes again, and catches up on what it
/// missed.
#[test]
fn a_node_that_loses_its_redis_subscription_subscribes_again_and_catches_up() {
    let redis = Redis::start();
    let store = format!("backend = \"redis\"\nredis_urls = [{:?}]\nredis_wait_replicas = 0\n", redis.url());
    let subscribed = || redis.cli(&["PUBSUB", "NUMSUB", "tessera:log"]).ends_with("\n1\n");
    let cut = || redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).trim() == "1";
    loses_its_push_subscription_and_catches_up(&store, subscribed, cut);
}
