//! `bench-ingest`: ingest and inventory queries of the real collector on SQLite and PostgreSQL
//! (see `aiscout_bench::ingest` and BENCH-RESULTS.md).

use std::process::ExitCode;

use clap::Parser;

/// Load-test ingest and inventory queries of `aiscout-collector serve` on SQLite and PostgreSQL
/// (BENCH-RESULTS.md): the raw-insert floor, simulated agents over HTTPS, and inventory queries
/// at scale.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: aiscout_bench::ingest::BenchArgs,
}

fn main() -> ExitCode {
    aiscout_bench::ingest::main(&Cli::parse().args)
}
