//! Configuration of `serve` and the other subcommands: a TOML file with
//! `deny_unknown_fields`, environment variables for secrets, and flags, validated together
//! into one [`Config`] with every problem named by its key path.
//!
//! Layers, lowest first: built-in defaults, the file (`--config`), then each setting's
//! environment variable or flag (clap merges those two; a flag wins).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aiscout_wire::Secret;
use serde::Deserialize;

use crate::ingest::mapping::Mappings;

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
    /// Most connections served at once.
    pub max_connections: Option<u32>,
    /// File imports: generic column mappings and the drop folder.
    pub import: Option<ImportFile>,
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
    pub generic: Option<std::collections::BTreeMap<String, String>>,
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
    /// Connection cap.
    pub max_connections: u32,
    /// File import settings.
    pub import: ImportConfig,
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
                problems.push(problem(&path.display().to_string(), e.to_string()));
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
    let db_text = db.map(str::to_owned).or(raw.db);
    let db = match db_text.as_deref() {
        None => Database::Sqlite(data_dir.join("aiscout.db")),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
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
    let max_connections =
        positive(&mut problems, "max_connections", o.max_connections.or(raw.max_connections), 4096);
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
    let import = ImportConfig { mappings, drop_dir: o.drop_dir.clone().or(import_raw.drop_dir) };
    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    Ok(Config {
        listen,
        db,
        data_dir,
        tls,
        enroll_secret,
        catalog,
        log_format,
        rate_limit_per_minute,
        rate_limit_burst,
        max_connections,
        import,
    })
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
    fn flags_override_the_file_and_sqlite_defaults_to_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:1\"\ndata_dir = \"/srv/a\"\n").unwrap();
        let o = Overrides { listen: Some("127.0.0.1:0".into()), ..Overrides::default() };
        let c = load(Some(&file), None, Some("s"), &o).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.db, Database::Sqlite(PathBuf::from("/srv/a/aiscout.db")));
        assert_eq!(c.tls, Tls::Generated);
        assert_eq!(c.enroll_secret.unwrap().expose(), "s");
    }
}
