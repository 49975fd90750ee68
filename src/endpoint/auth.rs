//! Who may use an endpoint, and how often: an endpoint that requires auth admits a request whose
//! bearer token is one of its API keys (compared by SHA-256, in constant time, every key each
//! time); the key's and the endpoint's rate limits, when set, admit it only while their token
//! buckets hold a token ([`RateLimits`]; over the limit: 429 with `Retry-After` and a JSON-RPC
//! error, [`RATE_LIMITED`]); the last use of each key is written at most once per
//! [`KEY_USE_RESOLUTION`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use metamcp_telemetry::http::ApiError;
use metamcp_telemetry::TelemetryManager;
use parking_lot::Mutex;
use serde_json::json;

use super::cache::EndpointEntry;
use crate::auth::{bearer, find_match, hash_key, Refused};
use crate::ratelimit::{Limited, RateLimiter};
use crate::service::Gateway;
use crate::storage;

/// JSON-RPC error code of a request refused by a rate limit (implementation-defined server error
/// range; 429 in its last digits).
pub(crate) const RATE_LIMITED: i64 = -32029;

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
/// rate limit (429).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Unknown endpoint, no or a wrong key, the database unavailable, ...
    Denied(ApiError),
    /// A rate limit has no token left.
    Limited {
        /// `endpoint` or `api_key`.
        scope: &'static str,
        /// The endpoint's name or the key's prefix.
        name: String,
        /// Whole seconds until a token is there (at least 1).
        retry_after_secs: u64,
    },
}

impl From<ApiError> for Refusal {
    fn from(err: ApiError) -> Refusal {
        Refusal::Denied(err)
    }
}

impl Refused for Refusal {
    /// The JSON error of a denial; for a rate limit, 429 with `Retry-After` and a JSON-RPC error
    /// (its `id` null: the request was not read).
    fn response(&self) -> HttpResponse {
        match self {
            Refusal::Denied(err) => err.response(),
            Refusal::Limited { scope, name, retry_after_secs } => {
                let whose = match *scope {
                    "api_key" => format!("API key {name}"),
                    _ => format!("endpoint {name:?}"),
                };
                let body = json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": {
                        "code": RATE_LIMITED,
                        "message": format!("rate limit of {whose} exceeded; retry after {retry_after_secs} s"),
                        "data": { "scope": scope, "retry_after": retry_after_secs },
                    },
                });
                HttpResponse::TooManyRequests()
                    .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                    .content_type(header::ContentType::json())
                    .body(body.to_string())
            }
        }
    }
}

/// The token buckets of the endpoints and of the API keys with a rate limit.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    endpoints: RateLimiter<String>,
    keys: RateLimiter<i64>,
}

impl RateLimits {
    /// Takes a token from the bucket of `key` (when it has a limit), then from the bucket of
    /// `endpoint` (when it has one); the first without a token refuses the request, gives back
    /// what the other took, and counts the refusal.
    pub(super) fn admit(
        &self,
        telemetry: &TelemetryManager,
        endpoint: &str,
        entry: &EndpointEntry,
        key: Option<i64>,
    ) -> Result<(), Refusal> {
        let now = Instant::now();
        let keyed = key.and_then(|id| entry.keys.iter().find(|known| known.id == id));
        let mut taken_from_key = None;
        if let Some(known) = keyed {
            if let Some(limit) = known.rate_limit() {
                self.keys
                    .check(&known.id, limit, now)
                    .map_err(|limited| refused(telemetry, "api_key", &known.prefix, limited))?;
                taken_from_key = Some(known.id);
            }
        }
        if let Some(limit) = entry.rate_limit {
            if let Err(limited) = self.endpoints.check(endpoint, limit, now) {
                if let Some(id) = taken_from_key {
                    self.keys.refund(&id);
                }
                return Err(refused(telemetry, "endpoint", endpoint, limited));
            }
        }
        Ok(())
    }
}

/// The refusal of a request over the limit of `scope` `name`, counted in
/// `metamcp_rate_limited_total{scope, name}`.
fn refused(telemetry: &TelemetryManager, scope: &'static str, name: &str, limited: Limited) -> Refusal {
    telemetry.record_rate_limited(scope, name);
    tracing::debug!(scope, name, retry_after_ms = limited.retry_after.as_millis() as u64, "rate limited");
    Refusal::Limited { scope, name: name.to_owned(), retry_after_secs: limited.retry_after_secs() }
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
