//! The log door: a bounded crossbeam channel fed with `try_send`, bounded by count and by bytes,
//! beside the span and metric doors of [`crate::ingress`].

use std::fmt;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::ingress::{Door, QueueBytes, Wake};
use crate::log_record::{estimated_size, LogRecord};
use crate::self_metrics::{SelfMetrics, Signal};

/// Creates the log record channel: a door that wakes the buffer once `wake_threshold` records
/// wait (a full batch), the receiving end, the wake-up and the byte account.
pub fn log_channel(
    capacity: usize,
    max_bytes: usize,
    wake_threshold: usize,
    metrics: Arc<SelfMetrics>,
) -> (LogIngress, Receiver<LogRecord>, Arc<Wake>, Arc<QueueBytes>) {
    let (door, rx, wake) = Door::open(capacity, wake_threshold, Signal::Logs, &metrics);
    let bytes = Arc::new(QueueBytes::new(max_bytes));
    (LogIngress { door, bytes: bytes.clone() }, rx, wake, bytes)
}

/// Feeds log records in: `try_send` on a bounded crossbeam channel; never blocks.
#[derive(Clone)]
pub struct LogIngress {
    door: Door<LogRecord>,
    bytes: Arc<QueueBytes>,
}

impl fmt::Debug for LogIngress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogIngress").field("door", &self.door).field("bytes", &self.bytes.used()).finish()
    }
}

impl LogIngress {
    /// Hands a record to the log buffer; never blocks. Returns false when the record was
    /// dropped (queue full or bytes bound) — already counted in
    /// `{prefix}_dropped_total{signal="logs",reason="queue_full"}`.
    #[inline]
    pub fn submit(&self, record: LogRecord) -> bool {
        let size = estimated_size(&record);
        if !self.bytes.reserve(size) {
            self.door.refuse();
            return false;
        }
        let sent = self.door.send(record);
        if !sent {
            self.bytes.release(size);
        }
        sent
    }

    /// Records waiting in the channel.
    pub fn queued(&self) -> usize {
        self.door.queued()
    }

    /// Estimated bytes of the records waiting in the channel.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.used()
    }
}
