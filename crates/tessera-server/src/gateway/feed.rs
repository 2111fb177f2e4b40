//! `/gateway/v1/revocations`: the revocation log for services that verify tokens in process but are not Tessera
//! nodes (no database access), with the guarantees the nodes have.
//!
//! - **Who.** A registered client holding the [`REVOCATION_FEED_SCOPE`] scope, authenticated on every request as at
//!   the introspection endpoint: `client_secret_basic` (GET or POST), or `client_secret_post` / `private_key_jwt` in
//!   a POSTed form. A secret is never taken from the query string, where proxies log it. Each client has a budget
//!   of requests a minute (`rate_limits.feed_per_client`) and of long polls waiting at once
//!   (`rate_limits.feed_waits_per_client`); beyond either, 429 with `Retry-After`.
//! - **From where.** `after` is the last position the caller applied, 0 to start: the answer holds the entries
//!   after it, oldest first (a log of several partitions — Redis Cluster — has a position per partition: `after`
//!   and `next` are then the positions joined by dots, `"12.0.7"`, and each entry names its `partition`), at
//!   most `limit` (1 to 1000, default 1000), leaving out those older than the nodes' retention (their tokens have
//!   expired: a cold start's snapshot is the entries within retention, in pages).
//!   The caller asks next from `next`, at once while `more` is true.
//! - **Long polling.** With `wait` (seconds; at most 30 and the request timeout less a second, a longer wait is
//!   shortened) and nothing new, the answer waits until the log grows — a revocation on this node, or one another
//!   node made that this node's sync sees — or the time is up, or the server shuts down, and is then empty.
//! - **Nothing skipped.** Positions are the log's own: increasing, not always consecutive (a PostgreSQL sequence
//!   skips numbers). Asking from `next` sees every entry the nodes see, in their order: `next` moves past a
//!   position only once everything up to it was handed out or is past retention. A log that went back (a restore
//!   from an older backup) is answered 409 `log_rewound` with the current `head`: start again from 0 (or, with
//!   several partitions, from 0 in those the caller had passed), as the nodes do.
//!
//! Each entry is the revocation as the nodes apply it (`kind` and its fields), its `position` and `at` (when it was
//! recorded, Unix milliseconds); who asked for it and why stay with the admin API.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tessera_model::{LogCursor, Millis, Revocation, RevocationEntry, REVOCATION_FEED_SCOPE};

use crate::error::ApiError;
use crate::state::AppState;

/// Most entries in one answer.
pub(crate) const MAX_ENTRIES: usize = 1000;
/// Longest a request may wait for the log to grow.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// What is left of the request timeout for answering after the wait.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Why the feed refused a request. Status, code and description of each are set here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedError {
    /// A parameter out of range or malformed, and which.
    InvalidRequest(&'static str),
    /// The client is authenticated but was not granted the feed's scope.
    NotGranted,
    /// The caller has passed positions the log no longer has: it went back.
    Rewound { head: LogCursor },
    /// The client already has `rate_limits.feed_waits_per_client` long polls waiting.
    TooManyWaiting,
}

impl IntoResponse for FeedError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidRequest(why) => ApiError::bad_request(why).into_response(),
            Self::NotGranted => ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the client was not granted the revocations:read scope",
            )
            .into_response(),
            Self::Rewound { head } => (
                StatusCode::CONFLICT,
                Json(serde_json::json!({
                    "error": "log_rewound",
                    "error_description": "the revocation log went back (restored from an older backup): start again from position 0 in each partition where you are past the head",
                    "head": head,
                })),
            )
                .into_response(),
            Self::TooManyWaiting => ApiError::too_many(1).into_response(),
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Ask {
    after: LogCursor,
    limit: usize,
    wait: Duration,
}

