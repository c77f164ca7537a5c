-- Pull connectors (issue 16): one cursor per configured connector, by its name. The cursor
-- is the Unix second up to which the connector has pulled everything; the next run asks from
-- the cursor minus the connector's overlap window. It only moves forward (an update keeps
-- the larger value), so two collectors running the same connector never move it back. Rows
-- themselves go into gateway_spend through the file imports' idempotent path.
CREATE TABLE connector_cursors (
    name TEXT PRIMARY KEY,
    cursor_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
