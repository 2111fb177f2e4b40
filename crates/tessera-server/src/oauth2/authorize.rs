//! `/oauth2/authorize` and its pages: an application sends the browser here, the person logs in (or is already
//! logged in), consents when the application is a third party's, and the browser goes back with a code
//! (RFC 6749 §4.1, RFC 7636, RFC 9207, OpenID Connect Core §3.1); `/oauth2/par` takes requests pushed ahead
//! (RFC 9126).
//!
//! - **The login** is a session of the pseudo-client [`LOGIN_CLIENT`], stored like any other (so it is in the
//!   user's session list, and logout, disabling the user or a logout everywhere end it), named by the
//!   `__Host-tessera-login` cookie: its id sealed, `HttpOnly`, `Secure`, `SameSite=Lax` — an application's link
//!   is a cross-site top-level navigation, which `Lax` lets the cookie through on, while a cross-site form post
//!   does not get it.
//! - **The forms** carry the checked request sealed ([`FormState`]), so nothing in them can be changed. The
//!   login form is bound to the browser by the `__Host-tessera-form` cookie (`SameSite=Strict`): another site
//!   cannot post a login of its own choosing into the person's browser (login CSRF). The consent form is bound to
//!   the login it was shown to. Both posts must come from this origin.
//! - **Consent** to a third-party application is remembered while the person has a live session of that
//!   application granting at least the scopes asked for: ending that session in the session list withdraws it.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tessera_model::{Client, Millis, NewSession, SessionState, User};

use super::code_grant;
use super::pages;
use super::request::{self, param, AuthorizationRequest, Prompt, Pushed, Refusal, ReplyTo, REQUEST_URI_PREFIX};
use super::OAuthError;
use crate::auth::login::{check_password, LoginRefusal};
use crate::error::ApiError;
use crate::extract::{cookie, ClientIp};
use crate::secrets::Sealed;
use crate::state::{millis, AppState};

/// The `client_id` of login sessions: a name no registered client can have (`:` is not allowed in client ids).
pub(crate) const LOGIN_CLIENT: &str = "tessera:login";
/// The login cookie.
pub(crate) const LOGIN_COOKIE: &str = "__Host-tessera-login";
/// The cookie binding login forms to the browser they were shown in.
const FORM_COOKIE: &str = "__Host-tessera-form";
/// How long a login or consent form may be filled in.
const FORM_TTL_MS: Millis = 10 * 60 * 1000;
/// How long a pushed request's `request_uri` can be used (RFC 9126 §2.2 suggests 5 to 600 seconds).
pub(crate) const PUSHED_TTL_SECS: i64 = 60;

/// A live login at the login page.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) sid: String,
    pub(crate) sub: String,
    /// When the password was checked (the session's start).
    pub(crate) auth_time_ms: Millis,
}

/// Which form a [`FormState`] belongs to: one form's sealed state is refused by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Step {
    Login,
    Consent,
    Logout,
}

/// What a form carries, sealed: the checked request, what the form is bound to (the browser's form cookie, or
/// the login's session id), and until when it may be posted.
#[derive(Debug, Serialize, Deserialize)]
struct FormState<T> {
    step: Step,
    request: T,
    bound_to: String,
    expires_at: Millis,
}

/// `GET /oauth2/authorize`.
pub(crate) async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = request::query_or_form(&headers, query.as_deref(), None);
    begin(&state, &headers, pairs).await
}

/// `POST /oauth2/authorize` (OpenID Connect Core §3.1.2.1: the same request as a form).
pub(crate) async fn authorize_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = request::query_or_form(&headers, None, Some(&body));
    begin(&state, &headers, pairs).await
}

async fn begin(state: &AppState, headers: &HeaderMap, pairs: Result<Vec<(String, String)>, &'static str>) -> Response {
    let look = &state.settings().sign_in.look;
    let pairs = match pairs {
        Ok(pairs) => pairs,
        Err(why) => return pages::error(look, StatusCode::BAD_REQUEST, why),
    };
    let registered = match param(&pairs, "client_id") {
        Some(client_id) => crate::clients::find(state, client_id).await,
        None => None,
    };
    let client = match request::code_client(registered.as_ref().map(|found| found.client.as_ref())) {
        Ok(client) => client,
        Err(refusal) => return refused(state, refusal),
    };
    let checked = match param(&pairs, "request_uri") {
        Some(uri) => pushed(state, client, uri),
        None => request::check(client, &pairs).and_then(|request| {
            if client.code_flow.as_ref().is_some_and(|flow| flow.require_par) {
                Err(Refusal::Redirected {
                    to: request.reply_to(),
                    error: "invalid_request",
                    description: "this client must push its authorization requests (RFC 9126)",
                })
            } else {
                Ok(request)
            }
        }),
    };
    match checked {
        Ok(request) => proceed(state, headers, client, request).await,
        Err(refusal) => refused(state, refusal),
    }
}

