//! What people read and write with an API token: inventory, devices, product detail, reviews
//! and the audit log.
//!
//! Roles: `procurement` reads everything; `security` and `admin` may also review.

use serde::{Deserialize, Serialize};

use crate::agent::{CaptureState, InterfaceStatus};

/// A review decision a person can take on a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReviewStatus {
    /// Must not be used; enforcement is up to other tools.
    Blocked,
    /// Approved for use.
    Sanctioned,
    /// Being looked at.
    UnderReview,
    /// Not approved.
    Unsanctioned,
}

impl ReviewStatus {
    /// Every decision, in the order of the enum.
    pub const ALL: [ReviewStatus; 4] = [
        ReviewStatus::Blocked,
        ReviewStatus::Sanctioned,
        ReviewStatus::UnderReview,
        ReviewStatus::Unsanctioned,
    ];

    /// The wire (and storage) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Blocked => "blocked",
            ReviewStatus::Sanctioned => "sanctioned",
            ReviewStatus::UnderReview => "under_review",
            ReviewStatus::Unsanctioned => "unsanctioned",
        }
    }

    /// The decision with this wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A product's status in the inventory: a review decision, or `unreviewed` (shadow AI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProductStatus {
    /// See [`ReviewStatus::Blocked`].
    Blocked,
    /// See [`ReviewStatus::Sanctioned`].
    Sanctioned,
    /// See [`ReviewStatus::UnderReview`].
    UnderReview,
    /// Never reviewed: discovery treats it as shadow AI.
    Unreviewed,
    /// See [`ReviewStatus::Unsanctioned`].
    Unsanctioned,
}

impl ProductStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Blocked => "blocked",
            ProductStatus::Sanctioned => "sanctioned",
            ProductStatus::UnderReview => "under_review",
            ProductStatus::Unreviewed => "unreviewed",
            ProductStatus::Unsanctioned => "unsanctioned",
        }
    }

    /// The status with this wire name.
    pub fn parse(name: &str) -> Option<Self> {
        if name == "unreviewed" {
            return Some(ProductStatus::Unreviewed);
        }
        ReviewStatus::parse(name).map(Self::from)
    }
}

impl From<ReviewStatus> for ProductStatus {
    fn from(status: ReviewStatus) -> Self {
        match status {
            ReviewStatus::Blocked => ProductStatus::Blocked,
            ReviewStatus::Sanctioned => ProductStatus::Sanctioned,
            ReviewStatus::UnderReview => ProductStatus::UnderReview,
            ReviewStatus::Unsanctioned => ProductStatus::Unsanctioned,
        }
    }
}

/// Filters of `GET /api/v1/inventory`, all optional and combined with AND.
///
/// Given as query parameters: `product`, `status`, `category`, `department`, `source`,
/// `since` and `until` (Unix seconds; a row matches when it was seen at some time in
/// `[since, until]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryQuery {
    /// Exact product id.
    #[serde(default)]
    pub product: Option<String>,
    /// Review status, or `unreviewed`.
    #[serde(default)]
    pub status: Option<ProductStatus>,
    /// Catalog category (`chat`, `coding`, ...).
    #[serde(default)]
    pub category: Option<String>,
    /// Department of the device owner (from a directory import).
    #[serde(default)]
    pub department: Option<String>,
    /// Discovery source: a sighting kind, `expense` or `gateway`.
    #[serde(default)]
    pub source: Option<String>,
    /// Seen at or after this time.
    #[serde(default)]
    pub since: Option<i64>,
    /// Seen at or before this time.
    #[serde(default)]
    pub until: Option<i64>,
}

