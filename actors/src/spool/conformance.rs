//! The contract every [`Spool`] implementation must keep, as one function a test calls on an empty
//! spool. The service runs it on SQLite and PostgreSQL; this crate on [`MemorySpool`](super::MemorySpool).

use std::time::Duration;

use prost::bytes::Bytes;

use super::{Evicted, Spool, SpoolRecord};
use crate::self_metrics::Signal;

fn record(signal: Signal, items: u64, size: usize, created_unix_ms: i64) -> SpoolRecord {
    SpoolRecord { signal, items, attempts: 0, created_unix_ms, body: Bytes::from(vec![items as u8; size]) }
}

fn evicted_items(evicted: &[Evicted], signal: Signal) -> u64 {
    evicted.iter().filter(|e| e.signal == Some(signal)).map(|e| e.items).sum()
}

/// Runs every check against `spool`, which must start empty. Panics with a message on the first
/// broken rule.
pub fn check(spool: &dyn Spool) {
    let stats = spool.stats().expect("stats of an empty spool");
    assert_eq!(stats.batches, 0, "the spool under test must start empty");

    // Append keeps order and counts bytes and items per signal.
    let evicted = spool
        .append(vec![record(Signal::Traces, 3, 100, 1_000), record(Signal::Metrics, 5, 50, 2_000)], 1 << 20)
        .expect("append two");
    assert!(evicted.is_empty(), "nothing is evicted below the bound: {evicted:?}");
    spool.append(vec![record(Signal::Traces, 7, 200, 3_000)], 1 << 20).expect("append one");
    let stats = spool.stats().expect("stats");
    assert_eq!((stats.batches, stats.bytes), (3, 350));
    assert_eq!(stats.items_of(Signal::Traces), 10);
    assert_eq!(stats.items_of(Signal::Metrics), 5);

    // Claims come oldest first, bodies byte for byte; a leased batch is not handed out twice.
    let first = spool.claim_oldest(2, Duration::from_secs(60)).expect("claim");
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].signal, first[0].items, first[0].created_unix_ms), (Signal::Traces, 3, 1_000));
    assert_eq!(first[0].body, Bytes::from(vec![3u8; 100]));
    assert_eq!((first[1].signal, first[1].items), (Signal::Metrics, 5));
    assert!(first[0].id < first[1].id, "ids grow with insertion order");
    let rest = spool.claim_oldest(10, Duration::from_secs(60)).expect("claim the rest");
    assert_eq!(rest.len(), 1, "leased batches are skipped");
    assert_eq!(rest[0].items, 7);

    // Release ends the lease and stores the attempt count; remove deletes for good.
    spool.release(first[0].id, 4).expect("release");
    let again = spool.claim_oldest(10, Duration::from_secs(60)).expect("claim after release");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first[0].id, 4));
    spool.remove(&[first[0].id, first[1].id]).expect("remove");
    let stats = spool.stats().expect("stats after remove");
    assert_eq!((stats.batches, stats.bytes, stats.items_of(Signal::Traces)), (1, 200, 7));
    spool.remove(&[first[0].id]).expect("removing a missing row is not an error");

    // An expired lease frees the batch for the next claim.
    spool.release(rest[0].id, 1).expect("release the last one");
    let short = spool.claim_oldest(10, Duration::from_millis(1)).expect("short lease");
    assert_eq!(short.len(), 1);
    std::thread::sleep(Duration::from_millis(20)); // The lease is wall-clock time by contract.
    let after_lease = spool.claim_oldest(10, Duration::from_secs(60)).expect("claim after the lease");
    assert_eq!(after_lease.len(), 1, "a lease that ended frees the batch");
    spool.release(after_lease[0].id, 1).expect("release");

    // The size bound removes the oldest batches and reports them per signal.
    let evicted = spool
        .append(vec![record(Signal::Metrics, 2, 300, 4_000), record(Signal::Traces, 1, 300, 5_000)], 700)
        .expect("append over the bound");
    assert_eq!(evicted_items(&evicted, Signal::Traces), 7, "the oldest batch (200 bytes) went: {evicted:?}");
    assert_eq!(evicted.iter().map(|e| e.bytes).sum::<u64>(), 200, "evictions report their bytes");
    assert_eq!(evicted_items(&evicted, Signal::Metrics), 0);
    let stats = spool.stats().expect("stats after eviction");
    assert_eq!((stats.batches, stats.bytes), (2, 600));

    // Expiry removes what was made before the cutoff.
    let expired = spool.expire(4_500).expect("expire");
    assert_eq!(evicted_items(&expired, Signal::Metrics), 2);
    assert_eq!(expired.iter().map(|e| e.bytes).sum::<u64>(), 300);
    assert_eq!(evicted_items(&expired, Signal::Traces), 0);
    let left = spool.claim_oldest(10, Duration::from_secs(60)).expect("claim the survivor");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].created_unix_ms, 5_000);
    spool.remove(&[left[0].id]).expect("remove the survivor");
    assert_eq!(spool.stats().expect("final stats"), super::SpoolStats::default());

    leased_batches_survive_trimming(spool);
    // A leased batch (being replayed) is neither evicted by the bound nor expired.
    spool
        .append(vec![record(Signal::Traces, 2, 100, 1_000), record(Signal::Metrics, 4, 100, 2_000)], 1 << 20)
        .expect("append two");
    let leased = spool.claim_oldest(1, Duration::from_secs(60)).expect("lease the oldest");
    assert_eq!(leased[0].items, 2);
    let evicted = spool.append(vec![record(Signal::Traces, 6, 100, 3_000)], 200).expect("append over the bound");
    assert_eq!(evicted_items(&evicted, Signal::Traces), 0, "the leased oldest batch stays: {evicted:?}");
    assert_eq!(evicted_items(&evicted, Signal::Metrics), 4, "the oldest unleased batch goes: {evicted:?}");
    let expired = spool.expire(5_000).expect("expire");
    assert_eq!(evicted_items(&expired, Signal::Traces), 6, "only the unleased batch expires: {expired:?}");
    spool.release(leased[0].id, 1).expect("release");
    let expired = spool.expire(5_000).expect("expire after the release");
    assert_eq!(evicted_items(&expired, Signal::Traces), 2);
    assert_eq!(spool.stats().expect("stats"), super::SpoolStats::default());

    // A large body survives byte for byte.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    spool
        .append(
            vec![SpoolRecord {
                signal: Signal::Traces,
                items: 512,
                attempts: 2,
                created_unix_ms: 6_000,
                body: Bytes::from(big.clone()),
            }],
            1 << 30,
        )
        .expect("append a large batch");
    let back = spool.claim_oldest(1, Duration::from_secs(60)).expect("claim the large batch");
    assert_eq!(back[0].body.as_ref(), big.as_slice());
    assert_eq!(back[0].attempts, 2);
    spool.remove(&[back[0].id]).expect("remove the large batch");
}

