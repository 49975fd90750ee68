//! What a query span needs to know about its statement, worked out once per distinct statement:
//! a connection keeps a bounded [`StatementCache`] keyed by the SQL text diesel prints (bind
//! values left out), so a repeated statement costs a hash and a comparison instead of
//! sanitizing, tokenizing and formatting it again, and its span attributes are copied as
//! reference-count bumps.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::sync::{Arc, LazyLock, Mutex};

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use metamcp_telemetry_actors::ingress::DbOperation;
use opentelemetry::{KeyValue, StringValue};

use super::sanitize::{collection_name, floor_char_boundary, operation_name, sanitize_query, MAX_QUERY_TEXT};

/// Longest raw statement read from diesel before sanitizing (sanitizing only shrinks text).
const MAX_RAW_QUERY: usize = 16 * MAX_QUERY_TEXT;
/// What diesel's `Display` of a query writes between the SQL and the bind values.
const BINDS_MARKER: &str = " -- binds: ";
/// Distinct statements one connection remembers; past it a new statement is prepared for each
/// query and not kept.
pub(super) const MAX_STATEMENTS: usize = 512;
/// Bytes of SQL (raw and sanitized) one connection's cache holds at most: a few long statements
/// (multi-row inserts of every batch size) do not pin megabytes.
pub(super) const MAX_CACHED_BYTES: usize = 256 * 1024;
/// Distinct names (span, operation and table names) made `'static` for the whole process.
const MAX_NAMES: usize = 1024;
/// Longest name made `'static`.
const MAX_NAME_LEN: usize = 64;

/// A statement's span name, operation and attributes, ready to copy into a span.
#[derive(Debug, Clone)]
pub(super) struct Statement {
    /// The metric's operation.
    pub(super) operation: DbOperation,
    /// The span name: `db.operation.name`, then `db.collection.name` when there is one.
    pub(super) name: Cow<'static, str>,
    /// The store's common attributes, `db.operation.name`, `db.collection.name` when known and
    /// `db.query.text`; every value static or reference-counted, so a copy allocates nothing.
    attributes: Box<[KeyValue]>,
}

impl Statement {
    /// Works out the span of `raw` (SQL without bind values) on a store with `common` attributes.
    pub(super) fn prepare(raw: &str, common: &[KeyValue]) -> Self {
        let sanitized = sanitize_query(raw);
        let operation = DbOperation::of_statement(&sanitized);
        let operation_name = operation_name(&sanitized, operation);
        let collection = collection_name(&sanitized);
        let name = match &collection {
            Some(collection) => format!("{operation_name} {collection}"),
            None => operation_name.clone(),
        };
        let mut attributes = Vec::with_capacity(common.len() + 3);
        attributes.extend(common.iter().cloned());
        attributes.push(KeyValue::new("db.operation.name", shared_value(operation_name)));
        if let Some(collection) = collection {
            attributes.push(KeyValue::new("db.collection.name", shared_value(collection)));
        }
        attributes.push(KeyValue::new("db.query.text", Arc::<str>::from(sanitized)));
        let name = match intern(&name) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(name),
        };
        Self { operation, name, attributes: attributes.into() }
    }

    /// The attributes of one span, with room for an `error.type`.
    pub(super) fn span_attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(self.attributes.len() + 1);
        attributes.extend(self.attributes.iter().cloned());
        attributes
    }

    /// The bytes this statement keeps besides its key.
    fn size(&self) -> usize {
        self.attributes.iter().map(|kv| kv.value.as_str().len()).sum::<usize>() + self.name.len()
    }
}

/// `value` as an attribute value that copies without allocating: interned when short.
fn shared_value(value: String) -> StringValue {
    match intern(&value) {
        Some(value) => StringValue::from(value),
        None => StringValue::from(Arc::<str>::from(value)),
    }
}

/// `name` as a `&'static str` shared by the whole process, `None` once [`MAX_NAMES`] names are
/// taken or when longer than [`MAX_NAME_LEN`]. Only a statement seen for the first time asks.
fn intern(name: &str) -> Option<&'static str> {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut names = NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&name) = names.get(name) {
        return Some(name);
    }
    if names.len() >= MAX_NAMES {
        return None;
    }
    // Bounded by MAX_NAMES × MAX_NAME_LEN bytes for the life of the process.
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(name);
    Some(name)
}

