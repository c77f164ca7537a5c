//! The periodic rules: events that no single write causes, found by looking at the joined
//! inventory, the devices, the reviews and the spend (`serve` runs them every
//! [`INTERVAL`]). Each event's id is keyed by its cause, so evaluating again, after a
//! restart or on another collector, writes nothing new:
//!
//! | type | key |
//! | --- | --- |
//! | `product.spread` | product, and the threshold it passed (devices or users) |
//! | `agent.stale` | device, and its last contact (a device that returns and falls silent again is a new event) |
//! | `subscription.renewal` | product, payer, and the renewal date |
//! | `spend.threshold` | budget scope and source, month, and level |

use std::time::Duration;

use aiscout_signatures::{Catalog, RiskWeights};
use aiscout_wire::{InventoryQuery, InventoryRow, ProductStatus, UnixSecs};
use serde_json::json;

use super::channel::{BudgetSource, Settings};
use super::event::{self, AGENT_STALE, SPEND_THRESHOLD, SPREAD, SUBSCRIPTION_RENEWAL};
use crate::join::{self, Facts, subscriptions::Cadence};
use crate::model::{DeviceSummary, NewEvent};

/// How often `serve` evaluates the rules.
pub const INTERVAL: Duration = Duration::from_secs(60);

const DAY: i64 = 86_400;

/// `product.spread`: unreviewed, under-review and unsanctioned products that reached the
/// configured devices or users.
pub fn spread(rows: &[InventoryRow], s: &Settings, now: i64) -> Vec<NewEvent> {
    let mut out = Vec::new();
    for r in rows {
        let watched = matches!(
            r.status,
            ProductStatus::Unreviewed | ProductStatus::UnderReview | ProductStatus::Unsanctioned
        );
        if !watched {
            continue;
        }
        let (d, u) = (u64::from(s.spread_devices), u64::from(s.spread_users));
        let passed = match (r.devices >= d, r.users >= u) {
            (true, _) => format!("devices>={d}"),
            (false, true) => format!("users>={u}"),
            (false, false) => continue,
        };
        out.push(event::make(
            SPREAD,
            &format!("{}\0{passed}", r.product),
            now,
            &r.product,
            &json!({ "product": r.product, "threshold": passed, "devices": r.devices,
                     "users": r.users, "departments": r.departments }),
        ));
    }
    out
}

/// `agent.stale`: enrolled devices without contact for `stale_hours`.
pub fn stale(devices: &[DeviceSummary], s: &Settings, now: i64) -> Vec<NewEvent> {
    let limit = i64::from(s.stale_hours) * 3_600;
    devices
        .iter()
        .filter(|d| now - d.last_contact.get() >= limit)
        .map(|d| {
            event::make(
                AGENT_STALE,
                &format!("{}\0{}", d.device.host_id, d.last_contact),
                now,
                "",
                &json!({ "device": d.device.host_id, "hostname": d.device.hostname,
                         "owner": d.device.owner_email, "last_contact": d.last_contact,
                         "silent_hours": (now - d.last_contact.get()) / 3_600 }),
            )
        })
        .collect()
}

/// `subscription.renewal`: renewal dates set in reviews, and annual subscriptions found in
/// the card lines (a year after their latest charge), within `renewal_days` from now.
pub fn renewals(facts: &Facts, catalog: &Catalog, s: &Settings, now: i64) -> Vec<NewEvent> {
    let horizon = now + i64::from(s.renewal_days) * DAY;
    let mut out = Vec::new();
    for r in &facts.reviews {
        if let Some(at) = r.renewal.map(UnixSecs::get)
            && at >= now
            && at <= horizon
        {
            out.push(event::make(
                SUBSCRIPTION_RENEWAL,
                &format!("{}\0review\0{at}", r.product),
                now,
                &r.product,
                &json!({ "product": r.product, "renews_at": at, "from": "review",
                         "business_owner": r.business_owner }),
            ));
        }
    }
    for sub in facts.spend.subscriptions(catalog) {
        if sub.cadence != Cadence::Annual || !sub.active {
            continue;
        }
        let at = sub.last_charge + 365 * DAY;
        if at >= now && at <= horizon {
            out.push(event::make(
                SUBSCRIPTION_RENEWAL,
                &format!("{}\0{}\0{at}", sub.product, sub.payer.label()),
                now,
                &sub.product,
                &json!({ "product": sub.product, "renews_at": at, "from": "expense",
                         "payer": sub.payer.label(), "amount_minor": sub.seat_minor,
                         "currency": sub.currency }),
            ));
        }
    }
    out
}

