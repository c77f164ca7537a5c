//! Connections: the accept loop, the TLS handshake and the limits that keep slow, idle or
//! numerous clients from holding the server (issue 14).
//!
//! Every accepted connection takes a slot, counted in all and per source address, before
//! anything is read from it. A connection beyond either cap is answered `503 Service
//! Unavailable` (`Connection: close`) by a small bounded pool of refusers, or closed at once
//! when that pool is busy too; the accept loop itself never waits for a slot, so a flood of
//! half-open connections cannot stop the next client from being accepted. A slot is held until
//! its connection ends, and each step of a connection has its own deadline: the TLS
//! handshake (`handshake_timeout`), the request headers (`header_timeout`) and silence
//! between requests (`idle_timeout`: no request traffic read or written, after which the
//! connection is shut down gracefully, so a request in progress still gets its answer).
//! Request traffic is any byte on HTTP/1; on HTTP/2 it is only the frames of requests and
//! responses (HEADERS, CONTINUATION and DATA, on a stream), so a client that sends nothing but
//! PINGs, SETTINGS or WINDOW_UPDATEs, and the server's acknowledgements of them, does not keep
//! a connection open (issue 14).
//!
//! The header deadline holds for both protocols. The first request must arrive within
//! `header_timeout` of the handshake; after it, hyper's HTTP/1 header timer covers each next
//! request, and for HTTP/2 the bytes read are followed frame by frame (`H2Frames`) so that
//! a header block (a HEADERS frame and its CONTINUATIONs, which nothing else may interleave)
//! still open `header_timeout` after it began closes the connection. A client that sends the
//! preface and then dribbles a header block, or pings, can therefore not hold a slot
//! (issue 14). HTTP/2 also gets a cap on concurrent streams and on a header list's size.
//!
//! The slot table is the only shared state: a map from address to open connections that
//! holds only addresses with a connection open, so it is bounded by `max_connections`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections being refused (answered 503) at once; beyond it a refused connection is
/// closed without an answer.
const MAX_REFUSING: usize = 256;
/// How often an open connection checks its deadlines, as a fraction of the shorter of
/// `idle_timeout` and `header_timeout` (a connection closes between one and 1 + 1/`CHECKS`
/// of its deadline).
const CHECKS: u32 = 4;
/// Most HTTP/2 streams a client may have open on one connection.
const H2_MAX_STREAMS: u32 = 100;
/// Largest HTTP/2 header list (decoded) a request may carry, as HTTP/1's default cap.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// The HTTP/2 connection preface a client sends first (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// `Activity::headers_ms` when no request's headers are awaited.
const NO_HEADERS: u64 = u64::MAX;

/// Connection limits and timeouts (`[server]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (HTTP/1 and HTTP/2), and to
    /// send its first request after the handshake.
    pub header_timeout: Duration,
    /// How long a connection may stay without request traffic (see the module doc) before it
    /// is shut down.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: u32,
    /// Most connections open at once from one source address.
    pub max_connections_per_ip: u32,
    /// Most file imports processed at once.
    pub max_imports: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            // Agents behind one NAT share an address, so this is a share of the total rather
            // than a handful.
            max_connections_per_ip: 1024,
            max_imports: 2,
        }
    }
}

/// Connection counters, shared by the accept loop and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted and given a slot.
    pub accepted: AtomicU64,
    /// Connections holding a slot now.
    pub open: AtomicU64,
    /// Connections refused because all slots were taken.
    pub refused_total: AtomicU64,
    /// Connections refused because their address had all its slots.
    pub refused_per_ip: AtomicU64,
    /// TLS handshakes that did not finish in time.
    pub handshake_timeouts: AtomicU64,
    /// Connections shut down after `idle_timeout` without request traffic.
    pub idle_closed: AtomicU64,
    /// Connections closed because a request's headers (or the first request) did not arrive
    /// within `header_timeout` (HTTP/1 header timeouts inside hyper are not counted).
    pub header_timeouts: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One open connection in [`Counters::open`], until dropped.
struct Open(Arc<Counters>);

