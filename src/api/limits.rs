//! Rate limits in the admin API: `rate_limit_rps` (requests per second, above 0) and
//! `rate_limit_burst` (requests at once, at least 1; default `rate_limit_rps` rounded up) of an
//! endpoint (`POST /api/endpoints`, `PATCH /api/endpoints/{name}`) and of an API key
//! (`POST /api/endpoints/{name}/keys`, `PATCH /api/endpoints/{name}/keys/{prefix}`). In a PATCH,
//! `"rate_limit_rps": null` removes the limit.

use actix_web::http::StatusCode;
use metamcp_telemetry::http::ApiError;
use serde_json::{Map, Value};

use crate::ratelimit::{RateLimit, RateLimitError};

const RPS: &str = "rate_limit_rps";
const BURST: &str = "rate_limit_burst";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_rate_limit", message)
}

/// The limit the two optional fields give, or a 400 naming the field.
pub(super) fn from_fields(rps: Option<f64>, burst: Option<i64>) -> Result<Option<RateLimit>, ApiError> {
    RateLimit::from_fields(rps, burst).map_err(|err: RateLimitError| invalid(err.to_string()))
}

/// The limit of a body that may carry only the two fields. `required`: `rate_limit_rps` must be
/// present (`null` to remove the limit); otherwise an empty body means no limit.
pub(super) fn from_body(body: &Map<String, Value>, required: bool) -> Result<Option<RateLimit>, ApiError> {
    if let Some(unknown) = body.keys().find(|key| *key != RPS && *key != BURST) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown field {shown:?}; expected {RPS} and {BURST}"),
        ));
    }
    if required && !body.contains_key(RPS) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("{RPS} is required (a number above 0, or null to remove the limit)"),
        ));
    }
    let rps = match body.get(RPS) {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_f64().ok_or_else(|| invalid(RateLimitError::Rps.to_string()))?),
    };
    let burst = match body.get(BURST) {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_i64().ok_or_else(|| invalid(RateLimitError::Burst.to_string()))?),
    };
    from_fields(rps, burst)
}

/// The body of a request that may come without one (`POST .../keys`): empty (or `null`) is `{}`.
pub(super) fn optional_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the request body must be a JSON object")),
        Err(err) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not valid: {err}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn bodies_give_limits_or_a_400_naming_the_field() {
        assert_eq!(from_body(&Map::new(), false).unwrap(), None);
        let limit = from_body(&body(json!({"rate_limit_rps": 2.5})), false).unwrap().unwrap();
        assert_eq!((limit.rps(), limit.burst()), (2.5, 3));
        assert_eq!(from_body(&body(json!({"rate_limit_rps": null})), true).unwrap(), None);
        for (value, field) in [
            (json!({"rate_limit_rps": 0}), RPS),
            (json!({"rate_limit_rps": "5"}), RPS),
            (json!({"rate_limit_rps": 5, "rate_limit_burst": 0}), BURST),
            (json!({"rate_limit_rps": 5, "rate_limit_burst": 1.5}), BURST),
            (json!({"rate_limit_burst": 3}), BURST),
            (json!({"rps": 3}), "rps"),
        ] {
            let err = from_body(&body(value.clone()), false).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(format!("{err:?}").contains(field), "{value}: {err:?}");
        }
        let err = from_body(&Map::new(), true).unwrap_err();
        assert_eq!(err.code(), "missing_field");
        assert_eq!(optional_object(b"  ").unwrap(), Map::new());
        assert!(optional_object(b"[1]").is_err());
        assert!(optional_object(b"{").is_err());
    }
}
