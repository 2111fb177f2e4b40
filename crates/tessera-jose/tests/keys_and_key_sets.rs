//! The algorithms Tessera verifies but never signs with (HS256 under an explicit `oct` key, PS256), and the rules
//! every key and key set must pass before it verifies anything: RSA size and exponent bounds, `use` and `key_ops`,
//! the key cap, one key per `kid`, an `alg` that fits the key type, and public-key material never taken for an
//! HMAC secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use common::b64;
use serde_json::json;
use tessera_jose::{
    Algorithm, Audience, Claims, Jwk, KeyError, KeySet, Policy, RsaBits, SigningKey, TokenError, Verifier,
    VerifyingKey, ACCESS_TOKEN_TYP, MAX_KEYS_IN_SET,
};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://idp.test";
/// 32 bytes: the shortest HMAC secret accepted.
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn claims() -> String {
    let claims = Claims {
        iss: Some(ISSUER.into()),
        sub: Some("alice".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(NOW + 600),
        iat: Some(NOW),
        jti: Some("j1".into()),
        client_id: Some("web".into()),
        ..Claims::default()
    };
    serde_json::to_string(&claims).unwrap()
}

fn signing_input(alg: &str, kid: &str, payload: &str) -> String {
    let header = json!({"alg": alg, "typ": ACCESS_TOKEN_TYP, "kid": kid}).to_string();
    format!("{}.{}", b64(header), b64(payload))
}

fn access_verifier(keys: KeySet) -> Verifier {
    Verifier::new(keys, Policy::access(ISSUER, vec!["api".into()]))
}

fn hs256_token(alg: &str, kid: &str, secret: &[u8]) -> String {
    let input = signing_input(alg, kid, &claims());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn oct_jwks(kid: &str, alg: Option<&str>, secret: &[u8]) -> String {
    let mut jwk = json!({"kty": "oct", "kid": kid, "k": b64(secret)});
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    json!({ "keys": [jwk] }).to_string()
}

/// The error a key set gives for its key at `index` failing with `inner`.
fn key_error(index: usize, inner: &KeyError) -> KeyError {
    KeyError::InvalidJwk(format!("key #{index}: {inner}"))
}

#[test]
fn hs256_verifies_under_an_explicit_oct_key_with_its_secret_only() {
    let keys = KeySet::from_jwks_json(oct_jwks("shared", Some("HS256"), SECRET).as_bytes()).unwrap();
    let verifier = access_verifier(keys);
    let verified = verifier.verify(&hs256_token("HS256", "shared", SECRET), NOW).unwrap();
    assert_eq!(verified.claims().unwrap().sub.as_deref(), Some("alice"));

    let other_secret = b"fedcba9876543210fedcba9876543210";
    assert_eq!(
        verifier.verify(&hs256_token("HS256", "shared", other_secret), NOW).unwrap_err(),
        TokenError::BadSignature
    );
    let genuine = hs256_token("HS256", "shared", SECRET);
    let (input, tag) = genuine.rsplit_once('.').unwrap();
    let truncated = format!("{input}.{}", b64(&tessera_jose::base64url::decode(tag).unwrap()[..16]));
    assert_eq!(verifier.verify(&truncated, NOW).unwrap_err(), TokenError::BadSignature, "a truncated tag");
    let mut tampered_claims: serde_json::Value = serde_json::from_str(&claims()).unwrap();
    tampered_claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{tag}", input.split('.').next().unwrap(), b64(tampered_claims.to_string()));
    assert_eq!(verifier.verify(&tampered, NOW).unwrap_err(), TokenError::BadSignature, "claims under another's tag");
    assert_eq!(
        verifier.verify(&hs256_token("RS256", "shared", SECRET), NOW).unwrap_err(),
        TokenError::AlgorithmMismatch { token: "RS256".into(), key: Algorithm::HS256 },
        "the key decides the algorithm"
    );
    assert_eq!(
        verifier.verify(&hs256_token("HS384", "shared", SECRET), NOW).unwrap_err(),
        TokenError::UnsupportedAlgorithm("HS384".into())
    );

    // An `oct` key must name its algorithm, and be long enough.
    assert_eq!(
        KeySet::from_jwks_json(oct_jwks("shared", None, SECRET).as_bytes()).unwrap_err(),
        key_error(0, &KeyError::MissingMember("alg"))
    );
    assert_eq!(
        KeySet::from_jwks_json(oct_jwks("shared", Some("HS256"), &SECRET[..31]).as_bytes()).unwrap_err(),
        key_error(0, &KeyError::TooWeak("HS256 secret is 248 bits; at least 256 required".into()))
    );
}

/// A fresh RSA key pair and its public JWK bound to `alg` (none when `None`).
fn rsa_pair(alg: Option<&str>, kid: &str) -> (RsaKeyPair, Jwk) {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let jwk = Jwk {
        kty: "RSA".into(),
        kid: Some(kid.into()),
        alg: alg.map(Into::into),
        n: Some(b64(public.modulus().big_endian_without_leading_zero())),
        e: Some(b64(public.exponent().big_endian_without_leading_zero())),
        ..Jwk::default()
    };
    (pair, jwk)
}

#[allow(
    clippy::disallowed_methods,
    reason = "an RSA-PSS signature's salt comes from the OS CSPRNG, as the issuer's would"
)]
fn rsa_token(
    pair: &RsaKeyPair,
    padding: &'static dyn signature::RsaEncoding,
    alg: &str,
    kid: &str,
    payload: &str,
) -> String {
    let input = signing_input(alg, kid, payload);
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
    format!("{input}.{}", b64(sig))
}

