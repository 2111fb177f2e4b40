//! The migration from legacy session cookies (issue #18), in-process: `/verify` takes a legacy session beside a
//! token and tells the upstream the same identity; `/auth/migrate` turns one into a Tessera session; the rollout
//! steers users, is changed through the admin API behind gates, is recorded, and reaches another node. The legacy
//! store here is an in-memory adapter; `tests/migration/` runs the real one (express-session in Redis, nginx).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{another_node_state, harness_with, Harness, Reply};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tessera_legacy::{LegacyError, LegacyIdentity, LegacySessions};
use tessera_server::{MigrationSettings, Settings};
use tower::ServiceExt as _;

const ADMIN: &str = "admin-credential-for-tests-0123456789";

/// Legacy sessions kept in memory: cookie value → identity. `down` makes every lookup fail as a dead store does.
#[derive(Default)]
struct Legacy {
    sessions: Mutex<HashMap<String, LegacyIdentity>>,
    ended: Mutex<Vec<String>>,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl LegacySessions for Legacy {
    fn cookie_name(&self) -> &str {
        "connect.sid"
    }

    async fn identify(&self, cookie: &str, _now_ms: i64) -> Result<LegacyIdentity, LegacyError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LegacyError::Unavailable("down for the test".into()));
        }
        if !cookie.starts_with("s%3A") {
            return Err(LegacyError::Invalid("unsigned"));
        }
        self.sessions.lock().unwrap().get(cookie).cloned().ok_or(LegacyError::NoSession)
    }

    async fn end(&self, cookie: &str) -> Result<bool, LegacyError> {
        self.sessions.lock().unwrap().remove(cookie);
        self.ended.lock().unwrap().push(cookie.to_owned());
        Ok(true)
    }
}

struct Setup {
    h: Harness,
    legacy: Arc<Legacy>,
}

fn settings(migration: MigrationSettings) -> Settings {
    Settings { admin_token: Some(ADMIN.into()), migration: Some(migration), ..Settings::default() }
}

/// Gates that judge on one request, so tests reach every phase with a little traffic.
fn test_migration() -> MigrationSettings {
    let mut migration = MigrationSettings::default();
    migration.gates.min_requests = 1;
    migration
}

async fn setup_with(migration: MigrationSettings) -> Setup {
    let h = harness_with(settings(migration)).await;
    let legacy = Arc::new(Legacy::default());
    for (cookie, user, roles) in [("s%3Aalice.sig", "alice", vec!["admin"]), ("s%3Acarol.sig", "carol", vec!["staff"])]
    {
        let identity = LegacyIdentity {
            user_id: user.into(),
            roles: roles.into_iter().map(str::to_owned).collect(),
            expires_at_ms: None,
            attributes: [("plan".to_owned(), format!("{user}-plan"))].into(),
        };
        legacy.sessions.lock().unwrap().insert(cookie.into(), identity);
    }
    h.state.enable_migration(legacy.clone()).unwrap();
    Setup { h, legacy }
}

async fn setup() -> Setup {
    setup_with(test_migration()).await
}

/// Sends `request` and reads the answer, 5xx included.
async fn send(h: &Harness, request: Request<Body>) -> Reply {
    let response = h.app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

async fn verify_with_cookie(h: &Harness, cookie: &str, query: &str) -> Reply {
    let request = Request::get(format!("/verify{query}"))
        .header(header::COOKIE, format!("theme=dark; connect.sid={cookie}"))
        .body(Body::empty())
        .unwrap();
    send(h, request).await
}

async fn admin(h: &Harness, method: &str, path: &str, body: Value) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(h, request).await
}

async fn set_phase(h: &Harness, body: Value) -> Reply {
    let reply = admin(h, "PUT", "/admin/v1/migration", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
}

async fn migrate(h: &Harness, cookie: &str, origin: Option<&str>) -> Reply {
    let mut request = Request::post("/auth/migrate")
        .header(header::HOST, "tessera.test")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, format!("connect.sid={cookie}"));
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    send(h, request.body(Body::from("{}")).unwrap()).await
}

