//! The endpoint probe against a deliberately vulnerable verifier: each flaw switched on is found as exactly its
//! own findings (so a broken probe cannot pass with a clean report), and with every flaw off there is nothing to
//! report. The verifier is a forward-authentication endpoint too (every route under
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

/// One switch per flaw: each lets through the forged tokens of one finding (and, where a flaw honestly implies
/// another, that one's too: the case tables say which).
#[derive(Clone, Copy, Default, Debug)]
struct Flaws {
    /// `alg: none` in any casing is accepted.
    alg_none: bool,
    /// No signature is checked at all: the baseline's broken signature gets through, so nothing else can be told.
    no_signature_check: bool,
    /// An empty signature segment is not checked (CVE-2020-28042: signatures compared over the length given).
    empty_signature_passes: bool,
    /// HS256 keyed with the RSA public key's PEM (the classic HS/RS confusion).
    hs_rs_confusion: bool,
    /// HS256 keyed with the `k` member of the key the `kid` names: empty for an RSA or EC key.
    hmac_missing_secret: bool,
    /// The key in the token's `jwk` header is trusted.
    trust_jwk: bool,
    /// The key set the token's `jku` header names is fetched and trusted.
    trust_jku: bool,
    /// The certificate the token's `x5u` header names is fetched and trusted.
    trust_x5u: bool,
    /// The certificate in the token's `x5c` header is trusted.
    trust_x5c: bool,
    /// `jku` and `x5u` are fetched, then the key is refused (server-side request forgery, no forgery).
    fetches_header_urls: bool,
    /// An HS256 `kid` is read as a file name.
    kid_files: bool,
    /// ECDSA verification without the `0 < r, s < n` check (CVE-2022-21449): r = s = 0 verifies for any key.
    psychic_signature: bool,
    /// Another algorithm of the key's type (PS256 for an RSA key, ES384 for a P-256 key) is parsed but not
    /// implemented, and falls through unchecked.
    unimplemented_alg_passes: bool,
    /// The JWS JSON serializations are accepted (with only the members RFC 7515 defines).
    json_serialization: bool,
    /// CVE-2022-39227: the signature checked on the JSON reading of a token, the claims read from its compact
    /// reading.
    polyglot: bool,
    /// Padded base64 and the standard alphabet are decoded too.
    lenient_base64: bool,
    /// A token over 16 KiB is passed uninspected (an inspection limit that fails open).
    oversized_passes: bool,
    /// `exp` is not checked.
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

fn es256_ok(point: &[u8], input: &str, signature: &str) -> bool {
    base64url::decode(signature).is_some_and(|signature| {
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &signature)
            .is_ok()
    })
}

/// The uncompressed P-256 point of a JWK.
fn jwk_point(jwk: &Value) -> Option<Vec<u8>> {
    let (x, y) = (base64url::decode(jwk["x"].as_str()?)?, base64url::decode(jwk["y"].as_str()?)?);
    Some([vec![4u8], x, y].concat())
}

/// The uncompressed P-256 point in a certificate's DER: the subject key's BIT STRING (`03 42 00 04 …`). Enough
/// for the attacker's self-signed certificate, which holds no other such string.
fn certificate_point(der: &[u8]) -> Option<Vec<u8>> {
    let start = der.windows(4).position(|w| w == [0x03, 0x42, 0x00, 0x04])? + 3;
    der.get(start..start + 65).map(<[u8]>::to_vec)
}

fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The fixture's own public key that `kid` names.
fn key_by_kid(keys: &KeySet, kid: Option<&str>) -> Option<Value> {
    let kid = kid?;
    let jwks = serde_json::to_value(keys.to_public_jwks()).ok()?;
    jwks["keys"].as_array()?.iter().find(|jwk| jwk["kid"].as_str() == Some(kid)).cloned()
}

/// The key type an algorithm needs.
fn key_type(alg: &str) -> Option<&'static str> {
    match alg.get(..2)? {
        "RS" | "PS" => Some("RSA"),
        "ES" => Some("EC"),
        "Ed" => Some("OKP"),
        "HS" => Some("oct"),
        _ => None,
    }
}

/// A key's own algorithm: its `alg`, or the one its type implies.
fn own_alg(jwk: &Value) -> &str {
    jwk["alg"].as_str().unwrap_or(match jwk["kty"].as_str() {
        Some("RSA") => "RS256",
        Some("EC") => "ES256",
        _ => "EdDSA",
    })
}

fn verifies(token: &str, keys: &KeySet) -> Result<(), TokenError> {
    Verifier::new(keys.clone(), Policy::jws()).verify(token, now()).map(|_| ())
}

