//! Alert delivery benchmark (issue 15): the time from an acknowledged agent batch that
//! discovers a product to the webhook receiving the event, and, with 10,000 events queued, the
//! delivery throughput with the ingest rate beside it (and the ingest rate of the same load
//! with nothing to deliver, in the same run).
//!
//! Everything runs on loopback, through the code `serve` runs: the real router
//! (`api::router`) served by `api::serve` over TLS, the real store, and
//! `alerts::deliver::Deliverer` with one channel (`--channel`, an rcgen certificate trusted
//! through the channel's `ca_file`) to a receiver started here that notes when each event id
//! arrives:
//!
//! - `webhook` (default): an HTTPS receiver in this process (the collector's own server code);
//! - `email`: the email tests' real SMTP server, aiosmtpd
//!   (`collector/tests/data/smtp/receiver.py`, STARTTLS and AUTH), in a child process that
//!   writes each message to a folder this process watches;
//! - `syslog`: a TLS listener in this process reading RFC 5425 frames (one per session).
//!
//! 1. **Latency**: one agent sends, one after the other, a batch discovering each of `--products`
//!    catalog products (default 120); the time from the batch's acknowledgement to the
//!    receiver's arrival of its `product.discovered` event. Sequential, so each event meets an
//!    idle queue, as a real discovery does.
//! 2. **Throughput**: four agents send batches of 20 sightings of a known product for
//!    `--seconds S` (default 10): the ingest rate with nothing to deliver. Then 10,000 events
//!    (`--events N`) are queued at once and the same load runs while they are delivered: the
//!    delivery rate (events / time until the last arrived) and the ingest rate meanwhile.
//!
//! `cargo run --release -p aiscout-bench --bin bench-alerts -- sqlite|postgres
//! [--channel webhook|email|syslog] [--products N] [--events N] [--seconds S]`. PostgreSQL: `AISCOUT_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), in a schema dropped at the end. Results are in
//! BENCHMARKS.md.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A benchmark tool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiscout_collector::alerts::channel::{Channel, Kind, Settings};
use aiscout_collector::alerts::email::{EmailSettings, SmtpTls};
use aiscout_collector::alerts::syslog::SyslogSettings;
use aiscout_collector::alerts::{deliver::Deliverer, event};
use aiscout_collector::api::{self, AppState, ratelimit::RateLimiter};
use aiscout_collector::client::{Connection, tls_config};
use aiscout_collector::store::Store;
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;
use aiscout_collector::telemetry::Metrics;
use aiscout_signatures::Catalog;
use aiscout_wire::Secret;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hyper::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

const ENROLL: &str = "bench-alerts-enroll-secret-0123456789";

struct Args {
    backend: String,
    channel: String,
    products: usize,
    events: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        backend: String::new(),
        channel: "webhook".into(),
        products: 120,
        events: 10_000,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--products" => a.products = value().parse().unwrap(),
            "--events" => a.events = value().parse().unwrap(),
            "--seconds" => a.seconds = value().parse().unwrap(),
            "--channel" => a.channel = value(),
            "sqlite" | "postgres" => a.backend = arg,
            other => panic!("unknown argument {other:?}"),
        }
    }
    assert!(
        !a.backend.is_empty(),
        "usage: bench_alerts sqlite|postgres [--channel webhook|email|syslog] [--products N] \
         [--events N] [--seconds S]"
    );
    assert!(
        ["webhook", "email", "syslog"].contains(&a.channel.as_str()),
        "--channel {}",
        a.channel
    );
    a
}

fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = cert.pem();
    (cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())), pem)
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn hook(State(seen): State<Arrivals>, headers: HeaderMap) -> StatusCode {
    let id = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    seen.lock().unwrap().entry(id).or_insert_with(Instant::now);
    StatusCode::NO_CONTENT
}

/// The syslog receiver: TLS sessions of RFC 5425 frames; notes each message's `id="evt_..."`.
async fn syslog_listener(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    seen: Arrivals,
) {
    use tokio::io::AsyncReadExt as _;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else { return };
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).await.is_err() {
                return;
            }
            let text = String::from_utf8_lossy(&buf);
            let now = Instant::now();
            let mut seen = seen.lock().unwrap();
            for part in text.split("id=\"").skip(1) {
                if let Some(id) = part.split('"').next().filter(|id| id.starts_with("evt_")) {
                    seen.entry(id.to_owned()).or_insert(now);
                }
            }
        });
    }
}

/// The email receiver: aiosmtpd in a child process; a task here notes each message file's
/// event id as it appears. Dropping it stops the child (stdin closed, then killed).
struct Smtp {
    child: std::process::Child,
}

