//! `/imports`: upload expense, gateway or people files (format detected or chosen), see each
//! row error with its line and column, and the history of every import.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use maud::{Markup, html};

use crate::api::AppState;
use crate::console::view::{self, count};
use crate::console::{Access, CSRF_FIELD, PageResult, Refusal, Signed, document, require};
use crate::ingest::{self, FileReport, ImportError};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// What an upload did, for the page.
enum Outcome {
    Imported(String, FileReport),
    Refused(String, String),
}

/// What the upload form had chosen, kept on the page an upload answers with, so that a refused
/// file can be fixed and sent again without choosing its kind and format anew. After an
/// import the kind and format stay, the cardholder does not: the next statement is likely
/// someone else's card.
#[derive(Default)]
struct Chosen {
    /// `expenses`, `gateway` or `people` (empty: expenses).
    kind: String,
    /// `auto` or `kind:format` (empty: auto).
    format: String,
    /// The cardholder's email.
    cardholder: String,
}

fn upload_form(signed: &Signed, max: u64, chosen: &Chosen) -> Markup {
    let kind = match chosen.kind.as_str() {
        "gateway" | "people" => chosen.kind.as_str(),
        _ => "expenses",
    };
    let format = chosen.format.as_str();
    let expense: Vec<&str> =
        ingest::expense::ExpenseFormat::ALL.iter().map(|f| f.as_str()).collect();
    let gateway: Vec<&str> =
        ingest::gateway::GatewayFormat::ALL.iter().map(|f| f.as_str()).collect();
    html! {
        form id="upload" class="upload" method="post" action="/imports" enctype="multipart/form-data" data-max=(max) {
            input type="hidden" name=(CSRF_FIELD) value=(signed.session.csrf);
            fieldset {
                legend { "What is in the file" }
                label class="radio" { input type="radio" name="kind" value="expenses" checked[kind == "expenses"]; " Expenses (card or reimbursement export)" }
                label class="radio" { input type="radio" name="kind" value="gateway" checked[kind == "gateway"]; " Gateway or provider spend" }
                label class="radio" { input type="radio" name="kind" value="people" checked[kind == "people"]; " People (directory)" }
            }
            label for="format" { "Format" }
            select id="format" name="format" aria-describedby="format-help" {
                option value="auto" selected[!format.contains(':')] { "Detect from the header" }
                optgroup label="Expenses" { @for f in &expense { option value={ "expenses:" (f) } selected[format.strip_prefix("expenses:") == Some(f)] { (f) } } }
                optgroup label="Gateway" { @for f in &gateway { option value={ "gateway:" (f) } selected[format.strip_prefix("gateway:") == Some(f)] { (f) } } }
            }
            p id="format-help" class="help" { "Leave it on detect unless the file's header is unusual." }
            label for="cardholder" { "Cardholder (optional)" }
            input id="cardholder" name="cardholder" type="email" autocomplete="off" aria-describedby="cardholder-help" value=(chosen.cardholder);
            p id="cardholder-help" class="help" { "For a bank card statement without a cardholder column: the email of the person whose card it is. Cards listed in [cards] of the config are known already." }
            label for="file" { "File (CSV or JSON, at most " (max >> 20) " MiB)" }
            input id="file" name="file" type="file" required accept=".csv,.json,.jsonl,.txt,text/csv,application/json";
            div class="progress" hidden { progress id="upload-progress" max="100" value="0" { "0 %" } span id="upload-status" role="status" {} }
            button type="submit" { "Import" }
        }
    }
}

