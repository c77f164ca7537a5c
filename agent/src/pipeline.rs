//! The pipeline: capture → decode → match → output, for `replay` (files) and `capture`
//! (live interfaces). The only module that knows every stage; the stages know only `model`.
//!
//! Output is the edge where observations become text: one JSON object or one line per
//! observation that matched a product, or per observation when `all` is set (an offline
//! diagnostic; the daemon never sets it). Unmatched observations are otherwise dropped here,
//! uncounted by name and never written (DESIGN.md, invariant 1).

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::attribution::{self, Process};
use crate::capture::{self, CaptureError, FileSource, KernelStats, LiveSource};
use crate::decode::{Decoder, Limits, Stats};
use crate::matching::{Hit, Matcher};
use crate::model::{Kind, Observation};

/// What to print and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Print unmatched observations too (offline diagnostics only).
    pub all: bool,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Attribute matched flows to local processes through `/proc` (live capture only).
    pub attribute: bool,
    /// The decoder's caps.
    pub limits: Limits,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Capture failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// Writing output failed (a closed pipe is one; callers treat it as success).
    #[error("cannot write output")]
    Output(#[from] io::Error),
    /// A capture thread ended abnormally.
    #[error("a capture thread panicked")]
    Thread,
}

/// What a run did, for the one-line summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Decoder counters (frames and bytes included).
    pub stats: Stats,
    /// Observations decoded.
    pub observations: u64,
    /// Observations that matched a product.
    pub matches: u64,
    /// Packets the kernel dropped (live only).
    pub kernel: KernelStats,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Summary {
    /// Decode drops plus kernel drops.
    pub fn drops(&self) -> u64 {
        self.stats
            .drops()
            .saturating_add(self.kernel.dropped)
            .saturating_add(self.kernel.if_dropped)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packets={} bytes={} observations={} matches={} drops={} elapsed={:.3}s",
            self.stats.frames,
            self.stats.bytes,
            self.observations,
            self.matches,
            self.drops(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Matches observations and renders the ones to print.
struct Emitter<'m> {
    matcher: &'m Matcher,
    opts: &'m Options,
    observations: u64,
    matches: u64,
}

impl Emitter<'_> {
    /// The line to print for `obs`, or `None` when it is dropped.
    fn line(&mut self, obs: &Observation) -> Option<String> {
        self.observations = self.observations.saturating_add(1);
        let hit = self.matcher.lookup(obs);
        if hit.is_some() {
            self.matches = self.matches.saturating_add(1);
        } else if !self.opts.all {
            return None;
        }
        let process = match hit {
            Some(_) if self.opts.attribute => attribution::owner(obs),
            _ => None,
        };
        Some(render(obs, hit, process.as_ref(), self.opts.json))
    }
}

/// The JSON form of one output line: borrowed fields, serialised straight to text (no
/// intermediate map). Lives here, at the edge, not on the domain types.
#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    kind: &'static str,
    name: &'a str,
    product: Option<&'a str>,
    indicator: Option<&'static str>,
    #[serde(serialize_with = "as_display")]
    ts: &'a crate::model::Timestamp,
    #[serde(serialize_with = "as_display")]
    src: &'a std::net::SocketAddr,
    #[serde(serialize_with = "as_display")]
    dst: &'a std::net::SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpn: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ech: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<JsonProcess<'a>>,
}

#[derive(serde::Serialize)]
struct JsonProcess<'a> {
    pid: u32,
    name: &'a str,
}

fn as_display<T: fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Renders one observation as a JSON object or a text line (without the newline).
pub fn render(
    obs: &Observation,
    hit: Option<Hit<'_>>,
    process: Option<&Process>,
    json: bool,
) -> String {
    let hello = obs.kind != Kind::Dns;
    if json {
        let record = JsonRecord {
            kind: obs.kind.as_str(),
            name: &obs.name,
            product: hit.map(|h| h.product),
            indicator: hit.map(|h| h.indicator),
            ts: &obs.ts,
            src: &obs.src,
            dst: &obs.dst,
            alpn: hello.then_some(obs.alpn.as_slice()),
            ech: hello.then_some(obs.ech),
            process: process.map(|p| JsonProcess { pid: p.pid, name: &p.name }),
        };
        // Serialising borrowed strings, numbers and booleans cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    } else {
        let mut line = format!(
            "{} {} {} {} {} -> {}",
            obs.ts,
            obs.kind.as_str(),
            obs.name,
            hit.map_or("-", |h| h.product),
            obs.src,
            obs.dst
        );
        if hello {
            line.push_str(&format!(" alpn={} ech={}", obs.alpn.join(","), obs.ech));
        }
        if let Some(p) = process {
            line.push_str(&format!(" process={}[{}]", p.name, p.pid));
        }
        line
    }
}

