//! The watched drop folder: `aiscout-collector import watch DIR`, or `serve` with
//! `import.drop_dir` (`--drop-dir`), which runs the same watch as a task beside the API.
//!
//! Layout, created when missing:
//!
//! ```text
//! DIR/expenses/    card and expense exports (format detected by header)
//! DIR/gateway/     gateway and provider spend exports
//! DIR/people/      the people directory
//! DIR/processing/  files being imported, claimed by one instance (processing/<kind>/<file>)
//! DIR/processed/   files imported (row errors, if any, listed in <file>.errors beside them)
//! DIR/rejected/    files that could not be imported at all, each with <file>.reason
//! ```
//!
//! Every file already waiting is imported first; then `notify` reports new files, and a file is
//! imported once the folder has been quiet for a moment (an export being copied in is not read
//! half-written). Files whose names start with `.` are ignored (editors and copy tools write
//! those).
//!
//! Several collectors may watch one shared folder. An instance claims a file by renaming it
//! into `processing/<kind>/` before reading it: a rename is atomic on one file system, so of
//! two instances racing for a file exactly one succeeds, and the other sees `NotFound` and
//! leaves it (no file is imported twice). Claiming stamps the file's modification time; a
//! claim older than [`STALE_CLAIM`] is taken to belong to an instance that died mid-import
//! and is put back into its kind folder on the next pass, so no file is lost either. Should
//! that slow import still be running, the second import counts each row once anyway:
//! imports are idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aiscout_signatures::Index;

use crate::ingest::file::{self, FileReport, ImportError, Input};
use crate::ingest::mapping::Mappings;
use crate::store::{self, Store};

/// The kinds of file the drop folder takes, by subfolder.
pub const KINDS: [&str; 3] = ["expenses", "gateway", "people"];

/// How long the folder must be quiet before new files are read.
pub const QUIET: Duration = Duration::from_secs(2);

/// How old a claim in `processing/` must be before it counts as abandoned.
pub const STALE_CLAIM: Duration = Duration::from_secs(3600);

/// What happened to one dropped file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Imported and moved to `processed/`; the text is the import summary.
    Processed(String),
    /// Not importable and moved to `rejected/` beside a `.reason` file saying why.
    Rejected(String),
    /// Gone before it could be read (another instance took it).
    Vanished,
}

/// Why the drop folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// A folder could not be created or read.
    #[error("drop folder {path}: {error}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The IO error (in the message, not the source: issue 18, each cause once).
        error: std::io::Error,
    },
    /// The OS refused the watch.
    #[error("cannot watch {path}: {error}")]
    Watch {
        /// The folder.
        path: PathBuf,
        /// The notify error (in the message, not the source).
        error: notify::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DropError + '_ {
    move |error| DropError::Io { path: path.to_path_buf(), error }
}

/// Creates the layout under `dir`.
///
/// # Errors
/// When a folder cannot be created.
pub fn prepare(dir: &Path) -> Result<(), DropError> {
    for sub in KINDS.iter().chain(&["processed", "rejected"]) {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    for kind in KINDS {
        let p = dir.join("processing").join(kind);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    Ok(())
}

/// Puts claims older than `stale` back into their kind folder; returns the files put back.
///
/// # Errors
/// When `processing/` cannot be read.
pub fn recover_stale(dir: &Path, stale: Duration) -> Result<Vec<PathBuf>, DropError> {
    let mut back = Vec::new();
    for kind in KINDS {
        let sub = dir.join("processing").join(kind);
        let entries = match std::fs::read_dir(&sub) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(DropError::Io { path: sub, error }),
        };
        for entry in entries.filter_map(Result::ok) {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > stale);
            if !old {
                continue;
            }
            let dest = dir.join(kind).join(entry.file_name());
            // Another instance may recover it at the same moment: one rename wins.
            if move_file(&entry.path(), &dest)? {
                back.push(dest);
            }
        }
    }
    Ok(back)
}

/// The files waiting in the kind folders, oldest name first.
fn waiting(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>, DropError> {
    let mut out = Vec::new();
    for kind in KINDS {
        let sub = dir.join(kind);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
            .map_err(io(&sub))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| (kind, p)));
    }
    Ok(out)
}

/// Imports every file waiting now; returns what happened to each.
///
/// # Errors
/// When the folders cannot be read or a file cannot be moved.
pub async fn process_waiting<S: Store>(
    store: &S,
    index: &Arc<Index>,
    mappings: &Mappings,
    dir: &Path,
) -> Result<Vec<(PathBuf, Outcome)>, DropError> {
    recover_stale(dir, STALE_CLAIM)?;
    let mut done = Vec::new();
    for (kind, path) in waiting(dir)? {
        let outcome = process_one(store, index, mappings, dir, kind, &path).await?;
        done.push((path, outcome));
    }
    Ok(done)
}

/// Claims `path` by renaming it into `processing/<kind>/`; `None` when another instance
/// took it first.
fn claim(dir: &Path, kind: &str, path: &Path) -> Result<Option<PathBuf>, DropError> {
    let Some(name) = path.file_name() else { return Ok(None) };
    let claimed = dir.join("processing").join(kind).join(name);
    if !move_file(path, &claimed)? {
        return Ok(None);
    }
    // Stamp the claim so that only an abandoned one ever looks stale. Failing to stamp is
    // not fatal: the file is ours, and the worst case is an early recovery, which imports
    // idempotently.
    let stamped = std::fs::File::options()
        .append(true)
        .open(&claimed)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    if let Err(e) = stamped {
        tracing::debug!(error = %e, "Could not stamp a claimed drop file.");
    }
    Ok(Some(claimed))
}

