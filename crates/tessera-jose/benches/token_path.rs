//! Token-path throughput next to the raw signature operation on the same bytes, in one run.
//!
//! For RS256, ES256 and EdDSA: the full verify path (`Verifier::verify`: parse, policy, key lookup, signature,
//! claims) against aws-lc-rs verifying the same signature over the same signing input; and issuing
//! (`encode_jwt` of a fresh claim set) against aws-lc-rs signing the same signing input. One thread; each pair is
//! measured in alternating rounds so drift on a shared machine hits both sides alike.
//!
//! Run: `cargo bench -p tessera-jose --bench token_path` (add `-- --quick` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a benchmark, not a service

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey, RsaKeyPair};
use tessera_jose::{
    base64url, encode_jwt, Algorithm, Audience, Claims, KeySet, Policy, RsaBits, SigningKey, Verifier, ACCESS_TOKEN_TYP,
};

const NOW: i64 = 1_800_000_000;

fn claims(n: u64) -> Claims {
    Claims {
        iss: Some("https://auth.example.com".into()),
        sub: Some(format!("user-{n}")),
        aud: Some(Audience::One("api".into())),
        exp: Some(NOW + 900),
        iat: Some(NOW),
        jti: Some(format!("jti-{n:016x}")),
        client_id: Some("web".into()),
        scope: Some("read write".into()),
        sid: Some("s-2f0c6b1e".into()),
        ..Claims::default()
    }
}

/// Operations per second of `op`, run for `budget`.
fn rate(budget: Duration, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..32 {
            op(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Median rates of `a` and `b`, measured in alternating rounds.
fn paired(rounds: usize, budget: Duration, mut a: impl FnMut(u64), mut b: impl FnMut(u64)) -> (f64, f64) {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ra.push(rate(budget, &mut a));
        rb.push(rate(budget, &mut b));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut ra), median(&mut rb))
}

enum Raw {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, budget) = if quick { (3, Duration::from_millis(300)) } else { (5, Duration::from_secs(1)) };
    println!("| alg | operation | raw aws-lc-rs (ops/s) | full token path (ops/s) | ratio |");
    println!("|---|---|---:|---:|---:|");
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg, RsaBits::Bits2048).unwrap();
        let der = key.to_pkcs8().unwrap();
        let jwk = key.verifying_key().public_jwk().unwrap().clone();
        let b = |s: &Option<String>| base64url::decode(s.as_deref().unwrap()).unwrap();
        let (raw_signer, raw_public) = match alg {
            Algorithm::RS256 => (
                Raw::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap()),
                PublicKeyComponents { n: b(&jwk.n), e: b(&jwk.e) }
                    .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                    .unwrap(),
            ),
            Algorithm::ES256 => (
                Raw::Ecdsa(EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap()),
                ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, [vec![4], b(&jwk.x), b(&jwk.y)].concat())
                    .unwrap(),
            ),
            _ => (
                Raw::Ed(Ed25519KeyPair::from_pkcs8(&der).unwrap()),
                ParsedPublicKey::new(&signature::ED25519, b(&jwk.x)).unwrap(),
            ),
        };
        let token = encode_jwt(&key, Some(ACCESS_TOKEN_TYP), &claims(0)).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = base64url::decode(sig).unwrap();
        let verifier = Verifier::new(
            KeySet::from_keys([key.verifying_key().clone()]).unwrap(),
            Policy::access("https://auth.example.com", vec!["api".into()]),
        );
        verifier.verify(&token, NOW).unwrap();

        let (raw, full) = paired(
            rounds,
            budget,
            |_| raw_public.verify_sig(black_box(input.as_bytes()), black_box(&sig)).unwrap(),
            |_| {
                black_box(verifier.verify(black_box(&token), NOW).unwrap());
            },
        );
        println!("| {alg} | verify | {raw:.0} | {full:.0} | {:.1}% |", 100.0 * full / raw);

        #[allow(clippy::disallowed_methods, reason = "the raw crypto library's signing, as the baseline")]
        let rng = SystemRandom::new();
        let mut rsa_out = vec![0u8; 256];
        let (raw, full) = paired(
            rounds,
            budget,
            |_| match &raw_signer {
                Raw::Rsa(pair) => {
                    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut rsa_out).unwrap()
                }
                Raw::Ecdsa(pair) => drop(black_box(pair.sign(&rng, input.as_bytes()).unwrap())),
                Raw::Ed(pair) => drop(black_box(pair.sign(input.as_bytes()))),
            },
            |n| drop(black_box(encode_jwt(&key, Some(ACCESS_TOKEN_TYP), &claims(n)).unwrap())),
        );
        println!("| {alg} | issue | {raw:.0} | {full:.0} | {:.1}% |", 100.0 * full / raw);
    }
}
