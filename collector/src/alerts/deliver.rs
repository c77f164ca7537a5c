//! Delivery: one task per channel in `serve`, claiming due deliveries from the outbox,
//! sending each, and recording the outcome.
//!
//! - **At least once, with one id.** A delivery is claimed under a lease; a collector that
//!   dies mid-attempt leaves the lease to run out, and the next claimer sends it again with the
//!   same event id (`Idempotency-Key`), which receivers use to drop the repeat.
//! - **Backoff.** A failed attempt is retried after `2^attempts` seconds (at most 10 minutes),
//!   with equal jitter; `429` and `503` are retried after their `Retry-After` (at most an hour).
//!   `give_up_after` after the delivery was queued it is marked failed, with an audit entry.
//! - **Isolation.** Each channel has its own task, so a slow or failing receiver holds back
//!   only its own channel; ingest never waits on delivery (the outbox write is part of the
//!   change's transaction, and nothing else).
//! - **Noise control.** `max_per_day` deliveries a channel a calendar day (UTC), and a `quiet`
//!   period per (event type, product): what is held back is marked `capped`, and counted on
//!   `/alerts`. Both are decided by [`Store::admit_deliveries`] just before the send, for a
//!   round's deliveries at once and one round of a channel at a time across all collectors,
//!   and an admitted delivery keeps
//!   its place while in flight, so neither a round's concurrent attempts nor several
//!   collectors can pass the cap.
//! - **Digests** that the SMTP server refuses are tried again after the same backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aiscout_signatures::Catalog;
use hyper::Method;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::pem::PemObject as _;

use super::channel::{Channel, Settings};
use super::digest;
use super::email::SmtpError;
use super::render::{self, About};
use crate::client;
use aiscout_wire::UnixSecs;

use crate::model::{Admit, AdmitRule, Attempt, AuditRecord, ChannelRow, Claimed, UsageFilter};
use crate::store::{self, Store, StoreError};

/// How long a claim is held before another collector may take it over.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long one send may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one SMTP session may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A digest channel looks for a due digest every this many delivery rounds.
const DIGEST_EVERY: u64 = 20;
/// How often an idle channel looks for due deliveries.
pub const POLL: Duration = Duration::from_millis(500);
/// Deliveries claimed at once (and sent concurrently) per channel.
pub const BATCH: i64 = 16;
/// Largest answer body read from a receiver.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest backoff between two attempts.
const MAX_BACKOFF: i64 = 600;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: i64 = 3_600;

/// What a channel's task needs.
pub struct Deliverer<S> {
    store: S,
    catalog: Catalog,
    console_url: String,
    claimer: String,
    rng: SystemRandom,
    clock: Clock,
    policy: crate::policy::Settings,
}

/// What the deliverer takes as the time (Unix seconds): [`store::now`] in `serve`, a chosen
/// time in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Why a digest was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestFailure {
    /// The SMTP session failed or was refused.
    #[error("{0}")]
    Smtp(SmtpError),
    /// No answer within [`SMTP_TIMEOUT`].
    #[error("no SMTP answer in time")]
    Timeout,
}

/// How a digest round ended.
#[derive(Debug)]
pub enum DigestOutcome {
    /// No period has ended [`digest::GRACE`] ago that this deliverer has not handled.
    NotDue,
    /// Sent already, or claimed by another collector whose lease runs.
    NotMine,
    /// Nothing was held or capped in the period: recorded as sent, no message.
    Empty,
    /// Sent, listing this many events.
    Sent(usize),
    /// Not accepted; retried on a later round.
    Failed(DigestFailure),
}

