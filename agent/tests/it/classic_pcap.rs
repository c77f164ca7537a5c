//! Our own classic pcap reader against libpcap: the same observations, counters, frames and
//! timestamps on every fixture, in all four magic forms, and on hostile files; clear errors
//! naming the file and the byte offset.

use std::path::{Path, PathBuf};

use aiscout_agent::capture::{CaptureError, FileReader, FileSource};
use aiscout_agent::fuzzing::{self, FileFrames};
use aiscout_agent::pipeline::{self, Options, PipelineError};
use proptest::prelude::*;

use crate::support::*;

/// One record of a classic pcap file: seconds, sub-seconds, the captured length written in
/// the header, the original length and the bytes.
#[derive(Clone, Debug)]
struct Rec {
    secs: u32,
    frac: u32,
    incl: u32,
    orig: u32,
    data: Vec<u8>,
}

impl Rec {
    fn new(secs: u32, frac: u32, data: &[u8]) -> Rec {
        let len = u32::try_from(data.len()).unwrap();
        Rec { secs, frac, incl: len, orig: len, data: data.to_vec() }
    }
}

#[derive(Clone, Copy, Debug)]
struct Form {
    big_endian: bool,
    nanos: bool,
}

const FORMS: [Form; 4] = [
    Form { big_endian: false, nanos: false },
    Form { big_endian: false, nanos: true },
    Form { big_endian: true, nanos: false },
    Form { big_endian: true, nanos: true },
];

fn pcap_bytes(form: Form, version: (u16, u16), snaplen: u32, link: u32, recs: &[Rec]) -> Vec<u8> {
    let u32b = |v: u32| if form.big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if form.big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut out = Vec::new();
    out.extend(u32b(if form.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend(u16b(version.0));
    out.extend(u16b(version.1));
    out.extend([0; 8]);
    out.extend(u32b(snaplen));
    out.extend(u32b(link));
    for r in recs {
        for v in [r.secs, r.frac, r.incl, r.orig] {
            out.extend(u32b(v));
        }
        out.extend(&r.data);
    }
    out
}

/// The records of a little-endian microsecond fixture, its snapshot length and link type.
fn read_fixture(path: &Path) -> (u32, u32, Vec<Rec>) {
    let d = std::fs::read(path).unwrap();
    let word = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
    assert_eq!(word(0), 0xa1b2_c3d4, "{}", path.display());
    let mut recs = Vec::new();
    let mut off = 24;
    while off + 16 <= d.len() {
        let incl = word(off + 8) as usize;
        recs.push(Rec {
            secs: word(off),
            frac: word(off + 4),
            incl: word(off + 8),
            orig: word(off + 12),
            data: d[off + 16..off + 16 + incl].to_vec(),
        });
        off += 16 + incl;
    }
    assert_eq!(off, d.len());
    (word(16), word(20), recs)
}

/// Replays `path` with `--all --json` through both readers and asserts the output and every
/// counter are the same.
fn assert_replays_alike(path: &Path) -> usize {
    let (ours, ours_summary) = replay_file_with(path, true, FileReader::Auto);
    let (theirs, theirs_summary) = replay_file_with(path, true, FileReader::Libpcap);
    let file = path.display();
    assert_eq!(ours, theirs, "observations differ on {file}");
    assert_eq!(ours_summary.stats, theirs_summary.stats, "counters differ on {file}");
    assert_eq!(ours_summary.observations, theirs_summary.observations);
    assert_eq!(ours_summary.matches, theirs_summary.matches);
    ours.len()
}

fn frames(path: &Path, reader: FileReader) -> FileFrames {
    fuzzing::file_frames(path, reader).unwrap()
}

/// Writes `bytes` to a temporary file and returns what both readers read, asserting they
/// agree and that our reader (not libpcap) read it.
fn read_both(bytes: &[u8]) -> (FileFrames, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pcap");
    std::fs::write(&path, bytes).unwrap();
    assert!(FileSource::open(&path).unwrap().is_classic());
    let ours = frames(&path, FileReader::Auto);
    assert_eq!(ours, frames(&path, FileReader::Libpcap), "readers disagree");
    (ours, dir, path)
}

/// The error our reader ends `path` with, after checking the frames before it.
fn read_error(path: &Path) -> CaptureError {
    let mut source = FileSource::open(path).unwrap();
    source.for_each(|_| {}).unwrap_err()
}

fn ip_frames(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let q = format!("host{i}.example");
            let udp = ipv4_udp([10, 0, 0, 1], 40_000, [10, 0, 0, 53], 53, q.as_bytes());
            Rec::new(1_700_000_000 + u32::try_from(i).unwrap(), 1000, &udp)
        })
        .collect()
}

const LE: Form = Form { big_endian: false, nanos: false };

