//! The SQLite writer thread: it commits sighting batches in groups (one transaction, a
//! savepoint a batch) and runs the folds between them; a checkpointer thread copies the
//! write-ahead log into the database behind it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{open, open_with};
use crate::model::{Batch, DeviceId, IngestOutcome};
use crate::store::sql::ready;
use crate::store::{StoreError, queries, rollup};

/// Work for the writer thread.
pub(super) enum Job {
    /// One batch, and where its outcome goes.
    Ingest {
        device: DeviceId,
        batch: Batch,
        now: i64,
        done: oneshot::Sender<Result<IngestOutcome, StoreError>>,
    },
    /// A fold of everything committed before it.
    Fold {
        done: oneshot::Sender<Result<u64, StoreError>>,
        /// The background fold, which yields to batches (see [`BACKLOG_MAX`]).
        background: bool,
    },
}

/// A batch in the group being committed.
struct IngestJob {
    device: DeviceId,
    batch: Batch,
    now: i64,
}

/// Most jobs the writer takes at once (its batches share one commit).
const GROUP_MAX: usize = 64;

/// Jobs that may wait for the writer before callers wait to enqueue.
pub(super) const QUEUE: usize = 1024;

/// Batches stored since the last fold after which a background fold runs even while batches
/// keep arriving (below it, the writer puts a background fold off until it is idle).
const BACKLOG_MAX: usize = 20_000;

/// The writer thread: takes every job that is waiting (up to [`GROUP_MAX`]), stores each
/// batch under its own savepoint, commits once, answers each caller, then runs the folds that
/// were asked for (they see every batch acknowledged before them). A batch is acknowledged
/// only after the commit that holds it, and a failing batch fails alone. SQLite has one
/// writer at a time anyway: one thread that groups commits, and folds between them, replaces
/// connections that would wait on the file lock and each pay for their own commit.
pub(super) fn write_batches(path: &Path, mut jobs: mpsc::Receiver<Job>) {
    let mut conn: Option<Connection> = None;
    let (checkpoints, checkpointing) = checkpointer(path).unzip();
    // Batches stored since the last fold.
    let mut backlog = 0_usize;
    while let Some(first) = jobs.blocking_recv() {
        let mut taken = vec![first];
        while taken.len() < GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => taken.push(job),
                Err(_) => break,
            }
        }
        let mut group = Vec::new();
        let mut answers = Vec::new();
        let mut folds = Vec::new();
        // Whether a caller needs every pending row folded (a read), not just some.
        let mut full = false;
        for job in taken {
            match job {
                Job::Ingest { device, batch, now, done } => {
                    group.push(IngestJob { device, batch, now });
                    answers.push(done);
                }
                Job::Fold { done, background } => {
                    if background && busy(&jobs, &group) && backlog < BACKLOG_MAX {
                        let _unused = done.send(Ok(0));
                    } else {
                        full |= !background;
                        folds.push(done);
                    }
                }
            }
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match open_writer(path) {
                Ok(c) => c,
                Err(e) => {
                    let e = Arc::new(e);
                    fail_all(answers, &e);
                    fail_all(folds, &e);
                    continue;
                }
            },
        };
        backlog = backlog.saturating_add(group.len());
        if !group.is_empty() {
            match commit_group(&mut c, &group) {
                Ok(outcomes) => {
                    for (done, outcome) in answers.into_iter().zip(outcomes) {
                        // A caller that went away (request cancelled) needs no answer.
                        let _unused = done.send(outcome);
                    }
                }
                Err(e) => fail_all(answers, &Arc::new(e)),
            }
        }
        ask_checkpoint(checkpoints.as_ref());
        if !folds.is_empty() {
            // One fold answers every caller that asked for one.
            backlog = 0;
            let outcome = fold(&mut c, !full, &jobs, checkpoints.as_ref()).map_err(Arc::new);
            for done in folds {
                let _unused = done.send(outcome.clone().map_err(StoreError::Shared));
            }
        }
        conn = Some(c);
    }
    // The last checkpoint finishes before the writer is gone.
    drop(checkpoints);
    if let Some(thread) = checkpointing {
        let _ended = thread.join();
    }
}

