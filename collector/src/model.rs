//! The collector's domain nouns (DESIGN.md): what `ingest` hands to `store`, and what `store`
//! hands to `join` and `review`.
//!
//! These types do not derive `Serialize`: they convert to and from `aiscout_wire` at the API
//! edge, so a change of the wire format never ripples into SQL.

use std::fmt;
use std::str::FromStr;

use aiscout_wire::{SightingKind, UnixSecs};

pub mod calendar;
pub mod money;
pub mod text;

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

/// Which devices the console's device list shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Lowercase text that the host name, host id or owner email contains (`""`: all).
    pub search: String,
    /// A device whose last heartbeat (else last contact) is before this is silent.
    pub stale_before: UnixSecs,
    /// Only silent devices.
    pub only_stale: bool,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return at most.
    pub limit: i64,
}

/// One page of devices, silent ones first (oldest heartbeat first), then by host name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevicePage {
    /// Enrolled devices.
    pub total: i64,
    /// Silent devices (see [`DeviceQuery::stale_before`]).
    pub stale: i64,
    /// Devices matching the query.
    pub matched: i64,
    /// The page.
    pub devices: Vec<DeviceSummary>,
}

/// A device as stored, with what the collector learnt about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSummary {
    /// The identity.
    pub device: Device,
    /// First enrollment.
    pub enrolled_at: UnixSecs,
    /// Last contact of any kind.
    pub last_contact: UnixSecs,
    /// Sum of the `dropped` counters of its batches.
    pub dropped_sightings: i64,
    /// Sum of the `evicted` counters of its batches.
    pub evicted_sightings: i64,
    /// The last heartbeat.
    pub health: Option<Health>,
    /// The host id this device shares with another machine (a clone enrolled by the
    /// `separate` policy; its own host id is this plus `#N`).
    pub duplicate_of: Option<String>,
}

/// The aggregation key of a sighting plus its aggregate (first, last, count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// Catalog product id.
    pub product: String,
    /// Indicator kind.
    pub kind: SightingKind,
    /// Matched value.
    pub value: String,
    /// OS user, `""` when unknown.
    pub user: String,
    /// Process, `""` when unknown.
    pub process: String,
    /// Aggregation window start.
    pub window: UnixSecs,
    /// First seen.
    pub first_seen: UnixSecs,
    /// Last seen.
    pub last_seen: UnixSecs,
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
    /// Installed items reported present or removed, one per key (the latest report wins).
    pub installs: Vec<InstallChange>,
}

/// An installed item (app, extension, CLI, MCP server, model) reported present or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallChange {
    /// Catalog product id.
    pub product: String,
    /// Indicator kind.
    pub kind: SightingKind,
    /// Matched value.
    pub value: String,
    /// OS user, `""` when not per-user.
    pub user: String,
    /// False when the agent reported the item removed.
    pub present: bool,
    /// When the agent saw it (present) or saw it gone (removed).
    pub at: UnixSecs,
    /// Risk flags of an MCP server (issue 17): the known [`aiscout_wire::McpFlag`] wire names,
    /// sorted and joined with `,`; empty for other kinds and for a server without risk.
    pub flags: String,
}

/// A configured MCP server with risk flags, over the devices where it is installed now
/// ([`crate::store::Store::mcp_flags`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpServerFlags {
    /// The client product it is configured in.
    pub product: String,
    /// The server as the agent reported it.
    pub value: String,
    /// [`aiscout_wire::McpFlag`] wire names, sorted.
    pub flags: Vec<String>,
    /// Devices where it is installed with these flags.
    pub devices: i64,
}

/// A batch's usage per (product, kind, user): what ingest appends for the rollups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUsage<'a> {
    /// Catalog product id.
    pub product: &'a str,
    /// Indicator kind.
    pub kind: SightingKind,
    /// OS user, `""` when unknown.
    pub user: &'a str,
    /// Earliest first seen.
    pub first_seen: UnixSecs,
    /// Latest last seen.
    pub last_seen: UnixSecs,
    /// Sum of counts.
    pub count: i64,
}

