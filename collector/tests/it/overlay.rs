//! The organisation overlay over HTTPS (issue 17): an admin stores it, agents fetch it signed
//! with the collector's key, sightings of its products are accepted, and traffic straight to
//! a provider API host a sanctioned gateway fronts is reported as bypass with the device and
//! the process; traffic to the gateway host itself is not.

use aiscout_collector::api::overlay::OverlaySigner;
use aiscout_collector::model::Role;
use aiscout_signatures::{Artifact, Verifier, VerifyError};
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
        Err(VerifyError::Rollback { artifact: Artifact::Overlay, offered: 2, current: 3 })
    );
    let (_, other) = aiscout_signatures::sign::generate().unwrap();
    let other = Verifier::from_hex(&other).unwrap();
    assert_eq!(
        other.verify_overlay(&bytes, None),
        Err(VerifyError::BadSignature(Artifact::Overlay))
    );
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

fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Issue 17, the admin's side: the console page and the CLI write through the same validated,
/// audited code; only an admin may open or post; a refusal names the field and keeps what was
/// typed; the agent-facing artifact carries every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_cli_edit_the_overlay_through_one_audited_write() {
    use aiscout_collector::cli::{OverlayCommand, overlay};
    use aiscout_collector::model::AuditFilter;
    use aiscout_collector::store::Store;

    use crate::console::{csrf, get, post_with_cookie, sign_in};

    let (private, public) = aiscout_signatures::sign::generate().unwrap();
    let server = start_tuned(100, Default::default(), |s| {
        s.overlay = Some(OverlaySigner::new(Secret::new(private)));
    })
    .await;
    let mut c = server.connect(false).await;
    let security = server.token("sam", Role::Security).await;
    let cookie = sign_in(&mut c, &security).await;
    let (status, _, body) = get(&mut c, "/admin/overlay", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) =
        post_with_cookie(&mut c, "/admin/overlay/remove", Some(&cookie), "id=org.x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let admin = server.token("alice", Role::Admin).await;
    let cookie = sign_in(&mut c, &admin).await;
    let (status, _, page) = get(&mut c, "/admin/overlay", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("none written yet"), "{page}");
    let token = csrf(&page);
    let product = [
        ("id", "org.helpdesk-bot"),
        ("name", "Helpdesk Bot"),
        ("category", "chat"),
        ("web_domains", "helpbot.corp.example"),
        ("process_names", "helpbot, helpbot-agent"),
    ];
    // Without the CSRF token nothing is written.
    let (status, _, _) =
        post_with_cookie(&mut c, "/admin/overlay/products", Some(&cookie), &form_body(&product))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut with_csrf = product.to_vec();
    with_csrf.push(("csrf", &token));
    let (status, headers, body) =
        post_with_cookie(&mut c, "/admin/overlay/products", Some(&cookie), &form_body(&with_csrf))
            .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers["location"], "/admin/overlay");

    // A gateway fronting an unknown product: refused, naming the field, the input kept.
    let bad = [
        ("id", "org.llm-gateway"),
        ("host", "llm.corp.example"),
        ("fronts", "openai.api, nobody.api"),
        ("csrf", &token),
    ];
    let (status, _, page) =
        post_with_cookie(&mut c, "/admin/overlay/gateways", Some(&cookie), &form_body(&bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("gateways[0] (org.llm-gateway).fronts[1]"), "{page}");
    assert!(page.contains("value=\"openai.api, nobody.api\""), "{page}");
    let good = [
        ("id", "org.llm-gateway"),
        ("host", "llm.corp.example"),
        ("fronts", "openai.api"),
        ("csrf", &token),
    ];
    let (status, _, _) =
        post_with_cookie(&mut c, "/admin/overlay/gateways", Some(&cookie), &form_body(&good)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = get(&mut c, "/admin/overlay", Some(&cookie)).await;
    assert!(page.contains("<dd id=\"overlay-version\">2</dd>"), "{page}");
    assert!(page.contains("helpbot-agent") && page.contains("llm.corp.example"), "{page}");
    // The edit link fills the form with the product.
    let (status, _, page) =
        get(&mut c, "/admin/overlay?edit=org.helpdesk-bot", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("value=\"helpbot, helpbot-agent\""), "{page}");

    // The CLI: same write, same rules.
    let catalog = aiscout_signatures::Catalog::builtin().unwrap();
    let add = OverlayCommand::AddProduct {
        id: "org.code-helper".into(),
        name: "Code Helper".into(),
        category: "coding".into(),
        vendor: String::new(),
        web_domains: vec![],
        api_domains: vec!["code.corp.example".into()],
        process_names: vec![],
        cli_names: vec!["codehelp".into()],
    };
    let out = overlay(&server.store, &catalog, Some(&public), add).await.unwrap();
    assert!(out.stdout.contains("overlay version 3 written"), "{}", out.stdout);
    let clash = OverlayCommand::AddProduct {
        id: "org.x".into(),
        name: "X".into(),
        category: "chat".into(),
        vendor: String::new(),
        web_domains: vec!["chatgpt.com".into()],
        api_domains: vec![],
        process_names: vec![],
        cli_names: vec![],
    };
    let err = overlay(&server.store, &catalog, None, clash).await.unwrap_err().to_string();
    assert!(err.contains("products[") && err.contains("openai.chatgpt"), "{err}");
    let err =
        overlay(&server.store, &catalog, None, OverlayCommand::Remove { id: "org.nope".into() })
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("no product or gateway \"org.nope\""), "{err}");
    let out = overlay(&server.store, &catalog, Some(&public), OverlayCommand::Show).await.unwrap();
    assert!(out.stdout.contains(&public) && out.stdout.contains("version 3"), "{}", out.stdout);
    assert!(out.stdout.contains("org.code-helper"), "{}", out.stdout);

    // Removing through the console; then the agent-facing artifact has exactly what is left.
    let remove = [("id", "org.helpdesk-bot"), ("csrf", &token)];
    let (status, _, _) =
        post_with_cookie(&mut c, "/admin/overlay/remove", Some(&cookie), &form_body(&remove)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let mut agent = server.connect(true).await;
    let key = enroll(&mut agent, "laptop-9").await;
    let (status, bytes) = agent.send(Method::GET, "/api/v1/overlay", Some(&key), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let o = Verifier::from_hex(&public).unwrap().verify_overlay(&bytes, None).unwrap();
    assert_eq!(o.version(), 4);
    let ids: Vec<&str> = o.products().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["org.code-helper"]);
    assert_eq!(o.gateways()[0].fronts, ["openai.api"]);
    let (_, _, page) = get(&mut c, "/admin/overlay", Some(&cookie)).await;
    assert!(page.contains("last fetched from this collector"), "{page}");

    // Every write is audited with its actor and what changed.
    let audit =
        server.store.audit_query(AuditFilter { limit: 100, ..Default::default() }).await.unwrap();
    let writes: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.record.action == "overlay.update")
        .map(|e| (e.record.actor.as_str(), e.record.after.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(writes.len(), 4, "{writes:?}");
    assert!(
        writes.iter().any(|(a, after)| *a == "cli" && after.contains("product org.code-helper"))
    );
    assert!(
        writes.iter().any(|(a, after)| *a == "alice" && after.contains("remove org.helpdesk-bot"))
    );
}

/// Issue 17: `check-config` validates the collector's overlay signing key and names it.
#[test]
fn check_config_names_a_bad_overlay_key() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_aiscout-collector");
    let run = || {
        std::process::Command::new(bin)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("check-config")
            .env("AISCOUT_ENROLL_SECRET", "a-secret-of-enough-length-0123456789abcdef")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("overlay.key"), "zz-not-a-key\n").unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("overlay_key:") && err.contains("overlay.key"), "{err}");
}

