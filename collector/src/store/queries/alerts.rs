//! The alerts outbox's writes (see [`super::outbox`]): the channels of the running
//! configuration, events, the end of a delivery attempt and the digests' claims.

use aiscout_wire::UnixSecs;

use super::append_audit;
use crate::model::{Attempt, AuditRecord, ChannelRow, Claimed, DigestClaim, NewEvent};
use crate::store::StoreError;
use crate::store::outbox;
use crate::store::sql::{Conn, One};

/// [`crate::store::Store::sync_channels`], inside a writing transaction.
pub(crate) async fn sync_channels(
    tx: &impl Conn,
    channels: &[ChannelRow],
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(outbox::CHANNELS_OFF, &[]).await?;
    for ch in channels {
        tx.execute(outbox::CHANNEL_ON, &[&ch.name, &ch.kind, &outbox::events_text(ch), &now])
            .await?;
    }
    Ok(())
}

/// [`crate::store::Store::emit`], inside a writing transaction.
pub(crate) async fn emit(
    tx: &impl Conn,
    events: &[NewEvent],
    audit: Option<&AuditRecord>,
    now: i64,
) -> Result<u64, StoreError> {
    let new = outbox::emit(tx, events, now).await?;
    if let Some(a) = audit {
        append_audit(tx, a).await?;
    }
    Ok(new)
}

/// [`crate::store::Store::finish_delivery`], inside a writing transaction.
pub(crate) async fn finish_delivery(
    tx: &impl Conn,
    claimed: &Claimed,
    claimer: &str,
    attempt: &Attempt,
    audit: Option<&AuditRecord>,
    now: i64,
) -> Result<bool, StoreError> {
    let (state, next_at, done_at, status, error) = outbox::finish_values(attempt, now);
    let n = tx
        .execute(
            outbox::FINISH,
            &[
                &claimed.channel,
                &claimed.event.seq,
                &state,
                &next_at,
                &done_at,
                &status,
                &error,
                &claimer,
            ],
        )
        .await?;
    if n == 1
        && let Some(a) = audit
    {
        append_audit(tx, a).await?;
    }
    Ok(n == 1)
}

/// [`crate::store::Store::claim_digest`]. `INSERT ... ON CONFLICT` is atomic: of two
/// collectors claiming at once, the second sees the first's committed row, whose lease has
/// not run out, and changes nothing.
pub(crate) async fn claim_digest(
    c: &impl Conn,
    channel: &str,
    period_end: i64,
    claimer: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<DigestClaim>, StoreError> {
    let claimed = c
        .execute(outbox::DIGEST_CLAIM, &[&channel, &period_end, &claimer, &lease_until, &now])
        .await?;
    if claimed == 0 {
        return Ok(None);
    }
    let missing = || StoreError::NoRow { what: "the claimed digest" };
    let One(previous): One<Option<UnixSecs>> = c
        .query_opt(outbox::DIGEST_PREVIOUS, &[&channel, &period_end])
        .await?
        .ok_or_else(missing)?;
    let One(attempts): One<i64> = c
        .query_opt(outbox::DIGEST_ATTEMPTS, &[&channel, &period_end])
        .await?
        .ok_or_else(missing)?;
    Ok(Some(DigestClaim { previous, attempts }))
}

/// [`crate::store::Store::digest_failed`].
pub(crate) async fn digest_failed(
    c: &impl Conn,
    channel: &str,
    period_end: i64,
    claimer: &str,
    retry_at: i64,
) -> Result<(), StoreError> {
    c.execute(outbox::DIGEST_FAILED, &[&channel, &period_end, &claimer, &retry_at]).await?;
    Ok(())
}

/// [`crate::store::Store::digest_sent`].
pub(crate) async fn digest_sent(
    c: &impl Conn,
    channel: &str,
    period_end: i64,
    claimer: &str,
    now: i64,
    events: i64,
) -> Result<bool, StoreError> {
    Ok(c.execute(outbox::DIGEST_SENT, &[&channel, &period_end, &claimer, &now, &events]).await?
        == 1)
}
