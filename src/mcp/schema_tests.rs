//! Tests of the validation of tool arguments against their JSON Schema.

use serde_json::json;

use super::*;

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
        (json!({"type": ["string", "null"]}), json!(1), vec!["/: expected string or null, got number"]),
        (json!({"type": "string", "nullable": true}), json!(null), vec![]),
        (json!({"type": "boolean"}), json!({}), vec!["/: expected boolean, got object"]),
        (json!({"type": "madeup"}), json!(1), vec![]),
        // properties, required, additionalProperties
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
        (json!({"patternProperties": {"^x": {}}, "additionalProperties": false}), json!({"y": 1}), vec![]),
        (json!({"minProperties": 2}), json!({"a": 1}), vec!["/: fewer properties than the minimum 2"]),
        (json!({"maxProperties": 0}), json!({"a": 1}), vec!["/: more properties than the maximum 0"]),
        (
            json!({"dependentRequired": {"card": ["cvv"]}}),
            json!({"card": "1"}),
            vec!["/: missing property \"cvv\", required with \"card\""],
        ),
        // nested paths
        (
            json!({"properties": {"list": {"items": {"properties": {"n": {"type": "integer"}}}}}}),
            json!({"list": [{"n": 1}, {"n": "two"}]}),
            vec!["/list/1/n: expected integer, got string"],
        ),
        // items, prefixItems, tuples, contains, min/maxItems
        (json!({"items": {"type": "string"}}), json!(["a", 1]), vec!["/1: expected string, got number"]),
        (
            json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}),
            json!(["a", 1, "b"]),
            vec!["/2: expected integer, got string"],
        ),
        (
            json!({"items": [{"type": "string"}], "additionalItems": false}),
            json!(["a", 1]),
            vec!["/1: no value is allowed here"],
        ),
        (json!({"contains": {"const": 3}}), json!([1, 2]), vec!["/: no item matches the \"contains\" schema"]),
        (json!({"contains": {"const": 3}}), json!([1, 3]), vec![]),
        (json!({"minItems": 2}), json!([1]), vec!["/: fewer items than the minimum 2"]),
        (json!({"maxItems": 1}), json!([1, 2]), vec!["/: more items than the maximum 1"]),
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
        (json!({"maximum": 5, "exclusiveMaximum": true}), json!(5), vec!["/: not less than 5"]),
        (json!({"minimum": 0}), json!("not a number"), vec![]),
        (json!({"multipleOf": 3}), json!(9), vec![]),
        (json!({"multipleOf": 0.1}), json!(0.3), vec![]),
        (json!({"multipleOf": 3}), json!(10), vec!["/: not a multiple of 3"]),
        // string lengths count characters, not bytes
        (json!({"maxLength": 2}), json!("éé"), vec![]),
        (json!({"maxLength": 2}), json!("abc"), vec!["/: longer than the maximum length 2"]),
        (json!({"minLength": 1}), json!(""), vec!["/: shorter than the minimum length 1"]),
        (json!({"pattern": "^[a-z]+$", "format": "email"}), json!("NOT AN EMAIL"), vec![]),
        // combinators
        (json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}), json!(2), vec![]),
        (
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            json!(2),
            vec!["/: matches no schema of anyOf (/: expected string, got number | /: expected null, got number)"],
        ),
        (json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}), json!(-1), vec![]),
        (
            json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}),
            json!(1),
            vec!["/: matches 2 schemas of oneOf, expected exactly one"],
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
            json!({"items": {"$ref": "#/definitions/n"}, "definitions": {"n": {"type": "number"}}}),
            json!([1, "a"]),
            vec!["/1: expected number, got string"],
        ),
        (
            json!({"properties": {"p": {"$ref": "#/$defs/missing"}}}),
            json!({"p": 1}),
            vec!["/p: the schema's $ref \"#/$defs/missing\" does not resolve"],
        ),
        (json!({"$ref": "https://example.com/schema.json"}), json!(1), vec![]),
        // recursive $ref over a recursive instance within the depth cap
        (
            json!({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"}),
            json!({"next": {"next": {"next": 5}}}),
            vec!["/next/next/next: expected object, got number"],
        ),
        // unknown keywords are ignored
        (json!({"x-vendor": {"type": "string"}, "title": "T"}), json!(1), vec![]),
    ]
}

