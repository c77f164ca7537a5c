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
//! - the catalog public key: `--catalog-key`, else `DATA_DIR/catalog.pub`.
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
    &["collector_url", "enroll_secret", "pin_sha256", "catalog_key", "owner_email"];

const LAUNCHD_PLIST: &str = include_str!("../../installer/macos/com.aiscout.agent.plist");
const INSTALL_PS1: &str = include_str!("../../installer/windows/install.ps1");
const UNINSTALL_PS1: &str = include_str!("../../installer/windows/uninstall.ps1");
const DETECT_PS1: &str = include_str!("../../installer/windows/detect.ps1");

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
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A property list could not be serialised.
    #[error("{path}: {source}")]
    Plist {
        /// The file.
        path: String,
        /// Why.
        source: plist::Error,
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
    let text = match read_capped(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            problems.push(format!("{}: the catalog public key is not text", path.display()));
            return None;
        }
        Err(e) => {
            problems.push(format!("{}: cannot read the catalog public key: {e}", path.display()));
            return None;
        }
    };
    match aiscout_signatures::Verifier::from_hex(text.trim()) {
        Ok(v) => Some(aiscout_signatures::hex::encode(v.public_key())),
        Err(e) => {
            problems.push(format!("{}: {e}", path.display()));
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
            .map_err(|source| MdmError::Plist { path: path.display().to_string(), source })?;
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
    move |source| MdmError::Io { path: path.display().to_string(), source }
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

// ---------------------------------------------------------------------------------------------
// Linux

/// The Linux agent config for this collector (paths as the .deb/.rpm lay them out).
pub fn linux_agent_toml(s: &Settings) -> String {
    format!(
        "# aiscout agent configuration for {url}\n\
         # Written by `aiscout-collector mdm-package --platform linux`.\n\
         # Install as /etc/aiscout/agent.toml (owner root, mode 0600).\n\
         \n\
         collector_url = {url_q}\n\
         enroll_secret_file = \"/etc/aiscout/enroll_secret\"\n\
         {pin}\
         catalog_key_file = \"/etc/aiscout/catalog.pub\"\n\
         interfaces = []\n\
         state_dir = \"/var/lib/aiscout\"\n",
        url = s.collector_url,
        url_q = toml_string(&s.collector_url),
        pin = pin_line(s),
    )
}

fn write_linux(w: &mut Writer<'_>, s: &Settings) -> Result<(), MdmError> {
    w.file("agent.toml", 0o600, linux_agent_toml(s).as_bytes())?;
    w.file("enroll_secret", 0o600, format!("{}\n", s.enroll_secret.expose()).as_bytes())?;
    w.file("catalog.pub", 0o644, format!("{}\n", s.catalog_key).as_bytes())?;
    w.file("aiscout-agent.yml", 0o644, ANSIBLE_PLAYBOOK.as_bytes())?;
    w.file("chrome-dns-policy.json", 0o644, b"{\n  \"DnsOverHttpsMode\": \"off\"\n}\n")?;
    let mut firefox = serde_json::json!({ "DNSOverHTTPS": { "Enabled": false, "Locked": true } });
    if let (Some(p), Some(map)) = (&s.policies, firefox.as_object_mut()) {
        w.file("chrome-aiscout-policy.json", 0o644, pretty_json(&p.chrome).as_bytes())?;
        w.file(
            "vscode-settings.json",
            0o644,
            pretty_json(&serde_json::json!({ "extensions.allowed": p.vscode_allowed })).as_bytes(),
        )?;
        if let Some(policies) = p.firefox.as_object() {
            map.extend(policies.clone());
        }
    }
    w.file(
        "firefox-policies.json",
        0o644,
        pretty_json(&serde_json::json!({ "policies": firefox })).as_bytes(),
    )?;
    let readme = linux_readme(s) + &policies_readme(s, Platform::Linux);
    w.file("README.md", 0o644, readme.as_bytes())
}

const ANSIBLE_PLAYBOOK: &str = r#"# Installs the aiscout agent with the configuration in this folder.
#   ansible-playbook -i INVENTORY aiscout-agent.yml -e aiscout_package=/path/to/package
# aiscout_package: a .deb or .rpm on the control machine; leave it empty to install
# aiscout-agent from the hosts' configured apt or dnf repositories.
- name: aiscout agent
  hosts: all
  become: true
  vars:
    aiscout_package: ""
  tasks:
    - name: Copy the package to the host
      ansible.builtin.copy:
        src: "{{ aiscout_package }}"
        dest: "/var/tmp/{{ aiscout_package | basename }}"
        mode: "0644"
      when: aiscout_package | length > 0

    - name: Install the .deb
      ansible.builtin.apt:
        deb: "/var/tmp/{{ aiscout_package | basename }}"
      when: aiscout_package is match('.*\.deb$')

    - name: Install the .rpm
      ansible.builtin.dnf:
        name: "/var/tmp/{{ aiscout_package | basename }}"
        disable_gpg_check: true
        state: present
      when: aiscout_package is match('.*\.rpm$')

    - name: Install from the repositories
      ansible.builtin.package:
        name: aiscout-agent
        state: present
      when: aiscout_package | length == 0

    - name: Configuration folder
      ansible.builtin.file:
        path: /etc/aiscout
        state: directory
        owner: root
        group: root
        mode: "0700"

    - name: Configuration, enroll secret and catalog key
      ansible.builtin.copy:
        src: "{{ item.name }}"
        dest: "/etc/aiscout/{{ item.name }}"
        owner: root
        group: root
        mode: "{{ item.mode }}"
      loop:
        - { name: agent.toml, mode: "0600" }
        - { name: enroll_secret, mode: "0600" }
        - { name: catalog.pub, mode: "0644" }
      notify: Restart aiscout-agent

    - name: Check the configuration
      ansible.builtin.command: /usr/bin/aiscout-agent check-config --config /etc/aiscout/agent.toml
      changed_when: false

    - name: Enable and start the service
      ansible.builtin.systemd_service:
        name: aiscout-agent.service
        enabled: true
        state: started

  handlers:
    - name: Restart aiscout-agent
      ansible.builtin.systemd_service:
        name: aiscout-agent.service
        state: restarted
"#;

fn linux_readme(s: &Settings) -> String {
    format!(
        r#"# aiscout agent for Linux: {url}

Written by `aiscout-collector mdm-package --platform linux`. Everything here is filled in for
this collector:

- collector URL: `{url}`
- certificate pin: {pin}
- catalog public key: `{key}`

| file | install as | owner, mode |
| --- | --- | --- |
| `agent.toml` | `/etc/aiscout/agent.toml` | root, 0600 |
| `enroll_secret` (**secret**) | `/etc/aiscout/enroll_secret` | root, 0600 |
| `catalog.pub` | `/etc/aiscout/catalog.pub` | root, 0644 |
| `aiscout-agent.yml` | an Ansible playbook doing all of the below | |
| `chrome-dns-policy.json` | `/etc/opt/chrome/policies/managed/aiscout-dns.json` (optional) | root, 0644 |
| `firefox-policies.json` | merge into `/etc/firefox/policies/policies.json` (optional) | root, 0644 |

Keep this folder private: `enroll_secret` lets any machine enroll as an agent of your
organisation.

## 1. The package

Build it from the source tree (or take it from your release pipeline):

    installer/linux/build-deb.sh    # -> target/installer/aiscout-agent_VERSION_ARCH.deb
    installer/linux/build-rpm.sh    # -> target/installer/ARCH/aiscout-agent-VERSION-1.ARCH.rpm

Debian and Ubuntu: `apt-get install ./aiscout-agent_VERSION_amd64.deb`, or publish it in your
internal apt repository and `apt-get install aiscout-agent`.
RHEL, Fedora, Rocky, Alma: `dnf install ./aiscout-agent-VERSION-1.x86_64.rpm`, or from your
internal dnf repository.

The package installs `/usr/bin/aiscout-agent`, an example `/etc/aiscout/agent.toml` and the
hardened unit `aiscout-agent.service`, and enables the unit. It starts the agent only once
`aiscout-agent check-config` passes, so install the files below and then start it.

## 2. The configuration, on one machine

    install -d -o root -g root -m 0700 /etc/aiscout
    install -o root -g root -m 0600 agent.toml enroll_secret /etc/aiscout/
    install -o root -g root -m 0644 catalog.pub /etc/aiscout/
    aiscout-agent check-config --config /etc/aiscout/agent.toml
    systemctl enable --now aiscout-agent
    systemctl restart aiscout-agent    # when it was already running

With dpkg, answer "keep your version" if an upgrade asks about `agent.toml` (it is a conffile);
upgrades never touch the enroll secret, the catalog key or `/var/lib/aiscout`.

## 3. On every machine

Ansible (copy this folder next to your inventory):

    ansible-playbook -i INVENTORY aiscout-agent.yml -e aiscout_package=/path/to/aiscout-agent_VERSION_amd64.deb

Leave out `-e aiscout_package=...` when the hosts install `aiscout-agent` from your own
repository. Puppet, Salt or Chef: the same three files with the same owners and modes, then
`systemctl restart aiscout-agent` when they change.

Owner email: Linux has no MDM variable for it. Set `owner_email` in `agent.toml`, or
`AISCOUT_OWNER_EMAIL=name@example.com` in `/etc/aiscout/agent.env` (read by the unit), per
machine, if your tool knows it.

## 4. Keep DNS visible (optional)

Browsers that send DNS over HTTPS hide the names the agent matches. `chrome-dns-policy.json`
sets Chrome's `DnsOverHttpsMode` to `off` (also for Chromium at
`/etc/chromium/policies/managed/`). `firefox-policies.json` turns off and locks Firefox's
DNS over HTTPS; merge it into an existing `/etc/firefox/policies/policies.json` rather than
replacing it.

## Check

    systemctl status aiscout-agent
    journalctl -u aiscout-agent
"#,
        url = s.collector_url,
        pin = pin_text(s),
        key = s.catalog_key,
    )
}

// ---------------------------------------------------------------------------------------------
// macOS

fn uuid_v4(rng: &ring::rand::SystemRandom) -> Result<String, MdmError> {
    let mut b = [0u8; 16];
    rng.fill(&mut b).map_err(|_| MdmError::Random)?;
    // RFC 9562 section 5.4: version 4, variant 0b10.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02X}"));
    }
    Ok(s)
}

