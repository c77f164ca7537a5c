//! Every merchant descriptor in the shipped catalog, checked both ways (issue 17, "a test per
//! new matching rule: positive and near-miss negative for every product with merchant
//! descriptors").
//!
//! The cases are generated from the catalog itself, so a product added tomorrow is covered
//! without editing this file. For each pattern, statement lines as card issuers print them
//! (the pattern as written, lower case, with trailing reference numbers, behind each processor
//! prefix the matcher strips) must name the pattern's product, on the plain lookup and on the
//! expense import's context lookup. Near misses must name nothing: the first word with one
//! letter changed, the first word with a letter glued on, and the pattern after an unrelated
//! merchant's word. Shared descriptors (`rules/merchants.toml`) must stay ambiguous alone and
//! resolve with each rule's context phrase.

use aiscout_signatures::merchant::tokens;
use aiscout_signatures::{Catalog, Index, LineMatch};

fn index() -> Index {
    Index::new(Catalog::builtin().unwrap_or_else(|e| panic!("{e}")))
}

/// Processor prefixes the matcher strips, written as statements show them.
const PREFIXES: &[&str] =
    &["SQ *", "PAYPAL *", "TST* ", "STRIPE*", "PADDLE.NET* ", "GOOGLE *", "Stripe Inc ", "PAYPAL "];

/// Statement lines that must match the pattern's product.
fn positives(pattern: &str) -> Vec<String> {
    let normal = tokens(pattern).join(" ");
    let mut lines = vec![
        pattern.to_owned(),
        pattern.to_ascii_lowercase(),
        format!("{pattern} 8005550100 CA"),
        format!("{pattern} #12345678"),
    ];
    // Behind a processor the pattern is written in its normal form: a pattern that carries its
    // own `*` (`OPENAI *CHATGPT`) would otherwise read as processor `OPENAI`.
    lines.extend(PREFIXES.iter().map(|p| format!("{p}{normal}")));
    lines.push(format!("SQ *{normal} 415-555-0100 CA"));
    lines
}

/// Lines that look like the pattern but are another merchant: they must match nothing.
fn near_misses(pattern: &str) -> Vec<String> {
    let toks = tokens(pattern);
    let Some((first, rest)) = toks.split_first() else { return Vec::new() };
    let rest = rest.join(" ");
    let join =
        |head: &str| if rest.is_empty() { head.to_owned() } else { format!("{head} {rest}") };
    let mut lines = Vec::new();
    // One letter changed: the first letter moved on by one (Z wraps to A).
    if let Some(pos) = first.find(|c: char| c.is_ascii_alphabetic()) {
        let mut changed: Vec<u8> = first.as_bytes().to_vec();
        changed[pos] = if changed[pos] == b'Z' { b'A' } else { changed[pos] + 1 };
        lines.push(join(&String::from_utf8(changed).unwrap()));
    }
    // A longer word that starts with the pattern's first word.
    lines.push(join(&format!("{first}X")));
    // An unrelated merchant whose name contains the pattern.
    lines.push(format!("JOES {} REPAIR", toks.join(" ")));
    lines.push(format!("SQ *THE {}", toks.join(" ")));
    lines
}

#[test]
fn every_merchant_pattern_matches_its_statement_lines_and_no_near_miss() {
    let ix = index();
    let mut failures = Vec::new();
    let mut checked = 0;
    for product in ix.catalog().products() {
        for pattern in &product.merchant_patterns {
            for line in positives(pattern) {
                checked += 1;
                let plain = ix.merchant(&line).map(|m| m.product.id.as_str());
                if plain != Some(product.id.as_str()) {
                    failures.push(format!(
                        "{}: pattern {pattern:?}: {line:?} matched {plain:?}",
                        product.id
                    ));
                }
                match ix.merchant_in_context(&line, "", &[]) {
                    LineMatch::Product(m) if m.product.id == product.id => {}
                    other => failures.push(format!(
                        "{}: pattern {pattern:?}: {line:?} on import was {other:?}",
                        product.id
                    )),
                }
            }
            for line in near_misses(pattern) {
                checked += 1;
                if let Some(m) = ix.merchant(&line) {
                    failures.push(format!(
                        "{}: pattern {pattern:?}: near miss {line:?} over-matched {}",
                        product.id, m.product.id
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} lines wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Guard against the generator silently producing nothing.
    let patterns: usize = ix.catalog().products().iter().map(|p| p.merchant_patterns.len()).sum();
    assert!(patterns > 0 && checked >= patterns * (positives("A B").len() + 4), "{checked}");
}

#[test]
fn every_shared_descriptor_is_ambiguous_alone_and_resolved_by_each_rule() {
    let ix = index();
    let shared = ix.catalog().shared();
    assert!(!shared.is_empty(), "the catalog has shared descriptors (rules/merchants.toml)");
    let mut failures = Vec::new();
    for s in shared {
        let normal = tokens(&s.descriptor).join(" ");
        for line in [s.descriptor.clone(), format!("{normal} 8005550100 CA")] {
            match ix.merchant_in_context(&line, "", &["MONTHLY PLAN"]) {
                LineMatch::Ambiguous { descriptor, .. } if descriptor == s.descriptor => {}
                other => failures.push(format!("{line:?} alone was {other:?}")),
            }
        }
        for near in near_misses(&s.descriptor) {
            // A near miss of the descriptor is not the descriptor, even with a rule's context.
            let context: Vec<&str> =
                s.rules.iter().flat_map(|r| &r.context).map(String::as_str).collect();
            match ix.merchant_in_context(&near, "", &context) {
                LineMatch::Unknown => {}
                other => failures.push(format!("near miss {near:?} was {other:?}")),
            }
        }
        for (i, rule) in s.rules.iter().enumerate() {
            // The phrase of a later rule may also be an earlier rule's: the first rule wins.
            for phrase in &rule.context {
                let first = s
                    .rules
                    .iter()
                    .position(|r| r.context.iter().any(|c| tokens(c) == tokens(phrase)));
                if first != Some(i) {
                    continue;
                }
                let mut cases =
                    vec![(s.descriptor.clone(), format!("subscription {phrase} monthly"))];
                // In the descriptor itself only where normalisation keeps the phrase: trailing
                // numbers and region codes are stripped (`GOOGLE ONE 100 GB` reads `GOOGLE
                // ONE`), so such a phrase resolves from the memo alone.
                let in_descriptor = format!("{normal} {phrase}");
                let kept = tokens(&in_descriptor)
                    .ends_with(&aiscout_signatures::merchant::context_words(phrase));
                if kept {
                    cases.push((in_descriptor, String::new()));
                }
                for (line, memo) in cases {
                    let got = ix.merchant_in_context(&line, "", &[&memo]);
                    let ok = match (&got, &rule.product) {
                        (LineMatch::Product(m), Some(id)) => &m.product.id == id,
                        (LineMatch::NotAi, None) => true,
                        _ => false,
                    };
                    if !ok {
                        failures.push(format!(
                            "{:?} with memo {memo:?}: expected {:?}, got {got:?}",
                            line, rule.product
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
