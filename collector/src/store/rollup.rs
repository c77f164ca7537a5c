//! The usage rollups: SQL shared by both backends (migration `0003_rollups`).
//!
//! Ingest stays cheap: per batch it appends one `usage_pending` row per (device, product,
//! kind, user). The fold moves pending rows into the rollups in one transaction:
//!
//! 1. pending rows are grouped into the temporary table `usage_fold` and deleted;
//! 2. `usage_kind` and `usage_product` are bumped: first and last seen, counts, and distinct
//!    devices and users, where a device or user counts only if its key is not yet in
//!    `usage_device`, `usage_kind_user`, `usage_product_device` or `usage_product_user`;
//! 3. those keys, and the departments of the devices' owners, are then inserted.
//!
//! Step 2 reads the key tables before step 3 writes them, so a key is counted exactly once
//! whatever order batches arrive in. On PostgreSQL one fold runs at a time (a transaction
//! advisory lock), and it deletes only pending rows committed before it started, so rows of a
//! batch still in flight wait for the next fold.
//!
//! Departments come from the people directory, which changes on import: `upsert_people` and a
//! re-enrollment that changes a device's owner mark `rollup_state.departments_dirty`, and the
//! next fold rebuilds `usage_department` from `usage_product_device`.

use std::sync::LazyLock;

/// Steps 2 and 3 of the fold, run after `usage_fold` holds the grouped pending rows.
/// Written for PostgreSQL; [`FOLD_SQLITE`] is the same with SQLite's scalar `MIN`/`MAX`.
pub const FOLD_POSTGRES: &str = "
INSERT INTO usage_kind (product, kind, first_seen, last_seen, count, devices, users)
SELECT f.product, f.kind, MIN(f.first_seen), MAX(f.last_seen), SUM(f.count),
       COUNT(DISTINCT CASE WHEN NOT EXISTS (
           SELECT 1 FROM usage_device u
           WHERE u.product = f.product AND u.kind = f.kind AND u.device_id = f.device_id)
           THEN f.device_id END),
       COUNT(DISTINCT CASE WHEN f.os_user <> '' AND NOT EXISTS (
           SELECT 1 FROM usage_kind_user u
           WHERE u.product = f.product AND u.kind = f.kind AND u.os_user = f.os_user)
           THEN f.os_user END)
FROM usage_fold f WHERE true GROUP BY f.product, f.kind
ON CONFLICT (product, kind) DO UPDATE SET
    first_seen = LEAST(usage_kind.first_seen, excluded.first_seen),
    last_seen = GREATEST(usage_kind.last_seen, excluded.last_seen),
    count = usage_kind.count + excluded.count,
    devices = usage_kind.devices + excluded.devices,
    users = usage_kind.users + excluded.users;
INSERT INTO usage_product (product, devices, users)
SELECT f.product,
       COUNT(DISTINCT CASE WHEN NOT EXISTS (
           SELECT 1 FROM usage_product_device u
           WHERE u.product = f.product AND u.device_id = f.device_id)
           THEN f.device_id END),
       COUNT(DISTINCT CASE WHEN f.os_user <> '' AND NOT EXISTS (
           SELECT 1 FROM usage_product_user u
           WHERE u.product = f.product AND u.os_user = f.os_user)
           THEN f.os_user END)
FROM usage_fold f WHERE true GROUP BY f.product
ON CONFLICT (product) DO UPDATE SET
    devices = usage_product.devices + excluded.devices,
    users = usage_product.users + excluded.users;
INSERT INTO usage_device (product, kind, device_id, os_user, first_seen, last_seen, count)
SELECT product, kind, device_id, os_user, first_seen, last_seen, count FROM usage_fold
WHERE true
ON CONFLICT (device_id, product, kind, os_user) DO UPDATE SET
    first_seen = LEAST(usage_device.first_seen, excluded.first_seen),
    last_seen = GREATEST(usage_device.last_seen, excluded.last_seen),
    count = usage_device.count + excluded.count;
