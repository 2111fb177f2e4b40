//! Failed logins, counted per (user, address) and per user, so that nobody can lock a user out by failing in
//! their name: an address that keeps failing for a user is refused for that user, and a user failed for from many
//! addresses is refused only from those, never from an address that has not failed for them.
//!
//! The budgets are GCRA, as `governor` keeps them, but by hand: a login must be refused before its password is
//! checked, while only a check that fails may spend from the budget, and `governor` cannot look at a budget
//! without spending from it. So an attempt reserves one failure up front (concurrent attempts cannot all slip
//! through) and gives it back unless its password turns out wrong.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The budgets are per minute; an address "failed recently" for a user when it did within the last minute.
const MINUTE: Duration = Duration::from_secs(60);

/// A per-minute budget: the instant it is full again moves on by one interval (a minute / budget) per spending,
/// and a spending is refused while that instant lies further ahead than a minute less one interval.
#[derive(Clone, Copy)]
struct Budget {
    interval: Duration,
    slack: Duration,
}

impl Budget {
    fn per_minute(n: u32) -> Self {
        let interval = MINUTE / n.max(1);
        Self { interval, slack: MINUTE.saturating_sub(interval) }
    }

    /// How long until one more spending fits, if it does not now.
    fn wait(self, full_again: Instant, now: Instant) -> Option<Duration> {
        full_again.saturating_duration_since(now).checked_sub(self.slack).filter(|wait| !wait.is_zero())
    }

    fn spend(self, full_again: &mut Instant, now: Instant) {
        *full_again = (*full_again).max(now) + self.interval;
    }

    fn give_back(self, full_again: &mut Instant, now: Instant) {
        *full_again = full_again.checked_sub(self.interval).map_or(now, |earlier| earlier.max(now));
    }
}

/// What is known of one address's failures for one user.
struct AddressRecord {
    full_again: Instant,
    last_failure: Option<Instant>,
    /// The last attempt was refused: a refusal now continues a lock rather than starting one.
    refused: bool,
}

/// Why a login may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// How long to wait.
    pub(crate) wait: Duration,
    /// The failure limit (its setting's name) that refuses, when this is the first refusal since the address was
    /// last let through for this user: the limit just locked them out (a security event).
    pub(crate) locked_by: Option<&'static str>,
}

impl Refused {
    /// Whole seconds to wait, at least 1 (for `Retry-After`).
    pub(crate) fn retry_after_secs(self) -> u64 {
        (self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0)).max(1)
    }
}

#[derive(Default)]
struct Records {
    by_user_and_address: HashMap<(String, IpAddr), AddressRecord>,
    by_user: HashMap<String, Instant>,
}

/// Failed logins (see the module documentation). Users are keys as given (the caller normalises them), addresses
/// too (the caller groups an IPv6 /64).
pub(crate) struct LoginFailures {
    per_user_and_address: Budget,
    per_user: Budget,
    records: Mutex<Records>,
}

/// A login under way, holding one reserved failure: given back when dropped, unless [`Attempt::failed`] says the
/// password was wrong. A login that ends any other way (a store error, a busy server, a client that went away)
/// tested no password, so it costs nothing.
pub(crate) struct Attempt<'a> {
    failures: &'a LoginFailures,
    user: String,
    address: IpAddr,
    failed: bool,
}

impl Attempt<'_> {
    /// The password was wrong (or the user unknown or disabled): the reserved failure stays spent, and the
    /// address counts as having failed for this user.
    pub(crate) fn failed(mut self) {
        self.failed = true;
        let mut records = self.failures.lock();
        if let Some(record) = records.by_user_and_address.get_mut(&(self.user.clone(), self.address)) {
            record.last_failure = Some(Instant::now());
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.failed {
            self.failures.give_back(&self.user, self.address, Instant::now());
        }
    }
}

impl LoginFailures {
    pub(crate) fn new(per_user_and_address: u32, per_user: u32) -> Self {
        Self {
            per_user_and_address: Budget::per_minute(per_user_and_address),
            per_user: Budget::per_minute(per_user),
            records: Mutex::new(Records::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // The records stay consistent whatever panicked while holding them: each change is a single assignment.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A login for `user` from `address` may go ahead (holding one reserved failure), or `Err` with how long to
    /// wait: when this address spent its failures for this user, or when the user's failures from everywhere
    /// reached their ceiling and this address is one that failed for them in the last minute.
    pub(crate) fn attempt(&self, user: &str, address: IpAddr) -> Result<Attempt<'_>, Refused> {
        self.attempt_at(user, address, Instant::now())?;
        Ok(Attempt { failures: self, user: user.to_owned(), address, failed: false })
    }

    fn attempt_at(&self, user: &str, address: IpAddr, now: Instant) -> Result<(), Refused> {
        let mut records = self.lock();
        let Records { by_user_and_address, by_user } = &mut *records;
        let record = by_user_and_address.entry((user.to_owned(), address)).or_insert(AddressRecord {
            full_again: now,
            last_failure: None,
            refused: false,
        });
        let mut refuse = |wait, limit| {
            rate_limited(limit);
            let locked_by = (!record.refused).then_some(limit);
            record.refused = true;
            Err(Refused { wait, locked_by })
        };
        if let Some(wait) = self.per_user_and_address.wait(record.full_again, now) {
            return refuse(wait, "failed_login_per_user_and_ip");
        }
        let user_full_again = by_user.entry(user.to_owned()).or_insert(now);
        let failed_recently = record.last_failure.is_some_and(|at| now.saturating_duration_since(at) < MINUTE);
        if let Some(wait) = self.per_user.wait(*user_full_again, now).filter(|_| failed_recently) {
            return refuse(wait, "failed_login_per_user");
        }
        record.refused = false;
        self.per_user_and_address.spend(&mut record.full_again, now);
        self.per_user.spend(user_full_again, now);
        Ok(())
    }

    fn give_back(&self, user: &str, address: IpAddr, now: Instant) {
        let mut records = self.lock();
        if let Some(record) = records.by_user_and_address.get_mut(&(user.to_owned(), address)) {
            self.per_user_and_address.give_back(&mut record.full_again, now);
        }
        if let Some(full_again) = records.by_user.get_mut(user) {
            self.per_user.give_back(full_again, now);
        }
    }

    /// Forgets what no longer matters: budgets full again, failures more than a minute old. Users and addresses
    /// are chosen by whoever calls, so without this the records would grow with every name and address tried.
    pub(crate) fn forget_idle(&self) {
        let now = Instant::now();
        let mut records = self.lock();
        records.by_user_and_address.retain(|_, record| {
            record.full_again > now || record.last_failure.is_some_and(|at| now.saturating_duration_since(at) < MINUTE)
        });
        records.by_user.retain(|_, full_again| *full_again > now);
        records.by_user_and_address.shrink_to_fit();
        records.by_user.shrink_to_fit();
    }
}

/// Counts a request refused by one of the rate limits, named as in the configuration's `[rate_limits]`.
pub(crate) fn rate_limited(limit: &'static str) {
    metrics::counter!("tessera_rate_limited_total", "limit" => limit).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn address(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, n))
    }

