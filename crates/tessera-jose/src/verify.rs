//! The one verification path every verifier in Tessera uses.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::token::{decode_segment, split_compact, Claims, Header, Payload};
use crate::{b64, is_acceptable_kid, Algorithm, KeySet, Part, TokenError};

/// Tokens longer than this are refused before any parsing.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Payloads up to this many bytes are decoded on the stack (an access token's are a few hundred).
const PAYLOAD_ON_STACK: usize = 2048;
/// Allowed clock skew for `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;
/// The `typ` of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// What kind of token a verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// An RFC 9068 access token: `typ: at+jwt`, and `iss`, `sub`, `aud`, `exp`, `iat`, `jti`, `client_id` required.
    Access,
    /// Any JWS: signature and algorithm policy only, plus whichever time claims a JSON payload carries.
    /// `iss` and `aud` are checked only when the policy names them.
    Jws,
}

/// What a verifier requires of a token beyond a good signature.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The token kind accepted.
    pub profile: Profile,
    /// The exact `iss` required. `None` is only allowed for [`Profile::Jws`].
    pub issuer: Option<String>,
    /// Audiences accepted: the token's `aud` must name at least one. Empty means "any" only for [`Profile::Jws`].
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// Longest token accepted, in bytes.
    pub max_token_len: usize,
}

