//! Import drivers: one file in, rows into the store, a [`FileReport`] out.
//!
//! Parsing is blocking (file IO, CSV) and runs on tokio's blocking pool; it hands chunks of
//! rows over a bounded channel to the async side, which writes each chunk in one store
//! transaction (on PostgreSQL up to two chunks at once, on two connections). Parsing and
//! writing overlap, and memory stays bounded by the channel.
//! A malformed row becomes a [`RowError`] naming file, line and column, and the import goes
//! on: good rows are imported (DESIGN.md invariant 2). Nothing is logged per row.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiscout_signatures::Index;
use tokio::sync::mpsc;

use super::expense::{self, ExpenseFormat, ExpenseParser};
use super::gateway::{self, GatewayFormat, GatewayParser};
use super::mapping::{ExpenseMapping, GatewayMapping};
use super::people;
use super::table::{self, Header, LayoutError};
use crate::model::ImportCounts;
use crate::store::{Store, StoreError};

/// Rows per store transaction.
pub const CHUNK_ROWS: usize = 10_000;
/// Most rows read from one file.
pub const MAX_ROWS: u64 = 100_000_000;
/// Row errors kept in a report (all are counted).
pub const MAX_REPORTED_ERRORS: usize = 100;
/// Largest JSON file read (JSON is read whole).
pub const MAX_JSON_BYTES: u64 = 512 << 20;

/// A malformed row: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// File (base name).
    pub file: String,
    /// Line (1-based; the header is line 1).
    pub line: u64,
    /// Column name as written in the header, `""` when the whole row is at fault.
    pub column: String,
    /// What is wrong.
    pub reason: String,
}

impl RowError {
    /// An error at `line` of `file`, in column `col` of `header` (the whole row when `None`).
    pub fn at(file: &str, header: &Header, line: u64, col: Option<usize>, reason: String) -> Self {
        RowError {
            file: file.to_owned(),
            line,
            column: col.map(|c| header.name(c).to_owned()).unwrap_or_default(),
            reason,
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        } else {
            write!(f, "{}:{}: column {:?}: {}", self.file, self.line, self.column, self.reason)
        }
    }
}

/// Why a whole file could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("{file}: {error}")]
    Io {
        /// The file.
        file: String,
        /// The cause (in the message, not the source).
        error: std::io::Error,
    },
    /// The file's format is not recognised, or lacks a required column.
    #[error("{file}: {reason}")]
    Format {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The JSON file could not be read as a table.
    #[error("{file}: {error}")]
    Json {
        /// The file.
        file: String,
        /// Why (shown in this error's message, not returned as its source).
        error: gateway::FlattenError,
    },
    /// The file's header does not fit the layout it is read with.
    #[error("{file}: {error}")]
    Layout {
        /// The file.
        file: String,
        /// What does not fit (shown in this error's message, not returned as its source).
        error: LayoutError,
    },
    /// The store failed; rows of earlier chunks are committed.
    // The cause is in the message, not also in `source()` (issue 18: each cause once).
    #[error("store: {0}")]
    Store(StoreError),
    /// The parsing task panicked or was cancelled.
    #[error("import task failed: {0}")]
    Task(tokio::task::JoinError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Store(e)
    }
}

/// What a parse counted besides the rows it produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Data rows read (not the header).
    pub rows: u64,
    /// Rows stored as candidates (unmatched but AI-looking) that still need review: once the
    /// store has run, lines a taught descriptor mapping resolved are not counted (issue 17).
    pub candidates: u64,
    /// Rows that matched no product and do not look like AI: counted, not stored.
    pub not_ai: u64,
    /// Payments to the card issuer and personal entries: not spend.
    pub not_spend: u64,
    /// Blank rows.
    pub skipped: u64,
    /// Malformed rows, all counted.
    pub error_count: u64,
    /// The first [`MAX_REPORTED_ERRORS`] malformed rows.
    pub errors: Vec<RowError>,
}

impl Tally {
    fn error(&mut self, e: RowError) {
        self.error_count = self.error_count.saturating_add(1);
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(e);
        }
    }
}

