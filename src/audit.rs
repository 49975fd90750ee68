//! The audit log writer: tool calls hand their `tool_executions` row to a bounded queue, and one
//! task writes the rows in batches, one multi-row `INSERT` each (one statement, one query span).
//! A batch closes when it is full, [`BATCH_WINDOW`] after its first row, or when a flush asks
//! for it, so a steady trickle of calls costs one statement per window, not one per call. A call
//! never waits for the database, the database sees one writer instead of every request
//! contending for its lock, and a row that cannot be written is retried, then counted as lost —
//! never silently.
//!
//! Readers that must see every row written so far (the admin API's execution list) call
//! [`AuditLog::flush`] first.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::audit_events::{
    AuditEvent as _, AuditMetrics, AuditRowDropped, AuditRowsLost, AuditRowsWritten, AuditWriteRetried,
};
use super::storage::{self, NewExecution, Store};

/// Rows waiting to be written at most; beyond it a row is dropped and counted.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Rows written in one statement at most.
pub const MAX_BATCH: usize = 512;
/// Longest wait for more rows after the first of a batch (a flush, a full batch or the end of
/// the queue closes it sooner).
pub const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// Attempts to write a batch before its rows are counted as lost.
const ATTEMPTS: u32 = 5;
/// First delay between attempts; doubles after each.
const RETRY_DELAY: Duration = Duration::from_millis(100);
const _: () = assert!(MAX_BATCH <= storage::MAX_ROWS_PER_INSERT, "a batch is one statement");

