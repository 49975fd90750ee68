//! [`DbSpool`]: export batches in a SQLite or PostgreSQL table, `telemetry_spool`.
//!
//! Two replicas may share one PostgreSQL database: a claim leases rows with one `UPDATE` whose
//! `WHERE` re-checks that the lease has ended, and its sub-select skips rows another claim holds
//! locked (`FOR UPDATE SKIP LOCKED`), so no row is ever leased to two callers at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use metamcp_telemetry_actors::self_metrics::Signal;
use metamcp_telemetry_actors::spool::{
    merge_evicted, unix_millis_now, Evicted, Spool, SpoolError, SpoolRecord, SpoolStats, SpooledBatch,
};

use super::pool::{on_backend, spool_error, SpoolPool};
use super::url::DatabaseUrl;
use super::{OpenError, Result};

diesel::table! {
    /// Export batches waiting for the collector.
    telemetry_spool (id) {
        /// Row id; grows with insertion order, so the smallest is the oldest batch.
        id -> BigInt,
        /// `traces` or `metrics`.
        signal -> Text,
        /// Spans or metric data points in the batch.
        items -> BigInt,
        /// Length of `body` in bytes.
        size_bytes -> BigInt,
        /// Export attempts already made.
        attempts -> Integer,
        /// When the batch was first made, in Unix milliseconds.
        created_at_ms -> BigInt,
        /// Until when (Unix milliseconds) a replay holds the row; 0 when free.
        lease_until_ms -> BigInt,
        /// The encoded OTLP export request.
        body -> Binary,
    }
}

use telemetry_spool as spool;

/// Leases the oldest free rows: `$1` lease end, `$2` now, `$3` limit. The sub-select skips rows
/// another claim holds locked; the outer `WHERE` re-checks the lease, so a row a concurrent claim
/// leased meanwhile is left alone. Diesel's query builder takes no sub-select of the updated table.
#[cfg(feature = "spool-postgres")]
const CLAIM_POSTGRES: &str = "UPDATE telemetry_spool SET lease_until_ms = $1 \
     WHERE id IN (SELECT id FROM telemetry_spool WHERE lease_until_ms <= $2 ORDER BY id LIMIT $3 \
     FOR UPDATE SKIP LOCKED) AND lease_until_ms <= $2 \
     RETURNING id, signal, items, attempts, created_at_ms, body";
/// The same on SQLite, where one writer at a time holds the database: lease end, now, limit, now.
#[cfg(feature = "spool-sqlite")]
const CLAIM_SQLITE: &str = "UPDATE telemetry_spool SET lease_until_ms = ? \
     WHERE id IN (SELECT id FROM telemetry_spool WHERE lease_until_ms <= ? ORDER BY id LIMIT ?) \
     AND lease_until_ms <= ? \
     RETURNING id, signal, items, attempts, created_at_ms, body";

/// Connections of the spool's pool: the exporter's writes and its replay.
pub const DEFAULT_POOL_SIZE: u32 = 2;
/// Default wait of SQLite for a lock another connection holds.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
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

/// How [`DbSpool::open_with`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSpoolOptions {
    /// Longest wait of a spool call for a connection; a PostgreSQL URL without
    /// `connect_timeout` gets this one (in whole seconds, at least 2). Keep it short: while the
    /// database is away the exporter waits this long before it spools in memory.
    pub connect_timeout: Duration,
    /// SQLite only: how long a statement waits for a lock another connection holds.
    pub busy_timeout: Duration,
    /// Connections in the spool's pool (1 for an in-memory SQLite database).
    pub pool_size: u32,
}

impl DbSpoolOptions {
    /// `connect_timeout`, and the defaults for the rest.
    pub const fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout, busy_timeout: DEFAULT_BUSY_TIMEOUT, pool_size: DEFAULT_POOL_SIZE }
    }
}

