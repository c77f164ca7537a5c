-- Issue 6: rollups that answer the inventory without scanning every sighting.
--
-- Ingest appends one row per (device, product, kind, user) of each batch to usage_pending (an
-- append-only table with no secondary index, cheap to write). A fold (Store::fold: on a timer
-- in `serve`, and before every read that uses the rollups) moves pending rows into the tables
-- below in one transaction. Distinct counts are kept exact by counting only keys the fold has
-- not seen before.
CREATE TABLE usage_pending (
    seq BIGSERIAL PRIMARY KEY,
    device_id BIGINT NOT NULL,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    os_user TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL
);
-- Everything a device saw of a product through one kind, per user ('' = no user). Keyed by
-- device first, so the department filter reads each device's rows together; the fold's
-- lookups and the product detail go through usage_device_by_product.
CREATE TABLE usage_device (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    os_user TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (device_id, product, kind, os_user)
);
CREATE INDEX usage_device_by_product ON usage_device(product, kind, device_id);
-- Keys already counted, for exact distinct counts.
CREATE TABLE usage_kind_user (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    os_user TEXT NOT NULL,
    PRIMARY KEY (product, kind, os_user)
);
CREATE TABLE usage_product_device (
    product TEXT NOT NULL,
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (product, device_id)
);
CREATE TABLE usage_product_user (
    product TEXT NOT NULL,
    os_user TEXT NOT NULL,
    PRIMARY KEY (product, os_user)
);
-- Per product and kind, and per product: the inventory's numbers.
CREATE TABLE usage_kind (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    devices BIGINT NOT NULL,
    users BIGINT NOT NULL,
    PRIMARY KEY (product, kind)
);
CREATE TABLE usage_product (
    product TEXT PRIMARY KEY,
    devices BIGINT NOT NULL,
    users BIGINT NOT NULL
);
-- Departments (of device owners, through people) that saw each product. Rebuilt by the fold
-- when people or device owners changed (rollup_state.departments_dirty).
CREATE TABLE usage_department (
    product TEXT NOT NULL,
    department TEXT NOT NULL,
    PRIMARY KEY (product, department)
);
CREATE TABLE rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    departments_dirty BIGINT NOT NULL
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
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    os_user TEXT NOT NULL,
    present BOOLEAN NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, product, kind, value, os_user)
);
INSERT INTO installed (device_id, product, kind, value, os_user, present, changed_at)
SELECT device_id, product, kind, value, os_user, true, MAX(last_seen) FROM sightings
WHERE kind IN ('app', 'cli', 'extension', 'mcp_server', 'model')
GROUP BY device_id, product, kind, value, os_user;
-- Issue 7: nothing looks gateway spend up by its surrogate id, and its index cost a third of
-- the import's index upkeep; (source, dedupe_key) stays unique and identifies a row.
ALTER TABLE gateway_spend DROP CONSTRAINT gateway_spend_pkey;
