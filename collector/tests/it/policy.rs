//! Decisions take effect (issue 20), against real consumers: a real Unbound (Debian's
//! `unbound`) started on a loopback port with the exported response policy zone and queried
//! with `dig`; `named-checkzone` on the zone the CLI writes; the osquery queries run by SQLite
//! (osquery's own SQL engine) over tables with osquery's columns; headless Chromium with the
//! exported managed policy (bind-mounted over `/etc/chromium` in a private mount namespace,
//! for that process only) refusing blocked sites and a blocked extension; the HTTPS API with
//! its roles, ETag and Defender pages; the console refusing a policy token and coaching on the
//! app card.
//!
//! Nothing leaves the machine: Unbound answers every name from a root zone loaded by the test
//! (`auth-zone` for `.`, `for-upstream: yes`), so the resolver never queries the internet, and
//! the response policy applies to those answers as it would to real ones. Every process is
//! killed and reaped in `Drop`; waits are on events (Unbound's "start of service" line) with a
//! generous deadline that fails with a message. A missing `unbound`, `dig` or
//! `named-checkzone` fails the test (run .ci/install-deps); it never skips.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aiscout_collector::model::Role;
use aiscout_collector::policy::{self, CoachingUrl, Format, Selection, Settings};
use aiscout_collector::review;
use aiscout_collector::store::Store;
use aiscout_collector::store::sqlite::SqliteStore;
use aiscout_signatures::Catalog;
use aiscout_signatures::catalog::{DomainRule, DomainUse, Product};
use aiscout_wire::ReviewStatus;
use hyper::{Method, StatusCode};

use crate::api::{start, start_tuned};

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");
/// Generous: a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// Most attempts at a free port for Unbound (another process may take the one picked).
const PORT_ATTEMPTS: usize = 5;

/// Fails, never skips, when a tool the test needs is missing.
fn require(tool: &str, package: &str) -> PathBuf {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(tool);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "this test needs `{tool}` (Debian package {package}); run .ci/install-deps{}",
        if ci { " (CI=true)" } else { "" }
    );
}

/// The built-in catalog plus two test products that share `shared-ai.example`.
fn catalog() -> Catalog {
    let product = |id: &str, name: &str, domains: &[&str]| {
        let mut p = Product::default();
        p.id = id.into();
        p.name = name.into();
        p.vendor = "Test".into();
        p.domains = domains
            .iter()
            .map(|d| DomainRule { pattern: (*d).into(), usage: DomainUse::Web })
            .collect();
        p
    };
    let mut products = Catalog::builtin().unwrap().products().to_vec();
    products.push(product("test.chat", "Test Chat", &["shared-ai.example", "only-chat.example"]));
    products.push(product("test.notes", "Test Notes", &["shared-ai.example"]));
    Catalog::new(1, products)
}

async fn decide(store: &impl Store, product: &str, status: ReviewStatus, alternative: &str) {
    let mut decision = review::Decision::new(status, "test".into());
    decision.alternative = alternative.into();
    let now = aiscout_collector::store::now();
    let (review, audit) = review::decide(product, decision, "sec", now);
    store.set_review(review, audit).await.unwrap();
}

/// A running `unbound -d`, killed and reaped on drop.
struct Unbound {
    child: Child,
    port: u16,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        // An error means the child has already exited, which is what we want.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// Every name the tests ask about, answered by the root zone Unbound loads (so nothing is
/// sent to the internet): an address in 192.0.2.0/24 (TEST-NET-1) each.
const ROOT_ZONE: &str = "\
$TTL 60
. IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60
. IN NS localhost.
localhost. IN A 127.0.0.1
chatgpt.com. IN A 192.0.2.1
www.chatgpt.com. IN A 192.0.2.2
openai.com. IN A 192.0.2.3
api.openai.com. IN A 192.0.2.4
eu.api.openai.com. IN A 192.0.2.5
example.org. IN A 192.0.2.6
shared-ai.example. IN A 192.0.2.7
only-chat.example. IN A 192.0.2.8
coach.corp.example. IN A 192.0.2.9
";

impl Unbound {
    /// Starts Unbound on a free loopback port with `zone` as its response policy zone.
    fn start(dir: &Path, zone: &str) -> Unbound {
        let unbound = require("unbound", "unbound");
        std::fs::write(dir.join("root.zone"), ROOT_ZONE).unwrap();
        std::fs::write(dir.join("aiscout.rpz"), zone).unwrap();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port =
                std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let conf = dir.join("unbound.conf");
            std::fs::write(&conf, config(dir, port)).unwrap();
            let mut child = Command::new(&unbound)
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let (tx, lines) = mpsc::channel();
            // Ends when Unbound's stderr closes (it exited or was killed).
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let server = Unbound { child, port };
            let until = Instant::now() + DEADLINE;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) if line.contains("start of service") => return server,
                    Ok(line) => last = line,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!("unbound did not start within {DEADLINE:?}; last line: {last}")
                    }
                }
            }
            // Exited before serving: most likely the port was taken meanwhile; try another.
            drop(server);
        }
        panic!("unbound did not start in {PORT_ATTEMPTS} attempts; last line: {last}");
    }
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"\"
  use-syslog: no
  logfile: \"\"
  verbosity: 1
  do-ip6: no
  module-config: \"respip iterator\"
  auto-trust-anchor-file: \"\"
