//! The aiscout agent: network discovery and endpoint inventory, matched against the catalog,
//! spooled durably and uploaded to the collector.
//!
//! Module map, network discovery in data-flow order (capture → decode → match → output):
//! - [`model`]: the nouns every stage shares: [`model::Frame`], [`model::Observation`],
//!   [`model::Timestamp`]. Stages import only this, never each other.
//! - [`capture`]: libpcap, files and live interfaces, and the kernel BPF filter; our own
//!   reader for classic pcap files (`capture::classic`), libpcap for the rest. The only
//!   module that uses `pcap`.
//! - [`decode`]: link types to L4 via etherparse, then DNS, TLS ClientHello (with bounded TCP
//!   reassembly) and QUIC Initial (decryption and CRYPTO reassembly). No IO, no logging;
//!   malformed input is counted, never an error.
//! - [`matching`]: the catalog index (built-in or a verified signed artifact); the only
//!   stage that decides an observation is a product.
//! - [`attribution`]: the owning process of a matched flow, through `/proc` (Linux).
//! - [`pipeline`]: wires the stages for `replay` and `capture` and renders output.
//! - `fuzzing` (hidden): one entry point per cargo-fuzz target.
//!
//! Endpoint inventory and the daemon:
//! - [`inventory`]: installed apps, browser and IDE extensions, command-line tools, MCP
//!   servers, local model stores, processes and listening model runtimes; `watch` reports
//!   installs and removals.
//! - [`spool`]: the durable SQLite queue between matching and upload. The only module that
//!   opens SQLite.
//! - [`upload`]: HTTPS calls to the collector; `upload::tls` is the only place a TLS client
//!   configuration is built.
//! - [`config`]: the TOML configuration, validated with every problem reported at once.
//! - [`identity`]: the device identity and user-name pseudonymisation.
//! - [`daemon`]: `run`: capture and inventory threads feeding the spool, tasks uploading it.
//! - [`service`]: `service`: the daemon under the Windows service control manager (the
//!   control-to-shutdown mapping is plain code; only `service::windows` is Windows-only).
//! - [`status`]: `status`: what this device's agent holds and has sent, for the employee.
//! - [`telemetry`]: the tracing subscriber, installed once by the binary.
//!
//! Key decision: decode is a pure, synchronous state machine fed one frame at a time with
//! hard caps on every table and buffer, so the same code serves replay, live capture, tests
//! and fuzzing, and its memory is bounded by configuration whatever the traffic (DESIGN.md,
//! invariant 4). Our own parsing starts at L7 and reads only through `decode::reader`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod attribution;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod decode;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod inventory;
pub mod matching;
pub mod model;
pub mod pipeline;
pub mod service;
pub mod spool;
pub mod status;
pub mod telemetry;
pub mod upload;
