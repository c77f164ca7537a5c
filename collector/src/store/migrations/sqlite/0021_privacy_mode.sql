-- Issue 21: the privacy mode this database keeps people in (`plain` or `pseudonymous`), recorded
-- by the first command that opens it with a mode (or, for a database from before this table,
-- read off what it holds). A collector started with the other mode refuses to run, so plain and
-- pseudonymised identities are never mixed in one database.
CREATE TABLE privacy_mode (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    mode TEXT NOT NULL CHECK (mode IN ('plain', 'pseudonymous')),
    recorded_at BIGINT NOT NULL
);
