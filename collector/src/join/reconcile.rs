//! Procurement's reconciliation: where spend and use disagree with the review decisions.
//!
//! Sections (issue 7): 1. paid but not sanctioned; 2. used but not paid; 3. sanctioned and
//! paid but idle; 4. duplicate individual subscriptions with the team-plan estimate; 5.
//! gateway spend beside shadow spend, by department and month. Unmatched AI-looking expense
//! lines are listed too, since they are shadow spend waiting for a catalog entry.

use std::collections::{BTreeMap, BTreeSet};

use aiscout_signatures::merchant::context_words;
use aiscout_signatures::{Audience, Catalog, Period, Price, Product};
use aiscout_wire::{
    Candidate, ConsumerPlan, DepartmentMonthSpend, DuplicateSubscriptions, GatewayBypass,
    IdleSubscription, PaidNotSanctioned, ProductStatus, Reconciliation, UsedNotPaid,
};

use super::subscriptions::Subscription;
use super::{Facts, catalog_facts, clamp, money, status, u64_of};
use crate::model::calendar::{DAY_SECS, year_month};
use crate::model::money::nanos_to_minor;
use crate::model::{ExpenseLine, Review};

/// Plan names that are a team plan, compared case-insensitively.
const TEAM_PLANS: &[&str] = &["team", "teams", "business", "enterprise"];

