//! Reading a session's user, roles and expiry out of the legacy system's JSON, and the configuration checks both
//! adapters share.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::{LegacyError, LegacyIdentity};

/// Longest user id and role accepted.
const MAX_FIELD_BYTES: usize = 256;
/// Most roles accepted.
const MAX_ROLES: usize = 256;

/// Where the session's fields are (JSON pointers).
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub(crate) user_id: String,
    pub(crate) roles: String,
    /// Attribute name → JSON pointer.
    pub(crate) attributes: std::collections::BTreeMap<String, String>,
}

impl Fields {
    /// The identity in `session`, or [`LegacyError::NoSession`] when it is unusable.
    ///
    /// The user id is a string, or an integer turned into its decimal text (legacy databases number their users).
    /// Roles are an array of strings, none when absent or `null`. A session with a role that cannot be read — not a
    /// string, empty, with a control character or a comma — is refused whole rather than the role dropped or
    /// passed on: a dropped role could be a restriction (`suspended`), and a role with a comma would read as two
    /// roles once the server joins them with commas, so either way the user would be someone else than the legacy
    /// system says.
    pub(crate) fn identity(&self, session: &Value, expires_at_ms: Option<i64>) -> Result<LegacyIdentity, LegacyError> {
        let user_id = match session.pointer(&self.user_id) {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
            _ => return Err(LegacyError::NoSession),
        };
        if !usable_text(&user_id) {
            return Err(LegacyError::NoSession);
        }
        let roles = match session.pointer(&self.roles) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_ROLES => items
                .iter()
                .map(|item| match item {
                    Value::String(role) if usable_text(role) && !role.contains(',') => Ok(role.clone()),
                    _ => Err(LegacyError::NoSession),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(LegacyError::NoSession),
        };
        let attributes = self
            .attributes
            .iter()
            .filter_map(|(name, pointer)| {
                let value = match session.pointer(pointer)? {
                    Value::String(text) => text.clone(),
                    number @ Value::Number(_) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Null | Value::Array(_) | Value::Object(_) => return None,
                };
                usable_text(&value).then(|| (name.clone(), value))
            })
            .collect();
        Ok(LegacyIdentity { user_id, roles, expires_at_ms, attributes })
    }
}

/// Checks `attribute_fields`: names of 1 to 64 of `A-Z a-z 0-9 . _ -`, each a JSON pointer.
pub(crate) fn check_attributes(fields: &std::collections::BTreeMap<String, String>, problems: &mut Vec<String>) {
    for (name, pointer) in fields {
        let fine = (1..=64).contains(&name.len())
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !fine {
            problems.push(format!("attribute_fields: {name:?} is not a name (1 to 64 of A-Z a-z 0-9 . _ -)"));
        }
        check_pointer("attribute_fields", pointer, problems);
    }
}

/// 1..=256 bytes without control characters: it goes into response headers and logs.
fn usable_text(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_FIELD_BYTES && !text.chars().any(char::is_control)
}

/// An expiry at `pointer` in `document`: Unix seconds (a number) or an RFC 3339 date (a string); `Ok(None)` when
/// absent or `null`, `Err(())` when unreadable. Numbers are accepted only when `seconds` is true.
pub(crate) fn expiry_ms(document: &Value, pointer: &str, seconds: bool) -> Result<Option<i64>, ()> {
    match document.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(date)) => rfc3339_ms(date).map(Some).ok_or(()),
        Some(Value::Number(number)) if seconds => {
            let secs = number.as_i64().or_else(|| number.as_f64().filter(|secs| secs.is_finite()).map(f64_secs));
            secs.and_then(|secs| secs.checked_mul(1000)).map(Some).ok_or(())
        }
        Some(_) => Err(()),
    }
}

/// Whole seconds of a fractional Unix time (rounded down: an expiry is never read as later than it is).
#[allow(clippy::cast_possible_truncation, reason = "saturating float-to-int cast of a finite number")]
fn f64_secs(secs: f64) -> i64 {
    secs.floor() as i64
}

