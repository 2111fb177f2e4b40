//! Refresh tokens and CSRF tokens: derived with HMAC under server secrets, so the store keeps only a session id
//! and a generation, and a database dump alone yields no usable token.
//!
//! A refresh token is `base64url(2 ‖ key id ‖ sid(16) ‖ generation(8, big-endian) ‖ HMAC-SHA256(key, …))`: 58
//! bytes, 256 bits of MAC. It is unforgeable without the key and can be derived again on demand, which is what
//! lets a replay inside the grace window get the very same successor: a client whose answer was lost retries
//! with the token it holds and must receive what it missed, not a second, diverging successor (see
//! "Rotation and theft detection" in `docs/service.md`).
//! A CSRF token is `base64url(key id ‖ HMAC-SHA256(key, key id ‖ sid))`.
//!
//! What the authorization endpoint hands a browser or a client to carry back — an authorization code, a pushed
//! request's `request_uri`, the request held in the login and consent forms, the login cookie — is *sealed*:
//! `base64url(3 ‖ key id ‖ nonce(12) ‖ AES-256-GCM(…))` under a key derived from the refresh MAC key, with the
//! purpose as associated data, so one kind can never be passed off as another and none can be read or forged.
//!
//! The MAC keys rotate (see `tessera_keys::SecretRing`): each token names the version of the key it was made
//! with, and every accepted version (the active one, its predecessor, the one scheduled next) opens it. Tokens
//! from before keys rotated (a version byte of 1, a bare 32-byte CSRF MAC) carry no key id: they name version 0,
//! the key as it was stored then, and stay valid until that version is dropped.
//!
//! Which version makes a session's refresh token is not stored: it is the version that was issuing when that
//! generation was issued (`generation_issued_at`, kept with the session). Deriving the token again — a replay
//! inside the grace window — thus yields the very same successor even after a rotation in between.

use arc_swap::ArcSwap;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::{aead, hmac};
use tessera_jose::base64url;
use tessera_keys::SecretVersion;

const LEGACY_VERSION: u8 = 1;
const VERSION: u8 = 2;
const SID_LEN: usize = 16;
const MAC_LEN: usize = 32;
const LEGACY_TOKEN_LEN: usize = 1 + SID_LEN + 8 + MAC_LEN;
const TOKEN_LEN: usize = 2 + SID_LEN + 8 + MAC_LEN;
/// The first byte of a sealed value.
const SEALED_VERSION: u8 = 3;
const NONCE_LEN: usize = aead::NONCE_LEN;
/// Longest sealed value opened, base64url: well above the largest authorization request a form carries.
const MAX_SEALED_LEN: usize = 8 * 1024;
/// What the sealing key is derived for: the refresh MAC key is never used directly as a cipher key.
const SEALING_KEY_LABEL: &[u8] = b"tessera sealing key v1";

/// What a sealed value is for: its associated data, so a value sealed for one purpose never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sealed {
    /// An authorization code.
    Code,
    /// A pushed authorization request's `request_uri`.
    PushedRequest,
    /// The authorization request a login or consent form carries.
    FormRequest,
    /// The login cookie: the browser's session at Tessera.
    LoginCookie,
}

impl Sealed {
    const fn label(self) -> &'static [u8] {
        match self {
            Self::Code => b"code",
            Self::PushedRequest => b"pushed-request",
            Self::FormRequest => b"form-request",
            Self::LoginCookie => b"login-cookie",
        }
    }
}

/// The key id that tokens made before keys rotated stand for.
const LEGACY_KEY_ID: u8 = 0;

/// One accepted version of a MAC key.
struct MacKey {
    id: u8,
    activates_at_ms: i64,
    key: hmac::Key,
}

/// The accepted versions of one MAC key, oldest activation first, and the one issuing as of the last load.
struct MacKeys {
    versions: Vec<MacKey>,
    current: usize,
}

