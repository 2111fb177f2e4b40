//! The signing key, the verifier's key set, the RS256 key of ID tokens and the MAC keys of refresh and CSRF tokens,
//! reloaded from the keyrings while the server runs: keys added or rotated by `tessera keys` commands or by another
//! node, and the scheduled rotations themselves, take effect without a restart.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tessera_jose::{Algorithm, KeySet, SigningKey, Verifier};
use tessera_keys::{KeyRing, KeyStore, KeyringError, Phase, Revision, RotationPolicy, SecretRing};
use tessera_model::IdTokenSigning;

use crate::secrets::TokenSecrets;

/// The server secret refresh tokens are derived with.
const REFRESH_SECRET: &str = "refresh-token-mac";
/// The server secret CSRF tokens are derived with.
const CSRF_SECRET: &str = "csrf-mac";

/// Keys in service.
pub struct KeyService {
    store: KeyStore,
    /// The keyring of RS256 keys and its policy, when one is kept beside signing keys of another algorithm.
    rs256_ring: Option<(KeyStore, RotationPolicy)>,
    rotation: RotationPolicy,
    signing: ArcSwap<SigningKey>,
    /// The RS256 key signing ID tokens of applications registered for RS256, when `rs256_ring` is kept.
    rs256: ArcSwapOption<SigningKey>,
    /// The access-token verifier: it trusts the signing keys only, so nothing signed for an ID token is an access
    /// token.
    verifier: Verifier,
    /// What ID tokens verify with (an `id_token_hint`): the signing keys and the RS256 keys.
    id_token_keys: ArcSwap<KeySet>,
    /// Both keyrings' public keys.
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
    rs256: Revision,
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

/// The keyrings and the server secrets, all loaded (and maintained) before any is put in service.
struct Loading {
    ring: KeyRing,
    rs256: Option<KeyRing>,
    refresh: SecretRing,
    csrf: SecretRing,
    next_change: Option<i64>,
}

/// The keys of the keyrings as they go into service.
struct InService {
    signing: SigningKey,
    rs256: Option<SigningKey>,
    verifying: KeySet,
    id_token_keys: KeySet,
    jwks: String,
    schedule: Schedule,
}

impl InService {
    fn of(
        ring: KeyRing,
        rs256: Option<(KeyRing, &RotationPolicy)>,
        now_secs: i64,
        rotation: &RotationPolicy,
    ) -> Result<Self, KeyringError> {
        let schedule = Schedule::of(&ring, now_secs, rotation);
        let verifying = ring.verifying_keys(now_secs, rotation);
        let mut id_token_keys = verifying.clone();
        let rs256 = match rs256 {
            Some((ring, policy)) => {
                let published = ring.verifying_keys(now_secs, policy);
                for key in ring.keys() {
                    // Kids are thumbprints of distinct keys, so none is in both keyrings.
                    if let Some(verifying) = published.get(key.key.kid()) {
                        let _ = id_token_keys.insert(verifying.clone());
                    }
                }
                Some(ring.into_active(now_secs)?)
            }
            None => None,
        };
        let jwks = jwks_json(&id_token_keys.to_public_jwks());
        let signing = ring.into_active(now_secs)?;
        Ok(Self { signing, rs256, verifying, id_token_keys, jwks, schedule })
    }
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
        let rs256_ring = rotation.rs256().map(|policy| (store.rs256(), policy));
        let revisions = revisions(&store, rs256_ring.as_ref())?;
        let Loading { ring, rs256, refresh, csrf, next_change } =
            load_all(&store, rs256_ring.as_ref(), &rotation, now_secs).inspect_err(report_refusal)?;
        let InService { signing, rs256, verifying, id_token_keys, jwks, schedule } =
            InService::of(ring, rs256.zip(rs256_ring.as_ref().map(|(_, policy)| policy)), now_secs, &rotation)?;
        verifier.replace_keys(verifying);
        let secrets = TokenSecrets::new(refresh.accepted(now_secs), csrf.accepted(now_secs), now_secs);
        Ok(Self {
            store,
            rs256_ring,
            rotation,
            signing: ArcSwap::from_pointee(signing),
            rs256: ArcSwapOption::from(rs256.map(Arc::new)),
            verifier,
            id_token_keys: ArcSwap::from_pointee(id_token_keys),
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
        let revisions = revisions(&self.store, self.rs256_ring.as_ref())?;
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
        if let Some((rs256, _)) = &self.rs256_ring {
            if revisions.rs256 == Revision::Absent && last.revisions.rs256 != Revision::Absent {
                return Err(KeyringError::Vanished { path: rs256.path() });
            }
        }
        // Everything is loaded before anything is replaced: a refused entry anywhere leaves all in service.
        let Loading { ring, rs256, refresh, csrf, next_change } =
            load_all(&self.store, self.rs256_ring.as_ref(), &self.rotation, now_secs).inspect_err(|err| {
                if self.newly_refused(err, revisions) {
                    report_refusal(err);
                    self.events.get().inspect(|events| events.key_entry_refused(&err.to_string()));
                }
            })?;
        let InService { signing, rs256, verifying, id_token_keys, jwks, schedule } = InService::of(
            ring,
            rs256.zip(self.rs256_ring.as_ref().map(|(_, policy)| policy)),
            now_secs,
            &self.rotation,
        )?;
        self.verifier.replace_keys(verifying);
        self.id_token_keys.store(Arc::new(id_token_keys));
        self.jwks.store(Arc::new(jwks));
        self.report_rotation(&signing, Some(self.signing.load().as_ref()));
        self.signing.store(Arc::new(signing));
        if let Some(rs256) = rs256 {
            self.report_rotation(&rs256, self.rs256.load().as_deref());
            self.rs256.store(Some(Arc::new(rs256)));
        }
        self.secrets.replace(refresh.accepted(now_secs), csrf.accepted(now_secs), now_secs);
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = Loaded { revisions, next_change, schedule };
        }
        if let Ok(mut refused) = self.refused.lock() {
            *refused = None;
        }
        Ok(true)
    }

