//! Entry points for the cargo-fuzz targets under `agent/fuzz/`, one function per target
//! (rustls's layout), plus the packet builders the targets and the tests share. Not a stable
//! API.
//!
//! Each function must return normally for every input; a panic is a bug, and its input goes
//! to `tests/data/fuzz-regressions/<target>/`, where an ordinary test replays it.

use std::io::Write;

use crate::capture::classic::{self, MAX_RECORD_BYTES};
use crate::capture::{FileReader, FileSource};
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

/// Target `pcap_file`: the bytes as a classic pcap file. Our reader must not panic, must
/// deliver only frames that lie inside the input, and must end at a clean end of file or an
/// error whose offset lies inside the input. When the header is one our reader accepts, the
/// same bytes are also written to a temporary file and read by both readers, which must
/// deliver the same frames and agree on whether the file ends in an error (a differential
/// test against libpcap; a disagreement panics, so the fuzzer keeps the input).
pub fn pcap_file(data: &[u8]) {
    let Some((header, _)) = data.split_first_chunk::<{ classic::FILE_HEADER_BYTES }>() else {
        return;
    };
    let Some(header) = classic::Header::parse(header) else { return };
    let body = data.get(classic::FILE_HEADER_BYTES..).unwrap_or_default();
    let mut reader = classic::Reader::new(body, header);
    let mut delivered = 0usize;
    let end = reader.for_each(|record| {
        assert!(record.data.len() <= MAX_RECORD_BYTES as usize);
        delivered = delivered.saturating_add(record.data.len().saturating_add(16));
        assert!(delivered <= body.len(), "frames beyond the input");
    });
    if let Err(classic::ReadError::Corrupt { offset, .. }) = end {
        assert!(offset <= data.len() as u64, "error offset beyond the input");
    }
    let mut again = 0;
    assert!(reader.for_each(|_| again += 1).is_ok() && again == 0, "records after the end");
    let (ours, theirs) = both_readers(data);
    assert_eq!(ours, theirs, "our reader and libpcap disagree");
}

/// What one reader made of a file: the frames (time and bytes) and whether it ended in an
/// error.
#[derive(Debug, PartialEq, Eq)]
pub struct FileFrames {
    /// Each frame's timestamp and bytes, in order.
    pub frames: Vec<(Timestamp, Vec<u8>)>,
    /// The read ended in an error (after the frames).
    pub failed: bool,
}

/// Reads `path` with `reader`; `None` when it cannot be opened.
pub fn file_frames(path: &std::path::Path, reader: FileReader) -> Option<FileFrames> {
    let mut source = FileSource::open_with(path, reader).ok()?;
    let mut frames = Vec::new();
    let result = source.for_each(|f| frames.push((f.ts, f.data.to_vec())));
    Some(FileFrames { frames, failed: result.is_err() })
}

/// `data` read from a temporary file by our reader and by libpcap.
fn both_readers(data: &[u8]) -> (Option<FileFrames>, Option<FileFrames>) {
    let path = std::env::temp_dir().join(format!(
        "aiscout-fuzz-pcap-{}-{:?}.pcap",
        std::process::id(),
        std::thread::current().id()
    ));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if written.is_err() {
        return (None, None);
    }
    let ours = file_frames(&path, FileReader::Auto);
    let theirs = file_frames(&path, FileReader::Libpcap);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::trace!(error = %e, "Temporary fuzz file left behind.");
    }
    (ours, theirs)
}

/// A protected QUIC client Initial packet for `version` (1 or 0x6b3343cf) carrying `frames`,
/// for tests that need real Initials (reordered CRYPTO frames, coalesced packets).
pub fn client_initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Option<Vec<u8>> {
    quic::seal_client_initial(version, dcid, &[], pn, frames)
}
