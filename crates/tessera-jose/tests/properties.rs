//! Properties: whatever the claims, a signed token verifies to exactly those claims; and changing any single
//! character of a token (to another character a token may hold) gets it refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value};
use tessera_jose::{encode_jwt, Audience, Claims, KeySet, Policy, SigningKey, Verifier, ACCESS_TOKEN_TYP};

const NOW: i64 = 1_700_000_000;
/// Every character of a compact JWS: the base64url alphabet and the separator.
const TOKEN_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn verifier(keys: &[SigningKey]) -> Verifier {
    let set = KeySet::from_keys(keys.iter().map(|key| key.verifying_key().clone())).unwrap();
    let mut policy = Policy::access("https://tessera.test", vec!["api".into(), "other".into()]);
    policy.max_token_len = 64 * 1024;
    Verifier::new(set, policy)
}

fn claims_strategy() -> impl Strategy<Value = Claims> {
    let extra_value = prop_oneof![
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        prop::collection::vec(any::<String>(), 0..4).prop_map(Value::from),
    ];
    (
        any::<String>(),
        prop_oneof![Just(Audience::One("api".into())), Just(Audience::Many(vec!["x".into(), "other".into()]))],
        1i64..1_000_000,
        0i64..1_000,
        "[A-Za-z0-9_-]{1,40}",
        proptest::option::of("[a-z:]{1,10}( [a-z:]{1,10}){0,5}"),
        prop::collection::btree_map("[a-z_]{1,12}", extra_value, 0..6),
    )
        .prop_map(|(sub, aud, ttl, age, jti, scope, extra)| {
            // Extra claims must not shadow the typed ones.
            let extra: Map<String, Value> = extra
                .into_iter()
                .filter(|(name, _)| {
                    !["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid"]
                        .contains(&name.as_str())
                })
                .collect();
            Claims {
                iss: Some("https://tessera.test".into()),
                sub: Some(sub),
                aud: Some(aud),
                exp: Some(NOW + ttl),
                iat: Some(NOW - age),
                jti: Some(jti),
                client_id: Some("web".into()),
                scope,
                extra,
                ..Claims::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_returns_the_same_claims(claims in claims_strategy(), which in 0usize..3) {
        let keys = common::rfc_keys();
        let key = &keys[which];
        let token = encode_jwt(key, Some(ACCESS_TOKEN_TYP), &claims).unwrap();
        let verified = verifier(&keys).verify(&token, NOW).unwrap();
        prop_assert_eq!(verified.claims().unwrap(), &claims);
    }

    /// The replacement is drawn from the characters a compact token is made of (the base64url alphabet and `.`),
    /// so every changed token is still text that reaches the verifier, and every one must be refused.
    #[test]
    fn any_single_character_change_is_refused(
        claims in claims_strategy(),
        which in 0usize..3,
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(TOKEN_ALPHABET.as_bytes().to_vec()),
    ) {
        let keys = common::rfc_keys();
        let token = encode_jwt(&keys[which], Some(ACCESS_TOKEN_TYP), &claims).unwrap();
        let mut bytes = token.into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(verifier(&keys).verify(&changed, NOW).is_err(), "character {} changed and still accepted", at);
    }
}
