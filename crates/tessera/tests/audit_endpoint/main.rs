//! The endpoint probe against a deliberately vulnerable verifier: each flaw switched on is found as exactly its
//! own findings (so a broken probe cannot pass with a clean report), and with every flaw off there is nothing to
//! report. The verifier is a forward-authentication endpoint too (every route under
//! `/admin` is forbidden), so the gateway bypass probes are proven the same way, and against Tessera's own
//! `/verify` with a route rule. (Tessera's /verify without route rules is probed in `serve.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::collections::BTreeSet;
use std::process::Command;

use aws_lc_rs::encoding::AsDer as _;
use base64::Engine as _;
use serde_json::Value;
use tessera_jose::{base64url, encode_jwt, Algorithm, Audience, Claims, KeySet, RsaBits, SigningKey};
use vulnerable_verifier::{now, start_fixture, Fixture, Flaws};

#[path = "../common/mod.rs"]
mod common;
mod vulnerable_verifier;

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
    include_str!("../../../tessera-audit/src/probe.rs")
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
