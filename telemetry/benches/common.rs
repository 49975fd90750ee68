//! Shared by the benches: a telemetry manager on a real pipeline, no Prometheus listener, and an
//! OTLP endpoint nobody listens on (exports fail fast and are retried off the measured thread).

use metamcp_telemetry::settings::Settings;
use metamcp_telemetry::TelemetryManager;

/// Bench settings: large queues, no global provider, no metrics listener, a closed OTLP port.
pub fn bench_settings() -> Settings {
    let mut settings = Settings::default();
    settings.prometheus.enabled = false;
    settings.telemetry.install_global = false;
    settings.exporter.endpoint = "http://127.0.0.1:9".to_owned();
    settings.span_buffer.queue_capacity = 1 << 16;
    settings
}

/// A running manager with `settings` inside `system`.
pub fn start(system: &actix_rt::SystemRunner, settings: &Settings) -> TelemetryManager {
    system.block_on(async { TelemetryManager::initialize(settings) }).expect("telemetry starts")
}
