//! The `mcp_servers` table: upstream MCP servers of every transport — Streamable HTTP and legacy
//! SSE servers at a URL, stdio servers as a command with arguments, environment and working
//! directory. The environment's values are credentials: [`Server`] and [`NewServer`] show its keys
//! only, when serialized and in `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use diesel::deserialize::{self, FromSql, Queryable};

#[allow(unused_imports)]
use super::*;
use crate::upstream::{ServerSpec, Transport};

/// Longest accepted server URL, in bytes.
pub(crate) const MAX_URL: usize = 2048;
/// Longest accepted stdio `command` and `cwd`, in bytes.
pub(crate) const MAX_PATH: usize = 4096;
/// Most arguments of a stdio server.
pub(crate) const MAX_ARGS: usize = 256;
/// Longest argument of a stdio server, in bytes.
pub(crate) const MAX_ARG: usize = 8192;
/// Most environment variables of a stdio server.
pub(crate) const MAX_ENV: usize = 256;
/// Longest environment variable name, in bytes.
pub(crate) const MAX_ENV_NAME: usize = 256;
/// Longest environment variable value, in bytes.
pub(crate) const MAX_ENV_VALUE: usize = 32 * 1024;
/// Largest per-server `timeout_ms`: one hour.
pub const MAX_TIMEOUT_MS: i64 = 3_600_000;

/// An upstream MCP server.
#[derive(Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = servers)]
pub struct Server {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// How it is reached.
    #[diesel(deserialize_as = StoredTransport)]
    pub transport: Transport,
    /// URL of an HTTP server (serialized with its credentials masked); `None` for stdio.
    #[serde(serialize_with = "redacted")]
    pub url: Option<String>,
    /// Program of a stdio server.
    pub command: Option<String>,
    /// Arguments of the program.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub args: Vec<String>,
    /// Environment of the program (serialized with every value masked).
    #[serde(serialize_with = "masked_env")]
    #[diesel(deserialize_as = JsonText<BTreeMap<String, String>>)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the program; `None`: the gateway's.
    pub cwd: Option<String>,
    /// Whether the gateway calls it.
    pub enabled: bool,
    /// Per-call timeout in milliseconds; `None`: the gateway's default.
    pub timeout_ms: Option<i64>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl Server {
    /// Where and how to reach the server.
    pub fn spec(&self) -> ServerSpec {
        spec_of(
            self.transport,
            self.url.as_deref(),
            self.command.as_deref(),
            &self.args,
            &self.env,
            self.cwd.as_deref(),
        )
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("spec", &self.spec())
            .field("enabled", &self.enabled)
            .field("timeout_ms", &self.timeout_ms)
            .field("created_at", &self.created_at)
            .finish()
    }
}

fn spec_of(
    transport: Transport,
    url: Option<&str>,
    command: Option<&str>,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&str>,
) -> ServerSpec {
    let url = || url.unwrap_or_default().to_owned();
    match transport {
        Transport::StreamableHttp => ServerSpec::StreamableHttp { url: url() },
        Transport::Sse => ServerSpec::Sse { url: url() },
        Transport::Stdio => ServerSpec::Stdio {
            command: command.unwrap_or_default().to_owned(),
            args: args.to_vec(),
            env: env.clone(),
            cwd: cwd.map(str::to_owned),
        },
    }
}

/// A URL as shown: its user information and credential-like query values masked.
fn redacted<S: serde::Serializer>(url: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&metamcp_telemetry::redact::redact(url)),
        None => serializer.serialize_none(),
    }
}

/// An environment as shown: its keys, every value `"***"`.
fn masked_env<S: serde::Serializer>(env: &BTreeMap<String, String>, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = serializer.serialize_map(Some(env.len()))?;
    for key in env.keys() {
        map.serialize_entry(key, metamcp_telemetry::settings::MASK)?;
    }
    map.end()
}

