//! The registered clients, held in memory: client authentication is a map lookup, not a store read, and costs
//! the same whether the client exists or not. The directory is reloaded whenever the revocation log says a
//! client changed (added, disabled, secret rotated), so changes reach every node within one sync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tessera_store::Client;

/// Every registered client by `client_id`.
pub(crate) struct ClientDirectory {
    clients: ArcSwap<HashMap<String, Arc<Client>>>,
    /// Set when the log announced a change the directory has not loaded yet (and at start).
    stale: AtomicBool,
}

impl Default for ClientDirectory {
    fn default() -> Self {
        Self { clients: ArcSwap::default(), stale: AtomicBool::new(true) }
    }
}

impl ClientDirectory {
    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        self.clients.load().get(client_id).cloned()
    }

    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Takes the stale mark: the caller reloads, and marks it stale again if that fails.
    pub(crate) fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn replace(&self, clients: Vec<Client>) {
        let map = clients.into_iter().map(|client| (client.client_id.clone(), Arc::new(client))).collect();
        self.clients.store(Arc::new(map));
    }
}