impl MacKeys {
    fn new(versions: &[SecretVersion], now_secs: i64) -> Self {
        let versions: Vec<MacKey> = versions
            .iter()
            .map(|version| MacKey {
                id: version.id,
                activates_at_ms: version.activates_at.saturating_mul(1000),
                key: hmac::Key::new(hmac::HMAC_SHA256, version.value()),
            })
            .collect();
        let now_ms = now_secs.saturating_mul(1000);
        let current = versions.iter().rposition(|version| version.activates_at_ms <= now_ms).unwrap_or(0);
        Self { versions, current }
    }

    /// The version issuing at `at_ms`: the latest activated by then, or (for an instant before every accepted
    /// version) the oldest accepted one.
    fn issuing_at(&self, at_ms: i64) -> Option<&MacKey> {
        let index = self.versions.iter().rposition(|version| version.activates_at_ms <= at_ms).unwrap_or(0);
        self.versions.get(index)
    }

    fn current(&self) -> Option<&MacKey> {
        self.versions.get(self.current)
    }

    fn by_id(&self, id: u8) -> Option<&MacKey> {
        self.versions.iter().find(|version| version.id == id)
    }
}

/// Both MAC keys, swapped together when the secrets are reloaded.
struct KeySets {
    refresh: MacKeys,
    csrf: MacKeys,
}

/// The server secrets behind refresh and CSRF tokens; replaced whole when they rotate.
pub struct TokenSecrets {
    keys: ArcSwap<KeySets>,
}

impl std::fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecrets(..)")
    }
}

/// A refresh token's contents, once its MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaim {
    /// The session.
    pub sid: String,
    /// The generation presented.
    pub generation: u64,
}

impl TokenSecrets {
    /// From the accepted versions of the refresh-token and CSRF MAC keys (see `SecretRing::accepted`) at
    /// `now_secs`.
    #[must_use]
    pub fn new(refresh: &[SecretVersion], csrf: &[SecretVersion], now_secs: i64) -> Self {
        Self { keys: ArcSwap::from_pointee(Self::key_sets(refresh, csrf, now_secs)) }
    }

    /// Puts newly loaded versions in service.
    pub fn replace(&self, refresh: &[SecretVersion], csrf: &[SecretVersion], now_secs: i64) {
        self.keys.store(std::sync::Arc::new(Self::key_sets(refresh, csrf, now_secs)));
    }

    fn key_sets(refresh: &[SecretVersion], csrf: &[SecretVersion], now_secs: i64) -> KeySets {
        KeySets { refresh: MacKeys::new(refresh, now_secs), csrf: MacKeys::new(csrf, now_secs) }
    }

    /// The refresh token for generation `generation` of session `sid`, issued at `issued_at_ms` (the session's
    /// `generation_issued_at`), under the key version that was issuing then; `None` if `sid` is not one this
    /// server made.
    #[must_use]
    pub fn refresh_token(&self, sid: &str, generation: u64, issued_at_ms: i64) -> Option<String> {
        let sid_bytes: [u8; SID_LEN] = base64url::decode(sid)?.try_into().ok()?;
        let keys = self.keys.load();
        let key = keys.refresh.issuing_at(issued_at_ms)?;
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.extend_from_slice(&[VERSION, key.id]);
        token.extend_from_slice(&sid_bytes);
        token.extend_from_slice(&generation.to_be_bytes());
        let tag = hmac::sign(&key.key, &token);
        token.extend_from_slice(tag.as_ref());
        Some(base64url::encode(token))
    }

    /// Checks a presented refresh token (constant-time MAC comparison, under the key version it names) and
    /// returns what it names.
    #[must_use]
    pub fn open_refresh_token(&self, token: &str) -> Option<RefreshClaim> {
        if token.len() > 128 {
            return None;
        }
        let bytes = base64url::decode(token)?;
        let (key_id, header_len) = match (bytes.len(), bytes.first()) {
            (TOKEN_LEN, Some(&VERSION)) => (*bytes.get(1)?, 2),
            (LEGACY_TOKEN_LEN, Some(&LEGACY_VERSION)) => (LEGACY_KEY_ID, 1),
            _ => return None,
        };
        let (body, tag) = bytes.split_at_checked(bytes.len() - MAC_LEN)?;
        let keys = self.keys.load();
        hmac::verify(&keys.refresh.by_id(key_id)?.key, body, tag).ok()?;
        let sid = base64url::encode(body.get(header_len..header_len + SID_LEN)?);
        let generation = u64::from_be_bytes(body.get(header_len + SID_LEN..)?.try_into().ok()?);
        Some(RefreshClaim { sid, generation })
    }

