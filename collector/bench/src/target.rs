//! `bench-ingest --target URL`: the simulated agents of [`crate::ingest`] sent to collectors
//! that are already running, typically behind a load balancer (`tests/scale/run`, issue 19).
//!
//! Unlike the spawned-collector run, a failed request is not an error here: the target may be
//! killed, restarted or lose its database mid-run on purpose. Every request is retried, as an
//! agent's uploader does, with exponential backoff and jitter (100 ms doubling to 2 s) on a
//! fresh connection after a connection error, and on the same one after a `5xx`, `429` or
//! `409`; only other answers (a `400`, a `401`: a bug or a wrong secret) stop the run, and so
//! does a request still failing after `--retry-for-seconds`.
//!
//! What is reported, exactly: the batches acknowledged (`200` with a batch acknowledgement),
//! the sightings and the sum of their counts in them, and how many acknowledgements said
//! `duplicate` after a retry (the collector had committed the batch but its answer was lost:
//! the agent's retry is then counted once, by design) or, which should never happen, on the
//! first attempt. A run ends only when every batch is acknowledged, so after it the database
//! must hold exactly `batches_acked` batches, `sightings_acked` sighting rows (the generated
//! keys are unique per batch, and windows differ per round) and `count_acked` as the sum of
//! their counts: fewer is a loss, more is a double.
//!
//! While sending it prints `progress: A of B batches acknowledged` about every second, so a
//! script can time its faults to land mid-ingest.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiscout_collector::client::{Connection, tls_config, tls_config_with_system_roots};
use aiscout_wire::BatchAck;
use anyhow::{Context, bail};
use axum::body::Bytes;
use hyper::{Method, StatusCode, Uri};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ingest::{self, AgentBatch, BenchArgs, Rng, ms, per_second, say};

