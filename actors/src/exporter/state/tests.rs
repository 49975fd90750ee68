//! Step-by-step tests of the exporter's state machine: each feeds events with chosen times and
//! asserts the exact actions that come back.

use std::time::{Duration, Instant};

use prost::bytes::Bytes;

use super::*;
use crate::internal_events::{BatchDropped, ExporterEvent};
use crate::self_metrics::DropReason;
use crate::spool::{Evicted, SpoolConfig, SpoolError, SpoolStats, SpooledBatch, WhenFull};

const UNIX: i64 = 1_700_000_000_000;

/// Retries after exactly 1 s, 1.5 s, … (no jitter), two slots, unreachable at the first failure.
fn config() -> ExporterConfig {
    ExporterConfig {
        max_concurrent_exports: 2,
        retry: crate::RetryConfig { randomization_factor: 0.0, ..Default::default() },
        ..ExporterConfig::default()
    }
}

fn machine(config: ExporterConfig, spool: SpoolConfig) -> (ExporterState, Instant) {
    let t0 = Instant::now();
    (ExporterState::new(config, spool, t0, UNIX, 7), t0)
}

fn batch(signal: Signal, items: u64, bytes: usize) -> Event {
    Event::BatchArrived(ExportBatch { signal, items, body: Bytes::from(vec![items as u8; bytes.max(1)]) })
}

fn traces(items: u64) -> Event {
    batch(Signal::Traces, items, 100)
}

fn starts(actions: &[Action]) -> Vec<(FlightId, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartExport { id, body, .. } => Some((*id, u64::from(body[0]))),
            _ => None,
        })
        .collect()
}

fn calls(actions: &[Action]) -> Vec<(CallId, SpoolCall)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CallSpool { call, op } => Some((*call, op.clone())),
            _ => None,
        })
        .collect()
}

fn dropped(actions: &[Action], reason: DropReason) -> u64 {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(ExporterEvent::Dropped(BatchDropped { items, reason: r, .. })) if *r == reason => Some(*items),
            Action::Emit(ExporterEvent::Rejected(e)) if reason == DropReason::ExportFailedPermanent => Some(e.items),
            Action::Emit(ExporterEvent::Exported(e)) if reason == DropReason::ExportFailedPermanent => Some(e.rejected),
            _ => None,
        })
        .sum()
}

fn wake(actions: &[Action]) -> Option<Instant> {
    actions.iter().rev().find_map(|a| match a {
        Action::ScheduleWake(at) => Some(*at),
        _ => None,
    })
}

fn accepted() -> Outcome {
    Outcome::Accepted { rejected: 0 }
}

fn refused() -> Outcome {
    Outcome::Retryable { reason: "connection refused".into(), retry_after: None }
}

fn report(actions: &[Action], waiter: WaiterId) -> Option<DrainReport> {
    actions.iter().find_map(|a| match a {
        Action::ReplyDrain { waiter: w, report } if *w == waiter => Some(*report),
        _ => None,
    })
}

#[test]
fn a_batch_starts_at_once_and_an_accepted_export_is_counted() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    let actions = sm.handle(t0, traces(5));
    assert_eq!(starts(&actions), vec![(0, 5)]);
    assert!(matches!(&actions[0], Action::Emit(ExporterEvent::Received(r)) if r.items == 5));
    let done = sm.handle(t0 + Duration::from_millis(40), Event::ExportFinished { id: 0, outcome: accepted() });
    let exported = done.iter().find_map(|a| match a {
        Action::Emit(ExporterEvent::Exported(e)) => Some(e.clone()),
        _ => None,
    });
    let exported = exported.expect("an exported event");
    assert_eq!((exported.items, exported.duration, exported.replayed), (5, Duration::from_millis(40), false));
    assert_eq!(sm.status(t0).in_flight, 0);
}

#[test]
fn exports_are_bounded_and_the_next_batch_takes_the_slot_that_frees() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    for items in [1, 2, 3] {
        sm.handle(t0, traces(items));
    }
    let status = sm.status(t0);
    assert_eq!((status.in_flight, status.pending_batches, status.pending_items), (2, 1, 3));
    let actions = sm.handle(t0, Event::ExportFinished { id: 1, outcome: accepted() });
    assert_eq!(starts(&actions), vec![(2, 3)], "the waiting batch takes the free slot");
}

