//! Revocation through the API: RFC 7009 for a client's own tokens, the admin API by `jti`, `sid` and `sub`, and the
//! compact revocation index confirming what it may hold in the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::claims_of;
use common::clients::{
    admin_revoke, admin_session, basic_auth, post, service_token, setup, setup_with, verify, ADMIN, EXCHANGE, SECRET,
};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tessera_server::clock::Clock as _;
use tessera_store::{LogCursor, Revocation};
use tower::ServiceExt as _;

/// These tests' clients and rules, with the compact revocation index (one-minute buckets).
async fn compact_setup() -> common::Harness {
    let compact =
        tessera_server::CompactRevocations { bucket_width: std::time::Duration::from_secs(60), bucket_capacity: 100 };
    setup_with(tessera_server::Settings { compact_revocations: Some(compact), ..tessera_server::Settings::default() })
        .await
}

/// Compact mode: revoked `jti`s are held in a prefilter, and what it may hold is looked up in the store. Tokens
/// revoked through RFC 7009 (their expiry known) and by an operator (by `jti` alone) are refused; a positive the
/// store does not confirm — which is all a false positive is — is accepted.
#[tokio::test]
async fn compact_mode_refuses_revoked_tokens_and_accepts_what_the_store_does_not_confirm() {
    let h = compact_setup().await;
    let by_client = service_token(&h, "billing").await;
    let by_operator = service_token(&h, "billing").await;
    let kept = service_token(&h, "billing").await;
    let lookalike = service_token(&h, "billing").await;
    for token in [&by_client, &by_operator, &kept, &lookalike] {
        assert_eq!(verify(&h, token, "/ledger/1").await.0, StatusCode::OK);
    }
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={by_client}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    let jti = claims_of(&by_operator)["jti"].as_str().unwrap().to_owned();
    assert_eq!(admin_revoke(&h, serde_json::json!({ "jti": jti }), ADMIN).await.0, StatusCode::OK);
    // In the index but not in the store: the prefilter answers "maybe", the store "no".
    let claims = claims_of(&lookalike);
    let planted = Revocation::Token {
        jti: claims["jti"].as_str().unwrap().to_owned(),
        expires_at: claims["exp"].as_i64().unwrap() * 1000,
    };
    h.state.revocations().apply_local(&planted, h.clock.now_ms());
    assert_eq!(verify(&h, &by_client, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "revoked by its client");
    assert_eq!(verify(&h, &by_operator, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "revoked by jti alone");
    assert_eq!(verify(&h, &kept, "/ledger/1").await.0, StatusCode::OK);
    assert_eq!(verify(&h, &lookalike, "/ledger/1").await.0, StatusCode::OK, "the store's answer stands");
    // A "revoked" from the store is remembered: the index now refuses that token by itself.
    let revoked = claims_of(&by_client);
    let presented = tessera_revocation::TokenRef {
        jti: revoked["jti"].as_str(),
        exp_secs: revoked["exp"].as_i64().unwrap(),
        ..tessera_revocation::TokenRef::default()
    };
    assert_eq!(h.state.revocations().check(&presented), tessera_revocation::Check::Revoked);
}

/// Compact mode, with the store unable to answer the confirming read (its revocation log gone from under it): a
/// token the prefilter may hold is neither accepted nor called revoked or inactive — every entry point answers 503,
/// so callers retry instead of acting on a guess.
#[tokio::test]
async fn compact_mode_answers_503_when_the_store_cannot_confirm() {
    let h = compact_setup().await;
    let revoked = service_token(&h, "billing").await;
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={revoked}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    let db = rusqlite::Connection::open(h.dir.path().join("tessera.db")).unwrap();
    db.execute_batch("ALTER TABLE revocation_log RENAME TO revocation_log_elsewhere;").unwrap();

    let send = |request: Request<Body>| async { h.app.clone().oneshot(request).await.unwrap().status() };
    let verify = Request::get("/verify")
        .header(header::AUTHORIZATION, format!("Bearer {revoked}"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/ledger/1");
    assert_eq!(send(verify.body(Body::empty()).unwrap()).await, StatusCode::SERVICE_UNAVAILABLE);
    for (path, client) in [("/oauth2/introspect", "gateway"), ("/oauth2/revoke", "billing")] {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic_auth(client, SECRET))
            .body(Body::from(format!("token={revoked}")))
            .unwrap();
        assert_eq!(send(request).await, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
}

#[tokio::test]
async fn rfc7009_revokes_a_clients_own_tokens_and_nothing_else() {
    let h = setup().await;
    let token = service_token(&h, "billing").await;
    let other = service_token(&h, "billing").await;
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::OK);

    // Another client may not revoke billing's token: refused, and the token keeps working.
    let (status, reply, _) = post(&h, "/oauth2/revoke", &format!("token={token}"), Some(("multi", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::OK);
    // Bad client credentials, a missing token, the wrong content type.
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={token}"), Some(("billing", "wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply, _) =
        post(&h, "/oauth2/revoke", "token_type_hint=access_token", Some(("billing", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::OK, "refused requests change nothing");

    let (status, _, headers) =
        post(&h, "/oauth2/revoke", &format!("token={token}&token_type_hint=refresh_token"), Some(("billing", SECRET)))
            .await;
    assert_eq!(status, StatusCode::OK, "a wrong hint does not matter");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::UNAUTHORIZED);
    let (_, introspected, _) =
        post(&h, "/oauth2/introspect", &format!("token={token}"), Some(("gateway", SECRET))).await;
    assert_eq!(introspected, serde_json::json!({"active": false}));
    assert_eq!(verify(&h, &other, "/ledger/1").await.0, StatusCode::OK, "only that token, by its jti");
    // Revoking again, or revoking garbage, is a quiet 200 (RFC 7009 §2.2).
    for token in [token.as_str(), "garbage", "a.b.c"] {
        let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={token}"), Some(("billing", SECRET))).await;
        assert_eq!(status, StatusCode::OK, "{token}");
    }
    let log = h.state.store().revocations_after(&LogCursor::default(), 0, 100).await.unwrap();
    let entry = log.iter().find(|e| matches!(e.revocation, tessera_store::Revocation::Token { .. })).unwrap();
    assert_eq!((entry.provenance.actor.as_str(), entry.provenance.reason.as_str()), ("client:billing", "rfc7009"));
}

#[tokio::test]
async fn rfc7009_revoking_a_refresh_token_ends_the_session_and_its_access_tokens() {
    let h = setup().await;
    let request = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"username": "bob", "password": common::PASSWORD, "refresh_token_delivery": "body"})
                .to_string(),
        ))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let login: Value = serde_json::from_slice(&bytes).unwrap();
    let (access, refresh) = (login["access_token"].as_str().unwrap(), login["refresh_token"].as_str().unwrap());
    assert_eq!(verify(&h, access, "/").await.0, StatusCode::OK);
    // A confidential client cannot revoke the first-party session's token; the public client names itself.
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={refresh}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={refresh}&client_id=tessera"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify(&h, access, "/").await.0, StatusCode::UNAUTHORIZED, "the session's access token died too");
    let (status, reply, _) =
        post(&h, "/oauth2/token", &format!("grant_type=refresh_token&refresh_token={refresh}"), None).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // Without any client identification the request is refused.
    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={refresh}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_revocations_by_jti_sid_and_sub_reach_derived_tokens_and_are_kept_for_audit() {
    let h = setup().await;
    // By jti: the token and the token derived from it by exchange; a sibling token of the session lives on.
    let subject = admin_session(&h, "read").await;
    let (_, body, _) = post(
        &h,
        "/oauth2/token",
        &format!("{EXCHANGE}&subject_token={subject}&audience=ledger"),
        Some(("exchanger", SECRET)),
    )
    .await;
    let derived = body["access_token"].as_str().unwrap().to_owned();
    let jti = claims_of(&subject)["jti"].as_str().unwrap().to_owned();
    let (status, reply) = admin_revoke(&h, serde_json::json!({"jti": jti, "reason": "leaked in a log"}), ADMIN).await;
    assert_eq!((status, reply["changed"].as_bool()), (StatusCode::OK, Some(true)), "{reply}");
    assert_eq!(verify(&h, &subject, "/").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, &derived, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "derived tokens die with it");

    // By sid.
    let second = admin_session(&h, "read").await;
    let sid = claims_of(&second)["sid"].as_str().unwrap().to_owned();
    assert_eq!(admin_revoke(&h, serde_json::json!({"sid": sid}), ADMIN).await.0, StatusCode::OK);
    assert_eq!(verify(&h, &second, "/").await.0, StatusCode::UNAUTHORIZED);
    let (_, again) = admin_revoke(&h, serde_json::json!({"sid": sid}), ADMIN).await;
    assert_eq!(again["changed"].as_bool(), Some(false), "revoking twice changes nothing");

    // By sub, up to an instant: tokens issued before it die, tokens issued after it live.
    let early = admin_session(&h, "read").await;
    h.clock.advance_ms(5_000);
    let late = admin_session(&h, "read").await;
    let instant = claims_of(&early)["iat"].as_i64().unwrap() + 1;
    let (status, _) = admin_revoke(&h, serde_json::json!({"sub": "carol", "before": instant}), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify(&h, &early, "/").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, &late, "/").await.0, StatusCode::OK);

    // Bad requests are refused and change nothing.
    let before = h.state.store().revocations_after(&LogCursor::default(), 0, 1_000).await.unwrap().len();
    let future = h.clock.now_ms() / 1000 + 60;
    for body in [
        serde_json::json!({}),
        serde_json::json!({"jti": "a", "sid": "b"}),
        serde_json::json!({"sub": "carol", "before": future}),
        serde_json::json!({"jti": "a", "before": 1}),
        serde_json::json!({"jti": ""}),
        serde_json::json!({"jti": "a", "unknown": 1}),
        serde_json::json!({"jti": 5}),
    ] {
        let (status, reply) = admin_revoke(&h, body.clone(), ADMIN).await;
        // 400 for a request that names the wrong things, 422 for one that does not parse as a revocation.
        assert!(matches!(status.as_u16(), 400 | 422), "{body} -> {status} {reply}");
        assert_eq!(reply["error"], "invalid_request");
    }
    assert_eq!(admin_revoke(&h, serde_json::json!({"sub": "carol"}), "wrong").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&h, &late, "/").await.0, StatusCode::OK);
    let log = h.state.store().revocations_after(&LogCursor::default(), 0, 1_000).await.unwrap();
    assert_eq!(log.len(), before, "nothing was recorded");
    let by_jti = log.iter().find(|e| matches!(&e.revocation, Revocation::TokenById { jti: j, .. } if *j == jti));
    let provenance = &by_jti.unwrap().provenance;
    assert_eq!((provenance.actor.as_str(), provenance.reason.as_str()), ("admin", "leaked in a log"));
}