impl Batch {
    /// The batch's sightings summed per (product, kind, user, UTC day of last seen), in key
    /// order (the rollups keep days apart to answer time-range filters).
    pub fn pending(&self) -> Vec<PendingUsage<'_>> {
        type Key<'a> = (&'a str, SightingKind, &'a str, i64);
        let mut sums: std::collections::BTreeMap<Key<'_>, PendingUsage<'_>> =
            std::collections::BTreeMap::new();
        for s in &self.sightings {
            // Truncating division, as SQL's integer division groups the same rows.
            let day = s.last_seen.get() / calendar::DAY_SECS;
            sums.entry((s.product.as_str(), s.kind, s.user.as_str(), day))
                .and_modify(|p| {
                    p.first_seen = p.first_seen.min(s.first_seen);
                    p.last_seen = p.last_seen.max(s.last_seen);
                    p.count = p.count.saturating_add(s.count);
                })
                .or_insert(PendingUsage {
                    product: &s.product,
                    kind: s.kind,
                    user: &s.user,
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                    count: s.count,
                });
        }
        sums.into_values().collect()
    }
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
    pub received_at: UnixSecs,
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
    pub last_scan: Option<UnixSecs>,
}

/// A person's role, which decides what an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, including reviews.
    Admin,
    /// Reads the policy exports (`GET /api/v1/policy/{format}`) and nothing else: the token a
    /// DNS filter, MDM or EDR fetches its blocklists with. Never signs in to the console.
    Policy,
    /// Read only.
    Procurement,
    /// Provisions the directory over SCIM 2.0 (`/scim/v2`) and nothing else: the token Okta or
    /// Entra ID sends. Never signs in to the console.
    Scim,
    /// Read and review.
    Security,
    /// Read only, and no imports: sees the console without changing anything.
    Viewer,
}

impl Role {
    /// The storage and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Policy => "policy",
            Role::Procurement => "procurement",
            Role::Scim => "scim",
            Role::Security => "security",
            Role::Viewer => "viewer",
        }
    }

    /// Every role, in the order the console lists them (`policy` and `scim` last: they are for
    /// machines).
    pub const ALL: [Role; 6] =
        [Role::Admin, Role::Security, Role::Procurement, Role::Viewer, Role::Policy, Role::Scim];

    /// Whether this role may set review decisions.
    pub fn may_review(self) -> bool {
        matches!(self, Role::Admin | Role::Security)
    }

    /// Whether this role may read the policy exports (`GET /api/v1/policy/{format}`).
    pub fn may_read_policy(self) -> bool {
        matches!(self, Role::Admin | Role::Policy)
    }

    /// For a role of machines, the one API it is for; `None` for people's roles.
    pub fn machine_api(self) -> Option<&'static str> {
        match self {
            Role::Policy => Some("the policy API"),
            Role::Scim => Some("SCIM provisioning (/scim/v2)"),
            Role::Admin | Role::Procurement | Role::Security | Role::Viewer => None,
        }
    }

    /// Whether this role may use the console and the people-facing API (everything but the
    /// policy exports): every role but `policy` and `scim`.
    pub fn is_person(self) -> bool {
        !matches!(self, Role::Policy | Role::Scim)
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "policy" => Ok(Role::Policy),
            "procurement" => Ok(Role::Procurement),
            "scim" => Ok(Role::Scim),
            "security" => Ok(Role::Security),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role {other:?} (admin, security, procurement, viewer, policy or scim)"
            )),
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
    pub created_at: UnixSecs,
    /// Revocation time, if revoked.
    pub revoked_at: Option<UnixSecs>,
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
    pub reviewed_at: UnixSecs,
    /// The person accountable for the product in the business (an email or a name), `""`
    /// when none was given.
    pub business_owner: String,
    /// The sanctioned product to use instead (a catalog id or free text), `""` when none.
    pub alternative: String,
    /// When the subscription renews, Unix seconds of a UTC midnight.
    pub renewal: Option<UnixSecs>,
}

