//! The watched drop folder, through the real binary: files are imported once and moved to
//! `processed/`, unreadable ones to `rejected/` with a `.reason`, a watch picks up a file
//! dropped while it runs, `serve --drop-dir` runs the same watch beside the API, and two
//! collectors sharing one folder (and one database) import every file exactly once.

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

/// A `serve` child process with a drop folder, killed and reaped on drop.
struct Serve {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Its log, shown when a line it should print does not come.
    log: PathBuf,
}

impl Serve {
    fn start(db: &Path, data: &Path, drop: &Path) -> Serve {
        std::fs::create_dir_all(data).unwrap();
        let log = data.join("serve.log");
        let mut child = Command::new(BIN)
            .arg("--db")
            .arg(format!("sqlite:{}", db.display()))
            .arg("--data-dir")
            .arg(data)
            .arg("--drop-dir")
            .arg(drop)
            .args(["--plain-http", "--listen", "127.0.0.1:0", "serve"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let serve = Serve { child, lines, log };
        // The watch task and the listener start side by side: their lines come in either order.
        serve.wait_for_all(&["listening on", "watching"]);
        serve
    }

    /// Waits until a line containing each of `whats` has come, in any order.
    fn wait_for_all(&self, whats: &[&str]) {
        let mut left: Vec<&str> = whats.to_vec();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !left.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) => left.retain(|what| !line.contains(what)),
                Err(e) => {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    panic!("no line with {left:?} from serve ({e}); its log:\n{log}")
                }
            }
        }
    }

    /// The next stdout line containing `what`.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    panic!("no line with {what:?} from serve ({e}); its log:\n{log}")
                }
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // An error means the child has already exited, which is what we want.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

async fn stored_expenses(db: &Path) -> usize {
    use aiscout_collector::store::Store as _;
    let store = aiscout_collector::store::sqlite::SqliteStore::open(db).await.unwrap();
    store.expenses(None).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_drop_dir_imports_a_dropped_file_into_its_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, drop) = (tmp.path().join("data"), tmp.path().join("drop"));
    let db = tmp.path().join("aiscout.db");
    let serve = Serve::start(&db, &data, &drop);
    std::fs::copy(examples().join("expenses/ramp.csv"), drop.join("expenses/ramp.csv")).unwrap();
    let line = serve.wait_for("processed");
    assert!(line.contains("ramp.csv") && line.contains("10 stored"), "{line}");
    assert!(drop.join("processed/ramp.csv").exists());
    assert!(!drop.join("expenses/ramp.csv").exists());
    assert!(!drop.join("processing/expenses/ramp.csv").exists(), "the claim is released");
    std::mem::drop(serve);
    assert_eq!(stored_expenses(&db).await, 10);
}

/// A generic export of `n` AI charges with transaction ids unique to file `i`.
fn numbered_export(i: usize, n: usize) -> String {
    let mut s = String::from("date,amount,currency,descriptor,payer_email,id\n");
    for k in 0..n {
        s.push_str(&format!(
            "2026-11-{:02},20.00,USD,OPENAI *CHATGPT SUBSCR,p{k}@example.com,f{i}-{k}\n",
            1 + k % 28
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_drop_folder_import_every_file_exactly_once() {
    const FILES: usize = 24;
    const ROWS: usize = 50;
    let tmp = tempfile::tempdir().unwrap();
    let drop = tmp.path().join("drop");
    let db = tmp.path().join("shared.db");
    let a = Serve::start(&db, &tmp.path().join("a"), &drop);
    let b = Serve::start(&db, &tmp.path().join("b"), &drop);
    // Written beside the folder, then renamed in, so every file appears whole and at once.
    let staging = tmp.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..FILES {
        let p = staging.join(format!("export-{i:02}.csv"));
        std::fs::write(&p, numbered_export(i, ROWS)).unwrap();
    }
    for i in 0..FILES {
        let name = format!("export-{i:02}.csv");
        std::fs::rename(staging.join(&name), drop.join("expenses").join(&name)).unwrap();
    }
    // Each instance prints a "processed" line after it moved a file to processed/; wait
    // for one per file across both (each receive is bounded; the whole wait by a deadline).
    let (mut lines_a, mut lines_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(180);
    let count = |v: &Vec<String>| v.iter().filter(|l| l.starts_with("processed ")).count();
    while count(&lines_a) + count(&lines_b) < FILES {
        assert!(
            Instant::now() < deadline,
            "{} processed lines of {FILES}: {lines_a:#?} {lines_b:#?}",
            count(&lines_a) + count(&lines_b)
        );
        for (serve, lines) in [(&a, &mut lines_a), (&b, &mut lines_b)] {
            if let Ok(line) = serve.lines.recv_timeout(Duration::from_millis(50)) {
                lines.push(line);
            }
        }
    }
    std::mem::drop((a, b));
    let all: Vec<&String> = lines_a.iter().chain(&lines_b).collect();
    let processed_lines: Vec<_> = all.iter().filter(|l| l.starts_with("processed ")).collect();
    assert_eq!(processed_lines.len(), FILES, "each file imported exactly once: {all:#?}");
    assert!(all.iter().all(|l| !l.starts_with("rejected ")), "{all:#?}");
    for i in 0..FILES {
        let name = format!("export-{i:02}.csv");
        let n = processed_lines.iter().filter(|l| l.contains(&name)).count();
        assert_eq!(n, 1, "{name} imported {n} times");
        assert!(processed_lines.iter().any(|l| l.contains(&name) && l.contains("50 stored")));
    }
    let left: Vec<_> = std::fs::read_dir(drop.join("processing/expenses")).unwrap().collect();
    assert!(left.is_empty(), "claims left behind: {left:?}");
    assert_eq!(stored_expenses(&db).await, FILES * ROWS);
}