/// The compact form of a JWS JSON serialization (flattened or general with one signature); `strict` refuses
/// members RFC 7515 does not define.
fn json_to_compact(token: &str, strict: bool) -> Option<String> {
    let object: serde_json::Map<String, Value> = serde_json::from_str(token).ok()?;
    let known = ["protected", "header", "payload", "signature", "signatures"];
    if strict && object.keys().any(|member| !known.contains(&member.as_str())) {
        return None;
    }
    let signed = match object.get("signatures") {
        Some(signatures) => signatures.get(0)?.clone(),
        None => Value::Object(object.clone()),
    };
    let (h, p, s) = (signed["protected"].as_str()?, object.get("payload")?.as_str()?, signed["signature"].as_str()?);
    Some(format!("{h}.{p}.{s}"))
}

fn accepts(token: &str, flaws: Flaws, keys: &KeySet, rsa_pem: &str) -> bool {
    if flaws.oversized_passes && token.len() > 16 * 1024 {
        return true;
    }
    if token.starts_with('{') {
        if flaws.json_serialization {
            return json_to_compact(token, true).is_some_and(|compact| verifies(&compact, keys).is_ok());
        }
        // The signature holds for the JSON reading; the claims are taken from the compact reading, which must
        // decode (so a plain JSON serialization, with no dot in it, fails there).
        return flaws.polyglot
            && json_to_compact(token, false).is_some_and(|compact| verifies(&compact, keys).is_ok())
            && token.split('.').nth(1).and_then(decode_json).is_some();
    }
    let lenient;
    let token = if flaws.lenient_base64 {
        lenient = token
            .split('.')
            .map(|segment| segment.trim_end_matches('=').replace('+', "-").replace('/', "_"))
            .collect::<Vec<_>>()
            .join(".");
        lenient.as_str()
    } else {
        token
    };
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let Some(header) = decode_json(h) else { return false };
    let alg = header["alg"].as_str().unwrap_or_default();
    let own_key = key_by_kid(keys, header["kid"].as_str());
    let input = format!("{h}.{p}");
    if flaws.alg_none && alg.eq_ignore_ascii_case("none") {
        return true;
    }
    if flaws.no_signature_check {
        return decode_json(p).is_some();
    }
    if flaws.empty_signature_passes && s.is_empty() {
        return own_key.is_some_and(|jwk| key_type(alg) == jwk["kty"].as_str()) && decode_json(p).is_some();
    }
    if flaws.hs_rs_confusion && alg == "HS256" && hmac_ok(rsa_pem.as_bytes(), &input, s) {
        return true;
    }
    if flaws.hmac_missing_secret && alg == "HS256" && own_key.is_some() && hmac_ok(b"", &input, s) {
        return true;
    }
    if flaws.fetches_header_urls {
        // Fetched, then refused: the key is not one of ours, and the verification below says so.
        for url in ["jku", "x5u"].iter().filter_map(|name| header[name].as_str()) {
            let _ = http_get(url);
        }
    }
    // The flaw: whatever key the header offers is trusted.
    let header_key = if flaws.trust_jwk && header.get("jwk").is_some() {
        Some(jwk_point(&header["jwk"]))
    } else if flaws.trust_jku && header.get("jku").is_some() {
        let jwks: Option<Value> =
            header["jku"].as_str().and_then(http_get).and_then(|b| serde_json::from_slice(&b).ok());
        Some(jwks.and_then(|jwks| jwk_point(&jwks["keys"][0])))
    } else if flaws.trust_x5u && header.get("x5u").is_some() {
        Some(
            header["x5u"]
                .as_str()
                .and_then(http_get)
                .and_then(|pem| pem_body(&pem))
                .and_then(|der| certificate_point(&der)),
        )
    } else if flaws.trust_x5c && header.get("x5c").is_some() {
        let der = header["x5c"][0].as_str().and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok());
        Some(der.and_then(|der| certificate_point(&der)))
    } else {
        None
    };
    if let Some(point) = header_key {
        return point.is_some_and(|point| es256_ok(&point, &input, s));
    }
    if flaws.kid_files && alg == "HS256" {
        if let Some(kid) = header["kid"].as_str() {
            let key = std::fs::read(format!("/srv/app/keys/{kid}"))
                .or_else(|_| std::fs::read(std::path::Path::new("/srv/app/keys").join(kid)));
            let key = key.or_else(|_| std::fs::read(kid));
            return key.is_ok_and(|key| hmac_ok(&key, &input, s));
        }
    }
    if let Some(jwk) = &own_key {
        let psychic = base64url::decode(s).is_some_and(|s| s == [0; 64] || s == [0x30, 6, 2, 1, 0, 2, 1, 0]);
        if flaws.psychic_signature && alg == "ES256" && jwk["kty"] == "EC" && psychic {
            return decode_json(p).is_some();
        }
        if flaws.unimplemented_alg_passes && alg != own_alg(jwk) && key_type(alg) == jwk["kty"].as_str() {
            return decode_json(p).is_some();
        }
    }
    match verifies(token, keys) {
        Ok(()) => true,
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

#[allow(clippy::disallowed_methods, reason = "the audited binary and the fixture judge tokens by the system clock")]
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

/// A signing key of the verifier under test, its public key set (in a file, for `--jwks`), a valid and an
/// expired token.
struct Issuer {
    key: SigningKey,
    keys: KeySet,
    _dir: tempfile::TempDir,
    jwks: std::path::PathBuf,
    valid: String,
    expired: String,
    /// The RSA public key as SPKI PEM (empty for an EC key): the HMAC secret of the HS/RS confusion.
    pem: String,
}

impl Issuer {
    fn new(alg: Algorithm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(alg, RsaBits::Bits2048).unwrap();
        let keys = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, serde_json::to_string(&keys.to_public_jwks()).unwrap()).unwrap();
        let pem = if alg == Algorithm::RS256 { spki_pem(&key) } else { String::new() };
        let (valid, expired) = (token(&key, now() + 600), token(&key, now() - 600));
        Self { key, keys, _dir: dir, jwks, valid, expired, pem }
    }

    /// Audits a fixture with these flaws: (exit code, JSON report).
    fn audit(&self, flaws: Flaws) -> (i32, Value) {
        let fixture = start_fixture(flaws, self.keys.clone(), self.pem.clone());
        audit(&fixture, &self.valid, &self.expired, &self.jwks)
    }
}

