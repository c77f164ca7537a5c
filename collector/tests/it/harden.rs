//! Issue 14, on the real binary: slow and numerous clients, bodies refused before they are
//! read, the `/metrics` token, the data folder's permissions and TLS to PostgreSQL (against
//! the machine's server and a throwaway one the test starts with its own CA).
//!
//! Every collector and PostgreSQL started here is stopped in `Drop`; waits are on events
//! (a closed socket, a ready server) with generous deadlines. The one timing threshold is the
//! issue's own acceptance check: `/healthz` answers in under a second during the flood.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aiscout_collector::client::tls_config;
use aiscout_collector::store::Store;
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::postgres_tls;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{Collector, batch, connect, enroll, enroll_secret_file, generated_cert};
use crate::store::harness::{drop_schema, pg_schema, pg_url};

/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);
/// Half-open connections in the flood (issue 14: 4,096 stalled the collector).
const FLOOD: usize = 5_000;

/// Raises this process's soft open-file limit to its hard limit when the flood needs more
/// (the collector, spawned after, inherits it). `prlimit` changes it from outside, so the
/// test needs no unsafe code.
fn raise_fd_limit(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    if soft.parse::<u64>().is_ok_and(|s| s >= needed) || soft == "unlimited" {
        return;
    }
    let pid = std::process::id().to_string();
    let status = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit could not raise the open-file limit");
    assert!(
        hard == "unlimited" || hard.parse::<u64>().unwrap() >= needed,
        "the hard open-file limit {hard} is below the {needed} this test needs"
    );
}

/// A TCP connection to `addr` from the loopback address `from`.
pub(crate) async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// TLS (HTTP/1.1 by ALPN) over `tcp`, trusting `ca`.
pub(crate) async fn tls(
    tcp: TcpStream,
    ca: &CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = tls_config(std::slice::from_ref(ca), false).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// Reads until the peer closes (EOF or reset); panics if that takes longer than `DEADLINE`.
async fn wait_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the collector never closed the connection");
    got
}

