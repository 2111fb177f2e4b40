//! Traces and request ids of `tessera serve`: an OTLP receiver started here (over HTTP, and over gRPC) gets the
//! spans of a login, a refresh and a revocation — named after their routes, children of the caller's W3C `traceparent`, with the store calls,
//! the password check and the signing inside, and the token flow as events that name `jti`, `sid` and `sub` — and
//! no exported byte carries a token, a password or the admin credential. Log lines written while a request is
//! served carry its request id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use common::{add_user, eventually, request, Server, PASSWORD};
use serde_json::{json, Value};

const ADMIN: &str = "admin-credential-for-the-tracing-tests-0123456789";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One request a receiver got.
struct Got {
    path: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }
}

/// What a receiver got, in order.
type Received = Arc<Mutex<Vec<Got>>>;

/// A minimal HTTP/1.1 receiver (an OTLP/HTTP collector, a webhook, a JWKS endpoint): keeps every request, answers
/// 200 `{}`.
fn http_receiver() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let keep = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            // A thread per connection: a client keeps its connection open for the next request.
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || serve_connection(stream, &keep));
        }
    });
    (addr, received)
}

fn serve_connection(stream: std::net::TcpStream, keep: &Received) {
    let mut reader = BufReader::new(stream);
    let mut path = String::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            let length =
                headers.iter().find(|(name, _)| name == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            keep.lock().unwrap().push(Got {
                path: std::mem::take(&mut path),
                headers: std::mem::take(&mut headers),
                body,
            });
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            reader.get_mut().write_all(answer.as_bytes()).unwrap();
        } else if path.is_empty() {
            path = line.split(' ').nth(1).unwrap_or_default().to_owned();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
}

/// A minimal OTLP/gRPC collector: the trace service, keeping each export as OTLP/JSON (so one set of checks reads
/// both transports).
fn otlp_grpc_receiver() -> (SocketAddr, Received) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

    struct Collector(Received);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export".to_owned();
            let body = serde_json::to_vec(request.get_ref()).unwrap();
            self.0.lock().unwrap().push(Got { path, headers: Vec::new(), body });
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(Collector(Arc::clone(&received)));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(listener).unwrap());
            tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await.unwrap();
        });
    });
    (addr, received)
}

fn configure(dir: &std::path::Path, tracing: &str) {
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    let config = format!("[server]\nadmin_token_file = \"admin-token\"\n\n{tracing}");
    std::fs::write(dir.join("tessera.toml"), config).unwrap();
}

/// Every span of every export, flattened: (name, span as JSON).
fn spans(received: &[Got]) -> Vec<Value> {
    received
        .iter()
        .flat_map(|got| {
            let export: Value = serde_json::from_slice(&got.body).unwrap();
            let mut all = Vec::new();
            for resource in export["resourceSpans"].as_array().unwrap() {
                for scope in resource["scopeSpans"].as_array().unwrap() {
                    all.extend(scope["spans"].as_array().unwrap().iter().cloned());
                }
            }
            all
        })
        .collect()
}

/// An attribute of a span or event, as a string (OTLP/JSON wraps each value in its type).
fn attribute(item: &Value, key: &str) -> Option<String> {
    let found = item["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let value = &found["value"];
    value["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| value["intValue"].as_str().map(str::to_owned))
        .or_else(|| value["intValue"].as_i64().map(|n| n.to_string()))
}

fn json_str(value: &Value) -> String {
    value.as_str().unwrap().to_owned()
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|span| span["name"] == name).collect()
}

fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a str> {
    spans
        .iter()
        .filter(|span| span["parentSpanId"] == parent["spanId"])
        .map(|span| span["name"].as_str().unwrap())
        .collect()
}

fn event<'a>(span: &'a Value, name: &str) -> &'a Value {
    span["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["name"] == name)
        .unwrap_or_else(|| panic!("no event {name} in {span}"))
}

#[test]
fn spans_of_a_login_a_refresh_and_a_revocation_reach_the_collector_without_a_token() {
    let (collector, received) = http_receiver();
    traced_flow(&format!("http://{collector}"), "http/json", &received, "/v1/traces");
}