/// Asks the [`checkpointer`] for a checkpoint after a commit.
fn ask_checkpoint(checkpoints: Option<&std::sync::mpsc::SyncSender<()>>) {
    if let Some(c) = checkpoints {
        // Full: a checkpoint is already asked for.
        let _unused = c.try_send(());
    }
}

/// The writer's connection: as [`open`], with a page cache that holds a group's working set
/// (below it SQLite spills dirty pages mid-transaction), savepoint journals and the fold's
/// temporary tables in memory, and checkpoints left to [`checkpointer`].
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = open(path)?;
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // A safety net only: the checkpointer normally keeps the log far below this.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    // The log file shrinks back to this after a checkpoint lets it start over.
    conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
    Ok(conn)
}

/// The writer's page cache, in KiB (negative: SQLite's unit for a size in KiB).
const WRITER_CACHE_KIB: i64 = -65_536;

/// WAL pages after which the writer checkpoints by itself (about 160 MB).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 40_000;

/// Bytes of write-ahead log kept on disk once it has been checkpointed.
const WAL_KEEP_BYTES: i64 = 64 << 20;

/// Least time between two background checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A thread that copies the write-ahead log into the database after commits (a `PASSIVE`
/// checkpoint, which never blocks the writer), so the writer does not pay for the copy and
/// its fsyncs. Returns where to signal a commit; the thread ends when that is dropped. `None`
/// when the thread cannot start (the writer's own auto-checkpoint then does the work).
fn checkpointer(
    path: &Path,
) -> Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let path = path.to_owned();
    let started = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        let mut conn = None;
        while rx.recv().is_ok() {
            if conn.is_none() {
                // Never creates the file: a database removed under the store stays removed.
                let flags =
                    rusqlite::OpenFlags::default() - rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
                conn = open_with(&path, flags).ok();
            }
            if let Some(c) = &conn {
                let result: rusqlite::Result<(i64, i64, i64)> =
                    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
                if let Err(e) = result {
                    tracing::debug!(error = %e, "Background checkpoint failed.");
                    conn = None;
                }
            }
            std::thread::sleep(CHECKPOINT_EVERY);
        }
    });
    started.ok().map(|thread| (tx, thread))
}

/// Answers every caller with the error that failed their whole group.
fn fail_all<T>(callers: Vec<oneshot::Sender<Result<T, StoreError>>>, e: &Arc<StoreError>) {
    for done in callers {
        // A caller that went away (request cancelled) needs no answer.
        let _unused = done.send(Err(StoreError::Shared(Arc::clone(e))));
    }
}

/// Whether batches are arriving: some came with this fold or wait behind it.
fn busy(jobs: &mpsc::Receiver<Job>, group: &[IngestJob]) -> bool {
    !group.is_empty() || !jobs.is_empty()
}

