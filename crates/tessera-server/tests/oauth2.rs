//! Service clients at the token endpoint: client authentication (secrets, `private_key_jwt`), the
//! client-credentials grant, introspection, the refresh grant of confidential clients, and /verify route rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::clients::{admin_session, basic_auth, bearer_request, post, service_token, setup, verify, ADMIN, SECRET};
use common::{claims_of, register_client};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tessera_server::clock::Clock as _;
use tessera_store::Client;
use tower::ServiceExt as _;

#[tokio::test]
async fn client_credentials_issues_a_short_lived_token_for_one_audience() {
    let h = setup().await;
    let (status, body, headers) =
        post(&h, "/oauth2/token", "grant_type=client_credentials&scope=read", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!((body["expires_in"].as_i64(), body["scope"].as_str()), (Some(60), Some("read")));
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str(), claims["client_id"].as_str()),
        (Some("billing"), Some("ledger"), Some("billing"))
    );
    assert!(claims["jti"].is_string());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
    assert!(body.get("refresh_token").is_none());

    // client_secret_post works the same; RFC 8707 resource picks the audience.
    let (status, body, _) = post(
        &h,
        "/oauth2/token",
        &format!("grant_type=client_credentials&client_id=multi&client_secret={SECRET}&resource=reports"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["aud"], "reports");
}

