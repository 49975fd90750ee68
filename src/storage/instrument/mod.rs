//! Query instrumentation: diesel's [`Instrumentation`] hook turns every statement a pooled
//! connection runs into a CLIENT span that follows the OpenTelemetry database conventions, and
//! into one `record_db_query` call for the duration metric.
//!
//! The query text leaves the process only [sanitized](sanitize_query): literals become `?`, so
//! names, keys and tool data never reach a span. Bind values are never formatted at all.

mod sanitize;
mod statement;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::Connection as _;
use metamcp_telemetry_actors::ingress::{DbOperation, DbSystem};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue};

use super::connection::DbConnection;
use super::error::{error_type, StorageError};
use metamcp_telemetry::TelemetryManager;
pub use sanitize::{sanitize_query, MAX_QUERY_TEXT};
use statement::StatementCache;

/// Statements in flight on one connection at once; more means events went missing.
const MAX_IN_FLIGHT: usize = 8;

/// The connection-independent attributes of every query span of one store.
#[derive(Debug, Clone)]
pub(crate) struct DbAttributes {
    /// `db.system.name`.
    pub(crate) system: DbSystem,
    /// `db.system.name`, `db.namespace`, `server.address` and `server.port`, ready to copy (the
    /// strings reference-counted, so a copy allocates nothing).
    pub(crate) common: Arc<[KeyValue]>,
}

impl DbAttributes {
    /// The attributes of a store on `system`, in database `namespace`, at `server` (PostgreSQL).
    pub(crate) fn new(system: DbSystem, namespace: Option<String>, server: Option<(String, u16)>) -> Self {
        let mut common = vec![KeyValue::new("db.system.name", system.as_str())];
        if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
            common.push(KeyValue::new("db.namespace", Arc::<str>::from(namespace)));
        }
        if let Some((address, port)) = server {
            common.push(KeyValue::new("server.address", Arc::<str>::from(address)));
            common.push(KeyValue::new("server.port", i64::from(port)));
        }
        Self { system, common: common.into() }
    }
}

/// A statement that started and has not finished yet.
struct InFlight {
    span: Option<opentelemetry_sdk::trace::Span>,
    operation: DbOperation,
    started: Instant,
}

/// A statement diesel reported as successful, whose span waits for the caller's verdict.
struct Held {
    span: Option<opentelemetry_sdk::trace::Span>,
    operation: DbOperation,
    duration: Duration,
    finished: SystemTime,
}

/// The [`Instrumentation`] installed on every pooled connection.
///
/// diesel's SQLite connection reports an error that surfaces while stepping through a result
/// (an `INSERT … RETURNING` hitting a unique constraint, a lock timeout in a `SELECT`) as a
/// successful statement. So on SQLite the span of the last successful statement is held until
/// the next statement starts or the [`Store`](super::Store) closure returns: if the closure
/// failed with a database error that no statement reported, that statement is the one that
/// failed, and its span and metric say so. Transaction control (`BEGIN`, `ROLLBACK`, …) does
/// not release the held span, since a failure is followed by a rollback.
pub(crate) struct QueryInstrumentation {
    telemetry: TelemetryManager,
    attributes: DbAttributes,
    muted: bool,
    in_flight: Vec<InFlight>,
    /// Whether successful statements wait for the caller's verdict (SQLite).
    hold_successes: bool,
    held: Option<Held>,
    /// A statement reported an error since the current closure began.
    reported_error: bool,
    /// The span names and attributes of the statements this connection ran.
    statements: StatementCache,
}

impl QueryInstrumentation {
    pub(crate) fn new(telemetry: TelemetryManager, attributes: DbAttributes) -> Self {
        let hold_successes = attributes.system == DbSystem::Sqlite;
        Self {
            telemetry,
            attributes,
            muted: false,
            in_flight: Vec::with_capacity(2),
            hold_successes,
            held: None,
            reported_error: false,
            statements: StatementCache::default(),
        }
    }

