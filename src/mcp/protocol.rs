//! What the gateway shows of an MCP session id in telemetry and logs. Every MCP message type is
//! `rmcp`'s (`rmcp::model`); the revisions the endpoints speak are in `crate::endpoint::rpc`.

/// What telemetry and logs show of a session id (`mcp.session.id`): the first 16 hex digits of
/// its SHA-256. The id itself is a bearer capability — whoever holds it speaks in the session —
/// so it never leaves the HTTP exchange; the fingerprint still ties a session's spans together.
pub fn session_fingerprint(id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(id.as_bytes());
    digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_fingerprints_are_short_stable_hashes() {
        let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let fingerprint = session_fingerprint(id);
        assert_eq!(fingerprint.len(), 16);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(fingerprint, session_fingerprint(id));
        assert_ne!(fingerprint, session_fingerprint("another session"));
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(session_fingerprint("abc"), "ba7816bf8f01cfea");
    }
}
