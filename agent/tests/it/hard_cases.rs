//! DESIGN.md's hard cases, one named test each, through real libpcap on pcaps written here.

use crate::support::*;
use aiscout_agent::fuzzing::client_initial;

const C4: [u8; 4] = [192, 168, 1, 10];
const S4: [u8; 4] = [104, 18, 32, 47];
const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const S6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];

/// The segments of `stream` cut at `cuts`, as Ethernet frames from C4:50000 to S4:port,
/// starting at sequence number `isn + 1`.
fn segments(stream: &[u8], cuts: &[usize], isn: u32, port: u16) -> Vec<Vec<u8>> {
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(stream.len());
    bounds
        .windows(2)
        .map(|w| {
            let seq = isn + 1 + u32::try_from(w[0]).unwrap();
            ethernet(&ipv4_tcp(C4, 50_000, S4, port, seq, PSH, &stream[w[0]..w[1]]))
        })
        .collect()
}

fn syn(isn: u32, port: u16) -> Vec<u8> {
    ethernet(&ipv4_tcp(C4, 50_000, S4, port, isn, SYN, &[]))
}

#[test]
fn split_client_hello_over_tcp_segments() {
    let stream = records(&client_hello("chatgpt.com", &["h2", "http/1.1"], false, 1700), 16_384);
    assert!(stream.len() > 1448, "a post-quantum sized hello: {}", stream.len());
    let (records, summary) =
        replay_frames(LINKTYPE_ETHERNET, &segments(&stream, &[1448], 1000, 443));
    assert_eq!(kind_names(&records), set(&["tls_sni chatgpt.com"]));
    assert_eq!(records[0]["product"], "openai.chatgpt");
    assert_eq!(records[0]["alpn"], serde_json::json!(["h2", "http/1.1"]));
    assert_eq!(records[0]["ech"], false);
    assert_eq!(records[0]["src"], "192.168.1.10:50000");
    assert_eq!(summary.stats.drops(), 0);
}

#[test]
fn client_hello_over_several_tls_records_and_segments() {
    let stream = records(&client_hello("claude.ai", &["h2"], false, 600), 100);
    let cuts: Vec<usize> = (1..stream.len() / 97).map(|i| i * 97).collect();
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &segments(&stream, &cuts, 7, 443));
    assert_eq!(kind_names(&records), set(&["tls_sni claude.ai"]));
}

#[test]
fn out_of_order_segments_after_syn_are_reassembled() {
    let stream = records(&client_hello("api.openai.com", &["h2"], false, 1700), 16_384);
    let mut frames = vec![syn(41, 443)];
    let mut segs = segments(&stream, &[500, 1448], 41, 443);
    segs.reverse();
    frames.extend(segs);
    let (records, summary) = replay_frames(LINKTYPE_ETHERNET, &frames);
    assert_eq!(kind_names(&records), set(&["tls_sni api.openai.com"]));
    assert_eq!(records[0]["product"], "openai.api");
    assert_eq!(summary.stats.drops(), 0);
}

#[test]
fn out_of_order_tail_segments_without_syn_are_reassembled() {
    let stream = records(&client_hello("claude.ai", &[], false, 2400), 16_384);
    let segs = segments(&stream, &[1000, 2000], 9, 443);
    let frames = vec![segs[0].clone(), segs[2].clone(), segs[1].clone()];
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &frames);
    assert_eq!(kind_names(&records), set(&["tls_sni claude.ai"]));
}

#[test]
fn retransmitted_and_overlapping_segments_yield_one_observation() {
    let stream = records(&client_hello("chatgpt.com", &["h2"], false, 1700), 16_384);
    let segs = segments(&stream, &[700, 1400], 5, 443);
    let overlap = ethernet(&ipv4_tcp(C4, 50_000, S4, 443, 5 + 1 + 600, PSH, &stream[600..900]));
    let frames = vec![segs[0].clone(), segs[0].clone(), overlap, segs[1].clone(), segs[2].clone()];
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &frames);
    assert_eq!(records.len(), 1, "{records:?}");
}

#[test]
fn client_hello_on_any_port_is_recognised_by_content() {
    let stream = records(&client_hello("gemini.google.com", &["h2"], false, 32), 16_384);
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &segments(&stream, &[], 1, 8443));
    assert_eq!(kind_names(&records), set(&["tls_sni gemini.google.com"]));
    assert_eq!(records[0]["product"], "google.gemini");
}

