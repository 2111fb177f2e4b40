//! `tessera audit endpoint`: sends the forged variants to the target and serves the attacker key set on loopback.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
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

/// Sends one token; a request whose connection broke (e.g. the server closed it after refusing an oversized body)
/// is retried once on a fresh connection before it counts as unanswered.
fn send(client: &reqwest::blocking::Client, target: &Target, token: Option<&str>) -> Answer {
    match send_once(client, target, token) {
        Answer::Failed(why) if why.starts_with("no answer") => send_once(client, target, token),
        answer => answer,
    }
}

fn send_once(client: &reqwest::blocking::Client, target: &Target, token: Option<&str>) -> Answer {
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
        let value = if target.header.eq_ignore_ascii_case("authorization") {
            format!("Bearer {token}")
        } else {
            token.to_owned()
        };
        request = request.header(target.header.as_str(), value);
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
    let baseline = Baseline {
        valid: send(&client, target, Some(&valid)),
        missing: send(&client, target, None),
        broken: send(&client, target, Some(&broken_signature(&valid))),
    };
    let answered: Vec<_> = probes
        .into_iter()
        .map(|probe| {
            let answer = send(&client, target, Some(&probe.token));
            (probe, answer)
        })
        .collect();
    let must_refuse: Vec<_> = reject.iter().map(|token| (token.clone(), send(&client, target, Some(token)))).collect();
    std::thread::sleep(Duration::from_millis(50));
    let fetched = server.fetched.lock().map(|list| list.clone()).unwrap_or_default();
    let fetched: Vec<&str> = fetched.iter().map(String::as_str).collect();
    let mut report = verdict(&target.url, &baseline, &answered, &must_refuse, &fetched);
    if keys.is_empty() {
        report.not_tested.push("RS/HS key confusion with the public key: no --jwks given".into());
    }
    Ok(report)
}
