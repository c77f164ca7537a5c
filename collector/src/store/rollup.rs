//! The usage rollups: SQL shared by both backends (migrations `0003_rollups` and
//! `0004_filters`).
//!
//! Ingest stays cheap: per batch it appends one `usage_pending` row per (device, product,
//! kind, user, UTC day of last seen). The fold moves pending rows into the rollups in one
//! transaction:
//!
//! 1. pending rows are grouped into the temporary table `usage_fold` and deleted;
//! 2. per counted key (a device or user of a product, or of a product through a kind) the fold
//!    notes its last day before this fold (none: the key is new) and after it, in the
//!    temporary `fold_*` tables, and each device's department in `fold_dev`;
//! 3. the totals are bumped: first and last seen and counts per product and kind, per day and
//!    per department, and distinct devices and users by the keys that are new;
//! 4. the "last seen on day D" histograms move each key whose last day advanced;
//! 5. the key tables take in the new keys and last days.
//!
//! Step 2 reads the key tables before step 5 writes them, so a key is counted exactly once
//! whatever order batches arrive in. On PostgreSQL one fold runs at a time (a transaction
//! advisory lock), and it deletes only pending rows committed before it started, so rows of a
//! batch still in flight wait for the next fold.
//!
//! What the rollups answer ([`plan`]): any product, kind and department filter without a time
//! bound, and any product and kind filter with a `since` at a UTC midnight (what
//! `report --since DATE` sends). A device was seen since day D exactly when its last day is D
//! or later, so the histograms give exact distinct counts for such a `since`. Other time
//! bounds read the sightings.
//!
//! Departments come from the people directory, which changes on import: `upsert_people` and a
//! re-enrollment that changes a device's owner mark `rollup_state.departments_dirty`, and the
//! next fold rebuilds the department rollups from `usage_device`.

use std::sync::LazyLock;

use crate::model::UsageFilter;
#[cfg(test)]
use aiscout_wire::UnixSecs;

/// Seconds in a UTC day, the rollups' unit of time.
pub const DAY: i64 = crate::model::calendar::DAY_SECS;

