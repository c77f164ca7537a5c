//! Issue 4: "Removal is reported too, so the collector can tell what is still installed." The
//! real daemon scans a copy of the fixture tree into a real spool; an extension removed while
//! it runs (watch mode) and an app removed while it is stopped (found by the first scan after
//! the restart) each become exactly one removal sighting, and a reinstall is an ordinary
//! sighting again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aiscout_agent::config::{self, Overrides};
use aiscout_agent::daemon::{FrameSource, RunOptions};
use aiscout_agent::inventory::ScanOptions;

use crate::support::spawn_daemon;

const EXTENSION: &str = "fcoeoabgfenejglbffodgkkbkcdhcgfn";
const EXTENSION_DIR: &str = "Users/alice/Library/Application Support/Google/Chrome/Default/Extensions/fcoeoabgfenejglbffodgkkbkcdhcgfn";
const APP: &str = "com.openai.chat";
const APP_DIR: &str = "Applications/ChatGPT.app";

/// A daemon running on its own thread until stopped (or dropped).
struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(config_file: &Path, root: &Path) -> Self {
        let config = config::load(Some(config_file), Overrides::default()).unwrap();
        let options = RunOptions { frames: FrameSource::None, scan: Some(ScanOptions::root(root)) };
        let (stop, thread) = spawn_daemon(config, options);
        Self { stop: Some(stop), thread: Some(thread) }
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _sent = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.halt();
        } else if let Some(stop) = self.stop.take() {
            let _sent = stop.send(());
        }
    }
}

/// A config whose collector refuses connections (a closed loopback port), so every sighting
/// stays in the spool for the test to read.
fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
    let secret = dir.join("enroll_secret");
    std::fs::write(&secret, "test-secret\n").unwrap();
    let key = dir.join("catalog.pub");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let state = dir.join("state");
    let file = dir.join("agent.toml");
    std::fs::write(
        &file,
        format!(
            "collector_url = \"https://127.0.0.1:9\"\n\
             pin_sha256 = \"{}\"\n\
             enroll_secret_file = {:?}\n\
             catalog_key_file = {:?}\n\
             state_dir = {:?}\n",
            "ab".repeat(32),
            secret.display().to_string(),
            key.display().to_string(),
            state.display().to_string(),
        ),
    )
    .unwrap();
    (file, state.join("spool.db"))
}

/// (kind, value, user, removed) of every sighting row in the spool, sent or not.
fn rows(spool: &Path) -> Vec<(String, String, String, bool)> {
    let conn = rusqlite::Connection::open(spool).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt =
        conn.prepare("SELECT kind, value, user, removed FROM sightings ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The installed set the spool keeps; empty while the daemon has created the file but not yet
/// its tables (the caller polls).
fn installed(spool: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(spool).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let Ok(mut stmt) = conn.prepare("SELECT value, user FROM installed ORDER BY value, user")
    else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Times `value` was sighted present (the sum of the counts of its presence rows).
fn presence(spool: &Path, value: &str) -> i64 {
    let conn = rusqlite::Connection::open(spool).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(
        "SELECT coalesce(sum(count), 0) FROM sightings WHERE value = ?1 AND removed = 0",
        [value],
        |r| r.get(0),
    )
    .unwrap()
}

fn removals(spool: &Path, value: &str) -> usize {
    rows(spool).iter().filter(|(_, v, _, removed)| *removed && v == value).count()
}

/// Waits (bounded) until `ready` holds; fails naming `what`.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn removed_software_is_reported_once_from_watch_mode_and_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    crate::inventory::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inventory/tree"),
        &root,
    );
    let (config, spool) = write_config(tmp.path());
    let has =
        |value: &str, user: &str| installed(&spool).iter().any(|(v, u)| v == value && u == user);

    // First run: the full scan stores the installed set; nothing is a removal.
    let agent = Agent::start(&config, &root);
    wait_for("the first inventory view", || {
        spool.exists() && has(APP, "") && has(EXTENSION, "alice")
    });
    assert!(has(EXTENSION, "carol"), "carol's copy of the extension is another item");
    assert!(rows(&spool).iter().all(|r| !r.3), "{:#?}", rows(&spool));

    // Watch mode: alice removes the extension; carol keeps hers.
    std::fs::remove_dir_all(root.join(EXTENSION_DIR)).unwrap();
    wait_for("the extension's removal", || removals(&spool, EXTENSION) == 1);
    let removal = rows(&spool).into_iter().find(|r| r.3).unwrap();
    assert_eq!(removal, ("extension".into(), EXTENSION.into(), "alice".into(), true));
    assert!(!has(EXTENSION, "alice") && has(EXTENSION, "carol"));
    agent.stop();

    // Stopped: the app goes. The first scan after the restart reports it, and only it.
    std::fs::remove_dir_all(root.join(APP_DIR)).unwrap();
    let agent = Agent::start(&config, &root);
    wait_for("the app's removal after the restart", || removals(&spool, APP) == 1);
    assert!(!has(APP, ""));
    assert_eq!(removals(&spool, EXTENSION), 1, "a removal is reported once, not per restart");

    // Reinstalled while running: an ordinary sighting again, and no new removal.
    let present_before = presence(&spool, APP);
    crate::inventory::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inventory/tree/Applications"),
        &root.join("Applications"),
    );
    wait_for("the reinstall", || has(APP, ""));
    assert!(presence(&spool, APP) > present_before, "the reinstall is sighted");
    agent.stop();
    assert_eq!(removals(&spool, APP), 1);
    assert_eq!(removals(&spool, EXTENSION), 1);
}

/// Issue 14 item 7: the daemon's inventory scans a tree where users planted FIFOs, sockets,
/// device nodes and `/dev/zero` links in place of package databases, model manifests and
/// extension manifests. The first inventory view still arrives (the app found from its
/// untouched bundle), and the shutdown that SIGTERM triggers stops the daemon promptly.
#[cfg(unix)]
#[test]
fn planted_fifos_neither_hang_the_daemon_scan_nor_its_shutdown_issue_14() {
    let devices = crate::inventory::can_mknod("planted_fifos_neither_hang_the_daemon_scan");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    crate::inventory::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inventory/tree"),
        &root,
    );
    // Everything but the ChatGPT bundle, whose sighting says the scan went through.
    let _listeners = crate::inventory::plant_special_files(&root, devices, |p| {
        !p.starts_with(root.join(APP_DIR))
    });
    let (config, spool) = write_config(tmp.path());
    let agent = Agent::start(&config, &root);
    wait_for("the first inventory view", || {
        spool.exists() && installed(&spool).iter().any(|(v, _)| v == APP)
    });
    // `run` returns once its shutdown future resolves, which is what SIGTERM resolves in
    // `main`; the daemon must be gone well within the e2e tests' bound.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        agent.stop();
        let _sent = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon did not stop within 30 s of its shutdown signal");
}
