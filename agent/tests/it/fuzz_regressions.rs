//! Replays every input the fuzzers ever crashed on (tests/data/fuzz-regressions/<target>/),
//! on stable, so a fixed crash stays fixed.

use aiscout_agent::fuzzing;

use crate::support::data_dir;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = data_dir().join("fuzz-regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
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
    let n = replay("frame", fuzzing::frame)
        + replay("dns", fuzzing::dns)
        + replay("tls_client_hello", fuzzing::tls_client_hello)
        + replay("quic_initial", fuzzing::quic_initial)
        + replay("pcap_file", fuzzing::pcap_file);
    println!("replayed {n} fuzz regression inputs");
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
