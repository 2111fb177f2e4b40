//! The audit finds each weakness it claims to find, and nothing in Tessera's own tokens and key sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use aws_lc_rs::hmac;
use serde_json::{json, Value};
use tessera_audit::crack::Candidates;
use tessera_audit::{audit_jwks, audit_token, render, AuditError, Report, Severity, TokenAudit};
use tessera_jose::{base64url, encode_jwt, Algorithm, Audience, Claims, KeySet, RsaBits, SigningKey, ACCESS_TOKEN_TYP};

const NOW: i64 = 1_800_000_000;

fn audit() -> TokenAudit {
    TokenAudit { now: NOW, max_lifetime_secs: 86_400, keys: None, candidates: Candidates::default(), threads: 2 }
}

fn run(token: &str, audit: &TokenAudit) -> Report {
    audit_token(token, audit, &mut |_| {}).unwrap()
}

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", base64url::encode(header.to_string()), base64url::encode(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", base64url::encode(tag.as_ref()))
}

fn good_claims() -> Value {
    json!({"iss": "https://i", "sub": "u", "aud": "a", "exp": NOW + 600, "iat": NOW, "jti": "j"})
}

fn strong() -> [u8; 32] {
    [0x42; 32]
}

#[test]
fn each_header_and_claim_weakness_is_found() {
    let typ = |extra: Value| {
        let mut h = json!({"alg": "HS256", "typ": "JWT"});
        h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        h
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "JWT-ALG-NONE",
            format!("{}.{}.", base64url::encode(r#"{"alg":"nOnE"}"#), base64url::encode(good_claims().to_string())),
        ),
        ("JWT-KID-INJECTION", hs256(&typ(json!({"kid": "../../../../dev/null"})), &good_claims(), &strong())),
        ("JWT-KID-INJECTION", hs256(&typ(json!({"kid": "x' UNION SELECT '1';--"})), &good_claims(), &strong())),
        ("JWT-HEADER-JKU", hs256(&typ(json!({"jku": "https://evil/jwks"})), &good_claims(), &strong())),
        ("JWT-HEADER-X5U", hs256(&typ(json!({"x5u": "https://evil/cert"})), &good_claims(), &strong())),
        ("JWT-HEADER-JWK", hs256(&typ(json!({"jwk": {"kty": "oct"}})), &good_claims(), &strong())),
        ("JWT-HEADER-X5C", hs256(&typ(json!({"x5c": ["MII"]})), &good_claims(), &strong())),
        ("JWT-CRIT", hs256(&typ(json!({"crit": ["exp"]})), &good_claims(), &strong())),
        ("JWT-NO-TYP", hs256(&json!({"alg": "HS256"}), &good_claims(), &strong())),
        ("JWT-NO-EXP", hs256(&typ(json!({})), &json!({"sub": "u", "iat": NOW, "jti": "j"}), &strong())),
        (
            "JWT-EXP-NOT-NUMBER",
            hs256(&typ(json!({})), &json!({"sub": "u", "exp": "9999999999", "iat": NOW, "jti": "j"}), &strong()),
        ),
        ("JWT-NO-IAT", hs256(&typ(json!({})), &json!({"sub": "u", "exp": NOW + 60, "jti": "j"}), &strong())),
        (
            "JWT-IAT-FUTURE",
            hs256(&typ(json!({})), &json!({"exp": NOW + 9_000, "iat": NOW + 3_600, "jti": "j"}), &strong()),
        ),
        ("JWT-NO-JTI", hs256(&typ(json!({})), &json!({"exp": NOW + 60, "iat": NOW}), &strong())),
        (
            "JWT-LONG-LIFETIME",
            hs256(&typ(json!({})), &json!({"exp": NOW + 30 * 86_400, "iat": NOW, "jti": "j"}), &strong()),
        ),
        ("JWT-EXPIRED", hs256(&typ(json!({})), &json!({"exp": NOW - 1, "iat": NOW - 60, "jti": "j"}), &strong())),
        (
            "JWT-SENSITIVE-DATA",
            hs256(&typ(json!({})), &json!({"exp": NOW + 60, "iat": NOW, "jti": "j", "db_password": "x"}), &strong()),
        ),
        (
            "JWT-SENSITIVE-DATA",
            hs256(
                &typ(json!({})),
                &json!({"exp": NOW + 60, "iat": NOW, "jti": "j", "pay": {"n": "4111-1111-1111-1111"}}),
                &strong(),
            ),
        ),
        (
            "JWT-PERSONAL-DATA",
            hs256(&typ(json!({})), &json!({"exp": NOW + 60, "iat": NOW, "jti": "j", "email": "a@b.c"}), &strong()),
        ),
    ];
    for (id, token) in cases {
        let report = run(&token, &audit());
        assert!(report.has(id), "{id} not found in {:?}", report.findings.iter().map(|f| f.id).collect::<Vec<_>>());
    }
    let dup = format!(
        "{}.{}.{}",
        base64url::encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        base64url::encode(r#"{"sub":"a","sub":"admin"}"#),
        base64url::encode([1u8; 32])
    );
    assert!(run(&dup, &audit()).has("JWT-DUPLICATE-MEMBER"));
    let padded = hs256(&json!({"alg": "HS256", "typ": "JWT"}), &good_claims(), &strong()).replacen('.', "=.", 1);
    assert!(run(&padded, &audit()).has("JWT-BASE64-NONCANONICAL"));
}

#[test]
fn weak_secrets_are_cracked_from_each_source_and_strong_ones_are_not() {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let builtin = run(&hs256(&header, &good_claims(), b"your-256-bit-secret"), &audit());
    let finding = builtin.findings.iter().find(|f| f.id == "JWT-WEAK-HMAC-SECRET").unwrap();
    assert_eq!(finding.severity, Severity::Critical);
    assert!(finding.evidence.contains("your-256-bit-secret"));

    let listed = TokenAudit {
        candidates: Candidates {
            wordlist: Candidates::parse_wordlist(b"alpha\r\nbeta-secret-7\r\n"),
            brute_force_max_len: 0,
        },
        ..audit()
    };
    assert!(run(&hs256(&header, &good_claims(), b"beta-secret-7"), &listed).has("JWT-WEAK-HMAC-SECRET"));
    let brute = TokenAudit { candidates: Candidates { wordlist: vec![], brute_force_max_len: 3 }, ..audit() };
    assert!(run(&hs256(&header, &good_claims(), b"k9x"), &brute).has("JWT-WEAK-HMAC-SECRET"));

    let report = run(&hs256(&header, &good_claims(), &strong()), &brute);
    assert!(!report.has("JWT-WEAK-HMAC-SECRET"));
    let tried = report.stats["secrets_tried"].as_u64().unwrap();
    assert!((36 + 36 * 36 + 36 * 36 * 36..60_000).contains(&tried), "bounded: {tried}");
    assert!(report.stats["secrets_per_second"].as_u64().unwrap() > 0);
}

fn tessera_token(key: &SigningKey) -> String {
    let claims = Claims {
        iss: Some("https://tessera.test".into()),
        sub: Some("alice".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(NOW + 900),
        iat: Some(NOW),
        jti: Some("Xy3".into()),
        client_id: Some("web".into()),
        ..Claims::default()
    };
    encode_jwt(key, Some(ACCESS_TOKEN_TYP), &claims).unwrap()
}

#[test]
fn tessera_tokens_and_key_sets_have_no_findings() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let key = SigningKey::generate(alg, RsaBits::Bits2048).unwrap();
        let keys = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
        let report = run(&tessera_token(&key), &TokenAudit { keys: Some(keys.clone()), ..audit() });
        assert!(report.findings.is_empty(), "{alg}: {:?}", report.findings);
        assert!(report.not_tested.is_empty(), "{alg}: {:?}", report.not_tested);
        assert_eq!(report.stats["signature"], "valid");
        let jwks = serde_json::to_vec(&keys.to_public_jwks()).unwrap();
        let report = audit_jwks("tessera", &jwks, Some(Some("public, max-age=3600"))).unwrap();
        assert!(report.findings.is_empty(), "{alg}: {:?}", report.findings);
    }
}

#[test]
fn checks_against_the_issuers_keys() {
    let rsa = SigningKey::generate(Algorithm::RS256, RsaBits::Bits2048).unwrap();
    let keys = KeySet::from_keys([rsa.verifying_key().clone()]).unwrap();
    let with_keys = TokenAudit { keys: Some(keys), ..audit() };
    let confusion =
        hs256(&json!({"alg": "HS256", "typ": "at+jwt", "kid": rsa.kid()}), &good_claims(), b"public key bytes");
    assert!(run(&confusion, &with_keys).has("JWT-ALG-KEY-MISMATCH"));
    let token = tessera_token(&rsa);
    let (input, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", base64url::encode([7u8; 256]));
    assert!(run(&forged, &with_keys).has("JWT-BAD-SIGNATURE"));
    let other = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
    assert!(run(&tessera_token(&other), &with_keys).has("JWT-UNKNOWN-KID"));
}

#[test]
fn non_jwt_input_is_refused_clearly() {
    for input in ["hello", "a.b", "a.b.c.d", "a.b.c.d.e", "{\"payload\":\"x\"}", "!!!.e30.x", "e30x.e30.x"] {
        match audit_token(input, &audit(), &mut |_| {}) {
            Err(AuditError::NotAJwt(reason)) => assert!(!reason.is_empty()),
            other => panic!("{input}: {other:?}"),
        }
    }
}

#[test]
fn jwks_weaknesses_are_found() {
    let mut n = vec![0xc5u8; 128];
    n[127] |= 1;
    let document = json!({"keys": [
        {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": base64url::encode(&n), "e": "Aw"},
        {"kty": "RSA", "kid": "a", "n": base64url::encode([0xc5u8; 256]), "e": "AQAB", "d": "AAAA"},
        {"kty": "oct", "k": "c2VjcmV0"},
    ]});
    let report = audit_jwks("test.json", document.to_string().as_bytes(), Some(None)).unwrap();
    for id in [
        "JWKS-WEAK-RSA",
        "JWKS-RSA-EXPONENT",
        "JWKS-PRIVATE-KEY",
        "JWKS-SYMMETRIC-KEY",
        "JWKS-DUPLICATE-KID",
        "JWKS-MISSING-KID",
        "JWKS-MISSING-ALG",
        "JWKS-MISSING-USE",
        "JWKS-NO-CACHE-CONTROL",
    ] {
        assert!(report.has(id), "{id} missing: {:?}", report.findings.iter().map(|f| f.id).collect::<Vec<_>>());
    }
    assert_eq!(report.worst(), Some(Severity::Critical));
    let file = audit_jwks("f.json", br#"{"keys":[]}"#, None).unwrap();
    assert!(
        file.not_tested.iter().any(|gap| gap.contains("cache headers")),
        "a file cannot say anything about caching"
    );
    assert!(audit_jwks("x", b"<html>", None).is_err());
    assert!(audit_jwks("x", b"{}", None).is_err());
    for (header, id) in [("no-store", "JWKS-NOT-CACHEABLE"), ("max-age=604800", "JWKS-LONG-CACHE")] {
        assert!(audit_jwks("u", br#"{"keys":[]}"#, Some(Some(header))).unwrap().has(id));
    }
}

#[test]
fn reports_render_in_every_format() {
    let report = run(&hs256(&json!({"alg": "HS256"}), &json!({"sub": "x"}), b"secret"), &audit());
    let sarif: Value = serde_json::from_str(&render::sarif(&report)).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), report.findings.len());
    assert_eq!(sarif["runs"][0]["results"][0]["level"], "error");
    let markdown = render::markdown(&report);
    for section in [
        "## Executive summary",
        "## Findings by severity",
        "## Risk matrix",
        "## Remediation plan",
        "### Immediate",
        "## Compliance",
        "This report is partial",
    ] {
        assert!(markdown.contains(section), "{section}");
    }
    let json: Value = serde_json::from_str(&render::json(&report)).unwrap();
    assert_eq!(json["findings"][0]["severity"], "CRITICAL");
    let table = render::table(&report);
    assert!(table.contains("JWT-WEAK-HMAC-SECRET") && table.contains("NOT TESTED"));
}

#[test]
fn a_findings_cwe_is_shown_in_every_format() {
    let mut report = Report::new("endpoint", "http://gateway.test/verify");
    report.add(
        tessera_audit::Finding::new("ENDPOINT-PATH-SPELLING", Severity::Critical, "title", "evidence", "fix")
            .with_cwe(&["CWE-22", "CWE-41"]),
    );
    report.add(tessera_audit::Finding::new("ENDPOINT-ALG-NONE", Severity::Critical, "title", "evidence", "fix"));
    assert!(render::table(&report).contains("weakness: CWE-22, CWE-41"));
    assert!(render::markdown(&report).contains("  - Weakness: CWE-22, CWE-41"));
    let sarif: Value = serde_json::from_str(&render::sarif(&report)).unwrap();
    let tags = &sarif["runs"][0]["tool"]["driver"]["rules"][0]["properties"]["tags"];
    assert_eq!(tags, &json!(["security", "jwt", "external/cwe/cwe-22", "external/cwe/cwe-41"]));
    let json: Value = serde_json::from_str(&render::json(&report)).unwrap();
    assert_eq!(json["findings"][0]["cwe"], json!(["CWE-22", "CWE-41"]));
    // A finding that names no weakness has no empty member.
    assert!(json["findings"][1].get("cwe").is_none());
}
