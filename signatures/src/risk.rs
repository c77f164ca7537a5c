//! Risk facts about a product and the risk score computed from them (issue 17).
//!
//! Facts come from `signatures/catalog/risk/<vendor>.toml`, each with its source. A fact that
//! no source states is unknown, and unknown is a value: it is shown as "unknown" and scored
//! with its own weight ([`RiskWeights::unknown_percent`]), never guessed.
//!
//! [`score`] is the one pure function that turns facts and weights into 0 to 100 (higher is
//! riskier); the collector's `[risk]` config table sets the weights.

/// A fact and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The value the source states.
    pub value: T,
    /// Where it comes from (a page, a document, an article number).
    pub source: String,
}

/// How long a vendor keeps what users send it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Days the data is kept, when the source gives a number (0: not kept).
    pub days: Option<u32>,
    /// The policy in a few words, when the source states one.
    pub policy: Option<String>,
}

/// Everything the catalog knows about a product's data handling; `None` is unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskFacts {
    /// Trains on customer data by default on consumer plans.
    pub trains_consumer: Option<Sourced<bool>>,
    /// Trains on customer data by default on business plans.
    pub trains_business: Option<Sourced<bool>>,
    /// Data retention.
    pub retention: Option<Sourced<Retention>>,
    /// Holds a SOC 2 report.
    pub soc2: Option<Sourced<bool>>,
    /// Holds an ISO/IEC 27001 certificate.
    pub iso27001: Option<Sourced<bool>>,
    /// Single sign-on on business plans.
    pub sso: Option<Sourced<bool>>,
    /// SCIM provisioning on business plans.
    pub scim: Option<Sourced<bool>>,
    /// Regions customers can keep their data in (empty: none offered).
    pub data_residency: Option<Sourced<Vec<String>>>,
    /// An enterprise plan exists.
    pub enterprise_plan: Option<Sourced<bool>>,
}

impl RiskFacts {
    /// Whether no fact is known.
    pub fn is_empty(&self) -> bool {
        RiskFact::ALL.iter().all(|f| f.source(self).is_none())
    }
}

/// One kind of risk fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RiskFact {
    /// [`RiskFacts::trains_consumer`].
    TrainsConsumer,
    /// [`RiskFacts::trains_business`].
    TrainsBusiness,
    /// [`RiskFacts::retention`].
    Retention,
    /// [`RiskFacts::soc2`].
    Soc2,
    /// [`RiskFacts::iso27001`].
    Iso27001,
    /// [`RiskFacts::sso`].
    Sso,
    /// [`RiskFacts::scim`].
    Scim,
    /// [`RiskFacts::data_residency`].
    DataResidency,
    /// [`RiskFacts::enterprise_plan`].
    EnterprisePlan,
}

impl RiskFact {
    /// Every fact, in the order of the sources, reports and pages.
    pub const ALL: [RiskFact; 9] = [
        RiskFact::TrainsConsumer,
        RiskFact::TrainsBusiness,
        RiskFact::Retention,
        RiskFact::Soc2,
        RiskFact::Iso27001,
        RiskFact::Sso,
        RiskFact::Scim,
        RiskFact::DataResidency,
        RiskFact::EnterprisePlan,
    ];

