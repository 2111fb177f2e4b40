//! Authorization requests (RFC 6749 §4.1.1, RFC 7636, OpenID Connect Core §3.1.2.1): parsed, checked against the
//! client's registration, and carried sealed through the login and consent forms and pushed requests.
//!
//! The order of the checks is the RFC's: the client and its redirect URI first, and while either is in doubt
//! the error is shown to the user, never sent anywhere (RFC 6749 §4.1.2.1) — an attacker's redirect URI must not
//! receive even an error. Everything after that is answered at the (now trusted) redirect URI.

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use tessera_model::{Client, Millis};
use url::Url;

/// Scopes OpenID Connect defines, which a client must still be registered with to ask for.
pub(crate) const OPENID: &str = "openid";

/// The most parameters a request of the OAuth endpoints may carry. The largest legitimate one, a token exchange
/// with an actor token and client authentication, or an authorization request, has about fifteen; more are
/// refused before anything is decoded, so a 64 KiB body of thousands of tiny parameters costs no more than a
/// normal request.
const MAX_PARAMETERS: usize = 32;
/// Longest `state` and `nonce` accepted: values that fit comfortably in a URL.
const MAX_STATE_LEN: usize = 512;
/// Longest redirect URI accepted.
const MAX_REDIRECT_URI_LEN: usize = 2048;

/// `prompt` (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Prompt {
    /// Ask only what is needed.
    #[default]
    Normal,
    /// Never show a page: an error when a login or consent would be needed.
    None,
    /// Ask for the password again, even with a live login.
    Login,
    /// Ask for consent again, even when it was given before.
    Consent,
}

/// A checked authorization request: what a code will be bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuthorizationRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    /// The S256 PKCE challenge.
    pub(crate) code_challenge: String,
    pub(crate) prompt: Prompt,
    /// Seconds; a login older than this is asked for again.
    pub(crate) max_age: Option<u64>,
}

impl AuthorizationRequest {
    /// Where errors about this request go.
    pub(crate) fn reply_to(&self) -> ReplyTo {
        ReplyTo { redirect_uri: self.redirect_uri.clone(), state: self.state.clone() }
    }
}

/// Where an answer about a request goes: its (checked) redirect URI, with its `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReplyTo {
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// The client or the redirect URI cannot be trusted: shown to the user, never redirected.
    Shown(&'static str),
    /// Sent back to the client's redirect URI as `error` (RFC 6749 §4.1.2.1), with a description.
    Redirected { to: ReplyTo, error: &'static str, description: &'static str },
}

/// The parameters of a query string or form, each present at most once (RFC 6749 §3.1, §3.2), in time linear in
/// its length.
pub(crate) fn parameters(encoded: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    // Counted as the decoder splits them: empty pieces (`a=1&&b=2`) are no parameter.
    if encoded.split(|&byte| byte == b'&').filter(|piece| !piece.is_empty()).nth(MAX_PARAMETERS).is_some() {
        return Err("too many parameters");
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(encoded).map_err(|_| "the parameters are not a valid form")?;
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    if !pairs.iter().all(|(name, _)| seen.insert(name.as_str())) {
        return Err("a parameter is repeated");
    }
    Ok(pairs)
}

/// Whether a request's body is a form (`application/x-www-form-urlencoded`).
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}

/// The parameters of a request to a GET-or-POST endpoint (`/oauth2/authorize`, `/oauth2/logout`): its query
/// string, or its form body, which must then be sent as one.
pub(crate) fn query_or_form(
    headers: &HeaderMap,
    query: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Vec<(String, String)>, &'static str> {
    match body {
        None => parameters(query.unwrap_or_default().as_bytes()),
        Some(body) if is_form(headers) => parameters(body),
        Some(_) => Err("the request must be a form (application/x-www-form-urlencoded)"),
    }
}

