//! Link-type dispatch and L2 to L4 through etherparse's slices (lax for IP).
//!
//! Our own code strips the pseudo-headers etherparse has no lax entry point for (BSD
//! NULL/LOOP, Linux SLL and SLL2) and reads the common IPv4 header in place (the per-packet
//! hot path, see [`ipv4`]); everything else from the EtherType or the IP header down,
//! including 802.1Q and QinQ tags, IPv6 and its extension headers, IPv4 authentication
//! headers, TCP and UDP, is etherparse's. Lax slicing accepts packets cut short by a snap
//! length, which is what we want for a ClientHello whose tail is missing: the reassembly
//! decides, not the link layer.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    EtherType, Ethernet2Slice, IpNumber, LaxIpSlice, SingleVlanSlice, TcpSlice, UdpSlice,
};

use crate::decode::reader::Reader;
use crate::model::LinkType;

/// A TCP or UDP segment with its addresses, borrowed from the frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment<'a> {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) l4: L4<'a>,
}

/// The transport part of a [`Segment`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum L4<'a> {
    Tcp(TcpSeg<'a>),
    Udp { src_port: u16, dst_port: u16, payload: &'a [u8] },
}

/// What reassembly needs from a TCP header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpSeg<'a> {
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: u32,
    pub(crate) syn: bool,
    pub(crate) ack: bool,
    pub(crate) fin: bool,
    pub(crate) rst: bool,
    pub(crate) payload: &'a [u8],
}

/// Why a frame yielded no segment; each is counted, never logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// A link type we do not decode.
    UnsupportedLink,
    /// The frame ends inside a link, IP or transport header, or a header is malformed.
    Malformed,
    /// Not IPv4 or IPv6 (ARP, LLDP and the like).
    NotIp,
    /// An IP fragment: not reassembled (see the decode module docs).
    Fragment,
    /// IP, but neither TCP nor UDP.
    NotTcpUdp,
}

/// Decodes one frame down to its TCP or UDP segment.
///
/// This walks etherparse's per-layer slices (Ethernet II, up to three VLAN tags, lax IP,
/// TCP/UDP) instead of building a whole `LaxSlicedPacket`: the same parsers, without moving
/// a several-hundred-byte struct per packet on the hot path.
#[inline]
pub(crate) fn segment(link: LinkType, data: &[u8]) -> Result<Segment<'_>, Skip> {
    let (ether_type, payload) = match link {
        LinkType::Ethernet => {
            let eth = Ethernet2Slice::from_slice_without_fcs(data).map_err(|_| Skip::Malformed)?;
            (eth.ether_type(), eth.payload_slice())
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => return ip(data),
        LinkType::Null | LinkType::Loop => {
            // The 4-byte address family is in the capturing host's byte order for NULL and in
            // network order for LOOP, and BSDs disagree on AF_INET6's value; the IP version
            // nibble that follows is unambiguous, so etherparse decides from it.
            let mut r = Reader::new(data);
            r.skip(4).ok_or(Skip::Malformed)?;
            return ip(r.rest());
        }
        LinkType::LinuxSll => {
            // packet type, ARPHRD type, address length, 8 address bytes, protocol.
            let mut r = Reader::new(data);
            r.skip(14).ok_or(Skip::Malformed)?;
            let proto = r.u16().ok_or(Skip::Malformed)?;
            (EtherType(proto), r.rest())
        }
        LinkType::LinuxSll2 => {
            // protocol, reserved, interface index, ARPHRD type, packet type, address length,
            // 8 address bytes.
            let mut r = Reader::new(data);
            let proto = r.u16().ok_or(Skip::Malformed)?;
            r.skip(18).ok_or(Skip::Malformed)?;
            (EtherType(proto), r.rest())
        }
        LinkType::Other(_) => return Err(Skip::UnsupportedLink),
    };
    let (mut ether_type, mut payload) = (ether_type, payload);
    // 802.1Q, 802.1ad (QinQ) and the legacy 0x9100, at most three deep like etherparse's
    // own `LINK_EXTS_CAP`.
    for _ in 0..3 {
        if !matches!(
            ether_type,
            EtherType::VLAN_TAGGED_FRAME
                | EtherType::PROVIDER_BRIDGING
                | EtherType::VLAN_DOUBLE_TAGGED_FRAME
        ) {
            break;
        }
        let vlan = SingleVlanSlice::from_slice(payload).map_err(|_| Skip::Malformed)?;
        ether_type = vlan.ether_type();
        payload = vlan.payload_slice();
    }
    match ether_type {
        EtherType::IPV4 | EtherType::IPV6 => ip(payload),
        _ => Err(Skip::NotIp),
    }
}

