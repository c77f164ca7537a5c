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

/// Why a send did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpError {
    /// Worth retrying: a 4xx reply, a lost connection, a timeout.
    Temporary(Option<u16>, String),
    /// Not worth retrying: a 5xx reply, or a server without what the channel needs.
    Permanent(Option<u16>, String),
}

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpError::Temporary(_, why) | SmtpError::Permanent(_, why) => f.write_str(why),
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
            .map_err(|e| SmtpError::Temporary(None, format!("reading the SMTP server: {e}")))?;
        if n == 0 {
            return Err(SmtpError::Temporary(None, "the SMTP server closed the connection".into()));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let code =
            text.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
        let Some(code) = code else {
            return Err(SmtpError::Temporary(
                None,
                "the SMTP server sent a malformed reply".into(),
            ));
        };
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push(text.get(4..).unwrap_or_default().to_owned());
        if last {
            return Ok((code, lines));
        }
        if lines.len() >= MAX_LINES {
            return Err(SmtpError::Temporary(None, "the SMTP server's reply is too long".into()));
        }
    }
}

/// Sends `command` (without CRLF; `None` sends nothing) and wants a reply of class `want`
/// (2 or 3). `shown` is what an error says was sent (never a credential).
async fn step<S: AsyncBufRead + AsyncWrite + Unpin>(
    s: &mut S,
    command: Option<&[u8]>,
    shown: &str,
    want: u16,
) -> Result<Vec<String>, SmtpError> {
    if let Some(c) = command {
        let io = |e: std::io::Error| {
            SmtpError::Temporary(None, format!("writing to the SMTP server: {e}"))
        };
        let mut line = Vec::with_capacity(c.len() + 2);
        line.extend_from_slice(c);
        line.extend_from_slice(b"\r\n");
        s.write_all(&line).await.map_err(io)?;
        s.flush().await.map_err(io)?;
    }
    let (code, lines) = reply(s).await?;
    if code / 100 == want {
        return Ok(lines);
    }
    let text: String = lines.join(" ").chars().filter(|c| !c.is_control()).take(200).collect();
    let why = format!("the SMTP server answered {code} to {shown}: {text}");
    if code / 100 == 4 {
        Err(SmtpError::Temporary(Some(code), why))
    } else {
        Err(SmtpError::Permanent(Some(code), why))
    }
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
            return Err(SmtpError::Permanent(None, "no password for AUTH".into()));
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
            return Err(SmtpError::Permanent(
                None,
                "the SMTP server offers neither AUTH PLAIN nor AUTH LOGIN".into(),
            ));
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
    let temporary = |what: &str, e: &dyn std::fmt::Display| {
        SmtpError::Temporary(None, format!("{what} {}:{}: {e}", settings.host, settings.port))
    };
    let name = rustls::pki_types::ServerName::try_from(settings.host.clone())
        .map_err(|e| SmtpError::Permanent(None, format!("smtp_host: {e}")))?;
    let tcp = tokio::net::TcpStream::connect((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| temporary("connecting to", &e))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let tcp = match settings.tls {
        SmtpTls::Implicit => tcp,
        SmtpTls::StartTls => {
            let mut plain = BufReader::new(tcp);
            step(&mut plain, None, "the greeting", 2).await?;
            let caps = step(&mut plain, Some(EHLO), "EHLO", 2).await?;
            if !caps.iter().any(|c| c.eq_ignore_ascii_case("STARTTLS")) {
                return Err(SmtpError::Permanent(
                    None,
                    "the SMTP server does not offer STARTTLS".into(),
                ));
            }
            step(&mut plain, Some(b"STARTTLS"), "STARTTLS", 2).await?;
            // Anything the server sent beyond its answer would be read as if it came over
            // TLS (CVE-2011-0411, command injection): refuse.
            if !plain.buffer().is_empty() {
                return Err(SmtpError::Permanent(
                    None,
                    "the SMTP server sent data after its STARTTLS answer".into(),
                ));
            }
            plain.into_inner()
        }
    };
    let tls = connector.connect(name, tcp).await.map_err(|e| temporary("TLS with", &e))?;
    let mut s = BufReader::new(tls);
    if settings.tls == SmtpTls::Implicit {
        step(&mut s, None, "the greeting", 2).await?;
    }
    session(&mut s, settings, password, message).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
