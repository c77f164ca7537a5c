//! The SQLite store: rusqlite (bundled SQLite) on tokio's blocking pool.
//!
//! Every connection is opened by [`open`], which sets WAL (readers never block the writer),
//! a busy timeout (several processes, such as `serve` and `token create`, share the file) and
//! foreign keys. Connections live in a small bounded pool; each operation borrows one on a
//! blocking thread. Writes start with `BEGIN IMMEDIATE`, so a writer takes the lock up front
//! and waits under the busy timeout instead of failing on a read-to-write upgrade.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::sql::ready;
use super::{
    AuditFn, CredentialHash, Migration, PeopleUsage, Store, StoreError, outbox, queries, rollup,
};
use crate::alerts::event;
use crate::model::{
    Admit, AdmitRule, Attempt, AuditEntry, AuditFilter, AuditRecord, Batch, ChannelRow, Claimed,
    DeliveryRow, DescriptorMapping, Device, DeviceId, DevicePage, DeviceQuery, DeviceSighting,
    DeviceSummary, DeviceUsage, DigestClaim, EnrollAttempt, EnrollOutcome, ExpenseLine,
    GatewaySpend, GatewayTotal, Health, ImportCounts, ImportRun, IngestOutcome, McpServerFlags,
    NewEvent, OwnerUse, Person, PersonUsage, ProcessSighting, ProductUsage, ReenrollRequest,
    Review, ScimResource, ScimWrite, Session, SourceUsage, StoredEvent, Token, UsageFilter,
    ValueUsage,
};

/// The SQLite migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("migrations/sqlite/0001_init.sql") },
    Migration { version: 2, sql: include_str!("migrations/sqlite/0002_spend.sql") },
    Migration { version: 3, sql: include_str!("migrations/sqlite/0003_rollups.sql") },
    Migration { version: 4, sql: include_str!("migrations/sqlite/0004_filters.sql") },
    Migration { version: 5, sql: include_str!("migrations/sqlite/0005_console.sql") },
    Migration { version: 6, sql: include_str!("migrations/sqlite/0006_policy_role.sql") },
    Migration { version: 7, sql: include_str!("migrations/sqlite/0007_data_versions.sql") },
    Migration { version: 8, sql: include_str!("migrations/sqlite/0008_alerts.sql") },
    Migration { version: 9, sql: include_str!("migrations/sqlite/0009_connectors.sql") },
    Migration { version: 10, sql: include_str!("migrations/sqlite/0010_reenroll.sql") },
    Migration { version: 11, sql: include_str!("migrations/sqlite/0011_digests.sql") },
    Migration { version: 12, sql: include_str!("migrations/sqlite/0012_privacy.sql") },
    Migration { version: 13, sql: include_str!("migrations/sqlite/0013_scim.sql") },
    Migration { version: 14, sql: include_str!("migrations/sqlite/0014_alert_caps.sql") },
    Migration { version: 15, sql: include_str!("migrations/sqlite/0015_connector_errors.sql") },
    Migration { version: 16, sql: include_str!("migrations/sqlite/0016_pseudonyms.sql") },
    Migration { version: 17, sql: include_str!("migrations/sqlite/0017_candidate_reasons.sql") },
    Migration { version: 18, sql: include_str!("migrations/sqlite/0018_overlay.sql") },
    Migration { version: 19, sql: include_str!("migrations/sqlite/0019_mcp_flags.sql") },
    Migration { version: 20, sql: include_str!("migrations/sqlite/0020_descriptor_mappings.sql") },
    Migration { version: 21, sql: include_str!("migrations/sqlite/0021_privacy_mode.sql") },
];

/// How long a connection waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two tries for a lock another connection holds.
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// SQLite's busy handler: sleeps [`BUSY_RETRY`] and tries again, for up to [`BUSY_TIMEOUT`].
fn retry_busy(tries: i32) -> bool {
    let waited = BUSY_RETRY.saturating_mul(u32::try_from(tries).unwrap_or(u32::MAX));
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}
/// Connections in the pool (one writer at a time; the rest serve reads).
const POOL_SIZE: usize = 4;

/// Opens a connection with WAL, the busy timeout and foreign keys on.
///
/// # Errors
/// The file cannot be opened or the pragmas fail.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    open_with(path, rusqlite::OpenFlags::default())
}

/// [`open`] with SQLite's open flags.
#[allow(clippy::disallowed_methods)] // This is the one place that opens SQLite.
fn open_with(path: &Path, flags: rusqlite::OpenFlags) -> Result<Connection, StoreError> {
    let mut conn = Connection::open_with_flags(path, flags)?;
    // Instead of SQLite's busy timeout, whose sleeps grow to 100 ms, retry every millisecond:
    // a writer waiting for the lock takes it as soon as it is free.
    conn.busy_handler(Some(retry_busy))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Erased values are overwritten, not left in free pages (issue 21).
    conn.pragma_update(None, "secure_delete", true)?;
    Ok(conn)
}

/// What [`backup`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Size of the copy, in bytes.
    pub bytes: u64,
    /// The highest migration applied in the copy.
    pub schema_version: u32,
}

/// Tries of a backup whose source is locked at that moment (SQLite answers busy at once,
/// without the busy handler, for the source side); with [`BACKUP_RETRY`] about 30 s.
const BACKUP_TRIES: u32 = 600;
/// The pause between two tries of a backup step.
const BACKUP_RETRY: Duration = Duration::from_millis(50);

