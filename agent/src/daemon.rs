//! `aiscout-agent run`: network discovery and the inventory watcher together, feeding the spool,
//! and the uploader draining it to the collector, until SIGTERM or SIGINT.
//!
//! Threads and tasks:
//! - one capture thread per interface (or per pcap file, the test seam), decoding and matching
//!   frames; only matched observations become [`Record`]s;
//! - one inventory thread running [`Watch`], re-recording current findings every window so the
//!   collector can tell what is still installed, and sending each complete inventory view (after
//!   every full scan, every watch change and every window) to the spool, which reports an
//!   installed item gone since the last view once, as a removal ([`Spool::record_inventory`]);
//! - one spool thread owning the writes: records arrive through a bounded channel and are
//!   written in batches; when the channel is full a record is dropped and counted, never
//!   queued without bound (DESIGN.md invariant 4);
//! - tokio tasks for uploads, heartbeats and catalog updates.
//!
//! # Nothing wakes unless there is work (issue 22)
//! An idle agent must cost a laptop no more than `tcpdump` does, so no thread polls:
//! - a capture thread sleeps in `poll(2)` on its capture and a stop pipe
//!   ([`LiveSource::next_batch`], [`Breaker`]); the kernel hands packets over in batches;
//! - the inventory thread sleeps in its watch's channel until a file-system event, its next
//!   deadline (window refresh, full rescan), a stop or a new catalog wakes it;
//! - the spool writer blocks on its channel while nothing is pending, and only a pending
//!   batch gives it a flush deadline;
//! - the async side sleeps until the earliest of three deadlines (upload, heartbeat, catalog
//!   check), each re-armed with ±10 % jitter so a fleet started together drifts apart. An
//!   upload is armed only when the spool writer reports a write (or at start, for what the
//!   last run left), so an agent with nothing to send never touches the network for it; a
//!   heartbeat acknowledgement names the collector's catalog version, which counts as a
//!   catalog check, so after the check at start the catalog timer fires only when heartbeats
//!   stop answering.
//!
//! On shutdown the capture threads are woken through their breakers and the inventory thread
//! through its waker, the channel is drained into the spool, and one last upload is attempted
//! within a deadline. What is not acknowledged stays in the spool for the next start
//! (invariant 2).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aiscout_signatures::{Catalog, Index, Verifier, VerifyError};
use aiscout_wire::{AgentInfo, CaptureState, Heartbeat, InterfaceStatus, Secret};

use crate::capture::{Breaker, FileSource, LiveSource, Wake};
use crate::config::Config;
use crate::decode::{Decoder, Limits};
use crate::identity::{self, Pseudonymizer};
use crate::inventory::fs::OpenError;
use crate::inventory::watch::{Change, Watch};
use crate::inventory::{self, Finding, ScanOptions};
use crate::matching::Matcher;
use crate::model::Observation;
use crate::spool::{Installed, InventoryView, Record, Spool, SpoolError, SpoolLimits};
use crate::upload::{self, Backoff, Client, UploadError};

/// Records waiting between the producers and the spool thread.
pub const RECORD_QUEUE: usize = 8_192;

/// What producers hand the spool thread. Boxed: a bounded `sync_channel` allocates all of its
/// [`RECORD_QUEUE`] slots up front, so each slot holds a pointer rather than a whole record
/// (issue 22: steady RSS).
#[derive(Debug)]
enum Spooled {
    /// One matched network observation.
    Record(Box<Record>),
    /// One complete inventory view, stored and diffed in one transaction.
    Inventory(Box<InventoryView>),
}

impl Spooled {
    /// Sightings lost if this is dropped.
    fn sightings(&self) -> u64 {
        match self {
            Spooled::Record(_) => 1,
            Spooled::Inventory(view) => (view.records.len() as u64).max(1),
        }
    }
}
/// How long records may wait in the spool writer before they are written.
const FLUSH_AFTER: Duration = Duration::from_secs(2);
/// How many pending records make the spool writer write at once.
const FLUSH_RECORDS: usize = 1_000;
/// How long shutdown waits for the inventory thread. A scan checks the stop flag before every
/// folder and file and opens nothing that can block (issue 14 item 7), so it stops at once;
/// the bound covers a read stuck in the kernel (a hung network mount).
const INVENTORY_STOP: Duration = Duration::from_secs(5);
/// The inventory thread's way to the spool writer; shutdown empties it.
type InventoryTx = Mutex<Option<SyncSender<Spooled>>>;
/// How long shutdown waits for a last upload.
const FINAL_UPLOAD: Duration = Duration::from_secs(10);

/// Where frames come from.
#[derive(Clone, Debug)]
pub enum FrameSource {
    /// Live interfaces (all that are up when empty).
    Live(Vec<String>),
    /// Capture files, read once (for tests and offline runs).
    Files(Vec<PathBuf>),
    /// No network discovery.
    None,
}

/// What the run does besides network discovery.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where frames come from.
    pub frames: FrameSource,
    /// The inventory scan (a live scan of this machine by default).
    pub scan: Option<ScanOptions>,
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] upload::tls::TlsError),
    /// The collector URL is unusable.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The state folder could not be created.
    #[error("cannot create state folder {path}: {source}")]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The catalog built into the binary does not validate.
    #[error("the built-in catalog is invalid: {0}")]
    Catalog(String),
    /// The system refused to start one of the agent's threads.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The IO error.
        source: std::io::Error,
    },
}

/// Counters the heartbeat reports.
#[derive(Debug, Default)]
pub struct Health {
    /// Frames seen.
    pub packets: AtomicU64,
    /// Frames or observations dropped (decode caps, kernel, full queue).
    pub drops: AtomicU64,
    /// Records dropped because the spool queue was full.
    pub queue_drops: AtomicU64,
    /// Sightings evicted by the spool cap since start.
    pub evictions: AtomicU64,
    /// When the inventory scan last finished (Unix seconds; 0 before the first).
    pub last_scan: AtomicI64,
    /// Capture state per interface.
    pub interfaces: Mutex<Vec<InterfaceStatus>>,
}

/// Wakes the inventory thread's current wait.
type InventoryWake = Box<dyn Fn() + Send>;

