//! How many distinct users each authentication method saw: the migration's progress in users, not requests.
//!
//! Exact counting would keep every user id of the period. Instead each id is hashed and only hashes whose low
//! `level` bits are zero are kept; when more than [`KEPT`] are, the level rises and half of them go. The count
//! is then `kept × 2^level`: exact up to [`KEPT`] users, within a few percent above (adaptive sampling, as in
//! Wegman's and Flajolet's distinct-counting sketches), in bounded memory whatever the number of users.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::rollout::Method;

/// Hashes kept per method and period at most.
const KEPT: usize = 16_384;

#[derive(Default)]
struct Sample {
    level: u32,
    hashes: HashSet<u64>,
}

impl Sample {
    fn add(&mut self, hash: u64) {
        if hash.trailing_zeros() < self.level {
            return;
        }
        self.hashes.insert(hash);
        while self.hashes.len() > KEPT {
            self.level += 1;
            let level = self.level;
            self.hashes.retain(|kept| kept.trailing_zeros() >= level);
        }
    }

    fn estimate(&self) -> u64 {
        u64::try_from(self.hashes.len()).unwrap_or(u64::MAX).saturating_mul(1_u64 << self.level.min(63))
    }
}

/// Distinct users per method in the current period, and the estimate of the last complete one.
#[derive(Default)]
pub struct DistinctUsers {
    current: Mutex<[Sample; 2]>,
    last: Mutex<[u64; 2]>,
}

impl std::fmt::Debug for DistinctUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistinctUsers").field("last", &self.last()).finish()
    }
}

fn index(method: Method) -> usize {
    match method {
        Method::Token => 0,
        Method::Session => 1,
    }
}

/// A 64-bit hash of `user_id`, spread evenly (SipHash with fixed keys; each node counts its own users, so the
/// hash need not agree across nodes or releases).
fn hash(user_id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(user_id)
}

impl DistinctUsers {
    /// `user_id` authenticated by `method`.
    pub fn saw(&self, method: Method, user_id: &str) {
        let hash = hash(user_id);
        if let Ok(mut samples) = self.current.lock() {
            if let Some(sample) = samples.get_mut(index(method)) {
                sample.add(hash);
            }
        }
    }

    /// Ends the period: its estimates become [`last`](Self::last), and a new one starts.
    pub fn rotate(&self) {
        let ended = match self.current.lock() {
            Ok(mut samples) => std::mem::take(&mut *samples),
            Err(_) => return,
        };
        if let Ok(mut last) = self.last.lock() {
            *last = [ended[0].estimate(), ended[1].estimate()];
        }
    }

    /// Distinct users of (token, session) in the last complete period.
    #[must_use]
    pub fn last(&self) -> (u64, u64) {
        self.last.lock().map_or((0, 0), |last| {
            let [token, session] = *last;
            (token, session)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_exact_and_repeats_count_once() {
        let users = DistinctUsers::default();
        for round in 0..3 {
            for n in 0..1_000 {
                users.saw(Method::Token, &format!("user-{n}"));
            }
            users.saw(Method::Session, &format!("legacy-{round}"));
        }
        assert_eq!(users.last(), (0, 0), "nothing before the first period ends");
        users.rotate();
        assert_eq!(users.last(), (1_000, 3));
        users.rotate();
        assert_eq!(users.last(), (0, 0), "each period counts afresh");
    }

    #[test]
    fn large_counts_are_estimated_within_a_few_percent_in_bounded_memory() {
        let users = DistinctUsers::default();
        for n in 0..300_000 {
            users.saw(Method::Session, &format!("user-{n}"));
        }
        assert!(users.current.lock().unwrap()[1].hashes.len() <= KEPT);
        users.rotate();
        let (_, estimate) = users.last();
        #[allow(clippy::cast_precision_loss)]
        let error = (estimate as f64 - 300_000.0).abs() / 300_000.0;
        assert!(error < 0.05, "estimated {estimate} for 300000");
    }
}
