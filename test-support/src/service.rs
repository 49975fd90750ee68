//! Runs the real service binary for end-to-end tests: start, wait for its "listening" line,
//! read its JSON logs, signal it, and kill it if a test leaves it behind.
//!
//! Which executable runs is the test crate's to say ([`Binary`]): only an integration test of
//! the package that builds it sees its path (`env!("CARGO_BIN_EXE_metamcp-telemetry")`). A test
//! crate names it once, `type Service = support::service::Service<Gateway>;`, and then starts
//! services with `Service::start(envs, args)`.

use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the binary may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The service executable a [`Service`] runs.
pub trait Binary {
    /// Absolute path of the executable.
    const PATH: &'static str;
    /// The directory of `default.toml` and its overlays (`METAMCP_CONFIG_DIR`).
    const CONFIG_DIR: &'static str;
}

/// A running service process of the binary `B`; everything but starting it is on
/// [`ServiceProcess`], which it dereferences to.
pub struct Service<B> {
    process: ServiceProcess,
    binary: PhantomData<fn() -> B>,
}

impl<B: Binary> Service<B> {
    /// Starts the binary with `envs` and `args` (API and metrics on free ports unless the args
    /// say otherwise) and waits until it listens.
    pub fn start(envs: &[(&str, &str)], args: &[&str]) -> Service<B> {
        Service {
            process: ServiceProcess::start(Path::new(B::PATH), Path::new(B::CONFIG_DIR), envs, args),
            binary: PhantomData,
        }
    }
}

impl<B> Deref for Service<B> {
    type Target = ServiceProcess;

    fn deref(&self) -> &ServiceProcess {
        &self.process
    }
}

impl<B> DerefMut for Service<B> {
    fn deref_mut(&mut self) -> &mut ServiceProcess {
        &mut self.process
    }
}

/// A running service process, killed when dropped.
pub struct ServiceProcess {
    child: Child,
    /// Holds the SQLite file of a service started without `DATABASE_URL`.
    _data: Option<tempfile::TempDir>,
    /// The API's address.
    pub api: SocketAddr,
    /// The Prometheus endpoint's address, if enabled.
    pub metrics: Option<SocketAddr>,
    lines: Arc<(Mutex<Output>, Condvar)>,
}

/// What the service printed, and how many of its two streams have ended.
#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: usize,
}

fn find_listening(lines: &[String]) -> Option<(SocketAddr, Option<SocketAddr>)> {
    lines.iter().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        if value["message"] != "metamcp-telemetry listening" {
            return None;
        }
        let api = value["api"].as_str()?.parse().ok()?;
        let metrics = value["metrics"].as_str().and_then(|m| m.parse().ok());
        Some((api, metrics))
    })
}

impl ServiceProcess {
    /// Starts `binary` with the configuration directory `config_dir`, `envs` and `args` (API and
    /// metrics on free ports unless the args say otherwise) and waits until it listens.
    pub fn start(binary: &Path, config_dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> ServiceProcess {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("METAMCP_CONFIG_DIR", config_dir)
            .env("RUST_LOG", "info")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (flag, default) in [("--bind", "127.0.0.1:0"), ("--metrics-port", "0"), ("--log-format", "json")] {
            if !args.contains(&flag) {
                command.args([flag, default]);
            }
        }
        for (key, value) in envs {
            command.env(key, value);
        }
        // Each service gets its own database unless the test names one.
        let data = if envs.iter().any(|(key, _)| *key == "DATABASE_URL" || *key == "METAMCP_DATABASE__URL") {
            None
        } else {
            let dir = tempfile::tempdir().expect("temp dir for the database");
            command.env("DATABASE_URL", format!("sqlite://{}", dir.path().join("metamcp.db").display()));
            Some(dir)
        };
        let mut child = command.spawn().expect("the service binary starts");
        let lines = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let (store, ready) = &*lines;
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    store.lock().unwrap().lines.push(line);
                    ready.notify_all();
                }
                store.lock().unwrap().closed += 1;
                ready.notify_all();
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let (api, metrics) = {
            let (store, ready) = &*lines;
            let mut guard = store.lock().unwrap();
            loop {
                if let Some(found) = find_listening(&guard.lines) {
                    break found;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the service exited with {status} before listening:\n{}", guard.lines.join("\n"));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "the service did not listen within {START_TIMEOUT:?}:\n{}",
                    guard.lines.join("\n")
                );
                guard = ready.wait_timeout(guard, left.min(Duration::from_millis(100))).unwrap().0;
            }
        };
        ServiceProcess { child, _data: data, api, metrics, lines }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (reaping it), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("wait for the service process")?;
        self.wait_for_output_end(Instant::now() + Duration::from_secs(10));
        Some(status)
    }

    /// `path` on the API's address.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// The Prometheus endpoint's URL (panics when it is disabled).
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics.expect("metrics endpoint enabled"))
    }

    /// Every output line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().lines.clone()
    }

    /// Output lines parsed as JSON (non-JSON lines are skipped).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits (until `deadline`) for both output streams to end, so that the last lines the
    /// process printed before it exited are in [`ServiceProcess::logs`].
    fn wait_for_output_end(&self, deadline: Instant) {
        let (store, ended) = &*self.lines;
        let mut guard = store.lock().unwrap();
        while guard.closed < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the service's output did not end after it exited:\n{}", guard.lines.join("\n"));
            guard = ended.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal, timeout: Duration) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal delivered");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.wait_for_output_end(deadline);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {timeout:?} of {signal}:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Names of the process's threads (`/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("proc").flatten() {
            if let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) {
                names.push(name.trim().to_owned());
            }
        }
        names
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Accept` header an MCP Streamable HTTP client sends.
pub const MCP_ACCEPT: &str = "application/json, text/event-stream";

impl ServiceProcess {
    /// One JSON-RPC POST to the `default` MCP endpoint, in the session `session` if given.
    pub fn mcp_post(&self, session: Option<&str>, body: serde_json::Value) -> reqwest::blocking::Response {
        let mut request = client()
            .post(self.url("/metamcp/default/mcp"))
            .header("content-type", "application/json")
            .header("accept", MCP_ACCEPT)
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().expect("POST to the MCP endpoint")
    }
}

/// A blocking HTTP client with a bounded timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}
