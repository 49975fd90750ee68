//! Settings of the gateway: the database, the admin API, the MCP endpoints, the audit log's
//! retention and the vector search. Each struct is one section of the TOML files (`[database]`,
//! `[admin]`, `[gateway]`, `[audit]`, `[vector]`); [`Settings`](crate::settings::Settings) holds
//! them beside the telemetry sections.

use std::time::Duration;

use metamcp_telemetry::spool::{Backend, DatabaseUrl, DatabaseUrlError, ACCEPTED_FORMS};
use metamcp_telemetry_actors::ConfigError;
use serde::{Deserialize, Serialize};

/// Default `database.url`: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://metamcp.db";
/// Default `database.pool_size`.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// Largest accepted `database.pool_size`.
pub const MAX_POOL_SIZE: u32 = 256;
/// Default `database.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `database.busy_timeout` (SQLite's wait for a lock held by another connection).
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `gateway.max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default `gateway.upstream_timeout`: per-server timeout of a call to an upstream MCP server.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `gateway.session_idle_timeout`.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default `gateway.max_sessions`.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Default `gateway.max_page_size` of the admin API's lists.
pub const DEFAULT_MAX_PAGE_SIZE: u32 = 500;
/// Default `gateway.list_page_size`: items of an MCP list (`tools/list`, `prompts/list`, ...) per page.
pub const DEFAULT_LIST_PAGE_SIZE: u32 = 100;
/// Largest accepted `gateway.list_page_size`.
pub const MAX_LIST_PAGE_SIZE: u32 = 100_000;
/// Most entries of `gateway.stdio_allowed_commands`.
pub const MAX_STDIO_ALLOWED_COMMANDS: usize = 1024;
/// Default `audit.retention.max_age`: 30 days.
pub const DEFAULT_AUDIT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default `audit.retention.max_rows`.
pub const DEFAULT_AUDIT_MAX_ROWS: u64 = 1_000_000;
/// Largest accepted `audit.retention.max_rows`.
pub const MAX_AUDIT_ROWS: u64 = 1_000_000_000_000;
/// Default `audit.retention.interval`.
pub const DEFAULT_AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `vector.dimensions` of the hashing embedder.
pub const DEFAULT_DIMENSIONS: usize = 384;
/// Default `vector.default_limit`.
pub const DEFAULT_SEARCH_LIMIT: usize = 10;
/// Default `vector.default_threshold`.
pub const DEFAULT_SEARCH_THRESHOLD: f64 = 0.1;
/// Default `vector.request_timeout` of the OpenAI-compatible embedder.
pub const DEFAULT_EMBED_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway's database (`[database]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// A SQLite file as a path (`metamcp.db`, `/data/metamcp.db`), `sqlite://PATH` or a `file:`
    /// URI (created when missing; `sqlite://:memory:` or `:memory:` for a throw-away database),
    /// or `postgres://user@host:port/db`. Also read from `DATABASE_URL`.
    pub url: String,
    /// Connections in the pool, from 1 to 256.
    pub pool_size: u32,
    /// Longest wait for a free or new connection, from 10ms to 10m.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub connect_timeout: Duration,
    /// SQLite only: how long a statement waits for a lock held by another connection.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub busy_timeout: Duration,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &metamcp_telemetry::redact::redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: DEFAULT_DATABASE_URL.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The REST admin API under `/api` (`[admin]`).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token the admin API requires. Empty: the admin API answers only clients on the
    /// loopback interface. Also read from `METAMCP_ADMIN__TOKEN`.
    pub token: String,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings").field("token", &mask(&self.token)).finish()
    }
}

/// `"***"` for a set secret, `""` for an empty one.
fn mask(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        metamcp_telemetry::settings::MASK
    }
}