impl Open {
    fn new(counters: &Arc<Counters>) -> Self {
        count(&counters.open);
        Open(Arc::clone(counters))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Full {
    /// Its source address has `max_connections_per_ip` open.
    Address,
    /// `max_connections` are open.
    Total,
}

#[derive(Debug, Default)]
struct Table {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// The slot table (see the module doc).
#[derive(Clone, Debug, Default)]
struct Slots(Arc<Mutex<Table>>);

/// One connection's slot, given back on drop.
struct Slot {
    slots: Slots,
    ip: IpAddr,
}

impl Slots {
    fn take(&self, ip: IpAddr, limits: &Limits) -> Result<Slot, Full> {
        // A poisoned lock only means another connection's task panicked mid-update of two
        // integers; the counts are still the best we have.
        let mut t = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if t.total >= limits.max_connections {
            return Err(Full::Total);
        }
        let n = t.per_ip.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip {
            return Err(Full::Address);
        }
        *n += 1;
        t.total += 1;
        Ok(Slot { slots: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.total = t.total.saturating_sub(1);
        if let Some(n) = self.ip_count(&mut t) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Slot {
    fn ip_count<'t>(&self, t: &'t mut Table) -> Option<&'t mut u32> {
        t.per_ip.get_mut(&self.ip)
    }
}

/// The time of the last request traffic read or written (see the module doc), and since when
/// a request's headers are awaited, in milliseconds since `start`.
#[derive(Clone, Debug)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
    /// When the headers now awaited began (the handshake, for the first request, or a
    /// header block's first byte); [`NO_HEADERS`] when none are awaited.
    headers_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            headers_ms: Arc::new(AtomicU64::new(NO_HEADERS)),
        }
    }

    fn now_ms(&self) -> u64 {
        // Below NO_HEADERS for 584 million years.
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NO_HEADERS - 1)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Headers are awaited from now, unless they already were.
    fn headers_begin(&self) {
        let now = self.now_ms();
        let _already =
            self.headers_ms.compare_exchange(NO_HEADERS, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The awaited headers arrived.
    fn headers_done(&self) {
        self.headers_ms.store(NO_HEADERS, Ordering::Relaxed);
    }

    /// How long the headers now awaited have been awaited.
    fn headers_for(&self) -> Option<Duration> {
        let since = self.headers_ms.load(Ordering::Relaxed);
        (since != NO_HEADERS)
            .then(|| self.start.elapsed().saturating_sub(Duration::from_millis(since)))
    }
}

/// Where an [`H2Frames`] reader is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum H2State {
    /// Matching the client preface; this many bytes of it seen.
    Preface(usize),
    /// Not HTTP/2 (the preface did not match): nothing more to follow.
    Other,
    /// Reading a frame header; this many of its 9 bytes seen.
    FrameHeader(usize),
    /// Skipping a frame's payload: this many bytes left, whether the frame ends a header
    /// block, and whether it is request traffic.
    Payload { left: u32, ends_headers: bool, request: bool },
}

/// Follows the frames one side sends on an HTTP/2 connection (RFC 9113 section 4.1: a 24-bit
/// length, a type, flags, a 31-bit stream id, then the payload) to tell
/// - which bytes are request traffic: those of a DATA (type 0), HEADERS (1) or CONTINUATION
///   (9) frame on a stream (id not 0), that is a request or response being sent. Other frames
///   do not count: PING, SETTINGS, GOAWAY and connection WINDOW_UPDATEs are about the
///   connection, and PRIORITY, RST_STREAM and stream WINDOW_UPDATEs may name a closed stream,
///   so a client could send them forever without asking anything;
/// - for the client's frames, when a header block is open: from the frame header of a HEADERS
///   frame to the last payload byte of the HEADERS or CONTINUATION frame carrying END_HEADERS
///   (flag 4).
///
/// It reads nothing it is not given and keeps nine bytes, so it cannot be made to allocate or
/// stall.
#[derive(Debug)]
struct H2Frames {
    state: H2State,
    header: [u8; 9],
    /// Whether these are the client's frames (whose header blocks are followed).
    client: bool,
}

impl H2Frames {
    /// Follows what a client sends: the preface, which tells HTTP/2 from HTTP/1, then frames.
    fn new() -> Self {
        H2Frames { state: H2State::Preface(0), header: [0; 9], client: true }
    }

    /// Follows what the server sends on an HTTP/2 connection: frames from the first byte.
    fn from_server() -> Self {
        H2Frames { state: H2State::FrameHeader(0), header: [0; 9], client: false }
    }

    /// Whether the client preface has been seen: frames follow.
    fn is_h2(&self) -> bool {
        matches!(self.state, H2State::FrameHeader(_) | H2State::Payload { .. })
    }

    /// Whether the connection is not HTTP/2 (the client preface did not match).
    fn is_other(&self) -> bool {
        self.state == H2State::Other
    }

    /// Follows `bytes`, the next bytes sent, telling `activity` of request traffic and, for
    /// the client's frames, when a header block opens and closes.
    fn feed(&mut self, mut bytes: &[u8], activity: &Activity) {
        while !bytes.is_empty() {
            match self.state {
                H2State::Other => return,
                H2State::Preface(seen) => {
                    let n = bytes.len().min(H2_PREFACE.len() - seen);
                    if bytes[..n] != H2_PREFACE[seen..seen + n] {
                        self.state = H2State::Other;
                        return;
                    }
                    bytes = &bytes[n..];
                    self.state = if seen + n == H2_PREFACE.len() {
                        H2State::FrameHeader(0)
                    } else {
                        H2State::Preface(seen + n)
                    };
                }
                H2State::FrameHeader(seen) => {
                    let n = bytes.len().min(9 - seen);
                    self.header[seen..seen + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if seen + n < 9 {
                        self.state = H2State::FrameHeader(seen + n);
                        continue;
                    }
                    let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = self.header;
                    let left = u32::from_be_bytes([0, l0, l1, l2]);
                    // The top bit of the stream id is reserved.
                    let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
                    let request = matches!(kind, 0 | 1 | 9) && stream != 0;
                    if request {
                        activity.touch();
                    }
                    let ends_headers = self.client && matches!(kind, 1 | 9) && flags & 4 != 0;
                    if self.client && kind == 1 {
                        activity.headers_begin();
                    }
                    self.state = H2State::Payload { left, ends_headers, request };
                    self.end_of_payload(activity);
                }
                H2State::Payload { left, ends_headers, request } => {
                    let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX).min(left);
                    bytes = &bytes[n as usize..];
                    if request && n > 0 {
                        activity.touch();
                    }
                    self.state = H2State::Payload { left: left - n, ends_headers, request };
                    self.end_of_payload(activity);
                }
            }
        }
    }

    /// Moves on to the next frame once a payload is read, closing a header block it ends.
    fn end_of_payload(&mut self, activity: &Activity) {
        if let H2State::Payload { left: 0, ends_headers, .. } = self.state {
            if ends_headers {
                activity.headers_done();
            }
            self.state = H2State::FrameHeader(0);
        }
    }
}

/// An IO stream that records when it last moved request traffic (see the module doc), and
/// follows HTTP/2 header blocks.
struct Watched<T> {
    inner: T,
    activity: Activity,
    /// What the client sends.
    received: H2Frames,
    /// What the server sends, followed only on HTTP/2.
    sent: H2Frames,
}

impl<T> Watched<T> {
    fn new(inner: T, activity: &Activity) -> Self {
        Watched {
            inner,
            activity: activity.clone(),
            received: H2Frames::new(),
            sent: H2Frames::from_server(),
        }
    }

    /// Notes `bytes` read from the client.
    fn note_read(&mut self, bytes: &[u8]) {
        self.received.feed(bytes, &self.activity);
        // Before and without the HTTP/2 preface every byte is traffic.
        if !self.received.is_h2() {
            self.activity.touch();
        }
    }

    /// Notes `bytes` written to the client. The server writes nothing before it has read a
    /// request or the whole HTTP/2 preface, so `sent` sees every HTTP/2 frame from the first.
    fn note_written(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.received.is_other() {
            self.activity.touch();
        } else {
            self.sent.feed(bytes, &self.activity);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.note_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.note_written(&buf[..n.min(buf.len())]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            // The first `n` bytes of `bufs`, in order.
            let mut left = n;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let part = left.min(buf.len());
                self.note_written(&buf[..part]);
                left -= part;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests of one connection whose handler has not answered yet (an import may think for
/// minutes without a byte on the wire; that is not idleness).
#[derive(Clone, Debug, Default)]
struct InFlight(Arc<AtomicUsize>);

/// One request being handled; counted until dropped.
struct Handling(InFlight);

impl InFlight {
    fn enter(&self) -> Handling {
        self.0.fetch_add(1, Ordering::Relaxed);
        Handling(self.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The router as a hyper service that counts its requests in flight.
#[derive(Clone)]
struct Counted {
    inner: TowerToHyperService<Router>,
    in_flight: InFlight,
    /// The client's address, given to handlers as `ConnectInfo` (the enroll throttle).
    peer: SocketAddr,
    /// Told that a request's headers arrived.
    activity: Activity,
}

type Answer = Result<Response<Body>, std::convert::Infallible>;

impl hyper::service::Service<Request<hyper::body::Incoming>> for Counted {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, mut request: Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        self.activity.headers_done();
        let handling = self.in_flight.enter();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(handling);
            answer
        })
    }
}

/// The HTTP/1 and HTTP/2 connection builder with the HTTP/1 header timer and HTTP/2's stream
/// and header-list caps set. No HTTP/2 keep-alive pings: the idle deadline closes connections
/// without requests, pinged or not.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    builder
}

/// Serves `router` on `listener` until `shutdown` resolves: TLS when `tls` is given (HTTP/2
/// or HTTP/1.1 by ALPN), plain HTTP otherwise, within `limits` (see the module doc).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Slots::default();
    let refusers = Arc::new(Semaphore::new(MAX_REFUSING));
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: pause instead of spinning.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses go out in several writes (TLS records, HTTP/2 frames); without this, Nagle's
        // algorithm holds the last of a large answer until the client's delayed ACK, 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "Could not set TCP_NODELAY.");
        }
        let acceptor = acceptor.clone();
        let limits = Arc::clone(&limits);
        match slots.take(peer.ip(), &limits) {
            Ok(slot) => {
                count(&counters.accepted);
                let open = Open::new(&counters);
                let service = TowerToHyperService::new(router.clone());
                let counters = Arc::clone(&counters);
                tokio::spawn(async move {
                    let _slot = (slot, open);
                    connection(stream, peer, acceptor, service, &limits, &counters).await;
                });
            }
            Err(full) => {
                count(match full {
                    Full::Address => &counters.refused_per_ip,
                    Full::Total => &counters.refused_total,
                });
                // Dropping the stream closes it: the refusers are busy too.
                let Ok(permit) = Arc::clone(&refusers).try_acquire_owned() else { continue };
                tokio::spawn(async move {
                    let _permit = permit;
                    refuse(stream, peer, acceptor, &limits, full).await;
                });
            }
        }
    }
}

/// Serves one admitted connection to its end.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    service: TowerToHyperService<Router>,
    limits: &Limits,
    counters: &Counters,
) {
    let activity = Activity::new();
    let service = Counted {
        inner: service,
        in_flight: InFlight::default(),
        peer,
        activity: activity.clone(),
    };
    match acceptor {
        Some(acceptor) => {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let io = Watched::new(tls, &activity);
                    http(io, peer, service, limits, counters, &activity).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
                Err(_) => count(&counters.handshake_timeouts),
            }
        }
        None => {
            let io = Watched::new(stream, &activity);
            http(io, peer, service, limits, counters, &activity).await;
        }
    }
}

/// Serves HTTP on an established stream, shutting it down gracefully once it has had no request
/// traffic for `idle_timeout` with no request being handled, and dropping it if it is still open,
/// with nothing being handled, one `idle_timeout` after that. It is dropped at once when the first
/// request, or an HTTP/2 header block, has not arrived `header_timeout` after it began.
async fn http<T>(
    io: T,
    peer: SocketAddr,
    service: Counted,
    limits: &Limits,
    counters: &Counters,
    activity: &Activity,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = builder(limits);
    let in_flight = service.in_flight.clone();
    // The first request is awaited from the end of the handshake.
    activity.headers_begin();
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let shorter = limits.idle_timeout.min(limits.header_timeout);
    let check = (shorter / CHECKS).max(Duration::from_millis(100));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "Connection ended with an error.");
                }
                return;
            }
            () = tokio::time::sleep(check) => {
                if activity.headers_for().is_some_and(|d| d >= limits.header_timeout) {
                    count(&counters.header_timeouts);
                    tracing::debug!(%peer, "Request headers not received in time; closing.");
                    return;
                }
                if !in_flight.idle() {
                    continue;
                }
                match closing {
                    None if activity.silent_for() >= limits.idle_timeout => {
                        count(&counters.idle_closed);
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    Some(since) if since.elapsed() >= limits.idle_timeout => return,
                    _ => {}
                }
            }
        }
    }
}