#[test]
fn ps256_verifies_under_an_rsa_key_bound_to_ps256_and_nothing_else() {
    let (pair, jwk) = rsa_pair(Some("PS256"), "pss");
    let verifier = access_verifier(KeySet::from_keys([VerifyingKey::from_public_jwk(&jwk).unwrap()]).unwrap());
    let pss = rsa_token(&pair, &signature::RSA_PSS_SHA256, "PS256", "pss", &claims());
    assert_eq!(verifier.verify(&pss, NOW).unwrap().claims().unwrap().sub.as_deref(), Some("alice"));

    let pkcs1 = rsa_token(&pair, &signature::RSA_PKCS1_SHA256, "PS256", "pss", &claims());
    assert_eq!(verifier.verify(&pkcs1, NOW).unwrap_err(), TokenError::BadSignature, "PKCS#1 v1.5 is not PSS");
    let as_rs256 = rsa_token(&pair, &signature::RSA_PKCS1_SHA256, "RS256", "pss", &claims());
    assert_eq!(
        verifier.verify(&as_rs256, NOW).unwrap_err(),
        TokenError::AlgorithmMismatch { token: "RS256".into(), key: Algorithm::PS256 }
    );
    let (input, sig) = pss.rsplit_once('.').unwrap();
    let header = input.split('.').next().unwrap();
    let tampered = format!("{header}.{}.{sig}", b64(claims().replace("alice", "admin")));
    assert_eq!(verifier.verify(&tampered, NOW).unwrap_err(), TokenError::BadSignature);

    // An RSA key without `alg` is RS256: a PSS token is not for it.
    let (pair, jwk) = rsa_pair(None, "rsa");
    let verifier = access_verifier(KeySet::from_keys([VerifyingKey::from_public_jwk(&jwk).unwrap()]).unwrap());
    let pss = rsa_token(&pair, &signature::RSA_PSS_SHA256, "PS256", "rsa", &claims());
    assert_eq!(
        verifier.verify(&pss, NOW).unwrap_err(),
        TokenError::AlgorithmMismatch { token: "PS256".into(), key: Algorithm::RS256 }
    );
    assert!(verifier.verify(&rsa_token(&pair, &signature::RSA_PKCS1_SHA256, "RS256", "rsa", &claims()), NOW).is_ok());
}

#[test]
fn rsa_keys_outside_the_size_and_exponent_bounds_are_refused() {
    let (_, good) = rsa_pair(None, "rsa");
    let modulus = tessera_jose::base64url::decode(good.n.as_deref().unwrap()).unwrap();
    let with = |n: &[u8], e: &[u8]| Jwk { n: Some(b64(n)), e: Some(b64(e)), ..good.clone() };
    let refused = |n: &[u8], e: &[u8]| VerifyingKey::from_public_jwk(&with(n, e)).unwrap_err();
    let f4 = [1u8, 0, 1];

    assert!(VerifyingKey::from_public_jwk(&good).is_ok());
    assert!(VerifyingKey::from_public_jwk(&with(&[&[0u8][..], &modulus].concat(), &f4)).is_ok(), "leading zeros");
    let too_weak = |bits: usize| KeyError::TooWeak(format!("RSA modulus is {bits} bits; at least 2048 required"));
    assert_eq!(refused(&modulus[..128], &f4), too_weak(1024));
    assert_eq!(refused(&[&[0x7f][..], &[0xff; 255][..]].concat(), &f4), too_weak(2047));
    assert_eq!(refused(&[0xff; 1025], &f4), KeyError::Unsupported("RSA modulus of 8200 bits (at most 8192)".into()));

    let weak_exponent =
        |value: u64| KeyError::TooWeak(format!("RSA public exponent {value} (must be odd, 65537 to 2^33)"));
    assert_eq!(refused(&modulus, &[3]), weak_exponent(3));
    assert_eq!(refused(&modulus, &[1]), weak_exponent(1));
    assert_eq!(refused(&modulus, &[0xff, 0xff]), weak_exponent(65_535));
    assert_eq!(refused(&modulus, &[1, 0, 0]), weak_exponent(65_536), "an even exponent");
    assert_eq!(refused(&modulus, &[1, 0, 0, 0, 0, 1]), weak_exponent((1 << 40) + 1), "over 2^33");

    // In a key set, the whole set is refused, naming the key's position.
    let jwks = json!({"keys": [good, with(&modulus, &[3])]}).to_string();
    assert_eq!(KeySet::from_jwks_json(jwks.as_bytes()).unwrap_err(), key_error(1, &weak_exponent(3)));
}

