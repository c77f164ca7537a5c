//! The `import`, `report` and `policy` subcommands: their arguments and what they do,
//! returning the text to print so that `main` alone writes to the terminal.
//!
//! Imports go file by file; a file that cannot be imported at all is reported and the next
//! one still runs. Row errors are listed (the first hundred per file) on stderr. A progress
//! bar is drawn on stderr only when stderr is a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiscout_signatures::{Catalog, Index};
use aiscout_wire::{InventoryQuery, UnixSecs};

use crate::ingest::expense::ExpenseFormat;
use crate::ingest::file::{self, FileReport, ImportError, Input, Progress};
use crate::ingest::gateway::GatewayFormat;
use crate::ingest::mapping::{self, MappingProblem, Mappings};
use crate::ingest::parse;
use crate::join;
use crate::model::UsageFilter;
use crate::policy;
use crate::report::{self, Format};
use crate::store::{self, Store, StoreError};

/// `import ...`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Import card and expense exports (Ramp, Brex, Expensify, Concur, Amex, Chase, generic).
    Expenses {
        /// auto, ramp, brex, expensify, concur, amex, chase or generic.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Sets one key of the generic mapping, over [import.expenses.generic] in the config:
        /// a column (date, amount, currency, descriptor, merchant, payer, payer_email,
        /// department, id, type) or currency_default, date_format, amount_sign. Repeatable.
        #[arg(long = "map", value_name = "KEY=VALUE")]
        map: Vec<String>,
        /// The payer of lines whose export names no cardholder and whose card is not in
        /// `[cards]` of the config (a bank card statement).
        #[arg(long, value_name = "EMAIL")]
        cardholder: Option<String>,
        /// CSV files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import gateway and provider spend (LiteLLM, OpenRouter, OpenAI costs, Anthropic cost
    /// report, Helicone, Portkey, generic).
    Gateway {
        /// auto, litellm, openrouter, openai-costs, anthropic-cost, helicone, portkey or
        /// generic.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Sets one key of the generic mapping, over [import.gateway.generic] in the config:
        /// a column (date, provider, model, team, user, api_key, tags, tokens_in, tokens_out,
        /// tokens_total, cost, currency, id) or currency_default, provider_default,
        /// date_format. Repeatable.
        #[arg(long = "map", value_name = "KEY=VALUE")]
        map: Vec<String>,
        /// CSV or JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import the people directory (CSV: email, name, department, manager; SCIM names too).
    People {
        /// The CSV file.
        file: PathBuf,
    },
    /// Watch a drop folder: files dropped into DIR/expenses, DIR/gateway or DIR/people are
    /// imported and moved to DIR/processed, or to DIR/rejected beside a .reason file.
    Watch {
        /// The drop folder (its subfolders are created when missing).
        dir: PathBuf,
        /// Import what is waiting once and exit, instead of watching (for cron or a test).
        #[arg(long)]
        once: bool,
    },
}

/// `report ...`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// One row per product seen by any source.
    Inventory {
        /// table, csv, json, html or ocsf (JSON lines).
        #[arg(long, default_value = "table")]
        format: String,
        /// Only what was seen or paid on or after this date (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Compute as of this date instead of now (YYYY-MM-DD), for reproducible reports.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Procurement's reconciliation of spend, use and review decisions.
    Reconcile {
        /// table, csv, json or html.
        #[arg(long, default_value = "table")]
        format: String,
        /// Only what was seen or paid on or after this date (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Days without use after which a paid subscription is idle.
        #[arg(long, default_value_t = 30)]
        idle_days: u32,
        /// Compute as of this date instead of now (YYYY-MM-DD).
        #[arg(long)]
        as_of: Option<String>,
    },
}

/// What `policy export --help` teaches after the flags.
const POLICY_EXPORT_HELP: &str = "\
Only products whose current review decision is one of --status are written (blocked by
default; add --status unsanctioned for both). Sanctioned, under-review and unreviewed products
are never blocked: a domain or extension another such product also uses is held back, and an
allowed product's domain below a blocked one is let through (rpz-passthru. in the zone,
@@|| in adblock, URLAllowlist in Chrome, Exceptions in Firefox, Allowed in Defender). What is
held back, and why, goes to stderr (and into the comments of rpz, hosts and adblock).

