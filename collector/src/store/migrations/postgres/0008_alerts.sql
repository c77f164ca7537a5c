-- Alerts (issue 15): an outbox of events, written in the same transaction as the change that
-- caused them, and one delivery row per (event, channel) written with the event.
--   alert_channels     the channels of the running configuration (synced by `serve`); an event
--                      is fanned out to the active ones whose `events` list takes its type
--   alert_events       one row per event; `id` is derived from the event's cause, so the same
--                      cause never makes two events (INSERT ... ON CONFLICT DO NOTHING)
--   alert_deliveries   per channel: pending, sending (leased), delivered, failed, capped
--   alert_known        products seen from any source (product.discovered fires on insert)
--   alert_tickets      issues a ticketing channel (Jira) opened, per subject, so that a later
--                      decision comments on the same issue
CREATE TABLE alert_channels (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    events TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    synced_at BIGINT NOT NULL
);
CREATE TABLE alert_events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    product TEXT NOT NULL,
    subject TEXT NOT NULL
);
CREATE TABLE alert_deliveries (
    channel TEXT NOT NULL,
    event_seq BIGINT NOT NULL REFERENCES alert_events (seq),
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    claimed_by TEXT NOT NULL DEFAULT '',
    last_status BIGINT,
    last_error TEXT,
    done_at BIGINT,
    PRIMARY KEY (channel, event_seq)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (channel, state, next_at);
CREATE TABLE alert_tickets (
    channel TEXT NOT NULL,
    subject TEXT NOT NULL,
    issue_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel, subject)
);
CREATE TABLE alert_known (
    product TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    source TEXT NOT NULL
);
-- What is already known is not news: products seen before this migration never fire
-- product.discovered.
INSERT INTO alert_known (product, first_seen, source)
    SELECT product, MIN(first_seen), 'sighting' FROM sightings GROUP BY product;
INSERT INTO alert_known (product, first_seen, source)
    SELECT product, MIN(occurred_at), 'expense' FROM expense_lines
    WHERE product IS NOT NULL GROUP BY product
    ON CONFLICT (product) DO NOTHING;
INSERT INTO alert_known (product, first_seen, source)
    SELECT product, MIN(period_start), 'gateway' FROM gateway_spend
    WHERE product IS NOT NULL GROUP BY product
    ON CONFLICT (product) DO NOTHING;