/// `aiscout_collector_overlay_loads_total` from `/metrics`.
async fn overlay_loads(c: &mut aiscout_collector::client::Connection) -> u64 {
    let (_, bytes) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("aiscout_collector_overlay_loads_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no overlay loads counter in:\n{text}"))
}

/// A heartbeat; the overlay version its acknowledgement names.
async fn heartbeat(c: &mut aiscout_collector::client::Connection, key: &str) -> Option<u64> {
    let hb = json!({"agent": {"version": "0.1.0", "catalog_version": 0}, "interfaces": [],
                    "packets": 0, "drops": 0, "spool_depth": 0, "evictions": 0});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/heartbeat", Some(key), hb.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    serde_json::from_slice::<Value>(&bytes).unwrap()["overlay_version"].as_u64()
}

/// Issue 17: the collector reads and validates the stored overlay once per version, not on
/// every heartbeat or fetch; a version written past this instance (the CLI, or another
/// collector on the same database) is what the next heartbeat names and the next fetch serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_is_read_once_per_version_not_per_heartbeat() {
    let (private, public) = aiscout_signatures::sign::generate().unwrap();
    let server = start_tuned(100, Default::default(), |s| {
        s.overlay = Some(OverlaySigner::new(Secret::new(private)));
    })
    .await;
    let mut c = server.connect(true).await;
    let key = enroll(&mut c, "laptop-8").await;
    let admin = server.token("admin", Role::Admin).await;
    let (status, _) =
        c.send(Method::PUT, "/api/v1/overlay/document", Some(&admin), DOC).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let verifier = Verifier::from_hex(&public).unwrap();
    for _ in 0..5 {
        assert_eq!(heartbeat(&mut c, &key).await, Some(1));
    }
    assert_eq!(overlay_loads(&mut c).await, 0, "a heartbeat never reads the document");
    for _ in 0..3 {
        let (status, bytes) = c.send(Method::GET, "/api/v1/overlay", Some(&key), "").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(verifier.verify_overlay(&bytes, None).unwrap().version(), 1);
        assert_eq!(heartbeat(&mut c, &key).await, Some(1));
    }
    assert_eq!(overlay_loads(&mut c).await, 1, "read once for version 1");

    // Version 2 written straight into the database, as the CLI or another collector does.
    let catalog = aiscout_signatures::Catalog::builtin().unwrap();
    let doc = DOC.replace("Helpdesk Bot", "Helpdesk Bot 2");
    let v = aiscout_collector::api::overlay::write(
        &server.store,
        &catalog,
        "cli",
        doc.as_bytes(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(v, 2);
    assert_eq!(heartbeat(&mut c, &key).await, Some(2));
    for _ in 0..2 {
        let (_, bytes) = c.send(Method::GET, "/api/v1/overlay", Some(&key), "").await.unwrap();
        let overlay = verifier.verify_overlay(&bytes, Some(2)).unwrap();
        assert_eq!(overlay.products()[0].name, "Helpdesk Bot 2");
    }
    assert_eq!(overlay_loads(&mut c).await, 2, "read once more, for version 2");
}
