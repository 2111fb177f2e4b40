//! The keyring on disk: `keys.json` in the data directory, written atomically, private keys sealed under the
//! master key when one is given.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_jose::{base64url, Algorithm, SigningKey};

use crate::{Change, KeyRing, KeyringError, ManagedKey, MasterKey, RotationPolicy};

const FILE_NAME: &str = "keys.json";
const SECRETS_NAME: &str = "secrets.json";
const LOCK_NAME: &str = "keys.lock";
const FORMAT: u32 = 1;

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

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    /// Name → base64url value, sealed like private keys when a master key is given.
    secrets: std::collections::BTreeMap<String, StoredSecret>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSecret {
    sealing: Sealing,
    value: String,
}

/// The keyring file in a data directory.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    master: Option<MasterKey>,
}

impl KeyStore {
    /// The keyring of `data_dir`, created (mode 0700) if missing.
    ///
    /// # Errors
    /// [`KeyringError::Io`] when the directory cannot be created.
    pub fn open(data_dir: &Path, master: Option<MasterKey>) -> Result<Self, KeyringError> {
        create_private_dir(data_dir)?;
        Ok(Self { dir: data_dir.to_owned(), master })
    }

    /// Whether keys written by this store are encrypted.
    #[must_use]
    pub fn seals(&self) -> bool {
        self.master.is_some()
    }

    /// The keyring file's path.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads the keyring (empty when the file does not exist yet). Needs no lock: writes replace the file whole.
    ///
    /// # Errors
    /// [`KeyringError::Io`], [`KeyringError::Corrupt`], or a master-key error.
    pub fn load(&self) -> Result<KeyRing, KeyringError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(KeyRing::default()),
            Err(source) => return Err(KeyringError::Io { path, source }),
        };
        let corrupt = |reason: String| KeyringError::Corrupt { path: path.clone(), reason };
        let file: KeyringFile = serde_json::from_slice(&text).map_err(|err| corrupt(err.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!("format {} is not supported (expected {FORMAT})", file.format)));
        }
        let keys = file
            .keys
            .into_iter()
            .map(|stored| {
                let raw = base64url::decode(&stored.private_key)
                    .ok_or_else(|| corrupt(format!("key {}: private_key is not base64url", stored.kid)))?;
                let der = match file.sealing {
                    Sealing::None => raw,
                    Sealing::Aes256Gcm => {
                        let master = self.master.as_ref().ok_or(KeyringError::MasterKeyRequired)?;
                        master
                            .open(&context(&stored.kid, stored.alg), &raw)
                            .ok_or_else(|| KeyringError::WrongMasterKey { kid: stored.kid.clone() })?
                    }
                };
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

    /// The 256-bit server secret `name` (e.g. the refresh-token MAC key), created from the OS CSPRNG on first use
    /// and kept in `secrets.json` beside the keyring, sealed like the private keys.
    ///
    /// # Errors
    /// I/O, format or master-key errors.
    pub fn secret(&self, name: &str) -> Result<[u8; 32], KeyringError> {
        let path = self.dir.join(SECRETS_NAME);
        let context = format!("tessera-secret-v1|{name}");
        let read = |file: &SecretsFile| -> Result<Option<[u8; 32]>, KeyringError> {
            let Some(stored) = file.secrets.get(name) else { return Ok(None) };
            let corrupt =
                || KeyringError::Corrupt { path: path.clone(), reason: format!("secret {name} is malformed") };
            let raw = base64url::decode(&stored.value).ok_or_else(corrupt)?;
            let bytes = match stored.sealing {
                Sealing::None => raw,
                Sealing::Aes256Gcm => {
                    let master = self.master.as_ref().ok_or(KeyringError::MasterKeyRequired)?;
                    master.open(&context, &raw).ok_or_else(|| KeyringError::WrongMasterKey { kid: name.to_owned() })?
                }
            };
            bytes.try_into().map(Some).map_err(|_| corrupt())
        };
        let load = || -> Result<SecretsFile, KeyringError> {
            match fs::read(&path) {
                Ok(text) => serde_json::from_slice(&text)
                    .map_err(|err| KeyringError::Corrupt { path: path.clone(), reason: err.to_string() }),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(SecretsFile::default()),
                Err(source) => Err(KeyringError::Io { path: path.clone(), source }),
            }
        };
        if let Some(secret) = read(&load()?)? {
            return Ok(secret);
        }
        let _lock = self.lock()?;
        let mut file = load()?;
        if let Some(secret) = read(&file)? {
            return Ok(secret);
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| tessera_jose::KeyError::Crypto)?;
        let stored = match &self.master {
            Some(master) => {
                StoredSecret { sealing: Sealing::Aes256Gcm, value: base64url::encode(master.seal(&context, &bytes)?) }
            }
            None => StoredSecret { sealing: Sealing::None, value: base64url::encode(bytes) },
        };
        file.secrets.insert(name.to_owned(), stored);
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|err| KeyringError::Corrupt { path: path.clone(), reason: err.to_string() })?;
        write_atomically(&path, &json)?;
        Ok(bytes)
    }

    fn lock(&self) -> Result<File, KeyringError> {
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| KeyringError::Io { path: lock_path.clone(), source })?;
        lock.lock().map_err(|source| KeyringError::Io { path: lock_path, source })?;
        Ok(lock)
    }

    /// Changes the keyring under an exclusive lock (so concurrent commands and servers never lose each other's
    /// changes) and writes it back atomically — only if `change` succeeds.
    ///
    /// # Errors
    /// Whatever `change` returns, or an I/O, format or master-key error.
    pub fn update<T>(&self, change: impl FnOnce(&mut KeyRing) -> Result<T, KeyringError>) -> Result<T, KeyringError> {
        let _lock = self.lock()?;
        let mut ring = self.load()?;
        let result = change(&mut ring)?;
        self.save(&ring)?;
        Ok(result)
    }

    fn save(&self, ring: &KeyRing) -> Result<(), KeyringError> {
        let keys = ring
            .keys()
            .iter()
            .map(|managed| {
                let der = managed.key.to_pkcs8()?;
                let stored = match &self.master {
                    Some(master) => master.seal(&context(managed.key.kid(), managed.key.algorithm()), &der)?,
                    None => der,
                };
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
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|err| KeyringError::Corrupt { path: self.path(), reason: err.to_string() })?;
        write_atomically(&self.path(), &json)
    }
}

