//! Store faults under `tessera serve`: the requests the fault tests make, the configuration they run on, and what
//! a node's metrics say about its Redis circuit breaker.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::{claims, eventually, http, request, Server, PASSWORD};

pub const ADMIN: &str = "admin-credential-for-the-redis-fault-tests-0123456789";

/// A request's answer: `Err` when the connection failed or timed out.
pub type Answer = std::io::Result<(u16, String)>;

/// `GET /verify` with a bearer token: the status.
pub fn verify(addr: SocketAddr, token: &str) -> u16 {
    request(addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, "", "").unwrap()
}

pub fn admin(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    let headers = format!("authorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\n");
    request(addr, "POST", path, &headers, &body.to_string())
}

pub fn login(addr: SocketAddr, user: &str) -> Answer {
    let body =
        serde_json::json!({"username": user, "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    http(addr, "POST", "/auth/login", "application/json", &body)
}

pub fn refresh(addr: SocketAddr, token: &str) -> Answer {
    let body = format!("grant_type=refresh_token&refresh_token={token}");
    http(addr, "POST", "/oauth2/token", "application/x-www-form-urlencoded", &body)
}

pub fn field(body: &str, name: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()[name].as_str().unwrap().to_owned()
}

/// The Redis circuit breaker's state on a node, from `/metrics`: 0 closed, 1 half-open, 2 open.
pub fn breaker_state(addr: SocketAddr) -> Option<u8> {
    let (_, metrics) = get(addr, "/metrics");
    metrics.lines().find_map(|line| line.strip_prefix("tessera_redis_breaker_state ")).map(|v| v.parse().unwrap())
}

/// A node's breaker transitions to `to`, from `/metrics`.
pub fn transitions(addr: SocketAddr, to: &str) -> u64 {
    let (_, metrics) = get(addr, "/metrics");
    let prefix = format!("tessera_redis_breaker_transitions_total{{to=\"{to}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(prefix.as_str())).map_or(0, |v| v.parse().unwrap())
}

/// A configuration on Redis, limits raised for load, an admin credential.
pub fn configure(dir: &Path, urls: &[String], cluster: bool, wait_replicas: u32, stale_after: &str) {
    let urls = urls.iter().map(|url| format!("{url:?}")).collect::<Vec<_>>().join(", ");
    let store = format!(
        "backend = \"redis\"\nredis_urls = [{urls}]\nredis_cluster = {cluster}\nredis_wait_replicas = {wait_replicas}\n"
    );
    configure_store(dir, &store, stale_after);
}

/// A configuration on the given `[store]` section, limits raised for load, an admin credential.
pub fn configure_store(dir: &Path, store: &str, stale_after: &str) {
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

/// Before an outage: alice's access and refresh tokens, and a token revoked by `jti` — checked to verify 200
/// and 401.
pub fn before_the_outage(addr: SocketAddr) -> (String, String, String) {
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

/// Runs its closure when dropped: resumes a frozen server even when an assertion fails, or the test would hang
/// stopping it.
pub struct Thaw<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for Thaw<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// One node on `store`, polling set to a minute: once `subscribed`, its push subscription is `cut` (which says
/// whether it cut exactly one); revocations made from another process after that reach it in seconds all the same,
/// by the sync made on subscribing again and by the new subscription.
pub fn loses_its_push_subscription_and_catches_up(store: &str, subscribed: impl Fn() -> bool, cut: impl Fn() -> bool) {
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
        let revoked = super::tessera(d).args(["revoke", "--jti", &jti]).output().unwrap();
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
