//! Why a token, key or key set was refused.
//!
//! Every variant names one reason, so logs and metrics can tell attacks from clock skew. An HTTP caller sees none
//! of this: the service answers RFC 6750 `invalid_token` whatever the variant.

use crate::Algorithm;

/// Why a token failed verification.
///
/// This is `non_exhaustive`: later versions may add reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than the verifier's size limit.
    #[error("token is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The token is a JWS JSON serialization (general or flattened); only the compact form is accepted.
    #[error("JWS JSON serialization is not accepted; only the compact form is")]
    JsonSerialization,
    /// The token does not have exactly three dot-separated parts.
    #[error("token must have exactly 3 dot-separated parts, found {0}")]
    WrongPartCount(usize),
    /// A part is not unpadded base64url, or its trailing bits are not canonical.
    #[error("{part} is not valid unpadded base64url")]
    BadBase64 {
        /// Which part: header, payload or signature.
        part: Part,
    },
    /// The header or payload is not the JSON it must be.
    #[error("{part} is not valid JSON: {reason}")]
    BadJson {
        /// Which part: header or payload.
        part: Part,
        /// What the parser objected to.
        reason: String,
    },
    /// A JSON member name appears twice in the header or payload.
    #[error("{part} has the member {name:?} more than once")]
    DuplicateMember {
        /// Which part: header or payload.
        part: Part,
        /// The repeated name.
        name: String,
    },
    /// The header names `none`, in any casing.
    #[error("alg \"none\" (unsecured JWS) is never accepted")]
    AlgNone,
    /// The header names an algorithm this library does not implement.
    #[error("unsupported alg {0:?}")]
    UnsupportedAlgorithm(String),
    /// The header names an algorithm other than the one bound to the key.
    #[error("alg {token} does not match the key's algorithm {key}")]
    AlgorithmMismatch {
        /// The algorithm the token claims.
        token: String,
        /// The algorithm the key is bound to.
        key: Algorithm,
    },
    /// The header carries `jwk`, `jku`, `x5u` or `x5c`: keys are never taken from the token.
    #[error("header parameter {0:?} is not accepted: keys are never taken from the token")]
    EmbeddedKey(&'static str),
    /// The header carries a `crit` list with parameters this verifier does not understand (RFC 7515 §4.1.11).
    #[error("header lists critical parameters this verifier does not understand: {0:?}")]
    UnsupportedCritical(Vec<String>),
    /// The `kid` is too long or holds characters outside the allowed set.
    #[error("kid is not acceptable (at most 128 characters of A-Z a-z 0-9 . _ - ~ + = @ :)")]
    InvalidKid,
    /// No key in the key set has the token's `kid` (or the token has no `kid` and the set holds several keys).
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    /// The signature does not verify, has the wrong length, or is empty.
    #[error("signature is invalid")]
    BadSignature,
    /// The `typ` header is not the one the profile requires.
    #[error("typ must be {expected:?}, found {found:?}")]
    WrongType {
        /// What the profile requires.
        expected: &'static str,
        /// What the token carries (empty when absent).
        found: String,
    },
    /// A claim the profile requires is absent.
    #[error("required claim {0:?} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an unusable value.
    #[error("claim {name:?} is invalid: {reason}")]
    InvalidClaim {
        /// The claim's name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future at {iat} (now {now})")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `iss` is not the configured issuer.
    #[error("issuer {0:?} is not trusted")]
    WrongIssuer(String),
    /// `aud` names none of the configured audiences.
    #[error("audience {0:?} is not accepted")]
    WrongAudience(Vec<String>),
}

impl TokenError {
    /// A short, stable label for metrics (`reason="expired"`), never containing token data.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::JsonSerialization | Self::WrongPartCount(_) | Self::BadBase64 { .. } => "malformed",
            Self::BadJson { .. } | Self::DuplicateMember { .. } => "malformed",
            Self::AlgNone => "alg_none",
            Self::UnsupportedAlgorithm(_) | Self::AlgorithmMismatch { .. } => "algorithm_not_allowed",
            Self::EmbeddedKey(_) | Self::UnsupportedCritical(_) => "forbidden_header",
            Self::InvalidKid | Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::WrongType { .. } => "wrong_type",
            Self::MissingClaim(_) | Self::InvalidClaim { .. } => "invalid_claims",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } | Self::IssuedInFuture { .. } => "not_yet_valid",
            Self::WrongIssuer(_) => "wrong_issuer",
            Self::WrongAudience(_) => "wrong_audience",
        }
    }
}

/// The part of a compact JWS an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The JOSE header.
    Header,
    /// The payload (the claims, for a JWT).
    Payload,
    /// The signature.
    Signature,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Signature => "signature",
        })
    }
}

/// Why a key or key set could not be loaded, generated or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The JWK or JWKS is not valid JSON of the expected shape.
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    /// A member that must be present is absent.
    #[error("JWK is missing {0:?}")]
    MissingMember(&'static str),
    /// The key type, curve or algorithm is not supported.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// The key's `alg` is not allowed for its key type (e.g. `HS256` on an RSA key).
    #[error("alg {alg} cannot be used with a {kty} key")]
    AlgorithmKeyMismatch {
        /// The algorithm named.
        alg: String,
        /// The key type.
        kty: String,
    },
    /// The key is too weak: RSA under 2048 bits, an HMAC secret under 256 bits, a small RSA exponent.
    #[error("key too weak: {0}")]
    TooWeak(String),
    /// A public key set carries private key material.
    #[error("key {kid:?} publishes private member {member:?}")]
    PrivateMaterial {
        /// The key's id.
        kid: String,
        /// The private member found.
        member: &'static str,
    },
    /// A published key set carries a symmetric key (`kty: oct` or a `k` member): a secret shared with every reader.
    #[error("key {kid:?} is symmetric (a shared secret): a published key set must hold public keys only")]
    SymmetricKey {
        /// The key's id.
        kid: String,
    },
    /// Two keys in one set have the same `kid`.
    #[error("duplicate kid {0:?} in key set")]
    DuplicateKid(String),
    /// A key set holds more keys than allowed.
    #[error("key set has {0} keys, over the limit of {MAX_KEYS_IN_SET}")]
    TooManyKeys(usize),
    /// The crypto library rejected the key material.
    #[error("key material rejected: {0}")]
    Rejected(String),
    /// PEM text could not be decoded.
    #[error("invalid PEM: {0}")]
    InvalidPem(String),
    /// Key generation or signing failed inside the crypto library.
    #[error("crypto operation failed")]
    Crypto,
}

/// The most keys a single key set may hold: bounds work and memory for a hostile JWKS.
pub const MAX_KEYS_IN_SET: usize = 100;