/// Copies the database at `source` into a new file `dest` with SQLite's online backup API
/// while collectors go on writing to it: the copy is the database as one read transaction
/// saw it (WAL: readers never block the writer, so ingest goes on meanwhile).
///
/// The pages are copied in one step so the copy never restarts because a writer changed the
/// source (which a page-by-page copy does on every commit). The copy is written to a
/// hidden file beside `dest`, switched to a rollback journal (one self-contained file),
/// checked (`PRAGMA quick_check`), made 0600 and only then renamed to `dest`: a file at
/// `dest` is always a whole backup.
///
/// # Errors
/// `source` is missing or cannot be read, `dest` exists, or the copy fails its check.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, StoreError> {
    use rusqlite::backup::{Backup, StepResult};
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Io { path, source }
    };
    if !source.is_file() {
        return Err(io(source)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no collector database here",
        )));
    }
    if dest.exists() {
        return Err(io(dest)(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists; a backup never overwrites a file",
        )));
    }
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = dest.with_file_name(format!(".{name}.partial"));
    // Left by a backup that was killed: it was never renamed, so it is nobody's backup.
    for file in super::files::sqlite_files(&partial) {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&file)(e)),
            _ => {}
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(super::files::FILE_MODE)
        .open(&partial)
        .map_err(io(&partial))?;
    let copied = (|| {
        let from = open_with(
            source,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut to = open(&partial)?;
        {
            let copy = Backup::new(&from, &mut to)?;
            let mut tries = 0;
            loop {
                match copy.step(-1)? {
                    StepResult::Done => break,
                    // -1 copies every page in one step, so More means it did not finish.
                    _ if tries < BACKUP_TRIES => {
                        tries += 1;
                        std::thread::sleep(BACKUP_RETRY);
                    }
                    _ => {
                        return Err(StoreError::BackupLocked { tries: BACKUP_TRIES });
                    }
                }
            }
        }
        to.pragma_update(None, "journal_mode", "DELETE")?;
        let check: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt { table: "(backup copy)", reason: check });
        }
        let schema_version: u32 =
            to.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
                r.get(0)
            })?;
        Ok(schema_version)
    })();
    let schema_version = match copied {
        Ok(v) => v,
        Err(e) => {
            for file in super::files::sqlite_files(&partial) {
                // Best effort: the copy failed, and that error is the one to report.
                let _removed = std::fs::remove_file(file);
            }
            return Err(e);
        }
    };
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(BackupReport { bytes, schema_version })
}

/// A SQLite database file with a small connection pool, and one writer thread that commits
/// sighting batches in groups and runs the folds.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
    writer: mpsc::Sender<Job>,
    identities: super::IdentitySlot,
}