/// The MCP endpoints and the calls to upstream MCP servers (`[gateway]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Largest accepted request body, in bytes, for the MCP endpoints and the admin API.
    pub max_body_bytes: usize,
    /// Timeout of one call to an upstream MCP server when the server sets none.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub upstream_timeout: Duration,
    /// An MCP session without requests for this long is forgotten.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub session_idle_timeout: Duration,
    /// Most MCP sessions kept at once per endpoint; the endpoint's least recently used goes
    /// first.
    pub max_sessions: usize,
    /// Largest page of the admin API's lists (`limit`).
    pub max_page_size: u32,
    /// Address ranges upstream connections are refused, beside the built-in link-local and cloud
    /// metadata ranges (`169.254.0.0/16`, `fe80::/10`, `100.100.100.200`, `fd00:ec2::254`), as
    /// CIDR ranges (`10.0.0.0/8`) or single addresses.
    pub upstream_deny_cidrs: Vec<String>,
    /// Address ranges upstream connections are admitted to whatever the deny ranges (built-in or
    /// configured) say: an address inside an allow range is admitted, otherwise one inside a deny
    /// range is refused, otherwise admitted.
    pub upstream_allow_cidrs: Vec<String>,
    /// Whether upstream servers may be stdio programs the gateway starts as child processes.
    pub stdio_enabled: bool,
    /// Commands a stdio server may run; empty: any. A command is allowed when it equals an entry
    /// as given (`/usr/bin/npx`) or when its file name does (`npx` allows `/usr/bin/npx` too).
    pub stdio_allowed_commands: Vec<String>,
    /// Items per page of the MCP lists an endpoint serves (`tools/list`, `prompts/list`,
    /// `resources/list`, `resources/templates/list`); longer lists are paginated with cursors.
    pub list_page_size: u32,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            upstream_deny_cidrs: Vec::new(),
            upstream_allow_cidrs: Vec::new(),
            stdio_enabled: true,
            stdio_allowed_commands: Vec::new(),
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        }
    }
}

/// The audit log of tool calls, the `tool_executions` table (`[audit]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// How long rows are kept (`[audit.retention]`).
    pub retention: RetentionSettings,
}

/// How long audit rows are kept (`[audit.retention]`): both limits apply, checked at start and
/// every `interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Rows older than this are deleted; `"0s"` keeps rows of any age. From 1m to 3650days.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub max_age: Duration,
    /// Most rows kept; the oldest beyond it are deleted; 0 keeps any number.
    pub max_rows: u64,
    /// Time between two prunings, from 1s to 1day.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_AUDIT_MAX_AGE,
            max_rows: DEFAULT_AUDIT_MAX_ROWS,
            interval: DEFAULT_AUDIT_PRUNE_INTERVAL,
        }
    }
}

impl AuditSettings {
    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let retention = &self.retention;
        if !retention.max_age.is_zero() {
            duration_range(
                "audit.retention.max_age",
                retention.max_age,
                Duration::from_secs(60),
                Duration::from_secs(3650 * 24 * 3600),
            )?;
        }
        if retention.max_rows > MAX_AUDIT_ROWS {
            return Err(ConfigError::new(
                "audit.retention.max_rows",
                retention.max_rows.to_string(),
                format!("an integer from 0 (no limit) to {MAX_AUDIT_ROWS}"),
            ));
        }
        duration_range(
            "audit.retention.interval",
            retention.interval,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        )
    }
}

/// Which embedder turns tool descriptions and queries into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// Offline and deterministic: feature hashing of words and character n-grams (`hashing`).
    #[default]
    Hashing,
    /// An OpenAI-compatible `/v1/embeddings` API at `vector.openai_url` (`openai`).
    Openai,
}

/// The tools registry's vector search (`[vector]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSettings {
    /// `hashing` (offline, the default) or `openai` (an OpenAI-compatible embeddings API).
    pub embedder: EmbedderKind,
    /// Vector dimensions of the hashing embedder, from 16 to 4096.
    pub dimensions: usize,
    /// Base URL of the OpenAI-compatible API; `/v1/embeddings` is appended.
    pub openai_url: String,
    /// Model name sent to the embeddings API.
    pub openai_model: String,
    /// API key sent as `Authorization: Bearer` to the embeddings API (secret).
    pub openai_api_key: String,
    /// Timeout of one embeddings API call.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub request_timeout: Duration,
    /// Results of a search that gives no `limit`, from 1 to 1000.
    pub default_limit: usize,
    /// Lowest cosine similarity a result may have when a search gives no `threshold`, -1.0 to 1.0.
    pub default_threshold: f64,
}

