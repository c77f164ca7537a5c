//! `[alerts]` and its `[[alerts.channel]]` entries: what the configuration file says, checked
//! into [`Settings`] by `check-config` and `serve` alike. Every problem is reported with its
//! key path (`alerts.channel[2].url`), never with a secret's value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aiscout_wire::Secret;
use serde::Deserialize;

use super::digest::Schedule;
use super::email::{EmailSettings, SmtpTls, check_address};
use super::event;
use super::syslog::SyslogSettings;

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// The console's address as people reach it (`https://aiscout.example.com`), for the links
    /// in events [default: `https://` and the listen address].
    pub console_url: Option<String>,
    /// `product.spread` fires when an unsanctioned or unreviewed product reaches this many
    /// devices [default: 10].
    pub spread_devices: Option<u32>,
    /// ... or this many users [default: 10].
    pub spread_users: Option<u32>,
    /// `agent.stale` fires after this many hours without a heartbeat [default: 72].
    pub stale_hours: Option<u32>,
    /// `subscription.renewal` fires this many days before a renewal [default: 30].
    pub renewal_days: Option<u32>,
    /// How often the periodic rules (spread, stale agents, renewals, budgets) are evaluated
    /// (`30s`, `5m`) [default: 1m].
    pub rules_every: Option<String>,
    /// The channels.
    pub channel: Option<Vec<ChannelFile>>,
    /// Monthly budgets and thresholds (`spend.threshold`).
    pub budget: Option<Vec<BudgetFile>>,
}

/// One `[[alerts.budget]]` as written: a monthly amount for a department, a product or
/// everything, over shadow (expense) or gateway spend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    /// A department from the people directory.
    pub department: Option<String>,
    /// A catalog product id.
    pub product: Option<String>,
    /// `shadow` (expense lines of products that are not sanctioned, and candidates),
    /// `gateway`, or `all` (both) [default: all].
    pub source: Option<String>,
    /// The monthly amount, a decimal in `currency` (`5000` or `5000.00`).
    pub monthly: Option<String>,
    /// ISO 4217 code [default: USD].
    pub currency: Option<String>,
    /// Percentages of `monthly` that fire an event [default: 50, 80, 100].
    pub levels: Option<Vec<u32>>,
}

/// What a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSource {
    /// Expense lines of products that are not sanctioned, and candidates.
    Shadow,
    /// Gateway spend.
    Gateway,
    /// Both.
    All,
}

impl BudgetSource {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            BudgetSource::Shadow => "shadow",
            BudgetSource::Gateway => "gateway",
            BudgetSource::All => "all",
        }
    }
}

/// One checked budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The department, or none.
    pub department: Option<String>,
    /// The product, or none.
    pub product: Option<String>,
    /// What it counts.
    pub source: BudgetSource,
    /// The monthly amount in minor units of `currency`.
    pub monthly_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Percentages that fire, ascending.
    pub levels: Vec<u32>,
}

impl Budget {
    /// A stable name of the scope (`department:Sales`, `product:openai.api`, `all`).
    pub fn scope(&self) -> String {
        match (&self.department, &self.product) {
            (Some(d), Some(p)) => format!("department:{d}/product:{p}"),
            (Some(d), None) => format!("department:{d}"),
            (None, Some(p)) => format!("product:{p}"),
            (None, None) => "all".to_owned(),
        }
    }
}

