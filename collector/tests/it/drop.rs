//! The watched drop folder, through the real binary: files are imported once and moved to
//! `processed/`, unreadable ones to `rejected/` with a `.reason`, and a watch picks up a file
//! dropped while it runs.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn run(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).arg("--data-dir").arg(data).args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn dropped_files_are_imported_once_and_moved_or_rejected_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    for sub in ["expenses", "gateway", "people"] {
        std::fs::create_dir_all(drop.join(sub)).unwrap();
    }
    std::fs::copy(examples().join("expenses/ramp.csv"), drop.join("expenses/ramp.csv")).unwrap();
    std::fs::copy(examples().join("people.csv"), drop.join("people/people.csv")).unwrap();
    std::fs::write(drop.join("gateway/notes.csv"), "this,is\nnot,a gateway export\n").unwrap();
    std::fs::write(drop.join("expenses/.partial.csv"), "being copied").unwrap();

    let (ok, out) = run(&data, &["import", "watch", drop.to_str().unwrap(), "--once"]);
    assert!(ok, "{out}");
    assert!(out.contains("processed") && out.contains("ramp.csv"), "{out}");
    assert!(out.contains("rejected") && out.contains("notes.csv"), "{out}");
    assert!(drop.join("processed/ramp.csv").exists());
    assert!(drop.join("processed/people.csv").exists());
    assert!(!drop.join("expenses/ramp.csv").exists());
    let reason = std::fs::read_to_string(drop.join("rejected/notes.csv.reason")).unwrap();
    assert!(reason.contains("notes.csv"), "the reason names the file: {reason}");
    assert!(drop.join("expenses/.partial.csv").exists(), "dot files are left alone");

    // The same export dropped again stores nothing new.
    std::fs::copy(examples().join("expenses/ramp.csv"), drop.join("expenses/ramp.csv")).unwrap();
    let (ok, out) = run(&data, &["import", "watch", drop.to_str().unwrap(), "--once"]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 stored"), "a second drop stores nothing: {out}");
}

#[test]
fn a_running_watch_imports_a_file_dropped_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["import", "watch"])
        .arg(&drop)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut wait_for = |what: &str| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(_) => {
                std::mem::drop(child.kill());
                panic!("no line with {what:?} in time");
            }
        }
    };
    wait_for("watching");
    std::fs::copy(examples().join("expenses/brex.csv"), drop.join("expenses/brex.csv")).unwrap();
    let line = wait_for("processed");
    assert!(line.contains("brex.csv"), "{line}");
    assert!(drop.join("processed/brex.csv").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}
