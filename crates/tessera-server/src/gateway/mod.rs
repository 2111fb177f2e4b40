//! `/verify`: forward authentication for nginx `auth_request`, Traefik ForwardAuth and Envoy `ext_authz`. The
//! original request (method and URI, from the headers the `forwarded_headers` setting names, or — as Envoy's
//! HTTP `ext_authz` sends it, with `path_prefix: /verify` — the method and path of the check request itself) is
//! checked and its path normalised first ([`forwarded`], [`path`]); then the bearer token is verified
//! (signature, claims, revocation) and matched against the audience and scopes of the auth URL
//! (`/verify?audience=orders&scope=orders:read`) and the route rules. The answer is 200 with identity headers
//! for the upstream ([`identity`]), 400 for a request that cannot be judged unambiguously, 401 `invalid_token`,
//! or 403 `insufficient_scope`.
//!
//! `/gateway/v1/revocations` ([`feed`]) is the revocation log for services that verify tokens themselves.

mod feed;
mod forwarded;
pub mod identity;
pub mod path;

use std::borrow::Cow;

use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

pub use forwarded::is_method;
pub use identity::{check_roles, is_safe_role, is_scope_token, UnsafeRole};

use crate::error::ApiError;
use crate::extract::authenticate;
use crate::settings::{ForwardedHeaders, RouteRule};
use crate::state::AppState;
use forwarded::{Original, Requirements};
use tessera_migration::{Method, Phase};

/// Why `/verify` refused a request. Status, code, description and challenge of each are set here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GatewayError {
    /// The original request cannot be judged unambiguously (see [`forwarded::refused`]), and why.
    Unjudgeable(Cow<'static, str>),
    /// `/verify/*` while the `forwarded_headers` setting does not take Envoy's style.
    NoSuchEndpoint,
    /// The token does not do for this request: another audience, or an identity that cannot be passed on
    /// unaltered (RFC 6750 `invalid_token`).
    InvalidToken,
    /// The token lacks a scope the auth URL or a route rule requires (RFC 6750 `insufficient_scope`).
    InsufficientScope,
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Unjudgeable(why) => ApiError::bad_request(why),
            GatewayError::NoSuchEndpoint => ApiError::no_such_endpoint(),
            GatewayError::InvalidToken => ApiError::invalid_token(),
            GatewayError::InsufficientScope => ApiError::insufficient_scope(),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/verify", get(verify).post(verify))
        .route("/verify/", any(verify_envoy))
        .route("/verify/{*path}", any(verify_envoy))
        .route("/gateway/v1/revocations", get(feed::feed).post(feed::feed))
}

/// The first rule matching the original request's normalised path, and — where the path has dot segments, which
/// servers that do not remove them route as written — the first rule matching it as written: every rule either
/// reading selects applies, so `/admin/../public` still meets the `/admin` rule.
fn rules_for<'a>(rules: &'a [RouteRule], original: &Original) -> Vec<&'a RouteRule> {
    let first_for = |path: &str| {
        rules.iter().find(|rule| {
            path::is_under(path, &rule.path_prefix, rule.case_insensitive)
                && rule.method.as_deref().is_none_or(|needed| original.method.as_deref() == Some(needed))
        })
    };
    let mut matched: Vec<&RouteRule> = Vec::new();
    for rule in [&original.path, &original.path_with_dot_segments].into_iter().flatten().filter_map(|p| first_for(p)) {
        if !matched.iter().any(|seen| std::ptr::eq(*seen, rule)) {
            matched.push(rule);
        }
    }
    matched
}

async fn verify(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let original = forwarded::from_headers(&state.settings().forwarded_headers, &headers)?;
    let required = forwarded::requirements(query.as_deref())?;
    check(&state, &headers, &original, required).await
}

/// Envoy's HTTP `ext_authz` sends the original method and path (with the client's query, which therefore names
/// no requirement here) behind the configured `path_prefix`.
async fn verify_envoy(
    State(state): State<AppState>,
    method: HttpMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !matches!(state.settings().forwarded_headers, ForwardedHeaders::Auto | ForwardedHeaders::Envoy) {
        return Err(GatewayError::NoSuchEndpoint.into());
    }
    let full = uri.path_and_query().map_or("/", |p| p.as_str());
    let original = forwarded::checked(Some(method.as_str()), Some(full.strip_prefix("/verify").unwrap_or(full)))?;
    check(&state, &headers, &original, Requirements::default()).await
}

