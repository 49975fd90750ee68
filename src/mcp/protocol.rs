//! The MCP types the gateway reads and writes: protocol versions and their negotiation, tools,
//! the results of `initialize`, `tools/list` and `tools/call`, method names and HTTP header
//! names. Tools keep every field an upstream sends, known or not, so the gateway passes them on
//! unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The protocol revisions the gateway speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The newest revision: what the client asks for and what the server offers when a client asks
/// for one it does not know.
pub const LATEST_VERSION: &str = "2025-11-25";

/// The HTTP header carrying the session id (`Mcp-Session-Id`; header names are case-insensitive).
pub const MCP_SESSION_ID: &str = "mcp-session-id";
/// The HTTP header carrying the negotiated revision on every request after `initialize`.
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// `initialize`: the first request of a session.
pub const METHOD_INITIALIZE: &str = "initialize";
/// `notifications/initialized`: the client's acknowledgement of `initialize`.
pub const NOTIFICATION_INITIALIZED: &str = "notifications/initialized";
/// `ping`.
pub const METHOD_PING: &str = "ping";
/// `tools/list`.
pub const METHOD_TOOLS_LIST: &str = "tools/list";
/// `tools/call`.
pub const METHOD_TOOLS_CALL: &str = "tools/call";

/// What telemetry and logs show of a session id (`mcp.session.id`): the first 16 hex digits of
/// its SHA-256. The id itself is a bearer capability — whoever holds it speaks in the session —
/// so it never leaves the HTTP exchange; the fingerprint still ties a session's spans together.
pub fn session_fingerprint(id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(id.as_bytes());
    digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `version` is a revision the gateway speaks.
pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The revision to answer a client that asked for `requested`: that one if supported, else the
/// latest (the client then decides whether it can go on).
pub fn negotiate(requested: &str) -> &'static str {
    SUPPORTED_VERSIONS.iter().copied().find(|v| *v == requested).unwrap_or(LATEST_VERSION)
}

fn default_input_schema() -> Value {
    json!({ "type": "object" })
}

/// A tool, as `tools/list` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The name `tools/call` uses.
    pub name: String,
    /// A human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the arguments (`inputSchema`); `{"type": "object"}` when absent.
    #[serde(rename = "inputSchema", default = "default_input_schema")]
    pub input_schema: Value,
    /// Every other field (`annotations`, `outputSchema`, `icons`, `_meta`, …), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Tool {
    /// A tool with only a name, a description and an input schema.
    pub fn new(name: impl Into<String>, description: impl Into<String>, input_schema: Value) -> Self {
        Self { name: name.into(), title: None, description: Some(description.into()), input_schema, extra: Map::new() }
    }

    /// The tool's `annotations` (hints such as `readOnlyHint`), if any.
    pub fn annotations(&self) -> Option<&Value> {
        self.extra.get("annotations")
    }

    /// The tool's `outputSchema`, if any.
    pub fn output_schema(&self) -> Option<&Value> {
        self.extra.get("outputSchema")
    }
}

/// The result of `tools/list`: one page of tools.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ListToolsResult {
    /// The tools of this page.
    pub tools: Vec<Tool>,
    /// The cursor of the next page (`nextCursor`); none on the last page.
    #[serde(rename = "nextCursor", default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The result of `tools/call`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallToolResult {
    /// Content blocks (`{"type": "text", "text": …}`, images, resources, …), kept as sent.
    #[serde(default)]
    pub content: Vec<Value>,
    /// Structured output (`structuredContent`), if the tool returns any.
    #[serde(rename = "structuredContent", default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// Whether the tool failed (`isError`): a failure the model should see, not a protocol error.
    #[serde(rename = "isError", default)]
    pub is_error: bool,
}

