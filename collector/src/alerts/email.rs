//! The `email` channel: one message per event (plain text and HTML, `multipart/alternative`)
//! sent over SMTP (RFC 5321) with TLS always: STARTTLS (RFC 3207) on a submission port, or
//! implicit TLS (RFC 8314) on port 465, then `AUTH PLAIN` (RFC 4616) or `AUTH LOGIN` when a
//! user is configured.
//!
//! A small client of its own, on the collector's rustls and tokio: it sends what it composed
//! and reads each reply, nothing more (no pipelining, no 8BITMIME: the parts are base64).
//! A reply in the 4xx range, a broken connection or a timeout is temporary (retried with the
//! channel's backoff); 5xx is permanent (the delivery fails). The message's `Message-ID` is
//! the event id (`<evt_...@aiscout>`), with `X-Aiscout-Event-Id`, so a retry after a lost
//! reply is recognisable as the same message.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

use aiscout_wire::Secret;
use serde_json::Value;

use super::render::{self, About};
use crate::model::NewEvent;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain TCP, then `STARTTLS` before anything else is said (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// An email channel's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// STARTTLS or implicit TLS.
    pub tls: SmtpTls,
    /// The user to authenticate as (the password is the channel's `secret_file`).
    pub username: Option<String>,
    /// The sender address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// Why a send did not succeed. [`SmtpError::is_permanent`] says whether a retry could help;
/// the message is what the outbox records as the attempt's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpError {
    /// `smtp_host` is not a name TLS can verify.
    #[error("smtp_host: {0}")]
    Host(rustls::pki_types::InvalidDnsNameError),
    /// The TCP connection failed.
    #[error("connecting to {at}: {error}")]
    Connect {
        /// `host:port`.
        at: String,
        /// Why.
        error: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS with {at}: {error}")]
    Tls {
        /// `host:port`.
        at: String,
        /// Why.
        error: std::io::Error,
    },
    /// Reading a reply failed.
    #[error("reading the SMTP server: {0}")]
    Read(std::io::Error),
    /// Sending a command failed.
    #[error("writing to the SMTP server: {0}")]
    Write(std::io::Error),
    /// The server closed the connection before its reply.
    #[error("the SMTP server closed the connection")]
    Closed,
    /// A reply line without a code.
    #[error("the SMTP server sent a malformed reply")]
    Malformed,
    /// A reply of more than `MAX_LINES` lines.
    #[error("the SMTP server's reply is too long")]
    TooLong,
    /// The server answered with another class than the step wants.
    #[error("the SMTP server answered {code} to {command}: {text}")]
    Refused {
        /// The reply code (4xx is temporary, 5xx permanent).
        code: u16,
        /// What was sent (never a credential).
        command: &'static str,
        /// The reply's text, without control characters, at most 200 characters.
        text: String,
    },
    /// A user is configured but the channel has no `secret_file`.
    #[error("no password for AUTH")]
    NoPassword,
    /// The server offers no mechanism this client speaks.
    #[error("the SMTP server offers neither AUTH PLAIN nor AUTH LOGIN")]
    NoAuthMechanism,
    /// The server does not offer `STARTTLS` on a STARTTLS channel.
    #[error("the SMTP server does not offer STARTTLS")]
    NoStartTls,
    /// Bytes after the `STARTTLS` answer (CVE-2011-0411, command injection).
    #[error("the SMTP server sent data after its STARTTLS answer")]
    DataAfterStartTls,
}

impl SmtpError {
    /// Not worth retrying: a 5xx reply, or a server without what the channel needs. A 4xx
    /// reply, a lost connection or a failed handshake is temporary.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        match self {
            SmtpError::Refused { code, .. } => *code / 100 != 4,
            SmtpError::Host(_)
            | SmtpError::NoPassword
            | SmtpError::NoAuthMechanism
            | SmtpError::NoStartTls
            | SmtpError::DataAfterStartTls => true,
            SmtpError::Connect { .. }
            | SmtpError::Tls { .. }
            | SmtpError::Read(_)
            | SmtpError::Write(_)
            | SmtpError::Closed
            | SmtpError::Malformed
            | SmtpError::TooLong => false,
        }
    }

    /// The server's reply code, when the error is a reply.
    #[must_use]
    pub fn code(&self) -> Option<u16> {
        match self {
            SmtpError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Longest reply line read, and most lines in one reply.
const MAX_LINE: usize = 4_096;
const MAX_LINES: usize = 64;

/// Whether `addr` is a plain mailbox address (`local@domain`) fit for a header and an
/// envelope: no spaces, brackets, quotes or control characters.
pub fn check_address(addr: &str) -> Result<(), String> {
    let ok = addr.len() <= 254
        && addr
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && addr.chars().all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{addr:?} is not a plain address like alerts@example.com"))
    }
}

/// RFC 5322 date (`Fri, 04 Dec 2026 12:00:00 +0000`).
fn rfc5322_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs.div_euclid(86_400);
    let (y, m, d) = crate::ingest::parse::civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(m.saturating_sub(1)).unwrap_or(0).min(11)];
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} +0000",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A header value: as it is when it is short printable ASCII, otherwise RFC 2047 encoded
/// words (which also keeps any CR or LF of hostile text out of the header block).
fn header_text(text: &str) -> String {
    if text.len() <= 200
        && text.chars().all(|c| c == ' ' || c.is_ascii_graphic())
        && !text.contains("=?")
    {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", B64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", B64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// Base64 in lines of 76 characters, each ended by CRLF.
fn base64_lines(bytes: &[u8]) -> String {
    let encoded = B64.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// A whole message (headers and a `multipart/alternative` body of `text` and `html`).
pub fn compose(
    settings: &EmailSettings,
    id: &str,
    subject: &str,
    text: &str,
    html: &str,
    now: i64,
) -> Vec<u8> {
    let boundary = format!("aiscout-{id}");
    let mut m = String::new();
    m.push_str(&format!("From: {}\r\n", settings.from));
    m.push_str(&format!("To: {}\r\n", settings.to.join(", ")));
    m.push_str(&format!("Subject: {}\r\n", header_text(subject)));
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    m.push_str(&format!("Message-ID: <{id}@aiscout>\r\n"));
    m.push_str(&format!("X-Aiscout-Event-Id: {id}\r\n"));
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!("Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"));
    for (kind, body) in [("plain", text), ("html", html)] {
        m.push_str(&format!("--{boundary}\r\n"));
        m.push_str(&format!("Content-Type: text/{kind}; charset=utf-8\r\n"));
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        m.push_str(&base64_lines(body.as_bytes()));
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// The message of one event: subject the event's summary, then its facts and the link.
pub fn event_message(
    settings: &EmailSettings,
    e: &NewEvent,
    about: Option<&About>,
    console: &str,
    now: i64,
) -> Vec<u8> {
    let subject = render::subject(e, about);
    let url = render::link(console, e, &subject);
    let summary = render::summary(e, &subject);
    let mut facts: Vec<(&str, String)> =
        vec![("Event", e.kind.clone()), ("When", e.occurred_at.rfc3339())];
    if let Some(a) = about {
        facts.push(("Product", format!("{} ({})", a.name, e.product)));
        facts.push(("Status", a.status.clone()));
        facts.push(("Reach", format!("{} devices, {} users", a.devices, a.users)));
    }
    for key in ["device", "department", "person", "by", "from", "to", "note"] {
        if let Some(v) = subject.get(key).and_then(Value::as_str)
            && !v.is_empty()
        {
            facts.push((key, v.to_owned()));
        }
    }
    facts.push(("Id", e.id.clone()));
    let mut text = format!("{summary}\r\n\r\n");
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("\r\nOpen in aiscout: {url}\r\n"));
    let esc = crate::report::escape_html;
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><table>",
        esc(&summary)
    );
    for (k, v) in &facts {
        html.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", esc(k), esc(v)));
    }
    html.push_str(&format!(
        "</table><p><a href=\"{}\">Open in aiscout</a></p></body></html>",
        esc(&url)
    ));
    compose(settings, &e.id, &summary, &text, &html, now)
}

/// One reply: its code and text lines.
async fn reply<S: AsyncBufRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<(u16, Vec<String>), SmtpError> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut *s)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(SmtpError::Read)?;
        if n == 0 {
            return Err(SmtpError::Closed);
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let code =
            text.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
        let Some(code) = code else {
            return Err(SmtpError::Malformed);
        };
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push(text.get(4..).unwrap_or_default().to_owned());
        if last {
            return Ok((code, lines));
        }
        if lines.len() >= MAX_LINES {
            return Err(SmtpError::TooLong);
        }
    }
}

