//! The authorization code flow with PKCE and OpenID Connect, driven through the router as a browser and an
//! application would: the login and consent pages, the code exchange, the ID token, userinfo, refresh, logout,
//! pushed requests — and the refusals a conformance suite checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tessera_jose::{Policy, Profile, Verifier};
use tessera_server::clock::Clock as _;
use tessera_store::model::{CodeFlow, IdTokenSigning};
use tessera_store::Client;
use tower::ServiceExt as _;

use common::{claims_of, form_post, harness, harness_with_keys, Harness, PASSWORD};

const APP: &str = "photos";
const REDIRECT: &str = "https://photos.example/callback";
const AFTER_LOGOUT: &str = "https://photos.example/bye";
const ORIGIN: &str = "http://tessera.test";

/// Registers `client_id` for the code flow, public (no secret) or confidential (secret `s3cret`).
async fn register_app(h: &Harness, client_id: &str, public: bool, flow: CodeFlow) {
    let client = Client {
        client_id: client_id.into(),
        secret_hash: if public { vec![] } else { tessera_server::client_secret_hash("s3cret") },
        scopes: ["openid", "profile", "email", "photos.read"].map(str::to_owned).to_vec(),
        audiences: vec![],
        grants: vec!["authorization_code".into()],
        disabled: false,
        created_at: h.clock.now_ms(),
        jwks: None,
        code_flow: Some(flow),
    };
    h.state.store().create_client(client).await.unwrap();
}

fn flow() -> CodeFlow {
    CodeFlow {
        redirect_uris: vec![REDIRECT.into(), "http://127.0.0.1/native".into()],
        post_logout_redirect_uris: vec![AFTER_LOGOUT.into()],
        require_par: false,
        first_party: false,
        id_token_signing: IdTokenSigning::SigningKey,
    }
}

async fn with_app(public: bool) -> Harness {
    let h = harness().await;
    register_app(&h, APP, public, flow()).await;
    h
}

/// A PKCE pair: the RFC 7636 Appendix B example.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize_uri(extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    format!("/oauth2/authorize?{}", serde_urlencoded::to_string(&pairs).unwrap())
}

