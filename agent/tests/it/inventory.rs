//! Endpoint inventory against fixture trees laid out like real macOS, Linux and Windows
//! machines (`tests/data/inventory/`, made by `make-tree.py`), hostile trees, and a live scan.

use std::path::{Path, PathBuf};

use aiscout_agent::inventory::{self, Finding, Kind, ScanOptions};
use aiscout_signatures::{Catalog, Index, source};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inventory")
}

/// The shipped catalog plus one fixture product for the sources the shipped catalog has no ids
/// for yet (Debian packages, Firefox add-ons).
fn index() -> Index {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../signatures/catalog");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.push((
        "fixture.toml".into(),
        r#"vendor = "Fixture"
[[product]]
id = "fixture.ai-tool"
name = "Fixture AI tool"
category = "chat"
sources = ["agent/tests/data/inventory: exercises sources without shipped ids"]
linux_packages = ["aitool-fixture", "aitool-removed"]
firefox_extensions = ["ai-helper@fixture.example"]
packages = ["npm:@fixture-ai/cli", "npm:fixture-ai-agent", "pypi:fixture-ai-chat", "brew:fixture-ai", "cargo:fixture-ai-cli"]
"#
        .into(),
    ));
    let catalog: Catalog =
        source::compile(files.iter().map(|(n, t)| (n.as_str(), t.as_str())), 1).unwrap();
    Index::new(catalog)
}

fn row(f: &Finding) -> String {
    format!(
        "{} {} {} user={} path={} version={}",
        f.kind.as_str(),
        f.product,
        f.value,
        f.user.as_deref().unwrap_or("-"),
        f.path.as_deref().unwrap_or("-"),
        f.version.as_deref().unwrap_or("-"),
    )
}

fn fixture_scan(root: &Path) -> inventory::Scan {
    let mut options = ScanOptions::root(root);
    options.registry_exports.push(data().join("uninstall.reg"));
    inventory::scan(&index(), &options)
}

