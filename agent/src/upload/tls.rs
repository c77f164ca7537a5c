//! The one place the agent builds a TLS client configuration (STYLE.md: "use upload::tls").
//!
//! rustls only, TLS 1.2 minimum (rustls speaks nothing older), no plaintext fallback and no
//! option to skip verification. The collector is trusted one of three ways, from the config:
//! - a CA file: certificates chaining to it, for the collector's host name;
//! - a SHA-256 pin of the collector's certificate: exactly that certificate, whatever signed it
//!   (the generated self-signed certificate of a fresh collector is pinned this way). The
//!   handshake signature is still verified with the certificate's key, so a pin cannot be
//!   satisfied by someone who only has the certificate;
//! - the system root store, when neither is configured.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::TrustAnchor;

/// Why a TLS configuration could not be built.
// Typed causes are in the message and not returned from `source()` (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file could not be read or parsed.
    #[error("CA file {path}: {error}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        error: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate.
    #[error("CA file {path}: no certificate in the file")]
    CaFileEmpty {
        /// The file.
        path: String,
    },
    /// The system root store could not be read, and gave no certificate.
    #[error("no usable system root certificates: {error}")]
    SystemRoots {
        /// The first problem reading it.
        error: rustls_native_certs::Error,
    },
    /// The system root store holds no certificate.
    #[error("no usable system root certificates: empty store")]
    NoSystemRoots,
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for talking to the collector.
///
/// # Errors
/// See [`TlsError`].
#[allow(clippy::disallowed_methods)] // Reason: this is the agent's one TLS client config.
pub fn client_config(trust: &TrustAnchor) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let config = match trust {
        TrustAnchor::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let ca_file = |error| TlsError::CaFile { path: path.display().to_string(), error };
            for cert in CertificateDer::pem_file_iter(path).map_err(ca_file)? {
                roots.add(cert.map_err(ca_file)?)?;
            }
            if roots.is_empty() {
                return Err(TlsError::CaFileEmpty { path: path.display().to_string() });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TrustAnchor::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
        TrustAnchor::SystemRoots => {
            let native = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            for cert in native.certs {
                // A malformed system certificate is skipped, as browsers do.
                let _ignored = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(match native.errors.into_iter().next() {
                    Some(error) => TlsError::SystemRoots { error },
                    None => TlsError::NoSystemRoots,
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly the certificate whose SHA-256 is pinned.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        // The pin and the certificate are both public: a plain comparison leaks nothing.
        if digest.as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
