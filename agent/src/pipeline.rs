//! The pipeline: capture → decode → match → output, for `replay` (files) and `capture`
//! (live interfaces). The only module that knows every stage; the stages know only `model`.
//!
//! Output is the edge where observations become text: one JSON object or one line per
//! observation that matched a product, or per observation when `all` is set (an offline
//! diagnostic; the daemon never sets it). Unmatched observations are otherwise dropped here,
//! uncounted by name and never written (DESIGN.md, invariant 1).

use std::fmt;
use std::io::{self, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::attribution::{self, Process};
use crate::capture::{self, CaptureError, FileReader, FileSource, KernelStats, LiveSource};
use crate::decode::{Decoder, Limits, Stats};
use crate::matching::{Hit, Matcher};
use crate::model::{Kind, Observation, push_decimal};

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
    /// Which reader opens capture files (`replay`).
    pub reader: FileReader,
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
    /// Appends the line to print for `obs`, with its newline, to `out`; `false` when the
    /// observation is dropped (nothing appended).
    fn line(&mut self, obs: &Observation, out: &mut Vec<u8>) -> bool {
        self.observations = self.observations.saturating_add(1);
        let hit = self.matcher.lookup(obs);
        if hit.is_some() {
            self.matches = self.matches.saturating_add(1);
        } else if !self.opts.all {
            return false;
        }
        let process = match hit {
            Some(_) if self.opts.attribute => attribution::owner(obs),
            _ => None,
        };
        render_into(out, obs, hit, process.as_ref(), self.opts.json);
        out.push(b'\n');
        true
    }
}

/// Renders one observation as a JSON object or a text line (without the newline).
pub fn render(
    obs: &Observation,
    hit: Option<Hit<'_>>,
    process: Option<&Process>,
    json: bool,
) -> String {
    let mut line = Vec::with_capacity(256);
    render_into(&mut line, obs, hit, process, json);
    // Every piece appended is a `&str` or ASCII, so the bytes are UTF-8.
    String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends one observation as a JSON object or a text line (without the newline) to `out`.
///
/// Written field by field, not through serde or `core::fmt`: this runs once per printed
/// observation and was most of the replay's cost beyond decoding. The JSON is byte for byte
/// what `serde_json` prints for the same record (keys in this order, `alpn` and `ech` only
/// for TLS and QUIC, `process` only when attributed; see the tests).
fn render_into(
    out: &mut Vec<u8>,
    obs: &Observation,
    hit: Option<Hit<'_>>,
    process: Option<&Process>,
    json: bool,
) {
    let hello = obs.kind != Kind::Dns;
    if json {
        put(out, "{\"kind\":");
        push_json_str(out, obs.kind.as_str());
        put(out, ",\"name\":");
        push_json_str(out, &obs.name);
        put(out, ",\"product\":");
        push_json_opt(out, hit.map(|h| h.product));
        put(out, ",\"indicator\":");
        push_json_opt(out, hit.map(|h| h.indicator));
        put(out, ",\"ts\":\"");
        obs.ts.push_rfc3339(out);
        put(out, "\",\"src\":\"");
        push_socket_addr(out, &obs.src);
        put(out, "\",\"dst\":\"");
        push_socket_addr(out, &obs.dst);
        out.push(b'"');
        if hello {
            put(out, ",\"alpn\":[");
            for (i, alpn) in obs.alpn.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_str(out, alpn);
            }
            put(out, "],\"ech\":");
            put(out, if obs.ech { "true" } else { "false" });
        }
        if let Some(p) = process {
            put(out, ",\"process\":{\"pid\":");
            push_small(out, p.pid);
            put(out, ",\"name\":");
            push_json_str(out, &p.name);
            out.push(b'}');
        }
        out.push(b'}');
    } else {
        obs.ts.push_rfc3339(out);
        out.push(b' ');
        put(out, obs.kind.as_str());
        out.push(b' ');
        put(out, &obs.name);
        out.push(b' ');
        put(out, hit.map_or("-", |h| h.product));
        out.push(b' ');
        push_socket_addr(out, &obs.src);
        put(out, " -> ");
        push_socket_addr(out, &obs.dst);
        if hello {
            put(out, " alpn=");
            for (i, alpn) in obs.alpn.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                put(out, alpn);
            }
            put(out, if obs.ech { " ech=true" } else { " ech=false" });
        }
        if let Some(p) = process {
            put(out, " process=");
            put(out, &p.name);
            out.push(b'[');
            push_small(out, p.pid);
            out.push(b']');
        }
    }
}

