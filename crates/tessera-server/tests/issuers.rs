//! Tokens of a trusted external issuer: its JWKS fetched in the background, refetched on an unknown kid at most
//! once per 30 s, and the last good key set kept when the issuer serves errors or garbage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_jose::{encode_jwt, Algorithm, Audience, Claims, KeySet, RsaBits, SigningKey};
use tessera_server::clock::Clock as _;
use tessera_server::{Settings, TrustedIssuer};
use tower::ServiceExt as _;

const IDP: &str = "https://idp.test";

/// What the fake issuer serves at /jwks.json: status and body, changeable by the test; counts fetches.
struct Idp {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
}

fn idp() -> Idp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let answer = Arc::new(Mutex::new((200u16, String::from(r#"{"keys":[]}"#))));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counter) = (Arc::clone(&answer), Arc::clone(&fetches));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = served.lock().unwrap().clone();
            let _ = write!(stream, "HTTP/1.1 {status} X\r\ncache-control: max-age=600\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    Idp { url, answer, fetches }
}

fn serve_keys(idp: &Idp, keys: &[&SigningKey]) {
    let set = KeySet::from_keys(keys.iter().map(|k| k.verifying_key().clone())).unwrap();
    *idp.answer.lock().unwrap() = (200, serde_json::to_string(&set.to_public_jwks()).unwrap());
}

async fn verify(h: &common::Harness, token: &str) -> StatusCode {
    let request =
        Request::get("/verify").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap();
    h.app.clone().oneshot(request).await.unwrap().status()
}

async fn eventually_ok(h: &common::Harness, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while verify(h, token).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "the token never verified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a counter (with its labels, as Prometheus writes them), 0 before it is first counted.
fn counter(metrics: &PrometheusHandle, series: &str) -> u64 {
    let rendered = metrics.render();
    let value = rendered.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
    value.map_or(0, |value| value.parse().unwrap())
}

const FETCH_FAILURES: &str = "tessera_external_jwks_failures_total";

/// The tests here count refusals with process-wide counters: where they share a process (`cargo test`), they take
/// turns, so that one test's refusals are not counted as another's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until the background task has finished with the key set it fetched and refused it: the failure is counted
/// only after the document was read and judged.
async fn refused_sets_reach(metrics: &PrometheusHandle, failures: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(metrics, FETCH_FAILURES) < failures {
        assert!(Instant::now() < deadline, "the refetched key set was never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counter(metrics, FETCH_FAILURES), failures, "one fetch, one verdict");
}

/// Claims of an access token of the trusted issuer, complete: any refusal is for what a test changes.
fn external_claims(key: &SigningKey, now: i64) -> Claims {
    Claims {
        iss: Some(IDP.into()),
        sub: Some("ext-user".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(now + 600),
        iat: Some(now),
        jti: Some(format!("{}-{now}", key.kid())),
        client_id: Some("spa".into()),
        ..Claims::default()
    }
}

fn external_token(key: &SigningKey, now: i64) -> String {
    encode_jwt(key, Some("at+jwt"), &external_claims(key, now)).unwrap()
}

/// A public RSA JWK too weak to trust: its modulus cut to 1024 bits, or its exponent set to 3.
fn weak_rsa_jwk(kid: &str, short_modulus: bool) -> String {
    let key = SigningKey::generate(Algorithm::RS256, RsaBits::Bits2048).unwrap();
    let mut jwk = key.verifying_key().public_jwk().unwrap().clone();
    jwk.kid = Some(kid.into());
    if short_modulus {
        let n = tessera_jose::base64url::decode(jwk.n.as_deref().unwrap()).unwrap();
        jwk.n = Some(tessera_jose::base64url::encode(&n[..128]));
    } else {
        jwk.e = Some(tessera_jose::base64url::encode([3u8]));
    }
    serde_json::to_string(&jwk).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tokens_verify_through_the_issuers_jwks_and_survive_its_failures() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let metrics = tessera_server::metrics_handle().unwrap();
    let idp = idp();
    let first = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
    serve_keys(&idp, &[&first]);
    let settings = Settings {
        trusted_issuers: vec![TrustedIssuer {
            issuer: IDP.into(),
            jwks_url: idp.url.clone(),
            audiences: vec!["api".into()],
            ..TrustedIssuer::default()
        }],
        // The manual clock jumps 31 s at a time here, faster than the background sync can follow it: staleness
        // is not what this test is about.
        revocations_stale_after: Duration::from_secs(3_600),
        ..Settings::default()
    };
    let h = common::harness_with(settings).await;
    let background = tessera_server::start_background(&h.state).await.unwrap();
    // The first fetch has begun (the issuer notes the time of a fetch before sending it): from here on, an unknown
    // kid asks for no other fetch until the clock moves 30 s, so the fetches counted below are all there are.
    let deadline = Instant::now() + Duration::from_secs(5);
    while idp.fetches.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the key set was never fetched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let now = h.clock.now_secs();
    eventually_ok(&h, &external_token(&first, now)).await;

    // Tokens signed by the trusted issuer's own key, complete and current, but naming another audience, or an
    // issuer nobody trusts (so no trusted key set is consulted and this server's own keys do not know the kid),
    // are refused, each for that reason alone.
    let rejections =
        |reason: &str| counter(&metrics, &format!("tessera_token_rejections_total{{reason=\"{reason}\"}}"));
    let refused_for = [("wrong_audience", rejections("wrong_audience")), ("unknown_key", rejections("unknown_key"))];
    let other_audience = Claims { aud: Some(Audience::One("other".into())), ..external_claims(&first, now) };
    let token = encode_jwt(&first, Some("at+jwt"), &other_audience).unwrap();
    assert_eq!(verify(&h, &token).await, StatusCode::UNAUTHORIZED, "another audience");
    let untrusted_issuer = Claims { iss: Some("https://evil.test".into()), ..external_claims(&first, now) };
    let token = encode_jwt(&first, Some("at+jwt"), &untrusted_issuer).unwrap();
    assert_eq!(verify(&h, &token).await, StatusCode::UNAUTHORIZED, "an untrusted issuer");
    for (reason, before) in refused_for {
        assert_eq!(rejections(reason), before + 1, "one refusal for {reason}");
    }

    // The issuer rotates. A token with the new kid triggers a refetch, but only 30 s after the last one: the kid
    // seen within 30 s fetches nothing (the document served until the clock moves holds the old keys only, and
    // any fetch would be counted before the one that brings the new key).
    let second = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    let fetched = idp.fetches.load(Ordering::SeqCst);
    let rotated = external_token(&second, now);
    assert_eq!(verify(&h, &rotated).await, StatusCode::UNAUTHORIZED);
    serve_keys(&idp, &[&first, &second]);
    h.clock.advance_ms(31_000);
    assert_eq!(verify(&h, &rotated).await, StatusCode::UNAUTHORIZED);
    eventually_ok(&h, &rotated).await;
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetched + 1, "exactly one refetch");

    // Errors, symmetric keys, private members, weak keys and huge key sets are refused; the last good set stays in
    // service. A set with one bad key is refused whole: the good key published next to it is not taken either.
    let partner = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    let partner_token = external_token(&partner, now);
    let partner_jwk =
        serde_json::to_value(KeySet::from_keys([partner.verifying_key().clone()]).unwrap().to_public_jwks()).unwrap()
            ["keys"][0]
            .to_string();
    // 32 random-looking bytes: an HMAC key strong enough for the general JWKS parser, so only the rule against
    // symmetric keys in a published set refuses it.
    let shared = b"0123456789abcdef0123456789abcdef";
    let hmac_jwk = format!(
        r#"{{"kty":"oct","kid":"partner-hmac","alg":"HS256","k":"{}"}}"#,
        tessera_jose::base64url::encode(shared)
    );
    let private_jwk = {
        let leaked: serde_json::Value = serde_json::from_str(&partner_jwk).unwrap();
        let mut leaked = leaked.as_object().unwrap().clone();
        leaked.insert("d".into(), "c2VjcmV0".into());
        serde_json::Value::Object(leaked).to_string()
    };
    for (status, body) in [
        (500, "oops".to_owned()),
        (200, format!(r#"{{"keys":[{partner_jwk},{hmac_jwk}]}}"#)),
        (200, format!(r#"{{"keys":[{private_jwk}]}}"#)),
        (200, format!(r#"{{"keys":[{partner_jwk},{}]}}"#, weak_rsa_jwk("partner-rsa-1024", true))),
        (200, format!(r#"{{"keys":[{partner_jwk},{}]}}"#, weak_rsa_jwk("partner-rsa-e3", false))),
        (200, format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(2 * 1024 * 1024))),
    ] {
        *idp.answer.lock().unwrap() = (status, body);
        let failures = counter(&metrics, FETCH_FAILURES);
        h.clock.advance_ms(31_000);
        let unknown = external_token(&SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap(), now);
        assert_eq!(verify(&h, &unknown).await, StatusCode::UNAUTHORIZED);
        refused_sets_reach(&metrics, failures + 1).await;
        assert_eq!(
            verify(&h, &rotated).await,
            StatusCode::OK,
            "the last good key set is kept after a bad fetch ({status})"
        );
        assert_eq!(verify(&h, &partner_token).await, StatusCode::UNAUTHORIZED, "nothing of a refused set is taken");
        // Anyone who read the document could mint the partner's tokens with its HMAC key: refused.
        let minted = hmac_token(shared, "partner-hmac", &external_claims(&partner, now));
        assert_eq!(verify(&h, &minted).await, StatusCode::UNAUTHORIZED, "a published HMAC key verifies nothing");
    }
    background.abort();
}

/// An HS256 access token made with `secret`, as anyone holding a published HMAC key could.
fn hmac_token(secret: &[u8], kid: &str, claims: &Claims) -> String {
    let header = serde_json::json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).to_string();
    let payload = serde_json::to_string(claims).unwrap();
    let input = format!(
        "{}.{}",
        tessera_jose::base64url::encode(header.as_bytes()),
        tessera_jose::base64url::encode(payload.as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let signature = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", tessera_jose::base64url::encode(signature.as_ref()))
}

/// A partner's token for `sub`, with roles and scopes of the partner's naming.
fn partner_token(key: &SigningKey, issuer: &str, sub: &str, now: i64) -> String {
    let mut claims = Claims {
        iss: Some(issuer.into()),
        sub: Some(sub.into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(now + 600),
        iat: Some(now),
        jti: Some(format!("{issuer}-{sub}-{now}")),
        scope: Some("read admin orders.read".into()),
        sid: Some("partner-session".into()),
        client_id: Some("partner-spa".into()),
        ..Claims::default()
    };
    claims.extra.insert("roles".into(), serde_json::json!(["admin", "partner-reader"]));
    encode_jwt(key, Some("at+jwt"), &claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_subjects_are_exchanged_only_where_allowed_and_never_as_a_local_user() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const OTHER: &str = "https://other-idp.test";
    let (allowed_idp, other_idp) = (idp(), idp());
    let key = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
    serve_keys(&allowed_idp, &[&key]);
    serve_keys(&other_idp, &[&key]);
    let settings = Settings {
        trusted_issuers: vec![
            TrustedIssuer {
                issuer: IDP.into(),
                jwks_url: allowed_idp.url.clone(),
                audiences: vec!["api".into()],
                allow_exchange: true,
                role_map: [("partner-reader".to_owned(), "reader".to_owned())].into(),
                scope_map: [("orders.read".to_owned(), "read".to_owned())].into(),
            },
            TrustedIssuer {
                issuer: OTHER.into(),
                jwks_url: other_idp.url.clone(),
                audiences: vec!["api".into()],
                ..TrustedIssuer::default()
            },
        ],
        exchange_rules: vec![tessera_server::ExchangeRule {
            client_id: "api-gateway".into(),
            audience: "ledger".into(),
            scopes: vec!["read".into()],
        }],
        ..Settings::default()
    };
    let h = common::harness_with(settings).await;
    h.state
        .store()
        .create_client(tessera_store::Client {
            client_id: "api-gateway".into(),
            secret_hash: tessera_server::client_secret_hash(SECRET),
            scopes: vec![],
            audiences: vec!["api".into()],
            grants: vec!["token_exchange".into()],
            disabled: false,
            created_at: h.clock.now_ms(),
            jwks: None,
            code_flow: None,
        })
        .await
        .unwrap();
    let background = tessera_server::start_background(&h.state).await.unwrap();
    let now = h.clock.now_secs();
    let (allowed, refused) = (partner_token(&key, IDP, "alice", now), partner_token(&key, OTHER, "alice", now));
    eventually_ok(&h, &allowed).await;
    eventually_ok(&h, &refused).await;

    // An issuer not allowed for exchange: its (valid) tokens are refused as subjects.
    let (status, reply) = exchange(&h, &refused).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reply}");

    // An allowed one: the derived token says where its subject came from, and is not the local alice.
    let (status, reply) = exchange(&h, &allowed).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let derived = reply["access_token"].as_str().unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&tessera_jose::base64url::decode(derived.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["sub"], "https://idp.test#alice");
    assert_eq!(claims["sub_iss"], IDP);
    assert_eq!(claims["roles"], serde_json::json!(["reader"]), "only mapped roles, under their local names");
    assert_eq!(claims["scope"], "read", "only mapped scopes, within the exchange rule");
    assert!(claims.get("sid").is_none(), "the partner's session is none of this server's");
    assert_eq!(claims["orig_jti"], format!("{IDP}-alice-{now}"));
    let request =
        Request::get("/verify").header(header::AUTHORIZATION, format!("Bearer {derived}")).body(Body::empty()).unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(response.headers().get("x-user-id").map(|v| v.to_str().unwrap()), Some("alice"));

    // A trusted issuer's token as the actor: valid, but its `sub` names someone of the partner's, which `act`
    // would present as a local actor. Refused, even from the issuer allowed for exchange; nothing is issued.
    let (status, reply) = exchange_acting(&h, &allowed, Some(&allowed)).await;
    assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reply}");
    assert!(reply["error_description"].as_str().unwrap().contains("actor"), "{reply}");
    assert!(reply.get("access_token").is_none());
    background.abort();
}

const SECRET: &str = "s3cr3t-generated-with-256-bits-of-entropy-xyz";

/// `api-gateway` exchanging `subject` for the ledger audience: (status, body).
async fn exchange(h: &common::Harness, subject: &str) -> (StatusCode, serde_json::Value) {
    exchange_acting(h, subject, None).await
}

/// [`exchange`], with `actor` as the actor token when given.
async fn exchange_acting(h: &common::Harness, subject: &str, actor: Option<&str>) -> (StatusCode, serde_json::Value) {
    let acting = actor.map_or_else(String::new, |actor| {
        format!("&actor_token={actor}&actor_token_type=urn:ietf:params:oauth:token-type:access_token")
    });
    let body = format!(
        "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:access_token&subject_token={subject}&audience=ledger{acting}"
    );
    let credential =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("api-gateway:{SECRET}"));
    let request = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {credential}"))
        .body(Body::from(body))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}