impl std::fmt::Debug for VectorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorSettings")
            .field("embedder", &self.embedder)
            .field("dimensions", &self.dimensions)
            .field("openai_url", &metamcp_telemetry::redact::redact(&self.openai_url))
            .field("openai_model", &self.openai_model)
            .field("openai_api_key", &mask(&self.openai_api_key))
            .field("request_timeout", &self.request_timeout)
            .field("default_limit", &self.default_limit)
            .field("default_threshold", &self.default_threshold)
            .finish()
    }
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            embedder: EmbedderKind::default(),
            dimensions: DEFAULT_DIMENSIONS,
            openai_url: "http://127.0.0.1:11434".to_owned(),
            openai_model: "text-embedding-3-small".to_owned(),
            openai_api_key: String::new(),
            request_timeout: DEFAULT_EMBED_TIMEOUT,
            default_limit: DEFAULT_SEARCH_LIMIT,
            default_threshold: DEFAULT_SEARCH_THRESHOLD,
        }
    }
}

fn duration_range(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::new(
        key,
        humantime::format_duration(value).to_string(),
        format!("a duration from {} to {}", humantime::format_duration(min), humantime::format_duration(max)),
    ))
}

impl DatabaseSettings {
    /// Checks the URL scheme and the ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.trim();
        let parsed = match DatabaseUrl::parse(url, self.connect_timeout) {
            Ok(parsed) => parsed,
            Err(error) => {
                let allowed = match error {
                    DatabaseUrlError::NoFile { .. } => format!("a URL that names a file: {ACCEPTED_FORMS}"),
                    _ => ACCEPTED_FORMS.to_owned(),
                };
                return Err(ConfigError::new(
                    "database.url",
                    format!("{:?}", metamcp_telemetry::redact::redact(url)),
                    allowed,
                ));
            }
        };
        if parsed.backend() == Backend::Postgres && !postgres_userinfo_is_encoded(url) {
            // libpq reads the user information up to the first `@` or `/`: the rest of such a
            // password would end up in its error messages, quoted as a host, port or database.
            return Err(ConfigError::new(
                "database.url",
                format!("{:?}", metamcp_telemetry::redact::redact(url)),
                "a URL whose user name and password percent-encode '@', '/', '?' and '#' (%40, %2F, %3F, %23)",
            ));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(ConfigError::new(
                "database.pool_size",
                self.pool_size.to_string(),
                format!("an integer from 1 to {MAX_POOL_SIZE}"),
            ));
        }
        duration_range(
            "database.connect_timeout",
            self.connect_timeout,
            Duration::from_millis(10),
            Duration::from_secs(600),
        )?;
        duration_range("database.busy_timeout", self.busy_timeout, Duration::ZERO, Duration::from_secs(600))
    }
}

/// Whether the user information of the PostgreSQL `url` (up to the last `@` before the query, as
/// [`redact`](metamcp_telemetry::redact::redact) reads it) holds none of `@`, `/`, `?`, `#` unencoded.
fn postgres_userinfo_is_encoded(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return true };
    let Some(first_at) = rest.find('@') else { return true };
    let query = rest[first_at..].find(['?', '#']).map_or(rest.len(), |at| first_at + at);
    let last_at = rest[..query].rfind('@').unwrap_or(first_at);
    !rest[..last_at].contains(['@', '/', '?', '#'])
}

impl AdminSettings {
    /// Refuses a token with whitespace or control characters, which no header could carry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new("admin.token", "\"***\"", "a token without spaces or control characters"));
        }
        Ok(())
    }
}

