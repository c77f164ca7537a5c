//! Careful file access for the scan: everything is read relative to a root, nothing is
//! followed outside it, every read is size-capped, and every problem becomes a counted warning
//! naming the path instead of an error that stops the scan.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest manifest, plist, settings or status file read (bigger ones are skipped).
pub(crate) const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// The most entries read from one directory.
pub(crate) const MAX_DIR_ENTRIES: usize = 50_000;
/// Warnings kept with their path; later ones are only counted.
pub(crate) const MAX_WARNINGS_KEPT: usize = 200;

/// A file or folder that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The path as the scanned machine names it (relative to the root, with a leading `/`).
    pub path: String,
    /// What was wrong.
    pub reason: String,
}

/// The root being scanned and the running tally of what was skipped.
#[derive(Debug)]
pub(crate) struct Fs {
    root: PathBuf,
    canonical_root: PathBuf,
    pub(crate) warnings: Vec<Warning>,
    pub(crate) warning_count: u64,
    pub(crate) files_read: u64,
    pub(crate) dirs_listed: u64,
    warned: HashSet<PathBuf>,
    /// Set by the daemon's shutdown; once true nothing more is listed or read.
    pub(crate) stop: Option<Arc<AtomicBool>>,
}

impl Fs {
    pub(crate) fn new(root: &Path) -> Self {
        let canonical_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        Self {
            root: root.to_path_buf(),
            canonical_root,
            warnings: Vec::new(),
            warning_count: 0,
            files_read: 0,
            dirs_listed: 0,
            warned: HashSet::new(),
            stop: None,
        }
    }

    /// Whether the scan was asked to stop; every listing and read checks it first.
    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// The on-disk path of a machine path (`/Applications` under the root).
    pub(crate) fn host(&self, machine_path: &str) -> PathBuf {
        self.root.join(machine_path.trim_start_matches('/'))
    }

