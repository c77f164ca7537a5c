//! Endpoint inventory: AI software installed or running on this machine, matched against the
//! catalog.
//!
//! Design constraints:
//! - **Layout-agnostic.** Every source looks in its own well-known places under a root (`/` for
//!   a live scan, a mounted disk image or fixture tree otherwise). A place that does not exist
//!   costs one failed `stat`, so one scanner serves macOS, Linux and Windows layouts, and a
//!   fixture tree can hold all three.
//! - **Only matches leave.** A source turns what it reads into a candidate value and asks the
//!   catalog [`Index`]; only candidates that match become [`Finding`]s. Names of unmatched apps
//!   are never stored, printed or logged.
//! - **Bad input never stops a scan.** Unreadable folders, malformed files, symlink loops,
//!   links out of the root and oversized files become counted [`Warning`]s naming the path
//!   (see [`fs`]).
//! - **Live state only on live scans.** Running processes and listening sockets describe this
//!   machine, not a root; they are read only when [`ScanOptions::live`] is set.
//!
//! Sources: [`apps`] (macOS bundles, Linux desktop entries and package databases, Windows
//! Uninstall entries), [`extensions`] (browsers and IDEs), [`tools`] (command-line tools, [`packages`]
//! installed through npm, pip, Homebrew and cargo, and MCP server configurations), [`models`] (local model stores), [`live`] (processes and listening
//! ports). [`watch`] re-runs only the sources whose folders changed, and reports additions and
//! removals.

pub mod apps;
pub mod extensions;
pub mod fs;
pub mod live;
pub mod models;
pub mod packages;
pub mod tools;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use aiscout_signatures::{Index, Match};

pub use fs::Warning;

/// What kind of thing was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An installed application.
    App,
    /// A command-line tool on a PATH or in a user bin folder.
    Cli,
    /// A browser or IDE extension.
    Extension,
    /// A local model server listening on its port.
    LocalRuntime,
    /// An MCP server configured in an AI client.
    McpServer,
    /// A model in a local model store.
    Model,
    /// A running process.
    Process,
}

impl Kind {
    /// The name used in output and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Cli => "cli",
            Kind::Extension => "extension",
            Kind::LocalRuntime => "local_runtime",
            Kind::McpServer => "mcp_server",
            Kind::Model => "model",
            Kind::Process => "process",
        }
    }

    /// The sighting kind a finding of this kind is reported as.
    pub fn sighting_kind(self) -> aiscout_wire::SightingKind {
        match self {
            Kind::App => aiscout_wire::SightingKind::App,
            Kind::Cli => aiscout_wire::SightingKind::Cli,
            Kind::Extension => aiscout_wire::SightingKind::Extension,
            Kind::LocalRuntime => aiscout_wire::SightingKind::LocalRuntime,
            Kind::McpServer => aiscout_wire::SightingKind::McpServer,
            Kind::Model => aiscout_wire::SightingKind::Model,
            Kind::Process => aiscout_wire::SightingKind::Process,
        }
    }
}

/// One matched piece of AI software.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// What kind of thing it is.
    pub kind: Kind,
    /// The catalog product id.
    pub product: String,
    /// The matched id or name (bundle id, extension id, command name, MCP server, model).
    pub value: String,
    /// The OS user it belongs to, when it is per-user.
    pub user: Option<String>,
    /// Where it was found, as the scanned machine names it.
    pub path: Option<String>,
    /// Its version, when known.
    pub version: Option<String>,
    /// Extra detail: the host (browser, IDE, client), a pid, a model size.
    pub detail: Option<String>,
    /// Risk flags of an MCP server, sorted; empty for every other kind (see [`tools`]).
    pub flags: Vec<aiscout_wire::McpFlag>,
}

impl Finding {
    /// One JSON object, as `aiscout-agent scan --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "product": self.product,
            "value": self.value,
            "user": self.user,
            "path": self.path,
            "version": self.version,
            "detail": self.detail,
            "flags": self.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        })
    }
}

/// What to scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// The filesystem root (`/` for this machine).
    pub root: PathBuf,
    /// Also read running processes, listening sockets and `$PATH` of this machine.
    pub live: bool,
    /// Windows registry exports (`.reg`) of the Uninstall keys to read as well.
    pub registry_exports: Vec<PathBuf>,
    /// When set, the scan stops reading as soon as this turns true (the daemon's shutdown):
    /// no folder is listed and no file read after it, so a scan never holds up a stop.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ScanOptions {
    /// A scan of this machine.
    pub fn live() -> Self {
        Self { root: PathBuf::from("/"), live: true, registry_exports: Vec::new(), stop: None }
    }

    /// A scan of a tree as if it were a machine's root, without live state.
    pub fn root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), live: false, registry_exports: Vec::new(), stop: None }
    }
}