/// Export batches in a database table (SQLite or PostgreSQL), the exporter's durable spool.
/// Every call blocks; the exporter makes them off its own thread. Cheap to clone; clones share
/// the pool.
///
/// It keeps the table's byte total in memory (read once, then moved by its own writes and read
/// again by every [`stats`](Spool::stats)), so an append does not scan the table to apply the size
/// bound; another replica's writes to a shared table show within one stats call.
#[derive(Debug, Clone)]
pub struct DbSpool {
    pool: SpoolPool,
    total: Arc<Mutex<Option<u64>>>,
}

impl DbSpool {
    /// A spool in the database `url` names (see [`DatabaseUrl`] for the forms), on a pool of its
    /// own that connects in the background: a database that is away now makes the calls fail
    /// with [`SpoolError::Unavailable`] until it answers. Each new connection creates the table
    /// `telemetry_spool` and its index when missing; a SQLite file (and its directory) is created
    /// with mode 0600.
    pub fn open(url: &str, connect_timeout: Duration) -> std::result::Result<Self, OpenError> {
        Self::open_with(url, DbSpoolOptions::new(connect_timeout))
    }

    /// [`open`](Self::open) with every option.
    pub fn open_with(url: &str, options: DbSpoolOptions) -> std::result::Result<Self, OpenError> {
        let url = DatabaseUrl::parse(url, options.connect_timeout)?;
        Self::open_parsed(&url, options)
    }

    /// [`open_with`](Self::open_with) a URL already parsed.
    pub fn open_parsed(url: &DatabaseUrl, options: DbSpoolOptions) -> std::result::Result<Self, OpenError> {
        let pool = SpoolPool::open(url, options.pool_size, options.connect_timeout, options.busy_timeout)?;
        Ok(Self { pool, total: Arc::default() })
    }

