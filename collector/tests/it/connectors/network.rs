//! Failures below HTTP against real loopback sockets, and a credential from the environment.
//!
//! The relay in front of the local vendor (plain HTTP on loopback, which `base_url` accepts for
//! a loopback host) is bound but not listening at first, so the kernel refuses connections to
//! it; once the connector has counted that retry the relay listens, cuts its first connection
//! with a TCP reset in the middle of the vendor's answer (after the head and a few bytes of the
//! body), and forwards every later connection whole.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Body bytes the cut connection passes on before its reset.
const CUT_AFTER_BODY_BYTES: usize = 16;

/// The connector's retries so far, as `/metrics` shows them.
fn retries(stats: &Stats, name: &str) -> u64 {
    let prefix = format!("aiscout_connector_retries_total{{connector=\"{name}\"}} ");
    stats
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
        .unwrap_or(0)
}

fn end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// One connection through the relay: forwarded whole, or (`cut`) the request forwarded and
/// the answer passed on up to [`CUT_AFTER_BODY_BYTES`] of its body, then a reset (linger 0).
async fn relay(mut client: TcpStream, upstream: SocketAddr, cut: bool) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    if !cut {
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        return Ok(());
    }
    let mut buf = [0u8; 8192];
    let mut request = Vec::new();
    // A GET: its head is the whole request.
    while end_of_head(&request).is_none() {
        let n = client.read(&mut buf).await?;
        assert!(n > 0 && request.len() < 1 << 20, "no whole request head");
        request.extend_from_slice(&buf[..n]);
    }
    server.write_all(&request).await?;
    let mut answer = Vec::new();
    let keep = loop {
        if let Some(head) = end_of_head(&answer)
            && answer.len() >= head + CUT_AFTER_BODY_BYTES
        {
            break head + CUT_AFTER_BODY_BYTES;
        }
        let n = server.read(&mut buf).await?;
        assert!(n > 0, "the vendor's answer ended before the cut");
        answer.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&answer[..end_of_head(&answer).unwrap()]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    assert!(length > CUT_AFTER_BODY_BYTES, "the cut falls inside the body");
    client.write_all(&answer[..keep]).await?;
    client.set_zero_linger()?;
    drop(client);
    Ok(())
}

/// A refused connection, then a connection reset mid-answer, then success: the run stores
/// every page once (totals to the billionth), the cut page was asked for again, and both
/// retries are counted in `/metrics`. One thread, so that the relay starts listening in the
/// connector's first backoff and no connection attempt can happen in between.
async fn refused_then_reset_then_success(kind: Kind) {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let served = serve_vendor_with(false).await;
    let upstream: SocketAddr =
        served.base_url.trim_start_matches("http://").trim_end_matches("/litellm").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let front = socket.local_addr().unwrap();
    let now = 1_796_083_200 + 3_600; // an hour into 2026-12-01 (UTC)
    let (s, expected) = match kind {
        Kind::Litellm => {
            let expected = fixtures(&served.vendor, now);
            let mut s = settings(&served, now - 10 * DAY);
            s.base_url = BaseUrl::parse(&format!("http://{front}/litellm")).unwrap();
            (s, (expected, 250))
        }
        _ => {
            let mut s = cost_settings(&served, kind, now / DAY * DAY - 5 * DAY);
            s.base_url = BaseUrl::parse(&format!("http://{front}")).unwrap();
            let day = if kind == Kind::Openai { OPENAI_DAY_NANOS } else { ANTHROPIC_DAY_NANOS };
            (s, (5 * day, 10))
        }
    };
    let (index, stats) = (index(), Stats::default());
    let accepted = Arc::new(AtomicU32::new(0));
    let listen = async {
        // Bounded by the connector's request timeout: its first attempt fails well within it.
        for _ in 0..10_000_000 {
            if retries(&stats, &s.name) > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let refused = retries(&stats, &s.name);
        let listener = socket.listen(16).unwrap();
        let accepted = Arc::clone(&accepted);
        let relay_task = tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let cut = accepted.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(async move { drop(relay(client, upstream, cut).await) });
            }
        });
        (refused, relay_task)
    };
    let (result, (refused, relay_task)) =
        tokio::join!(connectors::run(&store, &index, &s, &stats, now), listen);
    relay_task.abort();
    let whole = result.unwrap();
    let p = first(whole.clone());
    assert!(refused >= 1, "{kind:?}: the first attempt was refused");
    let (records, pages) = (expected.1 as u64, 3);
    assert_eq!((p.fetched, p.pages, p.new, p.known), (records, pages, records, 0), "{kind:?}");
    assert_eq!(stored(kind, &store).await, expected, "{kind:?}: totals to the billionth");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "{kind:?}: the cut one, then one kept alive");
    {
        let log = served.vendor.log.lock().unwrap();
        let asked: Vec<u32> = log
            .iter()
            .map(|(_, q)| match kind {
                Kind::Litellm => q["page"].parse().unwrap(),
                _ => page_number(q),
            })
            .collect();
        assert_eq!(asked, [1, 1, 2, 3], "{kind:?}: the cut page asked again");
    }
    let metrics = stats.render();
    for want in [
        format!("aiscout_connector_retries_total{{connector=\"{}\"}} {}", s.name, refused + 1),
        format!("aiscout_connector_runs_total{{connector=\"{}\",outcome=\"ok\"}} 1", s.name),
        format!("aiscout_connector_pages_total{{connector=\"{}\"}} {}", s.name, whole.pages),
    ] {
        assert!(metrics.contains(&want), "{kind:?}: missing {want:?} in:\n{metrics}");
    }
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(p.window.1));
}

