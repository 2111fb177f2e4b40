//! Store faults under `tessera serve`, with real processes on loopback ports:
//!
//! - a Redis Cluster (3 masters, 3 replicas, writes waiting for one replica) loses the master of the revocation
//!   log to SIGKILL under load: no refresh or revocation acknowledged with a 2xx is lost, and no request ever gets
//!   a wrong answer (only 503s while the cluster fails over), and the circuit breaker stays closed (one dead master
//!   among healthy ones is no outage). Requests, errors, the length of the disturbance and the failover time are
//!   printed (`--no-capture`) for BENCHMARKS.md: measured, not asserted;
//! - a single Redis goes away entirely: `/verify` keeps answering from the in-process index, writes answer a clean
//!   503, the circuit breaker opens (`/metrics`, `/readyz`) and closes again once Redis is back;
//! - PostgreSQL goes away and comes back: the same, without a breaker (the pool drops closed connections);
//! - PostgreSQL freezes (SIGSTOP: connections up, no answers): writes answer 503 once `store.timeout` passes,
//!   not when the HTTP timeout does, verification goes on, and a refresh retried after the freeze succeeds;
//! - a Redis Cluster loses half its nodes, every replica: no write is acknowledged while it cannot be
//!   replicated (503s), verification goes on, and once the replicas are back writes succeed and nothing
//!   acknowledged before is missing;
//! - a single Redis freezes: slow replies count against the breaker, which opens as for a dead Redis, and closes
//!   once Redis runs on;
//! - in tiered mode (Redis in front of PostgreSQL), Redis goes away: only logins and refreshes fail, revocations
//!   still reach every node through PostgreSQL and are still in force once Redis is back;
//! - a node loses its push subscription (Redis Pub/Sub, PostgreSQL LISTEN): it subscribes again and catches up,
//!   so revocations still arrive in seconds with polling set to a minute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{add_user, claims, eventually, http, request, Server, PASSWORD};
use serde_json::Value;
use tessera_test_support::{Postgres, Redis, RedisCluster};

mod common;

const ADMIN: &str = "admin-credential-for-the-redis-fault-tests-0123456789";

/// A request's answer: `Err` when the connection failed or timed out.
type Answer = std::io::Result<(u16, String)>;

/// `GET /verify` with a bearer token: the status.
fn verify(addr: SocketAddr, token: &str) -> u16 {
    request(addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, "", "").unwrap()
}

fn admin(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    let headers = format!("authorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\n");
    request(addr, "POST", path, &headers, &body.to_string())
}