/// One audit log entry to append: who did what to which subject, before and after (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When.
    pub at: UnixSecs,
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
    pub since: Option<UnixSecs>,
    /// Seen at or before.
    pub until: Option<UnixSecs>,
}

/// Sightings of one product from one source (indicator kind), summed over devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUsage {
    /// Product id.
    pub product: String,
    /// Indicator kind.
    pub source: String,
    /// First seen.
    pub first_seen: UnixSecs,
    /// Last seen.
    pub last_seen: UnixSecs,
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
    pub first_seen: UnixSecs,
    /// Last seen.
    pub last_seen: UnixSecs,
    /// Count.
    pub count: i64,
    /// Whether the product is installed on the device now: `None` when it was never reported
    /// as installed software there (network sightings only), `Some(false)` when every
    /// installed item of it was reported removed.
    pub installed: Option<bool>,
}

/// One expense line as stored: a card or reimbursement transaction that matched a catalog
/// product, or that looks like AI spend and is kept as a candidate for review.
///
/// Amounts are in the currency's minor units with spend positive (refunds negative), whatever
/// the export's own sign convention was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpenseLine {
    /// Export format (`ramp`, `brex`, `expensify`, `concur`, `amex`, `chase`, `generic`).
    pub source: String,
    /// `id:<transaction id>` when the export has one, else `h:<stable hash>`; unique per
    /// source, which is what makes re-imports and overlapping exports count once.
    pub dedupe_key: String,
    /// The file it came from (base name).
    pub file: String,
    /// Its line in that file (1-based, the header is line 1).
    pub line: i64,
    /// Transaction time, Unix seconds (midnight UTC for date-only exports).
    pub occurred_at: UnixSecs,
    /// Amount in minor units, spend positive.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The raw statement descriptor.
    pub descriptor: String,
    /// The provider-normalised merchant name, `""` when the export has none.
    pub merchant: String,
    /// Payer email, lowercased; `""` when unknown.
    pub payer_email: String,
    /// Payer display name; `""` when unknown.
    pub payer_name: String,
    /// Department from the export; `""` when unknown (the directory may know).
    pub department: String,
    /// Matched catalog product, `None` for a candidate.
    pub product: Option<String>,
    /// True when no product matched but the descriptor looks like AI spend, or is a
    /// descriptor shared by an AI product and other charges that no catalog rule resolved.
    pub candidate: bool,
    /// Why a candidate is one when the catalog knows (a shared descriptor's reason); `""`
    /// otherwise.
    pub candidate_reason: String,
}

/// A reviewer's teaching (issue 17): every candidate expense line whose normalised descriptor
/// is `descriptor` is spend on `product`, past lines and future imports alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorMapping {
    /// The store's id (what an undo names); ignored when adding.
    pub id: i64,
    /// The normalised descriptor ([`descriptor_key`]).
    pub descriptor: String,
    /// The catalog product id.
    pub product: String,
    /// Who taught it (token name or console actor).
    pub actor: String,
    /// When, Unix seconds.
    pub created_at: UnixSecs,
    /// Why, `""` when not said.
    pub note: String,
}

/// The normalised form of a card descriptor that a [`DescriptorMapping`] is keyed by: the
/// merchant tokens (processor prefix, filler words and trailing references gone, upper case)
/// joined by one space, so `SQ *ACME AI 4155550100 CA` and `ACME AI` are one descriptor.
/// Empty when the descriptor has no words.
pub fn descriptor_key(descriptor: &str) -> String {
    aiscout_signatures::merchant::tokens(descriptor).join(" ")
}

