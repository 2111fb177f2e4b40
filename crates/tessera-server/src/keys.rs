//! The signing key, the verifier's key set and the MAC keys of refresh and CSRF tokens, reloaded from the keyring
//! while the server runs: keys added or rotated by `tessera keys` commands or by another node, and the scheduled
//! rotations themselves, take effect without a restart.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tessera_jose::{SigningKey, Verifier};
use tessera_keys::{KeyRing, KeyStore, KeyringError, Phase, Revision, RotationPolicy, SecretRing};

use crate::secrets::TokenSecrets;

/// The server secret refresh tokens are derived with.
const REFRESH_SECRET: &str = "refresh-token-mac";
/// The server secret CSRF tokens are derived with.
const CSRF_SECRET: &str = "csrf-mac";

/// Keys in service.
pub struct KeyService {
    store: KeyStore,
    rotation: RotationPolicy,
    signing: ArcSwap<SigningKey>,
    verifier: Verifier,
    jwks: ArcSwap<String>,
    secrets: Arc<TokenSecrets>,
    /// The revisions and the next scheduled change, as of the last load.
    loaded: Mutex<Loaded>,
    /// The revisions last refused for failing the master key's integrity check, so a planted entry that stays in
    /// place is reported and counted once, not on every reload.
    refused: Mutex<Option<Revisions>>,
    /// Where key rotations and refused entries are reported as security events, once the server's state exists.
    events: std::sync::OnceLock<crate::events::SecurityEvents>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Revisions {
    keyring: Revision,
    secrets: Revision,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Loaded {
    revisions: Revisions,
    next_change: Option<i64>,
    schedule: Schedule,
}

/// The signing keys' schedule as of the last load, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schedule {
    /// Keys published and not yet signing, signing (one), and retired but still verifying.
    pub next: usize,
    /// See `next`.
    pub active: usize,
    /// See `next`.
    pub retired: usize,
    /// When the signing key hands over (seconds since the epoch); past it, rotation is overdue.
    pub rotation_due_at: Option<i64>,
}

impl Schedule {
    fn of(ring: &KeyRing, now_secs: i64, policy: &RotationPolicy) -> Self {
        let statuses = ring.status(now_secs, policy);
        let count = |phase: Phase| statuses.iter().filter(|status| status.phase == phase).count();
        Self {
            next: count(Phase::Next),
            active: count(Phase::Active),
            retired: count(Phase::Retired),
            rotation_due_at: ring.rotation_due_at(now_secs, policy),
        }
    }
}

/// A keyring and the server secrets, both loaded (and maintained) before either is put in service.
struct Loading {
    ring: KeyRing,
    refresh: SecretRing,
    csrf: SecretRing,
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
        let revisions = revisions(&store)?;
        let Loading { ring, refresh, csrf, next_change } =
            load_both(&store, &rotation, now_secs).inspect_err(report_refusal)?;
        let schedule = Schedule::of(&ring, now_secs, &rotation);
        let keys = ring.verifying_keys(now_secs, &rotation);
        let jwks = jwks_json(&ring.jwks(now_secs, &rotation));
        let signing = ring.into_active(now_secs)?;
        verifier.replace_keys(keys);
        let secrets = TokenSecrets::new(refresh.accepted(now_secs), csrf.accepted(now_secs), now_secs);
        Ok(Self {
            store,
            rotation,
            signing: ArcSwap::from_pointee(signing),
            verifier,
            jwks: ArcSwap::from_pointee(jwks),
            secrets: Arc::new(secrets),
            loaded: Mutex::new(Loaded { revisions, next_change, schedule }),
            refused: Mutex::new(None),
            events: std::sync::OnceLock::new(),
        })
    }

