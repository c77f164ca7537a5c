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
            // The wire types' column conversions (UnixSecs, SightingKind), behind a feature
            // only the spool and the store turn on.
            "collector/wire/src/sql.rs",
            // The ingest benchmark measures raw SQLite inserts as its floor, by design.
            "collector/bench/",
            "collector/tests",
            "agent/tests",
            // The erase and privacy tests scan every table of the collector's file, read-only.
            "tests/tests/e2e/daemon.rs",
        ],
    ),
    // PostgreSQL: only the store (and the benchmarks and tests that drive it directly).
    ("tokio_postgres::", &["collector/src/store", "collector/bench/", "collector/tests"]),
    ("deadpool_postgres::", &["collector/src/store", "collector/bench/", "collector/tests"]),
    // The HTTP server: the API, the console and its sign-in, and the binary that serves them.
    (
        "axum::",
        &[
            "collector/src/api",
            "collector/src/console",
            "collector/src/oidc.rs",
            "collector/src/scim.rs",
            "collector/src/main.rs",
            "collector/src/client.rs",
            "collector/bench/",
            "collector/tests",
            "tests/",
        ],
    ),
];

#[test]
fn boundary_entries_name_paths_that_exist() {
    let root = workspace_root();
    let stale: Vec<&str> = BOUNDARIES
        .iter()
        .flat_map(|(_, allowed)| allowed.iter().copied())
        .filter(|a| !root.join(a.trim_end_matches('/')).exists())
        .collect();
    assert!(stale.is_empty(), "boundary entries for paths that do not exist: {stale:?}");
}

/// Lines of code, leaving out comments (doc links may name any module).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

#[test]
fn collector_stages_import_one_way() {
    // (modules, what they must not use): the joins and reports read the model, never the
    // import parser; the model is below the store.
    let rules: &[(&str, &str)] = &[
        ("collector/src/join", "crate::ingest"),
        ("collector/src/report", "crate::ingest"),
        ("collector/src/model", "crate::store"),
        ("collector/src/model", "crate::ingest"),
    ];
    let mut offenders = Vec::new();
    for path in rust_files() {
        let r = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        for (module, banned) in rules {
            if r.starts_with(module) && code_lines(&text).any(|l| l.contains(banned)) {
                offenders.push(format!("{r} uses {banned}"));
            }
        }
    }
    assert!(offenders.is_empty(), "data flows one way (STYLE.md): {offenders:#?}");
}

#[test]
fn agent_decode_does_no_io() {
    let banned =
        ["std::fs", "std::io::Read", "File::", "TcpStream", "UdpSocket", "tokio", "pcap::"];
    let mut offenders = Vec::new();
    for path in rust_files().iter().filter(|p| rel(p).starts_with("agent/src/decode")) {
        let text = std::fs::read_to_string(path).unwrap();
        for b in banned {
            if code_lines(&text).any(|l| l.contains(b)) {
                offenders.push(format!("{} uses {b}", rel(path)));
            }
        }
    }
    assert!(offenders.is_empty(), "decode reads bytes it is given, nothing else: {offenders:#?}");
}

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