/// The request a pushed `request_uri` stands for, if it is this client's and still valid. Only the pushed
/// parameters count (RFC 9126 §4): whatever else the query holds is ignored.
fn pushed(state: &AppState, client: &Client, uri: &str) -> Result<AuthorizationRequest, Refusal> {
    let expired = Refusal::Shown("The application's sign-in request has expired. Go back and start again.");
    let sealed = uri.strip_prefix(REQUEST_URI_PREFIX).ok_or(expired.clone())?;
    let opened: Pushed = state
        .secrets()
        .open(Sealed::PushedRequest, sealed)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(expired.clone())?;
    if opened.expires_at <= state.clock().now_ms() || opened.request.client_id != client.client_id {
        return Err(expired);
    }
    // The registration may have changed since the push.
    let registered = client.code_flow.as_ref().map(|flow| flow.redirect_uris.as_slice()).unwrap_or_default();
    if !registered.iter().any(|uri| request::redirect_uri_matches(uri, &opened.request.redirect_uri)) {
        return Err(Refusal::Shown("The application asked to send you to an address it has not registered."));
    }
    Ok(opened.request)
}

/// The answer to a refused request: a page, or the error at the redirect URI.
fn refused(state: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Shown(message) => pages::error(&state.settings().sign_in.look, StatusCode::BAD_REQUEST, message),
        Refusal::Redirected { to, error, description } => redirect_error(state, &to, error, description),
    }
}

/// With the request checked: straight back with a code when the person is logged in (recently enough) and has
/// consented, or the login or consent page.
async fn proceed(state: &AppState, headers: &HeaderMap, client: &Client, request: AuthorizationRequest) -> Response {
    let login = match current_login(state, headers).await {
        Ok(login) => login,
        Err(err) => return err.into_response(),
    };
    let now = state.clock().now_ms();
    let fresh = login.filter(|login| {
        request.prompt != Prompt::Login
            && request.max_age.is_none_or(|age| {
                now.saturating_sub(login.auth_time_ms) <= i64::try_from(age).unwrap_or(i64::MAX).saturating_mul(1000)
            })
    });
    match fresh {
        Some(login) => after_login(state, client, request, &login, None).await,
        None if request.prompt == Prompt::None => {
            redirect_error(state, &request.reply_to(), "login_required", "the user is not logged in")
        }
        None => show_login(state, headers, &request, StatusCode::OK, None),
    }
}

/// The login page for `request`, bound to this browser's form cookie (set when it has none).
fn show_login(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    let look = &state.settings().sign_in.look;
    let binding = match cookie(headers, FORM_COOKIE).filter(|value| value.len() == 22) {
        Some(existing) => existing.to_owned(),
        None => match state.random_b64::<16>() {
            Ok(new) => new,
            Err(err) => return err.into_response(),
        },
    };
    let Some(sealed) = seal_form(state, Step::Login, request, &binding) else {
        return ApiError::internal("sealing the login form failed").into_response();
    };
    let mut response = pages::login(look, status, &request.client_id, &sealed, message);
    let cookie = format!("{FORM_COOKIE}={binding}; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn seal_form<T: Serialize>(state: &AppState, step: Step, request: &T, bound_to: &str) -> Option<String> {
    let form = FormState {
        step,
        request,
        bound_to: bound_to.to_owned(),
        expires_at: state.clock().now_ms().saturating_add(FORM_TTL_MS),
    };
    let plaintext = serde_json::to_vec(&form).ok()?;
    state.secrets().seal(Sealed::FormRequest, &plaintext, state.rng())
}

/// The request a posted form carries, if it is a form of `step`, unexpired, and bound to `bound_to`.
fn open_form<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    step: Step,
    sealed: &str,
    bound_to: Option<&str>,
) -> Option<T> {
    let form: FormState<T> = serde_json::from_slice(&state.secrets().open(Sealed::FormRequest, sealed)?).ok()?;
    let bound = bound_to.is_some_and(|presented| {
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), form.bound_to.as_bytes()).is_ok()
    });
    (form.step == step && bound && form.expires_at > state.clock().now_ms()).then_some(form.request)
}

