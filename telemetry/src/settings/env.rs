//! The environment layer, read through one seam ([`Strings`]): the standard `OTEL_*` variables
//! and `RUST_LOG`, the seed's variables, and `METAMCP_<SECTION>__<KEY>` for every key, in that
//! order of precedence (the most specific wins).

use opentelemetry_otlp as otlp;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::layer::{parse_bool, parse_pairs, Assignment, Schema, BOOL_ALLOWED, PAIRS_ALLOWED};
use super::{Origin, SettingsError, CONFIG_DIR_ENV, ENVIRONMENT_ENV, ENV_PREFIX};

/// A source of named strings: the process environment in production, a map in tests.
pub trait Strings {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
    /// Every name that is set.
    fn keys(&self) -> Vec<String>;
}

/// The process environment (`std::env`). Values that are not UTF-8 are read lossily.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Strings for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|value| value.to_string_lossy().into_owned())
    }

    fn keys(&self) -> Vec<String> {
        std::env::vars_os().filter_map(|(key, _)| key.into_string().ok()).collect()
    }
}

impl<S: BuildHasher> Strings for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }

    fn keys(&self) -> Vec<String> {
        HashMap::keys(self).cloned().collect()
    }
}

impl Strings for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }

    fn keys(&self) -> Vec<String> {
        BTreeMap::keys(self).cloned().collect()
    }
}

