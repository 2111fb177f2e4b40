//! The endpoint probe against a deliberately vulnerable verifier: each flaw switched on is found, and with every
//! flaw off there is nothing to report. (Tessera's own /verify is probed in `serve.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

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

/// One switch per flaw.
#[derive(Clone, Copy, Default, Debug)]
struct Flaws {
    alg_none: bool,
    no_signature_check: bool,
    hs_rs_confusion: bool,
    trust_jku: bool,
    kid_files: bool,
    skip_exp: bool,
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
            let token = request
                .lines()
                .find_map(|line| {
                    line.strip_prefix("authorization: Bearer ").or_else(|| line.strip_prefix("Authorization: Bearer "))
                })
                .map(str::trim);
            let ok = token.is_some_and(|t| accepts(t, flaws, &keys, &rsa_pem));
            let status = if ok { "200 OK" } else { "401 Unauthorized" };
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

fn audit(fixture: &Fixture, valid: &str, expired: &str, jwks: &std::path::Path) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "audit",
            "endpoint",
            &fixture.url,
            "--token",
            valid,
            "--jwks",
            jwks.to_str().unwrap(),
            "--reject",
            expired,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), report)
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
