//! JSON Web Keys (RFC 7517) and their thumbprints (RFC 7638).

use serde::{Deserialize, Serialize};

use crate::{b64, KeyError};

/// A JWK as it appears on the wire. Members this library does not know are ignored (RFC 7517 §4);
/// a member named twice is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP` or `oct`.
    pub kty: String,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use: `sig` for every key Tessera handles.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// Curve, for `EC` and `OKP` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public x coordinate (`EC`) or public key (`OKP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Public y coordinate (`EC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private: RSA private exponent, EC private scalar, OKP seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// Private: RSA first prime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// Private: RSA second prime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Private: RSA first CRT exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    /// Private: RSA second CRT exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    /// Private: RSA CRT coefficient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    /// Private: RSA other primes (multi-prime keys are not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oth: Option<serde_json::Value>,
    /// Symmetric key value (`oct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

impl Jwk {
    /// The first private (or symmetric) member present, if any: a public key set must have none.
    #[must_use]
    pub fn private_member(&self) -> Option<&'static str> {
        [
            ("d", self.d.is_some()),
            ("p", self.p.is_some()),
            ("q", self.q.is_some()),
            ("dp", self.dp.is_some()),
            ("dq", self.dq.is_some()),
            ("qi", self.qi.is_some()),
            ("oth", self.oth.is_some()),
            ("k", self.k.is_some()),
        ]
        .into_iter()
        .find_map(|(name, present)| present.then_some(name))
    }

    /// This key with every private member removed.
    #[must_use]
    pub fn to_public(&self) -> Self {
        Self { d: None, p: None, q: None, dp: None, dq: None, qi: None, oth: None, k: None, ..self.clone() }
    }

    /// The RFC 7638 thumbprint (SHA-256, base64url): the canonical JSON of the required public members,
    /// in lexicographic order, with no whitespace.
    ///
    /// # Errors
    /// [`KeyError::MissingMember`] when a required member is absent; [`KeyError::Unsupported`] for an unknown `kty`.
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        let member = |value: &Option<String>, name: &'static str| value.clone().ok_or(KeyError::MissingMember(name));
        // serde_json::json! orders object members by name (no preserve_order feature), as RFC 7638 §3.3 requires.
        let canonical = match self.kty.as_str() {
            "RSA" => serde_json::json!({"e": member(&self.e, "e")?, "kty": "RSA", "n": member(&self.n, "n")?}),
            "EC" => serde_json::json!({
                "crv": member(&self.crv, "crv")?, "kty": "EC", "x": member(&self.x, "x")?, "y": member(&self.y, "y")?
            }),
            "OKP" => serde_json::json!({"crv": member(&self.crv, "crv")?, "kty": "OKP", "x": member(&self.x, "x")?}),
            "oct" => serde_json::json!({"k": member(&self.k, "k")?, "kty": "oct"}),
            other => return Err(KeyError::Unsupported(format!("kty {other:?}"))),
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
        Ok(b64::encode(digest.as_ref()))
    }

    /// Decodes a required base64url member.
    pub(crate) fn bytes(&self, value: &Option<String>, name: &'static str) -> Result<Vec<u8>, KeyError> {
        let text = value.as_deref().ok_or(KeyError::MissingMember(name))?;
        b64::decode(text).ok_or_else(|| KeyError::InvalidJwk(format!("member {name:?} is not unpadded base64url")))
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = Jwk {
            kty: "RSA".into(),
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
            alg: Some("RS256".into()),
            kid: Some("2011-04-29".into()),
            ..Jwk::default()
        };
        assert_eq!(jwk.thumbprint().unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn rfc8037_okp_thumbprint() {
        // RFC 8037 A.3.
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
            ..Jwk::default()
        };
        assert_eq!(jwk.thumbprint().unwrap(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn to_public_strips_every_private_member() {
        let jwk = Jwk {
            kty: "RSA".into(),
            d: Some("x".into()),
            p: Some("x".into()),
            q: Some("x".into()),
            dp: Some("x".into()),
            dq: Some("x".into()),
            qi: Some("x".into()),
            oth: Some(serde_json::json!([])),
            k: Some("x".into()),
            ..Jwk::default()
        };
        assert_eq!(jwk.private_member(), Some("d"));
        assert_eq!(jwk.to_public().private_member(), None);
    }
}
