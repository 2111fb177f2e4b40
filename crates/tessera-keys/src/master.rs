//! Encryption of private keys at rest: AES-256-GCM under a master key the operator supplies.
#![allow(
    clippy::disallowed_methods,
    reason = "a secrets module: master keys and AEAD nonces come from the OS CSPRNG, never an injected one"
)]

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;

use crate::KeyringError;

/// The 256-bit key that seals signing keys at rest.
pub struct MasterKey(LessSafeKey);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 32 bytes given as standard or URL-safe base64 (padded or not) or as 64 hex digits. Surrounding
    /// whitespace (a trailing newline in a key file) is ignored.
    ///
    /// # Errors
    /// [`KeyringError::InvalidMasterKey`] for anything else, including a passphrase: master keys must be random.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| text.get(i * 2..i * 2 + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
                .collect::<Option<Vec<u8>>>()
        } else {
            let engines = [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines.iter().find_map(|engine| engine.decode(text).ok())
        };
        match bytes {
            Some(bytes) if bytes.len() == 32 => Self::from_bytes(&bytes),
            _ => Err(KeyringError::InvalidMasterKey),
        }
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyringError::InvalidMasterKey)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A fresh master key from the OS CSPRNG, and its base64 text.
    ///
    /// # Errors
    /// [`KeyringError::Key`] if the CSPRNG fails.
    pub fn generate() -> Result<(Self, String), KeyringError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| tessera_jose::KeyError::Crypto)?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        Ok((Self::from_bytes(&bytes)?, text))
    }

    /// Encrypts `plaintext` bound to `context` (the key's id and algorithm), with a random nonce:
    /// `nonce ‖ ciphertext ‖ tag`.
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| tessera_jose::KeyError::Crypto)?;
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| tessera_jose::KeyError::Crypto)?;
        Ok([&nonce[..], &sealed].concat())
    }

    /// Decrypts what [`MasterKey::seal`] produced; `None` when the key or context is wrong or the data was altered.
    pub(crate) fn open(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self.0.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer).ok()?;
        Some(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base64_and_hex_and_refuses_passphrases() {
        let (_, text) = MasterKey::generate().unwrap();
        assert!(MasterKey::parse(&text).is_ok());
        assert!(MasterKey::parse(&format!("{text}\n")).is_ok());
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        for bad in ["", "correct horse battery staple", &"ab".repeat(31), "AAAA"] {
            assert!(matches!(MasterKey::parse(bad), Err(KeyringError::InvalidMasterKey)), "{bad}");
        }
    }

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_context() {
        let (key, _) = MasterKey::generate().unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let sealed = key.seal("kid-1|EdDSA", b"secret").unwrap();
        assert_eq!(key.open("kid-1|EdDSA", &sealed).as_deref(), Some(&b"secret"[..]));
        assert!(key.open("kid-2|EdDSA", &sealed).is_none());
        assert!(other.open("kid-1|EdDSA", &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open("kid-1|EdDSA", &tampered).is_none());
        assert!(key.open("kid-1|EdDSA", &sealed[..5]).is_none());
    }
}
