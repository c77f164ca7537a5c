//! Connections: the accept loop, the TLS handshake and the limits that keep slow, idle or
//! numerous clients from holding the server (issue 14).
//!
//! Every accepted connection takes a slot, counted in all and per source address, before
//! anything is read from it. A connection beyond either cap is answered `503 Service
//! Unavailable` (`Connection: close`) by a small bounded pool of refusers, or closed at once
//! when that pool is busy too; the accept loop itself never waits for a slot, so a flood of
//! half-open connections cannot stop the next client from being accepted. A slot is held until
//! its connection ends, and each step of a connection has its own deadline: the TLS
//! handshake (`handshake_timeout`), the request headers (`header_timeout`, hyper's HTTP/1
//! header timer) and silence between requests (`idle_timeout`: no byte read or written,
//! after which the connection is shut down gracefully, so a request in progress still gets
//! its answer).
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
/// How often an open connection checks whether it has been silent too long, as a fraction of
/// `idle_timeout` (a connection closes between one and 1 + 1/`IDLE_CHECKS` timeouts).
const IDLE_CHECKS: u32 = 4;

/// Connection limits and timeouts (`[server]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (HTTP/1).
    pub header_timeout: Duration,
    /// How long a connection may stay without traffic before it is shut down.
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
    /// Connections shut down after `idle_timeout` without traffic.
    pub idle_closed: AtomicU64,
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

/// The time of the last byte read or written, in milliseconds since `start`.
#[derive(Clone, Debug)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// An IO stream that records when it last moved a byte.
struct Watched<T> {
    inner: T,
    activity: Activity,
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
            self.activity.touch();
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
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
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
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
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
}

type Answer = Result<Response<Body>, std::convert::Infallible>;

impl hyper::service::Service<Request<hyper::body::Incoming>> for Counted {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, mut request: Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        let handling = self.in_flight.enter();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(handling);
            answer
        })
    }
}

/// The HTTP/1 and HTTP/2 connection builder with the header timer set.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
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
    let service = Counted { inner: service, in_flight: InFlight::default(), peer };
    match acceptor {
        Some(acceptor) => {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let io = Watched { inner: tls, activity: activity.clone() };
                    http(io, peer, service, limits, counters, &activity).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
                Err(_) => count(&counters.handshake_timeouts),
            }
        }
        None => {
            let io = Watched { inner: stream, activity: activity.clone() };
            http(io, peer, service, limits, counters, &activity).await;
        }
    }
}

/// Serves HTTP on an established stream, shutting it down gracefully once it has been silent
/// for `idle_timeout` with no request being handled, and dropping it if it is still open, with
/// nothing being handled, one `idle_timeout` after that.
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
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let check = (limits.idle_timeout / IDLE_CHECKS).max(Duration::from_millis(100));
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
}
