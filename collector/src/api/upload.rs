//! Request bodies: the content-type check, capped reads of small bodies, and large uploads
//! (imports) streamed to a file on disk under a cap on concurrent imports (issue 14).
//!
//! Every handler authenticates and authorises from the headers first and only then reads its
//! body, through these functions, so an unauthenticated upload costs the collector a header
//! parse and nothing more. An import holds one of `[server] max_concurrent_imports` permits
//! from before its first byte is read until it has been stored; without a free permit it is
//! answered 503 at once. Its body goes to `DATA_DIR/uploads/` (0700) in a 0600 file that is
//! removed when the request ends, however it ends.
//!
//! A client holding a permit must keep sending: past [`PACE_GRACE`], an upload that has
//! averaged under [`MIN_BYTES_PER_SEC`] is refused (the rule and numbers of Apache's
//! `mod_reqtimeout` body default), and an API upload that sends nothing for [`STALL`] is
//! refused, so a slowly dribbled body cannot hold a permit for long.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long an upload may run before its average pace is checked.
pub const PACE_GRACE: std::time::Duration = std::time::Duration::from_secs(20);
/// The slowest average an upload may keep after [`PACE_GRACE`].
pub const MIN_BYTES_PER_SEC: u64 = 500;
/// The longest wait for the next piece of an API upload's body.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(20);

/// Why a body could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body (declared or read) is larger than the route allows.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The client stopped sending or sent something that is not HTTP.
    #[error("reading the request body: {0}")]
    Read(ReadError),
    /// The upload file could not be written.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why (in the message, not the source: issue 18, each cause once).
        error: std::io::Error,
    },
    /// Every import permit is taken.
    #[error("{0} imports are already running; retry later")]
    Busy(u32),
}

/// Why reading a body failed (inside [`BodyError::Read`]).
// The cause is in the message, not in `source()` (issue 18: each cause once); hyper's message
// leaves out its own cause, so the whole chain is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The connection or the HTTP framing failed.
    #[error("{}", crate::store::causes(&**.0))]
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// An API upload sent nothing for [`STALL`].
    #[error("the upload sent nothing for {} s", .0.as_secs())]
    Stalled(std::time::Duration),
    /// An upload averaged under [`MIN_BYTES_PER_SEC`] past [`PACE_GRACE`].
    #[error(
        "the upload is too slow: {written} bytes in {secs} s, under {MIN_BYTES_PER_SEC} bytes a \
         second"
    )]
    TooSlow {
        /// Bytes received so far.
        written: usize,
        /// Seconds since the upload started.
        secs: u64,
    },
}

/// Whether the request declares `Content-Type: application/json` (any parameters, such as
/// `charset=utf-8`, are allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The declared `Content-Length`, when there is a readable one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads a whole body of at most `limit` bytes; a declared length over the limit is refused
/// before anything is read.
///
/// # Errors
/// The body is too large, or reading it failed.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let inner = e.into_inner();
            if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(BodyError::TooLarge(limit))
            } else {
                Err(BodyError::Read(ReadError::Transport(inner)))
            }
        }
    }
}

/// Where imports are written and how many may run at once.
#[derive(Clone, Debug)]
pub struct Uploads {
    dir: PathBuf,
    permits: Arc<Semaphore>,
    max: u32,
}

impl Uploads {
    /// Uploads written under `dir` (created 0700 on first use), at most `max` at once.
    pub fn new(dir: PathBuf, max: u32) -> Self {
        let permits = Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(1)));
        Uploads { dir, permits, max }
    }

    /// A permit to run one import, or `Busy` when all are taken.
    ///
    /// # Errors
    /// Every permit is taken.
    pub fn permit(&self) -> Result<OwnedSemaphorePermit, BodyError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| BodyError::Busy(self.max))
    }

    /// A new, empty upload file of at most `limit` bytes.
    ///
    /// # Errors
    /// The folder or file cannot be created.
    pub async fn create(&self, limit: usize) -> Result<Spooled, BodyError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |error| BodyError::Io { path, error }
        };
        crate::store::files::private_dir(&self.dir).map_err(io(&self.dir))?;
        let name = crate::credentials::generate("upload-").map_err(|e| BodyError::Io {
            path: self.dir.display().to_string(),
            error: std::io::Error::other(e.to_string()),
        })?;
        let path = self.dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(io(&path))?;
        Ok(Spooled {
            file: Some(file),
            path,
            written: 0,
            limit,
            started: tokio::time::Instant::now(),
        })
    }
}

/// One upload being written to disk; the file is removed on drop.
#[derive(Debug)]
pub struct Spooled {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    written: usize,
    limit: usize,
    started: tokio::time::Instant,
}

