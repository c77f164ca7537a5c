//! Integration tests of the wire contract: the golden v1 fixtures round-trip unchanged.

#![allow(clippy::disallowed_methods)]
// Reason: test code opens and reads its own fixtures and databases.
// Test helpers (not #[test] fns) unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use aiscout_wire::{
    AuditList, BatchAck, DeviceList, EnrollRequest, EnrollResponse, ErrorBody, Heartbeat,
    HeartbeatAck, ImportSummary, InventoryList, ProductDetail, Reconciliation, Review,
    ReviewRequest, SightingBatch, Validate,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Parses the fixture into `T`, serialises it again, and checks nothing was lost or added.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let bytes = fixture(name);
    let value: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = serde_json::to_value(&value).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(again, original, "{name} does not round-trip: the v1 encoding changed");
    value
}

#[test]
fn golden_agent_messages_round_trip_and_validate() {
    let first = round_trip::<EnrollRequest>("enroll_request.json");
    first.validate().unwrap();
    assert!(first.previous_node_key.is_none(), "a first enrollment carries no previous key");
    let again = round_trip::<EnrollRequest>("enroll_request_reenroll.json");
    again.validate().unwrap();
    assert!(again.previous_node_key.is_some_and(|k| k.expose().starts_with("aisnk_")));
    let proposed = round_trip::<EnrollRequest>("enroll_request_proposed.json");
    proposed.validate().unwrap();
    assert!(
        proposed.proposed_node_key.is_some_and(|k| aiscout_wire::is_node_key_shaped(k.expose()))
    );
    round_trip::<EnrollResponse>("enroll_response.json");
    let batch = round_trip::<SightingBatch>("sighting_batch.json");
    batch.validate().unwrap();
    assert_eq!(batch.sightings.len(), 2);
    round_trip::<BatchAck>("batch_ack.json");
    round_trip::<Heartbeat>("heartbeat.json").validate().unwrap();
    round_trip::<HeartbeatAck>("heartbeat_ack.json");
}

#[test]
fn golden_people_messages_round_trip_and_validate() {
    round_trip::<InventoryList>("inventory.json");
    round_trip::<DeviceList>("devices.json");
    round_trip::<ProductDetail>("product_detail.json");
    round_trip::<ReviewRequest>("review_request.json").validate().unwrap();
    round_trip::<Review>("review.json");
    round_trip::<AuditList>("audit.json");
    round_trip::<ErrorBody>("error.json");
}

#[test]
fn golden_spend_and_reconciliation_messages_round_trip() {
    let list = round_trip::<InventoryList>("inventory_spend.json");
    assert_eq!(list.rows[0].expense_spend[0].amount_minor, 8000);
    let rec = round_trip::<Reconciliation>("reconcile.json");
    assert_eq!(
        rec.duplicate_subscriptions[0].saving.as_ref().map(|m| m.amount_minor),
        Some(-48000)
    );
    round_trip::<ImportSummary>("import_summary.json");
}

#[test]
fn inventory_row_without_spend_fields_still_reads_as_v1() {
    let list = round_trip::<InventoryList>("inventory.json");
    assert!(list.rows[0].expense_spend.is_empty() && list.rows[0].subscriptions == 0);
}

#[test]
fn golden_batch_decodes_through_the_validating_decoder() {
    let batch: SightingBatch = aiscout_wire::decode(&fixture("sighting_batch.json")).unwrap();
    assert_eq!(batch.batch_id, "01J8ZK4N6V9Q3W2E1R0T5Y7U8I");
}

#[test]
fn optional_fields_may_be_absent() {
    let batch: SightingBatch = aiscout_wire::decode(
        br#"{"batch_id":"b","agent":{"version":"1","catalog_version":0},"sightings":[
            {"product":"p","kind":"dns","value":"v","first_seen":1,"last_seen":1,"count":1,
             "window":0}]}"#,
    )
    .unwrap();
    assert_eq!(batch.sightings[0].user, None);
    assert_eq!(batch.dropped, 0);
}

#[test]
fn removal_batch_round_trips_and_removed_defaults_to_false() {
    let batch = round_trip::<SightingBatch>("sighting_batch_removal.json");
    batch.validate().unwrap();
    let removed: Vec<bool> = batch.sightings.iter().map(|s| s.removed).collect();
    assert_eq!(removed, [false, true]);
    // The older golden batch has no `removed` field at all: every sighting reads as present,
    // and serialising a present sighting leaves the field out (checked by the round trip).
    let old = round_trip::<SightingBatch>("sighting_batch.json");
    assert!(old.sightings.iter().all(|s| !s.removed));
    let text = serde_json::to_string(&old).unwrap();
    assert!(!text.contains("removed"), "{text}");
}

#[test]
fn enroll_secret_does_not_leak_through_debug() {
    let req: EnrollRequest = serde_json::from_slice(&fixture("enroll_request.json")).unwrap();
    assert!(!format!("{req:?}").contains("s3cret-enroll"));
    let req: EnrollRequest =
        serde_json::from_slice(&fixture("enroll_request_reenroll.json")).unwrap();
    let debug = format!("{req:?}");
    assert!(!debug.contains("s3cret-enroll") && !debug.contains("aisnk_"), "{debug}");
}