    /// An attempt at `now` that fails.
    fn fail(failures: &LoginFailures, user: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        failures.attempt_at(user, address, now).map_err(|refused| refused.wait)?;
        let mut records = failures.lock();
        records.by_user_and_address.get_mut(&(user.to_owned(), address)).unwrap().last_failure = Some(now);
        Ok(())
    }

    #[test]
    fn an_address_gets_its_budget_of_failures_per_user_then_waits_for_them_to_age() {
        let failures = LoginFailures::new(10, 100);
        let start = Instant::now();
        for _ in 0..10 {
            fail(&failures, "alice", A, start).unwrap();
        }
        let wait = fail(&failures, "alice", A, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6), "one failure's worth: a minute / 10");
        assert!(fail(&failures, "bob", A, start).is_ok(), "other users from that address are not affected");
        assert!(fail(&failures, "alice", address(2), start).is_ok(), "nor alice from another address");
        assert!(fail(&failures, "alice", A, start + Duration::from_secs(6)).is_ok(), "a failure later, one more");
    }

    #[test]
    fn only_the_first_refusal_of_a_run_says_which_limit_locked_the_user_out() {
        let failures = LoginFailures::new(2, 3);
        let start = Instant::now();
        let locked_by = |address, now| failures.attempt_at("alice", address, now).unwrap_err().locked_by;
        fail(&failures, "alice", A, start).unwrap();
        fail(&failures, "alice", A, start).unwrap();
        assert_eq!(locked_by(A, start), Some("failed_login_per_user_and_ip"));
        assert_eq!(locked_by(A, start), None, "still locked: no new lock");
        // Let through again, then locked again: a new lock.
        let later = start + Duration::from_secs(30);
        fail(&failures, "alice", A, later).unwrap();
        assert_eq!(locked_by(A, later), Some("failed_login_per_user_and_ip"));
        // The user's ceiling (3 a minute from everywhere) locks out an address that failed for them.
        fail(&failures, "alice", address(2), later).unwrap();
        assert_eq!(locked_by(address(2), later), Some("failed_login_per_user"));
    }

    #[test]
    fn over_the_users_ceiling_only_addresses_that_failed_for_them_are_refused() {
        let failures = LoginFailures::new(10, 20);
        let now = Instant::now();
        for n in 0..20 {
            fail(&failures, "alice", address(n), now).unwrap();
        }
        assert!(fail(&failures, "alice", address(0), now).is_err(), "a failing address, once over the ceiling");
        assert!(failures.attempt_at("alice", A, now).is_ok(), "an address that has not failed for alice");
        assert!(fail(&failures, "bob", address(0), now).is_ok(), "the ceiling is alice's alone");
        let later = now + MINUTE;
        assert!(fail(&failures, "alice", address(0), later).is_ok(), "a minute on, that address may try again");
    }

    #[test]
    fn an_attempt_whose_password_was_right_gives_its_reserved_failure_back() {
        let failures = LoginFailures::new(2, 100);
        for _ in 0..5 {
            drop(failures.attempt("alice", A).unwrap());
        }
        let first = failures.attempt("alice", A).unwrap();
        let second = failures.attempt("alice", A).unwrap();
        assert!(failures.attempt("alice", A).is_err(), "two in flight hold the whole budget");
        first.failed();
        second.failed();
        assert!(failures.attempt("alice", A).is_err(), "both failed: spent");
    }

    #[test]
    fn idle_records_are_forgotten() {
        let failures = LoginFailures::new(10, 100);
        drop(failures.attempt("alice", A).unwrap());
        failures.forget_idle();
        assert!(failures.lock().by_user_and_address.is_empty() && failures.lock().by_user.is_empty());
        failures.attempt("alice", A).unwrap().failed();
        failures.forget_idle();
        assert_eq!(failures.lock().by_user_and_address.len(), 1, "a recent failure is kept");
    }
}
