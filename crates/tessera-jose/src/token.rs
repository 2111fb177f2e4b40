//! The compact JWS: its header and claims, strictly parsed.

use serde::Serialize;
use serde_json::{Map, Value};

use std::borrow::Cow;

use crate::json::{self, MemberError, StrictJsonError};
use crate::{b64, Part, TokenError};

/// Header parameters whose presence alone gets a token rejected: keys are never taken from the token.
const EMBEDDED_KEY_PARAMS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// A decoded JOSE header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `typ`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Every other parameter (including `crit` and any `jwk`/`jku`/... when inspecting untrusted tokens).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Header {
    /// Parses header JSON strictly: one object, no duplicate members, `alg` a string, `kid` and `typ` strings.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        let (mut alg, mut kid, mut typ, mut other) = (None, None, None, Map::new());
        let bad = |reason: String| TokenError::BadJson { part: Part::Header, reason };
        parse_part(bytes, Part::Header, |name, value| {
            let slot = match name.as_ref() {
                "alg" => &mut alg,
                "kid" => &mut kid,
                "typ" => &mut typ,
                _ => return keep_other(&mut other, Part::Header, name, value),
            };
            match value {
                Value::String(text) => set_once(slot, text, Part::Header, &name),
                _ => Err(bad(format!("{name} must be a string"))),
            }
        })?;
        let alg = alg.ok_or_else(|| bad("alg is missing".into()))?;
        Ok(Self { alg, kid, typ, other })
    }

    /// Refuses what a verifier must never act on: embedded keys and critical parameters it does not understand.
    pub(crate) fn check_forbidden_params(&self) -> Result<(), TokenError> {
        if let Some(param) = EMBEDDED_KEY_PARAMS.into_iter().find(|name| self.other.contains_key(*name)) {
            return Err(TokenError::EmbeddedKey(param));
        }
        if let Some(crit) = self.other.get("crit") {
            // Tessera understands no extension parameters, so any `crit` (even an empty or malformed one, which
            // RFC 7515 forbids) is refused.
            let names = match crit {
                Value::Array(items) => items.iter().map(|item| item.as_str().unwrap_or("?").to_owned()).collect(),
                other => vec![other.to_string()],
            };
            return Err(TokenError::UnsupportedCritical(names));
        }
        Ok(())
    }
}

/// One or several audiences: `aud` may be a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Every audience named.
    #[must_use]
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }

    /// Whether `audience` is among them.
    #[must_use]
    pub fn contains(&self, audience: &str) -> bool {
        self.as_slice().iter().any(|a| a == audience)
    }
}

/// JWT claims: the registered ones and RFC 9068's typed, everything else kept as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Claims {
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 9068 / RFC 8693).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Session id: the refresh-token family the token came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Claims {
    /// Parses payload JSON strictly. A registered claim of the wrong type is an error, never "absent"
    /// (CVE-2026-25537): `exp`, `nbf` and `iat` must be JSON numbers.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut claims = Self::default();
        parse_part(bytes, Part::Payload, |name, value| claims.set(name, value))?;
        Ok(claims)
    }

    fn set(&mut self, name: Cow<'_, str>, value: Value) -> Result<(), TokenError> {
        let (slot, claim) = match name.as_ref() {
            "iss" => (&mut self.iss, "iss"),
            "sub" => (&mut self.sub, "sub"),
            "jti" => (&mut self.jti, "jti"),
            "client_id" => (&mut self.client_id, "client_id"),
            "scope" => (&mut self.scope, "scope"),
            "sid" => (&mut self.sid, "sid"),
            "aud" => return set_once(&mut self.aud, audience(value)?, Part::Payload, "aud"),
            "exp" => return set_once(&mut self.exp, numeric_date("exp", &value)?, Part::Payload, "exp"),
            "nbf" => return set_once(&mut self.nbf, numeric_date("nbf", &value)?, Part::Payload, "nbf"),
            "iat" => return set_once(&mut self.iat, numeric_date("iat", &value)?, Part::Payload, "iat"),
            _ => return keep_other(&mut self.extra, Part::Payload, name, value),
        };
        match value {
            Value::String(text) => set_once(slot, text, Part::Payload, claim),
            _ => Err(TokenError::InvalidClaim { name: claim, reason: "must be a string" }),
        }
    }
}

fn audience(value: Value) -> Result<Audience, TokenError> {
    const INVALID: TokenError =
        TokenError::InvalidClaim { name: "aud", reason: "must be a string or a non-empty array of strings" };
    match value {
        Value::String(one) => Ok(Audience::One(one)),
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(INVALID),
            })
            .collect::<Result<_, _>>()
            .map(Audience::Many),
        _ => Err(INVALID),
    }
}

/// Fills a typed member, refusing a second occurrence.
fn set_once<T>(slot: &mut Option<T>, value: T, part: Part, name: &str) -> Result<(), TokenError> {
    if slot.is_some() {
        return Err(TokenError::DuplicateMember { part, name: name.to_owned() });
    }
    *slot = Some(value);
    Ok(())
}

/// Keeps a member this library has no typed field for, refusing a second occurrence.
fn keep_other(map: &mut Map<String, Value>, part: Part, name: Cow<'_, str>, value: Value) -> Result<(), TokenError> {
    match map.entry(name.into_owned()) {
        serde_json::map::Entry::Occupied(repeated) => {
            Err(TokenError::DuplicateMember { part, name: repeated.key().clone() })
        }
        serde_json::map::Entry::Vacant(slot) => {
            slot.insert(value);
            Ok(())
        }
    }
}

