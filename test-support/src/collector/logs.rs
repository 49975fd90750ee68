//! The log side of what the [`TestCollector`](super::TestCollector) recorded: decoded
//! `ExportLogsServiceRequest`s and [`ReceivedLog`], one record flattened with its resource and
//! scope.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::received::{any_value_string, attr_map, find, hex, Received};
use super::TestCollector;

impl Received {
    /// Decoded log export requests whose data was recorded, in arrival order.
    pub fn log_requests(&self) -> &[ExportLogsServiceRequest] {
        &self.log_requests
    }

    /// Number of log records recorded, without building [`ReceivedLog`]s.
    pub fn log_record_count(&self) -> usize {
        self.log_requests
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len())
            .sum()
    }

    /// All recorded log records, flattened, in arrival order.
    pub fn log_records(&self) -> Vec<ReceivedLog> {
        let mut out = Vec::new();
        for request in &self.log_requests {
            for rl in &request.resource_logs {
                let resource = rl.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
                for sl in &rl.scope_logs {
                    let scope_name = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    for record in &sl.log_records {
                        out.push(ReceivedLog {
                            scope_name: scope_name.clone(),
                            resource: resource.clone(),
                            record: record.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

/// One recorded log record with its resource and instrumentation scope.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    /// Instrumentation scope name.
    pub scope_name: String,
    /// Resource attributes of the batch the record came in.
    pub resource: Vec<KeyValue>,
    /// The record exactly as decoded.
    pub record: LogRecord,
}

impl ReceivedLog {
    /// The body in string form, whatever its type (see [`any_value_string`]); empty without one.
    pub fn body(&self) -> String {
        self.record.body.as_ref().map(any_value_string).unwrap_or_default()
    }

    /// `severity_text`.
    pub fn severity_text(&self) -> &str {
        &self.record.severity_text
    }

    /// `severity_number`.
    pub fn severity_number(&self) -> i32 {
        self.record.severity_number
    }

    /// `event_name` (empty when the record names none).
    pub fn event_name(&self) -> &str {
        &self.record.event_name
    }

    /// Trace id as 32 lower-case hex digits; `None` when the record carries none.
    pub fn trace_id_hex(&self) -> Option<String> {
        (!self.record.trace_id.is_empty()).then(|| hex(&self.record.trace_id))
    }

    /// Span id as 16 lower-case hex digits; `None` when the record carries none.
    pub fn span_id_hex(&self) -> Option<String> {
        (!self.record.span_id.is_empty()).then(|| hex(&self.record.span_id))
    }

    /// Attribute `key` in string form, whatever its type.
    pub fn attr(&self, key: &str) -> Option<String> {
        find(&self.record.attributes, key).map(any_value_string)
    }

    /// Attribute `key` if it is an integer.
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        match find(&self.record.attributes, key)?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    /// All attributes in string form, sorted by key.
    pub fn attrs(&self) -> BTreeMap<String, String> {
        attr_map(&self.record.attributes)
    }

    /// Resource attribute `key` in string form.
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find(&self.resource, key).map(any_value_string)
    }
}

impl TestCollector {
    /// Recorded log export requests, in arrival order.
    pub fn log_requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.snapshot(|r| r.log_requests().to_vec())
    }

    /// All recorded log records, flattened (with resource and scope), in arrival order.
    pub fn log_records(&self) -> Vec<ReceivedLog> {
        self.snapshot(Received::log_records)
    }

    /// Number of recorded log records.
    pub fn log_record_count(&self) -> usize {
        self.snapshot(Received::log_record_count)
    }

    /// Block until at least `n` log records were recorded and return all of them; panics after
    /// `timeout` saying what arrived.
    pub fn wait_for_logs(&self, n: usize, timeout: Duration) -> Vec<ReceivedLog> {
        if !self.wait_for(timeout, |r| r.log_record_count() >= n) {
            self.timed_out(timeout, &format!("{n} log record(s)"));
        }
        self.log_records()
    }

    /// Async [`wait_for_logs`](Self::wait_for_logs).
    pub async fn wait_for_logs_async(&self, n: usize, timeout: Duration) -> Vec<ReceivedLog> {
        if !self.wait_for_async(timeout, |r| r.log_record_count() >= n).await {
            self.timed_out(timeout, &format!("{n} log record(s)"));
        }
        self.log_records()
    }
}