    /// The CSRF token of a session: an HMAC over its id, so it cannot be used with any other session, under the
    /// key version issuing now.
    #[must_use]
    pub fn csrf_token(&self, sid: &str) -> String {
        let keys = self.keys.load();
        let Some(key) = keys.csrf.current() else { return String::new() };
        let mut token = vec![key.id];
        token.extend_from_slice(hmac::sign(&key.key, &csrf_input(key.id, sid)).as_ref());
        base64url::encode(token)
    }

    /// Whether `presented` is the CSRF token of `sid` under an accepted key version (constant-time).
    #[must_use]
    pub fn csrf_matches(&self, sid: &str, presented: &str) -> bool {
        let Some(bytes) = base64url::decode(presented) else { return false };
        let keys = self.keys.load();
        match bytes.split_first() {
            // Before keys rotated: the bare MAC over the session id, under version 0.
            _ if bytes.len() == MAC_LEN => {
                keys.csrf.by_id(LEGACY_KEY_ID).is_some_and(|key| hmac::verify(&key.key, sid.as_bytes(), &bytes).is_ok())
            }
            Some((&id, tag)) if tag.len() == MAC_LEN => {
                keys.csrf.by_id(id).is_some_and(|key| hmac::verify(&key.key, &csrf_input(id, sid), tag).is_ok())
            }
            _ => false,
        }
    }
}

/// What a CSRF token's MAC covers: its key id, then the session id.
impl TokenSecrets {
    /// `plaintext` sealed for `purpose` under the issuing key, with a random nonce from `rng`. `None` only when
    /// no key is loaded or the RNG fails.
    pub(crate) fn seal(&self, purpose: Sealed, plaintext: &[u8], rng: &dyn Rng) -> Option<String> {
        let keys = self.keys.load();
        let key = keys.refresh.current()?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).ok()?;
        let mut sealed = Vec::with_capacity(2 + NONCE_LEN + plaintext.len() + aead::AES_256_GCM.tag_len());
        sealed.extend_from_slice(&[SEALED_VERSION, key.id]);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        sealing_key(key)?
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(purpose.label()),
                &mut body,
            )
            .ok()?;
        sealed.extend_from_slice(&body);
        Some(base64url::encode(sealed))
    }

    /// What `sealed` holds, if it was sealed for `purpose` under a key still accepted and nobody changed it.
    pub(crate) fn open(&self, purpose: Sealed, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let bytes = base64url::decode(sealed)?;
        let (&[version, key_id], rest) = bytes.split_first_chunk::<2>()?;
        if version != SEALED_VERSION {
            return None;
        }
        let (nonce, body) = rest.split_first_chunk::<NONCE_LEN>()?;
        let keys = self.keys.load();
        let key = sealing_key(keys.refresh.by_id(key_id)?)?;
        let mut body = body.to_vec();
        let plaintext = key
            .open_in_place(aead::Nonce::assume_unique_for_key(*nonce), aead::Aad::from(purpose.label()), &mut body)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

/// The AES-256-GCM key of one MAC key version: HMAC(MAC key, label), so rotating the refresh keys rotates it.
fn sealing_key(key: &MacKey) -> Option<aead::LessSafeKey> {
    let derived = hmac::sign(&key.key, SEALING_KEY_LABEL);
    aead::UnboundKey::new(&aead::AES_256_GCM, derived.as_ref()).ok().map(aead::LessSafeKey::new)
}

fn csrf_input(key_id: u8, sid: &str) -> Vec<u8> {
    [&[key_id][..], sid.as_bytes()].concat()
}

/// A source of random bytes: the OS CSPRNG ([`OsRng`]) in service, injected (see `AppState::with_rng`) so tests
/// can make session ids, token ids and request ids deterministic. Everything random the server makes comes from
/// one; nothing else constructs a random number generator (`clippy.toml` forbids it outside this module).
pub trait Rng: Send + Sync + 'static {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    /// When no random bytes can be had: the caller refuses to go on, never falls back to weaker ones.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RngFailed>;
}