/// Milliseconds since the Unix epoch of an RFC 3339 date (`2026-05-01T12:00:00.000Z`, or with an offset such as
/// `+02:00`). humantime reads UTC dates only, so an offset is taken off here first.
pub(crate) fn rfc3339_ms(date: &str) -> Option<i64> {
    let date = date.trim();
    let (utc, offset_secs) = match date.len().checked_sub(6).and_then(|at| date.split_at_checked(at)) {
        Some((rest, offset)) if is_offset(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let hours: i64 = offset.get(1..3)?.parse().ok()?;
            let minutes: i64 = offset.get(4..6)?.parse().ok()?;
            (format!("{rest}Z"), sign * (hours * 3600 + minutes * 60))
        }
        _ => (date.to_owned(), 0),
    };
    let time = humantime::parse_rfc3339(&utc).ok()?;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok().unwrap_or(Duration::ZERO);
    let ms = i64::try_from(since_epoch.as_millis()).ok()?;
    // A local time east of UTC is earlier in UTC.
    ms.checked_sub(offset_secs.checked_mul(1000)?)
}

/// `+HH:MM` or `-HH:MM`.
fn is_offset(text: &str) -> bool {
    let bytes = text.as_bytes();
    matches!(bytes, [b'+' | b'-', h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(|digit| digit.is_ascii_digit()))
}

/// Problems with a JSON pointer setting.
pub(crate) fn check_pointer(field: &str, pointer: &str, problems: &mut Vec<String>) {
    if !pointer.starts_with('/') {
        problems.push(format!("{field}: a JSON pointer starting with '/' (e.g. /user/id), not {pointer:?}"));
    }
}

/// Problems with a cookie name: an RFC 6265 token (no separators, spaces or control characters).
pub(crate) fn check_cookie_name(name: &str, problems: &mut Vec<String>) {
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic() && !separator(c)) {
        problems.push(format!("cookie_name: a cookie name (letters, digits, `.`, `-`, `_` ...), not {name:?}"));
    }
}

/// Problems with a timeout setting.
pub(crate) fn check_timeout(timeout: Duration, problems: &mut Vec<String>) {
    if timeout.is_zero() {
        problems.push("timeout: must be more than zero".to_owned());
    }
}

