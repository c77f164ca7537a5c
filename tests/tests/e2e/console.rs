//! The console in a real browser: headless Chromium over WebDriver against the real
//! `aiscout-collector serve` binary on loopback, with the bundled example files imported.
//! Every page is screenshotted into `target/console-screenshots/` and checked with axe-core
//! (no serious or critical violation). Single sign-on runs against the certified
//! `oidc-provider` started by the test (tests/oidc/provider.mjs).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aiscout_e2e::browser::{Browser, Cookie, Key};
use aiscout_e2e::{
    Collector, Process, agent_config, binary, free_port, sightings_by_product, start_agent,
    wait_for, workspace_root,
};

const WAIT: Duration = Duration::from_secs(20);

/// Runs the collector's command line on the same data folder.
fn cli(data: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("aiscout-collector", "aiscout-collector").unwrap())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A collector with the example people, expenses and gateway spend imported.
fn collector(dir: &Path, extra: &[String]) -> Collector {
    let c = Collector::start(dir, 0, extra).unwrap();
    let root = workspace_root();
    let ex = |p: &str| root.join("examples").join(p).display().to_string();
    cli(dir, &["import", "people", &ex("people.csv")]);
    let mut expenses = vec!["import".to_owned(), "expenses".to_owned()];
    for f in std::fs::read_dir(root.join("examples/expenses")).unwrap() {
        expenses.push(f.unwrap().path().display().to_string());
    }
    cli(dir, &expenses.iter().map(String::as_str).collect::<Vec<_>>());
    let mut gateway = vec!["import".to_owned(), "gateway".to_owned()];
    for f in std::fs::read_dir(root.join("examples/gateway")).unwrap() {
        gateway.push(f.unwrap().path().display().to_string());
    }
    cli(dir, &gateway.iter().map(String::as_str).collect::<Vec<_>>());
    c
}

async fn text(b: &Browser, css: &str) -> String {
    b.wait_for(css, WAIT).await.unwrap().text().await.unwrap()
}

