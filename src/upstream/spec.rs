//! What the gateway needs to reach one upstream MCP server: its transport and where it lives
//! (a URL for the HTTP transports, a command line for stdio).

use std::collections::BTreeMap;
use std::fmt;

/// How to reach one upstream server.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerSpec {
    /// MCP Streamable HTTP (protocol 2025-03-26 and later) at `url`.
    StreamableHttp {
        /// The server's MCP endpoint, e.g. `http://127.0.0.1:8000/mcp`.
        url: String,
    },
    /// The legacy HTTP+SSE transport (protocol 2024-11-05): `url` is the event stream.
    Sse {
        /// The server's event stream, e.g. `http://127.0.0.1:8000/sse`.
        url: String,
    },
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program, looked up on `PATH` when it holds no `/`.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables set for it (values are secrets: never logged nor returned).
        env: BTreeMap<String, String>,
        /// Its working directory; the gateway's when `None`.
        cwd: Option<String>,
    },
}

impl fmt::Debug for ServerSpec {
    /// The transport and the URL's origin or the command; never a URL's path and query (they
    /// may hold credentials) nor an environment value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSpec::StreamableHttp { url } | ServerSpec::Sse { url } => {
                f.debug_struct(self.transport().as_str()).field("url", &metamcp_telemetry::redact::redact(url)).finish()
            }
            ServerSpec::Stdio { command, args, env, cwd } => f
                .debug_struct("stdio")
                .field("command", command)
                .field("args", &args.len())
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
        }
    }
}

impl ServerSpec {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            ServerSpec::StreamableHttp { .. } => Transport::StreamableHttp,
            ServerSpec::Sse { .. } => Transport::Sse,
            ServerSpec::Stdio { .. } => Transport::Stdio,
        }
    }

    /// The URL of an HTTP transport.
    pub fn url(&self) -> Option<&str> {
        match self {
            ServerSpec::StreamableHttp { url } | ServerSpec::Sse { url } => Some(url),
            ServerSpec::Stdio { .. } => None,
        }
    }
}

/// The transport of an upstream server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MCP Streamable HTTP.
    StreamableHttp,
    /// The legacy HTTP+SSE transport.
    Sse,
    /// A child process on stdin/stdout.
    Stdio,
}

impl Transport {
    /// Every transport, in the order the admin API documents them.
    pub const ALL: [Transport; 3] = [Transport::StreamableHttp, Transport::Sse, Transport::Stdio];

    /// The name the admin API and the storage use: `streamable_http`, `sse` or `stdio`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        }
    }

    /// The transport of a name [`Transport::as_str`] gives.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The `network.transport` of the semantic conventions: `pipe` for stdio, `tcp` otherwise.
    pub fn network_transport(self) -> &'static str {
        match self {
            Transport::Stdio => "pipe",
            Transport::StreamableHttp | Transport::Sse => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
