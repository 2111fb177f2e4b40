//! Resource bounds of the real server: memory under a login flood, metrics series under hostile requests.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{add_user, http, request, Server, PASSWORD};

/// The server process's peak resident memory (`VmHWM`), bytes.
fn peak_memory(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

#[test]
fn a_login_flood_keeps_the_servers_peak_memory_under_200_mb() {
    let dir = tempfile::tempdir().unwrap();
    // One address floods, as in the report: its own rate limit must not be what saves the server.
    std::fs::write(dir.path().join("tessera.toml"), "[rate_limits]\nlogin_per_ip = 100000\n").unwrap();
    add_user(dir.path(), "alice");
    let server = Server::start(dir.path());
    let addr = server.addr;
    // 200 logins at once, each for another unknown user (checked against the decoy hash, so each costs a full
    // password check, and no per-user limit applies); each check holds 19 MiB while it runs.
    let floods: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let body = serde_json::json!({"username": format!("nobody-{i}"), "password": PASSWORD}).to_string();
                http(addr, "POST", "/auth/login", "application/json", &body).map(|(status, _)| status)
            })
        })
        .collect();
    let statuses: Vec<u16> = floods.into_iter().map(|flood| flood.join().unwrap().unwrap()).collect();
    assert!(statuses.iter().all(|status| [401, 503].contains(status)), "{statuses:?}");
    assert!(statuses.contains(&503), "the flood exceeded the queue: {statuses:?}");
    assert!(statuses.contains(&401), "and was checked as far as it fit: {statuses:?}");
    // The server still logs alice in.
    let body = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
    assert_eq!(http(addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 200);
    let peak = peak_memory(&server);
    assert!(peak < 200 * 1024 * 1024, "peak resident memory {} MiB", peak / (1024 * 1024));
}

/// The `tessera_http_*` series `/metrics` shows now (name and labels).
fn http_series(addr: SocketAddr) -> BTreeSet<String> {
    let (status, body) = http(addr, "GET", "/metrics", "text/plain", "").unwrap();
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| line.starts_with("tessera_http_"))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

/// A request with an invented method of 2,000 characters, and one to a path nobody routes.
fn hostile_requests(addr: SocketAddr, seed: char) {
    let method: String = std::iter::repeat_n(seed.to_ascii_uppercase(), 2_000).collect();
    request(addr, &method, "/healthz", "", "").unwrap();
    request(addr, "GET", &format!("/no-such-path-{seed}{}", "x".repeat(40)), "", "").unwrap();
}

#[test]
fn invented_methods_and_unrouted_paths_add_no_metrics_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // The first of each kind may add its series (method "other", route "unmatched"), and `/metrics` its own.
    hostile_requests(server.addr, 'a');
    http_series(server.addr);
    let before = http_series(server.addr);
    hostile_requests(server.addr, 'b');
    let after = http_series(server.addr);
    assert_eq!(before, after, "new series: {:?}", after.difference(&before).collect::<Vec<_>>());
    assert!(after.iter().any(|series| series.contains(r#"method="other""#)), "{after:?}");
    assert!(!after.iter().any(|series| series.contains("AAAA") || series.contains("no-such-path")), "{after:?}");
}