impl CallToolResult {
    /// A successful result with one text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![json!({ "type": "text", "text": text.into() })],
            structured_content: None,
            is_error: false,
        }
    }

    /// A failed result (`isError: true`) with one text block saying why.
    pub fn error_text(text: impl Into<String>) -> Self {
        Self { is_error: true, ..Self::text(text) }
    }

    /// The result as a JSON value, for a JSON-RPC response.
    pub fn to_value(&self) -> Value {
        // Serializing a struct of JSON values cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The name and version of a client or server (`clientInfo`, `serverInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Implementation {
    /// The program's name.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// Every other field (`title`, `icons`, `websiteUrl`, …), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The result of `initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitializeResult {
    /// The revision the server chose (`protocolVersion`).
    #[serde(rename = "protocolVersion")]
    pub protocol_version: String,
    /// What the server offers.
    #[serde(default)]
    pub capabilities: Value,
    /// Who the server is (`serverInfo`).
    #[serde(rename = "serverInfo")]
    pub server_info: Implementation,
    /// Hints for the model on how to use the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// The result of our own `initialize`: the given revision, tools as the only capability (a
/// fixed list during a session: `listChanged: false`), and our name and version.
pub fn initialize_result(version: &str, server_name: &str, server_version: &str, instructions: Option<&str>) -> Value {
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": server_name, "version": server_version },
    });
    if let (Some(text), Some(object)) = (instructions, result.as_object_mut()) {
        object.insert("instructions".to_owned(), Value::from(text));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_fingerprints_are_short_stable_hashes() {
        let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let fingerprint = session_fingerprint(id);
        assert_eq!(fingerprint.len(), 16);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(fingerprint, session_fingerprint(id));
        assert_ne!(fingerprint, session_fingerprint("another session"));
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(session_fingerprint("abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn negotiation_keeps_a_known_version_and_falls_back_to_the_latest() {
        for version in SUPPORTED_VERSIONS {
            assert_eq!(negotiate(version), *version);
        }
        assert_eq!(negotiate("2099-01-01"), LATEST_VERSION);
        assert_eq!(negotiate(""), LATEST_VERSION);
        assert_eq!(SUPPORTED_VERSIONS[0], LATEST_VERSION);
    }

    #[test]
    fn tools_keep_every_field_an_upstream_sends() {
        let sent = json!({
            "name": "search",
            "title": "Search",
            "description": "Finds things",
            "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "annotations": {"readOnlyHint": true},
            "outputSchema": {"type": "object"},
            "_meta": {"vendor/x": 1}
        });
        let tool: Tool = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(tool.name, "search");
        assert_eq!(tool.annotations(), Some(&json!({"readOnlyHint": true})));
        assert_eq!(tool.output_schema(), Some(&json!({"type": "object"})));
        assert_eq!(serde_json::to_value(&tool).unwrap(), sent);

        let bare: Tool = serde_json::from_value(json!({"name": "x"})).unwrap();
        assert_eq!(bare.input_schema, json!({"type": "object"}));
        assert_eq!(serde_json::to_value(&bare).unwrap(), json!({"name": "x", "inputSchema": {"type": "object"}}));
    }

    #[test]
    fn list_and_call_results_use_the_wire_names() {
        let page: ListToolsResult =
            serde_json::from_value(json!({"tools": [{"name": "a", "inputSchema": {}}], "nextCursor": "2"})).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = ListToolsResult { tools: vec![], next_cursor: None };
        assert_eq!(serde_json::to_value(&last).unwrap(), json!({"tools": []}));

        let result: CallToolResult =
            serde_json::from_value(json!({"content": [], "structuredContent": {"n": 1}, "isError": true})).unwrap();
        assert!(result.is_error);
        assert_eq!(result.structured_content, Some(json!({"n": 1})));
        assert!(!serde_json::from_value::<CallToolResult>(json!({"content": []})).unwrap().is_error);

        assert_eq!(
            CallToolResult::error_text("boom").to_value(),
            json!({"content": [{"type": "text", "text": "boom"}], "isError": true})
        );
        assert_eq!(CallToolResult::text("ok").to_value()["isError"], false);
    }

    #[test]
    fn initialize_result_offers_tools_and_reads_back() {
        let value = initialize_result("2025-06-18", "gw", "1.2.3", Some("use search first"));
        assert_eq!(
            value,
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "gw", "version": "1.2.3"},
                "instructions": "use search first"
            })
        );
        let parsed: InitializeResult = serde_json::from_value(value).unwrap();
        assert_eq!(parsed.protocol_version, "2025-06-18");
        assert_eq!(parsed.server_info.name, "gw");
        assert!(initialize_result("2025-06-18", "gw", "1", None).get("instructions").is_none());
    }
}
