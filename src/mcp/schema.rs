//! Validation of tool arguments against a tool's `inputSchema` with the `jsonschema` crate, so
//! the gateway refuses bad arguments with `-32602` before calling an upstream.
//!
//! Every keyword of the schema's draft is checked: the draft its `$schema` declares (4, 6, 7,
//! 2019-09 or 2020-12), 2020-12 when it declares none, as MCP says. `format` is an assertion,
//! not an annotation (`"format": "email"` refuses what is not an e-mail address); unknown
//! formats are accepted.
//!
//! Nothing is fetched: a `$ref` to a remote document or a file does not resolve (the crate is
//! built without its HTTP and file retrievers, and the validator is offline). A schema that
//! does not compile (not a schema of its draft, an unresolvable `$ref`, a pattern no engine
//! takes) is not checked at all — the upstream that published it judges its own arguments — and
//! is logged once.
//!
//! Costs stay linear in the arguments: `pattern` and `patternProperties` run on the `regex`
//! crate (finite automata, no backtracking) within [`REGEX_SIZE_LIMIT`]; a schema whose patterns
//! need what that engine lacks (look-around, back-references) is compiled with `fancy-regex`
//! and a backtracking budget of [`BACKTRACK_LIMIT`] per match, past which the value is refused
//! under `pattern`. A schema whose in-place applicators (`allOf`, `anyOf`, `oneOf`, `not`,
//! `if`/`then`/`else`, `$ref`, ...) unfold to more than [`MAX_UNFOLDED`] subschemas per value —
//! a `$ref` cycle, or `anyOf`s that double at every level — is refused at compile time, as is
//! one nested deeper than [`MAX_DEPTH`]; at most [`MAX_ERRORS`] errors are reported.
//!
//! Validators are compiled once per schema and cached ([`MAX_CACHED`] schemas; the cache starts
//! over when full): validation runs on the request path of every `tools/call`.
//!
//! A [`Violation`] never quotes the value it is about: arguments can hold secrets, and the
//! messages reach the client, spans and the audit log. It names the value's JSON pointer, the
//! keyword that failed with its place in the schema, and what the schema expected.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{PatternOptions, ValidationError, Validator};
use parking_lot::RwLock;
use serde_json::Value;

#[path = "schema_cost.rs"]
mod cost;

pub use self::cost::{MAX_DEPTH, MAX_UNFOLDED};

/// Most errors reported.
pub const MAX_ERRORS: usize = 50;
/// Most compiled schemas kept.
pub const MAX_CACHED: usize = 4096;
/// Approximate size limit of one compiled regular expression, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Backtracking steps one `fancy-regex` match may take (patterns the `regex` crate cannot run).
pub const BACKTRACK_LIMIT: usize = 100_000;

/// Longest detail quoted from the branches of a failed `anyOf`/`oneOf`.
const MAX_DETAIL: usize = 300;
/// Longest schema value (an `enum` list, a `const`, a pattern) quoted in a message.
const MAX_QUOTED: usize = 80;

/// One way the arguments fail their schema. Shown as the JSON pointer of the value it is about
/// (`/` for the whole instance), what failed, and the failing keyword's place in the schema:
/// `/a: expected number, got string (at /properties/a/type)` — never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value in the instance; empty for the whole instance.
    pub instance_path: String,
    /// JSON pointer of the failing keyword in the schema, through `$ref`s (the evaluation path:
    /// `/properties/a/type`, `/properties/p/$ref/required`).
    pub keyword_path: String,
    /// What failed, in the schema's terms.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display(&self.instance_path), self.message)?;
        if !self.keyword_path.is_empty() {
            write!(f, " (at {})", self.keyword_path)?;
        }
        Ok(())
    }
}

impl Violation {
    /// The keyword that failed: the last segment of [`Violation::keyword_path`].
    pub fn keyword(&self) -> &str {
        self.keyword_path.rsplit('/').next().unwrap_or_default()
    }
}

/// Checks `instance` against `schema`; every failure found (at most [`MAX_ERRORS`]).
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<Violation>> {
    match compiled(&schema.to_string(), || Some(schema.clone())) {
        Some(validator) => check(&validator, instance),
        None => Ok(()),
    }
}

