//! Shared test helpers: packet and ClientHello builders, a minimal pcap writer (the files are
//! then read back by real libpcap through the pipeline), and replay helpers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aiscout_agent::capture::FileReader;
use aiscout_agent::decode::Limits;
use aiscout_agent::matching::Matcher;
use aiscout_agent::pipeline::{self, Options, Summary};
use serde_json::Value;

pub(crate) const LINKTYPE_NULL: u32 = 0;
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;
pub(crate) const LINKTYPE_RAW: u32 = 101;
pub(crate) const LINKTYPE_LINUX_SLL: u32 = 113;
pub(crate) const LINKTYPE_LINUX_SLL2: u32 = 276;

pub(crate) fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The real-client capture fixtures (`tests/data/pcap/*.pcap` and `*.pcapng`), sorted.
pub(crate) fn pcap_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir().join("pcap"))
        .expect("fixture folder")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no capture fixtures");
    files
}

pub(crate) fn matcher() -> Matcher {
    Matcher::builtin().expect("built-in catalog loads")
}

/// Writes a classic pcap file (microsecond timestamps).
pub(crate) fn write_pcap(path: &Path, linktype: u32, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(262_144u32.to_le_bytes());
    out.extend(linktype.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let i = u32::try_from(i).unwrap();
        out.extend((1_700_000_000u32 + i / 1000).to_le_bytes());
        out.extend(((i % 1000) * 1000).to_le_bytes());
        let len = u32::try_from(f.len()).unwrap();
        out.extend(len.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.extend(f);
    }
    std::fs::write(path, out).unwrap();
}

/// Replays `frames` written as a pcap of `linktype` with `--all --json`; returns the JSON
/// records and the summary.
pub(crate) fn replay_frames(linktype: u32, frames: &[Vec<u8>]) -> (Vec<Value>, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pcap");
    write_pcap(&path, linktype, frames);
    replay_file(&path, true)
}

pub(crate) fn replay_file(path: &Path, all: bool) -> (Vec<Value>, Summary) {
    replay_file_with(path, all, FileReader::Auto)
}

/// [`replay_file`] with the given file reader.
pub(crate) fn replay_file_with(
    path: &Path,
    all: bool,
    reader: FileReader,
) -> (Vec<Value>, Summary) {
    let opts = Options { all, json: true, attribute: false, limits: Limits::default(), reader };
    let mut out = Vec::new();
    let summary = pipeline::replay(&[path.to_owned()], &matcher(), &opts, &mut out).unwrap();
    let records =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (records, summary)
}

/// `kind name` pairs of the records, as a sorted set.
pub(crate) fn kind_names(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r["kind"].as_str().unwrap(), r["name"].as_str().unwrap()))
        .collect()
}

pub(crate) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[derive(Clone, Copy, Default)]
pub(crate) struct Flags {
    pub(crate) syn: bool,
    pub(crate) ack: bool,
    pub(crate) psh: bool,
    pub(crate) fin: bool,
}

pub(crate) const PSH: Flags = Flags { syn: false, ack: true, psh: true, fin: false };
pub(crate) const SYN: Flags = Flags { syn: true, ack: false, psh: false, fin: false };