async fn process_one<S: Store>(
    store: &S,
    index: &Arc<Index>,
    mappings: &Mappings,
    dir: &Path,
    kind: &str,
    path: &Path,
) -> Result<Outcome, DropError> {
    let Some(claimed) = claim(dir, kind, path)? else {
        return Ok(Outcome::Vanished);
    };
    let input = Input::Path(claimed.clone());
    let now = store::now();
    let (e, g) = (&mappings.expenses, &mappings.gateway);
    let result: Result<FileReport, ImportError> = match kind {
        "expenses" => file::expenses(store, Arc::clone(index), input, None, e, None, now).await,
        "gateway" => file::gateway(store, Arc::clone(index), input, None, g, None, now).await,
        _ => file::people(store, input).await,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = claimed.as_path();
    match result {
        Ok(report) => {
            let kind = if kind == "expenses" || kind == "gateway" { kind } else { "people" };
            file::record(store, kind, "drop", &report, now).await;
            let dest = dir.join("processed").join(&name);
            if !move_file(path, &dest)? {
                return Ok(Outcome::Vanished);
            }
            if !report.tally.errors.is_empty() {
                let errors: String = report.tally.errors.iter().map(|e| format!("{e}\n")).collect();
                let p = dir.join("processed").join(format!("{name}.errors"));
                std::fs::write(&p, errors).map_err(io(&p))?;
            }
            Ok(Outcome::Processed(report.to_string()))
        }
        Err(e) => {
            let dest = dir.join("rejected").join(&name);
            if !move_file(path, &dest)? {
                return Ok(Outcome::Vanished);
            }
            let reason = format!("{e}\n");
            let p = dir.join("rejected").join(format!("{name}.reason"));
            std::fs::write(&p, &reason).map_err(io(&p))?;
            Ok(Outcome::Rejected(reason.trim_end().to_owned()))
        }
    }
}

/// Moves `from` to `to`, replacing an older file of the same name; `false` when `from` is
/// gone (another instance moved it first).
fn move_file(from: &Path, to: &Path) -> Result<bool, DropError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(DropError::Io { path: from.to_path_buf(), error }),
    }
}

/// Imports what is waiting, then watches for new files until `shutdown` resolves, calling
/// `report` with each outcome and `ready` once the first pass is done.
///
/// # Errors
/// When the folder cannot be prepared or watched.
pub async fn watch<S: Store>(
    store: &S,
    index: Arc<Index>,
    mappings: &Mappings,
    dir: &Path,
    mut report: impl FnMut(&Path, &Outcome),
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<(), DropError> {
    use notify::Watcher as _;
    prepare(dir)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(64);
    let mut watcher = notify::recommended_watcher(move |_event| {
        // A full channel already holds a wake-up; the pass after it sees every file.
        let _sent = tx.try_send(());
    })
    .map_err(|error| DropError::Watch { path: dir.to_path_buf(), error })?;
    for kind in KINDS {
        let sub = dir.join(kind);
        watcher
            .watch(&sub, notify::RecursiveMode::NonRecursive)
            .map_err(|error| DropError::Watch { path: sub.clone(), error })?;
    }
    tokio::pin!(shutdown);
    let mut ready = Some(ready);
    loop {
        for (path, outcome) in process_waiting(store, &index, mappings, dir).await? {
            report(&path, &outcome);
        }
        // The watch is set and what was waiting is done: later files come through events.
        if let Some(r) = ready.take() {
            r();
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            woke = rx.recv() => {
                if woke.is_none() {
                    return Ok(());
                }
                // Wait for the folder to be quiet: a file being copied in fires many events.
                // Bounded: after five minutes of continuous events the pass runs anyway.
                for _ in 0..150 {
                    match tokio::time::timeout(QUIET, rx.recv()).await {
                        Ok(Some(())) => {}
                        _ => break,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("drop");
        prepare(&dir).unwrap();
        (tmp, dir)
    }

    #[test]
    fn a_file_is_claimed_by_exactly_one_of_two_instances() {
        let (_tmp, dir) = layout();
        let path = dir.join("expenses/x.csv");
        std::fs::write(&path, "date,amount\n").unwrap();
        let first = claim(&dir, "expenses", &path).unwrap();
        let second = claim(&dir, "expenses", &path).unwrap();
        assert_eq!(first, Some(dir.join("processing/expenses/x.csv")));
        assert_eq!(second, None, "the second instance finds the file gone");
        assert!(waiting(&dir).unwrap().is_empty(), "a claimed file is no longer waiting");
    }

    #[test]
    fn an_abandoned_claim_is_put_back_and_a_fresh_one_is_left_alone() {
        let (_tmp, dir) = layout();
        for name in ["old.csv", "fresh.csv"] {
            let path = dir.join("expenses").join(name);
            std::fs::write(&path, "date,amount\n").unwrap();
            claim(&dir, "expenses", &path).unwrap().unwrap();
        }
        // The instance that claimed old.csv died two hours ago.
        let old = std::fs::File::options()
            .append(true)
            .open(dir.join("processing/expenses/old.csv"))
            .unwrap();
        old.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200)).unwrap();
        let back = recover_stale(&dir, STALE_CLAIM).unwrap();
        assert_eq!(back, [dir.join("expenses/old.csv")]);
        assert!(dir.join("processing/expenses/fresh.csv").exists());
        let waiting: Vec<_> = waiting(&dir).unwrap().into_iter().map(|(_, p)| p).collect();
        assert_eq!(waiting, [dir.join("expenses/old.csv")]);
    }
}
