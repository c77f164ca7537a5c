//! Configuration of `serve` and the other subcommands: a TOML file with
//! `deny_unknown_fields`, environment variables for secrets, and flags, validated together
//! into one [`Config`] with every problem named by its key path.
//!
//! Layers, lowest first: built-in defaults, the file (`--config`), then each setting's
//! environment variable or flag (clap merges those two; a flag wins).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aiscout_wire::Secret;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::ingest::mapping::Mappings;
use crate::model::Role;
use crate::oidc::OidcConfig;

/// Largest config, catalog, certificate or secret file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The file as written. Every field is optional; `None` means "not set here".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, `ADDR:PORT` (port 0 picks a free port).
    pub listen: Option<String>,
    /// Database URL: `sqlite:PATH` or `postgres://...`.
    pub db: Option<String>,
    /// Directory for the SQLite file and the generated certificate.
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// File holding the enroll secret.
    pub enroll_secret_file: Option<PathBuf>,
    /// The signed catalog artifact to serve.
    pub catalog: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    pub plain_http: Option<bool>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Requests each agent may make per minute (per instance), after the burst.
    pub rate_limit_per_minute: Option<u32>,
    /// Requests each agent may make at once.
    pub rate_limit_burst: Option<u32>,
    /// Most connections served at once (the same as `server.max_connections`; set one).
    pub max_connections: Option<u32>,
    /// File holding the bearer token `/metrics` requires; unset, `/metrics` is open.
    pub metrics_token_file: Option<PathBuf>,
    /// Connection limits and timeouts: `[server]`.
    pub server: Option<ServerFile>,
    /// File imports: generic column mappings and the drop folder.
    pub import: Option<ImportFile>,
    /// The web console: `[console]`.
    pub console: Option<ConsoleFile>,
    /// Policy exports: `[policy]`.
    pub policy: Option<PolicyFile>,
    /// Alerts: `[alerts]` and its `[[alerts.channel]]` entries.
    pub alerts: Option<crate::alerts::channel::AlertsFile>,
    /// Pull connectors: `[[connector]]`, one table per connector.
    pub connector: Option<Vec<ConnectorFile>>,
    /// Enrollment guards: `[enroll]`.
    pub enroll: Option<EnrollFile>,
    /// The organisation's words on `/transparency`: `[transparency]`.
    pub transparency: Option<TransparencyFile>,
    /// How long each kind of data is kept: `[retention]`.
    pub retention: Option<crate::retention::RetentionFile>,
    /// Card owners for statements without a cardholder: `[cards] "1234" = "alice@example.com"`.
    pub cards: Option<BTreeMap<String, String>>,
    /// How identities are stored: `pseudonymous` or `plain` (the default when unset, the
    /// behaviour before issue 21; every config the product writes says `pseudonymous`).
    pub privacy: Option<String>,
    /// The collector's identity key (32 bytes); unset, `identity.key` in the data folder,
    /// created 0600 on first start.
    pub privacy_key_file: Option<PathBuf>,
    /// The risk score's weights: `[risk]`.
    pub risk: Option<crate::risk::RiskFile>,
}

/// `[[connector]]`: one pull connector, as written (validated into
/// [`crate::connectors::Settings`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    /// Unique name, shown in logs, metrics and the imports history. Required.
    pub name: Option<String>,
    /// `openai`, `anthropic`, `litellm`, `openrouter`, `ramp` or `brex`. Required.
    pub kind: Option<String>,
    /// Where the vendor's documented paths are appended [default: the vendor's API]; must be
    /// `https://`, or `http://` to a loopback host.
    pub base_url: Option<String>,
    /// File holding the API key (read at load, trimmed).
    pub api_key_file: Option<PathBuf>,
    /// Environment variable holding the API key instead of a file.
    pub api_key_env: Option<String>,
    /// File holding Ramp's OAuth client id (`kind = "ramp"`).
    pub client_id_file: Option<PathBuf>,
    /// File holding Ramp's OAuth client secret (`kind = "ramp"`).
    pub client_secret_file: Option<PathBuf>,
    /// File holding the Brex user token (`kind = "brex"`).
    pub token_file: Option<PathBuf>,
    /// PEM file of extra trust roots for the vendor (an internal CA), added to the system's.
    pub ca_file: Option<PathBuf>,
    /// First day the first sync asks for, `YYYY-MM-DD` [default: 90 days back].
    pub start: Option<String>,
    /// How often `serve` runs it: `30m`, `1h`, `1d` [default: 1h].
    pub interval: Option<String>,
    /// How far before its cursor each run asks again, to catch late rows [default: 1h for
    /// litellm, 2d for the daily cost reports].
    pub overlap: Option<String>,
    /// Seconds one request may take [default: 30].
    pub timeout_secs: Option<u32>,
}

/// `[enroll]`: how enrollments are guarded (issue 14 item 3).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollFile {
    /// What a re-enrollment of a known host id may do: `replace` (anyone with the enroll
    /// secret takes it over), `require_key` (only with the node key it holds, or an admin's
    /// approval) or `hold` (waits for an admin) [default: `require_key`].
    pub reenroll: Option<String>,
    /// Wrong enroll secrets one source address may send before it gets 429 [default: 10].
    pub failures_burst: Option<u32>,
    /// Wrong enroll secrets an address is allowed again per hour after that [default: 10].
    pub failures_per_hour: Option<u32>,
}

/// The validated `[enroll]` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrollConfig {
    /// The re-enrollment policy.
    pub reenroll: crate::model::ReenrollPolicy,
    /// Wrong secrets per address at once.
    pub failures_burst: u32,
    /// Wrong secrets per address per hour after that.
    pub failures_per_hour: u32,
}

impl Default for EnrollConfig {
    fn default() -> Self {
        Self {
            reenroll: crate::model::ReenrollPolicy::default(),
            failures_burst: 10,
            failures_per_hour: 10,
        }
    }
}

impl EnrollConfig {
    /// The API's enrollment guards.
    pub fn enrollment(&self) -> crate::api::Enrollment {
        crate::api::Enrollment {
            policy: self.reenroll,
            throttle: crate::api::ratelimit::FailureThrottle::new(
                self.failures_burst,
                self.failures_per_hour,
            ),
        }
    }
}

/// `[transparency]`: what `/transparency` adds to what it derives from the configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransparencyFile {
    /// A paragraph from the organisation (blank lines separate paragraphs; at most 4,000
    /// characters): why it runs aiscout, its legal basis, the works agreement.
    pub organisation: Option<String>,
    /// Who to ask or send a request to: an email address or an `https://` page.
    pub contact: Option<String>,
}

/// `[server]`: how long a connection may take over each step, and how many may be open.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Seconds a TLS handshake may take [default: 10].
    pub handshake_timeout_secs: Option<u32>,
    /// Seconds a client may take to send a request's headers [default: 10].
    pub header_timeout_secs: Option<u32>,
    /// Seconds a connection may stay without traffic before it is closed [default: 60].
    pub idle_timeout_secs: Option<u32>,
    /// Most connections open at once [default: 4096]; beyond it a connection gets 503.
    pub max_connections: Option<u32>,
    /// Most connections open at once from one source address [default: 1024].
    pub max_connections_per_ip: Option<u32>,
    /// Most file imports (API and console uploads) processed at once [default: 2]; another
    /// upload meanwhile gets 503.
    pub max_concurrent_imports: Option<u32>,
}

/// `[policy]`: the policy exports (`policy export`, `GET /api/v1/policy/{format}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The organisation's "use this instead" page (`https://HOST/...`): the RPZ answers a
    /// blocked product that has a sanctioned alternative with a CNAME to its host.
    pub coaching_url: Option<String>,
    /// The organisation's own words after "Use X instead:" (one line, at most 200
    /// characters), on the console's app card and in the email digest.
    pub coaching_message: Option<String>,
}

