//! A Redis Cluster (3 masters, 3 replicas, writes waiting for one replica) under `tessera serve`, with real
//! processes on loopback ports:
//!
//! - it loses the master of the revocation log (of its partition 0, when it has 16) to SIGKILL under load: no
//!   refresh or revocation acknowledged with a 2xx is lost, and no request ever gets a wrong answer (only 503s
//!   while the cluster fails over), and the circuit breaker stays closed (one dead master among healthy ones is no outage). Requests, errors, the length of the
//!   disturbance and the failover time are printed (`--no-capture`) for BENCHMARKS.md: measured, not asserted.
//!   With one replica per master, the promoted replica's shard then refuses writes and every node names it in
//!   `/readyz` and `/metrics` until the dead node is back; with two (3 + 6 nodes), writes go on with no one's help;
//! - it loses half its nodes, every replica: no write is acknowledged while it cannot be replicated (503s),
//!   verification goes on, and once the replicas are back writes succeed and nothing acknowledged before is
//!   missing.
//!
//! Both run one at a time (the `redis-cluster` test group in `.config/nextest.toml`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::store_faults::{
    admin, before_the_outage, breaker_state, configure, field, get, login, refresh, transitions, verify, Answer,
};
use common::{add_user, claims, eventually, Server};
use tessera_test_support::RedisCluster;

mod common;

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

/// Raises the flag the load's threads stop at when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the load saw around the SIGKILL of the revocation log's master.
struct Run {
    record: Record,
    killed_at: Duration,
    failed_over_at: Duration,
}

/// Three masters with `replicas_per_master` replicas each (writes waiting for one), two Tessera nodes, three
/// refresh loops and a mint-and-revoke loop. 2 s in, the revocation log's master dies; `after_failover` runs once
/// a replica has taken over, given the cluster, the dead node and the Tessera nodes, and the load goes on for at
/// least 8 s after it. Then: no wrong answer, the breaker never opened, and nothing a 2xx acknowledged is lost —
/// every session's last rotation refreshes, every acknowledged revocation is refused on every node and on a node
/// started afterwards.
fn sigkill_of_the_log_master_under_load(
    replicas_per_master: usize,
    log_partitions: usize,
    after_failover: impl FnOnce(&mut RedisCluster, usize, [SocketAddr; 2]) + Send,
) -> Run {
    let mut cluster = RedisCluster::start_with_replicas(replicas_per_master, Duration::from_millis(2_000));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure(d, &cluster.urls(), true, 1, "120s");
    let config = std::fs::read_to_string(d.join("tessera.toml")).unwrap();
    assert!(config.contains("redis_wait_replicas = 1\n"), "{config}");
    let partitioned = format!("redis_wait_replicas = 1\nredis_log_partitions = {log_partitions}\n");
    std::fs::write(d.join("tessera.toml"), config.replacen("redis_wait_replicas = 1\n", &partitioned, 1)).unwrap();
    add_user(d, "alice");
    let nodes = [Server::start(d), Server::start(d)];
    let addrs = [nodes[0].addr, nodes[1].addr];
    let log_master = cluster.master_of("tessera:{tessera-log}:seq");
    for addr in addrs {
        eventually("every shard acknowledges writes before the kill", || get(addr, "/readyz") == (200, "ready".into()));
    }

    let started = Instant::now();
    let record = Mutex::new(Record::default());
    let stop = AtomicBool::new(false);
    // Per session: the last refresh token a 200 acknowledged, and the access token that came with it.
    let sessions: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    // Tokens whose revocation a 2xx acknowledged.
    let revoked: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (mut killed_at, mut failed_over_at) = (Duration::ZERO, Duration::ZERO);

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
                    // Paced, so that two cores also run the Redis servers, the nodes and the other test.
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

        // The load stops however this thread leaves the scope: a failed assertion below must not leave it running.
        let _stop = StopOnDrop(stop);
        std::thread::sleep(Duration::from_secs(2));
        killed_at = started.elapsed();
        cluster.kill(log_master);
        cluster.wait_until_ok();
        failed_over_at = started.elapsed();
        after_failover(&mut cluster, log_master, addrs);
        let load_until = Duration::from_secs(12).max(started.elapsed() + Duration::from_secs(8));
        std::thread::sleep(load_until.saturating_sub(started.elapsed()));
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
        "SIGKILL of the revocation log's Redis master under load (3 masters with {replicas_per_master} replica(s) \
         each, the log in {log_partitions} partition(s), WAIT 1, cluster-node-timeout 2 s, 2 tessera nodes, 3 refresh loops + 1 mint-and-revoke loop, debug \
         build):\n  \
         requests {}, errors {errors} ({:.2}%), slow (>= 1 s) but successful {slow}, longest {longest:.2?}\n  \
         disturbance (failed or slow requests) {disturbance}\n  \
         killed at {killed_at:.2?}; failover (replica promoted, cluster ok) {:.2} s after the kill\n  \
         acknowledged revocations {}, sessions {}",
        requests.len(),
        100.0 * errors as f64 / requests.len().max(1) as f64,
        (failed_over_at - killed_at).as_secs_f64(),
        revoked.len(),
        sessions.len(),
    );
    assert!(record.wrong.is_empty(), "wrong answers: {:#?}", record.wrong);
    assert!(!disturbed.is_empty(), "the fault was felt (or the test proves nothing)");
    assert!(!revoked.is_empty() && sessions.len() == 3);
    // One dead master among healthy ones is no outage: replies from the other masters keep the breaker closed
    // (docs/service.md), so writes to their shards go on. Only while the failover is pending does the whole
    // cluster answer CLUSTERDOWN, which on a loaded machine can last for the five calls in a row that open the
    // breaker once; it never opens twice, and it is closed again by the end.
    for addr in addrs {
        let (opened, state) = (transitions(addr, "open"), breaker_state(addr));
        assert!(opened <= 1 && state == Some(0), "the breaker opened {opened} times on {addr}, state {state:?}");
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
    Run { record, killed_at, failed_over_at }
}

