//! Bounded per-flow reassembly: the TCP stream in front of a TLS ClientHello or DNS over TCP,
//! and (through [`RangeBuf`]) the QUIC CRYPTO stream.
//!
//! # Design constraints
//! The agent must see a ClientHello that arrives split over several segments, out of order or
//! retransmitted (DESIGN.md, "Hard cases"), on a laptop, whatever the traffic (invariant 4:
//! bounded, degrade by dropping and counting). So every flow holds at most
//! `max_flow_bytes`, the table at most `max_tcp_flows` flows, and all buffers of a table
//! together at most `max_buffered_bytes`; a flow idle for `idle_timeout` (packet time) is
//! evicted. Every cap that bites increments a drop counter in [`Stats`].
//!
//! # Lifecycle of a TCP flow (one direction of a connection)
//! - A client SYN creates a flow in state `Unknown`, anchored at ISN + 1, so that segments
//!   that arrive before the first one are kept; a flow towards or from port 53 starts as
//!   `Dns` instead.
//! - Without a SYN (capture started mid-connection, or the live filter dropped it), a segment
//!   whose payload starts with a TLS handshake record header (0x16 0x03) creates a `Tls` flow
//!   anchored at its sequence number; one on port 53 creates a `Dns` flow.
//! - An `Unknown` flow becomes `Tls` when its first byte is 0x16, and is forgotten otherwise.
//! - A `Tls` flow is forgotten as soon as its ClientHello is parsed, or once it is clearly not
//!   a ClientHello. A `Dns` flow yields each complete length-prefixed message and lives until
//!   FIN, RST or idle eviction.
//!
//! # In-memory format
//! [`RangeBuf`] keeps the bytes from the stream offset `base` on in one `Vec`, plus the sorted,
//! merged list of byte ranges actually received (at most [`MAX_RANGES`]). The contiguous
//! prefix is what parsers see. Overlapping data (retransmissions) is written again in place.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use crate::decode::dns;
use crate::decode::link::TcpSeg;
use crate::decode::tls::{self, ClientHello, Records};
use crate::decode::{Limits, Stats};
use crate::model::Timestamp;

/// Separate byte ranges a buffer may hold before the flow is dropped as too fragmented.
pub(crate) const MAX_RANGES: usize = 64;

/// A byte budget shared by all buffers of one table.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    pub(crate) used: usize,
}

/// Why an insertion was not (fully) stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    Stored,
    /// Some bytes lay beyond the per-flow cap.
    BeyondCap,
    /// More than [`MAX_RANGES`] separate ranges.
    TooManyRanges,
    /// The table's byte budget is spent.
    OverBudget,
}

/// A reassembly buffer keyed by stream offset.
#[derive(Debug, Default)]
pub(crate) struct RangeBuf {
    base: u64,
    data: Vec<u8>,
    ranges: Vec<(usize, usize)>,
}

impl RangeBuf {
    /// Stores `bytes` at absolute stream offset `offset`.
    pub(crate) fn insert(
        &mut self,
        offset: u64,
        bytes: &[u8],
        cap: usize,
        max_budget: usize,
        budget: &mut Budget,
    ) -> Insert {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let end_abs = offset.saturating_add(len);
        if end_abs <= self.base || bytes.is_empty() {
            return Insert::Stored;
        }
        let skip = usize::try_from(self.base.saturating_sub(offset)).unwrap_or(usize::MAX);
        let Some(bytes) = bytes.get(skip..) else { return Insert::Stored };
        let Ok(start) = usize::try_from(offset.max(self.base).saturating_sub(self.base)) else {
            return Insert::BeyondCap;
        };
        if start >= cap {
            return Insert::BeyondCap;
        }
        let room = cap.saturating_sub(start);
        // Bytes that end exactly at the cap all fit: only a longer run is cut.
        let (bytes, outcome) = match bytes.split_at_checked(room) {
            Some((fits, rest)) if !rest.is_empty() => (fits, Insert::BeyondCap),
            _ => (bytes, Insert::Stored),
        };
        let end = start.saturating_add(bytes.len());
        if end > self.data.len() {
            let growth = end.saturating_sub(self.data.len());
            if budget.used.saturating_add(growth) > max_budget {
                return Insert::OverBudget;
            }
            budget.used = budget.used.saturating_add(growth);
            self.data.resize(end, 0);
        }
        if let Some(dst) = self.data.get_mut(start..end) {
            dst.copy_from_slice(bytes);
        }
        self.add_range(start, end);
        if self.ranges.len() > MAX_RANGES {
            return Insert::TooManyRanges;
        }
        outcome
    }