/// One row of gateway or provider spend as stored (known, sanctioned spend).
///
/// Costs are in billionths of the currency's major unit (`cost_nanos`): gateways report
/// per-request costs far below one cent, which minor units would round to zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpend {
    /// Export format (`litellm`, `openrouter`, `openai-costs`, ...).
    pub source: String,
    /// `id:<request or row id>` or `h:<stable hash>`, unique per source.
    pub dedupe_key: String,
    /// The file it came from (base name).
    pub file: String,
    /// Its line (CSV) or record number (JSON), 1-based.
    pub line: i64,
    /// Start of the request or bucket, Unix seconds.
    pub period_start: UnixSecs,
    /// Provider (`openai`, `anthropic`, ...), `""` when unknown.
    pub provider: String,
    /// Model as reported.
    pub model: String,
    /// Team, workspace or project, `""` when none.
    pub team: String,
    /// End user (an email when the gateway has one), `""` when none.
    pub user: String,
    /// API key alias or hash, `""` when none.
    pub api_key: String,
    /// Request tags as reported, `""` when none.
    pub tags: String,
    /// Input (prompt) tokens.
    pub input_tokens: i64,
    /// Output (completion) tokens.
    pub output_tokens: i64,
    /// Cost in billionths of the major unit.
    pub cost_nanos: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Catalog product the model or provider maps to.
    pub product: Option<String>,
}

/// Gateway spend summed per (product, team, user, currency, UTC day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayTotal {
    /// Catalog product, if mapped.
    pub product: Option<String>,
    /// Provider.
    pub provider: String,
    /// The end user's department from the people directory, else the team, workspace or
    /// project as the gateway names it (resolved by the store, so that a million rows of
    /// spend arrive as thousands of totals).
    pub department: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The UTC day, as Unix seconds of its midnight.
    pub day: UnixSecs,
    /// Summed cost in billionths of the major unit.
    pub cost_nanos: i64,
    /// Summed input plus output tokens.
    pub tokens: i64,
    /// Rows summed.
    pub rows: i64,
}

/// A person from a directory import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Email, lowercased: the key.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Department, `""` when unknown.
    pub department: String,
    /// Manager (email or name), if any.
    pub manager: Option<String>,
}

/// A SCIM resource as stored (`/scim/v2`, [`crate::scim`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimResource {
    /// `User` or `Group`.
    pub kind: &'static str,
    /// The server-assigned id.
    pub id: String,
    /// The JSON document as written, without `id` and `meta`.
    pub resource: String,
    /// Version, counting writes from 1 (the ETag).
    pub version: i64,
    /// Creation time (Unix seconds).
    pub created_at: UnixSecs,
    /// Last write (Unix seconds).
    pub modified_at: UnixSecs,
}

/// The directory entry a SCIM user write makes (or keeps) in `people`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimPerson {
    /// The person (email lowercased).
    pub person: Person,
    /// Whether they are an active seat.
    pub active: bool,
    /// An email the user had before this write, which is now marked inactive.
    pub previous_email: Option<String>,
}

/// One SCIM write: a create (`version` 1) or a replacement of the stored resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimWrite {
    /// The resource with its new version and times.
    pub resource: ScimResource,
    /// Its unique name (userName or displayName, lowercased).
    pub name: String,
    /// For users, the directory entry.
    pub person: Option<ScimPerson>,
    /// The audit record of the change, appended in its transaction.
    pub audit: AuditRecord,
}

/// What an import of rows did in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Rows inserted (or, for people, inserted or changed).
    pub inserted: u64,
    /// Rows already present (same dedupe key, or an unchanged person).
    pub duplicates: u64,
    /// Expense lines a taught descriptor mapping resolved as they were stored (issue 17):
    /// parsed as candidates, but no longer needing review.
    pub mapped: u64,
}

