//! The agent's configuration: one TOML file, then environment variables for secrets and
//! per-user values that MDM injects, then command-line flags.
//!
//! The file is read into [`RawConfig`] (`deny_unknown_fields`), merged with overrides, and
//! validated into [`Config`], which holds real types. Validation reports every problem at once,
//! each with its key path, so `aiscout-agent check-config` (and the systemd `ExecStartPre` and
//! MDM scripts that call it) show an administrator everything to fix in one go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The file as written, before validation. Every option is documented here, on its field.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The collector's base URL; must be `https://`.
    pub collector_url: Option<String>,
    /// File holding the organisation's enroll secret (env `AISCOUT_ENROLL_SECRET` wins).
    pub enroll_secret_file: Option<PathBuf>,
    /// PEM file of the CA that signed the collector's certificate.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the collector's certificate (DER), 64 hex digits; an alternative to `ca_file`.
    pub pin_sha256: Option<String>,
    /// File holding the catalog public key (64 hex digits) that catalog updates must verify
    /// against.
    pub catalog_key_file: Option<PathBuf>,
    /// File holding the collector's organisation-overlay public key (64 hex digits); without
    /// it no overlay is fetched (issue 17).
    pub overlay_key_file: Option<PathBuf>,
    /// Interfaces to capture on; empty means every interface that is up.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Folder for the node key, the last good catalog and the spool.
    pub state_dir: Option<PathBuf>,
    /// The spool database (default `<state_dir>/spool.db`).
    pub spool: Option<PathBuf>,
    /// The spool's size cap in bytes (default 64 MiB).
    pub spool_max_bytes: Option<u64>,
    /// The device owner's email, as MDM knows it (env `AISCOUT_OWNER_EMAIL` wins).
    pub owner_email: Option<String>,
    /// File holding the key that pseudonymises OS user names with HMAC-SHA256; without it user
    /// names are sent as they are.
    pub user_key_file: Option<PathBuf>,
    /// Seconds between uploads (default 60, at most 60).
    pub upload_interval_secs: Option<u64>,
    /// Seconds between heartbeats (default 300).
    pub heartbeat_interval_secs: Option<u64>,
    /// Seconds between catalog update checks (default 3600).
    pub catalog_interval_secs: Option<u64>,
    /// Seconds between full inventory rescans (default 86400).
    pub rescan_interval_secs: Option<u64>,
    /// Length of a sighting aggregation window in seconds (default 3600).
    pub window_secs: Option<u64>,
}

/// How the collector's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustAnchor {
    /// Certificates signed by this CA (PEM file).
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256.
    Pin([u8; 32]),
    /// The system's root store.
    SystemRoots,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The collector's base URL (`https://host:port`), without a trailing slash.
    pub collector_url: String,
    /// The enroll secret.
    pub enroll_secret: aiscout_wire::Secret,
    /// How the collector is trusted.
    pub trust: TrustAnchor,
    /// The pinned catalog public key.
    pub catalog_key: [u8; 32],
    /// The pinned organisation-overlay public key (the collector's own), when set.
    pub overlay_key: Option<[u8; 32]>,
    /// Interfaces to capture on (empty: all that are up).
    pub interfaces: Vec<String>,
    /// State folder.
    pub state_dir: PathBuf,
    /// Spool file.
    pub spool: PathBuf,
    /// Spool cap.
    pub spool_max_bytes: u64,
    /// Owner email.
    pub owner_email: Option<String>,
    /// User-name pseudonymisation key.
    pub user_key: Option<aiscout_wire::Secret>,
    /// Upload interval.
    pub upload_interval: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Catalog check interval.
    pub catalog_interval: Duration,
    /// Full rescan interval.
    pub rescan_interval: Duration,
    /// Aggregation window.
    pub window: Duration,
}