/// Checks `instance` against the schema in `schema_text` (JSON), compiled once per text. Text
/// that is not JSON stands for `{"type": "object"}`.
pub fn validate_text(schema_text: &str, instance: &Value) -> Result<(), Vec<Violation>> {
    let parse = || Some(serde_json::from_str(schema_text).unwrap_or_else(|_| serde_json::json!({"type": "object"})));
    match compiled(schema_text, parse) {
        Some(validator) => check(&validator, instance),
        None => Ok(()),
    }
}

/// Why a schema is not checked.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// It applies too many subschemas in place, or nests too deep.
    #[error("{0}")]
    TooCostly(String),
    /// The `jsonschema` crate refused it.
    #[error("{0}")]
    Invalid(String),
}

/// Compiles `schema` with the gateway's options: declared draft (2020-12 by default), formats
/// asserted, offline, patterns on the `regex` crate or, for what it cannot run, `fancy-regex`
/// with a backtracking budget.
pub fn compile(schema: &Value) -> Result<Validator, CompileError> {
    cost::check(schema).map_err(CompileError::TooCostly)?;
    let options = || {
        jsonschema::options()
            .with_draft(declared_draft(schema))
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .offline()
    };
    let linear = PatternOptions::regex().size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT);
    match options().with_pattern_options(linear).build(schema) {
        Ok(validator) => Ok(validator),
        Err(first) => {
            let bounded = PatternOptions::fancy_regex()
                .backtrack_limit(BACKTRACK_LIMIT)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT);
            options()
                .with_pattern_options(bounded)
                .build(schema)
                .map_err(|_| CompileError::Invalid(compile_message(&first)))
        }
    }
}

/// The draft `$schema` names; 2020-12 when it names none or one this crate does not know.
fn declared_draft(schema: &Value) -> jsonschema::Draft {
    use jsonschema::Draft;
    let declared = schema.get("$schema").and_then(Value::as_str).unwrap_or_default();
    match Draft::default().detect(&serde_json::json!({"$schema": declared})) {
        Draft::Draft4 => Draft::Draft4,
        Draft::Draft6 => Draft::Draft6,
        Draft::Draft7 => Draft::Draft7,
        Draft::Draft201909 => Draft::Draft201909,
        _ => Draft::Draft202012,
    }
}

/// A compile error in the schema's terms: its keyword and place, never an instance.
fn compile_message(error: &ValidationError<'_>) -> String {
    format!("{} at {}", error.kind().keyword(), display(error.schema_path().as_str()))
}

/// A compiled schema, or `None` for one that is not checked.
type Entry = Option<Arc<Validator>>;

static CACHE: LazyLock<RwLock<HashMap<Box<str>, Entry>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// The cached validator of the schema whose text is `key`, compiling `schema()` on a miss.
fn compiled(key: &str, schema: impl FnOnce() -> Option<Value>) -> Entry {
    if let Some(entry) = CACHE.read().get(key) {
        return entry.clone();
    }
    let entry = schema().and_then(|schema| match compile(&schema) {
        Ok(validator) => Some(Arc::new(validator)),
        Err(err) => {
            tracing::warn!(error = %err, "a tool's inputSchema does not compile; its arguments are not checked");
            None
        }
    });
    let mut cache = CACHE.write();
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key.into(), entry.clone());
    entry
}

