//! A small actix-web application — not the gateway — instrumented with the metamcp-telemetry
//! library: settings from the environment with a few overrides, the middleware around the app,
//! a tool call and a search recorded from handlers inside `trace_operation` spans, the health
//! routes, and a clean shutdown that exports what is buffered.
//!
//! It serves on `127.0.0.1:PORT` (the first argument; 0, the default, picks a free port), sends
//! itself a few requests, prints the `metamcp_*` lines it scrapes from its own `/metrics`, shuts
//! telemetry down and exits 0. Logs go to stderr as JSON lines carrying `trace_id` and `span_id`.
//!
//! ```sh
//! cargo run -p metamcp-telemetry --example instrumented_app
//! OTLP_ENDPOINT=http://collector:4317 cargo run -p metamcp-telemetry --example instrumented_app -- 8080
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use metamcp_telemetry::settings::{ProcessEnv, Settings, DEFAULT_SERVICE_NAME};
use metamcp_telemetry::{http, logging, TelemetryManager};
use opentelemetry::KeyValue;
use serde::Deserialize;
use serde_json::json;

/// The tools this application offers, with the descriptions its search looks through.
const TOOLS: &[(&str, &str)] =
    &[("add", "add two numbers"), ("divide", "divide one number by another"), ("echo", "echo the text back")];

/// The metric families the example prints from its own scrape.
const PRINTED_FAMILIES: &[&str] =
    &["metamcp_requests_total", "metamcp_tool_executions_total", "metamcp_vector_searches_total"];

/// How long the example waits for its own requests to show in `/metrics`.
const SCRAPE_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct Operands {
    a: f64,
    b: f64,
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: String,
}

/// `POST /tools/{name}`: runs a tool inside a `tools/call` span and records the execution.
async fn call_tool(
    name: web::Path<String>,
    operands: web::Json<Operands>,
    telemetry: web::Data<TelemetryManager>,
) -> HttpResponse {
    let name = name.into_inner();
    let started = Instant::now();
    let attributes = vec![KeyValue::new("gen_ai.tool.name", name.clone())];
    let result = telemetry
        .trace_operation("tools/call", attributes, async {
            // A log line written here carries the trace and span ids of `tools/call`.
            tracing::info!(tool = %name, "calling a tool");
            match name.as_str() {
                "add" => Ok(operands.a + operands.b),
                "divide" if operands.b == 0.0 => Err("division by zero".to_owned()),
                "divide" => Ok(operands.a / operands.b),
                other => Err(format!("no tool named {other}")),
            }
        })
        .await;
    telemetry.record_tool_execution(&name, result.is_ok(), started.elapsed());
    match result {
        Ok(value) => HttpResponse::Ok().json(json!({ "result": value })),
        Err(message) => {
            HttpResponse::UnprocessableEntity().json(json!({ "error": { "code": "tool_failed", "message": message } }))
        }
    }
}

