//! aiscout's collector benchmarks, kept out of the collector's library (as rustls keeps
//! `ci-bench`): the server ships without load generators, and these may reach into the store
//! directly to fill databases fast.
//!
//! - [`ingest`]: `bench-ingest`, ingest and inventory queries over HTTPS against the
//!   raw-insert floor, on SQLite and PostgreSQL (BENCH-RESULTS.md); with `--target URL` its
//!   agents go to running collectors instead, retrying as agents do (`target`, used by
//!   `tests/scale/run`);
//! - [`data`]: what the other benchmarks share: generated import files and filled databases.
//!
//! The binaries (`src/bin/`): `bench-ingest`, `bench-import` (1 M-line imports,
//! BENCH-IMPORT.md), `bench-console` (console pages at 100,000 devices, BENCH-CONSOLE.md) and
//! `bench-alerts` (event to webhook latency and delivery throughput). Every result lands in
//! the repository's BENCHMARKS.md with its command.

pub mod data;
pub mod ingest;
mod target;
