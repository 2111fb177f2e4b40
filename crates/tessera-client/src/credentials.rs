//! How a client proves who it is to Tessera: `client_secret_basic` (RFC 6749 §2.3.1) or `private_key_jwt`
//! (RFC 7523 §2.2, a fresh single-use assertion per request).

use std::sync::Arc;

use tessera_jose::SigningKey;
use tessera_model::clock::Clock;

use crate::TokenError;

/// RFC 7523 §2.2: the `client_assertion_type` of `private_key_jwt`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A client assertion is for one request: it lives a minute (Tessera accepts up to five).
const ASSERTION_LIFETIME_SECS: i64 = 60;

/// A client's credentials. `Debug` never shows the secret or the key.
#[derive(Clone)]
pub enum Credentials {
    /// `client_secret_basic`: the id and secret Tessera gave the client, in the `Authorization` header.
    Secret {
        /// The client id.
        client_id: String,
        /// Its secret.
        secret: String,
    },
    /// `private_key_jwt`: each request carries an assertion signed with the client's private key, whose public
    /// half was registered with Tessera (`tessera client add --jwks`). No shared secret exists to leak.
    PrivateKey {
        /// The client id.
        client_id: String,
        /// The private key (RS256, ES256 or EdDSA); its `kid` names it in the registered key set.
        key: Arc<SigningKey>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match self {
            Self::Secret { .. } => "client_secret_basic",
            Self::PrivateKey { .. } => "private_key_jwt",
        };
        f.debug_struct("Credentials").field("client_id", &self.client_id()).field("method", &method).finish()
    }
}

impl Credentials {
    /// `client_secret_basic` with `client_id` and `secret`.
    #[must_use]
    pub fn secret(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::Secret { client_id: client_id.into(), secret: secret.into() }
    }

    /// `private_key_jwt` with `client_id` and its private `key`.
    #[must_use]
    pub fn private_key(client_id: impl Into<String>, key: SigningKey) -> Self {
        Self::PrivateKey { client_id: client_id.into(), key: Arc::new(key) }
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        match self {
            Self::Secret { client_id, .. } | Self::PrivateKey { client_id, .. } => client_id,
        }
    }

    /// What is missing or unusable, for a configuration report (empty when nothing is).
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.client_id().is_empty() {
            problems.push("the client id must not be empty".to_owned());
        }
        if matches!(self, Self::Secret { secret, .. } if secret.is_empty()) {
            problems.push("the client secret must not be empty".to_owned());
        }
        problems
    }

    /// `request` (a POST whose form is `form`, to Tessera's token endpoint `token_endpoint` or another endpoint
    /// that authenticates clients as it does) authenticated: the Basic header, or the assertion's two form fields,
    /// which must be added before the form is encoded. The assertion's audience is `token_endpoint`, which Tessera
    /// accepts at each such endpoint.
    ///
    /// # Errors
    /// [`TokenError::Credentials`] when the assertion cannot be signed.
    pub fn authenticate(
        &self,
        request: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
        token_endpoint: &str,
        clock: &dyn Clock,
    ) -> Result<reqwest::RequestBuilder, TokenError> {
        match self {
            Self::Secret { client_id, secret } => {
                Ok(request.basic_auth(form_encoded(client_id), Some(form_encoded(secret))))
            }
            Self::PrivateKey { client_id, key } => {
                form.push(("client_assertion_type", JWT_BEARER.to_owned()));
                form.push(("client_assertion", assertion(client_id, key, token_endpoint, clock.now_secs())?));
                Ok(request)
            }
        }
    }
}

/// RFC 6749 §2.3.1: `application/x-www-form-urlencoded` before Basic encoding, so a `:` in an id stays one.
fn form_encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A client assertion (RFC 7523 §3): `iss` and `sub` the client, `aud` the token endpoint, a minute's lifetime
/// and a random `jti` (Tessera refuses an assertion it has seen).
fn assertion(client_id: &str, key: &SigningKey, token_endpoint: &str, now: i64) -> Result<String, TokenError> {
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": now,
        "exp": now.saturating_add(ASSERTION_LIFETIME_SECS),
        "jti": crate::random_id()?,
    });
    tessera_jose::encode_jwt(key, None, &claims)
        .map_err(|err| TokenError::Credentials(format!("cannot sign the client assertion: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        assert_eq!(form_encoded("a:b c/é"), "a%3Ab+c%2F%C3%A9");
    }

    #[test]
    fn debug_shows_neither_the_secret_nor_the_key() {
        let shown = format!("{:?}", Credentials::secret("orders", "s3cr3t-value"));
        assert!(shown.contains("orders") && !shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn an_assertion_is_signed_for_the_token_endpoint_with_a_fresh_jti() {
        let key = SigningKey::generate(tessera_jose::Algorithm::EdDSA, tessera_jose::RsaBits::Bits2048).unwrap();
        let endpoint = "https://auth.example.com/oauth2/token";
        let first = assertion("orders", &key, endpoint, 1_700_000_000).unwrap();
        let second = assertion("orders", &key, endpoint, 1_700_000_000).unwrap();
        let claims = |token: &str| tessera_jose::decode_unverified(token, 8192).unwrap().payload.claims().cloned();
        let (one, two) = (claims(&first).unwrap(), claims(&second).unwrap());
        assert_eq!((one.iss.as_deref(), one.sub.as_deref()), (Some("orders"), Some("orders")));
        assert!(one.aud.as_ref().is_some_and(|aud| aud.contains(endpoint)));
        assert_eq!((one.iat, one.exp), (Some(1_700_000_000), Some(1_700_000_060)));
        assert_ne!(one.jti, two.jti, "each assertion is single-use");
        let signed = first.rsplit_once('.').unwrap();
        assert!(key
            .verifying_key()
            .verify_signature(signed.0.as_bytes(), &tessera_jose::base64url::decode(signed.1).unwrap()));
    }
}
