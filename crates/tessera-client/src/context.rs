//! The request context a call passes on: the `X-Request-ID` and the W3C trace context (`traceparent`,
//! `tracestate`) of the request being served, so one user action reads as one trace across services.
//!
//! [`PassContext`] is a tower layer for the serving side: it reads the incoming request's headers, keeps those
//! that are well formed, and makes them [`RequestContext::current`] while the handler runs (a Tokio task-local:
//! tasks the handler spawns do not inherit it; give them the context as a request extension instead). Headers a
//! client sends are hostile: a request id is kept only when it is 1 to 128 characters of `A–Z a–z 0–9 - _ . :`,
//! a `traceparent` only in the W3C format (version `00` strictly; a later version by its first four fields), and
//! `tracestate` only beside a valid `traceparent`, at most 512 bytes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request};

/// The request id header Tessera and its services pass along.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C Trace Context's two headers.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C Trace Context's vendor state, passed on with `traceparent`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

const MAX_REQUEST_ID_LEN: usize = 128;
const MAX_TRACESTATE_LEN: usize = 512;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The context of the request being served, to pass on to the calls made for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    request_id: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl RequestContext {
    /// The well-formed context headers of `headers`; the others are dropped.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let single = |name: &HeaderName| {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (Some(value), None) => Some(value.clone()),
                _ => None,
            }
        };
        let request_id = single(&REQUEST_ID).filter(|value| is_request_id(value.as_bytes()));
        let traceparent = single(&TRACEPARENT).filter(|value| is_traceparent(value.as_bytes()));
        let tracestate = single(&TRACESTATE)
            .filter(|value| traceparent.is_some() && value.len() <= MAX_TRACESTATE_LEN && value.to_str().is_ok());
        Self { request_id, traceparent, tracestate }
    }

    /// The context [`PassContext`] set for the request being served, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The request id, if one came with the request.
    #[must_use]
    pub fn request_id(&self) -> Option<&HeaderValue> {
        self.request_id.as_ref()
    }

    /// The `traceparent`, if a valid one came with the request.
    #[must_use]
    pub fn traceparent(&self) -> Option<&HeaderValue> {
        self.traceparent.as_ref()
    }

    /// Runs `future` with this context as [`RequestContext::current`] (a background job's unit of work, say).
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Sets the context's headers on an outgoing request, without replacing any the caller set itself. A call
    /// made outside any request gets a fresh request id, so it can still be followed across services.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let fresh_id = || crate::random_id().ok().and_then(|id| HeaderValue::try_from(id).ok());
        if !headers.contains_key(&REQUEST_ID) {
            if let Some(id) = self.request_id.clone().or_else(fresh_id) {
                headers.insert(REQUEST_ID.clone(), id);
            }
        }
        if !headers.contains_key(&TRACEPARENT) {
            if let Some(traceparent) = &self.traceparent {
                headers.insert(TRACEPARENT.clone(), traceparent.clone());
                if let Some(tracestate) = &self.tracestate {
                    headers.insert(TRACESTATE.clone(), tracestate.clone());
                }
            }
        }
    }
}

fn is_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// W3C Trace Context §3.2: `version-traceid-parentid-flags`, lower-case hex, neither id all zeros, version `ff`
/// invalid; version `00` has exactly these four fields, a later one may append more after a `-`.
fn is_traceparent(value: &[u8]) -> bool {
    let hex = |field: &[u8]| field.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (value.get(0..2), value.get(3..35), value.get(36..52), value.get(53..55))
    else {
        return false;
    };
    let dashes = [2, 35, 52].iter().all(|&at| value.get(at) == Some(&b'-'));
    let rest_ok = match version {
        b"00" => value.len() == 55,
        _ => value.len() == 55 || value.get(55) == Some(&b'-'),
    };
    dashes
        && rest_ok
        && [version, trace_id, parent_id, flags].iter().all(|field| hex(field))
        && version != b"ff"
        && trace_id.iter().any(|&b| b != b'0')
        && parent_id.iter().any(|&b| b != b'0')
}

/// The tower layer that makes each incoming request's context current while it is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassContext;

impl<S> tower_layer::Layer<S> for PassContext {
    type Service = PassContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PassContextService { inner }
    }
}

/// The service [`PassContext`] wraps around another.
#[derive(Debug, Clone)]
pub struct PassContextService<S> {
    inner: S,
}

impl<S, B> tower_service::Service<Request<B>> for PassContextService<S>
where
    S: tower_service::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let context = RequestContext::from_headers(request.headers());
        let served = self.inner.call(request);
        Box::pin(CURRENT.scope(context, served))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_is_kept_only_in_the_w3c_format() {
        assert!(is_traceparent(VALID.as_bytes()));
        assert!(is_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"));
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "",
        ] {
            assert!(!is_traceparent(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn hostile_context_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(&REQUEST_ID, HeaderValue::from_static("abc\"; drop"));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        let context = RequestContext::from_headers(&headers);
        assert_eq!(context, RequestContext::default(), "a bad id, and tracestate without traceparent");

        headers.insert(&REQUEST_ID, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(RequestContext::from_headers(&headers).request_id(), None);
        headers.insert(&REQUEST_ID, HeaderValue::from_static("req-42"));
        headers.append(&REQUEST_ID, HeaderValue::from_static("req-43"));
        assert_eq!(RequestContext::from_headers(&headers).request_id(), None, "two ids: neither is believed");
    }

    #[test]
    fn the_context_goes_out_without_replacing_what_the_caller_set() {
        let mut incoming = HeaderMap::new();
        incoming.insert(&REQUEST_ID, HeaderValue::from_static("req-42"));
        incoming.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        incoming.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        let context = RequestContext::from_headers(&incoming);

        let mut outgoing = HeaderMap::new();
        context.apply(&mut outgoing);
        assert_eq!(outgoing, incoming);

        let mut chosen = HeaderMap::new();
        chosen.insert(&REQUEST_ID, HeaderValue::from_static("mine"));
        context.apply(&mut chosen);
        assert_eq!(chosen.get(&REQUEST_ID).unwrap(), "mine");

        let mut background = HeaderMap::new();
        RequestContext::default().apply(&mut background);
        let id = background.get(&REQUEST_ID).expect("a fresh request id");
        assert!(is_request_id(id.as_bytes()) && background.get(&TRACEPARENT).is_none());
    }

    #[tokio::test]
    async fn the_layer_makes_the_incoming_context_current_for_the_handler() {
        use tower_service::Service as _;
        let handler = tower::service_fn(|_request: Request<()>| async { Ok::<_, ()>(RequestContext::current()) });
        let mut service = tower_layer::Layer::layer(&PassContext, handler);
        let request = Request::builder().header(&REQUEST_ID, "req-7").body(()).unwrap();
        let seen = service.call(request).await.unwrap().expect("current inside the handler");
        assert_eq!(seen.request_id().unwrap(), "req-7");
        assert_eq!(RequestContext::current(), None, "and only there");
    }
}
