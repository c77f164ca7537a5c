//! The alerts page in a real browser: an admin sees the configured webhook channel, sends it
//! a test event from the keyboard, and the real `serve` delivers it (with the discoveries the
//! example imports caused) to an HTTP receiver on loopback that this test runs; the page then
//! shows the deliveries. Screenshot into `target/console-screenshots/alerts.png`, axe-core
//! checked. A security reviewer sees the page without the test button; procurement is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiscout_e2e::browser::{Browser, Key};
use aiscout_e2e::{Collector, binary, workspace_root};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A plain-HTTP webhook receiver on 127.0.0.1 (the collector accepts `http://` to loopback
/// only): records each JSON body, answers 204. Stops when dropped.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&bodies), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        if let Some(body) = read_request(&conn) {
                            b.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                        }
                        let mut conn = conn;
                        let _sent = conn.write_all(
                            b"HTTP/1.1 204 No Content\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Receiver { port, bodies, stop }
    }

    fn types(&self) -> Vec<String> {
        self.bodies.lock().unwrap().iter().map(|v| v["type"].as_str().unwrap().to_owned()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one HTTP/1.1 request and returns its body (by `Content-Length`, at most 1 MiB).
fn read_request(conn: &std::net::TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(conn);
    let mut length = 0usize;
    for _ in 0..100 {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn cli(data: &Path, args: &[&str]) {
    let out = Command::new(binary("aiscout-collector", "aiscout-collector").unwrap())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn sign_in(b: &Browser, url: &str, token: &str) {
    b.goto(&format!("{url}/login")).await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap().send_keys(token).await.unwrap();
    b.keys(&[Key::Enter]).await.unwrap();
    b.wait_for("header .who", WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sends_a_test_alert_and_sees_its_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "console-test-signing-secret").unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts.channel]]\nname = \"soc-webhook\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:{}/hook\"\nsecret_file = \"{}\"\n\
             events = [\"product.discovered\", \"alert.test\"]\nquiet = \"1h\"\n",
            receiver.port,
            secret.display()
        ),
    )
    .unwrap();
    let extra = vec!["--config".to_owned(), config.display().to_string()];
    let c = Collector::start(dir.path(), 0, &extra).unwrap();
    let url = c.url.clone();
    // The example expenses discover products: those events go out on their own.
    let root = workspace_root();
    let mut args = vec!["import".to_owned(), "expenses".to_owned()];
    for f in std::fs::read_dir(root.join("examples/expenses")).unwrap() {
        args.push(f.unwrap().path().display().to_string());
    }
    cli(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
    let admin = c.token("admin", "ada-admin").unwrap();
    let security = c.token("security", "sam-security").unwrap();
    let procurement = c.token("procurement", "pat-procurement").unwrap();

    let b = Browser::start().await.unwrap();
    sign_in(&b, &url, &admin).await;
    b.goto(&format!("{url}/alerts")).await.unwrap();
    assert_eq!(b.wait_for("main h1", WAIT).await.unwrap().text().await.unwrap(), "Alerts");
    let channels = b.find("main section.panel table.data").await.unwrap().text().await.unwrap();
    assert!(channels.contains("soc-webhook") && channels.contains("webhook"), "{channels}");
    // The receiver's address shows without its path (a webhook URL's path can be a secret).
    assert!(channels.contains(&format!("http://127.0.0.1:{}/…", receiver.port)), "{channels}");
    assert!(!b.page_source().await.unwrap().contains("/hook"), "the URL's path reached the page");

    // Send a test event from the keyboard: focus the button, press Enter.
    let button = b.find("form[action='/alerts/test'] button").await.unwrap();
    button.send_keys(&Key::Enter.code().to_string()).await.unwrap();
    let status = b.wait_for("main p[role=status]", WAIT).await.unwrap().text().await.unwrap();
    assert!(status.contains("soc-webhook"), "{status}");

    // The test event and the discoveries arrive; the page lists them as delivered.
    let until = Instant::now() + Duration::from_secs(60);
    while !receiver.types().iter().any(|t| t == "alert.test") {
        assert!(Instant::now() < until, "no test event arrived: {:?}", receiver.types());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        b.goto(&format!("{url}/alerts")).await.unwrap();
        let page = b.wait_for("main", WAIT).await.unwrap().text().await.unwrap();
        if page.contains("alert.test")
            && page.contains("delivered")
            && page.contains("product.discovered")
        {
            break;
        }
        assert!(Instant::now() < until, "the deliveries never showed: {page}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let types = receiver.types();
    assert!(types.iter().filter(|t| *t == "product.discovered").count() >= 2, "{types:?}");
    b.screenshot("alerts").await.unwrap();
    b.assert_accessible("alerts").await.unwrap();

    // Security sees the page but cannot send tests; procurement may not see it.
    b.find("header .who button").await.unwrap().click().await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();
    sign_in(&b, &url, &security).await;
    b.goto(&format!("{url}/alerts")).await.unwrap();
    b.wait_for("main h1", WAIT).await.unwrap();
    assert!(b.find_all("form[action='/alerts/test']").await.unwrap().is_empty());
    b.find("header .who button").await.unwrap().click().await.unwrap();
    b.wait_for("#token", WAIT).await.unwrap();
    sign_in(&b, &url, &procurement).await;
    assert!(b.find_all("header nav a[href='/alerts']").await.unwrap().is_empty());
    b.goto(&format!("{url}/alerts")).await.unwrap();
    let refused = b.wait_for("main", WAIT).await.unwrap().text().await.unwrap();
    assert!(
        refused.contains("Alert channels and deliveries are for security and admins"),
        "{refused}"
    );
    drop(c);
}
