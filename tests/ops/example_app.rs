//! The library example `telemetry/examples/instrumented_app.rs`, run as a user would run it: the compiled
//! binary against a loopback OTLP receiver. It must exit 0, report the requests it made as its own
//! `/metrics` counted them, and its spans must reach the collector with the tool call nested
//! under the request's server span.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{TestCollector, Transport};

/// Bound on one run of the example (start, six requests, scrape, shutdown).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on building the example when it is missing or stale.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// `target/<profile>/examples/instrumented_app`, next to this test's own `deps` directory.
fn example_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    profile_dir.join("examples").join(format!("instrumented_app{}", std::env::consts::EXE_SUFFIX))
}

/// Runs `command` to completion, killing it after `timeout`.
fn run_bounded(mut command: Command, timeout: Duration, what: &str) -> Output {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect(what);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().expect("stdout reader"), stderr: err.join().expect("stderr reader") }
}

/// `cargo test --workspace` builds the examples before running tests, `cargo test --test
/// example_app` does not: build it here (a no-op when it is up to date), with the same profile
/// and target directory as this test.
fn build_example() -> PathBuf {
    let path = example_path();
    let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cargo
        .args(["build", "--quiet", "--example", "instrumented_app", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let profile_dir = path.parent().and_then(|examples| examples.parent()).expect("target/<profile>");
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        cargo.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        cargo.env("CARGO_TARGET_DIR", target_dir);
    }
    let output = run_bounded(cargo, BUILD_TIMEOUT, "cargo build --example instrumented_app");
    assert!(output.status.success(), "building the example failed:\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

/// The value of the printed sample line that starts with `series` (name and labels as printed).
fn printed_value(stdout: &str, series: &str) -> Option<f64> {
    stdout.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_instrumented_example_app_runs_reports_and_exports() {
    let example = build_example();
    let collector = TestCollector::start(Transport::Grpc);
    let mut command = Command::new(&example);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("METAMCP_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("OTLP_ENDPOINT", collector.endpoint())
        .env("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms")
        .env("RUST_LOG", "info");
    let output = run_bounded(command, RUN_TIMEOUT, "the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the example exited with {}:\n{stdout}\n{stderr}", output.status);

    // What it saw of its own requests.
    assert!(stdout.contains("POST /tools/add -> 200 {\"result\":5.0}"), "{stdout}");
    assert!(stdout.contains("POST /tools/divide -> 422"), "{stdout}");
    assert!(stdout.contains("GET /search?q=number -> 200 {\"results\":[\"add\",\"divide\"]}"), "{stdout}");
    assert!(stdout.contains("GET /no/such/page -> 404"), "{stdout}");
    assert!(stdout.contains("requests sent: 6"), "{stdout}");

    // What its /metrics counted: route templates, not paths; 404s as `unmatched`.
    let expected = [
        (r#"metamcp_requests_total{method="POST",route="/tools/{name}",status_code="200"}"#, 2.0),
        (r#"metamcp_requests_total{method="POST",route="/tools/{name}",status_code="422"}"#, 1.0),
        (r#"metamcp_requests_total{method="GET",route="/search",status_code="200"}"#, 1.0),
        (r#"metamcp_requests_total{method="GET",route="unmatched",status_code="404"}"#, 1.0),
        (r#"metamcp_tool_executions_total{success="true",tool_name="add"}"#, 2.0),
        (r#"metamcp_tool_executions_total{success="false",tool_name="divide"}"#, 1.0),
        ("metamcp_vector_searches_total", 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(printed_value(&stdout, series), Some(value), "{series} in:\n{stdout}");
    }
    assert!(stdout.contains("telemetry shut down: timed_out=false batches_left=0 items_left=0"), "{stdout}");

    // Logs went to stderr as JSON, the tool's line correlated with its trace.
    let tool_log: serde_json::Value = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "calling a tool")
        .unwrap_or_else(|| panic!("no \"calling a tool\" log line on stderr:\n{stderr}"));
    assert!(tool_log["trace_id"].as_str().is_some_and(|id| id.len() == 32), "{tool_log}");

    // Shutdown exported the spans: `tools/call` is a child of its request's server span.
    let spans = collector.spans();
    let by_id: BTreeMap<Vec<u8>, &support::ReceivedSpan> = spans.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "tools/call").collect();
    assert_eq!(calls.len(), 3, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    for call in calls {
        let parent = by_id.get(&call.span.parent_span_id).expect("the server span of a tool call was exported");
        assert_eq!(parent.name, "POST /tools/{name}");
    }
    assert!(spans.iter().any(|s| s.name == "tools/search"), "no tools/search span");
    let resource = support::collector::attr_map(&spans[0].resource);
    assert_eq!(resource.get("service.name").map(String::as_str), Some("instrumented-app"));
}
