//! TLS ClientHello (RFC 8446 section 4.1.2): the server name, the ALPN list and whether an
//! Encrypted Client Hello extension is present.
//!
//! Two layers: [`handshake_from_records`] gathers the first handshake message out of one or
//! more TLS records at the start of a TCP stream (a ClientHello may be split over records as
//! well as over segments), and [`parse_client_hello`] reads the message body. QUIC carries the
//! same message in CRYPTO frames without records and calls [`parse_client_hello`] directly.
//!
//! Following rustls's `ServerNamePayload`, an unusable server name is a variant, not an error:
//! [`ServerName`] tells a host name from an IP literal, an ECH outer name and an invalid
//! value.

use std::net::IpAddr;

use crate::decode::dns::is_host_name;
use crate::decode::reader::Reader;

const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
/// RFC 9849 `encrypted_client_hello`.
const EXT_ECH: u16 = 0xfe0d;
/// The largest record body RFC 8446 allows for plaintext, plus slack for old stacks.
const MAX_RECORD: u16 = 16_384 + 2048;
/// ALPN entries kept; browsers offer two or three.
const MAX_ALPN: usize = 8;

/// The server name a ClientHello asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServerName {
    /// A host name, lowercased, without a trailing dot.
    Name(String),
    /// A host name sent next to an ECH extension: the outer, client-facing name.
    EchOuter(String),
    /// An IP address where a host name belongs (RFC 6066 forbids it; some clients do it).
    IpLiteral(IpAddr),
    /// Present but not a host name (bad characters, empty labels, too long).
    Invalid,
    /// No server_name extension.
    Absent,
}

/// What the agent keeps from a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientHello {
    pub(crate) server_name: ServerName,
    pub(crate) alpn: Vec<String>,
    pub(crate) ech: bool,
}

/// Why a ClientHello body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// The state of the handshake message at the start of a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Records {
    /// More bytes are needed.
    NeedMore,
    /// The stream does not start with a TLS handshake record.
    NotTls,
    /// The first handshake message is not a ClientHello (a server's flight, for example).
    NotClientHello,
    /// The ClientHello declares more bytes than `cap`.
    TooLarge,
    /// The records are inconsistent.
    Malformed,
    /// The complete ClientHello body (without its 4-byte header) is in the scratch buffer.
    Complete,
}

/// Gathers the first handshake message from the TLS records at the start of `stream` into
/// `scratch`, which then holds exactly the ClientHello body when the result is
/// [`Records::Complete`].
pub(crate) fn handshake_from_records(stream: &[u8], cap: usize, scratch: &mut Vec<u8>) -> Records {
    scratch.clear();
    let mut r = Reader::new(stream);
    let mut first = true;
    loop {
        if r.is_empty() {
            return Records::NeedMore;
        }
        let Some(content) = r.u8() else { return Records::NeedMore };
        if content != CONTENT_HANDSHAKE {
            return if first { Records::NotTls } else { Records::Malformed };
        }
        let Some([major, minor]) = r.array::<2>() else { return Records::NeedMore };
        if major != 3 || minor > 4 {
            return if first { Records::NotTls } else { Records::Malformed };
        }
        let Some(len) = r.u16() else { return Records::NeedMore };
        if len == 0 || len > MAX_RECORD {
            return if first { Records::NotTls } else { Records::Malformed };
        }
        first = false;
        let want = usize::from(len);
        let available = r.left().min(want);
        let Some(body) = r.take(available) else { return Records::Malformed };
        scratch.extend_from_slice(body);
        let mut hs = Reader::new(scratch);
        if let Some(kind) = hs.u8() {
            if kind != HANDSHAKE_CLIENT_HELLO {
                return Records::NotClientHello;
            }
            if let Some(msg_len) = hs.u24() {
                let Ok(msg_len) = usize::try_from(msg_len) else { return Records::TooLarge };
                if msg_len > cap {
                    return Records::TooLarge;
                }
                if hs.left() >= msg_len {
                    scratch.truncate(msg_len.saturating_add(4));
                    scratch.drain(..4);
                    return Records::Complete;
                }
            }
        }
        if available < want {
            return Records::NeedMore;
        }
    }
}