impl Policy {
    /// The RFC 9068 access-token policy for one issuer and its accepted audiences.
    #[must_use]
    pub fn access(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            profile: Profile::Access,
            issuer: Some(issuer.into()),
            audiences,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// The bare JWS policy: signature, algorithm policy, and any time claims present.
    #[must_use]
    pub fn jws() -> Self {
        Self {
            profile: Profile::Jws,
            issuer: None,
            audiences: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

/// A token that passed verification.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its header: shared with the key set when it is one Tessera's signer writes, so the common case copies
    /// nothing.
    pub header: Arc<Header>,
    /// Its payload. Under [`Profile::Access`] always [`Payload::Claims`].
    pub payload: Payload,
}

impl Verified {
    /// The claims, when the payload is a JSON object (always, for access tokens).
    #[must_use]
    pub fn claims(&self) -> Option<&Claims> {
        self.payload.claims()
    }
}

/// Verifies tokens against a key set and a policy that can both be replaced while verifications run.
///
/// A verifier built with [`Verifier::remembering`] also keeps the outcome of its last successful verifications,
/// keyed by the token's exact text: a token presented again (a gateway sees each access token many times in its
/// lifetime) skips the signature check and the claim parsing, and only the checks that depend on the instant
/// (`exp`, `nbf`, `iat`) are made again. Replacing the key set or the policy forgets everything remembered, so a
/// key withdrawn from the set is never honoured through the cache. Failures are never remembered.
pub struct Verifier {
    keys: ArcSwap<KeySet>,
    policy: ArcSwap<Policy>,
    /// Bumped after every replacement of the keys or the policy; a remembered outcome counts only under the
    /// generation it was reached in.
    generation: AtomicU64,
    remembered: Option<quick_cache::sync::Cache<Box<str>, Arc<Remembered>>>,
}

/// A successful verification and the generation of keys and policy it was made under.
struct Remembered {
    generation: u64,
    verified: Verified,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("policy", &self.policy)
            .field("remembered", &self.remembered.as_ref().map(quick_cache::sync::Cache::len))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier over `keys` with `policy`.
    #[must_use]
    pub fn new(keys: KeySet, policy: Policy) -> Self {
        Self {
            keys: ArcSwap::from_pointee(keys),
            policy: ArcSwap::from_pointee(policy),
            generation: AtomicU64::new(0),
            remembered: None,
        }
    }

    /// A verifier that remembers up to `entries` successfully verified tokens (none when `entries` is 0).
    #[must_use]
    pub fn remembering(keys: KeySet, policy: Policy, entries: usize) -> Self {
        Self { remembered: (entries > 0).then(|| quick_cache::sync::Cache::new(entries)), ..Self::new(keys, policy) }
    }

    /// Replaces the key set atomically: verifications in flight finish with the set they started with.
    pub fn replace_keys(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
        self.forget();
    }

    /// The current key set.
    #[must_use]
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// The current policy.
    #[must_use]
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Replaces the policy atomically (e.g. when the set of accepted audiences changes).
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
        self.forget();
    }

    /// Invalidates every remembered verification. The generation moves *after* the new keys or policy are in
    /// place: a verification that read the new generation also reads the new keys, so nothing verified under the
    /// old ones can be remembered under the new generation.
    fn forget(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(remembered) = &self.remembered {
            remembered.clear();
        }
    }

    /// Verifies `token` at the instant `now` (seconds since the epoch).
    ///
    /// The order is fixed: size, form, header, key lookup by exact `kid`, the key's own algorithm, signature, and
    /// only then the claims — nothing in an unauthenticated payload is acted on.
    ///
    /// # Errors
    /// A [`TokenError`] saying exactly why the token is refused.
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        let Some(remembered) = &self.remembered else { return self.verify_fully(token, now) };
        // Read before the keys and the policy (see `forget`).
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(hit) = remembered.get(token).filter(|hit| hit.generation == generation) {
            if let Some(claims) = hit.verified.claims() {
                check_claims(&self.policy.load(), claims, now)?;
            }
            return Ok(hit.verified.clone());
        }
        let verified = self.verify_fully(token, now)?;
        remembered.insert(token.into(), Arc::new(Remembered { generation, verified: verified.clone() }));
        Ok(verified)
    }

    fn verify_fully(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        let policy = self.policy.load();
        let parts = split_compact(token, policy.max_token_len)?;
        let keys = self.keys.load();
        // Tessera's own tokens carry one of a few exact headers: recognising the segment skips decoding and
        // parsing it, with the same outcome as the full path below.
        let (header, key) = match keys.by_canonical_header(parts.header) {
            Some(known) => known,
            None => {
                let header = Header::parse(&decode_segment(parts.header, Part::Header)?)?;
                if header.alg.eq_ignore_ascii_case("none") {
                    return Err(TokenError::AlgNone);
                }
                header.check_forbidden_params()?;
                let key = match &header.kid {
                    Some(kid) if !is_acceptable_kid(kid) => return Err(TokenError::InvalidKid),
                    Some(kid) => keys.get(kid).ok_or_else(|| TokenError::UnknownKey(kid.clone()))?,
                    None => keys.sole_key().ok_or_else(|| TokenError::UnknownKey(String::new()))?,
                };
                (Arc::new(header), key)
            }
        };
        if header.alg != key.algorithm().as_str() {
            return Err(match Algorithm::from_name(&header.alg) {
                Some(_) => TokenError::AlgorithmMismatch { token: header.alg.clone(), key: key.algorithm() },
                None => TokenError::UnsupportedAlgorithm(header.alg.clone()),
            });
        }
        // The longest signature (RSA-8192) is 1024 bytes: decode on the stack, not the heap, and without zeroing
        // the space first. So is a payload of common size; a longer one goes to the heap.
        let mut signature = [MaybeUninit::uninit(); 1024];
        let signature =
            b64::decode_into(parts.signature, &mut signature).ok_or(TokenError::BadBase64 { part: Part::Signature })?;
        let mut payload_space = [MaybeUninit::uninit(); PAYLOAD_ON_STACK];
        let payload_on_heap;
        let payload = match b64::decode_into(parts.payload, &mut payload_space) {
            Some(payload) => payload,
            None => {
                payload_on_heap = decode_segment(parts.payload, Part::Payload)?;
                &payload_on_heap
            }
        };
        if !key.verify_signature(parts.signing_input.as_bytes(), signature) {
            return Err(TokenError::BadSignature);
        }

        let payload = match policy.profile {
            Profile::Access => {
                check_access_typ(header.typ.as_deref())?;
                let claims = Claims::parse(payload)?;
                check_access_required(&claims)?;
                Payload::Claims(claims)
            }
            Profile::Jws => Payload::parse(payload)?,
        };
        if let Some(claims) = payload.claims() {
            check_claims(&policy, claims, now)?;
        }
        Ok(Verified { header, payload })
    }
}

fn check_claims(policy: &Policy, claims: &Claims, now: i64) -> Result<(), TokenError> {
    let leeway = policy.leeway_secs;
    if let Some(exp) = claims.exp {
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired { exp, now });
        }
    }
    if let Some(nbf) = claims.nbf {
        if now.saturating_add(leeway) < nbf {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    if let Some(iat) = claims.iat {
        if now.saturating_add(leeway) < iat {
            return Err(TokenError::IssuedInFuture { iat, now });
        }
    }
    let access = policy.profile == Profile::Access;
    if access || policy.issuer.is_some() {
        let iss = claims.iss.as_deref().ok_or(TokenError::MissingClaim("iss"))?;
        if policy.issuer.as_deref() != Some(iss) {
            return Err(TokenError::WrongIssuer(iss.to_owned()));
        }
    }
    if access || !policy.audiences.is_empty() {
        let aud = claims.aud.as_ref().ok_or(TokenError::MissingClaim("aud"))?;
        if !policy.audiences.iter().any(|accepted| aud.contains(accepted)) {
            return Err(TokenError::WrongAudience(aud.as_slice().to_vec()));
        }
    }
    Ok(())
}

/// RFC 9068 §4: `typ` must be `at+jwt`, compared case-insensitively, with an optional `application/` prefix.
fn check_access_typ(typ: Option<&str>) -> Result<(), TokenError> {
    let found = typ.unwrap_or_default();
    let bare = match found.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => found.get(12..).unwrap_or_default(),
        _ => found,
    };
    if bare.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) {
        Ok(())
    } else {
        Err(TokenError::WrongType { expected: ACCESS_TOKEN_TYP, found: found.to_owned() })
    }
}

fn check_access_required(claims: &Claims) -> Result<(), TokenError> {
    let required: [(&'static str, bool); 7] = [
        ("iss", claims.iss.is_some()),
        ("sub", claims.sub.is_some()),
        ("aud", claims.aud.is_some()),
        ("exp", claims.exp.is_some()),
        ("iat", claims.iat.is_some()),
        ("jti", claims.jti.is_some()),
        ("client_id", claims.client_id.is_some()),
    ];
    match required.into_iter().find(|(_, present)| !present) {
        Some((name, _)) => Err(TokenError::MissingClaim(name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_typ_forms() {
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"] {
            assert!(check_access_typ(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [None, Some("JWT"), Some("at+jwt "), Some("application/jwt"), Some("refresh+jwt"), Some("")] {
            assert!(check_access_typ(bad).is_err(), "{bad:?}");
        }
    }
}