#[test]
fn fixture_tree_scan_finds_every_source_and_no_decoy() {
    let scan = fixture_scan(&data().join("tree"));
    let rows: Vec<String> = scan.findings.iter().map(row).collect();
    let expected = [
        "app anthropic.claude com.anthropic.claudefordesktop user=- path=/Applications/Utilities/Claude.app version=0.9.3",
        "app anysphere.cursor Cursor.exe user=carol path=/Users/carol/AppData/Local/Programs/cursor/Cursor.exe version=-",
        "app anysphere.cursor com.todesktop.230313mzl4w4u92 user=alice path=/Users/alice/Applications/Cursor.app version=1.4.2",
        "app anysphere.cursor cursor.desktop user=- path=/usr/share/applications/cursor.desktop version=-",
        "app fixture.ai-tool aitool-fixture user=- path=/var/lib/dpkg/status version=1.2.3",
        "app ollama.ollama Ollama version 0.12.3 user=- path=HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{44E83376-CE68-45EB-8FC1-393500EB558C}_is1 version=0.12.3",
        "app openai.chatgpt com.openai.chat user=- path=/Applications/ChatGPT.app version=1.2025.140",
        "cli anthropic.claude-code claude user=bob path=/home/bob/.local/bin/claude version=-",
        "cli ollama.ollama ollama user=- path=/usr/local/bin/ollama version=-",
        "extension anthropic.claude fcoeoabgfenejglbffodgkkbkcdhcgfn user=alice path=/Users/alice/Library/Application Support/Google/Chrome/Default/Extensions/fcoeoabgfenejglbffodgkkbkcdhcgfn version=1.0.2",
        "extension anthropic.claude fcoeoabgfenejglbffodgkkbkcdhcgfn user=carol path=/Users/carol/AppData/Local/Microsoft/Edge/User Data/Default/Extensions/fcoeoabgfenejglbffodgkkbkcdhcgfn version=1.0.0",
        "extension anthropic.claude-code anthropic.claude-code user=alice path=/Users/alice/.cursor/extensions/anthropic.claude-code-2.0.1 version=2.0.1",
        "extension fixture.ai-tool ai-helper@fixture.example user=bob path=/home/bob/.mozilla/firefox/abcd1234.default-release/extensions.json version=4.2",
        "extension github.copilot com.github.copilot user=bob path=/home/bob/.local/share/JetBrains/IntelliJIdea2025.2/github-copilot-intellij version=1.5.59",
        "extension github.copilot github.copilot user=alice path=/Users/alice/.vscode/extensions/extensions.json version=1.250.0",
        "mcp_server anthropic.claude github: npx -y @modelcontextprotocol/server-github user=alice path=/Users/alice/Library/Application Support/Claude/claude_desktop_config.json version=-",
        "mcp_server anthropic.claude remote-docs: https://mcp.internal.example/sse user=alice path=/Users/alice/Library/Application Support/Claude/claude_desktop_config.json version=-",
        "mcp_server anthropic.claude-code postgres: uvx mcp-server-postgres user=bob path=/home/bob/.claude.json version=-",
        "mcp_server anysphere.cursor filesystem: npx -y @modelcontextprotocol/server-filesystem /Users/alice/src user=alice path=/Users/alice/.cursor/mcp.json version=-",
        "mcp_server github.copilot playwright: npx @playwright/mcp@latest user=carol path=/Users/carol/AppData/Roaming/Code/User/settings.json version=-",
        "model lmstudio.lm-studio lmstudio-community/Qwen3-8B-GGUF user=bob path=/home/bob/.lmstudio/models/lmstudio-community/Qwen3-8B-GGUF version=-",
        "model ollama.ollama llama3.2:3b user=bob path=/home/bob/.ollama/models/manifests/registry.ollama.ai/library/llama3.2/3b version=-",
    ];
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    let mut got = rows.clone();
    got.sort();
    assert_eq!(got, want, "\nfull scan:\n{}", rows.join("\n"));
    let ollama_model =
        scan.findings.iter().find(|f| f.kind == Kind::Model && f.value == "llama3.2:3b");
    assert_eq!(ollama_model.and_then(|f| f.detail.as_deref()), Some("2019387129 bytes"));
    let claude = scan
        .findings
        .iter()
        .find(|f| f.path.as_deref().is_some_and(|p| p.contains("Chrome/Default")));
    assert_eq!(
        claude.and_then(|f| f.detail.as_deref()),
        Some("chrome Default: Claude"),
        "localised name resolved"
    );
}

