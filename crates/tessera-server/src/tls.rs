//! Optional TLS: rustls (on aws-lc-rs) in front of the same router, HTTP/1.1 and HTTP/2 by ALPN (served by
//! [`crate::listen`], with the same time limits as plain connections and one for the handshake).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file is missing, unreadable or holds no certificate.
    #[error("TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The private key file is missing, unreadable or holds no key.
    #[error("TLS private key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How often, at most, a handshake checks whether the certificate files changed.
const RELOAD_CHECK: Duration = Duration::from_secs(10);

/// A TLS acceptor from PEM files: a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1). The files
/// are read again when they change (checked at most every 10 s, on a handshake), so a renewed certificate —
/// cert-manager, certbot — is served without a restart; a renewal that cannot be loaded is logged and the
/// certificate in service kept.
///
/// # Errors
/// A [`TlsError`] naming the file and the problem.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    acceptor_checking_every(cert_file, key_file, RELOAD_CHECK)
}

/// [`acceptor`], checking the files for changes at most every `interval`.
///
/// # Errors
/// A [`TlsError`] naming the file and the problem.
pub fn acceptor_checking_every(cert_file: &Path, key_file: &Path, interval: Duration) -> Result<TlsAcceptor, TlsError> {
    let files = CertificateFiles {
        cert_file: cert_file.to_owned(),
        key_file: key_file.to_owned(),
        current: ArcSwap::from_pointee(load(cert_file, key_file)?),
        checked: Mutex::new(Checked { at: Instant::now(), stamps: stamps(cert_file, key_file) }),
        interval,
    };
    let mut config = ServerConfig::builder().with_no_client_auth().with_cert_resolver(Arc::new(files));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificate and key read from their files, matched to each other.
fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Certificate { path: cert_file.display().to_string(), reason };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|err| cert_err(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_err(err.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|err| TlsError::Key { path: key_file.display().to_string(), reason: err.to_string() })?;
    let provider = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|err| TlsError::Config(err.to_string()))
}

/// What identifies a version of the two files: their modification times and sizes.
type Stamps = [Option<(SystemTime, u64)>; 2];

fn stamps(cert_file: &Path, key_file: &Path) -> Stamps {
    let stamp = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [stamp(cert_file), stamp(key_file)]
}

struct Checked {
    at: Instant,
    stamps: Stamps,
}

/// The certificate in service, read again from its files when they change.
struct CertificateFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    checked: Mutex<Checked>,
    interval: Duration,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// Reloads when the files changed since the last check (if one is due). Never blocks a handshake behind
    /// another's check: whoever holds the lock checks, the others go on with the certificate in service.
    fn reload_if_changed(&self) {
        let Ok(mut checked) = self.checked.try_lock() else { return };
        if checked.at.elapsed() < self.interval {
            return;
        }
        checked.at = Instant::now();
        let now = stamps(&self.cert_file, &self.key_file);
        if now == checked.stamps {
            return;
        }
        match load(&self.cert_file, &self.key_file) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                checked.stamps = now;
                tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
            }
            // Half-written files (a renewal in progress) or a bad renewal: keep serving the old one, try again
            // at the next check.
            Err(err) => {
                tracing::warn!(error = %err, "TLS certificate changed but cannot be loaded; keeping the old one")
            }
        }
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reload_if_changed();
        Some(self.current.load_full())
    }
}
