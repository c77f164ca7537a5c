//! The spool writer thread: the only writer of the spool, in batches, waking the uploader.

#[allow(clippy::wildcard_imports)]
// Reason: one module split into files; the parent holds the shared imports.
use super::*;

/// Writes records to the spool in batches of up to [`FLUSH_RECORDS`], at most
/// [`FLUSH_AFTER`] after the first of them arrived; an inventory view is written at once
/// (after the records before it), in its own transaction. With nothing pending it sleeps on
/// the channel without a timeout. After each write it wakes the uploader through `written`.
///
/// A failed write (a full disk, issue 14 item 8) is retried after a bounded exponential
/// backoff ([`STORAGE_BACKOFF_MAX`] at most) whatever arrives meanwhile, so a failing disk
/// costs one attempt per delay, not one per record; the same error is logged once per
/// [`REPEAT_LOG_EVERY`] with the count held back. Records keep arriving meanwhile: past
/// [`RECORD_QUEUE`] pending, the oldest are dropped and counted (in the heartbeat's drops at
/// once, in the spool's dropped counter as soon as it takes a write).
pub(super) fn spool_writer(
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
    // While the spool refuses writes: when to try again, and how long to wait after that.
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Backoff::new(STORAGE_BACKOFF_MAX);
    let mut repeats = crate::telemetry::Repeats::new(REPEAT_LOG_EVERY);
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
        let now = Instant::now();
        // Every sender gone while the agent stops: the last writes are tried at once.
        let stopping = disconnected && shared.stopped();
        let may_write = retry_at.is_none_or(|at| now >= at) || stopping;
        if may_write
            && (pending.len() >= FLUSH_RECORDS
                || pending_view.is_some()
                || flush_due.is_some_and(|due| now >= due)
                || disconnected)
        {
            let drops = shared.health.queue_drops.load(Ordering::Relaxed);
            let mut wrote = false;
            let mut failure: Option<SpoolError> = None;
            if let Ok(mut s) = spool.lock() {
                if !pending.is_empty() {
                    match s.record(&pending) {
                        Ok(evicted) => {
                            note_evictions(shared, evicted);
                            pending.clear();
                            wrote = true;
                        }
                        Err(error) => failure = Some(error),
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
                            failure = Some(error);
                            pending_view = Some(view);
                        }
                    }
                }
                if drops > reported_drops {
                    match s.count_dropped(drops - reported_drops) {
                        Ok(()) => reported_drops = drops,
                        Err(error) => {
                            failure.get_or_insert(error);
                        }
                    }
                }
            }
            match failure {
                Some(error) => {
                    let delay = backoff.next_delay();
                    retry_at = Some(Instant::now() + delay);
                    let text = error.to_string();
                    if let Some(held) = repeats.check(&text) {
                        tracing::error!(error = %text, repeated = held, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "Spool write failed; the sightings wait in memory (the oldest dropped and counted past the queue size) and the write is retried.");
                    }
                }
                None => {
                    retry_at = None;
                    backoff.reset();
                    if let Some(held) = repeats.clear() {
                        tracing::info!(repeated = held, "Spool writes work again.");
                    }
                }
            }
            // Bounded: past the queue size the oldest pending records go, counted as drops.
            if pending.len() > RECORD_QUEUE {
                let excess = pending.len() - RECORD_QUEUE;
                pending.drain(..excess);
                count_drops(shared, excess as u64);
            }
            if let Some(view) = pending_view.as_mut()
                && view.records.len() > RECORD_QUEUE
            {
                let excess = view.records.len() - RECORD_QUEUE;
                view.records.drain(..excess);
                count_drops(shared, excess as u64);
            }
            if wrote {
                // Full means a wakeup is already pending; closed means the uploader is gone.
                let _woken = written.try_send(());
            }
            // What a failed write left is retried when its backoff ends.
            flush_due = (!pending.is_empty() || pending_view.is_some())
                .then(|| retry_at.unwrap_or_else(|| Instant::now() + FLUSH_AFTER));
        } else if pending.len() > RECORD_QUEUE {
            // Backing off: the same bound holds while records keep arriving.
            let excess = pending.len() - RECORD_QUEUE;
            pending.drain(..excess);
            count_drops(shared, excess as u64);
        }
        let idle = pending.is_empty() && pending_view.is_none();
        if disconnected && idle {
            return;
        }
        if disconnected && !shared.stopped() {
            // The producers are done (an offline file ended) but the agent runs on: what the
            // spool refused is retried on the backoff, waited out in short steps so that a
            // shutdown is seen (the channel can no longer wake this thread).
            let wait = retry_at.map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
            std::thread::sleep(wait.min(STOP_CHECK));
        } else if disconnected {
            // The spool refused the last write; keep trying briefly, then give up counting.
            let since = *refused_since.get_or_insert_with(Instant::now);
            std::thread::sleep(Duration::from_millis(200));
            if since.elapsed() > Duration::from_secs(5) {
                let lost = pending.len() + pending_view.map_or(0, |v| v.records.len());
                count_drops(shared, lost as u64);
                tracing::error!(
                    lost,
                    "The spool refused the last writes at shutdown; those sightings are lost (counted)."
                );
                return;
            }
        }
    }
}

/// How often a writer with nothing left to receive looks for a shutdown while it waits out
/// a storage backoff.
const STOP_CHECK: Duration = Duration::from_millis(500);

/// Counts sightings the writer had to let go: in the heartbeat's drops now, and in the
/// spool's dropped counter (so in a batch) at the next write that works.
fn count_drops(shared: &Shared, n: u64) {
    shared.health.queue_drops.fetch_add(n, Ordering::Relaxed);
    shared.health.drops.fetch_add(n, Ordering::Relaxed);
}

fn note_evictions(shared: &Shared, evicted: u64) {
    shared.health.evictions.fetch_add(evicted, Ordering::Relaxed);
    if evicted > 0 {
        tracing::warn!(evicted, "Spool cap reached: oldest sightings evicted and counted.");
    }
}
