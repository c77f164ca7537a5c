//! Pull connectors (issue 16): spend pulled from vendor APIs on a schedule instead of files
//! carried by hand. `[[connector]]` entries in the config become [`Settings`]; `sync` and
//! `serve` call [`run`] for each.
//!
//! Design constraints:
//! - **The same idempotent path as files.** A page's records are flattened and parsed by the
//!   gateway import's own parser ([`crate::ingest::gateway`], the same format and source name
//!   as the matching file export) and stored by [`Store::add_gateway_spend`], whose dedupe key
//!   (request id, or a hash of every field of a bucket row) makes a re-pull, an overlap or a
//!   file import of the same rows count once. The card connectors (Ramp, Brex) write their
//!   transactions as rows of the vendor's CSV export columns, parsed by the expense import's
//!   parser ([`crate::ingest::expense`]) and stored by [`Store::add_expenses`], keyed by the
//!   transaction id.
//! - **A page whole or not at all.** A page is stored in one transaction. A page that does not
//!   match the vendor's documented shape, or any record of it that the parser refuses, fails
//!   the run naming the page and the field; nothing of that page is stored.
//! - **Streams, a cursor each, in the database.** A connector pulls one or more streams
//!   ([`Kind::streams`]: OpenAI costs and completions usage, ...), in order. The first
//!   stream's cursor is keyed by the connector's name (as before there were streams), the
//!   others by `NAME/STREAM`. A cursor moves (forward only) after its stream pulled its whole
//!   window; a failed or killed stream leaves it, fails the run, and the next run asks again
//!   from the cursor minus the overlap window. Pages committed before the failure are found
//!   again as already known. The other streams still run after a failed one (each has its
//!   own cursor), except after a refused credential or a TLS failure.
//! - **Bounded everything.** Every request has a timeout; 5xx answers and network errors are
//!   retried with exponential backoff and jitter, a 429 after its `Retry-After` (capped), at
//!   most [`http::MAX_ATTEMPTS`] times; a run reads at most [`MAX_PAGES`] pages of at most
//!   [`http::MAX_BODY_BYTES`] each.
//! - **Credentials never leave the request.** They are held as [`Secret`]; errors name the
//!   setting that holds a refused credential, never its value.
//!
//! The vendors' documented request and response shapes, with their sources, are in
//! `VENDORS.md` beside this file.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiscout_signatures::Index;
use aiscout_wire::Secret;
use rustls::pki_types::CertificateDer;

use crate::ingest::expense::{self, ExpenseFormat, ExpenseParser};
use crate::ingest::gateway::{self, GatewayFormat, GatewayParser, Layout};
use crate::ingest::table::Header;
use crate::ingest::{RowError, Tally};
use crate::model::{GatewaySpend, ImportRun};
use crate::store::{Store, StoreError};

pub mod anthropic;
pub mod brex;
pub mod http;
pub mod litellm;
pub mod openai;
pub mod openrouter;
pub mod ramp;

/// Most pages one run reads (a bound, not an expected size: 10 M LiteLLM rows).
pub const MAX_PAGES: u32 = 100_000;

/// A connector kind: which vendor API it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anthropic Admin API: cost report, messages and Claude Code usage reports.
    Anthropic,
    /// Brex API primary card transactions.
    Brex,
    /// A LiteLLM proxy's spend logs.
    Litellm,
    /// OpenAI Admin API organization costs.
    Openai,
    /// OpenRouter activity.
    Openrouter,
    /// Ramp developer API card transactions.
    Ramp,
}

/// What a connector's records are imported as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Gateway spend, parsed as this file format.
    Gateway(GatewayFormat),
    /// Expense lines, parsed as this file format.
    Expense(ExpenseFormat),
}

impl Kind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [Kind; 6] =
        [Kind::Openai, Kind::Anthropic, Kind::Litellm, Kind::Openrouter, Kind::Ramp, Kind::Brex];

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Anthropic => "anthropic",
            Kind::Brex => "brex",
            Kind::Litellm => "litellm",
            Kind::Openai => "openai",
            Kind::Openrouter => "openrouter",
            Kind::Ramp => "ramp",
        }
    }

    /// The kind called `name` in the config.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The vendor's API, when it has one fixed address (a LiteLLM proxy is the customer's).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Kind::Anthropic => Some("https://api.anthropic.com"),
            Kind::Brex => Some("https://api.brex.com"),
            Kind::Litellm => None,
            Kind::Openai => Some("https://api.openai.com"),
            Kind::Openrouter => Some("https://openrouter.ai"),
            Kind::Ramp => Some("https://api.ramp.com"),
        }
    }

    /// How far back each run asks again by default: the cost reports are daily buckets, so
    /// two days; LiteLLM writes a spend log row within seconds of its request, so an hour;
    /// card transactions clear days after the swipe, so a week.
    pub fn default_overlap(self) -> Duration {
        match self {
            Kind::Anthropic | Kind::Openai | Kind::Openrouter => Duration::from_secs(2 * 86_400),
            Kind::Litellm => Duration::from_secs(3_600),
            Kind::Brex | Kind::Ramp => Duration::from_secs(7 * 86_400),
        }
    }

    /// The streams a run pulls, in order. The first one's cursor is kept under the
    /// connector's name (the key it had when each connector pulled one stream), the others
    /// under `NAME/STREAM` ([`Stream::cursor_key`]).
    pub fn streams(self) -> &'static [Stream] {
        match self {
            Kind::Anthropic => &[
                Stream::AnthropicCostReport,
                Stream::AnthropicMessagesUsage,
                Stream::AnthropicClaudeCode,
            ],
            Kind::Brex => &[Stream::BrexTransactions],
            Kind::Litellm => &[Stream::LitellmSpendLogs],
            Kind::Openai => &[Stream::OpenaiCosts, Stream::OpenaiCompletionsUsage],
            Kind::Openrouter => &[Stream::OpenrouterActivity],
            Kind::Ramp => &[Stream::RampTransactions],
        }
    }
}

