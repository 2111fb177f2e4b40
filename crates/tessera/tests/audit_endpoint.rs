//! The endpoint probe against a deliberately vulnerable verifier: each flaw switched on is found, and with every
//! flaw off there is nothing to report. The verifier is a forward-authentication endpoint too (every route under
//! `/admin` is forbidden), so the gateway bypass probes are proven the same way, and against Tessera's own
//! `/verify` with a route rule. (Tessera's /verify without route rules is probed in `serve.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use base64::Engine as _;
use serde_json::Value;
use tessera_jose::{
    base64url, encode_jwt, Algorithm, Audience, Claims, KeySet, Policy, RsaBits, SigningKey, TokenError, Verifier,
};

mod common;

/// One switch per flaw.
#[derive(Clone, Copy, Default, Debug)]
struct Flaws {
    alg_none: bool,
    no_signature_check: bool,
    hs_rs_confusion: bool,
    trust_jku: bool,
    kid_files: bool,
    skip_exp: bool,
    /// Gateway: `X-Forwarded-*` before `X-Original-*`, the first of a repeated header, and headers before the
    /// Envoy path — instead of refusing (400) any disagreement.
    prefers_forwarded_headers: bool,
    /// Gateway: rules match the raw path, not the path as the upstream decodes it.
    matches_raw_path: bool,
    /// Gateway: a request naming no route is judged as `/`, instead of refused (400).
    missing_route_is_root: bool,
    /// Gateway: `/admin` does not cover `/ADMIN` (the correct fixture's upstream is case-insensitive).
    case_sensitive_rules: bool,
}

struct Fixture {
    url: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn decode_json(segment: &str) -> Option<Value> {
    serde_json::from_slice(&base64url::decode(segment)?).ok()
}

fn http_get(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = TcpStream::connect(authority).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(response[split + 4..].to_vec())
}

fn hmac_ok(key: &[u8], input: &str, signature: &str) -> bool {
    base64url::decode(signature)
        .is_some_and(|sig| hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes(), &sig).is_ok())
}

fn accepts(token: &str, flaws: Flaws, keys: &KeySet, rsa_pem: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let Some(header) = decode_json(h) else { return false };
    let alg = header["alg"].as_str().unwrap_or_default();
    let input = format!("{h}.{p}");
    if flaws.alg_none && alg.eq_ignore_ascii_case("none") {
        return true;
    }
    if flaws.no_signature_check {
        return decode_json(p).is_some();
    }
    if flaws.hs_rs_confusion && alg == "HS256" && hmac_ok(rsa_pem.as_bytes(), &input, s) {
        return true;
    }
    if flaws.trust_jku {
        if let Some(url) = header["jku"].as_str() {
            // The flaw: whatever key the URL serves is trusted (the first EC key, here).
            let jwks: Option<Value> = http_get(url).and_then(|body| serde_json::from_slice(&body).ok());
            let point = jwks.and_then(|jwks| {
                let key = &jwks["keys"][0];
                let (x, y) = (base64url::decode(key["x"].as_str()?)?, base64url::decode(key["y"].as_str()?)?);
                Some([vec![4u8], x, y].concat())
            });
            let signature = base64url::decode(s).unwrap_or_default();
            return point.is_some_and(|point| {
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &signature)
                    .is_ok()
            });
        }
    }
    if flaws.kid_files && alg == "HS256" {
        if let Some(kid) = header["kid"].as_str() {
            let key = std::fs::read(format!("/srv/app/keys/{kid}"))
                .or_else(|_| std::fs::read(std::path::Path::new("/srv/app/keys").join(kid)));
            let key = key.or_else(|_| std::fs::read(kid));
            return key.is_ok_and(|key| hmac_ok(&key, &input, s));
        }
    }
    match Verifier::new(keys.clone(), Policy::jws()).verify(token, now()) {
        Ok(_) => true,
        Err(TokenError::Expired { .. }) => flaws.skip_exp,
        Err(_) => false,
    }
}

/// The path as the upstream sees it: unreserved characters decoded, dot segments removed, repeated slashes
/// collapsed; `None` when it stays ambiguous (an encoded `/` or `\`, a NUL, bad encoding, `..` above the root).
fn normalise(path: &str) -> Option<String> {
    let mut decoded = String::new();
    let mut bytes = path.strip_prefix('/')?.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let value = u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?;
                match value {
                    b'/' | b'\\' | 0 => return None,
                    v if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => decoded.push(char::from(v)),
                    v => decoded.push_str(&format!("%{v:02X}")),
                }
            }
            b'\\' | 0 => return None,
            other => decoded.push(char::from(other)),
        }
    }
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            segment => segments.push(segment),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

