//! Issue 14 item 3 over HTTPS: only catalog products are stored, wrong enroll secrets are
//! throttled per source address, and a known host id cannot be taken over with the enroll
//! secret alone (`require_key`), or waits for an admin (`hold`); every attempt is audited.
//!
//! The in-process server of `api.rs` (real TLS, real SQLite), so the store can be read.

use aiscout_collector::api::{Enrollment, ratelimit::FailureThrottle};
use aiscout_collector::model::{ReenrollPolicy, Role};
use aiscout_collector::store::Store;
use aiscout_wire::BatchAck;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::api::{Server, start_enrolling};
use crate::harden::{connect_from, metric, status_line, tls};

const SECRET: &str = "s3cret-enroll-0123456789abcdefghijkl";

fn enroll_body(host: &str, secret: &str, previous: Option<&str>) -> String {
    let mut body = json!({"enroll_secret": secret, "device": {"host_id": host,
        "hostname": format!("{host}-name"), "os": "linux", "os_version": "12",
        "agent_version": "0.1.0"}});
    if let Some(p) = previous {
        body["previous_node_key"] = Value::from(p);
    }
    body.to_string()
}

/// Enrolls; the status, `Retry-After` (if any) and the body.
async fn try_enroll(
    server: &Server,
    host: &str,
    secret: &str,
    previous: Option<&str>,
) -> (StatusCode, Option<u64>, Value) {
    let mut c = server.connect(false).await;
    let headers = [(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    )];
    let r = c
        .request(
            Method::POST,
            "/api/v1/enroll",
            &headers,
            enroll_body(host, secret, previous),
            1 << 20,
        )
        .await
        .unwrap();
    let retry = r
        .headers
        .get(hyper::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (r.status, retry, serde_json::from_slice(&r.body).unwrap())
}

async fn node_key(server: &Server, host: &str, previous: Option<&str>) -> String {
    let (status, _, v) = try_enroll(server, host, SECRET, previous).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["node_key"].as_str().unwrap().to_owned()
}

fn sighting_batch(id: &str, products: &[&str]) -> String {
    let sightings: Vec<Value> = products
        .iter()
        .map(|p| {
            json!({"product": p, "kind": "dns", "value": "x.example", "first_seen": 1_735_689_600,
                "last_seen": 1_735_689_601, "count": 1, "window": 1_735_689_600})
        })
        .collect();
    json!({"batch_id": id, "agent": {"version": "0.1.0", "catalog_version": 1},
        "sightings": sightings})
    .to_string()
}

async fn post_batch(server: &Server, key: &str, body: String) -> (StatusCode, Value) {
    let mut c = server.connect(false).await;
    let (status, bytes) = c.send(Method::POST, "/api/v1/sightings", Some(key), body).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn metrics(server: &Server) -> String {
    let mut c = server.connect(false).await;
    let (status, bytes) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn guards(policy: ReenrollPolicy, burst: u32) -> Enrollment {
    // One more wrong secret an hour: nothing refills while a test runs.
    Enrollment { policy, throttle: FailureThrottle::new(burst, 1) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sightings_of_products_outside_the_served_catalog_answer_400_and_are_never_stored() {
    let server = start_enrolling(Enrollment::default()).await;
    let key = node_key(&server, "host-1", None).await;
    let (status, v) =
        post_batch(&server, &key, sighting_batch("b1", &["openai.chatgpt", "evil.backdoor"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "sightings[1].product");
    assert!(v["error"].as_str().unwrap().contains("\"evil.backdoor\" is not a product"), "{v}");
    // Nothing of the batch was stored: the same batch id, fixed, is new and counted.
    let (status, v) = post_batch(&server, &key, sighting_batch("b1", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let ack: BatchAck = serde_json::from_value(v).unwrap();
    assert!(!ack.duplicate);
    let token = server.token("sec", Role::Security).await;
    let mut c = server.connect(false).await;
    let (status, bytes) = c.send(Method::GET, "/api/v1/inventory", Some(&token), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let products: Vec<&str> =
        v["rows"].as_array().unwrap().iter().map(|r| r["product"].as_str().unwrap()).collect();
    assert_eq!(products, ["openai.chatgpt"]);
    assert_eq!(v["rows"][0]["sightings"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_enroll_secrets_are_throttled_per_source_address_and_counted_in_metrics() {
    let server = start_enrolling(guards(ReenrollPolicy::RequireKey, 3)).await;
    for i in 0..3 {
        let (status, retry, v) = try_enroll(&server, &format!("h{i}"), "wrong", None).await;
        assert_eq!((status, retry), (StatusCode::UNAUTHORIZED, None), "{v}");
    }
    // The bucket of 127.0.0.1 is empty: refused before the secret is looked at, right or not.
    for secret in ["wrong", SECRET] {
        let (status, retry, v) = try_enroll(&server, "h9", secret, None).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert!(retry.is_some_and(|s| (1..=3600).contains(&s)), "Retry-After {retry:?}");
        assert!(v["error"].as_str().unwrap().contains("too many wrong enroll secrets"), "{v}");
    }
    assert!(server.store.devices().await.unwrap().is_empty());
    // Another source address is not affected.
    let tcp = connect_from([127, 0, 0, 2].into(), server.addr).await.unwrap();
    let mut stream = tls(tcp, &server.ca).await.unwrap();
    let body = enroll_body("h-other", SECRET, None);
    let head = format!(
        "POST /api/v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(status_line(&mut stream).await, "HTTP/1.1 200 OK");

    let text = metrics(&server).await;
    let refused = "aiscout_collector_enrollments_refused_total";
    assert_eq!(metric(&text, &format!("{refused}{{reason=\"secret\"}}")), 3);
    assert_eq!(metric(&text, &format!("{refused}{{reason=\"throttled\"}}")), 2);
    assert_eq!(metric(&text, "aiscout_collector_enrollments_total"), 1);
    assert!(!text.contains("127.0.0"), "/metrics names no address:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_host_id_is_not_taken_over_without_its_node_key_and_every_attempt_is_audited() {
    let server = start_enrolling(guards(ReenrollPolicy::RequireKey, 10)).await;
    let real = node_key(&server, "laptop-1", None).await;
    // An attacker with the enroll secret only, or with a made-up key: 403, and the real
    // device keeps reporting.
    for previous in [None, Some("aisnk_madeup")] {
        let (status, _, v) = try_enroll(&server, "laptop-1", SECRET, previous).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
        assert!(v["error"].as_str().unwrap().contains("approve-reenroll"), "{v}");
    }
    let (status, _) = post_batch(&server, &real, sighting_batch("b1", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::OK);
    // The device itself, presenting its key, re-enrolls: the old key stops working.
    let renewed = node_key(&server, "laptop-1", Some(&real)).await;
    let (status, _) = post_batch(&server, &real, sighting_batch("b2", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) =
        post_batch(&server, &renewed, sighting_batch("b2", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::OK);
    // An admin approves a reinstalled machine that lost its key: it gets in once.
    server.store.approve_reenroll("laptop-1".into(), "ann".into(), 1).await.unwrap();
    node_key(&server, "laptop-1", None).await;
    let (status, _, _) = try_enroll(&server, "laptop-1", SECRET, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let audit = server.store.audit(0, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "device.takeover_refused",
            "device.takeover_refused",
            "device.reenroll",
            "device.reenroll_approve",
            "device.reenroll",
            "device.takeover_refused",
        ]
    );
    assert!(audit.iter().all(|e| e.record.subject == "laptop-1"));
    for e in &audit {
        let text = format!("{:?}", e.record);
        assert!(!text.contains("aisnk_"), "no node key in the audit log: {text}");
    }
    let text = metrics(&server).await;
    assert_eq!(
        metric(&text, "aiscout_collector_enrollments_refused_total{reason=\"takeover\"}"),
        3
    );
}

/// Issue 19 over HTTPS: the collector stores the node key an agent proposes, so an agent whose
/// answer was lost gets in again by repeating its proposal; a proposal of the wrong shape is
/// refused by name, and an unknown one proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposed_node_key_is_kept_and_repeating_it_proves_the_host_id() {
    let server = start_enrolling(guards(ReenrollPolicy::RequireKey, 10)).await;
    let enroll = |proposed: String| {
        let server = &server;
        async move {
            let mut body: Value =
                serde_json::from_str(&enroll_body("laptop-1", SECRET, None)).unwrap();
            body["proposed_node_key"] = Value::from(proposed);
            let mut c = server.connect(false).await;
            let headers = [(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            )];
            let r = c
                .request(Method::POST, "/api/v1/enroll", &headers, body.to_string(), 1 << 20)
                .await
                .unwrap();
            (r.status, serde_json::from_slice::<Value>(&r.body).unwrap())
        }
    };
    let proposed = "aisnk_".to_owned() + &"3e".repeat(32);
    let (status, v) = enroll(proposed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["node_key"], proposed.as_str(), "the proposal is the node key");
    // The answer "was lost": the same request again is let in, with the same key.
    let (status, v) = enroll(proposed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["node_key"], proposed.as_str());
    let (status, _) =
        post_batch(&server, &proposed, sighting_batch("b1", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::OK);
    // Another machine proposing a key of its own proves nothing.
    let (status, v) = enroll("aisnk_".to_owned() + &"4f".repeat(32)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // A proposal that is not 32 random bytes in hex is refused by name.
    let (status, v) = enroll("aisnk_short".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("proposed_node_key"), "{v}");
    let audit = server.store.audit(0, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(actions, ["device.reenroll", "device.takeover_refused"]);
    for e in &audit {
        let text = format!("{:?}", e.record);
        assert!(!text.contains("aisnk_"), "no node key in the audit log: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_queues_a_reenrollment_for_an_admin_and_replace_lets_it_through() {
    let server = start_enrolling(guards(ReenrollPolicy::Hold, 10)).await;
    let first = node_key(&server, "vdi-7", None).await;
    let (status, retry, v) = try_enroll(&server, "vdi-7", SECRET, None).await;
    assert_eq!((status, retry), (StatusCode::CONFLICT, Some(30)), "{v}");
    let held = server.store.reenroll_requests().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].host_id.as_str(), held[0].source.as_str()), ("vdi-7", "127.0.0.1"));
    let (status, _) = post_batch(&server, &first, sighting_batch("b1", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::OK, "a held request changes no key");
    server.store.approve_reenroll("vdi-7".into(), "ann".into(), 1).await.unwrap();
    node_key(&server, "vdi-7", None).await;
    assert!(server.store.reenroll_requests().await.unwrap().is_empty());
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "aiscout_collector_enrollments_refused_total{reason=\"held\"}"), 1);

    // `replace`, the behaviour before issue 14, is still there for those who choose it.
    let server = start_enrolling(guards(ReenrollPolicy::Replace, 10)).await;
    let first = node_key(&server, "kiosk", None).await;
    node_key(&server, "kiosk", None).await;
    let (status, _) = post_batch(&server, &first, sighting_batch("b1", &["openai.chatgpt"])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let audit = server.store.audit(0, 100).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].record.action, "device.reenroll");
}

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");

async fn send(c: &mut aiscout_collector::client::Connection, body: &str) -> StatusCode {
    c.send(Method::POST, "/api/v1/enroll", None, body.to_owned()).await.unwrap().0
}

fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("AISCOUT_ENROLL_SECRET")
        .output()
        .unwrap()
}

/// The real binary: `check-config` refuses a short enroll secret and a bad policy name without
/// showing the secret, and `device approve-reenroll` lets a refused machine in while `serve`
/// runs on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_short_secrets_and_the_cli_approves_a_reenrollment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("enroll-secret");
    let config = dir.path().join("collector.toml");
    std::fs::write(&secret, "only-31-bytes-long-secret-12345\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "enroll_secret_file = {:?}\n[enroll]\nreenroll = \"takeover\"\n",
            secret.display().to_string()
        ),
    )
    .unwrap();
    let out = cli(dir.path(), &["--config", config.to_str().unwrap(), "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("enroll_secret_file: the enroll secret is 31 bytes"), "{stderr}");
    assert!(stderr.contains("enroll.reenroll: \"takeover\" is not replace"), "{stderr}");
    assert!(!stderr.contains("only-31-bytes"), "the secret is never shown: {stderr}");

    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::write(
        &config,
        format!(
            "enroll_secret_file = {:?}\n[enroll]\nreenroll = \"require_key\"\n",
            secret.display().to_string()
        ),
    )
    .unwrap();
    let out = cli(dir.path(), &["--config", config.to_str().unwrap(), "check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let server =
        crate::process::Collector::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ca = crate::process::generated_cert(dir.path());
    let mut c = crate::process::connect(server.addr, &ca, false).await;
    let body = enroll_body("lab-1", SECRET, None);
    assert_eq!(send(&mut c, &body).await, StatusCode::OK);
    assert_eq!(send(&mut c, &body).await, StatusCode::FORBIDDEN);
    let out = cli(dir.path(), &["device", "approve-reenroll", "lab-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "approved the next enrollment of lab-1"
    );
    let out = cli(dir.path(), &["device", "reenrollments"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.starts_with("lab-1\t") && listed.contains("approved by cli"), "{listed}");
    assert_eq!(send(&mut c, &body).await, StatusCode::OK);
    assert_eq!(send(&mut c, &body).await, StatusCode::FORBIDDEN, "the approval was used up");
    let out = cli(dir.path(), &["device", "approve-reenroll", ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("host id: expected 1 to 128"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_keeps_cloned_machines_as_distinct_flagged_devices() {
    let server = start_enrolling(guards(ReenrollPolicy::Separate, 10)).await;
    let golden = node_key(&server, "golden", None).await;
    let clone = node_key(&server, "golden", None).await;
    for (key, batch) in [(&golden, "b1"), (&clone, "b1"), (&golden, "b2")] {
        let (status, v) =
            post_batch(&server, key, sighting_batch(batch, &["openai.chatgpt"])).await;
        assert_eq!(status, StatusCode::OK, "neither evicts the other: {v}");
    }
    let token = server.token("sec", Role::Security).await;
    let mut c = server.connect(false).await;
    let (status, bytes) = c.send(Method::GET, "/api/v1/devices", Some(&token), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let listed: Vec<(String, Value)> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["host_id"].as_str().unwrap().to_owned(), d["duplicate_of"].clone()))
        .collect();
    assert_eq!(
        listed,
        [("golden".to_owned(), Value::Null), ("golden#2".to_owned(), Value::from("golden"))]
    );
}