impl GatewaySettings {
    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=256 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(ConfigError::new(
                "gateway.max_body_bytes",
                self.max_body_bytes.to_string(),
                "an integer from 1024 to 268435456",
            ));
        }
        duration_range(
            "gateway.upstream_timeout",
            self.upstream_timeout,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        duration_range(
            "gateway.session_idle_timeout",
            self.session_idle_timeout,
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
        )?;
        if !(1..=1_000_000).contains(&self.max_sessions) {
            return Err(ConfigError::new(
                "gateway.max_sessions",
                self.max_sessions.to_string(),
                "an integer from 1 to 1000000",
            ));
        }
        if !(1..=10_000).contains(&self.max_page_size) {
            return Err(ConfigError::new(
                "gateway.max_page_size",
                self.max_page_size.to_string(),
                "an integer from 1 to 10000",
            ));
        }
        if !(1..=MAX_LIST_PAGE_SIZE).contains(&self.list_page_size) {
            return Err(ConfigError::new(
                "gateway.list_page_size",
                self.list_page_size.to_string(),
                format!("an integer from 1 to {MAX_LIST_PAGE_SIZE}"),
            ));
        }
        if self.stdio_allowed_commands.len() > MAX_STDIO_ALLOWED_COMMANDS {
            return Err(ConfigError::new(
                "gateway.stdio_allowed_commands",
                format!("{} entries", self.stdio_allowed_commands.len()),
                format!("at most {MAX_STDIO_ALLOWED_COMMANDS} commands"),
            ));
        }
        if let Some(bad) = self.stdio_allowed_commands.iter().find(|command| {
            command.trim().is_empty() || command.trim() != *command || command.chars().any(char::is_control)
        }) {
            return Err(ConfigError::new(
                "gateway.stdio_allowed_commands",
                format!("{bad:?}"),
                "commands (names such as \"npx\" or paths such as \"/usr/bin/npx\") without surrounding spaces or control characters",
            ));
        }
        self.outbound_policy().map(drop)
    }

    /// The outbound policy of upstream connections these settings describe; the error names the
    /// key of a range that does not parse.
    pub fn outbound_policy(&self) -> Result<super::mcp::outbound::OutboundPolicy, ConfigError> {
        super::mcp::outbound::OutboundPolicy::new(&self.upstream_allow_cidrs, &self.upstream_deny_cidrs)
    }

    /// Whether a stdio server may run `command`: stdio servers are enabled
    /// (`gateway.stdio_enabled`) and the command is on `gateway.stdio_allowed_commands` (as
    /// given, or by its file name), or that list is empty.
    pub fn check_stdio_command(&self, command: &str) -> Result<(), StdioRefusal> {
        if !self.stdio_enabled {
            return Err(StdioRefusal::Disabled);
        }
        if self.stdio_allowed_commands.is_empty() {
            return Ok(());
        }
        let file_name = std::path::Path::new(command).file_name().and_then(|name| name.to_str());
        let allowed =
            self.stdio_allowed_commands.iter().any(|entry| entry == command || Some(entry.as_str()) == file_name);
        if allowed {
            Ok(())
        } else {
            Err(StdioRefusal::CommandNotAllowed { command: command.to_owned() })
        }
    }
}

/// Why a stdio server may not run ([`GatewaySettings::check_stdio_command`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StdioRefusal {
    /// `gateway.stdio_enabled` is false.
    #[error("stdio servers are disabled on this gateway (gateway.stdio_enabled = false)")]
    Disabled,
    /// The command is not on `gateway.stdio_allowed_commands`.
    #[error("command {command:?} is not in gateway.stdio_allowed_commands")]
    CommandNotAllowed {
        /// The command as given.
        command: String,
    },
}

impl StdioRefusal {
    /// A short machine-readable code: `stdio_disabled` or `stdio_command_not_allowed`.
    pub const fn code(&self) -> &'static str {
        match self {
            StdioRefusal::Disabled => "stdio_disabled",
            StdioRefusal::CommandNotAllowed { .. } => "stdio_command_not_allowed",
        }
    }
}

