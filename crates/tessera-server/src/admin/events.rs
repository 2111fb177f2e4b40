//! `GET /admin/v1/security-events?kind=&sub=&since=&until=&before=&limit=`: the recorded security events, newest
//! first, a page at a time. `since` (inclusive) and `until` (exclusive) are RFC 3339 instants in UTC
//! (`2026-08-04T10:00:00Z`); `before` is the `next` of the previous page; `limit` is 1 to 1000 (default 100).
//! `tessera events` is a client of this.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tessera_model::{SecurityEventKind, SecurityEventQuery};

use super::{authorize, AdminError};
use crate::error::ApiError;
use crate::events::{parse_rfc3339, EventView};
use crate::state::AppState;

/// Events per page at most, and by default.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
/// Longest subject asked for (as the admin API's sessions take).
const MAX_SUB: usize = 256;

/// The parameters as given: each is checked below, so that a bad one is named.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Parameters {
    kind: Option<String>,
    sub: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

fn invalid(why: String) -> ApiError {
    AdminError::InvalidRequest(why.into()).into()
}

impl Parameters {
    fn query(self) -> Result<SecurityEventQuery, ApiError> {
        let kind = match self.kind.as_deref() {
            None => None,
            Some(name) => Some(SecurityEventKind::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = SecurityEventKind::ALL.iter().map(|kind| kind.as_str()).collect();
                invalid(format!("kind {name:?} is not one of {}", known.join(", ")))
            })?),
        };
        if self.sub.as_ref().is_some_and(|sub| sub.is_empty() || sub.len() > MAX_SUB) {
            return Err(invalid(format!("sub must be 1-{MAX_SUB} bytes")));
        }
        let instant = |name: &str, text: Option<String>| {
            text.map(|text| {
                parse_rfc3339(&text).map_err(|why| {
                    invalid(format!("{name} must be an RFC 3339 time in UTC like 2026-08-04T10:00:00Z: {why}"))
                })
            })
            .transpose()
        };
        let (since, until) = (instant("since", self.since)?, instant("until", self.until)?);
        if let (Some(since), Some(until)) = (since, until) {
            if since >= until {
                return Err(invalid("since must be before until".to_owned()));
            }
        }
        let before = self
            .before
            .map(|text| text.parse::<u64>().map_err(|_| invalid(format!("before {text:?} is not an event id"))))
            .transpose()?;
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| invalid(format!("limit {text:?} is not a number from 1 to {MAX_LIMIT}")))?,
        };
        Ok(SecurityEventQuery { kind, sub: self.sub, since, until, before, limit })
    }
}

/// `{events: [{id, at, kind, sub, sid, actor, detail}], next}`: `next` is the `before` of the next page, `null`
/// when there is none.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let parameters: Parameters = match raw.as_deref() {
        None | Some("") => Parameters::default(),
        Some(raw) => serde_urlencoded::from_str(raw).map_err(|err| invalid(format!("bad query string: {err}")))?,
    };
    let query = parameters.query()?;
    let page = query.limit;
    // One more than the page: whether another page follows.
    let mut events = state.store().security_events(&SecurityEventQuery { limit: page + 1, ..query }).await?;
    let more = events.len() > page;
    events.truncate(page);
    let next = more.then(|| events.last().map(|event| event.id)).flatten();
    let listed: Vec<EventView<'_>> = events.iter().map(EventView::of).collect();
    Ok(Json(serde_json::json!({ "events": listed, "next": next })).into_response())
}
