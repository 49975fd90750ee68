//! The MetaMCP gateway: MCP endpoints that aggregate upstream MCP servers, a tools registry with
//! vector search, built-in tools, a REST admin API, and diesel storage on SQLite or PostgreSQL —
//! every part instrumented through [`TelemetryManager`](metamcp_telemetry::TelemetryManager).
//!
//! The binary `metamcp-telemetry` (`src/main.rs`) serves it; the telemetry itself is the library
//! `metamcp-telemetry`, which knows nothing of MCP, SQL or this crate.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod api_error;
pub mod audit;
pub mod audit_events;
pub mod auth;
pub mod config;
pub mod endpoint;
pub mod mcp;
pub mod ratelimit;
pub mod retention;
pub mod service;
pub mod settings;
pub mod storage;
/// The skip-or-fail decision of the integration tests, for the unit tests' prerequisites too.
#[cfg(test)]
pub(crate) use support::prereq as test_prereq;
pub mod tools;
pub mod upstream;

use std::sync::Arc;

use actix_web::web;

use crate::settings::Settings;
use endpoint::{McpState, Sessions};
use metamcp_telemetry::TelemetryManager;
use service::Gateway;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database {url}: {source}")]
    Storage {
        /// The URL, password redacted.
        url: String,
        /// What failed.
        #[source]
        source: storage::StorageError,
    },
    /// The embedder could not be built.
    #[error("embedder: {0}")]
    Embedder(#[from] tools::embedder::EmbedError),
    /// Loading the tools registry failed.
    #[error("tools registry: {0}")]
    Registry(#[from] service::ExecuteError),
}

/// Longest wait of a spool call for a connection: the exporter falls back to memory soon when
/// the database is away, rather than stall its exports for the whole `connect_timeout`.
const SPOOL_CONNECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Hands the exporter the library's database spool over the gateway's database (migrated by
/// now, so its table exists), on a small pool of its own whose statements are not recorded.
/// Over an in-memory SQLite database the spool has a private in-memory database of its own (a
/// connection to `:memory:` never sees another's data). Without running telemetry there is
/// nothing to spool and no pool is made.
fn attach_database_spool(telemetry: &TelemetryManager, database: &config::DatabaseSettings) {
    if telemetry.pipeline().is_none() {
        return;
    }
    let options = metamcp_telemetry::spool::DbSpoolOptions {
        connect_timeout: database.connect_timeout.min(SPOOL_CONNECTION_WAIT),
        busy_timeout: database.busy_timeout,
        pool_size: metamcp_telemetry::spool::DEFAULT_POOL_SIZE,
    };
    match metamcp_telemetry::spool::DbSpool::open_with(&database.url, options) {
        Ok(spool) => telemetry.attach_spool(Arc::new(spool)),
        Err(err) => tracing::warn!(error = %err, "the database spool could not be made; the exporter spools in memory"),
    }
}

/// A started gateway: what the actix-web app needs to serve the MCP endpoints and the admin API.
#[derive(Debug, Clone)]
pub struct GatewayApp {
    /// State of the MCP endpoints and the admin API.
    pub state: McpState,
    /// The admin API's token.
    pub admin: api::AdminAuth,
    max_body_bytes: usize,
}

impl GatewayApp {
    /// Opens the database (running migrations and creating the `default` endpoint), registers its
    /// pool gauges and readiness probe with `telemetry`, gives the exporter its database spool,
    /// builds the embedder and loads the vector index.
    pub async fn start(settings: &Settings, telemetry: &TelemetryManager) -> Result<Self, StartError> {
        let database = settings.database.clone();
        let for_open = telemetry.clone();
        let store = tokio::task::spawn_blocking(move || storage::Store::open(&database, &for_open))
            .await
            .map_err(|e| storage::StorageError::Unavailable(format!("the opening task failed: {e}")))
            .and_then(|opened| opened)
            .map_err(|source| StartError::Storage {
                url: metamcp_telemetry::redact::redact(&settings.database.url).into_owned(),
                source,
            })?;
        if let Err(err) = telemetry.register_collector(store.pool_collector()) {
            tracing::warn!(error = %err, "database pool gauges could not be registered");
        }
        // Its query series read 0 from the first scrape, failures included, not "no data".
        telemetry.declare_db_system(store.backend().db_system());
        telemetry.add_readiness_probe(store.readiness_probe()).await;
        attach_database_spool(telemetry, &settings.database);
        let embedder = tools::embedder::from_settings(&settings.vector)?;
        let gateway =
            Gateway::start(store, telemetry.clone(), embedder, settings.gateway.clone(), settings.vector.clone())
                .await?;
        if let Err(err) = telemetry.register_collector(gateway.audit().counter()) {
            tracing::warn!(error = %err, "the audit row counter could not be registered");
        }
        let pruned = retention::start(gateway.store().clone(), settings.audit.retention.clone());
        if let Err(err) = telemetry.register_collector(pruned) {
            tracing::warn!(error = %err, "the audit pruning counter could not be registered");
        }
        let sessions = Arc::new(
            Sessions::new(settings.gateway.max_sessions, settings.gateway.session_idle_timeout)
                .recording(telemetry.clone()),
        );
        let state = McpState::new(gateway, sessions);
        // The sessions' streams hear of every list change from now on.
        state.follow_changes();
        Ok(Self {
            state,
            admin: api::AdminAuth { token: settings.admin.token.clone() },
            max_body_bytes: settings.gateway.max_body_bytes,
        })
    }

    /// Writes every queued audit row (at shutdown), waiting at most `timeout`.
    pub async fn flush(&self, timeout: std::time::Duration) {
        self.state.gateway.audit().flush(timeout).await;
    }

    /// Adds the MCP endpoints and the admin API, with their state and extractor limits.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let (json, query, path, payload) = api_error::extractor_config(self.max_body_bytes);
        cfg.app_data(web::Data::new(self.state.clone()))
            .app_data(web::Data::new(self.admin.clone()))
            .app_data(json)
            .app_data(query)
            .app_data(path)
            .app_data(payload)
            .configure(endpoint::routes)
            .configure(api::routes);
    }
}
