//! Settings of the service: typed sections, their defaults and validation, and the layers they
//! are read from.
//!
//! Later layers win: built-in defaults < `config/default.toml` < `config/{METAMCP_ENV}.toml` <
//! `--config FILE` < environment < command-line flags. An application adds sections of its own
//! beside these by loading its own [`Document`] with [`load_document`] (the MetaMCP gateway does). The environment is read through one seam,
//! [`Strings`]: the process environment in production ([`ProcessEnv`]), a map in tests. Every
//! error names the dotted key, the value, what is allowed and the layer the value came from.
//! `docs/configuration.md` is the reference of every key; a test keeps it and
//! `config/default.toml` in step with [`Settings`].

pub mod env;
mod error;
pub mod layer;
mod logs;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use metamcp_telemetry_actors::exporter::config::{DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT};
use metamcp_telemetry_actors::{
    ConfigError, ExporterConfig, HealthConfig, MetricsConfig, Protocol, SamplingConfig, SpanBufferConfig,
    SpanLimitsConfig, SpoolConfig,
};
use serde::{Deserialize, Serialize};

use crate::redact::redact;

pub use env::{ProcessEnv, Strings};
pub use error::{Origin, SettingsError};
pub use logs::{LogsSettings, DEFAULT_LOGS_LEVEL};

/// Default `telemetry.service_name` (the OpenTelemetry `service.name` resource attribute).
pub const DEFAULT_SERVICE_NAME: &str = "metamcp-telemetry";
/// Default `telemetry.sampler_arg`: sample every trace.
pub const DEFAULT_SAMPLER_ARG: f64 = 1.0;
/// Default `server.bind`.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000);
/// Default `server.workers`: 0 starts one worker per CPU core.
pub const DEFAULT_WORKERS: usize = 0;
/// Largest accepted `server.workers`.
pub const MAX_WORKERS: usize = 256;
/// Default `server.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest accepted `server.shutdown_timeout`.
pub const MIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(1);
/// Longest accepted `server.shutdown_timeout`.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `server.client_request_timeout`.
pub const DEFAULT_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest accepted `server.client_request_timeout`.
pub const MIN_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest accepted `server.client_request_timeout`.
pub const MAX_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `prometheus.bind`.
pub const DEFAULT_PROMETHEUS_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Default `prometheus.port` (the OpenTelemetry Prometheus exporter's port).
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9464;
/// Default `logging.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Directory of the configuration files, relative to the working directory.
pub const DEFAULT_CONFIG_DIR: &str = "config";
/// Environment variable that overrides [`DEFAULT_CONFIG_DIR`].
pub const CONFIG_DIR_ENV: &str = "METAMCP_CONFIG_DIR";
/// Environment variable naming the overlay file `config/{METAMCP_ENV}.toml`.
pub const ENVIRONMENT_ENV: &str = "METAMCP_ENV";
/// Prefix of the environment variables that set one key each (`METAMCP_<SECTION>__<KEY>`).
pub const ENV_PREFIX: &str = "METAMCP_";
/// What `--check-config` shows instead of a secret value.
pub const MASK: &str = crate::redact::MASK;

/// Every setting of the telemetry, one field per section of the TOML files.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Whether and how traces are recorded (`[telemetry]`).
    pub telemetry: TelemetrySettings,
    /// The HTTP server (`[server]`).
    pub server: ServerSettings,
    /// The Prometheus scrape endpoint (`[prometheus]`).
    pub prometheus: PrometheusSettings,
    /// The service's own log output (`[logging]`).
    pub logging: LoggingSettings,
    /// Log events as OTLP log records, and the access records (`[logs]`).
    pub logs: LogsSettings,
    /// Where and how OTLP is sent (`[exporter]`, `[exporter.retry]`).
    pub exporter: ExporterConfig,
    /// Span queue and batching (`[span_buffer]`).
    pub span_buffer: SpanBufferConfig,
    /// Attribute, event and link limits of every span (`[span_limits]`).
    pub span_limits: SpanLimitsConfig,
    /// Metric event queue, OTLP metric export and label bounds (`[metrics]`).
    pub metrics: MetricsConfig,
    /// The health check actor (`[health]`).
    pub health: HealthConfig,
    /// The spool where export batches wait while the collector cannot take them (`[spool]`).
    pub spool: SpoolConfig,
    /// Head or tail sampling, and the rules and bounds of tail sampling (`[sampling]`).
    pub sampling: SamplingConfig,
}

