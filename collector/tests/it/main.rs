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
mod backup;
mod bypass;
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
mod overlay;
mod policy;
mod process;
mod risk;
mod scim;
mod store;
mod syslog;
mod teach;
mod upgrade;

/// The stderr of a `check-config` run that must fail (exit 2) with `count` problems, each of
/// `keys` named on its own line (`  alerts.channel[0].url: ...`).
fn assert_config_problems(out: &std::process::Output, count: usize, keys: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(&format!("{count} configuration problem(s)")), "{err}");
    for key in keys {
        assert!(err.contains(&format!("  {key}")), "{key} missing from:\n{err}");
    }
    err
}