impl VectorSettings {
    /// Checks the ranges and, for the `openai` embedder, the URL; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(16..=4096).contains(&self.dimensions) {
            return Err(ConfigError::new(
                "vector.dimensions",
                self.dimensions.to_string(),
                "an integer from 16 to 4096",
            ));
        }
        if self.embedder == EmbedderKind::Openai
            && !(self.openai_url.starts_with("http://") || self.openai_url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "vector.openai_url",
                format!("{:?}", self.openai_url),
                "an http:// or https:// URL",
            ));
        }
        if self.embedder == EmbedderKind::Openai && self.openai_model.trim().is_empty() {
            return Err(ConfigError::new("vector.openai_model", "\"\"", "a model name"));
        }
        duration_range(
            "vector.request_timeout",
            self.request_timeout,
            Duration::from_millis(10),
            Duration::from_secs(600),
        )?;
        if !(1..=1000).contains(&self.default_limit) {
            return Err(ConfigError::new(
                "vector.default_limit",
                self.default_limit.to_string(),
                "an integer from 1 to 1000",
            ));
        }
        if !(self.default_threshold.is_finite() && (-1.0..=1.0).contains(&self.default_threshold)) {
            return Err(ConfigError::new(
                "vector.default_threshold",
                self.default_threshold.to_string(),
                "a number from -1.0 to 1.0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> DatabaseSettings {
        DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }
    }

    #[test]
    fn database_urls_in_every_form_are_accepted() {
        for url in [
            "metamcp.db",
            "/data/metamcp.db",
            "./x.db",
            "sqlite://metamcp.db",
            "sqlite://:memory:",
            "sqlite::memory:",
            ":memory:",
            "file:metamcp.db",
            "file:///data/metamcp.db",
            "file:x.db?mode=rwc",
            "postgres://u@h:5432/db",
            "postgresql://h/db",
        ] {
            with_url(url).validate().unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn stdio_commands_match_as_given_or_by_file_name() {
        let mut gateway = GatewaySettings::default();
        assert!(gateway.stdio_enabled && gateway.stdio_allowed_commands.is_empty());
        assert_eq!(gateway.check_stdio_command("/anything/at/all"), Ok(()));
        gateway.stdio_allowed_commands = vec!["npx".to_owned(), "/opt/bin/uvx".to_owned()];
        for allowed in ["npx", "/usr/bin/npx", "./npx", "/opt/bin/uvx"] {
            assert_eq!(gateway.check_stdio_command(allowed), Ok(()), "{allowed}");
        }
        for refused in ["uvx", "/usr/bin/uvx", "python", "npx-evil", "/opt/bin/npx-evil"] {
            let err = gateway.check_stdio_command(refused).unwrap_err();
            assert_eq!(err.code(), "stdio_command_not_allowed", "{refused}");
            assert!(err.to_string().contains("gateway.stdio_allowed_commands"), "{err}");
        }
        gateway.stdio_enabled = false;
        assert_eq!(gateway.check_stdio_command("npx"), Err(StdioRefusal::Disabled));
    }

    #[test]
    fn gateway_list_settings_name_the_key() {
        let zero = GatewaySettings { list_page_size: 0, ..GatewaySettings::default() };
        assert!(zero.validate().unwrap_err().to_string().contains("gateway.list_page_size"));
        let blank = GatewaySettings { stdio_allowed_commands: vec![" ".to_owned()], ..GatewaySettings::default() };
        assert!(blank.validate().unwrap_err().to_string().contains("gateway.stdio_allowed_commands"));
        assert_eq!(GatewaySettings::default().list_page_size, 100);
        GatewaySettings::default().validate().unwrap();
    }

    #[test]
    fn nonsense_database_urls_name_the_key_and_hide_the_password() {
        for url in ["", "  ", "ftp://x", "mysql://root:dbsecret@h/db", "sqlite://", "file:"] {
            let err = with_url(url).validate().unwrap_err().to_string();
            assert!(err.contains("database.url") && err.contains("sqlite://PATH"), "{url}: {err}");
            assert!(!err.contains("dbsecret"), "{err}");
        }
    }
}
