//! # Compact mode: a time-bucketed prefilter for revoked token ids
//!
//! For deployments with long-lived tokens (service tokens, 24 h access tokens) the set of revoked `jti`s that can
//! still match a valid token grows large: the reference design keeps 50 million for 24 h. Holding them as strings
//! in every verifier costs gigabytes, so compact mode keeps only a probabilistic prefilter in process and leaves the
//! exact set to Redis or the local exact store.
//!
//! - **A check answers [`Verdict::No`] or [`Verdict::Maybe`].** `No` is certain: the filter has no false
//!   negatives, so a revoked token is never let through. `Maybe` must be confirmed by an exact lookup
//!   ([`Verdict::confirm`]); a false positive then costs one exact lookup and never rejects a valid token.
//! - **Buckets by token expiry.** Each revoked `jti` lands in the bucket of its token's `exp` (one hour wide for
//!   24 h tokens: 25 live buckets), and a check looks only in the bucket of the presented token's `exp`, so
//!   false-positive rates do not add up across buckets. Once every token a bucket can hold is past `exp` plus
//!   leeway, the whole bucket is dropped ([`Prefilter::drop_expired`]): no per-entry sweep.
//! - **Keyed hashing.** Positions come from a keyed hash ([`RandomState`] by default: SipHash with a random
//!   per-process key from the OS), so nobody can craft identifiers that pile into one place or collide on purpose.
//!   Tests inject a fixed hasher ([`Prefilter::with_hasher`]) to be deterministic.
//!
//! ## Why a cuckoo filter with 13-bit fingerprints
//!
//! The budget is at most 0.1% false positives and at most 90 MB for 50 million entries: 14.4 bits per entry.
//!
//! | structure | bits/entry for 0.1% | 50 M entries | cache lines read per check |
//! |---|---:|---:|---:|
//! | classic Bloom (k = 10) | 14.38 | 89.9 MB: no margin at all | up to 10 |
//! | blocked Bloom, 512-bit blocks (k = 9) | 15.5 (0.153% at 14.4) | 96.9 MB | 1 |
//! | split-block Bloom, 256-bit blocks (k = 8) | ~17 (0.223% at 14.4) | ~106 MB | 1 |
//! | binary fuse, 8 / 16-bit fingerprints | 9.0 (0.39%) / 18.0 | 56 MB ✘ rate / 112 MB | 3 (close together) |
//! | **cuckoo, 4 slots × 13 bits, 95% full** | **13.7 (0.093%)** | **85.5 MB** | **2 (independent)** |
//!
//! (Blocked-Bloom rates are the Poisson average over block loads, the exact form of the usual approximation.)
//! Blocked Bloom filters, the fastest kind, cannot meet both numbers: packing a key's bits into one block costs
//! about one bit per entry. Binary fuse and xor filters are smaller but static: they are built from every key at
//! once, and a bucket keyed by expiry takes revocations until its tokens expire, so it is never sealed while it
//! still matters; keeping the keys to rebuild it would cost more than the filter. A cuckoo filter takes inserts at
//! any time, needs `13 / 0.95 = 13.7` bits per entry, and its rate is `8 × load / 8191` (a lookup compares eight
//! slots with 13-bit fingerprints, zero meaning empty): 0.093% when full. Its two candidate buckets are read with
//! two independent loads that the CPU issues together, so a check costs about one memory latency.
//!
//! ## Sizing and growth
//!
//! Each time bucket starts with one segment: a cuckoo filter sized for
//! [`PrefilterConfig::bucket_capacity`] entries at 95% load. A bucket never refuses a revocation — a token can be
//! revoked at any moment before it expires: once its segment holds its capacity (or an insert finds no place, which
//! sends the last displaced fingerprint to a small stash), the bucket grows by another segment of the same size.
//! A check then reads every segment of its bucket, so an overfull bucket's false-positive rate adds up (two full
//! segments ≈ 0.19%): size `bucket_capacity` for the busiest bucket. Memory follows the configured capacity, not
//! the entries held: a bucket fills during its tokens' whole lifetime, so with revocations spread evenly the live
//! buckets are on average about half full.
//!
//! ## Limits
//!
//! A check needs the token's exact `exp` to pick its bucket. When only bounds are known — the `orig_jti` of a
//! token-exchange result — insert and check take an `exp` range: an insert then lands in every bucket of the range
//! (memory per such entry grows with the range), and a check reads every live bucket of the range (its
//! false-positive rate adds up over them). A `jti` revoked alone by an operator has no known `exp`; the index
//! keeps those exactly, outside the prefilter.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::RangeInclusive;

