-- aiscout collector schema v1 (PostgreSQL). Times are Unix seconds; hashes are SHA-256 bytes.
CREATE TABLE devices (
    id BIGSERIAL PRIMARY KEY,
    host_id TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    os_version TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    owner_email TEXT,
    enrolled_at BIGINT NOT NULL,
    last_contact BIGINT NOT NULL,
    dropped_sightings BIGINT NOT NULL DEFAULT 0,
    evicted_sightings BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE node_keys (
    key_hash BYTEA PRIMARY KEY,
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX node_keys_device ON node_keys(device_id);
-- One row per (device, product, kind, value, user, process, window); absent user or process
-- is stored as '' so that the primary key treats it as one value (NULLs would all differ).
CREATE TABLE sightings (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    os_user TEXT NOT NULL,
    process TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (device_id, product, kind, value, os_user, process, window_start)
);
CREATE INDEX sightings_product ON sightings(product, last_seen);
CREATE TABLE batches (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    batch_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    sightings BIGINT NOT NULL,
    PRIMARY KEY (device_id, batch_id)
);
CREATE TABLE heartbeats (
    device_id BIGINT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    received_at BIGINT NOT NULL,
    agent_version TEXT NOT NULL,
    catalog_version BIGINT NOT NULL,
    interfaces_json TEXT NOT NULL,
    packets BIGINT NOT NULL,
    drops BIGINT NOT NULL,
    spool_depth BIGINT NOT NULL,
    evictions BIGINT NOT NULL,
    last_scan BIGINT
);
CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security')),
    token_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE reviews (
    product TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('blocked', 'sanctioned', 'under_review', 'unsanctioned')),
    note TEXT NOT NULL,
    reviewed_by TEXT NOT NULL,
    reviewed_at BIGINT NOT NULL
);
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
-- Directory of people (filled by the people import of issue 7); joins owners to departments.
CREATE TABLE people (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT NOT NULL,
    manager TEXT
);