    /// Re-reads the keyring and the server secrets when either changed or scheduled work is due; returns whether
    /// anything changed.
    ///
    /// # Errors
    /// Keyring errors, among them an entry refused by the master key's integrity check (logged and counted in
    /// `tessera_key_entries_refused_total`); the keys in service stay as they were.
    pub fn refresh(&self, now_secs: i64) -> Result<bool, KeyringError> {
        let Ok(last) = self.loaded.lock().map(|loaded| *loaded) else { return Ok(false) };
        let due = last.next_change.is_some_and(|at| now_secs >= at);
        // Read before loading: a change made in between is then seen again at the next refresh, never missed.
        let revisions = revisions(&self.store)?;
        if revisions == last.revisions && !due {
            return Ok(false);
        }
        // Maintenance would fill an empty keyring with a new key (and empty secrets with new MAC keys), and every
        // token made so far would stop verifying. What existed and is gone was lost, not emptied on purpose: keep
        // what is in service.
        if revisions.keyring == Revision::Absent && last.revisions.keyring != Revision::Absent {
            return Err(KeyringError::Vanished { path: self.store.path() });
        }
        if revisions.secrets == Revision::Absent && last.revisions.secrets != Revision::Absent {
            return Err(KeyringError::Vanished { path: self.store.secrets_path() });
        }
        let current_kid = self.signing.load().kid().to_owned();
        // Everything is loaded before anything is replaced: a refused entry in either leaves both in service.
        let Loading { ring, refresh, csrf, next_change } = load_both(&self.store, &self.rotation, now_secs)
            .inspect_err(|err| {
                if self.newly_refused(err, revisions) {
                    report_refusal(err);
                    self.events.get().inspect(|events| events.key_entry_refused(&err.to_string()));
                }
            })?;
        let schedule = Schedule::of(&ring, now_secs, &self.rotation);
        let verifying = ring.verifying_keys(now_secs, &self.rotation);
        let jwks = jwks_json(&ring.jwks(now_secs, &self.rotation));
        let signing = ring.into_active(now_secs)?;
        self.verifier.replace_keys(verifying);
        self.jwks.store(Arc::new(jwks));
        if signing.kid() != current_kid {
            tracing::info!(kid = signing.kid(), alg = %signing.algorithm(), "now signing with a new key");
            self.events.get().inspect(|events| events.key_rotated(signing.kid(), &current_kid));
        }
        self.signing.store(Arc::new(signing));
        self.secrets.replace(refresh.accepted(now_secs), csrf.accepted(now_secs), now_secs);
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = Loaded { revisions, next_change, schedule };
        }
        if let Ok(mut refused) = self.refused.lock() {
            *refused = None;
        }
        Ok(true)
    }

    /// Reports key rotations and refused entries to `events` from now on.
    pub(crate) fn report_to(&self, events: crate::events::SecurityEvents) {
        // Set once, by the state that serves with these keys.
        let _ = self.events.set(events);
    }

    /// Whether `err` is an integrity failure of these revisions not reported yet.
    fn newly_refused(&self, err: &KeyringError, revisions: Revisions) -> bool {
        err.is_integrity_failure()
            && self.refused.lock().is_ok_and(|mut refused| refused.replace(revisions) != Some(revisions))
    }

    /// The signing keys' phases and next rotation, as of the last load.
    #[must_use]
    pub fn schedule(&self) -> Schedule {
        self.loaded.lock().map(|loaded| loaded.schedule).unwrap_or_default()
    }

    /// The MAC keys of refresh and CSRF tokens in service.
    #[must_use]
    pub fn token_secrets(&self) -> Arc<TokenSecrets> {
        Arc::clone(&self.secrets)
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
}

fn revisions(store: &KeyStore) -> Result<Revisions, KeyringError> {
    Ok(Revisions { keyring: store.revision()?, secrets: store.secrets_revision()? })
}

/// Loads the keyring and the server secrets after their scheduled work, logging what the work changed.
fn load_both(store: &KeyStore, rotation: &RotationPolicy, now_secs: i64) -> Result<Loading, KeyringError> {
    let (ring, changes) = store.load_maintained(now_secs, rotation)?;
    for change in &changes {
        tracing::info!(?change, "signing keys changed");
    }
    let (rings, changes) = store.load_secrets(&[REFRESH_SECRET, CSRF_SECRET], now_secs, rotation)?;
    for change in &changes {
        tracing::info!(?change, "server secrets changed");
    }
    let [refresh, csrf]: [SecretRing; 2] =
        rings.try_into().map_err(|_| KeyringError::Store("the server secrets were not all loaded".into()))?;
    let next_change = [
        ring.next_change_after(now_secs, rotation),
        refresh.next_change_after(now_secs, rotation),
        csrf.next_change_after(now_secs, rotation),
    ]
    .into_iter()
    .flatten()
    .min();
    Ok(Loading { ring, refresh, csrf, next_change })
}

/// Logs and counts an entry refused by the master key's integrity check: someone who can write the data
/// directory or the store planted or altered a key. The error names the entry, never its value.
fn report_refusal(err: &KeyringError) {
    if err.is_integrity_failure() {
        metrics::counter!("tessera_key_entries_refused_total").increment(1);
        tracing::error!(
            security_event = "key_entry_refused",
            error = %err,
            "a keyring or secrets entry failed the master key's integrity check and was refused; the keys in service are kept"
        );
    }
}

fn jwks_json(jwks: &tessera_jose::Jwks) -> String {
    serde_json::to_string(jwks).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned())
}
