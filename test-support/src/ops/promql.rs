//! The metric names a PromQL expression reads, for checking dashboards and alert rules against
//! what the service exposes.
//!
//! Not a PromQL parser: a tokenizer and a walk over the tokens that drops everything that is not
//! a metric name — string literals, label matchers (`{…}`, except `__name__="…"` which names a
//! metric), ranges and subqueries (`[…]`), grouping clauses (`by (…)`, `without (…)`,
//! `on (…)`, `ignoring (…)`, `group_left (…)`, `group_right (…)`), function and aggregation
//! names (any identifier followed by `(`, and the aggregation operators before a `by` clause),
//! keywords and binary operators (`and`, `bool`, `offset`, …), numbers and durations, and
//! Grafana's template variables (`$__rate_interval`, `$instance`, `${instance:regex}`,
//! `[[instance]]`). Grafana's `label_values(expr, label)` reads only its first argument.

use std::collections::BTreeSet;

/// Aggregation operators: followed by `(` or by a `by`/`without` clause.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];

/// Clauses whose parenthesised list holds label names, not metrics.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Keywords and word operators that are never metric names.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"];

/// Histogram sample suffixes: `NAME_bucket`, `NAME_sum` and `NAME_count` belong to family `NAME`.
pub const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number,
    Var,
    Open(char),
    Close(char),
    Comma,
    Op(String),
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Length of a Grafana `[[name]]` or `[[name:format]]` at the start of `chars`, if there is one.
fn grafana_old_variable(chars: &[char]) -> Option<usize> {
    if chars.len() < 5 || chars[0] != '[' || chars[1] != '[' || !is_ident_start(chars[2]) {
        return None;
    }
    let close = chars.windows(2).position(|pair| pair == [']', ']'])?;
    chars[2..close].iter().all(|&c| is_ident_char(c)).then_some(close + 2)
}

