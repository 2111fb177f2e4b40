//! Observability in-process: `/metrics` after the traffic an operator watches — logins, refreshes, a reuse,
//! verifications, a revocation that reaches another node, a rate-limited login — holds every series the dashboards
//! and alert rules read, with the promised labels and counts; and every answer carries a request id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{another_node_state, cookie_of, harness_with, json_post};
use http_body_util::BodyExt as _;
use serde_json::json;
use tessera_model::{Provenance, Revocation};
use tessera_server::clock::Clock as _;
use tessera_server::{RateLimits, Settings};
use tower::ServiceExt as _;

/// The value of the one series whose line starts with `series` (name and labels as exposed), if any.
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .map(|value| value.parse().unwrap())
}

async fn scrape(app: &axum::Router) -> String {
    let response = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn the_series_dashboards_and_alerts_read_are_exported_with_their_labels() {
    let settings = Settings {
        rate_limits: RateLimits { failed_login_per_user_and_ip: 1, ..RateLimits::default() },
        ..Settings::default()
    };
    let h = harness_with(settings).await;
    let other = another_node_state(&h, Settings::default()).await;

    let s = h.login("alice").await;
    let wrong = json!({"username": "bob", "password": "wrong"});
    assert_eq!(h.send(json_post("/auth/login", &wrong)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.send(json_post("/auth/login", &wrong)).await.status, StatusCode::TOO_MANY_REQUESTS);
    let rotated = h.refresh(&s.cookie, &s.csrf).await;
    assert!(cookie_of(&rotated).is_some());
    assert_eq!(h.verify(rotated.body["access_token"].as_str().unwrap()).await, StatusCode::OK);
    assert_eq!(h.verify("not.a.token").await, StatusCode::UNAUTHORIZED);
    h.clock.advance_ms(10_000);
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED, "reuse of a rotated token");

    // A revocation committed through this node reaches the other one at its next sync.
    let revocation = Revocation::Subject { sub: "bob".into(), not_before: h.clock.now_ms() };
    h.state.store().revoke(revocation, Provenance::new("test", "propagation"), h.clock.now_ms()).await.unwrap();
    h.clock.advance_ms(250);
    tessera_server::sync(&other).await.unwrap();

    let m = scrape(&h.app).await;
    let at_least = |series: &str, min: f64| {
        let got = value(&m, series).unwrap_or_else(|| panic!("no series {series} in\n{m}"));
        assert!(got >= min, "{series} = {got}, expected at least {min}");
    };
    at_least(r#"tessera_tokens_issued_total{type="access",alg="EdDSA",client="tessera"}"#, 2.0);
    at_least(r#"tessera_tokens_issued_total{type="refresh",alg="opaque",client="tessera"}"#, 2.0);
    at_least(r#"tessera_logins_total{outcome="success"}"#, 1.0);
    at_least(r#"tessera_logins_total{outcome="invalid_credentials"}"#, 1.0);
    at_least(r#"tessera_logins_total{outcome="rate_limited"}"#, 1.0);
    at_least(r#"tessera_rate_limited_total{limit="failed_login_per_user_and_ip"}"#, 1.0);
    at_least(r#"tessera_refresh_total{outcome="rotated"}"#, 1.0);
    at_least(r#"tessera_refresh_total{outcome="reuse_detected"}"#, 1.0);
    at_least(r#"tessera_token_validation_duration_seconds_count{issuer="self",result="valid"}"#, 1.0);
    at_least(r#"tessera_token_validation_duration_seconds_count{issuer="self",result="malformed"}"#, 1.0);
    // Buckets start at a microsecond: in-process checks are that fast.
    assert!(
        m.contains(r#"tessera_token_validation_duration_seconds_bucket{issuer="self",result="valid",le="0.000001"}"#)
    );
    at_least(r#"tessera_revocation_checks_total{layer="index",outcome="pass"}"#, 1.0);
    at_least("tessera_revocation_check_duration_seconds_count", 1.0);
    at_least("tessera_revocation_syncs_total", 3.0);
    at_least("tessera_revocation_resyncs_total", 2.0);
    at_least("tessera_revocation_propagation_seconds_count", 1.0);
    at_least(r#"tessera_revocation_propagation_seconds_bucket{le="0.25"}"#, 1.0);
    at_least("tessera_revocation_index_memory_bytes", 1.0);
    assert_eq!(value(&m, "tessera_revocation_index_stale_after_seconds"), Some(60.0), "the configured bound");
    assert_eq!(value(&m, r#"tessera_signing_keys{phase="active"}"#), Some(1.0));
    assert_eq!(value(&m, r#"tessera_signing_keys{phase="next"}"#), Some(0.0));
    let due = value(&m, "tessera_signing_key_rotation_due_seconds").unwrap();
    assert!(due > 29.0 * 86_400.0 && due <= 30.0 * 86_400.0, "a fresh key rotates in 30 days: {due}");
    at_least(r#"tessera_store_operation_duration_seconds_count{backend="sqlite",operation="refresh"}"#, 2.0);
    at_least("process_resident_memory_bytes", 1.0);
}

#[tokio::test]
async fn every_answer_carries_the_request_id_the_client_sent_or_one_made_for_it() {
    let h = common::harness().await;
    let ask = |id: Option<&str>, path: &str| {
        let mut request = Request::get(path);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        h.app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let id_of = |response: &axum::response::Response| response.headers()["x-request-id"].to_str().unwrap().to_owned();
    // Kept on a success, a refusal and an unknown route alike.
    for path in ["/healthz", "/verify", "/no/such/route"] {
        assert_eq!(id_of(&ask(Some("req-42"), path).await.unwrap()), "req-42", "{path}");
    }
    // One that cannot be logged as it is (a quote, too long) is replaced, as is a missing one; made ones differ.
    let long = "x".repeat(129);
    let mut seen = std::collections::HashSet::new();
    for id in [Some("bad\"id"), Some(long.as_str()), None, None] {
        let answered = id_of(&ask(id, "/healthz").await.unwrap());
        assert!(Some(answered.as_str()) != id && !answered.is_empty() && answered.len() <= 128, "{answered}");
        assert!(seen.insert(answered), "made ids are unique");
    }
}