fn payload(
    rng: &ring::rand::SystemRandom,
    kind: &str,
    suffix: &str,
    name: &str,
) -> Result<Dictionary, MdmError> {
    let mut d = Dictionary::new();
    d.insert("PayloadType".into(), Value::String(kind.into()));
    d.insert("PayloadIdentifier".into(), Value::String(format!("{PROFILE_IDENTIFIER}.{suffix}")));
    d.insert("PayloadUUID".into(), Value::String(uuid_v4(rng)?));
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadDisplayName".into(), Value::String(name.into()));
    d.insert("PayloadEnabled".into(), Value::Boolean(true));
    Ok(d)
}

/// The configuration profile: the agent's managed settings (preference domain
/// [`MANAGED_DOMAIN`]) and the Chrome, Edge and Firefox policies that keep DNS visible.
///
/// # Errors
/// No randomness for the UUIDs.
pub fn mobileconfig(s: &Settings) -> Result<Value, MdmError> {
    let rng = ring::rand::SystemRandom::new();

    let mut agent = payload(&rng, MANAGED_DOMAIN, "agent", "aiscout agent settings")?;
    let str_value = |v: &str| Value::String(v.to_owned());
    agent.insert("collector_url".into(), str_value(&s.collector_url));
    agent.insert("enroll_secret".into(), str_value(s.enroll_secret.expose()));
    if let Some(pin) = &s.pin_sha256 {
        agent.insert("pin_sha256".into(), str_value(pin));
    }
    agent.insert("catalog_key".into(), str_value(&s.catalog_key));
    if let Some(email) = &s.email_placeholder {
        agent.insert("owner_email".into(), str_value(email));
    }

    // Chrome and Edge: "off" sends no DNS over HTTPS (Chrome's DnsOverHttpsMode policy).
    let mut chrome =
        payload(&rng, "com.google.Chrome", "chrome", "Google Chrome: DNS over HTTPS off")?;
    chrome.insert("DnsOverHttpsMode".into(), str_value("off"));
    let mut edge =
        payload(&rng, "com.microsoft.Edge", "edge", "Microsoft Edge: DNS over HTTPS off")?;
    edge.insert("DnsOverHttpsMode".into(), str_value("off"));

    // Firefox reads policies from its domain only when EnterprisePoliciesEnabled is set.
    let mut firefox =
        payload(&rng, "org.mozilla.firefox", "firefox", "Firefox: DNS over HTTPS off")?;
    firefox.insert("EnterprisePoliciesEnabled".into(), Value::Boolean(true));
    let mut doh = Dictionary::new();
    doh.insert("Enabled".into(), Value::Boolean(false));
    doh.insert("Locked".into(), Value::Boolean(true));
    firefox.insert("DNSOverHTTPS".into(), Value::Dictionary(doh));

    let mut content = Vec::new();
    if let Some(p) = &s.policies {
        // The decisions' blocklists ride in the same browser payloads (one payload per
        // preference domain), and VS Code reads AllowedExtensions as a JSON string.
        for browser in [&mut chrome, &mut edge] {
            if let Some(map) = p.chrome.as_object() {
                for (k, v) in map {
                    browser.insert(k.clone(), plist_of(v));
                }
            }
        }
        if let Some(map) = p.firefox.as_object() {
            for (k, v) in map {
                firefox.insert(k.clone(), plist_of(v));
            }
        }
        let mut vscode = payload(
            &rng,
            "com.microsoft.VSCode",
            "vscode",
            "VS Code: extensions allowed by the AI tool reviews",
        )?;
        vscode.insert(
            "AllowedExtensions".into(),
            str_value(&serde_json::to_string(&p.vscode_allowed).unwrap_or_default()),
        );
        content.push(Value::Dictionary(vscode));
    }
    content.splice(
        0..0,
        [
            Value::Dictionary(agent),
            Value::Dictionary(chrome),
            Value::Dictionary(edge),
            Value::Dictionary(firefox),
        ],
    );
    let mut top = Dictionary::new();
    top.insert("PayloadContent".into(), Value::Array(content));
    top.insert(
        "PayloadDescription".into(),
        str_value(&format!(
            "Connects the aiscout agent to {} and keeps browser DNS visible to it.",
            s.collector_url
        )),
    );
    top.insert("PayloadDisplayName".into(), str_value("aiscout agent"));
    top.insert("PayloadIdentifier".into(), str_value(PROFILE_IDENTIFIER));
    top.insert("PayloadOrganization".into(), str_value("aiscout"));
    top.insert("PayloadRemovalDisallowed".into(), Value::Boolean(true));
    top.insert("PayloadScope".into(), str_value("System"));
    top.insert("PayloadType".into(), str_value("Configuration"));
    top.insert("PayloadUUID".into(), Value::String(uuid_v4(&rng)?));
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));
    Ok(Value::Dictionary(top))
}

