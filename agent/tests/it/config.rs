//! The example configurations shipped in `installer/` stay valid agent configurations.

use std::path::Path;

#[test]
fn installer_example_configs_parse_with_only_known_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for rel in ["installer/linux/agent.toml", "installer/macos/agent.toml"] {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let raw = aiscout_agent::config::parse(&text)
            .unwrap_or_else(|p| panic!("{rel}: {}: {}", p.key, p.message));
        if rel.contains("linux") {
            // macOS gets these from managed settings (see the mobileconfig).
            assert!(raw.collector_url.is_some(), "{rel} sets collector_url");
            assert!(raw.catalog_key_file.is_some(), "{rel} sets catalog_key_file");
        }
    }
}

#[test]
fn check_config_lists_every_problem_and_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.toml");
    // Issue 17: a bad overlay key is named too.
    let overlay = tmp.path().join("overlay.pub");
    std::fs::write(&overlay, "not-a-key\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "collector_url = \"http://plain\"\nupload_interval_secs = 0\noverlay_key_file = {:?}\n",
            overlay.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiscout-agent"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env_remove("AISCOUT_ENROLL_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a configuration error exits 2 (README)");
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "catalog_key_file",
        "collector_url",
        "enroll_secret_file",
        "overlay_key_file",
        "upload_interval_secs",
    ] {
        assert!(err.contains(&format!("  {key}: ")), "{key} missing from:\n{err}");
    }
    assert!(err.contains("5 problems in"), "{err}");
    // The overlay's problem names the overlay, not the catalog (issue 17).
    let line = err.lines().find(|l| l.contains("  overlay_key_file: ")).unwrap_or_default();
    assert!(line.contains("organisation overlay public key"), "{line}");
    assert!(!line.contains("catalog"), "{line}");

    // A missing overlay key file too.
    std::fs::remove_file(&overlay).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiscout-agent"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env_remove("AISCOUT_ENROLL_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("  overlay_key_file: ")).unwrap_or_default();
    assert!(line.contains("organisation overlay public key: cannot open"), "{err}");
}

/// Issue 14 item 12: what `check-config` and `replay` print for typical bad inputs (a missing
/// file, a non-UTF-8 file, bad TOML, a wrong type, a bad URL, a file that is not a capture)
/// names the file or key and never shows Rust debug output.
#[test]
fn errors_for_bad_inputs_name_the_problem_without_rust_debug_output() {
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cases = [
        (vec!["check-config", "--config"], tmp.path().join("missing.toml"), "missing.toml"),
        (vec!["check-config", "--config"], file("latin1.toml", b"owner = \"J\xf6rg\"\n"), "UTF-8"),
        (vec!["check-config", "--config"], file("open.toml", b"[upload\n"), "line 1"),
        (vec!["check-config", "--config"], file("type.toml", b"collector_url = 5\n"), "line 1"),
        (
            vec!["check-config", "--config"],
            file("url.toml", b"collector_url = \"ftp://x\"\n"),
            "collector_url",
        ),
        (vec!["replay"], file("not.pcap", b"not a capture"), "not.pcap"),
        (vec!["replay"], tmp.path().join("gone.pcap"), "gone.pcap"),
    ];
    for (args, path, names) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiscout-agent"))
            .args(&args)
            .arg(&path)
            .env_remove("AISCOUT_ENROLL_SECRET")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} {}", path.display());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(names), "{names} not in:\n{text}");
        for shape in ["Some(", "Os {", "kind:", "Error {", "{ pos:", "Utf8 {"] {
            assert!(!text.contains(shape), "debug output {shape} in:\n{text}");
        }
    }
}
