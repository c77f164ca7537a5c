//! Hostile input: truncated frames, lying lengths, oversize names, floods. No panic, bounded
//! memory, drops counted.

use std::time::Duration;

use aiscout_agent::decode::{Decoder, Limits};
use aiscout_agent::model::{Frame, LinkType, Timestamp};

use crate::support::*;

fn decode_all(decoder: &mut Decoder, link: LinkType, frames: &[Vec<u8>], ts: u64) -> usize {
    let mut out = Vec::new();
    for f in frames {
        decoder.decode(&Frame { ts: Timestamp(ts), link, data: f }, &mut out);
    }
    out.len()
}

#[test]
fn every_truncation_of_every_packet_is_survived() {
    let hello = records(&client_hello("chatgpt.com", &["h2"], true, 600), 200);
    let quic = aiscout_agent::fuzzing::client_initial(
        1,
        &[1; 8],
        0,
        &padded(crypto_frame(0, &hello[5..]), 1150),
    )
    .unwrap();
    let packets = vec![
        ethernet(&ipv4_tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 443, 1, PSH, &hello)),
        qinq(&ipv4_udp([1, 1, 1, 1], 1, [2, 2, 2, 2], 443, &quic)),
        ethernet(&ipv6_udp_with_extensions(
            [1; 16],
            [2; 16],
            53,
            53,
            &[0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12],
        )),
    ];
    let mut decoder = Decoder::new(Limits::default());
    for p in &packets {
        for cut in 0..=p.len() {
            for link in [LinkType::Ethernet, LinkType::LinuxSll2, LinkType::Raw, LinkType::Null] {
                decode_all(&mut decoder, link, &[p[..cut].to_vec()], 0);
            }
        }
    }
    assert!(decoder.stats().malformed > 0);
}

#[test]
fn sixty_four_kilobyte_sni_is_dropped_and_counted() {
    let name = format!("{}.example", "a".repeat(60_000));
    let stream = records(&client_hello(&name, &[], false, 32), 16_384);
    let frames: Vec<Vec<u8>> = stream
        .chunks(1448)
        .enumerate()
        .map(|(i, c)| {
            ethernet(&ipv4_tcp(
                [1, 1, 1, 1],
                1,
                [2, 2, 2, 2],
                443,
                1 + u32::try_from(i * 1448).unwrap(),
                PSH,
                c,
            ))
        })
        .collect();
    let mut decoder = Decoder::new(Limits::default());
    assert_eq!(decode_all(&mut decoder, LinkType::Ethernet, &frames, 0), 0);
    assert!(decoder.stats().drop_flow_bytes >= 1, "{:?}", decoder.stats());
    assert_eq!(decoder.occupancy().tcp_flows, 0);
    assert_eq!(decoder.occupancy().buffered_bytes, 0);
}

#[test]
fn sni_length_field_claiming_64_kilobytes_is_malformed() {
    let mut hello = client_hello("claude.ai", &[], false, 32);
    // The host_name length sits right after the name_type byte; make it lie.
    let pos = hello.windows(9).position(|w| w == b"claude.ai").unwrap();
    hello[pos - 2] = 0xff;
    hello[pos - 1] = 0xff;
    let frame =
        ethernet(&ipv4_tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 443, 1, PSH, &records(&hello, 16_384)));
    let mut decoder = Decoder::new(Limits::default());
    assert_eq!(decode_all(&mut decoder, LinkType::Ethernet, &[frame], 0), 0);
    assert_eq!(decoder.stats().tls_malformed, 1);
}