/// Whether and how traces are recorded (`[telemetry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Record and export telemetry at all. When false every recording call is a no-op and no
    /// exporter, queue or metrics listener is started.
    pub enabled: bool,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Further resource attributes attached to every span and metric, for example
    /// `deployment.environment = "prod"`.
    pub resource_attributes: BTreeMap<String, String>,
    /// Which traces are sampled, named as in `OTEL_TRACES_SAMPLER`.
    pub sampler: Sampler,
    /// Sampling ratio of the `traceidratio` samplers, from 0.0 to 1.0 (`OTEL_TRACES_SAMPLER_ARG`).
    pub sampler_arg: f64,
    /// Also install the tracer provider as the `opentelemetry::global` provider, so libraries
    /// that use the global tracer are traced too.
    pub install_global: bool,
    /// Request headers recorded on the server span as `http.request.header.<name>` (lowercase
    /// names, values cut to 256 bytes). Credential headers (`authorization`, `cookie`,
    /// `x-api-key`, `mcp-session-id`, …) are refused.
    pub capture_request_headers: Vec<String>,
    /// Pass an incoming W3C `baggage` header on to upstream servers (and set it in
    /// `params._meta`). Off by default: baggage is whatever the caller put there, and it would
    /// travel to every upstream. `traceparent` and `tracestate` always travel.
    pub propagate_baggage: bool,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            resource_attributes: BTreeMap::new(),
            sampler: Sampler::default(),
            sampler_arg: DEFAULT_SAMPLER_ARG,
            install_global: true,
            capture_request_headers: Vec::new(),
            propagate_baggage: false,
        }
    }
}

/// A trace sampler, named as in the OpenTelemetry `OTEL_TRACES_SAMPLER` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Sampler {
    /// Sample every trace (`always_on`).
    #[serde(rename = "always_on")]
    AlwaysOn,
    /// Sample no trace (`always_off`).
    #[serde(rename = "always_off")]
    AlwaysOff,
    /// Sample the ratio `sampler_arg` of traces by trace id (`traceidratio`).
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// Follow the parent's decision; sample every root span (`parentbased_always_on`).
    #[default]
    #[serde(rename = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    /// Follow the parent's decision; sample no root span (`parentbased_always_off`).
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    /// Follow the parent's decision; sample the ratio `sampler_arg` of root spans
    /// (`parentbased_traceidratio`).
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