use tessera_model::Millis;

use crate::Retention;

/// Bits per fingerprint: `8 / 8191` ≈ 0.098% false positives for a full filter, before the load factor.
const FINGERPRINT_BITS: u32 = 13;
const FINGERPRINT_MASK: u64 = (1 << FINGERPRINT_BITS) - 1;
/// Fingerprint values: 1..=8191, zero marks an empty slot.
const FINGERPRINT_VALUES: u64 = FINGERPRINT_MASK;
/// Slots per cuckoo bucket: four is what lets a cuckoo table fill to 95%.
const SLOTS: usize = 4;
/// A cuckoo bucket's bits, packed back to back (a `u64` per bucket would cost 16 bits per slot).
const BUCKET_BITS: usize = SLOTS * FINGERPRINT_BITS as usize;
const BUCKET_MASK: u64 = (1 << BUCKET_BITS) - 1;
/// The load each segment is sized for, in percent: four-slot cuckoo tables fill to about 95% before inserts fail.
const LOAD_PERCENT: usize = 95;
/// Displacements tried before an insert gives up on a segment (the cuckoo-filter paper's choice).
const MAX_KICKS: usize = 500;

/// Why a prefilter was not created or an identifier not inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// A bucket must be at least one millisecond wide.
    #[error("the bucket width must be positive")]
    ZeroWidth,
    /// A bucket must be able to hold something.
    #[error("the bucket capacity must be positive")]
    ZeroCapacity,
    /// The `exp` range ends before it starts.
    #[error("the expiry range is empty")]
    EmptyRange,
    /// The `exp` range spans more buckets than any token's lifetime: nothing that wide can be a real token.
    #[error("the expiry range spans {buckets} buckets, more than {limit}")]
    RangeTooWide {
        /// Buckets the range spans.
        buckets: u64,
        /// The most a range may span: a token's longest lifetime, twice the leeway, and the buckets at either end.
        limit: u64,
    },
}

/// What a [`Prefilter`] holds and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefilterConfig {
    /// The longest token lifetime and the `exp` leeway: a bucket is dropped once its latest `exp` plus leeway has
    /// passed.
    pub retention: Retention,
    /// How wide a bucket is, in milliseconds of `exp`. One hour suits 24 h tokens: 25 live buckets, each dropped
    /// whole an hour after it stops mattering.
    pub bucket_width_ms: Millis,
    /// The revocations one bucket is sized for (its first segment). Beyond it a bucket grows, and its checks'
    /// false-positive rate with it.
    pub bucket_capacity: usize,
}

impl PrefilterConfig {
    /// The most buckets one `exp` range may span.
    fn span_limit(&self) -> u64 {
        let longest = self.retention.max_token_lifetime_ms.saturating_add(self.retention.leeway_ms.saturating_mul(2));
        u64::try_from(longest / self.bucket_width_ms).unwrap_or(0).saturating_add(2)
    }
}

/// A prefilter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Not revoked: certain.
    No,
    /// Possibly revoked: only an exact lookup can tell (about 0.09% of unrevoked tokens get this answer while no
    /// bucket holds more than its capacity).
    Maybe,
}

impl Verdict {
    /// Whether the token is revoked: `No` is final, `Maybe` is settled by `exact`, the lookup in the exact store.
    /// A false positive therefore never rejects a valid token. If the exact store cannot answer, `exact` should
    /// say "revoked": the check then fails closed, as the in-process index does.
    #[must_use]
    pub fn confirm(self, exact: impl FnOnce() -> bool) -> bool {
        match self {
            Self::No => false,
            Self::Maybe => exact(),
        }
    }
}