/// The status of the first response on a raw HTTP/1.1 stream.
pub(crate) async fn status_line<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(DEADLINE, async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a status line: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no status line");
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap().to_owned()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("collector.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A value from the Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    let line = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
    line.unwrap_or_else(|| panic!("no {name} in:\n{text}")).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_within_a_second_during_a_flood_of_5000_half_open_connections() {
    // Both ends of each connection are on this machine: two descriptors per connection.
    raise_fd_limit(2 * FLOOD as u64 + 1_000);
    let dir = tempfile::tempdir().unwrap();
    // The caps at their defaults; the deadlines long, so that what keeps /healthz answering
    // is the caps, not the flood timing out.
    let config = write_config(
        dir.path(),
        "[server]\nhandshake_timeout_secs = 600\nheader_timeout_secs = 600\n\
         idle_timeout_secs = 3600\n",
    );
    let server = Collector::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ca = generated_cert(dir.path());
    let attacker: IpAddr = [127, 0, 0, 2].into();

    // The flood: TLS connections whose request headers never end. The collector keeps
    // its per-address share of them and refuses the rest.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let tcp = connect_from(attacker, server.addr).await.unwrap();
        let ca = ca.clone();
        tasks.spawn(async move {
            let mut stream = tls(tcp, &ca).await.ok()?;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.ok()?;
            Some(stream)
        });
    }
    let mut held = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Some(stream) = joined.unwrap() {
            held.push(stream);
        }
    }

    // The acceptance check: a normal client from another address, connection included.
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(DEADLINE, async {
        let mut c = connect(server.addr, &ca, false).await;
        c.send(Method::GET, "/healthz", None, "").await.unwrap()
    })
    .await
    .expect("no answer from /healthz during the flood");
    let took = started.elapsed();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    assert!(took < Duration::from_secs(1), "/healthz took {took:?} during the flood");

    // The flood still holds its share of slots (so the caps, not timeouts, made room), and
    // the rest of it was refused.
    let mut c = connect(server.addr, &ca, false).await;
    let (status, metrics) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    let per_address = 1024;
    assert!(metric(&metrics, "aiscout_collector_connections_open") > per_address, "{metrics}");
    let refused =
        metric(&metrics, "aiscout_collector_connections_total{outcome=\"refused_address_cap\"}");
    assert_eq!(refused, (FLOOD - 1024) as u64, "{metrics}");
    assert!(held.len() >= 1024, "{} flood connections held", held.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_closed_and_connections_over_a_cap_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[server]\nhandshake_timeout_secs = 1\nheader_timeout_secs = 1\nidle_timeout_secs = 1\n",
    );
    let server = Collector::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ca = generated_cert(dir.path());
    let from: IpAddr = [127, 0, 0, 3].into();

    // Never starts TLS: closed at the handshake deadline.
    let mut silent_tcp = connect_from(from, server.addr).await.unwrap();
    wait_closed(&mut silent_tcp).await;
    // Finishes TLS, then says nothing: closed as idle.
    let mut idle = tls(connect_from(from, server.addr).await.unwrap(), &ca).await.unwrap();
    wait_closed(&mut idle).await;
    // Headers that never end: closed at the header deadline.
    let mut slow = tls(connect_from(from, server.addr).await.unwrap(), &ca).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    wait_closed(&mut slow).await;
    // A kept-alive connection that is used is served, and closed once it falls silent.
    let mut used = tls(connect_from(from, server.addr).await.unwrap(), &ca).await.unwrap();
    used.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let answer = String::from_utf8_lossy(&wait_closed(&mut used).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(server);

    // Two connections per address and three in all: a third from one address, and a fourth
    // in all, are answered 503 at once and closed; a freed slot serves the next client.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[server]\nmax_connections = 3\nmax_connections_per_ip = 2\nheader_timeout_secs = 600\n\
         idle_timeout_secs = 3600\n",
    );
    let server = Collector::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ca = generated_cert(dir.path());
    let refused = |from: [u8; 4], why: &'static str| {
        let ca = ca.clone();
        async move {
            let tcp = connect_from(from.into(), server.addr).await.unwrap();
            let mut stream = tls(tcp, &ca).await.unwrap();
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
            let answer = String::from_utf8_lossy(&wait_closed(&mut stream).await).into_owned();
            assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
            assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
            assert!(answer.ends_with(why), "{answer}");
        }
    };
    let first =
        tls(connect_from([127, 0, 0, 4].into(), server.addr).await.unwrap(), &ca).await.unwrap();
    let _second =
        tls(connect_from([127, 0, 0, 4].into(), server.addr).await.unwrap(), &ca).await.unwrap();
    refused([127, 0, 0, 4], "too many connections from this address; retry later\n").await;
    let _third =
        tls(connect_from([127, 0, 0, 5].into(), server.addr).await.unwrap(), &ca).await.unwrap();
    refused([127, 0, 0, 6], "the server is at its connection limit; retry later\n").await;
    drop(first);
    // The collector sees the close on its own time: retry until the slot is free.
    let until = Instant::now() + DEADLINE;
    loop {
        let mut c = connect(server.addr, &ca, false).await;
        let (status, _) = c.send(Method::GET, "/healthz", None, "").await.unwrap();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < until, "the freed slot was never given back");
        tokio::task::yield_now().await;
    }
}

/// `VmRSS` (or another `Vm*` line) of a process, in kB.
/// An HTTP/2 frame: header (length, type, flags, stream id) and payload (RFC 9113 4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// HPACK (RFC 7541) for `GET https://localhost/healthz`: `:method GET`, `:scheme https` from
/// the static table, `:path` and `:authority` as literals with indexed names.
const H2_GET_HEALTHZ: &[u8] = b"\x82\x87\x04\x08/healthz\x01\x09localhost";

