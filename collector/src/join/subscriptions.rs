//! Recurring subscriptions found in expense lines.
//!
//! Per payer, product and currency, charges are walked in time order. Two charges 26 to 35
//! days apart are a monthly cadence; 350 to 380 days, annual. Amounts may drift by up to 15%
//! (tax, FX) and stay the same subscription. A gap longer than the cadence ends a chain and
//! the next charge starts a new one; only the latest chain counts. A lone charge is a
//! subscription only when it is within 15% of one of the product's catalog list prices, which
//! then gives its cadence. A subscription is active while its next charge is not overdue
//! (monthly: 45 days after the last; annual: 395).

use std::collections::BTreeMap;

use aiscout_signatures::{Catalog, Period};

use crate::model::ExpenseLine;
use crate::model::calendar::DAY_SECS;

/// How often a subscription charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cadence {
    /// Every year.
    Annual,
    /// Every month.
    Monthly,
}

impl Cadence {
    /// `annual` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::Annual => "annual",
            Cadence::Monthly => "monthly",
        }
    }

    /// Charges per year.
    pub fn per_year(self) -> i64 {
        match self {
            Cadence::Annual => 1,
            Cadence::Monthly => 12,
        }
    }

    fn of_gap(days: i64) -> Option<Self> {
        match days {
            26..=35 => Some(Cadence::Monthly),
            350..=380 => Some(Cadence::Annual),
            _ => None,
        }
    }

    fn overdue_after_days(self) -> i64 {
        match self {
            Cadence::Annual => 395,
            Cadence::Monthly => 45,
        }
    }
}

/// Who paid, as resolved against the directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Payer {
    /// Email when known (from the line or the directory), else `""`.
    pub email: String,
    /// Display name, `""` when unknown.
    pub name: String,
    /// Department from the line, else the directory, else `""`.
    pub department: String,
}

impl Payer {
    /// Email, else name.
    pub fn label(&self) -> &str {
        if self.email.is_empty() { &self.name } else { &self.email }
    }
}

/// One recurring subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Product id.
    pub product: String,
    /// Who pays.
    pub payer: Payer,
    /// Cadence.
    pub cadence: Cadence,
    /// The latest charge, in minor units.
    pub seat_minor: i64,
    /// Currency.
    pub currency: String,
    /// First charge of the chain.
    pub start: i64,
    /// Latest charge.
    pub last_charge: i64,
    /// Charges in the chain.
    pub charges: u32,
    /// Whether the next charge is not yet overdue at `now`.
    pub active: bool,
}

impl Subscription {
    /// The seat price for a year at this cadence.
    pub fn annual_minor(&self) -> i64 {
        self.seat_minor.saturating_mul(self.cadence.per_year())
    }
}

fn close(a: i64, reference: i64) -> bool {
    // |a - ref| <= 15% of ref, in integers.
    let diff = i128::from(a) - i128::from(reference);
    diff.abs() * 100 <= i128::from(reference).abs() * 15
}

fn list_cadence(catalog: &Catalog, product: &str, currency: &str, amount: i64) -> Option<Cadence> {
    let p = catalog.product(product)?;
    p.prices.iter().filter(|pr| pr.currency == currency && pr.amount_minor > 0).find_map(|pr| {
        close(amount, pr.amount_minor).then_some(match pr.period {
            Period::Month => Cadence::Monthly,
            Period::Year => Cadence::Annual,
        })
    })
}

