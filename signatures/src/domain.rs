//! Domain names: normalisation, rule validation and the label-boundary suffix matcher.
//!
//! A rule `openai.com` matches `openai.com` and every name below it, on label boundaries only:
//! `api.openai.com` matches, `notopenai.com` and `openai.com.evil.example` do not. The most
//! specific rule wins, so `gemini.google.com` can be Gemini while `google.com` is nobody's.
//!
//! Lookups are the agent's hot path (every DNS name and SNI), so [`DomainMatcher::lookup`]
//! lowercases into a stack buffer and probes one hash table per label boundary, longest suffix
//! first: a name with four labels costs at most four probes and no allocation. Only names with
//! non-ASCII characters take the slower IDNA path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The longest name a DNS message can carry (RFC 1035 section 2.3.4), in bytes.
pub const MAX_NAME_BYTES: usize = 253;

/// Why a domain rule in the catalog sources is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The rule is empty.
    #[error("domain is empty")]
    Empty,
    /// The rule is longer than a DNS name can be.
    #[error("domain is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// The rule has upper-case letters; sources are written normalised.
    #[error("domain must be lowercase")]
    NotLowercase,
    /// The rule has characters outside a-z, 0-9, '-' and '.'.
    #[error(
        "domain has a character outside a-z 0-9 '-' '.' (write internationalised names in punycode)"
    )]
    BadCharacter,
    /// A label is empty, too long, or starts or ends with '-'.
    #[error("label {0:?} is not a valid DNS label")]
    BadLabel(String),
    /// The rule has a single label, which would claim a whole top-level domain.
    #[error("domain needs at least two labels")]
    SingleLabel,
    /// A `*` outside the leftmost label, or more than one.
    #[error("only the leftmost label may hold a '*', and only one")]
    BadWildcard,
}

/// Checks a rule as written in a catalog source and returns it unchanged when valid.
///
/// # Errors
/// Returns the first problem found; see [`RuleError`].
pub fn validate_rule(rule: &str) -> Result<(), RuleError> {
    if rule.is_empty() {
        return Err(RuleError::Empty);
    }
    if rule.len() > MAX_NAME_BYTES {
        return Err(RuleError::TooLong);
    }
    if rule.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(RuleError::NotLowercase);
    }
    if !rule.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.*".contains(&b)) {
        return Err(RuleError::BadCharacter);
    }
    let labels: Vec<&str> = rule.split('.').collect();
    if labels.len() < 2 {
        return Err(RuleError::SingleLabel);
    }
    for (i, label) in labels.iter().enumerate() {
        let stars = label.matches('*').count();
        if stars > 1 || (stars == 1 && i != 0) {
            return Err(RuleError::BadWildcard);
        }
        let bare = label.replace('*', "");
        let bad = label.is_empty()
            || label.len() > 63
            || (stars == 0 && (label.starts_with('-') || label.ends_with('-')))
            || (stars == 1 && bare.is_empty());
        if bad {
            return Err(RuleError::BadLabel((*label).to_owned()));
        }
    }
    Ok(())
}

/// Normalises an observed name: ASCII-lowercased, trailing dot removed, internationalised names
/// converted to their ASCII (punycode) form. Returns `None` for a name that cannot be a domain
/// (empty, too long, or non-ASCII that IDNA rejects).
pub fn normalize(name: &str) -> Option<String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return None;
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed).ok()?
    };
    (!ascii.is_empty() && ascii.len() <= MAX_NAME_BYTES).then_some(ascii)
}

/// A rule's outcome: the rule's owner (an index the caller gives) and which rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainHit<T> {
    /// The value stored with the rule.
    pub value: T,
    /// How many bytes of the normalised name the rule covers: larger is more specific.
    pub specificity: usize,
}

#[derive(Clone, Debug)]
struct Glob<T> {
    prefix: Box<[u8]>,
    suffix: Box<[u8]>,
    value: T,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    own: Option<T>,
    globs: Vec<Glob<T>>,
}

/// The suffix matcher: rules in, most specific match out.
#[derive(Clone, Debug)]
pub struct DomainMatcher<T> {
    map: HashMap<Box<[u8]>, Entry<T>, BuildHasherDefault<FxHasher>>,
}