/// One problem, with its key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key path (`collector_url`) or source (`AISCOUT_ENROLL_SECRET`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file, when there was one.
    pub file: Option<PathBuf>,
    /// The problems, in key order.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        match &self.file {
            Some(file) => {
                write!(f, "{n} problem{} in {}", if n == 1 { "" } else { "s" }, file.display())?
            }
            None => write!(f, "{n} configuration problem{}", if n == 1 { "" } else { "s" })?,
        }
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// Values that override the file: flags and environment variables.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--collector URL`.
    pub collector_url: Option<String>,
    /// `--enroll-secret-file FILE`.
    pub enroll_secret_file: Option<PathBuf>,
    /// `AISCOUT_ENROLL_SECRET`.
    pub enroll_secret_env: Option<String>,
    /// `--ca-file FILE`.
    pub ca_file: Option<PathBuf>,
    /// `--pin-sha256 HEX`.
    pub pin_sha256: Option<String>,
    /// `--catalog-key FILE`.
    pub catalog_key_file: Option<PathBuf>,
    /// `--interface NAME` (repeatable).
    pub interfaces: Vec<String>,
    /// `--spool FILE`.
    pub spool: Option<PathBuf>,
    /// `--owner-email ADDR` or `AISCOUT_OWNER_EMAIL`.
    pub owner_email: Option<String>,
    /// `--state-dir DIR`.
    pub state_dir: Option<PathBuf>,
    /// The catalog public key itself (64 hex digits), as managed settings deliver it.
    pub catalog_key_hex: Option<String>,
    /// `--overlay-key FILE`.
    pub overlay_key_file: Option<PathBuf>,
    /// The overlay public key itself (64 hex digits), as managed settings deliver it.
    pub overlay_key_hex: Option<String>,
}

/// Where macOS puts the managed settings an MDM configuration profile delivers for the
/// preference domain `com.aiscout.agent`.
pub const MACOS_MANAGED_SETTINGS: &str = "/Library/Managed Preferences/com.aiscout.agent.plist";

impl Overrides {
    /// Each value of `self`, else the one of `lower`: flags over managed settings, say.
    pub fn or(self, lower: Overrides) -> Overrides {
        Overrides {
            collector_url: self.collector_url.or(lower.collector_url),
            enroll_secret_file: self.enroll_secret_file.or(lower.enroll_secret_file),
            enroll_secret_env: self.enroll_secret_env.or(lower.enroll_secret_env),
            ca_file: self.ca_file.or(lower.ca_file),
            pin_sha256: self.pin_sha256.or(lower.pin_sha256),
            catalog_key_file: self.catalog_key_file.or(lower.catalog_key_file),
            interfaces: if self.interfaces.is_empty() { lower.interfaces } else { self.interfaces },
            spool: self.spool.or(lower.spool),
            owner_email: self.owner_email.or(lower.owner_email),
            state_dir: self.state_dir.or(lower.state_dir),
            catalog_key_hex: self.catalog_key_hex.or(lower.catalog_key_hex),
            overlay_key_file: self.overlay_key_file.or(lower.overlay_key_file),
            overlay_key_hex: self.overlay_key_hex.or(lower.overlay_key_hex),
        }
    }

    /// Reads managed settings (a property list, XML or binary) with the keys `collector_url`,
    /// `enroll_secret`, `pin_sha256`, `catalog_key`, `overlay_key` and `owner_email`. A missing file is no
    /// settings at all.
    ///
    /// # Errors
    /// A file that exists but is not a property list dictionary.
    pub fn from_managed_settings(path: &Path) -> Result<Overrides, Problem> {
        if !path.exists() {
            return Ok(Overrides::default());
        }
        let problem = |message: String| Problem { key: path.display().to_string(), message };
        let value = plist::Value::from_file(path)
            .map_err(|e| problem(format!("unreadable managed settings: {e}")))?;
        let dict = value
            .as_dictionary()
            .ok_or_else(|| problem("managed settings are not a dictionary".into()))?;
        let text = |key: &str| dict.get(key).and_then(plist::Value::as_string).map(str::to_owned);
        Ok(Overrides {
            collector_url: text("collector_url"),
            enroll_secret_env: text("enroll_secret"),
            pin_sha256: text("pin_sha256"),
            catalog_key_hex: text("catalog_key"),
            overlay_key_hex: text("overlay_key"),
            owner_email: text("owner_email"),
            ..Overrides::default()
        })
    }

    /// Reads the environment variables this agent honours.
    pub fn from_env(mut self) -> Self {
        if let Ok(secret) = std::env::var("AISCOUT_ENROLL_SECRET") {
            self.enroll_secret_env = Some(secret);
        }
        if self.owner_email.is_none() {
            self.owner_email = std::env::var("AISCOUT_OWNER_EMAIL").ok();
        }
        self
    }
}

/// Reads, merges and validates.
///
/// # Errors
/// Every problem at once: unreadable file, TOML errors, unknown keys, bad or missing values.
pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError { file: file.map(Path::to_path_buf), problems };
    let raw = match file {
        Some(path) => {
            let text = read_small(path).map_err(|e| {
                fail(vec![Problem { key: "(file)".into(), message: e.to_string() }])
            })?;
            parse(&text).map_err(|p| fail(vec![p]))?
        }
        None => RawConfig::default(),
    };
    validate(raw, overrides).map_err(fail)
}

