//! Email digests: a channel with `digest = "daily"` or `"weekly"` holds the events it takes
//! (state `held`) instead of sending each, and once a period ends sends one message (plain
//! text and HTML) listing them, with the count of what its caps held back (`capped`).
//!
//! - **Schedule.** A period ends every day (or every week on `digest_day`) at `digest_at` UTC;
//!   the digest of a period is sent [`GRACE`] after its end, so deliveries held just before the
//!   end are in it.
//! - **Once.** The digest of (channel, period end) is claimed in the store (`alert_digests`,
//!   migration 0011) before it is sent and marked sent after the server accepted it: a
//!   restart finds it sent and does not repeat it; with several collectors only the claimer
//!   sends it; a claimer that dies leaves a lease that runs out, and another sends it.
//! - **Nothing skipped.** A digest lists the deliveries held (or capped) since the end of the
//!   channel's previous sent digest (one period before its own end for the first), windowed
//!   by when each was held, so a collector that was down over several period ends sends one
//!   digest of all of them.
//! - **Coaching.** For each blocked or unsanctioned product the digest mentions whose review
//!   names a sanctioned alternative, it adds "Use X instead" with the organisation's
//!   `[policy] coaching_message` ([`crate::policy::coaching`], as the app card says it).

use serde_json::Value;

use aiscout_signatures::Catalog;

use super::email::{self, EmailSettings};
use super::render;
use crate::model::{NewEvent, Review, StoredEvent};
use crate::report::rfc3339;

/// How long after a period's end its digest is sent.
pub const GRACE: i64 = 60;
/// Most events a digest lists one by one (the rest are counted).
pub const MAX_LISTED: usize = 500;

const DAY: i64 = 86_400;
const WEEKDAYS: [&str; 7] =
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// When a channel's digests are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `Some(weekday)` (0 = Monday) for a weekly digest, `None` for a daily one.
    pub weekday: Option<u32>,
    /// Seconds after midnight UTC.
    pub at: i64,
}

/// Checks `digest`, `digest_at` and `digest_day`; an error names the key.
///
/// # Errors
/// (key, reason) of the first bad key.
pub fn schedule(
    every: &str,
    at: Option<&str>,
    day: Option<&str>,
) -> Result<Schedule, (&'static str, String)> {
    let at = match at {
        None => 8 * 3_600,
        Some(t) => {
            let parsed = t.split_once(':').and_then(|(h, m)| {
                let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
                (t.len() == 5 && (0..24).contains(&h) && (0..60).contains(&m))
                    .then_some(h * 3_600 + m * 60)
            });
            parsed.ok_or(("digest_at", format!("{t:?} is not a time like 08:00 (UTC)")))?
        }
    };
    match (every, day) {
        ("daily", None) => Ok(Schedule { weekday: None, at }),
        ("daily", Some(_)) => Err(("digest_day", "only for digest = \"weekly\"".into())),
        ("weekly", day) => {
            let day = day.unwrap_or("monday").to_ascii_lowercase();
            let i = WEEKDAYS
                .iter()
                .position(|d| *d == day)
                .ok_or(("digest_day", format!("{day:?} is not a day (monday ... sunday)")))?;
            Ok(Schedule { weekday: Some(u32::try_from(i).unwrap_or(0)), at })
        }
        (other, _) => Err(("digest", format!("{other:?} is not daily or weekly"))),
    }
}

impl Schedule {
    /// The period's length in seconds.
    pub fn length(self) -> i64 {
        if self.weekday.is_some() { 7 * DAY } else { DAY }
    }

    /// The end of the latest period that ended at or before `now`.
    pub fn period_end(self, now: i64) -> i64 {
        let days = now.div_euclid(DAY);
        let back = match self.weekday {
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            Some(w) => (days + 3 - i64::from(w)).rem_euclid(7),
            None => 0,
        };
        let end = (days - back) * DAY + self.at;
        if end > now { end - self.length() } else { end }
    }
}

/// One product's "Use X instead" in a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coached {
    /// The product's catalog id.
    pub product: String,
    /// Its display name.
    pub name: String,
    /// The line to show ([`crate::policy::Coaching::line`]).
    pub line: String,
}

/// The coaching for every product `events` are about that has one, in the order they first
/// appear, each once.
pub fn coaching<'a>(
    catalog: &Catalog,
    reviews: &[Review],
    policy: &crate::policy::Settings,
    events: impl IntoIterator<Item = &'a StoredEvent>,
) -> Vec<Coached> {
    let mut out: Vec<Coached> = Vec::new();
    for e in events {
        let product = &e.event.product;
        if product.is_empty() || out.iter().any(|c| &c.product == product) {
            continue;
        }
        if let Some(c) = crate::policy::coaching(catalog, reviews, policy, product) {
            let name = catalog.product(product).map_or_else(|| product.clone(), |p| p.name.clone());
            out.push(Coached { product: product.clone(), name, line: c.line() });
        }
    }
    out
}

