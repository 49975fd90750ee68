//! Storage tests. Each body runs twice: on a SQLite file in a temporary directory, and on a fresh
//! PostgreSQL database created for the test (and dropped after it) on the server
//! `METAMCP_TEST_POSTGRES_URL` names — without it skipped with a `SKIP` line, or failed under
//! `METAMCP_CI=1`.

use std::sync::mpsc;
use std::time::Duration;

use diesel::prelude::*;
use metamcp_telemetry_actors::ingress::{DbOperation, DbSystem, MetricEvent};
use opentelemetry::trace::{FutureExt as _, SpanId, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::Context;
use opentelemetry_sdk::trace::SpanData;

use metamcp_telemetry::spool::DbSpool;
use metamcp_telemetry_actors::self_metrics::Signal;
use metamcp_telemetry_actors::spool::{conformance, unix_millis_now, Spool as _, SpoolRecord};

use super::schema::{endpoint_api_keys, endpoint_servers, tool_executions, tools};
use super::*;
use crate::config::DatabaseSettings;
use metamcp_telemetry::TelemetryManager;

/// `url` pointing at database `name` instead, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// A PostgreSQL database of one test, dropped (connections and all) when the test ends.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

/// Where one test's data lives.
struct TestDb {
    backend: Backend,
    settings: DatabaseSettings,
    /// `db.namespace` the spans should carry.
    namespace: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: `open` creates it.
        let path = dir.path().join("nested").join("test.db");
        Self {
            backend: Backend::Sqlite,
            settings: settings(format!("sqlite://{}", path.display())),
            namespace: "test.db".to_owned(),
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// A fresh database on the server `METAMCP_TEST_POSTGRES_URL` names; without it the test is
    /// skipped, or fails under `METAMCP_CI=1` (the decision of [`crate::test_prereq`]).
    fn postgres() -> Option<Self> {
        let admin_url = crate::test_prereq::postgres_url()?;
        let name = format!("mmcp_test_{:016x}", fastrand::u64(..));
        let mut conn = PgConnection::establish(&admin_url).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
        let url = with_database(&admin_url, &name);
        Some(Self {
            backend: Backend::Postgres,
            settings: settings(url),
            namespace: name.clone(),
            _dir: None,
            _pg: Some(PgDatabase { admin_url, name }),
        })
    }

    fn open(&self) -> Store {
        Store::open(&self.settings, &TelemetryManager::disabled()).unwrap()
    }
}

fn settings(url: String) -> DatabaseSettings {
    DatabaseSettings {
        url,
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        busy_timeout: Duration::from_secs(5),
    }
}

/// Each listed body becomes `tests::<body>::sqlite` and `tests::<body>::postgres`.
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
    migrations_and_default_endpoint,
    server_crud_and_conflicts,
    endpoints_keys_and_cascades,
    endpoint_with_unknown_server_writes_nothing,
    replace_server_tools_keeps_enabled_and_deletes_stale,
    tool_filters_and_pagination,
    executions_newest_first,
    executions_in_one_batch,
    query_spans_and_metrics,
    run_parents_query_spans_under_the_current_span,
    pool_collector_gauges,
    readiness_probe_reports_the_pool,
    concurrent_writers_all_succeed,
    api_keys_are_listed_used_and_revoked_by_prefix,
    executions_are_pruned_by_age_and_by_count,
    exhausted_pool_is_unavailable,
    spool_queries_are_unrecorded,
    servers_of_every_transport,
    migration_keeps_existing_servers_tools_and_links,
    rate_limits_of_endpoints_and_keys,
);

fn server(name: &str) -> NewServer {
    NewServer::http(name, format!("http://127.0.0.1:9/{name}/mcp"))
}

fn endpoint(name: &str) -> NewEndpoint {
    NewEndpoint {
        name: name.to_owned(),
        description: format!("{name} endpoint"),
        auth_required: true,
        rate_limit_rps: None,
        rate_limit_burst: None,
    }
}

fn new_tool(name: &str, description: &str) -> NewTool {
    NewTool {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema: r#"{"type":"object"}"#.to_owned(),
        embedding: None,
    }
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|item| name(item).to_owned()).collect()
}

fn migrations_and_default_endpoint(db: TestDb) {
    let store = db.open();
    assert_eq!(store.backend(), db.backend);
    let default = store.run_blocking(|c| get_endpoint(c, DEFAULT_ENDPOINT)).unwrap();
    assert_eq!(default.endpoint.description, "Built-in tools");
    assert!(!default.endpoint.auth_required);
    assert!(default.servers.is_empty() && default.api_keys.is_empty());
    drop(store);

    // Opening again applies no migration twice and adds no second default endpoint.
    let store = db.open();
    store.run_blocking(ensure_default_endpoint).unwrap();
    let listed = store.run_blocking(|c| list_endpoints(c, Page::ALL)).unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items[0].endpoint.name, DEFAULT_ENDPOINT);
    // Every table of the schema answers.
    store
        .run_blocking(|c| {
            list_servers(c, Page::ALL)?;
            list_tools(c, &ToolFilter::default(), Page::ALL)?;
            list_executions(c, &ExecutionFilter::default(), Page::ALL)
        })
        .unwrap();
}

fn server_crud_and_conflicts(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            let beta = create_server(c, &NewServer { timeout_ms: Some(1500), enabled: false, ..server("beta") })?;
            assert_eq!(beta.name, "beta");
            assert_eq!(beta.timeout_ms, Some(1500));
            assert!(!beta.enabled);
            assert!(beta.created_at > 0);
            create_server(c, &server("alpha"))?;
            assert_eq!(get_server(c, "beta")?, beta);

            let listed = list_servers(c, Page::ALL)?;
            assert_eq!(listed.total, 2);
            assert_eq!(names(&listed.items, |s| &s.name), ["alpha", "beta"]);
            let second = list_servers(c, Page::new(1, 1))?;
            assert_eq!((second.total, names(&second.items, |s| &s.name)), (2, vec!["beta".to_owned()]));

            let duplicate = create_server(c, &server("alpha")).unwrap_err();
            assert!(matches!(duplicate, StorageError::Conflict(ref m) if m.contains("alpha")), "{duplicate:?}");
            for bad in ["", "has space", "a__b", "x.y", &"n".repeat(65)] {
                let err = create_server(c, &server(bad)).unwrap_err();
                assert!(matches!(err, StorageError::Invalid(_)), "{bad:?}: {err:?}");
            }
            assert!(matches!(
                create_server(c, &NewServer { timeout_ms: Some(0), ..server("zero") }),
                Err(StorageError::Invalid(_))
            ));
            assert!(matches!(list_servers(c, Page::new(-1, 0)), Err(StorageError::Invalid(_))));

            delete_server(c, "alpha")?;
            assert!(matches!(delete_server(c, "alpha"), Err(StorageError::NotFound(_))));
            let missing = get_server(c, "alpha").unwrap_err();
            assert!(matches!(missing, StorageError::NotFound(ref m) if m.contains("alpha")), "{missing:?}");
            assert!(!missing.is_unavailable());
            assert_eq!(list_servers(c, Page::ALL)?.total, 1);
            Ok(())
        })
        .unwrap();
}