/// The outcome of importing one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    /// File (base name).
    pub file: String,
    /// Format used (detected or given).
    pub format: String,
    /// Counts from parsing.
    pub tally: Tally,
    /// Rows newly stored.
    pub stored: u64,
    /// Rows already stored by an earlier import.
    pub duplicates: u64,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        write!(
            f,
            "{} ({}): {} rows, {} stored, {} already imported, {} candidates, {} not AI, \
             {} not spend, {} errors",
            self.file,
            self.format,
            t.rows,
            self.stored,
            self.duplicates,
            t.candidates,
            t.not_ai,
            t.not_spend,
            t.error_count
        )
    }
}

/// Appends an import to the history the console shows (`kind` is `expenses`, `gateway` or
/// `people`; `actor` a token name, a person, `cli` or `drop`). The rows are committed already,
/// so a failure here is logged, not returned.
pub async fn record<S: Store>(store: &S, kind: &str, actor: &str, report: &FileReport, at: i64) {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let run = crate::model::ImportRun {
        at: aiscout_wire::UnixSecs(at),
        actor: actor.to_owned(),
        kind: kind.to_owned(),
        file: report.file.clone(),
        format: report.format.clone(),
        rows: i(report.tally.rows),
        stored: i(report.stored),
        duplicates: i(report.duplicates),
        errors: i(report.tally.error_count),
        error: String::new(),
    };
    if let Err(e) = store.record_import(run).await {
        tracing::warn!(error = %e, "Could not add the import to the history.");
    }
}

/// Where an import reads from.
#[derive(Clone, Debug)]
pub enum Input {
    /// A file on disk.
    Path(PathBuf),
    /// An upload written to a file on disk (see `api::upload`), with the name it was given.
    Spooled {
        /// Name for reports and row errors.
        name: String,
        /// Where the upload was written.
        path: PathBuf,
    },
    /// An uploaded body, with the name it was given.
    Bytes {
        /// Name for reports and row errors.
        name: String,
        /// The content.
        bytes: Vec<u8>,
    },
}

impl Input {
    /// The base name used in reports.
    pub fn name(&self) -> String {
        match self {
            Input::Path(p) => p
                .file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
            Input::Bytes { name, .. } | Input::Spooled { name, .. } => name.clone(),
        }
    }

    /// Size in bytes, when known.
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Path(p) | Input::Spooled { path: p, .. } => {
                std::fs::metadata(p).ok().map(|m| m.len())
            }
            Input::Bytes { bytes, .. } => u64::try_from(bytes.len()).ok(),
        }
    }

    fn open(&self) -> Result<Box<dyn BufRead + Send>, ImportError> {
        match self {
            Input::Path(p) | Input::Spooled { path: p, .. } => {
                let f = std::fs::File::open(p)
                    .map_err(|error| ImportError::Io { file: self.name(), error })?;
                Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
            }
            Input::Bytes { bytes, .. } => Ok(Box::new(std::io::Cursor::new(bytes.clone()))),
        }
    }
}