    /// The machine path of an on-disk path: relative to the root, with a leading `/`.
    pub(crate) fn display(&self, host_path: &Path) -> String {
        match host_path.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => host_path.display().to_string(),
        }
    }

    pub(crate) fn warn(&mut self, host_path: &Path, reason: impl Into<String>) {
        self.warning_count = self.warning_count.saturating_add(1);
        if self.warnings.len() < MAX_WARNINGS_KEPT {
            let path = self.display(host_path);
            self.warnings.push(Warning { path, reason: reason.into() });
        }
    }

    /// The real path of `host_path` when it exists and, with every symlink along it resolved,
    /// stays inside the root. A missing path is `None` silently (most places exist on one OS
    /// only); a symlink loop, a dangling link or a link out of the root is `None` with a
    /// warning, so nothing outside the root is ever read.
    fn resolve(&mut self, host_path: &Path) -> Option<PathBuf> {
        if self.stopped() {
            return None;
        }
        match std::fs::canonicalize(host_path) {
            Ok(real) if real.starts_with(&self.canonical_root) => Some(real),
            Ok(_) => {
                self.warn_once(host_path, "link points outside the scanned root; not followed");
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling link is worth a word; a path that is simply absent is not.
                if std::fs::symlink_metadata(host_path).is_ok() {
                    self.warn_once(host_path, format!("cannot resolve: {e}"));
                }
                None
            }
            Err(e) => {
                self.warn_once(host_path, format!("cannot resolve: {e}"));
                None
            }
        }
    }

    fn warn_once(&mut self, host_path: &Path, reason: impl Into<String>) {
        if self.warned.insert(host_path.to_path_buf()) {
            self.warn(host_path, reason);
        }
    }

    /// Whether the path is a directory inside the root.
    pub(crate) fn is_dir(&mut self, host_path: &Path) -> bool {
        self.resolve(host_path).is_some_and(|real| real.is_dir())
    }

    /// Whether the path is a regular file inside the root.
    pub(crate) fn is_file(&mut self, host_path: &Path) -> bool {
        self.resolve(host_path).is_some_and(|real| real.is_file())
    }

    /// The entries of a directory, sorted by name, as paths under the given one (so that what
    /// is reported reads as the scanned machine names it). A missing directory is silently
    /// empty; an unreadable one is a warning.
    pub(crate) fn list(&mut self, host_dir: &Path) -> Vec<(String, PathBuf)> {
        let Some(real) = self.resolve(host_dir) else { return Vec::new() };
        if !real.is_dir() {
            return Vec::new();
        }
        let entries = match std::fs::read_dir(&real) {
            Ok(e) => e,
            Err(e) => {
                self.warn_once(host_dir, format!("cannot list folder: {e}"));
                return Vec::new();
            }
        };
        self.dirs_listed = self.dirs_listed.saturating_add(1);
        let mut out = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            if out.len() >= MAX_DIR_ENTRIES {
                self.warn_once(
                    host_dir,
                    format!("more than {MAX_DIR_ENTRIES} entries; the rest skipped"),
                );
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = host_dir.join(&name);
            out.push((name, path));
        }
        out.sort();
        out
    }

    /// Reads a whole file of at most `cap` bytes. Missing files are `None` without a warning;
    /// anything else that prevents the read is a warning.
    pub(crate) fn read(&mut self, host_path: &Path, cap: u64) -> Option<Vec<u8>> {
        let real = self.resolve(host_path)?;
        self.read_real(host_path, &real, cap)
    }

    /// Reads a file the operator named outright (a registry export), which may live outside
    /// the root; the same size cap applies.
    pub(crate) fn read_named(&mut self, path: &Path, cap: u64) -> Option<Vec<u8>> {
        if self.stopped() {
            return None;
        }
        if !path.exists() {
            self.warn(path, "file not found");
            return None;
        }
        self.read_real(path, path, cap)
    }

    fn read_real(&mut self, host_path: &Path, real: &Path, cap: u64) -> Option<Vec<u8>> {
        let (file, _) = self.open_checked(host_path, real, cap)?;
        let mut bytes = Vec::new();
        if let Err(e) = file.take(cap.saturating_add(1)).read_to_end(&mut bytes) {
            self.warn(host_path, format!("cannot read: {e}"));
            return None;
        }
        if bytes.len() as u64 > cap {
            self.warn(host_path, format!("larger than the {cap}-byte limit"));
            return None;
        }
        self.files_read = self.files_read.saturating_add(1);
        Some(bytes)
    }

    /// Opens a regular file inside the root of at most `cap` bytes for a reader that needs
    /// the file itself (a jar for the zip reader). Missing files are `None` silently, anything
    /// else is a warning, as for [`Fs::read`].
    pub(crate) fn open(&mut self, host_path: &Path, cap: u64) -> Option<File> {
        let real = self.resolve(host_path)?;
        let (file, _) = self.open_checked(host_path, &real, cap)?;
        self.files_read = self.files_read.saturating_add(1);
        Some(file)
    }

    fn open_checked(&mut self, host_path: &Path, real: &Path, cap: u64) -> Option<(File, u64)> {
        match open_regular(real, cap) {
            Ok(opened) => Some(opened),
            Err(e) => {
                self.warn(host_path, e.to_string());
                None
            }
        }
    }

    /// Reads a text file (lossily decoded).
    pub(crate) fn read_text(&mut self, host_path: &Path) -> Option<String> {
        self.read(host_path, MAX_FILE_BYTES).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Reads and parses a JSON file; a parse failure is a warning.
    pub(crate) fn read_json(&mut self, host_path: &Path) -> Option<serde_json::Value> {
        let bytes = self.read(host_path, MAX_FILE_BYTES)?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                self.warn(host_path, format!("malformed JSON: {e}"));
                None
            }
        }
    }
}

