//! The `syslog` channel: each event as one RFC 5424 message over TCP with TLS, framed by
//! octet counting as RFC 5425 §4.3 says (`MSG-LEN SP SYSLOG-MSG`), to `syslog_host` on
//! `syslog_port` (6514, the port RFC 5425 assigns).
//!
//! The message: `<PRI>1 TIMESTAMP HOSTNAME aiscout - MSGID [aiscout@32473 ...] BOM MSG`, with
//! facility 13 (log audit) and a severity from the event type, `MSGID` the event type, the
//! structured data `id`, `type`, `product` and `url` (32473 is the private enterprise number
//! RFC 5612 reserves for documentation), and the one-line summary as the UTF-8 message.
//! Syslog over TLS has no acknowledgement: a delivery counts as delivered once the frame is
//! written and the TLS session closed cleanly.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::render::{self, About};
use crate::model::NewEvent;

/// Where a syslog channel sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogSettings {
    /// The receiver's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// Facility 13: log audit (RFC 5424 §6.2.1).
const FACILITY: u8 = 13;

/// Escapes a structured-data parameter value (RFC 5424 §6.3.3: `"`, `\` and `]`).
fn param(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Severity (RFC 5424 §6.2.1): warning for a blocked product back, notice for other
/// findings, informational for the rest.
fn severity(kind: &str) -> u8 {
    match kind {
        super::event::BLOCKED_SEEN => 4,
        super::event::DISCOVERED | super::event::SPREAD | super::event::EXPENSE_CANDIDATE => 5,
        _ => 6,
    }
}

/// The RFC 5424 message of an event (without framing).
pub fn message(e: &NewEvent, about: Option<&About>, console: &str, hostname: &str) -> Vec<u8> {
    let subject = render::subject(e, about);
    let url = render::link(console, e, &subject);
    let summary: String = render::summary(e, &subject)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let host: String = hostname.chars().filter(char::is_ascii_graphic).take(255).collect();
    let host = if host.is_empty() { "-".to_owned() } else { host };
    let msgid: String = e.kind.chars().filter(char::is_ascii_graphic).take(32).collect();
    let pri = u16::from(FACILITY) * 8 + u16::from(severity(&e.kind));
    let mut out = format!(
        "<{pri}>1 {} {host} aiscout - {msgid} [aiscout@32473 id=\"{}\" type=\"{}\" product=\"{}\" url=\"{}\"] ",
        e.occurred_at.rfc3339(),
        param(&e.id),
        param(&e.kind),
        param(&e.product),
        param(&url)
    )
    .into_bytes();
    out.extend_from_slice("\u{feff}".as_bytes());
    out.extend_from_slice(summary.as_bytes());
    out
}

/// RFC 5425 octet-counting frame: the length in decimal, a space, the message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

/// Why a syslog message was not sent; every case is worth a retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyslogError {
    /// `syslog_host` is not a name TLS can verify.
    #[error("syslog_host: {0}")]
    Host(rustls::pki_types::InvalidDnsNameError),
    /// A step of the session failed.
    #[error("{step} {at}: {error}")]
    Io {
        /// What was being done: `connecting to`, `TLS with`, `writing to`, `closing the
        /// session with`.
        step: &'static str,
        /// `host:port`.
        at: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Sends one framed message over TLS and closes the session.
///
/// # Errors
/// The connection, the TLS handshake, the write or the close failed (all worth a retry).
pub async fn send(
    settings: &SyslogSettings,
    tls: Arc<rustls::ClientConfig>,
    message: &[u8],
) -> Result<(), SyslogError> {
    let failed = |step: &'static str| {
        move |error| SyslogError::Io {
            step,
            at: format!("{}:{}", settings.host, settings.port),
            error,
        }
    };
    let name = rustls::pki_types::ServerName::try_from(settings.host.clone())
        .map_err(SyslogError::Host)?;
    let tcp = tokio::net::TcpStream::connect((settings.host.as_str(), settings.port))
        .await
        .map_err(failed("connecting to"))?;
    let mut tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(failed("TLS with"))?;
    tls.write_all(&frame(message)).await.map_err(failed("writing to"))?;
    tls.shutdown().await.map_err(failed("closing the session with"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_rfc5424_with_the_event_id_and_escaped_values() {
        let e = NewEvent {
            id: "evt_1".into(),
            kind: "product.blocked_seen".into(),
            occurred_at: aiscout_wire::UnixSecs(0),
            product: "x\"]\\y".into(),
            subject: "{\"device\":\"laptop\\n1\"}".into(),
            to_channel: String::new(),
        };
        let m = String::from_utf8(message(&e, None, "https://c", "aiscout.example.com")).unwrap();
        assert!(
            m.starts_with(
                "<108>1 1970-01-01T00:00:00Z aiscout.example.com aiscout - product.blocked_seen \
             [aiscout@32473 id=\"evt_1\" type=\"product.blocked_seen\" product=\"x\\\"\\]\\\\y\""
            ),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
        assert_eq!(frame(b"abc"), b"3 abc");
    }
}
