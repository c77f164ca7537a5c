//! The read side written once: node keys, usage (from the sightings or the rollups), a
//! product's devices and values, the console's device page, MCP flags, data versions and
//! expense lines. The backend picks the connection or snapshot and folds first where a read
//! needs the rollups current.

use std::collections::HashMap;

use super::super::sql::{Conn, Dialect, FromRow, One, Param, Row, TextArray};
use super::super::{
    DEVICE_LAST_HEARTBEAT, MCP_FLAGS_SELECT, PRODUCT_DEVICES_LIMIT, PRODUCT_VALUES_LIMIT,
    StoreError, Versions, mcp_flags_row, rollup,
};
use super::DEVICE_SELECT;
use crate::model::{
    DeviceId, DeviceQuery, DeviceSummary, DeviceUsage, ExpenseLine, McpServerFlags, OwnerUse,
    ProductUsage, SourceUsage, UsageFilter, ValueUsage,
};
use crate::store::sql::from_row;

/// [`super::super::Store::device_by_key`].
pub(crate) async fn device_by_key(
    c: &impl Conn,
    key_hash: &[u8],
) -> Result<Option<DeviceId>, StoreError> {
    let id: Option<One<i64>> =
        c.query_opt("SELECT device_id FROM node_keys WHERE key_hash = $1", &[&key_hash]).await?;
    Ok(id.map(|One(id)| DeviceId(id)))
}

// ---- Usage -----------------------------------------------------------------------------

/// A (product, kind, first seen, last seen, count, devices) row, by position: the rollups'
/// reads ([`rollup::Plan::sources`]) name their columns each their own way.
impl FromRow for SourceUsage {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok(SourceUsage {
            product: r.at(0)?,
            source: r.at(1)?,
            first_seen: r.at(2)?,
            last_seen: r.at(3)?,
            count: r.at(4)?,
            devices: r.at(5)?,
        })
    }
}

from_row!(ProductUsage { product, devices, users, departments as TextList });

/// The usage filter as SQL: every parameter may be NULL, meaning "no filter".
const FILTER: &str = "($1::text IS NULL OR s.product = $1)
    AND ($2::text IS NULL OR s.kind = $2)
    AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM devices d JOIN people p
                                     ON p.email = d.owner_email
                                     WHERE d.id = s.device_id AND p.department = $3))
    AND ($4::bigint IS NULL OR s.last_seen >= $4)
    AND ($5::bigint IS NULL OR s.first_seen <= $5)";

/// [`super::super::Store::usage`] read from the sightings, for a filter the rollups cannot
/// answer (see [`rollup::plan`]).
pub(crate) async fn usage<C: Conn + Dialect>(
    c: &C,
    filter: &UsageFilter,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    let p: [&dyn Param; 5] =
        [&filter.product, &filter.kind, &filter.department, &filter.since, &filter.until];
    let sources = c
        .query(
            &format!(
                "SELECT s.product, s.kind, MIN(s.first_seen), MAX(s.last_seen),
                        SUM(s.count)::bigint, COUNT(DISTINCT s.device_id)
                 FROM sightings s WHERE {FILTER}
                 GROUP BY s.product, s.kind ORDER BY s.product, s.kind"
            ),
            &p,
        )
        .await?;
    let departments = C::text_list(
        "SELECT DISTINCT p.department AS v FROM sightings s2
         JOIN devices d ON d.id = s2.device_id
         JOIN people p ON p.email = d.owner_email
         WHERE s2.product = s.product ORDER BY 1",
    );
    let products = c
        .query(
            &format!(
                "SELECT s.product AS product, COUNT(DISTINCT s.device_id) AS devices,
                        COUNT(DISTINCT NULLIF(s.os_user, '')) AS users,
                        {departments} AS departments
                 FROM sightings s WHERE {FILTER}
                 GROUP BY s.product ORDER BY s.product"
            ),
            &p,
        )
        .await?;
    Ok((sources, products))
}

/// Runs one of the rollups' reads.
async fn rollup_read<T: FromRow>(c: &impl Conn, read: &rollup::Read) -> Result<Vec<T>, StoreError> {
    c.query(read.sql, &super::params(&read.args)).await
}

