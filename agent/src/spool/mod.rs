//! The durable spool: matched sightings wait here until the collector has acknowledged them.
//!
//! Design constraints (DESIGN.md invariants 2 and 4):
//! - **No loss.** A sighting is in the spool or committed at the collector. Rows are written in
//!   SQLite transactions with WAL and `synchronous=FULL`, so a committed write survives
//!   `kill -9` and power loss. Rows are deleted only by [`Spool::ack`], after the collector has
//!   acknowledged their batch.
//! - **Bounded.** The live database size is capped ([`SpoolLimits::max_bytes`]). When a write
//!   goes over, the oldest rows not in flight are evicted first, and how many sightings that
//!   cost is counted and reported to the collector with the next batch, never silently lost.
//! - **Corruption is survivable.** A spool file that SQLite cannot read or that fails
//!   `quick_check` is moved aside (`<file>.corrupt-<unix time>`) and a fresh one started. A
//!   full disk or an IO error is not corruption: the file stays where it is.
//! - **An acknowledgement fits on a full disk** (issue 14 item 8). Deleting rows in WAL mode
//!   still writes pages to the WAL, so the spool keeps a reserve file beside it
//!   (`<file>.reserve`, [`RESERVE_BYTES`] of zeros, written whole). When taking a batch or
//!   acknowledging one fails because the disk is full, the reserve is deleted and the call
//!   tried once more, and after such an acknowledgement the WAL is checkpointed and truncated,
//!   giving its space back. New sightings are stored only while the reserve is whole: a write
//!   first puts it back, and when that fails ([`SpoolError::NoRoom`]) nothing is inserted, so
//!   the room an upload needs is never taken by new rows.
//!
//! On-disk format (schema version 3; `PRAGMA user_version` holds the version and [`MIGRATIONS`]
//! bring an older file up to date in one transaction each):
//! - `sightings`: one row per (window, product, kind, value, user, process, removed) while the
//!   row is unsent (`batch_id` NULL), with first seen, last seen and count. A partial unique
//!   index on unsent rows makes `record` an upsert that aggregates. Once a row is assigned to a
//!   batch it is frozen; later sightings in the same window start a new row, and the collector
//!   adds the counts up. `removed` (version 2) marks the one-off report that an installed item
//!   is gone. `flags` (version 3) holds an MCP server's risk flags (names only, never a value).
//! - `batches`: batch ids in flight with the eviction and drop counts they report, so a restart
//!   resends the same batch, with the same id and the same content.
//! - `counters`: `evicted` and `dropped`, reset when a batch carrying them is acknowledged.
//! - `installed` (version 2): the installed items (product, kind, value, user) of the last
//!   inventory view written with [`Spool::record_inventory`]. The next view is diffed against
//!   it, in the same transaction that stores the view's sightings, so a removal is reported
//!   exactly once: a crash before the commit leaves the old set, and the next scan finds the
//!   same removal again. It only ever holds catalog matches, like every other table here, and
//!   its size is that of one inventory view.
//!
//! Lifecycle: `record` / `record_inventory` → `next_batch` (assigns rows to a batch id, or
//! returns the batch already in flight) → upload → `ack` (deletes the batch's rows). Sending a
//! batch twice is safe: the collector counts a batch id once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aiscout_wire::{SightingKind, UnixSecs};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

/// Limits of one spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolLimits {
    /// The most bytes the live rows may take (SQLite pages in use).
    pub max_bytes: u64,
    /// The most rows per batch.
    pub batch_rows: usize,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024, batch_rows: 1_000 }
    }
}

/// One aggregated sighting as the spool keeps it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Record {
    /// Start of the aggregation window.
    pub window: UnixSecs,
    /// Catalog product id.
    pub product: String,
    /// Indicator kind, stored as its wire name.
    pub kind: SightingKind,
    /// The matched value.
    pub value: String,
    /// The OS user (possibly pseudonymised).
    pub user: Option<String>,
    /// The process, when known.
    pub process: Option<String>,
    /// First seen in the window.
    pub first_seen: UnixSecs,
    /// Last seen in the window.
    pub last_seen: UnixSecs,
    /// Times seen in the window.
    pub count: u64,
    /// True for the one-off report that an installed item is gone (see
    /// [`Spool::record_inventory`]).
    pub removed: bool,
    /// Risk flags of an `mcp_server` record ([`aiscout_wire::McpFlag`] wire names, sorted);
    /// empty otherwise. Not part of the aggregation key: the latest record's flags win.
    pub flags: Vec<String>,
}

/// One installed item as the spool remembers it between inventory views: the key a removal is
/// detected by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Installed {
    /// Catalog product id.
    pub product: String,
    /// Indicator kind (one that [`SightingKind::is_installed`]).
    pub kind: SightingKind,
    /// The matched value.
    pub value: String,
    /// The OS user as reported (possibly pseudonymised); `None` for machine-wide items.
    pub user: Option<String>,
}

/// A complete inventory view to store: its sightings, and every installed item it saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryView {
    /// Sightings to record as [`Spool::record`] does.
    pub records: Vec<Record>,
    /// Every installed item present now: the whole set, not a change.
    pub installed: BTreeSet<Installed>,
    /// When the view was taken: first and last seen of removal sightings.
    pub at: UnixSecs,
    /// Start of the aggregation window `at` falls in.
    pub window: UnixSecs,
}

/// What [`Spool::record_inventory`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InventoryOutcome {
    /// Sightings the size cap evicted.
    pub evicted: u64,
    /// Items reported as removed.
    pub removed: u64,
    /// Items new since the previous view (installed, or installed again after a removal).
    pub added: u64,
}

/// The items of `previous` that are not in `current` (removed), and those of `current` that are
/// not in `previous` (added), each in key order.
pub fn diff_installed<'a>(
    previous: &'a BTreeSet<Installed>,
    current: &'a BTreeSet<Installed>,
) -> (Vec<&'a Installed>, Vec<&'a Installed>) {
    (previous.difference(current).collect(), current.difference(previous).collect())
}

