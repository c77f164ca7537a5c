//! Card merchant descriptors: normalisation and the prefix matcher.
//!
//! A statement line such as `PAYPAL *OPENAI *CHATGPT SUBSCR 415-555-0100 CA` says who was paid
//! in the middle of processor noise. [`tokens`] strips that noise the same way for catalog
//! patterns and for descriptors: upper case, punctuation to spaces, a payment processor's
//! prefix (`SQ *`, `PAYPAL *`, `GOOGLE *`, `STRIPE*`), filler words (`COM`, `INC`, `PBC`), and
//! trailing reference numbers, phone numbers and state codes. A pattern then matches when its
//! tokens are the first tokens of the descriptor, and the longest such pattern wins. Matching at
//! the start keeps `CURSOR` from claiming `JOES CURSOR REPAIR`, and leaves a city after the
//! merchant name harmless.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::domain::FxHasher;

/// Descriptors longer than this are cut before tokenising: card networks allow far less.
pub const MAX_DESCRIPTOR_BYTES: usize = 512;

/// Tokens before a `*` that name a payment processor or app store, not the merchant.
const PROCESSORS: &[&str] = &[
    "2CO",
    "APPLE",
    "FS",
    "GOOGLE",
    "GOOGLE PAY",
    "PADDLE",
    "PADDLE NET",
    "PAYPAL",
    "PP",
    "SP",
    "SQ",
    "SQUARE",
    "STRIPE",
    "TST",
];

/// Processor names that lead a descriptor without a `*` (`Stripe Inc CURSOR, AI POWERED IDE`).
const LEADING_PROCESSORS: &[&[&str]] = &[&["STRIPE"], &["PAYPAL"], &["PADDLE", "NET"], &["PADDLE"]];

/// Words that carry no identity: legal forms and web noise.
const FILLER: &[&str] = &["COM", "CORP", "CO", "HTTP", "HTTPS", "INC", "LLC", "LTD", "PBC", "WWW"];

/// US state and territory codes (and a few country codes) that trail descriptors.
const REGION_CODES: &[&str] = &[
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL", "IN",
    "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ",
    "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA",
    "WI", "WV", "WY", "PR", "US", "USA", "GB", "IE", "NL", "SG", "UK",
];

/// Splits a descriptor into its normalised tokens (see the module docs).
pub fn tokens(descriptor: &str) -> Vec<String> {
    let cut = descriptor.get(..MAX_DESCRIPTOR_BYTES.min(descriptor.len())).unwrap_or_else(|| {
        // A multi-byte character straddles the cut: back off to a boundary.
        let mut end = MAX_DESCRIPTOR_BYTES.min(descriptor.len());
        while !descriptor.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        descriptor.get(..end).unwrap_or("")
    });
    let upper = cut.to_ascii_uppercase();
    // A processor prefix is whatever precedes the first '*', when it is a known processor.
    let body = match upper.split_once('*') {
        Some((head, rest)) if PROCESSORS.contains(&words(head).join(" ").as_str()) => rest,
        _ => upper.as_str(),
    };
    let mut out: Vec<String> = words(body).into_iter().map(str::to_owned).collect();
    for lead in LEADING_PROCESSORS {
        let n = lead.len();
        let leads = out.len() > n && out.iter().zip(lead.iter()).all(|(a, b)| a == b);
        if leads {
            out.drain(..n);
            break;
        }
    }
    out.retain(|t| !FILLER.contains(&t.as_str()));
    while let Some(last) = out.last() {
        let noise =
            last.bytes().any(|b| b.is_ascii_digit()) || REGION_CODES.contains(&last.as_str());
        if noise && out.len() > 1 {
            out.pop();
        } else {
            break;
        }
    }
    out
}

/// Context columns (memo, notes, category) longer than this are cut before splitting.
pub const MAX_CONTEXT_BYTES: usize = 2048;

/// Splits a free-text column (a memo, a note, a category) into upper-case words, for the
/// shared-descriptor rules: no processor, filler or trailing-number stripping.
pub fn context_words(text: &str) -> Vec<String> {
    let mut end = MAX_CONTEXT_BYTES.min(text.len());
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    words(text.get(..end).unwrap_or("")).into_iter().map(str::to_ascii_uppercase).collect()
}

fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect()
}

/// Why a merchant pattern in the catalog sources is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// Nothing is left after normalisation.
    #[error("pattern is empty after normalisation")]
    Empty,
    /// The pattern is one word that names a company whose charges are mostly not AI.
    #[error("pattern {0:?} alone would claim charges that are not AI")]
    TooBroad(String),
}

/// Words that must never be a whole pattern.
const TOO_BROAD: &[&str] = &["AMAZON", "APPLE", "GITHUB", "GOOGLE", "MICROSOFT", "META", "AI"];

