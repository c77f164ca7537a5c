//! Entry points for the fuzz targets under `collector/fuzz/`, one function per target, so the
//! targets stay one-liners and the regression replay test (`tests/it/fuzz_regressions.rs`)
//! calls the same code on the stable compiler.
//!
//! Each one reads arbitrary bytes the way an import or the agent endpoint does, up to the
//! point where the store would take over: the file's header is sniffed, every record parsed
//! into lines or row errors. Nothing may panic, whatever the bytes.

use std::sync::OnceLock;

use aiscout_signatures::{Catalog, Index};

use crate::ingest::expense::{self, ExpenseFormat, ExpenseParser};
use crate::ingest::gateway::{self, GatewayFormat, GatewayParser};
use crate::ingest::table::{self, Header};
use crate::ingest::{Tally, people};

/// Records read from one input before a target stops (a fuzz input is small anyway).
const MAX_RECORDS: usize = 10_000;

fn index() -> Option<&'static Index> {
    static INDEX: OnceLock<Option<Index>> = OnceLock::new();
    INDEX.get_or_init(|| Catalog::builtin().ok().map(Index::new)).as_ref()
}

/// The header and the records of a CSV file, as the imports read it; `None` when the bytes
/// are not a table at all (the import reports that as a file error).
fn table(data: &[u8]) -> Option<(Header, Vec<csv::StringRecord>)> {
    let mut rdr = table::reader(data);
    let mut rec = csv::StringRecord::new();
    if !rdr.read_record(&mut rec).ok()? {
        return None;
    }
    let header = Header::new(&rec);
    let mut records = Vec::new();
    while records.len() < MAX_RECORDS {
        match rdr.read_record(&mut rec) {
            Ok(true) => records.push(rec.clone()),
            Ok(false) | Err(_) => break,
        }
    }
    Some((header, records))
}

/// Line numbers as the importer gives them: the header is line 1.
fn numbered(records: &[csv::StringRecord]) -> impl Iterator<Item = (u64, &csv::StringRecord)> {
    (2_u64..).zip(records)
}

/// Arbitrary bytes as an expense export: detected or forced into every known format.
pub fn expense_csv(data: &[u8]) {
    let Some(ix) = index() else { return };
    let Some((header, records)) = table(data) else { return };
    let detected = ExpenseFormat::detect(&header);
    for format in detected.into_iter().chain([ExpenseFormat::Generic]) {
        let Ok(layout) = expense::Layout::new(format, &header) else { continue };
        let mut parser = ExpenseParser::new(layout, ix, "fuzz.csv".into());
        let mut tally = Tally::default();
        for (line, rec) in numbered(&records) {
            let _row = parser.row(&header, rec, line, &mut tally);
        }
    }
}

/// Arbitrary bytes as a gateway or provider export, read both as CSV and as JSON.
pub fn gateway(data: &[u8]) {
    let Some(ix) = index() else { return };
    let mut tables = Vec::new();
    tables.extend(table(data));
    tables.extend(gateway::flatten_json(data).ok());
    for (header, records) in tables {
        let Some(format) = GatewayFormat::detect(&header) else { continue };
        let Ok(layout) = gateway::Layout::new(format, &header) else { continue };
        let mut parser = GatewayParser::new(layout, ix, "fuzz".into());
        let mut tally = Tally::default();
        for (line, rec) in numbered(&records) {
            let _row = parser.row(&header, rec, line, &mut tally);
        }
    }
}

/// Arbitrary bytes as a people (directory) CSV.
pub fn people_csv(data: &[u8]) {
    let Some((header, records)) = table(data) else { return };
    let Ok(layout) = people::Layout::new(&header) else { return };
    let mut tally = Tally::default();
    for (line, rec) in numbered(&records) {
        let _row = layout.row(&header, "fuzz.csv", rec, line, &mut tally);
    }
}

/// Arbitrary bytes as the body of `POST /api/v1/sightings`: decoded and validated as the API
/// does, then folded into a batch as ingest does.
pub fn wire_batch(data: &[u8]) {
    if let Ok(batch) = aiscout_wire::decode::<aiscout_wire::SightingBatch>(data) {
        let _folded = crate::ingest::batch(batch);
    }
}
