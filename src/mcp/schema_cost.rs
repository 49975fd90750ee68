//! How much one value costs to validate: the subschemas a schema applies *in place* (to the same
//! value: `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, `dependentSchemas`, `$ref`),
//! unfolded through local `$ref`s. A `$ref` cycle that never descends into the value unfolds
//! forever, `anyOf`s of `$ref`s that double at every level unfold exponentially: both are refused
//! before the schema is compiled, as are schemas nested deeper than [`MAX_DEPTH`].

use std::collections::HashMap;

use serde_json::Value;

/// Most subschemas applied in place to one value, `$ref`s unfolded.
pub const MAX_UNFOLDED: u64 = 10_000;
/// Deepest nesting of subschemas in a schema document.
pub const MAX_DEPTH: usize = 128;

/// Keywords whose subschemas apply to the same value, each a schema or a list of schemas.
const IN_PLACE: &[&str] = &["allOf", "anyOf", "oneOf", "not", "if", "then", "else"];
/// Keywords whose subschemas apply to parts of the value (each its own root of in-place cost).
const DESCENDING_ONE: &[&str] = &[
    "items",
    "additionalItems",
    "contains",
    "additionalProperties",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords holding a list of schemas that apply to parts of the value.
const DESCENDING_LIST: &[&str] = &["prefixItems", "items"];
/// Keywords holding a map of schemas that apply to parts of the value.
const DESCENDING_MAP: &[&str] = &["properties", "patternProperties"];

/// `Err` names what makes `schema` too costly.
pub(super) fn check(schema: &Value) -> Result<(), String> {
    let mut walk = Walk { root: schema, memo: HashMap::new(), open: Vec::new() };
    walk.visit_all(schema, "", 0)
}

struct Walk<'s> {
    root: &'s Value,
    /// In-place cost of each subschema by its JSON pointer.
    memo: HashMap<String, u64>,
    /// Pointers being unfolded (a `$ref` back to one of them is a cycle).
    open: Vec<String>,
}

impl<'s> Walk<'s> {
    /// Checks the in-place cost of `schema` (at `pointer`) and of every subschema below it.
    fn visit_all(&mut self, schema: &'s Value, pointer: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("the schema nests deeper than {MAX_DEPTH} levels"));
        }
        let Value::Object(map) = schema else { return Ok(()) };
        let unfolded = self.cost(schema, pointer)?;
        if unfolded > MAX_UNFOLDED {
            return Err(format!(
                "the schema at {} applies more than {MAX_UNFOLDED} subschemas to one value",
                if pointer.is_empty() { "/" } else { pointer }
            ));
        }
        for (key, value) in map {
            let here = format!("{pointer}/{}", escape(key));
            match value {
                Value::Object(inner)
                    if DESCENDING_MAP.contains(&key.as_str())
                        || key == "$defs"
                        || key == "definitions"
                        || key == "dependentSchemas" =>
                {
                    for (name, sub) in inner {
                        self.visit_all(sub, &format!("{here}/{}", escape(name)), depth + 1)?;
                    }
                }
                Value::Object(_) if DESCENDING_ONE.contains(&key.as_str()) || IN_PLACE.contains(&key.as_str()) => {
                    self.visit_all(value, &here, depth + 1)?;
                }
                Value::Array(list) if DESCENDING_LIST.contains(&key.as_str()) || IN_PLACE.contains(&key.as_str()) => {
                    for (index, sub) in list.iter().enumerate() {
                        self.visit_all(sub, &format!("{here}/{index}"), depth + 1)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Subschemas applied in place to one value by `schema` (at `pointer`), itself included,
    /// saturating at just over [`MAX_UNFOLDED`].
    fn cost(&mut self, schema: &'s Value, pointer: &str) -> Result<u64, String> {
        let Value::Object(map) = schema else { return Ok(1) };
        if let Some(cost) = self.memo.get(pointer) {
            return Ok(*cost);
        }
        if self.open.iter().any(|open| open == pointer) {
            return Err(format!("the schema's $ref at {pointer} loops back without descending into the value"));
        }
        if self.open.len() > MAX_DEPTH {
            return Err(format!("the schema's $refs nest deeper than {MAX_DEPTH} levels"));
        }
        self.open.push(pointer.to_owned());
        let mut total: u64 = 1;
        for (key, value) in map {
            let here = format!("{pointer}/{}", escape(key));
            let add = match (key.as_str(), value) {
                ("$ref" | "$dynamicRef" | "$recursiveRef", Value::String(reference)) => {
                    match reference.strip_prefix('#').and_then(|target| self.root.pointer(target).map(|s| (target, s)))
                    {
                        Some((target, sub)) => self.cost(sub, target)?,
                        None => 1,
                    }
                }
                ("dependentSchemas", Value::Object(inner)) => {
                    let mut sum = 0u64;
                    for (name, sub) in inner {
                        sum = sum.saturating_add(self.cost(sub, &format!("{here}/{}", escape(name)))?);
                    }
                    sum
                }
                (key, Value::Array(list)) if IN_PLACE.contains(&key) => {
                    let mut sum = 0u64;
                    for (index, sub) in list.iter().enumerate() {
                        sum = sum.saturating_add(self.cost(sub, &format!("{here}/{index}"))?);
                    }
                    sum
                }
                (key, sub) if IN_PLACE.contains(&key) => self.cost(sub, &here)?,
                _ => 0,
            };
            total = total.saturating_add(add).min(MAX_UNFOLDED + 1);
        }
        self.open.pop();
        self.memo.insert(pointer.to_owned(), total);
        Ok(total)
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
