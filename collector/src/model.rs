//! The collector's domain nouns (DESIGN.md): what `ingest` hands to `store`, and what `store`
//! hands to `join` and `review`.
//!
//! These types do not derive `Serialize`: they convert to and from `aiscout_wire` at the API
//! edge, so a change of the wire format never ripples into SQL.

use std::fmt;
use std::str::FromStr;

/// A device's row id in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId(pub i64);

/// A device as its agent describes itself at enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
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
    /// Owner email from MDM.
    pub owner_email: Option<String>,
}

/// A device as stored, with what the collector learnt about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSummary {
    /// The identity.
    pub device: Device,
    /// First enrollment.
    pub enrolled_at: i64,
    /// Last contact of any kind.
    pub last_contact: i64,
    /// Sum of the `dropped` counters of its batches.
    pub dropped_sightings: i64,
    /// Sum of the `evicted` counters of its batches.
    pub evicted_sightings: i64,
    /// The last heartbeat.
    pub health: Option<Health>,
}

/// The aggregation key of a sighting plus its aggregate (first, last, count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// Catalog product id.
    pub product: String,
    /// Indicator kind (wire name).
    pub kind: &'static str,
    /// Matched value.
    pub value: String,
    /// OS user, `""` when unknown.
    pub user: String,
    /// Process, `""` when unknown.
    pub process: String,
    /// Aggregation window start.
    pub window: i64,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Times seen.
    pub count: i64,
}

/// One sighting batch, aggregated so that every key appears once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The agent's batch id, unique per device.
    pub batch_id: String,
    /// Distinct sightings.
    pub sightings: Vec<Sighting>,
    /// Sightings counted in the batch before aggregation.
    pub received: i64,
    /// The agent's dropped counter for this batch.
    pub dropped: i64,
    /// The agent's evicted counter for this batch.
    pub evicted: i64,
}

/// The result of storing a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The batch id had been committed before; nothing was counted.
    Duplicate,
    /// The batch was committed.
    Stored,
}

/// A device's last heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// When it arrived.
    pub received_at: i64,
    /// Agent version.
    pub agent_version: String,
    /// Catalog version.
    pub catalog_version: i64,
    /// Interfaces, as the JSON the agent sent (stored as given, never interpreted by SQL).
    pub interfaces_json: String,
    /// Packets seen.
    pub packets: i64,
    /// Drops.
    pub drops: i64,
    /// Spool depth.
    pub spool_depth: i64,
    /// Spool evictions.
    pub evictions: i64,
    /// Last inventory scan.
    pub last_scan: Option<i64>,
}

/// A person's role, which decides what an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, including reviews.
    Admin,
    /// Read only.
    Procurement,
    /// Read and review.
    Security,
}

impl Role {
    /// The storage and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Procurement => "procurement",
            Role::Security => "security",
        }
    }

    /// Whether this role may set review decisions.
    pub fn may_review(self) -> bool {
        matches!(self, Role::Admin | Role::Security)
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "procurement" => Ok(Role::Procurement),
            "security" => Ok(Role::Security),
            other => Err(format!("unknown role {other:?} (admin, security or procurement)")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API token as stored (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Unique name, shown in the audit log as the actor.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Creation time.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
}

/// A review decision as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// Product id.
    pub product: String,
    /// Wire name of the decision (`sanctioned`, ...).
    pub status: String,
    /// Why.
    pub note: String,
    /// Actor.
    pub reviewed_by: String,
    /// When.
    pub reviewed_at: i64,
}

/// One audit log entry to append: who did what to which subject, before and after (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When.
    pub at: i64,
    /// Who (a token name, or `cli`).
    pub actor: String,
    /// What kind of change.
    pub action: String,
    /// What it changed.
    pub subject: String,
    /// JSON of the state before.
    pub before: Option<String>,
    /// JSON of the state after.
    pub after: Option<String>,
}

/// An audit log entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// The record.
    pub record: AuditRecord,
}

/// The store-side filters of an inventory query (catalog filters are applied by `join`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Exact product id.
    pub product: Option<String>,
    /// Indicator kind.
    pub kind: Option<String>,
    /// Owner's department.
    pub department: Option<String>,
    /// Seen at or after.
    pub since: Option<i64>,
    /// Seen at or before.
    pub until: Option<i64>,
}

/// Sightings of one product from one source (indicator kind), summed over devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUsage {
    /// Product id.
    pub product: String,
    /// Indicator kind.
    pub source: String,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Count.
    pub count: i64,
    /// Distinct devices.
    pub devices: i64,
}

/// Per-product totals across sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductUsage {
    /// Product id.
    pub product: String,
    /// Distinct devices.
    pub devices: i64,
    /// Distinct non-empty users.
    pub users: i64,
    /// Departments of the device owners, sorted.
    pub departments: Vec<String>,
}

/// One device's use of one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceUsage {
    /// Host id.
    pub host_id: String,
    /// Host name.
    pub hostname: String,
    /// Owner email.
    pub owner_email: Option<String>,
    /// Distinct non-empty users, sorted.
    pub users: Vec<String>,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Count.
    pub count: i64,
}
