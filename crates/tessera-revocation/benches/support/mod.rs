//! What both revocation benchmarks share: reproducible identifiers, resident memory, and per-check timing on one or
//! more threads.
//!
//! Timing. `Instant::now()` costs tens of nanoseconds here (a vDSO clock read under KVM), the size of what is
//! measured, so every figure comes two ways: each check timed alone, with the timer's own cost reported beside it
//! (its median is what to subtract), and batches of [`BATCH`] checks timed together and divided, which hides the
//! timer but averages the tail within a batch. The token each check looks at is prepared outside the timed region
//! into buffers that stay in cache, as a verifier's freshly parsed claims are.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Checks per timed batch.
pub(crate) const BATCH: usize = 32;

/// SplitMix64: a reproducible stream, and [`mix`] a reproducible identifier for any counter.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` small next to 2⁶⁴).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// SplitMix64's finaliser: distinct inputs give distinct, random-looking outputs.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Writes the 22-character base64url identifier of `seed` into `out`: the shape of Tessera's `jti` and `sid`
/// (16 random bytes), here 128 bits drawn from two SplitMix64 outputs.
pub(crate) fn id22(seed: u64, out: &mut String) {
    out.clear();
    let bits = (u128::from(mix(seed)) << 64) | u128::from(mix(seed ^ 0x5555_5555_5555_5555));
    for i in 0..22 {
        let index = ((bits >> (i * 6)) & 63) as usize;
        out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
    }
}

/// The size asked for with `--entries N` (underscores allowed), else `default`.
pub(crate) fn entries_arg(default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--entries")
        .and_then(|at| args.get(at + 1))
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Resident memory, from `/proc/self/status` (`VmRSS`), if readable.
pub(crate) fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a benchmark checks: it fills a probe with the next token (untimed) and checks it (timed).
pub(crate) trait Workload: Sync {
    /// One token's worth of reusable buffers.
    type Probe;
    /// An empty probe.
    fn probe(&self) -> Self::Probe;
    /// Refills the probe with the next token to check.
    fn next(&self, probe: &mut Self::Probe, rng: &mut Rng);
    /// The check: whether the token is (possibly) revoked.
    fn check(&self, probe: &Self::Probe) -> bool;
}

/// Nanoseconds per check, sorted, and how many checks said "revoked".
#[derive(Debug, Default)]
pub(crate) struct Samples {
    nanos: Vec<f64>,
    positives: u64,
    checks: u64,
}

impl Samples {
    fn merge(parts: Vec<Samples>) -> Self {
        let mut all = Self::default();
        for part in parts {
            all.nanos.extend(part.nanos);
            all.positives += part.positives;
            all.checks += part.checks;
        }
        all.nanos.sort_by(f64::total_cmp);
        all
    }

    fn percentile(&self, p: f64) -> f64 {
        let rank = ((self.nanos.len() as f64 - 1.0) * p).round() as usize;
        self.nanos.get(rank).copied().unwrap_or(f64::NAN)
    }

    fn mean(&self) -> f64 {
        self.nanos.iter().sum::<f64>() / self.nanos.len() as f64
    }
}

/// What `Instant::now()` twice in a row measures: the floor under every individually timed check.
pub(crate) fn timer_overhead(samples: usize) -> Samples {
    let mut nanos = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        nanos.push(start.elapsed().as_nanos() as f64);
    }
    Samples::merge(vec![Samples { nanos, positives: 0, checks: samples as u64 }])
}

/// Runs `each` on `threads` threads at once (released together) and merges what they measured.
fn on_threads(threads: usize, each: impl Fn(&mut Rng) -> Samples + Sync) -> Samples {
    let start = Barrier::new(threads);
    let parts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, each) = (&start, &each);
                scope.spawn(move || {
                    let mut rng = Rng::new(0xC0FF_EE00 + thread as u64);
                    start.wait();
                    each(&mut rng)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    Samples::merge(parts)
}

/// Times `checks` checks per thread one by one.
pub(crate) fn individually<W: Workload>(workload: &W, threads: usize, checks: usize) -> Samples {
    on_threads(threads, |rng| {
        let mut probe = workload.probe();
        let mut samples = Samples { nanos: Vec::with_capacity(checks), ..Samples::default() };
        for _ in 0..checks {
            workload.next(&mut probe, rng);
            let start = Instant::now();
            let revoked = black_box(workload.check(black_box(&probe)));
            samples.nanos.push(start.elapsed().as_nanos() as f64);
            samples.positives += u64::from(revoked);
        }
        samples.checks = checks as u64;
        samples
    })
}

/// Times `batches` batches of [`BATCH`] checks per thread; each sample is a batch's time per check.
pub(crate) fn in_batches<W: Workload>(workload: &W, threads: usize, batches: usize) -> Samples {
    on_threads(threads, |rng| {
        let mut probes: Vec<W::Probe> = (0..BATCH).map(|_| workload.probe()).collect();
        let mut samples = Samples { nanos: Vec::with_capacity(batches), ..Samples::default() };
        for _ in 0..batches {
            for probe in &mut probes {
                workload.next(probe, rng);
            }
            let start = Instant::now();
            for probe in &probes {
                samples.positives += u64::from(black_box(workload.check(black_box(probe))));
            }
            samples.nanos.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
        }
        samples.checks = (batches * BATCH) as u64;
        samples
    })
}

/// Rounds each measurement runs: the machine is shared and noisy, so every column shows its median over them.
const ROUNDS: usize = 3;

/// Runs each measurement [`ROUNDS`] times, the rounds interleaved so that a noisy spell does not fall on one
/// row only, and prints a table of per-check nanoseconds, each statistic the median of its rounds.
pub(crate) fn table(measurements: &[(&str, &dyn Fn() -> Samples)]) {
    let mut rounds: Vec<Vec<Samples>> = measurements.iter().map(|_| Vec::with_capacity(ROUNDS)).collect();
    for _ in 0..ROUNDS {
        for ((_, measure), row) in measurements.iter().zip(&mut rounds) {
            row.push(measure());
        }
    }
    println!("| measurement (median of {ROUNDS} rounds) | p50 | p99 | p99.9 | max | mean | said revoked |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((label, _), row) in measurements.iter().zip(&rounds) {
        let median = |statistic: &dyn Fn(&Samples) -> f64| {
            let mut values: Vec<f64> = row.iter().map(statistic).collect();
            values.sort_by(f64::total_cmp);
            format!("{:.0} ns", values.get(values.len() / 2).copied().unwrap_or(f64::NAN))
        };
        let (positives, checks) = row.iter().fold((0, 0), |(p, c), s| (p + s.positives, c + s.checks));
        println!(
            "| {label} | {} | {} | {} | {} | {} | {:.3}% of {checks} |",
            median(&|s| s.percentile(0.5)),
            median(&|s| s.percentile(0.99)),
            median(&|s| s.percentile(0.999)),
            median(&|s| s.percentile(1.0)),
            median(&Samples::mean),
            positives as f64 * 100.0 / checks.max(1) as f64,
        );
    }
}

/// Megabytes (10⁶ bytes), for the budget's unit.
pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Runs `work`, returning its result and how long it took.
pub(crate) fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let result = work();
    (result, start.elapsed())
}
