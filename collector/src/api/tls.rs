//! The server's TLS: rustls with the ring provider, ALPN h2 and http/1.1, and the
//! self-signed certificate generated into the data dir when none is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::read_capped;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A PEM file could not be parsed, or holds no key.
    #[error("{path}: {error}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        error: rustls::pki_types::pem::Error,
    },
    /// A PEM certificate file holds no certificate.
    #[error("{path}: no certificate")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// rustls refused the certificate or key.
    #[error("tls: {0}")]
    Rustls(rustls::Error),
    /// Certificate generation failed.
    #[error("generating a certificate: {0}")]
    Generate(rcgen::Error),
}

// Not `#[from]`, which would also make the cause the variant's `source()`: its text is in the
// message already (issue 18: each cause once).
impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Rustls(e)
    }
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |error| TlsError::Io { path: path.display().to_string(), error }
}

/// The SHA-256 fingerprint (lowercase hex) of a DER certificate, as agents pin it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    aiscout_signatures::hex::encode(ring::digest::digest(&ring::digest::SHA256, cert).as_ref())
}

/// Loads a PEM chain and key.
///
/// # Errors
/// Unreadable files, no certificate or no key in them.
pub fn load(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_pem = read_capped(cert).map_err(io(cert))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem { path: cert.display().to_string(), error })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.display().to_string() });
    }
    let key_pem = read_capped(key).map_err(io(key))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|error| TlsError::Pem { path: key.display().to_string(), error })?;
    Ok((chain, key_der))
}

/// Loads `cert.pem` and `key.pem` from the data dir, generating them first when absent.
/// Returns the chain, the key and whether they were generated now.
///
/// # Errors
/// The data dir is not writable, or the files are unusable.
#[allow(clippy::disallowed_methods)] // Reason: /etc/hostname, a small system file.
pub fn self_signed(
    data_dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, bool), TlsError> {
    let cert = data_dir.join("cert.pem");
    let key = data_dir.join("key.pem");
    let mut generated = false;
    if !cert.exists() || !key.exists() {
        crate::store::files::private_dir(data_dir).map_err(io(data_dir))?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        if !host.is_empty() {
            names.push(host);
        }
        let certified = rcgen::generate_simple_self_signed(names)?;
        write_private(&key, certified.signing_key.serialize_pem().as_bytes())?;
        write_private(&cert, certified.cert.pem().as_bytes())?;
        generated = true;
    }
    let (chain, key) = load(&cert, &key)?;
    Ok((chain, key, generated))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// The rustls server config: ring provider, TLS 1.2 and 1.3, ALPN h2 then http/1.1.
///
/// # Errors
/// rustls refuses the key or chain.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
