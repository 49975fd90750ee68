//! The peers on the official Python MCP SDK (`tests/peers/python`, see its README): the upstream
//! server `server.py` on its HTTP transports as a child process ([`PythonServer`]), the command
//! line that runs it over stdio ([`stdio_command`]), the client `client.py` run to completion
//! ([`run_client`]), and the JSON-lines records both write ([`records`]).
//!
//! Every wait is bounded; a server is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `server.py` may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `server.py`'s path.
pub fn server_script() -> PathBuf {
    crate::repo_root().join("tests/peers/python/server.py")
}

/// `client.py`'s path.
pub fn client_script() -> PathBuf {
    crate::repo_root().join("tests/peers/python/client.py")
}

/// The transports `server.py` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerTransport {
    /// JSON-RPC on stdin/stdout.
    Stdio,
    /// The legacy HTTP+SSE transport (protocol 2024-11-05).
    Sse,
    /// Streamable HTTP.
    StreamableHttp,
}

impl PeerTransport {
    /// `server.py`'s `--transport` value.
    pub fn flag(self) -> &'static str {
        match self {
            PeerTransport::Stdio => "stdio",
            PeerTransport::Sse => "sse",
            PeerTransport::StreamableHttp => "streamable-http",
        }
    }

    /// The gateway's name of the transport (`POST /api/servers`'s `transport`).
    pub fn gateway_name(self) -> &'static str {
        match self {
            PeerTransport::Stdio => "stdio",
            PeerTransport::Sse => "sse",
            PeerTransport::StreamableHttp => "streamable_http",
        }
    }
}

/// The command and arguments that run `server.py` over stdio with `python`, named `name`.
pub fn stdio_command(python: &Path, name: &str) -> (String, Vec<String>) {
    (
        python.display().to_string(),
        vec![server_script().display().to_string(), "--transport".into(), "stdio".into(), "--name".into(), name.into()],
    )
}

/// `server.py` over an HTTP transport, killed when dropped.
pub struct PythonServer {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl PythonServer {
    /// Starts `server.py --transport <transport> --name <name>` with `envs` and waits (bounded)
    /// for its ready line.
    pub fn start(python: &Path, transport: PeerTransport, name: &str, envs: &[(&str, &str)]) -> PythonServer {
        assert_ne!(transport, PeerTransport::Stdio, "a stdio server is the gateway's child, see stdio_command");
        let mut command = Command::new(python);
        command
            .arg(server_script())
            .args(["--transport", transport.flag(), "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("server.py starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if value["ready"] == true {
                        let _ = ready_tx.send(value["url"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        });
        let url = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server.py --transport {} did not get ready within {READY_TIMEOUT:?}:\n{}",
                    transport.flag(),
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        PythonServer { child, url, stderr }
    }

    /// Its URL (`…/sse` or `…/mcp`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of `client.py` printed.
#[derive(Debug, Clone)]
pub struct ClientRun {
    /// Its exit status: 0 when the session opened.
    pub success: bool,
    /// Every JSON line of stdout, the summary last.
    pub lines: Vec<Value>,
    /// stderr, for failure messages.
    pub stderr: String,
}

impl ClientRun {
    /// The last line: `{"event": "summary", …}`.
    pub fn summary(&self) -> &Value {
        self.lines.last().filter(|line| line["event"] == "summary").unwrap_or_else(|| {
            panic!("client.py printed no summary; stdout {:?}\nstderr:\n{}", self.lines, self.stderr)
        })
    }

    /// The results of its actions, in order.
    pub fn results(&self) -> &[Value] {
        self.summary()["results"].as_array().map(Vec::as_slice).unwrap_or_default()
    }

    /// The result of the first action `kind` (`call`, `prompt`, `read`, `complete`, `cancel`)
    /// whose first argument is `first`.
    pub fn result(&self, kind: &str, first: &str) -> &Value {
        self.results().iter().find(|r| r["action"] == kind && r["args"][0] == first).unwrap_or_else(|| {
            panic!("no {kind} {first} among the results: {}", serde_json::to_string_pretty(self.summary()).unwrap())
        })
    }
}

/// Runs `client.py <target> <args…>` with `python` to completion, killed after `timeout`.
pub fn run_client(python: &Path, target: &str, args: &[String], timeout: Duration) -> ClientRun {
    let mut child = Command::new(python)
        .arg(client_script())
        .arg(target)
        .args(args)
        .args(["--deadline", &format!("{}", timeout.as_secs().max(1))])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client.py starts");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .collect::<Vec<_>>()
    });
    let stderr =
        std::thread::spawn(move || BufReader::new(err).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    // The client's own deadline ends it first; this bound is for a client that hangs regardless.
    let deadline = Instant::now() + timeout + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for client.py") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        panic!("client.py did not end within {timeout:?}; stdout {lines:?}\nstderr:\n{stderr}");
    };
    ClientRun { success: status.success(), lines, stderr }
}

/// The JSON records in `path` (one object a line; none when the file does not exist yet).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}
