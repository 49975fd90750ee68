//! The durable database spool (`--features spool-sqlite,spool-postgres`): the actors' spool
//! conformance suite and the spool's own rules, on a SQLite file, on SQLite in memory, and on a
//! fresh PostgreSQL database created for the test (and dropped after it) on the server
//! `METAMCP_TEST_POSTGRES_URL` names — without it skipped with a `SKIP` line, or failed under
//! `METAMCP_CI=1` (the rule of `test-support/src/prereq.rs`).
#![cfg(all(feature = "spool-sqlite", feature = "spool-postgres"))]

use support::prereq;

use std::time::Duration;

use diesel::prelude::*;
use metamcp_telemetry::actors::self_metrics::Signal;
use metamcp_telemetry::actors::spool::{conformance, unix_millis_now, Spool as _, SpoolError, SpoolRecord};
use metamcp_telemetry::spool::{DbSpool, OpenError};

const WAIT: Duration = Duration::from_secs(5);

/// `url` pointing at database `name` instead, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// Where one test's spool lives: a SQLite file in a temporary directory, or a PostgreSQL
/// database dropped (connections and all) when the test ends.
struct TestDb {
    url: String,
    kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.pg {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
            }
        }
    }
}

impl TestDb {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A bare path in a directory that does not exist yet: `open` creates both.
        let url = dir.path().join("nested").join("spool.db").display().to_string();
        Self { url, kind: "sqlite", _dir: Some(dir), pg: None }
    }

    fn postgres() -> Option<Self> {
        let admin_url = prereq::postgres_url()?;
        let name = format!("mmcp_spool_{:016x}", fastrand::u64(..));
        let mut conn = PgConnection::establish(&admin_url).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
        Some(Self {
            url: with_database(&admin_url, &name),
            kind: "postgresql",
            _dir: None,
            pg: Some((admin_url, name)),
        })
    }

    fn spool(&self) -> DbSpool {
        DbSpool::open(&self.url, WAIT).unwrap()
    }
}

/// Each listed body becomes `<body>::sqlite` and `<body>::postgres`.
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn sqlite() {
                super::$body(super::TestDb::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(db) = super::TestDb::postgres() {
                    super::$body(db);
                }
            }
        }
    )*};
}

on_both_backends!(
    conformance_suite,
    trim_keeps_leased_rows,
    claims_are_exclusive_across_replicas,
    spools_share_a_table,
    a_table_made_before_log_batches_takes_them_and_keeps_its_rows
);

fn record(signal: Signal, items: u64, size: usize) -> SpoolRecord {
    SpoolRecord { signal, items, attempts: 0, created_unix_ms: unix_millis_now(), body: vec![7u8; size].into() }
}

fn conformance_suite(db: TestDb) {
    let spool = db.spool();
    assert_eq!(spool.kind(), db.kind);
    conformance::check(&spool);
    // Ids keep growing after the newest rows were deleted (AUTOINCREMENT, a sequence).
    spool.append(vec![record(Signal::Traces, 1, 10)], 1 << 20).unwrap();
    let first = spool.claim_oldest(1, Duration::from_secs(60)).unwrap();
    spool.remove(&[first[0].id]).unwrap();
    spool.append(vec![record(Signal::Traces, 1, 10)], 1 << 20).unwrap();
    let second = spool.claim_oldest(1, Duration::from_secs(60)).unwrap();
    assert!(second[0].id > first[0].id, "{} then {}", first[0].id, second[0].id);
}

/// A row leased for replay survives the size bound and expiry, however old: the trim deletes
/// the free rows around it.
fn trim_keeps_leased_rows(db: TestDb) {
    let spool = db.spool();
    conformance::leased_batches_survive_trimming(&spool);
    // The same with the byte total read from the table rather than known.
    let fresh = db.spool();
    fresh.append((0..3).map(|i| record(Signal::Traces, i, 100)).collect(), 1 << 20).unwrap();
    let leased = fresh.claim_oldest(1, Duration::from_secs(60)).unwrap();
    let other = db.spool();
    let evicted = other.append(vec![record(Signal::Traces, 9, 100)], 200).unwrap();
    assert_eq!(evicted.iter().map(|e| e.batches).sum::<u64>(), 2, "{evicted:?}");
    let stats = other.stats().unwrap();
    assert_eq!((stats.batches, stats.bytes), (2, 200), "the leased row and the newest stay");
    fresh.remove(&[leased[0].id]).unwrap();
    assert_eq!(other.stats().unwrap().batches, 1);
}

