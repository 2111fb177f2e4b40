//! The token path's health, as a node measures it: requests, server errors and latency per second over a sliding
//! window, recorded lock-free on the request path; and the triggers and gates judged against it.
//!
//! Only server errors count as errors. A client that sends garbage tokens gets 401s, which measure the client,
//! not the token path: counted, they would let anyone roll a rollout back.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets: four per power of two of microseconds (a quarter-octave, at most 25% wide), up to 2^36 µs.
const LATENCY_BUCKETS: usize = 4 * 36;

/// The bucket of a latency of `micros`.
fn latency_bucket(micros: u64) -> usize {
    if micros < 4 {
        // 0..=3 µs: one bucket each.
        return usize::try_from(micros).unwrap_or(0);
    }
    let msb = 63 - micros.leading_zeros() as usize;
    let quarter = usize::try_from((micros >> (msb - 2)) & 3).unwrap_or(0);
    (4 * (msb - 1) + quarter).min(LATENCY_BUCKETS - 1)
}

/// The latencies bucket `index` holds: from its lower bound (inclusive) to its upper bound (exclusive), µs.
fn latency_bounds(index: usize) -> (u64, u64) {
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    if index < 4 {
        return (index, index + 1);
    }
    let (msb, quarter) = (index / 4 + 1, index % 4);
    ((4 + quarter) << (msb - 2), (5 + quarter) << (msb - 2))
}

/// One second of measurements.
struct Slot {
    /// Which second (plus one: 0 marks a slot never used) the counts are of.
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        for bucket in &self.latency {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

/// The token path's requests over the last seconds, one slot a second in a ring. Recording is a few relaxed
/// atomic additions; the first request of a new second clears the slot it reuses. A request recorded by another
/// thread while that slot is being cleared may be lost: this is a measurement, not an account.
pub struct HealthWindow {
    slots: Box<[Slot]>,
}

impl fmt::Debug for HealthWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthWindow").field("seconds", &self.slots.len()).finish_non_exhaustive()
    }
}

/// The token path's health over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Health {
    /// Requests.
    pub requests: u64,
    /// Of which answered with a server error.
    pub errors: u64,
    /// The 95th percentile latency lies in `[p95_at_least, p95_at_most)` (buckets are a quarter-octave wide);
    /// zero without requests.
    pub p95_at_least: Duration,
    /// See `p95_at_least`.
    pub p95_at_most: Duration,
}

impl Health {
    /// Errors per request; 0 without requests.
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = self.errors as f64 / self.requests as f64;
        rate
    }
}

impl HealthWindow {
    /// A window able to answer for up to `longest` (whole seconds, at least one).
    #[must_use]
    pub fn new(longest: Duration) -> Self {
        let seconds = usize::try_from(longest.as_secs()).unwrap_or(usize::MAX).clamp(1, 24 * 3600) + 1;
        Self { slots: (0..seconds).map(|_| Slot::new()).collect() }
    }

    fn slot(&self, second: u64) -> Option<&Slot> {
        let len = u64::try_from(self.slots.len()).ok()?;
        self.slots.get(usize::try_from(second % len).ok()?)
    }

