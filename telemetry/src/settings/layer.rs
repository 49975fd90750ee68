//! The layering machinery: the key schema (the built-in defaults as a TOML tree), typed
//! assignments from files, the environment and flags, their merge with the origin of every value,
//! and the final deserialization whose errors name the key, the value and its origin.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::{Origin, SettingsError, MASK};

/// The type of a settable key, taken from the type of its built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false` (also `1`/`0`, `yes`/`no` from strings).
    Bool,
    /// An integer.
    Integer,
    /// A number.
    Float,
    /// A string (also durations, addresses and enum names).
    String,
    /// A map of strings, given as `k=v,k2=v2` from strings.
    Map,
    /// A list of strings, given as `a,b,c` from strings.
    List,
}

impl Kind {
    fn of(value: &Value) -> Kind {
        match value {
            Value::Boolean(_) => Kind::Bool,
            Value::Integer(_) => Kind::Integer,
            Value::Float(_) => Kind::Float,
            Value::Table(_) => Kind::Map,
            Value::Array(_) => Kind::List,
            Value::String(_) | Value::Datetime(_) => Kind::String,
        }
    }
}

/// One value set by one layer at one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The key's segments (a map entry's key is one segment, even if it contains dots).
    pub path: Vec<String>,
    /// The value, typed as the key's default.
    pub value: Value,
    /// The layer that set it.
    pub origin: Origin,
}

/// Every key and its type: [`Settings::default()`] as a TOML tree. A non-empty table is a
/// section, an empty table a map of strings, anything else a leaf.
#[derive(Debug, Clone)]
pub struct Schema {
    defaults: Table,
    /// Top-level sections of another document that shares the files and the environment; their
    /// keys are left to it (see [`Document::foreign_sections`](super::Document::foreign_sections)).
    foreign: &'static [&'static str],
}

impl Schema {
    /// The schema of the settings document `D`: its built-in defaults.
    pub fn of<D: super::Document>() -> Result<Schema, SettingsError> {
        Table::try_from(D::default())
            .map(|defaults| Schema { defaults, foreign: D::foreign_sections() })
            .map_err(|err| SettingsError::Internal(format!("the defaults are not TOML: {err}")))
    }

    /// Whether the top-level `section` belongs to another document sharing the files.
    pub fn is_foreign(&self, section: &str) -> bool {
        self.foreign.contains(&section)
    }

    /// The built-in defaults as a TOML tree.
    pub fn defaults(&self) -> &Table {
        &self.defaults
    }

    /// The settable key that `segments` names, and its type. Segments after a map's name are
    /// joined with `.` into the entry's key.
    pub fn resolve(&self, segments: &[String], origin: &Origin) -> Result<(Vec<String>, Kind), SettingsError> {
        let unknown =
            |allowed: String| SettingsError::UnknownKey { key: segments.join("."), allowed, origin: origin.clone() };
        let mut table = &self.defaults;
        let mut path = Vec::new();
        for (index, segment) in segments.iter().enumerate() {
            let Some(value) = table.get(segment) else {
                return Err(unknown(list_keys(table, &path)));
            };
            path.push(segment.clone());
            let rest = &segments[index + 1..];
            match value {
                Value::Table(inner) if !inner.is_empty() => {
                    if rest.is_empty() {
                        return Err(unknown(format!("a key inside this section, {}", list_keys(inner, &path))));
                    }
                    table = inner;
                }
                Value::Table(_) if !rest.is_empty() => {
                    path.push(rest.join("."));
                    return Ok((path, Kind::String));
                }
                leaf if rest.is_empty() => return Ok((path, Kind::of(leaf))),
                _ => return Err(unknown(format!("`{}` is a single value, not a section", path.join(".")))),
            }
        }
        Err(unknown(list_keys(table, &path)))
    }

    /// Assignments for the string `raw` given at `segments`, typed as the key's default.
    pub fn assign(&self, segments: &[String], raw: &str, origin: &Origin) -> Result<Vec<Assignment>, SettingsError> {
        let (path, kind) = self.resolve(segments, origin)?;
        typed(path, kind, raw, origin)
    }

    /// Like [`Schema::assign`], for a dotted key such as `exporter.retry.max_interval`.
    pub fn assign_dotted(&self, key: &str, raw: &str, origin: &Origin) -> Result<Vec<Assignment>, SettingsError> {
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        self.assign(&segments, raw, origin)
    }

