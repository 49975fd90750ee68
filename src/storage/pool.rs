//! The pool's side of a connection, parsed from `database.url` by the library's one parser: the
//! connection manager, per-connection set-up (SQLite pragmas, the query instrumentation), and the
//! span attributes of a target.

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::{CustomizeConnection, Error as PoolError, HandleError, ManageConnection, R2D2Connection as _};
use diesel::{Connection as _, PgConnection, SqliteConnection};
use metamcp_telemetry::spool::DatabaseUrl;
use metamcp_telemetry_actors::ingress::DbSystem;
use metamcp_telemetry_actors::internal_events::LogLimit;

use super::connection::{Backend, DbConnection};
use super::error::StorageError;
use super::instrument::{unrecorded, DbAttributes, QueryInstrumentation};
use metamcp_telemetry::TelemetryManager;

/// Where a store's connections go: `database.url` parsed by the library's one parser (also the
/// spool's and the settings' validation).
pub(crate) type Target = DatabaseUrl;

/// Parses `url` (a SQLite path, `sqlite://…`, `file:…`, `:memory:`, `postgres://…`).
pub(crate) fn parse_target(url: &str, connect_timeout: Duration) -> Result<Target, StorageError> {
    DatabaseUrl::parse(url, connect_timeout).map_err(|e| StorageError::Invalid(e.to_string()))
}

/// Creates a SQLite file (mode 0600) and its directory when missing.
pub(crate) fn prepare(target: &Target) -> Result<(), StorageError> {
    target.prepare().map_err(|e| StorageError::Unavailable(e.to_string()))
}

/// The span attributes of queries against `target`.
pub(crate) fn attributes(target: &Target) -> DbAttributes {
    match target.backend() {
        Backend::Sqlite => {
            let namespace = if target.is_memory() {
                Some(":memory:".to_owned())
            } else {
                target.sqlite_path().and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            };
            DbAttributes::new(DbSystem::Sqlite, namespace, None)
        }
        Backend::Postgres => {
            let (server, database) = postgres_parts(target.location());
            DbAttributes::new(DbSystem::Postgresql, database, server)
        }
    }
}

/// Host and port (default 5432), and database name, of a PostgreSQL URL. A Unix socket or
/// percent-encoded host gives no server.
fn postgres_parts(url: &str) -> (Option<(String, u16)>, Option<String>) {
    let Some((_, rest)) = url.split_once("://") else { return (None, None) };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    let first = hosts.split(',').next().unwrap_or("");
    let (host, port) = if let Some(v6) = first.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, port)) => (host, port.strip_prefix(':')),
            None => (v6, None),
        }
    } else {
        match first.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (first, None),
        }
    };
    let port = port.and_then(|p| p.parse::<u16>().ok()).unwrap_or(5432);
    let server = (!host.is_empty() && !host.contains('%')).then(|| (host.to_owned(), port));
    let database = tail
        .strip_prefix('/')
        .map(|path| path.split('?').next().unwrap_or(""))
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    (server, database)
}

/// Opens connections for the pool, to exactly the backend the URL names.
pub(crate) struct Manager {
    target: Target,
}

impl Manager {
    pub(crate) fn new(target: Target) -> Self {
        Self { target }
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").field("target", &self.target).finish()
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = PoolError;

    fn connect(&self) -> Result<DbConnection, PoolError> {
        let location = self.target.location();
        match self.target.backend() {
            Backend::Sqlite => SqliteConnection::establish(location).map(DbConnection::Sqlite),
            Backend::Postgres => PgConnection::establish(location).map(DbConnection::Postgres),
        }
        .map_err(PoolError::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), PoolError> {
        unrecorded(conn, |conn| conn.ping()).map_err(PoolError::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// Per-connection set-up when the pool opens a connection: SQLite pragmas, then the query
/// instrumentation (after the pragmas, which are not worth a span).
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) busy_timeout: Duration,
    pub(crate) wal: bool,
    pub(crate) instrumentation: Option<(TelemetryManager, DbAttributes)>,
}

impl CustomizeConnection<DbConnection, PoolError> for Setup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), PoolError> {
        if let DbConnection::Sqlite(sqlite) = conn {
            let busy_ms = u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX).min(i32::MAX as u64);
            let mut pragmas = format!("PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON;");
            if self.wal {
                pragmas.push_str(" PRAGMA journal_mode = WAL;");
            }
            pragmas.push_str(" PRAGMA synchronous = NORMAL;");
            sqlite.batch_execute(&pragmas).map_err(PoolError::QueryError)?;
        }
        if let Some((telemetry, attributes)) = &self.instrumentation {
            conn.set_instrumentation(QueryInstrumentation::new(telemetry.clone(), attributes.clone()));
        }
        Ok(())
    }
}

/// Logs connection failures of the pool's background threads (libpq's messages name the host,
/// never the password).
#[derive(Debug)]
pub(crate) struct LogErrors;

impl HandleError<PoolError> for LogErrors {
    fn handle_error(&self, error: PoolError) {
        // r2d2 retries in the background while the database is away: one line per interval,
        // with how many were left out, not one per attempt.
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(error = %error, suppressed, "database connection failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_parts_of_urls() {
        type Case<'a> = (&'a str, Option<(&'a str, u16)>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            ("postgres://postgres@127.0.0.1:5432/test", Some(("127.0.0.1", 5432)), Some("test")),
            ("postgresql://u:p@db.example/app?sslmode=disable", Some(("db.example", 5432)), Some("app")),
            ("postgres://u@[::1]:6543/x", Some(("::1", 6543)), Some("x")),
            ("postgres://h1:5433,h2:5434/x", Some(("h1", 5433)), Some("x")),
            ("postgres://u@%2Fvar%2Frun/x", None, Some("x")),
            ("postgres://localhost", Some(("localhost", 5432)), None),
        ];
        for (url, server, database) in cases {
            let (s, d) = postgres_parts(url);
            assert_eq!(s.as_ref().map(|(h, p)| (h.as_str(), *p)), *server, "{url}");
            assert_eq!(d.as_deref(), *database, "{url}");
        }
    }

    #[test]
    fn namespaces_of_sqlite_targets() {
        let namespace = |url: &str| attributes(&parse_target(url, Duration::from_secs(5)).unwrap());
        for url in ["data/x.db", "sqlite://data/x.db", "file:data/x.db?mode=rwc", "file:///data/x.db"] {
            let expected = DbAttributes::new(DbSystem::Sqlite, Some("x.db".to_owned()), None);
            assert_eq!(namespace(url).common, expected.common, "{url}");
        }
        let expected = DbAttributes::new(DbSystem::Sqlite, Some(":memory:".to_owned()), None);
        assert_eq!(namespace(":memory:").common, expected.common);
        let err = parse_target("mysql://u:secret@h/db", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)));
        assert!(!err.to_string().contains("secret"));
        assert!(matches!(parse_target("sqlite://", Duration::from_secs(1)), Err(StorageError::Invalid(_))));
    }
}
