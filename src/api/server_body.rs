//! The body of `POST /api/servers`, read field by field so every refusal names its field:
//!
//! ```json
//! {"name": "files", "transport": "stdio", "command": "npx", "args": ["-y", "server-files"],
//!  "env": {"API_TOKEN": "..."}, "cwd": "/srv", "timeout_ms": 30000, "enabled": true}
//! {"name": "search", "transport": "sse", "url": "https://search.example.com/sse"}
//! {"name": "tools", "url": "https://tools.example.com/mcp"}
//! ```
//!
//! `transport` is `streamable_http`, `sse` or `stdio`. Without it a body with a `url` is a
//! Streamable HTTP server (as before transports existed) and one with a `command` and no `url` a
//! stdio server. `null` counts as absent for the optional fields.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use metamcp_telemetry::http::ApiError;
use serde_json::{Map, Value};

use crate::storage::NewServer;
use crate::upstream::Transport;

/// The fields the body may carry.
const FIELDS: [&str; 9] = ["name", "transport", "url", "command", "args", "env", "cwd", "enabled", "timeout_ms"];

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The server the body describes, checked ([`NewServer::validate`]); a 400 naming the field
/// otherwise.
pub(super) fn parse(mut body: Map<String, Value>) -> Result<NewServer, ApiError> {
    if let Some(unknown) = body.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(refused("unknown_field", format!("unknown field {shown:?}; a server takes {}", FIELDS.join(", "))));
    }
    let name = string(&mut body, "name")?
        .ok_or_else(|| refused("missing_field", "name is required: the server's unique name"))?;
    let url = string(&mut body, "url")?;
    let command = string(&mut body, "command")?;
    let transport = match string(&mut body, "transport")? {
        Some(given) => Transport::parse(&given).ok_or_else(|| {
            let shown: String = given.chars().take(64).collect();
            refused("invalid_transport", format!("transport {shown:?} is not one of streamable_http, sse, stdio"))
        })?,
        None if url.is_none() && command.is_some() => Transport::Stdio,
        None => Transport::StreamableHttp,
    };
    if transport.is_http() && url.is_none() {
        return Err(refused("missing_field", format!("url is required for transport {transport}")));
    }
    if !transport.is_http() && command.is_none() {
        return Err(refused("missing_field", "command is required for transport stdio"));
    }
    let args = match take(&mut body, "args") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(at, item)| match item {
                Value::String(arg) => Ok(arg),
                _ => Err(refused("invalid_args", format!("args[{at}] must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(refused("invalid_args", "args must be an array of strings")),
    };
    let env = match take(&mut body, "env") {
        None => BTreeMap::new(),
        Some(Value::Object(vars)) => vars
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key, value)),
                // The value is a credential: the message names the variable only.
                _ => {
                    let shown: String = key.chars().take(64).collect();
                    Err(refused("invalid_env", format!("env {shown:?} must be a string")))
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(refused("invalid_env", "env must be an object of strings")),
    };
    let cwd = string(&mut body, "cwd")?;
    let enabled = match take(&mut body, "enabled") {
        None => true,
        Some(Value::Bool(enabled)) => enabled,
        Some(_) => return Err(refused("invalid_enabled", "enabled must be true or false")),
    };
    let timeout_ms = match take(&mut body, "timeout_ms") {
        None => None,
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| refused("invalid_timeout", "timeout_ms must be an integer from 1 to 3600000"))?,
        ),
    };
    let new = NewServer {
        name,
        transport,
        url: url.map(|url| url.trim().to_owned()),
        command,
        args,
        env,
        cwd,
        enabled,
        timeout_ms,
    };
    new.validate().map_err(|invalid| refused(invalid.code(), invalid.message))?;
    Ok(new)
}

/// The field, `None` when absent or `null`.
fn take(body: &mut Map<String, Value>, field: &str) -> Option<Value> {
    body.remove(field).filter(|value| !value.is_null())
}

