//! PostgreSQL under `tessera serve`, alone and behind Redis (tiered), with real processes on loopback ports:
//!
//! - PostgreSQL goes away and comes back: `/verify` keeps answering from the in-process index, writes answer a
//!   clean 503 (without a breaker: the pool drops closed connections), and all recovers;
//! - PostgreSQL freezes (SIGSTOP: connections up, no answers): writes answer 503 once `store.timeout` passes, not
//!   when the HTTP timeout does, verification goes on, and a refresh retried after the freeze succeeds;
//! - in tiered mode (Redis in front of PostgreSQL), Redis goes away: only logins and refreshes fail, revocations
//!   still reach every node through PostgreSQL and are still in force once Redis is back;
//! - a node loses its LISTEN connection: it listens again and catches up, so revocations still arrive in seconds
//!   with polling set to a minute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::time::{Duration, Instant};

use common::store_faults::{
    admin, before_the_outage, breaker_state, configure_store, field, get, login,
    loses_its_push_subscription_and_catches_up, refresh, transitions, verify, Thaw,
};
use common::{add_user, claims, eventually, Server};
use tessera_test_support::{Postgres, Redis};

mod common;

#[test]
fn with_postgresql_down_verify_answers_from_the_index_writes_fail_cleanly_and_all_recovers_when_it_returns() {
    let (mut pg, _dir, node) = node_on_postgres("");
    let addr = node.addr;

    let (valid, refresh_token, revoked) = before_the_outage(addr);

    pg.stop();
    for _ in 0..3 {
        let (status, body) = refresh(addr, &refresh_token).unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(field(&body, "error"), "temporarily_unavailable");
        assert_eq!(login(addr, "alice").unwrap().0, 503);
    }
    eventually("not ready while PostgreSQL is down", || get(addr, "/readyz").0 == 503);
    for _ in 0..20 {
        assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401), "verification from the index");
        std::thread::sleep(Duration::from_millis(50));
    }

    pg.restart();
    eventually("ready again once PostgreSQL is back", || get(addr, "/readyz").0 == 200);
    let (status, body) = refresh(addr, &refresh_token).unwrap();
    assert_eq!(status, 200, "the refresh token from before the outage: {body}");
    assert_eq!(login(addr, "alice").unwrap().0, 200);
    assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401));
}

#[test]
fn with_postgresql_frozen_writes_fail_after_the_store_timeout_and_a_retried_refresh_succeeds_after() {
    let (pg, _dir, node) = node_on_postgres("timeout = \"1s\"\n");
    let addr = node.addr;
    let (valid, refresh_token, revoked) = before_the_outage(addr);

    pg.pause();
    let frozen = Thaw(|| pg.resume());
    for _ in 0..3 {
        let asked = Instant::now();
        let (status, body) = refresh(addr, &refresh_token).unwrap();
        let waited = asked.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(field(&body, "error"), "temporarily_unavailable");
        // The store's 1 s bound answered, not the 10 s HTTP request timeout (which would be a 408).
        assert!(waited < Duration::from_secs(8), "a frozen store held the request {waited:?}");
    }
    assert_eq!(get(addr, "/readyz").0, 503, "not ready while PostgreSQL does not answer");
    for _ in 0..10 {
        assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401), "verification from the index");
    }

    drop(frozen);
    eventually("ready again once PostgreSQL answers", || get(addr, "/readyz").0 == 200);
    // The refreshes cut off by the timeout may have rotated once PostgreSQL ran on: retrying the same token is
    // then a replay inside the grace window, which hands out that same successor.
    let (status, body) = refresh(addr, &refresh_token).unwrap();
    assert_eq!(status, 200, "the refresh token from before the freeze: {body}");
    let successor = field(&body, "refresh_token");
    assert_eq!(refresh(addr, &successor).unwrap().0, 200, "and its successor is live");
    assert_eq!(login(addr, "alice").unwrap().0, 200);
    assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401));
}

