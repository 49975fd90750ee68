//! The query spans of the storage layer: real diesel statements on an in-memory SQLite store,
//! with telemetry off (no instrumentation installed) and on (a CLIENT span and a metric event per
//! statement, kept in memory by `TelemetryManager::for_testing`). The difference is what the
//! instrumentation adds per statement: diesel printing the query, the statement's span name and
//! attributes, the span's start and end.
//!
//! - `audit_batch`: one audit batch of one row, as the audit writer writes it at low load
//!   (`insert_executions`; before the statement cache it was wrapped in `write_transaction`).
//! - `endpoint_lookup`: the endpoint cache's refresh, `get_endpoint` + `api_keys` (four SELECTs).
//!
//! `cargo bench --bench db_spans -- --warm-up-time 1 --measurement-time 3`
//!
//! Instruction counts, which do not move with the machine's noise: with `DB_SPANS_CASE=<case>`
//! and `DB_SPANS_ITERATIONS=<n>` the binary runs the case `n` times (after one warm-up run) and
//! exits; the slope between two counts under callgrind is the cost of one iteration:
//!
//! ```text
//! bin=$(ls -t target/release/deps/db_spans-* | grep -v '\.d$' | head -1)
//! for n in 300 1500; do DB_SPANS_CASE=audit_batch/on DB_SPANS_ITERATIONS=$n \
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/db.$n $bin 2>&1 | grep refs; done
//! ```
//!
//! Last figures (2-core AMD EPYC VM, rustc 1.95, bench profile): instructions per iteration,
//! the callgrind slope between 300 and 1 500 iterations. "Before" is the instrumentation that
//! sanitized and tokenized every statement, and the audit batch as `write_transaction` around a
//! SQLite batch insert that diesel ran as a savepoint and one `INSERT` per row.
//!
//! | case | query spans | off | on | added by telemetry |
//! |---|---|---|---|---|
//! | `audit_batch`, before | 5 | 78 429 | 152 225 | 73 796 |
//! | `audit_batch`, now | 1 | 73 963 | 104 988 | 31 025 |
//! | `endpoint_lookup`, before | 5 | 468 400 | 849 121 | 380 721 |
//! | `endpoint_lookup`, now | 5 | 468 400 | 630 399 | 161 999 |
//!
//! What a query span still costs is mostly diesel printing the query so the SQL can be read
//! (`DebugQuery`'s `Display`: the AST walked for the bind values, the SQL built again), about
//! 13 000 instructions for the audit `INSERT` and 27 000 for an endpoint `SELECT`; the span name
//! and attributes of a known statement are a hash lookup and reference-count bumps.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use metamcp_gateway::config::DatabaseSettings;
use metamcp_gateway::storage::{self, NewExecution, Store, DEFAULT_ENDPOINT};
use metamcp_telemetry::{TelemetryManager, TestTelemetry};

/// Iterations between two clearings of the recorded spans (outside the timed part).
const CLEAR_EVERY: u64 = 1024;

/// A store on a fresh in-memory SQLite database, instrumented when `telemetry` is on.
fn store(on: bool) -> (Store, Option<TestTelemetry>) {
    let (telemetry, recorded) = if on {
        let (telemetry, recorded) = TelemetryManager::for_testing();
        (telemetry, Some(recorded))
    } else {
        (TelemetryManager::disabled(), None)
    };
    let settings = DatabaseSettings { url: ":memory:".to_owned(), ..DatabaseSettings::default() };
    let store = Store::open(&settings, &telemetry).expect("in-memory store");
    store.run_blocking(storage::ensure_default_endpoint).expect("default endpoint");
    (store, recorded)
}

fn audit_row() -> NewExecution {
    NewExecution {
        endpoint: Some(DEFAULT_ENDPOINT.to_owned()),
        tool_name: "calculator".to_owned(),
        success: true,
        duration_ms: 0.25,
        error_message: None,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
    }
}

/// A case: its name and one iteration on a store.
type Case = (&'static str, fn(&Store));

const CASES: [Case; 2] = [
    ("audit_batch", |store| {
        let rows = [audit_row()];
        let written = store.run_blocking(|c| storage::insert_executions(c, &rows)).expect("written");
        assert_eq!(written, 1);
    }),
    ("endpoint_lookup", |store| {
        let found = store
            .run_blocking(|c| {
                Ok((storage::get_endpoint(c, DEFAULT_ENDPOINT)?, storage::api_keys(c, DEFAULT_ENDPOINT)?))
            })
            .expect("found");
        black_box(found);
    }),
];

fn db_spans(c: &mut Criterion) {
    for (name, iteration) in CASES {
        let mut group = c.benchmark_group(name);
        for on in [false, true] {
            let (store, recorded) = store(on);
            group.bench_function(if on { "on" } else { "off" }, |b| {
                b.iter_custom(|iterations| {
                    let mut spent = Duration::ZERO;
                    let mut done = 0;
                    while done < iterations {
                        let burst = CLEAR_EVERY.min(iterations - done);
                        let started = Instant::now();
                        for _ in 0..burst {
                            iteration(&store);
                        }
                        spent += started.elapsed();
                        done += burst;
                        if let Some(recorded) = &recorded {
                            recorded.clear();
                        }
                    }
                    spent
                })
            });
        }
        group.finish();
    }
}

/// `DB_SPANS_CASE=<case>/<off|on>` `DB_SPANS_ITERATIONS=<n>`: runs the case `n` times and exits.
fn count(case: &str, iterations: u64) {
    let (name, mode) = case.split_once('/').expect("DB_SPANS_CASE is <case>/<off|on>");
    let (_, iteration) = CASES.iter().find(|(n, _)| *n == name).expect("a known case");
    let (store, recorded) = store(mode == "on");
    iteration(&store);
    for _ in 0..iterations {
        iteration(&store);
    }
    if let Some(recorded) = recorded {
        eprintln!("{} spans", recorded.spans().len());
    }
}

criterion_group!(benches, db_spans);

fn main() {
    if let (Ok(case), Ok(iterations)) = (std::env::var("DB_SPANS_CASE"), std::env::var("DB_SPANS_ITERATIONS")) {
        count(&case, iterations.parse().expect("DB_SPANS_ITERATIONS is a number"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
