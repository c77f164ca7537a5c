//! OCSF-shaped JSON lines for SIEMs (OCSF 1.4): Software Inventory Info (5020) for installed
//! apps, extensions, CLIs, processes and local runtimes; DNS Activity (4003) and Network
//! Activity (4001) for DNS and TLS or QUIC SNI sightings; Detection Finding (2004) for each
//! product in use that is not sanctioned.
//!
//! `class_uid = category_uid * 1000 + uid` and `type_uid = class_uid * 100 + activity_id`;
//! times are milliseconds since the epoch, as OCSF's `timestamp_t` requires.

use aiscout_wire::{InventoryRow, ProductStatus, SightingKind};
use serde_json::{Value, json};

use crate::model::DeviceSighting;

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.4.0";

fn ms(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// The `metadata` object every event carries.
pub fn metadata() -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": { "name": "aiscout", "vendor_name": "aiscout", "version": env!("CARGO_PKG_VERSION") },
    })
}

fn device(s: &DeviceSighting) -> Value {
    let mut d = json!({
        "uid": s.host_id,
        "hostname": s.hostname,
        "type_id": 0,
        "os": { "name": s.os, "type_id": os_type(&s.os) },
    });
    if let (Some(email), Some(obj)) = (&s.owner_email, d.as_object_mut()) {
        obj.insert("owner".into(), json!({ "email_addr": email }));
    }
    d
}

fn os_type(os: &str) -> i64 {
    match os.to_ascii_lowercase().as_str() {
        "windows" => 100,
        "linux" => 200,
        "macos" | "darwin" => 300,
        _ => 0,
    }
}

/// One event for a device's sightings of one product by one indicator, or `None` for kinds
/// that have no OCSF class here (gateway model names).
pub fn sighting_event(s: &DeviceSighting, row: Option<&InventoryRow>) -> Option<Value> {
    let product = json!({
        "uid": s.product,
        "name": row.map_or(s.product.as_str(), |r| r.name.as_str()),
        "vendor_name": row.map_or("", |r| r.vendor.as_str()),
    });
    let common =
        |class_uid: i64, class_name: &str, category_uid: i64, category: &str, activity_id: i64| {
            json!({
                "class_uid": class_uid,
                "class_name": class_name,
                "category_uid": category_uid,
                "category_name": category,
                "activity_id": activity_id,
                "type_uid": class_uid * 100 + activity_id,
                "severity_id": 1,
                "time": ms(s.last_seen.get()),
                "start_time": ms(s.first_seen.get()),
                "end_time": ms(s.last_seen.get()),
                "count": s.count,
                "metadata": metadata(),
            })
        };
    let mut event = match s.kind.as_str() {
        "dns" => {
            let mut e = common(4003, "DNS Activity", 4, "Network Activity", 1);
            let obj = e.as_object_mut()?;
            obj.insert("query".into(), json!({ "hostname": s.value }));
            obj.insert("src_endpoint".into(), json!({ "hostname": s.hostname, "uid": s.host_id }));
            e
        }
        "tls_sni" | "quic_sni" => {
            let mut e = common(4001, "Network Activity", 4, "Network Activity", 6);
            let proto = if s.kind == SightingKind::QuicSni { "udp" } else { "tcp" };
            let obj = e.as_object_mut()?;
            obj.insert("tls".into(), json!({ "sni": s.value }));
            obj.insert("dst_endpoint".into(), json!({ "hostname": s.value }));
            obj.insert("src_endpoint".into(), json!({ "hostname": s.hostname, "uid": s.host_id }));
            obj.insert(
                "connection_info".into(),
                json!({ "protocol_name": proto, "direction_id": 2 }),
            );
            e
        }
        "app" | "extension" | "cli" | "process" | "local_runtime" | "mcp_server" => {
            let mut e = common(5020, "Software Inventory Info", 5, "Discovery", 2);
            let obj = e.as_object_mut()?;
            let mut p = product.clone();
            if let Some(po) = p.as_object_mut() {
                po.insert("path".into(), json!(s.value));
            }
            obj.insert("product".into(), p);
            e
        }
        _ => return None,
    };
    let obj = event.as_object_mut()?;
    obj.insert("device".into(), device(s));
    obj.insert(
        "unmapped".into(),
        json!({ "aiscout": { "product": product, "indicator": s.kind, "value": s.value } }),
    );
    Some(event)
}

/// A Detection Finding for a product in use that is not sanctioned; `None` when sanctioned.
pub fn finding(row: &InventoryRow, now: i64) -> Option<Value> {
    let (status_id, severity_id, risk) = match row.status {
        ProductStatus::Sanctioned => return None,
        ProductStatus::Blocked => (1, 4, "High"),
        ProductStatus::Unsanctioned => (1, 3, "Medium"),
        ProductStatus::UnderReview => (2, 2, "Low"),
        _ => (1, 2, "Low"),
    };
    Some(json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "type_uid": 200_401,
        "severity_id": severity_id,
        "status_id": status_id,
        "risk_level": risk,
        "time": ms(now),
        "metadata": metadata(),
        "finding_info": {
            "uid": format!("aiscout:{}", row.product),
            "title": format!("{} AI product in use: {}", status_word(row.status), row.name),
            "types": ["Shadow AI"],
            "first_seen_time": ms(row.first_seen),
            "last_seen_time": ms(row.last_seen),
        },
        "resources": [{ "uid": row.product, "name": row.name, "type": row.category }],
        "unmapped": { "aiscout": {
            "status": row.status.as_str(),
            "vendor": row.vendor,
            "sources": row.sources,
            "devices": row.devices,
            "users": row.users,
            "departments": row.departments,
            "expense_spend": row.expense_spend,
            "gateway_spend": row.gateway_spend,
        } },
    }))
}

fn status_word(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Blocked => "Blocked",
        ProductStatus::Unsanctioned => "Unsanctioned",
        ProductStatus::UnderReview => "Under-review",
        _ => "Unreviewed",
    }
}

/// Every event as JSON lines: sightings first (by device), then findings (by product).
pub fn lines(rows: &[InventoryRow], sightings: &[DeviceSighting], now: i64) -> String {
    let by_id: std::collections::HashMap<&str, &InventoryRow> =
        rows.iter().map(|r| (r.product.as_str(), r)).collect();
    let mut out = String::new();
    let events = sightings
        .iter()
        .filter_map(|s| sighting_event(s, by_id.get(s.product.as_str()).copied()))
        .chain(rows.iter().filter_map(|r| finding(r, now)));
    for e in events {
        out.push_str(&e.to_string());
        out.push('\n');
    }
    out
}
