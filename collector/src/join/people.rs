//! Each person's AI tools and spend across card, gateway and endpoint use: the console's
//! `/people` pages.

use std::collections::{BTreeMap, HashMap};

use aiscout_wire::{Money, UnixSecs};

use super::{Purse, Spend, money};
use crate::model::PersonUsage;

/// One person's use and spend.
#[derive(Clone, Debug, Default)]
pub struct PersonSpend {
    /// What the store knows (card spend replaced as [`people_spend`] says).
    pub usage: PersonUsage,
    /// Name from the directory (`""` when absent).
    pub name: String,
    /// Department from the directory (`""` when absent).
    pub department: String,
    /// Gateway spend, minor units per currency.
    pub gateway: Vec<Money>,
    /// Card and gateway spend together, per currency.
    pub spend: Vec<Money>,
}

impl PersonSpend {
    /// Card spend as [`Money`].
    pub fn card(&self) -> Vec<Money> {
        self.usage.expense_minor.iter().map(|(c, v)| money(c, *v)).collect()
    }
}

/// Everyone's use and spend, most spend first.
#[derive(Clone, Debug, Default)]
pub struct PeopleSpend {
    /// Sorted by total spend (all currencies' minor units summed), then by products, both
    /// descending.
    pub people: Vec<PersonSpend>,
    /// Everyone's spend together, per currency.
    pub total: Vec<Money>,
}

/// Joins the store's per-person use with the card spend: the store's card spend (lines whose
/// export named the payer's email) is replaced by the reconciliation's, each matched line's
/// payer resolved through the directory by email, else by name ([`super::Directory`]); people
/// who only pay by card are added.
pub fn people_spend(usage: Vec<PersonUsage>, spend: &Spend) -> PeopleSpend {
    let mut card: BTreeMap<String, (BTreeMap<&str, i64>, i64)> = BTreeMap::new();
    for (l, payer) in spend.lines().filter(|(l, _)| l.product.is_some()) {
        if payer.email.is_empty() {
            continue;
        }
        let e = card.entry(payer.email.to_lowercase()).or_default();
        let sum = e.0.entry(l.currency.as_str()).or_default();
        *sum = sum.saturating_add(l.amount_minor);
        e.1 = e.1.max(l.occurred_at.get());
    }
    let mut by_email: BTreeMap<String, PersonUsage> = usage
        .into_iter()
        .map(|u| (u.email.clone(), PersonUsage { expense_minor: Vec::new(), ..u }))
        .collect();
    for (email, (sums, last)) in card {
        let u = by_email
            .entry(email.clone())
            .or_insert_with(|| PersonUsage { email, ..PersonUsage::default() });
        u.expense_minor = sums.into_iter().map(|(c, v)| (c.to_owned(), v)).collect();
        u.last_activity = u.last_activity.max(UnixSecs(last));
    }
    let directory: HashMap<&str, &crate::model::Person> =
        spend.people.iter().map(|p| (p.email.as_str(), p)).collect();
    let mut all = Purse::default();
    let mut people: Vec<PersonSpend> = by_email
        .into_values()
        .map(|usage| {
            let mut g = Purse::default();
            for (c, v) in &usage.gateway_nanos {
                g.add(c, i128::from(*v));
            }
            let gateway = g.nanos();
            let mut p = Purse::default();
            for (c, v) in &usage.expense_minor {
                p.add(c, i128::from(*v));
            }
            for m in &gateway {
                p.add(&m.currency, i128::from(m.amount_minor));
            }
            let spend = p.minor();
            for m in &spend {
                all.add(&m.currency, i128::from(m.amount_minor));
            }
            let person = directory.get(usage.email.as_str());
            PersonSpend {
                name: person.map(|p| p.name.clone()).unwrap_or_default(),
                department: person.map(|p| p.department.clone()).unwrap_or_default(),
                usage,
                gateway,
                spend,
            }
        })
        .collect();
    people.sort_by_cached_key(|p| {
        std::cmp::Reverse((
            p.spend.iter().map(|m| m.amount_minor).fold(0_i64, i64::saturating_add),
            p.usage.products.len(),
        ))
    });
    PeopleSpend { people, total: all.minor() }
}