impl Installed {
    /// The sighting that reports this item gone, detected at `at` in the window starting at
    /// `window`.
    pub fn removal(&self, at: UnixSecs, window: UnixSecs) -> Record {
        Record {
            window,
            product: self.product.clone(),
            kind: self.kind,
            value: self.value.clone(),
            user: self.user.clone(),
            process: None,
            first_seen: at,
            last_seen: at,
            count: 1,
            removed: true,
            flags: Vec::new(),
        }
    }
}

/// A batch ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Stable across retries and restarts.
    pub id: String,
    /// The rows, oldest window first.
    pub records: Vec<Record>,
    /// Sightings evicted by the size cap and not yet reported.
    pub evicted: u64,
    /// Sightings dropped before reaching the spool and not yet reported.
    pub dropped: u64,
}

/// The spool's gauges, for the heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Rows waiting (sent or not).
    pub rows: u64,
    /// Bytes in use.
    pub bytes: u64,
    /// Sightings evicted and not yet reported.
    pub evicted: u64,
    /// Sightings dropped and not yet reported.
    pub dropped: u64,
}

/// Bytes of the reserve file kept beside the spool so that an acknowledgement can be written
/// on a full disk (see the module doc).
pub const RESERVE_BYTES: u64 = 1024 * 1024;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The reserve file could not be written whole, so no new sightings are stored.
    #[error("no room beside spool database {path} for its {RESERVE_BYTES}-byte reserve: {error}")]
    NoRoom {
        /// The spool file.
        path: PathBuf,
        /// The IO error.
        error: std::io::Error,
    },
    /// SQLite refused an operation.
    // The cause is in the message and not returned from `source()` (logs print only the
    // message), so a report with the whole chain names it once.
    #[error("spool database {path}: {error}")]
    Sqlite {
        /// The spool file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
    /// The corrupt spool could not be moved aside.
    #[error("cannot move corrupt spool {path} aside: {error}")]
    MoveAside {
        /// The spool file.
        path: PathBuf,
        /// The IO error.
        error: std::io::Error,
    },
}

impl SpoolError {
    /// Whether the storage failed (a full disk, an IO error, a file that cannot be opened)
    /// rather than the data: worth retrying later, after a pause, never a reason to move the
    /// spool aside.
    pub fn is_storage(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            SpoolError::NoRoom { .. } | SpoolError::MoveAside { .. } => true,
            SpoolError::Sqlite { error, .. } => matches!(
                error.sqlite_error_code(),
                Some(
                    C::DiskFull
                        | C::SystemIoFailure
                        | C::CannotOpen
                        | C::ReadOnly
                        | C::PermissionDenied
                        | C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::OutOfMemory
                )
            ),
        }
    }

    /// Whether the disk is full (or failed a write): the error a released reserve can help.
    fn is_full(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            SpoolError::Sqlite { error, .. } => matches!(
                error.sqlite_error_code(),
                Some(C::DiskFull | C::SystemIoFailure | C::CannotOpen)
            ),
            SpoolError::NoRoom { .. } | SpoolError::MoveAside { .. } => false,
        }
    }
}

/// The reserve file of the spool at `path`.
fn reserve_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".reserve");
    PathBuf::from(name)
}

/// Writes the reserve file whole (a temporary file of zeros, fsync, rename) unless it is
/// there; on failure nothing of it is left.
fn restore_reserve(reserve: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    if reserve.metadata().is_ok_and(|m| m.len() == RESERVE_BYTES) {
        return Ok(());
    }
    let mut tmp = reserve.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let chunk = [0u8; 64 * 1024];
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        // Bounded: RESERVE_BYTES / 64 KiB chunks. Zeros really written, not a sparse
        // `set_len`, which would reserve nothing.
        for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, reserve)) {
        // A part of a reserve reserves nothing and takes room.
        let _removed = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    reserve: PathBuf,
    limits: SpoolLimits,
    moved_aside: Option<PathBuf>,
    salvage: Option<Salvage>,
}

/// What was read back from a corrupt spool when it was moved aside (issue 14 item 9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    /// Sightings (the sum of their counts) copied into the new spool; rows that were in a batch
    /// keep their batch id, so a batch the collector acknowledged already counts once.
    pub recovered: u64,
    /// Rows SQLite could not read, each counted as one dropped sighting (the count of an
    /// unreadable row is unknown, so this is a floor), plus the old file's unreported drops.
    pub lost: u64,
}

/// Most consecutive unreadable row ids the salvage steps over before it gives up.
const SALVAGE_MAX_MISSES: u64 = 100_000;