/// The form fields of a page's post, when it comes from this origin; the status and the words of the page to
/// answer with otherwise.
pub(crate) fn posted_form(
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<Vec<(String, String)>, (StatusCode, &'static str)> {
    if !crate::auth::same_origin(headers, uri) {
        return Err((StatusCode::FORBIDDEN, "This form was sent from another site and was refused."));
    }
    if !request::is_form(headers) {
        return Err((StatusCode::BAD_REQUEST, "The form was not sent as a form."));
    }
    request::parameters(body).map_err(|why| (StatusCode::BAD_REQUEST, why))
}

/// A page's form posted from this origin, with the browser's live login (if any); the page to answer otherwise.
pub(crate) async fn posted_with_login(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<(Vec<(String, String)>, Option<Login>), Box<Response>> {
    let fields = posted_form(headers, uri, body).map_err(|refusal| Box::new(refused_form(state, refusal)))?;
    let login = current_login(state, headers).await.map_err(|err| Box::new(err.into_response()))?;
    Ok((fields, login))
}

/// The page of a post [`posted_form`] refused.
pub(crate) fn refused_form(state: &AppState, (status, why): (StatusCode, &'static str)) -> Response {
    pages::error(&state.settings().sign_in.look, status, why)
}

fn expired_form(state: &AppState) -> Response {
    pages::error(
        &state.settings().sign_in.look,
        StatusCode::BAD_REQUEST,
        "This form has expired or was not sent from this browser. Go back to the application and start again.",
    )
}

/// `POST /oauth2/authorize/login`: the login form.
pub(crate) async fn login_submitted(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match posted_form(&headers, &uri, &body) {
        Ok(fields) => fields,
        Err(refusal) => return refused_form(&state, refusal),
    };
    let binding = cookie(&headers, FORM_COOKIE);
    let Some(request) = param(&fields, "request")
        .and_then(|sealed| open_form::<AuthorizationRequest>(&state, Step::Login, sealed, binding))
    else {
        return expired_form(&state);
    };
    let registered = crate::clients::find(&state, &request.client_id).await;
    let client = match request::code_client(registered.as_ref().map(|found| found.client.as_ref())) {
        Ok(client) => client,
        Err(refusal) => return refused(&state, refusal),
    };
    let username = param(&fields, "username").unwrap_or_default();
    let password = param(&fields, "password").unwrap_or_default().to_owned();
    let user = match check_password(&state, ip, username, password).await {
        Ok(user) => user,
        Err(refusal) => {
            let (status, message) = match refusal {
                LoginRefusal::Malformed | LoginRefusal::InvalidCredentials => {
                    (StatusCode::UNAUTHORIZED, "Wrong username or password.")
                }
                LoginRefusal::TooMany(_) => {
                    (StatusCode::TOO_MANY_REQUESTS, "Too many attempts. Wait a minute and try again.")
                }
                LoginRefusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "The server is busy. Try again in a moment."),
                LoginRefusal::Failed(err) => return err.into_response(),
            };
            return show_login(&state, &headers, &request, status, Some(message));
        }
    };
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    let (login, login_cookie) = match start_login(&state, &user, user_agent).await {
        Ok(started) => started,
        Err(err) => return err.into_response(),
    };
    metrics::counter!("tessera_logins_total", "outcome" => "success").increment(1);
    let mut response = after_login(&state, client, request, &login, Some(&user)).await;
    response.headers_mut().append(header::SET_COOKIE, login_cookie);
    response
}

/// Starts a login session for `user` and makes its cookie.
async fn start_login(
    state: &AppState,
    user: &User,
    user_agent: Option<String>,
) -> Result<(Login, HeaderValue), ApiError> {
    let now = state.clock().now_ms();
    let ttl = millis(state.settings().sign_in.login_ttl);
    let session = state
        .store()
        .create_session(NewSession {
            sid: state.new_session_id()?,
            sub: user.username.clone(),
            client_id: LOGIN_CLIENT.to_owned(),
            scope: None,
            roles: user.roles.clone(),
            claims: serde_json::Map::new(),
            user_agent,
            created_at: now,
            expires_at: now.saturating_add(ttl),
        })
        .await?;
    let sealed = state
        .secrets()
        .seal(Sealed::LoginCookie, session.sid.as_bytes(), state.rng())
        .ok_or_else(|| ApiError::internal("sealing the login cookie failed"))?;
    let cookie = format!("{LOGIN_COOKIE}={sealed}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax", ttl / 1000);
    let cookie = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
    Ok((Login { sid: session.sid, sub: session.sub, auth_time_ms: now }, cookie))
}

/// `Set-Cookie` that removes the login cookie.
pub(crate) fn cleared_login_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-tessera-login=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax")
}

/// The live login this browser's cookie names: a login session that is not revoked, not expired, and not ended by
/// a logout everywhere or the user's disabling since it started.
pub(crate) async fn current_login(state: &AppState, headers: &HeaderMap) -> Result<Option<Login>, ApiError> {
    let Some(sid) = cookie(headers, LOGIN_COOKIE)
        .and_then(|sealed| state.secrets().open(Sealed::LoginCookie, sealed))
        .and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        return Ok(None);
    };
    let Some(session) = state.store().session(&sid).await? else { return Ok(None) };
    let now = state.clock().now_ms();
    let ended_since =
        state.revocations().latest_instant(Some(&session.sub), None).is_some_and(|at| at >= session.created_at);
    if session.client_id != LOGIN_CLIENT
        || session.state != SessionState::Active
        || session.expires_at <= now
        || ended_since
    {
        return Ok(None);
    }
    Ok(Some(Login { sid: session.sid, sub: session.sub, auth_time_ms: session.created_at }))
}

