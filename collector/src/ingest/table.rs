//! CSV tables for the imports: RFC 4180 via the `csv` crate, a header located by name, and
//! caps on line length so that a hostile file cannot make one record eat the memory.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use std::io::{self, Read};

/// Why a file's header does not fit the layout it is read with. A value, not a flattened string:
/// callers name the file around it ([`super::file::ImportError::Layout`]) or the connector page
/// ([`crate::connectors::ConnectorError::Shape`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A column the layout needs is not in the header.
    #[error("{export} export without {} {what} column{}", article(what), map_hint(*.map))]
    Missing {
        /// The export format (`ramp`, `generic`, `people`, ...).
        export: &'static str,
        /// The column's meaning (`date`, `amount`, `merchant descriptor`, ...).
        what: &'static str,
        /// The config section and key that can map one, for the generic layouts.
        map: Option<(&'static str, &'static str)>,
    },
    /// A people file without an email column.
    #[error("people file without an email column (email, userName or emails[0].value)")]
    NoEmail,
    /// A column named by the configured mapping is not in the header.
    #[error("column {column:?} ({section}.{key}) is not in the header; the header is: {header}")]
    NotInHeader {
        /// The mapped column name.
        column: String,
        /// The config section (`import.expenses.generic`).
        section: &'static str,
        /// The config key that names it.
        key: &'static str,
        /// The header's column names, quoted and comma-separated.
        header: String,
    },
    /// No layout recognises the header.
    #[error("not a known {what}{}", .hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Unknown {
        /// What kind of export was expected (`expense export`, ...).
        what: &'static str,
        /// How to make it known.
        hint: Option<&'static str>,
    },
    /// No built-in layout recognises the header, and the configured generic mapping does not
    /// fit it either: why it does not.
    #[error("not a known {what}, nor the configured generic one: {mapped}")]
    MappingMisfit {
        /// What kind of export was expected.
        what: &'static str,
        /// Why the configured mapping does not fit.
        mapped: Box<LayoutError>,
    },
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

fn map_hint(map: Option<(&str, &str)>) -> String {
    map.map(|(section, key)| format!(" (map one with {section}.{key} or --map {key}=COLUMN)"))
        .unwrap_or_default()
}

/// Longest physical line accepted (a record may span lines inside quotes).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A reader that fails once a line grows past [`MAX_LINE_BYTES`].
pub struct LineCap<R> {
    inner: R,
    run: usize,
}

impl<R> LineCap<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, run: 0 }
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in buf.get(..n).unwrap_or(&[]) {
            if b == b'\n' {
                self.run = 0;
            } else {
                self.run = self.run.saturating_add(1);
                if self.run > MAX_LINE_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a line is longer than {MAX_LINE_BYTES} bytes"),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A CSV reader over `input` that reads the header itself (so it can be sniffed) and accepts
/// ragged rows (exports drift; a missing trailing cell reads as empty).
pub fn reader<R: Read>(input: R) -> csv::Reader<LineCap<R>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(LineCap::new(input))
}

/// A header: column names as written (BOM and surrounding spaces removed).
#[derive(Clone, Debug)]
pub struct Header {
    names: Vec<String>,
    folded: Vec<String>,
}

impl Header {
    /// From the first record.
    pub fn new(record: &csv::StringRecord) -> Self {
        let names: Vec<String> =
            record.iter().map(|c| c.trim_start_matches('\u{feff}').trim().to_owned()).collect();
        let folded = names.iter().map(|n| fold(n)).collect();
        Self { names, folded }
    }

    /// From names (JSON inputs are flattened to a table).
    pub fn from_names(names: Vec<String>) -> Self {
        let folded = names.iter().map(|n| fold(n)).collect();
        Self { names, folded }
    }

    /// The index of the first of `candidates` present (compared case-insensitively,
    /// ignoring spaces, underscores and punctuation).
    pub fn find(&self, candidates: &[&str]) -> Option<usize> {
        candidates.iter().find_map(|c| {
            let c = fold(c);
            self.folded.iter().position(|n| *n == c)
        })
    }

    /// True when every name is present.
    pub fn has_all(&self, names: &[&str]) -> bool {
        names.iter().all(|n| self.find(&[n]).is_some())
    }

    /// The column's name as written.
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", String::as_str)
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn fold(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// A cell by optional index: `""` when the column is absent or the row is short.
pub fn cell(record: &csv::StringRecord, i: Option<usize>) -> &str {
    i.and_then(|i| record.get(i)).map_or("", str::trim)
}
