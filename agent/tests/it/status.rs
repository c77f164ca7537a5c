//! `aiscout-agent status` (issue 21): the real daemon reads a capture file into its spool and
//! tries to upload to a collector that refuses connections; `status` then shows, without any
//! secret, what waits in the spool (counts per kind and product, never the matched names), that
//! the last upload failed, the catalog version, the enrollment and the transparency page.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aiscout_agent::config::{self, Overrides};
use aiscout_agent::daemon::{FrameSource, RunOptions};

use crate::support::{ethernet, ipv4_udp, spawn_daemon, write_pcap};

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

fn status(config: &Path, json: bool) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiscout-agent"));
    cmd.arg("status").arg("--config").arg(config).env_remove("AISCOUT_ENROLL_SECRET");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn status_shows_spool_counts_and_the_failed_upload_without_values_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // Five lookups of one ChatGPT name, two of one Claude name, and names in no catalog.
    let names = [
        "chatgpt.com",
        "chatgpt.com",
        "claude.ai",
        "chatgpt.com",
        "intranet.example.org",
        "claude.ai",
        "chatgpt.com",
        "chatgpt.com",
    ];
    let frames: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let id = u16::try_from(i).unwrap();
            ethernet(&ipv4_udp(
                [10, 0, 0, 2],
                20_000 + id,
                [10, 0, 0, 53],
                53,
                &dns_query(id, name),
            ))
        })
        .collect();
    let pcap = dir.path().join("lookups.pcap");
    write_pcap(&pcap, 1, &frames);

    let secret = dir.path().join("enroll_secret");
    std::fs::write(&secret, "status-test-enroll-secret\n").unwrap();
    let key = dir.path().join("catalog.pub");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        format!(
            "collector_url = \"https://127.0.0.1:9/\"\npin_sha256 = \"{}\"\n\
             enroll_secret_file = {:?}\ncatalog_key_file = {:?}\nstate_dir = {:?}\n\
             owner_email = \"ann@example.com\"\n",
            "ab".repeat(32),
            secret.display().to_string(),
            key.display().to_string(),
            state.display().to_string(),
        ),
    )
    .unwrap();

    // Before the agent ever ran: no spool, no upload, not enrolled; still exit 0.
    let (ok, text, err) = status(&file, false);
    assert!(ok, "{err}");
    assert!(text.contains("Enrolled:          no"), "{text}");
    assert!(text.contains("Last upload:       none yet"), "{text}");
    assert!(text.contains("Waiting to be sent: nothing"), "{text}");

    let config = config::load(Some(&file), Overrides::default()).unwrap();
    let options = RunOptions { frames: FrameSource::Files(vec![pcap]), scan: None };
    let (stop, daemon) = spawn_daemon(config, options);
    // The upload is armed by the spool write; it fails at enrollment (connection refused) and
    // the daemon records that.
    let record = state.join(aiscout_agent::status::LAST_UPLOAD);
    let spool = state.join("spool.db");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let spooled = aiscout_agent::spool::contents(&spool)
            .ok()
            .flatten()
            .is_some_and(|c| c.held.iter().map(|h| h.sightings).sum::<u64>() == 7);
        if record.exists() && spooled {
            break;
        }
        assert!(Instant::now() < deadline, "no upload record or spool rows in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _sent = stop.send(());
    daemon.join().unwrap();

    let (ok, json, err) = status(&file, true);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["collector_url"], "https://127.0.0.1:9");
    assert_eq!(v["transparency_url"], "https://127.0.0.1:9/transparency");
    assert_eq!(v["owner_email"], "ann@example.com");
    assert_eq!(v["enrolled"], false);
    let builtin = aiscout_signatures::Catalog::builtin().unwrap().version();
    assert_eq!(v["catalog_version"], builtin);
    assert_eq!(v["last_upload"]["ok"], false);
    assert_eq!(v["last_upload"]["batches"], 0);
    assert!(v["last_upload"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
    assert_eq!(v["spool"]["sightings"], 7);
    let by_kind = v["spool"]["by_kind"].as_array().unwrap();
    let count = |product: &str| {
        by_kind
            .iter()
            .filter(|h| h["kind"] == "dns" && h["product"] == product)
            .map(|h| h["sightings"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(count("openai.chatgpt"), 5, "{json}");
    assert_eq!(count("anthropic.claude"), 2, "{json}");

    let (ok, text, err) = status(&file, false);
    assert!(ok, "{err}");
    assert!(text.contains("failed:"), "{text}");
    assert!(text.contains("openai.chatgpt"), "{text}");
    assert!(text.contains("https://127.0.0.1:9/transparency"), "{text}");

    // Enrolled once a node key exists; the key itself is never shown.
    std::fs::write(state.join("node_key"), "node-key-that-must-stay-private").unwrap();
    let (ok, text, _) = status(&file, false);
    assert!(ok);
    assert!(text.contains("Enrolled:          yes"), "{text}");
    for out in [&text, &json] {
        for secret in
            ["chatgpt.com", "claude.ai", "intranet", "status-test-enroll-secret", "node-key-that"]
        {
            assert!(!out.contains(secret), "status shows {secret:?}:\n{out}");
        }
    }
    // It needs no secret: the enroll secret file can be gone (unreadable to the employee).
    std::fs::remove_file(&secret).unwrap();
    let (ok, _, err) = status(&file, true);
    assert!(ok, "status needs the enroll secret: {err}");
}