    /// The assignments of a parsed TOML file; a key the schema does not know is an error naming
    /// it and the file.
    fn flatten(&self, mut file: Table, origin: &Origin) -> Result<Vec<Assignment>, SettingsError> {
        file.retain(|section, _| !self.is_foreign(section));
        let mut out = Vec::new();
        flatten_into(&self.defaults, file, &mut Vec::new(), origin, &mut out)?;
        Ok(out)
    }
}

fn flatten_into(
    schema: &Table,
    file: Table,
    prefix: &mut Vec<String>,
    origin: &Origin,
    out: &mut Vec<Assignment>,
) -> Result<(), SettingsError> {
    for (key, value) in file {
        let Some(expected) = schema.get(&key) else {
            let allowed = list_keys(schema, prefix);
            prefix.push(key);
            return Err(SettingsError::UnknownKey { key: prefix.join("."), allowed, origin: origin.clone() });
        };
        prefix.push(key);
        match (expected, value) {
            (Value::Table(section), Value::Table(inner)) if !section.is_empty() => {
                flatten_into(section, inner, prefix, origin, out)?;
            }
            (Value::Table(_), Value::Table(entries)) => {
                for (entry, value) in entries {
                    let mut path = prefix.clone();
                    path.push(entry);
                    out.push(Assignment { path, value, origin: origin.clone() });
                }
            }
            (_, value) => out.push(Assignment { path: prefix.clone(), value, origin: origin.clone() }),
        }
        prefix.pop();
    }
    Ok(())
}

/// The keys of `table` under `prefix`, dotted, for an error's "allowed" part.
fn list_keys(table: &Table, prefix: &[String]) -> String {
    let keys: Vec<String> = table
        .keys()
        .map(|key| prefix.iter().chain(std::iter::once(key)).cloned().collect::<Vec<_>>().join("."))
        .collect();
    format!("one of {}", keys.join(", "))
}

/// Assignments for the string `raw` at `path` of type `kind`.
fn typed(path: Vec<String>, kind: Kind, raw: &str, origin: &Origin) -> Result<Vec<Assignment>, SettingsError> {
    let invalid = |path: &[String], allowed: &str| {
        let key = path.join(".");
        SettingsError::Invalid {
            value: shown(&key, &format!("{raw:?}")),
            key,
            allowed: allowed.to_owned(),
            origin: origin.clone(),
        }
    };
    let value = match kind {
        Kind::Bool => Value::Boolean(parse_bool(raw).ok_or_else(|| invalid(&path, BOOL_ALLOWED))?),
        Kind::Integer => Value::Integer(raw.trim().parse().map_err(|_| invalid(&path, "an integer"))?),
        Kind::Float => Value::Float(raw.trim().parse().map_err(|_| invalid(&path, "a number such as 0.25"))?),
        Kind::String => Value::String(raw.to_owned()),
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
        Kind::Map => {
            let pairs = parse_pairs(raw).map_err(|_| invalid(&path, PAIRS_ALLOWED))?;
            return Ok(pairs
                .into_iter()
                .map(|(key, value)| {
                    let mut entry = path.clone();
                    entry.push(key);
                    Assignment { path: entry, value: Value::String(value), origin: origin.clone() }
                })
                .collect());
        }
    };
    Ok(vec![Assignment { path, value, origin: origin.clone() }])
}

/// What a boolean from a string may be.
pub const BOOL_ALLOWED: &str = "true, false, 1, 0, yes or no (any case)";

/// `true`/`false`, `1`/`0`, `yes`/`no`, in any case.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// What [`parse_pairs`] accepts, as an error message says it.
pub const PAIRS_ALLOWED: &str =
    "comma-separated key=value pairs such as \"a=1,b=2\" (percent-encode ',', '=' and '%' inside keys and values)";

/// Why a `k=v,k2=v2` list does not parse. The items themselves are not quoted: they may be
/// credentials (`OTEL_EXPORTER_OTLP_HEADERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairsError {
    /// An item has no `=`.
    #[error("an item has no '=': expected {PAIRS_ALLOWED}")]
    MissingEquals,
    /// A key or value has a malformed percent escape, or decodes to something not UTF-8.
    #[error("a malformed percent escape: expected {PAIRS_ALLOWED}")]
    BadEscape,
    /// An item has an empty key.
    #[error("an item has an empty key: expected {PAIRS_ALLOWED}")]
    EmptyKey,
}

