//! The spool's own small pool: connections to the backend the URL names, set up once (SQLite
//! pragmas, the table created when missing), without any query instrumentation — the spool's
//! statements must not feed the pipeline they serve.

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::{CustomizeConnection, Error as PoolError, HandleError, ManageConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::Connection as _;

use super::fail_fast::FailFast;
use super::url::{Backend, DatabaseUrl};
use super::{OpenError, Result};
use metamcp_telemetry_actors::spool::SpoolError;

/// A connection of the spool: one variant per backend compiled in.
pub(super) enum SpoolConnection {
    /// SQLite.
    #[cfg(feature = "spool-sqlite")]
    Sqlite(diesel::SqliteConnection),
    /// PostgreSQL.
    #[cfg(feature = "spool-postgres")]
    Postgres(diesel::PgConnection),
}

/// Runs `$body` with `$c` bound to the backend's own connection: the query builder then checks
/// the statement once per backend.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "spool-sqlite")]
            $crate::spool::pool::SpoolConnection::Sqlite($c) => $body,
            #[cfg(feature = "spool-postgres")]
            $crate::spool::pool::SpoolConnection::Postgres($c) => $body,
        }
    };
}
pub(super) use on_backend;

/// The SQLite table's columns, shared by its creation and its upgrade so the two cannot drift.
#[cfg(feature = "spool-sqlite")]
macro_rules! sqlite_spool_columns {
    () => {
        "
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL CHECK (signal IN ('traces', 'metrics', 'logs')),
    items BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    body BLOB NOT NULL
"
    };
}

/// The table, its index and (PostgreSQL) the lock that keeps two processes from creating them
/// at once. The same schema as the gateway's migrations `*_telemetry_spool` and
/// `*_telemetry_spool_logs`.
#[cfg(feature = "spool-sqlite")]
const CREATE_SQLITE: &str = concat!(
    "CREATE TABLE IF NOT EXISTS telemetry_spool (",
    sqlite_spool_columns!(),
    ");
CREATE INDEX IF NOT EXISTS telemetry_spool_created_at_ms_idx ON telemetry_spool (created_at_ms);"
);

/// The same for PostgreSQL, under a transaction-scoped advisory lock.
#[cfg(feature = "spool-postgres")]
const CREATE_POSTGRES: &str = "BEGIN;
SELECT pg_advisory_xact_lock(7885351455935476592);
CREATE TABLE IF NOT EXISTS telemetry_spool (
    id BIGSERIAL PRIMARY KEY,
    signal TEXT NOT NULL CHECK (signal IN ('traces', 'metrics', 'logs')),
    items BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    body BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_spool_created_at_ms_idx ON telemetry_spool (created_at_ms);
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'telemetry_spool'::regclass
               AND conname = 'telemetry_spool_signal_check' AND pg_get_constraintdef(oid) NOT LIKE '%logs%') THEN
        ALTER TABLE telemetry_spool DROP CONSTRAINT telemetry_spool_signal_check;
        ALTER TABLE telemetry_spool ADD CONSTRAINT telemetry_spool_signal_check
            CHECK (signal IN ('traces', 'metrics', 'logs'));
    END IF;
END $$;
COMMIT;";

/// A table made before log batches were spooled admits only `traces` and `metrics`; SQLite
/// cannot change a check in place, so such a table is rebuilt with its rows (as the gateway's
/// migration `*_telemetry_spool_logs` does).
#[cfg(feature = "spool-sqlite")]
const UPGRADE_SQLITE: &str = concat!(
    "BEGIN IMMEDIATE;
DROP TABLE IF EXISTS telemetry_spool_upgrade;
CREATE TABLE telemetry_spool_upgrade (",
    sqlite_spool_columns!(),
    ");
INSERT INTO telemetry_spool_upgrade (id, signal, items, size_bytes, attempts, created_at_ms, lease_until_ms, body)
    SELECT id, signal, items, size_bytes, attempts, created_at_ms, lease_until_ms, body FROM telemetry_spool;
DROP TABLE telemetry_spool;
ALTER TABLE telemetry_spool_upgrade RENAME TO telemetry_spool;
CREATE INDEX IF NOT EXISTS telemetry_spool_created_at_ms_idx ON telemetry_spool (created_at_ms);
COMMIT;"
);

/// True when the SQLite table's check admits log batches.
#[cfg(feature = "spool-sqlite")]
fn sqlite_admits_logs(conn: &mut diesel::SqliteConnection) -> std::result::Result<bool, DieselError> {
    use diesel::sql_types::{Nullable, Text};
    use diesel::RunQueryDsl as _;
    let schema: Option<String> = diesel::select(diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'telemetry_spool')",
    ))
    .get_result(conn)?;
    Ok(schema.is_none_or(|sql| sql.contains("'logs'")))
}

