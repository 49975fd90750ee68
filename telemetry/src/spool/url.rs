//! [`DatabaseUrl`]: the one parser of database URLs, used by the spool and by applications that
//! open the same database (the gateway's store).
//!
//! The accepted forms follow diesel's convention:
//!
//! | Form | Database |
//! |---|---|
//! | `metamcp.db`, `./x.db`, `/data/metamcp.db` | a SQLite file |
//! | `sqlite://PATH`, `sqlite:PATH` | a SQLite file |
//! | `file:metamcp.db`, `file:///data/metamcp.db`, `file:x.db?mode=rwc` | a SQLite URI, handed to SQLite as is |
//! | `:memory:`, `sqlite::memory:`, `sqlite://:memory:` | a SQLite database in memory |
//! | `postgres://…`, `postgresql://…` | PostgreSQL, over libpq |

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use metamcp_telemetry_actors::ingress::DbSystem;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Backend {
    /// SQLite (bundled): a file, or `:memory:`.
    #[serde(rename = "sqlite")]
    Sqlite,
    /// PostgreSQL over libpq.
    #[serde(rename = "postgresql")]
    Postgres,
}

impl Backend {
    /// The `db.system.name` of this backend.
    pub fn db_system(self) -> DbSystem {
        match self {
            Self::Sqlite => DbSystem::Sqlite,
            Self::Postgres => DbSystem::Postgresql,
        }
    }

    /// `sqlite` or `postgresql`, as in telemetry.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The forms a database URL may take, for error messages.
pub const ACCEPTED_FORMS: &str = "a SQLite file path (metamcp.db, /data/metamcp.db), sqlite://PATH, \
     file:PATH (a SQLite URI), :memory:, or postgres://user@host:port/database";

/// Why a string is not a database URL. No variant carries a password: URLs are redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    /// The URL is empty or blank.
    #[error("the database URL is empty; expected {ACCEPTED_FORMS}")]
    Empty,
    /// A SQLite URL without a file name (`sqlite://`, `file:`).
    #[error("database URL {url:?} names no file")]
    NoFile {
        /// The URL as given.
        url: String,
    },
    /// A scheme that is neither SQLite nor PostgreSQL (`mysql://`, `ftp://`).
    #[error("database URL {url:?} has the unsupported scheme {scheme:?}; expected {ACCEPTED_FORMS}")]
    UnsupportedScheme {
        /// The URL, password redacted.
        url: String,
        /// The scheme found.
        scheme: String,
    },
}

/// A parsed database URL: which backend, and what to hand its driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// The SQLite path or URI, or the PostgreSQL URL handed to libpq (may hold a password).
    location: String,
    memory: bool,
    redacted: String,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl").field("backend", &self.backend).field("url", &self.redacted).finish()
    }
}

