//! The webhook's TLS: the certificate chain and key (PEM files) loaded at start and reloaded when
//! they change, so that renewing the Secret (cert-manager, or by hand) rotates the certificate
//! without a restart.
//!
//! [`ReloadingCert`] is rustls's certificate resolver: at most once per
//! [`RELOAD_CHECK_INTERVAL`], a TLS handshake re-reads both files; when their bytes differ from
//! what is loaded, the new pair is parsed and, if the key matches the certificate, served from that
//! handshake on. A pair that does not load (half-written files, a key that belongs to another
//! certificate) is logged and the previous pair keeps being served; the next check tries again.
//! Kubernetes updates a Secret volume by swapping a symlink, so both files change at once.

use super::ServeError;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio_rustls::TlsAcceptor;

/// How often a handshake may re-read the certificate and key files.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    checked: Instant,
}

/// A certificate resolver that follows its files (see the module doc).
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    check_every: Duration,
    loaded: Mutex<Loaded>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|e| ServeError::Tls {
        what,
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

impl ReloadingCert {
    /// Loads the pair now (an error names the file and the reason), re-checking the files at most
    /// every `check_every`.
    pub fn load(cert: &Path, key: &Path, check_every: Duration) -> Result<Self, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("key", key)?;
        let certified = parse(cert, &cert_pem, key, &key_pem, &provider)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            check_every,
            loaded: Mutex::new(Loaded {
                key: Arc::new(certified),
                cert_pem,
                key_pem,
                checked: Instant::now(),
            }),
        })
    }

    /// Re-reads the files now: `Ok(true)` when a new pair was loaded, `Ok(false)` when nothing
    /// changed, an error (the old pair stays) when the new files do not load.
    pub fn reload(&self) -> Result<bool, ServeError> {
        let cert_pem = read("certificate", &self.cert)?;
        let key_pem = read("key", &self.key)?;
        {
            let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            if loaded.cert_pem == cert_pem && loaded.key_pem == key_pem {
                return Ok(false);
            }
        }
        let certified = parse(&self.cert, &cert_pem, &self.key, &key_pem, &self.provider)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.key = Arc::new(certified);
        loaded.cert_pem = cert_pem;
        loaded.key_pem = key_pem;
        tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded");
        Ok(true)
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .key
            .clone()
    }

    fn due(&self) -> bool {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() < self.check_every {
            return false;
        }
        loaded.checked = Instant::now();
        true
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.due()
            && let Err(e) = self.reload()
        {
            tracing::warn!(error = %e, "webhook certificate not reloaded; serving the previous one");
        }
        Some(self.current())
    }
}

fn parse(
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ServeError> {
    let cert_error = |detail: String| ServeError::Tls {
        what: "certificate",
        path: cert.to_path_buf(),
        detail,
    };
    let key_error = |detail: String| ServeError::Tls {
        what: "key",
        path: key.to_path_buf(),
        detail,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block".into()));
    }
    let private_key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| key_error(e.to_string()))?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|e| key_error(e.to_string()))
}

/// A TLS acceptor (rustls with ring, HTTP/1.1) serving the PEM certificate chain and key, reloaded
/// when the files change.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let resolver = ReloadingCert::load(cert, key, RELOAD_CHECK_INTERVAL)?;
    acceptor_for(Arc::new(resolver))
}

/// A TLS acceptor over `resolver`.
pub fn acceptor_for(resolver: Arc<ReloadingCert>) -> Result<TlsAcceptor, ServeError> {
    let mut config = rustls::ServerConfig::builder_with_provider(resolver.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls {
            what: "certificate",
            path: resolver.cert.clone(),
            detail: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
