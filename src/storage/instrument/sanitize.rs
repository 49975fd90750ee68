//! The SQL text of a span: [`sanitize_query`] keeps the shape of a statement and drops its
//! literals; [`operation_name`] and [`collection_name`] read the operation and the first table
//! from the sanitized text.

use metamcp_telemetry_actors::ingress::DbOperation;

/// Longest `db.query.text`, in bytes; longer statements are cut and end in `...`.
pub const MAX_QUERY_TEXT: usize = 2048;
/// Longest `db.collection.name`; a longer name is left out.
const MAX_COLLECTION_NAME: usize = 128;

pub(super) fn floor_char_boundary(s: &str, index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    (0..=index).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Index just past a quoted run that opens at `start` and closes with `quote`, where a doubled
/// quote stands for itself (and, with `backslash`, `\` escapes the next byte). An unterminated
/// run ends at the end of the text.
fn skip_quoted(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Index just past a numeric literal starting at `start` (digits, decimals, exponent, hex).
fn skip_number(b: &[u8], start: usize) -> usize {
    let mut i = start;
    let hex = b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X'));
    while i < b.len() {
        let c = b[i];
        let exponent_sign = !hex
            && matches!(c, b'+' | b'-')
            && i > start
            && matches!(b[i - 1], b'e' | b'E')
            && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !(is_ident_byte(c) || c == b'.' || exponent_sign) {
            break;
        }
        i += 1;
    }
    i
}

/// `sql` fit for a span: every string literal (`'..'` with `''` escapes, `E'..'` with
/// backslash escapes, `X'..'`, `B'..'`, `N'..'`, `U&'..'`, dollar-quoted `$tag$..$tag$`) and
/// every numeric literal becomes `?`; comments go; identifiers (also `"quoted"` ones), keywords,
/// and `?`, `?N`, `$N`, `:name` placeholders stay; runs of whitespace become one space; the
/// result is at most [`MAX_QUERY_TEXT`] bytes (a cut text ends in `...`).
pub fn sanitize_query(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(MAX_QUERY_TEXT + 8));
    let mut space = false;
    let mut i = 0;
    let emit = |out: &mut String, space: &mut bool, piece: &str| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push_str(piece);
    };
    while i < b.len() && out.len() <= MAX_QUERY_TEXT {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => {
                space = true;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |at| i + at + 1);
                space = true;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |at| i + 2 + at + 2);
                space = true;
            }
            b'\'' => {
                i = skip_quoted(b, i, b'\'', false);
                emit(&mut out, &mut space, "?");
            }
            b'"' | b'`' => {
                let end = skip_quoted(b, i, c, false);
                emit(&mut out, &mut space, &sql[i..end]);
                i = end;
            }
            b'$' => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 {
                    emit(&mut out, &mut space, &sql[i..i + 1 + digits]);
                    i += 1 + digits;
                    continue;
                }
                let tag_len = if b.get(i + 1).copied().is_some_and(is_ident_start) {
                    b[i + 1..].iter().take_while(|&&c| is_ident_byte(c)).count()
                } else {
                    0
                };
                if b.get(i + 1 + tag_len) == Some(&b'$') {
                    let tag = &sql[i..i + tag_len + 2];
                    let body = i + tag.len();
                    i = sql[body..].find(tag).map_or(b.len(), |at| body + at + tag.len());
                    emit(&mut out, &mut space, "?");
                } else {
                    emit(&mut out, &mut space, "$");
                    i += 1;
                }
            }
            b'?' => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                emit(&mut out, &mut space, &sql[i..i + 1 + digits]);
                i += 1 + digits;
            }
            _ if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                i = skip_number(b, i);
                emit(&mut out, &mut space, "?");
            }
            _ if is_ident_start(c) => {
                let end = i + b[i..].iter().take_while(|&&c| is_ident_byte(c) || c == b'$').count();
                let word = &sql[i..end];
                let next = b.get(end).copied();
                let prefixed = match word.len() {
                    1 => {
                        matches!(word.as_bytes()[0].to_ascii_uppercase(), b'E' | b'X' | b'B' | b'N')
                            && next == Some(b'\'')
                    }
                    _ => false,
                };
                if prefixed {
                    let backslash = word.eq_ignore_ascii_case("e");
                    i = skip_quoted(b, end, b'\'', backslash);
                    emit(&mut out, &mut space, "?");
                } else if word.eq_ignore_ascii_case("u") && next == Some(b'&') && b.get(end + 1) == Some(&b'\'') {
                    i = skip_quoted(b, end + 1, b'\'', false);
                    emit(&mut out, &mut space, "?");
                } else {
                    emit(&mut out, &mut space, word);
                    i = end;
                }
            }
            _ => {
                // One character, ASCII or not.
                let len = sql[i..].chars().next().map_or(1, char::len_utf8);
                emit(&mut out, &mut space, &sql[i..i + len]);
                i += len;
            }
        }
    }
    if i < b.len() || out.len() > MAX_QUERY_TEXT {
        out.truncate(floor_char_boundary(&out, MAX_QUERY_TEXT - 3));
        out.push_str("...");
    }
    out
}

