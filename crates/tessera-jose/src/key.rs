//! Keys bound to one algorithm each: the verifying half (public keys and configured HMAC secrets) and the
//! signing half (RS256, ES256, EdDSA private keys).

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair};
use aws_lc_rs::{hmac, rand};

use crate::{b64, Algorithm, Jwk, KeyError};

/// The longest `kid` accepted, in a token or a key.
pub const MAX_KID_LEN: usize = 128;

/// Whether `kid` is short and made only of characters that mean nothing to a path, a query, a shell or a URL.
/// A `kid` is only ever an exact map key, but refusing `/`, quotes, spaces and the like keeps it that way
/// whatever code later handles it.
#[must_use]
pub fn is_acceptable_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~' | b'+' | b'=' | b'@' | b':'))
        && kid != "."
        && !kid.contains("..")
}

/// RSA modulus sizes Tessera generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaBits {
    /// 2048 bits: the RFC 7518 minimum, and the fastest.
    #[default]
    Bits2048,
    /// 3072 bits: about 128-bit security.
    Bits3072,
}

/// P-256 group order n, big-endian: ECDSA signatures need 1 ≤ r, s < n (CVE-2022-21449).
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn scalar_in_range(scalar: &[u8]) -> bool {
    scalar.iter().any(|&b| b != 0) && scalar < &P256_ORDER[..]
}

/// A key that verifies signatures of exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    material: VerifyMaterial,
    /// The public JWK, for key sets and audits. Empty of private members by construction; `None` for HMAC.
    public_jwk: Option<Jwk>,
}

#[derive(Clone)]
enum VerifyMaterial {
    Public { key: ParsedPublicKey, signature_len: usize },
    Hmac(Box<hmac::Key>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (with `kid`, `alg` and `use`), or `None` for a symmetric key, which is never published.
    #[must_use]
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// Builds a verifying key from a public JWK.
    ///
    /// The key's algorithm is its `alg` member; when absent it is inferred only where unambiguous for
    /// signatures Tessera accepts (`RSA` → RS256, `EC` P-256 → ES256, `OKP` Ed25519 → EdDSA). An `oct` key must
    /// name `HS256` explicitly. Without `kid` the RFC 7638 thumbprint is used.
    ///
    /// # Errors
    /// A [`KeyError`] naming what is wrong: private members present, unsupported type, weak key, `use` other than
    /// `sig`, an `alg` that does not fit the key type, malformed members.
    pub fn from_public_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != "oct" {
            if let Some(member) = jwk.private_member() {
                return Err(KeyError::PrivateMaterial { kid: jwk.kid.clone().unwrap_or_default(), member });
            }
        }
        Self::from_jwk_members(jwk)
    }

