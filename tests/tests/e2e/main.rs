//! End-to-end tests across the aiscout binaries, plus the house rules (tidy) that keep the tree
//! the shape ARCHITECTURE.md describes.
#![allow(clippy::disallowed_methods)]
// Reason: test code opens and reads its own fixtures and databases.

// Test helpers fail loudly, and a skipped check says so on stdout; clippy.toml allows both
// only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod alerts;
mod browser;
mod console;
mod daemon;
mod mdm;
mod overlay;
mod packaging;
mod tidy;