impl Sampler {
    /// The name used in configuration and in `OTEL_TRACES_SAMPLER`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Sampler::AlwaysOn => "always_on",
            Sampler::AlwaysOff => "always_off",
            Sampler::TraceIdRatio => "traceidratio",
            Sampler::ParentBasedAlwaysOn => "parentbased_always_on",
            Sampler::ParentBasedAlwaysOff => "parentbased_always_off",
            Sampler::ParentBasedTraceIdRatio => "parentbased_traceidratio",
        }
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP server (`[server]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port the HTTP server listens on, for example `0.0.0.0:8000` or `[::]:8000`.
    pub bind: SocketAddr,
    /// Worker threads of the HTTP server; 0 starts one per CPU core. At most 256.
    pub workers: usize,
    /// Time in-flight requests get to finish after a shutdown signal, from 1ms to 10m.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub shutdown_timeout: Duration,
    /// Longest time a client may take to send a request's head, and again its body, from 100ms
    /// to 10m; then the request gets 408 and the connection is closed.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub client_request_timeout: Duration,
    /// Origins (`https://gateway.example.com`) whose browser pages may call the API port, beside
    /// the origins of the bound address itself; a request with any other `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    /// Host names (`gateway.example.com`, `10.0.0.5:8000`) accepted in `Host` beside the loopback
    /// ones where `Host` is restricted: on every route while `admin.token` is empty, and with a
    /// token whenever this list is not empty.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND,
            workers: DEFAULT_WORKERS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            client_request_timeout: DEFAULT_CLIENT_REQUEST_TIMEOUT,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The Prometheus scrape endpoint (`[prometheus]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSettings {
    /// Serve `/metrics` for Prometheus on its own listener.
    pub enabled: bool,
    /// IP address the metrics listener binds to.
    pub bind: IpAddr,
    /// Port of the metrics listener; 0 picks any free port.
    pub port: u16,
    /// Bearer token a scrape must send (`Authorization: Bearer <token>`); empty: no token asked.
    /// Secret: shown as `"***"`.
    pub bearer_token: String,
}

impl fmt::Debug for PrometheusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusSettings")
            .field("enabled", &self.enabled)
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("bearer_token", &if self.bearer_token.is_empty() { "" } else { MASK })
            .finish()
    }
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: DEFAULT_PROMETHEUS_BIND,
            port: DEFAULT_PROMETHEUS_PORT,
            bearer_token: String::new(),
        }
    }
}

impl PrometheusSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.bearer_token.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
            return Err(ConfigError::new(
                "prometheus.bearer_token",
                format!("{MASK:?}"),
                "a token of visible ASCII characters without spaces",
            ));
        }
        Ok(())
    }
}

/// The service's own log output (`[logging]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    /// Log filter in `RUST_LOG` syntax, for example `info` or `warn,metamcp_telemetry=debug`.
    pub level: String,
    /// Line format: `json` (one JSON object per line, with trace and span ids), `pretty`
    /// (human-readable), or `auto`: `pretty` when stdout is a terminal, `json` otherwise.
    pub format: LogFormat,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self { level: DEFAULT_LOG_LEVEL.to_owned(), format: LogFormat::default() }
    }
}

/// Format of the service's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `pretty` when stdout is a terminal, `json` otherwise (`auto`): a developer at a shell
    /// reads lines, a log shipper reading a pipe or a file gets JSON.
    #[default]
    Auto,
    /// One JSON object per line (`json`).
    Json,
    /// Human-readable, multi-line output for development (`pretty`).
    Pretty,
}

impl Settings {
    /// Checks every section: ranges, cross-field rules and the forms of addresses and filters.
    /// The error names the dotted key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.telemetry.validate()?;
        self.server.validate()?;
        self.prometheus.validate()?;
        self.logging.validate()?;
        self.logs.validate()?;
        self.exporter.validate()?;
        self.span_buffer.validate()?;
        self.span_limits.validate()?;
        self.metrics.validate()?;
        self.health.validate()?;
        self.spool.validate()?;
        self.sampling.validate()?;
        self.validate_tail_sampling()
    }

    /// Tail sampling decides from whole traces: the tracer's sampler must record every trace
    /// (`always_on`, or `parentbased_always_on`, which follows a caller's decision).
    fn validate_tail_sampling(&self) -> Result<(), ConfigError> {
        let records_every_trace = matches!(self.telemetry.sampler, Sampler::AlwaysOn | Sampler::ParentBasedAlwaysOn);
        if self.sampling.is_tail() && !records_every_trace {
            return Err(ConfigError::new(
                "telemetry.sampler",
                self.telemetry.sampler.as_str(),
                "\"always_on\" or \"parentbased_always_on\" while sampling.mode = \"tail\" (the tail sampler decides which traces are kept)",
            ));
        }
        Ok(())
    }

    /// Settings from the built-in defaults, the configuration files and the environment `env`.
    pub fn from_env(env: &dyn Strings) -> Result<Settings, SettingsError> {
        load_document(env, None, |_| Ok(Vec::new()))
    }

    /// The settings as TOML, with secrets (the values of `exporter.headers`,
    /// `prometheus.bearer_token`, and the user information and credential-like query values of
    /// every URL, see [`redact`]) shown as `"***"`.
    pub fn to_masked_toml(&self) -> String {
        masked_toml(self)
    }

    /// Replaces every secret of these sections by [`MASK`], and the credentials in URLs.
    pub fn mask_secrets(&mut self) {
        for value in self.exporter.headers.values_mut() {
            *value = MASK.to_owned();
        }
        if !self.prometheus.bearer_token.is_empty() {
            self.prometheus.bearer_token = MASK.to_owned();
        }
        self.exporter.endpoint = redact(&self.exporter.endpoint).into_owned();
    }
}

