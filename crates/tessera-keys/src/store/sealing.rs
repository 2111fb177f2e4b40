//! Sealing entries under the master key: how an entry is stored ([`Sealing`]), opening and sealing one under
//! the context that binds it to its purpose, and `tessera keys seal`, the explicit upgrade of entries written
//! before a master key was set.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Doc, KeyStore, KEYRINGS, SECRETS};
use crate::KeyringError;

/// How private keys are kept in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sealing {
    /// AES-256-GCM under the master key.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// In the clear (no master key was given).
    None,
}

/// Whether a read accepts entries stored unsealed although a master key is set. Only `tessera keys seal` does,
/// to seal them: anything else treats them as planted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Unsealed {
    Refuse,
    Accept,
}

impl KeyStore {
    /// The stored bytes of one entry, opened with the master key. With a master key set, an entry stored unsealed
    /// is refused (unless `unsealed` accepts it, for `tessera keys seal`); a sealed one must open under `context`,
    /// which binds it to its purpose and id, so an entry moved elsewhere does not open either.
    pub(super) fn open_entry(
        &self,
        doc: Doc,
        sealing: Sealing,
        raw: Vec<u8>,
        context: &str,
        kid: &str,
        unsealed: Unsealed,
    ) -> Result<Vec<u8>, KeyringError> {
        match (sealing, &self.master) {
            (Sealing::None, Some(_)) if unsealed == Unsealed::Refuse => {
                // A keyring is sealed as a whole; secrets one by one.
                let entry = if doc == SECRETS { format!("secret {kid}") } else { "the keyring".to_owned() };
                Err(KeyringError::Unsealed { path: self.location(doc), entry })
            }
            (Sealing::None, _) => Ok(raw),
            (Sealing::Aes256Gcm, None) => Err(KeyringError::MasterKeyRequired),
            (Sealing::Aes256Gcm, Some(master)) => {
                master.open(context, &raw).ok_or_else(|| KeyringError::WrongMasterKey { kid: kid.to_owned() })
            }
        }
    }

    /// `bytes` as they are stored: sealed under `context` when a master key is set.
    pub(super) fn seal_entry(&self, context: &str, bytes: &[u8]) -> Result<(Sealing, Vec<u8>), KeyringError> {
        Ok(match &self.master {
            Some(master) => (Sealing::Aes256Gcm, master.seal(context, bytes)?),
            None => (Sealing::None, bytes.to_vec()),
        })
    }

    /// Seals, under the master key, the keyrings and secrets written without one: the explicit upgrade once a
    /// master key is set (reading never does it, since an unsealed entry may have been planted). Returns where
    /// entries were sealed.
    ///
    /// # Errors
    /// [`KeyringError::MasterKeyRequired`] without a master key; as [`KeyStore::load`] for anything else, among
    /// them a sealed entry the master key does not open.
    pub fn seal(&self) -> Result<Vec<PathBuf>, KeyringError> {
        if self.master.is_none() {
            return Err(KeyringError::MasterKeyRequired);
        }
        let mut sealed = Vec::new();
        for keyring in KEYRINGS {
            let keyring_unsealed = self.change(keyring, |text| {
                let Some(text) = text else { return Ok((None, false)) };
                if self.parse_ring(keyring, text, Unsealed::Refuse).is_ok() {
                    return Ok((None, false));
                }
                let ring = self.parse_ring(keyring, text, Unsealed::Accept)?;
                Ok((Some(self.serialize(keyring, &ring)?), true))
            })?;
            if keyring_unsealed {
                sealed.push(self.location(keyring));
            }
        }
        let secrets_unsealed = self.change(SECRETS, |text| {
            if text.is_none() || self.parse_secrets(text, Unsealed::Refuse).is_ok() {
                return Ok((None, false));
            }
            let rings = self.parse_secrets(text, Unsealed::Accept)?;
            Ok((Some(self.serialize_secrets(&rings)?), true))
        })?;
        if secrets_unsealed {
            sealed.push(self.location(SECRETS));
        }
        Ok(sealed)
    }
}