/// One `[[alerts.channel]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// Unique name.
    pub name: Option<String>,
    /// `webhook`, `slack`, `teams`, `email`, `siem`, `syslog` or `jira`.
    pub kind: Option<String>,
    /// Where to send (`https://`, or `http://` to a loopback host).
    pub url: Option<String>,
    /// File holding the signing secret (webhook) or the bearer token (siem).
    pub secret_file: Option<PathBuf>,
    /// Event types to send [default: all].
    pub events: Option<Vec<String>>,
    /// Only events about products in these review statuses [default: any].
    pub statuses: Option<Vec<String>>,
    /// Most events sent a day; the rest are counted as capped [default: 500].
    pub max_per_day: Option<u32>,
    /// After an event about a product is sent, further events of its type about that product
    /// within this period are capped (`30m`, `6h`, `1d`) [default: none].
    pub quiet: Option<String>,
    /// After this long without success a delivery is given up and marked failed [default: 1d].
    pub give_up_after: Option<String>,
    /// PEM file of extra trust roots for the receiver, added to the system's.
    pub ca_file: Option<PathBuf>,
    /// Jira: the project key issues are created in.
    pub project: Option<String>,
    /// Jira: the issue type [default: Task].
    pub issue_type: Option<String>,
    /// Jira: the account the API token belongs to (Basic authentication, Jira Cloud); unset,
    /// the token is sent as a Bearer personal access token (Jira Data Center). Email: the SMTP
    /// user (the password is `secret_file`).
    pub username: Option<String>,
    /// Email: the SMTP server's host name.
    pub smtp_host: Option<String>,
    /// Email: its port [default: 587 with STARTTLS, 465 with implicit TLS].
    pub smtp_port: Option<u16>,
    /// Email: `starttls` or `tls` (implicit) [default: starttls].
    pub smtp_tls: Option<String>,
    /// Email: the sender address.
    pub from: Option<String>,
    /// Email: the recipients.
    pub to: Option<Vec<String>>,
    /// Syslog: the receiver's host name.
    pub syslog_host: Option<String>,
    /// Syslog: its port [default: 6514].
    pub syslog_port: Option<u16>,
    /// Email: `daily` or `weekly` sends one digest of the period's events (and of what caps
    /// held back) instead of one message per event [default: none].
    pub digest: Option<String>,
    /// Email digest: the time of day it is sent, `HH:MM` UTC [default: 08:00].
    pub digest_at: Option<String>,
    /// Email weekly digest: the day it is sent (`monday` ... `sunday`) [default: monday].
    pub digest_day: Option<String>,
}

/// The kinds of channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Generic JSON webhook, HMAC-signed.
    Webhook,
    /// Slack incoming webhook (Block Kit).
    Slack,
    /// Microsoft Teams workflow webhook (Adaptive Card).
    Teams,
    /// OCSF JSON over HTTPS to a Splunk HEC-style collector.
    Siem,
    /// Jira issues for discoveries and candidates; decisions comment on them.
    Jira,
    /// One email per event over SMTP with TLS.
    Email,
    /// RFC 5424 syslog over TLS (RFC 5425).
    Syslog,
}

impl Kind {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::Teams => "teams",
            Kind::Siem => "siem",
            Kind::Jira => "jira",
            Kind::Email => "email",
            Kind::Syslog => "syslog",
        }
    }
}

/// One checked channel.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Receiver URL.
    pub url: String,
    /// Signing secret (webhook) or bearer token (siem).
    pub secret: Option<Secret>,
    /// Event types taken; empty for all.
    pub events: Vec<String>,
    /// Review statuses taken; empty for any.
    pub statuses: Vec<String>,
    /// Most deliveries a day.
    pub max_per_day: u32,
    /// Quiet period per (type, product).
    pub quiet: Option<Duration>,
    /// When a delivery is given up.
    pub give_up_after: Duration,
    /// Extra trust roots (PEM file).
    pub ca_file: Option<PathBuf>,
    /// Jira project key, issue type and Basic-authentication user.
    pub jira: Option<JiraSettings>,
    /// SMTP server, sender and recipients of an email channel.
    pub email: Option<EmailSettings>,
    /// A syslog channel's receiver.
    pub syslog: Option<SyslogSettings>,
    /// An email channel's digest schedule: events are held for it instead of sent one by one.
    pub digest: Option<Schedule>,
}

/// A Jira channel's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JiraSettings {
    /// Project key (`SEC`).
    pub project: String,
    /// Issue type name.
    pub issue_type: String,
    /// Basic-authentication user (Jira Cloud); `None` sends a Bearer token.
    pub username: Option<String>,
}

