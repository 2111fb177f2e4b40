//! express-session's sessions read from a throwaway `redis-server` as connect-redis stores them: whose a genuine
//! cookie is, when its session ends, and an honest "unavailable" when Redis is frozen or gone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;
use tessera_legacy::{ExpressRedis, ExpressRedisConfig, LegacyError, LegacySessions};
use tessera_test_support::Redis;

/// 2026-05-01T12:00:00Z.
const NOW_MS: i64 = 1_777_636_800_000;
const SECRET: &str = "keyboard cat";
const HOUR_MS: i64 = 3_600_000;

/// cookie-signature's signed value, URL-encoded as express-session sends it (the format is proved against Node's
/// output in the crate's unit tests).
fn cookie(id: &str, secret: &str) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), id.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD_NO_PAD.encode(tag.as_ref());
    format!("s%3A{id}.{}", signature.replace('+', "%2B").replace('/', "%2F"))
}

fn adapter(redis: &Redis, prefix: &str) -> ExpressRedis {
    ExpressRedis::new(ExpressRedisConfig {
        redis_url: redis.url(),
        prefix: prefix.into(),
        secrets: vec!["newer secret".into(), SECRET.into()],
        timeout: Duration::from_millis(200),
        ..ExpressRedisConfig::default()
    })
    .unwrap()
}

/// A session as express-session serialises it, its cookie expiring at `expires` (`null` when `None`).
fn session(expires: Option<&str>, user: &str) -> String {
    let expires = expires.map_or("null".to_owned(), |date| format!("\"{date}\""));
    format!(
        r#"{{"cookie":{{"originalMaxAge":86400000,"expires":{expires},"secure":false,"httpOnly":true,"path":"/"}},{user}}}"#
    )
}

const ALICE: &str = r#""user":{"id":"alice","roles":["staff","admin"]}"#;

/// Stores `value` under `key` with a time to live.
fn store(redis: &Redis, key: &str, value: &str, ttl_ms: i64) {
    assert_eq!(redis.cli(&["SET", key, value, "PX", &ttl_ms.to_string()]).trim(), "OK");
}

#[tokio::test]
async fn a_stored_session_is_identified_with_its_roles_and_an_expiry_within_its_ttl() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "myapp:");
    assert_eq!(legacy.cookie_name(), "connect.sid");
    store(&redis, "myapp:Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS", &session(Some("2026-05-02T12:00:00.000Z"), ALICE), HOUR_MS);
    let identity = legacy.identify(&cookie("Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS", SECRET), NOW_MS).await.unwrap();
    assert_eq!(identity.user_id, "alice");
    assert_eq!(identity.roles, ["staff", "admin"]);
    // The key's time to live comes first here (an hour, against the cookie's day).
    let expires = identity.expires_at_ms.unwrap();
    assert!(expires <= NOW_MS + HOUR_MS && expires > NOW_MS + HOUR_MS - 60_000, "{}", expires - NOW_MS);

    // The cookie's expiry when it comes first; none at all for a browser-session cookie without a TTL.
    store(&redis, "myapp:early", &session(Some("2026-05-01T12:01:00.000Z"), ALICE), HOUR_MS);
    let identity = legacy.identify(&cookie("early", SECRET), NOW_MS).await.unwrap();
    assert_eq!(identity.expires_at_ms, Some(NOW_MS + 60_000));
    assert_eq!(redis.cli(&["SET", "myapp:forever", &session(None, r#""user":{"id":7}"#)]).trim(), "OK");
    let identity = legacy.identify(&cookie("forever", SECRET), NOW_MS).await.unwrap();
    assert_eq!((identity.user_id.as_str(), identity.roles.len(), identity.expires_at_ms), ("7", 0, None));
}

#[tokio::test]
async fn a_cookie_signed_with_a_secret_not_configured_is_refused_even_if_its_session_exists() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "sess:");
    store(&redis, "sess:abc", &session(None, ALICE), HOUR_MS);
    assert_eq!(legacy.identify(&cookie("abc", "other"), NOW_MS).await, Err(LegacyError::Invalid("bad signature")));
    assert_eq!(legacy.identify("abc", NOW_MS).await, Err(LegacyError::Invalid("unsigned")));
    assert!(legacy.identify(&cookie("abc", SECRET), NOW_MS).await.is_ok());
}

#[tokio::test]
async fn a_missing_key_is_no_session() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "sess:");
    assert_eq!(legacy.identify(&cookie("nobody", SECRET), NOW_MS).await, Err(LegacyError::NoSession));
}

