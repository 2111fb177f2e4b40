//! A circuit breaker per destination: after `failures` failures in a row (no answer, or a 5xx), calls fail at
//! once for `open_for`; then one trial call goes through, and its outcome closes the circuit or opens it again.
//! A service that is down is not hammered, and its callers learn it in microseconds instead of a timeout each.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When a destination's circuit opens, and for how long. The default is the reference design's: 5 failures in
/// a row, open 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that open the circuit.
    pub failures: u32,
    /// How long it stays open before a trial call.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 5, open_for: Duration::from_secs(30) }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self { config, state: Mutex::new(State::default()) }
    }

    /// Whether a call may go now; `Err` with how long until the next trial when the circuit is open.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(open_until) = state.open_until else { return Ok(()) };
        let now = Instant::now();
        if now < open_until {
            return Err(open_until - now);
        }
        if state.trial_in_flight {
            // Half open: one trial at a time; the others wait for its outcome as if still open.
            return Err(Duration::ZERO);
        }
        state.trial_in_flight = true;
        Ok(())
    }

    /// Records an admitted call's outcome.
    pub(crate) fn record(&self, succeeded: bool) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if succeeded {
            *state = State::default();
            return;
        }
        state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
        if state.trial_in_flight || state.failures_in_a_row >= self.config.failures.max(1) {
            // At most a day: a configured eternity must not overflow the clock.
            state.open_until = Some(Instant::now() + self.config.open_for.min(Duration::from_secs(86_400)));
            state.trial_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn five_failures_in_a_row_open_the_circuit_for_thirty_seconds_then_one_trial_decides() {
        let breaker = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            breaker.admit().unwrap();
            breaker.record(false);
        }
        breaker.admit().unwrap();
        breaker.record(true);
        for _ in 0..4 {
            breaker.admit().unwrap();
            breaker.record(false);
        }
        assert!(breaker.admit().is_ok(), "a success in between starts the count again");
        breaker.record(false);
        assert_eq!(breaker.admit(), Err(Duration::from_secs(30)));

        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(breaker.admit(), Err(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.admit(), Ok(()), "the trial call");
        assert!(breaker.admit().is_err(), "one trial at a time");
        breaker.record(false);
        assert_eq!(breaker.admit(), Err(Duration::from_secs(30)), "a failed trial opens it again at once");

        tokio::time::advance(Duration::from_secs(30)).await;
        breaker.admit().unwrap();
        breaker.record(true);
        assert_eq!(breaker.admit(), Ok(()), "a good trial closes it");
        assert_eq!(breaker.admit(), Ok(()));
    }
}
