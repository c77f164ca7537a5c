//! The browser harness against a small HTTPS site served from inside the test, with the strict
//! Content-Security-Policy the console will send: forms, a `<select>`, the keyboard, a file
//! upload, screenshots, cookies and axe-core. Each test starts its own browser, and fails
//! (never skips) when Chromium, chromedriver or axe-core is not installed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiscout_e2e::browser::{Browser, Cookie, Impact, Key, Prerequisites};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

/// The CSP the console will serve: no inline script or style, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'";

/// The largest request body the test server reads.
const BODY_MAX_BYTES: usize = 1 << 20;

/// Serves the test site over HTTPS on 127.0.0.1 with a fresh self-signed certificate, on the
/// test's runtime; returns `https://127.0.0.1:PORT`.
async fn serve() -> String {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Chromium opens speculative connections it may drop mid-handshake.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(respond);
                let _served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

async fn respond(
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let content_type = header(&req, "content-type");
    let cookie = header(&req, "cookie");
    let body = match Limited::new(req.into_body(), BODY_MAX_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "too large")),
    };
    let page = match (method, path.as_str()) {
        (Method::GET, "/") => reply(StatusCode::OK, HTML, &form_page()),
        (Method::GET, "/bad") => reply(StatusCode::OK, HTML, BAD_PAGE),
        (Method::GET, "/style.css") => reply(StatusCode::OK, "text/css", STYLE),
        (Method::GET, "/app.js") => reply(StatusCode::OK, "text/javascript", APP_JS),
        (Method::GET, "/logo.svg") => reply(StatusCode::OK, "image/svg+xml", LOGO),
        (Method::POST, "/submit") => {
            let fields = form_fields(&body);
            let field = |k: &str| {
                fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default()
            };
            let text = format!("Hello {}, you picked {}.", field("name"), field("colour"));
            reply(StatusCode::OK, HTML, &result_page("Submitted", "result", &text))
        }
        (Method::POST, "/upload") => {
            let text = match uploaded_file(&content_type, &body) {
                Some((name, data)) => format!("Received {name} ({} bytes).", data.len()),
                None => "No file received.".to_owned(),
            };
            reply(StatusCode::OK, HTML, &result_page("Uploaded", "uploaded", &text))
        }
        (Method::GET, "/cookies") => {
            let text = format!("Cookie header: {cookie}");
            let mut page =
                reply(StatusCode::OK, HTML, &result_page("Cookies", "cookie-header", &text));
            page.headers_mut().insert(
                "set-cookie",
                hyper::header::HeaderValue::from_static(
                    "server_session=s3rv3r; Path=/; Secure; HttpOnly; SameSite=Strict",
                ),
            );
            page
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found"),
    };
    Ok(page)
}

const HTML: &str = "text/html; charset=utf-8";

fn reply(status: StatusCode, content_type: &str, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", content_type.parse().unwrap());
    h.insert("content-security-policy", CSP.parse().unwrap());
    h.insert("cache-control", "no-store".parse().unwrap());
    r
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The accessible page. The inline script must not run (CSP), while `/app.js` must.
fn form_page() -> String {
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Browser harness form</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js"></script>
<script>window.inlineScriptRan = true;</script>
</head>
<body>
<main>
<h1>Browser harness form</h1>
<form method="post" action="/submit">
  <p><label for="colour">Colour</label>
  <select id="colour" name="colour">
    <option value="red">Red</option>
    <option value="green">Green</option>
    <option value="blue">Blue</option>
  </select></p>
  <p><label for="name">Your name</label>
  <input id="name" name="name" type="text" autocomplete="name"></p>
  <p><button id="submit" type="submit">Send</button></p>
</form>
<h2>Upload</h2>
<form method="post" action="/upload" enctype="multipart/form-data">
  <p><label for="file">A file</label>
  <input id="file" name="file" type="file"></p>
  <p><button id="upload" type="submit">Upload</button></p>
</form>
</main>
</body>
</html>
"#
    .to_owned()
}

/// The same kind of page with an image without `alt` and an input without a label.
const BAD_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Inaccessible variant</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<main>
<h1>Inaccessible variant</h1>
<img src="/logo.svg" width="64" height="64">
<form method="post" action="/submit">
  <p><input id="unlabelled" name="name" type="text"></p>
  <p><button type="submit">Send</button></p>
</form>
</main>
</body>
</html>
"#;

fn result_page(title: &str, id: &str, text: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head><body><main><h1>{title}</h1>\
         <p id=\"{id}\">{}</p></main></body></html>\n",
        escape(text)
    )
}

