//! The telemetry pipeline in-process: a `TelemetryManager` against the loopback OTLP receiver of
//! `metamcp-test-support`, its accounting, backpressure, metrics and test mode. One test binary
//! for the theme; each former test file is a module and keeps its tests' names.

mod accounting;
mod backpressure;
mod exemplars;
mod logs_export;
mod metrics_fidelity;
mod otlp_export;
mod tail_sampling;
mod test_mode;
