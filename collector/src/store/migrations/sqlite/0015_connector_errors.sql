-- Connector status (issue 16): why a connector's run failed, shown on the console's imports
-- page beside its rows. Empty for a run that succeeded and for file imports, whose row errors
-- are counted in `errors` and reported with the upload. Never holds a credential: connector
-- errors name the setting that holds a refused key, not the key.
ALTER TABLE import_runs ADD COLUMN error TEXT NOT NULL DEFAULT '';
