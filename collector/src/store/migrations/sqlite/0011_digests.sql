-- Alert digests (issue 15): one row per (channel, period end) once a collector claims the
-- digest of that period; `state` is 'sending' while a collector holds the lease and 'sent'
-- after the message was accepted, so a restart neither repeats nor skips a digest and, with
-- several collectors on one database, only the one holding the claim sends it. The events a
-- digest lists are the channel's deliveries 'held' for it (and 'capped') whose `done_at` lies
-- in [previous sent period end, period end). Self-contained.
CREATE TABLE alert_digests (
    channel TEXT NOT NULL,
    period_end BIGINT NOT NULL,
    state TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    sent_at BIGINT,
    events BIGINT,
    PRIMARY KEY (channel, period_end)
);
CREATE INDEX alert_deliveries_done ON alert_deliveries (channel, state, done_at);
