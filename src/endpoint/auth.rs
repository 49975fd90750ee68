//! Who may use an endpoint, and how often: an endpoint that requires auth admits a request whose
//! bearer token is one of its API keys (compared by SHA-256, in constant time, every key each
//! time); the key's and the endpoint's rate limits, when set, admit it only while their token
//! buckets hold a token (kept beside the endpoint cache; over the limit: 429 with `Retry-After`
//! and a JSON-RPC error, [`RateLimited`]); the last use of each key is written at most once per
//! [`KEY_USE_RESOLUTION`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use metamcp_telemetry::http::ApiError;
use parking_lot::Mutex;

use super::cache::EndpointEntry;
use crate::auth::{bearer, find_match, hash_key, Refused};
use crate::ratelimit::RateLimited;
use crate::service::Gateway;
use crate::storage;

/// How precise `last_used_at` is: a key's use is written at most once per this interval.
pub const KEY_USE_RESOLUTION: Duration = Duration::from_secs(60);
/// Keys remembered at most; past it the memory starts over (and each key is written once more).
const MAX_TRACKED_KEYS: usize = 100_000;

/// Checks the auth of a request to `endpoint` against its cached `entry`: `Ok(None)` on an
/// endpoint that requires no key, `Ok(Some(id))` with the row id of the API key presented, a 401
/// otherwise.
pub(super) fn authorize(endpoint: &str, entry: &EndpointEntry, headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    if !entry.auth_required {
        return Ok(None);
    }
    let Some(key) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("endpoint {endpoint:?} requires Authorization: Bearer <api key>"),
        ));
    };
    let hash = hash_key(key);
    match find_match(hash.as_bytes(), entry.keys.iter().map(|known| (known.id, known.hash.as_bytes()))) {
        Some(id) => Ok(Some(id)),
        None => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the API key is not valid for this endpoint"))
        }
    }
}

/// Why the admission of a request failed: the endpoint lookup or its auth (a JSON error), or a
/// rate limit (429 with `Retry-After` and a JSON-RPC error).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Unknown endpoint, no or a wrong key, the database unavailable, ...
    Denied(ApiError),
    /// A rate limit has no token left.
    Limited(RateLimited),
}

impl From<ApiError> for Refusal {
    fn from(err: ApiError) -> Refusal {
        Refusal::Denied(err)
    }
}

impl From<RateLimited> for Refusal {
    fn from(limited: RateLimited) -> Refusal {
        Refusal::Limited(limited)
    }
}

impl Refused for Refusal {
    fn response(&self) -> HttpResponse {
        match self {
            Refusal::Denied(err) => err.response(),
            Refusal::Limited(limited) => limited.response(),
        }
    }
}

/// When each API key was last recorded as used, so `last_used_at` is written at most once per
/// [`KEY_USE_RESOLUTION`] per key, off the request: the write is spawned, never awaited.
#[derive(Debug, Default)]
pub struct KeyUsage {
    recorded: Mutex<HashMap<i64, Instant>>,
}

impl KeyUsage {
    /// Whether the use of `key` now is due to be written (and notes it as written).
    fn due(&self, key: i64) -> bool {
        let now = Instant::now();
        let mut recorded = self.recorded.lock();
        if recorded.get(&key).is_some_and(|at| now.duration_since(*at) < KEY_USE_RESOLUTION) {
            return false;
        }
        if recorded.len() >= MAX_TRACKED_KEYS {
            recorded.clear();
        }
        recorded.insert(key, now);
        true
    }

    /// Writes `last_used_at` of `key` in the background when due.
    pub(super) fn note(&self, gateway: &Gateway, key: i64) {
        if !self.due(key) {
            return;
        }
        let store = gateway.store().clone();
        actix_rt::spawn(async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if let Err(err) = store.run(move |c| storage::touch_api_key(c, key, now_ms)).await {
                tracing::debug!(error = %err, "the last use of an API key was not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::KeyUsage;

    #[test]
    fn key_use_is_due_once_per_resolution() {
        let usage = KeyUsage::default();
        assert!(usage.due(1));
        assert!(!usage.due(1), "within the minute: not written again");
        assert!(usage.due(2));
    }
}
