//! The revocation feed (`/gateway/v1/revocations`) for services that verify tokens in process: only a client
//! granted `revocations:read` reads it; it hands out the log from any position, in pages, as the nodes read it;
//! a long poll answers as soon as a revocation is made; a log that went back is a 409; each client has a budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::clients::{basic_auth, ADMIN, SECRET};
use common::{harness_with, register_client, Harness, Reply};
use serde_json::{json, Value};
use tessera_server::{RateLimits, Settings};

const FEED: &str = "/gateway/v1/revocations";

async fn feed_harness(feed_per_client: u32) -> Harness {
    feed_harness_with(RateLimits { feed_per_client, ..RateLimits::default() }).await
}

async fn feed_harness_with(rate_limits: RateLimits) -> Harness {
    let settings = Settings { admin_token: Some(ADMIN.into()), rate_limits, ..Settings::default() };
    let h = harness_with(settings).await;
    register_client(&h, "orders", SECRET, &["revocations:read"], &["orders"], &["client_credentials"]).await;
    register_client(&h, "payments", SECRET, &["payments:read"], &["payments"], &["client_credentials"]).await;
    h
}

async fn read(h: &Harness, query: &str, client: (&str, &str)) -> Reply {
    let request = Request::get(format!("{FEED}{query}"))
        .header(header::AUTHORIZATION, basic_auth(client.0, client.1))
        .body(Body::empty())
        .unwrap();
    h.send(request).await
}

/// Alice logs in and out: one session revocation in the log. Her session id.
async fn logged_out(h: &Harness) -> String {
    let session = h.login("alice").await;
    assert_eq!(h.with_bearer("POST", "/auth/logout", &session.access).await.status, StatusCode::NO_CONTENT);
    common::claims_of(&session.access)["sid"].as_str().unwrap().to_owned()
}

