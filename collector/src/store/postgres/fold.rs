//! PostgreSQL folds of pending usage into the rollups (one collector at a time, under an
//! advisory lock), and the inventory read from the rollups.

use crate::model::{ProductUsage, SourceUsage};
use crate::store::{StoreError, queries, rollup};

/// The advisory lock key that serialises folds ("rollups" in ASCII).
const FOLD_LOCK: i64 = 0x0072_6f6c_6c75_7073;

/// Folds pending usage into the rollups (see [`rollup`]) on one connection. A `background`
/// fold skips when another fold holds the lock; a fold for a read waits for it, so the read
/// sees everything acknowledged before it. Either vacuums after a large fold.
pub(super) async fn fold(
    client: &mut deadpool_postgres::Object,
    background: bool,
) -> Result<u64, StoreError> {
    // Cheap check first: most calls find nothing to do and take no lock.
    let busy: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM usage_pending)
                 OR (SELECT departments_dirty <> 0 FROM rollup_state WHERE id = 1)",
            &[],
        )
        .await?
        .try_get(0)?;
    if !busy {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    if background {
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FOLD_LOCK])
            .await?
            .try_get(0)?;
        if !locked {
            // Another collector is folding; its fold takes in these rows.
            return Ok(0);
        }
    } else {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FOLD_LOCK]).await?;
    }
    // Lock the flag before reading anything: an enroll or people import that marks the
    // departments dirty either committed before this (and every statement below sees its
    // change) or waits until this fold commits (and the next fold rebuilds).
    let dirty: i64 = tx
        .query_one("SELECT departments_dirty FROM rollup_state WHERE id = 1 FOR UPDATE", &[])
        .await?
        .try_get(0)?;
    tx.batch_execute(&rollup::FOLD_TABLES_POSTGRES).await?;
    // Only rows committed before this statement are visible and deleted; a batch still in
    // flight is folded next time.
    let group = rollup::GROUP_PENDING.replace("{rows}", "moved");
    let folded: i64 = tx
        .query_one(
            &format!(
                "WITH moved AS (DELETE FROM usage_pending
                                RETURNING device_id, product, kind, os_user, first_seen,
                                          last_seen, count),
                      grouped AS ({group})
                 SELECT COUNT(*) FROM moved"
            ),
            &[],
        )
        .await?
        .try_get(0)?;
    let folded = u64::try_from(folded).unwrap_or(0);
    if folded > 0 {
        tx.batch_execute(rollup::FOLD_KEYS).await?;
        if folded >= ANALYZE_AFTER {
            tx.batch_execute(rollup::ANALYZE_FOLD_TABLES).await?;
        }
        tx.batch_execute(rollup::FOLD_TOTALS).await?;
    }
    if dirty != 0 {
        tx.batch_execute(&rollup::REBUILD_DEPARTMENTS).await?;
    }
    if folded > 0 || dirty != 0 {
        tx.batch_execute(crate::store::BUMP_USAGE).await?;
    }
    tx.commit().await?;
    if folded >= VACUUM_AFTER {
        // The deleted rows stay in the table until vacuumed, and every fold and read would
        // step over them; autovacuum gets there eventually, this gets there now.
        client.batch_execute("VACUUM usage_pending").await?;
    }
    Ok(folded)
}

/// Pending rows folded at once after which the fold analyzes its temporary tables.
const ANALYZE_AFTER: u64 = 10_000;

/// Pending rows folded at once after which the fold vacuums `usage_pending` (a fold for a read
/// does too: rarely that large, and leaving the dead rows would slow every later check).
const VACUUM_AFTER: u64 = 100_000;

/// Answers a usage filter from the rollups (see [`rollup::plan`]), after folding.
pub(super) async fn usage_from_rollups(
    client: &mut deadpool_postgres::Object,
    plan: &rollup::Plan,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    fold(client, false).await?;
    // One snapshot for the three reads, so another collector's fold cannot land between them.
    let tx = super::snapshot(client).await?;
    let usage = queries::rollup_usage(&tx, plan).await?;
    tx.commit().await?;
    Ok(usage)
}