/// Checked `[alerts]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of console links, without a trailing slash; `None` until `serve` knows it.
    pub console_url: Option<String>,
    /// `product.spread` device threshold.
    pub spread_devices: u32,
    /// `product.spread` user threshold.
    pub spread_users: u32,
    /// `agent.stale` hours.
    pub stale_hours: u32,
    /// `subscription.renewal` days ahead.
    pub renewal_days: u32,
    /// How often the periodic rules run.
    pub rules_every: Duration,
    /// The channels.
    pub channels: Vec<Channel>,
    /// The monthly budgets.
    pub budgets: Vec<Budget>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            console_url: None,
            spread_devices: 10,
            spread_users: 10,
            stale_hours: 72,
            renewal_days: 30,
            rules_every: Duration::from_secs(60),
            channels: Vec::new(),
            budgets: Vec::new(),
        }
    }
}

/// Parses `30s`, `15m`, `6h`, `2d` (a whole number and a unit).
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration like 30m, 6h or 1d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} is not a duration like 30m, 6h or 1d")),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

/// Whether `url` may receive events: `https://`, or `http://` to a loopback host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("{url:?} has user information; put credentials in secret_file"));
    }
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(format!(
            "{url:?} is plain http; only https:// is accepted, except to a loopback host"
        )),
        _ => Err(format!("{url:?} is not an https:// URL")),
    }
}