/// Why [`open_regular`] refused a file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The open or the `fstat` failed.
    // Not `#[from]`, which would also return the IO error from `source()`: it is in the
    // message (issue 18: each cause once).
    #[error("cannot open: {0}")]
    Io(std::io::Error),
    /// A FIFO, socket, device or folder.
    #[error("not a regular file")]
    NotRegular,
    /// Bigger than the cap.
    #[error("{len} bytes, larger than the {cap}-byte limit")]
    TooLarge {
        /// The file's size.
        len: u64,
        /// The cap.
        cap: u64,
    },
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The one way the inventory opens a file: without blocking and without taking a controlling
/// terminal (`O_NONBLOCK | O_NOCTTY`, so a FIFO or a tty a user planted where a manifest is
/// expected cannot hang the scan of a root agent, issue 14 item 7), then checked on the open
/// handle (`fstat`, so nothing can be swapped in between a check and the open): only a regular
/// file of at most `cap` bytes is returned, with its size. Readers must still bound what they
/// read (`take(cap + 1)`), since a regular file can grow after the check.
///
/// # Errors
/// [`OpenError`] when the file cannot be opened, is not a regular file or is too big.
#[allow(clippy::disallowed_methods)] // The one place the inventory opens a file.
pub(crate) fn open_regular(path: &Path, cap: u64) -> Result<(File, u64), OpenError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        // The flags are small positive constants; a failed conversion only loses them, and
        // the type check below still refuses what is not a regular file.
        options.custom_flags(i32::try_from(flags.bits()).unwrap_or(0));
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular);
    }
    if meta.len() > cap {
        return Err(OpenError::TooLarge { len: meta.len(), cap });
    }
    Ok((file, meta.len()))
}

/// Removes `//` and `/* */` comments and trailing commas from JSONC (VS Code settings), leaving
/// strings intact, so the result parses as JSON.
pub(crate) fn strip_jsonc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            (',', _) => {
                // Drop the comma when only white space separates it from a closing bracket.
                let rest: String = chars.clone().take_while(|c| c.is_whitespace()).collect();
                let after = chars.clone().nth(rest.chars().count());
                if !matches!(after, Some('}' | ']')) {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Reason: tests open and read their own fixtures.
mod tests {
    use super::*;

    #[test]
    fn jsonc_comments_and_trailing_commas() {
        let text = r#"{
  // a comment with "quotes"
  "a": "http://x/y", /* block */
  "b": [1, 2,],
}"#;
        let v: serde_json::Value = serde_json::from_str(&strip_jsonc(text)).expect("parses");
        assert_eq!(v["a"], "http://x/y");
        assert_eq!(v["b"][1], 2);
    }

    // Symlinks need privileges on Windows; the test runs where they are ordinary.
    #[cfg(unix)]
    #[test]
    fn links_outside_root_are_not_followed() {
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::write(outside.path().join("secret.json"), "{}").expect("write");
        let root = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path().join("secret.json"), root.path().join("x.json"))
            .expect("link");
        std::os::unix::fs::symlink(root.path().join("loop"), root.path().join("loop"))
            .expect("loop");
        let mut fs = Fs::new(root.path());
        assert_eq!(fs.read_json(&root.path().join("x.json")), None);
        assert!(!fs.is_dir(&root.path().join("loop")));
        assert_eq!(fs.warning_count, 2);
        assert_eq!(fs.warnings[0].path, "/x.json");
    }

    /// House rule (issue 14 item 7): every file the inventory reads is opened by
    /// [`open_regular`]. Outside it, no inventory source names a way to open or read a file
    /// by path; folder listing, `stat` and `readlink` stay allowed, as none opens a file.
    #[test]
    fn inventory_opens_files_only_through_open_regular() {
        const FORBIDDEN: &[&str] = &[
            "File::open",
            "File::create",
            "OpenOptions",
            "fs::read(",
            "fs::read_to_string(",
            "fs::write(",
            "ZipArchive::new(std",
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inventory");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("inventory folder") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            // Test code may make its fixtures any way it likes.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code = if path.ends_with("fs.rs") {
                // The helper itself is the one allowed place.
                let (before, helper) =
                    code.split_once("pub(crate) fn open_regular").expect("open_regular");
                let (_, after) = helper.split_once("\n}\n").expect("end of open_regular");
                format!("{before}{after}")
            } else {
                code.to_owned()
            };
            for needle in FORBIDDEN {
                assert!(
                    !code.contains(needle),
                    "{} uses `{needle}`: open files through inventory::fs::open_regular",
                    path.display()
                );
            }
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} inventory files checked");
    }

    #[test]
    fn oversized_files_are_skipped_with_a_warning() {
        let root = tempfile::tempdir().expect("tmp");
        let big = root.path().join("manifest.json");
        let f = File::create(&big).expect("create");
        f.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        let mut fs = Fs::new(root.path());
        assert_eq!(fs.read_json(&big), None);
        assert_eq!(fs.warning_count, 1);
        assert!(fs.warnings[0].reason.contains("larger than"), "{:?}", fs.warnings);
    }
}