/// The forward-auth answer for a valid token: 200, 403 for a route under `/admin`, 400 for an ambiguous request.
/// `target` is the request target: `/api` asks with headers (nginx, Traefik), `/api/PATH` as Envoy does.
fn judge_route(target: &str, headers: &[(String, String)], flaws: Flaws) -> &'static str {
    let values = |name: &str| headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    // What each style's headers say: (method, URI) values, X-Original-* then X-Forwarded-*.
    let named = [
        (values("x-original-method"), values("x-original-uri")),
        (values("x-forwarded-method"), values("x-forwarded-uri")),
    ];
    let envoy = target.strip_prefix("/api").filter(|rest| rest.starts_with('/'));
    let uri = if flaws.prefers_forwarded_headers {
        // The flaw: the first header found decides, whoever sent it.
        named.iter().rev().find_map(|(_, uris)| uris.first().cloned()).or_else(|| envoy.map(str::to_owned))
    } else if let Some(path) = envoy {
        // Envoy names the request in its request line; other headers are the client's.
        Some(path.to_owned())
    } else {
        let uris: Vec<&String> = named.iter().flat_map(|(_, uris)| uris).collect();
        let methods: Vec<&String> = named.iter().flat_map(|(methods, _)| methods).collect();
        if uris.windows(2).any(|w| w[0] != w[1]) || methods.windows(2).any(|w| w[0] != w[1]) {
            return "400 Bad Request";
        }
        uris.first().map(|uri| (*uri).clone())
    };
    let Some(uri) = uri.or_else(|| flaws.missing_route_is_root.then(|| "/".to_owned())) else {
        return "400 Bad Request";
    };
    let raw = uri.split('?').next().unwrap_or_default();
    let path = if flaws.matches_raw_path { Some(raw.to_owned()) } else { normalise(raw) };
    let Some(path) = path else { return "400 Bad Request" };
    let path = if flaws.case_sensitive_rules { path } else { path.to_ascii_lowercase() };
    if path == "/admin" || path.starts_with("/admin/") {
        "403 Forbidden"
    } else {
        "200 OK"
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn start_fixture(flaws: Flaws, keys: KeySet, rsa_pem: String) -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let halt = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !halt.load(Ordering::SeqCst) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buffer = vec![0u8; 128 * 1024];
            let mut read = 0;
            while let Ok(n) = stream.read(&mut buffer[read..]) {
                read += n;
                if n == 0 || buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") || read == buffer.len() {
                    break;
                }
            }
            let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let mut lines = request.lines();
            let request_line: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
            let headers: Vec<(String, String)> = lines
                .take_while(|line| !line.is_empty())
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
                .collect();
            let token = headers
                .iter()
                .find(|(name, _)| name == "authorization")
                .and_then(|(_, value)| value.strip_prefix("Bearer "));
            let ok = token.is_some_and(|t| accepts(t, flaws, &keys, &rsa_pem));
            let status = match (ok, request_line.as_slice()) {
                (true, [_, target, _]) => judge_route(target, &headers, flaws),
                (true, _) => "400 Bad Request",
                (false, _) => "401 Unauthorized",
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Fixture { url, stop }
}

fn token(key: &SigningKey, exp: i64) -> String {
    let claims = Claims {
        iss: Some("https://issuer.test".into()),
        sub: Some("alice".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(exp),
        iat: Some(now() - 10),
        jti: Some(format!("j{exp}")),
        client_id: Some("web".into()),
        ..Claims::default()
    };
    encode_jwt(key, Some("at+jwt"), &claims).unwrap()
}

fn spki_pem(key: &SigningKey) -> String {
    let jwk = key.verifying_key().public_jwk().unwrap();
    let (n, e) =
        (base64url::decode(jwk.n.as_deref().unwrap()).unwrap(), base64url::decode(jwk.e.as_deref().unwrap()).unwrap());
    let der = aws_lc_rs::rsa::PublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.as_der().unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
}

/// The gateway probe's routes for the fixture: `DELETE /admin/users` is forbidden, `GET /public` allowed.
const ROUTES: [&str; 6] =
    ["--protected-path", "/admin/users", "--protected-method", "DELETE", "--allowed-path", "/public"];

fn audit(fixture: &Fixture, valid: &str, expired: &str, jwks: &std::path::Path) -> (i32, Value) {
    audit_with(&fixture.url, valid, &["--jwks", jwks.to_str().unwrap(), "--reject", expired], &ROUTES)
}

fn audit_with(url: &str, valid: &str, args: &[&str], routes: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["audit", "endpoint", url, "--token", valid, "--format", "json"])
        .args(args)
        .args(routes)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), report)
}

