//! The real agent daemon against the real collector over HTTPS on loopback: sightings arrive,
//! only catalog matches ever leave the agent, nothing is lost or counted twice across outages
//! and kills, the spool stays bounded, and the agent trusts only what it was told to trust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aiscout_e2e::{
    Collector, agent_config, api_get, binary, free_port, sightings_by_product, start_agent,
    wait_for, workspace_root,
};

const LONG: Duration = Duration::from_secs(90);

fn fixture(name: &str) -> PathBuf {
    workspace_root().join("agent/tests/data/pcap").join(name)
}

/// Matched observations in `pcaps` per product, as `aiscout-agent replay` counts them: what
/// the collector must end up with, exactly.
fn expected_counts(pcaps: &[PathBuf]) -> Vec<(String, u64)> {
    let out = Command::new(binary("aiscout-agent", "aiscout-agent").unwrap())
        .arg("replay")
        .arg("--json")
        .args(pcaps)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *counts.entry(v["product"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts.into_iter().collect()
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

fn network_pcaps() -> Vec<PathBuf> {
    ["curl-ipv4.pcap", "dig-udp.pcap", "openssl-tls13-ipv6.pcap", "chromium-quic.pcap"]
        .iter()
        .map(|n| fixture(n))
        .collect()
}

#[test]
fn pcap_sightings_reach_the_collector_inventory_and_sigterm_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let config =
        agent_config(&tmp.path().join("agent"), &collector.url, &collector.pin, "").unwrap();
    let pcaps = network_pcaps();
    let want = sorted(expected_counts(&pcaps));
    assert!(want.len() >= 3, "fixtures should match several products: {want:?}");
    let mut args: Vec<String> = vec!["--no-scan".into()];
    for p in &pcaps {
        args.push("--pcap".into());
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = start_agent(&config, &args, "info").unwrap();
    let got = wait_for("every sighting in the inventory", LONG, || {
        let got = sorted(sightings_by_product(&collector, &token).ok()?);
        (got == want).then_some(got)
    });
    let got = got.unwrap_or_else(|e| panic!("{e}\nagent output:\n{}", agent.output().join("\n")));
    assert_eq!(got, want);
    // The device enrolled with its identity.
    let devices = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").unwrap();
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(1), "{devices}");
    let status = agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "SIGTERM must exit 0: {status:?}\n{}", agent.output().join("\n"));
    assert!(agent.output().iter().any(|l| l.contains("Agent stopped.")));
}

/// Captures real `dig` queries on loopback with tcpdump. `None` (and a printed reason) when
/// this machine cannot capture (not root, or no tcpdump or dig).
fn dig_capture(dir: &Path, batches: &[&[String]]) -> Option<PathBuf> {
    let root =
        Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.starts_with(b"0"));
    let have =
        |tool: &str| Command::new("which").arg(tool).output().is_ok_and(|o| o.status.success());
    if !root || !have("tcpdump") || !have("dig") {
        // CI installs both and runs as root: a skip there would be a pass that checked nothing.
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "capturing dig traffic needs root, tcpdump and dig (.ci/install-deps installs them)"
        );
        println!("SKIPPED: capturing dig traffic needs root, tcpdump and dig");
        return None;
    }
    let pcap = dir.join("dig.pcap");
    let mut tcpdump = aiscout_e2e::Process::start(
        "tcpdump",
        Path::new("tcpdump"),
        &[
            "-i".into(),
            "lo".into(),
            "-U".into(),
            "--immediate-mode".into(),
            "-B".into(),
            "32768".into(),
            "-w".into(),
            pcap.display().to_string(),
            "udp dst port 53 and dst host 127.0.0.1".into(),
        ],
        &[],
    )
    .unwrap();
    tcpdump
        .wait_line("`listening on lo`", Duration::from_secs(20), |l| l.contains("listening on lo"))
        .unwrap();
    for (i, names) in batches.iter().enumerate() {
        let file = dir.join(format!("names-{i}.txt"));
        std::fs::write(&file, names.join("\n")).unwrap();
        // Nothing listens on 127.0.0.1:53 here, so each query meets a port-unreachable at once;
        // the query packets are what the capture needs.
        let status = Command::new("dig")
            .args(["@127.0.0.1", "+tries=1", "+timeout=1", "+noall", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(status.status.code().is_some());
    }
    // tcpdump reads its ring behind the sender; on SIGINT it exits without reading what is
    // still queued, so under CPU load the last queries went missing. A last query, sent after
    // all the others, shows in the file (written per packet, -U) only once tcpdump has read
    // everything before it: stop it only then.
    let last = "end-of-capture.corp-example.test";
    let status = Command::new("dig")
        .args(["@127.0.0.1", "+tries=1", "+timeout=1", "+noall", last])
        .output()
        .unwrap();
    assert!(status.status.code().is_some());
    wait_for("tcpdump to write the last query", LONG, || {
        names_in(&pcap).iter().any(|n| n == last).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", tcpdump.output().join("\n")));
    aiscout_e2e::signal(tcpdump.pid(), "INT");
    tcpdump.wait_exit(Duration::from_secs(20)).unwrap();
    Some(pcap)
}

fn names_in(pcap: &Path) -> Vec<String> {
    let out = Command::new(binary("aiscout-agent", "aiscout-agent").unwrap())
        .args(["replay", "--all", "--json"])
        .arg(pcap)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

fn files_contain(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn privacy_only_catalog_matches_leave_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let other: Vec<String> =
        (0..1_000).map(|i| format!("intranet-{i:04}.corp-example.test")).collect();
    let ai: Vec<String> =
        ["chatgpt.com", "api.anthropic.com", "gemini.google.com"].map(str::to_owned).to_vec();
    let Some(pcap) = dig_capture(tmp.path(), &[&ai, &other]) else { return };
    let captured = names_in(&pcap);
    let captured_other = other.iter().filter(|n| captured.contains(n)).count();
    assert_eq!(captured_other, 1_000, "the capture holds only {captured_other} of the 1,000 names");
    for n in &ai {
        assert!(captured.contains(n), "{n} missing from the capture");
    }

    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let agent_dir = tmp.path().join("agent");
    let owner = "pat.owner@example.com";
    let config = agent_config(
        &agent_dir,
        &collector.url,
        &collector.pin,
        &format!("owner_email = {owner:?}"),
    )
    .unwrap();
    // Debug logging: the strictest setting for what the logs may say.
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &pcap.display().to_string()], "debug")
            .unwrap();
    let want = sorted(expected_counts(std::slice::from_ref(&pcap)));
    assert_eq!(want.iter().map(|(_, n)| n).sum::<u64>(), 3, "{want:?}");
    wait_for("the AI sightings in the inventory", LONG, || {
        (sorted(sightings_by_product(&collector, &token).ok()?) == want).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    agent.terminate(Duration::from_secs(30)).unwrap();
    // What the employee sees with `aiscout-agent status` (issue 21): enrolled, the upload
    // acknowledged, the spool empty, and none of the other names.
    let status = Command::new(binary("aiscout-agent", "aiscout-agent").unwrap())
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&status_text).unwrap();
    assert_eq!(v["enrolled"], true, "{status_text}");
    assert_eq!(v["last_upload"]["ok"], true, "{status_text}");
    assert_eq!(v["spool"]["rows"], 0, "{status_text}");

    // Every console page an admin can open and every export (issue 21), read while the
    // collector still runs, so its log below covers serving them too.
    let shown = console_and_exports(&collector, &token, owner);
    let all: String = shown.iter().map(|(_, body)| body.as_str()).collect();
    assert!(all.contains("openai.chatgpt"), "positive control: the pages show the products");
    for name in &other {
        for (what, body) in &shown {
            assert!(!body.contains(name.as_str()), "{name} in {what}");
        }
    }

    let agent_log = agent.output().join("\n");
    let mut collector_process = collector.process;
    collector_process.terminate(Duration::from_secs(30)).unwrap();
    let collector_log = collector_process.output().join("\n");
    // The AI names did travel (so the searches below can find what they look for).
    assert!(
        !files_contain(&collector.data_dir, "api.anthropic.com").is_empty(),
        "positive control"
    );
    for name in &other {
        assert!(!status_text.contains(name.as_str()), "{name} in `aiscout-agent status`");
        assert!(!agent_log.contains(name.as_str()), "{name} in the agent's log");
        assert!(!collector_log.contains(name.as_str()), "{name} in the collector's log");
        let leaked = files_contain(&agent_dir, name);
        assert!(leaked.is_empty(), "{name} in the agent's files: {leaked:?}");
        let sent = files_contain(&collector.data_dir, name);
        assert!(sent.is_empty(), "{name} reached the collector: {sent:?}");
    }
}

/// One HTTPS request to `collector` (trusting exactly its pinned certificate, as a browser
/// that accepted it would): the status, the `Set-Cookie` values and the body. `form` is sent
/// as an urlencoded body.
fn https(
    collector: &Collector,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> (u16, Vec<String>, String) {
    use http_body_util::BodyExt as _;
    let pin = aiscout_signatures::hex::decode(&collector.pin)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .unwrap();
    let tls =
        aiscout_agent::upload::tls::client_config(&aiscout_agent::config::TrustAnchor::Pin(pin))
            .unwrap();
    let authority = collector.url.trim_start_matches("https://").trim_end_matches('/').to_owned();
    let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h).to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(host).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority)
            .header("origin", &collector.url);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if form.is_some() {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        let body = http_body_util::Full::new(hyper::body::Bytes::from(form.unwrap_or_default()));
        let response = send.send_request(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        driver.abort();
        (status, cookies, String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// Runs the collector's command line on `data` (the running collector's folder) and returns
/// its standard output.
fn collector_cli(data: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("aiscout-collector", "aiscout-collector").unwrap())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every console page an admin can open on `collector` (signed in at `/login` with `token`, as
/// a person would), every report format and the person export of `owner`: (what, body).
fn console_and_exports(collector: &Collector, token: &str, owner: &str) -> Vec<(String, String)> {
    let form = format!(
        "token={}&next=%2F",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let (status, cookies, body) = https(collector, "POST", "/login", None, Some(form));
    assert_eq!(status, 303, "sign-in: {body}");
    let session = cookies
        .iter()
        .find_map(|c| c.split(';').next().filter(|kv| kv.starts_with("aiscout_session=")))
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"))
        .to_owned();
    let devices = api_get(&collector.url, &collector.pin, token, "/api/v1/devices").unwrap();
    let host = devices["devices"][0]["host_id"].as_str().unwrap().to_owned();
    let inventory = api_get(&collector.url, &collector.pin, token, "/api/v1/inventory").unwrap();
    let mut paths: Vec<String> = [
        "/",
        "/inventory",
        "/inventory.csv",
        "/review",
        "/reconcile",
        "/devices",
        "/people",
        "/imports",
        "/audit",
        "/alerts",
        "/admin",
        "/transparency",
        "/transparency?format=json",
        "/transparency/catalog",
    ]
    .map(str::to_owned)
    .to_vec();
    paths.push(format!("/devices/{host}"));
    paths.push(format!("/people/{owner}"));
    for section in [
        "paid-not-sanctioned",
        "used-not-paid",
        "idle-subscriptions",
        "duplicate-subscriptions",
        "gateway-vs-shadow",
        "candidates",
    ] {
        paths.push(format!("/reconcile/{section}.csv"));
    }
    for row in inventory["rows"].as_array().unwrap() {
        paths.push(format!("/products/{}", row["product"].as_str().unwrap()));
    }
    let mut shown = Vec::new();
    for path in paths {
        let (status, _, body) = https(collector, "GET", &path, Some(&session), None);
        assert_eq!(status, 200, "{path}: {body}");
        shown.push((format!("the console's {path}"), body));
    }
    let cli = |args: &[&str]| collector_cli(&collector.data_dir, args);
    for report in ["inventory", "reconcile"] {
        for format in ["csv", "json", "html"] {
            let out = cli(&["report", report, "--format", format]);
            shown.push((format!("report {report} --format {format}"), out));
        }
    }
    let export = cli(&["person", "export", owner]);
    assert!(export.contains(owner), "positive control: the export is about {owner}: {export}");
    shown.push(("person export".into(), export));
    shown
}

/// Every value of every table of the collector's SQLite database, as lowercase text.
fn every_table(data: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("aiscout.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = String::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            out.push_str(&t);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                out.push('|');
                match row.get_ref(i).unwrap() {
                    ValueRef::Null => out.push_str("NULL"),
                    ValueRef::Integer(v) => out.push_str(&v.to_string()),
                    ValueRef::Real(v) => out.push_str(&v.to_string()),
                    ValueRef::Text(b) | ValueRef::Blob(b) => {
                        out.push_str(&String::from_utf8_lossy(b));
                    }
                }
            }
            out.push('\n');
        }
    }
    out.to_lowercase()
}

/// Every number in a JSON report with the keys that lead to it (array positions left out),
/// sorted: what must not move when a person is renamed, whatever order rows take
/// (`generated_at` aside).
fn numbers(v: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(n) => out.push(format!("{path} = {n}")),
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, path, out);
                }
            }
            serde_json::Value::Object(map) => {
                // The time the report was made is the one number that may move.
                for (k, item) in map.iter().filter(|(k, _)| *k != "generated_at") {
                    walk(item, &format!("{path}.{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out.sort();
    out
}

/// Issue 21's erasure end to end: a real agent whose owner is Ann Lee reports through a real
/// collector that also imported the example directory, expenses (Ann Lee pays by name) and
/// gateway spend (Ann's email); `person erase` on the command line, while the collector
/// serves, leaves her email and name in no table, no console page and no export, and every
/// number of the inventory and reconciliation reports is what it was.
#[test]
fn erase_leaves_no_trace_in_any_table_page_or_export_and_keeps_every_total() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("collector");
    let collector = Collector::start(&data, 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let root = workspace_root();
    let files = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|f| f.unwrap().path().display().to_string())
            .collect();
        v.sort();
        v
    };
    let people = root.join("examples/people.csv").display().to_string();
    collector_cli(&data, &["import", "people", &people]);
    for (kind, dir) in [("expenses", "examples/expenses"), ("gateway", "examples/gateway")] {
        let mut args = vec!["import".to_owned(), kind.to_owned()];
        args.extend(files(dir));
        collector_cli(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let owner = "ann.lee@example.com";
    let config = agent_config(
        &tmp.path().join("agent"),
        &collector.url,
        &collector.pin,
        &format!("owner_email = {owner:?}"),
    )
    .unwrap();
    let pcaps = network_pcaps();
    let want = sorted(expected_counts(&pcaps));
    let mut args = vec!["--no-scan".to_owned()];
    for p in &pcaps {
        args.push("--pcap".into());
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = start_agent(&config, &args, "info").unwrap();
    wait_for("the sightings in the inventory", LONG, || {
        let got: Vec<(String, u64)> = sorted(sightings_by_product(&collector, &token).ok()?)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        (got == want).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    agent.terminate(Duration::from_secs(30)).unwrap();

    let reports = || -> Vec<Vec<String>> {
        ["inventory", "reconcile"]
            .iter()
            .map(|r| {
                let out = collector_cli(&data, &["report", r, "--format", "json"]);
                numbers(&serde_json::from_str(&out).unwrap())
            })
            .collect()
    };
    let before = reports();
    let traces = ["ann.lee@example.com", "ann lee"];
    let stored = every_table(&data);
    for trace in traces {
        assert!(stored.contains(trace), "positive control: {trace} is stored before the erasure");
    }

    let out = collector_cli(&data, &["person", "erase", owner, "--reason", "DSAR e2e-1"]);
    let erasure: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(erasure["erased"], true, "{out}");
    let tombstone = erasure["tombstone"].as_str().unwrap().to_owned();

    assert_eq!(reports(), before, "every report number is unchanged");
    let stored = every_table(&data);
    for trace in traces {
        assert!(!stored.contains(trace), "{trace} is still in a table");
    }
    assert!(stored.contains(&tombstone));
    for (what, body) in console_and_exports(&collector, &token, &tombstone) {
        for trace in traces {
            assert!(!body.to_lowercase().contains(trace), "{trace} in {what}");
        }
    }
    // A second erasure finds nothing.
    let again = collector_cli(&data, &["person", "erase", owner, "--reason", "DSAR e2e-1"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["erased"], false, "{again}");
}

#[test]
fn no_loss_no_double_count_across_outages_and_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("collector");
    // Start once to make the certificate the agent pins, then stop: the collector is down.
    let port = free_port().unwrap();
    let first = Collector::start(&data, port, &[]).unwrap();
    let (url, pin) = (first.url.clone(), first.pin.clone());
    let mut p = first.process;
    p.terminate(Duration::from_secs(30)).unwrap();

    let config = agent_config(&tmp.path().join("agent"), &url, &pin, "").unwrap();
    let pcaps = network_pcaps();
    let want = sorted(expected_counts(&pcaps));
    let mut args = vec!["--no-scan".to_owned()];
    for p in &pcaps {
        args.push("--pcap".into());
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // 1. Collector down: the agent spools and keeps retrying; then it is killed outright.
    let mut agent = start_agent(&config, &args, "info").unwrap();
    agent.wait_line("a failed upload", LONG, |l| l.contains("Upload failed")).unwrap();
    agent.kill();

    // 2. Collector up; an agent that only drains the spool is killed again and again while
    //    it uploads, then the collector is killed mid-stream too.
    let collector = Collector::start(&data, port, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    for round in 0..5u64 {
        let mut a = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
        a.wait_line("enrollment or an upload", LONG, |l| l.contains("Agent started.")).unwrap();
        // Let it get going for a varying moment, then pull the plug.
        std::thread::sleep(Duration::from_millis(150 * round));
        a.kill();
    }
    let mut collector = collector;
    collector.process.kill();
    let collector = Collector::start(&data, port, &[]).unwrap();

    // 3. A last agent drains what is left; the totals must be exact.
    let mut last = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    let got = wait_for("exact totals after the outages", LONG, || {
        let got = sorted(sightings_by_product(&collector, &token).ok()?);
        (got == want).then_some(got)
    });
    let got = got.unwrap_or_else(|e| {
        panic!(
            "{e}\nhave {:?}\nwant {want:?}\n{}",
            sightings_by_product(&collector, &token),
            last.output().join("\n")
        )
    });
    assert_eq!(got, want);
    last.terminate(Duration::from_secs(30)).unwrap();
}

#[test]
fn agent_refuses_a_collector_whose_certificate_does_not_match_its_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let wrong_pin = "ab".repeat(32);
    let config = agent_config(&tmp.path().join("agent"), &collector.url, &wrong_pin, "").unwrap();
    let mut agent = start_agent(
        &config,
        &["--no-scan", "--pcap", &fixture("curl-ipv4.pcap").display().to_string()],
        "info",
    )
    .unwrap();
    let line = agent.wait_line("a refused upload", LONG, |l| l.contains("Upload failed")).unwrap();
    assert!(line.contains("certificate"), "the failure names the certificate: {line}");
    let devices = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").unwrap();
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(0),
        "nothing reached the collector"
    );
}

#[test]
fn catalog_updates_are_verified_and_never_rolled_back() {
    use aiscout_signatures::{Catalog, artifact, sign};
    let tmp = tempfile::tempdir().unwrap();
    let (good_private, good_public) = sign::generate().unwrap();
    let (evil_private, _) = sign::generate().unwrap();
    let builtin = Catalog::builtin().unwrap();
    let build = |version: u64, key: &str| {
        let bytes = artifact::encode_unsigned(&Catalog::new(version, builtin.products().to_vec()));
        sign::sign(&bytes, key).unwrap()
    };
    let artifact_path = tmp.path().join("served.bin");
    // 1. The collector serves a catalog signed by another key: refused, built-in kept.
    std::fs::write(&artifact_path, build(7, &evil_private)).unwrap();
    let data = tmp.path().join("collector");
    let port = free_port().unwrap();
    let served = ["--catalog".to_owned(), artifact_path.display().to_string()];
    let collector = Collector::start(&data, port, &served).unwrap();
    let agent_dir = tmp.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("catalog.pub"), &good_public).unwrap();
    let config = agent_config(&agent_dir, &collector.url, &collector.pin, "").unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    let refused = agent
        .wait_line("the refusal", LONG, |l| l.contains("Catalog from the collector refused"))
        .unwrap();
    assert!(refused.contains("does not verify"), "{refused}");
    agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(!agent_dir.join("state/catalog.bin").exists(), "a refused catalog is never kept");

    // 2. A properly signed version 9: accepted, saved as the last good one.
    let mut c = collector;
    c.process.terminate(Duration::from_secs(30)).unwrap();
    std::fs::write(&artifact_path, build(9, &good_private)).unwrap();
    let collector = Collector::start(&data, port, &served).unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    agent.wait_line("the update", LONG, |l| l.contains("Catalog updated and verified.")).unwrap();
    agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(agent_dir.join("state/catalog.bin").exists());

    // 3. Version 8 signed with the right key: a rollback, refused; 9 stays in use.
    let mut c = collector;
    c.process.terminate(Duration::from_secs(30)).unwrap();
    std::fs::write(&artifact_path, build(8, &good_private)).unwrap();
    let _collector = Collector::start(&data, port, &served).unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    agent
        .wait_line("the saved catalog", LONG, |l| {
            l.contains("Loaded the last good catalog.") && l.contains("version=9")
        })
        .unwrap();
    let refused = agent
        .wait_line("the rollback refusal", LONG, |l| {
            l.contains("Catalog from the collector refused")
        })
        .unwrap();
    assert!(refused.contains("rollback refused"), "{refused}");
}

#[test]
fn agent_enrolls_again_when_the_collector_no_longer_knows_its_node_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("collector");
    let port = free_port().unwrap();
    let collector = Collector::start(&data, port, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let config =
        agent_config(&tmp.path().join("agent"), &collector.url, &collector.pin, "").unwrap();
    let pcap = fixture("curl-ipv4.pcap");
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &pcap.display().to_string()], "info")
            .unwrap();
    wait_for("the first sightings", LONG, || {
        (!sightings_by_product(&collector, &token).ok()?.is_empty()).then_some(())
    })
    .unwrap();
    agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(tmp.path().join("agent/state/node_key").exists(), "the node key is kept");

    // The collector loses its database (a rebuild): the saved node key is now unknown.
    let mut c = collector;
    c.process.terminate(Duration::from_secs(30)).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _gone = std::fs::remove_file(data.join(format!("aiscout.db{suffix}")));
    }
    let collector = Collector::start(&data, port, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let want = sorted(expected_counts(std::slice::from_ref(&pcap)));
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &pcap.display().to_string()], "info")
            .unwrap();
    agent.wait_line("the refusal of the old key", LONG, |l| l.contains("enrolling again")).unwrap();
    agent
        .wait_line("a new enrollment", LONG, |l| l.contains("Enrolled with the collector."))
        .unwrap();
    wait_for("sightings after re-enrolling", LONG, || {
        (sorted(sightings_by_product(&collector, &token).ok()?) == want).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
}

/// Issue 14 item 3 with the real binaries: a second machine with the same host id (here: a
/// second agent state on this machine) cannot take the device over with the enroll secret
/// alone, and the agent that enrolled it, re-enrolling with the key it kept, gets back in.
#[test]
fn a_second_machine_cannot_take_over_a_host_id_and_the_first_reenrolls_with_its_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let pcap = fixture("curl-ipv4.pcap").display().to_string();
    let first_dir = tmp.path().join("first");
    let first = agent_config(&first_dir, &collector.url, &collector.pin, "").unwrap();
    let mut agent = start_agent(&first, &["--no-scan", "--pcap", &pcap], "info").unwrap();
    wait_for("the first sightings", LONG, || {
        (!sightings_by_product(&collector, &token).ok()?.is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    agent.terminate(Duration::from_secs(30)).unwrap();
    let key = first_dir.join("state/node_key");
    let first_key = std::fs::read_to_string(&key).unwrap();

    // Same machine id, no key: refused (the default `require_key`), the device keeps its key.
    let second =
        agent_config(&tmp.path().join("second"), &collector.url, &collector.pin, "").unwrap();
    let mut intruder = start_agent(&second, &["--no-scan", "--no-capture"], "info").unwrap();
    intruder
        .wait_line("the refusal", LONG, |l| l.contains("refuses to enroll this host id again"))
        .unwrap();
    intruder.kill();
    let audit = api_get(&collector.url, &collector.pin, &token, "/api/v1/audit").unwrap();
    let refused = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"].as_str() == Some("device.takeover_refused"));
    assert!(refused, "{audit}");
    let devices = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").unwrap();
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(1));

    // The first agent lost its current key but kept it as the previous one (what it does when
    // the collector refuses a key): it presents it and is let in as the same device.
    std::fs::rename(&key, first_dir.join("state/node_key.previous")).unwrap();
    let mut agent = start_agent(&first, &["--no-scan", "--no-capture"], "info").unwrap();
    agent.wait_line("re-enrolled", LONG, |l| l.contains("Enrolled with the collector.")).unwrap();
    agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(!first_dir.join("state/node_key.previous").exists(), "the old key is dropped");
    assert_ne!(std::fs::read_to_string(&key).unwrap(), first_key, "a new key");
    let audit = api_get(&collector.url, &collector.pin, &token, "/api/v1/audit").unwrap();
    let last = audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "device.reenroll", "{audit}");
    assert_eq!(last["after"]["admitted_by"], "node_key", "{audit}");
    let devices = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").unwrap();
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(1));
}

/// Issue 19 with the real binaries: the agent saves the node key it proposes before it sends
/// the enrollment. When the answer is lost after the collector stored the key, the agent is
/// left with that proposal and no node key; its next attempt repeats the proposal, which
/// proves the host id under the default `require_key`, so it is not locked out (it used to be
/// refused with 403 until an admin approved it).
#[test]
fn an_agent_whose_enrollment_answer_was_lost_is_let_in_with_the_key_it_proposed() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let dir = tmp.path().join("agent");
    let config = agent_config(&dir, &collector.url, &collector.pin, "").unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    agent.wait_line("enrolled", LONG, |l| l.contains("Enrolled with the collector.")).unwrap();
    agent.terminate(Duration::from_secs(30)).unwrap();
    let state = dir.join("state");
    assert!(!state.join("node_key.proposed").exists(), "an answered proposal is dropped");
    let key = std::fs::read_to_string(state.join("node_key")).unwrap();

    // The state a lost answer leaves: the collector holds the key, the agent only its proposal.
    std::fs::rename(state.join("node_key"), state.join("node_key.proposed")).unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    agent
        .wait_line("enrolled again", LONG, |l| l.contains("Enrolled with the collector."))
        .unwrap();
    agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(
        !agent.output().iter().any(|l| l.contains("refuses to enroll")),
        "{}",
        agent.output().join("\n")
    );
    assert_eq!(std::fs::read_to_string(state.join("node_key")).unwrap(), key, "the same key");
    assert!(!state.join("node_key.proposed").exists());
    let audit = api_get(&collector.url, &collector.pin, &token, "/api/v1/audit").unwrap();
    let last = audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "device.reenroll", "{audit}");
    assert_eq!(last["after"]["admitted_by"], "node_key", "{audit}");
    let devices = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").unwrap();
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(1));

    // A proposal the collector never stored proves nothing: refused, as before.
    std::fs::remove_file(state.join("node_key")).unwrap();
    let other = "aisnk_".to_owned() + &"5c".repeat(32);
    std::fs::write(state.join("node_key.proposed"), &other).unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--no-capture"], "info").unwrap();
    agent
        .wait_line("the refusal", LONG, |l| l.contains("refuses to enroll this host id again"))
        .unwrap();
    agent.kill();
}

#[test]
fn agent_trusts_only_the_configured_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    // Another collector's self-signed certificate stands for "a certificate from another CA".
    let other = Collector::start(&tmp.path().join("other"), 0, &[]).unwrap();
    let pcap = fixture("curl-ipv4.pcap").display().to_string();

    // Trusting the other CA: refused, nothing arrives.
    let wrong = tmp.path().join("wrong");
    let ca = format!("ca_file = {:?}\n", other.data_dir.join("cert.pem").display().to_string());
    let config = agent_config(&wrong, &collector.url, "", &ca).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace("pin_sha256 = \"\"\n", "");
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--pcap", &pcap], "info").unwrap();
    let line = agent.wait_line("a refused upload", LONG, |l| l.contains("Upload failed")).unwrap();
    assert!(line.contains("certificate"), "{line}");
    agent.kill();
    let devices = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").unwrap();
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(0),
        "nothing reached the collector"
    );

    // Trusting the collector's own CA: accepted, and the node key is kept private.
    let right = tmp.path().join("right");
    let ca = format!("ca_file = {:?}\n", collector.data_dir.join("cert.pem").display().to_string());
    let config = agent_config(&right, &collector.url, "", &ca).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace("pin_sha256 = \"\"\n", "");
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(&config, &["--no-scan", "--pcap", &pcap], "info").unwrap();
    wait_for("sightings over the CA-verified connection", LONG, || {
        (!sightings_by_product(&collector, &token).ok()?.is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    agent.terminate(Duration::from_secs(30)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(right.join("state/node_key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the node key file is private");
    }
}

/// Issue 4: an app the agent reported installed and then found gone shows as no longer
/// installed in the collector's product detail; network-only products say nothing about it.
#[test]
fn an_uninstalled_app_shows_as_removed_in_the_product_detail() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("collector"), 0, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let config =
        agent_config(&tmp.path().join("agent"), &collector.url, &collector.pin, "").unwrap();
    // A machine root with only the ChatGPT app installed.
    let root = tmp.path().join("root");
    let app = root.join("Applications/ChatGPT.app/Contents");
    std::fs::create_dir_all(&app).unwrap();
    let fixture = workspace_root()
        .join("agent/tests/data/inventory/tree/Applications/ChatGPT.app/Contents/Info.plist");
    std::fs::copy(fixture, app.join("Info.plist")).unwrap();
    let root_arg = root.display().to_string();
    let args = ["--no-capture", "--scan-root", root_arg.as_str()];
    let installed = |want: bool| {
        let detail =
            api_get(&collector.url, &collector.pin, &token, "/api/v1/products/openai.chatgpt")
                .ok()?;
        let devices = detail["devices"].as_array()?;
        (devices.len() == 1 && devices[0]["installed"] == serde_json::json!(want)).then_some(())
    };

    let mut agent = start_agent(&config, &args, "info").unwrap();
    wait_for("the app reported installed", LONG, || installed(true))
        .unwrap_or_else(|e| panic!("{e}\nagent output:\n{}", agent.output().join("\n")));
    assert!(agent.terminate(Duration::from_secs(30)).unwrap().success());

    // Uninstalled while the agent was stopped: its first scan after the restart notices.
    std::fs::remove_dir_all(root.join("Applications/ChatGPT.app")).unwrap();
    let mut agent = start_agent(&config, &args, "info").unwrap();
    wait_for("the app reported removed", LONG, || installed(false))
        .unwrap_or_else(|e| panic!("{e}\nagent output:\n{}", agent.output().join("\n")));
    assert!(agent.terminate(Duration::from_secs(30)).unwrap().success());
}

/// A tmpfs mounted for one test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB at `path`; `None` (after saying why) where mounting is not
    /// possible, which `CI=true` turns into a failure.
    fn mount(path: &Path, kib: u64, test: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0700"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { path: path.to_path_buf() }),
            other => {
                let why = format!("{other:?}");
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{test} needs to mount a tmpfs (root), and CI=true forbids skipping it: {why}"
                );
                println!("SKIPPED {test}: cannot mount a tmpfs here: {why}");
                None
            }
        }
    }

    fn resize(&self, kib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.path.display());
    }

    /// Fills the file system with one file until it refuses a single byte more.
    fn fill(&self) -> u64 {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.path.join("filler")).unwrap();
        let mut written = 0u64;
        // Bounded by the file system's size; smaller writes take the last partial pages.
        for chunk in [64 * 1024, 4096, 512, 1] {
            let bytes = vec![0x5a_u8; chunk];
            while f.write_all(&bytes).is_ok() {
                written += chunk as u64;
            }
        }
        // What a refused write left buffered is nothing: the file is unbuffered.
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: an agent still holding a file there must not keep the mount.
        let _unmounted = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `count` DNS queries for `name` from distinct source ports, as an Ethernet capture file.
fn dns_pcap(path: &Path, name: &str, count: usize) {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]);
    let mut out = Vec::new();
    // pcap global header: magic, v2.4, zone, sigfigs, snaplen, LINKTYPE_ETHERNET.
    out.extend(0xa1b2_c3d4_u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    for word in [0u32, 0, 65_535, 1] {
        out.extend(word.to_le_bytes());
    }
    for i in 0..count {
        let port = 10_000 + u16::try_from(i % 50_000).unwrap();
        let udp_len = u16::try_from(8 + query.len()).unwrap();
        let mut udp = port.to_be_bytes().to_vec();
        udp.extend(53u16.to_be_bytes());
        udp.extend(udp_len.to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(&query);
        let total = u16::try_from(20 + udp.len()).unwrap();
        let mut ip = vec![0x45, 0];
        ip.extend(total.to_be_bytes());
        ip.extend([0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 53]);
        let sum = {
            let mut s = 0u32;
            for pair in ip.chunks(2) {
                s += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            }
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            !(u16::try_from(s).unwrap())
        };
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend(udp);
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        frame.extend(ip);
        let len = u32::try_from(frame.len()).unwrap();
        for word in [1_700_000_000 + u32::try_from(i / 1_000).unwrap(), 0, len, len] {
            out.extend(word.to_le_bytes());
        }
        out.extend(frame);
    }
    std::fs::write(path, out).unwrap();
}

/// `aiscout-agent status --json` for `config`.
fn agent_status(config: &Path) -> serde_json::Value {
    let out = Command::new(binary("aiscout-agent", "aiscout-agent").unwrap())
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Rows of `product` in the agent's spool.
fn spooled_rows(config: &Path, product: &str) -> u64 {
    let status = agent_status(config);
    status["spool"]["by_kind"]
        .as_array()
        .map(|k| {
            k.iter().filter(|h| h["product"] == product).filter_map(|h| h["rows"].as_u64()).sum()
        })
        .unwrap_or(0)
}

/// Issue 14 item 8: the real agent with its state folder on a small tmpfs. (1) With room and
/// the collector down it spools a first file and stops. (2) The disk is filled to the last
/// byte and the collector comes back: the agent starts, enrolls, sends the spooled batch and
/// acknowledges it (the rows leave the spool) while the disk is still full; a second, busy
/// file cannot be stored, so its sightings wait in memory and the rest are dropped and
/// counted; the failing writes are logged a few times, not once per record; no node key file
/// is left partial. (3) The tmpfs grows: the waiting sightings and the drop count reach the
/// collector, and stored + dropped + evicted = observed, exactly.
#[test]
fn a_full_state_disk_keeps_acknowledging_counts_every_drop_and_recovers_when_it_grows() {
    const TEST: &str =
        "a_full_state_disk_keeps_acknowledging_counts_every_drop_and_recovers_when_it_grows";
    const BUSY: usize = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    let agent_dir = tmp.path().join("agent");
    let Some(disk) = Tmpfs::mount(&agent_dir.join("state"), 4 * 1024, TEST) else { return };
    let data = tmp.path().join("collector");
    let port = free_port().unwrap();
    let first = Collector::start(&data, port, &[]).unwrap();
    let (url, pin) = (first.url.clone(), first.pin.clone());
    let mut p = first.process;
    p.terminate(Duration::from_secs(30)).unwrap();
    let config = agent_config(&agent_dir, &url, &pin, "").unwrap();

    // (1) Room, no collector: a first file is spooled.
    let early = tmp.path().join("early.pcap");
    dns_pcap(&early, "claude.ai", 500);
    let busy = tmp.path().join("busy.pcap");
    dns_pcap(&busy, "chatgpt.com", BUSY);
    let want_early = expected_counts(std::slice::from_ref(&early));
    let want_busy = expected_counts(std::slice::from_ref(&busy));
    assert_eq!(want_early.len(), 1, "{want_early:?}");
    assert_eq!(want_busy.len(), 1, "{want_busy:?}");
    assert_eq!(want_busy[0].1, BUSY as u64, "every query is an observation");
    let (early_product, busy_product) = (want_early[0].0.clone(), want_busy[0].0.clone());
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &early.display().to_string()], "info")
            .unwrap();
    wait_for("the first file in the spool", LONG, || {
        (agent_status(&config)["spool"]["sightings"].as_u64() == Some(500)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    assert!(agent.terminate(Duration::from_secs(30)).unwrap().success());
    assert!(disk.path.join("spool.db.reserve").exists(), "the spool keeps its reserve");

    // (2) Not one byte free, and the collector back.
    let filled = disk.fill();
    assert!(filled > 0);
    let collector = Collector::start(&data, port, &[]).unwrap();
    let token = collector.token("admin", "e2e").unwrap();
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &busy.display().to_string()], "info")
            .unwrap();
    let early_in = wait_for("the spooled batch acknowledged on the full disk", LONG, || {
        let got = sightings_by_product(&collector, &token).ok()?;
        let n = got.iter().find(|(p, _)| *p == early_product).map(|(_, n)| *n)?;
        (n == 500 && spooled_rows(&config, &early_product) == 0).then_some(n)
    });
    let early_in = early_in.unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    assert_eq!(early_in, 500);
    // The busy file cannot be stored: the heartbeat reports drops before there is room.
    let devices = wait_for("drops in a heartbeat", LONG, || {
        let v = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").ok()?;
        let drops = v["devices"][0]["health"]["drops"].as_u64()?;
        (drops > 0).then_some(v)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    assert!(
        spooled_rows(&config, &busy_product) == 0,
        "nothing of the busy file fits while the disk is full: {}",
        agent_status(&config)
    );
    let out = agent.output().to_vec();
    let failed_writes = out.iter().filter(|l| l.contains("Spool write failed")).count();
    assert!(
        (1..=3).contains(&failed_writes),
        "storage failures are logged once per interval, not per record: {failed_writes}\n{}",
        out.join("\n")
    );
    let key = std::fs::read_to_string(disk.path.join("node_key")).unwrap_or_default();
    assert!(key.is_empty() || aiscout_wire::is_node_key_shaped(key.trim()), "partial key {key:?}");
    let heartbeat_drops = devices["devices"][0]["health"]["drops"].as_u64().unwrap();

    // (3) Room again: everything adds up.
    disk.resize(64 * 1024);
    let totals = wait_for("stored + dropped = observed after the disk grew", LONG * 2, || {
        let got = sightings_by_product(&collector, &token).ok()?;
        let stored = got.iter().find(|(p, _)| *p == busy_product).map_or(0, |(_, n)| *n);
        let v = api_get(&collector.url, &collector.pin, &token, "/api/v1/devices").ok()?;
        let health = &v["devices"][0]["health"];
        let dropped = health["dropped_sightings"].as_u64()?;
        let evicted = health["evicted_sightings"].as_u64()?;
        (stored + dropped + evicted == BUSY as u64 && stored > 0).then_some((stored, dropped))
    });
    let (stored, dropped) = totals.unwrap_or_else(|e| {
        panic!("{e}\n{:?}\n{}", sightings_by_product(&collector, &token), agent.output().join("\n"))
    });
    assert!(dropped > 0 && dropped >= heartbeat_drops, "stored {stored}, dropped {dropped}");
    wait_for("the node key saved whole", LONG, || {
        let key = std::fs::read_to_string(disk.path.join("node_key")).ok()?;
        aiscout_wire::is_node_key_shaped(key.trim()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    let leftovers: Vec<String> = std::fs::read_dir(&disk.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(agent.terminate(Duration::from_secs(30)).unwrap().success());
}
