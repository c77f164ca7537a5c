//! Matching: the only stage that decides whether an [`Observation`] is a product, and so the
//! only place an unmatched observation may be dropped (DESIGN.md, invariant 1).
//!
//! The catalog is either the built-in one or a signed artifact verified against a pinned
//! Ed25519 public key; the index itself lives in `aiscout-signatures`, so the agent and the
//! collector share one definition of "this name is that product".

use std::io::Read;
use std::path::{Path, PathBuf};

use aiscout_signatures::source::SourceErrors;
use aiscout_signatures::verify::KeyError;
use aiscout_signatures::{Catalog, Index, Verifier, VerifyError};

use crate::model::Observation;

/// The largest catalog artifact or key file read, in bytes.
pub const MAX_CATALOG_BYTES: u64 = 64 * 1024 * 1024;

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The embedded catalog does not validate (a build of a broken source tree).
    // Not `#[from]`, which would also return the problems from `source()`: they are in the
    // message (issue 18: each cause once).
    #[error("built-in catalog is invalid: {0}")]
    Builtin(SourceErrors),
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_CATALOG_BYTES`].
    #[error("{path} is larger than {MAX_CATALOG_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The public key file does not hold a key.
    #[error("bad catalog public key in {path}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: KeyError,
    },
    /// The artifact failed verification.
    #[error("catalog {path} refused")]
    Verify {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: VerifyError,
    },
}

impl From<SourceErrors> for CatalogError {
    fn from(e: SourceErrors) -> Self {
        Self::Builtin(e)
    }
}

/// The product an observation matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The product's stable id, for example `openai.chatgpt`.
    pub product: &'a str,
    /// The indicator kind's output name (`web` or `api` for domains).
    pub indicator: &'static str,
}

/// Observations in, products out.
#[derive(Clone, Debug)]
pub struct Matcher {
    index: Index,
}

impl Matcher {
    /// A matcher over an already built index.
    pub fn new(index: Index) -> Self {
        Matcher { index }
    }

    /// A matcher over the catalog compiled into the binary.
    ///
    /// # Errors
    /// [`CatalogError::Builtin`] when the embedded sources do not validate.
    pub fn builtin() -> Result<Self, CatalogError> {
        Ok(Matcher::new(Index::new(Catalog::builtin()?)))
    }

    /// A matcher over a signed artifact, verified against the hex public key in `key_path`.
    ///
    /// # Errors
    /// When a file cannot be read or is too large, the key is malformed, or the artifact does
    /// not verify.
    pub fn from_artifact(artifact: &Path, key_path: &Path) -> Result<Self, CatalogError> {
        let bytes = read_capped(artifact)?;
        let key_bytes = read_capped(key_path)?;
        let key_text = String::from_utf8_lossy(&key_bytes);
        let verifier = Verifier::from_hex(key_text.trim())
            .map_err(|source| CatalogError::Key { path: key_path.to_owned(), source })?;
        let catalog = verifier
            .verify(&bytes, None)
            .map_err(|source| CatalogError::Verify { path: artifact.to_owned(), source })?;
        Ok(Matcher::new(Index::new(catalog)))
    }

    /// The product `obs` names, if any.
    pub fn lookup(&self, obs: &Observation) -> Option<Hit<'_>> {
        let m = self.index.domain(&obs.name)?;
        Some(Hit { product: &m.product.id, indicator: m.indicator.as_str() })
    }

    /// The catalog version in use.
    pub fn catalog_version(&self) -> u64 {
        self.index.catalog().version()
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, CatalogError> {
    let read_err = |source| CatalogError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CATALOG_BYTES.saturating_add(1)).read_to_end(&mut bytes).map_err(read_err)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CATALOG_BYTES {
        return Err(CatalogError::TooLarge { path: path.to_owned() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Timestamp, Transport};

    fn obs(name: &str) -> Observation {
        Observation {
            kind: Kind::Dns,
            name: name.to_owned(),
            ts: Timestamp(0),
            src: "127.0.0.1:1".parse().unwrap(),
            dst: "127.0.0.1:53".parse().unwrap(),
            transport: Transport::Udp,
            alpn: Vec::new(),
            ech: false,
        }
    }

    #[test]
    fn domain_matches_respect_label_boundaries() {
        let m = Matcher::builtin().unwrap();
        assert_eq!(m.lookup(&obs("api.openai.com")).map(|h| h.product), Some("openai.api"));
        assert!(m.lookup(&obs("notopenai.com")).is_none());
        assert!(m.lookup(&obs("openai.com.evil.example")).is_none());
        assert!(m.lookup(&obs("example.com")).is_none());
    }
}
