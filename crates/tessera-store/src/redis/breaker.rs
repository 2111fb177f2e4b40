//! The circuit breaker around Redis: when Redis stops answering, calls fail at once instead of each waiting out
//! its connection and response timeouts (seconds, while requests pile up), and Redis gets room to come back.
//!
//! - **Closed**: calls go to Redis. [`BreakerSettings::failure_threshold`] consecutive calls that could not reach
//!   Redis (connection refused or dropped, a timeout, the cluster down) open it. Any reply — an error reply of a
//!   script included — proves Redis reachable and resets the count: a logic error is not an outage.
//! - **Open**: calls fail with [`StoreError::Unavailable`] without touching the network, for
//!   [`BreakerSettings::cool_down`].
//! - **Half-open**: after the cool-down, one call (the probe) goes through while the others keep failing fast;
//!   it closes the breaker if it reaches Redis and opens it again if not.
//!
//! One breaker per store (per Tessera node), across all the nodes of a cluster: since only consecutive failures
//! count, a single dead master among healthy ones rarely opens it (replies from the others interleave), while a
//! cluster that refuses everything (`CLUSTERDOWN` while a failover is pending) or a Redis that is gone does.
//!
//! The state sits behind a small mutex, held for a few comparisons and never across an `await`. Time is passed in
//! (`now`), so the state machine is tested without sleeping.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::StoreError;

/// What counts as a failure, when the breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive calls that could not reach Redis before the breaker opens (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker fails calls before it lets a probe through.
    pub cool_down: Duration,
    /// A reply slower than this fails its call and counts as not reaching Redis, so a frozen Redis opens the
    /// breaker like a dead one. It must exceed the 1 s a write may wait for its replicas.
    pub response_timeout: Duration,
}

impl Default for BreakerSettings {
    /// 5 failures, 2 s, 5 s: a Redis restart or a cluster failover (a few seconds) opens it once or twice, a
    /// single dropped connection never does.
    fn default() -> Self {
        Self { failure_threshold: 5, cool_down: Duration::from_secs(2), response_timeout: Duration::from_secs(5) }
    }
}

/// The breaker's state, as reported (`/readyz`, the `tessera_redis_breaker_state` gauge, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to Redis.
    Closed,
    /// The cool-down is over: the next call probes Redis (or a probe is in flight).
    HalfOpen,
    /// Calls fail at once.
    Open,
}

impl BreakerState {
    /// The gauge's value: 0 closed, 1 half-open, 2 open.
    #[must_use]
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }

    /// The `to` label of `tessera_redis_breaker_transitions_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

/// What a call showed about Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Redis answered (with a value or an error reply).
    Reached,
    /// Redis could not be reached: refused, dropped, timed out, cluster down.
    Unreachable,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker (see the module documentation).
pub(crate) struct Breaker {
    settings: BreakerSettings,
    phase: Mutex<Phase>,
}

/// Leave to make one call; report its [`Outcome`] with [`Permit::record`]. A permit dropped unreported (the call
/// was cancelled) proves nothing: a probe's slot is freed for the next call.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        let settings = BreakerSettings { failure_threshold: settings.failure_threshold.max(1), ..settings };
        Self { settings, phase: Mutex::new(Phase::Closed { failures: 0 }) }
    }

    /// A poisoned lock only means a panic elsewhere mid-update of plain values; the phase is still coherent.
    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go to Redis at `now`: [`StoreError::Unavailable`] while open, or half-open with the probe
    /// already in flight.
    pub(crate) fn admit(&self, now: Instant) -> Result<Permit<'_>, StoreError> {
        let (probe, transition) = {
            let mut phase = self.lock();
            match *phase {
                Phase::Closed { .. } => (false, None),
                Phase::Open { until } if now >= until => {
                    *phase = Phase::HalfOpen { probing: true };
                    (true, Some(BreakerState::HalfOpen))
                }
                Phase::HalfOpen { probing: false } => {
                    *phase = Phase::HalfOpen { probing: true };
                    (true, None)
                }
                Phase::Open { .. } | Phase::HalfOpen { probing: true } => return Err(StoreError::Unavailable),
            }
        };
        if let Some(to) = transition {
            self.announce(to, "cool-down over; probing Redis with the next call");
        }
        Ok(Permit { breaker: self, probe, reported: false })
    }

    /// The state at `now`; an open breaker whose cool-down is over reads as half-open (its next call probes).
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Records a call's outcome; whether it closed the breaker.
    fn record(&self, probe: bool, outcome: Outcome, now: Instant) -> bool {
        let threshold = self.settings.failure_threshold;
        let transition = {
            let mut phase = self.lock();
            match (*phase, outcome) {
                (Phase::Closed { .. }, Outcome::Reached) => {
                    *phase = Phase::Closed { failures: 0 };
                    None
                }
                (Phase::Closed { failures }, Outcome::Unreachable) => {
                    let failures = failures.saturating_add(1);
                    if failures >= threshold {
                        *phase = Phase::Open { until: now + self.settings.cool_down };
                        Some((BreakerState::Open, failures))
                    } else {
                        *phase = Phase::Closed { failures };
                        None
                    }
                }
                // Only the probe decides a half-open breaker; calls admitted before it opened prove nothing now.
                (Phase::HalfOpen { .. }, Outcome::Reached) if probe => {
                    *phase = Phase::Closed { failures: 0 };
                    Some((BreakerState::Closed, 0))
                }
                (Phase::HalfOpen { .. }, Outcome::Unreachable) if probe => {
                    *phase = Phase::Open { until: now + self.settings.cool_down };
                    Some((BreakerState::Open, 1))
                }
                (Phase::HalfOpen { .. } | Phase::Open { .. }, _) => None,
            }
        };
        match transition {
            Some((BreakerState::Open, failures)) if !probe => self.announce(
                BreakerState::Open,
                &format!(
                    "{failures} consecutive calls could not reach Redis; failing fast for {:?}",
                    self.settings.cool_down
                ),
            ),
            Some((BreakerState::Open, _)) => self.announce(
                BreakerState::Open,
                &format!("the probe could not reach Redis; failing fast for {:?}", self.settings.cool_down),
            ),
            Some((to, _)) => self.announce(to, "the probe reached Redis"),
            None => {}
        }
        matches!(transition, Some((BreakerState::Closed, _)))
    }

    /// Frees the probe slot of a probe that was cancelled before it finished.
    fn abandon_probe(&self) {
        let mut phase = self.lock();
        if let Phase::HalfOpen { probing: true } = *phase {
            *phase = Phase::HalfOpen { probing: false };
        }
    }

    /// Logs a transition and records it in the metrics (called without the lock).
    fn announce(&self, to: BreakerState, why: &str) {
        match to {
            BreakerState::Open => tracing::warn!(state = to.label(), "Redis circuit breaker open: {why}"),
            BreakerState::HalfOpen | BreakerState::Closed => {
                tracing::info!(state = to.label(), "Redis circuit breaker {}: {why}", to.label());
            }
        }
        metrics::gauge!("tessera_redis_breaker_state").set(to.gauge());
        metrics::counter!("tessera_redis_breaker_transitions_total", "to" => to.label()).increment(1);
    }
}

