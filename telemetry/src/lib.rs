//! metamcp-telemetry: traces, metrics and correlated logs for MetaMCP endpoints on actix-web.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use metamcp_telemetry::{settings::Settings, TelemetryManager};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let settings = Settings::default();
//!     let telemetry = TelemetryManager::initialize(&settings).expect("telemetry");
//!     let app_telemetry = telemetry.clone();
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(app_telemetry.middleware())
//!             .app_data(web::Data::new(app_telemetry.clone()))
//!             .configure(metamcp_telemetry::http::health_routes)
//!             .route("/hello", web::get().to(|| async { "hello" }))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await?;
//!     telemetry.shutdown().await;
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod access_log;
mod api_error;
mod capture;
mod capture_mcp;
pub mod catalogue;
pub mod gate;
mod header_capture;
pub mod http;
pub mod logging;
mod manager;
mod mcp;
mod metrics_server;
pub mod middleware;
mod origins;
pub mod otlp_logs;
pub mod propagation;
pub mod redact;
pub mod settings;
#[cfg(any(feature = "spool-sqlite", feature = "spool-postgres"))]
pub mod spool;
pub mod status;

pub use access_log::{McpAccess, ACCESS_SCOPE, HTTP_ACCESS_EVENT, MCP_ACCESS_EVENT};
pub use capture::{RecordedRequest, RecordedToolExecution, RecordedVectorSearch, TestTelemetry};
pub use capture_mcp::{RecordedMcpOperation, RecordedMcpSession, RecordedUpstreamEvent};
pub use manager::{resource, InitError, TelemetryManager, SCOPE_NAME};
pub use mcp::{upstream_component, McpOperation, McpSession, McpSide, UpstreamStatus};
pub use metamcp_telemetry_actors as actors;
pub use metamcp_telemetry_actors::health_check::{Component, ComponentSource};
pub use metamcp_telemetry_actors::span_buffer::FlushError;
pub use middleware::{RequestId, TelemetryMiddleware};
