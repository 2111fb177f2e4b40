//! `audit token`: static findings on one JWT.

use base64::Engine as _;
use serde_json::{Map, Value};
use tessera_jose::{base64url, decode_unverified, KeySet, Policy, TokenError, Verifier};

use crate::crack::{crack, Candidates, HmacAlg, Progress};
use crate::{AuditError, Finding, Report, Severity};

/// What the token audit checks against.
#[derive(Debug, Clone)]
pub struct TokenAudit {
    /// Now, seconds since the epoch.
    pub now: i64,
    /// A lifetime longer than this is a finding (default 24 h).
    pub max_lifetime_secs: i64,
    /// The issuer's keys, to check the signature and the algorithm against.
    pub keys: Option<KeySet>,
    /// Secrets to try on HMAC tokens besides the built-in list.
    pub candidates: Candidates,
    /// Threads for the secret cracker.
    pub threads: usize,
}

/// Decodes base64url leniently (padding, standard alphabet), saying whether it was strict.
fn lenient_decode(segment: &str) -> Option<(Vec<u8>, bool)> {
    if let Some(bytes) = base64url::decode(segment) {
        return Some((bytes, true));
    }
    let normalized: String = segment.trim_end_matches('=').replace('+', "-").replace('/', "_");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(normalized.as_bytes())
        .ok()
        .or_else(|| {
            base64::engine::GeneralPurpose::new(
                &base64::alphabet::URL_SAFE,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            )
            .decode(normalized.as_bytes())
            .ok()
        })
        .map(|bytes| (bytes, false))
}

/// Audits `token`. `progress` follows the secret cracker, when it runs.
///
/// # Errors
/// [`AuditError::NotAJwt`] when the input is not a compact JWS at all.
pub fn audit_token(token: &str, audit: &TokenAudit, progress: &mut dyn FnMut(Progress)) -> Result<Report, AuditError> {
    let token = token.trim();
    if token.starts_with('{') {
        return Err(AuditError::NotAJwt(
            "this is a JWS JSON serialization; the token audit takes the compact form".into(),
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(AuditError::NotAJwt(
                "5 parts: an encrypted JWE, whose contents cannot be audited without its key".into(),
            ))
        }
        n => return Err(AuditError::NotAJwt(format!("a compact JWT has 3 dot-separated parts, this has {n}"))),
    }
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) = (parts.first(), parts.get(1), parts.get(2)) else {
        return Err(AuditError::NotAJwt("missing parts".into()));
    };
    let (header_bytes, header_strict) =
        lenient_decode(header_b64).ok_or_else(|| AuditError::NotAJwt("the header is not base64url".into()))?;
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|err| AuditError::NotAJwt(format!("the header is not a JSON object: {err}")))?;
    let fingerprint = format!("JWT {}… ({} bytes)", token.chars().take(12).collect::<String>(), token.len());
    let mut report = Report::new("token", fingerprint);

    let payload = lenient_decode(payload_b64);
    let claims: Option<Map<String, Value>> = payload.as_ref().and_then(|(bytes, _)| serde_json::from_slice(bytes).ok());
    let strict = header_strict
        && payload.as_ref().is_some_and(|(_, strict)| *strict)
        && base64url::decode(signature_b64).is_some();
    if !strict {
        report.add(Finding::new(
            "JWT-BASE64-NONCANONICAL",
            Severity::Low,
            "Token is not strict unpadded base64url",
            "padding, the standard alphabet or non-canonical bits are present",
            "Issue tokens with unpadded base64url (RFC 7515 §2), and make verifiers refuse anything else: lenient decoding makes tokens malleable.",
        ));
    }
    if let Err(TokenError::DuplicateMember { part, name }) = decode_unverified(token, usize::MAX) {
        report.add(Finding::new(
            "JWT-DUPLICATE-MEMBER",
            Severity::Medium,
            "Duplicate JSON member name",
            format!("{part} has {name:?} more than once; parsers disagree on which one counts"),
            "Never emit duplicate members; verifiers must refuse them (RFC 7519 §4), or different components will read different claims.",
        ));
    }

    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default().to_owned();
    check_header(&header, &alg, &mut report);
    match &claims {
        Some(claims) => check_claims(claims, audit, &mut report),
        None => report.not_tested.push("claims: the payload is not a JSON object".into()),
    }

    if let Some(hmac) = HmacAlg::from_name(&alg) {
        match base64url::decode(signature_b64).or_else(|| lenient_decode(signature_b64).map(|(b, _)| b)) {
            Some(signature) if !signature.is_empty() => {
                let signing_input = format!("{header_b64}.{payload_b64}");
                let outcome =
                    crack(hmac, signing_input.as_bytes(), &signature, &audit.candidates, audit.threads, progress);
                report.stats.insert("secrets_tried".into(), outcome.tried.into());
                report.stats.insert("secrets_per_second".into(), (outcome.per_second().round() as u64).into());
                report.stats.insert("cracking_seconds".into(), outcome.elapsed.as_secs_f64().into());
                if let Some(secret) = outcome.secret {
                    report.add(Finding::new(
                        "JWT-WEAK-HMAC-SECRET",
                        Severity::Critical,
                        "HMAC secret cracked: anyone can forge tokens",
                        format!("{alg} secret is {:?} (found after {} tries)", String::from_utf8_lossy(&secret), outcome.tried),
                        "Rotate the secret now to 256+ random bits from a CSPRNG, revoke outstanding tokens, or better, sign with an asymmetric key (EdDSA, ES256).",
                    ));
                }
            }
            _ => report.not_tested.push("HMAC secret strength: the token has no signature to test against".into()),
        }
    }

    match &audit.keys {
        Some(keys) => check_against_keys(token, keys, audit.now, &mut report),
        None => report.not_tested.push("signature and algorithm against the issuer's keys: no --jwks given".into()),
    }
    report.finish();
    Ok(report)
}

