//! Tests of the validation of tool arguments against their JSON Schema.

use std::time::{Duration, Instant};

use serde_json::{json, Map};

use super::*;

/// What a case expects: `path: message` of each violation (the keyword's place apart).
fn shown(schema: &Value, instance: &Value) -> Vec<String> {
    validate(schema, instance)
        .err()
        .unwrap_or_default()
        .iter()
        .map(|v| format!("{}: {}", display(&v.instance_path), v.message))
        .collect()
}

/// (schema, instance, expected errors; empty means valid).
fn cases() -> Vec<(Value, Value, Vec<&'static str>)> {
    let object_ab = json!({
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "string"}},
        "required": ["b"]
    });
    vec![
        // type
        (json!({"type": "number"}), json!(1.5), vec![]),
        (json!({"type": "number"}), json!("x"), vec!["/: expected number, got string"]),
        (json!({"type": "integer"}), json!(3), vec![]),
        (json!({"type": "integer"}), json!(3.0), vec![]),
        (json!({"type": "integer"}), json!(3.5), vec!["/: expected integer, got number"]),
        (json!({"type": ["string", "null"]}), json!(null), vec![]),
        (json!({"type": ["string", "null"]}), json!(1), vec!["/: expected null or string, got integer"]),
        (json!({"type": "boolean"}), json!({}), vec!["/: expected boolean, got object"]),
        // properties, required, additionalProperties, patternProperties, propertyNames
        (object_ab.clone(), json!({"a": 1, "b": "x"}), vec![]),
        (
            object_ab.clone(),
            json!({"a": "1"}),
            vec!["/: missing required property \"b\"", "/a: expected number, got string"],
        ),
        (object_ab, json!([]), vec!["/: expected object, got array"]),
        (
            json!({"properties": {"a": {}}, "additionalProperties": false}),
            json!({"a": 1, "z": 2}),
            vec!["/z: unexpected property (additionalProperties is false)"],
        ),
        (
            json!({"additionalProperties": {"type": "integer"}}),
            json!({"x": 1, "y/z": "no"}),
            vec!["/y~1z: expected integer, got string"],
        ),
        (json!({"patternProperties": {"^x": {}}, "additionalProperties": false}), json!({"x1": 1}), vec![]),
        (
            json!({"patternProperties": {"^x": {}}, "additionalProperties": false}),
            json!({"y": 1}),
            vec!["/y: unexpected property (additionalProperties is false)"],
        ),
        (
            json!({"patternProperties": {"^n_": {"type": "integer"}}}),
            json!({"n_a": "one"}),
            vec!["/n_a: expected integer, got string"],
        ),
        (
            json!({"propertyNames": {"maxLength": 3}}),
            json!({"long-name": 1}),
            vec!["/: a property name fails propertyNames: longer than the maximum length 3"],
        ),
        (json!({"minProperties": 2}), json!({"a": 1}), vec!["/: fewer properties than the minimum 2"]),
        (json!({"maxProperties": 0}), json!({"a": 1}), vec!["/: more properties than the maximum 0"]),
        (
            json!({"dependentRequired": {"card": ["cvv"]}}),
            json!({"card": "1"}),
            vec!["/: missing required property \"cvv\""],
        ),
        (
            json!({"properties": {"a": true}, "unevaluatedProperties": false}),
            json!({"a": 1, "b": 2}),
            vec!["/b: unexpected property (unevaluatedProperties)"],
        ),
        // nested paths
        (
            json!({"properties": {"list": {"items": {"properties": {"n": {"type": "integer"}}}}}}),
            json!({"list": [{"n": 1}, {"n": "two"}]}),
            vec!["/list/1/n: expected integer, got string"],
        ),
        // items, prefixItems, contains, min/maxItems, uniqueItems
        (json!({"items": {"type": "string"}}), json!(["a", 1]), vec!["/1: expected string, got integer"]),
        (
            json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}),
            json!(["a", 1, "b"]),
            vec!["/2: expected integer, got string"],
        ),
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}], "additionalItems": false}),
            json!(["a", 1]),
            vec!["/: more items than the 1 the schema lists"],
        ),
        (json!({"contains": {"const": 3}}), json!([1, 2]), vec!["/: no item matches the \"contains\" schema"]),
        (json!({"contains": {"const": 3}}), json!([1, 3]), vec![]),
        (json!({"minItems": 2}), json!([1]), vec!["/: fewer items than the minimum 2"]),
        (json!({"maxItems": 1}), json!([1, 2]), vec!["/: more items than the maximum 1"]),
        (json!({"uniqueItems": true}), json!([1, 2, 1]), vec!["/: items are not unique"]),
        (json!({"uniqueItems": true}), json!([1, 2, "1"]), vec![]),
        // enum, const
        (json!({"enum": ["a", "b"]}), json!("a"), vec![]),
        (json!({"enum": ["a", "b"]}), json!("c"), vec!["/: not one of [\"a\",\"b\"]"]),
        (json!({"enum": [1, null]}), json!(1.0), vec![]),
        (json!({"const": {"k": [1]}}), json!({"k": [1]}), vec![]),
        (json!({"const": null}), json!(0), vec!["/: expected the constant null"]),
        // numeric bounds
        (json!({"minimum": 5}), json!(5), vec![]),
        (json!({"minimum": 5}), json!(4), vec!["/: less than the minimum 5"]),
        (json!({"maximum": 5}), json!(5.5), vec!["/: greater than the maximum 5"]),
        (json!({"exclusiveMinimum": 5}), json!(5), vec!["/: not greater than 5"]),
        (json!({"exclusiveMaximum": 5}), json!(4.9), vec![]),
        (
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": true}),
            json!(5),
            vec!["/: not less than 5"],
        ),
        (json!({"minimum": 0}), json!("not a number"), vec![]),
        (json!({"multipleOf": 3}), json!(9), vec![]),
        (json!({"multipleOf": 0.1}), json!(0.3), vec![]),
        (json!({"multipleOf": 3}), json!(10), vec!["/: not a multiple of 3.0"]),
        // strings: lengths count characters, pattern, format
        (json!({"maxLength": 2}), json!("éé"), vec![]),
        (json!({"maxLength": 2}), json!("abc"), vec!["/: longer than the maximum length 2"]),
        (json!({"minLength": 1}), json!(""), vec!["/: shorter than the minimum length 1"]),
        (json!({"pattern": "^[a-z]+$"}), json!("abc"), vec![]),
        (json!({"pattern": "^[a-z]+$"}), json!("NOT LOWER"), vec!["/: does not match the pattern \"^[a-z]+$\""]),
        (json!({"pattern": "\\d"}), json!("a1"), vec![]),
        (json!({"format": "email"}), json!("someone@example.com"), vec![]),
        (json!({"format": "email"}), json!("NOT AN EMAIL"), vec!["/: not a valid email"]),
        (json!({"format": "date-time"}), json!("2026-12-04T15:00:00Z"), vec![]),
        (json!({"format": "date-time"}), json!("yesterday"), vec!["/: not a valid date-time"]),
        (json!({"format": "uuid"}), json!("not-a-uuid"), vec!["/: not a valid uuid"]),
        (json!({"format": "ipv4"}), json!("10.0.0.300"), vec!["/: not a valid ipv4"]),
        (json!({"format": "no-such-format"}), json!("x"), vec![]),
        // combinators
        (json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}), json!(2), vec![]),
        (
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            json!(2),
            vec!["/: matches no schema of anyOf (/: expected string, got integer | /: expected null, got integer)"],
        ),
        (json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}), json!(-1), vec![]),
        (
            json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}),
            json!(1),
            vec!["/: matches more than one schema of oneOf, expected exactly one"],
        ),
        (
            json!({"allOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            json!({}),
            vec!["/: missing required property \"a\"", "/: missing required property \"b\""],
        ),
        (json!({"not": {"type": "null"}}), json!(null), vec!["/: must not match the \"not\" schema"]),
        (
            json!({"if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}, "else": {"required": ["y"]}}),
            json!({"kind": "b"}),
            vec!["/: missing required property \"y\""],
        ),
        // boolean schemas
        (json!(true), json!({"anything": 1}), vec![]),
        (json!(false), json!(1), vec!["/: no value is allowed here"]),
        // $ref
        (
            json!({"properties": {"p": {"$ref": "#/$defs/point"}}, "$defs": {"point": {"required": ["x"]}}}),
            json!({"p": {}}),
            vec!["/p: missing required property \"x\""],
        ),
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "items": {"$ref": "#/definitions/n"}, "definitions": {"n": {"type": "number"}}}),
            json!([1, "a"]),
            vec!["/1: expected number, got string"],
        ),
        // recursive $ref over a recursive instance
        (
            json!({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"}),
            json!({"next": {"next": {"next": 5}}}),
            vec!["/next/next/next: expected object, got integer"],
        ),
        // unknown keywords are ignored
        (json!({"x-vendor": {"type": "string"}, "title": "T"}), json!(1), vec![]),
    ]
}

#[test]
fn validates_every_keyword_of_the_draft() {
    let mismatches: Vec<String> = cases()
        .into_iter()
        .filter_map(|(schema, instance, expected)| {
            let got = shown(&schema, &instance);
            (got != expected)
                .then(|| format!("schema {schema} instance {instance}: got {got:?}, expected {expected:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn schemas_that_do_not_compile_are_not_checked() {
    for schema in [
        // Not a schema of its draft.
        json!({"type": "madeup"}),
        // Nothing is fetched, from the network or the disk.
        json!({"$ref": "https://example.com/schema.json"}),
        json!({"$ref": "file:///etc/passwd"}),
        // A local $ref that does not resolve.
        json!({"properties": {"p": {"$ref": "#/$defs/missing"}}}),
    ] {
        assert!(matches!(compile(&schema), Err(CompileError::Invalid(_))), "{schema}");
        assert_eq!(validate(&schema, &json!({"p": 1})), Ok(()), "{schema}");
    }
}

#[test]
fn the_declared_draft_decides_what_keywords_mean() {
    // Draft 4: `exclusiveMinimum` is a boolean beside `minimum`.
    let draft4 = json!({"$schema": "http://json-schema.org/draft-04/schema#", "minimum": 5, "exclusiveMinimum": true});
    assert_eq!(shown(&draft4, &json!(5)), ["/: not greater than 5"]);
    // 2020-12 (the default): `items` as a list is not a schema of the draft; `prefixItems` is.
    assert!(compile(&json!({"items": [{"type": "string"}]})).is_err());
    // 2019-09: `dependentRequired` exists; draft 7 does not know it.
    let dependent = |draft: &str| json!({"$schema": draft, "dependentRequired": {"a": ["b"]}});
    assert_eq!(
        shown(&dependent("https://json-schema.org/draft/2019-09/schema"), &json!({"a": 1})),
        ["/: missing required property \"b\""]
    );
    assert!(shown(&dependent("http://json-schema.org/draft-07/schema#"), &json!({"a": 1})).is_empty());
}

#[test]
fn self_referencing_schemas_are_refused_at_compile_time() {
    for schema in [
        json!({"$ref": "#"}),
        json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
        json!({"allOf": [{"$ref": "#"}]}),
    ] {
        let error = compile(&schema).expect_err("refused");
        assert!(matches!(error, CompileError::TooCostly(_)), "{schema}: {error}");
        assert!(error.to_string().contains("loops back"), "{error}");
        assert_eq!(validate(&schema, &json!(1)), Ok(()));
    }
}

#[test]
fn exponential_schemas_are_refused_at_compile_time() {
    // Every level doubles the work: 2^30 applications to one value.
    let mut defs = Map::new();
    defs.insert("l0".to_owned(), json!({"type": "string"}));
    for level in 1..=30 {
        let previous = format!("#/$defs/l{}", level - 1);
        defs.insert(format!("l{level}"), json!({"anyOf": [{"$ref": previous}, {"$ref": previous}]}));
    }
    let schema = json!({"$defs": defs, "$ref": "#/$defs/l30"});
    let started = Instant::now();
    let error = compile(&schema).expect_err("refused");
    assert!(error.to_string().contains(&format!("more than {MAX_UNFOLDED} subschemas")), "{error}");
    assert_eq!(validate(&schema, &json!(1)), Ok(()));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn hostile_patterns_cost_linear_time() {
    // Catastrophic for a backtracking engine (2^n paths); the `regex` crate runs it in one pass.
    let long = "a".repeat(50_000) + "!";
    let started = Instant::now();
    for pattern in ["^(a+)+$", "^(a|a)*$", "^(a|aa)+$", "^(.*a){20}$"] {
        let schema = json!({"properties": {"w": {"pattern": pattern}}});
        let errors = validate(&schema, &json!({"w": long})).unwrap_err();
        assert_eq!(errors.len(), 1, "{pattern}");
        assert_eq!((errors[0].instance_path.as_str(), errors[0].keyword()), ("/w", "pattern"), "{pattern}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn patterns_beyond_the_regex_crate_run_with_a_backtracking_budget() {
    // A back-reference and a look-ahead: fancy-regex, with its budget.
    let started = Instant::now();
    let backreference = json!({"pattern": "^(a+)+\\1$"});
    let lookahead = json!({"pattern": "^(?=(a|a)*$)b"});
    assert_eq!(validate(&backreference, &json!("aaaa")), Ok(()));
    let long = "a".repeat(40) + "!";
    for schema in [backreference, lookahead] {
        let errors = validate(&schema, &json!(long)).unwrap_err();
        assert_eq!(errors.len(), 1, "{schema}");
        assert_eq!(errors[0].keyword(), "pattern", "{schema}");
        assert!(!errors[0].to_string().contains("aaaa!"), "{}", errors[0]);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn error_lists_are_capped() {
    let instance = Value::Array((0..1000).map(|_| json!("x")).collect());
    let errors = validate(&json!({"items": {"type": "integer"}}), &instance).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS);
    assert_eq!(errors[0].to_string(), "/0: expected integer, got string (at /items/type)");
}

#[test]
fn compiled_validators_are_cached_by_schema_text() {
    let text = r#"{"type": "object", "properties": {"n": {"type": "integer"}}, "$comment": "cache test"}"#;
    assert_eq!(validate_text(text, &json!({"n": 1})), Ok(()));
    let cached = CACHE.read().get(text).cloned().flatten().expect("cached");
    assert_eq!(validate_text(text, &json!({"n": "x"})).unwrap_err()[0].keyword(), "type");
    let again = CACHE.read().get(text).cloned().flatten().expect("still cached");
    assert!(Arc::ptr_eq(&cached, &again), "compiled once");
    // Text that is not JSON stands for an object schema.
    assert_eq!(validate_text("{not json", &json!({})), Ok(()));
    assert_eq!(validate_text("{not json", &json!([])).unwrap_err()[0].keyword(), "type");
}

#[test]
fn violations_never_quote_the_value() {
    const SECRET: &str = "sk-live-MARKER";
    let number_secret = 987_654_321.5;
    let schema = json!({
        "type": "object",
        "properties": {
            "s": {"enum": ["a", "b"]},
            "c": {"const": "fixed"},
            "t": {"type": "integer"},
            "long": {"maxLength": 3},
            "short": {"minLength": 100},
            "n": {"maximum": 5, "multipleOf": 7},
            "m": {"minimum": 1e12, "exclusiveMaximum": 1},
            "list": {"maxItems": 1, "items": {"type": "string"}, "contains": {"const": "x"}, "uniqueItems": true},
            "any": {"anyOf": [{"type": "integer"}, {"enum": [1, 2]}]},
            "not": {"not": {"type": "string"}},
            "p": {"pattern": "^[0-9]+$"},
            "f": {"format": "email"},
            "names": {"propertyNames": {"pattern": "^[0-9]+$"}}
        },
        "additionalProperties": false,
        "maxProperties": 2
    });
    let instance = json!({
        "s": SECRET, "c": SECRET, "t": SECRET, "long": SECRET, "short": SECRET,
        "n": number_secret, "m": number_secret, "list": [SECRET, 987_654_321, SECRET],
        "any": SECRET, "not": SECRET, "p": SECRET, "f": SECRET, "names": {SECRET: 1}, "extra": SECRET
    });
    let violations = validate(&schema, &instance).unwrap_err();
    assert!(violations.len() >= 17, "{violations:#?}");
    for violation in &violations {
        let shown = format!("{violation} {}", violation.keyword_path);
        assert!(!shown.contains("MARKER") && !shown.contains("987654321"), "a value leaked: {shown}");
    }
    // Each names the value's path and the keyword's place in the schema.
    let find = |keyword_path: &str| violations.iter().find(|v| v.keyword_path == keyword_path);
    assert_eq!(find("/properties/s/enum").map(|v| v.instance_path.as_str()), Some("/s"));
    assert_eq!(find("/properties/t/type").map(|v| v.message.as_str()), Some("expected integer, got string"));
    assert_eq!(find("/properties/list/items/type").map(|v| v.instance_path.as_str()), Some("/list/1"));
    assert_eq!(find("/properties/p/pattern").map(|v| v.instance_path.as_str()), Some("/p"));
    assert_eq!(find("/properties/f/format").map(|v| v.instance_path.as_str()), Some("/f"));
    assert_eq!(find("/additionalProperties").map(|v| v.instance_path.as_str()), Some("/extra"));
    assert!(find("/maxProperties").is_some(), "{violations:#?}");
    assert!(find("/properties/any/anyOf").is_some(), "{violations:#?}");
}

#[test]
fn keyword_paths_follow_refs_and_combinators() {
    let schema = json!({
        "properties": {"p": {"$ref": "#/$defs/point"}},
        "allOf": [{"required": ["q"]}],
        "if": {"required": ["p"]}, "then": {"required": ["r"]},
        "$defs": {"point": {"required": ["x"]}}
    });
    let violations = validate(&schema, &json!({"p": {}})).unwrap_err();
    let mut paths: Vec<(&str, &str)> =
        violations.iter().map(|v| (v.instance_path.as_str(), v.keyword_path.as_str())).collect();
    paths.sort_unstable();
    assert_eq!(paths, [("", "/allOf/0/required"), ("", "/then/required"), ("/p", "/properties/p/$ref/required")]);
    let shout = json!({"type": "object", "properties": {"word": {"type": "string", "pattern": "^[a-z]+$"}}});
    let violation = &validate(&shout, &json!({"word": "LOUD"})).unwrap_err()[0];
    assert_eq!(violation.to_string(), "/word: does not match the pattern \"^[a-z]+$\" (at /properties/word/pattern)");
}