    /// Ends the held span, as failed with `(error.type, message)` when given.
    fn release(&mut self, failure: Option<(&'static str, String)>) {
        let Some(Held { span, operation, duration, finished }) = self.held.take() else { return };
        self.telemetry.record_db_query(self.attributes.system, operation, failure.is_none(), duration);
        if let Some(mut span) = span {
            if let Some((error_type, message)) = failure {
                span.set_attribute(KeyValue::new("error.type", error_type));
                span.set_status(Status::error(message));
            }
            span.end_with_timestamp(finished);
        }
    }

    fn start(&mut self, query: &dyn fmt::Display) {
        let statement = self.statements.statement(query, &self.attributes.common);
        let operation = statement.operation;
        let span = self.telemetry.tracer().map(|tracer| {
            let builder = tracer
                .span_builder(statement.name.clone())
                .with_kind(SpanKind::Client)
                .with_attributes(statement.span_attributes());
            Context::map_current(|cx| builder.start_with_context(tracer, cx))
        });
        drop(statement);
        if operation != DbOperation::Transaction {
            self.release(None);
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            // Finish events went missing; end the stale spans rather than grow without bound.
            for stale in self.in_flight.drain(..) {
                if let Some(mut span) = stale.span {
                    span.end();
                }
            }
        }
        self.in_flight.push(InFlight { span, operation, started: Instant::now() });
    }

    fn finish(&mut self, error: Option<&diesel::result::Error>) {
        let Some(InFlight { span, operation, started }) = self.in_flight.pop() else { return };
        let duration = started.elapsed();
        if error.is_none() && self.hold_successes && operation != DbOperation::Transaction {
            self.release(None);
            self.held = Some(Held { span, operation, duration, finished: SystemTime::now() });
            return;
        }
        self.reported_error |= error.is_some();
        self.telemetry.record_db_query(self.attributes.system, operation, error.is_none(), duration);
        if let Some(mut span) = span {
            if let Some(error) = error {
                span.set_attribute(KeyValue::new("error.type", error_type(error)));
                span.set_status(Status::error(error.to_string()));
            }
            span.end();
        }
    }
}

impl Instrumentation for QueryInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if self.muted {
            return;
        }
        match event {
            InstrumentationEvent::StartQuery { query, .. } => self.start(query),
            InstrumentationEvent::FinishQuery { error, .. } => self.finish(error),
            _ => {}
        }
    }
}

/// Marks the start of a [`Store`](super::Store) closure on `conn`.
pub(crate) fn begin_closure(conn: &mut DbConnection) {
    if let Some(instrumentation) = conn.instrumentation().downcast_mut::<QueryInstrumentation>() {
        instrumentation.release(None);
        instrumentation.reported_error = false;
    }
}

/// Marks the end of a [`Store`](super::Store) closure on `conn` that returned `error`: a
/// database error no statement reported is charged to the held statement (see
/// [`QueryInstrumentation`]).
pub(crate) fn end_closure(conn: &mut DbConnection, error: Option<&StorageError>) {
    let Some(instrumentation) = conn.instrumentation().downcast_mut::<QueryInstrumentation>() else { return };
    let failure = match error {
        Some(_) if instrumentation.reported_error => None,
        Some(StorageError::Query(error @ diesel::result::Error::DatabaseError(..))) => {
            Some((error_type(error), error.to_string()))
        }
        Some(StorageError::Conflict(message)) => Some(("unique_violation", message.clone())),
        _ => None,
    };
    instrumentation.release(failure);
}

/// Runs `f` on `conn` without spans or metrics for its statements: the pool's liveness pings
/// and the readiness probe, which would otherwise flood traces with `SELECT 1`.
pub(crate) fn unrecorded<T>(conn: &mut DbConnection, f: impl FnOnce(&mut DbConnection) -> T) -> T {
    set_muted(conn, true);
    let result = f(conn);
    set_muted(conn, false);
    result
}

fn set_muted(conn: &mut DbConnection, muted: bool) {
    if let Some(instrumentation) = conn.instrumentation().downcast_mut::<QueryInstrumentation>() {
        instrumentation.muted = muted;
    }
}