/// Sends `command` (without CRLF; `None` sends nothing) and wants a reply of class `want`
/// (2 or 3). `shown` is what an error says was sent (never a credential).
async fn step<S: AsyncBufRead + AsyncWrite + Unpin>(
    s: &mut S,
    command: Option<&[u8]>,
    shown: &'static str,
    want: u16,
) -> Result<Vec<String>, SmtpError> {
    if let Some(c) = command {
        let mut line = Vec::with_capacity(c.len() + 2);
        line.extend_from_slice(c);
        line.extend_from_slice(b"\r\n");
        s.write_all(&line).await.map_err(SmtpError::Write)?;
        s.flush().await.map_err(SmtpError::Write)?;
    }
    let (code, lines) = reply(s).await?;
    if code / 100 == want {
        return Ok(lines);
    }
    let text: String = lines.join(" ").chars().filter(|c| !c.is_control()).take(200).collect();
    Err(SmtpError::Refused { code, command: shown, text })
}

/// What the collector says in `EHLO`.
const EHLO: &[u8] = b"EHLO aiscout.invalid";

/// After TLS: `EHLO`, authentication, the envelope, the message, `QUIT`.
async fn session<S: AsyncBufRead + AsyncWrite + Unpin>(
    s: &mut S,
    settings: &EmailSettings,
    password: Option<&Secret>,
    message: &[u8],
) -> Result<(), SmtpError> {
    let caps = step(s, Some(EHLO), "EHLO", 2).await?;
    if let Some(user) = &settings.username {
        let Some(password) = password else {
            return Err(SmtpError::NoPassword);
        };
        let mechs: Vec<String> = caps
            .iter()
            .filter_map(|l| l.strip_prefix("AUTH ").or_else(|| l.strip_prefix("AUTH=")))
            .flat_map(|m| m.split_whitespace().map(str::to_ascii_uppercase))
            .collect();
        if mechs.iter().any(|m| m == "PLAIN") {
            let token = B64.encode(format!("\0{user}\0{}", password.expose()));
            step(s, Some(format!("AUTH PLAIN {token}").as_bytes()), "AUTH PLAIN", 2).await?;
        } else if mechs.iter().any(|m| m == "LOGIN") {
            step(s, Some(b"AUTH LOGIN"), "AUTH LOGIN", 3).await?;
            step(s, Some(B64.encode(user).as_bytes()), "AUTH LOGIN (user)", 3).await?;
            step(s, Some(B64.encode(password.expose()).as_bytes()), "AUTH LOGIN (password)", 2)
                .await?;
        } else {
            return Err(SmtpError::NoAuthMechanism);
        }
    }
    step(s, Some(format!("MAIL FROM:<{}>", settings.from).as_bytes()), "MAIL FROM", 2).await?;
    for to in &settings.to {
        step(s, Some(format!("RCPT TO:<{to}>").as_bytes()), "RCPT TO", 2).await?;
    }
    step(s, Some(b"DATA"), "DATA", 3).await?;
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|b| *b == b'\n') {
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".");
    step(s, Some(&data), "the message", 2).await?;
    // The message is accepted: a failed QUIT changes nothing.
    let _quit = step(s, Some(b"QUIT"), "QUIT", 2).await;
    Ok(())
}

