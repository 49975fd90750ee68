//! Prerequisites of tests: the servers, tools and addresses a test needs that the repository does
//! not hold, and one decision for all of them when one is missing.
//!
//! - Under `METAMCP_CI=1` a missing prerequisite fails the test, with what is missing and how
//!   `scripts/setup.sh` (or `.ci/run`) provides it. Docker is the one exception: CI machines
//!   have no `docker compose`, so its tests skip there too.
//! - Elsewhere the test is skipped with one standard line, `SKIP <test> [<prerequisite>]: <what
//!   is missing>; <how to provide it>`, written straight to stderr (past libtest's output
//!   capture, so a passing test still shows it) and appended to the file `METAMCP_SKIP_LOG`
//!   names, from which `.ci/run` counts the skipped tests.
//!
//! The finders return what a test needs (`Option`), having already decided: `let Some(promtool)
//! = prereq::promtool() else { return };`.
//!
//! The integration tests and the gateway's unit tests (`crate::test_prereq` in `src/lib.rs`) both
//! use this module, so both decide the same way.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `1` turns a missing prerequisite into a failure.
pub const CI_VAR: &str = "METAMCP_CI";
/// A file each skip appends its line to (`.ci/run` sets it and counts the lines).
pub const SKIP_LOG_VAR: &str = "METAMCP_SKIP_LOG";
/// The PostgreSQL server the PostgreSQL tests create their databases on.
pub const POSTGRES_URL_VAR: &str = "METAMCP_TEST_POSTGRES_URL";
/// Where the PostgreSQL server binaries are looked for (`<version>/bin`).
pub const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";
/// The virtual environment holding the Python MCP SDK, relative to the repository root.
pub const PYTHON_VENV: &str = ".venv";

/// Everything a test may need that the repository does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prerequisite {
    /// A PostgreSQL server named by `METAMCP_TEST_POSTGRES_URL`.
    PostgresUrl,
    /// `initdb` and `pg_ctl` under `/usr/lib/postgresql/*/bin`, for a private server.
    PostgresServer,
    /// Prometheus's `promtool`.
    Promtool,
    /// The Prometheus server (`prometheus`).
    PrometheusServer,
    /// A headless Chromium.
    Chromium,
    /// The Python MCP SDK (`mcp`) in the repository's virtual environment.
    PythonMcpSdk,
    /// An address of this machine that is not loopback.
    NonLoopbackAddress,
    /// `bash`.
    Bash,
    /// The docker CLI with its compose plugin.
    DockerCompose,
}

impl Prerequisite {
    /// The short name in a skip line's brackets.
    pub fn name(self) -> &'static str {
        match self {
            Prerequisite::PostgresUrl => "postgres-url",
            Prerequisite::PostgresServer => "postgres-server",
            Prerequisite::Promtool => "promtool",
            Prerequisite::PrometheusServer => "prometheus",
            Prerequisite::Chromium => "chromium",
            Prerequisite::PythonMcpSdk => "python-mcp-sdk",
            Prerequisite::NonLoopbackAddress => "non-loopback-address",
            Prerequisite::Bash => "bash",
            Prerequisite::DockerCompose => "docker",
        }
    }

    /// What is missing.
    pub fn missing(self) -> &'static str {
        match self {
            Prerequisite::PostgresUrl => "METAMCP_TEST_POSTGRES_URL is not set",
            Prerequisite::PostgresServer => {
                "no PostgreSQL server binaries (initdb and pg_ctl) under /usr/lib/postgresql/*/bin"
            }
            Prerequisite::Promtool => "promtool is not on PATH",
            Prerequisite::PrometheusServer => "the Prometheus server (prometheus) is not on PATH",
            Prerequisite::Chromium => "chromium is not on PATH",
            Prerequisite::PythonMcpSdk => "no Python with the MCP SDK (package `mcp`) in .venv",
            Prerequisite::NonLoopbackAddress => "this machine has no non-loopback address to connect from",
            Prerequisite::Bash => "bash is not on PATH",
            Prerequisite::DockerCompose => "`docker compose` is not available (no docker CLI or no compose plugin)",
        }
    }

    /// How to provide it.
    pub fn remedy(self) -> &'static str {
        match self {
            Prerequisite::PostgresUrl => {
                "point it at a PostgreSQL server with trust authentication, e.g. \
                 postgres://postgres@127.0.0.1:5432/test (.ci/run sets it; scripts/setup.sh installs \
                 the Debian package `postgresql`)"
            }
            Prerequisite::PostgresServer => "scripts/setup.sh installs them (Debian package `postgresql`)",
            Prerequisite::Promtool | Prerequisite::PrometheusServer => {
                "scripts/setup.sh installs it (Debian package `prometheus`)"
            }
            Prerequisite::Chromium => "scripts/setup.sh installs it (Debian package `chromium`)",
            Prerequisite::PythonMcpSdk => {
                "scripts/setup.sh creates the virtual environment .venv and installs `mcp` into it"
            }
            Prerequisite::NonLoopbackAddress => {
                "give the machine a network interface with an address other than 127.0.0.0/8 and ::1 \
                 (scripts/setup.sh cannot)"
            }
            Prerequisite::Bash => "install the Debian package `bash` (scripts/setup.sh itself runs under bash)",
            Prerequisite::DockerCompose => {
                "install docker with its compose plugin; CI skips these tests too (the documented exception)"
            }
        }
    }

    /// Whether a missing one fails the test under `METAMCP_CI=1`: all but docker.
    pub fn required_in_ci(self) -> bool {
        self != Prerequisite::DockerCompose
    }
}

