//! Server secrets (the refresh-token and CSRF MAC keys) and their rotation. Like signing keys, each secret has
//! versions, each with a one-byte id that tokens carry and an activation instant: the latest activated version
//! issues, the one before it is still accepted (so no session is lost by a rotation), older ones are dropped.

use crate::{Activation, Change, KeyringError, RotationPolicy};

/// One version of a server secret.
pub struct SecretVersion {
    /// Its id, carried by every token made with it. 0 is the secret as stored before secrets rotated.
    pub id: u8,
    /// When it was created (seconds since the epoch).
    pub created_at: i64,
    /// When it starts issuing (seconds since the epoch).
    pub activates_at: i64,
    pub(crate) value: [u8; 32],
}

impl SecretVersion {
    /// A version with a given value: for tests of code that uses secrets, and for the keyring itself.
    #[must_use]
    pub fn new(id: u8, created_at: i64, activates_at: i64, value: [u8; 32]) -> Self {
        Self { id, created_at, activates_at, value }
    }

    /// The 256-bit secret.
    #[must_use]
    pub fn value(&self) -> &[u8; 32] {
        &self.value
    }
}

impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .finish_non_exhaustive()
    }
}

/// Every kept version of one server secret, oldest activation first.
#[derive(Debug)]
pub struct SecretRing {
    name: String,
    versions: Vec<SecretVersion>,
}

impl SecretRing {
    pub(crate) fn new(name: &str, mut versions: Vec<SecretVersion>) -> Self {
        versions.sort_by_key(|version| version.activates_at);
        Self { name: name.to_owned(), versions }
    }

    /// The secret's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every kept version, oldest activation first (including one scheduled to activate later).
    #[must_use]
    pub fn versions(&self) -> &[SecretVersion] {
        &self.versions
    }

    fn active_index(&self, now: i64) -> Option<usize> {
        self.versions.iter().rposition(|version| version.activates_at <= now)
    }

    /// The version that issued (or issues) tokens at instant `at`: the latest activated by then. For an instant
    /// before every kept version, the oldest kept one, which is still accepted.
    #[must_use]
    pub fn issuing_at(&self, at: i64) -> Option<&SecretVersion> {
        self.active_index(at).and_then(|i| self.versions.get(i)).or_else(|| self.versions.first())
    }

    /// The versions whose tokens are accepted at `now`: the one scheduled next (so a node that already issues
    /// with it is understood), the active one and its predecessor.
    #[must_use]
    pub fn accepted(&self, now: i64) -> &[SecretVersion] {
        let from = self.active_index(now).map_or(0, |active| active.saturating_sub(1));
        self.versions.get(from..).unwrap_or_default()
    }

    fn pending(&self, now: i64) -> Option<&SecretVersion> {
        self.versions.iter().find(|version| version.activates_at > now)
    }

    /// When a successor of the active version is due to be created (`None`: one is pending, or none is active).
    fn successor_due_at(&self, now: i64, policy: &RotationPolicy) -> Option<i64> {
        if self.pending(now).is_some() {
            return None;
        }
        let active = self.active_index(now).and_then(|i| self.versions.get(i))?;
        Some(
            active
                .activates_at
                .saturating_add(policy.secrets_rotation_interval)
                .saturating_sub(policy.secrets_prepublish),
        )
    }

    /// The next instant after `now` at which a version activates or a successor falls due.
    #[must_use]
    pub fn next_change_after(&self, now: i64, policy: &RotationPolicy) -> Option<i64> {
        let activations = self.versions.iter().map(|version| version.activates_at);
        activations.chain(self.successor_due_at(now, policy)).filter(|at| *at > now).min()
    }

    /// Whether [`SecretRing::maintain`] would change anything at `now`.
    pub(crate) fn maintenance_due(&self, now: i64, policy: &RotationPolicy) -> bool {
        self.accepted(now).len() < self.versions.len()
            || self.versions.is_empty()
            || self.successor_due_at(now, policy).is_some_and(|due| now >= due)
    }

