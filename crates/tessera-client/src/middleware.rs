//! [`ServiceAuth`]: a `reqwest-middleware` middleware that gives each call the token its destination takes —
//! a token derived from the user's when the call is made on a user's behalf ([`OnBehalfOf`]), the service's own
//! token otherwise — passes the request's context on, and keeps a circuit breaker per destination.
//!
//! Deny by default: a call to a URL that is no configured destination fails with
//! [`CallError::UnknownDestination`] rather than going out with some token or none, and a destination takes
//! only the kinds of call it was configured for (a call without a user is never silently made with the service's
//! own, broader, identity where a user's was expected). An `Authorization` header set by the caller is
//! replaced: a user's own token must not travel past the service it was meant for.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Extensions, HeaderValue, StatusCode};
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::breaker::{Breaker, BreakerConfig};
use crate::{AccessToken, ConfigError, RequestContext, TokenClient, TokenError};

/// One service this service calls: its base URL (calls to it and under it match), the audience its tokens
/// must name, and which calls it takes.
#[derive(Debug, Clone)]
pub struct Destination {
    base_url: String,
    audience: String,
    as_service: Option<Option<String>>,
    for_users: Option<Option<String>>,
    breaker: BreakerConfig,
}

impl Destination {
    /// The service at `base_url` (`https://payments.internal`, or with a path prefix), whose tokens name
    /// `audience`. It takes no call until [`Destination::as_service`] or [`Destination::for_users`] says which.
    #[must_use]
    pub fn new(base_url: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            audience: audience.into(),
            as_service: None,
            for_users: None,
            breaker: BreakerConfig::default(),
        }
    }

    /// Calls without a user carry this service's own token (`client_credentials`), with `scope` or every scope
    /// the client has.
    #[must_use]
    pub fn as_service(mut self, scope: Option<&str>) -> Self {
        self.as_service = Some(scope.map(str::to_owned));
        self
    }

    /// Calls made [`OnBehalfOf`] a user carry a token derived from the user's (token exchange), narrowed to
    /// `scope` or to everything the exchange rule allows.
    #[must_use]
    pub fn for_users(mut self, scope: Option<&str>) -> Self {
        self.for_users = Some(scope.map(str::to_owned));
        self
    }

    /// This destination's circuit breaker. Default: 5 failures in a row, open 30 s.
    #[must_use]
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }
}

/// The user a call is made for: their access token, which the middleware exchanges for one meant for the
/// destination. Set it as a request extension (`.with_extension(OnBehalfOf::new(token))`). `Debug` hides it.
#[derive(Clone)]
pub struct OnBehalfOf(Arc<str>);

impl OnBehalfOf {
    /// On behalf of the user whose access token (meant for this service) is `token`.
    #[must_use]
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for OnBehalfOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnBehalfOf(..)")
    }
}

/// Why the middleware did not send a call. It reaches the caller as `reqwest_middleware::Error::Middleware`;
/// `error.downcast_ref::<CallError>()` gets it back.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The URL is under no configured destination.
    #[error("no destination is configured for {0}")]
    UnknownDestination(String),
    /// The destination takes calls on behalf of users only, and this call names none.
    #[error("{0} takes calls on behalf of users only, and this call names no user")]
    NoUser(String),
    /// The destination takes no calls on behalf of users.
    #[error("{0} takes no calls on behalf of users")]
    NotForUsers(String),
    /// The destination failed too often; the next trial call is due in `retry_in`.
    #[error("the circuit to {destination} is open (next trial in {retry_in:?})")]
    CircuitOpen {
        /// The destination's base URL.
        destination: String,
        /// Until the next trial call.
        retry_in: Duration,
    },
    /// No token could be had for the call.
    #[error("no token for {destination}: {source}")]
    Token {
        /// The destination's base URL.
        destination: String,
        /// Why.
        #[source]
        source: TokenError,
    },
}

/// The middleware: see the [module documentation](self).
#[derive(Debug)]
pub struct ServiceAuth {
    tokens: TokenClient,
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    base: Url,
    destination: Destination,
    breaker: Breaker,
}

/// Which token a call carries, to fetch it and, when the destination refuses it, to forget it.
enum Kind<'a> {
    Service(Option<&'a str>),
    User(&'a OnBehalfOf, Option<&'a str>),
}