    /// The cached byte total (`None`: not known, read it from the table).
    fn cached_total(&self) -> Option<u64> {
        *self.total.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_total(&self, total: Option<u64>) {
        *self.total.lock().unwrap_or_else(PoisonError::into_inner) = total;
    }

    /// Moves the cached total by `added - removed` bytes, if it is known.
    fn shift_total(&self, added: u64, removed: u64) {
        let mut total = self.total.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = total.as_mut() {
            *value = (*value + added).saturating_sub(removed);
        }
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
    fn into_batch(self) -> Result<SpooledBatch> {
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

fn parse_signal(text: &str) -> Result<Signal> {
    Signal::ALL
        .into_iter()
        .find(|signal| signal.as_str() == text)
        .ok_or_else(|| SpoolError::Failed(format!("spool row with unknown signal {text:?}")))
}

/// A stored count (never negative when written by this module) as `u64`.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn stored(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Adds `(signal, items, size_bytes)` rows that were removed to `evicted`.
fn tally(evicted: &mut Vec<Evicted>, removed: Vec<(String, i64, i64)>) -> Result<()> {
    for (signal, items, bytes) in removed {
        merge_evicted(evicted, parse_signal(&signal)?, count(items), count(bytes));
    }
    Ok(())
}

/// An error of a statement inside a transaction: diesel's, or one of ours (an unknown signal).
enum TxError {
    Diesel(diesel::result::Error),
    Spool(SpoolError),
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Diesel(error)
    }
}

impl From<SpoolError> for TxError {
    fn from(error: SpoolError) -> Self {
        Self::Spool(error)
    }
}

impl From<TxError> for SpoolError {
    fn from(error: TxError) -> Self {
        match error {
            TxError::Diesel(error) => spool_error(error),
            TxError::Spool(error) => error,
        }
    }
}

/// Removes the oldest rows no replay has leased while the table holds more than `max_bytes`;
/// what went, per signal. A leased row stays (its replay delivers or releases it), so the table
/// may stay above the bound by what replays hold. `total` is the table's byte total.
macro_rules! trim {
    ($conn:expr, $total:expr, $max_bytes:expr) => {{
        let conn = $conn;
        let (total, max_bytes): (u64, u64) = ($total, $max_bytes);
        let mut evicted = Vec::new();
        if total > max_bytes {
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
        }
        evicted
    }};
}

impl Spool for DbSpool {
    fn kind(&self) -> &'static str {
        self.pool.backend().as_str()
    }

    fn append(&self, records: Vec<SpoolRecord>, max_bytes: u64) -> Result<Vec<Evicted>> {
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
        let result = self.pool.run(|conn| {
            macro_rules! write_rows {
                ($c:ident) => {{
                    for chunk in rows.chunks(INSERT_CHUNK) {
                        diesel::insert_into(spool::table).values(chunk).execute($c)?;
                    }
                    let total = match known {
                        Some(total) => total + inserted,
                        None => count(spool::table.select(sql::<BigInt>(SUM_BYTES)).get_result::<i64>($c)?),
                    };
                    let evicted = trim!(&mut *$c, total, max_bytes);
                    Ok::<_, TxError>((total, evicted))
                }};
            }
            let written = match conn {
                // `BEGIN IMMEDIATE`: the write lock up front, not "database is locked" when the
                // first read turns into a write.
                #[cfg(feature = "spool-sqlite")]
                super::pool::SpoolConnection::Sqlite(c) => c.immediate_transaction(|c| write_rows!(c)),
                #[cfg(feature = "spool-postgres")]
                super::pool::SpoolConnection::Postgres(c) => c.transaction(|c| write_rows!(c)),
            };
            written.map_err(SpoolError::from)
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

    fn claim_oldest(&self, limit: usize, lease: Duration) -> Result<Vec<SpooledBatch>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = unix_millis_now();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool.run(|conn| {
            let loaded: QueryResult<Vec<Row>> = match conn {
                #[cfg(feature = "spool-postgres")]
                super::pool::SpoolConnection::Postgres(pg) => diesel::sql_query(CLAIM_POSTGRES)
                    .bind::<BigInt, _>(until)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .load(pg),
                #[cfg(feature = "spool-sqlite")]
                super::pool::SpoolConnection::Sqlite(sqlite) => diesel::sql_query(CLAIM_SQLITE)
                    .bind::<BigInt, _>(until)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(now)
                    .load(sqlite),
            };
            let mut rows = loaded.map_err(spool_error)?;
            rows.sort_unstable_by_key(|row| row.id);
            rows.into_iter().map(Row::into_batch).collect()
        })
    }

    fn remove(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let freed = self.pool.run(|conn| {
            let mut freed = 0u64;
            for chunk in ids.chunks(DELETE_CHUNK) {
                let sizes = on_backend!(&mut *conn, |c| diesel::delete(spool::table.filter(spool::id.eq_any(chunk)))
                    .returning(spool::size_bytes)
                    .load::<i64>(c))
                .map_err(spool_error)?;
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

    fn release(&self, id: i64, attempts: u32) -> Result<()> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.pool.run(|conn| {
            on_backend!(conn, |c| diesel::update(spool::table.find(id))
                .set((spool::attempts.eq(attempts), spool::lease_until_ms.eq(0)))
                .execute(c))
            .map_err(spool_error)?;
            Ok(())
        })
    }

    fn expire(&self, cutoff_unix_ms: i64) -> Result<Vec<Evicted>> {
        let now = unix_millis_now();
        let expired = self.pool.run(|conn| {
            let old = spool::created_at_ms.lt(cutoff_unix_ms).and(spool::lease_until_ms.le(now));
            let removed = on_backend!(conn, |c| diesel::delete(spool::table.filter(old))
                .returning((spool::signal, spool::items, spool::size_bytes))
                .load::<(String, i64, i64)>(c))
            .map_err(spool_error)?;
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

    fn stats(&self) -> Result<SpoolStats> {
        self.pool
            .run(|conn| {
                let groups: Vec<(String, i64, i64, i64)> = on_backend!(conn, |c| spool::table
                    .group_by(spool::signal)
                    .select((spool::signal, count_star(), sql::<BigInt>(SUM_BYTES), sql::<BigInt>(SUM_ITEMS)))
                    .load(c))
                .map_err(spool_error)?;
                let mut stats = SpoolStats::default();
                for (signal, batches, bytes, items) in groups {
                    stats.add(parse_signal(&signal)?, count(batches), count(items), count(bytes));
                }
                Ok(stats)
            })
            .inspect(|stats| self.set_total(Some(stats.bytes)))
    }
}