/// An answer as a browser sees it.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> Option<url::Url> {
        let location = self.headers.get(header::LOCATION)?.to_str().ok()?;
        url::Url::parse(location).ok()
    }

    /// The query parameters of the redirect.
    fn redirected(&self) -> HashMap<String, String> {
        let location = self.location().unwrap_or_else(|| panic!("{}: not a redirect: {}", self.status, self.text));
        location.query_pairs().into_owned().collect()
    }

    /// The sealed request a page's form carries.
    fn form_request(&self) -> String {
        let start = self.text.find(r#"name="request" value=""#).unwrap_or_else(|| panic!("no form: {}", self.text));
        let rest = &self.text[start + r#"name="request" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// A browser: keeps cookies, sends `Origin` with its posts.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    async fn send(&mut self, h: &Harness, mut request: Request<Body>) -> Page {
        let jar: Vec<String> = self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
        if !jar.is_empty() {
            request.headers_mut().insert(header::COOKIE, jar.join("; ").parse().unwrap());
        }
        request.headers_mut().insert(header::HOST, "tessera.test".parse().unwrap());
        let response = h.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.to_str().unwrap().contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(status.as_u16() < 500, "{status}: {text}");
        Page { status, headers, text }
    }

    async fn get(&mut self, h: &Harness, uri: &str) -> Page {
        self.send(h, Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post(&mut self, h: &Harness, path: &str, form: &[(&str, &str)]) -> Page {
        let mut request = form_post(path, &serde_urlencoded::to_string(form).unwrap());
        request.headers_mut().insert(header::ORIGIN, ORIGIN.parse().unwrap());
        self.send(h, request).await
    }

    /// Logs in on the login page `page` shows.
    async fn log_in(&mut self, h: &Harness, page: &Page, user: &str) -> Page {
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let request = page.form_request();
        self.post(h, "/oauth2/authorize/login", &[("request", &request), ("username", user), ("password", PASSWORD)])
            .await
    }

    /// Allows (or denies) on the consent page `page` shows.
    async fn decide(&mut self, h: &Harness, page: &Page, decision: &str) -> Page {
        assert!(page.text.contains("Allow access?"), "not the consent page: {}", page.text);
        self.post(h, "/oauth2/authorize/consent", &[("request", &page.form_request()), ("decision", decision)]).await
    }

    /// Authorizes with `extra` parameters as `user`, consenting when asked: the code's redirect.
    async fn code_for(&mut self, h: &Harness, user: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut page = self.get(h, &authorize_uri(extra)).await;
        if page.text.contains("Sign in to") {
            page = self.log_in(h, &page, user).await;
        }
        if page.text.contains("Allow access?") {
            page = self.decide(h, &page, "allow").await;
        }
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
        page.redirected()
    }
}

async fn exchange(h: &Harness, code: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", APP),
    ];
    for (name, value) in form {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    let reply = h.send(form_post("/oauth2/token", &serde_urlencoded::to_string(&pairs).unwrap())).await;
    (reply.status, reply.body)
}

/// Checks an ID token as an application does, against the published JWKS: its algorithm and claims.
async fn verify_id_token(h: &Harness, token: &str) -> (String, Value) {
    let policy = Policy {
        profile: Profile::Jws,
        issuer: Some(h.state.settings().issuer.clone()),
        audiences: vec![APP.into()],
        leeway_secs: 0,
        max_token_len: 16 * 1024,
    };
    let keys = published_keys(h).await;
    let verified = Verifier::new(keys, policy).verify(token, h.clock.now_secs()).expect("a valid ID token");
    assert_eq!(verified.header.typ.as_deref(), Some("JWT"), "an ID token is not typed as an access token");
    (verified.header.alg.clone(), claims_of(token))
}

#[tokio::test]
async fn a_public_app_signs_a_user_in_with_pkce_and_gets_an_id_token_userinfo_and_a_refresh() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    let login_page = browser.get(&h, &authorize_uri(&[])).await;
    assert_eq!(login_page.status, StatusCode::OK);
    let policy = login_page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe-inline"), "{policy}");
    // Under `no-referrer` Chromium posts the page's own forms with `Origin: null`, which the origin check refuses.
    assert_eq!(login_page.headers[header::REFERRER_POLICY], "same-origin");
    assert!(!login_page.text.contains("<script"), "the login page needs no script");
    assert!(login_page.text.contains(r#"<label for="password">"#), "labelled fields");

    let consent = browser.log_in(&h, &login_page, "alice").await;
    assert!(consent.text.contains("see your email address"), "{}", consent.text);
    let back = browser.decide(&h, &consent, "allow").await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let location = back.location().unwrap();
    assert_eq!(format!("{}://{}{}", location.scheme(), location.host_str().unwrap(), location.path()), REDIRECT);
    let params = back.redirected();
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], h.state.settings().issuer, "RFC 9207");

    let (status, tokens) = exchange(&h, &params["code"], &[]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(h.verify(access).await, StatusCode::OK);
    assert_eq!(claims_of(access)["client_id"], APP);
    assert_eq!(tokens["scope"], "openid profile email");

    let (alg, id) = verify_id_token(&h, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(alg, "EdDSA", "the signing key's algorithm by default");
    assert_eq!(id["sub"], "alice");
    assert_eq!((id["aud"].as_str(), id["azp"].as_str()), (Some(APP), Some(APP)));
    assert_eq!(id["nonce"], "n-456", "the nonce is echoed");
    assert_eq!(id["auth_time"], h.clock.now_secs());
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["name"], "alice Example");
    // at_hash: the left half of the access token's hash under the signing algorithm's (EdDSA: SHA-512).
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, access.as_bytes());
    assert_eq!(id["at_hash"], tessera_jose::base64url::encode(&digest.as_ref()[..32]));
    let login = h.state.store().session(id["sid"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(login.client_id, "tessera:login", "the ID token's sid is the login's");

    let info = h.with_bearer("GET", "/oauth2/userinfo", access).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!((info.body["sub"].as_str(), info.body["email"].as_str()), (Some("alice"), Some("alice@example.com")));

    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = format!("grant_type=refresh_token&client_id={APP}&refresh_token={refresh}");
    let refreshed = h.send(form_post("/oauth2/token", &form)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_ne!(refreshed.body["refresh_token"].as_str(), Some(refresh), "rotated");

    // Logged in and consented: the next request comes straight back with a code, no page.
    let again = browser.get(&h, &authorize_uri(&[("nonce", "n-2")])).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    assert!(again.redirected().contains_key("code"));
}

#[tokio::test]
async fn a_confidential_app_must_authenticate_to_exchange_its_code() {
    let h = with_app(false).await;
    let code = Browser::default().code_for(&h, "bob", &[]).await["code"].clone();
    let (status, body) = exchange(&h, &code, &[]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "no secret");
    let (status, body) = exchange(&h, &code, &[("client_secret", "s3cret")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_redirect_uri_that_is_not_registered_is_shown_to_the_user_and_never_redirected_to() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    for (name, value) in [
        ("redirect_uri", "https://photos.example/callback/../evil"),
        ("redirect_uri", "https://photos.example/callbackx"),
        ("redirect_uri", "https://photos.example/callback?next=https://evil.example"),
        ("redirect_uri", "https://photos.example.evil.example/callback"),
        ("redirect_uri", "https://evil.example/callback"),
        ("redirect_uri", "https://photos.example@evil.example/callback"),
        ("redirect_uri", "http://127.0.0.1:8080/native/../x"),
        ("redirect_uri", ""),
        ("client_id", "nobody"),
        ("client_id", ""),
    ] {
        let page = browser.get(&h, &authorize_uri(&[(name, value)])).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name}={value}");
        assert!(page.headers.get(header::LOCATION).is_none(), "{name}={value}: redirected");
        assert!(page.text.contains("Sign-in stopped"), "{name}={value}: {}", page.text);
    }
    // A native app's loopback redirect URI matches on any port (RFC 8252 §7.3).
    let page = browser.get(&h, &authorize_uri(&[("redirect_uri", "http://127.0.0.1:53412/native")])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
}

#[tokio::test]
async fn pkce_is_required_and_the_plain_method_is_refused() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    for extra in [
        vec![("code_challenge", ""), ("code_challenge_method", "")],
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge_method", "")],
        vec![("code_challenge", "short")],
        vec![("response_type", "token")],
        vec![("response_type", "code id_token")],
    ] {
        let page = browser.get(&h, &authorize_uri(&extra)).await;
        let params = page.redirected();
        assert!(
            matches!(params["error"].as_str(), "invalid_request" | "unsupported_response_type"),
            "{extra:?}: {params:?}"
        );
        assert_eq!(params["state"], "st-123");
        assert!(!params.contains_key("code"));
    }
}

#[tokio::test]
async fn a_code_is_refused_with_a_wrong_verifier_another_client_or_another_redirect_uri_and_stays_usable() {
    let h = with_app(true).await;
    register_app(&h, "other", true, flow()).await;
    let code = Browser::default().code_for(&h, "alice", &[]).await["code"].clone();
    for (form, why) in [
        (vec![("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj")], "wrong verifier"),
        (vec![("code_verifier", "")], "no verifier"),
        (vec![("client_id", "other")], "another client"),
        (vec![("redirect_uri", "http://127.0.0.1/native")], "another redirect URI"),
        (vec![("code", "AwEAAAAA")], "a forged code"),
    ] {
        let (status, body) = exchange(&h, &code, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
        assert!(matches!(body["error"].as_str(), Some("invalid_grant" | "invalid_request")), "{why}: {body}");
    }
    let (status, body) = exchange(&h, &code, &[]).await;
    assert_eq!(status, StatusCode::OK, "refusals do not spend the code: {body}");
}

#[tokio::test]
async fn a_code_used_twice_revokes_every_token_issued_from_it() {
    let h = with_app(true).await;
    let code = Browser::default().code_for(&h, "alice", &[]).await["code"].clone();
    let (status, tokens) = exchange(&h, &code, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(h.verify(access).await, StatusCode::OK);

    let (status, body) = exchange(&h, &code, &[]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(h.verify(access).await, StatusCode::UNAUTHORIZED, "the first exchange's access token is revoked");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = format!("grant_type=refresh_token&client_id={APP}&refresh_token={refresh}");
    assert_eq!(h.send(form_post("/oauth2/token", &form)).await.status, StatusCode::BAD_REQUEST, "and its refresh");
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let h = with_app(true).await;
    let code = Browser::default().code_for(&h, "alice", &[]).await["code"].clone();
    h.clock.advance_ms(61_000);
    let (status, body) = exchange(&h, &code, &[]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

#[tokio::test]
async fn prompt_none_without_a_login_answers_login_required_and_max_age_forces_a_new_login() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    let params = browser.get(&h, &authorize_uri(&[("prompt", "none")])).await.redirected();
    assert_eq!((params["error"].as_str(), params["state"].as_str()), ("login_required", "st-123"));

    let code = browser.code_for(&h, "alice", &[]).await["code"].clone();
    exchange(&h, &code, &[]).await;
    // Logged in and consented: prompt=none now succeeds.
    assert!(browser.get(&h, &authorize_uri(&[("prompt", "none")])).await.redirected().contains_key("code"));
    h.clock.advance_ms(120_000);
    let page = browser.get(&h, &authorize_uri(&[("max_age", "60")])).await;
    assert!(page.text.contains("Sign in to"), "a login older than max_age asks again: {}", page.status);
    let page = browser.get(&h, &authorize_uri(&[("prompt", "login")])).await;
    assert!(page.text.contains("Sign in to"), "prompt=login asks again");
    let back = browser.log_in(&h, &page, "alice").await;
    let code = back.redirected()["code"].clone();
    let (_, tokens) = exchange(&h, &code, &[]).await;
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["auth_time"], h.clock.now_secs(), "auth_time is the new login's");
}

#[tokio::test]
async fn consent_is_asked_once_can_be_denied_and_is_never_asked_of_a_first_party_app() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    let login = browser.get(&h, &authorize_uri(&[])).await;
    let consent = browser.log_in(&h, &login, "alice").await;
    let denied = browser.decide(&h, &consent, "deny").await.redirected();
    assert_eq!(denied["error"], "access_denied");
    let params = browser.get(&h, &authorize_uri(&[("prompt", "none")])).await.redirected();
    assert_eq!(params["error"], "consent_required");

    register_app(&h, "own", true, CodeFlow { first_party: true, ..flow() }).await;
    let page = browser.get(&h, &authorize_uri(&[("client_id", "own")])).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "a first-party app gets its code at once: {}", page.text);
}

#[tokio::test]
async fn a_login_form_posted_without_its_browser_cookie_or_from_another_site_is_refused() {
    let h = with_app(true).await;
    let mut victim = Browser::default();
    let mut attacker = Browser::default();
    let page = attacker.get(&h, &authorize_uri(&[])).await;
    // The attacker's own form, posted from the victim's browser (which has no form cookie, or another one).
    let request = page.form_request();
    let form = [("request", request.as_str()), ("username", "bob"), ("password", PASSWORD)];
    let posted = victim.post(&h, "/oauth2/authorize/login", &form).await;
    assert_eq!(posted.status, StatusCode::BAD_REQUEST, "{}", posted.text);
    assert!(!victim.cookies.contains_key("__Host-tessera-login"), "no login was set");

    let mut from_elsewhere = form_post("/oauth2/authorize/login", &serde_urlencoded::to_string(form).unwrap());
    from_elsewhere.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    let posted = attacker.send(&h, from_elsewhere).await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);

    let wrong = [("request", request.as_str()), ("username", "bob"), ("password", "wrong password")];
    let posted = attacker.post(&h, "/oauth2/authorize/login", &wrong).await;
    assert_eq!(posted.status, StatusCode::UNAUTHORIZED);
    assert!(posted.text.contains("Wrong username or password."), "{}", posted.text);
    assert!(posted.text.contains(r#"name="request""#), "the form is shown again");
}

#[tokio::test]
async fn logout_with_an_id_token_hint_ends_the_login_and_every_token_of_it() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    let code = browser.code_for(&h, "alice", &[]).await["code"].clone();
    let (_, tokens) = exchange(&h, &code, &[]).await;
    let access = tokens["access_token"].as_str().unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let uri = format!(
        "/oauth2/logout?{}",
        serde_urlencoded::to_string([
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", AFTER_LOGOUT),
            ("state", "bye-1")
        ])
        .unwrap()
    );
    let page = browser.get(&h, &uri).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.redirected()["state"], "bye-1");
    assert!(!browser.cookies.contains_key("__Host-tessera-login"), "the login cookie is cleared");
    assert_eq!(h.verify(access).await, StatusCode::UNAUTHORIZED, "the app's access token ends with the login");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = format!("grant_type=refresh_token&client_id={APP}&refresh_token={refresh}");
    assert_eq!(h.send(form_post("/oauth2/token", &form)).await.status, StatusCode::BAD_REQUEST);
    let page = browser.get(&h, &authorize_uri(&[])).await;
    assert!(page.text.contains("Sign in to"), "logged out");
}

#[tokio::test]
async fn logout_without_a_hint_is_confirmed_first_and_never_redirects_to_an_unregistered_uri() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    let code = browser.code_for(&h, "alice", &[]).await["code"].clone();
    exchange(&h, &code, &[]).await;
    let evil = format!("/oauth2/logout?client_id={APP}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F");
    let page = browser.get(&h, &evil).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(header::LOCATION).is_none());

    let page = browser.get(&h, &format!("/oauth2/logout?client_id={APP}")).await;
    assert!(page.text.contains("Sign out?"), "a bare link only asks: {}", page.text);
    assert!(browser.get(&h, &authorize_uri(&[("prompt", "none")])).await.redirected().contains_key("code"));
    let done = browser.post(&h, "/oauth2/logout/confirm", &[("request", &page.form_request())]).await;
    assert!(done.text.contains("Signed out"), "{}", done.text);
    let params = browser.get(&h, &authorize_uri(&[("prompt", "none")])).await.redirected();
    assert_eq!(params["error"], "login_required");
}

#[tokio::test]
async fn a_client_that_must_push_its_requests_is_refused_without_and_served_with_par() {
    let h = harness().await;
    register_app(&h, APP, false, CodeFlow { require_par: true, ..flow() }).await;
    let mut browser = Browser::default();
    let params = browser.get(&h, &authorize_uri(&[])).await.redirected();
    assert_eq!(params["error"], "invalid_request");

    let query = authorize_uri(&[]);
    let form = query.split_once('?').unwrap().1;
    let mut push = form_post("/oauth2/par", form);
    push.headers_mut().insert(header::AUTHORIZATION, format!("Basic {}", basic(APP, "s3cret")).parse().unwrap());
    let pushed = h.send(push).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.body);
    let request_uri = pushed.body["request_uri"].as_str().unwrap();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let unauthenticated = h.send(form_post("/oauth2/par", form)).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED, "a confidential client authenticates to push");

    let uri = format!(
        "/oauth2/authorize?{}",
        serde_urlencoded::to_string([("client_id", APP), ("request_uri", request_uri)]).unwrap()
    );
    let page = browser.get(&h, &uri).await;
    let consent = browser.log_in(&h, &page, "alice").await;
    let params = browser.decide(&h, &consent, "allow").await.redirected();
    assert_eq!(params["state"], "st-123", "the pushed request's parameters");
    let (status, body) = exchange(&h, &params["code"], &[("client_secret", "s3cret")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    h.clock.advance_ms(61_000);
    let expired = browser.get(&h, &uri).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST, "a request_uri lives a minute");
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

#[tokio::test]
async fn discovery_describes_the_code_flow_and_agrees_with_the_rfc_8414_metadata() {
    let h = harness().await;
    let oidc = h.send(Request::get("/.well-known/openid-configuration").body(Body::empty()).unwrap()).await;
    let oauth = h.send(Request::get("/.well-known/oauth-authorization-server").body(Body::empty()).unwrap()).await;
    assert_eq!(oidc.status, StatusCode::OK);
    assert_eq!(oidc.body, oauth.body, "one document");
    let issuer = h.state.settings().issuer.clone();
    assert_eq!(oidc.body["issuer"], issuer);
    assert_eq!(oidc.body["authorization_endpoint"], format!("{issuer}/oauth2/authorize"));
    assert_eq!(oidc.body["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(oidc.body["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(oidc.body["authorization_response_iss_parameter_supported"], true);
    assert_eq!(oidc.body["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA", "RS256"]));
}

/// The server's published keys, as an application fetches them.
async fn published_keys(h: &Harness) -> tessera_jose::KeySet {
    let response = h.app.clone().oneshot(Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
    let bytes = response.unwrap().into_body().collect().await.unwrap().to_bytes();
    tessera_jose::KeySet::from_public_jwks_json(&bytes).unwrap()
}

#[tokio::test]
async fn an_app_registered_for_rs256_gets_rs256_id_tokens_from_an_eddsa_server_and_nothing_else_is_rs256() {
    let h = harness().await;
    register_app(&h, APP, true, CodeFlow { id_token_signing: IdTokenSigning::Rs256, ..flow() }).await;
    let code = Browser::default().code_for(&h, "alice", &[]).await["code"].clone();
    let (status, tokens) = exchange(&h, &code, &[]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (access, id_token) = (tokens["access_token"].as_str().unwrap(), tokens["id_token"].as_str().unwrap());

    let (alg, claims) = verify_id_token(&h, id_token).await;
    assert_eq!(alg, "RS256");
    assert_eq!((claims["sub"].as_str(), claims["nonce"].as_str()), (Some("alice"), Some("n-456")));
    // at_hash under RS256's hash, SHA-256.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    assert_eq!(claims["at_hash"], tessera_jose::base64url::encode(&digest.as_ref()[..16]));

    // The access token is the signing keys' as always; a token typed as an access token but signed with the RS256
    // key is no access token anywhere: the verifier trusts the signing keys alone.
    let access_header: Value =
        serde_json::from_slice(&tessera_jose::base64url::decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(access_header["alg"], "EdDSA");
    assert_eq!(h.verify(access).await, StatusCode::OK);
    let rs256 = h.state.keys().id_token_key(IdTokenSigning::Rs256).unwrap();
    let forged = tessera_jose::encode_jwt(&rs256, Some(tessera_jose::ACCESS_TOKEN_TYP), &claims_of(access)).unwrap();
    assert_eq!(h.verify(&forged).await, StatusCode::UNAUTHORIZED);

    // The RS256 ID token serves as a logout hint like any other.
    let mut browser = Browser::default();
    browser.code_for(&h, "alice", &[]).await;
    let query = serde_urlencoded::to_string([("id_token_hint", id_token), ("post_logout_redirect_uri", AFTER_LOGOUT)]);
    let page = browser.get(&h, &format!("/oauth2/logout?{}", query.unwrap())).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "ended at once: {}", page.text);
    assert_eq!(h.verify(access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_rs256_keys_rotate_on_their_own_schedule_and_their_retired_key_stays_published() {
    let h = harness().await;
    let first = h.state.keys().id_token_key(IdTokenSigning::Rs256).unwrap().kid().to_owned();
    let signing = h.state.keys().signing_key().kid().to_owned();
    // `tessera keys rotate --rs256 --now`, from another process: the server takes it up at its next reload.
    let policy = tessera_keys::RotationPolicy::default().rs256().unwrap();
    let rs256 = tessera_keys::KeyStore::open(h.dir.path(), None).unwrap().rs256();
    rs256.update(|ring| ring.rotate(h.clock.now_secs(), &policy, tessera_keys::Activation::Immediate)).unwrap();
    assert!(h.state.keys().refresh(h.clock.now_secs()).unwrap());
    let second = h.state.keys().id_token_key(IdTokenSigning::Rs256).unwrap().kid().to_owned();
    assert_ne!(second, first);
    assert_eq!(h.state.keys().signing_key().kid(), signing, "the signing keys did not move");
    let published = published_keys(&h).await;
    assert!(published.get(&first).is_some() && published.get(&second).is_some(), "the retired key still verifies");
    assert!(h.state.keys().id_token_keys().get(&first).is_some());
}

#[tokio::test]
async fn without_rs256_keys_an_app_registered_for_rs256_gets_an_error_and_no_session() {
    let rotation = tessera_keys::RotationPolicy { rs256_id_tokens: false, ..tessera_keys::RotationPolicy::default() };
    let h = harness_with_keys(tessera_server::Settings::default(), rotation).await;
    register_app(&h, APP, true, CodeFlow { id_token_signing: IdTokenSigning::Rs256, ..flow() }).await;
    assert!(published_keys(&h).await.len() == 1, "only the signing key is published");
    let discovery = h.send(Request::get("/.well-known/openid-configuration").body(Body::empty()).unwrap()).await;
    assert_eq!(discovery.body["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA"]));

    let code = Browser::default().code_for(&h, "alice", &[]).await["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", APP),
    ];
    let request = form_post("/oauth2/token", &serde_urlencoded::to_string(form).unwrap());
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "server_error");
    let rules = tessera_store::RefreshRules { grace_ms: 0, idle_timeout_ms: 1 << 40 };
    let sessions = h.state.store().live_sessions("alice", h.clock.now_ms(), rules).await.unwrap();
    assert!(sessions.iter().all(|session| session.client_id != APP), "the failed exchange started no session");
}

#[tokio::test]
async fn userinfo_needs_a_token_issued_with_the_openid_scope() {
    let h = with_app(true).await;
    let session = h.login("alice").await;
    let info = h.with_bearer("GET", "/oauth2/userinfo", &session.access).await;
    assert_eq!(info.status, StatusCode::FORBIDDEN, "a first-party session token without openid: {}", info.body);
    let code = Browser::default().code_for(&h, "alice", &[("scope", "photos.read")]).await["code"].clone();
    let (_, tokens) = exchange(&h, &code, &[]).await;
    assert!(tokens.get("id_token").is_none(), "no openid, no ID token");
    let info = h.with_bearer("GET", "/oauth2/userinfo", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_code_whose_login_ended_before_the_exchange_is_refused() {
    let h = with_app(true).await;
    let mut browser = Browser::default();
    let code = browser.code_for(&h, "alice", &[]).await["code"].clone();
    let confirm = browser.get(&h, &format!("/oauth2/logout?client_id={APP}")).await;
    let done = browser.post(&h, "/oauth2/logout/confirm", &[("request", &confirm.form_request())]).await;
    assert!(done.text.contains("Signed out"), "{}", done.text);
    let (status, body) = exchange(&h, &code, &[]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
}
