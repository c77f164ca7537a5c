//! The `email` alert channel end to end: the real `aiscout-collector serve` sending to a real
//! SMTP server, aiosmtpd (collector/tests/data/smtp/receiver.py, installed by
//! .ci/install-deps), on loopback with STARTTLS (an rcgen certificate the collector trusts
//! through `ca_file`) and AUTH required. The server writes each message it accepts to a folder
//! this test reads.
//!
//! Cases: the server is down when the events are queued, comes up later, and every event
//! arrives once (one Message-ID per event id) with its plain text and HTML parts, over TLS,
//! authenticated; a wrong password fails the delivery instead of repeating it; `check-config`
//! names each bad SMTP key and never prints the password.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use aiscout_collector::alerts::channel::{self, AlertsFile, Channel};
use aiscout_collector::alerts::deliver::{self, Deliverer, DigestOutcome};
use aiscout_collector::alerts::event;
use aiscout_collector::model::{ChannelRow, NewEvent};
use aiscout_collector::store::Store;
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;
use aiscout_signatures::Catalog;
use aiscout_wire::Secret;
use serde_json::{Value, json};

use hyper::Method;

use crate::alerts::{assert_once, post_batch, run, sightings};
use crate::process::{
    Collector, connect, enroll, enroll_secret_file, generated_cert, two_collectors,
};
use crate::store::harness::{drop_schema, pg_schema};

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");
const CONSOLE: &str = "https://aiscout.example.com";
const SMTP_USER: &str = "aiscout-alerts";
const SMTP_PASSWORD: &str = "smtp-password-never-logged-4711";
/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// A running aiosmtpd receiver, terminated and reaped on drop.
struct Smtp {
    child: Child,
}

impl Smtp {
    /// Starts the receiver on `port` (`mode`: "starttls" or "tls", implicit) and waits for
    /// its "ready".
    fn start(port: u16, dir: &Path, out: &Path, password: &str, mode: &str) -> Smtp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smtp/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("smtp-cert.pem"))
            .arg(dir.join("smtp-key.pem"))
            .arg(SMTP_USER)
            .arg(password)
            .arg(out)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (aiosmtpd is installed by .ci/install-deps)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP receiver did not start (is aiosmtpd installed?)"
        );
        Smtp { child }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        // Closing stdin stops it; kill is the fallback for one that hangs.
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// A free loopback port (bound, then released for the receiver).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The receiver's certificate for `localhost`, its key, and a collector config with one email
/// channel to it.
fn setup(dir: &Path, port: u16, extra: &str) -> PathBuf {
    setup_tls(dir, port, "starttls", extra)
}

/// [`setup`] with `smtp_tls = tls`.
fn setup_tls(dir: &Path, port: u16, tls: &str, extra: &str) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("smtp-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("smtp-key.pem"), key.serialize_pem()).unwrap();
    let secret = dir.join("smtp.secret");
    std::fs::write(&secret, format!("{SMTP_PASSWORD}\n")).unwrap();
    let path = dir.join("collector.toml");
    let text = format!(
        "[alerts]\nconsole_url = \"https://aiscout.example.com\"\n\
         [[alerts.channel]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"localhost\"\n\
         smtp_port = {port}\nsmtp_tls = \"{tls}\"\nusername = \"{SMTP_USER}\"\n\
         secret_file = \"{}\"\nfrom = \"aiscout@example.com\"\n\
         to = [\"security@example.com\", \"procurement@example.com\"]\nca_file = \"{}\"\n{extra}",
        secret.display(),
        dir.join("smtp-cert.pem").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The messages the receiver wrote so far.
fn received(out: &Path) -> Vec<Value> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            all.push(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
        }
    }
    all
}

