//! Why a keyring operation failed.

use std::path::PathBuf;

use tessera_jose::KeyError;

/// Why the keyring could not be read, changed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The keyring file is not what Tessera writes.
    #[error("{}: not a valid keyring: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The shared store holding the keyring failed, or a write kept losing to other nodes.
    #[error("the store holding the signing keys: {0}")]
    Store(String),
    /// The keyring disappeared while keys loaded from it were in service (a deleted file, a store that lost its
    /// data): they stay in service, and no new key is generated in place of them.
    #[error("{}: the keyring disappeared while its keys were in service; they stay in service and no new key is made (restore it, or restart to start a new keyring)", path.display())]
    Vanished {
        /// Where it was.
        path: PathBuf,
    },
    /// The keyring is encrypted and no master key was given.
    #[error("the signing keys are encrypted; give the master key (TESSERA_MASTER_KEY or keys.master_key_file)")]
    MasterKeyRequired,
    /// The master key does not decrypt a stored key.
    #[error("the master key does not decrypt key {kid}: wrong master key, or the keyring was altered")]
    WrongMasterKey {
        /// The key that failed.
        kid: String,
    },
    /// A master key is set, but an entry is stored unsealed: planted by whoever can write the data directory or
    /// the store, or left from before the master key was set. Never accepted; sealing an existing keyring is an
    /// explicit step.
    #[error("{}: {entry} is stored UNSEALED although a master key is set, and is refused (it may have been planted). If you have just set the master key, seal the existing keys with `tessera keys seal`", path.display())]
    Unsealed {
        /// The keyring or secrets file, or `store:<document>`.
        path: PathBuf,
        /// Which entry: `the keyring`, `secret refresh-token-mac`, ...
        entry: String,
    },
    /// The master key text is not 32 bytes in base64 or hex.
    #[error("master key must be 32 random bytes, as base64 (44 characters) or hex (64 characters)")]
    InvalidMasterKey,
    /// A key could not be generated, loaded or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A scheduled rotation is already pending.
    #[error("key {kid} is already scheduled to become active at {activates_at}; use --now to activate it immediately")]
    RotationPending {
        /// The pending key.
        kid: String,
        /// When it activates (seconds since the epoch).
        activates_at: i64,
    },
    /// No key is active, so nothing can be signed.
    #[error("no active signing key; create one with `tessera keys generate`")]
    NoActiveKey,
    /// No key has this id.
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
}

impl KeyringError {
    /// Whether this refuses an entry that failed the master key's integrity check (unsealed, or not opened by the
    /// master key): an attempt to plant a key, or a keyring altered outside Tessera, rather than an outage.
    #[must_use]
    pub fn is_integrity_failure(&self) -> bool {
        matches!(self, Self::Unsealed { .. } | Self::WrongMasterKey { .. })
    }
}