/// A settings document: the telemetry's sections, or an application's settings that hold them
/// beside sections of its own. [`load_document`] reads one from every layer.
pub trait Document: Serialize + serde::de::DeserializeOwned + Default {
    /// Checks every section; the error names the dotted key.
    fn validate(&self) -> Result<(), ConfigError>;
    /// Replaces every secret by [`MASK`] (for `--check-config`).
    fn mask_secrets(&mut self);
    /// The `[exporter]` section, whose default endpoint follows its protocol.
    fn exporter_mut(&mut self) -> &mut ExporterConfig;
    /// Environment variables that set one of the application's keys under another name, applied
    /// after the library's own aliases and before the `METAMCP_*` variables.
    fn aliases() -> &'static [env::Alias] {
        &[]
    }
    /// Top-level sections of another document that shares the configuration files and the
    /// environment, left alone here: a key under them is neither applied nor refused.
    fn foreign_sections() -> &'static [&'static str] {
        &[]
    }
}

impl Document for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        Settings::validate(self)
    }

    fn mask_secrets(&mut self) {
        Settings::mask_secrets(self);
    }

    fn exporter_mut(&mut self) -> &mut ExporterConfig {
        &mut self.exporter
    }
    /// The MetaMCP gateway's sections: the library shares the gateway's files and environment
    /// (an application may host MetaMCP endpoints beside the gateway's configuration).
    fn foreign_sections() -> &'static [&'static str] {
        GATEWAY_SECTIONS
    }
}

/// The sections of the MetaMCP gateway's settings, which the library reads past.
pub const GATEWAY_SECTIONS: &[&str] = &["database", "admin", "gateway", "audit", "vector"];

/// The document as TOML with its secrets masked, and then every credential-like value in the
/// whole text ([`redact`]).
pub fn masked_toml<D: Document + Clone>(document: &D) -> String {
    let mut masked = document.clone();
    masked.mask_secrets();
    match toml::to_string_pretty(&masked) {
        // The whole text once more: a credential in any other value is masked too.
        Ok(text) => format!(
            "# Effective settings of metamcp-telemetry; secrets are shown as \"{MASK}\".\n{}\n",
            redact(text.trim_end())
        ),
        Err(err) => format!("# the settings could not be rendered as TOML: {err}\n"),
    }
}

impl TelemetrySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::new(
                "telemetry.service_name",
                format!("{:?}", self.service_name),
                "a non-empty name",
            ));
        }
        if let Some(key) = self.resource_attributes.keys().find(|key| key.trim().is_empty()) {
            return Err(ConfigError::new(
                "telemetry.resource_attributes",
                format!("{key:?}"),
                "non-empty attribute names",
            ));
        }
        if !(self.sampler_arg.is_finite() && (0.0..=1.0).contains(&self.sampler_arg)) {
            return Err(ConfigError::new(
                "telemetry.sampler_arg",
                self.sampler_arg.to_string(),
                "a number from 0.0 to 1.0",
            ));
        }
        crate::header_capture::validate_captured_headers(
            "telemetry.capture_request_headers",
            &self.capture_request_headers,
        )
    }
}

