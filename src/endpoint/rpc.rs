//! JSON-RPC 2.0 on the server side of the endpoints, in `rmcp`'s model types: a body is read as a
//! [`ClientJsonRpcMessage`] (or, for a 2025-03-26 session, a batch of them), and every answer is
//! a [`ServerJsonRpcMessage`]. What `rmcp` refuses to read is sorted here into the JSON-RPC error
//! to answer with: invalid JSON is a parse error (`-32700`, id `null`); JSON that is not one
//! JSON-RPC 2.0 message an invalid request (`-32600`, with the message's id when it can be read).
//! The protocol revisions the endpoints speak and their negotiation live here too.

use std::borrow::Cow;

use rmcp::model::{
    ClientJsonRpcMessage, ErrorCode, ErrorData, ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult,
};
use serde_json::{json, Value};

/// The HTTP header carrying the session id (`Mcp-Session-Id`; header names are case-insensitive).
pub const MCP_SESSION_ID: &str = "mcp-session-id";
/// The HTTP header carrying the negotiated revision on every request after `initialize`.
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// The protocol revisions the endpoints speak, newest first.
pub const SUPPORTED_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2024_11_05,
];

/// The newest revision the endpoints speak: what a client asking for one they do not know gets.
pub const LATEST_VERSION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// The revision to answer a client that asked for `requested`: that one if supported, else the
/// latest (the client then decides whether it can go on).
pub fn negotiate(requested: &str) -> ProtocolVersion {
    SUPPORTED_VERSIONS.iter().find(|v| v.as_str() == requested).cloned().unwrap_or(LATEST_VERSION)
}

/// Whether `version` is a revision the endpoints speak.
pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.iter().any(|v| v.as_str() == version)
}

/// Whether a session of `version` may send JSON-RPC batches (only 2025-03-26 had them: 2024-11-05
/// over Streamable HTTP never existed, and 2025-06-18 removed them).
pub fn allows_batches(version: &ProtocolVersion) -> bool {
    *version == ProtocolVersion::V_2025_03_26
}

/// A body that is not a JSON-RPC message we can answer: the error to answer with (HTTP 400).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The id of the message, when it could be read.
    pub id: Option<RequestId>,
    /// The error.
    pub error: ErrorData,
}

impl Refused {
    fn invalid(id: Option<RequestId>, why: &str) -> Self {
        Self { id, error: ErrorData::invalid_request(format!("Invalid Request: {why}"), None) }
    }

    /// The error message.
    pub fn into_message(self) -> ServerJsonRpcMessage {
        ServerJsonRpcMessage::error(self.error, self.id)
    }
}

/// One body: a message, or a JSON array of them.
#[derive(Debug)]
pub enum Body {
    /// One message.
    Single(Box<ClientJsonRpcMessage>),
    /// A batch: each element read on its own.
    Batch(Vec<Result<ClientJsonRpcMessage, Refused>>),
}

/// Reads one body. `rmcp` reads every well-formed message; what it refuses is looked at again
/// to say which error it is, with the message's id when there is one.
pub fn parse(body: &[u8]) -> Result<Body, Refused> {
    if let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        return Ok(Body::Single(Box::new(message)));
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| Refused {
        id: None,
        error: ErrorData::parse_error("Parse error", Some(json!({ "detail": err.to_string() }))),
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(Refused::invalid(None, "an empty batch")),
        Value::Array(items) => Ok(Body::Batch(items.into_iter().map(parse_value).collect())),
        other => parse_value(other).map(|message| Body::Single(Box::new(message))),
    }
}

/// Reads one message from JSON already parsed.
fn parse_value(value: Value) -> Result<ClientJsonRpcMessage, Refused> {
    let why = match classify(&value) {
        Err(refused) => return Err(refused),
        Ok(()) => "not a message this server understands",
    };
    let id = value.get("id").and_then(id_of);
    serde_json::from_value::<ClientJsonRpcMessage>(value).map_err(|_| Refused::invalid(id, why))
}

fn id_of(value: &Value) -> Option<RequestId> {
    match value {
        Value::String(s) => Some(RequestId::String(s.as_str().into())),
        Value::Number(n) => n.as_i64().map(RequestId::Number),
        _ => None,
    }
}