/// Work for the writer thread.
enum Job {
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
const QUEUE: usize = 1024;
/// Batches stored since the last fold after which a background fold runs even while batches
/// keep arriving (below it, the writer puts a background fold off until it is idle).
const BACKLOG_MAX: usize = 20_000;

/// The writer thread: takes every job that is waiting (up to [`GROUP_MAX`]), stores each
/// batch under its own savepoint, commits once, answers each caller, then runs the folds that
/// were asked for (they see every batch acknowledged before them). A batch is acknowledged
/// only after the commit that holds it, and a failing batch fails alone. SQLite has one
/// writer at a time anyway: one thread that groups commits, and folds between them, replaces
/// connections that would wait on the file lock and each pay for their own commit.
fn write_batches(path: &Path, mut jobs: mpsc::Receiver<Job>) {
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

struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    ///
    /// # Errors
    /// The file cannot be opened, or a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        // Created 0600 before SQLite opens it, so the log and shared-memory files SQLite
        // creates beside it get the same mode.
        super::files::private_sqlite(path)
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        let (writer, jobs) = mpsc::channel(QUEUE);
        let store = Self {
            pool: Arc::new(Pool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(POOL_SIZE),
            }),
            writer,
            identities: super::IdentitySlot::default(),
        };
        store.with(migrate).await?;
        // The thread ends when the last clone of the store (the last sender) is dropped.
        let writer_path = path.to_owned();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_batches(&writer_path, jobs))
            .map_err(StoreError::WriterStart)?;
        // The log and shared-memory files exist now (WAL mode); a copy made more open by hand
        // since the last start is tightened too.
        super::files::private_sqlite(path)
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(store)
    }

    /// Asks the writer thread for a fold and waits for its answer.
    async fn ask_fold(&self, background: bool) -> Result<u64, StoreError> {
        let (done, folded) = oneshot::channel();
        self.writer
            .send(Job::Fold { done, background })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        folded.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    /// Applies the identity key to what a write carries ([`crate::identity::Protect`]) and
    /// keeps the sealed identities of the pseudonyms it made, before the write itself.
    async fn protect<T: Send + 'static>(
        &self,
        value: T,
        f: fn(&mut crate::identity::Protect<'_>, &mut T),
    ) -> Result<T, StoreError> {
        self.protect_on(None, value, f).await
    }

    /// [`SqliteStore::protect`] of a batch from `device`, whose stored owner decides how
    /// erased OS user names come back ([`crate::identity::Protect::batch`]).
    async fn protect_on<T: Send + 'static>(
        &self,
        device: Option<DeviceId>,
        mut value: T,
        f: fn(&mut crate::identity::Protect<'_>, &mut T),
    ) -> Result<T, StoreError> {
        let Some(ids) = self.identities.get().cloned() else { return Ok(value) };
        self.with(move |c| {
            let tx = c.transaction()?;
            let erased = {
                let mut stmt = tx.prepare_cached(super::ERASED_SQL)?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            let mut p = crate::identity::Protect::new(&ids, erased);
            if let Some(device) = device {
                let owner: Option<String> = tx
                    .query_row(super::DEVICE_OWNER_SQL, [device.0], |r| r.get(0))
                    .optional()?
                    .flatten();
                p.owner(owner);
            }
            f(&mut p, &mut value);
            if !p.sealed.is_empty() {
                let mut stmt = tx.prepare_cached(super::SEAL_SQL)?;
                for (pseudonym, sealed) in &p.sealed {
                    stmt.execute(params![pseudonym, sealed])?;
                }
            }
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Runs `f` on a pooled connection, outside any transaction it does not open itself.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(move |c| f(c)).await
    }

    /// Runs `f` in a writing transaction (`BEGIN IMMEDIATE`), committed when `f` succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self.pool.permits.acquire().await.map_err(StoreError::PoolClosed)?;
        let pool = Arc::clone(&self.pool);
        tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => open(&pool.path)?,
            };
            let result = f(&mut conn);
            pool.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
            result
        })
        .await
        .map_err(StoreError::Join)?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: u32 =
        tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        return Err(StoreError::SchemaTooNew { found: current, known });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql)
            .map_err(|e| StoreError::Migration { version: m.version, reason: e.to_string() })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![m.version, super::now()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// [`Store::person_usage`] in one read transaction: products from the rollups (the caller
/// folds first), expense lines and gateway spend read row by row and summed by
/// [`PeopleUsage`] (SQLite's `GROUP BY` would sort every row first; see [`gateway_totals`]).
/// `email` is lowercased already.
fn person_usage(c: &mut Connection, email: Option<&str>) -> Result<Vec<PersonUsage>, StoreError> {
    let tx = c.transaction()?;
    let mut people = PeopleUsage::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT lower(d.owner_email), s.product, MAX(s.last_seen)
             FROM usage_device s JOIN devices d ON d.id = s.device_id
             WHERE d.owner_email IS NOT NULL AND d.owner_email <> ''
               AND (?1 IS NULL OR lower(d.owner_email) = ?1)
             GROUP BY lower(d.owner_email), s.product",
        )?;
        let mut rows = stmt.query([email])?;
        while let Some(r) = rows.next()? {
            people.product(borrowed_text(r, 0)?, borrowed_text(r, 1)?, r.get(2)?);
        }
        let mut stmt = tx.prepare_cached(
            "SELECT payer_email, currency, amount_minor, occurred_at FROM expense_lines
             WHERE product IS NOT NULL AND payer_email <> ''
               AND (?1 IS NULL OR lower(payer_email) = ?1)",
        )?;
        let mut rows = stmt.query([email])?;
        while let Some(r) = rows.next()? {
            people.expense(borrowed_text(r, 0)?, borrowed_text(r, 1)?, r.get(2)?, r.get(3)?);
        }
        let mut stmt = tx.prepare_cached(
            "SELECT end_user, currency, cost_nanos, period_start FROM gateway_spend
             WHERE (instr(end_user, '@') > 0 OR end_user LIKE 'person-%')
               AND (?1 IS NULL OR lower(end_user) = ?1)",
        )?;
        let mut rows = stmt.query([email])?;
        while let Some(r) = rows.next()? {
            people.gateway(borrowed_text(r, 0)?, borrowed_text(r, 1)?, r.get(2)?, r.get(3)?);
        }
    }
    tx.commit()?;
    Ok(people.finish())
}

/// A text column borrowed from its row (no copy); NULL reads as `""`.
fn borrowed_text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    let value = r.get_ref(i)?;
    let text = value.as_str_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e))
    })?;
    Ok(text.unwrap_or_default())
}

fn append_audit(tx: &Connection, a: &AuditRecord) -> Result<(), StoreError> {
    ready(queries::append_audit(tx, a))
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
        tx.execute_batch(super::BUMP_USAGE)?;
        tx.execute_batch(rollup::CLEAR_FOLD_TABLES)?;
    }
    // A rebuild after the last chunk sees every folded row (and one before it would be
    // rebuilt again anyway by then: the flag stays set until a rebuild runs).
    if dirty != 0 && !more {
        tx.execute_batch(&rollup::REBUILD_DEPARTMENTS)?;
        tx.execute_batch(super::BUMP_USAGE)?;
    }
    if max.is_some() || dirty != 0 {
        tx.commit()?;
    }
    Ok((u64::try_from(folded).unwrap_or(u64::MAX), more))
}

