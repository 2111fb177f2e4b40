//! The original request's path as an upstream sees it. Route rules match the normalised path, never the raw one:
//! `/%61dmin/users`, `/x/../admin/users` and `//admin/users` all reach an upstream as `/admin/users`, so they are
//! `/admin/users` here too. A path that different servers read differently is refused instead of guessed at.

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path (`*`, `admin`, `http://host/admin`, or empty).
    #[error("the path must start with /")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("the path has invalid percent-encoding")]
    InvalidEncoding,
    /// `%2F` or `%5C`: one segment to a server that decodes after splitting, two to one that decodes before.
    #[error("the path has an encoded / or \\ (%2F, %5C)")]
    EncodedSeparator,
    /// A literal `\`: a separator on Windows servers and some frameworks, a character elsewhere.
    #[error("the path has a backslash")]
    Backslash,
    /// `;`: path parameters, which some servers (Tomcat, Spring) strip before routing and others keep.
    #[error("the path has a ; (path parameters)")]
    Semicolon,
    /// A NUL or another control character, raw or encoded, or a raw space or non-ASCII byte.
    #[error("the path has a NUL, a control character, a space or a non-ASCII byte")]
    InvalidCharacter,
    /// `%25` followed by two hex digits: a different path to a server that decodes twice.
    #[error("the path has a double-encoded character (%25 followed by two hex digits)")]
    DoubleEncoded,
    /// More `..` than segments before them.
    #[error("the path climbs above the root with ..")]
    AboveRoot,
    /// `..` next to an empty segment (`/admin//../x`): `/admin/x` to a server that removes dot segments first,
    /// `/x` to one that merges slashes first.
    #[error("the path combines // and .. ambiguously")]
    Ambiguous,
}