/// Waits until `n` messages arrived, then a little longer for any repeat.
async fn wait_for(out: &Path, n: usize) -> Vec<Value> {
    let until = tokio::time::Instant::now() + DEADLINE;
    while received(out).len() < n {
        assert!(
            tokio::time::Instant::now() < until,
            "only {} of {n} messages arrived: {:?}",
            received(out).len(),
            received(out)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    received(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_one_email_once_after_the_smtp_server_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let config = setup(dir.path(), port, "");
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();

    // The SMTP server is down: the two discoveries are queued and their attempts fail.
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(received(&out).is_empty());

    let smtp = Smtp::start(port, dir.path(), &out, SMTP_PASSWORD, "starttls");
    let first = wait_for(&out, 2).await;
    // One more while it is up, and the same batch again (no new event), on a new connection
    // (the first one may have been closed while idle).
    let mut c = connect(server.addr, &ca, false).await;
    post_batch(&mut c, &key, sightings("b2", &["github.copilot"], now + 1)).await;
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    let all = wait_for(&out, first.len() + 1).await;
    assert_eq!(all.len(), 3, "{all:#?}");

    let ids: Vec<String> = all.iter().map(|m| m["event_id"].as_str().unwrap().to_owned()).collect();
    assert_once(&ids);
    let message_ids: Vec<String> =
        all.iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
    assert_once(&message_ids);
    let mut products = Vec::new();
    for m in &all {
        let id = m["event_id"].as_str().unwrap();
        assert!(id.starts_with("evt_"), "{m}");
        assert_eq!(m["message_id"], format!("<{id}@aiscout>"));
        assert_eq!(m["tls"], true, "{m}");
        assert_eq!(m["auth_user"], SMTP_USER, "{m}");
        assert_eq!(m["mail_from"], "aiscout@example.com");
        assert_eq!(
            m["rcpt_tos"],
            serde_json::json!(["security@example.com", "procurement@example.com"])
        );
        assert_eq!(m["content_type"], "multipart/alternative");
        let subject = m["subject"].as_str().unwrap();
        assert!(subject.starts_with("New AI tool discovered: "), "{subject}");
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        assert!(text.contains(id) && html.contains(id), "{m}");
        assert!(text.contains("Event: product.discovered"), "{text}");
        let product = ["openai.chatgpt", "anthropic.claude", "github.copilot"]
            .into_iter()
            .find(|p| text.contains(&format!("https://aiscout.example.com/products/{p}")))
            .unwrap_or_else(|| panic!("no product link in {text}"));
        assert!(html.contains(&format!("href=\"https://aiscout.example.com/products/{product}\"")));
        products.push(product);
    }
    products.sort_unstable();
    assert_eq!(products, ["anthropic.claude", "github.copilot", "openai.chatgpt"]);
    drop(server);
    drop(smtp);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(SMTP_PASSWORD), "the SMTP password reached the log");
}

/// `smtp_tls = "tls"`: implicit TLS (SMTPS) from the first byte, against aiosmtpd in its
/// implicit TLS mode (which refuses a plain-text session), AUTH required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_each_event_once_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let config = setup_tls(dir.path(), port, "tls", "");
    let _smtp = Smtp::start(port, dir.path(), &out, SMTP_PASSWORD, "tls");
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    let all = wait_for(&out, 2).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let ids: Vec<String> = all.iter().map(|m| m["event_id"].as_str().unwrap().to_owned()).collect();
    assert_once(&ids);
    for m in &all {
        assert_eq!(m["mode"], "tls", "{m}");
        assert_eq!(m["tls"], true, "{m}");
        assert_eq!(m["auth_user"], SMTP_USER, "{m}");
        assert_eq!(m["message_id"], format!("<{}@aiscout>", m["event_id"].as_str().unwrap()));
    }
    drop(server);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(SMTP_PASSWORD), "the SMTP password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_fails_the_delivery_without_repeating_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let config = setup(dir.path(), port, "");
    let _smtp = Smtp::start(port, dir.path(), &out, "another-password", "starttls");
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt"], now)).await;
    // The failure is recorded in the audit log (535 is permanent: no retry).
    let token = run(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "token",
        "create",
        "--role",
        "security",
        "--name",
        "sec",
    ]);
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, bytes) = c.send(Method::GET, "/api/v1/audit", Some(&token), "").await.unwrap();
        assert!(status.is_success(), "{bytes:?}");
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("alert.failed") {
            assert!(text.contains("535"), "{text}");
            assert!(!text.contains(SMTP_PASSWORD), "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < until, "no alert.failed: {text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(received(&out).is_empty());
    drop(server);
}

#[test]
fn check_config_names_each_bad_smtp_key_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smtp.secret");
    std::fs::write(&secret, SMTP_PASSWORD).unwrap();
    let file = dir.path().join("collector.toml");
    std::fs::write(
        &file,
        format!(
            "[[alerts.channel]]\nname = \"mail\"\nkind = \"email\"\nurl = \"https://x.example.com/\"\n\
             smtp_tls = \"ssl\"\nsecret_file = \"{}\"\nfrom = \"Aiscout <a@example.com>\"\nto = []\n\
             [[alerts.channel]]\nname = \"hook\"\nkind = \"slack\"\n\
             url = \"https://hooks.slack.com/services/T0/B0/X\"\nsmtp_host = \"mail.example.com\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    let err = crate::assert_config_problems(
        &out,
        7,
        &[
            "alerts.channel[0].url:",
            "alerts.channel[0].smtp_tls:",
            "alerts.channel[0].smtp_host:",
            "alerts.channel[0].username:",
            "alerts.channel[0].from:",
            "alerts.channel[0].to:",
            "alerts.channel[1].smtp_host:",
        ],
    );
    assert!(!err.contains(SMTP_PASSWORD), "a secret reached the output: {err}");

    std::fs::write(
        &file,
        format!(
            "[[alerts.channel]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\n\
             smtp_tls = \"tls\"\nusername = \"alerts\"\nsecret_file = \"{}\"\n\
             from = \"aiscout@example.com\"\nto = [\"sec@example.com\"]\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A clock the test sets.
fn clock(at: &Arc<AtomicI64>) -> deliver::Clock {
    let at = Arc::clone(at);
    Arc::new(move || at.load(Ordering::SeqCst))
}

/// A digest channel (daily at 08:00 UTC, at most 3 a day) to the receiver on `port`.
fn digest_channel(dir: &Path, port: u16) -> Channel {
    let raw: AlertsFile = toml_edit::de::from_str(&format!(
        "[[channel]]\nname = \"daily digest\"\nkind = \"email\"\nsmtp_host = \"localhost\"\n\
         smtp_port = {port}\nusername = \"{SMTP_USER}\"\nsecret_file = \"/unused\"\n\
         from = \"aiscout@example.com\"\nto = [\"procurement@example.com\"]\nca_file = \"{}\"\n\
         digest = \"daily\"\ndigest_at = \"08:00\"\nmax_per_day = 3\n",
        dir.join("smtp-cert.pem").display()
    ))
    .unwrap();
    let mut problems = Vec::new();
    let settings = channel::check(raw, &mut problems, |_| Ok(Secret::new(SMTP_PASSWORD)));
    assert!(problems.is_empty(), "{problems:?}");
    settings.channels.into_iter().next().unwrap()
}

fn discovered(n: u32, product: &str, at: i64) -> NewEvent {
    NewEvent {
        id: event::id("product.discovered", &format!("digest-test-{n}-{product}")),
        kind: "product.discovered".into(),
        occurred_at: aiscout_wire::UnixSecs(at),
        product: product.into(),
        subject: json!({"product": product, "source": "dns", "device": "laptop-1"}).to_string(),
        to_channel: String::new(),
    }
}

/// A running receiver in `dir`, its mailbox folder, and the digest channel to it, recorded in
/// `store` as configured.
async fn digest_receiver<S: Store>(
    store: &S,
    dir: &Path,
) -> (Smtp, PathBuf, Arc<Channel>, Arc<rustls::ClientConfig>) {
    let out = dir.join("mailbox");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    setup(dir, port, "");
    let smtp = Smtp::start(port, dir, &out, SMTP_PASSWORD, "starttls");
    let channel = Arc::new(digest_channel(dir, port));
    let tls = deliver::tls_for(&channel).unwrap();
    store
        .sync_channels(
            vec![ChannelRow { name: channel.name.clone(), kind: "email".into(), events: vec![] }],
            aiscout_collector::store::now(),
        )
        .await
        .unwrap();
    (smtp, out, channel, tls)
}

/// The digest scenario on one store: `a` and `b` are two collectors' deliverers on it.
async fn digests_once<S: Store + Clone + Send + Sync + 'static>(store: S, dir: &Path) {
    let (_smtp, out, channel, tls) = digest_receiver(&store, dir).await;
    let time = Arc::new(AtomicI64::new(0));
    let deliverer = |time: &Arc<AtomicI64>| {
        Arc::new(
            Deliverer::new(store.clone(), Catalog::builtin().unwrap(), CONSOLE.into())
                .unwrap()
                .with_clock(clock(time)),
        )
    };
    let (a, b) = (deliverer(&time), deliverer(&time));
    let now = aiscout_collector::store::now();
    let day = now - now % 86_400 - 10 * 86_400;
    let h = |d: i64, hours: i64, minutes: i64| day + d * 86_400 + hours * 3_600 + minutes * 60;
    let set = |t: i64| time.store(t, Ordering::SeqCst);

    // Day 0, 09:00: four discoveries; the channel holds three and its cap holds back one.
    set(h(0, 9, 0));
    let products = ["openai.chatgpt", "anthropic.claude", "github.copilot", "perplexity.ai"];
    let events: Vec<NewEvent> =
        products.iter().enumerate().map(|(i, p)| discovered(0, p, h(0, 9, 0) - i as i64)).collect();
    // All at once, so one round attempts them concurrently: the cap still holds exactly.
    store.emit(events.clone(), None, h(0, 9, 0)).await.unwrap();
    while a.round(&channel, &tls).await.unwrap() > 0 {}
    // Day 0, 09:30: the period that ended at 08:00 had nothing; no message.
    set(h(0, 9, 30));
    outcome(a.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::Empty));
    // Day 1, 08:00:30: within the grace after the end, the latest period is still the one
    // done at 09:30 on day 0.
    set(h(1, 8, 0) + 30);
    outcome(a.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
    // Day 1, 08:01:30: the digest of day 0 goes out once, whoever asks.
    set(h(1, 8, 1) + 30);
    outcome(a.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::Sent(3)));
    outcome(b.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
    outcome(a.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
    // A restarted collector (a new deliverer, a new claimer) does not repeat it.
    let restarted = deliverer(&time);
    outcome(restarted.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
    let mail = wait_for(&out, 1).await;
    assert_eq!(mail.len(), 1, "{mail:#?}");
    let m = &mail[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["auth_user"], SMTP_USER);
    let subject = m["subject"].as_str().unwrap();
    assert!(subject.contains("3 event(s), 1 held back by caps"), "{subject}");
    let (text, html) = (m["text"].as_str().unwrap(), m["html"].as_str().unwrap());
    assert!(text.contains("product.discovered: 3, 1"), "{text}");
    let listed = events.iter().filter(|e| text.contains(&e.id) && html.contains(&e.id)).count();
    assert_eq!(listed, 3, "{text}");
    assert_eq!(m["message_id"], format!("<digest-daily_digest-{}@aiscout>", h(1, 8, 0)));

    // Day 1, 09:01 (a new calendar day, so the cap has room): one more; day 2's digest, asked
    // by both collectors at once, goes out once and lists only it.
    set(h(1, 9, 1));
    let later = discovered(1, "mistral.lechat", h(1, 9, 1));
    store.emit(vec![later.clone()], None, h(1, 9, 1)).await.unwrap();
    while b.round(&channel, &tls).await.unwrap() > 0 {}
    set(h(2, 8, 2));
    let (ra, rb) = tokio::join!(a.digest_round(&channel, &tls), b.digest_round(&channel, &tls));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert!(matches!(outcomes, [DigestOutcome::NotMine, DigestOutcome::Sent(1)]), "{outcomes:?}");
    let mail = wait_for(&out, 2).await;
    assert_eq!(mail.len(), 2);
    let second = mail.iter().find(|m| m["text"].as_str().unwrap().contains(&later.id)).unwrap();
    assert!(second["subject"].as_str().unwrap().contains("1 event(s), 0 held back"), "{second}");

    // Day 2, 10:00: one more; every collector is down until day 4. Day 4's digest covers
    // everything since day 2's (nothing skipped).
    set(h(2, 10, 0));
    let missed = discovered(2, "openai.chatgpt", h(2, 10, 0));
    store.emit(vec![missed.clone()], None, h(2, 10, 0)).await.unwrap();
    while a.round(&channel, &tls).await.unwrap() > 0 {}
    // A collector claims day 4's digest and dies before sending: the other sends it once
    // the claim's lease has run out.
    set(h(4, 8, 5));
    let dead = store
        .claim_digest(channel.name.clone(), h(4, 8, 0), "dead".into(), h(4, 8, 5), h(4, 8, 6))
        .await
        .unwrap();
    assert_eq!(
        dead.map(|c| (c.previous, c.attempts)),
        Some((Some(aiscout_wire::UnixSecs(h(2, 8, 0))), 0))
    );
    outcome(b.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
    set(h(4, 8, 7));
    outcome(b.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::Sent(1)));
    let mail = wait_for(&out, 3).await;
    assert_eq!(mail.len(), 3);
    assert!(mail.iter().any(|m| m["text"].as_str().unwrap().contains(&missed.id)));
    let ids: Vec<String> = mail.iter().map(|m| m["message_id"].as_str().unwrap().into()).collect();
    assert_once(&ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_digest_is_sent_once_and_skips_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("aiscout.db")).await.unwrap();
    digests_once(store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_digest_is_sent_once_by_two_collectors_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = pg_schema().await;
    struct Schema(String);
    impl Drop for Schema {
        fn drop(&mut self) {
            drop_schema(&self.0);
        }
    }
    let _schema = Schema(schema);
    let store = PgStore::open(&url).await.unwrap();
    digests_once(store, dir.path()).await;
}

/// A digest that mentions a blocked product coaches towards its sanctioned alternative in the
/// organisation's words (issue 20), and says nothing of the kind for a product in review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_says_what_to_use_instead_of_a_blocked_product() {
    use aiscout_collector::review;
    use aiscout_wire::ReviewStatus;

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("aiscout.db")).await.unwrap();
    let (_smtp, out, channel, tls) = digest_receiver(&store, dir.path()).await;
    let now = aiscout_collector::store::now();
    let day = now - now % 86_400 - 3 * 86_400;
    for (product, status, alternative) in [
        ("anthropic.claude", ReviewStatus::Sanctioned, ""),
        ("openai.chatgpt", ReviewStatus::Blocked, "anthropic.claude"),
        ("perplexity.perplexity", ReviewStatus::UnderReview, "anthropic.claude"),
    ] {
        let mut decision = review::Decision::new(status, "test".into());
        decision.alternative = alternative.into();
        let (r, audit) = review::decide(product, decision, "sec@example.com", day);
        store.set_review(r, audit).await.unwrap();
    }
    let policy = aiscout_collector::policy::Settings {
        coaching_url: None,
        coaching_message: Some("Ask the service desk for a seat.".into()),
    };
    let time = Arc::new(AtomicI64::new(day + 9 * 3_600));
    let deliverer = Deliverer::new(store.clone(), Catalog::builtin().unwrap(), CONSOLE.into())
        .unwrap()
        .with_clock(clock(&time))
        .with_policy(policy);
    let deliverer = Arc::new(deliverer);
    for (i, product) in
        ["openai.chatgpt", "perplexity.perplexity", "openai.chatgpt"].iter().enumerate()
    {
        let e = discovered(u32::try_from(i).unwrap(), product, day + 9 * 3_600);
        store.emit(vec![e], None, day + 9 * 3_600).await.unwrap();
        while deliverer.round(&channel, &tls).await.unwrap() > 0 {}
    }
    time.store(day + 86_400 + 8 * 3_600 + 90, Ordering::SeqCst);
    outcome(deliverer.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::Sent(3)));
    let mail = wait_for(&out, 1).await;
    let (text, html) = (mail[0]["text"].as_str().unwrap(), mail[0]["html"].as_str().unwrap());
    let line = "ChatGPT: Use Claude instead: Ask the service desk for a seat.";
    assert_eq!(text.matches(line).count(), 1, "{text}");
    assert!(
        html.contains("<strong>ChatGPT</strong>: Use Claude instead: Ask the service desk"),
        "{html}"
    );
    // A product in review is not coached away from, whatever its review names.
    assert!(!text.contains("Perplexity: Use"), "{text}");
}

/// A digest the SMTP server does not take waits the same backoff as a delivery before it is
/// tried again (by whichever collector comes first): `2^n` seconds after the `n+1`th refusal,
/// with equal jitter (so at least half of it), not a try every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_digest_is_retried_after_an_exponential_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("aiscout.db")).await.unwrap();
    let out = dir.path().join("mailbox");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    setup(dir.path(), port, "");
    let channel = Arc::new(digest_channel(dir.path(), port));
    let tls = deliver::tls_for(&channel).unwrap();
    let row = ChannelRow { name: channel.name.clone(), kind: "email".into(), events: vec![] };
    store.sync_channels(vec![row], aiscout_collector::store::now()).await.unwrap();
    let time = Arc::new(AtomicI64::new(0));
    let deliverer = || {
        Deliverer::new(store.clone(), Catalog::builtin().unwrap(), CONSOLE.into())
            .unwrap()
            .with_clock(clock(&time))
    };
    let (a, b) = (Arc::new(deliverer()), Arc::new(deliverer()));
    let now = aiscout_collector::store::now();
    let day = now - now % 86_400 - 10 * 86_400;
    let set = |t: i64| time.store(t, Ordering::SeqCst);
    set(day + 9 * 3_600);
    store
        .emit(vec![discovered(0, "openai.chatgpt", day + 9 * 3_600)], None, day + 9 * 3_600)
        .await
        .unwrap();
    while a.round(&channel, &tls).await.unwrap() > 0 {}

    // The SMTP server is down when the digest is due.
    let mut t = day + 86_400 + 8 * 3_600 + 90;
    set(t);
    let refused = a.digest_round(&channel, &tls).await.unwrap();
    assert!(matches!(refused, DigestOutcome::Failed(_)), "{refused:?}");
    for n in 1..=8_u32 {
        let full = 1_i64 << (n - 1);
        // Within the first half of the backoff nobody tries (the old code tried every round).
        if full / 2 >= 1 {
            set(t + full / 2 - 1);
            outcome(a.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
            outcome(b.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
        }
        // After the whole of it, either collector tries again.
        t += full;
        set(t);
        let who = if n % 2 == 0 { &a } else { &b };
        let again = who.digest_round(&channel, &tls).await.unwrap();
        assert!(matches!(again, DigestOutcome::Failed(_)), "refusal {n}: {again:?}");
    }
    assert!(received(&out).is_empty());
    // The server is back: the next try after the backoff sends it, once.
    let _smtp = Smtp::start(port, dir.path(), &out, SMTP_PASSWORD, "starttls");
    set(t + 255);
    outcome(a.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::Sent(1)));
    outcome(b.digest_round(&channel, &tls).await, |o| matches!(o, DigestOutcome::NotMine));
    assert_eq!(wait_for(&out, 1).await.len(), 1);
}

/// Two `aiscout-collector serve` processes on one PostgreSQL with one daily digest channel:
/// the events reach them through both, are held, and the digest of the period goes out once,
/// listing all of them, whichever collector sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_postgres_send_each_digest_once() {
    let (db, schema) = pg_schema().await;
    struct Schema(String);
    impl Drop for Schema {
        fn drop(&mut self) {
            drop_schema(&self.0);
        }
    }
    let _schema = Schema(schema);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mailbox");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    // The period ends at the first whole minute (UTC) at least 40 s from now, so the events
    // are held before it ends; its digest is due a minute after (`digest::GRACE`).
    let now = aiscout_collector::store::now();
    let end = (now + 40 + 59) / 60 * 60;
    let at = format!("{:02}:{:02}", end % 86_400 / 3_600, end % 3_600 / 60);
    let config = setup(dir.path(), port, &format!("digest = \"daily\"\ndigest_at = \"{at}\"\n"));
    let _smtp = Smtp::start(port, dir.path(), &out, SMTP_PASSWORD, "starttls");
    let (one, two, d1, d2) = two_collectors(dir.path(), &config, &db);
    let mut c1 = connect(one.addr, &generated_cert(&d1), false).await;
    let mut c2 = connect(two.addr, &generated_cert(&d2), false).await;
    let k1 = enroll(&mut c1, "laptop-1").await;
    let k2 = enroll(&mut c2, "laptop-2").await;
    post_batch(&mut c1, &k1, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    post_batch(&mut c2, &k2, sightings("b1", &["github.copilot"], now)).await;
    assert!(
        aiscout_collector::store::now() < end,
        "the batches were acknowledged after the period ended; the machine is too slow"
    );

    let until = tokio::time::Instant::now()
        + Duration::from_secs(u64::try_from(end - now).unwrap())
        + DEADLINE;
    while received(&out).is_empty() {
        assert!(tokio::time::Instant::now() < until, "no digest arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each collector looks for a due digest about every 10 s (`DIGEST_EVERY` rounds of
    // `POLL`): 25 s more gives both at least two looks at the sent period.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let mail = received(&out);
    assert_eq!(mail.len(), 1, "{mail:#?}");
    let m = &mail[0];
    assert_eq!(m["message_id"], format!("<digest-mail-{end}@aiscout>"), "{m}");
    let subject = m["subject"].as_str().unwrap();
    assert!(subject.contains("3 event(s)"), "{subject}");
    let text = m["text"].as_str().unwrap();
    for p in ["openai.chatgpt", "anthropic.claude", "github.copilot"] {
        assert!(text.contains(p), "{p} not in {text}");
    }
    drop((one, two));
}

/// Asserts what a digest round ended with, printing it when it is something else.
#[track_caller]
fn outcome(
    round: Result<DigestOutcome, aiscout_collector::store::StoreError>,
    want: impl Fn(&DigestOutcome) -> bool,
) {
    let got = round.unwrap();
    assert!(want(&got), "the digest round ended with {got:?}");
}
