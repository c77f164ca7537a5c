//! The domain matcher against a naive reference: a linear scan over every rule that checks the
//! label-boundary suffix by string comparison and keeps the longest hit.

use aiscout_signatures::domain::DomainMatcher;
use proptest::prelude::*;

/// The reference: for each rule, does it cover the name, and how many bytes does it cover?
fn naive(rules: &[(String, usize)], name: &str) -> Option<usize> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    // (covered bytes, exact rather than glob, value): an exact rule wins a tie with a glob.
    let mut best: Option<((usize, bool), usize)> = None;
    for (rule, value) in rules {
        let covered =
            if let Some((first, parent)) = rule.split_once('.').filter(|(f, _)| f.contains('*')) {
                let (pre, suf) = first.split_once('*').unwrap();
                // The label immediately left of `parent`, and everything it covers.
                name.strip_suffix(parent).and_then(|left| left.strip_suffix('.')).and_then(|left| {
                    let label = left.rsplit('.').next().unwrap();
                    let ok = label.len() > pre.len() + suf.len()
                        && label.starts_with(pre)
                        && label.ends_with(suf);
                    ok.then(|| (label.len() + 1 + parent.len(), false))
                })
            } else if name == *rule || name.ends_with(&format!(".{rule}")) {
                Some((rule.len(), true))
            } else {
                None
            };
        if let Some(len) = covered
            && best.is_none_or(|(b, _)| len > b)
        {
            best = Some((len, *value));
        }
    }
    best.map(|(_, v)| v)
}

fn label() -> impl Strategy<Value = String> {
    // A tiny alphabet makes overlaps between rules and names likely.
    prop::sample::select(vec!["a", "b", "ab", "ai", "com", "openai", "api", "x-ai", "b-a"])
        .prop_map(str::to_owned)
}

fn plain_rule() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..4).prop_map(|l| l.join("."))
}

fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => plain_rule(),
        1 => (plain_rule(), prop::sample::select(vec!["*-ai", "a*", "*"]))
            .prop_filter("a bare * is not a valid rule", |(_, g)| *g != "*")
            .prop_map(|(r, g)| format!("{g}.{r}")),
    ]
}

fn name() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..6), any::<bool>(), any::<bool>()).prop_map(
        |(l, upper, dot)| {
            let mut n = l.join(".");
            if upper {
                n = n.to_ascii_uppercase();
            }
            if dot {
                n.push('.');
            }
            n
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_naive_reference(
        rules in prop::collection::vec(rule(), 0..12),
        names in prop::collection::vec(name(), 1..20),
    ) {
        // Duplicate patterns are refused by the source checker; keep the first of each here.
        let mut unique: Vec<(String, usize)> = Vec::new();
        for (i, r) in rules.into_iter().enumerate() {
            if !unique.iter().any(|(u, _)| *u == r) {
                unique.push((r, i));
            }
        }
        let matcher = DomainMatcher::new(unique.iter().map(|(r, v)| (r.as_str(), *v)));
        for n in &names {
            prop_assert_eq!(matcher.lookup(n).map(|h| h.value), naive(&unique, n), "name {}", n);
        }
    }
}