#[tokio::test]
async fn nothing_is_minted_beyond_policy() {
    let h = setup().await;
    let cases = [
        (
            "grant_type=client_credentials&scope=admin",
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&audience=payroll",
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        ("grant_type=client_credentials", Some(("multi", SECRET)), StatusCode::BAD_REQUEST, "invalid_target"),
        (
            "grant_type=client_credentials&resource=ledger&audience=ledger",
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("grant_type=client_credentials", Some(("gateway", SECRET)), StatusCode::BAD_REQUEST, "unauthorized_client"),
        ("grant_type=client_credentials", Some(("billing", "wrong")), StatusCode::UNAUTHORIZED, "invalid_client"),
        ("grant_type=client_credentials", Some(("nobody", "wrong")), StatusCode::UNAUTHORIZED, "invalid_client"),
        ("grant_type=client_credentials", None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            &format!("grant_type=client_credentials&client_id=billing&client_secret={SECRET}"),
            Some(("billing", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, auth, status, error) in cases {
        let (got, reply, headers) = post(&h, "/oauth2/token", body, auth).await;
        assert_eq!((got, reply["error"].as_str().unwrap()), (status, error), "{body} {auth:?}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="tessera""#);
        }
    }
    h.state.store().set_client_disabled("billing", true, h.state.clock().now_ms()).await.unwrap();
    tessera_server::sync(&h.state).await.unwrap(); // what every node does each reload interval
    let (status, _, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a disabled client cannot authenticate");
}

#[tokio::test]
async fn introspection_answers_active_only_for_valid_tokens_meant_for_the_caller() {
    let h = setup().await;
    let (_, body, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    let service_token = body["access_token"].as_str().unwrap().to_owned();

    let (status, active, _) =
        post(&h, "/oauth2/introspect", &format!("token={service_token}"), Some(("gateway", SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (active["active"].as_bool(), active["sub"].as_str(), active["aud"].as_str()),
        (Some(true), Some("billing"), Some("ledger"))
    );
    // A user's token (audience "tessera") is active for a client holding that audience, inactive for others.
    let login = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({"username": "alice", "password": common::PASSWORD}).to_string()))
        .unwrap();
    let login = h.app.clone().oneshot(login).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let user_token = serde_json::from_slice::<Value>(&login).unwrap()["access_token"].as_str().unwrap().to_owned();
    let (_, for_gateway, _) =
        post(&h, "/oauth2/introspect", &format!("token={user_token}"), Some(("gateway", SECRET))).await;
    assert_eq!((for_gateway["active"].as_bool(), for_gateway["sub"].as_str()), (Some(true), Some("alice")));
    let (_, for_billing, _) =
        post(&h, "/oauth2/introspect", &format!("token={user_token}"), Some(("billing", SECRET))).await;
    assert_eq!(for_billing, serde_json::json!({"active": false}), "not meant for billing's audiences");
    for token in ["garbage", "a.b.c", ""] {
        let (status, reply, _) =
            post(&h, "/oauth2/introspect", &format!("token={token}"), Some(("gateway", SECRET))).await;
        assert_eq!((status, reply), (StatusCode::OK, serde_json::json!({"active": false})), "{token:?}");
    }
    let (status, _, _) = post(&h, "/oauth2/introspect", &format!("token={service_token}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An expired token is inactive, with no further detail.
    h.clock.advance_ms(120_000);
    let (_, expired, _) =
        post(&h, "/oauth2/introspect", &format!("token={service_token}"), Some(("gateway", SECRET))).await;
    assert_eq!(expired, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn verify_applies_route_rules_and_passes_a_request_id() {
    let h = setup().await;
    let user = admin_session(&h, "read").await;
    let (status, headers) = verify(&h, &user, "/reports?x=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((headers["x-user-id"].to_str().unwrap(), headers["x-user-roles"].to_str().unwrap()), ("carol", "staff"));
    assert_eq!((headers["x-scope"].to_str().unwrap(), headers["x-request-id"].to_str().unwrap()), ("read", "req-42"));

    let (status, headers) = verify(&h, &user, "/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Bearer error="insufficient_scope""#);
    let admin = admin_session(&h, "read admin").await;
    assert_eq!(verify(&h, &admin, "/admin/users").await.0, StatusCode::OK);
    // A user token (audience "tessera") is refused where the route wants the ledger audience.
    assert_eq!(verify(&h, &user, "/ledger/entries").await.0, StatusCode::UNAUTHORIZED);
    let (_, body, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    assert_eq!(verify(&h, body["access_token"].as_str().unwrap(), "/ledger/entries").await.0, StatusCode::OK);
}

#[tokio::test]
async fn envoy_ext_authz_sends_the_original_method_and_path_behind_the_prefix() {
    let h = setup().await;
    let user = admin_session(&h, "read").await;
    let admin = admin_session(&h, "read admin").await;
    let check = |token: String, method: &'static str, path: &'static str| {
        let app = h.app.clone();
        async move {
            let response = app.oneshot(bearer_request(method, path, &token)).await.unwrap();
            (response.status(), response.headers().get("x-user-id").map(|v| v.to_str().unwrap().to_owned()))
        }
    };
    assert_eq!(check(user.clone(), "POST", "/verify/orders/7?x=1").await, (StatusCode::OK, Some("carol".into())));
    assert_eq!(
        check(user.clone(), "DELETE", "/verify/admin/users/3").await.0,
        StatusCode::FORBIDDEN,
        "the /admin rule applies"
    );
    assert_eq!(check(admin, "DELETE", "/verify/admin/users/3").await.0, StatusCode::OK);
    assert_eq!(check("garbage".into(), "GET", "/verify/orders").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotating_a_client_secret_cuts_off_the_old_secret_and_its_tokens() {
    let h = setup().await;
    let token = service_token(&h, "billing").await;
    h.clock.advance_ms(2_000);
    let rotated = "a-new-secret-with-256-bits-of-entropy-0123456789";
    let hash = tessera_server::client_secret_hash(rotated);
    h.state.store().set_client_secret("billing", hash, h.clock.now_ms()).await.unwrap();
    tessera_server::sync(&h.state).await.unwrap(); // what every node does each reload interval
    let (status, _, _) = post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old secret is refused");
    assert_eq!(verify(&h, &token, "/ledger/1").await.0, StatusCode::UNAUTHORIZED, "and its tokens are dead");
    h.clock.advance_ms(1_000);
    let (status, body, _) =
        post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("billing", rotated))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify(&h, body["access_token"].as_str().unwrap(), "/ledger/1").await.0, StatusCode::OK);
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `claims` with `name` set to `value`.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn assertion(key: &tessera_jose::SigningKey, claims: Value) -> String {
    tessera_jose::encode_jwt(key, None, &claims).unwrap()
}

#[tokio::test]
async fn private_key_jwt_accepts_each_fresh_assertion_once() {
    let h = setup().await;
    let key =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, tessera_jose::RsaBits::Bits2048).unwrap();
    let stranger =
        tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, tessera_jose::RsaBits::Bits2048).unwrap();
    let jwks = serde_json::json!({"keys": [key.verifying_key().public_jwk().unwrap()]}).to_string();
    h.state
        .store()
        .create_client(Client {
            client_id: "signer".into(),
            secret_hash: vec![],
            scopes: vec!["read".into()],
            audiences: vec!["ledger".into()],
            grants: vec!["client_credentials".into()],
            disabled: false,
            created_at: h.clock.now_ms(),
            jwks: Some(jwks),
            code_flow: None,
        })
        .await
        .unwrap();
    tessera_server::sync(&h.state).await.unwrap();
    let now = h.clock.now_ms() / 1000;
    let issuer = h.state.settings().issuer.clone();
    let claims = |jti: &str| serde_json::json!({"iss": "signer", "sub": "signer", "aud": format!("{issuer}/oauth2/token"), "exp": now + 60, "iat": now, "jti": jti});
    let grant = |assertion: &str, extra: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}{extra}"
        )
    };

    let good = assertion(&key, claims("a-1"));
    let (status, body, _) = post(&h, "/oauth2/token", &grant(&good, "&client_id=signer"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["client_id"], "signer");
    let (status, _, _) = post(&h, "/oauth2/token", &grant(&good, ""), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a replayed assertion is refused");
    let with_issuer_audience = assertion(&key, with(claims("a-2"), "aud", serde_json::json!(issuer)));
    assert_eq!(post(&h, "/oauth2/token", &grant(&with_issuer_audience, ""), None).await.0, StatusCode::OK);

    let mut refused = vec![
        ("signed by another key", assertion(&stranger, claims("b-1"))),
        ("wrong audience", assertion(&key, with(claims("b-2"), "aud", serde_json::json!("https://elsewhere")))),
        ("expired", assertion(&key, with(claims("b-3"), "exp", serde_json::json!(now - 120)))),
        ("too long-lived", assertion(&key, with(claims("b-4"), "exp", serde_json::json!(now + 3_600)))),
        ("no exp", assertion(&key, serde_json::json!({"iss": "signer", "sub": "signer", "aud": issuer, "jti": "b-5"}))),
        (
            "no jti",
            assertion(&key, serde_json::json!({"iss": "signer", "sub": "signer", "aud": issuer, "exp": now + 60})),
        ),
        ("sub is not the client", assertion(&key, with(claims("b-6"), "sub", serde_json::json!("someone")))),
        (
            "unknown client",
            assertion(
                &key,
                with(with(claims("b-7"), "iss", serde_json::json!("nobody")), "sub", serde_json::json!("nobody")),
            ),
        ),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    let header = tessera_jose::base64url::encode(br#"{"alg":"none"}"#);
    let payload = tessera_jose::base64url::encode(claims("b-8").to_string().as_bytes());
    refused.push(("alg none", format!("{header}.{payload}.")));
    for (why, assertion) in refused {
        let (status, reply, _) = post(&h, "/oauth2/token", &grant(&assertion, ""), None).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{why}");
    }
    let fresh = assertion(&key, claims("c-1"));
    let (status, _, _) = post(&h, "/oauth2/token", &grant(&fresh, "&client_id=billing"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "client_id must name the assertion's client");
    let (status, _, _) = post(&h, "/oauth2/token", &grant(&fresh, &format!("&client_secret={SECRET}")), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two methods at once");
    let other_type = format!("grant_type=client_credentials&client_assertion_type=urn:x&client_assertion={fresh}");
    assert_eq!(post(&h, "/oauth2/token", &other_type, None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&h, "/oauth2/token", &grant(&fresh, ""), None).await.0, StatusCode::OK, "c-1 was never used");
}

#[tokio::test]
async fn a_client_added_to_the_store_authenticates_before_the_next_sync() {
    let h = setup().await;
    register_client(&h, "newcomer", SECRET, &["read"], &["ledger"], &["client_credentials"]).await;
    // No sync has run since: the unknown id makes the directory reload once.
    let (status, body, _) =
        post(&h, "/oauth2/token", "grant_type=client_credentials", Some(("newcomer", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Unknown ids arriving together share one reload, and are still refused.
    let unknown = |id: &'static str| post(&h, "/oauth2/token", "grant_type=client_credentials", Some((id, SECRET)));
    let answers = tokio::join!(unknown("nobody"), unknown("no-one"), unknown("none"));
    for (status, reply, _) in [answers.0, answers.1, answers.2] {
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    }
}

/// The token endpoint's answer to a refresh grant of `refresh_token`, with `extra` form parameters.
async fn refresh_with(
    h: &common::Harness,
    refresh_token: &str,
    extra: &str,
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    post(h, "/oauth2/token", &format!("grant_type=refresh_token&refresh_token={refresh_token}{extra}"), basic).await
}

/// A session minted through the admin API for `client_id` (`None`: the browser login's client): its refresh
/// token.
async fn session_of(h: &common::Harness, client_id: Option<&str>) -> String {
    let mut body = serde_json::json!({"sub": "carol", "scope": "read"});
    if let Some(client_id) = client_id {
        body["client_id"] = client_id.into();
    }
    let request = Request::post("/admin/v1/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let bytes = h.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&bytes).unwrap()["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_confidential_clients_session_is_refreshed_only_by_that_client_authenticated() {
    let h = setup().await;
    let token = session_of(&h, Some("billing")).await;
    // No credential, a bare client_id, a wrong secret: invalid_client (RFC 6749 §5.2), and nothing consumed.
    for (extra, basic) in [
        ("", None),
        ("&client_id=billing", None),
        ("", Some(("billing", "wrong"))),
        ("&client_id=billing&client_secret=wrong", None),
    ] {
        let (status, reply, headers) = refresh_with(&h, &token, extra, basic).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{extra}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="tessera""#);
    }
    // Another client, authenticated: the token is not its own.
    let (status, reply, _) = refresh_with(&h, &token, "", Some(("multi", SECRET))).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // The client itself, by either method: the refused attempts consumed nothing.
    let (status, reply, _) = refresh_with(&h, &token, "", Some(("billing", SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let next = reply["refresh_token"].as_str().unwrap().to_owned();
    let (status, reply, _) = refresh_with(&h, &next, &format!("&client_id=billing&client_secret={SECRET}"), None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // Public clients stay as they were: the browser login's, and a client id nobody registered.
    for client_id in [None, Some("mobile-app")] {
        let token = session_of(&h, client_id).await;
        let (status, reply, _) = refresh_with(&h, &token, "", None).await;
        assert_eq!(status, StatusCode::OK, "{client_id:?}: {reply}");
        let next = reply["refresh_token"].as_str().unwrap().to_owned();
        // Naming another client, or authenticating as one, is still refused.
        let (status, _, _) = refresh_with(&h, &next, "&client_id=billing", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id:?}");
        let (status, _, _) = refresh_with(&h, &next, "", Some(("billing", SECRET))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id:?}");
    }
}

#[tokio::test]
async fn a_confidential_clients_session_needs_authentication_on_a_node_that_never_saw_it() {
    let h = setup().await;
    let token = session_of(&h, Some("billing")).await;
    // A second node on the same store has not seen the session start: it reads the session's client.
    let other = common::another_node(&h, tessera_server::Settings::default()).await;
    let refresh = |basic: Option<&str>| {
        let mut request =
            Request::post("/oauth2/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(secret) = basic {
            request = request.header(header::AUTHORIZATION, basic_auth("billing", secret));
        }
        let body = format!("grant_type=refresh_token&refresh_token={token}");
        other.clone().oneshot(request.body(Body::from(body)).unwrap())
    };
    assert_eq!(refresh(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(Some("wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(Some(SECRET)).await.unwrap().status(), StatusCode::OK);
}
