//! JSON-RPC 2.0 as MCP uses it: one message per HTTP body (no batches), request ids that are
//! strings or integers (never null), params that are objects. [`parse_message`] sorts an incoming
//! body into a request, a notification or a response, or says which JSON-RPC error to answer
//! with; [`success`] and [`error`] build the responses.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The body is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON is not a valid JSON-RPC 2.0 request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The method's parameters are invalid.
pub const INVALID_PARAMS: i64 = -32602;
/// An internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;

/// The protocol version string every message carries in `"jsonrpc"`.
pub const VERSION: &str = "2.0";

/// The id of a request: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl RequestId {
    /// The id as it appears in a message.
    pub fn to_value(&self) -> Value {
        match self {
            RequestId::Number(n) => Value::from(*n),
            RequestId::String(s) => Value::from(s.as_str()),
        }
    }

    /// Reads an id from a message's `"id"`: `None` unless it is a string or an integer that fits
    /// an `i64`.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(RequestId::String(s.clone())),
            Value::Number(n) => n.as_i64().map(RequestId::Number),
            _ => None,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => f.write_str(s),
        }
    }
}

impl From<i64> for RequestId {
    fn from(n: i64) -> Self {
        RequestId::Number(n)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::String(s.to_owned())
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        RequestId::String(s)
    }
}

/// A request: a message with a method and an id, which expects a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id the response must carry.
    pub id: RequestId,
    /// The method called.
    pub method: String,
    /// The parameters, when the message has any.
    pub params: Option<Map<String, Value>>,
}

/// A notification: a message with a method and no id, which gets no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method notified.
    pub method: String,
    /// The parameters, when the message has any.
    pub params: Option<Map<String, Value>>,
}

/// One incoming JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request, to be answered.
    Request(Request),
    /// A notification, answered with nothing (HTTP 202 in Streamable HTTP).
    Notification(Notification),
    /// A response (to a request the receiver sent), kept as it came.
    Response(Value),
}

/// A JSON-RPC error to answer with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct ErrorResponse {
    /// The id of the request it answers; `None` (`null` on the wire) when it could not be read.
    pub id: Option<RequestId>,
    /// The error code, one of the constants of this module or an application code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Extra detail, when there is any.
    pub data: Option<Value>,
}

impl ErrorResponse {
    /// An error with no `data`.
    pub fn new(id: Option<RequestId>, code: i64, message: impl Into<String>) -> Self {
        Self { id, code, message: message.into(), data: None }
    }

