//! Upstream servers of every transport through the admin API of the real binary: the shapes
//! `POST /api/servers` takes (a `url` alone still registers a Streamable HTTP server), the 4xx
//! that names the field of a bad registration, the stdio policy's 403s, and the environment of a
//! stdio server — credentials — never shown by any answer or written to the log.

use crate::common::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mcp_peers::McpUpstream;
use support::service::client;

const SECRET: &str = "env-s3cr3t-value-91f2";

fn post(service: &Service, body: &Value) -> (StatusCode, Value) {
    let response = client().post(service.url("/api/servers")).json(body).send().expect("POST /api/servers");
    let status = response.status();
    (status, response.json().expect("a JSON body"))
}

fn get(service: &Service, path: &str) -> (StatusCode, String) {
    let response = client().get(service.url(path)).send().expect("GET");
    let status = response.status();
    (status, response.text().expect("a body"))
}

fn server_count(service: &Service) -> u64 {
    let (status, body) = get(service, "/api/servers");
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str::<Value>(&body).expect("JSON")["total"].as_u64().expect("a total")
}

/// A stdio server that needs no prerequisite: `true` exits at once, so its discovery fails, but it
/// is registered with its fields.
fn stdio_body(name: &str, command: &str) -> Value {
    json!({
        "name": name, "transport": "stdio", "command": command, "args": ["--port", "0"],
        "env": {"API_TOKEN": SECRET, "MODE": "test"}, "cwd": "/", "timeout_ms": 5000
    })
}

#[test]
fn servers_of_every_transport_register_and_a_url_alone_is_streamable_http() {
    let upstream = McpUpstream::start("compat-upstream");
    let service = Service::start(&[], &[]);

    // Today's request, unchanged: a Streamable HTTP server whose tools are discovered.
    let (status, created) = post(&service, &json!({"name": "compat", "url": upstream.url()}));
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["server"]["transport"], "streamable_http", "{created}");
    assert_eq!(created["server"]["url"], upstream.url());
    assert_eq!(created["discovery_error"], Value::Null, "{created}");
    assert!(created["tools"].as_array().is_some_and(|tools| !tools.is_empty()), "{created}");

    let (status, sse) = post(
        &service,
        &json!({"name": "legacy", "transport": "sse", "url": "http://127.0.0.1:9/sse", "timeout_ms": 2000}),
    );
    assert_eq!(status, StatusCode::CREATED, "{sse}");
    assert_eq!(sse["server"]["transport"], "sse");

    let (status, stdio) = post(&service, &stdio_body("local", "true"));
    assert_eq!(status, StatusCode::CREATED, "{stdio}");
    let server = &stdio["server"];
    assert_eq!(server["transport"], "stdio");
    assert_eq!(server["command"], "true");
    assert_eq!(server["args"], json!(["--port", "0"]));
    assert_eq!(server["cwd"], "/");
    assert_eq!(server["url"], Value::Null);
    assert_eq!(server["env"], json!({"API_TOKEN": "***", "MODE": "***"}), "env keys only, values masked");

    // Every surface that shows servers: the registration's answer, the list, the server, the
    // endpoints, the status page and health; and the log.
    assert!(!stdio.to_string().contains(SECRET), "{stdio}");
    for path in ["/api/servers", "/api/servers/local", "/api/endpoints", "/api/tools", "/status.json", "/health"] {
        let (_, body) = get(&service, path);
        assert!(!body.contains(SECRET), "{path}: {body}");
    }
    let (status, listed) = get(&service, "/api/servers");
    assert_eq!(status, StatusCode::OK);
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed["total"], 3);
    let transports: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|s| s["transport"].as_str().unwrap()).collect();
    assert_eq!(transports, ["streamable_http", "sse", "stdio"], "by name: compat, legacy, local");
    let (status, one) = get(&service, "/api/servers/local");
    assert_eq!(status, StatusCode::OK);
    let one: Value = serde_json::from_str(&one).expect("JSON");
    assert_eq!(one["server"]["env"]["API_TOKEN"], "***");

    let deleted = client().delete(service.url("/api/servers/local")).header("content-type", "application/json").send();
    assert_eq!(deleted.expect("DELETE").status(), StatusCode::NO_CONTENT);
    let logs = service.logs().join("\n");
    assert!(!logs.contains(SECRET), "an env value reached the log");
}