    /// The scheduled work: a first version on a new secret, a successor `secrets_prepublish` before the active
    /// version's interval ends, and removal of versions older than the active one's predecessor.
    pub(crate) fn maintain(&mut self, now: i64, policy: &RotationPolicy) -> Result<Vec<Change>, KeyringError> {
        let mut changes = self.drop_unaccepted(now);
        if self.versions.is_empty() {
            changes.push(self.create(now, now)?);
        } else if let Some(due) = self.successor_due_at(now, policy).filter(|due| now >= *due) {
            let activates_at =
                due.saturating_add(policy.secrets_prepublish).max(now.saturating_add(policy.secrets_prepublish));
            changes.push(self.create(now, activates_at)?);
        }
        Ok(changes)
    }

    /// Rotates on demand: a successor known at once and issuing after `secrets_prepublish`; with `Immediate`, one
    /// issuing now (or the pending one brought forward). Versions that are no longer accepted are dropped.
    ///
    /// # Errors
    /// [`KeyringError::RotationPending`] for a scheduled rotation while one is pending; a CSPRNG failure.
    pub(crate) fn rotate(
        &mut self,
        now: i64,
        policy: &RotationPolicy,
        activation: Activation,
    ) -> Result<Vec<Change>, KeyringError> {
        let change = match (self.versions.iter().position(|version| version.activates_at > now), activation) {
            (Some(index), Activation::Immediate) => {
                // Moved behind every version already active, so it wins against one activated this same second.
                let mut pending = self.versions.remove(index);
                pending.activates_at = now;
                let kid = self.label(pending.id);
                self.versions.push(pending);
                self.versions.sort_by_key(|version| version.activates_at);
                Change::ActivatedNow { kid }
            }
            (Some(index), Activation::Scheduled) => {
                let pending = self.versions.get(index).ok_or(KeyringError::NoActiveKey)?;
                return Err(KeyringError::RotationPending {
                    kid: self.label(pending.id),
                    activates_at: pending.activates_at,
                });
            }
            (None, Activation::Immediate) => self.create(now, now)?,
            (None, Activation::Scheduled) if self.active_index(now).is_none() => self.create(now, now)?,
            (None, Activation::Scheduled) => self.create(now, now.saturating_add(policy.secrets_prepublish))?,
        };
        let mut changes = vec![change];
        changes.extend(self.drop_unaccepted(now));
        Ok(changes)
    }

    fn drop_unaccepted(&mut self, now: i64) -> Vec<Change> {
        let keep_from = self.versions.len() - self.accepted(now).len();
        let dropped: Vec<u8> = self.versions.drain(..keep_from).map(|version| version.id).collect();
        dropped.into_iter().map(|id| Change::Removed { kid: self.label(id) }).collect()
    }

