//! The gateway's settings: the telemetry's sections (the library's
//! [`Settings`](metamcp_telemetry::settings::Settings), reached through `Deref`) and the gateway's
//! own — `[database]`, `[admin]`, `[gateway]`, `[audit]` and `[vector]` — in one document with
//! one file format, read from the same layers, and the command line of the binary.
//!
//! Later layers win: built-in defaults < `config/default.toml` < `config/{METAMCP_ENV}.toml` <
//! `--config FILE` < environment < command-line flags. `docs/configuration.md` is the reference
//! of every key; a test keeps it and `config/default.toml` in step with [`Settings`].

mod cli;
#[cfg(test)]
mod tests;

use std::ops::{Deref, DerefMut};

use metamcp_telemetry::settings::env::{alias, Alias, Conversion};
use metamcp_telemetry::settings::{self as telemetry, Document};
use metamcp_telemetry_actors::{
    ConfigError, ExporterConfig, HealthConfig, MetricsConfig, SamplingConfig, SpanBufferConfig, SpanLimitsConfig,
    SpoolConfig,
};
use serde::{Deserialize, Serialize};

pub use crate::config::{
    AdminSettings, AuditSettings, DatabaseSettings, EmbedderKind, GatewaySettings, RetentionSettings, VectorSettings,
};
pub use metamcp_telemetry::settings::{
    LogFormat, LoggingSettings, LogsSettings, Origin, ProcessEnv, PrometheusSettings, Sampler, ServerSettings,
    SettingsError, Strings, TelemetrySettings, CONFIG_DIR_ENV, DEFAULT_BIND, DEFAULT_CONFIG_DIR, DEFAULT_SERVICE_NAME,
    ENVIRONMENT_ENV, ENV_PREFIX, MASK,
};

/// The gateway's aliases, after the library's: the database URL as most database tools name it.
const ALIASES: &[Alias] = &[alias("DATABASE_URL", "database.url", Conversion::Typed)];

/// Every setting of the service: the telemetry's sections (`settings.exporter`,
/// `settings.telemetry`, … through `Deref`) and the gateway's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "Sections", into = "Sections")]
pub struct Settings {
    /// The telemetry's sections, as the library takes them.
    pub telemetry_settings: telemetry::Settings,
    /// The gateway's database (`[database]`).
    pub database: DatabaseSettings,
    /// The REST admin API (`[admin]`).
    pub admin: AdminSettings,
    /// The MCP endpoints and upstream calls (`[gateway]`).
    pub gateway: GatewaySettings,
    /// The audit log of tool calls and its retention (`[audit]`).
    pub audit: AuditSettings,
    /// The tools registry's vector search (`[vector]`).
    pub vector: VectorSettings,
}

impl Deref for Settings {
    type Target = telemetry::Settings;

    fn deref(&self) -> &telemetry::Settings {
        &self.telemetry_settings
    }
}

impl DerefMut for Settings {
    fn deref_mut(&mut self) -> &mut telemetry::Settings {
        &mut self.telemetry_settings
    }
}

/// The file format: one table per section, the telemetry's first, in this order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Sections {
    telemetry: TelemetrySettings,
    server: ServerSettings,
    prometheus: PrometheusSettings,
    logging: LoggingSettings,
    logs: LogsSettings,
    exporter: ExporterConfig,
    span_buffer: SpanBufferConfig,
    span_limits: SpanLimitsConfig,
    metrics: MetricsConfig,
    health: HealthConfig,
    spool: SpoolConfig,
    sampling: SamplingConfig,
    database: DatabaseSettings,
    admin: AdminSettings,
    gateway: GatewaySettings,
    audit: AuditSettings,
    vector: VectorSettings,
}

impl From<Sections> for Settings {
    fn from(s: Sections) -> Settings {
        Settings {
            telemetry_settings: telemetry::Settings {
                telemetry: s.telemetry,
                server: s.server,
                prometheus: s.prometheus,
                logging: s.logging,
                logs: s.logs,
                exporter: s.exporter,
                span_buffer: s.span_buffer,
                span_limits: s.span_limits,
                metrics: s.metrics,
                health: s.health,
                spool: s.spool,
                sampling: s.sampling,
            },
            database: s.database,
            admin: s.admin,
            gateway: s.gateway,
            audit: s.audit,
            vector: s.vector,
        }
    }
}

impl From<Settings> for Sections {
    fn from(settings: Settings) -> Sections {
        let t = settings.telemetry_settings;
        Sections {
            telemetry: t.telemetry,
            server: t.server,
            prometheus: t.prometheus,
            logging: t.logging,
            logs: t.logs,
            exporter: t.exporter,
            span_buffer: t.span_buffer,
            span_limits: t.span_limits,
            metrics: t.metrics,
            health: t.health,
            spool: t.spool,
            sampling: t.sampling,
            database: settings.database,
            admin: settings.admin,
            gateway: settings.gateway,
            audit: settings.audit,
            vector: settings.vector,
        }
    }
}

impl Document for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        Settings::validate(self)
    }

    fn mask_secrets(&mut self) {
        self.telemetry_settings.mask_secrets();
        for secret in [&mut self.admin.token, &mut self.vector.openai_api_key] {
            if !secret.is_empty() {
                *secret = MASK.to_owned();
            }
        }
        for url in [&mut self.database.url, &mut self.vector.openai_url] {
            *url = metamcp_telemetry::redact::redact(url).into_owned();
        }
    }

    fn exporter_mut(&mut self) -> &mut ExporterConfig {
        &mut self.telemetry_settings.exporter
    }

    fn aliases() -> &'static [Alias] {
        ALIASES
    }
}

impl Settings {
    /// Checks every section: ranges, cross-field rules and the forms of addresses and filters.
    /// The error names the dotted key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.telemetry_settings.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.gateway.validate()?;
        self.audit.validate()?;
        self.vector.validate()
    }

    /// Settings from the built-in defaults, the configuration files and the environment `env`,
    /// without command-line flags.
    pub fn from_env(env: &dyn Strings) -> Result<Settings, SettingsError> {
        let no_flags: [&str; 1] = [cli::BINARY_NAME];
        load(no_flags, env).map(|loaded| loaded.settings)
    }

    /// The settings as TOML, with secrets (the values of `exporter.headers`, `admin.token`,
    /// `prometheus.bearer_token`, `vector.openai_api_key`, and the user information and
    /// credential-like query values of every URL) shown as `"***"`.
    pub fn to_masked_toml(&self) -> String {
        telemetry::masked_toml(self)
    }
}

/// The outcome of [`load`]: the effective settings and what the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The effective, validated settings.
    pub settings: Settings,
    /// `--check-config` was given: print the settings (masked) and exit instead of serving.
    pub check_config: bool,
}

/// Loads the settings from the process's command line and environment.
pub fn from_process() -> Result<Loaded, SettingsError> {
    load(std::env::args_os(), &ProcessEnv)
}

/// Loads the settings from the command line `args` (the first item is the program name) and the
/// environment `env`, reading the configuration files the environment and the flags point to.
pub fn load<I, T>(args: I, env: &dyn Strings) -> Result<Loaded, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = cli::Cli::parse_args(args)?;
    let settings = telemetry::load_document(env, cli.config.as_deref(), |schema| cli.assignments(schema))?;
    Ok(Loaded { settings, check_config: cli.check_config })
}