#[test]
fn a_retryable_failure_waits_for_the_backoff_on_the_clock_it_is_given() {
    let mut config = config();
    config.unreachable_after = 3;
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    sm.handle(t0, traces(4));
    let actions = sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() });
    assert!(starts(&actions).is_empty());
    assert_eq!(wake(&actions), Some(t0 + Duration::from_secs(1)), "initial_interval, no jitter");
    assert!(starts(&sm.handle(t0 + Duration::from_millis(999), Event::Tick)).is_empty());
    assert_eq!(starts(&sm.handle(t0 + Duration::from_secs(1), Event::Tick)), vec![(1, 4)]);
    // The second retry waits 1.5 s (multiplier), counted from its failure.
    let t1 = t0 + Duration::from_secs(2);
    let actions = sm.handle(t1, Event::ExportFinished { id: 1, outcome: refused() });
    assert_eq!(wake(&actions), Some(t1 + Duration::from_millis(1500)));
    assert!(sm.status(t1).collector_reachable, "2 failures of 3");
}

#[test]
fn the_jitter_comes_from_the_seed() {
    let run = |seed| {
        let mut config = config();
        config.retry.randomization_factor = 0.5;
        config.unreachable_after = 10;
        let t0 = Instant::now();
        let mut sm = ExporterState::new(config, SpoolConfig::default(), t0, UNIX, seed);
        sm.handle(t0, traces(1));
        wake(&sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() })).map(|at| at - t0)
    };
    assert_eq!(run(1), run(1), "the same seed, the same delay");
    let delay = run(1).unwrap_or_default();
    assert!(delay >= Duration::from_millis(500) && delay < Duration::from_millis(1500), "{delay:?}");
}

#[test]
fn a_throttled_export_waits_for_the_servers_delay_and_the_collector_stays_reachable() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    sm.handle(t0, traces(3));
    let throttled = Outcome::Retryable { reason: "HTTP 429".into(), retry_after: Some(Duration::from_secs(7)) };
    let actions = sm.handle(t0, Event::ExportFinished { id: 0, outcome: throttled });
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Emit(ExporterEvent::Throttled(t)) if t.retry_after == Duration::from_secs(7))));
    assert!(sm.status(t0).collector_reachable, "a collector that says when to come back is answering");
    assert!(starts(&sm.handle(t0 + Duration::from_secs(6), Event::Tick)).is_empty());
    assert_eq!(starts(&sm.handle(t0 + Duration::from_secs(7), Event::Tick)).len(), 1);
}

#[test]
fn a_permanent_refusal_drops_the_batch_and_a_partial_success_drops_the_rejected_items() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    sm.handle(t0, traces(6));
    sm.handle(t0, traces(9));
    let refused =
        sm.handle(t0, Event::ExportFinished { id: 0, outcome: Outcome::Permanent { reason: "HTTP 400".into() } });
    assert_eq!(dropped(&refused, DropReason::ExportFailedPermanent), 6);
    assert!(starts(&refused).is_empty(), "never retried");
    let partial = sm.handle(t0, Event::ExportFinished { id: 1, outcome: Outcome::Accepted { rejected: 2 } });
    assert_eq!(dropped(&partial, DropReason::ExportFailedPermanent), 2);
    assert!(partial.iter().any(|a| matches!(a, Action::Emit(ExporterEvent::Exported(e)) if e.items == 7)));
}

#[test]
fn retries_past_the_budget_are_spooled_or_dropped_per_policy() {
    for (policy, spooled) in [(OverflowPolicy::Spool, 1), (OverflowPolicy::DropOldest, 0)] {
        let mut config = config();
        config.unreachable_after = 100;
        config.retry.max_elapsed_time = Duration::from_millis(1500);
        config.when_full = WhenFull { traces: policy, metrics: policy, logs: policy };
        let (mut sm, t0) = machine(config, SpoolConfig::default());
        sm.handle(t0, traces(8));
        sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() });
        sm.handle(t0 + Duration::from_secs(1), Event::Tick);
        let t1 = t0 + Duration::from_millis(1100);
        let actions = sm.handle(t1, Event::ExportFinished { id: 1, outcome: refused() });
        assert_eq!(sm.status(t1).spool.batches, spooled, "{policy}");
        assert_eq!(dropped(&actions, DropReason::RetryExhausted), 8 * (1 - spooled), "{policy}");
    }
}

