//! Retention of the audit log (`[audit.retention]`): a task deletes the `tool_executions` rows
//! older than `max_age` and the oldest rows beyond `max_rows`, once at start and then every
//! `interval`, in chunks of [`PRUNE_CHUNK`] rows so a large backlog never holds the database's
//! write lock for long. Deleted rows are counted in
//! `metamcp_audit_pruned_rows_total{rule="max_age"|"max_rows"}`, failed prunings in
//! `metamcp_audit_prune_failures_total` (typed events of [`audit_events`](crate::audit_events)).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;

use super::audit_events::{AuditEvent as _, AuditMetrics, AuditPruningFailed, AuditRowsPruned};
use super::config::RetentionSettings;
use super::storage::{self, StorageError, Store, PRUNE_CHUNK};

/// Rows deleted by one pruning, by rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows older than `max_age`.
    pub by_age: u64,
    /// Rows beyond `max_rows`.
    pub by_rows: u64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes with `step` (one chunk per call, in its own write transaction) until a chunk comes
/// back short; returns the rows deleted.
async fn in_chunks<F>(store: &Store, step: F) -> Result<u64, StorageError>
where
    F: Fn(&mut storage::DbConnection) -> Result<usize, StorageError> + Clone + Send + 'static,
{
    let mut total = 0u64;
    loop {
        let step = step.clone();
        let deleted = store.run(move |c| storage::write_transaction(c, |c| step(c))).await?;
        total += deleted as u64;
        if (deleted as i64) < PRUNE_CHUNK {
            return Ok(total);
        }
        // Leave the database to the audit writer and the requests between chunks.
        tokio::task::yield_now().await;
    }
}

/// Applies both rules once.
pub async fn prune_once(store: &Store, settings: &RetentionSettings) -> Result<Pruned, StorageError> {
    let mut pruned = Pruned::default();
    if !settings.max_age.is_zero() {
        let age_ms = i64::try_from(settings.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(age_ms);
        pruned.by_age = in_chunks(store, move |c| storage::delete_executions_before(c, cutoff, PRUNE_CHUNK)).await?;
    }
    if settings.max_rows > 0 {
        let keep = i64::try_from(settings.max_rows).unwrap_or(i64::MAX);
        pruned.by_rows = in_chunks(store, move |c| storage::delete_executions_beyond(c, keep, PRUNE_CHUNK)).await?;
    }
    Ok(pruned)
}

/// Starts the pruning task on the current tokio runtime (unless both rules are off) and returns
/// its counters, to register with the telemetry.
pub fn start(store: Store, settings: RetentionSettings) -> Box<dyn Collector> {
    start_with(store, settings, AuditMetrics::new())
}

/// [`start`], counting in `metrics`.
pub fn start_with(store: Store, settings: RetentionSettings, metrics: AuditMetrics) -> Box<dyn Collector> {
    let collector = metrics.retention_collector();
    if settings.max_age.is_zero() && settings.max_rows == 0 {
        return collector;
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(settings.interval.max(Duration::from_millis(10)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match prune_once(&store, &settings).await {
                Ok(pruned) => AuditRowsPruned { by_age: pruned.by_age, by_rows: pruned.by_rows }.emit(&metrics),
                Err(error) => AuditPruningFailed { error: &error }.emit(&metrics),
            }
        }
    });
    collector
}
