//! The receiver's logs side: `LogsService/Export` and `POST /v1/logs` decode into flattened
//! records with their resource and scope, and the behaviour switches apply to logs as to the
//! other signals.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use support::{Behavior, Signal, TestCollector, Transport};

const WAIT: Duration = Duration::from_secs(10);

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// Two scopes, three records: one in a trace, one with an event name.
fn logs() -> ExportLogsServiceRequest {
    let record = |body: &str, severity: i32, text: &str| LogRecord {
        time_unix_nano: 1_000,
        observed_time_unix_nano: 2_000,
        severity_number: severity,
        severity_text: text.to_owned(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.to_owned())) }),
        attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
        ..Default::default()
    };
    let mut traced = record("in a trace", 17, "ERROR");
    traced.trace_id = vec![0xab; 16];
    traced.span_id = vec![0xcd; 8];
    traced.flags = 1;
    let mut access = record("mcp request", 9, "INFO");
    access.event_name = "mcp.access".to_owned();
    let scope = |name: &str, records: Vec<LogRecord>| ScopeLogs {
        scope: Some(InstrumentationScope { name: name.to_owned(), ..Default::default() }),
        log_records: records,
        schema_url: String::new(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue("svc".into()))],
                ..Default::default()
            }),
            scope_logs: vec![scope("app::a", vec![traced, record("plain", 5, "DEBUG")]), scope("app::b", vec![access])],
            schema_url: String::new(),
        }],
    }
}

async fn export(collector: &TestCollector) -> u16 {
    match collector.transport() {
        Transport::Grpc => {
            let mut client = LogsServiceClient::connect(collector.endpoint()).await.expect("connect to the collector");
            match client.export(logs()).await {
                Ok(_) => 200,
                Err(status) => status.code() as u16,
            }
        }
        Transport::Http => {
            let response = reqwest::Client::new()
                .post(collector.logs_url())
                .header("content-type", "application/x-protobuf")
                .body(logs().encode_to_vec())
                .send()
                .await
                .expect("POST /v1/logs");
            let status = response.status().as_u16();
            if status == 200 {
                ExportLogsServiceResponse::decode(response.bytes().await.expect("body")).expect("a logs response");
            }
            status
        }
    }
}

async fn records_are_flattened_with_resource_and_scope(transport: Transport) {
    let collector = TestCollector::start(transport);
    assert_eq!(export(&collector).await, 200, "{transport}");
    let records = collector.wait_for_logs_async(3, WAIT).await;
    assert_eq!(records.len(), 3);
    assert_eq!(collector.log_requests().len(), 1);
    assert_eq!(collector.requests()[0].signal, Signal::Logs);
    let bodies: Vec<(String, String, String)> =
        records.iter().map(|r| (r.scope_name.clone(), r.body(), r.severity_text().to_owned())).collect();
    assert_eq!(
        bodies,
        [
            ("app::a".into(), "in a trace".into(), "ERROR".into()),
            ("app::a".into(), "plain".into(), "DEBUG".into()),
            ("app::b".into(), "mcp request".into(), "INFO".into()),
        ]
    );
    assert_eq!(records[0].trace_id_hex(), Some("ab".repeat(16)));
    assert_eq!(records[0].span_id_hex(), Some("cd".repeat(8)));
    assert_eq!((records[1].trace_id_hex(), records[1].span_id_hex()), (None, None));
    assert_eq!(records[2].event_name(), "mcp.access");
    assert_eq!(records[2].int_attr("attempt"), Some(2));
    assert!(records.iter().all(|r| r.resource_attr("service.name").as_deref() == Some("svc")));
    assert_eq!(collector.log_record_count(), 3);
}

#[tokio::test]
async fn grpc_log_records_are_flattened_with_resource_and_scope() {
    records_are_flattened_with_resource_and_scope(Transport::Grpc).await;
}

#[tokio::test]
async fn http_log_records_are_flattened_with_resource_and_scope() {
    records_are_flattened_with_resource_and_scope(Transport::Http).await;
}

/// `fail_next` refuses a logs export on either transport and records nothing; the next is taken.
#[tokio::test]
async fn failure_switches_apply_to_logs() {
    for (transport, refused) in [(Transport::Grpc, 14), (Transport::Http, 503)] {
        let collector = TestCollector::start(transport);
        collector.fail_next(1, Behavior::FailGrpc(tonic::Code::Unavailable));
        assert_eq!(export(&collector).await, refused, "{transport}");
        assert_eq!((collector.log_record_count(), collector.rejected_count()), (0, 1));
        assert_eq!(export(&collector).await, 200, "{transport}");
        collector.wait_for_logs_async(3, WAIT).await;
    }
}