#[test]
fn ech_extension_is_flagged_and_outer_name_reported() {
    let stream = records(&client_hello("cloudflare-ech.com", &["h2"], true, 32), 16_384);
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &segments(&stream, &[], 1, 443));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["name"], "cloudflare-ech.com");
    assert_eq!(records[0]["ech"], true);
    assert!(records[0]["product"].is_null());
}

#[test]
fn tls_over_ipv6_is_read() {
    let stream = records(&client_hello("claude.ai", &["h2"], false, 32), 16_384);
    let frame = ethernet(&ipv6_tcp(C6, 40_000, S6, 443, 1, &stream));
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &[frame]);
    assert_eq!(records[0]["src"], "[2001:db8::10]:40000");
    assert_eq!(records[0]["name"], "claude.ai");
}

fn dns_query(name: &str) -> Vec<u8> {
    let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend(label.as_bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    m
}

#[test]
fn sll2_frames_from_the_any_device_decode() {
    let frame = sll2(&ipv4_udp(C4, 5353, S4, 53, &dns_query("claude.ai")));
    let (records, _) = replay_frames(LINKTYPE_LINUX_SLL2, &[frame]);
    assert_eq!(kind_names(&records), set(&["dns claude.ai"]));
}

#[test]
fn sll_frames_decode() {
    let frame = sll(&ipv4_udp(C4, 5353, S4, 53, &dns_query("claude.ai")));
    let (records, _) = replay_frames(LINKTYPE_LINUX_SLL, &[frame]);
    assert_eq!(kind_names(&records), set(&["dns claude.ai"]));
}

#[test]
fn qinq_frames_decode() {
    let frame = qinq(&ipv4_udp(C4, 5353, S4, 53, &dns_query("chatgpt.com")));
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &[frame]);
    assert_eq!(kind_names(&records), set(&["dns chatgpt.com"]));
}

#[test]
fn null_loopback_and_raw_ip_frames_decode() {
    let ip = ipv4_udp([127, 0, 0, 1], 5000, [127, 0, 0, 1], 53, &dns_query("chatgpt.com"));
    let (records, _) = replay_frames(LINKTYPE_NULL, &[null_loopback(&ip)]);
    assert_eq!(kind_names(&records), set(&["dns chatgpt.com"]));
    let (records, _) = replay_frames(LINKTYPE_RAW, &[ip]);
    assert_eq!(kind_names(&records), set(&["dns chatgpt.com"]));
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let ip = ipv6_udp_with_extensions(C6, S6, 5000, 53, &dns_query("api.anthropic.com"));
    let (records, _) = replay_frames(LINKTYPE_RAW, &[ip]);
    assert_eq!(kind_names(&records), set(&["dns api.anthropic.com"]));
}

#[test]
fn dns_over_tcp_with_two_messages_in_one_segment() {
    let mut stream = Vec::new();
    for q in [dns_query("claude.ai"), dns_query("chatgpt.com")] {
        stream.extend(u16::try_from(q.len()).unwrap().to_be_bytes());
        stream.extend(q);
    }
    let frame = ethernet(&ipv4_tcp(C4, 40_001, S4, 53, 1, PSH, &stream));
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &[frame]);
    assert_eq!(kind_names(&records), set(&["dns claude.ai", "dns chatgpt.com"]));
}

#[test]
fn dns_over_tcp_message_split_across_segments() {
    let q = dns_query("api.openai.com");
    let mut stream = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
    stream.extend(q);
    let frames = vec![
        ethernet(&ipv4_tcp(C4, 40_002, S4, 53, 100, SYN, &[])),
        ethernet(&ipv4_tcp(C4, 40_002, S4, 53, 101, PSH, &stream[..1])),
        ethernet(&ipv4_tcp(C4, 40_002, S4, 53, 102, PSH, &stream[1..10])),
        ethernet(&ipv4_tcp(C4, 40_002, S4, 53, 111, PSH, &stream[10..])),
    ];
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &frames);
    assert_eq!(kind_names(&records), set(&["dns api.openai.com"]));
}

#[test]
fn label_boundary_domain_matches() {
    let frames: Vec<Vec<u8>> = [
        "api.openai.com",
        "notopenai.com",
        "openai.com.evil.example",
        "gemini.google.com",
        "google.com",
    ]
    .iter()
    .map(|n| ethernet(&ipv4_udp(C4, 5000, S4, 53, &dns_query(n))))
    .collect();
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &frames);
    let products: Vec<(String, serde_json::Value)> = records
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["product"].clone()))
        .collect();
    assert_eq!(
        products,
        vec![
            ("api.openai.com".to_owned(), serde_json::json!("openai.api")),
            ("notopenai.com".to_owned(), serde_json::Value::Null),
            ("openai.com.evil.example".to_owned(), serde_json::Value::Null),
            ("gemini.google.com".to_owned(), serde_json::json!("google.gemini")),
            ("google.com".to_owned(), serde_json::Value::Null),
        ]
    );
}

