//! Talking to the collector: enrollment, sighting batches, heartbeats and catalog downloads
//! over HTTPS (`/api/v1`, the `aiscout-wire` contract).
//!
//! Every call opens a fresh TLS connection (an agent calls about once a minute, so keeping a
//! connection buys little and costs a socket and a timer on ten thousand laptops), with a
//! connect and an overall deadline and a cap on the response body. Errors say whether a retry
//! can help ([`UploadError::retryable`]); [`Backoff`] spaces the retries.

pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use aiscout_wire::{
    AgentInfo, BatchAck, DeviceIdentity, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck,
    Secret, Sighting, SightingBatch,
};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::spool::{Batch, SpoolError};

/// The largest answer read (the catalog artifact is the biggest, a few hundred kilobytes).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Deadline for one whole call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call failed.
// Typed causes are in the message and not returned from `source()`, so a report of the whole
// chain names each once (issue 18).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The collector URL is unusable.
    #[error("collector URL {0:?} is not https://host[:port]")]
    BadUrl(String),
    /// TCP, TLS or HTTP failed.
    #[error("cannot reach the collector: {0}")]
    Transport(TransportError),
    /// The collector did not answer within [`CALL_TIMEOUT`].
    #[error("cannot reach the collector: no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    /// The collector refused the node key (or enroll secret).
    #[error("the collector refused our credentials (401)")]
    Unauthorized,
    /// The collector is rate limiting this agent.
    #[error("the collector asked us to slow down (429)")]
    RateLimited,
    /// The collector answered with an error status.
    #[error("the collector answered {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The answer was not the JSON the contract promises.
    #[error("the collector's answer is malformed: {0}")]
    Malformed(serde_json::Error),
    /// The collector acknowledged another batch than the one sent.
    #[error("the collector's answer is malformed: acknowledged {acked} for batch {sent}")]
    WrongBatch {
        /// The batch id in the acknowledgement.
        acked: String,
        /// The batch id sent.
        sent: String,
    },
    /// A request could not be encoded as JSON.
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    /// The system random generator failed (making a node key).
    #[error("the system random generator failed")]
    Random,
    /// The local spool refused to cut or acknowledge a batch (a full disk, issue 14 item 8):
    /// nothing is wrong with the collector, and the upload is retried on the storage backoff.
    #[error("the spool refused: {0}")]
    Spool(SpoolError),
    /// A spool operation did not finish (it panicked, now or earlier, or the runtime is
    /// stopping): retried on the storage backoff like [`UploadError::Spool`].
    #[error("the spool refused: {0}")]
    SpoolTask(SpoolTaskError),
}