/// How many forged tokens `forge` makes of `valid` with a one-key JWKS whose key is tried as an HS256 secret in
/// `confusions` encodings: 8 `alg: none` (4 casings, with and without the signature), 2 signatures stripped or
/// zeroed, 1 HS256 with an empty key, the confusions, 2 psychic signatures, 4 header keys (`jwk`, `jku`, `x5u`,
/// `x5c`), 4 `kid` injections, 1 claims tampered, 1 algorithm switched, 2 JSON serializations, 1 polyglot, 1
/// padded, 1 oversized — and 1 signature in the standard base64 alphabet, made only when the signature has a `-`
/// or `_` to swap. A random ECDSA signature has neither about one time in 15 (85 free characters, each `-` or `_`
/// with odds 2 in 64; the 86th holds 2 bits and is always one of `AQgw`), which is why the count for ES256 tokens
/// varies from run to run; for one token it is always this.
fn probes_forged(valid: &str, confusions: u64) -> u64 {
    28 + confusions + u64::from(signature_has_url_safe_characters(valid))
}

fn signature_has_url_safe_characters(token: &str) -> bool {
    token.rsplit('.').next().unwrap().contains(['-', '_'])
}

/// Every finding id a forged token (or the `--reject` tokens, or a fetched header URL) can raise, read from the
/// probes' source, so that a finding added there without a switch here fails the coverage check. The gateway
/// findings have their own test.
fn forged_token_finding_ids() -> BTreeSet<String> {
    include_str!("../../tessera-audit/src/probe.rs")
        .split('"')
        .filter(|piece| {
            piece.starts_with("ENDPOINT-")
                && piece.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_correct_verifier_gets_a_clean_report_with_every_forged_token_sent() {
    // The public key as an HS256 secret: an RSA key in 4 PEM and DER encodings and as JWK JSON, an EC key as JWK
    // JSON only.
    // An ECDSA signature is random: audit a token whose signature has a `-` or `_` and one whose has neither, so
    // that both counts are checked in every run. (An RSA signature of 342 characters practically always has one.)
    let cases = [(Algorithm::RS256, 5, None), (Algorithm::ES256, 1, Some(true)), (Algorithm::ES256, 1, Some(false))];
    for (alg, confusions, url_safe_characters) in cases {
        let mut issuer = Issuer::new(alg);
        if let Some(wanted) = url_safe_characters {
            while signature_has_url_safe_characters(&issuer.valid) != wanted {
                issuer.valid = token(&issuer.key, now() + 600);
            }
        }
        let (code, report) = issuer.audit(Flaws::default());
        assert_eq!(finding_ids(&report), BTreeSet::new(), "{alg:?}: {report}");
        assert!(report["not_tested"].as_array().unwrap().is_empty(), "{alg:?}: {report}");
        assert_eq!(code, 0, "{alg:?}");
        assert_eq!(report["stats"]["probes_sent"], probes_forged(&issuer.valid, confusions), "{alg:?}: {report}");
        assert_eq!(report["stats"]["gateway_styles_probed"], "nginx, traefik, envoy", "{report}");
        assert!(report["stats"]["gateway_probes_sent"].as_u64().unwrap() >= 50, "{report}");
    }
}

#[test]
fn each_flaw_of_a_vulnerable_verifier_is_found_exactly() {
    let (rs256, es256) = (Issuer::new(Algorithm::RS256), Issuer::new(Algorithm::ES256));
    let only = Flaws::default;
    let cases: [(&Issuer, Flaws, &[&str]); 17] = [
        (&rs256, Flaws { alg_none: true, ..only() }, &["ENDPOINT-ALG-NONE"]),
        (&rs256, Flaws { empty_signature_passes: true, ..only() }, &["ENDPOINT-NO-SIGNATURE-CHECK"]),
        (&rs256, Flaws { hs_rs_confusion: true, ..only() }, &["ENDPOINT-ALG-CONFUSION"]),
        (&rs256, Flaws { hmac_missing_secret: true, ..only() }, &["ENDPOINT-HMAC-EMPTY-KEY"]),
        (&rs256, Flaws { trust_jwk: true, ..only() }, &["ENDPOINT-HEADER-JWK"]),
        // Trusting the key at a URL means fetching it, which is a finding of its own.
        (&rs256, Flaws { trust_jku: true, ..only() }, &["ENDPOINT-HEADER-JKU", "ENDPOINT-FETCHES-HEADER-URL"]),
        (&rs256, Flaws { trust_x5u: true, ..only() }, &["ENDPOINT-HEADER-X5U", "ENDPOINT-FETCHES-HEADER-URL"]),
        (&rs256, Flaws { trust_x5c: true, ..only() }, &["ENDPOINT-HEADER-X5C"]),
        (&rs256, Flaws { fetches_header_urls: true, ..only() }, &["ENDPOINT-FETCHES-HEADER-URL"]),
        (&rs256, Flaws { kid_files: true, ..only() }, &["ENDPOINT-KID-INJECTION"]),
        // For an ES256 key, r = s = 0 is also the all-zero signature under the token's own header.
        (
            &es256,
            Flaws { psychic_signature: true, ..only() },
            &["ENDPOINT-PSYCHIC-SIGNATURE", "ENDPOINT-NO-SIGNATURE-CHECK"],
        ),
        (&rs256, Flaws { unimplemented_alg_passes: true, ..only() }, &["ENDPOINT-ALG-SWITCH"]),
        (&rs256, Flaws { json_serialization: true, ..only() }, &["ENDPOINT-JSON-SERIALIZATION"]),
        (&rs256, Flaws { polyglot: true, ..only() }, &["ENDPOINT-POLYGLOT"]),
        (&rs256, Flaws { lenient_base64: true, ..only() }, &["ENDPOINT-MALLEABLE-BASE64"]),
        (&rs256, Flaws { oversized_passes: true, ..only() }, &["ENDPOINT-OVERSIZED"]),
        (&rs256, Flaws { skip_exp: true, ..only() }, &["ENDPOINT-ACCEPTS-REJECTED"]),
    ];
    let mut covered = BTreeSet::new();
    for (issuer, flaws, expected) in cases {
        let (code, report) = issuer.audit(flaws);
        let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(finding_ids(&report), expected, "{flaws:?}: {report}");
        assert!(report["not_tested"].as_array().unwrap().is_empty(), "{flaws:?}: {report}");
        assert_eq!(code, 1, "{flaws:?}: a forged token got through, so the exit code is 1");
        covered.extend(expected);
    }
    let all = forged_token_finding_ids();
    assert_eq!(all.len(), 17, "{all:?}");
    assert_eq!(covered, all, "every finding is raised by some switch");

    // A verifier that checks no signature fails the baseline already (the broken signature gets through): the
    // finding is reported, and the forged tokens are listed as not tested, since nothing else can be told.
    let (code, report) = rs256.audit(Flaws { no_signature_check: true, ..only() });
    assert_eq!(finding_ids(&report), BTreeSet::from(["ENDPOINT-NO-SIGNATURE-CHECK".to_owned()]), "{report}");
    assert!(report["not_tested"][0].as_str().unwrap().starts_with("every forged variant"), "{report}");
    assert_eq!(code, 1);
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
    let issuer = Issuer::new(Algorithm::RS256);

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
        let (code, report) = issuer.audit(flaws);
        let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(finding_ids(&report), expected, "{flaws:?}: {report}");
        assert!(report["not_tested"].as_array().unwrap().is_empty(), "{flaws:?}: {report}");
        assert_eq!(code, expected_code, "{flaws:?}");
    }

    // Each finding names the variants that got through, in every style that has them: the Envoy style's raw
    // paths reached the endpoint unresolved, and the CWE is in the report.
    let (_, report) = issuer.audit(Flaws { matches_raw_path: true, ..Flaws::default() });
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
    let (_, report) = issuer.audit(Flaws { prefers_forwarded_headers: true, ..Flaws::default() });
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