#[test]
fn an_empty_or_oversized_previous_node_key_is_refused_by_name() {
    let mut req: EnrollRequest =
        serde_json::from_slice(&fixture("enroll_request_reenroll.json")).unwrap();
    for bad in [String::new(), "k".repeat(10_000)] {
        req.previous_node_key = Some(aiscout_wire::Secret::new(bad));
        let e = req.validate().unwrap_err();
        assert_eq!(e.field, "previous_node_key", "{e}");
    }
}

#[test]
fn a_proposed_node_key_of_another_shape_is_refused_by_name() {
    let mut req: EnrollRequest =
        serde_json::from_slice(&fixture("enroll_request_proposed.json")).unwrap();
    let good = "aisnk_".to_owned() + &"0a".repeat(32);
    for bad in [
        String::new(),
        "aisnk_".to_owned() + &"0a".repeat(31),
        "aisnk_".to_owned() + &"0A".repeat(32),
        "aistk_".to_owned() + &"0a".repeat(32),
        good.clone() + "0",
    ] {
        req.proposed_node_key = Some(aiscout_wire::Secret::new(bad));
        let e = req.validate().unwrap_err();
        assert_eq!(e.field, "proposed_node_key", "{e}");
    }
    req.proposed_node_key = Some(aiscout_wire::Secret::new(good));
    req.validate().unwrap();
}

#[test]
fn openapi_file_documents_every_route() {
    use aiscout_wire::routes;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
    let spec = std::fs::read_to_string(&path).unwrap();
    for route in [
        routes::ENROLL,
        routes::SIGHTINGS,
        routes::HEARTBEAT,
        routes::CATALOG,
        routes::INVENTORY,
        routes::DEVICES,
        routes::RECONCILE,
        routes::IMPORT_EXPENSES,
        routes::IMPORT_GATEWAY,
        routes::AUDIT,
        routes::POLICY,
    ] {
        assert!(
            spec.contains(&format!("\n  {route}:\n")),
            "{route} is missing from collector/openapi.yaml"
        );
    }
}

/// Issue 17: the gateway bypass fields of an inventory row and the reconciliation's section
/// are additive: older documents read as none, and none is written as nothing.
#[test]
fn gateway_bypass_is_optional_and_round_trips() {
    let rows = round_trip::<InventoryList>("inventory_bypass.json");
    let r = &rows.rows[0];
    assert_eq!((r.bypass_devices, r.bypass_people), (1, 1));
    assert_eq!(
        (r.bypass_processes.as_slice(), r.bypass_gateways.as_slice()),
        (&["python3".to_owned()][..], &["org.llm-gateway".to_owned()][..])
    );
    let old = round_trip::<InventoryList>("inventory.json");
    assert!(old.rows.iter().all(|r| r.bypass_devices == 0 && r.bypass_processes.is_empty()));
    assert!(!serde_json::to_string(&old).unwrap().contains("bypass"));
    let rec = round_trip::<Reconciliation>("reconcile_gateway_bypass.json");
    assert_eq!(rec.gateway_bypass[0].process, "python3");
    assert_eq!(rec.gateway_bypass[0].gateway_host, "llm.corp.example");
    let old = round_trip::<Reconciliation>("reconcile.json");
    assert!(old.gateway_bypass.is_empty());
    assert!(!serde_json::to_string(&old).unwrap().contains("gateway_bypass"));
}

#[test]
fn mcp_flags_are_optional_and_round_trip() {
    use aiscout_wire::McpFlag;
    let batch = round_trip::<SightingBatch>("sighting_batch_mcp_flags.json");
    batch.validate().unwrap();
    let flags = &batch.sightings[0].flags;
    assert_eq!(
        McpFlag::known(flags.iter().map(String::as_str)),
        [McpFlag::PlaintextSecret, McpFlag::FileWrite, McpFlag::UnpinnedPackage]
    );
    // Older batches carry no flags, and a sighting without flags serialises without the field.
    let old = round_trip::<SightingBatch>("sighting_batch.json");
    assert!(old.sightings.iter().all(|s| s.flags.is_empty()));
    assert!(!serde_json::to_string(&old).unwrap().contains("flags"));
    let rows = round_trip::<InventoryList>("inventory_mcp_flags.json");
    assert_eq!(rows.rows[0].mcp_flags.len(), 3);
    let old = round_trip::<InventoryList>("inventory.json");
    assert!(old.rows.iter().all(|r| r.mcp_flags.is_empty()));
    let detail = round_trip::<ProductDetail>("product_detail_mcp_flags.json");
    assert_eq!(detail.mcp_servers[0].devices, 1);
    assert!(round_trip::<ProductDetail>("product_detail.json").mcp_servers.is_empty());
}

#[test]
fn mcp_flags_on_another_kind_or_oversized_are_refused_by_name() {
    let mut batch: SightingBatch =
        serde_json::from_slice(&fixture("sighting_batch_mcp_flags.json")).unwrap();
    // A name this build does not know is accepted (a newer agent) and ignored by readers.
    batch.sightings[0].flags.push("a_future_flag".into());
    batch.validate().unwrap();
    batch.sightings[0].flags.push("x".repeat(65));
    assert_eq!(batch.validate().unwrap_err().field, "sightings[0].flags[4]");
    let mut batch: SightingBatch = serde_json::from_slice(&fixture("sighting_batch.json")).unwrap();
    batch.sightings[0].flags = vec!["remote_url".into()];
    assert_eq!(batch.validate().unwrap_err().field, "sightings[0].flags");
}
