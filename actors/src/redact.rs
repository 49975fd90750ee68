//! The one redaction of credentials in text meant for people: the user information of every URL
//! (`scheme://user:password@host`) and the values of query parameters named like credentials
//! (`?token=…`, `&X-Amz-Signature=…`, `&api_key=…`). Log lines, health reports, error messages,
//! `Debug` output and the effective settings all pass through [`redact`] before they are shown.
//!
//! It lives in this crate, the bottom of the dependency graph, because the exporter's own
//! settings, log lines and health details hold the collector URL; the library re-exports it as
//! the library's `redact` module.
//!
//! The cost is linear in the length of the text: every URL is found by its `://` and read once,
//! and text without `://` is returned as it is, borrowed.

use std::borrow::Cow;

/// What a masked credential is replaced with.
pub const MASK: &str = "***";

/// Parts of a name that mark it as a credential wherever they appear in it, compared in lower
/// case: `password`, `passwd`, `client_secret`, `access_token`, `x-api-key`, `authorization`, …
const CREDENTIAL_PARTS: &[&str] = &[
    "pass",
    "pwd",
    "token",
    "secret",
    "auth",
    "credential",
    "signature",
    "apikey",
    "api_key",
    "api-key",
    "session",
    "cookie",
    "private",
];

/// Words that mark a name as a credential when they are a whole word of it (between `-`, `_`,
/// `.` or the ends): `key`, `x-goog-key`, `sig`, `jwt`. A word ending in `key` counts too
/// (`accesskey`, `subscriptionkey`).
const CREDENTIAL_WORDS: &[&str] = &["key", "sig", "jwt"];

/// Whether a parameter or header `name` carries a credential: it contains one of `pass`, `pwd`,
/// `token`, `secret`, `auth`, `credential`, `signature`, `apikey`, `api_key`, `api-key`,
/// `session`, `cookie`, `private`, or has `key`, `sig` or `jwt` as a word (or a word ending in
/// `key`), in any case.
pub fn is_credential_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if CREDENTIAL_PARTS.iter().any(|part| lower.contains(part)) {
        return true;
    }
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| CREDENTIAL_WORDS.contains(&word) || (word.len() > 3 && word.ends_with("key")))
}

/// Whether `byte` ends a URL inside free text: white space, quotes, angle brackets and control
/// characters (no URL holds them unencoded; log formats put them around values).
fn ends_url(byte: u8) -> bool {
    byte.is_ascii_whitespace() || byte.is_ascii_control() || matches!(byte, b'"' | b'\'' | b'<' | b'>' | b'`')
}

/// One replacement: the bytes `start..end` of the text become `with`.
struct Edit {
    start: usize,
    end: usize,
    with: Cow<'static, str>,
}

/// The edits of the URL whose part after `://` is `text[start..end]`.
fn url_edits(text: &str, start: usize, end: usize, edits: &mut Vec<Edit>) {
    let rest = &text[start..end];
    // The user information ends at the last `@` before the query that follows its first `@`:
    // a password may itself hold `@`, `:` or `/` (`u:p@ss/w:rd@host`), while an `@` in the query
    // (`?email=a@b`) belongs to the query.
    let mut location = 0;
    if let Some(first_at) = rest.find('@') {
        let query = rest[first_at..].find(['?', '#']).map_or(rest.len(), |at| first_at + at);
        if let Some(last_at) = rest[..query].rfind('@') {
            let userinfo = &rest[..last_at];
            // A password is masked and its user kept (`postgres://app:***@db`); user information
            // without a password may itself be a token (`https://ghp_…@github.com`): masked whole.
            let (keep, with) = match userinfo.find(':') {
                Some(colon) => (colon + 1, MASK),
                None => (0, MASK),
            };
            if !(userinfo.len() == keep + MASK.len() && userinfo.ends_with(MASK)) {
                edits.push(Edit { start: start + keep, end: start + last_at, with: Cow::Borrowed(with) });
            }
            location = last_at + 1;
        }
    }
    let Some(question) = rest[location..].find('?').map(|at| location + at) else { return };
    let query_end = rest[question..].find('#').map_or(rest.len(), |at| question + at);
    let mut param_start = question + 1;
    while param_start <= query_end {
        let param_end = rest[param_start..query_end].find(['&', ';']).map_or(query_end, |at| param_start + at);
        let param = &rest[param_start..param_end];
        if let Some(eq) = param.find('=') {
            let value = &param[eq + 1..];
            if !value.is_empty() && value != MASK && is_credential_name(&param[..eq]) {
                edits.push(Edit {
                    start: start + param_start + eq + 1,
                    end: start + param_end,
                    with: Cow::Borrowed(MASK),
                });
            }
        }
        param_start = param_end + 1;
    }
}

