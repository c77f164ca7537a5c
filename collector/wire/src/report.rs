//! Procurement's reconciliation report (`GET /api/v1/reports/reconcile`) and the summary an
//! import answers with.
//!
//! Every amount is a [`Money`]: integer minor units plus a decimal string.

use serde::{Deserialize, Serialize};

use crate::people::{Money, ProductStatus};

/// The five sections of the reconciliation, plus unmatched AI-looking expense lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// When it was computed (Unix seconds); subscriptions are active relative to this.
    pub generated_at: i64,
    /// Days without use after which a paid subscription counts as idle.
    pub idle_days: u32,
    /// 1. Expense spend on products that are not sanctioned, by payer and department.
    pub paid_not_sanctioned: Vec<PaidNotSanctioned>,
    /// 2. Products seen in use with no expense or gateway spend.
    pub used_not_paid: Vec<UsedNotPaid>,
    /// 3. Active subscriptions of sanctioned products whose payer's devices show no use.
    pub idle_subscriptions: Vec<IdleSubscription>,
    /// 4. Products several people pay for individually, with the team-plan estimate.
    pub duplicate_subscriptions: Vec<DuplicateSubscriptions>,
    /// 5. Gateway (sanctioned) spend beside shadow spend, by department and month.
    pub gateway_vs_shadow: Vec<DepartmentMonthSpend>,
    /// Expense lines that match no product but look like AI spend, for review.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Personal (consumer) subscriptions to products that also sell a business seat, with
    /// the business seat proposed instead (issue 17).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_plans: Vec<ConsumerPlan>,
    /// Gateway bypass (issue 17): per device, person and process, a provider API reached
    /// directly while a sanctioned gateway of the organisation overlay fronts it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_bypass: Vec<GatewayBypass>,
}

/// A device that reached a provider's API host directly, from one process, although a
/// sanctioned gateway fronts that provider: the traffic the gateway should have carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayBypass {
    /// The provider product reached directly (`openai.api`).
    pub product: String,
    /// Product name.
    pub name: String,
    /// Host id of the device.
    pub host_id: String,
    /// Its host name.
    pub hostname: String,
    /// The device's owner, empty when unknown.
    pub person: String,
    /// The owner's department from the directory, empty when unknown.
    pub department: String,
    /// The process that made the traffic, empty when the agent could not attribute it.
    pub process: String,
    /// The API host name reached (`api.openai.com`).
    pub host: String,
    /// The overlay id of the gateway that should have carried it.
    pub gateway: String,
    /// That gateway's host (`llm.corp.example`).
    pub gateway_host: String,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Times seen (DNS answers and connections).
    pub count: u64,
}

/// A consumer plan paid on a card: the lines of one product, payer, department and plan
/// whose amount is a consumer plan's list price (or whose descriptor names the plan), for a
/// product that also sells a business plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerPlan {
    /// Product id.
    pub product: String,
    /// Product name.
    pub name: String,
    /// Payer email, else name.
    pub payer: String,
    /// Payer's department, empty when unknown.
    pub department: String,
    /// The consumer plan the lines are (`Plus`).
    pub plan: String,
    /// That plan's list price per period, and the period (`month` or `year`).
    pub plan_price: Money,
    /// `month` or `year`.
    pub period: String,
    /// Spend on those lines.
    pub spend: Money,
    /// Lines.
    pub lines: u64,
    /// Last charge.
    pub last_charge: i64,
    /// The business plan proposed instead (`Team`), when the catalog lists one in the
    /// currency.
    pub business_plan: Option<String>,
    /// Its list price per seat per `business_period`.
    pub business_price: Option<Money>,
    /// `month` or `year`.
    pub business_period: Option<String>,
    /// The fewest seats the business plan is sold with, when the catalog states a minimum
    /// (Claude Team: 5): moving fewer people still pays for this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_min_seats: Option<u32>,
}

/// A reviewer's mapping of a card descriptor to a product (`GET /api/v1/mappings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorMapping {
    /// The id an undo names (`DELETE /api/v1/mappings/{id}`).
    pub id: i64,
    /// The normalised descriptor (merchant tokens, upper case, one space apart).
    pub descriptor: String,
    /// Product id.
    pub product: String,
    /// Who taught it.
    pub actor: String,
    /// When, Unix seconds.
    pub created_at: i64,
    /// Why, possibly empty.
    pub note: String,
    /// Expense lines it resolved (or, for an undo, turned back into candidates) in that call;
    /// absent in a listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