// QUIC.

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn quic_frame(datagram: &[u8]) -> Vec<u8> {
    ethernet(&ipv4_udp(C4, 61_000, S4, 443, datagram))
}

fn initial(version: u32, dcid: &[u8], pn: u32, frames: Vec<u8>) -> Vec<u8> {
    client_initial(version, dcid, pn, &padded(frames, 1150)).unwrap()
}

#[test]
fn reordered_crypto_frames_in_one_initial() {
    let hello = client_hello("chatgpt.com", &["h3"], false, 32);
    let (a, rest) = hello.split_at(40);
    let (b, c) = rest.split_at(50);
    let mut frames = crypto_frame(90, c);
    frames.extend([0x01]);
    frames.extend(crypto_frame(0, a));
    frames.extend(crypto_frame(40, b));
    let (records, _) =
        replay_frames(LINKTYPE_ETHERNET, &[quic_frame(&initial(1, &DCID, 0, frames))]);
    assert_eq!(kind_names(&records), set(&["quic_sni chatgpt.com"]));
    assert_eq!(records[0]["alpn"], serde_json::json!(["h3"]));
    assert_eq!(records[0]["product"], "openai.chatgpt");
}

#[test]
fn crypto_stream_spread_over_two_initials_arriving_out_of_order() {
    // Chrome's post-quantum hello does not fit one Initial.
    let hello = client_hello("claude.ai", &["h3"], false, 1700);
    let (a, b) = hello.split_at(1000);
    let first = initial(1, &DCID, 0, crypto_frame(0, a));
    let second = initial(1, &DCID, 1, crypto_frame(1000, b));
    let (records, summary) =
        replay_frames(LINKTYPE_ETHERNET, &[quic_frame(&second), quic_frame(&first)]);
    assert_eq!(kind_names(&records), set(&["quic_sni claude.ai"]));
    assert_eq!(summary.stats.quic_client_hellos, 1);
}

#[test]
fn duplicated_crypto_frames_and_retransmitted_initials_report_once() {
    let hello = client_hello("claude.ai", &["h3"], false, 1700);
    let (a, b) = hello.split_at(700);
    let mut f1 = crypto_frame(0, a);
    f1.extend(crypto_frame(0, a));
    let p1 = initial(1, &DCID, 0, f1);
    let p2 = initial(1, &DCID, 1, crypto_frame(700, b));
    let p3 = initial(1, &DCID, 2, hello_again(&hello));
    let (records, _) = replay_frames(
        LINKTYPE_ETHERNET,
        &[quic_frame(&p1), quic_frame(&p1), quic_frame(&p2), quic_frame(&p3)],
    );
    assert_eq!(records.len(), 1);
}

fn hello_again(hello: &[u8]) -> Vec<u8> {
    crypto_frame(0, hello)
}

#[test]
fn coalesced_initial_and_handshake_packets_in_one_datagram() {
    let hello = client_hello("api.openai.com", &["h3"], false, 32);
    let mut datagram = client_initial(1, &DCID, 0, &crypto_frame(0, &hello)).unwrap();
    // A Handshake packet (type 2) with an opaque payload follows, then padding.
    datagram.extend([0xe0, 0, 0, 0, 1, 8]);
    datagram.extend(DCID);
    datagram.extend([0, 0x40, 20]);
    datagram.extend([0x55; 20]);
    datagram.resize(1200, 0);
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &[quic_frame(&datagram)]);
    assert_eq!(kind_names(&records), set(&["quic_sni api.openai.com"]));
}

#[test]
fn coalesced_handshake_before_initial_is_skipped_by_length() {
    let hello = client_hello("claude.ai", &["h3"], false, 32);
    let mut datagram = vec![0xe0, 0, 0, 0, 1, 8];
    datagram.extend(DCID);
    datagram.extend([0, 0x40, 20]);
    datagram.extend([0x55; 20]);
    datagram.extend(client_initial(1, &DCID, 0, &padded(crypto_frame(0, &hello), 1100)).unwrap());
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &[quic_frame(&datagram)]);
    assert_eq!(kind_names(&records), set(&["quic_sni claude.ai"]));
}

