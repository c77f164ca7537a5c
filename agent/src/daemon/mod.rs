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
//! Files: this one starts the threads, runs the async loop and the shutdown; `frames.rs` the
//! capture threads, `watcher.rs` the inventory thread, `writer.rs` the spool writer,
//! `uploader.rs` enrollment, uploads, heartbeats and catalog updates, `state.rs` what is kept in
//! the state folder between runs.
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

use aiscout_signatures::{Catalog, Index, Overlay, Verifier, VerifyError};
use aiscout_wire::{AgentInfo, CaptureState, Heartbeat, InterfaceStatus, Secret, UnixSecs};

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
pub(crate) use crate::telemetry::error_chain;
use crate::upload::{self, Backoff, Client, SpoolTaskError, UploadError};

mod frames;
mod state;
mod uploader;
mod watcher;
mod writer;

use frames::start_capture;
pub(crate) use state::{catalog_high_water, write_atomic};
use state::{initial_catalog, initial_overlay, read_key, save_catalog, save_overlay, write_secret};
use uploader::{CatalogCheck, Uploader};
use watcher::inventory_loop;
use writer::spool_writer;

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
/// The longest pause between two attempts to write to a spool that refuses writes.
const STORAGE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the same failure is logged at most (the rest are counted in the next line).
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);
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
    // The IO errors below are in the message, not returned from `source()`, so a report of the
    // whole chain names each once (issue 18).
    /// The state folder could not be created.
    #[error("cannot create state folder {path}: {error}")]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// The IO error.
        error: std::io::Error,
    },
    /// The catalog built into the binary does not validate.
    #[error("the built-in catalog is invalid: {error}")]
    Catalog {
        /// Every problem in the built-in sources.
        error: aiscout_signatures::source::SourceErrors,
    },
    /// The system refused to start one of the agent's threads.
    #[error("cannot start the {name} thread: {error}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The IO error.
        error: std::io::Error,
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
    /// The vendor catalog in use (verified against the catalog key).
    vendor: RwLock<Arc<Catalog>>,
    /// The organisation overlay in use (verified against the overlay key), if any.
    overlay: RwLock<Option<Arc<Overlay>>>,
    /// The highest overlay version ever accepted (kept in the state folder too).
    overlay_high_water: AtomicU64,
    /// The vendor catalog merged with the overlay: what the matchers and the inventory use.
    catalog: RwLock<Arc<Catalog>>,
    matcher: RwLock<Arc<Matcher>>,
    health: Health,
    pseudonyms: Pseudonymizer,
}

impl Shared {
    fn catalog_version(&self) -> u64 {
        self.vendor.read().map(|c| c.version()).unwrap_or(0)
    }

    fn overlay_version(&self) -> u64 {
        self.overlay.read().ok().and_then(|o| o.as_ref().map(|o| o.version())).unwrap_or(0)
    }

    /// Whether `catalog` is still the merged catalog in use (the inventory thread rescans
    /// when either the vendor catalog or the overlay changes).
    fn catalog_is(&self, catalog: &Arc<Catalog>) -> bool {
        self.catalog.read().is_ok_and(|c| Arc::ptr_eq(&c, catalog))
    }

    fn window_start(&self, secs: UnixSecs) -> UnixSecs {
        secs.window_start(i64::try_from(self.config.window.as_secs()).unwrap_or(3_600).max(1))
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
        let overlay = self.overlay.read().ok().and_then(|o| o.clone());
        let merged = match overlay
            .as_deref()
            .map(|o| aiscout_signatures::overlay::merge(&catalog, o))
        {
            None => catalog.clone(),
            Some(Ok(merged)) => merged,
            Some(Err(error)) => {
                tracing::warn!(error = %error, "The organisation overlay collides with the new catalog; it is set aside.");
                if let Ok(mut o) = self.overlay.write() {
                    *o = None;
                }
                catalog.clone()
            }
        };
        if let Ok(mut v) = self.vendor.write() {
            *v = Arc::new(catalog);
        }
        self.install(merged);
    }