/// A raw IPv4 TCP packet.
pub(crate) fn ipv4_tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 65_535);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(1);
    }
    if flags.psh {
        b = b.psh();
    }
    if flags.fin {
        b = b.fin();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// A raw IPv6 TCP packet.
pub(crate) fn ipv6_tcp(
    src: [u8; 16],
    sport: u16,
    dst: [u8; 16],
    dport: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv6(src, dst, 64).tcp(sport, dport, seq, 65_535).ack(1);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// A raw IPv4 UDP packet.
pub(crate) fn ipv4_udp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// A raw IPv6 UDP packet behind a hop-by-hop and a destination-options extension header.
pub(crate) fn ipv6_udp_with_extensions(
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).unwrap();
    let mut out = vec![0x60, 0, 0, 0];
    out.extend((udp_len + 16).to_be_bytes());
    out.push(0); // next header: hop-by-hop
    out.push(64);
    out.extend(src);
    out.extend(dst);
    out.extend([60, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop: next = destination options, PadN
    out.extend([17, 0, 1, 4, 0, 0, 0, 0]); // destination options: next = UDP, PadN
    out.extend(sport.to_be_bytes());
    out.extend(dport.to_be_bytes());
    out.extend(udp_len.to_be_bytes());
    out.extend([0, 0]);
    out.extend(payload);
    out
}

pub(crate) fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend(ethertype(ip).to_be_bytes());
    f.extend(ip);
    f
}

/// An 802.1ad outer tag (VLAN 100) over an 802.1Q inner tag (VLAN 10).
pub(crate) fn qinq(ip: &[u8]) -> Vec<u8> {
    let mut f =
        vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xa8, 0x00, 100, 0x81, 0x00, 0x00, 10];
    f.extend(ethertype(ip).to_be_bytes());
    f.extend(ip);
    f
}

pub(crate) fn sll(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    f.extend(ethertype(ip).to_be_bytes());
    f.extend(ip);
    f
}

pub(crate) fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut f = ethertype(ip).to_be_bytes().to_vec();
    f.extend([0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend(ip);
    f
}

pub(crate) fn null_loopback(ip: &[u8]) -> Vec<u8> {
    let af: u32 = if ip.first().unwrap() >> 4 == 6 { 30 } else { 2 };
    let mut f = af.to_le_bytes().to_vec();
    f.extend(ip);
    f
}

fn ethertype(ip: &[u8]) -> u16 {
    if ip.first().unwrap() >> 4 == 6 { 0x86dd } else { 0x0800 }
}

fn ext(t: u16, data: &[u8]) -> Vec<u8> {
    let mut e = t.to_be_bytes().to_vec();
    e.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
    e.extend(data);
    e
}

fn vec16(data: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    v.extend(data);
    v
}

/// A ClientHello handshake message (type, length, body) shaped like a browser's: SNI, ALPN,
/// supported_versions and a key share of `key_share_len` bytes (1216 + 32 for Chrome's
/// X25519MLKEM768 plus X25519), optionally an ECH extension.
pub(crate) fn client_hello(sni: &str, alpn: &[&str], ech: bool, key_share_len: usize) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x11; 32]);
    body.push(32);
    body.extend([0x22; 32]);
    body.extend(vec16(&[0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b]));
    body.extend([1, 0]);
    let mut exts = Vec::new();
    let mut name = vec![0];
    name.extend(vec16(sni.as_bytes()));
    exts.extend(ext(0x0000, &vec16(&name)));
    let mut list = Vec::new();
    for p in alpn {
        list.push(u8::try_from(p.len()).unwrap());
        list.extend(p.as_bytes());
    }
    exts.extend(ext(0x0010, &vec16(&list)));
    exts.extend(ext(0x002b, &[2, 3, 4]));
    let mut share = vec![0x11, 0xec];
    share.extend(vec16(&vec![0x5a; key_share_len]));
    exts.extend(ext(0x0033, &vec16(&share)));
    if ech {
        exts.extend(ext(0xfe0d, &[0, 0, 1, 0, 1, 7, 0, 4, 1, 2, 3, 4, 0, 2, 9, 9]));
    }
    body.extend(vec16(&exts));
    let mut msg = vec![1];
    msg.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

/// Wraps handshake bytes in TLS records of at most `record_len` bytes each.
pub(crate) fn records(handshake: &[u8], record_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in handshake.chunks(record_len) {
        out.extend([0x16, 3, 1]);
        out.extend(u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend(chunk);
    }
    out
}

/// A CRYPTO frame.
pub(crate) fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset));
    f.extend(varint(u64::try_from(data.len()).unwrap()));
    f.extend(data);
    f
}

pub(crate) fn varint(v: u64) -> Vec<u8> {
    if v < 64 {
        vec![u8::try_from(v).unwrap()]
    } else if v < 16_384 {
        (u16::try_from(v).unwrap() | 0x4000).to_be_bytes().to_vec()
    } else {
        (u32::try_from(v).unwrap() | 0x8000_0000).to_be_bytes().to_vec()
    }
}

/// Pads a frame sequence with PADDING so the Initial datagram reaches 1200 bytes.
pub(crate) fn padded(mut frames: Vec<u8>, to: usize) -> Vec<u8> {
    if frames.len() < to {
        frames.resize(to, 0);
    }
    frames
}

/// Runs the agent's daemon on a thread of its own (a one-thread runtime) until the returned
/// sender is used or dropped; join the handle to see it end.
pub(crate) fn spawn_daemon(
    config: aiscout_agent::config::Config,
    options: aiscout_agent::daemon::RunOptions,
) -> (tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = async {
            // A dropped sender stops the daemon too.
            let _stopped = stopped.await;
        };
        runtime.block_on(aiscout_agent::daemon::run(config, options, shutdown)).unwrap();
    });
    (stop, thread)
}