/// One product in the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRow {
    /// Product id.
    pub product: String,
    /// Vendor display name (empty for a product unknown to the collector's catalog).
    pub vendor: String,
    /// Product display name.
    pub name: String,
    /// Catalog category.
    pub category: String,
    /// Review status.
    pub status: ProductStatus,
    /// Discovery sources that saw it, sorted.
    pub sources: Vec<String>,
    /// Distinct devices that saw it.
    pub devices: u64,
    /// Distinct users that used it.
    pub users: u64,
    /// Departments of the owners of those devices, sorted.
    #[serde(default)]
    pub departments: Vec<String>,
    /// First time seen by any source.
    pub first_seen: i64,
    /// Last time seen by any source.
    pub last_seen: i64,
    /// Sightings counted.
    pub sightings: u64,
    /// Distinct expense payers (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payers: u64,
    /// Expense spend in the period, per currency (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expense_spend: Vec<Money>,
    /// Gateway spend in the period, per currency (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_spend: Vec<Money>,
    /// Gateway tokens in the period, input plus output: from the gateways' own rows and from
    /// the providers' usage reports (OpenAI completions usage), which carry tokens without a
    /// cost (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gateway_tokens: u64,
    /// Active individual subscriptions found in expense lines (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subscriptions: u64,
    /// Estimated cost for a year, per currency: active subscriptions at their cadence plus
    /// the last 30 days of gateway spend times 365/30 (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annualized_cost: Vec<Money>,
    /// Risk flags of the product's configured MCP servers on any device (issue 17): the union
    /// of their [`crate::McpFlag`] wire names, sorted (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_flags: Vec<String>,
    /// Gateway bypass (issue 17): distinct devices that reached the product's API hosts
    /// directly while a sanctioned gateway of the organisation overlay fronts it (absent when
    /// none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bypass_devices: u64,
    /// Distinct owners of those devices (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bypass_people: u64,
    /// The processes that made that traffic, sorted; traffic the agent could not attribute
    /// to a process counts in `bypass_devices` only (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bypass_processes: Vec<String>,
    /// The overlay ids of the gateways that should have carried it, sorted (absent when
    /// none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bypass_gateways: Vec<String>,
    /// Risk score from the catalog's risk facts and the `[risk]` weights: 0 (every fact known
    /// and safe) to 100 (every fact risky). Omitted when 0 and read as 0 when absent, so
    /// the v1 encoding of a row without risk facts is unchanged.
    #[serde(default, skip_serializing_if = "is_zero_score")]
    pub risk_score: u8,
    /// The facts behind the score, every fact listed (unknown ones as `unknown`); omitted
    /// when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk_facts: Vec<RiskFactValue>,
}

/// One risk fact of a product, as shown to people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskFactValue {
    /// The fact's key (`soc2`, `trains_business`, ...).
    pub fact: String,
    /// `yes`, `no`, `30 days`, `EU, US`, `none` or `unknown`.
    pub value: String,
    /// Where the catalog's value comes from; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An amount of money: integer minor units (cents for USD) and, for people, the same as a
/// decimal string. Money never goes through floating point.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Money {
    /// ISO 4217 code.
    pub currency: String,
    /// The amount in the currency's minor units.
    pub amount_minor: i64,
    /// The amount as a decimal string with the currency's minor-unit digits (`12.34`).
    pub amount: String,
}

/// `GET /api/v1/inventory`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryList {
    /// Rows sorted by product id.
    pub rows: Vec<InventoryRow>,
}

/// One enrolled device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    /// Stable host id.
    pub host_id: String,
    /// Host name.
    pub hostname: String,
    /// Operating system family.
    pub os: String,
    /// Operating system version.
    pub os_version: String,
    /// Agent version.
    pub agent_version: String,
    /// Owner email, when configured.
    pub owner_email: Option<String>,
    /// When the device first enrolled.
    pub enrolled_at: i64,
    /// The last time the collector heard from it.
    pub last_contact: i64,
    /// The last heartbeat, if any.
    pub health: Option<DeviceHealth>,
    /// The host id this device shares with another machine, when the collector enrolled it as
    /// a separate device (a cloned VDI or golden image; issue 14): its own `host_id` is this
    /// plus `#N`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// The health a device last reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHealth {
    /// When the heartbeat arrived.
    pub received_at: i64,
    /// Agent version.
    pub agent_version: String,
    /// Catalog version in use.
    pub catalog_version: u64,
    /// Capture status per interface.
    pub interfaces: Vec<InterfaceStatus>,
    /// Packets seen.
    pub packets: u64,
    /// Drops.
    pub drops: u64,
    /// Spool depth.
    pub spool_depth: u64,
    /// Spool evictions.
    pub evictions: u64,
    /// Last inventory scan.
    pub last_scan: Option<i64>,
    /// Sightings the agent reported dropped, summed over its batches.
    pub dropped_sightings: u64,
    /// Sightings the agent reported evicted, summed over its batches.
    pub evicted_sightings: u64,
}

