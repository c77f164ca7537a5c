//! Link-type dispatch and L2 to L4 through etherparse's slices (lax for IP).
//!
//! Our own code only strips the pseudo-headers etherparse has no lax entry point for (BSD
//! NULL/LOOP, Linux SLL and SLL2); everything from the EtherType or the IP header down,
//! including 802.1Q and QinQ tags and IPv6 extension headers, is etherparse's. Lax slicing
//! accepts packets cut short by a snap length, which is what we want for a ClientHello whose
//! tail is missing: the reassembly decides, not the link layer.

use std::net::IpAddr;

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

/// IPv4 or IPv6 (with extension headers) and TCP or UDP, laxly: a length field larger than
/// the captured bytes falls back to what was captured.
fn ip(data: &[u8]) -> Result<Segment<'_>, Skip> {
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
    let l4 = match payload.ip_number {
        IpNumber::TCP => {
            let tcp = TcpSlice::from_slice(payload.payload).map_err(|_| Skip::Malformed)?;
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
            let udp = UdpSlice::from_slice_lax(payload.payload).map_err(|_| Skip::Malformed)?;
            L4::Udp {
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                payload: udp.payload(),
            }
        }
        _ => return Err(Skip::NotTcpUdp),
    };
    Ok(Segment { src, dst, l4 })
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