/// Runs `validator` over `instance`.
fn check(validator: &Validator, instance: &Value) -> Result<(), Vec<Violation>> {
    let mut violations = Vec::new();
    for error in validator.iter_errors(instance) {
        violations.extend(violations_of(&error));
        if violations.len() >= MAX_ERRORS {
            violations.truncate(MAX_ERRORS);
            break;
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// The violations one error stands for: one per unexpected property, else one.
fn violations_of(error: &ValidationError<'_>) -> Vec<Violation> {
    let instance_path = error.instance_path().as_str().to_owned();
    let keyword_path = error.evaluation_path().as_str().to_owned();
    let per_property = |names: &[String], message: &str| {
        names
            .iter()
            .map(|name| Violation {
                instance_path: format!("{instance_path}/{}", escape(name)),
                keyword_path: keyword_path.clone(),
                message: message.to_owned(),
            })
            .collect()
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            per_property(unexpected, "unexpected property (additionalProperties is false)")
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            per_property(unexpected, "unexpected property (unevaluatedProperties)")
        }
        _ => vec![Violation { instance_path, keyword_path, message: message(error) }],
    }
}

/// What `error` says, without the instance.
fn message(error: &ValidationError<'_>) -> String {
    use ValidationErrorKind as K;
    match error.kind() {
        K::AdditionalItems { limit } => format!("more items than the {limit} the schema lists"),
        K::AdditionalProperties { .. } | K::UnevaluatedProperties { .. } => "unexpected property".to_owned(),
        K::AnyOf { context } => format!("matches no schema of anyOf ({})", branches(context)),
        K::OneOfNotValid { context } => format!("matches no schema of oneOf ({})", branches(context)),
        K::OneOfMultipleValid { .. } => "matches more than one schema of oneOf, expected exactly one".to_owned(),
        K::BacktrackLimitExceeded { .. } => "the pattern needs more backtracking than allowed".to_owned(),
        K::RegexEngineFailure { .. } => "the pattern could not be evaluated".to_owned(),
        K::Pattern { pattern } => format!("does not match the pattern {}", quoted(&Value::String(pattern.clone()))),
        K::Constant { expected_value } => format!("expected the constant {}", quoted(expected_value)),
        K::Contains => "no item matches the \"contains\" schema".to_owned(),
        K::ContentEncoding { content_encoding } => format!("not valid {content_encoding} content"),
        K::FromUtf8 { .. } => "decodes to invalid UTF-8".to_owned(),
        K::ContentMediaType { content_media_type } => format!("not valid {content_media_type} content"),
        K::Custom { keyword, .. } => format!("fails {keyword}"),
        K::Enum { options } => format!("not one of {}", quoted(options)),
        K::ExclusiveMaximum { limit } => format!("not less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("not greater than {limit}"),
        K::Maximum { limit } => format!("greater than the maximum {limit}"),
        K::Minimum { limit } => format!("less than the minimum {limit}"),
        K::MultipleOf { multiple_of } => format!("not a multiple of {}", Value::from(*multiple_of)),
        K::FalseSchema => "no value is allowed here".to_owned(),
        K::Format { format } => format!("not a valid {format}"),
        K::MaxItems { limit } => format!("more items than the maximum {limit}"),
        K::MinItems { limit } => format!("fewer items than the minimum {limit}"),
        K::MaxLength { limit } => format!("longer than the maximum length {limit}"),
        K::MinLength { limit } => format!("shorter than the minimum length {limit}"),
        K::MaxProperties { limit } => format!("more properties than the maximum {limit}"),
        K::MinProperties { limit } => format!("fewer properties than the minimum {limit}"),
        K::Not { .. } => "must not match the \"not\" schema".to_owned(),
        K::PropertyNames { error } => format!("a property name fails propertyNames: {}", message(error)),
        K::Required { property } => format!("missing required property {}", quoted(property)),
        K::Type { kind } => format!("expected {}, got {}", type_names(kind), type_name(error.instance())),
        K::UnevaluatedItems { .. } => "more items than the schema evaluates (unevaluatedItems)".to_owned(),
        K::UniqueItems => "items are not unique".to_owned(),
        K::Referencing(_) => "the schema's $ref does not resolve".to_owned(),
    }
}

/// The failures of each branch of an `anyOf`/`oneOf`, `|`-separated and capped.
fn branches(context: &[Vec<ValidationError<'static>>]) -> String {
    let detail = context
        .iter()
        .map(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", display(e.instance_path().as_str()), message(e)))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect::<Vec<_>>()
        .join(" | ");
    capped(detail, MAX_DETAIL)
}

fn type_names(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(name) => name.to_string(),
        TypeKind::Multiple(names) => names.iter().map(|name| name.to_string()).collect::<Vec<_>>().join(" or "),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value of the schema (never of the instance), shortened.
fn quoted(value: &Value) -> String {
    capped(value.to_string(), MAX_QUOTED)
}

fn capped(text: String, max: usize) -> String {
    if text.chars().count() > max {
        text.chars().take(max - 3).collect::<String>() + "..."
    } else {
        text
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
