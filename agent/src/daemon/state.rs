//! What the agent keeps in its state folder between runs: the last verified catalog and the
//! highest catalog version ever accepted (no rollback), the node key, and atomic writes.

#[allow(clippy::wildcard_imports)]
// Reason: one module split into files; the parent holds the shared imports.
use super::*;

/// The last good catalog, as fetched and verified (in the state folder).
pub(super) const SAVED_CATALOG: &str = "catalog.bin";
/// The highest catalog version this agent ever accepted (in the state folder; decimal).
pub(super) const CATALOG_HIGH_WATER: &str = "catalog.version";
/// The last good organisation overlay, as fetched and verified (in the state folder).
pub(super) const SAVED_OVERLAY: &str = "overlay.bin";
/// The highest overlay version this agent ever accepted (in the state folder; decimal).
pub(super) const OVERLAY_HIGH_WATER: &str = "overlay.version";
/// The most bytes of [`CATALOG_HIGH_WATER`] read (a `u64` in decimal is 20 digits).
const MAX_HIGH_WATER_BYTES: u64 = 64;
/// The most bytes of [`SAVED_CATALOG`] read (the collector's cap on a served artifact).
const MAX_SAVED_CATALOG_BYTES: u64 = 64 * 1024 * 1024;

/// Reads at most `cap` bytes of a regular file in the state folder; `Ok(None)` when absent.
fn read_state_file(path: &std::path::Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match inventory::fs::open_regular(path, cap) {
        Ok((f, _)) => f,
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(OpenError::Io(e)) => return Err(e),
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(Some(bytes))
}

/// The highest catalog version accepted before (0 when none was recorded). An unreadable or
/// malformed record is a warning and counts as none: the saved catalog's signature still
/// decides, and the built-in catalog's version still bounds from below.
pub(crate) fn catalog_high_water(state_dir: &std::path::Path) -> u64 {
    high_water(state_dir, CATALOG_HIGH_WATER)
}

/// A high-water record ([`CATALOG_HIGH_WATER`] or [`OVERLAY_HIGH_WATER`]); see
/// [`catalog_high_water`].
pub(super) fn high_water(state_dir: &std::path::Path, name: &str) -> u64 {
    let path = state_dir.join(name);
    match read_state_file(&path, MAX_HIGH_WATER_BYTES) {
        Ok(None) => 0,
        Ok(Some(bytes)) => {
            match std::str::from_utf8(&bytes).ok().and_then(|t| t.trim().parse().ok()) {
                Some(v) => v,
                None => {
                    tracing::warn!(path = %path.display(), "Version record is malformed; ignored.");
                    0
                }
            }
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), error = %error, "Version record unreadable; ignored.");
            0
        }
    }
}

/// Records `version` as the highest accepted (temp file, fsync, rename, fsync of the folder).
pub(super) fn record_high_water(state_dir: &std::path::Path, version: u64) -> std::io::Result<()> {
    write_atomic(&state_dir.join(CATALOG_HIGH_WATER), format!("{version}\n").as_bytes())
}

/// Keeps a verified overlay as the last good one, then raises its high-water mark.
pub(super) fn save_overlay(
    state_dir: &std::path::Path,
    bytes: &[u8],
    version: u64,
) -> std::io::Result<()> {
    write_atomic(&state_dir.join(SAVED_OVERLAY), bytes)?;
    write_atomic(&state_dir.join(OVERLAY_HIGH_WATER), format!("{version}\n").as_bytes())
}

/// The overlay to start with and the highest overlay version ever accepted: the saved one
/// when it verifies against the pinned overlay key, is not below the high-water mark and
/// merges with `catalog`; else none. Without an overlay key there is none.
pub(super) fn initial_overlay(
    state_dir: &std::path::Path,
    key: Option<[u8; 32]>,
    catalog: &Catalog,
) -> (Option<Overlay>, u64) {
    let high_water = high_water(state_dir, OVERLAY_HIGH_WATER);
    let Some(key) = key else { return (None, high_water) };
    let saved = state_dir.join(SAVED_OVERLAY);
    let bytes = match read_state_file(&saved, MAX_SAVED_CATALOG_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return (None, high_water),
        Err(error) => {
            tracing::warn!(path = %saved.display(), error = %error, "Saved organisation overlay unreadable; none in use.");
            return (None, high_water);
        }
    };
    match Verifier::new(key).verify_overlay(&bytes, Some(high_water)) {
        Ok(o) => match aiscout_signatures::overlay::merge(catalog, &o) {
            Ok(_) => {
                tracing::info!(version = o.version(), "Loaded the last good organisation overlay.");
                let high_water = high_water.max(o.version());
                (Some(o), high_water)
            }
            Err(error) => {
                tracing::warn!(error = %error, "Saved organisation overlay collides with the vendor catalog; none in use.");
                (None, high_water)
            }
        },
        Err(error) => {
            tracing::warn!(path = %saved.display(), error = %error, "Saved organisation overlay refused (is overlay_key or overlay_key_file the key of this collector?); none in use.");
            (None, high_water)
        }
    }
}