/// The time-bucketed prefilter of revoked `jti`s (see the [module documentation](self)).
///
/// Checks take `&self` and never write, so verifiers can share it behind a read lock; inserts and
/// [`drop_expired`](Self::drop_expired) take `&mut self`.
#[derive(Debug, Clone)]
pub struct Prefilter<S = RandomState> {
    config: PrefilterConfig,
    hasher: S,
    /// Bucket number (`exp` divided by the width) → its filter.
    buckets: BTreeMap<i64, TimeBucket>,
    /// Buckets numbered below this were dropped or never mattered: every token they could hold has expired.
    first_live: i64,
}

impl Prefilter<RandomState> {
    /// An empty prefilter keyed with a random per-process key.
    ///
    /// # Errors
    /// [`CompactError::ZeroWidth`] or [`CompactError::ZeroCapacity`].
    pub fn new(config: PrefilterConfig) -> Result<Self, CompactError> {
        Self::with_hasher(config, RandomState::new())
    }
}

impl<S: BuildHasher> Prefilter<S> {
    /// An empty prefilter hashing with `hasher`. Production wants a random key ([`Prefilter::new`]); tests and
    /// reproducible measurements pass a fixed one.
    ///
    /// # Errors
    /// [`CompactError::ZeroWidth`] or [`CompactError::ZeroCapacity`].
    pub fn with_hasher(config: PrefilterConfig, hasher: S) -> Result<Self, CompactError> {
        if config.bucket_width_ms <= 0 {
            return Err(CompactError::ZeroWidth);
        }
        if config.bucket_capacity == 0 {
            return Err(CompactError::ZeroCapacity);
        }
        Ok(Self { config, hasher, buckets: BTreeMap::new(), first_live: i64::MIN })
    }

    /// Records a revoked `jti` whose token expires within `exp` (milliseconds; `exp..=exp` when the token's `exp`
    /// is known, which is what keeps the filter small). Buckets already dropped are skipped: their tokens have
    /// expired. Inserting the same `jti` again changes nothing.
    ///
    /// # Errors
    /// [`CompactError::EmptyRange`], or [`CompactError::RangeTooWide`] for a range longer than any token lives.
    pub fn insert(&mut self, jti: &str, exp: RangeInclusive<Millis>) -> Result<(), CompactError> {
        let (first, last) = self.bucket_span(&exp).ok_or(CompactError::EmptyRange)?;
        let buckets = last.abs_diff(first).saturating_add(1);
        let limit = self.config.span_limit();
        if buckets > limit {
            return Err(CompactError::RangeTooWide { buckets, limit });
        }
        let hash = self.hasher.hash_one(jti);
        for number in first.max(self.first_live)..=last {
            self.buckets.entry(number).or_default().insert(hash, self.config.bucket_capacity);
        }
        Ok(())
    }

    /// Whether a token with this `jti`, expiring within `exp` (`exp..=exp` for a presented token), may be revoked.
    /// An empty range answers [`Verdict::Maybe`]: the exact store decides.
    pub fn check(&self, jti: &str, exp: RangeInclusive<Millis>) -> Verdict {
        let Some((first, last)) = self.bucket_span(&exp) else { return Verdict::Maybe };
        let hash = self.hasher.hash_one(jti);
        let may_hold = |bucket: &TimeBucket| bucket.may_hold(hash);
        let maybe = if first == last {
            // A presented token's own `exp`: one map lookup costs a fraction of a range walk.
            self.buckets.get(&first).is_some_and(may_hold)
        } else {
            self.buckets.range(first..=last).any(|(_, bucket)| may_hold(bucket))
        };
        if maybe {
            Verdict::Maybe
        } else {
            Verdict::No
        }
    }

    /// Drops every bucket whose tokens have all expired at `now` (their latest `exp` plus leeway has passed);
    /// returns how many. Their memory goes back at once.
    pub fn drop_expired(&mut self, now: Millis) -> usize {
        let first_live = self.bucket_of(now.saturating_sub(self.config.retention.leeway_ms));
        if first_live <= self.first_live {
            return 0;
        }
        self.first_live = first_live;
        let before = self.buckets.len();
        self.buckets = self.buckets.split_off(&first_live);
        before - self.buckets.len()
    }