/// State shared by the threads and tasks of one run.
struct Shared {
    config: Config,
    stop: Arc<AtomicBool>,
    /// The highest catalog version ever accepted (kept in the state folder too); nothing
    /// older is taken, from the collector or from disk.
    catalog_high_water: AtomicU64,
    /// How to wake the inventory thread's current wait (set by that thread before it waits).
    inventory_wake: Mutex<Option<InventoryWake>>,
    catalog: RwLock<Arc<Catalog>>,
    matcher: RwLock<Arc<Matcher>>,
    health: Health,
    pseudonyms: Pseudonymizer,
}

impl Shared {
    fn catalog_version(&self) -> u64 {
        self.catalog.read().map(|c| c.version()).unwrap_or(0)
    }

    fn window_start(&self, secs: i64) -> i64 {
        let w = i64::try_from(self.config.window.as_secs()).unwrap_or(3_600).max(1);
        secs - secs.rem_euclid(w)
    }

    /// Offers the inventory thread's item through the sender shutdown may take away (so a
    /// scan that outlives shutdown's bound cannot keep the spool writer waiting).
    /// Nothing is offered once the stop is set: a scan cut short by it saw only part of the
    /// machine, and its view would make the spool report everything unseen as removed. A
    /// complete view skipped this way is found again by the first scan after the restart.
    fn offer_inventory(&self, tx: &InventoryTx, item: Spooled) {
        if self.stopped() {
            return;
        }
        let Ok(guard) = tx.lock() else { return };
        if let Some(tx) = guard.as_ref() {
            self.offer(tx, item);
        }
    }