/// One stream of a connector: an endpoint walked page by page, stored through one import
/// format, with its own cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Anthropic Admin API Claude Code usage report (tokens per user or API key and day).
    AnthropicClaudeCode,
    /// Anthropic Admin API cost report.
    AnthropicCostReport,
    /// Anthropic Admin API messages usage report (tokens per workspace, API key, user
    /// account and model).
    AnthropicMessagesUsage,
    /// Brex primary card transactions.
    BrexTransactions,
    /// LiteLLM spend logs.
    LitellmSpendLogs,
    /// OpenAI Admin API completions usage (tokens, no cost).
    OpenaiCompletionsUsage,
    /// OpenAI Admin API organization costs.
    OpenaiCosts,
    /// OpenRouter activity.
    OpenrouterActivity,
    /// Ramp card transactions.
    RampTransactions,
}

impl Stream {
    /// The connector kind that pulls it.
    pub fn kind(self) -> Kind {
        match self {
            Stream::AnthropicClaudeCode
            | Stream::AnthropicCostReport
            | Stream::AnthropicMessagesUsage => Kind::Anthropic,
            Stream::BrexTransactions => Kind::Brex,
            Stream::LitellmSpendLogs => Kind::Litellm,
            Stream::OpenaiCosts | Stream::OpenaiCompletionsUsage => Kind::Openai,
            Stream::OpenrouterActivity => Kind::Openrouter,
            Stream::RampTransactions => Kind::Ramp,
        }
    }

    /// Its short name, in progress lines and in the cursor key of a stream after the first.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::AnthropicClaudeCode => "claude-code",
            Stream::AnthropicCostReport => "cost-report",
            Stream::AnthropicMessagesUsage => "messages-usage",
            Stream::BrexTransactions | Stream::RampTransactions => "transactions",
            Stream::LitellmSpendLogs => "spend-logs",
            Stream::OpenaiCompletionsUsage => "usage",
            Stream::OpenaiCosts => "costs",
            Stream::OpenrouterActivity => "activity",
        }
    }

    /// The key of its cursor for the connector named `connector`: the name itself for the
    /// kind's first stream (so that cursors stored before streams existed stay valid),
    /// `NAME/STREAM` for the others (a `/` is never part of a configured name).
    pub fn cursor_key(self, connector: &str) -> String {
        if self.kind().streams().first() == Some(&self) {
            connector.to_owned()
        } else {
            format!("{connector}/{}", self.as_str())
        }
    }

    /// The import format its records are parsed as (and stored under).
    pub fn target(self) -> Target {
        match self {
            Stream::AnthropicCostReport => Target::Gateway(GatewayFormat::AnthropicCost),
            Stream::AnthropicClaudeCode | Stream::AnthropicMessagesUsage => {
                Target::Gateway(GatewayFormat::AnthropicUsage)
            }
            Stream::BrexTransactions => Target::Expense(ExpenseFormat::Brex),
            Stream::LitellmSpendLogs => Target::Gateway(GatewayFormat::Litellm),
            Stream::OpenaiCompletionsUsage => Target::Gateway(GatewayFormat::OpenaiUsage),
            Stream::OpenaiCosts => Target::Gateway(GatewayFormat::OpenaiCosts),
            Stream::OpenrouterActivity => Target::Gateway(GatewayFormat::Openrouter),
            Stream::RampTransactions => Target::Expense(ExpenseFormat::Ramp),
        }
    }

    /// Whether the vendor reports whole UTC days (asked for as whole, finished days only).
    fn daily(self) -> bool {
        matches!(
            self,
            Stream::AnthropicClaudeCode
                | Stream::AnthropicCostReport
                | Stream::AnthropicMessagesUsage
                | Stream::OpenaiCompletionsUsage
                | Stream::OpenaiCosts
                | Stream::OpenrouterActivity
        )
    }

    /// Whether its rows name people and teams by the vendor's ids, which the vendor's users
    /// and projects or teams lists ([`Names`]) turn into emails and names.
    fn named(self) -> bool {
        matches!(
            self,
            Stream::AnthropicMessagesUsage
                | Stream::LitellmSpendLogs
                | Stream::OpenaiCompletionsUsage
                | Stream::OpenaiCosts
        )
    }

    /// The response, as a shape error names it.
    fn what(self) -> &'static str {
        match self {
            Stream::AnthropicClaudeCode => "claude code usage report",
            Stream::AnthropicCostReport => "cost report",
            Stream::AnthropicMessagesUsage => "usage report",
            Stream::BrexTransactions | Stream::RampTransactions => "transactions",
            Stream::LitellmSpendLogs => "spend logs",
            Stream::OpenaiCompletionsUsage => "completions usage",
            Stream::OpenaiCosts => "organization costs",
            Stream::OpenrouterActivity => "activity",
        }
    }
}