impl<T: Copy> DomainMatcher<T> {
    /// Builds a matcher from normalised rules (as [`validate_rule`] accepts them). A later rule
    /// with the same pattern replaces an earlier one; the source checker refuses such catalogs.
    pub fn new<'a>(rules: impl IntoIterator<Item = (&'a str, T)>) -> Self {
        let mut map: HashMap<Box<[u8]>, Entry<T>, BuildHasherDefault<FxHasher>> =
            HashMap::default();
        for (rule, value) in rules {
            match rule.split_once('.') {
                Some((first, parent)) if first.contains('*') => {
                    let (prefix, suffix) = first.split_once('*').unwrap_or((first, ""));
                    let entry = map
                        .entry(parent.as_bytes().into())
                        .or_insert_with(|| Entry { own: None, globs: Vec::new() });
                    entry.globs.push(Glob {
                        prefix: prefix.as_bytes().into(),
                        suffix: suffix.as_bytes().into(),
                        value,
                    });
                }
                _ => {
                    map.entry(rule.as_bytes().into())
                        .or_insert_with(|| Entry { own: None, globs: Vec::new() })
                        .own = Some(value);
                }
            }
        }
        Self { map }
    }

    /// Finds the most specific rule covering `name` (any case, optional trailing dot, Unicode
    /// or punycode).
    pub fn lookup(&self, name: &str) -> Option<DomainHit<T>> {
        let bytes = name.as_bytes();
        let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
        if name.is_ascii() {
            let mut buf = [0u8; MAX_NAME_BYTES];
            let lowered = buf.get_mut(..bytes.len())?;
            lowered.copy_from_slice(bytes);
            lowered.make_ascii_lowercase();
            self.lookup_normalized(lowered)
        } else {
            let ascii = normalize(name)?;
            self.lookup_normalized(ascii.as_bytes())
        }
    }

    /// [`Self::lookup`] for a name that is already lowercase ASCII without a trailing dot.
    pub fn lookup_normalized(&self, name: &[u8]) -> Option<DomainHit<T>> {
        if name.is_empty() {
            return None;
        }
        // Walk the label boundaries from the left: the first suffix with a rule is the
        // longest, hence the most specific. `label_start` is where the label to the left of
        // the current suffix begins, which is what a glob rule keyed on that suffix tests.
        let mut start = 0;
        let mut label_start = None;
        loop {
            let suffix = name.get(start..)?;
            if let Some(entry) = self.map.get(suffix) {
                if let Some(ls) = label_start {
                    let label = name.get(ls..start.saturating_sub(1))?;
                    for glob in &entry.globs {
                        if glob_matches(&glob.prefix, &glob.suffix, label) {
                            return Some(DomainHit {
                                value: glob.value,
                                specificity: name.len().saturating_sub(ls),
                            });
                        }
                    }
                }
                if let Some(value) = entry.own {
                    return Some(DomainHit { value, specificity: suffix.len() });
                }
            }
            let dot = suffix.iter().position(|&b| b == b'.')?;
            label_start = Some(start);
            start = start.checked_add(dot)?.checked_add(1)?;
        }
    }

    /// How many distinct rule keys the matcher holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the matcher holds no rules.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn glob_matches(prefix: &[u8], suffix: &[u8], label: &[u8]) -> bool {
    label.len() > prefix.len().saturating_add(suffix.len())
        && label.starts_with(prefix)
        && label.ends_with(suffix)
}

/// The Firefox/rustc hash: a multiply-rotate over words. Domain keys are short and not
/// attacker-chosen at build time (the catalog is ours), and lookups of hostile names only cost
/// a probe each, so a DoS-resistant hash buys nothing here and costs a third of a lookup.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            if let Some(dst) = word.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> DomainMatcher<&'static str> {
        DomainMatcher::new([
            ("openai.com", "chatgpt"),
            ("api.openai.com", "openai-api"),
            ("gemini.google.com", "gemini"),
            ("*-aiplatform.googleapis.com", "vertex"),
            ("aiplatform.googleapis.com", "vertex-global"),
            ("xn--bcher-kva.example", "buecher"),
        ])
    }

    fn check(name: &str, expected: Option<&str>) {
        assert_eq!(matcher().lookup(name).map(|h| h.value), expected, "{name}");
    }

    #[test]
    fn label_boundaries_and_specificity() {
        check("openai.com", Some("chatgpt"));
        check("chat.openai.com", Some("chatgpt"));
        check("api.openai.com", Some("openai-api"));
        check("API.OpenAI.com.", Some("openai-api"));
        check("eu.api.openai.com", Some("openai-api"));
        check("notopenai.com", None);
        check("myopenai.com", None);
        check("openai.com.evil.example", None);
        check("com", None);
        check("gemini.google.com", Some("gemini"));
        check("google.com", None);
        check("mail.google.com", None);
        check("", None);
        check(".", None);
        check("..", None);
    }

    #[test]
    fn glob_label() {
        check("us-central1-aiplatform.googleapis.com", Some("vertex"));
        check("x.us-central1-aiplatform.googleapis.com", Some("vertex"));
        check("-aiplatform.googleapis.com", None);
        check("aiplatform.googleapis.com", Some("vertex-global"));
        check("storage.googleapis.com", None);
    }

    #[test]
    fn internationalised_names_match_their_punycode() {
        check("bücher.example", Some("buecher"));
        check("BÜCHER.example.", Some("buecher"));
        check("www.xn--bcher-kva.example", Some("buecher"));
    }

    #[test]
    fn overlong_names_do_not_match() {
        let long = format!("{}.openai.com", "a".repeat(300));
        check(&long, None);
    }

    #[test]
    fn rule_validation() {
        assert_eq!(validate_rule("openai.com"), Ok(()));
        assert_eq!(validate_rule("*-aiplatform.googleapis.com"), Ok(()));
        assert_eq!(validate_rule("OpenAI.com"), Err(RuleError::NotLowercase));
        assert_eq!(validate_rule("com"), Err(RuleError::SingleLabel));
        assert_eq!(validate_rule("open ai.com"), Err(RuleError::BadCharacter));
        assert_eq!(validate_rule("a..com"), Err(RuleError::BadLabel(String::new())));
        assert_eq!(validate_rule("-a.com"), Err(RuleError::BadLabel("-a".into())));
        assert_eq!(validate_rule("a.*.com"), Err(RuleError::BadWildcard));
        assert_eq!(validate_rule("**.com"), Err(RuleError::BadWildcard));
        assert_eq!(validate_rule("*.com"), Err(RuleError::BadLabel("*".into())));
        assert_eq!(validate_rule("bücher.de"), Err(RuleError::BadCharacter));
        assert_eq!(validate_rule(""), Err(RuleError::Empty));
    }

    #[test]
    fn normalize_forms() {
        assert_eq!(normalize("API.OpenAI.com."), Some("api.openai.com".into()));
        assert_eq!(normalize("bücher.example"), Some("xn--bcher-kva.example".into()));
        assert_eq!(normalize("."), None);
    }
}