/// The random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RngFailed;

/// The operating system's CSPRNG (through aws-lc).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RngFailed> {
        #[allow(clippy::disallowed_methods, reason = "the one place the server takes randomness from the OS")]
        let os = SystemRandom::new();
        os.fill(dest).map_err(|_| RngFailed)
    }
}

/// A new random session id from `rng`: 128 bits, base64url.
///
/// # Errors
/// When the random number generator fails.
pub fn session_id_from(rng: &dyn Rng) -> Result<String, RngFailed> {
    random_b64_from::<SID_LEN>(rng)
}

/// A new random session id: 128 bits from the OS CSPRNG, base64url.
///
/// # Errors
/// When the OS random number generator fails.
pub fn new_session_id() -> Result<String, RngFailed> {
    session_id_from(&OsRng)
}

/// `N` random bytes from `rng`, base64url.
///
/// # Errors
/// When the random number generator fails.
pub fn random_b64_from<const N: usize>(rng: &dyn Rng) -> Result<String, RngFailed> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes)?;
    Ok(base64url::encode(bytes))
}

/// `N` random bytes from the OS CSPRNG, base64url.
///
/// # Errors
/// When the OS random number generator fails.
pub fn random_b64<const N: usize>() -> Result<String, RngFailed> {
    random_b64_from::<N>(&OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: u8, activates_at: i64, byte: u8) -> SecretVersion {
        SecretVersion::new(id, activates_at, activates_at, [byte; 32])
    }

    fn secrets() -> TokenSecrets {
        TokenSecrets::new(&[version(1, 0, 1)], &[version(1, 0, 2)], 0)
    }

    #[test]
    fn sealed_values_open_only_for_their_purpose_and_unchanged() {
        let secrets = secrets();
        let sealed = secrets.seal(Sealed::Code, b"grant", &OsRng).unwrap();
        assert_eq!(secrets.open(Sealed::Code, &sealed).as_deref(), Some(&b"grant"[..]));
        assert_ne!(secrets.seal(Sealed::Code, b"grant", &OsRng).unwrap(), sealed, "a fresh nonce each time");
        assert_eq!(secrets.open(Sealed::LoginCookie, &sealed), None, "another purpose");
        let mut bytes = base64url::decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(secrets.open(Sealed::Code, &base64url::encode(&bytes)), None, "tampered");
        let other = TokenSecrets::new(&[version(1, 0, 9)], &[version(1, 0, 2)], 0);
        assert_eq!(other.open(Sealed::Code, &sealed), None, "another key");
        for junk in ["", "AwE", "x.y", &"A".repeat(MAX_SEALED_LEN + 1)] {
            assert_eq!(secrets.open(Sealed::Code, junk), None);
        }
    }

    #[test]
    fn refresh_tokens_round_trip_and_resist_tampering() {
        let secrets = secrets();
        let sid = new_session_id().unwrap();
        let token = secrets.refresh_token(&sid, 7, 5_000).unwrap();
        assert_eq!(secrets.refresh_token(&sid, 7, 5_000).unwrap(), token, "derivable again: the same successor");
        assert_eq!(secrets.open_refresh_token(&token), Some(RefreshClaim { sid: sid.clone(), generation: 7 }));
        assert!(token.len() >= 43, "at least 256 bits");
        let other = TokenSecrets::new(&[version(1, 0, 3)], &[version(1, 0, 2)], 0);
        assert_eq!(other.open_refresh_token(&token), None, "another key does not accept it");
        let mut bytes = base64url::decode(&token).unwrap();
        bytes[20] ^= 1;
        assert_eq!(secrets.open_refresh_token(&base64url::encode(&bytes)), None);
        for junk in ["", "x", "a.b.c", &"A".repeat(200)] {
            assert_eq!(secrets.open_refresh_token(junk), None);
        }
    }

    #[test]
    fn tokens_name_their_key_and_both_the_active_key_and_its_predecessor_open_them() {
        let sid = new_session_id().unwrap();
        let before = secrets();
        let (refresh, csrf) = (before.refresh_token(&sid, 3, 1_000).unwrap(), before.csrf_token(&sid));
        assert_eq!(base64url::decode(&refresh).unwrap()[..2], [VERSION, 1]);
        assert_eq!(base64url::decode(&csrf).unwrap()[0], 1);

        // Rotated: version 2 issues from t = 100 s; version 1 is the predecessor, still accepted.
        let after =
            TokenSecrets::new(&[version(1, 0, 1), version(2, 100, 4)], &[version(1, 0, 2), version(2, 100, 5)], 100);
        assert_eq!(after.open_refresh_token(&refresh).map(|claim| claim.generation), Some(3));
        assert!(after.csrf_matches(&sid, &csrf));
        // The same generation issued before the rotation derives the same token again (a grace replay); one issued
        // after it is made with the new key, which is what a client gets from now on.
        assert_eq!(after.refresh_token(&sid, 3, 1_000).unwrap(), refresh);
        let successor = after.refresh_token(&sid, 4, 100_000).unwrap();
        assert_eq!(base64url::decode(&successor).unwrap()[1], 2);
        assert_eq!(base64url::decode(&after.csrf_token(&sid)).unwrap()[0], 2);
        assert!(after.csrf_matches(&sid, &after.csrf_token(&sid)));

        // Once the predecessor is dropped, its tokens are refused; a forged key id names no key.
        let later = TokenSecrets::new(&[version(2, 100, 4)], &[version(2, 100, 5)], 200);
        assert_eq!(later.open_refresh_token(&refresh), None);
        assert!(!later.csrf_matches(&sid, &csrf));
        let mut relabelled = base64url::decode(&successor).unwrap();
        relabelled[1] = 1;
        assert_eq!(after.open_refresh_token(&base64url::encode(&relabelled)), None);
    }

    #[test]
    fn tokens_made_before_keys_rotated_are_accepted_under_key_zero() {
        let (refresh_key, csrf_key) = ([8u8; 32], [9u8; 32]);
        let sid = new_session_id().unwrap();
        // What the previous release issued: version 1, no key id; a CSRF token that is the bare MAC.
        let mut legacy = vec![LEGACY_VERSION];
        legacy.extend_from_slice(&base64url::decode(&sid).unwrap());
        legacy.extend_from_slice(&5u64.to_be_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &refresh_key), &legacy);
        legacy.extend_from_slice(tag.as_ref());
        let legacy_refresh = base64url::encode(legacy);
        let legacy_csrf =
            base64url::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &csrf_key), sid.as_bytes()).as_ref());

        let upgraded = TokenSecrets::new(
            &[SecretVersion::new(0, 0, 0, refresh_key), version(1, 100, 1)],
            &[SecretVersion::new(0, 0, 0, csrf_key), version(1, 100, 2)],
            100,
        );
        assert_eq!(
            upgraded.open_refresh_token(&legacy_refresh),
            Some(RefreshClaim { sid: sid.clone(), generation: 5 })
        );
        assert!(upgraded.csrf_matches(&sid, &legacy_csrf));
        assert!(!upgraded.csrf_matches("another-session", &legacy_csrf));
        // Under another key 0 they are refused.
        let other = TokenSecrets::new(&[version(0, 0, 7)], &[version(0, 0, 7)], 100);
        assert_eq!(other.open_refresh_token(&legacy_refresh), None);
        assert!(!other.csrf_matches(&sid, &legacy_csrf));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let secrets = secrets();
        let token = secrets.csrf_token("s1");
        assert!(secrets.csrf_matches("s1", &token));
        assert!(!secrets.csrf_matches("s2", &token));
        assert!(!secrets.csrf_matches("s1", ""));
        assert!(!secrets.csrf_matches("s1", "not base64!"));
    }
}
