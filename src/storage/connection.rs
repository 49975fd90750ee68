//! The connection type shared by both backends, the pool's connection manager and per-connection
//! set-up (SQLite pragmas, the query instrumentation), and the URL parsing behind them.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection as _, TransactionManager};
use diesel::r2d2::{CustomizeConnection, Error as PoolError, HandleError, ManageConnection, R2D2Connection as _};
use diesel::{Connection as _, PgConnection, SqliteConnection};
use metamcp_telemetry_actors::ingress::DbSystem;

use super::error::StorageError;
use super::instrument::{unrecorded, DbAttributes, QueryInstrumentation};
use metamcp_telemetry::TelemetryManager;

/// Which database a [`Store`](super::Store) runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Backend {
    /// SQLite, bundled: a file, or `:memory:`.
    #[serde(rename = "sqlite")]
    Sqlite,
    /// PostgreSQL over libpq.
    #[serde(rename = "postgresql")]
    Postgres,
}

impl Backend {
    /// The `db.system.name` of this backend.
    pub fn db_system(self) -> DbSystem {
        match self {
            Self::Sqlite => DbSystem::Sqlite,
            Self::Postgres => DbSystem::Postgresql,
        }
    }

    /// `sqlite` or `postgresql`, as in telemetry.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The derive generates the multi-backend plumbing (`MultiBackend`, rows, binds) beside the
/// enum, undocumented; this module keeps that out of the documented surface.
#[allow(missing_docs, unreachable_pub)]
mod multi {
    use diesel::{PgConnection, SqliteConnection};

    /// A connection to either backend. Queries written with diesel's query builder against
    /// this type run on both; `match` on it for what only one backend can do. Get one from a
    /// [`Store`](crate::storage::Store): the derived `establish` tries each backend
    /// in turn, and SQLite takes any string for a file name.
    #[derive(diesel::MultiConnection)]
    pub enum DbConnection {
        /// A SQLite connection.
        Sqlite(SqliteConnection),
        /// A PostgreSQL connection.
        Postgres(PgConnection),
    }
}

pub use multi::{DbConnection, MultiBackend};

/// Runs `f` in a transaction meant to write: on SQLite the outermost one starts with
/// `BEGIN IMMEDIATE`, so it takes the write lock up front (waiting up to `busy_timeout`) instead of
/// failing with "database is locked" when a read turns into a write; nested calls use savepoints.
/// An `Err` from `f` rolls everything back.
pub fn write_transaction<T, F>(conn: &mut DbConnection, f: F) -> Result<T, StorageError>
where
    F: FnOnce(&mut DbConnection) -> Result<T, StorageError>,
{
    let immediate = match conn {
        DbConnection::Sqlite(inner) => {
            AnsiTransactionManager::transaction_manager_status_mut(inner).transaction_depth()?.is_none()
        }
        DbConnection::Postgres(_) => false,
    };
    if !immediate {
        return diesel::Connection::transaction(conn, f);
    }
    if let DbConnection::Sqlite(inner) = conn {
        AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?;
    }
    type Manager = <DbConnection as diesel::Connection>::TransactionManager;
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback) => Err(rollback.into()),
        },
    }
}

/// Where a store's connections go, parsed from `database.url`.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) backend: Backend,
    /// The SQLite path, or the PostgreSQL URL handed to libpq (may hold a password: never log).
    location: String,
    /// `sqlite://:memory:`.
    pub(crate) memory: bool,
    /// The URL with any password hidden, for messages.
    pub(crate) redacted: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("backend", &self.backend).field("url", &self.redacted).finish()
    }
}

