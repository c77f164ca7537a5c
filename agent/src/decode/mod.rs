//! Decode: [`Frame`] in, [`Observation`]s out.
//!
//! - `link`: link-type dispatch and L2 to L4 through etherparse's slices (lax for IP), with
//!   the common IPv4 and untagged Ethernet/IPv4/TCP cases read in place on the hot path.
//! - `reader`: the one checked cursor every L7 decoder reads through.
//! - `dns`: names from DNS messages (UDP, and TCP through the flow table).
//! - `tls`: the TLS ClientHello (server name, ALPN, ECH).
//! - `flow`: bounded TCP reassembly in front of TLS and DNS, and the offset-keyed buffer
//!   QUIC reuses.
//! - `quic`: QUIC v1/v2 Initial decryption and CRYPTO reassembly.
//!
//! Architecture invariant: decode does no IO, no logging and no matching; malformed input is
//! an outcome that increments a counter in [`Stats`], never an error, a log line or a panic.
//! Every module here denies `clippy::indexing_slicing` and `clippy::arithmetic_side_effects`.
//!
//! Recognition is by content, not port: any TCP payload that starts with a TLS handshake
//! record, any UDP payload that is a QUIC v1/v2 long-header packet. DNS is the exception, on
//! port 53 only, because a DNS header has no magic to recognise (mDNS and LLMNR are left out
//! on purpose: they are local-link chatter, not destinations).
//!
//! Not done: IP fragment reassembly. A fragmented datagram is counted in
//! [`Stats::ip_fragments`] and skipped; QUIC Initials are at least 1200 bytes and so fragment
//! only on tunnels with a small MTU.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub(crate) mod dns;
pub(crate) mod flow;
pub(crate) mod link;
pub(crate) mod quic;
pub(crate) mod reader;
pub(crate) mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::model::{Frame, Kind, Observation, Timestamp, Transport};
use flow::{FlowKey, Found, TcpTable};
use link::{L4, Skip};
use quic::QuicTable;
use tls::{ClientHello, ServerName};

/// The decoder's caps. Defaults keep a decoder under a few megabytes whatever the traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TCP flows (one direction of a connection) tracked at once.
    pub max_tcp_flows: usize,
    /// QUIC connections (by DCID) tracked at once.
    pub max_quic_connections: usize,
    /// Bytes buffered per TCP flow or QUIC CRYPTO stream; also the largest ClientHello.
    pub max_flow_bytes: usize,
    /// Bytes buffered by all flows of one table (TCP and QUIC each have one).
    pub max_buffered_bytes: usize,
    /// A flow or connection without packets for this long (packet time) is evicted.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tcp_flows: 4096,
            max_quic_connections: 1024,
            max_flow_bytes: 16 * 1024,
            max_buffered_bytes: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    fn idle_timeout_micros(&self) -> u64 {
        u64::try_from(self.idle_timeout.as_micros()).unwrap_or(u64::MAX)
    }
}

/// Counters: what decode saw, what it could not read and what it dropped.
///
/// Fields named `drop_*` are caps that bit (data the agent had to let go); the others are
/// outcomes. None of them is ever keyed by a name or an address (privacy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames decoded.
    pub frames: u64,
    /// Bytes in those frames (as captured).
    pub bytes: u64,
    /// Frames of a link type we do not decode.
    pub link_unsupported: u64,
    /// Frames cut inside a header or with malformed link, IP or transport headers.
    pub malformed: u64,
    /// Frames that are not IP.
    pub not_ip: u64,
    /// IP packets that are neither TCP nor UDP.
    pub not_tcp_udp: u64,
    /// IP fragments, skipped.
    pub ip_fragments: u64,
    /// DNS messages read (UDP and TCP).
    pub dns_messages: u64,
    /// DNS messages that stopped early (truncated, pointer loop, bad label, not a query).
    pub dns_malformed: u64,
    /// DNS messages whose records or names hit a cap.
    pub dns_capped: u64,
    /// DNS names that were not host names.
    pub dns_invalid_names: u64,
    /// TLS ClientHellos parsed over TCP.
    pub tls_client_hellos: u64,
    /// ClientHellos (TCP or QUIC) whose body could not be read.
    pub tls_malformed: u64,
    /// TLS flows forgotten before their ClientHello was complete (FIN, RST).
    pub tls_incomplete: u64,
    /// ClientHellos without a server name.
    pub sni_absent: u64,
    /// Server names that were IP literals.
    pub sni_ip_literal: u64,
    /// Server names that were not host names.
    pub sni_invalid: u64,
    /// ClientHellos that carried an ECH extension.
    pub ech: u64,
    /// QUIC Initial packets seen (v1 and v2).
    pub quic_initials: u64,
    /// QUIC Initials that did not decrypt with client keys (server Initials, garbage).
    pub quic_undecryptable: u64,
    /// QUIC Initials with malformed frames or a CRYPTO stream that is not a ClientHello.
    pub quic_malformed: u64,
    /// ClientHellos parsed from QUIC.
    pub quic_client_hellos: u64,
    /// Drop: a new TCP flow found the table full.
    pub drop_tcp_table_full: u64,
    /// Drop: a new QUIC connection found the table full.
    pub drop_quic_table_full: u64,
    /// Drop: a flow or CRYPTO stream went past the per-flow byte cap.
    pub drop_flow_bytes: u64,
    /// Drop: a flow had too many separate out-of-order ranges.
    pub drop_flow_gaps: u64,
    /// Drop: the table's byte budget was spent.
    pub drop_buffer_budget: u64,
    /// Drop: an incomplete flow or connection was evicted after the idle timeout.
    pub drop_idle_evicted: u64,
}

