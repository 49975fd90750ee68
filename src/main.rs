//! The metamcp-telemetry service binary: the telemetry pipeline, the API server with the health
//! endpoints and the status page, and the Prometheus endpoint, stopped cleanly by SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use actix_web::{web, App, HttpServer};
use metamcp_gateway::settings::Settings;
use metamcp_gateway::GatewayApp;
use metamcp_telemetry::gate::{Gate, GatePolicy};
use metamcp_telemetry::redact::redact;
use metamcp_telemetry::status::StatusPage;
use metamcp_telemetry::{http, logging, TelemetryManager};

/// mimalloc instead of the system allocator: spans and batches are allocated on request workers
/// and freed on the pipeline's threads, a pattern glibc's per-thread arenas handle poorly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let loaded = match metamcp_gateway::settings::from_process() {
        Ok(loaded) => loaded,
        Err(err) => err.exit(),
    };
    if loaded.check_config {
        print!("{}", loaded.settings.to_masked_toml());
        return ExitCode::SUCCESS;
    }
    logging::init_with_otlp(&loaded.settings);
    match actix_rt::System::new().block_on(run(loaded.settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "metamcp-telemetry stopped on an error");
            ExitCode::FAILURE
        }
    }
}

/// Why the service stopped on an error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// The telemetry pipeline could not start.
    #[error(transparent)]
    Telemetry(#[from] metamcp_telemetry::InitError),
    /// The gateway could not start.
    #[error("the gateway could not start: {0}")]
    Gateway(#[from] metamcp_gateway::StartError),
    /// The API server's address could not be bound.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// Why it could not be bound.
        #[source]
        source: std::io::Error,
    },
}

async fn run(settings: Settings) -> Result<(), RunError> {
    let telemetry = TelemetryManager::initialize(&settings)?;
    let gateway = match GatewayApp::start(&settings, &telemetry).await {
        Ok(gateway) => gateway,
        Err(err) => {
            telemetry.shutdown().await;
            return Err(err.into());
        }
    };
    let app_telemetry = telemetry.clone();
    let audit = gateway.clone();
    let status = StatusPage::new();
    // Workers start after the bind below, so the gate knows the port actually bound.
    let policy: Arc<OnceLock<Arc<GatePolicy>>> = Arc::default();
    let for_workers = policy.clone();
    let mut server = HttpServer::new(move || {
        let policy = for_workers.get().cloned().unwrap_or_else(|| Arc::new(GatePolicy::strictest()));
        App::new()
            // Inside the telemetry middleware, so a refused request is traced and counted.
            .wrap(Gate::new(policy))
            .wrap(app_telemetry.middleware())
            .app_data(web::Data::new(app_telemetry.clone()))
            .configure(http::health_routes)
            .configure(|cfg| status.configure(cfg))
            .configure(|cfg| gateway.configure(cfg))
            .default_service(web::to(http::not_found))
    })
    .disable_signals()
    .client_request_timeout(settings.server.client_request_timeout)
    .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1));
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server =
        server.bind(settings.server.bind).map_err(|source| RunError::Bind { address: settings.server.bind, source })?;
    let api_addr = server.addrs().first().copied().unwrap_or(settings.server.bind);
    let gate = Arc::new(GatePolicy::for_api_port(
        api_addr,
        &settings,
        settings.gateway.max_body_bytes,
        !settings.admin.token.is_empty(),
    ));
    let _ = policy.set(gate.clone());
    let server = server.run();
    let handle = server.handle();
    tracing::info!(
        api = %api_addr,
        metrics = %telemetry.metrics_addr().map_or_else(|| "disabled".to_owned(), |a| a.to_string()),
        mcp = %format!("http://{api_addr}/metamcp/default/mcp"),
        database = %redact(&settings.database.url),
        otlp_endpoint = %redact(&settings.exporter.endpoint),
        otlp_protocol = %settings.exporter.protocol,
        telemetry_enabled = settings.telemetry.enabled,
        allowed_origins = %gate.origins().join(" "),
        hosts = if gate.restricts_hosts() { "loopback and server.allowed_hosts" } else { "any" },
        version = env!("CARGO_PKG_VERSION"),
        "metamcp-telemetry listening"
    );
    let server_task = actix_rt::spawn(server);
    let signal = wait_for_signal().await;
    tracing::info!(signal, "shutting down: no new requests, draining telemetry");
    handle.stop(true).await;
    let _ = server_task.await;
    audit.flush(settings.server.shutdown_timeout).await;
    let report = telemetry.shutdown().await;
    if report.timed_out {
        tracing::warn!(
            batches_left = report.left.batches_left,
            items_left = report.left.items_left,
            "shutdown deadline passed; what was left is counted as dropped (shutdown_timeout)"
        );
    }
    tracing::info!("metamcp-telemetry stopped");
    Ok(())
}

/// Resolves with the name of the first SIGTERM or SIGINT.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process can only be killed; wait for Ctrl-C as a fallback.
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