    /// Hands a record read from an offline capture file to the spool writer, waiting while
    /// the queue is full: a file is read only as fast as the spool takes its records, so
    /// nothing is dropped (issue 14 item 11; live capture cannot wait and uses
    /// [`Shared::offer`]). Only a writer that is gone (the agent stopping) loses it, counted.
    fn send_waiting(&self, tx: &SyncSender<Spooled>, item: Spooled) {
        if let Err(std::sync::mpsc::SendError(item)) = tx.send(item) {
            let n = item.sightings();
            self.health.queue_drops.fetch_add(n, Ordering::Relaxed);
            self.health.drops.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn offer(&self, tx: &SyncSender<Spooled>, item: Spooled) {
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                // A dropped inventory view loses no removal: the stored set is unchanged, so
                // the next view reports the same removals.
                let n = item.sightings();
                self.health.queue_drops.fetch_add(n, Ordering::Relaxed);
                self.health.drops.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn swap_catalog(&self, catalog: Catalog) {
        let matcher = Arc::new(Matcher::new(Index::new(catalog.clone())));
        if let Ok(mut m) = self.matcher.write() {
            *m = matcher;
        }
        if let Ok(mut c) = self.catalog.write() {
            *c = Arc::new(catalog);
        }
        self.wake_inventory();
    }

    /// Installs the inventory thread's waker. The thread sets it before it looks at the stop
    /// flag and the catalog version, and whoever changes those wakes it after the change, so
    /// a change is never missed: either the thread sees it, or it is woken.
    fn set_inventory_wake(&self, wake: InventoryWake) {
        if let Ok(mut w) = self.inventory_wake.lock() {
            *w = Some(wake);
        }
    }

    fn wake_inventory(&self) {
        if let Ok(w) = self.inventory_wake.lock()
            && let Some(wake) = w.as_ref()
        {
            wake();
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// `period` stretched or shrunk by up to 10 % at random, so that agents started together
/// (a fleet after a reboot or a collector outage) do not keep waking together.
fn jittered(period: Duration) -> Duration {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    let fraction = match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) % 2_001) as f64 / 10_000.0,
        Err(_) => 0.1,
    };
    period.mul_f64(0.9 + fraction)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The last good catalog, as fetched and verified (in the state folder).
const SAVED_CATALOG: &str = "catalog.bin";
/// The highest catalog version this agent ever accepted (in the state folder; decimal).
const CATALOG_HIGH_WATER: &str = "catalog.version";
/// The most bytes of [`CATALOG_HIGH_WATER`] read (a `u64` in decimal is 20 digits).
const MAX_HIGH_WATER_BYTES: u64 = 64;
/// The most bytes of [`SAVED_CATALOG`] read (the collector's cap on a served artifact).
const MAX_SAVED_CATALOG_BYTES: u64 = 64 * 1024 * 1024;

/// Reads at most `cap` bytes of a regular file in the state folder; `Ok(None)` when absent.
fn read_state_file(path: &std::path::Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match inventory::fs::open_regular(path, cap) {
        Ok((f, _)) => f,
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(OpenError::Io(e)) => return Err(e),
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(Some(bytes))
}

/// The highest catalog version accepted before (0 when none was recorded). An unreadable or
/// malformed record is a warning and counts as none: the saved catalog's signature still
/// decides, and the built-in catalog's version still bounds from below.
pub(crate) fn catalog_high_water(state_dir: &std::path::Path) -> u64 {
    let path = state_dir.join(CATALOG_HIGH_WATER);
    match read_state_file(&path, MAX_HIGH_WATER_BYTES) {
        Ok(None) => 0,
        Ok(Some(bytes)) => {
            match std::str::from_utf8(&bytes).ok().and_then(|t| t.trim().parse().ok()) {
                Some(v) => v,
                None => {
                    tracing::warn!(path = %path.display(), "Catalog version record is malformed; ignored.");
                    0
                }
            }
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), error = %error, "Catalog version record unreadable; ignored.");
            0
        }
    }
}

/// Records `version` as the highest accepted (temp file, fsync, rename, fsync of the folder).
fn record_high_water(state_dir: &std::path::Path, version: u64) -> std::io::Result<()> {
    write_atomic(&state_dir.join(CATALOG_HIGH_WATER), format!("{version}\n").as_bytes())
}

/// Keeps a verified catalog as the last good one, then raises the recorded high-water mark,
/// so a restart never goes below it (issue 14 item 10).
fn save_catalog(state_dir: &std::path::Path, bytes: &[u8], version: u64) -> std::io::Result<()> {
    write_atomic(&state_dir.join(SAVED_CATALOG), bytes)?;
    record_high_water(state_dir, version)
}

/// The catalog to start with and the highest version ever accepted: the last good one saved
/// in the state folder when it still verifies against the pinned key and is not older than
/// the built-in one or any version accepted before (a validly signed older catalog copied
/// into the state folder is a rollback, refused as from the network); else the built-in one.
fn initial_catalog(
    state_dir: &std::path::Path,
    key: [u8; 32],
) -> Result<(Catalog, u64), DaemonError> {
    let builtin = Catalog::builtin().map_err(|e| DaemonError::Catalog(e.to_string()))?;
    let high_water = catalog_high_water(state_dir);
    let floor = builtin.version().max(high_water);
    let saved = state_dir.join(SAVED_CATALOG);
    let bytes = match read_state_file(&saved, MAX_SAVED_CATALOG_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok((builtin, high_water)),
        Err(error) => {
            tracing::warn!(path = %saved.display(), error = %error, "Saved catalog unreadable; using the built-in one.");
            return Ok((builtin, high_water));
        }
    };
    match Verifier::new(key).verify(&bytes, Some(floor)) {
        Ok(c) => {
            tracing::info!(version = c.version(), "Loaded the last good catalog.");
            if c.version() > high_water {
                // A state folder from before the record existed: start the record here.
                if let Err(error) = record_high_water(state_dir, c.version()) {
                    tracing::warn!(error = %error, "Cannot record the catalog version.");
                }
            }
            let high_water = high_water.max(c.version());
            Ok((c, high_water))
        }
        Err(VerifyError::Rollback { offered, current }) => {
            tracing::warn!(
                path = %saved.display(),
                offered,
                highest_accepted = current,
                builtin = builtin.version(),
                "Saved catalog is older than one accepted before (rollback); refused, using the built-in one."
            );
            Ok((builtin, high_water))
        }
        Err(error) => {
            tracing::warn!(path = %saved.display(), error = %error, "Saved catalog refused; using the built-in one.");
            Ok((builtin, high_water))
        }
    }
}

/// Runs until `shutdown` resolves.
///
/// # Errors
/// Start-up failures only (spool, TLS, state folder); everything after start is retried.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|source| DaemonError::StateDir { path: config.state_dir.clone(), source })?;
    let spool = Spool::open(
        &config.spool,
        SpoolLimits { max_bytes: config.spool_max_bytes, ..SpoolLimits::default() },
    )?;
    let salvage_lost = spool.salvaged().map_or(0, |s| s.lost);
    if let Some(aside) = spool.moved_aside() {
        let salvage = spool.salvaged().unwrap_or_default();
        tracing::error!(path = %aside.display(), recovered = salvage.recovered, lost = salvage.lost, "The spool was corrupt and was moved aside; what SQLite could read was copied into a new one, the rest counted as dropped.");
    }
    let spool = Arc::new(Mutex::new(spool));
    let client = Client::new(&config.collector_url, upload::tls::client_config(&config.trust)?)?;
    let (catalog, high_water) = initial_catalog(&config.state_dir, config.catalog_key)?;
    let shared = Arc::new(Shared {
        pseudonyms: Pseudonymizer::new(config.user_key.as_ref()),
        matcher: RwLock::new(Arc::new(Matcher::new(Index::new(catalog.clone())))),
        catalog: RwLock::new(Arc::new(catalog)),
        config,
        stop: Arc::new(AtomicBool::new(false)),
        catalog_high_water: AtomicU64::new(high_water),
        inventory_wake: Mutex::new(None),
        health: Health { drops: AtomicU64::new(salvage_lost), ..Health::default() },
    });
    tracing::info!(version = shared.catalog_version(), collector = %shared.config.collector_url, "Agent started.");

    let (tx, rx) = std::sync::mpsc::sync_channel::<Spooled>(RECORD_QUEUE);
    // The spool writer tells the uploader that something was written; one pending wakeup is
    // enough, so a full channel means one is already on its way.
    let (written_tx, mut written_rx) = tokio::sync::mpsc::channel::<()>(1);
    let writer = {
        let spool = Arc::clone(&spool);
        let shared = Arc::clone(&shared);
        spawn_named("spool", move || spool_writer(&shared, &spool, &rx, &written_tx))?
    };
    let (producers, breakers) = start_capture(&shared, &options.frames, &tx);
    let inventory_tx: Arc<InventoryTx> = Arc::new(Mutex::new(None));
    let inventory = match options.scan.clone() {
        Some(mut scan) => {
            scan.stop = Some(Arc::clone(&shared.stop));
            if let Ok(mut t) = inventory_tx.lock() {
                *t = Some(tx.clone());
            }
            let shared = Arc::clone(&shared);
            let inventory_tx = Arc::clone(&inventory_tx);
            Some(spawn_named("inventory", move || inventory_loop(&shared, scan, &inventory_tx))?)
        }
        None => None,
    };
    drop(tx);

    let mut uploader =
        Uploader { shared: Arc::clone(&shared), spool: Arc::clone(&spool), client, node_key: None };
    let config = &shared.config;
    let mut backoff = Backoff::new(Duration::from_secs(300));
    let start = tokio::time::Instant::now();
    // At start: upload what the last run left, check the catalog (whatever version the
    // collector announces: a refused rollback is reported once per start) and send a
    // heartbeat. Later checks ride on heartbeat acknowledgements.
    let mut upload_due = Some(start);
    let mut heartbeat_due = start;
    let mut catalog_due = start;
    tokio::pin!(shutdown);
    loop {
        let next = upload_due.map_or(heartbeat_due, |u| u.min(heartbeat_due)).min(catalog_due);
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = written_rx.recv() => {
                // Keep an earlier deadline, or a retry's backoff.
                if upload_due.is_none() {
                    upload_due = Some(tokio::time::Instant::now() + jittered(config.upload_interval));
                }
            }
            () = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                if upload_due.is_some_and(|d| d <= now) {
                    let result = uploader.drain().await;
                    record_upload(&config.state_dir, &result);
                    upload_due = match result {
                        Ok(_) => {
                            backoff.reset();
                            // Records written meanwhile have left a wakeup in `written_rx`.
                            None
                        }
                        Err(error) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(error = %error, retry_in_secs = delay.as_secs(), "Upload failed; the batch stays in the spool.");
                            Some(tokio::time::Instant::now() + delay)
                        }
                    };
                }
                if catalog_due <= now {
                    if let Err(error) = uploader.update_catalog().await {
                        tracing::warn!(error = %error, "Catalog update check failed.");
                    }
                    catalog_due = tokio::time::Instant::now() + jittered(config.catalog_interval);
                }
                if heartbeat_due <= now {
                    match uploader.heartbeat().await {
                        Ok(CatalogCheck::Done) => {
                            catalog_due = tokio::time::Instant::now() + jittered(config.catalog_interval);
                        }
                        Ok(CatalogCheck::NotDone) => {}
                        Err(error) => tracing::warn!(error = %error, "Heartbeat failed."),
                    }
                    heartbeat_due = tokio::time::Instant::now() + jittered(config.heartbeat_interval);
                }
            }
        }
    }

    tracing::info!("Shutting down: flushing the spool.");
    shared.stop.store(true, Ordering::SeqCst);
    for breaker in &breakers {
        breaker.stop();
    }
    shared.wake_inventory();
    for p in producers {
        // A panicked producer lost only its in-memory work; the spool is intact.
        let _joined = p.join();
    }
    if let Some(inventory) = inventory
        && !join_within(inventory, INVENTORY_STOP)
    {
        tracing::warn!(
            waited_secs = INVENTORY_STOP.as_secs(),
            "Inventory scan did not stop in time; shutting down without it."
        );
    }
    // The writer stops once every sender is gone, the inventory's included.
    if let Ok(mut t) = inventory_tx.lock() {
        *t = None;
    }
    let _writer = writer.join();
    let last = tokio::time::timeout(FINAL_UPLOAD, uploader.drain()).await;
    if let Ok(result) = &last {
        record_upload(&config.state_dir, result);
    }
    match last {
        Ok(Ok(n)) => tracing::info!(batches = n, "Final upload done."),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "Final upload failed; batches stay in the spool.")
        }
        Err(_) => tracing::warn!("Final upload timed out; batches stay in the spool."),
    }
    tracing::info!("Agent stopped.");
    Ok(())
}

