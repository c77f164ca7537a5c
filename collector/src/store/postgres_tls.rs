//! TLS to PostgreSQL through rustls (issue 14): the URL's `sslmode` and `sslrootcert` read as
//! libpq reads them, and a `MakeTlsConnect` for tokio-postgres on tokio-rustls.
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (libpq's default, and ours) | when the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | always | chains to `sslrootcert` (or the system's roots) |
//! | `verify-full` | always | as `verify-ca`, and names the host in the URL |
//!
//! `prefer` and `require` without a root certificate protect only against someone who
//! listens, not against someone in the middle; `verify-full` is the setting to use across a
//! network. Both parameters are taken out of the URL before tokio-postgres parses the rest
//! (it knows only `disable`, `prefer` and `require`, and no `sslrootcert`).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::StoreError;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS always, unverified (verified as `VerifyCa` when a root certificate is given).
    Require,
    /// TLS always, the chain verified.
    VerifyCa,
    /// TLS always, the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A parsed `postgres://` URL: the connection settings and the TLS connector for them.
#[derive(Clone)]
pub struct Connect {
    /// Everything but the TLS settings, as tokio-postgres parsed it (its `ssl_mode` set).
    pub config: tokio_postgres::Config,
    /// The TLS connector.
    pub tls: MakeRustls,
    /// The `sslmode` asked for.
    pub mode: SslMode,
}

/// Parses a `postgres://` URL with libpq's `sslmode` and `sslrootcert`.
///
/// # Errors
/// The URL is malformed, `sslmode` is unknown, or the root certificate file cannot be read or
/// holds no certificate.
pub fn parse(url: &str) -> Result<Connect, StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let decoded = form_urlencoded::parse(pair.as_bytes()).next();
        match decoded.as_ref().map(|(k, v)| (k.as_ref(), v.as_ref())) {
            Some(("sslmode", v)) => {
                mode = Some(SslMode::parse(v).ok_or_else(|| {
                    StoreError::Url(format!(
                        "sslmode={v:?} is not disable, prefer, require, verify-ca or verify-full"
                    ))
                })?);
            }
            Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    let mut config: tokio_postgres::Config =
        rest.parse().map_err(|e: tokio_postgres::Error| StoreError::Url(e.to_string()))?;
    let mode = match (mode.unwrap_or(SslMode::Prefer), &root) {
        // libpq: "require" with a root certificate file verifies the chain.
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (m, _) => m,
    };
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let tls = MakeRustls { config: client_config(mode, root.as_deref())? };
    Ok(Connect { config, tls, mode })
}

/// One connection from a `postgres://` URL, TLS as its `sslmode` says (for tools that need a
/// single client rather than the store's pool).
///
/// # Errors
/// As [`parse`], or connecting failed.
pub async fn connect(
    url: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, RustlsStream<tokio_postgres::Socket>>,
    ),
    StoreError,
> {
    let Connect { config, tls, .. } = parse(url)?;
    Ok(config.connect(tls).await?)
}

