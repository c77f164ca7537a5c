-- The console: the viewer role, what a review records besides its decision, signed-in
-- sessions, the import history and the enroll secret rotated from the console.
--
-- The role CHECK of 0001 is a column constraint, named api_tokens_role_check by PostgreSQL.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'procurement', 'security', 'viewer'));
-- Who in the business is accountable, the sanctioned alternative ('' for none) and the
-- renewal date (Unix seconds of a UTC midnight).
ALTER TABLE reviews
    ADD COLUMN business_owner TEXT NOT NULL DEFAULT '',
    ADD COLUMN alternative TEXT NOT NULL DEFAULT '',
    ADD COLUMN renewal BIGINT;
-- A console session, keyed by the SHA-256 of its cookie value (the value is never stored).
-- `token` is the name of the API token it signed in with, so that revoking the token ends
-- the session; NULL for a single sign-on session.
CREATE TABLE console_sessions (
    session_hash BYTEA PRIMARY KEY,
    actor TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security', 'viewer')),
    method TEXT NOT NULL,
    token TEXT,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- The purge deletes by absolute expiry or by idle time: one index for each side of its OR.
CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
CREATE INDEX console_sessions_last_seen ON console_sessions(last_seen);
-- The audit page filters by actor or subject, newest first.
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_subject ON audit_log(subject, id);
-- One row per import, newest first by id.
CREATE TABLE import_runs (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    format TEXT NOT NULL,
    rows BIGINT NOT NULL,
    stored BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    errors BIGINT NOT NULL
);
-- The enroll secret set by the last rotation (its SHA-256) and when; no row until the first
-- rotation, when the configured secret enrolls. Only the latest matters: one row at most.
CREATE TABLE enroll_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret_hash BYTEA NOT NULL,
    set_at BIGINT NOT NULL
);