    /// Records one token-path request, answered at `now_secs` (any monotonic count of seconds) after `latency`;
    /// `server_error` when it was answered with a 5xx.
    pub fn record(&self, now_secs: u64, latency: Duration, server_error: bool) {
        let Some(slot) = self.slot(now_secs) else { return };
        let mark = now_secs.saturating_add(1);
        let seen = slot.second.load(Ordering::Acquire);
        if seen != mark && slot.second.compare_exchange(seen, mark, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            slot.reset();
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if server_error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(bucket) = slot.latency.get(latency_bucket(micros)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The health over the `window` that ends with second `now_secs` (that second included).
    #[must_use]
    pub fn health(&self, now_secs: u64, window: Duration) -> Health {
        let seconds = window.as_secs().clamp(1, u64::try_from(self.slots.len() - 1).unwrap_or(1));
        let mut health = Health::default();
        let mut latency = [0_u64; LATENCY_BUCKETS];
        for second in now_secs.saturating_sub(seconds - 1)..=now_secs {
            let Some(slot) = self.slot(second) else { continue };
            if slot.second.load(Ordering::Acquire) != second.saturating_add(1) {
                continue;
            }
            health.requests += slot.requests.load(Ordering::Relaxed);
            health.errors += slot.errors.load(Ordering::Relaxed);
            for (total, bucket) in latency.iter_mut().zip(&slot.latency) {
                *total += u64::from(bucket.load(Ordering::Relaxed));
            }
        }
        let needed = health.requests.saturating_mul(95).div_ceil(100);
        let mut seen = 0;
        for (index, count) in latency.iter().enumerate() {
            seen += count;
            if needed > 0 && seen >= needed {
                let (low, high) = latency_bounds(index);
                health.p95_at_least = Duration::from_micros(low);
                health.p95_at_most = Duration::from_micros(high);
                break;
            }
        }
        health
    }

    /// Forgets everything: a new phase is judged on its own requests only.
    pub fn clear(&self) {
        for slot in &*self.slots {
            slot.second.store(0, Ordering::Release);
            slot.reset();
        }
    }
}

/// What returns a rollout to its previous phase: too many server errors, or a p95 latency too high, over the
/// window, once there are enough requests to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggers {
    /// The window judged.
    pub window: Duration,
    /// Fewer requests than this in the window: nothing is judged.
    pub min_requests: u64,
    /// Fires above this share of server errors (0.01: 1%).
    pub error_rate: f64,
    /// Fires when the p95 latency is surely above this.
    pub p95: Duration,
}

/// A trigger that fired, and what it saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Too many server errors.
    ErrorRate {
        /// The measured share.
        rate: f64,
        /// The configured limit.
        limit: f64,
    },
    /// Too slow.
    Latency {
        /// The p95 is at least this.
        p95: Duration,
        /// The configured limit.
        limit: Duration,
    },
}

impl Trigger {
    /// `error_rate` or `p95_latency`, the metric label.
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::ErrorRate { .. } => "error_rate",
            Self::Latency { .. } => "p95_latency",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ErrorRate { rate, limit } => {
                write!(f, "token-path error rate {:.2}% above {:.2}%", rate * 100.0, limit * 100.0)
            }
            Self::Latency { p95, limit } => write!(f, "token-path p95 latency at least {p95:?}, above {limit:?}"),
        }
    }
}

impl Triggers {
    /// The trigger that fires on `health`, if any.
    #[must_use]
    pub fn fired(&self, health: &Health) -> Option<Trigger> {
        if health.requests < self.min_requests.max(1) {
            return None;
        }
        let rate = health.error_rate();
        if rate > self.error_rate {
            return Some(Trigger::ErrorRate { rate, limit: self.error_rate });
        }
        (health.p95_at_least > self.p95).then_some(Trigger::Latency { p95: health.p95_at_least, limit: self.p95 })
    }
}

/// What must hold before a rollout may advance from its current phase: enough requests to judge, few server
/// errors, and a p95 latency surely below the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Gates {
    /// The window judged.
    pub window: Duration,
    /// At least this many requests in the window.
    pub min_requests: u64,
    /// Server errors below this share (0.001: 0.1%).
    pub max_error_rate: f64,
    /// The p95 latency below this.
    pub max_p95: Duration,
}

