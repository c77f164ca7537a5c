//! Replays every input saved under `tests/data/fuzz-regressions/<target>/` and every seed
//! under `fuzz/seeds/<target>/` through the entry points the fuzz targets call, on the stable
//! compiler, so a fixed crash stays fixed.

use std::path::{Path, PathBuf};

use aiscout_collector::fuzzing;

/// A fuzz target: its folder name and the entry point the fuzzer and these tests share.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 4] = [
    ("expense_csv", fuzzing::expense_csv),
    ("gateway", fuzzing::gateway),
    ("people_csv", fuzzing::people_csv),
    ("wire_batch", fuzzing::wire_batch),
];

/// Runs every file of `dir` through `run`; the number of files run.
fn replay(dir: &Path, run: fn(&[u8])) -> usize {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn fuzz_regressions_replay_without_panics() {
    let dir = crate_dir().join("tests/data/fuzz-regressions");
    for (target, run) in TARGETS {
        // Every target's folder holds at least the hand-made input committed with it: an empty
        // or missing folder would make this test pass without replaying anything.
        let n = replay(&dir.join(target), run);
        assert!(n >= 1, "{target}: no saved input replayed");
    }
}

#[test]
fn fuzz_seeds_read_without_panics() {
    let dir = crate_dir().join("fuzz/seeds");
    for (target, run) in TARGETS {
        let n = replay(&dir.join(target), run);
        assert!(n >= 1, "{target}: no seed replayed");
    }
}

#[test]
fn an_exponent_past_i32_is_a_row_error_naming_the_amount_not_a_panic() {
    use aiscout_collector::ingest::parse::{AmountError, parse_decimal};
    for cell in ["1e2147483647", "-1e2147483647", "1e99999999999"] {
        let got = parse_decimal(cell, 2);
        assert!(
            matches!(got, Err(AmountError::TooLarge | AmountError::NotANumber)),
            "{cell}: {got:?}"
        );
    }
    assert_eq!(parse_decimal("1e-2147483648", 2), Ok(0));
    assert_eq!(AmountError::TooLarge.to_string(), "amount too large");
}
