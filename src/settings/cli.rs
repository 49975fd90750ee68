//! The command line: the top layer of the settings. Values are taken as strings and typed like
//! environment values, so an error names the key (`server.bind`) and the flag it came from.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::Parser;

use super::{Origin, SettingsError};
use metamcp_telemetry::settings::layer::{Assignment, Schema};

/// The binary's name, as shown in usage lines.
pub(crate) const BINARY_NAME: &str = "metamcp-telemetry";

/// The first line of `--help`: what the service is for, as it has always read.
const ABOUT: &str =
    "Traces, metrics and correlated logs for MetaMCP endpoints on actix-web, through an actor pipeline.";

const AFTER_HELP: &str = "\
Settings are layered, later wins: built-in defaults < config/default.toml < config/{METAMCP_ENV}.toml
< --config FILE < environment (OTEL_* < TELEMETRY_ENABLED, OTLP_*, PROMETHEUS_METRICS_PORT < METAMCP_*)
< command-line flags (named flags < --set). The configuration directory is ./config, or
METAMCP_CONFIG_DIR. Every key can be set with METAMCP_<SECTION>__<KEY>, for example
METAMCP_EXPORTER__RETRY__MAX_INTERVAL=45s. See docs/configuration.md for every key.";

/// Traces, metrics and correlated logs for MetaMCP endpoints on actix-web.
#[derive(Debug, Clone, Parser)]
#[command(name = BINARY_NAME, version, about = ABOUT, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Read this TOML file after config/default.toml and config/{METAMCP_ENV}.toml; the
    /// environment and flags still override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective settings as TOML (secret header values shown as "***") and exit.
    #[arg(long)]
    pub(crate) check_config: bool,
    /// Address and port of the HTTP server, e.g. 0.0.0.0:8000 [key: server.bind].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Port of the Prometheus /metrics listener; 0 picks a free port [key: prometheus.port].
    #[arg(long, value_name = "PORT")]
    metrics_port: Option<String>,
    /// IP address of the Prometheus /metrics listener, e.g. 0.0.0.0 [key: prometheus.bind].
    #[arg(long, value_name = "IP")]
    metrics_bind: Option<String>,
    /// OTLP collector endpoint, e.g. http://collector:4317 [key: exporter.endpoint].
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// OTLP transport: grpc or http/protobuf [key: exporter.protocol].
    #[arg(long, value_name = "grpc|http/protobuf")]
    otlp_protocol: Option<String>,
    /// Log filter in RUST_LOG syntax, e.g. info or warn,metamcp_telemetry=debug [key: logging.level].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log line format: auto (pretty on a terminal, json otherwise), json or pretty [key: logging.format].
    #[arg(long, value_name = "auto|json|pretty")]
    log_format: Option<String>,
    /// Record and export no telemetry [key: telemetry.enabled = false].
    #[arg(long)]
    disable_telemetry: bool,
    /// Set any key, e.g. --set span_buffer.max_batch_size=1024 or
    /// --set exporter.headers.x-api-key=secret; repeatable, applied after the other flags.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl Cli {
    /// Parses `args` (the first item is the program name). `--help` and `--version` come back as
    /// [`SettingsError::Help`] and [`SettingsError::Version`].
    pub(crate) fn parse_args<I, T>(args: I) -> Result<Cli, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args).map_err(|err| {
            let text = err.render().to_string();
            match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    SettingsError::Help(text)
                }
                ErrorKind::DisplayVersion => SettingsError::Version(text),
                _ => SettingsError::Usage(text),
            }
        })
    }

    /// The flags' assignments: the named flags first, then every `--set` in order.
    pub(crate) fn assignments(&self, schema: &Schema) -> Result<Vec<Assignment>, SettingsError> {
        let disable = self.disable_telemetry.then(|| "false".to_owned());
        let named = [
            ("--bind", "server.bind", &self.bind),
            ("--metrics-port", "prometheus.port", &self.metrics_port),
            ("--metrics-bind", "prometheus.bind", &self.metrics_bind),
            ("--otlp-endpoint", "exporter.endpoint", &self.otlp_endpoint),
            ("--otlp-protocol", "exporter.protocol", &self.otlp_protocol),
            ("--log-level", "logging.level", &self.log_level),
            ("--log-format", "logging.format", &self.log_format),
            ("--disable-telemetry", "telemetry.enabled", &disable),
        ];
        let mut out = Vec::new();
        for (flag, key, value) in named {
            if let Some(value) = value {
                out.extend(schema.assign_dotted(key, value, &Origin::Flag(flag.to_owned()))?);
            }
        }
        for item in &self.set {
            let Some((key, value)) = item.split_once('=') else {
                return Err(SettingsError::Invalid {
                    key: item.clone(),
                    value: String::new(),
                    allowed: "KEY=VALUE with a dotted key, such as server.workers=4".to_owned(),
                    origin: Origin::Flag("--set".to_owned()),
                });
            };
            let key = key.trim();
            let origin = Origin::Flag(format!("--set {key}"));
            out.extend(schema.assign_dotted(key, value, &origin)?);
        }
        Ok(out)
    }
}
