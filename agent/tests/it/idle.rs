//! Issue 22: "An agent that laptops do not notice." An idle agent capturing live sleeps in the
//! kernel instead of polling: the real binary, capturing on loopback with the inventory watch
//! and the spool running, must stay below a generous bound of context switches per second
//! while nothing matching happens (a polling loop coming back would exceed it many times
//! over), must still see a DNS query sent afterwards, and must stop promptly on SIGTERM. A
//! live source must also wake for packets and for its breaker.
//!
//! Live capture needs root (CAP_NET_RAW). Without it these tests print SKIPPED, except under
//! `CI=true`, where they fail instead: CI runs as root and must run them.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aiscout_agent::capture::{LiveSource, Wake};

/// The measurement window.
const IDLE: Duration = Duration::from_secs(20);
/// Context switches per second (all threads) an idle agent stays below. Generous: the goal is
/// two; the polling capture this replaced did about fifty per interface.
const MAX_SWITCHES_PER_SEC: f64 = 20.0;
/// Generous waits on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long SIGTERM may take to stop the agent (the e2e tests' bound).
const SHUTDOWN: Duration = Duration::from_secs(30);

/// Whether live capture can run here; panics under `CI=true` when it cannot.
// The SKIPPED line goes to the test's output, like the other skipping tests' lines.
#[allow(clippy::print_stdout)]
fn can_capture(test: &str) -> bool {
    let root = euid_is_root();
    if root {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{test} needs root for live capture on lo, and CI=true forbids skipping it"
    );
    println!("SKIPPED {test}: live capture on lo needs root");
    false
}

pub(crate) fn euid_is_root() -> bool {
    // The effective uid, from /proc (the test crate links nothing to ask the kernel directly).
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

/// A DNS query for `name` (type A), as `dig` would send it.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Sends one DNS query to 127.0.0.1:53; nothing needs to listen there, the capture sees it.
fn send_query(name: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&dns_query(name), "127.0.0.1:53").unwrap();
}

/// Voluntary plus involuntary context switches per thread id of `pid`.
fn switches(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        // A thread can exit between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        let n: u64 = status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(task.file_name().to_string_lossy().into_owned(), n);
    }
    out
}

/// A thread's name and id, for the report.
fn thread_name(pid: u32, tid: &str) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
    format!("{} {tid}", comm.trim())
}

/// Switches between two samples: threads present in both count their difference, threads
/// started in between count everything (a thread that ended in between is not seen).
fn switches_between(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> u64 {
    after.iter().map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum()
}

/// The agent binary running `run` as a child, killed on drop.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Agent {
    fn start(config: &Path, scan_root: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aiscout-agent"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--scan-root")
            .arg(scan_root)
            .env("AISCOUT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Agent { child, lines, log: Vec::new() }
    }

    fn wait_line(&mut self, what: &str, within: Duration) {
        let until = Instant::now() + within;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(what);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("the agent did not log {what:?} within {within:?}:\n{}", self.log.join("\n"));
    }

    fn drain_log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Already gone is fine.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
    let secret = dir.join("enroll_secret");
    std::fs::write(&secret, "test-secret\n").unwrap();
    let key = dir.join("catalog.pub");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let state = dir.join("state");
    let file = dir.join("agent.toml");
    // A closed loopback port as the collector: heartbeats fail (logged once at start), and
    // sightings stay in the spool for the test to read.
    std::fs::write(
        &file,
        format!(
            "collector_url = \"https://127.0.0.1:9\"\n\
             pin_sha256 = \"{}\"\n\
             enroll_secret_file = {:?}\n\
             catalog_key_file = {:?}\n\
             state_dir = {:?}\n\
             interfaces = [\"lo\"]\n",
            "ab".repeat(32),
            secret.display().to_string(),
            key.display().to_string(),
            state.display().to_string(),
        ),
    )
    .unwrap();
    (file, state.join("spool.db"))
}

