//! Issue 14 item 11: `run --pcap FILE` read a busy file faster than the spool took its
//! records, and the internal queue dropped half of them. Offline files are now read with
//! backpressure: the real daemon reads a file of 60,000 matching DNS queries (seven times the
//! queue) into a real spool, and every one of them is counted there, with nothing dropped.

use std::path::Path;
use std::time::{Duration, Instant};

use aiscout_agent::config::{self, Overrides};
use aiscout_agent::daemon::{FrameSource, RECORD_QUEUE, RunOptions};

use crate::support::{ethernet, ipv4_udp, spawn_daemon, write_pcap};

const QUERIES: usize = 60_000;
const LINKTYPE_ETHERNET: u32 = 1;

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend(label.as_bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    m
}

/// (sum of counts, dropped counter) in the spool; zeros until the daemon made its tables.
fn spooled(spool: &Path) -> (i64, i64) {
    let Ok(conn) = rusqlite::Connection::open(spool) else { return (0, 0) };
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let sum = conn
        .query_row("SELECT coalesce(sum(count), 0) FROM sightings", [], |r| r.get(0))
        .unwrap_or(0);
    let dropped = conn
        .query_row("SELECT value FROM counters WHERE name = 'dropped'", [], |r| r.get(0))
        .unwrap_or(0);
    (sum, dropped)
}

#[test]
fn a_busy_capture_file_reaches_the_spool_whole_with_nothing_dropped() {
    const { assert!(QUERIES > 4 * RECORD_QUEUE, "the file must overrun the queue several times") };
    let dir = tempfile::tempdir().unwrap();
    let names = ["chatgpt.com", "claude.ai", "api.openai.com"];
    let frames: Vec<Vec<u8>> = (0..QUERIES)
        .map(|i| {
            let id = u16::try_from(i % 65_536).unwrap();
            let port = 10_000 + u16::try_from(i % 50_000).unwrap();
            let query = dns_query(id, names[i % names.len()]);
            ethernet(&ipv4_udp([10, 0, 0, 2], port, [10, 0, 0, 53], 53, &query))
        })
        .collect();
    let pcap = dir.path().join("busy.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, &frames);

    // A collector that refuses connections (a closed loopback port): everything stays in the
    // spool for the test to count.
    let secret = dir.path().join("enroll_secret");
    std::fs::write(&secret, "test-secret\n").unwrap();
    let key = dir.path().join("catalog.pub");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        format!(
            "collector_url = \"https://127.0.0.1:9\"\npin_sha256 = \"{}\"\n\
             enroll_secret_file = {:?}\ncatalog_key_file = {:?}\nstate_dir = {:?}\n",
            "ab".repeat(32),
            secret.display().to_string(),
            key.display().to_string(),
            state.display().to_string(),
        ),
    )
    .unwrap();
    let config = config::load(Some(&file), Overrides::default()).unwrap();
    let options = RunOptions { frames: FrameSource::Files(vec![pcap]), scan: None };
    let (stop, daemon) = spawn_daemon(config, options);

    // Every query is a sighting: wait (bounded) until the spool holds them all. Before the
    // fix the queue dropped a share of them and this never came true.
    let spool = state.join("spool.db");
    let deadline = Instant::now() + Duration::from_secs(300);
    let want = i64::try_from(QUERIES).unwrap();
    loop {
        let (sum, dropped) = spooled(&spool);
        assert_eq!(dropped, 0, "the daemon dropped sightings of an offline file");
        if sum >= want {
            break;
        }
        assert!(Instant::now() < deadline, "only {sum} of {want} sightings reached the spool");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _sent = stop.send(());
    daemon.join().unwrap();
    assert_eq!(spooled(&spool), (want, 0));
}
