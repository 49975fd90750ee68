//! Sessions, API keys and data at rest over the real binary: the session cap and its eviction
//! are per endpoint (anonymous clients of `default` cannot push out another endpoint's
//! sessions); a session belongs to the API key that opened it; keys are listed with their last
//! use and revoked by prefix, and a revoked key stops at once; the SQLite file is the owner's
//! only; `audit.retention` prunes the audit log by age and by count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::Service;
use metamcp_gateway::settings::DatabaseSettings;
use metamcp_gateway::storage::{self, NewExecution, Store};
use metamcp_telemetry::TelemetryManager;
use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::service::{client, MCP_ACCEPT};
use support::wait::assert_eventually;

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

fn admin(service: &Service, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
    let request = client().request(method, service.url(path)).header("content-type", "application/json");
    let request = match body {
        Some(body) => request.body(body.to_string()),
        None => request,
    };
    request.send().expect("admin API")
}

/// Creates the endpoint `name` that requires a key, and `keys` keys for it.
fn locked_endpoint(service: &Service, name: &str, keys: usize) -> Vec<Value> {
    let created = admin(
        service,
        reqwest::Method::POST,
        "/api/endpoints",
        Some(json!({"name": name, "servers": [], "auth_required": true})),
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    (0..keys)
        .map(|_| {
            let issued = admin(service, reqwest::Method::POST, &format!("/api/endpoints/{name}/keys"), None);
            assert_eq!(issued.status(), StatusCode::CREATED);
            issued.json().expect("the issued key")
        })
        .collect()
}

/// One JSON-RPC POST to `endpoint`, with the API key and session given.
fn mcp(service: &Service, endpoint: &str, key: Option<&str>, session: Option<&str>, body: Value) -> Response {
    let mut request = client()
        .post(service.url(&format!("/metamcp/{endpoint}/mcp")))
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().expect("MCP request")
}

/// A new session on `endpoint`, opened with `key`.
fn initialize(service: &Service, endpoint: &str, key: Option<&str>) -> String {
    let response = mcp(
        service,
        endpoint,
        key,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["mcp-session-id"].to_str().expect("ascii").to_owned()
}

/// The status of a `ping` in `session`.
fn ping(service: &Service, endpoint: &str, key: Option<&str>, session: &str) -> StatusCode {
    let response = mcp(service, endpoint, key, Some(session), json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    let status = response.status();
    if status == StatusCode::OK {
        let body: Value = response.json().expect("JSON-RPC");
        assert_eq!(body["result"], json!({}), "{body}");
    }
    status
}

fn end_session(service: &Service, endpoint: &str, key: Option<&str>, session: &str) -> StatusCode {
    let mut request =
        client().delete(service.url(&format!("/metamcp/{endpoint}/mcp"))).header("mcp-session-id", session);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().expect("DELETE").status()
}

fn key_of(issued: &Value) -> &str {
    issued["key"].as_str().expect("a key")
}

#[test]
fn sessions_of_an_auth_endpoint_survive_an_eviction_storm_on_default() {
    let service = Service::start(&[("METAMCP_GATEWAY__MAX_SESSIONS", "3")], &[]);
    let issued = locked_endpoint(&service, "locked", 1);
    let key = key_of(&issued[0]);
    let locked = initialize(&service, "locked", Some(key));
    let first_default = initialize(&service, "default", None);
    assert_eq!(ping(&service, "default", None, &first_default), StatusCode::OK);

    // Anonymous clients of `default` open session after session...
    for _ in 0..30 {
        initialize(&service, "default", None);
    }
    // ...and push out `default`'s own oldest ones only.
    assert_eq!(ping(&service, "default", None, &first_default), StatusCode::NOT_FOUND, "default is capped at 3");
    assert_eq!(ping(&service, "locked", Some(key), &locked), StatusCode::OK, "locked kept its session");
}

#[test]
fn a_session_belongs_to_the_key_that_opened_it() {
    let service = Service::start(&[], &[]);
    let issued = locked_endpoint(&service, "locked", 2);
    let (a, b) = (key_of(&issued[0]), key_of(&issued[1]));
    let session = initialize(&service, "locked", Some(a));

    assert_eq!(ping(&service, "locked", Some(b), &session), StatusCode::NOT_FOUND, "another valid key");
    assert_eq!(ping(&service, "locked", None, &session), StatusCode::UNAUTHORIZED, "no key");
    assert_eq!(end_session(&service, "locked", Some(b), &session), StatusCode::NOT_FOUND, "another key cannot end it");
    assert_eq!(ping(&service, "locked", Some(a), &session), StatusCode::OK, "its own key still can");
    assert_eq!(end_session(&service, "locked", Some(a), &session), StatusCode::NO_CONTENT);
    assert_eq!(ping(&service, "locked", Some(a), &session), StatusCode::NOT_FOUND);
}

#[test]
fn keys_are_listed_with_their_last_use_and_a_revoked_key_stops_at_once() {
    let service = Service::start(&[], &[]);
    let issued = locked_endpoint(&service, "locked", 2);
    let (a, b) = (key_of(&issued[0]), key_of(&issued[1]));
    let keys = || {
        let response = admin(&service, reqwest::Method::GET, "/api/endpoints/locked/keys", None);
        assert_eq!(response.status(), StatusCode::OK);
        response.text().expect("the key list")
    };

    let listed = keys();
    assert!(!listed.contains(a) && !listed.contains(b), "never the keys: {listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["total"], 2, "{listed}");
    for (item, issued) in listed["items"].as_array().unwrap().iter().zip(&issued) {
        assert_eq!(item["prefix"], issued["prefix"], "{item}");
        assert_eq!(item["created_at"], issued["created_at"], "{item}");
        assert_eq!(item["last_used_at"], Value::Null, "{item}");
        assert_eq!(item["rate_limit_rps"], Value::Null, "{item}");
        assert_eq!(
            item.as_object().unwrap().len(),
            6,
            "id, prefix, created_at, last_used_at, rate_limit_rps, rate_limit_burst only: {item}"
        );
    }
    let prefix_a = issued[0]["prefix"].as_str().unwrap().to_owned();
    assert!(a.starts_with(&prefix_a) && prefix_a.len() == 12, "{prefix_a}");

    // Using a key records its last use (off the request, so the list shows it shortly).
    let session_a = initialize(&service, "locked", Some(a));
    let session_b = initialize(&service, "locked", Some(b));
    assert_eventually(WAIT, POLL, "key A's last use is listed", || {
        let listed: Value = serde_json::from_str(&keys()).unwrap();
        listed["items"][0]["last_used_at"]
            .as_i64()
            .is_some_and(|at| at >= listed["items"][0]["created_at"].as_i64().unwrap())
    });

    // A prefix both keys share is ambiguous: nothing is revoked.
    let ambiguous = admin(&service, reqwest::Method::DELETE, "/api/endpoints/locked/keys/mmcp_", None);
    assert_eq!(ambiguous.status(), StatusCode::CONFLICT);
    assert_eq!(ambiguous.json::<Value>().unwrap()["error"]["code"], "conflict");
    let unknown = admin(&service, reqwest::Method::DELETE, "/api/endpoints/locked/keys/mmcp_zzzzzzz", None);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let elsewhere = admin(&service, reqwest::Method::DELETE, &format!("/api/endpoints/default/keys/{prefix_a}"), None);
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND, "a key is revoked on its own endpoint only");

    let revoked = admin(&service, reqwest::Method::DELETE, &format!("/api/endpoints/locked/keys/{prefix_a}"), None);
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked: Value = revoked.json().unwrap();
    assert_eq!(revoked["revoked"]["prefix"], prefix_a.as_str(), "{revoked}");
    assert_eq!(revoked["sessions_ended"], 1, "{revoked}");

    // At once: the key opens nothing, its session is gone; the other key works on.
    assert_eq!(ping(&service, "locked", Some(a), &session_a), StatusCode::UNAUTHORIZED);
    let refused = mcp(
        &service,
        "locked",
        Some(a),
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}),
    );
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ping(&service, "locked", Some(b), &session_b), StatusCode::OK);
    let listed: Value = serde_json::from_str(&keys()).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let again = admin(&service, reqwest::Method::DELETE, &format!("/api/endpoints/locked/keys/{prefix_a}"), None);
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let missing = admin(&service, reqwest::Method::GET, "/api/endpoints/nope/keys", None);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[cfg(unix)]
#[test]
fn the_database_file_and_its_wal_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("metamcp.db");
    let url = format!("sqlite://{}", path.display());
    let service = Service::start(&[("DATABASE_URL", url.as_str())], &[]);
    // The WAL and its index appear with the first write (the audit row of a call).
    let executed = client()
        .post(service.url("/api/tools/calculator/execute"))
        .json(&json!({"arguments": {"expression": "1 + 1"}}))
        .send()
        .unwrap();
    assert_eq!(executed.status(), StatusCode::OK);
    let files = ["", "-wal", "-shm"].map(|suffix| format!("{}{suffix}", path.display()));
    assert_eventually(WAIT, POLL, "the database, its WAL and its index exist", || {
        files.iter().all(|file| std::path::Path::new(file).exists())
    });
    for file in &files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
    drop(service);
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A SQLite database at `path`, migrated, holding one execution per `(tool name, age)`.
fn database_with(path: &std::path::Path, rows: &[(String, Duration)]) -> String {
    let url = format!("sqlite://{}", path.display());
    let settings = DatabaseSettings { url: url.clone(), ..DatabaseSettings::default() };
    let store = Store::open(&settings, &TelemetryManager::disabled()).expect("the database opens");
    let rows = rows.to_vec();
    store
        .run_blocking(move |c| {
            for (tool, age) in rows {
                let new = NewExecution {
                    endpoint: None,
                    tool_name: tool,
                    success: true,
                    duration_ms: 1.0,
                    error_message: None,
                    trace_id: None,
                };
                let id = storage::insert_execution(c, &new)?;
                let created = now_ms() - age.as_millis() as i64;
                use diesel::RunQueryDsl as _;
                diesel::sql_query(format!("UPDATE tool_executions SET created_at = {created} WHERE id = {id}"))
                    .execute(c)?;
            }
            Ok(())
        })
        .expect("rows written");
    url
}

fn tool_names(service: &Service) -> Vec<String> {
    let listed: Value =
        client().get(service.url("/api/executions?limit=500")).send().unwrap().json().expect("the audit log");
    let mut names: Vec<String> =
        listed["items"].as_array().unwrap().iter().map(|row| row["tool_name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[test]
fn audit_retention_prunes_by_age_and_by_count() {
    let day = Duration::from_secs(24 * 3600);
    let dir = tempfile::tempdir().unwrap();

    // By age, with the defaults (30 days): rows of 40 days go, rows of 29 days and of now stay.
    let mut rows: Vec<(String, Duration)> = (0..5).map(|i| (format!("old{i}"), day * 40)).collect();
    rows.push(("recent".to_owned(), day * 29));
    rows.push(("now".to_owned(), Duration::ZERO));
    let url = database_with(&dir.path().join("age.db"), &rows);
    let service = Service::start(&[("DATABASE_URL", url.as_str())], &[]);
    assert_eventually(WAIT, POLL, "rows older than 30 days are pruned at start", || {
        tool_names(&service) == ["now", "recent"]
    });
    let scrape = client().get(service.metrics_url()).send().unwrap().text().unwrap();
    assert!(scrape.contains("metamcp_audit_pruned_rows_total{rule=\"max_age\"} 5"), "{scrape}");
    drop(service);

    // By count, checked every second: the newest `max_rows` stay, whatever their age.
    let rows: Vec<(String, Duration)> = (0..10).map(|i| (format!("t{i}"), Duration::from_secs(100 - i))).collect();
    let url = database_with(&dir.path().join("rows.db"), &rows);
    let service = Service::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("METAMCP_AUDIT__RETENTION__MAX_ROWS", "4"),
            ("METAMCP_AUDIT__RETENTION__MAX_AGE", "0s"),
            ("METAMCP_AUDIT__RETENTION__INTERVAL", "1s"),
        ],
        &[],
    );
    assert_eventually(WAIT, POLL, "only the newest 4 rows stay", || tool_names(&service) == ["t6", "t7", "t8", "t9"]);
    // New rows keep being pruned on the interval.
    for _ in 0..3 {
        let executed = client()
            .post(service.url("/api/tools/calculator/execute"))
            .json(&json!({"arguments": {"expression": "2 * 3"}}))
            .send()
            .unwrap();
        assert_eq!(executed.status(), StatusCode::OK);
    }
    assert_eventually(WAIT, POLL, "the newest 4 are the 3 calls and t9", || {
        tool_names(&service) == ["calculator", "calculator", "calculator", "t9"]
    });
}
