//! Inventory rows, product detail and the reconciliation: store reads joined with the
//! catalog, the reviews and the directory.
//!
//! Catalog facts (vendor, name, category) come from the catalog, review status from the
//! review table, usage, expense lines and gateway spend from the store; a product seen but
//! absent from the collector's catalog (an agent with a newer catalog) is shown with its id as
//! name and empty vendor. Payers join the directory by email, else by name; gateway spend
//! joins by user email, else keeps the gateway's team as its department.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aiscout_signatures::{Catalog, RiskFact, RiskWeights};
use aiscout_wire::{
    InventoryQuery, InventoryRow, Money, ProductDetail, ProductDevice, ProductStatus, ReviewStatus,
    RiskFactValue, SourceSummary, UnixSecs,
};

use crate::model::calendar::DAY_SECS;
use crate::model::money::{format_minor, nanos_to_minor};
use crate::model::text::name_key;
use crate::model::{
    DeviceUsage, ExpenseLine, McpServerFlags, OwnerUse, Person, ProductUsage, Review, SourceUsage,
    UsageFilter,
};
use crate::store::{Store, StoreError};
use subscriptions::Payer;

pub mod bypass;
pub mod cache;
pub mod people;
pub mod reconcile;
pub mod spend;
pub mod subscriptions;

pub use cache::Cache;
pub use spend::Spend;

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn len<T>(set: &BTreeSet<T>) -> u64 {
    u64::try_from(set.len()).unwrap_or(u64::MAX)
}

/// The store-side part of an inventory query.
pub fn usage_filter(q: &InventoryQuery) -> UsageFilter {
    UsageFilter {
        product: q.product.clone(),
        kind: q.source.clone().filter(|s| s != "expense" && s != "gateway"),
        department: q.department.clone(),
        since: q.since.map(UnixSecs),
        until: q.until.map(UnixSecs),
    }
}

/// The status of a product given its review, if any.
pub fn status(review: Option<&Review>) -> ProductStatus {
    review
        .and_then(|r| ReviewStatus::parse(&r.status))
        .map_or(ProductStatus::Unreviewed, ProductStatus::from)
}

fn catalog_facts(catalog: &Catalog, id: &str) -> (String, String, String) {
    catalog.product(id).map_or_else(
        || (String::new(), id.to_owned(), String::new()),
        |p| (p.vendor.clone(), p.name.clone(), p.category.as_str().to_owned()),
    )
}

/// A product's risk score and the facts behind it, from the catalog's risk facts and the
/// organisation's weights; a product the catalog does not know has every fact unknown.
pub fn risk(catalog: &Catalog, weights: &RiskWeights, id: &str) -> (u8, Vec<RiskFactValue>) {
    let none = aiscout_signatures::RiskFacts::default();
    let facts = catalog.product(id).map_or(&none, |p| &p.risk);
    let values = RiskFact::ALL
        .iter()
        .map(|f| RiskFactValue {
            fact: f.key().to_owned(),
            value: f.display(facts),
            source: f.source(facts).map(str::to_owned),
        })
        .collect();
    (aiscout_signatures::risk::score(facts, weights), values)
}

/// Everything the inventory and the reconciliation are joined from: store reads, all taken
/// for one period.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// Sightings per (product, kind).
    pub sources: Vec<SourceUsage>,
    /// Sightings per product.
    pub products: Vec<ProductUsage>,
    /// Current reviews.
    pub reviews: Vec<Review>,
    /// Expense lines, gateway spend and the directory in the period.
    pub spend: Arc<Spend>,
    /// Device owners and their last use of the sanctioned products (reconciliation only).
    pub owners: Arc<Owners>,
    /// The reference time: use is recent, and subscriptions idle, relative to it.
    pub now: i64,
    /// Configured MCP servers with risk flags, installed now (issue 17).
    pub mcp: Vec<McpServerFlags>,
    /// The overlay's gateways and the network sightings of the products they front, for the
    /// gateway bypass (issue 17; [`bypass::find`]).
    pub fronted: bypass::Fronted,
    /// The period the sightings were read for (`since`, `until`), which the bypass keeps too.
    pub period: (Option<i64>, Option<i64>),
}