/// The pool and its fail-fast window.
#[derive(Clone)]
pub(super) struct SpoolPool {
    pool: Pool<Manager>,
    backend: Backend,
    /// Calls fail fast for a moment after the database was found unavailable.
    fail_fast: FailFast,
}

impl fmt::Debug for SpoolPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("SpoolPool")
            .field("backend", &self.backend)
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

impl SpoolPool {
    /// A pool of `size` connections to `url`, made in the background (a database that is away
    /// now is tried again by each call).
    pub(super) fn open(
        url: &DatabaseUrl,
        size: u32,
        connect_timeout: Duration,
        busy_timeout: Duration,
    ) -> std::result::Result<Self, OpenError> {
        match url.backend() {
            #[cfg(feature = "spool-sqlite")]
            Backend::Sqlite => {}
            #[cfg(feature = "spool-postgres")]
            Backend::Postgres => {}
            #[allow(unreachable_patterns)]
            backend => return Err(OpenError::NotCompiled { backend, feature: feature_of(backend) }),
        }
        url.prepare().map_err(OpenError::Prepare)?;
        let memory = url.is_memory();
        let mut builder = Pool::builder()
            // Every connection to `:memory:` is a database of its own: one connection, kept.
            .max_size(if memory { 1 } else { size.max(1) })
            .min_idle(Some(0))
            .connection_timeout(connect_timeout)
            .error_handler(Box::new(LogErrors))
            .connection_customizer(Box::new(Setup { busy_timeout, wal: !memory }))
            .test_on_check_out(url.backend() == Backend::Postgres);
        if memory {
            builder = builder.max_lifetime(None).idle_timeout(None);
        }
        let pool = builder.build_unchecked(Manager { url: url.clone() });
        Ok(Self { pool, backend: url.backend(), fail_fast: FailFast::default() })
    }

