//! Who a verified token speaks for, as `/verify` tells the upstream: `X-User-ID`, `X-User-Roles`, `X-Scope`,
//! `X-Token-Issuer` and `X-External-Subject`.
//!
//! A trusted external issuer's token never passes for a local user: its subject goes in `X-External-Subject`
//! (with `X-User-ID` empty), and of its roles and scopes only those its issuer's `role_map` / `scope_map` name
//! reach the upstream, under their local names. Otherwise a partner's `sub: alice, roles: [admin]` would be
//! indistinguishable from this server's own alice. A token this server derived from such a token by exchange
//! (it carries `sub_iss`) names its subject in `X-External-Subject` too.

use tessera_jose::Claims;

use crate::error::ApiError;
use crate::settings::TrustedIssuer;

pub use tessera_model::{is_safe_role, MAX_ROLE_LEN};

/// A role outside the safe set of [`is_safe_role`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {0:?} is not allowed: a role is 1 to 64 characters of A-Z a-z 0-9 . _ : -")]
pub struct UnsafeRole(pub String);

/// Every role of `roles` is safe, or the first that is not.
///
/// # Errors
/// The first unsafe role.
pub fn check_roles<'a>(roles: impl IntoIterator<Item = &'a String>) -> Result<(), UnsafeRole> {
    match roles.into_iter().find(|role| !is_safe_role(role)) {
        Some(role) => Err(UnsafeRole(role.clone())),
        None => Ok(()),
    }
}

/// Whether `scope` is one scope token (RFC 6749 §3.3: visible ASCII but `"` and `\`, no space).
#[must_use]
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|byte| matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// What the upstream is told about a token's holder.
#[derive(Debug)]
pub(crate) struct Identity<'a> {
    /// A local subject; empty for an external token.
    pub(crate) user_id: &'a str,
    /// An external token's subject; empty for a local one.
    pub(crate) external_subject: &'a str,
    /// The `iss` that vouched for the token.
    pub(crate) issuer: &'a str,
    /// Local role names.
    pub(crate) roles: Vec<&'a str>,
    /// Local scope names: what route rules and the auth URL's `scope` are checked against.
    pub(crate) scopes: Vec<&'a str>,
}

/// The identity of verified `claims`: a local token (`iss` is `own_issuer`) or one of `external` issuers'.
///
/// # Errors
/// 401 `invalid_token` for a local token whose `roles` claim is not a list of safe roles (the token was minted
/// before roles were checked, or not by this code), as for any value that cannot be passed on unaltered.
pub(crate) fn identity<'a>(
    claims: &'a Claims,
    own_issuer: &'a str,
    external: impl IntoIterator<Item = &'a TrustedIssuer>,
) -> Result<Identity<'a>, ApiError> {
    let issuer = claims.iss.as_deref().unwrap_or_default();
    let subject = claims.sub.as_deref().unwrap_or_default();
    let roles = claims.extra.get("roles");
    let scopes = claims.scope.as_deref().unwrap_or_default().split(' ').filter(|scope| !scope.is_empty());
    if issuer == own_issuer {
        let roles = match roles {
            None => Vec::new(),
            Some(serde_json::Value::Array(roles)) => roles
                .iter()
                .map(|role| role.as_str().filter(|role| is_safe_role(role)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(unsafe_roles)?,
            Some(_) => return Err(unsafe_roles()),
        };
        // A token this server derived (token exchange) for another issuer's subject names it in `sub_iss`: still
        // not a local user.
        let (user_id, external_subject) =
            if claims.extra.contains_key("sub_iss") { ("", subject) } else { (subject, "") };
        return Ok(Identity { user_id, external_subject, issuer, roles, scopes: scopes.collect() });
    }
    // The verifier accepted the token, so its issuer is one of these; anything else is refused all the same.
    let config = external.into_iter().find(|config| config.issuer == issuer).ok_or_else(ApiError::invalid_token)?;
    let theirs =
        roles.and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(serde_json::Value::as_str);
    Ok(Identity {
        user_id: "",
        external_subject: subject,
        issuer,
        roles: config.local_roles(theirs),
        scopes: config.local_scopes(scopes),
    })
}

fn unsafe_roles() -> ApiError {
    metrics::counter!("tessera_token_rejections_total", "reason" => "unsafe_roles").increment(1);
    ApiError::invalid_token()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_limited_to_a_set_safe_in_a_comma_separated_header() {
        for role in ["admin", "partner_admin", "team.lead", "ns:role-1", &"a".repeat(64)] {
            assert!(is_safe_role(role), "{role}");
        }
        for role in ["", "a,b", "a b", "a;b", "rôle", "a\"b", "a\nb", &"a".repeat(65)] {
            assert!(!is_safe_role(role), "{role:?}");
        }
        let roles = vec!["ok".to_owned(), "not,ok".to_owned()];
        assert_eq!(check_roles(&roles), Err(UnsafeRole("not,ok".into())));
    }

    #[test]
    fn external_roles_and_scopes_pass_only_through_the_issuers_maps() {
        let config = TrustedIssuer {
            issuer: "https://partner.test".into(),
            role_map: [("partner-admin".to_owned(), "partner_admin".to_owned())].into(),
            scope_map: [("orders.read".to_owned(), "orders:read".to_owned())].into(),
            ..TrustedIssuer::default()
        };
        let mut claims = Claims {
            iss: Some("https://partner.test".into()),
            sub: Some("alice".into()),
            scope: Some("admin orders.read".into()),
            ..Claims::default()
        };
        claims.extra.insert("roles".into(), serde_json::json!(["admin", "partner-admin", 7, "partner-admin"]));
        let external = identity(&claims, "https://tessera.test", [&config]).unwrap();
        assert_eq!((external.user_id, external.external_subject), ("", "alice"));
        assert_eq!(external.issuer, "https://partner.test");
        assert_eq!(external.roles, ["partner_admin"]);
        assert_eq!(external.scopes, ["orders:read"]);

        // A local token keeps its own names; one with an unsafe role is refused.
        claims.iss = Some("https://tessera.test".into());
        claims.extra.insert("roles".into(), serde_json::json!(["admin"]));
        let local = identity(&claims, "https://tessera.test", [&config]).unwrap();
        assert_eq!((local.user_id, local.external_subject, local.roles), ("alice", "", vec!["admin"]));
        assert_eq!(local.scopes, ["admin", "orders.read"]);
        let mut derived = claims.clone();
        derived.sub = Some("https://partner.test#alice".into());
        derived.extra.insert("sub_iss".into(), serde_json::json!("https://partner.test"));
        let derived = identity(&derived, "https://tessera.test", [&config]).unwrap();
        assert_eq!((derived.user_id, derived.external_subject), ("", "https://partner.test#alice"));
        for roles in [serde_json::json!(["a,b"]), serde_json::json!("admin"), serde_json::json!([1])] {
            claims.extra.insert("roles".into(), roles);
            assert_eq!(
                identity(&claims, "https://tessera.test", [&config]).unwrap_err().status(),
                axum::http::StatusCode::UNAUTHORIZED
            );
        }
    }
}
