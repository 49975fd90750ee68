//! [`DbSpool`]: the exporter's durable spool in the gateway's database, table `telemetry_spool`.
//!
//! Its statements are never recorded: a span or a duration metric for a spool query would feed
//! the pipeline from its own exporter, a loop that grows while the collector is away. So the spool
//! runs on a small pool of its own whose connections carry no query instrumentation (which also
//! keeps request handling and the spool from taking each other's connections). A `:memory:`
//! SQLite database exists only on the store's one connection; there the spool shares it and mutes
//! the instrumentation around each of its calls.
//!
//! Two replicas may share one PostgreSQL database: a claim leases rows with one `UPDATE` whose
//! `WHERE` re-checks that the lease has ended, and its sub-select skips rows another claim holds
//! locked (`FOR UPDATE SKIP LOCKED`), so no row is ever leased to two callers at once.

use std::time::Duration;

use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use metamcp_telemetry_actors::self_metrics::Signal;
use metamcp_telemetry_actors::spool::{
    merge_evicted, unix_millis_now, Evicted, Spool, SpoolError, SpoolRecord, SpoolStats, SpooledBatch,
};

use super::connection::{write_transaction, DbConnection, Target};
use super::error::StorageError;
use super::schema::telemetry_spool as spool;
use super::store::Store;
use crate::config::DatabaseSettings;
use metamcp_telemetry::TelemetryManager;

/// Leases the oldest free rows: `$1` lease end, `$2` now, `$3` limit. The sub-select skips rows
/// another claim holds locked; the outer `WHERE` re-checks the lease, so a row a concurrent claim
/// leased meanwhile is left alone. Diesel's query builder takes no sub-select of the updated table.
const CLAIM_POSTGRES: &str = "UPDATE telemetry_spool SET lease_until_ms = $1 \
     WHERE id IN (SELECT id FROM telemetry_spool WHERE lease_until_ms <= $2 ORDER BY id LIMIT $3 \
     FOR UPDATE SKIP LOCKED) AND lease_until_ms <= $2 \
     RETURNING id, signal, items, attempts, created_at_ms, body";
/// The same on SQLite, where one writer at a time holds the database: lease end, now, limit, now.
const CLAIM_SQLITE: &str = "UPDATE telemetry_spool SET lease_until_ms = ? \
     WHERE id IN (SELECT id FROM telemetry_spool WHERE lease_until_ms <= ? ORDER BY id LIMIT ?) \
     AND lease_until_ms <= ? \
     RETURNING id, signal, items, attempts, created_at_ms, body";

/// Connections of the spool's own pool: the exporter's writes and its replay.
const POOL_SIZE: u32 = 2;
/// Longest wait of a spool call for a connection: the exporter falls back to memory soon when
/// the database is away, rather than stall its exports for the whole `connect_timeout`.
const MAX_CONNECTION_WAIT: Duration = Duration::from_secs(1);
/// Rows per `INSERT`; every row binds six values (SQLite allows 32766 per statement).
const INSERT_CHUNK: usize = 100;
/// Ids per `DELETE … WHERE id IN (…)`.
const DELETE_CHUNK: usize = 1000;
/// Rows read at a time while looking for the oldest batches to evict.
const EVICT_PAGE: i64 = 256;

/// `SUM(size_bytes)` as a `BIGINT` on both backends (PostgreSQL sums `BIGINT`s to `NUMERIC`).
const SUM_BYTES: &str = "CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT)";
/// `SUM(items)` as a `BIGINT`.
const SUM_ITEMS: &str = "CAST(COALESCE(SUM(items), 0) AS BIGINT)";

/// Export batches in the gateway's database (SQLite or PostgreSQL). Every call blocks; the
/// exporter makes them off its own thread.
///
/// It keeps the table's byte total in memory (read once, then moved by its own writes and read
/// again by every [`stats`](Spool::stats)), so an append does not scan the table to apply the size
/// bound; another replica's writes to a shared table show within one stats call.
#[derive(Debug, Clone)]
pub struct DbSpool {
    store: Store,
    total: std::sync::Arc<std::sync::Mutex<Option<u64>>>,
}

impl DbSpool {
    /// A spool in the database `store` opened (and migrated) from `settings`: on a pool of its
    /// own, without query instrumentation, connecting in the background. Over `sqlite://:memory:`
    /// it shares `store`'s only connection, its calls unrecorded.
    pub fn new(store: &Store, settings: &DatabaseSettings) -> Result<Self, StorageError> {
        let target = Target::parse(&settings.url, settings.connect_timeout)?;
        if target.memory {
            return Ok(Self { store: store.clone(), total: Default::default() });
        }
        let own = DatabaseSettings {
            pool_size: POOL_SIZE,
            connect_timeout: settings.connect_timeout.min(MAX_CONNECTION_WAIT),
            ..settings.clone()
        };
        let store = Store::connect(&own, &TelemetryManager::disabled(), false)?;
        Ok(Self { store, total: Default::default() })
    }

