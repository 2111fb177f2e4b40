//! `tessera audit endpoint`: sends the forged variants to the target and serves the attacker key set on loopback;
//! for a forward-authentication endpoint, sends the gateway bypass probes too.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tessera_audit::gateway::{self, Request as RouteRequest, Routes, Style};
use tessera_audit::probe::{broken_signature, forge, verdict, Answer, Attacker, Baseline};
use tessera_audit::Report;
use tessera_jose::Jwks;

/// Where and how to send tokens.
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) header: String,
    pub(crate) method: String,
    pub(crate) timeout: Duration,
    /// RFC 7662 mode: POST the token as the `token` form field, authenticated as this client (id, secret), and
    /// count it accepted only when the answer says `"active": true`.
    pub(crate) introspection: Option<(String, String)>,
    /// The target is a forward-authentication endpoint: probe it for gateway bypasses too.
    pub(crate) gateway: Option<Gateway>,
}

/// What the gateway bypass probes need: the routes they start from, and the styles to ask in.
pub(crate) struct Gateway {
    pub(crate) routes: Routes,
    pub(crate) styles: Vec<Style>,
}

/// Serves the attacker JWKS and certificate on 127.0.0.1 and records which paths were requested.
struct AttackerServer {
    base: String,
    fetched: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AttackerServer {
    fn start(attacker: &Attacker) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let (fetched, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (jwks, cert) = (attacker.jwks.clone(), attacker.cert_pem.clone());
        let (seen, halt, origin) = (Arc::clone(&fetched), Arc::clone(&stop), base.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = [0u8; 2048];
                let read = stream.read(&mut request).unwrap_or(0);
                let line = String::from_utf8_lossy(request.get(..read).unwrap_or_default())
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body, content_type) = match path.as_str() {
                    "/jwks.json" => ("200 OK", jwks.as_str(), "application/json"),
                    "/cert.pem" => ("200 OK", cert.as_str(), "application/x-pem-file"),
                    _ => ("404 Not Found", "", "text/plain"),
                };
                if let Ok(mut list) = seen.lock() {
                    list.push(format!("{origin}{path}"));
                }
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            }
        });
        Ok(Self { base, fetched, stop, thread: Some(thread) })
    }
}

impl Drop for AttackerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `audit endpoint --authorize-client`: sends each authorization-endpoint probe as a GET, redirects not followed,
/// and judges the answers.
pub(crate) fn run_authorize(
    url: &str,
    client: &tessera_audit::authorize::Client,
    timeout: Duration,
) -> anyhow::Result<Report> {
    use tessera_audit::authorize::{probes, verdict, Reply};
    let endpoint = reqwest::Url::parse(url).with_context(|| format!("the endpoint {url:?} is not a URL"))?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        bail!("the endpoint must be an http(s) URL, not {url:?}");
    }
    let http =
        reqwest::blocking::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build()?;
    let probes = probes(client);
    let replies: Vec<Result<Reply, String>> = probes
        .iter()
        .map(|probe| {
            let mut target = endpoint.clone();
            target.query_pairs_mut().extend_pairs(&probe.query);
            let response = http.get(target).send().map_err(|err| format!("no answer: {err}"))?;
            let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
            Ok(Reply { status: response.status().as_u16(), location: location.map(str::to_owned) })
        })
        .collect();
    Ok(verdict(url, &probes, &replies)?)
}

/// Sends one token, asking a forward-authentication endpoint about `route` if given; a request whose connection
/// broke (e.g. the server closed it after refusing an oversized body) is retried once on a fresh connection
/// before it counts as unanswered.
fn send(
    client: &reqwest::blocking::Client,
    target: &Target,
    token: Option<&str>,
    route: Option<&RouteRequest>,
) -> Answer {
    match send_once(client, target, token, route) {
        Answer::Failed(why) if why.starts_with("no answer") => send_once(client, target, token, route),
        answer => answer,
    }
}

/// The token header's value: `Bearer TOKEN` in `authorization`, the bare token in any other header.
fn token_value(target: &Target, token: &str) -> String {
    if target.header.eq_ignore_ascii_case("authorization") {
        format!("Bearer {token}")
    } else {
        token.to_owned()
    }
}

