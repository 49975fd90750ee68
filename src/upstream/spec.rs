//! How an upstream MCP server is reached: over Streamable HTTP, over the legacy HTTP+SSE
//! transport (protocol 2024-11-05), or as a child process speaking over its stdin and stdout.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The transport of an upstream server, as stored and as the admin API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// MCP Streamable HTTP (`streamable_http`), the default.
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (`sse`).
    Sse,
    /// A child process over stdin/stdout (`stdio`).
    Stdio,
}

impl Transport {
    /// Every transport, in the order the docs list them.
    pub const ALL: [Transport; 3] = [Transport::StreamableHttp, Transport::Sse, Transport::Stdio];

    /// The name as stored and as the admin API takes it: `streamable_http`, `sse` or `stdio`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        }
    }

    /// The transport named `name` ([`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<Transport> {
        Self::ALL.into_iter().find(|transport| transport.as_str() == name)
    }

    /// The OpenTelemetry `network.transport` of the connection: `pipe` for stdio, `tcp` otherwise.
    pub const fn network_transport(self) -> &'static str {
        match self {
            Transport::Stdio => "pipe",
            Transport::StreamableHttp | Transport::Sse => "tcp",
        }
    }

    /// Whether the server is reached at a URL (the HTTP transports).
    pub const fn is_http(self) -> bool {
        !matches!(self, Transport::Stdio)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how to reach one upstream server.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerSpec {
    /// A Streamable HTTP server at `url`.
    StreamableHttp {
        /// The MCP endpoint URL.
        url: String,
    },
    /// A legacy HTTP+SSE server whose event stream is at `url`.
    Sse {
        /// The SSE stream URL.
        url: String,
    },
    /// A program started as a child process, speaking MCP over its stdin and stdout.
    Stdio {
        /// The program, a path or a name looked up in `PATH`.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables set for it (credentials: never shown, never logged).
        env: BTreeMap<String, String>,
        /// Its working directory; `None`: the gateway's.
        cwd: Option<String>,
    },
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

    /// The URL of an HTTP server; `None` for stdio.
    pub fn url(&self) -> Option<&str> {
        match self {
            ServerSpec::StreamableHttp { url } | ServerSpec::Sse { url } => Some(url),
            ServerSpec::Stdio { .. } => None,
        }
    }
}

/// Shows URLs with their credentials masked and the environment's keys only.
impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSpec::StreamableHttp { url } => {
                f.debug_struct("StreamableHttp").field("url", &metamcp_telemetry::redact::redact(url)).finish()
            }
            ServerSpec::Sse { url } => {
                f.debug_struct("Sse").field("url", &metamcp_telemetry::redact::redact(url)).finish()
            }
            ServerSpec::Stdio { command, args, env, cwd } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env_keys", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_round_trip_their_names() {
        for transport in Transport::ALL {
            assert_eq!(Transport::parse(transport.as_str()), Some(transport));
            assert_eq!(serde_json::to_value(transport).unwrap(), transport.as_str());
        }
        assert_eq!(Transport::parse("http"), None);
        assert_eq!(Transport::Stdio.network_transport(), "pipe");
        assert_eq!(Transport::Sse.network_transport(), "tcp");
    }

    #[test]
    fn debug_never_shows_env_values_or_url_credentials() {
        let stdio = ServerSpec::Stdio {
            command: "uvx".to_owned(),
            args: vec!["server".to_owned()],
            env: BTreeMap::from([("API_TOKEN".to_owned(), "s3cr3t-value".to_owned())]),
            cwd: None,
        };
        let shown = format!("{stdio:?}");
        assert!(shown.contains("API_TOKEN") && !shown.contains("s3cr3t-value"), "{shown}");
        let http = ServerSpec::StreamableHttp { url: "http://user:hunter2@h/mcp".to_owned() };
        assert!(!format!("{http:?}").contains("hunter2"));
        assert_eq!(http.transport(), Transport::StreamableHttp);
        assert_eq!(stdio.url(), None);
    }
}
