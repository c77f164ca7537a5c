//! RFC 9001 and RFC 9369 appendix A: the client Initial packets, byte for byte, carried in a
//! UDP datagram and read through libpcap.

use crate::support::*;

fn check_vector(file: &str) {
    let datagram = std::fs::read(data_dir().join("rfc").join(file)).unwrap();
    assert_eq!(datagram.len(), 1200);
    let frame = ipv4_udp([10, 0, 0, 1], 50_000, [10, 0, 0, 2], 443, &datagram);
    let (records, summary) = replay_frames(LINKTYPE_RAW, &[frame]);
    assert_eq!(summary.stats.quic_initials, 1);
    assert_eq!(summary.stats.quic_client_hellos, 1, "{:?}", summary.stats);
    assert_eq!(kind_names(&records), set(&["quic_sni example.com"]));
    // The appendix's ClientHello offers the ALPN value "alpn".
    assert_eq!(records[0]["alpn"], serde_json::json!(["alpn"]));
    assert_eq!(records[0]["ech"], false);
    assert!(records[0]["product"].is_null());
}

#[test]
fn rfc9001_appendix_a_client_initial() {
    check_vector("rfc9001-a2-client-initial.bin");
}

#[test]
fn rfc9369_appendix_a_client_initial() {
    check_vector("rfc9369-a2-client-initial.bin");
}

#[test]
fn rfc9001_vector_with_one_flipped_bit_is_undecryptable_and_counted() {
    let mut datagram = std::fs::read(data_dir().join("rfc/rfc9001-a2-client-initial.bin")).unwrap();
    datagram[600] ^= 1;
    let frame = ipv4_udp([10, 0, 0, 1], 50_000, [10, 0, 0, 2], 443, &datagram);
    let (records, summary) = replay_frames(LINKTYPE_RAW, &[frame]);
    assert!(records.is_empty());
    assert_eq!(summary.stats.quic_undecryptable, 1);
}