/// A string field, `None` when absent or `null`; another type is a 400 naming the field.
fn string(body: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    match take(body, field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => {
            let code = match field {
                "name" => "invalid_name",
                "transport" => "invalid_transport",
                "url" => "invalid_url",
                "command" => "invalid_command",
                "cwd" => "invalid_cwd",
                _ => "invalid_field",
            };
            Err(refused(code, format!("{field} must be a string")))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::upstream::ServerSpec;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    fn refusal(value: Value) -> (&'static str, String) {
        let err = parse(body(value)).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let shown = format!("{err:?}");
        (err.code(), shown)
    }

    #[test]
    fn a_url_alone_is_streamable_http_as_before() {
        let new = parse(body(json!({"name": "a", "url": " http://h/mcp "}))).unwrap();
        assert_eq!(new.spec(), ServerSpec::StreamableHttp { url: "http://h/mcp".to_owned() });
        assert!(new.enabled && new.timeout_ms.is_none());
        let sse = parse(body(json!({"name": "a", "transport": "sse", "url": "https://h/sse"}))).unwrap();
        assert_eq!(sse.transport, Transport::Sse);
    }

    #[test]
    fn stdio_takes_command_args_env_and_cwd() {
        let new = parse(body(json!({
            "name": "files", "transport": "stdio", "command": "npx", "args": ["-y", "srv"],
            "env": {"TOKEN": "v"}, "cwd": "/tmp", "timeout_ms": 5000
        })))
        .unwrap();
        let ServerSpec::Stdio { command, args, env, cwd } = new.spec() else { panic!("{new:?}") };
        assert_eq!(
            (command.as_str(), args.len(), env["TOKEN"].as_str(), cwd.as_deref()),
            ("npx", 2, "v", Some("/tmp"))
        );
        let inferred = parse(body(json!({"name": "x", "command": "uvx", "cwd": null}))).unwrap();
        assert_eq!(inferred.transport, Transport::Stdio);
    }

    #[test]
    fn refusals_name_the_field() {
        for (value, code, field) in [
            (json!({"url": "http://h/mcp"}), "missing_field", "name"),
            (json!({"name": "a"}), "missing_field", "url"),
            (json!({"name": "a", "transport": "stdio"}), "missing_field", "command"),
            (json!({"name": "a", "transport": "ws", "url": "http://h"}), "invalid_transport", "transport"),
            (json!({"name": "a", "url": 5}), "invalid_url", "url"),
            (json!({"name": "a", "url": "ftp://h/mcp"}), "invalid_url", "url"),
            (json!({"name": "a", "url": "http://h/mcp", "command": "x"}), "invalid_command", "command"),
            (json!({"name": "a", "url": "http://h/mcp", "env": {"A": "b"}}), "invalid_env", "env"),
            (json!({"name": "a", "transport": "stdio", "url": "http://h", "command": "x"}), "invalid_url", "url"),
            (json!({"name": "a", "command": "x", "args": "-y"}), "invalid_args", "args"),
            (json!({"name": "a", "command": "x", "args": ["ok", 3]}), "invalid_args", "args[1]"),
            (json!({"name": "a", "command": "x", "env": {"K": 1}}), "invalid_env", "env"),
            (json!({"name": "a", "command": "x", "env": {"A=B": "v"}}), "invalid_env", "env"),
            (json!({"name": "a", "command": " "}), "invalid_command", "command"),
            (json!({"name": "a", "command": "x", "cwd": ""}), "invalid_cwd", "cwd"),
            (json!({"name": "a", "url": "http://h/mcp", "timeout_ms": 0}), "invalid_timeout", "timeout_ms"),
            (json!({"name": "a", "url": "http://h/mcp", "timeout_ms": "1s"}), "invalid_timeout", "timeout_ms"),
            (json!({"name": "a__b", "url": "http://h/mcp"}), "invalid_name", "name"),
            (json!({"name": "a", "url": "http://h/mcp", "colour": 1}), "unknown_field", "colour"),
        ] {
            let (got, shown) = refusal(value.clone());
            assert_eq!(got, code, "{value}: {shown}");
            assert!(shown.contains(field), "{value}: {shown}");
        }
    }

    #[test]
    fn env_values_never_appear_in_refusals() {
        let secret = "s3cr3t\0value";
        let (code, shown) = refusal(json!({"name": "a", "command": "x", "env": {"TOKEN": secret}}));
        assert_eq!(code, "invalid_env");
        assert!(shown.contains("TOKEN") && !shown.contains("s3cr3t"), "{shown}");
    }
}