/// `[console]`: the web console.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleFile {
    /// Minutes without a request after which a session ends [default: 30].
    pub idle_minutes: Option<u32>,
    /// Hours after sign-in after which a session ends whatever its use [default: 12].
    pub session_hours: Option<u32>,
    /// Largest file the imports page accepts, in MiB [default: 64].
    pub max_upload_mb: Option<u32>,
    /// Hours without a heartbeat after which a device shows as silent [default: 24].
    pub stale_hours: Option<u32>,
    /// `[console.oidc]`: single sign-on through an OpenID Provider.
    pub oidc: Option<OidcFile>,
}

/// `[console.oidc]`: OpenID Connect sign-in (authorization code flow with PKCE), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// The issuer URL (`https://...`); discovery is at
    /// `{issuer}/.well-known/openid-configuration`. Required.
    pub issuer: Option<String>,
    /// The client id registered at the provider. Required.
    pub client_id: Option<String>,
    /// File holding the client secret (read at load, trimmed). Required.
    pub client_secret_file: Option<PathBuf>,
    /// The console's callback URL, as registered at the provider. Required.
    pub redirect_url: Option<String>,
    /// The claim listing the person's groups [default: `groups`].
    pub groups_claim: Option<String>,
    /// PEM file of extra trust roots for the provider, added to the system's.
    pub ca_file: Option<PathBuf>,
    /// Scopes requested [default: `openid`, `email`, `profile`]; must include `openid`.
    pub scopes: Option<Vec<String>>,
    /// Group name to role (`admin`, `security`, `procurement`, `viewer`).
    pub roles: Option<BTreeMap<String, String>>,
}

/// `[import]`: generic column mappings and the drop folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    /// The drop folder `serve` watches (as `import watch DIR` does).
    pub drop_dir: Option<PathBuf>,
    /// `[import.expenses]`.
    pub expenses: Option<GenericSection>,
    /// `[import.gateway]`.
    pub gateway: Option<GenericSection>,
}

/// `[import.expenses]` or `[import.gateway]`: holds the `generic` mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSection {
    /// Key to column name or setting; keys are checked by the mapping, so that an unknown
    /// one is reported with its full path.
    pub generic: Option<BTreeMap<String, String>>,
}

/// Settings from flags or environment variables (`None` when not given).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on, ADDR:PORT (port 0 picks a free port) [default: 0.0.0.0:8443].
    #[arg(long, global = true, env = "AISCOUT_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the SQLite file and generated certificate [default: ./aiscout-data].
    #[arg(long, global = true, env = "AISCOUT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key. Without both, a self-signed one is generated.
    #[arg(long, global = true, env = "AISCOUT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, global = true, env = "AISCOUT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// File holding the enroll secret agents present.
    #[arg(long, global = true, env = "AISCOUT_ENROLL_SECRET_FILE")]
    pub enroll_secret_file: Option<PathBuf>,
    /// The signed catalog artifact served at /api/v1/catalog.
    #[arg(long, global = true, env = "AISCOUT_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Serve plain HTTP, for running behind a TLS-terminating proxy.
    #[arg(long, global = true)]
    pub plain_http: bool,
    /// Log format: text or json.
    #[arg(long, global = true, env = "AISCOUT_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Requests per agent per minute (per instance).
    #[arg(long, global = true)]
    pub rate_limit_per_minute: Option<u32>,
    /// Requests per agent at once (bucket size).
    #[arg(long, global = true)]
    pub rate_limit_burst: Option<u32>,
    /// Most connections served at once.
    #[arg(long, global = true)]
    pub max_connections: Option<u32>,
    /// How identities are stored: pseudonymous or plain (the `privacy` setting).
    #[arg(long, global = true, env = "AISCOUT_PRIVACY")]
    pub privacy: Option<String>,
    /// The collector's identity key file (the `privacy_key_file` setting).
    #[arg(long, global = true, env = "AISCOUT_PRIVACY_KEY_FILE")]
    pub privacy_key_file: Option<PathBuf>,
    /// Drop folder that `serve` also watches for expense, gateway and people files.
    #[arg(long, global = true, env = "AISCOUT_DROP_DIR")]
    pub drop_dir: Option<PathBuf>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Files given by the operator.
    Files {
        /// PEM chain.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
    /// Self-signed, generated into the data dir on first start.
    Generated,
    /// No TLS (`--plain-http`).
    Off,
}

/// A database location.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (may hold a password, so it is never printed).
    Postgres(Secret),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Database::Postgres(_) => f.write_str("postgres://<redacted>"),
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database.
    pub db: Database,
    /// Where [`Config::db`] came from, for errors about it: `--db`, the `db` setting of the
    /// config file, or the default file in the data folder.
    pub db_origin: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// TLS source.
    pub tls: Tls,
    /// The enroll secret; `None` refuses every enrollment.
    pub enroll_secret: Option<Secret>,
    /// Catalog artifact path.
    pub catalog: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Per-agent requests per minute.
    pub rate_limit_per_minute: u32,
    /// Per-agent burst.
    pub rate_limit_burst: u32,
    /// Connection limits and timeouts (`[server]`).
    pub server: crate::api::Limits,
    /// The token `/metrics` requires, when `metrics_token_file` is set.
    pub metrics_token: Option<Secret>,
    /// File import settings.
    pub import: ImportConfig,
    /// Web console settings.
    pub console: Console,
    /// Policy export settings (`[policy]`).
    pub policy: crate::policy::Settings,
    /// Alert rules and channels (`[alerts]`).
    pub alerts: crate::alerts::channel::Settings,
    /// Pull connectors (`[[connector]]`), in file order.
    pub connectors: Vec<crate::connectors::Settings>,
    /// Enrollment guards (`[enroll]`).
    pub enroll: EnrollConfig,
    /// How long each kind of data is kept (`[retention]`), applied daily by `serve`.
    pub retention: crate::retention::Settings,
    /// How identities are stored (`privacy`).
    pub privacy: crate::identity::PrivacyMode,
    /// The identity key's file (`privacy_key_file`, or `identity.key` in the data folder).
    pub privacy_key_file: PathBuf,
    /// The risk score's weights (`[risk]`).
    pub risk: aiscout_signatures::RiskWeights,
}

/// Web console settings (`[console]`).
#[derive(Clone, Debug, Default)]
pub struct Console {
    /// Sessions, uploads and staleness.
    pub settings: crate::console::Settings,
    /// OpenID Connect sign-in, when `[console.oidc]` is set.
    pub oidc: Option<OidcConfig>,
}

/// File import settings (`[import]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportConfig {
    /// The generic expense and gateway column mappings.
    pub mappings: Mappings,
    /// The drop folder `serve` watches, if any.
    pub drop_dir: Option<PathBuf>,
}

/// One configuration problem, named by key path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigProblem {
    /// The key (`listen`, `tls_key`, ...), or the file for a parse error.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<ConfigProblem>);

/// Reads a file of at most [`MAX_FILE_BYTES`].
///
/// # Errors
/// The file cannot be read or is too large.
pub fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(buf)
}

/// The shortest enroll secret `serve` and `check-config` accept (issue 14 item 3): anyone who
/// holds it can enroll a device, so it must not be guessable.
pub const MIN_ENROLL_SECRET_BYTES: usize = 32;

fn problem(key: &str, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem { key: key.to_owned(), reason: reason.into() }
}

