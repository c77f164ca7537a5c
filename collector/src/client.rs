//! A small HTTPS client (HTTP/1.1 or HTTP/2 by ALPN) over one kept-alive connection, for
//! `bench-ingest` and the API tests, and [`fetch`], one request to a URL with its body read
//! up to a cap, which the OpenID Connect sign-in ([`crate::oidc`]) uses to reach the
//! identity provider.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

/// Why a request failed.
// Each wrapped error is in the message and not returned from `source()`, so a report of the
// whole chain names it once (issue 18). hyper's message leaves out its cause (the socket
// error under "connection error"), so it is written with its causes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Io(std::io::Error),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(rustls::Error),
    /// HTTP failed.
    #[error("http: {}", crate::store::causes(.0))]
    Http(hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(hyper::http::Error),
    /// The answer's body is larger than the caller's cap.
    #[error("the response body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// A URL given to [`fetch`] is not `https://HOST[:PORT]/...` or its host did not resolve.
    #[error("url: {0}")]
    Url(String),
    /// The host name did not resolve.
    #[error("url: resolving {host}: {error}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        error: std::io::Error,
    },
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<rustls::Error> for ClientError {
    fn from(e: rustls::Error) -> Self {
        Self::Tls(e)
    }
}

impl From<hyper::Error> for ClientError {
    fn from(e: hyper::Error) -> Self {
        Self::Http(e)
    }
}

impl From<hyper::http::Error> for ClientError {
    fn from(e: hyper::http::Error) -> Self {
        Self::Request(e)
    }
}

/// An answer: status, headers, and the whole body.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers (`set-cookie` may repeat).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One connection to the collector.
pub struct Connection {
    sender: Sender,
    authority: String,
}

/// A TLS client config trusting exactly `roots`, offering h2 when `http2`.
///
/// # Errors
/// A root certificate is unusable.
pub fn tls_config(
    roots: &[CertificateDer<'static>],
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone())?;
    }
    tls_config_for(store, http2)
}

/// A TLS client config trusting the operating system's roots plus `extra` (an internal CA,
/// say), offering h2 when `http2`. A malformed system certificate is skipped, as browsers do.
///
/// # Errors
/// A certificate in `extra` is unusable, or no root at all could be loaded.
pub fn tls_config_with_system_roots(
    extra: &[CertificateDer<'static>],
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let native = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    for cert in native.certs {
        // A malformed system certificate is skipped, as browsers do.
        let _skipped = store.add(cert);
    }
    for cert in extra {
        store.add(cert.clone())?;
    }
    if store.is_empty() {
        let why =
            native.errors.first().map_or_else(|| "empty store".to_owned(), ToString::to_string);
        return Err(ClientError::Tls(rustls::Error::General(format!(
            "no trusted root certificate: {why}"
        ))));
    }
    tls_config_for(store, http2)
}

#[allow(clippy::disallowed_methods)] // Reason: the collector's one TLS client config for HTTPS.
fn tls_config_for(
    store: rustls::RootCertStore,
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = if http2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(config))
}

impl Connection {
    /// Connects over TLS, verifying the server as `server_name`.
    ///
    /// # Errors
    /// TCP, TLS or HTTP handshake failure.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
        let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(Self { sender, authority: format!("{server_name}:{}", addr.port()) })
    }

    /// Connects without TLS, speaking HTTP/1.1, sending `authority` as the `host` header. Only
    /// for loopback relays and tests: the pull connectors accept `http://` for a loopback host
    /// only (checked by their configuration).
    ///
    /// # Errors
    /// TCP or HTTP handshake failure.
    pub async fn connect_plain(addr: SocketAddr, authority: String) -> Result<Self, ClientError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Self { sender: Sender::H1(sender), authority })
    }

    /// Sends `authority` (`HOST[:PORT]` as the URL wrote it) as the `host` header from now on.
    pub fn set_authority(&mut self, authority: String) {
        self.authority = authority;
    }

    /// Whether the connection speaks HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// Sends one request and reads the whole answer.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut req = Request::builder().method(method).header("content-type", "application/json");
        req = match &self.sender {
            Sender::H1(_) => req.uri(path).header("host", &self.authority),
            Sender::H2(_) => req.uri(format!("https://{}{path}", self.authority)),
        };
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let req = req.body(Full::new(body.into()))?;
        let response = self.round_trip(req).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends one request with the given headers (no others are added but `host`) and reads
    /// the answer, its body up to `max_body_bytes`.
    ///
    /// # Errors
    /// The connection failed, or the body is larger than `max_body_bytes`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: impl Into<Bytes>,
        max_body_bytes: usize,
    ) -> Result<Response, ClientError> {
        let mut req = Request::builder().method(method);
        req = match &self.sender {
            Sender::H1(_) => req.uri(path).header("host", &self.authority),
            Sender::H2(_) => req.uri(format!("https://{}{path}", self.authority)),
        };
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body.into()))?;
        let response = self.round_trip(req).await?;
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => match e.downcast::<hyper::Error>() {
                Ok(e) => return Err(ClientError::Http(*e)),
                Err(_) => return Err(ClientError::BodyTooLarge { limit: max_body_bytes }),
            },
        };
        Ok(Response { status: parts.status, headers: parts.headers, body })
    }

    async fn round_trip(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        Ok(response)
    }
}

/// Sends one request to an `https://` URL (or `http://` to a loopback host) over a fresh connection (the host resolved by the
/// system resolver, each address tried in turn) and reads the answer, its body up to
/// `max_body_bytes`. Redirects are not followed. The caller bounds the time taken.
///
/// # Errors
/// The URL is not `https://HOST[:PORT]/...`, the host does not resolve, or connecting,
/// TLS, HTTP or the body cap failed.
pub async fn fetch(
    tls: Arc<rustls::ClientConfig>,
    method: Method,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: impl Into<Bytes>,
    max_body_bytes: usize,
) -> Result<Response, ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::Url("not a URL".into()))?;
    let plain = match uri.scheme_str() {
        Some("https") => false,
        // Local relays and tests: plain HTTP to this machine only.
        Some("http") if matches!(uri.host(), Some("127.0.0.1" | "[::1]" | "localhost")) => true,
        _ => return Err(ClientError::Url("not an https URL".into())),
    };
    let authority = uri.authority().ok_or_else(|| ClientError::Url("no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(ClientError::Url("user information in the URL".into()));
    }
    let port = authority.port_u16().unwrap_or(if plain { 80 } else { 443 });
    // The TLS name of an IPv6 literal is the address without its brackets.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|error| ClientError::Resolve { host: host.clone(), error })?
        .collect();
    let mut last = ClientError::Url(format!("{host} has no address"));
    for addr in addrs {
        let connected = if plain {
            Connection::connect_plain(addr, authority.as_str().to_owned()).await
        } else {
            Connection::connect(addr, &host, Arc::clone(&tls)).await
        };
        match connected {
            Ok(mut connection) => {
                // The Host header carries the port only when the URL did.
                connection.authority = authority.as_str().to_owned();
                return connection
                    .request(method, &path, headers, body.into(), max_body_bytes)
                    .await;
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
