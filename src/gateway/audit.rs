//! The audit log writer: tool calls hand their `tool_executions` row to a bounded queue, and one
//! task writes the rows in batches, one transaction each. A call never waits for the database, the
//! database sees one writer instead of every request contending for its lock, and a row that
//! cannot be written is retried, then counted as lost — never silently.
//!
//! Readers that must see every row written so far (the admin API's execution list) call
//! [`AuditLog::flush`] first.

use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use tokio::sync::{mpsc, oneshot};

use super::storage::{self, NewExecution, Store};

/// Rows waiting to be written at most; beyond it a row is dropped and counted.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Rows written in one transaction at most.
pub const MAX_BATCH: usize = 512;
/// Attempts to write a batch before its rows are counted as lost.
const ATTEMPTS: u32 = 5;
/// First delay between attempts; doubles after each.
const RETRY_DELAY: Duration = Duration::from_millis(100);

enum Message {
    Row(Box<NewExecution>),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit queue. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    rows: IntCounterVec,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("capacity", &self.tx.max_capacity()).finish()
    }
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime. `rows` counts rows by outcome
    /// (`written`, `dropped_queue_full`, `dropped_failed`) as `metamcp_audit_rows_total`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let rows = rows_counter();
        tokio::spawn(write_loop(store, rx, rows.clone()));
        Self { tx, rows }
    }

    /// `metamcp_audit_rows_total{outcome}`, to register with the telemetry.
    pub fn counter(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.rows.clone())
    }

    /// Queues a row; never waits. A full queue drops the row and counts it.
    pub fn record(&self, row: NewExecution) {
        if self.tx.try_send(Message::Row(Box::new(row))).is_err() {
            self.rows.with_label_values(&["dropped_queue_full"]).inc();
            tracing::warn!("the audit queue is full; a tool_executions row was dropped");
        }
    }

    /// Resolves once every row queued before the call is written (or counted as lost), or after
    /// `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        let flush = async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        };
        let _ = tokio::time::timeout(timeout, flush).await;
    }
}

fn rows_counter() -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new("metamcp_audit_rows_total", "tool_executions rows by outcome: written, or dropped and why."),
        &["outcome"],
    );
    // The name and labels are constants: creation cannot fail.
    #[allow(clippy::expect_used)]
    let counter = counter.expect("a valid metric definition");
    for outcome in ["written", "dropped_queue_full", "dropped_failed"] {
        counter.with_label_values(&[outcome]);
    }
    counter
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Message>, rows: IntCounterVec) {
    let mut batch: Vec<NewExecution> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Row(row) => batch.push(*row),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            write_batch(&store, std::mem::take(&mut batch), &rows).await;
            batch = Vec::with_capacity(MAX_BATCH);
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_batch(store: &Store, batch: Vec<NewExecution>, rows: &IntCounterVec) {
    let count = batch.len() as u64;
    let batch = std::sync::Arc::new(batch);
    let mut delay = RETRY_DELAY;
    for attempt in 1..=ATTEMPTS {
        let rows_to_write = batch.clone();
        let written =
            store.run(move |c| storage::write_transaction(c, |c| storage::insert_executions(c, &rows_to_write))).await;
        match written {
            Ok(_) => {
                rows.with_label_values(&["written"]).inc_by(count);
                return;
            }
            Err(err) if attempt < ATTEMPTS && err.is_unavailable() => {
                tracing::debug!(error = %err, attempt, "audit rows not written yet; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(err) => {
                rows.with_label_values(&["dropped_failed"]).inc_by(count);
                tracing::warn!(error = %err, rows = count, "tool_executions rows could not be written and are lost");
                return;
            }
        }
    }
}
