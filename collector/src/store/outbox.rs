//! The alerts outbox (migration 0008): its statements, written once in PostgreSQL's dialect
//! and translated for SQLite by [`super::rollup::sqlite`], and the few lines of glue each driver
//! needs to run them. Events are written by `emit` inside the
//! transaction of the change that caused them, with one pending delivery per active channel
//! that takes their type; deliveries are claimed with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the writer lock on SQLite), so with several collectors each is sent by one.

use std::sync::LazyLock;

use aiscout_wire::UnixSecs;

use super::StoreError;
use super::sql::{Conn, FromRow, One, Row, ready};
use crate::model::{
    Admit, AdmitRule, Attempt, ChannelRow, Claimed, DeliveryRow, NewEvent, StoredEvent,
};
use crate::store::sql::from_row;

/// A product seen for the first time: one row is inserted, none when it was known.
pub const KNOWN_INSERT: &str = "INSERT INTO alert_known (product, first_seen, source)
    VALUES ($1, $2, $3) ON CONFLICT (product) DO NOTHING";
/// Blocked products with the time of the decision.
pub const BLOCKED: &str = "SELECT product, reviewed_at FROM reviews WHERE status = 'blocked'";
/// A device's host id.
pub const HOST: &str = "SELECT host_id FROM devices WHERE id = $1";
/// An event, unless its id is there already; answers its sequence number when inserted.
pub const EVENT_INSERT: &str = "INSERT INTO alert_events (id, type, occurred_at, product, subject)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING seq";
/// A pending delivery of event `$1` to every active channel that takes type `$3`.
/// `$4` names the one channel an event is for (a test event), `''` for all.
pub const FAN_OUT: &str = "INSERT INTO alert_deliveries (channel, event_seq, state, created_at,
        next_at)
    SELECT name, $1::bigint, 'pending', $2::bigint, $2::bigint FROM alert_channels
    WHERE active AND CASE WHEN $4::text = '' THEN events = ''
                              OR (',' || events || ',') LIKE ('%,' || $3::text || ',%')
                          ELSE name = $4::text END";
/// Channels of the running configuration: all off, then the configured ones on.
pub const CHANNELS_OFF: &str = "UPDATE alert_channels SET active = FALSE";
/// One configured channel.
pub const CHANNEL_ON: &str = "INSERT INTO alert_channels (name, kind, events, active, synced_at)
    VALUES ($1, $2, $3, TRUE, $4)
    ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, events = excluded.events,
        active = TRUE, synced_at = excluded.synced_at";
/// Claims up to `$4` due deliveries of channel `$1` at time `$2` for claimer `$5` until `$3`:
/// pending ones whose time has come, and sending ones whose lease ran out (their collector
/// died mid-attempt).
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE alert_deliveries SET state = 'sending', lease_until = $3, claimed_by = $5
         WHERE (channel, event_seq) IN (
             SELECT channel, event_seq FROM alert_deliveries
             WHERE channel = $1 AND ((state = 'pending' AND next_at <= $2)
                                     OR (state = 'sending' AND lease_until <= $2))
             ORDER BY event_seq LIMIT $4 {LOCK})"
    )
});
/// The row lock of [`CLAIM`] on PostgreSQL; SQLite's writer lock does the same there.
const LOCK: &str = "FOR UPDATE SKIP LOCKED";
/// What a claim took: the claimer's deliveries with this claim's lease end (a claimer's
/// earlier claims that it still holds end at another time).
pub const CLAIMED: &str = "SELECT e.seq, e.id, e.type, e.occurred_at, e.product, e.subject,
        d.attempts, d.created_at
    FROM alert_deliveries d JOIN alert_events e ON e.seq = d.event_seq
    WHERE d.channel = $1 AND d.state = 'sending' AND d.claimed_by = $2 AND d.lease_until = $3
    ORDER BY e.seq";