/// Checks `[alerts]`, pushing each problem as (key, reason). `read_secret` reads a secret file.
pub fn check(
    raw: AlertsFile,
    problems: &mut Vec<(String, String)>,
    read_secret: impl Fn(&Path) -> Result<Secret, String>,
) -> Settings {
    let d = Settings::default();
    let mut positive = |key: &str, v: Option<u32>, default: u32| match v {
        Some(0) => {
            problems.push((format!("alerts.{key}"), "must be at least 1".into()));
            default
        }
        Some(v) => v,
        None => default,
    };
    let spread_devices = positive("spread_devices", raw.spread_devices, d.spread_devices);
    let spread_users = positive("spread_users", raw.spread_users, d.spread_users);
    let stale_hours = positive("stale_hours", raw.stale_hours, d.stale_hours);
    let renewal_days = positive("renewal_days", raw.renewal_days, d.renewal_days);
    let console_url = raw.console_url.and_then(|u| match check_url(&u) {
        Ok(()) => Some(u.trim_end_matches('/').to_owned()),
        Err(why) => {
            problems.push(("alerts.console_url".into(), why));
            None
        }
    });
    let mut channels: Vec<Channel> = Vec::new();
    for (i, c) in raw.channel.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str| format!("alerts.channel[{i}].{k}");
        let mut bad = |k: &str, why: String| problems.push((key(k), why));
        let name = match c.name {
            Some(n) if !n.trim().is_empty() && n.len() <= 64 => n,
            Some(_) => {
                bad("name", "must be 1 to 64 characters".into());
                continue;
            }
            None => {
                bad("name", "required".into());
                continue;
            }
        };
        if channels.iter().any(|o| o.name == name) {
            bad("name", format!("{name:?} is used by another channel"));
        }
        let kind = match c.kind.as_deref() {
            Some("webhook") => Kind::Webhook,
            Some("slack") => Kind::Slack,
            Some("teams") => Kind::Teams,
            Some("siem") => Kind::Siem,
            Some("jira") => Kind::Jira,
            Some("email") => Kind::Email,
            Some("syslog") => Kind::Syslog,
            Some(k) => {
                bad(
                    "kind",
                    format!("{k:?} is not webhook, slack, teams, email, siem, syslog or jira"),
                );
                continue;
            }
            None => {
                bad("kind", "required".into());
                continue;
            }
        };
        let url = match c.url {
            Some(_) if kind == Kind::Email => {
                bad("url", "not used by email channels: set smtp_host".into());
                String::new()
            }
            Some(_) if kind == Kind::Syslog => {
                bad("url", "not used by syslog channels: set syslog_host".into());
                String::new()
            }
            None if matches!(kind, Kind::Email | Kind::Syslog) => String::new(),
            Some(u) => {
                if let Err(why) = check_url(&u) {
                    bad("url", why);
                }
                u
            }
            None => {
                bad("url", "required".into());
                String::new()
            }
        };
        let secret = match (&c.secret_file, kind) {
            (Some(p), _) => read_secret(p).map_err(|why| bad("secret_file", why)).ok(),
            (None, Kind::Webhook) => {
                bad("secret_file", "required: the key the webhook's signature is made with".into());
                None
            }
            (None, Kind::Siem) => {
                bad("secret_file", "required: the collector's token (HEC token)".into());
                None
            }
            (None, Kind::Jira) => {
                bad("secret_file", "required: the Jira API token or personal access token".into());
                None
            }
            (None, Kind::Email) if c.username.is_some() => {
                bad("secret_file", "required with username: the SMTP password".into());
                None
            }
            (None, _) => None,
        };
        if let Some(s) = &secret
            && kind == Kind::Webhook
            && s.expose().len() < 16
        {
            bad("secret_file", "the signing secret must be at least 16 bytes".into());
        }
        let events = c.events.unwrap_or_default();
        for e in &events {
            if !event::TYPES.contains(&e.as_str()) {
                bad("events", format!("{e:?} is not an event type ({})", event::TYPES.join(", ")));
            }
        }
        let statuses = c.statuses.unwrap_or_default();
        for s in &statuses {
            if !["unreviewed", "under_review", "sanctioned", "unsanctioned", "blocked"]
                .contains(&s.as_str())
            {
                bad("statuses", format!("{s:?} is not a review status"));
            }
        }
        let max_per_day = match c.max_per_day {
            Some(0) => {
                bad("max_per_day", "must be at least 1".into());
                1
            }
            Some(n) => n,
            None => 500,
        };
        let quiet = c.quiet.and_then(|q| duration(&q).map_err(|why| bad("quiet", why)).ok());
        let give_up_after = c
            .give_up_after
            .map_or(Ok(Duration::from_secs(86_400)), |g| duration(&g))
            .unwrap_or_else(|why| {
                bad("give_up_after", why);
                Duration::from_secs(86_400)
            });
        if let Some(p) = &c.ca_file
            && !p.is_file()
        {
            bad("ca_file", format!("{} is not a readable file", p.display()));
        }
        let jira = match (kind, c.project) {
            (Kind::Jira, Some(p))
                if !p.is_empty()
                    && p.len() <= 32
                    && p.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
            {
                Some(JiraSettings {
                    project: p,
                    issue_type: c.issue_type.unwrap_or_else(|| "Task".to_owned()),
                    username: c.username.clone(),
                })
            }
            (Kind::Jira, Some(p)) => {
                bad("project", format!("{p:?} is not a Jira project key"));
                None
            }
            (Kind::Jira, None) => {
                bad("project", "required: the key of the Jira project issues go to".into());
                None
            }
            (_, Some(_)) => {
                bad("project", "only for kind = \"jira\"".into());
                None
            }
            (_, None) => None,
        };
        let digest = match (kind, c.digest.as_deref()) {
            (Kind::Email, Some(every)) => {
                super::digest::schedule(every, c.digest_at.as_deref(), c.digest_day.as_deref())
                    .map_err(|(k, why)| bad(k, why))
                    .ok()
            }
            (_, None) => {
                for (k, set) in
                    [("digest_at", c.digest_at.is_some()), ("digest_day", c.digest_day.is_some())]
                {
                    if set {
                        bad(k, "only with digest = \"daily\" or \"weekly\"".into());
                    }
                }
                None
            }
            (_, Some(_)) => {
                bad("digest", "only for kind = \"email\"".into());
                None
            }
        };
        let syslog = match (kind, c.syslog_host) {
            (Kind::Syslog, Some(host))
                if !host.is_empty()
                    && rustls::pki_types::ServerName::try_from(host.as_str()).is_ok() =>
            {
                Some(SyslogSettings { host, port: c.syslog_port.unwrap_or(6514) })
            }
            (Kind::Syslog, Some(host)) => {
                bad("syslog_host", format!("{host:?} is not a host name or address"));
                None
            }
            (Kind::Syslog, None) => {
                bad("syslog_host", "required: the syslog receiver (TLS, RFC 5425)".into());
                None
            }
            (_, Some(_)) => {
                bad("syslog_host", "only for kind = \"syslog\"".into());
                None
            }
            (_, None) => None,
        };
        if c.syslog_port == Some(0) {
            bad("syslog_port", "must be 1 to 65535".into());
        }
        let email = if kind == Kind::Email {
            email_settings(
                &mut bad,
                &c.secret_file,
                c.username,
                c.smtp_host,
                c.smtp_port,
                c.smtp_tls,
                c.from,
                c.to,
            )
        } else {
            for (k, set) in [
                ("smtp_host", c.smtp_host.is_some()),
                ("smtp_port", c.smtp_port.is_some()),
                ("smtp_tls", c.smtp_tls.is_some()),
                ("from", c.from.is_some()),
                ("to", c.to.is_some()),
            ] {
                if set {
                    bad(k, "only for kind = \"email\"".into());
                }
            }
            None
        };
        channels.push(Channel {
            name,
            kind,
            url,
            secret,
            events,
            statuses,
            max_per_day,
            quiet,
            give_up_after,
            ca_file: c.ca_file,
            jira,
            email,
            syslog,
            digest,
        });
    }
    let budgets = budgets(raw.budget.unwrap_or_default(), problems);
    let rules_every = match raw.rules_every.as_deref().map(duration) {
        None => d.rules_every,
        Some(Ok(every)) if every.as_secs() >= 1 => every,
        Some(Ok(_)) => {
            problems.push(("alerts.rules_every".into(), "must be at least 1s".into()));
            d.rules_every
        }
        Some(Err(why)) => {
            problems.push(("alerts.rules_every".into(), why));
            d.rules_every
        }
    };
    Settings {
        console_url,
        spread_devices,
        spread_users,
        stale_hours,
        renewal_days,
        rules_every,
        channels,
        budgets,
    }
}

