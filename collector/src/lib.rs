//! The aiscout collector.
//!
//! Module map: nothing yet; the collector issue builds the API, stores, ingest, join and
//! reports here. The crate exists so the workspace layout of STYLE.md is in place.
#![forbid(unsafe_code)]