/// The vendor's names for its ids, read once per run from its users and projects (OpenAI),
/// users and workspaces (Anthropic) or users and teams (LiteLLM) lists. They are applied to a row after its dedupe key is made
/// from the vendor's record, so a renamed project or a changed email never makes a row new.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    /// User id to email.
    pub users: std::collections::HashMap<String, String>,
    /// Project or team id to its name.
    pub teams: std::collections::HashMap<String, String>,
}

impl Names {
    /// Puts the email for a user id and the name for a team or project id into `row`.
    fn apply(&self, row: &mut GatewaySpend) {
        if let Some(email) = self.users.get(&row.user) {
            row.user.clone_from(email);
        }
        if let Some(name) = self.teams.get(&row.team) {
            row.team.clone_from(name);
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (the vendors' RFC 3339 query parameters).
pub(crate) fn rfc3339(secs: i64) -> String {
    litellm::datetime(secs).replace(' ', "T") + "Z"
}

/// Parses `90s`, `15m`, `1h` or `2d` (a whole number and one unit).
///
/// # Errors
/// Anything else, or zero, or more than a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a duration such as 90s, 15m, 1h or 2d");
    let unit = t.chars().last().ok_or_else(bad)?;
    let secs_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let number: u64 = t.get(..t.len() - 1).and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let secs = number.checked_mul(secs_per).ok_or_else(bad)?;
    if secs == 0 || secs > 366 * 86_400 {
        return Err(format!("{text:?} must be between 1s and 366d"));
    }
    Ok(Duration::from_secs(secs))
}

/// A validated `base_url`: scheme, host, port and path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https` (else plain HTTP, to a loopback host only).
    pub https: bool,
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `HOST[:PORT]` as written, for the `host` header.
    pub authority: String,
    /// Path prefix without a trailing slash (`""` for none).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses and checks a base URL: `https://`, or `http://` to `127.0.0.1`, `::1` or
    /// `localhost`; no user information, query or fragment.
    ///
    /// # Errors
    /// The reason, for the config problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: hyper::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{text:?} is not an http(s):// URL")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err("user information in the URL; put the key in api_key_file".to_owned());
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(format!("{text:?} has a query or fragment"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let loopback = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !https && !loopback {
            return Err(format!(
                "{text:?}: http:// is accepted for a loopback host only (127.0.0.1, ::1, \
                 localhost); use https://"
            ));
        }
        Ok(BaseUrl {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            host,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// One validated `[[connector]]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Unique name.
    pub name: String,
    /// Vendor API.
    pub kind: Kind,
    /// Where the documented paths are appended.
    pub base_url: BaseUrl,
    /// The API key (Brex: the token; Ramp: the client secret).
    pub credential: Secret,
    /// Ramp's OAuth client id (`client_id_file`); `None` for the other kinds.
    pub client_id: Option<Secret>,
    /// The setting (and file or variable) that holds the key, for a 401 or 403 message.
    pub credential_setting: String,
    /// Extra trust roots (`ca_file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// First second the first run asks for.
    pub start: i64,
    /// How often `serve` runs it.
    pub interval: Duration,
    /// How far before the cursor each run asks again.
    pub overlap: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// Why a run failed. Its cursor stays where it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The vendor refused the credential.
    #[error(
        "HTTP {status} on page {page}: the API key was refused; fix {setting} (a key with admin \
         or spend-read rights that has not expired)"
    )]
    Auth {
        /// 401 or 403.
        status: u16,
        /// Page number, from 1.
        page: u32,
        /// The setting holding the key.
        setting: String,
    },
    /// A page did not match the documented shape; nothing of it was stored.
    #[error("page {page} does not match the documented {what} shape: {reason}")]
    Shape {
        /// Page number, from 1.
        page: u32,
        /// Which response (`spend logs`, `costs`, `cost report`).
        what: &'static str,
        /// Which field, and what is wrong with it.
        reason: ShapeReason,
    },
    /// An answer other than success, a retryable error or a refused credential.
    #[error("HTTP {status} on page {page}")]
    Status {
        /// The status.
        status: u16,
        /// Page number, from 1.
        page: u32,
    },
    /// Retries ran out.
    #[error("page {page}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Page number, from 1.
        page: u32,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: LastFailure,
    },
    /// More pages than [`MAX_PAGES`].
    #[error("more than {MAX_PAGES} pages in one run")]
    TooManyPages,
    /// The TLS settings could not be built.
    #[error("tls: {0}")]
    Tls(crate::client::ClientError),
    /// The store failed; pages before this one are stored.
    // The cause is in the message, not also in `source()` (issue 18: each cause once).
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ConnectorError {
    fn from(e: StoreError) -> Self {
        ConnectorError::Store(e)
    }
}

impl ConnectorError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectorError::Auth { .. } => "auth",
            ConnectorError::Shape { .. } => "shape",
            ConnectorError::Status { .. } => "status",
            ConnectorError::Exhausted { .. } => "exhausted",
            ConnectorError::TooManyPages => "too_many_pages",
            ConnectorError::Tls(_) => "tls",
            ConnectorError::Store(_) => "store",
        }
    }
}

/// The last failure of a request whose retries ran out (inside [`ConnectorError::Exhausted`]).
// The cause is in the message, not in `source()` (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LastFailure {
    /// The request failed (connect, TLS, send, read).
    #[error("{error}")]
    Client {
        /// Why.
        error: crate::client::ClientError,
    },
    /// No answer within the connector's timeout.
    #[error("no answer within {}s", .waited.as_secs())]
    Timeout {
        /// How long it waited.
        waited: Duration,
    },
    /// A status worth retrying (429 or 5xx).
    #[error("HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
}