fn outcome_panel(outcome: &Outcome) -> Markup {
    match outcome {
        Outcome::Refused(file, why) => html! {
            section class="panel error" id="result" role="alert" {
                h2 { "Not imported: " (file) }
                p { (why) }
            }
        },
        Outcome::Imported(kind, r) => html! {
            section class={ "panel " @if r.tally.error_count > 0 { "warn" } @else { "ok" } } id="result" role="status" {
                h2 { "Imported " (r.file) " as " (kind) " (" (r.format) ")" }
                ul class="counts" {
                    li { strong { (count(r.tally.rows)) } " rows read" }
                    li { strong { (count(r.stored)) } " stored" }
                    li { strong { (count(r.duplicates)) } " already imported" }
                    @if kind == "expenses" {
                        li { strong { (count(r.tally.candidates)) } " unmatched AI-looking" }
                        li { strong { (count(r.tally.not_ai)) } " not AI" }
                        li { strong { (count(r.tally.not_spend)) } " not spend" }
                    }
                    li { strong { (count(r.tally.error_count)) } " rows with errors" }
                }
                @if !r.tally.errors.is_empty() {
                    table class="data errors" {
                        caption { "Rows not imported (the rest of the file was)" }
                        thead { tr { th scope="col" class="num" { "Line" } th scope="col" { "Column" } th scope="col" { "Problem" } } }
                        tbody { @for e in &r.tally.errors { tr {
                            td class="num" { (e.line) } td { @if e.column.is_empty() { "(whole row)" } @else { code { (e.column) } } } td { (e.reason) }
                        } } }
                    }
                    @if r.tally.error_count > r.tally.errors.len() as u64 { p class="muted" { "The first " (r.tally.errors.len()) " of " (r.tally.error_count) " errors." } }
                }
            }
        },
    }
}

async fn render<S: Store>(
    state: &AppState<S>,
    signed: &Signed,
    outcome: Option<Outcome>,
    chosen: &Chosen,
) -> PageResult {
    let runs = state.store.import_runs(100).await?;
    let recent = state.store.import_runs(CONNECTOR_RUNS_READ).await?;
    let connectors = connector_status(&recent);
    let now = crate::store::now();
    let body = html! {
        main id="main" {
            h1 { "Imports" }
            p class="muted" { "Each row is stored once, however often a file is imported. A drop folder or the command line import the same way." }
            @if let Some(o) = &outcome { (outcome_panel(o)) }
            section class="panel" { h2 { "Upload a file" } (upload_form(signed, state.console.max_upload_bytes, chosen)) }
            @if !connectors.is_empty() {
                section class="panel" {
                    h2 { "Connectors" }
                    p class="muted" { "The latest run of each pull connector. A failed run keeps its cursor; the next one asks again from there." }
                    table class="data" {
                        thead { tr { th scope="col" { "Connector" } th scope="col" { "Kind" } th scope="col" { "Last run" } th scope="col" { "Outcome" } th scope="col" class="num" { "Rows fetched" } th scope="col" class="num" { "New" } th scope="col" class="num" { "Already known" } th scope="col" { "Error" } } }
                        tbody { @for r in &connectors { tr class=[(r.errors > 0).then_some("warn")] {
                            td { (r.file) } td { (r.format) } td { (view::when(r.at.get(), now)) }
                            td { @if r.errors > 0 { "failed" } @else { "ok" } }
                            td class="num" { (count(u64::try_from(r.rows).unwrap_or(0))) } td class="num" { (count(u64::try_from(r.stored).unwrap_or(0))) }
                            td class="num" { (count(u64::try_from(r.duplicates).unwrap_or(0))) }
                            td { @if r.error.is_empty() { "—" } @else { (r.error) } }
                        } } }
                    }
                }
            }
            section class="panel" {
                h2 { "History" }
                @if runs.is_empty() { p class="empty" { "Nothing imported yet." } }
                @else {
                    table class="data" {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Kind" } th scope="col" { "File" } th scope="col" { "Format" } th scope="col" class="num" { "Rows" } th scope="col" class="num" { "Stored" } th scope="col" class="num" { "Duplicates" } th scope="col" class="num" title="Rows about something else: not AI, not spend (card payments, personal entries) or blank" { "Not AI or not spend" } th scope="col" class="num" { "Errors" } } }
                        tbody { @for r in &runs { tr class=[(r.errors > 0).then_some("warn")] {
                            td { (view::when(r.at.get(), now)) } td { (r.actor) } td { (r.kind) } td { (r.file) } td { (r.format) }
                            td class="num" { (count(u64::try_from(r.rows).unwrap_or(0))) } td class="num" { (count(u64::try_from(r.stored).unwrap_or(0))) }
                            td class="num" { (count(u64::try_from(r.duplicates).unwrap_or(0))) }
                            td class="num" { (count(u64::try_from(r.rows.saturating_sub(r.stored).saturating_sub(r.duplicates).saturating_sub(r.errors)).unwrap_or(0))) }
                            td class="num" { (count(u64::try_from(r.errors).unwrap_or(0))) }
                        } } }
                    }
                }
            }
        }
    };
    Ok(document("Imports", Some(signed), "/imports", body))
}

