//! Watch mode: report installs and removals within seconds, without rescanning everything.
//!
//! `notify` watches the folders where apps, extensions, command-line tools and models appear
//! (those that exist when the watch starts). Events are debounced: after the first event the
//! watcher waits for a quiet period, then re-runs only the sources whose folders changed, and
//! compares their findings with the previous ones to report [`Change::Added`] and
//! [`Change::Removed`]. A periodic full rescan (daily by default, run by the daemon) catches
//! anything the watch missed, such as folders created after it started.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aiscout_signatures::Index;
use notify::{RecursiveMode, Watcher as _};

use super::{Finding, ScanOptions, Source, fs::Fs, homes};

/// How long the folders must be quiet before a rescan.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(1_500);

/// One difference between two scans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Newly found.
    Added(Finding),
    /// Found before, gone now.
    Removed(Finding),
}

/// The differences from `old` to `new`, both sorted as [`super::scan`] returns them.
pub fn diff(old: &[Finding], new: &[Finding]) -> Vec<Change> {
    let old_set: BTreeSet<&Finding> = old.iter().collect();
    let new_set: BTreeSet<&Finding> = new.iter().collect();
    let mut out: Vec<Change> =
        new_set.difference(&old_set).map(|f| Change::Added((*f).clone())).collect();
    out.extend(old_set.difference(&new_set).map(|f| Change::Removed((*f).clone())));
    out
}

/// What the watch's channel carries: file-system events, or a wakeup from another thread.
#[derive(Debug)]
enum Message {
    Fs(notify::Result<notify::Event>),
    Wake,
}

/// Ends a [`Watch::next_changes`] wait early, from any thread: the owner then looks at
/// whatever it was told about (a stop, a new catalog) without polling for it.
#[derive(Clone, Debug)]
pub struct Waker(mpsc::Sender<Message>);

impl Waker {
    /// Makes the current or next [`Watch::next_changes`] return.
    pub fn wake(&self) {
        // The receiver is gone only when the watch was dropped; nobody is waiting then.
        let _sent = self.0.send(Message::Wake);
    }
}

/// Why a watch could not start.
// Not `#[from]`, which would also return notify's error from `source()`: it is in the message
// (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the inventory folders: {0}")]
pub struct WatchError(notify::Error);

impl From<notify::Error> for WatchError {
    fn from(e: notify::Error) -> Self {
        Self(e)
    }
}

/// A running watch. Dropping it stops watching.
pub struct Watch<'ix> {
    index: &'ix Index,
    options: ScanOptions,
    quiet: Duration,
    findings: Vec<Finding>,
    folders: Vec<(PathBuf, Source)>,
    events: mpsc::Receiver<Message>,
    wake: mpsc::Sender<Message>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for Watch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("folders", &self.folders.len()).finish_non_exhaustive()
    }
}

impl<'ix> Watch<'ix> {
    /// Scans once and starts watching; [`Watch::findings`] holds the first scan.
    ///
    /// # Errors
    /// When the OS refuses the watch (for example, out of inotify watches).
    pub fn start(
        index: &'ix Index,
        options: ScanOptions,
        quiet: Duration,
    ) -> Result<Self, WatchError> {
        let findings = super::scan(index, &options).findings;
        let folders = watched_folders(&options);
        let (tx, events) = mpsc::channel();
        let wake = tx.clone();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.as_ref().is_ok_and(|e| reads_only(&e.kind)) {
                return;
            }
            // The receiver is gone only when the watch was dropped; nothing is left to tell.
            let _sent = tx.send(Message::Fs(ev));
        })?;
        for (folder, _) in &folders {
            watcher.watch(folder, RecursiveMode::Recursive)?;
        }
        Ok(Self { index, options, quiet, findings, folders, events, wake, _watcher: watcher })
    }

    /// The current findings.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// How many folders are watched.
    pub fn folder_count(&self) -> usize {
        self.folders.len()
    }

    /// A handle that ends the current or next wait early.
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Waits up to `timeout` for changes. Returns an empty list when nothing changed in time
    /// or a [`Waker`] woke the wait first (changes already seen are still reported then).
    pub fn next_changes(&mut self, timeout: Duration) -> Vec<Change> {
        let deadline = Instant::now() + timeout;
        let mut touched: BTreeSet<SourceKey> = BTreeSet::new();
        // Wait for a first event, then until the folders are quiet (bounded by the deadline).
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait =
                if touched.is_empty() { deadline - now } else { self.quiet.min(deadline - now) };
            match self.events.recv_timeout(wait) {
                Ok(Message::Fs(Ok(event))) => {
                    for path in &event.paths {
                        for (folder, source) in &self.folders {
                            if path.starts_with(folder) {
                                touched.insert(SourceKey(*source));
                            }
                        }
                    }
                }
                Ok(Message::Fs(Err(_))) => {} // An OS hiccup; the periodic full rescan covers it.
                Ok(Message::Wake) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if !touched.is_empty() => break,
                Err(mpsc::RecvTimeoutError::Timeout) => return Vec::new(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Vec::new(),
            }
        }
        if touched.is_empty() {
            return Vec::new();
        }
        let sources: Vec<Source> = touched.iter().map(|k| k.0).collect();
        let fresh = super::scan_sources(self.index, &self.options, &sources).findings;
        // Replace the findings of the rescanned sources, keep the others.
        let (old_part, kept): (Vec<Finding>, Vec<Finding>) = std::mem::take(&mut self.findings)
            .into_iter()
            .partition(|f| sources.contains(&Source::of(f.kind)));
        let changes = diff(&old_part, &fresh);
        let mut all = kept;
        all.extend(fresh);
        all.sort();
        self.findings = all;
        changes
    }
}