impl DatabaseUrl {
    /// Parses `url` (see the [module](self) for the forms). A PostgreSQL URL without
    /// `connect_timeout` gets one from `connect_timeout` (whole seconds, at least 2, as libpq
    /// counts), so a connection attempt to an unresponsive host ends too.
    pub fn parse(url: &str, connect_timeout: Duration) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        let redacted = crate::redact::redact(url).into_owned();
        let sqlite = |location: &str, memory: bool| Self {
            backend: Backend::Sqlite,
            location: location.to_owned(),
            memory,
            redacted: redacted.clone(),
        };
        if url == ":memory:" || url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(sqlite(":memory:", true));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut location = url.to_owned();
            if !url.contains("connect_timeout=") {
                let seconds = connect_timeout.as_secs_f64().ceil().max(2.0) as u64;
                location.push(if url.contains('?') { '&' } else { '?' });
                location.push_str(&format!("connect_timeout={seconds}"));
            }
            return Ok(Self { backend: Backend::Postgres, location, memory: false, redacted });
        }
        let no_file = || DatabaseUrlError::NoFile { url: redacted.clone() };
        if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if rest.is_empty() {
                return Err(no_file());
            }
            // `sqlite://file:x.db?mode=ro`: a SQLite URI inside.
            let memory = rest.starts_with("file:") && uri_is_memory(rest);
            return Ok(sqlite(rest, memory));
        }
        if url.starts_with("file:") {
            if uri_path(url).is_empty() && !uri_is_memory(url) {
                return Err(no_file());
            }
            return Ok(sqlite(url, uri_is_memory(url)));
        }
        if let Some(scheme) = scheme_of(url) {
            return Err(DatabaseUrlError::UnsupportedScheme { url: redacted, scheme: scheme.to_owned() });
        }
        Ok(sqlite(url, false))
    }

    /// Which database the URL names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the driver opens: the SQLite path or URI, or the PostgreSQL URL (with any password:
    /// never log it; use [`redacted`](Self::redacted)).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// An in-memory SQLite database: every connection to it is a database of its own.
    pub fn is_memory(&self) -> bool {
        self.memory
    }

    /// The URL with any password hidden, for messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The file of a SQLite database on disk (`None` in memory and for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite || self.memory {
            return None;
        }
        if self.location.starts_with("file:") {
            return Some(PathBuf::from(uri_path(&self.location)));
        }
        Some(PathBuf::from(&self.location))
    }

    /// Creates a SQLite file's directory when missing, and the file itself readable and writable
    /// by its owner only (mode 0600; SQLite gives its `-wal` and `-shm` files the same mode). An
    /// existing file keeps its mode; one readable by others is reported in the log. A `file:` URI
    /// is SQLite's to open (its `mode` may forbid creating), so nothing is made for one.
    pub fn prepare(&self) -> Result<(), std::io::Error> {
        if self.backend != Backend::Sqlite || self.memory || self.location.starts_with("file:") {
            return Ok(());
        }
        let path = Path::new(&self.location);
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot create the directory {}: {e}", parent.display()))
            })?;
        }
        create_private_file(path)
    }
}

/// The scheme of something that looks like a URL (`ftp://x`, `mysql:x`); a single letter is a
/// Windows drive, not a scheme.
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let looks_like = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    looks_like.then_some(scheme)
}

/// The path of a `file:` URI: after `file://` (and an empty or `localhost` authority) or
/// `file:`, up to the query or fragment.
fn uri_path(uri: &str) -> &str {
    let rest = uri.strip_prefix("file:").unwrap_or(uri);
    let rest = match rest.strip_prefix("//") {
        Some(after) => after.strip_prefix("localhost").unwrap_or(after),
        None => rest,
    };
    rest.split(['?', '#']).next().unwrap_or("")
}

/// Whether a `file:` URI opens a database in memory (`file::memory:`, `?mode=memory`).
fn uri_is_memory(uri: &str) -> bool {
    let uri = uri.strip_prefix("sqlite://").unwrap_or(uri);
    let query = uri.split_once('?').map_or("", |(_, query)| query);
    uri_path(uri) == ":memory:" || query.split('&').any(|pair| pair == "mode=memory")
}