/// Why a call's connection or exchange failed (inside [`UploadError::Transport`]).
// Library errors whose message leaves out their cause (hyper's) show the whole chain, and
// `source()` returns nothing (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TCP connection failed.
    #[error("{0}")]
    Connect(std::io::Error),
    /// The collector host is not a valid TLS server name.
    #[error("{0}")]
    ServerName(rustls::pki_types::InvalidDnsNameError),
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(std::io::Error),
    /// The HTTP exchange failed.
    #[error("{}", crate::telemetry::error_chain(.0))]
    Http(hyper::Error),
    /// The request could not be built.
    #[error("{0}")]
    Request(hyper::http::Error),
    /// The answer could not be read whole (or exceeded [`MAX_RESPONSE_BYTES`]).
    #[error("{}", crate::telemetry::error_chain(&**.0))]
    Body(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a spool operation run for an upload did not finish (inside [`UploadError::SpoolTask`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolTaskError {
    /// An earlier operation panicked while holding the spool.
    #[error("lock poisoned")]
    Poisoned,
    /// The operation panicked or was cancelled.
    #[error("{0}")]
    Join(tokio::task::JoinError),
}

impl UploadError {
    /// Whether trying again later can succeed: network trouble, rate limits and server errors
    /// can; a request the collector calls malformed cannot.
    pub fn retryable(&self) -> bool {
        match self {
            UploadError::Transport(_)
            | UploadError::Timeout(_)
            | UploadError::RateLimited
            | UploadError::Unauthorized
            | UploadError::Spool(_)
            | UploadError::SpoolTask(_) => true,
            UploadError::Status { status, .. } => *status >= 500,
            UploadError::BadUrl(_)
            | UploadError::Malformed(_)
            | UploadError::WrongBatch { .. }
            | UploadError::Encode(_)
            | UploadError::Random => false,
        }
    }

    /// Whether the local spool failed rather than the collector or the network: such an
    /// upload is retried on the storage backoff.
    pub fn is_spool(&self) -> bool {
        matches!(self, UploadError::Spool(_) | UploadError::SpoolTask(_))
    }
}

/// The collector's address, parsed once.
#[derive(Clone, Debug)]
pub struct Client {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client for `url` (`https://host[:port]`) with a TLS configuration from [`tls`].
    ///
    /// # Errors
    /// [`UploadError::BadUrl`].
    pub fn new(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, UploadError> {
        let bad = || UploadError::BadUrl(url.to_owned());
        let rest = url.strip_prefix("https://").ok_or_else(bad)?.trim_end_matches('/');
        if rest.contains('/') || rest.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None => 443,
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (rest.to_owned(), 443),
            }
        };
        Ok(Self { host, port, tls })
    }

    /// One call: `method path` with an optional JSON body and bearer credential.
    ///
    /// # Errors
    /// See [`UploadError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&Secret>,
        body: Vec<u8>,
    ) -> Result<Bytes, UploadError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method, path, bearer, body)).await
        {
            Ok(result) => result,
            Err(_) => Err(UploadError::Timeout(CALL_TIMEOUT)),
        }
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&Secret>,
        body: Vec<u8>,
    ) -> Result<Bytes, UploadError> {
        use TransportError as T;
        let transport = |e: TransportError| UploadError::Transport(e);
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| transport(T::Connect(e)))?;
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| transport(T::ServerName(e)))?;
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| transport(T::Tls(e)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(T::Http(e)))?;
        let driver = tokio::spawn(conn);
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("aiscout-agent/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(b) = bearer {
            request =
                request.header(hyper::header::AUTHORIZATION, format!("Bearer {}", b.expose()));
        }
        let request =
            request.body(Full::new(Bytes::from(body))).map_err(|e| transport(T::Request(e)))?;
        let response = sender.send_request(request).await.map_err(|e| transport(T::Http(e)))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| transport(T::Body(e)))?
            .to_bytes();
        driver.abort();
        match status {
            s if s.is_success() => Ok(bytes),
            StatusCode::UNAUTHORIZED => Err(UploadError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(UploadError::RateLimited),
            s => Err(UploadError::Status {
                status: s.as_u16(),
                body: String::from_utf8_lossy(
                    bytes.get(..bytes.len().min(300)).unwrap_or_default(),
                )
                .into_owned(),
            }),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&Secret>,
        body: Vec<u8>,
    ) -> Result<T, UploadError> {
        let bytes = self.call(method, path, bearer, body).await?;
        serde_json::from_slice(&bytes).map_err(UploadError::Malformed)
    }

    /// Trades the enroll secret for a node key.
    ///
    /// # Errors
    /// See [`UploadError`].
    pub async fn enroll(
        &self,
        secret: &Secret,
        device: DeviceIdentity,
        previous_node_key: Option<&Secret>,
        proposed_node_key: Option<&Secret>,
    ) -> Result<Secret, UploadError> {
        let body = to_json(&EnrollRequest {
            enroll_secret: secret.clone(),
            device,
            previous_node_key: previous_node_key.cloned(),
            proposed_node_key: proposed_node_key.cloned(),
        })?;
        let answer: EnrollResponse =
            self.json(Method::POST, aiscout_wire::routes::ENROLL, None, body).await?;
        Ok(answer.node_key)
    }

    /// Sends one spool batch; returns the collector's acknowledgement, which names the batch.
    ///
    /// # Errors
    /// See [`UploadError`]; an acknowledgement for another batch id is [`UploadError::WrongBatch`].
    pub async fn send_batch(
        &self,
        node_key: &Secret,
        agent: &AgentInfo,
        batch: &Batch,
    ) -> Result<BatchAck, UploadError> {
        let wire = SightingBatch {
            batch_id: batch.id.clone(),
            agent: agent.clone(),
            sightings: batch.records.iter().map(to_wire).collect(),
            dropped: batch.dropped,
            evicted: batch.evicted,
        };
        let body = to_json(&wire)?;
        let ack: BatchAck =
            self.json(Method::POST, aiscout_wire::routes::SIGHTINGS, Some(node_key), body).await?;
        if ack.batch_id != batch.id {
            return Err(UploadError::WrongBatch { acked: ack.batch_id, sent: batch.id.clone() });
        }
        Ok(ack)
    }

    /// Reports health.
    ///
    /// # Errors
    /// See [`UploadError`].
    pub async fn heartbeat(
        &self,
        node_key: &Secret,
        heartbeat: &Heartbeat,
    ) -> Result<HeartbeatAck, UploadError> {
        let body = to_json(heartbeat)?;
        self.json(Method::POST, aiscout_wire::routes::HEARTBEAT, Some(node_key), body).await
    }

    /// Downloads the signed catalog artifact (verified by the caller before any use).
    ///
    /// # Errors
    /// See [`UploadError`].
    pub async fn catalog(&self, node_key: &Secret) -> Result<Bytes, UploadError> {
        self.call(Method::GET, aiscout_wire::routes::CATALOG, Some(node_key), Vec::new()).await
    }

    /// Fetches the organisation overlay artifact (unverified bytes).
    ///
    /// # Errors
    /// As [`Client::catalog`].
    pub async fn overlay(&self, node_key: &Secret) -> Result<Bytes, UploadError> {
        self.call(Method::GET, aiscout_wire::routes::OVERLAY, Some(node_key), Vec::new()).await
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, UploadError> {
    serde_json::to_vec(value).map_err(UploadError::Encode)
}

/// A spool record as the wire carries it.
fn to_wire(r: &crate::spool::Record) -> Sighting {
    Sighting {
        product: r.product.clone(),
        kind: r.kind,
        value: r.value.clone(),
        user: r.user.clone(),
        process: r.process.clone(),
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        count: r.count.max(1),
        window: r.window,
        removed: r.removed,
        flags: r.flags.clone(),
    }
}

/// Exponential backoff with full jitter, capped: 1 s, 2 s, 4 s ... up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    attempt: u32,
    max: Duration,
}

/// A fresh node key to propose at enrollment: `aisnk_` and 32 bytes from the system random
/// generator in lowercase hex (the shape [`aiscout_wire::is_node_key_shaped`] accepts).
///
/// # Errors
/// The system random generator failed.
pub fn new_node_key() -> Result<Secret, UploadError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| UploadError::Random)?;
    let mut key = String::with_capacity(70);
    key.push_str(aiscout_wire::NODE_KEY_PREFIX);
    for b in bytes {
        use std::fmt::Write as _;
        let _infallible = write!(key, "{b:02x}");
    }
    Ok(Secret::new(key))
}

