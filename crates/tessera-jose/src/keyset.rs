//! A set of verifying keys found only by exact `kid`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sign::JwtHeader;
use crate::{b64, Header, Jwk, Jwks, KeyError, VerifyingKey, ACCESS_TOKEN_TYP, MAX_KEYS_IN_SET};

/// The keys a verifier trusts. A key is found only by exact `kid` lookup; never by URL, path or query.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    // Both maps are looked up with text from an unverified token on every verification. They hold only the
    // server's own keys (a bounded number, none chosen by a client), so no input can make their buckets collide
    // into long chains: a fast seeded hash is safe here, and SipHash over a 100-byte header segment was a visible
    // share of a verification.
    keys: HashMap<String, VerifyingKey, foldhash::fast::RandomState>,
    /// The base64url header Tessera's signer writes for each key's access tokens → that key's id and the header.
    canonical_headers: HashMap<String, (String, Arc<Header>), foldhash::fast::RandomState>,
}

impl KeySet {
    /// An empty set: it verifies nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from keys.
    ///
    /// # Errors
    /// [`KeyError::DuplicateKid`] when two keys share a `kid`; [`KeyError::TooManyKeys`] past [`MAX_KEYS_IN_SET`].
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, KeyError> {
        let mut set = Self::new();
        for key in keys {
            set.insert(key)?;
        }
        Ok(set)
    }

    /// Parses a public JWKS document. Every key must be valid: one bad key fails the whole set, so a typo never
    /// silently drops a key.
    ///
    /// # Errors
    /// [`KeyError::InvalidJwk`] for bad JSON (duplicate members included); the first key's error otherwise, with
    /// its position.
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, KeyError> {
        Self::from_jwks(&parse_jwks(json)?)
    }

    /// Parses a JWKS document published by someone else (a trusted issuer, a client's `private_key_jwt` keys):
    /// public, asymmetric keys only. A symmetric key (`kty: oct`, or any key carrying a `k` member) is a shared
    /// secret handed to everyone who can read the document, and a private member means the publisher leaked its
    /// key: either would let any reader mint tokens, so either refuses the whole set.
    ///
    /// # Errors
    /// [`KeyError::SymmetricKey`] or [`KeyError::PrivateMaterial`] for the first such key (naming the member,
    /// never its value); otherwise as [`Self::from_jwks_json`].
    pub fn from_public_jwks_json(json: &[u8]) -> Result<Self, KeyError> {
        let jwks = parse_jwks(json)?;
        for jwk in &jwks.keys {
            let kid = || jwk.kid.clone().unwrap_or_default();
            if jwk.kty == "oct" || jwk.k.is_some() {
                return Err(KeyError::SymmetricKey { kid: kid() });
            }
            if let Some(member) = jwk.private_member() {
                return Err(KeyError::PrivateMaterial { kid: kid(), member });
            }
        }
        Self::from_jwks(&jwks)
    }

    fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        if jwks.keys.len() > MAX_KEYS_IN_SET {
            return Err(KeyError::TooManyKeys(jwks.keys.len()));
        }
        let keys = jwks
            .keys
            .iter()
            .enumerate()
            .map(|(index, jwk)| {
                VerifyingKey::from_public_jwk(jwk).map_err(|err| KeyError::InvalidJwk(format!("key #{index}: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(keys)
    }

    /// Adds a key.
    ///
    /// # Errors
    /// [`KeyError::DuplicateKid`] or [`KeyError::TooManyKeys`].
    pub fn insert(&mut self, key: VerifyingKey) -> Result<(), KeyError> {
        if self.keys.len() >= MAX_KEYS_IN_SET {
            return Err(KeyError::TooManyKeys(self.keys.len() + 1));
        }
        if self.keys.contains_key(key.kid()) {
            return Err(KeyError::DuplicateKid(key.kid().to_owned()));
        }
        let header = JwtHeader { alg: key.algorithm().as_str(), typ: Some(ACCESS_TOKEN_TYP), kid: key.kid() };
        if let Ok(json) = serde_json::to_vec(&header) {
            let parsed = Header {
                alg: header.alg.to_owned(),
                kid: Some(key.kid().to_owned()),
                typ: Some(ACCESS_TOKEN_TYP.to_owned()),
                other: serde_json::Map::new(),
            };
            self.canonical_headers.insert(b64::encode(json), (key.kid().to_owned(), Arc::new(parsed)));
        }
        self.keys.insert(key.kid().to_owned(), key);
        Ok(())
    }

    /// The key with exactly this `kid`.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// The parsed header and key for a header segment exactly as Tessera's signer writes it.
    pub(crate) fn by_canonical_header(&self, segment: &str) -> Option<(Arc<Header>, &VerifyingKey)> {
        let (kid, header) = self.canonical_headers.get(segment)?;
        Some((Arc::clone(header), self.keys.get(kid)?))
    }

    /// The only key of a one-key set: used for tokens without `kid`, and only when there is no ambiguity.
    #[must_use]
    pub fn sole_key(&self) -> Option<&VerifyingKey> {
        match self.keys.len() {
            1 => self.keys.values().next(),
            _ => None,
        }
    }

    /// How many keys the set holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public JWKS: asymmetric keys only, with only public members, sorted by `kid` for stable output.
    #[must_use]
    pub fn to_public_jwks(&self) -> Jwks {
        let mut keys: Vec<Jwk> = self.keys.values().filter_map(|key| key.public_jwk().map(Jwk::to_public)).collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Jwks { keys }
    }
}

/// A JWKS document's JSON (duplicate members refused).
fn parse_jwks(json: &[u8]) -> Result<Jwks, KeyError> {
    serde_json::from_slice(json).map_err(|err| KeyError::InvalidJwk(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, RsaBits, SigningKey};

    /// A JWKS document holding one fresh public key, plus `extra` (JSON text of one more key, or nothing).
    fn document(extra: &str) -> String {
        let key = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
        let public = KeySet::from_keys([key.verifying_key().clone()]).unwrap().to_public_jwks();
        let mut keys: Vec<serde_json::Value> =
            public.keys.iter().map(|jwk| serde_json::to_value(jwk).unwrap()).collect();
        if !extra.is_empty() {
            keys.push(serde_json::from_str(extra).unwrap());
        }
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn a_published_set_with_a_symmetric_key_or_a_private_member_is_refused_whole() {
        assert_eq!(KeySet::from_public_jwks_json(document("").as_bytes()).unwrap().len(), 1);
        // 32 bytes: an HMAC key the general parser accepts.
        let hmac = r#"{"kty":"oct","kid":"shared","alg":"HS256","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0ISE"}"#;
        assert_eq!(KeySet::from_jwks_json(document(hmac).as_bytes()).unwrap().len(), 2);
        assert!(matches!(
            KeySet::from_public_jwks_json(document(hmac).as_bytes()),
            Err(KeyError::SymmetricKey { kid }) if kid == "shared"
        ));
        let k_on_ec = document("").replace(r#""kty":"EC""#, r#""kty":"EC","k":"AAAA""#);
        assert!(matches!(KeySet::from_public_jwks_json(k_on_ec.as_bytes()), Err(KeyError::SymmetricKey { .. })));
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            let leaked = document("").replace(r#""kty":"EC""#, &format!(r#""kty":"EC","{member}":"AAAA""#));
            let refused = KeySet::from_public_jwks_json(leaked.as_bytes()).unwrap_err();
            assert!(matches!(refused, KeyError::PrivateMaterial { member: m, .. } if m == member), "{member}");
            assert!(!refused.to_string().contains("AAAA"), "the error names the member, not its value");
        }
        let other_primes = document("").replace(r#""kty":"EC""#, r#""kty":"EC","oth":[]"#);
        assert!(matches!(
            KeySet::from_public_jwks_json(other_primes.as_bytes()),
            Err(KeyError::PrivateMaterial { member: "oth", .. })
        ));
    }
}