/// The last time a device owner's devices saw a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerUse {
    /// Owner email (lowercased).
    pub owner_email: String,
    /// Product id.
    pub product: String,
    /// Last seen, Unix seconds.
    pub last_seen: UnixSecs,
}

/// Sightings of one product from one indicator kind on one device, summed over windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSighting {
    /// Host id.
    pub host_id: String,
    /// Host name.
    pub hostname: String,
    /// Operating system family.
    pub os: String,
    /// Owner email.
    pub owner_email: Option<String>,
    /// Product id.
    pub product: String,
    /// Indicator kind.
    pub kind: SightingKind,
    /// Matched value (a domain, an app id).
    pub value: String,
    /// First seen.
    pub first_seen: UnixSecs,
    /// Last seen.
    pub last_seen: UnixSecs,
    /// Count.
    pub count: i64,
}

/// Network sightings of one product on one device, per value and process (the bypass
/// report, issue 17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSighting {
    /// Host id.
    pub host_id: String,
    /// Host name.
    pub hostname: String,
    /// Owner email.
    pub owner_email: Option<String>,
    /// Product id.
    pub product: String,
    /// Indicator kind (`dns`, `tls_sni`, `quic_sni`).
    pub kind: SightingKind,
    /// The host name seen.
    pub value: String,
    /// The process that made the traffic (`""` when not attributed).
    pub process: String,
    /// First seen.
    pub first_seen: UnixSecs,
    /// Last seen.
    pub last_seen: UnixSecs,
    /// Count.
    pub count: i64,
}

/// One matched value of a product (a domain, an app id, an extension id) summed over devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueUsage {
    /// Indicator kind (wire name: `dns`, `tls_sni`, `app`, `extension`, ...).
    pub kind: SightingKind,
    /// The matched value, as the agent reported it.
    pub value: String,
    /// Distinct devices that saw it.
    pub devices: i64,
    /// Times seen, summed over devices, users, processes and windows.
    pub count: i64,
    /// Earliest first seen on any device, Unix seconds.
    pub first_seen: UnixSecs,
    /// Latest last seen on any device, Unix seconds.
    pub last_seen: UnixSecs,
}

/// A signed-in console session as stored (keyed by the SHA-256 of its cookie value, which is
/// never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who: the API token's name, or the OpenID Connect subject's email (or `sub`). This is
    /// the actor of every audit entry the session writes.
    pub actor: String,
    /// The role the session acts with.
    pub role: Role,
    /// How it signed in: `token` or `oidc`.
    pub method: String,
    /// The token it signed in with (its name), so that revoking the token ends the session.
    pub token: Option<String>,
    /// The CSRF token every state-changing form of this session must carry.
    pub csrf: String,
    /// Sign-in time.
    pub created_at: UnixSecs,
    /// Last request (idle expiry counts from here).
    pub last_seen: UnixSecs,
    /// Absolute expiry.
    pub expires_at: UnixSecs,
}

/// Which audit entries to read, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact subject (a product id, a token name).
    pub subject: Option<String>,
    /// At or after.
    pub since: Option<UnixSecs>,
    /// At or before.
    pub until: Option<UnixSecs>,
    /// Only entries with an id below this one (the next page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// One import as the history shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRun {
    /// When it finished.
    pub at: UnixSecs,
    /// Who: a token name, a session's actor, `cli` or `drop`.
    pub actor: String,
    /// `expenses`, `gateway` or `people`.
    pub kind: String,
    /// The file's name.
    pub file: String,
    /// The format it was read as.
    pub format: String,
    /// Data rows read.
    pub rows: i64,
    /// Rows stored.
    pub stored: i64,
    /// Rows already present.
    pub duplicates: i64,
    /// Rows refused.
    pub errors: i64,
    /// Why the run failed (a connector's error, never a credential); empty otherwise.
    pub error: String,
}