/// The `transport` column, read into a [`Transport`]; an unknown name is a deserialization error.
/// (Public only because the derived `Queryable` of [`Server`] names it.)
#[allow(unreachable_pub)]
pub struct StoredTransport(String);

impl<DB> Queryable<diesel::sql_types::Text, DB> for StoredTransport
where
    DB: diesel::backend::Backend,
    String: FromSql<diesel::sql_types::Text, DB>,
{
    type Row = String;

    fn build(row: String) -> deserialize::Result<Self> {
        Ok(StoredTransport(row))
    }
}

impl TryFrom<StoredTransport> for Transport {
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn try_from(stored: StoredTransport) -> Result<Transport, Self::Error> {
        Transport::parse(&stored.0).ok_or_else(|| format!("unknown server transport {:?}", stored.0).into())
    }
}

/// A JSON text column, read into `T`. (Public only because the derived `Queryable` of [`Server`]
/// names it.)
#[allow(unreachable_pub)]
pub struct JsonText<T>(T);

impl<T, DB> Queryable<diesel::sql_types::Text, DB> for JsonText<T>
where
    T: serde::de::DeserializeOwned,
    DB: diesel::backend::Backend,
    String: FromSql<diesel::sql_types::Text, DB>,
{
    type Row = String;

    fn build(row: String) -> deserialize::Result<Self> {
        Ok(JsonText(serde_json::from_str(&row)?))
    }
}

impl<T> JsonText<T> {
    /// The value (the name `Queryable`'s derive calls for a `deserialize_as` field).
    #[allow(clippy::unnecessary_wraps, clippy::wrong_self_convention)]
    fn try_into(self) -> Result<T, std::convert::Infallible> {
        Ok(self.0)
    }
}

/// A server to create. For the HTTP transports `url` is set and the stdio fields are empty; for
/// `stdio`, `command` is set and `url` is not.
#[derive(Clone, PartialEq, Deserialize)]
pub struct NewServer {
    /// `^[A-Za-z0-9_-]{1,64}$`, without `__` (which separates server and tool in tool names).
    pub name: String,
    /// How it is reached (default Streamable HTTP).
    #[serde(default)]
    pub transport: Transport,
    /// URL of an HTTP server.
    #[serde(default)]
    pub url: Option<String>,
    /// Program of a stdio server.
    #[serde(default)]
    pub command: Option<String>,
    /// Arguments of the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the program.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Whether the gateway calls it (default `true`).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Per-call timeout in milliseconds (1 to [`MAX_TIMEOUT_MS`]); `None`: the gateway's default.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

const fn enabled_by_default() -> bool {
    true
}

impl NewServer {
    /// A Streamable HTTP server at `url`, enabled, with the default timeout.
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::with_spec(name, ServerSpec::StreamableHttp { url: url.into() })
    }

    /// A server reached as `spec` says, enabled, with the default timeout.
    pub fn with_spec(name: impl Into<String>, spec: ServerSpec) -> Self {
        let mut new = NewServer {
            name: name.into(),
            transport: spec.transport(),
            url: None,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            enabled: true,
            timeout_ms: None,
        };
        match spec {
            ServerSpec::StreamableHttp { url } | ServerSpec::Sse { url } => new.url = Some(url),
            ServerSpec::Stdio { command, args, env, cwd } => {
                new.command = Some(command);
                new.args = args;
                new.env = env;
                new.cwd = cwd;
            }
        }
        new
    }

    /// Where and how to reach the server.
    pub fn spec(&self) -> ServerSpec {
        spec_of(
            self.transport,
            self.url.as_deref(),
            self.command.as_deref(),
            &self.args,
            &self.env,
            self.cwd.as_deref(),
        )
    }

