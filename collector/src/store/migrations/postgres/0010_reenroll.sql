-- Re-enrollment requests (issue 14 item 3): a known host id that enrolls again without its
-- node key is queued here by the `hold` policy; an admin's approval (console or CLI) lets the
-- next enrollment of that host id in, under any policy, and is used up by it. The `separate`
-- policy enrolls a second machine with a known host id (a cloned VDI or golden image) as a
-- device of its own, `HOST#2`, `HOST#3`..., with `duplicate_of` naming the host id it shares.
-- Self-contained.
ALTER TABLE devices ADD COLUMN duplicate_of TEXT;
CREATE TABLE reenroll_requests (
    host_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL DEFAULT '',
    os TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    requested_at BIGINT,
    approved_by TEXT,
    approved_at BIGINT
);
