//! The accounts that authenticate: users with a password, clients with a secret or keys.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Longest role accepted.
pub const MAX_ROLE_LEN: usize = 64;

/// Whether `role` may be a role: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`. Roles travel joined with `,` in
/// `X-User-Roles`, which has no escaping; this set keeps each one a single, unambiguous item there. Every way a
/// role enters Tessera (users, the admin API, trusted issuers' role maps, legacy sessions, rollout segments)
/// checks it against this one rule.
#[must_use]
pub fn is_safe_role(role: &str) -> bool {
    (1..=MAX_ROLE_LEN).contains(&role.len())
        && role.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'))
}

/// A person who logs in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name; also the `sub` of their tokens.
    pub username: String,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Roles, copied into the `roles` claim.
    pub roles: Vec<String>,
    /// A disabled user cannot log in or refresh, and their outstanding tokens stop verifying.
    pub disabled: bool,
    /// When the user was added.
    pub created_at: Millis,
    /// What OpenID Connect's `profile` and `email` scopes release about them.
    pub profile: Profile,
}

/// The user attributes OpenID Connect releases (Core §5.1): `name` with the `profile` scope, `email` and
/// `email_verified` with the `email` scope. Empty by default: nothing is released that was not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Full name, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the operator vouches that the address is the user's.
    #[serde(default)]
    pub email_verified: bool,
}

/// An application that calls the token endpoint: a service (client credentials, token exchange, introspection)
/// authenticating with a secret or keys, or an application signing users in through the authorization endpoint
/// ([`CodeFlow`]), confidential with a secret or keys, or public with neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// `client_id`.
    pub client_id: String,
    /// SHA-256 of the generated secret (256 random bits: a fast hash is sound, nothing can be guessed).
    pub secret_hash: Vec<u8>,
    /// Scopes the client may ask for.
    pub scopes: Vec<String>,
    /// Audiences the client may ask tokens for.
    pub audiences: Vec<String>,
    /// Grants the client may use: `client_credentials`, `token_exchange`.
    pub grants: Vec<String>,
    /// A disabled client cannot authenticate.
    pub disabled: bool,
    /// The client's public keys (a JWKS document) when it authenticates with `private_key_jwt` (RFC 7523)
    /// instead of a secret; its `secret_hash` is then empty.
    pub jwks: Option<String>,
    /// When it was added.
    pub created_at: Millis,
    /// How the client signs users in through the authorization endpoint; `None` for a client that may not.
    pub code_flow: Option<CodeFlow>,
}

/// A client's registration for the authorization code flow (RFC 6749 §4.1 with PKCE, OpenID Connect).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFlow {
    /// Where codes may be sent, matched exactly (RFC 9700 §4.1.3); a loopback `http` URI matches on any port
    /// (RFC 8252 §7.3).
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to, matched exactly.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether authorization requests must be pushed first (RFC 9126 §6).
    #[serde(default)]
    pub require_par: bool,
    /// An application of the same operator: users are not asked to consent to it.
    #[serde(default)]
    pub first_party: bool,
    /// How its ID tokens are signed (its `id_token_signed_response_alg`, OpenID Connect Registration §2).
    #[serde(default)]
    pub id_token_signing: IdTokenSigning,
}

/// Which key signs a client's ID tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdTokenSigning {
    /// The server's signing key, whatever its algorithm (EdDSA unless configured otherwise).
    #[default]
    SigningKey,
    /// RS256, for applications that accept nothing else: every OpenID Connect provider must offer it (Core
    /// §15.1). Signed with the RS256 keyring when the signing keys are of another algorithm.
    Rs256,
}