/// The TCP header and payload of the most common frame, Ethernet II (untagged) or raw IP
/// carrying unfragmented IPv4 and TCP, without the addresses: what the decoder needs to
/// decide that a segment has nothing for it, before it pays for [`segment`]. Read at fixed
/// offsets with the same lax length rules as [`ipv4`] and etherparse's `TcpSlice`. `None` for
/// every other frame, malformed ones included (they then go through [`segment`], which
/// classifies them); when `Some`, [`segment`] yields the same TCP segment, which a
/// differential test checks.
#[inline]
pub(crate) fn quick_tcp(link: LinkType, data: &[u8]) -> Option<TcpSeg<'_>> {
    let packet = match link {
        LinkType::Ethernet => {
            let (eth, rest) = data.split_first_chunk::<14>()?;
            if [eth[12], eth[13]] != [0x08, 0x00] {
                return None;
            }
            rest
        }
        LinkType::Raw | LinkType::Ipv4 => data,
        _ => return None,
    };
    let ip: &[u8; 20] = packet.first_chunk()?;
    // Version 4, protocol TCP (so no authentication header), neither more fragments nor a
    // fragment offset.
    if ip[0] >> 4 != 4 || ip[9] != 6 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) << 2;
    if header_len < 20 {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let end =
        if total_len < header_len || total_len > packet.len() { packet.len() } else { total_len };
    let segment = packet.get(header_len..end)?;
    let tcp: &[u8; 20] = segment.first_chunk()?;
    let data_offset = usize::from(tcp[12] >> 4) << 2;
    if data_offset < 20 {
        return None;
    }
    let flags = tcp[13];
    Some(TcpSeg {
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        payload: segment.get(data_offset..)?,
    })
}

/// IPv4 or IPv6 (with extension headers) and TCP or UDP, laxly: a length field larger than
/// the captured bytes falls back to what was captured.
#[inline]
fn ip(data: &[u8]) -> Result<Segment<'_>, Skip> {
    if let Some(seg) = ipv4(data) {
        return seg;
    }
    ip_etherparse(data)
}

/// The common case, a well-formed IPv4 header without an authentication header, read in
/// place. `LaxIpSlice` does the same with the same lax length rules, but returns an enum
/// sized for IPv6 extension headers that cost more to build and move than the header costs
/// to read; this ran on every packet. `None` (IPv6, an authentication header, a header cut
/// short or with IHL below 5) hands the packet to [`ip_etherparse`], so every malformed
/// header is still classified by etherparse. A differential test holds the two to the same
/// result.
#[inline]
fn ipv4(data: &[u8]) -> Option<Result<Segment<'_>, Skip>> {
    let mut r = Reader::new(data);
    let [version_ihl, _tos, len_hi, len_lo, _id_hi, _id_lo, frag_hi, frag_lo, _ttl, protocol] =
        r.array()?;
    let [_checksum_hi, _checksum_lo, s0, s1, s2, s3, d0, d1, d2, d3] = r.array()?;
    if version_ihl >> 4 != 4 || protocol == IpNumber::AUTHENTICATION_HEADER.0 {
        return None;
    }
    let header_len = usize::from(version_ihl & 0x0f).checked_mul(4)?;
    if header_len < 20 {
        return None;
    }
    // Lax like etherparse: a total length shorter than the header or longer than the
    // captured bytes falls back to the captured bytes.
    let total_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let end = if total_len < header_len || total_len > data.len() { data.len() } else { total_len };
    let payload = data.get(header_len..end)?;
    // More fragments, or a non-zero fragment offset.
    if u16::from_be_bytes([frag_hi, frag_lo]) & 0x3fff != 0 {
        return Some(Err(Skip::Fragment));
    }
    let src = IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3));
    let dst = IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3));
    Some(transport(IpNumber(protocol), payload).map(|l4| Segment { src, dst, l4 }))
}

/// Any IP packet through etherparse's lax slicing.
fn ip_etherparse(data: &[u8]) -> Result<Segment<'_>, Skip> {
    let (sliced, _ext_err) = LaxIpSlice::from_slice(data).map_err(|_| Skip::Malformed)?;
    let (src, dst, payload) = match &sliced {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), v4.payload())
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), v6.payload())
        }
    };
    if payload.fragmented {
        return Err(Skip::Fragment);
    }
    let l4 = transport(payload.ip_number, payload.payload)?;
    Ok(Segment { src, dst, l4 })
}