fn send_once(
    client: &reqwest::blocking::Client,
    target: &Target,
    token: Option<&str>,
    route: Option<&RouteRequest>,
) -> Answer {
    let extra = match route {
        Some(RouteRequest::Behind { method, path, headers }) => return send_raw(target, method, path, headers, token),
        Some(RouteRequest::Headers(headers)) => headers.as_slice(),
        None => &[],
    };
    let Ok(method) = reqwest::Method::from_bytes(target.method.as_bytes()) else {
        return Answer::Failed(format!("invalid method {:?}", target.method));
    };
    let mut request = client.request(method, &target.url);
    if let Some((id, secret)) = &target.introspection {
        let form: Vec<(&str, &str)> = token.map(|t| vec![("token", t)]).unwrap_or_default();
        request = client
            .post(&target.url)
            .basic_auth(id, Some(secret))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).unwrap_or_default());
    } else if let Some(token) = token {
        request = request.header(target.header.as_str(), token_value(target, token));
    }
    // In order; a repeated name is sent twice, in this order too.
    for (name, value) in extra {
        request = request.header(*name, value.as_str());
    }
    match request.send() {
        Ok(response) if response.status().is_success() && target.introspection.is_some() => {
            let status = response.status().as_u16();
            // Read at most 64 KiB: the verdict needs only the "active" member.
            let mut body = Vec::new();
            let _ = response.take(64 * 1024).read_to_end(&mut body);
            match serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("active").and_then(serde_json::Value::as_bool))
            {
                Some(true) => Answer::Accepted(status),
                Some(false) => Answer::Refused(status),
                None => Answer::Failed(format!("HTTP {status} without an \"active\" member: not an RFC 7662 answer")),
            }
        }
        Ok(response) if response.status().is_success() => Answer::Accepted(response.status().as_u16()),
        Ok(response) => Answer::Refused(response.status().as_u16()),
        Err(err) if err.is_timeout() => Answer::Failed("timed out".into()),
        Err(err) if err.is_builder() || err.is_request() && err.to_string().contains("header") => Answer::Refused(0),
        Err(err) => Answer::Failed(format!("no answer: {err}")),
    }
}

/// The largest response head read from a raw request: the verdict needs only the status.
const MAX_HEAD: usize = 64 * 1024;

/// Sends a request whose path must reach the endpoint exactly as written — reqwest's URL parser would resolve
/// `/x/../` and `%2E%2E` before sending, and the probe would test nothing: HTTP/1.1 over plain TCP.
fn send_raw(target: &Target, method: &str, path: &str, headers: &[(&str, String)], token: Option<&str>) -> Answer {
    let url = match reqwest::Url::parse(&target.url) {
        Ok(url) if url.scheme() == "http" => url,
        Ok(_) => return Answer::Failed("Envoy-style requests carry a raw path, sent over plain http only".into()),
        Err(err) => return Answer::Failed(format!("invalid URL: {err}")),
    };
    let Some(host) = url.host_str() else { return Answer::Failed("the URL has no host".into()) };
    let authority = url.port().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}"));
    let mut head = format!("{method} {}{path} HTTP/1.1\r\nhost: {authority}\r\n", url.path().trim_end_matches('/'));
    let token = token.map(|token| (target.header.as_str(), token_value(target, token)));
    for (name, value) in token.iter().map(|(name, value)| (*name, value)).chain(headers.iter().map(|(n, v)| (*n, v))) {
        // A value that cannot be a header is not sent, as reqwest refuses it in the other requests.
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Answer::Refused(0);
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    let status = || -> std::io::Result<Option<u16>> {
        let address = url.socket_addrs(|| None)?.into_iter().next().ok_or(std::io::ErrorKind::NotFound)?;
        let mut stream = TcpStream::connect_timeout(&address, target.timeout)?;
        stream.set_read_timeout(Some(target.timeout))?;
        stream.set_write_timeout(Some(target.timeout))?;
        stream.write_all(head.as_bytes())?;
        let (mut response, mut chunk) = (Vec::new(), [0u8; 4096]);
        while response.len() < MAX_HEAD {
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(chunk.get(..read).unwrap_or_default());
            let mut parsed = [httparse::EMPTY_HEADER; 64];
            let mut answer = httparse::Response::new(&mut parsed);
            match answer.parse(&response) {
                Ok(httparse::Status::Complete(_)) => return Ok(answer.code),
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Ok(None),
            }
        }
        Ok(None)
    };
    match status() {
        Ok(Some(code)) if (200..300).contains(&code) => Answer::Accepted(code),
        Ok(Some(code)) => Answer::Refused(code),
        Ok(None) => Answer::Failed("not an HTTP answer".into()),
        Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Answer::Failed("timed out".into())
        }
        Err(err) => Answer::Failed(format!("no answer: {err}")),
    }
}