    /// Builds a verifying key from a JWK that may hold private members (they are not used).
    fn from_jwk_members(jwk: &Jwk) -> Result<Self, KeyError> {
        check_use(jwk)?;
        let alg = jwk_algorithm(jwk)?;
        let kid = jwk_kid(jwk)?;
        let material = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                let n = jwk.bytes(&jwk.n, "n")?;
                let e = jwk.bytes(&jwk.e, "e")?;
                rsa_public(alg, &n, &e)?
            }
            Algorithm::ES256 => {
                if jwk.crv.as_deref() != Some("P-256") {
                    return Err(KeyError::Unsupported(format!("EC curve {:?} (only P-256)", jwk.crv)));
                }
                let x = jwk.bytes(&jwk.x, "x")?;
                let y = jwk.bytes(&jwk.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::InvalidJwk("P-256 coordinates must be 32 bytes each".into()));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                public_material(&signature::ECDSA_P256_SHA256_FIXED, &point, 64)?
            }
            Algorithm::EdDSA => {
                if jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(KeyError::Unsupported(format!("OKP curve {:?} (only Ed25519)", jwk.crv)));
                }
                let x = jwk.bytes(&jwk.x, "x")?;
                if x.len() != 32 {
                    return Err(KeyError::InvalidJwk("Ed25519 public key must be 32 bytes".into()));
                }
                public_material(&signature::ED25519, &x, 64)?
            }
            Algorithm::HS256 => {
                let secret = jwk.bytes(&jwk.k, "k")?;
                return Self::hmac(kid, &secret);
            }
        };
        let public_jwk = Jwk {
            kid: Some(kid.clone()),
            alg: Some(alg.as_str().into()),
            use_: Some("sig".into()),
            key_ops: None,
            ..jwk.to_public()
        };
        Ok(Self { kid, alg, material, public_jwk: Some(public_jwk) })
    }

    /// An HS256 key from a configured shared secret of at least 256 bits.
    ///
    /// # Errors
    /// [`KeyError::TooWeak`] for a shorter secret; [`KeyError::Rejected`] for a secret that is public-key material
    /// (PEM, DER, JWK JSON or OpenSSH text) — the RS256→HS256 confusion attack, refused at configuration time too.
    pub fn hmac(kid: String, secret: &[u8]) -> Result<Self, KeyError> {
        if !is_acceptable_kid(&kid) {
            return Err(KeyError::InvalidJwk(format!("kid {kid:?} is not acceptable")));
        }
        if secret.len() < 32 {
            return Err(KeyError::TooWeak(format!("HS256 secret is {} bits; at least 256 required", secret.len() * 8)));
        }
        if looks_like_public_key(secret) {
            return Err(KeyError::Rejected("HMAC secret looks like public-key material".into()));
        }
        Ok(Self {
            kid,
            alg: Algorithm::HS256,
            material: VerifyMaterial::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
            public_jwk: None,
        })
    }

    /// Checks `signature` over `message`. For ES256, r and s must lie in [1, n−1] and the signature must be the
    /// 64-byte raw form; HMAC tags are compared in constant time. Token verification goes through
    /// [`Verifier`](crate::Verifier), which applies the policy first; this is public for work that must cost what
    /// a verification costs (a decoy check that keeps failures for unknown callers as slow as for known ones).
    #[must_use]
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            VerifyMaterial::Public { key, signature_len } => {
                if signature.len() != *signature_len {
                    return false;
                }
                if self.alg == Algorithm::ES256 {
                    let (r, s) = signature.split_at(32);
                    if !scalar_in_range(r) || !scalar_in_range(s) {
                        return false;
                    }
                }
                key.verify_sig(message, signature).is_ok()
            }
            VerifyMaterial::Hmac(key) => signature.len() == 32 && hmac::verify(key, message, signature).is_ok(),
        }
    }
}

fn check_use(jwk: &Jwk) -> Result<(), KeyError> {
    if let Some(use_) = &jwk.use_ {
        if use_ != "sig" {
            return Err(KeyError::Unsupported(format!("use {use_:?} (only \"sig\")")));
        }
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify" || op == "sign") {
            return Err(KeyError::Unsupported(format!("key_ops {ops:?} allow neither sign nor verify")));
        }
    }
    Ok(())
}

fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, KeyError> {
    let mismatch = |alg: &str| KeyError::AlgorithmKeyMismatch { alg: alg.into(), kty: jwk.kty.clone() };
    match jwk.alg.as_deref() {
        Some(name) => {
            let alg = Algorithm::from_name(name).ok_or_else(|| KeyError::Unsupported(format!("alg {name:?}")))?;
            let fits = match alg {
                Algorithm::RS256 | Algorithm::PS256 => jwk.kty == "RSA",
                Algorithm::ES256 => jwk.kty == "EC",
                Algorithm::EdDSA => jwk.kty == "OKP",
                Algorithm::HS256 => jwk.kty == "oct",
            };
            if fits {
                Ok(alg)
            } else {
                Err(mismatch(name))
            }
        }
        None => match jwk.kty.as_str() {
            "RSA" => Ok(Algorithm::RS256),
            "EC" => Ok(Algorithm::ES256),
            "OKP" => Ok(Algorithm::EdDSA),
            "oct" => Err(KeyError::MissingMember("alg")),
            other => Err(KeyError::Unsupported(format!("kty {other:?}"))),
        },
    }
}

fn jwk_kid(jwk: &Jwk) -> Result<String, KeyError> {
    let kid = match &jwk.kid {
        Some(kid) => kid.clone(),
        None => jwk.thumbprint()?,
    };
    if is_acceptable_kid(&kid) {
        Ok(kid)
    } else {
        Err(KeyError::InvalidJwk(format!("kid {kid:?} is not acceptable")))
    }
}