/// Stores a group of batches in one transaction, each under a savepoint.
fn commit_group(
    c: &mut Connection,
    group: &[IngestJob],
) -> Result<Vec<Result<IngestOutcome, StoreError>>, StoreError> {
    let mut tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    for job in group {
        let sp = tx.savepoint()?;
        match store_batch(&sp, job) {
            Ok(outcome) => {
                sp.commit()?;
                outcomes.push(Ok(outcome));
            }
            Err(e) => {
                drop(sp);
                if tx.is_autocommit() {
                    // SQLite rolled the whole transaction back (disk full, I/O error): the
                    // group fails as one, and every caller retries.
                    return Err(e);
                }
                // Dropping the savepoint rolled this batch back; the others stay.
                outcomes.push(Err(e));
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Stores one batch inside the writer's open transaction.
fn store_batch(tx: &Connection, job: &IngestJob) -> Result<IngestOutcome, StoreError> {
    let b = &job.batch;
    if !ready(queries::insert_batch(tx, job.device, &b.batch_id, job.now, b.received))? {
        return Ok(IngestOutcome::Duplicate);
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO sightings (device_id, product, kind, value, os_user, process,
                                    window_start, first_seen, last_seen, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (device_id, product, kind, value, os_user, process, window_start)
             DO UPDATE SET first_seen = MIN(first_seen, excluded.first_seen),
                           last_seen = MAX(last_seen, excluded.last_seen),
                           count = count + excluded.count",
        )?;
        for s in &job.batch.sightings {
            stmt.execute(params![
                job.device.0,
                s.product,
                s.kind,
                s.value,
                s.user,
                s.process,
                s.window,
                s.first_seen,
                s.last_seen,
                s.count
            ])?;
        }
        let mut stmt = tx.prepare_cached(
            "INSERT INTO usage_pending (device_id, product, kind, os_user, first_seen,
                                        last_seen, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for p in job.batch.pending() {
            stmt.execute(params![
                job.device.0,
                p.product,
                p.kind,
                p.user,
                p.first_seen,
                p.last_seen,
                p.count
            ])?;
        }
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO installed (device_id, product, kind, value, os_user, present, changed_at,
             flags)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (device_id, product, kind, value, os_user) DO UPDATE
         SET present = excluded.present, changed_at = excluded.changed_at,
             flags = excluded.flags
         WHERE excluded.changed_at > installed.changed_at
            OR (excluded.changed_at = installed.changed_at AND NOT excluded.present)",
    )?;
    for i in &job.batch.installs {
        stmt.execute(params![
            job.device.0,
            i.product,
            i.kind,
            i.value,
            i.user,
            i.present,
            i.at,
            i.flags
        ])?;
    }
    ready(queries::batch_contact(tx, job.device, job.now, b.dropped, b.evicted))?;
    ready(queries::batch_events(tx, job.device, &job.batch, job.now))?;
    Ok(IngestOutcome::Stored)
}

/// Pending rows one fold transaction takes at most: bounds how long the writer pauses between
/// commits, and the fold's temporary tables.
const FOLD_CHUNK: i64 = 50_000;

/// Folds pending usage into the rollups (see [`rollup`]), one transaction per
/// [`FOLD_CHUNK`] pending rows: every pending row, or for a `background` fold, chunks until
/// batches are waiting (at least one chunk; the next background fold goes on from there).
fn fold(
    c: &mut Connection,
    background: bool,
    jobs: &mpsc::Receiver<Job>,
    checkpoints: Option<&std::sync::mpsc::SyncSender<()>>,
) -> Result<u64, StoreError> {
    let mut total = 0_u64;
    loop {
        let (folded, more) = fold_chunk(c)?;
        total = total.saturating_add(folded);
        ask_checkpoint(checkpoints);
        if !more || (background && !jobs.is_empty()) {
            return Ok(total);
        }
    }
}

/// Folds up to [`FOLD_CHUNK`] pending rows in one write transaction; says how many, and
/// whether more are pending.
fn fold_chunk(c: &mut Connection) -> Result<(u64, bool), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (min, max): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT MIN(seq), MAX(seq) FROM usage_pending", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let dirty: i64 =
        tx.query_row("SELECT departments_dirty FROM rollup_state WHERE id = 1", [], |r| r.get(0))?;
    let (mut folded, mut more) = (0, false);
    if let (Some(min), Some(max)) = (min, max) {
        let upto = max.min(min.saturating_add(FOLD_CHUNK - 1));
        more = upto < max;
        tx.execute_batch(&rollup::FOLD_TABLES_SQLITE)?;
        tx.execute(
            &rollup::GROUP_PENDING
                .replace("{rows}", "(SELECT * FROM usage_pending WHERE seq <= ?1)"),
            [upto],
        )?;
        folded = tx.execute("DELETE FROM usage_pending WHERE seq <= ?1", [upto])?;
        tx.execute_batch(&rollup::FOLD_SQLITE)?;
        tx.execute_batch(crate::store::BUMP_USAGE)?;
        tx.execute_batch(rollup::CLEAR_FOLD_TABLES)?;
    }
    // A rebuild after the last chunk sees every folded row (and one before it would be
    // rebuilt again anyway by then: the flag stays set until a rebuild runs).
    if dirty != 0 && !more {
        tx.execute_batch(&rollup::REBUILD_DEPARTMENTS)?;
        tx.execute_batch(crate::store::BUMP_USAGE)?;
    }
    if max.is_some() || dirty != 0 {
        tx.commit()?;
    }
    Ok((u64::try_from(folded).unwrap_or(u64::MAX), more))
}
