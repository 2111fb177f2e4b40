//! Revocations written in batches by the shared backends (PostgreSQL, Redis): whatever queued while the previous
//! batch was being written goes out together, so many revocations share one commit — and a lone one waits for
//! nothing.

use crate::model::{Millis, Provenance, Revocation};
use crate::StoreError;

/// Most revocations one batch writes.
pub(crate) const REVOCATION_BATCH: usize = 100;

/// A [`Store::revoke`](crate::Store::revoke) call waiting for its batch, and where its answer goes.
pub(crate) struct PendingRevocation {
    pub(crate) revocation: Revocation,
    pub(crate) provenance: Provenance,
    pub(crate) now: Millis,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
}
