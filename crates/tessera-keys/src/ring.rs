//! The signing keys and their phases, derived from two instants per key so that no stored state can drift.
//!
//! A key is `next` until its activation instant (published in the JWKS, not signing), `active` while it is the
//! most recently activated key, `retired` once a successor has activated (verify only), and removable once every
//! token it could have signed has expired.

use serde::Serialize;
use tessera_jose::{Algorithm, Jwks, KeySet, RsaBits, SigningKey};

use crate::KeyringError;

/// When keys rotate and how long they live on after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Algorithm of automatically generated keys.
    pub algorithm: Algorithm,
    /// RSA modulus size of generated RS256 keys.
    pub rsa_bits: RsaBits,
    /// How long a key signs before its successor takes over, in seconds (default 30 days).
    pub rotation_interval: i64,
    /// How long a key is published before it signs, in seconds (default 1 day), so every JWKS cache has it
    /// before the first token signed with it exists.
    pub prepublish: i64,
    /// How long a retired key stays published, in seconds: the longest token lifetime plus clock leeway, so
    /// rotation never breaks a valid token.
    pub retain_after_retirement: i64,
    /// How long a server secret (the refresh-token and CSRF MAC keys) issues tokens before its successor takes
    /// over, in seconds (default 30 days). The previous secret is still accepted for one more interval, so this
    /// must be at least the sessions' idle timeout: a token unused for longer is refused anyway.
    pub secrets_rotation_interval: i64,
    /// How long a new server secret is known to every node before any node issues with it, in seconds (default 2
    /// minutes, two reloads at the longest reload interval), so no node refuses a token another node just issued.
    pub secrets_prepublish: i64,
    /// Whether a second keyring of RS256 keys is kept when `algorithm` is another (default true): OpenID Connect
    /// Core §15.1 requires a provider to be able to sign ID tokens with RS256, and some applications accept
    /// nothing else. It rotates on this same schedule.
    pub rs256_id_tokens: bool,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::EdDSA,
            rsa_bits: RsaBits::Bits2048,
            rotation_interval: 30 * 86_400,
            prepublish: 86_400,
            retain_after_retirement: 86_400 + 30,
            secrets_rotation_interval: 30 * 86_400,
            secrets_prepublish: 120,
            rs256_id_tokens: true,
        }
    }
}

impl RotationPolicy {
    /// `Cache-Control: max-age` for the JWKS: half the pre-publication period (capped at one hour), so a cache that
    /// fetched just before a key was published refetches, with margin, before that key signs anything.
    #[must_use]
    pub fn jwks_max_age(&self) -> i64 {
        (self.prepublish / 2).clamp(0, 3_600)
    }

    /// The policy of the RS256 keyring ([`crate::KeyStore::rs256`]): this schedule with RS256 keys; `None` when
    /// no such keyring is kept (the signing keys are RS256 already, or `rs256_id_tokens` is off).
    #[must_use]
    pub fn rs256(&self) -> Option<Self> {
        (self.rs256_id_tokens && self.algorithm != Algorithm::RS256)
            .then(|| Self { algorithm: Algorithm::RS256, ..self.clone() })
    }
}

/// Where a key is in its life at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Published, not yet signing.
    Next,
    /// Signing.
    Active,
    /// Verifying only, since its successor activated.
    Retired,
    /// Past retention: no valid token can carry it; dropped on the next change.
    Expired,
}

/// One signing key with its schedule.
#[derive(Debug)]
pub struct ManagedKey {
    /// The key.
    pub key: SigningKey,
    /// When it was created (seconds since the epoch).
    pub created_at: i64,
    /// When it starts signing (seconds since the epoch).
    pub activates_at: i64,
}

/// A key's schedule at one instant, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: Algorithm,
    /// Phase now.
    pub phase: Phase,
    /// Created (seconds since the epoch).
    pub created_at: i64,
    /// Starts or started signing.
    pub activates_at: i64,
    /// Stopped signing: when its successor activated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<i64>,
}

/// How a new key starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// After the pre-publication period (at once on an empty keyring, where no cache can be stale).
    Scheduled,
    /// Now. For emergencies (a compromised key): caches that have not refetched the JWKS will refuse the new
    /// tokens until they do.
    Immediate,
}

