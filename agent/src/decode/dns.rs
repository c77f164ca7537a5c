//! DNS messages (RFC 1035) over UDP and TCP: the names in questions and in A, AAAA, CNAME,
//! SVCB and HTTPS answers.
//!
//! What counts as a name: every question name; the owner name of every A, AAAA, CNAME, SVCB
//! (64) and HTTPS (65) answer; a CNAME's target (so `x.example CNAME api.openai.com` yields
//! `api.openai.com`, DESIGN.md's CNAME chains); and an SVCB/HTTPS record's `TargetName` when it
//! is not the root. Authority and additional sections are skipped: they name servers, not
//! destinations.
//!
//! Caps, each counted by the caller through [`DnsError`]: at most [`MAX_JUMPS`] compression
//! pointers per name (a pointer loop ends there), names at most 255 bytes on the wire, at most
//! [`MAX_RECORDS`] question and answer records per message and [`MAX_NAMES`] names out.
//! Labels must be letters, digits, `-` or `_`; anything else makes the name invalid (counted)
//! rather than an observation, since catalog names are plain LDH in punycode.

use crate::decode::reader::Reader;

/// Compression pointers followed per name before giving up (a loop never gets further).
pub(crate) const MAX_JUMPS: u32 = 16;
/// Questions plus answers parsed per message.
pub(crate) const MAX_RECORDS: u16 = 64;
/// Distinct names returned per message.
pub(crate) const MAX_NAMES: usize = 32;
/// The longest encoded name RFC 1035 allows.
const MAX_NAME_WIRE: usize = 255;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_SVCB: u16 = 64;
const TYPE_HTTPS: u16 = 65;

/// Why a message or name could not be fully read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DnsError {
    /// The message ends inside a header, name or record.
    Truncated,
    /// More than [`MAX_JUMPS`] compression pointers: a loop or a hostile chain.
    PointerLoop,
    /// A name longer than 255 bytes on the wire.
    NameTooLong,
    /// A label type other than a plain label or a pointer (the obsolete 0x40 and 0x80 types).
    BadLabel,
    /// Not a standard query or response (opcode other than QUERY).
    NotQuery,
}

/// The names of one message, and what went wrong while reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Names {
    /// Lowercase names, without a trailing dot, deduplicated, in message order.
    pub(crate) names: Vec<String>,
    /// Names that decoded but are not valid host names.
    pub(crate) invalid: u32,
    /// Set when reading stopped early; `names` holds what was read before.
    pub(crate) error: Option<DnsError>,
    /// Set when [`MAX_RECORDS`] or [`MAX_NAMES`] cut the message short.
    pub(crate) capped: bool,
}

/// Reads the names out of one DNS message.
pub(crate) fn names(msg: &[u8]) -> Names {
    let mut out = Names::default();
    if let Err(e) = read_message(msg, &mut out) {
        out.error = Some(e);
    }
    out
}

