//! The weak-secret cracker: tries HMAC secrets from a built-in list, a wordlist, and a bounded brute force of
//! short secrets, on every core, and reports the secret when one signs the token.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

/// Secrets seen in tutorials, defaults and leaks. The empty secret is the "blank password" attack.
pub const BUILTIN_SECRETS: &[&str] = &[
    "",
    "secret",
    "Secret",
    "SECRET",
    "secretkey",
    "secret-key",
    "secret_key",
    "SecretKey",
    "secret123",
    "s3cr3t",
    "password",
    "Password",
    "password123",
    "passw0rd",
    "123456",
    "1234567890",
    "12345678",
    "changeme",
    "changeit",
    "your-256-bit-secret",
    "your-384-bit-secret",
    "your-512-bit-secret",
    "your-secret-key",
    "your_secret_key",
    "your-secret",
    "jwt",
    "jwt_secret",
    "jwtsecret",
    "jwt-secret",
    "JWT_SECRET",
    "jwtSecret",
    "jwt-key",
    "jwtkey",
    "mysecret",
    "my_secret",
    "mysecretkey",
    "my-secret-key",
    "supersecret",
    "super-secret",
    "supersecretkey",
    "topsecret",
    "key",
    "private",
    "privatekey",
    "test",
    "testing",
    "test123",
    "admin",
    "administrator",
    "root",
    "qwerty",
    "letmein",
    "hashcat",
    "default",
    "dev",
    "development",
    "production",
    "staging",
    "shhhhh",
    "keyboard cat",
    "token",
    "auth",
    "authsecret",
    "app_secret",
    "appsecret",
    "api_secret",
    "apisecret",
    "access_token_secret",
    "refresh_token_secret",
    "HS256",
    "hs256",
    "hmac",
    "signing-key",
    "signingkey",
    "example",
    "demo",
    "sample",
    "abc123",
    "welcome",
    "hello",
    "helloworld",
    "iloveyou",
    "monkey",
    "dragon",
    "a",
    "1",
    "x",
    "null",
    "undefined",
    "none",
    "foobar",
    "foo",
    "bar",
    "baz",
    "node",
    "express",
    "django",
    "flask",
    "laravel",
    "spring",
    "rails",
    "symfony",
];

/// Characters of the brute force: lower-case letters and digits.
const BRUTE_FORCE_CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Candidates a thread takes at a time.
const CHUNK: usize = 4096;

/// The HMAC algorithm of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlg {
    /// HS256.
    Hs256,
    /// HS384.
    Hs384,
    /// HS512.
    Hs512,
}

impl HmacAlg {
    /// From the `alg` header value.
    #[must_use]
    pub fn from_name(alg: &str) -> Option<Self> {
        match alg {
            "HS256" => Some(Self::Hs256),
            "HS384" => Some(Self::Hs384),
            "HS512" => Some(Self::Hs512),
            _ => None,
        }
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Self::Hs256 => hmac::HMAC_SHA256,
            Self::Hs384 => hmac::HMAC_SHA384,
            Self::Hs512 => hmac::HMAC_SHA512,
        }
    }
}

/// Where candidates come from, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Secrets from a wordlist (one per line).
    pub wordlist: Vec<Vec<u8>>,
    /// Brute-force every lower-case alphanumeric secret up to this length (0: none).
    pub brute_force_max_len: usize,
}

impl Candidates {
    /// Reads a wordlist in the common `jwt.secrets.list` format: one secret per line, LF or CRLF line ends.
    #[must_use]
    pub fn parse_wordlist(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// How many brute-force candidates there are.
    fn brute_force_count(&self) -> u64 {
        let base = BRUTE_FORCE_CHARSET.len() as u64;
        (1..=self.brute_force_max_len).map(|len| base.saturating_pow(u32::try_from(len).unwrap_or(u32::MAX))).sum()
    }
}

/// The brute-force candidate with this index: all length-1 secrets, then length 2, ...
fn brute_force_candidate(mut index: u64, out: &mut Vec<u8>) {
    let base = BRUTE_FORCE_CHARSET.len() as u64;
    let mut len = 1u32;
    while index >= base.saturating_pow(len) {
        index -= base.saturating_pow(len);
        len += 1;
    }
    out.clear();
    for _ in 0..len {
        let digit = usize::try_from(index % base).unwrap_or(0);
        out.push(BRUTE_FORCE_CHARSET.get(digit).copied().unwrap_or(b'a'));
        index /= base;
    }
}

/// Progress, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Candidates tried so far.
    pub tried: u64,
    /// Candidates in all.
    pub total: u64,
    /// Since the start.
    pub elapsed: Duration,
}

