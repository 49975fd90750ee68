//! Saturation: finished spans generated in a tight loop on one thread at increasing target rates,
//! through (a) the SDK's `BatchSpanProcessor` with its defaults (queue 2048, batches of 512, one
//! export at a time) and the OTLP/gRPC exporter, and (b) our pipeline with its defaults — both to
//! the receiver, which says how many arrived. Each step starts a fresh pipeline and shuts it down
//! (which exports what is queued) before counting, so only what was dropped is missing.

use std::time::{Duration, Instant};

use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::apps::{ours_settings, BoxError};
use crate::receiver::Receiver;
use crate::report::{count, Table};

/// Spans created between two looks at the clock.
const CHUNK: u64 = 64;

/// One pipeline at one rate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Step {
    /// Spans ended.
    pub created: u64,
    /// Spans the receiver got.
    pub received: u64,
    /// Achieved creation rate, spans/s.
    pub rate: f64,
}

impl Step {
    fn lost(&self) -> u64 {
        self.created.saturating_sub(self.received)
    }
}

/// Ends spans on this thread at `rate` per second (0: as fast as possible) for `duration`.
fn generate(tracer: &SdkTracer, rate: u64, duration: Duration) -> (u64, f64) {
    let started = Instant::now();
    let mut created = 0u64;
    loop {
        for _ in 0..CHUNK {
            let mut span = tracer
                .span_builder("GET /items/{id}")
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("http.route", "/items/{id}"),
                    KeyValue::new("http.response.status_code", 200),
                    KeyValue::new("item.id", created as i64),
                ])
                .start(tracer);
            span.end();
            created += 1;
        }
        let elapsed = started.elapsed();
        if elapsed >= duration {
            return (created, created as f64 / elapsed.as_secs_f64());
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(created as f64 / rate as f64);
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
}

fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "max".to_owned()
    } else {
        rate.to_string()
    }
}

fn sdk_step(receiver: &Receiver, rate: u64, duration: Duration) -> Result<Step, BoxError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let service = format!("sat-sdk-{}", rate_label(rate));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("sat-otlp").enable_all().build()?;
    let provider = {
        let _entered = runtime.enter();
        let exporter =
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(receiver.endpoint()).build()?;
        SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_resource(Resource::builder().with_service_name(service.clone()).build())
            .build()
    };
    let tracer = provider.tracer("saturation");
    let (created, achieved) = generate(&tracer, rate, duration);
    let _ = provider.shutdown();
    let received = receiver.wait_for_spans(&service, created, Duration::from_secs(2), Duration::from_secs(30));
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(Step { created, received, rate: achieved })
}

fn ours_step(receiver: &Receiver, rate: u64, duration: Duration) -> Result<Step, BoxError> {
    let service = format!("sat-ours-{}", rate_label(rate));
    let mut settings = ours_settings(&service, &receiver.endpoint(), 0);
    settings.prometheus.enabled = false;
    let system = actix_rt::System::new();
    let manager = system.block_on(async { TelemetryManager::initialize(&settings) })?;
    let tracer = manager.tracer().ok_or("telemetry is disabled")?.clone();
    let (created, achieved) = generate(&tracer, rate, duration);
    system.block_on(manager.shutdown());
    let received = receiver.wait_for_spans(&service, created, Duration::from_secs(2), Duration::from_secs(30));
    Ok(Step { created, received, rate: achieved })
}

fn step_cells(step: &Step) -> [String; 3] {
    [
        count(step.rate),
        format!("{} / {}", count(step.received as f64), count(step.created as f64)),
        format!("{} ({:.1} %)", count(step.lost() as f64), step.lost() as f64 / step.created.max(1) as f64 * 100.0),
    ]
}

/// `saturation`: each target rate (0: as fast as possible) for `duration`, SDK then ours.
pub fn saturation(receiver: &Receiver, rates: &[u64], duration: Duration) -> Result<(), BoxError> {
    let mut results = Vec::new();
    for &rate in rates {
        eprintln!("saturation: {} spans/s for {} s…", rate_label(rate), duration.as_secs_f64());
        let sdk = sdk_step(receiver, rate, duration)?;
        let ours = ours_step(receiver, rate, duration)?;
        eprintln!(
            "saturation:   sdk {} / {} received, ours {} / {} received",
            sdk.received, sdk.created, ours.received, ours.created
        );
        results.push((rate, sdk, ours));
    }

    println!(
        "\n### Saturation: spans ended on one thread for {} s per step, default settings of each pipeline\n",
        duration.as_secs_f64()
    );
    let mut table = Table::new(&[
        "target spans/s",
        "SDK achieved/s",
        "SDK received / created",
        "SDK lost",
        "ours achieved/s",
        "ours received / created",
        "ours lost",
    ]);
    for (rate, sdk, ours) in &results {
        let mut row = vec![rate_label(*rate)];
        row.extend(step_cells(sdk));
        row.extend(step_cells(ours));
        table.row(row);
    }
    println!("{}", table.render());
    match results.iter().find(|(_, sdk, _)| sdk.lost() > 0) {
        Some((rate, sdk, ours)) => println!(
            "The SDK's BatchSpanProcessor first drops at a target of {} spans/s (achieved {}/s): it lost {:.1} % \
             there; ours lost {:.1} % at the same target (achieved {}/s).\n",
            rate_label(*rate),
            count(sdk.rate),
            sdk.lost() as f64 / sdk.created.max(1) as f64 * 100.0,
            ours.lost() as f64 / ours.created.max(1) as f64 * 100.0,
            count(ours.rate),
        ),
        None => println!("The SDK's BatchSpanProcessor dropped nothing at these rates.\n"),
    }
    if let Some((rate, _, ours)) = results.iter().find(|(_, _, ours)| ours.lost() > 0) {
        println!(
            "Ours first drops at a target of {} spans/s (achieved {}/s): {:.1} % lost.\n",
            rate_label(*rate),
            count(ours.rate),
            ours.lost() as f64 / ours.created.max(1) as f64 * 100.0
        );
    }
    Ok(())
}