impl<S: Store + Clone + Send + Sync + 'static> Deliverer<S> {
    /// A deliverer that links to `console_url`.
    ///
    /// # Errors
    /// The system's random source failed (the claimer id is random).
    pub fn new(
        store: S,
        catalog: Catalog,
        console_url: String,
    ) -> Result<Self, crate::credentials::RandomError> {
        let claimer = crate::credentials::generate("claim")?;
        let clock: Clock = Arc::new(store::now);
        Ok(Self {
            store,
            catalog,
            console_url,
            claimer,
            rng: SystemRandom::new(),
            clock,
            policy: crate::policy::Settings::default(),
        })
    }

    /// The same deliverer, coaching with the organisation's `[policy]` settings: a digest
    /// that lists a blocked or unsanctioned product says "Use X instead" in its words.
    #[must_use]
    pub fn with_policy(mut self, policy: crate::policy::Settings) -> Self {
        self.policy = policy;
        self
    }

    /// The same deliverer, taking the time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Makes the configured channels the active ones, then runs one task per channel until
    /// the returned handles are aborted.
    ///
    /// # Errors
    /// The channels could not be recorded.
    pub async fn start(
        self,
        settings: &Settings,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
        let rows = settings
            .channels
            .iter()
            .map(|c| ChannelRow {
                name: c.name.clone(),
                kind: c.kind.name().to_owned(),
                events: c.events.clone(),
            })
            .collect();
        self.store.sync_channels(rows, store::now()).await?;
        let me = Arc::new(self);
        let mut tasks = Vec::new();
        for channel in settings.channels.iter().cloned() {
            let me = Arc::clone(&me);
            tasks.push(tokio::spawn(async move { me.run(channel).await }));
        }
        Ok(tasks)
    }

    async fn run(self: Arc<Self>, channel: Channel) {
        let tls = match tls_for(&channel) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!(channel = %channel.name, error = %e, "The alert channel cannot start.");
                return;
            }
        };
        let channel = Arc::new(channel);
        let mut rounds: u64 = 0;
        loop {
            if channel.digest.is_some() && rounds.is_multiple_of(DIGEST_EVERY) {
                match self.digest_round(&channel, &tls).await {
                    Ok(DigestOutcome::Failed(error)) => tracing::warn!(
                        channel = %channel.name, %error, "An alert digest was not sent; it is retried."
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        channel = %channel.name, error = %e, "An alert digest round failed."
                    ),
                }
            }
            rounds = rounds.wrapping_add(1);
            match self.round(&channel, &tls).await {
                Ok(0) => tokio::time::sleep(POLL).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(channel = %channel.name, error = %e, "Alert delivery round failed.");
                    tokio::time::sleep(POLL * 4).await;
                }
            }
        }
    }

    /// Sends the digest of the channel's latest period that ended [`digest::GRACE`] ago, if no
    /// collector sent it yet and none holds its claim.
    ///
    /// # Errors
    /// The store failed.
    pub async fn digest_round(
        &self,
        channel: &Channel,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<DigestOutcome, StoreError> {
        let (Some(schedule), Some(settings)) = (channel.digest, &channel.email) else {
            return Ok(DigestOutcome::NotDue);
        };
        let now = self.now();
        let end = schedule.period_end(now - digest::GRACE);
        let lease = i64::try_from(LEASE.as_secs()).unwrap_or(60);
        let Some(claim) = self
            .store
            .claim_digest(channel.name.clone(), end, self.claimer.clone(), now, now + lease)
            .await?
        else {
            return Ok(DigestOutcome::NotMine);
        };
        let previous = claim.previous.map(UnixSecs::get);
        let from = previous.unwrap_or(end - schedule.length());
        let held =
            self.store.channel_events(channel.name.clone(), "held".into(), from, end).await?;
        let capped =
            self.store.channel_events(channel.name.clone(), "capped".into(), from, end).await?;
        if held.is_empty() && capped.is_empty() {
            self.store.digest_sent(channel.name.clone(), end, self.claimer.clone(), now, 0).await?;
            return Ok(DigestOutcome::Empty);
        }
        let reviews = self.store.reviews().await?;
        let coaching =
            digest::coaching(&self.catalog, &reviews, &self.policy, held.iter().chain(&capped));
        let message = digest::message(
            settings,
            &channel.name,
            from,
            end,
            &held,
            &capped,
            &coaching,
            &self.console_url,
            now,
        );
        let sent = tokio::time::timeout(
            SMTP_TIMEOUT,
            super::email::send(settings, channel.secret.as_ref(), Arc::clone(tls), &message),
        )
        .await;
        let refused = match sent {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(DigestFailure::Smtp(e)),
            Err(_) => Some(DigestFailure::Timeout),
        };
        if let Some(error) = refused {
            // Released until the next backoff step, for whichever collector comes first.
            let retry_at = self.now() + self.backoff(claim.attempts);
            self.store
                .digest_failed(channel.name.clone(), end, self.claimer.clone(), retry_at)
                .await?;
            return Ok(DigestOutcome::Failed(error));
        }
        let n = i64::try_from(held.len()).unwrap_or(i64::MAX);
        if !self
            .store
            .digest_sent(channel.name.clone(), end, self.claimer.clone(), self.now(), n)
            .await?
        {
            tracing::warn!(channel = %channel.name, "A digest's claim ran out while it was sent.");
        }
        Ok(DigestOutcome::Sent(held.len()))
    }

    /// Claims the channel's due deliveries and attempts each; says how many were claimed.
    ///
    /// # Errors
    /// The store failed.
    pub async fn round(
        self: &Arc<Self>,
        channel: &Arc<Channel>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<usize, StoreError> {
        let now = self.now();
        let lease = i64::try_from(LEASE.as_secs()).unwrap_or(60);
        let claimed = self
            .store
            .claim_deliveries(channel.name.clone(), self.claimer.clone(), now, now + lease, BATCH)
            .await?;
        let n = claimed.len();
        // What is known about each product is read once a round, not once an event: on
        // PostgreSQL that read (review, reach) was most of an attempt's time.
        let mut abouts: HashMap<&str, Result<Option<About>, Arc<StoreError>>> = HashMap::new();
        for c in &claimed {
            let product = c.event.event.product.as_str();
            if !abouts.contains_key(product) {
                let about = self.about(product).await.map_err(Arc::new);
                abouts.insert(product, about);
            }
        }
        let abouts: HashMap<String, Result<Option<About>, Arc<StoreError>>> =
            abouts.into_iter().map(|(p, a)| (p.to_owned(), a)).collect();
        // The channel's filters, then its cap and quiet period for the whole round in one
        // admission (one lock of the channel, not one per delivery).
        let mut early: Vec<Option<Attempt>> = Vec::with_capacity(n);
        let mut known: Vec<Option<About>> = Vec::with_capacity(n);
        for c in &claimed {
            let about = abouts.get(&c.event.event.product).cloned().unwrap_or(Ok(None));
            match about {
                Err(err) => {
                    let error = format!("reading the store: {err}");
                    early.push(Some(self.retry(channel, c, now, None, None, error)));
                    known.push(None);
                }
                Ok(about) => {
                    early.push(filtered(channel, about.as_ref()));
                    known.push(about);
                }
            }
        }
        let gated: Vec<usize> = (0..n)
            .filter(|&i| early[i].is_none() && claimed[i].event.event.kind != super::event::TEST)
            .collect();
        if !gated.is_empty() {
            let quiet_since = channel
                .quiet
                .map(|q| UnixSecs(now - i64::try_from(q.as_secs()).unwrap_or(i64::MAX / 2)));
            let rule = AdmitRule { max_per_day: i64::from(channel.max_per_day), quiet_since };
            let asked: Vec<Claimed> = gated.iter().map(|&i| claimed[i].clone()).collect();
            match self.store.admit_deliveries(asked, self.claimer.clone(), now, rule).await {
                Ok(answers) => {
                    for (&i, answer) in gated.iter().zip(answers) {
                        early[i] = match answer {
                            Admit::Admitted => None,
                            Admit::Capped(reason) => Some(Attempt::Capped { reason }),
                            // Another collector holds it now; `finish` will not touch its row.
                            Admit::Lost => Some(self.retry(
                                channel,
                                &claimed[i],
                                now,
                                None,
                                None,
                                "the claim ran out".into(),
                            )),
                        };
                    }
                }
                Err(err) => {
                    for &i in &gated {
                        let error = format!("reading the store: {err}");
                        early[i] = Some(self.retry(channel, &claimed[i], now, None, None, error));
                    }
                }
            }
        }
        let mut sends = tokio::task::JoinSet::new();
        for ((c, early), about) in claimed.into_iter().zip(early).zip(known) {
            let me = Arc::clone(self);
            let channel = Arc::clone(channel);
            let tls = Arc::clone(tls);
            sends.spawn(async move {
                let attempt = match early {
                    Some(attempt) => attempt,
                    None => me.send(&channel, &tls, &c, about).await,
                };
                me.finish(&channel, c, attempt).await
            });
        }
        while let Some(done) = sends.join_next().await {
            match done {
                Ok(result) => result?,
                Err(e) => return Err(StoreError::Join(e)),
            }
        }
        Ok(n)
    }

    async fn finish(
        &self,
        channel: &Channel,
        c: Claimed,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let audit = match &attempt {
            Attempt::Failed { status, error } => Some(AuditRecord {
                at: UnixSecs(now),
                actor: "alerts".into(),
                action: "alert.failed".into(),
                subject: format!("{}:{}", channel.name, c.event.event.id),
                before: None,
                after: Some(
                    serde_json::json!({ "type": c.event.event.kind, "attempts": c.attempts + 1,
                                        "status": status, "error": error })
                    .to_string(),
                ),
            }),
            _ => None,
        };
        match &attempt {
            Attempt::Failed { error, .. } => tracing::warn!(
                channel = %channel.name, event = %c.event.event.id, %error,
                "An alert delivery was given up."
            ),
            Attempt::Retry { error, .. } => tracing::info!(
                channel = %channel.name, event = %c.event.event.id, %error,
                "An alert delivery will be retried."
            ),
            _ => {}
        }
        let held = self.store.finish_delivery(c, self.claimer.clone(), attempt, audit, now).await?;
        if !held {
            tracing::debug!(channel = %channel.name, "A lease ran out before its attempt ended.");
        }
        Ok(())
    }

    /// One attempt of a delivery its channel's filters and limits let through.
    async fn send(
        &self,
        channel: &Channel,
        tls: &Arc<rustls::ClientConfig>,
        c: &Claimed,
        about: Option<About>,
    ) -> Attempt {
        let now = self.now();
        let e = &c.event.event;
        // A test event of a digest channel goes out at once, so an admin sees the channel work.
        if channel.digest.is_some() && e.kind != super::event::TEST {
            return Attempt::Held;
        }
        if channel.kind == super::channel::Kind::Jira {
            let retry = |status, after, error| self.retry(channel, c, now, status, after, error);
            return super::jira::send(
                &self.store,
                channel,
                tls,
                c,
                about.as_ref(),
                &self.console_url,
                retry,
            )
            .await;
        }
        if let Some(settings) = &channel.email {
            let message =
                super::email::event_message(settings, e, about.as_ref(), &self.console_url, now);
            let sent = tokio::time::timeout(
                SMTP_TIMEOUT,
                super::email::send(settings, channel.secret.as_ref(), Arc::clone(tls), &message),
            )
            .await;
            return match sent {
                Ok(Ok(())) => Attempt::Delivered { status: 250 },
                Ok(Err(e)) if e.is_permanent() => {
                    Attempt::Failed { status: e.code().map(i64::from), error: e.to_string() }
                }
                Ok(Err(e)) => {
                    self.retry(channel, c, now, e.code().map(i64::from), None, e.to_string())
                }
                Err(_) => self.retry(
                    channel,
                    c,
                    now,
                    None,
                    None,
                    format!("no SMTP answer within {} s", SMTP_TIMEOUT.as_secs()),
                ),
            };
        }
        if let Some(settings) = &channel.syslog {
            let host = self.console_url.parse::<hyper::Uri>().ok();
            let host = host.as_ref().and_then(hyper::Uri::host).unwrap_or("aiscout");
            let message = super::syslog::message(e, about.as_ref(), &self.console_url, host);
            let sent = tokio::time::timeout(
                SEND_TIMEOUT,
                super::syslog::send(settings, Arc::clone(tls), &message),
            )
            .await;
            return match sent {
                Ok(Ok(())) => Attempt::Delivered { status: 0 },
                Ok(Err(error)) => self.retry(channel, c, now, None, None, error.to_string()),
                Err(_) => self.retry(
                    channel,
                    c,
                    now,
                    None,
                    None,
                    format!("not sent within {} s", SEND_TIMEOUT.as_secs()),
                ),
            };
        }
        let secret = channel.secret.as_ref().map(|s| s.expose());
        let message =
            render::message(channel.kind, e, about.as_ref(), &self.console_url, secret, now);
        let sent = tokio::time::timeout(
            SEND_TIMEOUT,
            client::fetch(
                Arc::clone(tls),
                Method::POST,
                &channel.url,
                &message.headers,
                message.body,
                MAX_ANSWER,
            ),
        )
        .await;
        let response = match sent {
            Err(_) => {
                return self.retry(
                    channel,
                    c,
                    now,
                    None,
                    None,
                    format!("no answer within {} s", SEND_TIMEOUT.as_secs()),
                );
            }
            Ok(Err(err)) => return self.retry(channel, c, now, None, None, err.to_string()),
            Ok(Ok(r)) => r,
        };
        let status = i64::from(response.status.as_u16());
        if response.status.is_success() {
            return Attempt::Delivered { status };
        }
        let retry_after = response
            .headers
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|s| s.clamp(0, MAX_RETRY_AFTER));
        let error = format!("the receiver answered {}", response.status);
        match status {
            408 | 425 | 429 | 500..=599 => {
                self.retry(channel, c, now, Some(status), retry_after, error)
            }
            _ => Attempt::Failed { status: Some(status), error },
        }
    }

    /// A retry at the next backoff step (or after `retry_after`), or a failure once the
    /// channel's `give_up_after` has passed since the delivery was queued.
    fn retry(
        &self,
        channel: &Channel,
        c: &Claimed,
        now: i64,
        status: Option<i64>,
        retry_after: Option<i64>,
        error: String,
    ) -> Attempt {
        let give_up = c
            .created_at
            .add_secs(i64::try_from(channel.give_up_after.as_secs()).unwrap_or(i64::MAX / 2))
            .get();
        let delay = retry_after.unwrap_or_else(|| self.backoff(c.attempts));
        if now + delay > give_up {
            return Attempt::Failed {
                status,
                error: format!("{error}; gave up after {} attempts", c.attempts + 1),
            };
        }
        Attempt::Retry { at: UnixSecs(now + delay), status, error }
    }

    /// `2^attempts` seconds, at most [`MAX_BACKOFF`], with equal jitter (half fixed, half
    /// random), so that receivers coming back are not hit by every collector at once.
    fn backoff(&self, attempts: i64) -> i64 {
        let full = 1_i64
            .checked_shl(u32::try_from(attempts.clamp(0, 30)).unwrap_or(30))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        let mut byte = [0u8; 1];
        let random = if self.rng.fill(&mut byte).is_ok() { i64::from(byte[0]) } else { 128 };
        let half = full / 2;
        (half + (full - half) * random / 255).max(1)
    }

    /// What is known about `product` now: catalog facts, review status, reach.
    async fn about(&self, product: &str) -> Result<Option<About>, StoreError> {
        if product.is_empty() {
            return Ok(None);
        }
        let (name, vendor, category) = match self.catalog.product(product) {
            Some(p) => (p.name.clone(), p.vendor.clone(), p.category.as_str().to_owned()),
            None => (product.to_owned(), String::new(), String::new()),
        };
        let status = self
            .store
            .review(product.to_owned())
            .await?
            .map_or_else(|| "unreviewed".to_owned(), |r| r.status);
        let filter = UsageFilter { product: Some(product.to_owned()), ..UsageFilter::default() };
        let (_, usage) = self.store.usage(filter).await?;
        let (devices, users) = usage.first().map_or((0, 0), |u| (u.devices, u.users));
        Ok(Some(About { name, vendor, category, status, devices, users }))
    }
}

