//! A set of verifying keys found only by exact `kid`.

use std::collections::HashMap;

use crate::sign::JwtHeader;
use crate::{b64, Header, Jwk, Jwks, KeyError, VerifyingKey, ACCESS_TOKEN_TYP, MAX_KEYS_IN_SET};

/// The keys a verifier trusts. A key is found only by exact `kid` lookup; never by URL, path or query.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    /// The base64url header Tessera's signer writes for each key's access tokens → that key's id and the header.
    canonical_headers: HashMap<String, (String, Header)>,
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
        let jwks: Jwks = serde_json::from_slice(json).map_err(|err| KeyError::InvalidJwk(err.to_string()))?;
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
            self.canonical_headers.insert(b64::encode(json), (key.kid().to_owned(), parsed));
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
    pub(crate) fn by_canonical_header(&self, segment: &str) -> Option<(Header, &VerifyingKey)> {
        let (kid, header) = self.canonical_headers.get(segment)?;
        Some((header.clone(), self.keys.get(kid)?))
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