fn spool_values(spool: &Path) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open(spool) else { return Vec::new() };
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let Ok(mut stmt) = conn.prepare("SELECT value FROM sightings") else { return Vec::new() };
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn idle_agent_capturing_on_lo_sleeps_sees_a_query_and_stops_promptly_issue_22() {
    if !can_capture("idle_agent_capturing_on_lo_sleeps_sees_a_query_and_stops_promptly_issue_22") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (config, spool) = write_config(tmp.path());
    // The inventory fixture tree as the machine root: watched folders holding apps and
    // extensions that every scan reads, so a watch that took its own reads for changes (and
    // so rescanned forever) would show here.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    crate::inventory::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inventory/tree"),
        &root,
    );
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    // Issue 14 item 7: users' FIFOs, sockets, device nodes and `/dev/zero` links in place of
    // every file outside `/Applications` (package database, model manifests, extension
    // manifests, MCP configs): the scan must neither block nor keep SIGTERM from working.
    let apps = root.join("Applications");
    let _listeners = crate::inventory::plant_special_files(&root, true, |p| !p.starts_with(&apps));
    let mut agent = Agent::start(&config, &root);
    agent.wait_line("Agent started.", DEADLINE);
    // Start-up is over once the first heartbeat was tried (the closed port refuses it) and the
    // first inventory view, sent after the watch is set up, is in the spool.
    agent.wait_line("Heartbeat failed.", DEADLINE);
    let until = Instant::now() + DEADLINE;
    while spool_values(&spool).is_empty() {
        assert!(Instant::now() < until, "no inventory view was spooled:\n{}", agent.drain_log());
        std::thread::sleep(Duration::from_millis(100));
    }

    let pid = agent.child.id();
    let before = switches(pid);
    let started = Instant::now();
    // The measurement window: the agent is left alone, nothing here waits for it.
    std::thread::sleep(IDLE);
    let after = switches(pid);
    let secs = started.elapsed().as_secs_f64();
    let total = switches_between(&before, &after);
    let per_sec = total as f64 / secs;
    let mut per_thread: Vec<(String, u64)> = after
        .iter()
        .map(|(tid, n)| {
            (thread_name(pid, tid), n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        })
        .collect();
    per_thread.sort();
    println!(
        "idle agent: {total} context switches in {secs:.1} s ({per_sec:.2}/s); per thread {per_thread:?}"
    );
    let log = agent.drain_log();
    assert!(!log.contains("Capture unavailable"), "capture must run on lo:\n{log}");
    // Each thread says what it is (`top -H`, `ps -L`): the spool writer, the inventory watch
    // and one capture thread per interface.
    for name in ["spool", "inventory", "cap lo"] {
        assert!(
            per_thread.iter().any(|(thread, _)| thread.rsplit_once(' ').map(|t| t.0) == Some(name)),
            "no thread named {name:?}: {per_thread:?}"
        );
    }
    assert!(
        per_sec < MAX_SWITCHES_PER_SEC,
        "an idle agent woke {per_sec:.1} times/s (bound {MAX_SWITCHES_PER_SEC}); per thread \
         {per_thread:?}\n{log}"
    );

    // Still capturing: a query for a catalog domain becomes a sighting.
    send_query("api.openai.com");
    let until = Instant::now() + DEADLINE;
    while !spool_values(&spool).iter().any(|v| v == "api.openai.com") {
        assert!(
            Instant::now() < until,
            "the query was not spooled within {DEADLINE:?}:\n{}",
            agent.drain_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM while idle, capturing and watching: a clean, prompt exit.
    let stopping = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < SHUTDOWN,
            "SIGTERM did not stop the agent within {SHUTDOWN:?}:\n{}",
            agent.drain_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "SIGTERM must exit 0: {exit:?}\n{}", agent.drain_log());
    agent.wait_line("Agent stopped.", DEADLINE);
}

#[test]
fn a_live_source_wakes_for_packets_and_for_its_breaker() {
    if !can_capture("a_live_source_wakes_for_packets_and_for_its_breaker") {
        return;
    }
    let mut source = LiveSource::open("lo").unwrap();
    let breaker = source.breaker();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        // Bounded: the breaker ends it; each turn either delivers frames or returns.
        for _ in 0..10_000 {
            let mut frames = 0u64;
            match source.next_batch(None, |_| frames += 1).unwrap() {
                Wake::Frames(n) => {
                    assert_eq!(n, frames);
                    tx.send(n).unwrap();
                }
                Wake::Idle => {}
                Wake::Deadline => panic!("no deadline was given"),
                Wake::Stopped => return,
            }
        }
        panic!("ten thousand batches without a stop");
    });
    // A packet the kernel filter admits wakes the sleeping capture (after the buffer timeout).
    // The socket may not be open yet when the first query leaves, so send until one arrives.
    let until = Instant::now() + DEADLINE;
    loop {
        send_query("example.org");
        if rx.recv_timeout(Duration::from_secs(2)).is_ok() {
            break;
        }
        assert!(Instant::now() < until, "no frame delivered within {DEADLINE:?}");
    }
    // The breaker wakes it with nothing to read, and it returns.
    breaker.stop();
    let stopped = Instant::now();
    while !thread.is_finished() {
        assert!(stopped.elapsed() < DEADLINE, "the breaker did not stop the capture");
        std::thread::sleep(Duration::from_millis(20));
    }
    thread.join().unwrap();
    // A source stopped before it waits returns at once, deadline or not, once it has
    // delivered what was already queued (other tests may be sending on lo).
    let mut again = LiveSource::open("lo").unwrap();
    again.breaker().stop();
    let stopped = (0..100).any(|_| {
        again.next_batch(Some(Instant::now() + DEADLINE), |_| {}).unwrap() == Wake::Stopped
    });
    assert!(stopped, "a stopped source kept delivering");
    // With a deadline and no breaker, a run returns once the deadline has passed.
    let mut timed = LiveSource::open("lo").unwrap();
    let deadline = Instant::now() + Duration::from_millis(300);
    timed.run(Some(deadline), |_| {}).unwrap();
    assert!(Instant::now() >= deadline);
}