impl Permit<'_> {
    /// Reports what the call showed about Redis.
    /// Whether this call closed the breaker.
    pub(crate) fn record(mut self, outcome: Outcome, now: Instant) -> bool {
        self.reported = true;
        self.breaker.record(self.probe, outcome, now)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(2);

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings { failure_threshold: 3, cool_down: COOL_DOWN, ..BreakerSettings::default() })
    }

    fn call(breaker: &Breaker, outcome: Outcome, now: Instant) {
        breaker.admit(now).expect("admitted").record(outcome, now);
    }

    /// A breaker opened at `t0` by three failures.
    fn opened() -> (Breaker, Instant) {
        let (b, t0) = (breaker(), Instant::now());
        for _ in 0..3 {
            call(&b, Outcome::Unreachable, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        (b, t0)
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures_only() {
        let (b, t0) = (breaker(), Instant::now());
        call(&b, Outcome::Unreachable, t0);
        call(&b, Outcome::Unreachable, t0);
        call(&b, Outcome::Reached, t0);
        call(&b, Outcome::Unreachable, t0);
        call(&b, Outcome::Unreachable, t0);
        assert_eq!(b.state(t0), BreakerState::Closed, "a reply in between resets the count");
        call(&b, Outcome::Unreachable, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn an_open_breaker_fails_fast_until_the_cool_down_is_over() {
        let (b, t0) = opened();
        for offset in [Duration::ZERO, Duration::from_millis(1), COOL_DOWN - Duration::from_millis(1)] {
            assert!(matches!(b.admit(t0 + offset), Err(StoreError::Unavailable)), "at {offset:?}");
        }
        assert_eq!(b.state(t0 + COOL_DOWN), BreakerState::HalfOpen);
        assert!(b.admit(t0 + COOL_DOWN).is_ok());
    }

    #[test]
    fn half_open_lets_a_single_probe_through() {
        let (b, t0) = opened();
        let at = t0 + COOL_DOWN;
        let probe = b.admit(at).expect("the probe");
        assert!(matches!(b.admit(at), Err(StoreError::Unavailable)), "a second call while the probe is in flight");
        assert_eq!(b.state(at), BreakerState::HalfOpen);
        drop(probe);
        assert!(b.admit(at).is_ok(), "a cancelled probe frees its slot for the next call");
    }

    #[test]
    fn a_probe_that_reaches_redis_closes_the_breaker() {
        let (b, t0) = opened();
        let at = t0 + COOL_DOWN;
        assert!(b.admit(at).unwrap().record(Outcome::Reached, at), "the probe's call is told it closed the breaker");
        assert_eq!(b.state(at), BreakerState::Closed);
        assert!(!b.admit(at).unwrap().record(Outcome::Reached, at), "later calls close nothing");
        assert!(b.admit(at).is_ok() && b.admit(at).is_ok(), "every call goes through again");
        call(&b, Outcome::Unreachable, at);
        call(&b, Outcome::Unreachable, at);
        assert_eq!(b.state(at), BreakerState::Closed, "the failure count started again from zero");
    }

    #[test]
    fn a_probe_that_fails_opens_the_breaker_for_another_cool_down() {
        let (b, t0) = opened();
        let at = t0 + COOL_DOWN;
        call(&b, Outcome::Unreachable, at);
        assert_eq!(b.state(at), BreakerState::Open);
        assert!(matches!(b.admit(at + COOL_DOWN - Duration::from_millis(1)), Err(StoreError::Unavailable)));
        assert!(b.admit(at + COOL_DOWN).is_ok(), "the next probe, one cool-down later");
    }

    #[test]
    fn only_the_probe_decides_a_half_open_breaker() {
        let (b, t0) = (breaker(), Instant::now());
        let late = b.admit(t0).unwrap();
        for _ in 0..3 {
            call(&b, Outcome::Unreachable, t0);
        }
        let at = t0 + COOL_DOWN;
        let probe = b.admit(at).unwrap();
        late.record(Outcome::Reached, at);
        assert_eq!(b.state(at), BreakerState::HalfOpen, "a call admitted before the breaker opened");
        probe.record(Outcome::Unreachable, at);
        assert_eq!(b.state(at), BreakerState::Open);
    }
}
