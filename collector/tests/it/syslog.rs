//! The `syslog` alert channel end to end: the real `aiscout-collector serve` sending to a TLS
//! listener this test starts on loopback (tokio-rustls, an rcgen certificate the collector
//! trusts through `ca_file`). The listener reads RFC 5425 octet-counted frames and checks each
//! is one RFC 5424 message; every event must arrive once, including those queued while the
//! listener was down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiscout_collector::api;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;

use crate::alerts::{assert_once, post_batch, sightings};
use crate::process::{Collector, connect, enroll, enroll_secret_file, generated_cert};

/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(180);
/// Largest frame accepted.
const MAX_FRAME: usize = 64 * 1024;

/// Checks one RFC 5424 message (the fields the collector fills) and returns its event id.
fn parse_5424(msg: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(msg).map_err(|e| format!("not UTF-8: {e}"))?;
    let rest = text.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("no PRI end")?;
    let pri: u16 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 || pri / 8 != 13 {
        return Err(format!("PRI {pri}: not facility 13"));
    }
    let mut fields = rest.splitn(7, ' ');
    let mut next = |what: &str| fields.next().ok_or(format!("no {what}"));
    if next("VERSION")? != "1" {
        return Err("VERSION is not 1".into());
    }
    let timestamp = next("TIMESTAMP")?;
    if timestamp.len() != 20 || !timestamp.ends_with('Z') || timestamp.as_bytes()[10] != b'T' {
        return Err(format!("TIMESTAMP {timestamp:?}"));
    }
    for what in ["HOSTNAME", "APP-NAME", "PROCID", "MSGID"] {
        let v = next(what)?;
        let max = match what {
            "HOSTNAME" => 255,
            "APP-NAME" => 48,
            "PROCID" => 128,
            _ => 32,
        };
        if v.is_empty() || v.len() > max || !v.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(format!("{what} {v:?}"));
        }
    }
    let sd = next("STRUCTURED-DATA")?;
    let sd_and_msg = format!("{sd} {}", fields.next().unwrap_or_default());
    let inner = sd_and_msg.strip_prefix("[aiscout@32473 ").ok_or("no SD-ELEMENT")?;
    // The SD-ELEMENT ends at the first `]` not escaped.
    let mut end = None;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ']' if !escaped => {
                end = Some(i);
                break;
            }
            _ => escaped = false,
        }
    }
    let end = end.ok_or("SD-ELEMENT not closed")?;
    let params = inner.get(..end).unwrap_or_default();
    let msg = inner.get(end + 1..).unwrap_or_default();
    if !msg.starts_with(" \u{feff}") || msg.contains('\n') {
        return Err(format!("MSG {msg:?}"));
    }
    let id = params.split("id=\"").nth(1).and_then(|v| v.split('"').next()).ok_or("no id param")?;
    if !id.starts_with("evt_") {
        return Err(format!("id {id:?}"));
    }
    Ok(id.to_owned())
}

/// Reads octet-counted frames from one connection until it closes.
async fn frames<S: tokio::io::AsyncRead + Unpin>(mut s: S) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let mut rest = &buf[..];
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ').ok_or("no MSG-LEN")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n <= MAX_FRAME)
            .ok_or("bad MSG-LEN")?;
        let msg = rest.get(sp + 1..sp + 1 + len).ok_or("short frame")?;
        out.push(msg.to_vec());
        rest = &rest[sp + 1 + len..];
    }
    Ok(out)
}

#[derive(Default)]
struct Seen {
    ids: Vec<String>,
    bad: Vec<String>,
}

/// The listener, serving until the returned handle is aborted.
async fn listen(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Seen>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let Ok(s) = acceptor.accept(tcp).await else { return };
            let got = frames(s).await;
            let mut seen = seen.lock().unwrap();
            match got {
                Ok(fs) => {
                    for f in fs {
                        match parse_5424(&f) {
                            Ok(id) => seen.ids.push(id),
                            Err(e) => {
                                seen.bad.push(format!("{e}: {}", String::from_utf8_lossy(&f)))
                            }
                        }
                    }
                }
                Err(e) => seen.bad.push(e),
            }
        });
    }
}

#[test]
fn the_test_parser_refuses_what_is_not_rfc5424() {
    assert!(parse_5424(b"<109>1 2026-12-04T12:00:00Z h aiscout - t [aiscout@32473 id=\"evt_1\"] \xef\xbb\xbfhi").is_ok());
    for bad in [
        &b"<109>2 2026-12-04T12:00:00Z h aiscout - t [aiscout@32473 id=\"evt_1\"] \xef\xbb\xbfhi"[..],
        b"<109>1 2026-12-04 h aiscout - t [aiscout@32473 id=\"evt_1\"] \xef\xbb\xbfhi",
        b"<9>1 2026-12-04T12:00:00Z h aiscout - t [aiscout@32473 id=\"evt_1\"] \xef\xbb\xbfhi",
        b"<109>1 2026-12-04T12:00:00Z h aiscout - t [aiscout@32473 id=\"evt_1\" \xef\xbb\xbfhi",
        b"<109>1 2026-12-04T12:00:00Z h aiscout - t [aiscout@32473 id=\"x\"] \xef\xbb\xbfhi",
    ] {
        assert!(parse_5424(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_as_rfc5424_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca = dir.path().join("syslog-ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let tls = api::tls::server_config(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Down at first: the port is taken back only after the first events are queued.
    drop(listener);
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\nconsole_url = \"https://aiscout.example.com\"\n\
             [[alerts.channel]]\nname = \"siem\"\nkind = \"syslog\"\nsyslog_host = \"localhost\"\n\
             syslog_port = {}\nca_file = \"{}\"\n",
            addr.port(),
            ca.display()
        ),
    )
    .unwrap();
    let secret = enroll_secret_file(dir.path());
    let args =
        ["--config", config.to_str().unwrap(), "--enroll-secret-file", secret.to_str().unwrap()];
    let server = Collector::start(dir.path(), &args);
    let cert = generated_cert(dir.path());
    let mut c = connect(server.addr, &cert, false).await;
    let key = enroll(&mut c, "laptop-1").await;
    let now = aiscout_collector::store::now();
    post_batch(&mut c, &key, sightings("b1", &["openai.chatgpt", "anthropic.claude"], now)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let task = tokio::spawn(listen(listener, tls, Arc::clone(&seen)));
    let mut c = connect(server.addr, &cert, false).await;
    post_batch(&mut c, &key, sightings("b2", &["github.copilot"], now + 1)).await;
    let until = tokio::time::Instant::now() + DEADLINE;
    while seen.lock().unwrap().ids.len() < 3 {
        assert!(tokio::time::Instant::now() < until, "{:?}", seen.lock().unwrap().ids);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    task.abort();
    let seen = seen.lock().unwrap();
    assert!(seen.bad.is_empty(), "{:?}", seen.bad);
    assert_eq!(seen.ids.len(), 3, "{:?}", seen.ids);
    assert_once(&seen.ids);
    drop(server);
}