fn check_header(header: &Map<String, Value>, alg: &str, report: &mut Report) {
    if alg.eq_ignore_ascii_case("none") {
        report.add(Finding::new(
            "JWT-ALG-NONE",
            Severity::Critical,
            "Unsigned token (alg: none)",
            format!("alg is {alg:?}"),
            "Never issue or accept unsecured JWTs: bind each key to one algorithm and refuse `none` in any casing.",
        ));
    } else if alg.is_empty() {
        report.add(Finding::new(
            "JWT-NO-ALG",
            Severity::High,
            "Header has no alg",
            "alg is missing or not a string",
            "Every JWS header needs an alg; verifiers must refuse tokens without one.",
        ));
    } else if alg.starts_with("HS") {
        report.add(Finding::new(
            "JWT-SYMMETRIC-ALG",
            Severity::Info,
            "Token is signed with a shared secret",
            format!("alg is {alg}: every verifier can also forge tokens"),
            "Prefer asymmetric signatures (EdDSA, ES256, RS256) so verifiers hold only public keys.",
        ));
    }
    if let Some(kid) = header.get("kid") {
        let text = kid.as_str().unwrap_or_default();
        if !kid.is_string() || !tessera_jose::is_acceptable_kid(text) {
            report.add(Finding::new(
                "JWT-KID-INJECTION",
                Severity::High,
                "kid holds path, SQL or shell metacharacters",
                format!("kid is {kid}"),
                "Use kid only as an exact key-set lookup key (e.g. an RFC 7638 thumbprint); never as a path, query, command or URL.",
            ));
        }
    }
    for (param, title) in [
        ("jku", "Header points to a key set URL (jku)"),
        ("x5u", "Header points to a certificate URL (x5u)"),
        ("jwk", "Header embeds a public key (jwk)"),
        ("x5c", "Header embeds a certificate chain (x5c)"),
    ] {
        if header.contains_key(param) {
            report.add(Finding::new(
                match param {
                    "jku" => "JWT-HEADER-JKU",
                    "x5u" => "JWT-HEADER-X5U",
                    "jwk" => "JWT-HEADER-JWK",
                    _ => "JWT-HEADER-X5C",
                },
                Severity::High,
                title,
                format!("{param} is present"),
                "Verifiers must take keys only from their own trusted key set; refuse tokens that carry or point to keys.",
            ));
        }
    }
    if header.contains_key("crit") {
        report.add(Finding::new("JWT-CRIT", Severity::Medium, "Header has critical extensions (crit)", format!("crit is {}", header.get("crit").cloned().unwrap_or_default()), "Avoid crit; verifiers that ignore it accept tokens whose semantics they do not implement (RFC 7515 §4.1.11)."));
    }
    if !header.contains_key("typ") {
        report.add(Finding::new("JWT-NO-TYP", Severity::Low, "Header has no typ", "typ is missing", "Type tokens explicitly (RFC 8725 §3.11): at+jwt for access tokens (RFC 9068), so one kind cannot pass for another."));
    }
}

const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "api_key",
    "apikey",
    "private_key",
    "client_secret",
    "credit_card",
    "card_number",
    "cvv",
    "ssn",
    "pin",
];
const PERSONAL_NAMES: &[&str] = &[
    "email",
    "phone",
    "phone_number",
    "address",
    "birthdate",
    "dob",
    "date_of_birth",
    "national_id",
    "passport",
    "iban",
];