/// A connection's statements, keyed by their SQL without bind values, at most
/// [`MAX_STATEMENTS`] of them and [`MAX_CACHED_BYTES`] of text: once full, a new statement is
/// prepared for each query and the cache never grows.
#[derive(Default)]
pub(super) struct StatementCache {
    statements: HashMap<String, Statement>,
    bytes: usize,
    /// The SQL of the current query, its allocation reused from query to query.
    raw: String,
}

impl StatementCache {
    /// The statement of `query` (diesel's `Display` of it) on a store with `common` attributes.
    pub(super) fn statement(&mut self, query: &dyn fmt::Display, common: &[KeyValue]) -> Cow<'_, Statement> {
        read_sql(query, &mut self.raw);
        let raw = self.raw.as_str();
        let full = self.statements.len() >= MAX_STATEMENTS;
        match self.statements.entry_ref(raw) {
            EntryRef::Occupied(entry) => Cow::Borrowed(entry.into_mut()),
            EntryRef::Vacant(entry) => {
                let statement = Statement::prepare(raw, common);
                let size = raw.len() + statement.size();
                if full || self.bytes + size > MAX_CACHED_BYTES {
                    return Cow::Owned(statement);
                }
                self.bytes += size;
                Cow::Borrowed(entry.insert(statement))
            }
        }
    }

    /// How many statements are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.statements.len()
    }
}

/// Collects a query's SQL from its `Display`, stopping where diesel starts printing the bind
/// values (so they are never even formatted) or at `MAX_RAW_QUERY` bytes.
struct SqlOnly<'a> {
    text: &'a mut String,
    /// The bind values' marker arrived on its own, so `text` holds none of it.
    at_binds: bool,
}

