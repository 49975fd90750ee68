//! Middleware overhead in-process (`actix_web::test`, no socket): the same trivial app bare and
//! wrapped by `TelemetryManager::middleware`, in one run, so the difference is the middleware.
//!
//! `cargo bench -p metamcp-telemetry --bench middleware`
//!
//! Last figures, medians from one run (2-core AMD EPYC VM, rustc 1.95, bench profile). The
//! pipeline's threads (span encoding, metric folding, failing exports to a closed port) share
//! the two cores with the measured thread, so the added cost includes their interference.
//!
//! | bench | median | added |
//! |---|---|---|
//! | bare | 3.20 µs | |
//! | disabled manager (request id only) | 3.29 µs | +0.10 µs |
//! | instrumented (span sampled and exported, metrics) | 5.84 µs | +2.64 µs |
//! | instrumented, sampler always_off (metrics, request id, context) | 5.27 µs | +2.07 µs |
//! | bare with a `traceparent` header | 3.60 µs | |
//! | instrumented with a `traceparent` header | 7.31 µs | +3.71 µs |
//!
//! Those wall-clock figures predate the cheaper client address, `traceparent` parse and span name
//! (issue 14); a run of both builds back to back at a load average of 11 gave nothing readable.
//! Instructions added on the request thread over the bare app (callgrind, the
//! `middleware_instructions` example, slope between 1 000 and 5 000 requests, system allocator),
//! same machine, same day:
//!
//! | middleware | before | after |
//! |---|---|---|
//! | instrumented (span sampled and exported, metrics) | +9 238 | +7 084 |
//! | instrumented, sampler always_off | +8 285 | +6 198 |
//! | instrumented with a `traceparent` header | +11 185 | +8 360 |
//! | disabled manager (request id only) | +1 124 | +1 124 |
//!
//! Of what is left with a sampled span, roughly 2 800 are the SDK span itself (start with the
//! sampler, the `SynchronizedSpan`, attribute updates, end and the hand-off to the span buffer),
//! ~430 putting the request id in the context (`with_value`, a map per request, dropped at the
//! end), ~330 generating a request id, ~260 echoing it in the response.

use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App, HttpResponse};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use metamcp_telemetry::TelemetryManager;

#[path = "common.rs"]
mod common;

async fn handler(path: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().body(path.into_inner())
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One bench: a GET through `app`, with or without a `traceparent` header.
fn bench_get<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    system: &actix_rt::SystemRunner,
    name: &str,
    app: &S,
    traceparent: bool,
) where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            system.block_on(async {
                let mut req = test::TestRequest::get().uri("/items/42");
                if traceparent {
                    req = req.insert_header(("traceparent", TRACEPARENT));
                }
                test::call_service(app, req.to_request()).await
            })
        })
    });
}

fn overhead(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let settings = common::bench_settings();
    let manager = common::start(&system, &settings);
    let mut unsampled_settings = settings.clone();
    unsampled_settings.telemetry.sampler = metamcp_telemetry::settings::Sampler::AlwaysOff;
    let unsampled = common::start(&system, &unsampled_settings);

    let bare = system.block_on(test::init_service(App::new().route("/items/{id}", web::get().to(handler))));
    let instrumented = system.block_on(test::init_service(
        App::new().wrap(manager.middleware()).route("/items/{id}", web::get().to(handler)),
    ));
    let unsampled_app = system.block_on(test::init_service(
        App::new().wrap(unsampled.middleware()).route("/items/{id}", web::get().to(handler)),
    ));

    let disabled = TelemetryManager::disabled();
    let disabled_app = system.block_on(test::init_service(
        App::new().wrap(disabled.middleware()).route("/items/{id}", web::get().to(handler)),
    ));
    let mut group = c.benchmark_group("middleware");
    group.measurement_time(Duration::from_secs(8));
    bench_get(&mut group, &system, "bare", &bare, false);
    bench_get(&mut group, &system, "bare_with_traceparent", &bare, true);
    bench_get(&mut group, &system, "instrumented", &instrumented, false);
    bench_get(&mut group, &system, "instrumented_unsampled", &unsampled_app, false);
    bench_get(&mut group, &system, "disabled", &disabled_app, false);
    bench_get(&mut group, &system, "instrumented_with_traceparent", &instrumented, true);
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