#[test]
fn when_full_decides_who_makes_room() {
    let cases = [
        (OverflowPolicy::DropNewest, vec![1, 2], DropReason::QueueFull, 4, 0),
        (OverflowPolicy::DropOldest, vec![1, 4], DropReason::QueueFull, 2, 0),
        (OverflowPolicy::Spool, vec![1, 4], DropReason::QueueFull, 0, 2),
    ];
    for (policy, left, reason, dropped_items, spooled_items) in cases {
        let mut config = config();
        config.max_concurrent_exports = 1;
        config.max_pending_batches = 1;
        config.when_full = WhenFull { traces: policy, metrics: policy, logs: policy };
        let (mut sm, t0) = machine(config, SpoolConfig::default());
        let mut actions = Vec::new();
        for items in [1, 2, 4] {
            actions.extend(sm.handle(t0, traces(items)));
        }
        assert_eq!(dropped(&actions, reason), dropped_items, "{policy}");
        assert_eq!(sm.spooled_items(Signal::Traces), spooled_items, "{policy}");
        let flying: Vec<u64> = starts(&actions).into_iter().map(|(_, items)| items).collect();
        let waiting = sm.status(t0).pending_items;
        assert_eq!(vec![flying[0], waiting], left, "{policy}");
    }
}

#[test]
fn the_byte_bound_holds_whatever_the_count() {
    let mut config = config();
    config.max_concurrent_exports = 1;
    config.max_pending_bytes = 1_000;
    config.when_full = WhenFull {
        traces: OverflowPolicy::DropOldest,
        metrics: OverflowPolicy::DropOldest,
        logs: OverflowPolicy::DropOldest,
    };
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    let mut actions = Vec::new();
    for items in 1..=6 {
        actions.extend(sm.handle(t0, batch(Signal::Traces, items, 300)));
    }
    // 300 B in flight, at most two more waiting within 1000 B: 2, 3, 4 made room.
    assert_eq!(dropped(&actions, DropReason::QueueFull), 2 + 3 + 4);
    assert_eq!(sm.held_bytes(), 900);
}

#[test]
fn an_unreachable_collector_sends_everything_to_the_spool_and_the_oldest_batch_probes_it() {
    let mut config = config();
    config.max_concurrent_exports = 1;
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    sm.handle(t0, traces(1));
    sm.handle(t0, traces(2));
    let actions = sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() });
    assert!(actions.iter().any(|a| matches!(a, Action::Emit(ExporterEvent::Unreachable(_)))));
    let status = sm.status(t0);
    assert!(!status.collector_reachable);
    assert_eq!((status.pending_batches, status.spool.memory_batches, status.spool.items[0]), (0, 2, 3));
    // New batches go straight to the spool.
    sm.handle(t0, traces(4));
    assert_eq!(sm.spooled_items(Signal::Traces), 7);
    // The first probe comes after the first backoff, with the oldest batch.
    assert!(starts(&sm.handle(t0 + Duration::from_millis(999), Event::Tick)).is_empty());
    let probe = sm.handle(t0 + Duration::from_secs(1), Event::Tick);
    assert_eq!(starts(&probe), vec![(1, 2)], "batch 2 went to the spool first (the retry of 1 came after)");
    // Back: the next batches replay at the rate, one slot (of one) at a time.
    let t1 = t0 + Duration::from_secs(1);
    let back = sm.handle(t1, Event::ExportFinished { id: 1, outcome: accepted() });
    assert!(back.iter().any(|a| matches!(a, Action::Emit(ExporterEvent::Back(_)))));
    assert!(back.iter().any(|a| matches!(a, Action::Emit(ExporterEvent::Exported(e)) if e.replayed)));
    assert_eq!(starts(&back), vec![(2, 1)], "then the retried batch 1, oldest first");
}