impl Backoff {
    /// A backoff capped at `max`.
    pub fn new(max: Duration) -> Self {
        Self { attempt: 0, max }
    }

    /// The delay before the next retry: uniformly random up to the current ceiling, so ten
    /// thousand agents that lost the collector together do not return together.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = Duration::from_secs(1u64 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let mut bytes = [0u8; 8];
        use ring::rand::SecureRandom as _;
        let fraction = match ring::rand::SystemRandom::new().fill(&mut bytes) {
            Ok(()) => (u64::from_le_bytes(bytes) % 1_000) as f64 / 1_000.0,
            Err(_) => 0.5,
        };
        ceiling.mul_f64(fraction.max(0.05))
    }

    /// After a success: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<Client, UploadError> {
        let tls = tls::client_config(&crate::config::TrustAnchor::Pin([0; 32])).expect("tls");
        Client::new(url, tls)
    }

    #[test]
    fn removal_records_carry_the_flag_on_the_wire_and_presence_omits_it() {
        let removed = crate::spool::Installed {
            product: "anysphere.cursor".into(),
            kind: aiscout_wire::SightingKind::App,
            value: "com.todesktop.230313mzl4w4u92".into(),
            user: Some("alice".into()),
        }
        .removal(aiscout_wire::UnixSecs(1_735_694_100), aiscout_wire::UnixSecs(1_735_693_200));
        let wire = to_wire(&removed);
        assert!(wire.removed);
        assert_eq!(
            (wire.count, wire.first_seen, wire.last_seen),
            (1, aiscout_wire::UnixSecs(1_735_694_100), aiscout_wire::UnixSecs(1_735_694_100))
        );
        let json = serde_json::to_value(&wire).expect("json");
        assert_eq!(json["removed"], serde_json::Value::Bool(true));
        let present = crate::spool::Record { removed: false, ..removed };
        let json = serde_json::to_value(to_wire(&present)).expect("json");
        assert!(json.get("removed").is_none(), "{json}");
    }

    #[test]
    fn collector_urls() {
        let c = client("https://collector.example:8443/").expect("url");
        assert_eq!((c.host.as_str(), c.port), ("collector.example", 8443));
        let c = client("https://[::1]:9000").expect("v6");
        assert_eq!((c.host.as_str(), c.port), ("::1", 9000));
        assert_eq!(client("https://h").expect("default port").port, 443);
        assert!(client("http://h").is_err());
        assert!(client("https://h/path").is_err());
        assert!(client("https://h:notaport").is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(30));
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
        assert!(delays[0] <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn retryable_errors() {
        assert!(UploadError::Timeout(CALL_TIMEOUT).retryable());
        assert!(UploadError::Status { status: 503, body: String::new() }.retryable());
        assert!(!UploadError::Status { status: 400, body: String::new() }.retryable());
        let malformed = serde_json::from_slice::<BatchAck>(b"{").expect_err("not JSON");
        assert!(!UploadError::Malformed(malformed).retryable());
    }
}