/// Finds subscriptions in matched expense lines, each given with its resolved payer.
pub fn detect<'a>(
    catalog: &Catalog,
    lines: impl IntoIterator<Item = (&'a ExpenseLine, &'a Payer)>,
    now: i64,
) -> Vec<Subscription> {
    type Key<'k> = (String, &'k str, &'k str);
    type Charges<'k> = (&'k Payer, Vec<(i64, i64)>);
    let mut groups: BTreeMap<Key<'a>, Charges<'a>> = BTreeMap::new();
    for (l, p) in lines {
        let Some(product) = &l.product else { continue };
        if l.amount_minor <= 0 {
            continue;
        }
        let key = (p.label().to_lowercase(), product.as_str(), l.currency.as_str());
        if key.0.is_empty() {
            continue;
        }
        groups
            .entry(key)
            .or_insert_with(|| (p, Vec::new()))
            .1
            .push((l.occurred_at.get(), l.amount_minor));
    }
    let mut out = Vec::new();
    for ((_, product, currency), (payer, mut charges)) in groups {
        let (product, currency) = (product.to_owned(), currency.to_owned());
        let payer = payer.clone();
        charges.sort_unstable();
        // The latest chain: (start, last, last amount, cadence, charges).
        let mut chain: Option<(i64, i64, i64, Option<Cadence>, u32)> = None;
        for (at, amount) in charges {
            chain = Some(match chain {
                None => (at, at, amount, None, 1),
                Some((start, last, prev, cadence, n)) => {
                    let gap = (at - last) / DAY_SECS;
                    let step = Cadence::of_gap(gap);
                    if gap < 26 && close(amount, prev) {
                        // A second charge within the period (a seat added, a retry): same chain.
                        (start, last, prev, cadence, n)
                    } else if step.is_some()
                        && (cadence.is_none() || cadence == step)
                        && close(amount, prev)
                    {
                        (start, at, amount, step, n + 1)
                    } else {
                        (at, at, amount, None, 1)
                    }
                }
            });
        }
        let Some((start, last, amount, cadence, n)) = chain else { continue };
        let cadence = match cadence {
            Some(c) => c,
            None => match list_cadence(catalog, &product, &currency, amount) {
                Some(c) => c,
                None => continue,
            },
        };
        let active = now - last <= cadence.overdue_after_days() * DAY_SECS;
        out.push(Subscription {
            product,
            payer,
            cadence,
            seat_minor: amount,
            currency,
            start,
            last_charge: last,
            charges: n,
            active,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_SECS;

    fn line(payer: &str, product: &str, day: i64, amount: i64) -> ExpenseLine {
        ExpenseLine {
            source: "ramp".into(),
            dedupe_key: format!("{payer}{day}"),
            file: "f".into(),
            line: 1,
            occurred_at: aiscout_wire::UnixSecs(day * DAY),
            amount_minor: amount,
            currency: "USD".into(),
            descriptor: String::new(),
            merchant: String::new(),
            payer_email: payer.into(),
            payer_name: String::new(),
            department: String::new(),
            product: Some(product.into()),
            candidate: false,
            candidate_reason: String::new(),
        }
    }

    fn run(lines: &[ExpenseLine], now_day: i64) -> Vec<Subscription> {
        let catalog = Catalog::builtin().unwrap();
        let payers: Vec<Payer> = lines
            .iter()
            .map(|l| Payer {
                email: l.payer_email.clone(),
                name: String::new(),
                department: String::new(),
            })
            .collect();
        detect(&catalog, lines.iter().zip(&payers), now_day * DAY)
    }

    #[test]
    fn monthly_charges_with_tax_drift_are_one_subscription() {
        let lines = [
            line("a@x.io", "anysphere.cursor", 100, 2000),
            line("a@x.io", "anysphere.cursor", 131, 2160),
            line("a@x.io", "anysphere.cursor", 161, 2100),
        ];
        let subs = run(&lines, 170);
        assert_eq!(subs.len(), 1);
        let s = &subs[0];
        assert_eq!(
            (s.cadence, s.charges, s.seat_minor, s.start),
            (Cadence::Monthly, 3, 2100, 100 * DAY)
        );
        assert!(s.active);
        assert_eq!(s.annual_minor(), 25_200);
    }

    #[test]
    fn lapsed_subscription_is_inactive() {
        let lines = [
            line("a@x.io", "anysphere.cursor", 100, 2000),
            line("a@x.io", "anysphere.cursor", 130, 2000),
        ];
        assert!(!run(&lines, 200)[0].active);
    }

    #[test]
    fn annual_cadence_is_recognised() {
        let lines = [
            line("a@x.io", "openai.chatgpt", 10, 30_000),
            line("a@x.io", "openai.chatgpt", 375, 30_000),
        ];
        assert_eq!(run(&lines, 400)[0].cadence, Cadence::Annual);
    }

    #[test]
    fn lone_charge_at_list_price_is_a_subscription_and_odd_amount_is_not() {
        assert_eq!(
            run(&[line("a@x.io", "openai.chatgpt", 10, 2000)], 20)[0].cadence,
            Cadence::Monthly
        );
        assert!(run(&[line("a@x.io", "openai.chatgpt", 10, 777)], 20).is_empty());
    }

    #[test]
    fn a_big_price_change_starts_a_new_chain() {
        let lines = [
            line("a@x.io", "openai.chatgpt", 10, 2000),
            line("a@x.io", "openai.chatgpt", 40, 2000),
            line("a@x.io", "openai.chatgpt", 70, 20_000),
        ];
        let s = &run(&lines, 75)[0];
        assert_eq!((s.start, s.seat_minor), (70 * DAY, 20_000));
    }
}
