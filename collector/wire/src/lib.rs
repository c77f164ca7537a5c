//! The `/api/v1` contract between the aiscout agent and collector.
//!
//! Module map: empty until the collector issue defines the request and response types; the
//! crate exists now so that the agent can depend on the contract, never on the collector.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The API version prefix every route lives under.
pub const API_PREFIX: &str = "/api/v1";
