//! Instructions the middleware adds per request, for callgrind: N `GET /items/{id}` through
//! `actix_web::test` (no socket), on a bare app or one wrapped by `TelemetryManager::middleware`.
//! The request thread is the main thread, so with `--separate-threads=yes` its part of the
//! profile is the cost a request pays; the pipeline's threads are in the other parts.
//!
//! ```text
//! cargo build --release -p metamcp-telemetry --example middleware_instructions
//! for n in 1000 5000; do
//!   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=cg.$n \
//!     target/release/examples/middleware_instructions instrumented $n
//! done
//! # per request = (totals of cg.5000-01 − totals of cg.1000-01) / 4000
//! ```
//!
//! Modes: `bare`, `disabled` (a disabled manager), `instrumented`, `unsampled` (sampler
//! `always_off`); a third argument `traceparent` adds a sampled W3C parent to every request.
//! Requests come from 10.1.2.3, so `client.address` is recorded. The system allocator is used.

use actix_web::{test, web, App, HttpResponse};
use metamcp_telemetry::settings::{Sampler, Settings};
use metamcp_telemetry::TelemetryManager;

async fn handler(path: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().body(path.into_inner())
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn request(traceparent: bool) -> actix_http::Request {
    let mut req = test::TestRequest::get().uri("/items/42").peer_addr(([10, 1, 2, 3], 4567).into());
    if traceparent {
        req = req.insert_header(("traceparent", TRACEPARENT));
    }
    req.to_request()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: middleware_instructions bare|disabled|instrumented|unsampled N [traceparent]";
    let mode = args.get(1).map(String::as_str).unwrap_or("instrumented");
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).expect(usage);
    let traceparent = args.get(3).is_some_and(|arg| arg == "traceparent");
    let system = actix_rt::System::new();
    let mut settings = Settings::default();
    settings.prometheus.enabled = false;
    settings.telemetry.install_global = false;
    settings.exporter.endpoint = "http://127.0.0.1:9".to_owned();
    settings.span_buffer.queue_capacity = 1 << 16;
    let manager = match mode {
        "bare" => None,
        "disabled" => Some(TelemetryManager::disabled()),
        "instrumented" | "unsampled" => {
            if mode == "unsampled" {
                settings.telemetry.sampler = Sampler::AlwaysOff;
            }
            Some(system.block_on(async { TelemetryManager::initialize(&settings) }).expect("telemetry starts"))
        }
        _ => panic!("{usage}"),
    };
    system.block_on(async {
        match &manager {
            Some(manager) => {
                let app = App::new().wrap(manager.middleware()).route("/items/{id}", web::get().to(handler));
                let app = test::init_service(app).await;
                for _ in 0..count {
                    std::hint::black_box(test::call_service(&app, request(traceparent)).await);
                }
            }
            None => {
                let app = test::init_service(App::new().route("/items/{id}", web::get().to(handler))).await;
                for _ in 0..count {
                    std::hint::black_box(test::call_service(&app, request(traceparent)).await);
                }
            }
        }
    });
}
