//! A small HTTPS client (HTTP/1.1 or HTTP/2 by ALPN) over one kept-alive connection, for
//! `bench-ingest` and the API tests. Not used by the server.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// HTTP failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
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
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
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
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let (status, _, bytes) = self.request(method, path, &headers, body).await?;
        Ok((status, bytes))
    }

    /// Sends one request with the given headers and reads the whole answer, with its headers.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ClientError> {
        let mut req = Request::builder().method(method);
        req = match &self.sender {
            Sender::H1(_) => req.uri(path).header("host", &self.authority),
            Sender::H2(_) => req.uri(format!("https://{}{path}", self.authority)),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into()))?;
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
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, headers, bytes))
    }
}