    /// `-32601`: the method is not known.
    pub fn method_not_found(id: RequestId, method: &str) -> Self {
        Self::new(Some(id), METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    /// `-32602`: the parameters are invalid, for the reason given.
    pub fn invalid_params(id: RequestId, message: impl Into<String>) -> Self {
        Self::new(Some(id), INVALID_PARAMS, message)
    }

    /// `-32603`: something failed inside the receiver.
    pub fn internal(id: Option<RequestId>, message: impl Into<String>) -> Self {
        Self::new(id, INTERNAL_ERROR, message)
    }

    /// The same error with `data` attached.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The response message.
    pub fn into_value(self) -> Value {
        error(self.id, self.code, &self.message, self.data)
    }
}

/// A success response to the request `id`.
pub fn success(id: RequestId, result: Value) -> Value {
    json!({ "jsonrpc": VERSION, "id": id.to_value(), "result": result })
}

/// An error response; `id` is `None` (`null`) when the request's id could not be read.
pub fn error(id: Option<RequestId>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = Map::new();
    error.insert("code".to_owned(), Value::from(code));
    // Messages may quote an upstream's URL: never with its credentials.
    error.insert("message".to_owned(), Value::from(metamcp_telemetry::redact::redact(message)));
    if let Some(data) = data {
        error.insert("data".to_owned(), data);
    }
    json!({
        "jsonrpc": VERSION,
        "id": id.as_ref().map_or(Value::Null, RequestId::to_value),
        "error": Value::Object(error),
    })
}

/// A request message, as a client sends it.
pub fn request(id: &RequestId, method: &str, params: Option<Map<String, Value>>) -> Value {
    let mut message = Map::new();
    message.insert("jsonrpc".to_owned(), Value::from(VERSION));
    message.insert("id".to_owned(), id.to_value());
    message.insert("method".to_owned(), Value::from(method));
    if let Some(params) = params {
        message.insert("params".to_owned(), Value::Object(params));
    }
    Value::Object(message)
}

/// A notification message.
pub fn notification(method: &str, params: Option<Map<String, Value>>) -> Value {
    let mut message = Map::new();
    message.insert("jsonrpc".to_owned(), Value::from(VERSION));
    message.insert("method".to_owned(), Value::from(method));
    if let Some(params) = params {
        message.insert("params".to_owned(), Value::Object(params));
    }
    Value::Object(message)
}

fn invalid(id: Option<RequestId>, why: &str) -> ErrorResponse {
    ErrorResponse::new(id, INVALID_REQUEST, format!("Invalid Request: {why}"))
}

/// Sorts one message body. Invalid JSON is a parse error (`-32700`, id `null`); JSON that is not
/// a single JSON-RPC 2.0 message is an invalid request (`-32600`), with the message's id when it
/// can be read. A batch (a JSON array) is refused: MCP sends one message per body. `"params":
/// null` is read as no params; any other non-object params are refused.
pub fn parse_message(body: &[u8]) -> Result<Incoming, ErrorResponse> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ErrorResponse::new(None, PARSE_ERROR, "Parse error").with_data(json!({ "detail": err.to_string() }))
    })?;
    let Value::Object(mut message) = value else {
        let why = if value.is_array() { "batches are not supported" } else { "expected a JSON object" };
        return Err(invalid(None, why));
    };
    let id_value = message.get("id");
    let id = id_value.and_then(RequestId::from_value);
    if message.get("jsonrpc").and_then(Value::as_str) != Some(VERSION) {
        return Err(invalid(id, "\"jsonrpc\" must be \"2.0\""));
    }
    match message.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(invalid(id, "\"method\" must be a string")),
        None => {
            let is_response = message.contains_key("result") != message.contains_key("error")
                && matches!(id_value, Some(Value::Null | Value::String(_) | Value::Number(_)));
            return if is_response {
                Ok(Incoming::Response(Value::Object(message)))
            } else {
                Err(invalid(id, "expected \"method\", or \"id\" with \"result\" or \"error\""))
            };
        }
    }
    if id_value.is_some() && id.is_none() {
        return Err(invalid(None, "\"id\" must be a string or an integer"));
    }
    let params = match message.remove("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(params)) => Some(params),
        Some(_) => return Err(invalid(id, "\"params\" must be an object")),
    };
    let method = match message.remove("method") {
        Some(Value::String(method)) => method,
        _ => return Err(invalid(id, "\"method\" must be a string")),
    };
    Ok(match id {
        Some(id) => Incoming::Request(Request { id, method, params }),
        None => Incoming::Notification(Notification { method, params }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ErrorResponse {
        parse_message(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn sorts_requests_notifications_and_responses() {
        let req = parse_message(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"c"}}"#).unwrap();
        let Incoming::Request(req) = req else { panic!("not a request: {req:?}") };
        assert_eq!(req.id, RequestId::Number(7));
        assert_eq!(req.method, "tools/list");
        assert_eq!(req.params.unwrap()["cursor"], "c");

        let req = parse_message(br#"{"jsonrpc":"2.0","id":"abc","method":"ping"}"#).unwrap();
        assert_eq!(req, Incoming::Request(Request { id: "abc".into(), method: "ping".into(), params: None }));

        let note = parse_message(br#"{"jsonrpc":"2.0","method":"notifications/initialized","params":null}"#).unwrap();
        assert_eq!(
            note,
            Incoming::Notification(Notification { method: "notifications/initialized".into(), params: None })
        );

        for body in [r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, r#"{"jsonrpc":"2.0","id":null,"error":{"code":1}}"#] {
            assert!(matches!(parse_message(body.as_bytes()).unwrap(), Incoming::Response(_)), "{body}");
        }
    }

    #[test]
    fn refuses_what_is_not_one_jsonrpc_message() {
        let cases: &[(&str, i64, Option<RequestId>)] = &[
            ("{not json", PARSE_ERROR, None),
            ("", PARSE_ERROR, None),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, INVALID_REQUEST, None),
            ("42", INVALID_REQUEST, None),
            (r#"{"id":1,"method":"ping"}"#, INVALID_REQUEST, Some(RequestId::Number(1))),
            (r#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#, INVALID_REQUEST, Some("x".into())),
            (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, INVALID_REQUEST, Some(RequestId::Number(2))),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, INVALID_REQUEST, None),
            (r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":[1]}"#, INVALID_REQUEST, Some(RequestId::Number(3))),
            (r#"{"jsonrpc":"2.0","id":4}"#, INVALID_REQUEST, Some(RequestId::Number(4))),
            (r#"{"jsonrpc":"2.0","id":4,"result":1,"error":{}}"#, INVALID_REQUEST, Some(RequestId::Number(4))),
        ];
        for (body, code, id) in cases {
            let e = err(body);
            assert_eq!((e.code, &e.id), (*code, id), "{body}: {e:?}");
        }
    }

    #[test]
    fn builds_responses() {
        assert_eq!(success(RequestId::Number(1), json!({"a": 1})), json!({"jsonrpc":"2.0","id":1,"result":{"a":1}}));
        assert_eq!(
            error(Some("q".into()), METHOD_NOT_FOUND, "nope", Some(json!(3))),
            json!({"jsonrpc":"2.0","id":"q","error":{"code":-32601,"message":"nope","data":3}})
        );
        assert_eq!(err("{").into_value()["id"], Value::Null, "a parse error answers with a null id");
        assert_eq!(
            ErrorResponse::invalid_params(5.into(), "bad").into_value(),
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"bad"}})
        );
    }

    #[test]
    fn request_ids_round_trip_through_serde() {
        for id in [RequestId::Number(-3), RequestId::Number(i64::MAX), RequestId::String("7".into())] {
            let text = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<RequestId>(&text).unwrap(), id, "{text}");
        }
        assert_eq!(serde_json::to_string(&RequestId::String("7".into())).unwrap(), "\"7\"");
        assert!(serde_json::from_str::<RequestId>("null").is_err());
        assert_eq!(RequestId::Number(9).to_string(), "9");
    }
}
