//! Tests of the calculator: parsing, evaluation, the errors it reports and its bounds.

use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn evaluates_the_table_of_expressions() {
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("  42  ", 42.0),
        ("1 + 2", 3.0),
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("100 / 10 / 5", 2.0),
        ("2 * 3 / 4", 1.5),
        ("7 / 2", 3.5),
        ("-3", -3.0),
        ("+3", 3.0),
        ("--3", 3.0),
        ("-(2 + 3)", -5.0),
        ("2 - -3", 5.0),
        ("2 * -3", -6.0),
        ("2^10", 1024.0),
        ("2^3^2", 512.0),
        ("(2^3)^2", 64.0),
        ("-2^2", -4.0),
        ("(-2)^2", 4.0),
        ("2^-1", 0.5),
        ("-2^-2", -0.25),
        ("4^0.5", 2.0),
        ("(-8)^3", -512.0),
        ("3 * 2^2", 12.0),
        (".5 + 0.25", 0.75),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1.5E-3", 0.0015),
        ("2e+2", 200.0),
        ("6 × 7", 42.0),
        ("84 ÷ 2", 42.0),
        ("50 \u{2212} 8", 42.0),
        ("sqrt(16)", 4.0),
        ("SQRT(2) ^ 2", 2.0000000000000004),
        ("abs(-7.5)", 7.5),
        ("min(3, 1, 2)", 1.0),
        ("max(3, 1, 2)", 3.0),
        ("max(-1)", -1.0),
        ("min(2 + 3, max(1, 10) / 2)", 5.0),
        ("pi", std::f64::consts::PI),
        ("2 * e", 2.0 * std::f64::consts::E),
        ("(2 + 3) * 4^2 / sqrt(16)", 20.0),
        ("((((1))))", 1.0),
        ("-0", 0.0),
        ("0.1 + 0.2", 0.30000000000000004),
    ];
    for (expression, expected) in cases {
        let got = evaluate(expression).unwrap_or_else(|e| panic!("{expression:?}: {e}"));
        assert!(close(got, *expected), "{expression:?} = {got}, expected {expected}");
    }
    assert!(evaluate("-0").unwrap().is_sign_positive(), "-0 is reported as 0");
}

#[test]
fn reports_the_table_of_errors() {
    let syntax_at =
        |position: usize| move |e: &CalcError| matches!(e, CalcError::Syntax { position: p, .. } if *p == position);
    type Check = Box<dyn Fn(&CalcError) -> bool>;
    let cases: Vec<(&str, Check)> = vec![
        ("", Box::new(syntax_at(1))),
        ("   ", Box::new(syntax_at(4))),
        ("1 +", Box::new(syntax_at(4))),
        ("* 2", Box::new(syntax_at(1))),
        ("2 ** 3", Box::new(syntax_at(4))),
        ("(1 + 2", Box::new(syntax_at(7))),
        ("1 + 2)", Box::new(syntax_at(6))),
        ("()", Box::new(syntax_at(2))),
        ("1 2", Box::new(syntax_at(3))),
        ("1.2.3", Box::new(syntax_at(4))),
        (".", Box::new(syntax_at(1))),
        ("1e", Box::new(syntax_at(2))),
        ("1e+", Box::new(syntax_at(2))),
        ("2 $ 3", Box::new(syntax_at(3))),
        ("x + 1", Box::new(syntax_at(1))),
        ("max(1,)", Box::new(syntax_at(7))),
        ("max(1 2)", Box::new(syntax_at(7))),
        ("sqrt", Box::new(syntax_at(1))),
        ("1 / 0", Box::new(|e| *e == CalcError::DivisionByZero { position: 3 })),
        ("1 / (2 - 2)", Box::new(|e| *e == CalcError::DivisionByZero { position: 3 })),
        ("0 ^ -1", Box::new(|e| *e == CalcError::DivisionByZero { position: 3 })),
        ("foo(1)", Box::new(|e| matches!(e, CalcError::UnknownFunction { name, position: 1 } if name == "foo"))),
        ("sqrt()", Box::new(|e| matches!(e, CalcError::Arity { function: "sqrt", got: 0, .. }))),
        ("sqrt(1, 2)", Box::new(|e| matches!(e, CalcError::Arity { function: "sqrt", got: 2, .. }))),
        ("abs(1, 2)", Box::new(|e| matches!(e, CalcError::Arity { function: "abs", got: 2, .. }))),
        ("min()", Box::new(|e| matches!(e, CalcError::Arity { function: "min", got: 0, .. }))),
        ("max()", Box::new(|e| matches!(e, CalcError::Arity { function: "max", got: 0, .. }))),
        ("sqrt(-1)", Box::new(|e| matches!(e, CalcError::Domain { position: 1, .. }))),
        ("(-8) ^ 0.5", Box::new(|e| matches!(e, CalcError::Domain { position: 6, .. }))),
        ("1e308 * 10", Box::new(|e| *e == CalcError::NotFinite { position: 7 })),
        ("10 ^ 400", Box::new(|e| *e == CalcError::NotFinite { position: 4 })),
        ("1e400", Box::new(|e| *e == CalcError::NotFinite { position: 1 })),
    ];
    for (expression, check) in &cases {
        match evaluate(expression) {
            Ok(value) => panic!("{expression:?} evaluated to {value}, expected an error"),
            Err(e) => assert!(check(&e), "{expression:?}: unexpected error {e:?}"),
        }
    }
}

