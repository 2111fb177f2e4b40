//! # tessera-audit
//!
//! A JWT security audit of tokens and key sets: findings with a severity, evidence and a concrete fix; a
//! parallel weak-secret cracker for HMAC tokens (built-in list, wordlists in the `jwt.secrets.list` format, a
//! bounded brute force); and reports as a text table, JSON, SARIF 2.1.0 or a Markdown audit report. No I/O here:
//! the command line fetches files and URLs and hands the bytes in.
#![warn(missing_docs)]

pub mod authorize;
pub mod crack;
mod finding;
pub mod gateway;
mod jwks;
pub mod plan;
pub mod probe;
pub mod render;
pub mod risk;
mod token;

pub use finding::{Finding, Location, Report, Severity};
pub use jwks::audit_jwks;
pub use token::{audit_token, TokenAudit};

/// Why an audit could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The input is not a compact JWT.
    #[error("not a JWT: {0}")]
    NotAJwt(String),
    /// The input is not a JWKS document.
    #[error("not a JWK Set: {0}")]
    NotAJwks(String),
    /// The endpoint probe could not be prepared.
    #[error("probe: {0}")]
    Probe(String),
}
