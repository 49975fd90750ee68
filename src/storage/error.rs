//! [`StorageError`]: what a storage operation can fail with, sorted by what the caller does
//! about it (404, 409, 400, 503, 500).

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// A storage operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The named record does not exist (the message names it).
    #[error("{0}")]
    NotFound(String),
    /// The record would clash with an existing one (a duplicate name, say).
    #[error("{0}")]
    Conflict(String),
    /// The input was refused before reaching the database (a malformed name, say).
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached: no pooled connection in time, connection refused, database
    /// down.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused or failed a query.
    #[error("database query failed: {0}")]
    Query(#[source] DieselError),
    /// The embedded migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(String),
}

impl StorageError {
    /// Whether the database, rather than the request, is at fault and a retry later may succeed:
    /// [`Unavailable`](Self::Unavailable), and query errors that mean the connection broke or the
    /// database is locked.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Query(error) => query_error_is_unavailable(error),
            _ => false,
        }
    }
}

/// Whether a diesel error means the connection or the database, not the query, is at fault
/// (the library's rule, which its spool applies too).
pub(crate) fn query_error_is_unavailable(error: &DieselError) -> bool {
    metamcp_telemetry::spool::diesel_error_is_unavailable(error)
}

/// A short, bounded name of a diesel error, for the `error.type` span attribute.
pub(crate) fn error_type(error: &DieselError) -> &'static str {
    match error {
        DieselError::DatabaseError(kind, _) => match kind {
            DatabaseErrorKind::UniqueViolation => "unique_violation",
            DatabaseErrorKind::ForeignKeyViolation => "foreign_key_violation",
            DatabaseErrorKind::UnableToSendCommand => "unable_to_send_command",
            DatabaseErrorKind::SerializationFailure => "serialization_failure",
            DatabaseErrorKind::ReadOnlyTransaction => "read_only_transaction",
            DatabaseErrorKind::RestrictViolation => "restrict_violation",
            DatabaseErrorKind::NotNullViolation => "not_null_violation",
            DatabaseErrorKind::CheckViolation => "check_violation",
            DatabaseErrorKind::ExclusionViolation => "exclusion_violation",
            DatabaseErrorKind::ClosedConnection => "closed_connection",
            _ => "database_error",
        },
        DieselError::NotFound => "not_found",
        DieselError::QueryBuilderError(_) => "query_builder_error",
        DieselError::DeserializationError(_) => "deserialization_error",
        DieselError::SerializationError(_) => "serialization_error",
        DieselError::RollbackErrorOnCommit { .. } => "rollback_error_on_commit",
        DieselError::BrokenTransactionManager => "broken_transaction_manager",
        DieselError::AlreadyInTransaction => "already_in_transaction",
        DieselError::NotInTransaction => "not_in_transaction",
        _ => "_OTHER",
    }
}

impl From<DieselError> for StorageError {
    /// A unique violation becomes [`Conflict`](StorageError::Conflict), a broken connection
    /// stays a [`Query`](StorageError::Query) error that [`is_unavailable`](StorageError::is_unavailable)
    /// recognises. The repository names the record that clashed in its own messages.
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict(info.message().to_owned())
            }
            other => Self::Query(other),
        }
    }
}

/// Maps a unique violation to a [`StorageError::Conflict`] with `message`; other errors as
/// [`From`] does.
pub(crate) fn conflict_as(error: DieselError, message: impl FnOnce() -> String) -> StorageError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => StorageError::Conflict(message()),
        other => other.into(),
    }
}
