//! House rules as tests (rust-analyzer's tidy): each rule reads the source tree as text.

use std::path::{Path, PathBuf};

use aiscout_e2e::workspace_root;

/// Every `.rs` file under the product folders, skipping build output.
fn rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> =
        ["agent", "collector", "signatures", "tests"].iter().map(|d| root.join(d)).collect();
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        assert!(visited < 100_000, "runaway directory walk");
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | "corpus" | "artifacts" | "data") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
}

/// Test code: integration-test folders and files named `tests.rs`.
fn is_test_code(path: &Path) -> bool {
    let r = rel(path);
    r.contains("/tests/") || r.ends_with("/tests.rs")
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let files = rust_files();
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !is_test_code(p))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| rel(p))
        .collect();
    assert!(missing.is_empty(), "files without a leading //! doc: {missing:#?}");
}

#[test]
fn no_should_panic_tests() {
    let marker = concat!("#[should", "_panic");
    let offenders: Vec<String> = rust_files()
        .iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains(marker))
        .map(|p| rel(p))
        .collect();
    assert!(offenders.is_empty(), "tests must assert on results, not panics: {offenders:#?}");
}

/// A crate that only some modules may use, and the path prefixes of those modules.
const BOUNDARIES: &[(&str, &[&str])] = &[
    ("pcap::", &["agent/src/capture", "agent/benches", "agent/tests", "agent/examples"]),
    (
        "rusqlite::",
        &[
            "agent/src/spool",
            "collector/src/store",
            // The ingest benchmark measures raw SQLite inserts as its floor, by design.
            "collector/src/bench.rs",
            "collector/tests",
            "collector/benches",
            "agent/tests",
            "collector/src/bin",
        ],
    ),
];

#[test]
fn boundary_crates_are_used_only_by_their_modules() {
    let mut offenders = Vec::new();
    for path in rust_files() {
        let r = rel(&path);
        if r == "tests/tests/e2e/tidy.rs" {
            continue; // This file names the crates it polices.
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (needle, allowed) in BOUNDARIES {
            if text.contains(needle) && !allowed.iter().any(|a| r.starts_with(a)) {
                offenders.push(format!("{r} uses {needle}"));
            }
        }
    }
    assert!(offenders.is_empty(), "see STYLE.md module boundaries: {offenders:#?}");
}

#[test]
fn signatures_stays_pure() {
    // No async runtime, network or logging in the catalog crate.
    for path in rust_files().iter().filter(|p| rel(p).starts_with("signatures/src")) {
        let text = std::fs::read_to_string(path).unwrap();
        for banned in ["tokio", "std::net", "tracing::", "reqwest"] {
            assert!(!text.contains(banned), "{} mentions {banned}", rel(path));
        }
    }
}
