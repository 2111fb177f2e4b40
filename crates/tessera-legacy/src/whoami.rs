//! Any legacy system that can say who is logged in: its who-am-I endpoint is asked with the session cookie, and
//! its JSON answer read.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::fields::{check_cookie_name, check_pointer, check_timeout, expiry_ms, redact_url, Fields};
use crate::{ConfigError, LegacyError, LegacyIdentity, LegacySessions, MAX_COOKIE_BYTES};

/// Largest answer read: a who-am-I answer is a few hundred bytes; a bigger one is a misconfigured URL (a page).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How to ask the legacy system.
#[derive(Clone)]
pub struct WhoAmIConfig {
    /// The endpoint (`http` or `https`), asked with `GET` and the session cookie.
    pub url: String,
    /// The legacy session cookie's name.
    pub cookie_name: String,
    /// How long an answer may take, connecting and reading the body included.
    pub timeout: Duration,
    /// JSON pointer to the user id in the answer (e.g. `/id`).
    pub user_id_field: String,
    /// JSON pointer to the roles array in the answer (e.g. `/roles`).
    pub roles_field: String,
    /// Attribute name → JSON pointer: what rollout segments may select users by (`plan` → `/user/plan`).
    pub attribute_fields: std::collections::BTreeMap<String, String>,
    /// JSON pointer to the session's expiry in the answer (Unix seconds or an RFC 3339 date), if it gives one.
    pub expires_field: Option<String>,
    /// Where a `POST` with the cookie ends the session, if anywhere; an empty string means nowhere (as in the
    /// configuration file's `logout_url = ""`).
    pub logout_url: Option<String>,
}

/// URLs without their password: configurations get logged.
impl std::fmt::Debug for WhoAmIConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhoAmIConfig")
            .field("url", &redact_url(&self.url))
            .field("cookie_name", &self.cookie_name)
            .field("timeout", &self.timeout)
            .field("user_id_field", &self.user_id_field)
            .field("roles_field", &self.roles_field)
            .field("attribute_fields", &self.attribute_fields)
            .field("expires_field", &self.expires_field)
            .field("logout_url", &self.logout_url.as_deref().map(redact_url))
            .finish()
    }
}

/// A legacy system's who-am-I endpoint.
///
/// The request carries the one session cookie and nothing else the browser sent: the endpoint learns the session,
/// not the user's other cookies. Redirects are not followed (a redirect to a login page is no answer, and a
/// followed redirect would carry the cookie elsewhere); no proxy from the environment is used, for the same reason.
///
/// The endpoint answers `200` with JSON for a live session and `401`, `403` or `404` for none; any other answer,
/// an unreadable body or no answer within the timeout is [`Unavailable`](LegacyError::Unavailable).
pub struct WhoAmI {
    client: reqwest::Client,
    /// The headers that pass the request being served on to the endpoint (its id, its trace context).
    passed_on: fn() -> HeaderMap,
    url: reqwest::Url,
    logout_url: Option<reqwest::Url>,
    cookie_name: String,
    fields: Fields,
    expires_field: Option<String>,
}

impl std::fmt::Debug for WhoAmI {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhoAmI")
            .field("url", &redact_url(self.url.as_str()))
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

/// `url` if it is an `http` or `https` URL with a host.
fn check_url(field: &str, url: &str, problems: &mut Vec<String>) -> Option<reqwest::Url> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => Some(parsed),
        // Not the URL itself: it may hold a password.
        _ => {
            problems.push(format!("{field}: an http:// or https:// URL"));
            None
        }
    }
}