/// The TCP or UDP header and payload of an IP payload.
#[inline]
fn transport(ip_number: IpNumber, payload: &[u8]) -> Result<L4<'_>, Skip> {
    Ok(match ip_number {
        IpNumber::TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|_| Skip::Malformed)?;
            L4::Tcp(TcpSeg {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                seq: tcp.sequence_number(),
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
                payload: tcp.payload(),
            })
        }
        IpNumber::UDP => {
            let udp = UdpSlice::from_slice_lax(payload).map_err(|_| Skip::Malformed)?;
            L4::Udp {
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                payload: udp.payload(),
            }
        }
        _ => return Err(Skip::NotTcpUdp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_v4() -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    }

    fn expect_udp(link: LinkType, frame: &[u8]) {
        let seg = segment(link, frame).unwrap();
        assert_eq!(seg.src, IpAddr::from([10, 0, 0, 1]));
        match seg.l4 {
            L4::Udp { dst_port, payload, .. } => {
                assert_eq!(dst_port, 53);
                assert_eq!(payload, b"hello");
            }
            L4::Tcp(_) => panic!("expected udp"),
        }
    }

    #[test]
    fn raw_ip_decodes() {
        expect_udp(LinkType::Raw, &udp_v4());
    }

    #[test]
    fn null_loopback_decodes_either_byte_order() {
        for af in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let mut f = af.to_vec();
            f.extend(udp_v4());
            expect_udp(LinkType::Null, &f);
            expect_udp(LinkType::Loop, &f);
        }
    }

    #[test]
    fn linux_sll_decodes() {
        let mut f = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        f.extend(udp_v4());
        expect_udp(LinkType::LinuxSll, &f);
    }

    #[test]
    fn linux_sll2_decodes() {
        let mut f = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        f.extend(udp_v4());
        expect_udp(LinkType::LinuxSll2, &f);
    }

    #[test]
    fn qinq_ethernet_decodes() {
        let mut f = vec![0u8; 12];
        f.extend([0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00]);
        f.extend(udp_v4());
        expect_udp(LinkType::Ethernet, &f);
    }

    /// Compares two results field by field (`Segment` holds borrowed slices, so compare what
    /// they point at).
    fn same(a: &Result<Segment<'_>, Skip>, b: &Result<Segment<'_>, Skip>) -> bool {
        match (a, b) {
            (Err(x), Err(y)) => x == y,
            (Ok(x), Ok(y)) => {
                x.src == y.src
                    && x.dst == y.dst
                    && match (x.l4, y.l4) {
                        (L4::Tcp(p), L4::Tcp(q)) => {
                            (p.src_port, p.dst_port, p.seq, p.syn, p.ack, p.fin, p.rst, p.payload)
                                == (
                                    q.src_port, q.dst_port, q.seq, q.syn, q.ack, q.fin, q.rst,
                                    q.payload,
                                )
                        }
                        (
                            L4::Udp { src_port: a, dst_port: b, payload: c },
                            L4::Udp { src_port: d, dst_port: e, payload: f },
                        ) => (a, b, c) == (d, e, f),
                        _ => false,
                    }
            }
            _ => false,
        }
    }

    #[test]
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: test-built packets and counters.
    fn ipv4_fast_paths_agree_with_etherparse() {
        let mut tcp = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 7, 1000)
            .psh()
            .write(&mut tcp, &[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
            .unwrap();
        let mut bases = vec![udp_v4(), tcp];
        // IPv4 options (IHL 6) and an ICMP packet.
        let mut opts = udp_v4();
        opts[0] = 0x46;
        opts.splice(20..20, [1, 1, 1, 0]);
        bases.push(opts);
        let mut icmp = udp_v4();
        icmp[9] = 1;
        bases.push(icmp);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut fast_paths = 0;
        let mut quick_paths = 0;
        for base in &bases {
            for i in 0..20_000 {
                let mut p = base.clone();
                // Mutate the bytes the fast path reads (version/IHL, total length, flags and
                // fragment offset, protocol) and the TCP/UDP header, then cut at random.
                for _ in 0..(next() % 4) {
                    let at = [0, 2, 3, 6, 7, 9, 20, 21, 24, 32, 33, 26, 27][(next() % 13) as usize];
                    if let Some(b) = p.get_mut(at) {
                        *b = match next() % 4 {
                            0 => 0,
                            1 => 0xff,
                            2 => *b ^ (1 << (next() % 8)),
                            _ => next() as u8,
                        };
                    }
                }
                if i % 3 == 0 {
                    p.truncate((next() % (p.len() as u64 + 1)) as usize);
                }
                let reference = ip_etherparse(&p);
                let mut framed = vec![0u8; 12];
                framed.extend([0x08, 0x00]);
                framed.extend(&p);
                for (link, frame) in [(LinkType::Raw, &p), (LinkType::Ethernet, &framed)] {
                    if let Some(quick) = quick_tcp(link, frame) {
                        quick_paths += 1;
                        let full = segment(link, frame).map(|s| s.l4);
                        assert!(
                            matches!(full, Ok(L4::Tcp(t)) if format!("{t:?}") == format!("{quick:?}")),
                            "{p:02x?}: {quick:?} vs {full:?}"
                        );
                    }
                }
                if let Some(fast) = ipv4(&p) {
                    fast_paths += 1;
                    assert!(same(&fast, &reference), "{p:02x?}: {fast:?} vs {reference:?}");
                }
                assert!(same(&ip(&p), &reference), "{p:02x?}");
            }
        }
        // The test is only worth something if the fast path took most packets.
        assert!(fast_paths > 40_000, "{fast_paths}");
        assert!(quick_paths > 10_000, "{quick_paths}");
    }

    #[test]
    fn truncated_headers_are_malformed_not_panics() {
        let full = udp_v4();
        for cut in 0..full.len() {
            for link in [LinkType::Raw, LinkType::LinuxSll2, LinkType::Ethernet] {
                assert!(segment(link, full.get(..cut).unwrap()).is_err() || cut > 20);
            }
        }
        assert_eq!(segment(LinkType::Other(147), &full).unwrap_err(), Skip::UnsupportedLink);
    }
}
