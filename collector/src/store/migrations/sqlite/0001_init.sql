-- aiscout collector schema v1 (SQLite). Times are Unix seconds; hashes are SHA-256 bytes.
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    host_id TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    os_version TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    owner_email TEXT,
    enrolled_at INTEGER NOT NULL,
    last_contact INTEGER NOT NULL,
    dropped_sightings INTEGER NOT NULL DEFAULT 0,
    evicted_sightings INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE node_keys (
    key_hash BLOB PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX node_keys_device ON node_keys(device_id);
-- One row per (device, product, kind, value, user, process, window); absent user or process
-- is stored as '' so that the primary key treats it as one value (NULLs would all differ).
CREATE TABLE sightings (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    os_user TEXT NOT NULL,
    process TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (device_id, product, kind, value, os_user, process, window_start)
) WITHOUT ROWID;
CREATE INDEX sightings_product ON sightings(product, last_seen);
CREATE TABLE batches (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    batch_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    sightings INTEGER NOT NULL,
    PRIMARY KEY (device_id, batch_id)
) WITHOUT ROWID;
CREATE TABLE heartbeats (
    device_id INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    received_at INTEGER NOT NULL,
    agent_version TEXT NOT NULL,
    catalog_version INTEGER NOT NULL,
    interfaces_json TEXT NOT NULL,
    packets INTEGER NOT NULL,
    drops INTEGER NOT NULL,
    spool_depth INTEGER NOT NULL,
    evictions INTEGER NOT NULL,
    last_scan INTEGER
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security')),
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE reviews (
    product TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('blocked', 'sanctioned', 'under_review', 'unsanctioned')),
    note TEXT NOT NULL,
    reviewed_by TEXT NOT NULL,
    reviewed_at INTEGER NOT NULL
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
-- Directory of people (filled by the people import of issue 7); joins owners to departments.
CREATE TABLE people (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT NOT NULL,
    manager TEXT
);
