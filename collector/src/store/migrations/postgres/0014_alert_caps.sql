-- Alerts (issue 15): exact daily caps and digest backoff.
--   alert_deliveries.admitted_at  when the delivery took one of its channel's `max_per_day`
--                                 places (and passed its quiet period): set in one transaction
--                                 that serialises the channel's admissions (the channel row's
--                                 lock on PostgreSQL, the writer lock on SQLite), kept once
--                                 delivered or held for a digest, cleared when the attempt is
--                                 retried, fails or is capped. The cap counts the rows admitted
--                                 in the current calendar day (UTC), in flight ones included, so
--                                 concurrent attempts and several collectors never exceed it.
--   alert_digests.attempts        refused sends of a digest; the next waits the same
--                                 exponential backoff as a delivery (in `lease_until`).
ALTER TABLE alert_deliveries ADD COLUMN admitted_at BIGINT;
UPDATE alert_deliveries SET admitted_at = done_at
    WHERE state IN ('delivered', 'held') AND done_at IS NOT NULL
      AND event_seq IN (SELECT seq FROM alert_events WHERE type <> 'alert.test');
CREATE INDEX alert_deliveries_admitted ON alert_deliveries (channel, admitted_at);
ALTER TABLE alert_digests ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