/// Where this device's agent keeps its state, read without the secrets (`status`, which an
/// employee runs and which must not need the enroll secret or the pinned keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locations {
    /// The collector's URL without a trailing slash, when configured.
    pub collector_url: Option<String>,
    /// The state folder (node key, last good catalog, last upload).
    pub state_dir: PathBuf,
    /// The spool database.
    pub spool: PathBuf,
    /// The device owner's email, when configured.
    pub owner_email: Option<String>,
}

/// Reads the file and overrides as [`load`] does, but keeps only the [`Locations`] and reads
/// no secret file.
///
/// # Errors
/// An unreadable file or a TOML or schema problem, with its line.
pub fn locations(file: Option<&Path>, o: Overrides) -> Result<Locations, ConfigError> {
    let fail = |problems| ConfigError { file: file.map(Path::to_path_buf), problems };
    let raw = match file {
        Some(path) => {
            let text = read_small(path).map_err(|e| {
                fail(vec![Problem { key: "(file)".into(), message: e.to_string() }])
            })?;
            parse(&text).map_err(|p| fail(vec![p]))?
        }
        None => RawConfig::default(),
    };
    let state_dir =
        o.state_dir.or(raw.state_dir).unwrap_or_else(|| PathBuf::from("/var/lib/aiscout"));
    let spool = o.spool.or(raw.spool).unwrap_or_else(|| state_dir.join("spool.db"));
    let nonempty = |v: Option<String>| {
        v.map(|t| t.trim().trim_end_matches('/').to_owned()).filter(|t| !t.is_empty())
    };
    Ok(Locations {
        collector_url: nonempty(o.collector_url.or(raw.collector_url)),
        state_dir,
        spool,
        owner_email: nonempty(o.owner_email.or(raw.owner_email)),
    })
}

/// Parses the TOML text.
///
/// # Errors
/// The TOML or schema problem, with its key path.
pub fn parse(text: &str) -> Result<RawConfig, Problem> {
    toml_edit::de::from_str(text).map_err(|e: toml_edit::de::Error| {
        let line = e.span().map(|s| text.get(..s.start).unwrap_or("").matches('\n').count() + 1);
        Problem {
            key: line.map_or_else(|| "(file)".to_owned(), |l| format!("line {l}")),
            message: e.message().to_owned(),
        }
    })
}

/// Why a config or key file could not be read; its message becomes a [`Problem`]'s.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot open {}: {error}", path.display())]
    Open { path: PathBuf, error: std::io::Error },
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{} is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
}

fn read_small(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|error| ReadError::Open { path: path.to_owned(), error })?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| ReadError::Read { path: path.to_owned(), error })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ReadError::TooLarge { path: path.to_owned() });
    }
    Ok(text)
}