    /// Merges a verified overlay with the vendor catalog in use and swaps the matchers.
    ///
    /// # Errors
    /// The overlay collides with the vendor catalog; nothing changes.
    fn swap_overlay(&self, overlay: Overlay) -> Result<(), aiscout_signatures::OverlayError> {
        let vendor = self.vendor.read().map(|v| Arc::clone(&v)).map_err(|_| {
            aiscout_signatures::OverlayError {
                path: "agent".into(),
                message: "the catalog lock is poisoned".into(),
            }
        })?;
        let merged = aiscout_signatures::overlay::merge(&vendor, &overlay)?;
        if let Ok(mut o) = self.overlay.write() {
            *o = Some(Arc::new(overlay));
        }
        self.install(merged);
        Ok(())
    }

    fn install(&self, catalog: Catalog) {
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
        .map_err(|error| DaemonError::StateDir { path: config.state_dir.clone(), error })?;
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
    let (overlay, overlay_high_water) =
        initial_overlay(&config.state_dir, config.overlay_key, &catalog);
    let merged = overlay
        .as_ref()
        .and_then(|o| aiscout_signatures::overlay::merge(&catalog, o).ok())
        .unwrap_or_else(|| catalog.clone());
    let shared = Arc::new(Shared {
        pseudonyms: Pseudonymizer::new(config.user_key.as_ref()),
        matcher: RwLock::new(Arc::new(Matcher::new(Index::new(merged.clone())))),
        catalog: RwLock::new(Arc::new(merged)),
        vendor: RwLock::new(Arc::new(catalog)),
        overlay: RwLock::new(overlay.map(Arc::new)),
        overlay_high_water: AtomicU64::new(overlay_high_water),
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

    let mut uploader = Uploader {
        shared: Arc::clone(&shared),
        spool: Arc::clone(&spool),
        client,
        node_key: None,
        key_unsaved: false,
    };
    let config = &shared.config;
    let mut backoff = Backoff::new(Duration::from_secs(300));
    // A spool that cannot cut or acknowledge a batch (a full disk) is retried on its own,
    // shorter backoff: room can come back any moment, and the collector is not to blame.
    let mut storage_backoff = Backoff::new(STORAGE_BACKOFF_MAX);
    let mut upload_repeats = crate::telemetry::Repeats::new(REPEAT_LOG_EVERY);
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
                            storage_backoff.reset();
                            if let Some(held) = upload_repeats.clear() {
                                tracing::info!(repeated = held, "Uploads work again.");
                            }
                            // Records written meanwhile have left a wakeup in `written_rx`.
                            None
                        }
                        Err(error) => {
                            let delay = if error.is_spool() {
                                storage_backoff.next_delay()
                            } else {
                                backoff.next_delay()
                            };
                            let text = error.to_string();
                            if let Some(held) = upload_repeats.check(&text) {
                                tracing::warn!(error = %text, repeated = held, retry_in_secs = delay.as_secs(), "Upload failed; the batch stays in the spool.");
                            }
                            Some(tokio::time::Instant::now() + delay)
                        }
                    };
                }
                if catalog_due <= now {
                    if let Err(error) = uploader.update_catalog().await {
                        tracing::warn!(error = %error, "Catalog update check failed.");
                    }
                    if let Err(error) = uploader.update_overlay().await {
                        tracing::warn!(error = %error, "Organisation overlay update check failed.");
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
        Ok(n) => crate::status::LastUpload::new(UnixSecs::now().get(), *n, None),
        Err(e) => crate::status::LastUpload::new(UnixSecs::now().get(), 0, Some(&e.to_string())),
    };
    if let Err(error) = record.save(state_dir) {
        tracing::warn!(error = %error, "Cannot record the last upload.");
    }
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
        .map_err(|error| DaemonError::Thread { name: name.to_owned(), error })
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

#[cfg(test)]
mod tests {
    use super::state::{CATALOG_HIGH_WATER, SAVED_CATALOG, record_high_water};
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

    /// The organisation overlay `version` (one product, one gateway), signed with `pair`
    /// as the collector signs it (same layout, overlay magic).
    fn signed_overlay(version: u64, pair: &Ed25519KeyPair) -> Vec<u8> {
        let doc = br#"{"products":[{"id":"org.helpdesk-bot","name":"Helpdesk Bot","category":"chat","process_names":["helpbot"]}],
                       "gateways":[{"id":"org.llm-gateway","host":"llm.corp.example","fronts":["openai.api"]}]}"#;
        let overlay = Overlay::from_json(version, doc, &Catalog::builtin().expect("builtin"))
            .expect("valid overlay");
        let mut out = overlay.encode_unsigned();
        let signature = pair.sign(&out);
        out.extend_from_slice(&artifact::SIGNATURE_TAG);
        out.extend_from_slice(signature.as_ref());
        out
    }

    /// Issue 17: a saved overlay that verifies is merged at start; a tampered one, one below
    /// the high-water mark and one signed by another key are refused (none in use); without
    /// an overlay key none is read.
    #[test]
    #[allow(clippy::disallowed_methods)] // Reason: reads back a 2-byte record the test wrote.
    fn saved_overlay_is_verified_and_never_rolled_back() {
        use super::state::{OVERLAY_HIGH_WATER, SAVED_OVERLAY};
        let state = tempfile::tempdir().expect("tmp");
        let pair = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).expect("seed");
        let catalog = Catalog::builtin().expect("builtin");
        let key = Some(public(&pair));

        save_overlay(state.path(), &signed_overlay(3, &pair), 3).expect("save v3");
        let (o, high) = initial_overlay(state.path(), key, &catalog);
        assert_eq!((o.as_ref().map(Overlay::version), high), (Some(3), 3));
        let merged =
            aiscout_signatures::overlay::merge(&catalog, &o.expect("overlay")).expect("merge");
        let index = Index::new(merged);
        assert_eq!(
            index.process("helpbot").map(|m| m.product.id.as_str()),
            Some("org.helpdesk-bot")
        );
        assert_eq!(initial_overlay(state.path(), None, &catalog).0, None, "no key, no overlay");

        let mut tampered = signed_overlay(3, &pair);
        let at = artifact::HEADER_LEN + 5;
        tampered[at] ^= 1;
        std::fs::write(state.path().join(SAVED_OVERLAY), &tampered).expect("write");
        assert_eq!(initial_overlay(state.path(), key, &catalog), (None, 3));

        let other = Ed25519KeyPair::from_seed_unchecked(&[10; 32]).expect("seed");
        std::fs::write(state.path().join(SAVED_OVERLAY), signed_overlay(3, &other)).expect("write");
        assert_eq!(initial_overlay(state.path(), key, &catalog), (None, 3));

        // An older, validly signed overlay copied back after v4 was accepted.
        save_overlay(state.path(), &signed_overlay(4, &pair), 4).expect("save v4");
        std::fs::write(state.path().join(SAVED_OVERLAY), signed_overlay(3, &pair)).expect("write");
        assert_eq!(initial_overlay(state.path(), key, &catalog), (None, 4));
        let record = std::fs::read_to_string(state.path().join(OVERLAY_HIGH_WATER)).expect("read");
        assert_eq!(record.trim(), "4");
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
            Err(VerifyError::Rollback {
                artifact: aiscout_signatures::Artifact::Catalog,
                offered: v1,
                current: v2
            }),
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
        assert!(!state.path().join("catalog.version.tmp").exists());
        std::fs::write(state.path().join(CATALOG_HIGH_WATER), "not a number").expect("write");
        assert_eq!(catalog_high_water(state.path()), 0);
    }
}
