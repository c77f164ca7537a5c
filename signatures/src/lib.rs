//! The aiscout AI-vendor catalog: what every AI product looks like on a network, a disk, a card
//! statement and a gateway bill, and the matchers that recognise it.
//!
//! Module map:
//! - [`catalog`]: the domain types ([`Catalog`], [`Product`], [`Category`], [`Price`]).
//! - [`source`]: the human-edited TOML under `catalog/`, validated with file, line and key path.
//! - [`domain`]: domain normalisation and the label-boundary suffix matcher.
//! - [`merchant`]: card descriptor normalisation and the prefix matcher.
//! - [`matcher`]: [`Index`], one index over every indicator kind.
//! - [`risk`]: risk facts per product and the risk score.
//! - [`stats`]: catalog coverage per category and indicator kind (`aiscout-catalog stats`).
//! - [`artifact`]: the canonical compiled form (deterministic bytes, version, content hash).
//! - [`overlay`]: the organisation overlay (own products, sanctioned gateways) and its merge.
//! - [`verify`]: Ed25519 verification of an artifact against a pinned key, with rollback refusal.
//! - `sign` (feature `signing`, implied by `sign`): key generation and signing, for the
//!   `aiscout-catalog` tool and the collector's overlay signer.
//! - [`hex`]: the hex form of keys and hashes.
//!
//! Key decision: this crate is pure (no async, no network, no files except where a caller
//! hands it a path), so the agent, the collector and the catalog tool share one definition of
//! "this value is that product", and agents never link the signing code.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod artifact;
pub mod catalog;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod hex;
pub mod matcher;
pub mod merchant;
pub mod overlay;
pub mod risk;
#[cfg(feature = "signing")]
pub mod sign;
pub mod source;
pub mod stats;
pub mod verify;

pub use catalog::{
    Audience, Catalog, Category, ContextRule, DomainRule, DomainUse, Period, Price, Product,
    SharedDescriptor, WindowsApp,
};
pub use matcher::{AppRef, ExtensionRef, Index, Indicator, LineMatch, Match};
pub use overlay::{Gateway, Overlay, OverlayError};
pub use risk::{RiskFact, RiskFacts, RiskWeights};
pub use verify::{Artifact, Verifier, VerifyError};

include!(concat!(env!("OUT_DIR"), "/builtin_sources.rs"));
