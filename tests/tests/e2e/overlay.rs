//! Issue 17 end to end: the real collector serves an organisation overlay written with its
//! CLI (an organisation product and a sanctioned gateway, signed with its `overlay.key`); the
//! real agent, pinning that key, fetches and verifies it, detects the organisation product in
//! a capture, and its direct connection to the OpenAI API, which the gateway fronts, is
//! reported as bypass naming the device. A tampered and an older overlay are refused by the
//! agent. Then the admin's console page in headless Chromium (screenshot, axe-core).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aiscout_e2e::browser::{Browser, Key};
use aiscout_e2e::{
    Collector, agent_config, api_get, api_send, binary, sightings_by_product, start_agent,
    wait_for, workspace_root,
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

fn cli(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("aiscout-collector", "aiscout-collector").unwrap())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn capture(name: &str) -> String {
    workspace_root().join("examples/captures").join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_verifies_the_overlay_detects_its_product_and_bypass_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut c = Collector::start(&data, 0, &[]).unwrap();
    let admin = c.token("admin", "ada-admin").unwrap();

    // The admin's CLI: an organisation product on a name the vendor catalog does not claim
    // (seen in chromium-tls.pcap) and a gateway fronting the OpenAI API.
    let (ok, out) = cli(
        &data,
        &[
            "overlay",
            "add-product",
            "--id",
            "org.update-helper",
            "--name",
            "Update Helper",
            "--category",
            "coding",
            "--api-domain",
            "update.googleapis.com",
        ],
    );
    assert!(ok && out.contains("overlay version 1 written"), "{out}");
    let (ok, out) = cli(
        &data,
        &[
            "overlay",
            "add-gateway",
            "--id",
            "org.llm-gateway",
            "--host",
            "llm.corp.example",
            "--fronts",
            "openai.api",
        ],
    );
    assert!(ok && out.contains("overlay version 2 written"), "{out}");
    // A gateway fronting a product the catalog lacks is refused naming the field.
    let (ok, out) = cli(
        &data,
        &[
            "overlay",
            "add-gateway",
            "--id",
            "org.gw2",
            "--host",
            "gw2.corp.example",
            "--fronts",
            "nobody.api",
        ],
    );
    assert!(!ok && out.contains(".fronts[0]") && out.contains("nobody.api"), "{out}");
    let (ok, show) = cli(&data, &["overlay", "show"]);
    assert!(ok && show.contains("version 2"), "{show}");
    let key = show
        .lines()
        .find_map(|l| l.strip_prefix("overlay public key (agents' overlay_key): "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(key.len(), 64, "{show}");

    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let key_file = agent_dir.join("overlay.pub");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let extra = format!("overlay_key_file = {:?}", key_file.display().to_string());
    let config = agent_config(&agent_dir, &c.url, &c.pin, &extra).unwrap();

    // First run: enrolls, fetches and verifies the overlay (a capture of DNS only, so it is
    // not replayed before the overlay is in use).
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &capture("dig-udp.pcap")], "info").unwrap();
    agent
        .wait_line("the overlay accepted", LONG, |l| {
            l.contains("Organisation overlay updated and verified") && l.contains('2')
        })
        .unwrap();
    agent.terminate(Duration::from_secs(30)).unwrap();
    let state = agent_dir.join("state");
    let saved = std::fs::read(state.join("overlay.bin")).unwrap();

    // Second run: the saved overlay is in use from the start; the captures hold the
    // organisation product's host and a direct call to api.openai.com.
    let mut agent = start_agent(
        &config,
        &[
            "--no-scan",
            "--pcap",
            &capture("chromium-tls.pcap"),
            "--pcap",
            &capture("curl-ipv4.pcap"),
        ],
        "info",
    )
    .unwrap();
    agent
        .wait_line("the saved overlay", LONG, |l| {
            l.contains("Loaded the last good organisation overlay")
        })
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_for("the organisation product and the OpenAI API in the inventory", LONG, || {
            let s = sightings_by_product(&c, &admin).ok()?;
            let seen = |p: &str| s.iter().any(|(id, n)| id == p && *n > 0);
            (seen("org.update-helper") && seen("openai.api")).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    });
    let report = tokio::task::block_in_place(|| {
        api_get(&c.url, &c.pin, &admin, "/api/v1/reports/bypass").unwrap()
    });
    assert_eq!(report["overlay_version"], 2, "{report}");
    let rows = report["rows"].as_array().unwrap();
    // The capture's DNS answer and its ClientHello are separate sightings of the OpenAI API
    // host from this device, summed into one row per process; none for the organisation
    // product.
    assert!(!rows.is_empty(), "{report}");
    let device = rows[0]["host_id"].as_str().unwrap();
    assert!(!device.is_empty(), "{report}");
    for row in rows {
        assert_eq!(row["host"], "api.openai.com", "{report}");
        assert_eq!(row["product"], "openai.api", "{report}");
        assert_eq!(row["gateway_host"], "llm.corp.example", "{report}");
        assert_eq!(row["host_id"], device, "{report}");
        assert!(!row["hostname"].as_str().unwrap().is_empty(), "{report}");
        // A replayed capture's sockets are gone, so no process is attributed (attribution.rs
        // works only live); the field is there, empty.
        assert_eq!(row["process"], "", "{report}");
    }
    agent.terminate(Duration::from_secs(30)).unwrap();

    // Tampered: one payload byte flipped in the saved overlay; the agent refuses it at start.
    let mut tampered = saved.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    std::fs::write(state.join("overlay.bin"), &tampered).unwrap();
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &capture("dig-udp.pcap")], "info").unwrap();
    let line = agent
        .wait_line("the tampered overlay refused", LONG, |l| {
            l.contains("Saved organisation overlay refused")
        })
        .unwrap();
    assert!(line.contains("signature") || line.contains("hash"), "{line}");
    // Issue 17: the refusal names the overlay and its key settings, never the catalog.
    assert!(line.contains("error=organisation overlay ") && line.contains("overlay_key"), "{line}");
    assert!(!line.contains("catalog"), "{line}");
    agent.terminate(Duration::from_secs(30)).unwrap();

    // Older: the agent has accepted version 9 before; the collector's version 2 is refused.
    std::fs::write(state.join("overlay.version"), "9\n").unwrap();
    let mut agent =
        start_agent(&config, &["--no-scan", "--pcap", &capture("dig-udp.pcap")], "info").unwrap();
    let line = agent
        .wait_line("the older overlay refused", LONG, |l| {
            l.contains("Organisation overlay from the collector refused")
        })
        .unwrap();
    assert!(line.contains("organisation overlay version 2 is older than version 9"), "{line}");
    assert!(!line.contains("catalog"), "{line}");
    agent.terminate(Duration::from_secs(30)).unwrap();

    // The admin's page in a real browser.
    let b = Browser::start().await.unwrap();
    b.goto(&format!("{}/login", c.url)).await.unwrap();
    b.wait_for("#token", LONG).await.unwrap().send_keys(&admin).await.unwrap();
    b.keys(&[Key::Enter]).await.unwrap();
    b.wait_for("header .who", LONG).await.unwrap();
    b.goto(&format!("{}/admin/overlay", c.url)).await.unwrap();
    let version = b.wait_for("#overlay-version", LONG).await.unwrap().text().await.unwrap();
    assert_eq!(version, "2");
    let page = b.find("main").await.unwrap().text().await.unwrap();
    assert!(page.contains("org.update-helper") && page.contains("llm.corp.example"), "{page}");
    assert!(page.contains("last fetched from this collector"), "{page}");
    b.screenshot("overlay").await.unwrap();
    b.assert_accessible("overlay").await.unwrap();
    // A gateway typed from the keyboard with a wrong fronted id: refused, the field named.
    b.find("#g-id").await.unwrap().send_keys("org.second").await.unwrap();
    b.find("#g-host").await.unwrap().send_keys("gw2.corp.example").await.unwrap();
    b.find("#g-fronts").await.unwrap().send_keys("openai.api, nobody.api").await.unwrap();
    b.keys(&[Key::Enter]).await.unwrap();
    let error = b.wait_for("#gateway-error", LONG).await.unwrap().text().await.unwrap();
    assert!(error.contains("fronts[1]") && error.contains("nobody.api"), "{error}");
    b.execute("document.getElementById('gateway-error').scrollIntoView()", vec![]).await.unwrap();
    b.screenshot("overlay-error").await.unwrap();
    b.assert_accessible("overlay-error").await.unwrap();
    c.process.terminate(Duration::from_secs(30)).unwrap();
}