fn positions(reply: &Reply) -> Vec<i64> {
    reply.body["entries"].as_array().unwrap().iter().map(|entry| entry["position"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_granted_client_reads_the_log_from_the_start_in_pages() {
    let h = feed_harness(120).await;
    let first = logged_out(&h).await;
    let second = logged_out(&h).await;

    let all = read(&h, "", ("orders", SECRET)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.headers[header::CACHE_CONTROL], "no-store");
    let entries = all.body["entries"].as_array().unwrap();
    let sessions: Vec<&str> =
        entries.iter().filter(|e| e["kind"] == "session").map(|e| e["sid"].as_str().unwrap()).collect();
    assert_eq!(sessions, [first.as_str(), second.as_str()], "oldest first");
    // What verifiers apply, and nothing of who asked or why.
    for entry in entries.iter().filter(|e| e["kind"] == "session") {
        let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["at", "kind", "position", "sid"], "{entry}");
        assert!(entry["at"].as_i64().unwrap() > 0);
    }
    let head = all.body["head"].as_i64().unwrap();
    assert_eq!(all.body["next"].as_i64(), Some(head));
    assert_eq!(all.body["more"], false);
    assert!(all.body["retention_ms"].as_i64().unwrap() > 0);

    // One at a time, from each page's `next`: the same entries, in the same order.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = read(&h, &format!("?after={after}&limit=1"), ("orders", SECRET)).await;
        paged.extend(positions(&page));
        after = page.body["next"].as_i64().unwrap();
        if page.body["more"] == false {
            break;
        }
    }
    assert_eq!(paged, positions(&all));
    // Caught up: nothing after the head.
    let caught_up = read(&h, &format!("?after={head}"), ("orders", SECRET)).await;
    assert_eq!((caught_up.body["entries"].as_array().unwrap().len(), &caught_up.body["next"]), (0, &json!(head)));
}

#[tokio::test]
async fn only_a_client_granted_the_scope_reads_it() {
    let h = feed_harness(120).await;
    let anonymous = h.send(Request::get(FEED).body(Body::empty()).unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(read(&h, "", ("orders", "not-the-secret")).await.status, StatusCode::UNAUTHORIZED);
    let other = read(&h, "", ("payments", SECRET)).await;
    assert_eq!((other.status, &other.body["error"]), (StatusCode::FORBIDDEN, &json!("insufficient_scope")));
    // Credentials in the query string (where proxies log them) are refused before anything is checked.
    let in_query = h
        .send(Request::get(format!("{FEED}?client_id=orders&client_secret={SECRET}")).body(Body::empty()).unwrap())
        .await;
    assert_eq!(in_query.status, StatusCode::BAD_REQUEST);
    // A user's access token is no client credential.
    let alice = h.login("alice").await;
    assert_eq!(h.with_bearer("GET", FEED, &alice.access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_posted_form_authenticates_too() {
    let h = feed_harness(120).await;
    logged_out(&h).await;
    let form = format!("client_id=orders&client_secret={SECRET}&after=0&limit=5");
    let reply = h.send(common::form_post(FEED, &form)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!positions(&reply).is_empty());
}

/// A long poll from `after` on `app`, in the background.
fn long_poll(app: &axum::Router, after: i64) -> tokio::task::JoinHandle<Value> {
    let app = app.clone();
    tokio::spawn(async move {
        let request = Request::get(format!("{FEED}?after={after}&wait=8"))
            .header(header::AUTHORIZATION, basic_auth("orders", SECRET))
            .body(Body::empty())
            .unwrap();
        let answer = tower::ServiceExt::oneshot(app, request).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let bytes = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    })
}

/// Waits until `n` feed requests are waiting for the log to grow (the node's gauge).
async fn until_waiting(n: u64) {
    let series = format!("tessera_revocation_feed_waiting {n}");
    for _ in 0..500 {
        if tessera_server::metrics_handle().unwrap().render().lines().any(|line| line == series) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("never {n} waiting");
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_revocation_is_made() {
    let h = feed_harness(120).await;
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let waiting = long_poll(&h.app, head);
    until_waiting(1).await;
    let sid = logged_out(&h).await;
    let body = waiting.await.unwrap();
    // Answered with the revocation, not at the end of the wait (which would have answered an empty page).
    let entries = body["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["kind"] == "session" && e["sid"] == sid.as_str()), "{body}");
    assert!(entries[0]["position"].as_i64().unwrap() > head);
    until_waiting(0).await;
}

#[tokio::test]
async fn a_long_poll_on_another_node_answers_once_its_sync_sees_the_revocation() {
    let h = feed_harness(120).await;
    let other = common::another_node_state(&h, h.state.settings().clone()).await;
    let other_app = tessera_server::app(other.clone());
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let waiting = long_poll(&other_app, head);
    until_waiting(1).await;
    let sid = logged_out(&h).await;
    // The other node hears of it at its next sync (pushed, or its reload tick); here it is run by hand.
    tessera_server::sync(&other).await.unwrap();
    let body = waiting.await.unwrap();
    assert!(body["entries"].as_array().unwrap().iter().any(|e| e["sid"] == sid.as_str()), "{body}");
}

#[tokio::test]
async fn a_long_poll_with_nothing_new_ends_empty_at_the_end_of_its_wait() {
    let h = feed_harness(120).await;
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let started = std::time::Instant::now();
    let reply = read(&h, &format!("?after={head}&wait=1"), ("orders", SECRET)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(positions(&reply).is_empty());
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "it waited");
    assert_eq!(reply.body["next"].as_i64(), Some(head));
}

#[tokio::test]
async fn a_long_poll_ends_when_the_server_shuts_down() {
    let h = feed_harness(120).await;
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let waiting = long_poll(&h.app, head);
    until_waiting(1).await;
    h.state.close();
    let body = waiting.await.unwrap();
    assert!(body["entries"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_position_beyond_the_head_means_the_log_went_back() {
    let h = feed_harness(120).await;
    logged_out(&h).await;
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let reply = read(&h, &format!("?after={}", head + 10), ("orders", SECRET)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!((&reply.body["error"], reply.body["head"].as_i64()), (&json!("log_rewound"), Some(head)));
}

#[tokio::test]
async fn bad_parameters_are_refused_and_each_client_has_a_budget() {
    let h = feed_harness(6).await;
    for bad in ["?limit=0", "?limit=5000", "?after=-3", "?wait=soon", "?after=1&after=2", "?after=1.-5"] {
        let reply = read(&h, bad, ("orders", SECRET)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
    }
    // Authenticated, each counted: the budget of six a minute is spent.
    let refused = read(&h, "", ("orders", SECRET)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn a_client_holds_a_bounded_number_of_waiting_long_polls() {
    let h = feed_harness_with(RateLimits { feed_waits_per_client: 2, ..RateLimits::default() }).await;
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let first = long_poll(&h.app, head);
    let second = long_poll(&h.app, head);
    until_waiting(2).await;

    // A third would wait: refused at once, with when to ask again.
    let refused = read(&h, &format!("?after={head}&wait=5"), ("orders", SECRET)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
    assert_eq!(refused.headers[header::RETRY_AFTER], "1");
    // One with something to hand out at once never waits, so it needs no slot.
    assert_eq!(read(&h, "?after=0&wait=5", ("orders", SECRET)).await.status, StatusCode::OK);

    // The revocation ends both waits and gives their slots back: the client may wait again.
    logged_out(&h).await;
    first.await.unwrap();
    second.await.unwrap();
    until_waiting(0).await;
    let head = read(&h, "", ("orders", SECRET)).await.body["head"].as_i64().unwrap();
    let again = long_poll(&h.app, head);
    until_waiting(1).await;
    h.state.close();
    again.await.unwrap();
}