/// Why `value` is not one JSON-RPC 2.0 message (`Ok` when no reason is found).
fn classify(value: &Value) -> Result<(), Refused> {
    let Value::Object(message) = value else {
        let why = if value.is_array() { "a batch inside a batch" } else { "expected a JSON object" };
        return Err(Refused::invalid(None, why));
    };
    let id_value = message.get("id");
    let id = id_value.and_then(id_of);
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Refused::invalid(id, "\"jsonrpc\" must be \"2.0\""));
    }
    match message.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(Refused::invalid(id, "\"method\" must be a string")),
        None => {
            let is_response = message.contains_key("result") != message.contains_key("error")
                && matches!(id_value, Some(Value::Null | Value::String(_) | Value::Number(_)));
            return if is_response {
                Ok(())
            } else {
                Err(Refused::invalid(id, "expected \"method\", or \"id\" with \"result\" or \"error\""))
            };
        }
    }
    if id_value.is_some() && id.is_none() {
        return Err(Refused::invalid(None, "\"id\" must be a string or an integer"));
    }
    match message.get("params") {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(_) => Err(Refused::invalid(id, "\"params\" must be an object")),
    }
}

/// A JSON-RPC error with `message` (credentials in a quoted URL masked).
pub fn error(code: ErrorCode, message: impl Into<Cow<'static, str>>, data: Option<Value>) -> ErrorData {
    let message = message.into();
    let redacted = match metamcp_telemetry::redact::redact(&message) {
        Cow::Borrowed(_) => message,
        Cow::Owned(masked) => Cow::Owned(masked),
    };
    ErrorData::new(code, redacted, data)
}

/// `-32602` with `message`.
pub fn invalid_params(message: impl Into<Cow<'static, str>>) -> ErrorData {
    error(ErrorCode::INVALID_PARAMS, message, None)
}

/// The answer to request `id`: its result, in the shape of the revisions the endpoints speak
/// (no `resultType`, object-only structured output), or its error.
pub fn answer(id: RequestId, outcome: Result<ServerResult, ErrorData>) -> ServerJsonRpcMessage {
    match outcome {
        Ok(mut result) => {
            result.strip_result_type_for_legacy_peer();
            result.strip_non_object_output_for_legacy_peer();
            ServerJsonRpcMessage::response(result, id)
        }
        Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
    }
}

