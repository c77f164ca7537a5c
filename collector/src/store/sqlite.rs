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

use super::sql::{Conn, Param, ready};
use super::{
    AuditFn, CredentialHash, Migration, PRODUCT_DEVICES_LIMIT, PRODUCT_VALUES_LIMIT, PeopleUsage,
    ReenrollStep, Store, StoreError, outbox, queries, rollup,
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

/// The first free duplicate host id of `host` (`HOST#N`, N from `duplicates + 2`), tried at
/// most 64 times.
pub(crate) fn free_duplicate_id(
    host: &str,
    duplicates: i64,
    mut taken: impl FnMut(&str) -> Result<bool, StoreError>,
) -> Result<String, StoreError> {
    for n in 0..64 {
        let id = super::duplicate_host_id(host, duplicates.saturating_add(n));
        if !taken(&id)? {
            return Ok(id);
        }
    }
    Err(StoreError::NoFreeHostId { host: host.to_owned() })
}

/// Creates or updates the device by host id, revokes its node keys and stores the new one,
/// inside the caller's transaction; returns the device's row id.
fn enroll_in(
    tx: &rusqlite::Transaction<'_>,
    device: &Device,
    key_hash: &CredentialHash,
    now: i64,
) -> Result<i64, StoreError> {
    // A new owner may be in another department: the rollup's departments are rebuilt.
    tx.execute(
        &format!(
            "{} AND EXISTS (SELECT 1 FROM devices WHERE host_id = ?1
                            AND owner_email IS NOT ?2)",
            rollup::DEPARTMENTS_DIRTY
        ),
        params![device.host_id, device.owner_email],
    )?;
    let id: i64 = tx.query_row(
        "INSERT INTO devices (host_id, hostname, os, os_version, agent_version,
                              owner_email, enrolled_at, last_contact)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (host_id) DO UPDATE SET hostname = excluded.hostname,
            os = excluded.os, os_version = excluded.os_version,
            agent_version = excluded.agent_version, owner_email = excluded.owner_email,
            last_contact = excluded.last_contact
         RETURNING id",
        params![
            device.host_id,
            device.hostname,
            device.os,
            device.os_version,
            device.agent_version,
            device.owner_email,
            now
        ],
        |r| r.get(0),
    )?;
    tx.execute("DELETE FROM node_keys WHERE device_id = ?1", [id])?;
    tx.execute_batch(super::BUMP_DEVICES)?;
    tx.execute(
        "INSERT INTO node_keys (key_hash, device_id, created_at) VALUES (?1, ?2, ?3)",
        params![&key_hash[..], id, now],
    )?;
    Ok(id)
}

/// Every mapping by normalised descriptor: `(id, product)`, read in the import's transaction.
fn sqlite_mapping_keys(
    tx: &rusqlite::Transaction<'_>,
) -> Result<HashMap<String, (i64, String)>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT descriptor, id, product FROM descriptor_mappings")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
    Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
}

fn append_audit(tx: &Connection, a: &AuditRecord) -> Result<(), StoreError> {
    ready(queries::append_audit(tx, a))
}

