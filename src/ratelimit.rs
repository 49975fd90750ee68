//! Rate limits of endpoints and API keys: a token bucket per endpoint and per key.
//!
//! A bucket holds at most `burst` tokens and gains `rps` tokens a second; a request takes one, and
//! a request that finds less than one is refused with the time until one is there (the
//! `Retry-After` of the 429). The [`RateLimiter`] keeps the buckets in shards, each behind its own
//! short lock (a lookup and a little arithmetic, no allocation for a known bucket), and holds at
//! most [`MAX_BUCKETS`]: past it a shard first forgets its full buckets (which a fresh bucket
//! equals), then, if still full, starts over — a forgotten bucket only ever grants its burst
//! again, never refuses more.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpResponse;
use parking_lot::Mutex;

/// JSON-RPC error code of a request refused by a rate limit (implementation-defined server error
/// range; 429 in its last digits).
pub const RATE_LIMITED: i64 = -32029;
/// Largest accepted `rate_limit_rps`.
pub const MAX_RPS: f64 = 1_000_000.0;
/// Largest accepted `rate_limit_burst`.
pub const MAX_BURST: i64 = 1_000_000;
/// Most buckets a [`RateLimiter`] keeps at once.
pub const MAX_BUCKETS: usize = 65_536;
/// Lock shards of a [`RateLimiter`].
const SHARDS: usize = 16;

/// A rate limit: `rps` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateLimit {
    rps: f64,
    burst: u32,
}

/// Why a rate limit is not valid; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// `rate_limit_rps` is not a number above 0 and at most [`MAX_RPS`].
    #[error("rate_limit_rps must be a number above 0 and at most 1000000")]
    Rps,
    /// `rate_limit_burst` is not an integer from 1 to [`MAX_BURST`].
    #[error("rate_limit_burst must be an integer from 1 to 1000000")]
    Burst,
    /// `rate_limit_burst` was given without `rate_limit_rps`.
    #[error("rate_limit_burst needs rate_limit_rps")]
    BurstWithoutRps,
}

impl RateLimitError {
    /// The field at fault: `rate_limit_rps` or `rate_limit_burst`.
    pub const fn field(&self) -> &'static str {
        match self {
            RateLimitError::Rps => "rate_limit_rps",
            RateLimitError::Burst | RateLimitError::BurstWithoutRps => "rate_limit_burst",
        }
    }
}

impl RateLimit {
    /// `rps` requests a second with bursts of `burst`.
    pub fn new(rps: f64, burst: i64) -> Result<RateLimit, RateLimitError> {
        if !(rps.is_finite() && rps > 0.0 && rps <= MAX_RPS) {
            return Err(RateLimitError::Rps);
        }
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(RateLimitError::Burst);
        }
        Ok(RateLimit { rps, burst: u32::try_from(burst).map_err(|_| RateLimitError::Burst)? })
    }

    /// The limit the optional fields of a record or a request give: none without `rps`; `burst`
    /// defaults to `rps` rounded up (at least 1).
    pub fn from_fields(rps: Option<f64>, burst: Option<i64>) -> Result<Option<RateLimit>, RateLimitError> {
        match (rps, burst) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(RateLimitError::BurstWithoutRps),
            (Some(rps), burst) => {
                let burst = match burst {
                    Some(burst) => burst,
                    // A float-to-int `as` saturates; the range check above bounds it anyway.
                    None if rps.is_finite() && rps > 0.0 => (rps.ceil() as i64).max(1),
                    None => return Err(RateLimitError::Rps),
                };
                RateLimit::new(rps, burst).map(Some)
            }
        }
    }

    /// Requests per second.
    pub const fn rps(&self) -> f64 {
        self.rps
    }

    /// Requests at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }
}

/// One bucket: its tokens at `at`, and the limit they were counted under.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { limit, tokens: f64::from(limit.burst), at: now }
    }

    /// Adds the tokens earned since the last visit.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.rps).min(f64::from(self.limit.burst));
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - self.tokens) / self.limit.rps).min(86_400.0)))
        }
    }

    /// Whether the bucket is full by `now` (and so equals a fresh one).
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.limit.rps >= f64::from(self.limit.burst)
    }
}

/// A request refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// When a token will be there.
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// A request refused by the rate limit of an endpoint or an API key, as answered: 429 with
/// `Retry-After` and a JSON-RPC error ([`RATE_LIMITED`]) whose `id` is null (the request was not
/// read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// `endpoint` or `api_key`.
    pub scope: &'static str,
    /// The endpoint's name or the key's prefix (never the key).
    pub name: String,
    /// Whole seconds until a token is there (at least 1).
    pub retry_after_secs: u64,
}

impl RateLimited {
    /// The 429 answer.
    pub fn response(&self) -> HttpResponse {
        let whose = match self.scope {
            "api_key" => format!("API key {}", self.name),
            _ => format!("endpoint {:?}", self.name),
        };
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {
                "code": RATE_LIMITED,
                "message": format!("rate limit of {whose} exceeded; retry after {} s", self.retry_after_secs),
                "data": { "scope": self.scope, "retry_after": self.retry_after_secs },
            },
        });
        HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, self.retry_after_secs.to_string()))
            .content_type(header::ContentType::json())
            .body(body.to_string())
    }
}