/// Keeps the outcome of an upload attempt for `aiscout-agent status` (issue 21): only an
/// attempt that sent something or failed; an empty spool leaves the last record as it was.
fn record_upload(state_dir: &std::path::Path, result: &Result<u64, UploadError>) {
    let record = match result {
        Ok(0) => return,
        Ok(n) => crate::status::LastUpload::new(now_secs(), *n, None),
        Err(e) => crate::status::LastUpload::new(now_secs(), 0, Some(&e.to_string())),
    };
    if let Err(error) = record.save(state_dir) {
        tracing::warn!(error = %error, "Cannot record the last upload.");
    }
}

/// Starts the capture threads; returns them and the breakers that stop the live ones.
fn start_capture(
    shared: &Arc<Shared>,
    frames: &FrameSource,
    tx: &SyncSender<Spooled>,
) -> (Vec<std::thread::JoinHandle<()>>, Vec<Breaker>) {
    let mut handles = Vec::new();
    let mut breakers = Vec::new();
    match frames {
        FrameSource::None => {}
        FrameSource::Files(paths) => {
            let shared = Arc::clone(shared);
            let tx = tx.clone();
            let paths = paths.clone();
            let replay = spawn_named("replay", move || {
                for path in paths {
                    let mut decoder = Decoder::new(Limits::default());
                    let mut batch = Vec::new();
                    match FileSource::open(&path) {
                        Ok(mut source) => {
                            let result = source.for_each(|frame| {
                                // Stopping: the rest of the file is skipped, not queued.
                                if shared.stopped() {
                                    return;
                                }
                                shared.health.packets.fetch_add(1, Ordering::Relaxed);
                                decoder.decode(frame, &mut batch);
                                for obs in batch.drain(..) {
                                    observe(&shared, &tx, &obs, false);
                                }
                            });
                            if let Err(error) = result {
                                tracing::warn!(path = %path.display(), error = %error, "Capture file read failed.");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(path = %path.display(), error = %error, "Capture file refused.")
                        }
                    }
                    shared.health.drops.fetch_add(decoder.stats().drops(), Ordering::Relaxed);
                }
            });
            match replay {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    tracing::error!(error = %error_chain(&error), "Capture files not replayed.");
                }
            }
        }
        FrameSource::Live(names) => {
            let names = if names.is_empty() {
                crate::capture::interfaces_up().unwrap_or_else(|error| {
                    // No Npcap on Windows, or no privileges: the heartbeat says so, under the
                    // name `all`, and the inventory and uploads keep running.
                    let text = error_chain(&error);
                    tracing::error!(error = %text, "Cannot list interfaces; network discovery is off.");
                    set_interface(shared, "all", CaptureState::Failed, Some(text));
                    Vec::new()
                })
            } else {
                names.clone()
            };
            for name in names {
                match LiveSource::open(&name) {
                    Ok(source) => {
                        set_interface(shared, &name, CaptureState::Running, None);
                        let breaker = source.breaker();
                        let on_thread = Arc::clone(shared);
                        let tx = tx.clone();
                        let thread = format!("cap {name}");
                        match spawn_named(&thread, move || capture_loop(&on_thread, source, &tx)) {
                            Ok(handle) => {
                                breakers.push(breaker);
                                handles.push(handle);
                            }
                            Err(error) => {
                                let text = error_chain(&error);
                                tracing::error!(interface = %name, error = %text, "Capture unavailable on this interface.");
                                set_interface(shared, &name, CaptureState::Failed, Some(text));
                            }
                        }
                    }
                    Err(error) => {
                        // Capture unavailable (no privileges, no Npcap): say so and keep the
                        // inventory and uploads running.
                        let text = error_chain(&error);
                        tracing::error!(interface = %name, error = %text, "Capture unavailable on this interface.");
                        set_interface(shared, &name, CaptureState::Failed, Some(text));
                    }
                }
            }
        }
    }
    (handles, breakers)
}

/// An error and its causes on one line, for the heartbeat.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    // Bounded: error chains are short; eight links is far more than any here.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn set_interface(shared: &Shared, name: &str, state: CaptureState, error: Option<String>) {
    if let Ok(mut list) = shared.health.interfaces.lock() {
        list.retain(|i| i.name != name);
        list.push(InterfaceStatus { name: name.to_owned(), state, packets: 0, drops: 0, error });
    }
}

