//! `aiscout-agent status`: what this device's agent holds and has sent, for the employee whose
//! laptop it runs on (issue 21, "privacy that can be shown").
//!
//! Read-only and secret-free: it reads the config's locations (not the enroll secret or the
//! pinned keys), opens the spool read-only ([`spool::contents`]), and looks at the state folder
//! (whether a node key file exists, never its content; the catalog version record; the last
//! upload record). The spool is shown as counts per indicator kind and product, never the
//! matched values or user names, although the collector receives those values: a shoulder
//! reading the screen learns no more than the product list.
//!
//! The last upload record (`last_upload.json` in the state folder) is written by the daemon
//! after every upload attempt that had something to send: its time, whether it was
//! acknowledged, how many batches, and on failure the reason (capped, and never a secret:
//! upload errors carry no key).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Locations;
use crate::spool::{self, Contents, SpoolError};

/// The file in the state folder that records the last upload attempt.
pub const LAST_UPLOAD: &str = "last_upload.json";

/// The most bytes of an upload error kept in [`LAST_UPLOAD`].
const MAX_ERROR_CHARS: usize = 300;

/// The most bytes of [`LAST_UPLOAD`] read back.
const MAX_LAST_UPLOAD_BYTES: u64 = 16 * 1024;

/// The last upload attempt that had something to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUpload {
    /// When it ended (Unix seconds).
    pub at: i64,
    /// Whether every batch it sent was acknowledged.
    pub ok: bool,
    /// Batches acknowledged.
    pub batches: u64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LastUpload {
    /// A record of an attempt that ended at `at` with `batches` acknowledged and, on failure,
    /// `error` (cut to a few hundred characters).
    pub fn new(at: i64, batches: u64, error: Option<&str>) -> Self {
        let error = error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect::<String>());
        Self { at, ok: error.is_none(), batches, error }
    }

    /// Writes the record into `state_dir` whole (temporary file, fsync, rename).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::daemon::write_atomic(&state_dir.join(LAST_UPLOAD), &bytes)
    }

    /// Reads the record from `state_dir`; `None` when there is none yet.
    ///
    /// # Errors
    /// A record that exists but cannot be read or is not one.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, LastUploadError> {
        use std::io::Read as _;
        let path = state_dir.join(LAST_UPLOAD);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(LastUploadError::Read { path, error }),
        };
        let mut bytes = Vec::new();
        if let Err(error) = file.take(MAX_LAST_UPLOAD_BYTES).read_to_end(&mut bytes) {
            return Err(LastUploadError::Read { path, error });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| LastUploadError::NotARecord { path, error })
    }
}

/// Why the last upload record could not be read (the cause is in the message only).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LastUploadError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// `last_upload.json` in the state folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not the JSON the daemon writes.
    #[error("{} is not an upload record: {error}", path.display())]
    NotARecord {
        /// `last_upload.json` in the state folder.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
}

/// Everything `status` shows.
#[derive(Debug)]
pub struct Status {
    /// The collector's URL, when configured.
    pub collector_url: Option<String>,
    /// The device owner's email, when configured.
    pub owner_email: Option<String>,
    /// The state folder.
    pub state_dir: PathBuf,
    /// The spool file.
    pub spool_path: PathBuf,
    /// Whether the agent holds a node key (it enrolled with the collector).
    pub enrolled: bool,
    /// The catalog version in use: the highest accepted, or the built-in one.
    pub catalog_version: u64,
    /// The spool's contents (`Ok(None)`: no spool yet), or why it could not be read.
    pub spool: Result<Option<Contents>, SpoolError>,
    /// The last upload (`Ok(None)`: none yet), or why its record could not be read.
    pub last_upload: Result<Option<LastUpload>, LastUploadError>,
}

impl Status {
    /// Where the collector's transparency page is.
    pub fn transparency_url(&self) -> Option<String> {
        self.collector_url.as_ref().map(|u| format!("{u}/transparency"))
    }
}

/// Gathers the status from the files at `loc`.
pub fn gather(loc: &Locations) -> Status {
    let key = loc.state_dir.join("node_key");
    let enrolled = std::fs::metadata(&key).is_ok_and(|m| m.is_file() && m.len() > 0);
    let builtin = aiscout_signatures::Catalog::builtin().map(|c| c.version()).unwrap_or(0);
    let catalog_version = builtin.max(crate::daemon::catalog_high_water(&loc.state_dir));
    Status {
        collector_url: loc.collector_url.clone(),
        owner_email: loc.owner_email.clone(),
        state_dir: loc.state_dir.clone(),
        spool_path: loc.spool.clone(),
        enrolled,
        catalog_version,
        spool: spool::contents(&loc.spool),
        last_upload: LastUpload::load(&loc.state_dir),
    }
}