/// The bytes of `message`. An error without an id carries `"id": null`, as JSON-RPC 2.0 says.
pub fn to_bytes(message: &ServerJsonRpcMessage) -> Vec<u8> {
    match message {
        ServerJsonRpcMessage::Error(error) if error.id.is_none() => {
            serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": null, "error": error.error })).unwrap_or_default()
        }
        // Serializing model types (maps, strings, numbers) cannot fail.
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

/// The text of a request id, for spans and the audit log.
pub fn id_text(id: &RequestId) -> String {
    match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::String(s) => s.to_string(),
    }
}

/// The text of a request id as a span attribute value: a string id shared, not copied.
pub fn id_value(id: &RequestId) -> opentelemetry::StringValue {
    match id {
        RequestId::Number(n) => n.to_string().into(),
        RequestId::String(s) => s.clone().into(),
    }
}

/// The name of `version`: one of [`SUPPORTED_VERSIONS`] without a copy.
pub fn version_name(version: &ProtocolVersion) -> Cow<'static, str> {
    match SUPPORTED_VERSIONS.iter().find(|v| *v == version) {
        Some(known) => Cow::Borrowed(known.as_str()),
        None => Cow::Owned(version.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientNotification, ClientRequest, JsonRpcMessage};

    use super::*;

    fn refused(body: &str) -> Refused {
        parse(body.as_bytes()).unwrap_err()
    }

    fn single(body: &str) -> ClientJsonRpcMessage {
        match parse(body.as_bytes()).unwrap() {
            Body::Single(message) => *message,
            Body::Batch(_) => panic!("{body}: a batch"),
        }
    }

    #[test]
    fn reads_requests_notifications_and_responses() {
        let JsonRpcMessage::Request(request) =
            single(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"c"}}"#)
        else {
            panic!("not a request")
        };
        assert_eq!(request.id, RequestId::Number(7));
        assert!(matches!(request.request, ClientRequest::ListToolsRequest(_)));

        let message = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized","params":null}"#);
        assert!(matches!(
            message,
            JsonRpcMessage::Notification(n) if matches!(n.notification, ClientNotification::InitializedNotification(_))
        ));
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#,
        ] {
            assert!(matches!(single(body), JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_)), "{body}");
        }
        // A known method with params rmcp cannot read comes through as a custom request; the
        // dispatcher answers it with -32602.
        let JsonRpcMessage::Request(request) = single(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}"#)
        else {
            panic!("not a request")
        };
        assert!(matches!(request.request, ClientRequest::CustomRequest(_)));
    }

    #[test]
    fn refuses_what_is_not_one_jsonrpc_message() {
        let cases: &[(&str, ErrorCode, Option<RequestId>)] = &[
            ("{not json", ErrorCode::PARSE_ERROR, None),
            ("", ErrorCode::PARSE_ERROR, None),
            ("[]", ErrorCode::INVALID_REQUEST, None),
            ("42", ErrorCode::INVALID_REQUEST, None),
            (r#"{"id":1,"method":"ping"}"#, ErrorCode::INVALID_REQUEST, Some(RequestId::Number(1))),
            (
                r#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#,
                ErrorCode::INVALID_REQUEST,
                Some(RequestId::String("x".into())),
            ),
            (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, ErrorCode::INVALID_REQUEST, Some(RequestId::Number(2))),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, ErrorCode::INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, ErrorCode::INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#, ErrorCode::INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, ErrorCode::INVALID_REQUEST, None),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":[1]}"#,
                ErrorCode::INVALID_REQUEST,
                Some(RequestId::Number(3)),
            ),
            (r#"{"jsonrpc":"2.0","id":4}"#, ErrorCode::INVALID_REQUEST, Some(RequestId::Number(4))),
            (
                r#"{"jsonrpc":"2.0","id":4,"result":1,"error":{}}"#,
                ErrorCode::INVALID_REQUEST,
                Some(RequestId::Number(4)),
            ),
        ];
        for (body, code, id) in cases {
            let e = refused(body);
            assert_eq!((e.error.code, &e.id), (*code, id), "{body}: {e:?}");
        }
    }

    #[test]
    fn a_batch_is_read_element_by_element() {
        let Body::Batch(items) =
            parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":7},3]"#).unwrap()
        else {
            panic!("not a batch")
        };
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().id, Some(RequestId::Number(2)));
        assert_eq!(items[2].as_ref().unwrap_err().error.code, ErrorCode::INVALID_REQUEST);
    }

    #[test]
    fn answers_keep_the_wire_shape_of_the_spoken_revisions() {
        let ok = answer(RequestId::Number(1), Ok(ServerResult::ListToolsResult(Default::default())));
        assert_eq!(
            serde_json::from_slice::<Value>(&to_bytes(&ok)).unwrap(),
            json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}})
        );
        let failed = Refused::invalid(None, "x").into_message();
        let value: Value = serde_json::from_slice(&to_bytes(&failed)).unwrap();
        assert_eq!(value["id"], Value::Null);
        assert!(value.as_object().unwrap().contains_key("id"), "an unknown id is null, not absent: {value}");
        assert_eq!(value["error"]["code"], -32600);
        let masked = error(ErrorCode::INTERNAL_ERROR, "GET http://user:secret@host/x failed", None);
        assert!(!masked.message.contains("secret"), "{}", masked.message);
    }

    #[test]
    fn negotiation_keeps_a_known_version_and_falls_back_to_the_latest() {
        for version in SUPPORTED_VERSIONS {
            assert_eq!(&negotiate(version.as_str()), version);
            assert!(is_supported(version.as_str()));
        }
        assert_eq!(negotiate("2099-01-01"), LATEST_VERSION);
        assert_eq!(negotiate(""), LATEST_VERSION);
        assert_eq!(SUPPORTED_VERSIONS[0], LATEST_VERSION);
        assert!(allows_batches(&ProtocolVersion::V_2025_03_26));
        assert!(!allows_batches(&LATEST_VERSION));
    }
}