impl ServerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::new(
                "server.workers",
                self.workers.to_string(),
                format!("an integer from 0 (one per CPU core) to {MAX_WORKERS}"),
            ));
        }
        if !(MIN_SHUTDOWN_TIMEOUT..=MAX_SHUTDOWN_TIMEOUT).contains(&self.shutdown_timeout) {
            return Err(ConfigError::new(
                "server.shutdown_timeout",
                humantime::format_duration(self.shutdown_timeout).to_string(),
                format!(
                    "a duration from {} to {}",
                    humantime::format_duration(MIN_SHUTDOWN_TIMEOUT),
                    humantime::format_duration(MAX_SHUTDOWN_TIMEOUT)
                ),
            ));
        }
        if !(MIN_CLIENT_REQUEST_TIMEOUT..=MAX_CLIENT_REQUEST_TIMEOUT).contains(&self.client_request_timeout) {
            return Err(ConfigError::new(
                "server.client_request_timeout",
                humantime::format_duration(self.client_request_timeout).to_string(),
                format!(
                    "a duration from {} to {}",
                    humantime::format_duration(MIN_CLIENT_REQUEST_TIMEOUT),
                    humantime::format_duration(MAX_CLIENT_REQUEST_TIMEOUT)
                ),
            ));
        }
        crate::origins::validate_origins("server.allowed_origins", &self.allowed_origins)?;
        crate::origins::validate_hosts("server.allowed_hosts", &self.allowed_hosts)
    }
}

impl LoggingSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level).map(drop).map_err(|err| {
            ConfigError::new(
                "logging.level",
                format!("{:?}", self.level),
                format!("a filter in RUST_LOG syntax such as \"info\" or \"warn,metamcp_telemetry=debug\" ({err})"),
            )
        })
    }
}

/// Loads the document `D` from its layers: the built-in defaults, `config/default.toml`,
/// `config/{METAMCP_ENV}.toml`, the file `config_file` (the `--config` flag), the environment
/// `env`, and last the assignments `flags` makes from the command line with the key schema.
/// The result is validated; every error names the key, the value and the layer it came from.
pub fn load_document<D: Document>(
    env: &dyn Strings,
    config_file: Option<&Path>,
    flags: impl FnOnce(&layer::Schema) -> Result<Vec<layer::Assignment>, SettingsError>,
) -> Result<D, SettingsError> {
    let schema = layer::Schema::of::<D>()?;
    let mut stack = layer::Stack::new(&schema);

    let dir = env
        .get(CONFIG_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR), PathBuf::from);
    let default_file = dir.join("default.toml");
    if let Some(text) = read_optional(&default_file)? {
        stack.apply_file(&text, Origin::File(default_file))?;
    }
    if let Some(name) = env.get(ENVIRONMENT_ENV).filter(|name| !name.is_empty()) {
        let path = environment_file(&dir, &name)?;
        match read_optional(&path)? {
            Some(text) => stack.apply_file(&text, Origin::File(path))?,
            None => return Err(SettingsError::MissingEnvironmentFile { name, path }),
        }
    }
    if let Some(path) = config_file {
        let text =
            std::fs::read_to_string(path).map_err(|source| SettingsError::Io { path: path.to_owned(), source })?;
        stack.apply_file(&text, Origin::ConfigFlag(path.to_owned()))?;
    }
    stack.apply(env::assignments(env, &schema, D::aliases())?);
    stack.apply(flags(&schema)?);

    let mut document: D = stack.deserialize()?;
    let exporter = document.exporter_mut();
    if exporter.protocol == Protocol::HttpProtobuf && exporter.endpoint == DEFAULT_GRPC_ENDPOINT {
        exporter.endpoint = DEFAULT_HTTP_ENDPOINT.to_owned();
    }
    document.validate().map_err(|err| stack.invalid(err.key, err.value, err.allowed))?;
    Ok(document)
}

/// `dir/{name}.toml`, where `name` is a plain file stem (no path separators).
fn environment_file(dir: &Path, name: &str) -> Result<PathBuf, SettingsError> {
    let plain =
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') && !name.starts_with('.');
    if plain {
        Ok(dir.join(format!("{name}.toml")))
    } else {
        Err(SettingsError::Invalid {
            key: ENVIRONMENT_ENV.to_owned(),
            value: format!("{name:?}"),
            allowed: "a name made of letters, digits, '-', '_' and '.', such as \"production\"".to_owned(),
            origin: Origin::Env(ENVIRONMENT_ENV.to_owned()),
        })
    }
}

/// The file's text, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SettingsError::Io { path: path.to_owned(), source }),
    }
}