/// What each sealed key is bound to, so a sealed key cannot be moved to another entry.
fn context(kid: &str, alg: Algorithm) -> String {
    format!("tessera-key-v1|{kid}|{alg}")
}

fn create_private_dir(dir: &Path) -> Result<(), KeyringError> {
    let io = |source| KeyringError::Io { path: dir.to_owned(), source };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Write to a temporary file, flush it to disk, rename over the target, then flush the directory: a crash leaves
/// either the old keyring or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyringError> {
    let tmp = path.with_extension("json.tmp");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyringError::Io { path, source }
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    fn policy(alg: Algorithm) -> RotationPolicy {
        RotationPolicy { algorithm: alg, ..RotationPolicy::default() }
    }

    #[test]
    fn keys_survive_a_reopen_and_sign_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (master, text) = MasterKey::generate().unwrap();
        let store = KeyStore::open(dir.path(), Some(master)).unwrap();
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            store.update(|ring| ring.rotate(100, &policy(alg), Activation::Immediate)).unwrap();
        }
        let before = store.load().unwrap();
        let reopened = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap().load().unwrap();
        let kids = |ring: &KeyRing| ring.keys().iter().map(|k| k.key.kid().to_owned()).collect::<Vec<_>>();
        assert_eq!(kids(&before), kids(&reopened));
        assert_eq!(reopened.keys().len(), 3);
        // Ed25519 and RSA signatures are deterministic: the same key signs the same bytes.
        let ed = |ring: &KeyRing| {
            ring.keys().iter().find(|k| k.key.algorithm() == Algorithm::EdDSA).unwrap().key.sign(b"m").unwrap()
        };
        assert_eq!(ed(&before), ed(&reopened));
    }

    #[test]
    fn sealed_keys_need_the_right_master_key_and_are_not_in_the_file_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let store = KeyStore::open(dir.path(), Some(master)).unwrap();
        store.update(|ring| ring.rotate(1, &policy(Algorithm::EdDSA), Activation::Immediate)).unwrap();
        let der = store.load().unwrap().keys()[0].key.to_pkcs8().unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("aes-256-gcm"));
        assert!(!text.contains(&base64url::encode(&der)), "the private key must not be stored in clear");

        let without = KeyStore::open(dir.path(), None).unwrap();
        assert!(matches!(without.load(), Err(KeyringError::MasterKeyRequired)));
        let wrong = KeyStore::open(dir.path(), Some(MasterKey::generate().unwrap().0)).unwrap();
        assert!(matches!(wrong.load(), Err(KeyringError::WrongMasterKey { .. })));
    }

    #[test]
    fn unsealed_keyring_is_sealed_on_the_next_write_once_a_master_key_is_given() {
        let dir = tempfile::tempdir().unwrap();
        KeyStore::open(dir.path(), None).unwrap().update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
        assert!(fs::read_to_string(dir.path().join(FILE_NAME)).unwrap().contains("\"none\""));
        let (master, _) = MasterKey::generate().unwrap();
        let sealed = KeyStore::open(dir.path(), Some(master)).unwrap();
        sealed.update(|ring| ring.maintain(2, &policy(Algorithm::EdDSA))).unwrap();
        assert!(fs::read_to_string(sealed.path()).unwrap().contains("aes-256-gcm"));
        assert_eq!(sealed.load().unwrap().keys().len(), 1);
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), None).unwrap();
        store.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
        let before = fs::read(store.path()).unwrap();
        store.update(|ring| ring.rotate(2, &policy(Algorithm::EdDSA), Activation::Scheduled)).unwrap();
        let after_rotate = fs::read(store.path()).unwrap();
        assert_ne!(before, after_rotate);
        let err = store.update(|ring| ring.rotate(3, &policy(Algorithm::EdDSA), Activation::Scheduled)).unwrap_err();
        assert!(matches!(err, KeyringError::RotationPending { .. }));
        assert_eq!(fs::read(store.path()).unwrap(), after_rotate);
    }

    #[test]
    fn secrets_are_created_once_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (master, text) = MasterKey::generate().unwrap();
        let store = KeyStore::open(dir.path(), Some(master)).unwrap();
        let first = store.secret("refresh").unwrap();
        assert_eq!(store.secret("refresh").unwrap(), first);
        assert_ne!(store.secret("csrf").unwrap(), first);
        let again = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap();
        assert_eq!(again.secret("refresh").unwrap(), first);
        let stored = fs::read_to_string(dir.path().join(SECRETS_NAME)).unwrap();
        assert!(!stored.contains(&base64url::encode(first)), "sealed, not in clear");
        assert!(matches!(
            KeyStore::open(dir.path(), None).unwrap().secret("refresh"),
            Err(KeyringError::MasterKeyRequired)
        ));
    }

    #[test]
    fn corrupt_files_are_named_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), None).unwrap();
        for (content, needle) in [
            ("not json", "keys.json"),
            (r#"{"format":2,"sealing":"none","keys":[]}"#, "format 2"),
            (
                r#"{"format":1,"sealing":"none","keys":[{"kid":"k","alg":"EdDSA","created_at":0,"activates_at":0,"private_key":"!!"}]}"#,
                "not base64url",
            ),
        ] {
            fs::write(store.path(), content).unwrap();
            let err = store.load().unwrap_err().to_string();
            assert!(err.contains(needle), "{content}: {err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_keyring_is_readable_only_by_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = KeyStore::open(&data, None).unwrap();
        store.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
        assert_eq!(fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