/// TLS with ALPN `h2` to the collector, the client preface and an empty SETTINGS frame sent.
async fn h2_client(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = tls_config(std::slice::from_ref(ca), true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 not negotiated");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    tls.write_all(&hello).await.unwrap();
    tls
}

/// Reads the collector's HTTP/2 frames until the HEADERS frame of stream `id` and returns its
/// first header-block byte, the HPACK-coded `:status` (0x88 is 200). Frames before it are
/// skipped; bytes after it stay in `got` for the next call. Panics if the connection closes
/// first or after `DEADLINE`.
async fn h2_status<S: tokio::io::AsyncRead + Unpin>(c: &mut S, got: &mut Vec<u8>, id: u32) -> u8 {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            while got.len() >= 9 {
                let len =
                    usize::from(got[0]) << 16 | usize::from(got[1]) << 8 | usize::from(got[2]);
                if got.len() < 9 + len {
                    break;
                }
                let frame: Vec<u8> = got.drain(..9 + len).collect();
                if frame[3] == 1 && frame[5..9] == id.to_be_bytes() && len > 0 {
                    return frame[9];
                }
            }
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering the request on stream {id}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the request on stream {id} was not answered"))
}

/// Sends an HTTP/2 PING every `every` and nothing else, reading (and dropping) what the
/// collector sends in between, until the collector closes the connection (true) or `DEADLINE`
/// has passed (false).
async fn ping_until_closed<S>(c: &mut S, every: Duration) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = [0u8; 4096];
    for i in 0..DEADLINE.as_millis() / every.as_millis() {
        let ping = h2_frame(6, 0, 0, &u64::try_from(i).unwrap().to_be_bytes());
        if c.write_all(&ping).await.is_err() || c.flush().await.is_err() {
            return true;
        }
        let next = tokio::time::Instant::now() + every;
        while let Ok(read) = tokio::time::timeout_at(next, c.read(&mut buf)).await {
            if matches!(read, Ok(0) | Err(_)) {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_stall_or_dribble_request_headers_are_disconnected() {
    // A long idle deadline: only the header deadline can close these connections.
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), "[server]\nheader_timeout_secs = 1\nidle_timeout_secs = 3600\n");
    let server = Collector::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ca = generated_cert(dir.path());

    // The preface, then nothing.
    let mut silent = h2_client(server.addr, &ca).await;
    // The preface, then a header block that is never finished.
    let mut stalled = h2_client(server.addr, &ca).await;
    stalled.write_all(&h2_frame(1, 0, 1, &H2_GET_HEALTHZ[..4])).await.unwrap();
    // A header block dribbled a byte at a time: a HEADERS frame announcing 16 KiB of header
    // block whose bytes come one by one, traffic that never completes a request. (Many small
    // CONTINUATION frames instead would be cut off by h2's own CONTINUATION-flood limit.) Bounded: it ends when the collector closes the
    // connection, or fails after DEADLINE's worth of dribbles.
    let dribbler = tokio::spawn({
        let ca = ca.clone();
        let addr = server.addr;
        async move {
            let mut c = h2_client(addr, &ca).await;
            let mut announced = h2_frame(1, 0x4, 1, &[0; 16_000]);
            announced.truncate(9 + 1);
            c.write_all(&announced).await.unwrap();
            let step = Duration::from_millis(100);
            for _ in 0..DEADLINE.as_millis() / step.as_millis() {
                let byte = [0u8];
                if c.write_all(&byte).await.is_err() || c.flush().await.is_err() {
                    return true;
                }
                let mut buf = [0u8; 1024];
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(step, c.read(&mut buf)).await {
                    return true;
                }
            }
            false
        }
    });
    // A complete request is answered; a second one whose headers stall closes the connection.
    let mut second = h2_client(server.addr, &ca).await;
    let get = h2_frame(1, 0x4 | 0x1, 1, H2_GET_HEALTHZ);
    second.write_all(&get).await.unwrap();
    assert_eq!(h2_status(&mut second, &mut Vec::new(), 1).await, 0x88, "HPACK :status 200");
    second.write_all(&h2_frame(1, 0, 3, &H2_GET_HEALTHZ[..3])).await.unwrap();

    wait_closed(&mut silent).await;
    wait_closed(&mut stalled).await;
    wait_closed(&mut second).await;
    assert!(dribbler.await.unwrap(), "the dribbling client was never disconnected");

    // The collector still answers, and counted the four.
    let mut c = connect(server.addr, &ca, true).await;
    let (status, _) = c.send(Method::GET, "/healthz", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(metric(&text, "aiscout_collector_connection_timeouts_total{step=\"headers\"}"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_only_ping_are_closed_as_idle_and_ones_making_requests_stay() {
    // A long header deadline: only the idle deadline can close these connections. PINGs,
    // SETTINGS and the server's PING acknowledgements are traffic but not requests.
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), "[server]\nheader_timeout_secs = 600\nidle_timeout_secs = 2\n");
    let server = Collector::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ca = generated_cert(dir.path());
    let idle = Duration::from_secs(2);

    // The preface and SETTINGS, then a PING every half idle timeout and never a request.
    let pinger = tokio::spawn({
        let (ca, addr) = (ca.clone(), server.addr);
        async move { ping_until_closed(&mut h2_client(addr, &ca).await, idle / 2).await }
    });
    // A client asking every quarter idle timeout, for three idle timeouts: every request is
    // answered on the one connection.
    let mut user = h2_client(server.addr, &ca).await;
    let mut got = Vec::new();
    for id in (1..24).step_by(2) {
        user.write_all(&h2_frame(1, 0x4 | 0x1, id, H2_GET_HEALTHZ)).await.unwrap();
        assert_eq!(h2_status(&mut user, &mut got, id).await, 0x88, "HPACK :status 200");
        tokio::time::sleep(idle / 4).await;
    }
    // Then it only pings: closed as idle as well.
    let user_closed = ping_until_closed(&mut user, idle / 2).await;
    let pinger_closed = pinger.await.unwrap();
    assert!(
        pinger_closed && user_closed,
        "closed by the collector: the client that never asked {pinger_closed}, the one that \
         asked twelve times before it only pinged {user_closed}"
    );

    let mut c = connect(server.addr, &ca, true).await;
    let (status, body) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(metric(&text, "aiscout_collector_connection_timeouts_total{step=\"idle\"}"), 2);
    assert_eq!(metric(&text, "aiscout_collector_connection_timeouts_total{step=\"headers\"}"), 0);
}

fn vm_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_unauthenticated_60_mib_uploads_are_refused_before_their_bodies_are_read() {
    const UPLOADS: usize = 16;
    const SIZE: usize = 60 << 20;
    let dir = tempfile::tempdir().unwrap();
    let server = Collector::start(dir.path(), &[]);
    let ca = generated_cert(dir.path());
    let pid = server.child.id();
    let mut c = connect(server.addr, &ca, false).await;
    assert_eq!(c.send(Method::GET, "/healthz", None, "").await.unwrap().0, StatusCode::OK);
    let idle_kb = vm_kb(pid, "VmRSS:");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..UPLOADS {
        let (addr, ca) = (server.addr, ca.clone());
        tasks.spawn(async move {
            let mut stream = tls(TcpStream::connect(addr).await.unwrap(), &ca).await.unwrap();
            let path =
                if i % 2 == 0 { "/api/v1/imports/expenses" } else { "/api/v1/imports/gateway" };
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n\
                 Content-Length: {SIZE}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            // The answer comes before a byte of the body is sent.
            let status = status_line(&mut stream).await;
            // Then the client sends the 60 MiB anyway, for as long as the collector listens.
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..SIZE / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), "HTTP/1.1 401 Unauthorized");
    }
    // The same for the console's upload form without a session.
    let mut stream = tls(TcpStream::connect(server.addr).await.unwrap(), &ca).await.unwrap();
    let head = format!(
        "POST /imports HTTP/1.1\r\nHost: localhost\r\nOrigin: https://localhost\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {SIZE}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(status_line(&mut stream).await, "HTTP/1.1 303 See Other");

    let (rss_kb, peak_kb) = (vm_kb(pid, "VmRSS:"), vm_kb(pid, "VmHWM:"));
    let ceiling_kb = idle_kb + 50 * 1024;
    assert!(rss_kb <= ceiling_kb, "RSS {rss_kb} kB after the uploads, idle {idle_kb} kB");
    assert!(peak_kb <= ceiling_kb, "peak RSS {peak_kb} kB during the uploads, idle {idle_kb} kB");
    assert_eq!(c.send(Method::GET, "/healthz", None, "").await.unwrap().0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_configured_token_and_never_name_a_person() {
    for with_token in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let secret = enroll_secret_file(dir.path());
        let token_file = dir.path().join("metrics-token");
        std::fs::write(&token_file, "metrics-s3cret\n").unwrap();
        let text = if with_token {
            format!("metrics_token_file = \"{}\"\n", token_file.display())
        } else {
            String::new()
        };
        let config = write_config(dir.path(), &text);
        let server = Collector::start(
            dir.path(),
            &[
                "--config",
                config.to_str().unwrap(),
                "--enroll-secret-file",
                secret.to_str().unwrap(),
            ],
        );
        let ca = generated_cert(dir.path());
        let mut c = connect(server.addr, &ca, true).await;
        // A device named after a person, owned by a person, with a sighting.
        let key = enroll(&mut c, "alice-laptop").await;
        let (status, _) =
            c.send(Method::POST, "/api/v1/sightings", Some(&key), batch(0)).await.unwrap();
        assert_eq!(status, StatusCode::OK);

        let (status, _) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
        let (wrong, _) = c.send(Method::GET, "/metrics", Some("nope"), "").await.unwrap();
        let (right, body) =
            c.send(Method::GET, "/metrics", Some("metrics-s3cret"), "").await.unwrap();
        if with_token {
            assert_eq!((status, wrong), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
        } else {
            assert_eq!((status, wrong), (StatusCode::OK, StatusCode::OK));
        }
        assert_eq!(right, StatusCode::OK);
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(body.contains("aiscout_collector_batches_total{outcome=\"stored\"} 1"), "{body}");
        for personal in ["alice", "host-", "chatgpt", "firefox", "agent"] {
            assert!(!body.contains(personal), "/metrics names {personal:?}:\n{body}");
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_database_files_are_private_and_open_ones_are_tightened() {
    let dir = tempfile::tempdir().unwrap();
    // A first start: the folder (made by the harness for the log, 0755 under the usual
    // umask) is tightened, and the files are created private.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Collector::start(&fresh, &[]);
    assert_eq!(mode(&fresh), 0o700);
    for name in ["aiscout.db", "aiscout.db-wal", "aiscout.db-shm", "key.pem"] {
        assert_eq!(mode(&fresh.join(name)), 0o600, "{name}");
    }
    drop(server);

    // Found open (an operator's chmod, a restore from backup): tightened with a warning.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["aiscout.db", "aiscout.db-wal"] {
        std::fs::copy(fresh.join(name), open.join(name)).unwrap();
        std::fs::set_permissions(open.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = Collector::start(&open, &[]);
    assert_eq!(mode(&open), 0o700);
    for name in ["aiscout.db", "aiscout.db-wal", "aiscout.db-shm"] {
        assert_eq!(mode(&open.join(name)), 0o600, "{name}");
    }
    drop(server);
    let log = std::fs::read_to_string(open.join("serve.log")).unwrap();
    assert!(log.contains("tightened"), "{log}");
    assert!(log.contains(&open.join("aiscout.db").display().to_string()), "{log}");
}

/// A JSON call whose body is declared as something else is refused with 415, and nothing
/// is stored; `application/json` with parameters is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_calls_refuse_other_content_types_with_415() {
    let dir = tempfile::tempdir().unwrap();
    let secret = enroll_secret_file(dir.path());
    let server = Collector::start(dir.path(), &["--enroll-secret-file", secret.to_str().unwrap()]);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, true).await;
    let key = enroll(&mut c, "host-415").await;
    let auth = HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
    let ct = HeaderName::from_static("content-type");
    let send = |content_type: Option<&'static str>, k: u64| {
        let mut headers = vec![(hyper::header::AUTHORIZATION, auth.clone())];
        if let Some(t) = content_type {
            headers.push((ct.clone(), HeaderValue::from_static(t)));
        }
        (headers, batch(k))
    };
    for (content_type, expected) in [
        (None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/x-www-form-urlencoded"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/jsonx"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("Application/JSON; charset=utf-8"), StatusCode::OK),
    ] {
        let (headers, body) = send(content_type, 1);
        let r =
            c.request(Method::POST, "/api/v1/sightings", &headers, body, 1 << 20).await.unwrap();
        assert_eq!(r.status, expected, "{content_type:?}: {:?}", r.body);
        if expected != StatusCode::OK {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"], "Content-Type must be application/json");
        }
    }
    // Enrollment and heartbeats too.
    let headers = [(ct.clone(), HeaderValue::from_static("text/plain"))];
    let r = c.request(Method::POST, "/api/v1/enroll", &headers, "{}", 1 << 20).await.unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let headers = [(hyper::header::AUTHORIZATION, auth.clone())];
    let r = c.request(Method::POST, "/api/v1/heartbeat", &headers, "{}", 1 << 20).await.unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Whether the connection made from `url` is encrypted, as the server sees it.
async fn server_sees_ssl(url: &str) -> Result<bool, String> {
    let c = postgres_tls::parse(url).map_err(|e| e.to_string())?;
    let (client, conn) = c.config.connect(c.tls).await.map_err(|e| format!("{e:?}"))?;
    let driver = tokio::spawn(conn);
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    driver.await.unwrap().unwrap();
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmode_require_encrypts_and_disable_does_not() {
    let (url, schema) = pg_schema().await;
    struct Schema(String);
    impl Drop for Schema {
        fn drop(&mut self) {
            drop_schema(&self.0);
        }
    }
    let _schema = Schema(schema);
    assert_eq!(server_sees_ssl(&format!("{url}&sslmode=require")).await, Ok(true));
    assert_eq!(server_sees_ssl(&format!("{url}&sslmode=disable")).await, Ok(false));
    // The store itself (migrations, then the pool) over TLS.
    let store = PgStore::open(&format!("{url}&sslmode=require")).await.unwrap();
    store.ping().await.unwrap();
    assert!(pg_url().starts_with("postgres://"));
}

/// A throwaway PostgreSQL in a temporary folder, on a free loopback port, with TLS from a
/// certificate the test made; stopped and removed on drop.
struct ThrowawayPg {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Runs a PostgreSQL tool as the `postgres` user when the tests run as root (initdb refuses
/// root), as the current user otherwise.
fn pg_tool(tool: &str, args: &[&str]) -> std::process::Output {
    let program = format!("{PG_BIN}/{tool}");
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &program]);
        c
    } else {
        Command::new(&program)
    };
    command.args(args).output().unwrap()
}

impl ThrowawayPg {
    fn start(cert_pem: &str, key_pem: &str) -> ThrowawayPg {
        let dir = tempfile::Builder::new().prefix("aiscout-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let mut pg = ThrowawayPg { dir, port: 0 };
        std::fs::set_permissions(pg.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let chown = |path: &Path| {
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap();
            assert!(status.success(), "chown {}", path.display());
        };
        let root = running_as_root();
        if root {
            chown(pg.dir.path());
        }
        let out = pg_tool(
            "initdb",
            &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        if root {
            chown(&data);
        }
        // A free port: bind one, note it, let it go (the server binds it next).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c ssl=on -c unix_socket_directories={}",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("pg.log");
        let out = pg_tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
        pg.port = port;
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        pg
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        // An error means it was not running; the folder goes with `dir` either way.
        let _stopped =
            pg_tool("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]);
    }
}

/// A CA and a server certificate for `localhost` signed by it (PEMs: CA, cert, key). The
/// names differ (rcgen's default is the same for both, which makes the leaf look
/// self-issued to a verifier).
fn ca_and_server_cert(ca_name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_trusts_only_the_given_ca_and_the_host_name() {
    let (ca, cert, key) = ca_and_server_cert("aiscout test CA");
    let pg = ThrowawayPg::start(&cert, &key);
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let (other_ca, _, _) = ca_and_server_cert("another CA");
    let other_file = files.path().join("other-ca.pem");
    std::fs::write(&other_file, other_ca).unwrap();
    let url = |host: &str, mode: &str, root: &Path| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
            pg.port,
            root.display()
        )
    };

    // require without a root certificate encrypts without checking the certificate (libpq),
    // here against a cluster whose SSL this test turned on (the shared one's may be off).
    let plain = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    assert_eq!(server_sees_ssl(&format!("{plain}?sslmode=require")).await, Ok(true));
    assert_eq!(server_sees_ssl(&format!("{plain}?sslmode=disable")).await, Ok(false));
    assert_eq!(server_sees_ssl(&url("localhost", "verify-full", &ca_file)).await, Ok(true));
    let wrong_ca = server_sees_ssl(&url("localhost", "verify-full", &other_file)).await;
    assert!(wrong_ca.as_ref().is_err_and(|e| e.contains("UnknownIssuer")), "{wrong_ca:?}");
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    let wrong_name = server_sees_ssl(&url("127.0.0.1", "verify-full", &ca_file)).await;
    assert!(wrong_name.as_ref().is_err_and(|e| e.contains("NotValidForName")), "{wrong_name:?}");
    assert_eq!(server_sees_ssl(&url("127.0.0.1", "verify-ca", &ca_file)).await, Ok(true));
    let wrong_ca = server_sees_ssl(&url("127.0.0.1", "verify-ca", &other_file)).await;
    assert!(wrong_ca.is_err(), "{wrong_ca:?}");
    // require with a root certificate verifies the chain, as libpq does.
    assert!(server_sees_ssl(&url("localhost", "require", &other_file)).await.is_err());

    // The collector's store, migrations included, over verify-full.
    let store = PgStore::open(&url("localhost", "verify-full", &ca_file)).await.unwrap();
    store.ping().await.unwrap();
}

/// Every process of a [`ThrowawayPg`] cluster (the postmaster and its children) frozen with
/// SIGSTOP while this lives: a database that accepts TCP connections and never answers.
struct Frozen(Vec<String>);

impl Frozen {
    fn freeze(pg: &ThrowawayPg) -> Frozen {
        let pidfile = std::fs::read_to_string(pg.dir.path().join("data/postmaster.pid")).unwrap();
        let postmaster = pidfile.lines().next().unwrap().trim().to_owned();
        let children = Command::new("ps").args(["-o", "pid=", "--ppid", &postmaster]).output();
        let children = String::from_utf8(children.unwrap().stdout).unwrap();
        let mut pids = vec![postmaster];
        pids.extend(children.split_whitespace().map(str::to_owned));
        let status = Command::new("kill").arg("-STOP").args(&pids).status().unwrap();
        assert!(status.success(), "could not stop {pids:?}");
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // A process that has exited meanwhile makes kill fail; the others are still resumed.
        let _resumed = Command::new("kill").arg("-CONT").args(&self.0).status();
    }
}

/// `/readyz` asked (60 times at most) until it answers `want`; the last answer.
async fn readyz_until(
    server: &Collector,
    ca: &CertificateDer<'static>,
    want: StatusCode,
) -> (StatusCode, Option<HeaderValue>) {
    let mut last = None;
    for _ in 0..60 {
        let mut c = connect(server.addr, ca, false).await;
        let asked = c.request(Method::GET, "/readyz", &[], "", 4096);
        let answer = tokio::time::timeout(DEADLINE, asked).await;
        let response = answer.expect("/readyz never answered").unwrap();
        let (status, headers) = (response.status, response.headers.get("retry-after").cloned());
        if status == want {
            return (status, headers);
        }
        last = Some(status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("/readyz never answered {want}; last {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_with_retry_after_when_the_database_hangs_or_is_gone() {
    let (_, cert, key) = ca_and_server_cert("aiscout test CA");
    let pg = ThrowawayPg::start(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", pg.port);
    let server = Collector::start(dir.path(), &["--db", &db]);
    let ca = generated_cert(dir.path());
    readyz_until(&server, &ca, StatusCode::OK).await;

    // Frozen: connections are accepted by the kernel and never answered, so without its own
    // deadline the probe would wait on the pool (or forever) rather than answer.
    let frozen = Frozen::freeze(&pg);
    let (_, retry) = readyz_until(&server, &ca, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(retry.is_some(), "503 without Retry-After");
    drop(frozen);
    readyz_until(&server, &ca, StatusCode::OK).await;

    // Stopped: connections are refused.
    let data = pg.dir.path().join("data");
    let out = pg_tool("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]);
    assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    let (_, retry) = readyz_until(&server, &ca, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(retry.is_some(), "503 without Retry-After");
}

/// Issue 14 item 12: what the collector's commands print for typical bad inputs (a non-UTF-8
/// CSV, bad TOML, a missing file, bad database URLs) says the file, line or setting and never
/// shows Rust debug output.
#[test]
fn errors_for_bad_inputs_name_the_problem_without_rust_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let csv =
        file("ramp.csv", b"Date,Amount,Merchant,Cardholder\n2026-01-01,12.00,Open\xffAI,b@x.com\n");
    let toml = file("open.toml", b"[server\nx = 1\n");
    let typed = file("type.toml", b"listen = 5\n");
    let latin1 = file("latin1.toml", b"listen = \"J\xf6rg\"\n");
    let missing = dir.path().join("missing.csv").to_str().unwrap().to_owned();
    let db = format!("sqlite:{}", dir.path().join("aiscout.db").display());
    let data = dir.path().to_str().unwrap();
    let cases: [(Vec<&str>, &str); 8] = [
        (vec!["--db", &db, "import", "expenses", &csv], "ramp.csv:2: field 3 is not UTF-8"),
        (vec!["--db", &db, "import", "people", &missing], "missing.csv"),
        (vec!["--config", &toml, "check-config"], "open.toml"),
        (vec!["--config", &typed, "check-config"], "line 1"),
        (vec!["--config", &latin1, "check-config"], "latin1.toml: line 1 is not UTF-8 text"),
        (vec!["--config", "/nonexistent/aiscout.toml", "check-config"], "aiscout.toml"),
        (vec!["--db", "postgres://u@127.0.0.1:1/x?sslmode=bogus", "check-config"], "sslmode"),
        (vec!["--db", "postgres://u@127.0.0.1:1/x", "report", "inventory"], "PostgreSQL"),
    ];
    for (args, names) in cases {
        let out = Command::new(crate::process::BIN)
            .args(["--data-dir", data])
            .args(&args)
            .env_remove("AISCOUT_CONFIG")
            .env_remove("AISCOUT_DB")
            .output()
            .unwrap();
        // An import with row errors still succeeds (the good rows are stored).
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(names), "{names} not in:\n{text}");
        for shape in ["Some(", "Os {", "kind:", "Error {", "{ pos:", "Utf8 {"] {
            assert!(!text.contains(shape), "debug output {shape} in {args:?}:\n{text}");
        }
    }
}