/// One person's AI use across endpoint, card and gateway, as the people page lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonUsage {
    /// Email, lowercased.
    pub email: String,
    /// Products seen on the devices this person owns, sorted.
    pub products: Vec<String>,
    /// Expense spend paid by this person, per currency (minor units), sorted by currency.
    pub expense_minor: Vec<(String, i64)>,
    /// Gateway spend with this person as the end user, per currency (billionths of the major
    /// unit), sorted by currency.
    pub gateway_nanos: Vec<(String, i64)>,
    /// Last time any of it happened.
    pub last_activity: UnixSecs,
}

/// An alert event to write to the outbox (see `crate::alerts`): its id is derived from its
/// cause, so writing the same cause twice keeps one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Stable id (`evt_` and 32 hex digits).
    pub id: String,
    /// The event type (`product.discovered`, ...).
    pub kind: String,
    /// When the cause happened, Unix seconds.
    pub occurred_at: UnixSecs,
    /// The product it is about, `""` when none (an expense candidate, a stale agent).
    pub product: String,
    /// The subject as a JSON object (product, device, person, department, figures).
    pub subject: String,
    /// The one channel the event is for (a test event), `""` for every channel that takes
    /// its type. Not stored.
    pub to_channel: String,
}

/// An event as stored in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Outbox order.
    pub seq: i64,
    /// The event.
    pub event: NewEvent,
}

/// A channel of the running configuration, as the outbox fans events out to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRow {
    /// Unique name.
    pub name: String,
    /// Its kind (`webhook`, `slack`, ...).
    pub kind: String,
    /// The event types it takes; empty for all.
    pub events: Vec<String>,
}

/// A delivery claimed by one collector for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The channel.
    pub channel: String,
    /// The event.
    pub event: StoredEvent,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When the delivery was queued (its give-up clock starts there).
    pub created_at: UnixSecs,
}

/// Whether a delivery may be sent under its channel's daily cap and quiet period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// It holds one of the day's places (taken now, or earlier today by an attempt that did
    /// not finish).
    Admitted,
    /// Held back: which limit.
    Capped(String),
    /// The claim is no longer this claimer's (its lease ran out and another took it).
    Lost,
}

/// What an admission checks: the channel's cap and, for an event about a product, its
/// quiet period.
#[derive(Clone, Debug)]
pub struct AdmitRule {
    /// Deliveries a calendar day (UTC).
    pub max_per_day: i64,
    /// The start of the quiet period that an earlier event of the same type about the same
    /// product would still be in, if the channel has one.
    pub quiet_since: Option<UnixSecs>,
}

/// A digest claim held: where its events start and how many of its sends were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestClaim {
    /// The end of the channel's latest digest sent before, if any.
    pub previous: Option<UnixSecs>,
    /// Refused sends of this digest so far (its backoff step).
    pub attempts: i64,
}

/// How one delivery attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took it.
    Delivered {
        /// The HTTP status (or 250 for SMTP, 0 where there is none).
        status: i64,
    },
    /// Try again at `at`.
    Retry {
        /// When, Unix seconds.
        at: UnixSecs,
        /// The status, when there was an answer.
        status: Option<i64>,
        /// What went wrong (never a secret).
        error: String,
    },
    /// Given up.
    Failed {
        /// The status, when there was an answer.
        status: Option<i64>,
        /// What went wrong (never a secret).
        error: String,
    },
    /// Held back by the channel's cap or quiet period (the digest counts it).
    Capped {
        /// Which limit.
        reason: String,
    },
    /// Taken by a digest channel: sent in its next digest, not on its own.
    Held,
}

/// A delivery as the console and `/metrics` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The channel.
    pub channel: String,
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub kind: String,
    /// The product, `""` when none.
    pub product: String,
    /// When the event happened.
    pub occurred_at: UnixSecs,
    /// `pending`, `delivered`, `failed` or `capped`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last answer's status.
    pub last_status: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was delivered, failed or capped.
    pub done_at: Option<UnixSecs>,
    /// When the next attempt is due (pending only).
    pub next_at: UnixSecs,
}