/// Keeps a verified catalog as the last good one, then raises the recorded high-water mark,
/// so a restart never goes below it (issue 14 item 10).
pub(super) fn save_catalog(
    state_dir: &std::path::Path,
    bytes: &[u8],
    version: u64,
) -> std::io::Result<()> {
    write_atomic(&state_dir.join(SAVED_CATALOG), bytes)?;
    record_high_water(state_dir, version)
}

/// The catalog to start with and the highest version ever accepted: the last good one saved
/// in the state folder when it still verifies against the pinned key and is not older than
/// the built-in one or any version accepted before (a validly signed older catalog copied
/// into the state folder is a rollback, refused as from the network); else the built-in one.
pub(super) fn initial_catalog(
    state_dir: &std::path::Path,
    key: [u8; 32],
) -> Result<(Catalog, u64), DaemonError> {
    let builtin = Catalog::builtin().map_err(|error| DaemonError::Catalog { error })?;
    let high_water = catalog_high_water(state_dir);
    let floor = builtin.version().max(high_water);
    let saved = state_dir.join(SAVED_CATALOG);
    let bytes = match read_state_file(&saved, MAX_SAVED_CATALOG_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok((builtin, high_water)),
        Err(error) => {
            tracing::warn!(path = %saved.display(), error = %error, "Saved catalog unreadable; using the built-in one.");
            return Ok((builtin, high_water));
        }
    };
    match Verifier::new(key).verify(&bytes, Some(floor)) {
        Ok(c) => {
            tracing::info!(version = c.version(), "Loaded the last good catalog.");
            if c.version() > high_water {
                // A state folder from before the record existed: start the record here.
                if let Err(error) = record_high_water(state_dir, c.version()) {
                    tracing::warn!(error = %error, "Cannot record the catalog version.");
                }
            }
            let high_water = high_water.max(c.version());
            Ok((c, high_water))
        }
        Err(VerifyError::Rollback { offered, current, .. }) => {
            tracing::warn!(
                path = %saved.display(),
                offered,
                highest_accepted = current,
                builtin = builtin.version(),
                "Saved catalog is older than one accepted before (rollback); refused, using the built-in one."
            );
            Ok((builtin, high_water))
        }
        Err(error) => {
            tracing::warn!(path = %saved.display(), error = %error, "Saved catalog refused; using the built-in one.");
            Ok((builtin, high_water))
        }
    }
}

/// A node key from its file; a missing, unreadable or empty file (a write cut short by a
/// full disk before writes were atomic) is no key.
#[allow(clippy::disallowed_methods)] // Reason: the agent's own node key file, written by write_secret.
pub(super) fn read_key(path: &std::path::Path) -> Option<Secret> {
    let text = std::fs::read_to_string(path).ok()?;
    let key = text.trim();
    (!key.is_empty()).then(|| Secret::new(key))
}

/// Writes a secret file 0600 atomically (see [`write_atomic`]).
pub(super) fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    replace_file(path, text.as_bytes(), true)
}

/// Replaces a state file atomically: a temporary file beside it (`<name>.tmp`), fsync, rename,
/// folder fsync, so a crash or a full disk leaves the old file or the new one, never a part,
/// and a failed write leaves no temporary file taking room (issue 14 item 8). Every file the
/// agent keeps in its state folder, other than the spool, is written this way.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_file(path, bytes, false)
}

fn replace_file(path: &std::path::Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _private = private; // Windows: the state folder's ACL decides.
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // Nothing half-written is left behind.
        let _removed = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable once the folder is synced (where folders can be opened).
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