/// Enrolls a device over the wire protocol, as an agent does; its node key.
fn enroll(c: &Collector, host: &str, owner: &str) -> String {
    let body = json!({"enroll_secret": "e2e-enroll-secret-0123456789abcdefghijkl",
        "device": {"host_id": host, "hostname": format!("{host}.corp"), "os": "linux",
                   "os_version": "12", "agent_version": "0.1.0", "owner_email": owner}});
    let v = api_send(
        &c.url,
        &c.pin,
        hyper::Method::POST,
        "/api/v1/enroll",
        None,
        body.to_string().into_bytes(),
    )
    .unwrap();
    v["node_key"].as_str().unwrap().to_owned()
}

/// One sighting batch as an agent with live process attribution sends it.
fn report(c: &Collector, key: &str, batch: &str, sightings: &[(&str, &str, &str, &str)]) {
    let sightings: Vec<Value> = sightings
        .iter()
        .map(|(product, kind, value, process)| {
            json!({"product": product, "kind": kind, "value": value, "user": "u1",
                   "process": process, "first_seen": 1_790_000_000, "last_seen": 1_790_000_600,
                   "count": 2, "window": 1_789_999_200})
        })
        .collect();
    let body = json!({"batch_id": batch, "agent": {"version": "0.1.0", "catalog_version": 0},
                      "sightings": sightings, "dropped": 0, "evicted": 0});
    api_send(
        &c.url,
        &c.pin,
        hyper::Method::POST,
        "/api/v1/sightings",
        Some(key),
        body.to_string().into_bytes(),
    )
    .unwrap();
}