#[test]
fn every_fixture_replays_the_same_with_our_reader_and_libpcap() {
    let mut lines = 0;
    for path in pcap_fixtures() {
        assert_eq!(
            FileSource::open(&path).unwrap().is_classic(),
            path.extension().is_some_and(|e| e == "pcap"),
            "{}",
            path.display()
        );
        lines += assert_replays_alike(&path);
    }
    assert!(lines > 0);
}

#[test]
fn all_four_magic_forms_replay_like_libpcap_and_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    for path in pcap_fixtures().iter().filter(|p| p.extension().is_some_and(|e| e == "pcap")) {
        let (original, _) = replay_file_with(path, true, FileReader::Libpcap);
        let (snaplen, link, recs) = read_fixture(path);
        for form in FORMS {
            // Nanoseconds that round down to the same microseconds.
            let recs: Vec<Rec> = recs
                .iter()
                .map(|r| Rec {
                    frac: if form.nanos { r.frac * 1000 + 999 } else { r.frac },
                    ..r.clone()
                })
                .collect();
            let copy = dir.path().join(format!("{form:?}.pcap"));
            std::fs::write(&copy, pcap_bytes(form, (2, 4), snaplen, link, &recs)).unwrap();
            assert!(FileSource::open(&copy).unwrap().is_classic(), "{form:?}");
            assert_replays_alike(&copy);
            let (ours, _) = replay_file_with(&copy, true, FileReader::Auto);
            assert_eq!(ours, original, "{} as {form:?}", path.display());
            assert_eq!(frames(&copy, FileReader::Auto).frames.len(), recs.len());
        }
    }
}

#[test]
fn a_file_that_is_only_a_header_has_no_frames() {
    for form in FORMS {
        let (read, _dir, _) = read_both(&pcap_bytes(form, (2, 4), 65_535, 1, &[]));
        assert_eq!(read, FileFrames { frames: vec![], failed: false });
    }
}

#[test]
fn zero_length_records_are_empty_frames() {
    let mut recs = ip_frames(2);
    recs.insert(1, Rec::new(1_700_000_000, 5, &[]));
    let (read, _dir, _) = read_both(&pcap_bytes(LE, (2, 4), 65_535, LINKTYPE_RAW, &recs));
    assert!(!read.failed);
    assert_eq!(read.frames.iter().map(|(_, d)| d.len()).filter(|&n| n == 0).count(), 1);
    assert_eq!(read.frames.len(), 3);
}

#[test]
fn a_record_longer_than_the_snapshot_length_is_cut_to_it_as_libpcap_does() {
    let recs = ip_frames(3);
    let (read, _dir, _) = read_both(&pcap_bytes(LE, (2, 4), 40, LINKTYPE_RAW, &recs));
    assert!(!read.failed);
    assert!(read.frames.iter().all(|(_, d)| d.len() == 40));
    assert_eq!(read.frames.len(), 3);
    // A snapshot length of 0 means the maximum.
    let (read, _dir, _) = read_both(&pcap_bytes(LE, (2, 4), 0, LINKTYPE_RAW, &recs));
    assert_eq!(read.frames.len(), 3);
    assert!(read.frames.iter().zip(&recs).all(|((_, d), r)| *d == r.data));
}

#[test]
fn a_record_header_cut_by_the_end_of_file_is_an_error_at_its_offset() {
    let recs = ip_frames(3);
    let mut bytes = pcap_bytes(LE, (2, 4), 65_535, LINKTYPE_RAW, &recs);
    let offset = bytes.len();
    bytes.extend([1, 2, 3, 4, 5]);
    let (read, _dir, path) = read_both(&bytes);
    assert!(read.failed);
    assert_eq!(read.frames.len(), 3, "frames before the damage are delivered");
    let e = read_error(&path);
    assert!(matches!(e, CaptureError::Corrupt { offset: o, .. } if o == offset as u64), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains(&format!("byte {offset}")));
    assert!(msg.contains("ends 5 bytes into a 16-byte record header"), "{msg}");
}

#[test]
fn a_record_running_past_the_end_of_file_is_an_error_at_its_offset() {
    let recs = ip_frames(4);
    let bytes = pcap_bytes(LE, (2, 4), 65_535, LINKTYPE_RAW, &recs);
    let last = bytes.len() - 16 - recs[3].data.len();
    for cut in [last + 16, last + 17, bytes.len() - 1] {
        let (read, _dir, path) = read_both(&bytes[..cut]);
        assert!(read.failed);
        assert_eq!(read.frames.len(), 3);
        let msg = read_error(&path).to_string();
        assert!(msg.contains(&format!("corrupt at byte {last}")), "{msg}");
        assert!(msg.contains("runs past the end of the file"), "{msg}");
    }
}

