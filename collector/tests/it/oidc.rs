//! OpenID Connect sign-in against a real OpenID Provider: panva/oidc-provider
//! (`tests/oidc/provider.mjs`) over HTTPS on loopback with an rcgen certificate, driven
//! through its login and consent pages by our own HTTPS client (redirects followed by hand,
//! cookies carried), as a browser would; then `check-config` on a bad `[console.oidc]`.
//!
//! The provider needs `node` (20.19 or later) and `tests/oidc/node_modules` (`npm ci`, done
//! by `.ci/install-deps`). Without them these tests fail with a message saying so; they
//! never pass silently.
//!
//! Every provider process is killed and reaped in `Drop`; the wait for its `listening`
//! line has a deadline and no sleeps.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use aiscout_collector::client::{fetch, tls_config};
use aiscout_collector::model::Role;
use aiscout_collector::oidc::{Identity, OidcConfig, OidcError, PendingLogin, Provider};
use aiscout_wire::Secret;
use hyper::Method;
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use rustls::pki_types::CertificateDer;

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");
/// Generous: node loading oidc-provider on a 2-core machine busy with the other tests took
/// over 60 s once.
const DEADLINE: Duration = Duration::from_secs(180);
const CLIENT_ID: &str = "aiscout";
const CLIENT_SECRET: &str = "oidc-test-client-secret";
const REDIRECT: &str = "https://aiscout.test/auth/oidc/callback";
const USERS: &str = r#"[
  {"sub": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["secops"]},
  {"sub": "bob", "email": "bob@example.com", "name": "Bob", "groups": ["staff", "ai-admins"]}
]"#;

/// A running `node tests/oidc/provider.mjs`, killed and reaped on drop.
struct Idp {
    child: Child,
    issuer: String,
    cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        // An error means the child has already exited, which is what we want.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Fails (never skips) when node or the npm packages are missing.
fn require_node() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let how = "run .ci/install-deps (it runs `npm ci` in tests/oidc; node 20.19+ and npm must \
               be installed)";
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the OIDC tests need `node` on PATH; {how}{}",
            if ci { " (CI=true)" } else { "" }
        ),
    }
    let package = repo_root().join("tests/oidc/node_modules/oidc-provider/package.json");
    assert!(
        package.is_file(),
        "the OIDC tests need tests/oidc/node_modules ({} is missing); {how}{}",
        package.display(),
        if ci { " (CI=true)" } else { "" }
    );
}