/// `Capped` when the channel's `statuses` do not take the product's review status.
fn filtered(channel: &Channel, about: Option<&About>) -> Option<Attempt> {
    let a = about?;
    (!channel.statuses.is_empty() && !channel.statuses.contains(&a.status)).then(|| {
        Attempt::Capped { reason: format!("status {} is not taken by this channel", a.status) }
    })
}

/// Why a channel's TLS client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelTlsError {
    /// The `ca_file` cannot be read.
    #[error("{}: {error}", path.display())]
    Read {
        /// The channel's `ca_file`.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The `ca_file` holds a PEM section that does not decode.
    #[error("{}: {error}", path.display())]
    Pem {
        /// The channel's `ca_file`.
        path: std::path::PathBuf,
        /// Why.
        error: rustls::pki_types::pem::Error,
    },
    /// The `ca_file` holds no certificate.
    #[error("{}: no certificate", path.display())]
    NoCertificate {
        /// The channel's `ca_file`.
        path: std::path::PathBuf,
    },
    /// The system's roots or the client configuration.
    #[error("{0}")]
    Client(client::ClientError),
}

/// The TLS client of a channel: the system's roots plus its `ca_file`.
///
/// # Errors
/// The CA file is unreadable or holds no certificate.
pub fn tls_for(channel: &Channel) -> Result<Arc<rustls::ClientConfig>, ChannelTlsError> {
    let mut extra = Vec::new();
    if let Some(path) = &channel.ca_file {
        let pem = crate::config::read_capped(path)
            .map_err(|error| ChannelTlsError::Read { path: path.clone(), error })?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            extra.push(cert.map_err(|error| ChannelTlsError::Pem { path: path.clone(), error })?);
        }
        if extra.is_empty() {
            return Err(ChannelTlsError::NoCertificate { path: path.clone() });
        }
    }
    client::tls_config_with_system_roots(&extra, false).map_err(ChannelTlsError::Client)
}

/// `/metrics` lines: `aiscout_alert_deliveries{channel,state}`, a gauge of the outbox.
pub fn metrics(counts: &[(String, String, i64)]) -> String {
    let mut out = String::from(
        "# HELP aiscout_alert_deliveries Alert deliveries in the outbox by channel and state \
         (pending, sending, delivered, failed, capped, held for a digest).\n\
         # TYPE aiscout_alert_deliveries gauge\n",
    );
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    for (channel, state, n) in counts {
        out.push_str(&format!(
            "aiscout_alert_deliveries{{channel=\"{}\",state=\"{}\"}} {n}\n",
            label(channel),
            label(state)
        ));
    }
    out
}
