//! Validation of tool arguments against a tool's `inputSchema`, a subset of JSON Schema that
//! covers what MCP servers publish in practice, so the gateway refuses bad arguments with
//! `-32602` before calling an upstream.
//!
//! Supported: `type` (one name or a list; `integer` is a number without a fraction; OpenAPI's
//! `nullable: true` also admits `null`), `enum`, `const`, `properties`, `required`,
//! `additionalProperties` (boolean or schema), `minProperties`/`maxProperties`,
//! `dependentRequired`, `items` (a schema, or a list for tuples with `additionalItems`),
//! `prefixItems`, `contains`, `minItems`/`maxItems`, `minLength`/`maxLength` (in characters),
//! `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum` (numbers, or the draft-4 boolean
//! form), `multipleOf`, `allOf`/`anyOf`/`oneOf`/`not`, `if`/`then`/`else`, boolean schemas, and
//! `$ref` to a JSON pointer inside the root schema (`#`, `#/$defs/…`, `#/definitions/…`).
//!
//! Accepted without checking, because judging them needs what this crate does not carry (a
//! regular-expression engine, remote documents): `pattern`, `patternProperties` (and so
//! `additionalProperties` is not checked beside it), `propertyNames`, `format`, `uniqueItems`,
//! and `$ref`s that do not start with `#`. Unknown keywords are ignored. A broken local `$ref`
//! is an error.
//!
//! Validation is bounded: schemas nested deeper than [`MAX_DEPTH`] (a recursive `$ref`, say)
//! and more than [`MAX_STEPS`] schema applications stop with an error instead of exhausting the
//! stack or the CPU, and at most [`MAX_ERRORS`] errors are reported.
//!
//! A [`Violation`] never quotes the value it is about: arguments can hold secrets, and the
//! messages reach the client, spans and the audit log. It names the value's JSON pointer, the
//! keyword that failed with its place in the schema, and what the schema expected.

use std::fmt;

use serde_json::{Map, Value};

/// Deepest nesting of schemas applied to one value, `$ref` hops included.
pub const MAX_DEPTH: usize = 64;
/// Most schema applications in one validation (guards against `anyOf` blow-ups).
pub const MAX_STEPS: usize = 1_000_000;
/// Most errors reported.
pub const MAX_ERRORS: usize = 50;

/// Longest detail quoted from the branches of a failed `anyOf`/`oneOf`.
const MAX_DETAIL: usize = 300;

/// One way the arguments fail their schema. Shown as the JSON pointer of the value it is about
/// (`/` for the whole instance) and what failed: `/a: expected number, got string`,
/// `/: missing required property "b"` — never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value in the instance; empty for the whole instance.
    pub instance_path: String,
    /// JSON pointer of the failing keyword in the schema, through `$ref`s as JSON Schema's
    /// `keywordLocation` (`/properties/a/type`, `/properties/p/$ref/required`); empty when the
    /// validation stopped at a bound rather than at a keyword.
    pub keyword_path: String,
    /// What failed, in the schema's terms.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display(&self.instance_path), self.message)
    }
}

/// Checks `instance` against `schema`; every failure found (at most [`MAX_ERRORS`]), in schema
/// order.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<Violation>> {
    let mut validator = Validator { root: schema, steps: 0, aborted: None };
    let mut errors = Vec::new();
    validator.check(schema, instance, &At::root(), 0, &mut errors);
    if let Some(reason) = validator.aborted {
        errors.truncate(MAX_ERRORS - 1);
        errors.push(reason);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Validator<'s> {
    root: &'s Value,
    steps: usize,
    aborted: Option<Violation>,
}

/// Where a check runs: the instance's JSON pointer and the schema's.
#[derive(Debug, Clone)]
struct At {
    instance: String,
    schema: String,
}

impl At {
    fn root() -> Self {
        At { instance: String::new(), schema: String::new() }
    }

    /// One level down in the instance (`segment`) and in the schema (`keywords`, already escaped).
    fn child(&self, segment: &str, keywords: &str) -> At {
        At { instance: child(&self.instance, segment), schema: format!("{}/{keywords}", self.schema) }
    }

    /// The same value under the schema's `keywords` (a subschema: `allOf/0`, `$ref`, `then`).
    fn under(&self, keywords: &str) -> At {
        At { instance: self.instance.clone(), schema: format!("{}/{keywords}", self.schema) }
    }