/// Issue 17, the gateway bypass in the console: one device goes through the sanctioned gateway
/// (and calls the Anthropic API, which the gateway does not front: a near miss), another calls
/// the OpenAI API straight from python3. Procurement sees the bypass on the inventory row, the
/// app card and the reconciliation page (screenshots, axe-core), and downloads the section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_bypass_shows_on_the_inventory_the_app_card_and_the_reconciliation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut c = Collector::start(&data, 0, &[]).unwrap();
    let procurement = c.token("procurement", "pat-procurement").unwrap();
    let (ok, out) = cli(
        &data,
        &[
            "overlay",
            "add-gateway",
            "--id",
            "org.llm-gateway",
            "--host",
            "llm.corp.example",
            "--fronts",
            "openai.api",
        ],
    );
    assert!(ok, "{out}");
    let people = dir.path().join("people.csv");
    std::fs::write(
        &people,
        "email,name,department,manager\ndan.direct@example.com,Dan Direct,Research,\n",
    )
    .unwrap();
    let (ok, out) = cli(&data, &["import", "people", &people.display().to_string()]);
    assert!(ok, "{out}");
    tokio::task::block_in_place(|| {
        let gw = enroll(&c, "laptop-gw", "gina.gateway@example.com");
        report(
            &c,
            &gw,
            "gw-1",
            &[
                ("org.llm-gateway", "tls_sni", "llm.corp.example", "curl"),
                ("anthropic.api", "tls_sni", "api.anthropic.com", "python3"),
            ],
        );
        let direct = enroll(&c, "laptop-direct", "dan.direct@example.com");
        report(
            &c,
            &direct,
            "direct-1",
            &[
                ("openai.api", "dns", "api.openai.com", "python3"),
                ("openai.api", "tls_sni", "api.openai.com", "python3"),
            ],
        );
    });

    let b = Browser::start().await.unwrap();
    b.goto(&format!("{}/login", c.url)).await.unwrap();
    b.wait_for("#token", LONG).await.unwrap().send_keys(&procurement).await.unwrap();
    b.keys(&[Key::Enter]).await.unwrap();
    b.wait_for("header .who", LONG).await.unwrap();
    b.goto(&format!("{}/inventory", c.url)).await.unwrap();
    let rows = b.wait_for("table.data tbody", LONG).await.unwrap().text().await.unwrap();
    let badge = b
        .find("table.data tbody tr:has(a[href='/products/openai.api']) span.bypass")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(badge.contains("Gateway bypass"), "{badge}");
    assert!(
        badge.contains("1 device, 1 person · python3 · not through org.llm-gateway"),
        "{badge}"
    );
    assert_eq!(b.find_all("span.bypass").await.unwrap().len(), 1, "only the OpenAI API: {rows}");
    b.screenshot("inventory-bypass").await.unwrap();
    b.assert_accessible("inventory-bypass").await.unwrap();

    b.find("table.data a[href='/products/openai.api']").await.unwrap().click().await.unwrap();
    let section = b.wait_for("#bypass", LONG).await.unwrap().text().await.unwrap();
    for v in [
        "laptop-direct.corp",
        "dan.direct@example.com",
        "python3",
        "api.openai.com",
        "llm.corp.example",
    ] {
        assert!(section.contains(v), "{v} missing from {section}");
    }
    b.execute("document.getElementById('bypass').scrollIntoView()", vec![]).await.unwrap();
    b.screenshot("product-bypass").await.unwrap();
    b.assert_accessible("product-bypass").await.unwrap();
    b.goto(&format!("{}/products/anthropic.api", c.url)).await.unwrap();
    b.wait_for("main h1", LONG).await.unwrap();
    assert!(b.find_all("#bypass").await.unwrap().is_empty(), "the near miss has no bypass");

    b.goto(&format!("{}/reconcile", c.url)).await.unwrap();
    let s9 = b.wait_for("#s9 tbody", LONG).await.unwrap().text().await.unwrap();
    assert!(s9.contains("laptop-direct.corp") && s9.contains("Research"), "{s9}");
    assert!(s9.contains("python3") && s9.contains("llm.corp.example"), "{s9}");
    assert!(!s9.contains("laptop-gw"), "{s9}");
    let csv = b.find("#s9 a[download]").await.unwrap().attr("href").await.unwrap();
    assert_eq!(csv.as_deref(), Some("/reconcile/gateway-bypass.csv"));
    b.execute("document.getElementById('s9').scrollIntoView()", vec![]).await.unwrap();
    b.screenshot("reconcile-bypass").await.unwrap();
    b.assert_accessible("reconcile-bypass").await.unwrap();
    drop(b);
    c.process.terminate(Duration::from_secs(30)).unwrap();
}