    /// Fingerprints held, over all buckets (a `jti` inserted into several buckets counts in each).
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets.values().flat_map(|bucket| &bucket.segments).map(|segment| segment.len).sum()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live buckets and the segments they hold: more segments than buckets means some bucket outgrew its capacity.
    #[must_use]
    pub fn shape(&self) -> (usize, usize) {
        (self.buckets.len(), self.buckets.values().map(|bucket| bucket.segments.len()).sum())
    }

    /// Bytes allocated for the filters.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        self.buckets.values().flat_map(|bucket| &bucket.segments).map(Segment::memory_bytes).sum()
    }

    fn bucket_of(&self, ms: Millis) -> i64 {
        ms.div_euclid(self.config.bucket_width_ms)
    }

    /// The first and last bucket numbers of an `exp` range, if it is not empty.
    fn bucket_span(&self, exp: &RangeInclusive<Millis>) -> Option<(i64, i64)> {
        (exp.start() <= exp.end()).then(|| (self.bucket_of(*exp.start()), self.bucket_of(*exp.end())))
    }
}

/// One time bucket: its segments, oldest first. Only the last takes inserts.
#[derive(Debug, Clone, Default)]
struct TimeBucket {
    segments: Vec<Segment>,
}

impl TimeBucket {
    fn may_hold(&self, hash: u64) -> bool {
        self.segments.iter().any(|segment| segment.may_hold(hash))
    }

    fn insert(&mut self, hash: u64, capacity: usize) {
        if self.may_hold(hash) {
            // Already answers "maybe" for this identifier: a second copy would only take a slot.
            return;
        }
        match self.segments.last_mut() {
            Some(segment) if !segment.is_full() => segment.insert(hash),
            _ => {
                let mut segment = Segment::new(capacity);
                segment.insert(hash);
                self.segments.push(segment);
            }
        }
    }
}

/// Where a hash goes in a segment: two candidate buckets and a fingerprint.
#[derive(Debug, Clone, Copy)]
struct Probe {
    first: usize,
    second: usize,
    fingerprint: u64,
}

/// A fingerprint that found no place in its segment's table.
#[derive(Debug, Clone, Copy)]
struct Stashed {
    bucket: usize,
    fingerprint: u64,
}

/// A cuckoo filter: `buckets` buckets of four 13-bit fingerprints, packed 52 bits apart.
#[derive(Clone)]
struct Segment {
    words: Vec<u64>,
    buckets: usize,
    capacity: usize,
    len: usize,
    /// At most one fingerprint: an insert that ends here marks the segment full.
    stash: Vec<Stashed>,
    /// Chooses which slot to displace; any sequence works, this one is cheap and reproducible.
    rng: u64,
}

// By hand: the derived form would print every word of the table, megabytes of them.
impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("buckets", &self.buckets)
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("stashed", &self.stash.len())
            .finish_non_exhaustive()
    }
}

/// `⌊x · n / 2⁶⁴⌋`: maps a uniform 64-bit value onto `0..n` without a division.
fn scale(x: u64, n: usize) -> usize {
    let wide = (u128::from(x) * n as u128) >> 64;
    usize::try_from(wide).unwrap_or(0)
}