/// Reads a ClientHello body (the handshake message after its type and length).
pub(crate) fn parse_client_hello(body: &[u8]) -> Result<ClientHello, Malformed> {
    let mut r = Reader::new(body);
    let _legacy_version = r.u16().ok_or(Malformed("legacy_version"))?;
    r.skip(32).ok_or(Malformed("random"))?;
    let session_id = r.sub_u8().ok_or(Malformed("legacy_session_id"))?;
    if session_id.left() > 32 {
        return Err(Malformed("legacy_session_id too long"));
    }
    let suites = r.sub_u16().ok_or(Malformed("cipher_suites"))?;
    if suites.left() % 2 != 0 {
        return Err(Malformed("cipher_suites odd length"));
    }
    r.sub_u8().ok_or(Malformed("legacy_compression_methods"))?;
    let mut hello = ClientHello { server_name: ServerName::Absent, alpn: Vec::new(), ech: false };
    if r.is_empty() {
        // An SSL 3.0 / TLS 1.0 style ClientHello without extensions.
        return Ok(hello);
    }
    let mut exts = r.sub_u16().ok_or(Malformed("extensions"))?;
    let mut sni = None;
    while !exts.is_empty() {
        let ext_type = exts.u16().ok_or(Malformed("extension type"))?;
        let mut data = exts.sub_u16().ok_or(Malformed("extension length"))?;
        match ext_type {
            EXT_SERVER_NAME => sni = Some(read_server_name(&mut data)?),
            EXT_ALPN => hello.alpn = read_alpn(&mut data)?,
            EXT_ECH => hello.ech = true,
            _ => {}
        }
    }
    r.expect_empty().ok_or(Malformed("bytes after the extensions"))?;
    hello.server_name = match sni {
        None => ServerName::Absent,
        Some(ServerName::Name(name)) if hello.ech => ServerName::EchOuter(name),
        Some(other) => other,
    };
    Ok(hello)
}

fn read_server_name(data: &mut Reader<'_>) -> Result<ServerName, Malformed> {
    let mut list = data.sub_u16().ok_or(Malformed("server_name_list"))?;
    while !list.is_empty() {
        let name_type = list.u8().ok_or(Malformed("name_type"))?;
        let mut name = list.sub_u16().ok_or(Malformed("host_name"))?;
        if name_type == 0 {
            return Ok(classify(name.rest()));
        }
    }
    Ok(ServerName::Invalid)
}

/// Classifies a server name's bytes.
pub(crate) fn classify(raw: &[u8]) -> ServerName {
    let Ok(text) = std::str::from_utf8(raw) else { return ServerName::Invalid };
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let bracketless =
        trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(trimmed);
    if let Ok(ip) = bracketless.parse::<IpAddr>() {
        return ServerName::IpLiteral(ip);
    }
    if trimmed.is_empty() || !is_host_name(trimmed) {
        return ServerName::Invalid;
    }
    ServerName::Name(trimmed.to_ascii_lowercase())
}

