//! `aiscout-collector mdm-package`: the payloads IT deploys to agents, filled in for this
//! collector, with a README of the exact MDM steps.
//!
//! What is filled in, and from where:
//! - the collector URL: `--collector-url`, else `https://HOSTNAME:PORT` from the listen port
//!   (said so);
//! - the enroll secret: `--enroll-secret-file`, else the collector's own setting;
//! - the certificate pin: the SHA-256 of the DER certificate agents will see, read from
//!   `DATA_DIR/cert.pem` (the self-signed one `serve` generates) or the configured
//!   `tls_cert`; `--no-pin` leaves agents on the system roots;
//! - the catalog public key: `--catalog-key`, else `DATA_DIR/catalog.pub`;
//! - the organisation-overlay public key (issue 17): `--overlay-key`, else the one of
//!   `DATA_DIR/overlay.key` (made there when missing, as `serve` would).
//!
//! Every missing or bad input is reported at once, each saying which file or flag and how to
//! fix it. The templates that do not depend on the collector (launchd plist, PowerShell
//! scripts) are the files under `installer/`, compiled in, so the generator and the packages
//! cannot drift apart. Property lists are written with the `plist` crate (never by string
//! pasting), with fresh payload UUIDs on every run.
//!
//! Output files holding the enroll secret are mode 0600 in a 0700 folder.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use aiscout_wire::Secret;
use plist::{Dictionary, Value};
use ring::rand::SecureRandom as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::config::{Config, Tls, read_capped};

mod linux;
mod macos;
mod windows;

pub use linux::linux_agent_toml;
use linux::write_linux;
pub use macos::mobileconfig;
use macos::write_macos;
use windows::{policies_readme, write_windows};
pub use windows::{registry_file, windows_settings};

/// The agent's preference domain on macOS: managed settings land in
/// `/Library/Managed Preferences/com.aiscout.agent.plist`.
pub const MANAGED_DOMAIN: &str = "com.aiscout.agent";
/// The profile's identifier; stable, so deploying a new profile replaces the old one.
pub const PROFILE_IDENTIFIER: &str = "com.aiscout.agent.profile";
/// The owner-email variable Jamf Pro and Kandji substitute in profiles.
pub const DEFAULT_EMAIL_PLACEHOLDER: &str = "$EMAIL";

/// Managed-settings keys the macOS agent reads from its preference domain. The values are
/// inline (an MDM delivers values, not files): `enroll_secret` and `catalog_key` stand for the
/// config file's `enroll_secret_file` and `catalog_key_file`.
pub const MANAGED_KEYS: &[&str] =
    &["collector_url", "enroll_secret", "pin_sha256", "catalog_key", "overlay_key", "owner_email"];

const LAUNCHD_PLIST: &str = include_str!("../../../installer/macos/com.aiscout.agent.plist");
/// The READMEs of the three packages: Markdown files with `{name}` placeholders ([`fill`]).
const LINUX_README: &str = include_str!("templates/linux-README.md");
const MACOS_README: &str = include_str!("templates/macos-README.md");
const WINDOWS_README: &str = include_str!("templates/windows-README.md");
const INSTALL_PS1: &str = include_str!("../../../installer/windows/install.ps1");
const UNINSTALL_PS1: &str = include_str!("../../../installer/windows/uninstall.ps1");
const DETECT_PS1: &str = include_str!("../../../installer/windows/detect.ps1");

/// The operating system a package is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// `.deb`/`.rpm` configuration, an Ansible playbook.
    Linux,
    /// Configuration profile (Jamf, Kandji, Intune) and the launchd daemon.
    Macos,
    /// Intune Win32 app scripts and settings.
    Windows,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Platform::Linux => "linux",
            Platform::Macos => "macos",
            Platform::Windows => "windows",
        })
    }
}

