//! What the gateway says about the request it is asking about: the original method and URI, and in the auth URL
//! it calls (`/verify?audience=...&scope=...`), what it requires besides the route rules.
//!
//! Gateways pass the client's own headers on to the auth request (nginx `auth_request` does), so a header the
//! gateway does not set itself may be the client's: which headers count is a setting, a header given twice or
//! two styles that disagree are refused, and nothing is resolved by preference.

use axum::http::{HeaderMap, HeaderValue};

use super::path::{keeping_dot_segments, normalise};
use super::GatewayError;
use crate::error::ApiError;
use crate::settings::ForwardedHeaders;

/// The original request, as far as the gateway told it: an upper-case method and a normalised path.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Original {
    pub(crate) method: Option<String>,
    pub(crate) path: Option<String>,
    /// The path with its dot segments kept, where it has any ([`super::path::keeping_dot_segments`]): the
    /// rules either reading selects all apply.
    pub(crate) path_with_dot_segments: Option<String>,
}

/// The original request named by the headers `style` reads.
///
/// # Errors
/// 400 for a header given twice or not visible ASCII, for `X-Original-*` and `X-Forwarded-*` that disagree, and
/// for a method or path [`checked`] refuses.
pub(crate) fn from_headers(style: &ForwardedHeaders, headers: &HeaderMap) -> Result<Original, ApiError> {
    let (method, uri) = match style {
        ForwardedHeaders::Auto => {
            let [original_method, forwarded_method, original_uri, forwarded_uri] =
                values(headers, [X_ORIGINAL_METHOD, X_FORWARDED_METHOD, X_ORIGINAL_URI, X_FORWARDED_URI])?;
            (agreeing(original_method, forwarded_method)?, agreeing(original_uri, forwarded_uri)?)
        }
        ForwardedHeaders::Nginx => values(headers, [X_ORIGINAL_METHOD, X_ORIGINAL_URI])?.into(),
        ForwardedHeaders::Traefik => values(headers, [X_FORWARDED_METHOD, X_FORWARDED_URI])?.into(),
        ForwardedHeaders::Custom { method, uri } => values(headers, [method.as_str(), uri.as_str()])?.into(),
        ForwardedHeaders::Envoy => (None, None),
    };
    checked(method, uri)
}

/// The original request named by method and URI: upper-case methods only (methods are case-sensitive, RFC 9110
/// §9.1, but some servers upper-case them, so `delete` could be `DELETE` upstream while no rule for `DELETE`
/// applied here), and the path normalised as the upstream will read it.
///
/// # Errors
/// 400 for a method that is not upper-case letters, `-` and `_` (1 to 32), or a path [`normalise`] refuses.
pub(crate) fn checked(method: Option<&str>, uri: Option<&str>) -> Result<Original, ApiError> {
    if method.is_some_and(|method| !is_method(method)) {
        return Err(refused("invalid_method", "the original method must be upper-case letters, - and _"));
    }
    let refused_path = |err: super::path::PathError| refused("ambiguous_path", format!("original URI refused: {err}"));
    let (path, path_with_dot_segments) = match uri {
        Some(uri) => (Some(normalise(uri).map_err(refused_path)?), keeping_dot_segments(uri).map_err(refused_path)?),
        None => (None, None),
    };
    Ok(Original { method: method.map(str::to_owned), path, path_with_dot_segments })
}

/// Whether `method` is a method as route rules name them: 1 to 32 upper-case letters, `-` and `_`.
#[must_use]
pub fn is_method(method: &str) -> bool {
    (1..=32).contains(&method.len())
        && method.bytes().all(|byte| byte.is_ascii_uppercase() || byte == b'-' || byte == b'_')
}

const X_ORIGINAL_METHOD: &str = "x-original-method";
const X_ORIGINAL_URI: &str = "x-original-uri";
const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_FORWARDED_URI: &str = "x-forwarded-uri";

/// The one value of each header of `names` (lower-case), if present, found in one pass over the request's
/// headers: for the handful a request has, comparing names costs less than a hash lookup per name, and `/verify`
/// is a hot path (issue #15's throughput figure).
///
/// # Errors
/// 400 for one of them given more than once, or not visible ASCII.
fn values<'a, const N: usize>(headers: &'a HeaderMap, names: [&str; N]) -> Result<[Option<&'a str>; N], ApiError> {
    let mut found: [Option<&'a HeaderValue>; N] = [None; N];
    for (name, value) in headers {
        let Some(slot) = names.iter().position(|wanted| name.as_str() == *wanted).and_then(|i| found.get_mut(i)) else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(refused("repeated_header", format!("{name} is given more than once")));
        }
    }
    let mut texts = [None; N];
    for ((text, value), name) in texts.iter_mut().zip(found).zip(names) {
        if let Some(value) = value {
            let visible = value.to_str().map_err(|_| refused("invalid_header", format!("{name} is not visible ASCII")));
            *text = Some(visible?);
        }
    }
    Ok(texts)
}

