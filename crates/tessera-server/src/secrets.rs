//! Refresh tokens and CSRF tokens: derived with HMAC under server secrets, so the store keeps only a session id
//! and a generation, and a database dump alone yields no usable token.
//!
//! A refresh token is `base64url(version ‖ sid(16) ‖ generation(8, big-endian) ‖ HMAC-SHA256(key, …))`: 57 bytes,
//! 256 bits of MAC. It is unforgeable without the key and can be derived again on demand, which is what lets a
//! replay inside the grace window get the very same successor (see `../shared/reference/rotation.md`).

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use tessera_jose::base64url;

const VERSION: u8 = 1;
const SID_LEN: usize = 16;
const TOKEN_LEN: usize = 1 + SID_LEN + 8 + 32;

/// The server secrets behind refresh and CSRF tokens.
pub struct TokenSecrets {
    refresh: hmac::Key,
    csrf: hmac::Key,
}

impl std::fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecrets(..)")
    }
}

/// A refresh token's contents, once its MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaim {
    /// The session.
    pub sid: String,
    /// The generation presented.
    pub generation: u64,
}

impl TokenSecrets {
    /// From two 256-bit secrets.
    #[must_use]
    pub fn new(refresh_key: &[u8; 32], csrf_key: &[u8; 32]) -> Self {
        Self {
            refresh: hmac::Key::new(hmac::HMAC_SHA256, refresh_key),
            csrf: hmac::Key::new(hmac::HMAC_SHA256, csrf_key),
        }
    }

    /// The refresh token for generation `generation` of session `sid`; `None` if `sid` is not one this server
    /// made.
    #[must_use]
    pub fn refresh_token(&self, sid: &str, generation: u64) -> Option<String> {
        let sid_bytes: [u8; SID_LEN] = base64url::decode(sid)?.try_into().ok()?;
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.push(VERSION);
        token.extend_from_slice(&sid_bytes);
        token.extend_from_slice(&generation.to_be_bytes());
        let tag = hmac::sign(&self.refresh, &token);
        token.extend_from_slice(tag.as_ref());
        Some(base64url::encode(token))
    }

    /// Checks a presented refresh token (constant-time MAC comparison) and returns what it names.
    #[must_use]
    pub fn open_refresh_token(&self, token: &str) -> Option<RefreshClaim> {
        if token.len() > 128 {
            return None;
        }
        let bytes = base64url::decode(token)?;
        if bytes.len() != TOKEN_LEN || bytes.first() != Some(&VERSION) {
            return None;
        }
        let (body, tag) = bytes.split_at(TOKEN_LEN - 32);
        hmac::verify(&self.refresh, body, tag).ok()?;
        let sid = base64url::encode(body.get(1..=SID_LEN)?);
        let generation = u64::from_be_bytes(body.get(1 + SID_LEN..)?.try_into().ok()?);
        Some(RefreshClaim { sid, generation })
    }

    /// The CSRF token of a session: an HMAC over its id, so it cannot be used with any other session.
    #[must_use]
    pub fn csrf_token(&self, sid: &str) -> String {
        base64url::encode(hmac::sign(&self.csrf, sid.as_bytes()).as_ref())
    }

    /// Whether `presented` is the CSRF token of `sid` (constant-time).
    #[must_use]
    pub fn csrf_matches(&self, sid: &str, presented: &str) -> bool {
        base64url::decode(presented).is_some_and(|tag| hmac::verify(&self.csrf, sid.as_bytes(), &tag).is_ok())
    }
}

/// A new random session id: 128 bits from the OS CSPRNG, base64url.
///
/// # Errors
/// When the OS random number generator fails.
pub fn new_session_id() -> Result<String, aws_lc_rs::error::Unspecified> {
    random_b64::<SID_LEN>()
}

/// `N` random bytes from the OS CSPRNG, base64url.
///
/// # Errors
/// When the OS random number generator fails.
pub fn random_b64<const N: usize>() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(base64url::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_round_trip_and_resist_tampering() {
        let secrets = TokenSecrets::new(&[1; 32], &[2; 32]);
        let sid = new_session_id().unwrap();
        let token = secrets.refresh_token(&sid, 7).unwrap();
        assert_eq!(secrets.refresh_token(&sid, 7).unwrap(), token, "derivable again: the same successor");
        assert_eq!(secrets.open_refresh_token(&token), Some(RefreshClaim { sid: sid.clone(), generation: 7 }));
        assert!(token.len() >= 43, "at least 256 bits");
        let other = TokenSecrets::new(&[3; 32], &[2; 32]);
        assert_eq!(other.open_refresh_token(&token), None, "another key does not accept it");
        let mut bytes = base64url::decode(&token).unwrap();
        bytes[20] ^= 1;
        assert_eq!(secrets.open_refresh_token(&base64url::encode(&bytes)), None);
        for junk in ["", "x", "a.b.c", &"A".repeat(200)] {
            assert_eq!(secrets.open_refresh_token(junk), None);
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let secrets = TokenSecrets::new(&[1; 32], &[2; 32]);
        let token = secrets.csrf_token("s1");
        assert!(secrets.csrf_matches("s1", &token));
        assert!(!secrets.csrf_matches("s2", &token));
        assert!(!secrets.csrf_matches("s1", ""));
        assert!(!secrets.csrf_matches("s1", "not base64!"));
    }
}