fn endpoints_keys_and_cascades(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            create_server(c, &server("a"))?;
            create_server(c, &server("b"))?;
            create_server(c, &server("c"))?;
            replace_server_tools(c, "a", &[new_tool("t", "a tool")])?;
            let created = create_endpoint(c, &endpoint("team"), &["b".to_owned(), "a".to_owned(), "a".to_owned()])?;
            assert_eq!(created.servers, ["a", "b"]);
            assert!(created.endpoint.auth_required);
            assert!(matches!(create_endpoint(c, &endpoint("team"), &[]), Err(StorageError::Conflict(_))));
            assert!(matches!(create_endpoint(c, &endpoint("bad name"), &[]), Err(StorageError::Invalid(_))));

            // Attaching twice changes nothing; detaching what is not attached is NotFound.
            assert_eq!(attach_server(c, "team", "c")?.servers, ["a", "b", "c"]);
            assert_eq!(attach_server(c, "team", "c")?.servers, ["a", "b", "c"]);
            assert_eq!(detach_server(c, "team", "b")?.servers, ["a", "c"]);
            assert!(matches!(detach_server(c, "team", "b"), Err(StorageError::NotFound(_))));
            assert!(matches!(attach_server(c, "team", "nope"), Err(StorageError::NotFound(_))));
            assert!(matches!(attach_server(c, "nope", "a"), Err(StorageError::NotFound(_))));
            assert_eq!(names(&endpoint_servers(c, "team")?, |s| &s.name), ["a", "c"]);

            let hash = "AB".repeat(32);
            let key = add_api_key(c, "team", &hash, "mmcp_abc", None)?;
            assert_eq!(key.prefix, "mmcp_abc");
            assert_eq!(api_key_hashes(c, "team")?, ["ab".repeat(32)]);
            assert!(matches!(add_api_key(c, "team", &hash, "mmcp_abc", None), Err(StorageError::Conflict(_))));
            assert!(matches!(add_api_key(c, "team", "abc", "x", None), Err(StorageError::Invalid(_))));
            assert!(matches!(
                add_api_key(c, "team", &"c".repeat(64), "a-too-long-prefix", None),
                Err(StorageError::Invalid(_))
            ));
            assert!(matches!(api_key_hashes(c, "nope"), Err(StorageError::NotFound(_))));
            let detail = get_endpoint(c, "team")?;
            assert_eq!(detail.api_keys, [key]);
            // The listing serializes flat, with servers and keys but never a hash.
            let json = serde_json::to_value(&detail).unwrap();
            assert_eq!(json["name"], "team");
            assert_eq!(json["servers"], serde_json::json!(["a", "c"]));
            assert!(!json.to_string().contains(&"ab".repeat(32)));

            // Deleting a server removes its tools and its place in endpoints.
            delete_server(c, "a")?;
            assert_eq!(get_endpoint(c, "team")?.servers, ["c"]);
            assert_eq!(tools::table.count().get_result::<i64>(c)?, 0);

            // Deleting an endpoint removes its keys and links, not its servers.
            delete_endpoint(c, "team")?;
            assert!(matches!(get_endpoint(c, "team"), Err(StorageError::NotFound(_))));
            assert!(matches!(delete_endpoint(c, "team"), Err(StorageError::NotFound(_))));
            assert_eq!(endpoint_api_keys::table.count().get_result::<i64>(c)?, 0);
            assert_eq!(endpoint_servers::table.count().get_result::<i64>(c)?, 0);
            assert_eq!(list_servers(c, Page::ALL)?.total, 2);
            Ok(())
        })
        .unwrap();
}

fn endpoint_with_unknown_server_writes_nothing(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            create_server(c, &server("known"))?;
            let err = create_endpoint(c, &endpoint("half"), &["known".to_owned(), "unknown".to_owned()]).unwrap_err();
            assert!(matches!(err, StorageError::NotFound(ref m) if m.contains("unknown")), "{err:?}");
            assert!(matches!(get_endpoint(c, "half"), Err(StorageError::NotFound(_))));
            assert_eq!(endpoint_servers::table.count().get_result::<i64>(c)?, 0);
            // The name is free: the failed attempt left nothing behind.
            assert_eq!(create_endpoint(c, &endpoint("half"), &["known".to_owned()])?.servers, ["known"]);
            Ok(())
        })
        .unwrap();
}

fn replace_server_tools_keeps_enabled_and_deletes_stale(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            create_server(c, &server("srv"))?;
            let embedding = vec![0.25f32, -1.0, 3.5e-3, f32::MIN_POSITIVE];
            let first = replace_server_tools(
                c,
                "srv",
                &[
                    NewTool { embedding: Some(embedding.clone()), ..new_tool("search", "Search the web") },
                    new_tool("fetch", "Fetch a page"),
                    new_tool("stale", "Goes away"),
                ],
            )?;
            assert_eq!(names(&first, |t| &t.name), ["fetch", "search", "stale"]);
            assert!(first.iter().all(|t| t.enabled && t.server_name == "srv"));
            let search = get_tool(c, "srv", "search")?;
            assert_eq!(search.embedding.as_deref(), Some(embedding.as_slice()));
            assert_eq!(get_tool(c, "srv", "fetch")?.embedding, None);

            let disabled = set_tool_enabled(c, "srv", "search", false)?;
            assert!(!disabled.enabled);
            assert!(matches!(set_tool_enabled(c, "srv", "nope", false), Err(StorageError::NotFound(_))));
            assert!(matches!(set_tool_enabled(c, "nope", "search", false), Err(StorageError::NotFound(_))));

            let new_embedding = vec![1.0f32; 8];
            let second = replace_server_tools(
                c,
                "srv",
                &[
                    NewTool {
                        embedding: Some(new_embedding.clone()),
                        input_schema: r#"{"type":"object","properties":{"q":{"type":"string"}}}"#.to_owned(),
                        ..new_tool("search", "Search the web, better")
                    },
                    new_tool("fetch", "Fetch a page"),
                    new_tool("fresh", "New here"),
                    new_tool("fresh", "Listed twice"),
                ],
            )?;
            assert_eq!(names(&second, |t| &t.name), ["fetch", "fresh", "search"]);
            let search = second.iter().find(|t| t.name == "search").unwrap();
            assert!(!search.enabled, "a sync keeps an operator's choice");
            assert_eq!(search.id, disabled.id, "updated in place");
            assert_eq!(search.description, "Search the web, better");
            assert!(search.input_schema.contains("properties"));
            assert_eq!(search.embedding.as_deref(), Some(new_embedding.as_slice()));
            let fetch = second.iter().find(|t| t.name == "fetch").unwrap();
            assert_eq!(fetch.updated_at, first.iter().find(|t| t.name == "fetch").unwrap().updated_at);
            let fresh = second.iter().find(|t| t.name == "fresh").unwrap();
            assert!(fresh.enabled);
            assert_eq!(fresh.description, "New here");
            assert!(matches!(get_tool(c, "srv", "stale"), Err(StorageError::NotFound(_))));

            let all = all_tools(c)?;
            assert_eq!(all.len(), 3);
            assert_eq!(all.iter().find(|t| t.name == "search").unwrap().embedding, Some(new_embedding));
            // The embedding never reaches JSON.
            assert!(serde_json::to_value(&all[0]).unwrap().get("embedding").is_none());

            assert!(matches!(
                replace_server_tools(
                    c,
                    "srv",
                    &[NewTool { input_schema: "{not json".to_owned(), ..new_tool("x", "") }]
                ),
                Err(StorageError::Invalid(_))
            ));
            assert!(matches!(replace_server_tools(c, "nope", &[]), Err(StorageError::NotFound(_))));
            assert_eq!(all_tools(c)?.len(), 3, "refused syncs change nothing");
            assert!(replace_server_tools(c, "srv", &[])?.is_empty());
            assert!(all_tools(c)?.is_empty());
            Ok(())
        })
        .unwrap();
}