/// Appends `s` as a JSON string with `serde_json`'s escapes: `\"`, `\\`, the short forms
/// `\b \f \n \r \t`, and `\u00XX` (lowercase hex) for the other control characters.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut clean = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both cuts fall on character boundaries.
        put(out, s.get(clean..i).unwrap_or_default());
        clean = i.saturating_add(1);
        if escape.is_empty() {
            put(out, "\\u00");
            for nibble in [b >> 4, b & 0x0f] {
                out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
            }
        } else {
            put(out, escape);
        }
    }
    put(out, s.get(clean..).unwrap_or_default());
    out.push(b'"');
}

/// Appends `value` in decimal (what `{value}` prints) byte by byte: cheaper than a slice copy
/// for the one to five digits of an octet, a port or a pid.
fn push_small(out: &mut Vec<u8>, value: u32) {
    if value >= 100_000 {
        push_decimal(out, u64::from(value), 0);
        return;
    }
    let mut started = false;
    for divisor in [10_000, 1_000, 100, 10, 1] {
        let digit = (value / divisor % 10) as u8;
        if digit != 0 || started || divisor == 1 {
            started = true;
            out.push(b'0' + digit);
        }
    }
}

/// Appends `s`.
fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// Appends a JSON string, or `null`.
fn push_json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => put(out, "null"),
    }
}

/// Appends `addr` as `Display` prints it (`1.2.3.4:53`, `[::1]:443`); IPv4 without
/// `core::fmt`.
fn push_socket_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_small(out, u32::from(octet));
            }
            out.push(b':');
            push_small(out, u32::from(v4.port()));
        }
        SocketAddr::V6(v6) if v6.scope_id() == 0 => {
            out.push(b'[');
            push_ipv6(out, v6.ip());
            put(out, "]:");
            push_small(out, u32::from(v6.port()));
        }
        SocketAddr::V6(_) => put(out, &addr.to_string()),
    }
}

/// Appends `ip` as `Display` prints it (RFC 5952: lowercase hex, the longest run of two or
/// more zero groups, the first of equals, as `::`; IPv4-mapped addresses as
/// `::ffff:a.b.c.d`).
fn push_ipv6(out: &mut Vec<u8>, ip: &Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        put(out, "::ffff:");
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            push_small(out, u32::from(octet));
        }
        return;
    }
    let groups = ip.segments();
    // The longest run of zero groups: (start, len).
    let (mut best, mut current) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if current.1 == 0 {
                current.0 = i;
            }
            current.1 += 1;
            if current.1 > best.1 {
                best = current;
            }
        } else {
            current = (0, 0);
        }
    }
    let hex_groups = |out: &mut Vec<u8>, groups: &[u16]| {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            push_hex(out, g);
        }
    };
    if best.1 > 1 {
        hex_groups(out, groups.get(..best.0).unwrap_or_default());
        put(out, "::");
        hex_groups(out, groups.get(best.0 + best.1..).unwrap_or_default());
    } else {
        hex_groups(out, &groups);
    }
}