fn login(addr: SocketAddr, user: &str) -> Answer {
    let body =
        serde_json::json!({"username": user, "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    http(addr, "POST", "/auth/login", "application/json", &body)
}

fn refresh(addr: SocketAddr, token: &str) -> Answer {
    let body = format!("grant_type=refresh_token&refresh_token={token}");
    http(addr, "POST", "/oauth2/token", "application/x-www-form-urlencoded", &body)
}

fn field(body: &str, name: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()[name].as_str().unwrap().to_owned()
}

/// The Redis circuit breaker's state on a node, from `/metrics`: 0 closed, 1 half-open, 2 open.
fn breaker_state(addr: SocketAddr) -> Option<u8> {
    let (_, metrics) = get(addr, "/metrics");
    metrics.lines().find_map(|line| line.strip_prefix("tessera_redis_breaker_state ")).map(|v| v.parse().unwrap())
}

/// A node's breaker transitions to `to`, from `/metrics`.
fn transitions(addr: SocketAddr, to: &str) -> u64 {
    let (_, metrics) = get(addr, "/metrics");
    let prefix = format!("tessera_redis_breaker_transitions_total{{to=\"{to}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(prefix.as_str())).map_or(0, |v| v.parse().unwrap())
}

/// A configuration on Redis, limits raised for load, an admin credential.
fn configure(dir: &Path, urls: &[String], cluster: bool, wait_replicas: u32, stale_after: &str) {
    let urls = urls.iter().map(|url| format!("{url:?}")).collect::<Vec<_>>().join(", ");
    let store = format!(
        "backend = \"redis\"\nredis_urls = [{urls}]\nredis_cluster = {cluster}\nredis_wait_replicas = {wait_replicas}\n"
    );
    configure_store(dir, &store, stale_after);
}

/// A configuration on the given `[store]` section, limits raised for load, an admin credential.
fn configure_store(dir: &Path, store: &str, stale_after: &str) {
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    // A shared store needs a master key.
    std::fs::write(dir.join("master-key"), "qXoGsnbbV0Ai4ynFMHDPCj3GJtyuIbEmwodqlZW1Sg8=").unwrap();
    let config = format!(
        "issuer = \"http://tessera.test\"\n\
         [keys]\nmaster_key_file = \"master-key\"\n\n\
         [store]\n{store}\n\
         [server]\nadmin_token_file = \"admin-token\"\n\n\
         [rate_limits]\nlogin_per_ip = 100000\nfailed_login_per_user_and_ip = 100000\nfailed_refresh_per_ip = 100000\nfailed_refresh_per_user = 100000\n\n\
         [revocation]\nstale_after = \"{stale_after}\"\n"
    );
    std::fs::write(dir.join("tessera.toml"), config).unwrap();
}

/// A request slower than this counts as disturbed, like a failed one: during a failover, requests to the dead
/// master's slots wait (the cluster client retries) rather than fail.
const SLOW: Duration = Duration::from_secs(1);

/// One request of the load: when it started and ended (since the test started), and whether it failed.
struct Sample {
    start: Duration,
    end: Duration,
    failed: bool,
}

impl Sample {
    fn disturbed(&self) -> bool {
        self.failed || self.end - self.start >= SLOW
    }
}

/// What the load saw: every request, and the wrong answers.
#[derive(Default)]
struct Record {
    requests: Vec<Sample>,
    wrong: Vec<String>,
}

impl Record {
    /// Notes an answer that must be `ok` or a failure (503, or no answer); anything else is a wrong answer.
    fn note(&mut self, start: Duration, end: Duration, what: &str, answer: &Answer, ok: &[u16]) {
        let failed = !matches!(answer, Ok((status, _)) if ok.contains(status));
        self.requests.push(Sample { start, end, failed });
        if let Ok((status, body)) = answer {
            if failed && *status != 503 {
                self.wrong.push(format!("{what} at {end:?}: {status} {body}"));
            }
        }
    }
}

#[test]
fn sigkill_of_the_revocation_log_master_under_load_loses_no_acknowledged_refresh_or_revocation() {
    let mut cluster = RedisCluster::start_with_node_timeout(Duration::from_millis(2_000));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure(d, &cluster.urls(), true, 1, "120s");
    add_user(d, "alice");
    let nodes = [Server::start(d), Server::start(d)];
    let addrs = [nodes[0].addr, nodes[1].addr];
    let log_master = cluster.master_of("tessera:{tessera-log}:seq");

    let started = Instant::now();
    let record = Mutex::new(Record::default());
    let stop = AtomicBool::new(false);
    // Per session: the last refresh token a 200 acknowledged, and the access token that came with it.
    let sessions: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    // Tokens whose revocation a 2xx acknowledged.
    let revoked: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (mut killed_at, mut failed_over_at, mut replicated_at) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);

    std::thread::scope(|scope| {
        for worker in 0..3 {
            let (record, stop, sessions) = (&record, &stop, &sessions);
            scope.spawn(move || {
                let (_, body) = login(addrs[worker % 2], "alice").unwrap();
                let mut last = (field(&body, "refresh_token"), field(&body, "access_token"));
                let mut turn = worker;
                while !stop.load(Ordering::Relaxed) {
                    turn += 1;
                    let start = started.elapsed();
                    let answer = refresh(addrs[turn % 2], &last.0);
                    let end = started.elapsed();
                    if let Ok((200, body)) = &answer {
                        last = (field(body, "refresh_token"), field(body, "access_token"));
                    }
                    let failed = !matches!(answer, Ok((200, _)));
                    record.lock().unwrap().note(
                        start,
                        end,
                        "refresh with the last acknowledged token",
                        &answer,
                        &[200],
                    );
                    // Paced, so that two cores also run six Redis servers, the nodes and the other test.
                    std::thread::sleep(Duration::from_millis(if failed { 20 } else { 5 }));
                }
                sessions.lock().unwrap().push(last);
            });
        }
        let (record, stop, revoked) = (&record, &stop, &revoked);
        scope.spawn(move || {
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let node = addrs[turn % 2];
                let start = started.elapsed();
                let minted = admin(node, "/admin/v1/sessions", &serde_json::json!({"sub": format!("user-{turn}")}));
                let end = started.elapsed();
                record.lock().unwrap().note(start, end, "mint", &minted, &[201]);
                let Ok((201, body)) = minted else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let token = field(&body, "access_token");
                let jti = claims(&token)["jti"].as_str().unwrap().to_owned();
                let start = started.elapsed();
                let answer = admin(node, "/admin/v1/revocations", &serde_json::json!({"jti": jti}));
                let end = started.elapsed();
                record.lock().unwrap().note(start, end, "revoke", &answer, &[200]);
                if matches!(answer, Ok((200, _))) {
                    // Acknowledged: refused at once by the node that acknowledged it.
                    let status = verify(node, &token);
                    if status != 401 {
                        record.lock().unwrap().wrong.push(format!("/verify of an acknowledged revocation: {status}"));
                    }
                    revoked.lock().unwrap().push(token);
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });

        // The chaos: the revocation log's master dies 2 s in; once a replica has taken over, the dead node comes
        // back (as a replica of the new master, so writes waiting for a replica succeed on that shard again).
        std::thread::sleep(Duration::from_secs(2));
        killed_at = started.elapsed();
        cluster.kill(log_master);
        cluster.wait_until_ok();
        failed_over_at = started.elapsed();
        cluster.restart(log_master);
        cluster.wait_until_replicated();
        replicated_at = started.elapsed();
        std::thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()).max(Duration::from_secs(3)));
        stop.store(true, Ordering::Relaxed);
    });

    let record = record.into_inner().unwrap();
    let (sessions, revoked) = (sessions.into_inner().unwrap(), revoked.into_inner().unwrap());
    let requests = &record.requests;
    let errors = requests.iter().filter(|r| r.failed).count();
    let slow = requests.iter().filter(|r| !r.failed && r.end - r.start >= SLOW).count();
    let longest = requests.iter().map(|r| r.end - r.start).max().unwrap_or_default();
    // From the start of the first failed or slow request to the end of the last one.
    let disturbed: Vec<&Sample> = requests.iter().filter(|r| r.disturbed()).collect();
    let disturbance = match (disturbed.iter().map(|r| r.start).min(), disturbed.iter().map(|r| r.end).max()) {
        (Some(first), Some(last)) => format!("{:.2} s (from {first:.2?} to {last:.2?})", (last - first).as_secs_f64()),
        _ => "none".to_owned(),
    };
    eprintln!(
        "SIGKILL of the revocation log's Redis master under load (3+3 cluster, WAIT 1, cluster-node-timeout 2 s, \
         2 tessera nodes, 3 refresh loops + 1 mint-and-revoke loop, debug build):\n  \
         requests {}, errors {errors} ({:.2}%), slow (>= 1 s) but successful {slow}, longest {longest:.2?}\n  \
         disturbance (failed or slow requests) {disturbance}\n  \
         killed at {killed_at:.2?}; failover (replica promoted, cluster ok) {:.2} s after the kill; dead node \
         back as an in-sync replica {:.2} s after the kill\n  \
         acknowledged revocations {}, sessions {}",
        requests.len(),
        100.0 * errors as f64 / requests.len().max(1) as f64,
        (failed_over_at - killed_at).as_secs_f64(),
        (replicated_at - killed_at).as_secs_f64(),
        revoked.len(),
        sessions.len(),
    );
    assert!(record.wrong.is_empty(), "wrong answers: {:#?}", record.wrong);
    assert!(!disturbed.is_empty(), "the fault was felt (or the test proves nothing)");
    assert!(!revoked.is_empty() && sessions.len() == 3);
    // One dead master among healthy ones is no outage: replies from the other masters keep the breaker closed
    // (docs/service.md), so writes to their shards went on throughout.
    for addr in addrs {
        assert_eq!((transitions(addr, "open"), breaker_state(addr)), (0, Some(0)), "the breaker opened on {addr}");
    }

    // No acknowledged rotation lost: every session's last acknowledged token refreshes.
    for (refresh_token, _) in &sessions {
        let answer = refresh(addrs[0], refresh_token);
        assert!(matches!(answer, Ok((200, _))), "an acknowledged rotation was lost: {answer:?}");
    }
    // No acknowledged revocation lost: refused on every node, and on a node started now, whose index is rebuilt
    // from the log as the failover left it.
    let fresh = Server::start(d);
    for node in [addrs[0], addrs[1], fresh.addr] {
        for token in &revoked {
            eventually("an acknowledged revocation is refused on every node", || verify(node, token) == 401);
        }
        for (_, access) in &sessions {
            assert_eq!(verify(node, access), 200, "a live session's access token");
        }
    }
}

/// Before an outage: alice's access and refresh tokens, and a token revoked by `jti` — checked to verify 200
/// and 401.
fn before_the_outage(addr: SocketAddr) -> (String, String, String) {
    let (_, body) = login(addr, "alice").unwrap();
    let (valid, refresh_token) = (field(&body, "access_token"), field(&body, "refresh_token"));
    let (status, body) = admin(addr, "/admin/v1/sessions", &serde_json::json!({"sub": "bob"})).unwrap();
    assert_eq!(status, 201, "{body}");
    let revoked = field(&body, "access_token");
    let jti = claims(&revoked)["jti"].as_str().unwrap().to_owned();
    assert_eq!(admin(addr, "/admin/v1/revocations", &serde_json::json!({"jti": jti})).unwrap().0, 200);
    assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401));
    (valid, refresh_token, revoked)
}

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