/// Signs in at `/login` from the keyboard: type the token, Enter.
async fn sign_in(b: &Browser, url: &str, token: &str) {
    b.goto(&format!("{url}/login")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap().send_keys(token).await.unwrap();
    b.keys(&[Key::Enter]).await.unwrap();
    b.wait_for("header .who", WAIT).await.unwrap();
}

/// Screenshot and accessibility check of the page the browser shows.
async fn look(b: &Browser, name: &str) {
    b.screenshot(name).await.unwrap();
    b.assert_accessible(name).await.unwrap();
}

async fn sign_out(b: &Browser) {
    b.find("header .who button").await.unwrap().click().await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_reviews_and_procurement_reconciles_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &[]);
    let url = c.url.clone();
    let security = c.token("security", "sam-security").unwrap();
    let procurement = c.token("procurement", "pat-procurement").unwrap();
    let admin = c.token("admin", "ada-admin").unwrap();
    // A real agent replays the bundled captures of real clients, so a device has AI tools.
    let config = agent_config(&dir.path().join("agent"), &url, &c.pin, "").unwrap();
    let mut args = vec!["--no-scan".to_owned()];
    for p in std::fs::read_dir(workspace_root().join("examples/captures")).unwrap() {
        let p = p.unwrap().path();
        if p.extension().is_some_and(|e| e == "pcap") {
            args.extend(["--pcap".to_owned(), p.display().to_string()]);
        }
    }
    let mut agent =
        start_agent(&config, &args.iter().map(String::as_str).collect::<Vec<_>>(), "info").unwrap();
    // The harness's API client runs its own runtime: wait outside this one.
    tokio::task::block_in_place(|| {
        wait_for("the agent's sightings in the inventory", Duration::from_secs(120), || {
            sightings_by_product(&c, &admin).ok().filter(|s| s.iter().any(|(_, n)| *n > 0))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.output().join("\n")));
    });
    agent.terminate(Duration::from_secs(30)).unwrap();
    let b = Browser::start().await.unwrap();

    // Not signed in: every page leads to the sign-in form, which returns there afterwards.
    b.goto(&format!("{url}/inventory")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();
    assert!(b.current_url().await.unwrap().contains("/login?next=/inventory"));
    look(&b, "login").await;
    // A wrong token is refused on the page.
    b.find("#token").await.unwrap().send_keys("aistk_wrong").await.unwrap();
    b.keys(&[Key::Enter]).await.unwrap();
    assert!(text(&b, "p.error").await.contains("not valid"));

    // Sign in with a token; the token is not kept in the browser.
    sign_in(&b, &url, &security).await;
    assert!(text(&b, "header .who").await.contains("sam-security · security"));
    for cookie in b.cookies().await.unwrap() {
        assert!(!cookie.value.contains(&security), "the token reached a cookie");
        if cookie.name == "aiscout_session" {
            assert!(cookie.http_only && cookie.secure);
            assert_eq!(cookie.same_site.as_deref(), Some("Strict"));
        }
    }
    b.goto(&format!("{url}/")).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "Overview");
    b.wait_for("#spend-by-source svg rect", WAIT).await.unwrap();
    look(&b, "overview").await;

    // Filter the inventory: unreviewed products paid on cards.
    b.goto(&format!("{url}/inventory")).await.unwrap();
    b.find("#status").await.unwrap().select_option("unreviewed").await.unwrap();
    b.find("#source").await.unwrap().select_option("expense").await.unwrap();
    b.find("form.filters button[type=submit]").await.unwrap().click().await.unwrap();
    // The page before the submit has rows too: wait for the filtered page's address.
    b.wait_for_url("status=unreviewed", WAIT).await.unwrap();
    b.wait_for("table.data tbody tr", WAIT).await.unwrap();
    let here = b.current_url().await.unwrap();
    assert!(here.contains("status=unreviewed") && here.contains("source=expense"), "{here}");
    let rows = text(&b, "table.data tbody").await;
    assert!(rows.contains("ChatGPT") && rows.contains("Unreviewed"), "{rows}");
    look(&b, "inventory").await;

    // Open a product and sanction it with a note; the audit entry shows on the card.
    b.find("table.data a[href='/products/openai.chatgpt']").await.unwrap().click().await.unwrap();
    b.wait_for_url("/products/openai.chatgpt", WAIT).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "ChatGPT");
    let card = text(&b, "main").await;
    // Evidence: the network name the agent matched, and the card descriptor.
    assert!(card.contains("What matched") && card.contains("chatgpt.com"), "{card}");
    assert!(card.contains("OPENAI *CHATGPT SUBSCR"), "{card}");
    look(&b, "product").await;
    b.find("form.review input[value=sanctioned]").await.unwrap().click().await.unwrap();
    b.find("#note").await.unwrap().send_keys("Enterprise agreement signed").await.unwrap();
    b.find("#business_owner").await.unwrap().send_keys("cio@example.com").await.unwrap();
    b.find("form.review button[type=submit]").await.unwrap().click().await.unwrap();
    assert!(text(&b, "p.notice").await.contains("Decision saved"));
    assert!(text(&b, "header.card-head .badge").await.contains("Sanctioned"));
    let trail = text(&b, "table.audit").await;
    assert!(
        trail.contains("review.set")
            && trail.contains("Enterprise agreement signed")
            && trail.contains("sam-security"),
        "{trail}"
    );
    b.goto(&format!("{url}/audit?product=openai.chatgpt")).await.unwrap();
    assert!(text(&b, "table.audit").await.contains("sanctioned"));
    look(&b, "audit").await;

    // Bulk-block from the queue with the keyboard only.
    b.goto(&format!("{url}/review")).await.unwrap();
    b.wait_for("table.queue tbody tr", WAIT).await.unwrap();
    look(&b, "review").await;
    let first = b
        .find("table.queue tbody tr:nth-child(1) input[type=checkbox]")
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let second = b
        .find("table.queue tbody tr:nth-child(2) input[type=checkbox]")
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    // Tab from the top of the page to the first product's box (a bounded number of steps).
    let mut reached = false;
    for _ in 0..40 {
        b.keys(&[Key::Tab]).await.unwrap();
        let active = b.active_element().await.unwrap();
        if active.attr("value").await.unwrap().as_deref() == Some(first.as_str()) {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the first product's checkbox");
    b.keys(&[Key::Space]).await.unwrap();
    b.execute("document.activeElement.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}))", vec![]).await.unwrap();
    b.keys(&[Key::Space]).await.unwrap();
    b.execute("document.activeElement.dispatchEvent(new KeyboardEvent('keydown', {key: 'b', bubbles: true}))", vec![]).await.unwrap();
    assert_eq!(
        b.active_element().await.unwrap().attr("id").await.unwrap().as_deref(),
        Some("bulk-note")
    );
    b.active_element().await.unwrap().send_keys("Not approved: data leaves the EU").await.unwrap();
    b.keys(&[Key::Tab, Key::Enter]).await.unwrap();
    assert!(text(&b, "p.notice").await.contains("2 products"));
    for p in [&first, &second] {
        b.goto(&format!("{url}/products/{p}")).await.unwrap();
        assert!(text(&b, "header.card-head .badge").await.contains("Blocked"), "{p}");
    }

    b.goto(&format!("{url}/devices")).await.unwrap();
    let device = b.find("table.data tbody a").await.unwrap();
    let href = device.attr("href").await.unwrap().unwrap();
    device.click().await.unwrap();
    b.wait_for_url(&href, WAIT).await.unwrap();
    assert!(text(&b, "main").await.contains("AI tools on this device"));
    b.wait_for("table.data tbody tr", WAIT).await.unwrap();
    look(&b, "device").await;
    for (page, name) in
        [("/reconcile", "reconcile"), ("/devices", "devices"), ("/people", "people")]
    {
        b.goto(&format!("{url}{page}")).await.unwrap();
        b.wait_for("main h1", WAIT).await.unwrap();
        look(&b, name).await;
    }
    // Card spend reaches people whose exports name them only by name (the directory joins them).
    b.goto(&format!("{url}/people?q=ann.lee")).await.unwrap();
    let card = text(&b, "table.data tbody tr:first-child td:nth-child(4)").await;
    assert!(card.starts_with("USD "), "Ann Lee's card spend: {card:?}");
    b.goto(&format!("{url}/people/ann.lee%40example.com")).await.unwrap();
    assert!(text(&b, "main").await.contains("ChatGPT"));
    look(&b, "person").await;

    // Logout ends the session: the old cookie no longer opens a page.
    let old = b.cookies().await.unwrap().into_iter().find(|c| c.name == "aiscout_session").unwrap();
    sign_out(&b).await;
    b.add_cookie(&Cookie::session("aiscout_session", &old.value)).await.unwrap();
    b.goto(&format!("{url}/")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();
    // A forged session too.
    b.add_cookie(&Cookie::session("aiscout_session", "forged-value")).await.unwrap();
    b.goto(&format!("{url}/review")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();

    // Procurement: reconciles and imports, but is refused a review change.
    sign_in(&b, &url, &procurement).await;
    b.goto(&format!("{url}/products/openai.chatgpt")).await.unwrap();
    assert!(b.find_all("form.review").await.unwrap().is_empty(), "procurement sees no review form");
    // A review form posted anyway (with the session's own CSRF token) is refused on the server.
    b.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/products/openai.chatgpt/review';
         for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['status', 'blocked'], ['note', 'x']]) {
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
         document.body.appendChild(f); f.submit();",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(text(&b, "main h1").await, "Not allowed");
    assert!(text(&b, "p.refusal").await.contains("procurement role"));
    look(&b, "forbidden").await;
    b.goto(&format!("{url}/products/openai.chatgpt")).await.unwrap();
    assert!(text(&b, "header.card-head .badge").await.contains("Sanctioned"), "nothing changed");

    // Upload an expense file with a bad row: its line and column are shown.
    let csv = dir.path().join("november-cards.csv");
    std::fs::write(
        &csv,
        "date,amount,currency,descriptor,payer_email,department\n\
         2026-11-21,20.00,USD,OPENAI *CHATGPT SUBSCR,ann.lee@example.com,Sales\n\
         2026-11-22,twenty,USD,CURSOR AI POWERED IDE,raj.patel@example.com,Engineering\n",
    )
    .unwrap();
    b.goto(&format!("{url}/imports")).await.unwrap();
    b.upload("#file", &csv).await.unwrap();
    b.find("form.upload button[type=submit]").await.unwrap().click().await.unwrap();
    let result = text(&b, "#result").await;
    assert!(result.contains("november-cards.csv") && result.contains("1 stored"), "{result}");
    let errors = text(&b, "table.errors tbody").await;
    assert!(errors.contains('3') && errors.contains("amount"), "line 3, column amount: {errors}");
    let history = text(&b, "main").await;
    assert!(history.contains("pat-procurement"), "the history names who imported");
    assert!(
        history.contains("ramp.csv") && history.contains("cli"),
        "command-line imports are in the history"
    );
    look(&b, "imports").await;
    // A gateway file whose JSON is cut short is refused on the page, saying where the JSON
    // broke off and that the export looks cut short; the form keeps the kind chosen, and
    // nothing of the file is stored.
    let json = dir.path().join("usage.json");
    std::fs::write(&json, "{\"data\": [{\"model\": \"gpt-4o\", \"spend\": 12.5},\n").unwrap();
    b.goto(&format!("{url}/imports")).await.unwrap();
    b.find("input[name=kind][value=gateway]").await.unwrap().click().await.unwrap();
    b.find("#format").await.unwrap().select_option("gateway:litellm").await.unwrap();
    b.find("#cardholder").await.unwrap().send_keys("ann.lee@example.com").await.unwrap();
    b.upload("#file", &json).await.unwrap();
    b.find("form.upload button[type=submit]").await.unwrap().click().await.unwrap();
    let refused = text(&b, "#result").await;
    assert!(
        refused.contains("usage.json")
            && refused.contains("not valid JSON: EOF while parsing a value at line 1 column 45")
            && refused.contains("was the export cut short?"),
        "{refused}"
    );
    // The form keeps what was chosen, so the fixed file goes out with one more click.
    let gateway = b.find("input[name=kind][value=gateway]").await.unwrap();
    assert_eq!(gateway.prop("checked").await.unwrap().as_deref(), Some("true"));
    let format = b.find("#format").await.unwrap().prop("value").await.unwrap();
    assert_eq!(format.as_deref(), Some("gateway:litellm"));
    let cardholder = b.find("#cardholder").await.unwrap().prop("value").await.unwrap();
    assert_eq!(cardholder.as_deref(), Some("ann.lee@example.com"));
    for cell in b.find_all("table.data tbody td").await.unwrap() {
        assert_ne!(cell.text().await.unwrap(), "usage.json", "a refused file has no history row");
    }
    look(&b, "imports-json-refused").await;
    // Drill down from a reconciliation row to its expense lines.
    b.goto(&format!("{url}/reconcile")).await.unwrap();
    let drill = b.find_all("#s1 table tbody td.num a").await.unwrap();
    assert!(!drill.is_empty(), "paid-but-not-sanctioned rows link to their lines");
    let href = drill[0].attr("href").await.unwrap().unwrap();
    drill[0].click().await.unwrap();
    b.wait_for_url(&href, WAIT).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "Expense lines");
    assert!(!b.find_all("table.data tbody tr").await.unwrap().is_empty());
    look(&b, "expense-lines").await;
    sign_out(&b).await;

    // Admin: tokens and enrollment.
    sign_in(&b, &url, &admin).await;
    b.goto(&format!("{url}/admin")).await.unwrap();
    b.find("#token-name").await.unwrap().send_keys("ci-reader").await.unwrap();
    b.find("#token-role").await.unwrap().select_option("viewer").await.unwrap();
    b.find("form.row button[type=submit]").await.unwrap().click().await.unwrap();
    let secret =
        b.wait_for("#new-secret", WAIT).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(secret.starts_with("aistk_"));
    b.execute("document.getElementById('new-secret').value = 'hidden for the screenshot'", vec![])
        .await
        .unwrap();
    look(&b, "admin").await;
    sign_out(&b).await;
    // The new viewer token signs in and sees, without changing.
    sign_in(&b, &url, &secret).await;
    assert!(text(&b, "header .who").await.contains("viewer"));
    b.goto(&format!("{url}/review")).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "Not allowed");
}