/// Captures until the breaker stops the source; after every batch the interface's counters
/// in [`Health`] are brought up to date (an idle interface has no batches and costs nothing).
fn capture_loop(shared: &Shared, mut source: LiveSource, tx: &SyncSender<Spooled>) {
    let mut decoder = Decoder::new(Limits::default());
    let mut batch = Vec::new();
    let mut packets: u64 = 0;
    loop {
        let result = source.next_batch(None, |frame| {
            packets = packets.saturating_add(1);
            decoder.decode(frame, &mut batch);
            for obs in batch.drain(..) {
                observe(shared, tx, &obs, true);
            }
        });
        match result {
            Ok(Wake::Frames(_)) => {}
            Ok(Wake::Idle) => continue,
            Ok(Wake::Deadline | Wake::Stopped) => return,
            Err(error) => {
                tracing::error!(interface = %source.interface(), error = %error, "Capture stopped.");
                set_interface(
                    shared,
                    source.interface(),
                    CaptureState::Failed,
                    Some(error.to_string()),
                );
                return;
            }
        }
        let kernel = source.kernel_stats();
        let drops = decoder
            .stats()
            .drops()
            .saturating_add(kernel.dropped)
            .saturating_add(kernel.if_dropped);
        if let Ok(mut list) = shared.health.interfaces.lock()
            && let Some(i) = list.iter_mut().find(|i| i.name == source.interface())
        {
            shared.health.packets.fetch_add(packets.saturating_sub(i.packets), Ordering::Relaxed);
            i.packets = packets;
            i.drops = drops;
        }
    }
}

/// Matches one observation; only a match becomes a record. Nothing about an unmatched
/// observation is kept, logged or counted by name (DESIGN.md invariant 1).
fn observe(shared: &Shared, tx: &SyncSender<Spooled>, obs: &Observation, live: bool) {
    let matcher = match shared.matcher.read() {
        Ok(m) => Arc::clone(&m),
        Err(_) => return,
    };
    let Some(hit) = matcher.lookup(obs) else { return };
    let process = if live { crate::attribution::owner(obs).map(|p| p.name) } else { None };
    let secs = i64::try_from(obs.ts.0 / 1_000_000).unwrap_or(i64::MAX);
    let record = Record {
        window: shared.window_start(secs),
        product: hit.product.to_owned(),
        kind: obs.kind.as_str().to_owned(),
        value: obs.name.clone(),
        user: None,
        process,
        first_seen: secs,
        last_seen: secs,
        count: 1,
        removed: false,
    };
    if live {
        shared.offer(tx, Spooled::Record(Box::new(record)));
    } else {
        shared.send_waiting(tx, Spooled::Record(Box::new(record)));
    }
}

fn finding_record(shared: &Shared, f: &Finding, now: i64) -> Record {
    Record {
        window: shared.window_start(now),
        product: f.product.clone(),
        kind: f.kind.as_str().to_owned(),
        value: f.value.clone(),
        user: f.user.as_deref().map(|u| shared.pseudonyms.user(u)),
        process: None,
        first_seen: now,
        last_seen: now,
        count: 1,
        removed: false,
    }
}

/// The key an installed finding is remembered by, or `None` for what is not installed
/// (processes, listening runtimes). The user is the reported (possibly pseudonymised) one.
fn installed_key(shared: &Shared, f: &Finding) -> Option<Installed> {
    aiscout_wire::SightingKind::parse(f.kind.as_str()).filter(|k| k.is_installed())?;
    Some(Installed {
        product: f.product.clone(),
        kind: f.kind.as_str().to_owned(),
        value: f.value.clone(),
        user: f.user.as_deref().map(|u| shared.pseudonyms.user(u)),
    })
}

/// One complete inventory view: sightings of `send`, and the installed items of `all` (every
/// current finding) for the spool to diff against the last view.
fn inventory_view<'f>(
    shared: &Shared,
    all: &[Finding],
    send: impl IntoIterator<Item = &'f Finding>,
    now: i64,
) -> Spooled {
    Spooled::Inventory(Box::new(InventoryView {
        records: send.into_iter().map(|f| finding_record(shared, f, now)).collect(),
        installed: all.iter().filter_map(|f| installed_key(shared, f)).collect(),
        at: now,
        window: shared.window_start(now),
    }))
}

/// Starts a thread named `name` (what `top -H`, `ps -L` and a panic message show; Linux keeps
/// the first 15 bytes).
///
/// # Errors
/// The system refused the thread.
fn spawn_named<F: FnOnce() + Send + 'static>(
    name: &str,
    f: F,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|source| DaemonError::Thread { name: name.to_owned(), source })
}

/// Joins a thread, giving up after `limit` (the thread is then left to end with the process).
fn join_within(handle: std::thread::JoinHandle<()>, limit: Duration) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let waiter = spawn_named("join", move || {
        // A panicked thread counts as stopped.
        let _joined = handle.join();
        // The receiver is gone only when the wait already gave up.
        let _sent = done_tx.send(());
    });
    // Without a waiter thread the join cannot be bounded: report it as not joined.
    waiter.is_ok() && done_rx.recv_timeout(limit).is_ok()
}

