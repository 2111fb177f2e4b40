//! The raw limits a scenario is compared with, measured in the same run: the host's speed drifts, and results
//! compare across machines as ratios to them.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair};
use tessera_jose::Algorithm;

use crate::load::Scenario;

/// The raw rate a scenario is compared with, doubled for the 2 cores (the issue's reference), and its name.
pub(crate) fn raw_reference(scenario: Scenario, alg: Algorithm) -> anyhow::Result<Option<(&'static str, f64)>> {
    Ok(match scenario {
        // The issue's RS256 reference: aws-lc's RSA-2048 signing itself. Other algorithms: the token core's signing.
        Scenario::Refresh if alg == Algorithm::RS256 => {
            Some(("2 × raw RSA-2048 sign/s", 2.0 * raw_rsa_sign_rate(Duration::from_secs(2))?))
        }
        Scenario::Refresh | Scenario::ClientCredentials => {
            Some(("2 × raw signing/s", 2.0 * raw_sign_rate(alg, Duration::from_secs(2))?))
        }
        // Two signatures per exchange (the access token and the ID token): the limit is half the signing rate.
        Scenario::CodeExchange { .. } if alg == Algorithm::RS256 => {
            Some(("2 × raw RSA-2048 sign/s ÷ 2", raw_rsa_sign_rate(Duration::from_secs(2))?))
        }
        // One signature of each: a core spends 1/sign(alg) + 1/sign(RSA) seconds per exchange.
        Scenario::CodeExchange { rs256_id_tokens: true, .. } => {
            let per_exchange =
                1.0 / raw_sign_rate(alg, Duration::from_secs(2))? + 1.0 / raw_rsa_sign_rate(Duration::from_secs(2))?;
            Some(("2 ÷ (1/raw signing/s + 1/raw RSA-2048 sign/s)", 2.0 / per_exchange))
        }
        Scenario::CodeExchange { .. } => Some(("2 × raw signing/s ÷ 2", raw_sign_rate(alg, Duration::from_secs(2))?)),
        Scenario::Login | Scenario::LoginPage => {
            Some(("2 × raw argon2id hash/s", 2.0 * raw_argon2_rate(Duration::from_secs(3))))
        }
        Scenario::Verify { .. } => {
            Some(("2 × raw signature verify/s", 2.0 * raw_verify_rate(alg, Duration::from_secs(2))?))
        }
        // A revocation signs nothing: its cost is the store's durable write.
        Scenario::Revoke => None,
    })
}

/// Signatures per second on one core with a key of `alg` (through the token core's key type).
fn raw_sign_rate(alg: Algorithm, budget: Duration) -> anyhow::Result<f64> {
    let key = tessera_jose::SigningKey::generate(alg, tessera_jose::RsaBits::Bits2048)?;
    let message = [0x5au8; 400];
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        key.sign(&message)?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// Signature verifications per second on one core with a key of `alg`: a token-core verify of a one-key set with
/// the bare JWS policy, whose cost is the signature check.
pub(crate) fn raw_verify_rate(alg: Algorithm, budget: Duration) -> anyhow::Result<f64> {
    let key = tessera_jose::SigningKey::generate(alg, tessera_jose::RsaBits::Bits2048)?;
    let token = tessera_jose::sign_compact(&key, br#"{"alg":"x"}"#, b"payload")?;
    raw_verify_rate_of(&token, key.verifying_key().public_jwk().context("no public JWK")?, alg, budget)
}

/// Verifications per second on one core of `token`'s signature over its own signing input, with the public key
/// `jwk` of `alg` already parsed: aws-lc-rs alone, nothing of the token core.
pub(crate) fn raw_verify_rate_of(
    token: &str,
    jwk: &tessera_jose::Jwk,
    alg: Algorithm,
    budget: Duration,
) -> anyhow::Result<f64> {
    let input = token.rsplit_once('.').map(|(i, _)| i.to_owned()).unwrap_or_default();
    let signature =
        tessera_jose::base64url::decode(token.rsplit_once('.').map(|(_, s)| s).unwrap_or_default()).unwrap_or_default();
    let decode = |v: &Option<String>| v.as_deref().and_then(tessera_jose::base64url::decode).unwrap_or_default();
    let public = match alg {
        Algorithm::RS256 => aws_lc_rs::rsa::PublicKeyComponents { n: decode(&jwk.n), e: decode(&jwk.e) }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| anyhow::anyhow!("bad key"))?,
        Algorithm::ES256 => signature::ParsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            [vec![4], decode(&jwk.x), decode(&jwk.y)].concat(),
        )
        .map_err(|_| anyhow::anyhow!("bad key"))?,
        _ => signature::ParsedPublicKey::new(&signature::ED25519, decode(&jwk.x))
            .map_err(|_| anyhow::anyhow!("bad key"))?,
    };
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        public.verify_sig(input.as_bytes(), &signature).map_err(|_| anyhow::anyhow!("verify failed"))?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on one core.
fn raw_rsa_sign_rate(budget: Duration) -> anyhow::Result<f64> {
    let key =
        RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA keygen failed"))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "aws-lc's RSA signing takes an RNG, as in the token core: the raw reference measures the same call"
    )]
    let rng = SystemRandom::new();
    let message = [0x5au8; 400];
    let mut signature = vec![0u8; key.public_modulus_len()];
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        key.sign(&signature::RSA_PKCS1_SHA256, &rng, &message, &mut signature)
            .map_err(|_| anyhow::anyhow!("sign failed"))?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// RSA-2048 signatures per second with both cores signing at once (one thread each).
pub(crate) fn raw_rsa_sign_rate_on_both_cores(budget: Duration) -> anyhow::Result<f64> {
    std::thread::scope(|scope| {
        let threads = [scope.spawn(|| raw_rsa_sign_rate(budget)), scope.spawn(|| raw_rsa_sign_rate(budget))];
        threads.into_iter().try_fold(0.0, |sum, thread| {
            Ok(sum + thread.join().map_err(|_| anyhow::anyhow!("a signing thread panicked"))??)
        })
    })
}

/// Whether aws-lc signs RSA-2048 with its AVX-512 IFMA code (the CPUID bits of `CRYPTO_is_AVX512IFMA_capable`).
/// That code signs about twice as fast, so the same server's non-signing work weighs twice as much against it:
/// refresh ratios are only comparable between hosts that agree on this.
pub(crate) fn rsa_avx512_ifma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512dq") && has!("avx512ifma") && has!("avx512bw") && has!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// argon2id hashes per second on one core, at the parameters the server uses.
fn raw_argon2_rate(budget: Duration) -> f64 {
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        if tessera_server::password::hash_password("raw argon2 rate").is_ok() {
            count += 1;
        }
    }
    f64::from(count) / started.elapsed().as_secs_f64()
}