/// Loads the file (if any), applies overrides and the database URL, and validates.
///
/// # Errors
/// Every problem found, each with its key path.
pub fn load(
    file: Option<&Path>,
    db: Option<&str>,
    enroll_secret_env: Option<&str>,
    o: &Overrides,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let raw: FileConfig = match file {
        None => FileConfig::default(),
        Some(path) => match read_capped(path).map(String::from_utf8) {
            Err(e) => {
                problems.push(problem(&path.display().to_string(), e.to_string()));
                FileConfig::default()
            }
            Ok(Err(e)) => {
                problems.push(problem(&path.display().to_string(), not_utf8(e.as_bytes(), &e)));
                FileConfig::default()
            }
            Ok(Ok(text)) => match toml_edit::de::from_str::<FileConfig>(&text) {
                Ok(raw) => raw,
                Err(e) => {
                    problems.push(problem(
                        &path.display().to_string(),
                        e.to_string().trim().replace('\n', " "),
                    ));
                    FileConfig::default()
                }
            },
        },
    };
    let listen_text = o.listen.clone().or(raw.listen).unwrap_or_else(|| "0.0.0.0:8443".into());
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|e| {
        problems.push(problem("listen", format!("{listen_text:?} is not ADDR:PORT ({e})")));
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    let data_dir =
        o.data_dir.clone().or(raw.data_dir).unwrap_or_else(|| PathBuf::from("aiscout-data"));
    let db_origin = match (db, &raw.db, file) {
        (Some(_), _, _) => "--db".to_owned(),
        (None, Some(_), Some(path)) => format!("the `db` setting of {}", path.display()),
        _ => "the default database of the data folder (--data-dir or `data_dir`)".to_owned(),
    };
    let db_text = db.map(str::to_owned).or(raw.db);
    let db = match db_text.as_deref() {
        None => Database::Sqlite(data_dir.join("aiscout.db")),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // The TLS settings (sslmode, sslrootcert) are checked here, so check-config names
            // a bad mode or an unreadable root certificate.
            if let Err(e) = crate::store::postgres_tls::parse(url) {
                problems.push(problem("db", redact_url_error(&e.to_string(), url)));
            }
            Database::Postgres(Secret::new(url))
        }
        Some(url) => match url.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => Database::Sqlite(PathBuf::from(path)),
            _ => {
                problems.push(problem("db", "expected sqlite:PATH or postgres://..."));
                Database::Sqlite(data_dir.join("aiscout.db"))
            }
        },
    };
    let plain_http = o.plain_http || raw.plain_http.unwrap_or(false);
    let cert = o.tls_cert.clone().or(raw.tls_cert);
    let key = o.tls_key.clone().or(raw.tls_key);
    let tls = match (plain_http, cert, key) {
        (true, None, None) => Tls::Off,
        (true, _, _) => {
            problems.push(problem("plain_http", "conflicts with tls_cert and tls_key"));
            Tls::Off
        }
        (false, None, None) => Tls::Generated,
        (false, Some(cert), Some(key)) => {
            for (k, p) in [("tls_cert", &cert), ("tls_key", &key)] {
                if !p.is_file() {
                    problems.push(problem(k, format!("{} is not a readable file", p.display())));
                }
            }
            Tls::Files { cert, key }
        }
        (false, Some(_), None) => {
            problems.push(problem("tls_key", "required with tls_cert"));
            Tls::Generated
        }
        (false, None, Some(_)) => {
            problems.push(problem("tls_cert", "required with tls_key"));
            Tls::Generated
        }
    };
    let enroll_secret =
        match (enroll_secret_env, o.enroll_secret_file.clone().or(raw.enroll_secret_file)) {
            (Some(s), _) if !s.trim().is_empty() => Some(Secret::new(s.trim())),
            (_, Some(path)) => match read_capped(&path).map(String::from_utf8) {
                Ok(Ok(s)) if !s.trim().is_empty() => Some(Secret::new(s.trim())),
                Ok(Ok(_)) => {
                    problems.push(problem("enroll_secret_file", "the file is empty"));
                    None
                }
                Ok(Err(_)) => {
                    problems.push(problem("enroll_secret_file", "not UTF-8"));
                    None
                }
                Err(e) => {
                    problems
                        .push(problem("enroll_secret_file", format!("{}: {e}", path.display())));
                    None
                }
            },
            _ => None,
        };
    if let Some(secret) = &enroll_secret
        && secret.expose().len() < MIN_ENROLL_SECRET_BYTES
    {
        let key = if enroll_secret_env.is_some_and(|s| !s.trim().is_empty()) {
            "AISCOUT_ENROLL_SECRET"
        } else {
            "enroll_secret_file"
        };
        problems.push(problem(
            key,
            format!(
                "the enroll secret is {} bytes; it must be at least {MIN_ENROLL_SECRET_BYTES} \
                 (make one with `openssl rand -base64 32`)",
                secret.expose().len()
            ),
        ));
    }
    let catalog = o.catalog.clone().or(raw.catalog);
    if let Some(path) = &catalog
        && !path.is_file()
    {
        problems.push(problem("catalog", format!("{} is not a readable file", path.display())));
    }
    let log_format = match o.log_format.clone().or(raw.log_format).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(problem("log_format", format!("{other:?} is not text or json")));
            LogFormat::Text
        }
    };
    let positive = |problems: &mut Vec<ConfigProblem>, key: &str, v: Option<u32>, d: u32| {
        let v = v.unwrap_or(d);
        if v == 0 {
            problems.push(problem(key, "must be at least 1"));
            return d;
        }
        v
    };
    let rate_limit_per_minute = positive(
        &mut problems,
        "rate_limit_per_minute",
        o.rate_limit_per_minute.or(raw.rate_limit_per_minute),
        120,
    );
    let rate_limit_burst = positive(
        &mut problems,
        "rate_limit_burst",
        o.rate_limit_burst.or(raw.rate_limit_burst),
        60,
    );
    let server = server_limits(
        raw.server.unwrap_or_default(),
        o.max_connections,
        raw.max_connections,
        &mut problems,
    );
    let metrics_token = raw.metrics_token_file.and_then(|path| {
        secret_file(&path).map_err(|why| problems.push(problem("metrics_token_file", why))).ok()
    });
    let import_raw = raw.import.unwrap_or_default();
    let mut mappings = Mappings::default();
    let sections = [
        ("import.expenses.generic", import_raw.expenses.and_then(|s| s.generic)),
        ("import.gateway.generic", import_raw.gateway.and_then(|s| s.generic)),
    ];
    for (section, keys) in sections {
        for (key, value) in keys.unwrap_or_default() {
            let set = if section == "import.expenses.generic" {
                mappings.expenses.set(&key, &value)
            } else {
                mappings.gateway.set(&key, &value)
            };
            if let Err(p) = set {
                problems.push(problem(&format!("{section}.{}", p.key), p.reason));
            }
        }
    }
    for (last4, email) in raw.cards.unwrap_or_default() {
        if let Err(p) = mappings.expenses.owners.add_card(&last4, &email) {
            problems.push(problem(&format!("cards.{last4}"), p.reason));
        }
    }
    let import = ImportConfig { mappings, drop_dir: o.drop_dir.clone().or(import_raw.drop_dir) };
    let privacy = match o.privacy.as_deref().or(raw.privacy.as_deref()) {
        None => crate::identity::PrivacyMode::Plain,
        Some(text) => crate::identity::PrivacyMode::parse(text).unwrap_or_else(|why| {
            problems.push(problem("privacy", why));
            crate::identity::PrivacyMode::Plain
        }),
    };
    let privacy_key_file = o
        .privacy_key_file
        .clone()
        .or(raw.privacy_key_file)
        .unwrap_or_else(|| data_dir.join(crate::identity::KEY_FILE));
    let retention = {
        let mut found = Vec::new();
        let settings = crate::retention::check(raw.retention.unwrap_or_default(), &mut found);
        problems.extend(found.into_iter().map(|(key, reason)| ConfigProblem { key, reason }));
        settings
    };
    let risk = {
        let mut found = Vec::new();
        let weights = crate::risk::check(raw.risk.unwrap_or_default(), &mut found);
        problems.extend(found.into_iter().map(|(key, reason)| ConfigProblem { key, reason }));
        weights
    };
    let console_raw = raw.console.unwrap_or_default();
    let defaults = crate::console::Settings::default();
    let mut within = |key: &str, v: Option<u32>, max: u32, default: i64| -> i64 {
        match v {
            None => default,
            Some(v) if v == 0 || v > max => {
                problems.push(problem(key, format!("must be between 1 and {max}")));
                default
            }
            Some(v) => i64::from(v),
        }
    };
    let settings = crate::console::Settings {
        idle_secs: within(
            "console.idle_minutes",
            console_raw.idle_minutes,
            24 * 60,
            defaults.idle_secs / 60,
        ) * 60,
        absolute_secs: within(
            "console.session_hours",
            console_raw.session_hours,
            24 * 30,
            defaults.absolute_secs / 3600,
        ) * 3600,
        max_upload_bytes: u64::try_from(within(
            "console.max_upload_mb",
            console_raw.max_upload_mb,
            4096,
            64,
        ))
        .unwrap_or(64)
            << 20,
        stale_hours: within(
            "console.stale_hours",
            console_raw.stale_hours,
            24 * 365,
            defaults.stale_hours,
        ),
        transparency: {
            use crate::console::transparency::{Transparency, contact_text, organisation_text};
            let raw = raw.transparency.unwrap_or_default();
            Transparency {
                retention,
                privacy,
                organisation: raw.organisation.and_then(|text| {
                    organisation_text(&text)
                        .map_err(|why| problems.push(problem("transparency.organisation", why)))
                        .ok()
                }),
                contact: raw.contact.and_then(|text| {
                    contact_text(&text)
                        .map_err(|why| problems.push(problem("transparency.contact", why)))
                        .ok()
                }),
            }
        },
    };
    let console = Console {
        settings,
        oidc: console_raw.oidc.and_then(|raw| console_oidc(raw, &mut problems)),
    };
    let policy_raw = raw.policy.unwrap_or_default();
    let policy = crate::policy::Settings {
        coaching_url: policy_raw.coaching_url.and_then(|text| {
            crate::policy::CoachingUrl::parse(&text)
                .map_err(|why| problems.push(problem("policy.coaching_url", why)))
                .ok()
        }),
        coaching_message: policy_raw.coaching_message.and_then(|text| {
            crate::policy::coaching_message(&text)
                .map_err(|why| problems.push(problem("policy.coaching_message", why)))
                .ok()
        }),
    };
    let mut alert_problems = Vec::new();
    let alerts = crate::alerts::channel::check(
        raw.alerts.unwrap_or_default(),
        &mut alert_problems,
        secret_file,
    );
    problems.extend(alert_problems.into_iter().map(|(key, reason)| ConfigProblem { key, reason }));
    let connectors = connectors(raw.connector.unwrap_or_default(), store_now(), &mut problems);
    let enroll_raw = raw.enroll.unwrap_or_default();
    let enroll_defaults = EnrollConfig::default();
    let enroll = EnrollConfig {
        reenroll: match enroll_raw.reenroll.as_deref() {
            None => enroll_defaults.reenroll,
            Some(name) => crate::model::ReenrollPolicy::parse(name).unwrap_or_else(|| {
                problems.push(problem(
                    "enroll.reenroll",
                    format!("{name:?} is not {}", crate::model::ReenrollPolicy::NAMES),
                ));
                enroll_defaults.reenroll
            }),
        },
        failures_burst: positive(
            &mut problems,
            "enroll.failures_burst",
            enroll_raw.failures_burst,
            enroll_defaults.failures_burst,
        ),
        failures_per_hour: positive(
            &mut problems,
            "enroll.failures_per_hour",
            enroll_raw.failures_per_hour,
            enroll_defaults.failures_per_hour,
        ),
    };
    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    Ok(Config {
        connectors,
        listen,
        db,
        db_origin,
        data_dir,
        tls,
        enroll_secret,
        catalog,
        log_format,
        rate_limit_per_minute,
        rate_limit_burst,
        server,
        metrics_token,
        import,
        console,
        policy,
        alerts,
        enroll,
        retention,
        privacy,
        privacy_key_file,
        risk,
    })
}