/// A token of sanitized SQL, enough to find the operation and the first table.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// A bare word: keyword or unquoted identifier.
    Word(&'a str),
    /// A quoted identifier, quotes removed.
    Quoted(String),
    Dot,
    Open,
    Close,
    Other,
}

fn tokens(sql: &str) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'"' | b'`' => {
                let end = skip_quoted(b, i, c, false);
                let inner = sql[i + 1..end].strip_suffix(c as char).unwrap_or(&sql[i + 1..end]);
                let doubled = [c as char, c as char].iter().collect::<String>();
                out.push(Token::Quoted(inner.replace(&doubled, &(c as char).to_string())));
                i = end;
            }
            b'.' => {
                out.push(Token::Dot);
                i += 1;
            }
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            _ if is_ident_start(c) => {
                let end = i + b[i..].iter().take_while(|&&c| is_ident_byte(c) || c == b'$').count();
                out.push(Token::Word(&sql[i..end]));
                i = end;
            }
            _ => {
                out.push(Token::Other);
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out
}

/// The operation of a statement as `db.operation.name` and span names show it: its first
/// keyword in upper case (`SELECT`, `PRAGMA`, `SAVEPOINT`), `SELECT` for a `WITH` query.
pub(super) fn operation_name(sanitized: &str, operation: DbOperation) -> String {
    let word = sanitized.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    if word.is_empty() || word.len() > 32 || word.eq_ignore_ascii_case("with") {
        return operation.as_str().to_owned();
    }
    word.to_ascii_uppercase()
}

