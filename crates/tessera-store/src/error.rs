//! Why a storage operation failed.

/// A driver's error (or any other cause of a backend failure), kept whole: its type for whoever downcasts it, its
/// own causes for whoever walks the chain.
pub type BackendCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed. Callers turn these into 4xx (conflicts, unknown rows) or 5xx (the rest).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The row to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The backend failed (I/O, a full disk, a refused connection): nothing was acknowledged. The driver's error
    /// is the [source](std::error::Error::source), so logs that follow the chain show what lies beneath it.
    #[error("storage backend failed: {0}")]
    Backend(#[source] BackendCause),
    /// A stored row or record cannot be read back as what was written: an unknown revocation kind, a missing
    /// instant, malformed JSON. Nothing is guessed in its place; it is the server's fault, not the caller's.
    #[error("corrupt {what} in storage: {detail}")]
    Corrupt {
        /// What was being read: the column or field (`revocation kind`, `roles`, …).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The backend is shutting down or its worker has stopped.
    #[error("storage is unavailable")]
    Unavailable,
    /// The backend did not answer in time (see [`crate::Deadline`]); the call's outcome is unknown.
    #[error("storage did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl StoreError {
    /// A backend failure with no driver error behind it (a check of the store's own failed).
    pub(crate) fn backend(message: impl Into<String>) -> Self {
        Self::Backend(message.into().into())
    }

    /// A backend failure: the driver's error `cause`, met while doing `context` (`PostgreSQL URL`, …).
    pub(crate) fn backend_because(
        context: impl Into<std::borrow::Cow<'static, str>>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend(Box::new(Because { context: context.into(), cause: Box::new(cause) }))
    }

    /// A stored `what` that cannot be decoded, and why.
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Corrupt { what, detail: detail.into() }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
/// A driver's error met while doing something the message names. Its text shows both; its source is what lies
/// beneath the driver's error, so a chain printed whole shows each part once.
#[derive(Debug)]
struct Because {
    context: std::borrow::Cow<'static, str>,
    cause: BackendCause,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl std::fmt::Display for Because {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.context, self.cause)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl std::error::Error for Because {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Backend(Box::new(err))
    }
}

#[cfg(all(test, any(feature = "sqlite", feature = "postgres", feature = "redis")))]
mod tests {
    use super::*;

    #[test]
    fn a_backend_failure_keeps_the_driver_error_as_its_source() {
        let driver = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by the test");
        let err = StoreError::Backend(Box::new(driver));
        assert_eq!(err.to_string(), "storage backend failed: refused by the test");
        let source = std::error::Error::source(&err).expect("the driver error is the source");
        let io = source.downcast_ref::<std::io::Error>().expect("of the driver's own type");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_backend_failure_with_context_names_both_and_keeps_the_chain() {
        let driver = std::io::Error::other("no such host");
        let err = StoreError::backend_because("PostgreSQL URL", driver);
        assert_eq!(err.to_string(), "storage backend failed: PostgreSQL URL: no such host");
        assert!(std::error::Error::source(&err).is_some());
    }
}
