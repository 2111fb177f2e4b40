//! `audit jwks`: findings on a published key set.

use std::collections::HashMap;

use serde_json::Value;
use tessera_jose::base64url;

use crate::{AuditError, Finding, Report, Severity};

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Audits a JWKS document; `cache_control` is the `Cache-Control` header when it was fetched over HTTP.
///
/// # Errors
/// [`AuditError::NotAJwks`] when the document is not a JSON object with a `keys` array.
pub fn audit_jwks(target: &str, document: &[u8], cache_control: Option<Option<&str>>) -> Result<Report, AuditError> {
    let json: Value =
        serde_json::from_slice(document).map_err(|err| AuditError::NotAJwks(format!("not JSON: {err}")))?;
    let keys =
        json.get("keys").and_then(Value::as_array).ok_or_else(|| AuditError::NotAJwks("no \"keys\" array".into()))?;
    let mut report = Report::new("jwks", target);
    report.stats.insert("keys".into(), keys.len().into());
    let mut kids: HashMap<&str, usize> = HashMap::new();
    for (index, key) in keys.iter().enumerate() {
        let kid = key.get("kid").and_then(Value::as_str);
        let name = kid.map_or_else(|| format!("key #{index}"), |k| format!("key {k:?}"));
        let kty = key.get("kty").and_then(Value::as_str).unwrap_or_default();
        let private: Vec<&str> = PRIVATE_MEMBERS.iter().copied().filter(|m| key.get(*m).is_some()).collect();
        if !private.is_empty() {
            report.add(Finding::new("JWKS-PRIVATE-KEY", Severity::Critical, "Private key material is published", format!("{name} has {}", private.join(", ")), "Remove the key from service and rotate it now: anyone can sign tokens with it. Publish only public members."));
        }
        if kty == "oct" || key.get("k").is_some() {
            report.add(Finding::new(
                "JWKS-SYMMETRIC-KEY",
                Severity::Critical,
                "A symmetric (HMAC) key is published",
                format!("{name} is kty {kty:?}"),
                "Never publish shared secrets: rotate it, and use asymmetric keys for anything in a JWKS.",
            ));
        }
        if kty == "RSA" {
            let n = key.get("n").and_then(Value::as_str).and_then(base64url::decode).unwrap_or_default();
            let bits = n
                .iter()
                .position(|&b| b != 0)
                .map_or(0, |i| (n.len() - i) * 8 - n.get(i).map_or(0, |b| b.leading_zeros() as usize));
            if bits < 2048 {
                report.add(Finding::new(
                    "JWKS-WEAK-RSA",
                    Severity::High,
                    "RSA key is too short",
                    format!("{name} has a {bits}-bit modulus"),
                    "Use RSA keys of at least 2048 bits (RFC 7518 §3.3), or move to EdDSA / ES256.",
                ));
            }
            let e = key.get("e").and_then(Value::as_str).and_then(base64url::decode).unwrap_or_default();
            let exponent = e.iter().fold(0u128, |acc, &b| acc.saturating_mul(256).saturating_add(u128::from(b)));
            if exponent != 65_537 {
                let severity = if exponent < 65_537 { Severity::High } else { Severity::Medium };
                report.add(Finding::new(
                    "JWKS-RSA-EXPONENT",
                    severity,
                    "Unusual RSA public exponent",
                    format!("{name} has e = {exponent}"),
                    "Use e = 65537; small exponents enable known attacks and some verifiers reject others.",
                ));
            }
        }
        match kid {
            Some(kid) => *kids.entry(kid).or_default() += 1,
            None => report.add(Finding::new("JWKS-MISSING-KID", Severity::Low, "Key without kid", name.clone(), "Give every key a kid (e.g. its RFC 7638 thumbprint) so verifiers pick keys by exact lookup during rotation.")),
        }
        if key.get("alg").is_none() {
            report.add(Finding::new("JWKS-MISSING-ALG", Severity::Low, "Key without alg", name.clone(), "Bind each key to one algorithm with alg, so verifiers cannot be talked into another (algorithm confusion)."));
        }
        if key.get("use").is_none() && key.get("key_ops").is_none() {
            report.add(Finding::new(
                "JWKS-MISSING-USE",
                Severity::Info,
                "Key without use",
                name,
                "Mark signing keys with \"use\": \"sig\".",
            ));
        }
    }
    for (kid, count) in kids.into_iter().filter(|(_, count)| *count > 1) {
        report.add(Finding::new(
            "JWKS-DUPLICATE-KID",
            Severity::Medium,
            "Several keys share one kid",
            format!("kid {kid:?} appears {count} times"),
            "Make kids unique: a verifier picking by kid may use the wrong key, or any of them.",
        ));
    }
    match cache_control {
        Some(None) => report.add(Finding::new("JWKS-NO-CACHE-CONTROL", Severity::Low, "JWKS served without Cache-Control", "no Cache-Control header", "Send Cache-Control: max-age shorter than your key pre-publication period, so caches pick up new keys before they sign.")),
        Some(Some(value)) => {
            let max_age = value.split(',').find_map(|d| d.trim().strip_prefix("max-age=")).and_then(|v| v.parse::<u64>().ok());
            if value.contains("no-store") || max_age == Some(0) {
                report.add(Finding::new("JWKS-NOT-CACHEABLE", Severity::Low, "JWKS cannot be cached", format!("Cache-Control: {value}"), "Allow caching (max-age of minutes to an hour): every verifier otherwise fetches the key set on every token."));
            } else if max_age.is_some_and(|age| age > 86_400) {
                report.add(Finding::new("JWKS-LONG-CACHE", Severity::Low, "JWKS cached for more than a day", format!("Cache-Control: {value}"), "Keep max-age below the key pre-publication period so an emergency rotation reaches verifiers quickly."));
            }
        }
        None => report.not_tested.push("cache headers: the key set was read from a file".into()),
    }
    report.finish();
    Ok(report)
}