/// What cracking found.
#[derive(Debug, Clone, PartialEq)]
pub struct CrackOutcome {
    /// The secret that signs the token, if one was found.
    pub secret: Option<Vec<u8>>,
    /// Candidates tried.
    pub tried: u64,
    /// Candidates in all (the run stops early when one is found).
    pub total: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl CrackOutcome {
    /// Candidates tried per second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        self.tried as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Tries every candidate (built-in list, wordlist, brute force) against the token's signature, on `threads`
/// threads. Calls `progress` about five times a second from the calling thread.
pub fn crack(
    alg: HmacAlg,
    signing_input: &[u8],
    signature: &[u8],
    candidates: &Candidates,
    threads: usize,
    progress: &mut dyn FnMut(Progress),
) -> CrackOutcome {
    let builtin: Vec<&[u8]> = BUILTIN_SECRETS.iter().map(|s| s.as_bytes()).collect();
    let listed = builtin.len() + candidates.wordlist.len();
    let total = listed as u64 + candidates.brute_force_count();
    let next = AtomicUsize::new(0);
    let tried = AtomicU64::new(0);
    let found = AtomicBool::new(false);
    let secret = Mutex::new(None);
    let started = Instant::now();
    let algorithm = alg.algorithm();

    let try_one = |candidate: &[u8]| {
        let tag = hmac::sign(&hmac::Key::new(algorithm, candidate), signing_input);
        if tag.as_ref() == signature {
            found.store(true, Ordering::SeqCst);
            if let Ok(mut slot) = secret.lock() {
                *slot = Some(candidate.to_vec());
            }
        }
    };
    let work = || {
        let mut buffer = Vec::new();
        loop {
            if found.load(Ordering::Relaxed) {
                return;
            }
            let start = next.fetch_add(CHUNK, Ordering::Relaxed) as u64;
            if start >= total {
                return;
            }
            let end = (start + CHUNK as u64).min(total);
            for index in start..end {
                let i = usize::try_from(index).unwrap_or(usize::MAX);
                if let Some(word) = builtin.get(i) {
                    try_one(word);
                } else if let Some(word) =
                    candidates.wordlist.get(i.saturating_sub(builtin.len())).filter(|_| i < listed)
                {
                    try_one(word);
                } else {
                    brute_force_candidate(index - listed as u64, &mut buffer);
                    try_one(&buffer);
                }
            }
            tried.fetch_add(end - start, Ordering::Relaxed);
        }
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1)).map(|_| scope.spawn(work)).collect();
        let mut last_report = Instant::now();
        while !workers.iter().all(std::thread::ScopedJoinHandle::is_finished) {
            if last_report.elapsed() >= Duration::from_millis(200) {
                progress(Progress { tried: tried.load(Ordering::Relaxed), total, elapsed: started.elapsed() });
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let secret = secret.into_inner().unwrap_or(None);
    CrackOutcome { secret, tried: tried.load(Ordering::Relaxed), total, elapsed: started.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let input = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0".to_vec();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &input).as_ref().to_vec();
        (input, tag)
    }

    #[test]
    fn brute_force_enumerates_every_short_secret_once() {
        let mut seen = std::collections::HashSet::new();
        let mut buffer = Vec::new();
        for index in 0..(36 + 36 * 36) {
            brute_force_candidate(index, &mut buffer);
            assert!(seen.insert(buffer.clone()));
        }
        assert!(seen.contains(b"z9".as_slice()) && seen.contains(b"0".as_slice()));
        assert_eq!(Candidates { brute_force_max_len: 2, ..Candidates::default() }.brute_force_count(), 36 + 1296);
    }

    #[test]
    fn finds_secrets_from_each_source_and_bounds_the_run() {
        for (secret, candidates) in [
            (&b"your-256-bit-secret"[..], Candidates::default()),
            (b"", Candidates::default()),
            (
                b"tessera-wordlist-entry",
                Candidates {
                    wordlist: vec![b"x".to_vec(), b"tessera-wordlist-entry".to_vec()],
                    ..Candidates::default()
                },
            ),
            (b"q7z", Candidates { brute_force_max_len: 3, ..Candidates::default() }),
        ] {
            let (input, tag) = signed(secret);
            let outcome = crack(HmacAlg::Hs256, &input, &tag, &candidates, 2, &mut |_| {});
            assert_eq!(outcome.secret.as_deref(), Some(secret));
        }
        let strong = [0x5au8; 32];
        let (input, tag) = signed(&strong);
        let candidates = Candidates { brute_force_max_len: 2, ..Candidates::default() };
        let outcome = crack(HmacAlg::Hs256, &input, &tag, &candidates, 2, &mut |_| {});
        assert_eq!(outcome.secret, None);
        assert_eq!(outcome.tried, outcome.total, "every candidate tried, and no more");
    }

    #[test]
    fn wordlists_tolerate_crlf() {
        assert_eq!(Candidates::parse_wordlist(b"a\r\nb\n\r\nc"), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }
}
