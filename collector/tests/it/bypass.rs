//! Gateway bypass in the inventory and the reconciliation (issue 17): with a sanctioned
//! gateway fronting the OpenAI API, one device uses the gateway (not bypass) and another goes
//! straight to `api.openai.com` from a named process (bypass). The bypass shows on the
//! product's inventory row (API JSON, the console's CSV, the `report inventory` command, the
//! inventory page and the app card) and in the reconciliation's "Gateway bypass" section (API
//! JSON, the section's CSV, the long CSV of `report reconcile`, the page). A near miss, a
//! provider API the gateway does not front, is not bypass anywhere.

use aiscout_collector::cli::{self, ReportCommand};
use aiscout_collector::model::{Person, Role};
use aiscout_collector::store::Store;
use aiscout_signatures::Catalog;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use aiscout_collector::client::Connection;

use crate::api::{SECRET, start};
use crate::console::{get, sign_in};

const OVERLAY: &str = r#"{"gateways": [{"id": "org.llm-gateway", "host": "llm.corp.example",
                                          "fronts": ["openai.api"]}]}"#;

async fn enroll(c: &mut Connection, host: &str, owner: &str) -> String {
    let body = json!({"enroll_secret": SECRET, "device": {"host_id": host,
        "hostname": format!("{host}.corp"), "os": "linux", "os_version": "12",
        "agent_version": "0.1.0", "owner_email": owner}});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/enroll", None, body.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["node_key"].as_str().unwrap().to_owned()
}

async fn report(c: &mut Connection, key: &str, batch: &str, sightings: &[Value]) {
    let body = json!({"batch_id": batch, "agent": {"version": "0.1.0", "catalog_version": 0},
                      "sightings": sightings, "dropped": 0, "evicted": 0});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/sightings", Some(key), body.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
}

fn sighting(product: &str, kind: &str, value: &str, process: &str) -> Value {
    json!({"product": product, "kind": kind, "value": value, "user": "u1", "process": process,
           "first_seen": 1_790_000_000, "last_seen": 1_790_000_600, "count": 2,
           "window": 1_789_999_200})
}

/// The cells of one RFC 4180 line (quoted cells may hold commas and doubled quotes).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    out.push(cell);
    out
}

/// The CSV row of `product` as named columns.
fn csv_row(csv: &str, product: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let header = fields(lines.next().unwrap());
    let line = lines.find(|l| l.starts_with(&format!("{product},"))).unwrap_or_else(|| {
        panic!("no row for {product} in\n{csv}");
    });
    let cells = fields(line);
    assert_eq!(header.len(), cells.len(), "{line}");
    header.into_iter().zip(cells).collect()
}

fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter().find(|(c, _)| c == column).map_or_else(|| panic!("no column {column}"), |(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_shows_in_the_inventory_and_the_reconciliation_and_a_near_miss_does_not() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    let admin = server.token("ada", Role::Admin).await;
    let (status, bytes) =
        c.send(Method::PUT, "/api/v1/overlay/document", Some(&admin), OVERLAY).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    server
        .store
        .upsert_people(vec![Person {
            email: "dan.direct@example.com".into(),
            name: "Dan Direct".into(),
            department: "Research".into(),
            manager: None,
        }])
        .await
        .unwrap();

    // One device goes through the gateway with curl, and calls the Anthropic API (which the
    // gateway does not front) from python3: the near miss. The other calls the OpenAI API
    // straight from python3 (a DNS answer and a ClientHello) and uses ChatGPT in firefox.
    let gw = enroll(&mut c, "laptop-gw", "gina.gateway@example.com").await;
    report(
        &mut c,
        &gw,
        "gw-1",
        &[
            sighting("org.llm-gateway", "tls_sni", "llm.corp.example", "curl"),
            sighting("anthropic.api", "tls_sni", "api.anthropic.com", "python3"),
        ],
    )
    .await;
    let direct = enroll(&mut c, "laptop-direct", "dan.direct@example.com").await;
    report(
        &mut c,
        &direct,
        "direct-1",
        &[
            sighting("openai.api", "dns", "api.openai.com", "python3"),
            sighting("openai.api", "tls_sni", "api.openai.com", "python3"),
            sighting("openai.chatgpt", "tls_sni", "chatgpt.com", "firefox"),
        ],
    )
    .await;

    // The inventory over the API: only the OpenAI API's row has bypass, the others have none
    // of the fields (additive and omitted when empty).
    let (status, bytes) = c.send(Method::GET, "/api/v1/inventory", Some(&admin), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let inv: Value = serde_json::from_slice(&bytes).unwrap();
    let rows = inv["rows"].as_array().unwrap();
    let row = |p: &str| rows.iter().find(|r| r["product"] == p).unwrap_or_else(|| panic!("{p}"));
    let api = row("openai.api");
    assert_eq!(api["bypass_devices"], 1, "{api}");
    assert_eq!(api["bypass_people"], 1, "{api}");
    assert_eq!(api["bypass_processes"], json!(["python3"]), "{api}");
    assert_eq!(api["bypass_gateways"], json!(["org.llm-gateway"]), "{api}");
    assert_eq!(api["devices"], 1, "{api}");
    for p in ["anthropic.api", "openai.chatgpt", "org.llm-gateway"] {
        let r = row(p);
        for field in ["bypass_devices", "bypass_people", "bypass_processes", "bypass_gateways"] {
            assert!(r.get(field).is_none(), "{p} has {field}: {r}");
        }
    }
    // The typed client reads the same.
    let typed: aiscout_wire::InventoryList = serde_json::from_slice(&bytes).unwrap();
    let t = typed.rows.iter().find(|r| r.product == "openai.api").unwrap();
    assert_eq!((t.bypass_devices, t.bypass_people), (1, 1));

    // The reconciliation over the API: one row, the direct device, its owner and department,
    // the process, the host and the gateway that should have carried it.
    let (status, bytes) =
        c.send(Method::GET, "/api/v1/reports/reconcile", Some(&admin), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let rec: Value = serde_json::from_slice(&bytes).unwrap();
    let bypass = rec["gateway_bypass"].as_array().unwrap();
    assert_eq!(bypass.len(), 1, "{rec}");
    let b = &bypass[0];
    assert_eq!(b["product"], "openai.api");
    assert_eq!(b["name"], "OpenAI API");
    assert_eq!(b["host_id"], "laptop-direct");
    assert_eq!(b["hostname"], "laptop-direct.corp");
    assert_eq!(b["person"], "dan.direct@example.com");
    assert_eq!(b["department"], "Research");
    assert_eq!(b["process"], "python3");
    assert_eq!(b["host"], "api.openai.com");
    assert_eq!(b["gateway"], "org.llm-gateway");
    assert_eq!(b["gateway_host"], "llm.corp.example");
    assert_eq!(b["count"], 4, "the DNS answer and the ClientHello are summed: {b}");
    // The bypass report agrees.
    let (_, bytes) = c.send(Method::GET, "/api/v1/reports/bypass", Some(&admin), "").await.unwrap();
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["rows"][0]["host_id"], "laptop-direct", "{report}");

    // The report command on the same store: CSV and JSON of the inventory, the long CSV of the
    // reconciliation.
    let catalog = Catalog::builtin().unwrap();
    let weights = aiscout_signatures::RiskWeights::default();
    let run = |command| cli::report(&server.store, &catalog, &weights, command);
    let csv = run(ReportCommand::Inventory { format: "csv".into(), since: None, as_of: None })
        .await
        .unwrap()
        .stdout;
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",bypass_devices,bypass_people,bypass_processes,bypass_gateways"),
        "{header}"
    );
    let api_row = csv_row(&csv, "openai.api");
    assert_eq!(cell(&api_row, "bypass_devices"), "1");
    assert_eq!(cell(&api_row, "bypass_people"), "1");
    assert_eq!(cell(&api_row, "bypass_processes"), "python3");
    assert_eq!(cell(&api_row, "bypass_gateways"), "org.llm-gateway");
    let near = csv_row(&csv, "anthropic.api");
    assert_eq!(cell(&near, "bypass_devices"), "0");
    assert_eq!(cell(&near, "bypass_processes"), "");
    let json = run(ReportCommand::Inventory { format: "json".into(), since: None, as_of: None })
        .await
        .unwrap()
        .stdout;
    let list: aiscout_wire::InventoryList = serde_json::from_str(&json).unwrap();
    let r = list.rows.iter().find(|r| r.product == "openai.api").unwrap();
    assert_eq!(r.bypass_processes, ["python3"]);
    assert!(list.rows.iter().filter(|r| r.product != "openai.api").all(|r| r.bypass_devices == 0));
    // Since a day after the traffic: no bypass in the period.
    let later = run(ReportCommand::Inventory {
        format: "json".into(),
        since: Some("2026-09-30".into()),
        as_of: None,
    })
    .await
    .unwrap()
    .stdout;
    let later: aiscout_wire::InventoryList = serde_json::from_str(&later).unwrap();
    assert!(later.rows.iter().all(|r| r.bypass_devices == 0), "{later:?}");
    let long = run(ReportCommand::Reconcile {
        format: "csv".into(),
        since: None,
        idle_days: 30,
        as_of: None,
    })
    .await
    .unwrap()
    .stdout;
    let line =
        long.lines().find(|l| l.starts_with("Gateway bypass")).unwrap_or_else(|| panic!("{long}"));
    for v in [
        "openai.api",
        "laptop-direct.corp",
        "dan.direct@example.com",
        "Research",
        "python3",
        "api.openai.com",
        "org.llm-gateway",
        "llm.corp.example",
    ] {
        assert!(line.contains(v), "{v} missing from {line}");
    }
    assert_eq!(long.lines().filter(|l| l.starts_with("Gateway bypass")).count(), 1, "{long}");

    // The console: the inventory row, its CSV, the app card and the reconciliation page.
    let mut web = server.connect(false).await;
    let viewer = server.token("vic", Role::Viewer).await;
    let cookie = sign_in(&mut web, &viewer).await;
    let (status, _, page) = get(&mut web, "/inventory", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, tail) = page.split_once("/products/openai.api\"").unwrap();
    let (openai_row, _) = tail.split_once("</tr>").unwrap();
    assert!(openai_row.contains("Gateway bypass"), "{openai_row}");
    assert!(
        openai_row.contains("1 device, 1 person · python3 · not through org.llm-gateway"),
        "{openai_row}"
    );
    assert_eq!(page.matches("Gateway bypass").count(), 1, "only one row has bypass");
    let (status, headers, csv) = get(&mut web, "/inventory.csv", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(cell(&csv_row(&csv, "openai.api"), "bypass_processes"), "python3");
    assert_eq!(cell(&csv_row(&csv, "anthropic.api"), "bypass_devices"), "0");
    let (_, _, card) = get(&mut web, "/products/openai.api", Some(&cookie)).await;
    let (_, section) = card.split_once("id=\"bypass\"").unwrap_or_else(|| panic!("{card}"));
    let (section, _) = section.split_once("</section>").unwrap();
    for v in [
        "laptop-direct.corp",
        "dan.direct@example.com",
        "python3",
        "api.openai.com",
        "llm.corp.example",
    ] {
        assert!(section.contains(v), "{v} missing from {section}");
    }
    assert!(!section.contains("laptop-gw"), "{section}");
    assert!(card.contains("Devices bypassing the gateway"), "{card}");
    let (_, _, near_card) = get(&mut web, "/products/anthropic.api", Some(&cookie)).await;
    assert!(!near_card.contains("id=\"bypass\""), "the near miss has no bypass section");
    // A viewer may not read the reconciliation; procurement may, page and CSV.
    let (status, _, _) = get(&mut web, "/reconcile/gateway-bypass.csv", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let procurement = server.token("pat", Role::Procurement).await;
    let cookie = sign_in(&mut web, &procurement).await;
    let (status, _, page) = get(&mut web, "/reconcile", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Gateway bypass (1)"), "{page}");
    let (_, s9) = page.split_once("id=\"s9\"").unwrap();
    assert!(s9.contains("laptop-direct.corp") && s9.contains("<code>python3</code>"), "{s9}");
    assert!(s9.contains("Research") && s9.contains("llm.corp.example"), "{s9}");
    let (status, _, csv) = get(&mut web, "/reconcile/gateway-bypass.csv", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "product,name,device,host_id,person,department,process,api_host,gateway_id,gateway_host,first_seen,last_seen,count"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("openai.api,OpenAI API,laptop-direct.corp,laptop-direct,dan.direct@example.com,Research,python3,api.openai.com,org.llm-gateway,llm.corp.example,"),
        "{row}"
    );
    assert!(row.ends_with(",4"), "{row}");
    assert_eq!(lines.next(), None, "{csv}");
}
