//! Calling a running server's admin API (`/admin/v1/*`) with the admin credential: the client side of
//! `tessera migrate` and `tessera events`.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::config::Config;

/// Longest wait for the server: each call is a store read or write or two.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `method path` (with its query) on the server at `url` (default: `server.listen`), with `body` as JSON: the
/// JSON answer of a 2xx, an error naming the server's reason otherwise.
pub(crate) fn call(
    config: &Config,
    url: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let token = config.admin_token()?.context(
        "no admin credential: set TESSERA_ADMIN_TOKEN or server.admin_token_file (the server must have the same one)",
    )?;
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if config.server.tls_cert_file.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", config.server.listen)
        }
    };
    let url = format!("{base}{path}");
    let client = reqwest::blocking::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let mut request = client.request(method, &url).bearer_auth(token);
    if let Some(body) = body {
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
    }
    let response = request.send().with_context(|| format!("calling {url} (is `tessera serve` running there?)"))?;
    let status = response.status();
    let text = response.text().context("reading the server's answer")?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let why = answer.get("error_description").and_then(Value::as_str).unwrap_or("no description");
        let code = answer.get("error").and_then(Value::as_str).unwrap_or("error");
        bail!("{url} refused ({status}, {code}): {why}");
    }
    if answer.is_null() {
        bail!("{url} answered something that is not JSON");
    }
    Ok(answer)
}