/// Logged in: the consent page when the application needs consent it does not have, the code otherwise.
/// `user` is the login's user when the caller has just read it (a password was checked): it is not read again.
async fn after_login(
    state: &AppState,
    client: &Client,
    request: AuthorizationRequest,
    login: &Login,
    user: Option<&User>,
) -> Response {
    let first_party = client.code_flow.as_ref().is_some_and(|flow| flow.first_party);
    let needs_consent = !first_party
        && (request.prompt == Prompt::Consent
            || match consented(state, &login.sub, &request).await {
                Ok(consented) => !consented,
                Err(err) => return err.into_response(),
            });
    if !needs_consent {
        return send_code(state, &request, login, user).await;
    }
    if request.prompt == Prompt::None {
        return redirect_error(state, &request.reply_to(), "consent_required", "the user has not consented");
    }
    match seal_form(state, Step::Consent, &request, &login.sid) {
        Some(sealed) => {
            pages::consent(&state.settings().sign_in.look, &request.client_id, &login.sub, &request.scope, &sealed)
        }
        None => ApiError::internal("sealing the consent form failed").into_response(),
    }
}

/// Whether `sub` has a live session of the request's client granting at least its scopes: consent given and not
/// withdrawn.
async fn consented(state: &AppState, sub: &str, request: &AuthorizationRequest) -> Result<bool, ApiError> {
    let sessions = state.store().live_sessions(sub, state.clock().now_ms(), state.refresh_rules()).await?;
    Ok(sessions.iter().any(|session| {
        let granted: Vec<&str> = session.scope.as_deref().unwrap_or_default().split(' ').collect();
        session.client_id == request.client_id && request.scope.iter().all(|scope| granted.contains(&scope.as_str()))
    }))
}

/// `POST /oauth2/authorize/consent`: the consent form.
pub(crate) async fn consent_submitted(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, login) = match posted_with_login(&state, &headers, &uri, &body).await {
        Ok(posted) => posted,
        Err(page) => return *page,
    };
    let Some(login) = login else { return expired_form(&state) };
    let Some(request) = param(&fields, "request")
        .and_then(|sealed| open_form::<AuthorizationRequest>(&state, Step::Consent, sealed, Some(&login.sid)))
    else {
        return expired_form(&state);
    };
    let registered = crate::clients::find(&state, &request.client_id).await;
    if let Err(refusal) = request::code_client(registered.as_ref().map(|found| found.client.as_ref())) {
        return refused(&state, refusal);
    }
    match param(&fields, "decision") {
        Some("allow") => send_code(&state, &request, &login, None).await,
        _ => redirect_error(&state, &request.reply_to(), "access_denied", "the user denied the request"),
    }
}

/// The browser back to the application with a code for `request`, carrying the user's roles and profile as they
/// are now: `user` when the caller has just read it, otherwise read here.
async fn send_code(state: &AppState, request: &AuthorizationRequest, login: &Login, user: Option<&User>) -> Response {
    let user = match user {
        Some(user) => Cow::Borrowed(user),
        None => match state.store().user(&login.sub).await {
            Ok(Some(user)) if !user.disabled => Cow::Owned(user),
            Ok(_) => return redirect_error(state, &request.reply_to(), "access_denied", "the user cannot sign in"),
            Err(err) => return ApiError::from(err).into_response(),
        },
    };
    match code_grant::issue(state, request, login, &user) {
        Ok(code) => redirect(state, &request.reply_to(), &[("code", &code)]),
        Err(err) => err.into_response(),
    }
}

