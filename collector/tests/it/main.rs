//! Integration tests of the collector: the store conformance suite on both backends, the
//! imports of the bundled examples on both backends, the HTTPS API end to end, the
//! OpenID Connect sign-in against a real OpenID Provider (tests/oidc), and the policy exports
//! against a real Unbound.

#![allow(clippy::disallowed_methods)]
// Reason: test code opens and reads its own fixtures and databases.
// Test helpers (not #[test] fns) unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod alerts;
mod api;
mod connectors;
mod console;
mod drop;
mod email;
mod enroll;
mod fuzz_regressions;
mod harden;
mod import;
mod mapping;
mod mdm;
mod oidc;
mod policy;
mod process;
mod scim;
mod store;
mod syslog;
