//! The agent configurations the collector writes (`mdm-package`) and the installers ship are
//! checked by the agent itself: `aiscout-agent check-config` on each, so a key the agent does
//! not know can never reach a fleet (this replaced a hand-kept list of agent keys).

use std::path::Path;
use std::process::Command;

use aiscout_e2e::{Collector, binary, workspace_root};

const URL: &str = "https://collector.example.com:8443";

/// `text` with each absolute path value of the agent's file keys moved into `dir` (a copy of
/// the file the package ships beside the config where there is one), so the check can open
/// them here: every other key and value stays as written.
fn localise(text: &str, package: &Path, dir: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let moved = line.split_once(" = \"/").and_then(|(key, rest)| {
            let path = rest.strip_suffix('"')?;
            let name = Path::new(path).file_name()?.to_str()?.to_owned();
            let local = dir.join(&name);
            if key.ends_with("_file") {
                let shipped = package.join(&name);
                let content = if shipped.is_file() {
                    std::fs::read(&shipped).unwrap()
                } else if key == "catalog_key_file" {
                    format!("{}\n", "5a".repeat(32)).into_bytes()
                } else {
                    b"a-secret-of-enough-length-0123456789abcdef\n".to_vec()
                };
                std::fs::write(&local, content).unwrap();
            }
            Some(format!("{key} = {:?}", local.display().to_string()))
        });
        out.push_str(moved.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn check_config(config: &Path) -> std::process::Output {
    Command::new(binary("aiscout-agent", "aiscout-agent").unwrap())
        .args(["check-config", "--config"])
        .arg(config)
        .env_remove("AISCOUT_ENROLL_SECRET")
        .output()
        .unwrap()
}

#[test]
fn the_linux_packages_mdm_package_writes_pass_the_agents_check_config() {
    let dir = tempfile::tempdir().unwrap();
    // A real collector writes its certificate, so the package carries a real pin.
    let data = dir.path().join("data");
    let collector = Collector::start(&data, 0, &[]).unwrap();
    drop(collector);
    let secret = dir.path().join("enroll_secret");
    std::fs::write(&secret, "enroll-secret-0123456789abcdef0123456789\n").unwrap();
    let key = dir.path().join("catalog.pub");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();

    for (name, extra) in [("pinned", &[][..]), ("no-pin", &["--no-pin"][..])] {
        let out_dir = dir.path().join(name);
        let out = Command::new(binary("aiscout-collector", "aiscout-collector").unwrap())
            .args(["mdm-package", "--platform", "linux", "--collector-url", URL, "--out"])
            .arg(&out_dir)
            .arg("--data-dir")
            .arg(&data)
            .arg("--enroll-secret-file")
            .arg(&secret)
            .arg("--catalog-key")
            .arg(&key)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let text = std::fs::read_to_string(out_dir.join("agent.toml")).unwrap();
        assert_eq!(text.contains("pin_sha256 = "), name == "pinned", "{text}");
        let local = dir.path().join(format!("{name}-local"));
        std::fs::create_dir_all(&local).unwrap();
        let config = local.join("agent.toml");
        std::fs::write(&config, localise(&text, &out_dir, &local)).unwrap();
        let checked = check_config(&config);
        assert!(checked.status.success(), "{name}: the agent refuses {text}\n{checked:?}");
        let said = String::from_utf8_lossy(&checked.stdout);
        assert!(said.starts_with(&format!("ok: collector {URL}")), "{said}");
    }
}

#[test]
fn the_installers_example_configs_use_only_keys_the_agent_knows() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace_root().join("installer");
    for example in ["linux/agent.toml", "macos/agent.toml"] {
        let text = std::fs::read_to_string(root.join(example)).unwrap();
        // Every commented-out setting uncommented, so uncommenting one never breaks the file.
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(setting)
                    if setting.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    setting
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let local = dir.path().join(example.replace('/', "-"));
        std::fs::create_dir_all(&local).unwrap();
        let config = local.join("agent.toml");
        std::fs::write(&config, localise(&all, &root, &local)).unwrap();
        let checked = check_config(&config);
        let err = String::from_utf8_lossy(&checked.stderr);
        assert!(!err.contains("unknown field"), "{example} has a key the agent refuses: {err}");
        // The example's URL is a placeholder, a CA file is a PEM the test does not make, and
        // the alternatives it offers (a CA file or a pin) may not both be set: such values may
        // be refused, but every problem must name a key the agent knows, never a line it could
        // not read.
        for problem in err.lines().skip(1) {
            let key = problem.trim().split(':').next().unwrap_or_default();
            assert!(!key.starts_with("line ") && key != "(file)", "{example}: {problem}");
        }
    }
}