/// `text` with every credential it can recognise masked as [`MASK`]: the user information of
/// each URL in it (`postgres://app:***@db/x`; user information without a password is masked
/// whole, `https://***@host`), and the value of each query parameter whose name
/// [is a credential's](is_credential_name) (`?user=a&password=***`). A password may contain
/// `@` and `:`: the user information ends at the last `@` before the path's query. Works on a
/// bare URL as on a log line or an error message holding URLs; text without `://` comes back
/// borrowed. Linear in the length of `text`.
///
/// ```text
/// postgres://u:p@ss:w@rd@db:5432/app       →  postgres://u:***@db:5432/app
/// GET https://h/x?token=abc&page=2 failed  →  GET https://h/x?token=***&page=2 failed
/// no url here                              →  no url here (borrowed)
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut edits = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let end = bytes[start..].iter().position(|&b| ends_url(b)).map_or(bytes.len(), |at| start + at);
        url_edits(text, start, end, &mut edits);
        from = end;
    }
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for edit in edits {
        out.push_str(&text[copied..edit.start]);
        out.push_str(&edit.with);
        copied = edit.end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let cases: &[(&str, &str)] = &[
            // Nothing to mask.
            ("", ""),
            ("not a url", "not a url"),
            ("sqlite://x.db", "sqlite://x.db"),
            ("sqlite://:memory:", "sqlite://:memory:"),
            ("http://localhost:4317", "http://localhost:4317"),
            ("postgres://h/db?sslmode=disable&x=1", "postgres://h/db?sslmode=disable&x=1"),
            // User information: the password, or the whole of it without one.
            ("http://user:SECRET@127.0.0.1:1", "http://user:***@127.0.0.1:1"),
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://***@h/db"),
            ("https://ghp_TOKEN@github.com/o/r.git", "https://***@github.com/o/r.git"),
            ("postgres://:pw@h/db", "postgres://:***@h/db"),
            // Passwords holding `@`, `:` and `/`.
            ("postgres://u:p@ss:w@rd@host/db", "postgres://u:***@host/db"),
            ("postgres://u:p@ss/w:rd@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pw@h/db?sslmode=disable&x=a@b", "postgres://u:***@h/db?sslmode=disable&x=a@b"),
            ("postgres://u:p?w@h/db", "postgres://u:***@h/db"),
            // Credential-like query parameters, any case, with prefixes and suffixes.
            ("postgres://h/db?user=u&password=pw&x=1", "postgres://h/db?user=u&password=***&x=1"),
            ("https://h/p?PASSWORD=a&Passwd=b&pwd=c", "https://h/p?PASSWORD=***&Passwd=***&pwd=***"),
            ("https://h/p?access_token=a&token=b&id_token=c", "https://h/p?access_token=***&token=***&id_token=***"),
            (
                "https://h/p?api_key=a&apikey=b&x-api-key=c&key=d",
                "https://h/p?api_key=***&apikey=***&x-api-key=***&key=***",
            ),
            ("https://h/p?secret=a&client_secret=b", "https://h/p?secret=***&client_secret=***"),
            ("https://h/p?sig=a&X-Amz-Signature=b&auth=c", "https://h/p?sig=***&X-Amz-Signature=***&auth=***"),
            ("https://h/p?X-Amz-Credential=a&credentials=b", "https://h/p?X-Amz-Credential=***&credentials=***"),
            ("https://h/p?subscription-key=a&AccessKey=b", "https://h/p?subscription-key=***&AccessKey=***"),
            ("https://h/p?token=a#frag", "https://h/p?token=***#frag"),
            ("https://h/p?a=1;token=x", "https://h/p?a=1;token=***"),
            ("https://h/p?token=&monkeys=1&keyboard=2", "https://h/p?token=&monkeys=1&keyboard=2"),
            // Both at once.
            ("https://u:pw@h/p?token=t&q=1", "https://u:***@h/p?token=***&q=1"),
            // URLs inside free text, log lines and JSON.
            (
                "error sending request for url (http://user:SECRET@127.0.0.1:1/v1/traces): refused",
                "error sending request for url (http://user:***@127.0.0.1:1/v1/traces): refused",
            ),
            (
                r#"{"endpoint":"http://user:SECRET@127.0.0.1:1","db":"postgres://a:b@h/d?password=x"}"#,
                r#"{"endpoint":"http://user:***@127.0.0.1:1","db":"postgres://a:***@h/d?password=***"}"#,
            ),
            ("two: http://a:b@h1 and https://c:d@h2/x", "two: http://a:***@h1 and https://c:***@h2/x"),
            ("'http://u:p@h' <http://u:p@h> `http://u:p@h`", "'http://u:***@h' <http://u:***@h> `http://u:***@h`"),
            ("line\nhttp://u:p@h\tend", "line\nhttp://u:***@h\tend"),
            // Already masked text stays as it is.
            ("http://user:***@h/?token=***", "http://user:***@h/?token=***"),
            // Bare `://`.
            ("://", "://"),
            ("a ://@ b", "a ://***@ b"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), *expected, "{input}");
            assert_eq!(redact(expected), *expected, "masking is idempotent: {expected}");
        }
    }

    #[test]
    fn unchanged_text_is_borrowed() {
        assert!(matches!(redact("plain text with http://host/path"), Cow::Borrowed(_)));
        assert!(matches!(redact("http://u:p@h"), Cow::Owned(_)));
    }

    #[test]
    fn credential_names() {
        for name in ["password", "PASSWD", "pwd", "token", "access_token", "api_key", "apikey", "x-api-key", "key"] {
            assert!(is_credential_name(name), "{name}");
        }
        for name in ["secret", "client_secret", "sig", "signature", "auth", "credential", "credentials", "jwt"] {
            assert!(is_credential_name(name), "{name}");
        }
        for name in ["user", "page", "q", "sslmode", "keyboard", "monkeys", "id", "signal", "design"] {
            assert!(!is_credential_name(name), "{name}");
        }
    }

    #[test]
    fn linear_in_the_input() {
        // Shapes that would be quadratic for a naive scan: many `://`, many `@`, many `?`, one
        // very long URL. Each is redacted in one pass; the output length proves the work done.
        let many_schemes = "://".repeat(200_000);
        assert_eq!(redact(&many_schemes).len(), many_schemes.len());
        let many_ats = format!("http://{}", "u:p@".repeat(200_000));
        assert_eq!(redact(&many_ats), "http://u:***@");
        let many_params = format!("http://h/?{}", "token=x&".repeat(100_000));
        assert_eq!(redact(&many_params).matches(MASK).count(), 100_000);
        let mixed = "a http://u:p@h?x=1 ".repeat(50_000);
        assert_eq!(redact(&mixed).matches("u:***@h").count(), 50_000);
    }
}