/// [`super::super::Store::usage`] answered from the rollups (see [`rollup::plan`]), inside
/// one snapshot the backend opened after folding.
pub(crate) async fn rollup_usage(
    tx: &impl Conn,
    plan: &rollup::Plan,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    let sources = rollup_read(tx, &plan.sources).await?;
    let mut departments: HashMap<String, Vec<String>> = HashMap::new();
    for (product, department) in rollup_read::<(String, String)>(tx, &plan.departments).await? {
        departments.entry(product).or_default().push(department);
    }
    let rows: Vec<(String, i64, i64)> = rollup_read(tx, &plan.products).await?;
    let products = rows
        .into_iter()
        .map(|(product, devices, users)| {
            let departments = departments.remove(&product).unwrap_or_default();
            ProductUsage { product, devices, users, departments }
        })
        .collect();
    Ok((sources, products))
}

// ---- A product's devices and values ----------------------------------------------------

from_row!(DeviceUsage {
    host_id,
    hostname,
    owner_email,
    first_seen,
    last_seen,
    count,
    users as TextList,
    installed,
});

/// [`super::super::Store::product_devices`]; the caller folds first.
pub(crate) async fn product_devices<C: Conn + Dialect>(
    c: &C,
    product: &str,
) -> Result<Vec<DeviceUsage>, StoreError> {
    let users = C::text_list(
        "SELECT DISTINCT s2.os_user AS v FROM usage_device s2
         WHERE s2.device_id = t.id AND s2.product = $1 AND s2.os_user <> '' ORDER BY 1",
    );
    // Users and the installed flag only for the devices listed.
    c.query(
        &format!(
            "SELECT t.host_id, t.hostname, t.owner_email, t.first_seen, t.last_seen, t.count,
                    {users} AS users,
                    (SELECT {}(i.present) FROM installed i
                     WHERE i.device_id = t.id AND i.product = $1) AS installed
             FROM (SELECT d.id, d.host_id, d.hostname, d.owner_email,
                          MIN(s.first_seen) AS first_seen, MAX(s.last_seen) AS last_seen,
                          SUM(s.count)::bigint AS count
                   FROM usage_device s JOIN devices d ON d.id = s.device_id
                   WHERE s.product = $1
                   GROUP BY d.id ORDER BY d.host_id LIMIT $2) t
             ORDER BY t.host_id",
            C::ANY_TRUE
        ),
        &[&product, &PRODUCT_DEVICES_LIMIT],
    )
    .await
}

from_row!(ValueUsage { kind, value, devices, count, first_seen, last_seen });

/// [`super::super::Store::product_values`].
pub(crate) async fn product_values(
    c: &impl Conn,
    product: &str,
    limit: i64,
) -> Result<Vec<ValueUsage>, StoreError> {
    // Found through sightings_product; ordered by bytes (the C collation, SQLite's BINARY),
    // whatever the database's collation.
    c.query(
        "SELECT kind, value, COUNT(DISTINCT device_id) AS devices, SUM(count)::bigint AS count,
                MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen
         FROM sightings WHERE product = $1
         GROUP BY kind, value
         ORDER BY kind COLLATE \"C\", value COLLATE \"C\" LIMIT $2",
        &[&product, &limit.clamp(1, PRODUCT_VALUES_LIMIT)],
    )
    .await
}

from_row!(OwnerUse { owner_email, product, last_seen });

/// [`super::super::Store::owner_last_use`] of at least one product; the caller folds first.
pub(crate) async fn owner_last_use<C: Conn + Dialect>(
    c: &C,
    products: &[String],
) -> Result<Vec<OwnerUse>, StoreError> {
    // The products go in as one parameter, so the statement is the same for any number.
    c.query(
        &format!(
            "SELECT lower(d.owner_email) AS owner_email, s.product AS product,
                    MAX(s.last_seen) AS last_seen
             FROM usage_device s JOIN devices d ON d.id = s.device_id
             WHERE s.product {}
               AND d.owner_email IS NOT NULL AND d.owner_email <> ''
             GROUP BY lower(d.owner_email), s.product
             ORDER BY 1, 2",
            C::in_texts("$1")
        ),
        &[&TextArray(products)],
    )
    .await
}

// ---- Devices page ----------------------------------------------------------------------

