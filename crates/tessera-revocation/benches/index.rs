//! The exact revocation index under a realistic load: 1 million live entries (70% token ids, 20% sessions, 10%
//! subjects with instants) among 10 million users, checked with tokens of those users — most of them unrevoked,
//! about 2% revoked. Prints check latency on one and two threads and while another thread prunes as the server's
//! sync loop does, the index's resident memory, and how long a prune holds the write lock.
//!
//! `cargo bench -p tessera-revocation --bench index` (add `-- --entries N` for another size; the mix scales).

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Rng, Samples, Workload};
use tessera_model::{Millis, Provenance, Revocation, RevocationEntry};
use tessera_revocation::{Retention, RevocationIndex, TokenRef};

const USERS: u64 = 10_000_000;
const DEFAULT_ENTRIES: u64 = 1_000_000;
/// An instant on an hour boundary, so the day of token expiries starts a bucket.
const NOW: Millis = 1_800_000_000_000;
const DAY: Millis = 86_400_000;
/// How often the server's sync loop prunes the index (its default `reload_interval`).
const PRUNE_EVERY: Duration = Duration::from_millis(250);
const RETENTION: Retention = Retention { max_token_lifetime_ms: DAY, leeway_ms: 60_000 };
/// Identifier families: a family's `n`th identifier is `id22(FAMILY + n)`.
const REVOKED_JTI: u64 = 1 << 56;
const REVOKED_SID: u64 = 2 << 56;
const SUBJECT: u64 = 3 << 56;
/// Per thousand checks: tokens presented with a revoked `jti`, and with a revoked session.
const REVOKED_JTI_PER_MILLE: u64 = 10;
const REVOKED_SID_PER_MILLE: u64 = 5;

/// How many entries of each kind.
#[derive(Debug, Clone, Copy)]
struct Mix {
    jtis: u64,
    sids: u64,
    subjects: u64,
}

impl Mix {
    /// 70% token ids, 20% sessions, 10% subjects up to 1 million entries; beyond, only token ids grow: sessions
    /// and subjects are cut off by the longest lifetime whatever it is, token ids pile up with long-lived tokens.
    fn of(entries: u64) -> Self {
        let sids = (entries / 5).min(200_000);
        let subjects = (entries / 10).min(100_000);
        Self { jtis: entries - sids - subjects, sids, subjects }
    }

    /// Users with a "not before" instant are spread evenly over the population.
    fn subject_stride(self) -> u64 {
        (USERS / self.subjects.max(1)).max(1)
    }
}

/// Feeds the index the way the log does, in pages, so that no copy of the whole set is ever resident.
fn build(index: &RevocationIndex, mix: Mix) {
    const PAGE: usize = 10_000;
    let mut rng = Rng::new(7);
    let mut page = Vec::with_capacity(PAGE);
    let mut position = 0;
    let kinds = [(REVOKED_JTI, mix.jtis), (REVOKED_SID, mix.sids), (SUBJECT, mix.subjects)];
    for (family, count) in kinds {
        for n in 0..count {
            let mut id = String::new();
            let revocation = match family {
                REVOKED_JTI => {
                    support::id22(REVOKED_JTI + n, &mut id);
                    Revocation::Token { jti: id, expires_at: NOW + rng.below(DAY as u64) as Millis }
                }
                REVOKED_SID => {
                    support::id22(REVOKED_SID + n, &mut id);
                    Revocation::Session { sid: id }
                }
                _ => {
                    support::id22(SUBJECT + n * mix.subject_stride(), &mut id);
                    Revocation::Subject { sub: id, not_before: NOW - rng.below(DAY as u64) as Millis }
                }
            };
            position += 1;
            let at = NOW - rng.below(DAY as u64) as Millis;
            page.push(RevocationEntry {
                partition: 0,
                id: position,
                at,
                revocation,
                provenance: Provenance::new("", ""),
            });
            if page.len() == PAGE {
                index.apply(&page, NOW);
                page.clear();
            }
        }
    }
    index.apply(&page, NOW);
}

