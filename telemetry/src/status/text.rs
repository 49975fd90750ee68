//! Text as the status page shows it: credentials masked, then cut to a bounded length.

/// Longest error or detail text shown, in characters (one more for the ellipsis).
pub(super) const MAX_ERROR_CHARS: usize = 300;

/// `text` with credentials masked, then cut (masking first: a cut URL might hide its `@`).
pub(super) fn shorten(text: &str) -> String {
    let text = crate::redact::redact(text);
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}
