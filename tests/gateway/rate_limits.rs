//! Rate limits of endpoints and API keys through the real binary: the N+1st request within the
//! window gets 429 with `Retry-After` (whole seconds) and a JSON-RPC error, while other
//! endpoints and other keys are unaffected; limits set, changed and removed through the admin
//! API take effect at once; bad limits get a 400 naming the field.

use std::time::Duration;

use crate::common::Service;
use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::service::client;

/// One token every ten seconds: a test's requests all fall within one window.
const SLOW_RPS: f64 = 0.1;

fn admin(service: &Service, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
    let response = client().request(method, service.url(path)).json(&body).send().expect("admin API");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn create_endpoint(service: &Service, body: Value) {
    let (status, created) = admin(service, reqwest::Method::POST, "/api/endpoints", body);
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

/// An `initialize` to `endpoint`, with an API key when given.
fn initialize(service: &Service, endpoint: &str, key: Option<&str>) -> Response {
    let mut request = client()
        .post(service.url(&format!("/metamcp/{endpoint}/mcp")))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "rate-test", "version": "1"}}})
            .to_string(),
        );
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().expect("POST to the MCP endpoint")
}

/// Asserts `response` is the 429 of a rate limit of `scope`, and returns its `Retry-After`.
fn assert_limited(response: Response, scope: &str) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().expect("whole seconds");
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().expect("a JSON-RPC error");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], Value::Null, "{body}");
    assert_eq!(body["error"]["code"], -32029, "{body}");
    assert_eq!(body["error"]["data"]["scope"], scope, "{body}");
    assert_eq!(body["error"]["data"]["retry_after"], retry_after, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("rate limit"), "{body}");
    retry_after
}

/// Waits until `metamcp_rate_limited_total{scope, name}` reads `expected` on the scrape.
fn assert_counted(service: &Service, scope: &str, name: &str, expected: f64) {
    let mut last = String::new();
    let counted = support::wait::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let scrape = support::prom::scrape_blocking(&service.metrics_url());
        let value = support::prom::value(&scrape, "metamcp_rate_limited_total", &[("scope", scope), ("name", name)]);
        last = scrape.body;
        value == Some(expected)
    });
    assert!(counted, "metamcp_rate_limited_total{{scope={scope:?}, name={name:?}}} is not {expected}:\n{last}");
}

fn issue_key(service: &Service, endpoint: &str, body: Value) -> (String, String) {
    let (status, issued) = admin(service, reqwest::Method::POST, &format!("/api/endpoints/{endpoint}/keys"), body);
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    (issued["key"].as_str().unwrap().to_owned(), issued["prefix"].as_str().unwrap().to_owned())
}

#[test]
fn the_request_past_the_burst_gets_429_and_other_endpoints_are_unaffected() {
    let service = Service::start(&[], &[]);
    create_endpoint(&service, json!({"name": "limited", "rate_limit_rps": SLOW_RPS, "rate_limit_burst": 3}));
    create_endpoint(&service, json!({"name": "free"}));
    let (_, shown) = admin(&service, reqwest::Method::GET, "/api/endpoints/limited", Value::Null);
    assert_eq!((shown["rate_limit_rps"].as_f64(), shown["rate_limit_burst"].as_i64()), (Some(SLOW_RPS), Some(3)));

    for n in 1..=3 {
        assert_eq!(initialize(&service, "limited", None).status(), StatusCode::OK, "request {n} of the burst");
    }
    assert_limited(initialize(&service, "limited", None), "endpoint");
    // Every route of the endpoint is admitted alike: the legacy SSE transport's stream too.
    let legacy = client().get(service.url("/metamcp/limited/sse")).header("accept", "text/event-stream").send();
    assert_limited(legacy.expect("GET the legacy SSE stream"), "endpoint");
    // Other endpoints: as many as they like.
    for _ in 0..10 {
        assert_eq!(initialize(&service, "free", None).status(), StatusCode::OK);
        assert_eq!(initialize(&service, "default", None).status(), StatusCode::OK);
    }

    // A limit set on a live endpoint applies at once, and goes when removed.
    let path = "/api/endpoints/free";
    let (status, patched) =
        admin(&service, reqwest::Method::PATCH, path, json!({"rate_limit_rps": SLOW_RPS, "rate_limit_burst": 1}));
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rate_limit_burst"], 1);
    assert_eq!(initialize(&service, "free", None).status(), StatusCode::OK);
    assert_limited(initialize(&service, "free", None), "endpoint");
    let (status, patched) = admin(&service, reqwest::Method::PATCH, path, json!({"rate_limit_rps": null}));
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rate_limit_rps"], Value::Null);
    for _ in 0..5 {
        assert_eq!(initialize(&service, "free", None).status(), StatusCode::OK);
    }
    assert_limited(initialize(&service, "limited", None), "endpoint");
    assert_counted(&service, "endpoint", "limited", 3.0);
    assert_counted(&service, "endpoint", "free", 1.0);
}

