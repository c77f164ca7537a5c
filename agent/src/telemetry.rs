//! Logging for the agent binary: a `tracing` subscriber on standard error, human-readable by
//! default and JSON on request, filtered by `AISCOUT_LOG` (`info` when unset). Installed once,
//! by `main`; library code only emits events.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. A second call does nothing.
pub fn init(json: bool) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_env("AISCOUT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Err only when a subscriber is already installed, which is then the one to keep.
    let _installed = if json { builder.json().try_init() } else { builder.try_init() };
}