#[test]
fn spans_reach_a_collector_over_grpc() {
    let (collector, received) = otlp_grpc_receiver();
    let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    traced_flow(&format!("http://{collector}"), "grpc", &received, path);
}

/// The trace id and parent span id of a W3C `traceparent` header.
fn trace_context(got: &Got) -> (String, String) {
    let header = got.header("traceparent").unwrap_or_else(|| panic!("no traceparent sent to {}", got.path));
    let parts: Vec<&str> = header.split('-').collect();
    assert!(parts.len() == 4 && parts[0] == "00", "{header}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// A login, a refresh and a revocation against a server exporting to `endpoint` over `protocol`; then what the
/// collector received (at `path`) is checked, and the trace context Tessera's own calls (a trusted issuer's JWKS
/// fetch, the security-event webhook) carried.
fn traced_flow(endpoint: &str, protocol: &str, received: &Received, path: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (outside, called) = http_receiver();
    std::fs::write(dir.path().join("webhook-secret"), "webhook-secret-for-the-tracing-tests").unwrap();
    configure(
        dir.path(),
        &format!(
            "[tracing]\notlp_endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\n\n\
             [events.webhook]\nurl = \"http://{outside}/hook\"\nsecret_file = \"webhook-secret\"\n\n\
             [[trusted_issuers]]\nissuer = \"https://partner.test/\"\njwks_url = \"http://{outside}/jwks\"\naudiences = [\"api\"]\n"
        ),
    );
    add_user(dir.path(), "alice");
    let mut server = Server::start_with(dir.path(), |command| {
        command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    });
    let addr = server.addr;

    let traceparent = format!("traceparent: 00-{TRACE_ID}-{CALLER_SPAN}-01\r\nx-request-id: req-trace-1\r\n");
    let login = json!({"username": "alice", "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    let (status, body) =
        request(addr, "POST", "/auth/login", &format!("{traceparent}content-type: application/json\r\n"), &login)
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let login: Value = serde_json::from_str(&body).unwrap();
    let (access, refresh) = (login["access_token"].as_str().unwrap(), login["refresh_token"].as_str().unwrap());
    let form = format!("grant_type=refresh_token&refresh_token={refresh}");
    let (status, body) =
        request(addr, "POST", "/oauth2/token", "content-type: application/x-www-form-urlencoded\r\n", &form).unwrap();
    assert_eq!(status, 200, "{body}");
    let refreshed: Value = serde_json::from_str(&body).unwrap();
    let sid = common::claims(access)["sid"].as_str().unwrap().to_owned();
    let admin = format!("authorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\n");
    let (status, body) =
        request(addr, "POST", "/admin/v1/revocations", &admin, &json!({"sid": sid}).to_string()).unwrap();
    assert!(status < 300, "{status} {body}");

    let names =
        |received: &[Got]| spans(received).iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    eventually("the spans of all three requests exported", || {
        let names = names(&received.lock().unwrap());
        ["POST /auth/login", "POST /oauth2/token", "POST /admin/v1/revocations", "revocation.sync", "jwks.fetch"]
            .iter()
            .all(|name| names.iter().any(|n| n == name))
    });
    eventually("the admin request's two events delivered to the webhook", || {
        called.lock().unwrap().iter().filter(|got| got.path == "/hook").count() == 2
    });
    // Stopped gracefully, the server flushes what it still holds.
    std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    server.child.wait().unwrap();

    let received = received.lock().unwrap();
    assert!(received.iter().all(|got| got.path == path), "sent to the traces path");
    let all = spans(&received);

    // The login: a child of the caller's span, in the caller's trace, with its request id, route and status, and
    // the password check, the store calls and the signing inside it.
    let login_span = named(&all, "POST /auth/login")[0];
    assert_eq!(login_span["traceId"], TRACE_ID);
    assert_eq!(login_span["parentSpanId"], CALLER_SPAN);
    assert_eq!(attribute(login_span, "request_id").as_deref(), Some("req-trace-1"));
    assert_eq!(attribute(login_span, "http.route").as_deref(), Some("/auth/login"));
    assert_eq!(attribute(login_span, "http.response.status_code").as_deref(), Some("200"));
    let inside = children(&all, login_span);
    for child in ["password.verify", "store user", "store create_session", "token.sign"] {
        assert!(inside.contains(&child), "{child} in {inside:?}");
    }
    let issued = event(login_span, "token.issued");
    assert_eq!(attribute(issued, "sid").as_deref(), Some(sid.as_str()));
    assert_eq!(attribute(issued, "sub").as_deref(), Some("alice"));
    assert_eq!(attribute(issued, "jti"), common::claims(access)["jti"].as_str().map(str::to_owned));

    // The refresh: a trace of its own (no traceparent), the rotation as an event.
    let refresh_span = named(&all, "POST /oauth2/token")[0];
    assert_ne!(refresh_span["traceId"], TRACE_ID);
    let rotated = event(refresh_span, "session.refresh");
    assert_eq!(attribute(rotated, "outcome").as_deref(), Some("rotated"));
    assert_eq!(attribute(rotated, "sid").as_deref(), Some(sid.as_str()));
    assert!(children(&all, refresh_span).contains(&"store refresh"));

    // The revocation: committed in the admin request, then read back from the log by the node's sync.
    let revoked = event(named(&all, "POST /admin/v1/revocations")[0], "revocation.committed");
    assert_eq!(attribute(revoked, "revocation_kind").as_deref(), Some("session"));
    assert_eq!(attribute(revoked, "revocation_target").as_deref(), Some(sid.as_str()));

    // Tessera's own calls carry the trace context: the webhook the span of the request that raised the event (and
    // its request id), the JWKS fetch a client span of its own.
    // Both of the admin request's events (the session revoked, the admin's change) name it, whichever is
    // delivered first.
    let called = called.lock().unwrap();
    let hooks: Vec<&Got> = called.iter().filter(|got| got.path == "/hook").collect();
    assert_eq!(hooks.len(), 2, "two events");
    let admin_span = named(&all, "POST /admin/v1/revocations")[0];
    for hook in hooks {
        assert_eq!(trace_context(hook), (json_str(&admin_span["traceId"]), json_str(&admin_span["spanId"])));
        assert_eq!(hook.header("x-request-id"), attribute(admin_span, "request_id").as_deref());
    }
    let fetch = called.iter().find(|got| got.path == "/jwks").unwrap();
    let (trace, parent) = trace_context(fetch);
    let fetch_span = named(&all, "jwks.fetch").into_iter().find(|span| span["spanId"] == parent.as_str()).unwrap();
    assert_eq!(fetch_span["traceId"], trace.as_str());
    assert_eq!(attribute(fetch_span, "issuer").as_deref(), Some("https://partner.test/"));

    // Nothing exported carries a secret.
    let secrets = [
        access,
        refresh,
        refreshed["access_token"].as_str().unwrap(),
        refreshed["refresh_token"].as_str().unwrap(),
        PASSWORD,
        ADMIN,
    ];
    for got in received.iter() {
        let text = String::from_utf8_lossy(&got.body);
        for secret in secrets {
            assert!(!text.contains(secret), "an exported span carries a secret");
        }
    }
}

#[test]
fn log_lines_written_while_serving_a_request_carry_its_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tessera.toml"), "[server]\nlog_format = \"json\"\n").unwrap();
    let log = dir.path().join("tessera.log");
    let server = Server::start_logging(dir.path(), "debug", &log);
    let (status, _) =
        request(server.addr, "GET", "/verify", "authorization: Bearer not.a.token\r\nx-request-id: req-log-7\r\n", "")
            .unwrap();
    assert_eq!(status, 401);
    eventually("the refusal logged with the request id", || {
        std::fs::read_to_string(&log).unwrap().lines().any(|line| {
            line.contains("access token refused")
                && serde_json::from_str::<Value>(line).is_ok_and(|line| line["request_id"] == "req-log-7")
        })
    });
    // A line written outside any request has no id.
    let startup = std::fs::read_to_string(&log).unwrap();
    let serving = startup.lines().find(|line| line.contains("tessera is serving")).unwrap();
    assert!(serde_json::from_str::<Value>(serving).unwrap().get("request_id").is_none());
}
