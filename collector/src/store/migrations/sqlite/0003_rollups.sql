-- Issue 6: rollups that answer the inventory without scanning every sighting.
--
-- Ingest appends one row per (device, product, kind, user) of each batch to usage_pending (an
-- append-only table with no secondary index, cheap to write). A fold (Store::fold: on a timer
-- in `serve`, and before every read that uses the rollups) moves pending rows into the tables
-- below in one transaction. Distinct counts are kept exact by counting only keys the fold has
-- not seen before.
CREATE TABLE usage_pending (
    seq INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    os_user TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL
);
-- Everything a device saw of a product through one kind, per user ('' = no user). Keyed by
-- device first, so the department filter reads each device's rows together; the fold's
-- lookups and the product detail go through usage_device_by_product.
CREATE TABLE usage_device (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    os_user TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (device_id, product, kind, os_user)
) WITHOUT ROWID;
CREATE INDEX usage_device_by_product ON usage_device(product, kind, device_id);
-- Keys already counted, for exact distinct counts.
CREATE TABLE usage_kind_user (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    os_user TEXT NOT NULL,
    PRIMARY KEY (product, kind, os_user)
) WITHOUT ROWID;
CREATE TABLE usage_product_device (
    product TEXT NOT NULL,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (product, device_id)
) WITHOUT ROWID;
CREATE TABLE usage_product_user (
    product TEXT NOT NULL,
    os_user TEXT NOT NULL,
    PRIMARY KEY (product, os_user)
) WITHOUT ROWID;
-- Per product and kind, and per product: the inventory's numbers.
CREATE TABLE usage_kind (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    users INTEGER NOT NULL,
    PRIMARY KEY (product, kind)
) WITHOUT ROWID;
CREATE TABLE usage_product (
    product TEXT PRIMARY KEY,
    devices INTEGER NOT NULL,
    users INTEGER NOT NULL
) WITHOUT ROWID;
-- Departments (of device owners, through people) that saw each product. Rebuilt by the fold
-- when people or device owners changed (rollup_state.departments_dirty).
CREATE TABLE usage_department (
    product TEXT NOT NULL,
    department TEXT NOT NULL,
    PRIMARY KEY (product, department)
) WITHOUT ROWID;
CREATE TABLE rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    departments_dirty INTEGER NOT NULL
);
INSERT INTO rollup_state (id, departments_dirty) VALUES (1, 0);
-- The department filter starts from people (devices_owner is in 0002).
CREATE INDEX people_department ON people(department);
-- Existing sightings are folded by the first fold after this migration.
INSERT INTO usage_pending (device_id, product, kind, os_user, first_seen, last_seen, count)
SELECT device_id, product, kind, os_user, MIN(first_seen), MAX(last_seen), SUM(count)
FROM sightings GROUP BY device_id, product, kind, os_user;
-- Issue 4: installed items (app, cli, extension, mcp_server, model) as last reported, present
-- or removed, per device. A report older than the stored one changes nothing.
CREATE TABLE installed (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    os_user TEXT NOT NULL,
    present INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, product, kind, value, os_user)
) WITHOUT ROWID;
INSERT INTO installed (device_id, product, kind, value, os_user, present, changed_at)
SELECT device_id, product, kind, value, os_user, 1, MAX(last_seen) FROM sightings
WHERE kind IN ('app', 'cli', 'extension', 'mcp_server', 'model')
GROUP BY device_id, product, kind, value, os_user;