#[test]
fn hundred_thousand_half_open_flows_stay_bounded_and_are_counted() {
    let limits = Limits::default();
    let mut decoder = Decoder::new(limits.clone());
    let mut out = Vec::new();
    for i in 0..100_000u32 {
        let [a, b, c, d] = i.to_be_bytes();
        // Half a post-quantum ClientHello: the first segment only.
        let hello = records(&client_hello("chatgpt.com", &[], false, 1700), 16_384);
        let frame = ethernet(&ipv4_tcp(
            [10, a, b, c],
            1024 + u16::from(d),
            [2, 2, 2, 2],
            443,
            1,
            PSH,
            &hello[..1448],
        ));
        decoder
            .decode(&Frame { ts: Timestamp(1), link: LinkType::Ethernet, data: &frame }, &mut out);
    }
    let occ = decoder.occupancy();
    assert!(occ.tcp_flows <= limits.max_tcp_flows, "{occ:?}");
    assert!(occ.buffered_bytes <= limits.max_buffered_bytes, "{occ:?}");
    let s = decoder.stats();
    assert_eq!(
        s.drop_tcp_table_full + s.drop_buffer_budget,
        100_000 - u64::try_from(occ.tcp_flows).unwrap(),
        "{s:?}"
    );
    assert!(out.is_empty());
    // After the idle timeout every incomplete flow is evicted and counted.
    let later = Timestamp(1 + u64::try_from(limits.idle_timeout.as_micros()).unwrap() + 2_000_000);
    let frame = ethernet(&ipv4_tcp([9, 9, 9, 9], 1, [2, 2, 2, 2], 443, 1, SYN, &[]));
    decoder.decode(&Frame { ts: later, link: LinkType::Ethernet, data: &frame }, &mut out);
    assert_eq!(decoder.occupancy().buffered_bytes, 0);
    assert!(decoder.stats().drop_idle_evicted >= u64::try_from(occ.tcp_flows).unwrap());
}

#[test]
fn syn_flood_is_capped_by_the_flow_table() {
    let limits =
        Limits { max_tcp_flows: 1000, idle_timeout: Duration::from_secs(60), ..Limits::default() };
    let mut decoder = Decoder::new(limits);
    let frames: Vec<Vec<u8>> = (0..100_000u32)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            ethernet(&ipv4_tcp([10, a, b, c], 40_000, [2, 2, 2, 2], 443, i, SYN, &[]))
        })
        .collect();
    decode_all(&mut decoder, LinkType::Ethernet, &frames, 5);
    assert_eq!(decoder.occupancy().tcp_flows, 1000);
    assert_eq!(decoder.stats().drop_tcp_table_full, 99_000);
}

#[test]
fn garbage_quic_long_headers_leave_no_state() {
    let mut decoder = Decoder::new(Limits::default());
    let frames: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let mut dg = vec![0xc0, 0, 0, 0, 1, 8];
            dg.extend(i.to_be_bytes());
            dg.extend([0, 0, 0, 0, 0, 0, 0x44, 0x00]);
            dg.extend(vec![0x5a; 1100]);
            ethernet(&ipv4_udp([1, 1, 1, 1], 1, [2, 2, 2, 2], 443, &dg))
        })
        .collect();
    decode_all(&mut decoder, LinkType::Ethernet, &frames, 0);
    assert_eq!(decoder.occupancy().quic_connections, 0);
    assert_eq!(decoder.stats().quic_undecryptable, 2000);
}

#[test]
fn dns_compression_loop_in_a_pcap_is_counted() {
    let msg = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    let (records, summary) = replay_frames(
        LINKTYPE_ETHERNET,
        &[ethernet(&ipv4_udp([1, 1, 1, 1], 1, [2, 2, 2, 2], 53, &msg))],
    );
    assert!(records.is_empty());
    assert_eq!(summary.stats.dns_malformed, 1);
}

#[test]
fn lying_ip_and_udp_lengths_do_not_read_past_the_frame() {
    let mut ip = ipv4_udp(
        [1, 1, 1, 1],
        1,
        [2, 2, 2, 2],
        53,
        &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1],
    );
    ip[2] = 0xff; // IPv4 total length
    ip[3] = 0xff;
    ip[24] = 0xff; // UDP length
    let mut decoder = Decoder::new(Limits::default());
    decode_all(&mut decoder, LinkType::Raw, &[ip], 0);
    assert_eq!(decoder.stats().frames, 1);
}
