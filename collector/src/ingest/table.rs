//! CSV tables for the imports: RFC 4180 via the `csv` crate, a header located by name, and
//! caps on line length so that a hostile file cannot make one record eat the memory.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use std::io::{self, Read};

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