fn tokenize(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '#' => {
                // A comment runs to the end of the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => {
                let quote = c;
                let mut value = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(format!("unterminated string in {expr:?}"));
                    };
                    i += 1;
                    if ch == quote {
                        break;
                    }
                    if ch == '\\' && quote != '`' {
                        if let Some(&escaped) = chars.get(i) {
                            value.push(escaped);
                            i += 1;
                        }
                        continue;
                    }
                    value.push(ch);
                }
                tokens.push(Token::Str(value));
            }
            '$' => {
                // Grafana variables: $name, $__name, ${name}, ${name:format}.
                i += 1;
                if chars.get(i) == Some(&'{') {
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                }
                tokens.push(Token::Var);
            }
            '[' if grafana_old_variable(&chars[i..]).is_some() => {
                // Grafana's old variable syntax [[name]] (also inside a range: [[[name]]]).
                i += grafana_old_variable(&chars[i..]).unwrap_or(1);
                tokens.push(Token::Var);
            }
            '(' | '{' | '[' => {
                tokens.push(Token::Open(c));
                i += 1;
            }
            ')' | '}' | ']' => {
                tokens.push(Token::Close(c));
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                // Numbers (1, 0.95, 1e-3, 0x1f, Inf handled as a keyword) and durations (5m, 1h30m).
                i += 1;
                while i < chars.len() {
                    let ch = chars[i];
                    let exponent_sign =
                        (ch == '+' || ch == '-') && matches!(chars[i - 1], 'e' | 'E') && !chars[..i].contains(&'x');
                    if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Number);
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let start = i;
                while i < chars.len() && "+-*/%^=!<>@~|&".contains(chars[i]) {
                    i += 1;
                }
                if i == start {
                    return Err(format!("unexpected character {c:?} in {expr:?}"));
                }
                tokens.push(Token::Op(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

/// Every bracket closes, with its own kind, in order.
fn check_brackets(tokens: &[Token], expr: &str) -> Result<(), String> {
    let mut open = Vec::new();
    for token in tokens {
        match token {
            Token::Open(c) => open.push(*c),
            Token::Close(c) => {
                let expected = match open.pop() {
                    Some('(') => ')',
                    Some('{') => '}',
                    Some(_) => ']',
                    None => return Err(format!("{c:?} closes nothing in {expr:?}")),
                };
                if *c != expected {
                    return Err(format!("{c:?} where {expected:?} was expected in {expr:?}"));
                }
            }
            _ => {}
        }
    }
    match open.last() {
        Some(c) => Err(format!("{c:?} is never closed in {expr:?}")),
        None => Ok(()),
    }
}

/// Index just past the bracket that closes the one opened at `open`.
fn skip_group(tokens: &[Token], open: usize, expr: &str) -> Result<usize, String> {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Open(_) => depth += 1,
            Token::Close(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(index + 1);
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced brackets in {expr:?}"))
}

/// The metric names `expr` reads, as written (a histogram's `NAME_bucket` stays so; see
/// [`histogram_base`]). An error for text that does not even tokenize (an unterminated string,
/// unbalanced brackets, a stray character).
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let tokens = tokenize(expr)?;
    check_brackets(&tokens, expr)?;
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Open('{') => {
                let end = skip_group(&tokens, i, expr)?;
                // Only `__name__="metric"` inside a matcher names a metric.
                for window in tokens[i..end].windows(3) {
                    if let [Token::Ident(label), Token::Op(op), Token::Str(value)] = window {
                        if label == "__name__" && op == "=" {
                            names.insert(value.clone());
                        }
                    }
                }
                i = end;
            }
            Token::Open('[') => i = skip_group(&tokens, i, expr)?,
            Token::Ident(ident) => {
                let lower = ident.to_ascii_lowercase();
                let next_opens = tokens.get(i + 1) == Some(&Token::Open('('));
                if LABEL_LISTS.contains(&lower.as_str()) {
                    i = if next_opens { skip_group(&tokens, i + 1, expr)? } else { i + 1 };
                } else if ident == "label_values" && next_opens {
                    // Grafana: label_values(label) or label_values(expr, label).
                    let end = skip_group(&tokens, i + 1, expr)?;
                    let mut depth = 0usize;
                    let mut comma = None;
                    for (index, token) in tokens.iter().enumerate().take(end - 1).skip(i + 2) {
                        match token {
                            Token::Open(_) => depth += 1,
                            Token::Close(_) => depth = depth.saturating_sub(1),
                            Token::Comma if depth == 0 => comma = Some(index),
                            _ => {}
                        }
                    }
                    if let Some(comma) = comma {
                        let inner: Vec<Token> = tokens[i + 2..comma].to_vec();
                        names.extend(names_in(&inner, expr)?);
                    }
                    i = end;
                } else if next_opens || AGGREGATIONS.contains(&lower.as_str()) || KEYWORDS.contains(&lower.as_str()) {
                    i += 1;
                } else {
                    names.insert(ident.clone());
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// [`metric_names`] over tokens already split out of `expr` (the first argument of
/// `label_values`).
fn names_in(tokens: &[Token], expr: &str) -> Result<BTreeSet<String>, String> {
    let text: String = tokens
        .iter()
        .map(|token| match token {
            Token::Ident(s) | Token::Op(s) => s.clone(),
            Token::Str(s) => format!("{s:?}"),
            Token::Number => "0".to_owned(),
            Token::Var => "$v".to_owned(),
            Token::Open(c) | Token::Close(c) => c.to_string(),
            Token::Comma => ",".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    metric_names(&text).map_err(|e| format!("{e} (inside {expr:?})"))
}

/// `name` without a histogram sample suffix (`_bucket`, `_sum`, `_count`), if it has one.
pub fn histogram_base(name: &str) -> Option<&str> {
    HISTOGRAM_SUFFIXES.iter().find_map(|suffix| name.strip_suffix(suffix))
}