/// What is wrong with a page (inside [`ConnectorError::Shape`]).
// The cause is in the message, not in `source()` (issue 18: each cause once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeReason {
    /// The page is not the JSON documented.
    #[error("{0}")]
    Json(serde_json::Error),
    /// An item of the page is not the JSON documented.
    #[error("{at}: {error}")]
    JsonAt {
        /// Where in the page (`data[3]`).
        at: String,
        /// Why.
        error: serde_json::Error,
    },
    /// The page's columns do not fit the import layout.
    #[error("{0}")]
    Layout(crate::ingest::table::LayoutError),
    /// The page's JSON could not be flattened into a table.
    #[error("{0}")]
    Flatten(gateway::FlattenError),
    /// Our own description of what is wrong (a field, a value, a missing cursor).
    #[error("{0}")]
    Described(String),
}

impl From<serde_json::Error> for ShapeReason {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl From<crate::ingest::table::LayoutError> for ShapeReason {
    fn from(e: crate::ingest::table::LayoutError) -> Self {
        Self::Layout(e)
    }
}

impl From<gateway::FlattenError> for ShapeReason {
    fn from(e: gateway::FlattenError) -> Self {
        Self::Flatten(e)
    }
}

impl From<String> for ShapeReason {
    fn from(s: String) -> Self {
        Self::Described(s)
    }
}

/// What one run did: the sums over its streams, and each stream's own counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records read from the vendor.
    pub fetched: u64,
    /// Pages read.
    pub pages: u64,
    /// Records stored for the first time.
    pub new: u64,
    /// Records already stored (overlap, re-pull or an earlier file import).
    pub known: u64,
    /// The window asked for, Unix seconds `[from, to)` (over several streams: from the
    /// earliest start to the latest end).
    pub window: (i64, i64),
    /// Each stream run, in order, with its own counts and window (a stream after a refused
    /// credential is not run and not listed).
    pub streams: Vec<(Stream, Progress)>,
}

impl Progress {
    /// Adds one stream's counts.
    fn add(&mut self, stream: Stream, part: Progress) {
        self.fetched += part.fetched;
        self.pages += part.pages;
        self.new += part.new;
        self.known += part.known;
        self.window = if self.streams.is_empty() {
            part.window
        } else {
            (self.window.0.min(part.window.0), self.window.1.max(part.window.1))
        };
        self.streams.push((stream, part));
    }

