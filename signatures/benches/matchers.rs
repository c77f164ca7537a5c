//! Matcher throughput against naive baselines in the same run.
//!
//! Domains: a realistic mix where 90% of names match nothing (popular non-AI sites with varied
//! subdomains) and 10% are AI hosts under catalog rules. Baselines: a `regex::RegexSet` of
//! every rule anchored on a label boundary (what a quick implementation would write), and a
//! linear scan of the rules with string suffix tests.
//!
//! Merchants: card descriptors in statement style, 80% not AI. Baseline: a linear scan that
//! upper-cases the descriptor and tests each pattern with `contains`.
//!
//! Run: `cargo bench -p aiscout-signatures --bench matchers`.

// A benchmark has nothing to recover to: setup failures abort it loudly.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aiscout_signatures::{Catalog, Index};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NAMES: usize = 10_000;

/// A tiny deterministic generator (xorshift), so every run sees the same mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const OTHER_SITES: &[&str] = &[
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "youtube.com",
    "facebook.com",
    "fbcdn.net",
    "microsoft.com",
    "office.com",
    "live.com",
    "windows.net",
    "apple.com",
    "icloud.com",
    "amazonaws.com",
    "cloudfront.net",
    "akamaiedge.net",
    "github.com",
    "githubusercontent.com",
    "slack.com",
    "zoom.us",
    "salesforce.com",
    "atlassian.net",
    "okta.com",
    "doubleclick.net",
    "wikipedia.org",
    "reddit.com",
    "linkedin.com",
    "twitter.com",
    "netflix.com",
    "spotify.com",
    "dropbox.com",
    "box.com",
    "example.co.uk",
    "cdn.jsdelivr.net",
    "fastly.net",
    "stripe.com",
];
const SUBS: &[&str] =
    &["www", "api", "cdn", "static", "mail", "login", "eu-west-1", "assets", "img"];

fn domain_mix(ix: &Index) -> Vec<String> {
    let rules: Vec<String> = ix
        .catalog()
        .products()
        .iter()
        .flat_map(|p| p.domains.iter().map(|d| d.pattern.replace('*', "us-east1")))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..NAMES)
        .map(|_| {
            if rng.next().is_multiple_of(10) {
                let rule = rng.pick(&rules);
                if rng.next().is_multiple_of(2) {
                    rule.clone()
                } else {
                    format!("{}.{rule}", rng.pick(SUBS))
                }
            } else {
                let site = rng.pick(OTHER_SITES);
                match rng.next() % 3 {
                    0 => (*site).to_owned(),
                    1 => format!("{}.{site}", rng.pick(SUBS)),
                    _ => {
                        format!("{}-{}.{}.{site}", rng.pick(SUBS), rng.next() % 100, rng.pick(SUBS))
                    }
                }
            }
        })
        .collect()
}

fn merchant_mix(ix: &Index) -> Vec<String> {
    let patterns: Vec<String> =
        ix.catalog().products().iter().flat_map(|p| p.merchant_patterns.clone()).collect();
    let other = [
        "STARBUCKS STORE 12345",
        "AMZN MKTP US*2K4L",
        "UBER *TRIP HELP.UBER.COM",
        "DELTA AIR 0062",
        "SLACK T0123ABC",
        "ZOOM.US 888-799-9666",
        "GOOGLE *GSUITE_ACME",
        "ADOBE *CREATIVE CLD",
        "SQ *BLUE BOTTLE COFFEE",
        "MICROSOFT*STORE",
        "GITHUB",
        "LYFT *RIDE TUE 5PM",
    ];
    let decor = ["", " SUBSCR", " 415-555-0100 CA", " SAN FRANCISCO CA", " *PLUS"];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..NAMES)
        .map(|_| {
            if rng.next().is_multiple_of(5) {
                format!("{}{}", rng.pick(&patterns), rng.pick(&decor))
            } else {
                (*rng.pick(&other)).to_owned()
            }
        })
        .collect()
}

fn bench_domains(c: &mut Criterion) {
    let ix = Index::new(Catalog::builtin().unwrap_or_else(|e| panic!("{e}")));
    let names = domain_mix(&ix);
    let rules: Vec<(String, usize)> = ix
        .catalog()
        .products()
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.domains.iter().map(move |d| (d.pattern.clone(), i)))
        .collect();
    let patterns: Vec<String> = rules
        .iter()
        .map(|(r, _)| {
            format!("(?i)(?:^|\\.){}\\.?$", regex::escape(r).replace("\\*", "[a-z0-9-]*"))
        })
        .collect();
    let set = regex::RegexSet::new(&patterns).unwrap_or_else(|e| panic!("{e}"));

    let mut g = c.benchmark_group("domain_lookup");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("aiscout_index", |b| {
        b.iter(|| names.iter().filter(|n| ix.domain(black_box(n)).is_some()).count())
    });
    g.bench_function("baseline_regex_set", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| {
                    // Most specific wins: the longest matching rule.
                    set.matches(black_box(n)).iter().max_by_key(|&i| rules[i].0.len()).is_some()
                })
                .count()
        })
    });
    g.bench_function("baseline_linear_scan", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| {
                    let n = n.trim_end_matches('.').to_ascii_lowercase();
                    rules
                        .iter()
                        .filter(|(r, _)| !r.contains('*'))
                        .filter(|(r, _)| {
                            n == *r
                                || (n.ends_with(r.as_str())
                                    && n.as_bytes()[n.len() - r.len() - 1] == b'.')
                        })
                        .max_by_key(|(r, _)| r.len())
                        .is_some()
                })
                .count()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("merchant_lookup");
    let descriptors = merchant_mix(&ix);
    let upper_patterns: Vec<String> = ix
        .catalog()
        .products()
        .iter()
        .flat_map(|p| p.merchant_patterns.iter().map(|m| m.to_ascii_uppercase()))
        .collect();
    g.throughput(Throughput::Elements(descriptors.len() as u64));
    g.bench_function("aiscout_index", |b| {
        b.iter(|| descriptors.iter().filter(|d| ix.merchant(black_box(d)).is_some()).count())
    });
    g.bench_function("baseline_linear_contains", |b| {
        b.iter(|| {
            descriptors
                .iter()
                .filter(|d| {
                    let up = black_box(d).to_ascii_uppercase();
                    upper_patterns
                        .iter()
                        .filter(|p| up.contains(p.as_str()))
                        .max_by_key(|p| p.len())
                        .is_some()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_domains);
criterion_main!(benches);