fn tool_filters_and_pagination(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            create_server(c, &server("one"))?;
            create_server(c, &server("two"))?;
            replace_server_tools(
                c,
                "one",
                &[
                    new_tool("read_file", "Reads a FILE from disk"),
                    new_tool("write_file", "Writes a file"),
                    new_tool("percent", "Gives 100% or nothing"),
                ],
            )?;
            replace_server_tools(c, "two", &[new_tool("Search", "Web search"), new_tool("fetch", "Fetch a URL")])?;
            set_tool_enabled(c, "one", "write_file", false)?;
            create_endpoint(c, &endpoint("web"), &["two".to_owned()])?;

            let all = list_tools(c, &ToolFilter::default(), Page::ALL)?;
            assert_eq!(all.total, 5);
            assert_eq!(names(&all.items, |t| &t.name), ["percent", "read_file", "write_file", "Search", "fetch"]);
            assert!(all.items.iter().all(|t| t.embedding.is_none()));

            let mut filter = |f: ToolFilter| -> Vec<String> {
                let mut names = Vec::new();
                let mut offset = 0;
                // Two at a time, to check the totals against the pages.
                loop {
                    let page = list_tools(c, &f, Page::new(2, offset)).unwrap();
                    assert!(page.items.len() <= 2);
                    names.extend(page.items.iter().map(|t| t.name.clone()));
                    offset += 2;
                    if offset >= page.total {
                        assert_eq!(names.len() as i64, page.total);
                        return names;
                    }
                }
            };
            assert_eq!(
                filter(ToolFilter { server: Some("one".into()), ..Default::default() }),
                ["percent", "read_file", "write_file"]
            );
            assert_eq!(filter(ToolFilter { endpoint: Some("web".into()), ..Default::default() }), ["Search", "fetch"]);
            assert!(filter(ToolFilter { endpoint: Some("nope".into()), ..Default::default() }).is_empty());
            assert_eq!(filter(ToolFilter { enabled: Some(false), ..Default::default() }), ["write_file"]);
            // Name or description, any case.
            assert_eq!(
                filter(ToolFilter { query: Some("FILE".into()), ..Default::default() }),
                ["read_file", "write_file"]
            );
            assert_eq!(filter(ToolFilter { query: Some("search".into()), ..Default::default() }), ["Search"]);
            assert_eq!(filter(ToolFilter { query: Some("url".into()), ..Default::default() }), ["fetch"]);
            // LIKE wildcards in the text are taken literally.
            assert_eq!(filter(ToolFilter { query: Some("0%".into()), ..Default::default() }), ["percent"]);
            assert_eq!(
                filter(ToolFilter { query: Some("_".into()), ..Default::default() }),
                ["read_file", "write_file"]
            );
            assert_eq!(
                filter(ToolFilter {
                    server: Some("one".into()),
                    enabled: Some(true),
                    query: Some("file".into()),
                    ..Default::default()
                }),
                ["read_file"]
            );
            let page = list_tools(c, &ToolFilter::default(), Page::new(2, 4))?;
            assert_eq!((page.total, page.items.len()), (5, 1));
            let empty = list_tools(c, &ToolFilter::default(), Page::new(0, 0))?;
            assert_eq!((empty.total, empty.items.len()), (5, 0));
            Ok(())
        })
        .unwrap();
}

fn executions_in_one_batch(db: TestDb) {
    let store = db.open();
    let rows: Vec<NewExecution> = (0..1500)
        .map(|i| NewExecution {
            endpoint: Some("default".into()),
            tool_name: format!("tool_{}", i % 3),
            success: i % 5 != 0,
            duration_ms: f64::from(i),
            error_message: (i % 5 == 0).then(|| format!("failure {i}")),
            trace_id: None,
        })
        .collect();
    let written = store.run_blocking(move |c| insert_executions(c, &rows)).unwrap();
    assert_eq!(written, 1500, "more rows than one statement takes are written in chunks");
    store
        .run_blocking(|c| {
            assert_eq!(list_executions(c, &ExecutionFilter::default(), Page::ALL)?.total, 1500);
            let failed = ExecutionFilter { success: Some(false), tool: Some("tool_0".into()), ..Default::default() };
            assert_eq!(list_executions(c, &failed, Page::ALL)?.total, 100);
            Ok(())
        })
        .unwrap();
    let bad = vec![NewExecution {
        endpoint: None,
        tool_name: "x".into(),
        success: true,
        duration_ms: f64::NAN,
        error_message: None,
        trace_id: None,
    }];
    assert!(matches!(store.run_blocking(move |c| insert_executions(c, &bad)), Err(StorageError::Invalid(_))));
}

fn executions_newest_first(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            let mut ids = Vec::new();
            for i in 0..6 {
                ids.push(insert_execution(
                    c,
                    &NewExecution {
                        endpoint: if i % 2 == 0 { Some("default".into()) } else { None },
                        tool_name: if i < 3 { "search".into() } else { "fetch".into() },
                        success: i != 4,
                        duration_ms: 1.5 * f64::from(i),
                        error_message: (i == 4).then(|| "é".repeat(MAX_ERROR_MESSAGE)),
                        trace_id: Some(format!("{i:032x}")),
                    },
                )?);
            }
            let all = list_executions(c, &ExecutionFilter::default(), Page::ALL)?;
            assert_eq!(all.total, 6);
            let mut newest_first = ids.clone();
            newest_first.reverse();
            assert_eq!(all.items.iter().map(|e| e.id).collect::<Vec<_>>(), newest_first);
            let failed = &all.items[1];
            assert!(!failed.success);
            assert_eq!(failed.duration_ms, 6.0);
            assert_eq!(failed.trace_id.as_deref(), Some("00000000000000000000000000000004"));
            let message = failed.error_message.as_deref().unwrap();
            assert_eq!(message.len(), MAX_ERROR_MESSAGE, "cut on a character boundary");

            let mut count = |f: ExecutionFilter| list_executions(c, &f, Page::ALL).unwrap().total;
            assert_eq!(count(ExecutionFilter { tool: Some("search".into()), ..Default::default() }), 3);
            assert_eq!(count(ExecutionFilter { endpoint: Some("default".into()), ..Default::default() }), 3);
            assert_eq!(count(ExecutionFilter { success: Some(false), ..Default::default() }), 1);
            assert_eq!(
                count(ExecutionFilter {
                    tool: Some("fetch".into()),
                    endpoint: Some("default".into()),
                    success: Some(false)
                }),
                1
            );
            let page = list_executions(c, &ExecutionFilter::default(), Page::new(2, 2))?;
            assert_eq!(page.total, 6);
            assert_eq!(page.items.iter().map(|e| e.id).collect::<Vec<_>>(), newest_first[2..4]);

            let nan = NewExecution {
                endpoint: None,
                tool_name: "x".into(),
                success: true,
                duration_ms: f64::NAN,
                error_message: None,
                trace_id: None,
            };
            assert!(matches!(insert_execution(c, &nan), Err(StorageError::Invalid(_))));
            Ok(())
        })
        .unwrap();
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