#[test]
fn a_record_larger_than_256_kib_is_an_error_at_its_offset() {
    let mut recs = ip_frames(3);
    recs[1].incl = 262_145;
    let bytes = pcap_bytes(LE, (2, 4), 65_535, LINKTYPE_RAW, &recs);
    let (read, _dir, path) = read_both(&bytes);
    assert!(read.failed);
    assert_eq!(read.frames.len(), 1);
    let offset = 24 + 16 + recs[0].data.len();
    let msg = read_error(&path).to_string();
    assert!(msg.contains(&format!("corrupt at byte {offset}")), "{msg}");
    assert!(msg.contains("262145 captured bytes, more than the maximum"), "{msg}");
    // u32::MAX, in the other byte order too.
    recs[1].incl = u32::MAX;
    let bytes = pcap_bytes(FORMS[3], (2, 4), 65_535, LINKTYPE_RAW, &recs);
    let (read, _dir, _) = read_both(&bytes);
    assert!(read.failed);
    assert_eq!(read.frames.len(), 1);
}

#[test]
fn replay_of_a_corrupt_file_prints_what_came_before_and_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    let bytes = std::fs::read(data_dir().join("pcap/dig-udp.pcap")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let opts = Options { all: true, json: true, ..Options::default() };
    let mut out = Vec::new();
    let e = pipeline::replay(std::slice::from_ref(&path), &matcher(), &opts, &mut out).unwrap_err();
    assert!(matches!(e, PipelineError::Capture(CaptureError::Corrupt { .. })), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!("capture file {} is corrupt at byte ", path.display()))
    );
    assert!(!out.is_empty(), "observations before the damage are written");
}

#[test]
fn timestamps_follow_libpcap_at_the_edges() {
    // Seconds past 2^31, microseconds past a second, nanoseconds past 2^31: libpcap's
    // signed and unsigned readings, per byte order.
    let udp = ipv4_udp([10, 0, 0, 1], 1, [10, 0, 0, 2], 53, b"x");
    let recs: Vec<Rec> = [(0x8000_0000, 0), (5, 2_000_000), (7, 0xffff_ffff), (u32::MAX, u32::MAX)]
        .into_iter()
        .map(|(s, f)| Rec::new(s, f, &udp))
        .collect();
    for form in FORMS {
        let (read, _dir, _) = read_both(&pcap_bytes(form, (2, 4), 65_535, LINKTYPE_RAW, &recs));
        assert_eq!(read.frames.len(), 4);
    }
}

#[test]
fn other_versions_pcapng_and_unknown_link_types_go_to_libpcap() {
    let dir = tempfile::tempdir().unwrap();
    let recs = ip_frames(2);
    for (name, bytes) in [
        ("v23", pcap_bytes(LE, (2, 3), 65_535, LINKTYPE_RAW, &recs)),
        ("v22", pcap_bytes(LE, (2, 2), 65_535, LINKTYPE_RAW, &recs)),
        ("link147", pcap_bytes(LE, (2, 4), 65_535, 147, &recs)),
        ("fcs", pcap_bytes(LE, (2, 4), 65_535, LINKTYPE_ETHERNET | 0x1000_0000, &recs)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        assert!(!FileSource::open(&path).unwrap().is_classic(), "{name}");
        assert_eq!(frames(&path, FileReader::Auto).frames.len(), 2, "{name}");
    }
    // Too short for a header: libpcap's error, as before.
    let short = dir.path().join("short");
    std::fs::write(&short, &pcap_bytes(LE, (2, 4), 65_535, 1, &[])[..20]).unwrap();
    assert!(matches!(FileSource::open(&short), Err(CaptureError::OpenFile { .. })));
}

/// A mutation applied to a well-formed file.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Cut(usize),
    Length { record: usize, incl: u32 },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), prop_oneof![0u32..3000, 262_100u32..262_200, any::<u32>()])
            .prop_map(|(record, incl)| Damage::Length { record, incl }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_files_read_the_same_with_both_readers(
        form in 0usize..4,
        snaplen in prop_oneof![Just(0u32), 1u32..2000, Just(65_535), Just(300_000)],
        sizes in proptest::collection::vec(0usize..2500, 0..12),
        times in proptest::collection::vec(any::<(u32, u32)>(), 12),
        damage in damage(),
    ) {
        let mut recs: Vec<Rec> = sizes
            .iter()
            .zip(&times)
            .map(|(&n, &(s, f))| Rec::new(s, f, &vec![0x45; n]))
            .collect();
        if let Damage::Length { record, incl } = damage
            && !recs.is_empty()
        {
            let n = recs.len();
            recs[record % n].incl = incl;
        }
        let mut bytes = pcap_bytes(FORMS[form], (2, 4), snaplen, LINKTYPE_RAW, &recs);
        if let Damage::Cut(at) = damage {
            bytes.truncate(24 + at % (bytes.len() - 23));
        }
        // Asserts internal invariants and agreement with libpcap.
        fuzzing::pcap_file(&bytes);
    }
}