/// The value both styles give, or the one given; two different ones are refused.
fn agreeing<'a>(original: Option<&'a str>, forwarded: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match (original, forwarded) {
        (Some(a), Some(b)) if a != b => {
            Err(refused("forwarded_conflict", "X-Original-* and X-Forwarded-* name different requests"))
        }
        (original, forwarded) => Ok(original.or(forwarded)),
    }
}

/// 400 for a `/verify` request that cannot be judged, counted by `reason` in `tessera_verify_refused_total`.
pub(crate) fn refused(reason: &'static str, description: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    metrics::counter!("tessera_verify_refused_total", "reason" => reason).increment(1);
    GatewayError::Unjudgeable(description.into()).into()
}

/// What the gateway's auth URL requires besides the route rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Requirements {
    /// The token must be for this audience.
    pub(crate) audience: Option<String>,
    /// The token must carry each of these scopes.
    pub(crate) scopes: Vec<String>,
}

/// The requirements of the query of `/verify`: `audience` at most once, `scope` any number of times (each a
/// space-separated list), nothing else. The query is the gateway's configuration, which the client cannot
/// change; a parameter Tessera does not know is a mistake there, refused so it is not silently ignored.
///
/// # Errors
/// 400 for an unknown, repeated or empty parameter, or a malformed query.
pub(crate) fn requirements(query: Option<&str>) -> Result<Requirements, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|_| refused("invalid_query", "the /verify query is malformed"))?;
    let mut required = Requirements::default();
    for (name, value) in pairs {
        match name.as_str() {
            "audience" if required.audience.is_some() => {
                return Err(refused("invalid_query", "audience is given more than once"))
            }
            "audience" if !value.is_empty() => required.audience = Some(value),
            "scope" if value.split(' ').all(super::identity::is_scope_token) => {
                required.scopes.extend(value.split(' ').map(str::to_owned));
            }
            "audience" | "scope" => return Err(refused("invalid_query", format!("{name} is empty or malformed"))),
            _ => return Err(refused("invalid_query", "/verify takes only audience and scope parameters")),
        }
    }
    Ok(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    fn original(method: &str, path: &str) -> Original {
        Original { method: Some(method.into()), path: Some(path.into()), path_with_dot_segments: None }
    }

    #[test]
    fn each_style_reads_only_its_own_headers() {
        let both = headers(&[
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/admin/users/7"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(from_headers(&ForwardedHeaders::Nginx, &both).unwrap(), original("DELETE", "/admin/users/7"));
        assert_eq!(from_headers(&ForwardedHeaders::Traefik, &both).unwrap(), original("GET", "/public"));
        let custom = ForwardedHeaders::Custom { method: "x-forwarded-method".into(), uri: "x-original-uri".into() };
        assert_eq!(from_headers(&custom, &both).unwrap(), original("GET", "/admin/users/7"));
        assert_eq!(from_headers(&ForwardedHeaders::Envoy, &both).unwrap(), Original::default());
        // The default reads both styles, and refuses them when they disagree instead of preferring one.
        assert_eq!(from_headers(&ForwardedHeaders::Auto, &both).unwrap_err().status().as_u16(), 400);
        let only_uri = headers(&[("x-original-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert_eq!(from_headers(&ForwardedHeaders::Auto, &only_uri).unwrap_err().status().as_u16(), 400);
        let agreeing =
            headers(&[("x-original-method", "GET"), ("x-forwarded-method", "GET"), ("x-forwarded-uri", "/%61dmin")]);
        assert_eq!(from_headers(&ForwardedHeaders::Auto, &agreeing).unwrap(), original("GET", "/admin"));
    }

    #[test]
    fn a_header_given_twice_or_a_lower_case_method_is_refused() {
        let twice = headers(&[("x-original-uri", "/public"), ("x-original-uri", "/admin")]);
        assert_eq!(from_headers(&ForwardedHeaders::Nginx, &twice).unwrap_err().status().as_u16(), 400);
        let lower = headers(&[("x-original-method", "delete"), ("x-original-uri", "/admin")]);
        assert_eq!(from_headers(&ForwardedHeaders::Nginx, &lower).unwrap_err().status().as_u16(), 400);
        assert!(is_method("DELETE") && is_method("VERSION-CONTROL"));
        assert!(!is_method("delete") && !is_method("") && !is_method("GET /") && !is_method(&"A".repeat(33)));
    }

    #[test]
    fn the_auth_url_names_an_audience_and_scopes_and_nothing_else() {
        assert_eq!(requirements(None).unwrap(), Requirements::default());
        assert_eq!(
            requirements(Some("audience=orders&scope=orders:read&scope=a+b")).unwrap(),
            Requirements {
                audience: Some("orders".into()),
                scopes: vec!["orders:read".into(), "a".into(), "b".into()]
            }
        );
        for query in ["audience=a&audience=b", "audience=", "scope=", "scope=a++b", "aud=orders", "audience=a&x=1"] {
            assert_eq!(requirements(Some(query)).unwrap_err().status().as_u16(), 400, "{query}");
        }
    }
}