/// Token buckets by key `K` (an endpoint's name, an API key's id), sharded and bounded.
#[derive(Debug)]
pub struct RateLimiter<K> {
    shards: Box<[Mutex<HashMap<K, Bucket>>]>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl<K: Hash + Eq> Default for RateLimiter<K> {
    fn default() -> Self {
        Self::with_capacity(MAX_BUCKETS)
    }
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter holding at most about `capacity` buckets.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<HashMap<K, Bucket>> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[index]
    }

    /// Takes a token from the bucket of `key` under `limit` at `now`. A bucket whose limit
    /// changed starts again, full, under the new one.
    pub fn check<Q>(&self, key: &Q, limit: RateLimit, now: Instant) -> Result<(), Limited>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut shard = self.shard(key).lock();
        if let Some(bucket) = shard.get_mut(key) {
            if bucket.limit != limit {
                *bucket = Bucket::full(limit, now);
            }
            return bucket.take(now).map_err(|retry_after| Limited { retry_after });
        }
        if shard.len() >= self.per_shard {
            shard.retain(|_, bucket| !bucket.is_full(now));
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        let mut bucket = Bucket::full(limit, now);
        let taken = bucket.take(now).map_err(|retry_after| Limited { retry_after });
        shard.insert(key.to_owned(), bucket);
        taken
    }

    /// Gives back the token a request took from the bucket of `key` (the request was refused by
    /// another limit after all).
    pub fn refund<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(bucket) = self.shard(key).lock().get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(f64::from(bucket.limit.burst));
        }
    }

    /// Forgets the bucket of `key`.
    pub fn forget<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).lock().remove(key);
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rps: f64, burst: i64) -> RateLimit {
        RateLimit::new(rps, burst).unwrap()
    }

    #[test]
    fn limits_are_validated_naming_the_field() {
        for rps in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e7] {
            assert_eq!(RateLimit::new(rps, 1).unwrap_err().field(), "rate_limit_rps", "{rps}");
        }
        for burst in [0, -3, MAX_BURST + 1] {
            assert_eq!(RateLimit::new(1.0, burst).unwrap_err().field(), "rate_limit_burst", "{burst}");
        }
        assert_eq!(RateLimit::from_fields(None, None), Ok(None));
        assert_eq!(RateLimit::from_fields(None, Some(3)), Err(RateLimitError::BurstWithoutRps));
        assert_eq!(RateLimit::from_fields(Some(2.5), None).unwrap().unwrap().burst(), 3);
        assert_eq!(RateLimit::from_fields(Some(0.2), None).unwrap().unwrap().burst(), 1);
        assert_eq!(RateLimit::from_fields(Some(2.0), Some(7)).unwrap().unwrap(), limit(2.0, 7));
        assert_eq!(RateLimit::from_fields(Some(-2.0), None), Err(RateLimitError::Rps));
    }

    #[test]
    fn the_burst_passes_then_the_next_waits_for_its_token() {
        let limiter = RateLimiter::<String>::default();
        let start = Instant::now();
        let two_a_second = limit(2.0, 3);
        for _ in 0..3 {
            assert_eq!(limiter.check("e", two_a_second, start), Ok(()));
        }
        let refused = limiter.check("e", two_a_second, start).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another key is unaffected.
        assert_eq!(limiter.check("other", two_a_second, start), Ok(()));
        // Half a second later one token is back, and only one.
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.check("e", two_a_second, later), Ok(()));
        assert!(limiter.check("e", two_a_second, later).is_err());
        // A refund gives the token back.
        limiter.refund("e");
        assert_eq!(limiter.check("e", two_a_second, later), Ok(()));
        // A changed limit starts a full bucket.
        assert_eq!(limiter.check("e", limit(1.0, 1), later), Ok(()));
        assert!(limiter.check("e", limit(1.0, 1), later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let slow = limit(0.1, 1);
        let limiter = RateLimiter::<i64>::default();
        let now = Instant::now();
        limiter.check(&7, slow, now).unwrap();
        let refused = limiter.check(&7, slow, now + Duration::from_millis(1)).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 10);
        assert_eq!(Limited { retry_after: Duration::from_secs(2) }.retry_after_secs(), 2);
        assert_eq!(Limited { retry_after: Duration::ZERO }.retry_after_secs(), 1);
    }

    #[test]
    fn memory_stays_bounded_and_forgets_full_buckets_first() {
        let limiter = RateLimiter::<i64>::with_capacity(64);
        let now = Instant::now();
        let one = limit(1.0, 1);
        for key in 0..10_000 {
            let _ = limiter.check(&key, one, now);
            assert!(limiter.len() <= 64 + SHARDS, "{}", limiter.len());
        }
        // Once full again (a second later), buckets are forgotten before any busy one.
        let later = now + Duration::from_secs(2);
        for key in 20_000..20_064 {
            let _ = limiter.check(&key, one, later);
        }
        assert!(limiter.len() <= 64 + SHARDS);
        limiter.forget(&20_000);
    }

    #[test]
    fn rates_hold_over_time() {
        // 10 a second with bursts of 5, asked 100 times a second for 3 seconds: 5 + 10 * 3 pass.
        let limiter = RateLimiter::<String>::default();
        let start = Instant::now();
        let passed = (0..300u64)
            .filter(|&i| limiter.check("e", limit(10.0, 5), start + Duration::from_millis(i * 10)).is_ok())
            .count();
        assert!((34..=35).contains(&passed), "{passed}");
    }
}
