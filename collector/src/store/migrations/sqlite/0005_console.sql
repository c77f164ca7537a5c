-- The console: the viewer role, what a review records besides its decision, signed-in
-- sessions, the import history and the enroll secret rotated from the console.
--
-- SQLite cannot change a CHECK constraint, so api_tokens is rebuilt with 'viewer' allowed
-- (the documented rebuild: new table, copy, drop, rename). No foreign key, trigger, view or
-- index other than its UNIQUE constraints refers to it, and the rows keep their ids.
CREATE TABLE api_tokens_viewer (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security', 'viewer')),
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
INSERT INTO api_tokens_viewer (id, name, role, token_hash, created_at, revoked_at)
SELECT id, name, role, token_hash, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_viewer RENAME TO api_tokens;
-- Who in the business is accountable, the sanctioned alternative ('' for none) and the
-- renewal date (Unix seconds of a UTC midnight).
ALTER TABLE reviews ADD COLUMN business_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE reviews ADD COLUMN alternative TEXT NOT NULL DEFAULT '';
ALTER TABLE reviews ADD COLUMN renewal INTEGER;
-- A console session, keyed by the SHA-256 of its cookie value (the value is never stored).
-- `token` is the name of the API token it signed in with, so that revoking the token ends
-- the session; NULL for a single sign-on session.
CREATE TABLE console_sessions (
    session_hash BLOB PRIMARY KEY,
    actor TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security', 'viewer')),
    method TEXT NOT NULL,
    token TEXT,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
-- The purge deletes by absolute expiry or by idle time: one index for each side of its OR.
CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
CREATE INDEX console_sessions_last_seen ON console_sessions(last_seen);
-- The audit page filters by actor or subject, newest first.
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_subject ON audit_log(subject, id);
-- One row per import, newest first by id.
CREATE TABLE import_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    format TEXT NOT NULL,
    rows INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    errors INTEGER NOT NULL
);
-- The enroll secret set by the last rotation (its SHA-256) and when; no row until the first
-- rotation, when the configured secret enrolls. Only the latest matters: one row at most.
CREATE TABLE enroll_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret_hash BLOB NOT NULL,
    set_at INTEGER NOT NULL
);
