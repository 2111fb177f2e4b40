//! The pages a person sees while an application signs them in: login, consent, logout, and errors that must not
//! be redirected. Plain HTML forms that work without JavaScript, with labelled fields and a heading per page; the
//! look (name, logo, colours) comes from the settings into one stylesheet, so nothing here needs editing to
//! rebrand. Every value that comes from a request or a setting is escaped where it is written.
//!
//! Their policy forbids scripts, inline styles, framing and plugins: `style-src 'self'` (the stylesheet below),
//! images only from this server or `https`, `frame-ancestors 'none'`. There is no `form-action`: Chromium
//! applies it to the redirect that follows a form, which here always goes to the application.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::settings::PageLook;

/// The pages' content security policy.
const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' https:; frame-ancestors 'none'; base-uri 'none'";

/// Where the stylesheet is served.
pub(crate) const STYLESHEET_PATH: &str = "/oauth2/style.css";

/// `text` with the five characters that mean something in HTML text and attribute values escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A whole page: `title` in the head and as the heading, `body` (already escaped HTML) under it.
pub(crate) fn page(look: &PageLook, status: StatusCode, title: &str, body: &str) -> Response {
    let logo = look
        .logo_url
        .as_deref()
        .map(|url| format!(r#"<img class="logo" src="{}" alt="{}">"#, escape(url), escape(&look.name)))
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {name}</title>
<link rel="stylesheet" href="{STYLESHEET_PATH}">
</head>
<body>
<main>
{logo}
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
        name = escape(&look.name),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY)),
            // Not the service's `no-referrer`: under it Chromium sends `Origin: null` with the pages' own form
            // posts, and the same-origin check refuses them. Other sites still get no referrer.
            (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        ],
        html,
    )
        .into_response()
}

/// An error the person must read here (an unknown application, an unregistered redirect URI).
pub(crate) fn error(look: &PageLook, status: StatusCode, message: &str) -> Response {
    page(look, status, "Sign-in stopped", &format!(r#"<p class="error" role="alert">{}</p>"#, escape(message)))
}

/// The login form of `request` (sealed), for `client_id`, with `message` above it after a failed attempt.
pub(crate) fn login(
    look: &PageLook,
    status: StatusCode,
    client_id: &str,
    request: &str,
    message: Option<&str>,
) -> Response {
    let alert = message.map(|m| format!(r#"<p class="error" role="alert">{}</p>"#, escape(m))).unwrap_or_default();
    let body = format!(
        r#"<p>to continue to <strong>{client}</strong></p>
{alert}<form method="post" action="/oauth2/authorize/login">
<input type="hidden" name="request" value="{request}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"#,
        client = escape(client_id),
        request = escape(request),
    );
    page(look, status, &format!("Sign in to {}", look.name), &body)
}

/// The consent form: `client_id` asks for `scopes` on behalf of `username`.
pub(crate) fn consent(look: &PageLook, client_id: &str, username: &str, scopes: &[String], request: &str) -> Response {
    let items: String =
        scopes.iter().map(|scope| format!("<li>{}</li>\n", escape(&scope_description(scope)))).collect();
    let body = format!(
        r#"<p><strong>{client}</strong> asks to sign you in as <strong>{user}</strong> and to:</p>
<ul>
{items}</ul>
<form method="post" action="/oauth2/authorize/consent">
<input type="hidden" name="request" value="{request}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>
<p class="note">You can withdraw this later by ending the application's session in your session list.</p>"#,
        client = escape(client_id),
        user = escape(username),
        request = escape(request),
    );
    page(look, StatusCode::OK, "Allow access?", &body)
}

/// What a scope lets an application do, in words.
fn scope_description(scope: &str) -> String {
    match scope {
        "openid" => "know who you are".to_owned(),
        "profile" => "see your name".to_owned(),
        "email" => "see your email address".to_owned(),
        other => format!("use the “{other}” permission"),
    }
}

/// The question before an RP-initiated logout that could not be shown to come from the application.
pub(crate) fn confirm_logout(look: &PageLook, request: &str) -> Response {
    let body = format!(
        r#"<p>An application asks to sign you out of {name}.</p>
<form method="post" action="/oauth2/logout/confirm">
<input type="hidden" name="request" value="{request}">
<button type="submit">Sign out</button>
</form>"#,
        name = escape(&look.name),
        request = escape(request),
    );
    page(look, StatusCode::OK, "Sign out?", &body)
}

/// The end of a logout with nowhere to go back to.
pub(crate) fn signed_out(look: &PageLook) -> Response {
    page(look, StatusCode::OK, "Signed out", "<p>You are signed out. You can close this window.</p>")
}

/// `GET /oauth2/style.css`: the pages' stylesheet, in the configured colours (checked to be hex colours).
pub(crate) fn stylesheet(look: &PageLook) -> Response {
    let css = format!(
        ":root{{--accent:{accent};--background:{background}}}
body{{margin:0;background:var(--background);font:16px/1.5 system-ui,sans-serif;color:#1d1d1f}}
main{{max-width:24rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 4px #0002}}
h1{{font-size:1.5rem;margin:0 0 .5rem}}
.logo{{max-height:3rem;display:block;margin-bottom:1rem}}
label{{display:block;margin-top:1rem;font-weight:600}}
input{{width:100%;box-sizing:border-box;padding:.6rem;font:inherit;border:1px solid #8a8a8e;border-radius:.3rem}}
input:focus,button:focus{{outline:3px solid var(--accent);outline-offset:2px}}
button{{margin-top:1.5rem;margin-right:.5rem;padding:.6rem 1.2rem;font:inherit;color:#fff;background:var(--accent);border:0;border-radius:.3rem;cursor:pointer}}
button.secondary{{color:var(--accent);background:transparent;border:1px solid var(--accent)}}
.error{{color:#a4161a;font-weight:600}}
.note{{font-size:.875rem;color:#57575c}}
",
        accent = look.accent_color,
        background = look.background_color,
    );
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        css,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_written_into_a_page_is_escaped() {
        assert_eq!(escape(r#"<script>"a"&'b'</script>"#), "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;");
    }
}
