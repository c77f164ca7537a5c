//! Alerts: events about what people care about (a new AI tool, a blocked one back, spend past
//! a threshold) pushed to where they work, durably and exactly once per channel.
//!
//! - [`event`]: the event types, their stable ids, and the events a change causes (pure; the
//!   store calls it inside the change's transaction, which is the outbox).
//! - [`channel`]: the `[[alerts.channel]]` configuration and its checks.
//! - [`render`]: each channel kind's message (webhook JSON with an HMAC signature, Slack Block
//!   Kit, Teams Adaptive Card, OCSF JSON lines, RFC 5424 syslog, Jira issue, email).
//! - [`email`]: the email channel's messages and its SMTP client (STARTTLS or implicit TLS,
//!   `AUTH`).
//! - [`digest`]: email digests (daily or weekly): the schedule, the summary message, and
//!   the claim that makes one collector send each digest once.
//! - [`syslog`]: the syslog channel: RFC 5424 messages over TLS with RFC 5425 framing.
//! - [`deliver`]: the delivery loop of `serve`: per channel, claim due deliveries, send,
//!   record the outcome with backoff, `Retry-After`, caps and quiet periods.
//! - [`rules`]: the periodic rules (spread, stale agents, renewals, spend thresholds), whose
//!   events are keyed by their cause so that re-evaluating never repeats one.

pub mod channel;
pub mod deliver;
pub mod digest;
pub mod email;
pub mod event;
pub mod jira;
pub mod render;
pub mod rules;
pub mod syslog;
