//! Logging for background steps that fail on every tick while a dependency is down.

/// A background step that may fail on every tick while the store is down: its failures are logged at most once
/// per [`Repeated::EVERY`] (with how many were not), and its recovery once.
pub(crate) struct Repeated {
    what: &'static str,
    failing_since: Option<std::time::Instant>,
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl Repeated {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    pub(crate) fn new(what: &'static str) -> Self {
        Self { what, failing_since: None, last_logged: None, unlogged: 0 }
    }

    pub(crate) fn record<E: std::fmt::Display>(&mut self, outcome: Result<(), E>) {
        self.record_at(outcome, std::time::Instant::now());
    }

    /// Records one outcome at `now`; returns what it logged.
    fn record_at<E: std::fmt::Display>(&mut self, outcome: Result<(), E>, now: std::time::Instant) -> Logged {
        match outcome {
            Ok(()) => {
                (self.last_logged, self.unlogged) = (None, 0);
                let Some(since) = self.failing_since.take() else { return Logged::Nothing };
                let failed_for = now.duration_since(since);
                tracing::info!(step = self.what, ?failed_for, "recovered");
                Logged::Recovery
            }
            Err(err) => {
                self.failing_since.get_or_insert(now);
                if self.last_logged.is_some_and(|last| now.duration_since(last) < Self::EVERY) {
                    self.unlogged += 1;
                    return Logged::Nothing;
                }
                let also = std::mem::take(&mut self.unlogged);
                tracing::warn!(step = self.what, error = %err, failures_not_logged = also, "failed; retrying");
                self.last_logged = Some(now);
                Logged::Failure { not_logged_before: also }
            }
        }
    }
}

/// What [`Repeated::record_at`] logged.
#[derive(Debug, PartialEq, Eq)]
enum Logged {
    Nothing,
    Failure { not_logged_before: u64 },
    Recovery,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_on_every_tick_is_logged_once_per_interval_with_the_count_then_the_recovery_once() {
        let start = std::time::Instant::now();
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        let mut step = Repeated::new("sync");
        assert_eq!(step.record_at(Ok::<(), &str>(()), at(0)), Logged::Nothing, "nothing to say while it works");
        assert_eq!(step.record_at(Err("down"), at(250)), Logged::Failure { not_logged_before: 0 });
        for tick in 2..41 {
            assert_eq!(step.record_at(Err("down"), at(tick * 250)), Logged::Nothing, "tick {tick}");
        }
        // 10 s after the first line: the next one, counting the 39 ticks in between.
        assert_eq!(step.record_at(Err("down"), at(10_250)), Logged::Failure { not_logged_before: 39 });
        assert_eq!(step.record_at(Ok::<(), &str>(()), at(10_500)), Logged::Recovery);
        assert_eq!(step.record_at(Ok::<(), &str>(()), at(10_750)), Logged::Nothing);
        // A new outage is reported at once.
        assert_eq!(step.record_at(Err("down"), at(11_000)), Logged::Failure { not_logged_before: 0 });
    }
}