fn db_spans(spans: &[SpanData]) -> Vec<&SpanData> {
    spans.iter().filter(|s| attribute(s, "db.system.name").is_some()).collect()
}

fn query_spans_and_metrics(db: TestDb) {
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let store = Store::open(&db.settings, &telemetry).unwrap();
    recorded.clear();

    store.run_blocking(|c| create_server(c, &server("secret-name"))).unwrap();
    let err = store.run_blocking(|c| create_server(c, &server("secret-name"))).unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)));
    store
        .run_blocking(|c| {
            diesel::sql_query("SELECT 'literal secret' AS a, 42 AS b").execute(c)?;
            Ok(())
        })
        .unwrap();

    let spans = recorded.spans();
    let traced = db_spans(&spans);
    let system = db.backend.as_str();
    for span in &traced {
        assert_eq!(span.span_kind, SpanKind::Client, "{}", span.name);
        assert_eq!(attribute(span, "db.system.name").as_deref(), Some(system));
        assert_eq!(attribute(span, "db.namespace").as_deref(), Some(db.namespace.as_str()));
        let text = attribute(span, "db.query.text").unwrap();
        assert!(!text.contains("secret"), "bind values and literals stay out: {text}");
        if db.backend == Backend::Postgres {
            assert_eq!(attribute(span, "server.address").as_deref(), Some("127.0.0.1"), "{}", span.name);
            assert!(attribute(span, "server.port").is_some());
        } else {
            assert_eq!(attribute(span, "server.address"), None);
        }
    }
    let inserts: Vec<_> = traced.iter().filter(|s| s.name == "INSERT mcp_servers").collect();
    assert_eq!(inserts.len(), 2, "{:?}", traced.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert_eq!(attribute(inserts[0], "db.operation.name").as_deref(), Some("INSERT"));
    assert_eq!(attribute(inserts[0], "db.collection.name").as_deref(), Some("mcp_servers"));
    let text = attribute(inserts[0], "db.query.text").unwrap();
    // Identifiers as diesel quotes them (backticks on SQLite), placeholders as sent.
    let quoted = if db.backend == Backend::Sqlite { "`mcp_servers`" } else { "\"mcp_servers\"" };
    assert!(text.starts_with(&format!("INSERT INTO {quoted} (")), "{text}");
    assert!(text.contains("VALUES (?, ?, ?, ") || text.contains("VALUES ($1, $2, $3, "), "{text}");
    assert_eq!(inserts[0].status, Status::Unset);
    assert!(matches!(inserts[1].status, Status::Error { .. }), "{:?}", inserts[1].status);
    assert_eq!(attribute(inserts[1], "error.type").as_deref(), Some("unique_violation"));

    let literal = traced.iter().find(|s| s.name == "SELECT").expect("the raw SELECT");
    assert_eq!(attribute(literal, "db.query.text").as_deref(), Some("SELECT ? AS a, ? AS b"));
    assert_eq!(attribute(literal, "db.collection.name"), None);

    // One metric event per query span, with the outcome.
    let queries: Vec<_> = recorded
        .metric_events()
        .into_iter()
        .filter_map(|event| match event {
            MetricEvent::DbQuery { system, operation, success, .. } => Some((system, operation, success)),
            _ => None,
        })
        .collect();
    assert_eq!(queries.len(), traced.len());
    let system = db.backend.db_system();
    assert!(queries.contains(&(system, DbOperation::Insert, true)));
    assert!(queries.contains(&(system, DbOperation::Insert, false)));
    assert_eq!(system, if db.backend == Backend::Sqlite { DbSystem::Sqlite } else { DbSystem::Postgresql });

    // A failure inside a transaction marks the failing statement, not the rollback.
    recorded.clear();
    store.run_blocking(|c| create_endpoint(c, &endpoint("secret-ep"), &[])).unwrap();
    let err = store.run_blocking(|c| create_endpoint(c, &endpoint("secret-ep"), &[])).unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)));
    let spans = recorded.spans();
    let inserts: Vec<_> = spans.iter().filter(|s| s.name == "INSERT endpoints").collect();
    assert_eq!(inserts.len(), 2);
    assert_eq!(inserts[0].status, Status::Unset);
    assert!(matches!(inserts[1].status, Status::Error { .. }), "{:?}", inserts[1].status);
    assert!(spans.iter().any(|s| s.name == "ROLLBACK" && s.status == Status::Unset));
    let events = recorded.metric_events();
    let failed = events.iter().filter(|e| matches!(e, MetricEvent::DbQuery { success: false, .. })).count();
    assert_eq!(failed, 1);

    // The readiness probe's SELECT 1 is not traced.
    recorded.clear();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(store.readiness_probe().check()).unwrap();
    assert!(db_spans(&recorded.spans()).is_empty());
}

fn run_parents_query_spans_under_the_current_span(db: TestDb) {
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let store = Store::open(&db.settings, &telemetry).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    recorded.clear();

    let tracer = telemetry.tracer().unwrap();
    let cx = Context::current_with_span(tracer.start("request"));
    let parent = cx.span().span_context().clone();
    let result = runtime.block_on(
        async {
            let main_thread = std::thread::current().id();
            store
                .run(move |c| {
                    assert_ne!(std::thread::current().id(), main_thread, "runs off the caller's thread");
                    get_server(c, "missing")
                })
                .await
        }
        .with_context(cx.clone()),
    );
    assert!(matches!(result, Err(StorageError::NotFound(_))));
    // Without a current span, query spans are roots of their own traces.
    runtime.block_on(store.run(|c| list_servers(c, Page::ALL))).unwrap();
    cx.span().end();

    let spans = recorded.spans();
    let child = spans.iter().find(|s| s.name == "SELECT mcp_servers" && s.parent_span_id != SpanId::INVALID).unwrap();
    assert_eq!(child.parent_span_id, parent.span_id());
    assert_eq!(child.span_context.trace_id(), parent.trace_id());
    let roots: Vec<_> =
        db_spans(&spans).into_iter().filter(|s| s.span_context.trace_id() != parent.trace_id()).collect();
    assert!(!roots.is_empty());
    assert!(roots.iter().all(|s| s.parent_span_id == SpanId::INVALID));
}

fn gauge(families: &[prometheus::proto::MetricFamily], name: &str, state: Option<&str>) -> f64 {
    let family = families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("{name} missing"));
    let metric = family
        .get_metric()
        .iter()
        .find(|m| state.is_none_or(|state| m.get_label().iter().any(|l| l.name() == "state" && l.value() == state)))
        .unwrap();
    metric.get_gauge().get_value()
}

fn pool_collector_gauges(db: TestDb) {
    let store = db.open();
    let collector = store.pool_collector();
    let registry = prometheus::Registry::new();
    registry.register(store.pool_collector()).unwrap();

    let families = collector.collect();
    assert_eq!(gauge(&families, "metamcp_db_pool_max_connections", None), 4.0);
    assert_eq!(gauge(&families, "metamcp_db_pool_connections", Some("in_use")), 0.0);
    assert_eq!(gauge(&families, "metamcp_db_pool_connections", Some("idle")), 4.0);

    // While a connection is checked out the gauges show it.
    let held = store.run_blocking(|_| Ok(collector.collect())).unwrap();
    assert_eq!(gauge(&held, "metamcp_db_pool_connections", Some("in_use")), 1.0);
    assert_eq!(gauge(&held, "metamcp_db_pool_connections", Some("idle")), 3.0);

    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(text.contains("metamcp_db_pool_connections{state=\"idle\"} 4"), "{text}");
    assert!(text.contains("metamcp_db_pool_max_connections 4"), "{text}");
}