/// First backoff after a failed request; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two attempts of one request.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where the agents go: the resolved address, the TLS name and the client configuration.
struct Endpoint {
    addr: SocketAddr,
    name: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Endpoint {
    fn new(url: &str, ca_file: Option<&Path>, http2: bool) -> anyhow::Result<Endpoint> {
        let uri: Uri = url.parse().with_context(|| format!("--target {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--target {url:?}: only https:// URLs are supported");
        }
        let host = uri.host().with_context(|| format!("--target {url:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let tls = match ca_file {
            Some(path) => {
                let pem = aiscout_collector::config::read_capped(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("{}: not PEM certificates", path.display()))?;
                if certs.is_empty() {
                    bail!("{}: no certificate in the file", path.display());
                }
                tls_config(&certs, http2)?
            }
            None => tls_config_with_system_roots(&[], http2)?,
        };
        Ok(Endpoint { addr, name: host, tls })
    }
}

/// What happened to the requests of one connection's worker.
#[derive(Default)]
struct Tally {
    /// Time from the first attempt of a batch to its acknowledgement.
    latencies: Vec<Duration>,
    batches: u64,
    sightings: u64,
    count: u64,
    duplicate_after_retry: u64,
    duplicate_first_attempt: u64,
    retries: u64,
    connects: u64,
    /// Failed attempts by cause: an HTTP status, or `connection`.
    failures: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.batches += other.batches;
        self.sightings += other.sightings;
        self.count += other.count;
        self.duplicate_after_retry += other.duplicate_after_retry;
        self.duplicate_first_attempt += other.duplicate_first_attempt;
        self.retries += other.retries;
        self.connects += other.connects;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
    }
}

/// One connection's worth of agents: a connection opened again whenever it fails.
struct Worker {
    endpoint: Arc<Endpoint>,
    connection: Option<Connection>,
    rng: Rng,
    retry_for: Duration,
    tally: Tally,
}

impl Worker {
    /// Sends until the answer is `200`, retrying what an agent retries; returns the body and
    /// whether it took more than one attempt.
    async fn send(
        &mut self,
        path: &str,
        bearer: Option<&str>,
        body: &Bytes,
    ) -> anyhow::Result<(Bytes, bool)> {
        let started = Instant::now();
        let mut failures = 0_u32;
        loop {
            if failures > 0 {
                if started.elapsed() > self.retry_for {
                    bail!(
                        "{path}: still failing after {} s ({failures} attempts); see the \
                         collectors' logs",
                        self.retry_for.as_secs()
                    );
                }
                self.tally.retries += 1;
                let base = BACKOFF_MIN
                    .saturating_mul(1_u32 << failures.min(5))
                    .min(BACKOFF_MAX)
                    .as_millis();
                let base = u64::try_from(base).unwrap_or(u64::MAX);
                // Full jitter in the upper half, so a fleet that failed together spreads out.
                let wait = base / 2 + self.rng.next() % (base / 2 + 1);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let connection = match self.connection.as_mut() {
                Some(c) => c,
                None => {
                    let e = &self.endpoint;
                    match Connection::connect(e.addr, &e.name, Arc::clone(&e.tls)).await {
                        Ok(c) => {
                            self.tally.connects += 1;
                            self.connection.insert(c)
                        }
                        Err(_) => {
                            failures += 1;
                            *self.tally.failures.entry("connect".into()).or_default() += 1;
                            continue;
                        }
                    }
                }
            };
            match connection.send(Method::POST, path, bearer, body.clone()).await {
                Ok((StatusCode::OK, bytes)) => return Ok((bytes, failures > 0)),
                Ok((status, bytes)) => {
                    failures += 1;
                    *self.tally.failures.entry(status.as_u16().to_string()).or_default() += 1;
                    let retried = status.is_server_error()
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::CONFLICT;
                    if !retried {
                        bail!("{path} answered {status}: {}", String::from_utf8_lossy(&bytes));
                    }
                    // A proxy's 5xx may come with a connection it is about to close.
                    if status == StatusCode::BAD_GATEWAY
                        || status == StatusCode::SERVICE_UNAVAILABLE
                    {
                        self.connection = None;
                    }
                }
                Err(_) => {
                    failures += 1;
                    *self.tally.failures.entry("connection".into()).or_default() += 1;
                    self.connection = None;
                }
            }
        }
    }
}

/// Enrolls every agent through `--target`, then sends every batch until acknowledged, and
/// reports the figures (stdout, and `--report` as JSON).
pub(crate) async fn run(args: &BenchArgs, url: &str, batches: &[AgentBatch]) -> anyhow::Result<()> {
    let endpoint = Arc::new(Endpoint::new(url, args.ca_file.as_deref(), !args.http1)?);
    let secret = match &args.enroll_secret_file {
        Some(path) => {
            let bytes = aiscout_collector::config::read_capped(path)
                .with_context(|| format!("reading {}", path.display()))?;
            String::from_utf8(bytes)
                .with_context(|| format!("{}: not UTF-8", path.display()))?
                .trim()
                .to_owned()
        }
        None => ingest::SECRET.to_owned(),
    };
    let retry_for = Duration::from_secs(args.retry_for_seconds);
    let workers: Vec<Worker> = (0..args.connections)
        .map(|i| Worker {
            endpoint: Arc::clone(&endpoint),
            connection: None,
            rng: Rng(0x5ca1_e000 + u64::try_from(i).unwrap_or(0)),
            retry_for,
            tally: Tally::default(),
        })
        .collect();

    // Enrollment: every agent once, spread over the workers.
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut w in workers {
        let (next, secret, agents) = (Arc::clone(&next), secret.clone(), args.agents);
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for _ in 0..agents {
                let agent = next.fetch_add(1, Ordering::Relaxed);
                if agent >= agents {
                    break;
                }
                let body = serde_json::json!({"enroll_secret": secret, "device": {
                    "host_id": ingest::host_id(agent), "hostname": ingest::host_id(agent),
                    "os": "linux", "os_version": "12", "agent_version": "0.1.0",
                    "owner_email": format!("person{agent}@example.com")}});
                let (bytes, _) =
                    w.send("/api/v1/enroll", None, &Bytes::from(body.to_string())).await?;
                let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                let key = v["node_key"].as_str().context("no node_key")?.to_owned();
                keys.push((agent, key));
            }
            Ok::<_, anyhow::Error>((w, keys))
        }));
    }
    let mut keys = vec![String::new(); args.agents];
    let mut workers = Vec::new();
    let mut enroll_tally = Tally::default();
    for t in tasks {
        let (mut w, got) = t.await??;
        enroll_tally.add(std::mem::take(&mut w.tally));
        workers.push(w);
        for (agent, key) in got {
            if let Some(slot) = keys.get_mut(agent) {
                *slot = key;
            }
        }
    }
    let enroll = start.elapsed();
    say(&format!(
        "[target] enroll: {} agents in {:.2}s = {:.0}/s ({} retries)",
        args.agents,
        enroll.as_secs_f64(),
        per_second(args.agents, enroll),
        enroll_tally.retries
    ));

    // Batches, round by round, over the same workers.
    let keys = Arc::new(keys);
    let jobs: Arc<Vec<(usize, Bytes, u64, u64)>> = Arc::new(
        batches
            .iter()
            .map(|b| {
                let n = u64::try_from(b.sightings.len()).unwrap_or(u64::MAX);
                let count = b.sightings.iter().map(|s| s.count).sum();
                (b.agent, b.body.clone(), n, count)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (acked, done, total) = (Arc::clone(&acked), Arc::clone(&done), jobs.len());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let a = acked.load(Ordering::Relaxed);
                say(&format!("[target] progress: {a} of {total} batches acknowledged"));
            }
        })
    };
    let client_cpu0 = ingest::cpu_seconds("/proc/self/stat");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut w in workers {
        let (next, jobs, keys, acked) =
            (Arc::clone(&next), Arc::clone(&jobs), Arc::clone(&keys), Arc::clone(&acked));
        tasks.push(tokio::spawn(async move {
            for _ in 0..jobs.len() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((agent, body, n, count)) = jobs.get(i) else { break };
                let key = keys.get(*agent).map(String::as_str);
                let sent = Instant::now();
                let (bytes, retried) = w.send("/api/v1/sightings", key, body).await?;
                let ack: BatchAck = serde_json::from_slice(&bytes)
                    .with_context(|| format!("batch {i}: not an acknowledgement"))?;
                if ack.duplicate {
                    if retried {
                        w.tally.duplicate_after_retry += 1;
                    } else {
                        w.tally.duplicate_first_attempt += 1;
                    }
                } else if ack.accepted != *n {
                    bail!("batch {i}: {} sightings acknowledged of {n}", ack.accepted);
                }
                w.tally.latencies.push(sent.elapsed());
                w.tally.batches += 1;
                w.tally.sightings += n;
                w.tally.count += count;
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(w.tally)
        }));
    }
    let mut tally = Tally::default();
    let mut failed = None;
    for t in tasks {
        match t.await? {
            Ok(part) => tally.add(part),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    done.store(true, Ordering::Relaxed);
    progress.abort();
    if let Some(e) = failed {
        return Err(e);
    }
    let elapsed = start.elapsed();
    let client_cpu = ingest::cpu_seconds("/proc/self/stat") - client_cpu0;
    report(args, url, &mut tally, elapsed, enroll, client_cpu)
}

fn report(
    args: &BenchArgs,
    url: &str,
    tally: &mut Tally,
    elapsed: Duration,
    enroll: Duration,
    client_cpu: f64,
) -> anyhow::Result<()> {
    tally.latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((tally.latencies.len() as f64) * q).ceil() as usize;
        tally.latencies.get(i.saturating_sub(1)).copied().unwrap_or_default()
    };
    let (p50, p99) = (pick(0.50), pick(0.99));
    let max = tally.latencies.last().copied().unwrap_or_default();
    let sightings = usize::try_from(tally.sightings).unwrap_or(usize::MAX);
    let rate = per_second(sightings, elapsed);
    let failures =
        tally.failures.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    say(&format!(
        "[target] ingest: {} batches acknowledged, {} sightings (count sum {}) in {:.2}s = \
         {rate:.0} sightings/s; ack latency (first attempt to acknowledgement) p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; retries {}, connections opened {}, failed attempts [{failures}]; \
         duplicate acknowledgements after a retry {}, on a first attempt {}; client cpu {:.1}s",
        tally.batches,
        tally.sightings,
        tally.count,
        elapsed.as_secs_f64(),
        ms(p50),
        ms(p99),
        ms(max),
        tally.retries,
        tally.connects,
        tally.duplicate_after_retry,
        tally.duplicate_first_attempt,
        client_cpu
    ));
    if let Some(path) = &args.report {
        let json = serde_json::json!({
            "target": url,
            "agents": args.agents,
            "rounds": args.rounds,
            "connections": args.connections,
            "enroll_seconds": enroll.as_secs_f64(),
            "batches_acked": tally.batches,
            "sightings_acked": tally.sightings,
            "count_acked": tally.count,
            "duplicate_acks_after_retry": tally.duplicate_after_retry,
            "duplicate_acks_first_attempt": tally.duplicate_first_attempt,
            "retries": tally.retries,
            "connections_opened": tally.connects,
            "failed_attempts": tally.failures,
            "elapsed_seconds": elapsed.as_secs_f64(),
            "sightings_per_second": rate,
            "p50_ms": ms(p50),
            "p99_ms": ms(p99),
            "max_ms": ms(max),
            "client_cpu_seconds": client_cpu,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