#[test]
fn quic_v2_initials_are_decrypted() {
    let hello = client_hello("gemini.google.com", &["h3"], true, 32);
    let (records, _) = replay_frames(
        LINKTYPE_ETHERNET,
        &[quic_frame(&initial(0x6b33_43cf, &DCID, 3, crypto_frame(0, &hello)))],
    );
    assert_eq!(kind_names(&records), set(&["quic_sni gemini.google.com"]));
    assert_eq!(records[0]["ech"], true);
}

#[test]
fn quic_on_ipv6_sll2_is_read() {
    let hello = client_hello("chatgpt.com", &["h3"], false, 32);
    let dg = initial(1, &DCID, 0, crypto_frame(0, &hello));
    let ip = ipv6_udp_with_extensions(C6, S6, 50_000, 443, &dg);
    let (records, _) = replay_frames(LINKTYPE_LINUX_SLL2, &[sll2(&ip)]);
    assert_eq!(kind_names(&records), set(&["quic_sni chatgpt.com"]));
}

/// DESIGN.md invariant 1: without --all, a name that matches nothing is never printed.
#[test]
fn privacy_unmatched_names_are_never_printed() {
    let hello = records(&client_hello("intranet.corp.example", &["h2"], false, 32), 16_384);
    let frames = vec![
        ethernet(&ipv4_udp(C4, 5000, S4, 53, &dns_query("payroll.corp.example"))),
        ethernet(&ipv4_tcp(C4, 50_000, S4, 443, 1, PSH, &hello)),
        ethernet(&ipv4_udp(C4, 5000, S4, 53, &dns_query("claude.ai"))),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pcap");
    write_pcap(&path, LINKTYPE_ETHERNET, &frames);
    let (records, summary) = replay_file(&path, false);
    assert_eq!(kind_names(&records), set(&["dns claude.ai"]));
    assert_eq!(summary.observations, 3);
    assert_eq!(summary.matches, 1);
}

/// `pcap` (a classic pcap file) rewritten with every record cut to `snaplen` bytes, original
/// lengths kept, as a live capture with that snaplen delivers it; and how many records were cut.
fn cut_records(pcap: &[u8], snaplen: usize) -> (Vec<u8>, usize) {
    let le = match pcap[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a classic pcap file"),
    };
    let u32_at = |b: &[u8], at: usize| {
        let v: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if le { u32::from_le_bytes(v) } else { u32::from_be_bytes(v) }
    };
    let put = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let mut out = pcap[..24].to_vec();
    out[16..20].copy_from_slice(&put(u32::try_from(snaplen).unwrap()));
    let (mut at, mut cut) = (24, 0);
    while at + 16 <= pcap.len() {
        let incl = u32_at(pcap, at + 8) as usize;
        let data = &pcap[at + 16..at + 16 + incl];
        let kept = &data[..incl.min(snaplen)];
        cut += usize::from(kept.len() < incl);
        out.extend(&pcap[at..at + 8]);
        out.extend(put(u32::try_from(kept.len()).unwrap()));
        out.extend(&pcap[at + 12..at + 16]);
        out.extend(kept);
        at += 16 + incl;
    }
    (out, cut)
}

/// Names decoded from `pcap` bytes with every record cut to `snaplen`.
fn names_cut_to(pcap: &[u8], snaplen: usize) -> (std::collections::BTreeSet<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    let (bytes, cut) = cut_records(pcap, snaplen);
    std::fs::write(&path, bytes).unwrap();
    (kind_names(&replay_file(&path, true).0), cut)
}

/// Issue 22: the live capture's snaplen (smaller than the default, for a smaller kernel ring)
/// cuts only bytes the decoder never reads. Checked on every real capture (a 128-byte snaplen
/// loses names there, so the comparison can fail), and on TSO/GRO-sized frames over SLL2 and
/// IPv6: the largest ClientHello the decoder reads (16 KiB of stream) fits whole, and cutting
/// one byte inside it loses the name; a super-packet of a hello followed by 40 kB of data (its
/// hello is read from the part before the stream cap) and a 60 kB server-to-client
/// super-packet are cut and decode as they do whole.
#[test]
fn live_snaplen_cuts_only_what_decode_would_not_read() {
    let snaplen = usize::try_from(aiscout_agent::capture::SNAPLEN).unwrap();
    let mut everything = std::collections::BTreeSet::new();
    let mut lost_when_too_short = 0;
    for fixture in
        pcap_fixtures().into_iter().filter(|p| p.extension().is_some_and(|e| e == "pcap"))
    {
        let bytes = std::fs::read(&fixture).unwrap();
        let (full, _) = names_cut_to(&bytes, 262_144);
        assert_eq!(kind_names(&replay_file(&fixture, true).0), full, "{}", fixture.display());
        let (cut, _) = names_cut_to(&bytes, snaplen);
        assert_eq!(cut, full, "{} cut to {snaplen} bytes", fixture.display());
        let (short, _) = names_cut_to(&bytes, 128);
        lost_when_too_short += full.difference(&short).count();
        everything.extend(full);
    }
    assert!(everything.len() >= 5, "the real captures hold names: {everything:?}");
    assert!(lost_when_too_short > 0, "a 128-byte snaplen must lose names");

    // The largest hello the decoder reads: one record filling its 16 KiB stream buffer.
    let max_stream = aiscout_agent::decode::Limits::default().max_flow_bytes;
    let base = client_hello("claude.ai", &["h2"], false, 0).len();
    let hello = client_hello("claude.ai", &["h2"], false, max_stream - 5 - base);
    let largest = records(&hello, 16_384);
    assert_eq!(largest.len(), max_stream);
    let largest = sll2(&ipv6_tcp(C6, 50_000, S6, 443, 1, &largest));
    assert!(largest.len() <= snaplen, "{} > {snaplen}", largest.len());
    // A hello and 40 kB of early data in one super-packet, and server data.
    let mut oversized = records(&client_hello("chatgpt.com", &["h2"], false, 1_300), 16_384);
    for _ in 0..4 {
        oversized.extend([0x17, 3, 3, 0x27, 0x10]);
        oversized.extend([0x5a; 10_000]);
    }
    let oversized = sll2(&ipv6_tcp(C6, 50_001, S6, 443, 1, &oversized));
    let mut bulk = vec![0x17, 3, 3, 0x3f, 0xff];
    bulk.resize(60_000, 0x5a);
    let bulk = sll2(&ipv6_tcp(S6, 443, C6, 50_000, 1, &bulk));
    let hello_end = largest.len();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tso.pcap");
    write_pcap(&path, LINKTYPE_LINUX_SLL2, &[largest, oversized, bulk]);
    let bytes = std::fs::read(&path).unwrap();
    let (full, _) = names_cut_to(&bytes, 262_144);
    assert_eq!(full, set(&["tls_sni claude.ai", "tls_sni chatgpt.com"]));
    let (cut, n) = names_cut_to(&bytes, snaplen);
    assert_eq!((cut, n), (full, 2), "the super-packets cut to {snaplen} bytes");
    let (short, n) = names_cut_to(&bytes, hello_end - 1);
    // Too short a snaplen loses the largest hello; the oversized super-packet's hello, well
    // inside the cut, is still read.
    assert_eq!((short, n), (set(&["tls_sni chatgpt.com"]), 3), "cut inside the largest hello");
}

/// A ClientHello whose TLS stream is exactly as long as the per-flow cap (16 KiB) is read
/// without a drop: the cap is a size bound, and a stream that ends on it is within it.
#[test]
fn client_hello_stream_exactly_at_the_flow_cap_is_read_without_a_drop() {
    let cap = aiscout_agent::decode::Limits::default().max_flow_bytes;
    let base = records(&client_hello("claude.ai", &["h2"], false, 0), cap).len();
    let stream = records(&client_hello("claude.ai", &["h2"], false, cap - base), cap);
    assert_eq!(stream.len(), cap);
    let (records, summary) =
        replay_frames(LINKTYPE_ETHERNET, &segments(&stream, &[1448, 2896, 8000], 3, 443));
    assert_eq!(kind_names(&records), set(&["tls_sni claude.ai"]));
    assert_eq!(summary.stats.drops(), 0, "{:?}", summary.stats);
}

/// A ClientHello and 20 KiB after it in one segment (a capture taken before segmentation
/// offload, with early data behind the hello): the hello before the cap is still read.
#[test]
fn client_hello_followed_by_more_than_the_flow_cap_in_one_segment_is_read() {
    let mut stream = records(&client_hello("chatgpt.com", &["h2"], false, 1200), 16_384);
    stream.extend([0x17, 3, 3, 0x50, 0]);
    stream.extend(vec![0xab; 0x5000]);
    assert!(stream.len() > aiscout_agent::decode::Limits::default().max_flow_bytes);
    let frame = ethernet(&ipv4_tcp(C4, 50_000, S4, 443, 77, PSH, &stream));
    let (records, _) = replay_frames(LINKTYPE_ETHERNET, &[frame]);
    assert_eq!(kind_names(&records), set(&["tls_sni chatgpt.com"]));
}