#[test]
fn bad_registrations_get_a_4xx_naming_the_field_and_write_nothing() {
    let service = Service::start(&[], &[]);
    for (body, code, field) in [
        (json!({"url": "http://127.0.0.1:9/mcp"}), "missing_field", "name"),
        (json!({"name": "a"}), "missing_field", "url"),
        (json!({"name": "a", "transport": "sse"}), "missing_field", "url"),
        (json!({"name": "a", "transport": "stdio"}), "missing_field", "command"),
        (
            json!({"name": "a", "transport": "websocket", "url": "http://127.0.0.1:9/"}),
            "invalid_transport",
            "transport",
        ),
        (json!({"name": "a", "transport": 3, "url": "http://127.0.0.1:9/"}), "invalid_transport", "transport"),
        (json!({"name": "a", "url": "ftp://127.0.0.1/mcp"}), "invalid_url", "url"),
        (json!({"name": "a", "transport": "stdio", "command": "true", "url": "http://h/"}), "invalid_url", "url"),
        (json!({"name": "a", "url": "http://127.0.0.1:9/mcp", "command": "true"}), "invalid_command", "command"),
        (json!({"name": "a", "url": "http://127.0.0.1:9/mcp", "args": ["x"]}), "invalid_args", "args"),
        (json!({"name": "a", "command": "true", "args": "--flag"}), "invalid_args", "args"),
        (json!({"name": "a", "command": "true", "args": [1]}), "invalid_args", "args[0]"),
        (json!({"name": "a", "command": "true", "env": ["A=b"]}), "invalid_env", "env"),
        (json!({"name": "a", "command": "true", "env": {"A": 1}}), "invalid_env", "env"),
        (json!({"name": "a", "command": "true", "env": {"": "v"}}), "invalid_env", "env"),
        (json!({"name": "a", "command": "", "transport": "stdio"}), "invalid_command", "command"),
        (json!({"name": "a", "command": "true", "cwd": 7}), "invalid_cwd", "cwd"),
        (json!({"name": "a", "url": "http://127.0.0.1:9/mcp", "timeout_ms": -1}), "invalid_timeout", "timeout_ms"),
        (json!({"name": "a", "url": "http://127.0.0.1:9/mcp", "enabled": "yes"}), "invalid_enabled", "enabled"),
        (json!({"name": "a b", "url": "http://127.0.0.1:9/mcp"}), "invalid_name", "name"),
        (json!({"name": "a", "url": "http://127.0.0.1:9/mcp", "headers": {}}), "unknown_field", "headers"),
    ] {
        let (status, answer) = post(&service, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().expect("a message");
        assert!(message.contains(field), "{body}: the message {message:?} does not name {field}");
    }
    // An env value is never echoed, even in a refusal.
    let (status, answer) =
        post(&service, &json!({"name": "a", "command": "true", "env": {"TOKEN": format!("{SECRET}\u{0}")}}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!answer.to_string().contains(SECRET), "{answer}");
    assert_eq!(server_count(&service), 0);
}

#[test]
fn the_stdio_policy_refuses_with_403() {
    let disabled = Service::start(&[("METAMCP_GATEWAY__STDIO_ENABLED", "false")], &[]);
    let (status, answer) = post(&disabled, &stdio_body("local", "true"));
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "stdio_disabled");
    assert!(answer["error"]["message"].as_str().unwrap().contains("gateway.stdio_enabled"), "{answer}");
    assert_eq!(server_count(&disabled), 0);
    drop(disabled);

    let allow_list = Service::start(&[("METAMCP_GATEWAY__STDIO_ALLOWED_COMMANDS", "true,/opt/only/this")], &[]);
    for refused in ["false", "/bin/false", "/usr/bin/this", "python3"] {
        let (status, answer) = post(&allow_list, &stdio_body("refused", refused));
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}: {answer}");
        assert_eq!(answer["error"]["code"], "stdio_command_not_allowed", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("gateway.stdio_allowed_commands") && message.contains(refused), "{message}");
    }
    assert_eq!(server_count(&allow_list), 0);
    // Allowed by its file name, and as given.
    let true_path =
        ["/usr/bin/true", "/bin/true"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap_or("true");
    for (name, command) in [("by-name", "true"), ("by-path", true_path)] {
        let (status, answer) = post(&allow_list, &stdio_body(name, command));
        assert_eq!(status, StatusCode::CREATED, "{command}: {answer}");
    }
    assert_eq!(server_count(&allow_list), 2);
}
