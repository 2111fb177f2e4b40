//! The registered clients, held in memory: client authentication is a map lookup, not a store read, and costs
//! the same whether the client exists or not. The directory is reloaded whenever the revocation log says a
//! client changed (added, disabled, secret or keys replaced), so changes reach every node within one sync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tessera_jose::{KeySet, Policy, Profile, Verifier};
use tessera_store::Client;

/// A registered client, with the verifier of its assertions when it authenticates with `private_key_jwt`.
pub(crate) struct Registered {
    pub(crate) client: Arc<Client>,
    pub(crate) assertions: Option<Verifier>,
}

/// Every registered client by `client_id`.
pub(crate) struct ClientDirectory {
    clients: ArcSwap<HashMap<String, Arc<Registered>>>,
    /// Set when the log announced a change the directory has not loaded yet (and at start).
    stale: AtomicBool,
}

impl Default for ClientDirectory {
    fn default() -> Self {
        Self { clients: ArcSwap::default(), stale: AtomicBool::new(true) }
    }
}

/// The keys of a `private_key_jwt` client from its JWKS document: public, asymmetric keys only (an HMAC key would
/// be a shared secret, `client_secret_jwt`, which Tessera does not offer).
///
/// # Errors
/// What is wrong with the document, for the operator.
pub fn assertion_keys(jwks: &str) -> Result<KeySet, String> {
    let keys = KeySet::from_jwks_json(jwks.as_bytes()).map_err(|err| err.to_string())?;
    let document: tessera_jose::Jwks = serde_json::from_str(jwks).map_err(|err| err.to_string())?;
    if document.keys.iter().any(|jwk| jwk.kty == "oct") {
        return Err("symmetric (oct) keys are not accepted: private_key_jwt needs public keys".into());
    }
    if keys.is_empty() {
        return Err("the key set is empty".into());
    }
    Ok(keys)
}

impl ClientDirectory {
    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<Registered>> {
        self.clients.load().get(client_id).cloned()
    }

    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Takes the stale mark: the caller reloads, and marks it stale again if that fails.
    pub(crate) fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::SeqCst)
    }

    /// Replaces every client. Assertions must name this server (`issuer`) or its token endpoint as audience.
    pub(crate) fn replace(&self, clients: Vec<Client>, issuer: &str, leeway_secs: i64) {
        let token_endpoint = format!("{}/oauth2/token", issuer.trim_end_matches('/'));
        let map = clients
            .into_iter()
            .map(|client| {
                let assertions = client.jwks.as_deref().and_then(|jwks| match assertion_keys(jwks) {
                    Ok(keys) => Some(Verifier::new(
                        keys,
                        Policy {
                            profile: Profile::Jws,
                            issuer: Some(client.client_id.clone()),
                            audiences: vec![issuer.to_owned(), token_endpoint.clone()],
                            leeway_secs,
                            ..Policy::jws()
                        },
                    )),
                    Err(err) => {
                        tracing::error!(client_id = %client.client_id, error = %err, "client keys unusable; it cannot authenticate");
                        None
                    }
                });
                (client.client_id.clone(), Arc::new(Registered { client: Arc::new(client), assertions }))
            })
            .collect();
        self.clients.store(Arc::new(map));
    }
}