remote-control:
  control-enable: no
auth-zone:
  name: \".\"
  zonefile: \"{d}/root.zone\"
  for-downstream: no
  for-upstream: yes
  fallback-enabled: no
rpz:
  name: \"aiscout.rpz\"
  zonefile: \"{d}/aiscout.rpz\"
  rpz-log: yes
"
    )
}

/// What `dig` got: the status and the answer records (`name type data`).
#[derive(Debug)]
struct Answer {
    status: String,
    records: Vec<String>,
}

fn dig(port: u16, name: &str) -> Answer {
    let dig = require("dig", "bind9-dnsutils");
    let out = Command::new(dig)
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=10"])
        .args(["+noall", "+comments", "+answer", name, "A"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dig {name}: {text}{}", String::from_utf8_lossy(&out.stderr));
    let status = text
        .split_once("status: ")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's answer: {text}"))
        .to_owned();
    let records = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", f[0], f[3], f[4])
        })
        .collect();
    Answer { status, records }
}

fn resolves(port: u16, name: &str, address: &str) {
    let a = dig(port, name);
    assert_eq!(a.status, "NOERROR", "{name}: {a:?}");
    assert!(a.records.contains(&format!("{name}. A {address}")), "{name}: {a:?}");
}

fn nxdomain(port: u16, name: &str) {
    let a = dig(port, name);
    assert_eq!(a.status, "NXDOMAIN", "{name}: {a:?}");
    assert!(a.records.is_empty(), "{name}: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_enforces_the_exported_zone_and_the_next_export_follows_a_changed_decision() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let catalog = catalog();
    decide(&store, "openai.chatgpt", ReviewStatus::Blocked, "").await;
    decide(&store, "openai.api", ReviewStatus::Sanctioned, "").await;
    decide(&store, "test.chat", ReviewStatus::Blocked, "").await;
    decide(&store, "test.notes", ReviewStatus::UnderReview, "").await;
    let export = |reviews: &[aiscout_collector::model::Review], settings: &Settings| {
        policy::export(&catalog, reviews, &Selection::default(), settings, Format::Rpz)
    };

    let first = export(&store.reviews().await.unwrap(), &Settings::default());
    assert!(
        first.notes.iter().any(|n| n.contains(
            "domain shared-ai.example of test.chat: also used by test.notes (under_review)"
        )),
        "{:?}",
        first.notes
    );
    {
        let unbound = Unbound::start(dir.path(), &first.body);
        let port = unbound.port;
        // The blocked product's names, and the names below them, do not exist.
        nxdomain(port, "chatgpt.com");
        nxdomain(port, "www.chatgpt.com");
        nxdomain(port, "openai.com");
        nxdomain(port, "only-chat.example");
        // The sanctioned API below the blocked openai.com passes, with its subdomains.
        resolves(port, "api.openai.com", "192.0.2.4");
        resolves(port, "eu.api.openai.com", "192.0.2.5");
        // A non-AI name, and a name shared with a product under review, resolve.
        resolves(port, "example.org", "192.0.2.6");
        resolves(port, "shared-ai.example", "192.0.2.7");
    }

    // The decision changes: ChatGPT is sanctioned, the API blocked with ChatGPT as the
    // sanctioned alternative and a coaching page configured. The next export follows.
    decide(&store, "openai.chatgpt", ReviewStatus::Sanctioned, "").await;
    decide(&store, "openai.api", ReviewStatus::Blocked, "openai.chatgpt").await;
    let settings = Settings {
        coaching_url: Some(CoachingUrl::parse("https://coach.corp.example/ai").unwrap()),
        coaching_message: None,
    };
    let second = export(&store.reviews().await.unwrap(), &settings);
    assert_ne!(first.body, second.body);
    let unbound = Unbound::start(dir.path(), &second.body);
    let port = unbound.port;
    resolves(port, "chatgpt.com", "192.0.2.1");
    resolves(port, "openai.com", "192.0.2.3");
    let coached = dig(port, "api.openai.com");
    assert_eq!(coached.status, "NOERROR", "{coached:?}");
    assert_eq!(
        coached.records,
        ["api.openai.com. CNAME coach.corp.example.", "coach.corp.example. A 192.0.2.9"],
        "the blocked API answers with the coaching page"
    );
    nxdomain(port, "only-chat.example");
    resolves(port, "example.org", "192.0.2.6");
}

fn cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_export_cli_writes_every_format_and_a_zone_named_checkzone_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = SqliteStore::open(&data.join("aiscout.db")).await.unwrap();
        decide(&store, "openai.chatgpt", ReviewStatus::Blocked, "anthropic.claude").await;
        decide(&store, "openai.api", ReviewStatus::Sanctioned, "").await;
        decide(&store, "anthropic.claude", ReviewStatus::Sanctioned, "").await;
        decide(&store, "github.copilot", ReviewStatus::Unsanctioned, "").await;
    }
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "[policy]\ncoaching_url = \"https://ai.corp.example/use-this\"\n")
        .unwrap();
    let config = config.to_str().unwrap();

    let out = cli(&data, &["--config", config, "policy", "export", "--format", "rpz"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let zone = String::from_utf8(out.stdout).unwrap();
    assert!(zone.contains("\nchatgpt.com CNAME ai.corp.example.\n"), "{zone}");
    assert!(zone.contains("\napi.openai.com CNAME rpz-passthru.\n"), "{zone}");
    assert!(!zone.contains("copilot"), "unsanctioned is not exported by default");

    // --out replaces the file; the summary goes to stderr.
    let file = dir.path().join("aiscout.rpz");
    std::fs::write(&file, "old").unwrap();
    let out = cli(
        &data,
        &["policy", "export", "--format", "rpz", "--status", "blocked", "--status", "unsanctioned"],
    );
    assert!(out.status.success());
    let both = String::from_utf8(out.stdout).unwrap();
    assert!(both.contains("githubcopilot.com CNAME ."), "{both}");
    let out = cli(&data, &["policy", "export", "--format", "rpz", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("wrote {} (rpz): 1 product(s)", file.display())), "{stderr}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("chatgpt.com CNAME .\n"), "no coaching without the config");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let checkzone = require("named-checkzone", "bind9-utils");
    for (zone_file, text) in [("coached.rpz", zone.as_str()), ("both.rpz", both.as_str())] {
        let path = dir.path().join(zone_file);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(&checkzone).args(["aiscout.rpz"]).arg(&path).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.contains("OK"), "{zone_file}: {said}");
    }
    let out = Command::new(&checkzone).args(["aiscout.rpz"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // Every format, and the usage errors (exit 2).
    for format in Format::ALL {
        let out = cli(&data, &["policy", "export", "--format", format.as_str()]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty(), "{format}");
    }
    let out = cli(&data, &["policy", "export", "--format", "pac"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&data, &["policy", "export", "--format", "rpz", "--status", "sanctioned"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only decisions to block"));
    let out = cli(&data, &["policy", "export", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["rpz-passthru.", "zonefile: /etc/unbound/aiscout.rpz", "--role policy", "If-None-Match"]
    {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }

    // A bad coaching URL is a configuration error naming its key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[policy]\ncoaching_url = \"http://x.example/\"\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&bad).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy.coaching_url"));

    // `token create --role policy` works.
    let out = cli(&data, &["token", "create", "--role", "policy", "--name", "dns-filter"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&data, &["token", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dns-filter\tpolicy\t"));
}

/// The built-in catalog plus `n` test products with one domain each, all to be blocked.
fn catalog_with_many(n: usize) -> Catalog {
    let mut products = Catalog::builtin().unwrap().products().to_vec();
    for i in 0..n {
        let mut p = Product::default();
        p.id = format!("test.many-{i:04}");
        p.name = format!("Many {i}");
        p.vendor = "Test".into();
        p.domains =
            vec![DomainRule { pattern: format!("many-{i:04}.example"), usage: DomainUse::Web }];
        products.push(p);
    }
    Catalog::new(1, products)
}

/// The `DomainName` values of a Defender indicators CSV, checking its header.
fn defender_values(csv_text: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    assert_eq!(reader.headers().unwrap(), policy::DEFENDER_COLUMNS.as_slice());
    reader.records().map(|r| r.unwrap()[1].to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defender_indicators_over_500_are_written_as_numbered_files_and_served_by_page() {
    const MANY: usize = 1_100;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let catalog = catalog_with_many(MANY);
    {
        let store = SqliteStore::open(&data.join("aiscout.db")).await.unwrap();
        for i in 0..MANY {
            decide(&store, &format!("test.many-{i:04}"), ReviewStatus::Blocked, "").await;
        }
    }
    let artifact = dir.path().join("catalog.bin");
    std::fs::write(&artifact, aiscout_signatures::artifact::encode_unsigned(&catalog)).unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, format!("catalog = {:?}\n", artifact.to_str().unwrap())).unwrap();
    let config = config.to_str().unwrap();
    let out_dir = dir.path().join("indicators");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A longer earlier export left a fourth file, and something else lives there too.
    std::fs::write(out_dir.join("aiscout-indicators-004.csv"), "stale").unwrap();
    std::fs::write(out_dir.join("notes.txt"), "kept").unwrap();
    let base = ["--config", config, "policy", "export", "--format", "defender-indicators"];

    let out = cli(&data, &[&base[..], &["--out", out_dir.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("wrote 3 file(s) of at most 500 indicators each"), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "aiscout-indicators-001.csv",
            "aiscout-indicators-002.csv",
            "aiscout-indicators-003.csv",
            "notes.txt"
        ]
    );
    let mut from_files = Vec::new();
    for name in &names[..3] {
        let values = defender_values(&std::fs::read_to_string(out_dir.join(name)).unwrap());
        assert!(!values.is_empty() && values.len() <= 500, "{name}: {}", values.len());
        from_files.extend(values);
    }
    // Stdout is the whole file, with a note saying it is too long for one import.
    let out = cli(&data, &base);
    assert!(out.status.success());
    let whole = defender_values(&String::from_utf8(out.stdout).unwrap());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 500 per file"));
    assert_eq!(from_files, whole);
    assert!(whole.len() >= MANY, "{}", whole.len());
    // One file refuses an export that long; another format refuses a directory.
    let file = dir.path().join("one.csv");
    let out = cli(&data, &[&base[..], &["--out", file.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --out an existing directory"));
    assert!(!file.exists());
    let out = cli(
        &data,
        &["--config", config, "policy", "export", "--format", "rpz", "--out"]
            .into_iter()
            .chain([out_dir.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));

    // The API serves the same files by page.
    let served = catalog.clone();
    let server = start_tuned(100, Default::default(), move |s| s.catalog = served).await;
    for i in 0..MANY {
        decide(&server.store, &format!("test.many-{i:04}"), ReviewStatus::Blocked, "").await;
    }
    let token = server.token("edr", Role::Policy).await;
    let auth = format!("Bearer {token}");
    let mut c = server.connect(true).await;
    let r =
        request(&mut c, "/api/v1/policy/defender-indicators", &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["aiscout-pages"], "3");
    assert_eq!(defender_values(&String::from_utf8_lossy(&r.body)), whole);
    let mut from_pages = Vec::new();
    let mut etags = BTreeSet::new();
    for page in 1..=3 {
        let path = format!("/api/v1/policy/defender-indicators?page={page}");
        let r = request(&mut c, &path, &[("authorization", &auth)]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["aiscout-pages"], "3");
        etags.insert(r.headers["etag"].to_str().unwrap().to_owned());
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(body, std::fs::read_to_string(out_dir.join(&names[page - 1])).unwrap());
        from_pages.extend(defender_values(&body));
    }
    assert_eq!(etags.len(), 3, "each file has its own ETag");
    assert_eq!(from_pages, whole);
    for (path, status, says) in [
        ("defender-indicators?page=4", StatusCode::NOT_FOUND, "this export has 3 file(s)"),
        ("defender-indicators?page=0", StatusCode::BAD_REQUEST, "is not a file number"),
        ("defender-indicators?page=x", StatusCode::BAD_REQUEST, "is not a file number"),
        ("rpz?page=1", StatusCode::BAD_REQUEST, "only defender-indicators is split"),
    ] {
        let r =
            request(&mut c, &format!("/api/v1/policy/{path}"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, status, "{path}");
        assert!(String::from_utf8_lossy(&r.body).contains(says), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_card_coaches_towards_the_sanctioned_alternative_in_the_organisations_words() {
    let message = policy::coaching_message("Ask <b>#ai-help</b> for a seat.").unwrap();
    let server = start_tuned(100, Default::default(), move |s| {
        s.policy.coaching_message = Some(message);
    })
    .await;
    decide(&server.store, "anthropic.claude", ReviewStatus::Sanctioned, "").await;
    decide(&server.store, "openai.chatgpt", ReviewStatus::Blocked, "anthropic.claude").await;
    decide(&server.store, "github.copilot", ReviewStatus::Unsanctioned, "openai.chatgpt").await;
    let token = server.token("sec", Role::Security).await;
    let mut c = server.connect(false).await;
    let cookie = crate::console::sign_in(&mut c, &token).await;
    let (status, _, card) =
        crate::console::get(&mut c, "/products/openai.chatgpt", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    // Escaped by the template, never markup.
    assert!(
        card.contains("Use Claude instead: Ask &lt;b&gt;#ai-help&lt;/b&gt; for a seat."),
        "{card}"
    );
    assert!(card.contains("href=\"/products/anthropic.claude\""), "{card}");
    // The same line the digest gets.
    let reviews = server.store.reviews().await.unwrap();
    let settings = Settings {
        coaching_message: Some("Ask <b>#ai-help</b> for a seat.".into()),
        ..Settings::default()
    };
    let line =
        policy::coaching(&Catalog::builtin().unwrap(), &reviews, &settings, "openai.chatgpt")
            .unwrap()
            .line();
    assert_eq!(line, "Use Claude instead: Ask <b>#ai-help</b> for a seat.");
    // No coaching towards an alternative that is itself blocked, nor on a sanctioned card.
    for id in ["github.copilot", "anthropic.claude"] {
        let (_, _, card) =
            crate::console::get(&mut c, &format!("/products/{id}"), Some(&cookie)).await;
        assert!(!card.contains("class=\"coaching\""), "{id}: {card}");
    }
}

/// The osquery tables the policies read, with osquery's column names (specs/*.table).
const OSQUERY_TABLES: &str = "
    CREATE TABLE users (uid INTEGER, username TEXT, directory TEXT);
    CREATE TABLE chrome_extensions (uid INTEGER, identifier TEXT, name TEXT, browser_type TEXT);
    CREATE TABLE firefox_addons (uid INTEGER, identifier TEXT, name TEXT);
    CREATE TABLE vscode_extensions (uid INTEGER, name TEXT, uuid TEXT, publisher TEXT,
        vscode_edition TEXT);
    CREATE TABLE apps (bundle_identifier TEXT, name TEXT, path TEXT);
    CREATE TABLE programs (name TEXT, publisher TEXT, version TEXT);
    CREATE TABLE deb_packages (name TEXT, version TEXT);
    CREATE TABLE rpm_packages (name TEXT, version TEXT);
    INSERT INTO users VALUES (501, 'ann', '/home/ann');";

#[tokio::test]
async fn osquery_policies_pass_on_a_clean_host_and_fail_where_a_blocked_tool_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    decide(&store, "openai.chatgpt", ReviewStatus::Blocked, "").await;
    decide(&store, "github.copilot", ReviewStatus::Blocked, "").await;
    let catalog = Catalog::builtin().unwrap();
    let reviews = store.reviews().await.unwrap();
    let body = policy::export(
        &catalog,
        &reviews,
        &Selection::default(),
        &Settings::default(),
        Format::Osquery,
    )
    .body;
    let policies: serde_json::Value = serde_json::from_str(&body).unwrap();
    let policies: Vec<(String, String, String)> = policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["platform"].as_str().unwrap().to_owned(),
                p["query"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(policies.len(), 6, "{policies:?}");

    let host = aiscout_collector::store::sqlite::open(&dir.path().join("host.db")).unwrap();
    host.execute_batch(OSQUERY_TABLES).unwrap();
    // Which policies pass (their query returns a row) on the host as it is now.
    let passing = |host: &rusqlite::Connection| -> Vec<String> {
        policies
            .iter()
            .filter(|(_, _, q)| {
                let mut stmt = host.prepare(q).unwrap_or_else(|e| panic!("{q}: {e}"));
                stmt.query([]).unwrap().next().unwrap().is_some()
            })
            .map(|(name, platform, _)| format!("{platform} {name}"))
            .collect()
    };
    assert_eq!(passing(&host).len(), 6, "a clean host passes every policy");
    // Copilot's VS Code extension for one user (osquery's `name` is the extension id).
    host.execute_batch(
        "INSERT INTO vscode_extensions VALUES (501, 'github.copilot', 'u', 'GitHub', 'vscode')",
    )
    .unwrap();
    let now = passing(&host);
    assert!(now.iter().all(|p| p.contains("openai.chatgpt")), "{now:?}");
    assert_eq!(now.len(), 3);
    // The ChatGPT app on macOS (bundle ids compare without case).
    host.execute_batch(
        "INSERT INTO apps VALUES ('COM.OPENAI.CHAT', 'ChatGPT', '/Applications/ChatGPT.app')",
    )
    .unwrap();
    let now = passing(&host);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().all(|p| !p.starts_with("darwin")), "{now:?}");
    // Another user's unrelated extension changes nothing.
    host.execute_batch("INSERT INTO chrome_extensions VALUES (501, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'x', 'chrome')")
        .unwrap();
    assert_eq!(passing(&host).len(), 2);
}

/// One request with headers, the whole answer read.
async fn request(
    c: &mut aiscout_collector::client::Connection,
    path: &str,
    headers: &[(&str, &str)],
) -> aiscout_collector::client::Response {
    let headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> =
        headers.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect();
    c.request(Method::GET, path, &headers, "", 16 << 20).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_api_serves_policy_and_admin_tokens_with_an_etag() {
    let server = start(100).await;
    decide(&server.store, "openai.chatgpt", ReviewStatus::Blocked, "").await;
    decide(&server.store, "github.copilot", ReviewStatus::Unsanctioned, "").await;
    let policy_token = server.token("dns", Role::Policy).await;
    let admin = server.token("adm", Role::Admin).await;
    let security = server.token("sec", Role::Security).await;
    let viewer = server.token("view", Role::Viewer).await;
    let mut c = server.connect(true).await;
    let bearer = |t: &str| format!("Bearer {t}");

    let r =
        request(&mut c, "/api/v1/policy/rpz", &[("authorization", &bearer(&policy_token))]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/dns; charset=utf-8");
    assert_eq!(r.headers["cache-control"], "no-cache");
    assert_eq!(r.headers["aiscout-held-back"], "0");
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 66, "{etag}");
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    let expected = policy::export(
        &Catalog::builtin().unwrap(),
        &server.store.reviews().await.unwrap(),
        &Selection::default(),
        &Settings::default(),
        Format::Rpz,
    );
    assert_eq!(body, expected.body);
    assert!(body.contains("\nchatgpt.com CNAME .\n") && !body.contains("githubcopilot"));

    // The same ETag (or a list naming it, or a weak form, or *) gets 304 with no body.
    for tag in [etag.clone(), format!("\"x\", {etag}"), format!("W/{etag}"), "*".to_owned()] {
        let r = request(
            &mut c,
            "/api/v1/policy/rpz",
            &[("authorization", &bearer(&policy_token)), ("if-none-match", &tag)],
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{tag}");
        assert!(r.body.is_empty());
        assert_eq!(r.headers["etag"], etag.as_str());
        assert_eq!(r.headers["cache-control"], "no-cache");
    }
    // An admin token reads it too; both statuses is another body, another ETag.
    let r = request(
        &mut c,
        "/api/v1/policy/rpz?status=blocked&status=unsanctioned",
        &[("authorization", &bearer(&admin)), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.headers["etag"], etag.as_str());
    assert!(String::from_utf8_lossy(&r.body).contains("githubcopilot.com CNAME ."));

    // A decision changes: the old ETag no longer matches.
    decide(&server.store, "openai.chatgpt", ReviewStatus::Sanctioned, "").await;
    let r = request(
        &mut c,
        "/api/v1/policy/rpz",
        &[("authorization", &bearer(&policy_token)), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&r.body).contains("chatgpt.com CNAME"));

    // Every format is served with its media type.
    for format in Format::ALL {
        let path = format!("/api/v1/policy/{format}");
        let r = request(&mut c, &path, &[("authorization", &bearer(&policy_token))]).await;
        assert_eq!(r.status, StatusCode::OK, "{format}");
        assert_eq!(r.headers["content-type"], format.media_type(), "{format}");
    }

    // Refusals: other roles, no token, bad format, bad status, unknown parameter.
    for (token, status) in [(&security, StatusCode::FORBIDDEN), (&viewer, StatusCode::FORBIDDEN)] {
        let r = request(&mut c, "/api/v1/policy/rpz", &[("authorization", &bearer(token))]).await;
        assert_eq!(r.status, status);
    }
    let r = request(&mut c, "/api/v1/policy/rpz", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let auth = [("authorization", bearer(&policy_token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = request(&mut c, "/api/v1/policy/pac", &auth).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&r.body).contains("unknown policy format \\\"pac\\\""));
    let r = request(&mut c, "/api/v1/policy/rpz?status=sanctioned", &auth).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("only decisions to block"));
    let r = request(&mut c, "/api/v1/policy/rpz?format=json", &auth).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // The policy token reads nothing else.
    for path in [
        "/api/v1/inventory",
        "/api/v1/devices",
        "/api/v1/audit",
        "/api/v1/reports/reconcile",
        "/api/v1/products/openai.chatgpt",
    ] {
        let r = request(&mut c, path, &auth).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_a_policy_token() {
    let server = start(100).await;
    let token = server.token("dns", Role::Policy).await;
    let mut c = server.connect(true).await;
    let headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> = vec![(
        "content-type".parse().unwrap(),
        "application/x-www-form-urlencoded".parse().unwrap(),
    )];
    let r = c
        .request(Method::POST, "/login", &headers, format!("token={token}&next=%2F"), 1 << 20)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get("set-cookie").is_none(), "no session");
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("role (policy) is for the policy API only."), "{page}");
    for access in [
        aiscout_collector::console::Access::All,
        aiscout_collector::console::Access::Review,
        aiscout_collector::console::Access::Reconcile,
        aiscout_collector::console::Access::Devices,
        aiscout_collector::console::Access::People,
        aiscout_collector::console::Access::Imports,
        aiscout_collector::console::Access::Audit,
        aiscout_collector::console::Access::Admin,
    ] {
        assert!(!access.allows(Role::Policy), "{access:?}");
    }
}

/// A loopback HTTP server answering every request with a page holding `marker`, stopped and
/// joined on drop.
struct Page {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Page {
    fn serve(marker: &'static str) -> Page {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Bounded: a test makes a handful of requests.
            for stream in listener.incoming().take(10_000) {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 8192];
                let mut read = 0;
                // Read the request head (bounded by the buffer), then answer.
                while read < buf.len() {
                    match stream.read(&mut buf[read..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let body = format!("<html><body><p>{marker}</p></body></html>");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                // The browser may have gone; nothing to do about it.
                let _written = stream.write_all(answer.as_bytes());
            }
        });
        Page { port, stop, thread: Some(thread) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _woken = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _joined = t.join();
        }
    }
}

/// What headless Chromium made of `url` with `etc` bind-mounted over `/etc/chromium` in a
/// private mount namespace (so the managed policy is the test's, for this process only), every
/// host name resolved to the loopback page server: the DOM and the error it logged.
fn chromium_visit(
    chromium: &Path,
    etc: &Path,
    profile: &Path,
    port: u16,
    url: &str,
) -> (String, String) {
    chromium_visit_with(chromium, etc, profile, port, url, &[])
}

/// [`chromium_visit`] with more Chromium flags.
fn chromium_visit_with(
    chromium: &Path,
    etc: &Path,
    profile: &Path,
    port: u16,
    url: &str,
    flags: &[String],
) -> (String, String) {
    let script = "mount --bind \"$1\" /etc/chromium && shift && exec \"$@\"";
    let out = Command::new("timeout")
        .arg("120")
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(etc)
        .arg(chromium)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--host-resolver-rules=MAP * 127.0.0.1:{port}"))
        .args(flags)
        .args(["--dump-dom", url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium {url}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Whether this process may make a private mount namespace (root, or CAP_SYS_ADMIN).
fn can_unshare_mounts() -> bool {
    Command::new("unshare")
        .args(["--mount", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_enforces_the_exported_chrome_policy() {
    let chromium = require("chromium", "chromium");
    if !can_unshare_mounts() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "this test bind-mounts a policy folder over /etc/chromium in a private mount \
             namespace and needs root (CI=true)"
        );
        eprintln!("skipped: not allowed to make a mount namespace (run as root)");
        return;
    }
    assert!(Path::new("/etc/chromium").is_dir(), "/etc/chromium is missing: reinstall chromium");

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    // Names of our own: real AI domains are on Chromium's HSTS preload list, which would send
    // the allowed ones to https on the plain-HTTP test server.
    let mut products = catalog().products().to_vec();
    for (id, domain) in
        [("test.vendor-chat", "vendor.example"), ("test.vendor-api", "api.vendor.example")]
    {
        let mut p = Product::default();
        p.id = id.into();
        p.name = id.into();
        p.domains = vec![DomainRule { pattern: domain.into(), usage: DomainUse::Web }];
        products.push(p);
    }
    let catalog = Catalog::new(1, products);
    decide(&store, "test.vendor-chat", ReviewStatus::Blocked, "").await;
    decide(&store, "test.vendor-api", ReviewStatus::Sanctioned, "").await;
    let reviews = store.reviews().await.unwrap();
    let policy = policy::export(
        &catalog,
        &reviews,
        &Selection::default(),
        &Settings::default(),
        Format::ChromePolicy,
    );
    let etc = chromium_etc(dir.path(), "etc-chromium", &policy.body);

    let page = Page::serve("served-by-the-test");
    for (i, (url, blocked)) in [
        ("http://vendor.example/", true),
        ("http://www.vendor.example/chat", true),
        ("http://api.vendor.example/v1/models", false),
        ("http://example.org/", false),
    ]
    .into_iter()
    .enumerate()
    {
        let profile = dir.path().join(format!("profile-{i}"));
        let (dom, stderr) = chromium_visit(&chromium, &etc, &profile, page.port, url);
        if blocked {
            assert!(stderr.contains("ERR_BLOCKED_BY_ADMINISTRATOR"), "{url}: {stderr}");
            assert!(!dom.contains("served-by-the-test"), "{url}: {dom}");
        } else {
            assert!(dom.contains("served-by-the-test"), "{url} was not loaded: {stderr}");
        }
    }
}

/// The test's copy of `/etc/chromium` (what the real one holds) with `policy` as the managed
/// policy.
fn chromium_etc(dir: &Path, name: &str, policy: &str) -> PathBuf {
    let etc = dir.join(name);
    std::fs::create_dir_all(etc.join("policies/managed")).unwrap();
    for entry in std::fs::read_dir("/etc/chromium").unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), etc.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(etc.join("policies/managed/aiscout.json"), policy).unwrap();
    etc
}

/// An unpacked extension whose content script marks every page it runs on, and its id. The
/// manifest's `key` (a fresh public key, base64 DER) fixes the id: the first 128 bits of the
/// key's SHA-256, each hex digit written a to p, as Chrome derives extension ids.
fn marking_extension(dir: &Path) -> (PathBuf, String) {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    let key = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, &key);
    let id: String = digest.as_ref()[..16]
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|nibble| char::from(b'a' + nibble))
        .collect();
    let ext = dir.join("extension");
    std::fs::create_dir_all(&ext).unwrap();
    let manifest = serde_json::json!({
        "manifest_version": 3,
        "name": "aiscout test assistant",
        "version": "1.0",
        "key": base64::engine::general_purpose::STANDARD.encode(&key),
        "content_scripts": [{"matches": ["<all_urls>"], "js": ["mark.js"], "run_at": "document_start"}],
    });
    std::fs::write(ext.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(
        ext.join("mark.js"),
        "document.documentElement.setAttribute('data-extension', 'extension-ran');\n",
    )
    .unwrap();
    (ext, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_refuses_an_extension_the_exported_policy_blocks() {
    let chromium = require("chromium", "chromium");
    if !can_unshare_mounts() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "this test bind-mounts a policy folder over /etc/chromium in a private mount \
             namespace and needs root (CI=true)"
        );
        eprintln!("skipped: not allowed to make a mount namespace (run as root)");
        return;
    }
    assert!(Path::new("/etc/chromium").is_dir(), "/etc/chromium is missing: reinstall chromium");
    let dir = tempfile::tempdir().unwrap();
    let (extension, id) = marking_extension(dir.path());
    let mut products = catalog().products().to_vec();
    let mut assistant = Product::default();
    assistant.id = "test.browser-assistant".into();
    assistant.name = "Browser Assistant".into();
    assistant.chrome_extensions = vec![id.clone()];
    products.push(assistant);
    let catalog = Catalog::new(1, products);
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let chrome_policy = |reviews: &[aiscout_collector::model::Review]| {
        policy::export(
            &catalog,
            reviews,
            &Selection::default(),
            &Settings::default(),
            Format::ChromePolicy,
        )
        .body
    };

    // Sanctioned: the exported policy does not name it, and the extension runs (so the check
    // below can fail: the marker is what a running extension leaves).
    decide(&store, "test.browser-assistant", ReviewStatus::Sanctioned, "").await;
    let allowed = chrome_policy(&store.reviews().await.unwrap());
    assert!(!allowed.contains(&id), "{allowed}");
    // Blocked: the next export names it in ExtensionInstallBlocklist.
    decide(&store, "test.browser-assistant", ReviewStatus::Blocked, "").await;
    let blocked = chrome_policy(&store.reviews().await.unwrap());
    let json: serde_json::Value = serde_json::from_str(&blocked).unwrap();
    assert!(
        json["ExtensionInstallBlocklist"].as_array().unwrap().iter().any(|v| v == id.as_str()),
        "{blocked}"
    );

    let page = Page::serve("served-by-the-test");
    let load = [format!("--load-extension={}", extension.display())];
    for (name, policy, runs) in [("allowed", &allowed, true), ("blocked", &blocked, false)] {
        let etc = chromium_etc(dir.path(), &format!("etc-{name}"), policy);
        let profile = dir.path().join(format!("profile-{name}"));
        let (dom, stderr) =
            chromium_visit_with(&chromium, &etc, &profile, page.port, "http://example.org/", &load);
        assert!(dom.contains("served-by-the-test"), "{name}: the page did not load: {stderr}");
        assert_eq!(dom.contains("extension-ran"), runs, "{name}: {dom}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_export_cli_prints_the_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = SqliteStore::open(&data.join("aiscout.db")).await.unwrap();
        let person = aiscout_collector::model::Person {
            email: "zoe@example.com".into(),
            name: "Zoe Private".into(),
            department: "Legal".into(),
            manager: None,
        };
        store.upsert_people(vec![person]).await.unwrap();
    }
    let out = cli(&data, &["person", "export", "ZOE@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["email"].as_str(), v["found"].as_bool()), (Some("zoe@example.com"), Some(true)));
    assert_eq!(v["person"]["department"], "Legal");
    let out = cli(&data, &["person", "export", "zoe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"zoe\" is not an email address"));
}
