//! Every forged or malformed token in this table is refused, each with the exact error expected: the variant and
//! its fields (which claim is missing, which algorithms disagree, which member is repeated, which issuer or audience).
//!
//! The cases follow the CVE record and the attack tools' playbooks (alg none, RS→HS key confusion in every key
//! encoding, psychic ECDSA, embedded keys, kid injection, tampering, parser differentials, base64 malleability).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use common::{b64, rfc_keys};
use serde_json::json;
use tessera_jose::{
    encode_jwt, sign_compact, Algorithm, Audience, Claims, KeySet, Part, Policy, SigningKey, TokenError, Verifier,
    ACCESS_TOKEN_TYP, DEFAULT_MAX_TOKEN_LEN,
};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://tessera.test";
const AUDIENCE: &str = "api";

struct Setup {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    verifier: Verifier,
}

fn setup() -> Setup {
    setup_remembering(0)
}

/// The same keys and policy, with a verifier that remembers up to `entries` verified tokens.
fn setup_remembering(entries: usize) -> Setup {
    let [rsa, ec, ed] = rfc_keys();
    let keys = KeySet::from_keys([&rsa, &ec, &ed].map(|key| key.verifying_key().clone())).unwrap();
    let verifier = Verifier::remembering(keys, Policy::access(ISSUER, vec![AUDIENCE.into()]), entries);
    Setup { rsa, ec, ed, verifier }
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 600, "iat": NOW, "jti": "j1",
        "client_id": "web", "scope": "read"
    })
}

fn header(alg: &str, kid: &str) -> serde_json::Value {
    json!({"alg": alg, "typ": ACCESS_TOKEN_TYP, "kid": kid})
}

/// Signs arbitrary header and payload bytes with `key`.
fn signed(key: &SigningKey, header: &serde_json::Value, payload: &[u8]) -> String {
    sign_compact(key, header.to_string().as_bytes(), payload).unwrap()
}

fn signed_claims(key: &SigningKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    signed(key, header, claims.to_string().as_bytes())
}