fn secret_from_file(key: &str, path: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    match read_small(path) {
        Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Ok(_) => {
            problems
                .push(Problem { key: key.into(), message: format!("{} is empty", path.display()) });
            None
        }
        Err(e) => {
            problems.push(Problem { key: key.into(), message: e.to_string() });
            None
        }
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    aiscout_signatures::hex::decode(text.trim()).and_then(|b| b.try_into().ok())
}

/// Validates a merged configuration.
///
/// # Errors
/// Every problem, with its key path.
pub fn validate(raw: RawConfig, o: Overrides) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem =
        |key: &str, message: String| problems.push(Problem { key: key.into(), message });

    let url = o.collector_url.or(raw.collector_url);
    let collector_url = match url.as_deref().map(str::trim) {
        None | Some("") => {
            problem("collector_url", "required: the collector's https:// URL".into());
            String::new()
        }
        Some(u) if !u.starts_with("https://") => {
            problem(
                "collector_url",
                format!("{u:?} must start with https:// (there is no plaintext mode)"),
            );
            String::new()
        }
        Some(u) if u.len() <= "https://".len() => {
            problem("collector_url", format!("{u:?} has no host"));
            String::new()
        }
        Some(u) => u.trim_end_matches('/').to_owned(),
    };

    let mut secret_problems = Vec::new();
    let enroll_secret = match (o.enroll_secret_env, o.enroll_secret_file.or(raw.enroll_secret_file))
    {
        (Some(s), _) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        (_, Some(path)) => secret_from_file("enroll_secret_file", &path, &mut secret_problems),
        _ => {
            secret_problems.push(Problem {
                key: "enroll_secret_file".into(),
                message: "required (or set AISCOUT_ENROLL_SECRET)".into(),
            });
            None
        }
    };

    let ca = o.ca_file.or(raw.ca_file);
    let pin = o.pin_sha256.or(raw.pin_sha256);
    let trust = match (ca, pin) {
        (Some(_), Some(_)) => {
            problem("pin_sha256", "give either ca_file or pin_sha256, not both".into());
            TrustAnchor::SystemRoots
        }
        (Some(ca), None) => {
            if !ca.is_file() {
                problem("ca_file", format!("{} does not exist", ca.display()));
            }
            TrustAnchor::CaFile(ca)
        }
        (None, Some(pin)) => match hex32(&pin) {
            Some(p) => TrustAnchor::Pin(p),
            None => {
                problem(
                    "pin_sha256",
                    "must be 64 hex digits (the SHA-256 of the collector certificate)".into(),
                );
                TrustAnchor::SystemRoots
            }
        },
        (None, None) => TrustAnchor::SystemRoots,
    };

    let catalog_key = match (o.catalog_key_hex, o.catalog_key_file.or(raw.catalog_key_file)) {
        (Some(hex), _) => hex32(&hex).unwrap_or_else(|| {
            problem("catalog_key", "the managed catalog key must be 64 hex digits".into());
            [0; 32]
        }),
        (None, Some(path)) => match read_small(&path) {
            Ok(text) => hex32(&text).unwrap_or_else(|| {
                problem("catalog_key_file", format!("{} must hold 64 hex digits", path.display()));
                [0; 32]
            }),
            Err(e) => {
                problem("catalog_key_file", e.to_string());
                [0; 32]
            }
        },
        (None, None) => {
            problem(
                "catalog_key_file",
                "required: the public key catalog updates are signed with".into(),
            );
            [0; 32]
        }
    };

    // Issue 17: each message names the organisation overlay, so an operator does not take it
    // for the catalog key.
    let overlay_key = match (o.overlay_key_hex, o.overlay_key_file.or(raw.overlay_key_file)) {
        (Some(hex), _) => hex32(&hex).or_else(|| {
            problem(
                "overlay_key",
                "the managed organisation overlay public key must be 64 hex digits".into(),
            );
            None
        }),
        (None, Some(path)) => match read_small(&path) {
            Ok(text) => hex32(&text).or_else(|| {
                problem(
                    "overlay_key_file",
                    format!(
                        "{} must hold the organisation overlay public key as 64 hex digits",
                        path.display()
                    ),
                );
                None
            }),
            Err(e) => {
                problem("overlay_key_file", format!("organisation overlay public key: {e}"));
                None
            }
        },
        (None, None) => None,
    };

    let mut interfaces = if o.interfaces.is_empty() { raw.interfaces } else { o.interfaces };
    interfaces.retain(|i| !i.trim().is_empty());

    let state_dir =
        o.state_dir.or(raw.state_dir).unwrap_or_else(|| PathBuf::from("/var/lib/aiscout"));
    let spool = o.spool.or(raw.spool).unwrap_or_else(|| state_dir.join("spool.db"));
    let spool_max_bytes = raw.spool_max_bytes.unwrap_or(64 * 1024 * 1024);
    if spool_max_bytes < 64 * 1024 {
        problem("spool_max_bytes", format!("{spool_max_bytes} is below the 65536-byte minimum"));
    }

    let owner_email =
        o.owner_email.or(raw.owner_email).map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    if let Some(e) = &owner_email {
        // MDM placeholders that were never substituted are a common deployment mistake.
        if e.starts_with('$') || e.contains("{{") || !e.contains('@') {
            problem(
                "owner_email",
                format!("{e:?} is not an email address (an unsubstituted MDM variable?)"),
            );
        }
    }

    let user_key = raw.user_key_file.as_deref().and_then(|p| {
        let mut ps = Vec::new();
        let key = secret_from_file("user_key_file", p, &mut ps);
        for p in ps {
            problem(&p.key, p.message);
        }
        key.map(aiscout_wire::Secret::new)
    });

    let mut secs = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            problem(key, format!("{v} is outside {min}..={max} seconds"));
        }
        Duration::from_secs(v.clamp(min, max))
    };
    let upload_interval = secs("upload_interval_secs", raw.upload_interval_secs, 60, 1, 60);
    let heartbeat_interval =
        secs("heartbeat_interval_secs", raw.heartbeat_interval_secs, 300, 10, 86_400);
    let catalog_interval =
        secs("catalog_interval_secs", raw.catalog_interval_secs, 3_600, 60, 7 * 86_400);
    let rescan_interval =
        secs("rescan_interval_secs", raw.rescan_interval_secs, 86_400, 60, 30 * 86_400);
    let window = secs("window_secs", raw.window_secs, 3_600, 60, 86_400);
    if let Some(v) = raw.window_secs.filter(|v| (60..=86_400).contains(v) && 86_400 % v != 0) {
        // Windows are aligned to the epoch; one that divides a day never spans midnight UTC,
        // which the collector's per-day rollups rely on.
        problem(
            "window_secs",
            format!("{v} does not divide a day (86400 seconds); use e.g. 300, 900, 1800 or 3600"),
        );
    }

    problems.extend(secret_problems);
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.key.cmp(&b.key));
        return Err(problems);
    }
    Ok(Config {
        collector_url,
        enroll_secret: aiscout_wire::Secret::new(enroll_secret.unwrap_or_default()),
        trust,
        catalog_key,
        overlay_key,
        interfaces,
        state_dir,
        spool,
        spool_max_bytes,
        owner_email,
        user_key,
        upload_interval,
        heartbeat_interval,
        catalog_interval,
        rescan_interval,
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let raw = parse(
            "collector_url = \"http://collector\"\npin_sha256 = \"abc\"\nupload_interval_secs = 600\nowner_email = \"$EMAIL\"\n",
        )
        .expect("parses");
        let problems = validate(raw, Overrides::default()).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "catalog_key_file",
                "collector_url",
                "enroll_secret_file",
                "owner_email",
                "pin_sha256",
                "upload_interval_secs"
            ]
        );
    }

    #[test]
    fn a_window_must_divide_a_day() {
        let problems = |window: u64| {
            let raw = parse(&format!("window_secs = {window}\n")).expect("parses");
            let problems = validate(raw, Overrides::default()).expect_err("no collector");
            problems.into_iter().filter(|p| p.key == "window_secs").collect::<Vec<_>>()
        };
        assert!(problems(900).is_empty());
        let seven_hours = problems(25_200);
        assert_eq!(seven_hours.len(), 1, "{seven_hours:?}");
        assert!(seven_hours[0].message.contains("does not divide a day"), "{seven_hours:?}");
    }

    #[test]
    fn managed_settings_fill_in_and_flags_win() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("com.aiscout.agent.plist");
        let mut dict = plist::Dictionary::new();
        dict.insert("collector_url".into(), "https://managed.example".into());
        dict.insert("enroll_secret".into(), "managed-secret".into());
        dict.insert("pin_sha256".into(), "ef".repeat(32).into());
        dict.insert("catalog_key".into(), "01".repeat(32).into());
        dict.insert("owner_email".into(), "dana@example.com".into());
        plist::Value::Dictionary(dict).to_file_binary(&path).expect("write");
        let managed = Overrides::from_managed_settings(&path).expect("reads");
        let flags = Overrides {
            collector_url: Some("https://flag.example".into()),
            ..Overrides::default()
        };
        let c = validate(RawConfig::default(), flags.or(managed)).expect("valid");
        assert_eq!(c.collector_url, "https://flag.example");
        assert_eq!(c.enroll_secret.expose(), "managed-secret");
        assert_eq!(c.trust, TrustAnchor::Pin([0xef; 32]));
        assert_eq!(c.catalog_key, [0x01; 32]);
        assert_eq!(c.owner_email.as_deref(), Some("dana@example.com"));
        let absent = Overrides::from_managed_settings(&dir.path().join("absent")).expect("none");
        assert_eq!(absent.collector_url, None);
        std::fs::write(&path, "not a plist").expect("write");
        assert!(Overrides::from_managed_settings(&path).is_err());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let p = parse("collector_url = \"https://x\"\ncolector = 1\n").expect_err("unknown key");
        assert_eq!(p.key, "line 2");
        assert!(p.message.contains("unknown field `colector`"), "{}", p.message);
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("catalog.pub");
        std::fs::write(&key, "ab".repeat(32)).expect("write");
        let raw = parse(&format!(
            "collector_url = \"https://file.example\"\ncatalog_key_file = {:?}\nstate_dir = {:?}\n",
            key.display().to_string(),
            dir.path().display().to_string()
        ))
        .expect("parses");
        let o = Overrides {
            collector_url: Some("https://flag.example:8443/".into()),
            enroll_secret_env: Some("s3cret".into()),
            pin_sha256: Some("cd".repeat(32)),
            ..Overrides::default()
        };
        let c = validate(raw, o).expect("valid");
        assert_eq!(c.collector_url, "https://flag.example:8443");
        assert_eq!(c.enroll_secret.expose(), "s3cret");
        assert_eq!(c.trust, TrustAnchor::Pin([0xcd; 32]));
        assert_eq!(c.spool, dir.path().join("spool.db"));
        assert_eq!(c.upload_interval, Duration::from_secs(60));
    }
}
