//! Entry points for the cargo-fuzz targets under `agent/fuzz/`, one function per target
//! (rustls's layout), plus the packet builders the targets and the tests share. Not a stable
//! API.
//!
//! Each function must return normally for every input; a panic is a bug, and its input goes
//! to `tests/data/fuzz-regressions/<target>/`, where an ordinary test replays it.

use crate::decode::{Decoder, Limits, dns, quic, tls};
use crate::model::{Frame, LinkType, Timestamp};

/// Small caps, so that the fuzzer reaches them quickly.
fn fuzz_limits() -> Limits {
    Limits {
        max_tcp_flows: 8,
        max_quic_connections: 4,
        max_flow_bytes: 4096,
        max_buffered_bytes: 8192,
        idle_timeout: std::time::Duration::from_millis(5),
    }
}

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::Null,
    LinkType::Raw,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Loop,
    LinkType::Ipv4,
    LinkType::Ipv6,
];

/// Target `frame`: the first byte picks a link type, the rest is a sequence of frames, each
/// prefixed by a big-endian `u16` length (the last one takes what is left), fed to one
/// decoder with small caps and advancing timestamps.
pub fn frame(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let link = LINKS.get(usize::from(selector) % LINKS.len()).copied().unwrap_or(LinkType::Raw);
    let mut decoder = Decoder::new(fuzz_limits());
    let mut out = Vec::new();
    let mut ts = 0u64;
    while !rest.is_empty() {
        let (frame, tail) = match rest.split_first_chunk::<2>() {
            Some((len, tail)) => {
                tail.split_at_checked(usize::from(u16::from_be_bytes(*len))).unwrap_or((tail, &[]))
            }
            None => (rest, &[][..]),
        };
        decoder.decode(&Frame { ts: Timestamp(ts), link, data: frame }, &mut out);
        ts = ts.saturating_add(1000);
        rest = tail;
    }
}

/// Target `dns`: one DNS message, and the same bytes as a TCP DNS stream.
pub fn dns(data: &[u8]) {
    let _names = dns::names(data);
    let (messages, _) = dns::split_tcp(data);
    for m in messages {
        let _names = dns::names(m);
    }
}

/// Target `tls_client_hello`: the bytes as the start of a TLS stream, and as a ClientHello
/// body.
pub fn tls_client_hello(data: &[u8]) {
    let mut scratch = Vec::new();
    if tls::handshake_from_records(data, 16 * 1024, &mut scratch) == tls::Records::Complete {
        let _hello = tls::parse_client_hello(&scratch);
    }
    let _hello = tls::parse_client_hello(data);
}

/// Target `quic_initial`: after a selector byte, the bytes as a raw UDP payload, and as the
/// plaintext frames of correctly protected client Initials (so the fuzzer reaches frame
/// parsing and CRYPTO reassembly, which it could never reach through the AEAD). The
/// selector picks the version and how the frames are split over packets.
pub fn quic_initial(data: &[u8]) {
    let Some((&selector, frames)) = data.split_first() else { return };
    let limits = fuzz_limits();
    let mut table = quic::QuicTable::default();
    let mut stats = crate::decode::Stats::default();
    let mut scratch = Vec::new();
    let mut found = Vec::new();
    table.on_datagram(frames, Timestamp(0), &limits, &mut stats, &mut scratch, &mut found);
    let version = if selector & 1 == 0 { quic::VERSION_1 } else { quic::VERSION_2 };
    let chunk = usize::from(selector >> 1).saturating_add(1).saturating_mul(16);
    for (pn, part) in (0u32..).zip(frames.chunks(chunk).take(16)) {
        if let Some(packet) = quic::seal_client_initial(version, &[7; 8], &[], pn, part) {
            table.on_datagram(&packet, Timestamp(0), &limits, &mut stats, &mut scratch, &mut found);
        }
    }
}

/// A protected QUIC client Initial packet for `version` (1 or 0x6b3343cf) carrying `frames`,
/// for tests that need real Initials (reordered CRYPTO frames, coalesced packets).
pub fn client_initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Option<Vec<u8>> {
    quic::seal_client_initial(version, dcid, &[], pn, frames)
}
