//! The HTTPS API end to end: a real server on 127.0.0.1 with rcgen certificates (a test CA
//! and a leaf for `localhost`), a real rustls client trusting that CA, and a SQLite store.

use std::sync::Arc;

use aiscout_collector::api::{self, AppState, ratelimit::RateLimiter};
use aiscout_collector::client::{Connection, tls_config};
use aiscout_collector::model::{Role, Token};
use aiscout_collector::review;
use aiscout_collector::store::Store;
use aiscout_collector::store::sqlite::SqliteStore;
use aiscout_collector::telemetry::Metrics;
use aiscout_wire::{BatchAck, ErrorBody, Secret};
use hyper::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

pub(crate) const SECRET: &str = "s3cret-enroll-0123456789abcdefghijkl";
const BATCH: &[u8] = include_bytes!("../../wire/tests/data/v1/sighting_batch.json");

pub(crate) struct Server {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) store: SqliteStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error only means the server task has already ended.
            let _sent = stop.send(());
        }
    }
}

fn certificates() -> (CertificateDer<'static>, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)
{
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // A name of its own: with rcgen's default name on both, OpenSSL clients (the SCIM
    // conformance checker) take the leaf for self-signed.
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "aiscout test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca.der().clone(), vec![leaf.der().clone()], key)
}

pub(crate) async fn start(burst: u32) -> Server {
    start_with(burst, Default::default()).await
}

pub(crate) async fn start_with(
    burst: u32,
    console: aiscout_collector::console::Settings,
) -> Server {
    start_tuned(burst, console, |_| {}).await
}

/// A server with its enrollment guards set (`[enroll]`).
pub(crate) async fn start_enrolling(enrollment: api::Enrollment) -> Server {
    start_tuned(100, Default::default(), |state| state.enrollment = enrollment).await
}

/// [`start_with`], with the state changed by `tune` before the server starts (another catalog,
/// policy, transparency or enrollment settings).
pub(crate) async fn start_tuned(
    burst: u32,
    console: aiscout_collector::console::Settings,
    tune: impl FnOnce(&mut AppState<SqliteStore>),
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let (ca, chain, key) = certificates();
    let tls = api::tls::server_config(chain, key).unwrap();
    let mut state = AppState {
        store: store.clone(),
        catalog: aiscout_signatures::Catalog::builtin().unwrap(),
        artifact: None,
        enroll_secret: Some(Secret::new(SECRET)),
        metrics: Metrics::default(),
        limiter: RateLimiter::new(1, burst),
        mappings: Default::default(),
        console,
        sso: None,
        policy: Default::default(),
        cache: Default::default(),
        metrics_token: None,
        uploads: api::upload::Uploads::new(dir.path().join("uploads"), 2),
        alerts: Arc::default(),
        enrollment: api::Enrollment::default(),
        overlay: None,
        overlay_cache: Default::default(),
        risk: Default::default(),
    };
    tune(&mut state);
    let state = Arc::new(state);
    let counters = Arc::clone(&state.metrics.connections);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = api::Limits { max_connections: 64, ..api::Limits::default() };
    tokio::spawn(api::serve(listener, api::router(state), Some(tls), limits, counters, async {
        drop(stopped.await);
    }));
    Server { addr, ca, store, stop: Some(stop), _dir: dir }
}

impl Server {
    pub(crate) async fn connect(&self, http2: bool) -> Connection {
        let tls = tls_config(std::slice::from_ref(&self.ca), http2).unwrap();
        Connection::connect(self.addr, "localhost", tls).await.unwrap()
    }

    pub(crate) async fn token(&self, name: &str, role: Role) -> String {
        let secret = aiscout_collector::credentials::generate("aistk_").unwrap();
        let token = Token {
            name: name.into(),
            role,
            created_at: aiscout_wire::UnixSecs(1),
            revoked_at: None,
        };
        let audit = review::token_created(&token, "cli");
        self.store
            .create_token(token, aiscout_collector::credentials::hash(&secret), audit)
            .await
            .unwrap();
        secret
    }
}

pub(crate) async fn enroll(c: &mut Connection, host: &str) -> String {
    let body = json!({"enroll_secret": SECRET, "device": {"host_id": host, "hostname": "h",
        "os": "linux", "os_version": "12", "agent_version": "0.1.0"}});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/enroll", None, body.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["node_key"].as_str().unwrap().to_owned()
}

fn error(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_batch_is_acknowledged_and_counted_once_over_http2() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    assert!(c.is_http2());
    let key = enroll(&mut c, "host-1").await;
    for expected_duplicate in [false, true] {
        let (status, bytes) =
            c.send(Method::POST, "/api/v1/sightings", Some(&key), BATCH).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let ack: BatchAck = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((ack.accepted, ack.duplicate), (2, expected_duplicate));
    }
    let token = server.token("proc", Role::Procurement).await;
    let (status, bytes) = c
        .send(Method::GET, "/api/v1/inventory?product=openai.chatgpt", Some(&token), "")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["rows"][0]["sightings"], 42);
    assert_eq!(v["rows"][0]["status"], "unreviewed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_works_and_wrong_credentials_answer_401() {
    let server = start(100).await;
    let mut c = server.connect(false).await;
    assert!(!c.is_http2());
    let bad = json!({"enroll_secret": "wrong", "device": {"host_id": "h", "hostname": "h",
        "os": "linux", "os_version": "1", "agent_version": "1"}});
    let (status, _) = c.send(Method::POST, "/api/v1/enroll", None, bad.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c.send(Method::POST, "/api/v1/sightings", None, BATCH).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) =
        c.send(Method::POST, "/api/v1/sightings", Some("aisnk_nope"), BATCH).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c.send(Method::GET, "/api/v1/devices", Some("aistk_nope"), "").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c.send(Method::GET, "/healthz", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c.send(Method::GET, "/readyz", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_answer_400_naming_the_field_and_413_when_too_large() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    let key = enroll(&mut c, "host-1").await;
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/sightings", Some(&key), "{not json").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&bytes).field.is_some());
    let mut batch: Value = serde_json::from_slice(BATCH).unwrap();
    batch["sightings"][1]["value"] = json!("x".repeat(5000));
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/sightings", Some(&key), batch.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&bytes).field.as_deref(), Some("sightings[1].value"));
    batch["sightings"][1]["kind"] = json!("telepathy");
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/sightings", Some(&key), batch.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&bytes).field.as_deref(), Some("sightings[1].kind"));
    let huge = vec![b' '; aiscout_wire::validate::MAX_BODY_BYTES + 1];
    let (status, _) = c.send(Method::POST, "/api/v1/sightings", Some(&key), huge).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let token = server.token("proc", Role::Procurement).await;
    let (status, bytes) =
        c.send(Method::GET, "/api/v1/inventory?colour=red", Some(&token), "").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&bytes).field.as_deref(), Some("colour"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_needs_security_role_and_is_audited() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    let proc = server.token("proc", Role::Procurement).await;
    let sec = server.token("sec", Role::Security).await;
    let body = json!({"status": "sanctioned", "note": "contract signed"}).to_string();
    let path = "/api/v1/products/openai.chatgpt/review";
    let (status, _) = c.send(Method::PUT, path, Some(&proc), body.clone()).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .send(Method::PUT, "/api/v1/products/nobody.nothing/review", Some(&sec), body.clone())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        c.send(Method::GET, "/api/v1/products/nobody.nothing", Some(&proc), "").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, bytes) = c.send(Method::PUT, path, Some(&sec), body).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    let (status, bytes) =
        c.send(Method::GET, "/api/v1/products/openai.chatgpt", Some(&proc), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["status"], "sanctioned");
    assert_eq!(v["review"]["reviewed_by"], "sec");
    let (status, bytes) = c.send(Method::GET, "/api/v1/audit", Some(&proc), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let entries = v["entries"].as_array().unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last["action"], "review.set");
    assert_eq!(last["actor"], "sec");
    assert_eq!(last["before"], Value::Null);
    assert_eq!(last["after"]["status"], "sanctioned");
    // The owner, alternative and renewal date go in and come back; a bad date is refused.
    let full = json!({"status": "blocked", "note": "no DPA", "business_owner": "cio@example.com",
        "alternative": "anthropic.claude", "renewal": "2027-02-28"});
    let (status, bytes) = c.send(Method::PUT, path, Some(&sec), full.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (&v["business_owner"], &v["alternative"], &v["renewal"]),
        (&json!("cio@example.com"), &json!("anthropic.claude"), &json!("2027-02-28"))
    );
    for bad in ["2027-02-30", "28/02/2027"] {
        let body = json!({"status": "blocked", "renewal": bad}).to_string();
        let (status, bytes) = c.send(Method::PUT, path, Some(&sec), body).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error(&bytes).field.as_deref(), Some("renewal"));
    }
    // A status the API does not know is the client's mistake (400), not the collector's.
    let body = json!({"status": "maybe"}).to_string();
    let (status, bytes) = c.send(Method::PUT, path, Some(&sec), body).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bytes:?}");
    assert_eq!(error(&bytes).field.as_deref(), Some("status"));
    let (_, bytes) =
        c.send(Method::GET, "/api/v1/products/openai.chatgpt", Some(&proc), "").await.unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["review"]["renewal"], "2027-02-28");
    let now = aiscout_collector::store::now();
    server.store.revoke_token("sec".into(), now, review::token_revoked("cli", now)).await.unwrap();
    let (status, _) = c.send(Method::GET, "/api/v1/audit", Some(&sec), "").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_burst_gets_429_and_others_do_not() {
    let server = start(3).await;
    let mut c = server.connect(true).await;
    let a = enroll(&mut c, "host-a").await;
    let b = enroll(&mut c, "host-b").await;
    let hb = include_str!("../../wire/tests/data/v1/heartbeat.json");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.send(Method::POST, "/api/v1/heartbeat", Some(&a), hb).await.unwrap().0);
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = c.send(Method::POST, "/api/v1/heartbeat", Some(&b), hb).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let token = server.token("proc", Role::Procurement).await;
    let (_, bytes) = c.send(Method::GET, "/api/v1/devices", Some(&token), "").await.unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["devices"][0]["health"]["spool_depth"], 17);
    let (_, bytes) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("aiscout_collector_rate_limited_total 1"), "{text}");
    let (status, _) = c.send(Method::GET, "/api/v1/catalog", Some(&b), "").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "no --catalog: nothing to serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_expense_export_is_imported_once_and_shows_in_inventory_and_reconcile() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    let proc = server.token("proc", Role::Procurement).await;
    let sec = server.token("sec", Role::Security).await;
    let csv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/expenses/brex.csv"))
        .unwrap();
    let path = "/api/v1/imports/expenses?name=brex.csv";
    let (status, _) = c.send(Method::POST, path, Some(&sec), csv.clone()).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    for stored in [6, 0] {
        let (status, bytes) = c.send(Method::POST, path, Some(&proc), csv.clone()).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{bytes:?}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((v["format"].as_str(), v["stored"].as_u64()), (Some("brex"), Some(stored)));
        assert_eq!(v["not_spend"], 1);
    }
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/imports/expenses", Some(&proc), "a,b\n1,2\n").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&bytes).error.contains("not a known expense export"));
    // Each upload went to a file on disk, removed when its request ended.
    let left = std::fs::read_dir(server._dir.path().join("uploads")).unwrap().count();
    assert_eq!(left, 0, "upload files left behind");
    let (status, bytes) =
        c.send(Method::GET, "/api/v1/inventory?source=expense", Some(&proc), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let claude = v["rows"].as_array().unwrap().iter().find(|r| r["product"] == "anthropic.claude");
    assert_eq!(claude.unwrap()["expense_spend"][0]["amount"], "100.00");
    let (status, bytes) =
        c.send(Method::GET, "/api/v1/reports/reconcile", Some(&proc), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["paid_not_sanctioned"].as_array().unwrap().len(), 3);
}
