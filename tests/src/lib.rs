//! The end-to-end harness: helpers to find the workspace and run the real binaries.
//!
//! Module map: this file only, until the agent and collector binaries exist.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}
