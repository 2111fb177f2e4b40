use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

// Not: DecodingKey::from_secret(b"secret")
pub fn verify(token: &str, keys: &HashMap<String, DecodingKey>) -> Option<Claims> {
    let kid = decode_header(token).ok()?.kid?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["orders"]);
    validation.set_issuer(&["https://auth.example.com"]);
    validation.leeway = 5;
    decode::<Claims>(token, keys.get(&kid)?, &validation).ok().map(|data| data.claims)
}

pub fn session_cookie(token: &str) -> cookie::Cookie<'_> {
    cookie::Cookie::build(("access_token", token)).http_only(true).secure(true).same_site(cookie::SameSite::Strict).build()
}
