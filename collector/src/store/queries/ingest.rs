//! The ingest side written once: heartbeats, a batch's own rows (the batch id and the
//! device's counters) and the privacy mode recorded at start-up. The bulk rows of a batch
//! (sightings, pending usage, installs) stay with each backend: PostgreSQL sends them as
//! arrays (`UNNEST`), SQLite through one prepared statement per row.

use std::collections::HashMap;

use super::super::sql::{Conn, Dialect, Lock, One};
use super::super::{RECORD_PRIVACY_MODE, RECORDED_PRIVACY_MODE, StoreError, outbox};
use crate::alerts::event;
use crate::identity::PrivacyMode;
use crate::model::{Batch, DeviceId, Health};

/// [`super::super::Store::heartbeat`], inside a writing transaction.
pub(crate) async fn heartbeat<C: Conn + Dialect>(
    tx: &C,
    device: DeviceId,
    h: &Health,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO heartbeats (device_id, received_at, agent_version, catalog_version,
            interfaces_json, packets, drops, spool_depth, evictions, last_scan)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (device_id) DO UPDATE SET received_at = excluded.received_at,
            agent_version = excluded.agent_version,
            catalog_version = excluded.catalog_version,
            interfaces_json = excluded.interfaces_json, packets = excluded.packets,
            drops = excluded.drops, spool_depth = excluded.spool_depth,
            evictions = excluded.evictions, last_scan = excluded.last_scan",
        &[
            &device.0,
            &h.received_at,
            &h.agent_version,
            &h.catalog_version,
            &h.interfaces_json,
            &h.packets,
            &h.drops,
            &h.spool_depth,
            &h.evictions,
            &h.last_scan,
        ],
    )
    .await?;
    tx.execute(
        &format!(
            "UPDATE devices SET last_contact = {}(last_contact, $2), agent_version = $3
             WHERE id = $1",
            C::GREATEST
        ),
        &[&device.0, &h.received_at, &h.agent_version],
    )
    .await?;
    Ok(())
}

/// Records a batch as received; answers false when it was already (a duplicate, which the
/// caller acknowledges without storing it again).
pub(crate) async fn insert_batch(
    tx: &impl Conn,
    device: DeviceId,
    batch_id: &str,
    now: i64,
    received: i64,
) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO batches (device_id, batch_id, received_at, sightings)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&device.0, &batch_id, &now, &received],
        )
        .await?;
    Ok(inserted > 0)
}

/// A stored batch's contact time and the sightings its agent dropped or evicted.
pub(crate) async fn batch_contact<C: Conn + Dialect>(
    tx: &C,
    device: DeviceId,
    now: i64,
    dropped: i64,
    evicted: i64,
) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "UPDATE devices SET last_contact = {}(last_contact, $2),
                dropped_sightings = dropped_sightings + $3,
                evicted_sightings = evicted_sightings + $4
             WHERE id = $1",
            C::GREATEST
        ),
        &[&device.0, &now, &dropped, &evicted],
    )
    .await?;
    Ok(())
}

/// [`super::super::Store::privacy_mode`], inside a transaction that the backend made the
/// only one deciding it (a table lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite).
pub(crate) async fn privacy_mode(
    tx: &impl Conn,
    opened_with: PrivacyMode,
    now: i64,
) -> Result<PrivacyMode, StoreError> {
    tx.lock(Lock::PrivacyMode).await?;
    let recorded: Option<One<String>> = tx.query_opt(RECORDED_PRIVACY_MODE, &[]).await?;
    let recorded = recorded.map(|One(mode)| mode);
    let known = recorded.is_some();
    let (plain, pseudonym) = if known {
        (false, false)
    } else {
        let plain: Option<()> = tx.query_opt(&super::super::plain_identity_sql(), &[]).await?;
        let pseudonym: Option<()> = tx.query_opt(super::super::ANY_PSEUDONYM, &[]).await?;
        (plain.is_some(), pseudonym.is_some())
    };
    let mode = super::super::privacy_mode_of(recorded, plain, pseudonym, opened_with)?;
    if !known && (plain || pseudonym) {
        tx.execute(RECORD_PRIVACY_MODE, &[&mode.as_str(), &now]).await?;
    }
    Ok(mode)
}

/// The descriptor mappings by descriptor, (id, product) each, for an expense import to
/// resolve its lines with ([`super::super::resolve_mapped`]), inside its transaction.
pub(crate) async fn mapping_keys(
    tx: &impl Conn,
) -> Result<HashMap<String, (i64, String)>, StoreError> {
    let rows: Vec<(String, i64, String)> =
        tx.query("SELECT descriptor, id, product FROM descriptor_mappings", &[]).await?;
    Ok(rows.into_iter().map(|(descriptor, id, product)| (descriptor, (id, product))).collect())
}

/// The alert events of a stored batch (see [`event::for_batch`]), in its transaction.
pub(crate) async fn batch_events(
    tx: &impl Conn,
    device: DeviceId,
    b: &Batch,
    now: i64,
) -> Result<(), StoreError> {
    let seen = b.sightings.iter().map(|s| (s.product.as_str(), s.kind, s.last_seen));
    let installed =
        b.installs.iter().filter(|i| i.present).map(|i| (i.product.as_str(), i.kind, i.at));
    let products = event::batch_products(seen.chain(installed));
    let names: Vec<&str> = products.iter().map(|p| p.product).collect();
    let new = known(tx, &names, now, "sighting").await?;
    let blocked = blocked(tx).await?;
    if new.is_empty() && !blocked.iter().any(|(b, _)| names.contains(&b.as_str())) {
        return Ok(());
    }
    let host: Option<One<String>> = tx.query_opt(outbox::HOST, &[&device.0]).await?;
    let host = host.map(|One(h)| h).unwrap_or_default();
    outbox::emit(tx, &event::for_batch(&host, &products, &new, &blocked), now).await?;
    Ok(())
}

/// Products of `products` not known before, inserted into the known products now (for the
/// alerts on a first sighting, expense or gateway spend).
pub(crate) async fn known(
    tx: &impl Conn,
    products: &[&str],
    at: i64,
    source: &str,
) -> Result<Vec<String>, StoreError> {
    let mut new = Vec::new();
    for p in products {
        if tx.execute(outbox::KNOWN_INSERT, &[p, &at, &source]).await? == 1 {
            new.push((*p).to_owned());
        }
    }
    Ok(new)
}

/// Blocked products with the time of their decision.
pub(crate) async fn blocked(tx: &impl Conn) -> Result<Vec<(String, i64)>, StoreError> {
    tx.query(outbox::BLOCKED, &[]).await
}