/// Who owns a device, and when each owner last used each sanctioned product: what the
/// reconciliation needs to call a subscription idle.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    /// Last use per device owner and sanctioned product.
    pub owner_use: Vec<OwnerUse>,
    /// Emails of device owners (lowercased).
    pub device_owners: BTreeSet<String>,
    /// Emails of people deprovisioned from the directory (`people.active` false, over SCIM):
    /// they stay in history, but a seat they still pay for is an idle seat.
    pub deprovisioned: BTreeSet<String>,
}

/// What the facts are gathered for: the reconciliation also needs who owns which device and
/// when each owner last used each product, which the inventory does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// [`inventory`].
    Inventory,
    /// [`reconcile::reconcile`].
    Reconcile,
}

/// The products whose review says sanctioned.
fn sanctioned(reviews: &[Review]) -> Vec<String> {
    reviews
        .iter()
        .filter(|r| status(Some(r)) == ProductStatus::Sanctioned)
        .map(|r| r.product.clone())
        .collect()
}

/// Reads the device owners and their last use of the `sanctioned` products.
///
/// # Errors
/// A store read fails.
pub async fn read_owners<S: Store>(
    store: &S,
    sanctioned: Vec<String>,
) -> Result<Owners, StoreError> {
    let (devices, owner_use, people) =
        tokio::try_join!(store.devices(), store.owner_last_use(sanctioned), store.people_active())?;
    let device_owners = devices
        .into_iter()
        .filter_map(|d| d.device.owner_email.map(|e| e.to_lowercase()))
        .collect();
    let deprovisioned =
        people.into_iter().filter(|(_, active)| !active).map(|(e, _)| e.to_lowercase()).collect();
    Ok(Owners { owner_use, device_owners, deprovisioned })
}

/// Reads expense lines and gateway spend since `since`, and the directory, into [`Spend`].
/// `with_people` false skips the directory when there are no expense lines (the store places
/// gateway users itself), which saves reading a large directory for an inventory without
/// card spend.
///
/// # Errors
/// A store read fails.
pub async fn read_spend<S: Store>(
    store: &S,
    since: Option<i64>,
    with_people: bool,
    now: i64,
) -> Result<Spend, StoreError> {
    let expenses = async {
        let expenses = store.expenses(since).await?;
        let people =
            if expenses.is_empty() && !with_people { Vec::new() } else { store.people().await? };
        Ok::<_, StoreError>((expenses, people))
    };
    let ((expenses, people), gateway) = tokio::try_join!(expenses, store.gateway_totals(since))?;
    Ok(Spend::new(expenses, gateway, people, now))
}

/// Reads every fact for a period from the store: sightings matching `filter`, expense lines
/// and gateway spend since `filter.since`, and for [`Purpose::Reconcile`] device owners and
/// their last use of each sanctioned product (only those can be idle subscriptions).
///
/// # Errors
/// A store read fails.
pub async fn gather<S: Store>(
    store: &S,
    filter: UsageFilter,
    now: i64,
    purpose: Purpose,
) -> Result<Facts, StoreError> {
    gather_from(store, None, filter, now, purpose).await
}

/// [`gather`], taking the spend facts and the owners from `cache` when it has them for the
/// store's current data versions (see [`cache`]).
///
/// # Errors
/// A store read fails.
pub async fn gather_from<S: Store>(
    store: &S,
    cache: Option<&Cache>,
    filter: UsageFilter,
    now: i64,
    purpose: Purpose,
) -> Result<Facts, StoreError> {
    let since = filter.since.map(UnixSecs::get);
    let reviews = store.reviews().await?;
    let sanctioned = sanctioned(&reviews);
    // The reads are independent, so they run at once: on PostgreSQL each on its own
    // connection (a server process), on SQLite each on its own blocking thread, so that a
    // report over millions of rows takes about its longest read, not their sum (issue 7).
    let owners = async {
        match (purpose, cache) {
            (Purpose::Inventory, _) => Ok::<_, StoreError>(Arc::default()),
            (Purpose::Reconcile, Some(c)) => c.owners(store, sanctioned).await,
            (Purpose::Reconcile, None) => Ok(Arc::new(read_owners(store, sanctioned).await?)),
        }
    };
    let spend = async {
        match cache {
            Some(c) => c.spend(store, since, now).await,
            None => {
                Ok(Arc::new(read_spend(store, since, purpose == Purpose::Reconcile, now).await?))
            }
        }
    };
    // Small (one row per flagged server and flag set) and read for both purposes: the app
    // card gathers for the reconciliation and shows the flags too.
    let mcp = store.mcp_flags();
    let period = (filter.since.map(UnixSecs::get), filter.until.map(UnixSecs::get));
    let product = filter.product.clone();
    let fronted = bypass::read(store, product.as_deref());
    let ((sources, products), owners, spend, mcp, fronted) =
        tokio::try_join!(store.usage(filter), owners, spend, mcp, fronted)?;
    Ok(Facts { sources, products, reviews, spend, owners, now, mcp, fronted, period })
}