/// The value of parameter `name`, if present.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The client of a request, when it may use the authorization endpoint.
pub(crate) fn code_client(client: Option<&Client>) -> Result<&Client, Refusal> {
    match client {
        Some(client) if !client.disabled && client.code_flow.is_some() => Ok(client),
        _ => Err(Refusal::Shown("The application that sent you here is not registered to sign users in.")),
    }
}

/// Checks the parameters of an authorization request from `client` (already found by its `client_id`).
pub(crate) fn check(client: &Client, pairs: &[(String, String)]) -> Result<AuthorizationRequest, Refusal> {
    let registered = client.code_flow.as_ref().map(|flow| flow.redirect_uris.as_slice()).unwrap_or_default();
    let redirect_uri = param(pairs, "redirect_uri")
        .filter(|uri| registered.iter().any(|known| redirect_uri_matches(known, uri)))
        .ok_or(Refusal::Shown(
            "The application asked to send you to an address it has not registered. Nothing was sent there.",
        ))?;
    let to = ReplyTo {
        redirect_uri: redirect_uri.to_owned(),
        state: param(pairs, "state").filter(|state| state.len() <= MAX_STATE_LEN).map(str::to_owned),
    };
    let refuse =
        |error: &'static str, description: &'static str| Refusal::Redirected { to: to.clone(), error, description };
    let invalid = |description: &'static str| refuse("invalid_request", description);
    if param(pairs, "state").is_some_and(|state| state.len() > MAX_STATE_LEN) {
        return Err(invalid("state is too long"));
    }
    match param(pairs, "response_type") {
        Some("code") => {}
        None => return Err(invalid("response_type is required")),
        Some(_) => return Err(refuse("unsupported_response_type", "only response_type=code is supported")),
    }
    if param(pairs, "response_mode").is_some_and(|mode| mode != "query") {
        return Err(invalid("only response_mode=query is supported"));
    }
    for unsupported in ["request", "registration"] {
        if param(pairs, unsupported).is_some() {
            let error = if unsupported == "request" { "request_not_supported" } else { "registration_not_supported" };
            return Err(refuse(error, "request objects and dynamic registration are not supported"));
        }
    }
    let code_challenge = match (param(pairs, "code_challenge"), param(pairs, "code_challenge_method")) {
        (None, _) => return Err(invalid("PKCE is required: send code_challenge with code_challenge_method=S256")),
        (Some(_), None | Some("plain")) => {
            return Err(invalid("code_challenge_method must be S256: the plain method is not accepted"))
        }
        (Some(_), Some(method)) if method != "S256" => return Err(invalid("code_challenge_method must be S256")),
        (Some(challenge), Some(_)) if !is_s256_challenge(challenge) => {
            return Err(invalid("code_challenge must be a base64url SHA-256 hash (43 characters)"))
        }
        (Some(challenge), Some(_)) => challenge.to_owned(),
    };
    let scope: Vec<String> =
        param(pairs, "scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if scope.iter().any(|wanted| !client.scopes.contains(wanted)) {
        return Err(refuse("invalid_scope", "a requested scope is not granted to this client"));
    }
    let prompt = match param(pairs, "prompt") {
        None | Some("") => Prompt::Normal,
        Some("none") => Prompt::None,
        Some("login") => Prompt::Login,
        Some("consent") => Prompt::Consent,
        Some(_) => return Err(invalid("prompt must be one of none, login, consent")),
    };
    let max_age = match param(pairs, "max_age") {
        None => None,
        Some(age) => Some(age.parse::<u64>().map_err(|_| invalid("max_age must be a number of seconds"))?),
    };
    let nonce = param(pairs, "nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|nonce| nonce.len() > MAX_STATE_LEN) {
        return Err(invalid("nonce is too long"));
    }
    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: to.redirect_uri,
        scope,
        state: to.state,
        nonce,
        code_challenge,
        prompt,
        max_age,
    })
}

