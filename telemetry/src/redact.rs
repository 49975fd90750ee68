//! The one redaction of credentials in text meant for people, used by every surface the service
//! shows: `/health`, `/status.json`, every log line, `--check-config`, error messages and the
//! `Debug` output of settings. It masks the user information of any URL (the exporter endpoint,
//! the embedder URL, the database URL, an upstream server's URL) and the values of query
//! parameters named like credentials (`password`, `token`, `api_key`, `secret`, `sig`, …, in any
//! case and with prefixes or suffixes such as `x-api-key`), in linear time.
//!
//! ```
//! use metamcp_telemetry::redact::redact;
//! assert_eq!(redact("postgres://app:p@ss:w@rd@db/app"), "postgres://app:***@db/app");
//! assert_eq!(redact("http://user:SECRET@127.0.0.1:1"), "http://user:***@127.0.0.1:1");
//! assert_eq!(redact("https://h/v1?api_key=k&page=2"), "https://h/v1?api_key=***&page=2");
//! ```
//!
//! The implementation lives in the actors crate, which needs it for the exporter's settings and
//! log lines and depends on nothing of this crate.

pub use metamcp_telemetry_actors::redact::{is_credential_name, redact, MASK};
