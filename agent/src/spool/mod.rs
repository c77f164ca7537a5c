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
//! - **Corruption is survivable.** A spool file that SQLite cannot open or that fails
//!   `quick_check` is moved aside (`<file>.corrupt-<unix time>`) and a fresh one started.
//!
//! On-disk format (schema version 1):
//! - `sightings`: one row per (window, product, kind, value, user, process) while the row is
//!   unsent (`batch_id` NULL), with first seen, last seen and count. A partial unique index on
//!   unsent rows makes `record` an upsert that aggregates. Once a row is assigned to a batch it
//!   is frozen; later sightings in the same window start a new row, and the collector adds
//!   the counts up.
//! - `batches`: batch ids in flight with the eviction and drop counts they report, so a restart
//!   resends the same batch, with the same id and the same content.
//! - `counters`: `evicted` and `dropped`, reset when a batch carrying them is acknowledged.
//!
//! Lifecycle: `record` → `next_batch` (assigns rows to a batch id, or returns the batch already
//! in flight) → upload → `ack` (deletes the batch's rows). Sending a batch twice is safe: the
//! collector counts a batch id once.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};

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
    /// Start of the aggregation window (Unix seconds).
    pub window: i64,
    /// Catalog product id.
    pub product: String,
    /// Indicator kind (`dns`, `tls_sni`, `app`, ...).
    pub kind: String,
    /// The matched value.
    pub value: String,
    /// The OS user (possibly pseudonymised).
    pub user: Option<String>,
    /// The process, when known.
    pub process: Option<String>,
    /// First seen in the window (Unix seconds).
    pub first_seen: i64,
    /// Last seen in the window (Unix seconds).
    pub last_seen: i64,
    /// Times seen in the window.
    pub count: u64,
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

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// SQLite refused an operation.
    #[error("spool database {path}: {source}")]
    Sqlite {
        /// The spool file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The corrupt spool could not be moved aside.
    #[error("cannot move corrupt spool {path} aside: {source}")]
    MoveAside {
        /// The spool file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    limits: SpoolLimits,
    moved_aside: Option<PathBuf>,
}

const SCHEMA: &str = "
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
PRAGMA user_version = 1;
";

impl Spool {
    /// Opens (or creates) the spool at `path`. A corrupt file is moved aside and replaced;
    /// [`Spool::moved_aside`] then names where it went.
    ///
    /// # Errors
    /// SQLite errors on the fresh file, or a failure to move the corrupt one.
    pub fn open(path: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        match Self::open_checked(path, limits) {
            Ok(spool) => Ok(spool),
            Err(_) if path.exists() => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
                std::fs::rename(path, &aside)
                    .map_err(|source| SpoolError::MoveAside { path: path.to_path_buf(), source })?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", path.display()));
                    if side.exists() {
                        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                        std::fs::rename(&side, &to).map_err(|source| SpoolError::MoveAside {
                            path: side.clone(),
                            source,
                        })?;
                    }
                }
                let mut spool = Self::open_checked(path, limits)?;
                spool.moved_aside = Some(aside);
                Ok(spool)
            }
            Err(e) => Err(e),
        }
    }

    fn open_checked(path: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let err = |source| SpoolError::Sqlite { path: path.to_path_buf(), source };
        // The one place the agent opens SQLite: WAL, full sync, a busy timeout.
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(err)?;
        if check != "ok" {
            return Err(err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(check),
            )));
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self { conn, path: path.to_path_buf(), limits, moved_aside: None })
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite { path: self.path.clone(), source }
    }

    /// Where a corrupt spool was moved when this one was opened.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    /// Adds sightings in one transaction, aggregating with unsent rows of the same window and
    /// key, then enforces the size cap. Returns how many sightings the cap evicted.
    ///
    /// # Errors
    /// SQLite errors; nothing of the call is kept then.
    pub fn record(&mut self, records: &[Record]) -> Result<u64, SpoolError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO sightings
                        (window_start, product, kind, value, user, process, first_seen, last_seen, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (window_start, product, kind, value, user, process)
                        WHERE batch_id IS NULL
                     DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),
                                   last_seen = max(last_seen, excluded.last_seen),
                                   count = count + excluded.count",
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
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
                ])
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.enforce_cap()
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
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
            let sightings: i64 = tx
                .query_row(
                    "SELECT coalesce(sum(count), 0) FROM (SELECT count FROM sightings
                     WHERE batch_id IS NULL ORDER BY window_start, id LIMIT ?1)",
                    [n],
                    |r| r.get(0),
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
            tx.execute(
                "DELETE FROM sightings WHERE id IN (SELECT id FROM sightings
                 WHERE batch_id IS NULL ORDER BY window_start, id LIMIT ?1)",
                [n],
            )
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
            tx.execute(
                "UPDATE counters SET value = value + ?1 WHERE name = 'evicted'",
                [sightings],
            )
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
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
                    .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
                tx.execute(
                    "INSERT INTO batches (batch_id, created, evicted, dropped)
                     VALUES (?1, unixepoch(), ?2, ?3)",
                    params![
                        id,
                        i64::try_from(evicted).unwrap_or(i64::MAX),
                        i64::try_from(dropped).unwrap_or(i64::MAX)
                    ],
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
                tx.execute(
                    "UPDATE sightings SET batch_id = ?1 WHERE id IN (SELECT id FROM sightings
                     WHERE batch_id IS NULL ORDER BY window_start, id LIMIT ?2)",
                    params![id, i64::try_from(self.limits.batch_rows).unwrap_or(i64::MAX)],
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
                tx.commit().map_err(|e| self.err(e))?;
                id
            }
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT window_start, product, kind, value, user, process, first_seen, last_seen, count
                 FROM sightings WHERE batch_id = ?1 ORDER BY window_start, id",
            )
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
        let records = stmt
            .query_map([&id], |r| {
                let user: String = r.get(4)?;
                let process: String = r.get(5)?;
                let count: i64 = r.get(8)?;
                Ok(Record {
                    window: r.get(0)?,
                    product: r.get(1)?,
                    kind: r.get(2)?,
                    value: r.get(3)?,
                    user: (!user.is_empty()).then_some(user),
                    process: (!process.is_empty()).then_some(process),
                    first_seen: r.get(6)?,
                    last_seen: r.get(7)?,
                    count: u64::try_from(count).unwrap_or(0),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
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
        let tx = self
            .conn
            .transaction()
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
        let known = tx
            .execute("DELETE FROM batches WHERE batch_id = ?1", [&batch.id])
            .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
        if known > 0 {
            tx.execute("DELETE FROM sightings WHERE batch_id = ?1", [&batch.id])
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
            for (name, n) in [("evicted", batch.evicted), ("dropped", batch.dropped)] {
                tx.execute(
                    "UPDATE counters SET value = max(0, value - ?1) WHERE name = ?2",
                    params![i64::try_from(n).unwrap_or(i64::MAX), name],
                )
                .map_err(|e| SpoolError::Sqlite { path: self.path.clone(), source: e })?;
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
mod tests {
    use super::*;

    fn rec(value: &str, window: i64, ts: i64) -> Record {
        Record {
            window,
            product: "openai.chatgpt".into(),
            kind: "dns".into(),
            value: value.into(),
            user: None,
            process: None,
            first_seen: ts,
            last_seen: ts,
            count: 1,
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
            (5, 10, 2)
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
        assert_eq!(b2.records[0].first_seen, 2);
        s.ack(&b2).expect("ack");
        assert_eq!(s.next_batch().expect("batch"), None);
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
}