/// Builds the reconciliation; `idle_days` is the use gap after which a subscription is idle.
pub fn reconcile(catalog: &Catalog, facts: &Facts, idle_days: u32) -> Reconciliation {
    let reviews: BTreeMap<&str, &Review> =
        facts.reviews.iter().map(|r| (r.product.as_str(), r)).collect();
    let status_of = |p: &str| status(reviews.get(p).copied());
    let name_of = |p: &str| catalog_facts(catalog, p).1;
    let spend = &facts.spend;

    // 1. Paid but not sanctioned, and the candidates.
    type PaidKey<'k> = (&'k str, &'k str, &'k str, &'k str);
    let mut paid: BTreeMap<PaidKey<'_>, (i128, u64, i64, i64)> = BTreeMap::new();
    let mut candidates: BTreeMap<PaidKey<'_>, (i128, u64, i64)> = BTreeMap::new();
    for g in &spend.by_payer {
        match &g.product {
            Some(p) if status_of(p) != ProductStatus::Sanctioned => {
                let key =
                    (p.as_str(), g.payer.as_str(), g.department.as_str(), g.currency.as_str());
                let e = paid.entry(key).or_insert((0, 0, g.first, g.last));
                e.0 += g.sum;
                e.1 += g.lines;
                e.2 = e.2.min(g.first);
                e.3 = e.3.max(g.last);
            }
            None => {
                let key = (
                    g.descriptor.as_str(),
                    g.payer.as_str(),
                    g.department.as_str(),
                    g.currency.as_str(),
                );
                let e = candidates.entry(key).or_insert((0, 0, g.last));
                e.0 += g.sum;
                e.1 += g.lines;
                e.2 = e.2.max(g.last);
            }
            _ => {}
        }
    }
    let paid_not_sanctioned = paid
        .into_iter()
        .map(|((product, payer, department, currency), (sum, lines, first, last))| {
            PaidNotSanctioned {
                name: name_of(product),
                status: status_of(product),
                product: product.to_owned(),
                payer: payer.to_owned(),
                department: department.to_owned(),
                spend: money(currency, clamp(sum)),
                lines,
                first_charge: first,
                last_charge: last,
            }
        })
        .collect();
    let candidates = candidates
        .into_iter()
        .map(|((descriptor, payer, department, currency), (sum, lines, last))| Candidate {
            descriptor: descriptor.to_owned(),
            payer: payer.to_owned(),
            department: department.to_owned(),
            spend: money(currency, clamp(sum)),
            lines,
            last_charge: last,
        })
        .collect();

    // 2. Used but not paid.
    let paid_products: BTreeSet<&str> = spend
        .by_payer
        .iter()
        .filter_map(|g| g.product.as_deref())
        .chain(spend.gateway.iter().filter_map(|g| g.product.as_deref()))
        .collect();
    let last_seen: BTreeMap<&str, i64> = facts.sources.iter().fold(BTreeMap::new(), |mut m, s| {
        let e = m.entry(s.product.as_str()).or_insert(s.last_seen.get());
        *e = (*e).max(s.last_seen.get());
        m
    });
    let used_not_paid = facts
        .products
        .iter()
        .filter(|p| !paid_products.contains(p.product.as_str()))
        .map(|p| UsedNotPaid {
            name: name_of(&p.product),
            status: status_of(&p.product),
            devices: u64_of(p.devices),
            users: u64_of(p.users),
            departments: p.departments.clone(),
            last_seen: last_seen.get(p.product.as_str()).copied().unwrap_or(0),
            product: p.product.clone(),
        })
        .collect();

    // 3. Sanctioned and paid but idle.
    let active: Vec<&Subscription> =
        spend.subscriptions(catalog).iter().filter(|s| s.active).collect();
    let last_use: BTreeMap<(&str, &str), i64> = facts
        .owners
        .owner_use
        .iter()
        .map(|u| ((u.owner_email.as_str(), u.product.as_str()), u.last_seen.get()))
        .collect();
    let idle_from = facts.now - i64::from(idle_days) * DAY_SECS;
    let idle_subscriptions = active
        .iter()
        .filter(|s| status_of(&s.product) == ProductStatus::Sanctioned)
        .filter_map(|s| {
            // A deprovisioned payer's seat is idle whatever they did before they left; anyone
            // else's only when they own a device that shows no recent use.
            let gone = facts.owners.deprovisioned.contains(&s.payer.email);
            if !gone && !facts.owners.device_owners.contains(&s.payer.email) {
                return None;
            }
            let used = last_use.get(&(s.payer.email.as_str(), s.product.as_str())).copied();
            if !gone && used.is_some_and(|u| u >= idle_from) {
                return None;
            }
            Some(IdleSubscription {
                product: s.product.clone(),
                name: name_of(&s.product),
                payer: s.payer.email.clone(),
                department: s.payer.department.clone(),
                cadence: s.cadence.as_str().to_owned(),
                seat_price: money(&s.currency, s.seat_minor),
                since: s.start,
                last_charge: s.last_charge,
                last_used: used,
            })
        })
        .collect();

    // 4. Duplicate individual subscriptions.
    let mut by_product: BTreeMap<(&str, &str), Vec<&Subscription>> = BTreeMap::new();
    for s in &active {
        by_product.entry((s.product.as_str(), s.currency.as_str())).or_default().push(s);
    }
    let duplicate_subscriptions = by_product
        .into_iter()
        .filter(|(_, subs)| subs.len() >= 2)
        .map(|((product, currency), subs)| {
            let seats = i64::try_from(subs.len()).unwrap_or(i64::MAX);
            let current: i64 = subs.iter().map(|s| s.annual_minor()).fold(0, i64::saturating_add);
            let team = catalog.product(product).and_then(|p| {
                p.prices
                    .iter()
                    .filter(|pr| pr.currency == currency && pr.amount_minor > 0)
                    .filter(|pr| {
                        let plan = pr.plan.to_lowercase();
                        TEAM_PLANS.iter().any(|t| plan.split([' ', '(', ')']).any(|w| w == *t))
                    })
                    .min_by_key(|pr| pr.annual_minor())
            });
            // A plan with a minimum bills at least that many seats (issue 17): two payers
            // moved to a five-seat team plan pay for five.
            let team_seats = team.map(|pr| pr.billed_seats(u64::try_from(seats).unwrap_or(0)));
            let team_annual = team.zip(team_seats).map(|(pr, billed)| {
                pr.annual_minor().saturating_mul(i64::try_from(billed).unwrap_or(i64::MAX))
            });
            let payers: BTreeSet<String> =
                subs.iter().map(|s| s.payer.label().to_owned()).collect();
            DuplicateSubscriptions {
                product: product.to_owned(),
                name: name_of(product),
                payers: payers.into_iter().collect(),
                current_annual: money(currency, current),
                team_plan: team.map(|pr| {
                    let per = match pr.period {
                        Period::Month => "month",
                        Period::Year => "year",
                    };
                    let minimum =
                        pr.min_seats.map(|m| format!(", minimum {m} seats")).unwrap_or_default();
                    format!(
                        "{} ({} {currency} per seat per {per}{minimum})",
                        pr.plan,
                        pr.amount_decimal()
                    )
                }),
                team_seats,
                team_annual: team_annual.map(|t| money(currency, t)),
                saving: team_annual.map(|t| money(currency, current.saturating_sub(t))),
            }
        })
        .collect();

    // 5. Gateway beside shadow spend, by department and month.
    let mut months: BTreeMap<(String, String, String), (i128, i128)> = BTreeMap::new();
    for g in &spend.gateway {
        let key = (g.department.clone(), year_month(g.day), g.currency.clone());
        months.entry(key).or_default().0 += i128::from(g.cost_nanos);
    }
    for g in &spend.by_month {
        // Matched lines of products that are not sanctioned, and candidates.
        if g.product.as_deref().is_none_or(|p| status_of(p) != ProductStatus::Sanctioned) {
            let key = (g.department.clone(), g.month.clone(), g.currency.clone());
            months.entry(key).or_default().1 += g.sum;
        }
    }
    let gateway_vs_shadow = months
        .into_iter()
        .map(|((department, month, currency), (gateway_nanos, shadow))| DepartmentMonthSpend {
            department,
            month,
            gateway: money(&currency, nanos_to_minor(gateway_nanos, &currency)),
            shadow: money(&currency, clamp(shadow)),
        })
        .collect();

    let consumer_plans = consumer_plans(catalog, spend, &name_of);
    let gateway_bypass = gateway_bypass(catalog, facts, &name_of);

    Reconciliation {
        generated_at: facts.now,
        idle_days,
        paid_not_sanctioned,
        used_not_paid,
        idle_subscriptions,
        duplicate_subscriptions,
        gateway_vs_shadow,
        candidates,
        consumer_plans,
        gateway_bypass,
    }
}