/// Checks an email channel's SMTP keys.
#[allow(clippy::too_many_arguments)]
fn email_settings(
    bad: &mut impl FnMut(&str, String),
    secret_file: &Option<PathBuf>,
    username: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    from: Option<String>,
    to: Option<Vec<String>>,
) -> Option<EmailSettings> {
    let tls = match tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Implicit,
        Some(other) => {
            bad("smtp_tls", format!("{other:?} is not starttls or tls (implicit TLS)"));
            SmtpTls::StartTls
        }
    };
    let port = match port {
        Some(0) => {
            bad("smtp_port", "must be 1 to 65535".into());
            0
        }
        Some(p) => p,
        None if tls == SmtpTls::Implicit => 465,
        None => 587,
    };
    let host = match host {
        Some(h) if rustls::pki_types::ServerName::try_from(h.as_str()).is_ok() && !h.is_empty() => {
            Some(h)
        }
        Some(h) => {
            bad("smtp_host", format!("{h:?} is not a host name or address"));
            None
        }
        None => {
            bad("smtp_host", "required: the SMTP server".into());
            None
        }
    };
    if username.is_none() && secret_file.is_some() {
        bad("username", "required with secret_file: the SMTP user".into());
    }
    if let Some(u) = &username
        && (u.is_empty() || u.chars().any(char::is_control))
    {
        bad("username", "must be a non-empty user name without control characters".into());
    }
    let from = match from {
        Some(f) => check_address(&f).map_err(|why| bad("from", why)).ok().map(|()| f),
        None => {
            bad("from", "required: the sender address".into());
            None
        }
    };
    let to = to.unwrap_or_default();
    if to.is_empty() {
        bad("to", "required: at least one recipient address".into());
    }
    let mut to_ok = !to.is_empty();
    for t in &to {
        if let Err(why) = check_address(t) {
            bad("to", why);
            to_ok = false;
        }
    }
    match (host, from, to_ok) {
        (Some(host), Some(from), true) => {
            Some(EmailSettings { host, port, tls, username, from, to })
        }
        _ => None,
    }
}