/// The digest's message: `held` listed (at most [`MAX_LISTED`]), `capped` counted by type,
/// then the `coaching` of the products they are about.
#[allow(clippy::too_many_arguments)]
pub fn message(
    settings: &EmailSettings,
    channel: &str,
    from: i64,
    to: i64,
    held: &[StoredEvent],
    capped: &[StoredEvent],
    coaching: &[Coached],
    console: &str,
    now: i64,
) -> Vec<u8> {
    let subject = format!(
        "aiscout digest for {channel}: {} event(s), {} held back by caps, {} to {}",
        held.len(),
        capped.len(),
        rfc3339(from),
        rfc3339(to)
    );
    let mut by_type: Vec<(String, usize, usize)> = Vec::new();
    for (list, capped_list) in [(held, false), (capped, true)] {
        for e in list {
            let i = match by_type.iter().position(|(k, ..)| *k == e.event.kind) {
                Some(i) => i,
                None => {
                    by_type.push((e.event.kind.clone(), 0, 0));
                    by_type.len() - 1
                }
            };
            if capped_list {
                by_type[i].2 += 1;
            } else {
                by_type[i].1 += 1;
            }
        }
    }
    by_type.sort();
    let esc = crate::report::escape_html;
    let mut text = format!("{subject}\r\n\r\nType: events, held back by caps\r\n");
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>\
         <table><tr><th align=\"left\">Type</th><th>Events</th><th>Held back by caps</th></tr>",
        esc(&subject)
    );
    for (kind, n, c) in &by_type {
        text.push_str(&format!("{kind}: {n}, {c}\r\n"));
        html.push_str(&format!("<tr><td>{}</td><td>{n}</td><td>{c}</td></tr>", esc(kind)));
    }
    html.push_str("</table><h3>Events</h3><ul>");
    text.push_str("\r\nEvents:\r\n");
    for e in held.iter().take(MAX_LISTED) {
        let ev: &NewEvent = &e.event;
        let subject: Value = render::subject(ev, None);
        let summary = render::summary(ev, &subject);
        let url = render::link(console, ev, &subject);
        text.push_str(&format!("- {} {summary} ({}) {url}\r\n", ev.occurred_at.rfc3339(), ev.id));
        html.push_str(&format!(
            "<li>{} <a href=\"{}\">{}</a> <small>{}</small></li>",
            esc(&ev.occurred_at.rfc3339()),
            esc(&url),
            esc(&summary),
            esc(&ev.id)
        ));
    }
    if held.len() > MAX_LISTED {
        let more = held.len() - MAX_LISTED;
        text.push_str(&format!("... and {more} more: {console}/alerts\r\n"));
        html.push_str(&format!("<li>... and {more} more</li>"));
    }
    if !coaching.is_empty() {
        text.push_str("\r\nWhat to use instead:\r\n");
        html.push_str("</ul><h3>What to use instead</h3><ul>");
        for c in coaching {
            text.push_str(&format!("- {}: {}\r\n", c.name, c.line));
            html.push_str(&format!("<li><strong>{}</strong>: {}</li>", esc(&c.name), esc(&c.line)));
        }
    }
    html.push_str(&format!(
        "</ul><p><a href=\"{}/alerts\">Open the alerts page</a></p></body></html>",
        esc(console)
    ));
    let safe: String = channel
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    email::compose(settings, &format!("digest-{safe}-{to}"), &subject, &text, &html, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_by_key() {
        assert_eq!(schedule("daily", None, None), Ok(Schedule { weekday: None, at: 28_800 }));
        assert_eq!(
            schedule("weekly", Some("17:30"), Some("Friday")),
            Ok(Schedule { weekday: Some(4), at: 63_000 })
        );
        assert_eq!(schedule("hourly", None, None).unwrap_err().0, "digest");
        assert_eq!(schedule("daily", Some("8:00"), None).unwrap_err().0, "digest_at");
        assert_eq!(schedule("daily", Some("24:00"), None).unwrap_err().0, "digest_at");
        assert_eq!(schedule("weekly", None, Some("someday")).unwrap_err().0, "digest_day");
        assert_eq!(schedule("daily", None, Some("monday")).unwrap_err().0, "digest_day");
    }

    #[test]
    fn the_period_end_is_the_latest_at_or_before_now() {
        // Friday 2026-12-04 12:20:00 UTC.
        let now = 1_796_386_800;
        let midnight = now - now % DAY;
        let daily = Schedule { weekday: None, at: 8 * 3_600 };
        assert_eq!(daily.period_end(now), midnight + 8 * 3_600);
        assert_eq!(daily.period_end(midnight + 8 * 3_600), midnight + 8 * 3_600);
        assert_eq!(daily.period_end(midnight + 8 * 3_600 - 1), midnight - DAY + 8 * 3_600);
        let friday = Schedule { weekday: Some(4), at: 13 * 3_600 };
        assert_eq!(friday.period_end(now), midnight - 7 * DAY + 13 * 3_600);
        let monday = Schedule { weekday: Some(0), at: 0 };
        assert_eq!(monday.period_end(now), midnight - 4 * DAY);
    }
}
