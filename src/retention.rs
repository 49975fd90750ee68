//! Retention of the audit log (`[audit.retention]`): a task deletes the `tool_executions` rows
//! older than `max_age` and the oldest rows beyond `max_rows`, once at start and then every
//! `interval`, in chunks of [`PRUNE_CHUNK`] rows so a large backlog never holds the database's
//! write lock for long. Deleted rows are counted in
//! `metamcp_audit_pruned_rows_total{rule="max_age"|"max_rows"}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{IntCounterVec, Opts};

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

/// `metamcp_audit_pruned_rows_total{rule}`, both children made so the family shows from start.
fn pruned_counter() -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new("metamcp_audit_pruned_rows_total", "tool_executions rows deleted by the retention rules."),
        &["rule"],
    );
    // The name and labels are constants: creation cannot fail.
    #[allow(clippy::expect_used)]
    let counter = counter.expect("a valid metric definition");
    for rule in ["max_age", "max_rows"] {
        counter.with_label_values(&[rule]);
    }
    counter
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
/// its counter, to register with the telemetry.
pub fn start(store: Store, settings: RetentionSettings) -> Box<dyn Collector> {
    let counter = pruned_counter();
    if settings.max_age.is_zero() && settings.max_rows == 0 {
        return Box::new(counter);
    }
    let counted = counter.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(settings.interval.max(Duration::from_millis(10)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match prune_once(&store, &settings).await {
                Ok(pruned) => {
                    counted.with_label_values(&["max_age"]).inc_by(pruned.by_age);
                    counted.with_label_values(&["max_rows"]).inc_by(pruned.by_rows);
                    if pruned != Pruned::default() {
                        tracing::info!(
                            older_than_max_age = pruned.by_age,
                            beyond_max_rows = pruned.by_rows,
                            "audit rows pruned (audit.retention)"
                        );
                    }
                }
                Err(err) => tracing::warn!(error = %err, "the audit log could not be pruned; trying again later"),
            }
        }
    });
    Box::new(counter)
}
