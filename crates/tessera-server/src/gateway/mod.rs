//! `/verify`: forward authentication for nginx `auth_request`, Traefik ForwardAuth and Envoy `ext_authz`. The
//! bearer token is verified (signature, claims, revocation), the original request is matched against the route
//! rules (`X-Forwarded-Method` / `X-Forwarded-Uri`, nginx's `X-Original-Method` / `X-Original-URI`, or — as
//! Envoy's HTTP `ext_authz` sends it, with `path_prefix: /verify` — the method and path of the check request
//! itself), and the answer is 200 with identity headers for the upstream, 401 `invalid_token`, or 403
//! `insufficient_scope`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::extract::authenticate;
use crate::settings::RouteRule;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/verify", get(verify).post(verify)).route("/verify/{*path}", axum::routing::any(verify_envoy))
}

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
}

/// The first rule matching the original request.
fn rule_for<'a>(rules: &'a [RouteRule], method: Option<&str>, uri: &str) -> Option<&'a RouteRule> {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    rules.iter().find(|rule| {
        path.starts_with(&rule.path_prefix)
            && rule.method.as_deref().is_none_or(|m| method.is_some_and(|actual| actual.eq_ignore_ascii_case(m)))
    })
}

async fn verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let method = header(&headers, &["x-forwarded-method", "x-original-method"]).map(str::to_owned);
    let uri = header(&headers, &["x-forwarded-uri", "x-original-uri"]).unwrap_or("/").to_owned();
    check(&state, &headers, method.as_deref(), &uri).await
}

/// Envoy's HTTP `ext_authz` forwards the original method and path, behind the configured `path_prefix`.
async fn verify_envoy(
    State(state): State<AppState>,
    method: axum::http::Method,
    axum::extract::OriginalUri(original): axum::extract::OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = original.path_and_query().map_or("/", |p| p.as_str());
    let uri = path.strip_prefix("/verify").unwrap_or(path);
    check(&state, &headers, Some(method.as_str()), uri).await
}

async fn check(state: &AppState, headers: &HeaderMap, method: Option<&str>, uri: &str) -> Result<Response, ApiError> {
    let claims = authenticate(state, headers).await?;
    if let Some(rule) = rule_for(&state.settings().routes, method, uri) {
        if let Some(audience) = &rule.audience {
            if !claims.aud.as_ref().is_some_and(|aud| aud.contains(audience)) {
                return Err(ApiError::invalid_token());
            }
        }
        let granted: Vec<&str> = claims.scope.as_deref().unwrap_or_default().split(' ').collect();
        if rule.scopes.iter().any(|needed| !granted.contains(&needed.as_str())) {
            metrics::counter!("tessera_token_rejections_total", "reason" => "insufficient_scope").increment(1);
            return Err(ApiError::insufficient_scope());
        }
    }
    let roles = claims
        .extra
        .get("roles")
        .and_then(|r| r.as_array())
        .map(|roles| roles.iter().filter_map(|r| r.as_str()).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let request_id = match header(headers, &["x-request-id"]).filter(|id| id.len() <= 128) {
        Some(id) => id.to_owned(),
        None => crate::secrets::random_b64::<12>().map_err(|_| ApiError::internal("random number generator failed"))?,
    };
    let mut out = HeaderMap::new();
    for (name, value) in [
        ("x-user-id", claims.sub.as_deref().unwrap_or_default()),
        ("x-user-roles", roles.as_str()),
        ("x-scope", claims.scope.as_deref().unwrap_or_default()),
        ("x-request-id", request_id.as_str()),
    ] {
        // A value that cannot be a header is refused, not passed on altered.
        let value = HeaderValue::from_str(value).map_err(|_| ApiError::invalid_token())?;
        out.insert(HeaderName::from_static(name), value);
    }
    Ok((StatusCode::OK, out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_wins() {
        let rule = |prefix: &str, method: Option<&str>| RouteRule {
            path_prefix: prefix.into(),
            method: method.map(str::to_owned),
            audience: None,
            scopes: vec![prefix.into()],
        };
        let rules = [rule("/admin", Some("POST")), rule("/admin", None), rule("/", None)];
        assert_eq!(rule_for(&rules, Some("post"), "/admin/users?x=1").unwrap().method.as_deref(), Some("POST"));
        assert_eq!(rule_for(&rules, Some("GET"), "/admin").unwrap().method, None);
        assert_eq!(rule_for(&rules, None, "/other").unwrap().path_prefix, "/");
        assert!(rule_for(&rules[..2], Some("GET"), "/public").is_none());
    }
}