    fn add_range(&mut self, start: usize, end: usize) {
        // In-order data (the common case) extends the last range.
        if let Some(last) = self.ranges.last_mut()
            && last.0 <= start
            && start <= last.1
        {
            last.1 = last.1.max(end);
            return;
        }
        self.ranges.push((start, end));
        self.ranges.sort_unstable();
        // Merge in place: `dedup_by` hands each range with the last one kept before it.
        self.ranges.dedup_by(|next, kept| {
            let overlaps = next.0 <= kept.1;
            if overlaps {
                kept.1 = kept.1.max(next.1);
            }
            overlaps
        });
    }

    /// The bytes received without a gap from `base` on.
    pub(crate) fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => self.data.get(..end).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Drops the first `n` contiguous bytes (already parsed) and returns them to the budget.
    pub(crate) fn consume(&mut self, n: usize, budget: &mut Budget) {
        let n = n.min(self.contiguous().len());
        self.data.drain(..n);
        budget.used = budget.used.saturating_sub(n);
        self.base = self.base.saturating_add(u64::try_from(n).unwrap_or(0));
        self.ranges = self
            .ranges
            .iter()
            .filter_map(|&(s, e)| {
                let (s, e) = (s.saturating_sub(n), e.saturating_sub(n));
                (e > s).then_some((s, e))
            })
            .collect();
    }

    /// Frees the buffer, returning its bytes to the budget.
    pub(crate) fn release(&mut self, budget: &mut Budget) {
        budget.used = budget.used.saturating_sub(self.data.len());
        self.data = Vec::new();
        self.ranges = Vec::new();
    }

    /// Bytes held.
    pub(crate) fn held(&self) -> usize {
        self.data.len()
    }
}

/// One direction of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
}

impl Hash for FlowKey {
    /// Three writes (both addresses as 128-bit integers, IPv4 mapped into IPv6, and both
    /// ports in one word) instead of the derived field-by-field walk, which fed SipHash about
    /// ten small writes per probe. Keys that are equal hash equally; an IPv4 address and its
    /// IPv6-mapped form merely collide.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let ip = |a: &SocketAddr| match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
            IpAddr::V6(v6) => v6.to_bits(),
        };
        state.write_u128(ip(&self.src));
        state.write_u128(ip(&self.dst));
        state.write_u32(u32::from(self.src.port()) << 16 | u32::from(self.dst.port()));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unknown,
    Tls,
    Dns,
}

#[derive(Debug)]
struct Flow {
    base_seq: u32,
    kind: Kind,
    buf: RangeBuf,
    last_seen: Timestamp,
}

/// What a TCP segment completed.
#[derive(Debug)]
pub(crate) enum Found {
    Hello(ClientHello),
    Dns(dns::Names),
}

/// The TCP flow table.
#[derive(Debug, Default)]
pub(crate) struct TcpTable {
    flows: HashMap<FlowKey, Flow>,
    budget: Budget,
    last_sweep: Timestamp,
}

impl TcpTable {
    /// Flows currently held.
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Bytes currently buffered.
    pub(crate) fn buffered(&self) -> usize {
        self.budget.used
    }

    /// Whether `seg` can change the table: the per-packet gate in front of [`Self::on_segment`],
    /// which the caller may skip when this says no. It runs the periodic idle sweep, as every
    /// segment does, and then answers in a few branches and without a hash probe for the
    /// common case: a pure ACK, or, while no flow is tracked, any segment that neither opens a
    /// flow (client SYN) nor starts one by content (DNS port, TLS handshake record). Those are
    /// exactly the segments [`Self::on_segment`] would return from without a change.
    #[inline]
    pub(crate) fn wants(
        &mut self,
        seg: &TcpSeg<'_>,
        ts: Timestamp,
        limits: &Limits,
        stats: &mut Stats,
    ) -> bool {
        self.maybe_sweep(ts, limits, stats);
        if seg.rst {
            return !self.flows.is_empty();
        }
        if seg.syn {
            return !seg.ack;
        }
        if seg.payload.is_empty() {
            // A pure ACK changes nothing; a FIN forgets a tracked flow.
            return seg.fin && !self.flows.is_empty();
        }
        !self.flows.is_empty()
            || seg.src_port == 53
            || seg.dst_port == 53
            || seg.payload.starts_with(&[0x16, 0x03])
    }