impl DeviceHealth {
    /// True when every interface that is not disabled is capturing.
    pub fn capturing(&self) -> bool {
        self.interfaces.iter().all(|i| i.state != CaptureState::Failed)
    }
}

/// `GET /api/v1/devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceList {
    /// Devices sorted by host id.
    pub devices: Vec<DeviceRow>,
}

/// `GET /api/v1/products/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetail {
    /// Product id.
    pub product: String,
    /// Vendor display name.
    pub vendor: String,
    /// Product display name.
    pub name: String,
    /// Catalog category.
    pub category: String,
    /// Review status.
    pub status: ProductStatus,
    /// The current review, if the product was ever reviewed.
    pub review: Option<Review>,
    /// First and last seen per discovery source.
    pub sources: Vec<SourceSummary>,
    /// Devices that saw it.
    pub devices: Vec<ProductDevice>,
    /// Its configured MCP servers that carry risk flags (issue 17), by value (absent when
    /// none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServerFlags>,
}

/// One configured MCP server with risk flags, over the devices that report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerFlags {
    /// The server as the agent reported it (`name: command args` or its URL, with secrets
    /// removed).
    pub value: String,
    /// [`crate::McpFlag`] wire names, sorted.
    pub flags: Vec<String>,
    /// Devices where it is configured with these flags.
    pub devices: u64,
}

/// Sightings of one product from one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// A sighting kind, `expense` or `gateway`.
    pub source: String,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Sightings counted.
    pub count: u64,
    /// Distinct devices.
    pub devices: u64,
}

/// One device's use of one product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDevice {
    /// Stable host id.
    pub host_id: String,
    /// Host name.
    pub hostname: String,
    /// Owner email, when configured.
    pub owner_email: Option<String>,
    /// Distinct users seen, sorted.
    pub users: Vec<String>,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Sightings counted.
    pub count: u64,
    /// Whether the product is installed on the device now: absent when it was only seen on
    /// the network there, `false` when the agent reported every installed item of it removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<bool>,
}

/// `PUT /api/v1/products/{id}/review`: set a product's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequest {
    /// The decision.
    pub status: ReviewStatus,
    /// Why, for the audit log.
    #[serde(default)]
    pub note: String,
    /// Who in the business is accountable for the product (an email or a name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub business_owner: String,
    /// The sanctioned product to use instead (a catalog id or free text).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alternative: String,
    /// When the subscription renews, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<String>,
}

/// A product's current review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Product id.
    pub product: String,
    /// The decision.
    pub status: ReviewStatus,
    /// Why.
    pub note: String,
    /// The name of the API token (or the signed-in person) that decided.
    pub reviewed_by: String,
    /// When.
    pub reviewed_at: i64,
    /// Who in the business is accountable for the product.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub business_owner: String,
    /// The sanctioned product to use instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alternative: String,
    /// When the subscription renews, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<String>,
}

/// One append-only audit log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing id (order of commit).
    pub id: i64,
    /// When.
    pub at: i64,
    /// Who: an API token name, or `cli` for the command line.
    pub actor: String,
    /// What kind of change (`review.set`, `token.create`, `token.revoke`).
    pub action: String,
    /// What changed (a product id, a token name).
    pub subject: String,
    /// The state before, if there was one.
    pub before: Option<serde_json::Value>,
    /// The state after, if there is one.
    pub after: Option<serde_json::Value>,
}

/// `GET /api/v1/audit?after=ID&limit=N`: entries with id greater than `after`, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditList {
    /// Entries, oldest first.
    pub entries: Vec<AuditEntry>,
}

/// Whether a score is 0 (serde's `skip_serializing_if` takes a reference).
#[allow(clippy::trivially_copy_pass_by_ref)] // Reason: serde passes a reference.
fn is_zero_score(n: &u8) -> bool {
    *n == 0
}