/// The temporary tables of one fold. `{keep}` is where PostgreSQL says `ON COMMIT DELETE
/// ROWS`; SQLite empties them itself.
const FOLD_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS usage_fold (device_id BIGINT, product TEXT, kind TEXT,
    os_user TEXT, day BIGINT, first_seen BIGINT, last_seen BIGINT, count BIGINT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_dev (device_id BIGINT, department TEXT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_kd (product TEXT, kind TEXT, device_id BIGINT,
    new_day BIGINT, old_day BIGINT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_ku (product TEXT, kind TEXT, os_user TEXT,
    new_day BIGINT, old_day BIGINT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_pd (product TEXT, device_id BIGINT, new_day BIGINT,
    old_day BIGINT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_pu (product TEXT, os_user TEXT, new_day BIGINT,
    old_day BIGINT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_dku (department TEXT, product TEXT, kind TEXT,
    os_user TEXT) {keep};
CREATE TEMP TABLE IF NOT EXISTS fold_du (department TEXT, product TEXT, os_user TEXT) {keep};
";

/// The fold's temporary tables for PostgreSQL (emptied on commit).
pub static FOLD_TABLES_POSTGRES: LazyLock<String> =
    LazyLock::new(|| FOLD_TABLES.replace("{keep}", "ON COMMIT DELETE ROWS"));

/// The fold's temporary tables for SQLite, emptied before use.
pub static FOLD_TABLES_SQLITE: LazyLock<String> =
    LazyLock::new(|| format!("{}\n{CLEAR_FOLD_TABLES}", FOLD_TABLES.replace("{keep}", "")));

/// Empties the fold's temporary tables (SQLite; PostgreSQL does it on commit).
pub const CLEAR_FOLD_TABLES: &str = "
DELETE FROM temp.usage_fold; DELETE FROM temp.fold_dev; DELETE FROM temp.fold_kd;
DELETE FROM temp.fold_ku; DELETE FROM temp.fold_pd; DELETE FROM temp.fold_pu;
DELETE FROM temp.fold_dku; DELETE FROM temp.fold_du;";

/// Step 1's grouping of pending rows; the backend supplies the rows (`{rows}`).
pub const GROUP_PENDING: &str = "
INSERT INTO usage_fold (device_id, product, kind, os_user, day, first_seen, last_seen, count)
SELECT device_id, product, kind, os_user, last_seen / 86400, MIN(first_seen), MAX(last_seen),
       SUM(count)
FROM {rows} GROUP BY device_id, product, kind, os_user, last_seen / 86400";

/// Step 2 of the fold, run after `usage_fold` holds the grouped pending rows; [`FOLD_TOTALS`]
/// follows.
pub const FOLD_KEYS: &str = "
INSERT INTO fold_dev (device_id, department)
SELECT d.id, p.department FROM devices d JOIN people p ON p.email = d.owner_email
WHERE d.id IN (SELECT device_id FROM usage_fold);
INSERT INTO fold_kd (product, kind, device_id, new_day, old_day)
SELECT f.product, f.kind, f.device_id, MAX(f.day),
       (SELECT MAX(u.last_seen) FROM usage_device u
        WHERE u.device_id = f.device_id AND u.product = f.product AND u.kind = f.kind) / 86400
FROM usage_fold f GROUP BY f.product, f.kind, f.device_id;
INSERT INTO fold_pd (product, device_id, new_day, old_day)
SELECT k.product, k.device_id, MAX(k.new_day),
       (SELECT u.last_day FROM usage_product_device u
        WHERE u.product = k.product AND u.device_id = k.device_id)
FROM fold_kd k GROUP BY k.product, k.device_id;
INSERT INTO fold_ku (product, kind, os_user, new_day, old_day)
SELECT f.product, f.kind, f.os_user, MAX(f.day),
       (SELECT u.last_day FROM usage_kind_user u
        WHERE u.product = f.product AND u.kind = f.kind AND u.os_user = f.os_user)
FROM usage_fold f WHERE f.os_user <> '' GROUP BY f.product, f.kind, f.os_user;
INSERT INTO fold_pu (product, os_user, new_day, old_day)
SELECT k.product, k.os_user, MAX(k.new_day),
       (SELECT u.last_day FROM usage_product_user u
        WHERE u.product = k.product AND u.os_user = k.os_user)
FROM fold_ku k GROUP BY k.product, k.os_user;
INSERT INTO fold_dku (department, product, kind, os_user)
SELECT DISTINCT v.department, f.product, f.kind, f.os_user
FROM usage_fold f JOIN fold_dev v ON v.device_id = f.device_id
WHERE f.os_user <> '' AND NOT EXISTS (
    SELECT 1 FROM usage_dept_kind_user u WHERE u.department = v.department
    AND u.product = f.product AND u.kind = f.kind AND u.os_user = f.os_user);
INSERT INTO fold_du (department, product, os_user)
SELECT DISTINCT v.department, f.product, f.os_user
FROM usage_fold f JOIN fold_dev v ON v.device_id = f.device_id
WHERE f.os_user <> '' AND NOT EXISTS (
    SELECT 1 FROM usage_dept_user u WHERE u.department = v.department
    AND u.product = f.product AND u.os_user = f.os_user);
";

/// The statistics PostgreSQL's planner needs for [`FOLD_TOTALS`] after a large
/// [`FOLD_KEYS`] (autovacuum never analyzes temporary tables; without them, joins on a million
/// folded rows pick nested loops).
pub const ANALYZE_FOLD_TABLES: &str = "
ANALYZE usage_fold; ANALYZE fold_dev; ANALYZE fold_kd; ANALYZE fold_ku; ANALYZE fold_pd;
ANALYZE fold_pu; ANALYZE fold_dku; ANALYZE fold_du;";

/// Steps 3 to 5 of the fold, after [`FOLD_KEYS`]. Written for PostgreSQL; [`FOLD_SQLITE`] is
/// both in SQLite's dialect (its scalar `MIN`/`MAX`). (`WHERE true` before `ON CONFLICT` keeps
/// SQLite's parser from reading a join's `ON`.)
pub const FOLD_TOTALS: &str = "
INSERT INTO usage_day (product, kind, day, first_seen, last_seen, count)
SELECT product, kind, day, MIN(first_seen), MAX(last_seen), SUM(count)
FROM usage_fold WHERE true GROUP BY product, kind, day
ON CONFLICT (product, kind, day) DO UPDATE SET
    first_seen = LEAST(usage_day.first_seen, excluded.first_seen),
    last_seen = GREATEST(usage_day.last_seen, excluded.last_seen),
    count = usage_day.count + excluded.count;
INSERT INTO usage_kind (product, kind, first_seen, last_seen, count, devices, users)
SELECT a.product, a.kind, a.first_seen, a.last_seen, a.count, COALESCE(d.n, 0),
       COALESCE(u.n, 0)
FROM (SELECT product, kind, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen,
             SUM(count) AS count
      FROM usage_fold GROUP BY product, kind) a
LEFT JOIN (SELECT product, kind, COUNT(*) AS n FROM fold_kd WHERE old_day IS NULL
           GROUP BY product, kind) d ON d.product = a.product AND d.kind = a.kind
LEFT JOIN (SELECT product, kind, COUNT(*) AS n FROM fold_ku WHERE old_day IS NULL
           GROUP BY product, kind) u ON u.product = a.product AND u.kind = a.kind
WHERE true
ON CONFLICT (product, kind) DO UPDATE SET
    first_seen = LEAST(usage_kind.first_seen, excluded.first_seen),
    last_seen = GREATEST(usage_kind.last_seen, excluded.last_seen),
    count = usage_kind.count + excluded.count,
    devices = usage_kind.devices + excluded.devices,
    users = usage_kind.users + excluded.users;
INSERT INTO usage_product (product, devices, users)
SELECT a.product, COALESCE(d.n, 0), COALESCE(u.n, 0)
FROM (SELECT DISTINCT product FROM fold_pd) a
LEFT JOIN (SELECT product, COUNT(*) AS n FROM fold_pd WHERE old_day IS NULL
           GROUP BY product) d ON d.product = a.product
LEFT JOIN (SELECT product, COUNT(*) AS n FROM fold_pu WHERE old_day IS NULL
           GROUP BY product) u ON u.product = a.product
WHERE true
ON CONFLICT (product) DO UPDATE SET
    devices = usage_product.devices + excluded.devices,
    users = usage_product.users + excluded.users;
INSERT INTO usage_dept_kind (department, product, kind, first_seen, last_seen, count, devices,
                             users)
SELECT a.department, a.product, a.kind, a.first_seen, a.last_seen, a.count, COALESCE(d.n, 0),
       COALESCE(u.n, 0)
FROM (SELECT v.department, f.product, f.kind, MIN(f.first_seen) AS first_seen,
             MAX(f.last_seen) AS last_seen, SUM(f.count) AS count
      FROM usage_fold f JOIN fold_dev v ON v.device_id = f.device_id
      GROUP BY v.department, f.product, f.kind) a
LEFT JOIN (SELECT v.department, k.product, k.kind, COUNT(*) AS n
           FROM fold_kd k JOIN fold_dev v ON v.device_id = k.device_id
           WHERE k.old_day IS NULL GROUP BY v.department, k.product, k.kind) d
    ON d.department = a.department AND d.product = a.product AND d.kind = a.kind
LEFT JOIN (SELECT department, product, kind, COUNT(*) AS n FROM fold_dku
           GROUP BY department, product, kind) u
    ON u.department = a.department AND u.product = a.product AND u.kind = a.kind
WHERE true
ON CONFLICT (department, product, kind) DO UPDATE SET
    first_seen = LEAST(usage_dept_kind.first_seen, excluded.first_seen),
    last_seen = GREATEST(usage_dept_kind.last_seen, excluded.last_seen),
    count = usage_dept_kind.count + excluded.count,
    devices = usage_dept_kind.devices + excluded.devices,
    users = usage_dept_kind.users + excluded.users;
INSERT INTO usage_dept_product (department, product, devices, users)
SELECT a.department, a.product, COALESCE(d.n, 0), COALESCE(u.n, 0)
FROM (SELECT DISTINCT v.department, k.product
      FROM fold_pd k JOIN fold_dev v ON v.device_id = k.device_id) a
LEFT JOIN (SELECT v.department, k.product, COUNT(*) AS n
           FROM fold_pd k JOIN fold_dev v ON v.device_id = k.device_id
           WHERE k.old_day IS NULL GROUP BY v.department, k.product) d
    ON d.department = a.department AND d.product = a.product
LEFT JOIN (SELECT department, product, COUNT(*) AS n FROM fold_du
           GROUP BY department, product) u
    ON u.department = a.department AND u.product = a.product
WHERE true
ON CONFLICT (department, product) DO UPDATE SET
    devices = usage_dept_product.devices + excluded.devices,
    users = usage_dept_product.users + excluded.users;

INSERT INTO usage_last_kind (product, kind, day, devices, users)
SELECT product, kind, day, SUM(devices), SUM(users) FROM (
    SELECT product, kind, new_day AS day, 1 AS devices, 0 AS users FROM fold_kd
    WHERE old_day IS NULL OR new_day > old_day
    UNION ALL
    SELECT product, kind, old_day, -1, 0 FROM fold_kd WHERE new_day > old_day
    UNION ALL
    SELECT product, kind, new_day, 0, 1 FROM fold_ku WHERE old_day IS NULL OR new_day > old_day
    UNION ALL
    SELECT product, kind, old_day, 0, -1 FROM fold_ku WHERE new_day > old_day
) AS moves WHERE true GROUP BY product, kind, day
ON CONFLICT (product, kind, day) DO UPDATE SET
    devices = usage_last_kind.devices + excluded.devices,
    users = usage_last_kind.users + excluded.users;
INSERT INTO usage_last_product (product, day, devices, users)
SELECT product, day, SUM(devices), SUM(users) FROM (
    SELECT product, new_day AS day, 1 AS devices, 0 AS users FROM fold_pd
    WHERE old_day IS NULL OR new_day > old_day
    UNION ALL
    SELECT product, old_day, -1, 0 FROM fold_pd WHERE new_day > old_day
    UNION ALL
    SELECT product, new_day, 0, 1 FROM fold_pu WHERE old_day IS NULL OR new_day > old_day
    UNION ALL
    SELECT product, old_day, 0, -1 FROM fold_pu WHERE new_day > old_day
) AS moves WHERE true GROUP BY product, day
ON CONFLICT (product, day) DO UPDATE SET
    devices = usage_last_product.devices + excluded.devices,
    users = usage_last_product.users + excluded.users;

INSERT INTO usage_device (product, kind, device_id, os_user, first_seen, last_seen, count)
SELECT product, kind, device_id, os_user, MIN(first_seen), MAX(last_seen), SUM(count)
FROM usage_fold WHERE true GROUP BY device_id, product, kind, os_user
ON CONFLICT (device_id, product, kind, os_user) DO UPDATE SET
    first_seen = LEAST(usage_device.first_seen, excluded.first_seen),
    last_seen = GREATEST(usage_device.last_seen, excluded.last_seen),
    count = usage_device.count + excluded.count;
INSERT INTO usage_kind_user (product, kind, os_user, last_day)
SELECT product, kind, os_user, new_day FROM fold_ku WHERE old_day IS NULL OR new_day > old_day
ON CONFLICT (product, kind, os_user) DO UPDATE SET last_day = excluded.last_day;
INSERT INTO usage_product_device (product, device_id, last_day)
SELECT product, device_id, new_day FROM fold_pd WHERE old_day IS NULL OR new_day > old_day
ON CONFLICT (product, device_id) DO UPDATE SET last_day = excluded.last_day;
INSERT INTO usage_product_user (product, os_user, last_day)
SELECT product, os_user, new_day FROM fold_pu WHERE old_day IS NULL OR new_day > old_day
ON CONFLICT (product, os_user) DO UPDATE SET last_day = excluded.last_day;
INSERT INTO usage_dept_kind_user (department, product, kind, os_user)
SELECT department, product, kind, os_user FROM fold_dku WHERE true ON CONFLICT DO NOTHING;
INSERT INTO usage_dept_user (department, product, os_user)
SELECT department, product, os_user FROM fold_du WHERE true ON CONFLICT DO NOTHING;
";

/// [`FOLD_KEYS`] and [`FOLD_TOTALS`] in SQLite's dialect.
pub static FOLD_SQLITE: LazyLock<String> = LazyLock::new(|| {
    format!("{FOLD_KEYS}{FOLD_TOTALS}").replace("LEAST(", "MIN(").replace("GREATEST(", "MAX(")
});

/// Device rollup rows with their owner's department.
const WITH_DEPARTMENT: &str = "FROM usage_device u JOIN devices d ON d.id = u.device_id
JOIN people p ON p.email = d.owner_email";

/// Rebuilds the department rollups after people or owners changed.
pub static REBUILD_DEPARTMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
DELETE FROM usage_dept_kind;
DELETE FROM usage_dept_product;
DELETE FROM usage_dept_kind_user;
DELETE FROM usage_dept_user;
INSERT INTO usage_dept_kind (department, product, kind, first_seen, last_seen, count, devices,
                             users)
SELECT p.department, u.product, u.kind, MIN(u.first_seen), MAX(u.last_seen), SUM(u.count),
       COUNT(DISTINCT u.device_id), COUNT(DISTINCT NULLIF(u.os_user, ''))
{WITH_DEPARTMENT} GROUP BY p.department, u.product, u.kind;
INSERT INTO usage_dept_product (department, product, devices, users)
SELECT p.department, u.product, COUNT(DISTINCT u.device_id),
       COUNT(DISTINCT NULLIF(u.os_user, ''))
{WITH_DEPARTMENT} GROUP BY p.department, u.product;
INSERT INTO usage_dept_kind_user (department, product, kind, os_user)
SELECT DISTINCT p.department, u.product, u.kind, u.os_user {WITH_DEPARTMENT}
WHERE u.os_user <> '';
INSERT INTO usage_dept_user (department, product, os_user)
SELECT DISTINCT p.department, u.product, u.os_user {WITH_DEPARTMENT} WHERE u.os_user <> '';
UPDATE rollup_state SET departments_dirty = 0 WHERE id = 1;
"
    )
});

/// Marks the departments for a rebuild.
pub const DEPARTMENTS_DIRTY: &str = "UPDATE rollup_state SET departments_dirty = 1 WHERE id = 1";

/// Filters on product (`$1`) and kind (`$2`), either NULL for none.
const PRODUCT_KIND: &str = "($1::text IS NULL OR product = $1) AND ($2::text IS NULL OR kind = $2)";

/// Per (product, kind): product, kind, first seen, last seen, count, devices.
const SOURCES: &str = "
SELECT product, kind, first_seen, last_seen, count, devices FROM usage_kind
WHERE ($1::text IS NULL OR product = $1) AND ($2::text IS NULL OR kind = $2)
ORDER BY product, kind";

/// [`SOURCES`] for one department (`$3`).
const SOURCES_OF_DEPARTMENT: &str = "
SELECT product, kind, first_seen, last_seen, count, devices FROM usage_dept_kind
WHERE department = $3 AND ($1::text IS NULL OR product = $1) AND ($2::text IS NULL OR kind = $2)
ORDER BY product, kind";

/// [`SOURCES`] for what was last seen on day `$3` or later.
static SOURCES_SINCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT a.product, a.kind, a.first_seen, a.last_seen, a.count, COALESCE(h.devices, 0)
         FROM (SELECT product, kind, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen,
                      SUM(count)::bigint AS count
               FROM usage_day WHERE day >= $3 AND {PRODUCT_KIND} GROUP BY product, kind) a
         LEFT JOIN (SELECT product, kind, SUM(devices)::bigint AS devices FROM usage_last_kind
                    WHERE day >= $3 AND {PRODUCT_KIND} GROUP BY product, kind) h
             ON h.product = a.product AND h.kind = a.kind
         ORDER BY a.product, a.kind"
    )
});