    /// Feeds one segment; completed ClientHellos and DNS messages are pushed to `found`.
    #[allow(clippy::too_many_arguments)] // Reason: the decoder's state, split for borrowing.
    pub(crate) fn on_segment(
        &mut self,
        key: FlowKey,
        seg: &TcpSeg<'_>,
        ts: Timestamp,
        limits: &Limits,
        stats: &mut Stats,
        scratch: &mut Vec<u8>,
        found: &mut Vec<Found>,
    ) {
        self.maybe_sweep(ts, limits, stats);
        let dns_port = seg.src_port == 53 || seg.dst_port == 53;
        if seg.rst {
            self.remove(&key, stats);
            return;
        }
        if seg.syn {
            if !seg.ack {
                let kind = if dns_port { Kind::Dns } else { Kind::Unknown };
                self.remove(&key, stats);
                self.create(key, seg.seq.wrapping_add(1), kind, ts, limits, stats);
            }
            return;
        }
        if seg.payload.is_empty() {
            if seg.fin {
                self.remove(&key, stats);
            }
            return;
        }
        // The hot path: bulk data of a connection we do not track. One hash probe at most,
        // none while the table is empty.
        if self.flows.is_empty() || !self.flows.contains_key(&key) {
            let kind = if dns_port {
                Kind::Dns
            } else if seg.payload.starts_with(&[0x16, 0x03]) {
                Kind::Tls
            } else {
                return;
            };
            if !self.create(key, seg.seq, kind, ts, limits, stats) {
                return;
            }
        }
        let Some(flow) = self.flows.get_mut(&key) else { return };
        flow.last_seen = ts;
        // Sequence numbers wrap; an offset in the upper half is a segment from before the
        // anchor (an old retransmission) and carries nothing new.
        let offset = seg.seq.wrapping_sub(flow.base_seq);
        let mut keep = true;
        // A TLS flow cut at the cap is read once more, for a ClientHello that fits before the
        // cap (a hello followed by early data in one large segment), then dropped.
        let mut cut = false;
        if offset < 0x8000_0000 {
            match flow.buf.insert(
                u64::from(offset),
                seg.payload,
                limits.max_flow_bytes,
                limits.max_buffered_bytes,
                &mut self.budget,
            ) {
                Insert::Stored => {}
                Insert::BeyondCap => {
                    // A DNS stream may legitimately run past the cap before we consume; a
                    // ClientHello never should.
                    stats.drop_flow_bytes = stats.drop_flow_bytes.saturating_add(1);
                    cut = flow.kind != Kind::Dns;
                }
                Insert::TooManyRanges => {
                    stats.drop_flow_gaps = stats.drop_flow_gaps.saturating_add(1);
                    keep = false;
                }
                Insert::OverBudget => {
                    stats.drop_buffer_budget = stats.drop_buffer_budget.saturating_add(1);
                    keep = false;
                }
            }
        }
        if keep {
            keep = advance(flow, limits, stats, scratch, found, &mut self.budget);
        }
        if cut || !keep || seg.fin {
            self.remove(&key, stats);
        }
    }

    fn create(
        &mut self,
        key: FlowKey,
        base_seq: u32,
        kind: Kind,
        ts: Timestamp,
        limits: &Limits,
        stats: &mut Stats,
    ) -> bool {
        if self.flows.len() >= limits.max_tcp_flows {
            self.sweep(ts, limits, stats);
        }
        if self.flows.len() >= limits.max_tcp_flows {
            stats.drop_tcp_table_full = stats.drop_tcp_table_full.saturating_add(1);
            return false;
        }
        self.flows.insert(key, Flow { base_seq, kind, buf: RangeBuf::default(), last_seen: ts });
        true
    }

    fn remove(&mut self, key: &FlowKey, stats: &mut Stats) {
        // `HashMap::remove` hashes the key even when the table is empty.
        if self.flows.is_empty() {
            return;
        }
        if let Some(mut flow) = self.flows.remove(key) {
            if flow.kind == Kind::Tls && flow.buf.held() > 0 {
                stats.tls_incomplete = stats.tls_incomplete.saturating_add(1);
            }
            flow.buf.release(&mut self.budget);
        }
    }

    #[inline]
    fn maybe_sweep(&mut self, now: Timestamp, limits: &Limits, stats: &mut Stats) {
        if now.micros_since(self.last_sweep) >= 1_000_000 {
            self.sweep(now, limits, stats);
        }
    }

