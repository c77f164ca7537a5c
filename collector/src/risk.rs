//! `[risk]`: the weights of the risk score (issue 17), as an organisation sets them.
//!
//! Each fact's weight is what it adds to the score when the catalog says it is risky (trains
//! on data, no SOC 2, no SSO, a retention longer than `retention_days`, ...). An unknown fact
//! adds `unknown_percent` of its weight: unknown is a value, not zero. The score is the sum as
//! a share of all weights, 0 to 100; [`aiscout_signatures::risk::score`] computes it.

use aiscout_signatures::risk::MAX_WEIGHT;
use aiscout_signatures::{RiskFact, RiskWeights};
use serde::Deserialize;

/// `[risk]` as written; unset keys keep their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskFile {
    /// Trains on customer data by default on consumer plans (default 15).
    pub trains_consumer: Option<u32>,
    /// Trains on customer data by default on business plans (default 25).
    pub trains_business: Option<u32>,
    /// Keeps data longer than `retention_days` (default 10).
    pub retention: Option<u32>,
    /// No SOC 2 report (default 10).
    pub soc2: Option<u32>,
    /// No ISO 27001 certificate (default 5).
    pub iso27001: Option<u32>,
    /// No SSO on business plans (default 10).
    pub sso: Option<u32>,
    /// No SCIM on business plans (default 5).
    pub scim: Option<u32>,
    /// No data residency option (default 5).
    pub data_residency: Option<u32>,
    /// No enterprise plan (default 15).
    pub enterprise_plan: Option<u32>,
    /// The share of a fact's weight, in percent, that an unknown value adds (default 50).
    pub unknown_percent: Option<u32>,
    /// A retention longer than this many days is risky (default 30).
    pub retention_days: Option<u32>,
}

/// Validates `[risk]`; each problem is `(key, reason)`. With problems, the defaults.
pub fn check(raw: RiskFile, problems: &mut Vec<(String, String)>) -> RiskWeights {
    let mut w = RiskWeights::default();
    let before = problems.len();
    let set = [
        (RiskFact::TrainsConsumer, raw.trains_consumer),
        (RiskFact::TrainsBusiness, raw.trains_business),
        (RiskFact::Retention, raw.retention),
        (RiskFact::Soc2, raw.soc2),
        (RiskFact::Iso27001, raw.iso27001),
        (RiskFact::Sso, raw.sso),
        (RiskFact::Scim, raw.scim),
        (RiskFact::DataResidency, raw.data_residency),
        (RiskFact::EnterprisePlan, raw.enterprise_plan),
    ];
    for (fact, value) in set {
        match value {
            Some(v) if v > MAX_WEIGHT => problems.push((
                format!("risk.{}", fact.key()),
                format!("{v}: a weight is from 0 to {MAX_WEIGHT}"),
            )),
            Some(v) => w.set(fact, v),
            None => {}
        }
    }
    match raw.unknown_percent {
        Some(p) if p > 100 => problems
            .push(("risk.unknown_percent".into(), format!("{p}: a percentage is from 0 to 100"))),
        Some(p) => w.unknown_percent = p,
        None => {}
    }
    match raw.retention_days {
        Some(d) if d > crate::retention::MAX_DAYS => problems.push((
            "risk.retention_days".into(),
            format!("{d} days: must be at most {}", crate::retention::MAX_DAYS),
        )),
        Some(d) => w.retention_days = d,
        None => {}
    }
    if problems.len() > before {
        return RiskWeights::default();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_problems() {
        let mut p = Vec::new();
        assert_eq!(check(RiskFile::default(), &mut p), RiskWeights::default());
        let w = check(
            RiskFile { scim: Some(40), unknown_percent: Some(0), ..Default::default() },
            &mut p,
        );
        assert!(p.is_empty());
        assert_eq!((w.weight(RiskFact::Scim), w.unknown_percent), (40, 0));
        assert_eq!(w.weight(RiskFact::Soc2), 10, "unset keys keep their defaults");
        let bad = RiskFile {
            soc2: Some(5_000),
            unknown_percent: Some(101),
            retention_days: Some(40_000),
            ..Default::default()
        };
        assert_eq!(check(bad, &mut p), RiskWeights::default());
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["risk.soc2", "risk.unknown_percent", "risk.retention_days"]);
    }
}