/// What a change did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A key was created.
    Created {
        /// Its id.
        kid: String,
        /// When it signs.
        activates_at: i64,
    },
    /// A scheduled key was brought forward to sign now.
    ActivatedNow {
        /// Its id.
        kid: String,
    },
    /// A key past retention was dropped.
    Removed {
        /// Its id.
        kid: String,
    },
}

/// All signing keys of one Tessera deployment.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<ManagedKey>,
}

impl KeyRing {
    /// A keyring holding `keys`, in any order.
    #[must_use]
    pub fn new(mut keys: Vec<ManagedKey>) -> Self {
        sort(&mut keys);
        Self { keys }
    }

    /// The keys, oldest activation first.
    #[must_use]
    pub fn keys(&self) -> &[ManagedKey] {
        &self.keys
    }

    /// Index of the key signing at `now`: the latest one whose activation has come.
    fn active_index(&self, now: i64) -> Option<usize> {
        self.keys.iter().rposition(|key| key.activates_at <= now)
    }

    /// The key that signs at `now`.
    ///
    /// # Errors
    /// [`KeyringError::NoActiveKey`] when none has activated.
    pub fn active(&self, now: i64) -> Result<&SigningKey, KeyringError> {
        self.active_index(now).and_then(|i| self.keys.get(i)).map(|k| &k.key).ok_or(KeyringError::NoActiveKey)
    }

    /// Takes the key that signs at `now` out of the keyring.
    ///
    /// # Errors
    /// [`KeyringError::NoActiveKey`] when none has activated.
    pub fn into_active(mut self, now: i64) -> Result<SigningKey, KeyringError> {
        let index = self.active_index(now).ok_or(KeyringError::NoActiveKey)?;
        Ok(self.keys.swap_remove(index).key)
    }

    /// Every key's status at `now`.
    #[must_use]
    pub fn status(&self, now: i64, policy: &RotationPolicy) -> Vec<KeyStatus> {
        let active = self.active_index(now);
        self.keys
            .iter()
            .enumerate()
            .map(|(i, managed)| {
                let retired_at = match active {
                    Some(a) if i < a => self.keys.get(i + 1).map(|successor| successor.activates_at),
                    _ => None,
                };
                let removed_at = retired_at.map(|at| at.saturating_add(policy.retain_after_retirement));
                let phase = match (active, removed_at) {
                    (_, Some(removed)) if now >= removed => Phase::Expired,
                    (_, Some(_)) => Phase::Retired,
                    (Some(a), None) if a == i => Phase::Active,
                    _ => Phase::Next,
                };
                KeyStatus {
                    kid: managed.key.kid().to_owned(),
                    alg: managed.key.algorithm(),
                    phase,
                    created_at: managed.created_at,
                    activates_at: managed.activates_at,
                    retired_at,
                    removed_at,
                }
            })
            .collect()
    }

    /// The keys verifiers must trust at `now`: next, active and retired (not expired).
    #[must_use]
    pub fn verifying_keys(&self, now: i64, policy: &RotationPolicy) -> KeySet {
        let published = self.status(now, policy).into_iter().zip(&self.keys).filter(|(s, _)| s.phase != Phase::Expired);
        let mut set = KeySet::new();
        for (_, managed) in published {
            // Kids are thumbprints of distinct keys, so a duplicate cannot arise from keys this crate made.
            let _ = set.insert(managed.key.verifying_key().clone());
        }
        set
    }

    /// The public JWKS at `now`.
    #[must_use]
    pub fn jwks(&self, now: i64, policy: &RotationPolicy) -> Jwks {
        self.verifying_keys(now, policy).to_public_jwks()
    }

    /// Adds a key. A scheduled key signs after the pre-publication period (at once on an empty keyring); an
    /// immediate one at once. Only one key may be pending at a time.
    ///
    /// # Errors
    /// [`KeyringError::RotationPending`] when a scheduled key exists and `activation` is not immediate.
    pub fn add(
        &mut self,
        key: SigningKey,
        now: i64,
        policy: &RotationPolicy,
        activation: Activation,
    ) -> Result<Change, KeyringError> {
        if let Some(pending) = self.keys.iter().find(|k| k.activates_at > now) {
            if activation == Activation::Scheduled {
                return Err(KeyringError::RotationPending {
                    kid: pending.key.kid().to_owned(),
                    activates_at: pending.activates_at,
                });
            }
        }
        let activates_at = match activation {
            Activation::Scheduled if self.active_index(now).is_some() => now.saturating_add(policy.prepublish),
            _ => now,
        };
        let change = Change::Created { kid: key.kid().to_owned(), activates_at };
        // An immediate key supersedes any pending one, which would otherwise take over later.
        if activation == Activation::Immediate {
            self.keys.retain(|k| k.activates_at <= now);
        }
        self.keys.push(ManagedKey { key, created_at: now, activates_at });
        sort(&mut self.keys);
        Ok(change)
    }