    /// The key in the sources, the `[risk]` config table, reports and the API.
    pub fn key(self) -> &'static str {
        match self {
            RiskFact::TrainsConsumer => "trains_consumer",
            RiskFact::TrainsBusiness => "trains_business",
            RiskFact::Retention => "retention",
            RiskFact::Soc2 => "soc2",
            RiskFact::Iso27001 => "iso27001",
            RiskFact::Sso => "sso",
            RiskFact::Scim => "scim",
            RiskFact::DataResidency => "data_residency",
            RiskFact::EnterprisePlan => "enterprise_plan",
        }
    }

    /// The fact with this key.
    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            RiskFact::TrainsConsumer => "Trains on data (consumer plans)",
            RiskFact::TrainsBusiness => "Trains on data (business plans)",
            RiskFact::Retention => "Data retention",
            RiskFact::Soc2 => "SOC 2",
            RiskFact::Iso27001 => "ISO 27001",
            RiskFact::Sso => "SSO on business plans",
            RiskFact::Scim => "SCIM on business plans",
            RiskFact::DataResidency => "Data residency",
            RiskFact::EnterprisePlan => "Enterprise plan",
        }
    }

    /// The source of this fact, `None` when unknown.
    pub fn source(self, f: &RiskFacts) -> Option<&str> {
        fn s(o: &Option<Sourced<bool>>) -> Option<&str> {
            o.as_ref().map(|s| s.source.as_str())
        }
        match self {
            RiskFact::TrainsConsumer => s(&f.trains_consumer),
            RiskFact::TrainsBusiness => s(&f.trains_business),
            RiskFact::Retention => f.retention.as_ref().map(|s| s.source.as_str()),
            RiskFact::Soc2 => s(&f.soc2),
            RiskFact::Iso27001 => s(&f.iso27001),
            RiskFact::Sso => s(&f.sso),
            RiskFact::Scim => s(&f.scim),
            RiskFact::DataResidency => f.data_residency.as_ref().map(|s| s.source.as_str()),
            RiskFact::EnterprisePlan => s(&f.enterprise_plan),
        }
    }

    /// The value for people: `yes`, `no`, `30 days`, `US, EU`, `none` or `unknown`.
    pub fn display(self, f: &RiskFacts) -> String {
        let yes_no = |o: &Option<Sourced<bool>>| match o {
            Some(s) if s.value => "yes".to_owned(),
            Some(_) => "no".to_owned(),
            None => "unknown".to_owned(),
        };
        match self {
            RiskFact::TrainsConsumer => yes_no(&f.trains_consumer),
            RiskFact::TrainsBusiness => yes_no(&f.trains_business),
            RiskFact::Soc2 => yes_no(&f.soc2),
            RiskFact::Iso27001 => yes_no(&f.iso27001),
            RiskFact::Sso => yes_no(&f.sso),
            RiskFact::Scim => yes_no(&f.scim),
            RiskFact::EnterprisePlan => yes_no(&f.enterprise_plan),
            RiskFact::Retention => match &f.retention {
                None => "unknown".to_owned(),
                Some(s) => match (s.value.days, s.value.policy.as_deref()) {
                    (Some(1), Some(p)) => format!("1 day ({p})"),
                    (Some(d), Some(p)) => format!("{d} days ({p})"),
                    (Some(1), None) => "1 day".to_owned(),
                    (Some(d), None) => format!("{d} days"),
                    (None, Some(p)) => p.to_owned(),
                    (None, None) => "unknown".to_owned(),
                },
            },
            RiskFact::DataResidency => match &f.data_residency {
                None => "unknown".to_owned(),
                Some(s) if s.value.is_empty() => "none".to_owned(),
                Some(s) => s.value.join(", "),
            },
        }
    }

    /// Whether the known value adds risk: `Some(true)` risky, `Some(false)` not, `None`
    /// unknown (and a retention stated only in words, which cannot be compared).
    pub fn risky(self, f: &RiskFacts, weights: &RiskWeights) -> Option<bool> {
        let v = |o: &Option<Sourced<bool>>| o.as_ref().map(|s| s.value);
        match self {
            RiskFact::TrainsConsumer => v(&f.trains_consumer),
            RiskFact::TrainsBusiness => v(&f.trains_business),
            RiskFact::Soc2 => v(&f.soc2).map(|b| !b),
            RiskFact::Iso27001 => v(&f.iso27001).map(|b| !b),
            RiskFact::Sso => v(&f.sso).map(|b| !b),
            RiskFact::Scim => v(&f.scim).map(|b| !b),
            RiskFact::EnterprisePlan => v(&f.enterprise_plan).map(|b| !b),
            RiskFact::Retention => {
                f.retention.as_ref().and_then(|s| s.value.days).map(|d| d > weights.retention_days)
            }
            RiskFact::DataResidency => f.data_residency.as_ref().map(|s| s.value.is_empty()),
        }
    }
}

/// The weights of the risk score: what each fact adds when it is risky, as an organisation
/// sets them in the collector's `[risk]` table. The defaults sum to 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiskWeights {
    /// Weight per fact, in [`RiskFact::ALL`] order.
    pub weights: [u32; 9],
    /// The share of a fact's weight (0 to 100 percent) an unknown value adds.
    pub unknown_percent: u32,
    /// A retention longer than this many days is risky.
    pub retention_days: u32,
}

/// The largest weight a fact may have.
pub const MAX_WEIGHT: u32 = 1_000;

impl Default for RiskWeights {
    fn default() -> Self {
        Self { weights: [15, 25, 10, 10, 5, 10, 5, 5, 15], unknown_percent: 50, retention_days: 30 }
    }
}

impl RiskWeights {
    /// The weight of `fact`.
    pub fn weight(&self, fact: RiskFact) -> u32 {
        let i = RiskFact::ALL.iter().position(|f| *f == fact).unwrap_or(0);
        self.weights.get(i).copied().unwrap_or(0)
    }

    /// Sets the weight of `fact`.
    pub fn set(&mut self, fact: RiskFact, weight: u32) {
        if let Some(i) = RiskFact::ALL.iter().position(|f| *f == fact)
            && let Some(w) = self.weights.get_mut(i)
        {
            *w = weight;
        }
    }
}

