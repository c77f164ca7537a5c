//! Permissions of the collector's files (issue 14): the data folder (and the upload folder in
//! it) is kept 0700 and the SQLite database, its write-ahead log and shared-memory file 0600,
//! since they hold node-key and token hashes, sessions and who uses what. A folder or file
//! found more open than that is tightened, with a warning naming it; one found tighter is left
//! alone.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the data folder and the folders in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the database files.
pub const FILE_MODE: u32 = 0o600;

/// Sets `path`'s permission bits to `mode` when it grants anything `mode` does not.
fn restrict(path: &Path, mode: u32, what: &str) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    let current = meta.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        let tightened = current & mode;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(tightened))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{current:o}"),
            now = format!("{tightened:o}"),
            what,
            "A collector file was more open than it should be; tightened."
        );
    }
    Ok(())
}

/// Keeps an existing folder at most 0700.
///
/// # Errors
/// The folder cannot be read or changed.
pub fn restrict_dir(path: &Path) -> std::io::Result<()> {
    restrict(path, DIR_MODE, "folder")
}

/// Creates `path` (and missing parents) 0700, or tightens it if it exists.
///
/// # Errors
/// The folder cannot be created, read or changed.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)?;
    restrict_dir(path)
}

/// The database file, its write-ahead log and its shared-memory file.
pub(crate) fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_owned(), with("-wal"), with("-shm")]
}

/// Creates the database file 0600 if it does not exist yet (SQLite then creates the log and
/// shared-memory files with the same mode), and tightens each of the three that exists.
///
/// # Errors
/// A file cannot be created, read or changed.
pub fn private_sqlite(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for file in sqlite_files(db) {
        match restrict(&file, FILE_MODE, "database file") {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Writes a new secret file (the overlay signing key) 0600; an existing file is an error.
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn open_folders_and_files_are_tightened_and_tight_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o500, "tighter is left alone");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();

        let db = data.join("a.db");
        private_sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = data.join("a.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        private_sqlite(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }
}