#[test]
fn secrets_in_mcp_configs_never_reach_the_output() {
    let scan = fixture_scan(&data().join("tree"));
    let out: String = scan.findings.iter().map(|f| f.to_json().to_string()).collect();
    for secret in ["fixture_secret", "ghp_", "PGPASSWORD", "docs-user", "pw@"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
}

#[test]
fn malformed_files_are_counted_warnings_naming_the_path() {
    let scan = fixture_scan(&data().join("tree"));
    let paths: Vec<&str> = scan.warnings.iter().map(|w| w.path.as_str()).collect();
    for expected in [
        "/Applications/Broken.app/Contents/Info.plist",
        "/Users/alice/Library/Application Support/Google/Chrome/Profile 3/Extensions/fcoeoabgfenejglbffodgkkbkcdhcgfn/0.9_0/manifest.json",
        "/home/bob/.mozilla/firefox/efgh5678.work/extensions.json",
        "/home/bob/.local/share/applications/cursor.desktop",
    ] {
        assert!(paths.contains(&expected), "no warning for {expected}: {:#?}", scan.warnings);
    }
    assert_eq!(scan.warning_count, scan.warnings.len() as u64);
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn mkdir(root: &Path, rel: &str) {
    std::fs::create_dir_all(root.join(rel)).unwrap();
}

/// Package-manager installs of the fixture product in every ecosystem and place the scanner
/// knows, each beside near misses (a longer name, the same name in another scope or ecosystem,
/// a folder that is not site-packages) that must not match.
#[test]
fn package_installs_are_found_per_ecosystem_and_near_misses_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    // npm: a scoped package under the system prefix, an unscoped one under a user prefix and
    // under an nvm-managed Node; near misses: same name without the scope, a longer name.
    write(r, "usr/local/lib/node_modules/@fixture-ai/cli/package.json", r#"{"version":"1.4.0"}"#);
    write(r, "usr/local/lib/node_modules/cli/package.json", r#"{"version":"9"}"#);
    write(r, "usr/local/lib/node_modules/@fixture-ai/cli-extra/package.json", "{}");
    write(r, "home/bob/.npm-global/lib/node_modules/fixture-ai-agent/package.json", "not json");
    write(
        r,
        "home/bob/.nvm/versions/node/v22.1.0/lib/node_modules/fixture-ai-agent/package.json",
        r#"{"version":"0.3.1"}"#,
    );
    mkdir(r, "home/bob/.nvm/versions/node/v22.1.0/lib/node_modules/fixture-ai-agents");
    // Python: system dist-packages, user site-packages (normalised name), a pipx venv, a uv
    // tool venv; near misses: a longer name and a dist-info outside site-packages.
    mkdir(r, "usr/lib/python3/dist-packages/fixture_ai_chat-2.0.1.dist-info");
    mkdir(r, "usr/lib/python3/dist-packages/fixture_ai_chatter-2.0.1.dist-info");
    mkdir(r, "home/bob/.local/lib/python3.12/site-packages/Fixture.AI_Chat-2.1-py3.12.egg-info");
    mkdir(
        r,
        "home/bob/.local/share/pipx/venvs/fixture-ai-chat/lib/python3.11/site-packages/fixture_ai_chat-2.2.dist-info",
    );
    mkdir(
        r,
        "home/bob/.local/share/uv/tools/fixture-ai-chat/lib/python3.13/site-packages/fixture_ai_chat-2.3.dist-info",
    );
    mkdir(r, "home/bob/projects/venv/fixture_ai_chat-9.9.dist-info");
    // Homebrew: a formula in the Cellar and a cask in the Caskroom; near miss: a longer name.
    mkdir(r, "opt/homebrew/Cellar/fixture-ai/0.9.0");
    mkdir(r, "opt/homebrew/Cellar/fixture-ai/1.0.0");
    mkdir(r, "usr/local/Caskroom/fixture-ai/3.1");
    mkdir(r, "opt/homebrew/Cellar/fixture-ai-lite/1.0.0");
    // cargo: .crates2.json for one user, .crates.toml for another; near misses in both.
    write(
        r,
        "home/bob/.cargo/.crates2.json",
        r#"{"installs":{"fixture-ai-cli 0.5.0 (registry+https://github.com/rust-lang/crates.io-index)":{"bins":["fai"]},"fixture-ai 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)":{"bins":["x"]}}}"#,
    );
    write(
        r,
        "Users/alice/.cargo/.crates.toml",
        "[v1]\n\"fixture_ai_cli 0.4.0 (registry+https://github.com/rust-lang/crates.io-index)\" = [\"fai\"]\n\"fixture-ai-cli-x 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)\" = [\"y\"]\n",
    );
    let scan = inventory::scan(&index(), &ScanOptions::root(r));
    let rows: Vec<String> = scan.findings.iter().map(row).collect();
    assert_eq!(
        rows,
        vec![
            "cli fixture.ai-tool brew:fixture-ai user=- path=/opt/homebrew/Cellar/fixture-ai version=1.0.0",
            "cli fixture.ai-tool brew:fixture-ai user=- path=/usr/local/Caskroom/fixture-ai version=3.1",
            "cli fixture.ai-tool cargo:fixture-ai-cli user=bob path=/home/bob/.cargo/.crates2.json version=0.5.0",
            "cli fixture.ai-tool cargo:fixture_ai_cli user=alice path=/Users/alice/.cargo/.crates.toml version=0.4.0",
            "cli fixture.ai-tool npm:@fixture-ai/cli user=- path=/usr/local/lib/node_modules/@fixture-ai/cli version=1.4.0",
            "cli fixture.ai-tool npm:fixture-ai-agent user=bob path=/home/bob/.npm-global/lib/node_modules/fixture-ai-agent version=-",
            "cli fixture.ai-tool npm:fixture-ai-agent user=bob path=/home/bob/.nvm/versions/node/v22.1.0/lib/node_modules/fixture-ai-agent version=0.3.1",
            "cli fixture.ai-tool pypi:Fixture.AI_Chat user=bob path=/home/bob/.local/lib/python3.12/site-packages/Fixture.AI_Chat-2.1-py3.12.egg-info version=2.1",
            "cli fixture.ai-tool pypi:fixture_ai_chat user=- path=/usr/lib/python3/dist-packages/fixture_ai_chat-2.0.1.dist-info version=2.0.1",
            "cli fixture.ai-tool pypi:fixture_ai_chat user=bob path=/home/bob/.local/share/pipx/venvs/fixture-ai-chat/lib/python3.11/site-packages/fixture_ai_chat-2.2.dist-info version=2.2",
            "cli fixture.ai-tool pypi:fixture_ai_chat user=bob path=/home/bob/.local/share/uv/tools/fixture-ai-chat/lib/python3.13/site-packages/fixture_ai_chat-2.3.dist-info version=2.3",
        ]
    );
    // The malformed package.json costs its version and one warning naming it, nothing more.
    let warned: Vec<&str> = scan.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        warned,
        vec!["/home/bob/.npm-global/lib/node_modules/fixture-ai-agent/package.json"]
    );
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[cfg(unix)]
#[test]
fn hostile_tree_symlink_loops_escapes_and_huge_files_are_skipped() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    copy_tree(&data().join("tree"), &root);
    // A symlink loop where an app should be, and a link out of the root.
    symlink(root.join("Applications/Loop.app"), root.join("Applications/Loop.app")).unwrap();
    let outside = tmp.path().join("outside.app");
    std::fs::create_dir_all(outside.join("Contents")).unwrap();
    std::fs::copy(
        root.join("Applications/ChatGPT.app/Contents/Info.plist"),
        outside.join("Contents/Info.plist"),
    )
    .unwrap();
    symlink(&outside, root.join("Applications/Escape.app")).unwrap();
    // A 2 GB (sparse) file where an extension manifest should be.
    let ext = root.join("Users/alice/Library/Application Support/Google/Chrome/Profile 4/Extensions/fcoeoabgfenejglbffodgkkbkcdhcgfn/9.9_0");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::File::create(ext.join("manifest.json"))
        .unwrap()
        .set_len(2 * 1024 * 1024 * 1024)
        .unwrap();
    // An unreadable folder (root ignores permissions, so only a non-root run sees this).
    let scan = fixture_scan(&root);
    let reasons: Vec<String> =
        scan.warnings.iter().map(|w| format!("{}: {}", w.path, w.reason)).collect();
    let has = |needle: &str| reasons.iter().any(|r| r.contains(needle));
    assert!(has("/Applications/Loop.app/Contents/Info.plist: cannot resolve"), "{reasons:#?}");
    assert!(
        has("/Applications/Escape.app/Contents/Info.plist: link points outside the scanned root"),
        "{reasons:#?}"
    );
    assert!(
        has(
            "Profile 4/Extensions/fcoeoabgfenejglbffodgkkbkcdhcgfn/9.9_0/manifest.json: 2147483648 bytes, larger than"
        ),
        "{reasons:#?}"
    );
    // The escaped ChatGPT bundle was not read: only the real one is reported.
    let chatgpt: Vec<&Finding> =
        scan.findings.iter().filter(|f| f.value == "com.openai.chat").collect();
    assert_eq!(chatgpt.len(), 1, "{chatgpt:#?}");
    // Everything else is still found.
    assert!(scan.findings.len() >= 22, "{}", scan.findings.len());
}

#[test]
fn live_scan_of_this_machine_completes_and_reports_only_catalog_matches() {
    let ix = Index::new(Catalog::builtin().unwrap());
    let scan = inventory::scan(&ix, &ScanOptions::live());
    assert!(scan.dirs_listed > 0, "the live scan listed no folder at all");
    for f in &scan.findings {
        // Every finding must be a product the catalog knows, found by a value the index maps
        // to that product (MCP servers and models belong to their client's product).
        let product = ix.catalog().product(&f.product);
        assert!(product.is_some(), "unknown product in {f:?}");
        let rematched = match f.kind {
            Kind::Cli => ix.cli(&f.value),
            Kind::Process => ix.process(&f.value),
            Kind::LocalRuntime => f
                .value
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .and_then(|p| ix.local_port(p)),
            _ => None,
        };
        if matches!(f.kind, Kind::Cli | Kind::Process | Kind::LocalRuntime) {
            assert_eq!(rematched.map(|m| m.product.id.as_str()), Some(f.product.as_str()), "{f:?}");
        }
    }
    for common in ["bash", "sh", "cargo", "rustc", "sshd", "systemd", "postgres", "redis-server"] {
        assert!(!scan.findings.iter().any(|f| f.value == common), "{common} reported as AI");
    }
}

#[test]
fn watch_reports_an_install_and_its_removal_without_a_full_rescan() {
    use aiscout_agent::inventory::watch::{Change, Watch};
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("Applications")).unwrap();
    std::fs::create_dir_all(root.join("Users/dana/.vscode/extensions")).unwrap();
    let ix = index();
    let mut watch = Watch::start(&ix, ScanOptions::root(root), Duration::from_millis(300)).unwrap();
    assert!(watch.findings().is_empty());
    assert_eq!(watch.folder_count(), 2);

    // Install: copy a bundle into /Applications.
    let src = data().join("tree/Applications/ChatGPT.app");
    let dest = root.join("Applications/ChatGPT.app");
    std::fs::create_dir_all(dest.join("Contents")).unwrap();
    std::fs::copy(src.join("Contents/Info.plist"), dest.join("Contents/Info.plist")).unwrap();
    let mut added = Vec::new();
    for _ in 0..10 {
        added.extend(watch.next_changes(Duration::from_secs(5)));
        if !added.is_empty() {
            break;
        }
    }
    assert!(
        matches!(added.as_slice(), [Change::Added(f)] if f.value == "com.openai.chat"),
        "{added:#?}"
    );
    assert_eq!(watch.findings().len(), 1);

    // Removal.
    std::fs::remove_dir_all(&dest).unwrap();
    let mut removed = Vec::new();
    for _ in 0..10 {
        removed.extend(watch.next_changes(Duration::from_secs(5)));
        if !removed.is_empty() {
            break;
        }
    }
    assert!(
        matches!(removed.as_slice(), [Change::Removed(f)] if f.value == "com.openai.chat"),
        "{removed:#?}"
    );
    assert!(watch.findings().is_empty());
}

#[test]
fn rpm_database_packages_are_found_with_their_version() {
    let have = |tool: &str| {
        std::process::Command::new("which").arg(tool).output().is_ok_and(|o| o.status.success())
    };
    if !have("rpm") || !have("rpmbuild") {
        println!(
            "SKIPPED: rpm and rpmbuild are needed to make an rpm database (apt-get install rpm)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("rpmbuild");
    let spec = tmp.path().join("aitool.spec");
    std::fs::write(
        &spec,
        "Name: aitool-fixture\nVersion: 2.0\nRelease: 1\nSummary: fixture\nLicense: MIT\nBuildArch: noarch\n%description\nfixture\n%files\n",
    )
    .unwrap();
    let built = std::process::Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let rpm_file = top.join("RPMS/noarch/aitool-fixture-2.0-1.noarch.rpm");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let rpm = |args: &[&str]| {
        let out =
            std::process::Command::new("rpm").arg("--root").arg(&root).args(args).output().unwrap();
        assert!(out.status.success(), "rpm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    rpm(&["--dbpath", "/var/lib/rpm", "--initdb"]);
    rpm(&[
        "--dbpath",
        "/var/lib/rpm",
        "-i",
        "--justdb",
        "--nodeps",
        "--noscripts",
        rpm_file.to_str().unwrap(),
    ]);
    let scan = inventory::scan(&index(), &ScanOptions::root(&root));
    let rows: Vec<String> = scan.findings.iter().map(row).collect();
    assert_eq!(
        rows,
        vec!["app fixture.ai-tool aitool-fixture user=- path=/var/lib/rpm version=2.0-1"],
        "{:#?}",
        scan.warnings
    );
}

/// Whether device nodes can be made here; panics under `CI=true` when not root (CI runs as
/// root and must run the device-node cases, as it must the live-capture tests).
#[cfg(unix)]
pub(crate) fn can_mknod(test: &str) -> bool {
    let root = crate::idle::euid_is_root();
    assert!(
        root || !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{test} needs root for device nodes, and CI=true forbids skipping them"
    );
    root
}

/// Every regular file under `dir`, recursively (symlinks not followed).
#[cfg(unix)]
fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            regular_files(&path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

/// Replaces every regular file of `root` for which `pick` holds by, in turn, a FIFO, a UNIX
/// socket, a character device (`/dev/zero`'s numbers, as root) and a symlink to `/dev/zero`.
/// Returns the sockets' listeners (dropping them leaves the socket files in place anyway).
#[cfg(unix)]
pub(crate) fn plant_special_files(
    root: &Path,
    devices: bool,
    mut pick: impl FnMut(&Path) -> bool,
) -> Vec<std::os::unix::net::UnixListener> {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
    let mut files = Vec::new();
    regular_files(root, &mut files);
    let mut listeners = Vec::new();
    // A socket's path must fit `sun_path`: bind it at a short one and rename it into place.
    let short = tempfile::tempdir().unwrap();
    let kinds = if devices { 4 } else { 3 };
    for (i, path) in files.into_iter().filter(|p| pick(p)).enumerate() {
        std::fs::remove_file(&path).unwrap();
        match i % kinds {
            0 => mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap(),
            1 => {
                let at = short.path().join(i.to_string());
                listeners.push(std::os::unix::net::UnixListener::bind(&at).unwrap());
                std::fs::rename(&at, &path).unwrap();
            }
            2 => std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
            _ => mknodat(
                CWD,
                &path,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o644),
                makedev(1, 5),
            )
            .unwrap(),
        }
    }
    listeners
}

/// Runs `f` on a thread and fails if it has not returned within a minute (a blocked open of a
/// FIFO would otherwise hang the test run instead of failing it).
#[cfg(unix)]
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _sent = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not finish within a minute: it blocked"))
}

/// Issue 14 item 7: FIFOs, UNIX sockets, device nodes and symlinks to `/dev/zero` at every
/// path the scanner reads (every file of the fixture tree, and the registry export). The scan
/// completes, reads none of them, and reports nothing it did not report from the real tree.
#[cfg(unix)]
#[test]
fn fifos_sockets_and_devices_at_every_read_path_do_not_block_the_scan_issue_14() {
    let devices = can_mknod("fifos_sockets_and_devices_at_every_read_path");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    copy_tree(&data().join("tree"), &root);
    let real = fixture_scan(&root);
    assert!(real.files_read > 0);
    let _listeners = plant_special_files(&root, devices, |_| true);
    let fifo_export = tmp.path().join("uninstall.reg");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo_export,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let zero_export = tmp.path().join("zero.reg");
    std::os::unix::fs::symlink("/dev/zero", &zero_export).unwrap();

    let scan = within_a_minute("the scan", move || {
        let mut options = ScanOptions::root(&root);
        options.registry_exports = vec![fifo_export, zero_export, PathBuf::from("/dev/zero")];
        inventory::scan(&index(), &options)
    });
    assert_eq!(scan.files_read, 0, "no special file may be read: {:#?}", scan.warnings);
    assert!(
        scan.warnings
            .iter()
            .any(|w| w.path.ends_with("uninstall.reg") && w.reason.contains("not a regular file")),
        "{:#?}",
        scan.warnings
    );
    assert!(
        scan.warnings.iter().any(|w| w.path == "/dev/zero" && w.reason.contains("not a regular")),
        "{:#?}",
        scan.warnings
    );
    // What is still found comes from folder names alone, and was found from the real tree
    // (sizes in the detail differ: the special files count for nothing).
    let key = |f: &Finding| (f.kind, f.product.clone(), f.value.clone(), f.user.clone());
    for f in &scan.findings {
        assert!(
            real.findings.iter().any(|r| key(r) == key(f)),
            "{} was not in the real tree's findings",
            row(f)
        );
    }
}

/// Issue 14 item 7: a scan whose stop flag is set lists no folder and reads no file, so the
/// daemon's shutdown never waits on a scan.
#[test]
fn a_stopped_scan_lists_and_reads_nothing() {
    let mut options = ScanOptions::root(data().join("tree"));
    options.stop = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)));
    let scan = inventory::scan(&index(), &options);
    assert_eq!((scan.files_read, scan.dirs_listed, scan.findings.len()), (0, 0, 0));
    options.stop = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
    assert!(inventory::scan(&index(), &options).files_read > 0);
}

/// One Cursor MCP configuration holding `servers` (a JSON object), in a fresh tree.
fn mcp_tree(servers: &serde_json::Value) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("home/ann/.cursor");
    std::fs::create_dir_all(&dir).unwrap();
    let config = serde_json::json!({ "mcpServers": servers });
    std::fs::write(dir.join("mcp.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    root
}

fn mcp_findings(servers: &serde_json::Value) -> Vec<Finding> {
    let root = mcp_tree(servers);
    let scan = inventory::scan(&index(), &ScanOptions::root(root.path()));
    scan.findings.into_iter().filter(|f| f.kind == Kind::McpServer).collect()
}

#[test]
fn each_mcp_risk_flag_has_a_fixture_tree_and_a_quiet_server_has_none() {
    use aiscout_wire::McpFlag::{
        FileWrite, PlaintextSecret, RemoteUrl, ShellExec, UnpinnedPackage,
    };
    let cases: Vec<(&str, serde_json::Value, Vec<aiscout_wire::McpFlag>)> = vec![
        (
            "none",
            serde_json::json!({"local": {"command": "/opt/tools/mcp-notes", "args": ["--db", "/srv/n.db"],
                "env": {"GITHUB_TOKEN": "${input:github_token}", "LOG_LEVEL": "debug"},
                "headers": {"Authorization": "Bearer ${env:TOKEN}"}}}),
            vec![],
        ),
        (
            "plaintext_secret",
            serde_json::json!({"gh": {"command": "/opt/tools/gh-mcp", "env": {"GITHUB_TOKEN": "literal-value-1"}}}),
            vec![PlaintextSecret],
        ),
        (
            "shell_exec",
            serde_json::json!({"sh": {"command": "/bin/bash", "args": ["/opt/run-mcp.sh"]}}),
            vec![ShellExec],
        ),
        (
            "file_write",
            serde_json::json!({"fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem@2025.7.1", "/srv"]}}),
            vec![FileWrite],
        ),
        (
            "unpinned_package",
            serde_json::json!({"fetch": {"command": "uvx", "args": ["mcp-server-fetch"]}}),
            vec![UnpinnedPackage],
        ),
        (
            "remote_url",
            serde_json::json!({"docs": {"type": "http", "url": "https://mcp.example.com/mcp"}}),
            vec![RemoteUrl],
        ),
    ];
    for (name, servers, want) in cases {
        let found = mcp_findings(&servers);
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        assert_eq!(found[0].flags, want, "{name}");
        let json = found[0].to_json();
        let names: Vec<&str> = want.iter().map(|f| f.as_str()).collect();
        assert_eq!(json["flags"], serde_json::json!(names), "{name}");
    }
    // Near misses: a pinned runner package, a Windows `cmd /c` wrapper (not a shell server),
    // a `pipx run` with `==`, and a secret-free `sse` type without a URL.
    let quiet = mcp_findings(&serde_json::json!({
        "pinned": {"command": "npx", "args": ["-y", "@scope/tool@1.4.2"]},
        "wrapped": {"command": "cmd", "args": ["/c", "npx", "-y", "@scope/tool@1.4.2"]},
        "pipx": {"command": "pipx", "args": ["run", "mcp-thing==0.3.0"]},
    }));
    assert!(quiet.iter().all(|f| f.flags.is_empty()), "{quiet:#?}");
    let all = mcp_findings(&serde_json::json!({
        "dc": {"command": "cmd", "args": ["/c", "npx", "-y", "@wonderwhy-er/desktop-commander@latest"],
               "env": {"OPENAI_API_KEY": "literal-value-2"}},
        "remote": {"serverUrl": "https://u:pw@mcp.example.com/sse?api_key=abc"},
    }));
    let flags: Vec<Vec<aiscout_wire::McpFlag>> = all.iter().map(|f| f.flags.clone()).collect();
    assert_eq!(
        flags,
        [
            vec![PlaintextSecret, ShellExec, FileWrite, UnpinnedPackage],
            vec![PlaintextSecret, RemoteUrl]
        ]
    );
}

