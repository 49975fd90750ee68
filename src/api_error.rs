//! How the gateway's errors answer over HTTP: one JSON shape, `{"error": {"code", "message"}}`
//! ([`ApiError`]), for the storage's and the gateway operations' errors and for requests the
//! extractors refuse (a body too large, not JSON, a bad query string or path). The admin API
//! answers with it, and the MCP endpoints where they answer over plain HTTP.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, ResponseError as _};
use metamcp_telemetry::http::ApiError;

use crate::service::{violations_text, ExecuteError};
use crate::storage::StorageError;

/// Maps a storage error to its HTTP answer.
pub fn storage_error(err: StorageError) -> ApiError {
    match err {
        StorageError::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, "not_found", what),
        StorageError::Conflict(what) => ApiError::new(StatusCode::CONFLICT, "conflict", what),
        StorageError::Invalid(what) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", what),
        err if err.is_unavailable() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            format!("the database is unavailable: {err}"),
        ),
        err => {
            tracing::error!(error = %err, "admin API storage failure");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the database failed; see the service log")
        }
    }
}

/// Maps a failed gateway operation to its HTTP answer.
pub fn execute_error(err: ExecuteError) -> ApiError {
    match err {
        ExecuteError::UnknownTool(name) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_tool", format!("no tool named {name:?}"))
        }
        ExecuteError::UnknownServer(name) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_server", format!("no server named {name:?}"))
        }
        ExecuteError::InvalidArguments { tool, errors } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_arguments",
            format!("invalid arguments for {tool}: {}", violations_text(&errors)),
        ),
        ExecuteError::Refused(refusal) => {
            ApiError::new(StatusCode::BAD_REQUEST, "upstream_address_refused", refusal.to_string())
        }
        ExecuteError::Upstream { server, source } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            format!("upstream server {server:?} failed ({}): {source}", source.kind()),
        ),
        ExecuteError::Storage(err) => storage_error(err),
        ExecuteError::Embed(err) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "embedding_failed", format!("the embedder failed: {err}"))
        }
        err @ ExecuteError::Config(_) => {
            tracing::error!(error = %err, "admin API request failed on a setting");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the gateway failed; see the service log")
        }
    }
}

/// JSON, query and path extractor errors as JSON 4xx answers (413 for an oversized body).
pub fn extractor_config(
    max_body_bytes: usize,
) -> (web::JsonConfig, web::QueryConfig, web::PathConfig, web::PayloadConfig) {
    let json = web::JsonConfig::default().limit(max_body_bytes).error_handler(move |err, _req: &HttpRequest| {
        use actix_web::error::JsonPayloadError;
        let api = match &err {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {max_body_bytes} bytes (gateway.max_body_bytes)"),
            ),
            JsonPayloadError::ContentType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON (Content-Type: application/json)",
            ),
            other => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not valid: {other}"),
            ),
        };
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    });
    let query = web::QueryConfig::default().error_handler(|err, _req| {
        let api = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("invalid query string: {err}"));
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    });
    let path = web::PathConfig::default().error_handler(|err, _req| {
        let api = ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", format!("invalid path: {err}"));
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    });
    let payload = web::PayloadConfig::new(max_body_bytes);
    (json, query, path, payload)
}