impl Spooled {
    /// Appends a chunk.
    ///
    /// # Errors
    /// The upload would pass its limit, or the write failed.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        self.written = self.written.saturating_add(chunk.len());
        if self.written > self.limit {
            return Err(BodyError::TooLarge(self.limit));
        }
        let elapsed = self.started.elapsed();
        if elapsed > PACE_GRACE
            && (self.written as u64) < MIN_BYTES_PER_SEC.saturating_mul(elapsed.as_secs())
        {
            return Err(BodyError::Read(ReadError::TooSlow {
                written: self.written,
                secs: elapsed.as_secs(),
            }));
        }
        let io = |error| BodyError::Io { path: self.path.display().to_string(), error };
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).await.map_err(io),
            None => Ok(()),
        }
    }

    /// Writes a whole request body.
    ///
    /// # Errors
    /// The body is too large, reading it failed, or the write failed.
    pub async fn body(&mut self, headers: &HeaderMap, mut body: Body) -> Result<(), BodyError> {
        if declared_length(headers).is_some_and(|n| n > self.limit as u64) {
            return Err(BodyError::TooLarge(self.limit));
        }
        let stalled = || BodyError::Read(ReadError::Stalled(STALL));
        // Bounded: every turn reads a frame or ends; the pace check ends a dribble.
        while let Some(frame) =
            tokio::time::timeout(STALL, body.frame()).await.map_err(|_| stalled())?
        {
            let frame = frame.map_err(|e| BodyError::Read(ReadError::Transport(e.into_inner())))?;
            if let Ok(data) = frame.into_data() {
                self.write(&data).await?;
            }
        }
        Ok(())
    }

    /// Flushes and closes the file; it stays on disk until `self` is dropped.
    ///
    /// # Errors
    /// The flush failed.
    pub async fn finish(&mut self) -> Result<(), BodyError> {
        if let Some(mut f) = self.file.take() {
            f.flush()
                .await
                .map_err(|error| BodyError::Io { path: self.path.display().to_string(), error })?;
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        drop(self.file.take());
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "Could not remove an upload file.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_capped_private_counted_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().join("uploads"), 1);
        let permit = uploads.permit().unwrap();
        assert!(matches!(uploads.permit(), Err(BodyError::Busy(1))), "one import at a time");
        let mut file = uploads.create(8).await.unwrap();
        file.write(b"12345").await.unwrap();
        assert!(matches!(file.write(b"6789").await, Err(BodyError::TooLarge(8))));
        file.finish().await.unwrap();
        let path = file.path().to_owned();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(&dir.path().join("uploads"))), (0o600, 0o700));
        drop(file);
        assert!(!path.exists(), "the upload is removed with its request");
        drop(permit);
        assert!(uploads.permit().is_ok(), "the permit is given back");
    }

    /// A body that sends `chunk` bytes every `every`, `times` times (in paused time).
    fn trickle(chunk: usize, every: std::time::Duration, times: usize) -> Body {
        let (mut tx, body) = http_body_util::Channel::<Bytes>::new(1);
        tokio::spawn(async move {
            for _ in 0..times {
                tokio::time::sleep(every).await;
                if tx.send_data(Bytes::from(vec![b'x'; chunk])).await.is_err() {
                    return;
                }
            }
        });
        Body::new(body)
    }

    async fn take(body: Body) -> Result<(), BodyError> {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().join("uploads"), 1);
        let mut file = uploads.create(1 << 30).await.unwrap();
        file.body(&HeaderMap::new(), body).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_dribbled_or_stalled_upload_is_refused_and_a_slow_steady_one_is_taken() {
        use std::time::Duration;
        // One byte every ten seconds: refused at the first check past the grace.
        let err = take(trickle(1, Duration::from_secs(10), 100)).await.unwrap_err();
        assert!(err.to_string().contains("too slow: 3 bytes in 30 s"), "{err}");
        // Nothing for longer than the stall limit.
        let err = take(trickle(4096, STALL + Duration::from_secs(1), 3)).await.unwrap_err();
        assert!(err.to_string().contains("sent nothing for 20 s"), "{err}");
        // 1 KiB a second for two minutes: slow, but above the floor.
        take(trickle(1024, Duration::from_secs(1), 120)).await.unwrap();
    }

    #[test]
    fn json_is_recognised_with_parameters_and_in_any_case() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(v));
            h
        };
        assert!(is_json(&with("application/json")));
        assert!(is_json(&with("Application/JSON ; charset=utf-8")));
        assert!(!is_json(&with("application/json-seq")));
        assert!(!is_json(&with("text/plain")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