async fn check(
    state: &AppState,
    headers: &HeaderMap,
    original: &Original,
    required: Requirements,
) -> Result<Response, ApiError> {
    let settings = state.settings();
    let rules = &settings.routes;
    // Without the original request, no rule could be applied: refused rather than matched as some default path.
    if !rules.is_empty() && (original.method.is_none() || original.path.is_none()) {
        return Err(forwarded::refused("no_original_request", "the gateway did not send the original method and URI"));
    }
    let audience = required.audience.as_ref().or(settings.verify_audience.as_ref());
    if audience.is_none() && settings.require_verify_audience {
        return Err(forwarded::refused(
            "no_audience",
            "the gateway's /verify URL must name an audience (?audience=...)",
        ));
    }
    let matched = rules_for(rules, original);
    let audiences: Vec<&String> =
        audience.into_iter().chain(matched.iter().filter_map(|rule| rule.audience.as_ref())).collect();
    let needed_scopes: Vec<&String> =
        required.scopes.iter().chain(matched.iter().flat_map(|rule| &rule.scopes)).collect();
    // A request without a bearer token may carry a legacy session cookie instead, while a migration runs.
    if !headers.contains_key(header::AUTHORIZATION) {
        if let Some(migration) = state.migration() {
            if let Some(cookie) = migration.cookie(headers)? {
                return check_session(state, migration, cookie, &audiences, &needed_scopes).await;
            }
        }
    }
    let claims = authenticate(state, headers).await?;
    let external = state.issuers().iter().map(|issuer| &issuer.config);
    let identity = identity::identity(&claims, &settings.issuer, external)?;
    for needed in audiences {
        if !claims.aud.as_ref().is_some_and(|aud| aud.contains(needed)) {
            metrics::counter!("tessera_token_rejections_total", "reason" => "wrong_audience").increment(1);
            return Err(GatewayError::InvalidToken.into());
        }
    }
    if needed_scopes.into_iter().any(|needed| !identity.scopes.contains(&needed.as_str())) {
        metrics::counter!("tessera_token_rejections_total", "reason" => "insufficient_scope").increment(1);
        return Err(GatewayError::InsufficientScope.into());
    }
    if let Some(migration) = state.migration() {
        migration.saw(Method::Token, identity.user_id);
    }
    let (roles, scope) = (identity.roles.join(","), identity.scopes.join(" "));
    let answer = Answer {
        user_id: identity.user_id,
        external_subject: identity.external_subject,
        issuer: identity.issuer,
        roles: &roles,
        scope: &scope,
        method: Method::Token,
    };
    answer.into_response(None)
}

/// The session path of `/verify`: a legacy session cookie, checked by the migration's adapter. A legacy session
/// has no scopes and no audience: a route that requires a scope refuses it, and an audience is met only when the
/// migration settings list it.
async fn check_session(
    state: &AppState,
    migration: &crate::migration::Migration,
    cookie: &str,
    audiences: &[&String],
    needed_scopes: &[&String],
) -> Result<Response, ApiError> {
    let current = migration.current();
    if !current.state.rollout.accepts_sessions() {
        metrics::counter!("tessera_legacy_session_rejections_total", "reason" => "migration_done").increment(1);
        return Err(GatewayError::InvalidToken.into());
    }
    let accepted = state.settings().migration.as_ref().map(|settings| &settings.session_audiences);
    if audiences.iter().any(|needed| !accepted.is_some_and(|accepted| accepted.contains(needed))) {
        metrics::counter!("tessera_legacy_session_rejections_total", "reason" => "wrong_audience").increment(1);
        return Err(GatewayError::InvalidToken.into());
    }
    if !needed_scopes.is_empty() {
        metrics::counter!("tessera_legacy_session_rejections_total", "reason" => "insufficient_scope").increment(1);
        return Err(GatewayError::InsufficientScope.into());
    }
    let identity = crate::migration::identify(state, migration, cookie).await?;
    migration.saw(Method::Session, &identity.user_id);
    let roles = identity.roles.join(",");
    // RFC 9745: the session path is deprecated from phase `tokens-only` on, since the phase began.
    let deprecated = (current.state.rollout.phase == Phase::TokensOnly).then_some(current.state.since_ms / 1000);
    let answer = Answer {
        user_id: &identity.user_id,
        external_subject: "",
        issuer: "",
        roles: &roles,
        scope: "",
        method: Method::Session,
    };
    answer.into_response(deprecated)
}

/// What `/verify` tells the upstream about an authenticated request.
struct Answer<'a> {
    user_id: &'a str,
    external_subject: &'a str,
    issuer: &'a str,
    roles: &'a str,
    scope: &'a str,
    method: Method,
}

