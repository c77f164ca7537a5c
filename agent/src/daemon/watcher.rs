//! The inventory thread: a full scan, then the file-system watch until the next rescan or a
//! catalog change, re-recording the current findings every window.

#[allow(clippy::wildcard_imports)]
// Reason: one module split into files; the parent holds the shared imports.
use super::*;

fn finding_record(shared: &Shared, f: &Finding, now: UnixSecs) -> Record {
    Record {
        window: shared.window_start(now),
        product: f.product.clone(),
        kind: f.kind.sighting_kind(),
        value: f.value.clone(),
        user: f.user.as_deref().map(|u| shared.pseudonyms.user(u)),
        process: None,
        first_seen: now,
        last_seen: now,
        count: 1,
        removed: false,
        flags: f.flags.iter().map(|f| f.as_str().to_owned()).collect(),
    }
}

/// The key an installed finding is remembered by, or `None` for what is not installed
/// (processes, listening runtimes). The user is the reported (possibly pseudonymised) one.
fn installed_key(shared: &Shared, f: &Finding) -> Option<Installed> {
    let kind = f.kind.sighting_kind();
    if !kind.is_installed() {
        return None;
    }
    Some(Installed {
        product: f.product.clone(),
        kind,
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
    now: UnixSecs,
) -> Spooled {
    Spooled::Inventory(Box::new(InventoryView {
        records: send.into_iter().map(|f| finding_record(shared, f, now)).collect(),
        installed: all.iter().filter_map(|f| installed_key(shared, f)).collect(),
        at: now,
        window: shared.window_start(now),
    }))
}

/// Scans, then watches until the next full rescan or a catalog change, re-recording the
/// current findings every window; sleeps in the watch's channel between events and deadlines.
pub(super) fn inventory_loop(shared: &Shared, scan: ScanOptions, tx: &InventoryTx) {
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
                let now = UnixSecs::now();
                shared.offer_inventory(
                    tx,
                    inventory_view(shared, &found.findings, &found.findings, now),
                );
                shared.health.last_scan.store(now.get(), Ordering::Relaxed);
                // Sleep until the next rescan, a new catalog or the stop.
                let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
                shared.set_inventory_wake(Box::new(move || {
                    // The receiver is gone only once this wait is over.
                    let _sent = wake_tx.send(());
                }));
                if !shared.stopped() && shared.catalog_is(&catalog) {
                    // A wakeup, a timeout and a closed channel all mean: look again.
                    let _woken = wake_rx.recv_timeout(jittered(shared.config.rescan_interval));
                }
                continue;
            }
        };
        let now = UnixSecs::now();
        shared.offer_inventory(tx, inventory_view(shared, watch.findings(), watch.findings(), now));
        shared.health.last_scan.store(now.get(), Ordering::Relaxed);
        let waker = watch.waker();
        shared.set_inventory_wake(Box::new(move || waker.wake()));
        let next_full = Instant::now() + jittered(shared.config.rescan_interval);
        // Watch until the next full rescan, a catalog change or the stop.
        while !shared.stopped() && shared.catalog_is(&catalog) {
            let now = Instant::now();
            if now >= next_full {
                break;
            }
            if now >= next_refresh {
                shared.offer_inventory(
                    tx,
                    inventory_view(shared, watch.findings(), watch.findings(), UnixSecs::now()),
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
                    inventory_view(shared, watch.findings(), added, UnixSecs::now()),
                );
            }
        }
    }
}