fn public_material(
    alg: &'static dyn signature::VerificationAlgorithm,
    bytes: &[u8],
    signature_len: usize,
) -> Result<VerifyMaterial, KeyError> {
    let key = ParsedPublicKey::new(alg, bytes).map_err(|err| KeyError::Rejected(err.to_string()))?;
    Ok(VerifyMaterial::Public { key, signature_len })
}

fn rsa_public(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<VerifyMaterial, KeyError> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if bits < 2048 {
        return Err(KeyError::TooWeak(format!("RSA modulus is {bits} bits; at least 2048 required")));
    }
    if bits > 8192 {
        return Err(KeyError::Unsupported(format!("RSA modulus of {bits} bits (at most 8192)")));
    }
    let exponent = e.iter().fold(0u64, |acc, &b| acc.saturating_mul(256).saturating_add(u64::from(b)));
    if exponent < 65537 || exponent % 2 == 0 || e.len() > 5 {
        return Err(KeyError::TooWeak(format!("RSA public exponent {exponent} (must be odd, 65537 to 2^33)")));
    }
    let params = match alg {
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    };
    let key =
        PublicKeyComponents { n, e }.to_parsed_public_key(params).map_err(|err| KeyError::Rejected(err.to_string()))?;
    Ok(VerifyMaterial::Public { key, signature_len: n.len() })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Public-key encodings that must never serve as an HMAC secret.
fn looks_like_public_key(secret: &[u8]) -> bool {
    let trimmed = secret.trim_ascii_start();
    [&b"-----BEGIN"[..], b"{", b"ssh-", b"ecdsa-sha2-"].iter().any(|prefix| trimmed.starts_with(prefix))
        || ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, secret).is_ok()
        || ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, secret).is_ok()
}

