//! # tessera-verify
//!
//! Verifies the access tokens Tessera issues inside a Rust service, in process: no call to Tessera per request,
//! the same strict policy as Tessera's own nodes (RFC 8725, RFC 9068: pinned algorithms, `typ: at+jwt`, issuer,
//! audience, expiry with bounded leeway), and revocations honoured within the feed's propagation time.
//!
//! - [`keys`]: Tessera's signing keys, fetched from its JWKS and kept current (honouring `Cache-Control`,
//!   refetched on an unknown `kid` at most once per 30 s, the last good set kept when a fetch fails).
//! - [`feed`]: the revocation log, followed from Tessera's `/gateway/v1/revocations` into the in-process index
//!   of `tessera-revocation` (the client needs the `revocations:read` scope; it authenticates with a secret or,
//!   with [`Credentials::private_key`], `private_key_jwt`).
//! - [`TokenVerifier`]: both together, with the stale policy: when the feed has not been heard from for
//!   `stale_after`, tokens are refused (the default) or accepted and counted.
//! - [`RequireToken`]: a tower layer that verifies the bearer token of each request against per-route
//!   requirements (audience, scopes, roles), puts the [`Verified`] claims in the request's extensions, and answers
//!   RFC 6750 errors with `WWW-Authenticate`; [`Verified`] is also an axum extractor.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use tessera_verify::{RequireToken, TokenVerifier, Verified, VerifierConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = VerifierConfig::new("https://auth.example.com", "orders", "orders-verifier", "the client's secret");
//! let verifier = Arc::new(TokenVerifier::start(config)?);
//! let app: Router = Router::new()
//!     .route("/orders", get(|token: Verified| async move { format!("hello {}", token.subject()) }))
//!     .layer(RequireToken::new(verifier).scopes(["orders:read"]));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod feed;
pub mod keys;
mod layer;
mod verifier;

pub use layer::{RequireToken, RequireTokenService, Verified};
/// How the service authenticates to the revocation feed: re-exported so a service need not name `tessera-client`.
pub use tessera_client::Credentials;
pub use verifier::{token_ref, Refusal, StalePolicy, StartError, TokenVerifier, VerifierConfig};