/// Whether an event only says a file was opened or read, which changes nothing installed.
/// notify asks inotify for opens too, so without this every run of a tool in a watched bin
/// folder, and the rescan's own reads of the folders it watches, would trigger a rescan: a
/// loop that kept an idle agent waking (issue 22).
fn reads_only(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        notify::EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(_),
        ) => true,
        _ => false,
    }
}

/// Orders [`Source`] for the set above without making it `Ord` in the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SourceKey(Source);

impl PartialOrd for SourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SourceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let pos = |s: Source| Source::ALL.iter().position(|x| *x == s).unwrap_or(0);
        pos(self.0).cmp(&pos(other.0))
    }
}

/// The folders worth watching that exist now: application folders, browser and IDE
/// extension folders, bin folders and model stores of every user.
fn watched_folders(options: &ScanOptions) -> Vec<(PathBuf, Source)> {
    let mut fs = Fs::new(&options.root);
    fs.stop = options.stop.clone();
    let mut candidates: Vec<(PathBuf, Source)> = [
        "/Applications",
        "/usr/share/applications",
        "/usr/local/share/applications",
        "/var/lib/flatpak/app",
        "/snap",
    ]
    .iter()
    .map(|p| (fs.host(p), Source::Apps))
    .collect();
    for dir in [
        "/usr/local/bin",
        "/usr/local/lib/node_modules",
        "/opt/homebrew/lib/node_modules",
        "/opt/homebrew/Cellar",
        "/opt/homebrew/Caskroom",
        "/usr/local/Cellar",
        "/usr/local/Caskroom",
    ] {
        candidates.push((fs.host(dir), Source::Tools));
    }
    for h in homes(&mut fs) {
        for rel in ["Applications", ".local/share/applications", "AppData/Local/Programs"] {
            candidates.push((h.dir.join(rel), Source::Apps));
        }
        for rel in [
            ".config/google-chrome",
            ".config/chromium",
            ".config/microsoft-edge",
            ".config/BraveSoftware",
            "Library/Application Support/Google/Chrome",
            "Library/Application Support/Microsoft Edge",
            "AppData/Local/Google/Chrome/User Data",
            "AppData/Local/Microsoft/Edge/User Data",
            ".mozilla/firefox",
            ".vscode/extensions",
            ".vscode-insiders/extensions",
            ".vscode-oss/extensions",
            ".cursor/extensions",
            ".windsurf/extensions",
            ".local/share/JetBrains",
            "Library/Application Support/JetBrains",
            "AppData/Roaming/JetBrains",
        ] {
            candidates.push((h.dir.join(rel), Source::Extensions));
        }
        for rel in [
            ".local/bin",
            "bin",
            ".cursor",
            ".claude",
            ".codeium/windsurf",
            ".cargo",
            ".npm-global/lib/node_modules",
            ".local/pipx/venvs",
            ".local/share/pipx/venvs",
            ".local/share/uv/tools",
        ] {
            candidates.push((h.dir.join(rel), Source::Tools));
        }
        for rel in [".ollama/models/manifests", ".lmstudio/models"] {
            candidates.push((h.dir.join(rel), Source::Models));
        }
    }
    candidates.retain(|(p, _)| fs.is_dir(p));
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Kind;

    fn f(value: &str) -> Finding {
        Finding {
            kind: Kind::App,
            product: "p.x".into(),
            value: value.into(),
            user: None,
            path: None,
            version: None,
            detail: None,
            flags: Vec::new(),
        }
    }

    #[test]
    fn opens_and_reads_are_not_changes_but_writes_are() {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
        assert!(reads_only(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(reads_only(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(reads_only(&EventKind::Access(AccessKind::Read)));
        assert!(!reads_only(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(!reads_only(&EventKind::Create(CreateKind::Folder)));
        assert!(!reads_only(&EventKind::Modify(ModifyKind::Any)));
        assert!(!reads_only(&EventKind::Remove(RemoveKind::Any)));
    }

    #[test]
    fn diff_reports_additions_and_removals() {
        let changes = diff(&[f("a"), f("b")], &[f("b"), f("c")]);
        assert_eq!(changes, vec![Change::Added(f("c")), Change::Removed(f("a"))]);
        assert!(diff(&[f("a")], &[f("a")]).is_empty());
    }
}