fn read_alpn(data: &mut Reader<'_>) -> Result<Vec<String>, Malformed> {
    let mut list = data.sub_u16().ok_or(Malformed("alpn list"))?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let mut proto = list.sub_u8().ok_or(Malformed("alpn protocol"))?;
        let bytes = proto.rest();
        if out.len() < MAX_ALPN && !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic()) {
            out.push(bytes.iter().map(|&b| char::from(b)).collect());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal TLS 1.3-style ClientHello body with the given extensions.
    fn hello_body(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7u8; 32]);
        b.push(0);
        b.extend([0, 2, 0x13, 0x01]);
        b.extend([1, 0]);
        let mut exts = Vec::new();
        for (t, data) in extensions {
            exts.extend(t.to_be_bytes());
            exts.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
            exts.extend(data);
        }
        b.extend(u16::try_from(exts.len()).unwrap().to_be_bytes());
        b.extend(exts);
        b
    }

    fn sni(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend(u16::try_from(name.len()).unwrap().to_be_bytes());
        entry.extend(name);
        let mut d = u16::try_from(entry.len()).unwrap().to_be_bytes().to_vec();
        d.extend(entry);
        (EXT_SERVER_NAME, d)
    }

    fn alpn(protos: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protos {
            list.push(u8::try_from(p.len()).unwrap());
            list.extend(p.as_bytes());
        }
        let mut d = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        d.extend(list);
        (EXT_ALPN, d)
    }

    /// Wraps a body in a handshake header and splits it into records of `record_len`.
    fn records(body: &[u8], record_len: usize) -> Vec<u8> {
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        hs.extend(body);
        let mut out = Vec::new();
        for chunk in hs.chunks(record_len) {
            out.extend([CONTENT_HANDSHAKE, 3, 1]);
            out.extend(u16::try_from(chunk.len()).unwrap().to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    #[test]
    fn server_name_alpn_and_ech_are_read() {
        let body =
            hello_body(&[sni(b"Chatgpt.com"), alpn(&["h2", "http/1.1"]), (EXT_ECH, vec![0; 8])]);
        let hello = parse_client_hello(&body).unwrap();
        assert_eq!(hello.server_name, ServerName::EchOuter("chatgpt.com".into()));
        assert_eq!(hello.alpn, ["h2", "http/1.1"]);
        assert!(hello.ech);
    }

    #[test]
    fn server_name_variants_are_distinguished() {
        assert_eq!(classify(b"claude.ai."), ServerName::Name("claude.ai".into()));
        assert_eq!(classify(b"127.0.0.1"), ServerName::IpLiteral([127, 0, 0, 1].into()));
        assert!(matches!(classify(b"[::1]"), ServerName::IpLiteral(_)));
        assert_eq!(classify(b"bad name.example"), ServerName::Invalid);
        assert_eq!(classify(b""), ServerName::Invalid);
        assert_eq!(classify(&[0xff, 0xfe]), ServerName::Invalid);
        let hello = parse_client_hello(&hello_body(&[alpn(&["h2"])])).unwrap();
        assert_eq!(hello.server_name, ServerName::Absent);
    }

    #[test]
    fn client_hello_split_over_several_records_is_gathered() {
        let body = hello_body(&[sni(b"api.openai.com")]);
        let stream = records(&body, 10);
        let mut scratch = Vec::new();
        assert_eq!(handshake_from_records(&stream, 16_384, &mut scratch), Records::Complete);
        assert_eq!(scratch, body);
        for cut in 0..stream.len() {
            let got = handshake_from_records(stream.get(..cut).unwrap(), 16_384, &mut scratch);
            assert_eq!(got, Records::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn non_handshake_and_server_flights_are_recognised() {
        let mut scratch = Vec::new();
        assert_eq!(
            handshake_from_records(b"GET / HTTP/1.1\r\n", 16_384, &mut scratch),
            Records::NotTls
        );
        assert_eq!(
            handshake_from_records(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0], 16_384, &mut scratch),
            Records::NotClientHello
        );
    }

    #[test]
    fn sixty_four_kilobyte_sni_length_is_malformed_or_too_large() {
        // A server_name entry that claims 65535 bytes but carries 3.
        let mut d = vec![0xff, 0xff, 0, 0xff, 0xff];
        d.extend(b"abc");
        assert!(parse_client_hello(&hello_body(&[(EXT_SERVER_NAME, d)])).is_err());
        // A handshake header that claims 16 MB.
        let mut scratch = Vec::new();
        let stream = [0x16, 3, 1, 0, 8, 1, 0xff, 0xff, 0xff, 3, 3, 0, 0];
        assert_eq!(handshake_from_records(&stream, 16_384, &mut scratch), Records::TooLarge);
    }

    #[test]
    fn truncated_bodies_fail_cleanly() {
        let body = hello_body(&[sni(b"claude.ai"), alpn(&["h2"])]);
        for cut in 0..body.len() {
            // A cut just before the extensions reads as an extension-less hello; every other
            // cut is an error, and none yields the name.
            if let Ok(hello) = parse_client_hello(body.get(..cut).unwrap()) {
                assert_eq!(hello.server_name, ServerName::Absent, "cut at {cut}");
            }
        }
    }
}
