//! The model's random input: the steps of a case and the settings it runs under.

use super::*;

pub(super) const MAX_SIZE: usize = 300;
/// One step of a case.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Batch { signal: Signal, items: u64, size: usize },
    Advance(u64),
    Finish { pick: usize, how: How },
    SpoolAnswer,
    Collector(bool),
    Database(bool),
    Panic { deliver: u8, apply: bool },
    Flush(u64),
    Shutdown { after_ms: u64, answer_call: bool, deliver: u8, apply: bool },
}

/// How the collector answers an export.
#[derive(Debug, Clone, Copy)]
pub(super) enum How {
    Accept,
    Partial(u64),
    Retryable,
    Throttle(u64),
    Permanent,
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    let how = prop_oneof![
        6 => Just(How::Accept),
        1 => (1u64..5).prop_map(How::Partial),
        3 => Just(How::Retryable),
        1 => (10u64..2_000).prop_map(How::Throttle),
        1 => Just(How::Permanent),
    ];
    prop_oneof![
        8 => (prop::sample::select(Signal::ALL.to_vec()), 1u64..20, 8usize..MAX_SIZE)
            .prop_map(|(signal, items, size)| Step::Batch { signal, items, size }),
        6 => (1u64..3_000).prop_map(Step::Advance),
        8 => (any::<usize>(), how).prop_map(|(pick, how)| Step::Finish { pick, how }),
        4 => Just(Step::SpoolAnswer),
        1 => any::<bool>().prop_map(Step::Collector),
        1 => any::<bool>().prop_map(Step::Database),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(deliver, apply)| Step::Panic { deliver, apply }),
        1 => (10u64..3_000).prop_map(Step::Flush),
        1 => (0u64..3_000, any::<bool>(), any::<u8>(), any::<bool>())
            .prop_map(|(after_ms, answer_call, deliver, apply)| Step::Shutdown { after_ms, answer_call, deliver, apply }),
    ]
}

/// The settings of a case: small bounds, so that they are reached.
#[derive(Debug, Clone)]
pub(super) struct Setup {
    pub(super) exporter: ExporterConfig,
    pub(super) spool: SpoolConfig,
    pub(super) database: bool,
    pub(super) seed: u64,
}

pub(super) fn policy() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![3 => Just(OverflowPolicy::Spool), 1 => Just(OverflowPolicy::DropOldest), 1 => Just(OverflowPolicy::DropNewest)]
}

pub(super) fn setup() -> impl Strategy<Value = Setup> {
    (
        (1usize..4, 1usize..6, 300u64..2_000, (policy(), policy(), policy()), 1u32..4),
        (prop::bool::weighted(0.9), 50u64..400, 1_000u64..8_000, 0.0f64..0.5),
        (500u64..4_000, 300u64..2_000, prop_oneof![Just(0u64), 5u64..60], 1u32..30),
        prop::bool::weighted(0.8),
        any::<u64>(),
    )
        .prop_map(|(queue, retry, spool, database, seed)| {
            let (concurrent, pending, pending_bytes, (traces, metrics, logs), unreachable_after) = queue;
            let (enabled, initial_ms, max_elapsed_ms, randomization_factor) = retry;
            let (max_bytes, memory_max_bytes, max_age_s, rate) = spool;
            let exporter = ExporterConfig {
                timeout: Duration::from_millis(500),
                max_concurrent_exports: concurrent,
                max_pending_batches: pending,
                max_pending_bytes: pending_bytes,
                when_full: WhenFull { traces, metrics, logs },
                unreachable_after,
                retry: crate::RetryConfig {
                    enabled,
                    initial_interval: Duration::from_millis(initial_ms),
                    max_interval: Duration::from_millis(initial_ms * 4),
                    max_elapsed_time: Duration::from_millis(max_elapsed_ms),
                    multiplier: 1.5,
                    randomization_factor,
                },
                ..ExporterConfig::default()
            };
            let spool = SpoolConfig {
                max_bytes,
                memory_max_bytes,
                max_age: Duration::from_secs(max_age_s),
                replay_batches_per_second: rate,
            };
            Setup { exporter, spool, database, seed }
        })
}