#[test]
fn error_messages_say_what_and_where() {
    assert_eq!(evaluate("1 / 0").unwrap_err().to_string(), "division by zero at column 3");
    assert_eq!(
        evaluate("(1 + 2").unwrap_err().to_string(),
        "syntax error at column 7: missing `)` for the `(` at column 1"
    );
    assert_eq!(evaluate("sqrt(1, 2)").unwrap_err().to_string(), "`sqrt` takes exactly 1 argument, got 2 (column 1)");
    assert!(evaluate("sqrt(-4)").unwrap_err().to_string().contains("square root of a negative number (-4)"));
    assert!(evaluate("foo(1)").unwrap_err().to_string().starts_with("unknown function `foo` at column 1"));
}

#[test]
fn rejects_long_input_before_parsing() {
    let long = "1+".repeat(MAX_EXPRESSION_CHARS / 2) + "1";
    assert_eq!(evaluate(&long), Err(CalcError::TooLong { limit: MAX_EXPRESSION_CHARS }));
    // Exactly at the limit is fine, and a long flat chain needs no recursion to evaluate.
    let at_limit = "1+".repeat(MAX_EXPRESSION_CHARS / 2 - 1) + "10";
    assert_eq!(at_limit.chars().count(), MAX_EXPRESSION_CHARS);
    assert_eq!(evaluate(&at_limit), Ok((MAX_EXPRESSION_CHARS / 2 - 1) as f64 + 10.0));
    // The limit counts characters, not bytes.
    let wide = "1×".repeat(MAX_EXPRESSION_CHARS / 2 - 1) + "1";
    assert_eq!(evaluate(&wide), Ok(1.0));
}

#[test]
fn summaries_quote_nothing_of_the_expression() {
    for expression in [
        "secret_fn(1)",
        "1 + secret",
        "1 $ 2",
        "12345.6.7",
        "sqrt(-98765)",
        "(-98765) ^ 0.5",
        "98765 / 0",
        "1e98765",
        "(1 + 2",
        "min()",
    ] {
        let err = evaluate(expression).unwrap_err();
        let summary = err.summary();
        for quoted in ["secret", "$", "12345", "98765"] {
            assert!(!summary.contains(quoted), "{expression:?}: {summary}");
        }
        assert!(summary.contains("column"), "{expression:?}: {summary}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let at_limit = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(evaluate(&at_limit), Ok(1.0));
    for deep in [
        format!("{}1{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1)),
        format!("{}1", "-".repeat(3000)),
        format!("{}1", "2^".repeat(1500)),
        format!("{}1{}", "abs(".repeat(600), ")".repeat(600)),
        "(".repeat(MAX_EXPRESSION_CHARS),
    ] {
        assert!(matches!(evaluate(&deep), Err(CalcError::TooDeep { limit: MAX_DEPTH, .. })), "{:?}", evaluate(&deep));
    }
}

#[test]
fn schema_requires_a_string_expression() {
    let schema = input_schema();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["expression"]));
    assert_eq!(schema["properties"]["expression"]["type"], "string");
    assert_eq!(schema["properties"]["expression"]["maxLength"], MAX_EXPRESSION_CHARS);
    assert!(DESCRIPTION.contains("sqrt"));
}