/// The end of one attempt, by its claimer only (a lease taken over by another is not touched).
/// A delivery that is not delivered or held gives its admission back.
pub const FINISH: &str = "UPDATE alert_deliveries SET state = $3, next_at = $4, done_at = $5,
        last_status = $6, last_error = $7, attempts = attempts + 1, claimed_by = '',
        admitted_at = CASE WHEN $3 IN ('delivered', 'held') THEN admitted_at END
    WHERE channel = $1 AND event_seq = $2 AND claimed_by = $8 AND state = 'sending'";
/// Locks channel `$1`'s row until the transaction ends, so that its admissions run one at a
/// time across collectors (PostgreSQL; SQLite's writer lock does the same there).
pub const CHANNEL_LOCK: &str = "SELECT name FROM alert_channels WHERE name = $1 FOR UPDATE";
/// When delivery (`$1`, `$2`) was admitted, while claimer `$3` holds it (no row: it does not).
pub const ADMISSION: &str = "SELECT admitted_at FROM alert_deliveries
    WHERE channel = $1 AND event_seq = $2 AND claimed_by = $3 AND state = 'sending'";
/// Deliveries of channel `$1` admitted in [`$2`, `$3`): delivered, held, or in flight.
pub const ADMITTED: &str = "SELECT COUNT(*) FROM alert_deliveries
    WHERE channel = $1 AND admitted_at >= $2 AND admitted_at < $3";
/// Deliveries of channel `$1` admitted since `$2` of an event of type `$3` about product `$4`.
pub const ADMITTED_LIKE: &str = "SELECT COUNT(*) FROM alert_deliveries d
    JOIN alert_events e ON e.seq = d.event_seq
    WHERE d.channel = $1 AND d.admitted_at >= $2 AND e.type = $3 AND e.product = $4";
/// Admits delivery (`$1`, `$2`) at `$3`.
pub const ADMIT: &str =
    "UPDATE alert_deliveries SET admitted_at = $3 WHERE channel = $1 AND event_seq = $2";
/// The latest deliveries, newest event first.
pub const LIST: &str = "SELECT d.channel, e.id, e.type, e.product, e.occurred_at, d.state,
        d.attempts, d.last_status, d.last_error, d.done_at, d.next_at
    FROM alert_deliveries d JOIN alert_events e ON e.seq = d.event_seq
    ORDER BY e.seq DESC, d.channel LIMIT $1";
/// Deliveries per channel and state.
pub const COUNTS: &str =
    "SELECT channel, state, COUNT(*) FROM alert_deliveries GROUP BY channel, state ORDER BY 1, 2";
/// Events of channel `$1` in state `$2` that happened in [`$3`, `$4`), oldest first (digests).
pub const EVENTS_OF: &str = "SELECT e.seq, e.id, e.type, e.occurred_at, e.product, e.subject
    FROM alert_deliveries d JOIN alert_events e ON e.seq = d.event_seq
    WHERE d.channel = $1 AND d.state = $2 AND d.done_at >= $3 AND d.done_at < $4
    ORDER BY e.seq";

/// Claims the digest of (channel, period end) for a claimer until a lease end: a new row, or
/// one not sent whose lease ran out. One row changed means the claim is held.
pub const DIGEST_CLAIM: &str = "INSERT INTO alert_digests
        (channel, period_end, state, claimed_by, lease_until)
    VALUES ($1, $2, 'sending', $3, $4)
    ON CONFLICT (channel, period_end) DO UPDATE
        SET claimed_by = excluded.claimed_by, lease_until = excluded.lease_until
        WHERE alert_digests.state <> 'sent'
          AND (alert_digests.lease_until <= $5 OR alert_digests.claimed_by = excluded.claimed_by)";
/// The refused sends of a digest so far.
pub const DIGEST_ATTEMPTS: &str =
    "SELECT attempts FROM alert_digests WHERE channel = $1 AND period_end = $2";
/// A digest's send was refused: released by claimer `$3` until `$4` (its backoff).
pub const DIGEST_FAILED: &str = "UPDATE alert_digests
    SET attempts = attempts + 1, claimed_by = '', lease_until = $4
    WHERE channel = $1 AND period_end = $2 AND claimed_by = $3 AND state = 'sending'";