/// [`Store::gateway_totals`], summed here rather than by `GROUP BY`: SQLite has no hash
/// aggregate, and sorting a million rows of spend (about one group per row when each user's
/// day is a group) took longer than the 2 s a report may take (collector/BENCH-IMPORT.md).
/// One scan reads the rows; the directory is read first, in the same snapshot, and looked up
/// by the end user's email lowercased (ASCII only, as SQLite's `lower`). Sums saturate.
fn gateway_totals(c: &mut Connection, since: Option<i64>) -> Result<Vec<GatewayTotal>, StoreError> {
    /// Distinct strings as small numbers, so that a row's key is `Copy` and hashing it
    /// allocates nothing; only a string not seen before is copied.
    #[derive(Default)]
    struct Names {
        ids: HashMap<String, u32>,
        names: Vec<String>,
    }
    impl Names {
        fn id(&mut self, name: &str) -> u32 {
            if let Some(&id) = self.ids.get(name) {
                return id;
            }
            let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            self.names.push(name.to_owned());
            self.ids.insert(name.to_owned(), id);
            id
        }
        fn name(&self, id: u32) -> String {
            usize::try_from(id).ok().and_then(|i| self.names.get(i)).cloned().unwrap_or_default()
        }
    }
    fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>, StoreError> {
        let value = r.get_ref(i)?;
        let text = value.as_str_or_null().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e))
        })?;
        Ok(text)
    }
    let required = |r: &rusqlite::Row<'_>, i: usize| -> Result<String, StoreError> {
        Ok(text(r, i)?.unwrap_or_default().to_owned())
    };
    let tx = c.transaction()?;
    let mut departments: HashMap<String, String> = HashMap::new();
    {
        let mut stmt = tx.prepare("SELECT email, department FROM people WHERE department <> ''")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            departments.insert(required(r, 0)?, required(r, 1)?);
        }
    }
    /// Product (0 = none, else 1 + its name's id), provider, department, currency, day.
    type Key = (u32, u32, u32, u32, i64);
    /// Cost, tokens, rows.
    type Sums = (i64, i64, i64);
    let mut names = Names::default();
    let mut totals: HashMap<Key, Sums> = HashMap::new();
    let mut lower = String::new();
    {
        let mut stmt = tx.prepare(
            "SELECT product, provider, end_user, team, currency,
                    period_start - (period_start % 86400), cost_nanos,
                    input_tokens + output_tokens
             FROM gateway_spend WHERE (?1 IS NULL OR period_start >= ?1)",
        )?;
        let mut rows = stmt.query([since])?;
        while let Some(r) = rows.next()? {
            let product = match text(r, 0)? {
                Some(p) => names.id(p).saturating_add(1),
                None => 0,
            };
            let provider = names.id(text(r, 1)?.unwrap_or_default());
            let user = text(r, 2)?.unwrap_or_default();
            let user = if user.bytes().any(|b| b.is_ascii_uppercase()) {
                lower.clear();
                lower.push_str(user);
                lower.make_ascii_lowercase();
                lower.as_str()
            } else {
                user
            };
            let department = match departments.get(user) {
                Some(d) => names.id(d),
                None => names.id(text(r, 3)?.unwrap_or_default()),
            };
            let currency = names.id(text(r, 4)?.unwrap_or_default());
            let day: i64 = r.get(5)?;
            let (cost, tokens): (i64, i64) = (r.get(6)?, r.get(7)?);
            let sums = totals.entry((product, provider, department, currency, day)).or_default();
            sums.0 = sums.0.saturating_add(cost);
            sums.1 = sums.1.saturating_add(tokens);
            sums.2 += 1;
        }
    }
    tx.commit()?;
    let mut out: Vec<GatewayTotal> = totals
        .into_iter()
        .map(|((product, provider, department, currency, day), (cost, tokens, rows))| {
            GatewayTotal {
                product: product.checked_sub(1).map(|p| names.name(p)),
                provider: names.name(provider),
                department: names.name(department),
                currency: names.name(currency),
                day: day.into(),
                cost_nanos: cost,
                tokens,
                rows,
            }
        })
        .collect();
    // The order of the SQL it replaces: day, product (none first), provider, department,
    // currency, each string by its bytes (SQLite's BINARY collation).
    out.sort_unstable_by(|a, b| {
        (a.day, &a.product, &a.provider, &a.department, &a.currency).cmp(&(
            b.day,
            &b.product,
            &b.provider,
            &b.department,
            &b.currency,
        ))
    });
    Ok(out)
}

