//! The signing key and the verifier's key set, reloaded from the keyring while the server runs: keys added or
//! rotated by `tessera keys` commands or by another node, and the scheduled rotation itself, take effect without
//! a restart.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tessera_jose::{SigningKey, Verifier};
use tessera_keys::{KeyStore, KeyringError, Revision, RotationPolicy};

/// Keys in service.
pub struct KeyService {
    store: KeyStore,
    rotation: RotationPolicy,
    signing: ArcSwap<SigningKey>,
    verifier: Verifier,
    jwks: ArcSwap<String>,
    /// The keyring's revision and the next scheduled change, as of the last load.
    loaded: Mutex<Loaded>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Loaded {
    revision: Revision,
    next_change: Option<i64>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService").field("signing_kid", &self.signing.load().kid()).finish_non_exhaustive()
    }
}

impl KeyService {
    /// Loads the keyring (creating the first key on an empty one) and gives its verifying keys to `verifier`,
    /// which brings the policy (and how many verifications it remembers).
    ///
    /// # Errors
    /// Keyring errors: unreadable, wrong master key, ...
    pub fn load(
        store: KeyStore,
        rotation: RotationPolicy,
        verifier: Verifier,
        now_secs: i64,
    ) -> Result<Self, KeyringError> {
        let revision = store.revision()?;
        let (ring, _) = store.load_maintained(now_secs, &rotation)?;
        let keys = ring.verifying_keys(now_secs, &rotation);
        let jwks = jwks_json(&ring.jwks(now_secs, &rotation));
        let loaded = Loaded { revision, next_change: ring.next_change_after(now_secs, &rotation) };
        let signing = ring.into_active(now_secs)?;
        verifier.replace_keys(keys);
        Ok(Self {
            store,
            rotation,
            signing: ArcSwap::from_pointee(signing),
            verifier,
            jwks: ArcSwap::from_pointee(jwks),
            loaded: Mutex::new(loaded),
        })
    }

    /// Re-reads the keyring when it changed or scheduled work is due; returns whether anything changed.
    ///
    /// # Errors
    /// Keyring errors; the keys in service stay as they were.
    pub fn refresh(&self, now_secs: i64) -> Result<bool, KeyringError> {
        let Ok(last) = self.loaded.lock().map(|loaded| *loaded) else { return Ok(false) };
        let due = last.next_change.is_some_and(|at| now_secs >= at);
        // Read before loading: a change made in between is then seen again at the next refresh, never missed.
        let revision = self.store.revision()?;
        if revision == last.revision && !due {
            return Ok(false);
        }
        // Maintenance would fill an empty keyring with a new key, and every token signed so far would stop
        // verifying. A keyring that existed and is gone was lost, not emptied on purpose: keep what is in service.
        if revision == Revision::Absent && last.revision != Revision::Absent {
            return Err(KeyringError::Vanished { path: self.store.path() });
        }
        let current_kid = self.signing.load().kid().to_owned();
        let (ring, changes) = self.store.load_maintained(now_secs, &self.rotation)?;
        for change in &changes {
            tracing::info!(?change, "signing keys changed");
        }
        self.verifier.replace_keys(ring.verifying_keys(now_secs, &self.rotation));
        self.jwks.store(Arc::new(jwks_json(&ring.jwks(now_secs, &self.rotation))));
        let next_change = ring.next_change_after(now_secs, &self.rotation);
        let signing = ring.into_active(now_secs)?;
        if signing.kid() != current_kid {
            tracing::info!(kid = signing.kid(), alg = %signing.algorithm(), "now signing with a new key");
        }
        self.signing.store(Arc::new(signing));
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = Loaded { revision, next_change };
        }
        Ok(true)
    }

    /// The key that signs now.
    #[must_use]
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.signing.load_full()
    }

    /// The access-token verifier.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Sets the audiences the verifier accepts (this server's user audience and its clients' audiences).
    pub fn set_audiences(&self, audiences: Vec<String>) {
        let current = self.verifier.policy();
        if current.audiences != audiences {
            self.verifier.replace_policy(tessera_jose::Policy { audiences, ..(*current).clone() });
        }
    }

    /// The public JWKS document.
    #[must_use]
    pub fn jwks(&self) -> Arc<String> {
        self.jwks.load_full()
    }

    /// `Cache-Control: max-age` for the JWKS.
    #[must_use]
    pub fn jwks_max_age(&self) -> i64 {
        self.rotation.jwks_max_age()
    }

    /// The keyring's server secret `name`.
    ///
    /// # Errors
    /// Keyring errors.
    pub fn secret(&self, name: &str) -> Result<[u8; 32], KeyringError> {
        self.store.secret(name)
    }
}

fn jwks_json(jwks: &tessera_jose::Jwks) -> String {
    serde_json::to_string(jwks).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned())
}