impl ServiceAuth {
    /// Tokens from `tokens` for `destinations`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every destination that is unusable (not a URL, plain `http` to another machine,
    /// a query or fragment in the base, no kind of call allowed, the same base twice).
    pub fn new(tokens: TokenClient, destinations: impl IntoIterator<Item = Destination>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut routes: Vec<Route> = Vec::new();
        for destination in destinations {
            let name = destination.base_url.clone();
            if let Err(why) = crate::check_https_or_loopback("destination", &name) {
                problems.push(why);
                continue;
            }
            let Ok(mut base) = Url::parse(&name) else { continue };
            if base.query().is_some() || base.fragment().is_some() {
                problems.push(format!("destination {name:?} must have no query or fragment"));
            }
            if destination.as_service.is_none() && destination.for_users.is_none() {
                problems.push(format!("destination {name:?} takes no calls: say as_service, for_users or both"));
            }
            if destination.audience.is_empty() {
                problems.push(format!("destination {name:?} needs an audience"));
            }
            if !base.path().ends_with('/') {
                let path = format!("{}/", base.path());
                base.set_path(&path);
            }
            if routes.iter().any(|route| route.base == base) {
                problems.push(format!("destination {name:?} is configured twice"));
            }
            let breaker = Breaker::new(destination.breaker);
            routes.push(Route { base, destination, breaker });
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        // The longest base first: a call under `/v2/` of a host goes to that destination, not the host's.
        routes.sort_by_key(|route| std::cmp::Reverse(route.base.path().len()));
        Ok(Self { tokens, routes })
    }

    fn route(&self, url: &Url) -> Option<&Route> {
        self.routes.iter().find(|route| {
            let base = &route.base;
            url.scheme() == base.scheme()
                && url.host() == base.host()
                && url.port_or_known_default() == base.port_or_known_default()
                && (url.path().starts_with(base.path()) || format!("{}/", url.path()) == base.path())
        })
    }

    async fn token(&self, route: &Route, kind: &Kind<'_>) -> Result<AccessToken, CallError> {
        let audience = &route.destination.audience;
        let fetched = match kind {
            Kind::Service(scope) => self.tokens.service_token(audience, *scope).await,
            Kind::User(user, scope) => self.tokens.exchange(&user.0, audience, *scope).await,
        };
        fetched.map_err(|source| CallError::Token { destination: route.destination.base_url.clone(), source })
    }

    fn forget(&self, route: &Route, kind: &Kind<'_>, token: &AccessToken) {
        let audience = &route.destination.audience;
        match kind {
            Kind::Service(scope) => self.tokens.forget_service_token(audience, *scope, token),
            Kind::User(user, scope) => self.tokens.forget_derived_token(&user.0, audience, *scope, token),
        }
    }

    /// Sends `request` with `token` through the breaker.
    async fn send(
        route: &Route,
        mut request: Request,
        token: &AccessToken,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        route.breaker.admit().map_err(|retry_in| {
            reqwest_middleware::Error::middleware(CallError::CircuitOpen {
                destination: route.destination.base_url.clone(),
                retry_in,
            })
        })?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", token.secret()))
            .map_err(|_| reqwest_middleware::Error::middleware(TokenError::BadAnswer("unprintable token".into())))?;
        authorization.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, authorization);
        let outcome = next.run(request, extensions).await;
        route.breaker.record(outcome.as_ref().is_ok_and(|response| !response.status().is_server_error()));
        outcome
    }
}

/// RFC 6750 §3.1: the destination says the token itself is bad (revoked, expired, unknown key).
fn refuses_the_token(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .any(|value| value.to_str().is_ok_and(|value| value.contains("invalid_token")))
}

#[async_trait::async_trait]
impl Middleware for ServiceAuth {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let url = request.url();
        let route = self.route(url).ok_or_else(|| {
            let origin = url.origin().ascii_serialization();
            reqwest_middleware::Error::middleware(CallError::UnknownDestination(format!("{origin}{}", url.path())))
        })?;
        let user = extensions.get::<OnBehalfOf>().cloned();
        let destination = &route.destination;
        let kind = match (&user, &destination.for_users, &destination.as_service) {
            (Some(user), Some(scope), _) => Kind::User(user, scope.as_deref()),
            (Some(_), None, _) => {
                return Err(reqwest_middleware::Error::middleware(CallError::NotForUsers(destination.base_url.clone())))
            }
            (None, _, Some(scope)) => Kind::Service(scope.as_deref()),
            (None, _, None) => {
                return Err(reqwest_middleware::Error::middleware(CallError::NoUser(destination.base_url.clone())))
            }
        };
        let context = extensions.get::<RequestContext>().cloned().or_else(RequestContext::current).unwrap_or_default();
        context.apply(request.headers_mut());

        let token = self.token(route, &kind).await.map_err(reqwest_middleware::Error::middleware)?;
        let retry = request.try_clone();
        let response = Self::send(route, request, &token, extensions, next.clone()).await?;
        if !refuses_the_token(&response) {
            return Ok(response);
        }
        // The token was revoked or its key retired: never use it again. One more try with a new token when the
        // request can be replayed and a different token can be had; otherwise the destination's answer stands.
        self.forget(route, &kind, &token);
        let (Some(retry), Ok(fresh)) = (retry, self.token(route, &kind).await) else { return Ok(response) };
        if fresh.same_as(&token) {
            return Ok(response);
        }
        Self::send(route, retry, &fresh, extensions, next).await
    }
}
