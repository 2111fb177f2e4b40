//! Known-answer tests: the RFC 7515 and RFC 8037 examples verify, the deterministic ones are reproduced byte for
//! byte, and the unsecured and JSON-serialized examples are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use common::{fixture, private_jwk};
use tessera_jose::{sign_compact, KeySet, Policy, SigningKey, TokenError, Verifier};

/// An instant before the examples' `exp` of 1300819380.
const AT: i64 = 1_300_819_000;

fn verifier_for(jwk_fixture: &str) -> Verifier {
    let mut jwk = private_jwk(jwk_fixture, "x");
    jwk.kid = None;
    let key = SigningKey::from_private_jwk(&jwk).unwrap();
    Verifier::new(KeySet::from_keys([key.verifying_key().clone()]).unwrap(), Policy::jws())
}

#[test]
fn rfc7515_a2_rs256_verifies() {
    let verified =
        verifier_for("rfc7515-a2-rsa.private.jwk.json").verify(&fixture("rfc7515-a2-rs256.jws"), AT).unwrap();
    let claims = verified.claims().unwrap();
    assert_eq!(claims.iss.as_deref(), Some("joe"));
    assert_eq!(claims.exp, Some(1_300_819_380));
    assert_eq!(claims.extra["http://example.com/is_root"], serde_json::Value::Bool(true));
}

#[test]
fn rfc7515_a3_es256_verifies() {
    let verifier = verifier_for("rfc7515-a3-p256.private.jwk.json");
    assert!(verifier.verify(&fixture("rfc7515-a3-es256.jws"), AT).is_ok());
}

#[test]
fn rfc8037_a4_eddsa_verifies_a_plain_text_payload() {
    let verified =
        verifier_for("rfc8037-a1-ed25519.private.jwk.json").verify(&fixture("rfc8037-a4-eddsa.jws"), AT).unwrap();
    assert_eq!(verified.payload, tessera_jose::Payload::Text("Example of Ed25519 signing".into()));
}

#[test]
fn examples_expire_at_their_exp() {
    let verifier = verifier_for("rfc7515-a2-rsa.private.jwk.json");
    let err = verifier.verify(&fixture("rfc7515-a2-rs256.jws"), 1_300_819_380 + 30).unwrap_err();
    assert!(matches!(err, TokenError::Expired { exp: 1_300_819_380, .. }), "{err:?}");
}

#[test]
fn signer_reproduces_rfc7515_a2_byte_for_byte() {
    let key = SigningKey::from_private_jwk(&private_jwk("rfc7515-a2-rsa.private.jwk.json", "x")).unwrap();
    let payload = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
    let token = sign_compact(&key, br#"{"alg":"RS256"}"#, payload.as_bytes()).unwrap();
    assert_eq!(token, fixture("rfc7515-a2-rs256.jws"));
}

#[test]
fn signer_reproduces_rfc8037_a4_byte_for_byte() {
    let key = SigningKey::from_private_jwk(&private_jwk("rfc8037-a1-ed25519.private.jwk.json", "x")).unwrap();
    let token = sign_compact(&key, br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing").unwrap();
    assert_eq!(token, fixture("rfc8037-a4-eddsa.jws"));
}

#[test]
fn rfc7515_a5_unsecured_is_refused() {
    let err = verifier_for("rfc7515-a2-rsa.private.jwk.json").verify(&fixture("rfc7515-a5-none.jws"), AT).unwrap_err();
    assert_eq!(err, TokenError::AlgNone);
}

#[test]
fn rfc7515_a6_a7_json_serializations_are_refused() {
    let verifier = verifier_for("rfc7515-a3-p256.private.jwk.json");
    for name in ["rfc7515-a6-general-json.jws", "rfc7515-a7-flattened-json.jws"] {
        assert_eq!(verifier.verify(&fixture(name), AT).unwrap_err(), TokenError::JsonSerialization, "{name}");
    }
}

#[test]
fn rfc8037_a2_public_key_and_a3_thumbprint() {
    let key = SigningKey::from_private_jwk(&{
        let mut jwk = private_jwk("rfc8037-a1-ed25519.private.jwk.json", "x");
        jwk.kid = None;
        jwk
    })
    .unwrap();
    assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    let public = key.verifying_key().public_jwk().unwrap();
    assert_eq!(public.x.as_deref(), Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"));
    assert_eq!(public.private_member(), None);
}