fn write_macos(w: &mut Writer<'_>, s: &Settings) -> Result<(), MdmError> {
    w.plist("com.aiscout.agent.mobileconfig", 0o600, &mobileconfig(s)?)?;
    let launchd = Value::from_reader_xml(LAUNCHD_PLIST.as_bytes()).map_err(|source| {
        MdmError::Plist { path: "installer/macos/com.aiscout.agent.plist".into(), source }
    })?;
    w.plist("com.aiscout.agent.plist", 0o644, &launchd)?;
    let readme = macos_readme(s) + &policies_readme(s, Platform::Macos);
    w.file("README.md", 0o644, readme.as_bytes())
}

fn macos_readme(s: &Settings) -> String {
    let email = s.email_placeholder.as_deref().map_or_else(
        || "left out (`--email-placeholder ''`)".to_owned(),
        |e| format!("the MDM variable `{e}`"),
    );
    format!(
        r#"# aiscout agent for macOS: {url}

Written by `aiscout-collector mdm-package --platform macos`.

| file | what |
| --- | --- |
| `com.aiscout.agent.mobileconfig` (**holds the enroll secret**) | configuration profile: the agent's managed settings and the browser DNS policies |
| `com.aiscout.agent.plist` | the launchd daemon the package installs in `/Library/LaunchDaemons` (for reference) |

The profile sets, in preference domain `{domain}` (macOS writes it to
`/Library/Managed Preferences/{domain}.plist`, which the agent reads before its config file):

- `collector_url` = `{url}`
- `enroll_secret` = the collector's enroll secret
- `pin_sha256` = {pin}
- `catalog_key` = `{key}`
- `owner_email` = {email}

and keeps DNS visible to the agent: Chrome and Edge `DnsOverHttpsMode` = `off`, Firefox
`DNSOverHTTPS` `Enabled` = false, `Locked` = true. Remove those payloads from the profile if
you manage browser policies elsewhere.

Managed preferences are readable by every local user of the Mac, so the enroll secret is not
hidden from them (Fleet delivers its enroll secret the same way). The secret only lets a
machine enroll; rotate it on the collector if it leaks.

## 1. The package

On a Mac with the Xcode command line tools, from the source tree:

    INSTALLER_SIGN_ID="Developer ID Installer: ..." APP_SIGN_ID="Developer ID Application: ..." \
        installer/macos/build-pkg.sh
    xcrun notarytool submit target/installer/aiscout-agent-VERSION.pkg --keychain-profile PROFILE --wait
    xcrun stapler staple target/installer/aiscout-agent-VERSION.pkg

It installs `/usr/local/bin/aiscout-agent` and the daemon `com.aiscout.agent`. The daemon
retries every 60 seconds until the profile has arrived, so the order in which the MDM delivers
profile and package does not matter.

## 2. Jamf Pro

1. Settings > Computer management > Packages > New: upload the signed `.pkg`.
2. Computers > Policies > New: Packages > add it (Install); trigger Enrollment Complete and
   Recurring Check-in; Execution Frequency Once per computer; scope your Macs.
3. Computers > Configuration Profiles > Upload: `com.aiscout.agent.mobileconfig`; Level
   Computer; scope the same Macs. Jamf replaces `$EMAIL` with the email address in each
   computer's User and Location inventory.

## 3. Kandji

1. Library > Add new > Custom App: upload the `.pkg`; Install Audit and enforce.
2. Library > Add new > Custom Profile: upload `com.aiscout.agent.mobileconfig`.
3. Assign both to your Blueprints. Kandji replaces `$EMAIL` with the assigned user's email
   (one of Kandji's global variables).

## 4. Microsoft Intune

1. Apps > macOS > Add > macOS app (PKG): upload the `.pkg`.
2. Devices > macOS > Configuration > Create > New policy > Templates > Custom: upload
   `com.aiscout.agent.mobileconfig`, deployment channel Device channel.
3. Intune writes the owner's email for `{{{{mail}}}}`, not `$EMAIL`: generate the profile for
   Intune with `--email-placeholder '{{{{mail}}}}'`.

## 5. Full Disk Access (recommended)

The inventory reads every user's home. To read folders macOS protects (TCC), deploy a Privacy
Preferences Policy Control payload allowing `SystemPolicyAllFiles` for `/usr/local/bin/aiscout-agent`
with the code requirement of your signed build (`codesign -dr - /usr/local/bin/aiscout-agent`).

## Check on a Mac

    sudo launchctl print system/com.aiscout.agent
    sudo /usr/local/bin/aiscout-agent check-config --config "/Library/Application Support/aiscout/agent.toml"
    tail /Library/Logs/aiscout/agent.log
"#,
        url = s.collector_url,
        domain = MANAGED_DOMAIN,
        pin = pin_text(s),
        key = s.catalog_key,
    )
}

// ---------------------------------------------------------------------------------------------
// Windows

/// The settings `install.ps1` reads from beside itself (a PowerShell data file: no code runs).
pub fn windows_settings(s: &Settings) -> String {
    let pin = s.pin_sha256.as_deref().map_or_else(|| "''".to_owned(), ps_string);
    format!(
        "# aiscout agent settings for {url}, read by install.ps1 (Import-PowerShellDataFile).\n\
         @{{\n    CollectorUrl = {url_q}\n    PinSha256 = {pin}\n}}\n",
        url = s.collector_url,
        url_q = ps_string(&s.collector_url),
    )
}

fn write_windows(w: &mut Writer<'_>, s: &Settings) -> Result<(), MdmError> {
    w.file("install.ps1", 0o644, INSTALL_PS1.as_bytes())?;
    w.file("uninstall.ps1", 0o644, UNINSTALL_PS1.as_bytes())?;
    w.file("detect.ps1", 0o644, DETECT_PS1.as_bytes())?;
    w.file("install-settings.psd1", 0o600, windows_settings(s).as_bytes())?;
    w.file("enroll_secret", 0o600, format!("{}\n", s.enroll_secret.expose()).as_bytes())?;
    w.file("catalog.pub", 0o644, format!("{}\n", s.catalog_key).as_bytes())?;
    if let Some(p) = &s.policies {
        w.file("browser-policies.reg", 0o644, &utf16le_with_bom(&registry_file(p)))?;
    }
    let readme = windows_readme(s) + &policies_readme(s, Platform::Windows);
    w.file("README.md", 0o644, readme.as_bytes())
}

/// The README section on the review decisions' browser and IDE policies.
fn policies_readme(s: &Settings, platform: Platform) -> String {
    let Some(p) = &s.policies else {
        return "\n## The review decisions\n\nThis package carries no browser or IDE blocklists \
                (no collector database was read, or --no-policies). Run mdm-package where the \
                collector's database is to include them, or use `aiscout-collector policy \
                export`.\n"
            .to_owned();
    };
    let count = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    let summary = format!(
        "{} blocked extension(s), {} blocked and {} allowed web name(s)",
        count(&p.chrome["ExtensionInstallBlocklist"]),
        count(&p.chrome["URLBlocklist"]),
        count(&p.chrome["URLAllowlist"]),
    );
    let where_ = match platform {
        Platform::Linux => {
            "- `chrome-aiscout-policy.json`: install as \
             `/etc/opt/chrome/policies/managed/aiscout.json` (Chromium: \
             `/etc/chromium/policies/managed/`, Edge: `/etc/opt/edge/policies/managed/`).\n\
             - `firefox-policies.json` now also holds `ExtensionSettings` and `WebsiteFilter`.\n\
             - `vscode-settings.json`: the `extensions.allowed` setting for VS Code and Cursor.\n"
        }
        Platform::Macos => {
            "- The profile's Chrome and Edge payloads carry `ExtensionInstallBlocklist`, \
             `URLBlocklist` and `URLAllowlist`; the Firefox payload `ExtensionSettings` and \
             `WebsiteFilter`; a `com.microsoft.VSCode` payload sets `AllowedExtensions`.\n"
        }
        Platform::Windows => {
            "- `browser-policies.reg`: the same for Chrome, Edge, Firefox and VS Code under \
             `HKLM\\SOFTWARE\\Policies`. Deploy it with an Intune platform script or \
             remediation running `reg import browser-policies.reg` as SYSTEM.\n"
        }
    };
    format!(
        "\n## The review decisions\n\n\
         This package carries the browser and IDE policies of the AI tool decisions as they \
         were when it was written ({summary}; products blocked in the collector's reviews):\n\n\
         {where_}\n\
         A profile does not change by itself: run mdm-package again and redeploy after \
         decisions change, or let your tools fetch `GET /api/v1/policy/chrome-policy` (and the \
         other formats) with a `policy` token.\n"
    )
}

/// A `.reg` string value: backslashes and quotes escaped, one line.
fn reg_string(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The browser and IDE policies as a registry file for `reg import` (Chrome, Edge, Firefox,
/// VS Code under `HKLM\SOFTWARE\Policies`). Each list key is deleted first, so an entry
/// removed from the decisions is removed from the machine.
pub fn registry_file(p: &crate::policy::BrowserPolicies) -> String {
    const POLICIES: &str = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies";
    let mut out = String::from(
        "Windows Registry Editor Version 5.00\r\n\r\n\
         ; aiscout: the browser and IDE policies of the current AI tool review decisions.\r\n\
         ; Import as administrator: reg import browser-policies.reg\r\n",
    );
    let list = |out: &mut String, key: &str, values: &[String]| {
        out.push_str(&format!("\r\n[-{key}]\r\n[{key}]\r\n"));
        for (i, v) in values.iter().enumerate() {
            out.push_str(&format!("\"{}\"={}\r\n", i + 1, reg_string(v)));
        }
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    for vendor in ["Google\\Chrome", "Microsoft\\Edge"] {
        for name in ["ExtensionInstallBlocklist", "URLBlocklist", "URLAllowlist"] {
            list(&mut out, &format!("{POLICIES}\\{vendor}\\{name}"), &strings(&p.chrome[name]));
        }
    }
    let firefox = format!("{POLICIES}\\Mozilla\\Firefox");
    out.push_str(&format!(
        "\r\n[{firefox}]\r\n\"ExtensionSettings\"={}\r\n",
        reg_string(&serde_json::to_string(&p.firefox["ExtensionSettings"]).unwrap_or_default())
    ));
    out.push_str(&format!("\r\n[-{firefox}\\WebsiteFilter]\r\n"));
    for part in ["Block", "Exceptions"] {
        list(
            &mut out,
            &format!("{firefox}\\WebsiteFilter\\{part}"),
            &strings(&p.firefox["WebsiteFilter"][part]),
        );
    }
    out.push_str(&format!(
        "\r\n[{POLICIES}\\Microsoft\\VSCode]\r\n\"AllowedExtensions\"={}\r\n",
        reg_string(&serde_json::to_string(&p.vscode_allowed).unwrap_or_default())
    ));
    out
}

/// UTF-16 little-endian with a byte order mark: the encoding `regedit` writes and reads.
fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xfe];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

fn windows_readme(s: &Settings) -> String {
    format!(
        r#"# aiscout agent for Windows: {url}

Written by `aiscout-collector mdm-package --platform windows`. This folder is the Intune Win32
app's source folder once you add `aiscout-agent.exe` to it.

| file | what |
| --- | --- |
| `install.ps1` | copies the agent to `%ProgramFiles%\aiscout`, writes `%ProgramData%\aiscout\agent.toml`, registers and starts the service `aiscout-agent` |
| `uninstall.ps1` | stops and removes the service, the program and (with `-RemoveData`) `%ProgramData%\aiscout` |
| `detect.ps1` | Intune detection: exit 0 and a line on stdout when the service and program are installed |
| `install-settings.psd1` | collector URL `{url}` and certificate pin {pin} |
| `enroll_secret` (**secret**) | the enroll secret, copied to `%ProgramData%\aiscout` (SYSTEM and Administrators only) |
| `catalog.pub` | catalog public key `{key}` |

## 1. Prerequisite: Npcap

Live capture on Windows needs Npcap. `install.ps1` checks for it and says clearly when it is
missing: the service then runs the inventory only and reports capture as unavailable. Licence:
the free Npcap edition may be installed on at most 5 systems and may not be redistributed, so
an organisation either buys Npcap OEM (silent install, redistribution rights) and deploys it as
its own Win32 app (`npcap-oem.exe /S`), or relies on an Npcap that each machine already has
under its own licence. See installer/README.md, "Npcap".

## 2. The agent binary

Build it on Windows: `cargo build --release -p aiscout-agent` and copy
`target\release\aiscout-agent.exe` into this folder (sign it with your code-signing
certificate: `signtool sign /fd SHA256 /tr TIMESTAMP_URL /td SHA256 aiscout-agent.exe`).

## 3. Intune (Win32 app)

1. Package the folder: `IntuneWinAppUtil.exe -c <this folder> -s install.ps1 -o <output>`.
2. Intune admin center > Apps > Windows > Add > Windows app (Win32): upload `install.intunewin`.
3. Program:
   - Install command: `%SystemRoot%\sysnative\WindowsPowerShell\v1.0\powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install.ps1`
   - Uninstall command: `%SystemRoot%\sysnative\WindowsPowerShell\v1.0\powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\uninstall.ps1`
   - Install behavior: System. Device restart behavior: No specific action.
4. Requirements: 64-bit Windows 10 or later.
5. Detection rules: Use a custom detection script, `detect.ps1`; run as 32-bit process on
   64-bit clients: No; enforce signature check: only if you sign the script.
6. Dependencies: the Npcap OEM app, when you deploy one.
7. Assign to your device groups as Required.

Owner email: Intune has no per-user variable for Win32 app scripts; the collector joins
machines to people through its directory import instead.

## 4. Keep DNS visible

Browsers that send DNS over HTTPS hide the names the agent matches. Set in Intune (Settings
catalog): Google Chrome > DNS-over-HTTPS mode = off; Microsoft Edge > Control the mode of
DNS-over-HTTPS = off; Firefox > DNS over HTTPS: Enabled off, Locked. Or run
`install.ps1 -SetBrowserDnsPolicies`, which writes the same policies to the registry.

## Check on a machine

    Get-Service aiscout-agent
    & "$env:ProgramFiles\aiscout\aiscout-agent.exe" check-config --config "$env:ProgramData\aiscout\agent.toml"
"#,
        url = s.collector_url,
        pin = pin_text(s),
        key = s.catalog_key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
