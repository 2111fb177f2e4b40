//! Compact mode at the reference design's size: 50 million revoked token ids of 24 h tokens in one-hour buckets.
//! Measures the prefilter alone — memory, false-positive rate over 10 million unrevoked ids, check latency — since
//! the exact store that confirms a "maybe" (Redis or the local exact store) is not part of it.
//!
//! `cargo bench -p tessera-revocation --bench compact` (add `-- --entries N` for another size).

mod support;

use support::{Rng, Workload};
use tessera_model::Millis;
use tessera_revocation::compact::{Prefilter, PrefilterConfig, Verdict};
use tessera_revocation::Retention;

const DEFAULT_ENTRIES: u64 = 50_000_000;
/// An instant on an hour boundary, so the day of expiries fills exactly 24 buckets.
const NOW: Millis = 1_800_000_000_000;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
/// Identifier families: revoked ids, their expiries, and ids never revoked.
const MEMBER: u64 = 1 << 56;
const MEMBER_EXP: u64 = 2 << 56;
const OTHER: u64 = 3 << 56;
const FALSE_POSITIVE_PROBES: u64 = 10_000_000;

/// The `n`th revoked token's `exp`: anywhere in the coming day.
fn member_exp(n: u64) -> Millis {
    NOW + (support::mix(MEMBER_EXP + n) % DAY as u64) as Millis
}

struct Compact<'a> {
    prefilter: &'a Prefilter,
    entries: u64,
    /// Whether the checked tokens are revoked ones (else never-revoked ones: the common case).
    members: bool,
}

impl Workload for Compact<'_> {
    type Probe = (String, Millis);

    fn probe(&self) -> Self::Probe {
        (String::new(), 0)
    }

    fn next(&self, (jti, exp): &mut Self::Probe, rng: &mut Rng) {
        if self.members {
            let n = rng.below(self.entries);
            support::id22(MEMBER + n, jti);
            *exp = member_exp(n);
        } else {
            support::id22(OTHER + rng.below(1 << 48), jti);
            *exp = NOW + rng.below(DAY as u64) as Millis;
        }
    }

    fn check(&self, (jti, exp): &Self::Probe) -> bool {
        self.prefilter.check(jti, *exp..=*exp) == Verdict::Maybe
    }
}

fn main() -> Result<(), tessera_revocation::compact::CompactError> {
    let entries = support::entries_arg(DEFAULT_ENTRIES);
    // A day of expiries in 24 buckets. A bucket's count varies by about the square root of the mean: six of those
    // as headroom, so that no bucket needs a second segment.
    let mean = entries / 24;
    let bucket_capacity = usize::try_from(mean + 6 * (mean as f64).sqrt() as u64 + 1).unwrap_or(usize::MAX);
    let config = PrefilterConfig {
        retention: Retention { max_token_lifetime_ms: DAY, leeway_ms: 60_000 },
        bucket_width_ms: HOUR,
        bucket_capacity,
    };
    let mut prefilter = Prefilter::new(config)?;
    let before = support::rss_bytes();
    let mut jti = String::new();
    let (inserted, build_time) = support::timed(|| {
        (0..entries).try_for_each(|n| {
            support::id22(MEMBER + n, &mut jti);
            prefilter.insert(&jti, member_exp(n)..=member_exp(n))
        })
    });
    inserted?;
    let after = support::rss_bytes();
    let (buckets, segments) = prefilter.shape();
    let memory = prefilter.memory_bytes() as u64;
    println!("Compact prefilter: {entries} revoked jti, {buckets} buckets of capacity {bucket_capacity}, {segments} segments");
    println!(
        "Built in {:.1} s ({:.0} ns per insert)",
        build_time.as_secs_f64(),
        build_time.as_nanos() as f64 / entries as f64
    );
    println!(
        "Memory: {} allocated ({:.2} bits per entry); resident +{}",
        support::megabytes(memory),
        memory as f64 * 8.0 / entries as f64,
        before.zip(after).map_or("n/a".to_owned(), |(before, after)| support::megabytes(after.saturating_sub(before)))
    );

    let compact = Compact { prefilter: &prefilter, entries, members: false };
    let (false_negatives, verify_time) = support::timed(|| {
        (0..entries)
            .filter(|&n| {
                support::id22(MEMBER + n, &mut jti);
                compact.prefilter.check(&jti, member_exp(n)..=member_exp(n)) == Verdict::No
            })
            .count()
    });
    println!("False negatives over all {entries} revoked ids: {false_negatives} ({:.1} s)", verify_time.as_secs_f64());
    let mut rng = Rng::new(11);
    let mut probe = compact.probe();
    let false_positives = (0..FALSE_POSITIVE_PROBES)
        .filter(|_| {
            compact.next(&mut probe, &mut rng);
            compact.check(&probe)
        })
        .count();
    println!(
        "False positives over {FALSE_POSITIVE_PROBES} never-revoked ids: {false_positives} ({:.4}%)",
        false_positives as f64 * 100.0 / FALSE_POSITIVE_PROBES as f64
    );

    println!();
    let revoked = Compact { members: true, ..compact };
    support::table(&[
        ("timer overhead (Instant pair)", &|| support::timer_overhead(1_000_000)),
        ("unrevoked, 1 thread, each check timed", &|| support::individually(&compact, 1, 2_000_000)),
        ("unrevoked, 1 thread, batches of 32", &|| support::in_batches(&compact, 1, 100_000)),
        ("unrevoked, 2 threads, each check timed", &|| support::individually(&compact, 2, 1_000_000)),
        ("unrevoked, 2 threads, batches of 32", &|| support::in_batches(&compact, 2, 50_000)),
        ("revoked, 1 thread, each check timed", &|| support::individually(&revoked, 1, 1_000_000)),
    ]);
    Ok(())
}