With [policy] coaching_url = \"https://...\" in the config, a blocked product whose review names a
sanctioned alternative answers with a CNAME to that page's host in the zone instead of
NXDOMAIN.

Examples:
  policy export --format rpz --out /etc/unbound/aiscout.rpz
      Unbound:  rpz:
                  name: aiscout.rpz
                  zonefile: /etc/unbound/aiscout.rpz
      BIND:     zone \"aiscout.rpz\" { type primary; file \"/etc/bind/aiscout.rpz\"; };
                options { response-policy { zone \"aiscout.rpz\"; }; };
  policy export --format adblock --status blocked --status unsanctioned
      AdGuard Home, Pi-hole: add the file (or the API URL below) as a blocklist.
  policy export --format chrome-policy --out /etc/opt/chrome/policies/managed/aiscout.json
      Also Chromium (/etc/chromium/policies/managed/) and Edge (/etc/opt/edge/policies/managed/).
  policy export --format firefox-policy
      Merge into Firefox's policies.json (/etc/firefox/policies/ on Linux).
  policy export --format vscode-policy
      The extensions.allowed setting (policy AllowedExtensions) for VS Code and Cursor.
  policy export --format defender-indicators --out indicators.csv
  policy export --format defender-indicators --out DIR
      Defender portal: Settings > Endpoints > Indicators > Import, which takes at most 500
      indicators per file. Given a directory, the export is written as numbered files of at
      most 500 rows (aiscout-indicators-001.csv, ...; numbered files an earlier, longer export
      left there are removed); a single file refuses an export longer than that.
  policy export --format url-list
      One domain per line for a secure web gateway's custom URL category.
  policy export --format osquery --out aiscout-policies.json
      Fleet policies (fleetctl gitops) or plain osquery queries; a host fails when a blocked
      app or extension is installed.

The same exports are served over HTTPS for tools that fetch them:
  GET /api/v1/policy/FORMAT[?status=blocked&status=unsanctioned]
  GET /api/v1/policy/defender-indicators?page=N   (file N of the numbered files, from 1; the
      aiscout-pages header says how many there are)
with a token from `aiscout-collector token create --role policy --name NAME`
(Authorization: Bearer TOKEN); answers carry an ETag, and If-None-Match gets 304.";

/// `policy ...`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Write the current review decisions as a blocklist or policy file: a DNS response policy
    /// zone, hosts or adblock lists, Chrome, Firefox or VS Code policies, Defender indicators,
    /// a URL list, or osquery/Fleet policies.
    #[command(after_long_help = POLICY_EXPORT_HELP)]
    Export {
        /// The output format.
        #[arg(long, value_enum)]
        format: policy::Format,
        /// A decision to enforce: blocked or unsanctioned; repeatable [default: blocked].
        #[arg(long = "status", value_name = "STATUS", value_parser = policy::Status::parse)]
        statuses: Vec<policy::Status>,
        /// Write to FILE (replaced atomically, so a DNS server reloading it never reads half
        /// a zone) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Why a subcommand failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some files could not be imported at all (the others were).
    #[error("{failed} of {total} files could not be imported")]
    Files {
        /// Files that failed.
        failed: usize,
        /// Files given.
        total: usize,
    },
    /// The built-in catalog does not validate (a build of a broken source tree).
    #[error("catalog: {error}")]
    BuiltinCatalog {
        /// Every problem in the built-in sources.
        error: aiscout_signatures::source::SourceErrors,
    },
    /// The catalog artifact could not be loaded.
    #[error("catalog: {path}: {error}")]
    Catalog {
        /// The artifact file.
        path: PathBuf,
        /// Why.
        error: CatalogFileError,
    },
    /// Rendering JSON failed.
    #[error("json: {0}")]
    Json(serde_json::Error),
    /// Writing an output file failed.
    #[error("{path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Why a catalog artifact file could not be loaded (inside [`CommandError::Catalog`]).
// Each cause is in the message, not returned from `source()` (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogFileError {
    /// The file could not be read (or is too large).
    #[error("{0}")]
    Read(std::io::Error),
    /// The file is not a well-formed artifact.
    #[error("{0}")]
    Format(aiscout_signatures::artifact::FormatError),
    /// The artifact's payload is not a catalog.
    #[error("{0}")]
    Payload(aiscout_signatures::artifact::PayloadError),
}

// Not `#[from]`, which would also make the error the variant's `source()`: its text is in the
// message already (issue 18: each cause once).
impl From<serde_json::Error> for CommandError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl CommandError {
    /// True for errors the user made in the arguments (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, CommandError::Usage(_))
    }
}

/// What to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// For stdout.
    pub stdout: String,
    /// For stderr, one line each.
    pub stderr: Vec<String>,
}

