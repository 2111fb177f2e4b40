//! The keyring on disk: `keys.json` in the data directory, written atomically, private keys sealed under the
//! master key when one is given.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tessera_jose::{base64url, Algorithm, SigningKey};

use crate::secrets::{SecretRing, SecretVersion};
use crate::{Activation, Change, KeyRing, KeyringError, ManagedKey, MasterKey, RotationPolicy};

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

/// Whether a read accepts entries stored unsealed although a master key is set. Only `tessera keys seal` does,
/// to seal them: anything else treats them as planted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unsealed {
    Refuse,
    Accept,
}

/// Where the keyring and the server secrets live when they are not files: a store shared by every node of a
/// deployment, so that all of them sign with the same keys and accept each other's refresh tokens. Contents are
/// the same JSON as the files, private keys and secrets sealed the same way.
///
/// Calls block; an implementation bridges to whatever its store needs.
pub trait Documents: Send + Sync + std::fmt::Debug {
    /// Document `name` as `(version, contents)`, if it exists.
    ///
    /// # Errors
    /// [`KeyringError::Store`] when the store cannot be read.
    fn read(&self, name: &str) -> Result<Option<(u64, String)>, KeyringError>;

    /// Writes `contents` as document `name` if its version is still `expected` (`None`: only if it does not exist
    /// yet). `Ok(false)` when another writer got there first and nothing was written.
    ///
    /// # Errors
    /// [`KeyringError::Store`] when the store cannot be written.
    fn replace(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, KeyringError>;
}

/// One state of the keyring, to notice cheaply that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// No keyring yet.
    Absent,
    /// The file's modification time.
    Modified(SystemTime),
    /// The shared document's version.
    Version(u64),
}

#[derive(Debug)]
enum Backing {
    /// `keys.json` and `secrets.json` in a data directory, changed under a lock file.
    Files(PathBuf),
    /// Documents in a shared store, changed by compare-and-swap.
    Shared(Arc<dyn Documents>),
}

/// One of the two documents: its file name, and its name in a shared store.
#[derive(Clone, Copy)]
struct Doc {
    file: &'static str,
    document: &'static str,
}

const KEYRING: Doc = Doc { file: FILE_NAME, document: "keyring" };
const SECRETS: Doc = Doc { file: SECRETS_NAME, document: "secrets" };
/// Compare-and-swap attempts before a write that keeps losing to other nodes gives up.
const ATTEMPTS: usize = 16;

/// The keyring and the server secrets: files in the data directory, or documents in a shared store.
#[derive(Debug)]
pub struct KeyStore {
    backing: Backing,
    master: Option<MasterKey>,
}

impl KeyStore {
    /// The keyring of `data_dir`, created (mode 0700) if missing.
    ///
    /// # Errors
    /// [`KeyringError::Io`] when the directory cannot be created.
    pub fn open(data_dir: &Path, master: Option<MasterKey>) -> Result<Self, KeyringError> {
        create_private_dir(data_dir)?;
        Ok(Self { backing: Backing::Files(data_dir.to_owned()), master })
    }

    /// The keyring kept in a shared store.
    #[must_use]
    pub fn shared(documents: Arc<dyn Documents>, master: Option<MasterKey>) -> Self {
        Self { backing: Backing::Shared(documents), master }
    }