/// The status as one JSON document (`status --json`).
pub fn to_json(s: &Status) -> Value {
    let spool = match &s.spool {
        Ok(Some(c)) => json!({
            "path": s.spool_path.display().to_string(),
            "rows": c.held.iter().map(|h| h.rows).sum::<u64>(),
            "sightings": c.held.iter().map(|h| h.sightings).sum::<u64>(),
            "evicted_unreported": c.evicted,
            "dropped_unreported": c.dropped,
            "by_kind": c.held.iter().map(|h| json!({
                "kind": h.kind,
                "product": h.product,
                "rows": h.rows,
                "in_flight": h.in_flight,
                "sightings": h.sightings,
            })).collect::<Vec<_>>(),
        }),
        Ok(None) => {
            json!({"path": s.spool_path.display().to_string(), "rows": 0, "sightings": 0, "by_kind": []})
        }
        Err(e) => json!({"path": s.spool_path.display().to_string(), "error": e.to_string()}),
    };
    let last_upload = match &s.last_upload {
        Ok(Some(u)) => json!({
            "at": u.at,
            "at_utc": utc(u.at),
            "ok": u.ok,
            "batches": u.batches,
            "error": u.error,
        }),
        Ok(None) => Value::Null,
        Err(e) => json!({"error": e.to_string()}),
    };
    json!({
        "collector_url": s.collector_url,
        "transparency_url": s.transparency_url(),
        "owner_email": s.owner_email,
        "enrolled": s.enrolled,
        "state_dir": s.state_dir.display().to_string(),
        "catalog_version": s.catalog_version,
        "spool": spool,
        "last_upload": last_upload,
    })
}

/// The status as text for a person (`status`).
pub fn to_text(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not configured)".into());
    // Writing to a String cannot fail.
    let _w = writeln!(t, "Collector:         {}", or_none(&s.collector_url));
    let _w = writeln!(
        t,
        "Enrolled:          {}",
        if s.enrolled { "yes" } else { "no (not yet enrolled with the collector)" }
    );
    let _w = writeln!(t, "Device owner:      {}", or_none(&s.owner_email));
    let _w = writeln!(t, "Catalog version:   {}", s.catalog_version);
    match &s.last_upload {
        Ok(Some(u)) if u.ok => {
            let _w = writeln!(
                t,
                "Last upload:       {} UTC, acknowledged ({} batches)",
                utc(u.at),
                u.batches
            );
        }
        Ok(Some(u)) => {
            let _w = writeln!(
                t,
                "Last upload:       {} UTC, failed: {} ({} batches acknowledged before)",
                utc(u.at),
                u.error.as_deref().unwrap_or("unknown"),
                u.batches
            );
        }
        Ok(None) => {
            let _w = writeln!(t, "Last upload:       none yet");
        }
        Err(e) => {
            let _w = writeln!(t, "Last upload:       unknown: {e}");
        }
    }
    match &s.spool {
        Ok(Some(c)) if !c.held.is_empty() => {
            let _w = writeln!(t, "Waiting to be sent ({}), counts only:", s.spool_path.display());
            let _w =
                writeln!(t, "  {:<14} {:<28} {:>6} {:>10}", "KIND", "PRODUCT", "ROWS", "SIGHTINGS");
            for h in &c.held {
                let _w = writeln!(
                    t,
                    "  {:<14} {:<28} {:>6} {:>10}",
                    h.kind, h.product, h.rows, h.sightings
                );
            }
            if c.evicted > 0 || c.dropped > 0 {
                let _w = writeln!(
                    t,
                    "  (dropped and counted, not kept: {} evicted, {} dropped)",
                    c.evicted, c.dropped
                );
            }
        }
        Ok(_) => {
            let _w = writeln!(t, "Waiting to be sent: nothing ({})", s.spool_path.display());
        }
        Err(e) => {
            let _w = writeln!(t, "Waiting to be sent: unknown: {e}");
        }
    }
    let _w = writeln!(
        t,
        "Only AI products in the catalog are kept and sent; nothing else this device does is \
         stored, logged or sent."
    );
    if let Some(url) = s.transparency_url() {
        let _w = writeln!(t, "What is collected and who can see it: {url}");
    }
    t
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), by the civil-from-days algorithm
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_380_245), "2026-12-04 10:30:45");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn last_upload_round_trips_and_caps_its_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LastUpload::load(dir.path()).unwrap(), None);
        let long = "x".repeat(1_000);
        let rec = LastUpload::new(5, 2, Some(&long));
        assert!(!rec.ok);
        assert_eq!(rec.error.as_deref().map(str::len), Some(MAX_ERROR_CHARS));
        rec.save(dir.path()).unwrap();
        assert_eq!(LastUpload::load(dir.path()).unwrap(), Some(rec));
        std::fs::write(dir.path().join(LAST_UPLOAD), "not json").unwrap();
        let e = LastUpload::load(dir.path()).unwrap_err();
        assert!(matches!(e, LastUploadError::NotARecord { .. }), "{e:?}");
        assert!(
            e.to_string().ends_with(
                "last_upload.json is not an upload record: expected ident at line 1 column 2"
            ),
            "{e}"
        );
    }
}