/// `GET /search?q=`: looks through the tool descriptions and records the search.
async fn search(query: web::Query<SearchQuery>, telemetry: web::Data<TelemetryManager>) -> HttpResponse {
    let started = Instant::now();
    let needle = query.q.to_lowercase();
    let found = telemetry
        .trace_operation("tools/search", Vec::new(), async {
            Ok::<_, String>(
                TOOLS
                    .iter()
                    .filter(|(name, description)| name.contains(&needle) || description.contains(&needle))
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap_or_default();
    telemetry.record_vector_search(query.q.chars().count(), found.len(), started.elapsed());
    HttpResponse::Ok().json(json!({ "results": found }))
}

/// The settings: defaults < `config/default.toml` < `config/$METAMCP_ENV.toml` < environment,
/// then the example's own choices where the environment left the defaults.
fn settings() -> Result<Settings, String> {
    let mut settings = Settings::from_env(&ProcessEnv).map_err(|err| err.to_string())?;
    if settings.telemetry.service_name == DEFAULT_SERVICE_NAME {
        settings.telemetry.service_name = "instrumented-app".to_owned();
    }
    if std::env::var_os("PROMETHEUS_METRICS_PORT").is_none() && std::env::var_os("METAMCP_PROMETHEUS__PORT").is_none() {
        // Any free port, so the example never collides with a running gateway on 9464.
        settings.prometheus.port = 0;
    }
    Ok(settings)
}

fn port_argument() -> Result<u16, String> {
    match std::env::args().nth(1) {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| format!("the port must be a number from 0 to 65535, not {text:?}")),
    }
}

/// Sends the application a few requests; returns how many it sent.
async fn exercise(base: &str) -> Result<u64, reqwest::Error> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut sent = 0;
    for (tool, a, b) in [("add", 2.0, 3.0), ("add", 4.0, 5.0), ("divide", 1.0, 0.0)] {
        let response = client.post(format!("{base}/tools/{tool}")).json(&json!({ "a": a, "b": b })).send().await?;
        println!("POST /tools/{tool} -> {} {}", response.status().as_u16(), response.text().await?);
        sent += 1;
    }
    let response = client.get(format!("{base}/search")).query(&[("q", "number")]).send().await?;
    println!("GET /search?q=number -> {} {}", response.status().as_u16(), response.text().await?);
    sent += 1;
    let response = client.get(format!("{base}/health")).send().await?;
    let status = response.status().as_u16();
    let health: serde_json::Value = response.json().await?;
    println!("GET /health -> {status} {}", health["status"]);
    sent += 1;
    let response = client.get(format!("{base}/no/such/page")).send().await?;
    println!("GET /no/such/page -> {}", response.status().as_u16());
    sent += 1;
    Ok(sent)
}

/// Scrapes `/metrics` until every request sent shows in `metamcp_requests_total` (or the
/// patience runs out) and returns the lines of the printed families.
async fn scrape(metrics_url: &str, requests_sent: u64) -> Result<Vec<String>, reqwest::Error> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let deadline = Instant::now() + SCRAPE_PATIENCE;
    loop {
        let text = client.get(metrics_url).send().await?.text().await?;
        let lines: Vec<String> = text
            .lines()
            .filter(|line| PRINTED_FAMILIES.iter().any(|family| line.starts_with(family)))
            .map(str::to_owned)
            .collect();
        let counted: f64 = lines
            .iter()
            .filter(|line| line.starts_with("metamcp_requests_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if counted >= requests_sent as f64 || Instant::now() >= deadline {
            return Ok(lines);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run() -> Result<(), String> {
    let settings = settings()?;
    let port = port_argument()?;
    // JSON log lines on stderr, so stdout holds only what the example reports.
    logging::init_with_sink(&settings.logging, Arc::new(Mutex::new(std::io::stderr())));
    let telemetry = TelemetryManager::initialize(&settings).map_err(|err| format!("telemetry: {err}"))?;

    let app_telemetry = telemetry.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(app_telemetry.middleware())
            .app_data(web::Data::new(app_telemetry.clone()))
            .configure(http::health_routes)
            .route("/tools/{name}", web::post().to(call_tool))
            .route("/search", web::get().to(search))
            .default_service(web::to(http::not_found))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .map_err(|err| format!("cannot bind 127.0.0.1:{port}: {err}"))?;
    let addr = server.addrs().first().copied().ok_or("the server bound no address")?;
    let server = server.run();
    let handle = server.handle();
    let serving = actix_rt::spawn(server);
    println!("listening on http://{addr}");

    let outcome = async {
        let sent = exercise(&format!("http://{addr}")).await.map_err(|err| format!("request failed: {err}"))?;
        println!("requests sent: {sent}");
        match telemetry.metrics_addr() {
            Some(metrics) => {
                let lines = scrape(&format!("http://{metrics}/metrics"), sent)
                    .await
                    .map_err(|err| format!("scrape failed: {err}"))?;
                lines.iter().for_each(|line| println!("{line}"));
            }
            None => println!("telemetry is disabled or /metrics is off: nothing to scrape"),
        }
        Ok::<_, String>(())
    }
    .await;

    handle.stop(true).await;
    let _ = serving.await;
    let report = telemetry.shutdown().await;
    println!(
        "telemetry shut down: timed_out={} batches_left={} items_left={}",
        report.timed_out, report.left.batches_left, report.left.items_left
    );
    outcome
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("instrumented_app: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
