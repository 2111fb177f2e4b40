//! Fixtures shared by the integration tests: the RFC keys, and tokens signed with them.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)] // test helpers: a panic is a failed test

use std::path::PathBuf;

use tessera_jose::{Jwk, SigningKey};

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).trim().to_owned()
}

pub fn private_jwk(name: &str, kid: &str) -> Jwk {
    let mut jwk: Jwk = serde_json::from_str(&fixture(name)).unwrap();
    jwk.kid = Some(kid.to_owned());
    jwk
}

/// RFC 7515 A.2's RSA key, RFC 7515 A.3's P-256 key and RFC 8037's Ed25519 key, with the kids the tests use.
pub fn rfc_keys() -> [SigningKey; 3] {
    [
        SigningKey::from_private_jwk(&private_jwk("rfc7515-a2-rsa.private.jwk.json", "rsa-1")).unwrap(),
        SigningKey::from_private_jwk(&private_jwk("rfc7515-a3-p256.private.jwk.json", "ec-1")).unwrap(),
        SigningKey::from_private_jwk(&private_jwk("rfc8037-a1-ed25519.private.jwk.json", "ed-1")).unwrap(),
    ]
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    tessera_jose::base64url::encode(bytes)
}