INSERT INTO usage_kind_user (product, kind, os_user)
SELECT DISTINCT product, kind, os_user FROM usage_fold WHERE os_user <> ''
ON CONFLICT DO NOTHING;
INSERT INTO usage_product_device (product, device_id)
SELECT DISTINCT product, device_id FROM usage_fold WHERE true
ON CONFLICT DO NOTHING;
INSERT INTO usage_product_user (product, os_user)
SELECT DISTINCT product, os_user FROM usage_fold WHERE os_user <> ''
ON CONFLICT DO NOTHING;
INSERT INTO usage_department (product, department)
SELECT DISTINCT f.product, p.department FROM usage_fold f
JOIN devices d ON d.id = f.device_id JOIN people p ON p.email = d.owner_email
WHERE true
ON CONFLICT DO NOTHING;
";

/// [`FOLD_POSTGRES`] in SQLite's dialect.
pub static FOLD_SQLITE: LazyLock<String> =
    LazyLock::new(|| FOLD_POSTGRES.replace("LEAST(", "MIN(").replace("GREATEST(", "MAX("));

/// Rebuilds `usage_department` after people or owners changed.
pub const REBUILD_DEPARTMENTS: &str = "
DELETE FROM usage_department;
INSERT INTO usage_department (product, department)
SELECT DISTINCT u.product, p.department FROM usage_product_device u
JOIN devices d ON d.id = u.device_id JOIN people p ON p.email = d.owner_email;
UPDATE rollup_state SET departments_dirty = 0 WHERE id = 1;
";

/// Marks the departments for a rebuild.
pub const DEPARTMENTS_DIRTY: &str = "UPDATE rollup_state SET departments_dirty = 1 WHERE id = 1";

/// Reads the per-(product, kind) rollup; `$1` product and `$2` kind may be NULL.
pub const SOURCES: &str = "
SELECT product, kind, first_seen, last_seen, count, devices FROM usage_kind
WHERE ($1::text IS NULL OR product = $1) AND ($2::text IS NULL OR kind = $2)
ORDER BY product, kind";

/// Reads the per-product rollup; `$1` product may be NULL.
pub const PRODUCTS: &str = "
SELECT product, devices, users FROM usage_product
WHERE ($1::text IS NULL OR product = $1) ORDER BY product";

/// Reads departments per product; `$1` product may be NULL.
pub const DEPARTMENTS: &str = "
SELECT product, department FROM usage_department
WHERE ($1::text IS NULL OR product = $1) ORDER BY product, department";

/// The devices of one department (`$3`) and what they saw, for the two reads below.
const OF_DEPARTMENT: &str = "
FROM people p JOIN devices d ON d.owner_email = p.email
JOIN usage_device u ON u.device_id = d.id
WHERE p.department = $3 AND ($1::text IS NULL OR u.product = $1)
  AND ($2::text IS NULL OR u.kind = $2)";

/// Per (product, kind) for one department (`$3`); `$1` product and `$2` kind may be NULL.
pub static SOURCES_OF_DEPARTMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT u.product, u.kind, MIN(u.first_seen), MAX(u.last_seen), SUM(u.count)::bigint,
                COUNT(DISTINCT u.device_id) {OF_DEPARTMENT}
         GROUP BY u.product, u.kind ORDER BY u.product, u.kind"
    )
});

/// Per product for one department (`$3`); `$1` product and `$2` kind may be NULL.
pub static PRODUCTS_OF_DEPARTMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT u.product, COUNT(DISTINCT u.device_id), COUNT(DISTINCT NULLIF(u.os_user, ''))
         {OF_DEPARTMENT}
         GROUP BY u.product ORDER BY u.product"
    )
});

/// The same reads in SQLite's dialect (`?N` parameters, no casts).
pub fn sqlite(sql: &str) -> String {
    let mut out = sql.replace("::bigint", "");
    for n in 1..=3 {
        out = out.replace(&format!("${n}::text"), &format!("?{n}"));
        out = out.replace(&format!("${n}"), &format!("?{n}"));
    }
    out
}

/// Whether a usage filter can be answered from the rollups alone (no time bounds: the
/// rollups keep each device's usage since the beginning); time-bounded filters read the
/// sightings.
pub fn answers(filter: &crate::model::UsageFilter) -> bool {
    filter.since.is_none() && filter.until.is_none()
}

/// Per product, the devices and users of one kind (`$2`); `$1` product may be NULL.
pub const PRODUCTS_OF_KIND: &str = "
SELECT product, devices, users FROM usage_kind
WHERE ($1::text IS NULL OR product = $1) AND kind = $2 ORDER BY product";