    /// Logs and reports `key` taking over from `previous`, when it is another key.
    fn report_rotation(&self, key: &SigningKey, previous: Option<&SigningKey>) {
        let previous = previous.map(SigningKey::kid).unwrap_or_default();
        if key.kid() != previous {
            tracing::info!(kid = key.kid(), alg = %key.algorithm(), "now signing with a new key");
            self.events.get().inspect(|events| events.key_rotated(key.kid(), previous));
        }
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

    /// The key that signs ID tokens for a client registered for `signing`: `None` when it asks for RS256 and no
    /// RS256 key is kept (`keys.rs256_id_tokens` is off).
    #[must_use]
    pub fn id_token_key(&self, signing: IdTokenSigning) -> Option<Arc<SigningKey>> {
        let key = self.signing_key();
        match signing {
            IdTokenSigning::Rs256 if key.algorithm() != Algorithm::RS256 => self.rs256.load_full(),
            _ => Some(key),
        }
    }

    /// The algorithms ID tokens can be signed with: the signing keys', then RS256 when it is another.
    #[must_use]
    pub fn id_token_algorithms(&self) -> Vec<Algorithm> {
        let mut algorithms = vec![self.signing_key().algorithm()];
        algorithms.extend(self.rs256.load().as_ref().map(|key| key.algorithm()));
        algorithms
    }

    /// The keys ID tokens of this server verify with: the signing keys and the RS256 keys.
    #[must_use]
    pub fn id_token_keys(&self) -> Arc<KeySet> {
        self.id_token_keys.load_full()
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

fn revisions(store: &KeyStore, rs256: Option<&(KeyStore, RotationPolicy)>) -> Result<Revisions, KeyringError> {
    Ok(Revisions {
        keyring: store.revision()?,
        rs256: rs256.map_or(Ok(Revision::Absent), |(rs256, _)| rs256.revision())?,
        secrets: store.secrets_revision()?,
    })
}

/// Loads the keyrings and the server secrets after their scheduled work, logging what the work changed.
fn load_all(
    store: &KeyStore,
    rs256: Option<&(KeyStore, RotationPolicy)>,
    rotation: &RotationPolicy,
    now_secs: i64,
) -> Result<Loading, KeyringError> {
    let (ring, changes) = store.load_maintained(now_secs, rotation)?;
    for change in &changes {
        tracing::info!(?change, "signing keys changed");
    }
    let rs256 = match rs256 {
        Some((rs256, policy)) => {
            let (ring, changes) = rs256.load_maintained(now_secs, policy)?;
            for change in &changes {
                tracing::info!(?change, "RS256 keys of ID tokens changed");
            }
            let next_change = ring.next_change_after(now_secs, policy);
            Some((ring, next_change))
        }
        None => None,
    };
    let (rings, changes) = store.load_secrets(&[REFRESH_SECRET, CSRF_SECRET], now_secs, rotation)?;
    for change in &changes {
        tracing::info!(?change, "server secrets changed");
    }
    let [refresh, csrf]: [SecretRing; 2] =
        rings.try_into().map_err(|_| KeyringError::Store("the server secrets were not all loaded".into()))?;
    let next_change = [
        ring.next_change_after(now_secs, rotation),
        rs256.as_ref().and_then(|(_, next_change)| *next_change),
        refresh.next_change_after(now_secs, rotation),
        csrf.next_change_after(now_secs, rotation),
    ]
    .into_iter()
    .flatten()
    .min();
    Ok(Loading { ring, rs256: rs256.map(|(ring, _)| ring), refresh, csrf, next_change })
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
