//! SQLite online backups: a consistent copy of a live database, checked before it is named.

use std::path::Path;
use std::time::Duration;

use super::{open, open_with};
use crate::store::StoreError;

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
        move |error| StoreError::Io { path, error }
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
    for file in crate::store::files::sqlite_files(&partial) {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&file)(e)),
            _ => {}
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::store::files::FILE_MODE)
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
            for file in crate::store::files::sqlite_files(&partial) {
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