/// The catalog to match against: the configured artifact, else the built-in one.
///
/// # Errors
/// The artifact cannot be read or decoded.
pub fn catalog(path: Option<&Path>) -> Result<Catalog, CommandError> {
    match path {
        None => Catalog::builtin().map_err(|error| CommandError::BuiltinCatalog { error }),
        Some(path) => {
            let failed = |error| CommandError::Catalog { path: path.to_owned(), error };
            let bytes =
                crate::config::read_capped(path).map_err(|e| failed(CatalogFileError::Read(e)))?;
            let parts = aiscout_signatures::artifact::split(&bytes)
                .map_err(|e| failed(CatalogFileError::Format(e)))?;
            aiscout_signatures::artifact::decode_payload(parts.header.version, parts.payload)
                .map_err(|e| failed(CatalogFileError::Payload(e)))
        }
    }
}

fn progress_bar(
    input: &Input,
    enabled: bool,
) -> (Option<Progress>, Option<indicatif::ProgressBar>) {
    if !enabled || !std::io::stderr().is_terminal() {
        return (None, None);
    }
    let bar = indicatif::ProgressBar::new(input.size().unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(input.name());
    let b = bar.clone();
    (Some(Arc::new(move |pos| b.set_position(pos))), Some(bar))
}

fn summary(out: &mut Output, result: Result<FileReport, ImportError>, failed: &mut usize) {
    match result {
        Ok(r) => {
            out.stdout.push_str(&r.to_string());
            out.stdout.push('\n');
            out.stderr.extend(r.tally.errors.iter().map(|e| format!("error: {e}")));
            let shown = u64::try_from(r.tally.errors.len()).unwrap_or(u64::MAX);
            if r.tally.error_count > shown {
                out.stderr.push(format!(
                    "error: {}: {} more malformed rows not listed",
                    r.file,
                    r.tally.error_count - shown
                ));
            }
        }
        Err(e) => {
            *failed += 1;
            out.stderr.push(format!("error: {e}"));
        }
    }
}

/// Runs an import subcommand.
///
/// # Errors
/// A bad `--format`, or some files could not be imported at all (the output still lists what
/// was done; see [`CommandError::Files`]).
pub async fn import<S: Store>(
    store: &S,
    catalog: Catalog,
    command: ImportCommand,
    mappings: &Mappings,
    progress: bool,
) -> Result<Output, (Output, CommandError)> {
    let index = Arc::new(Index::new(catalog));
    let mut out = Output::default();
    let mut failed = 0;
    let now = store::now();
    let total;
    match command {
        ImportCommand::Expenses { format, map, cardholder, files } => {
            let mut mapping = mappings.expenses.clone();
            for arg in &map {
                mapping_flag(arg, |k, v| mapping.set(k, v)).map_err(|e| (Output::default(), e))?;
            }
            if let Some(email) = &cardholder {
                mapping.owners.set_cardholder(email).map_err(|p| {
                    (Output::default(), CommandError::Usage(format!("--cardholder: {}", p.reason)))
                })?;
            }
            let format = match format.as_str() {
                "auto" => None,
                f => Some(ExpenseFormat::parse(f).ok_or_else(|| {
                    (
                        Output::default(),
                        CommandError::Usage(format!("unknown expense format {f:?}")),
                    )
                })?),
            };
            total = files.len();
            for path in files {
                let input = Input::Path(path);
                let (p, bar) = progress_bar(&input, progress);
                let r = file::expenses(store, Arc::clone(&index), input, format, &mapping, p, now)
                    .await;
                if let Ok(report) = &r {
                    file::record(store, "expenses", crate::review::CLI_ACTOR, report, now).await;
                }
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                summary(&mut out, r, &mut failed);
            }
        }
        ImportCommand::Gateway { format, map, files } => {
            let mut mapping = mappings.gateway.clone();
            for arg in &map {
                mapping_flag(arg, |k, v| mapping.set(k, v)).map_err(|e| (Output::default(), e))?;
            }
            let format = match format.as_str() {
                "auto" => None,
                f => Some(GatewayFormat::parse(f).ok_or_else(|| {
                    (
                        Output::default(),
                        CommandError::Usage(format!("unknown gateway format {f:?}")),
                    )
                })?),
            };
            total = files.len();
            for path in files {
                let input = Input::Path(path);
                let (p, bar) = progress_bar(&input, progress);
                let r =
                    file::gateway(store, Arc::clone(&index), input, format, &mapping, p, now).await;
                if let Ok(report) = &r {
                    file::record(store, "gateway", crate::review::CLI_ACTOR, report, now).await;
                }
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                summary(&mut out, r, &mut failed);
            }
        }
        ImportCommand::People { file: path } => {
            total = 1;
            let r = file::people(store, Input::Path(path)).await;
            if let Ok(report) = &r {
                file::record(store, "people", crate::review::CLI_ACTOR, report, now).await;
            }
            summary(&mut out, r, &mut failed);
        }
        ImportCommand::Watch { .. } => {
            let e = CommandError::Usage("import watch is run by main, not as a one-shot".into());
            return Err((Output::default(), e));
        }
    }
    if failed > 0 {
        return Err((out, CommandError::Files { failed, total }));
    }
    Ok(out)
}

/// Applies one `--map KEY=VALUE` flag with `set`.
fn mapping_flag(
    arg: &str,
    set: impl FnOnce(&str, &str) -> Result<(), MappingProblem>,
) -> Result<(), CommandError> {
    let (key, value) = mapping::split_flag(arg)
        .map_err(|p| CommandError::Usage(format!("--map {arg:?}: {}", p.reason)))?;
    set(key, value).map_err(|p| CommandError::Usage(format!("--map {}: {}", p.key, p.reason)))
}

fn day_arg(name: &str, value: Option<&str>) -> Result<Option<i64>, CommandError> {
    value
        .map(|v| {
            parse::parse_day(v).ok_or_else(|| {
                CommandError::Usage(format!("--{name}: not a date (YYYY-MM-DD): {v:?}"))
            })
        })
        .transpose()
}

fn format_arg(value: &str, allowed: &[Format]) -> Result<Format, CommandError> {
    Format::parse(value)
        .filter(|f| allowed.contains(f))
        .ok_or_else(|| CommandError::Usage(format!("unknown report format {value:?}")))
}

/// Runs a report subcommand.
///
/// # Errors
/// A bad argument, or a store read fails.
pub async fn report<S: Store>(
    store: &S,
    catalog: &Catalog,
    risk: &aiscout_signatures::RiskWeights,
    command: ReportCommand,
) -> Result<Output, CommandError> {
    match command {
        ReportCommand::Inventory { format, since, as_of } => {
            let format = format_arg(
                &format,
                &[Format::Table, Format::Csv, Format::Json, Format::Html, Format::Ocsf],
            )?;
            let since = day_arg("since", since.as_deref())?;
            // As of a date means the end of that day.
            let now = day_arg("as-of", as_of.as_deref())?.map_or_else(store::now, |d| d + 86_399);
            let filter = UsageFilter { since: since.map(UnixSecs), ..UsageFilter::default() };
            let facts = join::gather(store, filter, now, join::Purpose::Inventory).await?;
            let query = InventoryQuery { since, ..InventoryQuery::default() };
            let rows = join::inventory(catalog, risk, &query, &facts);
            let stdout = match format {
                Format::Json => {
                    let mut s =
                        serde_json::to_string_pretty(&aiscout_wire::InventoryList { rows })?;
                    s.push('\n');
                    s
                }
                Format::Ocsf => {
                    let sightings = store.device_sightings(since).await?;
                    report::ocsf::lines(&rows, &sightings, now)
                }
                Format::Csv => report::csv(&report::inventory_sheet(&rows)),
                Format::Html => report::html("AI inventory", &[report::inventory_sheet(&rows)]),
                Format::Table => report::table(&[report::inventory_sheet(&rows)]),
            };
            Ok(Output { stdout, stderr: Vec::new() })
        }
        ReportCommand::Reconcile { format, since, idle_days, as_of } => {
            let format =
                format_arg(&format, &[Format::Table, Format::Csv, Format::Json, Format::Html])?;
            let since = day_arg("since", since.as_deref())?;
            let now = day_arg("as-of", as_of.as_deref())?.map_or_else(store::now, |d| d + 86_399);
            let filter = UsageFilter { since: since.map(UnixSecs), ..UsageFilter::default() };
            let facts = join::gather(store, filter, now, join::Purpose::Reconcile).await?;
            let rec = join::reconcile::reconcile(catalog, &facts, idle_days);
            let stdout = match format {
                Format::Json => {
                    let mut s = serde_json::to_string_pretty(&rec)?;
                    s.push('\n');
                    s
                }
                Format::Csv => report::csv(&report::long(&report::reconcile_sheets(&rec))),
                Format::Html => {
                    report::html("AI spend reconciliation", &report::reconcile_sheets(&rec))
                }
                _ => report::table(&report::reconcile_sheets(&rec)),
            };
            Ok(Output { stdout, stderr: Vec::new() })
        }
    }
}

/// Runs a policy subcommand: the current reviews through [`policy::export`].
///
/// # Errors
/// A store read fails, or `--out` cannot be written.
pub async fn policy<S: Store>(
    store: &S,
    catalog: &Catalog,
    settings: &policy::Settings,
    command: PolicyCommand,
) -> Result<Output, CommandError> {
    let PolicyCommand::Export { format, statuses, out } = command;
    let selection = policy::Selection::new(statuses);
    let reviews = store.reviews().await?;
    let plan = policy::plan(catalog, &reviews, &selection, settings);
    let export = policy::render(&plan, format);
    let mut stderr: Vec<String> = export.notes.iter().map(|n| format!("note: {n}")).collect();
    let stdout = match out {
        None => export.body,
        Some(dir) if format == policy::Format::DefenderIndicators && dir.is_dir() => {
            let files = policy::render_files(&plan, format);
            let written = write_numbered(&dir, &files)?;
            stderr.push(format!(
                "wrote {} file(s) of at most {} indicators each to {} ({}): {} product(s), {} \
                 domain(s) blocked, {} exception(s), {} held back",
                written.len(),
                policy::DEFENDER_ROWS_PER_FILE,
                dir.display(),
                format,
                plan.blocked.len(),
                plan.blocked.iter().map(|b| b.domains.len()).sum::<usize>(),
                plan.exceptions.len(),
                export.held_back
            ));
            stderr.extend(written.iter().map(|p| format!("wrote {}", p.display())));
            String::new()
        }
        Some(path) if path.is_dir() => {
            return Err(CommandError::Usage(format!(
                "--out {}: is a directory; only defender-indicators writes numbered files into \
                 a directory, {format} writes one file",
                path.display()
            )));
        }
        Some(path) => {
            if format == policy::Format::DefenderIndicators
                && policy::render_files(&plan, format).len() > 1
            {
                return Err(CommandError::Usage(format!(
                    "--out {}: this export has more than {} indicators, more than Defender \
                     imports from one file; give --out an existing directory to write numbered \
                     files (aiscout-indicators-001.csv, ...)",
                    path.display(),
                    policy::DEFENDER_ROWS_PER_FILE
                )));
            }
            write_atomically(&path, export.body.as_bytes())
                .map_err(|error| CommandError::Write { path: path.clone(), error })?;
            stderr.push(format!(
                "wrote {} ({format}): {} product(s), {} domain(s) blocked, {} exception(s), {} \
                 held back",
                path.display(),
                plan.blocked.len(),
                plan.blocked.iter().map(|b| b.domains.len()).sum::<usize>(),
                plan.exceptions.len(),
                export.held_back
            ));
            String::new()
        }
    };
    Ok(Output { stdout, stderr })
}

/// The name of Defender indicator file `n` (from 1) in a `--out DIR` export.
fn numbered_name(n: usize) -> String {
    format!("aiscout-indicators-{n:03}.csv")
}

/// Writes `files` as `aiscout-indicators-001.csv`, `-002`, ... into `dir` (each atomically),
/// then removes numbered files a longer earlier export left behind, so importing every
/// numbered file in the folder imports exactly this export.
fn write_numbered(dir: &Path, files: &[String]) -> Result<Vec<PathBuf>, CommandError> {
    let mut written = Vec::new();
    for (i, body) in files.iter().enumerate() {
        let path = dir.join(numbered_name(i + 1));
        write_atomically(&path, body.as_bytes())
            .map_err(|error| CommandError::Write { path: path.clone(), error })?;
        written.push(path);
    }
    let read = std::fs::read_dir(dir)
        .map_err(|error| CommandError::Write { path: dir.to_path_buf(), error })?;
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name
            .strip_prefix("aiscout-indicators-")
            .and_then(|rest| rest.strip_suffix(".csv"))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > files.len() && name == numbered_name(n));
        if stale {
            std::fs::remove_file(entry.path())
                .map_err(|error| CommandError::Write { path: entry.path(), error })?;
        }
    }
    Ok(written)
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, then renames it over
/// `path`: a reader sees the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // The temporary file may not exist; either way the error reported is the first one.
        let _removed = std::fs::remove_file(&tmp);
    }
    result
}

