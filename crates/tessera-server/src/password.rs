//! Passwords: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), always verified on the blocking pool.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password (PHC string) with a fresh random salt.
///
/// # Errors
/// When the OS random number generator or argon2 fails.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| HashError("random number generator failed".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| HashError(err.to_string()))?;
    Ok(hasher().hash_password(password.as_bytes(), &salt).map_err(|err| HashError(err.to_string()))?.to_string())
}

/// A hash of a password nobody has, verified when the user does not exist, so an unknown user costs the same
/// time as a wrong password.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| hash_password("tessera decoy password").unwrap_or_default());

/// Checks `password` against `hash` (or against the decoy when there is no user), in constant time per hash.
/// Blocking: call it on the blocking pool.
#[must_use]
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or(&DECOY_HASH);
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    hasher().verify_password(password.as_bytes(), &parsed).is_ok() && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong", Some(&hash)));
        assert!(!verify_password("tessera decoy password", None), "the decoy never logs anyone in");
        assert!(!verify_password("x", Some("not a phc string")));
    }
}
