//! Headless Chromium driven over WebDriver, for the console's end-to-end tests.
//!
//! [`Browser::start`] runs `/usr/bin/chromedriver` on a loopback port it picks itself, and
//! opens one W3C session on `/usr/bin/chromium`: headless, a fresh profile in a temporary folder, every
//! background-network feature off (the machines running these tests have no internet), a
//! 1366×900 window (Chromium 156's new headless mode keeps 143 px of it for emulated browser
//! UI, so pages and screenshots get a 1366×757 viewport), and `acceptInsecureCerts` because the
//! collector serves a self-signed certificate. The WebDriver protocol itself is [fantoccini]'s; this module only
//! gives the tests a small API in terms of pages, CSS selectors and keys, with errors that name
//! the selector and the page.
//!
//! ```no_run
//! # async fn console(url: &str) -> Result<(), aiscout_e2e::HarnessError> {
//! use std::time::Duration;
//! use aiscout_e2e::browser::{Browser, Cookie, Key};
//!
//! let browser = Browser::start().await?;
//! browser.goto(&format!("{url}/login")).await?;
//! browser.find("#token").await?.send_keys("secret").await?;
//! browser.keys(&[Key::Tab, Key::Enter]).await?;
//! browser.wait_for("main h1", Duration::from_secs(20)).await?;
//! browser.assert_accessible("inventory").await?;
//! browser.add_cookie(&Cookie::session("aiscout_session", "forged")).await?;
//! let png = browser.screenshot("inventory").await?; // <target>/console-screenshots/inventory.png
//! # Ok(()) }
//! ```
//!
//! Lifecycle: dropping a [`Browser`] ends the WebDriver session with a blocking request to
//! chromedriver (Chromium quits), kills chromedriver, kills any Chromium process still running
//! on this browser's profile (found by its unique `--user-data-dir`, should the session end
//! have failed), and removes the profile. It does not depend on the test's tokio runtime still
//! running. chromedriver and Chromium stay in the test's process group, so Ctrl-C on a test
//! run ends them too.
//!
//! Accessibility: [`Browser::axe`] injects axe-core from `tests/browser/node_modules` (pinned by
//! `tests/browser/package-lock.json`, installed by `.ci/install-deps`) through WebDriver's
//! execute, which a page's Content-Security-Policy does not govern, so the console's strict
//! CSP needs no exception for tests.

use std::fmt::{self, Display};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::error::CmdError;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::{HarnessError, Process, workspace_root};

/// How long chromedriver may take to start and Chromium to open a session.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Page loads and scripts (axe included) fail after this, instead of WebDriver's 300 s.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each blocking request to chromedriver may take (the `/status` probe, ending the
/// session on drop).
const DRIVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two tries of [`Browser::wait_for`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A cap on chromedriver's replies read outside fantoccini.
const DRIVER_REPLY_MAX_BYTES: u64 = 1 << 20;

/// Chromium flags: headless, and nothing that reaches for the network on its own.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",
];

/// Where the browser and axe-core are expected, and what to install when they are not.
#[derive(Clone, Debug)]
pub struct Prerequisites {
    /// The Chromium binary (Debian package `chromium`).
    pub chromium: PathBuf,
    /// The WebDriver server (Debian package `chromium-driver`).
    pub chromedriver: PathBuf,
    /// `axe.min.js` from the npm package `axe-core`.
    pub axe: PathBuf,
}

impl Prerequisites {
    /// The paths on Debian, with axe-core in `tests/browser/node_modules`.
    pub fn standard() -> Self {
        Self {
            chromium: PathBuf::from("/usr/bin/chromium"),
            chromedriver: PathBuf::from("/usr/bin/chromedriver"),
            axe: workspace_root().join("tests/browser/node_modules/axe-core/axe.min.js"),
        }
    }