/// Answers a usage filter from the rollups (see [`rollup::plan`]) in one read transaction;
/// the caller folds first.
fn usage_from_rollups(
    c: &mut Connection,
    plan: &rollup::Plan,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    let tx = c.transaction()?;
    let usage = ready(queries::rollup_usage(&*tx, plan))?;
    tx.commit()?;
    Ok(usage)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(drop)?)).await
    }

    async fn privacy_mode(
        &self,
        opened_with: crate::identity::PrivacyMode,
        now: i64,
    ) -> Result<crate::identity::PrivacyMode, StoreError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mode = ready(queries::privacy_mode(&*tx, opened_with, now))?;
            tx.commit()?;
            Ok(mode)
        })
        .await
    }

    fn protect_identities(&self, ids: Arc<crate::identity::Identities>) {
        self.identities.set(ids).ok();
    }

    fn identities(&self) -> Option<Arc<crate::identity::Identities>> {
        self.identities.get().cloned()
    }

    async fn reveal_sealed(
        &self,
        pseudonym: String,
        audit: AuditRecord,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.write(move |tx| ready(queries::lifecycle::reveal_sealed(tx, &pseudonym, &audit))).await
    }

    async fn enroll(
        &self,
        device: Device,
        key_hash: CredentialHash,
        now: i64,
    ) -> Result<DeviceId, StoreError> {
        let device = self.protect(device, |p, d| p.device(d)).await?;
        self.write(move |tx| ready(queries::lifecycle::enroll(tx, &device, &key_hash, now))).await
    }

    async fn enroll_checked(&self, a: EnrollAttempt) -> Result<EnrollOutcome, StoreError> {
        let a = self.protect(a, |p, a| p.device(&mut a.device)).await?;
        // IMMEDIATE takes the write lock first: one enrollment decides at a time.
        self.write(move |tx| ready(queries::lifecycle::enroll_checked(tx, &a))).await
    }

    async fn approve_reenroll(
        &self,
        host_id: String,
        actor: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| ready(queries::lifecycle::approve_reenroll(tx, &host_id, &actor, now)))
            .await
    }

    async fn erase_person(
        &self,
        email: String,
        actor: String,
        reason: String,
        now: i64,
    ) -> Result<super::erase::Erasure, StoreError> {
        let erase = queries::lifecycle::Erase::new(
            self.identities.get().cloned(),
            email,
            actor,
            reason,
            now,
        );
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let erasure = ready(queries::lifecycle::erase_person(&*tx, &erase))?;
            tx.commit()?;
            if erasure.tombstone.is_some() {
                // secure_delete zeroes the old values in the database's pages; the write-ahead
                // log still holds the pages as they were until a checkpoint empties it. Best
                // effort: a reader holding the log open makes it wait for the next erasure.
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).ok();
            }
            Ok(erasure)
        })
        .await
    }

    async fn apply_retention(
        &self,
        cutoffs: super::retention::Cutoffs,
        dry_run: bool,
    ) -> Result<super::retention::Outcome, StoreError> {
        use super::retention::{self, CHUNK, Kind, MAX_CHUNKS, Outcome};
        let mut outcome = Outcome { rows: Vec::new(), dry_run };
        for kind in Kind::ALL {
            let Some(cutoff) = cutoffs.of(kind) else { continue };
            let n = if dry_run {
                self.read(move |c| ready(queries::lifecycle::retention_count(c, kind, cutoff)))
                    .await?
            } else {
                let mut total = 0u64;
                for _ in 0..MAX_CHUNKS {
                    let n = self
                        .write(move |tx| {
                            ready(queries::lifecycle::retention_chunk(tx, kind, cutoff))
                        })
                        .await?;
                    total += n;
                    if n < CHUNK.unsigned_abs() {
                        break;
                    }
                }
                total
            };
            outcome.rows.push((kind, cutoff, n));
        }
        if !dry_run && outcome.total() > 0 {
            let record = retention::audit(&outcome, super::now());
            self.write(move |tx| append_audit(tx, &record)).await?;
        }
        Ok(outcome)
    }

    async fn reenroll_requests(&self) -> Result<Vec<ReenrollRequest>, StoreError> {
        self.read(|c| ready(queries::lifecycle::reenroll_requests(c))).await
    }

    async fn device_by_key(
        &self,
        key_hash: CredentialHash,
    ) -> Result<Option<DeviceId>, StoreError> {
        self.read(move |c| ready(queries::device_by_key(c, &key_hash[..]))).await
    }

    async fn ingest(
        &self,
        device: DeviceId,
        batch: Batch,
        now: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let batch = self.protect_on(Some(device), batch, |p, b| p.batch(b)).await?;
        let (done, outcome) = oneshot::channel();
        self.writer
            .send(Job::Ingest { device, batch, now, done })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        outcome.await.map_err(|_| StoreError::WriterStopped)?
    }

    async fn fold(&self) -> Result<u64, StoreError> {
        self.ask_fold(false).await
    }

    async fn fold_when_idle(&self) -> Result<u64, StoreError> {
        self.ask_fold(true).await
    }

    async fn heartbeat(&self, device: DeviceId, h: Health) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            ready(queries::heartbeat(&*tx, device, &h))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>, StoreError> {
        self.read(move |c| ready(queries::devices(c))).await
    }

    async fn usage(
        &self,
        filter: UsageFilter,
    ) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
        if let Some(plan) = rollup::plan(&filter) {
            self.fold().await?;
            return self.with(move |c| usage_from_rollups(c, &plan)).await;
        }
        self.read(move |c| ready(queries::usage(c, &filter))).await
    }

    async fn product_people(&self, product: String) -> Result<Vec<String>, StoreError> {
        self.read(move |c| ready(queries::product_people(c, &product))).await
    }

    async fn product_devices(&self, product: String) -> Result<Vec<DeviceUsage>, StoreError> {
        self.fold().await?;
        self.read(move |c| ready(queries::product_devices(c, &product))).await
    }

    async fn devices_page(&self, q: DeviceQuery) -> Result<DevicePage, StoreError> {
        // The counts and the page are independent scans: two readers at once (WAL).
        let counted = q.clone();
        let counts = self.read(move |c| ready(queries::device_counts(c, &counted)));
        let page = self.read(move |c| ready(queries::device_page(c, &q)));
        let ((total, stale, matched), devices) = tokio::try_join!(counts, page)?;
        Ok(DevicePage { total, stale, matched, devices })
    }

    async fn versions(&self) -> Result<super::Versions, StoreError> {
        self.fold().await?;
        self.read(|c| ready(queries::versions(c))).await
    }

    async fn product_values(
        &self,
        product: String,
        limit: i64,
    ) -> Result<Vec<ValueUsage>, StoreError> {
        self.read(move |c| ready(queries::product_values(c, &product, limit))).await
    }

    async fn mcp_flags(&self) -> Result<Vec<McpServerFlags>, StoreError> {
        self.read(|c| ready(queries::mcp_flags(c))).await
    }

    async fn reviews(&self) -> Result<Vec<Review>, StoreError> {
        self.read(|c| ready(queries::reviews(c))).await
    }

    async fn review(&self, product: String) -> Result<Option<Review>, StoreError> {
        self.read(move |c| ready(queries::review(c, &product))).await
    }

    async fn set_review(
        &self,
        review: Review,
        audit: AuditFn<Review>,
    ) -> Result<Option<Review>, StoreError> {
        self.write(move |tx| ready(queries::set_review(tx, &review, audit))).await
    }

    async fn create_token(
        &self,
        token: Token,
        hash: CredentialHash,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(move |tx| ready(queries::create_token(tx, token, &hash, &audit))).await
    }

    async fn revoke_token(
        &self,
        name: String,
        now: i64,
        audit: AuditFn<Token>,
    ) -> Result<Option<Token>, StoreError> {
        self.write(move |tx| ready(queries::revoke_token(tx, &name, now, audit))).await
    }

    async fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        self.read(|c| ready(queries::tokens(c))).await
    }

    async fn token_by_hash(&self, hash: CredentialHash) -> Result<Option<Token>, StoreError> {
        self.read(move |c| ready(queries::token_by_hash(c, &hash))).await
    }

    async fn add_expenses(
        &self,
        lines: Vec<ExpenseLine>,
        now: i64,
    ) -> Result<ImportCounts, StoreError> {
        let lines = self.protect(lines, |p, l| p.expenses(l)).await?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counts = ImportCounts::default();
            let mut inserted = Vec::new();
            let mappings = ready(queries::mapping_keys(&*tx))?;
            let mut lines = lines;
            let mapped = super::resolve_mapped(&mut lines, &mappings);
            counts.mapped = u64::try_from(mapped.iter().flatten().count()).unwrap_or(u64::MAX);
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO expense_lines (source, dedupe_key, file, line, occurred_at,
                        amount_minor, currency, descriptor, merchant, payer_email, payer_name,
                        department, product, candidate, imported_at, candidate_reason,
                        mapping_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                        ?17)
                     ON CONFLICT (source, dedupe_key) DO NOTHING",
                )?;
                for (l, mapping) in lines.iter().zip(&mapped) {
                    let n = stmt.execute(params![
                        l.source,
                        l.dedupe_key,
                        l.file,
                        l.line,
                        l.occurred_at,
                        l.amount_minor,
                        l.currency,
                        l.descriptor,
                        l.merchant,
                        l.payer_email,
                        l.payer_name,
                        l.department,
                        l.product,
                        l.candidate,
                        now,
                        l.candidate_reason,
                        mapping
                    ])?;
                    if n == 0 {
                        counts.duplicates += 1;
                    } else {
                        counts.inserted += 1;
                        inserted.push(l);
                    }
                }
            }
            if counts.inserted > 0 {
                tx.execute_batch(super::BUMP_SPEND)?;
                let names = event::products_of(inserted.iter().map(|l| l.product.as_deref()));
                let new = ready(queries::known(&*tx, &names, now, "expense"))?;
                let blocked = ready(queries::blocked(&*tx))?;
                outbox::sqlite_emit(&tx, &event::for_expenses(&inserted, &new, &blocked), now)?;
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    async fn expenses(&self, since: Option<i64>) -> Result<Vec<ExpenseLine>, StoreError> {
        self.read(move |c| ready(queries::expenses(c, since))).await
    }

    async fn mappings(&self) -> Result<Vec<DescriptorMapping>, StoreError> {
        self.read(move |c| ready(queries::mappings(c))).await
    }

    async fn add_mapping(
        &self,
        mapping: DescriptorMapping,
        audit: AuditRecord,
    ) -> Result<(DescriptorMapping, u64), StoreError> {
        self.write(move |tx| ready(queries::lifecycle::add_mapping(tx, mapping, &audit))).await
    }

    async fn remove_mapping(
        &self,
        id: i64,
        audit: AuditFn<DescriptorMapping>,
    ) -> Result<Option<(DescriptorMapping, u64)>, StoreError> {
        self.write(move |tx| ready(queries::lifecycle::remove_mapping(tx, id, audit))).await
    }

    async fn add_gateway_spend(
        &self,
        rows: Vec<GatewaySpend>,
        now: i64,
    ) -> Result<ImportCounts, StoreError> {
        let rows = self.protect(rows, |p, r| p.gateway(r)).await?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counts = ImportCounts::default();
            let mut inserted = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO gateway_spend (source, dedupe_key, file, line, period_start,
                        provider, model, team, end_user, api_key, tags, input_tokens,
                        output_tokens, cost_nanos, currency, product, imported_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                             ?16, ?17)
                     ON CONFLICT (source, dedupe_key) DO NOTHING",
                )?;
                for g in &rows {
                    let n = stmt.execute(params![
                        g.source,
                        g.dedupe_key,
                        g.file,
                        g.line,
                        g.period_start,
                        g.provider,
                        g.model,
                        g.team,
                        g.user,
                        g.api_key,
                        g.tags,
                        g.input_tokens,
                        g.output_tokens,
                        g.cost_nanos,
                        g.currency,
                        g.product,
                        now
                    ])?;
                    if n == 0 {
                        counts.duplicates += 1;
                    } else {
                        counts.inserted += 1;
                        inserted.push(g);
                    }
                }
            }
            if counts.inserted > 0 {
                tx.execute_batch(super::BUMP_SPEND)?;
                let names = event::products_of(inserted.iter().map(|g| g.product.as_deref()));
                let new = ready(queries::known(&*tx, &names, now, "gateway"))?;
                outbox::sqlite_emit(&tx, &event::for_gateway(&inserted, &new), now)?;
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    async fn gateway_totals(&self, since: Option<i64>) -> Result<Vec<GatewayTotal>, StoreError> {
        self.with(move |c| gateway_totals(c, since)).await
    }

    async fn upsert_people(&self, people: Vec<Person>) -> Result<ImportCounts, StoreError> {
        let people = self.protect(people, |p, v| p.people(v)).await?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counts = ImportCounts::default();
            {
                // The WHERE clause leaves an unchanged row alone, so it reports 0 changes.
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO people (email, name, department, manager) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (email) DO UPDATE SET name = excluded.name,
                        department = excluded.department, manager = excluded.manager
                     WHERE people.name IS NOT excluded.name
                        OR people.department IS NOT excluded.department
                        OR people.manager IS NOT excluded.manager",
                )?;
                for p in &people {
                    let n = stmt.execute(params![p.email, p.name, p.department, p.manager])?;
                    if n == 0 {
                        counts.duplicates += 1;
                    } else {
                        counts.inserted += 1;
                    }
                }
            }
            if counts.inserted > 0 {
                tx.execute(rollup::DEPARTMENTS_DIRTY, [])?;
                tx.execute_batch(super::BUMP_SPEND)?;
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    async fn people_active(&self) -> Result<Vec<(String, bool)>, StoreError> {
        self.read(move |c| ready(queries::people_active(c))).await
    }

    async fn scim_get(
        &self,
        kind: &'static str,
        id: String,
    ) -> Result<Option<ScimResource>, StoreError> {
        let row = self.read(move |c| ready(queries::scim_get(c, kind, &id))).await?;
        row.map(|r| super::open_scim(self.identities.get().map(|i| &**i), r)).transpose()
    }

    async fn scim_list(
        &self,
        kind: &'static str,
        name: Option<String>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ScimResource>), StoreError> {
        let ids = self.identities.get().cloned();
        let name = super::scim_name(ids.as_deref(), name);
        let (total, page) = self
            .read(move |c| ready(queries::scim_list(c, kind, name.as_deref(), offset, limit)))
            .await?;
        let page = page
            .into_iter()
            .map(|r| super::open_scim(ids.as_deref(), r))
            .collect::<Result<_, _>>()?;
        Ok((total, page))
    }

    async fn scim_write(&self, write: ScimWrite) -> Result<bool, StoreError> {
        let write = self.protect(write, |p, w| p.scim(w)).await?;
        self.write(move |tx| ready(queries::lifecycle::scim_write(tx, write))).await
    }

    async fn scim_delete(
        &self,
        kind: &'static str,
        id: String,
        email: Option<String>,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let email = self.protect(email, |p, e| p.optional(e)).await?;
        self.write(move |tx| {
            ready(queries::lifecycle::scim_delete(tx, kind, &id, email.as_deref(), &audit))
        })
        .await
    }

    async fn people(&self) -> Result<Vec<Person>, StoreError> {
        self.read(move |c| ready(queries::people(c))).await
    }

    async fn owner_last_use(&self, products: Vec<String>) -> Result<Vec<OwnerUse>, StoreError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        self.fold().await?;
        self.read(move |c| ready(queries::owner_last_use(c, &products))).await
    }

    async fn device_sightings(
        &self,
        since: Option<i64>,
    ) -> Result<Vec<DeviceSighting>, StoreError> {
        self.read(move |c| ready(queries::device_sightings(c, since))).await
    }

    async fn overlay(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.read(move |c| ready(queries::overlay(c))).await
    }

    async fn overlay_version(&self) -> Result<Option<i64>, StoreError> {
        self.with(|c| Ok(c.query_row(super::OVERLAY_VERSION, [], |r| r.get(0))?)).await
    }

    async fn put_overlay(
        &self,
        version: i64,
        document: String,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| ready(queries::put_overlay(tx, version, &document, &audit))).await
    }

    async fn process_sightings(&self, product: String) -> Result<Vec<ProcessSighting>, StoreError> {
        self.read(move |c| ready(queries::process_sightings(c, &product))).await
    }

    async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| ready(queries::audit(c, after, limit))).await
    }

    async fn create_session(
        &self,
        hash: CredentialHash,
        session: Session,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(move |tx| ready(queries::create_session(tx, &hash, session, &audit))).await
    }

    async fn session(&self, hash: CredentialHash, now: i64) -> Result<Option<Session>, StoreError> {
        self.read(move |c| ready(queries::session(c, &hash, now))).await
    }

    async fn touch_session(&self, hash: CredentialHash, now: i64) -> Result<(), StoreError> {
        self.read(move |c| ready(queries::touch_session(c, &hash, now))).await
    }

    async fn end_session(
        &self,
        hash: CredentialHash,
        audit: Option<AuditRecord>,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| ready(queries::end_session(tx, &hash, audit.as_ref()))).await
    }

    async fn purge_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError> {
        self.read(move |c| ready(queries::purge_sessions(c, now, idle_before))).await
    }

    async fn audit_query(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| ready(queries::audit_query(c, &filter))).await
    }

    async fn connector_cursor(&self, name: String) -> Result<Option<i64>, StoreError> {
        self.read(move |c| ready(queries::connector_cursor(c, &name))).await
    }

    async fn set_connector_cursor(
        &self,
        name: String,
        cursor_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.read(move |c| ready(queries::set_connector_cursor(c, &name, cursor_at, now))).await
    }

    async fn record_import(&self, run: ImportRun) -> Result<(), StoreError> {
        self.read(move |c| ready(queries::record_import(c, &run))).await
    }

    async fn import_runs(&self, limit: i64) -> Result<Vec<ImportRun>, StoreError> {
        self.read(move |c| ready(queries::import_runs(c, limit))).await
    }

    async fn device(&self, host_id: String) -> Result<Option<DeviceSummary>, StoreError> {
        self.read(move |c| ready(queries::device(c, &host_id))).await
    }

    async fn device_products(&self, host_id: String) -> Result<Vec<DeviceSighting>, StoreError> {
        self.read(move |c| ready(queries::device_products(c, &host_id))).await
    }

    async fn person_usage(&self, email: Option<String>) -> Result<Vec<PersonUsage>, StoreError> {
        // The products come from the rollups.
        self.fold().await?;
        let email = email.map(|e| e.to_ascii_lowercase());
        self.with(move |c| person_usage(c, email.as_deref())).await
    }

    async fn rotate_enroll_secret(
        &self,
        hash: CredentialHash,
        now: i64,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(move |tx| ready(queries::rotate_enroll_secret(tx, &hash, now, &audit))).await
    }

    async fn enroll_secret(&self) -> Result<Option<(CredentialHash, i64)>, StoreError> {
        self.read(move |c| ready(queries::enroll_secret(c))).await
    }

    async fn sync_channels(&self, channels: Vec<ChannelRow>, now: i64) -> Result<(), StoreError> {
        self.write(move |tx| ready(queries::alerts::sync_channels(tx, &channels, now))).await
    }

    async fn emit(
        &self,
        events: Vec<NewEvent>,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |tx| ready(queries::alerts::emit(tx, &events, audit.as_ref(), now))).await
    }

    async fn claim_deliveries(
        &self,
        channel: String,
        claimer: String,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.write(move |tx| ready(outbox::claim(tx, &channel, &claimer, now, lease_until, limit)))
            .await
    }

    async fn finish_delivery(
        &self,
        claimed: Claimed,
        claimer: String,
        attempt: Attempt,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            ready(queries::alerts::finish_delivery(
                tx,
                &claimed,
                &claimer,
                &attempt,
                audit.as_ref(),
                now,
            ))
        })
        .await
    }

    async fn admit_deliveries(
        &self,
        claimed: Vec<Claimed>,
        claimer: String,
        now: i64,
        rule: AdmitRule,
    ) -> Result<Vec<Admit>, StoreError> {
        self.write(move |tx| ready(outbox::admit(tx, &claimed, &claimer, now, &rule))).await
    }

    async fn deliveries(&self, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        self.read(move |c| ready(queries::deliveries(c, limit))).await
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read(move |c| ready(queries::delivery_counts(c))).await
    }

    async fn ticket(&self, channel: String, subject: String) -> Result<Option<String>, StoreError> {
        self.read(move |c| ready(queries::ticket(c, &channel, &subject))).await
    }

    async fn set_ticket(
        &self,
        channel: String,
        subject: String,
        issue_key: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.read(move |c| ready(queries::set_ticket(c, &channel, &subject, &issue_key, now))).await
    }

    async fn channel_events(
        &self,
        channel: String,
        state: String,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |c| ready(queries::channel_events(c, &channel, &state, from, to))).await
    }

    async fn claim_digest(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<DigestClaim>, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let claim = ready(queries::alerts::claim_digest(
                &*tx,
                &channel,
                period_end,
                &claimer,
                now,
                lease_until,
            ))?;
            if claim.is_some() {
                tx.commit()?;
            }
            Ok(claim)
        })
        .await
    }

    async fn digest_failed(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        self.read(move |c| {
            ready(queries::alerts::digest_failed(c, &channel, period_end, &claimer, retry_at))
        })
        .await
    }

    async fn digest_sent(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        events: i64,
    ) -> Result<bool, StoreError> {
        self.read(move |c| {
            ready(queries::alerts::digest_sent(c, &channel, period_end, &claimer, now, events))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
        }
        for (i, m) in super::super::postgres::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
        }
    }
}