fn identity_headers(reply: &Reply) -> Vec<(String, String)> {
    ["x-user-id", "x-user-roles", "x-scope", "x-external-subject", "x-token-issuer"]
        .iter()
        .map(|name| ((*name).to_owned(), reply.headers[*name].to_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn verify_tells_the_upstream_the_same_identity_for_a_legacy_session_and_a_token() {
    let Setup { h, .. } = setup().await;
    set_phase(&h, json!({"phase": "canary", "canary_users": ["alice"]})).await;
    let session = verify_with_cookie(&h, "s%3Aalice.sig", "").await;
    assert_eq!(session.status, StatusCode::OK, "{}", session.body);
    assert_eq!(session.headers["x-auth-method"], "session");
    assert!(session.headers.get("deprecation").is_none(), "not deprecated before tokens-only");

    let token = h.login("alice").await;
    let request = Request::get("/verify").header(header::AUTHORIZATION, format!("Bearer {}", token.access));
    let by_token = send(&h, request.body(Body::empty()).unwrap()).await;
    assert_eq!(by_token.status, StatusCode::OK);
    assert_eq!(by_token.headers["x-auth-method"], "token");
    let (mut from_session, mut from_token) = (identity_headers(&session), identity_headers(&by_token));
    // A token names its issuer; a legacy session has none. Everything else is the same.
    from_token.retain(|(name, _)| name != "x-token-issuer");
    from_session.retain(|(name, _)| name != "x-token-issuer");
    assert_eq!(from_session, from_token);
    assert_eq!(from_session[0], ("x-user-id".to_owned(), "alice".to_owned()));
    assert_eq!(from_session[1], ("x-user-roles".to_owned(), "admin".to_owned()));
}

#[tokio::test]
async fn forged_unknown_ambiguous_and_unreadable_legacy_cookies_are_refused() {
    let Setup { h, legacy } = setup().await;
    for cookie in ["alice.sig", "s%3Amallory.sig", ""] {
        let reply = verify_with_cookie(&h, cookie, "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{cookie:?}: {}", reply.body);
        assert!(reply.headers.get("x-user-id").is_none());
    }
    // The real cookie beside a planted one of the same name.
    let request = Request::get("/verify")
        .header(header::COOKIE, "connect.sid=s%3Aalice.sig; connect.sid=s%3Acarol.sig")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h, request).await.status, StatusCode::UNAUTHORIZED);
    // A legacy store that cannot answer: fail closed, never an identity.
    legacy.down.store(true, Ordering::SeqCst);
    let down = verify_with_cookie(&h, "s%3Aalice.sig", "").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.body);
    assert!(down.headers.get("x-user-id").is_none());
    // Without any credential, the answer is the token path's.
    let none = send(&h, Request::get("/verify").body(Body::empty()).unwrap()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_legacy_session_meets_an_audience_only_when_configured_and_never_a_scope() {
    let Setup { h, .. } = setup().await;
    assert_eq!(verify_with_cookie(&h, "s%3Aalice.sig", "?audience=orders").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(verify_with_cookie(&h, "s%3Aalice.sig", "?scope=orders:read").await.status, StatusCode::FORBIDDEN);

    let mut migration = test_migration();
    migration.session_audiences = vec!["orders".into()];
    let Setup { h, .. } = setup_with(migration).await;
    assert_eq!(verify_with_cookie(&h, "s%3Aalice.sig", "?audience=orders").await.status, StatusCode::OK);
    assert_eq!(verify_with_cookie(&h, "s%3Aalice.sig", "?audience=billing").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_only_marks_legacy_sessions_deprecated_and_done_refuses_them() {
    let Setup { h, .. } = setup().await;
    set_phase(&h, json!({"phase": "tokens-only", "force": true})).await;
    let deprecated = verify_with_cookie(&h, "s%3Acarol.sig", "").await;
    assert_eq!(deprecated.status, StatusCode::OK);
    let since = h.clock_secs();
    assert_eq!(deprecated.headers["deprecation"], format!("@{since}").as_str());
    set_phase(&h, json!({"phase": "done", "force": true})).await;
    assert_eq!(verify_with_cookie(&h, "s%3Acarol.sig", "").await.status, StatusCode::UNAUTHORIZED);
}

trait ClockSecs {
    fn clock_secs(&self) -> i64;
}

impl ClockSecs for Harness {
    fn clock_secs(&self) -> i64 {
        use tessera_server::clock::Clock as _;
        self.clock.now_secs()
    }
}

#[tokio::test]
async fn migrate_turns_a_steered_legacy_session_into_a_tessera_session_with_its_roles() {
    let Setup { h, legacy } = setup().await;
    // Not steered yet: the legacy session stays, nothing is issued.
    let early = migrate(&h, "s%3Acarol.sig", None).await;
    assert_eq!((early.status, early.body["error"].as_str()), (StatusCode::CONFLICT, Some("not_in_rollout")));
    assert!(early.headers.get(header::SET_COOKIE).is_none());

    // A segment by an attribute of the legacy session steers its holders too.
    set_phase(&h, json!({"phase": "canary", "segments": [{"attribute": "plan", "equals": "alice-plan"}]})).await;
    assert_eq!(migrate(&h, "s%3Acarol.sig", None).await.status, StatusCode::CONFLICT);
    assert_eq!(migrate(&h, "s%3Aalice.sig", None).await.status, StatusCode::OK);
    set_phase(&h, json!({"phase": "canary", "segments": [{"role": "staff"}]})).await;
    let status = send(
        &h,
        Request::get("/auth/migrate").header(header::COOKIE, "connect.sid=s%3Acarol.sig").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status.body, json!({"phase": "canary", "method": "token"}));

    let migrated = migrate(&h, "s%3Acarol.sig", Some("http://tessera.test")).await;
    assert_eq!(migrated.status, StatusCode::OK, "{}", migrated.body);
    assert_eq!(migrated.body["legacy_session"], "kept");
    assert!(legacy.ended.lock().unwrap().is_empty(), "kept by default");
    let claims = common::claims_of(migrated.body["access_token"].as_str().unwrap());
    assert_eq!((claims["sub"].as_str(), &claims["roles"]), (Some("carol"), &json!(["staff"])));
    // It is a whole Tessera session: the refresh cookie and CSRF token refresh it.
    let cookie = common::cookie_of(&migrated).expect("a refresh cookie");
    let refreshed = h.refresh(&cookie, migrated.body["csrf_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);

    // Cross-origin, a form, no cookie, a forged cookie: refused, nothing issued.
    assert_eq!(migrate(&h, "s%3Acarol.sig", Some("https://evil.example")).await.status, StatusCode::FORBIDDEN);
    let form = Request::post("/auth/migrate")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, "connect.sid=s%3Acarol.sig")
        .body(Body::from(""))
        .unwrap();
    assert_eq!(send(&h, form).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let forged = migrate(&h, "s%3Acarol.forged", None).await;
    assert_eq!((forged.status, forged.body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_grant")));
}

#[tokio::test]
async fn migrate_ends_the_legacy_session_when_configured() {
    let mut migration = test_migration();
    migration.end_legacy_session = true;
    let Setup { h, legacy } = setup_with(migration).await;
    set_phase(&h, json!({"phase": "tokens-only", "force": true})).await;
    let migrated = migrate(&h, "s%3Acarol.sig", None).await;
    assert_eq!(migrated.body["legacy_session"], "ended", "{}", migrated.body);
    assert_eq!(*legacy.ended.lock().unwrap(), ["s%3Acarol.sig"]);
    let cleared: Vec<_> = migrated.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert!(cleared.iter().any(|c| c.starts_with("connect.sid=;") && c.contains("Max-Age=0")), "{cleared:?}");
    assert_eq!(verify_with_cookie(&h, "s%3Acarol.sig", "").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn after_the_kill_switch_logins_go_back_to_legacy_but_nobody_is_logged_out() {
    let Setup { h, .. } = setup().await;
    set_phase(&h, json!({"phase": "rollout", "percent": 100})).await;
    let s = h.login("alice").await;
    let rolled_back =
        admin(&h, "POST", "/admin/v1/migration/rollback", json!({"actor": "oncall", "reason": "drill"})).await;
    assert_eq!(rolled_back.status, StatusCode::OK, "{}", rolled_back.body);
    assert_eq!(rolled_back.body["phase"], "off");
    // The next login is steered to the legacy application ...
    let login =
        h.send(common::json_post("/auth/login", &json!({"username": "alice", "password": common::PASSWORD}))).await;
    assert_eq!((login.status, login.body["error"].as_str()), (StatusCode::CONFLICT, Some("use_legacy_login")));
    // ... a wrong password still says only that (the rollout is told only to whoever knows the password) ...
    let wrong = h.send(common::json_post("/auth/login", &json!({"username": "alice", "password": "nope"}))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // ... and the session already issued keeps working: its token verifies and its refresh rotates.
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::OK);
    assert_eq!(verify_with_cookie(&h, "s%3Aalice.sig", "").await.headers["x-auth-method"], "session");
}

#[tokio::test]
async fn an_advance_needs_its_gate_and_every_change_is_recorded() {
    let mut migration = MigrationSettings::default();
    migration.gates.min_requests = 3;
    let Setup { h, .. } = setup_with(migration).await;
    // Leaving `off` needs no gate: there is no token traffic to judge yet.
    set_phase(&h, json!({"phase": "canary", "canary_users": ["alice"], "actor": "ops-1", "reason": "start"})).await;
    let refused = admin(&h, "PUT", "/admin/v1/migration", json!({"phase": "rollout", "percent": 5})).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::CONFLICT, Some("gate_closed")));
    assert!(refused.body["error_description"].as_str().unwrap().contains("fewer than the 3"), "{}", refused.body);
    // Three token-path requests, all good: the gate holds.
    let s = h.login("alice").await;
    for _ in 0..3 {
        assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    }
    let advanced = set_phase(&h, json!({"phase": "rollout", "percent": 5, "actor": "ops-2"})).await;
    assert_eq!((advanced.body["phase"].as_str(), advanced.body["percent"].as_f64()), (Some("rollout"), Some(5.0)));
    // Going back needs no gate (a new phase starts with an empty window).
    set_phase(&h, json!({"phase": "canary", "actor": "ops-3", "reason": "wait"})).await;
    let status = admin(&h, "GET", "/admin/v1/migration", Value::Null).await;
    let history = status.body["history"].as_array().unwrap();
    let steps: Vec<_> = history
        .iter()
        .map(|c| {
            (c["actor"].as_str().unwrap(), c["from"]["phase"].as_str().unwrap(), c["to"]["phase"].as_str().unwrap())
        })
        .collect();
    assert_eq!(steps, [("ops-1", "off", "canary"), ("ops-2", "canary", "rollout"), ("ops-3", "rollout", "canary")]);
    assert!(history.iter().all(|c| c["at_ms"].as_i64() == Some(common::START_MS)));
    // The canary list given once stays when a later change leaves it out.
    assert_eq!(status.body["canary_users"], json!(["alice"]));
}

#[tokio::test]
async fn an_invalid_rollout_is_refused_whole_and_the_running_one_stays() {
    let Setup { h, .. } = setup().await;
    set_phase(&h, json!({"phase": "canary", "canary_users": ["alice"]})).await;
    for body in [
        json!({"phase": "rollout", "percent": 150}),
        json!({"phase": "rollout"}),
        json!({"phase": "sideways"}),
        json!({"phase": "canary", "segments": [{"role": "a,b"}]}),
        json!({"phase": "canary", "percent": 5, "extra": true}),
    ] {
        let reply = admin(&h, "PUT", "/admin/v1/migration", body.clone()).await;
        assert_eq!(reply.status.as_u16() / 100, 4, "{body}: {}", reply.body);
    }
    let status = admin(&h, "GET", "/admin/v1/migration", Value::Null).await;
    assert_eq!((status.body["phase"].as_str(), status.body["history"].as_array().unwrap().len()), (Some("canary"), 1));
    // The admin credential is required.
    let request = Request::get("/admin/v1/migration").body(Body::empty()).unwrap();
    assert_eq!(send(&h, request).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_change_on_one_node_is_in_effect_on_another_within_a_second() {
    let Setup { h, legacy } = setup().await;
    let other = another_node_state(&h, settings(test_migration())).await;
    other.enable_migration(legacy.clone()).unwrap();
    let background = tessera_server::start_background(&other).await.unwrap();
    let other_app = tessera_server::app(other);
    let steered = || async {
        let request = Request::get("/auth/migrate")
            .header(header::COOKIE, "connect.sid=s%3Acarol.sig")
            .body(Body::empty())
            .unwrap();
        let response = other_app.clone().oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()["method"].as_str().unwrap().to_owned()
    };
    assert_eq!(steered().await, "session");
    set_phase(&h, json!({"phase": "canary", "canary_users": ["carol"]})).await;
    let changed = Instant::now();
    while steered().await != "token" {
        assert!(changed.elapsed() < Duration::from_secs(1), "the other node still steers carol to her session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The kill switch, the same way.
    admin(&h, "POST", "/admin/v1/migration/rollback", json!({})).await;
    let killed = Instant::now();
    while steered().await != "session" {
        assert!(killed.elapsed() < Duration::from_secs(1), "the other node still steers carol to tokens");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    background.abort();
}

/// `POST /oauth2/token`, token exchange of a legacy session cookie, as `client`.
async fn exchange_legacy(h: &Harness, client: &str, cookie: &str) -> (StatusCode, Value) {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={}\
         &subject_token_type=urn%3Atessera%3Aparams%3Aoauth%3Atoken-type%3Alegacy-session",
        cookie.replace('%', "%25")
    );
    let (status, body, _) =
        common::clients::post(h, "/oauth2/token", &body, Some((client, common::clients::SECRET))).await;
    (status, body)
}

#[tokio::test]
async fn a_client_with_the_legacy_session_grant_exchanges_a_legacy_session_for_a_user_session() {
    let Setup { h, .. } = setup().await;
    common::register_client(&h, "mobile-app", common::clients::SECRET, &[], &["tessera"], &["legacy_session"]).await;
    common::register_client(&h, "exchanger", common::clients::SECRET, &[], &["ledger"], &["token_exchange"]).await;
    tessera_server::sync(&h.state).await.unwrap();
    let (status, body) = exchange_legacy(&h, "mobile-app", "s%3Acarol.sig").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("not_in_rollout")), "{body}");

    set_phase(&h, json!({"phase": "canary", "segments": [{"role": "staff"}]})).await;
    let (status, body) = exchange_legacy(&h, "mobile-app", "s%3Acarol.sig").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = common::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!((claims["sub"].as_str(), claims["client_id"].as_str()), (Some("carol"), Some("mobile-app")));
    assert_eq!(claims["roles"], json!(["staff"]));
    // The refresh token is the client's to rotate, with its credential.
    let refresh = format!("grant_type=refresh_token&refresh_token={}", body["refresh_token"].as_str().unwrap());
    let (refreshed, _, _) =
        common::clients::post(&h, "/oauth2/token", &refresh, Some(("mobile-app", common::clients::SECRET))).await;
    assert_eq!(refreshed, StatusCode::OK);

    // A client without the grant, and a forged cookie, get nothing.
    let (status, body) = exchange_legacy(&h, "exchanger", "s%3Acarol.sig").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
    let (status, body) = exchange_legacy(&h, "mobile-app", "s%3Acarol.forged").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}