impl Stats {
    /// All drops: caps that made the decoder let go of data.
    pub fn drops(&self) -> u64 {
        [
            self.drop_tcp_table_full,
            self.drop_quic_table_full,
            self.drop_flow_bytes,
            self.drop_flow_gaps,
            self.drop_buffer_budget,
            self.drop_idle_evicted,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Adds another decoder's counters (live capture runs one decoder per interface).
    pub fn merge(&mut self, other: &Stats) {
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f = self.$f.saturating_add(other.$f); )* };
        }
        add!(
            frames,
            bytes,
            link_unsupported,
            malformed,
            not_ip,
            not_tcp_udp,
            ip_fragments,
            dns_messages,
            dns_malformed,
            dns_capped,
            dns_invalid_names,
            tls_client_hellos,
            tls_malformed,
            tls_incomplete,
            sni_absent,
            sni_ip_literal,
            sni_invalid,
            ech,
            quic_initials,
            quic_undecryptable,
            quic_malformed,
            quic_client_hellos,
            drop_tcp_table_full,
            drop_quic_table_full,
            drop_flow_bytes,
            drop_flow_gaps,
            drop_buffer_budget,
            drop_idle_evicted
        );
    }
}

/// The memory a decoder holds right now, for the bounds tests and the stats line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occupancy {
    /// TCP flows held.
    pub tcp_flows: usize,
    /// QUIC connections held.
    pub quic_connections: usize,
    /// Bytes buffered by TCP flows and QUIC CRYPTO streams together.
    pub buffered_bytes: usize,
}

/// A stateful decoder: one per capture source.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    stats: Stats,
    tcp: TcpTable,
    quic: QuicTable,
    scratch: Vec<u8>,
    found: Vec<Found>,
    hellos: Vec<ClientHello>,
}

/// Addresses and time of the packet being decoded.
#[derive(Clone, Copy)]
struct Ctx {
    ts: Timestamp,
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
}