/// Bounds on NumericDate values: beyond ±2^53 s a float cannot count seconds, and nothing legitimate lives there.
const MAX_NUMERIC_DATE: i64 = 1 << 53;

fn numeric_date(name: &'static str, value: &Value) -> Result<i64, TokenError> {
    let Value::Number(number) = value else {
        return Err(TokenError::InvalidClaim { name, reason: "must be a JSON number" });
    };
    let seconds = if let Some(int) = number.as_i64() {
        Some(int)
    } else {
        // Fractional seconds are allowed (RFC 7519 §2); they are floored. Huge values are refused, not saturated.
        number.as_f64().filter(|f| f.is_finite() && f.abs() < MAX_NUMERIC_DATE as f64).map(|f| f.floor() as i64)
    };
    seconds.filter(|s| s.abs() < MAX_NUMERIC_DATE).ok_or(TokenError::InvalidClaim { name, reason: "is out of range" })
}

fn parse_part(
    bytes: &[u8],
    part: Part,
    on_member: impl FnMut(Cow<'_, str>, Value) -> Result<(), TokenError>,
) -> Result<(), TokenError> {
    json::parse_members(bytes, on_member).map_err(|err| match err {
        MemberError::Member(err) => err,
        MemberError::Json(StrictJsonError::Duplicate(name)) => TokenError::DuplicateMember { part, name },
        MemberError::Json(StrictJsonError::Invalid(reason)) => TokenError::BadJson { part, reason },
    })
}

/// The three segments of a compact JWS, still base64url, not yet verified.
pub(crate) struct CompactParts<'a> {
    /// `header.payload`, the signing input.
    pub(crate) signing_input: &'a str,
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
}

/// Splits a compact JWS into exactly three segments, after the size check. The JSON serializations are refused by
/// name. Segments are decoded later, each only when needed.
pub(crate) fn split_compact(token: &str, max_len: usize) -> Result<CompactParts<'_>, TokenError> {
    if token.len() > max_len {
        return Err(TokenError::TooLarge { len: token.len(), limit: max_len });
    }
    if token.trim_start().starts_with('{') {
        return Err(TokenError::JsonSerialization);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::WrongPartCount(token.split('.').count()));
    };
    let signing_input = token.get(..header.len() + 1 + payload.len()).ok_or(TokenError::WrongPartCount(0))?;
    Ok(CompactParts { signing_input, header, payload, signature })
}

/// Decodes one segment as strict unpadded base64url.
pub(crate) fn decode_segment(segment: &str, part: Part) -> Result<Vec<u8>, TokenError> {
    b64::decode(segment).ok_or(TokenError::BadBase64 { part })
}

/// A token decoded without any verification, for display. Nothing in it may be trusted.
#[derive(Debug, Clone, Serialize)]
pub struct Unverified {
    /// The header.
    pub header: Header,
    /// The payload: claims when it is a JSON object, otherwise the raw text.
    pub payload: Payload,
}

/// A JWS payload.
// Claims are the common case; boxing them would cost an allocation on every verification.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    /// A JSON object: JWT claims.
    Claims(Claims),
    /// Anything else, as (lossy) UTF-8 text. JWS can sign arbitrary bytes (RFC 8037's example signs plain text).
    Text(String),
}

impl Payload {
    /// Parses a payload: a JSON object when it starts like one (and then strictly), otherwise opaque text.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.trim_ascii_start().starts_with(b"{") {
            Claims::parse(bytes).map(Self::Claims)
        } else {
            Ok(Self::Text(String::from_utf8_lossy(bytes).into_owned()))
        }
    }

    /// The claims, when the payload is a JSON object.
    #[must_use]
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Self::Claims(claims) => Some(claims),
            Self::Text(_) => None,
        }
    }
}

/// Decodes a token for display, with the same strict parsing as verification but no signature or claim checks.
///
/// # Errors
/// Any [`TokenError`] about the token's form.
pub fn decode_unverified(token: &str, max_len: usize) -> Result<Unverified, TokenError> {
    let parts = split_compact(token, max_len)?;
    decode_segment(parts.signature, Part::Signature)?;
    Ok(Unverified {
        header: Header::parse(&decode_segment(parts.header, Part::Header)?)?,
        payload: Payload::parse(&decode_segment(parts.payload, Part::Payload)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_claims_must_be_numbers_in_range() {
        assert_eq!(Claims::parse(br#"{"exp":1.9}"#).unwrap().exp, Some(1));
        for doc in [
            r#"{"exp":"1"}"#,
            r#"{"nbf":null}"#,
            r#"{"iat":true}"#,
            r#"{"exp":1e300}"#,
            r#"{"exp":18446744073709551615}"#,
        ] {
            assert!(matches!(Claims::parse(doc.as_bytes()), Err(TokenError::InvalidClaim { .. })), "{doc}");
        }
    }

    #[test]
    fn audience_forms() {
        assert_eq!(Claims::parse(br#"{"aud":"a"}"#).unwrap().aud, Some(Audience::One("a".into())));
        assert!(Claims::parse(br#"{"aud":["a","b"]}"#).unwrap().aud.unwrap().contains("b"));
        for doc in [r#"{"aud":[]}"#, r#"{"aud":[1]}"#, r#"{"aud":{}}"#] {
            assert!(
                matches!(Claims::parse(doc.as_bytes()), Err(TokenError::InvalidClaim { name: "aud", .. })),
                "{doc}"
            );
        }
    }
}