/// The query (GET) or form (POST) parameters, each at most once: `after`, `limit`, `wait`. Others (client
/// authentication in a form) are left to client authentication.
fn ask(pairs: &[(String, String)], request_timeout: Duration) -> Result<Ask, FeedError> {
    let one = |name: &'static str| -> Result<Option<&str>, FeedError> {
        let mut values = pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (_, Some(_)) => Err(FeedError::InvalidRequest("a parameter is repeated")),
            (value, None) => Ok(value),
        }
    };
    let number = |name, why| -> Result<Option<u64>, FeedError> {
        one(name)?.map(|text| text.parse::<u64>().map_err(|_| FeedError::InvalidRequest(why))).transpose()
    };
    let after = one("after")?
        .map(|text| {
            text.parse::<LogCursor>().map_err(|_| {
                FeedError::InvalidRequest(
                    "after must be a log position (a whole number, 0 to start), or one per partition joined by dots",
                )
            })
        })
        .transpose()?
        .unwrap_or_default();
    let limit = number("limit", "limit must be a whole number from 1 to 1000")?.unwrap_or(MAX_ENTRIES as u64);
    let limit = usize::try_from(limit)
        .ok()
        .filter(|limit| (1..=MAX_ENTRIES).contains(limit))
        .ok_or(FeedError::InvalidRequest("limit must be a whole number from 1 to 1000"))?;
    let longest = MAX_WAIT.min(request_timeout.saturating_sub(ANSWER_MARGIN));
    let wait = Duration::from_secs(number("wait", "wait must be whole seconds")?.unwrap_or(0)).min(longest);
    Ok(Ask { after, limit, wait })
}

#[derive(Serialize)]
struct Entry<'a> {
    /// Left out in a log of one partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<usize>,
    position: i64,
    at: Millis,
    #[serde(flatten)]
    revocation: &'a Revocation,
}

#[derive(Serialize)]
struct Page<'a> {
    entries: Vec<Entry<'a>>,
    /// The position to ask from next.
    next: LogCursor,
    /// Whether more entries may follow at once (the page is full).
    more: bool,
    /// The newest position of the log.
    head: LogCursor,
    /// How far back entries are kept for verifiers (their tokens have expired beyond it), in milliseconds.
    retention_ms: Millis,
}