/// Reports parse progress as a byte offset into the file.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Reads a CSV header, then feeds each record to `row`, sending chunks of produced rows.
fn parse_csv<T, L>(
    input: &Input,
    reader: Box<dyn BufRead + Send>,
    layout: impl FnOnce(&Header) -> Result<(L, String), LayoutError>,
    mut row: impl FnMut(
        &mut L,
        &Header,
        &csv::StringRecord,
        u64,
        &mut Tally,
    ) -> Result<Option<T>, RowError>,
    tx: &mpsc::Sender<Vec<T>>,
    progress: Option<&Progress>,
) -> Result<(String, Tally), ImportError> {
    let mut file = input.name();
    let mut rdr = table::reader(reader);
    let mut rec = csv::StringRecord::new();
    let got = rdr.read_record(&mut rec).map_err(|e| csv_fatal(&file, e))?;
    if !got {
        return Err(ImportError::Format { file, reason: "empty file".into() });
    }
    let header = Header::new(&rec);
    let (mut state, format) =
        layout(&header).map_err(|error| ImportError::Layout { file: file.clone(), error })?;
    let mut tally = Tally::default();
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    loop {
        if tally.rows >= MAX_ROWS {
            tally.error(RowError {
                file: std::mem::take(&mut file),
                line: rec.position().map_or(0, csv::Position::line),
                column: String::new(),
                reason: format!("more than {MAX_ROWS} rows: the rest of the file is ignored"),
            });
            break;
        }
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                tally.rows = tally.rows.saturating_add(1);
                let line = rec.position().map_or(0, csv::Position::line);
                match row(&mut state, &header, &rec, line, &mut tally) {
                    Ok(Some(t)) => chunk.push(t),
                    Ok(None) => {}
                    Err(e) => tally.error(e),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                match e.kind() {
                    csv::ErrorKind::Io(_) => return Err(csv_fatal(&file, e)),
                    _ => {
                        tally.rows = tally.rows.saturating_add(1);
                        tally.error(RowError {
                            file: file.clone(),
                            line,
                            column: String::new(),
                            reason: csv_reason(&e),
                        });
                    }
                }
            }
        }
        if chunk.len() >= CHUNK_ROWS {
            if let Some(p) = progress {
                p(rec.position().map_or(0, csv::Position::byte));
            }
            if tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                // The writer stopped (a store error): it reports why.
                return Ok((format, tally));
            }
        }
    }
    if !chunk.is_empty() && tx.blocking_send(chunk).is_err() {
        return Ok((format, tally));
    }
    if let Some(p) = progress {
        p(input.size().unwrap_or(0));
    }
    Ok((format, tally))
}

fn csv_fatal(file: &str, e: csv::Error) -> ImportError {
    let reason = csv_reason(&e);
    let error = match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        _ => std::io::Error::other(reason),
    };
    ImportError::Io { file: file.to_owned(), error }
}

/// What a person reads for a CSV error: text that is not UTF-8 says how to save the file;
/// the rest is the reader's own message (never the error's debug form).
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!(
            "field {} is not UTF-8 text; save the file as UTF-8 (in Excel: \"CSV UTF-8\") and \
             import it again",
            err.field().saturating_add(1)
        ),
        _ => e.to_string(),
    }
}

/// True when writing two chunks at once is faster than one after the other: on PostgreSQL
/// (a server process per connection), not on SQLite, whose single writer would only make the
/// second chunk wait on the database lock.
fn two_writers<S: Store>(store: &S) -> bool {
    store.backend() == "postgres"
}