/// Reads what it can from the corrupt spool at `aside` into `into`, one row at a time so a
/// damaged page loses only its own rows.
#[allow(clippy::disallowed_methods)] // Reason: the spool module is the one that opens SQLite.
fn salvage(aside: &Path, into: &mut Connection) -> Salvage {
    let mut result = Salvage::default();
    // The copy moved aside, not the live spool: opening it read-write lets SQLite use its WAL.
    let Ok(old) = Connection::open(aside) else {
        result.lost = 1;
        return result;
    };
    let _timeout = old.busy_timeout(std::time::Duration::from_secs(5));
    let counter = |name: &str| -> u64 {
        old.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| r.get::<_, i64>(0))
            .map_or(0, |v| u64::try_from(v).unwrap_or(0))
    };
    result.lost = counter("dropped");
    let evicted = i64::try_from(counter("evicted")).unwrap_or(i64::MAX);
    let has_removed = old.prepare("SELECT removed FROM sightings LIMIT 0").is_ok();
    let columns = if has_removed { "removed" } else { "0" };
    let one = format!(
        "SELECT id, window_start, product, kind, value, user, process, first_seen, last_seen,
                count, batch_id, {columns}
         FROM sightings WHERE id > ?1 ORDER BY id LIMIT 1"
    );
    let max_id: Option<i64> =
        old.query_row("SELECT max(id) FROM sightings", [], |r| r.get(0)).ok().flatten();
    let Ok(tx) = into.transaction() else { return result };
    let mut last = i64::MIN;
    let mut misses: u64 = 0;
    // Bounded: every step moves `last` forward; consecutive misses are capped.
    while misses < SALVAGE_MAX_MISSES {
        let row = old.query_row(&one, [last], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                (
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ),
                (r.get::<_, i64>(7)?, r.get::<_, i64>(8)?, r.get::<_, i64>(9)?),
                r.get::<_, Option<String>>(10)?,
                r.get::<_, bool>(11)?,
            ))
        });
        match row {
            Ok((
                id,
                (window, product, kind, value, user, process),
                (first, lastseen, count),
                batch,
                removed,
            )) => {
                misses = 0;
                last = id;
                let stored = tx.execute(
                    "INSERT INTO sightings (window_start, product, kind, value, user, process,
                        first_seen, last_seen, count, batch_id, removed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (window_start, product, kind, value, user, process, removed)
                        WHERE batch_id IS NULL
                     DO UPDATE SET count = count + excluded.count",
                    params![
                        window, product, kind, value, user, process, first, lastseen, count, batch,
                        removed
                    ],
                );
                if stored.is_ok() {
                    result.recovered =
                        result.recovered.saturating_add(u64::try_from(count).unwrap_or(0));
                } else {
                    result.lost = result.lost.saturating_add(1);
                }
            }
            Err(rusqlite::Error::QueryReturnedNoRows) => break,
            Err(_) => {
                // A damaged page: this id is lost; try the next.
                misses += 1;
                result.lost = result.lost.saturating_add(1);
                last = last.saturating_add(1).max(0);
                if max_id.is_some_and(|m| last >= m) {
                    break;
                }
            }
        }
    }
    // The batches the salvaged rows belong to, so they are sent again under their own ids.
    if let Ok(mut stmt) = old.prepare("SELECT batch_id, created, evicted, dropped FROM batches") {
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        });
        if let Ok(rows) = rows {
            for (batch, created, evicted, dropped) in rows.flatten() {
                let _kept = tx.execute(
                    "INSERT OR IGNORE INTO batches (batch_id, created, evicted, dropped)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![batch, created, evicted, dropped],
                );
            }
        }
    }
    // A salvaged row whose batch row is lost is sent again in a new batch.
    let _orphans = tx.execute(
        "UPDATE sightings SET batch_id = NULL
         WHERE batch_id IS NOT NULL AND batch_id NOT IN (SELECT batch_id FROM batches)",
        [],
    );
    let lost = i64::try_from(result.lost).unwrap_or(i64::MAX);
    let _counted =
        tx.execute("UPDATE counters SET value = value + ?1 WHERE name = 'dropped'", [lost]);
    let _counted =
        tx.execute("UPDATE counters SET value = value + ?1 WHERE name = 'evicted'", [evicted]);
    if tx.commit().is_err() {
        result.lost = result.lost.saturating_add(result.recovered);
        result.recovered = 0;
    }
    result
}

/// Schema version 1, as the first agents created it (`IF NOT EXISTS`: those files already hold
/// it, with `user_version` 1).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS sightings (
    id INTEGER PRIMARY KEY,
    window_start INTEGER NOT NULL,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    user TEXT NOT NULL,
    process TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    batch_id TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS sightings_unsent
    ON sightings (window_start, product, kind, value, user, process) WHERE batch_id IS NULL;
CREATE INDEX IF NOT EXISTS sightings_batch ON sightings (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    evicted INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('evicted', 0), ('dropped', 0);
";

/// Version 2: removal sightings (`removed` joins the aggregation key, so a removal never merges
/// with a presence sighting of the same window) and the last reported installed set.
const SCHEMA_V2: &str = "
ALTER TABLE sightings ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
DROP INDEX sightings_unsent;
CREATE UNIQUE INDEX sightings_unsent
    ON sightings (window_start, product, kind, value, user, process, removed)
    WHERE batch_id IS NULL;
CREATE TABLE installed (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (product, kind, value, user)
) WITHOUT ROWID;
";

/// Version 3: risk flags of MCP server sightings (issue 17), wire names joined with `,`. Not
/// in the aggregation key: a later record of the same unsent row replaces them. A row salvaged
/// from a corrupt file comes back without them, and the next inventory record brings them.
const SCHEMA_V3: &str = "ALTER TABLE sightings ADD COLUMN flags TEXT NOT NULL DEFAULT '';";

/// The migrations in order: (version reached, SQL). A file at version `v` runs those above `v`,
/// each in its own transaction together with the `user_version` bump.
pub const MIGRATIONS: &[(i64, &str)] = &[(1, SCHEMA_V1), (2, SCHEMA_V2), (3, SCHEMA_V3)];

/// The schema version this agent writes.
pub const SCHEMA_VERSION: i64 = 3;

fn split_flags(joined: &str) -> Vec<String> {
    joined.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect()
}

/// Brings `conn` up to [`SCHEMA_VERSION`].
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (target, sql) in MIGRATIONS {
        if *target <= version {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is one of our own constants.
        tx.execute_batch(&format!("PRAGMA user_version = {target};"))?;
        tx.commit()?;
    }
    Ok(())
}

const INSERT_SIGHTING: &str = "INSERT INTO sightings
        (window_start, product, kind, value, user, process, first_seen, last_seen, count, removed,
         flags)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (window_start, product, kind, value, user, process, removed)
        WHERE batch_id IS NULL
     DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),
                   last_seen = max(last_seen, excluded.last_seen),
                   count = count + excluded.count,
                   flags = excluded.flags";

/// Adds `records` inside `tx`, aggregating with unsent rows of the same key.
fn insert_records(tx: &Transaction<'_>, records: &[Record]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare(INSERT_SIGHTING)?;
    for r in records {
        stmt.execute(params![
            r.window,
            r.product,
            r.kind,
            r.value,
            r.user.as_deref().unwrap_or(""),
            r.process.as_deref().unwrap_or(""),
            r.first_seen,
            r.last_seen,
            i64::try_from(r.count).unwrap_or(i64::MAX),
            r.removed,
            r.flags.join(","),
        ])?;
    }
    Ok(())
}