    #[allow(clippy::disallowed_methods, reason = "a secrets module: secret values come from the OS CSPRNG")]
    fn create(&mut self, now: i64, activates_at: i64) -> Result<Change, KeyringError> {
        let mut value = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut value)
            .map_err(|_| tessera_jose::KeyError::Crypto)?;
        let id = self.new_id();
        self.versions.push(SecretVersion { id, created_at: now, activates_at, value });
        self.versions.sort_by_key(|version| version.activates_at);
        Ok(Change::Created { kid: self.label(id), activates_at })
    }

    /// The id after the newest version's, skipping 0 (the pre-rotation secret) and ids still kept: ids wrap after
    /// 255, and at most three versions are ever kept, so an id names one version.
    fn new_id(&self) -> u8 {
        let newest = self.versions.iter().max_by_key(|version| (version.created_at, version.activates_at));
        let mut id = newest.map_or(0, |version| version.id);
        loop {
            id = id.wrapping_add(1);
            if id != 0 && self.versions.iter().all(|version| version.id != id) {
                return id;
            }
        }
    }

    /// How a version is named in messages: `refresh-token-mac#3`.
    fn label(&self, id: u8) -> String {
        format!("{}#{id}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn policy() -> RotationPolicy {
        RotationPolicy { secrets_rotation_interval: 30 * DAY, secrets_prepublish: 120, ..RotationPolicy::default() }
    }

    fn ids(versions: &[SecretVersion]) -> Vec<u8> {
        versions.iter().map(|version| version.id).collect()
    }

    #[test]
    fn a_secret_rotates_on_schedule_and_its_predecessor_stays_accepted_for_one_interval() {
        let p = policy();
        let mut ring = SecretRing::new("refresh-token-mac", Vec::new());
        assert!(ring.maintenance_due(0, &p));
        ring.maintain(0, &p).unwrap();
        assert_eq!(ids(ring.accepted(0)), [1]);
        assert!(!ring.maintenance_due(30 * DAY - 121, &p));
        assert_eq!(ring.next_change_after(0, &p), Some(30 * DAY - 120));

        // The successor is known before it issues: tokens a faster node makes with it are understood everywhere.
        let changes = ring.maintain(30 * DAY - 120, &p).unwrap();
        assert!(matches!(changes.as_slice(), [Change::Created { activates_at, .. }] if *activates_at == 30 * DAY));
        assert_eq!(ring.issuing_at(30 * DAY - 1).unwrap().id, 1);
        assert_eq!(ring.issuing_at(30 * DAY).unwrap().id, 2);
        assert_eq!(ids(ring.accepted(30 * DAY - 1)), [1, 2]);
        assert_eq!(ids(ring.accepted(30 * DAY)), [1, 2], "the predecessor is still accepted");

        // A third version drops the first, and only then.
        ring.maintain(60 * DAY - 120, &p).unwrap();
        assert_eq!(ids(ring.accepted(60 * DAY - 1)), [1, 2, 3]);
        assert_eq!(ids(ring.accepted(60 * DAY)), [2, 3]);
        let changes = ring.maintain(60 * DAY, &p).unwrap();
        assert_eq!(changes, [Change::Removed { kid: "refresh-token-mac#1".into() }]);
        assert_eq!(ids(ring.versions()), [2, 3]);
    }

    #[test]
    fn on_demand_rotation_is_scheduled_unless_immediate() {
        let p = policy();
        let mut ring = SecretRing::new("csrf-mac", Vec::new());
        ring.maintain(0, &p).unwrap();
        let changes = ring.rotate(10, &p, Activation::Scheduled).unwrap();
        assert!(matches!(changes.as_slice(), [Change::Created { activates_at: 130, .. }]));
        assert!(matches!(ring.rotate(11, &p, Activation::Scheduled), Err(KeyringError::RotationPending { .. })));
        let changes = ring.rotate(12, &p, Activation::Immediate).unwrap();
        assert_eq!(changes, [Change::ActivatedNow { kid: "csrf-mac#2".into() }]);
        assert_eq!(ring.issuing_at(12).unwrap().id, 2);
        // A second immediate rotation makes a third version, and the first is no longer accepted.
        let changes = ring.rotate(13, &p, Activation::Immediate).unwrap();
        assert!(matches!(changes.as_slice(), [Change::Created { .. }, Change::Removed { .. }]), "{changes:?}");
        assert_eq!(ids(ring.accepted(13)), [2, 3]);
    }

    #[test]
    fn version_ids_wrap_without_reusing_zero_or_a_kept_id() {
        let p = policy();
        let mut ring = SecretRing::new("refresh-token-mac", Vec::new());
        ring.maintain(0, &p).unwrap();
        for now in 1..300 {
            ring.rotate(now, &p, Activation::Immediate).unwrap();
            let kept = ids(ring.versions());
            assert!(!kept.contains(&0), "{kept:?}");
            assert!(kept.windows(2).all(|pair| pair[0] != pair[1]), "{kept:?}");
        }
        assert_eq!(ids(ring.versions()), [44, 45], "the 300th version after 255 ids and 45 more");
    }

    #[test]
    fn an_instant_before_every_kept_version_uses_the_oldest_kept_one() {
        let p = policy();
        let mut ring = SecretRing::new("refresh-token-mac", Vec::new());
        ring.maintain(100, &p).unwrap();
        assert_eq!(ring.issuing_at(5).unwrap().id, 1);
    }
}
