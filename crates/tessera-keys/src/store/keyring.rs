//! The keyring documents (`keys.json`, or `keyring` in a shared store; `keys-rs256.json`, or `keyring-rs256`):
//! their format, and loading, maintaining and changing the [`KeyRing`] each holds.

use serde::{Deserialize, Serialize};
use tessera_jose::{base64url, Algorithm, SigningKey};

use super::sealing::{Sealing, Unsealed};
use super::{Doc, KeyStore, KEYRING};
use crate::{Change, KeyRing, KeyringError, ManagedKey, RotationPolicy};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: u32,
    sealing: Sealing,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: Algorithm,
    created_at: i64,
    activates_at: i64,
    /// PKCS#8 DER, base64url; sealed as `nonce ‖ ciphertext ‖ tag` when `sealing` is not `none`.
    private_key: String,
}

impl KeyStore {
    /// Reads the keyring (empty when there is none yet). Needs no lock: writes replace it whole.
    ///
    /// # Errors
    /// [`KeyringError::Io`], [`KeyringError::Corrupt`], [`KeyringError::Store`], or a master-key error.
    pub fn load(&self) -> Result<KeyRing, KeyringError> {
        match self.read(self.keyring)? {
            Some((_, text)) => self.parse_ring(self.keyring, &text, Unsealed::Refuse),
            None => Ok(KeyRing::default()),
        }
    }

    pub(super) fn parse_ring(&self, doc: Doc, text: &str, unsealed: Unsealed) -> Result<KeyRing, KeyringError> {
        let corrupt = |reason: String| KeyringError::Corrupt { path: self.location(doc), reason };
        let file: KeyringFile = serde_json::from_str(text).map_err(|err| corrupt(err.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!("format {} is not supported (expected {FORMAT})", file.format)));
        }
        let keys = file
            .keys
            .into_iter()
            .map(|stored| {
                let raw = base64url::decode(&stored.private_key)
                    .ok_or_else(|| corrupt(format!("key {}: private_key is not base64url", stored.kid)))?;
                let context = context(doc, &stored.kid, stored.alg);
                let der = self.open_entry(doc, file.sealing, raw, &context, &stored.kid, unsealed)?;
                let key = SigningKey::from_pkcs8(stored.alg, &der, None)?;
                if key.kid() != stored.kid {
                    return Err(corrupt(format!("key {}: its thumbprint is {}", stored.kid, key.kid())));
                }
                Ok(ManagedKey { key, created_at: stored.created_at, activates_at: stored.activates_at })
            })
            .collect::<Result<Vec<_>, KeyringError>>()?;
        Ok(KeyRing::new(keys))
    }

    /// Loads the keyring after the scheduled work (first key, successor, removals; see [`KeyRing::maintain`]),
    /// writing only when something was due.
    ///
    /// # Errors
    /// As [`KeyStore::load`] and [`KeyStore::update`].
    pub fn load_maintained(&self, now: i64, policy: &RotationPolicy) -> Result<(KeyRing, Vec<Change>), KeyringError> {
        let mut ring = self.load()?;
        if ring.maintenance_due(now, policy) {
            let changes = self.update(|ring| ring.maintain(now, policy))?;
            ring = self.load()?;
            return Ok((ring, changes));
        }
        Ok((ring, Vec::new()))
    }

    /// Changes the keyring and writes it back — only if `change` succeeds. With a shared store `change` may run
    /// more than once, each time on the newest keyring, when other nodes change it at the same moment.
    ///
    /// # Errors
    /// Whatever `change` returns, or an I/O, store, format or master-key error.
    pub fn update<T>(
        &self,
        mut change: impl FnMut(&mut KeyRing) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        self.change(self.keyring, |text| {
            let mut ring = match text {
                Some(text) => self.parse_ring(self.keyring, text, Unsealed::Refuse)?,
                None => KeyRing::default(),
            };
            let result = change(&mut ring)?;
            Ok((Some(self.serialize(self.keyring, &ring)?), result))
        })
    }

    pub(super) fn serialize(&self, doc: Doc, ring: &KeyRing) -> Result<String, KeyringError> {
        let keys = ring
            .keys()
            .iter()
            .map(|managed| {
                let der = managed.key.to_pkcs8()?;
                let (_, stored) = self.seal_entry(&context(doc, managed.key.kid(), managed.key.algorithm()), &der)?;
                Ok(StoredKey {
                    kid: managed.key.kid().to_owned(),
                    alg: managed.key.algorithm(),
                    created_at: managed.created_at,
                    activates_at: managed.activates_at,
                    private_key: base64url::encode(stored),
                })
            })
            .collect::<Result<Vec<_>, KeyringError>>()?;
        let sealing = if self.master.is_some() { Sealing::Aes256Gcm } else { Sealing::None };
        let file = KeyringFile { format: FORMAT, sealing, keys };
        serde_json::to_string_pretty(&file)
            .map_err(|err| KeyringError::Corrupt { path: self.location(doc), reason: err.to_string() })
    }
}

/// What each sealed key is bound to (AES-GCM associated data): its purpose, keyring, id and algorithm, so a sealed
/// key cannot be moved to another entry or keyring, nor used as a server secret. (The signing keyring's context
/// names no keyring: it was written so before there was a second one.)
fn context(doc: Doc, kid: &str, alg: Algorithm) -> String {
    if doc == KEYRING {
        format!("tessera-key-v1|{kid}|{alg}")
    } else {
        format!("tessera-key-v1|{}|{kid}|{alg}", doc.document)
    }
}
