//! The spool writer thread: the only writer of the spool, in batches, waking the uploader.

#[allow(clippy::wildcard_imports)]
// Reason: one module split into files; the parent holds the shared imports.
use super::*;

/// Writes records to the spool in batches of up to [`FLUSH_RECORDS`], at most
/// [`FLUSH_AFTER`] after the first of them arrived; an inventory view is written at once
/// (after the records before it), in its own transaction. With nothing pending it sleeps on
/// the channel without a timeout. After each write it wakes the uploader through `written`.
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