/// `header.payload.signature` with an HMAC-SHA256 tag under `secret`.
fn hs256(header: &serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn hs512(header: &serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn parts(token: &str) -> [String; 3] {
    let mut split = token.split('.').map(str::to_owned);
    [split.next().unwrap(), split.next().unwrap(), split.next().unwrap()]
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The RSA public key in every encoding an attacker might use as an HMAC secret.
fn rsa_public_encodings(setup: &Setup) -> Vec<(&'static str, Vec<u8>)> {
    let jwk = setup.rsa.verifying_key().public_jwk().unwrap();
    let n = tessera_jose::base64url::decode(jwk.n.as_deref().unwrap()).unwrap();
    let e = tessera_jose::base64url::decode(jwk.e.as_deref().unwrap()).unwrap();
    let public = aws_lc_rs::rsa::PublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
    let spki: Vec<u8> = public.as_der().unwrap().as_ref().to_vec();
    // PKCS#1 RSAPublicKey is the BIT STRING inside the SPKI: skip the 24-byte SPKI prefix of a 2048-bit key.
    let pkcs1 = spki[24..].to_vec();
    let spki_pem = pem("PUBLIC KEY", &spki);
    vec![
        ("SPKI PEM with trailing newline", spki_pem.clone().into_bytes()),
        ("SPKI PEM without trailing newline", spki_pem.trim_end().as_bytes().to_vec()),
        ("PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1).into_bytes()),
        ("SPKI DER", spki),
        ("PKCS#1 DER", pkcs1),
        ("JWK JSON", serde_json::to_vec(&jwk).unwrap()),
    ]
}

/// DER-encodes a raw R‖S ECDSA signature.
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    let int = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
        let mut out = vec![0x02];
        let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
        out.push((trimmed.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend(trimmed);
        out
    };
    let (r, s) = raw.split_at(32);
    let body = [int(r), int(s)].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

/// One forged or malformed token and the exact error it must be refused with: the variant and every field, so a
/// token refused for some other reason (a claim missing, another key, another algorithm) fails the case.
struct Case {
    name: String,
    token: String,
    expect: TokenError,
}

fn case(name: impl Into<String>, token: String, expect: TokenError) -> Case {
    Case { name: name.into(), token, expect }
}

fn mismatch(token: &str, key: Algorithm) -> TokenError {
    TokenError::AlgorithmMismatch { token: token.into(), key }
}

fn unsupported(alg: &str) -> TokenError {
    TokenError::UnsupportedAlgorithm(alg.into())
}

#[allow(clippy::disallowed_methods, reason = "the attacker's ECDSA nonces come from the OS CSPRNG")]
fn cases(s: &Setup) -> Vec<Case> {
    let mut cases = Vec::new();
    let valid_rsa = signed_claims(&s.rsa, &header("RS256", "rsa-1"), &claims());
    let valid_ec = signed_claims(&s.ec, &header("ES256", "ec-1"), &claims());
    let valid_ed = signed_claims(&s.ed, &header("EdDSA", "ed-1"), &claims());
    let [rsa_h, rsa_p, rsa_sig] = parts(&valid_rsa);
    let [ec_h, ec_p, ec_sig] = parts(&valid_ec);
    let [ed_h, ed_p, ed_sig] = parts(&valid_ed);
    let mut admin = claims();
    admin["sub"] = json!("admin");

    // alg "none" in every casing, with an empty signature and with the original one.
    for alg in ["none", "None", "NONE", "nOnE", "noNE", "NoNe"] {
        let h = b64(json!({"alg": alg, "typ": "at+jwt", "kid": "rsa-1"}).to_string());
        cases.push(case(format!("alg {alg:?}, empty signature"), format!("{h}.{rsa_p}."), TokenError::AlgNone));
    }
    let none = b64(json!({"alg": "none", "typ": "at+jwt"}).to_string());
    cases.push(case("alg none, original signature kept", format!("{none}.{rsa_p}.{rsa_sig}"), TokenError::AlgNone));
    cases.push(case("alg none, no kid, no signature", format!("{none}.{rsa_p}."), TokenError::AlgNone));

    // Stripped, empty and all-zero signatures.
    cases.push(case("signature stripped (two parts)", format!("{rsa_h}.{rsa_p}"), TokenError::WrongPartCount(2)));
    cases.push(case("signature empty", format!("{rsa_h}.{rsa_p}."), TokenError::BadSignature));
    cases.push(case(
        "RS256 all-zero signature",
        format!("{rsa_h}.{rsa_p}.{}", b64([0u8; 256])),
        TokenError::BadSignature,
    ));
    cases.push(case("EdDSA all-zero signature", format!("{ed_h}.{ed_p}.{}", b64([0u8; 64])), TokenError::BadSignature));

    // RS256 → HS256/HS512 confusion: the RSA public key, in every encoding, as the HMAC secret.
    for (encoding, secret) in rsa_public_encodings(s) {
        cases.push(case(
            format!("HS256 keyed with the RSA public key as {encoding}"),
            hs256(&header("HS256", "rsa-1"), &claims(), &secret),
            mismatch("HS256", Algorithm::RS256),
        ));
        cases.push(case(
            format!("HS512 keyed with the RSA public key as {encoding}"),
            hs512(&header("HS512", "rsa-1"), &claims(), &secret),
            unsupported("HS512"),
        ));
    }
    // Three keys in the set: a token without kid names none of them.
    cases.push(case(
        "HS256 with an empty key, no kid",
        hs256(&json!({"alg": "HS256", "typ": "at+jwt"}), &claims(), b""),
        TokenError::UnknownKey(String::new()),
    ));

    // Psychic ECDSA signatures (CVE-2022-21449): r = s = 0 verifies any message on a vulnerable verifier, so it is
    // tried raw over the genuine claims and over forged ones, and DER-encoded; then each scalar out of range alone.
    cases.push(case(
        "ES256 psychic r=s=0, raw, over the genuine claims",
        format!("{ec_h}.{ec_p}.{}", b64([0u8; 64])),
        TokenError::BadSignature,
    ));
    cases.push(case(
        "ES256 psychic r=s=0, raw, over forged claims (sub admin)",
        format!("{ec_h}.{}.{}", b64(admin.to_string()), b64([0u8; 64])),
        TokenError::BadSignature,
    ));
    cases.push(case("ES256 psychic r=s=0, DER", format!("{ec_h}.{ec_p}.MAYCAQACAQA"), TokenError::BadSignature));
    let order = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    cases.push(case(
        "ES256 r=s=n",
        format!("{ec_h}.{ec_p}.{}", b64([order.clone(), order.clone()].concat())),
        TokenError::BadSignature,
    ));
    let real_ec_sig = tessera_jose::base64url::decode(&ec_sig).unwrap();
    let (real_r, real_s) = real_ec_sig.split_at(32);
    cases.push(case(
        "ES256 genuine r with s=0",
        format!("{ec_h}.{ec_p}.{}", b64([real_r, &[0u8; 32]].concat())),
        TokenError::BadSignature,
    ));
    cases.push(case(
        "ES256 genuine r with s=n",
        format!("{ec_h}.{ec_p}.{}", b64([real_r, &order].concat())),
        TokenError::BadSignature,
    ));
    cases.push(case(
        "ES256 r=0 with the genuine s",
        format!("{ec_h}.{ec_p}.{}", b64([&[0u8; 32], real_s].concat())),
        TokenError::BadSignature,
    ));
    cases.push(case(
        "ES256 valid signature re-encoded as DER",
        format!("{ec_h}.{ec_p}.{}", b64(ecdsa_der(&real_ec_sig))),
        TokenError::BadSignature,
    ));

    // Keys embedded in or referenced from the header, signed by the attacker's own key.
    let attacker = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = attacker.public_key().as_ref().to_vec();
    let attacker_jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let attacker_token = |extra: (&str, serde_json::Value)| {
        let mut h = header("ES256", "ec-1");
        h[extra.0] = extra.1;
        let input = format!("{}.{}", b64(h.to_string()), b64(claims().to_string()));
        let sig = attacker.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    };
    cases.push(case(
        "jwk header with the attacker's key",
        attacker_token(("jwk", attacker_jwk)),
        TokenError::EmbeddedKey("jwk"),
    ));
    cases.push(case(
        "jku header to the attacker's JWKS",
        attacker_token(("jku", json!("http://127.0.0.1:9/jwks.json"))),
        TokenError::EmbeddedKey("jku"),
    ));
    cases.push(case(
        "x5u header to the attacker's certificate",
        attacker_token(("x5u", json!("http://127.0.0.1:9/cert.pem"))),
        TokenError::EmbeddedKey("x5u"),
    ));
    cases.push(case(
        "x5c header with a self-signed certificate",
        attacker_token(("x5c", json!(["MIIBszCCAVmgAwIBAgIU"]))),
        TokenError::EmbeddedKey("x5c"),
    ));

    // kid injection, each signed with the secret the injected lookup would yield.
    let kid_probes: [(&str, &[u8]); 6] = [
        ("../../../../../../dev/null", b""),
        ("/dev/null", b"\0"),
        ("x' UNION SELECT '1';--", b"1"),
        ("|sleep 10", b"1"),
        ("$(curl 127.0.0.1:9)", b"1"),
        ("http://127.0.0.1:9/key", b"1"),
    ];
    for (kid, secret) in kid_probes {
        cases.push(case(
            format!("kid {kid:?} with a matching HMAC secret"),
            hs256(&header("HS256", kid), &claims(), secret),
            TokenError::InvalidKid,
        ));
    }
    cases.push(case(
        "kid unknown",
        signed_claims(&s.rsa, &header("RS256", "rsa-2"), &claims()),
        TokenError::UnknownKey("rsa-2".into()),
    ));

    // alg switched under the original signature.
    let switched = |alg: &str, kid: &str, sig: &str, payload: &str| {
        format!("{}.{payload}.{sig}", b64(header(alg, kid).to_string()))
    };
    cases.push(case(
        "alg RS256→PS256 under the original signature",
        switched("PS256", "rsa-1", &rsa_sig, &rsa_p),
        mismatch("PS256", Algorithm::RS256),
    ));
    cases.push(case(
        "alg RS256→ES256 under the original signature",
        switched("ES256", "rsa-1", &rsa_sig, &rsa_p),
        mismatch("ES256", Algorithm::RS256),
    ));
    cases.push(case(
        "alg EdDSA→Ed25519 under the original signature",
        switched("Ed25519", "ed-1", &ed_sig, &ed_p),
        unsupported("Ed25519"),
    ));
    cases.push(case(
        "alg rs256 (lower case) under the original signature",
        switched("rs256", "rsa-1", &rsa_sig, &rsa_p),
        unsupported("rs256"),
    ));
    cases.push(case(
        "kid switched to another key under the original signature",
        switched("ES256", "ec-1", &rsa_sig, &rsa_p),
        TokenError::BadSignature,
    ));

    // Claims tampered under the original signature.
    cases.push(case(
        "sub tampered under the original signature",
        format!("{rsa_h}.{}.{rsa_sig}", b64(admin.to_string())),
        TokenError::BadSignature,
    ));
    let mut longer = claims();
    longer["exp"] = json!(NOW + 10_000_000);
    cases.push(case(
        "exp extended under the original signature",
        format!("{rsa_h}.{}.{rsa_sig}", b64(longer.to_string())),
        TokenError::BadSignature,
    ));

    // Critical header parameters.
    let mut crit = header("EdDSA", "ed-1");
    crit["crit"] = json!(["exp"]);
    crit["exp"] = json!(NOW);
    cases.push(case(
        "crit naming a parameter not understood",
        signed_claims(&s.ed, &crit, &claims()),
        TokenError::UnsupportedCritical(vec!["exp".into()]),
    ));
    let mut b64_crit = header("EdDSA", "ed-1");
    b64_crit["crit"] = json!(["b64"]);
    b64_crit["b64"] = json!(false);
    cases.push(case(
        "crit b64 (RFC 7797 unencoded payload)",
        signed_claims(&s.ed, &b64_crit, &claims()),
        TokenError::UnsupportedCritical(vec!["b64".into()]),
    ));

    // Parser differentials, validly signed.
    let dup_claims = r#"{"iss":"https://tessera.test","sub":"alice","sub":"admin","aud":"api","exp":9999999999,"iat":1700000000,"jti":"j","client_id":"web"}"#;
    cases.push(case(
        "duplicate sub claim",
        signed(&s.ed, &header("EdDSA", "ed-1"), dup_claims.as_bytes()),
        TokenError::DuplicateMember { part: Part::Payload, name: "sub".into() },
    ));
    let dup_header = r#"{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"ed-1"}"#;
    let dup_header_token = sign_compact(&s.ed, dup_header.as_bytes(), claims().to_string().as_bytes()).unwrap();
    cases.push(case(
        "duplicate alg header",
        dup_header_token,
        TokenError::DuplicateMember { part: Part::Header, name: "alg".into() },
    ));
    let mut string_exp = claims();
    string_exp["exp"] = json!((NOW - 100).to_string());
    cases.push(case(
        "exp as a string (CVE-2026-25537)",
        signed_claims(&s.ed, &header("EdDSA", "ed-1"), &string_exp),
        TokenError::InvalidClaim { name: "exp", reason: "must be a JSON number" },
    ));
    cases.push(case(
        "payload is not JSON",
        signed(&s.ed, &header("EdDSA", "ed-1"), b"not json"),
        TokenError::BadJson { part: Part::Payload, reason: "expected ident at line 1 column 2".into() },
    ));

    // Base64url strictness.
    cases.push(case(
        "padding on the header",
        format!("{rsa_h}=.{rsa_p}.{rsa_sig}"),
        TokenError::BadBase64 { part: Part::Header },
    ));
    cases.push(case(
        "padding on the signature",
        format!("{rsa_h}.{rsa_p}.{rsa_sig}=="),
        TokenError::BadBase64 { part: Part::Signature },
    ));
    let std_alphabet = rsa_sig.replace('-', "+").replace('_', "/");
    assert_ne!(std_alphabet, rsa_sig, "the fixture signature must contain - or _");
    cases.push(case(
        "standard base64 alphabet in the signature",
        format!("{rsa_h}.{rsa_p}.{std_alphabet}"),
        TokenError::BadBase64 { part: Part::Signature },
    ));
    cases.push(case(
        "whitespace inside the payload",
        format!("{rsa_h}.{} {}.{rsa_sig}", &rsa_p[..10], &rsa_p[10..]),
        TokenError::BadBase64 { part: Part::Payload },
    ));
    cases.push(case(
        "non-canonical trailing bits in the signature",
        format!("{rsa_h}.{rsa_p}.{}", flip_trailing_bits(&rsa_sig)),
        TokenError::BadBase64 { part: Part::Signature },
    ));
    // Longer than any signature (RSA-8192's 1,024 bytes), within the size limit: refused, not decoded past a buffer.
    cases.push(case(
        "a signature of 1,500 bytes",
        format!("{rsa_h}.{rsa_p}.{}", "A".repeat(2000)),
        TokenError::BadBase64 { part: Part::Signature },
    ));

    // Extra or missing segments, size, serialization.
    cases.push(case("four segments", format!("{valid_rsa}.{rsa_sig}"), TokenError::WrongPartCount(4)));
    cases.push(case(
        "five segments (JWE shape)",
        format!("{rsa_h}.{rsa_p}.{rsa_p}.{rsa_p}.{rsa_sig}"),
        TokenError::WrongPartCount(5),
    ));
    cases.push(case("one segment", rsa_p.clone(), TokenError::WrongPartCount(1)));
    cases.push(case("empty string", String::new(), TokenError::WrongPartCount(1)));
    let mut huge = claims();
    huge["pad"] = json!("x".repeat(9 * 1024));
    let oversized = signed_claims(&s.ed, &header("EdDSA", "ed-1"), &huge);
    let too_large = TokenError::TooLarge { len: oversized.len(), limit: DEFAULT_MAX_TOKEN_LEN };
    cases.push(case("oversized token (over 8 KiB)", oversized, too_large));
    let flattened = json!({"protected": rsa_h, "payload": rsa_p, "signature": rsa_sig}).to_string();
    cases.push(case("flattened JWS JSON serialization", flattened, TokenError::JsonSerialization));
    let polyglot = format!(
        r#"{{"{rsa_h}.{}.":"","protected":"{rsa_h}","payload":"{rsa_p}","signature":"{rsa_sig}"}}"#,
        b64(admin.to_string())
    );
    cases.push(case("compact/JSON polyglot (CVE-2022-39227)", polyglot, TokenError::JsonSerialization));

    // Type confusion: other kinds of JWT signed by a trusted key are not access tokens.
    for typ in [Some("JWT"), Some("refresh+jwt"), Some("id_token+jwt"), None] {
        let mut h = header("EdDSA", "ed-1");
        match typ {
            Some(typ) => h["typ"] = json!(typ),
            None => drop(h.as_object_mut().unwrap().remove("typ")),
        }
        cases.push(case(
            format!("typ {typ:?} is not an access token"),
            signed_claims(&s.ed, &h, &claims()),
            TokenError::WrongType { expected: ACCESS_TOKEN_TYP, found: typ.unwrap_or_default().into() },
        ));
    }

    // Validly signed but outside the policy.
    let with = |name: &str, value: serde_json::Value| {
        let mut c = claims();
        c[name] = value;
        signed_claims(&s.ed, &header("EdDSA", "ed-1"), &c)
    };
    let without = |name: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        signed_claims(&s.ed, &header("EdDSA", "ed-1"), &c)
    };
    cases.push(case("expired", with("exp", json!(NOW - 31)), TokenError::Expired { exp: NOW - 31, now: NOW }));
    cases.push(case(
        "not yet valid",
        with("nbf", json!(NOW + 31)),
        TokenError::NotYetValid { nbf: NOW + 31, now: NOW },
    ));
    cases.push(case(
        "issued in the future",
        with("iat", json!(NOW + 31)),
        TokenError::IssuedInFuture { iat: NOW + 31, now: NOW },
    ));
    cases.push(case(
        "wrong issuer",
        with("iss", json!("https://evil.test")),
        TokenError::WrongIssuer("https://evil.test".into()),
    ));
    cases.push(case(
        "issuer differs only by trailing slash",
        with("iss", json!(format!("{ISSUER}/"))),
        TokenError::WrongIssuer(format!("{ISSUER}/")),
    ));
    cases.push(case(
        "wrong audience",
        with("aud", json!(["other", "another"])),
        TokenError::WrongAudience(vec!["other".into(), "another".into()]),
    ));
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
        cases.push(case(format!("required claim {claim} missing"), without(claim), TokenError::MissingClaim(claim)));
    }
    cases
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// Changes the last character of a base64url string so that it decodes to the same bytes only if trailing bits were
/// ignored: a 256-byte RSA signature leaves 4 unused bits in its last character.
fn flip_trailing_bits(sig: &str) -> String {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = sig.chars().last().unwrap();
    let index = ALPHABET.find(last).unwrap();
    let flipped = ALPHABET.as_bytes()[index ^ 1] as char;
    format!("{}{flipped}", &sig[..sig.len() - 1])
}

#[test]
fn the_untampered_tokens_verify() {
    let s = setup();
    for (key, alg, kid) in [(&s.rsa, "RS256", "rsa-1"), (&s.ec, "ES256", "ec-1"), (&s.ed, "EdDSA", "ed-1")] {
        let token = signed_claims(key, &header(alg, kid), &claims());
        let verified = s.verifier.verify(&token, NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.claims().unwrap().sub.as_deref(), Some("alice"));
    }
    // And through the typed encoder.
    let typed = Claims {
        iss: Some(ISSUER.into()),
        sub: Some("bob".into()),
        aud: Some(Audience::One(AUDIENCE.into())),
        exp: Some(NOW + 60),
        iat: Some(NOW),
        jti: Some("j2".into()),
        client_id: Some("cli".into()),
        ..Claims::default()
    };
    let token = encode_jwt(&s.ed, Some(ACCESS_TOKEN_TYP), &typed).unwrap();
    assert_eq!(s.verifier.verify(&token, NOW).unwrap().claims().unwrap(), &typed);
}

/// Payloads of a few hundred bytes are decoded on the stack, longer ones on the heap: both verify alike, and a bad
/// one is refused alike.
#[test]
fn payloads_of_every_size_up_to_the_limit_verify() {
    let s = setup();
    for pad in [0, 1500, 2100, 5000] {
        let mut long = claims();
        long["pad"] = json!("x".repeat(pad));
        let token = signed_claims(&s.ed, &header("EdDSA", "ed-1"), &long);
        let verified = s.verifier.verify(&token, NOW).unwrap_or_else(|e| panic!("pad {pad}: {e}"));
        assert_eq!(verified.claims().unwrap().extra["pad"].as_str().map(str::len), Some(pad));
        let [h, p, sig] = parts(&token);
        let broken = format!("{h}.{}!.{sig}", &p[..p.len() - 1]);
        assert_eq!(s.verifier.verify(&broken, NOW).unwrap_err(), TokenError::BadBase64 { part: Part::Payload });
    }
}

#[test]
fn every_forged_or_malformed_token_is_refused_for_the_expected_reason() {
    refuse_every_case(&setup());
}

/// A remembering verifier that has already verified the genuine tokens (most cases are derived from them) still
/// refuses every case, each for the same reason: nothing near a remembered token is taken for it.
#[test]
fn a_verifier_remembering_the_genuine_tokens_refuses_every_forgery_alike() {
    let s = setup_remembering(1024);
    for (key, alg, kid) in [(&s.rsa, "RS256", "rsa-1"), (&s.ec, "ES256", "ec-1"), (&s.ed, "EdDSA", "ed-1")] {
        let token = signed_claims(key, &header(alg, kid), &claims());
        for _ in 0..2 {
            s.verifier.verify(&token, NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
        }
    }
    refuse_every_case(&s);
}

fn refuse_every_case(s: &Setup) {
    let cases = cases(s);
    assert!(cases.len() >= 40, "the table must hold at least 40 cases, has {}", cases.len());
    // Each case is a different token: two names for one token would count one attack twice.
    let mut seen = std::collections::HashMap::new();
    for case in &cases {
        if let Some(first) = seen.insert(case.token.as_str(), case.name.as_str()) {
            panic!("{:?} and {:?} build the same token", first, case.name);
        }
    }
    let mut failures = Vec::new();
    for case in &cases {
        match s.verifier.verify(&case.token, NOW) {
            Ok(_) => failures.push(format!("ACCEPTED: {}", case.name)),
            Err(err) if err != case.expect => {
                failures.push(format!("wrong reason for {}: {err:?}, expected {:?}", case.name, case.expect));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