/// Stores one batch inside the writer's open transaction.
fn store_batch(tx: &Connection, job: &IngestJob) -> Result<IngestOutcome, StoreError> {
    let inserted = tx.execute(
        "INSERT INTO batches (device_id, batch_id, received_at, sightings)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![job.device.0, job.batch.batch_id, job.now, job.batch.received],
    )?;
    if inserted == 0 {
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
    tx.execute(
        "UPDATE devices SET last_contact = MAX(last_contact, ?2),
            dropped_sightings = dropped_sightings + ?3,
            evicted_sightings = evicted_sightings + ?4
         WHERE id = ?1",
        params![job.device.0, job.now, job.batch.dropped, job.batch.evicted],
    )?;
    batch_events(tx, job)?;
    Ok(IngestOutcome::Stored)
}

/// The alert events of a stored batch (see [`event::for_batch`]), in its transaction.
fn batch_events(tx: &Connection, job: &IngestJob) -> Result<(), StoreError> {
    let b = &job.batch;
    let seen = b.sightings.iter().map(|s| (s.product.as_str(), s.kind, s.last_seen));
    let installed =
        b.installs.iter().filter(|i| i.present).map(|i| (i.product.as_str(), i.kind, i.at));
    let products = event::batch_products(seen.chain(installed));
    let names: Vec<&str> = products.iter().map(|p| p.product).collect();
    let new = outbox::sqlite_known(tx, &names, job.now, "sighting")?;
    let blocked = outbox::sqlite_blocked(tx)?;
    if new.is_empty() && !blocked.iter().any(|(b, _)| names.contains(&b.as_str())) {
        return Ok(());
    }
    let host = outbox::sqlite_host(tx, job.device.0)?;
    outbox::sqlite_emit(tx, &event::for_batch(&host, &products, &new, &blocked), job.now)?;
    Ok(())
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
                day,
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

/// Reads a (product, kind, first seen, last seen, count, devices) row.
fn read_source(r: &rusqlite::Row<'_>) -> rusqlite::Result<SourceUsage> {
    Ok(SourceUsage {
        product: r.get(0)?,
        source: r.get(1)?,
        first_seen: r.get(2)?,
        last_seen: r.get(3)?,
        count: r.get(4)?,
        devices: r.get(5)?,
    })
}

/// Answers a usage filter from the rollups (see [`rollup::answers`]); the caller folds first.
fn usage_from_rollups(
    c: &mut Connection,
    plan: &rollup::Plan,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    let tx = c.transaction()?;
    let sources = query(&tx, &plan.sources, read_source)?;
    let mut departments: HashMap<String, Vec<String>> = HashMap::new();
    let read_pair = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, String)> {
        Ok((r.get(0)?, r.get(1)?))
    };
    for (product, department) in query(&tx, &plan.departments, read_pair)? {
        departments.entry(product).or_default().push(department);
    }
    let rows = query(&tx, &plan.products, |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    let products = rows
        .into_iter()
        .map(|(product, devices, users)| {
            let departments = departments.remove(&product).unwrap_or_default();
            ProductUsage { product, devices, users, departments }
        })
        .collect();
    Ok((sources, products))
}

/// Runs one of the rollups' reads.
fn query<T>(
    c: &Connection,
    read: &rollup::Read,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let args = read.args.iter().map(|a| -> &dyn rusqlite::ToSql {
        match a {
            rollup::Arg::Text(t) => t,
            rollup::Arg::Int(i) => i,
        }
    });
    let mut stmt = c.prepare_cached(&rollup::sqlite(read.sql))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The usage filter as SQL: every parameter may be NULL, meaning "no filter".
const FILTER: &str = "(?1 IS NULL OR s.product = ?1)
    AND (?2 IS NULL OR s.kind = ?2)
    AND (?3 IS NULL OR EXISTS (SELECT 1 FROM devices d JOIN people p ON p.email = d.owner_email
                               WHERE d.id = s.device_id AND p.department = ?3))
    AND (?4 IS NULL OR s.last_seen >= ?4)
    AND (?5 IS NULL OR s.first_seen <= ?5)";

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
            let recorded: Option<String> =
                tx.query_row(super::RECORDED_PRIVACY_MODE, [], |r| r.get(0)).optional()?;
            let known = recorded.is_some();
            let (plain, pseudonym) = if known {
                (false, false)
            } else {
                let plain: Option<String> =
                    tx.query_row(&super::plain_identity_sql(), [], |r| r.get(0)).optional()?;
                let pseudonym: Option<i64> =
                    tx.query_row(super::ANY_PSEUDONYM, [], |r| r.get(0)).optional()?;
                (plain.is_some(), pseudonym.is_some())
            };
            let mode = super::privacy_mode_of(recorded, plain, pseudonym, opened_with)?;
            if !known && (plain || pseudonym) {
                tx.execute(
                    &rollup::sqlite(super::RECORD_PRIVACY_MODE),
                    params![mode.as_str(), now],
                )?;
            }
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let sealed: Option<Vec<u8>> =
                tx.query_row(super::SEALED_SQL, [&pseudonym], |r| r.get(0)).optional()?;
            if sealed.is_some() {
                append_audit(&tx, &audit)?;
                tx.commit()?;
            }
            Ok(sealed)
        })
        .await
    }

    async fn enroll(
        &self,
        device: Device,
        key_hash: CredentialHash,
        now: i64,
    ) -> Result<DeviceId, StoreError> {
        let device = self.protect(device, |p, d| p.device(d)).await?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = enroll_in(&tx, &device, &key_hash, now)?;
            tx.commit()?;
            Ok(DeviceId(id))
        })
        .await
    }

    async fn enroll_checked(&self, a: EnrollAttempt) -> Result<EnrollOutcome, StoreError> {
        let a = self.protect(a, |p, a| p.device(&mut a.device)).await?;
        self.with(move |c| {
            // IMMEDIATE takes the write lock first: one enrollment decides at a time.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let host = &a.device.host_id;
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM devices WHERE host_id = ?1", [host], |r| r.get(0))
                .optional()?;
            // A key proves the host id's device or one of its duplicates: the one it belongs to.
            let mut proved: Option<String> = None;
            for key in a.proofs().filter(|_| existing.is_some()) {
                proved = tx
                    .query_row(
                        "SELECT d.host_id FROM node_keys k JOIN devices d ON d.id = k.device_id
                         WHERE k.key_hash = ?1 AND (d.host_id = ?2 OR d.duplicate_of = ?2)",
                        params![&key[..], host],
                        |r| r.get(0),
                    )
                    .optional()?;
                if proved.is_some() {
                    break;
                }
            }
            let approved = tx
                .query_row(
                    "SELECT 1 FROM reenroll_requests
                     WHERE host_id = ?1 AND approved_at IS NOT NULL",
                    [host],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let step =
                super::reenroll_step(a.policy, existing.is_some(), proved.is_some(), approved);
            let duplicate = if step == ReenrollStep::Admit(crate::model::Admission::Duplicate) {
                let taken = |id: &str| -> Result<bool, StoreError> {
                    Ok(tx
                        .query_row("SELECT 1 FROM devices WHERE host_id = ?1", [id], |_| Ok(()))
                        .optional()?
                        .is_some())
                };
                let n: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM devices WHERE duplicate_of = ?1",
                    [host],
                    |r| r.get(0),
                )?;
                Some(free_duplicate_id(host, n, taken)?)
            } else {
                None
            };
            let audit = super::reenroll_audit(&a, step, duplicate.as_deref());
            if let Some(audit) = &audit {
                append_audit(&tx, audit)?;
            }
            if let Some(event) = super::takeover_event(&a, step) {
                outbox::sqlite_emit(&tx, &[event], a.now)?;
            }
            let outcome = match step {
                ReenrollStep::Admit(how) => {
                    let mut device = a.device.clone();
                    if let Some(own) = proved.or_else(|| duplicate.clone()) {
                        device.host_id = own;
                    }
                    let id = enroll_in(&tx, &device, &a.key_hash, a.now)?;
                    if duplicate.is_some() {
                        tx.execute(
                            "UPDATE devices SET duplicate_of = ?1 WHERE id = ?2",
                            params![host, id],
                        )?;
                    } else {
                        tx.execute("DELETE FROM reenroll_requests WHERE host_id = ?1", [host])?;
                    }
                    EnrollOutcome::Enrolled { device: DeviceId(id), how }
                }
                ReenrollStep::Refuse => EnrollOutcome::Refused,
                ReenrollStep::Hold => {
                    tx.execute(
                        "INSERT INTO reenroll_requests (host_id, hostname, os, source, requested_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (host_id) DO UPDATE SET hostname = excluded.hostname,
                            os = excluded.os, source = excluded.source,
                            requested_at = excluded.requested_at",
                        params![host, a.device.hostname, a.device.os, a.source, a.now],
                    )?;
                    EnrollOutcome::Held
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn approve_reenroll(
        &self,
        host_id: String,
        actor: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO reenroll_requests (host_id, approved_by, approved_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (host_id) DO UPDATE SET approved_by = excluded.approved_by,
                    approved_at = excluded.approved_at",
                params![host_id, actor, now],
            )?;
            append_audit(&tx, &super::approve_audit(&host_id, &actor, now))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn erase_person(
        &self,
        email: String,
        actor: String,
        reason: String,
        now: i64,
    ) -> Result<super::erase::Erasure, StoreError> {
        use super::erase;
        let ids = self.identities.get().cloned();
        let plain = email.clone();
        let email = match &ids {
            Some(ids) if ids.pseudonymous() => ids.pseudonym(&email),
            _ => email,
        };
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let name: String = tx
                .query_row(
                    "SELECT name FROM people WHERE lower(email) = ?1
                     UNION ALL SELECT payer_name FROM expense_lines WHERE lower(payer_email) = ?1
                     LIMIT 1",
                    [&email],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_default();
            let users: Vec<String> = {
                let mut stmt = tx.prepare(erase::OWNED_OS_USERS)?;
                let rows = stmt.query_map([&email], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let t = erase::Tombstone::new();
            let mut rows = std::collections::BTreeMap::<String, u64>::new();
            tx.execute(erase::UNLOCK_AUDIT, [])?;
            for (n, user) in users.iter().enumerate() {
                let new = t.os_user_name(n);
                let args = [user, &new, &email];
                for sql in erase::OS_USER {
                    let params = args.get(..erase::arity(sql)).unwrap_or(&args);
                    tx.execute(sql, rusqlite::params_from_iter(params))?;
                }
                *rows.entry("os_users".into()).or_default() += 1;
            }
            let args = [&email, &t.email, &name, &t.name, &t.hostname];
            for step in erase::PERSON {
                if step.needs_name && name.trim().is_empty() {
                    continue;
                }
                let params = args.get(..erase::arity(step.sql)).unwrap_or(&args);
                let n = tx.execute(step.sql, rusqlite::params_from_iter(params))?;
                *rows.entry(step.table.into()).or_default() += n as u64;
            }
            tx.execute(erase::LOCK_AUDIT, [])?;
            rows.retain(|_, n| *n > 0);
            if rows.is_empty() {
                // Nothing named them: already erased or never known; nothing to record.
                return Ok(erase::Erasure::default());
            }
            if let Some(ids) = &ids {
                // The plain name: as stored, or sealed behind its pseudonym.
                let sealed_name: Option<Vec<u8>> =
                    tx.query_row(super::SEALED_SQL, [&name], |r| r.get(0)).optional()?;
                let plain_name = super::plain_of(ids, &name, sealed_name);
                let mut plain_users = Vec::with_capacity(users.len());
                for user in &users {
                    let sealed: Option<Vec<u8>> =
                        tx.query_row(super::SEALED_SQL, [user], |r| r.get(0)).optional()?;
                    plain_users.push(super::plain_of(ids, user, sealed));
                }
                for (hash, tombstone) in
                    super::erased_identities(ids, &plain, plain_name.as_deref(), &plain_users, &t)
                {
                    tx.execute(super::REMEMBER_ERASED_SQL, [&hash, &tombstone])?;
                }
                for pseudonym in users.iter().chain([&email, &name]) {
                    tx.execute(super::FORGET_SQL, [pseudonym])?;
                }
            }
            append_audit(&tx, &erase::audit(&t.email, &actor, &reason, &rows, now))?;
            tx.execute_batch(super::BUMP_SPEND)?;
            tx.execute_batch(super::BUMP_DEVICES)?;
            tx.execute_batch(super::BUMP_USAGE)?;
            tx.execute(rollup::DEPARTMENTS_DIRTY, [])?;
            tx.commit()?;
            // secure_delete zeroes the old values in the database's pages; the write-ahead
            // log still holds the pages as they were until a checkpoint empties it. Best
            // effort: a reader holding the log open makes it wait for the next erasure.
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).ok();
            Ok(erase::Erasure { tombstone: Some(t.email), rows })
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
                self.with(move |c| {
                    let n: i64 = c.query_row(kind.count_sql(), [cutoff], |r| r.get(0))?;
                    Ok(u64::try_from(n).unwrap_or(0))
                })
                .await?
            } else {
                let mut total = 0u64;
                for _ in 0..MAX_CHUNKS {
                    let n = self
                        .with(move |c| {
                            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                            if kind == Kind::AuditEntries {
                                tx.execute(super::erase::UNLOCK_AUDIT, [])?;
                            }
                            let n = tx.execute(kind.delete_sql(), params![cutoff, CHUNK])?;
                            if kind == Kind::AuditEntries {
                                tx.execute(super::erase::LOCK_AUDIT, [])?;
                            }
                            if n > 0
                                && let Some(bump) = kind.bump()
                            {
                                tx.execute_batch(bump)?;
                            }
                            tx.commit()?;
                            Ok(n as u64)
                        })
                        .await?;
                    total += n;
                    if n < CHUNK as u64 {
                        break;
                    }
                }
                total
            };
            outcome.rows.push((kind, cutoff, n));
        }
        if !dry_run && outcome.total() > 0 {
            let record = retention::audit(&outcome, super::now());
            self.with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                append_audit(&tx, &record)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        }
        Ok(outcome)
    }

    async fn reenroll_requests(&self) -> Result<Vec<ReenrollRequest>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT host_id, hostname, os, source, requested_at, approved_by, approved_at
                 FROM reenroll_requests ORDER BY host_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ReenrollRequest {
                    host_id: r.get(0)?,
                    hostname: r.get(1)?,
                    os: r.get(2)?,
                    source: r.get(3)?,
                    requested_at: r.get(4)?,
                    approved_by: r.get(5)?,
                    approved_at: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn device_by_key(
        &self,
        key_hash: CredentialHash,
    ) -> Result<Option<DeviceId>, StoreError> {
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT device_id FROM node_keys WHERE key_hash = ?1",
                [&key_hash[..]],
                |r| r.get(0).map(DeviceId),
            )
            .optional()?)
        })
        .await
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
            tx.execute(
                "INSERT INTO heartbeats (device_id, received_at, agent_version, catalog_version,
                    interfaces_json, packets, drops, spool_depth, evictions, last_scan)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (device_id) DO UPDATE SET received_at = excluded.received_at,
                    agent_version = excluded.agent_version,
                    catalog_version = excluded.catalog_version,
                    interfaces_json = excluded.interfaces_json, packets = excluded.packets,
                    drops = excluded.drops, spool_depth = excluded.spool_depth,
                    evictions = excluded.evictions, last_scan = excluded.last_scan",
                params![
                    device.0,
                    h.received_at,
                    h.agent_version,
                    h.catalog_version,
                    h.interfaces_json,
                    h.packets,
                    h.drops,
                    h.spool_depth,
                    h.evictions,
                    h.last_scan
                ],
            )?;
            tx.execute(
                "UPDATE devices SET last_contact = MAX(last_contact, ?2),
                    agent_version = ?3 WHERE id = ?1",
                params![device.0, h.received_at, h.agent_version],
            )?;
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
        self.with(move |c| {
            let p =
                params![filter.product, filter.kind, filter.department, filter.since, filter.until];
            let mut stmt = c.prepare(&format!(
                "SELECT s.product, s.kind, MIN(s.first_seen), MAX(s.last_seen), SUM(s.count),
                        COUNT(DISTINCT s.device_id)
                 FROM sightings s WHERE {FILTER}
                 GROUP BY s.product, s.kind ORDER BY s.product, s.kind"
            ))?;
            let sources = stmt.query_map(p, read_source)?.collect::<Result<Vec<_>, _>>()?;
            let mut stmt = c.prepare(&format!(
                "SELECT s.product, COUNT(DISTINCT s.device_id),
                        COUNT(DISTINCT NULLIF(s.os_user, '')),
                        (SELECT group_concat(dep, char(10)) FROM (
                            SELECT DISTINCT p.department AS dep FROM sightings s2
                            JOIN devices d ON d.id = s2.device_id
                            JOIN people p ON p.email = d.owner_email
                            WHERE s2.product = s.product ORDER BY dep))
                 FROM sightings s WHERE {FILTER}
                 GROUP BY s.product ORDER BY s.product"
            ))?;
            let products = stmt
                .query_map(p, |r| {
                    let deps: Option<String> = r.get(3)?;
                    Ok(ProductUsage {
                        product: r.get(0)?,
                        devices: r.get(1)?,
                        users: r.get(2)?,
                        departments: deps
                            .map(|d| d.split('\n').map(str::to_owned).collect())
                            .unwrap_or_default(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((sources, products))
        })
        .await
    }

    async fn product_people(&self, product: String) -> Result<Vec<String>, StoreError> {
        self.read(move |c| ready(queries::product_people(c, &product))).await
    }

    async fn product_devices(&self, product: String) -> Result<Vec<DeviceUsage>, StoreError> {
        self.fold().await?;
        self.with(move |c| {
            let mut stmt = c.prepare(
                // Users and the installed flag only for the devices listed.
                "SELECT t.host_id, t.hostname, t.owner_email, t.first_seen, t.last_seen, t.count,
                        (SELECT group_concat(u, char(10)) FROM (
                            SELECT DISTINCT s2.os_user AS u FROM usage_device s2
                            WHERE s2.device_id = t.id AND s2.product = ?1 AND s2.os_user <> ''
                            ORDER BY u)),
                        (SELECT MAX(i.present) FROM installed i
                         WHERE i.device_id = t.id AND i.product = ?1)
                 FROM (SELECT d.id, d.host_id, d.hostname, d.owner_email,
                              MIN(s.first_seen) AS first_seen, MAX(s.last_seen) AS last_seen,
                              SUM(s.count) AS count
                       FROM usage_device s JOIN devices d ON d.id = s.device_id
                       WHERE s.product = ?1
                       GROUP BY d.id ORDER BY d.host_id LIMIT ?2) t
                 ORDER BY t.host_id",
            )?;
            let rows = stmt.query_map(params![product, PRODUCT_DEVICES_LIMIT], |r| {
                let users: Option<String> = r.get(6)?;
                Ok(DeviceUsage {
                    host_id: r.get(0)?,
                    hostname: r.get(1)?,
                    owner_email: r.get(2)?,
                    first_seen: r.get(3)?,
                    last_seen: r.get(4)?,
                    count: r.get(5)?,
                    users: users
                        .map(|u| u.split('\n').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    installed: r.get::<_, Option<bool>>(7)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn devices_page(&self, q: DeviceQuery) -> Result<DevicePage, StoreError> {
        let hb = super::DEVICE_LAST_HEARTBEAT;
        let filter = format!(
            "(?2 = '' OR instr(lower(d.hostname), ?2) > 0 OR instr(lower(d.host_id), ?2) > 0
              OR instr(lower(COALESCE(d.owner_email, '')), ?2) > 0)
             AND (?3 = 0 OR {hb} < ?1)"
        );
        let count_sql = format!(
            "SELECT COUNT(*), COALESCE(SUM({hb} < ?1), 0),
                    COALESCE(SUM(CASE WHEN {filter} THEN 1 ELSE 0 END), 0)
             FROM devices d LEFT JOIN heartbeats h ON h.device_id = d.id"
        );
        let page_sql = format!(
            "{} WHERE {filter} ORDER BY {hb} >= ?1, {hb}, d.hostname LIMIT ?4 OFFSET ?5",
            queries::DEVICE_SELECT
        );
        // The counts and the page are independent scans: two readers at once (WAL).
        let counted = q.clone();
        let counts = self.with(move |c| {
            Ok(c.query_row(
                &count_sql,
                params![counted.stale_before, counted.search, counted.only_stale],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        });
        let page = self.read(move |c| {
            let params: [&dyn Param; 5] =
                [&q.stale_before, &q.search, &q.only_stale, &q.limit, &q.offset];
            ready(c.query(&page_sql, &params))
        });
        let ((total, stale, matched), devices) = tokio::try_join!(counts, page)?;
        Ok(DevicePage { total, stale, matched, devices })
    }

    async fn versions(&self) -> Result<super::Versions, StoreError> {
        self.fold().await?;
        self.with(|c| {
            let mut v = super::Versions::default();
            let mut stmt = c.prepare_cached(super::VERSIONS_SELECT)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                v.set(&name, r.get(1)?);
            }
            Ok(v)
        })
        .await
    }

    async fn product_values(
        &self,
        product: String,
        limit: i64,
    ) -> Result<Vec<ValueUsage>, StoreError> {
        self.with(move |c| {
            // Found through sightings_product; text compares by bytes (the BINARY collation).
            let mut stmt = c.prepare_cached(
                "SELECT kind, value, COUNT(DISTINCT device_id), SUM(count), MIN(first_seen),
                        MAX(last_seen)
                 FROM sightings WHERE product = ?1
                 GROUP BY kind, value ORDER BY kind, value LIMIT ?2",
            )?;
            let rows =
                stmt.query_map(params![product, limit.clamp(1, PRODUCT_VALUES_LIMIT)], |r| {
                    Ok(ValueUsage {
                        kind: r.get(0)?,
                        value: r.get(1)?,
                        devices: r.get(2)?,
                        count: r.get(3)?,
                        first_seen: r.get(4)?,
                        last_seen: r.get(5)?,
                    })
                })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn mcp_flags(&self) -> Result<Vec<McpServerFlags>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&rollup::sqlite(super::MCP_FLAGS_SELECT))?;
            let rows = stmt.query_map([], |r| {
                let flags: String = r.get(2)?;
                Ok(super::mcp_flags_row(r.get(0)?, r.get(1)?, &flags, r.get(3)?))
            })?;
            let mut out = rows.collect::<Result<Vec<_>, _>>()?;
            out.sort_by(|a, b| {
                (&a.product, &a.value, &a.flags).cmp(&(&b.product, &b.value, &b.flags))
            });
            Ok(out)
        })
        .await
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
            let mappings = sqlite_mapping_keys(&tx)?;
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
                let new = outbox::sqlite_known(&tx, &names, now, "expense")?;
                let blocked = outbox::sqlite_blocked(&tx)?;
                outbox::sqlite_emit(&tx, &event::for_expenses(&inserted, &new, &blocked), now)?;
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    async fn expenses(&self, since: Option<i64>) -> Result<Vec<ExpenseLine>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT source, dedupe_key, file, line, occurred_at, amount_minor, currency,
                        descriptor, merchant, payer_email, payer_name, department, product,
                        candidate, candidate_reason
                 FROM expense_lines WHERE (?1 IS NULL OR occurred_at >= ?1)
                 ORDER BY occurred_at, id",
            )?;
            let rows = stmt.query_map([since], |r| {
                Ok(ExpenseLine {
                    source: r.get(0)?,
                    dedupe_key: r.get(1)?,
                    file: r.get(2)?,
                    line: r.get(3)?,
                    occurred_at: r.get(4)?,
                    amount_minor: r.get(5)?,
                    currency: r.get(6)?,
                    descriptor: r.get(7)?,
                    merchant: r.get(8)?,
                    payer_email: r.get(9)?,
                    payer_name: r.get(10)?,
                    department: r.get(11)?,
                    product: r.get(12)?,
                    candidate: r.get(13)?,
                    candidate_reason: r.get(14)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn mappings(&self) -> Result<Vec<DescriptorMapping>, StoreError> {
        self.read(move |c| ready(queries::mappings(c))).await
    }

    async fn add_mapping(
        &self,
        mapping: DescriptorMapping,
        audit: AuditRecord,
    ) -> Result<(DescriptorMapping, u64), StoreError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: Option<i64> = tx
                .query_row(
                    "INSERT INTO descriptor_mappings (descriptor, product, actor, created_at, note)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (descriptor) DO NOTHING RETURNING id",
                    params![
                        mapping.descriptor,
                        mapping.product,
                        mapping.actor,
                        mapping.created_at,
                        mapping.note
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Err(StoreError::Exists {
                    what: "descriptor mapping",
                    name: mapping.descriptor,
                });
            };
            let candidates = {
                let mut stmt = tx.prepare(
                    "SELECT id, descriptor FROM expense_lines
                     WHERE candidate AND product IS NULL AND mapping_id IS NULL",
                )?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<(i64, String)>, _>>()?
            };
            let mut resolved = 0_u64;
            {
                let mut stmt = tx.prepare(
                    "UPDATE expense_lines SET product = ?1, candidate = 0, mapping_id = ?2
                     WHERE id = ?3",
                )?;
                for line in super::lines_for_key(candidates, &mapping.descriptor) {
                    resolved += stmt.execute(params![mapping.product, id, line])? as u64;
                }
            }
            if resolved > 0 {
                tx.execute_batch(super::BUMP_SPEND)?;
            }
            append_audit(&tx, &audit)?;
            // Its alert, in the same transaction (issue 17).
            let mapping = DescriptorMapping { id, ..mapping };
            let event = event::descriptor_taught(&mapping, resolved);
            outbox::sqlite_emit(&tx, &[event], mapping.created_at)?;
            tx.commit()?;
            Ok((mapping, resolved))
        })
        .await
    }

    async fn remove_mapping(
        &self,
        id: i64,
        audit: AuditFn<DescriptorMapping>,
    ) -> Result<Option<(DescriptorMapping, u64)>, StoreError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(before) = ready(queries::mapping_for_update(&*tx, id))? else {
                return Ok(None);
            };
            let restored = tx.execute(
                "UPDATE expense_lines SET product = NULL, candidate = 1, mapping_id = NULL
                 WHERE mapping_id = ?1",
                [id],
            )? as u64;
            tx.execute("DELETE FROM descriptor_mappings WHERE id = ?1", [id])?;
            if restored > 0 {
                tx.execute_batch(super::BUMP_SPEND)?;
            }
            append_audit(&tx, &audit(Some(&before)))?;
            tx.commit()?;
            Ok(Some((before, restored)))
        })
        .await
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
                let new = outbox::sqlite_known(&tx, &names, now, "gateway")?;
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let r = &write.resource;
            let taken: Option<String> = tx
                .query_row(
                    "SELECT id FROM scim_resources WHERE kind = ?1 AND name = ?2 AND id <> ?3",
                    params![r.kind, write.name, r.id],
                    |row| row.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Err(StoreError::Exists { what: "SCIM resource", name: write.name });
            }
            let n = if r.version == 1 {
                tx.execute(
                    "INSERT INTO scim_resources
                        (kind, id, name, resource, version, created_at, modified_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6) ON CONFLICT DO NOTHING",
                    params![r.kind, r.id, write.name, r.resource, r.created_at, r.modified_at],
                )?
            } else {
                tx.execute(
                    "UPDATE scim_resources SET name = ?3, resource = ?4, version = ?5,
                        modified_at = ?6
                     WHERE kind = ?1 AND id = ?2 AND version = ?5 - 1",
                    params![r.kind, r.id, write.name, r.resource, r.version, r.modified_at],
                )?
            };
            if n == 0 {
                return Ok(false);
            }
            if let Some(sp) = &write.person {
                let p = &sp.person;
                if let Some(old) = sp.previous_email.as_deref().filter(|o| *o != p.email) {
                    tx.execute("UPDATE people SET active = 0 WHERE email = ?1", params![old])?;
                }
                tx.execute(
                    "INSERT INTO people (email, name, department, manager, active)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (email) DO UPDATE SET name = excluded.name,
                        department = excluded.department, manager = excluded.manager,
                        active = excluded.active",
                    params![p.email, p.name, p.department, p.manager, i64::from(sp.active)],
                )?;
                tx.execute(rollup::DEPARTMENTS_DIRTY, [])?;
                tx.execute_batch(super::BUMP_SPEND)?;
            }
            append_audit(&tx, &write.audit)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn scim_delete(
        &self,
        kind: &'static str,
        id: String,
        email: Option<String>,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let email = self.protect(email, |p, e| p.optional(e)).await?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM scim_resources WHERE kind = ?1 AND id = ?2",
                params![kind, id],
            )?;
            if n > 0 {
                append_audit(&tx, &audit)?;
            }
            if n > 0
                && let Some(email) = email
            {
                tx.execute("UPDATE people SET active = 0 WHERE email = ?1", params![email])?;
                tx.execute_batch(super::BUMP_SPEND)?;
            }
            tx.commit()?;
            Ok(n > 0)
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
        // The products go in as one JSON array, so the statement is the same for any number.
        let products = serde_json::to_string(&products)
            .map_err(|error| StoreError::Json { what: "products", error })?;
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT lower(d.owner_email), s.product, MAX(s.last_seen)
                 FROM usage_device s JOIN devices d ON d.id = s.device_id
                 WHERE s.product IN (SELECT value FROM json_each(?1))
                   AND d.owner_email IS NOT NULL AND d.owner_email <> ''
                 GROUP BY lower(d.owner_email), s.product
                 ORDER BY 1, 2",
            )?;
            let rows = stmt.query_map([products], |r| {
                Ok(OwnerUse { owner_email: r.get(0)?, product: r.get(1)?, last_seen: r.get(2)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(outbox::CHANNELS_OFF, [])?;
            for ch in &channels {
                tx.execute(
                    &rollup::sqlite(outbox::CHANNEL_ON),
                    params![ch.name, ch.kind, outbox::events_text(ch), now],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn emit(
        &self,
        events: Vec<NewEvent>,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let new = outbox::sqlite_emit(&tx, &events, now)?;
            if let Some(a) = &audit {
                append_audit(&tx, a)?;
            }
            tx.commit()?;
            Ok(new)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        channel: String,
        claimer: String,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.with(move |c| outbox::sqlite_claim(c, &channel, &claimer, now, lease_until, limit))
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
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (state, next_at, done_at, status, error) = outbox::finish_values(&attempt, now);
            let n = tx.execute(
                &rollup::sqlite(outbox::FINISH),
                params![
                    claimed.channel,
                    claimed.event.seq,
                    state,
                    next_at,
                    done_at,
                    status,
                    error,
                    claimer
                ],
            )?;
            if n == 1
                && let Some(a) = &audit
            {
                append_audit(&tx, a)?;
            }
            tx.commit()?;
            Ok(n == 1)
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
        self.with(move |c| outbox::sqlite_admit(c, &claimed, &claimer, now, &rule)).await
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
            let claimed = tx.execute(
                &rollup::sqlite(outbox::DIGEST_CLAIM),
                params![channel, period_end, claimer, lease_until, now],
            )?;
            if claimed == 0 {
                return Ok(None);
            }
            let previous: Option<i64> = tx.query_row(
                &rollup::sqlite(outbox::DIGEST_PREVIOUS),
                params![channel, period_end],
                |r| r.get(0),
            )?;
            let attempts: i64 = tx.query_row(
                &rollup::sqlite(outbox::DIGEST_ATTEMPTS),
                params![channel, period_end],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(Some(DigestClaim { previous, attempts }))
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
        self.with(move |c| {
            c.execute(
                &rollup::sqlite(outbox::DIGEST_FAILED),
                params![channel, period_end, claimer, retry_at],
            )?;
            Ok(())
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
        self.with(move |c| {
            Ok(c.execute(
                &rollup::sqlite(outbox::DIGEST_SENT),
                params![channel, period_end, claimer, now, events],
            )? == 1)
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