/// The stored kind name, or `None` for one this agent does not know: a row written by a
/// newer agent before a downgrade. Such a row is left out (never sent, and deleted with its
/// batch), as the upload used to skip it, rather than stopping every later batch.
fn known_kind(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<SightingKind>> {
    Ok(SightingKind::parse(&r.get::<_, String>(column)?))
}

fn read_installed(conn: &Connection) -> rusqlite::Result<BTreeSet<Installed>> {
    let mut stmt = conn.prepare("SELECT product, kind, value, user FROM installed")?;
    let rows = stmt.query_map([], |r| {
        let Some(kind) = known_kind(r, 1)? else { return Ok(None) };
        let user: String = r.get(3)?;
        Ok(Some(Installed {
            product: r.get(0)?,
            kind,
            value: r.get(2)?,
            user: (!user.is_empty()).then_some(user),
        }))
    })?;
    rows.filter_map(Result::transpose).collect()
}

impl Spool {
    /// Opens (or creates) the spool at `path`. A corrupt file is moved aside and replaced;
    /// [`Spool::moved_aside`] then names where it went.
    ///
    /// # Errors
    /// SQLite errors on the fresh file, or a failure to move the corrupt one.
    pub fn open(path: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let first = match Self::open_checked(path, limits) {
            // Opening a WAL file creates its shared-memory file: on a full disk the reserve
            // makes the room.
            Err(e) if e.is_full() && std::fs::remove_file(reserve_path(path)).is_ok() => {
                Self::open_checked(path, limits)
            }
            other => other,
        };
        match first {
            Ok(spool) => Ok(spool),
            // A full disk or an IO error says nothing about the file: keep it where it is.
            Err(e) if e.is_storage() => Err(e),
            Err(_) if path.exists() => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
                std::fs::rename(path, &aside)
                    .map_err(|error| SpoolError::MoveAside { path: path.to_path_buf(), error })?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", path.display()));
                    if side.exists() {
                        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                        std::fs::rename(&side, &to)
                            .map_err(|error| SpoolError::MoveAside { path: side.clone(), error })?;
                    }
                }
                let mut spool = Self::open_checked(path, limits)?;
                spool.salvage = Some(salvage(&aside, &mut spool.conn));
                spool.moved_aside = Some(aside);
                Ok(spool)
            }
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::disallowed_methods)] // Reason: the spool module is the one that opens SQLite.
    fn open_checked(path: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let err = |error| SpoolError::Sqlite { path: path.to_path_buf(), error };
        // The one place the agent opens SQLite: WAL, full sync, a busy timeout.
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(err)?;
        if check != "ok" {
            return Err(err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(check),
            )));
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(err)?;
        migrate(&mut conn).map_err(err)?;
        let reserve = reserve_path(path);
        // Best effort: without room the reserve is put back before the next write.
        let _reserved = restore_reserve(&reserve);
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            reserve,
            limits,
            moved_aside: None,
            salvage: None,
        })
    }

    fn err(&self, error: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite { path: self.path.clone(), error }
    }

    /// Where a corrupt spool was moved when this one was opened.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    /// What was read back from the corrupt spool moved aside at open (see [`Salvage`]); the
    /// lost rows are already counted as dropped in this spool, so the next batch reports them.
    pub fn salvaged(&self) -> Option<Salvage> {
        self.salvage
    }

    /// Adds sightings in one transaction, aggregating with unsent rows of the same window and
    /// key, then enforces the size cap. Returns how many sightings the cap evicted.
    ///
    /// # Errors
    /// SQLite errors; nothing of the call is kept then.
    pub fn record(&mut self, records: &[Record]) -> Result<u64, SpoolError> {
        self.ensure_reserve()?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
        insert_records(&tx, records)
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
        tx.commit().map_err(|e| self.err(e))?;
        self.enforce_cap()
    }

    /// Stores one complete inventory view in one transaction: its sightings, a removal
    /// sighting (count 1, first and last seen `view.at`) for every installed item of the last
    /// stored view that `view.installed` lacks, and `view.installed` as the new last view. An
    /// item that comes back after a removal is simply new again. Then enforces the size cap.
    ///
    /// # Errors
    /// SQLite errors; nothing of the call is kept then, and the next view reports the same
    /// removals.
    pub fn record_inventory(
        &mut self,
        view: &InventoryView,
    ) -> Result<InventoryOutcome, SpoolError> {
        self.ensure_reserve()?;
        let path = self.path.clone();
        let err = move |error| SpoolError::Sqlite { path: path.clone(), error };
        let tx = self.conn.transaction().map_err(&err)?;
        let previous = read_installed(&tx).map_err(&err)?;
        let (removed, added) = diff_installed(&previous, &view.installed);
        let removals: Vec<Record> =
            removed.iter().map(|item| item.removal(view.at, view.window)).collect();
        insert_records(&tx, &view.records).map_err(&err)?;
        insert_records(&tx, &removals).map_err(&err)?;
        for (sql, items) in [
            (
                "DELETE FROM installed WHERE product = ?1 AND kind = ?2 AND value = ?3 AND user = ?4",
                &removed,
            ),
            (
                "INSERT OR IGNORE INTO installed (product, kind, value, user) VALUES (?1, ?2, ?3, ?4)",
                &added,
            ),
        ] {
            let mut stmt = tx.prepare(sql).map_err(&err)?;
            for item in items {
                stmt.execute(params![
                    item.product,
                    item.kind,
                    item.value,
                    item.user.as_deref().unwrap_or("")
                ])
                .map_err(&err)?;
            }
        }
        let outcome = InventoryOutcome {
            evicted: 0,
            removed: removed.len() as u64,
            added: added.len() as u64,
        };
        tx.commit().map_err(&err)?;
        let evicted = self.enforce_cap()?;
        Ok(InventoryOutcome { evicted, ..outcome })
    }

    /// The installed items of the last stored inventory view.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn installed(&self) -> Result<BTreeSet<Installed>, SpoolError> {
        read_installed(&self.conn).map_err(|e| self.err(e))
    }

    /// Puts the reserve file back when it is missing; new rows are stored only with it whole.
    fn ensure_reserve(&self) -> Result<(), SpoolError> {
        restore_reserve(&self.reserve)
            .map_err(|error| SpoolError::NoRoom { path: self.path.clone(), error })
    }

    /// Runs `op`; when it fails because the disk is full and the reserve is there, deletes
    /// the reserve to make room and runs it once more. Says whether the reserve was used.
    fn with_reserve<T>(
        &mut self,
        op: impl Fn(&mut Self) -> Result<T, SpoolError>,
    ) -> Result<(T, bool), SpoolError> {
        match op(self) {
            Err(e) if e.is_full() && std::fs::remove_file(&self.reserve).is_ok() => {
                op(self).map(|v| (v, true))
            }
            other => other.map(|v| (v, false)),
        }
    }

    /// Whether the reserve file is whole (for tests and status).
    pub fn has_reserve(&self) -> bool {
        self.reserve.metadata().is_ok_and(|m| m.len() == RESERVE_BYTES)
    }

    /// Counts sightings dropped before they reached the spool (a full queue upstream).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count_dropped(&mut self, n: u64) -> Result<(), SpoolError> {
        self.bump("dropped", n)
    }

    fn bump(&self, counter: &str, n: u64) -> Result<(), SpoolError> {
        self.conn
            .execute(
                "UPDATE counters SET value = value + ?1 WHERE name = ?2",
                params![i64::try_from(n).unwrap_or(i64::MAX), counter],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn bytes_in_use(&self) -> Result<u64, SpoolError> {
        let pages: i64 =
            self.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let size: i64 =
            self.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(u64::try_from(pages.saturating_sub(free).saturating_mul(size)).unwrap_or(0))
    }

    /// Evicts the oldest unsent rows (a tenth of them at a time) until the spool fits its cap
    /// or only in-flight rows are left.
    fn enforce_cap(&mut self) -> Result<u64, SpoolError> {
        let mut evicted_total: u64 = 0;
        // Each round removes at least one row or stops, so rows bound the rounds; 64 rounds of
        // a tenth each empty any spool.
        for _ in 0..64 {
            if self.bytes_in_use()? <= self.limits.max_bytes {
                break;
            }
            let unsent: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sightings WHERE batch_id IS NULL", [], |r| {
                    r.get(0)
                })
                .map_err(|e| self.err(e))?;
            if unsent == 0 {
                break;
            }
            let n = (unsent / 10).max(1);
            let tx = self
                .conn
                .transaction()
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
            let sightings: i64 = tx
                .query_row(
                    "SELECT coalesce(sum(count), 0) FROM (SELECT count FROM sightings
                     WHERE batch_id IS NULL ORDER BY window_start, id LIMIT ?1)",
                    [n],
                    |r| r.get(0),
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
            tx.execute(
                "DELETE FROM sightings WHERE id IN (SELECT id FROM sightings
                 WHERE batch_id IS NULL ORDER BY window_start, id LIMIT ?1)",
                [n],
            )
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
            tx.execute(
                "UPDATE counters SET value = value + ?1 WHERE name = 'evicted'",
                [sightings],
            )
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
            tx.commit().map_err(|e| self.err(e))?;
            evicted_total = evicted_total.saturating_add(u64::try_from(sightings).unwrap_or(0));
        }
        Ok(evicted_total)
    }

    /// The batch to send: the one already in flight (same id, same rows), or a new one made of
    /// the oldest unsent rows. `None` when there is nothing to send.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, SpoolError> {
        // Cutting a batch writes (the batch row, the rows' batch id): on a full disk it may
        // use the reserve, since sending it is how room comes back.
        self.with_reserve(Self::cut_batch).map(|(batch, _)| batch)
    }

    fn cut_batch(&mut self) -> Result<Option<Batch>, SpoolError> {
        let in_flight: Option<String> = self
            .conn
            .query_row("SELECT batch_id FROM batches ORDER BY created, batch_id LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let id = match in_flight {
            Some(id) => id,
            None => {
                let unsent: i64 = self
                    .conn
                    .query_row("SELECT count(*) FROM sightings WHERE batch_id IS NULL", [], |r| {
                        r.get(0)
                    })
                    .map_err(|e| self.err(e))?;
                let (evicted, dropped) = self.counters()?;
                if unsent == 0 && evicted == 0 && dropped == 0 {
                    return Ok(None);
                }
                let id = new_batch_id();
                let tx = self
                    .conn
                    .transaction()
                    .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
                tx.execute(
                    "INSERT INTO batches (batch_id, created, evicted, dropped)
                     VALUES (?1, unixepoch(), ?2, ?3)",
                    params![
                        id,
                        i64::try_from(evicted).unwrap_or(i64::MAX),
                        i64::try_from(dropped).unwrap_or(i64::MAX)
                    ],
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
                tx.execute(
                    "UPDATE sightings SET batch_id = ?1 WHERE id IN (SELECT id FROM sightings
                     WHERE batch_id IS NULL ORDER BY window_start, id LIMIT ?2)",
                    params![id, i64::try_from(self.limits.batch_rows).unwrap_or(i64::MAX)],
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
                tx.commit().map_err(|e| self.err(e))?;
                id
            }
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT window_start, product, kind, value, user, process, first_seen, last_seen,
                        count, removed, flags
                 FROM sightings WHERE batch_id = ?1 ORDER BY window_start, id",
            )
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
        let records = stmt
            .query_map([&id], |r| {
                let Some(kind) = known_kind(r, 2)? else { return Ok(None) };
                let user: String = r.get(4)?;
                let process: String = r.get(5)?;
                let count: i64 = r.get(8)?;
                Ok(Some(Record {
                    window: r.get(0)?,
                    product: r.get(1)?,
                    kind,
                    value: r.get(3)?,
                    user: (!user.is_empty()).then_some(user),
                    process: (!process.is_empty()).then_some(process),
                    first_seen: r.get(6)?,
                    last_seen: r.get(7)?,
                    count: u64::try_from(count).unwrap_or(0),
                    removed: r.get(9)?,
                    flags: split_flags(&r.get::<_, String>(10)?),
                }))
            })
            .and_then(|rows| rows.filter_map(Result::transpose).collect::<Result<Vec<_>, _>>())
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
        drop(stmt);
        let (evicted, dropped): (i64, i64) = self
            .conn
            .query_row("SELECT evicted, dropped FROM batches WHERE batch_id = ?1", [&id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.err(e))?;
        let (evicted, dropped) =
            (u64::try_from(evicted).unwrap_or(0), u64::try_from(dropped).unwrap_or(0));
        Ok(Some(Batch { id, records, evicted, dropped }))
    }

    fn counters(&self) -> Result<(u64, u64), SpoolError> {
        let get = |name: &str| -> Result<u64, SpoolError> {
            let v: i64 = self
                .conn
                .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok((get("evicted")?, get("dropped")?))
    }

    /// The collector acknowledged `batch`: delete its rows and the counters it reported.
    /// Acknowledging an unknown or already acknowledged batch is a no-op.
    ///
    /// # Errors
    /// SQLite errors; the batch stays in flight then and is sent again.
    pub fn ack(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        let ((), used_reserve) = self.with_reserve(|s| s.delete_batch(batch))?;
        if used_reserve {
            // The deletes freed pages inside the file, not on the disk; a truncating
            // checkpoint copies them home and gives the WAL's room back. A failure leaves the
            // WAL as it was, which is still a consistent spool.
            let _checkpointed = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
        Ok(())
    }

    fn delete_batch(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
        let known = tx
            .execute("DELETE FROM batches WHERE batch_id = ?1", [&batch.id])
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
        if known > 0 {
            tx.execute("DELETE FROM sightings WHERE batch_id = ?1", [&batch.id])
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
            for (name, n) in [("evicted", batch.evicted), ("dropped", batch.dropped)] {
                tx.execute(
                    "UPDATE counters SET value = max(0, value - ?1) WHERE name = ?2",
                    params![i64::try_from(n).unwrap_or(i64::MAX), name],
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), error: e })?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The spool's gauges.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let rows: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sightings", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let (evicted, dropped) = self.counters()?;
        Ok(SpoolStats {
            rows: u64::try_from(rows).unwrap_or(0),
            bytes: self.bytes_in_use()?,
            evicted,
            dropped,
        })
    }
}

/// What one product of one indicator kind holds in the spool right now (`aiscout-agent
/// status`): counts only, never the matched values or users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Indicator kind as stored (`dns`, `tls_sni`, `app`, ...). Kept as text, not a
    /// [`SightingKind`]: `status` shows every row the file holds, also one of a kind a newer
    /// agent wrote before a downgrade.
    pub kind: String,
    /// Catalog product id.
    pub product: String,
    /// Aggregated rows waiting to be sent.
    pub rows: u64,
    /// Of those rows, how many are in a batch sent and not yet acknowledged.
    pub in_flight: u64,
    /// Times seen (the sum of the rows' counts).
    pub sightings: u64,
}

/// The spool's contents by kind and product, with its drop counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// One entry per (kind, product), sorted by kind then product.
    pub held: Vec<Held>,
    /// Sightings evicted by the size cap and not yet reported.
    pub evicted: u64,
    /// Sightings dropped before the spool and not yet reported.
    pub dropped: u64,
}

/// Reads what the spool at `path` holds without changing it: opened read-only, no migration,
/// no corruption handling (the daemon may be running and owns those). `None` when there is no
/// spool file yet.
///
/// # Errors
/// SQLite errors (an unreadable file, a schema this agent does not know).
#[allow(clippy::disallowed_methods)] // Reason: the spool module is the one that opens SQLite.
pub fn contents(path: &Path) -> Result<Option<Contents>, SpoolError> {
    if !path.exists() {
        return Ok(None);
    }
    let err = |error| SpoolError::Sqlite { path: path.to_path_buf(), error };
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
    let mut stmt = conn
        .prepare(
            "SELECT kind, product, count(*), count(batch_id), coalesce(sum(count), 0)
             FROM sightings GROUP BY kind, product ORDER BY kind, product",
        )
        .map_err(err)?;
    let as_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    let held = stmt
        .query_map([], |r| {
            Ok(Held {
                kind: r.get(0)?,
                product: r.get(1)?,
                rows: as_u64(r.get(2)?),
                in_flight: as_u64(r.get(3)?),
                sightings: as_u64(r.get(4)?),
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let counter = |name: &str| -> Result<u64, SpoolError> {
        let v: i64 = conn
            .query_row(
                "SELECT coalesce(max(value), 0) FROM counters WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(err)?;
        Ok(as_u64(v))
    };
    let (evicted, dropped) = (counter("evicted")?, counter("dropped")?);
    Ok(Some(Contents { held, evicted, dropped }))
}

/// 128 random bits as hex: unique per batch without coordination.
fn new_batch_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    let rng = ring::rand::SystemRandom::new();
    if rng.fill(&mut bytes).is_err() {
        // Without randomness, time and process id still make collisions practically
        // impossible for one agent, which is all a batch id must be unique within.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    aiscout_signatures::hex::encode(&bytes)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Reason: tests open and read their own fixtures.
mod tests {
    use super::*;

    fn rec(value: &str, window: i64, ts: i64) -> Record {
        Record {
            window: UnixSecs(window),
            product: "openai.chatgpt".into(),
            kind: SightingKind::Dns,
            value: value.into(),
            user: None,
            process: None,
            first_seen: UnixSecs(ts),
            last_seen: UnixSecs(ts),
            count: 1,
            removed: false,
            flags: Vec::new(),
        }
    }

    #[test]
    fn sightings_aggregate_per_window_and_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s =
            Spool::open(&dir.path().join("spool.db"), SpoolLimits::default()).expect("open");
        s.record(&[
            rec("chatgpt.com", 0, 10),
            rec("chatgpt.com", 0, 5),
            rec("chatgpt.com", 3600, 3700),
        ])
        .expect("record");
        let b = s.next_batch().expect("batch").expect("some");
        assert_eq!(b.records.len(), 2);
        assert_eq!(
            (b.records[0].first_seen, b.records[0].last_seen, b.records[0].count),
            (UnixSecs(5), UnixSecs(10), 2)
        );
    }

    #[test]
    fn batch_is_resent_until_acked_and_frozen_rows_are_not_merged() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool.db");
        let mut s = Spool::open(&path, SpoolLimits::default()).expect("open");
        s.record(&[rec("a.openai.com", 0, 1)]).expect("record");
        let b1 = s.next_batch().expect("batch").expect("some");
        // New sightings of the same key after the batch was cut go to a new row.
        s.record(&[rec("a.openai.com", 0, 2)]).expect("record");
        drop(s);
        let mut s = Spool::open(&path, SpoolLimits::default()).expect("reopen");
        let again = s.next_batch().expect("batch").expect("some");
        assert_eq!(again, b1, "the same batch id and rows after a restart");
        s.ack(&again).expect("ack");
        s.ack(&again).expect("a second ack is a no-op");
        let b2 = s.next_batch().expect("batch").expect("some");
        assert_ne!(b2.id, b1.id);
        assert_eq!(b2.records.len(), 1);
        assert_eq!(b2.records[0].first_seen, UnixSecs(2));
        s.ack(&b2).expect("ack");
        assert_eq!(s.next_batch().expect("batch"), None);
    }

    fn item(value: &str, user: Option<&str>) -> Installed {
        Installed {
            product: "anysphere.cursor".into(),
            kind: SightingKind::App,
            value: value.into(),
            user: user.map(str::to_owned),
        }
    }

    fn view(items: &[Installed], at: i64) -> InventoryView {
        InventoryView {
            records: items
                .iter()
                .map(|i| Record {
                    window: UnixSecs(0),
                    product: i.product.clone(),
                    kind: i.kind,
                    value: i.value.clone(),
                    user: i.user.clone(),
                    process: None,
                    first_seen: UnixSecs(at),
                    last_seen: UnixSecs(at),
                    count: 1,
                    removed: false,
                    flags: Vec::new(),
                })
                .collect(),
            installed: items.iter().cloned().collect(),
            at: UnixSecs(at),
            window: UnixSecs(0),
        }
    }

    fn all_rows(s: &mut Spool) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(b) = s.next_batch().expect("batch") {
            out.extend(b.records.iter().cloned());
            s.ack(&b).expect("ack");
        }
        out
    }

    #[test]
    fn diff_of_installed_sets_names_removed_and_added_items() {
        let a = item("a", None);
        let b = item("b", Some("alice"));
        let b_bob = item("b", Some("bob"));
        let previous: BTreeSet<Installed> = [a.clone(), b.clone()].into();
        let current: BTreeSet<Installed> = [b, b_bob.clone()].into();
        let (removed, added) = diff_installed(&previous, &current);
        assert_eq!(removed, [&a]);
        assert_eq!(added, [&b_bob], "the same value for another user is another item");
        let (removed, added) = diff_installed(&current, &current);
        assert!(removed.is_empty() && added.is_empty());
        let empty = BTreeSet::new();
        let (removed, added) = diff_installed(&empty, &current);
        assert!(removed.is_empty());
        assert_eq!(added.len(), 2);
    }

    #[test]
    fn removal_is_reported_once_across_a_reopen_and_a_reinstall_is_new_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool.db");
        let (a, b) = (item("a", None), item("b", Some("alice")));
        let mut s = Spool::open(&path, SpoolLimits::default()).expect("open");
        let first = s.record_inventory(&view(&[a.clone(), b.clone()], 10)).expect("view");
        assert_eq!((first.added, first.removed), (2, 0));
        assert!(all_rows(&mut s).iter().all(|r| !r.removed));
        drop(s);

        // `b` is gone when the agent comes back.
        let mut s = Spool::open(&path, SpoolLimits::default()).expect("reopen");
        assert_eq!(s.installed().expect("installed").len(), 2, "the set survives a restart");
        let second = s.record_inventory(&view(std::slice::from_ref(&a), 20)).expect("view");
        assert_eq!((second.added, second.removed), (0, 1));
        let rows = all_rows(&mut s);
        let removals: Vec<&Record> = rows.iter().filter(|r| r.removed).collect();
        assert_eq!(removals.len(), 1, "{rows:#?}");
        assert_eq!(removals[0], &b.removal(UnixSecs(20), UnixSecs(0)));
        assert_eq!(
            (removals[0].count, removals[0].first_seen, removals[0].last_seen),
            (1, UnixSecs(20), UnixSecs(20))
        );

        // The same view again reports nothing removed.
        let third = s.record_inventory(&view(std::slice::from_ref(&a), 30)).expect("view");
        assert_eq!((third.added, third.removed), (0, 0));
        assert!(all_rows(&mut s).iter().all(|r| !r.removed));

        // Reinstalled: an ordinary sighting, and known again.
        let fourth = s.record_inventory(&view(&[a.clone(), b.clone()], 40)).expect("view");
        assert_eq!((fourth.added, fourth.removed), (1, 0));
        assert!(all_rows(&mut s).iter().all(|r| !r.removed));
        assert_eq!(s.installed().expect("installed"), [a, b].into());
    }

    #[test]
    fn removal_and_presence_of_one_key_in_one_window_stay_two_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s =
            Spool::open(&dir.path().join("spool.db"), SpoolLimits::default()).expect("open");
        let a = item("a", None);
        let mut present = view(std::slice::from_ref(&a), 5).records;
        present.push(a.removal(UnixSecs(6), UnixSecs(0)));
        s.record(&present).expect("record");
        let rows = all_rows(&mut s);
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert_eq!(rows.iter().filter(|r| r.removed).count(), 1);
    }

    /// A row of a kind this agent does not know (written by a newer agent before a downgrade)
    /// is left out of its batch and deleted with it, instead of stopping every upload.
    #[test]
    fn unknown_kind_rows_are_left_out_of_the_batch_and_acked_away() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s =
            Spool::open(&dir.path().join("spool.db"), SpoolLimits::default()).expect("open");
        s.record(&[rec("chatgpt.com", 0, 1)]).expect("record");
        s.conn
            .execute(
                "INSERT INTO sightings (window_start, product, kind, value, user, process,
                    first_seen, last_seen, count) VALUES (0, 'openai.chatgpt', 'warp_drive',
                    'chatgpt.com', '', '', 1, 2, 3)",
                [],
            )
            .expect("row");
        s.conn
            .execute(
                "INSERT INTO installed (product, kind, value, user)
                 VALUES ('anysphere.cursor', 'warp_drive', 'x', '')",
                [],
            )
            .expect("installed");
        assert!(s.installed().expect("installed").is_empty());
        let b = s.next_batch().expect("batch").expect("some");
        assert_eq!(b.records, vec![rec("chatgpt.com", 0, 1)]);
        s.ack(&b).expect("ack");
        let left: i64 =
            s.conn.query_row("SELECT count(*) FROM sightings", [], |r| r.get(0)).expect("count");
        assert_eq!(left, 0, "the unknown row went with its batch");
    }

    #[test]
    fn version_one_spool_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool.db");
        {
            let conn = Connection::open(&path).expect("sqlite");
            conn.execute_batch(SCHEMA_V1).expect("v1");
            conn.execute_batch("PRAGMA user_version = 1;").expect("version");
            conn.execute(
                "INSERT INTO sightings (window_start, product, kind, value, user, process,
                    first_seen, last_seen, count) VALUES (0, 'openai.chatgpt', 'dns',
                    'chatgpt.com', '', '', 1, 2, 3)",
                [],
            )
            .expect("row");
        }
        let mut s = Spool::open(&path, SpoolLimits::default()).expect("open migrates");
        assert!(s.moved_aside().is_none(), "a version 1 file is migrated, not replaced");
        let version: i64 =
            s.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let rows = all_rows(&mut s);
        assert_eq!(
            rows,
            vec![{
                let mut r = rec("chatgpt.com", 0, 1);
                r.last_seen = UnixSecs(2);
                r.count = 3;
                r
            }]
        );
        assert!(s.installed().expect("installed").is_empty());
    }

    /// Issue 14 item 9: a spool with a damaged page is moved aside, every row SQLite can still
    /// read is copied into the new one (an in-flight batch keeps its id), and the unreadable
    /// rows are counted as dropped for the next batch and heartbeat.
    #[test]
    fn a_corrupt_spool_is_salvaged_and_the_rest_counted_as_dropped() {
        const ROWS: u64 = 3_000;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool.db");
        let mut s = Spool::open(&path, SpoolLimits { batch_rows: 100, ..SpoolLimits::default() })
            .expect("open");
        let records: Vec<Record> =
            (0..ROWS).map(|i| rec(&format!("row-{i:05}.chatgpt.com"), 0, 1)).collect();
        s.record(&records).expect("record");
        let in_flight = s.next_batch().expect("batch").expect("some");
        s.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
        drop(s);
        // Garbage over every page holding one row's value, in the middle of the table.
        let mut bytes = std::fs::read(&path).expect("read");
        let page = 4096;
        let needle = b"row-01500.chatgpt.com";
        let hits: Vec<usize> = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| w == needle)
            .map(|(i, _)| i)
            .collect();
        assert!(!hits.is_empty());
        for at in hits {
            let start = at / page * page;
            for b in bytes.iter_mut().skip(start).take(page) {
                *b = 0x5a;
            }
        }
        std::fs::write(&path, &bytes).expect("write");

        let mut s = Spool::open(&path, SpoolLimits { batch_rows: 100, ..SpoolLimits::default() })
            .expect("open salvages");
        assert!(s.moved_aside().is_some());
        let salvage = s.salvaged().expect("salvaged");
        assert!(salvage.lost >= 1, "{salvage:?}");
        assert!(salvage.recovered >= ROWS / 2, "{salvage:?}");
        assert!(
            salvage.recovered + salvage.lost >= ROWS,
            "every row is recovered or counted: {salvage:?}"
        );
        assert_eq!(s.stats().expect("stats").rows, salvage.recovered);
        // The in-flight batch comes out first, under its own id; the loss rides with the next.
        let again = s.next_batch().expect("batch").expect("some");
        assert_eq!(again.id, in_flight.id);
        assert_eq!(again.records, in_flight.records);
        assert_eq!(s.stats().expect("stats").dropped, salvage.lost);
        s.ack(&again).expect("ack");
        let next = s.next_batch().expect("batch").expect("some");
        assert_eq!(next.dropped, salvage.lost);
    }

    /// Issue 14 item 8: without room for the reserve (a folder in its place stands in for a
    /// full disk: writing it fails), new rows are refused as a storage error and nothing is
    /// inserted, while a batch in flight can still be acknowledged; with room again the
    /// reserve comes back and rows are stored.
    #[test]
    fn without_room_for_the_reserve_rows_wait_and_acknowledgements_still_work() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool.db");
        let mut s = Spool::open(&path, SpoolLimits::default()).expect("open");
        assert!(s.has_reserve(), "the reserve is written at open");
        s.record(&[rec("a.chatgpt.com", 0, 1)]).expect("record");
        let batch = s.next_batch().expect("batch").expect("some");
        let reserve = reserve_path(&path);
        std::fs::remove_file(&reserve).expect("remove");
        std::fs::create_dir(&reserve).expect("block");
        let refused = s.record(&[rec("b.chatgpt.com", 0, 2)]).expect_err("no room");
        assert!(matches!(refused, SpoolError::NoRoom { .. }) && refused.is_storage(), "{refused}");
        assert_eq!(s.stats().expect("stats").rows, 1, "nothing inserted without the reserve");
        s.ack(&batch).expect("an acknowledgement needs no reserve");
        assert_eq!(s.stats().expect("stats").rows, 0);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "a failed reserve leaves nothing: {leftovers:?}");
        std::fs::remove_dir(&reserve).expect("unblock");
        s.record(&[rec("b.chatgpt.com", 0, 2)]).expect("record with room");
        assert!(s.has_reserve());
        assert_eq!(s.stats().expect("stats").rows, 1);
    }

    #[test]
    fn corrupt_spool_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool.db");
        std::fs::write(&path, b"this is not a sqlite database, just garbage bytes".repeat(100))
            .expect("write");
        let s = Spool::open(&path, SpoolLimits::default()).expect("open replaces");
        let aside = s.moved_aside().expect("moved").to_path_buf();
        assert!(aside.exists());
        assert!(aside.display().to_string().contains(".corrupt-"));
        assert_eq!(s.stats().expect("stats").rows, 0);
    }

    #[test]
    fn a_folder_given_as_the_spool_is_an_error_and_stays_where_it_is() {
        let dir = tempfile::tempdir().expect("tmp");
        // A folder passed as `--spool` (a typo for the state folder).
        let folder = dir.path().join("state");
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::write(folder.join("keep"), b"x").expect("write");
        let refused =
            Spool::open(&folder, SpoolLimits::default()).expect_err("a folder is refused");
        assert!(refused.to_string().contains(&folder.display().to_string()), "{refused}");
        assert!(folder.join("keep").exists(), "the folder was moved: {refused}");
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert!(moved.is_empty(), "moved aside: {moved:?}");
    }
}
