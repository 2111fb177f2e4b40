//! A deliberately vulnerable verifier for the endpoint audit's tests: a forward-authentication endpoint on a free
//! loopback port whose flaws are switched on one by one.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use serde_json::Value;
use tessera_jose::{base64url, KeySet, Policy, TokenError, Verifier};

/// One switch per flaw: each lets through the forged tokens of one finding (and, where a flaw honestly implies
/// another, that one's too: the case tables say which).
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Flaws {
    /// `alg: none` in any casing is accepted.
    pub(crate) alg_none: bool,
    /// No signature is checked at all: the baseline's broken signature gets through, so nothing else can be told.
    pub(crate) no_signature_check: bool,
    /// An empty signature segment is not checked (CVE-2020-28042: signatures compared over the length given).
    pub(crate) empty_signature_passes: bool,
    /// HS256 keyed with the RSA public key's PEM (the classic HS/RS confusion).
    pub(crate) hs_rs_confusion: bool,
    /// HS256 keyed with the `k` member of the key the `kid` names: empty for an RSA or EC key.
    pub(crate) hmac_missing_secret: bool,
    /// The key in the token's `jwk` header is trusted.
    pub(crate) trust_jwk: bool,
    /// The key set the token's `jku` header names is fetched and trusted.
    pub(crate) trust_jku: bool,
    /// The certificate the token's `x5u` header names is fetched and trusted.
    pub(crate) trust_x5u: bool,
    /// The certificate in the token's `x5c` header is trusted.
    pub(crate) trust_x5c: bool,
    /// `jku` and `x5u` are fetched, then the key is refused (server-side request forgery, no forgery).
    pub(crate) fetches_header_urls: bool,
    /// An HS256 `kid` is read as a file name.
    pub(crate) kid_files: bool,
    /// ECDSA verification without the `0 < r, s < n` check (CVE-2022-21449): r = s = 0 verifies for any key.
    pub(crate) psychic_signature: bool,
    /// Another algorithm of the key's type (PS256 for an RSA key, ES384 for a P-256 key) is parsed but not
    /// implemented, and falls through unchecked.
    pub(crate) unimplemented_alg_passes: bool,
    /// The JWS JSON serializations are accepted (with only the members RFC 7515 defines).
    pub(crate) json_serialization: bool,
    /// CVE-2022-39227: the signature checked on the JSON reading of a token, the claims read from its compact
    /// reading.
    pub(crate) polyglot: bool,
    /// Padded base64 and the standard alphabet are decoded too.
    pub(crate) lenient_base64: bool,
    /// A token over 16 KiB is passed uninspected (an inspection limit that fails open).
    pub(crate) oversized_passes: bool,
    /// `exp` is not checked.
    pub(crate) skip_exp: bool,
    /// Gateway: `X-Forwarded-*` before `X-Original-*`, the first of a repeated header, and headers before the
    /// Envoy path — instead of refusing (400) any disagreement.
    pub(crate) prefers_forwarded_headers: bool,
    /// Gateway: rules match the raw path, not the path as the upstream decodes it.
    pub(crate) matches_raw_path: bool,
    /// Gateway: a request naming no route is judged as `/`, instead of refused (400).
    pub(crate) missing_route_is_root: bool,
    /// Gateway: `/admin` does not cover `/ADMIN` (the correct fixture's upstream is case-insensitive).
    pub(crate) case_sensitive_rules: bool,
}

pub(crate) struct Fixture {
    pub(crate) url: String,
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
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Serves a verifier with `flaws` for `keys` on a free loopback port until dropped.
pub(crate) fn start_fixture(flaws: Flaws, keys: KeySet, rsa_pem: String) -> Fixture {
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