#[test]
fn replay_keeps_a_slot_for_fresh_batches_and_keeps_to_its_rate() {
    let mut config = config();
    config.max_concurrent_exports = 3;
    let spool = SpoolConfig { replay_batches_per_second: 2, ..SpoolConfig::default() };
    let (mut sm, t0) = machine(config, spool);
    for items in 1..=3 {
        sm.handle(t0, traces(items));
    }
    for id in 0..3 {
        sm.handle(t0, Event::ExportFinished { id, outcome: refused() });
    }
    assert_eq!(sm.status(t0).spool.batches, 3);
    // The probe (batch 1) succeeds at t0 + 1 s; two tokens have accrued by then (capacity 2).
    let t1 = t0 + Duration::from_secs(1);
    sm.handle(t1, Event::Tick);
    let back = sm.handle(t1, Event::ExportFinished { id: 3, outcome: accepted() });
    assert_eq!(starts(&back).len(), 2, "two of three slots: one stays free for fresh batches");
    let status = sm.status(t1);
    assert_eq!((status.in_flight, status.spool.replaying), (2, 2));
    // A fresh batch takes the free slot at once.
    assert_eq!(starts(&sm.handle(t1, traces(9))), vec![(6, 9)]);
}

#[test]
fn a_failing_database_falls_back_to_memory_and_the_refresh_moves_the_batches_back() {
    let mut config = config();
    config.max_concurrent_exports = 1;
    // No probe of the collector before the refresh: the batch stays idle in memory.
    config.retry.initial_interval = Duration::from_secs(60);
    config.retry.max_interval = Duration::from_secs(60);
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    let attach = sm.handle(t0, Event::SpoolAttached { backend: "sqlite" });
    let [(refresh, SpoolCall::Refresh { .. })] = calls(&attach)[..] else { panic!("{attach:?}") };
    sm.handle(
        t0,
        Event::SpoolAnswered {
            call: refresh,
            reply: SpoolReply::Refreshed(Refreshed {
                removed: true,
                moved: Some(vec![]),
                stats: Some(SpoolStats::default()),
                ..Default::default()
            }),
        },
    );
    sm.handle(t0, traces(5));
    let failed = sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() });
    let [(append, SpoolCall::Append { ref records, .. })] = calls(&failed)[..] else { panic!("{failed:?}") };
    assert_eq!(records.len(), 1);
    let down = SpoolError::Unavailable("connection refused".into());
    let fell = sm.handle(t0, Event::SpoolAnswered { call: append, reply: SpoolReply::Appended(Err(down)) });
    assert!(fell.iter().any(|a| matches!(a, Action::Emit(ExporterEvent::Fallback(_)))));
    let status = sm.status(t0);
    assert!(status.spool.fallback);
    assert_eq!((status.spool.memory_batches, status.spool.items[0]), (1, 5));
    assert!(status.spool.error.unwrap_or_default().contains("connection refused"));
    // The periodic refresh tries the database again and moves the batch.
    let tick = sm.handle(t0 + SPOOL_REFRESH_INTERVAL, Event::Tick);
    let [(refresh, SpoolCall::Refresh { ref moved, .. })] = calls(&tick)[..] else { panic!("{tick:?}") };
    assert_eq!(moved.len(), 1);
    let mut stats = SpoolStats::default();
    stats.add(Signal::Traces, 1, 5, 100);
    let done = Refreshed { removed: true, moved: Some(vec![]), stats: Some(stats), ..Default::default() };
    let back = sm.handle(
        t0 + SPOOL_REFRESH_INTERVAL,
        Event::SpoolAnswered { call: refresh, reply: SpoolReply::Refreshed(done) },
    );
    assert!(back.iter().any(|a| matches!(a, Action::Emit(ExporterEvent::Recovered(_)))));
    let status = sm.status(t0);
    assert!(!status.spool.fallback);
    assert_eq!((status.spool.memory_batches, status.spool.batches, status.spool.items[0]), (0, 1, 5));
}