/// `overlay ...`: the organisation overlay (issue 17), the organisation's own AI tools and
/// its sanctioned gateways, which the collector signs with `overlay.key` for agents.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum OverlayCommand {
    /// Print the overlay's version, products and gateways, and the public key agents pin.
    Show,
    /// Add an organisation product, or change the one with this id (the fields these flags
    /// set are replaced; indicators set through the API stay). Example: overlay add-product --id org.helpdesk-bot --name "Helpdesk
    /// Bot" --category chat --web-domain helpbot.corp.example --process helpbot
    AddProduct {
        /// Id in the organisation namespace: `org.` then a-z, 0-9, '-' and '.'.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// api, audio, chat, coding, gateway, image, local-runtime, meeting, search, video
        /// or writing.
        #[arg(long, default_value = "chat")]
        category: String,
        /// Vendor shown beside the name [default: Organisation].
        #[arg(long, default_value = "")]
        vendor: String,
        /// A domain used in a browser (matches its subdomains too). Repeatable.
        #[arg(long = "web-domain", value_name = "DOMAIN")]
        web_domains: Vec<String>,
        /// A domain programs call (an API host). Repeatable.
        #[arg(long = "api-domain", value_name = "DOMAIN")]
        api_domains: Vec<String>,
        /// A process name the agent sees running. Repeatable.
        #[arg(long = "process", value_name = "NAME")]
        process_names: Vec<String>,
        /// A command-line tool name. Repeatable.
        #[arg(long = "cli", value_name = "NAME")]
        cli_names: Vec<String>,
    },
    /// Add a sanctioned gateway, or replace the one with this id. Traffic from a device
    /// straight to the API of a product it fronts is then reported as bypass. Example:
    /// overlay add-gateway --id org.llm-gateway --host llm.corp.example --fronts openai.api
    /// --fronts anthropic.api
    AddGateway {
        /// Id in the organisation namespace (`org.llm-gateway`).
        #[arg(long)]
        id: String,
        /// The gateway's host name, one name without '*'.
        #[arg(long)]
        host: String,
        /// A vendor catalog product id whose API it fronts (`openai.api`). Repeatable, or
        /// comma separated.
        #[arg(long, required = true, value_delimiter = ',')]
        fronts: Vec<String>,
    },
    /// Remove the product or gateway with this id.
    Remove {
        /// Its id (`org.helpdesk-bot`).
        id: String,
    },
    /// Print the overlay document as JSON, the body `PUT /api/v1/overlay/document` takes
    /// (keep it in version control, edit it, and put it back).
    Export,
}

