//! `TokenVerifier` against a scripted Tessera on loopback: a revocation log that goes back (a `next` behind the
//! position applied, or `409 log_rewound`) is read again from the start, so entries written after the restore are
//! not skipped; a feed answering garbage is retried without a panic, the index goes stale and, under the default
//! policy, tokens are refused until the feed answers again; a key set that changes mid-flight is fetched again
//! when a token names a key it does not have (at most once per 30 s), and the old keys serve meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Form;
use axum::Router;
use tessera_jose::{Algorithm, RsaBits, SigningKey};
use tessera_model::clock::{Clock, SystemClock};
use tessera_verify::{Refusal, TokenVerifier, VerifierConfig};

/// What the scripted feed answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Log,
    Garbage,
    /// `409 log_rewound` once, then the log.
    RewoundOnce,
}

struct Script {
    /// (position, revoked sid)
    log: Vec<(i64, &'static str)>,
    mode: Mode,
    /// Requests from the start of the log (`after=0`) so far.
    from_the_start: usize,
}

async fn feed(State(script): State<Arc<Mutex<Script>>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let after = form.get("after").and_then(|after| after.parse().ok()).unwrap_or(0);
    let (mode, entries, last) = {
        let mut script = script.lock().unwrap();
        script.from_the_start += usize::from(after == 0);
        let mode = script.mode;
        if mode == Mode::RewoundOnce {
            script.mode = Mode::Log;
        }
        let entries: Vec<_> = script.log.iter().filter(|(position, _)| *position > after).copied().collect();
        (mode, entries, script.log.last().map_or(0, |(position, _)| *position))
    };
    match mode {
        Mode::Garbage => return (StatusCode::OK, "<html>maintenance</html>").into_response(),
        Mode::RewoundOnce => {
            return (StatusCode::CONFLICT, axum::Json(serde_json::json!({"error": "log_rewound", "head": last})))
                .into_response()
        }
        Mode::Log => {}
    }
    if entries.is_empty() {
        // A short long poll: nothing new.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let entries: Vec<_> = entries
        .iter()
        // Recorded now: an entry older than the longest token lifetime matches nothing and is forgotten.
        .map(|(position, sid)| {
            serde_json::json!({"position": position, "at": SystemClock.now_ms(), "kind": "session", "sid": sid})
        })
        .collect();
    // The head: behind the caller's position when the log went back.
    let next = last;
    axum::Json(
        serde_json::json!({"entries": entries, "next": next, "more": false, "head": last, "retention_ms": 86_400_000}),
    )
    .into_response()
}

struct Fake {
    url: String,
    key: SigningKey,
    script: Arc<Mutex<Script>>,
    /// The key set the JWKS endpoint publishes.
    published: Arc<Mutex<serde_json::Value>>,
}

async fn fake_tessera(log: Vec<(i64, &'static str)>) -> Fake {
    let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    let published = Arc::new(Mutex::new(serde_json::json!({"keys": [key.verifying_key().public_jwk().unwrap()]})));
    let script = Arc::new(Mutex::new(Script { log, mode: Mode::Log, from_the_start: 0 }));
    let jwks = Arc::clone(&published);
    let app = Router::new()
        .route("/.well-known/jwks.json", get(move || async move { axum::Json(jwks.lock().unwrap().clone()) }))
        .route("/gateway/v1/revocations", post(feed))
        .with_state(Arc::clone(&script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { url, key, script, published }
}

impl Fake {
    fn token(&self, sid: &str) -> String {
        self.token_at(&self.key, sid, SystemClock.now_secs())
    }

    fn token_at(&self, key: &SigningKey, sid: &str, now: i64) -> String {
        let claims = serde_json::json!({
            "iss": self.url, "aud": "svc", "sub": "alice", "client_id": "app", "sid": sid,
            "jti": format!("jti-{sid}"), "iat": now, "exp": now + 300,
        });
        tessera_jose::encode_jwt(key, Some(tessera_jose::ACCESS_TOKEN_TYP), &claims).unwrap()
    }

    fn verifier(&self, stale_after: Duration) -> TokenVerifier {
        TokenVerifier::start(self.config(stale_after)).unwrap()
    }

    fn config(&self, stale_after: Duration) -> VerifierConfig {
        let mut config = VerifierConfig::new(&self.url, "svc", "svc-verifier", "secret");
        config.poll_wait = Duration::from_millis(500);
        config.stale_after = stale_after;
        config
    }
}

/// Waits (10 s at most) until `verifier` answers `token` as `expected` says.
async fn until(verifier: &TokenVerifier, token: &str, what: &str, expected: impl Fn(&Result<(), Refusal>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = verifier.verify(token).map(drop);
        if expected(&answer) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within 10 s: {what} (last: {answer:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn revoked(answer: &Result<(), Refusal>) -> bool {
    answer == &Err(Refusal::Revoked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_goes_back_is_read_again_so_later_entries_are_not_skipped() {
    let fake = fake_tessera(vec![(1, "s-a"), (2, "s-b")]).await;
    let verifier = fake.verifier(Duration::from_secs(60));
    until(&verifier, &fake.token("s-b"), "s-b revoked", revoked).await;
    until(&verifier, &fake.token("s-c"), "s-c accepted", Result::is_ok).await;

    // Restored from a backup taken before position 2: the follower reads the log again from the start.
    let reads_from_the_start = || fake.script.lock().unwrap().from_the_start;
    let before = reads_from_the_start();
    fake.script.lock().unwrap().log = vec![(1, "s-a")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reads_from_the_start() == before {
        assert!(tokio::time::Instant::now() < deadline, "the log was never read again from the start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the index knew stays: a lost entry does not bring a revoked session back.
    assert!(revoked(&verifier.verify(&fake.token("s-b")).map(drop)));
    // A new revocation takes position 2 again: a follower that had kept its position would never read it.
    fake.script.lock().unwrap().log.push((2, "s-c"));
    until(&verifier, &fake.token("s-c"), "s-c revoked after a `next` that went back", revoked).await;

    // The same through 409 log_rewound.
    {
        let mut script = fake.script.lock().unwrap();
        script.log = vec![(1, "s-d")];
        script.mode = Mode::RewoundOnce;
    }
    until(&verifier, &fake.token("s-d"), "s-d revoked after 409 log_rewound", revoked).await;
    assert!(revoked(&verifier.verify(&fake.token("s-d")).map(drop)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_answering_garbage_leaves_the_index_stale_and_tokens_refused_until_it_recovers() {
    let fake = fake_tessera(vec![(1, "s-a")]).await;
    let verifier = fake.verifier(Duration::from_secs(2));
    let token = fake.token("s-b");
    until(&verifier, &token, "accepted", Result::is_ok).await;
    fake.script.lock().unwrap().mode = Mode::Garbage;
    until(&verifier, &token, "refused as stale (fail closed)", |answer| answer == &Err(Refusal::Stale)).await;
    fake.script.lock().unwrap().mode = Mode::Log;
    until(&verifier, &token, "accepted again once the feed answers", Result::is_ok).await;
    until(&verifier, &fake.token("s-a"), "s-a still revoked", revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_that_changes_mid_flight_is_fetched_again_on_an_unknown_kid() {
    let fake = fake_tessera(Vec::new()).await;
    let clock = Arc::new(tessera_model::clock::ManualClock::new(SystemClock.now_ms()));
    let verifier = TokenVerifier::with_clock(fake.config(Duration::from_secs(60)), clock.clone()).unwrap();
    let now = || clock.now_secs();
    let old = fake.token_at(&fake.key, "s-1", now());
    until(&verifier, &old, "the first key set fetched", Result::is_ok).await;

    // Tessera rotates: the new key signs, both are published.
    let next = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    *fake.published.lock().unwrap() = serde_json::json!({"keys": [
        fake.key.verifying_key().public_jwk().unwrap(), next.verifying_key().public_jwk().unwrap(),
    ]});
    let new = fake.token_at(&next, "s-2", now());
    // Within 30 s of the last fetch an unknown kid is refused and asks for nothing; the old key still serves.
    assert!(matches!(verifier.verify(&new), Err(Refusal::Invalid(_))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(verifier.verify(&new), Err(Refusal::Invalid(_))), "refetched within 30 s");
    assert!(verifier.verify(&old).is_ok());
    clock.advance_ms(31_000);
    let new = fake.token_at(&next, "s-2", now());
    until(&verifier, &new, "the new key fetched on its unknown kid", Result::is_ok).await;
    assert!(verifier.verify(&fake.token_at(&fake.key, "s-1", now())).is_ok(), "the old key too");
}