#[test]
fn validates_the_supported_keywords() {
    for (schema, instance, expected) in cases() {
        let got: Vec<String> =
            validate(&schema, &instance).err().unwrap_or_default().iter().map(ToString::to_string).collect();
        assert_eq!(got, expected, "schema {schema} instance {instance}");
    }
}

#[test]
fn self_referencing_schemas_stop_at_the_depth_cap() {
    for schema in [
        json!({"$ref": "#"}),
        json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
        json!({"allOf": [{"$ref": "#"}]}),
    ] {
        let errors: Vec<String> = validate(&schema, &json!(1)).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(errors, vec![format!("/: schema nesting deeper than {MAX_DEPTH} levels")], "{schema}");
    }
}

#[test]
fn exponential_schemas_stop_at_the_step_budget() {
    // A small schema where every level doubles the work: 2^30 applications without a budget,
    // within the depth cap (two levels of nesting per step).
    let mut defs = Map::new();
    defs.insert("l0".to_owned(), json!({"type": "string"}));
    for level in 1..=30 {
        let previous = format!("#/$defs/l{}", level - 1);
        defs.insert(format!("l{level}"), json!({"anyOf": [{"$ref": previous}, {"$ref": previous}]}));
    }
    let schema = json!({"$defs": defs, "$ref": "#/$defs/l30"});
    let started = std::time::Instant::now();
    let errors = validate(&schema, &json!(1)).unwrap_err();
    assert!(errors.last().unwrap().message.contains("more than 1000000 steps"), "{errors:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn error_lists_are_capped() {
    let instance = Value::Array((0..1000).map(|_| json!("x")).collect());
    let errors = validate(&json!({"items": {"type": "integer"}}), &instance).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS);
    assert_eq!(errors[0].to_string(), "/0: expected integer, got string");
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
            "list": {"maxItems": 1, "items": {"type": "string"}, "contains": {"const": "x"}},
            "any": {"anyOf": [{"type": "integer"}, {"enum": [1, 2]}]},
            "not": {"not": {"type": "string"}}
        },
        "additionalProperties": false,
        "maxProperties": 2
    });
    let instance = json!({
        "s": SECRET, "c": SECRET, "t": SECRET, "long": SECRET, "short": SECRET,
        "n": number_secret, "m": number_secret, "list": [SECRET, 987_654_321],
        "any": SECRET, "not": SECRET, "extra": SECRET
    });
    let violations = validate(&schema, &instance).unwrap_err();
    assert!(violations.len() >= 14, "{violations:#?}");
    for violation in &violations {
        let shown = format!("{violation} {}", violation.keyword_path);
        assert!(!shown.contains("MARKER") && !shown.contains("987654321"), "a value leaked: {shown}");
    }
    // Each names the value's path and the keyword's place in the schema.
    let find = |keyword_path: &str| violations.iter().find(|v| v.keyword_path == keyword_path);
    assert_eq!(find("/properties/s/enum").map(|v| v.instance_path.as_str()), Some("/s"));
    assert_eq!(find("/properties/t/type").map(|v| v.message.as_str()), Some("expected integer, got string"));
    assert_eq!(find("/properties/list/items/type").map(|v| v.instance_path.as_str()), Some("/list/1"));
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
    let paths: Vec<(&str, &str)> =
        violations.iter().map(|v| (v.instance_path.as_str(), v.keyword_path.as_str())).collect();
    assert_eq!(paths, [("/p", "/properties/p/$ref/required"), ("", "/allOf/0/required"), ("", "/then/required")]);
}
