//! A per-agent token bucket, kept **per instance**.
//!
//! Behind N collectors the effective limit is up to N times the setting; that is accepted,
//! since the limit protects each instance, and nothing another instance needs lives here.
//! The map is bounded: when it is full, buckets that have refilled completely (idle agents)
//! are forgotten, and if none has, the map is cleared (every agent gets a fresh burst).

use std::collections::HashMap;
use std::net::IpAddr;
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

/// Most source addresses [`FailureThrottle`] tracks; beyond that, new addresses share one
/// bucket (so a flood from many addresses is throttled together, not forgotten).
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Wrong enroll secrets per source address (issue 14 item 3), kept **per instance**: each
/// address may get `burst` wrong secrets, refilled at `per_hour`; while its bucket is empty
/// every enrollment from it, right secret or not, is refused before the secret is compared.
#[derive(Debug)]
pub struct FailureThrottle {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
}

impl FailureThrottle {
    /// `burst` failures at once, `per_hour` more each hour.
    pub fn new(burst: u32, per_hour: u32) -> Self {
        Self {
            per_second: f64::from(per_hour.max(1)) / 3600.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        (tokens + now.duration_since(at).as_secs_f64() * self.per_second).min(self.burst)
    }

    /// `Ok` when `address` may try; otherwise the seconds until it may (for `Retry-After`).
    ///
    /// # Errors
    /// The whole seconds to wait, at least 1.
    pub fn check(&self, address: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = || {
            if buckets.len() >= MAX_TRACKED_ADDRESSES { buckets.get(&None) } else { None }
        };
        let Some(&(tokens, at)) = buckets.get(&Some(address)).or_else(shared) else {
            return Ok(());
        };
        let tokens = self.refilled(tokens, at, now);
        if tokens >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - tokens) / self.per_second).ceil();
        // A float of at most 3600 / 1 * burst seconds; the cast cannot overflow.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Err((wait as u64).max(1))
    }

    /// Takes one token from `address`'s bucket: it sent a wrong secret.
    pub fn fail(&self, address: IpAddr) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&Some(address)) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|k, (tokens, at)| {
                k.is_none() || *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let key = if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&Some(address))
        {
            None
        } else {
            Some(address)
        };
        let burst = self.burst;
        let (tokens, at) = buckets.entry(key).or_insert((burst, now));
        let left = self.refilled(*tokens, *at, now);
        *tokens = (left - 1.0).max(0.0);
        *at = now;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrong_secrets_are_throttled_per_address() {
        let throttle = super::FailureThrottle::new(3, 1);
        let a = std::net::IpAddr::from([127, 0, 0, 2]);
        let b = std::net::IpAddr::from([127, 0, 0, 3]);
        for _ in 0..3 {
            assert_eq!(throttle.check(a), Ok(()));
            throttle.fail(a);
        }
        let wait = throttle.check(a).unwrap_err();
        assert!((1..=3600).contains(&wait), "{wait}");
        assert_eq!(throttle.check(b), Ok(()), "another address has its own bucket");
    }

    #[test]
    fn burst_is_allowed_then_refused() {
        let limiter = super::RateLimiter::new(1, 3);
        assert!((0..3).all(|_| limiter.allow(7)));
        assert!(!limiter.allow(7));
        assert!(limiter.allow(8), "another agent has its own bucket");
    }
}
