//! The server secrets document (`secrets.json`, or `secrets` in a shared store): its format, including the
//! single-value form written before secrets rotated, and loading, maintaining and rotating the [`SecretRing`]s
//! it holds.

use serde::{Deserialize, Serialize};
use tessera_jose::base64url;

use super::sealing::{Sealing, Unsealed};
use super::{KeyStore, SECRETS};
use crate::secrets::{SecretRing, SecretVersion};
use crate::{Activation, Change, KeyringError, RotationPolicy};

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    /// Name → the secret's versions, each value sealed like private keys when a master key is given.
    secrets: std::collections::BTreeMap<String, StoredEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredEntry {
    Versions(StoredVersions),
    /// One value, as written before secrets rotated: read as version 0, written back as versions.
    Legacy(StoredSecret),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredVersions {
    versions: Vec<StoredVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredVersion {
    id: u8,
    created_at: i64,
    activates_at: i64,
    sealing: Sealing,
    /// 32 bytes, base64url; sealed as `nonce ‖ ciphertext ‖ tag` when `sealing` is not `none`.
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSecret {
    sealing: Sealing,
    value: String,
}

impl KeyStore {
    /// The server secrets `names` (e.g. the refresh-token MAC key), kept beside the keyring (`secrets.json`, or
    /// the shared store) and sealed like the private keys, after the scheduled work (a first version of a new
    /// secret from the OS CSPRNG, a successor when one is due, removal of versions no longer accepted; see
    /// [`SecretRing`]), writing only when something was due. In the order of `names`.
    ///
    /// # Errors
    /// I/O, store, format or master-key errors; an entry stored unsealed although a master key is set.
    pub fn load_secrets(
        &self,
        names: &[&str],
        now: i64,
        policy: &RotationPolicy,
    ) -> Result<(Vec<SecretRing>, Vec<Change>), KeyringError> {
        let current = self.read(SECRETS)?;
        let mut rings = self.parse_secrets(current.as_ref().map(|(_, text)| text.as_str()), Unsealed::Refuse)?;
        let due = names.iter().any(|name| rings.get(*name).is_none_or(|ring| ring.maintenance_due(now, policy)));
        let changes = if due {
            self.change(SECRETS, |text| {
                let mut rings = self.parse_secrets(text, Unsealed::Refuse)?;
                let mut changes = Vec::new();
                for name in names {
                    let ring = rings.entry((*name).to_owned()).or_insert_with(|| SecretRing::new(name, Vec::new()));
                    changes.extend(ring.maintain(now, policy)?);
                }
                let new = if changes.is_empty() { None } else { Some(self.serialize_secrets(&rings)?) };
                Ok((new, (changes, rings)))
            })
            .map(|(changes, maintained)| {
                rings = maintained;
                changes
            })?
        } else {
            Vec::new()
        };
        let requested = names.iter().filter_map(|name| rings.remove(*name)).collect();
        Ok((requested, changes))
    }

    /// Rotates every server secret on demand (see [`SecretRing`]): a successor that every node knows at once and
    /// that issues after the policy's `secrets_prepublish`, or with `Immediate` at once.
    ///
    /// # Errors
    /// [`KeyringError::RotationPending`] for a scheduled rotation while one is pending; as [`KeyStore::load_secrets`].
    pub fn rotate_secrets(
        &self,
        now: i64,
        policy: &RotationPolicy,
        activation: Activation,
    ) -> Result<Vec<Change>, KeyringError> {
        self.change(SECRETS, |text| {
            let mut rings = self.parse_secrets(text, Unsealed::Refuse)?;
            let mut changes = Vec::new();
            for ring in rings.values_mut() {
                changes.extend(ring.rotate(now, policy, activation)?);
            }
            let new = if changes.is_empty() { None } else { Some(self.serialize_secrets(&rings)?) };
            Ok((new, changes))
        })
    }

    pub(super) fn parse_secrets(
        &self,
        text: Option<&str>,
        unsealed: Unsealed,
    ) -> Result<std::collections::BTreeMap<String, SecretRing>, KeyringError> {
        let corrupt = |reason: String| KeyringError::Corrupt { path: self.location(SECRETS), reason };
        let Some(text) = text else { return Ok(std::collections::BTreeMap::new()) };
        let file: SecretsFile = serde_json::from_str(text).map_err(|err| corrupt(err.to_string()))?;
        let mut rings = std::collections::BTreeMap::new();
        for (name, entry) in file.secrets {
            let (stored, legacy) = match entry {
                StoredEntry::Versions(stored) => (stored.versions, false),
                // Version 0, activated since ever: the next maintenance makes it the predecessor of a new version.
                StoredEntry::Legacy(legacy) => {
                    let version = StoredVersion {
                        id: 0,
                        created_at: 0,
                        activates_at: 0,
                        sealing: legacy.sealing,
                        value: legacy.value,
                    };
                    (vec![version], true)
                }
            };
            let mut versions = Vec::with_capacity(stored.len());
            for version in stored {
                let kid = format!("{name}#{}", version.id);
                if versions.iter().any(|kept: &SecretVersion| kept.id == version.id) {
                    return Err(corrupt(format!("secret {kid} appears twice")));
                }
                let raw = base64url::decode(&version.value)
                    .ok_or_else(|| corrupt(format!("secret {kid}: value is not base64url")))?;
                // A legacy entry was sealed under the context of its time, which bound the name only.
                let context =
                    if legacy { format!("tessera-secret-v1|{name}") } else { secret_context(&name, version.id) };
                let value = self.open_entry(SECRETS, version.sealing, raw, &context, &kid, unsealed)?;
                let value = value.try_into().map_err(|_| corrupt(format!("secret {kid}: not 32 bytes")))?;
                versions.push(SecretVersion {
                    id: version.id,
                    created_at: version.created_at,
                    activates_at: version.activates_at,
                    value,
                });
            }
            let ring = SecretRing::new(&name, versions);
            rings.insert(name, ring);
        }
        Ok(rings)
    }

    pub(super) fn serialize_secrets(
        &self,
        rings: &std::collections::BTreeMap<String, SecretRing>,
    ) -> Result<String, KeyringError> {
        let mut file = SecretsFile::default();
        for (name, ring) in rings {
            let versions = ring
                .versions()
                .iter()
                .map(|version| {
                    let (sealing, stored) = self.seal_entry(&secret_context(name, version.id), version.value())?;
                    Ok(StoredVersion {
                        id: version.id,
                        created_at: version.created_at,
                        activates_at: version.activates_at,
                        sealing,
                        value: base64url::encode(stored),
                    })
                })
                .collect::<Result<Vec<_>, KeyringError>>()?;
            file.secrets.insert(name.clone(), StoredEntry::Versions(StoredVersions { versions }));
        }
        serde_json::to_string_pretty(&file)
            .map_err(|err| KeyringError::Corrupt { path: self.location(SECRETS), reason: err.to_string() })
    }
}

/// What each sealed version of a server secret is bound to: its purpose, the secret's name and the version's id,
/// so a version cannot be moved to another secret (a CSRF key made a refresh-token key), to another id, or into
/// the keyring.
fn secret_context(name: &str, id: u8) -> String {
    format!("tessera-secret-v2|{name}|{id}")
}