/// What a re-enrollment of a host id the collector already knows may do (`[enroll] reenroll`,
/// issue 14 item 3). Whatever the policy, a request that proves the host's current node key,
/// or one an admin approved, re-enrolls; the policy decides the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReenrollPolicy {
    /// Replace the device's key (the behaviour before issue 14): whoever holds the enroll
    /// secret can take the host id over.
    Replace,
    /// Refuse unless the request carries the device's current node key or an admin approved
    /// it (the default).
    #[default]
    RequireKey,
    /// Queue the request for an admin; the agent retries and gets in once approved.
    Hold,
    /// Enroll it as a device of its own (`HOST#2`, ...), flagged as sharing the host id: for
    /// cloned machines (VDI, golden images) that share a machine id and must not evict each
    /// other.
    Separate,
}

impl ReenrollPolicy {
    /// Every policy's config name.
    pub const NAMES: &'static str = "replace, require_key, hold or separate";

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReenrollPolicy::Replace => "replace",
            ReenrollPolicy::RequireKey => "require_key",
            ReenrollPolicy::Hold => "hold",
            ReenrollPolicy::Separate => "separate",
        }
    }

    /// The policy with this config name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            ReenrollPolicy::Replace,
            ReenrollPolicy::RequireKey,
            ReenrollPolicy::Hold,
            ReenrollPolicy::Separate,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// One enrollment as the API received it, for [`crate::store::Store::enroll_checked`].
#[derive(Clone, Debug)]
pub struct EnrollAttempt {
    /// Who is enrolling.
    pub device: Device,
    /// SHA-256 of the new node key.
    pub key_hash: [u8; 32],
    /// SHA-256 of the node key the agent held before, when it presented one.
    pub previous_key: Option<[u8; 32]>,
    /// The re-enrollment policy in force.
    pub policy: ReenrollPolicy,
    /// The source address, for the audit log.
    pub source: String,
    /// When it arrived.
    pub now: UnixSecs,
}

impl EnrollAttempt {
    /// The keys that can prove the host id: the one the agent held before, then the attempt's
    /// own new key, which is already the host's current key only when the agent proposed it
    /// on an earlier attempt whose answer was lost (a collector-made key is fresh every time).
    pub fn proofs(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.previous_key.iter().chain(std::iter::once(&self.key_hash))
    }
}

/// Why an enrollment was let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The host id was new.
    New,
    /// The request proved the host's current node key.
    NodeKey,
    /// An admin approved this host id's re-enrollment.
    Approved,
    /// The `replace` policy let it take the host id over.
    Replaced,
    /// The `separate` policy enrolled it as another device sharing the host id.
    Duplicate,
}

impl Admission {
    /// The name in audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::New => "new",
            Admission::NodeKey => "node_key",
            Admission::Approved => "approved",
            Admission::Replaced => "replace_policy",
            Admission::Duplicate => "duplicate_host_id",
        }
    }
}

/// What became of an enrollment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// Enrolled; the new node key is live.
    Enrolled {
        /// The device.
        device: DeviceId,
        /// Why it was let in.
        how: Admission,
    },
    /// A known host id without proof, refused (`require_key`).
    Refused,
    /// A known host id without proof, queued for an admin (`hold`).
    Held,
}

/// A re-enrollment waiting for an admin, or approved and not yet used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReenrollRequest {
    /// The host id.
    pub host_id: String,
    /// The host name the request gave (empty when an admin approved ahead of any request).
    pub hostname: String,
    /// Its operating system.
    pub os: String,
    /// Its source address.
    pub source: String,
    /// When the last request came, if one has.
    pub requested_at: Option<UnixSecs>,
    /// Who approved it, once approved.
    pub approved_by: Option<String>,
    /// When it was approved.
    pub approved_at: Option<UnixSecs>,
}
