//! The JSON error every HTTP endpoint of the library answers with (`{"error": {"code",
//! "message"}}`), the declared-length check and the JSON 404. A leaf: the gate, the `/metrics`
//! server and the health routes all answer with it.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// An error answered as `{"error": {"code", "message"}}` with a 4xx or 5xx status. The message
/// is shown with the credentials of any URL in it masked ([`redact`](crate::redact::redact)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    close_connection: bool,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match crate::redact::redact(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(masked) => masked,
        };
        Self { status, code, message, close_connection: false }
    }

    /// The same error, answered with `Connection: close`.
    pub fn closing_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `code` of the JSON body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 404 for a path no route serves.
    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.close_connection {
            response.force_close();
        }
        response
            .content_type(ContentType::json())
            .body(json!({ "error": { "code": self.code, "message": self.message } }).to_string())
    }
}

/// 413 when a request declares (`Content-Length`) a body larger than `max_bytes`, whatever its
/// route: routes that read bodies enforce the same limit while reading; this answers the rest
/// (health, unknown paths) at once instead of draining the body.
pub fn check_declared_length(headers: &actix_web::http::header::HeaderMap, max_bytes: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > max_bytes as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {max_bytes} bytes (gateway.max_body_bytes)"),
        )),
        _ => Ok(()),
    }
}

/// The default service: a JSON 404 (405 would need the route table; 404 names the path).
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::not_found(req.path()).error_response()
}