/// Checks a pattern as written in a catalog source and returns its tokens.
///
/// # Errors
/// See [`PatternError`].
pub fn validate_pattern(pattern: &str) -> Result<Vec<String>, PatternError> {
    let toks = tokens(pattern);
    match toks.as_slice() {
        [] => Err(PatternError::Empty),
        [one] if TOO_BROAD.contains(&one.as_str()) => Err(PatternError::TooBroad(one.clone())),
        _ => Ok(toks),
    }
}

/// Patterns (as token lists, with their values) by first token.
type PatternMap<T> = HashMap<String, Vec<(Vec<String>, T)>, BuildHasherDefault<FxHasher>>;

/// The prefix matcher over normalised tokens.
#[derive(Clone, Debug)]
pub struct MerchantMatcher<T> {
    // Patterns by first token, longest first.
    by_first: PatternMap<T>,
}

impl<T: Copy> MerchantMatcher<T> {
    /// Builds the matcher; patterns that normalise to nothing are ignored (the source checker
    /// refuses them).
    pub fn new<'a>(patterns: impl IntoIterator<Item = (&'a str, T)>) -> Self {
        let mut by_first: PatternMap<T> = HashMap::default();
        for (pattern, value) in patterns {
            let toks = tokens(pattern);
            if let Some(first) = toks.first() {
                by_first.entry(first.clone()).or_default().push((toks, value));
            }
        }
        for list in by_first.values_mut() {
            list.sort_by_key(|(pat, _)| std::cmp::Reverse(pat.len()));
        }
        Self { by_first }
    }

    /// The value of the longest pattern that starts the descriptor.
    pub fn lookup(&self, descriptor: &str) -> Option<T> {
        let toks = tokens(descriptor);
        self.lookup_tokens(&toks)
    }

    /// [`Self::lookup`] for a descriptor already split by [`tokens`].
    pub fn lookup_tokens(&self, toks: &[String]) -> Option<T> {
        let list = self.by_first.get(toks.first()?)?;
        list.iter().find(|(pat, _)| toks.starts_with(pat)).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> String {
        tokens(s).join(" ")
    }

    #[test]
    fn normalisation() {
        assert_eq!(toks("OPENAI *CHATGPT SUBSCR"), "OPENAI CHATGPT SUBSCR");
        assert_eq!(toks("openai *chatgpt subscr 415-555-0100 CA"), "OPENAI CHATGPT SUBSCR");
        assert_eq!(toks("PAYPAL *OPENAI"), "OPENAI");
        assert_eq!(toks("SQ *CURSOR"), "CURSOR");
        assert_eq!(toks("GOOGLE *ChatGPT"), "CHATGPT");
        assert_eq!(toks("Stripe Inc CURSOR, AI POWERED IDE"), "CURSOR AI POWERED IDE");
        assert_eq!(toks("STRIPE*ANTHROPIC"), "ANTHROPIC");
        assert_eq!(toks("ANTHROPIC PBC"), "ANTHROPIC");
        assert_eq!(toks("OPENAI.COM/CHATGPT"), "OPENAI CHATGPT");
        assert_eq!(toks("CLAUDE.AI SUBSCRIPTION"), "CLAUDE AI SUBSCRIPTION");
        assert_eq!(toks("GITHUB"), "GITHUB");
        assert_eq!(toks("  "), "");
        assert_eq!(toks("ÉLEVEN ™ LABS"), "LEVEN LABS");
    }

    #[test]
    fn prefix_match_longest_wins() {
        let m = MerchantMatcher::new([
            ("OPENAI", "api"),
            ("OPENAI CHATGPT", "chatgpt"),
            ("CHATGPT", "chatgpt"),
            ("CURSOR", "cursor"),
        ]);
        assert_eq!(m.lookup("OPENAI *CHATGPT SUBSCR"), Some("chatgpt"));
        assert_eq!(m.lookup("OPENAI"), Some("api"));
        assert_eq!(m.lookup("OPENAI *API 123456"), Some("api"));
        assert_eq!(m.lookup("JOES CURSOR REPAIR"), None);
        assert_eq!(m.lookup("GITHUB"), None);
        assert_eq!(m.lookup(""), None);
    }

    #[test]
    fn broad_patterns_are_refused() {
        assert_eq!(validate_pattern("GITHUB"), Err(PatternError::TooBroad("GITHUB".into())));
        assert_eq!(validate_pattern("google *"), Err(PatternError::Empty));
        assert_eq!(validate_pattern("..."), Err(PatternError::Empty));
        assert!(validate_pattern("GITHUB *COPILOT").is_ok());
    }

    #[test]
    fn long_multibyte_descriptors_are_cut_on_a_boundary() {
        let s = "é".repeat(400);
        assert!(tokens(&s).is_empty());
    }
}
