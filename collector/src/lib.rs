//! The aiscout collector: the server every agent reports to and every reviewer works in.
//!
//! Module map (write path `api -> ingest -> store`; read path `api -> report -> join -> store`):
//! - [`api`]: routing, TLS, connection limits and timeouts (`api::conn`), node-key and
//!   API-token auth, body caps and uploads spooled to disk (`api::upload`), rate limits, the
//!   one mapping from errors to HTTP answers. The only module that knows HTTP.
//! - [`console`]: the web console for people (server-rendered pages, sessions, CSRF, SVG
//!   charts), on the API's listener, reading through the same `join` and `Store` code.
//! - [`ingest`]: sighting batches from the wire into the domain, aggregated per key; expense,
//!   gateway spend and people imports (format detection, normalisation, row errors), and the
//!   watched drop folder (`ingest::drop`).
//! - [`connectors`]: pull connectors (LiteLLM spend logs, the OpenAI and Anthropic admin cost
//!   reports): paged HTTPS pulls with retries and a cursor per connector, stored through the
//!   gateway import's parser and idempotent store path.
//! - [`store`]: the [`store::Store`] trait with SQLite and PostgreSQL backends (the latter
//!   over rustls, `store::postgres_tls`), migrations, transactions and idempotence, and the
//!   permissions of the data folder and database files (`store::files`). The only module that
//!   speaks SQL.
//! - [`join`]: inventory rows, product detail, subscriptions and the reconciliation from
//!   store reads plus the catalog and the directory.
//! - [`report`]: renders the inventory and reconciliation as table, CSV, JSON, HTML or OCSF.
//! - [`review`]: review decisions and the audit records of reviews and token changes.
//! - [`policy`]: the decisions as the policies other tools consume (RPZ, hosts, adblock,
//!   Chrome/Firefox/VS Code policies, Defender indicators, URL lists, osquery): pure functions
//!   from the catalog and the reviews.
//! - [`person`]: a person's rights: access, everything stored about one email, as JSON
//!   (`person export`, `GET /api/v1/people/{email}/export`), from existing store reads; and
//!   erasure (`person erase`, `POST /api/v1/people/{email}/erase`) through `store::erase`.
//! - [`retention`]: `[retention]` periods per kind of data, applied daily by `serve` and by
//!   `retention run`, shown on `/transparency`; the chunked deletes are `store::retention`.
//! - [`credentials`]: node keys and API tokens: generation and SHA-256 hashing.
//! - [`oidc`]: OpenID Connect sign-in for the console: discovery, the authorization code
//!   flow with PKCE, ID token verification (RS256, ES256) and the role from the groups.
//! - [`model`]: the domain nouns handed between those modules.
//! - [`config`]: the TOML file and flags, validated into [`config::Config`] with every
//!   problem named by key path.
//! - [`telemetry`]: the tracing subscriber and the Prometheus counters.
//! - [`mdm`]: `mdm-package`: agent packages and MDM payloads filled in for this collector.
//! - [`cli`]: the `import` and `report` subcommands, returning what `main` prints.
//! - [`client`]: a small HTTPS client (HTTP/1.1 or HTTP/2) for the tests, the benchmarks (the
//!   `aiscout-bench` crate), the
//!   OIDC sign-in and the connectors.
//!
//! Key decision: the collector keeps no state outside the database that another instance
//! would need, so any number of instances can serve one PostgreSQL behind a load balancer.
//! The only in-memory state is per instance by nature: metrics counters and the per-agent
//! rate limiter (so the effective limit behind N instances is up to N times the setting).
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod connectors;
pub mod console;
pub mod credentials;
pub mod fuzzing;
pub mod identity;
pub mod ingest;
pub mod join;
pub mod mdm;
pub mod model;
pub mod oidc;
pub mod person;
pub mod policy;
pub mod report;
pub mod retention;
pub mod review;
pub mod risk;
pub mod scim;
pub mod store;
pub mod telemetry;
