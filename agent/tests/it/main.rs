//! Integration tests for aiscout-agent: one binary (STYLE.md), one module per concern.
#![allow(clippy::disallowed_methods)]
// Reason: test code opens and reads its own fixtures and databases.

// Test helpers fail loudly; clippy.toml allows this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adversarial;
mod classic_pcap;
mod cli;
mod config;
mod fixtures;
mod fuzz_regressions;
mod hard_cases;
#[cfg(target_os = "linux")]
mod idle;
mod inventory;
mod offline;
mod removal;
mod rfc_vectors;
mod spool;
mod status;
mod support;
mod tshark;