    /// A violation of `keyword` at this place.
    fn violation(&self, keyword: &str, message: String) -> Violation {
        Violation {
            instance_path: self.instance.clone(),
            keyword_path: format!("{}/{}", self.schema, escape(keyword)),
            message,
        }
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

fn child(path: &str, segment: &str) -> String {
    format!("{path}/{}", escape(segment))
}

fn push(errors: &mut Vec<Violation>, at: &At, keyword: &str, message: impl FnOnce() -> String) {
    if errors.len() < MAX_ERRORS {
        errors.push(at.violation(keyword, message()));
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0),
        _ => false,
    }
}

/// Whether `value` has the JSON Schema type `name`; `None` for a name this module does not know.
fn has_type(name: &str, value: &Value) -> Option<bool> {
    Some(match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => is_integer(value),
        _ => return None,
    })
}

/// JSON equality where `1` and `1.0` are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn quoted(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

impl<'s> Validator<'s> {
    /// Applies `schema` to `instance` at `at`, adding what fails to `errors`.
    fn check(&mut self, schema: &'s Value, instance: &Value, at: &At, depth: usize, errors: &mut Vec<Violation>) {
        if self.aborted.is_some() {
            return;
        }
        if depth > MAX_DEPTH {
            self.aborted = Some(Violation {
                instance_path: at.instance.clone(),
                keyword_path: String::new(),
                message: format!("schema nesting deeper than {MAX_DEPTH} levels"),
            });
            return;
        }
        self.steps += 1;
        if self.steps > MAX_STEPS {
            self.aborted = Some(Violation {
                instance_path: at.instance.clone(),
                keyword_path: String::new(),
                message: format!("validation needs more than {MAX_STEPS} steps"),
            });
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                if errors.len() < MAX_ERRORS {
                    errors.push(Violation {
                        instance_path: at.instance.clone(),
                        keyword_path: at.schema.clone(),
                        message: "no value is allowed here".to_owned(),
                    });
                }
                return;
            }
            Value::Object(schema) => schema,
            // Not a schema: nothing to check.
            _ => return,
        };
        self.check_ref(schema, instance, at, depth, errors);
        Self::check_type(schema, instance, at, errors);
        Self::check_values(schema, instance, at, errors);
        match instance {
            Value::Number(_) => Self::check_number(schema, instance, at, errors),
            Value::String(text) => Self::check_string(schema, text, at, errors),
            Value::Array(items) => self.check_array(schema, items, at, depth, errors),
            Value::Object(object) => self.check_object(schema, object, at, depth, errors),
            _ => {}
        }
        self.check_combinators(schema, instance, at, depth, errors);
    }

    /// Applies `schema` to `instance` and says whether it passed, keeping the errors apart.
    fn passes(&mut self, schema: &'s Value, instance: &Value, at: &At, depth: usize) -> (bool, Vec<Violation>) {
        let mut errors = Vec::new();
        self.check(schema, instance, at, depth, &mut errors);
        (errors.is_empty() && self.aborted.is_none(), errors)
    }

    fn check_ref(
        &mut self,
        schema: &'s Map<String, Value>,
        instance: &Value,
        at: &At,
        depth: usize,
        errors: &mut Vec<Violation>,
    ) {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { return };
        let Some(pointer) = reference.strip_prefix('#') else { return };
        match self.root.pointer(pointer) {
            Some(target) => self.check(target, instance, &at.under("$ref"), depth + 1, errors),
            None => push(errors, at, "$ref", || format!("the schema's $ref \"{reference}\" does not resolve")),
        }
    }

    fn check_type(schema: &Map<String, Value>, instance: &Value, at: &At, errors: &mut Vec<Violation>) {
        let names: Vec<&str> = match schema.get("type") {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        if names.is_empty() || (instance.is_null() && schema.get("nullable") == Some(&Value::Bool(true))) {
            return;
        }
        let mut matched = false;
        for name in &names {
            match has_type(name, instance) {
                Some(true) | None => matched = true,
                Some(false) => {}
            }
        }
        if !matched {
            push(errors, at, "type", || format!("expected {}, got {}", names.join(" or "), type_name(instance)));
        }
    }

    fn check_values(schema: &Map<String, Value>, instance: &Value, at: &At, errors: &mut Vec<Violation>) {
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.iter().any(|value| json_eq(value, instance)) {
                let list = quoted(&Value::Array(allowed.clone()));
                push(errors, at, "enum", || format!("not one of {list}"));
            }
        }
        if let Some(expected) = schema.get("const") {
            if !json_eq(expected, instance) {
                push(errors, at, "const", || format!("expected the constant {}", quoted(expected)));
            }
        }
    }

    fn check_number(schema: &Map<String, Value>, instance: &Value, at: &At, errors: &mut Vec<Violation>) {
        let Some(n) = instance.as_f64() else { return };
        let bound = |key: &str| schema.get(key).and_then(|v| v.as_f64().map(|f| (f, v)));
        let flag = |key: &str| schema.get(key) == Some(&Value::Bool(true));
        if let Some((min, shown)) = bound("minimum") {
            if flag("exclusiveMinimum") && n <= min {
                push(errors, at, "minimum", || format!("not greater than {shown}"));
            } else if n < min {
                push(errors, at, "minimum", || format!("less than the minimum {shown}"));
            }
        }
        if let Some((max, shown)) = bound("maximum") {
            if flag("exclusiveMaximum") && n >= max {
                push(errors, at, "maximum", || format!("not less than {shown}"));
            } else if n > max {
                push(errors, at, "maximum", || format!("greater than the maximum {shown}"));
            }
        }
        if let Some((min, shown)) = bound("exclusiveMinimum") {
            if n <= min {
                push(errors, at, "exclusiveMinimum", || format!("not greater than {shown}"));
            }
        }
        if let Some((max, shown)) = bound("exclusiveMaximum") {
            if n >= max {
                push(errors, at, "exclusiveMaximum", || format!("not less than {shown}"));
            }
        }
        if let Some((step, shown)) = bound("multipleOf").filter(|(step, _)| *step > 0.0) {
            let exact = match (instance.as_i64(), schema.get("multipleOf").and_then(Value::as_i64)) {
                (Some(n), Some(step)) => n % step == 0,
                _ => {
                    let quotient = n / step;
                    (quotient - quotient.round()).abs() <= 1e-9 * quotient.abs().max(1.0)
                }
            };
            if !exact {
                push(errors, at, "multipleOf", || format!("not a multiple of {shown}"));
            }
        }
    }

    fn check_string(schema: &Map<String, Value>, text: &str, at: &At, errors: &mut Vec<Violation>) {
        let min = schema.get("minLength").and_then(Value::as_u64);
        let max = schema.get("maxLength").and_then(Value::as_u64);
        if min.is_none() && max.is_none() {
            return;
        }
        let length = text.chars().count() as u64;
        if let Some(min) = min.filter(|min| length < *min) {
            push(errors, at, "minLength", || format!("shorter than the minimum length {min}"));
        }
        if let Some(max) = max.filter(|max| length > *max) {
            push(errors, at, "maxLength", || format!("longer than the maximum length {max}"));
        }
    }

    fn check_array(
        &mut self,
        schema: &'s Map<String, Value>,
        items: &[Value],
        at: &At,
        depth: usize,
        errors: &mut Vec<Violation>,
    ) {
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64).filter(|min| count < *min) {
            push(errors, at, "minItems", || format!("fewer items than the minimum {min}"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64).filter(|max| count > *max) {
            push(errors, at, "maxItems", || format!("more items than the maximum {max}"));
        }
        // Positional schemas: `prefixItems` (2020-12) or `items` as a list (drafts 4 to 2019-09).
        let (positional, positional_keyword, rest, rest_keyword) =
            match (schema.get("prefixItems"), schema.get("items")) {
                (Some(Value::Array(prefix)), rest) => (prefix.as_slice(), "prefixItems", rest, "items"),
                (_, Some(Value::Array(tuple))) => {
                    (tuple.as_slice(), "items", schema.get("additionalItems"), "additionalItems")
                }
                (_, rest) => (&[][..], "items", rest, "items"),
            };
        for (index, (item, item_schema)) in items.iter().zip(positional).enumerate() {
            let index = index.to_string();
            let at = at.child(&index, &format!("{positional_keyword}/{index}"));
            self.check(item_schema, item, &at, depth + 1, errors);
        }
        if let Some(rest) = rest.filter(|rest| rest.is_object() || rest.is_boolean()) {
            for (index, item) in items.iter().enumerate().skip(positional.len()) {
                self.check(rest, item, &at.child(&index.to_string(), rest_keyword), depth + 1, errors);
                if self.aborted.is_some() {
                    return;
                }
            }
        }
        if let Some(contains) = schema.get("contains") {
            let mut found = false;
            for (index, item) in items.iter().enumerate() {
                if self.passes(contains, item, &at.child(&index.to_string(), "contains"), depth + 1).0 {
                    found = true;
                    break;
                }
            }
            if !found && self.aborted.is_none() {
                push(errors, at, "contains", || "no item matches the \"contains\" schema".to_owned());
            }
        }
    }

    fn check_object(
        &mut self,
        schema: &'s Map<String, Value>,
        object: &Map<String, Value>,
        at: &At,
        depth: usize,
        errors: &mut Vec<Violation>,
    ) {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    push(errors, at, "required", || format!("missing required property \"{name}\""));
                }
            }
        }
        if let Some(Value::Object(dependencies)) = schema.get("dependentRequired") {
            for (present, needed) in dependencies.iter().filter(|(name, _)| object.contains_key(name.as_str())) {
                for name in needed.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        let keyword = format!("dependentRequired/{}", escape(present));
                        push(errors, at, &keyword, || {
                            format!("missing property \"{name}\", required with \"{present}\"")
                        });
                    }
                }
            }
        }
        let count = object.len() as u64;
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64).filter(|min| count < *min) {
            push(errors, at, "minProperties", || format!("fewer properties than the minimum {min}"));
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64).filter(|max| count > *max) {
            push(errors, at, "maxProperties", || format!("more properties than the maximum {max}"));
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            for (name, property_schema) in properties {
                if let Some(value) = object.get(name) {
                    let at = at.child(name, &format!("properties/{}", escape(name)));
                    self.check(property_schema, value, &at, depth + 1, errors);
                }
            }
        }
        // Which names `patternProperties` covers cannot be told without regular expressions.
        if schema.contains_key("patternProperties") {
            return;
        }
        let Some(additional) = schema.get("additionalProperties") else { return };
        let extra = object.iter().filter(|(name, _)| !properties.is_some_and(|p| p.contains_key(name.as_str())));
        for (name, value) in extra {
            let at = at.child(name, "additionalProperties");
            if additional == &Value::Bool(false) {
                // The path names the property; the keyword path is the schema's.
                if errors.len() < MAX_ERRORS {
                    errors.push(Violation {
                        instance_path: at.instance.clone(),
                        keyword_path: at.schema.clone(),
                        message: "unexpected property (additionalProperties is false)".to_owned(),
                    });
                }
            } else {
                self.check(additional, value, &at, depth + 1, errors);
            }
            if self.aborted.is_some() {
                return;
            }
        }
    }

    fn check_combinators(
        &mut self,
        schema: &'s Map<String, Value>,
        instance: &Value,
        at: &At,
        depth: usize,
        errors: &mut Vec<Violation>,
    ) {
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for (index, sub) in all.iter().enumerate() {
                self.check(sub, instance, &at.under(&format!("allOf/{index}")), depth + 1, errors);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(Value::Array(branches)) = schema.get(keyword) else { continue };
            let mut passed = 0;
            let mut details = Vec::new();
            for (index, branch) in branches.iter().enumerate() {
                let (ok, branch_errors) =
                    self.passes(branch, instance, &at.under(&format!("{keyword}/{index}")), depth + 1);
                if ok {
                    passed += 1;
                    if keyword == "anyOf" {
                        break;
                    }
                } else {
                    details.push(branch_errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
                }
            }
            if self.aborted.is_some() {
                return;
            }
            if passed == 0 && !branches.is_empty() {
                let mut detail = details.join(" | ");
                if detail.chars().count() > MAX_DETAIL {
                    detail = detail.chars().take(MAX_DETAIL - 3).collect::<String>() + "...";
                }
                push(errors, at, keyword, || format!("matches no schema of {keyword} ({detail})"));
            } else if keyword == "oneOf" && passed > 1 {
                push(errors, at, keyword, || format!("matches {passed} schemas of oneOf, expected exactly one"));
            }
        }
        if let Some(not) = schema.get("not") {
            if self.passes(not, instance, &at.under("not"), depth + 1).0 {
                push(errors, at, "not", || "must not match the \"not\" schema".to_owned());
            }
        }
        if let Some(condition) = schema.get("if") {
            let branch = if self.passes(condition, instance, &at.under("if"), depth + 1).0 { "then" } else { "else" };
            if let Some(sub) = schema.get(branch) {
                self.check(sub, instance, &at.under(branch), depth + 1, errors);
            }
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