/// Runs its closure when dropped: resumes a frozen server even when an assertion fails, or the test would hang
/// stopping it.
struct Thaw<F: FnMut()>(F);

impl<F: FnMut()> Drop for Thaw<F> {
    fn drop(&mut self) {
        (self.0)();
    }
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

#[test]
fn with_half_the_redis_cluster_gone_no_write_is_acknowledged_unreplicated_and_all_resumes_with_it() {
    let mut cluster = RedisCluster::start_with_node_timeout(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure(d, &cluster.urls(), true, 1, "60s");
    // A refresh that failed its WAIT may have rotated on the master; the retry after the outage is then a replay,
    // which must still fall inside the grace window however long the replicas take to come back.
    let mut config = std::fs::read_to_string(d.join("tessera.toml")).unwrap();
    config.push_str("\n[sessions]\ngrace = \"2m\"\n");
    std::fs::write(d.join("tessera.toml"), config).unwrap();
    add_user(d, "alice");
    let node = Server::start(d);
    let addr = node.addr;
    let (valid, refresh_token, revoked) = before_the_outage(addr);

    let replicas = cluster.replicas();
    assert_eq!(replicas.len(), 3, "three masters, three replicas");
    for &replica in &replicas {
        cluster.kill(replica);
    }
    // Every write now lacks its replica's acknowledgement: it fails rather than being acknowledged unreplicated.
    for _ in 0..3 {
        let (status, body) = refresh(addr, &refresh_token).unwrap();
        assert_eq!(status, 503, "{body}");
        let (status, body) = admin(addr, "/admin/v1/revocations", &serde_json::json!({"sub": "carol"})).unwrap();
        assert_eq!(status, 503, "{body}");
    }
    for _ in 0..10 {
        assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401), "verification from the index");
    }