/// Runs `parse` on the blocking pool and `write` on each chunk it sends.
async fn pipeline<T, P, W, Fut>(
    parse: P,
    two_writers: bool,
    mut write: W,
) -> Result<FileReport, ImportError>
where
    T: Send + 'static,
    P: FnOnce(&mpsc::Sender<Vec<T>>) -> Result<(String, Tally), ImportError> + Send + 'static,
    W: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<ImportCounts, StoreError>>,
{
    let (tx, mut rx) = mpsc::channel::<Vec<T>>(4);
    let handle = tokio::task::spawn_blocking(move || parse(&tx));
    let mut counts = ImportCounts::default();
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        // When the parser is ahead, a second chunk goes in beside the first: on PostgreSQL
        // each write is one server process, so two use a second core (BENCH-IMPORT.md).
        // Each chunk is still its own transaction.
        let next = if two_writers { rx.try_recv().ok() } else { None };
        let results = match next {
            Some(next) => {
                let (a, b) = tokio::join!(write(chunk), write(next));
                [Some(a), Some(b)]
            }
            None => [Some(write(chunk).await), None],
        };
        for result in results.into_iter().flatten() {
            match result {
                Ok(c) => {
                    counts.inserted = counts.inserted.saturating_add(c.inserted);
                    counts.duplicates = counts.duplicates.saturating_add(c.duplicates);
                    counts.mapped = counts.mapped.saturating_add(c.mapped);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if failed.is_some() {
            break;
        }
    }
    drop(rx);
    let parsed = handle.await.map_err(ImportError::Task)?;
    if let Some(e) = failed {
        return Err(ImportError::Store(e));
    }
    let (format, mut tally) = parsed?;
    // Lines a taught mapping resolved were parsed as candidates but need no review (issue 17).
    tally.candidates = tally.candidates.saturating_sub(counts.mapped);
    Ok(FileReport {
        file: String::new(),
        format,
        tally,
        stored: counts.inserted,
        duplicates: counts.duplicates,
    })
}

/// Imports one expense export.
///
/// # Errors
/// The file cannot be read, its format is not recognised, or the store fails.
pub async fn expenses<S: Store>(
    store: &S,
    index: Arc<Index>,
    input: Input,
    format: Option<ExpenseFormat>,
    mapping: &ExpenseMapping,
    progress: Option<Progress>,
    now: i64,
) -> Result<FileReport, ImportError> {
    let name = input.name();
    let mapping = mapping.clone();
    let parse = move |tx: &mpsc::Sender<Vec<crate::model::ExpenseLine>>| {
        let reader = input.open()?;
        let file = input.name();
        parse_csv(
            &input,
            reader,
            |h| {
                let f = match format {
                    Some(f) => f,
                    None => match ExpenseFormat::detect_with(h, &mapping) {
                        Some(f) => f,
                        None => {
                            return Err(unrecognised(
                                "expense export",
                                Some(
                                    "give --format, or use the generic columns date, amount, \
                                     currency, descriptor, payer_email, department, or map your \
                                     columns in [import.expenses.generic]",
                                ),
                                !mapping.is_default(),
                                || {
                                    expense::Layout::with_mapping(
                                        ExpenseFormat::Generic,
                                        h,
                                        &mapping,
                                    )
                                },
                            ));
                        }
                    },
                };
                let layout = expense::Layout::with_mapping(f, h, &mapping)?;
                Ok((ExpenseParser::new(layout, &index, file.clone()), f.as_str().to_owned()))
            },
            |p, h, rec, line, tally| p.row(h, rec, line, tally),
            tx,
            progress.as_ref(),
        )
    };
    let mut report =
        pipeline(parse, two_writers(store), |chunk| store.add_expenses(chunk, now)).await?;
    report.file = name;
    Ok(report)
}

/// The error for a header that no built-in layout recognises. With a configured generic
/// mapping (`mapped`), why that mapping does not fit, which is more use than "unknown format" to
/// someone who wrote one; otherwise `hint`, how to make the file known.
fn unrecognised<L>(
    what: &'static str,
    hint: Option<&'static str>,
    mapped: bool,
    generic: impl FnOnce() -> Result<L, LayoutError>,
) -> LayoutError {
    if !mapped {
        return LayoutError::Unknown { what, hint };
    }
    let why = generic().err().unwrap_or(LayoutError::Unknown { what, hint: None });
    LayoutError::MappingMisfit { what, mapped: Box::new(why) }
}

/// Imports one gateway or provider spend export (CSV or JSON).
///
/// # Errors
/// The file cannot be read, its format is not recognised, or the store fails.
pub async fn gateway<S: Store>(
    store: &S,
    index: Arc<Index>,
    input: Input,
    format: Option<GatewayFormat>,
    mapping: &GatewayMapping,
    progress: Option<Progress>,
    now: i64,
) -> Result<FileReport, ImportError> {
    let name = input.name();
    let mapping = mapping.clone();
    let parse = move |tx: &mpsc::Sender<Vec<crate::model::GatewaySpend>>| {
        let mut reader = input.open()?;
        let file = input.name();
        let io = |error| ImportError::Io { file: file.clone(), error };
        let first = reader.fill_buf().map_err(io)?;
        let text = String::from_utf8_lossy(first.get(..first.len().min(8)).unwrap_or(&[]))
            .trim_start_matches('\u{feff}')
            .trim_start()
            .to_owned();
        let choose = |h: &Header| -> Result<(GatewayParser<'_>, String), LayoutError> {
            let f = match format {
                Some(f) => f,
                None => match GatewayFormat::detect_with(h, &mapping) {
                    Some(f) => f,
                    None => {
                        return Err(unrecognised(
                            "gateway or provider spend export",
                            None,
                            !mapping.is_default(),
                            || gateway::Layout::with_mapping(GatewayFormat::Generic, h, &mapping),
                        ));
                    }
                },
            };
            let layout = gateway::Layout::with_mapping(f, h, &mapping)?;
            Ok((GatewayParser::new(layout, &index, file.clone()), f.as_str().to_owned()))
        };
        if text.starts_with('{') || text.starts_with('[') {
            let mut bytes = Vec::new();
            reader.take(MAX_JSON_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
            if bytes.len() as u64 > MAX_JSON_BYTES {
                return Err(ImportError::Format {
                    file: file.clone(),
                    reason: format!("JSON larger than {MAX_JSON_BYTES} bytes"),
                });
            }
            let (header, rows) = gateway::flatten_json(&bytes)
                .map_err(|error| ImportError::Json { file: file.clone(), error })?;
            let (mut parser, fmt) = choose(&header)
                .map_err(|error| ImportError::Layout { file: file.clone(), error })?;
            let mut tally = Tally::default();
            let mut chunk = Vec::new();
            for (i, rec) in rows.iter().enumerate() {
                tally.rows = tally.rows.saturating_add(1);
                let record_no = u64::try_from(i).map_or(u64::MAX, |i| i.saturating_add(1));
                match parser.row(&header, rec, record_no, &mut tally) {
                    Ok(Some(g)) => chunk.push(g),
                    Ok(None) => {}
                    Err(e) => tally.error(e),
                }
                if chunk.len() >= CHUNK_ROWS
                    && tx.blocking_send(std::mem::take(&mut chunk)).is_err()
                {
                    return Ok((fmt, tally));
                }
            }
            if !chunk.is_empty() && tx.blocking_send(chunk).is_err() {
                return Ok((fmt, tally));
            }
            return Ok((fmt, tally));
        }
        parse_csv(
            &input,
            reader,
            choose,
            |p, h, rec, line, t| p.row(h, rec, line, t),
            tx,
            progress.as_ref(),
        )
    };
    let mut report =
        pipeline(parse, two_writers(store), |chunk| store.add_gateway_spend(chunk, now)).await?;
    report.file = name;
    Ok(report)
}

/// Imports a people directory CSV (upserted by email).
///
/// # Errors
/// The file cannot be read, has no email column, or the store fails.
pub async fn people<S: Store>(store: &S, input: Input) -> Result<FileReport, ImportError> {
    let name = input.name();
    let parse = move |tx: &mpsc::Sender<Vec<crate::model::Person>>| {
        let reader = input.open()?;
        let file = input.name();
        parse_csv(
            &input,
            reader,
            |h| Ok((people::Layout::new(h)?, "people".to_owned())),
            |l, h, rec, line, t| l.row(h, &file, rec, line, t),
            tx,
            None,
        )
    };
    let mut report = pipeline(parse, false, |chunk| store.upsert_people(chunk)).await?;
    report.file = name;
    Ok(report)
}

/// The files of a drop folder's `processed/` and `rejected/` siblings.
pub fn drop_folder_targets(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("processed"), dir.join("rejected"))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: tests index their own fixtures.
mod tests {
    #[test]
    fn text_that_is_not_utf8_says_how_to_save_the_file() {
        let bytes = b"Date,Amount,Merchant\n2026-01-01,12.00,Caf\xe9\n";
        let mut rdr = csv::Reader::from_reader(&bytes[..]);
        let e = rdr.records().next().and_then(Result::err).expect("a UTF-8 error");
        let reason = super::csv_reason(&e);
        assert_eq!(
            reason,
            "field 3 is not UTF-8 text; save the file as UTF-8 (in Excel: \"CSV UTF-8\") and \
             import it again"
        );
        assert!(!reason.contains("Utf8 {"), "no debug output: {reason}");
    }
}
