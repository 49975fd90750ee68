//! Which request headers the middleware may record on the server span
//! (`telemetry.capture_request_headers`): the credential deny-list, the validation of the
//! setting, and the headers resolved once with their attribute keys. A leaf: the settings
//! validate with it, the manager resolves the headers and the middleware records them.

use actix_web::http::header::HeaderName;
use metamcp_telemetry_actors::ConfigError;

/// Longest value of a captured request header kept on the span (per value, in bytes).
pub const MAX_CAPTURED_HEADER_VALUE: usize = 256;
/// Most headers `telemetry.capture_request_headers` may name.
pub const MAX_CAPTURED_HEADERS: usize = 32;

/// Headers that carry credentials or session tokens: never recorded, whatever the allow-list says.
pub const DENIED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "mcp-session-id",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-csrf-token",
    "x-xsrf-token",
];

/// Parts of a header name that mark it as a credential (`x-auth-token`, `x-client-secret`, …).
const DENIED_NAME_PARTS: &[&str] = &[
    "auth",
    "cookie",
    "token",
    "secret",
    "passw",
    "session",
    "api-key",
    "apikey",
    "api_key",
    "credential",
    "signature",
];

/// Whether the lowercase header `name` may carry a credential and so must never be recorded.
pub fn is_denied_header(name: &str) -> bool {
    DENIED_HEADERS.contains(&name) || DENIED_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// Checks `telemetry.capture_request_headers`: valid header names, at most
/// [`MAX_CAPTURED_HEADERS`], none that can carry a credential. The error names `key` and the
/// offending header.
pub fn validate_captured_headers(key: &str, names: &[String]) -> Result<(), ConfigError> {
    if names.len() > MAX_CAPTURED_HEADERS {
        return Err(ConfigError::new(
            key,
            format!("{} headers", names.len()),
            format!("at most {MAX_CAPTURED_HEADERS} header names"),
        ));
    }
    for name in names {
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(ConfigError::new(key, format!("{name:?}"), "HTTP header names such as \"user-agent\""));
        }
        if is_denied_header(&lower) {
            return Err(ConfigError::new(
                key,
                format!("{name:?}"),
                "header names that carry no credentials (authorization, cookies, API keys, tokens and session ids are never recorded)",
            ));
        }
    }
    Ok(())
}

/// A request header recorded on the server span, with its attribute key built once.
#[derive(Debug, Clone)]
pub(crate) struct CapturedHeader {
    pub(crate) name: HeaderName,
    pub(crate) key: opentelemetry::Key,
}

/// The captured headers of `names` (validated settings: lowercase, not denied; any other name
/// is skipped here as well).
pub(crate) fn captured_headers(names: &[String]) -> std::sync::Arc<[CapturedHeader]> {
    names
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .filter(|name| !is_denied_header(name))
        .filter_map(|name| {
            let header = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let key: std::sync::Arc<str> = format!("http.request.header.{name}").into();
            Some(CapturedHeader { name: header, key: key.into() })
        })
        .collect()
}
