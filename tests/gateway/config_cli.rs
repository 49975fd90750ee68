//! The real binary's configuration behaviour, as an operator sees it: invalid settings stop
//! start-up with exit status 2 and a message naming the key and where the value came from;
//! `--check-config` prints the effective settings with secrets masked; `--help` lists every flag.
//!
//! Each child runs with a cleared environment in a temporary working directory (so no stray
//! `config/` or `OTEL_*` variable leaks in) and is killed if it has not exited within 30 s.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metamcp_gateway::settings::Settings;

const BIN: &str = env!("CARGO_BIN_EXE_metamcp-telemetry");
const DEADLINE: Duration = Duration::from_secs(30);

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary in `dir` with exactly `env` and `args`, bounded by [`DEADLINE`].
fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn metamcp-telemetry");
    let mut stdout = child.stdout.take().expect("stdout pipe");
    let mut stderr = child.stderr.take().expect("stderr pipe");
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let outcome = Outcome {
        code: status.and_then(|status| status.code()),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(status.is_some(), "{args:?} with {env:?} did not exit within {DEADLINE:?}; stderr: {}", outcome.stderr);
    outcome
}

fn shipped_config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

struct Invalid {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    /// Contents of a file passed as `--config FILE` (`{config}` in `args` is its path).
    config_file: Option<&'static str>,
    /// Every one of these must appear on stderr: the key, and where the value came from.
    stderr: &'static [&'static str],
}