impl fmt::Write for SqlOnly<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s == BINDS_MARKER {
            self.at_binds = true;
            return Err(fmt::Error);
        }
        let room = MAX_RAW_QUERY.saturating_sub(self.text.len());
        if s.len() > room {
            self.text.push_str(&s[..floor_char_boundary(s, room)]);
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// Replaces `text` with the SQL of `query`, bind values left out.
fn read_sql(query: &dyn fmt::Display, text: &mut String) {
    text.clear();
    let mut sql = SqlOnly { text, at_binds: false };
    // An error only means the writer stopped early on purpose.
    let _ = write!(sql, "{query}");
    if !sql.at_binds {
        // Statements diesel prints without bind values (`BEGIN`, `batch_execute`) come here:
        // `memmem` skips the searcher set-up `str::find` pays on every call.
        if let Some(at) = memchr::memmem::find(text.as_bytes(), BINDS_MARKER.as_bytes()) {
            text.truncate(at);
        }
    }
}

#[cfg(test)]
pub(super) fn raw_query_text(query: &dyn fmt::Display) -> String {
    let mut text = String::new();
    read_sql(query, &mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as diesel prints it: SQL, then the bind values.
    struct Query<'a>(&'a str, &'a [&'a str]);

    impl fmt::Display for Query<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} -- binds: {:?}", self.0, self.1)
        }
    }

    fn common() -> Vec<KeyValue> {
        vec![KeyValue::new("db.system.name", "sqlite"), KeyValue::new("db.namespace", Arc::<str>::from("x.db"))]
    }

    /// The statement's parts, compared by value.
    fn parts(statement: &Statement) -> (DbOperation, String, Vec<KeyValue>) {
        (statement.operation, statement.name.to_string(), statement.span_attributes())
    }

    #[test]
    fn raw_query_text_drops_binds() {
        assert_eq!(raw_query_text(&Query("SELECT ? FROM t", &["secret"])), "SELECT ? FROM t");
        assert_eq!(raw_query_text(&"PRAGMA x"), "PRAGMA x");
        // The marker inside one write is found too.
        assert_eq!(raw_query_text(&"SELECT ? -- binds: [1]"), "SELECT ?");
        let long = "x".repeat(MAX_RAW_QUERY + 10);
        assert_eq!(raw_query_text(&long.as_str()).len(), MAX_RAW_QUERY);
    }

    #[test]
    fn prepare_builds_the_span_of_a_statement() {
        let statement = Statement::prepare("INSERT INTO `tools` (`name`) VALUES (?) RETURNING `id`", &common());
        assert_eq!(statement.operation, DbOperation::Insert);
        assert_eq!(statement.name, "INSERT tools");
        let expected = [
            KeyValue::new("db.system.name", "sqlite"),
            KeyValue::new("db.namespace", "x.db"),
            KeyValue::new("db.operation.name", "INSERT"),
            KeyValue::new("db.collection.name", "tools"),
            KeyValue::new("db.query.text", "INSERT INTO `tools` (`name`) VALUES (?) RETURNING `id`"),
        ];
        assert_eq!(statement.span_attributes(), expected);
        let literal = Statement::prepare("SELECT 'secret' AS a", &common());
        assert_eq!(literal.name, "SELECT");
        assert_eq!(literal.span_attributes().last(), Some(&KeyValue::new("db.query.text", "SELECT ? AS a")));
        assert!(literal.span_attributes().iter().all(|kv| kv.key.as_str() != "db.collection.name"));
    }

    #[test]
    fn a_hit_gives_what_a_miss_gives() {
        let mut cache = StatementCache::default();
        let sql = "SELECT `tools`.`id` FROM `tools` WHERE `tools`.`name` = ?";
        let miss = parts(&cache.statement(&Query(sql, &["a"]), &common()));
        let hit = parts(&cache.statement(&Query(sql, &["a"]), &common()));
        assert_eq!(miss, hit);
        assert_eq!(miss, parts(&Statement::prepare(sql, &common())));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn statements_differing_only_in_binds_share_an_entry() {
        let mut cache = StatementCache::default();
        let sql = "UPDATE `tools` SET `enabled` = ? WHERE `id` = ?";
        let first = parts(&cache.statement(&Query(sql, &["1", "secret"]), &common()));
        let second = parts(&cache.statement(&Query(sql, &["0", "other"]), &common()));
        assert_eq!(first, second);
        assert_eq!(cache.len(), 1);
        assert!(second.2.iter().all(|kv| !kv.value.as_str().contains("secret")));
    }

    #[test]
    fn different_statements_get_their_own_entries() {
        let mut cache = StatementCache::default();
        let select = parts(&cache.statement(&Query("SELECT `id` FROM `tools`", &[]), &common()));
        let delete = parts(&cache.statement(&Query("DELETE FROM `tools`", &[]), &common()));
        assert_eq!(cache.len(), 2);
        assert_eq!((select.1.as_str(), delete.1.as_str()), ("SELECT tools", "DELETE tools"));
        // Statements whose sanitized text is the same are still distinct keys.
        cache.statement(&"SELECT 1", &common());
        cache.statement(&"SELECT 2", &common());
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn the_cache_stops_growing_at_its_bound() {
        let mut cache = StatementCache::default();
        let sql = |i: usize| format!("SELECT `c{i}` FROM `t{i}`");
        for i in 0..MAX_STATEMENTS {
            cache.statement(&sql(i).as_str(), &common());
        }
        assert_eq!(cache.len(), MAX_STATEMENTS);
        let beyond = sql(MAX_STATEMENTS);
        let statement = cache.statement(&beyond.as_str(), &common());
        assert!(matches!(statement, Cow::Owned(_)), "prepared, not kept");
        assert_eq!(parts(&statement), parts(&Statement::prepare(&beyond, &common())));
        assert_eq!(cache.len(), MAX_STATEMENTS);
        // Known statements still hit.
        assert!(matches!(cache.statement(&sql(7).as_str(), &common()), Cow::Borrowed(_)));
    }

    #[test]
    fn the_cache_keeps_at_most_its_bytes() {
        let mut cache = StatementCache::default();
        // Multi-row inserts of growing size: each distinct, each long.
        for rows in 1..=400 {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
            let sql = format!("INSERT INTO `tool_executions` (`a`, `b`, `c`, `d`, `e`, `f`, `g`) VALUES {values}");
            let statement = cache.statement(&sql.as_str(), &common());
            assert_eq!(statement.name, "INSERT tool_executions");
        }
        assert!(cache.bytes <= MAX_CACHED_BYTES, "{}", cache.bytes);
        assert!(cache.len() < 400);
    }

    #[test]
    fn names_are_interned_up_to_their_bound() {
        assert_eq!(intern("SELECT tools"), Some("SELECT tools"));
        assert!(std::ptr::eq(intern("SELECT tools").unwrap(), intern("SELECT tools").unwrap()));
        assert_eq!(intern(&"x".repeat(MAX_NAME_LEN + 1)), None);
        let long = Statement::prepare(&format!("SELECT a FROM {}", "t".repeat(100)), &common());
        assert!(matches!(long.name, Cow::Owned(_)));
        assert_eq!(long.name, format!("SELECT {}", "t".repeat(100)));
    }
}