    /// Rotates on demand: with a key pending, `Immediate` brings it forward; otherwise a new key of the policy's
    /// algorithm is created, scheduled or immediate.
    ///
    /// # Errors
    /// [`KeyringError::RotationPending`] for a scheduled rotation while one is pending; key generation errors.
    pub fn rotate(
        &mut self,
        now: i64,
        policy: &RotationPolicy,
        activation: Activation,
    ) -> Result<Change, KeyringError> {
        if activation == Activation::Immediate {
            if let Some(index) = self.keys.iter().position(|k| k.activates_at > now) {
                // Moved behind every key already active, so it wins even against one activated this same second.
                let mut pending = self.keys.remove(index);
                pending.activates_at = now;
                let kid = pending.key.kid().to_owned();
                self.keys.push(pending);
                sort(&mut self.keys);
                return Ok(Change::ActivatedNow { kid });
            }
        }
        let key = SigningKey::generate(policy.algorithm, policy.rsa_bits)?;
        self.add(key, now, policy, activation)
    }

    /// The next instant after `now` at which a phase changes or scheduled work falls due (`None`: nothing
    /// scheduled), so a server can re-read the keyring exactly then.
    #[must_use]
    pub fn next_change_after(&self, now: i64, policy: &RotationPolicy) -> Option<i64> {
        let statuses = self.status(now, policy);
        let pending = statuses.iter().any(|s| s.phase == Phase::Next);
        let phase_changes = statuses.iter().flat_map(|s| [Some(s.activates_at), s.removed_at]).flatten();
        let successor_due = self.active_index(now).and_then(|i| self.keys.get(i)).filter(|_| !pending).map(|active| {
            active.activates_at.saturating_add(policy.rotation_interval).saturating_sub(policy.prepublish)
        });
        phase_changes.chain(successor_due).filter(|at| *at > now).min()
    }

    /// When the key signing at `now` hands over: its published successor's activation, or else the end of its
    /// rotation interval (`None` on an empty keyring). Past it with no new key signing, rotation is overdue.
    #[must_use]
    pub fn rotation_due_at(&self, now: i64, policy: &RotationPolicy) -> Option<i64> {
        let active = self.active_index(now)?;
        let successor = self.keys.get(active + 1).map(|next| next.activates_at);
        let scheduled = self.keys.get(active)?.activates_at.saturating_add(policy.rotation_interval);
        Some(successor.map_or(scheduled, |at| at.min(scheduled)))
    }

    /// Whether [`KeyRing::maintain`] would change anything at `now`.
    #[must_use]
    pub fn maintenance_due(&self, now: i64, policy: &RotationPolicy) -> bool {
        let statuses = self.status(now, policy);
        let pending = statuses.iter().any(|s| s.phase == Phase::Next);
        let successor_due = match self.active_index(now).and_then(|i| self.keys.get(i)) {
            None => true,
            Some(active) => {
                let successor_at = active.activates_at.saturating_add(policy.rotation_interval);
                now >= successor_at.saturating_sub(policy.prepublish)
            }
        };
        statuses.iter().any(|s| s.phase == Phase::Expired) || (!pending && successor_due)
    }

    /// The scheduled work: a first key on an empty keyring, a successor `prepublish` before the active key's
    /// interval ends, and removal of keys past retention. Idempotent; call it at start and periodically.
    ///
    /// # Errors
    /// Key generation errors.
    pub fn maintain(&mut self, now: i64, policy: &RotationPolicy) -> Result<Vec<Change>, KeyringError> {
        let mut changes = Vec::new();
        let expired: Vec<String> =
            self.status(now, policy).into_iter().filter(|s| s.phase == Phase::Expired).map(|s| s.kid).collect();
        self.keys.retain(|k| !expired.iter().any(|kid| kid == k.key.kid()));
        changes.extend(expired.into_iter().map(|kid| Change::Removed { kid }));

        let pending = self.keys.iter().any(|k| k.activates_at > now);
        match self.active_index(now).and_then(|i| self.keys.get(i)) {
            None if !pending => changes.push(self.rotate(now, policy, Activation::Scheduled)?),
            Some(active) if !pending => {
                let successor_at = active.activates_at.saturating_add(policy.rotation_interval);
                if now >= successor_at.saturating_sub(policy.prepublish) {
                    let key = SigningKey::generate(policy.algorithm, policy.rsa_bits)?;
                    let activates_at = successor_at.max(now.saturating_add(policy.prepublish));
                    changes.push(Change::Created { kid: key.kid().to_owned(), activates_at });
                    self.keys.push(ManagedKey { key, created_at: now, activates_at });
                    sort(&mut self.keys);
                }
            }
            _ => {}
        }
        Ok(changes)
    }
}

