//! The port through which a [`KeyStore`](super::KeyStore) reaches a shared store: versioned documents by name, read
//! and replaced by compare-and-swap. The binary adapts its store to it, so this crate needs no database.

use crate::KeyringError;

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