/// Two spools over one database (two replicas) claiming at once never lease the same row.
fn claims_are_exclusive_across_replicas(db: TestDb) {
    const ROWS: usize = 300;
    let writer = db.spool();
    writer.append((0..ROWS).map(|i| record(Signal::Traces, i as u64, 16)).collect(), 1 << 30).unwrap();
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let spool = db.spool();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut ids = Vec::new();
                loop {
                    let claimed = spool.claim_oldest(7, Duration::from_secs(60)).unwrap();
                    if claimed.is_empty() {
                        return ids;
                    }
                    ids.extend(claimed.iter().map(|b| b.id));
                }
            })
        })
        .collect();
    let claims: Vec<Vec<i64>> = replicas.into_iter().map(|r| r.join().unwrap()).collect();
    let mut all: Vec<i64> = claims.concat();
    let claimed = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), claimed, "a row was leased twice: {} claims, {} rows", claimed, all.len());
    assert_eq!(claimed, ROWS, "every row was claimed once ({} and {})", claims[0].len(), claims[1].len());
    assert!(writer.claim_oldest(10, Duration::from_secs(60)).unwrap().is_empty());
}

/// The table is created once and then shared: a second spool (another process) sees the first's
/// rows, the byte bound counts both.
fn spools_share_a_table(db: TestDb) {
    let first = db.spool();
    first.append(vec![record(Signal::Metrics, 4, 50)], 1 << 20).unwrap();
    let second = db.spool();
    let stats = second.stats().unwrap();
    assert_eq!((stats.batches, stats.items_of(Signal::Metrics), stats.bytes), (1, 4, 50));
    let evicted = second.append(vec![record(Signal::Traces, 1, 50)], 60).unwrap();
    assert_eq!(evicted.iter().map(|e| e.batches).sum::<u64>(), 1, "the older row went: {evicted:?}");
    assert_eq!(first.stats().unwrap().items_of(Signal::Traces), 1);
}

/// The table as it was made before log batches were spooled: its check admits traces and
/// metrics only. Opening the spool upgrades it in place; the rows already there stay.
fn a_table_made_before_log_batches_takes_them_and_keeps_its_rows(db: TestDb) {
    const OLD_COLUMNS: &str = "signal TEXT NOT NULL CHECK (signal IN ('traces', 'metrics')),
        items BIGINT NOT NULL, size_bytes BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        created_at_ms BIGINT NOT NULL, lease_until_ms BIGINT NOT NULL DEFAULT 0,";
    const OLD_ROW: &str = "INSERT INTO telemetry_spool (signal, items, size_bytes, created_at_ms, body)";
    match db.kind {
        "sqlite" => {
            std::fs::create_dir_all(std::path::Path::new(&db.url).parent().unwrap()).unwrap();
            let mut conn = SqliteConnection::establish(&db.url).unwrap();
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                &format!(
                    "CREATE TABLE telemetry_spool (id INTEGER PRIMARY KEY AUTOINCREMENT, {OLD_COLUMNS} body BLOB NOT NULL);
                     {OLD_ROW} VALUES ('traces', 3, 4, 1, x'01020304');"
                ),
            )
            .unwrap();
            let refused = diesel::sql_query(format!("{OLD_ROW} VALUES ('logs', 1, 1, 1, x'01')")).execute(&mut conn);
            assert!(refused.is_err(), "the old check refuses log rows");
        }
        _ => {
            let mut conn = PgConnection::establish(&db.url).unwrap();
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                &format!(
                    "CREATE TABLE telemetry_spool (id BIGSERIAL PRIMARY KEY, {OLD_COLUMNS} body BYTEA NOT NULL);
                     {OLD_ROW} VALUES ('traces', 3, 4, 1, '\\x01020304');"
                ),
            )
            .unwrap();
            let refused = diesel::sql_query(format!("{OLD_ROW} VALUES ('logs', 1, 1, 1, '\\x01')")).execute(&mut conn);
            assert!(refused.is_err(), "the old check refuses log rows");
        }
    }
    let spool = db.spool();
    spool.append(vec![record(Signal::Logs, 5, 40)], 1 << 20).expect("a log batch is spooled after the upgrade");
    let stats = spool.stats().unwrap();
    assert_eq!((stats.items_of(Signal::Traces), stats.items_of(Signal::Logs), stats.batches), (3, 5, 2));
    let oldest = spool.claim_oldest(2, Duration::from_secs(60)).unwrap();
    assert_eq!(oldest.iter().map(|b| b.signal).collect::<Vec<_>>(), [Signal::Traces, Signal::Logs]);
    assert_eq!(&oldest[0].body[..], [1, 2, 3, 4], "the old row kept its body");
    // A second spool over the upgraded table leaves it as it is.
    assert_eq!(db.spool().stats().unwrap().batches, 2);
}

