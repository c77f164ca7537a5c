//! Alerts end to end: the real `aiscout-collector serve` delivering to a real HTTPS webhook
//! receiver that this test starts on loopback (the collector's own TLS server code with a
//! certificate made by rcgen). The receiver checks every signature the way the README tells
//! receivers to, and records every event id, so duplicates and losses can be counted.
//!
//! Cases: every event reaches the receiver once while it answers 500s, 429s with
//! `Retry-After`, is slow, and is down for a while; a collector SIGKILLed between the change
//! and the delivery delivers after restart, once; two collectors on one PostgreSQL deliver
//! each event once.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiscout_collector::api;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper::Method;
use ring::hmac;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::process::{
    Collector, connect, enroll, enroll_secret_file, generated_cert, two_collectors,
};
use crate::store::harness::{drop_schema, pg_schema};

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");
const HOOK_SECRET: &str = "webhook-signing-secret-0123456789";
/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// What the receiver does with the next request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answer 500 without taking the event.
    Error,
    /// Answer 429 with `Retry-After: N`.
    TooMany(u32),
    /// Take the event after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Seen {
    /// Event ids in arrival order (a repeat shows up twice).
    ids: Vec<String>,
    /// Bodies by id.
    bodies: BTreeMap<String, Value>,
    /// Requests whose signature did not verify.
    bad_signatures: u64,
    /// Requests answered with a fault.
    faults: u64,
}

struct Receiver {
    seen: Mutex<Seen>,
    script: Mutex<VecDeque<Fault>>,
}

/// A receiver's server, stopped on drop.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _sent = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ended = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _sent = stop.send(());
        }
    }
}

/// Verifies `X-Aiscout-Signature: t=T,v1=HEX` as the README tells receivers to.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers.get("x-aiscout-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((t, v1)) = sig.strip_prefix("t=").and_then(|s| s.split_once(",v1=")) else {
        return false;
    };
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    let Ok(tag) = (0..v1.len() / 2)
        .map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    hmac::verify(&key, &signed, &tag).is_ok()
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = r.script.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Error) => {
            r.seen.lock().unwrap().faults += 1;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(Fault::TooMany(secs)) => {
            r.seen.lock().unwrap().faults += 1;
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())])
                .into_response();
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let mut seen = r.seen.lock().unwrap();
    if !verify(&headers, &body) {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let key = headers.get("idempotency-key").and_then(|k| k.to_str().ok()).unwrap_or_default();
    assert_eq!(key, id, "the idempotency key is the event id");
    seen.ids.push(id.clone());
    seen.bodies.insert(id, v);
    StatusCode::NO_CONTENT.into_response()
}

/// The receiver's certificate (for `localhost`) and key, and its PEM for the channel's
/// `ca_file`.
fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.der().clone(), key, pem)
}

impl Receiver {
    fn new(script: &[Fault]) -> Arc<Receiver> {
        Arc::new(Receiver {
            seen: Mutex::new(Seen::default()),
            script: Mutex::new(script.iter().copied().collect()),
        })
    }

    /// Serves on `addr` (port 0 for any) until the returned handle stops.
    async fn serve(
        self: &Arc<Self>,
        addr: SocketAddr,
        cert: &(CertificateDer<'static>, PrivateKeyDer<'static>, String),
    ) -> (SocketAddr, Running) {
        let tls = api::tls::server_config(vec![cert.0.clone()], cert.1.clone_key()).unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/hook", post(hook)).with_state(Arc::clone(self));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let counters = Arc::default();
        let task = tokio::spawn(api::serve(
            listener,
            router,
            Some(tls),
            api::Limits::default(),
            counters,
            async {
                drop(stopped.await);
            },
        ));
        (addr, Running { stop: Some(stop), task: Some(task) })
    }

    fn ids(&self) -> Vec<String> {
        self.seen.lock().unwrap().ids.clone()
    }