/// A state with a database attached whose first refresh answered, and one spooled row claimed.
fn replaying_one_row() -> (ExporterState, Instant, SpooledBatch) {
    let mut config = config();
    config.max_concurrent_exports = 1;
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    let attach = sm.handle(t0, Event::SpoolAttached { backend: "sqlite" });
    let mut stats = SpoolStats::default();
    stats.add(Signal::Traces, 1, 3, 1);
    let refreshed = Refreshed { removed: true, moved: Some(vec![]), stats: Some(stats), ..Default::default() };
    let claim =
        sm.handle(t0, Event::SpoolAnswered { call: calls(&attach)[0].0, reply: SpoolReply::Refreshed(refreshed) });
    let [(call, SpoolCall::Claim { limit: 1, .. })] = calls(&claim)[..] else { panic!("{claim:?}") };
    let row = SpooledBatch {
        id: 41,
        signal: Signal::Traces,
        items: 3,
        attempts: 0,
        created_unix_ms: UNIX,
        body: Bytes::from_static(&[3]),
    };
    let started = sm.handle(t0, Event::SpoolAnswered { call, reply: SpoolReply::Claimed(Ok(vec![row.clone()])) });
    assert_eq!(starts(&started), vec![(0, 3)]);
    (sm, t0, row)
}

#[test]
fn a_replayed_row_is_deleted_once_delivered_and_a_refused_deletion_is_made_again_before_the_next_claim() {
    let (mut sm, t0, _row) = replaying_one_row();
    let done = sm.handle(t0, Event::ExportFinished { id: 0, outcome: accepted() });
    let [(remove, SpoolCall::Remove { ref ids })] = calls(&done)[..] else { panic!("{done:?}") };
    assert_eq!(ids, &vec![41]);
    let down = SpoolError::Unavailable("gone".into());
    sm.handle(t0, Event::SpoolAnswered { call: remove, reply: SpoolReply::Removed(Err(down)) });
    assert_eq!(sm.status(t0).spool.batches, 1, "still counted until deleted");
    // The next refresh deletes it before anything else.
    let tick = sm.handle(t0 + SPOOL_REFRESH_INTERVAL, Event::Tick);
    let [(_, SpoolCall::Refresh { ref remove, .. })] = calls(&tick)[..] else { panic!("{tick:?}") };
    assert_eq!(remove, &vec![41]);
}

#[test]
fn a_failed_probe_gives_the_row_back_with_one_more_attempt() {
    let (mut sm, t0, _row) = replaying_one_row();
    let failed = sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() });
    let [(_, SpoolCall::Release { id: 41, attempts: 1 })] = calls(&failed)[..] else { panic!("{failed:?}") };
    assert!(!sm.status(t0).collector_reachable);
}

#[test]
fn a_restart_sends_fresh_batches_again_first_and_gives_claimed_rows_back() {
    let (mut sm, t0, _row) = replaying_one_row();
    let actions = sm.handle(t0, Event::Restarted);
    assert!(calls(&actions).iter().any(|(_, op)| matches!(op, SpoolCall::Release { id: 41, attempts: 0 })));
    assert_eq!(sm.status(t0).in_flight, 0);
    let mut config = config();
    config.max_concurrent_exports = 1;
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    sm.handle(t0, traces(1));
    sm.handle(t0, traces(2));
    let again = sm.handle(t0, Event::Restarted);
    assert_eq!(starts(&again), vec![(1, 1)], "the batch that was in flight goes first, under a new id");
    assert!(
        sm.handle(t0, Event::ExportFinished { id: 0, outcome: accepted() })
            .iter()
            .all(|a| !matches!(a, Action::Emit(ExporterEvent::Exported(_)))),
        "the lost export's answer is ignored"
    );
}

#[test]
fn a_stale_spool_answer_is_ignored() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    let attach = sm.handle(t0, Event::SpoolAttached { backend: "sqlite" });
    let call = calls(&attach)[0].0;
    sm.handle(t0, Event::Restarted);
    let evicted = vec![Evicted { signal: Some(Signal::Traces), batches: 1, items: 9, bytes: 1 }];
    let stale = Refreshed { removed: true, expired: evicted, moved: Some(vec![]), ..Default::default() };
    let actions = sm.handle(t0, Event::SpoolAnswered { call, reply: SpoolReply::Refreshed(stale) });
    assert_eq!(dropped(&actions, DropReason::SpoolExpired), 0, "not the call under way");
}

