//! # tessera-jose
//!
//! Strict JWT/JWS for Tessera and for any Rust service that wants to verify Tessera's tokens in-process.
//! Pure: no I/O, no async runtime. The caller supplies the clock (`now`) and the keys.
//!
//! The verifier follows RFC 8725 and RFC 9068:
//! - **The key decides the algorithm.** Each key is bound to one algorithm; a token whose `alg` differs is refused,
//!   and `none` is never accepted in any casing. RS256→HS256 confusion cannot happen: an HMAC key exists only when
//!   explicitly configured, and never from public-key bytes.
//! - Keys are found only by exact `kid`; `jwk`, `jku`, `x5u`, `x5c` and unknown `crit` get a token refused.
//! - Compact serialization only, strict unpadded base64url, a size limit, duplicate JSON members refused,
//!   `exp`/`nbf`/`iat` must be numbers, bounded nesting.
//! - ES256 signatures are raw R‖S with r, s in [1, n−1] (no "psychic signatures").
//!
//! ```
//! use tessera_jose::{encode_jwt, Algorithm, Claims, KeySet, Policy, RsaBits, SigningKey, Verifier, ACCESS_TOKEN_TYP};
//!
//! let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::default()).unwrap();
//! let claims = Claims {
//!     iss: Some("https://auth.example".into()), sub: Some("alice".into()),
//!     aud: Some(tessera_jose::Audience::One("api".into())), exp: Some(2_000), iat: Some(1_000),
//!     jti: Some("1".into()), client_id: Some("web".into()), ..Claims::default()
//! };
//! let token = encode_jwt(&key, Some(ACCESS_TOKEN_TYP), &claims).unwrap();
//!
//! let keys = KeySet::from_keys([key.verifying_key().clone()]).unwrap();
//! let verifier = Verifier::new(keys, Policy::access("https://auth.example", vec!["api".into()]));
//! assert_eq!(verifier.verify(&token, 1_500).unwrap().claims().unwrap().sub.as_deref(), Some("alice"));
//! assert!(verifier.verify(&token, 2_100).is_err()); // expired
//! ```
#![warn(missing_docs)]

mod alg;
mod b64;
mod error;
mod json;
mod jwk;
mod key;
mod keyset;
mod sign;
mod token;
mod verify;

pub use alg::Algorithm;
pub use error::{KeyError, Part, TokenError, MAX_KEYS_IN_SET};
pub use jwk::{Jwk, Jwks};
pub use key::{is_acceptable_kid, RsaBits, SigningKey, VerifyingKey, MAX_KID_LEN};
pub use keyset::KeySet;
pub use sign::{encode_jwt, sign_compact};
pub use token::{decode_unverified, Audience, Claims, Header, Payload, Unverified};
pub use verify::{Policy, Profile, Verified, Verifier, ACCESS_TOKEN_TYP, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_LEN};

/// Unpadded base64url, as JOSE uses it: exposed for tools that build or inspect tokens.
pub mod base64url {
    /// Decodes strict unpadded base64url; `None` for anything else.
    #[must_use]
    pub fn decode(input: &str) -> Option<Vec<u8>> {
        crate::b64::decode(input)
    }

    /// Encodes as unpadded base64url.
    #[must_use]
    pub fn encode(input: impl AsRef<[u8]>) -> String {
        crate::b64::encode(input)
    }
}
