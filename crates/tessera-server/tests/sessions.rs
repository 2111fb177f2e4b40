//! Sessions in-process: login, logout, listing and ending them, their expiry, and a node keeping its view of the
//! store current (the revocation log, changes made by other processes, staleness); time moved by a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{claims_of, cookie_of, harness, harness_with, json_post, PASSWORD, START_MS};
use http_body_util::BodyExt as _;
use serde_json::json;
use tessera_server::clock::Clock as _;
use tessera_server::{Settings, StalePolicy};
use tessera_store::{LogCursor, Provenance, Revocation};
use tower::ServiceExt as _;

#[tokio::test]
async fn login_issues_an_access_token_and_a_locked_down_cookie() {
    let h = harness().await;
    let reply = h.send(json_post("/auth/login", &json!({"username": "alice", "password": PASSWORD}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert!(reply.body.get("refresh_token").is_none(), "browsers get the refresh token only as a cookie");
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let claims = claims_of(reply.body["access_token"].as_str().unwrap());
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid"] {
        assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
    }
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert_eq!(h.verify(reply.body["access_token"].as_str().unwrap()).await, StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_alike() {
    let h = harness().await;
    let wrong = h.send(json_post("/auth/login", &json!({"username": "alice", "password": "nope nope"}))).await;
    let unknown = h.send(json_post("/auth/login", &json!({"username": "mallory", "password": "nope nope"}))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn logout_ends_this_session_and_logout_all_ends_every_session() {
    let h = harness().await;
    let a = h.login("alice").await;
    let b = h.login("alice").await;
    let reply = h.with_bearer("POST", "/auth/logout", &a.access).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(h.verify(&a.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.refresh(&a.cookie, &a.csrf).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.verify(&b.access).await, StatusCode::OK, "the other session lives on");

    let c = h.login("alice").await;
    h.clock.advance_ms(1_000);
    assert_eq!(h.with_bearer("POST", "/auth/logout-all", &c.access).await.status, StatusCode::NO_CONTENT);
    for s in [&b, &c] {
        assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    }
    h.clock.advance_ms(1_000);
    let after = h.login("alice").await;
    assert_eq!(h.verify(&after.access).await, StatusCode::OK, "a login after logout-all works");
    assert_eq!(h.refresh(&after.cookie, &after.csrf).await.status, StatusCode::OK);
}

/// A revocation log that went back (the database restored from an older backup) is read again from the start:
/// a revocation written after the restore reuses a position this node had already passed, and must still apply.
#[tokio::test]
async fn a_revocation_log_that_went_back_is_read_again_from_the_start() {
    let h = harness().await;
    let by = Provenance::new("admin", "before the backup was restored");
    for jti in ["old-1", "old-2"] {
        let revocation = Revocation::Token { jti: jti.into(), expires_at: START_MS + 3_600_000 };
        h.state.store().revoke(revocation, by.clone(), START_MS).await.unwrap();
    }
    tessera_server::sync(&h.state).await.unwrap();
    let db = rusqlite::Connection::open(h.dir.path().join("tessera.db")).unwrap();
    db.execute_batch("DELETE FROM revocation_log; DELETE FROM sqlite_sequence WHERE name = 'revocation_log';").unwrap();

    let s = h.login("alice").await;
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    h.clock.advance_ms(1_000);
    let now = h.clock.now_ms();
    let everything = Revocation::Subject { sub: "alice".into(), not_before: now };
    h.state.store().revoke(everything, Provenance::new("admin", "after the restore"), now).await.unwrap();
    assert_eq!(
        h.state.store().log_head().await.unwrap(),
        LogCursor::at(vec![1]),
        "the restored log hands out position 1 again"
    );
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED, "the revocation made after the restore applies");
}

/// The verifier remembers tokens it has verified (see `docs/security.md`); a remembered token must still expire
/// on time. (Revocation after a remembered verification is covered by the logout tests above.)
#[tokio::test]
async fn a_remembered_access_token_still_expires_on_time() {
    let h = harness().await;
    let s = h.login("alice").await;
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    let settings = Settings::default();
    let last_valid_ms = (settings.access_ttl_secs + settings.leeway_secs - 1) * 1000;
    h.clock.advance_ms(last_valid_ms);
    // The revocation index is brought up to date at the new instant, so only the token's own `exp` can refuse it.
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(h.verify(&s.access).await, StatusCode::OK, "still inside its lifetime and the leeway");
    h.clock.advance_ms(1_000);
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
}

/// A session is forgotten two days after it expires, not before: until then a late refresh is refused as expired;
/// after, the store no longer holds it, and the refresh is still refused.
#[tokio::test]
async fn expired_sessions_are_forgotten_only_a_while_after_they_expire() {
    let h = harness().await;
    let s = h.login("alice").await;
    let sid = claims_of(&s.access)["sid"].as_str().unwrap().to_owned();
    let lifetime_ms = u64::try_from(Settings::default().refresh_ttl.as_millis()).unwrap();
    h.clock.advance_ms(i64::try_from(lifetime_ms).unwrap() + 60_000);
    assert_eq!(tessera_server::forget_expired_sessions(h.state.clone()).await.unwrap(), 0, "kept a while after expiry");
    assert!(h.state.store().session(&sid).await.unwrap().is_some());
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    h.clock.advance_ms(tessera_store::EXPIRED_SESSION_KEPT_MS);
    assert_eq!(tessera_server::forget_expired_sessions(h.state.clone()).await.unwrap(), 1);
    assert_eq!(h.state.store().session(&sid).await.unwrap(), None);
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED, "still refused");
}

/// The revocation log forgets an entry once it is older than its retention (90 days by default), not before, and
/// never its newest entry; a retention set shorter than the tokens live is lengthened to their lifetime.
#[tokio::test]
async fn revocation_log_entries_are_forgotten_after_their_retention() {
    let h = harness().await;
    let (first, second) = (h.login("alice").await, h.login("alice").await);
    assert_eq!(h.with_bearer("POST", "/auth/logout", &first.access).await.status, StatusCode::NO_CONTENT);
    h.clock.advance_ms(86_400_000);
    // A day later (its access token has expired by then): an operator ends the second session.
    let sid = claims_of(&second.access)["sid"].as_str().unwrap().to_owned();
    let by = Provenance::new("admin", "left the company");
    assert!(h.state.store().revoke(Revocation::Session { sid }, by, h.clock.now_ms()).await.unwrap());
    let logged = h.state.store().revocations_after(&LogCursor::default(), i64::MIN, 100).await.unwrap();
    assert_eq!(logged.len(), 2);
    assert_eq!(tessera_server::forget_old_revocations(h.state.clone()).await.unwrap(), 0, "both younger than 90 days");
    h.clock.advance_ms(89 * 86_400_000 + 3_600_000);
    assert_eq!(tessera_server::forget_old_revocations(h.state.clone()).await.unwrap(), 1, "the first is 90 days old");
    let kept = h.state.store().revocations_after(&LogCursor::default(), i64::MIN, 100).await.unwrap();
    assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), [logged[1].id]);
    h.clock.advance_ms(365 * 86_400_000);
    assert_eq!(tessera_server::forget_old_revocations(h.state.clone()).await.unwrap(), 0, "the newest entry stays");

    let short = Settings { revocation_log_retention: std::time::Duration::from_secs(1), ..Settings::default() };
    let lifetime_ms = (short.access_ttl_secs.max(short.service_ttl_secs) + short.leeway_secs) * 1000;
    assert_eq!(short.revocation_log_kept_ms(), lifetime_ms, "never shorter than verification needs");
}

#[tokio::test]
async fn logout_by_cookie_needs_the_csrf_token() {
    let h = harness().await;
    let s = h.login("alice").await;
    let without = Request::post("/auth/logout")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(without).await.status, StatusCode::FORBIDDEN);
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    let with = Request::post("/auth/logout")
        .header(header::COOKIE, format!("__Secure-tessera-refresh={}", s.cookie))
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(with).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.verify(&s.access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_ended_one_by_one_by_their_owner_only() {
    let h = harness().await;
    let a1 = h.login("alice").await;
    let a2 = h.login("alice").await;
    let b = h.login("bob").await;
    let list = h.with_bearer("GET", "/auth/sessions", &a1.access).await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    for session in sessions {
        for field in ["id", "created_at", "last_used_at", "expires_at", "client_id"] {
            assert!(!session[field].is_null(), "{field} missing: {session}");
        }
        assert_eq!(session["created_at"], START_MS / 1000);
    }
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let a2_sid = claims_of(&a2.access)["sid"].as_str().unwrap().to_owned();
    let b_sid = claims_of(&b.access)["sid"].as_str().unwrap().to_owned();
    assert_eq!(
        h.with_bearer("DELETE", &format!("/auth/sessions/{b_sid}"), &a1.access).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.verify(&b.access).await, StatusCode::OK);
    assert_eq!(
        h.with_bearer("DELETE", &format!("/auth/sessions/{a2_sid}"), &a1.access).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.verify(&a2.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.with_bearer("GET", "/auth/sessions", &a1.access).await.body["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(h.with_bearer("GET", "/auth/sessions", "junk").await.status, StatusCode::UNAUTHORIZED);

    // A session started later, from a browser that named itself, and used after a while.
    h.clock.advance_ms(60_000);
    let mut request = json_post("/auth/login", &json!({"username": "alice", "password": PASSWORD}));
    request.headers_mut().insert(header::USER_AGENT, "Firefox/140.0".parse().unwrap());
    let firefox = h.send(request).await;
    let (cookie, csrf) = (cookie_of(&firefox).unwrap(), firefox.body["csrf_token"].as_str().unwrap().to_owned());
    h.clock.advance_ms(60_000);
    assert_eq!(h.refresh(&cookie, &csrf).await.status, StatusCode::OK);
    // What a node's background task does every reload interval; without it the index would count as stale.
    tessera_server::sync(&h.state).await.unwrap();
    let list = h.with_bearer("GET", "/auth/sessions", &a1.access).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let session =
        list.body["sessions"].as_array().unwrap().iter().find(|s| s["user_agent"] == "Firefox/140.0").cloned();
    let session = session.unwrap_or_else(|| panic!("no session with the user agent: {}", list.body));
    assert_eq!(
        (session["created_at"].as_i64(), session["last_used_at"].as_i64()),
        (Some(START_MS / 1000 + 60), Some(START_MS / 1000 + 120))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_directly_in_the_store_reach_the_running_server() {
    let h =
        harness_with(Settings { reload_interval: std::time::Duration::from_millis(20), ..Settings::default() }).await;
    let background = tessera_server::start_background(&h.state).await.unwrap();
    let s = h.login("bob").await;
    assert_eq!(h.verify(&s.access).await, StatusCode::OK);
    // What `tessera user disable bob` does, from another process: only the store changes.
    h.state.store().set_user_disabled("bob", true, h.clock.now_ms()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.verify(&s.access).await == StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "the disable never reached /verify");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.refresh(&s.cookie, &s.csrf).await.status, StatusCode::UNAUTHORIZED);
    let login = h.send(json_post("/auth/login", &json!({"username": "bob", "password": PASSWORD}))).await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
    background.abort();
}

#[tokio::test]
async fn a_stale_revocation_index_fails_closed_by_default_and_open_when_configured() {
    for (policy, while_stale) in
        [(StalePolicy::FailClosed, StatusCode::UNAUTHORIZED), (StalePolicy::FailOpen, StatusCode::OK)]
    {
        let settings = Settings {
            revocations_stale_after: std::time::Duration::from_secs(60),
            stale_revocations: policy,
            ..Settings::default()
        };
        let h = harness_with(settings).await;
        let s = h.login("alice").await;
        h.clock.advance_ms(59_000);
        assert_eq!(h.verify(&s.access).await, StatusCode::OK, "{policy:?}: synced 59 s ago is current");
        h.clock.advance_ms(2_000);
        assert_eq!(h.verify(&s.access).await, while_stale, "{policy:?}: no sync for 61 s");
        // Not ready either way, and /readyz says why in plain text (orchestrators show it).
        let readyz = h.app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
        let reason = readyz.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&reason[..], b"revocation index not synced");
        tessera_server::sync(&h.state).await.unwrap();
        assert_eq!(h.verify(&s.access).await, StatusCode::OK, "{policy:?}: current again after a sync");
    }
    assert_eq!(Settings::default().stale_revocations, StalePolicy::FailClosed, "the safe default");
}

/// A login in the very second of a logout-everywhere would carry that second as `iat` and be born revoked (tokens
/// carry whole seconds, and a token of the revocation's second counts as before it): it waits for the next second
/// instead, and lives.
#[tokio::test]
async fn a_login_in_the_second_of_a_logout_everywhere_waits_for_the_next_second() {
    let h = harness().await;
    h.clock.advance_ms(300);
    let before = h.login("alice").await;
    assert_eq!(h.with_bearer("POST", "/auth/logout-all", &before.access).await.status, StatusCode::NO_CONTENT);
    // A login 100 ms later, in the revocation's second (its session, kept in milliseconds, is after it). The clock
    // does not move during the login: only waiting for the next second can make its access token live.
    h.clock.advance_ms(100);
    let after = h.login("alice").await;
    assert_eq!(h.clock.now_ms(), START_MS + 400);
    assert_eq!(claims_of(&after.access)["iat"].as_i64().unwrap(), START_MS / 1000 + 1, "the next second");
    // The time the login waited, which a manual clock does not see pass.
    h.clock.advance_ms(600);
    assert_eq!(h.verify(&before.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.verify(&after.access).await, StatusCode::OK, "not born revoked");
    assert_eq!(h.refresh(&after.cookie, &after.csrf).await.status, StatusCode::OK);
}

/// `/readyz` says "not ready" after 20 reload intervals (at least 5 s) without a sync, well before the index is
/// stale and tokens are refused, so load balancers move traffic away first.
#[tokio::test]
async fn readyz_turns_503_well_before_the_revocation_index_is_stale() {
    let settings = Settings {
        reload_interval: std::time::Duration::from_secs(1),
        revocations_stale_after: std::time::Duration::from_secs(60),
        ..Settings::default()
    };
    let h = harness_with(settings).await;
    let s = h.login("alice").await;
    let readyz = || async {
        let reply = h.app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        let status = reply.status();
        (status, String::from_utf8(reply.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    };
    h.clock.advance_ms(20_000);
    assert_eq!(readyz().await.0, StatusCode::OK, "20 reload intervals without a sync");
    h.clock.advance_ms(1);
    assert_eq!(readyz().await, (StatusCode::SERVICE_UNAVAILABLE, "revocation index not synced".to_owned()));
    assert_eq!(h.verify(&s.access).await, StatusCode::OK, "40 s before the stale bound, tokens still verify");
    tessera_server::sync(&h.state).await.unwrap();
    assert_eq!(readyz().await.0, StatusCode::OK, "ready again after a sync");
}