/// Per product, its departments; `$1` product may be NULL.
const DEPARTMENTS: &str = "
SELECT product, department FROM usage_dept_product
WHERE ($1::text IS NULL OR product = $1) ORDER BY product, department";

/// Per product: product, devices, users; `$1` product may be NULL.
const PRODUCTS: &str = "
SELECT product, devices, users FROM usage_product
WHERE ($1::text IS NULL OR product = $1) ORDER BY product";

/// [`PRODUCTS`] through one kind (`$2`).
const PRODUCTS_OF_KIND: &str = "
SELECT product, devices, users FROM usage_kind
WHERE ($1::text IS NULL OR product = $1) AND kind = $2 ORDER BY product";

/// [`PRODUCTS`] for one department (`$2`).
const PRODUCTS_OF_DEPARTMENT: &str = "
SELECT product, devices, users FROM usage_dept_product
WHERE department = $2 AND ($1::text IS NULL OR product = $1) ORDER BY product";

/// [`PRODUCTS`] for one department (`$3`) through one kind (`$2`).
const PRODUCTS_OF_DEPARTMENT_KIND: &str = "
SELECT product, devices, users FROM usage_dept_kind
WHERE department = $3 AND ($1::text IS NULL OR product = $1) AND kind = $2 ORDER BY product";

