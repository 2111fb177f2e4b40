//! A verifier that remembers verified tokens gives exactly the answers of one that does not: a remembered token
//! still expires, and replacing the keys or the policy forgets everything remembered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use common::rfc_keys;
use tessera_jose::{
    encode_jwt, Audience, Claims, KeySet, Policy, SigningKey, TokenError, Verifier, ACCESS_TOKEN_TYP,
    DEFAULT_LEEWAY_SECS,
};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://tessera.test";

fn token(key: &SigningKey, jti: &str, exp: i64) -> String {
    let claims = Claims {
        iss: Some(ISSUER.into()),
        sub: Some("alice".into()),
        aud: Some(Audience::One("api".into())),
        exp: Some(exp),
        iat: Some(NOW),
        jti: Some(jti.into()),
        client_id: Some("web".into()),
        ..Claims::default()
    };
    encode_jwt(key, Some(ACCESS_TOKEN_TYP), &claims).unwrap()
}

fn verifier(keys: &[&SigningKey], entries: usize) -> Verifier {
    let set = KeySet::from_keys(keys.iter().map(|key| key.verifying_key().clone())).unwrap();
    Verifier::remembering(set, Policy::access(ISSUER, vec!["api".into()]), entries)
}

#[test]
fn a_remembered_token_still_expires_and_is_not_yet_valid_before_its_iat() {
    let [rsa, ..] = rfc_keys();
    let verifier = verifier(&[&rsa], 16);
    let token = token(&rsa, "j1", NOW + 60);
    let first = verifier.verify(&token, NOW).unwrap();
    let again = verifier.verify(&token, NOW + 1).unwrap();
    assert_eq!(first.claims(), again.claims(), "a remembered verification returns the same claims");

    let last_valid = NOW + 60 + DEFAULT_LEEWAY_SECS - 1;
    assert!(verifier.verify(&token, last_valid).is_ok());
    assert!(matches!(verifier.verify(&token, last_valid + 1), Err(TokenError::Expired { .. })));
    let before_iat = NOW - DEFAULT_LEEWAY_SECS - 1;
    assert!(matches!(verifier.verify(&token, before_iat), Err(TokenError::IssuedInFuture { .. })));
}

#[test]
fn replacing_the_keys_forgets_tokens_of_a_withdrawn_key() {
    let [rsa, ec, _] = rfc_keys();
    let verifier = verifier(&[&rsa, &ec], 16);
    let token = token(&rsa, "j1", NOW + 60);
    verifier.verify(&token, NOW).unwrap();
    verifier.verify(&token, NOW).unwrap();

    verifier.replace_keys(KeySet::from_keys([ec.verifying_key().clone()]).unwrap());
    assert!(matches!(verifier.verify(&token, NOW), Err(TokenError::UnknownKey(kid)) if kid == "rsa-1"));
}

#[test]
fn replacing_the_policy_forgets_tokens_it_no_longer_accepts() {
    let [_, _, ed] = rfc_keys();
    let verifier = verifier(&[&ed], 16);
    let token = token(&ed, "j1", NOW + 60);
    verifier.verify(&token, NOW).unwrap();

    verifier.replace_policy(Policy::access(ISSUER, vec!["another-api".into()]));
    assert!(matches!(verifier.verify(&token, NOW), Err(TokenError::WrongAudience(_))));
    verifier.replace_policy(Policy { max_token_len: 64, ..Policy::access(ISSUER, vec!["api".into()]) });
    assert!(matches!(verifier.verify(&token, NOW), Err(TokenError::TooLarge { .. })), "the size limit applies again");
}

#[test]
fn more_tokens_than_entries_all_verify_to_their_own_claims() {
    let [_, ec, _] = rfc_keys();
    let verifier = verifier(&[&ec], 4);
    let tokens: Vec<String> = (0..64).map(|i| token(&ec, &format!("j{i}"), NOW + 60)).collect();
    for round in 0..3 {
        for (i, token) in tokens.iter().enumerate() {
            let verified = verifier.verify(token, NOW).unwrap_or_else(|e| panic!("round {round}, token {i}: {e}"));
            assert_eq!(verified.claims().unwrap().jti.as_deref(), Some(format!("j{i}").as_str()));
        }
    }
}