    /// Waits until `n` events arrived, then a little longer for any repeat.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let until = tokio::time::Instant::now() + DEADLINE;
        while self.ids().len() < n {
            assert!(
                tokio::time::Instant::now() < until,
                "only {} of {n} events arrived: {:?}",
                self.ids().len(),
                self.ids()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A repeat would come from a retry of a delivery that did arrive: the slowest path is
        // a lost lease (60 s); an ordinary retry comes within seconds.
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.ids()
    }
}

/// Writes the config with one webhook channel to `url`.
fn config(dir: &Path, url: &str, ca_pem: &str, extra: &str) -> PathBuf {
    let ca = dir.join("receiver-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, HOOK_SECRET).unwrap();
    let path = dir.join("collector.toml");
    let text = format!(
        "[alerts]\nconsole_url = \"https://aiscout.example.com\"\n\
         [[alerts.channel]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"{url}\"\n\
         secret_file = \"{}\"\nca_file = \"{}\"\n{extra}",
        secret.display(),
        ca.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A batch of one sighting of each of `products`, as an agent sends it.
pub(crate) fn sightings(id: &str, products: &[&str], at: i64) -> Vec<u8> {
    let sightings: Vec<Value> = products
        .iter()
        .map(|p| {
            json!({"product": p, "kind": "dns", "value": format!("{p}.example"), "process": "firefox",
                   "first_seen": at, "last_seen": at + 1, "count": 1, "window": at - at % 3600})
        })
        .collect();
    json!({"batch_id": id, "agent": {"version": "0.1.0", "catalog_version": 1},
           "sightings": sightings, "dropped": 0, "evicted": 0})
    .to_string()
    .into_bytes()
}

pub(crate) fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub(crate) async fn post_batch(
    c: &mut aiscout_collector::client::Connection,
    key: &str,
    body: Vec<u8>,
) {
    let (status, bytes) = c.send(Method::POST, "/api/v1/sightings", Some(key), body).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
}

pub(crate) fn assert_once(ids: &[String]) {
    let mut sorted = ids.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "an event arrived twice: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_through_errors_throttling_slowness_and_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    // 500, 500, 429 (retry after 2 s), then slow: the first event takes four tries.
    let receiver = Receiver::new(&[
        Fault::Error,
        Fault::Error,
        Fault::TooMany(2),
        Fault::Slow(Duration::from_secs(2)),
    ]);
    let (addr, running) = receiver.serve("127.0.0.1:0".parse().unwrap(), &cert).await;
    let url = format!("https://localhost:{}/hook", addr.port());
    let config = config(dir.path(), &url, &cert.2, "");
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    let ids = receiver.wait_for(2).await;
    assert_once(&ids);

    // A review decision is an event too, sent by the token's holder through the API.
    let token = run(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "token",
        "create",
        "--role",
        "security",
        "--name",
        "sec",
    ]);
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let (status, bytes) = c
        .send(
            Method::PUT,
            "/api/v1/products/openai.chatgpt/review",
            Some(&token),
            json!({"status": "blocked", "note": "use the sanctioned one"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");

    // The receiver goes away; a blocked product comes back and a new one appears meanwhile.
    running.stop().await;
    let later = aiscout_collector::store::now() + 1;
    post_batch(&mut c, &key, sightings("b2", &["openai.chatgpt", "github.copilot"], later)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, _running) = receiver.serve(addr, &cert).await;
    let ids = receiver.wait_for(5).await;
    assert_once(&ids);
    assert_eq!(ids.len(), 5, "{ids:?}");
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0);
    assert_eq!(seen.faults, 3);
    let types: BTreeMap<String, usize> = seen.bodies.values().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(v["type"].as_str().unwrap().to_owned()).or_default() += 1;
        m
    });
    let want: BTreeMap<String, usize> = [
        ("product.discovered".to_owned(), 3),
        ("review.changed".to_owned(), 1),
        ("product.blocked_seen".to_owned(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(types, want);
    let blocked = seen.bodies.values().find(|v| v["type"] == "product.blocked_seen").unwrap();
    assert_eq!(blocked["subject"]["product"], "openai.chatgpt");
    assert_eq!(blocked["subject"]["device"], "laptop-1");
    assert_eq!(blocked["subject"]["status"], "blocked");
    assert_eq!(blocked["url"], "https://aiscout.example.com/products/openai.chatgpt");
    let review = seen.bodies.values().find(|v| v["type"] == "review.changed").unwrap();
    assert_eq!(
        (review["subject"]["from"].as_str(), review["subject"]["to"].as_str()),
        (Some("unreviewed"), Some("blocked"))
    );
    assert_eq!(review["subject"]["by"], "sec");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_collector_killed_before_delivery_arrives_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    // Reserve a port for the receiver, which is not there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://localhost:{port}/hook");
    let config = config(dir.path(), &url, &cert.2, "");
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let mut server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt"], now)).await;
    // Acknowledged (so committed, with its event), then killed before any delivery could
    // succeed.
    server.kill();
    drop(c);
    let receiver = Receiver::new(&[]);
    let (_, _running) = receiver.serve(SocketAddr::from(([127, 0, 0, 1], port)), &cert).await;
    let server = Collector::start(dir.path(), &args);
    let ids = receiver.wait_for(1).await;
    assert_eq!(ids, [aiscout_collector::alerts::event::id("product.discovered", "openai.chatgpt")]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_postgres_deliver_each_event_once() {
    let (db, schema) = pg_schema().await;
    struct Schema(String);
    impl Drop for Schema {
        fn drop(&mut self) {
            drop_schema(&self.0);
        }
    }
    let _schema = Schema(schema);
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    let receiver = Receiver::new(&[Fault::Error, Fault::TooMany(1), Fault::Error]);
    let (addr, _running) = receiver.serve("127.0.0.1:0".parse().unwrap(), &cert).await;
    let url = format!("https://localhost:{}/hook", addr.port());
    let config = config(dir.path(), &url, &cert.2, "");
    let (one, two, d1, d2) = two_collectors(dir.path(), &config, &db);
    // Block a product, then have 30 devices (15 through each collector) use it: one
    // blocked-seen event per device, plus the discovery and the decision.
    let token = run(&[
        "--db",
        &db,
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        d1.to_str().unwrap(),
        "token",
        "create",
        "--role",
        "security",
        "--name",
        "sec",
    ]);
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let mut c1 = connect(one.addr, &generated_cert(&d1), false).await;
    let mut c2 = connect(two.addr, &generated_cert(&d2), false).await;
    let (status, _) = c1
        .send(
            Method::PUT,
            "/api/v1/products/openai.chatgpt/review",
            Some(&token),
            json!({"status": "blocked"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let at = aiscout_collector::store::now() + 5;
    for i in 0..30 {
        let c = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        let key = enroll(c, &format!("laptop-{i}")).await;
        post_batch(c, &key, sightings("b1", &["openai.chatgpt"], at)).await;
    }
    let ids = receiver.wait_for(32).await;
    assert_once(&ids);
    assert_eq!(ids.len(), 32);
    drop((one, two));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_fires_once_for_its_cause() {
    use aiscout_collector::store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let now = aiscout_collector::store::now();
    // A device that enrolled two hours ago and never called again: stale after one hour.
    {
        let store =
            aiscout_collector::store::sqlite::SqliteStore::open(&dir.path().join("aiscout.db"))
                .await
                .unwrap();
        let old = aiscout_collector::model::Device {
            host_id: "old-laptop".into(),
            hostname: "old-laptop".into(),
            os: "linux".into(),
            os_version: "12".into(),
            agent_version: "0.1.0".into(),
            owner_email: Some("ann@example.com".into()),
        };
        store.enroll(old, [9; 32], now - 7_200).await.unwrap();
    }
    let cert = certificate();
    let receiver = Receiver::new(&[]);
    let (addr, _running) = receiver.serve("127.0.0.1:0".parse().unwrap(), &cert).await;
    let url = format!("https://localhost:{}/hook", addr.port());
    let config = config(dir.path(), &url, &cert.2, "");
    // The rules' settings go in [alerts], before the channel table.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[alerts]\n",
        "[alerts]\nrules_every = \"1s\"\nspread_devices = 2\nspread_users = 100\n\
         stale_hours = 1\nrenewal_days = 30\n\
         [[alerts.budget]]\nsource = \"shadow\"\nmonthly = \"100\"\ncurrency = \"USD\"\n\
         levels = [50, 100]\n",
    );
    // TOML: the array of tables must come after the plain keys of [alerts]; the budget table
    // ends the [alerts] keys, so console_url moves above it.
    let text = text.replace("console_url = \"https://aiscout.example.com\"\n", "");
    let text =
        text.replace("[alerts]\n", "[alerts]\nconsole_url = \"https://aiscout.example.com\"\n");
    std::fs::write(&config, text).unwrap();
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, false).await;
    let k1 = enroll(&mut c, "laptop-1").await;
    let k2 = enroll(&mut c, "laptop-2").await;
    // Discovered: ChatGPT and Claude; Claude spreads to two devices.
    post_batch(&mut c, &k1, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    post_batch(&mut c, &k2, sightings("b1", &["anthropic.claude"], now)).await;
    // Decisions: ChatGPT blocked (then seen on laptop-2), Copilot sanctioned with a renewal.
    let data = dir.path().to_str().unwrap();
    let token = run(&[
        "--data-dir",
        data,
        "--config",
        config.to_str().unwrap(),
        "token",
        "create",
        "--role",
        "security",
        "--name",
        "sec",
    ]);
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let renewal = aiscout_collector::ingest::parse::ymd(now + 10 * 86_400);
    for (product, body) in [
        ("openai.chatgpt", json!({"status": "blocked"})),
        ("github.copilot", json!({"status": "sanctioned", "renewal": renewal})),
    ] {
        let path = format!("/api/v1/products/{product}/review");
        let (status, bytes) =
            c.send(Method::PUT, &path, Some(&token), body.to_string()).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{bytes:?}");
    }
    post_batch(&mut c, &k2, sightings("b2", &["openai.chatgpt"], now + 2)).await;
    // Card lines today: an AI-looking line that matches nothing, and ChatGPT; 69.00 of
    // shadow spend passes half of the 100.00 budget, not all of it.
    let today = aiscout_collector::ingest::parse::ymd(now);
    let csv = dir.path().join("card.csv");
    std::fs::write(
        &csv,
        format!(
            "date,amount,currency,descriptor,payer_email\n\
             {today},49.00,USD,NEURAL WRITER AI LABS,ann@example.com\n\
             {today},20.00,USD,OPENAI *CHATGPT SUBSCR,ann@example.com\n"
        ),
    )
    .unwrap();
    run(&["--data-dir", data, "import", "expenses", csv.to_str().unwrap()]);
    // A reviewer teaches the candidate's descriptor (issue 17): `descriptor.taught`.
    let teach = json!({"descriptor": "NEURAL WRITER AI LABS", "product": "anthropic.claude"});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/mappings", Some(&token), teach.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{bytes:?}");

    let ids = receiver.wait_for(11).await;
    // The rules keep running every second: nothing more may come.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ids_after = receiver.ids();
    assert_eq!(ids_after.len(), ids.len(), "no event twice: {ids_after:?}");
    assert_once(&ids_after);
    let seen = receiver.seen.lock().unwrap();
    let mut types: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in seen.bodies.values() {
        let about = v["subject"]["product"]
            .as_str()
            .or(v["subject"]["device"].as_str())
            .or(v["subject"]["scope"].as_str())
            .unwrap_or("")
            .to_owned();
        types.entry(v["type"].as_str().unwrap().to_owned()).or_default().push(about);
    }
    for list in types.values_mut() {
        list.sort();
    }
    let want: BTreeMap<String, Vec<String>> = [
        ("product.discovered", vec!["anthropic.claude", "openai.chatgpt"]),
        ("product.spread", vec!["anthropic.claude"]),
        ("product.blocked_seen", vec!["openai.chatgpt"]),
        ("review.changed", vec!["github.copilot", "openai.chatgpt"]),
        ("expense.candidate", vec![""]),
        ("spend.threshold", vec!["all"]),
        ("agent.stale", vec!["old-laptop"]),
        ("subscription.renewal", vec!["github.copilot"]),
        ("descriptor.taught", vec!["anthropic.claude"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(types, want);
    let threshold = seen.bodies.values().find(|v| v["type"] == "spend.threshold").unwrap();
    assert_eq!(threshold["subject"]["level"], 50);
    assert_eq!(threshold["subject"]["spent_minor"], 6_900);
    let candidate = seen.bodies.values().find(|v| v["type"] == "expense.candidate").unwrap();
    assert_eq!(candidate["subject"]["expense"]["descriptor"], "NEURAL WRITER AI LABS");
    let taught = seen.bodies.values().find(|v| v["type"] == "descriptor.taught").unwrap();
    assert_eq!(
        (taught["subject"]["by"].as_str(), taught["subject"]["lines"].as_u64()),
        (Some("sec"), Some(1))
    );
    assert_eq!(taught["url"], "https://aiscout.example.com/products/anthropic.claude");
    drop(server);
}

#[test]
fn check_config_names_every_alert_problem_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "tooshort-secret").unwrap();
    let file = dir.path().join("collector.toml");
    std::fs::write(
        &file,
        format!(
            "[alerts]\nrules_every = \"0s\"\n\
             [[alerts.channel]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://hooks.example.com/x\"\n\
             secret_file = \"{}\"\nevents = [\"product.found\"]\n\
             [[alerts.channel]]\nname = \"soc\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/X\"\n\
             [[alerts.budget]]\nmonthly = \"lots\"\n",
            short.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    let err = crate::assert_config_problems(
        &out,
        6,
        &[
            "alerts.rules_every:",
            "alerts.channel[0].url:",
            "alerts.channel[0].secret_file:",
            "alerts.channel[0].events:",
            "alerts.channel[1].name:",
            "alerts.budget[0].monthly:",
        ],
    );
    assert!(!err.contains("tooshort-secret"), "a secret reached the output: {err}");

    std::fs::write(
        &file,
        "[[alerts.channel]]\nname = \"teams\"\nkind = \"teams\"\n\
         url = \"https://example.webhook.office.com/workflows/abc\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A local Jira that follows the REST API v2 shapes `alerts::jira` relies on (see the facts
/// and sources at the top of collector/src/alerts/jira.rs): `POST /rest/api/2/issue` answers
/// `201 {"id","key","self"}`, `POST /rest/api/2/issue/{key}/comment` answers `201` (`404` for
/// an unknown issue); both require `Authorization: Basic base64(user:token)`.
#[derive(Default)]
struct Jira {
    issues: Mutex<Vec<Value>>,
    comments: Mutex<Vec<(String, String)>>,
    fail_next: Mutex<u32>,
    refused: Mutex<u32>,
}

const JIRA_TOKEN: &str = "jira-api-token-0123456789";

fn jira_auth(headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("sec-bot@example.com:{JIRA_TOKEN}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

async fn jira_issue(State(j): State<Arc<Jira>>, headers: HeaderMap, body: Bytes) -> Response {
    if !jira_auth(&headers) {
        *j.refused.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    {
        let mut fail = j.fail_next.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let fields = &v["fields"];
    assert_eq!(fields["project"]["key"], "SEC");
    assert_eq!(fields["issuetype"]["name"], "Task");
    assert!(fields["summary"].as_str().is_some_and(|s| !s.is_empty()));
    let mut issues = j.issues.lock().unwrap();
    issues.push(v.clone());
    let key = format!("SEC-{}", issues.len());
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": format!("1000{}", issues.len()), "key": key,
        "self": format!("https://jira.example/rest/api/2/issue/{key}")})),
    )
        .into_response()
}

async fn jira_comment(
    State(j): State<Arc<Jira>>,
    axum::extract::Path(key): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !jira_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n: usize = key.strip_prefix("SEC-").and_then(|n| n.parse().ok()).unwrap_or(0);
    if n == 0 || n > j.issues.lock().unwrap().len() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    j.comments.lock().unwrap().push((key, v["body"].as_str().unwrap().to_owned()));
    (StatusCode::CREATED, axum::Json(json!({"id": "1"}))).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoveries_and_candidates_become_jira_issues_and_decisions_comment_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    let jira = Arc::new(Jira { fail_next: Mutex::new(1), ..Jira::default() });
    let tls = api::tls::server_config(vec![cert.0.clone()], cert.1.clone_key()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/rest/api/2/issue", post(jira_issue))
        .route("/rest/api/2/issue/{key}/comment", post(jira_comment))
        .with_state(Arc::clone(&jira));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(
        listener,
        router,
        Some(tls),
        api::Limits::default(),
        Arc::default(),
        async {
            drop(stopped.await);
        },
    ));
    let ca = dir.path().join("jira-ca.pem");
    std::fs::write(&ca, &cert.2).unwrap();
    let token = dir.path().join("jira.token");
    std::fs::write(&token, JIRA_TOKEN).unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts.channel]]\nname = \"tickets\"\nkind = \"jira\"\nurl = \"https://localhost:{}\"\n\
             project = \"SEC\"\nusername = \"sec-bot@example.com\"\nsecret_file = \"{}\"\nca_file = \"{}\"\n\
             events = [\"product.discovered\", \"expense.candidate\", \"review.changed\"]\n",
            addr.port(),
            token.display(),
            ca.display()
        ),
    )
    .unwrap();
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let mut c = connect(server.addr, &generated_cert(dir.path()), false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt"], now)).await;
    let data = dir.path().to_str().unwrap();
    let csv = dir.path().join("card.csv");
    std::fs::write(
        &csv,
        format!(
            "date,amount,currency,descriptor,payer_email\n{},49.00,USD,NEURAL WRITER AI LABS,ann@example.com\n",
            aiscout_collector::ingest::parse::ymd(now)
        ),
    )
    .unwrap();
    run(&["--data-dir", data, "import", "expenses", csv.to_str().unwrap()]);
    let until = std::time::Instant::now() + DEADLINE;
    while jira.issues.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < until, "the issues never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The decision comments on the product's issue.
    let sec = run(&["--data-dir", data, "token", "create", "--role", "security", "--name", "sec"]);
    let sec = String::from_utf8(sec.stdout).unwrap().trim().to_owned();
    let (status, _) = c
        .send(
            Method::PUT,
            "/api/v1/products/openai.chatgpt/review",
            Some(&sec),
            json!({"status": "blocked", "note": "use the gateway"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    while jira.comments.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < until, "the comment never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let issues = jira.issues.lock().unwrap().clone();
    assert_eq!(issues.len(), 2, "one issue per subject, the 500 retried once: {issues:?}");
    let summaries: Vec<&str> =
        issues.iter().map(|i| i["fields"]["summary"].as_str().unwrap()).collect();
    assert!(
        summaries.iter().any(|s| s.contains("New AI tool discovered: ChatGPT")),
        "{summaries:?}"
    );
    assert!(
        summaries.iter().any(|s| s.contains("Possible AI expense: NEURAL WRITER AI LABS")),
        "{summaries:?}"
    );
    let chatgpt = issues
        .iter()
        .position(|i| i["fields"]["summary"].as_str().unwrap().contains("ChatGPT"))
        .unwrap();
    let comments = jira.comments.lock().unwrap().clone();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0].0, format!("SEC-{}", chatgpt + 1));
    assert!(comments[0].1.contains("unreviewed → blocked by sec"), "{}", comments[0].1);
    assert_eq!(*jira.refused.lock().unwrap(), 0);
    let _stopped = stop.send(());
    drop(server);
}