/// An error about a database URL, with the URL's password (if the error repeats it) hidden.
fn redact_url_error(error: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => error.replace(p, "<redacted>"),
        None => error.to_owned(),
    }
}

fn store_now() -> i64 {
    crate::store::now()
}

/// Validates `[[connector]]` entries; a problem's key is `connector.NAME.KEY` (or
/// `connector[INDEX].KEY` before the name is known).
fn connectors(
    raw: Vec<ConnectorFile>,
    now: i64,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<crate::connectors::Settings> {
    use crate::connectors::{BaseUrl, Kind, Settings, parse_duration};
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in raw.into_iter().enumerate() {
        let before = problems.len();
        let name = match c.name.as_deref().map(str::trim) {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) =>
            {
                n.to_owned()
            }
            Some(n) => {
                problems.push(problem(
                    &format!("connector[{i}].name"),
                    format!("{n:?} is not 1 to 64 letters, digits, '-', '_' or '.'"),
                ));
                continue;
            }
            None => {
                problems.push(problem(&format!("connector[{i}].name"), "required"));
                continue;
            }
        };
        let key = |k: &str| format!("connector.{name}.{k}");
        if !names.insert(name.clone()) {
            problems.push(problem(&key("name"), "another [[connector]] has this name"));
        }
        let kinds = Kind::ALL.map(Kind::as_str).join(", ");
        let kind = match c.kind.as_deref() {
            None => {
                problems.push(problem(&key("kind"), format!("required ({kinds})")));
                None
            }
            Some(k) => match Kind::parse(k) {
                Some(kind) => Some(kind),
                None => {
                    problems.push(problem(&key("kind"), format!("{k:?} is not one of {kinds}")));
                    None
                }
            },
        };
        let base_url = match (c.base_url.as_deref(), kind) {
            (Some(text), _) => BaseUrl::parse(text)
                .map_err(|why| problems.push(problem(&key("base_url"), why)))
                .ok(),
            (None, Some(kind)) => match kind.default_base_url() {
                Some(url) => BaseUrl::parse(url).ok(),
                None => {
                    problems.push(problem(
                        &key("base_url"),
                        "required for a litellm connector (the proxy's URL)",
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        let mut client_id = None;
        let credential = match kind {
            Some(Kind::Ramp) => {
                let mut file = |k: &str, path: &Option<PathBuf>| match path {
                    None => {
                        problems.push(problem(&key(k), "required for a ramp connector"));
                        None
                    }
                    Some(path) => secret_file(path)
                        .map(|s| (s, format!("{} ({})", key(k), path.display())))
                        .map_err(|why| problems.push(problem(&key(k), why)))
                        .ok(),
                };
                let id = file("client_id_file", &c.client_id_file);
                let secret = file("client_secret_file", &c.client_secret_file);
                match (id, secret) {
                    (Some((id, id_setting)), Some((secret, secret_setting))) => {
                        client_id = Some(id);
                        Some((secret, format!("{id_setting} and {secret_setting}")))
                    }
                    _ => None,
                }
            }
            Some(Kind::Brex) => match &c.token_file {
                None => {
                    problems.push(problem(&key("token_file"), "required for a brex connector"));
                    None
                }
                Some(path) => secret_file(path)
                    .map(|s| (s, format!("{} ({})", key("token_file"), path.display())))
                    .map_err(|why| problems.push(problem(&key("token_file"), why)))
                    .ok(),
            },
            _ => match (&c.api_key_file, &c.api_key_env) {
                (Some(_), Some(_)) => {
                    problems.push(problem(&key("api_key_env"), "conflicts with api_key_file"));
                    None
                }
                (Some(path), None) => match secret_file(path) {
                    Ok(secret) => {
                        Some((secret, format!("{} ({})", key("api_key_file"), path.display())))
                    }
                    Err(why) => {
                        problems.push(problem(&key("api_key_file"), why));
                        None
                    }
                },
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => {
                        Some((Secret::new(v.trim()), format!("{} (${var})", key("api_key_env"))))
                    }
                    _ => {
                        problems.push(problem(
                            &key("api_key_env"),
                            format!("the environment variable {var} is not set or empty"),
                        ));
                        None
                    }
                },
                (None, None) => {
                    problems.push(problem(&key("api_key_file"), "required (or api_key_env)"));
                    None
                }
            },
        };
        // A credential setting of another kind is a mistake worth naming, not a silent no-op.
        let keyed = !matches!(kind, Some(Kind::Ramp | Kind::Brex));
        let misplaced: [(&str, bool, bool); 5] = [
            ("api_key_file", c.api_key_file.is_some(), keyed),
            ("api_key_env", c.api_key_env.is_some(), keyed),
            ("client_id_file", c.client_id_file.is_some(), kind == Some(Kind::Ramp)),
            ("client_secret_file", c.client_secret_file.is_some(), kind == Some(Kind::Ramp)),
            ("token_file", c.token_file.is_some(), kind == Some(Kind::Brex)),
        ];
        for (k, set, allowed) in misplaced {
            if set && !allowed && kind.is_some() {
                problems.push(problem(
                    &key(k),
                    format!("not a setting of a {} connector", kind.map_or("", Kind::as_str)),
                ));
            }
        }
        let mut extra_roots = Vec::new();
        if let Some(path) = &c.ca_file {
            match read_capped(path) {
                Err(e) => {
                    problems.push(problem(&key("ca_file"), format!("{}: {e}", path.display())))
                }
                Ok(pem) => {
                    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                        Ok(certs) if certs.is_empty() => problems.push(problem(
                            &key("ca_file"),
                            format!("{}: no certificate in the file", path.display()),
                        )),
                        Ok(certs) => extra_roots = certs,
                        Err(e) => problems
                            .push(problem(&key("ca_file"), format!("{}: {e}", path.display()))),
                    }
                }
            }
        }
        let start = match c.start.as_deref() {
            None => now.saturating_sub(90 * 86_400) / 86_400 * 86_400,
            Some(text) => match crate::ingest::parse::parse_day(text) {
                Some(day) if day <= now => day,
                Some(_) => {
                    problems.push(problem(&key("start"), format!("{text:?} is in the future")));
                    now
                }
                None => {
                    problems.push(problem(&key("start"), format!("{text:?} is not YYYY-MM-DD")));
                    now
                }
            },
        };
        let mut duration = |k: &str, text: Option<&str>, default: std::time::Duration| match text {
            None => default,
            Some(t) => parse_duration(t).unwrap_or_else(|why| {
                problems.push(problem(&key(k), why));
                default
            }),
        };
        let interval =
            duration("interval", c.interval.as_deref(), std::time::Duration::from_secs(3_600));
        let overlap = duration(
            "overlap",
            c.overlap.as_deref(),
            kind.map_or(std::time::Duration::from_secs(3_600), Kind::default_overlap),
        );
        let timeout = match c.timeout_secs {
            None => std::time::Duration::from_secs(30),
            Some(s) if (1..=600).contains(&s) => std::time::Duration::from_secs(u64::from(s)),
            Some(_) => {
                problems.push(problem(&key("timeout_secs"), "must be between 1 and 600"));
                std::time::Duration::from_secs(30)
            }
        };
        if problems.len() > before {
            continue;
        }
        if let (Some(kind), Some(base_url), Some((credential, credential_setting))) =
            (kind, base_url, credential)
        {
            out.push(Settings {
                name,
                kind,
                base_url,
                credential,
                client_id,
                credential_setting,
                extra_roots,
                start,
                interval,
                overlap,
                timeout,
            });
        }
    }
    out
}

/// Where a file's bytes stop being UTF-8, said for people: the line, and what to do.
fn not_utf8(bytes: &[u8], e: &std::string::FromUtf8Error) -> String {
    let valid = e.utf8_error().valid_up_to();
    let line = 1 + bytes[..valid].iter().filter(|&&b| b == b'\n').count();
    format!("line {line} is not UTF-8 text; save the file as UTF-8 and try again")
}

/// Reads a secret from a file: trimmed, UTF-8, not empty. The error names the file.
fn secret_file(path: &Path) -> Result<Secret, String> {
    match read_capped(path).map(String::from_utf8) {
        Ok(Ok(s)) if !s.trim().is_empty() => Ok(Secret::new(s.trim())),
        Ok(Ok(_)) => Err(format!("{}: the file is empty", path.display())),
        Ok(Err(_)) => Err(format!("{}: not UTF-8", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Validates `[server]`. `top_level_max` is the older top-level `max_connections`, which may
/// be set instead of `server.max_connections` but not beside it; the flag wins over both.
fn server_limits(
    raw: ServerFile,
    flag_max: Option<u32>,
    top_level_max: Option<u32>,
    problems: &mut Vec<ConfigProblem>,
) -> crate::api::Limits {
    let d = crate::api::Limits::default();
    fn within(
        problems: &mut Vec<ConfigProblem>,
        key: &str,
        v: Option<u32>,
        max: u32,
        default: u32,
    ) -> u32 {
        match v {
            None => default,
            Some(v) if v == 0 || v > max => {
                problems.push(problem(key, format!("must be between 1 and {max}")));
                default
            }
            Some(v) => v,
        }
    }
    let secs = |v: u32| std::time::Duration::from_secs(u64::from(v));
    let handshake = within(
        problems,
        "server.handshake_timeout_secs",
        raw.handshake_timeout_secs,
        600,
        u32::try_from(d.handshake_timeout.as_secs()).unwrap_or(10),
    );
    let header = within(
        problems,
        "server.header_timeout_secs",
        raw.header_timeout_secs,
        600,
        u32::try_from(d.header_timeout.as_secs()).unwrap_or(10),
    );
    let idle = within(
        problems,
        "server.idle_timeout_secs",
        raw.idle_timeout_secs,
        24 * 3600,
        u32::try_from(d.idle_timeout.as_secs()).unwrap_or(60),
    );
    let max_connections = match (top_level_max, raw.max_connections) {
        _ if flag_max.is_some() => {
            within(problems, "max_connections", flag_max, 1_000_000, d.max_connections)
        }
        (Some(_), Some(_)) => {
            problems.push(problem(
                "server.max_connections",
                "set either max_connections or server.max_connections, not both",
            ));
            d.max_connections
        }
        (Some(v), None) => {
            within(problems, "max_connections", Some(v), 1_000_000, d.max_connections)
        }
        (None, v) => within(problems, "server.max_connections", v, 1_000_000, d.max_connections),
    };
    let per_ip = within(
        problems,
        "server.max_connections_per_ip",
        raw.max_connections_per_ip,
        1_000_000,
        d.max_connections_per_ip.min(max_connections),
    );
    if per_ip > max_connections {
        problems.push(problem(
            "server.max_connections_per_ip",
            format!("{per_ip} is more than the {max_connections} connections allowed in all"),
        ));
    }
    let imports = within(
        problems,
        "server.max_concurrent_imports",
        raw.max_concurrent_imports,
        64,
        d.max_imports,
    );
    crate::api::Limits {
        handshake_timeout: secs(handshake),
        header_timeout: secs(header),
        idle_timeout: secs(idle),
        max_connections,
        max_connections_per_ip: per_ip,
        max_imports: imports,
    }
}

/// Validates `[console.oidc]`, reading the client secret and the extra trust roots.
fn console_oidc(raw: OidcFile, problems: &mut Vec<ConfigProblem>) -> Option<OidcConfig> {
    let before = problems.len();
    let issuer = required(problems, "console.oidc.issuer", raw.issuer);
    if !issuer.is_empty()
        && let Err(why) = https_url(&issuer, false)
    {
        problems.push(problem("console.oidc.issuer", why));
    }
    let client_id = required(problems, "console.oidc.client_id", raw.client_id);
    let client_secret = match raw.client_secret_file {
        None => {
            problems.push(problem("console.oidc.client_secret_file", "required"));
            Secret::new("")
        }
        Some(path) => match read_capped(&path).map(String::from_utf8) {
            Ok(Ok(s)) if !s.trim().is_empty() => Secret::new(s.trim()),
            Ok(Ok(_)) => {
                problems.push(problem("console.oidc.client_secret_file", "the file is empty"));
                Secret::new("")
            }
            Ok(Err(_)) => {
                problems.push(problem("console.oidc.client_secret_file", "not UTF-8"));
                Secret::new("")
            }
            Err(e) => {
                problems.push(problem(
                    "console.oidc.client_secret_file",
                    format!("{}: {e}", path.display()),
                ));
                Secret::new("")
            }
        },
    };
    let redirect_url = required(problems, "console.oidc.redirect_url", raw.redirect_url);
    if !redirect_url.is_empty()
        && let Err(why) = https_url(&redirect_url, true)
    {
        problems.push(problem("console.oidc.redirect_url", why));
    }
    let groups_claim = raw.groups_claim.unwrap_or_else(|| "groups".to_owned());
    if groups_claim.trim().is_empty() {
        problems.push(problem("console.oidc.groups_claim", "must not be empty"));
    }
    let scopes =
        raw.scopes.unwrap_or_else(|| ["openid", "email", "profile"].map(str::to_owned).to_vec());
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || !s.bytes().all(is_scope_byte)) {
        problems.push(problem(
            "console.oidc.scopes",
            format!("{bad:?} is not a scope (printable ASCII, no spaces, quotes or backslashes)"),
        ));
    } else if !scopes.iter().any(|s| s == "openid") {
        problems.push(problem("console.oidc.scopes", "must include \"openid\""));
    }
    let mut roles = BTreeMap::new();
    for (group, role) in raw.roles.unwrap_or_default() {
        match role.parse::<Role>() {
            Ok(role) if !role.is_person() => problems.push(problem(
                &format!("console.oidc.roles.{group}"),
                format!(
                    "the {role} role is for {} only, not for signing in",
                    role.machine_api().unwrap_or("machines")
                ),
            )),
            Ok(role) => {
                roles.insert(group, role);
            }
            Err(why) => problems.push(problem(&format!("console.oidc.roles.{group}"), why)),
        }
    }
    let mut extra_roots = Vec::new();
    if let Some(path) = &raw.ca_file {
        match read_capped(path) {
            Err(e) => {
                problems.push(problem("console.oidc.ca_file", format!("{}: {e}", path.display())))
            }
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if certs.is_empty() => problems.push(problem(
                    "console.oidc.ca_file",
                    format!("{}: no certificate in the file", path.display()),
                )),
                Ok(certs) => extra_roots = certs,
                Err(e) => problems
                    .push(problem("console.oidc.ca_file", format!("{}: {e}", path.display()))),
            },
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(OidcConfig {
        issuer,
        client_id,
        client_secret,
        redirect_url,
        scopes,
        groups_claim,
        roles,
        extra_roots,
    })
}

/// A required string: trimmed, or a problem when missing or blank.
fn required(problems: &mut Vec<ConfigProblem>, key: &str, value: Option<String>) -> String {
    match value {
        Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
        Some(_) => {
            problems.push(problem(key, "must not be empty"));
            String::new()
        }
        None => {
            problems.push(problem(key, "required"));
            String::new()
        }
    }
}

/// A scope token per RFC 6749 section 3.3: `%x21 / %x23-5B / %x5D-7E`.
fn is_scope_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Checks an absolute `https://` URL without a fragment or user information. A `redirect`
/// URL (the console's callback) may have a query, and may be plain `http://` on a loopback
/// host (RFC 8252 section 7.3); an issuer may not.
fn https_url(text: &str, redirect: bool) -> Result<(), String> {
    let uri: hyper::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if redirect && loopback => {}
        _ => return Err(format!("{text:?} is not an https:// URL")),
    }
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    if text.contains('#') {
        return Err(format!("{text:?} has a fragment"));
    }
    if !redirect && uri.query().is_some() {
        return Err(format!("{text:?} has a query"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("{text:?} has user information"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"nowhere\"\nlog_format = \"xml\"\n").unwrap();
        let o = Overrides { tls_cert: Some("/nonexistent".into()), ..Overrides::default() };
        let err = load(Some(&file), Some("mysql://x"), None, &o).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["listen", "db", "tls_key", "log_format"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listn = \"0.0.0.0:1\"\n").unwrap();
        let err = load(Some(&file), None, None, &Overrides::default()).unwrap_err();
        assert!(err.0[0].reason.contains("listn"), "{err}");
    }

    #[test]
    fn import_mappings_are_read_and_every_bad_key_is_named_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[import]\ndrop_dir = \"/srv/drop\"\n\
             [import.expenses.generic]\ndate = \"Posted On\"\ndate_format = \"%d/%m/%Y\"\n\
             amount_sign = \"purchases_negative\"\n\
             [import.gateway.generic]\ncost = \"Cost (USD)\"\n",
        )
        .unwrap();
        let c = load(Some(&file), None, None, &Overrides::default()).unwrap();
        let m = &c.import.mappings;
        assert_eq!(m.expenses.date.as_deref(), Some("Posted On"));
        assert_eq!(m.expenses.date_format.as_ref().map(|f| f.as_str()), Some("%d/%m/%Y"));
        assert_eq!(m.gateway.cost.as_deref(), Some("Cost (USD)"));
        assert_eq!(c.import.drop_dir, Some(PathBuf::from("/srv/drop")));

        std::fs::write(
            &file,
            "[import.expenses.generic]\ndate_format = \"%d/%q/%Y\"\npayee = \"Payee\"\n\
             [import.gateway.generic]\ncurrency_default = \"dollars\"\n",
        )
        .unwrap();
        let err = load(Some(&file), None, None, &Overrides::default()).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "import.expenses.generic.date_format",
                "import.expenses.generic.payee",
                "import.gateway.generic.currency_default"
            ]
        );
        assert!(err.0[0].reason.contains("unknown directive %q"), "{err}");
        assert!(err.0[1].reason.starts_with("unknown key (known: date, amount"), "{err}");

        std::fs::write(&file, "[import.expenses.generik]\ndate = \"D\"\n").unwrap();
        let err = load(Some(&file), None, None, &Overrides::default()).unwrap_err();
        assert!(err.0[0].reason.contains("generik"), "{err}");
    }

    #[test]
    fn card_owners_are_read_and_bad_cards_are_named_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[cards]\n\"1234\" = \"Alice@Example.com\"\n").unwrap();
        let c = load(Some(&file), None, None, &Overrides::default()).unwrap();
        let owners = &c.import.mappings.expenses.owners;
        assert_eq!(owners.owner("XXXX XXXX XXXX 1234"), Some("alice@example.com"));
        assert_eq!(owners.owner("5678"), None);
        std::fs::write(&file, "[cards]\n\"12a4\" = \"a@example.com\"\n\"5678\" = \"bob\"\n")
            .unwrap();
        let err = load(Some(&file), None, None, &Overrides::default()).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["cards.12a4", "cards.5678"], "{err}");
        assert!(err.0[1].reason.contains("not an email"), "{err}");
    }

    #[test]
    fn flags_override_the_file_and_sqlite_defaults_to_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:1\"\ndata_dir = \"/srv/a\"\n").unwrap();
        let o = Overrides { listen: Some("127.0.0.1:0".into()), ..Overrides::default() };
        let long = "s".repeat(MIN_ENROLL_SECRET_BYTES);
        let c = load(Some(&file), None, Some(&long), &o).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.db, Database::Sqlite(PathBuf::from("/srv/a/aiscout.db")));
        assert_eq!(c.tls, Tls::Generated);
        assert_eq!(c.enroll_secret.unwrap().expose(), long);
    }

    #[test]
    fn an_enroll_secret_shorter_than_32_bytes_is_refused_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("enroll.secret");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, format!("enroll_secret_file = {:?}\n", secret.display().to_string()))
            .unwrap();
        // 31 bytes (surrounding whitespace does not count) is refused, 32 accepted.
        std::fs::write(&secret, format!("  {}\n", "x".repeat(31))).unwrap();
        let err = load(Some(&file), None, None, &Overrides::default()).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].key, "enroll_secret_file");
        assert!(err.0[0].reason.contains("31 bytes; it must be at least 32"), "{err}");
        assert!(!err.to_string().contains(&"x".repeat(31)), "the secret is never shown: {err}");
        std::fs::write(&secret, format!("{}\n", "x".repeat(32))).unwrap();
        assert!(load(Some(&file), None, None, &Overrides::default()).is_ok());

        let err = load(None, None, Some("short"), &Overrides::default()).unwrap_err();
        assert_eq!(err.0[0].key, "AISCOUT_ENROLL_SECRET");
        assert!(err.0[0].reason.contains("5 bytes"), "{err}");
    }

    fn load_text(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = dir.join("c.toml");
        std::fs::write(&file, text).unwrap();
        load(Some(&file), None, None, &Overrides::default())
    }

    #[test]
    fn console_oidc_is_read_with_its_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "  s3cret\n").unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["idp.example".to_owned()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        let c = load_text(dir.path(), "").unwrap();
        assert!(c.console.oidc.is_none());
        let text = format!(
            "[console.oidc]\nissuer = \"https://login.example.com\"\nclient_id = \"aiscout\"\n\
             client_secret_file = \"{}\"\n\
             redirect_url = \"https://aiscout.example.com/auth/oidc/callback\"\n\
             ca_file = \"{}\"\n\
             [console.oidc.roles]\n\"ai-admins\" = \"admin\"\n\"secops\" = \"security\"\n",
            dir.path().join("secret").display(),
            dir.path().join("ca.pem").display(),
        );
        let oidc = load_text(dir.path(), &text).unwrap().console.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://login.example.com");
        assert_eq!(oidc.client_id, "aiscout");
        assert_eq!(oidc.client_secret.expose(), "s3cret");
        assert_eq!(oidc.redirect_url, "https://aiscout.example.com/auth/oidc/callback");
        assert_eq!(oidc.groups_claim, "groups");
        assert_eq!(oidc.scopes, ["openid", "email", "profile"]);
        assert_eq!(oidc.roles["ai-admins"], Role::Admin);
        assert_eq!(oidc.roles["secops"], Role::Security);
        assert_eq!(oidc.extra_roots, [ca.cert.der().clone()]);
        assert!(!format!("{oidc:?}").contains("s3cret"), "the secret is never printed");

        let text = format!(
            "[console.oidc]\nissuer = \"https://login.example.com/tenant/\"\n\
             client_id = \"aiscout\"\nclient_secret_file = \"{}\"\n\
             redirect_url = \"http://127.0.0.1:8443/auth/oidc/callback\"\n\
             groups_claim = \"roles\"\nscopes = [\"openid\", \"groups\"]\n",
            dir.path().join("secret").display(),
        );
        let oidc = load_text(dir.path(), &text).unwrap().console.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://login.example.com/tenant/");
        assert_eq!(oidc.groups_claim, "roles");
        assert_eq!(oidc.scopes, ["openid", "groups"]);
        assert!(oidc.extra_roots.is_empty() && oidc.roles.is_empty());
    }

    #[test]
    fn server_limits_metrics_token_and_postgres_tls_are_validated_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = load_text(dir.path(), "").unwrap();
        assert_eq!(c.server, crate::api::Limits::default());
        assert!(c.metrics_token.is_none());
        std::fs::write(dir.path().join("token"), " m3trics\n").unwrap();
        let text = format!(
            "metrics_token_file = \"{}\"\n[server]\nhandshake_timeout_secs = 5\n\
             header_timeout_secs = 3\nidle_timeout_secs = 30\nmax_connections = 100\n\
             max_connections_per_ip = 10\nmax_concurrent_imports = 1\n",
            dir.path().join("token").display()
        );
        let c = load_text(dir.path(), &text).unwrap();
        let secs = std::time::Duration::from_secs;
        assert_eq!(
            c.server,
            crate::api::Limits {
                handshake_timeout: secs(5),
                header_timeout: secs(3),
                idle_timeout: secs(30),
                max_connections: 100,
                max_connections_per_ip: 10,
                max_imports: 1,
            }
        );
        assert_eq!(c.metrics_token.unwrap().expose(), "m3trics");
        // The per-address default never exceeds a smaller total.
        assert_eq!(
            load_text(dir.path(), "max_connections = 8\n").unwrap().server.max_connections_per_ip,
            8
        );

        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let text = format!(
            "max_connections = 5\nmetrics_token_file = \"{}\"\n[server]\nmax_connections = 6\n\
             handshake_timeout_secs = 0\nheader_timeout_secs = 601\nmax_concurrent_imports = 0\n\
             max_connections_per_ip = 5000\n",
            dir.path().join("empty").display()
        );
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        let err = load(
            Some(&file),
            Some("postgres://u:hunter2@db.example/x?sslmode=verify-all"),
            None,
            &Overrides::default(),
        )
        .unwrap_err();
        let got: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "db",
                "server.handshake_timeout_secs",
                "server.header_timeout_secs",
                "server.max_connections",
                "server.max_connections_per_ip",
                "server.max_concurrent_imports",
                "metrics_token_file",
            ],
            "{got:#?}"
        );
        assert!(got[0].contains("sslmode=\"verify-all\""), "{got:#?}");
        assert!(!got.iter().any(|p| p.contains("hunter2")), "{got:#?}");
        assert!(got[4].contains("5000 is more than the 4096"), "{got:#?}");
        assert!(got[6].ends_with("the file is empty"), "{got:#?}");
    }

    #[test]
    fn policy_coaching_url_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let c = load_text(dir.path(), "").unwrap();
        assert_eq!(c.policy.coaching_url, None);
        let c = load_text(
            dir.path(),
            "[policy]\ncoaching_url = \"https://Intranet.Example.com:8443/ai?from=dns\"\n",
        )
        .unwrap();
        let url = c.policy.coaching_url.unwrap();
        assert_eq!(url.host(), "intranet.example.com");
        assert_eq!(url.as_str(), "https://Intranet.Example.com:8443/ai?from=dns");
        for (bad, why) in [
            ("http://intranet.example.com/", "is not an https:// URL"),
            ("https://192.0.2.7/ai", "must be a DNS name"),
            ("https://[2001:db8::1]/ai", "must be a DNS name"),
            ("https://user@intranet.example.com/", "has user information"),
            ("https://intranet.example.com/#x", "has a fragment"),
            ("https://bad_host.example/", "is not a DNS host name"),
            ("https://intranet.example.com:x/", "has a bad port"),
        ] {
            let err = load_text(dir.path(), &format!("[policy]\ncoaching_url = \"{bad}\"\n"))
                .unwrap_err();
            assert_eq!(err.0.len(), 1, "{err}");
            assert_eq!(err.0[0].key, "policy.coaching_url");
            assert!(err.0[0].reason.contains(why), "{bad}: {err}");
        }
        let err =
            load_text(dir.path(), "[policy]\ncoaching = \"https://x.example/\"\n").unwrap_err();
        assert!(err.0[0].reason.contains("coaching"), "{err}");
    }

    #[test]
    fn policy_coaching_message_is_one_short_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_text(dir.path(), "").unwrap().policy.coaching_message, None);
        let c = load_text(
            dir.path(),
            "[policy]\ncoaching_message = \"  Ask #ai-help   for access.  \"\n",
        )
        .unwrap();
        assert_eq!(c.policy.coaching_message.as_deref(), Some("Ask #ai-help for access."));
        for (bad, why) in [
            ("\"   \"", "is empty"),
            ("\"line one\\nline two\"", "one line"),
            (&format!("\"{}\"", "x".repeat(201)), "201 characters"),
        ] {
            let err = load_text(dir.path(), &format!("[policy]\ncoaching_message = {bad}\n"))
                .unwrap_err();
            assert_eq!(err.0.len(), 1, "{err}");
            assert_eq!(err.0[0].key, "policy.coaching_message");
            assert!(err.0[0].reason.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn transparency_text_and_contact_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = load_text(
            dir.path(),
            "[transparency]\norganisation = \"\"\"\nWe run aiscout under the works agreement of 2026.\n\nQuestions: the DPO.\n\"\"\"\ncontact = \"dpo@example.com\"\n",
        )
        .unwrap();
        let t = &c.console.settings.transparency;
        assert_eq!(
            t.organisation.as_deref(),
            Some("We run aiscout under the works agreement of 2026.\n\nQuestions: the DPO.")
        );
        assert_eq!(t.contact.as_deref(), Some("dpo@example.com"));
        let c =
            load_text(dir.path(), "[transparency]\ncontact = \"https://intranet.example/dpo\"\n")
                .unwrap();
        assert_eq!(
            c.console.settings.transparency.contact.as_deref(),
            Some("https://intranet.example/dpo")
        );
        for (toml, key, why) in [
            ("organisation = \"  \"", "transparency.organisation", "is empty"),
            ("organisation = \"a\\u0007b\"", "transparency.organisation", "control character"),
            ("contact = \"the DPO\"", "transparency.contact", "not an email address"),
            ("contact = \"http://x.example/\"", "transparency.contact", "not an email address"),
        ] {
            let err = load_text(dir.path(), &format!("[transparency]\n{toml}\n")).unwrap_err();
            assert_eq!(err.0.len(), 1, "{err}");
            assert_eq!(err.0[0].key, key);
            assert!(err.0[0].reason.contains(why), "{toml}: {err}");
        }
    }

    #[test]
    fn the_policy_role_cannot_be_mapped_to_a_console_group() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s\n").unwrap();
        let text = format!(
            "[console.oidc]\nissuer = \"https://login.example.com\"\nclient_id = \"a\"\n\
             client_secret_file = \"{}\"\nredirect_url = \"https://a.example/cb\"\n\
             [console.oidc.roles]\ndns = \"policy\"\n",
            dir.path().join("secret").display(),
        );
        let err = load_text(dir.path(), &text).unwrap_err();
        assert_eq!(err.0[0].key, "console.oidc.roles.dns");
        assert!(err.0[0].reason.contains("policy API only"), "{err}");
    }

    #[test]
    fn console_oidc_problems_are_named_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = |text: &str| -> Vec<String> {
            let err = load_text(dir.path(), text).unwrap_err();
            err.0.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect()
        };
        assert_eq!(
            keys("[console.oidc]\n"),
            [
                "console.oidc.issuer: required",
                "console.oidc.client_id: required",
                "console.oidc.client_secret_file: required",
                "console.oidc.redirect_url: required",
            ]
        );
        std::fs::write(dir.path().join("empty"), " \n").unwrap();
        std::fs::write(dir.path().join("not-pem"), "hello\n").unwrap();
        let text = format!(
            "[console.oidc]\nissuer = \"http://login.example.com\"\nclient_id = \"\"\n\
             client_secret_file = \"{}\"\nredirect_url = \"https://x.example/cb#frag\"\n\
             groups_claim = \"\"\nscopes = [\"email\"]\nca_file = \"{}\"\n\
             [console.oidc.roles]\nops = \"root\"\n",
            dir.path().join("empty").display(),
            dir.path().join("not-pem").display(),
        );
        let got = keys(&text);
        let got_keys: Vec<&str> = got.iter().map(|p| p.split(": ").next().unwrap()).collect();
        assert_eq!(
            got_keys,
            [
                "console.oidc.issuer",
                "console.oidc.client_id",
                "console.oidc.client_secret_file",
                "console.oidc.redirect_url",
                "console.oidc.groups_claim",
                "console.oidc.scopes",
                "console.oidc.roles.ops",
                "console.oidc.ca_file",
            ],
            "{got:#?}"
        );
        assert!(got[0].contains("is not an https:// URL"), "{got:#?}");
        assert!(got[1].ends_with("must not be empty"), "{got:#?}");
        assert!(got[2].ends_with("the file is empty"), "{got:#?}");
        assert!(got[3].contains("has a fragment"), "{got:#?}");
        assert!(got[5].contains("must include \"openid\""), "{got:#?}");
        assert!(got[6].contains("unknown role \"root\""), "{got:#?}");
        assert!(got[7].contains("no certificate in the file"), "{got:#?}");

        let text = "[console.oidc]\nissuer = \"https://a.example/?x=1\"\n\
                    redirect_url = \"http://aiscout.example/cb\"\nclient_id = \"c\"\n\
                    client_secret_file = \"/nonexistent/secret\"\nscopes = [\"openid\", \"a b\"]\n";
        let got = keys(text);
        assert!(got[0].starts_with("console.oidc.issuer: ") && got[0].contains("has a query"));
        assert!(got[1].starts_with("console.oidc.client_secret_file: /nonexistent/secret: "));
        assert!(got[2].starts_with("console.oidc.redirect_url: ") && got[2].contains("https://"));
        assert!(got[3].starts_with("console.oidc.scopes: \"a b\" is not a scope"), "{got:#?}");

        let err =
            load_text(dir.path(), "[console.oidc]\nissuer_url = \"https://x\"\n").unwrap_err();
        assert!(err.0[0].reason.contains("issuer_url"), "{err}");
        let err = load_text(dir.path(), "[console]\nodic = 1\n").unwrap_err();
        assert!(err.0[0].reason.contains("odic"), "{err}");
    }
}
