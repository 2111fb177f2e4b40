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
}

/// A service that authenticates with a client secret (client credentials, token exchange, introspection).
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
}