/// A URL as `Debug` shows it: without a password (`scheme://user:password@host` → `scheme://***@host`).
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|authority| authority.rfind('@')) {
        Some(at) => format!("{scheme}://***{}", rest.get(at..).unwrap_or_default()),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields() -> Fields {
        Fields {
            user_id: "/user/id".into(),
            roles: "/user/roles".into(),
            attributes: [("plan".to_owned(), "/user/plan".to_owned()), ("beta".to_owned(), "/flags/beta".to_owned())]
                .into(),
        }
    }

    #[test]
    fn attributes_are_read_as_text_and_an_unusable_one_is_absent() {
        let session = json!({"user": {"id": "a", "plan": "pro"}, "flags": {"beta": true}});
        let identity = fields().identity(&session, None).unwrap();
        assert_eq!(identity.attributes.get("plan").map(String::as_str), Some("pro"));
        assert_eq!(identity.attributes.get("beta").map(String::as_str), Some("true"));
        for plan in [json!(null), json!({"tier": 1}), json!(["pro"]), json!("")] {
            let session = json!({"user": {"id": "a", "plan": plan}});
            assert!(!fields().identity(&session, None).unwrap().attributes.contains_key("plan"), "{plan}");
        }
        let mut problems = Vec::new();
        check_attributes(
            &[("bad name".to_owned(), "/x".to_owned()), ("ok".to_owned(), "x".to_owned())].into(),
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn the_user_and_roles_are_read_at_their_pointers() {
        let session = json!({"user": {"id": "alice", "roles": ["staff", "admin"]}});
        let identity = fields().identity(&session, Some(5)).unwrap();
        assert_eq!(identity.user_id, "alice");
        assert_eq!(identity.roles, ["staff", "admin"]);
        assert_eq!(identity.expires_at_ms, Some(5));
    }

    #[test]
    fn a_numeric_user_id_becomes_its_decimal_text_and_a_fractional_one_is_refused() {
        assert_eq!(fields().identity(&json!({"user": {"id": 42}}), None).unwrap().user_id, "42");
        assert_eq!(fields().identity(&json!({"user": {"id": 4.2}}), None), Err(LegacyError::NoSession));
    }

    #[test]
    fn missing_or_null_roles_are_none() {
        assert!(fields().identity(&json!({"user": {"id": "a"}}), None).unwrap().roles.is_empty());
        assert!(fields().identity(&json!({"user": {"id": "a", "roles": null}}), None).unwrap().roles.is_empty());
    }

    #[test]
    fn a_session_with_an_unreadable_role_is_refused_whole() {
        for roles in [json!(["staff", 7]), json!(["staff", ""]), json!(["a,b"]), json!(["x\ny"]), json!("staff")] {
            let session = json!({"user": {"id": "a", "roles": roles}});
            assert_eq!(fields().identity(&session, None), Err(LegacyError::NoSession), "{roles}");
        }
    }

    #[test]
    fn an_unusable_user_id_means_no_session() {
        let long = "x".repeat(257);
        for id in [json!(null), json!(""), json!("a\u{0}b"), json!(long), json!(["a"]), json!(true)] {
            assert_eq!(fields().identity(&json!({"user": {"id": id}}), None), Err(LegacyError::NoSession), "{id}");
        }
        assert_eq!(fields().identity(&json!({"user": {}}), None), Err(LegacyError::NoSession));
        assert_eq!(fields().identity(&json!({"user": {"id": "x".repeat(256)}}), None).unwrap().user_id.len(), 256);
    }

    #[test]
    fn rfc3339_dates_are_read_in_utc_and_with_offsets() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(rfc3339_ms("2026-05-01T12:00:00Z"), Some(1_777_636_800_000));
        assert_eq!(rfc3339_ms("2026-05-01T14:00:00+02:00"), Some(1_777_636_800_000));
        assert_eq!(rfc3339_ms("2026-05-01T10:30:00-01:30"), Some(1_777_636_800_000));
        assert_eq!(rfc3339_ms("2026-05-01T12:00:00+00:00"), Some(1_777_636_800_000));
        for bad in ["", "yesterday", "2026-05-01", "2026-05-01T12:00:00+2:00", "2026-13-01T00:00:00Z"] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_expiry_is_unix_seconds_or_a_date() {
        let doc = json!({"s": 1_777_636_800, "f": 1.9, "d": "2026-05-01T12:00:00Z", "n": null, "b": true, "x": "soon"});
        assert_eq!(expiry_ms(&doc, "/s", true), Ok(Some(1_777_636_800_000)));
        assert_eq!(expiry_ms(&doc, "/f", true), Ok(Some(1000)));
        assert_eq!(expiry_ms(&doc, "/s", false), Err(()));
        assert_eq!(expiry_ms(&doc, "/d", false), Ok(Some(1_777_636_800_000)));
        assert_eq!(expiry_ms(&doc, "/n", true), Ok(None));
        assert_eq!(expiry_ms(&doc, "/absent", true), Ok(None));
        assert_eq!(expiry_ms(&doc, "/b", true), Err(()));
        assert_eq!(expiry_ms(&doc, "/x", true), Err(()));
    }

    #[test]
    fn debug_urls_hide_their_password() {
        assert_eq!(redact_url("redis://:hunter2@127.0.0.1:6379/0"), "redis://***@127.0.0.1:6379/0");
        assert_eq!(redact_url("https://u:p@host/path?q=a@b"), "https://***@host/path?q=a@b");
        assert_eq!(redact_url("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