fn readiness_probe_reports_the_pool(db: TestDb) {
    let store = db.open();
    let probe = store.readiness_probe();
    assert_eq!(probe.name(), "database");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = std::time::Instant::now();
    let report = runtime.block_on(probe.check()).unwrap();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(report["backend"], db.backend.as_str());
    assert_eq!(report["pool_size"], 4);
    assert_eq!(report["in_use"], 0);
    assert_eq!(report["idle"], 4);
    assert_eq!(report["pool_idle"], 4);
    // The `SELECT 1` round trip, in milliseconds: some time, and no more than the whole check took.
    let latency_ms = report["latency_ms"].as_f64().unwrap();
    assert!(latency_ms > 0.0 && latency_ms <= elapsed_ms, "latency {latency_ms} ms of a {elapsed_ms} ms check");
}

fn concurrent_writers_all_succeed(db: TestDb) {
    let store = db.open();
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                for j in 0..5 {
                    let name = format!("s{i}-{j}");
                    store
                        .run_blocking(|c| {
                            create_server(c, &server(&name))?;
                            replace_server_tools(c, &name, &[new_tool("t1", "one"), new_tool("t2", "two")])?;
                            create_endpoint(c, &endpoint(&name), std::slice::from_ref(&name))?;
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let (servers, tools, endpoints) = store
        .run_blocking(|c| {
            Ok((
                list_servers(c, Page::ALL)?.total,
                list_tools(c, &ToolFilter::default(), Page::ALL)?.total,
                list_endpoints(c, Page::ALL)?.total,
            ))
        })
        .unwrap();
    assert_eq!((servers, tools, endpoints), (30, 60, 31));
}

fn exhausted_pool_is_unavailable(db: TestDb) {
    let settings =
        DatabaseSettings { pool_size: 1, connect_timeout: Duration::from_millis(200), ..db.settings.clone() };
    let store = Store::open(&settings, &TelemetryManager::disabled()).unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .run_blocking(|_| {
                    held_tx.send(()).unwrap();
                    let _ = release_rx.recv_timeout(Duration::from_secs(10));
                    Ok(())
                })
                .unwrap();
        })
    };
    held_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = runtime.block_on(store.run(|c| list_servers(c, Page::ALL))).unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    assert!(err.is_unavailable());
    let probe = runtime.block_on(store.readiness_probe().check()).unwrap_err().to_string();
    assert!(probe.contains("no ") && probe.contains("connection within"), "{probe}");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(runtime.block_on(store.run(|c| list_servers(c, Page::ALL))).unwrap().total, 0);
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn unreachable_postgres_is_unavailable_and_hides_the_password() {
    let url = format!("postgres://mmcp:hunter2secret@127.0.0.1:{}/nowhere", closed_port());
    let settings = DatabaseSettings { connect_timeout: Duration::from_millis(300), ..settings(url) };
    let err = Store::open(&settings, &TelemetryManager::disabled()).unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    assert!(err.is_unavailable());
    let message = err.to_string();
    assert!(!message.contains("hunter2secret"), "{message}");
    assert!(message.contains("mmcp:***@127.0.0.1"), "{message}");
}

#[test]
fn readiness_probe_fails_for_a_closed_postgres_port() {
    let url = format!("postgres://postgres@127.0.0.1:{}/nowhere", closed_port());
    let settings = DatabaseSettings { connect_timeout: Duration::from_millis(300), ..settings(url) };
    let store = Store::connect(&settings, &TelemetryManager::disabled(), false).unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = std::time::Instant::now();
    let err = runtime.block_on(store.readiness_probe().check()).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("no postgresql connection within 300ms"), "{err}");
    let err = runtime.block_on(store.run(|c| list_servers(c, Page::ALL))).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[test]
fn after_an_unavailable_database_calls_fail_fast_and_one_call_tries_again_after_the_window() {
    let url = format!("postgres://postgres@127.0.0.1:{}/nowhere", closed_port());
    let settings = DatabaseSettings { connect_timeout: Duration::from_millis(300), ..settings(url) };
    let store = Store::connect(&settings, &TelemetryManager::disabled(), false).unwrap();
    let first = store.run_blocking(|c| list_servers(c, Page::ALL)).unwrap_err();
    assert!(first.is_unavailable() && first.to_string().contains("no postgresql connection"), "{first}");
    // Within the window nobody waits for a connection: the answer says why at once.
    let second = store.run_blocking(|c| list_servers(c, Page::ALL)).unwrap_err();
    assert!(second.is_unavailable(), "{second:?}");
    assert!(second.to_string().contains("unavailable moments ago"), "{second}");
    // Once the window is over, a call tries the database again (and finds it still away).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let retried = loop {
        let err = store.run_blocking(|c| list_servers(c, Page::ALL)).unwrap_err();
        if err.to_string().contains("no postgresql connection") {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(retried, "no call tried the database again after the window");
}

#[test]
fn memory_database_keeps_its_data_in_one_connection() {
    let settings = DatabaseSettings { pool_size: 8, ..settings("sqlite://:memory:".to_owned()) };
    let store = Store::open(&settings, &TelemetryManager::disabled()).unwrap();
    store.run_blocking(|c| create_server(c, &server("mem"))).unwrap();
    // A second checkout sees the same database: the pool holds a single connection.
    assert_eq!(store.run_blocking(|c| get_server(c, "mem")).unwrap().name, "mem");
    assert_eq!(store.run_blocking(|c| get_endpoint(c, DEFAULT_ENDPOINT)).unwrap().endpoint.name, "default");
    let families = store.pool_collector().collect();
    assert_eq!(gauge(&families, "metamcp_db_pool_max_connections", None), 1.0);
}

#[test]
fn sqlite_connections_have_the_pragmas() {
    let db = TestDb::sqlite();
    let settings = DatabaseSettings { busy_timeout: Duration::from_millis(1234), ..db.settings.clone() };
    let store = Store::open(&settings, &TelemetryManager::disabled()).unwrap();
    #[derive(QueryableByName)]
    struct Pragmas {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        foreign_keys: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        timeout: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        synchronous: i64,
    }
    let pragmas = store
        .run_blocking(|c| {
            Ok(diesel::sql_query(
                "SELECT (SELECT foreign_keys FROM pragma_foreign_keys) AS foreign_keys, \
                 (SELECT timeout FROM pragma_busy_timeout) AS timeout, \
                 (SELECT journal_mode FROM pragma_journal_mode) AS journal_mode, \
                 (SELECT synchronous FROM pragma_synchronous) AS synchronous",
            )
            .get_result::<Pragmas>(c)?)
        })
        .unwrap();
    assert_eq!(pragmas.foreign_keys, 1);
    assert_eq!(pragmas.timeout, 1234);
    assert_eq!(pragmas.journal_mode, "wal");
    assert_eq!(pragmas.synchronous, 1, "NORMAL");
}

#[test]
fn disabled_telemetry_installs_no_instrumentation() {
    let db = TestDb::sqlite();
    let store = db.open();
    let installed = store
        .run_blocking(|c| {
            use diesel::Connection as _;
            Ok(c.instrumentation().downcast_ref::<super::instrument::QueryInstrumentation>().is_some())
        })
        .unwrap();
    assert!(!installed);
}

/// Polls `future` on this thread, outside any async runtime.
fn block_on_without_runtime<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        assert!(std::time::Instant::now() < deadline, "no answer within 10s");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn run_works_outside_an_async_runtime() {
    let db = TestDb::sqlite();
    let store = db.open();
    assert!(tokio::runtime::Handle::try_current().is_err());
    let created = block_on_without_runtime(store.run(|c| create_server(c, &server("threaded")))).unwrap();
    assert_eq!(created.name, "threaded");
    let report = block_on_without_runtime(store.readiness_probe().check()).unwrap();
    assert_eq!(report["backend"], "sqlite");
}

#[test]
fn new_records_deserialize_with_defaults() {
    let server: NewServer = serde_json::from_str(r#"{"name":"s","url":"http://h/mcp"}"#).unwrap();
    assert!(server.enabled);
    assert_eq!(server.timeout_ms, None);
    let endpoint: NewEndpoint = serde_json::from_str(r#"{"name":"e","auth_required":false}"#).unwrap();
    assert_eq!(endpoint.description, "");
    assert_eq!(serde_json::to_value(Backend::Postgres).unwrap(), "postgresql");
    assert_eq!(Backend::Sqlite.to_string(), "sqlite");
    assert_eq!(Backend::Postgres.db_system(), DbSystem::Postgresql);
}

// The database spool: the library's (its own tests run the conformance suite on both backends);
// here, what the gateway relies on when it attaches one to its own database.

fn spool_record(signal: Signal, items: u64, size: usize) -> SpoolRecord {
    SpoolRecord { signal, items, attempts: 0, created_unix_ms: unix_millis_now(), body: vec![7u8; size].into() }
}

/// The spool the gateway attaches over `settings`' database.
fn spool_of(settings: &DatabaseSettings) -> DbSpool {
    DbSpool::open(&settings.url, settings.connect_timeout).unwrap()
}

/// Drives every spool operation once.
fn exercise_spool(spool: &DbSpool) {
    let records = vec![spool_record(Signal::Traces, 3, 100), spool_record(Signal::Metrics, 2, 100)];
    spool.append(records, 150).unwrap();
    let claimed = spool.claim_oldest(10, Duration::from_secs(60)).unwrap();
    assert_eq!(claimed.len(), 1);
    spool.release(claimed[0].id, 1).unwrap();
    assert_eq!(spool.stats().unwrap().batches, 1);
    spool.remove(&[claimed[0].id]).unwrap();
    spool.expire(unix_millis_now() + 1).unwrap();
}

/// Spool statements make no span and no metric: they would feed the pipeline from its own
/// exporter. The store's own queries, through the same telemetry, still do. The spool works in
/// the table the store's migrations made.
fn spool_queries_are_unrecorded(db: TestDb) {
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let store = Store::open(&db.settings, &telemetry).unwrap();
    let spool = spool_of(&db.settings);
    assert_eq!(spool.kind(), db.backend.as_str());
    assert_spool_unrecorded(&store, &spool, &recorded);
    spool.append(vec![spool_record(Signal::Traces, 1, 10)], 1 << 20).unwrap();
    let rows: i64 = store
        .run_blocking(|c| {
            Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT COUNT(*) FROM telemetry_spool)"))
                .get_result(c)?)
        })
        .unwrap();
    assert_eq!(rows, 1, "the spool writes the gateway's table");
}

fn assert_spool_unrecorded(store: &Store, spool: &DbSpool, recorded: &metamcp_telemetry::TestTelemetry) {
    recorded.clear();
    exercise_spool(spool);
    let spans = recorded.spans();
    assert!(db_spans(&spans).is_empty(), "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let db_events =
        |events: Vec<MetricEvent>| events.into_iter().filter(|e| matches!(e, MetricEvent::DbQuery { .. })).count();
    assert_eq!(db_events(recorded.metric_events()), 0);
    store.run_blocking(|c| list_servers(c, Page::ALL)).unwrap();
    assert!(!db_spans(&recorded.spans()).is_empty(), "the store's queries are recorded");
    assert!(db_events(recorded.metric_events()) > 0);
    recorded.clear();
    exercise_spool(spool);
    store.run_blocking(|c| list_servers(c, Page::ALL)).unwrap();
    let spans = recorded.spans();
    let traced = db_spans(&spans);
    assert!(traced.iter().all(|s| !attribute(s, "db.query.text").unwrap_or_default().contains("telemetry_spool")));
    assert!(traced.iter().any(|s| s.name.ends_with("mcp_servers")));
}

/// Over `sqlite://:memory:` the spool has an in-memory database of its own (a connection to
/// `:memory:` never sees another's data): it works, unrecorded, and the store's database keeps
/// its data and an empty spool table.
#[test]
fn spool_on_an_in_memory_database() {
    let settings = settings("sqlite://:memory:".to_owned());
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let store = Store::open(&settings, &telemetry).unwrap();
    store.run_blocking(|c| create_server(c, &server("kept"))).unwrap();
    let spool = spool_of(&settings);
    assert_eq!(spool.kind(), "sqlite");
    conformance::check(&spool);
    assert_spool_unrecorded(&store, &spool, &recorded);
    spool.append(vec![spool_record(Signal::Traces, 1, 10)], 1 << 20).unwrap();
    assert_eq!(spool.stats().unwrap().batches, 1);
    let (servers, spooled) = store
        .run_blocking(|c| {
            let count = diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT COUNT(*) FROM telemetry_spool)");
            Ok((list_servers(c, Page::ALL)?.total, diesel::select(count).get_result::<i64>(c)?))
        })
        .unwrap();
    assert_eq!((servers, spooled), (1, 0));
}

fn api_keys_are_listed_used_and_revoked_by_prefix(db: TestDb) {
    let store = db.open();
    store
        .run_blocking(|c| {
            create_endpoint(c, &endpoint("team"), &[])?;
            create_endpoint(c, &endpoint("other"), &[])?;
            let first = add_api_key(c, "team", &"a".repeat(64), "mmcp_aaa1111", None)?;
            let second = add_api_key(c, "team", &"b".repeat(64), "mmcp_aaa2222", None)?;
            let elsewhere = add_api_key(c, "other", &"c".repeat(64), "mmcp_aaa3333", None)?;
            assert_eq!(first.last_used_at, None);

            let listed = list_api_keys(c, "team", Page::ALL)?;
            assert_eq!(listed.total, 2);
            assert_eq!(listed.items, [first.clone(), second.clone()]);
            assert_eq!(list_api_keys(c, "team", Page::new(1, 1))?.items, std::slice::from_ref(&second));
            assert!(matches!(list_api_keys(c, "nope", Page::ALL), Err(StorageError::NotFound(_))));
            let json = serde_json::to_string(&listed.items).unwrap();
            assert!(!json.contains(&"a".repeat(64)), "never the hash: {json}");

            touch_api_key(c, first.id, 1_700_000_000_000)?;
            assert_eq!(list_api_keys(c, "team", Page::ALL)?.items[0].last_used_at, Some(1_700_000_000_000));
            touch_api_key(c, 999_999, 1)?;

            let keys = api_keys(c, "team")?;
            assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [first.id, second.id]);

            // A prefix of both is ambiguous and deletes nothing; one of another endpoint is unknown.
            assert!(matches!(revoke_api_key(c, "team", "mmcp_aaa"), Err(StorageError::Conflict(_))));
            assert!(matches!(revoke_api_key(c, "team", "mmcp_aaa3"), Err(StorageError::NotFound(_))));
            assert!(matches!(revoke_api_key(c, "team", "mmcp_%"), Err(StorageError::Invalid(_))));
            assert!(matches!(revoke_api_key(c, "team", ""), Err(StorageError::Invalid(_))));
            assert!(matches!(revoke_api_key(c, "nope", "mmcp_aaa1"), Err(StorageError::NotFound(_))));
            assert_eq!(list_api_keys(c, "team", Page::ALL)?.total, 2);

            let revoked = revoke_api_key(c, "team", "mmcp_aaa2")?;
            assert_eq!(revoked.id, second.id);
            assert_eq!(api_key_hashes(c, "team")?, ["a".repeat(64)]);
            assert_eq!(api_key_hashes(c, "other")?, ["c".repeat(64)], "other endpoints keep theirs");
            assert!(matches!(revoke_api_key(c, "team", "mmcp_aaa2"), Err(StorageError::NotFound(_))));
            assert_eq!(revoke_api_key(c, "team", "mmcp_aaa")?.id, first.id, "no longer ambiguous");
            assert_eq!(revoke_api_key(c, "other", "mmcp_aaa3333")?.id, elsewhere.id, "the whole prefix");
            Ok(())
        })
        .unwrap();
}

fn executions_are_pruned_by_age_and_by_count(db: TestDb) {
    let store = db.open();
    let rows: Vec<NewExecution> = (0..25)
        .map(|i| NewExecution {
            endpoint: None,
            tool_name: format!("t{i}"),
            success: true,
            duration_ms: 1.0,
            error_message: None,
            trace_id: None,
        })
        .collect();
    store.run_blocking(move |c| insert_executions(c, &rows)).unwrap();
    store
        .run_blocking(|c| {
            // The first 10 rows are a year old.
            let ids: Vec<i64> = tool_executions::table
                .select(tool_executions::id)
                .order(tool_executions::id.asc())
                .limit(10)
                .load(c)?;
            diesel::update(tool_executions::table.filter(tool_executions::id.eq_any(&ids)))
                .set(tool_executions::created_at.eq(1_000))
                .execute(c)?;
            // In chunks: 4, 4, 2, then nothing.
            assert_eq!(delete_executions_before(c, 2_000, 4)?, 4);
            assert_eq!(delete_executions_before(c, 2_000, 4)?, 4);
            assert_eq!(delete_executions_before(c, 2_000, 4)?, 2);
            assert_eq!(delete_executions_before(c, 2_000, 4)?, 0);
            let all = list_executions(c, &ExecutionFilter::default(), Page::ALL)?;
            assert_eq!(all.total, 15);
            assert!(all.items.iter().all(|row| row.created_at > 2_000));

            // Keep the newest 6 of the 15.
            assert_eq!(delete_executions_beyond(c, 6, 5)?, 5);
            assert_eq!(delete_executions_beyond(c, 6, 5)?, 4);
            assert_eq!(delete_executions_beyond(c, 6, 5)?, 0);
            let kept: Vec<String> =
                tool_executions::table.select(tool_executions::tool_name).order(tool_executions::id.asc()).load(c)?;
            assert_eq!(kept, (19..25).map(|i| format!("t{i}")).collect::<Vec<_>>(), "the newest stay");
            assert_eq!(delete_executions_beyond(c, 100, 5)?, 0);
            Ok(())
        })
        .unwrap();
}

#[cfg(unix)]
#[test]
fn the_sqlite_file_and_its_wal_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    let store = Store::open(&settings(format!("sqlite://{}", path.display())), &TelemetryManager::disabled()).unwrap();
    store.run_blocking(|c| create_endpoint(c, &endpoint("x"), &[])).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        let mode = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{file}: {e}")).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
}