impl WhoAmI {
    /// An adapter for `config`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem: a URL that is not `http`/`https`, a field that is not a JSON pointer,
    /// a bad cookie name, a zero timeout; or an HTTP client that cannot be built.
    pub fn new(config: WhoAmIConfig) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let url = check_url("url", &config.url, &mut problems);
        let logout_url = match config.logout_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(logout) => check_url("logout_url", logout, &mut problems),
        };
        check_cookie_name(&config.cookie_name, &mut problems);
        check_pointer("user_id_field", &config.user_id_field, &mut problems);
        check_pointer("roles_field", &config.roles_field, &mut problems);
        crate::fields::check_attributes(&config.attribute_fields, &mut problems);
        if let Some(expires) = &config.expires_field {
            check_pointer("expires_field", expires, &mut problems);
        }
        check_timeout(config.timeout, &mut problems);
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|err| problems.push(format!("cannot build the HTTP client: {err}")))
            .ok();
        match (url, client) {
            (Some(url), Some(client)) if problems.is_empty() => Ok(Self {
                client,
                passed_on: HeaderMap::new,
                url,
                logout_url,
                cookie_name: config.cookie_name,
                fields: Fields {
                    user_id: config.user_id_field,
                    roles: config.roles_field,
                    attributes: config.attribute_fields,
                },
                expires_field: config.expires_field,
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    /// Sends the endpoint, with each request, the headers `headers` returns at the time (the server's request id and
    /// W3C `traceparent`, so the legacy system's logs and traces join Tessera's). Default none. The cookie is set
    /// after them and cannot be overridden.
    #[must_use]
    pub fn passing_on(self, headers: fn() -> HeaderMap) -> Self {
        Self { passed_on: headers, ..self }
    }

    /// The request's session header: `Cookie: <name>=<value>`.
    fn cookie_header(&self, cookie_value: &str) -> Result<HeaderMap, LegacyError> {
        if cookie_value.len() > MAX_COOKIE_BYTES {
            return Err(LegacyError::Invalid("too long"));
        }
        // RFC 6265's cookie-octets: a `;` would smuggle another cookie into the request, a control character
        // another header.
        let octet = |byte: u8| matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        if cookie_value.is_empty() || !cookie_value.bytes().all(octet) {
            return Err(LegacyError::Invalid("malformed"));
        }
        let value = HeaderValue::from_str(&format!("{}={cookie_value}", self.cookie_name))
            .map_err(|_| LegacyError::Invalid("malformed"))?;
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, value);
        Ok(headers)
    }

    /// Sends the request; the response, or why there is none (without the cookie: reqwest's errors name the URL,
    /// never the headers).
    async fn send(
        &self,
        method: Method,
        url: &reqwest::Url,
        cookie_value: &str,
    ) -> Result<reqwest::Response, LegacyError> {
        let headers = self.cookie_header(cookie_value)?;
        self.client
            .request(method, url.clone())
            .headers((self.passed_on)())
            .headers(headers)
            .send()
            .await
            .map_err(|err| LegacyError::Unavailable(describe(&err)))
    }
}

/// A request error and its causes, one line, without the URL.
fn describe(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "who-am-I endpoint timed out"
    } else if err.is_body() {
        "who-am-I answer broke off"
    } else {
        "who-am-I endpoint unreachable"
    };
    let mut text = what.to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A session that is not there: the endpoint does not know the cookie, or refuses it.
fn no_session(status: StatusCode) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
}

/// The body, at most [`MAX_ANSWER_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, LegacyError> {
    let too_large = || LegacyError::Unavailable("who-am-I answer too large (over 64 KiB)".to_owned());
    if response.content_length().is_some_and(|len| len > MAX_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|err| LegacyError::Unavailable(describe(&err.without_url())))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
    }
    Ok(body)
}