fn finding_ids(report: &Value) -> BTreeSet<String> {
    report["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn each_flaw_of_a_vulnerable_verifier_is_found_and_none_when_all_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(Algorithm::RS256, RsaBits::Bits2048).unwrap();
    let keys = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(&keys.to_public_jwks()).unwrap()).unwrap();
    let (valid, expired) = (token(&key, now() + 600), token(&key, now() - 600));
    let pem = spki_pem(&key);

    let clean = start_fixture(Flaws::default(), keys.clone(), pem.clone());
    let (code, report) = audit(&clean, &valid, &expired, &jwks);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
    assert!(report["not_tested"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(code, 0);
    assert!(report["stats"]["probes_sent"].as_u64().unwrap() >= 30);
    assert_eq!(report["stats"]["gateway_styles_probed"], "nginx, traefik, envoy", "{report}");
    assert!(report["stats"]["gateway_probes_sent"].as_u64().unwrap() >= 50, "{report}");

    let cases: [(Flaws, &[&str]); 6] = [
        (Flaws { alg_none: true, ..Flaws::default() }, &["ENDPOINT-ALG-NONE"]),
        (Flaws { no_signature_check: true, ..Flaws::default() }, &["ENDPOINT-NO-SIGNATURE-CHECK"]),
        (Flaws { hs_rs_confusion: true, ..Flaws::default() }, &["ENDPOINT-ALG-CONFUSION"]),
        (Flaws { trust_jku: true, ..Flaws::default() }, &["ENDPOINT-HEADER-JKU", "ENDPOINT-FETCHES-HEADER-URL"]),
        (Flaws { kid_files: true, ..Flaws::default() }, &["ENDPOINT-KID-INJECTION"]),
        (Flaws { skip_exp: true, ..Flaws::default() }, &["ENDPOINT-ACCEPTS-REJECTED"]),
    ];
    for (flaws, expected) in cases {
        let fixture = start_fixture(flaws, keys.clone(), pem.clone());
        let (code, report) = audit(&fixture, &valid, &expired, &jwks);
        let ids: Vec<&str> = report["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
        for id in expected {
            assert!(ids.contains(id), "{flaws:?}: {id} not in {ids:?}");
        }
        assert_eq!(code, 1, "{flaws:?}: a forged token got through, so the exit code is 1");
    }
}

#[test]
fn an_endpoint_that_accepts_nothing_gives_a_partial_report_not_a_clean_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
    let other =
        KeySet::from_keys([SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap().verifying_key().clone()])
            .unwrap();
    let fixture = start_fixture(Flaws::default(), other, String::new());
    let (code, report) = audit(&fixture, &token(&key, now() + 600), &token(&key, now() - 600), &jwks);
    assert_eq!(code, 2, "{report}");
    assert!(report["not_tested"][0].as_str().unwrap().contains("cannot be told"), "{report}");

    let unreachable = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["audit", "endpoint", "http://127.0.0.1:9/api", "--token", &token(&key, now() + 600), "--timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreachable.stdout).contains("NOT TESTED"));
}

#[test]
fn each_gateway_bypass_of_a_vulnerable_forward_auth_endpoint_is_found_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(Algorithm::RS256, RsaBits::Bits2048).unwrap();
    let keys = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(&keys.to_public_jwks()).unwrap()).unwrap();
    let (valid, expired) = (token(&key, now() + 600), token(&key, now() - 600));
    let pem = spki_pem(&key);

    let cases: [(Flaws, &[&str], i32); 4] = [
        (Flaws { prefers_forwarded_headers: true, ..Flaws::default() }, &["ENDPOINT-FWD-HEADER-INJECTION"], 1),
        (
            Flaws { matches_raw_path: true, ..Flaws::default() },
            &["ENDPOINT-PATH-SPELLING", "ENDPOINT-PATH-AMBIGUOUS"],
            1,
        ),
        (Flaws { missing_route_is_root: true, ..Flaws::default() }, &["ENDPOINT-FWD-HEADER-MISSING"], 1),
        // Informational only: whether /ADMIN is /admin depends on the upstream, so the exit code stays 0.
        (Flaws { case_sensitive_rules: true, ..Flaws::default() }, &["ENDPOINT-PATH-CASE"], 0),
    ];
    for (flaws, expected, expected_code) in cases {
        let fixture = start_fixture(flaws, keys.clone(), pem.clone());
        let (code, report) = audit(&fixture, &valid, &expired, &jwks);
        let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(finding_ids(&report), expected, "{flaws:?}: {report}");
        assert!(report["not_tested"].as_array().unwrap().is_empty(), "{flaws:?}: {report}");
        assert_eq!(code, expected_code, "{flaws:?}");
    }

    // Each finding names the variants that got through, in every style that has them: the Envoy style's raw
    // paths reached the endpoint unresolved, and the CWE is in the report.
    let fixture = start_fixture(Flaws { matches_raw_path: true, ..Flaws::default() }, keys.clone(), pem.clone());
    let (_, report) = audit(&fixture, &valid, &expired, &jwks);
    let spelling = &report["findings"][0];
    assert_eq!(spelling["id"], "ENDPOINT-PATH-SPELLING");
    assert_eq!(spelling["severity"], "CRITICAL");
    assert_eq!(spelling["cwe"], serde_json::json!(["CWE-22", "CWE-41"]));
    let evidence = spelling["evidence"].as_str().unwrap();
    for variant in [
        "nginx style, /%61dmin/users",
        "traefik style, //admin/users",
        "envoy style, /x/../admin/users",
        "envoy style, /x/%2E%2E/admin/users",
    ] {
        assert!(evidence.contains(variant), "{variant} not in {evidence}");
    }
    let fixture = start_fixture(Flaws { prefers_forwarded_headers: true, ..Flaws::default() }, keys, pem);
    let (_, report) = audit(&fixture, &valid, &expired, &jwks);
    let evidence = report["findings"][0]["evidence"].as_str().unwrap();
    assert!(evidence.contains("nginx style, X-Forwarded-Method: GET, X-Forwarded-Uri: /public added"), "{evidence}");
    assert!(evidence.contains("X-Original-URI: /public sent twice, the client's first"), "{evidence}");
}

#[test]
fn a_gateway_baseline_that_does_not_hold_is_reported_never_passed_over() {
    let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    let keys = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
    let fixture = start_fixture(Flaws::default(), keys, String::new());
    let valid = token(&key, now() + 600);
    // The "allowed" path is forbidden too: acceptance could not be told from refusal.
    let routes = ["--protected-path", "/admin/users", "--allowed-path", "/admin/public", "--style", "nginx"];
    let (code, report) = audit_with(&fixture.url, &valid, &[], &routes);
    assert_eq!(finding_ids(&report), BTreeSet::from(["ENDPOINT-GATEWAY-NOT-PROBED".to_owned()]), "{report}");
    assert_eq!(report["findings"][0]["severity"], "INFO");
    assert!(report["findings"][0]["evidence"]
        .as_str()
        .unwrap()
        .contains("nginx: protected Refused(403), allowed Refused(403)"));
    let not_tested = report["not_tested"].to_string();
    assert!(not_tested.contains("gateway bypasses"), "{report}");
    assert_eq!(code, 2, "nothing could be concluded, which must not read as a clean run");

    // A route the probes cannot start from is refused before anything is sent.
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["audit", "endpoint", &fixture.url, "--token", &valid, "--protected-path", "/x/../admin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("normal form"), "{output:?}");
}

#[test]
fn tesseras_verify_with_a_route_rule_withstands_the_gateway_probes() {
    use common::{add_user, http, Server, PASSWORD};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tessera.toml"), "[[gateway.routes]]\npath_prefix = \"/admin\"\nscopes = [\"admin\"]\n")
        .unwrap();
    add_user(d, "gus");
    let server = Server::start(d);
    let body = serde_json::json!({"username": "gus", "password": PASSWORD}).to_string();
    let (status, login) = http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{login}");
    let access = serde_json::from_str::<Value>(&login).unwrap()["access_token"].as_str().unwrap().to_owned();
    let url = format!("http://{}/verify", server.addr);
    let jwks = format!("http://{}/.well-known/jwks.json", server.addr);
    let (code, report) = audit_with(&url, &access, &["--jwks", &jwks], &ROUTES);
    // The token lacks scope admin: refused under /admin in every style Tessera reads, and in no other spelling or
    // with no other header allowed. The rule is case-sensitive (the default), which is worth knowing only.
    assert_eq!(report["stats"]["gateway_styles_probed"], "nginx, traefik, envoy", "{report}");
    assert_eq!(finding_ids(&report), BTreeSet::from(["ENDPOINT-PATH-CASE".to_owned()]), "{report}");
    assert!(report["not_tested"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(code, 0, "{report}");
}
