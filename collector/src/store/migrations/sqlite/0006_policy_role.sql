-- The policy role (issue 20): a token that reads only the policy exports
-- (GET /api/v1/policy/{format}) for DNS filters, MDM and EDR.
--
-- SQLite cannot change a CHECK constraint, so api_tokens and console_sessions are rebuilt with
-- 'policy' allowed, as 0005 rebuilt api_tokens for 'viewer' (new table, copy, drop, rename).
-- No foreign key, trigger or view refers to either table; the rows keep their ids and the
-- session indexes are created again. The console refuses policy tokens at sign-in, so no
-- policy session is ever written; the CHECK only keeps the two lists of roles the same.
CREATE TABLE api_tokens_policy (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy')),
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
INSERT INTO api_tokens_policy (id, name, role, token_hash, created_at, revoked_at)
SELECT id, name, role, token_hash, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_policy RENAME TO api_tokens;
CREATE TABLE console_sessions_policy (
    session_hash BLOB PRIMARY KEY,
    actor TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy')),
    method TEXT NOT NULL,
    token TEXT,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO console_sessions_policy (session_hash, actor, role, method, token, csrf,
    created_at, last_seen, expires_at)
SELECT session_hash, actor, role, method, token, csrf, created_at, last_seen, expires_at
FROM console_sessions;
DROP TABLE console_sessions;
ALTER TABLE console_sessions_policy RENAME TO console_sessions;
CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
CREATE INDEX console_sessions_last_seen ON console_sessions(last_seen);
