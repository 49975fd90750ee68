//! [`Store`]: the pool, the migrations run at start, and the bridge from async handlers to
//! blocking diesel calls (with the caller's trace context), plus the pool's Prometheus gauges
//! and the readiness probe.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::{Pool, PooledConnection};
use diesel::RunQueryDsl as _;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness as _};
use metamcp_telemetry::spool::FailFast;
use metamcp_telemetry_actors::health_check::{ProbeError, ReadinessProbe};
use opentelemetry::Context;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};

use super::connection::{Backend, DbConnection};
use super::error::StorageError;
use super::instrument::{begin_closure, end_closure, unrecorded};
use super::pool::{attributes, parse_target, prepare, LogErrors, Manager, Setup};
use super::repo::ensure_default_endpoint;
use crate::config::DatabaseSettings;
use metamcp_telemetry::TelemetryManager;

/// The SQLite schema, from `migrations/sqlite`.
pub(super) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// The PostgreSQL schema, from `migrations/postgres`.
pub(super) const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
/// Advisory lock key that serializes migrations of gateways starting together on one database.
const MIGRATION_LOCK_KEY: i64 = 0x6d6d_6370_6d69_6772; // "mmcpmigr"

/// Longest wait of the readiness probe for a connection: under the health check's default
/// one-second answer timeout, so a slow database reports why rather than "no answer".
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The gateway's database: a pool of instrumented connections to SQLite or PostgreSQL. Cheap
/// to clone; clones share the pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: Backend,
    /// Calls fail fast for a moment after the database was found unavailable.
    fail_fast: FailFast,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.pool.state();
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

impl Store {
    /// Opens the database `settings.url` names: builds the pool (blocking until its connections
    /// are up or `connect_timeout` passes), applies the embedded migrations of that backend and
    /// creates the `default` endpoint when missing. A database that cannot be reached is
    /// [`Unavailable`](StorageError::Unavailable); no error carries the URL's password.
    pub fn open(settings: &DatabaseSettings, telemetry: &TelemetryManager) -> Result<Store, StorageError> {
        let store = Self::connect(settings, telemetry, true)?;
        store.run_blocking(|conn| {
            migrate(conn)?;
            ensure_default_endpoint(conn)
        })?;
        Ok(store)
    }

