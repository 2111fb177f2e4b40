//! The JWS algorithms Tessera knows, and which of them it will sign with.

use std::fmt;

/// A JWS algorithm (RFC 7518, RFC 8037). Every key is bound to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256. Signs and verifies.
    RS256,
    /// RSASSA-PSS with SHA-256. Verifies tokens of external issuers only.
    PS256,
    /// ECDSA on P-256 with SHA-256. Signs and verifies.
    ES256,
    /// Ed25519 (RFC 8037). Signs and verifies.
    EdDSA,
    /// HMAC with SHA-256. Verifies tokens of external issuers only, with an explicitly configured `oct` key.
    HS256,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Self; 5] = [Self::RS256, Self::PS256, Self::ES256, Self::EdDSA, Self::HS256];

    /// The `alg` value, exactly as it appears in a JOSE header.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::HS256 => "HS256",
        }
    }

    /// Looks up an `alg` value by exact, case-sensitive equality (RFC 8725 §3.1).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// Whether Tessera issues tokens with this algorithm.
    #[must_use]
    pub fn can_sign(self) -> bool {
        matches!(self, Self::RS256 | Self::ES256 | Self::EdDSA)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|alg| alg.as_str()).collect();
            format!("unknown algorithm {s:?} (known: {})", known.join(", "))
        })
    }
}
