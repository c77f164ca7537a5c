//! Replays every input the fuzzers ever crashed on (tests/data/fuzz-regressions/<target>/),
//! on stable, so a fixed crash stays fixed.

use aiscout_agent::fuzzing;

use crate::support::data_dir;

/// A fuzz target: its folder name and the entry point the fuzzer and these tests share.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 5] = [
    ("frame", fuzzing::frame),
    ("dns", fuzzing::dns),
    ("tls_client_hello", fuzzing::tls_client_hello),
    ("quic_initial", fuzzing::quic_initial),
    ("pcap_file", fuzzing::pcap_file),
];

/// Runs every input file of `dir` (not its README) through `f`; how many it ran. A missing
/// folder is a failure, not zero: the test must not pass for having found nothing.
fn replay(dir: &std::path::Path, f: fn(&[u8])) -> usize {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_regressions_replay_without_panics() {
    let regressions = data_dir().join("fuzz-regressions");
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut saved = 0;
    for (target, f) in TARGETS {
        // Crashes saved so far (none yet; see the folder's README), then the fuzzers' seeds,
        // of which every target has some: an empty seed folder fails here.
        let crashes = regressions.join(target);
        if crashes.is_dir() {
            saved += replay(&crashes, f);
        }
        let n = replay(&seeds.join(target), f);
        assert!(n >= 1, "{target}: no seed input replayed");
    }
    println!("replayed {saved} saved fuzz regression inputs and the seeds of every target");
}

#[test]
fn fuzz_entry_points_accept_the_rfc_vectors() {
    let v1 = std::fs::read(data_dir().join("rfc/rfc9001-a2-client-initial.bin")).unwrap();
    fuzzing::quic_initial(&v1);
    fuzzing::frame(&v1);
    fuzzing::dns(&v1);
    fuzzing::tls_client_hello(&v1);
    fuzzing::pcap_file(&v1);
}

#[test]
fn pcap_file_seeds_read_alike_with_both_readers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pcap_file");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        fuzzing::pcap_file(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 4);
}