// Servers of every transport.

fn stdio(name: &str) -> NewServer {
    NewServer::with_spec(
        name,
        crate::upstream::ServerSpec::Stdio {
            command: "/usr/bin/python3".to_owned(),
            args: vec!["server.py".to_owned(), "--flag".to_owned()],
            env: [("API_TOKEN".to_owned(), "tok-5ecret".to_owned()), ("MODE".to_owned(), "x".to_owned())].into(),
            cwd: Some("/srv/mcp".to_owned()),
        },
    )
}

fn servers_of_every_transport(db: TestDb) {
    use crate::upstream::{ServerSpec, Transport};
    let store = db.open();
    store
        .run_blocking(|c| {
            let local = create_server(c, &stdio("local"))?;
            assert_eq!(local.transport, Transport::Stdio);
            assert_eq!(local.url, None);
            assert_eq!(local.spec(), stdio("local").spec());
            let sse = create_server(
                c,
                &NewServer::with_spec("legacy", ServerSpec::Sse { url: "http://127.0.0.1:9/sse".to_owned() }),
            )?;
            assert_eq!(sse.spec(), ServerSpec::Sse { url: "http://127.0.0.1:9/sse".to_owned() });
            let http = create_server(c, &server("http"))?;
            assert_eq!(http.transport, Transport::StreamableHttp);
            assert!(http.args.is_empty() && http.env.is_empty() && http.command.is_none());

            assert_eq!(get_server(c, "local")?, local);
            let listed = list_servers(c, Page::ALL)?;
            assert_eq!(names(&listed.items, |s| &s.name), ["http", "legacy", "local"]);
            assert_eq!(listed.items[2], local);
            create_endpoint(c, &NewEndpoint { auth_required: false, ..endpoint("mixed") }, &[
                "local".to_owned(),
                "legacy".to_owned(),
            ])?;
            let attached = endpoint_servers(c, "mixed")?;
            assert_eq!(attached.iter().map(|s| s.spec().transport()).collect::<Vec<_>>(), [Transport::Sse, Transport::Stdio]);

            // The environment's values are credentials: serialized and debugged as keys only.
            let shown = serde_json::to_value(&local).unwrap();
            assert_eq!(shown["env"], serde_json::json!({"API_TOKEN": "***", "MODE": "***"}));
            assert_eq!(shown["transport"], "stdio");
            assert_eq!(shown["args"], serde_json::json!(["server.py", "--flag"]));
            for text in [shown.to_string(), format!("{local:?}"), format!("{:?}", stdio("x")), format!("{listed:?}")] {
                assert!(!text.contains("tok-5ecret"), "{text}");
                assert!(text.contains("API_TOKEN"), "{text}");
            }

            // Each transport takes its own fields, and only those.
            let mut no_command = stdio("bad");
            no_command.command = None;
            let mut url_too = stdio("bad");
            url_too.url = Some("http://h/mcp".to_owned());
            let mut env_on_http = server("bad");
            env_on_http.env.insert("K".to_owned(), "v".to_owned());
            let mut no_url = server("bad");
            no_url.url = None;
            for (bad, field) in [(no_command, "command"), (url_too, "url"), (env_on_http, "env"), (no_url, "url")] {
                let err = create_server(c, &bad).unwrap_err();
                assert!(matches!(err, StorageError::Invalid(ref m) if m.contains(field)), "{field}: {err:?}");
            }
            assert_eq!(list_servers(c, Page::ALL)?.total, 3);

            // The database keeps the rule too, whatever writes to it.
            let raw = diesel::sql_query(
                "INSERT INTO mcp_servers (name, transport, url, enabled, created_at) VALUES ('raw', 'stdio', 'http://h', TRUE, 1)",
            )
            .execute(c);
            assert!(raw.is_err(), "a stdio row with a URL and no command was stored");
            Ok(())
        })
        .unwrap();
}