fn check_claims(claims: &Map<String, Value>, audit: &TokenAudit, report: &mut Report) {
    let date = |name: &str| claims.get(name);
    match date("exp") {
        None => report.add(Finding::new("JWT-NO-EXP", Severity::High, "Token never expires (no exp)", "exp is missing", "Always set exp; keep access tokens short-lived (minutes) and refresh them.")),
        Some(Value::Number(exp)) => {
            let exp = exp.as_f64().unwrap_or_default() as i64;
            if let Some(iat) = date("iat").and_then(Value::as_f64) {
                let lifetime = exp - iat as i64;
                if lifetime > audit.max_lifetime_secs {
                    report.add(Finding::new(
                        "JWT-LONG-LIFETIME",
                        Severity::Medium,
                        "Token lifetime is long",
                        format!("exp − iat = {lifetime} s, over the {} s bound", audit.max_lifetime_secs),
                        "Keep access tokens short-lived (5–15 minutes) and use refresh-token rotation for long sessions.",
                    ));
                }
            }
            if exp <= audit.now {
                report.add(Finding::new("JWT-EXPIRED", Severity::Info, "Token has expired", format!("exp {exp} is before now {}", audit.now), "Nothing to fix in the token; endpoints must refuse it."));
            }
        }
        Some(other) => report.add(Finding::new(
            "JWT-EXP-NOT-NUMBER",
            Severity::High,
            "exp is not a number",
            format!("exp is {other}"),
            "exp must be a JSON number; some verifiers treat a wrong-typed exp as absent (CVE-2026-25537) and accept the token forever.",
        )),
    }
    match date("iat").and_then(Value::as_f64) {
        None => report.add(Finding::new(
            "JWT-NO-IAT",
            Severity::Low,
            "Token has no iat",
            "iat is missing",
            "Set iat so tokens can be revoked by issue time (logout everywhere) and their age checked.",
        )),
        Some(iat) if iat as i64 > audit.now + 60 => report.add(Finding::new(
            "JWT-IAT-FUTURE",
            Severity::Medium,
            "Token is issued in the future",
            format!("iat {iat} is after now {}", audit.now),
            "Check the issuer's clock; verifiers should refuse iat beyond a small leeway.",
        )),
        Some(_) => {}
    }
    if !claims.contains_key("jti") {
        report.add(Finding::new(
            "JWT-NO-JTI",
            Severity::Low,
            "Token has no jti",
            "jti is missing",
            "Give every token a unique jti so it can be revoked individually and replays detected.",
        ));
    }
    let mut sensitive = Vec::new();
    let mut personal = Vec::new();
    walk(claims, "", &mut |path, name, value| {
        let lower = name.to_lowercase();
        if SECRET_NAMES.iter().any(|s| lower.contains(s)) {
            sensitive.push(format!("{path} (secret-like name)"));
        } else if value.as_str().is_some_and(looks_like_card_number) {
            sensitive.push(format!("{path} (card-number-like value)"));
        } else if PERSONAL_NAMES.iter().any(|p| lower == *p) {
            personal.push(path.to_owned());
        }
    });
    if !sensitive.is_empty() {
        report.add(Finding::new(
            "JWT-SENSITIVE-DATA",
            Severity::High,
            "Secrets or payment data in the claims",
            sensitive.join(", "),
            "JWT payloads are only base64url, readable by anyone holding the token: never put secrets in them; reference data by id.",
        ));
    }
    if !personal.is_empty() {
        report.add(Finding::new(
            "JWT-PERSONAL-DATA",
            Severity::Low,
            "Personal data in the claims",
            personal.join(", "),
            "Keep personal data out of tokens (they end up in logs and browser storage); fetch it from a userinfo endpoint.",
        ));
    }
}

fn walk(map: &Map<String, Value>, prefix: &str, visit: &mut dyn FnMut(&str, &str, &Value)) {
    for (name, value) in map {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        visit(&path, name, value);
        if let Value::Object(inner) = value {
            walk(inner, &path, visit);
        }
    }
}

/// 13–19 digits (spaces and dashes allowed) passing the Luhn check.
fn looks_like_card_number(text: &str) -> bool {
    let digits: Vec<u32> = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn check_against_keys(token: &str, keys: &KeySet, now: i64, report: &mut Report) {
    let verifier = Verifier::new(keys.clone(), Policy { max_token_len: usize::MAX, ..Policy::jws() });
    match verifier.verify(token, now) {
        Ok(_) | Err(TokenError::Expired { .. } | TokenError::NotYetValid { .. } | TokenError::IssuedInFuture { .. }) => {
            report.stats.insert("signature".into(), "valid".into());
        }
        Err(TokenError::AlgorithmMismatch { token: alg, key }) => report.add(Finding::new(
            "JWT-ALG-KEY-MISMATCH",
            Severity::Critical,
            "Token algorithm does not match its key",
            format!("token says {alg}, the key is for {key}: the algorithm-confusion pattern (e.g. RS256 key used as an HMAC secret)"),
            "Bind every key to one algorithm and refuse tokens whose alg differs; never let the token choose how it is verified.",
        )),
        Err(TokenError::UnknownKey(kid)) => report.add(Finding::new("JWT-UNKNOWN-KID", Severity::Medium, "No key in the key set matches the token", format!("kid {kid:?}"), "Check the issuer and its JWKS; verifiers must refuse tokens whose key they do not hold.")),
        Err(TokenError::BadSignature) => report.add(Finding::new("JWT-BAD-SIGNATURE", Severity::High, "Signature does not verify against the key set", "the signature is invalid for the matching key", "Treat this token as forged; if a service accepted it, it does not verify signatures.")),
        Err(other) => report.not_tested.push(format!("signature against the key set: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_pass_luhn() {
        assert!(looks_like_card_number("4111 1111 1111 1111"));
        assert!(!looks_like_card_number("4111 1111 1111 1112"));
        assert!(!looks_like_card_number("1700000000"));
    }
}
