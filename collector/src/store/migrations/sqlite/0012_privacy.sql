-- Privacy (issue 21): erasure and retention may rewrite or delete audit entries, and only they.
-- The append-only triggers now let a change through while the transaction making it holds the
-- one row of audit_unlock; erasure and retention insert it and delete it again inside their own
-- transaction (collector/src/store/erase.rs), so no other transaction ever sees it.
CREATE TABLE audit_unlock (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
DROP TRIGGER audit_log_no_update;
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_unlock)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_unlock)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
-- Retention deletes by age, in chunks: each kind's age column needs an index (expense lines and
-- gateway rows have theirs since 0002).
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX sightings_last_seen ON sightings(last_seen);