#[test]
fn a_key_must_be_for_signatures_by_use_and_key_ops() {
    let key = SigningKey::generate(Algorithm::ES256, RsaBits::default()).unwrap();
    let public = key.verifying_key().public_jwk().unwrap().clone();
    let with = |use_: Option<&str>, ops: Option<&[&str]>| Jwk {
        use_: use_.map(Into::into),
        key_ops: ops.map(|ops| ops.iter().map(|op| (*op).to_owned()).collect()),
        ..public.clone()
    };
    assert!(VerifyingKey::from_public_jwk(&with(Some("sig"), None)).is_ok());
    assert!(VerifyingKey::from_public_jwk(&with(None, Some(&["verify"]))).is_ok());
    assert!(VerifyingKey::from_public_jwk(&with(None, None)).is_ok());
    assert_eq!(
        VerifyingKey::from_public_jwk(&with(Some("enc"), None)).unwrap_err(),
        KeyError::Unsupported(r#"use "enc" (only "sig")"#.into())
    );
    assert_eq!(
        VerifyingKey::from_public_jwk(&with(None, Some(&["encrypt", "wrapKey"]))).unwrap_err(),
        KeyError::Unsupported(r#"key_ops ["encrypt", "wrapKey"] allow neither sign nor verify"#.into())
    );
    let jwks = json!({"keys": [with(Some("enc"), None)]}).to_string();
    assert_eq!(
        KeySet::from_public_jwks_json(jwks.as_bytes()).unwrap_err(),
        key_error(0, &KeyError::Unsupported(r#"use "enc" (only "sig")"#.into()))
    );
}

#[test]
fn a_key_set_holds_at_most_the_cap_and_each_kid_once() {
    let public = |kid: String| {
        let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::default()).unwrap();
        Jwk { kid: Some(kid), ..key.verifying_key().public_jwk().unwrap().clone() }
    };
    let mut jwks: Vec<Jwk> = (0..MAX_KEYS_IN_SET).map(|i| public(format!("k{i}"))).collect();
    let document = |keys: &[Jwk]| json!({ "keys": keys }).to_string();
    let mut full = KeySet::from_public_jwks_json(document(&jwks).as_bytes()).unwrap();
    assert_eq!(full.len(), MAX_KEYS_IN_SET);
    let one_more = public("k-extra".into());
    assert_eq!(
        full.insert(VerifyingKey::from_public_jwk(&one_more).unwrap()).unwrap_err(),
        KeyError::TooManyKeys(MAX_KEYS_IN_SET + 1)
    );
    jwks.push(one_more);
    assert_eq!(
        KeySet::from_public_jwks_json(document(&jwks).as_bytes()).unwrap_err(),
        KeyError::TooManyKeys(MAX_KEYS_IN_SET + 1)
    );

    let twins = [public("same".into()), public("same".into())];
    assert_eq!(
        KeySet::from_public_jwks_json(document(&twins).as_bytes()).unwrap_err(),
        KeyError::DuplicateKid("same".into())
    );
    let keys = twins.iter().map(|jwk| VerifyingKey::from_public_jwk(jwk).unwrap());
    assert_eq!(KeySet::from_keys(keys).unwrap_err(), KeyError::DuplicateKid("same".into()));
}

#[test]
fn an_alg_that_does_not_fit_the_key_type_is_refused() {
    let (_, rsa) = rsa_pair(None, "rsa");
    let ec = SigningKey::generate(Algorithm::ES256, RsaBits::default())
        .unwrap()
        .verifying_key()
        .public_jwk()
        .unwrap()
        .clone();
    let okp = SigningKey::generate(Algorithm::EdDSA, RsaBits::default())
        .unwrap()
        .verifying_key()
        .public_jwk()
        .unwrap()
        .clone();
    let oct = Jwk { kty: "oct".into(), kid: Some("oct".into()), k: Some(b64(SECRET)), ..Jwk::default() };
    let cases = [
        (&rsa, "ES256"),
        (&rsa, "EdDSA"),
        (&rsa, "HS256"),
        (&ec, "RS256"),
        (&ec, "PS256"),
        (&ec, "EdDSA"),
        (&ec, "HS256"),
        (&okp, "ES256"),
        (&okp, "HS256"),
        (&oct, "RS256"),
        (&oct, "ES256"),
        (&oct, "EdDSA"),
    ];
    for (jwk, alg) in cases {
        let bound = Jwk { alg: Some(alg.into()), ..jwk.clone() };
        assert_eq!(
            VerifyingKey::from_public_jwk(&bound).unwrap_err(),
            KeyError::AlgorithmKeyMismatch { alg: alg.into(), kty: jwk.kty.clone() },
            "{} with {alg}",
            jwk.kty
        );
    }
    assert_eq!(
        VerifyingKey::from_public_jwk(&Jwk { alg: Some("RS512".into()), ..rsa.clone() }).unwrap_err(),
        KeyError::Unsupported(r#"alg "RS512""#.into())
    );
    // Without `alg`, only the unambiguous inferences.
    for (jwk, alg) in [(&rsa, Algorithm::RS256), (&ec, Algorithm::ES256), (&okp, Algorithm::EdDSA)] {
        let bare = Jwk { alg: None, ..jwk.clone() };
        assert_eq!(VerifyingKey::from_public_jwk(&bare).unwrap().algorithm(), alg);
    }
}

/// An RSA public key in OpenSSH's `authorized_keys` form.
fn openssh_rsa(n: &[u8], e: &[u8]) -> String {
    use base64::Engine as _;
    let field = |bytes: &[u8]| [&(bytes.len() as u32).to_be_bytes()[..], bytes].concat();
    let mpint = |bytes: &[u8]| if bytes[0] & 0x80 != 0 { field(&[&[0u8][..], bytes].concat()) } else { field(bytes) };
    let blob = [field(b"ssh-rsa"), mpint(e), mpint(n)].concat();
    format!("ssh-rsa {} attacker@example\n", base64::engine::general_purpose::STANDARD.encode(blob))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[test]
fn public_key_material_is_never_an_hmac_secret() {
    let (_, rsa) = rsa_pair(None, "rsa");
    let n = tessera_jose::base64url::decode(rsa.n.as_deref().unwrap()).unwrap();
    let e = tessera_jose::base64url::decode(rsa.e.as_deref().unwrap()).unwrap();
    let spki = aws_lc_rs::rsa::PublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.as_der().unwrap();
    let spki = spki.as_ref().to_vec();
    // PKCS#1 RSAPublicKey is the BIT STRING inside the SPKI: skip the 24-byte SPKI prefix of a 2048-bit key.
    let pkcs1 = spki[24..].to_vec();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ec_point = ec.public_key().as_ref().to_vec();
    let ec_spki: PublicKeyX509Der<'static> = ec.public_key().as_der().unwrap();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&ec_point[1..33]), "y": b64(&ec_point[33..65])});
    let encodings: Vec<(&str, Vec<u8>)> = vec![
        ("RSA SPKI PEM", pem("PUBLIC KEY", &spki).into_bytes()),
        ("RSA SPKI PEM after blank lines", format!("\n\n{}", pem("PUBLIC KEY", &spki)).into_bytes()),
        ("RSA PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1).into_bytes()),
        ("RSA SPKI DER", spki.clone()),
        ("RSA PKCS#1 DER", pkcs1),
        ("RSA JWK JSON", serde_json::to_vec(&rsa).unwrap()),
        ("RSA OpenSSH", openssh_rsa(&n, &e).into_bytes()),
        ("P-256 SPKI DER", ec_spki.as_ref().to_vec()),
        ("P-256 uncompressed point", ec_point),
        ("P-256 JWK JSON", ec_jwk.to_string().into_bytes()),
        ("P-256 OpenSSH", format!("ecdsa-sha2-nistp256 {} attacker@example", b64(&spki)).into_bytes()),
        ("Ed25519 OpenSSH", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZhbHNlIGtleSBmb3IgYSB0ZXN0IG9ubHkgISEhISE=".into()),
    ];
    let rejected = KeyError::Rejected("HMAC secret looks like public-key material".into());
    for (encoding, secret) in &encodings {
        assert!(secret.len() >= 32, "{encoding} must pass the length rule to reach the material rule");
        assert_eq!(VerifyingKey::hmac("shared".into(), secret).unwrap_err(), rejected, "{encoding}");
        let jwks = oct_jwks("shared", Some("HS256"), secret);
        assert_eq!(KeySet::from_jwks_json(jwks.as_bytes()).unwrap_err(), key_error(0, &rejected), "{encoding}");
    }
    assert!(VerifyingKey::hmac("shared".into(), SECRET).is_ok(), "a plain secret is accepted");
}
