//! Network discovery threads: one per live interface (or one replaying pcap files, the test
//! seam), decoding frames and offering matched observations to the spool writer.

#[allow(clippy::wildcard_imports)]
// Reason: one module split into files; the parent holds the shared imports.
use super::*;

/// Starts the capture threads; returns them and the breakers that stop the live ones.
pub(super) fn start_capture(
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
                                tracing::warn!(path = %path.display(), error = %error_chain(&error), "Capture file read failed.");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(path = %path.display(), error = %error_chain(&error), "Capture file refused.")
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
                // CaptureError keeps pcap's reason in `source()`: log and show the whole chain.
                let text = error_chain(&error);
                tracing::error!(interface = %source.interface(), error = %text, "Capture stopped.");
                set_interface(shared, source.interface(), CaptureState::Failed, Some(text));
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
    let secs = UnixSecs(i64::try_from(obs.ts.0 / 1_000_000).unwrap_or(i64::MAX));
    let record = Record {
        window: shared.window_start(secs),
        product: hit.product.to_owned(),
        kind: obs.kind.sighting_kind(),
        value: obs.name.clone(),
        user: None,
        process,
        first_seen: secs,
        last_seen: secs,
        count: 1,
        removed: false,
        flags: Vec::new(),
    };
    if live {
        shared.offer(tx, Spooled::Record(Box::new(record)));
    } else {
        shared.send_waiting(tx, Spooled::Record(Box::new(record)));
    }
}
