//! The risk score (issue 17) end to end: weights from a `[risk]` config table order the review
//! queue, and the inventory API and CSV carry the score and the facts behind it.

use aiscout_collector::config::{self, Overrides};
use aiscout_collector::model::Role;
use aiscout_signatures::Catalog;
use hyper::{Method, StatusCode};

use crate::alerts::{post_batch, sightings};
use crate::api::{enroll, start_tuned};
use crate::console::{get, sign_in};

/// Two products that differ in one fact each: alpha trains on consumer data, beta has no SCIM.
fn catalog() -> Catalog {
    let products = r#"vendor = "Test"

[[product]]
id = "test.alpha"
name = "Alpha"
category = "chat"
sources = ["test"]
web_domains = ["alpha.example"]

[[product]]
id = "test.beta"
name = "Beta"
category = "chat"
sources = ["test"]
web_domains = ["beta.example"]
"#;
    let safe = r#"trains_business = { value = false, source = "t" }
retention = { days = 0, source = "t" }
soc2 = { value = true, source = "t" }
iso27001 = { value = true, source = "t" }
sso = { value = true, source = "t" }
data_residency = { value = ["EU"], source = "t" }
enterprise_plan = { value = true, source = "t" }
"#;
    let risk = format!(
        "[\"test.alpha\"]\ntrains_consumer = {{ value = true, source = \"t\" }}\n\
         scim = {{ value = true, source = \"t\" }}\n{safe}\n\
         [\"test.beta\"]\ntrains_consumer = {{ value = false, source = \"t\" }}\n\
         scim = {{ value = false, source = \"t\" }}\n{safe}"
    );
    aiscout_signatures::source::compile([("test.toml", products), ("risk/test.toml", &risk)], 1)
        .unwrap()
}

/// The weights from a config file holding `risk_table`.
fn weights(dir: &std::path::Path, risk_table: &str) -> aiscout_signatures::RiskWeights {
    let path = dir.join("collector.toml");
    std::fs::write(&path, risk_table).unwrap();
    let db = format!("sqlite:{}", dir.join("c.db").display());
    config::load(Some(&path), Some(&db), None, &Overrides::default()).unwrap().risk
}

/// The product ids in the order the review queue shows them.
async fn queue_order(table: &str) -> (Vec<String>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let w = weights(dir.path(), table);
    let server = start_tuned(100, Default::default(), |s| {
        s.catalog = catalog();
        s.risk = w;
    })
    .await;
    let mut c = server.connect(false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    // Beta has more reach, so today's order (reach first) would put it first on a tie.
    post_batch(&mut c, &key, sightings("b1", &["test.alpha", "test.beta"], now)).await;
    let key2 = enroll(&mut c, "laptop-2").await;
    post_batch(&mut c, &key2, sightings("b2", &["test.beta"], now)).await;
    let sec = sign_in(&mut c, &server.token("sec", Role::Security).await).await;
    let (status, _, page) = get(&mut c, "/review", Some(&sec)).await;
    assert_eq!(status, StatusCode::OK);
    let mut order: Vec<(usize, String)> = ["test.alpha", "test.beta"]
        .iter()
        .map(|p| (page.find(&format!("value=\"{p}\"")).expect(p), (*p).to_owned()))
        .collect();
    order.sort();
    let token = server.token("api", Role::Security).await;
    let (status, body) = c.send(Method::GET, "/api/v1/inventory", Some(&token), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, _, csv) = get(&mut c, "/inventory.csv", Some(&sec)).await;
    (order.into_iter().map(|(_, p)| p).collect(), String::from_utf8_lossy(&body).into(), csv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_weight_in_the_config_changes_the_review_queue_order() {
    // Defaults: training on consumer data (15) outweighs no SCIM (5): alpha first.
    let (order, api, csv) = queue_order("").await;
    assert_eq!(order, ["test.alpha", "test.beta"]);
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let alpha = rows.iter().find(|r| r["product"] == "test.alpha").unwrap();
    // 15 of 100, every fact known.
    assert_eq!(alpha["risk_score"], 15);
    let facts = alpha["risk_facts"].as_array().unwrap();
    assert_eq!(facts.len(), 9);
    let soc2 = facts.iter().find(|f| f["fact"] == "soc2").unwrap();
    assert_eq!((soc2["value"].as_str(), soc2["source"].as_str()), (Some("yes"), Some("t")));
    let header = csv.lines().next().unwrap();
    assert!(header.contains("risk_score") && header.contains("risk_trains_consumer"), "{header}");
    let beta_line = csv.lines().find(|l| l.starts_with("test.beta")).unwrap();
    assert!(beta_line.contains(",5,"), "beta scores 5: {beta_line}");

    // An organisation that cares more about provisioning: no SCIM now outweighs training.
    let (order, api, _) = queue_order("[risk]\nscim = 50\n").await;
    assert_eq!(order, ["test.beta", "test.alpha"]);
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    let beta = v["rows"].as_array().unwrap().iter().find(|r| r["product"] == "test.beta").unwrap();
    // 50 of 145, rounded.
    assert_eq!(beta["risk_score"], 34);
}

#[test]
fn check_config_refuses_bad_risk_weights_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.toml");
    std::fs::write(&path, "[risk]\nsoc2 = 5000\nunknown_percent = 150\n").unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let e = config::load(Some(&path), Some(&db), None, &Overrides::default()).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["risk.soc2", "risk.unknown_percent"], "{e}");
    std::fs::write(&path, "[risk]\ncolour = 1\n").unwrap();
    let e = config::load(Some(&path), Some(&db), None, &Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
}
