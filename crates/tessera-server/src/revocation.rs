//! The in-process revocation index every verification consults: revoked sessions and per-subject "not before"
//! instants, fed from the store's revocation log. No network on the hot path.
//!
//! Merging is conflict-free: a revoked session stays revoked, and a subject's instant only moves forward, so the
//! order in which updates arrive never matters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

use tessera_store::{Millis, Revocation, RevocationEntry};

/// Revoked sessions and subjects, with the log position applied so far.
#[derive(Debug, Default)]
pub struct RevocationIndex {
    inner: RwLock<Entries>,
    applied_through: AtomicI64,
    last_sync_ms: AtomicI64,
}

#[derive(Debug, Default)]
struct Entries {
    sessions: HashSet<String>,
    subjects: HashMap<String, Millis>,
}

impl RevocationIndex {
    /// Applies log entries (in any order, any number of times).
    pub fn apply(&self, entries: &[RevocationEntry]) {
        if entries.is_empty() {
            return;
        }
        let Ok(mut inner) = self.inner.write() else { return };
        for entry in entries {
            match &entry.revocation {
                Revocation::Session { sid } => {
                    inner.sessions.insert(sid.clone());
                }
                Revocation::Subject { sub, not_before } => {
                    let instant = inner.subjects.entry(sub.clone()).or_insert(*not_before);
                    *instant = (*instant).max(*not_before);
                }
            }
            self.applied_through.fetch_max(entry.id, Ordering::SeqCst);
        }
    }

    /// Applies one revocation this node made itself, before it answers, so its own next request already sees it.
    pub fn apply_local(&self, revocation: Revocation) {
        self.apply(&[RevocationEntry { id: 0, at: 0, revocation }]);
    }

    /// Whether a token of session `sid` (if any) for subject `sub` issued at `iat_secs` is revoked.
    #[must_use]
    pub fn is_revoked(&self, sid: Option<&str>, sub: &str, iat_secs: i64) -> bool {
        let Ok(inner) = self.inner.read() else { return true };
        if sid.is_some_and(|sid| inner.sessions.contains(sid)) {
            return true;
        }
        // Tokens carry whole seconds: a token from the same second as the instant is treated as before it.
        inner.subjects.get(sub).is_some_and(|not_before| iat_secs.saturating_mul(1000) <= *not_before)
    }

    /// The last log position applied.
    #[must_use]
    pub fn applied_through(&self) -> i64 {
        self.applied_through.load(Ordering::SeqCst)
    }

    /// Records a successful sync with the store at `now`.
    pub fn mark_synced(&self, now: Millis) {
        self.last_sync_ms.store(now, Ordering::SeqCst);
    }

    /// When the index last synced with the store.
    #[must_use]
    pub fn last_sync_ms(&self) -> Millis {
        self.last_sync_ms.load(Ordering::SeqCst)
    }

    /// Entries held, for metrics.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.read().map_or(0, |inner| inner.sessions.len() + inner.subjects.len())
    }

    /// Whether nothing is revoked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, revocation: Revocation) -> RevocationEntry {
        RevocationEntry { id, at: 0, revocation }
    }

    #[test]
    fn merging_is_order_independent() {
        let a = RevocationIndex::default();
        let b = RevocationIndex::default();
        let updates = [
            entry(1, Revocation::Subject { sub: "u".into(), not_before: 5_000 }),
            entry(2, Revocation::Session { sid: "s".into() }),
            entry(3, Revocation::Subject { sub: "u".into(), not_before: 3_000 }),
        ];
        a.apply(&updates);
        for update in updates.iter().rev() {
            b.apply(std::slice::from_ref(update));
        }
        for index in [&a, &b] {
            assert!(index.is_revoked(Some("s"), "x", 100));
            assert!(index.is_revoked(None, "u", 5), "iat 5 s is at the 5,000 ms instant");
            assert!(!index.is_revoked(None, "u", 6));
            assert!(!index.is_revoked(Some("t"), "v", 0));
            assert_eq!(index.applied_through(), 3);
        }
    }
}