/// Creates `path` empty with mode 0600 (an empty file is an empty SQLite database) unless it
/// exists; warns when an existing one is open to the group or others.
#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<(), std::io::Error> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = %format!("{mode:o}"),
                        "the database file is readable by others than its owner; chmod 600 it"
                    );
                }
            }
            Ok(())
        }
        Err(err) => {
            Err(std::io::Error::new(err.kind(), format!("cannot create the database file {}: {err}", path.display())))
        }
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<(), std::io::Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn sqlite(url: &str) -> (String, bool, Option<PathBuf>) {
        let parsed = DatabaseUrl::parse(url, T).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.backend(), Backend::Sqlite, "{url}");
        (parsed.location().to_owned(), parsed.is_memory(), parsed.sqlite_path())
    }

    #[test]
    fn sqlite_files() {
        let cases: &[(&str, &str, &str)] = &[
            ("metamcp.db", "metamcp.db", "metamcp.db"),
            ("/data/metamcp.db", "/data/metamcp.db", "/data/metamcp.db"),
            ("./x.db", "./x.db", "./x.db"),
            ("  data/x.db ", "data/x.db", "data/x.db"),
            ("sqlite://data/x.db", "data/x.db", "data/x.db"),
            ("sqlite:///data/x.db", "/data/x.db", "/data/x.db"),
            ("sqlite:x.db", "x.db", "x.db"),
            ("file:metamcp.db", "file:metamcp.db", "metamcp.db"),
            ("file:///data/metamcp.db", "file:///data/metamcp.db", "/data/metamcp.db"),
            ("file://localhost/data/m.db", "file://localhost/data/m.db", "/data/m.db"),
            ("file:x.db?mode=rwc&cache=shared", "file:x.db?mode=rwc&cache=shared", "x.db"),
            ("file:x.db?mode=ro", "file:x.db?mode=ro", "x.db"),
            ("sqlite://file:x.db?mode=ro", "file:x.db?mode=ro", "x.db"),
            ("C:\\data\\x.db", "C:\\data\\x.db", "C:\\data\\x.db"),
        ];
        for (url, location, path) in cases {
            assert_eq!(sqlite(url), ((*location).to_owned(), false, Some(PathBuf::from(path))), "{url}");
        }
    }

    #[test]
    fn sqlite_in_memory() {
        for url in [":memory:", "sqlite::memory:", "sqlite://:memory:", "file::memory:", "file:x?mode=memory"] {
            let (_, memory, path) = sqlite(url);
            assert!(memory, "{url}");
            assert_eq!(path, None, "{url}");
        }
        assert_eq!(sqlite(":memory:").0, ":memory:");
        assert_eq!(sqlite("sqlite://:memory:").0, ":memory:");
    }

    #[test]
    fn postgres_urls() {
        let t = DatabaseUrl::parse("postgres://u:secret@h/db", Duration::from_millis(300)).unwrap();
        assert_eq!(t.backend(), Backend::Postgres);
        assert_eq!(t.location(), "postgres://u:secret@h/db?connect_timeout=2");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(!t.redacted().contains("secret"));
        assert_eq!(t.sqlite_path(), None);
        let t = DatabaseUrl::parse("postgresql://h/db?connect_timeout=9&x=1", Duration::from_secs(30)).unwrap();
        assert_eq!(t.location(), "postgresql://h/db?connect_timeout=9&x=1");
        let t = DatabaseUrl::parse("postgres://h/db?sslmode=disable", Duration::from_secs(30)).unwrap();
        assert_eq!(t.location(), "postgres://h/db?sslmode=disable&connect_timeout=30");
    }

    #[test]
    fn nonsense_is_refused_with_a_clear_error() {
        assert_eq!(DatabaseUrl::parse("", T), Err(DatabaseUrlError::Empty));
        assert_eq!(DatabaseUrl::parse("   ", T), Err(DatabaseUrlError::Empty));
        for url in ["sqlite://", "sqlite:", "file:", "file://", "file:?mode=rwc"] {
            assert!(matches!(DatabaseUrl::parse(url, T), Err(DatabaseUrlError::NoFile { .. })), "{url}");
        }
        for (url, scheme) in
            [("ftp://x", "ftp"), ("mysql://root:pw@h/db", "mysql"), ("postgres:db", "postgres"), ("http:x", "http")]
        {
            match DatabaseUrl::parse(url, T) {
                Err(DatabaseUrlError::UnsupportedScheme { scheme: found, url: shown }) => {
                    assert_eq!(found, scheme, "{url}");
                    assert!(!shown.contains("pw@"), "{shown}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        let message = DatabaseUrl::parse("ftp://x", T).unwrap_err().to_string();
        assert!(message.contains("\"ftp\"") && message.contains("sqlite://PATH"), "{message}");
        let message = DatabaseUrl::parse("mysql://root:hunter2@h/db", T).unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn prepare_makes_a_private_file_in_a_new_directory() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("x.db");
        let url = DatabaseUrl::parse(&path.display().to_string(), T).unwrap();
        url.prepare().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A `file:` URI is left to SQLite.
        let uri = DatabaseUrl::parse(&format!("file:{}", dir.path().join("other.db").display()), T).unwrap();
        uri.prepare().unwrap();
        assert!(!dir.path().join("other.db").exists());
    }
}