/// The risk score, 0 (every fact known and safe) to 100 (every fact risky): the weights of
/// the risky facts plus `unknown_percent` of the weights of the unknown ones, as a share of
/// all weights, rounded half up. All weights zero scores 0.
pub fn score(facts: &RiskFacts, weights: &RiskWeights) -> u8 {
    let mut total: u64 = 0;
    let mut got: u64 = 0;
    for fact in RiskFact::ALL {
        let w = u64::from(weights.weight(fact));
        total += w * 100;
        got += match fact.risky(facts, weights) {
            Some(true) => w * 100,
            Some(false) => 0,
            None => w * u64::from(weights.unknown_percent.min(100)),
        };
    }
    if total == 0 {
        return 0;
    }
    let pct = (got * 100 + total / 2) / total;
    u8::try_from(pct.min(100)).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(v: bool) -> Option<Sourced<bool>> {
        Some(Sourced { value: v, source: "s".into() })
    }

    fn safe() -> RiskFacts {
        RiskFacts {
            trains_consumer: yes(false),
            trains_business: yes(false),
            retention: Some(Sourced {
                value: Retention { days: Some(30), policy: None },
                source: "s".into(),
            }),
            soc2: yes(true),
            iso27001: yes(true),
            sso: yes(true),
            scim: yes(true),
            data_residency: Some(Sourced { value: vec!["EU".into()], source: "s".into() }),
            enterprise_plan: yes(true),
        }
    }

    #[test]
    fn default_weights_sum_to_100() {
        assert_eq!(RiskWeights::default().weights.iter().sum::<u32>(), 100);
    }

    #[test]
    fn all_safe_scores_zero_all_unknown_scores_the_unknown_share() {
        let w = RiskWeights::default();
        assert_eq!(score(&safe(), &w), 0);
        assert_eq!(score(&RiskFacts::default(), &w), 50);
        let w0 = RiskWeights { unknown_percent: 0, ..w };
        assert_eq!(score(&RiskFacts::default(), &w0), 0);
        let w100 = RiskWeights { unknown_percent: 100, ..w };
        assert_eq!(score(&RiskFacts::default(), &w100), 100);
    }

    #[test]
    fn each_risky_fact_adds_its_weight() {
        let w = RiskWeights::default();
        let f = RiskFacts { trains_business: yes(true), ..safe() };
        assert_eq!(score(&f, &w), 25);
        let f = RiskFacts { soc2: yes(false), sso: yes(false), ..safe() };
        assert_eq!(score(&f, &w), 20);
        let f = RiskFacts {
            data_residency: Some(Sourced { value: Vec::new(), source: "s".into() }),
            ..safe()
        };
        assert_eq!(score(&f, &w), 5);
        // Unknown SOC 2 adds half its weight, 5 of 10.
        let f = RiskFacts { soc2: None, ..safe() };
        assert_eq!(score(&f, &w), 5);
    }

    #[test]
    fn retention_is_compared_with_the_threshold_and_words_are_unknown() {
        let w = RiskWeights::default();
        let days = |d: Option<u32>, p: Option<&str>| RiskFacts {
            retention: Some(Sourced {
                value: Retention { days: d, policy: p.map(str::to_owned) },
                source: "s".into(),
            }),
            ..safe()
        };
        assert_eq!(score(&days(Some(30), None), &w), 0);
        assert_eq!(score(&days(Some(31), None), &w), 10);
        assert_eq!(score(&days(None, Some("until deleted")), &w), 5);
        let strict = RiskWeights { retention_days: 0, ..w };
        assert_eq!(score(&days(Some(30), None), &strict), 10);
        assert_eq!(score(&days(Some(0), None), &strict), 0);
        assert_eq!(
            RiskFact::Retention.display(&days(Some(30), Some("then deleted"))),
            "30 days (then deleted)"
        );
        assert_eq!(RiskFact::Retention.display(&RiskFacts::default()), "unknown");
    }

    #[test]
    fn changing_a_weight_changes_the_order() {
        let a = RiskFacts { trains_consumer: yes(true), ..safe() };
        let b = RiskFacts { scim: yes(false), ..safe() };
        let w = RiskWeights::default();
        assert!(score(&a, &w) > score(&b, &w));
        let mut w2 = w;
        w2.set(RiskFact::Scim, 50);
        assert!(score(&a, &w2) < score(&b, &w2));
        assert_eq!(w2.weight(RiskFact::Scim), 50);
    }

    #[test]
    fn zero_weights_score_zero_and_display_values() {
        let w = RiskWeights { weights: [0; 9], ..RiskWeights::default() };
        assert_eq!(score(&RiskFacts::default(), &w), 0);
        let f = safe();
        assert_eq!(RiskFact::Soc2.display(&f), "yes");
        assert_eq!(RiskFact::TrainsBusiness.display(&f), "no");
        assert_eq!(RiskFact::DataResidency.display(&f), "EU");
        assert_eq!(RiskFact::Sso.display(&RiskFacts::default()), "unknown");
        for fact in RiskFact::ALL {
            assert_eq!(RiskFact::parse(fact.key()), Some(fact));
        }
        assert!(RiskFacts::default().is_empty());
        assert!(!f.is_empty());
    }
}