const STYLE: &str =
    "body { font: 18px/1.5 sans-serif; color: #111; background: #fff; margin: 2rem; }
h1 { color: #14365d; }
input, select, button { font: inherit; padding: 0.3rem 0.6rem; }
button { background: #14365d; color: #fff; border: 0; border-radius: 4px; }
:focus { outline: 3px solid #c15400; outline-offset: 2px; }
";

const APP_JS: &str = "document.documentElement.dataset.appScript = 'ran';\n";

const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="30" fill="#14365d"/></svg>"##;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `application/x-www-form-urlencoded` fields, decoded.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (url_decode(k), url_decode(v)))
        .collect()
}

fn url_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let byte =
                    std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    Some(v) if hex.len() == 2 => out.push(v),
                    _ => {
                        out.push(b'%');
                        out.extend(hex);
                    }
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name and bytes of the first file part of a `multipart/form-data` body.
fn uploaded_file(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("\r\n--{boundary}");
    let name_at = find(body, b"filename=\"")? + b"filename=\"".len();
    let name_len = find(&body[name_at..], b"\"")?;
    let name = String::from_utf8_lossy(&body[name_at..name_at + name_len]).into_owned();
    let data_at = name_at + find(&body[name_at..], b"\r\n\r\n")? + 4;
    let data_len = find(&body[data_at..], delimiter.as_bytes())?;
    Some((name, body[data_at..data_at + data_len].to_vec()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn form_select_keyboard_upload_and_screenshot_work_under_a_strict_csp() {
    let site = serve().await;
    let started = Instant::now();
    let browser = Browser::start().await.unwrap();
    let start_time = started.elapsed();
    browser.goto(&format!("{site}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Browser harness form");
    assert_eq!(browser.current_url().await.unwrap(), format!("{site}/"));

    // The CSP is in force: the same-origin script ran, the inline one did not.
    let scripts = browser
        .execute(
            "return [document.documentElement.dataset.appScript || null, \
             window.inlineScriptRan === true];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        scripts,
        serde_json::json!(["ran", false]),
        "the page's CSP must block inline script"
    );

    browser.find("#colour").await.unwrap().select_option("green").await.unwrap();
    let name = browser.find("#name").await.unwrap();
    name.click().await.unwrap();
    name.send_keys("Ada Lovelace").await.unwrap();
    assert_eq!(name.prop("value").await.unwrap().as_deref(), Some("Ada Lovelace"));
    assert_eq!(browser.find_all("option").await.unwrap().len(), 3);

    let shot = browser.screenshot("browser-self-test-form").await.unwrap();
    let page_time = started.elapsed();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 1000, "{} is only {} bytes", shot.display(), png.len());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", shot.display());
    println!(
        "browser start {start_time:?}; start, page and screenshot {page_time:?}; {}",
        shot.display()
    );

    // Keyboard only from here: Tab from the name field reaches the button, Enter submits.
    browser.keys(&[Key::Tab]).await.unwrap();
    let focused = browser.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("submit"));
    browser.chord(&[Key::Shift, Key::Tab]).await.unwrap();
    let focused = browser.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("name"));
    browser.keys(&[Key::Tab, Key::Enter]).await.unwrap();
    let result = browser.wait_for("#result", WAIT).await.unwrap();
    assert_eq!(result.text().await.unwrap(), "Hello Ada Lovelace, you picked green.");
    assert_eq!(browser.current_url().await.unwrap(), format!("{site}/submit"));

    // A file chosen in the file input reaches the server.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("expenses-2026-06.csv");
    let csv = "date,vendor,amount\n2026-06-01,OpenAI,20.00\n";
    std::fs::write(&file, csv).unwrap();
    browser.goto(&format!("{site}/")).await.unwrap();
    browser.upload("#file", &file).await.unwrap();
    browser.find("#upload").await.unwrap().click().await.unwrap();
    let uploaded = browser.wait_for("#uploaded", WAIT).await.unwrap();
    let want = format!("Received expenses-2026-06.csv ({} bytes).", csv.len());
    assert_eq!(uploaded.text().await.unwrap(), want);
    assert!(browser.page_source().await.unwrap().contains("expenses-2026-06.csv"));

    // A selector that never appears fails with the selector, the page and its title.
    let missing = browser.wait_for("#never", Duration::from_millis(200)).await.unwrap_err();
    let message = missing.to_string();
    assert!(
        message.contains("`#never`") && message.contains("/upload") && message.contains("Uploaded"),
        "{message}"
    );
}

#[tokio::test]
async fn cookies_round_trip_including_a_forged_http_only_session() {
    let site = serve().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("{site}/cookies")).await.unwrap();
    let cookies = browser.cookies().await.unwrap();
    let server = cookies.iter().find(|c| c.name == "server_session").unwrap();
    assert_eq!(server.value, "s3rv3r");
    assert!(server.http_only && server.secure, "{server:?}");
    assert_eq!(server.same_site.as_deref(), Some("Strict"));

    // The console tests forge a session cookie this way; the server must receive it.
    browser.add_cookie(&Cookie::session("console_session", "forged-123")).await.unwrap();
    let forged = browser.cookies().await.unwrap();
    let forged = forged.iter().find(|c| c.name == "console_session").unwrap();
    assert_eq!(
        forged,
        &Cookie {
            domain: forged.domain.clone(),
            ..Cookie::session("console_session", "forged-123")
        }
    );
    browser.goto(&format!("{site}/cookies")).await.unwrap();
    let header = browser.find("#cookie-header").await.unwrap().text().await.unwrap();
    assert!(header.contains("console_session=forged-123"), "{header}");
    assert!(header.contains("server_session=s3rv3r"), "{header}");

    browser.delete_cookie("console_session").await.unwrap();
    assert!(browser.cookies().await.unwrap().iter().all(|c| c.name != "console_session"));
    browser.goto(&format!("{site}/cookies")).await.unwrap();
    let header = browser.find("#cookie-header").await.unwrap().text().await.unwrap();
    assert!(!header.contains("console_session"), "{header}");
}

#[tokio::test]
async fn axe_reports_the_inaccessible_variant_and_nothing_serious_on_the_good_page() {
    let site = serve().await;
    let browser = Browser::start().await.unwrap();

    browser.goto(&format!("{site}/")).await.unwrap();
    let good = browser.axe().await.unwrap();
    let serious: Vec<String> = good
        .iter()
        .filter(|v| v.impact >= Some(Impact::Serious))
        .map(ToString::to_string)
        .collect();
    assert!(serious.is_empty(), "the good page: {serious:#?}");
    browser.assert_accessible("the good page").await.unwrap();
    // axe ran although the page's CSP forbids inline script (WebDriver execute is exempt).
    let inline = browser.execute("return window.inlineScriptRan === true;", vec![]).await.unwrap();
    assert_eq!(inline, serde_json::json!(false));

    browser.goto(&format!("{site}/bad")).await.unwrap();
    let bad = browser.axe().await.unwrap();
    let ids: Vec<&str> = bad.iter().map(|v| v.id.as_str()).collect();
    assert!(ids.contains(&"image-alt") && ids.contains(&"label"), "{ids:?}");
    let image_alt = bad.iter().find(|v| v.id == "image-alt").unwrap();
    assert_eq!(image_alt.impact, Some(Impact::Critical));
    assert_eq!(image_alt.targets, ["img"]);
    let label = bad.iter().find(|v| v.id == "label").unwrap();
    assert_eq!(label.targets, ["#unlabelled"]);

    let report = browser.assert_accessible("the bad page").await.unwrap_err().to_string();
    assert!(report.contains("image-alt") && report.contains("label"), "{report}");
    assert!(report.contains("the bad page") && report.contains("/bad"), "{report}");
}

#[test]
fn missing_prerequisites_say_what_to_install() {
    let nowhere = std::path::Path::new("/nonexistent/aiscout");
    let err = Prerequisites {
        chromium: nowhere.join("chromium"),
        chromedriver: nowhere.join("chromedriver"),
        axe: nowhere.join("axe.min.js"),
    }
    .check()
    .unwrap_err()
    .to_string();
    for needed in [
        "apt-get install chromium",
        "apt-get install chromium-driver",
        "npm ci",
        ".ci/install-deps",
    ] {
        assert!(err.contains(needed), "{needed} not in: {err}");
    }
    // On this machine everything must be installed: the browser tests fail rather than skip.
    Prerequisites::standard().check().unwrap();
}