#[test]
fn planted_secrets_in_env_headers_args_and_urls_never_reach_a_finding() {
    let secrets = [
        "PLANTED-ENV-7f3a91",
        "PLANTED-HEADER-c24be0",
        "PLANTED-ARGFLAG-5d8e12",
        "PLANTED-ARGEQ-9a0c33",
        "PLANTED-ARGHDR-41bb07",
        "ghp_PLANTEDtoken0123456789",
        "PLANTED-URLPW-e61d2f",
        "PLANTED-URLQ-0b7c58",
        "PLANTED-DOCKER-3e9f60",
    ];
    let servers = serde_json::json!({
        "a": {"command": "npx", "args": ["-y", "@scope/srv", "--api-key", secrets[2], "--token=".to_owned() + secrets[3],
               "-H", "Authorization: Bearer ".to_owned() + secrets[4], secrets[5]],
              "env": {"SERVICE_TOKEN": secrets[0]}, "headers": {"X-Api-Key": secrets[1]}},
        "b": {"url": format!("https://user:{}@mcp.example.com/sse?access_token={}", secrets[6], secrets[7])},
        "c": {"command": "docker", "args": ["run", "-e", format!("GITHUB_PERSONAL_ACCESS_TOKEN={}", secrets[8]), "ghcr.io/x/y"]},
    });
    let found = mcp_findings(&servers);
    assert_eq!(found.len(), 3);
    let out: String = found.iter().map(|f| format!("{} {:?}", f.to_json(), f)).collect();
    for s in secrets {
        assert!(!out.contains(s), "{s} leaked: {out}");
    }
    assert!(
        found.iter().all(|f| f.flags.contains(&aiscout_wire::McpFlag::PlaintextSecret)),
        "{found:#?}"
    );
}