/// A PKCE S256 challenge: base64url of 32 bytes.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a PKCE `code_verifier` has the form RFC 7636 §4.1 gives it: 43 to 128 unreserved characters.
pub(crate) fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `requested` is the registered redirect URI `registered`: the same string, except that a loopback
/// `http` URI (RFC 8252 §7.3: `127.0.0.1` or `[::1]`) matches on any port, since a native app gets whatever port
/// is free. Nothing else is ever loosened: no prefixes, no wildcards, no case folding.
pub(crate) fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(registered), Ok(requested)) = (Url::parse(registered), Url::parse(requested)) else { return false };
    is_loopback(&registered) && is_loopback(&requested) && {
        let mut requested = requested;
        let mut registered = registered;
        // Both are http URLs with a host, so setting the port cannot fail.
        requested.set_port(None).is_ok()
            && registered.set_port(None).is_ok()
            && requested.as_str() == registered.as_str()
    }
}

fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        }
}

/// Whether `uri` may be registered as a redirect URI, and why not: an absolute URI without a fragment or
/// credentials (RFC 6749 §3.1.2), that is `https`, `http` to a loopback address (native apps, RFC 8252 §7.3), or a
/// private-use scheme in reverse-domain form (`com.example.app:/callback`, RFC 8252 §7.1).
///
/// # Errors
/// What is wrong with it.
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("a redirect URI must be at most 2048 characters");
    }
    let url = Url::parse(uri).map_err(|_| "a redirect URI must be an absolute URI")?;
    if url.as_str() != uri && url.as_str() != format!("{uri}/") {
        return Err("a redirect URI must be written as browsers write it (lowercase scheme and host, no dot segments)");
    }
    if url.fragment().is_some() {
        return Err("a redirect URI must not have a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a redirect URI must not carry credentials");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err("an http redirect URI must be to 127.0.0.1 or [::1] (use https elsewhere)"),
        scheme if scheme.contains('.') && url.host().is_none() => Ok(()),
        _ => Err("a redirect URI must be https, http to a loopback address, or a reverse-domain private-use scheme"),
    }
}

/// A request pushed ahead (RFC 9126), as its `request_uri` carries it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Pushed {
    pub(crate) request: AuthorizationRequest,
    pub(crate) expires_at: Millis,
}

/// The prefix of a pushed request's `request_uri` (RFC 9126 §2.2).
pub(crate) const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly_except_the_port_of_a_loopback_one() {
        let app = "https://app.example/cb";
        assert!(redirect_uri_matches(app, app));
        for near in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/cb#x",
            "https://app.example/cbx",
            "https://app.example/CB",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://app.example.evil/cb",
            "https://app.example/cb/../cb",
            "http://app.example/cb",
            "https://app.example@evil.example/cb",
        ] {
            assert!(!redirect_uri_matches(app, near), "{near}");
        }
        let native = "http://127.0.0.1/callback";
        assert!(redirect_uri_matches(native, "http://127.0.0.1:51234/callback"));
        assert!(redirect_uri_matches("http://[::1]:8000/cb", "http://[::1]:9/cb"));
        for near in [
            "http://127.0.0.1:51234/callback/x",
            "http://localhost:51234/callback",
            "https://127.0.0.1:51234/callback",
            "http://127.0.0.2.evil.example/callback",
            "http://127.0.0.1:51234/callback?x",
        ] {
            assert!(!redirect_uri_matches(native, near), "{near}");
        }
    }

    #[test]
    fn only_https_loopback_http_and_reverse_domain_schemes_may_be_registered() {
        for good in ["https://app.example/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb", "com.example.app:/cb"] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
            "HTTPS://App.Example/cb",
            "https://app.example/a/../cb",
            "http://localhost/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verifiers_and_challenges_have_the_rfc_7636_form() {
        assert!(is_code_verifier(&"a".repeat(43)));
        assert!(is_code_verifier(&"-._~".repeat(32)));
        assert!(!is_code_verifier(&"a".repeat(42)));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
        assert!(is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
        assert!(!is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
    }
}