/// The `mdm-package` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// linux, macos or windows.
    #[arg(long, value_enum)]
    pub platform: Platform,
    /// Folder to write into (created with mode 0700; files already there are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// The https:// URL agents reach this collector at [default: https://HOSTNAME:PORT].
    #[arg(long)]
    pub collector_url: Option<String>,
    /// The collector's data dir, whose cert.pem agents pin [default: the collector's].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// File holding the enroll secret [default: the collector's enroll secret setting].
    #[arg(long)]
    pub enroll_secret_file: Option<PathBuf>,
    /// The catalog public key file (64 hex digits) [default: DATA_DIR/catalog.pub].
    #[arg(long)]
    pub catalog_key: Option<PathBuf>,
    /// The organisation-overlay public key file (64 hex digits) [default: the public key of
    /// DATA_DIR/overlay.key, which is created there when missing].
    #[arg(long)]
    pub overlay_key: Option<PathBuf>,
    /// The variable the MDM replaces with the owner's email in the macOS profile: $EMAIL for
    /// Jamf Pro and Kandji, {{mail}} for Intune; an empty value leaves owner_email out.
    #[arg(long, default_value = DEFAULT_EMAIL_PLACEHOLDER)]
    pub email_placeholder: String,
    /// Do not pin the certificate: agents trust the system roots (a publicly trusted
    /// certificate, or a TLS proxy in front of a --plain-http collector).
    #[arg(long)]
    pub no_pin: bool,
    /// Leave out the browser and IDE policies of the current review decisions (Chrome, Edge,
    /// Firefox and VS Code blocklists, read from the collector's database as `policy export`
    /// does; without a database they are left out anyway).
    #[arg(long)]
    pub no_policies: bool,
}

/// Why no package was written.
#[derive(Debug, thiserror::Error)]
pub enum MdmError {
    /// Inputs are missing or wrong; every one is listed.
    #[error("cannot write the package, {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Inputs(Vec<String>),
    // The wrapped errors are in the message, not returned from `source()` (issue 18: each
    // cause once).
    /// A file or folder could not be written.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A property list could not be serialised.
    #[error("{path}: {error}")]
    Plist {
        /// The file.
        path: String,
        /// Why.
        error: plist::Error,
    },
    /// The system random generator failed (no UUIDs can be made).
    #[error("the system random number generator failed")]
    Random,
}

impl MdmError {
    /// Whether the operator must change the command (exit 2) rather than the machine (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, MdmError::Inputs(_))
    }
}

/// The values filled into the payloads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `https://host[:port]`, without a trailing slash.
    pub collector_url: String,
    /// The enroll secret.
    pub enroll_secret: Secret,
    /// SHA-256 (lowercase hex) of the collector certificate, or `None` for the system roots.
    pub pin_sha256: Option<String>,
    /// The catalog public key, 64 lowercase hex digits.
    pub catalog_key: String,
    /// The organisation-overlay public key agents pin, 64 lowercase hex digits; `None` when
    /// the collector's data folder does not exist yet (agents then get no overlay).
    pub overlay_key: Option<String>,
    /// The MDM variable for the owner's email (macOS), if any.
    pub email_placeholder: Option<String>,
    /// Things the operator should know (a derived URL, a pinned operator certificate).
    pub notes: Vec<String>,
    /// The browser and IDE policies of the current review decisions, when included.
    pub policies: Option<crate::policy::BrowserPolicies>,
}

