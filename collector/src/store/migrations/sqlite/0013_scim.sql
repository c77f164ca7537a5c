-- SCIM 2.0 provisioning (issue 16): Okta and Entra ID push the directory to /scim/v2.
--
-- A `scim` role for the token they authenticate with: SQLite cannot change a CHECK
-- constraint, so api_tokens and console_sessions are rebuilt as 0006 did (new table, copy,
-- drop, rename). The console refuses scim tokens at sign-in, so no scim session is written.
CREATE TABLE api_tokens_scim (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL
        CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy', 'scim')),
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
INSERT INTO api_tokens_scim (id, name, role, token_hash, created_at, revoked_at)
SELECT id, name, role, token_hash, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_scim RENAME TO api_tokens;
CREATE TABLE console_sessions_scim (
    session_hash BLOB PRIMARY KEY,
    actor TEXT NOT NULL,
    role TEXT NOT NULL
        CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy', 'scim')),
    method TEXT NOT NULL,
    token TEXT,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO console_sessions_scim (session_hash, actor, role, method, token, csrf,
    created_at, last_seen, expires_at)
SELECT session_hash, actor, role, method, token, csrf, created_at, last_seen, expires_at
FROM console_sessions;
DROP TABLE console_sessions;
ALTER TABLE console_sessions_scim RENAME TO console_sessions;
CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
CREATE INDEX console_sessions_last_seen ON console_sessions(last_seen);

-- Whether a person is an active seat: a deprovisioned person (SCIM active=false or DELETE)
-- keeps their row, so history still joins, but is 0 here.
ALTER TABLE people ADD COLUMN active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1));

-- SCIM resources as the identity provider wrote them (kind 'User' or 'Group'). `name` is the
-- lowercased userName or displayName, unique per kind (SCIM's uniqueness); `resource` is the
-- JSON document without id and meta, which the server adds; `version` is the ETag.
CREATE TABLE scim_resources (
    kind TEXT NOT NULL CHECK (kind IN ('User', 'Group')),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    resource TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name)
) WITHOUT ROWID;
CREATE INDEX scim_resources_created ON scim_resources(kind, created_at, id);
