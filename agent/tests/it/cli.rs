//! The `aiscout-agent` binary: flags, output shape, summary line and exit codes.

use std::process::Command;

use crate::support::data_dir;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aiscout-agent"))
}

#[test]
fn replay_json_prints_one_object_per_matched_observation_and_a_summary() {
    let out = agent()
        .args(["replay", "--json"])
        .arg(data_dir().join("pcap/dig-udp.pcap"))
        .arg(data_dir().join("pcap/chromium-quic.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let records: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!records.is_empty());
    for r in &records {
        for key in ["kind", "name", "product", "ts", "src", "dst"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert!(r["product"].is_string(), "only matches without --all: {r}");
        if r["kind"] != "dns" {
            assert!(r["alpn"].is_array() && r["ech"].is_boolean());
        }
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr.lines().last().unwrap();
    for key in ["packets=", "bytes=", "observations=", "matches=", "drops=", "elapsed="] {
        assert!(line.contains(key), "summary {line:?} lacks {key}");
    }
}

#[test]
fn replay_all_prints_unmatched_names_too() {
    let run = |all: bool| {
        let mut cmd = agent();
        cmd.args(["replay", "--json"]);
        if all {
            cmd.arg("--all");
        }
        let out = cmd.arg(data_dir().join("pcap/dig-udp.pcap")).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!run(false).contains("example.org"));
    assert!(run(true).contains("\"name\":\"example.org\""));
}

#[test]
fn replay_text_output_is_one_line_per_observation() {
    let out = agent().arg("replay").arg(data_dir().join("pcap/curl-ipv4.pcap")).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.contains(" tls_sni api.openai.com openai.api "), "{stdout}");
}

#[test]
fn missing_file_exits_one_and_catalog_without_key_is_a_usage_error() {
    let out = agent().args(["replay", "/nonexistent/x.pcap"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("cannot open capture file"));
    let out = agent().args(["replay", "--catalog", "c.bin", "x.pcap"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn tampered_catalog_artifact_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("catalog.bin");
    let key = dir.path().join("catalog.pub");
    std::fs::write(&artifact, b"not a catalog").unwrap();
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let out = agent()
        .args(["replay", "--catalog"])
        .arg(&artifact)
        .arg("--catalog-key")
        .arg(&key)
        .arg(data_dir().join("pcap/dig-udp.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("refused"));
}

/// A nested failure prints each cause once (issue 18): `status` on a spool that is not SQLite
/// names the file and SQLite's reason once each, and leaves the file as it was.
#[test]
fn status_names_a_corrupt_spool_and_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    let junk = "this is not SQLite\n".repeat(200);
    std::fs::write(&spool, &junk).unwrap();
    let out = agent()
        .args(["status", "--collector", "https://127.0.0.1:1", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&format!("spool database {}: ", spool.display())), "{text}");
    assert_eq!(text.matches("not a database").count(), 1, "{text}");
    assert_eq!(text.matches(&spool.display().to_string()).count(), 1, "{text}");
    assert_eq!(std::fs::read_to_string(&spool).unwrap(), junk, "status only reads");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing beside it");
}

/// An IO failure under the agent's own error prints the operating system's reason once
/// (issue 18): `run` whose state folder cannot be made (its parent is a file), and `replay`
/// with a catalog file that does not exist.
#[test]
fn an_io_failure_under_an_agent_error_prints_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let key = dir.path().join("catalog.pub");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let state = file.join("state");
    let out = agent()
        .args(["run", "--no-capture", "--no-scan", "--collector", "https://127.0.0.1:1"])
        .arg("--catalog-key")
        .arg(&key)
        .arg("--state-dir")
        .arg(&state)
        .env("AISCOUT_ENROLL_SECRET", "secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot create state folder {}: ", state.display())), "{err}");
    // ENOTDIR: a path component is a file.
    let reason = std::io::Error::from_raw_os_error(20).to_string();
    assert_eq!(err.matches(&reason).count(), 1, "{err}");

    let missing = dir.path().join("no-catalog.bin");
    let out = agent()
        .args(["replay", "--catalog"])
        .arg(&missing)
        .arg("--catalog-key")
        .arg(&key)
        .arg(data_dir().join("pcap/dig-udp.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot read {}: ", missing.display())), "{err}");
    // ENOENT.
    let reason = std::io::Error::from_raw_os_error(2).to_string();
    assert_eq!(err.matches(&reason).count(), 1, "{err}");
}