/// A presented token's claims, in reusable buffers.
#[derive(Debug, Default)]
struct Token {
    jti: String,
    sid: String,
    sub: String,
    client_id: String,
    iat_secs: i64,
}

struct Exact {
    index: RevocationIndex,
    mix: Mix,
}

impl Workload for Exact {
    type Probe = Token;

    fn probe(&self) -> Token {
        // No client has a "not before" instant here, so the client map is empty and its lookup skipped.
        Token { client_id: "tessera-web".to_owned(), ..Token::default() }
    }

    fn next(&self, token: &mut Token, rng: &mut Rng) {
        let roll = rng.below(1000);
        let jti = if roll < REVOKED_JTI_PER_MILLE { REVOKED_JTI + rng.below(self.mix.jtis) } else { rng.next() };
        let sid = if (REVOKED_JTI_PER_MILLE..REVOKED_JTI_PER_MILLE + REVOKED_SID_PER_MILLE).contains(&roll) {
            REVOKED_SID + rng.below(self.mix.sids)
        } else {
            rng.next()
        };
        support::id22(jti, &mut token.jti);
        support::id22(sid, &mut token.sid);
        support::id22(SUBJECT + rng.below(USERS), &mut token.sub);
        token.iat_secs = (NOW - rng.below(DAY as u64) as Millis) / 1000;
    }

    fn check(&self, token: &Token) -> bool {
        self.index.is_revoked(&TokenRef {
            jti: Some(&token.jti),
            orig_jti: None,
            sid: Some(&token.sid),
            sub: Some(&token.sub),
            client_id: Some(&token.client_id),
            iat_secs: token.iat_secs,
            // The exact index does not look at it.
            exp_secs: token.iat_secs,
        })
    }
}

/// Checks on one thread while another prunes every [`PRUNE_EVERY`], as the server's sync loop does.
fn while_pruning(exact: &Exact) -> Samples {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                exact.index.prune(NOW);
                std::thread::sleep(PRUNE_EVERY);
            }
        });
        let samples = support::individually(exact, 1, 2_000_000);
        done.store(true, Ordering::Relaxed);
        samples
    })
}

fn main() {
    let mix = Mix::of(support::entries_arg(DEFAULT_ENTRIES));
    let index = RevocationIndex::new(RETENTION);
    let before = support::rss_bytes();
    let ((), build_time) = support::timed(|| build(&index, mix));
    let after = support::rss_bytes();
    let exact = Exact { index, mix };
    let entries = exact.index.len();

    println!(
        "Exact index: {entries} entries ({} jti, {} sid, {} subjects), {USERS} users",
        mix.jtis, mix.sids, mix.subjects
    );
    println!("Built in {:.2} s", build_time.as_secs_f64());
    if let (Some(before), Some(after)) = (before, after) {
        let delta = after.saturating_sub(before);
        println!(
            "Resident memory: +{} ({:.0} bytes per entry; glibc malloc)",
            support::megabytes(delta),
            delta as f64 / entries as f64
        );
    }
    println!();
    support::table(&[
        ("timer overhead (Instant pair)", &|| support::timer_overhead(1_000_000)),
        ("1 thread, each check timed", &|| support::individually(&exact, 1, 2_000_000)),
        ("1 thread, batches of 32", &|| support::in_batches(&exact, 1, 100_000)),
        ("2 threads, each check timed", &|| support::individually(&exact, 2, 1_000_000)),
        ("2 threads, batches of 32", &|| support::in_batches(&exact, 2, 50_000)),
        ("1 thread, each check timed, pruned every 250 ms", &|| while_pruning(&exact)),
    ]);

    // A prune with nothing to drop still visits every entry under the write lock: every check waits meanwhile.
    let (dropped, prune_time) = support::timed(|| exact.index.prune(black_box(NOW)));
    println!();
    println!("Prune (nothing expired, {dropped} dropped): write lock held {:.2} ms", prune_time.as_secs_f64() * 1e3);
}