/// The shards a node reports unable to acknowledge writes, from `/metrics`.
fn unwritable_shards(addr: SocketAddr) -> Option<u64> {
    let (_, metrics) = get(addr, "/metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tessera_redis_shards_unable_to_acknowledge_writes "))
        .map(|v| v.parse().unwrap())
}

/// One replica per master: the promoted replica has none of its own, so its shard refuses writes (503s, nothing
/// acknowledged unreplicated) and every node says which shard in `/readyz` and `/metrics` — until the dead node
/// comes back as its replica.
#[test]
fn sigkill_of_the_revocation_log_master_under_load_loses_no_acknowledged_refresh_or_revocation() {
    let run = sigkill_of_the_log_master_under_load(1, 1, |cluster, dead, addrs| {
        for addr in addrs {
            eventually("a node names the shard left without a replica", || {
                let (status, body) = get(addr, "/readyz");
                status == 200
                    && body.starts_with("ready, degraded: writes cannot be acknowledged on\nRedis slots ")
                    && body.contains("0 of the 1 replicas writes wait for are online")
                    && unwritable_shards(addr) == Some(1)
            });
        }
        cluster.restart(dead);
        cluster.wait_until_replicated();
        for addr in addrs {
            eventually("once the dead node is its replica, every shard acknowledges writes again", || {
                get(addr, "/readyz") == (200, "ready".into()) && unwritable_shards(addr) == Some(0)
            });
        }
    });
    assert!(run.record.requests.iter().any(|r| r.failed && r.start > run.failed_over_at), "writes failed after it");
}

/// Two replicas per master (the reference design's layout): after the failover the promoted replica still has
/// one, so its shard goes on acknowledging writes with no operator and no node coming back.
#[test]
fn with_two_replicas_per_master_writes_go_on_after_the_log_master_dies_and_nothing_acknowledged_is_lost() {
    writes_go_on_after_a_master_dies_with_two_replicas_each(1);
}

/// The same with the revocation log in 16 partitions over the three masters: the dead master held partition 0 and
/// about a third of the others, and nothing acknowledged in any of them is lost.
#[test]
fn with_the_log_in_16_partitions_a_dead_master_loses_no_acknowledged_revocation_and_writes_go_on() {
    writes_go_on_after_a_master_dies_with_two_replicas_each(16);
}

fn writes_go_on_after_a_master_dies_with_two_replicas_each(log_partitions: usize) {
    let run = sigkill_of_the_log_master_under_load(2, log_partitions, |_, _, addrs| {
        for addr in addrs {
            eventually("after the failover no shard is short of replicas", || {
                get(addr, "/readyz") == (200, "ready".into()) && unwritable_shards(addr) == Some(0)
            });
        }
    });
    // The cluster client learns the new layout within a few of its retries (room is left for a loaded machine):
    // from then on, everything succeeds.
    let settled = run.failed_over_at + Duration::from_secs(4);
    let after: Vec<&Sample> = run.record.requests.iter().filter(|r| r.start >= settled).collect();
    assert!(after.len() >= 20, "the load went on after the failover: {} requests", after.len());
    let failed: Vec<Duration> = after.iter().filter(|r| r.failed).map(|r| r.start).collect();
    assert!(failed.is_empty(), "writes failed after the failover (killed at {:?}): {failed:?}", run.killed_at);
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