/// Scans, then watches until the next full rescan or a catalog change, re-recording the
/// current findings every window; sleeps in the watch's channel between events and deadlines.
fn inventory_loop(shared: &Shared, scan: ScanOptions, tx: &InventoryTx) {
    let mut next_refresh = Instant::now() + jittered(shared.config.window);
    while !shared.stopped() {
        let catalog = match shared.catalog.read() {
            Ok(c) => Arc::clone(&c),
            Err(_) => return,
        };
        let index = Index::new((*catalog).clone());
        let mut watch = match Watch::start(&index, scan.clone(), inventory::watch::DEFAULT_QUIET) {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(error = %error, "Inventory watch unavailable; scanning periodically instead.");
                let found = inventory::scan(&index, &scan);
                let now = now_secs();
                shared.offer_inventory(
                    tx,
                    inventory_view(shared, &found.findings, &found.findings, now),
                );
                shared.health.last_scan.store(now, Ordering::Relaxed);
                // Sleep until the next rescan, a new catalog or the stop.
                let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
                shared.set_inventory_wake(Box::new(move || {
                    // The receiver is gone only once this wait is over.
                    let _sent = wake_tx.send(());
                }));
                if !shared.stopped() && shared.catalog_version() == catalog.version() {
                    // A wakeup, a timeout and a closed channel all mean: look again.
                    let _woken = wake_rx.recv_timeout(jittered(shared.config.rescan_interval));
                }
                continue;
            }
        };
        let now = now_secs();
        shared.offer_inventory(tx, inventory_view(shared, watch.findings(), watch.findings(), now));
        shared.health.last_scan.store(now, Ordering::Relaxed);
        let waker = watch.waker();
        shared.set_inventory_wake(Box::new(move || waker.wake()));
        let next_full = Instant::now() + jittered(shared.config.rescan_interval);
        // Watch until the next full rescan, a catalog change or the stop.
        while !shared.stopped() && shared.catalog_version() == catalog.version() {
            let now = Instant::now();
            if now >= next_full {
                break;
            }
            if now >= next_refresh {
                shared.offer_inventory(
                    tx,
                    inventory_view(shared, watch.findings(), watch.findings(), now_secs()),
                );
                next_refresh = now + jittered(shared.config.window);
            }
            let changes =
                watch.next_changes(next_full.min(next_refresh).saturating_duration_since(now));
            if !changes.is_empty() {
                // New items are sighted now; removed ones are found by the spool's diff of
                // this view against the last one, so a removal is reported once even when
                // the same item is still installed elsewhere under the same key.
                let added = changes.iter().filter_map(|c| match c {
                    Change::Added(f) => Some(f),
                    Change::Removed(_) => None,
                });
                shared.offer_inventory(
                    tx,
                    inventory_view(shared, watch.findings(), added, now_secs()),
                );
            }
        }
    }
}

