//! The end-to-end harness: find (or build) the real binaries, start a collector and agents as
//! child processes on loopback, talk to the collector's API, and clean every process up in
//! `Drop`.
//!
//! Module map: this file (binaries, processes, the collector's API) and [`browser`] (headless
//! Chromium over WebDriver for the console's tests, with axe-core accessibility checks). Every
//! wait is on an event (a line printed, a row counted) with a deadline that fails with a message;
//! nothing sleeps to synchronise.
#![allow(clippy::disallowed_methods)] // Reason: test code opens and reads its own fixtures and databases.

pub mod browser;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Why the harness could not do what a test asked.
///
/// `Debug` prints the same text as `Display`, so that a test's `.unwrap()` shows multi-line
/// messages (process output, accessibility reports) as lines rather than one escaped string.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A WebDriver command failed; the text names the command and, where it helps, the page.
    #[error("browser: {0}")]
    Browser(String),
    /// A binary is missing and could not be built.
    #[error("cannot build {0}: {1}")]
    Build(String, String),
    /// axe-core found serious or critical accessibility violations on a page.
    #[error("{page}: {count} serious or critical accessibility violation(s):\n{report}")]
    Inaccessible {
        /// The page, as the test named it.
        page: String,
        /// How many violations.
        count: usize,
        /// One line per violation, with its targets.
        report: String,
    },
    /// Something the tests need is not installed; the text says what to install.
    #[error("{0}")]
    Missing(String),
    /// A process could not be started.
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    /// A deadline passed.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// A process closed its output (it exited, or is exiting) before printing what a test
    /// waited for.
    #[error(
        "{name} ended after {after:?} ({status}) before printing {what}; it printed:\n{output}"
    )]
    Ended {
        /// The process, as the test named it.
        name: String,
        /// What the test waited for.
        what: String,
        /// Time from the start of the wait.
        after: Duration,
        /// Its exit status, or a note that it had not been reaped yet.
        status: String,
        /// Every line it printed.
        output: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The path of a workspace binary, after `cargo build` has brought it up to date (once per test
/// process): `cargo test -p aiscout-e2e` builds this package's dependencies as libraries only,
/// so without this a test could run a stale binary.
///
/// # Errors
/// When cargo cannot build it.
pub fn binary(package: &str, name: &str) -> Result<PathBuf, HarnessError> {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().map_err(|e| HarnessError::Other(e.to_string()))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| HarnessError::Other("cannot find the target folder".into()))?;
    let path = profile_dir.join(name);
    let mut built = BUILT.lock().map_err(|_| HarnessError::Other("build lock poisoned".into()))?;
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", package, "--bin", name]).current_dir(workspace_root());
        if package == "aiscout-signatures" {
            cmd.args(["--features", "sign"]);
        }
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().map_err(|e| HarnessError::Build(name.into(), e.to_string()))?;
        if !out.status.success() {
            return Err(HarnessError::Build(
                name.into(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        built.push(name.to_owned());
    }
    if !path.is_file() {
        return Err(HarnessError::Build(
            name.into(),
            format!("{} is missing after the build", path.display()),
        ));
    }
    Ok(path)
}

/// A child process killed (SIGKILL) on drop, whose output lines are collected.
pub struct Process {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    /// Starts `program` with `args` and `envs`, collecting stdout and stderr lines.
    ///
    /// # Errors
    /// When the program cannot start.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::spawn(name, cmd)
    }

    /// Starts a prepared command (for settings [`Process::start`] does not offer, such as a
    /// process group), collecting stdout and stderr lines; stdin is closed.
    ///
    /// # Errors
    /// When the program cannot start.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self, HarnessError> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| HarnessError::Spawn(name.into(), e))?;
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self { name: name.into(), child, lines, seen: Vec::new() })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far.
    pub fn output(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// Waits until a printed line satisfies `pred`, and returns it.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`], with the output so far.
    pub fn wait_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, HarnessError> {
        if let Some(l) = self.output().iter().find(|l| pred(l)) {
            return Ok(l.clone());
        }
        let start = Instant::now();
        let deadline = start + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = pred(&l);
                    self.seen.push(l.clone());
                    if hit {
                        return Ok(l);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Both pipes closed: the process is gone or going; say how it ended.
                    let status = match self.wait_exit(Duration::from_secs(5)) {
                        Ok(status) => status.to_string(),
                        Err(_) => "still running with its output closed".to_owned(),
                    };
                    return Err(HarnessError::Ended {
                        name: self.name.clone(),
                        what: what.to_owned(),
                        after: start.elapsed(),
                        status,
                        output: self.seen.join("\n"),
                    });
                }
            }
        }
        Err(HarnessError::Timeout(
            timeout,
            format!("{} to print {what}; it printed:\n{}", self.name, self.seen.join("\n")),
        ))
    }

    /// Sends SIGTERM and waits for the exit status.
    ///
    /// # Errors
    /// When the process does not exit in time.
    pub fn terminate(
        &mut self,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus, HarnessError> {
        signal(self.child.id(), "TERM");
        self.wait_exit(timeout)
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        // Already gone is fine: the point is that it is not running.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }

    /// Waits for the process to exit.
    ///
    /// # Errors
    /// When it does not exit in time.
    pub fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) =
                self.child.try_wait().map_err(|e| HarnessError::Other(e.to_string()))?
            {
                self.output();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout(timeout, format!("{} to exit", self.name)));
            }
            // Polling a child's exit has no event to wait on without a signal handler.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal by name with `kill(1)` (the workspace forbids unsafe code, so no libc).
pub fn signal(pid: u32, name: &str) {
    let _sent = Command::new("kill").args([format!("-{name}"), pid.to_string()]).status();
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16, HarnessError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    let port = l.local_addr().map_err(|e| HarnessError::Other(e.to_string()))?.port();
    Ok(port)
}

/// A running collector on loopback with its own data folder (SQLite).
pub struct Collector {
    /// The process.
    pub process: Process,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    /// SHA-256 of its certificate, hex.
    pub pin: String,
    /// Its data folder.
    pub data_dir: PathBuf,
}

impl Collector {
    /// Starts `aiscout-collector serve` on `port` (0 for any) with `data_dir` and the enroll
    /// secret in `data_dir/enroll.secret`, plus `extra` arguments.
    ///
    /// # Errors
    /// When it does not print its certificate pin and `listening on` line in time.
    pub fn start(data_dir: &Path, port: u16, extra: &[String]) -> Result<Self, HarnessError> {
        let bin = binary("aiscout-collector", "aiscout-collector")?;
        std::fs::create_dir_all(data_dir).map_err(|e| HarnessError::Other(e.to_string()))?;
        let secret = data_dir.join("enroll.secret");
        if !secret.exists() {
            std::fs::write(&secret, "e2e-enroll-secret-0123456789abcdefghijkl\n")
                .map_err(|e| HarnessError::Other(e.to_string()))?;
        }
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--enroll-secret-file".to_owned(),
            secret.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        args.push("serve".into());
        let mut process = Process::start("collector", &bin, &args, &[])?;
        let listening = process.wait_line("`listening on`", Duration::from_secs(60), |l| {
            l.starts_with("listening on https://")
        })?;
        let url = listening.trim_start_matches("listening on ").trim().to_owned();
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let pin = match process.output().iter().find(|l| l.starts_with("certificate ")) {
            Some(line) => line.rsplit(' ').next().unwrap_or_default().to_owned(),
            None => pin_of(&data_dir.join("cert.pem"))?,
        };
        Ok(Self { process, url, port, pin, data_dir: data_dir.to_path_buf() })
    }

    /// Creates an API token with `role` through the CLI, on the same database.
    ///
    /// # Errors
    /// When the CLI fails.
    pub fn token(&self, role: &str, name: &str) -> Result<String, HarnessError> {
        let bin = binary("aiscout-collector", "aiscout-collector")?;
        let out = Command::new(bin)
            .args([
                "--data-dir",
                &self.data_dir.display().to_string(),
                "token",
                "create",
                "--role",
                role,
                "--name",
                name,
            ])
            .output()
            .map_err(|e| HarnessError::Other(e.to_string()))?;
        if !out.status.success() {
            return Err(HarnessError::Other(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The SHA-256 (hex) of the first certificate in a PEM file.
///
/// # Errors
/// When the file has no certificate.
pub fn pin_of(pem: &Path) -> Result<String, HarnessError> {
    let text = std::fs::read_to_string(pem)
        .map_err(|e| HarnessError::Other(format!("{}: {e}", pem.display())))?;
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64_decode(&b64).ok_or_else(|| HarnessError::Other("bad PEM".into()))?;
    Ok(aiscout_signatures::hex::encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref()))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Writes an agent config for `collector` under `dir` and returns its path. `extra` is
/// appended as TOML lines.
///
/// # Errors
/// When the files cannot be written.
pub fn agent_config(
    dir: &Path,
    url: &str,
    pin: &str,
    extra: &str,
) -> Result<PathBuf, HarnessError> {
    let io = |e: std::io::Error| HarnessError::Other(e.to_string());
    std::fs::create_dir_all(dir).map_err(io)?;
    let secret = dir.join("enroll.secret");
    std::fs::write(&secret, "e2e-enroll-secret-0123456789abcdefghijkl\n").map_err(io)?;
    let key = dir.join("catalog.pub");
    if !key.exists() {
        std::fs::write(&key, format!("{}\n", "00".repeat(32))).map_err(io)?;
    }
    let config = dir.join("agent.toml");
    let text = format!(
        "collector_url = {url:?}\npin_sha256 = {pin:?}\nenroll_secret_file = {:?}\ncatalog_key_file = {:?}\nstate_dir = {:?}\nupload_interval_secs = 1\nheartbeat_interval_secs = 10\n{extra}\n",
        secret.display().to_string(),
        key.display().to_string(),
        dir.join("state").display().to_string(),
    );
    std::fs::write(&config, text).map_err(io)?;
    Ok(config)
}

/// Starts `aiscout-agent run --config CONFIG` with `args`, logging at `log_level`.
///
/// # Errors
/// When the agent cannot start.
pub fn start_agent(config: &Path, args: &[&str], log_level: &str) -> Result<Process, HarnessError> {
    let bin = binary("aiscout-agent", "aiscout-agent")?;
    let mut all = vec!["run".to_owned(), "--config".to_owned(), config.display().to_string()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    Process::start("agent", &bin, &all, &[("AISCOUT_LOG", log_level)])
}

/// Calls the collector's API with a bearer token, trusting exactly its pinned certificate,
/// and returns the status and body.
///
/// # Errors
/// Transport failures.
pub fn api_get(
    url: &str,
    pin: &str,
    token: &str,
    path: &str,
) -> Result<serde_json::Value, HarnessError> {
    api_send(url, pin, hyper::Method::GET, path, Some(token), Vec::new())
}

/// Calls the collector's API with `method` and a JSON `body`, with a bearer credential (an API
/// token or a node key) when given, trusting exactly its pinned certificate, as the agent's
/// upload client does; returns the JSON answer.
///
/// # Errors
/// Transport failures and answers other than 2xx.
pub fn api_send(
    url: &str,
    pin: &str,
    method: hyper::Method,
    path: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
) -> Result<serde_json::Value, HarnessError> {
    let pin = aiscout_signatures::hex::decode(pin)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| HarnessError::Other("bad pin".into()))?;
    let tls =
        aiscout_agent::upload::tls::client_config(&aiscout_agent::config::TrustAnchor::Pin(pin))
            .map_err(|e| HarnessError::Other(e.to_string()))?;
    let client = aiscout_agent::upload::Client::new(url, tls)
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    let secret = bearer.map(aiscout_wire::Secret::new);
    let bytes = runtime
        .block_on(client.call(method, path, secret.as_ref(), body))
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| HarnessError::Other(e.to_string()))
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
///
/// # Errors
/// [`HarnessError::Timeout`].
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout(timeout, what.to_owned()));
        }
        // The collector offers no change notification: polling is the event source here.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sightings per product in the collector's inventory.
///
/// # Errors
/// API failures.
pub fn sightings_by_product(
    c: &Collector,
    token: &str,
) -> Result<Vec<(String, u64)>, HarnessError> {
    let v = api_get(&c.url, &c.pin, token, "/api/v1/inventory")?;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .filter_map(|r| Some((r["product"].as_str()?.to_owned(), r["sightings"].as_u64()?)))
        .collect())
}