/// Looks up payers and gateway users in the directory.
pub struct Directory<'a> {
    by_email: HashMap<&'a str, &'a Person>,
    by_name: HashMap<String, &'a Person>,
}

impl<'a> Directory<'a> {
    /// Indexes people by email and by normalised name.
    pub fn new(people: &'a [Person]) -> Self {
        Self {
            by_email: people.iter().map(|p| (p.email.as_str(), p)).collect(),
            by_name: people.iter().map(|p| (name_key(&p.name), p)).collect(),
        }
    }

    /// The payer of an expense line: its email, else the directory's email for its name; its
    /// department, else the directory's.
    pub fn payer(&self, l: &ExpenseLine) -> Payer {
        let person = if l.payer_email.is_empty() {
            self.by_name.get(&name_key(&l.payer_name)).copied()
        } else {
            self.by_email.get(l.payer_email.as_str()).copied()
        };
        let email = if l.payer_email.is_empty() {
            person.map(|p| p.email.clone()).unwrap_or_default()
        } else {
            l.payer_email.clone()
        };
        let name = if l.payer_name.is_empty() {
            person.map(|p| p.name.clone()).unwrap_or_default()
        } else {
            l.payer_name.clone()
        };
        let department = if l.department.is_empty() {
            person.map(|p| p.department.clone()).unwrap_or_default()
        } else {
            l.department.clone()
        };
        Payer { email, name, department }
    }
}

/// Sums amounts per currency into [`Money`], sorted by currency.
#[derive(Clone, Debug, Default)]
pub struct Purse(BTreeMap<String, i128>);