#[test]
fn shutdown_writes_what_is_left_to_the_database_and_drops_what_its_policy_does_not_spool() {
    let mut config = config();
    config.when_full =
        WhenFull { traces: OverflowPolicy::Spool, metrics: OverflowPolicy::DropNewest, logs: OverflowPolicy::Spool };
    let (mut sm, t0) = machine(config, SpoolConfig::default());
    let attach = sm.handle(t0, Event::SpoolAttached { backend: "postgresql" });
    sm.handle(
        t0,
        Event::SpoolAnswered {
            call: calls(&attach)[0].0,
            reply: SpoolReply::Refreshed(Refreshed {
                removed: true,
                moved: Some(vec![]),
                stats: Some(SpoolStats::default()),
                ..Default::default()
            }),
        },
    );
    sm.handle(t0, traces(3));
    sm.handle(t0, batch(Signal::Metrics, 5, 10));
    sm.handle(t0, traces(7));
    let deadline = t0 + Duration::from_secs(1);
    let asked = sm.handle(t0, Event::DrainRequested { waiter: 9, deadline, give_up: true });
    assert_eq!(report(&asked, 9), None, "waits for its deadline");
    assert_eq!(wake(&asked), Some(deadline));
    let at = sm.handle(deadline, Event::Tick);
    let write = at.iter().find_map(|a| match a {
        Action::WriteAtDeadline(w) => Some(w.clone()),
        _ => None,
    });
    let write = write.expect("one blocking write at the deadline");
    assert_eq!(write.records.iter().map(|r| r.items).collect::<Vec<_>>(), vec![7, 3], "waiting first, then in flight");
    let answered = sm.handle(deadline, Event::DeadlineWriteAnswered(Ok(Vec::new())));
    assert_eq!(report(&answered, 9), Some(DrainReport { batches_left: 1, items_left: 5 }));
    assert_eq!(dropped(&answered, DropReason::ShutdownTimeout), 5);
    assert_eq!(sm.status(deadline).spool.items, [10, 0, 0]);
}

#[test]
fn a_shutdown_without_a_database_drops_the_memory_spool_and_counts_it() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    sm.handle(t0, traces(2));
    sm.handle(t0, Event::ExportFinished { id: 0, outcome: refused() });
    sm.handle(t0, traces(4));
    assert_eq!(sm.spooled_items(Signal::Traces), 6);
    let actions = sm.handle(t0, Event::DrainRequested { waiter: 1, deadline: t0, give_up: true });
    assert_eq!(report(&actions, 1), Some(DrainReport { batches_left: 2, items_left: 6 }));
    assert_eq!(dropped(&actions, DropReason::ShutdownTimeout), 6);
    assert_eq!(sm.status(t0).spool.batches, 0);
}

#[test]
fn a_flush_answers_when_everything_is_delivered_or_reports_what_is_left_at_its_deadline() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    sm.handle(t0, traces(2));
    let deadline = t0 + Duration::from_secs(1);
    assert_eq!(report(&sm.handle(t0, Event::DrainRequested { waiter: 1, deadline, give_up: false }), 1), None);
    let done = sm.handle(t0, Event::ExportFinished { id: 0, outcome: accepted() });
    assert_eq!(report(&done, 1), Some(DrainReport::default()));
    sm.handle(t0, traces(3));
    sm.handle(t0, Event::DrainRequested { waiter: 2, deadline, give_up: false });
    let late = sm.handle(deadline, Event::Tick);
    assert_eq!(report(&late, 2), Some(DrainReport { batches_left: 1, items_left: 3 }));
    assert_eq!(sm.status(deadline).in_flight, 1, "a flush gives nothing up");
}

#[test]
fn a_shutdown_waits_a_grace_for_the_spool_call_under_way() {
    let (mut sm, t0) = machine(config(), SpoolConfig::default());
    sm.handle(t0, Event::SpoolAttached { backend: "sqlite" });
    let asked = sm.handle(t0, Event::DrainRequested { waiter: 3, deadline: t0, give_up: true });
    assert_eq!(report(&asked, 3), None, "the refresh under way may be moving batches");
    let waiting = sm.handle(t0 + SPOOL_SHUTDOWN_GRACE - Duration::from_millis(1), Event::Tick);
    assert_eq!(report(&waiting, 3), None);
    let late = sm.handle(t0 + SPOOL_SHUTDOWN_GRACE, Event::Tick);
    assert_eq!(report(&late, 3), Some(DrainReport::default()));
}