/// `GET` or `POST /gateway/v1/revocations`.
pub(crate) async fn feed(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, Response> {
    let query: Vec<(String, String)> = match query.as_deref() {
        Some(query) => serde_urlencoded::from_str(query)
            .map_err(|_| FeedError::InvalidRequest("the query string is malformed").into_response())?,
        None => Vec::new(),
    };
    let form = if method == Method::POST {
        crate::oauth2::parse_form(&headers, &body).map_err(IntoResponse::into_response)?
    } else {
        Vec::new()
    };
    if query.iter().any(|(name, _)| name.starts_with("client_")) {
        return Err(
            FeedError::InvalidRequest("client credentials go in the Authorization header or the form").into_response()
        );
    }
    let client =
        crate::oauth2::client_auth::authenticate(&state, &headers, &form).await.map_err(IntoResponse::into_response)?;
    if !client.scopes.iter().any(|scope| scope == REVOCATION_FEED_SCOPE) {
        return Err(FeedError::NotGranted.into_response());
    }
    if let Err(wait) = state.limits().feed(&client.client_id) {
        return Err(ApiError::too_many(wait).into_response());
    }
    let ask = ask(&[query, form].concat(), state.settings().request_timeout).map_err(IntoResponse::into_response)?;
    let (entries, head) = read(&state, &ask, &client.client_id).await.map_err(|err| match err {
        Read::Feed(err) => err.into_response(),
        Read::Store(err) => ApiError::from(err).into_response(),
    })?;
    let retention = state.revocations().retention();
    let more = entries.len() == ask.limit;
    let mut next = ask.after.clone();
    entries.iter().for_each(|entry| next.advance(entry));
    // A page that is not full holds everything after `after` up to the head read before it (older entries are
    // past retention): the caller may go on from the head, and never asks again for positions it has passed.
    if !more {
        next.catch_up(&head);
    }
    let mut newest = head;
    newest.catch_up(&next);
    let partitioned = newest.partitions() > 1;
    let body = Page {
        next,
        more,
        entries: entries
            .iter()
            .map(|e| Entry {
                partition: partitioned.then_some(e.partition),
                position: e.id,
                at: e.at,
                revocation: &e.revocation,
            })
            .collect(),
        head: newest,
        retention_ms: retention.max_token_lifetime_ms.saturating_add(retention.leeway_ms),
    };
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

enum Read {
    Feed(FeedError),
    Store(tessera_store::StoreError),
}

impl From<tessera_store::StoreError> for Read {
    fn from(err: tessera_store::StoreError) -> Self {
        Self::Store(err)
    }
}

/// The entries after `ask.after` and the log's head, waiting up to `ask.wait` for the log to grow when there are
/// none. Waiting takes one of the client's long-poll slots, and is refused when it holds them all.
async fn read(state: &AppState, ask: &Ask, client_id: &str) -> Result<(Vec<RevocationEntry>, LogCursor), Read> {
    let deadline = tokio::time::Instant::now() + ask.wait;
    // Watched before the first read: growth between the read and the wait is not missed.
    let mut growth = state.log_growth();
    let mut closing = state.closing();
    let mut slot = None;
    loop {
        let now = state.clock().now_ms();
        let since = state.revocations().retention().horizon(now);
        let (head, entries) = state.store().head_and_revocations_after(&ask.after, since, ask.limit).await?;
        if ask.after.is_past(&head) {
            return Err(Read::Feed(FeedError::Rewound { head }));
        }
        if !entries.is_empty() || tokio::time::Instant::now() >= deadline || *closing.borrow() {
            return Ok((entries, head));
        }
        if slot.is_none() {
            slot = Some(state.limits().feed_wait(client_id).ok_or(Read::Feed(FeedError::TooManyWaiting))?);
        }
        let _waiting = Waiting::start();
        tokio::select! {
            grew = growth.changed() => if grew.is_err() { return Ok((entries, head)) },
            // Time is up, or the server is shutting down: answer with what there is (nothing new).
            () = tokio::time::sleep_until(deadline) => return Ok((entries, head)),
            _ = closing.wait_for(|closing| *closing) => return Ok((entries, head)),
        }
    }
}

/// Counts a request waiting for the log to grow (`tessera_revocation_feed_waiting`) while it lives.
struct Waiting;

impl Waiting {
    fn start() -> Self {
        metrics::gauge!("tessera_revocation_feed_waiting").increment(1.0);
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!("tessera_revocation_feed_waiting").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(query).unwrap()
    }

    #[test]
    fn parameters_have_defaults_and_bounds() {
        let timeout = Duration::from_secs(10);
        assert_eq!(
            ask(&pairs(""), timeout),
            Ok(Ask { after: LogCursor::default(), limit: 1000, wait: Duration::ZERO })
        );
        assert_eq!(
            ask(&pairs("after=42&limit=10&wait=9"), timeout),
            Ok(Ask { after: LogCursor::at(vec![42]), limit: 10, wait: Duration::from_secs(9) })
        );
        assert_eq!(ask(&pairs("after=42.0.7"), timeout).map(|a| a.after), Ok(LogCursor::at(vec![42, 0, 7])));
        for bad in [
            "after=-1",
            "after=x",
            "after=9223372036854775808",
            "limit=0",
            "limit=1001",
            "wait=1.5",
            "wait=-1",
            "after=1&after=2",
            "after=1..2",
            "after=1.",
        ] {
            assert!(matches!(ask(&pairs(bad), timeout), Err(FeedError::InvalidRequest(_))), "{bad}");
        }
        // A longer wait is shortened: to the request timeout less a second, and never more than 30 s.
        assert_eq!(ask(&pairs("wait=10"), timeout).map(|a| a.wait), Ok(Duration::from_secs(9)));
        assert_eq!(ask(&pairs("wait=30"), Duration::from_secs(60)).map(|a| a.wait), Ok(Duration::from_secs(30)));
        assert_eq!(ask(&pairs("wait=3600"), Duration::from_secs(60)).map(|a| a.wait), Ok(Duration::from_secs(30)));
    }
}