/// Import runs read for the connectors' status: far more than connectors run between two
/// visits, so each connector's latest run is among them.
const CONNECTOR_RUNS_READ: i64 = 1_000;

/// The latest run of each connector (actor `connector:NAME`), by name.
fn connector_status(runs: &[crate::model::ImportRun]) -> Vec<&crate::model::ImportRun> {
    let mut latest: std::collections::BTreeMap<&str, &crate::model::ImportRun> =
        std::collections::BTreeMap::new();
    // Newest first: the first run seen of each connector is its latest.
    for r in runs {
        if let Some(name) = r.actor.strip_prefix("connector:") {
            latest.entry(name).or_insert(r);
        }
    }
    latest.into_values().collect()
}

/// `GET /imports`.
pub(crate) async fn page<S: Store>(State(state): Shared<S>, headers: HeaderMap) -> PageResult {
    let signed = require(&state, &headers, "/imports".into(), Access::Imports).await?;
    render(&state, &signed, None, &Chosen::default()).await
}

/// Largest form field other than the file (the CSRF token, kind, format), in bytes.
const MAX_FIELD_BYTES: usize = 4096;

/// The first line of a file, for saying which header a file of unknown format has.
fn first_line_of(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    let read = std::fs::File::open(path).and_then(|f| f.take(512).read_to_end(&mut head));
    match read {
        Ok(_) => first_line(&head),
        Err(_) => String::new(),
    }
}

/// The first line of a file, for saying which header a file of unknown format has.
fn first_line(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len()).min(300);
    let line = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).trim().to_owned();
    line.chars().filter(|c| !c.is_control()).collect()
}

/// A form field's text, read up to [`MAX_FIELD_BYTES`].
async fn small_field(
    mut field: axum::extract::multipart::Field<'_>,
    name: &str,
) -> Result<String, Refusal> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(Refusal::BadRequest(format!(
                        "{name}: longer than {MAX_FIELD_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(Refusal::BadRequest(format!("{name}: {e}"))),
        }
    }
    String::from_utf8(bytes).map_err(|_| Refusal::BadRequest(format!("{name}: not UTF-8")))
}

fn upload_refusal(e: crate::api::upload::BodyError, max: u64) -> Refusal {
    use crate::api::upload::BodyError;
    match e {
        BodyError::TooLarge(_) => Refusal::TooLarge(max),
        BodyError::Busy(_) => Refusal::Busy,
        BodyError::Read(why) => Refusal::BadRequest(format!("upload: {why}")),
        BodyError::Io { path, error } => Refusal::UploadFile { path, error },
    }
}