/// Every descriptor mapping, sorted by descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingList {
    /// The mappings.
    pub mappings: Vec<DescriptorMapping>,
}

/// `POST /api/v1/mappings`: teach that a descriptor is a product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRequest {
    /// The descriptor as a line carries it (normalised by the collector).
    pub descriptor: String,
    /// The catalog product id.
    pub product: String,
    /// Why, for the audit log.
    #[serde(default)]
    pub note: String,
}

/// Section 1 row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidNotSanctioned {
    /// Product id.
    pub product: String,
    /// Product name.
    pub name: String,
    /// Its status (never `sanctioned`).
    pub status: ProductStatus,
    /// Payer email, else name, else empty.
    pub payer: String,
    /// Payer's department, empty when unknown.
    pub department: String,
    /// Spend in one currency.
    pub spend: Money,
    /// Expense lines summed.
    pub lines: u64,
    /// First charge.
    pub first_charge: i64,
    /// Last charge.
    pub last_charge: i64,
}

/// Section 2 row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedNotPaid {
    /// Product id.
    pub product: String,
    /// Product name.
    pub name: String,
    /// Its status.
    pub status: ProductStatus,
    /// Devices that saw it.
    pub devices: u64,
    /// Users that used it.
    pub users: u64,
    /// Departments of the device owners.
    pub departments: Vec<String>,
    /// Last seen.
    pub last_seen: i64,
}

/// Section 3 row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleSubscription {
    /// Product id.
    pub product: String,
    /// Product name.
    pub name: String,
    /// Payer email.
    pub payer: String,
    /// Payer's department.
    pub department: String,
    /// `monthly` or `annual`.
    pub cadence: String,
    /// The latest charge.
    pub seat_price: Money,
    /// First charge of the subscription.
    pub since: i64,
    /// Latest charge.
    pub last_charge: i64,
    /// Last use on any of the payer's devices, if ever.
    pub last_used: Option<i64>,
}

/// Section 4 row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateSubscriptions {
    /// Product id.
    pub product: String,
    /// Product name.
    pub name: String,
    /// Payers, sorted.
    pub payers: Vec<String>,
    /// What the individual subscriptions cost for a year.
    pub current_annual: Money,
    /// The catalog plan used for the estimate, if the catalog lists a team plan.
    pub team_plan: Option<String>,
    /// The seats that plan bills: one per payer, or the plan's minimum when that is more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_seats: Option<u64>,
    /// That plan for `team_seats` seats for a year, at list price.
    pub team_annual: Option<Money>,
    /// `current_annual - team_annual`; negative when the team plan costs more (it still buys
    /// a contract and admin control).
    pub saving: Option<Money>,
}

/// Section 5 row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentMonthSpend {
    /// Department (empty when unknown).
    pub department: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Gateway spend.
    pub gateway: Money,
    /// Expense spend on products that are not sanctioned, and on candidates.
    pub shadow: Money,
}

/// An unmatched, AI-looking expense descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The descriptor as written.
    pub descriptor: String,
    /// Payer email, else name.
    pub payer: String,
    /// Department.
    pub department: String,
    /// Spend in one currency.
    pub spend: Money,
    /// Lines summed.
    pub lines: u64,
    /// Last charge.
    pub last_charge: i64,
}

/// What an import did (`POST /api/v1/imports/...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// The file name.
    pub file: String,
    /// The format used.
    pub format: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows newly stored.
    pub stored: u64,
    /// Rows stored by an earlier import.
    pub duplicates: u64,
    /// Unmatched AI-looking lines stored for review.
    pub candidates: u64,
    /// Rows matching no product: counted, not stored.
    pub not_ai: u64,
    /// Payments to the card issuer and personal entries.
    pub not_spend: u64,
    /// Malformed rows.
    pub error_count: u64,
    /// The first malformed rows, as `file:line: column "X": reason`.
    pub errors: Vec<String>,
}