/// Writes records to the spool in batches of up to [`FLUSH_RECORDS`], at most
/// [`FLUSH_AFTER`] after the first of them arrived; an inventory view is written at once
/// (after the records before it), in its own transaction. With nothing pending it sleeps on
/// the channel without a timeout. After each write it wakes the uploader through `written`.
fn spool_writer(
    shared: &Shared,
    spool: &Mutex<Spool>,
    rx: &Receiver<Spooled>,
    written: &tokio::sync::mpsc::Sender<()>,
) {
    let mut pending: Vec<Record> = Vec::new();
    // At most one view waits: a newer view supersedes an older one's installed set, and
    // keeps its sightings.
    let mut pending_view: Option<InventoryView> = None;
    // When what is pending must be written; `None` while nothing is.
    let mut flush_due: Option<Instant> = None;
    let mut reported_drops: u64 = 0;
    let mut refused_since: Option<Instant> = None;
    loop {
        let received = match flush_due {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        let disconnected = match received {
            Ok(Spooled::Record(r)) => {
                pending.push(*r);
                flush_due.get_or_insert_with(|| Instant::now() + FLUSH_AFTER);
                false
            }
            Ok(Spooled::Inventory(view)) => {
                let view = *view;
                pending_view = Some(match pending_view.take() {
                    Some(mut older) => {
                        older.records.extend(view.records);
                        InventoryView { records: older.records, ..view }
                    }
                    None => view,
                });
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if pending.len() >= FLUSH_RECORDS
            || pending_view.is_some()
            || flush_due.is_some_and(|due| Instant::now() >= due)
            || disconnected
        {
            let drops = shared.health.queue_drops.load(Ordering::Relaxed);
            let mut wrote = false;
            if let Ok(mut s) = spool.lock() {
                if !pending.is_empty() {
                    match s.record(&pending) {
                        Ok(evicted) => {
                            note_evictions(shared, evicted);
                            pending.clear();
                            wrote = true;
                        }
                        Err(error) => {
                            tracing::error!(error = %error, "Spool write failed; retrying.");
                        }
                    }
                }
                if pending.is_empty()
                    && let Some(view) = pending_view.take()
                {
                    match s.record_inventory(&view) {
                        Ok(outcome) => {
                            wrote = true;
                            note_evictions(shared, outcome.evicted);
                            if outcome.removed > 0 {
                                tracing::info!(
                                    removed = outcome.removed,
                                    "Installed items gone since the last inventory view."
                                );
                            }
                        }
                        Err(error) => {
                            tracing::error!(error = %error, "Spool write of the inventory view failed; retrying.");
                            pending_view = Some(view);
                        }
                    }
                }
                if drops > reported_drops && s.count_dropped(drops - reported_drops).is_ok() {
                    reported_drops = drops;
                }
            }
            // Bounded: past the queue size the oldest pending records go, counted as drops.
            if pending.len() > RECORD_QUEUE {
                let excess = pending.len() - RECORD_QUEUE;
                pending.drain(..excess);
                shared.health.queue_drops.fetch_add(excess as u64, Ordering::Relaxed);
            }
            if let Some(view) = pending_view.as_mut()
                && view.records.len() > RECORD_QUEUE
            {
                let excess = view.records.len() - RECORD_QUEUE;
                view.records.drain(..excess);
                shared.health.queue_drops.fetch_add(excess as u64, Ordering::Relaxed);
            }
            if wrote {
                // Full means a wakeup is already pending; closed means the uploader is gone.
                let _woken = written.try_send(());
            }
            // What a failed write left is retried after the same delay.
            flush_due = (!pending.is_empty() || pending_view.is_some())
                .then(|| Instant::now() + FLUSH_AFTER);
        }
        let idle = pending.is_empty() && pending_view.is_none();
        if disconnected && idle {
            return;
        }
        if disconnected {
            // The spool refused the last write; keep trying briefly, then give up counting.
            let since = *refused_since.get_or_insert_with(Instant::now);
            std::thread::sleep(Duration::from_millis(200));
            if since.elapsed() > Duration::from_secs(5) {
                let lost = pending.len() + pending_view.map_or(0, |v| v.records.len());
                shared.health.queue_drops.fetch_add(lost as u64, Ordering::Relaxed);
                return;
            }
        }
    }
}

fn note_evictions(shared: &Shared, evicted: u64) {
    shared.health.evictions.fetch_add(evicted, Ordering::Relaxed);
    if evicted > 0 {
        tracing::warn!(evicted, "Spool cap reached: oldest sightings evicted and counted.");
    }
}

/// Whether a heartbeat also checked the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CatalogCheck {
    /// The acknowledgement named the collector's catalog version (fetched if newer).
    Done,
    /// It did not (an older collector, or none served); the catalog timer stays armed.
    NotDone,
}

struct Uploader {
    shared: Arc<Shared>,
    spool: Arc<Mutex<Spool>>,
    client: Client,
    node_key: Option<Secret>,
}

impl Uploader {
    fn key_path(&self) -> PathBuf {
        self.shared.config.state_dir.join("node_key")
    }

    /// The key the collector last refused, kept to prove who we are when enrolling again.
    fn previous_key_path(&self) -> PathBuf {
        self.shared.config.state_dir.join("node_key.previous")
    }

    fn agent_info(&self) -> AgentInfo {
        AgentInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            catalog_version: self.shared.catalog_version(),
        }
    }

    /// The node key: in memory, else from its file, else from a fresh enrollment.
    async fn node_key(&mut self) -> Result<Secret, UploadError> {
        if let Some(k) = &self.node_key {
            return Ok(k.clone());
        }
        if let Some(key) = read_key(&self.key_path()) {
            self.node_key = Some(key.clone());
            return Ok(key);
        }
        let device = identity::device(self.shared.config.owner_email.clone());
        // A re-enrollment presents the key we held: the collector's `require_key` policy lets
        // a known host id enroll again only with it (issue 14 item 3).
        let previous = read_key(&self.previous_key_path());
        let key = match self
            .client
            .enroll(&self.shared.config.enroll_secret, device, previous.as_ref())
            .await
        {
            Ok(key) => key,
            Err(UploadError::Status { status: 403, .. }) => {
                tracing::warn!(
                    "The collector refuses to enroll this host id again without the node key it knows; an admin can approve the re-enrollment."
                );
                return Err(UploadError::Status { status: 403, body: String::new() });
            }
            Err(UploadError::Status { status: 409, .. }) => {
                tracing::warn!(
                    "The collector holds this re-enrollment for an admin's approval; trying again later."
                );
                return Err(UploadError::Status { status: 409, body: String::new() });
            }
            Err(e) => return Err(e),
        };
        if let Err(error) = write_secret(&self.key_path(), key.expose()) {
            tracing::warn!(error = %error, "Cannot save the node key; it will be requested again after a restart.");
        }
        // Already gone is fine.
        let _removed = std::fs::remove_file(self.previous_key_path());
        tracing::info!("Enrolled with the collector.");
        self.node_key = Some(key.clone());
        Ok(key)
    }

    /// Drops the key the collector refused, keeping it as the previous key for the next
    /// enrollment.
    fn forget_key(&mut self) {
        let key = self.node_key.take().or_else(|| read_key(&self.key_path()));
        if let Some(key) = key
            && let Err(error) = write_secret(&self.previous_key_path(), key.expose())
        {
            tracing::warn!(error = %error, "Cannot keep the refused node key for the next enrollment.");
        }
        // A missing file is fine: the key is being replaced either way.
        let _removed = std::fs::remove_file(self.key_path());
    }

    /// Sends batches until the spool is empty; returns how many were acknowledged.
    async fn drain(&mut self) -> Result<u64, UploadError> {
        let mut sent = 0;
        // Bounded: a spool holds at most its cap; 10,000 batches is far beyond any cap.
        for _ in 0..10_000 {
            let batch = with_spool(&self.spool, Spool::next_batch).await?;
            let Some(batch) = batch else { return Ok(sent) };
            let key = self.node_key().await?;
            let agent = self.agent_info();
            match self.client.send_batch(&key, &agent, &batch).await {
                Ok(_ack) => {
                    with_spool(&self.spool, move |s| s.ack(&batch)).await?;
                    sent += 1;
                }
                Err(UploadError::Unauthorized) => {
                    tracing::warn!("The collector refused the node key; enrolling again.");
                    self.forget_key();
                    return Err(UploadError::Unauthorized);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Sends a heartbeat; when its acknowledgement names a catalog newer than ours, fetches
    /// it. Says whether the acknowledgement named the collector's catalog version, which
    /// makes it a catalog check.
    async fn heartbeat(&mut self) -> Result<CatalogCheck, UploadError> {
        let key = self.node_key().await?;
        let spool = Arc::clone(&self.spool);
        let stats =
            tokio::task::spawn_blocking(move || spool.lock().ok().and_then(|s| s.stats().ok()))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
        let h = &self.shared.health;
        let heartbeat = Heartbeat {
            agent: self.agent_info(),
            interfaces: h.interfaces.lock().map(|l| l.clone()).unwrap_or_default(),
            packets: h.packets.load(Ordering::Relaxed),
            drops: h.drops.load(Ordering::Relaxed),
            spool_depth: stats.rows,
            evictions: h.evictions.load(Ordering::Relaxed),
            last_scan: Some(h.last_scan.load(Ordering::Relaxed)).filter(|t| *t > 0),
        };
        match self.client.heartbeat(&key, &heartbeat).await {
            Ok(ack) => {
                let Some(version) = ack.catalog_version else { return Ok(CatalogCheck::NotDone) };
                if version > self.shared.catalog_version() {
                    self.update_catalog().await?;
                }
                Ok(CatalogCheck::Done)
            }
            Err(UploadError::Unauthorized) => {
                tracing::warn!("The collector refused the node key; enrolling again.");
                self.forget_key();
                Err(UploadError::Unauthorized)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the collector's catalog; swaps it in only when its signature verifies against
    /// the pinned key and it is newer than the one in use, and keeps it as the last good one.
    async fn update_catalog(&mut self) -> Result<(), UploadError> {
        let key = self.node_key().await?;
        let bytes = match self.client.catalog(&key).await {
            Ok(b) => b,
            Err(UploadError::Status { status: 404, .. }) => return Ok(()), // none served
            Err(e) => return Err(e),
        };
        let current = self.shared.catalog_version();
        let floor = current.max(self.shared.catalog_high_water.load(Ordering::SeqCst));
        match Verifier::new(self.shared.config.catalog_key).verify(&bytes, Some(floor)) {
            Ok(catalog) if catalog.version() > current => {
                let version = catalog.version();
                if let Err(error) = save_catalog(&self.shared.config.state_dir, &bytes, version) {
                    tracing::warn!(error = %error, "Cannot save the new catalog as the last good one.");
                }
                self.shared.catalog_high_water.fetch_max(version, Ordering::SeqCst);
                self.shared.swap_catalog(catalog);
                tracing::info!(version, "Catalog updated and verified.");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, current, "Catalog from the collector refused; the current one stays in use.");
            }
        }
        Ok(())
    }
}

/// Runs a spool operation on the blocking pool (SQLite does file IO).
async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    op: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, UploadError> {
    let spool = Arc::clone(spool);
    let spool_err = |e: &dyn std::fmt::Display| UploadError::Transport(format!("spool: {e}"));
    tokio::task::spawn_blocking(move || match spool.lock() {
        Ok(mut guard) => op(&mut guard).map_err(|e| e.to_string()),
        Err(_) => Err("lock poisoned".to_owned()),
    })
    .await
    .map_err(|e| spool_err(&e))?
    .map_err(|e| spool_err(&e))
}

/// A node key from its file; a missing, unreadable or empty file (a write cut short by a
/// full disk before writes were atomic) is no key.
#[allow(clippy::disallowed_methods)] // Reason: the agent's own node key file, written by write_secret.
fn read_key(path: &std::path::Path) -> Option<Secret> {
    let text = std::fs::read_to_string(path).ok()?;
    let key = text.trim();
    (!key.is_empty()).then(|| Secret::new(key))
}

/// Writes a secret file 0600 atomically: a temporary file, fsync, rename, folder fsync, so a
/// crash or a full disk leaves the old file or the new one, never a part.
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // Nothing half-written is left behind.
        let _removed = std::fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the folder is synced (where folders can be opened).
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiscout_signatures::artifact;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn key_pair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("seed")
    }

    fn public(pair: &Ed25519KeyPair) -> [u8; 32] {
        pair.public_key().as_ref().try_into().expect("32 bytes")
    }

    /// The built-in products as catalog `version`, signed as the catalog tool signs.
    fn signed(version: u64, pair: &Ed25519KeyPair) -> Vec<u8> {
        let builtin = Catalog::builtin().expect("builtin");
        let bytes = artifact::encode_unsigned(&Catalog::new(version, builtin.products().to_vec()));
        let parts = artifact::split(&bytes).expect("artifact");
        let mut out = parts.signed.to_vec();
        out.extend_from_slice(&artifact::SIGNATURE_TAG);
        out.extend_from_slice(pair.sign(parts.signed).as_ref());
        out
    }

    /// Issue 14 item 10: v2 accepted (saved as the network path saves it), then a validly
    /// signed v1 copied over the saved catalog; at the next start v1 is refused and the
    /// built-in catalog is used, and v1 is still refused from the network.
    #[test]
    fn older_signed_catalog_in_the_state_folder_is_refused_at_start() {
        let state = tempfile::tempdir().expect("tmp");
        let pair = key_pair();
        let builtin = Catalog::builtin().expect("builtin").version();
        let (v1, v2) = (builtin + 1, builtin + 2);

        // Without a record, a signed v1 is the last good catalog (the test can fail).
        std::fs::write(state.path().join(SAVED_CATALOG), signed(v1, &pair)).expect("write");
        let (c, high) = initial_catalog(state.path(), public(&pair)).expect("start");
        assert_eq!((c.version(), high), (v1, v1));

        save_catalog(state.path(), &signed(v2, &pair), v2).expect("save v2");
        let (c, high) = initial_catalog(state.path(), public(&pair)).expect("restart");
        assert_eq!((c.version(), high), (v2, v2));

        // The attacker puts the older, validly signed catalog back.
        std::fs::write(state.path().join(SAVED_CATALOG), signed(v1, &pair)).expect("write");
        let (c, high) = initial_catalog(state.path(), public(&pair)).expect("restart");
        assert_eq!(c.version(), builtin, "v1 must be refused, the built-in used");
        assert_eq!(high, v2, "the high-water mark survives");
        assert_eq!(
            Verifier::new(public(&pair)).verify(&signed(v1, &pair), Some(c.version().max(high))),
            Err(VerifyError::Rollback { offered: v1, current: v2 }),
            "the network path's floor refuses v1 too"
        );
        // v2 again (a re-download) is fine.
        std::fs::write(state.path().join(SAVED_CATALOG), signed(v2, &pair)).expect("write");
        let (c, _) = initial_catalog(state.path(), public(&pair)).expect("restart");
        assert_eq!(c.version(), v2);
    }

    /// Shutdown's bound on the inventory thread: a thread stuck for good (here on a channel
    /// nobody sends on, standing in for a read stuck in the kernel) is given up on; one that
    /// ends is joined.
    #[test]
    fn shutdown_gives_up_on_a_stuck_inventory_thread() {
        let (_keep, stuck_rx) = std::sync::mpsc::channel::<()>();
        let stuck = std::thread::spawn(move || {
            let _never = stuck_rx.recv();
        });
        assert!(!join_within(stuck, Duration::from_millis(200)));
        let ends = std::thread::spawn(|| {});
        assert!(join_within(ends, Duration::from_secs(60)));
    }

    /// Issue 14 items 3 and 8: the node key file is replaced whole (no temporary file left, no
    /// partial key), private, and an empty one (a write cut short on a full disk before
    /// writes were atomic) is no key, so the agent enrolls again instead of sending "".
    #[test]
    fn node_key_files_are_written_whole_and_an_empty_one_is_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        write_secret(&path, "aisnk_first").unwrap();
        write_secret(&path, "aisnk_second").unwrap();
        assert_eq!(read_key(&path).map(|k| k.expose().to_owned()).as_deref(), Some("aisnk_second"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["node_key"], "no temporary file is left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "").unwrap();
        assert!(read_key(&path).is_none());
        std::fs::write(&path, " \n").unwrap();
        assert!(read_key(&path).is_none());
        assert!(read_key(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn catalog_high_water_record_is_atomic_and_tolerant() {
        let state = tempfile::tempdir().expect("tmp");
        assert_eq!(catalog_high_water(state.path()), 0);
        record_high_water(state.path(), 42).expect("record");
        assert_eq!(catalog_high_water(state.path()), 42);
        assert!(!state.path().join("catalog.tmp").exists());
        std::fs::write(state.path().join(CATALOG_HIGH_WATER), "not a number").expect("write");
        assert_eq!(catalog_high_water(state.path()), 0);
    }
}