/// Replays capture files in order, writing lines to `out`.
///
/// # Errors
/// When a file cannot be opened or read, or `out` fails.
pub fn replay(
    paths: &[PathBuf],
    matcher: &Matcher,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut emitter = Emitter { matcher, opts, observations: 0, matches: 0 };
    let mut batch = Vec::new();
    for path in paths {
        let mut source = FileSource::open(path)?;
        let mut decoder = Decoder::new(opts.limits.clone());
        let mut write_error = None;
        source.for_each(|frame| {
            decoder.decode(frame, &mut batch);
            for obs in batch.drain(..) {
                if write_error.is_some() {
                    continue;
                }
                if let Some(line) = emitter.line(&obs)
                    && let Err(e) = writeln!(out, "{line}")
                {
                    write_error = Some(e);
                }
            }
        })?;
        summary.stats.merge(decoder.stats());
        if let Some(e) = write_error {
            return Err(e.into());
        }
    }
    out.flush()?;
    summary.observations = emitter.observations;
    summary.matches = emitter.matches;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Lines queued between capture threads and the writer.
const LINE_QUEUE: usize = 1024;

struct ThreadResult {
    stats: Stats,
    kernel: KernelStats,
    observations: u64,
    matches: u64,
}

/// Captures live on `interfaces` (all that are up when empty), one thread per interface,
/// until `duration` has passed (forever without one), writing lines to `out`.
///
/// # Errors
/// When an interface cannot be opened or read, or `out` fails.
pub fn capture(
    interfaces: &[String],
    duration: Option<Duration>,
    matcher: Arc<Matcher>,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let names = if interfaces.is_empty() { capture::interfaces_up()? } else { interfaces.to_vec() };
    // Open every interface before starting, so a bad name fails the run at once.
    let sources = names.iter().map(|n| LiveSource::open(n)).collect::<Result<Vec<_>, _>>()?;
    let (tx, rx) = mpsc::sync_channel::<String>(LINE_QUEUE);
    let mut handles = Vec::new();
    for mut source in sources {
        let tx = tx.clone();
        let matcher = Arc::clone(&matcher);
        let opts = opts.clone();
        handles.push(std::thread::spawn(move || -> Result<ThreadResult, CaptureError> {
            let mut decoder = Decoder::new(opts.limits.clone());
            let mut emitter =
                Emitter { matcher: &matcher, opts: &opts, observations: 0, matches: 0 };
            let mut batch = Vec::new();
            source.run(deadline, |frame| {
                decoder.decode(frame, &mut batch);
                for obs in batch.drain(..) {
                    if let Some(line) = emitter.line(&obs) {
                        // The writer only goes away when the run is over; a failed send
                        // then loses nothing worth reporting.
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            })?;
            Ok(ThreadResult {
                stats: decoder.stats().clone(),
                kernel: source.kernel_stats(),
                observations: emitter.observations,
                matches: emitter.matches,
            })
        }));
    }
    drop(tx);
    let mut write_result = Ok(());
    for line in rx {
        if write_result.is_ok() {
            write_result = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
    let mut summary = Summary::default();
    for handle in handles {
        let r = handle.join().map_err(|_| PipelineError::Thread)??;
        summary.stats.merge(&r.stats);
        summary.kernel.received = summary.kernel.received.saturating_add(r.kernel.received);
        summary.kernel.dropped = summary.kernel.dropped.saturating_add(r.kernel.dropped);
        summary.kernel.if_dropped = summary.kernel.if_dropped.saturating_add(r.kernel.if_dropped);
        summary.observations = summary.observations.saturating_add(r.observations);
        summary.matches = summary.matches.saturating_add(r.matches);
    }
    write_result?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
