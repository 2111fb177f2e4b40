//! The registered clients, held in memory: authenticating a known client is a map lookup, not a store read. The
//! directory is reloaded whenever the revocation log says a client changed (added, disabled, secret or keys
//! replaced), so changes reach every node within one sync — and a client id the directory does not know yet
//! causes one reload before it is refused ([`find`]), so a client is usable as soon as `tessera client add`
//! returns. That reload makes an unknown id answer more slowly than a known one; client ids are not secrets
//! (RFC 6749 §2.2), and the credential checks still cost the same either way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tessera_jose::{KeySet, Policy, Profile, Verifier};
use tessera_model::Client;
use tokio::time::Instant;

use crate::state::AppState;

/// Reloads for unknown client ids start at least this far apart, so a flood of made-up ids costs the store at
/// most two reads of the client list a second.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// Sessions whose client is remembered (see [`ClientDirectory::session_owner`]): about 100 bytes each.
const REMEMBERED_SESSION_OWNERS: usize = 65_536;

/// A registered client, with the verifier of its assertions when it authenticates with `private_key_jwt`.
pub(crate) struct Registered {
    pub(crate) client: Arc<Client>,
    pub(crate) assertions: Option<Verifier>,
}

impl Registered {
    /// Whether the client was issued credentials (a secret or keys): RFC 6749 §6 then requires it to authenticate
    /// on the refresh grant too.
    pub(crate) fn is_confidential(&self) -> bool {
        !self.client.secret_hash.is_empty() || self.client.jwks.is_some()
    }
}

/// Every registered client by `client_id`.
pub(crate) struct ClientDirectory {
    clients: ArcSwap<HashMap<String, Arc<Registered>>>,
    /// Set when the log announced a change the directory has not loaded yet (and at start).
    stale: AtomicBool,
    /// Whether any client holds credentials: without one, no session's client must authenticate on refresh.
    any_confidential: AtomicBool,
    /// When the last reload for an unknown client id started. Held for the whole reload, so concurrent misses
    /// wait for one reload and share it.
    miss_reload: tokio::sync::Mutex<Option<Instant>>,
    /// The client of each recently refreshed session, by `sid`: a session's client never changes, so the refresh
    /// grant knows whether the session's client must authenticate without reading the session first.
    session_owners: quick_cache::sync::Cache<String, Arc<str>>,
}

impl Default for ClientDirectory {
    fn default() -> Self {
        Self {
            clients: ArcSwap::default(),
            stale: AtomicBool::new(true),
            any_confidential: AtomicBool::new(false),
            miss_reload: tokio::sync::Mutex::new(None),
            session_owners: quick_cache::sync::Cache::new(REMEMBERED_SESSION_OWNERS),
        }
    }
}

/// The registered client `client_id`. An id this node does not know may have been added a moment ago (`tessera
/// client add`, another node): the directory is then reloaded from the store once before the answer is "none".
/// Such reloads are single-flight and start at least [`MISS_RELOAD_INTERVAL`] apart; a miss is answered after a
/// reload that started after it, so a client added before the request is always found.
pub(crate) async fn find(state: &AppState, client_id: &str) -> Option<Arc<Registered>> {
    let directory = state.clients();
    if let Some(found) = directory.get(client_id) {
        return Some(found);
    }
    let missed_at = Instant::now();
    let mut last = directory.miss_reload.lock().await;
    if last.is_none_or(|started| started < missed_at) {
        if let Some(started) = *last {
            tokio::time::sleep_until(started + MISS_RELOAD_INTERVAL).await;
        }
        *last = Some(Instant::now());
        if let Err(err) = crate::background::reload_clients(state).await {
            // The regular sync retries; this request is answered with what the directory holds.
            directory.mark_stale();
            crate::error::note_storage_failure(err);
        }
    }
    drop(last);
    directory.get(client_id)
}

/// The keys of a `private_key_jwt` client from its JWKS document: public, asymmetric keys only (an HMAC key would
/// be a shared secret, `client_secret_jwt`, which Tessera does not offer).
///
/// # Errors
/// What is wrong with the document, for the operator.
pub fn assertion_keys(jwks: &str) -> Result<KeySet, String> {
    let keys = KeySet::from_public_jwks_json(jwks.as_bytes()).map_err(|err| err.to_string())?;
    if keys.is_empty() {
        return Err("the key set is empty".into());
    }
    Ok(keys)
}

impl ClientDirectory {
    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<Registered>> {
        self.clients.load().get(client_id).cloned()
    }

    /// Whether any registered client holds credentials.
    pub(crate) fn any_confidential(&self) -> bool {
        self.any_confidential.load(Ordering::SeqCst)
    }

    /// The client of session `sid`, if this node has seen the session started or refreshed.
    pub(crate) fn session_owner(&self, sid: &str) -> Option<Arc<str>> {
        self.session_owners.get(sid)
    }

    /// Remembers the client of session `sid`.
    pub(crate) fn remember_session_owner(&self, sid: &str, client_id: &str) {
        self.session_owners.insert(sid.to_owned(), Arc::from(client_id));
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
            .collect::<HashMap<_, _>>();
        self.any_confidential.store(map.values().any(|registered| registered.is_confidential()), Ordering::SeqCst);
        self.clients.store(Arc::new(map));
    }
}