/// Tiered mode (Redis for rotations in front of PostgreSQL), two nodes, Redis killed: logins and refreshes answer
/// 503 and the breaker opens, but the node stays ready, verification goes on, and a session revoked on one node
/// is refused on the other through PostgreSQL's log. Redis back: the breaker closes, sessions from before rotate
/// where they were, and the one revoked meanwhile stays revoked, though Redis never heard of it.
#[test]
fn tiered_with_redis_down_revocations_still_reach_every_node_and_stay_in_force_when_it_returns() {
    let pg = Postgres::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(pg.database("tessera"));
    let mut redis = Redis::start_durable();
    let store = format!(
        "backend = \"tiered\"\npostgres_url = {url:?}\nredis_urls = [{:?}]\nredis_wait_replicas = 0\n",
        redis.url()
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &dirs {
        configure_store(dir.path(), &store, "60s");
    }
    add_user(dirs[0].path(), "alice");
    let (a, b) = (Server::start(dirs[0].path()), Server::start(dirs[1].path()));
    let (a, b) = (a.addr, b.addr);

    let (valid, refresh_token, revoked) = before_the_outage(a);
    eventually("B follows A's revocation", || (verify(b, &valid), verify(b, &revoked)) == (200, 401));
    let (_, body) = login(a, "alice").unwrap();
    let (doomed, doomed_refresh) = (field(&body, "access_token"), field(&body, "refresh_token"));

    redis.kill();
    for _ in 0..5 {
        let (status, body) = refresh(a, &refresh_token).unwrap();
        assert_eq!((status, field(&body, "error").as_str()), (503, "temporarily_unavailable"), "{body}");
        assert_eq!(login(a, "alice").unwrap().0, 503);
    }
    eventually("the breaker opens", || breaker_state(a) == Some(2));
    eventually("the breaker opens on the quiet node too (it pings Redis)", || breaker_state(b) == Some(2));
    assert_eq!(get(a, "/readyz").0, 200, "ready: all but logins and refreshes work without Redis");
    let sid = claims(&doomed)["sid"].as_str().unwrap().to_owned();
    let (status, body) = admin(a, "/admin/v1/revocations", &serde_json::json!({"sid": sid})).unwrap();
    assert_eq!(status, 200, "a revocation is acknowledged once PostgreSQL has it: {body}");
    eventually("B refuses the session revoked on A", || verify(b, &doomed) == 401);
    assert_eq!((verify(b, &valid), verify(b, &revoked)), (200, 401));

    redis.restart();
    // Nothing but logins and refreshes calls Redis in tiered mode: the first one after the cool-down probes it.
    eventually("the breakers close once Redis is back", || (breaker_state(a), breaker_state(b)) == (Some(0), Some(0)));
    let (status, body) = refresh(b, &refresh_token).unwrap();
    assert_eq!(status, 200, "the refresh token from before the outage: {body}");
    let (status, body) = refresh(b, &doomed_refresh).unwrap();
    assert_eq!((status, field(&body, "error").as_str()), (400, "invalid_grant"), "revoked during the outage");
    assert_eq!(login(a, "alice").unwrap().0, 200);
    assert!(transitions(a, "open") >= 1 && transitions(a, "closed") >= 1);
}

/// A throwaway PostgreSQL and one node on it (with `store_extra` in its `[store]` section), user alice added.
fn node_on_postgres(store_extra: &str) -> (Postgres, tempfile::TempDir, Server) {
    let pg = Postgres::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(pg.database("tessera"));
    let dir = tempfile::tempdir().unwrap();
    configure_store(dir.path(), &format!("backend = \"postgres\"\npostgres_url = {url:?}\n{store_extra}"), "60s");
    add_user(dir.path(), "alice");
    let node = Server::start(dir.path());
    (pg, dir, node)
}

/// A node whose PostgreSQL LISTEN connection is cut LISTENs again, and catches up on what it missed.
#[test]
fn a_node_that_loses_its_postgresql_listen_connection_listens_again_and_catches_up() {
    let pg = Postgres::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(pg.database("tessera"));
    // The node's LISTEN connection is the one whose last statement was its LISTEN.
    let sql = |query: &str| {
        let out = std::process::Command::new("psql").args([url.as_str(), "-tAc", query]).output().unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let listening = "FROM pg_stat_activity WHERE query LIKE 'LISTEN %'";
    let subscribed = || sql(&format!("SELECT count(*) {listening}")) == "1";
    let cut = || sql(&format!("SELECT count(pg_terminate_backend(pid)) {listening}")) == "1";
    loses_its_push_subscription_and_catches_up(
        &format!("backend = \"postgres\"\npostgres_url = {url:?}\n"),
        subscribed,
        cut,
    );
}