/// Resolves the settings from the flags and the collector's configuration.
///
/// # Errors
/// [`MdmError::Inputs`] listing every missing or bad input.
pub fn resolve(args: &Args, config: &Config) -> Result<Settings, MdmError> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let data_dir = args.data_dir.clone().unwrap_or_else(|| config.data_dir.clone());

    let collector_url = match &args.collector_url {
        Some(url) => check_url(url, &mut problems),
        None => match hostname() {
            Some(host) => {
                let url = format!("https://{host}:{}", config.listen.port());
                notes.push(format!(
                    "collector URL {url} was derived from this host's name and the listen port; \
                     pass --collector-url if agents reach the collector by another name"
                ));
                url
            }
            None => {
                problems.push(
                    "no collector URL: pass --collector-url https://HOST:PORT (this host's name \
                     could not be read from /etc/hostname)"
                        .to_owned(),
                );
                String::new()
            }
        },
    };

    let enroll_secret = match (&args.enroll_secret_file, &config.enroll_secret) {
        (Some(path), _) => secret_file(path, &mut problems),
        (None, Some(secret)) => Some(secret.clone()),
        (None, None) => {
            problems.push(
                "no enroll secret: pass --enroll-secret-file FILE (the file the collector's \
                 `serve --enroll-secret-file` reads), or set AISCOUT_ENROLL_SECRET or \
                 AISCOUT_ENROLL_SECRET_FILE as for `serve`"
                    .to_owned(),
            );
            None
        }
    };
    if let Some(secret) = &enroll_secret
        && secret.expose().len() < crate::config::MIN_ENROLL_SECRET_BYTES
    {
        problems.push(format!(
            "the enroll secret is {} bytes; the collector refuses one shorter than {} \
             (make one with `openssl rand -base64 32`)",
            secret.expose().len(),
            crate::config::MIN_ENROLL_SECRET_BYTES
        ));
    }

    let pin_sha256 = if args.no_pin {
        None
    } else {
        match (&config.tls, args.data_dir.is_some()) {
            (Tls::Files { cert, .. }, false) => {
                let pin = pin_of(cert, &mut problems);
                if pin.is_some() {
                    notes.push(format!(
                        "pinned the certificate in {}: when it is renewed, run mdm-package again \
                         and redeploy, or use --no-pin if it is publicly trusted",
                        cert.display()
                    ));
                }
                pin
            }
            (Tls::Off, false) => {
                problems.push(
                    "the collector serves plain HTTP (plain_http), so it has no certificate to \
                     pin: pass --no-pin when the TLS proxy in front of it has a publicly trusted \
                     certificate, or --data-dir with the folder holding the cert.pem to pin"
                        .to_owned(),
                );
                None
            }
            _ => pin_of(&data_dir.join("cert.pem"), &mut problems),
        }
    };

    let catalog_key = match &args.catalog_key {
        Some(path) => catalog_key(path, &mut problems),
        None => {
            let default = data_dir.join("catalog.pub");
            if default.is_file() {
                catalog_key(&default, &mut problems)
            } else {
                problems.push(format!(
                    "no catalog public key: pass --catalog-key FILE, the PREFIX.pub that \
                     `aiscout-catalog keygen --out PREFIX` wrote for the key that signs the \
                     catalog given to `serve --catalog` (also looked for {})",
                    default.display()
                ));
                None
            }
        }
    };

    let overlay_key = match &args.overlay_key {
        Some(path) => public_key_file(path, "overlay", &mut problems),
        None if !data_dir.is_dir() => {
            notes.push(format!(
                "no overlay key: {} does not exist, so agents get no organisation overlay; run \
                 mdm-package again after `serve` has started, or pass --overlay-key FILE",
                data_dir.display()
            ));
            None
        }
        None => match crate::api::overlay::load_or_generate_key(&data_dir) {
            Ok((_, public)) => Some(public),
            Err(e) => {
                problems.push(format!(
                    "overlay_key: {e} (pass --overlay-key FILE with the public key `aiscout-collector \
                     overlay show` prints, or fix the collector's overlay.key)"
                ));
                None
            }
        },
    };

    let email = args.email_placeholder.trim();
    if email.chars().any(|c| c.is_control() || c == '<' || c == '>' || c == '&') {
        problems.push(format!("--email-placeholder {email:?} holds characters a profile cannot"));
    }
    if !problems.is_empty() {
        return Err(MdmError::Inputs(problems));
    }
    match (enroll_secret, catalog_key) {
        (Some(enroll_secret), Some(catalog_key)) => Ok(Settings {
            collector_url,
            enroll_secret,
            pin_sha256,
            catalog_key,
            overlay_key,
            email_placeholder: (!email.is_empty()).then(|| email.to_owned()),
            notes,
            policies: None,
        }),
        // Unreachable in practice: a missing value always pushed a problem above.
        _ => Err(MdmError::Inputs(vec!["internal: an input was missing".to_owned()])),
    }
}

fn check_url(url: &str, problems: &mut Vec<String>) -> String {
    let url = url.trim().trim_end_matches('/');
    let Some(rest) = url.strip_prefix("https://") else {
        problems.push(format!(
            "--collector-url {url:?} must start with https:// (agents refuse plain HTTP)"
        ));
        return String::new();
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    if host.is_empty() {
        problems.push(format!("--collector-url {url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || "\"'<>&\\`$".contains(c)) {
        problems.push(format!("--collector-url {url:?} holds characters a URL cannot"));
    }
    url.to_owned()
}

#[allow(clippy::disallowed_methods)] // Reason: /etc/hostname, a small system file.
fn hostname() -> Option<String> {
    let host = std::fs::read_to_string("/etc/hostname").ok()?;
    let host = host.trim();
    let valid =
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| host.to_owned())
}

fn secret_file(path: &Path, problems: &mut Vec<String>) -> Option<Secret> {
    match read_capped(path).map(String::from_utf8) {
        Ok(Ok(s)) if !s.trim().is_empty() => Some(Secret::new(s.trim())),
        Ok(Ok(_)) => {
            problems.push(format!("{}: the enroll secret file is empty", path.display()));
            None
        }
        Ok(Err(_)) => {
            problems.push(format!("{}: the enroll secret is not UTF-8", path.display()));
            None
        }
        Err(e) => {
            problems.push(format!("{}: cannot read the enroll secret: {e}", path.display()));
            None
        }
    }
}

fn pin_of(cert: &Path, problems: &mut Vec<String>) -> Option<String> {
    if !cert.exists() {
        let dir = cert.parent().map_or_else(|| ".".to_owned(), |d| d.display().to_string());
        problems.push(format!(
            "{} does not exist: the collector writes its self-signed certificate there when it \
             first starts (`aiscout-collector --data-dir {dir} serve`); start it once, or pass \
             --data-dir with the folder that holds cert.pem, or --no-pin if agents trust the \
             collector through the system roots",
            cert.display()
        ));
        return None;
    }
    let pem = match read_capped(cert) {
        Ok(pem) => pem,
        Err(e) => {
            problems.push(format!("{}: cannot read the certificate: {e}", cert.display()));
            return None;
        }
    };
    match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(der)) => Some(crate::api::tls::fingerprint(&der)),
        Some(Err(e)) => {
            problems.push(format!("{}: not a PEM certificate ({e})", cert.display()));
            None
        }
        None => {
            problems.push(format!("{}: holds no PEM certificate", cert.display()));
            None
        }
    }
}

