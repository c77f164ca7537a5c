//! The `/api/v1` contract between the aiscout agent and collector, and the people API.
//!
//! Module map:
//! - [`agent`]: what agents send and receive: enrollment, sighting batches and their
//!   acknowledgement, heartbeats with health.
//! - [`people`]: what people (API token holders) read and write: inventory rows, devices,
//!   product detail, reviews and the audit log.
//! - [`report`]: procurement's reconciliation report and the import summaries.
//! - [`error`]: the one error body every non-2xx answer carries.
//! - [`validate`]: length and count caps on every field, and [`decode`], which parses JSON and
//!   validates it, naming the offending field either way.
//! - [`secret`]: [`Secret`], a string whose `Debug` and `Display` never show it.
//! - [`time`]: [`UnixSecs`], the one time type (seconds since the epoch, UTC).
//! - `sql` (features `rusqlite`, `postgres`): `ToSql`/`FromSql` for [`UnixSecs`] and
//!   [`SightingKind`], stored as the bare integer and wire name they replace.
//!
//! Key decision: this crate is the contract, owned by the collector and depended on by the
//! agent, never the other way round. The golden JSON files under `tests/data/v1/` pin the
//! encoding; changing one of them is a breaking change and needs a new version prefix.
//! Readers are tolerant: unknown fields are ignored, and optional fields may be absent.
//! Timestamps are integer seconds since the Unix epoch (UTC) everywhere ([`UnixSecs`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod error;
pub mod people;
pub mod report;
pub mod secret;
mod sql;
pub mod time;
pub mod validate;

pub use agent::{
    AgentInfo, BatchAck, CaptureState, DeviceIdentity, EnrollRequest, EnrollResponse, Heartbeat,
    HeartbeatAck, InterfaceStatus, McpFlag, NODE_KEY_PREFIX, Sighting, SightingBatch, SightingKind,
    UnknownSightingKind, is_node_key_shaped,
};
pub use error::ErrorBody;
pub use people::{
    AuditEntry, AuditList, DeviceHealth, DeviceList, DeviceRow, InventoryList, InventoryQuery,
    InventoryRow, McpServerFlags, Money, ProductDetail, ProductDevice, ProductStatus, Review,
    ReviewRequest, ReviewStatus, RiskFactValue, SourceSummary,
};
pub use report::{
    Candidate, ConsumerPlan, DepartmentMonthSpend, DescriptorMapping, DuplicateSubscriptions,
    GatewayBypass, IdleSubscription, ImportSummary, MappingList, MappingRequest, PaidNotSanctioned,
    Reconciliation, UsedNotPaid,
};
pub use secret::Secret;
pub use time::UnixSecs;
pub use validate::{DecodeError, Validate, ValidationError, decode};

/// The API version prefix every route lives under.
pub const API_PREFIX: &str = "/api/v1";

/// The media type of the signed catalog artifact served at `GET /api/v1/catalog`.
pub const CATALOG_MEDIA_TYPE: &str = "application/octet-stream";

/// Route paths, relative to the host, so that agent and collector cannot disagree.
pub mod routes {
    /// `POST`: [`crate::EnrollRequest`] -> [`crate::EnrollResponse`].
    pub const ENROLL: &str = "/api/v1/enroll";
    /// `POST` (node key): [`crate::SightingBatch`] -> [`crate::BatchAck`].
    pub const SIGHTINGS: &str = "/api/v1/sightings";
    /// `POST` (node key): [`crate::Heartbeat`] -> [`crate::HeartbeatAck`].
    pub const HEARTBEAT: &str = "/api/v1/heartbeat";
    /// `GET` (node key): the signed catalog artifact bytes.
    pub const CATALOG: &str = "/api/v1/catalog";
    /// `GET` (node key): the organisation overlay artifact, signed with the collector's
    /// overlay key. `GET`/`PUT` (admin token) on [`OVERLAY_DOCUMENT`]: its JSON document.
    pub const OVERLAY: &str = "/api/v1/overlay";
    /// `GET` (API token) / `PUT` (admin token): the overlay document as JSON.
    pub const OVERLAY_DOCUMENT: &str = "/api/v1/overlay/document";
    /// `GET` (API token): a JSON list of bypass rows, traffic straight to provider API hosts a
    /// sanctioned gateway fronts.
    pub const BYPASS: &str = "/api/v1/reports/bypass";
    /// `GET` (API token): [`crate::InventoryList`], filtered by [`crate::InventoryQuery`].
    pub const INVENTORY: &str = "/api/v1/inventory";
    /// `GET` (API token): [`crate::DeviceList`].
    pub const DEVICES: &str = "/api/v1/devices";
    /// `GET` (API token): [`crate::Reconciliation`].
    pub const RECONCILE: &str = "/api/v1/reports/reconcile";
    /// `POST` (admin or procurement token): an expense export as the body, `?format=` and
    /// `?name=` optional -> [`crate::ImportSummary`].
    pub const IMPORT_EXPENSES: &str = "/api/v1/imports/expenses";
    /// `POST` (admin or procurement token): a gateway spend export -> [`crate::ImportSummary`].
    pub const IMPORT_GATEWAY: &str = "/api/v1/imports/gateway";
    /// `GET` (API token): [`crate::MappingList`]. `POST` (security or admin token):
    /// [`crate::MappingRequest`] -> [`crate::DescriptorMapping`], 409 when the descriptor is
    /// mapped already.
    pub const MAPPINGS: &str = "/api/v1/mappings";
    /// `DELETE` (security or admin token): undo mapping `{id}` -> [`crate::DescriptorMapping`].
    pub const MAPPING: &str = "/api/v1/mappings/{id}";
    /// `GET` (API token): [`crate::AuditList`].
    pub const AUDIT: &str = "/api/v1/audit";
    /// `GET` (policy or admin token): the review decisions as a blocklist or policy file,
    /// `{format}` one of `rpz`, `hosts`, `adblock`, `chrome-policy`, `firefox-policy`,
    /// `vscode-policy`, `defender-indicators`, `url-list`, `osquery`; `?status=` (repeatable)
    /// `blocked` or `unsanctioned`. Strong `ETag`; `If-None-Match` answers 304.
    pub const POLICY: &str = "/api/v1/policy/{format}";
    /// Prefix of `GET /api/v1/products/{id}` ([`crate::ProductDetail`]) and
    /// `PUT /api/v1/products/{id}/review` ([`crate::ReviewRequest`] -> [`crate::Review`]).
    pub const PRODUCTS: &str = "/api/v1/products";
}

/// The HTTP header that carries credentials: `Authorization: Bearer <node key or API token>`.
pub const AUTHORIZATION_SCHEME: &str = "Bearer";