fn budgets(raw: Vec<BudgetFile>, problems: &mut Vec<(String, String)>) -> Vec<Budget> {
    let mut out = Vec::new();
    for (i, b) in raw.into_iter().enumerate() {
        let mut bad =
            |k: &str, why: String| problems.push((format!("alerts.budget[{i}].{k}"), why));
        let source = match b.source.as_deref() {
            None | Some("all") => BudgetSource::All,
            Some("shadow") => BudgetSource::Shadow,
            Some("gateway") => BudgetSource::Gateway,
            Some(other) => {
                bad("source", format!("{other:?} is not shadow, gateway or all"));
                continue;
            }
        };
        let currency = b.currency.unwrap_or_else(|| "USD".to_owned()).to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            bad("currency", format!("{currency:?} is not an ISO 4217 code"));
            continue;
        }
        let scale = crate::ingest::parse::exponent(&currency);
        let monthly_minor =
            match b.monthly.as_deref().map(|m| crate::ingest::parse::parse_decimal(m, scale)) {
                Some(Ok(v)) if v > 0 => v,
                Some(Ok(_)) => {
                    bad("monthly", "must be more than zero".into());
                    continue;
                }
                Some(Err(e)) => {
                    bad("monthly", format!("not an amount: {e}"));
                    continue;
                }
                None => {
                    bad("monthly", "required: the monthly amount, e.g. \"5000.00\"".into());
                    continue;
                }
            };
        let mut levels = b.levels.unwrap_or_else(|| vec![50, 80, 100]);
        levels.sort_unstable();
        levels.dedup();
        if levels.is_empty() || levels.iter().any(|l| *l == 0 || *l > 1_000) {
            bad("levels", "percentages from 1 to 1000".into());
            continue;
        }
        out.push(Budget {
            department: b.department,
            product: b.product,
            source,
            monthly_minor,
            currency,
            levels,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> (Settings, Vec<(String, String)>) {
        let raw: AlertsFile = toml_edit::de::from_str(text).expect("toml");
        let mut problems = Vec::new();
        let s = check(raw, &mut problems, |p| {
            Ok(Secret::new(format!("secret-of-{}-0123456789", p.display())))
        });
        (s, problems)
    }

    #[test]
    fn a_webhook_channel_is_checked_with_defaults() {
        let (s, problems) = checked(
            "[[channel]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/a\"\n\
             secret_file = \"/etc/x\"\nevents = [\"product.discovered\"]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let c = &s.channels[0];
        assert_eq!((c.name.as_str(), c.kind, c.max_per_day), ("soc", Kind::Webhook, 500));
        assert_eq!(c.give_up_after, Duration::from_secs(86_400));
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let (_, problems) = checked(
            "[[channel]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://hooks.example.com/\"\n\
             events = [\"product.found\"]\nquiet = \"soon\"\n\
             [[channel]]\nname = \"a\"\nkind = \"pager\"\n\
             [[channel]]\nname = \"m\"\nkind = \"email\"\n",
        );
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.channel[0].url",
                "alerts.channel[0].secret_file",
                "alerts.channel[0].events",
                "alerts.channel[0].quiet",
                "alerts.channel[1].name",
                "alerts.channel[1].kind",
                "alerts.channel[2].smtp_host",
                "alerts.channel[2].from",
                "alerts.channel[2].to",
            ]
        );
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://[::1]:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://127.0.0.1.example.com/").is_err());
        assert!(check_url("ftp://127.0.0.1/").is_err());
        assert!(check_url("https://user:pw@hooks.example.com/").is_err());
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(duration("10").is_err());
        assert!(duration("h").is_err());
        assert!(duration("99999999999999999999d").is_err());
    }
}