#[test]
fn in_memory_sqlite() {
    for url in [":memory:", "sqlite::memory:", "sqlite://:memory:"] {
        let spool = DbSpool::open(url, WAIT).unwrap();
        assert_eq!(spool.kind(), "sqlite");
        conformance::check(&spool);
        // Clones share the one connection, and so the data.
        let clone = spool.clone();
        clone.append(vec![record(Signal::Traces, 2, 10)], 1 << 20).unwrap();
        assert_eq!(spool.stats().unwrap().items_of(Signal::Traces), 2, "{url}");
    }
}

#[cfg(unix)]
#[test]
fn a_sqlite_file_is_created_private_with_its_table() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    for (url, path) in [
        (dir.path().join("a").join("bare.db").display().to_string(), dir.path().join("a").join("bare.db")),
        (format!("sqlite://{}", dir.path().join("b.db").display()), dir.path().join("b.db")),
    ] {
        let spool = DbSpool::open(&url, WAIT).unwrap();
        spool.append(vec![record(Signal::Traces, 1, 10)], 1 << 20).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{url}");
        let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
        let found: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT COUNT(*) FROM sqlite_master WHERE name IN ('telemetry_spool', 'telemetry_spool_created_at_ms_idx'))",
        ))
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(found, 2, "the table and its index");
    }
    // A `file:` URI, handed to SQLite.
    let uri = format!("file:{}?mode=rwc", dir.path().join("uri.db").display());
    let spool = DbSpool::open(&uri, WAIT).unwrap();
    spool.append(vec![record(Signal::Traces, 1, 10)], 1 << 20).unwrap();
    assert!(dir.path().join("uri.db").is_file());
}

#[test]
fn nonsense_urls_are_refused() {
    for url in ["", "ftp://x", "mysql://root:hunter2@h/db", "sqlite://"] {
        let err = DbSpool::open(url, WAIT).unwrap_err();
        assert!(matches!(err, OpenError::Url(_)), "{url}: {err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn assert_unavailable(spool: &DbSpool) {
    let err = spool.append(vec![record(Signal::Traces, 1, 10)], 1 << 20).unwrap_err();
    assert!(matches!(err, SpoolError::Unavailable(_)), "{err:?}");
    let err = spool.claim_oldest(1, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, SpoolError::Unavailable(_)), "{err:?}");
    let err = spool.stats().unwrap_err();
    assert!(matches!(err, SpoolError::Unavailable(_)), "{err:?}");
}

#[test]
fn over_an_unreachable_database_calls_are_unavailable_and_hide_the_password() {
    let url = format!("postgres://mmcp:hunter2secret@127.0.0.1:{}/nowhere", closed_port());
    let spool = DbSpool::open(&url, Duration::from_millis(300)).unwrap();
    assert_eq!(spool.kind(), "postgresql");
    assert_unavailable(&spool);
    let err = spool.stats().unwrap_err().to_string();
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(!format!("{spool:?}").contains("hunter2secret"));
}

#[test]
fn over_a_dropped_database_calls_are_unavailable() {
    let Some(db) = TestDb::postgres() else { return };
    let spool = db.spool();
    spool.append(vec![record(Signal::Metrics, 1, 10)], 1 << 20).unwrap();
    assert_eq!(spool.stats().unwrap().batches, 1);
    drop(db); // DROP DATABASE … WITH (FORCE): its connections end, new ones are refused.
    assert_unavailable(&spool);
}