const INVALID: &[Invalid] = &[
    Invalid {
        name: "bad duration",
        env: &[("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "10")],
        args: &[],
        config_file: None,
        stderr: &["span_buffer.flush_interval", "\"10\"", "500ms", "env METAMCP_SPAN_BUFFER__FLUSH_INTERVAL"],
    },
    Invalid {
        name: "out-of-range batch size",
        env: &[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0")],
        args: &[],
        config_file: None,
        stderr: &["span_buffer.max_batch_size", "an integer from 1 to", "env OTEL_BSP_MAX_EXPORT_BATCH_SIZE"],
    },
    Invalid {
        name: "batch larger than the queue",
        env: &[("OTEL_BSP_MAX_QUEUE_SIZE", "100"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "200")],
        args: &[],
        config_file: None,
        stderr: &["span_buffer.max_batch_size", "200", "at most span_buffer.queue_capacity (100)"],
    },
    Invalid {
        name: "unknown METAMCP_ variable",
        env: &[("METAMCP_EXPORTER__ENDPIONT", "http://x:4317")],
        args: &[],
        config_file: None,
        stderr: &["unknown key", "exporter.endpiont", "METAMCP_EXPORTER__ENDPIONT", "exporter.endpoint"],
    },
    Invalid {
        name: "unknown key in a --config file",
        env: &[],
        args: &["--config", "{config}"],
        config_file: Some("[exporter.retry]\nmax_intervall = \"5s\"\n"),
        stderr: &["unknown key", "exporter.retry.max_intervall", "--config", "extra.toml"],
    },
    Invalid {
        name: "bad protocol flag",
        env: &[],
        args: &["--otlp-protocol", "udp"],
        config_file: None,
        stderr: &["exporter.protocol", "\"udp\"", "http/protobuf", "flag --otlp-protocol"],
    },
    Invalid {
        name: "bad port string",
        env: &[("PROMETHEUS_METRICS_PORT", "ninety")],
        args: &[],
        config_file: None,
        stderr: &["prometheus.port", "\"ninety\"", "an integer", "env PROMETHEUS_METRICS_PORT"],
    },
    Invalid {
        name: "port out of range",
        env: &[],
        args: &["--metrics-port", "70000"],
        config_file: None,
        stderr: &["prometheus.port", "70000", "0 to 65535", "flag --metrics-port"],
    },
    Invalid {
        name: "bad bind address",
        env: &[],
        args: &["--bind", "localhost:8000"],
        config_file: None,
        stderr: &["server.bind", "\"localhost:8000\"", "an IP address and port", "flag --bind"],
    },
    Invalid {
        name: "sampler_arg 2.0",
        env: &[("OTEL_TRACES_SAMPLER_ARG", "2.0")],
        args: &[],
        config_file: None,
        stderr: &["telemetry.sampler_arg", "0.0 to 1.0", "env OTEL_TRACES_SAMPLER_ARG"],
    },
    Invalid {
        name: "bad TELEMETRY_ENABLED",
        env: &[("TELEMETRY_ENABLED", "maybe")],
        args: &[],
        config_file: None,
        stderr: &["telemetry.enabled", "\"maybe\"", "yes or no", "env TELEMETRY_ENABLED"],
    },
    Invalid {
        name: "http/json protocol",
        env: &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        args: &[],
        config_file: None,
        stderr: &["exporter.protocol", "http/json is not supported", "env OTEL_EXPORTER_OTLP_PROTOCOL"],
    },
    Invalid {
        name: "METAMCP_ENV without its file",
        env: &[("METAMCP_ENV", "staging")],
        args: &[],
        config_file: None,
        stderr: &["METAMCP_ENV", "staging.toml", "does not exist"],
    },
    Invalid {
        name: "type mismatch in a --config file",
        env: &[],
        args: &["--config", "{config}"],
        config_file: Some("[server]\nworkers = \"four\"\n"),
        stderr: &["server.workers", "\"four\"", "--config", "extra.toml"],
    },
    Invalid {
        name: "invalid TOML in a --config file",
        env: &[],
        args: &["--config", "{config}"],
        config_file: Some("[server\n"),
        stderr: &["extra.toml", "not valid TOML"],
    },
    Invalid {
        name: "bad log level",
        env: &[("RUST_LOG", "info,[=")],
        args: &[],
        config_file: None,
        stderr: &["logging.level", "RUST_LOG syntax", "env RUST_LOG"],
    },
    Invalid {
        name: "unknown --set key",
        env: &[],
        args: &["--set", "exporter.retries=3"],
        config_file: None,
        stderr: &["unknown key", "exporter.retries", "flag --set exporter.retries"],
    },
    Invalid {
        name: "unknown flag",
        env: &[],
        args: &["--metrics-prot", "1"],
        config_file: None,
        stderr: &["--metrics-prot", "--metrics-port"],
    },
];

#[test]
fn invalid_settings_exit_2_naming_the_key_and_origin() {
    assert!(INVALID.len() >= 10);
    for case in INVALID {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("extra.toml");
        if let Some(text) = case.config_file {
            std::fs::write(&config, text).expect("write config file");
        }
        let config = config.display().to_string();
        let args: Vec<&str> =
            case.args.iter().map(|arg| if *arg == "{config}" { config.as_str() } else { arg }).collect();
        let outcome = run(dir.path(), case.env, &args);
        assert_eq!(outcome.code, Some(2), "{}: stderr: {}", case.name, outcome.stderr);
        assert!(outcome.stderr.starts_with("error"), "{}: stderr: {}", case.name, outcome.stderr);
        for part in case.stderr {
            assert!(outcome.stderr.contains(part), "{}: stderr lacks {part:?}: {}", case.name, outcome.stderr);
        }
        assert!(outcome.stdout.is_empty(), "{}: stdout: {}", case.name, outcome.stdout);
    }
}

#[test]
fn check_config_prints_masked_effective_settings_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outcome = run(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=supersecret,authorization=Bearer%20tok"),
            ("OTEL_SERVICE_NAME", "checked"),
            ("METAMCP_SERVER__WORKERS", "3"),
        ],
        &["--check-config", "--metrics-port", "9100"],
    );
    assert_eq!(outcome.code, Some(0), "stderr: {}", outcome.stderr);
    assert!(!outcome.stdout.contains("supersecret"), "{}", outcome.stdout);
    assert!(!outcome.stdout.contains("Bearer"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("x-api-key = \"***\""), "{}", outcome.stdout);

    let settings: Settings = toml::from_str(&outcome.stdout).expect("--check-config prints Settings as TOML");
    assert_eq!(settings.telemetry.service_name, "checked");
    assert_eq!(settings.server.workers, 3);
    assert_eq!(settings.prometheus.port, 9100);
    assert_eq!(settings.exporter.headers.get("authorization").map(String::as_str), Some("***"));
}

#[test]
fn check_config_reads_config_relative_to_the_working_directory_and_metamcp_env() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    std::fs::write(dir.path().join("config/default.toml"), "[server]\nworkers = 5\n").expect("write");
    let outcome = run(dir.path(), &[], &["--check-config"]);
    assert_eq!(outcome.code, Some(0), "stderr: {}", outcome.stderr);
    let settings: Settings = toml::from_str(&outcome.stdout).expect("TOML");
    assert_eq!(settings.server.workers, 5);

    let shipped = shipped_config_dir().display().to_string();
    let outcome =
        run(dir.path(), &[("METAMCP_CONFIG_DIR", &shipped), ("METAMCP_ENV", "development")], &["--check-config"]);
    assert_eq!(outcome.code, Some(0), "stderr: {}", outcome.stderr);
    let settings: Settings = toml::from_str(&outcome.stdout).expect("TOML");
    assert_eq!(settings.logging.level, "debug");
    assert_eq!(settings.server.workers, 0, "the shipped config, not ./config, was read");
    assert!(outcome.stdout.contains("format = \"pretty\""), "{}", outcome.stdout);
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outcome = run(dir.path(), &[], &["--help"]);
    assert_eq!(outcome.code, Some(0), "stderr: {}", outcome.stderr);
    for flag in [
        "--config <FILE>",
        "--check-config",
        "--bind <ADDR>",
        "--metrics-port <PORT>",
        "--metrics-bind <IP>",
        "--otlp-endpoint <URL>",
        "--otlp-protocol <grpc|http/protobuf>",
        "--log-level <LEVEL>",
        "--log-format <auto|json|pretty>",
        "--disable-telemetry",
        "--set <KEY=VALUE>",
        "--version",
        "--help",
    ] {
        assert!(outcome.stdout.contains(flag), "--help lacks {flag}:\n{}", outcome.stdout);
    }
    assert!(outcome.stdout.contains("METAMCP_"), "{}", outcome.stdout);

    let outcome = run(dir.path(), &[], &["--version"]);
    assert_eq!(outcome.code, Some(0), "stderr: {}", outcome.stderr);
    assert!(outcome.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", outcome.stdout);
}