/// [`PRODUCTS`] for what was last seen on day `$2` or later.
const PRODUCTS_SINCE: &str = "
SELECT product, SUM(devices)::bigint, SUM(users)::bigint FROM usage_last_product
WHERE day >= $2 AND ($1::text IS NULL OR product = $1)
GROUP BY product HAVING SUM(devices) > 0 ORDER BY product";

/// [`PRODUCTS_SINCE`] through one kind (`$2`), from day `$3`.
const PRODUCTS_OF_KIND_SINCE: &str = "
SELECT product, SUM(devices)::bigint, SUM(users)::bigint FROM usage_last_kind
WHERE day >= $3 AND ($1::text IS NULL OR product = $1) AND kind = $2
GROUP BY product HAVING SUM(devices) > 0 ORDER BY product";

/// A query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Text, or NULL.
    Text(Option<String>),
    /// An integer.
    Int(i64),
}

/// One read: SQL in PostgreSQL's dialect (see [`sqlite`]) and its parameters `$1`, `$2`, ...
#[derive(Clone, Debug)]
pub struct Read {
    /// The statement.
    pub sql: &'static str,
    /// Its parameters, in order.
    pub args: Vec<Arg>,
}

/// The three reads that answer a usage filter from the rollups, in one snapshot: sources
/// (product, kind, first seen, last seen, count, devices), each product's departments, and products (product, devices,
/// users).
#[derive(Clone, Debug)]
pub struct Plan {
    /// Per (product, kind).
    pub sources: Read,
    /// Per product, its departments.
    pub departments: Read,
    /// Per product.
    pub products: Read,
}