/// Gateway bypass (issue 17): per device, person and process, the provider API reached
/// directly and the gateway that should have carried it, the owner's department from the
/// directory.
fn gateway_bypass(
    catalog: &Catalog,
    facts: &Facts,
    name_of: &dyn Fn(&str) -> String,
) -> Vec<GatewayBypass> {
    let (since, until) = facts.period;
    let found = super::bypass::find(catalog, &facts.fronted, since, until);
    if found.is_empty() {
        return Vec::new();
    }
    let departments: BTreeMap<String, &str> = facts
        .spend
        .people
        .iter()
        .map(|p| (p.email.to_lowercase(), p.department.as_str()))
        .collect();
    found
        .into_iter()
        .map(|b| {
            let person = b.owner_email.unwrap_or_default();
            let department =
                departments.get(&person.to_lowercase()).copied().unwrap_or_default().to_owned();
            GatewayBypass {
                name: name_of(&b.product),
                product: b.product,
                host_id: b.host_id,
                hostname: b.hostname,
                person,
                department,
                process: b.process,
                host: b.host,
                gateway: b.gateway,
                gateway_host: b.gateway_host,
                first_seen: b.first_seen.get(),
                last_seen: b.last_seen.get(),
                count: u64_of(b.count),
            }
        })
        .collect()
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Month => "month",
        Period::Year => "year",
    }
}

/// The consumer plan a matched card line pays for, when its product also sells a business
/// plan: a consumer price in the line's currency equal to its amount, else one whose plan
/// name (before any parenthesis: `Max 5x` of `Max 5x (annual)`) stands in the descriptor.
pub fn consumer_plan<'c>(product: &'c Product, line: &ExpenseLine) -> Option<&'c Price> {
    if !product.prices.iter().any(|p| p.audience == Some(Audience::Business)) {
        return None;
    }
    let consumer = || {
        product
            .prices
            .iter()
            .filter(|p| p.audience == Some(Audience::Consumer) && p.currency == line.currency)
    };
    consumer().find(|p| p.amount_minor == line.amount_minor).or_else(|| {
        let words = context_words(&line.descriptor);
        consumer().find(|p| {
            let plan = context_words(p.plan.split('(').next().unwrap_or(""));
            !plan.is_empty() && words.windows(plan.len()).any(|w| w == plan.as_slice())
        })
    })
}

/// The business seat proposed instead of `consumer`: the cheapest business price of the
/// product in its currency, of the same period when there is one.
pub fn business_seat<'c>(product: &'c Product, consumer: &Price) -> Option<&'c Price> {
    let business = || {
        product
            .prices
            .iter()
            .filter(|p| p.audience == Some(Audience::Business) && p.currency == consumer.currency)
    };
    business()
        .filter(|p| p.period == consumer.period)
        .min_by_key(|p| p.amount_minor)
        .or_else(|| business().min_by_key(|p| p.annual_minor()))
}

/// Consumer subscriptions paid on cards (issue 17): per product, payer, department and plan.
fn consumer_plans(
    catalog: &Catalog,
    spend: &super::spend::Spend,
    name_of: &dyn Fn(&str) -> String,
) -> Vec<ConsumerPlan> {
    type Key<'k> = (&'k str, &'k str, &'k str, &'k str);
    let mut groups: BTreeMap<Key<'_>, (&Product, &Price, i128, u64, i64)> = BTreeMap::new();
    for (l, payer) in spend.lines() {
        let Some(product) = l.product.as_deref().and_then(|p| catalog.product(p)) else {
            continue;
        };
        let Some(plan) = consumer_plan(product, l) else { continue };
        let key =
            (product.id.as_str(), payer.label(), payer.department.as_str(), plan.plan.as_str());
        let e = groups.entry(key).or_insert((product, plan, 0, 0, l.occurred_at.get()));
        e.2 += i128::from(l.amount_minor);
        e.3 += 1;
        e.4 = e.4.max(l.occurred_at.get());
    }
    groups
        .into_iter()
        .map(|((id, payer, department, _), (product, plan, sum, lines, last))| {
            let seat = business_seat(product, plan);
            ConsumerPlan {
                product: id.to_owned(),
                name: name_of(id),
                payer: payer.to_owned(),
                department: department.to_owned(),
                plan: plan.plan.clone(),
                plan_price: money(&plan.currency, plan.amount_minor),
                period: period_name(plan.period).to_owned(),
                spend: money(&plan.currency, clamp(sum)),
                lines,
                last_charge: last,
                business_plan: seat.map(|s| s.plan.clone()),
                business_price: seat.map(|s| money(&s.currency, s.amount_minor)),
                business_period: seat.map(|s| period_name(s.period).to_owned()),
                business_min_seats: seat.and_then(|s| s.min_seats),
            }
        })
        .collect()
}
