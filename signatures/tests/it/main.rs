//! Integration tests of the catalog crate: the shipped catalog, the matchers on it, and
//! property tests of the domain matcher against a naive reference.
#![allow(clippy::disallowed_methods)]
// Reason: test code opens and reads its own fixtures and databases.

// Test helpers fail loudly; clippy.toml allows this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod builtin;
mod domain_props;
mod fuzz_regressions;
mod merchants;