/// What the page says about an import that failed. A file the parser refuses is shown on the
/// page (and answered 422); the collector's own failure, the store or the parsing task dying (a
/// bug or a shutdown), is a server error that does not blame the file, as the API answers it.
fn failed_import(e: ImportError, name: String, header: &str) -> Result<Outcome, Refusal> {
    Ok(match e {
        ImportError::Store(e) => return Err(Refusal::Store(e)),
        ImportError::Task(e) => return Err(Refusal::ImportTask(e)),
        ImportError::Format { reason, .. } => Outcome::Refused(
            name,
            format!("{reason}. The file's first line (its header) is: {header:?}"),
        ),
        ImportError::Layout { error, .. } => Outcome::Refused(
            name,
            format!("{error}. The file's first line (its header) is: {header:?}"),
        ),
        // A JSON file has no header line worth echoing; say whether it was cut short.
        ImportError::Json { error, .. } if error.cut_short() => Outcome::Refused(
            name,
            format!("{error}. The file ends before its JSON does: was the export cut short?"),
        ),
        ImportError::Json { error, .. } => Outcome::Refused(name, error.to_string()),
        e => Outcome::Refused(name, e.to_string()),
    })
}

/// `POST /imports` (multipart: csrf, kind, format, file). The session, the role and the
/// declared size are checked before a byte of the body is read; the file goes to disk (see
/// `api::upload`) under one of the import permits, never whole into memory.
pub(crate) async fn upload<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> PageResult {
    let signed = require(&state, &headers, "/imports".into(), Access::Imports).await?;
    let max = state.console.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(64 * 1024)) {
        return Err(Refusal::TooLarge(max));
    }
    // Held until the import is stored: the ceiling on memory and disk that imports take.
    let _permit = state.uploads.permit().map_err(|e| upload_refusal(e, max))?;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut multipart =
        multipart.map_err(|e| Refusal::BadRequest(format!("not a file upload: {e}")))?;
    let mut cardholder = String::new();
    let (mut csrf, mut kind, mut format, mut file) =
        (None, String::from("expenses"), String::from("auto"), None);
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Refusal::TooLarge(max));
            }
            Err(e) => return Err(Refusal::BadRequest(format!("upload: {e}"))),
        };
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            // The CSRF token comes first in the form; nothing is read before it is checked.
            crate::console::check_csrf(&signed, &headers, csrf.as_deref())?;
            let filename: String = field
                .file_name()
                .unwrap_or("upload")
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or("upload")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            let mut spooled =
                state.uploads.create(limit).await.map_err(|e| upload_refusal(e, max))?;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        spooled.write(&chunk).await.map_err(|e| upload_refusal(e, max))?;
                    }
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(Refusal::TooLarge(max));
                    }
                    Err(e) => return Err(Refusal::BadRequest(format!("upload: {e}"))),
                }
            }
            spooled.finish().await.map_err(|e| upload_refusal(e, max))?;
            file = Some((filename, spooled));
        } else {
            let text = small_field(field, &name).await?;
            match name.as_str() {
                "csrf" => csrf = Some(text),
                "kind" => kind = text,
                "format" => format = text,
                "cardholder" => cardholder = text,
                _ => {}
            }
        }
    }
    crate::console::check_csrf(&signed, &headers, csrf.as_deref())?;
    let Some((name, spooled)) = file.filter(|(_, f)| !f.is_empty()) else {
        return Err(Refusal::BadRequest(
            "file: choose a file to import (the upload was empty)".into(),
        ));
    };
    let picked = format.clone();
    // A chosen format names its kind (`gateway:litellm`).
    let (kind, format) = match format.split_once(':') {
        Some((k, f)) => (k.to_owned(), Some(f.to_owned())),
        None => (kind, None),
    };
    let mut chosen = Chosen { kind: kind.clone(), format: picked, cardholder: cardholder.clone() };
    let header = first_line_of(spooled.path());
    let input = ingest::Input::Spooled { name: name.clone(), path: spooled.path().to_owned() };
    let index = Arc::new(aiscout_signatures::Index::new(state.catalog.clone()));
    let now = crate::store::now();
    let unknown = |f: &str| Refusal::BadRequest(format!("format: {f:?} is not a {kind} format"));
    let result = match kind.as_str() {
        "expenses" => {
            let f = format
                .as_deref()
                .map(|f| ingest::expense::ExpenseFormat::parse(f).ok_or_else(|| unknown(f)))
                .transpose()?;
            let mut mapping = state.mappings.expenses.clone();
            if !cardholder.trim().is_empty() {
                mapping
                    .owners
                    .set_cardholder(&cardholder)
                    .map_err(|p| Refusal::BadRequest(format!("cardholder: {}", p.reason)))?;
            }
            ingest::file::expenses(&state.store, index, input, f, &mapping, None, now).await
        }
        "gateway" => {
            let f = format
                .as_deref()
                .map(|f| ingest::gateway::GatewayFormat::parse(f).ok_or_else(|| unknown(f)))
                .transpose()?;
            ingest::file::gateway(&state.store, index, input, f, &state.mappings.gateway, None, now)
                .await
        }
        "people" => ingest::file::people(&state.store, input).await,
        other => {
            return Err(Refusal::BadRequest(format!(
                "kind: {other:?} is not expenses, gateway or people"
            )));
        }
    };
    let outcome = match result {
        Ok(report) => {
            ingest::file::record(&state.store, &kind, &signed.session.actor, &report, now).await;
            tracing::info!(
                kind,
                rows = report.tally.rows,
                errors = report.tally.error_count,
                "Console import."
            );
            Outcome::Imported(kind, report)
        }
        Err(e) => failed_import(e, name, &header)?,
    };
    let status = if matches!(outcome, Outcome::Refused(..)) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        chosen.cardholder.clear();
        StatusCode::OK
    };
    let page = render(&state, &signed, Some(outcome), &chosen).await?;
    Ok((status, page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsing task that died is the collector's failure, not a bad file: a 500 page that
    /// neither blames the file nor echoes the panic's text (as the API's 500 "internal
    /// error"); a file the parser refuses stays a refusal shown on the imports page.
    #[tokio::test]
    async fn an_import_whose_parsing_task_died_is_a_server_error_not_a_refusal() {
        let died = tokio::spawn(async { panic!("the parser's own bug") }).await.unwrap_err();
        let refusal = match failed_import(ImportError::Task(died), "spend.csv".into(), "a,b") {
            Err(r @ Refusal::ImportTask(_)) => r,
            Err(_) => unreachable!("a dead task is not another refusal"),
            Ok(_) => unreachable!("a dead task is not the file's refusal"),
        };
        let r = refusal.into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("not because of the file"), "{body}");
        assert!(body.contains(r#"<a href="/imports">Back to imports</a>"#), "{body}");
        assert!(!body.contains("own bug") && !body.contains("spend.csv"), "{body}");

        let bad = ImportError::Format { file: "spend.csv".into(), reason: "empty".into() };
        match failed_import(bad, "spend.csv".into(), "a,b") {
            Ok(Outcome::Refused(file, why)) => {
                assert_eq!(file, "spend.csv");
                assert_eq!(why, "empty. The file's first line (its header) is: \"a,b\"");
            }
            Ok(Outcome::Imported(..)) | Err(_) => unreachable!("a bad file is refused on the page"),
        }
    }

    /// A JSON file is refused without echoing its first line as a header; one cut short says
    /// so.
    #[test]
    fn a_json_file_that_is_cut_short_or_not_json_is_refused_saying_which() {
        let refused = |bytes: &[u8]| {
            let error = ingest::gateway::flatten_json(bytes).unwrap_err();
            let e = ImportError::Json { file: "usage.json".into(), error };
            match failed_import(e, "usage.json".into(), "{\"data\": [") {
                Ok(Outcome::Refused(file, why)) => {
                    assert_eq!(file, "usage.json");
                    why
                }
                Ok(Outcome::Imported(..)) | Err(_) => unreachable!("a bad file is refused"),
            }
        };
        assert_eq!(
            refused(b"{\"data\": ["),
            "not valid JSON: EOF while parsing a list at line 1 column 10. The file ends before \
             its JSON does: was the export cut short?"
        );
        assert_eq!(refused(b"{\"data\": ]"), "not valid JSON: expected value at line 1 column 10");
    }
}
