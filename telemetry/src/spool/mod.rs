//! The durable database spool (cargo features `spool-sqlite`, `spool-postgres`): export batches
//! wait in a SQLite or PostgreSQL table while the collector cannot take them, survive a crash,
//! and are replayed when it answers.
//!
//! ```no_run
//! # fn demo(telemetry: &metamcp_telemetry::TelemetryManager) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use metamcp_telemetry::spool::DbSpool;
//!
//! let spool = DbSpool::open("/var/lib/app/telemetry.db", Duration::from_secs(1))?;
//! telemetry.attach_spool(Arc::new(spool));
//! # Ok(()) }
//! ```
//!
//! The spool runs on a small pool of its own whose statements are never recorded (a span or a
//! metric for a spool query would feed the pipeline from its own exporter). Each new connection
//! creates the table `telemetry_spool` and its index when missing. [`DatabaseUrl`] is the parser
//! of database URLs, for applications that open the same database.

mod db;
mod fail_fast;
mod pool;
mod url;

pub use db::{DbSpool, DbSpoolOptions, DEFAULT_BUSY_TIMEOUT, DEFAULT_POOL_SIZE};
pub use fail_fast::{FailFast, FAIL_FAST};
pub use pool::diesel_error_is_unavailable;
pub use url::{Backend, DatabaseUrl, DatabaseUrlError, ACCEPTED_FORMS};

/// What a spool call returns.
type Result<T> = std::result::Result<T, metamcp_telemetry_actors::spool::SpoolError>;

/// Why [`DbSpool::open`] made no spool.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not a database URL.
    #[error(transparent)]
    Url(#[from] DatabaseUrlError),
    /// The URL names a backend this build does not include.
    #[error("{backend} is not compiled in: enable the cargo feature {feature} of metamcp-telemetry")]
    NotCompiled {
        /// The backend the URL names.
        backend: Backend,
        /// The feature that adds it.
        feature: &'static str,
    },
    /// The SQLite file or its directory could not be created.
    #[error("{0}")]
    Prepare(#[source] std::io::Error),
}