/// The end of the channel's latest sent digest before a period end.
pub const DIGEST_PREVIOUS: &str = "SELECT MAX(period_end) FROM alert_digests
    WHERE channel = $1 AND state = 'sent' AND period_end < $2";
/// Marks a claimed digest sent (only while the claimer holds it).
pub const DIGEST_SENT: &str = "UPDATE alert_digests SET state = 'sent', sent_at = $4, events = $5
    WHERE channel = $1 AND period_end = $2 AND claimed_by = $3 AND state = 'sending'";

/// The issue a ticketing channel opened for a subject.
pub const TICKET: &str = "SELECT issue_key FROM alert_tickets WHERE channel = $1 AND subject = $2";
/// Records the issue opened for a subject (the first one stays).
pub const TICKET_SET: &str = "INSERT INTO alert_tickets (channel, subject, issue_key, created_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT (channel, subject) DO NOTHING";

/// The row values of an attempt's end: state, next attempt, done at, status, error.
pub fn finish_values(
    attempt: &Attempt,
    now: i64,
) -> (&'static str, i64, Option<i64>, Option<i64>, Option<String>) {
    match attempt {
        Attempt::Delivered { status } => ("delivered", now, Some(now), Some(*status), None),
        Attempt::Retry { at, status, error } => {
            ("pending", at.get(), None, *status, Some(error.clone()))
        }
        Attempt::Failed { status, error } => {
            ("failed", now, Some(now), *status, Some(error.clone()))
        }
        Attempt::Capped { reason } => ("capped", now, Some(now), None, Some(reason.clone())),
        Attempt::Held => ("held", now, Some(now), None, None),
    }
}

/// The calendar day (UTC) of `now`: its start and its end.
pub fn day_of(now: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(DAY);
    (start, start + DAY)
}

const DAY: i64 = 86_400;

/// An admission's answer once the claim is known to be held: `current` is its admission time
/// (if any), `admitted` the channel's admissions today so far, `alike` counts those of the
/// same type and product in the quiet period (asked only for an event about a product).
/// `None` means: admit now.
fn refusal(
    current: Option<i64>,
    now: i64,
    rule: &AdmitRule,
    product: &str,
    admitted: i64,
    alike: impl FnOnce(i64) -> Result<i64, StoreError>,
) -> Result<Option<Admit>, StoreError> {
    let (today, _) = day_of(now);
    if current.is_some_and(|t| t >= today) {
        // A re-claim of an attempt that did not finish (its collector died): it holds a
        // place of today's already.
        return Ok(Some(Admit::Admitted));
    }
    if admitted >= rule.max_per_day {
        return Ok(Some(Admit::Capped(format!("max_per_day {} reached", rule.max_per_day))));
    }
    if let Some(since) = rule.quiet_since.filter(|_| !product.is_empty())
        && alike(since.get())? > 0
    {
        return Ok(Some(Admit::Capped("quiet period".into())));
    }
    Ok(None)
}

/// A channel's event types as stored: comma-joined, empty for all.
pub fn events_text(row: &ChannelRow) -> String {
    row.events.join(",")
}

/// Writes `events` (each once by id) with their pending deliveries, inside the transaction
/// of the change that caused them; says how many were new.
pub(crate) async fn emit(tx: &impl Conn, events: &[NewEvent], now: i64) -> Result<u64, StoreError> {
    let mut new = 0;
    for e in events {
        let seq: Option<One<i64>> = tx
            .query_opt(EVENT_INSERT, &[&e.id, &e.kind, &e.occurred_at, &e.product, &e.subject])
            .await?;
        if let Some(One(seq)) = seq {
            tx.execute(FAN_OUT, &[&seq, &now, &e.kind, &e.to_channel]).await?;
            new += 1;
        }
    }
    Ok(new)
}

impl FromRow for StoredEvent {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok(StoredEvent {
            seq: r.get("seq")?,
            event: NewEvent {
                id: r.get("id")?,
                kind: r.get("type")?,
                occurred_at: r.get("occurred_at")?,
                product: r.get("product")?,
                subject: r.get("subject")?,
                to_channel: String::new(),
            },
        })
    }
}

