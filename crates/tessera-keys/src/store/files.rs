//! The file primitives of a keyring in a data directory: the private directory, the lock file that serialises
//! changes, and the atomic write that leaves either the old document or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use super::LOCK_NAME;
use crate::KeyringError;

pub(super) fn lock(dir: &Path) -> Result<File, KeyringError> {
    let lock_path = dir.join(LOCK_NAME);
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options.open(&lock_path).map_err(|source| KeyringError::Io { path: lock_path.clone(), source })?;
    lock.lock().map_err(|source| KeyringError::Io { path: lock_path, source })?;
    Ok(lock)
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), KeyringError> {
    let io = |source| KeyringError::Io { path: dir.to_owned(), source };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Write to a temporary file, flush it to disk, rename over the target, then flush the directory: a crash leaves
/// either the old keyring or the new one, never half of one.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyringError> {
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
