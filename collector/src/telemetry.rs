//! Logs (tracing, text or JSON) and the Prometheus counters served at `/metrics`.
//!
//! Counters are per instance by nature: a scraper sums them over instances. Labels have
//! bounded values only (status classes, outcomes), never an agent, product or user.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once: `RUST_LOG` filter (default `info`), text or JSON on
/// stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests start several servers) keeps the first subscriber.
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    drop(installed);
}

/// The collector's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class (2xx, 3xx, 4xx, 5xx).
    pub responses: [AtomicU64; 4],
    /// Batches committed.
    pub batches_stored: AtomicU64,
    /// Batches acknowledged as replays.
    pub batches_duplicate: AtomicU64,
    /// Sightings committed (before aggregation).
    pub sightings: AtomicU64,
    /// Enrollments.
    pub enrollments: AtomicU64,
    /// Heartbeats.
    pub heartbeats: AtomicU64,
    /// Reads of the stored organisation overlay's document (each validated against the
    /// catalog): one per new overlay version, not one per use (issue 17).
    pub overlay_loads: AtomicU64,
    /// Requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Enrollments refused for a wrong enroll secret.
    pub enroll_bad_secret: AtomicU64,
    /// Enrollments refused with 429 because their source address sent too many wrong secrets.
    pub enroll_throttled: AtomicU64,
    /// Re-enrollments of a known host id refused by the `require_key` policy (takeovers).
    pub enroll_takeover_refused: AtomicU64,
    /// Re-enrollments of a known host id held for an admin by the `hold` policy.
    pub enroll_held: AtomicU64,
    /// Store calls that failed.
    pub store_errors: AtomicU64,
    /// Store calls timed.
    pub store_calls: AtomicU64,
    /// Microseconds spent in timed store calls.
    pub store_micros: AtomicU64,
    /// Connections: accepted, refused at a cap, timed out (shared with the accept loop).
    pub connections: Arc<crate::api::Counters>,
    /// The pull connectors' counters (shared with their scheduled runs).
    pub connectors: Arc<crate::connectors::Stats>,
    /// SCIM changes written: resources created, updated (PUT or PATCH) and deleted.
    pub scim_changes: [AtomicU64; 3],
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Counts one response.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).saturating_sub(2).min(3);
        if let Some(c) = self.responses.get(class) {
            add(c, 1);
        }
    }

    /// Counts one store call and its latency.
    pub fn store_call(&self, elapsed: std::time::Duration, ok: bool) {
        add(&self.store_calls, 1);
        add(&self.store_micros, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        if !ok {
            add(&self.store_errors, 1);
        }
    }

    /// Increments a counter by `n`.
    pub fn inc(counter: &AtomicU64, n: u64) {
        add(counter, n);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let [r2, r3, r4, r5] = &self.responses;
        counter(
            "aiscout_collector_responses_total",
            "HTTP responses by status class.",
            &[
                ("{class=\"2xx\"}", get(r2)),
                ("{class=\"3xx\"}", get(r3)),
                ("{class=\"4xx\"}", get(r4)),
                ("{class=\"5xx\"}", get(r5)),
            ],
        );
        counter(
            "aiscout_collector_batches_total",
            "Sighting batches acknowledged.",
            &[
                ("{outcome=\"stored\"}", get(&self.batches_stored)),
                ("{outcome=\"duplicate\"}", get(&self.batches_duplicate)),
            ],
        );
        counter(
            "aiscout_collector_sightings_total",
            "Sightings committed.",
            &[("", get(&self.sightings))],
        );
        counter(
            "aiscout_collector_enrollments_total",
            "Agent enrollments.",
            &[("", get(&self.enrollments))],
        );
        counter(
            "aiscout_collector_enrollments_refused_total",
            "Enrollments refused: wrong enroll secret, throttled source address (429), \
             re-enrollment of a known host id without its node key, or held for an admin.",
            &[
                ("{reason=\"secret\"}", get(&self.enroll_bad_secret)),
                ("{reason=\"throttled\"}", get(&self.enroll_throttled)),
                ("{reason=\"takeover\"}", get(&self.enroll_takeover_refused)),
                ("{reason=\"held\"}", get(&self.enroll_held)),
            ],
        );
        counter(
            "aiscout_collector_heartbeats_total",
            "Agent heartbeats.",
            &[("", get(&self.heartbeats))],
        );
        counter(
            "aiscout_collector_overlay_loads_total",
            "Reads and validations of the stored organisation overlay (one per new version).",
            &[("", get(&self.overlay_loads))],
        );
        counter(
            "aiscout_collector_rate_limited_total",
            "Requests refused with 429.",
            &[("", get(&self.rate_limited))],
        );
        let [created, updated, deleted] = &self.scim_changes;
        counter(
            "aiscout_collector_scim_changes_total",
            "SCIM resources (users and groups) created, updated and deleted by the directory.",
            &[
                ("{op=\"create\"}", get(created)),
                ("{op=\"update\"}", get(updated)),
                ("{op=\"delete\"}", get(deleted)),
            ],
        );
        counter(
            "aiscout_collector_store_errors_total",
            "Store calls that failed.",
            &[("", get(&self.store_errors))],
        );
        counter(
            "aiscout_collector_store_calls_total",
            "Store calls timed.",
            &[("", get(&self.store_calls))],
        );
        counter(
            "aiscout_collector_store_microseconds_total",
            "Time spent in store calls (divide by store_calls_total for the mean).",
            &[("", get(&self.store_micros))],
        );
        let c = &self.connections;
        counter(
            "aiscout_collector_connections_total",
            "Connections by what became of them at the door.",
            &[
                ("{outcome=\"accepted\"}", get(&c.accepted)),
                ("{outcome=\"refused_total_cap\"}", get(&c.refused_total)),
                ("{outcome=\"refused_address_cap\"}", get(&c.refused_per_ip)),
            ],
        );
        counter(
            "aiscout_collector_connection_timeouts_total",
            "Connections closed for taking too long.",
            &[
                ("{step=\"handshake\"}", get(&c.handshake_timeouts)),
                ("{step=\"headers\"}", get(&c.header_timeouts)),
                ("{step=\"idle\"}", get(&c.idle_closed)),
            ],
        );
        out.push_str(&format!(
            "# HELP aiscout_collector_connections_open Connections holding a slot now.\n\
             # TYPE aiscout_collector_connections_open gauge\n\
             aiscout_collector_connections_open {}\n",
            get(&c.open)
        ));
        out.push_str(&self.connectors.render());
        out
    }
}
