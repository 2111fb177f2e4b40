//! Why a storage operation failed.

/// Why a storage operation failed. Callers turn these into 4xx (conflicts, unknown rows) or 503 (the rest).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The row to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The backend failed (I/O, corruption, a full disk): nothing was acknowledged.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The backend is shutting down or its worker has stopped.
    #[error("storage is unavailable")]
    Unavailable,
    /// The backend did not answer in time (see [`crate::Deadline`]); the call's outcome is unknown.
    #[error("storage did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Backend(err.to_string())
    }
}