/// Starts the provider with `flags` (see provider.mjs) and waits for its `listening` line.
fn start_idp(flags: &[&str]) -> Idp {
    require_node();
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let log_path = dir.path().join("provider.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("node")
        .arg(repo_root().join("tests/oidc/provider.mjs"))
        .arg("--cert")
        .arg(&cert_path)
        .arg("--key")
        .arg(&key_path)
        .args(["--port", "0", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args(["--redirect-uri", REDIRECT])
        .args(flags)
        // Only what the test sets: no OIDC_* variable of the caller leaks in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OIDC_USERS", USERS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Reads until the child's stdout closes, so the pipe never fills.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(DEADLINE);
    let mut idp =
        Idp { child, issuer: String::new(), cert: certified.cert.der().clone(), _dir: dir };
    match first {
        Ok(line) if line.starts_with("listening https://") => {
            idp.issuer = line.trim_start_matches("listening ").to_owned();
            idp
        }
        other => {
            let status = idp.child.try_wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "no `listening https://` line from provider.mjs ({other:?}); status {status:?}; \
                 its stderr:\n{log}"
            );
        }
    }
}

fn config(idp: &Idp) -> OidcConfig {
    OidcConfig {
        issuer: idp.issuer.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        redirect_url: REDIRECT.into(),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        groups_claim: "groups".into(),
        roles: [("ai-admins", Role::Admin), ("secops", Role::Security), ("staff", Role::Viewer)]
            .into_iter()
            .map(|(g, r)| (g.to_owned(), r))
            .collect(),
        extra_roots: vec![idp.cert.clone()],
    }
}

/// What a browser ends with: the callback's `code` and `state`, or the page that stopped it.
#[derive(Debug)]
enum Outcome {
    Callback { code: String, state: String },
    Stopped { status: u16, page: String },
}

/// Walks from the authorization URL to the redirect URI as a browser: follows redirects,
/// keeps cookies, signs in as `login` on the login page and continues on the consent page.
async fn browse(idp: &Idp, authorization_url: &str, login: &str) -> Outcome {
    let tls = tls_config(std::slice::from_ref(&idp.cert), false).unwrap();
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let mut method = Method::GET;
    let mut url = authorization_url.to_owned();
    let mut body = String::new();
    for _ in 0..16 {
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            headers.push((COOKIE, HeaderValue::from_str(&cookies.join("; ")).unwrap()));
        }
        if method == Method::POST {
            headers.push((
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            ));
        }
        let answer = fetch(Arc::clone(&tls), method.clone(), &url, &headers, body.clone(), 1 << 20)
            .await
            .unwrap();
        for set in answer.headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let expired = attributes.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            if expired || value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let page = String::from_utf8_lossy(&answer.body).into_owned();
        if answer.status.is_redirection() {
            let location = answer.headers.get(LOCATION).unwrap().to_str().unwrap();
            let next = absolute(&idp.issuer, location);
            if let Some(query) = next.strip_prefix(&format!("{REDIRECT}?")) {
                let params: BTreeMap<String, String> =
                    form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                assert_eq!(params.get("iss"), Some(&idp.issuer), "RFC 9207 iss: {params:?}");
                return Outcome::Callback {
                    code: params["code"].clone(),
                    state: params["state"].clone(),
                };
            }
            (method, url, body) = (Method::GET, next, String::new());
        } else if answer.status.as_u16() == 200 && page.contains(r#"<form id="login""#) {
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("prompt", "login")
                .append_pair("login", login)
                .append_pair("password", "anything")
                .finish();
            (method, url, body) = (Method::POST, absolute(&idp.issuer, &action(&page)), form);
        } else if answer.status.as_u16() == 200 && page.contains(r#"<form id="consent""#) {
            let form = "prompt=consent".to_owned();
            (method, url, body) = (Method::POST, absolute(&idp.issuer, &action(&page)), form);
        } else {
            return Outcome::Stopped { status: answer.status.as_u16(), page };
        }
    }
    panic!("no callback after 16 steps");
}

fn action(page: &str) -> String {
    let (_, rest) = page.split_once(r#"action=""#).unwrap();
    rest.split_once('"').unwrap().0.to_owned()
}

fn absolute(issuer: &str, location: &str) -> String {
    if location.starts_with("https://") {
        location.to_owned()
    } else {
        assert!(location.starts_with('/'), "{location}");
        format!("{issuer}{location}")
    }
}

async fn sign_in(idp: &Idp, provider: &Provider, login: &str) -> (PendingLogin, String, String) {
    let (url, pending) = provider.begin().unwrap();
    // The pending login travels in a cookie across the redirect.
    let pending = PendingLogin::from_cookie(&pending.to_cookie()).unwrap();
    match browse(idp, &url, login).await {
        Outcome::Callback { code, state } => (pending, code, state),
        other => panic!("{login} did not reach the callback: {other:?}"),
    }
}

#[tokio::test]
async fn rs256_sign_in_with_consent_maps_groups_to_a_role() {
    let idp = start_idp(&[]);
    let provider = Provider::discover(&config(&idp)).await.unwrap();

    // A login that is no account of the provider never reaches the callback.
    let (url, _) = provider.begin().unwrap();
    match browse(&idp, &url, "mallory").await {
        Outcome::Stopped { status: 401, page } => assert!(page.contains("unknown user"), "{page}"),
        other => panic!("mallory got {other:?}"),
    }

    let (pending, code, state) = sign_in(&idp, &provider, "alice").await;
    let wrong = provider.finish(&pending, &code, "not-the-state").await;
    assert!(matches!(wrong, Err(OidcError::StateMismatch)), "{wrong:?}");
    let (_, other) = provider.begin().unwrap();
    let crossed = provider.finish(&other, &code, &state).await;
    assert!(matches!(crossed, Err(OidcError::StateMismatch)), "{crossed:?}");

    // Refused states never reached the token endpoint, so the code is still good.
    let identity = provider.finish(&pending, &code, &state).await.unwrap();
    assert_eq!(
        identity,
        Identity {
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
            groups: vec!["secops".into()],
            role: Some(Role::Security),
        }
    );

    // A code is good once.
    match provider.finish(&pending, &code, &state).await {
        Err(OidcError::CodeRefused { status: 400, error, .. }) => {
            assert_eq!(error, "invalid_grant")
        }
        other => panic!("a replayed code gave {other:?}"),
    }

    // Another person in another browser: of several mapped groups, the best role wins.
    let (pending, code, state) = sign_in(&idp, &provider, "bob").await;
    let identity = provider.finish(&pending, &code, &state).await.unwrap();
    assert_eq!(identity.subject, "bob");
    assert_eq!(identity.groups, ["staff", "ai-admins"]);
    assert_eq!(identity.role, Some(Role::Admin));
}

#[tokio::test]
async fn es256_client_secret_post_with_groups_from_userinfo() {
    let idp = start_idp(&[
        "--id-token-alg",
        "ES256",
        "--client-auth",
        "client_secret_post",
        "--groups-in-userinfo-only",
        "--skip-consent",
    ]);
    let provider = Provider::discover(&config(&idp)).await.unwrap();
    let (pending, code, state) = sign_in(&idp, &provider, "bob").await;
    let identity = provider.finish(&pending, &code, &state).await.unwrap();
    assert_eq!(identity.subject, "bob");
    assert_eq!(identity.email.as_deref(), Some("bob@example.com"));
    assert_eq!(identity.groups, ["staff", "ai-admins"], "read from userinfo");
    assert_eq!(identity.role, Some(Role::Admin));

    // No group maps: signed in, but without a role.
    let mut unmapped = config(&idp);
    unmapped.roles.clear();
    let provider = Provider::discover(&unmapped).await.unwrap();
    let (pending, code, state) = sign_in(&idp, &provider, "alice").await;
    let identity = provider.finish(&pending, &code, &state).await.unwrap();
    assert_eq!((identity.subject.as_str(), identity.role), ("alice", None));
}

#[tokio::test]
async fn discovery_checks_the_issuer_and_the_certificate() {
    let idp = start_idp(&["--skip-consent"]);

    let mut slash = config(&idp);
    slash.issuer = format!("{}/", idp.issuer);
    match Provider::discover(&slash).await {
        Err(OidcError::IssuerMismatch { expected, found }) => {
            assert_eq!((expected, found), (slash.issuer.clone(), idp.issuer.clone()));
        }
        other => panic!("{other:?}"),
    }

    let mut untrusted = config(&idp);
    untrusted.extra_roots.clear();
    match Provider::discover(&untrusted).await {
        Err(e @ OidcError::Request { what: "discovery document", .. }) => {
            assert!(e.to_string().contains("certificate"), "{e}");
        }
        other => panic!("{other:?}"),
    }

    let mut wrong_client = config(&idp);
    wrong_client.client_secret = Secret::new("not-the-secret");
    let provider = Provider::discover(&wrong_client).await.unwrap();
    let (pending, code, state) = sign_in(&idp, &provider, "alice").await;
    match provider.finish(&pending, &code, &state).await {
        Err(e @ OidcError::CodeRefused { status: 401, .. }) => {
            assert!(e.to_string().contains("invalid_client"), "{e}");
            assert!(!e.to_string().contains("not-the-secret"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn check_config_names_every_console_oidc_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\n[console.oidc]\nissuer = \"http://login.example\"\n\
         client_id = \"aiscout\"\nredirect_url = \"https://a.example/cb\"\n\
         [console.oidc.roles]\nops = \"superuser\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    crate::assert_config_problems(
        &out,
        3,
        &["console.oidc.issuer:", "console.oidc.client_secret_file:", "console.oidc.roles.ops:"],
    );

    let secret = dir.path().join("secret");
    std::fs::write(&secret, "oidc-secret-value\n").unwrap();
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n[console.oidc]\nissuer = \"https://login.example\"\n\
             client_id = \"aiscout\"\nredirect_url = \"https://a.example/cb\"\n\
             client_secret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let all =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("oidc-secret-value"), "the secret is never printed: {all}");
}