    /// Copies the keyring and the secrets of `data_dir` into the shared store, each only if the store has none
    /// yet: a deployment that moves from files to a shared store keeps its keys (the first node to start wins).
    /// Returns the documents copied. Does nothing for a file-backed store.
    ///
    /// # Errors
    /// I/O errors reading the files, store errors writing them.
    pub fn import_files(&self, data_dir: &Path) -> Result<Vec<&'static str>, KeyringError> {
        let Backing::Shared(documents) = &self.backing else { return Ok(Vec::new()) };
        let mut imported = Vec::new();
        for doc in [KEYRING, SECRETS] {
            let path = data_dir.join(doc.file);
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(KeyringError::Io { path, source }),
            };
            if documents.read(doc.document)?.is_none() && documents.replace(doc.document, None, text)? {
                imported.push(doc.file);
            }
        }
        Ok(imported)
    }

    /// Whether keys written by this store are encrypted.
    #[must_use]
    pub fn seals(&self) -> bool {
        self.master.is_some()
    }

    /// Where the keyring is: the file's path, or `store:keyring` for the shared store (for messages).
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.location(KEYRING)
    }

    /// Where the server secrets are: the file's path, or `store:secrets` (for messages).
    #[must_use]
    pub fn secrets_path(&self) -> PathBuf {
        self.location(SECRETS)
    }

    fn location(&self, doc: Doc) -> PathBuf {
        match &self.backing {
            Backing::Files(dir) => dir.join(doc.file),
            Backing::Shared(_) => PathBuf::from(format!("store:{}", doc.document)),
        }
    }

    /// The keyring's current revision: compare two to know whether anyone changed it in between.
    ///
    /// # Errors
    /// Store errors (a file that cannot be examined counts as absent).
    pub fn revision(&self) -> Result<Revision, KeyringError> {
        self.revision_of(KEYRING)
    }

    /// The server secrets' current revision, like [`KeyStore::revision`].
    ///
    /// # Errors
    /// Store errors (a file that cannot be examined counts as absent).
    pub fn secrets_revision(&self) -> Result<Revision, KeyringError> {
        self.revision_of(SECRETS)
    }

    fn revision_of(&self, doc: Doc) -> Result<Revision, KeyringError> {
        Ok(match &self.backing {
            Backing::Files(dir) => {
                fs::metadata(dir.join(doc.file)).and_then(|m| m.modified()).map_or(Revision::Absent, Revision::Modified)
            }
            Backing::Shared(documents) => {
                documents.read(doc.document)?.map_or(Revision::Absent, |(version, _)| Revision::Version(version))
            }
        })
    }

    /// The text of `doc` and, in a shared store, its version; `None` when it does not exist yet.
    fn read(&self, doc: Doc) -> Result<Option<(Option<u64>, String)>, KeyringError> {
        match &self.backing {
            Backing::Files(dir) => {
                let path = dir.join(doc.file);
                match fs::read(&path) {
                    Ok(bytes) => String::from_utf8(bytes)
                        .map(|text| Some((None, text)))
                        .map_err(|_| KeyringError::Corrupt { path, reason: "not UTF-8".into() }),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(KeyringError::Io { path, source }),
                }
            }
            Backing::Shared(documents) => {
                Ok(documents.read(doc.document)?.map(|(version, text)| (Some(version), text)))
            }
        }
    }

    /// Changes `doc`: `change` gets its current text and returns the new text (`None`: nothing to write) and a
    /// result. Files are changed under an exclusive lock, so concurrent commands and servers never lose each
    /// other's changes; a shared document by compare-and-swap, calling `change` again on the newer text when
    /// another node wrote in between.
    fn change<T>(
        &self,
        doc: Doc,
        mut change: impl FnMut(Option<&str>) -> Result<(Option<String>, T), KeyringError>,
    ) -> Result<T, KeyringError> {
        match &self.backing {
            Backing::Files(dir) => {
                let _lock = lock(dir)?;
                let current = self.read(doc)?;
                let (new, result) = change(current.as_ref().map(|(_, text)| text.as_str()))?;
                if let Some(new) = new {
                    write_atomically(&dir.join(doc.file), new.as_bytes())?;
                }
                Ok(result)
            }
            Backing::Shared(documents) => {
                for _ in 0..ATTEMPTS {
                    let current = documents.read(doc.document)?;
                    let (new, result) = change(current.as_ref().map(|(_, text)| text.as_str()))?;
                    let Some(new) = new else { return Ok(result) };
                    if documents.replace(doc.document, current.map(|(version, _)| version), new)? {
                        return Ok(result);
                    }
                }
                Err(KeyringError::Store(format!(
                    "document {} kept changing under {ATTEMPTS} attempts to write it",
                    doc.document
                )))
            }
        }
    }

    /// Reads the keyring (empty when there is none yet). Needs no lock: writes replace it whole.
    ///
    /// # Errors
    /// [`KeyringError::Io`], [`KeyringError::Corrupt`], [`KeyringError::Store`], or a master-key error.
    pub fn load(&self) -> Result<KeyRing, KeyringError> {
        match self.read(KEYRING)? {
            Some((_, text)) => self.parse_ring(&text, Unsealed::Refuse),
            None => Ok(KeyRing::default()),
        }
    }

    /// The stored bytes of one entry, opened with the master key. With a master key set, an entry stored unsealed
    /// is refused (unless `unsealed` accepts it, for `tessera keys seal`); a sealed one must open under `context`,
    /// which binds it to its purpose and id, so an entry moved elsewhere does not open either.
    fn open_entry(
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
                // The keyring is sealed as a whole; secrets one by one.
                let entry = if doc.file == FILE_NAME { "the keyring".to_owned() } else { format!("secret {kid}") };
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
    fn seal_entry(&self, context: &str, bytes: &[u8]) -> Result<(Sealing, Vec<u8>), KeyringError> {
        Ok(match &self.master {
            Some(master) => (Sealing::Aes256Gcm, master.seal(context, bytes)?),
            None => (Sealing::None, bytes.to_vec()),
        })
    }

    fn parse_ring(&self, text: &str, unsealed: Unsealed) -> Result<KeyRing, KeyringError> {
        let corrupt = |reason: String| KeyringError::Corrupt { path: self.path(), reason };
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
                let context = context(&stored.kid, stored.alg);
                let der = self.open_entry(KEYRING, file.sealing, raw, &context, &stored.kid, unsealed)?;
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

    /// Seals, under the master key, a keyring and secrets written without one: the explicit upgrade once a master
    /// key is set (reading never does it, since an unsealed entry may have been planted). Returns where entries
    /// were sealed.
    ///
    /// # Errors
    /// [`KeyringError::MasterKeyRequired`] without a master key; as [`KeyStore::load`] for anything else, among
    /// them a sealed entry the master key does not open.
    pub fn seal(&self) -> Result<Vec<PathBuf>, KeyringError> {
        if self.master.is_none() {
            return Err(KeyringError::MasterKeyRequired);
        }
        let mut sealed = Vec::new();
        let keyring_unsealed = self.change(KEYRING, |text| {
            let Some(text) = text else { return Ok((None, false)) };
            if self.parse_ring(text, Unsealed::Refuse).is_ok() {
                return Ok((None, false));
            }
            let ring = self.parse_ring(text, Unsealed::Accept)?;
            Ok((Some(self.serialize(&ring)?), true))
        })?;
        if keyring_unsealed {
            sealed.push(self.location(KEYRING));
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

    fn parse_secrets(
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

    fn serialize_secrets(
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

    /// Changes the keyring and writes it back — only if `change` succeeds. With a shared store `change` may run
    /// more than once, each time on the newest keyring, when other nodes change it at the same moment.
    ///
    /// # Errors
    /// Whatever `change` returns, or an I/O, store, format or master-key error.
    pub fn update<T>(
        &self,
        mut change: impl FnMut(&mut KeyRing) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        self.change(KEYRING, |text| {
            let mut ring = match text {
                Some(text) => self.parse_ring(text, Unsealed::Refuse)?,
                None => KeyRing::default(),
            };
            let result = change(&mut ring)?;
            Ok((Some(self.serialize(&ring)?), result))
        })
    }

    fn serialize(&self, ring: &KeyRing) -> Result<String, KeyringError> {
        let keys = ring
            .keys()
            .iter()
            .map(|managed| {
                let der = managed.key.to_pkcs8()?;
                let (_, stored) = self.seal_entry(&context(managed.key.kid(), managed.key.algorithm()), &der)?;
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
            .map_err(|err| KeyringError::Corrupt { path: self.path(), reason: err.to_string() })
    }
}

fn lock(dir: &Path) -> Result<File, KeyringError> {
    let lock_path = dir.join(LOCK_NAME);
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options.open(&lock_path).map_err(|source| KeyringError::Io { path: lock_path.clone(), source })?;
    lock.lock().map_err(|source| KeyringError::Io { path: lock_path, source })?;
    Ok(lock)
}

/// What each sealed key is bound to (AES-GCM associated data): its purpose, id and algorithm, so a sealed key
/// cannot be moved to another entry, nor used as a server secret.
fn context(kid: &str, alg: Algorithm) -> String {
    format!("tessera-key-v1|{kid}|{alg}")
}

/// What each sealed version of a server secret is bound to: its purpose, the secret's name and the version's id,
/// so a version cannot be moved to another secret (a CSRF key made a refresh-token key), to another id, or into
/// the keyring.
fn secret_context(name: &str, id: u8) -> String {
    format!("tessera-secret-v2|{name}|{id}")
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
    fn an_unsealed_keyring_is_refused_with_a_master_key_until_sealed_explicitly() {
        let dir = tempfile::tempdir().unwrap();
        let plain = KeyStore::open(dir.path(), None).unwrap();
        plain.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
        let (secrets, _) = plain.load_secrets(&[REFRESH], 1, &policy(Algorithm::EdDSA)).unwrap();
        let kid = plain.load().unwrap().active(1).unwrap().kid().to_owned();
        let (master, _) = MasterKey::generate().unwrap();
        let sealed = KeyStore::open(dir.path(), Some(master)).unwrap();
        // Neither a read nor a write seals it in passing: the unsealed keyring could have been planted.
        for refused in [
            sealed.load().map(drop),
            sealed.update(|ring| ring.maintain(2, &policy(Algorithm::EdDSA))).map(drop),
            sealed.load_secrets(&[REFRESH], 2, &policy(Algorithm::EdDSA)).map(drop),
        ] {
            let err = refused.unwrap_err();
            assert!(matches!(err, KeyringError::Unsealed { .. }) && err.is_integrity_failure(), "{err}");
            assert!(err.to_string().contains("tessera keys seal"), "{err}");
        }
        assert!(fs::read_to_string(dir.path().join(FILE_NAME)).unwrap().contains("\"none\""), "nothing written");

        assert_eq!(sealed.seal().unwrap(), [dir.path().join(FILE_NAME), dir.path().join(SECRETS_NAME)]);
        assert!(fs::read_to_string(sealed.path()).unwrap().contains("aes-256-gcm"));
        assert_eq!(sealed.load().unwrap().active(2).unwrap().kid(), kid, "the same keys, now sealed");
        let (after, _) = sealed.load_secrets(&[REFRESH], 2, &policy(Algorithm::EdDSA)).unwrap();
        assert_eq!(after[0].versions()[0].value(), secrets[0].versions()[0].value());
        assert!(sealed.seal().unwrap().is_empty(), "sealing twice changes nothing");
        assert!(matches!(plain.seal(), Err(KeyringError::MasterKeyRequired)));
    }

    #[test]
    fn a_planted_unsealed_or_swapped_secret_is_refused_under_a_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let store = KeyStore::open(dir.path(), Some(master)).unwrap();
        store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).unwrap();
        let path = dir.path().join(SECRETS_NAME);
        let genuine: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();

        // An attacker who can write the file but has no master key plants a MAC key of their own, in clear.
        let mut planted = genuine.clone();
        planted["secrets"][REFRESH]["versions"][0]["sealing"] = "none".into();
        planted["secrets"][REFRESH]["versions"][0]["value"] = base64url::encode([7u8; 32]).into();
        fs::write(&path, planted.to_string()).unwrap();
        let err = store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).unwrap_err();
        assert!(matches!(err, KeyringError::Unsealed { .. }), "{err}");
        assert!(!err.to_string().contains(&base64url::encode([7u8; 32])), "no secret in the message");

        // Sealed entries moved to another secret or another id do not open: the seal binds name and id.
        let mut swapped = genuine.clone();
        swapped["secrets"][REFRESH]["versions"][0]["value"] = genuine["secrets"][CSRF]["versions"][0]["value"].clone();
        let mut renumbered = genuine.clone();
        renumbered["secrets"][REFRESH]["versions"][0]["id"] = 9.into();
        for altered in [swapped, renumbered] {
            fs::write(&path, altered.to_string()).unwrap();
            let err = store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).unwrap_err();
            assert!(matches!(err, KeyringError::WrongMasterKey { .. }) && err.is_integrity_failure(), "{err}");
        }
        fs::write(&path, genuine.to_string()).unwrap();
        assert!(store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).is_ok());
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

    const REFRESH: &str = "refresh-token-mac";
    const CSRF: &str = "csrf-mac";

    /// The value of the version of `name` that issues at `now`.
    fn issuing(store: &KeyStore, name: &str, now: i64) -> [u8; 32] {
        let (rings, _) = store.load_secrets(&[name], now, &RotationPolicy::default()).unwrap();
        *rings[0].issuing_at(now).unwrap().value()
    }

    #[test]
    fn secrets_are_created_once_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (master, text) = MasterKey::generate().unwrap();
        let store = KeyStore::open(dir.path(), Some(master)).unwrap();
        let first = issuing(&store, REFRESH, 1);
        assert_eq!(issuing(&store, REFRESH, 2), first);
        assert_ne!(issuing(&store, CSRF, 2), first);
        let again = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap();
        assert_eq!(issuing(&again, REFRESH, 3), first);
        let stored = fs::read_to_string(dir.path().join(SECRETS_NAME)).unwrap();
        assert!(!stored.contains(&base64url::encode(first)), "sealed, not in clear");
        assert!(matches!(
            KeyStore::open(dir.path(), None).unwrap().load_secrets(&[REFRESH], 3, &RotationPolicy::default()),
            Err(KeyringError::MasterKeyRequired)
        ));
    }

    #[test]
    fn secrets_rotate_on_schedule_and_on_demand_keeping_the_predecessor() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), Some(MasterKey::generate().unwrap().0)).unwrap();
        let p = RotationPolicy::default();
        let (rings, changes) = store.load_secrets(&[REFRESH, CSRF], 0, &p).unwrap();
        assert_eq!(changes.len(), 2, "a first version of each");
        let first = rings[0].issuing_at(0).unwrap().id;
        // Due a prepublication period before the interval ends: the successor is written, not yet issuing.
        let at = p.secrets_rotation_interval - p.secrets_prepublish;
        let (rings, changes) = store.load_secrets(&[REFRESH, CSRF], at, &p).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(rings[0].issuing_at(at).unwrap().id, first);
        assert_eq!(rings[0].accepted(at).len(), 2);
        // On demand, at once: the scheduled successor issues now, its predecessor is still accepted.
        let changes = store.rotate_secrets(at + 1, &p, Activation::Immediate).unwrap();
        assert!(changes.iter().all(|c| matches!(c, Change::ActivatedNow { .. })), "{changes:?}");
        let (rings, changes) = store.load_secrets(&[REFRESH, CSRF], at + 1, &p).unwrap();
        assert!(changes.is_empty());
        assert_ne!(rings[0].issuing_at(at + 1).unwrap().id, first);
        assert!(rings[0].accepted(at + 1).iter().any(|version| version.id == first));
        assert!(matches!(
            store.rotate_secrets(at + 2, &p, Activation::Scheduled).and_then(|_| store.rotate_secrets(
                at + 3,
                &p,
                Activation::Scheduled
            )),
            Err(KeyringError::RotationPending { .. })
        ));
    }

    #[test]
    fn a_secret_written_before_rotation_is_version_zero_and_stays_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (master, text) = MasterKey::generate().unwrap();
        let legacy_value = [5u8; 32];
        // secrets.json as the previous release wrote it: one value per name, sealed under the name alone.
        let sealed = master.seal(&format!("tessera-secret-v1|{REFRESH}"), &legacy_value).unwrap();
        let legacy =
            serde_json::json!({"secrets": {REFRESH: {"sealing": "aes-256-gcm", "value": base64url::encode(sealed)}}});
        fs::write(dir.path().join(SECRETS_NAME), legacy.to_string()).unwrap();
        let store = KeyStore::open(dir.path(), Some(master)).unwrap();
        let now = 1_800_000_000;
        let (rings, _) = store.load_secrets(&[REFRESH], now, &RotationPolicy::default()).unwrap();
        let zero = rings[0].versions().iter().find(|version| version.id == 0).unwrap();
        assert_eq!(zero.value(), &legacy_value);
        assert_eq!(rings[0].issuing_at(now).unwrap().id, 0, "it issues until its successor activates");
        assert!(rings[0].accepted(now + RotationPolicy::default().secrets_prepublish).iter().any(|v| v.id == 0));
        // Written back in the new form and still read the same.
        let again = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap();
        let (rings, _) = again.load_secrets(&[REFRESH], now, &RotationPolicy::default()).unwrap();
        assert_eq!(rings[0].versions().iter().find(|version| version.id == 0).unwrap().value(), &legacy_value);
        assert!(fs::read_to_string(dir.path().join(SECRETS_NAME)).unwrap().contains("versions"));
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

    /// A shared store in memory; `interfere` runs once, just before the first write, as another node would.
    #[derive(Default)]
    struct Memory {
        documents: std::sync::Mutex<std::collections::HashMap<String, (u64, String)>>,
        interfere: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl std::fmt::Debug for Memory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Memory").field("documents", &self.documents).finish_non_exhaustive()
        }
    }

    impl Documents for Memory {
        fn read(&self, name: &str) -> Result<Option<(u64, String)>, KeyringError> {
            Ok(self.documents.lock().unwrap().get(name).cloned())
        }

        fn replace(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, KeyringError> {
            let interference = self.interfere.lock().unwrap().take();
            if let Some(interfere) = interference {
                interfere();
            }
            let mut documents = self.documents.lock().unwrap();
            let current = documents.get(name).map(|(version, _)| *version);
            if current != expected {
                return Ok(false);
            }
            documents.insert(name.to_owned(), (current.unwrap_or(0) + 1, contents));
            Ok(true)
        }
    }

    #[test]
    fn nodes_sharing_a_store_share_keys_and_secrets() {
        let memory = Arc::new(Memory::default());
        let (master, text) = MasterKey::generate().unwrap();
        let a = KeyStore::shared(memory.clone(), Some(master));
        let b = KeyStore::shared(memory.clone(), Some(MasterKey::parse(&text).unwrap()));
        assert_eq!(a.revision().unwrap(), Revision::Absent);
        let (ring, _) = a.load_maintained(1, &policy(Algorithm::ES256)).unwrap();
        let kid = ring.active(1).unwrap().kid().to_owned();
        assert_eq!(b.load().unwrap().active(1).unwrap().kid(), kid);
        assert_eq!(b.revision().unwrap(), Revision::Version(1));
        assert_eq!(issuing(&a, REFRESH, 1), issuing(&b, REFRESH, 1));
        let stored = memory.read("keyring").unwrap().unwrap().1;
        assert!(stored.contains("aes-256-gcm"), "sealed in the store as in a file");
        assert!(matches!(KeyStore::shared(memory, None).load(), Err(KeyringError::MasterKeyRequired)));
    }

    #[test]
    fn a_change_racing_another_node_is_made_again_on_top_of_it() {
        let memory = Arc::new(Memory::default());
        let a = KeyStore::shared(memory.clone(), None);
        a.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
        // Node B rotates between A's read and A's write: A's write fails, and A rotates again on B's keyring.
        let b = KeyStore::shared(memory.clone(), None);
        *memory.interfere.lock().unwrap() = Some(Box::new(move || {
            b.update(|ring| ring.rotate(2, &policy(Algorithm::EdDSA), Activation::Scheduled)).unwrap();
        }));
        let mut attempts = 0;
        let outcome = a.update(|ring| {
            attempts += 1;
            ring.rotate(3, &policy(Algorithm::EdDSA), Activation::Immediate)
        });
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(attempts, 2, "the first attempt lost to B and was made again");
        let ring = a.load().unwrap();
        assert_eq!(ring.keys().len(), 2, "B's scheduled key was activated at once, not lost");
        assert_eq!(memory.read("keyring").unwrap().unwrap().0, 3);
    }

    #[test]
    fn local_files_are_imported_once_into_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyStore::open(dir.path(), None).unwrap();
        let (ring, _) = files.load_maintained(1, &policy(Algorithm::EdDSA)).unwrap();
        let secret = issuing(&files, REFRESH, 1);
        let memory = Arc::new(Memory::default());
        let shared = KeyStore::shared(memory.clone(), None);
        assert_eq!(shared.import_files(dir.path()).unwrap(), vec![FILE_NAME, SECRETS_NAME]);
        assert_eq!(shared.load().unwrap().active(1).unwrap().kid(), ring.active(1).unwrap().kid());
        assert_eq!(issuing(&shared, REFRESH, 1), secret);
        // Another node's different files do not replace what the store already holds.
        let other = tempfile::tempdir().unwrap();
        KeyStore::open(other.path(), None).unwrap().load_maintained(1, &policy(Algorithm::EdDSA)).unwrap();
        assert!(shared.import_files(other.path()).unwrap().is_empty());
        assert_eq!(shared.load().unwrap().active(1).unwrap().kid(), ring.active(1).unwrap().kid());
    }

    #[cfg(unix)]
    #[test]
    fn the_keyring_is_readable_only_by_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = KeyStore::open(&data, None).unwrap();
        store.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
        store.load_secrets(&[REFRESH], 1, &RotationPolicy::default()).unwrap();
        for file in [FILE_NAME, SECRETS_NAME, LOCK_NAME] {
            assert_eq!(fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777, 0o600, "{file}");
        }
        assert_eq!(fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