/// How the rollups answer `filter`, or `None` when it must read the sightings: a time bound
/// other than a `since` at a UTC midnight, or a time bound with a department.
pub fn plan(filter: &UsageFilter) -> Option<Plan> {
    let product = || Arg::Text(filter.product.clone());
    let kind = || Arg::Text(filter.kind.clone());
    let read = |sql: &'static str, args: Vec<Arg>| Read { sql, args };
    let departments = read(DEPARTMENTS, vec![product()]);
    if filter.until.is_some() {
        return None;
    }
    let (sources, products) = match (filter.since, &filter.department) {
        // Day 0 would also hold the last second of each negative day (division truncates).
        (Some(since), None) if since.get() > 0 && since.get() % DAY == 0 => {
            let day = since.get() / DAY;
            let products = match &filter.kind {
                Some(k) => read(
                    PRODUCTS_OF_KIND_SINCE,
                    vec![product(), Arg::Text(Some(k.clone())), Arg::Int(day)],
                ),
                None => read(PRODUCTS_SINCE, vec![product(), Arg::Int(day)]),
            };
            (read(SOURCES_SINCE.as_str(), vec![product(), kind(), Arg::Int(day)]), products)
        }
        (Some(_), _) => return None,
        (None, Some(department)) => {
            let department = Arg::Text(Some(department.clone()));
            let products = match &filter.kind {
                Some(_) => {
                    read(PRODUCTS_OF_DEPARTMENT_KIND, vec![product(), kind(), department.clone()])
                }
                None => read(PRODUCTS_OF_DEPARTMENT, vec![product(), department.clone()]),
            };
            (read(SOURCES_OF_DEPARTMENT, vec![product(), kind(), department]), products)
        }
        (None, None) => {
            let products = match &filter.kind {
                Some(_) => read(PRODUCTS_OF_KIND, vec![product(), kind()]),
                None => read(PRODUCTS, vec![product()]),
            };
            (read(SOURCES, vec![product(), kind()]), products)
        }
    };
    Some(Plan { sources, departments, products })
}

