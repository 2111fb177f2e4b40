//! Producing compact JWS.

use serde::Serialize;

use crate::{b64, KeyError, SigningKey};

/// Signs `payload` under exactly the header bytes given: `b64(header).b64(payload).b64(signature)`.
///
/// # Errors
/// [`KeyError::Crypto`] if signing fails.
pub fn sign_compact(key: &SigningKey, header: &[u8], payload: &[u8]) -> Result<String, KeyError> {
    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 400);
    b64::encode_into(header, &mut token);
    token.push('.');
    b64::encode_into(payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    b64::encode_into(signature, &mut token);
    Ok(token)
}

/// The header Tessera puts on every JWT it signs; verifiers recognise it by its exact bytes.
#[derive(Serialize)]
pub(crate) struct JwtHeader<'a> {
    pub(crate) alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) typ: Option<&'a str>,
    pub(crate) kid: &'a str,
}

/// Signs `claims` as a JWT with the header `{"alg", "typ", "kid"}` of `key`.
///
/// # Errors
/// [`KeyError::Crypto`] if signing fails; [`KeyError::InvalidJwk`] if the claims cannot be serialised.
pub fn encode_jwt(key: &SigningKey, typ: Option<&str>, claims: &impl Serialize) -> Result<String, KeyError> {
    let header = JwtHeader { alg: key.algorithm().as_str(), typ, kid: key.kid() };
    let to_json = |value: &dyn erased::Json| value.to_json().map_err(|err| KeyError::InvalidJwk(err.to_string()));
    sign_compact(key, &to_json(&header)?, &to_json(claims)?)
}

mod erased {
    /// Object-safe JSON serialisation, so one closure serialises both header and claims.
    pub(super) trait Json {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}
