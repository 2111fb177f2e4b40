//! Security events: each occasion records its event; the admin API lists them, filtered and paged; a webhook
//! receives each one signed, without delaying the request that caused it, retried while the receiver is down, and
//! dropped (counted) when the queue is full.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use common::{harness_with, json_post, Harness, Reply, PASSWORD};
use serde_json::{json, Value};
use tessera_keys::{Activation, KeyStore, RotationPolicy};
use tessera_server::clock::Clock as _;
use tessera_server::{RateLimits, Settings, WebhookSettings};
use tokio::sync::{mpsc, oneshot};

const ADMIN: &str = "an-admin-credential-of-at-least-32-characters";
const SECRET: &str = "the-webhook-secret";

fn admin_settings() -> Settings {
    Settings { admin_token: Some(ADMIN.into()), ..Settings::default() }
}

async fn admin(h: &Harness, method: &str, path: &str, body: Option<Value>) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json");
    h.send(request.body(body.map_or_else(Body::empty, |body| Body::from(body.to_string()))).unwrap()).await
}

/// The events the admin API lists for `query`, once at least `count` are recorded (they are recorded in the
/// background, just after the request that caused them).
async fn events(h: &Harness, query: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = admin(h, "GET", &format!("/admin/v1/security-events?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let listed = reply.body["events"].as_array().unwrap().clone();
        if listed.len() >= count {
            return listed;
        }
        assert!(tokio::time::Instant::now() < deadline, "{count} events for {query:?} not within 10 s: {listed:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|event| event["kind"].as_str().unwrap()).collect()
}

/// Alice's session used after it was rotated: refresh-token reuse. The session's cookie (dead now) and the id of
/// the request that reused it.
async fn reuse(h: &Harness) -> (String, HeaderValue) {
    let session = h.login("alice").await;
    assert_eq!(h.refresh(&session.cookie, &session.csrf).await.status, StatusCode::OK);
    h.clock.advance_ms(11_000);
    let reused = h.refresh(&session.cookie, &session.csrf).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    (session.cookie, reused.headers["x-request-id"].clone())
}

#[tokio::test]
async fn the_admin_api_lists_events_newest_first_filtered_and_paged() {
    let h = harness_with(admin_settings()).await;
    let alice = h.login("alice").await;
    assert_eq!(h.with_bearer("POST", "/auth/logout", &alice.access).await.status, StatusCode::NO_CONTENT);
    h.clock.advance_ms(60_000);
    let bob = h.login("bob").await;
    assert_eq!(h.with_bearer("POST", "/auth/logout-all", &bob.access).await.status, StatusCode::NO_CONTENT);
    h.clock.advance_ms(60_000);
    reuse(&h).await;
    let all = events(&h, "", 3).await;
    assert_eq!(kinds(&all), ["refresh_token_reuse", "sessions_revoked_all", "session_revoked"]);
    let logout = &all[2];
    assert_eq!((logout["sub"].as_str(), logout["actor"].as_str()), (Some("alice"), Some("user")));
    assert_eq!(logout["sid"], common::claims_of(&alice.access)["sid"]);
    assert_eq!(logout["at"], "2027-01-15T08:00:00.000Z", "RFC 3339 of the manual clock's start");
    assert!(all[0]["id"].as_u64() > all[1]["id"].as_u64() && all[1]["id"].as_u64() > all[2]["id"].as_u64());
    assert_eq!(all[0]["actor"], Value::Null, "nobody known reused the token");

    assert_eq!(kinds(&events(&h, "kind=session_revoked", 1).await), ["session_revoked"]);
    assert_eq!(kinds(&events(&h, "sub=bob", 1).await), ["sessions_revoked_all"]);
    assert_eq!(kinds(&events(&h, "sub=alice&kind=refresh_token_reuse", 1).await), ["refresh_token_reuse"]);
    let second_minute = "since=2027-01-15T08:01:00Z&until=2027-01-15T08:02:00Z";
    assert_eq!(kinds(&events(&h, second_minute, 1).await), ["sessions_revoked_all"]);

    // Pages of one, each from the previous page's `next`, until `next` is null.
    let (mut paged, mut next) = (Vec::new(), String::new());
    loop {
        let reply = admin(&h, "GET", &format!("/admin/v1/security-events?limit=1{next}"), None).await;
        paged.extend(reply.body["events"].as_array().unwrap().iter().cloned());
        match reply.body["next"].as_u64() {
            Some(before) => next = format!("&before={before}"),
            None => break,
        }
    }
    assert_eq!(paged, all);

    for (query, named) in [
        ("kind=nope", "kind"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
        ("until=2027-01-15T08:00:00%2B02:00", "until"),
        ("since=2027-01-15T09:00:00Z&until=2027-01-15T08:00:00Z", "since must be before until"),
        ("before=x", "before"),
        ("sub=", "sub"),
        ("color=red", "color"),
    ] {
        let reply = admin(&h, "GET", &format!("/admin/v1/security-events?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        let description = reply.body["error_description"].as_str().unwrap();
        assert!(description.contains(named), "{query}: {description}");
    }
    let anonymous = h.send(Request::get("/admin/v1/security-events").body(Body::empty()).unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong = h.with_bearer("GET", "/admin/v1/security-events?kind=nope", "not-the-admin-credential").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "the credential is checked before the parameters");
}

#[tokio::test]
async fn each_occasion_records_its_event() {
    let settings = Settings {
        rate_limits: RateLimits { failed_login_per_user_and_ip: 2, ..RateLimits::default() },
        ..admin_settings()
    };
    let h = harness_with(settings).await;

    // A user ending one of their sessions, and a client revoking its refresh token (RFC 7009).
    let first = h.login("bob").await;
    let second = h.login("bob").await;
    let sid = common::claims_of(&second.access)["sid"].as_str().unwrap().to_owned();
    let path = format!("/auth/sessions/{sid}");
    assert_eq!(h.with_bearer("DELETE", &path, &first.access).await.status, StatusCode::NO_CONTENT);
    // Events are recorded in the background, each given its id when it is stored: the first is waited for, so
    // that the two are listed in the order they happened.
    events(&h, "kind=session_revoked", 1).await;
    let revoke = format!("token={}&client_id=tessera", first.cookie);
    let reply = h.send(common::form_post("/oauth2/revoke", &revoke)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let listed = events(&h, "kind=session_revoked", 2).await;
    let by: Vec<_> = listed.iter().map(|e| (e["actor"].as_str().unwrap(), e["detail"].as_str().unwrap())).collect();
    assert_eq!(by, [("client:tessera", "rfc7009"), ("user", "user_ended_session")]);

    // Failed logins: the limit's first refusal locks, the next refusals do not lock again.
    let wrong = || json_post("/auth/login", &json!({"username": "alice", "password": "wrong"}));
    for _ in 0..2 {
        assert_eq!(h.send(wrong()).await.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        assert_eq!(h.send(wrong()).await.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let locked = events(&h, "kind=login_locked", 1).await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["sub"], "alice");
    let detail = locked[0]["detail"].as_str().unwrap();
    assert!(detail.contains("failed_login_per_user_and_ip") && !detail.contains("wrong"), "{detail}");

    // An admin's revocation of a subject: the revocation itself, and the admin's change.
    let reply = admin(&h, "POST", "/admin/v1/revocations", Some(json!({"sub": "bob", "reason": "left"}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let all = events(&h, "sub=bob&kind=sessions_revoked_all", 1).await;
    assert_eq!(
        (all[0]["actor"].as_str(), all[0]["detail"].as_str().unwrap().starts_with("left")),
        (Some("admin"), true)
    );
    let change = events(&h, "kind=admin_change", 1).await;
    assert_eq!((change[0]["sub"].as_str(), change[0]["actor"].as_str()), (Some("bob"), Some("admin")));

    // A key rotation, seen when the node reloads its keys.
    let before = h.state.keys().signing_key().kid().to_owned();
    let keystore = KeyStore::open(h.dir.path(), None).unwrap();
    let now = h.clock.now_secs();
    keystore.update(|ring| ring.rotate(now, &RotationPolicy::default(), Activation::Immediate)).unwrap();
    assert!(h.state.keys().refresh(now).unwrap());
    let after = h.state.keys().signing_key().kid().to_owned();
    let rotated = events(&h, "kind=key_rotated", 1).await;
    assert_eq!(rotated[0]["detail"], format!("now signing with key {after} (was {before})"));

    // No event carries a token, a cookie or a password.
    let everything = serde_json::to_string(&events(&h, "", 6).await).unwrap();
    for secret in [first.access.as_str(), &first.cookie, &second.access, &second.csrf, PASSWORD] {
        assert!(!everything.contains(secret), "{everything}");
    }
}

/// What a webhook receiver got: the request's headers and body, and the means to answer it (until answered, the
/// connection is held open).
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
    answer: oneshot::Sender<StatusCode>,
}

/// A webhook receiver on a loopback port: every request is handed to the test, which answers it.
struct Receiver(mpsc::UnboundedReceiver<Delivery>);

impl Receiver {
    async fn start_on(listener: tokio::net::TcpListener) -> Self {
        let (deliveries, received) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let deliveries = deliveries.clone();
                async move {
                    let (answer, answered) = oneshot::channel();
                    let _ = deliveries.send(Delivery { headers, body, answer });
                    answered.await.unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self(received)
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv()).await.expect("no delivery within 10 s").unwrap()
    }
}

async fn loopback() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A harness whose events go to `addr`, retried quickly; an attempt waits an hour for its answer, so a request
/// that waited for delivery would be seen waiting.
async fn with_webhook(addr: SocketAddr, queue_capacity: usize) -> Harness {
    let webhook = WebhookSettings {
        timeout: Duration::from_secs(3600),
        max_attempts: 1000,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(50),
        queue_capacity,
        ..WebhookSettings::new(format!("http://{addr}/hook"), SECRET)
    };
    harness_with(Settings { webhook: Some(webhook), ..admin_settings() }).await
}

/// HMAC-SHA256 built from SHA-256 by hand (RFC 2104), independent of the server's HMAC.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let sha256 = |parts: &[&[u8]]| {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        parts.iter().for_each(|part| context.update(part));
        context.finish().as_ref().to_vec()
    };
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = sha256(&[&pad(0x36), message]);
    sha256(&[&pad(0x5c), &inner]).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The counter's value in the Prometheus text (0 when absent).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_reuse_detection_reaches_the_webhook_signed() {
    let listener = loopback().await;
    let h = with_webhook(listener.local_addr().unwrap(), 100).await;
    let mut receiver = Receiver::start_on(listener).await;
    let (cookie, request_id) = reuse(&h).await;
    let delivery = receiver.next().await;
    delivery.answer.send(StatusCode::NO_CONTENT).unwrap();
    assert_eq!(delivery.headers["x-request-id"], request_id, "the id of the request that raised it, passed on");

    let event: Value = serde_json::from_slice(&delivery.body).unwrap();
    let stored = events(&h, "kind=refresh_token_reuse", 1).await;
    assert_eq!(event, stored[0], "the stored event, as the API lists it");
    assert_eq!(event["sub"], "alice");
    assert_eq!(delivery.headers["content-type"], "application/json");
    assert_eq!(delivery.headers["tessera-event-id"].to_str().unwrap(), event["id"].to_string());
    let signature = delivery.headers["tessera-signature"].to_str().unwrap();
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    assert_eq!(t.parse::<i64>().unwrap(), h.clock.now_secs(), "dated by the server's clock");
    let signed = [t.as_bytes(), b".", &delivery.body].concat();
    assert_eq!(v1.strip_prefix("v1=").unwrap(), hmac_sha256(SECRET.as_bytes(), &signed));
    assert_ne!(hmac_sha256(b"another secret", &signed), v1.strip_prefix("v1=").unwrap());
    let body = String::from_utf8(delivery.body.to_vec()).unwrap();
    assert!(!body.contains(&cookie) && !body.contains(SECRET), "{body}");
}

#[tokio::test]
async fn a_hanging_receiver_delays_nothing_and_the_event_is_retried_until_delivered() {
    let metrics = tessera_server::metrics_handle().unwrap();
    let listener = loopback().await;
    let h = with_webhook(listener.local_addr().unwrap(), 100).await;
    let mut receiver = Receiver::start_on(listener).await;
    let retried_before = counter(&metrics.render(), "tessera_webhook_deliveries_total{outcome=\"retried\"}");

    // The refresh that detects reuse answers while the receiver holds the first delivery attempt unanswered
    // (for up to the attempt's hour).
    reuse(&h).await;
    let held = receiver.next().await;
    assert!(!held.answer.is_closed(), "the first attempt is still waiting for its answer");
    let first: Value = serde_json::from_slice(&held.body).unwrap();

    // Its answer, at last, is a 503: retried, then delivered.
    held.answer.send(StatusCode::SERVICE_UNAVAILABLE).unwrap();
    let retry = receiver.next().await;
    retry.answer.send(StatusCode::OK).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&retry.body).unwrap(), first, "the same event");
    let metrics = metrics.render();
    assert!(counter(&metrics, "tessera_webhook_deliveries_total{outcome=\"retried\"}") > retried_before, "{metrics}");
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_event_once_it_is_up() {
    // A free port with nothing listening on it yet: every attempt is refused until the receiver starts there.
    let addr = loopback().await.local_addr().unwrap();
    let h = with_webhook(addr, 100).await;
    let (cookie, _) = reuse(&h).await;
    let stored = events(&h, "kind=refresh_token_reuse", 1).await;
    let mut receiver = Receiver::start_on(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let delivery = receiver.next().await;
    delivery.answer.send(StatusCode::OK).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&delivery.body).unwrap(), stored[0]);
    assert!(!String::from_utf8_lossy(&delivery.body).contains(&cookie));
}

#[tokio::test]
async fn a_full_queue_drops_events_and_counts_them() {
    let metrics = tessera_server::metrics_handle().unwrap();
    let dropped = || counter(&metrics.render(), "tessera_webhook_deliveries_total{outcome=\"dropped\"}");
    let dropped_before = dropped();
    let listener = loopback().await;
    let h = with_webhook(listener.local_addr().unwrap(), 1).await;
    let mut receiver = Receiver::start_on(listener).await;
    let revoke = |n: usize| {
        let h = &h;
        async move {
            let body = json!({"jti": format!("token-{n}"), "reason": "test"});
            assert_eq!(admin(h, "POST", "/admin/v1/revocations", Some(body)).await.status, StatusCode::OK);
        }
    };
    // One event is being delivered (held), one waits in the queue of one, two more find it full.
    revoke(0).await;
    let held = receiver.next().await;
    for n in 1..4 {
        revoke(n).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dropped() < dropped_before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "two drops not counted within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.answer.send(StatusCode::OK).unwrap();
    receiver.next().await.answer.send(StatusCode::OK).unwrap();
    assert_eq!(dropped(), dropped_before + 2);
    // Dropped from the webhook, not from the store.
    assert_eq!(kinds(&events(&h, "kind=admin_change", 4).await).len(), 4);
}
