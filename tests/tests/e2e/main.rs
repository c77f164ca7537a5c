//! End-to-end tests across the aiscout binaries, plus the house rules (tidy) that keep the tree
//! the shape ARCHITECTURE.md describes.

// Test helpers fail loudly; clippy.toml allows this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tidy;