/// How an alias variable's value becomes assignments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Typed as the key's default (booleans, integers, numbers, strings, `k=v` maps).
    Typed,
    /// A whole number of milliseconds, for a duration key.
    Millis,
    /// `OTEL_SDK_DISABLED`: true disables telemetry; false leaves it as it is.
    SdkDisabled,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/json` is refused with a clear message.
    OtlpProtocol,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `service.name` goes to `telemetry.service_name`.
    ResourceAttributes,
    /// `OTEL_LOGS_EXPORTER`: `otlp` sets the boolean key, `none` clears it; anything else (the
    /// specification's `console`, a list) is refused naming the variable.
    LogsExporter,
}

/// An environment variable that sets a key under another name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The variable.
    pub var: &'static str,
    /// The dotted key it sets.
    pub key: &'static str,
    /// How its value is read.
    pub conversion: Conversion,
}

/// An alias: `var` sets the dotted `key`, its value read as `conversion` says.
pub const fn alias(var: &'static str, key: &'static str, conversion: Conversion) -> Alias {
    Alias { var, key, conversion }
}

/// The alias variables in the order they are applied: a later one wins over an earlier one for
/// the same key. First the standard OpenTelemetry variables and `RUST_LOG`, then the seed's
/// variables. `METAMCP_*` variables are applied after all of these.
// The OTLP exporter variables are named by opentelemetry-otlp's own constants, so they follow
// the crate the ecosystem configures with.
pub const ALIASES: &[Alias] = &[
    alias("OTEL_SDK_DISABLED", "telemetry.enabled", Conversion::SdkDisabled),
    alias("OTEL_RESOURCE_ATTRIBUTES", "telemetry.resource_attributes", Conversion::ResourceAttributes),
    alias("OTEL_SERVICE_NAME", "telemetry.service_name", Conversion::Typed),
    alias("OTEL_TRACES_SAMPLER", "telemetry.sampler", Conversion::Typed),
    alias("OTEL_TRACES_SAMPLER_ARG", "telemetry.sampler_arg", Conversion::Typed),
    alias(otlp::OTEL_EXPORTER_OTLP_ENDPOINT, "exporter.endpoint", Conversion::Typed),
    alias(otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "exporter.endpoint", Conversion::Typed),
    alias(otlp::OTEL_EXPORTER_OTLP_PROTOCOL, "exporter.protocol", Conversion::OtlpProtocol),
    alias(otlp::OTEL_EXPORTER_OTLP_INSECURE, "exporter.insecure", Conversion::Typed),
    alias(otlp::OTEL_EXPORTER_OTLP_HEADERS, "exporter.headers", Conversion::Typed),
    // One export timeout serves every signal: the log processor's variable is the weakest.
    alias("OTEL_BLRP_EXPORT_TIMEOUT", "exporter.timeout", Conversion::Millis),
    alias("OTEL_BSP_EXPORT_TIMEOUT", "exporter.timeout", Conversion::Millis),
    alias(otlp::OTEL_EXPORTER_OTLP_TIMEOUT, "exporter.timeout", Conversion::Millis),
    alias("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "exporter.max_concurrent_exports", Conversion::Typed),
    alias("OTEL_BSP_SCHEDULE_DELAY", "span_buffer.flush_interval", Conversion::Millis),
    alias("OTEL_BSP_MAX_QUEUE_SIZE", "span_buffer.queue_capacity", Conversion::Typed),
    alias("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "span_buffer.max_batch_size", Conversion::Typed),
    alias("OTEL_LOGS_EXPORTER", "logs.otlp", Conversion::LogsExporter),
    alias("OTEL_BLRP_SCHEDULE_DELAY", "logs.flush_interval", Conversion::Millis),
    alias("OTEL_BLRP_MAX_QUEUE_SIZE", "logs.queue_capacity", Conversion::Typed),
    alias("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "logs.max_batch_size", Conversion::Typed),
    alias("OTEL_METRIC_EXPORT_INTERVAL", "metrics.export_interval", Conversion::Millis),
    alias("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "span_limits.max_attributes_per_span", Conversion::Typed),
    alias("OTEL_SPAN_EVENT_COUNT_LIMIT", "span_limits.max_events_per_span", Conversion::Typed),
    alias("OTEL_SPAN_LINK_COUNT_LIMIT", "span_limits.max_links_per_span", Conversion::Typed),
    alias("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "span_limits.max_attributes_per_event", Conversion::Typed),
    alias("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "span_limits.max_attributes_per_link", Conversion::Typed),
    alias("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "span_limits.max_attribute_value_length", Conversion::Typed),
    alias("RUST_LOG", "logging.level", Conversion::Typed),
    // The seed's variables.
    alias("TELEMETRY_ENABLED", "telemetry.enabled", Conversion::Typed),
    alias("OTLP_ENDPOINT", "exporter.endpoint", Conversion::Typed),
    alias("OTLP_INSECURE", "exporter.insecure", Conversion::Typed),
    alias("PROMETHEUS_METRICS_PORT", "prometheus.port", Conversion::Typed),
];

/// The `METAMCP_*` variable that sets the dotted `key`: `exporter.retry.max_interval` →
/// `METAMCP_EXPORTER__RETRY__MAX_INTERVAL`.
pub fn var_for_key(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The environment layer's assignments, in order of precedence (a later one wins): the library's
/// [`ALIASES`], then the application's `extra` aliases, then every `METAMCP_*` variable.
pub fn assignments(env: &dyn Strings, schema: &Schema, extra: &[Alias]) -> Result<Vec<Assignment>, SettingsError> {
    let mut out = Vec::new();
    for alias in ALIASES.iter().chain(extra) {
        // An empty value counts as unset, as the OpenTelemetry specification asks.
        let Some(raw) = env.get(alias.var).filter(|raw| !raw.trim().is_empty()) else {
            continue;
        };
        out.extend(convert(alias, &raw, schema)?);
    }

    let mut names: Vec<String> = env
        .keys()
        .into_iter()
        .filter(|name| name.starts_with(ENV_PREFIX) && name != ENVIRONMENT_ENV && name != CONFIG_DIR_ENV)
        .collect();
    names.sort();
    for name in names {
        let Some(raw) = env.get(&name) else { continue };
        let segments: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
        if schema.is_foreign(&segments[0]) {
            continue;
        }
        out.extend(schema.assign(&segments, &raw, &Origin::Env(name.clone()))?);
    }
    Ok(out)
}

fn convert(alias: &Alias, raw: &str, schema: &Schema) -> Result<Vec<Assignment>, SettingsError> {
    let origin = Origin::Env(alias.var.to_owned());
    let invalid = |allowed: &str| SettingsError::Invalid {
        key: alias.key.to_owned(),
        value: format!("{raw:?}"),
        allowed: allowed.to_owned(),
        origin: origin.clone(),
    };
    match alias.conversion {
        Conversion::Typed => schema.assign_dotted(alias.key, raw, &origin),
        Conversion::Millis => {
            let millis: u64 =
                raw.trim().parse().map_err(|_| invalid("a whole number of milliseconds, such as 5000"))?;
            schema.assign_dotted(alias.key, &format!("{millis}ms"), &origin)
        }
        Conversion::SdkDisabled => match parse_bool(raw) {
            Some(true) => schema.assign_dotted(alias.key, "false", &origin),
            Some(false) => Ok(Vec::new()),
            None => Err(SettingsError::Invalid {
                key: alias.key.to_owned(),
                value: format!("{raw:?}"),
                allowed: format!("{BOOL_ALLOWED}; true disables telemetry"),
                origin,
            }),
        },
        Conversion::OtlpProtocol => {
            if raw.trim() == otlp::OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_JSON {
                Err(invalid("grpc or http/protobuf (http/json is not supported)"))
            } else {
                schema.assign_dotted(alias.key, raw.trim(), &origin)
            }
        }
        Conversion::LogsExporter => match raw.trim().to_ascii_lowercase().as_str() {
            "otlp" => schema.assign_dotted(alias.key, "true", &origin),
            "none" => schema.assign_dotted(alias.key, "false", &origin),
            _ => Err(invalid("otlp or none (OTEL_LOGS_EXPORTER; console and lists are not supported)")),
        },
        Conversion::ResourceAttributes => {
            let pairs = parse_pairs(raw).map_err(|_| invalid(PAIRS_ALLOWED))?;
            let mut out = Vec::new();
            for (name, value) in pairs {
                if name == "service.name" {
                    out.extend(schema.assign_dotted("telemetry.service_name", &value, &origin)?);
                } else {
                    let segments = ["telemetry".to_owned(), "resource_attributes".to_owned(), name];
                    out.extend(schema.assign(&segments, &value, &origin)?);
                }
            }
            Ok(out)
        }
    }
}