/// The certified OpenID Provider, over HTTPS on loopback, with a certificate made here.
/// Issue 17: security teaches the collector that a candidate card descriptor is a product,
/// from the reconciliation page with the keyboard only (Tab to the row's "This is…" field,
/// type, Enter); the line then counts for the product, the taught list shows it, and its undo
/// (Tab, Enter) makes the line a candidate again. Screenshots: `reconcile-taught`,
/// `reconcile-undone`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_teaches_a_candidate_descriptor_from_the_reconciliation_page_by_keyboard() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), 0, &[]).unwrap();
    let url = c.url.clone();
    let security = c.token("security", "sam-security").unwrap();
    let csv = dir.path().join("cards.csv");
    std::fs::write(
        &csv,
        "date,amount,currency,descriptor,payer_email,department\n\
         2026-11-02,49.00,USD,SQ *ACME AI LABS 4155550100,ann.lee@example.com,Sales\n\
         2026-11-03,20.00,USD,OPENAI *CHATGPT SUBSCR,bob@example.com,Engineering\n",
    )
    .unwrap();
    cli(dir.path(), &["import", "expenses", &csv.display().to_string()]);
    let b = Browser::start().await.unwrap();
    sign_in(&b, &url, &security).await;
    b.goto(&format!("{url}/reconcile")).await.unwrap();
    assert!(text(&b, "#s6 tbody").await.contains("SQ *ACME AI LABS 4155550100"));
    // The consumer plan: Bob's 20.00 is ChatGPT Plus; Team is proposed.
    let plans = text(&b, "#s7 tbody").await;
    assert!(
        plans.contains("Plus")
            && plans.contains("Team (USD 30.00 per seat per month, minimum 2 seats)"),
        "{plans}"
    );
    // Tab from the top of the page to the row's field (a bounded number of steps).
    let mut reached = false;
    for _ in 0..120 {
        b.keys(&[Key::Tab]).await.unwrap();
        if b.active_element().await.unwrap().attr("id").await.unwrap().as_deref() == Some("teach-0")
        {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the candidate's This is… field");
    b.active_element().await.unwrap().send_keys("anthropic.claude").await.unwrap();
    // Escape closes the suggestion list, Enter submits the row's form.
    b.keys(&[Key::Escape, Key::Enter]).await.unwrap();
    assert!(text(&b, "p.notice").await.contains("Taught: 1 expense line is now counted"));
    assert!(b.find_all("#s6 tbody tr").await.unwrap().is_empty(), "no candidate is left");
    let taught = text(&b, "#s8 tbody").await;
    assert!(taught.contains("ACME AI LABS") && taught.contains("Claude"), "{taught}");
    assert!(taught.contains("sam-security"), "{taught}");
    assert!(text(&b, "#s1 tbody").await.contains("Claude"), "the line counts as Claude spend");
    look(&b, "reconcile-taught").await;
    b.goto(&format!("{url}/audit")).await.unwrap();
    assert!(text(&b, "table.audit").await.contains("descriptor.teach"));

    // Undo from the keyboard: Tab to the taught row's Undo button, Enter.
    b.goto(&format!("{url}/reconcile")).await.unwrap();
    b.wait_for("#s8 form.undo button", WAIT).await.unwrap();
    let mut reached = false;
    for _ in 0..160 {
        b.keys(&[Key::Tab]).await.unwrap();
        let active = b.active_element().await.unwrap();
        if active.text().await.unwrap().starts_with("Undo") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the Undo button");
    b.keys(&[Key::Enter]).await.unwrap();
    assert!(text(&b, "p.notice").await.contains("Undone: 1 expense line is a candidate again"));
    assert!(text(&b, "#s6 tbody").await.contains("SQ *ACME AI LABS 4155550100"));
    look(&b, "reconcile-undone").await;
}

/// Starts the OpenID Provider and waits for its `listening` line, starting it once more if the
/// first start does not get there: a CI run once saw it print only its Node.js notice for
/// three minutes. Every failed start is described on stderr (its output, how it ended, and
/// Node's diagnostic report with the JavaScript stack when it hung), so a second failure
/// fails the test with the facts of both.
#[allow(clippy::print_stderr, reason = "a failed start is told as it happens, for the CI log")]
fn start_provider(dir: &Path, redirect: &str) -> (Process, String, std::path::PathBuf) {
    const STARTS: usize = 2;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("idp-cert.pem"), dir.join("idp-key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let root = workspace_root();
    assert!(
        root.join("tests/oidc/node_modules/oidc-provider").exists(),
        "tests/oidc/node_modules is missing: run bash .ci/install-deps"
    );
    let mut failures = Vec::new();
    for start in 1..=STARTS {
        let reports = dir.join(format!("node-reports-{start}"));
        std::fs::create_dir_all(&reports).unwrap();
        let mut cmd = Command::new("node");
        // SIGUSR2 makes Node write a diagnostic report (stacks, handles) into `reports`.
        cmd.arg("--report-on-signal")
            .arg(format!("--report-directory={}", reports.display()))
            .arg(root.join("tests/oidc/provider.mjs"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--port", "0", "--client-id", "aiscout", "--client-secret", "s3cret-client"])
            .args(["--redirect-uri", redirect])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "OIDC_USERS",
                r#"[{"sub":"alice","email":"alice@example.com","name":"Alice","groups":["secops"]},
                {"sub":"carol","email":"carol@example.com","name":"Carol","groups":["marketing"]}]"#,
            );
        let mut idp = Process::spawn("oidc-provider", cmd).unwrap();
        match idp.wait_line("`listening https://`", Duration::from_secs(90), |l| {
            l.starts_with("listening https://")
        }) {
            Ok(line) => {
                let issuer = line.trim_start_matches("listening ").trim().to_owned();
                if !failures.is_empty() {
                    eprintln!("oidc-provider started on start {start} of {STARTS}");
                }
                return (idp, issuer, cert);
            }
            Err(e) => {
                let mut failure = format!("start {start}: {e}");
                if idp.try_wait().is_none() {
                    aiscout_e2e::signal(idp.pid(), "USR2");
                    failure.push_str(&node_report(&reports));
                }
                eprintln!("{failure}");
                failures.push(failure);
            }
        }
    }
    panic!("oidc-provider did not start:\n{}", failures.join("\n"));
}

/// The newest diagnostic report Node wrote into `dir` after a SIGUSR2 (waiting up to five
/// seconds for it), as text to append to a failure; or a note that none came.
fn node_report(dir: &Path) -> String {
    for _ in 0..50 {
        let report = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        if let Some(path) = report {
            // Node writes the report in one go; a half-written file reads as short JSON.
            std::thread::sleep(Duration::from_millis(200));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // The JavaScript stack and the native one follow each other; 6000 bytes hold both.
            let from = text.find("\"javascriptStack\"").unwrap_or(0);
            let part = (from..text.len().min(from + 6000))
                .rev()
                .find_map(|end| text.get(from..end))
                .unwrap_or_default();
            return format!(
                "\nits diagnostic report ({}), from its stacks:\n{part}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    "\nno diagnostic report came within 5 s of SIGUSR2".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_through_a_real_openid_provider_lands_with_the_mapped_role() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let redirect = format!("https://127.0.0.1:{port}/auth/oidc/callback");
    let (_idp, issuer, ca) = start_provider(dir.path(), &redirect);
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "s3cret-client\n").unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[console.oidc]\nissuer = \"{issuer}\"\nclient_id = \"aiscout\"\nclient_secret_file = \"{}\"\n\
             redirect_url = \"{redirect}\"\nca_file = \"{}\"\n[console.oidc.roles]\nsecops = \"security\"\n",
            secret.display(),
            ca.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("collector");
    let c = Collector::start(&data, port, &["--config".to_owned(), config.display().to_string()])
        .unwrap();
    let url = c.url.clone();
    let b = Browser::start().await.unwrap();

    b.goto(&format!("{url}/login?next=/review")).await.unwrap();
    b.find("a[href^='/auth/oidc/start']").await.unwrap().click().await.unwrap();
    // The provider's own sign-in and consent pages.
    b.wait_for("form#login input[name=login]", WAIT)
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    b.find("form#login input[name=password]").await.unwrap().send_keys("anything").await.unwrap();
    b.find("form#login button.login-submit").await.unwrap().click().await.unwrap();
    b.wait_for("form#consent button.login-submit", WAIT).await.unwrap().click().await.unwrap();
    // Back in the console, signed in with the role the groups map to, on the page asked for.
    let who = text(&b, "header .who").await;
    assert!(who.contains("alice@example.com · security"), "{who}");
    assert_eq!(text(&b, "main h1").await, "Review queue");
    look(&b, "signed-in-with-sso").await;
    b.goto(&format!("{url}/audit?actor=alice%40example.com")).await.unwrap();
    assert!(text(&b, "table.audit").await.contains("session.login"));
    sign_out(&b).await;
    b.goto(&format!("{url}/review")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();

    // Someone whose groups map to no role is refused, with the reason (a fresh browser: the
    // provider remembers alice in this one).
    drop(b);
    let b = Browser::start().await.unwrap();
    b.goto(&format!("{url}/auth/oidc/start")).await.unwrap();
    b.wait_for("form#login input[name=login]", WAIT)
        .await
        .unwrap()
        .send_keys("carol")
        .await
        .unwrap();
    b.find("form#login input[name=password]").await.unwrap().send_keys("x").await.unwrap();
    b.find("form#login button.login-submit").await.unwrap().click().await.unwrap();
    b.wait_for("form#consent button.login-submit", WAIT).await.unwrap().click().await.unwrap();
    assert!(text(&b, "p.refusal").await.contains("none of your groups"));
    b.goto(&format!("{url}/")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transparency_page_needs_no_sign_in_and_shows_the_running_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "[console]\nidle_minutes = 20\nsession_hours = 9\n\n[transparency]\norganisation = \
         \"\"\"\nExample Ltd runs aiscout under the works agreement of May 2026.\n\nThe works \
         council reviewed this page.\n\"\"\"\ncontact = \"dpo@example.com\"\n",
    )
    .unwrap();
    let c = collector(dir.path(), &["--config".to_owned(), config.display().to_string()]);
    let url = c.url.clone();
    let b = Browser::start().await.unwrap();

    // No session: the page opens, with no sign-in form and no navigation.
    b.goto(&format!("{url}/transparency")).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "What aiscout collects");
    assert!(b.find_all("#token").await.unwrap().is_empty());
    assert!(b.find_all("header nav").await.unwrap().is_empty());
    let org = text(&b, "section[aria-labelledby=org]").await;
    assert!(org.contains("works agreement of May 2026") && org.contains("works council"), "{org}");
    let kept = text(&b, "section[aria-labelledby=kept]").await;
    assert!(kept.contains("20 minutes without use or 9 hours after sign-in"), "{kept}");
    let example = text(&b, "pre.example").await;
    let sighting: serde_json::Value = serde_json::from_str(&example).unwrap();
    assert_eq!(sighting["kind"], "tls_sni");
    let contact = b.find("section[aria-labelledby=contact] a").await.unwrap();
    assert_eq!(contact.attr("href").await.unwrap().as_deref(), Some("mailto:dpo@example.com"));
    // Nobody in the imported directory appears.
    let source = b.page_source().await.unwrap();
    for person in ["ann.lee@example.com", "Ann Lee", "bob.kim@example.com", "Bob Kim"] {
        assert!(!source.contains(person), "the page shows {person}");
    }
    look(&b, "transparency").await;

    // From the keyboard: the catalog link is reachable with Tab and opens with Enter.
    let mut reached = false;
    for _ in 0..40 {
        b.keys(&[Key::Tab]).await.unwrap();
        let focused = b.active_element().await.unwrap();
        if focused.attr("href").await.unwrap().as_deref() == Some("/transparency/catalog") {
            reached = true;
            break;
        }
    }
    assert!(reached, "the catalog link is not reachable with Tab");
    b.keys(&[Key::Enter]).await.unwrap();
    b.wait_for_url("/transparency/catalog", WAIT).await.unwrap();
    b.wait_for("main table.data tbody tr", WAIT).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "Every AI tool aiscout recognises");
    let rows = b.find_all("main table.data tbody tr").await.unwrap().len();
    let builtin = aiscout_signatures::Catalog::builtin().unwrap();
    assert_eq!(rows, builtin.products().len());
    assert!(text(&b, "main table.data").await.contains("chatgpt.com"));
    look(&b, "transparency-catalog").await;
}

/// Pseudonymous mode (issue 21): the product card shows a card's payer only as a pseudonym,
/// and an admin reveals them through the card's form, keyboard only, with a reason
/// (screenshots `reveal-form` and `revealed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reveals_a_pseudonymous_payer_on_the_product_card() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), 0, &["--privacy".to_owned(), "pseudonymous".to_owned()])
        .unwrap();
    let ramp = workspace_root().join("examples/expenses/ramp.csv").display().to_string();
    cli(dir.path(), &["--privacy", "pseudonymous", "import", "expenses", &ramp]);
    let url = c.url.clone();
    let admin = c.token("admin", "ada-admin").unwrap();
    let b = Browser::start().await.unwrap();
    sign_in(&b, &url, &admin).await;
    b.goto(&format!("{url}/products/openai.chatgpt")).await.unwrap();
    b.wait_for("form.reveal", WAIT).await.unwrap();
    let page = text(&b, "main").await;
    assert!(page.contains("person-") && !page.contains("Ann Lee"), "{page}");
    b.execute("document.querySelector('form.reveal').scrollIntoView()", vec![]).await.unwrap();
    let reason = b.find("#reveal-reason").await.unwrap();
    reason.send_keys("Ticket 4242: card holder check").await.unwrap();
    look(&b, "reveal-form").await;
    b.keys(&[Key::Tab, Key::Enter]).await.unwrap();
    // The answer page is the one with a status notice (the card has none).
    b.wait_for("main p.notice", WAIT).await.unwrap();
    assert_eq!(text(&b, "main h1").await, "Revealed for ChatGPT");
    let shown = text(&b, "main dl.facts").await;
    assert!(shown.contains("Ann Lee") && shown.contains("person-"), "{shown}");
    look(&b, "revealed").await;
}