impl Gates {
    /// Whether the gate holds on `health`.
    ///
    /// # Errors
    /// What does not hold.
    pub fn check(&self, health: &Health) -> Result<(), String> {
        if health.requests < self.min_requests {
            return Err(format!(
                "{} token-path requests in the last {:?}, fewer than the {} needed to judge",
                health.requests, self.window, self.min_requests
            ));
        }
        if health.error_rate() >= self.max_error_rate {
            return Err(format!(
                "error rate {:.3}% not below {:.3}%",
                health.error_rate() * 100.0,
                self.max_error_rate * 100.0
            ));
        }
        if health.p95_at_most > self.max_p95 {
            return Err(format!("p95 latency up to {:?}, not below {:?}", health.p95_at_most, self.max_p95));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn latency_buckets_tile_the_range_without_gaps() {
        for index in 0..LATENCY_BUCKETS - 1 {
            assert_eq!(latency_bounds(index).1, latency_bounds(index + 1).0, "after bucket {index}");
        }
        for micros in [0, 1, 3, 4, 7, 8, 1_000, 49_999, 50_000, 200_000, 1 << 30] {
            let (low, high) = latency_bounds(latency_bucket(micros));
            assert!(low <= micros && micros < high, "{micros} in [{low}, {high})");
            assert!(high - low <= (low / 4).max(1), "{micros}: a bucket is at most a quarter-octave wide");
        }
    }

    #[test]
    fn the_window_sums_its_seconds_and_forgets_older_ones() {
        let window = HealthWindow::new(Duration::from_secs(10));
        for second in 100..110 {
            for n in 0..100 {
                window.record(second, MS * (n % 10 + 1), n == 0);
            }
        }
        let health = window.health(109, Duration::from_secs(10));
        assert_eq!((health.requests, health.errors), (1_000, 10));
        assert!(health.p95_at_least <= MS * 10 && MS * 10 < health.p95_at_most, "{health:?}");
        assert_eq!(window.health(109, Duration::from_secs(3)).requests, 300);
        // Twenty seconds later the same slots hold nothing of that.
        assert_eq!(window.health(129, Duration::from_secs(10)), Health::default());
        window.record(130, MS, false);
        assert_eq!(window.health(130, Duration::from_secs(10)).requests, 1);
        window.clear();
        assert_eq!(window.health(130, Duration::from_secs(10)).requests, 0);
    }

    #[test]
    fn triggers_fire_on_errors_or_latency_once_there_is_enough_to_judge() {
        let triggers = Triggers { window: Duration::from_secs(30), min_requests: 50, error_rate: 0.01, p95: MS * 200 };
        let window = HealthWindow::new(Duration::from_secs(30));
        for n in 0..49 {
            window.record(5, MS, n < 10);
        }
        assert_eq!(triggers.fired(&window.health(5, triggers.window)), None, "49 requests: too few to judge");
        window.record(5, MS, false);
        let fired = triggers.fired(&window.health(5, triggers.window)).unwrap();
        assert_eq!(fired.label(), "error_rate");
        assert!(fired.to_string().contains("20.00%"), "{fired}");

        let slow = HealthWindow::new(Duration::from_secs(30));
        for n in 0..100 {
            slow.record(5, if n < 90 { MS } else { MS * 300 }, false);
        }
        assert_eq!(triggers.fired(&slow.health(5, triggers.window)).map(|t| t.label()), Some("p95_latency"));
        let fine = HealthWindow::new(Duration::from_secs(30));
        for n in 0..100 {
            fine.record(5, if n < 96 { MS } else { MS * 300 }, n == 0);
        }
        assert_eq!(triggers.fired(&fine.health(5, triggers.window)), None);
    }

    #[test]
    fn a_gate_needs_enough_requests_few_errors_and_a_low_p95() {
        let gates =
            Gates { window: Duration::from_secs(60), min_requests: 100, max_error_rate: 0.001, max_p95: MS * 50 };
        let health = |requests, errors, p95_ms| {
            let window = HealthWindow::new(Duration::from_secs(60));
            for n in 0..requests {
                window.record(1, MS * if n < requests / 2 { 1 } else { p95_ms }, n < errors);
            }
            window.health(1, gates.window)
        };
        assert!(gates.check(&health(2_000, 0, 10)).is_ok());
        assert!(gates.check(&health(99, 0, 10)).unwrap_err().contains("fewer than the 100"));
        assert!(gates.check(&health(2_000, 2, 10)).unwrap_err().contains("error rate"));
        assert!(gates.check(&health(2_000, 0, 60)).unwrap_err().contains("p95"));
    }
}