/// True when `METAMCP_CI` is `1`.
pub fn in_ci() -> bool {
    std::env::var(CI_VAR).is_ok_and(|v| v == "1")
}

/// The running test's name: libtest names each test's thread after it.
pub fn current_test() -> String {
    std::thread::current().name().unwrap_or("an unnamed test thread").to_owned()
}

/// What is missing and how to provide it.
pub fn reason(prerequisite: Prerequisite) -> String {
    format!("{}; {}", prerequisite.missing(), prerequisite.remedy())
}

/// The skip line of `test` for a missing `prerequisite`.
pub fn skip_line(test: &str, prerequisite: Prerequisite) -> String {
    format!("SKIP {test} [{}]: {}", prerequisite.name(), reason(prerequisite))
}

/// The decision for a missing `prerequisite`: under `METAMCP_CI=1` a panic naming what is missing
/// and how it is provided (docker excepted); otherwise the skip line, on stderr and in the skip
/// log.
pub fn skip_or_fail(prerequisite: Prerequisite) {
    let test = current_test();
    if in_ci() && prerequisite.required_in_ci() {
        panic!(
            "{test} cannot run under {CI_VAR}=1, a prerequisite is missing [{}]: {}",
            prerequisite.name(),
            reason(prerequisite)
        );
    }
    let line = skip_line(&test, prerequisite);
    // Straight to the stream: libtest captures `eprintln!` of passing tests, not this.
    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR).filter(|p| !p.is_empty()) {
        // One write of one line: appends of concurrent tests do not interleave.
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(mut log) => {
                if let Err(err) = log.write_all(format!("{line}\n").as_bytes()) {
                    panic!("cannot append to {SKIP_LOG_VAR}={}: {err}", Path::new(&path).display());
                }
            }
            Err(err) => panic!("cannot open {SKIP_LOG_VAR}={}: {err}", Path::new(&path).display()),
        }
    }
}

/// `found`, or `None` after [`skip_or_fail`] decided.
pub fn require<T>(prerequisite: Prerequisite, found: Option<T>) -> Option<T> {
    if found.is_none() {
        skip_or_fail(prerequisite);
    }
    found
}

/// The first executable named `name` on `PATH`.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The PostgreSQL server URL the PostgreSQL tests use (`METAMCP_TEST_POSTGRES_URL`).
pub fn postgres_url() -> Option<String> {
    require(Prerequisite::PostgresUrl, std::env::var(POSTGRES_URL_VAR).ok().filter(|url| !url.trim().is_empty()))
}

/// The newest installed PostgreSQL server binaries (`initdb`, `pg_ctl`): their directory.
pub fn postgres_server_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(POSTGRES_LIB_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().unwrap_or(0);
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    require(Prerequisite::PostgresServer, found.pop().map(|(_, bin)| bin))
}

/// promtool.
pub fn promtool() -> Option<PathBuf> {
    require(Prerequisite::Promtool, find_executable("promtool"))
}

/// The Prometheus server binary.
pub fn prometheus() -> Option<PathBuf> {
    require(Prerequisite::PrometheusServer, find_executable("prometheus"))
}

/// A headless-capable Chromium.
pub fn chromium() -> Option<PathBuf> {
    require(Prerequisite::Chromium, find_executable("chromium"))
}

/// bash.
pub fn bash() -> Option<PathBuf> {
    require(Prerequisite::Bash, find_executable("bash"))
}

/// The Python interpreter of the virtual environment that holds the MCP SDK.
pub fn python_mcp_sdk() -> Option<PathBuf> {
    let python = crate::repo_root().join(PYTHON_VENV).join("bin").join("python3");
    let importable = python.is_file()
        && Command::new(&python)
            .args(["-c", "import mcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    require(Prerequisite::PythonMcpSdk, importable.then_some(python))
}

/// An address of this machine that is not loopback: the source address of a route off the
/// machine (nothing is sent).
pub fn non_loopback_ip() -> Option<IpAddr> {
    let found = (|| {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect("192.0.2.1:9").ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })();
    require(Prerequisite::NonLoopbackAddress, found)
}

/// `docker` when the CLI and its compose plugin are installed (no engine needed).
pub fn docker_compose() -> Option<PathBuf> {
    let found = find_executable("docker").filter(|docker| {
        Command::new(docker)
            .args(["compose", "version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    require(Prerequisite::DockerCompose, found)
}