/// Why the TLS settings of a PostgreSQL URL cannot be used (inside [`StoreError::Tls`]).
// Each cause is in the message, not in `source()` (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgTlsError {
    /// The `sslrootcert` file could not be read.
    #[error("sslrootcert {}: {error}", path.display())]
    RootRead {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The `sslrootcert` file is not PEM.
    #[error("sslrootcert {}: {error}", path.display())]
    RootPem {
        /// The file.
        path: PathBuf,
        /// Why.
        error: rustls::pki_types::pem::Error,
    },
    /// The `sslrootcert` file holds no certificate.
    #[error("sslrootcert {}: no certificate in the file", path.display())]
    RootEmpty {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the `sslrootcert` file is not a usable trust anchor.
    #[error("sslrootcert {}: {error}", path.display())]
    RootCert {
        /// The file.
        path: PathBuf,
        /// Why.
        error: rustls::Error,
    },
    /// No `sslrootcert` is given and the system has no root certificate.
    #[error("no sslrootcert given and no system root certificate")]
    NoSystemRoots,
    /// rustls refused the configuration.
    #[error("{0}")]
    Rustls(rustls::Error),
    /// The certificate verifier could not be built.
    #[error("{0}")]
    Verifier(rustls::client::VerifierBuilderError),
}

/// The trust roots: the `sslrootcert` file, or the operating system's.
fn roots(root: Option<&std::path::Path>) -> Result<rustls::RootCertStore, StoreError> {
    let mut store = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let path = path.to_owned();
            let pem = crate::config::read_capped(&path).map_err(|error| {
                StoreError::Tls(PgTlsError::RootRead { path: path.clone(), error })
            })?;
            let certs =
                CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(
                    |error| StoreError::Tls(PgTlsError::RootPem { path: path.clone(), error }),
                )?;
            if certs.is_empty() {
                return Err(StoreError::Tls(PgTlsError::RootEmpty { path }));
            }
            for cert in certs {
                store.add(cert).map_err(|error| {
                    StoreError::Tls(PgTlsError::RootCert { path: path.clone(), error })
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed system certificate is skipped, as browsers do.
                let _skipped = store.add(cert);
            }
            if store.is_empty() {
                return Err(StoreError::Tls(PgTlsError::NoSystemRoots));
            }
        }
    }
    Ok(store)
}

#[allow(clippy::disallowed_methods)] // Reason: the one TLS client config for PostgreSQL.
fn client_config(
    mode: SslMode,
    root: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(PgTlsError::Rustls(e)))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Lenient { chain: None, provider })
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| StoreError::Tls(PgTlsError::Verifier(e)))?;
            if mode == SslMode::VerifyCa {
                Arc::new(Lenient { chain: Some(webpki), provider })
            } else {
                webpki
            }
        }
    };
    let config =
        builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate check of libpq's modes that do not verify the server's name: `prefer` and
/// `require` accept any certificate (encryption without checking who answers), `verify-ca`
/// verifies the chain as usual and forgives only a name mismatch. The handshake signatures are
/// checked in every mode.
#[derive(Debug)]
struct Lenient {
    /// `verify-ca`'s chain check; `None` for `prefer` and `require`.
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS factory on tokio-rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // A Unix socket has no host name (and tokio-postgres never asks for TLS over one): the
        // error waits until a handshake is attempted.
        let name = ServerName::try_from(domain.to_owned()).ok();
        Ok(RustlsConnect { connector: Arc::clone(&self.config).into(), name })
    }
}

/// One handshake's connector.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: Option<ServerName<'static>>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "the host is not a DNS name or address")
            })?;
            let tls = self.connector.connect(name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS session to the server.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM-SHA-256 without channel binding; the -PLUS variant would need the hash named
        // by the certificate's signature algorithm.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_and_the_rest_kept() {
        let c =
            parse("postgres://u@localhost:5432/test?sslmode=verify-full&options=-csearch_path%3Dx")
                .unwrap();
        assert_eq!(c.mode, SslMode::VerifyFull);
        assert_eq!(c.config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(c.config.get_options(), Some("-csearch_path=x"));
        let c = parse("postgres://u@localhost/test").unwrap();
        assert_eq!((c.mode, c.config.get_ssl_mode()), (SslMode::Prefer, PgSslMode::Prefer));
        let c = parse("postgres://u@localhost/test?sslmode=disable").unwrap();
        assert_eq!(c.config.get_ssl_mode(), PgSslMode::Disable);
        let err = parse("postgres://u@localhost/test?sslmode=allow").err().unwrap();
        assert!(err.to_string().contains("sslmode=\"allow\""), "{err}");
        let err = parse("postgres://u@localhost/test?sslmode=require&sslrootcert=/nonexistent/ca")
            .err()
            .unwrap();
        assert!(err.to_string().contains("sslrootcert /nonexistent/ca"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["db.example".to_owned()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let c = parse(&format!(
            "postgres://u@localhost/test?sslmode=require&sslrootcert={}",
            path.display()
        ))
        .unwrap();
        assert_eq!(c.mode, SslMode::VerifyCa, "require with a root certificate verifies the chain");
    }
}