#[async_trait::async_trait]
impl LegacySessions for WhoAmI {
    fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    async fn identify(&self, cookie_value: &str, now_ms: i64) -> Result<LegacyIdentity, LegacyError> {
        let response = self.send(Method::GET, &self.url, cookie_value).await?;
        let status = response.status();
        if no_session(status) {
            return Err(LegacyError::NoSession);
        }
        if status != StatusCode::OK {
            return Err(LegacyError::Unavailable(format!("who-am-I endpoint answered HTTP {}", status.as_u16())));
        }
        let body = read_bounded(response).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| LegacyError::Unavailable("who-am-I answer is not JSON".to_owned()))?;
        let expires_at_ms = match &self.expires_field {
            // An expiry that cannot be read makes the session unusable: guessing could keep it past its end.
            Some(pointer) => expiry_ms(&answer, pointer, true).map_err(|()| LegacyError::NoSession)?,
            None => None,
        };
        if expires_at_ms.is_some_and(|expires| expires <= now_ms) {
            return Err(LegacyError::NoSession);
        }
        self.fields.identity(&answer, expires_at_ms)
    }

    /// `POST`s the cookie to the logout URL, if there is one: `2xx` is ended; `401`, `403` and `404` are
    /// [`NoSession`](LegacyError::NoSession) (nothing to end).
    async fn end(&self, cookie_value: &str) -> Result<bool, LegacyError> {
        let Some(logout_url) = &self.logout_url else { return Ok(false) };
        let status = self.send(Method::POST, logout_url, cookie_value).await?.status();
        if status.is_success() {
            Ok(true)
        } else if no_session(status) {
            Err(LegacyError::NoSession)
        } else {
            Err(LegacyError::Unavailable(format!("logout endpoint answered HTTP {}", status.as_u16())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WhoAmIConfig {
        WhoAmIConfig {
            url: "http://127.0.0.1:3000/whoami".into(),
            cookie_name: "connect.sid".into(),
            timeout: Duration::from_millis(500),
            user_id_field: "/id".into(),
            roles_field: "/roles".into(),
            attribute_fields: std::collections::BTreeMap::new(),
            expires_field: Some("/expires".into()),
            logout_url: None,
        }
    }

    #[test]
    fn every_configuration_problem_is_reported_at_once() {
        let bad = WhoAmIConfig {
            url: "ftp://example.com/whoami".into(),
            cookie_name: String::new(),
            timeout: Duration::ZERO,
            user_id_field: "id".into(),
            roles_field: "roles".into(),
            attribute_fields: [("plan".to_owned(), "plan".to_owned())].into(),
            expires_field: Some("expires".into()),
            logout_url: Some("not a url".into()),
        };
        let problems = WhoAmI::new(bad).unwrap_err().problems().to_vec();
        for field in [
            "url",
            "logout_url",
            "cookie_name",
            "user_id_field",
            "roles_field",
            "attribute_fields",
            "expires_field",
            "timeout",
        ] {
            assert!(problems.iter().any(|problem| problem.starts_with(field)), "{field} in {problems:?}");
        }
        assert_eq!(problems.len(), 8, "{problems:?}");
    }

    #[test]
    fn an_empty_logout_url_means_none() {
        assert!(WhoAmI::new(WhoAmIConfig { logout_url: Some(String::new()), ..config() }).is_ok());
    }

    #[test]
    fn a_cookie_value_that_would_smuggle_a_cookie_or_header_is_refused() {
        let adapter = WhoAmI::new(config()).unwrap();
        for bad in ["a; admin=1", "a\r\nX-Admin: 1", "", "caf\u{e9}", "a b", "a,b"] {
            assert_eq!(adapter.cookie_header(bad).unwrap_err(), LegacyError::Invalid("malformed"), "{bad:?}");
        }
        assert_eq!(adapter.cookie_header(&"a".repeat(5000)).unwrap_err(), LegacyError::Invalid("too long"));
        let headers = adapter.cookie_header("s%3Aabc.def%2Bg").unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[COOKIE], "connect.sid=s%3Aabc.def%2Bg");
    }

    #[test]
    fn debug_hides_url_passwords() {
        let shown = format!(
            "{:?}",
            WhoAmIConfig {
                url: "https://u:hunter2@legacy/whoami".into(),
                logout_url: Some("https://u:hunter3@legacy/logout".into()),
                ..config()
            }
        );
        assert!(!shown.contains("hunter2") && !shown.contains("hunter3"), "{shown}");
    }
}
