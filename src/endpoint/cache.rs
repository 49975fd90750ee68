//! The endpoint cache: whether an endpoint exists, whether it requires an API key, its keys'
//! hashes and the rate limits, read from the database at most every [`ENDPOINT_CACHE_TTL`] per
//! endpoint; and the token buckets of those rate limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use metamcp_telemetry::TelemetryManager;

use crate::ratelimit::{Limited, RateLimit, RateLimited, RateLimiter};
use crate::service::Gateway;
use crate::storage::{self, StorageError};

/// How long a looked-up endpoint (auth flag and key hashes) is trusted before it is read again.
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(2);

/// What a request to an endpoint needs to know of it.
#[derive(Debug, Clone)]
pub(super) struct EndpointEntry {
    /// Whether a request needs one of `keys`.
    pub(super) auth_required: bool,
    /// The endpoint's API keys, hashed, with their rate limits.
    pub(super) keys: Vec<storage::KeyHash>,
    /// The endpoint's rate limit, if any.
    pub(super) rate_limit: Option<RateLimit>,
    fetched: Instant,
}

/// The token buckets of the endpoints and of the API keys with a rate limit.
#[derive(Debug, Default)]
struct RateLimits {
    endpoints: RateLimiter<String>,
    keys: RateLimiter<i64>,
}

impl RateLimits {
    /// Takes a token from the bucket of `key` (when it has a limit), then from the bucket of
    /// `endpoint` (when it has one); the first without a token refuses the request, gives back
    /// what the other took, and counts the refusal.
    fn admit(
        &self,
        telemetry: &TelemetryManager,
        endpoint: &str,
        entry: &EndpointEntry,
        key: Option<i64>,
    ) -> Result<(), RateLimited> {
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
fn refused(telemetry: &TelemetryManager, scope: &'static str, name: &str, limited: Limited) -> RateLimited {
    telemetry.record_rate_limited(scope, name);
    tracing::debug!(scope, name, retry_after_ms = limited.retry_after.as_millis() as u64, "rate limited");
    RateLimited { scope, name: name.to_owned(), retry_after_secs: limited.retry_after_secs() }
}

/// Endpoint lookups (existence, auth flag, key hashes), cached for a short time so a call does
/// not read them on every request. The admin API drops an entry when it changes the endpoint.
/// While the database is unavailable the last good entry is served.
#[derive(Debug, Default)]
pub struct EndpointCache {
    map: Mutex<HashMap<String, EndpointEntry>>,
    limits: RateLimits,
}

impl EndpointCache {
    /// Forgets `endpoint` (after the admin API changed or deleted it).
    pub fn invalidate(&self, endpoint: &str) {
        self.map.lock().remove(endpoint);
    }

    /// Admits a request to `endpoint` (described by `entry`, opened with the API key `key`) by
    /// the key's and the endpoint's rate limits; over one: [`RateLimited`] (a 429), counted.
    pub(super) fn check_rate(
        &self,
        gateway: &Gateway,
        endpoint: &str,
        entry: &EndpointEntry,
        key: Option<i64>,
    ) -> Result<(), RateLimited> {
        self.limits.admit(gateway.telemetry(), endpoint, entry, key)
    }

    /// The entry of `endpoint`: cached, or read now (`NotFound` when there is no such endpoint).
    pub(super) async fn get(&self, gateway: &Gateway, endpoint: &str) -> Result<EndpointEntry, StorageError> {
        if let Some(entry) = self.map.lock().get(endpoint) {
            if entry.fetched.elapsed() < ENDPOINT_CACHE_TTL {
                return Ok(entry.clone());
            }
        }
        let owned = endpoint.to_owned();
        let fetched = gateway
            .store()
            .run(move |c| {
                let detail = storage::get_endpoint(c, &owned)?;
                let keys = storage::api_keys(c, &owned)?;
                Ok(EndpointEntry {
                    auth_required: detail.endpoint.auth_required,
                    rate_limit: detail.endpoint.rate_limit(),
                    keys,
                    fetched: Instant::now(),
                })
            })
            .await;
        let entry = match fetched {
            Ok(entry) => entry,
            // The database is away: keep serving the last good entry, asked again after another
            // TTL, so MCP calls that need no database write keep working.
            Err(err) if err.is_unavailable() => {
                let mut map = self.map.lock();
                let Some(stale) = map.get_mut(endpoint) else { return Err(err) };
                stale.fetched = Instant::now();
                tracing::debug!(endpoint, error = %err, "database unavailable; using the last endpoint lookup");
                return Ok(stale.clone());
            }
            Err(err) => return Err(err),
        };
        let mut map = self.map.lock();
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(endpoint.to_owned(), entry.clone());
        Ok(entry)
    }
}