/// Spreads a fingerprint's 13 bits over 64 for [`scale`] (a multiplicative hash by 2⁶⁴ / φ).
fn spread(fingerprint: u64) -> u64 {
    fingerprint.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn slot(bucket: u64, index: usize) -> u64 {
    (bucket >> (index * FINGERPRINT_BITS as usize)) & FINGERPRINT_MASK
}

fn holds(bucket: u64, fingerprint: u64) -> bool {
    (0..SLOTS).any(|index| slot(bucket, index) == fingerprint)
}

impl Segment {
    fn new(capacity: usize) -> Self {
        let buckets = capacity.saturating_mul(100).div_ceil(SLOTS * LOAD_PERCENT).max(1);
        // One spare word so that reading a bucket's two words never leaves the vector.
        let words = (buckets * BUCKET_BITS).div_ceil(64) + 1;
        Self { words: vec![0; words], buckets, capacity, len: 0, stash: Vec::new(), rng: 0x2545_F491_4F6C_DD1D }
    }

    fn memory_bytes(&self) -> usize {
        self.words.capacity() * 8 + self.stash.capacity() * std::mem::size_of::<Stashed>()
    }

    fn is_full(&self) -> bool {
        self.len >= self.capacity || !self.stash.is_empty()
    }

    fn probe(&self, hash: u64) -> Probe {
        // The high bits place the hash, the low 32 bits make the fingerprint: the two are independent.
        let first = scale(hash, self.buckets);
        let fingerprint = (((hash & 0xFFFF_FFFF) * FINGERPRINT_VALUES) >> 32) + 1;
        Probe { first, second: self.alternate(first, fingerprint), fingerprint }
    }

    /// The other candidate bucket: `(h(f) − i) mod n`, its own inverse, so a displaced fingerprint finds its way
    /// back without the key (the xor form of the cuckoo-filter paper needs a power-of-two table).
    fn alternate(&self, bucket: usize, fingerprint: u64) -> usize {
        let target = scale(spread(fingerprint), self.buckets);
        if target >= bucket {
            target - bucket
        } else {
            target + self.buckets - bucket
        }
    }

    fn read(&self, bucket: usize) -> u64 {
        let bit = bucket * BUCKET_BITS;
        let (word, offset) = (bit / 64, bit % 64);
        let low = self.words.get(word).copied().unwrap_or(0) >> offset;
        // A bucket that starts past bit 12 of a word runs on into the next.
        let high = match offset {
            0..=12 => 0,
            _ => self.words.get(word + 1).copied().unwrap_or(0) << (64 - offset),
        };
        (low | high) & BUCKET_MASK
    }

    fn write(&mut self, bucket: usize, value: u64) {
        let bit = bucket * BUCKET_BITS;
        let (word, offset) = (bit / 64, bit % 64);
        if let Some(low) = self.words.get_mut(word) {
            *low = (*low & !(BUCKET_MASK << offset)) | (value << offset);
        }
        if offset > 12 {
            if let Some(high) = self.words.get_mut(word + 1) {
                let shift = 64 - offset;
                *high = (*high & !(BUCKET_MASK >> shift)) | (value >> shift);
            }
        }
    }

    fn may_hold(&self, hash: u64) -> bool {
        let probe = self.probe(hash);
        // Both buckets are read before either is tested, so the two loads go out together.
        let (first, second) = (self.read(probe.first), self.read(probe.second));
        holds(first, probe.fingerprint)
            || holds(second, probe.fingerprint)
            || self.stash.iter().any(|stashed| {
                stashed.fingerprint == probe.fingerprint
                    && (stashed.bucket == probe.first || stashed.bucket == probe.second)
            })
    }

    /// Puts the fingerprint into a free slot of the bucket, if it has one.
    fn place(&mut self, bucket: usize, fingerprint: u64) -> bool {
        let value = self.read(bucket);
        let Some(free) = (0..SLOTS).find(|&index| slot(value, index) == 0) else { return false };
        self.write(bucket, value | (fingerprint << (free * FINGERPRINT_BITS as usize)));
        true
    }

    /// Inserts a hash the segment does not hold yet. Never fails: a fingerprint that finds no place after
    /// [`MAX_KICKS`] displacements is stashed, and the segment counts as full from then on.
    fn insert(&mut self, hash: u64) {
        let probe = self.probe(hash);
        self.len += 1;
        if self.place(probe.first, probe.fingerprint) || self.place(probe.second, probe.fingerprint) {
            return;
        }
        let (mut bucket, mut fingerprint) = (probe.first, probe.fingerprint);
        for _ in 0..MAX_KICKS {
            // xorshift64: a new slot to displace each round.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let victim_slot = (self.rng % SLOTS as u64) as usize * FINGERPRINT_BITS as usize;
            let value = self.read(bucket);
            let victim = (value >> victim_slot) & FINGERPRINT_MASK;
            self.write(bucket, (value & !(FINGERPRINT_MASK << victim_slot)) | (fingerprint << victim_slot));
            fingerprint = victim;
            bucket = self.alternate(bucket, fingerprint);
            if self.place(bucket, fingerprint) {
                return;
            }
        }
        self.stash.push(Stashed { bucket, fingerprint });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use std::hash::{BuildHasherDefault, DefaultHasher};

    use proptest::prelude::*;

    use super::*;

    /// SipHash with a fixed key: the same positions in every run.
    type Fixed = BuildHasherDefault<DefaultHasher>;

    const HOUR: Millis = 3_600_000;
    const CONFIG: PrefilterConfig = PrefilterConfig {
        retention: Retention { max_token_lifetime_ms: 24 * HOUR, leeway_ms: 60_000 },
        bucket_width_ms: HOUR,
        bucket_capacity: 50_000,
    };

    fn filter(config: PrefilterConfig) -> Prefilter<Fixed> {
        Prefilter::with_hasher(config, Fixed::default()).unwrap()
    }

    /// A token id shaped like Tessera's (22 base64url characters), distinct per `n`.
    fn jti(n: u64) -> String {
        format!("{n:0>22}")
    }

    /// `exp` of the `n`th token: spread over a day of buckets.
    fn exp(n: u64) -> Millis {
        (n % 24) as Millis * HOUR + (n % 977) as Millis * 1_000
    }

    #[test]
    fn false_positives_stay_under_a_tenth_of_a_percent() {
        // 200,000 entries over 4 buckets, each filled to its capacity: the design point of a full bucket.
        let mut prefilter = filter(PrefilterConfig { bucket_capacity: 50_000, ..CONFIG });
        let exp = |n: u64| (n % 4) as Millis * HOUR;
        for n in 0..200_000 {
            prefilter.insert(&jti(n), exp(n)..=exp(n)).unwrap();
        }
        assert_eq!(prefilter.shape(), (4, 4), "every bucket holds its capacity in one segment");
        let probes = 1_000_000;
        let positives =
            (1_000_000..1_000_000 + probes).filter(|&n| prefilter.check(&jti(n), exp(n)..=exp(n)) == Verdict::Maybe);
        let rate = positives.count() as f64 / probes as f64;
        assert!(rate <= 0.001, "false-positive rate {rate}");
        assert!(rate > 0.0004, "a rate far below 8 × 0.95 / 8191 means the filter is not the one described: {rate}");
        // 13.7 bits per entry at 95% load.
        let bits = prefilter.memory_bytes() as f64 * 8.0 / 200_000.0;
        assert!((13.6..13.8).contains(&bits), "{bits} bits per entry");
    }

    #[test]
    fn overfull_buckets_grow_and_keep_every_entry() {
        let mut prefilter = filter(PrefilterConfig { bucket_capacity: 1_000, ..CONFIG });
        for n in 0..3_500 {
            prefilter.insert(&jti(n), 0..=0).unwrap();
        }
        assert_eq!(prefilter.shape(), (1, 4), "3,500 entries take four segments of 1,000");
        // An id that already answers "maybe" (a false positive of an earlier one) takes no slot: a handful here.
        assert!((3_480..=3_500).contains(&prefilter.len()), "{}", prefilter.len());
        assert!((0..3_500).all(|n| prefilter.check(&jti(n), 0..=0) == Verdict::Maybe));
    }

    #[test]
    fn a_segment_filled_past_its_load_stashes_and_loses_nothing() {
        // Drive one segment well beyond 95% directly: inserts must start failing, and what fails is stashed.
        let mut segment = Segment::new(400);
        let hasher = Fixed::default();
        let hashes: Vec<u64> = (0..440u64).map(|n| hasher.hash_one(jti(n))).collect();
        let mut inserted = Vec::new();
        for &hash in &hashes {
            if segment.may_hold(hash) {
                continue;
            }
            segment.insert(hash);
            inserted.push(hash);
            if !segment.stash.is_empty() {
                break;
            }
        }
        assert!(!segment.stash.is_empty(), "a table at 100% load cannot place everything");
        assert!(segment.is_full());
        assert!(inserted.iter().all(|&hash| segment.may_hold(hash)), "no false negatives after a failed insert");
    }

    #[test]
    fn a_check_looks_only_in_its_own_bucket() {
        let mut prefilter = filter(CONFIG);
        prefilter.insert("revoked", 5 * HOUR..=5 * HOUR).unwrap();
        assert_eq!(prefilter.check("revoked", 5 * HOUR + 1_000..=5 * HOUR + 1_000), Verdict::Maybe, "same hour");
        assert_eq!(prefilter.check("revoked", 6 * HOUR..=6 * HOUR), Verdict::No, "another bucket");
        assert_eq!(prefilter.check("revoked", 0..=24 * HOUR), Verdict::Maybe, "a range reads every bucket in it");
        assert_eq!(
            prefilter.check("revoked", RangeInclusive::new(1, 0)),
            Verdict::Maybe,
            "an empty range leaves it to the exact store"
        );
    }

    #[test]
    fn ranges_cover_every_bucket_and_are_bounded() {
        let mut prefilter = filter(CONFIG);
        // An operator revoking a bare jti at 10 h: the token expires somewhere in the next lifetime.
        prefilter.insert("bare", 10 * HOUR - 60_000..=34 * HOUR).unwrap();
        assert_eq!(prefilter.shape(), (26, 26), "hours 9 to 34");
        assert!((9..=34).all(|hour| prefilter.check("bare", hour * HOUR..=hour * HOUR) == Verdict::Maybe));
        assert_eq!(prefilter.insert("x", 0..=100 * HOUR), Err(CompactError::RangeTooWide { buckets: 101, limit: 26 }));
        assert_eq!(prefilter.insert("x", RangeInclusive::new(1, 0)), Err(CompactError::EmptyRange));
        let bad = |config| Prefilter::new(config).map(|_| ()).unwrap_err();
        assert_eq!(bad(PrefilterConfig { bucket_width_ms: 0, ..CONFIG }), CompactError::ZeroWidth);
        assert_eq!(bad(PrefilterConfig { bucket_capacity: 0, ..CONFIG }), CompactError::ZeroCapacity);
    }

    #[test]
    fn expired_buckets_drop_whole_and_give_their_memory_back() {
        let mut prefilter = filter(CONFIG);
        for n in 0..1_000 {
            prefilter.insert(&jti(n), exp(n)..=exp(n)).unwrap();
        }
        assert_eq!(prefilter.shape().0, 24);
        let per_bucket = prefilter.memory_bytes() / 24;
        // Bucket 0 holds exp in [0, 1 h): its tokens are valid until 1 h − 1 ms + leeway.
        assert_eq!(prefilter.drop_expired(HOUR - 1 + 60_000), 0);
        assert_eq!(prefilter.drop_expired(HOUR + 60_000), 1);
        assert_eq!(prefilter.memory_bytes(), 23 * per_bucket);
        assert_eq!(prefilter.drop_expired(24 * HOUR + 60_000), 23);
        assert!(prefilter.is_empty());
        assert_eq!(prefilter.memory_bytes(), 0);
        // A late revocation of a token that has expired is not kept; a live one is.
        prefilter.insert("late", 0..=0).unwrap();
        assert!(prefilter.is_empty());
        prefilter.insert("live", 30 * HOUR..=30 * HOUR).unwrap();
        assert_eq!(prefilter.len(), 1);
    }

    #[test]
    fn confirmation_settles_maybe_only() {
        assert!(!Verdict::No.confirm(|| unreachable!("a certain no needs no lookup")));
        assert!(Verdict::Maybe.confirm(|| true));
        assert!(!Verdict::Maybe.confirm(|| false), "a false positive does not reject the token");
    }

    #[test]
    fn reinserting_changes_nothing() {
        let mut prefilter = filter(CONFIG);
        for _ in 0..3 {
            prefilter.insert("again", HOUR..=HOUR).unwrap();
        }
        assert_eq!(prefilter.len(), 1);
        let debug = format!("{prefilter:?}");
        assert!(debug.contains("len: 1") && debug.len() < 1_000, "a summary, not the table: {debug}");
    }

    proptest! {
        /// No false negatives, whatever the identifiers and however full the buckets (capacity 64, so most cases
        /// overflow into further segments and fill tables to the point where inserts displace and stash).
        #[test]
        fn every_inserted_identifier_is_found(
            entries in prop::collection::vec(("[a-zA-Z0-9_-]{1,40}", 0i64..4 * HOUR), 1..400),
        ) {
            let mut prefilter = filter(PrefilterConfig { bucket_capacity: 64, ..CONFIG });
            for (jti, exp) in &entries {
                prefilter.insert(jti, *exp..=*exp).unwrap();
            }
            for (jti, exp) in &entries {
                prop_assert_eq!(prefilter.check(jti, *exp..=*exp), Verdict::Maybe);
            }
        }
    }
}