enum Message {
    Row(Box<NewExecution>),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit queue. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    metrics: AuditMetrics,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("capacity", &self.tx.max_capacity()).finish()
    }
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime. Rows are counted by outcome
    /// (`written`, `dropped_queue_full`, `dropped_failed`) as `metamcp_audit_rows_total`.
    pub fn start(store: Store) -> Self {
        Self::start_with(store, AuditMetrics::new())
    }

    /// [`start`](Self::start), counting in `metrics` (shared with the retention task).
    pub fn start_with(store: Store, metrics: AuditMetrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(write_loop(store, rx, metrics.clone()));
        Self { tx, metrics }
    }

    /// `metamcp_audit_rows_total{outcome}`, to register with the telemetry.
    pub fn counter(&self) -> Box<dyn prometheus::core::Collector> {
        self.metrics.rows_collector()
    }

    /// The audit metrics this log counts in.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    /// Queues a row; never waits. A full queue drops the row and counts it.
    pub fn record(&self, row: NewExecution) {
        if self.tx.try_send(Message::Row(Box::new(row))).is_err() {
            AuditRowDropped.emit(&self.metrics);
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

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Message>, metrics: AuditMetrics) {
    let mut batch: Vec<NewExecution> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut now = take(first, &mut batch, &mut waiting);
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while !now && batch.len() < MAX_BATCH {
            tokio::select! {
                biased;
                message = rx.recv() => match message {
                    Some(message) => now = take(message, &mut batch, &mut waiting),
                    // Shutting down: write what is here.
                    None => break,
                },
                () = &mut window => break,
            }
        }
        if !batch.is_empty() {
            write_batch(&store, std::mem::take(&mut batch), &metrics).await;
            batch = Vec::with_capacity(MAX_BATCH);
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Adds `message` to the batch being gathered; returns whether it must be written now (a flush
/// waits for it).
fn take(message: Message, batch: &mut Vec<NewExecution>, waiting: &mut Vec<oneshot::Sender<()>>) -> bool {
    match message {
        Message::Row(row) => {
            batch.push(*row);
            false
        }
        Message::Flush(done) => {
            waiting.push(done);
            true
        }
    }
}

async fn write_batch(store: &Store, batch: Vec<NewExecution>, metrics: &AuditMetrics) {
    let count = batch.len() as u64;
    let batch = std::sync::Arc::new(batch);
    let mut delay = RETRY_DELAY;
    for attempt in 1..=ATTEMPTS {
        let rows_to_write = batch.clone();
        // One statement (a batch is never larger than one `INSERT` takes): atomic without a
        // transaction around it.
        let written = store.run(move |c| storage::insert_executions(c, &rows_to_write)).await;
        match written {
            Ok(_) => {
                AuditRowsWritten { rows: count }.emit(metrics);
                return;
            }
            Err(err) if attempt < ATTEMPTS && err.is_unavailable() => {
                AuditWriteRetried { attempt, error: &err }.emit(metrics);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(err) => {
                AuditRowsLost { rows: count, error: &err }.emit(metrics);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The writer against a real SQLite file that another connection locks: the writer's
    //! retries, its count of rows lost, its bounded queue, and `flush`.

    use std::time::{Duration, Instant};

    use diesel::{Connection as _, RunQueryDsl as _};
    use metamcp_telemetry_actors::ingress::MetricEvent;

    use super::*;
    use crate::config::DatabaseSettings;
    use metamcp_telemetry::{TelemetryManager, TestTelemetry};

    /// A SQLite store in a temporary directory, recording its queries.
    struct Db {
        store: Store,
        recorded: TestTelemetry,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Db {
        fn open() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.db");
            let settings = DatabaseSettings {
                url: format!("sqlite://{}", path.display()),
                pool_size: 2,
                connect_timeout: Duration::from_secs(5),
                // A locked database answers "database is locked" at once.
                busy_timeout: Duration::from_millis(10),
            };
            let (telemetry, recorded) = TelemetryManager::for_testing();
            let store = Store::open(&settings, &telemetry).unwrap();
            Self { store, recorded, path, _dir: dir }
        }

        /// Holds the database's write lock, as another writer would, until dropped.
        fn lock(&self) -> WriteLock {
            let mut conn = diesel::SqliteConnection::establish(&self.path.display().to_string()).unwrap();
            diesel::sql_query("BEGIN EXCLUSIVE").execute(&mut conn).unwrap();
            WriteLock(conn)
        }

        /// Queries that failed so far (the writer's attempts that reached the database).
        fn failed_queries(&self) -> usize {
            self.recorded
                .metric_events()
                .iter()
                .filter(|event| matches!(event, MetricEvent::DbQuery { success: false, .. }))
                .count()
        }

        async fn rows_in_table(&self) -> i64 {
            self.store
                .run(|c| storage::list_executions(c, &storage::ExecutionFilter::default(), storage::Page::ALL))
                .await
                .unwrap()
                .total
        }
    }

    struct WriteLock(diesel::SqliteConnection);

    impl Drop for WriteLock {
        fn drop(&mut self) {
            let _ = diesel::sql_query("ROLLBACK").execute(&mut self.0);
        }
    }

    fn row(i: usize) -> NewExecution {
        NewExecution {
            endpoint: Some("default".to_owned()),
            tool_name: format!("tool-{i}"),
            success: true,
            duration_ms: 1.0,
            error_message: None,
            trace_id: None,
        }
    }

    fn outcome(audit: &AuditLog, outcome: &str) -> u64 {
        audit.metrics.rows(outcome)
    }

    /// Waits (bounded) until `condition` holds, letting the runtime run meanwhile.
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn rows_refused_for_a_moment_are_retried_and_written_and_flush_waits_for_them() {
        let db = Db::open();
        let audit = AuditLog::start(db.store.clone());
        let lock = db.lock();
        for i in 0..3 {
            audit.record(row(i));
        }
        eventually("a first attempt refused by the lock", || db.failed_queries() >= 1).await;
        // Not lost: retrying. A flush waits for the rows queued before it.
        let mut flush = tokio::spawn({
            let audit = audit.clone();
            async move { audit.flush(Duration::from_secs(30)).await }
        });
        let early = tokio::time::timeout(Duration::from_millis(200), &mut flush).await;
        assert!(
            early.is_err(),
            "the flush resolved while the database was locked: written {}, dropped_failed {} (a refused \
             batch is retried, and a flush waits for it)",
            outcome(&audit, "written"),
            outcome(&audit, "dropped_failed")
        );
        assert_eq!((outcome(&audit, "written"), outcome(&audit, "dropped_failed")), (0, 0));
        drop(lock);
        flush.await.unwrap();
        assert_eq!(outcome(&audit, "written"), 3, "written by a later attempt");
        assert_eq!(outcome(&audit, "dropped_failed"), 0);
        assert_eq!(db.rows_in_table().await, 3, "the flush resolved once the rows were in the table");
    }

    #[tokio::test]
    async fn rows_refused_at_every_attempt_are_counted_as_lost() {
        let db = Db::open();
        let audit = AuditLog::start(db.store.clone());
        let lock = db.lock();
        audit.record(row(0));
        audit.record(row(1));
        // A flush gives up at its timeout while the writer still retries.
        let started = Instant::now();
        audit.flush(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "the flush outlived its timeout");
        assert_eq!((outcome(&audit, "written"), outcome(&audit, "dropped_failed")), (0, 0), "still retrying");
        // The attempts run out (backoff 100 ms doubling, five attempts: about 1.5 s).
        audit.flush(Duration::from_secs(30)).await;
        assert_eq!(outcome(&audit, "dropped_failed"), 2, "both rows counted as lost");
        assert_eq!(outcome(&audit, "written"), 0);
        assert!(db.failed_queries() >= 2, "the first and the last attempt reached the database");
        drop(lock);
        // The writer goes on with the next rows.
        audit.record(row(2));
        audit.flush(Duration::from_secs(30)).await;
        assert_eq!(outcome(&audit, "written"), 1);
        assert_eq!(db.rows_in_table().await, 1);
    }

    #[test]
    fn a_full_queue_drops_the_arriving_row_and_counts_it() {
        let db = Db::open();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The writer task runs only while the runtime is driven: the queue fills up meanwhile.
        let audit = runtime.block_on(async { AuditLog::start(db.store.clone()) });
        for i in 0..QUEUE_CAPACITY + 3 {
            audit.record(row(i));
        }
        assert_eq!(outcome(&audit, "dropped_queue_full"), 3);
        runtime.block_on(audit.flush(Duration::from_secs(120)));
        assert_eq!(outcome(&audit, "written"), QUEUE_CAPACITY as u64, "every row the queue took is written");
        assert_eq!(runtime.block_on(db.rows_in_table()), QUEUE_CAPACITY as i64);
        assert_eq!(outcome(&audit, "dropped_queue_full"), 3);
    }
}