/// The normalised path of `uri` (a path with an optional query or fragment, which are dropped): unreserved
/// characters percent-decoded, every other escape kept with upper-case hex, repeated slashes merged, dot segments
/// removed (RFC 3986 §5.2.4). A trailing slash is kept.
///
/// # Errors
/// What [`PathError`] lists: whatever would still be read differently by different servers.
pub fn normalise(uri: &str) -> Result<String, PathError> {
    let raw = uri.split(['?', '#']).next().unwrap_or_default();
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let trailing_slash = segments.last().is_some_and(|last| matches!(*last, "" | "." | ".."));
    // Servers differ in the order of the two steps; where the order changes the result, the path is refused.
    let merged_first = remove_dot_segments(segments.iter().copied().filter(|s| !s.is_empty()))?;
    let mut dots_first = remove_dot_segments(segments.iter().copied())?;
    dots_first.retain(|s| !s.is_empty());
    if merged_first != dots_first {
        return Err(PathError::Ambiguous);
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in &merged_first {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// The path of `uri` as a server that does not remove dot segments reads it (Express, many application routers:
/// the raw path nginx passes on): unreserved characters decoded and repeated slashes merged as [`normalise`]
/// does, but `.` and `..` kept as segments. `None` when that is the normalised path anyway. Merging slashes only
/// ever makes a path meet more prefixes, never fewer, so only the dot segments can make such a server route a
/// request under a rule the normalised path escapes (`/admin/../public`).
///
/// # Errors
/// What [`normalise`] refuses.
pub fn keeping_dot_segments(uri: &str) -> Result<Option<String>, PathError> {
    let raw = uri.split(['?', '#']).next().unwrap_or_default();
    let decoded = decode_unreserved(raw)?;
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    if !segments.iter().any(|segment| matches!(*segment, "." | "..")) {
        return Ok(None);
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in segments.iter().filter(|segment| !segment.is_empty()) {
        path.push('/');
        path.push_str(segment);
    }
    if decoded.ends_with('/') {
        path.push('/');
    }
    Ok(Some(path))
}

/// A route rule's prefix in the form [`normalise`] gives paths, without a trailing slash (but `/` itself).
///
/// # Errors
/// A prefix with a query or fragment, or one [`normalise`] refuses.
pub fn normalise_prefix(prefix: &str) -> Result<String, PathError> {
    if prefix.contains(['?', '#']) {
        return Err(PathError::InvalidCharacter);
    }
    let path = normalise(prefix)?;
    Ok(match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => path,
    })
}

/// Whether the normalised `path` is `prefix` or lies below it: prefixes match whole segments, so `/admin` covers
/// `/admin` and `/admin/users` but not `/administrator`.
pub(crate) fn is_under(path: &str, prefix: &str, case_insensitive: bool) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(head) = path.get(..prefix.len()) else { return false };
    let same = if case_insensitive { head.eq_ignore_ascii_case(prefix) } else { head == prefix };
    same && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

/// Decodes the escapes of unreserved characters (RFC 3986 §2.3), upper-cases the hex of the others, and refuses
/// what no normalisation can make unambiguous.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let escape_at = |i: usize| -> Option<u8> {
        let high = hex_value(*bytes.get(i + 1)?)?;
        let low = hex_value(*bytes.get(i + 2)?)?;
        Some((high << 4) | low)
    };
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let value = escape_at(i).ok_or(PathError::InvalidEncoding)?;
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    value if value.is_ascii_control() => return Err(PathError::InvalidCharacter),
                    b'%' if escape_at(i + 2).is_some() => return Err(PathError::DoubleEncoded),
                    value if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') => {
                        out.push(char::from(value));
                    }
                    value => out.push_str(&format!("%{value:02X}")),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            byte if byte.is_ascii_control() || byte == b' ' || !byte.is_ascii() => {
                return Err(PathError::InvalidCharacter)
            }
            byte => {
                out.push(char::from(byte));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on segments, except that a `..` with nothing left to remove is an error rather than ignored
/// (nginx refuses it too: it names a file outside the tree).
fn remove_dot_segments<'a>(segments: impl Iterator<Item = &'a str>) -> Result<Vec<&'a str>, PathError> {
    let mut kept = Vec::new();
    for segment in segments {
        match segment {
            "." => {}
            ".." => {
                kept.pop().ok_or(PathError::AboveRoot)?;
            }
            segment => kept.push(segment),
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_normalise_to_it() {
        for spelling in [
            "/admin/users",
            "/%61dmin/users",
            "/%61%64%6D%69%6e/users",
            "/x/../admin/users",
            "/x/%2e%2E/admin/users",
            "//admin/users",
            "/admin//users",
            "/admin/./users",
            "/./admin/users",
            "/admin/users?x=/public#frag",
            "/admin/users/.",
        ] {
            let expected = if spelling.ends_with('.') { "/admin/users/" } else { "/admin/users" };
            assert_eq!(normalise(spelling).as_deref(), Ok(expected), "{spelling}");
        }
        assert_eq!(normalise("/").as_deref(), Ok("/"));
        assert_eq!(normalise("/admin/").as_deref(), Ok("/admin/"));
        assert_eq!(normalise("/x/..").as_deref(), Ok("/"));
        // Escapes of other characters stay escapes (with upper-case hex): decoding them would change the path.
        assert_eq!(normalise("/caf%c3%a9/%3a%20").as_deref(), Ok("/caf%C3%A9/%3A%20"));
        assert_eq!(normalise("/100%25").as_deref(), Ok("/100%25"));
    }

    #[test]
    fn dot_segments_are_kept_for_servers_that_do_not_remove_them() {
        assert_eq!(keeping_dot_segments("/admin/users"), Ok(None));
        assert_eq!(keeping_dot_segments("//admin//users?x=/../"), Ok(None));
        assert_eq!(keeping_dot_segments("/admin/../public"), Ok(Some("/admin/../public".into())));
        assert_eq!(keeping_dot_segments("/%61dmin/%2e%2E//public/"), Ok(Some("/admin/../public/".into())));
        assert_eq!(keeping_dot_segments("/./admin"), Ok(Some("/./admin".into())));
        assert_eq!(keeping_dot_segments("/admin%2F.."), Err(PathError::EncodedSeparator));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (path, error) in [
            ("/admin%2Fusers", PathError::EncodedSeparator),
            ("/admin%2fusers", PathError::EncodedSeparator),
            ("/admin%5Cusers", PathError::EncodedSeparator),
            ("/admin\\users", PathError::Backslash),
            ("/admin%00", PathError::InvalidCharacter),
            ("/admin\0", PathError::InvalidCharacter),
            ("/admin%0a", PathError::InvalidCharacter),
            ("/admin users", PathError::InvalidCharacter),
            ("/admin%zz", PathError::InvalidEncoding),
            ("/admin%2", PathError::InvalidEncoding),
            ("/admin%", PathError::InvalidEncoding),
            ("/%2561dmin", PathError::DoubleEncoded),
            ("/../admin", PathError::AboveRoot),
            ("/%2e%2e/admin", PathError::AboveRoot),
            ("/x/../../admin", PathError::AboveRoot),
            ("/admin//../x", PathError::Ambiguous),
            ("/admin;x/users", PathError::Semicolon),
            ("admin", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("http://host/admin", PathError::NotAbsolute),
        ] {
            assert_eq!(normalise(path), Err(error), "{path:?}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_and_case_only_when_asked() {
        assert!(is_under("/admin", "/admin", false));
        assert!(is_under("/admin/", "/admin", false));
        assert!(is_under("/admin/users", "/admin", false));
        assert!(!is_under("/administrator", "/admin", false));
        assert!(!is_under("/adm", "/admin", false));
        assert!(is_under("/anything", "/", false));
        assert!(!is_under("/ADMIN/users", "/admin", false));
        assert!(is_under("/ADMIN/users", "/admin", true));
        assert!(is_under("/Admin", "/admin", true));
        assert!(!is_under("/ADMINISTRATOR", "/admin", true));
    }

    #[test]
    fn rule_prefixes_are_normalised_without_a_trailing_slash() {
        assert_eq!(normalise_prefix("/admin/").as_deref(), Ok("/admin"));
        assert_eq!(normalise_prefix("/%61dmin").as_deref(), Ok("/admin"));
        assert_eq!(normalise_prefix("/").as_deref(), Ok("/"));
        assert_eq!(normalise_prefix("/admin?x"), Err(PathError::InvalidCharacter));
        assert_eq!(normalise_prefix("admin"), Err(PathError::NotAbsolute));
    }
}