    /// Evicts flows idle for longer than the idle timeout.
    fn sweep(&mut self, now: Timestamp, limits: &Limits, stats: &mut Stats) {
        self.last_sweep = now;
        let idle = limits.idle_timeout_micros();
        let budget = &mut self.budget;
        self.flows.retain(|_, flow| {
            let keep = now.micros_since(flow.last_seen) <= idle;
            if !keep {
                if flow.buf.held() > 0 {
                    stats.drop_idle_evicted = stats.drop_idle_evicted.saturating_add(1);
                }
                flow.buf.release(budget);
            }
            keep
        });
    }
}

/// Runs the flow's parser over its contiguous bytes. Returns whether to keep the flow.
fn advance(
    flow: &mut Flow,
    limits: &Limits,
    stats: &mut Stats,
    scratch: &mut Vec<u8>,
    found: &mut Vec<Found>,
    budget: &mut Budget,
) -> bool {
    if flow.kind == Kind::Unknown {
        match flow.buf.contiguous().first() {
            None => return true,
            Some(0x16) => flow.kind = Kind::Tls,
            Some(_) => return false,
        }
    }
    match flow.kind {
        Kind::Unknown => true,
        Kind::Tls => {
            match tls::handshake_from_records(flow.buf.contiguous(), limits.max_flow_bytes, scratch)
            {
                Records::NeedMore => return true,
                Records::Complete => match tls::parse_client_hello(scratch) {
                    Ok(hello) => {
                        stats.tls_client_hellos = stats.tls_client_hellos.saturating_add(1);
                        found.push(Found::Hello(hello));
                    }
                    Err(_) => stats.tls_malformed = stats.tls_malformed.saturating_add(1),
                },
                Records::NotTls | Records::NotClientHello => {}
                Records::Malformed => stats.tls_malformed = stats.tls_malformed.saturating_add(1),
                Records::TooLarge => {
                    stats.drop_flow_bytes = stats.drop_flow_bytes.saturating_add(1)
                }
            }
            flow.buf.release(budget);
            false
        }
        Kind::Dns => {
            let (messages, used) = dns::split_tcp(flow.buf.contiguous());
            for msg in messages {
                stats.dns_messages = stats.dns_messages.saturating_add(1);
                found.push(Found::Dns(dns::names(msg)));
            }
            flow.buf.consume(used, budget);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(buf: &mut RangeBuf, offset: u64, bytes: &[u8], budget: &mut Budget) -> Insert {
        buf.insert(offset, bytes, 64, 1 << 20, budget)
    }

    #[test]
    fn out_of_order_and_overlapping_ranges_join_into_one_prefix() {
        let mut b = RangeBuf::default();
        let mut budget = Budget::default();
        assert_eq!(insert(&mut b, 6, b"world", &mut budget), Insert::Stored);
        assert_eq!(b.contiguous(), b"");
        assert_eq!(insert(&mut b, 0, b"hello ", &mut budget), Insert::Stored);
        assert_eq!(b.contiguous(), b"hello world");
        assert_eq!(insert(&mut b, 3, b"lo wo", &mut budget), Insert::Stored);
        assert_eq!(b.contiguous(), b"hello world");
        b.consume(6, &mut budget);
        assert_eq!(b.contiguous(), b"world");
        assert_eq!(insert(&mut b, 2, b"llo ", &mut budget), Insert::Stored);
        assert_eq!(b.contiguous(), b"world");
        assert_eq!(budget.used, 5);
    }

    #[test]
    fn caps_are_reported() {
        let mut b = RangeBuf::default();
        let mut budget = Budget::default();
        assert_eq!(insert(&mut b, 60, b"12345678", &mut budget), Insert::BeyondCap);
        assert_eq!(insert(&mut b, 64, b"x", &mut budget), Insert::BeyondCap);
        assert_eq!(insert(&mut b, u64::MAX, b"x", &mut budget), Insert::BeyondCap);
        // Exactly up to the cap fits (it used to be reported as beyond it).
        let mut b = RangeBuf::default();
        assert_eq!(insert(&mut b, 0, &[7; 64], &mut budget), Insert::Stored);
        assert_eq!(b.contiguous().len(), 64);
        let mut b = RangeBuf::default();
        assert_eq!(insert(&mut b, 0, &[7; 60], &mut budget), Insert::Stored);
        assert_eq!(insert(&mut b, 60, b"1234", &mut budget), Insert::Stored);
        assert_eq!(insert(&mut b, 60, b"12345", &mut budget), Insert::BeyondCap);
        let mut b = RangeBuf::default();
        let mut outcome = Insert::Stored;
        for i in 0..=u64::try_from(MAX_RANGES).unwrap() {
            outcome = b.insert(i * 3 + 1, b"a", 1 << 16, 1 << 20, &mut budget);
        }
        assert_eq!(outcome, Insert::TooManyRanges);
        let mut b = RangeBuf::default();
        let mut small = Budget { used: 0 };
        assert_eq!(b.insert(0, b"abcdef", 64, 4, &mut small), Insert::OverBudget);
        assert_eq!(small.used, 0);
    }
}

#[cfg(test)]
mod range_model_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of inserts (overlapping, out of order, duplicated) leaves the same
        /// contiguous prefix and the same set of ranges as a byte-by-byte model.
        #[test]
        #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: the model indexes its own test buffer.
        fn ranges_match_a_byte_model(inserts in proptest::collection::vec((0usize..200, 1usize..40), 1..30)) {
            let mut buf = RangeBuf::default();
            let mut budget = Budget::default();
            let mut model = vec![None; 256];
            for (offset, len) in inserts {
                let bytes: Vec<u8> = (offset..offset + len).map(|i| i as u8).collect();
                buf.insert(offset as u64, &bytes, 256, 1 << 20, &mut budget);
                for (i, b) in bytes.iter().enumerate() {
                    model[offset + i] = Some(*b);
                }
                let prefix: Vec<u8> = model.iter().map_while(|b| *b).collect();
                prop_assert_eq!(buf.contiguous(), &prefix[..]);
                let mut runs = Vec::new();
                let mut i = 0;
                while i < model.len() {
                    if model[i].is_some() {
                        let start = i;
                        while i < model.len() && model[i].is_some() {
                            i += 1;
                        }
                        runs.push((start, i));
                    } else {
                        i += 1;
                    }
                }
                prop_assert_eq!(&buf.ranges, &runs);
            }
        }
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(client_port: u16, server_port: u16) -> FlowKey {
        FlowKey {
            src: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), client_port),
            dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), server_port),
        }
    }

    /// Everything `on_segment` can change, for the comparison.
    fn snapshot(t: &TcpTable, stats: &Stats, k: &FlowKey) -> (usize, usize, Stats, bool) {
        (t.len(), t.buffered(), stats.clone(), t.flows.contains_key(k))
    }

    /// Whenever `wants` says no, `on_segment` changes nothing and finds nothing: every flag
    /// combination, payload shape and port, against an empty table, a table tracking the
    /// segment's own flow (TLS and DNS) and a table tracking only other flows.
    #[test]
    #[allow(clippy::arithmetic_side_effects)] // Reason: small test counters.
    fn segments_the_gate_refuses_change_nothing() {
        let limits = Limits::default();
        let payloads: [&[u8]; 5] =
            [b"", &[0x16, 0x03, 0x01, 0x02, 0x00], &[0x16], b"GET / HTTP/1.1", &[0, 12, 1]];
        let mut refused = 0;
        let mut wanted = 0;
        for table_state in 0..4 {
            for flags in 0u8..16 {
                for payload in payloads {
                    for (sport, dport) in [(40000, 443), (40000, 53), (53, 40000)] {
                        let k = key(sport, dport);
                        let mut t = TcpTable::default();
                        let mut stats = Stats::default();
                        let ts = Timestamp(5_000_000);
                        match table_state {
                            1 => assert!(t.create(k, 1000, Kind::Tls, ts, &limits, &mut stats)),
                            2 => assert!(t.create(k, 1000, Kind::Dns, ts, &limits, &mut stats)),
                            3 => {
                                assert!(t.create(key(1, 2), 7, Kind::Tls, ts, &limits, &mut stats))
                            }
                            _ => {}
                        }
                        let seg = TcpSeg {
                            src_port: sport,
                            dst_port: dport,
                            seq: 1000,
                            syn: flags & 1 != 0,
                            ack: flags & 2 != 0,
                            fin: flags & 4 != 0,
                            rst: flags & 8 != 0,
                            payload,
                        };
                        if t.wants(&seg, ts, &limits, &mut stats) {
                            wanted += 1;
                            continue;
                        }
                        refused += 1;
                        let before = snapshot(&t, &stats, &k);
                        let (mut scratch, mut found) = (Vec::new(), Vec::new());
                        t.on_segment(k, &seg, ts, &limits, &mut stats, &mut scratch, &mut found);
                        assert!(found.is_empty(), "{table_state} {seg:?}");
                        assert_eq!(snapshot(&t, &stats, &k), before, "{table_state} {seg:?}");
                    }
                }
            }
        }
        // Both answers occur, so the assertions above ran.
        assert!(refused > 100 && wanted > 100, "{refused} {wanted}");
    }
}