#[tokio::test]
async fn litellm_retries_a_refused_connection_and_a_reset_mid_answer() {
    refused_then_reset_then_success(Kind::Litellm).await;
}

#[tokio::test]
async fn openai_costs_retry_a_refused_connection_and_a_reset_mid_answer() {
    refused_then_reset_then_success(Kind::Openai).await;
}

#[tokio::test]
async fn anthropic_cost_report_retries_a_refused_connection_and_a_reset_mid_answer() {
    refused_then_reset_then_success(Kind::Anthropic).await;
}

/// `api_key_env`: `sync --once` in the real binary reads the key from the variable (the
/// vendor accepts only that key), with every log level on; neither `check-config` nor `sync`
/// prints it. Without the variable, both fail naming the variable and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_the_environment_is_used_and_never_printed() {
    let served = serve_vendor().await;
    let dir = tempfile::tempdir().unwrap();
    let now = aiscout_collector::store::now();
    let expected = fixtures(&served.vendor, now);
    let start = aiscout_collector::ingest::parse::ymd(now - 10 * DAY);
    let config = write_config(dir.path(), &served, Kind::Litellm, &start);
    // The key moves from its file into the environment.
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("api_key_file") {
                "api_key_env = \"AISCOUT_TEST_LITELLM_KEY\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    std::fs::remove_file(dir.path().join("api_key")).unwrap();
    let db = format!("sqlite:{}", dir.path().join("a.db").display());
    let run = |key: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        c.arg("--config").arg(&config).arg("--db").arg(&db).arg("--data-dir").arg(dir.path());
        c.args(args).env("RUST_LOG", "trace").env_remove("AISCOUT_TEST_LITELLM_KEY");
        if let Some(key) = key {
            c.env("AISCOUT_TEST_LITELLM_KEY", key);
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains(KEY), "the key was printed:\n{text}");
        (out.status.code(), text.into_owned())
    };
    let (code, text) = run(Some(KEY), &["check-config"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(Some(&format!("  {KEY}\n")), &["sync", "--once"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("litellm-prod: 250 rows fetched, 3 pages, 250 new, 0 already known"),
        "{text}"
    );
    let store = aiscout_collector::store::sqlite::SqliteStore::open(&dir.path().join("a.db"))
        .await
        .unwrap();
    assert_eq!(stored_nanos(&store).await, (expected, 250));
    drop(store);

    // A key the vendor refuses: the error names the variable and the setting.
    let (code, text) = run(Some("sk-wrong-0000"), &["sync", "--once"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("fix connector.litellm-prod.api_key_env ($AISCOUT_TEST_LITELLM_KEY)"),
        "{text}"
    );
    assert!(!text.contains("sk-wrong-0000"), "{text}");

    let want = "connector.litellm-prod.api_key_env: the environment variable \
                AISCOUT_TEST_LITELLM_KEY is not set or empty";
    for args in [&["check-config"][..], &["sync", "--once"]] {
        for key in [None, Some(" \n")] {
            let (code, text) = run(key, args);
            assert_eq!(code, Some(2), "{args:?}: {text}");
            assert!(text.contains(want), "{args:?}: missing {want:?} in:\n{text}");
        }
    }
}