    fn counts(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows fetched, {} pages, {} new, {} already known ({} to {})",
            self.fetched,
            self.pages,
            self.new,
            self.known,
            crate::ingest::parse::ymd(self.window.0),
            crate::ingest::parse::ymd(self.window.1),
        )
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.counts(f)?;
        if self.streams.len() > 1 {
            for (i, (stream, part)) in self.streams.iter().enumerate() {
                f.write_str(if i == 0 { " [" } else { "; " })?;
                write!(f, "{}: ", stream.as_str())?;
                part.counts(f)?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// One fetched page, checked against the documented shape.
pub(crate) struct Page {
    /// Its records.
    pub rows: Rows,
    /// Records in it (as the vendor sent them, also those not stored).
    pub records: u64,
}

/// A page's records, ready for an import parser.
pub(crate) enum Rows {
    /// The body, handed to [`gateway::flatten_json`] (it reads `data`, and bucket `results`).
    Json(Vec<u8>),
    /// Rows under the column names of the vendor's file export.
    Table(Header, Vec<csv::StringRecord>),
}

/// Rows being written under a file export's column names.
pub(crate) struct Table {
    names: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl Table {
    pub(crate) fn new(names: &[&str]) -> Self {
        Table { names: names.iter().map(|n| (*n).to_owned()).collect(), rows: Vec::new() }
    }

    /// One row, its cells in the order of the names.
    pub(crate) fn push<const N: usize>(&mut self, cells: [&str; N]) {
        self.rows.push(csv::StringRecord::from(cells.to_vec()));
    }

    pub(crate) fn into_rows(self) -> Rows {
        Rows::Table(Header::from_names(self.names), self.rows)
    }
}

/// The counters of every connector, for `/metrics` (labels: the configured name, a bounded
/// set, and bounded outcomes).
#[derive(Debug, Default)]
pub struct Stats {
    by_name: Mutex<BTreeMap<String, Counters>>,
}

/// One connector's counters.
#[derive(Debug, Default)]
struct Counters {
    runs_ok: AtomicU64,
    runs_failed: AtomicU64,
    pages: AtomicU64,
    rows_new: AtomicU64,
    rows_known: AtomicU64,
    retries: AtomicU64,
    last_success: AtomicU64,
    errors: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn with(&self, name: &str, f: impl FnOnce(&mut Counters)) {
        // A poisoned lock only means a panic elsewhere while counting; the counts stay usable.
        let mut map = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(name.to_owned()).or_default());
    }

    /// Counts one retried request.
    pub(crate) fn retry(&self, name: &str) {
        self.with(name, |c| {
            c.retries.fetch_add(1, Ordering::Relaxed);
        });
    }

    fn page(&self, name: &str, new: u64, known: u64) {
        self.with(name, |c| {
            c.pages.fetch_add(1, Ordering::Relaxed);
            c.rows_new.fetch_add(new, Ordering::Relaxed);
            c.rows_known.fetch_add(known, Ordering::Relaxed);
        });
    }

    fn finished(&self, name: &str, outcome: Result<i64, &'static str>) {
        self.with(name, |c| match outcome {
            Ok(at) => {
                c.runs_ok.fetch_add(1, Ordering::Relaxed);
                c.last_success.store(u64::try_from(at).unwrap_or(0), Ordering::Relaxed);
            }
            Err(label) => {
                c.runs_failed.fetch_add(1, Ordering::Relaxed);
                *c.errors.entry(label).or_insert(0) += 1;
            }
        });
    }

    /// The Prometheus text of every connector's counters (empty without connectors).
    pub fn render(&self) -> String {
        let map = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.is_empty() {
            return String::new();
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        };
        let each = |f: &dyn Fn(&str, &Counters) -> Samples| -> Samples {
            map.iter().flat_map(|(n, c)| f(&label_value(n), c)).collect()
        };
        family(
            "aiscout_connector_runs_total",
            "counter",
            "Connector runs by outcome.",
            each(&|n, c| {
                vec![
                    (format!("connector=\"{n}\",outcome=\"ok\""), get(&c.runs_ok)),
                    (format!("connector=\"{n}\",outcome=\"failed\""), get(&c.runs_failed)),
                ]
            }),
        );
        family(
            "aiscout_connector_errors_total",
            "counter",
            "Failed connector runs by cause.",
            each(&|n, c| {
                c.errors
                    .iter()
                    .map(|(cause, v)| (format!("connector=\"{n}\",cause=\"{cause}\""), *v))
                    .collect()
            }),
        );
        family(
            "aiscout_connector_pages_total",
            "counter",
            "Pages stored.",
            each(&|n, c| vec![(format!("connector=\"{n}\""), get(&c.pages))]),
        );
        family(
            "aiscout_connector_rows_total",
            "counter",
            "Rows pulled: new, or already known (overlap, re-pull, file import).",
            each(&|n, c| {
                vec![
                    (format!("connector=\"{n}\",outcome=\"new\""), get(&c.rows_new)),
                    (format!("connector=\"{n}\",outcome=\"known\""), get(&c.rows_known)),
                ]
            }),
        );
        family(
            "aiscout_connector_retries_total",
            "counter",
            "Requests retried (5xx, 429, network errors, timeouts).",
            each(&|n, c| vec![(format!("connector=\"{n}\""), get(&c.retries))]),
        );
        family(
            "aiscout_connector_last_success_timestamp_seconds",
            "gauge",
            "When the connector last pulled its whole window (0: never, in this process).",
            each(&|n, c| vec![(format!("connector=\"{n}\""), get(&c.last_success))]),
        );
        out
    }
}

/// Label sets and values of one metric family.
type Samples = Vec<(String, u64)>;

/// A name as a Prometheus label value (config names are `[A-Za-z0-9._-]`, escaped anyway).
fn label_value(name: &str) -> String {
    name.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Stores one page in one transaction, after parsing every record with the matching file
/// import's parser; a record the parser refuses fails the page, naming the record and field.
#[allow(clippy::too_many_arguments)] // Reason: the run's parts and the page, handed down once.
async fn store_page<S: Store>(
    store: &S,
    index: &Index,
    settings: &Settings,
    stream: Stream,
    names: Option<&Names>,
    page_no: u32,
    page: Page,
    now: i64,
) -> Result<(u64, u64), ConnectorError> {
    let shape =
        |reason: ShapeReason| ConnectorError::Shape { page: page_no, what: stream.what(), reason };
    if page.records == 0 {
        return Ok((0, 0));
    }
    let (header, records) = match page.rows {
        Rows::Json(body) => gateway::flatten_json(&body).map_err(|e| shape(e.into()))?,
        Rows::Table(header, rows) => (header, rows),
    };
    let refused = |RowError { line, column, reason, .. }: RowError| {
        shape(format!("record {line}, field {column:?}: {reason}").into())
    };
    let mut tally = Tally::default();
    let line_of = |i: usize| u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
    let counts = match stream.target() {
        Target::Expense(format) => {
            let layout = expense::Layout::new(format, &header).map_err(|e| shape(e.into()))?;
            let mut parser = ExpenseParser::new(layout, index, settings.name.clone());
            let mut lines = Vec::with_capacity(records.len());
            for (i, rec) in records.iter().enumerate() {
                if let Some(line) =
                    parser.row(&header, rec, line_of(i), &mut tally).map_err(refused)?
                {
                    lines.push(line);
                }
            }
            store.add_expenses(lines, now).await?
        }
        Target::Gateway(format) => {
            let layout = Layout::new(format, &header).map_err(|e| shape(e.into()))?;
            let mut parser = GatewayParser::new(layout, index, settings.name.clone());
            let mut rows: Vec<GatewaySpend> = Vec::with_capacity(records.len());
            let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
            for (i, rec) in records.iter().enumerate() {
                let Some(mut row) =
                    parser.row(&header, rec, line_of(i), &mut tally).map_err(refused)?
                else {
                    continue;
                };
                if !row.dedupe_key.starts_with("id:") {
                    // A bucket row has no id. The file import hashes its cells in the header's
                    // column order, which depends on which keys the page's records have; a
                    // re-pull whose page gained a late row could reorder them. Hash the
                    // non-empty fields by name instead, so the same row always has one key.
                    let key = canonical_key(&header, rec);
                    let n = seen.entry(key.clone()).or_insert(0);
                    *n += 1;
                    row.dedupe_key = format!("c:{key}:{n}");
                }
                if let Some(names) = names {
                    names.apply(&mut row);
                }
                rows.push(row);
            }
            store.add_gateway_spend(rows, now).await?
        }
    };
    Ok((counts.inserted, counts.duplicates))
}

/// A hash of a record's non-empty fields, sorted by name: the same for the same record
/// whatever else its page holds.
fn canonical_key(header: &Header, rec: &csv::StringRecord) -> String {
    let mut fields: Vec<(&str, &str)> = rec
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty() && *v != "null")
        .map(|(i, v)| (header.name(i), v))
        .collect();
    fields.sort_unstable();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, value) in fields {
        ctx.update(name.as_bytes());
        ctx.update(b"\x1f");
        ctx.update(value.as_bytes());
        ctx.update(b"\x1e");
    }
    let digest = ctx.finish();
    expense::hex(digest.as_ref().get(..16).unwrap_or_default())
}

/// Runs one connector once: each of its [`Kind::streams`] in turn asks for
/// `[cursor - overlap, now)` (the first time from the connector's `start`) under its own
/// cursor, stores page by page and moves its cursor when every page of it is stored. The run
/// is recorded in the imports history (also a failed one, with what it stored before
/// failing).
///
/// A stream that fails keeps its cursor where it was and fails the run; the streams after it
/// still run (each has its own cursor), except after a refused credential or a TLS failure,
/// which every stream would meet again.
///
/// # Errors
/// A stream failed (the first failure is returned); its cursor did not move. Pages stored
/// before the failure stay stored and are found again as already known by the next run.
pub async fn run<S: Store>(
    store: &S,
    index: &Index,
    settings: &Settings,
    stats: &Stats,
    now: i64,
) -> Result<Progress, ConnectorError> {
    let mut progress = Progress::default();
    let result = run_streams(store, index, settings, stats, now, &mut progress).await;
    stats.finished(&settings.name, result.as_ref().map(|()| now).map_err(ConnectorError::label));
    let run = ImportRun {
        at: aiscout_wire::UnixSecs(crate::store::now()),
        actor: format!("connector:{}", settings.name),
        kind: match settings.kind.streams().first().map(|s| s.target()) {
            Some(Target::Expense(_)) => "expenses",
            Some(Target::Gateway(_)) | None => "gateway",
        }
        .to_owned(),
        file: settings.name.clone(),
        format: settings.kind.as_str().to_owned(),
        rows: i64::try_from(progress.fetched).unwrap_or(i64::MAX),
        stored: i64::try_from(progress.new).unwrap_or(i64::MAX),
        duplicates: i64::try_from(progress.known).unwrap_or(i64::MAX),
        errors: i64::from(result.is_err()),
        error: result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
    };
    if let Err(e) = store.record_import(run).await {
        tracing::warn!(connector = %settings.name, error = %e, "Recording the connector run failed.");
    }
    match result {
        Ok(()) => {
            tracing::info!(
                connector = %settings.name,
                fetched = progress.fetched,
                pages = progress.pages,
                new = progress.new,
                known = progress.known,
                "Connector run finished."
            );
            Ok(progress)
        }
        Err(e) => {
            tracing::warn!(
                connector = %settings.name,
                error = %e,
                pages = progress.pages,
                new = progress.new,
                "Connector run failed; the failed stream's cursor stays where it was."
            );
            // One `connector.failed` per failure streak: the event is keyed by the first
            // stream's cursor, which only a successful run moves.
            let cursor = store.connector_cursor(settings.name.clone()).await.ok().flatten();
            let event = crate::alerts::event::connector_failed(
                &settings.name,
                settings.kind.as_str(),
                cursor,
                e.label(),
                &e.to_string(),
                now,
            );
            if let Err(err) = store.emit(vec![event], None, now).await {
                tracing::warn!(connector = %settings.name, error = %err, "Recording the connector failure event failed.");
            }
            Err(e)
        }
    }
}

/// Every stream of the connector, in order, as [`run`] says.
async fn run_streams<S: Store>(
    store: &S,
    index: &Index,
    settings: &Settings,
    stats: &Stats,
    now: i64,
    progress: &mut Progress,
) -> Result<(), ConnectorError> {
    let mut client = http::Client::new(settings, stats)?;
    let mut lookups = Lookups::default();
    let mut first_error: Option<ConnectorError> = None;
    for &stream in settings.kind.streams() {
        let mut part = Progress::default();
        let result =
            run_stream(store, index, settings, stream, &mut client, &mut lookups, now, &mut part)
                .await;
        progress.add(stream, part);
        if let Err(e) = result {
            let everywhere = matches!(e, ConnectorError::Auth { .. } | ConnectorError::Tls(_));
            first_error.get_or_insert(e);
            if everywhere {
                break;
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What the streams of one run look up once and share (read at the first stream that needs
/// it).
#[derive(Default)]
struct Lookups {
    /// Brex: card id to its holder.
    brex: Option<brex::Directory>,
    /// OpenAI, Anthropic, LiteLLM: names for user and project, workspace or team ids.
    names: Option<Names>,
}

/// One stream: its window from its own cursor, page by page, then its cursor.
#[allow(clippy::too_many_arguments)] // Reason: the run's parts, handed down once.
async fn run_stream<S: Store>(
    store: &S,
    index: &Index,
    settings: &Settings,
    stream: Stream,
    client: &mut http::Client<'_>,
    lookups: &mut Lookups,
    now: i64,
    progress: &mut Progress,
) -> Result<(), ConnectorError> {
    let key = stream.cursor_key(&settings.name);
    let overlap = i64::try_from(settings.overlap.as_secs()).unwrap_or(i64::MAX);
    let from = match store.connector_cursor(key.clone()).await? {
        Some(cursor) => cursor.saturating_sub(overlap).max(settings.start),
        None => settings.start,
    };
    let (from, to) = if stream.daily() {
        // The cost reports are daily buckets: only whole, finished UTC days are asked for,
        // so that a re-pull of a day sees the same rows (and the same dedupe keys).
        let today = now.div_euclid(86_400) * 86_400;
        let mut from = from.div_euclid(86_400) * 86_400;
        if stream == Stream::OpenrouterActivity {
            // OpenRouter keeps the last 30 completed days only.
            from = from.max(today - openrouter::DAYS_KEPT * 86_400);
        }
        (from, today)
    } else {
        (from, now)
    };
    progress.window = (from, to);
    if to <= from {
        return Ok(());
    }
    if stream == Stream::BrexTransactions && lookups.brex.is_none() {
        lookups.brex = Some(brex::directory(client).await?);
    }
    let brex_directory = lookups.brex.take().unwrap_or_default();
    let mut next: Option<String> = None;
    for page_no in 1..=MAX_PAGES {
        let cursor = next.as_deref();
        let page = match stream {
            Stream::LitellmSpendLogs => litellm::page(client, from, to, page_no).await?,
            Stream::OpenaiCosts => openai::page(client, from, to, page_no, cursor).await?,
            Stream::OpenaiCompletionsUsage => {
                openai::usage_page(client, from, to, page_no, cursor).await?
            }
            Stream::AnthropicCostReport => {
                anthropic::page(client, from, to, page_no, cursor).await?
            }
            Stream::AnthropicMessagesUsage => {
                anthropic::messages_page(client, from, to, page_no, cursor).await?
            }
            Stream::AnthropicClaudeCode => {
                let (day, token) = anthropic::claude_code_cursor(cursor, from);
                anthropic::claude_code_page(client, day, to, page_no, token).await?
            }
            Stream::OpenrouterActivity => {
                let day = cursor.and_then(|c| c.parse().ok()).unwrap_or(from);
                openrouter::page(client, day, to, page_no).await?
            }
            Stream::RampTransactions => ramp::page(client, from, to, page_no, cursor).await?,
            Stream::BrexTransactions => {
                brex::page(client, from, page_no, cursor, &brex_directory).await?
            }
        };
        let (fetched, more) = page;
        let records = fetched.records;
        if stream.named() && records > 0 && lookups.names.is_none() {
            // Read when the first rows need them, so that a refused key or a vendor down
            // fails on the stream's own first page, as it did before the lists were read.
            lookups.names = Some(match settings.kind {
                Kind::Litellm => litellm::names(client).await?,
                Kind::Openai => openai::names(client).await?,
                Kind::Anthropic => anthropic::names(client).await?,
                Kind::Brex | Kind::Openrouter | Kind::Ramp => Names::default(),
            });
        }
        let names = lookups.names.as_ref().filter(|_| stream.named());
        let (new, known) =
            store_page(store, index, settings, stream, names, page_no, fetched, now).await?;
        client.stats().page(&settings.name, new, known);
        progress.pages += 1;
        progress.fetched += records;
        progress.new += new;
        progress.known += known;
        match more {
            None => {
                store.set_connector_cursor(key, to, now).await?;
                return Ok(());
            }
            Some(token) => next = Some(token),
        }
    }
    Err(ConnectorError::TooManyPages)
}

/// Runs `settings` every `interval` until `stop` resolves, the first run at once. A failed run
/// is logged and counted (by [`run`]); the next one comes at the next interval.
pub async fn schedule<S: Store>(
    store: &S,
    index: &Index,
    settings: &Settings,
    stats: &Stats,
    mut on_run: impl FnMut(&Settings, &Result<Progress, ConnectorError>),
    stop: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let result = tokio::select! {
            () = &mut stop => return,
            r = run(store, index, settings, stats, crate::store::now()) => r,
        };
        on_run(settings, &result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_row_keeps_its_key_whatever_else_its_page_holds() {
        use crate::ingest::table::Header;
        let names = |n: &[&str]| Header::from_names(n.iter().map(|s| (*s).to_owned()).collect());
        let a = canonical_key(
            &names(&["amount", "model", "day"]),
            &csv::StringRecord::from(["1.5", "", "d1"].to_vec()),
        );
        // A later page gained a column (another record has a model) and ordered them anew.
        let b = canonical_key(
            &names(&["day", "workspace", "amount", "model"]),
            &csv::StringRecord::from(["d1", "", "1.5", "null"].to_vec()),
        );
        assert_eq!(a, b);
        let c = canonical_key(
            &names(&["amount", "day"]),
            &csv::StringRecord::from(["1.5", "d2"].to_vec()),
        );
        assert_ne!(a, c);
        // Values move between fields: another row.
        let d = canonical_key(
            &names(&["amount", "day"]),
            &csv::StringRecord::from(["d1", "1.5"].to_vec()),
        );
        assert_ne!(a, d);
    }

    #[test]
    fn the_first_stream_keeps_the_connector_name_as_its_cursor_key() {
        for kind in Kind::ALL {
            let streams = kind.streams();
            assert!(!streams.is_empty(), "{kind:?}");
            assert_eq!(streams[0].cursor_key("prod-1"), "prod-1", "{kind:?}");
            for s in &streams[1..] {
                assert_eq!(s.cursor_key("prod-1"), format!("prod-1/{}", s.as_str()));
            }
            let mut names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), streams.len(), "{kind:?}: stream names are unique");
            assert!(streams.iter().all(|s| s.kind() == kind));
        }
    }

    #[test]
    fn progress_sums_its_streams_and_lists_them_when_several() {
        let day = 86_400;
        let part = |n: u64, window: (i64, i64)| Progress {
            fetched: n,
            pages: 1,
            new: n - 1,
            known: 1,
            window,
            streams: Vec::new(),
        };
        let mut one = Progress::default();
        one.add(Stream::OpenaiCosts, part(4, (2 * day, 5 * day)));
        assert_eq!(
            one.to_string(),
            "4 rows fetched, 1 pages, 3 new, 1 already known (1970-01-03 to 1970-01-06)"
        );
        one.add(Stream::LitellmSpendLogs, part(2, (day, 4 * day)));
        assert_eq!((one.fetched, one.pages, one.new, one.known), (6, 2, 4, 2));
        assert_eq!(one.window, (day, 5 * day));
        assert_eq!(
            one.to_string(),
            "6 rows fetched, 2 pages, 4 new, 2 already known (1970-01-02 to 1970-01-06) \
             [costs: 4 rows fetched, 1 pages, 3 new, 1 already known (1970-01-03 to \
             1970-01-06); spend-logs: 2 rows fetched, 1 pages, 1 new, 1 already known \
             (1970-01-02 to 1970-01-05)]"
        );
    }

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1", "1w", "-1h", "0m", "1.5h", "400d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_urls_are_https_or_loopback_http() {
        let u = BaseUrl::parse("https://api.openai.com").unwrap();
        assert_eq!((u.https, u.port, u.prefix.as_str()), (true, 443, ""));
        let u = BaseUrl::parse("http://127.0.0.1:4000/litellm/").unwrap();
        assert_eq!((u.https, u.port, u.prefix.as_str()), (false, 4000, "/litellm"));
        assert!(BaseUrl::parse("http://[::1]:4000").is_ok());
        assert!(BaseUrl::parse("http://localhost").is_ok());
        assert!(BaseUrl::parse("http://litellm.internal").unwrap_err().contains("loopback"));
        assert!(BaseUrl::parse("https://u:p@x.io").unwrap_err().contains("user information"));
        assert!(BaseUrl::parse("ftp://x.io").is_err());
        assert!(BaseUrl::parse("https://x.io/?a=1").is_err());
    }
}