/// The result of one scan.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Every match, sorted and without duplicates.
    pub findings: Vec<Finding>,
    /// The first warnings, with their paths.
    pub warnings: Vec<Warning>,
    /// How many warnings there were in all.
    pub warning_count: u64,
    /// Files read.
    pub files_read: u64,
    /// Folders listed.
    pub dirs_listed: u64,
}

/// Collects findings for the sources; the only place a candidate becomes a finding.
pub(crate) struct Sink<'ix> {
    index: &'ix Index,
    findings: Vec<Finding>,
}

impl<'ix> Sink<'ix> {
    pub(crate) fn index(&self) -> &'ix Index {
        self.index
    }

    /// Records a candidate that `matched` says is a product; an unmatched candidate is dropped
    /// here without a trace.
    pub(crate) fn add(&mut self, kind: Kind, matched: Option<Match<'_>>, found: Found) {
        if let Some(m) = matched {
            self.findings.push(Finding {
                kind,
                product: m.product.id.clone(),
                value: found.value,
                user: found.user,
                path: found.path,
                version: found.version,
                detail: found.detail,
                flags: Vec::new(),
            });
        }
    }
}

/// A candidate's details, kept only if it matches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Found {
    pub(crate) value: String,
    pub(crate) user: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) detail: Option<String>,
}

impl Found {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), ..Self::default() }
    }
    pub(crate) fn user(mut self, user: Option<&str>) -> Self {
        self.user = user.map(str::to_owned);
        self
    }
    pub(crate) fn path(mut self, path: String) -> Self {
        self.path = Some(path);
        self
    }
    pub(crate) fn version(mut self, version: Option<String>) -> Self {
        self.version = version.filter(|v| !v.is_empty());
        self
    }
    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A user's home folder under the root.
#[derive(Clone, Debug)]
pub(crate) struct Home {
    pub(crate) user: String,
    pub(crate) dir: PathBuf,
}

/// Every user home under the root: `/home/*` (Linux), `/Users/*` (macOS and Windows) and
/// `/root`, skipping the shared and template profiles.
pub(crate) fn homes(fs: &mut fs::Fs) -> Vec<Home> {
    const NOT_USERS: &[&str] =
        &["Shared", "Public", "Default", "Default User", "All Users", "Guest", "lost+found"];
    let mut out = Vec::new();
    for base in ["/home", "/Users"] {
        let dir = fs.host(base);
        for (name, path) in fs.list(&dir) {
            if !NOT_USERS.contains(&name.as_str()) && !name.starts_with('.') && fs.is_dir(&path) {
                out.push(Home { user: name, dir: path });
            }
        }
    }
    let root_home = fs.host("/root");
    if fs.is_dir(&root_home) {
        out.push(Home { user: "root".into(), dir: root_home });
    }
    out
}

/// Groups of sources that can be re-run on their own (see [`watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// [`apps`].
    Apps,
    /// [`extensions`].
    Extensions,
    /// [`live`].
    Live,
    /// [`models`].
    Models,
    /// [`tools`].
    Tools,
}

impl Source {
    /// Every source, in scan order.
    pub const ALL: [Source; 5] =
        [Source::Apps, Source::Extensions, Source::Tools, Source::Models, Source::Live];

    /// Which source reports findings of a kind.
    pub fn of(kind: Kind) -> Source {
        match kind {
            Kind::App => Source::Apps,
            Kind::Extension => Source::Extensions,
            Kind::Cli | Kind::McpServer => Source::Tools,
            Kind::Model => Source::Models,
            Kind::LocalRuntime | Kind::Process => Source::Live,
        }
    }
}

/// Runs every source once.
pub fn scan(index: &Index, options: &ScanOptions) -> Scan {
    scan_sources(index, options, &Source::ALL)
}

/// Runs the given sources once ([`Source::Live`] only when [`ScanOptions::live`] is set).
pub fn scan_sources(index: &Index, options: &ScanOptions, sources: &[Source]) -> Scan {
    let mut fs = fs::Fs::new(&options.root);
    fs.stop = options.stop.clone();
    let mut sink = Sink { index, findings: Vec::new() };
    let homes = homes(&mut fs);
    for source in sources {
        match source {
            Source::Apps => apps::scan(&mut fs, &mut sink, &homes, &options.registry_exports),
            Source::Extensions => extensions::scan(&mut fs, &mut sink, &homes),
            Source::Tools => tools::scan(&mut fs, &mut sink, &homes, options.live),
            Source::Models => models::scan(&mut fs, &mut sink, &homes),
            Source::Live if options.live => live::scan(&mut fs, &mut sink),
            Source::Live => {}
        }
    }
    let mut findings = sink.findings;
    findings.sort();
    findings.dedup();
    Scan {
        findings,
        warnings: fs.warnings,
        warning_count: fs.warning_count,
        files_read: fs.files_read,
        dirs_listed: fs.dirs_listed,
    }
}