impl Answer<'_> {
    /// The 200 answer; `deprecated_since` (Unix seconds) adds a `Deprecation` header.
    fn into_response(self, deprecated_since: Option<i64>) -> Result<Response, ApiError> {
        // The request's own id (see `crate::trace`), passed on to the application behind the gateway.
        let request_id = crate::trace::current_request_id().unwrap_or_else(|| HeaderValue::from_static(""));
        let mut out = HeaderMap::with_capacity(IDENTITY_HEADERS + 1);
        // Every identity header is always sent, empty when it does not apply, so a gateway that only overrides the
        // headers it copies (Envoy) never leaves one a client wrote in place.
        for (name, value) in [
            (X_USER_ID, self.user_id),
            (X_EXTERNAL_SUBJECT, self.external_subject),
            (X_TOKEN_ISSUER, self.issuer),
            (X_USER_ROLES, self.roles),
            (X_SCOPE, self.scope),
        ] {
            out.insert(name, header_value(value)?);
        }
        out.insert(X_REQUEST_ID, request_id);
        out.insert(X_AUTH_METHOD, HeaderValue::from_static(self.method.as_str()));
        if let Some(since) = deprecated_since {
            out.insert(DEPRECATION, header_value(&format!("@{since}"))?);
        }
        Ok((StatusCode::OK, out).into_response())
    }
}

// The answer's header names as constants: a name given as text is parsed again on every use, and `/verify` is a
// hot path.
const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const X_EXTERNAL_SUBJECT: HeaderName = HeaderName::from_static("x-external-subject");
const X_TOKEN_ISSUER: HeaderName = HeaderName::from_static("x-token-issuer");
const X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
const X_SCOPE: HeaderName = HeaderName::from_static("x-scope");
use crate::trace::X_REQUEST_ID;
/// `token` or `session`: how the request was authenticated (the same identity headers follow either way).
const X_AUTH_METHOD: HeaderName = HeaderName::from_static("x-auth-method");
const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// How many headers a `/verify` answer carries.
const IDENTITY_HEADERS: usize = 7;

/// `value` as a header value: one that cannot be a header is refused, not passed on altered.
fn header_value(value: &str) -> Result<HeaderValue, GatewayError> {
    if value.is_empty() {
        return Ok(HeaderValue::from_static(""));
    }
    HeaderValue::from_str(value).map_err(|_| GatewayError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original(method: &str, uri: &str) -> Original {
        forwarded::checked(Some(method), Some(uri)).unwrap()
    }

    fn prefixes<'a>(rules: &[&'a RouteRule]) -> Vec<&'a str> {
        rules.iter().map(|rule| rule.path_prefix.as_str()).collect()
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rule = |prefix: &str, method: Option<&str>| RouteRule {
            path_prefix: prefix.into(),
            case_insensitive: false,
            method: method.map(str::to_owned),
            audience: None,
            scopes: vec![prefix.into()],
        };
        let rules = [rule("/admin", Some("POST")), rule("/admin", None), rule("/", None)];
        assert_eq!(rules_for(&rules, &original("POST", "/admin/users"))[0].method.as_deref(), Some("POST"));
        assert_eq!(rules_for(&rules, &original("GET", "/admin"))[0].method, None);
        assert_eq!(prefixes(&rules_for(&rules, &original("GET", "/administrator"))), ["/"]);
        assert!(rules_for(&rules[..2], &original("GET", "/public")).is_empty());
        assert!(rules_for(&rules, &Original::default()).is_empty());
    }

    #[test]
    fn a_path_with_dot_segments_meets_the_rules_of_both_its_readings() {
        let rule = |prefix: &str| RouteRule {
            path_prefix: prefix.into(),
            case_insensitive: false,
            method: None,
            audience: None,
            scopes: vec![prefix.into()],
        };
        let rules = [rule("/admin"), rule("/public")];
        // Resolved, `/public`; routed as written by a server that keeps dot segments, under `/admin`.
        assert_eq!(prefixes(&rules_for(&rules, &original("GET", "/admin/../public"))), ["/public", "/admin"]);
        assert_eq!(prefixes(&rules_for(&rules, &original("GET", "/admin/%2e%2e/public/x"))), ["/public", "/admin"]);
        assert_eq!(prefixes(&rules_for(&rules, &original("GET", "/x/../admin/users"))), ["/admin"]);
        assert_eq!(prefixes(&rules_for(&rules, &original("GET", "/admin/./users"))), ["/admin"]);
        assert_eq!(prefixes(&rules_for(&rules, &original("GET", "/public/users"))), ["/public"]);
    }
}
