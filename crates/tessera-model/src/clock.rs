//! The clock, injected so tests can move time (grace windows, expiry) without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Millis;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> Millis;

    /// Whole seconds since the epoch.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// How much real time waiting `wait` on this clock takes: all of it on a clock that follows real time. A
    /// clock that moves only when told to says none, so code that waits for "the next second" does not hold a
    /// test up for real time that its clock never sees pass.
    fn real_time_of(&self, wait: std::time::Duration) -> std::time::Duration {
        wait
    }
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the system clock is where \"now\" comes from")]
    fn now_ms(&self) -> Millis {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now_ms`.
    #[must_use]
    pub fn new(now_ms: Millis) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, by: Millis) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }

    /// None: a wait on a manual clock is over at once, and the clock stays where it is (the test moves it).
    fn real_time_of(&self, _wait: std::time::Duration) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}