pub(crate) fn run(target: &Target, valid: &str, jwks: Option<&str>, reject: &[String]) -> anyhow::Result<Report> {
    if !(target.url.starts_with("http://") || target.url.starts_with("https://")) {
        bail!("the endpoint must be an http(s) URL, not {:?}", target.url);
    }
    let valid = crate::token::read_token(valid)?;
    let keys = match jwks {
        Some(source) => {
            let fetched = crate::fetch::fetch(source)?;
            serde_json::from_slice::<Jwks>(&fetched.body).with_context(|| format!("{source} is not a JWK Set"))?.keys
        }
        None => Vec::new(),
    };
    let attacker = Attacker::new()?;
    let server = AttackerServer::start(&attacker)?;
    let (jku, x5u) = (format!("{}/jwks.json", server.base), format!("{}/cert.pem", server.base));
    let probes = forge(&valid, &keys, &attacker, &jku, &x5u)?;
    let client = reqwest::blocking::Client::builder()
        .timeout(target.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // A forward-authentication endpoint judges a route: find the styles it understands first, so that the forged
    // tokens ask about a route the valid token is allowed on (a correct endpoint refuses a request naming none).
    let gateway_baselines: Vec<gateway::Baseline> = target
        .gateway
        .iter()
        .flat_map(|g| g.styles.iter().map(move |&style| (g, style)))
        .map(|(g, style)| {
            let (protected, allowed) = g.routes.baseline(style);
            gateway::Baseline {
                style,
                protected: send(&client, target, Some(&valid), Some(&protected)),
                allowed: send(&client, target, Some(&valid), Some(&allowed)),
            }
        })
        .collect();
    let usable: Vec<Style> = gateway_baselines.iter().filter(|b| b.holds()).map(|b| b.style).collect();
    let allowed_route =
        target.gateway.as_ref().zip(usable.first()).map(|(g, &style)| Routes::request(style, &g.routes.allowed));
    let route = allowed_route.as_ref();
    let baseline = Baseline {
        valid: send(&client, target, Some(&valid), route),
        missing: send(&client, target, None, route),
        broken: send(&client, target, Some(&broken_signature(&valid)), route),
    };
    let answered: Vec<_> = probes
        .into_iter()
        .map(|probe| {
            let answer = send(&client, target, Some(&probe.token), route);
            (probe, answer)
        })
        .collect();
    let must_refuse: Vec<_> =
        reject.iter().map(|token| (token.clone(), send(&client, target, Some(token), route))).collect();
    std::thread::sleep(Duration::from_millis(50));
    let fetched = server.fetched.lock().map(|list| list.clone()).unwrap_or_default();
    let fetched: Vec<&str> = fetched.iter().map(String::as_str).collect();
    let mut report = verdict(&target.url, &baseline, &answered, &must_refuse, &fetched);
    match &target.gateway {
        Some(g) => {
            let answered: Vec<_> = gateway::probes(&g.routes, &usable)
                .into_iter()
                .map(|probe| {
                    let answer = send(&client, target, Some(&valid), Some(&probe.request));
                    (probe, answer)
                })
                .collect();
            gateway::verdict(&mut report, &gateway_baselines, &answered);
        }
        None if target.introspection.is_none() => {
            report
                .stats
                .insert("gateway_probes".into(), "not run: give --protected-path for a forward-auth endpoint".into());
        }
        None => {}
    }
    if keys.is_empty() {
        report.not_tested.push("RS/HS key confusion with the public key: no --jwks given".into());
    }
    Ok(report)
}