/// `k=v,k2=v2` with percent-encoded keys and values (the W3C Baggage form of
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`). Empty items are skipped.
pub fn parse_pairs(raw: &str) -> Result<Vec<(String, String)>, PairsError> {
    let mut pairs = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (key, value) = item.split_once('=').ok_or(PairsError::MissingEquals)?;
        let key = percent_decode(key.trim()).ok_or(PairsError::BadEscape)?;
        let value = percent_decode(value.trim()).ok_or(PairsError::BadEscape)?;
        if key.is_empty() {
            return Err(PairsError::EmptyKey);
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value as shown in an error: secrets (`exporter.headers`, `admin.token`,
/// `prometheus.bearer_token`, `vector.openai_api_key`) are masked whole, and the credentials of
/// any URL in any other value ([`redact`](crate::redact::redact)).
fn shown(key: &str, value: &str) -> String {
    if key == "exporter.headers"
        || key.starts_with("exporter.headers.")
        || key == "admin.token"
        || key == "prometheus.bearer_token"
        || key == "vector.openai_api_key"
    {
        format!("{MASK:?}")
    } else {
        crate::redact::redact(value).into_owned()
    }
}

/// The merged layers so far: the defaults overwritten by every assignment, and the origin of each
/// assigned key.
#[derive(Debug)]
pub struct Stack<'a> {
    schema: &'a Schema,
    merged: Table,
    origins: BTreeMap<String, Origin>,
}

impl<'a> Stack<'a> {
    /// The built-in defaults alone.
    pub fn new(schema: &'a Schema) -> Stack<'a> {
        Stack { schema, merged: schema.defaults.clone(), origins: BTreeMap::new() }
    }

    /// Parses `text` as TOML and applies its keys.
    pub fn apply_file(&mut self, text: &str, origin: Origin) -> Result<(), SettingsError> {
        let file: Table = toml::from_str(text).map_err(|err| SettingsError::Parse {
            origin: origin.clone(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        let assignments = self.schema.flatten(file, &origin)?;
        self.apply(assignments);
        Ok(())
    }

    /// Applies `assignments` in order; a later one wins.
    pub fn apply(&mut self, assignments: Vec<Assignment>) {
        for Assignment { path, value, origin } in assignments {
            insert_at(&mut self.merged, &path, value);
            self.origins.insert(path.join("."), origin);
        }
    }

    /// Where the value at the dotted `key` came from: the layer that set it (or, for a map, one
    /// of its entries), else the built-in default.
    pub fn origin(&self, key: &str) -> Origin {
        let entry_prefix = format!("{key}.");
        self.origins
            .get(key)
            .or_else(|| {
                self.origins
                    .range(entry_prefix.clone()..)
                    .next()
                    .filter(|(found, _)| found.starts_with(&entry_prefix))
                    .map(|(_, origin)| origin)
            })
            .cloned()
            .unwrap_or(Origin::Default)
    }

    /// An [`SettingsError::Invalid`] for `key`, naming where its value came from.
    pub fn invalid(&self, key: String, value: String, allowed: String) -> SettingsError {
        let origin = self.origin(&key);
        SettingsError::Invalid { value: shown(&key, &value), key, allowed, origin }
    }

    /// The merged tree as `T`; an error names the key, its value and origin.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        serde_path_to_error::deserialize(self.merged.clone()).map_err(|err| {
            let segments: Vec<String> = err.path().iter().map(ToString::to_string).collect();
            let value = lookup(&self.merged, &segments).map_or_else(|| "(missing)".to_owned(), ToString::to_string);
            self.invalid(err.path().to_string(), value, allowed_from_serde(err.inner().message()))
        })
    }
}

/// Sets `value` at `path`, creating (or replacing non-table values with) tables on the way.
fn insert_at(table: &mut Table, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            if let Value::Table(next) = entry {
                insert_at(next, rest, value);
            }
        }
    }
}

/// The value at `segments` in `table`.
pub fn lookup<'t>(table: &'t Table, segments: &[String]) -> Option<&'t Value> {
    let (first, rest) = segments.split_first()?;
    let value = table.get(first)?;
    match value {
        Value::Table(inner) if !rest.is_empty() => lookup(inner, rest),
        _ if rest.is_empty() => Some(value),
        _ => None,
    }
}

/// What a serde error says was expected, in words.
fn allowed_from_serde(message: &str) -> String {
    if message.contains("socket address syntax") {
        return "an IP address and port such as \"127.0.0.1:8000\" or \"[::]:8000\"".to_owned();
    }
    if message.contains("IP address syntax") {
        return "an IP address such as \"127.0.0.1\" or \"::\"".to_owned();
    }
    let Some((_, expected)) = message.rsplit_once("expected ") else {
        return message.to_owned();
    };
    match expected.trim() {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a map" => "a table of string values".to_owned(),
        other if other.starts_with("struct ") => "a table of keys (a section)".to_owned(),
        other => other.to_owned(),
    }
}
