//! Vector search over the tools registry: a brute-force cosine scan of the in-memory index, and
//! the offline hashing embedder that turns a query or a tool description into a vector.
//!
//! `cargo bench --bench vector_search -- --warm-up-time 1 --measurement-time 3`
//!
//! Last figures, medians from one run (2-core AMD EPYC VM, rustc 1.95, bench profile, default
//! x86-64 target, so SSE2 only):
//!
//! | bench | median |
//! |---|---|
//! | `search/10000x384`: top 10 of 10 000 tools, no threshold | 236 µs |
//! | `search/1000x384`: top 10 of 1 000 tools, no threshold | 26.1 µs |
//! | `embed/hashing_query`: a 5-word query, 384 dimensions | 0.78 µs |
//! | `embed/hashing_description`: a 200-character description, 384 dimensions | 3.62 µs |

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use metamcp_gateway::tools::embedder::HashingEmbedder;
use metamcp_gateway::tools::index::ToolIndex;

const DIMENSIONS: usize = 384;

/// An index of `tools` random unit vectors spread over 20 servers, and a random query.
fn random_index(tools: usize) -> (ToolIndex, Vec<f32>) {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut vector = || (0..DIMENSIONS).map(|_| rng.f32() * 2.0 - 1.0).collect::<Vec<f32>>();
    let index = ToolIndex::new(DIMENSIONS);
    for i in 0..tools {
        index.upsert(&format!("server{}", i % 20), &format!("tool{i}"), &vector()).expect("dimensions agree");
    }
    let query = vector();
    (index, query)
}

fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search");
    for tools in [10_000, 1_000] {
        let (index, query) = random_index(tools);
        group.bench_function(format!("{tools}x{DIMENSIONS}"), |b| {
            b.iter(|| {
                let hits = index.search(black_box(&query), 10, f32::NEG_INFINITY, None);
                assert_eq!(hits.len(), 10);
                hits
            })
        });
    }
    group.finish();
}

fn embed(c: &mut Criterion) {
    let embedder = HashingEmbedder::new(DIMENSIONS);
    let query = "weather forecast for a city";
    let description = "Get the current weather forecast for a given city: temperature, precipitation, wind speed \
                       and direction, humidity and UV index, hour by hour for the next 48 hours, in SI units (get_weather_forecast).";
    assert!((190..=210).contains(&description.len()), "{}", description.len());
    let mut group = c.benchmark_group("embed");
    group.bench_function("hashing_query", |b| b.iter(|| embedder.embed_one(black_box(query))));
    group.bench_function("hashing_description", |b| b.iter(|| embedder.embed_one(black_box(description))));
    group.finish();
}

criterion_group!(benches, search, embed);
criterion_main!(benches);