    for &replica in &replicas {
        cluster.restart(replica);
    }
    cluster.wait_until_replicated();
    // Writes that failed their WAIT may still have been applied: the refresh retried with the same token is then a
    // grace-window replay. Either way it succeeds, and what was acknowledged before the outage is all there.
    eventually("writes succeed once the replicas are back", || {
        refresh(addr, &refresh_token).is_ok_and(|(s, _)| s == 200)
    });
    assert_eq!(login(addr, "alice").unwrap().0, 200);
    assert_eq!((verify(addr, &valid), verify(addr, &revoked)), (200, 401));
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

/// One node on `store`, polling set to a minute: once `subscribed`, its push subscription is `cut` (which says
/// whether it cut exactly one); revocations made from another process after that reach it in seconds all the same,
/// by the sync made on subscribing again and by the new subscription.
fn loses_its_push_subscription_and_catches_up(store: &str, subscribed: impl Fn() -> bool, cut: impl Fn() -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure_store(d, store, "120s");
    let config = std::fs::read_to_string(d.join("tessera.toml")).unwrap();
    std::fs::write(d.join("tessera.toml"), config.replace("[server]\n", "[server]\nreload_interval = \"60s\"\n"))
        .unwrap();
    let node = Server::start(d);
    let addr = node.addr;
    let mint = || {
        let (status, body) = admin(addr, "/admin/v1/sessions", &serde_json::json!({"sub": "bob"})).unwrap();
        assert_eq!(status, 201, "{body}");
        field(&body, "access_token")
    };
    // `tessera revoke` on the same store, from another process: only the push (or the minute's poll) tells the node.
    let revoke = |token: &str| {
        let jti = claims(token)["jti"].as_str().unwrap().to_owned();
        let revoked = common::tessera(d).args(["revoke", "--jti", &jti]).output().unwrap();
        assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    };
    let (missed, pushed) = (mint(), mint());
    assert_eq!((verify(addr, &missed), verify(addr, &pushed)), (200, 200));

    eventually("the node subscribes", &subscribed);
    assert!(cut(), "the node's one subscription is cut");
    revoke(&missed);
    eventually("a revocation made right after the loss is applied", || verify(addr, &missed) == 401);
    // Subscribed again: a later revocation is pushed too.
    eventually("the node subscribes again", &subscribed);
    revoke(&pushed);
    eventually("a revocation after the new subscription is pushed", || verify(addr, &pushed) == 401);
}
