//! Passwords: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), always verified on the blocking pool,
//! at most one check per core at a time (see [`HashingQueue`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password (PHC string) with a fresh random salt.
///
/// # Errors
/// When the OS random number generator or argon2 fails.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    crate::secrets::Rng::fill(&crate::secrets::OsRng, &mut salt).map_err(|err| HashError(err.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| HashError(err.to_string()))?;
    Ok(hasher().hash_password(password.as_bytes(), &salt).map_err(|err| HashError(err.to_string()))?.to_string())
}

/// A hash of a password nobody has, verified when the user does not exist, so an unknown user costs the same
/// time as a wrong password.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| hash_password("tessera decoy password").unwrap_or_default());

/// Checks `password` against `hash` (or against the decoy when there is no user), in constant time per hash.
/// Blocking: call it on the blocking pool.
#[must_use]
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or(&DECOY_HASH);
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    hasher().verify_password(password.as_bytes(), &parsed).is_ok() && known
}

/// Password checks admitted at once: one hashing per core, and up to a fixed number waiting for a core; the rest
/// are refused at once. Each check holds 19 MiB for tens of milliseconds of CPU, so without a bound a flood of
/// logins fills the blocking pool (hundreds of threads) and memory with it, while no check runs any faster.
pub(crate) struct HashingQueue {
    cores: Arc<tokio::sync::Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// Why a password check did not run to its end.
#[derive(Debug)]
pub(crate) enum NotChecked {
    /// Every core is hashing and the queue is full: the caller should answer 503 and be retried.
    Busy,
    /// The check panicked on the blocking pool.
    Failed(tokio::task::JoinError),
}

impl HashingQueue {
    /// `parallel` checks at once (at least 1), `queue` more waiting.
    pub(crate) fn new(parallel: usize, queue: usize) -> Self {
        let parallel = parallel.max(1);
        Self {
            cores: Arc::new(tokio::sync::Semaphore::new(parallel)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: parallel.saturating_add(queue),
        }
    }

    /// One check per core ([`std::thread::available_parallelism`]), `queue` waiting.
    pub(crate) fn per_core(queue: usize) -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get), queue)
    }

    /// Runs `check` on the blocking pool once a core is free, or refuses it at once when the queue is full. The
    /// slot is held by the check itself, so a caller that gives up (a client that disconnects) frees it only
    /// when the hashing it started has ended.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NotChecked> {
        let admitted = Admitted::enter(&self.admitted, self.capacity).ok_or(NotChecked::Busy)?;
        // The semaphore is never closed.
        let core = Arc::clone(&self.cores).acquire_owned().await.map_err(|_| NotChecked::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _slot = (admitted, core);
            check()
        })
        .await
        .map_err(NotChecked::Failed)
    }
}

/// One admitted check, counted until it is dropped.
struct Admitted(Arc<AtomicUsize>);

impl Admitted {
    fn enter(count: &Arc<AtomicUsize>, capacity: usize) -> Option<Self> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1)).ok()?;
        Some(Self(Arc::clone(count)))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_checks_runs_one_per_core_queues_a_few_and_refuses_the_rest() {
        let queue = Arc::new(HashingQueue::new(2, 3));
        let (running, most_running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Held by the test: every check that starts waits on it, so none ends before the test says so.
        let hold = Arc::new(tokio::sync::RwLock::new(()));
        let held = hold.write().await;
        let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..10 {
            let (queue, running, most_running, hold, done) =
                (queue.clone(), running.clone(), most_running.clone(), hold.clone(), done.clone());
            tokio::spawn(async move {
                let outcome = queue
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most_running.fetch_max(now, Ordering::SeqCst);
                        drop(hold.blocking_read());
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await;
                done.send(outcome.map_err(|err| matches!(err, NotChecked::Busy))).unwrap();
            });
        }
        // Two running and three waiting fill it: the other five are refused without waiting for anything.
        for _ in 0..5 {
            assert_eq!(outcomes.recv().await.unwrap(), Err(true), "refused as busy");
        }
        while running.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for _ in 0..5 {
            assert_eq!(outcomes.recv().await.unwrap(), Ok(()), "the admitted ones all run");
        }
        assert_eq!(most_running.load(Ordering::SeqCst), 2, "never more than one per core");
        // Everything admitted has left: the queue takes new checks again.
        assert_eq!(queue.run(|| 7).await.ok(), Some(7));
    }

    #[test]
    fn hashes_verify_only_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong", Some(&hash)));
        assert!(!verify_password("tessera decoy password", None), "the decoy never logs anyone in");
        assert!(!verify_password("x", Some("not a phc string")));
    }
}