/// Answers one request on a connection that got no slot with 503 and closes it, within the
/// handshake and header deadlines.
async fn refuse(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: &Limits,
    full: Full,
) {
    let why = match full {
        Full::Address => "too many connections from this address; retry later\n",
        Full::Total => "the server is at its connection limit; retry later\n",
    };
    let service = hyper::service::service_fn(move |_request| async move {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::CONNECTION, "close")
            .header(header::RETRY_AFTER, "5")
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(why))
    });
    let mut builder = builder(limits);
    builder.http1().keep_alive(false);
    let deadline = limits.handshake_timeout + limits.header_timeout;
    let served = tokio::time::timeout(deadline, async {
        match acceptor {
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                Err(e) => Err(e.into()),
            },
            None => builder.serve_connection(TokioIo::new(stream), service).await,
        }
    })
    .await;
    if let Ok(Err(e)) = served {
        tracing::debug!(%peer, error = %e, "Refused connection ended with an error.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_in_all_and_per_address_and_given_back() {
        let limits = Limits { max_connections: 3, max_connections_per_ip: 2, ..Limits::default() };
        let slots = Slots::default();
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let a1 = slots.take(a, &limits).unwrap();
        let _a2 = slots.take(a, &limits).unwrap();
        assert_eq!(slots.take(a, &limits).err(), Some(Full::Address));
        let b1 = slots.take(b, &limits).unwrap();
        assert_eq!(slots.take(b, &limits).err(), Some(Full::Total));
        drop(a1);
        let _a3 = slots.take(a, &limits).unwrap();
        drop(b1);
        assert_eq!(slots.0.lock().unwrap().per_ip.get(&b), None, "no entry for a closed address");
    }

    /// A frame header: length, type, flags, stream 1.
    fn frame(len: u32, kind: u8, flags: u8) -> Vec<u8> {
        let l = len.to_be_bytes();
        vec![l[1], l[2], l[3], kind, flags, 0, 0, 0, 1]
    }

    #[test]
    fn h2_frames_tell_when_a_header_block_is_open_whatever_the_read_sizes() {
        let mut stream = H2_PREFACE.to_vec();
        stream.extend(frame(6, 4, 0)); // SETTINGS
        stream.extend([0; 6]);
        let open_at = stream.len();
        stream.extend(frame(3, 1, 0)); // HEADERS without END_HEADERS
        stream.extend([1, 2, 3]);
        stream.extend(frame(0, 6, 0)); // not allowed here, but only lengths are followed
        stream.extend(frame(2, 9, 4)); // CONTINUATION with END_HEADERS
        let last = stream.len() + 1;
        stream.extend([4, 5]);
        stream.extend(frame(1, 0, 1)); // DATA
        stream.extend([9]);
        for chunk in [1, 2, 5, 9, 24, stream.len()] {
            let activity = Activity::new();
            let mut frames = H2Frames::new();
            let mut opened = Vec::new();
            for (i, piece) in stream.chunks(chunk).enumerate() {
                frames.feed(piece, &activity);
                let end = (i * chunk + piece.len()).min(stream.len());
                opened.push((end, activity.headers_for().is_some()));
            }
            for (end, open) in opened {
                assert_eq!(open, end >= open_at + 9 && end <= last, "chunk {chunk}, {end} bytes");
            }
            assert_eq!(frames.state, H2State::FrameHeader(0));
        }
    }

    #[test]
    fn h2_frames_leave_http1_alone() {
        let activity = Activity::new();
        let mut frames = H2Frames::new();
        frames.feed(b"PRI * HTTP/1.1\r\n\x00\x00\x03\x01\x00", &activity);
        assert_eq!(frames.state, H2State::Other);
        frames.feed(&frame(3, 1, 0), &activity);
        assert_eq!(activity.headers_for(), None);
    }
}