    /// Checks every field: the name, the fields of the transport present and the others absent,
    /// their forms and sizes. The error names the field.
    pub fn validate(&self) -> Result<(), InvalidServerField> {
        check_server_name(&self.name).map_err(|err| InvalidServerField::new("name", err.to_string()))?;
        if self.timeout_ms.is_some_and(|ms| !(1..=MAX_TIMEOUT_MS).contains(&ms)) {
            return Err(InvalidServerField::new(
                "timeout_ms",
                format!("timeout_ms must be from 1 to {MAX_TIMEOUT_MS}"),
            ));
        }
        let transport = self.transport;
        if transport.is_http() {
            let Some(url) = &self.url else {
                return Err(InvalidServerField::new("url", format!("url is required for transport {transport}")));
            };
            check_url(url.trim())?;
            let stdio_only = [
                ("command", self.command.is_some()),
                ("args", !self.args.is_empty()),
                ("env", !self.env.is_empty()),
                ("cwd", self.cwd.is_some()),
            ];
            if let Some((field, _)) = stdio_only.into_iter().find(|(_, given)| *given) {
                return Err(InvalidServerField::new(
                    field,
                    format!("{field} is only for transport stdio, not {transport}"),
                ));
            }
            return Ok(());
        }
        if self.url.is_some() {
            return Err(InvalidServerField::new(
                "url",
                "url is not for transport stdio, which runs command (with args, env and cwd)",
            ));
        }
        let Some(command) = &self.command else {
            return Err(InvalidServerField::new("command", "command is required for transport stdio"));
        };
        if command.trim().is_empty() || command.len() > MAX_PATH || command.chars().any(char::is_control) {
            return Err(InvalidServerField::new(
                "command",
                format!("command must be 1 to {MAX_PATH} bytes, not blank, without control characters"),
            ));
        }
        if self.args.len() > MAX_ARGS {
            return Err(InvalidServerField::new("args", format!("args may hold at most {MAX_ARGS} arguments")));
        }
        if let Some(at) = self.args.iter().position(|arg| arg.len() > MAX_ARG || arg.contains('\0')) {
            return Err(InvalidServerField::new(
                "args",
                format!("args[{at}] must be at most {MAX_ARG} bytes without NUL characters"),
            ));
        }
        if self.env.len() > MAX_ENV {
            return Err(InvalidServerField::new("env", format!("env may hold at most {MAX_ENV} variables")));
        }
        for (key, value) in &self.env {
            let valid_key = !key.is_empty()
                && key.len() <= MAX_ENV_NAME
                && !key.contains('=')
                && !key.chars().any(char::is_control);
            if !valid_key {
                return Err(InvalidServerField::new(
                    "env",
                    format!(
                        "env name {} must be 1 to {MAX_ENV_NAME} bytes without '=' or control characters",
                        quoted(key)
                    ),
                ));
            }
            // The value is a credential: the message names the variable, never the value.
            if value.len() > MAX_ENV_VALUE || value.contains('\0') {
                return Err(InvalidServerField::new(
                    "env",
                    format!(
                        "the value of env {} must be at most {MAX_ENV_VALUE} bytes without NUL characters",
                        quoted(key)
                    ),
                ));
            }
        }
        if let Some(cwd) = &self.cwd {
            if cwd.trim().is_empty() || cwd.len() > MAX_PATH || cwd.chars().any(char::is_control) {
                return Err(InvalidServerField::new(
                    "cwd",
                    format!("cwd must be 1 to {MAX_PATH} bytes, not blank, without control characters"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NewServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewServer")
            .field("name", &self.name)
            .field("spec", &self.spec())
            .field("enabled", &self.enabled)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// A field of a server to create that is not valid ([`NewServer::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidServerField {
    /// The field, as the admin API names it: `name`, `transport`, `url`, `command`, `args`,
    /// `env`, `cwd` or `timeout_ms`.
    pub field: &'static str,
    /// What is wrong, naming the field (never an `env` value).
    pub message: String,
}

impl InvalidServerField {
    /// `field` is not valid, as `message` says.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }

    /// The admin API's error code: `invalid_` and the field (`invalid_timeout` for `timeout_ms`).
    pub fn code(&self) -> &'static str {
        match self.field {
            "name" => "invalid_name",
            "transport" => "invalid_transport",
            "url" => "invalid_url",
            "command" => "invalid_command",
            "args" => "invalid_args",
            "env" => "invalid_env",
            "cwd" => "invalid_cwd",
            "timeout_ms" => "invalid_timeout",
            _ => "invalid",
        }
    }
}

impl From<InvalidServerField> for StorageError {
    fn from(err: InvalidServerField) -> StorageError {
        StorageError::Invalid(err.message)
    }
}

/// An `http://` or `https://` URL with a host, at most [`MAX_URL`] bytes, without control
/// characters.
fn check_url(url: &str) -> Result<(), InvalidServerField> {
    if url.is_empty() || url.len() > MAX_URL || url.chars().any(char::is_control) {
        return Err(InvalidServerField::new(
            "url",
            format!("url must be 1 to {MAX_URL} bytes without control characters"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| InvalidServerField::new("url", format!("url {} is not a URL: {e}", quoted(url))))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(InvalidServerField::new("url", "url must be an http:// or https:// URL"));
    }
    Ok(())
}

#[derive(Insertable)]
#[diesel(table_name = servers)]
struct ServerRow<'a> {
    name: &'a str,
    transport: &'a str,
    url: Option<&'a str>,
    command: Option<&'a str>,
    args: String,
    env: String,
    cwd: Option<&'a str>,
    enabled: bool,
    timeout_ms: Option<i64>,
    created_at: i64,
}

// `RETURNING` through the multi-backend connection takes plain columns (not `as_returning()`),
// in the field order of the `Queryable` struct.
const SERVER_COLUMNS: (
    servers::id,
    servers::name,
    servers::transport,
    servers::url,
    servers::command,
    servers::args,
    servers::env,
    servers::cwd,
    servers::enabled,
    servers::timeout_ms,
    servers::created_at,
) = (
    servers::id,
    servers::name,
    servers::transport,
    servers::url,
    servers::command,
    servers::args,
    servers::env,
    servers::cwd,
    servers::enabled,
    servers::timeout_ms,
    servers::created_at,
);

/// Creates a server. A field that is not valid is [`Invalid`](StorageError::Invalid) (naming the
/// field), a taken name [`Conflict`](StorageError::Conflict).
pub fn create_server(conn: &mut DbConnection, new: &NewServer) -> Result<Server, StorageError> {
    new.validate()?;
    let row = ServerRow {
        name: &new.name,
        transport: new.transport.as_str(),
        url: new.url.as_deref().map(str::trim),
        command: new.command.as_deref(),
        args: json_text(&new.args),
        env: json_text(&new.env),
        cwd: new.cwd.as_deref(),
        enabled: new.enabled,
        timeout_ms: new.timeout_ms,
        created_at: now_ms(),
    };
    diesel::insert_into(servers::table)
        .values(&row)
        .returning(SERVER_COLUMNS)
        .get_result::<Server>(conn)
        .map_err(|e| conflict_as(e, || format!("server {} already exists", quoted(&new.name))))
}

/// `value` as JSON text: a list of strings or a map of strings to strings, which always
/// serialize.
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A page of servers, by name.
pub fn list_servers(conn: &mut DbConnection, page: Page) -> Result<Listed<Server>, StorageError> {
    let page = page.check()?;
    let total = servers::table.count().get_result::<i64>(conn)?;
    let items = servers::table
        .select(Server::as_select())
        .order(servers::name.asc())
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items, total })
}

/// The server named `name`.
pub fn get_server(conn: &mut DbConnection, name: &str) -> Result<Server, StorageError> {
    servers::table
        .filter(servers::name.eq(name))
        .select(Server::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| server_not_found(name))
}

/// Deletes a server with its tools and its place in endpoints.
pub fn delete_server(conn: &mut DbConnection, name: &str) -> Result<(), StorageError> {
    let deleted = diesel::delete(servers::table.filter(servers::name.eq(name))).execute(conn)?;
    if deleted == 0 {
        return Err(server_not_found(name));
    }
    Ok(())
}