    pub(super) fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` with a pooled connection on the current thread.
    pub(super) fn run<T>(&self, f: impl FnOnce(&mut SpoolConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.checkout()?;
        let result = f(&mut conn);
        match &result {
            Err(SpoolError::Unavailable(_)) => self.fail_fast.mark_down(),
            _ => self.fail_fast.mark_up(),
        }
        result
    }

    /// A pooled connection; fails at once while the database was found unavailable moments ago.
    fn checkout(&self) -> Result<PooledConnection<Manager>> {
        if !self.fail_fast.admit() {
            return Err(SpoolError::Unavailable(format!(
                "the {} database was unavailable moments ago; trying again shortly",
                self.backend
            )));
        }
        self.pool.get().map_err(|e| {
            self.fail_fast.mark_down();
            SpoolError::Unavailable(format!("no {} connection: {e}", self.backend))
        })
    }
}

/// The feature that compiles `backend` in.
#[allow(dead_code)]
fn feature_of(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "spool-sqlite",
        Backend::Postgres => "spool-postgres",
    }
}

/// A diesel error as the exporter sees it: the database away (fall back to memory, try again
/// later) or anything else.
pub(super) fn spool_error(error: DieselError) -> SpoolError {
    if diesel_error_is_unavailable(&error) {
        SpoolError::Unavailable(error.to_string())
    } else {
        SpoolError::Failed(error.to_string())
    }
}

/// Whether a diesel error means the connection or the database, not the statement, is at fault:
/// a broken connection, SQLite's busy and locked errors, PostgreSQL's shutdowns.
pub fn diesel_error_is_unavailable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => true,
            DatabaseErrorKind::Unknown => {
                let message = info.message().to_ascii_lowercase();
                // They reach diesel without a more precise kind.
                [
                    "database is locked",
                    "database is busy",
                    "database table is locked",
                    "terminating connection",
                    "server closed the connection",
                    "the database system is shutting down",
                    "the database system is starting up",
                    "no connection to the server",
                ]
                .iter()
                .any(|needle| message.contains(needle))
            }
            _ => false,
        },
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

/// Opens connections to exactly the backend the URL names.
struct Manager {
    url: DatabaseUrl,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").field("url", &self.url).finish()
    }
}

impl ManageConnection for Manager {
    type Connection = SpoolConnection;
    type Error = PoolError;

    fn connect(&self) -> std::result::Result<SpoolConnection, PoolError> {
        let location = self.url.location();
        let conn = match self.url.backend() {
            #[cfg(feature = "spool-sqlite")]
            Backend::Sqlite => diesel::SqliteConnection::establish(location).map(SpoolConnection::Sqlite),
            #[cfg(feature = "spool-postgres")]
            Backend::Postgres => diesel::PgConnection::establish(location).map(SpoolConnection::Postgres),
            #[allow(unreachable_patterns)]
            backend => {
                let _ = location;
                Err(diesel::ConnectionError::BadConnection(format!("{backend} is not compiled in")))
            }
        };
        conn.map_err(PoolError::ConnectionError)
    }

    fn is_valid(&self, conn: &mut SpoolConnection) -> std::result::Result<(), PoolError> {
        use diesel::r2d2::R2D2Connection as _;
        on_backend!(conn, |c| c.ping()).map_err(PoolError::QueryError)
    }

    fn has_broken(&self, conn: &mut SpoolConnection) -> bool {
        use diesel::r2d2::R2D2Connection as _;
        on_backend!(conn, |c| c.is_broken())
    }
}

/// Set-up of a new connection: SQLite's pragmas, then the table when missing.
#[derive(Debug)]
struct Setup {
    busy_timeout: Duration,
    wal: bool,
}

impl CustomizeConnection<SpoolConnection, PoolError> for Setup {
    fn on_acquire(&self, conn: &mut SpoolConnection) -> std::result::Result<(), PoolError> {
        match conn {
            #[cfg(feature = "spool-sqlite")]
            SpoolConnection::Sqlite(sqlite) => {
                let busy_ms = u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX).min(i32::MAX as u64);
                let mut setup = format!("PRAGMA busy_timeout = {busy_ms};");
                if self.wal {
                    setup.push_str(" PRAGMA journal_mode = WAL;");
                }
                setup.push_str(" PRAGMA synchronous = NORMAL;\n");
                setup.push_str(CREATE_SQLITE);
                sqlite.batch_execute(&setup).and_then(|()| match sqlite_admits_logs(sqlite)? {
                    true => Ok(()),
                    false => sqlite.batch_execute(UPGRADE_SQLITE),
                })
            }
            #[cfg(feature = "spool-postgres")]
            SpoolConnection::Postgres(pg) => {
                let _ = (self.busy_timeout, self.wal);
                pg.batch_execute(CREATE_POSTGRES)
            }
        }
        .map_err(PoolError::QueryError)
    }
}

/// Logs connection failures of the pool's background threads (libpq's messages name the host,
/// never the password).
#[derive(Debug)]
struct LogErrors;

impl HandleError<PoolError> for LogErrors {
    fn handle_error(&self, error: PoolError) {
        // r2d2 retries in the background while the database is away: one line per interval,
        // with how many were left out, not one per attempt.
        static LIMIT: metamcp_telemetry_actors::internal_events::LogLimit =
            metamcp_telemetry_actors::internal_events::LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(error = %error, suppressed, "spool database connection failed");
        }
    }
}