/// `spend.threshold`: this month's spend of each budget's scope at or past each level.
pub fn thresholds(facts: &Facts, s: &Settings, now: i64) -> Vec<NewEvent> {
    let month = crate::ingest::parse::year_month(now);
    let mut out = Vec::new();
    for b in &s.budgets {
        let spent: i64 = join::spend_by_month(facts, b.product.as_deref())
            .iter()
            .filter(|m| m.month == month && m.currency == b.currency)
            .filter(|m| b.department.as_deref().is_none_or(|d| m.department == d))
            .map(|m| match b.source {
                BudgetSource::Shadow => m.shadow_minor,
                BudgetSource::Gateway => m.gateway_minor,
                BudgetSource::All => m.shadow_minor.saturating_add(m.gateway_minor),
            })
            .fold(0_i64, i64::saturating_add);
        for level in &b.levels {
            let at = i128::from(b.monthly_minor) * i128::from(*level);
            if i128::from(spent) * 100 < at {
                continue;
            }
            out.push(event::make(
                SPEND_THRESHOLD,
                &format!("{}\0{}\0{month}\0{level}", b.scope(), b.source.name()),
                now,
                b.product.as_deref().unwrap_or(""),
                &json!({ "scope": b.scope(), "department": b.department, "product": b.product,
                         "source": b.source.name(), "month": month, "level": level,
                         "spent_minor": spent, "budget_minor": b.monthly_minor,
                         "currency": b.currency }),
            ));
        }
    }
    out
}

/// Every rule's events at `now`, from facts gathered for the inventory, their rows, and the
/// devices.
pub fn evaluate(
    catalog: &Catalog,
    facts: &Facts,
    devices: &[DeviceSummary],
    s: &Settings,
    now: i64,
) -> Vec<NewEvent> {
    let rows = join::inventory(catalog, &RiskWeights::default(), &InventoryQuery::default(), facts);
    let mut out = spread(&rows, s, now);
    out.extend(stale(devices, s, now));
    out.extend(renewals(facts, catalog, s, now));
    out.extend(thresholds(facts, s, now));
    out
}

/// Gathers what the rules read (through the console's cache) and writes their events; says
/// how many were new.
///
/// # Errors
/// A store read or the write failed.
pub async fn run<S: crate::store::Store>(
    store: &S,
    cache: &join::Cache,
    catalog: &Catalog,
    s: &Settings,
    now: i64,
) -> Result<u64, crate::store::StoreError> {
    let facts = join::gather_from(
        store,
        Some(cache),
        crate::model::UsageFilter::default(),
        now,
        join::Purpose::Inventory,
    )
    .await?;
    let devices = store.devices().await?;
    let events = evaluate(catalog, &facts, &devices, s, now);
    if events.is_empty() {
        return Ok(0);
    }
    store.emit(events, None, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;

    fn device(host: &str, last_contact: i64) -> DeviceSummary {
        DeviceSummary {
            device: Device {
                host_id: host.into(),
                hostname: host.into(),
                os: "linux".into(),
                os_version: "12".into(),
                agent_version: "0.1.0".into(),
                owner_email: None,
            },
            enrolled_at: UnixSecs(0),
            last_contact: UnixSecs(last_contact),
            dropped_sightings: 0,
            evicted_sightings: 0,
            health: None,
            duplicate_of: None,
        }
    }

    #[test]
    fn a_device_silent_again_after_returning_is_a_new_event() {
        let s = Settings { stale_hours: 2, ..Settings::default() };
        let first = stale(&[device("a", 0), device("b", 7_000)], &s, 7_200);
        assert_eq!(first.len(), 1, "b called 200 s ago");
        // Evaluated later, the same silence is the same event.
        assert_eq!(stale(&[device("a", 0)], &s, 9_000)[0].id, first[0].id);
        // a came back at 10_000 and fell silent again.
        let again = stale(&[device("a", 10_000)], &s, 20_000);
        assert_ne!(again[0].id, first[0].id);
    }

    #[test]
    fn spread_watches_products_nobody_sanctioned() {
        let row = |product: &str, status, devices| InventoryRow {
            product: product.into(),
            vendor: String::new(),
            name: String::new(),
            category: String::new(),
            status,
            sources: Vec::new(),
            devices,
            users: 0,
            departments: Vec::new(),
            first_seen: 0,
            last_seen: 0,
            sightings: 0,
            payers: 0,
            expense_spend: Vec::new(),
            gateway_spend: Vec::new(),
            gateway_tokens: 0,
            subscriptions: 0,
            annualized_cost: Vec::new(),
            mcp_flags: Vec::new(),
            bypass_devices: 0,
            bypass_people: 0,
            bypass_processes: Vec::new(),
            bypass_gateways: Vec::new(),
            risk_score: 0,
            risk_facts: Vec::new(),
        };
        let s = Settings { spread_devices: 3, ..Settings::default() };
        let rows = [
            row("a", ProductStatus::Unreviewed, 3),
            row("b", ProductStatus::Sanctioned, 50),
            row("c", ProductStatus::Blocked, 50),
            row("d", ProductStatus::Unsanctioned, 2),
        ];
        let events = spread(&rows, &s, 0);
        assert_eq!(events.iter().map(|e| e.product.as_str()).collect::<Vec<_>>(), ["a"]);
    }
}