    /// The cached byte total (`None`: not known, read it from the table).
    fn cached_total(&self) -> Option<u64> {
        *self.total.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_total(&self, total: Option<u64>) {
        *self.total.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = total;
    }

    /// Moves the cached total by `added - removed` bytes, if it is known.
    fn shift_total(&self, added: u64, removed: u64) {
        let mut total = self.total.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(value) = total.as_mut() {
            *value = (*value + added).saturating_sub(removed);
        }
    }

    fn run<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T, StorageError>) -> Result<T, SpoolError> {
        self.store.run_unrecorded(f).map_err(spool_error)
    }
}

/// A storage failure as the exporter sees it: the database away (fall back to memory, try again
/// later) or anything else.
fn spool_error(error: StorageError) -> SpoolError {
    if error.is_unavailable() {
        SpoolError::Unavailable(error.to_string())
    } else {
        SpoolError::Failed(error.to_string())
    }
}

#[derive(Insertable)]
#[diesel(table_name = spool)]
struct NewRow<'a> {
    signal: &'static str,
    items: i64,
    size_bytes: i64,
    attempts: i32,
    created_at_ms: i64,
    body: &'a [u8],
}

/// A claimed row, read by column name from the claim's `RETURNING`.
#[derive(QueryableByName)]
#[diesel(table_name = spool)]
struct Row {
    id: i64,
    signal: String,
    items: i64,
    attempts: i32,
    created_at_ms: i64,
    body: Vec<u8>,
}

impl Row {
    fn into_batch(self) -> Result<SpooledBatch, StorageError> {
        Ok(SpooledBatch {
            id: self.id,
            signal: parse_signal(&self.signal)?,
            items: count(self.items),
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            created_unix_ms: self.created_at_ms,
            body: self.body.into(),
        })
    }
}

fn parse_signal(text: &str) -> Result<Signal, StorageError> {
    Signal::ALL
        .into_iter()
        .find(|signal| signal.as_str() == text)
        .ok_or_else(|| StorageError::Invalid(format!("spool row with unknown signal {text:?}")))
}

/// A stored count (never negative when written by this module) as `u64`.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn stored(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Adds `(signal, items, size_bytes)` rows that were removed to `evicted`.
fn tally(evicted: &mut Vec<Evicted>, removed: Vec<(String, i64, i64)>) -> Result<(), StorageError> {
    for (signal, items, bytes) in removed {
        merge_evicted(evicted, parse_signal(&signal)?, count(items), count(bytes));
    }
    Ok(())
}

/// Removes the oldest rows no replay has leased while the table holds more than `max_bytes`;
/// what went, per signal. A leased row stays (its replay delivers or releases it), so the table
/// may stay above the bound by what replays hold. `total` is the table's byte total when known
/// (else it is read).
fn trim(conn: &mut DbConnection, total: Option<u64>, max_bytes: u64) -> Result<Vec<Evicted>, StorageError> {
    let total = match total {
        Some(total) => total,
        None => count(spool::table.select(sql::<BigInt>(SUM_BYTES)).get_result::<i64>(conn)?),
    };
    let mut evicted = Vec::new();
    if total <= max_bytes {
        return Ok(evicted);
    }
    let excess = total - max_bytes;
    let now = unix_millis_now();
    // The free rows that must go for `excess` bytes to be freed, oldest first.
    let (mut freed, mut after, mut doomed) = (0u64, i64::MIN, Vec::new());
    while freed < excess {
        let page: Vec<(i64, i64)> = spool::table
            .select((spool::id, spool::size_bytes))
            .filter(spool::id.gt(after))
            .filter(spool::lease_until_ms.le(now))
            .order(spool::id)
            .limit(EVICT_PAGE)
            .load(conn)?;
        let Some(&(page_last, _)) = page.last() else { break };
        for (id, size) in page {
            if freed >= excess {
                break;
            }
            freed += count(size);
            doomed.push(id);
        }
        after = page_last;
    }
    for chunk in doomed.chunks(DELETE_CHUNK) {
        // The lease is checked again: a claim of another replica may have taken a row since.
        let removed =
            diesel::delete(spool::table.filter(spool::id.eq_any(chunk)).filter(spool::lease_until_ms.le(now)))
                .returning((spool::signal, spool::items, spool::size_bytes))
                .load::<(String, i64, i64)>(conn)?;
        tally(&mut evicted, removed)?;
    }
    Ok(evicted)
}

