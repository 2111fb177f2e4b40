//! Token exchange (RFC 8693): a subject token narrowed for one audience, chains of exchanges nesting `act`, actor
//! tokens, and derived tokens kept out of the user's own session routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::claims_of;
use common::clients::{
    admin_revoke, admin_session, bearer_request, exchanged_for_the_ledger, post, service_token, setup, verify, ADMIN,
    EXCHANGE, SECRET,
};
use tower::ServiceExt as _;

#[tokio::test]
async fn token_exchange_narrows_the_subject_token_for_one_audience() {
    let h = setup().await;
    let subject = admin_session(&h, "read write").await;
    let body = exchanged_for_the_ledger(&h, &subject).await;
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let derived = body["access_token"].as_str().unwrap().to_owned();
    let (claims, original) = (claims_of(&derived), claims_of(&subject));
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str(), claims["scope"].as_str()),
        (Some("carol"), Some("ledger"), Some("read"))
    );
    assert_eq!(claims["act"], serde_json::json!({"sub": "exchanger"}));
    assert_eq!((&claims["sid"], &claims["orig_jti"]), (&original["sid"], &original["jti"]));
    assert!(claims["exp"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap() + 300);
    assert!(claims["exp"].as_i64().unwrap() <= original["exp"].as_i64().unwrap());

    let refused = [
        (format!("{EXCHANGE}&subject_token={subject}&audience=ledger&scope=write"), ("exchanger", SECRET), "invalid_scope"),
        (format!("{EXCHANGE}&subject_token={subject}&audience=payroll"), ("exchanger", SECRET), "invalid_target"),
        (format!("{EXCHANGE}&subject_token={subject}"), ("exchanger", SECRET), "invalid_target"),
        (format!("{EXCHANGE}&subject_token={subject}&audience=ledger"), ("billing", SECRET), "unauthorized_client"),
        (format!("{EXCHANGE}&subject_token=forged.token.here&audience=ledger"), ("exchanger", SECRET), "invalid_grant"),
        (format!("grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token={subject}&subject_token_type=urn:ietf:params:oauth:token-type:jwt&audience=ledger"), ("exchanger", SECRET), "invalid_request"),
    ];
    for (body, auth, error) in refused {
        let (status, reply, _) = post(&h, "/oauth2/token", &body, Some(auth)).await;
        assert_eq!((status, reply["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, error), "{body}");
    }

    // Revoking the user's session kills the derived token too (it carries the session's sid).
    assert_eq!(verify(&h, &derived, "/ledger/1").await.0, StatusCode::OK);
    let logout = Request::post("/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {subject}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.app.clone().oneshot(logout).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(verify(&h, &derived, "/ledger/1").await.0, StatusCode::UNAUTHORIZED);
}

/// A user-session access token as this server signs them, with `act` added: a service acting for the user.
fn acting_for_the_user(h: &common::Harness, session_token: &str) -> String {
    let session = claims_of(session_token);
    let text = |name: &str| session[name].as_str().map(str::to_owned);
    let mut extra = serde_json::Map::new();
    extra.insert("act".into(), serde_json::json!({"sub": "exchanger"}));
    let claims = tessera_jose::Claims {
        iss: text("iss"),
        sub: text("sub"),
        aud: text("aud").map(tessera_jose::Audience::One),
        exp: session["exp"].as_i64(),
        iat: session["iat"].as_i64(),
        jti: Some("acting-1".into()),
        client_id: Some("exchanger".into()),
        scope: None,
        sid: text("sid"),
        nbf: None,
        extra,
    };
    tessera_jose::encode_jwt(&h.state.keys().signing_key(), Some(tessera_jose::ACCESS_TOKEN_TYP), &claims).unwrap()
}

#[tokio::test]
async fn session_routes_take_only_the_users_own_session_tokens() {
    let h = setup().await;
    let subject = admin_session(&h, "read write").await;
    let body = exchanged_for_the_ledger(&h, &subject).await;
    let exchanged = body["access_token"].as_str().unwrap().to_owned();
    let acting = acting_for_the_user(&h, &subject);
    let service = service_token(&h, "billing").await;
    let send = |method: &str, path: &str, token: &str| {
        let (app, request) = (h.app.clone(), bearer_request(method, path, token));
        async move { app.oneshot(request).await.unwrap().status() }
    };
    // Each is a valid token: gateways accept it.
    assert_eq!(verify(&h, &exchanged, "/ledger/1").await.0, StatusCode::OK);
    assert_eq!(verify(&h, &acting, "/orders/1").await.0, StatusCode::OK);
    assert_eq!(verify(&h, &service, "/ledger/1").await.0, StatusCode::OK);
    for (token, what) in [(&exchanged, "exchanged"), (&acting, "acting for the user"), (&service, "service")] {
        for (method, path) in [("GET", "/auth/sessions"), ("POST", "/auth/logout-all"), ("POST", "/auth/logout")] {
            assert_eq!(send(method, path, token).await, StatusCode::UNAUTHORIZED, "{what} token on {method} {path}");
        }
        let sid = claims_of(&subject)["sid"].as_str().unwrap().to_owned();
        assert_eq!(send("DELETE", &format!("/auth/sessions/{sid}"), token).await, StatusCode::UNAUTHORIZED, "{what}");
    }
    // None of it touched the user's session.
    assert_eq!(verify(&h, &subject, "/orders/1").await.0, StatusCode::OK);
    assert_eq!(send("GET", "/auth/sessions", &subject).await, StatusCode::OK);
}

#[tokio::test]
async fn exchange_refuses_subject_tokens_not_meant_for_the_client() {
    let h = setup().await;
    // A service token billing holds for the ledger is neither issued to the exchanger nor meant for it.
    let billing = service_token(&h, "billing").await;
    let exchange = format!("{EXCHANGE}&subject_token={billing}&audience=ledger");
    let (status, reply, _) = post(&h, "/oauth2/token", &exchange, Some(("exchanger", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reply}");
    // A user's token (audience "tessera") is not meant for the ledger service, whose audience is "ledger".
    let user = admin_session(&h, "read").await;
    let exchange = format!("{EXCHANGE}&subject_token={user}&audience=reports");
    let (status, reply, _) = post(&h, "/oauth2/token", &exchange, Some(("ledger-service", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reply}");
}

#[tokio::test]
async fn a_chain_of_exchanges_nests_act_and_dies_with_the_users_original_token() {
    let h = setup().await;
    let original = admin_session(&h, "read write").await;
    let first = exchanged_for_the_ledger(&h, &original).await["access_token"].as_str().unwrap().to_owned();
    // The ledger service received `first` (audience "ledger") and exchanges it for reports.
    let exchange = format!("{EXCHANGE}&subject_token={first}&audience=reports");
    let (status, body, _) = post(&h, "/oauth2/token", &exchange, Some(("ledger-service", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["access_token"].as_str().unwrap().to_owned();
    let (claims, original_claims) = (claims_of(&second), claims_of(&original));
    assert_eq!(claims["act"], serde_json::json!({"sub": "ledger-service", "act": {"sub": "exchanger"}}));
    assert_eq!(
        (&claims["sub"], &claims["aud"], &claims["scope"]),
        (&original_claims["sub"], &"reports".into(), &"read".into())
    );
    assert_eq!((&claims["sid"], &claims["orig_jti"]), (&original_claims["sid"], &original_claims["jti"]));

    let introspect = || async {
        let (_, reply, _) = post(&h, "/oauth2/introspect", &format!("token={second}"), Some(("multi", SECRET))).await;
        reply["active"].as_bool()
    };
    assert_eq!(verify(&h, &second, "/reports/1").await.0, StatusCode::OK);
    assert_eq!(introspect().await, Some(true));
    // Revoking the user's access token (by its jti alone, not the session) ends the second level too.
    let jti = original_claims["jti"].as_str().unwrap();
    assert_eq!(admin_revoke(&h, serde_json::json!({"jti": jti}), ADMIN).await.0, StatusCode::OK);
    assert_eq!(verify(&h, &second, "/reports/1").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect().await, Some(false));
}

/// RFC 8693 §4.1: with an `actor_token`, the derived token's `act` names the actor, with the calling client
/// nested inside. The actor token must be a live access token of this server, given with its type.
#[tokio::test]
async fn an_actor_token_is_named_in_act_with_the_calling_client_nested_and_must_be_valid() {
    let h = setup().await;
    let subject = admin_session(&h, "read").await;
    let actor = service_token(&h, "billing").await;
    const ACTOR_TYPE: &str = "actor_token_type=urn:ietf:params:oauth:token-type:access_token";
    let exchange = |actor: &str, actor_type: &str| {
        format!("{EXCHANGE}&subject_token={subject}&audience=ledger&actor_token={actor}{actor_type}")
    };
    let (status, body, _) =
        post(&h, "/oauth2/token", &exchange(&actor, &format!("&{ACTOR_TYPE}")), Some(("exchanger", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["act"], serde_json::json!({"sub": "billing", "act": {"sub": "exchanger"}}));
    assert_eq!(claims["sub"], claims_of(&subject)["sub"], "the subject stays the subject");

    let (status, _, _) = post(&h, "/oauth2/revoke", &format!("token={actor}"), Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    let jwt_type = "&actor_token_type=urn:ietf:params:oauth:token-type:jwt";
    for (body, error) in [
        (exchange(&service_token(&h, "billing").await, ""), "invalid_request"),
        (exchange(&service_token(&h, "billing").await, jwt_type), "invalid_request"),
        (exchange("forged.token.here", &format!("&{ACTOR_TYPE}")), "invalid_grant"),
        (exchange(&actor, &format!("&{ACTOR_TYPE}")), "invalid_grant"),
    ] {
        let (status, reply, _) = post(&h, "/oauth2/token", &body, Some(("exchanger", SECRET))).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{body}: {reply}");
    }
}
