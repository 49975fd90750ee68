//! Side-by-side comparison of a bare actix-web app, the same app instrumented with
//! metamcp-telemetry, and the same app instrumented with the OpenTelemetry ecosystem stack.
//!
//! `cargo run --release --manifest-path comparison/Cargo.toml -- all` runs every measurement and
//! prints markdown tables; see comparison/README.md for what each subcommand measures.

mod apps;
mod inproc;
mod instructions;
mod load;
mod outage;
mod procstat;
mod receiver;
mod report;
mod saturation;
mod soak;

use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use apps::{BoxError, Kind};
use load::Wrk;
use receiver::Receiver;

/// The allocator of the service binary, for all three builds alike (`--features system-alloc`
/// compares them on the system allocator instead).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Target span rates of the saturation steps (0: as fast as one thread can).
const DEFAULT_RATES: &str = "10000,20000,30000,50000,75000,100000,150000,200000,300000,0";
/// Seconds per saturation step.
const DEFAULT_STEP: f64 = 2.0;

#[derive(Parser, Debug)]
#[command(about = "Bare vs metamcp-telemetry vs the OpenTelemetry ecosystem stack, side by side")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone, Copy)]
struct LoadArgs {
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds of bare, ours, eco.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

#[derive(Args, Debug, Clone, Copy)]
struct InprocArgs {
    /// Requests per timed batch.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Timed batches per build (after one warm-up batch).
    #[arg(long, default_value_t = 15)]
    batches: usize,
}

#[derive(Args, Debug, Clone)]
struct SaturationArgs {
    /// Target rates in spans/s, comma-separated; 0 is as fast as one thread can.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_RATES)]
    rates: Vec<u64>,
    /// Seconds per step.
    #[arg(long, default_value_t = DEFAULT_STEP)]
    step: f64,
}

#[derive(Args, Debug, Clone, Copy)]
struct OutageArgs {
    /// Seconds of each third.
    #[arg(long, default_value_t = 10)]
    third: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

#[derive(Args, Debug, Clone, Copy)]
struct SoakArgs {
    /// Minutes of load in all.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Share of the load with the receiver down, in the middle.
    #[arg(long, default_value_t = 0.5)]
    outage_share: f64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Spool bound for the run, in MiB (an outage at full load needs gigabytes).
    #[arg(long, default_value_t = 16384)]
    spool_max_mib: u64,
    /// Spooled batches replayed per second after the outage.
    #[arg(long, default_value_t = 500)]
    replay_batches_per_second: u32,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Everything below with its defaults (or the flags given), in order.
    All {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        inproc: InprocArgs,
        /// Seconds per saturation step.
        #[arg(long, default_value_t = DEFAULT_STEP)]
        step: f64,
        /// Seconds of each outage third.
        #[arg(long, default_value_t = 10)]
        third: u64,
    },
    /// Socket runs with wrk: req/s, latency, CPU per request, peak RSS, spans delivered.
    Load(LoadArgs),
    /// In-process cost per request (actix_web::test, no socket).
    Inproc(InprocArgs),
    /// The span rate at which each pipeline starts to drop.
    Saturation(SaturationArgs),
    /// Load through a receiver outage: throughput, p99 and memory.
    Outage(OutageArgs),
    /// The real gateway binary for a long run with the receiver down in the middle: spans
    /// recorded vs delivered, peak memory vs the configured ceiling, throughput while down.
    Soak(SoakArgs),
    /// In-process instructions per request on the request thread, under callgrind (needs
    /// valgrind): unlike `inproc`'s times, they do not move with the machine's load.
    InprocInstructions {
        /// Requests of the shorter run.
        #[arg(long, default_value_t = 2_000)]
        low: usize,
        /// Requests of the longer run (the slope between the two is the figure).
        #[arg(long, default_value_t = 10_000)]
        high: usize,
    },
    /// Serve `requests` in-process through one build (run under callgrind by `inproc-instructions`).
    InprocCalls {
        /// Which build.
        #[arg(value_enum)]
        kind: Kind,
        /// Requests after the warm-up.
        #[arg(long)]
        requests: usize,
    },
    /// Serve one build (run by the harness as a child process).
    Serve {
        /// Which build.
        #[arg(value_enum)]
        kind: Kind,
        /// Port of the app.
        #[arg(long)]
        port: u16,
        /// Port of our Prometheus listener (ours only).
        #[arg(long, default_value_t = 0)]
        metrics_port: u16,
        /// OTLP/gRPC endpoint.
        #[arg(long)]
        otlp: String,
        /// SQLite file of ours' durable spool (ours only): run as a production service that
        /// must not lose spans would (see `apps::ours_durable_settings`).
        #[arg(long)]
        spool: Option<std::path::PathBuf>,
    },
}

fn wrk(args: LoadArgs) -> Wrk {
    Wrk { threads: args.threads, connections: args.connections, duration: Duration::from_secs(args.duration) }
}

fn outage_wrk(args: OutageArgs) -> Wrk {
    Wrk { threads: 2, connections: args.connections, duration: Duration::from_secs(args.third) }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

fn run(cli: Cli) -> Result<(), BoxError> {
    if let Command::Serve { kind, port, metrics_port, otlp, spool } = &cli.command {
        return apps::serve(*kind, *port, *metrics_port, otlp, spool.as_deref());
    }
    if let Command::InprocCalls { kind, requests } = &cli.command {
        return instructions::calls(*kind, *requests);
    }
    if let Command::InprocInstructions { low, high } = &cli.command {
        println!("## metamcp-telemetry vs the OpenTelemetry ecosystem stack\n");
        println!("Machine: {}.", machine());
        return instructions::instructions(*low, *high);
    }
    let started = Instant::now();
    let allocator = if cfg!(feature = "system-alloc") { "system allocator" } else { "mimalloc" };
    println!("## metamcp-telemetry vs the OpenTelemetry ecosystem stack\n");
    println!("Machine: {}; {allocator} in all three builds.", machine());
    let mut receiver = Receiver::start()?;
    println!("Loopback OTLP/gRPC receiver at {}.", receiver.endpoint());
    match cli.command {
        Command::All { load, inproc, step, third } => {
            load::load(&receiver, wrk(load), load.rounds)?;
            inproc::inproc(&receiver, inproc.requests, inproc.batches)?;
            let rates: Vec<u64> = DEFAULT_RATES.split(',').filter_map(|rate| rate.parse().ok()).collect();
            saturation::saturation(&receiver, &rates, Duration::from_secs_f64(step))?;
            outage::outage(&mut receiver, outage_wrk(OutageArgs { third, connections: load.connections }))?;
        }
        Command::Load(args) => {
            load::load(&receiver, wrk(args), args.rounds)?;
        }
        Command::Inproc(args) => {
            inproc::inproc(&receiver, args.requests, args.batches)?;
        }
        Command::Saturation(args) => {
            saturation::saturation(&receiver, &args.rates, Duration::from_secs_f64(args.step))?;
        }
        Command::Outage(args) => outage::outage(&mut receiver, outage_wrk(args))?,
        Command::Soak(args) => soak::soak(
            &mut receiver,
            soak::SoakConfig {
                total: Duration::from_secs_f64(args.minutes * 60.0),
                outage_share: args.outage_share,
                connections: args.connections,
                spool_max_bytes: args.spool_max_mib << 20,
                replay_batches_per_second: args.replay_batches_per_second,
            },
        )?,
        Command::Serve { .. } | Command::InprocCalls { .. } | Command::InprocInstructions { .. } => {}
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let result = run(Cli::parse());
    load::remove_wrk_script();
    if let Err(err) = result {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