/// The devices a [`DeviceQuery`] matches (`$1` stale before, `$2` search, `$3` only stale).
fn device_filter<C: Dialect>() -> String {
    let hb = DEVICE_LAST_HEARTBEAT;
    let strpos = C::STRPOS;
    format!(
        "($2 = '' OR {strpos}(lower(d.hostname), $2) > 0 OR {strpos}(lower(d.host_id), $2) > 0
          OR {strpos}(lower(COALESCE(d.owner_email, '')), $2) > 0)
         AND (NOT $3 OR {hb} < $1)"
    )
}

/// The counts of [`super::super::Store::devices_page`]: (all, silent, matching).
pub(crate) async fn device_counts<C: Conn + Dialect>(
    c: &C,
    q: &DeviceQuery,
) -> Result<(i64, i64, i64), StoreError> {
    let hb = DEVICE_LAST_HEARTBEAT;
    let filter = device_filter::<C>();
    let counts = c
        .query_opt(
            &format!(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE {hb} < $1),
                        COUNT(*) FILTER (WHERE {filter})
                 FROM devices d LEFT JOIN heartbeats h ON h.device_id = d.id"
            ),
            &[&q.stale_before, &q.search, &q.only_stale],
        )
        .await?;
    Ok(counts.unwrap_or((0, 0, 0)))
}

/// The page of [`super::super::Store::devices_page`]: silent devices first, the longest
/// silent first, then by host name.
pub(crate) async fn device_page<C: Conn + Dialect>(
    c: &C,
    q: &DeviceQuery,
) -> Result<Vec<DeviceSummary>, StoreError> {
    let hb = DEVICE_LAST_HEARTBEAT;
    let filter = device_filter::<C>();
    c.query(
        &format!(
            "{DEVICE_SELECT} WHERE {filter}
             ORDER BY {hb} >= $1, {hb}, d.hostname COLLATE \"C\" LIMIT $4 OFFSET $5"
        ),
        &[&q.stale_before, &q.search, &q.only_stale, &q.limit, &q.offset],
    )
    .await
}

// ---- MCP flags, versions, expenses -----------------------------------------------------

/// One [`MCP_FLAGS_SELECT`] row.
struct McpRow(McpServerFlags);

impl FromRow for McpRow {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        let flags: String = r.at(2)?;
        Ok(McpRow(mcp_flags_row(r.at(0)?, r.at(1)?, &flags, r.at(3)?)))
    }
}

/// [`super::super::Store::mcp_flags`], sorted bytewise.
pub(crate) async fn mcp_flags(c: &impl Conn) -> Result<Vec<McpServerFlags>, StoreError> {
    let rows: Vec<McpRow> = c.query(MCP_FLAGS_SELECT, &[]).await?;
    let mut out: Vec<McpServerFlags> = rows.into_iter().map(|McpRow(f)| f).collect();
    out.sort_by(|a, b| (&a.product, &a.value, &a.flags).cmp(&(&b.product, &b.value, &b.flags)));
    Ok(out)
}

/// [`super::super::Store::versions`]; the caller folds first.
pub(crate) async fn versions(c: &impl Conn) -> Result<Versions, StoreError> {
    let mut v = Versions::default();
    for (name, version) in c.query::<(String, i64)>(super::super::VERSIONS_SELECT, &[]).await? {
        v.set(&name, version);
    }
    Ok(v)
}

from_row!(ExpenseLine {
    source,
    dedupe_key,
    file,
    line,
    occurred_at,
    amount_minor,
    currency,
    descriptor,
    merchant,
    payer_email,
    payer_name,
    department,
    product,
    candidate,
    candidate_reason
});

/// [`super::super::Store::expenses`]: the lines since a time (all for `None`), in time order.
pub(crate) async fn expenses(
    c: &impl Conn,
    since: Option<i64>,
) -> Result<Vec<ExpenseLine>, StoreError> {
    c.query(
        "SELECT source, dedupe_key, file, line, occurred_at, amount_minor, currency,
                descriptor, merchant, payer_email, payer_name, department, product,
                candidate, candidate_reason
         FROM expense_lines WHERE ($1::bigint IS NULL OR occurred_at >= $1)
         ORDER BY occurred_at, id",
        &[&since],
    )
    .await
}