/// A private key Tessera signs with: RS256, ES256 or EdDSA.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    signer: Signer,
    verifying: VerifyingKey,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key from the OS CSPRNG. `kid` is the RFC 7638 thumbprint.
    ///
    /// # Errors
    /// [`KeyError::Unsupported`] for an algorithm Tessera does not sign with; [`KeyError::Crypto`] if generation fails.
    pub fn generate(alg: Algorithm, rsa_bits: RsaBits) -> Result<Self, KeyError> {
        let signer = match alg {
            Algorithm::RS256 => {
                let size = match rsa_bits {
                    RsaBits::Bits2048 => KeySize::Rsa2048,
                    RsaBits::Bits3072 => KeySize::Rsa3072,
                };
                Signer::Rsa(RsaKeyPair::generate(size).map_err(|_| KeyError::Crypto)?)
            }
            Algorithm::ES256 => Signer::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyError::Crypto)?,
            ),
            Algorithm::EdDSA => Signer::Ed25519(Ed25519KeyPair::generate().map_err(|_| KeyError::Crypto)?),
            other => return Err(KeyError::Unsupported(format!("Tessera does not sign with {other}"))),
        };
        Self::from_signer(alg, signer, None)
    }

    /// Loads a key from its PKCS#8 DER form, as stored by the keyring.
    ///
    /// # Errors
    /// [`KeyError::Rejected`] when the DER is not a key of `alg`'s type.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8], kid: Option<String>) -> Result<Self, KeyError> {
        let rejected = |err: aws_lc_rs::error::KeyRejected| KeyError::Rejected(err.to_string());
        let signer = match alg {
            Algorithm::RS256 => Signer::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
            Algorithm::ES256 => Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(rejected)?,
            ),
            Algorithm::EdDSA => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?),
            other => return Err(KeyError::Unsupported(format!("Tessera does not sign with {other}"))),
        };
        Self::from_signer(alg, signer, kid)
    }

    /// Loads a private key from PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    /// The algorithm follows from the key type (RSA keys sign RS256).
    ///
    /// # Errors
    /// [`KeyError::InvalidPem`] for text that is not PEM; [`KeyError::Rejected`] for an unsupported key inside.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        let rejected = |what: &str| KeyError::Rejected(format!("{what} is not an RSA (2048+), P-256 or Ed25519 key"));
        let signer = match label.as_str() {
            "RSA PRIVATE KEY" => Signer::Rsa(RsaKeyPair::from_der(&der).map_err(|_| rejected("PKCS#1 key"))?),
            "EC PRIVATE KEY" => Signer::Ecdsa(
                EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| rejected("SEC1 key"))?,
            ),
            "PRIVATE KEY" => {
                if let Ok(key) = Ed25519KeyPair::from_pkcs8(&der) {
                    Signer::Ed25519(key)
                } else if let Ok(key) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
                    Signer::Ecdsa(key)
                } else {
                    Signer::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(|_| rejected("PKCS#8 key"))?)
                }
            }
            other => return Err(KeyError::InvalidPem(format!("expected a private key, found {other:?}"))),
        };
        let alg = match signer {
            Signer::Rsa(_) => Algorithm::RS256,
            Signer::Ecdsa(_) => Algorithm::ES256,
            Signer::Ed25519(_) => Algorithm::EdDSA,
        };
        Self::from_signer(alg, signer, None)
    }

    /// Loads a private key from a JWK (`RSA` with all CRT members, `EC` P-256 or `OKP` Ed25519, with `d`).
    ///
    /// # Errors
    /// A [`KeyError`] naming the missing or inconsistent member.
    pub fn from_private_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let verifying = VerifyingKey::from_jwk_members(jwk)?;
        let rejected = |err: aws_lc_rs::error::KeyRejected| KeyError::Rejected(err.to_string());
        let signer = match verifying.alg {
            Algorithm::RS256 => {
                let part = |value: &Option<String>, name| jwk.bytes(value, name);
                let (n, e) = (part(&jwk.n, "n")?, part(&jwk.e, "e")?);
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents { n: n.as_slice(), e: e.as_slice() },
                    d: part(&jwk.d, "d")?,
                    p: part(&jwk.p, "p")?,
                    q: part(&jwk.q, "q")?,
                    dP: part(&jwk.dp, "dp")?,
                    dQ: part(&jwk.dq, "dq")?,
                    qInv: part(&jwk.qi, "qi")?,
                };
                Signer::Rsa(RsaKeyPair::from_components(&components).map_err(rejected)?)
            }
            Algorithm::ES256 => {
                let mut point = vec![0x04];
                point.extend(jwk.bytes(&jwk.x, "x")?);
                point.extend(jwk.bytes(&jwk.y, "y")?);
                let d = jwk.bytes(&jwk.d, "d")?;
                Signer::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &d,
                        &point,
                    )
                    .map_err(rejected)?,
                )
            }
            Algorithm::EdDSA => {
                let (d, x) = (jwk.bytes(&jwk.d, "d")?, jwk.bytes(&jwk.x, "x")?);
                Signer::Ed25519(Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(rejected)?)
            }
            other => return Err(KeyError::Unsupported(format!("Tessera does not sign with {other}"))),
        };
        Self::from_signer(verifying.alg, signer, jwk.kid.clone())
    }

    fn from_signer(alg: Algorithm, signer: Signer, kid: Option<String>) -> Result<Self, KeyError> {
        let mut jwk = match &signer {
            Signer::Rsa(pair) => {
                let public = pair.public_key();
                Jwk {
                    kty: "RSA".into(),
                    n: Some(b64::encode(public.modulus().big_endian_without_leading_zero())),
                    e: Some(b64::encode(public.exponent().big_endian_without_leading_zero())),
                    ..Jwk::default()
                }
            }
            Signer::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..33).zip(point.get(33..65)).ok_or(KeyError::Crypto)?;
                Jwk {
                    kty: "EC".into(),
                    crv: Some("P-256".into()),
                    x: Some(b64::encode(x)),
                    y: Some(b64::encode(y)),
                    ..Jwk::default()
                }
            }
            Signer::Ed25519(pair) => Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64::encode(pair.public_key().as_ref())),
                ..Jwk::default()
            },
        };
        jwk.alg = Some(alg.as_str().into());
        jwk.kid = Some(match kid {
            Some(kid) => kid,
            None => jwk.thumbprint()?,
        });
        let verifying = VerifyingKey::from_jwk_members(&jwk)?;
        Ok(Self { kid: verifying.kid.clone(), alg, signer, verifying })
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half.
    #[must_use]
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The private key as PKCS#8 DER, for storage (encrypted) by the keyring.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the crypto library cannot serialise the key.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, KeyError> {
        let der = match &self.signer {
            Signer::Rsa(pair) => pair.as_der().map_err(|_| KeyError::Crypto)?.as_ref().to_vec(),
            Signer::Ecdsa(pair) => pair.to_pkcs8v1().map_err(|_| KeyError::Crypto)?.as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.to_pkcs8v1().map_err(|_| KeyError::Crypto)?.as_ref().to_vec(),
        };
        Ok(der)
    }

    /// Signs `message`. RS256 and EdDSA are deterministic; ES256 draws a nonce from the OS CSPRNG.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the crypto library fails.
    #[allow(
        clippy::disallowed_methods,
        reason = "the signature's randomness (an ECDSA nonce, RSA blinding) must come from the OS CSPRNG, never an \
                  injected one"
    )]
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rand::SystemRandom::new(), message, &mut signature)
                    .map_err(|_| KeyError::Crypto)?;
                Ok(signature)
            }
            Signer::Ecdsa(pair) => {
                Ok(pair.sign(&rand::SystemRandom::new(), message).map_err(|_| KeyError::Crypto)?.as_ref().to_vec())
            }
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// Decodes one PEM block into its label and DER bytes.
fn decode_pem(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let invalid = |why: &str| KeyError::InvalidPem(why.into());
    let mut lines = pem.lines().map(str::trim).skip_while(|line| line.is_empty());
    let first = lines.next().ok_or_else(|| invalid("empty input"))?;
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_suffix("-----"))
        .ok_or_else(|| invalid("no -----BEGIN line"))?;
    let footer = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == footer {
            let der = base64_simd::STANDARD.decode_to_vec(&body).map_err(|_| invalid("body is not base64"))?;
            return Ok((label.to_owned(), der));
        }
        if line.contains(':') {
            return Err(invalid("encrypted or annotated PEM is not supported"));
        }
        body.push_str(line);
    }
    Err(invalid("no matching -----END line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_characters_and_length_are_bounded() {
        for good in ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "2011-04-29", "bilbo.baggins@hobbiton.example"] {
            assert!(is_acceptable_kid(good), "{good}");
        }
        let long = "a".repeat(MAX_KID_LEN + 1);
        for bad in [
            "",
            "../../dev/null",
            "/dev/null",
            "x' UNION SELECT '1';--",
            "|sleep 10",
            "$(id)",
            "a b",
            "..",
            long.as_str(),
        ] {
            assert!(!is_acceptable_kid(bad), "{bad}");
        }
    }

    #[test]
    fn psychic_scalars_are_out_of_range() {
        assert!(!scalar_in_range(&[0; 32]));
        assert!(!scalar_in_range(&P256_ORDER));
        assert!(!scalar_in_range(&[0xff; 32]));
        let mut below = P256_ORDER;
        below[31] -= 1;
        assert!(scalar_in_range(&below));
        assert!(scalar_in_range(&[&[0u8; 31][..], &[1]].concat()));
    }

    #[test]
    fn generated_keys_round_trip_through_pkcs8() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg, RsaBits::Bits2048).unwrap();
            let again = SigningKey::from_pkcs8(alg, &key.to_pkcs8().unwrap(), None).unwrap();
            assert_eq!(key.kid(), again.kid(), "{alg}");
            let signature = again.sign(b"message").unwrap();
            assert!(key.verifying_key().verify_signature(b"message", &signature), "{alg}");
            assert!(!key.verifying_key().verify_signature(b"messagE", &signature), "{alg}");
        }
    }

    #[test]
    fn hmac_secrets_must_be_long_and_not_public_keys() {
        assert!(matches!(VerifyingKey::hmac("k".into(), &[7; 31]), Err(KeyError::TooWeak(_))));
        let pem = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
        assert!(matches!(VerifyingKey::hmac("k".into(), pem), Err(KeyError::Rejected(_))));
        assert!(VerifyingKey::hmac("k".into(), &[7; 32]).is_ok());
    }

    #[test]
    fn private_members_refused_in_public_jwk() {
        let key = SigningKey::generate(Algorithm::EdDSA, RsaBits::Bits2048).unwrap();
        let mut jwk = key.verifying_key().public_jwk().unwrap().clone();
        jwk.d = Some("AAAA".into());
        assert!(matches!(VerifyingKey::from_public_jwk(&jwk), Err(KeyError::PrivateMaterial { member: "d", .. })));
    }
}