/// The browser back to the application with an error (RFC 6749 §4.1.2.1).
fn redirect_error(state: &AppState, to: &ReplyTo, error: &str, description: &str) -> Response {
    redirect(state, to, &[("error", error), ("error_description", description)])
}

/// `303 See Other` to the redirect URI with `pairs`, `state` when the request had one, and `iss` (RFC 9207), so
/// the application can tell which server answered.
fn redirect(state: &AppState, to: &ReplyTo, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(&to.redirect_uri) else {
        return ApiError::internal("a registered redirect URI did not parse").into_response();
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        if let Some(client_state) = &to.state {
            query.append_pair("state", client_state);
        }
        query.append_pair("iss", &state.settings().issuer);
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return ApiError::internal("a redirect URI is not a valid header value").into_response();
    };
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response()
}

/// `POST /oauth2/par` (RFC 9126): the client authenticates (or names itself, if public) and pushes its request;
/// the answer is the `request_uri` to send the browser with.
pub(crate) async fn push(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let pairs = super::parse_form(&headers, &body)?;
    let client = code_flow_client(&state, &headers, &pairs).await?;
    if param(&pairs, "request_uri").is_some() {
        return Err(OAuthError::InvalidRequest("request_uri cannot be pushed").into());
    }
    if param(&pairs, "client_id").is_some_and(|named| named != client.client_id) {
        return Err(OAuthError::InvalidRequest("client_id is not the authenticated client").into());
    }
    let request = request::check(&client, &pairs).map_err(|refusal| match refusal {
        Refusal::Shown(_) => ApiError::bad_request("redirect_uri is missing or not registered for this client"),
        Refusal::Redirected { error, description, .. } => ApiError::new(StatusCode::BAD_REQUEST, error, description),
    })?;
    let pushed = Pushed { request, expires_at: state.clock().now_ms().saturating_add(PUSHED_TTL_SECS * 1000) };
    let sealed = serde_json::to_vec(&pushed)
        .ok()
        .and_then(|plaintext| state.secrets().seal(Sealed::PushedRequest, &plaintext, state.rng()))
        .ok_or_else(|| ApiError::internal("sealing the pushed request failed"))?;
    let body =
        serde_json::json!({"request_uri": format!("{REQUEST_URI_PREFIX}{sealed}"), "expires_in": PUSHED_TTL_SECS});
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body))
        .into_response())
}

/// The client of a request to the token or PAR endpoint for the code flow: authenticated when it presents
/// credentials; otherwise named by `client_id`, which only a public client (registered without a secret or keys)
/// may do. Either way it must be registered for the code flow.
pub(crate) async fn code_flow_client(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<std::sync::Arc<Client>, ApiError> {
    let client = if super::client_auth::presents_credentials(headers, pairs) {
        super::client_auth::authenticate(state, headers, pairs).await?
    } else {
        let named = param(pairs, "client_id").ok_or(OAuthError::InvalidClient)?;
        match crate::clients::find(state, named).await {
            Some(found) if !found.is_confidential() && !found.client.disabled => std::sync::Arc::clone(&found.client),
            _ => return Err(OAuthError::InvalidClient.into()),
        }
    };
    if client.code_flow.is_none() {
        return Err(OAuthError::UnauthorizedClient.into());
    }
    Ok(client)
}

/// Keeps the logout confirmation's state: which login to end and where to go after.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LogoutRequest {
    pub(crate) sid: String,
    pub(crate) then: Option<ReplyTo>,
}

/// The sealed form of a logout confirmation for the login `sid`, bound to that login.
pub(crate) fn seal_logout(state: &AppState, request: &LogoutRequest) -> Option<String> {
    seal_form(state, Step::Logout, request, &request.sid)
}

/// The logout a posted confirmation carries, when it is bound to `login`.
pub(crate) fn open_logout(state: &AppState, sealed: &str, login: &Login) -> Option<LogoutRequest> {
    open_form(state, Step::Logout, sealed, Some(&login.sid))
}

/// The browser to `to` after a logout, with its `state`.
pub(crate) fn redirect_after_logout(to: &ReplyTo) -> Response {
    let Ok(mut url) = url::Url::parse(&to.redirect_uri) else {
        return ApiError::internal("a registered redirect URI did not parse").into_response();
    };
    if let Some(client_state) = &to.state {
        url.query_pairs_mut().append_pair("state", client_state);
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => ApiError::internal("a redirect URI is not a valid header value").into_response(),
    }
}