/// Appends `value` in lowercase hex without leading zeros.
fn push_hex(out: &mut Vec<u8>, value: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12u32, 8, 4, 0] {
        let nibble = usize::from((value >> shift) & 0x0f);
        if nibble != 0 || started || shift == 0 {
            started = true;
            out.push(HEX.get(nibble).copied().unwrap_or(b'0'));
        }
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
    let mut lines = Vec::with_capacity(4096);
    for path in paths {
        let mut source = FileSource::open_with(path, opts.reader)?;
        let mut decoder = Decoder::new(opts.limits.clone());
        let mut write_error = None;
        source.for_each(|frame| {
            decoder.decode(frame, &mut batch);
            // The common case, a packet that completes nothing, ends here.
            if batch.is_empty() {
                return;
            }
            for obs in batch.drain(..) {
                if write_error.is_none() {
                    emitter.line(&obs, &mut lines);
                }
            }
            if write_error.is_none()
                && let Err(e) = out.write_all(&lines)
            {
                write_error = Some(e);
            }
            lines.clear();
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
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(LINE_QUEUE);
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
                    let mut line = Vec::new();
                    if emitter.line(&obs, &mut line) {
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
            write_result = out.write_all(&line).and_then(|()| out.flush());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, Transport};
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// The record as `serde_json` printed it before `render_into` was written by hand: the
    /// reference the hand-written JSON must equal byte for byte.
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        kind: &'static str,
        name: &'a str,
        product: Option<&'a str>,
        indicator: Option<&'static str>,
        ts: String,
        src: String,
        dst: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        alpn: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ech: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<ReferenceProcess<'a>>,
    }

    #[derive(serde::Serialize)]
    struct ReferenceProcess<'a> {
        pid: u32,
        name: &'a str,
    }

    fn reference_json(
        obs: &Observation,
        hit: Option<Hit<'_>>,
        process: Option<&Process>,
    ) -> String {
        let hello = obs.kind != Kind::Dns;
        serde_json::to_string(&Reference {
            kind: obs.kind.as_str(),
            name: &obs.name,
            product: hit.map(|h| h.product),
            indicator: hit.map(|h| h.indicator),
            ts: obs.ts.to_string(),
            src: obs.src.to_string(),
            dst: obs.dst.to_string(),
            alpn: hello.then_some(obs.alpn.as_slice()),
            ech: hello.then_some(obs.ech),
            process: process.map(|p| ReferenceProcess { pid: p.pid, name: &p.name }),
        })
        .unwrap()
    }

    fn reference_text(
        obs: &Observation,
        hit: Option<Hit<'_>>,
        process: Option<&Process>,
    ) -> String {
        let mut line = format!(
            "{} {} {} {} {} -> {}",
            obs.ts,
            obs.kind.as_str(),
            obs.name,
            hit.map_or("-", |h| h.product),
            obs.src,
            obs.dst
        );
        if obs.kind != Kind::Dns {
            line.push_str(&format!(" alpn={} ech={}", obs.alpn.join(","), obs.ech));
        }
        if let Some(p) = process {
            line.push_str(&format!(" process={}[{}]", p.name, p.pid));
        }
        line
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
            // IPv4-mapped IPv6 addresses print as `::ffff:a.b.c.d`.
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(
                IpAddr::from(std::net::Ipv4Addr::from(ip).to_ipv6_mapped()),
                port
            )),
            // IPv6 with a scope id.
            (any::<[u8; 16]>(), any::<u16>(), 1u32..).prop_map(|(ip, port, scope)| SocketAddr::V6(
                std::net::SocketAddrV6::new(ip.into(), port, 0, scope)
            )),
            // Groups drawn from {0, 1, ffff} exercise the choice of the zero run to compress.
            (
                proptest::collection::vec(prop_oneof![Just(0u16), Just(1), Just(0xffff)], 8),
                any::<u16>()
            )
                .prop_map(|(g, port)| SocketAddr::new(
                    IpAddr::from(Ipv6Addr::new(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7])),
                    port
                )),
            // Mostly-zero IPv6 addresses exercise `::` compression.
            (0usize..16, any::<u8>(), any::<u16>()).prop_map(|(at, b, port)| {
                let mut ip = [0u8; 16];
                ip[at] = b;
                SocketAddr::new(IpAddr::from(ip), port)
            }),
        ]
    }

    fn observation() -> impl Strategy<Value = Observation> {
        (
            prop_oneof![Just(Kind::Dns), Just(Kind::TlsSni), Just(Kind::QuicSni)],
            // Arbitrary text, control characters, quotes and backslashes included.
            prop_oneof!["[a-z0-9.-]{0,40}", any::<String>(), "[\\x00-\\x7f\"\\\\]{0,20}"],
            any::<u64>(),
            addr(),
            addr(),
            proptest::collection::vec(any::<String>(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(kind, name, ts, src, dst, alpn, ech)| Observation {
                kind,
                name,
                ts: Timestamp(ts),
                src,
                dst,
                transport: Transport::Tcp,
                alpn,
                ech,
            })
    }

    proptest! {
        #[test]
        fn hand_written_output_equals_the_serde_and_format_reference(
            obs in observation(),
            matched in any::<bool>(),
            product in any::<String>(),
            process in proptest::option::of((any::<u32>(), any::<String>())),
        ) {
            let hit = matched.then_some(Hit { product: &product, indicator: "web" });
            let process = process.map(|(pid, name)| Process { pid, name });
            prop_assert_eq!(
                render(&obs, hit, process.as_ref(), true),
                reference_json(&obs, hit, process.as_ref())
            );
            prop_assert_eq!(
                render(&obs, hit, process.as_ref(), false),
                reference_text(&obs, hit, process.as_ref())
            );
        }
    }

    #[test]
    fn ipv6_text_matches_display_for_every_zero_pattern() {
        // Every address whose groups are drawn from {0, 1, ffff}: all zero-run placements,
        // ties between runs, and the IPv4-mapped prefix.
        for n in 0..3u32.pow(8) {
            let mut g = [0u16; 8];
            let mut rest = n;
            for group in &mut g {
                *group = [0, 1, 0xffff][(rest % 3) as usize];
                rest /= 3;
            }
            let ip = Ipv6Addr::from(g);
            let mut ours = Vec::new();
            push_ipv6(&mut ours, &ip);
            assert_eq!(String::from_utf8(ours).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn small_decimals_match_display() {
        for v in (0..=100_000).chain([999_999, 1_000_000, u32::MAX]) {
            let mut ours = Vec::new();
            push_small(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), v.to_string());
        }
    }

    #[test]
    fn json_escapes_match_serde_json_for_every_ascii_byte() {
        for b in 0u8..=0x7f {
            let s = format!("a{}b", char::from(b));
            let mut ours = Vec::new();
            push_json_str(&mut ours, &s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "byte {b:#04x}"
            );
        }
    }
}