/// The first table the statement names after `FROM`, `INTO` or `UPDATE` (outside parentheses
/// first, then anywhere), quotes removed, schema kept (`public.tools`).
pub(super) fn collection_name(sanitized: &str) -> Option<String> {
    const NOT_TABLES: &[&str] = &["select", "set", "of", "nowait", "skip", "lateral", "values", "default", "only"];
    let tokens = tokens(sanitized);
    let name_at = |mut at: usize| -> Option<String> {
        if matches!(tokens.get(at), Some(Token::Word(w)) if w.eq_ignore_ascii_case("only")) {
            at += 1;
        }
        let part = |token: Option<&Token<'_>>| match token {
            Some(Token::Word(word)) if !NOT_TABLES.iter().any(|k| word.eq_ignore_ascii_case(k)) => {
                Some((*word).to_owned())
            }
            Some(Token::Quoted(name)) => Some(name.clone()),
            _ => None,
        };
        let mut name = part(tokens.get(at))?;
        while tokens.get(at + 1) == Some(&Token::Dot) {
            let Some(next) = part(tokens.get(at + 2)) else { break };
            name.push('.');
            name.push_str(&next);
            at += 2;
        }
        (!name.is_empty() && name.len() <= MAX_COLLECTION_NAME).then_some(name)
    };
    let is_marker = |token: &Token<'_>| matches!(token, Token::Word(w) if ["from", "into", "update"].iter().any(|k| w.eq_ignore_ascii_case(k)));
    let mut depth = 0usize;
    let mut nested = None;
    for (at, token) in tokens.iter().enumerate() {
        match token {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ if is_marker(token) => {
                if let Some(name) = name_at(at + 1) {
                    if depth == 0 {
                        return Some(name);
                    }
                    nested.get_or_insert(name);
                }
            }
            _ => {}
        }
    }
    nested
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_query_table() {
        let cases: &[(&str, &str)] = &[
            // Plain statements pass unchanged.
            ("SELECT 1", "SELECT ?"),
            (
                "SELECT \"tools\".\"id\" FROM \"tools\" WHERE \"tools\".\"name\" = ?",
                "SELECT \"tools\".\"id\" FROM \"tools\" WHERE \"tools\".\"name\" = ?",
            ),
            ("SELECT * FROM t WHERE a = $1 AND b = $12", "SELECT * FROM t WHERE a = $1 AND b = $12"),
            // String literals, with doubled quotes inside.
            ("SELECT * FROM users WHERE name = 'alice'", "SELECT * FROM users WHERE name = ?"),
            ("INSERT INTO t (a) VALUES ('it''s secret')", "INSERT INTO t (a) VALUES (?)"),
            ("SELECT '' , 'a''''b'", "SELECT ? , ?"),
            // PostgreSQL escape strings keep backslash escapes inside.
            ("SELECT E'line\\'s end', e'x'", "SELECT ?, ?"),
            ("SELECT X'DEADBEEF', B'0101', N'name', U&'d\\0061t'", "SELECT ?, ?, ?, ?"),
            // Dollar quoting, anonymous and tagged, with a fake end inside.
            ("SELECT $$secret$$", "SELECT ?"),
            ("SELECT $body$ it's $x$ inside $body$ FROM t", "SELECT ? FROM t"),
            // Numbers of every shape; identifiers with digits stay.
            (
                "SELECT t1.col_2 FROM t1 WHERE x > 42 AND y < -3.5e+10 AND z = .5 AND h = 0xFF",
                "SELECT t1.col_2 FROM t1 WHERE x > ? AND y < -? AND z = ? AND h = ?",
            ),
            ("LIMIT 10 OFFSET 20", "LIMIT ? OFFSET ?"),
            ("SELECT a FROM t WHERE a = ?1 OR a = ?", "SELECT a FROM t WHERE a = ?1 OR a = ?"),
            // Quoted identifiers are kept, even with quotes and literal-looking text inside.
            ("SELECT \"it's\" FROM \"a\"\"b\"", "SELECT \"it's\" FROM \"a\"\"b\""),
            ("SELECT \"123\", `order`", "SELECT \"123\", `order`"),
            // Whitespace collapses; comments go.
            ("  SELECT\n\t*\r\n  FROM   t  ", "SELECT * FROM t"),
            ("SELECT 1 -- password 'x'\nFROM t", "SELECT ? FROM t"),
            ("SELECT /* 'hidden' 42 */ a FROM t", "SELECT a FROM t"),
            // Casts, named parameters and Unicode identifiers.
            ("SELECT '1'::int, :name, @p", "SELECT ?::int, :name, @p"),
            ("SELECT café FROM naïve WHERE x = 'é'", "SELECT café FROM naïve WHERE x = ?"),
            // Unterminated literals hide everything after them.
            ("SELECT 'unterminated secret", "SELECT ?"),
            ("SELECT $tag$ never closed", "SELECT ?"),
            // An identifier ending in E before a quote is not an escape-string prefix.
            ("SELECT name FROM t WHERE name='x'", "SELECT name FROM t WHERE name=?"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize_query(input), *expected, "input: {input:?}");
        }
    }

    #[test]
    fn sanitize_query_caps_the_length() {
        let long = format!("SELECT {} FROM t", vec!["a_column"; 1000].join(", "));
        let sanitized = sanitize_query(&long);
        assert_eq!(sanitized.len(), MAX_QUERY_TEXT);
        assert!(sanitized.ends_with("..."));
        assert!(sanitized.starts_with("SELECT a_column, a_column"));
        // Multi-byte characters are never split.
        let wide = format!("SELECT {}", "é".repeat(MAX_QUERY_TEXT));
        let sanitized = sanitize_query(&wide);
        assert!(sanitized.len() <= MAX_QUERY_TEXT);
        assert!(sanitized.ends_with("..."));
    }

    #[test]
    fn collection_and_operation() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("SELECT \"tools\".\"id\" FROM \"tools\" WHERE x = ?", "SELECT", Some("tools")),
            ("INSERT INTO \"mcp_servers\" (\"name\") VALUES (?) RETURNING \"id\"", "INSERT", Some("mcp_servers")),
            ("UPDATE \"tools\" SET \"enabled\" = ?", "UPDATE", Some("tools")),
            ("DELETE FROM \"endpoints\" WHERE \"name\" = ?", "DELETE", Some("endpoints")),
            ("select count(*) from public.tools", "SELECT", Some("public.tools")),
            ("SELECT \"public\".\"tools\".\"id\" FROM \"public\".\"tools\"", "SELECT", Some("public.tools")),
            ("SELECT COUNT(*) FROM (SELECT id FROM inner_table) AS sub", "SELECT", Some("inner_table")),
            ("SELECT EXTRACT(YEAR FROM created) FROM events", "SELECT", Some("events")),
            ("WITH x AS (SELECT ?) SELECT * FROM x", "SELECT", Some("x")),
            ("SELECT ?", "SELECT", None),
            ("BEGIN", "BEGIN", None),
            ("PRAGMA foreign_keys = ON", "PRAGMA", None),
            ("SAVEPOINT diesel_savepoint_1", "SAVEPOINT", None),
        ];
        for (sql, operation, collection) in cases {
            let op = DbOperation::of_statement(sql);
            assert_eq!(operation_name(sql, op), *operation, "{sql}");
            assert_eq!(collection_name(sql).as_deref(), *collection, "{sql}");
        }
    }
}
