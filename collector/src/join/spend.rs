//! Spend facts: expense lines, gateway totals and the directory, with every line's payer
//! resolved once and the line-level sums the inventory and the reconciliation need grouped
//! once, so that a page joins a few thousand groups instead of every line.
//!
//! Built by [`super::gather`] from store reads, or kept by [`super::cache::Cache`] while the
//! spend data version is unchanged. Everything here is a pure function of the lines, the
//! gateway totals and the directory; the review decisions are applied by the joins on top,
//! so a review never invalidates it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use aiscout_signatures::Catalog;

use super::Directory;
use super::subscriptions::{self, Payer, Subscription};
use crate::model::calendar::year_month;
use crate::model::{ExpenseLine, GatewayTotal, Person};

/// Expense lines of one product (or one candidate descriptor), payer, department and currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerGroup {
    /// The matched product; `None` for an AI-looking candidate line.
    pub product: Option<String>,
    /// The descriptor, for candidates (`""` for matched lines).
    pub descriptor: String,
    /// The payer's label: email, else name.
    pub payer: String,
    /// The payer's department (`""` when unknown).
    pub department: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Summed minor units.
    pub sum: i128,
    /// Lines.
    pub lines: u64,
    /// Earliest and latest charge.
    pub first: i64,
    /// Latest charge.
    pub last: i64,
}

/// Expense lines of one month, department, currency and product (or candidates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthGroup {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// The payer's department.
    pub department: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The matched product; `None` for candidates.
    pub product: Option<String>,
    /// Summed minor units.
    pub sum: i128,
}

/// Spend facts for one period; see the module documentation.
#[derive(Debug, Default)]
pub struct Spend {
    /// Stored expense lines, oldest first.
    pub expenses: Vec<ExpenseLine>,
    /// Each line's payer, resolved through the directory (same order as `expenses`).
    pub payers: Vec<Payer>,
    /// Gateway spend per day.
    pub gateway: Vec<GatewayTotal>,
    /// The directory.
    pub people: Arc<Vec<Person>>,
    /// The time subscriptions are judged active at.
    pub now: i64,
    /// Matched and candidate lines per payer; see [`PayerGroup`].
    pub by_payer: Vec<PayerGroup>,
    /// Matched and candidate lines per month; see [`MonthGroup`].
    pub by_month: Vec<MonthGroup>,
    subscriptions: OnceLock<Vec<Subscription>>,
}

impl Spend {
    /// Resolves every payer and groups the lines.
    pub fn new(
        expenses: Vec<ExpenseLine>,
        gateway: Vec<GatewayTotal>,
        people: Vec<Person>,
        now: i64,
    ) -> Self {
        let payers: Vec<Payer> = {
            let dir = Directory::new(&people);
            expenses.iter().map(|l| dir.payer(l)).collect()
        };
        Self::with_payers(expenses, payers, gateway, Arc::new(people), now)
    }

    /// The lines since `since` (a UTC midnight; gateway totals are per day), grouped again.
    pub fn since(&self, since: i64) -> Self {
        let (expenses, payers) = self
            .lines()
            .filter(|(l, _)| l.occurred_at.get() >= since)
            .map(|(l, p)| (l.clone(), p.clone()))
            .unzip();
        let gateway = self.gateway.iter().filter(|g| g.day.get() >= since).cloned().collect();
        Self::with_payers(expenses, payers, gateway, Arc::clone(&self.people), self.now)
    }

    fn with_payers(
        expenses: Vec<ExpenseLine>,
        payers: Vec<Payer>,
        gateway: Vec<GatewayTotal>,
        people: Arc<Vec<Person>>,
        now: i64,
    ) -> Self {
        type PayerKey<'k> = (Option<&'k str>, &'k str, &'k str, &'k str, &'k str);
        let mut by_payer: BTreeMap<PayerKey<'_>, (i128, u64, i64, i64)> = BTreeMap::new();
        type MonthKey<'k> = (String, &'k str, &'k str, Option<&'k str>);
        let mut by_month: BTreeMap<MonthKey<'_>, i128> = BTreeMap::new();
        for (l, p) in expenses.iter().zip(&payers) {
            if l.product.is_none() && !l.candidate {
                continue;
            }
            let product = l.product.as_deref();
            let descriptor = if product.is_none() { l.descriptor.as_str() } else { "" };
            let key = (product, descriptor, p.label(), p.department.as_str(), l.currency.as_str());
            let e = by_payer.entry(key).or_insert((0, 0, l.occurred_at.get(), l.occurred_at.get()));
            e.0 += i128::from(l.amount_minor);
            e.1 += 1;
            e.2 = e.2.min(l.occurred_at.get());
            e.3 = e.3.max(l.occurred_at.get());
            let key =
                (year_month(l.occurred_at), p.department.as_str(), l.currency.as_str(), product);
            *by_month.entry(key).or_insert(0) += i128::from(l.amount_minor);
        }
        let by_payer = by_payer
            .into_iter()
            .map(
                |(
                    (product, descriptor, payer, department, currency),
                    (sum, lines, first, last),
                )| {
                    PayerGroup {
                        product: product.map(str::to_owned),
                        descriptor: descriptor.to_owned(),
                        payer: payer.to_owned(),
                        department: department.to_owned(),
                        currency: currency.to_owned(),
                        sum,
                        lines,
                        first,
                        last,
                    }
                },
            )
            .collect();
        let by_month = by_month
            .into_iter()
            .map(|((month, department, currency, product), sum)| MonthGroup {
                month,
                department: department.to_owned(),
                currency: currency.to_owned(),
                product: product.map(str::to_owned),
                sum,
            })
            .collect();
        Self {
            expenses,
            payers,
            gateway,
            people,
            now,
            by_payer,
            by_month,
            subscriptions: OnceLock::new(),
        }
    }

    /// The recurring subscriptions in the lines, judged at [`Spend::now`]; detected on first
    /// use and kept.
    pub fn subscriptions(&self, catalog: &Catalog) -> &[Subscription] {
        self.subscriptions.get_or_init(|| {
            subscriptions::detect(catalog, self.expenses.iter().zip(&self.payers), self.now)
        })
    }

    /// The lines with their payers.
    pub fn lines(&self) -> impl Iterator<Item = (&ExpenseLine, &Payer)> {
        self.expenses.iter().zip(&self.payers)
    }
}