/// A database with servers, tools and endpoint links written before servers had transports keeps
/// them all through the migration (on SQLite the table is rebuilt under enforced foreign keys).
fn migration_keeps_existing_servers_tools_and_links(db: TestDb) {
    use diesel::connection::SimpleConnection as _;
    use diesel::migration::{Migration, MigrationSource};
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _};

    /// The migrations written before servers had transports.
    struct Older(EmbeddedMigrations);
    impl<B: diesel::backend::Backend> MigrationSource<B> for Older {
        fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<B>>>> {
            let all = MigrationSource::<B>::migrations(&self.0)?;
            Ok(all.into_iter().filter(|m| m.name().version().to_string().as_str() < "20261220000000").collect())
        }
    }
    let old_rows = "INSERT INTO mcp_servers (name, url, enabled, timeout_ms, created_at) VALUES \
                        ('alpha', 'http://a/mcp', TRUE, NULL, 1), ('beta', 'http://b/mcp', FALSE, 900, 2); \
                    INSERT INTO endpoints (name, description, auth_required, created_at) VALUES ('e', '', FALSE, 3); \
                    INSERT INTO endpoint_servers (endpoint_id, server_id) \
                        SELECT endpoints.id, mcp_servers.id FROM endpoints, mcp_servers; \
                    INSERT INTO tools (server_id, name, description, input_schema, enabled, updated_at) \
                        SELECT id, 'echo', 'Echo', '{}', TRUE, 4 FROM mcp_servers;";
    match db.backend {
        Backend::Sqlite => {
            let path = db.settings.url.trim_start_matches("sqlite://").to_owned();
            std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
            let mut conn = SqliteConnection::establish(&path).unwrap();
            diesel::sql_query("PRAGMA foreign_keys = ON").execute(&mut conn).unwrap();
            conn.run_pending_migrations(Older(super::store::SQLITE_MIGRATIONS)).unwrap();
            conn.batch_execute(&old_rows.replace("TRUE", "1").replace("FALSE", "0")).unwrap();
            conn.run_pending_migrations(super::store::SQLITE_MIGRATIONS).unwrap();
        }
        Backend::Postgres => {
            let mut conn = PgConnection::establish(&db.settings.url).unwrap();
            conn.run_pending_migrations(Older(super::store::POSTGRES_MIGRATIONS)).unwrap();
            conn.batch_execute(old_rows).unwrap();
            conn.run_pending_migrations(super::store::POSTGRES_MIGRATIONS).unwrap();
        }
    }
    let store = db.open();
    store
        .run_blocking(|c| {
            let beta = get_server(c, "beta")?;
            assert_eq!(beta.spec(), crate::upstream::ServerSpec::StreamableHttp { url: "http://b/mcp".to_owned() });
            assert_eq!((beta.enabled, beta.timeout_ms, beta.created_at), (false, Some(900), 2));
            assert_eq!(names(&endpoint_servers(c, "e")?, |s| &s.name), ["alpha", "beta"]);
            let tools = list_tools(c, &ToolFilter::default(), Page::ALL)?;
            assert_eq!(tools.total, 2);
            // The foreign keys still cascade from the rebuilt table.
            delete_server(c, "alpha")?;
            assert_eq!(list_tools(c, &ToolFilter::default(), Page::ALL)?.total, 1);
            assert_eq!(names(&endpoint_servers(c, "e")?, |s| &s.name), ["beta"]);
            let added = create_server(c, &stdio("gamma"))?;
            assert!(added.id > beta.id);
            Ok(())
        })
        .unwrap();
}

