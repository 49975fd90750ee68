//! The connection type shared by both backends and the write transaction on it. The pool that
//! makes these connections (and instruments them) is [`pool`](super::pool); this module knows
//! nothing of instrumentation, so `instrument` can build on it without a cycle.

use diesel::connection::{AnsiTransactionManager, TransactionManager};

use super::error::StorageError;

/// Which database a [`Store`](super::Store) runs on (the library's, whose URL parser the store
/// shares with the spool).
pub use metamcp_telemetry::spool::Backend;

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