/// Orders keys by activation. The sort is stable: keys activating in the same second keep the order in which they
/// were activated, so the latest one signs (the keyring file stores keys in this order).
fn sort(keys: &mut [ManagedKey]) {
    keys.sort_by_key(|key| key.activates_at);
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn policy() -> RotationPolicy {
        RotationPolicy { retain_after_retirement: DAY, ..RotationPolicy::default() }
    }

    fn phases(ring: &KeyRing, now: i64) -> Vec<Phase> {
        ring.status(now, &policy()).into_iter().map(|s| s.phase).collect()
    }

    #[test]
    fn first_key_is_active_at_once() {
        let mut ring = KeyRing::default();
        let changes = ring.maintain(0, &policy()).unwrap();
        assert!(matches!(changes.as_slice(), [Change::Created { activates_at: 0, .. }]));
        assert_eq!(phases(&ring, 0), [Phase::Active]);
        assert!(ring.maintain(1, &policy()).unwrap().is_empty(), "maintain is idempotent");
    }

    #[test]
    fn scheduled_rotation_publishes_before_signing_and_retires_after_expiry() {
        let p = policy();
        let mut ring = KeyRing::default();
        ring.maintain(0, &p).unwrap();
        let first = ring.active(0).unwrap().kid().to_owned();

        // Nothing happens until one pre-publication period before the interval ends.
        assert!(ring.maintain(29 * DAY - 1, &p).unwrap().is_empty());
        let changes = ring.maintain(29 * DAY, &p).unwrap();
        assert!(matches!(changes.as_slice(), [Change::Created { activates_at, .. }] if *activates_at == 30 * DAY));
        assert_eq!(phases(&ring, 29 * DAY), [Phase::Active, Phase::Next]);
        // Published but not signing: the JWKS has both, the old key still signs.
        assert_eq!(ring.jwks(29 * DAY, &p).keys.len(), 2);
        assert_eq!(ring.active(30 * DAY - 1).unwrap().kid(), first);

        // At the interval the successor signs and the first key only verifies, until its tokens have expired.
        assert_ne!(ring.active(30 * DAY).unwrap().kid(), first);
        assert_eq!(phases(&ring, 30 * DAY), [Phase::Retired, Phase::Active]);
        assert!(ring.verifying_keys(31 * DAY - 1, &p).get(&first).is_some());
        assert_eq!(phases(&ring, 31 * DAY), [Phase::Expired, Phase::Active]);
        assert!(ring.verifying_keys(31 * DAY, &p).get(&first).is_none());
        let changes = ring.maintain(31 * DAY, &p).unwrap();
        assert_eq!(changes, [Change::Removed { kid: first }]);
        assert_eq!(ring.keys().len(), 1);
    }

    #[test]
    fn late_maintenance_still_prepublishes() {
        // A server that was down past the interval must not sign with a key no cache has seen.
        let p = policy();
        let mut ring = KeyRing::default();
        ring.maintain(0, &p).unwrap();
        let changes = ring.maintain(45 * DAY, &p).unwrap();
        assert!(matches!(changes.as_slice(), [Change::Created { activates_at, .. }] if *activates_at == 46 * DAY));
    }

    #[test]
    fn rotation_is_due_at_the_interval_and_overdue_until_a_new_key_signs() {
        let p = policy();
        let mut ring = KeyRing::default();
        assert_eq!(ring.rotation_due_at(0, &p), None);
        ring.maintain(0, &p).unwrap();
        assert_eq!(ring.rotation_due_at(DAY, &p), Some(30 * DAY));
        // Maintenance missed the interval: still due at the old instant, now in the past, until the late key signs.
        ring.maintain(45 * DAY, &p).unwrap();
        assert_eq!(ring.rotation_due_at(45 * DAY, &p), Some(30 * DAY));
        assert_eq!(ring.rotation_due_at(46 * DAY, &p), Some(76 * DAY));
    }

    #[test]
    fn on_demand_rotation_is_scheduled_unless_immediate() {
        let p = policy();
        let mut ring = KeyRing::default();
        ring.maintain(0, &p).unwrap();
        let first = ring.active(10).unwrap().kid().to_owned();
        let Change::Created { kid: next, activates_at } = ring.rotate(10, &p, Activation::Scheduled).unwrap() else {
            panic!("expected a created key")
        };
        assert_eq!(activates_at, 10 + DAY);
        assert_eq!(ring.active(11).unwrap().kid(), first);
        assert!(matches!(ring.rotate(11, &p, Activation::Scheduled), Err(KeyringError::RotationPending { .. })));
        assert_eq!(ring.rotate(12, &p, Activation::Immediate).unwrap(), Change::ActivatedNow { kid: next.clone() });
        assert_eq!(ring.active(12).unwrap().kid(), next);
        assert_eq!(phases(&ring, 12), [Phase::Retired, Phase::Active]);
    }

    #[test]
    fn the_latest_activation_wins_within_one_second() {
        let p = policy();
        for _ in 0..8 {
            let mut ring = KeyRing::default();
            ring.maintain(5, &p).unwrap();
            let Change::Created { kid: next, .. } = ring.rotate(5, &p, Activation::Scheduled).unwrap() else {
                panic!("expected a created key")
            };
            ring.rotate(5, &p, Activation::Immediate).unwrap();
            assert_eq!(ring.active(5).unwrap().kid(), next);
            let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
            let newest = key.kid().to_owned();
            ring.add(key, 5, &p, Activation::Immediate).unwrap();
            assert_eq!(ring.active(5).unwrap().kid(), newest);
            assert_eq!(phases(&ring, 5), [Phase::Retired, Phase::Retired, Phase::Active]);
        }
    }

    #[test]
    fn immediate_add_replaces_a_pending_key() {
        let p = policy();
        let mut ring = KeyRing::default();
        ring.maintain(0, &p).unwrap();
        ring.rotate(1, &p, Activation::Scheduled).unwrap();
        let key = SigningKey::generate(Algorithm::ES256, RsaBits::Bits2048).unwrap();
        let kid = key.kid().to_owned();
        ring.add(key, 2, &p, Activation::Immediate).unwrap();
        assert_eq!(ring.active(2).unwrap().kid(), kid);
        assert_eq!(phases(&ring, 2), [Phase::Retired, Phase::Active]);
        assert_eq!(ring.active(10 * DAY).unwrap().kid(), kid, "the dropped pending key never takes over");
    }

    #[test]
    fn next_change_is_the_earliest_scheduled_instant() {
        let p = policy();
        let mut ring = KeyRing::default();
        ring.maintain(0, &p).unwrap();
        assert_eq!(ring.next_change_after(0, &p), Some(29 * DAY), "successor due");
        ring.maintain(29 * DAY, &p).unwrap();
        assert_eq!(ring.next_change_after(29 * DAY, &p), Some(30 * DAY), "successor activates");
        assert_eq!(ring.next_change_after(30 * DAY, &p), Some(31 * DAY), "predecessor leaves");
    }

    #[test]
    fn rs256_keys_are_kept_beside_other_algorithms_unless_turned_off() {
        let eddsa = policy();
        let rs256 = eddsa.rs256().unwrap();
        assert_eq!(rs256.algorithm, Algorithm::RS256);
        assert_eq!(rs256.rotation_interval, eddsa.rotation_interval, "the same schedule");
        assert!(RotationPolicy { algorithm: Algorithm::ES256, ..policy() }.rs256().is_some());
        assert!(RotationPolicy { algorithm: Algorithm::RS256, ..policy() }.rs256().is_none(), "RS256 signs already");
        assert!(RotationPolicy { rs256_id_tokens: false, ..policy() }.rs256().is_none());
    }

    #[test]
    fn jwks_cache_lifetime_is_tied_to_prepublication() {
        assert_eq!(RotationPolicy { prepublish: 600, ..policy() }.jwks_max_age(), 300);
        assert_eq!(policy().jwks_max_age(), 3_600);
    }
}