fn catalog_key(path: &Path, problems: &mut Vec<String>) -> Option<String> {
    public_key_file(path, "catalog", problems)
}

/// A public key file (64 hex digits); `what` is `catalog` or `overlay`.
fn public_key_file(path: &Path, what: &str, problems: &mut Vec<String>) -> Option<String> {
    let text = match read_capped(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            problems.push(format!("{}: the {what} public key is not text", path.display()));
            return None;
        }
        Err(e) => {
            problems.push(format!("{}: cannot read the {what} public key: {e}", path.display()));
            return None;
        }
    };
    match aiscout_signatures::Verifier::from_hex(text.trim()) {
        Ok(v) => Some(aiscout_signatures::hex::encode(v.public_key())),
        Err(e) => {
            problems.push(format!("{}: {what} key: {e}", path.display()));
            None
        }
    }
}

/// Resolves the settings and writes the package; returns the lines to show the operator.
///
/// # Errors
/// Bad inputs (all listed), or a file that could not be written.
pub fn run(args: &Args, config: &Config) -> Result<Vec<String>, MdmError> {
    run_with(args, config, None)
}

/// [`run`] with the browser and IDE policies of the current review decisions
/// ([`crate::policy::browser_policies`]) in the profiles and policy files it writes.
///
/// # Errors
/// Bad inputs (all listed), or a file that could not be written.
pub fn run_with(
    args: &Args,
    config: &Config,
    policies: Option<crate::policy::BrowserPolicies>,
) -> Result<Vec<String>, MdmError> {
    let mut settings = resolve(args, config)?;
    settings.policies = if args.no_policies { None } else { policies };
    let files = write(args.platform, &settings, &args.out)?;
    let mut lines = settings.notes.iter().map(|n| format!("note: {n}")).collect::<Vec<_>>();
    lines.push(format!("wrote the {} package for {}:", args.platform, settings.collector_url));
    lines.extend(files.iter().map(|f| format!("  {}", f.display())));
    lines.push(format!("next: follow {}", args.out.join("README.md").display()));
    Ok(lines)
}

/// Writes the package for `platform` into `out`; returns the files written.
///
/// # Errors
/// A file or folder could not be written, or no randomness for UUIDs.
pub fn write(platform: Platform, s: &Settings, out: &Path) -> Result<Vec<PathBuf>, MdmError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(out).map_err(io(out))?;
    let mut w = Writer { out, written: Vec::new() };
    match platform {
        Platform::Linux => write_linux(&mut w, s)?,
        Platform::Macos => write_macos(&mut w, s)?,
        Platform::Windows => write_windows(&mut w, s)?,
    }
    Ok(w.written)
}

struct Writer<'a> {
    out: &'a Path,
    written: Vec<PathBuf>,
}