#[tokio::test]
async fn a_session_whose_cookie_expired_is_no_session_even_while_redis_holds_it() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "sess:");
    store(&redis, "sess:old", &session(Some("2026-05-01T11:59:59.999Z"), ALICE), HOUR_MS);
    assert_eq!(legacy.identify(&cookie("old", SECRET), NOW_MS).await, Err(LegacyError::NoSession));
    store(&redis, "sess:now", &session(Some("2026-05-01T12:00:00.000Z"), ALICE), HOUR_MS);
    assert_eq!(legacy.identify(&cookie("now", SECRET), NOW_MS).await, Err(LegacyError::NoSession));
}

#[tokio::test]
async fn an_unusable_session_is_no_session() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "sess:");
    // Logged out (or never logged in): express-session keeps the session, without a user.
    store(&redis, "sess:anonymous", &session(None, r#""flash":{}"#), HOUR_MS);
    store(&redis, "sess:badrole", &session(None, r#""user":{"id":"bob","roles":["staff",{"x":1}]}"#), HOUR_MS);
    store(&redis, "sess:notjson", "this is not JSON", HOUR_MS);
    store(&redis, "sess:baddate", &session(Some("tomorrow"), ALICE), HOUR_MS);
    for id in ["anonymous", "badrole", "notjson", "baddate"] {
        assert_eq!(legacy.identify(&cookie(id, SECRET), NOW_MS).await, Err(LegacyError::NoSession), "{id}");
    }
}

#[tokio::test]
async fn a_paused_redis_is_unavailable_within_about_the_timeout() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "sess:");
    store(&redis, "sess:abc", &session(None, ALICE), HOUR_MS);
    let genuine = cookie("abc", SECRET);
    assert!(legacy.identify(&genuine, NOW_MS).await.is_ok());
    redis.pause();
    let started = Instant::now();
    let answer = legacy.identify(&genuine, NOW_MS).await;
    let took = started.elapsed();
    redis.resume();
    let Err(LegacyError::Unavailable(why)) = answer else { panic!("{answer:?}") };
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(!why.contains("abc"), "{why}");
    // And it recovers once Redis is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while legacy.identify(&genuine, NOW_MS).await.is_err() {
        assert!(Instant::now() < deadline, "the adapter did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_redis_that_is_down_at_startup_is_only_unavailable_later() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let legacy = ExpressRedis::new(ExpressRedisConfig {
        redis_url: format!("redis://127.0.0.1:{closed_port}/"),
        secrets: vec![SECRET.into()],
        timeout: Duration::from_millis(200),
        ..ExpressRedisConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let answer = legacy.identify(&cookie("abc", SECRET), NOW_MS).await;
    assert!(matches!(answer, Err(LegacyError::Unavailable(_))), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn ending_a_session_deletes_its_key_and_a_forged_cookie_deletes_nothing() {
    let redis = Redis::start();
    let legacy = adapter(&redis, "sess:");
    store(&redis, "sess:abc", &session(None, ALICE), HOUR_MS);
    assert_eq!(legacy.end(&cookie("abc", "forged")).await, Err(LegacyError::Invalid("bad signature")));
    assert_eq!(redis.cli(&["EXISTS", "sess:abc"]).trim(), "1");
    assert_eq!(legacy.end(&cookie("abc", SECRET)).await, Ok(true));
    assert_eq!(redis.cli(&["EXISTS", "sess:abc"]).trim(), "0");
    assert_eq!(legacy.identify(&cookie("abc", SECRET), NOW_MS).await, Err(LegacyError::NoSession));
}
