//! The organisation overlay over HTTPS (issue 17): an admin stores it, agents fetch it signed
//! with the collector's key, sightings of its products are accepted, and traffic straight to
//! a provider API host a sanctioned gateway fronts is reported as bypass with the device and
//! the process; traffic to the gateway host itself is not.

use aiscout_collector::api::overlay::OverlaySigner;
use aiscout_collector::model::Role;
use aiscout_signatures::{Verifier, VerifyError};
use aiscout_wire::Secret;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{enroll, start_tuned};

const DOC: &str = r#"{
    "products": [{"id": "org.helpdesk-bot", "name": "Helpdesk Bot", "category": "chat",
                  "domains": [["helpbot.corp.example", "web"]]}],
    "gateways": [{"id": "org.llm-gateway", "host": "llm.corp.example", "fronts": ["openai.api"]}]
}"#;

fn sighting(product: &str, value: &str, process: &str) -> Value {
    json!({"product": product, "kind": "tls_sni", "value": value, "user": "u1",
           "process": process, "first_seen": 1_700_000_000, "last_seen": 1_700_000_100,
           "count": 3, "window": 1_699_999_200})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_overlay_is_served_and_bypass_names_the_device_and_process() {
    let (private, public) = aiscout_signatures::sign::generate().unwrap();
    let server = start_tuned(100, Default::default(), |s| {
        s.overlay = Some(OverlaySigner::new(Secret::new(private)));
    })
    .await;
    let mut c = server.connect(true).await;
    let key = enroll(&mut c, "laptop-7").await;
    let admin = server.token("admin", Role::Admin).await;
    let viewer = server.token("viewer", Role::Procurement).await;

    // None yet: 404, and a product of the overlay is refused in a batch.
    let (status, _) = c.send(Method::GET, "/api/v1/overlay", Some(&key), "").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Only an admin writes it; a collision is refused naming the entry and field.
    let (status, _) =
        c.send(Method::PUT, "/api/v1/overlay/document", Some(&viewer), DOC).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let clash = r#"{"products":[{"id":"org.x","name":"X","category":"chat","domains":[["chatgpt.com","web"]]}]}"#;
    let (status, bytes) =
        c.send(Method::PUT, "/api/v1/overlay/document", Some(&admin), clash).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("already an indicator of the vendor product openai.chatgpt"), "{text}");
    for expected in [1, 2] {
        let (status, bytes) =
            c.send(Method::PUT, "/api/v1/overlay/document", Some(&admin), DOC).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{bytes:?}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["version"], expected);
    }

    // The agent's view: the artifact verifies against the collector's public key, is
    // version 2, and an agent that accepted 3 would refuse it (no rollback).
    let (status, bytes) = c.send(Method::GET, "/api/v1/overlay", Some(&key), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let verifier = Verifier::from_hex(&public).unwrap();
    let overlay = verifier.verify_overlay(&bytes, Some(2)).unwrap();
    assert_eq!(overlay.version(), 2);
    assert_eq!(overlay.gateways()[0].host, "llm.corp.example");
    assert_eq!(
        verifier.verify_overlay(&bytes, Some(3)),
        Err(VerifyError::Rollback { offered: 2, current: 3 })
    );
    let (_, other) = aiscout_signatures::sign::generate().unwrap();
    let other = Verifier::from_hex(&other).unwrap();
    assert_eq!(other.verify_overlay(&bytes, None), Err(VerifyError::BadSignature));
    // The heartbeat names the overlay version.
    let hb = json!({"agent": {"version": "0.1.0", "catalog_version": 0}, "interfaces": [],
                    "packets": 0, "drops": 0, "spool_depth": 0, "evictions": 0});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/heartbeat", Some(&key), hb.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    let ack: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(ack["overlay_version"], 2);

    // The device talks to the OpenAI API straight from python3, to the gateway from curl,
    // and to ChatGPT on the web from firefox: only the first is bypass.
    let batch = json!({"batch_id": "b1", "agent": {"version": "0.1.0", "catalog_version": 0},
                       "sightings": [
        sighting("openai.api", "api.openai.com", "python3"),
        sighting("org.llm-gateway", "llm.corp.example", "curl"),
        sighting("org.helpdesk-bot", "helpbot.corp.example", "firefox"),
        sighting("openai.chatgpt", "chatgpt.com", "firefox"),
    ], "dropped": 0, "evicted": 0});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/sightings", Some(&key), batch.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    let (status, bytes) =
        c.send(Method::GET, "/api/v1/reports/bypass", Some(&viewer), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(report["overlay_version"], 2);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["host_id"], "laptop-7");
    assert_eq!(rows[0]["process"], "python3");
    assert_eq!(rows[0]["host"], "api.openai.com");
    assert_eq!(rows[0]["gateway_host"], "llm.corp.example");
    assert_eq!(rows[0]["count"], 3);
}
