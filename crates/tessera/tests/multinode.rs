//! Three `tessera serve` nodes on one shared store — PostgreSQL; a Redis Cluster of three masters and three
//! replicas, the revocation log in 16 partitions; Redis in front of PostgreSQL (tiered) with the compact revocation index — each started by the test on
//! free loopback ports, each node with its own data directory, so the signing
//! keys and the refresh-token MAC key they share come from the store: a session started on one node rotates on
//! another, reuse of a rotated token is caught on a third and ends the session on every node, and
//! a revocation made on one node reaches the others — pushed (LISTEN/NOTIFY, Redis Pub/Sub), since the nodes'
//! polling interval is set to a minute. Each of 50 revocations must reach the other node within 10 s; the delays
//! are printed (`--no-capture`), and BENCHMARKS.md takes its figures from 1,000
//! (`BENCH_PROPAGATION_ROUNDS=1000`): measured, not asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{add_user, claims, eventually, http, kid_of, published_kids, tessera, Server, PASSWORD};
use serde_json::Value;
use tessera_test_support::{Postgres, Redis, RedisCluster};

mod common;

/// `GET /verify` with a bearer token: the status.
fn verify(addr: SocketAddr, token: &str) -> u16 {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /verify HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response[9..12].parse().unwrap()
}

fn form(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = http(addr, "POST", path, "application/x-www-form-urlencoded", body).unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn login(addr: SocketAddr) -> (String, String) {
    let body =
        serde_json::json!({"username": "alice", "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    let (status, body) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

fn refresh(addr: SocketAddr, token: &str) -> (u16, Value) {
    form(addr, "/oauth2/token", &format!("grant_type=refresh_token&refresh_token={token}"))
}

#[test]
fn three_nodes_on_postgresql_share_sessions_theft_detection_and_revocations() {
    let pg = Postgres::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(pg.database("tessera"));
    three_nodes_share_sessions_theft_detection_and_revocations(
        &format!("backend = \"postgres\"\npostgres_url = \"{url}\"\n"),
        "",
        "PostgreSQL LISTEN/NOTIFY",
    );
}

#[test]
fn three_nodes_on_a_redis_cluster_with_a_partitioned_log_share_sessions_theft_detection_and_revocations() {
    let cluster = RedisCluster::start();
    let urls: Vec<String> = cluster.urls().iter().map(|url| format!("\"{url}\"")).collect();
    // The revocation log in 16 partitions, spread over the three masters: each node follows every one.
    three_nodes_share_sessions_theft_detection_and_revocations(
        &format!(
            "backend = \"redis\"\nredis_urls = [{}]\nredis_cluster = true\nredis_wait_replicas = 1\n\
             redis_log_partitions = 16\n",
            urls.join(", ")
        ),
        "",
        "Redis Cluster 3+3, Pub/Sub, WAIT 1, 16 log partitions",
    );
}

/// Tiered (Redis for rotations in front of PostgreSQL) with the compact revocation index: theft found in Redis
/// reaches every node through PostgreSQL, and revocations by `jti` alone are found by every node's prefilter and
/// confirmed with PostgreSQL.
#[test]
fn three_tiered_nodes_in_compact_mode_share_sessions_theft_detection_and_revocations() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(pg.database("tessera"));
    three_nodes_share_sessions_theft_detection_and_revocations(
        &format!(
            "backend = \"tiered\"\npostgres_url = \"{url}\"\nredis_urls = [\"{}\"]\nredis_wait_replicas = 0\n",
            redis.url()
        ),
        "compact = true\n",
        "tiered, compact index",
    );
}

fn three_nodes_share_sessions_theft_detection_and_revocations(store: &str, revocation: &str, label: &str) {
    let config = format!(
        "[store]\n{store}\n[sessions]\ngrace = \"1s\"\n\n\
         [server]\nreload_interval = \"60s\"\nadmin_token_file = \"admin-token\"\n\n\
         [revocation]\nstale_after = \"120s\"\n{revocation}"
    );
    let dirs = node_dirs(&config);
    add_user(dirs[0].path(), "alice");
    let nodes = dirs.each_ref().map(|dir| Server::start(dir.path()));
    let [a, b, c] = [nodes[0].addr, nodes[1].addr, nodes[2].addr];

    // Login on A, refresh on B, reuse of the rotated token on C: theft, the session ends on every node.
    let (access, first) = login(a);
    let (status, rotated) = refresh(b, &first);
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(c, &access), 200);
    std::thread::sleep(Duration::from_millis(1_100)); // past the (shortened) grace window: the old token is stale
    let (status, reply) = refresh(c, &first);
    assert_eq!((status, reply["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = refresh(a, &second);
    assert_eq!(status, 400, "the live token of a stolen session is dead too");
    for node in [a, b, c] {
        eventually("the stolen session's access token is refused on every node", || verify(node, &access) == 401);
    }

    // A revocation through RFC 7009 on B reaches A and C.
    let (access, refresh_token) = login(a);
    for node in [a, b, c] {
        assert_eq!(verify(node, &access), 200);
    }
    let (status, _) = form(b, "/oauth2/revoke", &format!("token={refresh_token}&client_id=tessera"));
    assert_eq!(status, 200);
    assert_eq!(verify(b, &access), 401, "at once on the node that revoked");
    for node in [a, c] {
        eventually("a revocation on B reaches the other nodes", || verify(node, &access) == 401);
    }

    // Propagation: revoke a token by jti on B, time until A refuses it.
    let mut delays = Vec::new();
    for _ in 0..propagation_rounds() {
        let token = admin(a, "/admin/v1/sessions", &serde_json::json!({"sub": "carol"}))["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let jti = claims(&token)["jti"].as_str().unwrap().to_owned();
        assert_eq!(verify(a, &token), 200);
        admin(b, "/admin/v1/revocations", &serde_json::json!({"jti": jti}));
        let revoked = std::time::Instant::now();
        while verify(a, &token) != 401 {
            assert!(revoked.elapsed() < Duration::from_secs(10), "a jti revocation on B never reached A");
            std::thread::sleep(Duration::from_millis(1));
        }
        delays.push(revoked.elapsed());
    }
    delays.sort();
    eprintln!(
        "propagation B -> A over {} revocations ({label}, polling 1 ms on /verify): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        delays[delays.len() / 2].as_secs_f64() * 1e3,
        delays[delays.len() * 99 / 100].as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3
    );
}

/// How many revocations the propagation check times: [`PROPAGATION_ROUNDS`], or the number in
/// `BENCH_PROPAGATION_ROUNDS` (BENCHMARKS.md measures 1,000).
fn propagation_rounds() -> usize {
    std::env::var("BENCH_PROPAGATION_ROUNDS").map_or(PROPAGATION_ROUNDS, |rounds| {
        rounds.parse().unwrap_or_else(|_| panic!("BENCH_PROPAGATION_ROUNDS={rounds:?} is not a count"))
    })
}

/// Enough revocations to show each one reaches the other node by push; the figures in BENCHMARKS.md come from a
/// longer run.
const PROPAGATION_ROUNDS: usize = 50;

/// Signing keys live in the shared store: a keyring a node had in its data directory is copied in when the store
/// has none, every node signs with it, and a rotation made from the command line anywhere reaches every node.
#[test]
fn nodes_on_postgresql_share_signing_keys_through_the_store() {
    let pg = Postgres::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(pg.database("tessera"));
    let dirs = node_dirs(&format!("[store]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n"));
    // Node A used local files before: its keyring is made without the shared store, then the store is configured.
    let config = std::fs::read(dirs[0].path().join("tessera.toml")).unwrap();
    std::fs::remove_file(dirs[0].path().join("tessera.toml")).unwrap();
    let generated =
        tessera(dirs[0].path()).args(["keys", "generate", "--alg", "ES256", "--now", "--json"]).output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let local_kid = serde_json::from_slice::<Value>(&generated.stdout).unwrap()[0]["kid"].as_str().unwrap().to_owned();
    std::fs::write(dirs[0].path().join("tessera.toml"), config).unwrap();
    // Made without a master key, the keyring is unsealed: a shared store needs one, and sealing is explicit.
    let sealed = tessera(dirs[0].path()).args(["keys", "seal"]).output().unwrap();
    assert!(sealed.status.success(), "{}", String::from_utf8_lossy(&sealed.stderr));
    add_user(dirs[0].path(), "alice");

    let nodes = dirs.each_ref().map(|dir| Server::start(dir.path()));
    let published = published_kids(nodes[0].addr);
    assert!(published.contains(&local_kid), "A's imported key is published: {published:?}");
    assert_eq!(published.len(), 2, "beside it, the RS256 key of ID tokens the first node made: {published:?}");
    for node in &nodes {
        assert_eq!(published_kids(node.addr), published, "every node publishes the same keys, made once");
        assert_eq!(kid_of(&login(node.addr).0), local_kid, "and signs with it");
    }
    // A rotation from the command line, in a fourth directory, reaches every node within its reload interval.
    let operator = tempfile::tempdir().unwrap();
    for file in ["tessera.toml", "master-key"] {
        std::fs::copy(dirs[1].path().join(file), operator.path().join(file)).unwrap();
    }
    let rotated = tessera(operator.path()).args(["keys", "rotate", "--now", "--json"]).output().unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let new_kid = serde_json::from_slice::<Value>(&rotated.stdout).unwrap()[0]["kid"].as_str().unwrap().to_owned();
    assert!(!operator.path().join("tessera-data/keys.json").exists(), "the operator's rotation went to the store");
    for node in &nodes {
        eventually("the rotated key signs on every node", || kid_of(&login(node.addr).0) == new_kid);
        assert!(published_kids(node.addr).contains(&local_kid), "the old key stays published while its tokens live");
    }
    // A token signed on one node after the rotation verifies on the others.
    let (access, _) = login(nodes[0].addr);
    for node in &nodes {
        assert_eq!(verify(node.addr, &access), 200);
    }
}

/// Three data directories with the same configuration (and the admin credential file it names).
fn node_dirs(config: &str) -> [tempfile::TempDir; 3] {
    std::array::from_fn(|_| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token"), ADMIN).unwrap();
        // Nodes of a shared store must agree on the issuer (and each would otherwise name its own address).
        // A shared store needs a master key, the same on every node.
        std::fs::write(dir.path().join("master-key"), MASTER_KEY).unwrap();
        let keys = "[keys]\nmaster_key_file = \"master-key\"\n";
        std::fs::write(dir.path().join("tessera.toml"), format!("issuer = \"http://tessera.test\"\n{keys}{config}"))
            .unwrap();
        dir
    })
}

const ADMIN: &str = "admin-credential-for-the-multi-node-test-0123456789";
const MASTER_KEY: &str = "qXoGsnbbV0Ai4ynFMHDPCj3GJtyuIbEmwodqlZW1Sg8=";

fn admin(addr: SocketAddr, path: &str, body: &Value) -> Value {
    let body = body.to_string();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(matches!(&response[9..12], "200" | "201"), "{response}");
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}