impl Writer<'_> {
    fn file(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<(), MdmError> {
        let path = self.out.join(name);
        let mut f = create(&path, mode)?;
        f.write_all(bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        self.written.push(path);
        Ok(())
    }

    fn plist(&mut self, name: &str, mode: u32, value: &Value) -> Result<(), MdmError> {
        let path = self.out.join(name);
        let mut f = create(&path, mode)?;
        value
            .to_writer_xml(&mut f)
            .map_err(|error| MdmError::Plist { path: path.display().to_string(), error })?;
        f.write_all(b"\n").map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        self.written.push(path);
        Ok(())
    }
}

/// Opens for writing with `mode`, also when the file exists with a wider mode.
fn create(path: &Path, mode: u32) -> Result<std::fs::File, MdmError> {
    use std::os::unix::fs::PermissionsExt as _;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    Ok(f)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MdmError + '_ {
    move |error| MdmError::Io { path: path.display().to_string(), error }
}

/// A TOML basic string (quotes, backslashes and control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A PowerShell single-quoted string.
fn ps_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Pretty JSON with a final newline (serialising a `Value` cannot fail; `null` otherwise).
fn pretty_json(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    text.push('\n');
    text
}

/// A JSON value as a property list value (numbers that are not integers become strings).
fn plist_of(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::String(String::new()),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => {
            n.as_i64().map_or_else(|| Value::String(n.to_string()), |i| Value::Integer(i.into()))
        }
        J::String(s) => Value::String(s.clone()),
        J::Array(items) => Value::Array(items.iter().map(plist_of).collect()),
        J::Object(map) => {
            let mut d = Dictionary::new();
            for (k, v) in map {
                d.insert(k.clone(), plist_of(v));
            }
            Value::Dictionary(d)
        }
    }
}

fn pin_line(s: &Settings) -> String {
    match &s.pin_sha256 {
        Some(pin) => format!("pin_sha256 = {}\n", toml_string(pin)),
        None => "# No pin: the collector is trusted through the system's root store.\n".to_owned(),
    }
}

fn pin_text(s: &Settings) -> String {
    s.pin_sha256.as_ref().map_or_else(
        || "none (agents trust the collector through the system's root store)".to_owned(),
        |p| format!("`{p}` (SHA-256 of the collector certificate)"),
    )
}

/// `template` with each `{name}` of `values` replaced by its value. Only the names given are
/// replaced, so other braces (`{{mail}}`, an MDM variable the text quotes) stay as written; a
/// test renders every template and finds no placeholder left.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::linux::linux_readme;
    use super::macos::{macos_readme, uuid_v4};
    use super::windows::windows_readme;
    use super::*;

    /// `{name}` placeholders left in `text` (not `{{name}}`, which the text quotes).
    fn placeholders(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        let bytes = text.as_bytes();
        for (i, _) in text.match_indices('{') {
            let rest = text.get(i + 1..).unwrap_or_default();
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            let doubled = i > 0 && bytes[i - 1] == b'{';
            let closed = rest.get(name.len()..).is_some_and(|r| r.starts_with('}'));
            if !name.is_empty() && closed && !doubled {
                found.push(name);
            }
        }
        found
    }

    #[test]
    fn every_template_placeholder_is_filled() {
        let s = Settings {
            collector_url: "https://collector.example.com:8443".into(),
            enroll_secret: Secret::new("s"),
            pin_sha256: Some("ab".repeat(32)),
            catalog_key: "5a".repeat(32),
            overlay_key: Some("6b".repeat(32)),
            email_placeholder: Some("$EMAIL".into()),
            notes: Vec::new(),
            policies: None,
        };
        for (name, template, text) in [
            ("linux", LINUX_README, linux_readme(&s)),
            ("macos", MACOS_README, macos_readme(&s)),
            ("windows", WINDOWS_README, windows_readme(&s)),
        ] {
            assert!(!placeholders(template).is_empty(), "{name}: the test must see placeholders");
            assert_eq!(placeholders(&text), Vec::<String>::new(), "{name}: unfilled");
            assert!(text.contains("https://collector.example.com:8443"), "{name}");
        }
        assert!(macos_readme(&s).contains("`{{mail}}`"), "the Intune variable is quoted as is");
    }

    #[test]
    fn uuids_are_version_4_and_differ() {
        let rng = ring::rand::SystemRandom::new();
        let a = uuid_v4(&rng).unwrap();
        let b = uuid_v4(&rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.chars().nth(14), Some('4'));
        assert!(matches!(a.chars().nth(19), Some('8' | '9' | 'A' | 'B')), "{a}");
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn powershell_strings_double_single_quotes() {
        assert_eq!(ps_string("it's"), "'it''s'");
    }

    #[test]
    fn urls_must_be_https_with_a_host() {
        let mut problems = Vec::new();
        assert_eq!(check_url("https://c.example:8443/", &mut problems), "https://c.example:8443");
        assert!(problems.is_empty());
        check_url("http://c.example", &mut problems);
        check_url("https://", &mut problems);
        check_url("https://a b", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