impl Target {
    /// Parses `url`: `sqlite://PATH`, `sqlite://:memory:`, `postgres://…` or `postgresql://…`.
    /// A PostgreSQL URL without `connect_timeout` gets one from `connect_timeout`, so a
    /// connection attempt to an unresponsive host ends too.
    pub(crate) fn parse(url: &str, connect_timeout: Duration) -> Result<Self, StorageError> {
        let url = url.trim();
        let redacted = metamcp_telemetry::redact::redact(url).into_owned();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StorageError::Invalid(format!("database URL {redacted:?} names no file")));
            }
            let memory = path == ":memory:";
            return Ok(Self { backend: Backend::Sqlite, location: path.to_owned(), memory, redacted });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut location = url.to_owned();
            if !url.contains("connect_timeout=") {
                // libpq counts whole seconds and treats less than 2 as 2.
                let seconds = connect_timeout.as_secs_f64().ceil().max(2.0) as u64;
                location.push(if url.contains('?') { '&' } else { '?' });
                location.push_str(&format!("connect_timeout={seconds}"));
            }
            return Ok(Self { backend: Backend::Postgres, location, memory: false, redacted });
        }
        Err(StorageError::Invalid(format!(
            "database URL {redacted:?} is neither sqlite://PATH nor postgres://user@host:port/database"
        )))
    }

    /// Creates the SQLite file's directory when missing, and the file itself readable and
    /// writable by its owner only (mode 0600): it holds upstream URLs, key hashes and the audit
    /// log. SQLite gives its `-wal` and `-shm` files the mode of the database file. An existing
    /// file keeps its mode; one readable by others is reported in the log.
    pub(crate) fn prepare(&self) -> Result<(), StorageError> {
        // A `file:` URI names its file in SQLite's own syntax: SQLite creates it.
        if self.backend != Backend::Sqlite || self.memory || self.location.starts_with("file:") {
            return Ok(());
        }
        let path = Path::new(&self.location);
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::Unavailable(format!("cannot create the directory {}: {e}", parent.display()))
            })?;
        }
        create_private_file(path)
    }

    /// The span attributes of queries against this target.
    pub(crate) fn attributes(&self) -> DbAttributes {
        match self.backend {
            Backend::Sqlite => {
                let namespace = if self.memory {
                    Some(":memory:".to_owned())
                } else {
                    Path::new(&self.location).file_name().map(|name| name.to_string_lossy().into_owned())
                };
                DbAttributes::new(DbSystem::Sqlite, namespace, None)
            }
            Backend::Postgres => {
                let (server, database) = postgres_parts(&self.location);
                DbAttributes::new(DbSystem::Postgresql, database, server)
            }
        }
    }
}

/// Creates `path` empty with mode 0600 (an empty file is an empty SQLite database) unless it
/// exists; warns when an existing one is open to the group or others.
#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = %format!("{mode:o}"),
                        "the database file is readable by others than its owner; chmod 600 it"
                    );
                }
            }
            Ok(())
        }
        Err(err) => {
            Err(StorageError::Unavailable(format!("cannot create the database file {}: {err}", path.display())))
        }
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<(), StorageError> {
    Ok(())
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
        let location = &self.target.location;
        match self.target.backend {
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
        tracing::warn!(error = %error, "database connection failed");
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
    fn targets() {
        let t = Target::parse("sqlite://data/x.db", Duration::from_secs(5)).unwrap();
        assert_eq!((t.backend, t.memory, t.location.as_str()), (Backend::Sqlite, false, "data/x.db"));
        assert!(Target::parse("sqlite://:memory:", Duration::from_secs(5)).unwrap().memory);
        let t = Target::parse("postgres://u:secret@h/db", Duration::from_millis(300)).unwrap();
        assert_eq!(t.location, "postgres://u:secret@h/db?connect_timeout=2");
        assert!(!format!("{t:?}").contains("secret"));
        let t = Target::parse("postgres://h/db?connect_timeout=9&x=1", Duration::from_secs(30)).unwrap();
        assert_eq!(t.location, "postgres://h/db?connect_timeout=9&x=1");
        let t = Target::parse("postgres://h/db?sslmode=disable", Duration::from_secs(30)).unwrap();
        assert_eq!(t.location, "postgres://h/db?sslmode=disable&connect_timeout=30");
        let err = Target::parse("mysql://u:secret@h/db", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)));
        assert!(!err.to_string().contains("secret"));
        assert!(matches!(Target::parse("sqlite://", Duration::from_secs(1)), Err(StorageError::Invalid(_))));
    }
}
