//! [`RequireToken`]: a tower layer that lets a request through only with a bearer token the
//! [`TokenVerifier`] accepts and that meets the route's requirements, and [`Verified`], the claims it leaves in the
//! request's extensions (an axum extractor too).
//!
//! Refusals are RFC 6750's, in the `WWW-Authenticate` header and with an empty body: no token, 401 with a bare
//! `Bearer` challenge (§3.1: no error code when none was sent); a malformed `Authorization`, 400
//! `invalid_request`; a token that is invalid, revoked or for another audience, 401 `invalid_token`; a valid token
//! lacking a required scope or role, 403 `insufficient_scope` naming the scopes; and while the revocation index
//! is stale under the fail-closed policy, or before Tessera's keys were ever fetched, 503 with `Retry-After` — the
//! token may be fine, the user should not be logged out for it.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use futures_util::future::Either;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tessera_jose::Claims;

use crate::verifier::{Refusal, TokenVerifier};

/// The claims of the request's verified token, left in its extensions by [`RequireToken`]. `Debug` shows the
/// claims, never the token.
#[derive(Clone)]
pub struct Verified {
    claims: Arc<Claims>,
    /// The request's `Authorization` value, shared rather than copied (a `HeaderValue` clone is a reference count).
    authorization: HeaderValue,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified").field("claims", &self.claims).finish_non_exhaustive()
    }
}

impl Verified {
    /// All the claims.
    #[must_use]
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The bearer token itself, to exchange for a token meant for the next service (`tessera-client`'s
    /// `OnBehalfOf`). Never log it, and never send it on as it is: it is meant for this service only.
    #[must_use]
    pub fn token(&self) -> &str {
        // The layer accepted exactly this shape: `Bearer <token>`, visible ASCII.
        self.authorization.to_str().ok().and_then(|value| value.split_once(' ')).map_or("", |(_, token)| token.trim())
    }

    /// The subject (`sub`): the user, or for a service token the client.
    #[must_use]
    pub fn subject(&self) -> &str {
        self.claims.sub.as_deref().unwrap_or_default()
    }

    /// The scopes (`scope`, space-separated).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.claims.scope.as_deref().unwrap_or_default().split(' ').filter(|scope| !scope.is_empty())
    }

    /// The roles (`roles`, an array of strings; others are ignored).
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.claims
            .extra
            .get("roles")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
    }

    /// The client the token was issued to (`client_id`).
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.claims.client_id.as_deref()
    }
}

/// A route handler asking for [`Verified`] behind no [`RequireToken`] gets a 500: a misconfiguration, never a
/// request let through unverified.
impl<S: Send + Sync> FromRequestParts<S> for Verified {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("a handler takes Verified but its route is not behind RequireToken");
            (StatusCode::INTERNAL_SERVER_ERROR, "this route is not behind RequireToken")
        })
    }
}

/// What a route requires of a token beyond the verifier's policy.
#[derive(Debug, Default)]
struct Requirements {
    audience: Option<String>,
    scopes: Vec<String>,
    roles: Vec<String>,
}

/// The layer: see the [module documentation](self). Cloning is cheap.
#[derive(Debug, Clone)]
pub struct RequireToken {
    verifier: Arc<TokenVerifier>,
    requirements: Arc<Requirements>,
}

impl RequireToken {
    /// Requires a token `verifier` accepts (its audience, no other requirement yet).
    #[must_use]
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier, requirements: Arc::default() }
    }

    /// Requires `aud` to name `audience` too (a route of the service serving a second audience).
    #[must_use]
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.with(|requirements| requirements.audience = Some(audience.into()))
    }

    /// Requires every one of `scopes` in the token's `scope`.
    #[must_use]
    pub fn scopes(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.with(|requirements| requirements.scopes.extend(scopes.into_iter().map(Into::into)))
    }

    /// Requires every one of `roles` in the token's `roles`.
    #[must_use]
    pub fn roles(self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.with(|requirements| requirements.roles.extend(roles.into_iter().map(Into::into)))
    }

    fn with(self, change: impl FnOnce(&mut Requirements)) -> Self {
        let mut requirements = Requirements {
            audience: self.requirements.audience.clone(),
            scopes: self.requirements.scopes.clone(),
            roles: self.requirements.roles.clone(),
        };
        change(&mut requirements);
        Self { verifier: self.verifier, requirements: Arc::new(requirements) }
    }

    /// The request's verified claims, or the answer refusing it.
    fn check(&self, headers: &HeaderMap) -> Result<Verified, Refused> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if headers.contains_key(AUTHORIZATION) { Refused::Malformed } else { Refused::NoToken });
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty() && !token.contains(' '))
            .ok_or(Refused::Malformed)?;
        let claims = self.verifier.verify(token).map_err(|refusal| match refusal {
            Refusal::Stale | Refusal::KeysUnknown => Refused::Unavailable,
            Refusal::Invalid(_) | Refusal::NotClaims | Refusal::Revoked => Refused::Invalid,
        })?;
        let verified = Verified { claims: Arc::new(claims), authorization: value.clone() };
        let requirements = &self.requirements;
        if let Some(audience) = &requirements.audience {
            if !verified.claims().aud.as_ref().is_some_and(|aud| aud.contains(audience)) {
                return Err(Refused::Invalid);
            }
        }
        // A route requires a scope or two: a scan of the token's list per requirement allocates nothing.
        if !requirements.scopes.iter().all(|needed| verified.scopes().any(|held| held == needed))
            || !requirements.roles.iter().all(|needed| verified.roles().any(|held| held == needed))
        {
            return Err(Refused::Insufficient(requirements.scopes.join(" ")));
        }
        Ok(verified)
    }
}

/// Why a request was refused, as its answer.
#[derive(Debug)]
enum Refused {
    NoToken,
    Malformed,
    Invalid,
    Insufficient(String),
    Unavailable,
}

impl Refused {
    fn response<B: Default>(self) -> Response<B> {
        let (status, challenge) = match self {
            Self::NoToken => (StatusCode::UNAUTHORIZED, "Bearer".to_owned()),
            Self::Malformed => (StatusCode::BAD_REQUEST, r#"Bearer error="invalid_request""#.to_owned()),
            Self::Invalid => (StatusCode::UNAUTHORIZED, r#"Bearer error="invalid_token""#.to_owned()),
            // Scope tokens are visible ASCII without `"` or `\` (RFC 6749 §3.3) when Tessera issued them; anything
            // else is left out of the header rather than quoted.
            Self::Insufficient(scopes) if !scopes.is_empty() && scopes.bytes().all(|b| b != b'"' && b != b'\\') => {
                (StatusCode::FORBIDDEN, format!(r#"Bearer error="insufficient_scope", scope="{scopes}""#))
            }
            Self::Insufficient(_) => (StatusCode::FORBIDDEN, r#"Bearer error="insufficient_scope""#.to_owned()),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
        };
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        if let Ok(challenge) = HeaderValue::try_from(challenge) {
            if !challenge.is_empty() {
                response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl<S> tower_layer::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService { inner, layer: self.clone() }
    }
}

/// The service [`RequireToken`] wraps around another.
#[derive(Debug, Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    layer: RequireToken,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for RequireTokenService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    /// The inner service's own future, or the refusal at once: nothing boxed per request.
    type Future = Either<std::future::Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.layer.check(request.headers()) {
            Ok(verified) => {
                request.extensions_mut().insert(verified);
                Either::Right(self.inner.call(request))
            }
            Err(refused) => Either::Left(std::future::ready(Ok(refused.response()))),
        }
    }
}
