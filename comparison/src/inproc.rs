//! In-process figures: no socket. Each build as an `actix_web::test` service in this process,
//! timed over batches of requests interleaved bare, ours, eco; the median per request of each.
//! The spans go to the receiver as in the socket runs; each pipeline is flushed (untimed) after
//! its batch.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web};
use metamcp_telemetry::TelemetryManager;

use crate::apps::{bare_app, eco_app, ours_app, ours_settings, BoxError, Eco};
use crate::load::PATH;
use crate::receiver::Receiver;
use crate::report::{count, median, Table};

/// Service names of the in-process builds (apart from the socket runs').
const OURS_SERVICE: &str = "inproc-ours";
const ECO_SERVICE: &str = "inproc-eco";
/// Bound of the untimed flush after each batch.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

async fn time_batch<S, B>(service: &S, requests: usize) -> Result<Duration, BoxError>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let started = Instant::now();
    for _ in 0..requests {
        let response = test::call_service(service, test::TestRequest::get().uri(PATH).to_request()).await;
        if !response.status().is_success() {
            return Err(format!("GET {PATH} answered {}", response.status()).into());
        }
    }
    Ok(started.elapsed())
}

/// `inproc`: `batches` batches of `requests` requests through each build (after one warm-up
/// batch each); prints µs per request and the cost added over bare.
pub fn inproc(receiver: &Receiver, requests: usize, batches: usize) -> Result<(), BoxError> {
    let system = actix_rt::System::new();
    let settings = ours_settings(OURS_SERVICE, &receiver.endpoint(), 0);
    let manager = system.block_on(async { TelemetryManager::initialize(&settings) })?;
    let mut eco = Eco::start(ECO_SERVICE, &receiver.endpoint())?;

    let bare = system.block_on(test::init_service(bare_app(web::Data::new(prometheus::Registry::new()))));
    let ours = system.block_on(test::init_service(ours_app(&manager)));
    let eco_service = system.block_on(test::init_service(eco_app(&eco.prom)));

    let mut samples: [Vec<f64>; 3] = Default::default();
    for batch in 0..=batches {
        // Each build's batch is followed by an untimed flush of its pipeline, so the export of
        // one build's spans does not run during the next build's timed batch.
        let bare_time = system.block_on(time_batch(&bare, requests))?;
        let ours_time = system.block_on(time_batch(&ours, requests))?;
        system.block_on(manager.force_flush(FLUSH_TIMEOUT))?;
        let eco_time = system.block_on(time_batch(&eco_service, requests))?;
        eco.tracer_provider.force_flush()?;
        let timings = [bare_time, ours_time, eco_time];
        if batch == 0 {
            continue; // warm-up
        }
        for (sample, timing) in samples.iter_mut().zip(timings) {
            sample.push(timing.as_secs_f64() * 1e6 / requests as f64);
        }
    }
    let micros = [median(&samples[0]), median(&samples[1]), median(&samples[2])];

    let sent = ((batches + 1) * requests) as u64;
    let ours_received = receiver.wait_for_spans(OURS_SERVICE, sent, Duration::from_secs(3), Duration::from_secs(20));
    system.block_on(manager.shutdown());
    let eco_received = receiver.wait_for_spans(ECO_SERVICE, sent, Duration::from_secs(6), Duration::from_secs(20));
    eco.shutdown();
    let ours_received = ours_received.max(receiver.spans(OURS_SERVICE));
    let eco_received = eco_received.max(receiver.spans(ECO_SERVICE));

    println!(
        "\n### In-process (actix_web::test, no socket): median µs per request over {batches} batches of {} requests\n",
        count(requests as f64)
    );
    let mut table = Table::new(&["build", "µs / request", "added over bare", "min", "max", "spans received / sent"]);
    let names = ["bare", "ours", "eco"];
    let received = [None, Some(ours_received), Some(eco_received)];
    for i in 0..3 {
        let min = samples[i].iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples[i].iter().copied().fold(0.0, f64::max);
        table.row(vec![
            names[i].to_owned(),
            format!("{:.2}", micros[i]),
            if i == 0 { "—".to_owned() } else { format!("+{:.2} µs", micros[i] - micros[0]) },
            format!("{min:.2}"),
            format!("{max:.2}"),
            received[i].map_or("—".to_owned(), |r| format!("{} / {}", count(r as f64), count(sent as f64))),
        ]);
    }
    println!("{}", table.render());
    let ours_added = micros[1] - micros[0];
    let eco_added = micros[2] - micros[0];
    println!(
        "Added cost: ours {ours_added:+.2} µs, eco {eco_added:+.2} µs; eco adds {:.1}× what ours adds.\n",
        eco_added / ours_added
    );
    Ok(())
}