    /// The pool alone. `eager` waits for the first connections (and fails when they cannot be
    /// made); otherwise connections are made in the background and requests wait for them.
    pub(crate) fn connect(
        settings: &DatabaseSettings,
        telemetry: &TelemetryManager,
        eager: bool,
    ) -> Result<Store, StorageError> {
        let target = parse_target(&settings.url, settings.connect_timeout)?;
        prepare(&target)?;
        let backend = target.backend();
        // Every connection to `:memory:` is a database of its own: one connection, kept forever.
        let pool_size = if target.is_memory() { 1 } else { settings.pool_size.max(1) };
        let setup = Setup {
            busy_timeout: settings.busy_timeout,
            wal: backend == Backend::Sqlite && !target.is_memory(),
            instrumentation: telemetry.is_enabled().then(|| (telemetry.clone(), attributes(&target))),
        };
        let redacted = target.redacted().to_owned();
        let mut builder = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(LogErrors))
            .connection_customizer(Box::new(setup))
            // A SQLite connection does not go stale; a PostgreSQL one is checked before use.
            .test_on_check_out(backend == Backend::Postgres);
        if target.is_memory() {
            builder = builder.max_lifetime(None).idle_timeout(None);
        }
        let manager = Manager::new(target);
        let pool = if eager {
            builder
                .build(manager)
                .map_err(|e| StorageError::Unavailable(format!("cannot connect to {redacted}: {e}")))?
        } else {
            builder.build_unchecked(manager)
        };
        Ok(Store { pool, backend, fail_fast: FailFast::default() })
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` with a pooled connection on a blocking thread, so an async handler never blocks
    /// its worker. The caller's OpenTelemetry context goes along: query spans become children
    /// of the current span. No free connection within `connect_timeout` is
    /// [`Unavailable`](StorageError::Unavailable).
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let cx = Context::current();
        let store = self.clone();
        offload(move || {
            let _attached = cx.attach();
            store.run_blocking(f)
        })
        .await
        .unwrap_or_else(|error| Err(StorageError::Unavailable(error.to_string())))
    }

    /// Runs `f` with a pooled connection on the current thread (start-up, tests, blocking
    /// contexts). Query spans are children of the current context.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError>,
    {
        let mut conn = self.checkout()?;
        begin_closure(&mut conn);
        let result = f(&mut conn);
        end_closure(&mut conn, result.as_ref().err());
        self.note(result.as_ref().err());
        result
    }

    /// A pooled connection; fails at once while the database was found unavailable moments ago
    /// (see [`FAIL_FAST`](metamcp_telemetry::spool::FAIL_FAST): instead of each call waiting up to `database.connect_timeout`).
    fn checkout(&self) -> Result<PooledConnection<Manager>, StorageError> {
        if !self.fail_fast.admit() {
            return Err(StorageError::Unavailable(format!(
                "the {} database was unavailable moments ago; trying again shortly",
                self.backend
            )));
        }
        match self.pool.get() {
            Ok(conn) => Ok(conn),
            Err(e) => {
                self.fail_fast.mark_down();
                Err(StorageError::Unavailable(format!("no {} connection: {e}", self.backend)))
            }
        }
    }

    /// Opens the fail-fast window after an unavailable error, closes it after anything else.
    fn note(&self, error: Option<&StorageError>) {
        match error {
            Some(error) if error.is_unavailable() => self.fail_fast.mark_down(),
            _ => self.fail_fast.mark_up(),
        }
    }

    /// A Prometheus collector of the pool: `metamcp_db_pool_connections{state="idle"|"in_use"}`
    /// and `metamcp_db_pool_max_connections`, read from the pool at each scrape.
    pub fn pool_collector(&self) -> Box<dyn Collector> {
        Box::new(PoolCollector::new(self.pool.clone()))
    }

    /// The readiness probe `database`: checks out a connection (waiting at most 800 ms, or
    /// `connect_timeout` when shorter) and runs `SELECT 1`. Reports `backend`, `pool_size`,
    /// `idle`, `in_use`, and the same figures under the health report's keys (`pool_idle`,
    /// `pool_in_use`, `latency_ms` of the `SELECT 1`).
    pub fn readiness_probe(&self) -> Arc<dyn ReadinessProbe> {
        let timeout = PROBE_TIMEOUT.min(self.pool.connection_timeout());
        Arc::new(DatabaseProbe { pool: self.pool.clone(), backend: self.backend, timeout })
    }
}

/// Applies the pending migrations of the connection's backend. On PostgreSQL an advisory lock
/// keeps two gateways starting at once from applying the same migration twice.
fn migrate(conn: &mut DbConnection) -> Result<(), StorageError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| StorageError::Migration(e.to_string());
    match conn {
        DbConnection::Sqlite(sqlite) => sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(drop).map_err(failed),
        DbConnection::Postgres(pg) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")).execute(pg)?;
            let result = pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop).map_err(failed);
            let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(pg);
            result?;
            unlocked.map(drop).map_err(StorageError::from)
        }
    }
}

/// Why [`offload`] brought no answer back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OffloadError {
    /// The blocking task panicked or was cancelled (a runtime shutting down).
    #[error("database task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// No thread could be started for it.
    #[error("cannot start a database thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Its thread ended without an answer (it panicked).
    #[error("database task failed without an answer")]
    NoAnswer,
}

/// Runs blocking `f` off the async runtime: on tokio's blocking pool inside a runtime, on a
/// thread of its own otherwise.
pub(crate) async fn offload<T, F>(f: F) -> Result<T, OffloadError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(f).await.map_err(OffloadError::Task),
        Err(_) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("mmcp-db".to_owned())
                .spawn(move || {
                    let _ = tx.send(f());
                })
                .map_err(OffloadError::Thread)?;
            rx.await.map_err(|_| OffloadError::NoAnswer)
        }
    }
}

/// The pool gauges, resolved once and set from `pool.state()` at each scrape.
struct PoolCollector {
    pool: Pool<Manager>,
    connections: IntGaugeVec,
    idle: IntGauge,
    in_use: IntGauge,
    max: IntGauge,
}

impl PoolCollector {
    fn new(pool: Pool<Manager>) -> Self {
        // Constant names and labels: creation cannot fail.
        let connections = IntGaugeVec::new(
            Opts::new("metamcp_db_pool_connections", "Connections of the database pool, by state."),
            &["state"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        let max = IntGauge::new("metamcp_db_pool_max_connections", "Most connections the database pool opens.")
            .unwrap_or_else(|_| unreachable!("valid metric name"));
        let idle = connections.with_label_values(&["idle"]);
        let in_use = connections.with_label_values(&["in_use"]);
        Self { pool, connections, idle, in_use, max }
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.connections.desc();
        descs.extend(self.max.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let state = self.pool.state();
        self.idle.set(i64::from(state.idle_connections));
        self.in_use.set(i64::from(state.connections.saturating_sub(state.idle_connections)));
        self.max.set(i64::from(self.pool.max_size()));
        let mut families = self.connections.collect();
        families.extend(self.max.collect());
        families
    }
}

/// The `database` readiness probe.
struct DatabaseProbe {
    pool: Pool<Manager>,
    backend: Backend,
    timeout: Duration,
}

/// Why the `database` probe failed.
#[derive(Debug, thiserror::Error)]
enum ProbeCheckError {
    /// No connection came within the probe's timeout.
    #[error("no {backend} connection within {}: {source}", humantime::format_duration(*.timeout))]
    NoConnection {
        backend: Backend,
        timeout: Duration,
        #[source]
        source: diesel::r2d2::PoolError,
    },
    /// The connection did not answer `SELECT 1`.
    #[error("{backend} did not answer SELECT 1: {source}")]
    NoAnswer {
        backend: Backend,
        #[source]
        source: diesel::result::Error,
    },
    /// The check could not run.
    #[error(transparent)]
    Offload(#[from] OffloadError),
}

impl DatabaseProbe {
    fn check_now(
        pool: &Pool<Manager>,
        backend: Backend,
        timeout: Duration,
    ) -> Result<serde_json::Value, ProbeCheckError> {
        let latency = {
            let mut conn = pool.get_timeout(timeout).map_err(|source| ProbeCheckError::NoConnection {
                backend,
                timeout,
                source,
            })?;
            let started = Instant::now();
            unrecorded(&mut conn, |conn| diesel::sql_query("SELECT 1").execute(conn))
                .map_err(|source| ProbeCheckError::NoAnswer { backend, source })?;
            started.elapsed()
        };
        let state = pool.state();
        let in_use = state.connections.saturating_sub(state.idle_connections);
        Ok(serde_json::json!({
            "backend": backend.as_str(),
            "pool_size": pool.max_size(),
            "idle": state.idle_connections,
            "in_use": in_use,
            "pool_idle": state.idle_connections,
            "pool_in_use": in_use,
            "latency_ms": latency.as_secs_f64() * 1000.0,
        }))
    }
}

impl ReadinessProbe for DatabaseProbe {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, ProbeError>> + Send>> {
        let (pool, backend, timeout) = (self.pool.clone(), self.backend, self.timeout);
        Box::pin(async move {
            offload(move || Self::check_now(&pool, backend, timeout))
                .await
                .map_err(ProbeCheckError::from)
                .and_then(|checked| checked)
                .map_err(|error| ProbeError::Failed(error.to_string()))
        })
    }
}
