-- Privacy (issue 21): erasure and retention may rewrite or delete audit entries, and only they.
-- The append-only trigger now lets a change through while the transaction making it holds the
-- one row of audit_unlock; erasure and retention insert it and delete it again inside their own
-- transaction (collector/src/store/erase.rs), so no other transaction ever sees it.
CREATE TABLE audit_unlock (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_unlock) THEN
        RAISE EXCEPTION 'audit log is append-only';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
-- The function finds audit_unlock in the schema it was created in, not through the search path
-- of whoever changes the log (a session with another search path, or its own audit_unlock
-- table earlier in it, must not get through).
ALTER FUNCTION audit_log_append_only() SET search_path FROM CURRENT;
-- Retention deletes by age, in chunks: each kind's age column needs an index (expense lines and
-- gateway rows have theirs since 0002).
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX sightings_last_seen ON sightings(last_seen);
