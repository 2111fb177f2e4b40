//! The keyrings and the server secrets as a [`KeyStore`]: files in the data directory (`keys.json`,
//! `keys-rs256.json`, `secrets.json`, written atomically under a lock file) or documents in a shared store (changed
//! by compare-and-swap), private keys and secrets sealed under the master key when one is given.
//!
//! This module holds the store itself and the one read and change path both documents go through; the documents'
//! formats are in `keyring` and `secrets`, sealing in `sealing`, the file primitives in `files`, the shared-store
//! port in `documents`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::{KeyringError, MasterKey};

mod documents;
mod files;
mod keyring;
mod sealing;
mod secrets;
#[cfg(test)]
mod tests;

pub use documents::Documents;
pub use sealing::Sealing;

const SECRETS_NAME: &str = "secrets.json";
const LOCK_NAME: &str = "keys.lock";

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

#[derive(Debug, Clone)]
enum Backing {
    /// `keys.json` and `secrets.json` in a data directory, changed under a lock file.
    Files(PathBuf),
    /// Documents in a shared store, changed by compare-and-swap.
    Shared(Arc<dyn Documents>),
}

/// One of the documents: its file name, and its name in a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Doc {
    file: &'static str,
    document: &'static str,
}

/// The signing keys.
const KEYRING: Doc = Doc { file: "keys.json", document: "keyring" };
/// RS256 keys kept beside signing keys of another algorithm, for ID tokens of applications that need RS256.
const RS256_KEYRING: Doc = Doc { file: "keys-rs256.json", document: "keyring-rs256" };
const KEYRINGS: [Doc; 2] = [KEYRING, RS256_KEYRING];
const SECRETS: Doc = Doc { file: SECRETS_NAME, document: "secrets" };
/// Compare-and-swap attempts before a write that keeps losing to other nodes gives up.
const ATTEMPTS: usize = 16;

/// A keyring and the server secrets: files in the data directory, or documents in a shared store.
#[derive(Debug)]
pub struct KeyStore {
    backing: Backing,
    master: Option<Arc<MasterKey>>,
    /// The keyring this store loads and changes: the signing keys, or the RS256 keys ([`KeyStore::rs256`]).
    keyring: Doc,
}

impl KeyStore {
    /// The keyring of `data_dir`, created (mode 0700) if missing.
    ///
    /// # Errors
    /// [`KeyringError::Io`] when the directory cannot be created.
    pub fn open(data_dir: &Path, master: Option<MasterKey>) -> Result<Self, KeyringError> {
        files::create_private_dir(data_dir)?;
        Ok(Self { backing: Backing::Files(data_dir.to_owned()), master: master.map(Arc::new), keyring: KEYRING })
    }

    /// The keyring kept in a shared store.
    #[must_use]
    pub fn shared(documents: Arc<dyn Documents>, master: Option<MasterKey>) -> Self {
        Self { backing: Backing::Shared(documents), master: master.map(Arc::new), keyring: KEYRING }
    }

    /// The same store's second keyring: RS256 keys, kept beside signing keys of another algorithm so that ID
    /// tokens can be signed with RS256 for applications that accept nothing else (OpenID Connect Core §15.1). Its
    /// own document (`keys-rs256.json`, or `keyring-rs256`), with its own rotation, sealed under the same master
    /// key; its secrets are this store's.
    #[must_use]
    pub fn rs256(&self) -> Self {
        Self { backing: self.backing.clone(), master: self.master.clone(), keyring: RS256_KEYRING }
    }

    /// Copies the keyrings and the secrets of `data_dir` into the shared store, each only if the store has none
    /// yet: a deployment that moves from files to a shared store keeps its keys (the first node to start wins).
    /// Returns the documents copied. Does nothing for a file-backed store.
    ///
    /// # Errors
    /// I/O errors reading the files, store errors writing them.
    pub fn import_files(&self, data_dir: &Path) -> Result<Vec<&'static str>, KeyringError> {
        let Backing::Shared(documents) = &self.backing else { return Ok(Vec::new()) };
        let mut imported = Vec::new();
        for doc in [KEYRING, RS256_KEYRING, SECRETS] {
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
        self.location(self.keyring)
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
        self.revision_of(self.keyring)
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
                let _lock = files::lock(dir)?;
                let current = self.read(doc)?;
                let (new, result) = change(current.as_ref().map(|(_, text)| text.as_str()))?;
                if let Some(new) = new {
                    files::write_atomically(&dir.join(doc.file), new.as_bytes())?;
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
}
