//! In-process figures: no socket. Each build as an `actix_web::test` service in this process,
//! timed over batches of requests interleaved bare, ours, eco; the median per request of each.
//! The spans go to the receiver as in the socket runs; each pipeline is flushed (untimed) after
//! its batch, and the order of the builds rotates from batch to batch.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web};
use metamcp_telemetry::TelemetryManager;

use crate::apps::{bare_app, eco_app, ours_app, ours_settings, BoxError, Eco};
use crate::load::PATH;
use crate::procstat;
use crate::receiver::Receiver;
use crate::report::{count, median, Table};

/// Service names of the in-process builds (apart from the socket runs').
const OURS_SERVICE: &str = "inproc-ours";
const ECO_SERVICE: &str = "inproc-eco";
/// Bound of the untimed flush after each batch.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Wall-clock and on-CPU time of the measuring thread for one batch.
#[derive(Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

async fn time_batch<S, B>(service: &S, requests: usize) -> Result<Timing, BoxError>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let cpu_before = procstat::thread_cpu_time()?;
    let started = Instant::now();
    for _ in 0..requests {
        let response = test::call_service(service, test::TestRequest::get().uri(PATH).to_request()).await;
        if !response.status().is_success() {
            return Err(format!("GET {PATH} answered {}", response.status()).into());
        }
    }
    let wall = started.elapsed();
    Ok(Timing { wall, cpu: procstat::thread_cpu_time()? - cpu_before })
}

/// `inproc`: `batches` batches of `requests` requests through each build (after one warm-up
/// batch each); prints µs per request and the cost added over bare.
pub fn inproc(receiver: &Receiver, requests: usize, batches: usize) -> Result<(), BoxError> {
    let system = actix_rt::System::new();
    // The library's defaults: what the middleware costs as a user gets it.
    let settings = ours_settings(OURS_SERVICE, &receiver.endpoint(), 0);
    let manager = system.block_on(async { TelemetryManager::initialize(&settings) })?;
    let mut eco = Eco::start(ECO_SERVICE, &receiver.endpoint())?;

    let bare = system.block_on(test::init_service(bare_app(web::Data::new(prometheus::Registry::new()))));
    let ours = system.block_on(test::init_service(ours_app(&manager)));
    let eco_service = system.block_on(test::init_service(eco_app(&eco.prom)));

    let mut wall: [Vec<f64>; 3] = Default::default();
    let mut cpu: [Vec<f64>; 3] = Default::default();
    for batch in 0..=batches {
        // The order rotates from batch to batch (bare ours eco, ours eco bare, eco bare ours), so
        // no build always runs first or right after another's. Each build's batch is followed by
        // an untimed flush of its pipeline, which returns once the receiver has answered for every
        // span, so one build's export does not run during the next build's timed batch.
        for i in (0..3).map(|k| (k + batch) % 3) {
            let timing = match i {
                0 => system.block_on(time_batch(&bare, requests))?,
                1 => {
                    let timing = system.block_on(time_batch(&ours, requests))?;
                    system.block_on(manager.force_flush(FLUSH_TIMEOUT))?;
                    timing
                }
                _ => {
                    let timing = system.block_on(time_batch(&eco_service, requests))?;
                    eco.tracer_provider.force_flush()?;
                    timing
                }
            };
            if batch > 0 {
                wall[i].push(timing.wall.as_secs_f64() * 1e6 / requests as f64);
                cpu[i].push(timing.cpu.as_secs_f64() * 1e6 / requests as f64);
            }
        }
    }
    let wall_median = [median(&wall[0]), median(&wall[1]), median(&wall[2])];
    let cpu_median = [median(&cpu[0]), median(&cpu[1]), median(&cpu[2])];

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
    println!(
        "Wall: elapsed time of the batch on the measuring thread. On-CPU: that thread's own CPU time \
         (`/proc/thread-self/schedstat`), without the time it waited while the pipelines' threads or the \
         receiver held the cores.\n"
    );
    let mut table = Table::new(&[
        "build",
        "wall µs / req",
        "added",
        "min–max",
        "on-CPU µs / req",
        "added",
        "min–max",
        "spans received / sent",
    ]);
    let names = ["bare", "ours", "eco"];
    let received = [None, Some(ours_received), Some(eco_received)];
    let range = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        format!("{min:.2}–{max:.2}")
    };
    let added = |i: usize, medians: &[f64; 3]| {
        if i == 0 {
            "—".to_owned()
        } else {
            format!("{:+.2} µs", medians[i] - medians[0])
        }
    };
    for i in 0..3 {
        table.row(vec![
            names[i].to_owned(),
            format!("{:.2}", wall_median[i]),
            added(i, &wall_median),
            range(&wall[i]),
            format!("{:.2}", cpu_median[i]),
            added(i, &cpu_median),
            range(&cpu[i]),
            received[i].map_or("—".to_owned(), |r| format!("{} / {}", count(r as f64), count(sent as f64))),
        ]);
    }
    println!("{}", table.render());
    for (what, medians) in [("wall", wall_median), ("on-CPU", cpu_median)] {
        let ours_added = medians[1] - medians[0];
        let eco_added = medians[2] - medians[0];
        println!(
            "Added cost ({what}): ours {ours_added:+.2} µs, eco {eco_added:+.2} µs; eco adds {:.1}× what ours adds.",
            eco_added / ours_added
        );
    }
    println!();
    Ok(())
}
