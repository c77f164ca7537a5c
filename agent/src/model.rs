//! The nouns that flow between the agent's stages: a captured [`Frame`], an [`Observation`]
//! decoded from it, and the [`Timestamp`] both carry.
//!
//! These types live here, not in the stage that produces them, so that `capture`, `decode` and
//! `matching` never import each other (STYLE.md, "data flows one way"). An `Observation` lives
//! only in memory: it is dropped at once when it matches nothing (DESIGN.md, invariant 1), so
//! it deliberately has no `Serialize` and no `Display`.

use std::fmt;
use std::net::SocketAddr;

/// A point in time, in microseconds since the Unix epoch (UTC), as libpcap reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Builds a timestamp from seconds and microseconds, clamping negative values to the
    /// epoch.
    pub fn from_parts(secs: i64, micros: i64) -> Self {
        let secs = u64::try_from(secs).unwrap_or(0);
        let micros = u64::try_from(micros).unwrap_or(0);
        Timestamp(secs.saturating_mul(1_000_000).saturating_add(micros))
    }

    /// Microseconds elapsed from `earlier` to `self`, zero when `earlier` is later.
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Timestamp {
    /// Appends the RFC 3339 form (the same text as `Display`) to `out` without going through
    /// `core::fmt`: this runs once per printed observation.
    pub fn push_rfc3339(self, out: &mut Vec<u8>) {
        let (year, month, day, hour, minute, second, micros) = self.fields();
        if year <= 9999 {
            // Fixed width: fill a template in place and append it once.
            let mut text = *b"0000-00-00T00:00:00.000000Z";
            let (y, rest) = text.split_at_mut(4);
            fill_digits(y, year);
            let fields = [(month, 2), (day, 2), (hour, 2), (minute, 2), (second, 2), (micros, 6)];
            // Each field follows a one-byte separator.
            let mut rest = rest;
            for (value, width) in fields {
                let (_separator, after) = rest.split_at_mut(1);
                let (digits, after) = after.split_at_mut(width);
                fill_digits(digits, value);
                rest = after;
            }
            out.extend_from_slice(&text);
            return;
        }
        push_decimal(out, year, 4);
        out.push(b'-');
        push_decimal(out, month, 2);
        out.push(b'-');
        push_decimal(out, day, 2);
        out.push(b'T');
        push_decimal(out, hour, 2);
        out.push(b':');
        push_decimal(out, minute, 2);
        out.push(b':');
        push_decimal(out, second, 2);
        out.push(b'.');
        push_decimal(out, micros, 6);
        out.push(b'Z');
    }

    /// Year, month, day, hour, minute, second and microseconds, in UTC.
    fn fields(self) -> (u64, u64, u64, u64, u64, u64, u64) {
        let micros = self.0 % 1_000_000;
        let secs = self.0 / 1_000_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        (year, month, day, rem / 3600, (rem % 3600) / 60, rem % 60, micros)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microseconds, for example `2025-11-29T00:12:03.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day, hour, minute, second, micros) = self.fields();
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits (what `{value:0width$}`
/// prints; widths above 20 count as 20), to `out`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, value: u64, width: usize) {
    // u64::MAX has 20 digits; fill from the right.
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut v = value;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
        start -= 1;
        if v == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Writes the last `dst.len()` decimal digits of `value` into `dst`, zero-padded.
fn fill_digits(dst: &mut [u8], value: u64) {
    let mut v = value;
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Howard Hinnant's `civil_from_days` for days since 1970-01-01 (non-negative only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A libpcap data link type (the `LINKTYPE_*` registry), as far as decode needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// `LINKTYPE_NULL` (0): BSD loopback, a 4-byte address family in the capturing host's
    /// byte order.
    Null,
    /// `LINKTYPE_ETHERNET` (1), with any 802.1Q / 802.1ad (QinQ) tags.
    Ethernet,
    /// `LINKTYPE_RAW` (101, and the historical 12 and 14): a bare IPv4 or IPv6 packet.
    Raw,
    /// `LINKTYPE_LOOP` (108): OpenBSD loopback, a 4-byte address family in network order.
    Loop,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1.
    LinuxSll,
    /// `LINKTYPE_IPV4` (228).
    Ipv4,
    /// `LINKTYPE_IPV6` (229).
    Ipv6,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2, what the `any` device gives.
    LinuxSll2,
    /// Anything else: counted and skipped.
    Other(i32),
}

impl LinkType {
    /// Maps a libpcap `LINKTYPE_*` number.
    pub fn from_linktype(value: i32) -> Self {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }
}

/// One captured packet as libpcap handed it over: the capture time, the link type of its
/// source and the captured bytes (possibly shorter than the packet on the wire).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// When the packet was captured.
    pub ts: Timestamp,
    /// The link type of the capture the packet came from.
    pub link: LinkType,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
}

/// Where a name was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A DNS question or answer (UDP or TCP).
    Dns,
    /// The server name of a TLS ClientHello over TCP.
    TlsSni,
    /// The server name of a TLS ClientHello inside QUIC Initial packets.
    QuicSni,
}

impl Kind {
    /// The stable output name: `dns`, `tls_sni` or `quic_sni`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::TlsSni => "tls_sni",
            Kind::QuicSni => "quic_sni",
        }
    }

    /// The sighting kind a match of this observation is reported as.
    pub fn sighting_kind(self) -> aiscout_wire::SightingKind {
        match self {
            Kind::Dns => aiscout_wire::SightingKind::Dns,
            Kind::TlsSni => aiscout_wire::SightingKind::TlsSni,
            Kind::QuicSni => aiscout_wire::SightingKind::QuicSni,
        }
    }
}

/// The transport a flow used, for process attribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A name the agent saw on the network, before matching.
///
/// `name` is already normalised the way the catalog compares: ASCII-lowercased and without a
/// trailing dot. Only DNS-shaped names become observations; IP literals and invalid server
/// names are counted by decode and dropped there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Where the name was seen.
    pub kind: Kind,
    /// The name, lowercase, without a trailing dot.
    pub name: String,
    /// Capture time of the packet that completed the observation.
    pub ts: Timestamp,
    /// Source address and port of that packet.
    pub src: SocketAddr,
    /// Destination address and port of that packet.
    pub dst: SocketAddr,
    /// The transport of the packet.
    pub transport: Transport,
    /// ALPN protocols offered in the ClientHello, in order (empty for DNS).
    pub alpn: Vec<String>,
    /// Whether the ClientHello carried an Encrypted Client Hello extension (0xfe0d). The name
    /// is then the outer, client-facing name. GREASE ECH looks the same on the wire.
    pub ech: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_displays_rfc3339_utc_with_micros() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp::from_parts(1_700_000_000, 123_456).to_string(),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            Timestamp::from_parts(951_782_400, 0).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn push_rfc3339_writes_what_display_writes() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![0, 1, 999_999, 1_000_000, 951_782_400_000_000, u64::MAX];
        // Years past 9999 (five and six digits) and a spread of ordinary times.
        values.extend([253_402_300_800_000_000, 253_402_300_799_999_999, u64::MAX / 3]);
        for _ in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            values.push(rng % 4_102_444_800_000_000);
            values.push(rng);
        }
        for v in values {
            let mut fast = Vec::new();
            Timestamp(v).push_rfc3339(&mut fast);
            assert_eq!(String::from_utf8(fast).unwrap(), Timestamp(v).to_string(), "{v}");
        }
    }

    #[test]
    fn push_decimal_pads_like_format() {
        for (v, w) in
            [(0, 0), (0, 1), (7, 2), (42, 2), (123, 2), (5, 6), (u64::MAX, 4), (10, 4), (9, 20)]
        {
            let mut s = Vec::new();
            push_decimal(&mut s, v, w);
            assert_eq!(String::from_utf8(s).unwrap(), format!("{v:0w$}"));
        }
    }

    #[test]
    fn negative_pcap_times_clamp_to_epoch() {
        assert_eq!(Timestamp::from_parts(-5, -1), Timestamp(0));
    }
}