impl Spool for DbSpool {
    fn kind(&self) -> &'static str {
        self.store.backend().as_str()
    }

    fn append(&self, records: Vec<SpoolRecord>, max_bytes: u64) -> Result<Vec<Evicted>, SpoolError> {
        let rows: Vec<NewRow<'_>> = records
            .iter()
            .map(|record| NewRow {
                signal: record.signal.as_str(),
                items: stored(record.items),
                size_bytes: stored(record.body.len() as u64),
                attempts: i32::try_from(record.attempts).unwrap_or(i32::MAX),
                created_at_ms: record.created_unix_ms,
                body: record.body.as_ref(),
            })
            .collect();
        let inserted: u64 = records.iter().map(|r| r.body.len() as u64).sum();
        let known = self.cached_total();
        let result = self.run(|conn| {
            write_transaction(conn, |conn| {
                for chunk in rows.chunks(INSERT_CHUNK) {
                    // Multi-row VALUES is backend-specific in diesel.
                    let insert = diesel::insert_into(spool::table).values(chunk);
                    match conn {
                        DbConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
                        DbConnection::Postgres(pg) => insert.execute(pg)?,
                    };
                }
                let total = match known {
                    Some(total) => total + inserted,
                    None => count(spool::table.select(sql::<BigInt>(SUM_BYTES)).get_result::<i64>(conn)?),
                };
                let evicted = trim(conn, Some(total), max_bytes)?;
                Ok((total, evicted))
            })
        });
        match result {
            Ok((total, evicted)) => {
                self.set_total(Some(total.saturating_sub(evicted.iter().map(|e| e.bytes).sum())));
                Ok(evicted)
            }
            Err(err) => {
                self.set_total(None);
                Err(err)
            }
        }
    }

    fn claim_oldest(&self, limit: usize, lease: Duration) -> Result<Vec<SpooledBatch>, SpoolError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = unix_millis_now();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(|conn| {
            let mut rows: Vec<Row> = match conn {
                DbConnection::Postgres(pg) => diesel::sql_query(CLAIM_POSTGRES)
                    .bind::<BigInt, _>(until)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .load(pg)?,
                DbConnection::Sqlite(sqlite) => diesel::sql_query(CLAIM_SQLITE)
                    .bind::<BigInt, _>(until)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(now)
                    .load(sqlite)?,
            };
            rows.sort_unstable_by_key(|row| row.id);
            rows.into_iter().map(Row::into_batch).collect()
        })
    }

    fn remove(&self, ids: &[i64]) -> Result<(), SpoolError> {
        if ids.is_empty() {
            return Ok(());
        }
        let freed = self.run(|conn| {
            let mut freed = 0u64;
            for chunk in ids.chunks(DELETE_CHUNK) {
                let sizes = diesel::delete(spool::table.filter(spool::id.eq_any(chunk)))
                    .returning(spool::size_bytes)
                    .load::<i64>(conn)?;
                freed += sizes.into_iter().map(count).sum::<u64>();
            }
            Ok(freed)
        });
        match freed {
            Ok(freed) => {
                self.shift_total(0, freed);
                Ok(())
            }
            Err(err) => {
                self.set_total(None);
                Err(err)
            }
        }
    }

    fn release(&self, id: i64, attempts: u32) -> Result<(), SpoolError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.run(|conn| {
            diesel::update(spool::table.find(id))
                .set((spool::attempts.eq(attempts), spool::lease_until_ms.eq(0)))
                .execute(conn)?;
            Ok(())
        })
    }

    fn expire(&self, cutoff_unix_ms: i64) -> Result<Vec<Evicted>, SpoolError> {
        let now = unix_millis_now();
        let expired = self.run(|conn| {
            let old = spool::created_at_ms.lt(cutoff_unix_ms).and(spool::lease_until_ms.le(now));
            let removed = diesel::delete(spool::table.filter(old))
                .returning((spool::signal, spool::items, spool::size_bytes))
                .load::<(String, i64, i64)>(conn)?;
            let mut evicted = Vec::new();
            tally(&mut evicted, removed)?;
            Ok(evicted)
        });
        match &expired {
            Ok(evicted) => self.shift_total(0, evicted.iter().map(|e| e.bytes).sum()),
            Err(_) => self.set_total(None),
        }
        expired
    }

    fn stats(&self) -> Result<SpoolStats, SpoolError> {
        self.run(|conn| {
            let groups: Vec<(String, i64, i64, i64)> = spool::table
                .group_by(spool::signal)
                .select((spool::signal, count_star(), sql::<BigInt>(SUM_BYTES), sql::<BigInt>(SUM_ITEMS)))
                .load(conn)?;
            let mut stats = SpoolStats::default();
            for (signal, batches, bytes, items) in groups {
                stats.add(parse_signal(&signal)?, count(batches), count(items), count(bytes));
            }
            Ok(stats)
        })
        .inspect(|stats| self.set_total(Some(stats.bytes)))
    }
}