#[test]
fn api_keys_have_their_own_limits() {
    let service = Service::start(&[], &[]);
    create_endpoint(&service, json!({"name": "team", "auth_required": true}));
    let (limited, prefix) = issue_key(&service, "team", json!({"rate_limit_rps": SLOW_RPS, "rate_limit_burst": 2}));
    let (free, _) = issue_key(&service, "team", Value::Null);

    for _ in 0..2 {
        assert_eq!(initialize(&service, "team", Some(&limited)).status(), StatusCode::OK);
    }
    let response = initialize(&service, "team", Some(&limited));
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body_text = {
        let retry = response.headers()["retry-after"].to_str().unwrap().to_owned();
        let text = response.text().unwrap();
        assert!(!retry.is_empty());
        text
    };
    assert!(body_text.contains("api_key") && body_text.contains(&prefix), "{body_text}");
    assert!(!body_text.contains(&limited), "the key itself is never shown");
    // The other key of the same endpoint, and requests without a valid key (401, no token taken).
    for _ in 0..6 {
        assert_eq!(initialize(&service, "team", Some(&free)).status(), StatusCode::OK);
    }
    assert_eq!(initialize(&service, "team", None).status(), StatusCode::UNAUTHORIZED);

    // The key's limit changed through the admin API; listed with the key.
    let path = format!("/api/endpoints/team/keys/{prefix}");
    let (status, patched) = admin(&service, reqwest::Method::PATCH, &path, json!({"rate_limit_rps": null}));
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(initialize(&service, "team", Some(&limited)).status(), StatusCode::OK);
    let (status, patched) = admin(&service, reqwest::Method::PATCH, &path, json!({"rate_limit_rps": SLOW_RPS}));
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rate_limit_burst"], 1, "the burst defaults to the rate rounded up");
    let (_, keys) = admin(&service, reqwest::Method::GET, "/api/endpoints/team/keys", Value::Null);
    assert_eq!(keys["items"][0]["rate_limit_rps"].as_f64(), Some(SLOW_RPS), "{keys}");
    assert_eq!(keys["items"][1]["rate_limit_rps"], Value::Null, "{keys}");
    assert_eq!(initialize(&service, "team", Some(&limited)).status(), StatusCode::OK);
    assert_limited(initialize(&service, "team", Some(&limited)), "api_key");
    assert_counted(&service, "api_key", &prefix, 2.0);
    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    assert!(!scrape.body.contains(&limited), "the key itself is never a label");
}

#[test]
fn bad_limits_get_a_400_naming_the_field() {
    let service = Service::start(&[], &[]);
    create_endpoint(&service, json!({"name": "e"}));
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;
    for (method, path, body, field) in [
        (post.clone(), "/api/endpoints", json!({"name": "x", "rate_limit_rps": 0}), "rate_limit_rps"),
        (post.clone(), "/api/endpoints", json!({"name": "x", "rate_limit_rps": -1.5}), "rate_limit_rps"),
        (post.clone(), "/api/endpoints", json!({"name": "x", "rate_limit_burst": 5}), "rate_limit_burst"),
        (
            post.clone(),
            "/api/endpoints",
            json!({"name": "x", "rate_limit_rps": 1, "rate_limit_burst": 0}),
            "rate_limit_burst",
        ),
        (patch.clone(), "/api/endpoints/e", json!({"rate_limit_rps": "fast"}), "rate_limit_rps"),
        (patch.clone(), "/api/endpoints/e", json!({}), "rate_limit_rps"),
        (patch.clone(), "/api/endpoints/e", json!({"rate_limit_rps": 1, "rate_limit_burst": 2.5}), "rate_limit_burst"),
        (patch.clone(), "/api/endpoints/e", json!({"rate_limit_rps": 1, "burst": 2}), "burst"),
        (post.clone(), "/api/endpoints/e/keys", json!({"rate_limit_rps": 1e9}), "rate_limit_rps"),
    ] {
        let (status, answer) = admin(&service, method, path, body.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{path} {body}: {answer}");
    }
    let (status, _) = admin(&service, patch, "/api/endpoints/nope", json!({"rate_limit_rps": 1}));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = admin(&service, reqwest::Method::GET, "/api/endpoints", Value::Null);
    assert_eq!(listed["total"], 2, "default and e only: {listed}");
}