    /// Checks that every file exists.
    ///
    /// # Errors
    /// [`HarnessError::Missing`], listing each missing file and how to install it.
    pub fn check(&self) -> Result<(), HarnessError> {
        let mut missing = Vec::new();
        if !self.chromium.is_file() {
            missing.push(format!(
                "{} is missing: install Debian's `chromium` (apt-get install chromium)",
                self.chromium.display()
            ));
        }
        if !self.chromedriver.is_file() {
            missing.push(format!(
                "{} is missing: install Debian's `chromium-driver` (apt-get install chromium-driver)",
                self.chromedriver.display()
            ));
        }
        if !self.axe.is_file() {
            missing.push(format!(
                "{} is missing: run `(cd tests/browser && npm ci --no-audit --no-fund)` (needs npm)",
                self.axe.display()
            ));
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(HarnessError::Missing(format!(
            "the browser tests cannot run; `bash .ci/install-deps` installs all of this:\n  {}",
            missing.join("\n  ")
        )))
    }
}

/// A keyboard key, sent with its W3C WebDriver code point (WebDriver §17.4.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Key {
    /// ↓
    ArrowDown,
    /// ←
    ArrowLeft,
    /// →
    ArrowRight,
    /// ↑
    ArrowUp,
    /// Backspace.
    Backspace,
    /// Delete.
    Delete,
    /// End.
    End,
    /// Enter (the main keyboard's Return).
    Enter,
    /// Escape.
    Escape,
    /// Home.
    Home,
    /// Page down.
    PageDown,
    /// Page up.
    PageUp,
    /// Shift (hold it with [`Browser::chord`]).
    Shift,
    /// Space.
    Space,
    /// Tab.
    Tab,
}

impl Key {
    /// The key's code point in the W3C WebDriver key table.
    pub fn code(self) -> char {
        match self {
            Self::ArrowDown => '\u{E015}',
            Self::ArrowLeft => '\u{E012}',
            Self::ArrowRight => '\u{E014}',
            Self::ArrowUp => '\u{E013}',
            Self::Backspace => '\u{E003}',
            Self::Delete => '\u{E017}',
            Self::End => '\u{E010}',
            Self::Enter => '\u{E007}',
            Self::Escape => '\u{E00C}',
            Self::Home => '\u{E011}',
            Self::PageDown => '\u{E00F}',
            Self::PageUp => '\u{E00E}',
            Self::Shift => '\u{E008}',
            Self::Space => '\u{E00D}',
            Self::Tab => '\u{E004}',
        }
    }
}

