//! The reference design's microservices behind Tessera, small enough to read in one sitting.
//!
//! - **orders** (`POST /orders`): takes a user's access token (audience `orders`), verified in process by
//!   `tessera-verify`, and charges the user through payments with a token derived from theirs — for the
//!   `payments` audience only, narrowed to `payments:charge` — which `tessera-client` obtains by token exchange
//!   (RFC 8693) and caches.
//! - **payments** (`POST /charges`, `POST /reconcile`): verifies in process too. A charge needs
//!   `payments:charge` and a token some service derived for a user (`act` names it); a reconciliation needs
//!   `payments:reconcile` and a service token.
//! - **the reconciliation job**: calls payments as itself, with a service token (`client_credentials`).
//!
//! Every call passes the request's `X-Request-ID` and `traceparent` on, and revoking the user's session at
//! Tessera reaches both services through the revocation feed: the user's calls and the derived token stop.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use reqwest_middleware::ClientWithMiddleware;
use tessera_client::{Destination, OnBehalfOf, PassContext, ServiceAuth, TokenClient};
use tessera_verify::{RequireToken, TokenVerifier, Verified};

/// The scope a user's token is narrowed to for payments.
pub const CHARGE_SCOPE: &str = "payments:charge";
/// The scope of the reconciliation job's service token.
pub const RECONCILE_SCOPE: &str = "payments:reconcile";

/// The payments service.
pub fn payments(verifier: Arc<TokenVerifier>) -> Router {
    Router::new()
        .route("/charges", post(charge).layer(RequireToken::new(Arc::clone(&verifier)).scopes([CHARGE_SCOPE])))
        .route("/reconcile", post(reconcile).layer(RequireToken::new(verifier).scopes([RECONCILE_SCOPE])))
        .layer(PassContext)
}

/// A charge for the token's user, made through the service named in `act`: a user's own token, or a service's
/// token, is not enough.
async fn charge(token: Verified, headers: HeaderMap) -> Response {
    let acting = token.claims().extra.get("act").and_then(|act| act.get("sub")).and_then(serde_json::Value::as_str);
    let Some(acting) = acting.filter(|_| token.client_id() != Some(token.subject())) else {
        return (StatusCode::FORBIDDEN, "charges are made through a service, for a user").into_response();
    };
    Json(serde_json::json!({
        "charged": token.subject(),
        "through": acting,
        "scope": token.claims().scope,
        "request_id": request_id(&headers),
    }))
    .into_response()
}

/// A reconciliation run by a service as itself.
async fn reconcile(token: Verified, headers: HeaderMap) -> Response {
    if token.client_id() != Some(token.subject()) {
        return (StatusCode::FORBIDDEN, "reconciliation is for services, not users").into_response();
    }
    Json(serde_json::json!({"reconciled_by": token.subject(), "request_id": request_id(&headers)})).into_response()
}

fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|value| value.to_str().ok())
}

/// A client that calls payments at `payments_url` with tokens from `tokens`: derived for users (narrowed to
/// [`CHARGE_SCOPE`]), or the service's own (narrowed to [`RECONCILE_SCOPE`]).
///
/// # Errors
/// When `payments_url` is not a usable destination.
pub fn payments_client(
    tokens: TokenClient,
    payments_url: &str,
) -> Result<ClientWithMiddleware, tessera_client::ConfigError> {
    let payments =
        Destination::new(payments_url, "payments").for_users(Some(CHARGE_SCOPE)).as_service(Some(RECONCILE_SCOPE));
    let auth = ServiceAuth::new(tokens, [payments])?;
    Ok(reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(auth).build())
}

#[derive(Clone)]
struct Orders {
    payments: ClientWithMiddleware,
    payments_url: Arc<str>,
}

/// The orders service: its users' tokens verified by `verifier`, payments called through `payments`.
pub fn orders(verifier: Arc<TokenVerifier>, payments: ClientWithMiddleware, payments_url: &str) -> Router {
    let state = Orders { payments, payments_url: payments_url.trim_end_matches('/').into() };
    Router::new()
        .route("/orders", post(place_order).layer(RequireToken::new(verifier)))
        .layer(PassContext)
        .with_state(state)
}

/// Places an order: charges the user through payments, on their behalf, and answers with payments' answer.
async fn place_order(State(orders): State<Orders>, token: Verified) -> Response {
    let charge = orders
        .payments
        .post(format!("{}/charges", orders.payments_url))
        .with_extension(OnBehalfOf::new(token.token()))
        .send()
        .await;
    match charge {
        Ok(answer) => {
            let status = answer.status();
            let body = answer.bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            (status, Json(serde_json::json!({"payment": body}))).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "the charge could not be made");
            (StatusCode::SERVICE_UNAVAILABLE, "payments cannot be reached").into_response()
        }
    }
}

/// One run of the reconciliation job: payments called with the job's service token.
///
/// # Errors
/// When payments cannot be reached or no token can be had.
pub async fn reconcile_once(
    payments: &ClientWithMiddleware,
    payments_url: &str,
) -> Result<(StatusCode, serde_json::Value), reqwest_middleware::Error> {
    let answer = payments.post(format!("{}/reconcile", payments_url.trim_end_matches('/'))).send().await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}
