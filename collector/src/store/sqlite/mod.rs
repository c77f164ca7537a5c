//! The SQLite store: rusqlite (bundled SQLite) on tokio's blocking pool.
//!
//! Every connection is opened by [`open`], which sets WAL (readers never block the writer),
//! a busy timeout (several processes, such as `serve` and `token create`, share the file) and
//! foreign keys. Connections live in a small bounded pool; each operation borrows one on a
//! blocking thread. Writes start with `BEGIN IMMEDIATE`, so a writer takes the lock up front
//! and waits under the busy timeout instead of failing on a read-to-write upgrade.

mod backup;
mod bulk;
mod reads;
mod writer;

pub use backup::{BackupReport, backup};
use reads::usage_from_rollups;
use writer::{Job, QUEUE, write_batches};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::sql::ready;
use super::{Migration, Store, StoreError, queries, rollup};
use crate::model::{Batch, DeviceId, IngestOutcome, ProductUsage, SourceUsage, UsageFilter};

/// The SQLite migrations, in order.
pub const MIGRATIONS: &[Migration] = super::migrations!("sqlite");

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
pub(super) fn open_with(path: &Path, flags: rusqlite::OpenFlags) -> Result<Connection, StoreError> {
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

/// A SQLite database file with a small connection pool, and one writer thread that commits
/// sighting batches in groups and runs the folds.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
    writer: mpsc::Sender<Job>,
    identities: super::IdentitySlot,
}

struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// Runs a statement function of [`queries`] on a pooled connection, on the blocking pool
/// ([`SqliteStore::read`]); see [`super::shared`].
macro_rules! lite_read {
    ($s:ident, $c:ident => $e:expr) => {
        $s.read(move |$c| ready($e)).await
    };
}

/// Runs a statement function of [`queries`] in a writing transaction (`BEGIN IMMEDIATE`,
/// [`SqliteStore::write`]); see [`super::shared`].
macro_rules! lite_write {
    ($s:ident, $c:ident => $e:expr) => {
        $s.write(move |$c| ready($e)).await
    };
}

/// Runs a function of [`bulk`] or [`reads`] with a pooled connection of its own, on the
/// blocking pool ([`SqliteStore::with`]); see [`super::shared`].
macro_rules! lite_with {
    ($s:ident, $c:ident => $e:expr) => {
        $s.with(move |$c| $e).await
    };
}

impl SqliteStore {
    /// See [`checkpoint_after_erasure`].
    async fn after_erasure(&self) -> Result<(), StoreError> {
        lite_with!(self, c => checkpoint_after_erasure(c))
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    ///
    /// # Errors
    /// The file cannot be opened, or a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        // Created 0600 before SQLite opens it, so the log and shared-memory files SQLite
        // creates beside it get the same mode.
        super::files::private_sqlite(path)
            .map_err(|error| StoreError::Io { path: path.display().to_string(), error })?;
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
            .map_err(|error| StoreError::Io { path: path.display().to_string(), error })?;
        Ok(store)
    }

    /// Asks the writer thread for a fold and waits for its answer.
    async fn fold_now(&self, background: bool) -> Result<u64, StoreError> {
        let (done, folded) = oneshot::channel();
        self.writer
            .send(Job::Fold { done, background })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        folded.await.map_err(|_| StoreError::WriterStopped)?
    }

    super::shared::protect_method!(lite_write);

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
        tx.execute_batch(m.sql).map_err(|e| StoreError::Migration {
            version: m.version,
            error: Box::new(StoreError::Sqlite(e)),
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![m.version, super::now()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// After an erasure ([`super::Store::erase_person`]): `secure_delete` zeroes the old values in
/// the database's pages, but the write-ahead log still holds the pages as they were until a
/// checkpoint empties it. Best effort: a reader holding the log open makes it wait for the
/// next erasure.
fn checkpoint_after_erasure(c: &Connection) -> Result<(), StoreError> {
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).ok();
    Ok(())
}

impl Store for SqliteStore {
    super::shared::store_methods!("sqlite", lite_read, lite_write, lite_with);

    async fn ingest(
        &self,
        device: DeviceId,
        batch: Batch,
        now: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let batch = self.protect(Some(device), batch, |p, b| p.batch(b)).await?;
        let (done, outcome) = oneshot::channel();
        self.writer
            .send(Job::Ingest { device, batch, now, done })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        outcome.await.map_err(|_| StoreError::WriterStopped)?
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