/// Sends `message` to the channel's recipients.
///
/// # Errors
/// Why it was not accepted, temporary or permanent.
pub async fn send(
    settings: &EmailSettings,
    password: Option<&Secret>,
    tls: Arc<rustls::ClientConfig>,
    message: &[u8],
) -> Result<(), SmtpError> {
    let at = || format!("{}:{}", settings.host, settings.port);
    let name =
        rustls::pki_types::ServerName::try_from(settings.host.clone()).map_err(SmtpError::Host)?;
    let tcp = tokio::net::TcpStream::connect((settings.host.as_str(), settings.port))
        .await
        .map_err(|error| SmtpError::Connect { at: at(), error })?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let tcp = match settings.tls {
        SmtpTls::Implicit => tcp,
        SmtpTls::StartTls => {
            let mut plain = BufReader::new(tcp);
            step(&mut plain, None, "the greeting", 2).await?;
            let caps = step(&mut plain, Some(EHLO), "EHLO", 2).await?;
            if !caps.iter().any(|c| c.eq_ignore_ascii_case("STARTTLS")) {
                return Err(SmtpError::NoStartTls);
            }
            step(&mut plain, Some(b"STARTTLS"), "STARTTLS", 2).await?;
            // Anything the server sent beyond its answer would be read as if it came over
            // TLS (CVE-2011-0411, command injection): refuse.
            if !plain.buffer().is_empty() {
                return Err(SmtpError::DataAfterStartTls);
            }
            plain.into_inner()
        }
    };
    let tls =
        connector.connect(name, tcp).await.map_err(|error| SmtpError::Tls { at: at(), error })?;
    let mut s = BufReader::new(tls);
    if settings.tls == SmtpTls::Implicit {
        step(&mut s, None, "the greeting", 2).await?;
    }
    session(&mut s, settings, password, message).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step against a server that writes `replies`, reads the command, and hangs up.
    async fn step_against(replies: &[u8], want: u16) -> Result<Vec<String>, SmtpError> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut server = BufReader::new(server);
        server.write_all(replies).await.unwrap();
        let heard = tokio::spawn(async move {
            let mut line = Vec::new();
            server.read_until(b'\n', &mut line).await.unwrap();
            line
        });
        let result = step(
            &mut BufReader::new(client),
            Some(b"MAIL FROM:<a@example.com>"),
            "MAIL FROM",
            want,
        )
        .await;
        assert_eq!(heard.await.unwrap(), b"MAIL FROM:<a@example.com>\r\n");
        result
    }

    #[tokio::test]
    async fn a_refusal_is_temporary_in_4xx_and_permanent_otherwise_with_the_same_message() {
        // Replies, the class wanted, permanent, the code, the message.
        type Case<'a> = (&'a [u8], u16, bool, Option<u16>, &'a str);
        let cases: [Case<'_>; 6] = [
            (
                b"451 4.3.0 try later\r\n",
                2,
                false,
                Some(451),
                "the SMTP server answered 451 to MAIL FROM: 4.3.0 try later",
            ),
            (
                b"550-5.1.1 no such\r\n550 user\x07\r\n",
                2,
                true,
                Some(550),
                "the SMTP server answered 550 to MAIL FROM: 5.1.1 no such user",
            ),
            (b"250 ok\r\n", 3, true, Some(250), "the SMTP server answered 250 to MAIL FROM: ok"),
            (b"", 2, false, None, "the SMTP server closed the connection"),
            (b"hello\r\n", 2, false, None, "the SMTP server sent a malformed reply"),
            (&b"250-x\r\n".repeat(70), 2, false, None, "the SMTP server's reply is too long"),
        ];
        for (replies, want, permanent, code, text) in cases {
            let e = step_against(replies, want).await.unwrap_err();
            assert_eq!(e.is_permanent(), permanent, "{e}");
            assert_eq!(e.code(), code, "{e}");
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(step_against(b"250 ok\r\n", 2).await.unwrap(), ["ok"]);
    }

    #[test]
    fn a_server_without_what_the_channel_needs_is_permanent() {
        for e in [
            SmtpError::NoPassword,
            SmtpError::NoAuthMechanism,
            SmtpError::NoStartTls,
            SmtpError::DataAfterStartTls,
        ] {
            assert!(e.is_permanent(), "{e}");
            assert_eq!(e.code(), None);
        }
        let lost = SmtpError::Connect {
            at: "localhost:587".into(),
            error: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(!lost.is_permanent());
        assert!(lost.to_string().starts_with("connecting to localhost:587: "), "{lost}");
    }

    fn settings() -> EmailSettings {
        EmailSettings {
            host: "localhost".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            username: None,
            from: "aiscout@example.com".into(),
            to: vec!["sec@example.com".into(), "buy@example.com".into()],
        }
    }

    #[test]
    fn a_message_has_both_parts_and_the_event_id() {
        let m = compose(&settings(), "evt_1", "Hi", "plain ünïcode", "<p>x</p>", 0);
        let m = String::from_utf8(m).unwrap();
        assert!(m.contains("Message-ID: <evt_1@aiscout>\r\n"));
        assert!(m.contains("To: sec@example.com, buy@example.com\r\n"));
        assert!(m.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        assert!(m.contains("text/plain; charset=utf-8"));
        assert!(m.contains("text/html; charset=utf-8"));
        assert!(m.contains(&B64.encode("plain ünïcode")));
        assert!(m.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn hostile_subjects_cannot_add_headers() {
        let h = header_text("ok\r\nBcc: victim@example.com");
        assert!(h.starts_with("=?UTF-8?B?"));
        assert!(!h.contains("Bcc"));
        assert_eq!(header_text("New AI tool"), "New AI tool");
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(1_796_386_800), "Fri, 04 Dec 2026 12:20:00 +0000");
    }

    #[test]
    fn addresses_are_plain() {
        assert!(check_address("a.b+c@example.com").is_ok());
        for bad in ["", "a", "@x", "a@", "a b@x", "<a@x>", "a@x\r\nRCPT TO:<b@x>", "a@b@c"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
