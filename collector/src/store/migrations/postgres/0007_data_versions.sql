-- Data versions (issue 13, console speed): one counter per family of data that the console's
-- and the API's derived views are computed from. A change to the family bumps its counter in
-- the same transaction, so a reader that sees a counter unchanged knows the family is
-- unchanged and may reuse what it derived from it (collector/src/join/cache.rs).
--   spend    expense lines, gateway spend, the people directory
--   devices  enrolments (a device's owner, host name)
--   usage    the rollups (bumped by every fold that moves pending rows)
CREATE TABLE data_versions (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO data_versions (name, version) VALUES ('spend', 0), ('devices', 0), ('usage', 0);