impl Purse {
    /// Adds `amount` (in the unit the caller uses consistently) of `currency`.
    pub fn add(&mut self, currency: &str, amount: i128) {
        *self.0.entry(currency.to_owned()).or_insert(0) += amount;
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sums, read as minor units.
    pub fn minor(&self) -> Vec<Money> {
        self.0.iter().map(|(c, v)| money(c, clamp(*v))).collect()
    }

    /// The sums, read as billionths of the major unit, converted to minor units.
    pub fn nanos(&self) -> Vec<Money> {
        self.0.iter().map(|(c, v)| money(c, nanos_to_minor(*v, c))).collect()
    }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Minor units of `currency` as [`Money`].
pub fn money(currency: &str, amount_minor: i64) -> Money {
    Money {
        currency: currency.to_owned(),
        amount_minor,
        amount: format_minor(amount_minor, currency),
    }
}

/// Gateway spend within the 30 days before `now`, to annualise.
const GATEWAY_RUN_RATE_DAYS: i64 = 30;

/// Builds inventory rows (one per product seen by any source) and applies the filters.
pub fn inventory(
    catalog: &Catalog,
    weights: &RiskWeights,
    query: &InventoryQuery,
    facts: &Facts,
) -> Vec<InventoryRow> {
    #[derive(Default)]
    struct Acc {
        sources: BTreeSet<String>,
        devices: u64,
        users: u64,
        sightings: u64,
        departments: BTreeSet<String>,
        payers: BTreeSet<String>,
        first: Option<i64>,
        last: Option<i64>,
        expense: Purse,
        gateway: Purse,
        gateway_tokens: u64,
        annual: Purse,
        subscriptions: u64,
        mcp_flags: BTreeSet<String>,
        bypass_devices: BTreeSet<String>,
        bypass_people: BTreeSet<String>,
        bypass_processes: BTreeSet<String>,
        bypass_gateways: BTreeSet<String>,
    }
    impl Acc {
        fn seen(&mut self, first: i64, last: i64) {
            self.first = Some(self.first.map_or(first, |f| f.min(first)));
            self.last = Some(self.last.map_or(last, |l| l.max(last)));
        }
    }
    let reviews: BTreeMap<&str, &Review> =
        facts.reviews.iter().map(|r| (r.product.as_str(), r)).collect();
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    // Rows of other products are dropped at the end anyway; skipping their inputs early makes
    // one product's row (the app card) cheap.
    let wanted = |p: &str| query.product.as_deref().is_none_or(|q| q == p);
    for s in facts.sources.iter().filter(|s| wanted(&s.product)) {
        let a = acc.entry(s.product.clone()).or_default();
        a.sources.insert(s.source.clone());
        a.sightings += u64_of(s.count);
        a.seen(s.first_seen.get(), s.last_seen.get());
    }
    for p in facts.products.iter().filter(|p| wanted(&p.product)) {
        let a = acc.entry(p.product.clone()).or_default();
        a.devices = u64_of(p.devices);
        a.users = u64_of(p.users);
        a.departments.extend(p.departments.iter().cloned());
    }
    for g in &facts.spend.by_payer {
        let Some(product) = g.product.as_ref().filter(|p| wanted(p)) else { continue };
        let a = acc.entry(product.clone()).or_default();
        a.sources.insert("expense".into());
        a.expense.add(&g.currency, g.sum);
        a.seen(g.first, g.last);
        if !g.payer.is_empty() {
            a.payers.insert(g.payer.to_lowercase());
        }
        if !g.department.is_empty() {
            a.departments.insert(g.department.clone());
        }
    }
    let run_rate_from = facts.now - GATEWAY_RUN_RATE_DAYS * DAY_SECS;
    for g in &facts.spend.gateway {
        let Some(product) = g.product.as_ref().filter(|p| wanted(p)) else { continue };
        let a = acc.entry(product.clone()).or_default();
        a.sources.insert("gateway".into());
        a.gateway.add(&g.currency, i128::from(g.cost_nanos));
        a.gateway_tokens = a.gateway_tokens.saturating_add(u64::try_from(g.tokens).unwrap_or(0));
        a.seen(g.day.get(), g.day.get());
        if !g.department.is_empty() {
            a.departments.insert(g.department.clone());
        }
        if g.day.get() >= run_rate_from && g.day.get() <= facts.now {
            // nanos * 365 / 30, converted to minor units below with the subscriptions.
            let annual_nanos = i128::from(g.cost_nanos) * 365 / i128::from(GATEWAY_RUN_RATE_DAYS);
            let minor = nanos_to_minor(annual_nanos, &g.currency);
            a.annual.add(&g.currency, i128::from(minor));
        }
    }
    for s in facts.spend.subscriptions(catalog).iter().filter(|s| s.active && wanted(&s.product)) {
        let a = acc.entry(s.product.clone()).or_default();
        a.subscriptions += 1;
        a.annual.add(&s.currency, i128::from(s.annual_minor()));
    }
    for m in facts.mcp.iter().filter(|m| wanted(&m.product)) {
        // Only products seen otherwise get a row: an installed server was reported as a
        // sighting, so its product has one unless the period filters it out.
        if let Some(a) = acc.get_mut(&m.product) {
            a.mcp_flags.extend(m.flags.iter().cloned());
        }
    }
    let (since, until) = facts.period;
    for b in bypass::find(catalog, &facts.fronted, since, until) {
        // Like the MCP flags: a bypass is a network sighting, so its product has a row unless
        // the filters leave it out.
        let Some(a) = acc.get_mut(&b.product).filter(|_| wanted(&b.product)) else { continue };
        a.bypass_devices.insert(b.host_id);
        if let Some(owner) = b.owner_email.filter(|o| !o.is_empty()) {
            a.bypass_people.insert(owner.to_lowercase());
        }
        if !b.process.is_empty() {
            a.bypass_processes.insert(b.process);
        }
        a.bypass_gateways.insert(b.gateway);
    }
    acc.into_iter()
        .map(|(product, a)| {
            let (vendor, name, category) = catalog_facts(catalog, &product);
            let (risk_score, risk_facts) = risk(catalog, weights, &product);
            InventoryRow {
                risk_score,
                risk_facts,
                vendor,
                name,
                category,
                status: status(reviews.get(product.as_str()).copied()),
                sources: a.sources.into_iter().collect(),
                devices: a.devices,
                users: a.users,
                departments: a.departments.into_iter().collect(),
                first_seen: a.first.unwrap_or(0),
                last_seen: a.last.unwrap_or(0),
                sightings: a.sightings,
                payers: u64::try_from(a.payers.len()).unwrap_or(u64::MAX),
                expense_spend: a.expense.minor(),
                gateway_spend: a.gateway.nanos(),
                gateway_tokens: a.gateway_tokens,
                subscriptions: a.subscriptions,
                annualized_cost: a.annual.minor(),
                mcp_flags: a.mcp_flags.into_iter().collect(),
                bypass_devices: len(&a.bypass_devices),
                bypass_people: len(&a.bypass_people),
                bypass_processes: a.bypass_processes.into_iter().collect(),
                bypass_gateways: a.bypass_gateways.into_iter().collect(),
                product,
            }
        })
        .filter(|row| query.product.as_ref().is_none_or(|p| *p == row.product))
        .filter(|row| query.source.as_ref().is_none_or(|s| row.sources.contains(s)))
        .filter(|row| query.department.as_ref().is_none_or(|d| row.departments.contains(d)))
        .filter(|row| query.status.is_none_or(|s| s == row.status))
        .filter(|row| query.category.as_ref().is_none_or(|c| *c == row.category))
        .collect()
}

/// Builds a product's detail.
pub fn product_detail(
    catalog: &Catalog,
    product: &str,
    sources: Vec<SourceUsage>,
    devices: Vec<DeviceUsage>,
    review: Option<Review>,
    mcp: &[McpServerFlags],
) -> ProductDetail {
    let (vendor, name, category) = catalog_facts(catalog, product);
    ProductDetail {
        product: product.to_owned(),
        vendor,
        name,
        category,
        status: status(review.as_ref()),
        review: review.and_then(crate::review::to_wire),
        sources: sources
            .into_iter()
            .map(|s| SourceSummary {
                source: s.source,
                first_seen: s.first_seen.get(),
                last_seen: s.last_seen.get(),
                count: u64_of(s.count),
                devices: u64_of(s.devices),
            })
            .collect(),
        devices: devices
            .into_iter()
            .map(|d| ProductDevice {
                host_id: d.host_id,
                hostname: d.hostname,
                owner_email: d.owner_email,
                users: d.users,
                first_seen: d.first_seen.get(),
                last_seen: d.last_seen.get(),
                count: u64_of(d.count),
                installed: d.installed,
            })
            .collect(),
        mcp_servers: mcp
            .iter()
            .filter(|m| m.product == product)
            .map(|m| aiscout_wire::McpServerFlags {
                value: m.value.clone(),
                flags: m.flags.clone(),
                devices: u64_of(m.devices),
            })
            .collect(),
    }
}

/// Spend in one month, department and currency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonthSpend {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// The payer's or gateway user's department, `""` when unknown.
    pub department: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Expense lines (matched products and AI-looking candidates), minor units.
    pub expense_minor: i64,
    /// The part of `expense_minor` on products that are not sanctioned, and candidates.
    pub shadow_minor: i64,
    /// Gateway spend, minor units.
    pub gateway_minor: i64,
}

/// Expense and gateway spend per month, department and currency, for every product or one;
/// sorted by month, department, currency. Departments come from the directory as in the
/// reconciliation.
pub fn spend_by_month(facts: &Facts, product: Option<&str>) -> Vec<MonthSpend> {
    type Key = (String, String, String);
    let reviews: BTreeMap<&str, &Review> =
        facts.reviews.iter().map(|r| (r.product.as_str(), r)).collect();
    let mut acc: BTreeMap<Key, (i128, i128, i128)> = BTreeMap::new();
    for g in &facts.spend.by_month {
        if product.is_some_and(|p| g.product.as_deref() != Some(p)) {
            continue;
        }
        let shadow = g
            .product
            .as_deref()
            .is_none_or(|p| status(reviews.get(p).copied()) != ProductStatus::Sanctioned);
        let key = (g.month.clone(), g.department.clone(), g.currency.clone());
        let e = acc.entry(key).or_default();
        e.0 += g.sum;
        if shadow {
            e.1 += g.sum;
        }
    }
    for g in &facts.spend.gateway {
        if product.is_some_and(|p| g.product.as_deref() != Some(p)) {
            continue;
        }
        let key =
            (crate::model::calendar::year_month(g.day), g.department.clone(), g.currency.clone());
        acc.entry(key).or_default().2 += i128::from(g.cost_nanos);
    }
    acc.into_iter()
        .map(|((month, department, currency), (expense, shadow, gateway))| MonthSpend {
            gateway_minor: nanos_to_minor(gateway, &currency),
            month,
            department,
            currency,
            expense_minor: clamp(expense),
            shadow_minor: clamp(shadow),
        })
        .collect()
}