fn read_message(msg: &[u8], out: &mut Names) -> Result<(), DnsError> {
    let whole = Reader::new(msg);
    let mut r = whole;
    let _id = r.u16().ok_or(DnsError::Truncated)?;
    let flags = r.u16().ok_or(DnsError::Truncated)?;
    if (flags >> 11) & 0xf != 0 {
        return Err(DnsError::NotQuery);
    }
    let qd = r.u16().ok_or(DnsError::Truncated)?;
    let an = r.u16().ok_or(DnsError::Truncated)?;
    r.skip(4).ok_or(DnsError::Truncated)?;
    let is_response = flags & 0x8000 != 0;
    let mut budget = MAX_RECORDS;
    let mut name = String::new();
    for _ in 0..qd {
        if !spend(&mut budget, out) {
            return Ok(());
        }
        read_name(&mut r, &whole, &mut name)?;
        r.skip(4).ok_or(DnsError::Truncated)?;
        push(out, &name);
    }
    if !is_response {
        return Ok(());
    }
    for _ in 0..an {
        if !spend(&mut budget, out) {
            return Ok(());
        }
        read_name(&mut r, &whole, &mut name)?;
        let rtype = r.u16().ok_or(DnsError::Truncated)?;
        r.skip(6).ok_or(DnsError::Truncated)?;
        let mut rdata = r.sub_u16().ok_or(DnsError::Truncated)?;
        match rtype {
            TYPE_A | TYPE_AAAA => push(out, &name),
            TYPE_CNAME => {
                push(out, &name);
                // The target may point anywhere in the message, so it is read through a
                // reader over the whole message positioned at the RDATA.
                let mut target = whole.at(rdata_start(&r, &rdata)).ok_or(DnsError::Truncated)?;
                read_name(&mut target, &whole, &mut name)?;
                push(out, &name);
            }
            TYPE_SVCB | TYPE_HTTPS => {
                push(out, &name);
                let _priority = rdata.u16().ok_or(DnsError::Truncated)?;
                let mut target = whole.at(rdata_start(&r, &rdata)).ok_or(DnsError::Truncated)?;
                read_name(&mut target, &whole, &mut name)?;
                push(out, &name);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The absolute offset of `rdata`'s next byte, given the reader `after` positioned just past
/// the whole RDATA.
fn rdata_start(after: &Reader<'_>, rdata: &Reader<'_>) -> usize {
    after.position().saturating_sub(rdata.left())
}

fn spend(budget: &mut u16, out: &mut Names) -> bool {
    match budget.checked_sub(1) {
        Some(b) => {
            *budget = b;
            true
        }
        None => {
            out.capped = true;
            false
        }
    }
}

/// Adds a decoded name (empty for the root) unless it is a duplicate or invalid.
fn push(out: &mut Names, name: &str) {
    if name.is_empty() || out.names.iter().any(|n| n == name) {
        return;
    }
    if !is_host_name(name) {
        out.invalid = out.invalid.saturating_add(1);
        return;
    }
    if out.names.len() >= MAX_NAMES {
        out.capped = true;
        return;
    }
    out.names.push(name.to_owned());
}

/// Letters, digits, `-` and `_` in labels of 1 to 63 bytes.
pub(crate) fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Reads a possibly compressed name at `r` into `out` (lowercased, dot-separated, no trailing
/// dot; empty for the root), leaving `r` after the name's first pointer or terminator.
fn read_name<'a>(r: &mut Reader<'a>, whole: &Reader<'a>, out: &mut String) -> Result<(), DnsError> {
    out.clear();
    let mut cur = *r;
    let mut jumped = false;
    let mut jumps = 0u32;
    let mut wire_len = 0usize;
    loop {
        let len = cur.u8().ok_or(DnsError::Truncated)?;
        match len >> 6 {
            0 if len == 0 => break,
            0 => {
                let label = cur.take(usize::from(len)).ok_or(DnsError::Truncated)?;
                wire_len = wire_len.saturating_add(usize::from(len)).saturating_add(1);
                if wire_len >= MAX_NAME_WIRE {
                    return Err(DnsError::NameTooLong);
                }
                if !out.is_empty() {
                    out.push('.');
                }
                // A byte outside ASCII, or a '.', cannot be a host name; it is kept as a
                // replacement character so that `is_host_name` rejects the whole name.
                out.extend(label.iter().map(|&b| {
                    if b.is_ascii() && b != b'.' {
                        char::from(b.to_ascii_lowercase())
                    } else {
                        '\u{fffd}'
                    }
                }));
            }
            3 => {
                let low = cur.u8().ok_or(DnsError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if !jumped {
                    *r = cur;
                    jumped = true;
                }
                jumps = jumps.saturating_add(1);
                if jumps > MAX_JUMPS {
                    return Err(DnsError::PointerLoop);
                }
                cur = whole.at(target).ok_or(DnsError::Truncated)?;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
    if !jumped {
        *r = cur;
    }
    Ok(())
}

/// Splits a TCP DNS byte stream into its 2-byte length-prefixed messages (RFC 7766): the
/// complete messages and how many bytes they took. A trailing partial message is left for
/// the next segment.
pub(crate) fn split_tcp(stream: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut r = Reader::new(stream);
    let mut messages = Vec::new();
    let mut consumed = 0;
    loop {
        let mut probe = r;
        let Some(msg) = probe.sub_u16() else { break };
        messages.push(msg.peek_rest());
        r = probe;
        consumed = r.position();
    }
    (messages, consumed)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // Reason: fixture offsets of known-good test data.
mod tests {
    use super::*;

    /// Builds a message: header flags, then question names, then answer records given as
    /// (owner bytes, type, rdata bytes).
    fn message(flags: u16, questions: &[&[u8]], answers: &[(&[u8], u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend(flags.to_be_bytes());
        m.extend(u16::try_from(questions.len()).unwrap().to_be_bytes());
        m.extend(u16::try_from(answers.len()).unwrap().to_be_bytes());
        m.extend([0, 0, 0, 0]);
        for q in questions {
            m.extend(*q);
            m.extend([0, 1, 0, 1]);
        }
        for (owner, t, rdata) in answers {
            m.extend(*owner);
            m.extend(t.to_be_bytes());
            m.extend([0, 1, 0, 0, 0, 60]);
            m.extend(u16::try_from(rdata.len()).unwrap().to_be_bytes());
            m.extend(*rdata);
        }
        m
    }

    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn check(msg: &[u8], expected: &[&str]) {
        let got = names(msg);
        assert_eq!(got.names, expected, "{got:?}");
    }

    #[test]
    fn query_yields_question_name_lowercased() {
        check(&message(0x0100, &[&wire("ChatGPT.COM.")], &[]), &["chatgpt.com"]);
    }

    #[test]
    fn response_with_compressed_answers_yields_each_name_once() {
        // Owner names point back to the question at offset 12.
        let m = message(
            0x8180,
            &[&wire("api.openai.com")],
            &[(&[0xc0, 12], TYPE_A, &[1, 2, 3, 4]), (&[0xc0, 12], TYPE_AAAA, &[0; 16])],
        );
        check(&m, &["api.openai.com"]);
    }

    #[test]
    fn cname_target_that_matches_counts() {
        let target = wire("api.openai.com");
        let m =
            message(0x8180, &[&wire("proxy.corp.example")], &[(&[0xc0, 12], TYPE_CNAME, &target)]);
        check(&m, &["proxy.corp.example", "api.openai.com"]);
    }

    #[test]
    fn https_record_target_name_counts_and_root_target_does_not() {
        let mut rdata = vec![0, 1];
        rdata.extend(wire("svc.claude.ai"));
        rdata.extend([0, 1, 0, 3, 2, b'h', b'3']);
        let m = message(
            0x8180,
            &[&wire("claude.ai")],
            &[(&[0xc0, 12], TYPE_HTTPS, &rdata), (&[0xc0, 12], TYPE_SVCB, &[0, 1, 0])],
        );
        check(&m, &["claude.ai", "svc.claude.ai"]);
    }

    #[test]
    fn dns_compression_loop_is_rejected() {
        // The question name is a pointer to itself.
        let got = names(&message(0x0100, &[&[0xc0, 12]], &[]));
        assert_eq!(got.error, Some(DnsError::PointerLoop));
        assert!(got.names.is_empty());
        // Two pointers pointing at each other (offset 12 -> 14 -> 12).
        let got = names(&message(0x0100, &[&[0xc0, 14, 0xc0, 12]], &[]));
        assert_eq!(got.error, Some(DnsError::PointerLoop));
    }

    /// A message whose second question reaches `deep.example` through `nodes` chained
    /// pointers after its own, so `nodes + 1` jumps in all.
    fn chained(nodes: u16) -> Vec<u8> {
        let mut m = message(0x0100, &[&wire("deep.example"), &[0xc0, 36]], &[]);
        assert_eq!(m.len(), 36);
        for i in 0..nodes {
            let next = if i + 1 == nodes { 12 } else { 36 + 2 * (i + 1) };
            m.extend((0xc000 | next).to_be_bytes());
        }
        m
    }

    #[test]
    fn long_pointer_chain_stops_at_jump_cap() {
        let cap = u16::try_from(MAX_JUMPS).unwrap();
        let ok = names(&chained(cap - 1));
        assert_eq!((ok.names.as_slice(), ok.error), (&["deep.example".to_owned()][..], None));
        let capped = names(&chained(cap));
        assert_eq!(capped.error, Some(DnsError::PointerLoop));
    }

    #[test]
    fn truncated_and_lying_messages_fail_cleanly() {
        let m = message(0x8180, &[&wire("claude.ai")], &[(&[0xc0, 12], TYPE_A, &[1, 2, 3, 4])]);
        for cut in 0..m.len() {
            let _ = names(m.get(..cut).unwrap());
        }
        // An answer count far larger than the records present.
        let mut lying = m;
        *lying.get_mut(7).unwrap() = 200;
        let got = names(&lying);
        assert_eq!(got.names, ["claude.ai"]);
        assert_eq!(got.error, Some(DnsError::Truncated));
    }

    #[test]
    fn non_host_names_are_counted_not_returned() {
        let got = names(&message(0x0100, &[b"\x03a b\x07example\x00"], &[]));
        assert!(got.names.is_empty());
        assert_eq!(got.invalid, 1);
    }

    #[test]
    fn over_long_name_is_rejected() {
        let mut name = Vec::new();
        for _ in 0..5 {
            name.push(63);
            name.extend([b'a'; 63]);
        }
        name.push(0);
        assert_eq!(names(&message(0x0100, &[&name], &[])).error, Some(DnsError::NameTooLong));
    }

    #[test]
    fn tcp_stream_holds_several_messages_and_a_partial_one() {
        let a = message(0x0100, &[&wire("claude.ai")], &[]);
        let b = message(0x0100, &[&wire("chatgpt.com")], &[]);
        let mut stream = Vec::new();
        for m in [&a, &b] {
            stream.extend(u16::try_from(m.len()).unwrap().to_be_bytes());
            stream.extend(m.iter());
        }
        let whole = stream.len();
        stream.extend([0, 40, 1, 2]);
        let (msgs, used) = split_tcp(&stream);
        assert_eq!(msgs, [&a[..], &b[..]]);
        assert_eq!(used, whole);
    }
}
