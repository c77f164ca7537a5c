//! Logging for the agent binary: a `tracing` subscriber on standard error, human-readable by
//! default and JSON on request, filtered by `AISCOUT_LOG` (`info` when unset). Installed once,
//! by `main`; library code only emits events.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. A second call does nothing.
pub fn init(json: bool) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_env("AISCOUT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Err only when a subscriber is already installed, which is then the one to keep.
    let _installed = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Holds back a log line that repeats (issue 14 item 8: a full disk logged the same error a
/// hundred times a second). The first occurrence of a message is logged; the same message
/// again within `every` is only counted; the first one after `every` (or a different message)
/// is logged again with the number held back since. [`Repeats::clear`] ends a run of failures
/// and says how many were held back, for a closing line.
#[derive(Debug)]
pub struct Repeats {
    every: std::time::Duration,
    last: Option<(String, std::time::Instant)>,
    held: u64,
}

impl Repeats {
    /// A limiter logging one identical line per `every` at most.
    pub fn new(every: std::time::Duration) -> Self {
        Self { every, last: None, held: 0 }
    }

    /// Whether to log `message` now: `Some(n)` with the `n` identical lines held back since
    /// the last one logged, or `None` to hold this one back.
    pub fn check(&mut self, message: &str) -> Option<u64> {
        let now = std::time::Instant::now();
        match &self.last {
            Some((text, at)) if text == message && now.duration_since(*at) < self.every => {
                self.held = self.held.saturating_add(1);
                None
            }
            _ => {
                self.last = Some((message.to_owned(), now));
                Some(std::mem::take(&mut self.held))
            }
        }
    }

    /// The failures are over: forgets the last message and returns how many lines were held
    /// back since it was logged (`None` when nothing was failing).
    pub fn clear(&mut self) -> Option<u64> {
        self.last.take().map(|_| std::mem::take(&mut self.held))
    }
}

/// An error and its causes on one line, for the heartbeat (and for a message that shows a
/// library's error whole, since the library leaves its cause out of its own message).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    // Bounded: error chains are short; eight links is far more than any here.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::Repeats;
    use std::time::Duration;

    #[test]
    fn a_repeated_line_is_logged_once_per_interval_with_the_count_held_back() {
        let mut r = Repeats::new(Duration::from_secs(3_600));
        assert_eq!(r.check("disk full"), Some(0));
        for _ in 0..99 {
            assert_eq!(r.check("disk full"), None);
        }
        assert_eq!(r.check("another error"), Some(99), "a new message is logged at once");
        assert_eq!(r.check("another error"), None);
        assert_eq!(r.clear(), Some(1));
        assert_eq!(r.clear(), None);
        let mut every_time = Repeats::new(Duration::ZERO);
        assert_eq!(every_time.check("x"), Some(0));
        assert_eq!(every_time.check("x"), Some(0), "past the interval it is logged again");
    }
}