fn rate_limits_of_endpoints_and_keys(db: TestDb) {
    use crate::ratelimit::RateLimit;
    let store = db.open();
    store
        .run_blocking(|c| {
            let limited = NewEndpoint { rate_limit_rps: Some(2.5), rate_limit_burst: Some(4), ..endpoint("limited") };
            let created = create_endpoint(c, &limited, &[])?;
            assert_eq!(created.endpoint.rate_limit(), Some(RateLimit::new(2.5, 4).unwrap()));
            assert_eq!(get_endpoint(c, "limited")?, created);
            let free = create_endpoint(c, &endpoint("free"), &[])?;
            assert_eq!(free.endpoint.rate_limit(), None);
            let shown = serde_json::to_value(&created).unwrap();
            assert_eq!((shown["rate_limit_rps"].as_f64(), shown["rate_limit_burst"].as_i64()), (Some(2.5), Some(4)));

            let changed = set_endpoint_rate_limit(c, "free", Some(RateLimit::new(0.5, 1).unwrap()))?;
            assert_eq!(changed.endpoint.rate_limit(), Some(RateLimit::new(0.5, 1).unwrap()));
            assert_eq!(set_endpoint_rate_limit(c, "limited", None)?.endpoint.rate_limit(), None);
            assert!(matches!(set_endpoint_rate_limit(c, "nope", None), Err(StorageError::NotFound(_))));
            for (rps, burst) in [(None, Some(3)), (Some(0.0), Some(1)), (Some(1.0), Some(0)), (Some(f64::NAN), None)] {
                let bad = NewEndpoint { rate_limit_rps: rps, rate_limit_burst: burst, ..endpoint("bad") };
                let err = create_endpoint(c, &bad, &[]).unwrap_err();
                assert!(matches!(err, StorageError::Invalid(ref m) if m.contains("rate_limit_")), "{err:?}");
            }

            let limit = RateLimit::new(1.0, 2).unwrap();
            let keyed = add_api_key(c, "free", &"d".repeat(64), "mmcp_ddd1111", Some(limit))?;
            assert_eq!((keyed.rate_limit_rps, keyed.rate_limit_burst), (Some(1.0), Some(2)));
            add_api_key(c, "free", &"e".repeat(64), "mmcp_eee2222", None)?;
            let hashes = api_keys(c, "free")?;
            assert_eq!(
                hashes.iter().map(|k| (k.prefix.as_str(), k.rate_limit())).collect::<Vec<_>>(),
                [("mmcp_ddd1111", Some(limit)), ("mmcp_eee2222", None)]
            );
            let unlimited = set_api_key_rate_limit(c, "free", "mmcp_ddd", None)?;
            assert_eq!((unlimited.prefix.as_str(), unlimited.rate_limit_rps), ("mmcp_ddd1111", None));
            let relimited = set_api_key_rate_limit(c, "free", "mmcp_eee", Some(limit))?;
            assert_eq!(relimited.rate_limit_burst, Some(2));
            assert!(matches!(set_api_key_rate_limit(c, "free", "mmcp_", None), Err(StorageError::Conflict(_))));
            assert!(matches!(set_api_key_rate_limit(c, "free", "mmcp_x", None), Err(StorageError::NotFound(_))));
            assert_eq!(list_api_keys(c, "free", Page::ALL)?.items[1].rate_limit_rps, Some(1.0));
            Ok(())
        })
        .unwrap();
}