/// A statement in SQLite's dialect (`?N` parameters, no casts).
pub fn sqlite(sql: &str) -> String {
    let mut out = sql.replace("::bigint", "");
    // From the highest down, so `$1` never eats the start of `$12`.
    for n in (1..=16).rev() {
        out = out.replace(&format!("${n}::text"), &format!("?{n}"));
        out = out.replace(&format!("${n}"), &format!("?{n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(since: Option<i64>, until: Option<i64>, department: Option<&str>) -> UsageFilter {
        UsageFilter {
            since: since.map(UnixSecs),
            until: until.map(UnixSecs),
            department: department.map(str::to_owned),
            ..UsageFilter::default()
        }
    }

    #[test]
    fn the_rollups_answer_all_time_and_since_a_midnight() {
        let midnight = 20_089 * DAY;
        let since = plan(&filter(Some(midnight), None, None)).expect("since a midnight");
        assert_eq!(since.sources.sql, SOURCES_SINCE.as_str());
        assert_eq!(since.products.args.last(), Some(&Arg::Int(20_089)));
        assert_eq!(plan(&filter(None, None, None)).expect("all time").sources.sql, SOURCES);
        let by_department = plan(&filter(None, None, Some("Sales"))).expect("department");
        assert_eq!(by_department.sources.sql, SOURCES_OF_DEPARTMENT);
    }

    #[test]
    fn other_time_bounds_read_the_sightings() {
        let midnight = 20_089 * DAY;
        assert!(plan(&filter(Some(midnight + 1), None, None)).is_none(), "inside a day");
        assert!(plan(&filter(Some(midnight), Some(midnight + DAY), None)).is_none(), "until");
        assert!(plan(&filter(None, Some(midnight), None)).is_none(), "until alone");
        assert!(plan(&filter(Some(midnight), None, Some("Sales"))).is_none(), "with department");
        assert!(plan(&filter(Some(0), None, None)).is_none(), "day 0");
        assert!(plan(&filter(Some(-DAY), None, None)).is_none(), "before 1970");
    }
}
