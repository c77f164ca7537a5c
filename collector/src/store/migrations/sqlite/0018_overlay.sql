-- Issue 17: the organisation overlay (own AI products, sanctioned gateways), one row per
-- version; the collector serves the highest, signed with its own key. Versions only grow.
CREATE TABLE org_overlay (
    version INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