/// A cookie as WebDriver reports it, or as a test sets it.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value, as sent (no percent-decoding).
    pub value: String,
    /// `Path`, when set.
    pub path: Option<String>,
    /// `Domain`, when set.
    pub domain: Option<String>,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Secure`.
    pub secure: bool,
    /// `SameSite`: `Strict`, `Lax` or `None`. Adding a cookie without one sends `Lax`.
    pub same_site: Option<String>,
}

impl Cookie {
    /// A cookie for path `/`, `HttpOnly`, `Secure` and `SameSite=Strict`: how the console's
    /// session cookie is expected to look.
    pub fn session(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            path: Some("/".to_owned()),
            domain: None,
            http_only: true,
            secure: true,
            same_site: Some("Strict".to_owned()),
        }
    }
}

/// How much an accessibility violation matters, in axe-core's order (least first).
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub enum Impact {
    /// axe's `minor`.
    Minor,
    /// axe's `moderate`.
    Moderate,
    /// axe's `serious`.
    Serious,
    /// axe's `critical`.
    Critical,
}

impl Impact {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "minor" => Some(Self::Minor),
            "moderate" => Some(Self::Moderate),
            "serious" => Some(Self::Serious),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// One failed axe-core rule, with every element that fails it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Violation {
    /// The rule id, such as `image-alt` or `label`.
    pub id: String,
    /// How much it matters; `None` when axe gives no impact.
    pub impact: Option<Impact>,
    /// What the rule asks for, in one sentence.
    pub help: String,
    /// Deque's page about the rule.
    pub help_url: String,
    /// A CSS selector per failing element (parts inside shadow roots or frames joined by
    /// ` >>> `).
    pub targets: Vec<String>,
}

impl Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let impact = self.impact.map_or_else(|| "unrated".to_owned(), |i| format!("{i:?}"));
        write!(
            f,
            "[{impact}] {}: {} ({}) at {}",
            self.id,
            self.help,
            self.help_url,
            self.targets.join(", ")
        )
    }
}

/// One element on the page, found by a CSS selector.
#[derive(Clone, Debug)]
pub struct Element {
    inner: fantoccini::elements::Element,
    what: String,
}

impl Element {
    /// Clicks it (scrolling it into view first, as WebDriver does).
    ///
    /// # Errors
    /// When it is not interactable or gone.
    pub async fn click(&self) -> Result<(), HarnessError> {
        self.inner.click().await.map_err(self.failed("click"))
    }

    /// Types `text` into it (focusing it first). Special keys can be typed with
    /// [`Key::code`].
    ///
    /// # Errors
    /// When it cannot take keyboard input.
    pub async fn send_keys(&self, text: &str) -> Result<(), HarnessError> {
        self.inner.send_keys(text).await.map_err(self.failed("send keys to"))
    }

    /// Empties an input or text area.
    ///
    /// # Errors
    /// When it is not editable.
    pub async fn clear(&self) -> Result<(), HarnessError> {
        self.inner.clear().await.map_err(self.failed("clear"))
    }

    /// Its rendered text (what a user sees; hidden text excluded).
    ///
    /// # Errors
    /// When it is gone.
    pub async fn text(&self) -> Result<String, HarnessError> {
        self.inner.text().await.map_err(self.failed("read the text of"))
    }

    /// An HTML attribute as written in the markup, or `None` when absent.
    ///
    /// # Errors
    /// When it is gone.
    pub async fn attr(&self, name: &str) -> Result<Option<String>, HarnessError> {
        self.inner.attr(name).await.map_err(self.failed("read an attribute of"))
    }

    /// A DOM property, such as an input's current `value` or a checkbox's `checked`.
    ///
    /// # Errors
    /// When it is gone.
    pub async fn prop(&self, name: &str) -> Result<Option<String>, HarnessError> {
        self.inner.prop(name).await.map_err(self.failed("read a property of"))
    }

    /// Whether it is displayed.
    ///
    /// # Errors
    /// When it is gone.
    pub async fn is_displayed(&self) -> Result<bool, HarnessError> {
        self.inner.is_displayed().await.map_err(self.failed("check the visibility of"))
    }

    /// Chooses the `<option>` whose `value` is `value` in this `<select>`.
    ///
    /// # Errors
    /// When no such option exists.
    pub async fn select_option(&self, value: &str) -> Result<(), HarnessError> {
        let css = format!("option[value=\"{}\"]", css_string(value));
        let option = self.inner.find(Locator::Css(&css)).await.map_err(self.failed(&css))?;
        option.click().await.map_err(self.failed("select an option of"))
    }

    fn failed(&self, action: &str) -> impl FnOnce(CmdError) -> HarnessError + use<> {
        let what = format!("{action} {}", self.what);
        move |e| HarnessError::Browser(format!("{what}: {e}"))
    }
}

/// A headless Chromium with one WebDriver session; see the module doc for its lifecycle.
pub struct Browser {
    client: fantoccini::Client,
    /// The WebDriver session, ended on drop.
    session: String,
    /// chromedriver's port on 127.0.0.1.
    port: u16,
    /// chromedriver.
    driver: Process,
    /// Chromium's `--user-data-dir`, which names its processes.
    user_data_dir: PathBuf,
    axe_source: Arc<str>,
    /// The profile and XDG folders; removed after the processes are gone (field order).
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, after checking
    /// [`Prerequisites::standard`].
    ///
    /// # Errors
    /// [`HarnessError::Missing`] naming what to install, or chromedriver or Chromium failing to
    /// start in time (with chromedriver's output).
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(&Prerequisites::standard()).await
    }

    /// [`Browser::start`] with other paths for Chromium, chromedriver and axe-core.
    ///
    /// # Errors
    /// As for [`Browser::start`].
    pub async fn start_with(prerequisites: &Prerequisites) -> Result<Self, HarnessError> {
        prerequisites.check()?;
        let axe_source: Arc<str> = std::fs::read_to_string(&prerequisites.axe)
            .map_err(|e| HarnessError::Other(format!("{}: {e}", prerequisites.axe.display())))?
            .into();
        let profile = tempfile::Builder::new()
            .prefix("aiscout-browser-")
            .tempdir()
            .map_err(|e| HarnessError::Other(format!("a temporary profile folder: {e}")))?;

        let mut cmd = Command::new(&prerequisites.chromedriver);
        // Port 0: chromedriver binds a free port and prints it, so two tests cannot race for
        // one.
        cmd.arg("--port=0");
        // Chromium's crash handler and caches follow XDG; keep them in the temporary folder.
        cmd.env("XDG_CONFIG_HOME", profile.path().join("config"))
            .env("XDG_CACHE_HOME", profile.path().join("cache"));
        let driver = Process::spawn("chromedriver", cmd)?;
        // Reading chromedriver's output blocks, so it waits on a blocking thread.
        let (driver, port) =
            tokio::task::spawn_blocking(move || wait_until_ready(driver))
                .await
                .map_err(|e| HarnessError::Other(format!("waiting for chromedriver: {e}")))??;

        let user_data_dir = profile.path().join("chromium");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", user_data_dir.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "timeouts": {
                "implicit": 0,
                "pageLoad": millis(PAGE_TIMEOUT),
                "script": millis(PAGE_TIMEOUT),
            },
            "goog:chromeOptions": {
                "binary": prerequisites.chromium.display().to_string(),
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            return Err(HarnessError::Other("capabilities are not a JSON object".into()));
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities);
        let url = format!("http://127.0.0.1:{port}");
        // Until the session exists, dropping `driver` and killing what runs on the profile is
        // what cleans up.
        let connected = tokio::time::timeout(START_TIMEOUT, builder.connect(&url)).await;
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let err = start_failed(driver, &format!("a Chromium session: {e}"));
                kill_chromium(&user_data_dir);
                return Err(err);
            }
            Err(_) => {
                let err = start_failed(driver, "a Chromium session (timed out)");
                kill_chromium(&user_data_dir);
                return Err(err);
            }
        };
        let Ok(Some(session)) = client.session_id().await else {
            let err = start_failed(driver, "a session id");
            kill_chromium(&user_data_dir);
            return Err(err);
        };
        let browser =
            Self { client, session, port, driver, user_data_dir, axe_source, _profile: profile };
        // Drop ends the session itself, synchronously; fantoccini's own end-of-session request
        // would need a runtime that a finished test no longer has.
        browser.client.persist().await.map_err(browser.failed("persist the session"))?;
        Ok(browser)
    }

    /// Loads `url` and waits for it to finish loading.
    ///
    /// # Errors
    /// When the page does not load (DNS, TLS, timeout).
    pub async fn goto(&self, url: &str) -> Result<(), HarnessError> {
        self.client.goto(url).await.map_err(self.failed(&format!("load {url}")))
    }

    /// The address of the current page.
    ///
    /// # Errors
    /// When the session is gone.
    pub async fn current_url(&self) -> Result<String, HarnessError> {
        let url = self.client.current_url().await.map_err(self.failed("read the URL"))?;
        Ok(url.to_string())
    }

    /// The current page's `<title>`.
    ///
    /// # Errors
    /// When the session is gone.
    pub async fn title(&self) -> Result<String, HarnessError> {
        self.client.title().await.map_err(self.failed("read the title"))
    }

    /// The first element matching `css`, now (no waiting; see [`Browser::wait_for`]).
    ///
    /// # Errors
    /// When nothing matches, naming the selector, the page URL and its title.
    pub async fn find(&self, css: &str) -> Result<Element, HarnessError> {
        match self.client.find(Locator::Css(css)).await {
            Ok(inner) => Ok(Element { inner, what: format!("`{css}`") }),
            Err(e) => Err(HarnessError::Browser(format!(
                "no element matches `{css}` on {}: {e}",
                self.page().await
            ))),
        }
    }

    /// Every element matching `css`, in document order (possibly none).
    ///
    /// # Errors
    /// When the selector is invalid.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, HarnessError> {
        let found = self
            .client
            .find_all(Locator::Css(css))
            .await
            .map_err(self.failed(&format!("find `{css}`")))?;
        Ok(found
            .into_iter()
            .enumerate()
            .map(|(i, inner)| Element { inner, what: format!("`{css}` #{i}") })
            .collect())
    }

    /// Waits until an element matches `css` (after a navigation, a submit or a script) and
    /// returns it, trying every 50 ms until `timeout`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] naming the selector, the page URL and its title.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element, HarnessError> {
        self.poll(timeout, &format!("an element matching `{css}`"), async || {
            match self.client.find(Locator::Css(css)).await {
                Ok(inner) => Ok(Some(Element { inner, what: format!("`{css}`") })),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Waits until the page's address contains `part` (after a submit or a link, whose new
    /// page may hold the same elements as the old one), trying every 50 ms until `timeout`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] naming what was awaited and the page's address and title.
    pub async fn wait_for_url(&self, part: &str, timeout: Duration) -> Result<(), HarnessError> {
        self.poll(timeout, &format!("an address containing `{part}`"), async || {
            // Mid-navigation the address can be unreadable for a moment: try again.
            match self.client.current_url().await {
                Ok(url) => Ok(url.as_str().contains(part).then_some(())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Runs `attempt` every [`POLL_INTERVAL`] until it finds what is `awaited` or `timeout`
    /// passes; an attempt's error is kept for the timeout's message and the polling goes on.
    async fn poll<T>(
        &self,
        timeout: Duration,
        awaited: &str,
        mut attempt: impl AsyncFnMut() -> Result<Option<T>, String>,
    ) -> Result<T, HarnessError> {
        let tries = timeout.as_millis().div_ceil(POLL_INTERVAL.as_millis()).max(1);
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        for _ in 0..tries {
            match attempt().await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) => last_error = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            // The DOM offers WebDriver no change event to wait on: polling is the event source.
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(HarnessError::Timeout(
            timeout,
            format!("{awaited} on {} (last error: {last_error})", self.page().await),
        ))
    }

    /// The element that has keyboard focus (`<body>` when none does).
    ///
    /// # Errors
    /// When the session is gone.
    pub async fn active_element(&self) -> Result<Element, HarnessError> {
        let inner =
            self.client.active_element().await.map_err(self.failed("find the focused element"))?;
        Ok(Element { inner, what: "the focused element".to_owned() })
    }

    /// Presses and releases each key in turn, sent to whatever has focus (as a user would:
    /// Tab moves focus, Enter or Space activates a focused button).
    ///
    /// # Errors
    /// When WebDriver refuses the key actions.
    pub async fn keys(&self, keys: &[Key]) -> Result<(), HarnessError> {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for key in keys {
            actions = actions
                .then(KeyAction::Down { value: key.code() })
                .then(KeyAction::Up { value: key.code() });
        }
        self.perform(actions).await
    }

    /// Holds every key down in order, then releases them in reverse: `[Key::Shift, Key::Tab]`
    /// is Shift+Tab.
    ///
    /// # Errors
    /// When WebDriver refuses the key actions.
    pub async fn chord(&self, keys: &[Key]) -> Result<(), HarnessError> {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for key in keys {
            actions = actions.then(KeyAction::Down { value: key.code() });
        }
        for key in keys.iter().rev() {
            actions = actions.then(KeyAction::Up { value: key.code() });
        }
        self.perform(actions).await
    }

    async fn perform(&self, actions: KeyActions) -> Result<(), HarnessError> {
        self.client.perform_actions(actions).await.map_err(self.failed("press keys"))?;
        self.client.release_actions().await.map_err(self.failed("release keys"))
    }

    /// Runs `script` as the body of a function in the page, with `args` as `arguments`, and
    /// returns what it returns. Not subject to the page's Content-Security-Policy.
    ///
    /// # Errors
    /// When the script throws.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, HarnessError> {
        self.client.execute(script, args).await.map_err(self.failed("run a script"))
    }

    /// The current DOM serialised as HTML.
    ///
    /// # Errors
    /// When the session is gone.
    pub async fn page_source(&self) -> Result<String, HarnessError> {
        self.client.source().await.map_err(self.failed("read the page source"))
    }

    /// Saves a PNG of the viewport as `<target>/console-screenshots/<name>.png` (the folder
    /// created if missing) and returns its path. `name` may hold ASCII letters, digits, `-`
    /// and `_`.
    ///
    /// # Errors
    /// A bad name, or the screenshot or the file write failing.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, HarnessError> {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HarnessError::Other(format!(
                "screenshot name {name:?}: use ASCII letters, digits, - and _"
            )));
        }
        let png = self.client.screenshot().await.map_err(self.failed("take a screenshot"))?;
        let dir = target_dir()?.join("console-screenshots");
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::Other(format!("{}: {e}", dir.display())))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .map_err(|e| HarnessError::Other(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// Chooses `file` in the `<input type=file>` matching `css` (WebDriver types the path).
    ///
    /// # Errors
    /// When the input is missing or the file does not exist.
    pub async fn upload(&self, css: &str, file: &Path) -> Result<(), HarnessError> {
        let file = std::fs::canonicalize(file)
            .map_err(|e| HarnessError::Other(format!("{}: {e}", file.display())))?;
        let input = self.find(css).await?;
        input.send_keys(&file.display().to_string()).await
    }

    /// The cookies visible to the current page, `HttpOnly` ones included.
    ///
    /// # Errors
    /// When the session is gone.
    pub async fn cookies(&self) -> Result<Vec<Cookie>, HarnessError> {
        let cookies = self.client.get_all_cookies().await.map_err(self.failed("read cookies"))?;
        Ok(cookies
            .into_iter()
            .map(|c| Cookie {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                path: c.path().map(str::to_owned),
                domain: c.domain().map(str::to_owned),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect())
    }

    /// Sets a cookie for the current page's site (WebDriver requires a page of that site to
    /// be loaded first).
    ///
    /// # Errors
    /// When Chromium refuses it, such as `SameSite=None` without `Secure`.
    pub async fn add_cookie(&self, cookie: &Cookie) -> Result<(), HarnessError> {
        let same_site = match cookie.same_site.as_deref() {
            None => "Lax",
            Some(s) if s.eq_ignore_ascii_case("strict") => "Strict",
            Some(s) if s.eq_ignore_ascii_case("lax") => "Lax",
            Some(s) if s.eq_ignore_ascii_case("none") => "None",
            Some(other) => {
                return Err(HarnessError::Other(format!(
                    "cookie {}: SameSite {other:?} is not Strict, Lax or None",
                    cookie.name
                )));
            }
        };
        let mut fields = serde_json::Map::new();
        fields.insert("name".into(), json!(cookie.name));
        fields.insert("value".into(), json!(cookie.value));
        if let Some(path) = &cookie.path {
            fields.insert("path".into(), json!(path));
        }
        if let Some(domain) = &cookie.domain {
            fields.insert("domain".into(), json!(domain));
        }
        fields.insert("secure".into(), json!(cookie.secure));
        fields.insert("httpOnly".into(), json!(cookie.http_only));
        fields.insert("sameSite".into(), json!(same_site));
        let body = json!({ "cookie": fields }).to_string();
        self.client
            .issue_cmd(AddCookie(body))
            .await
            .map(drop)
            .map_err(self.failed(&format!("add cookie {}", cookie.name)))
    }

    /// Deletes the named cookie for the current page's site.
    ///
    /// # Errors
    /// When the session is gone.
    pub async fn delete_cookie(&self, name: &str) -> Result<(), HarnessError> {
        self.client.delete_cookie(name).await.map_err(self.failed(&format!("delete cookie {name}")))
    }

    /// Runs axe-core on the current page and returns every violation (all impacts).
    ///
    /// # Errors
    /// When axe cannot be injected or fails.
    pub async fn axe(&self) -> Result<Vec<Violation>, HarnessError> {
        let loaded = self
            .execute(
                "return typeof window.axe === 'object' && typeof window.axe.run === 'function';",
                vec![],
            )
            .await?;
        if loaded != Value::Bool(true) {
            // The script is axe.min.js followed by a check that it registered itself.
            let inject = format!("{}\n;return typeof window.axe;", self.axe_source);
            let kind = self.execute(&inject, vec![]).await?;
            if kind != json!("object") {
                return Err(HarnessError::Browser(format!(
                    "axe-core did not load on {} (window.axe is {kind})",
                    self.page().await
                )));
            }
        }
        let reply = self
            .client
            .execute_async(AXE_RUN, vec![])
            .await
            .map_err(self.failed("run axe-core"))?;
        if let Some(error) = reply.get("error") {
            return Err(HarnessError::Browser(format!(
                "axe-core failed on {}: {error}",
                self.page().await
            )));
        }
        let list = reply.get("violations").and_then(Value::as_array).ok_or_else(|| {
            HarnessError::Browser(format!("axe-core returned no violations list: {reply}"))
        })?;
        Ok(list.iter().map(violation).collect())
    }

    /// Runs [`Browser::axe`] and fails when any violation is serious or critical, listing
    /// every one with its targets; `page_name` names the page in the message.
    ///
    /// # Errors
    /// [`HarnessError::Inaccessible`], or axe failing to run.
    pub async fn assert_accessible(&self, page_name: &str) -> Result<(), HarnessError> {
        let bad: Vec<Violation> = self
            .axe()
            .await?
            .into_iter()
            .filter(|v| v.impact.is_some_and(|i| i >= Impact::Serious))
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        let report = bad.iter().map(|v| format!("  {v}")).collect::<Vec<_>>().join("\n");
        Err(HarnessError::Inaccessible {
            page: format!("{page_name} ({})", self.page().await),
            count: bad.len(),
            report,
        })
    }

    /// The page as error messages name it: its URL and title.
    async fn page(&self) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(URL unknown: {e})"),
        };
        let title = self.client.title().await.unwrap_or_default();
        format!("{url} (title {title:?})")
    }

    fn failed(&self, action: &str) -> impl FnOnce(CmdError) -> HarnessError + use<> {
        let action = action.to_owned();
        move |e| HarnessError::Browser(format!("{action}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit Chromium and wait for it. A failure here
        // (chromedriver hung or gone) is covered by the kills that follow.
        let path = format!("/session/{}", self.session);
        let _ended = driver_request(self.port, "DELETE", &path);
        self.driver.kill();
        kill_chromium(&self.user_data_dir);
        // `_profile` is removed after this, when the fields drop.
    }
}

/// WebDriver's Add Cookie with absent fields left out. fantoccini's own `add_cookie` (through
/// the `webdriver` crate) sends `"domain": null`, which chromedriver 156 rejects as an invalid
/// domain; leaving it out makes a host-only cookie, as a server's `Set-Cookie` would.
#[derive(Debug)]
struct AddCookie(String);

impl fantoccini::wd::WebDriverCompatibleCommand for AddCookie {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/cookie", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (hyper::Method, Option<String>) {
        (hyper::Method::POST, Some(self.0.clone()))
    }
}

/// Collects axe-core's violations in a plain JSON shape, through execute-async's callback.
const AXE_RUN: &str = r"
const done = arguments[arguments.length - 1];
window.axe
  .run(document, { resultTypes: ['violations'] })
  .then((results) => done({
    violations: results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      targets: v.nodes.map((n) => n.target.flat(Infinity).join(' >>> ')),
    })),
  }))
  .catch((e) => done({ error: String((e && e.stack) || e) }));
";

fn violation(v: &Value) -> Violation {
    let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    Violation {
        id: text("id"),
        impact: v.get("impact").and_then(Value::as_str).and_then(Impact::parse),
        help: text("help"),
        help_url: text("helpUrl"),
        targets: v
            .get("targets")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

/// Waits for chromedriver to print its port and then to report itself ready on `/status`.
fn wait_until_ready(mut driver: Process) -> Result<(Process, u16), HarnessError> {
    const STARTED: &str = "ChromeDriver was started successfully on port ";
    let line = driver.wait_line("its port", START_TIMEOUT, |l| l.contains(STARTED))?;
    let port: u16 = line
        .split_once(STARTED)
        .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse().ok())
        .ok_or_else(|| HarnessError::Other(format!("chromedriver printed no port: {line}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let tries = START_TIMEOUT.as_millis().div_ceil(POLL_INTERVAL.as_millis());
    let mut last = String::new();
    for _ in 0..tries {
        match driver_request(port, "GET", "/status") {
            Ok((200, body)) => {
                let ready = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.pointer("/value/ready").and_then(Value::as_bool));
                if ready == Some(true) {
                    return Ok((driver, port));
                }
                last = body;
            }
            Ok((status, body)) => last = format!("HTTP {status}: {body}"),
            Err(e) => last = e.to_string(),
        }
        if driver.try_wait().is_some() || Instant::now() >= deadline {
            break;
        }
        // chromedriver has no readiness event beyond /status: polling is the event source.
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(start_failed(driver, &format!("chromedriver to be ready on /status (last: {last})")))
}

fn start_failed(mut driver: Process, what: &str) -> HarnessError {
    HarnessError::Other(format!(
        "starting the browser: no {what}; chromedriver printed:\n{}",
        driver.output().join("\n")
    ))
}

/// One HTTP/1.1 request to chromedriver on loopback, blocking, with timeouts; returns the
/// status and body. Used where no async runtime can be assumed (drop) or needed (`/status`).
fn driver_request(port: u16, method: &str, path: &str) -> Result<(u16, String), std::io::Error> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, DRIVER_REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(DRIVER_REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(DRIVER_REQUEST_TIMEOUT))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // chromedriver answers `Connection: close` but keeps the socket open: read the head, then
    // exactly Content-Length bytes.
    let mut reader = BufReader::new(stream.take(DRIVER_REPLY_MAX_BYTES));
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {status_line:?}")))?;
    let mut length = 0_u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut body = Vec::new();
    reader.take(length).read_to_end(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// SIGKILLs every process whose command line names `user_data_dir`: the Chromium of one
/// browser, which no other process names, since the folder is a fresh temporary one.
/// Normally there is none left; renderers and zygotes exit with the main process.
fn kill_chromium(user_data_dir: &Path) {
    const PROC_ENTRIES_MAX: usize = 1_000_000;
    let needle = format!("--user-data-dir={}", user_data_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten().take(PROC_ENTRIES_MAX) {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Arguments are NUL-separated; a process that exits meanwhile reads as empty.
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == needle.as_bytes()) {
            crate::signal(pid, "KILL");
        }
    }
}

/// The cargo target folder this test binary was built in (`target/<profile>/deps/<exe>`).
fn target_dir() -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(|e| HarnessError::Other(e.to_string()))?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| HarnessError::Other(format!("no target folder above {}", exe.display())))
}

/// `s` escaped for a double-quoted CSS string.
fn css_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
