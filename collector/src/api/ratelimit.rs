//! A per-agent token bucket, kept **per instance**.
//!
//! Behind N collectors the effective limit is up to N times the setting; that is accepted,
//! since the limit protects each instance, and nothing another instance needs lives here.
//! The map is bounded: when it is full, buckets that have refilled completely (idle agents)
//! are forgotten, and if none has, the map is cleared (every agent gets a fresh burst).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Most agents tracked at once.
const MAX_TRACKED: usize = 200_000;

/// Token buckets keyed by device row id.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` tokens refill per minute, up to `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: i64) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            true
        } else {
            *tokens = refilled;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn burst_is_allowed_then_refused() {
        let limiter = super::RateLimiter::new(1, 3);
        assert!((0..3).all(|_| limiter.allow(7)));
        assert!(!limiter.allow(7));
        assert!(limiter.allow(8), "another agent has its own bucket");
    }
}
