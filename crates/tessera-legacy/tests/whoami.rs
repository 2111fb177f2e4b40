//! The who-am-I adapter against endpoints served by the tests on loopback: what it sends (the one cookie), what it
//! makes of each answer, and that a slow, broken, oversized or redirecting endpoint is never taken for a session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tessera_legacy::{find_cookie, LegacyError, LegacyIdentity, LegacySessions, WhoAmI, WhoAmIConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2026-05-01T12:00:00Z.
const NOW_MS: i64 = 1_777_636_800_000;
const NOW_S: i64 = NOW_MS / 1000;
const COOKIE: &str = "s%3AXw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS.vkJQ7ozluINglcoqq%2FDNOkol8AaCpRailyJ772IDsVc";

/// One request the endpoint saw: its path, its `Cookie` headers and its `traceparent`.
type Request = (String, Vec<String>, Option<String>);

/// What the endpoint saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    fn record(&self, path: &str, headers: &HeaderMap) {
        let cookies = headers.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let traceparent = headers.get("traceparent").map(|v| v.to_str().unwrap().to_owned());
        self.0.lock().unwrap().push((path.to_owned(), cookies, traceparent));
    }

    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(path, _, _)| path.clone()).collect()
    }
}

/// A legacy application on a free loopback port; its base URL.
async fn legacy_app(seen: Seen) -> String {
    let record = |path: &'static str, seen: &Seen| {
        let seen = seen.clone();
        move |headers: HeaderMap| {
            seen.record(path, &headers);
            std::future::ready(())
        }
    };
    let whoami = {
        let seen = seen.clone();
        move |headers: HeaderMap| {
            seen.record("/whoami", &headers);
            let body = format!(r#"{{"id":"alice","roles":["staff"],"plan":"pro","expires":{}}}"#, NOW_S + 3600);
            std::future::ready(([(header::CONTENT_TYPE, "application/json")], body))
        }
    };
    let expired = || async { r#"{"id":"alice","expires":"2026-05-01T11:59:00Z"}"# };
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/expired", get(expired))
        .route("/anonymous", get(|| async { (StatusCode::UNAUTHORIZED, "{}") }))
        .route("/forbidden", get(|| async { StatusCode::FORBIDDEN }))
        .route("/broken", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, r#"{"id":"alice"}"#) }))
        .route("/html", get(|| async { "<html>login</html>" }))
        .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }))
        .route("/big", get(|| async { format!(r#"{{"id":"alice","pad":"{}"}}"#, "x".repeat(100 * 1024)) }))
        .route("/redirect", get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/whoami")]).into_response() }))
        .route("/logout", post(record("/logout", &seen)))
        .route("/logout-broken", post(|| async { StatusCode::BAD_GATEWAY }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn adapter(url: String, logout_url: Option<String>) -> WhoAmI {
    WhoAmI::new(WhoAmIConfig {
        url,
        cookie_name: "connect.sid".into(),
        timeout: Duration::from_millis(300),
        user_id_field: "/id".into(),
        roles_field: "/roles".into(),
        attribute_fields: [("plan".to_owned(), "/plan".to_owned())].into(),
        expires_field: Some("/expires".into()),
        logout_url,
    })
    .unwrap()
}

async fn unavailable(legacy: &WhoAmI) -> String {
    match legacy.identify(COOKIE, NOW_MS).await {
        Err(LegacyError::Unavailable(why)) => {
            assert!(!why.contains("Xw3k9N2y"), "the cookie leaked into {why}");
            why
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_200_answer_is_the_identity_and_only_the_legacy_cookie_is_forwarded() {
    let seen = Seen::default();
    let base = legacy_app(seen.clone()).await;
    let legacy = adapter(format!("{base}/whoami"), None);
    // The browser's request carries other cookies too; the server hands the adapter the legacy one.
    let browser = [format!("theme=dark; connect.sid={COOKIE}; other_app_session=secret-elsewhere")];
    let value = find_cookie(browser.iter().map(String::as_str), legacy.cookie_name()).unwrap().unwrap();
    let identity = legacy.identify(value, NOW_MS).await.unwrap();
    assert_eq!(
        identity,
        LegacyIdentity {
            user_id: "alice".into(),
            roles: vec!["staff".into()],
            expires_at_ms: Some(NOW_MS + 3_600_000),
            attributes: [("plan".to_owned(), "pro".to_owned())].into(),
        }
    );
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests, [("/whoami".to_owned(), vec![format!("connect.sid={COOKIE}")], None)]);
}

/// What the server passes on: a trace context, and a cookie that must not get through.
fn passed_on() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
    headers.insert(header::COOKIE, "connect.sid=someone-elses".parse().unwrap());
    headers
}

#[tokio::test]
async fn the_servers_trace_context_is_passed_on_but_never_replaces_the_cookie() {
    let seen = Seen::default();
    let base = legacy_app(seen.clone()).await;
    let legacy = adapter(format!("{base}/whoami"), Some(format!("{base}/logout"))).passing_on(passed_on);
    legacy.identify(COOKIE, NOW_MS).await.unwrap();
    assert!(legacy.end(COOKIE).await.unwrap());
    let trace = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
    let cookie = vec![format!("connect.sid={COOKIE}")];
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(
        requests,
        [("/whoami".to_owned(), cookie.clone(), trace.clone()), ("/logout".to_owned(), cookie, trace)]
    );
}

#[tokio::test]
async fn an_expired_answer_is_no_session() {
    let base = legacy_app(Seen::default()).await;
    let legacy = adapter(format!("{base}/expired"), None);
    assert_eq!(legacy.identify(COOKIE, NOW_MS).await, Err(LegacyError::NoSession));
}

#[tokio::test]
async fn a_401_or_403_is_no_session() {
    let base = legacy_app(Seen::default()).await;
    for path in ["/anonymous", "/forbidden", "/no-such-route"] {
        let legacy = adapter(format!("{base}{path}"), None);
        assert_eq!(legacy.identify(COOKIE, NOW_MS).await, Err(LegacyError::NoSession), "{path}");
    }
}

#[tokio::test]
async fn a_500_or_an_unexpected_status_is_unavailable() {
    let base = legacy_app(Seen::default()).await;
    assert!(unavailable(&adapter(format!("{base}/broken"), None)).await.contains("500"));
    assert!(unavailable(&adapter(format!("{base}/teapot"), None)).await.contains("418"));
    assert!(unavailable(&adapter(format!("{base}/html"), None)).await.contains("not JSON"));
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_unavailable_within_the_timeout() {
    let base = legacy_app(Seen::default()).await;
    let legacy = adapter(format!("{base}/slow"), None);
    let started = Instant::now();
    let why = unavailable(&legacy).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(why.contains("timed out"), "{why}");

    // A server that accepts the connection and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/whoami", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(silent.accept().await.unwrap());
        }
    });
    let started = Instant::now();
    unavailable(&adapter(url, None)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    unavailable(&adapter(format!("http://127.0.0.1:{closed_port}/whoami"), None)).await;
}

#[tokio::test]
async fn an_oversized_answer_is_unavailable() {
    let base = legacy_app(Seen::default()).await;
    assert!(unavailable(&adapter(format!("{base}/big"), None)).await.contains("too large"));

    // Without a Content-Length: chunk after chunk until the bound.
    let streaming = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/whoami", streaming.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = streaming.accept().await.unwrap();
        let mut request = [0; 4096];
        let _ = socket.read(&mut request).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(b"e\r\n{\"id\":\"alice\",\r\n").await.unwrap();
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        for _ in 0..100 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    assert!(unavailable(&adapter(url, None)).await.contains("too large"));
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let seen = Seen::default();
    let base = legacy_app(seen.clone()).await;
    let legacy = adapter(format!("{base}/redirect"), None);
    assert!(unavailable(&legacy).await.contains("302"));
    assert!(seen.paths().is_empty(), "followed to {:?}", seen.paths());
}

#[tokio::test]
async fn ending_posts_the_cookie_to_the_logout_url_when_there_is_one() {
    let seen = Seen::default();
    let base = legacy_app(seen.clone()).await;
    let legacy = adapter(format!("{base}/whoami"), Some(format!("{base}/logout")));
    assert_eq!(legacy.end(COOKIE).await, Ok(true));
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests, [("/logout".to_owned(), vec![format!("connect.sid={COOKIE}")], None)]);

    assert_eq!(adapter(format!("{base}/whoami"), None).end(COOKIE).await, Ok(false));
    let broken = adapter(format!("{base}/whoami"), Some(format!("{base}/logout-broken")));
    assert!(matches!(broken.end(COOKIE).await, Err(LegacyError::Unavailable(_))));
}
