//! What came back from an upstream: the response to our request among the messages of an answer
//! (notifications and the server's own requests are skipped), and its result checked for the MCP
//! shape. Nothing the upstream wrote is quoted in an error.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::UpstreamError;
use crate::mcp::jsonrpc;
use crate::mcp::protocol::{is_supported, CallToolResult, InitializeResult, ListToolsResult, SUPPORTED_VERSIONS};

/// Why a result of the right shape is still refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum VerifyError {
    /// `initialize` negotiated a revision the gateway does not speak. The upstream's string is
    /// not quoted back; the versions the gateway speaks are.
    #[error("unsupported protocol version (the gateway speaks {})", SUPPORTED_VERSIONS.join(", "))]
    UnsupportedVersion,
}

/// What a JSON-RPC result must be to be accepted.
pub(super) trait Reply: DeserializeOwned {
    /// Checks beyond the shape; an error is a protocol error.
    fn verify(&self) -> Result<(), VerifyError> {
        Ok(())
    }

    /// Whether the result reports a failed tool (`isError`).
    fn is_tool_error(&self) -> bool {
        false
    }
}

impl Reply for InitializeResult {
    fn verify(&self) -> Result<(), VerifyError> {
        if is_supported(&self.protocol_version) {
            Ok(())
        } else {
            Err(VerifyError::UnsupportedVersion)
        }
    }
}

impl Reply for ListToolsResult {}

impl Reply for CallToolResult {
    fn is_tool_error(&self) -> bool {
        self.is_error
    }
}

/// A JSON-RPC message seen in an answer: the response to our request, or something else
/// (a notification, a request of the server's, a response to another request).
pub(super) enum Found {
    Response(Result<Value, UpstreamError>),
    Other,
}

/// Looks for the response to request `id` in one message (or a batch of them).
pub(super) fn find_response(message: Value, id: i64) -> Found {
    let mut message = match message {
        Value::Object(message) => message,
        Value::Array(batch) => {
            return batch
                .into_iter()
                .map(|m| find_response(m, id))
                .find(|f| matches!(f, Found::Response(_)))
                .unwrap_or(Found::Other)
        }
        _ => return Found::Other,
    };
    if message.contains_key("method") {
        return Found::Other;
    }
    let answers_us = match message.get("id") {
        Some(Value::Number(n)) => n.as_i64() == Some(id),
        // An error the server could not tie to a request (it could not read ours, say).
        Some(Value::Null) => message.contains_key("error"),
        _ => false,
    };
    if !answers_us {
        return Found::Other;
    }
    if message.get("jsonrpc").and_then(Value::as_str) != Some(jsonrpc::VERSION) {
        return Found::Response(Err(UpstreamError::Protocol("the response is not JSON-RPC 2.0".to_owned())));
    }
    if let Some(error) = message.remove("error") {
        // The message is the upstream's words, which may quote the arguments: only the code is kept.
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(jsonrpc::INTERNAL_ERROR);
        return Found::Response(Err(UpstreamError::Rpc { code }));
    }
    Found::Response(
        message
            .remove("result")
            .ok_or_else(|| UpstreamError::Protocol("the response has neither result nor error".to_owned())),
    )
}

pub(super) fn parse_result<T: Reply>(method: &str, result: Value) -> Result<T, UpstreamError> {
    // serde's message quotes the value it could not read (`invalid type: string "…"`): not kept.
    let parsed: T = serde_json::from_value(result)
        .map_err(|_| UpstreamError::Protocol(format!("the {method} result does not have the MCP shape")))?;
    parsed.verify().map_err(|err| UpstreamError::Protocol(err.to_string()))?;
    Ok(parsed)
}

/// What is wrong with a JSON text, without any of it: the class and the place.
pub(super) fn json_error(err: &serde_json::Error) -> String {
    let class = match err.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{class} at line {} column {}", err.line(), err.column())
}

/// A content type for a message: a plain media type name as sent, anything else described.
pub(super) fn content_type_name(content_type: &str) -> String {
    let plain =
        content_type.len() <= 64 && content_type.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b));
    if plain {
        format!("\"{content_type}\"")
    } else {
        "(not a media type name)".to_owned()
    }
}