impl Smtp {
    fn start(port: u16, dir: &std::path::Path, out: &std::path::Path, seen: Arrivals) -> Smtp {
        use std::io::BufRead as _;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/smtp/receiver.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("smtp-cert.pem"))
            .arg(dir.join("smtp-key.pem"))
            .arg(SMTP_USER)
            .arg(SMTP_PASSWORD)
            .arg(out)
            .arg("starttls")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd (.ci/install-deps)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP receiver did not start");
        let out = out.to_owned();
        tokio::spawn(async move {
            let mut read = std::collections::HashSet::new();
            loop {
                for entry in std::fs::read_dir(&out).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_none_or(|e| e != "json") || read.contains(&path) {
                        continue;
                    }
                    let m: serde_json::Value = serde_json::from_slice(
                        &aiscout_collector::config::read_capped(&path).unwrap(),
                    )
                    .unwrap();
                    let id = m["event_id"].as_str().unwrap_or_default().to_owned();
                    seen.lock().unwrap().entry(id).or_insert_with(Instant::now);
                    read.insert(path);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Smtp { child }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        std::thread::sleep(Duration::from_millis(500));
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

const SMTP_USER: &str = "bench";
const SMTP_PASSWORD: &str = "bench-smtp-password";

fn batch(id: &str, product: &str, sightings: usize, at: i64) -> String {
    let s: Vec<_> = (0..sightings)
        .map(|j| json!({"product": product, "kind": "dns", "value": format!("h{j}.{product}.example"),
                        "first_seen": at, "last_seen": at + 1, "count": 1, "window": at - at % 3600}))
        .collect();
    json!({"batch_id": id, "agent": {"version": "0.1.0", "catalog_version": 1}, "sightings": s,
           "dropped": 0, "evicted": 0})
    .to_string()
}

async fn enroll(c: &mut Connection, host: &str) -> String {
    let body = json!({"enroll_secret": ENROLL, "device": {"host_id": host, "hostname": host,
        "os": "linux", "os_version": "12", "agent_version": "0.1.0"}});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/enroll", None, body.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["node_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Four agents sending 20-sighting batches of a known product until `stop`; batches acked.
async fn load(
    addr: std::net::SocketAddr,
    ca: CertificateDer<'static>,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    tag: &str,
) -> u64 {
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let (ca, stop, acked, tag) =
            (ca.clone(), Arc::clone(&stop), Arc::clone(&acked), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Connection::connect(addr, "localhost", tls_config(&[ca], true).unwrap())
                .await
                .unwrap();
            let mut k = 0u64;
            let at = aiscout_collector::store::now();
            while !stop.load(Ordering::Relaxed) {
                let body = batch(&format!("{tag}-{i}-{k}"), "openai.chatgpt", 20, at);
                let (status, _) =
                    c.send(Method::POST, "/api/v1/sightings", Some(&key), body).await.unwrap();
                assert_eq!(status, StatusCode::OK);
                acked.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    acked.load(Ordering::Relaxed)
}

async fn run<S: Store + Clone + Send + Sync + 'static>(store: S, a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    // The receiver.
    let rcert = certificate();
    let arrivals: Arrivals = Arc::default();
    let rtls = api::tls::server_config(vec![rcert.0.clone()], rcert.1.clone_key()).unwrap();
    let rlistener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = rlistener.local_addr().unwrap();
    let limits = api::Limits { max_connections: 1024, ..api::Limits::default() };
    let ca_file = dir.path().join("receiver.pem");
    std::fs::write(&ca_file, &rcert.2).unwrap();
    let mut channel = Channel {
        name: "bench".into(),
        kind: Kind::Webhook,
        url: format!("https://localhost:{}/hook", raddr.port()),
        secret: Some(Secret::new("bench-signing-secret-0123456789")),
        events: Vec::new(),
        statuses: Vec::new(),
        max_per_day: u32::MAX,
        quiet: None,
        give_up_after: Duration::from_secs(86_400),
        ca_file: Some(ca_file),
        jira: None,
        email: None,
        syslog: None,
        digest: None,
    };
    let mut _smtp = None;
    match a.channel.as_str() {
        "email" => {
            // aiosmtpd binds the port itself.
            let port = raddr.port();
            drop(rlistener);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.path().join("smtp-cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.path().join("smtp-key.pem"), key.serialize_pem()).unwrap();
            std::fs::write(dir.path().join("receiver.pem"), cert.pem()).unwrap();
            let out = dir.path().join("mailbox");
            std::fs::create_dir(&out).unwrap();
            _smtp = Some(Smtp::start(port, dir.path(), &out, Arc::clone(&arrivals)));
            channel.kind = Kind::Email;
            channel.url = String::new();
            channel.secret = Some(Secret::new(SMTP_PASSWORD));
            channel.email = Some(EmailSettings {
                host: "localhost".into(),
                port,
                tls: SmtpTls::StartTls,
                username: Some(SMTP_USER.into()),
                from: "aiscout@example.com".into(),
                to: vec!["security@example.com".into()],
            });
        }
        "syslog" => {
            tokio::spawn(syslog_listener(rlistener, rtls, Arc::clone(&arrivals)));
            channel.kind = Kind::Syslog;
            channel.url = String::new();
            channel.secret = None;
            channel.syslog = Some(SyslogSettings { host: "localhost".into(), port: raddr.port() });
        }
        _ => {
            let router = Router::new().route("/hook", post(hook)).with_state(Arc::clone(&arrivals));
            tokio::spawn(api::serve(
                rlistener,
                router,
                Some(rtls),
                limits.clone(),
                Arc::default(),
                std::future::pending(),
            ));
        }
    }
    // The collector.
    let catalog = Catalog::builtin().unwrap();
    let ccert = certificate();
    let tls = api::tls::server_config(vec![ccert.0.clone()], ccert.1.clone_key()).unwrap();
    let settings = Settings { channels: vec![channel], ..Settings::default() };
    let state = Arc::new(AppState {
        store: store.clone(),
        catalog: catalog.clone(),
        artifact: None,
        enroll_secret: Some(Secret::new(ENROLL)),
        metrics: Metrics::default(),
        limiter: RateLimiter::new(1_000_000, 1_000_000),
        mappings: Default::default(),
        console: Default::default(),
        sso: None,
        policy: Default::default(),
        cache: Default::default(),
        metrics_token: None,
        uploads: api::upload::Uploads::new(dir.path().join("uploads"), 2),
        alerts: Arc::new(settings.clone()),
        enrollment: Default::default(),
        overlay: None,
        overlay_cache: Default::default(),
        risk: Default::default(),
    });
    let counters = Arc::clone(&state.metrics.connections);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(
        listener,
        api::router(Arc::clone(&state)),
        Some(tls),
        limits,
        counters,
        std::future::pending(),
    ));
    let tasks = Deliverer::new(store.clone(), catalog.clone(), "https://bench".into())
        .unwrap()
        .start(&settings)
        .await
        .unwrap();

    // 1. Latency.
    let mut c = Connection::connect(
        addr,
        "localhost",
        tls_config(std::slice::from_ref(&ccert.0), true).unwrap(),
    )
    .await
    .unwrap();
    let key = enroll(&mut c, "latency-agent").await;
    let mut latencies = Vec::new();
    let now = aiscout_collector::store::now();
    for (i, p) in catalog.products().iter().take(a.products).enumerate() {
        let (status, _) = c
            .send(
                Method::POST,
                "/api/v1/sightings",
                Some(&key),
                batch(&format!("l{i}"), &p.id, 1, now),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        let acked = Instant::now();
        let id = event::id(event::DISCOVERED, &p.id);
        let until = acked + Duration::from_secs(60);
        let arrived = loop {
            if let Some(t) = arrivals.lock().unwrap().get(&id).copied() {
                break t;
            }
            assert!(Instant::now() < until, "{} never arrived", p.id);
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(arrived.saturating_duration_since(acked));
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "backend {}, channel {}: batch acknowledged -> event received, {} discoveries one after \
         the other",
        a.backend,
        a.channel,
        latencies.len()
    );
    println!(
        "  p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.95)),
        ms(*latencies.last().unwrap())
    );

    // 2. Throughput.
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(enroll(&mut c, &format!("load-agent-{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs(a.seconds);
    let t = Instant::now();
    let handle = tokio::spawn(load(addr, ccert.0.clone(), keys.clone(), Arc::clone(&stop), "base"));
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let base = handle.await.unwrap();
    let base_rate = base as f64 / t.elapsed().as_secs_f64();
    println!(
        "  ingest with nothing to deliver: {base_rate:.0} batches/s (20 sightings each, 4 agents)"
    );

    let before = arrivals.lock().unwrap().len();
    let events: Vec<_> = (0..a.events)
        .map(|i| {
            event::make(
                event::SPREAD,
                &format!("bench-{i}"),
                now,
                "openai.chatgpt",
                &json!({"product": "openai.chatgpt"}),
            )
        })
        .collect();
    let queued = Instant::now();
    store.emit(events, None, aiscout_collector::store::now()).await.unwrap();
    let queue_ms = ms(queued.elapsed());
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let handle = tokio::spawn(load(addr, ccert.0.clone(), keys, Arc::clone(&stop), "busy"));
    let until = Instant::now() + Duration::from_secs(600);
    while arrivals.lock().unwrap().len() < before + a.events {
        assert!(Instant::now() < until, "the queue did not drain in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = queued.elapsed();
    stop.store(true, Ordering::Relaxed);
    let busy = handle.await.unwrap();
    let busy_rate = busy as f64 / t.elapsed().as_secs_f64();
    println!(
        "  {} events queued in {queue_ms:.0} ms, delivered in {:.1} s: {:.0} events/s; ingest meanwhile {busy_rate:.0} batches/s ({:.2}x of the idle rate)",
        a.events,
        drained.as_secs_f64(),
        a.events as f64 / drained.as_secs_f64(),
        busy_rate / base_rate
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    if a.backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("bench.db")).await.unwrap();
        run(store, &a).await;
    } else {
        let base = std::env::var("AISCOUT_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("aiscout_bench_alerts_{}", std::process::id());
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        let store = PgStore::open(&url).await.unwrap();
        run(store, &a).await;
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    }
}