/// The rule [`check`] also runs: a batch leased for replay is neither trimmed by the size bound
/// nor expired. Its replay delivers it (counted exported) or releases it, so removing it as
/// `spool_full` or `spool_expired` too would count one batch twice. The bound takes the oldest
/// free batches around it instead. `spool` must start empty and is left empty.
pub fn leased_batches_survive_trimming(spool: &dyn Spool) {
    assert_eq!(spool.stats().expect("stats").batches, 0, "the spool under test must start empty");
    let three = vec![
        record(Signal::Traces, 11, 100, 7_000),
        record(Signal::Metrics, 12, 100, 8_000),
        record(Signal::Traces, 13, 100, 9_000),
    ];
    spool.append(three, 1 << 20).expect("append three");
    // Lease the middle one: claim two, hand the oldest back.
    let claimed = spool.claim_oldest(2, Duration::from_secs(60)).expect("claim two");
    spool.release(claimed[0].id, 0).expect("release the oldest");
    let leased = &claimed[1];
    assert_eq!(leased.items, 12);

    let evicted = spool.append(vec![record(Signal::Metrics, 14, 100, 10_000)], 200).expect("append over the bound");
    assert_eq!(evicted_items(&evicted, Signal::Metrics), 0, "the leased batch survives the size bound: {evicted:?}");
    assert_eq!(evicted_items(&evicted, Signal::Traces), 24, "the free batches around it went: {evicted:?}");
    assert_eq!(evicted.iter().map(|e| e.batches).sum::<u64>(), 2, "{evicted:?}");
    let stats = spool.stats().expect("stats after trimming around a lease");
    assert_eq!((stats.batches, stats.bytes), (2, 200));

    // Only leased batches above the bound: nothing to trim, nothing to expire.
    let newest = spool.claim_oldest(10, Duration::from_secs(60)).expect("lease the newest");
    assert_eq!(newest.len(), 1);
    let evicted = spool.append(Vec::new(), 0).expect("a bound only leased batches exceed");
    assert!(evicted.is_empty(), "leased batches survive any bound: {evicted:?}");
    let expired = spool.expire(100_000).expect("expire around leases");
    assert!(expired.is_empty(), "leased batches do not expire: {expired:?}");
    assert_eq!(spool.stats().expect("stats").batches, 2);

    // Released, a batch is the bound's and the expiry's again; delivered, it is removed.
    spool.release(newest[0].id, 1).expect("release the newest");
    let expired = spool.expire(100_000).expect("expire the released batch");
    assert_eq!(evicted_items(&expired, Signal::Metrics), 14, "{expired:?}");
    spool.remove(&[leased.id]).expect("the replay delivered the leased batch");
    assert_eq!(spool.stats().expect("stats after the leases"), super::SpoolStats::default());
}