/// `overlay ...`: reads, or changes the stored overlay through the same validated, audited
/// write as the API and the console ([`crate::api::overlay::edit`]). `public_key` is the
/// overlay public key when the collector has one (for `show`).
///
/// # Errors
/// A refused change (naming the field), or a store failure.
pub async fn overlay<S: Store>(
    store: &S,
    catalog: &Catalog,
    public_key: Option<&str>,
    command: OverlayCommand,
) -> Result<Output, CommandError> {
    use crate::api::overlay::{Edit, ProductFields, WriteError, edit, stored};
    let refused = |e: WriteError| match e {
        WriteError::Store(e) => CommandError::Store(e),
        other => CommandError::Usage(format!("overlay not changed: {other}")),
    };
    let change = match command {
        OverlayCommand::Show => {
            let mut out = String::new();
            let key = public_key.unwrap_or("none (serve creates overlay.key in the data folder)");
            out.push_str(&format!("overlay public key (agents' overlay_key): {key}\n"));
            match stored(store, catalog).await.map_err(refused)? {
                None => out.push_str("no overlay written yet\n"),
                Some(o) => {
                    out.push_str(&format!("version {}\n", o.version()));
                    out.push_str(&format!("products ({}):\n", o.products().len()));
                    for p in o.products() {
                        let domains: Vec<String> = p
                            .domains
                            .iter()
                            .map(|d| format!("{} ({})", d.pattern, d.usage.as_str()))
                            .collect();
                        out.push_str(&format!(
                            "  {}\t{}\t{}\t{}\n",
                            p.id,
                            p.name,
                            p.category.as_str(),
                            domains.join(", ")
                        ));
                    }
                    out.push_str(&format!("gateways ({}):\n", o.gateways().len()));
                    for g in o.gateways() {
                        out.push_str(&format!(
                            "  {}\t{}\tfronts {}\n",
                            g.id,
                            g.host,
                            g.fronts.join(", ")
                        ));
                    }
                }
            }
            return Ok(Output { stdout: out, stderr: Vec::new() });
        }
        OverlayCommand::Export => {
            let document = match store.overlay().await? {
                Some((_, d)) => serde_json::from_str(&d)?,
                None => serde_json::json!({"products": [], "gateways": []}),
            };
            let text = serde_json::to_string_pretty(&document)?;
            return Ok(Output { stdout: text + "\n", stderr: Vec::new() });
        }
        OverlayCommand::AddProduct {
            id,
            name,
            category,
            vendor,
            web_domains,
            api_domains,
            process_names,
            cli_names,
        } => Edit::Product(ProductFields {
            id,
            name,
            vendor,
            category,
            web_domains,
            api_domains,
            process_names,
            cli_names,
        }),
        OverlayCommand::AddGateway { id, host, fronts } => {
            let fronts = fronts.into_iter().map(|f| f.trim().to_owned()).collect();
            Edit::Gateway(aiscout_signatures::Gateway { id, host, fronts })
        }
        OverlayCommand::Remove { id } => Edit::Remove(id),
    };
    let version = edit(store, catalog, crate::review::CLI_ACTOR, &change).await.map_err(refused)?;
    Ok(Output {
        stdout: format!(
            "overlay version {version} written; agents fetch it on their next heartbeat\n"
        ),
        stderr: Vec::new(),
    })
}