impl Decoder {
    /// A decoder with the given caps.
    pub fn new(limits: Limits) -> Self {
        Decoder { limits, ..Decoder::default() }
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What the flow tables hold right now.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            tcp_flows: self.tcp.len(),
            quic_connections: self.quic.len(),
            buffered_bytes: self.tcp.buffered().saturating_add(self.quic.buffered()),
        }
    }

    /// Decodes one frame, appending any observations it completes to `out`.
    pub fn decode(&mut self, frame: &Frame<'_>, out: &mut Vec<Observation>) {
        self.stats.frames = self.stats.frames.saturating_add(1);
        let len = u64::try_from(frame.data.len()).unwrap_or(u64::MAX);
        self.stats.bytes = self.stats.bytes.saturating_add(len);
        // Most frames are bulk TCP the flow table does not want: decide that from the TCP
        // header alone, before building addresses and flow keys.
        let quick = link::quick_tcp(frame.link, frame.data);
        if let Some(tcp) = &quick
            && !self.tcp.wants(tcp, frame.ts, &self.limits, &mut self.stats)
        {
            return;
        }
        let seg = match link::segment(frame.link, frame.data) {
            Ok(seg) => seg,
            Err(skip) => {
                let counter = match skip {
                    Skip::UnsupportedLink => &mut self.stats.link_unsupported,
                    Skip::Malformed => &mut self.stats.malformed,
                    Skip::NotIp => &mut self.stats.not_ip,
                    Skip::Fragment => &mut self.stats.ip_fragments,
                    Skip::NotTcpUdp => &mut self.stats.not_tcp_udp,
                };
                *counter = counter.saturating_add(1);
                return;
            }
        };
        match seg.l4 {
            L4::Udp { src_port, dst_port, payload } => {
                let ctx = ctx(frame.ts, seg.src, src_port, seg.dst, dst_port, Transport::Udp);
                if src_port == 53 || dst_port == 53 {
                    self.stats.dns_messages = self.stats.dns_messages.saturating_add(1);
                    let names = dns::names(payload);
                    self.dns_observations(&names, ctx, out);
                } else if QuicTable::looks_like_long_header(payload) {
                    self.quic.on_datagram(
                        payload,
                        frame.ts,
                        &self.limits,
                        &mut self.stats,
                        &mut self.scratch,
                        &mut self.hellos,
                    );
                    let hellos = std::mem::take(&mut self.hellos);
                    for hello in &hellos {
                        self.hello_observation(hello, Kind::QuicSni, ctx, out);
                    }
                    self.hellos = hellos;
                    self.hellos.clear();
                }
            }
            L4::Tcp(tcp) => {
                if quick.is_none() && !self.tcp.wants(&tcp, frame.ts, &self.limits, &mut self.stats)
                {
                    return;
                }
                let ctx =
                    ctx(frame.ts, seg.src, tcp.src_port, seg.dst, tcp.dst_port, Transport::Tcp);
                self.tcp.on_segment(
                    FlowKey { src: ctx.src, dst: ctx.dst },
                    &tcp,
                    frame.ts,
                    &self.limits,
                    &mut self.stats,
                    &mut self.scratch,
                    &mut self.found,
                );
                let found = std::mem::take(&mut self.found);
                for f in &found {
                    match f {
                        Found::Hello(hello) => {
                            self.hello_observation(hello, Kind::TlsSni, ctx, out)
                        }
                        Found::Dns(names) => self.dns_observations(names, ctx, out),
                    }
                }
                self.found = found;
                self.found.clear();
            }
        }
    }

    fn dns_observations(&mut self, names: &dns::Names, ctx: Ctx, out: &mut Vec<Observation>) {
        let s = &mut self.stats;
        if names.error.is_some() {
            s.dns_malformed = s.dns_malformed.saturating_add(1);
        }
        if names.capped {
            s.dns_capped = s.dns_capped.saturating_add(1);
        }
        s.dns_invalid_names = s.dns_invalid_names.saturating_add(u64::from(names.invalid));
        for name in &names.names {
            out.push(observation(Kind::Dns, name.clone(), ctx, Vec::new(), false));
        }
    }

    fn hello_observation(
        &mut self,
        hello: &ClientHello,
        kind: Kind,
        ctx: Ctx,
        out: &mut Vec<Observation>,
    ) {
        let s = &mut self.stats;
        if hello.ech {
            s.ech = s.ech.saturating_add(1);
        }
        let name = match &hello.server_name {
            ServerName::Name(n) | ServerName::EchOuter(n) => n.clone(),
            ServerName::IpLiteral(_) => {
                s.sni_ip_literal = s.sni_ip_literal.saturating_add(1);
                return;
            }
            ServerName::Invalid => {
                s.sni_invalid = s.sni_invalid.saturating_add(1);
                return;
            }
            ServerName::Absent => {
                s.sni_absent = s.sni_absent.saturating_add(1);
                return;
            }
        };
        out.push(observation(kind, name, ctx, hello.alpn.clone(), hello.ech));
    }
}

fn ctx(
    ts: Timestamp,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    transport: Transport,
) -> Ctx {
    Ctx { ts, src: SocketAddr::new(src, sport), dst: SocketAddr::new(dst, dport), transport }
}

fn observation(kind: Kind, name: String, ctx: Ctx, alpn: Vec<String>, ech: bool) -> Observation {
    Observation {
        kind,
        name,
        ts: ctx.ts,
        src: ctx.src,
        dst: ctx.dst,
        transport: ctx.transport,
        alpn,
        ech,
    }
}