from_row!(DeliveryRow {
    channel,
    event_id = "id",
    kind = "type",
    product,
    occurred_at,
    state,
    attempts,
    last_status,
    last_error,
    done_at,
    next_at,
});

// ---- Both drivers ----------------------------------------------------------------------

/// A [`CLAIMED`] row: the event and its delivery's attempts and queue time.
struct ClaimedRow {
    event: StoredEvent,
    attempts: i64,
    created_at: UnixSecs,
}

impl FromRow for ClaimedRow {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok(ClaimedRow {
            event: StoredEvent::from_row(r)?,
            attempts: r.get("attempts")?,
            created_at: r.get("created_at")?,
        })
    }
}

/// Claims due deliveries of `channel` (see `CLAIM`), inside a writing transaction: the rows
/// are locked `SKIP LOCKED` on PostgreSQL; SQLite's writer lock does the same there.
pub(crate) async fn claim(
    tx: &impl Conn,
    channel: &str,
    claimer: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let sql = if tx.for_update().is_empty() { CLAIM.replace(LOCK, "") } else { CLAIM.clone() };
    tx.execute(&sql, &[&channel, &now, &lease_until, &limit, &claimer]).await?;
    let rows: Vec<ClaimedRow> = tx.query(CLAIMED, &[&channel, &claimer, &lease_until]).await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            channel: channel.to_owned(),
            event: r.event,
            attempts: r.attempts,
            created_at: r.created_at,
        })
        .collect())
}

/// Admits claimed deliveries of one channel under `rule`, in order (see [`ADMITTED`]),
/// inside a writing transaction that serialises admissions: the channel row's lock
/// ([`CHANNEL_LOCK`]) across collectors on PostgreSQL, the writer lock on SQLite.
pub(crate) async fn admit(
    tx: &impl Conn,
    claimed: &[Claimed],
    claimer: &str,
    now: i64,
    rule: &AdmitRule,
) -> Result<Vec<Admit>, StoreError> {
    let Some(channel) = claimed.first().map(|c| c.channel.as_str()) else { return Ok(Vec::new()) };
    if !tx.for_update().is_empty() {
        let _locked: Option<One<String>> = tx.query_opt(CHANNEL_LOCK, &[&channel]).await?;
    }
    let (today, tomorrow) = day_of(now);
    let One(mut admitted): One<i64> = tx
        .query_opt(ADMITTED, &[&channel, &today, &tomorrow])
        .await?
        .ok_or_else(|| StoreError::NoRow { what: "COUNT(*)" })?;
    let mut answers = Vec::with_capacity(claimed.len());
    for c in claimed {
        let (channel, seq, e) = (c.channel.as_str(), c.event.seq, &c.event.event);
        let current: Option<One<Option<i64>>> =
            tx.query_opt(ADMISSION, &[&channel, &seq, &claimer]).await?;
        let Some(One(current)) = current else {
            answers.push(Admit::Lost);
            continue;
        };
        // `refusal` is synchronous: the quiet period's count is read before it, when it applies.
        let alike: i64 = match rule.quiet_since {
            Some(since) if !e.product.is_empty() => tx
                .query_opt::<One<i64>>(ADMITTED_LIKE, &[&channel, &since, &e.kind, &e.product])
                .await?
                .map_or(0, |One(n)| n),
            _ => 0,
        };
        if let Some(answer) = refusal(current, now, rule, &e.product, admitted, |_| Ok(alike))? {
            answers.push(answer);
            continue;
        }
        tx.execute(ADMIT, &[&channel, &seq, &now]).await?;
        admitted += 1;
        answers.push(Admit::Admitted);
    }
    Ok(answers)
}

// ---- SQLite ----------------------------------------------------------------------------

/// `emit` on a SQLite connection, which completes at once.
pub fn sqlite_emit(
    tx: &rusqlite::Connection,
    events: &[NewEvent],
    now: i64,
) -> Result<u64, StoreError> {
    ready(emit(tx, events, now))
}
