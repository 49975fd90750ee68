//! Unit tests of the settings: layering, every environment mapping, flags, masking, error
//! messages, and the drift check of `docs/configuration.md` and `config/default.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;
use toml::{Table, Value};

use metamcp_telemetry::settings::env::{var_for_key, Alias};
use metamcp_telemetry::settings::layer::{lookup, parse_pairs, percent_decode, Schema};

use super::*;
use metamcp_telemetry::settings::DEFAULT_SAMPLER_ARG;
use metamcp_telemetry_actors::exporter::config::{DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT};
use metamcp_telemetry_actors::Protocol;

/// Every alias variable of the binary: the library's, then the gateway's.
static ALIASES: std::sync::LazyLock<Vec<Alias>> = std::sync::LazyLock::new(|| {
    metamcp_telemetry::settings::env::ALIASES.iter().chain(super::ALIASES).copied().collect()
});

/// A temporary working area with an (initially empty) configuration directory and a map
/// environment that points at it.
struct Fixture {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("config")).expect("config dir");
        let mut env = BTreeMap::new();
        env.insert(CONFIG_DIR_ENV.to_owned(), dir.path().join("config").display().to_string());
        Fixture { dir, env }
    }

    fn env(mut self, key: &str, value: &str) -> Fixture {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Writes `config/{name}`.
    fn config_file(self, name: &str, text: &str) -> Fixture {
        std::fs::write(self.dir.path().join("config").join(name), text).expect("write config file");
        self
    }

    /// Writes `name` beside the configuration directory and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("config").join(name)
    }

    fn load(&self, args: &[&str]) -> Result<Loaded, SettingsError> {
        let mut all = vec!["metamcp-telemetry"];
        all.extend_from_slice(args);
        load(all, &self.env)
    }

    fn settings(&self, args: &[&str]) -> Settings {
        match self.load(args) {
            Ok(loaded) => loaded.settings,
            Err(err) => panic!("expected settings, got error: {err}"),
        }
    }

    fn error(&self, args: &[&str]) -> SettingsError {
        match self.load(args) {
            Ok(loaded) => panic!("expected an error, got {:?}", loaded.settings),
            Err(err) => err,
        }
    }
}

/// Settings::default() changed by `change`.
fn expected(change: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = Settings::default();
    change(&mut settings);
    settings
}

fn invalid_parts(err: &SettingsError) -> (&str, &str, &str, &Origin) {
    match err {
        SettingsError::Invalid { key, value, allowed, origin } => (key, value, allowed, origin),
        other => panic!("expected SettingsError::Invalid, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid_and_use_the_named_constants() {
    let settings = Settings::default();
    assert_eq!(settings.validate(), Ok(()));
    assert!(settings.telemetry.enabled);
    assert_eq!(settings.telemetry.service_name, DEFAULT_SERVICE_NAME);
    assert_eq!(settings.telemetry.sampler, Sampler::ParentBasedAlwaysOn);
    assert_eq!(settings.telemetry.sampler_arg, DEFAULT_SAMPLER_ARG);
    assert!(settings.telemetry.install_global);
    assert_eq!(settings.server.bind.to_string(), "127.0.0.1:8000");
    assert_eq!(settings.server.workers, 0);
    assert_eq!(settings.server.shutdown_timeout, Duration::from_secs(10));
    assert!(settings.prometheus.enabled);
    assert_eq!(settings.prometheus.bind.to_string(), "127.0.0.1");
    assert_eq!(settings.prometheus.port, 9464);
    assert_eq!(settings.logging.level, "info");
    assert_eq!(settings.logging.format, LogFormat::Auto);
}

#[test]
fn missing_default_toml_gives_the_built_in_defaults() {
    let fixture = Fixture::new();
    let loaded = fixture.load(&[]).expect("defaults load");
    assert_eq!(loaded.settings, Settings::default());
    assert!(!loaded.check_config);
}

#[test]
fn each_layer_overrides_the_previous() {
    // Layer n sets the keys n..=5; each key must end with the value of the last layer setting it.
    let fixture = Fixture::new()
        .env(ENVIRONMENT_ENV, "staging")
        .config_file(
            "default.toml",
            r#"
            [telemetry]
            service_name = "from-default"
            [server]
            workers = 1
            [prometheus]
            port = 1001
            [logging]
            level = "warn"
            [exporter]
            endpoint = "http://default:4317"
            "#,
        )
        .config_file(
            "staging.toml",
            r#"
            [server]
            workers = 2
            [prometheus]
            port = 1002
            [logging]
            level = "error"
            [exporter]
            endpoint = "http://staging:4317"
            "#,
        );
    let config = fixture.file(
        "extra.toml",
        r#"
        prometheus.port = 1003
        logging.level = "debug"
        exporter.endpoint = "http://config-flag:4317"
        "#,
    );
    let fixture = fixture.env("METAMCP_LOGGING__LEVEL", "trace").env("OTLP_ENDPOINT", "http://env:4317");
    let config = config.display().to_string();
    let settings = fixture.settings(&["--config", &config, "--otlp-endpoint", "http://flag:4317"]);
    assert_eq!(settings.telemetry.service_name, "from-default");
    assert_eq!(settings.server.workers, 2);
    assert_eq!(settings.prometheus.port, 1003);
    assert_eq!(settings.logging.level, "trace");
    assert_eq!(settings.exporter.endpoint, "http://flag:4317");
    // Keys no layer set keep their built-in defaults.
    assert_eq!(settings.exporter.timeout, Duration::from_secs(10));

    // Without the flag, the environment is the top layer; without that, --config.
    let settings = fixture.settings(&["--config", &config]);
    assert_eq!(settings.exporter.endpoint, "http://env:4317");
    let fixture = fixture.env("OTLP_ENDPOINT", "");
    assert_eq!(fixture.settings(&["--config", &config]).exporter.endpoint, "http://config-flag:4317");
    assert_eq!(fixture.settings(&[]).exporter.endpoint, "http://staging:4317");
}

#[test]
fn metamcp_env_selects_an_overlay_and_a_missing_overlay_is_an_error() {
    let fixture =
        Fixture::new().config_file("production.toml", "[server]\nworkers = 8\n").env(ENVIRONMENT_ENV, "production");
    assert_eq!(fixture.settings(&[]).server.workers, 8);

    let fixture = fixture.env(ENVIRONMENT_ENV, "staging");
    let err = fixture.error(&[]);
    assert!(matches!(err, SettingsError::MissingEnvironmentFile { ref name, .. } if name == "staging"));
    let message = err.to_string();
    assert!(message.contains("METAMCP_ENV"), "{message}");
    assert!(message.contains("staging.toml"), "{message}");
}

#[test]
fn metamcp_env_must_be_a_plain_name() {
    let err = Fixture::new().env(ENVIRONMENT_ENV, "../secrets").error(&[]);
    let (key, value, allowed, origin) = invalid_parts(&err);
    assert_eq!(key, "METAMCP_ENV");
    assert!(value.contains("../secrets"));
    assert!(allowed.contains("letters"));
    assert_eq!(origin, &Origin::Env("METAMCP_ENV".to_owned()));
}

#[test]
fn a_missing_config_flag_file_is_an_error_naming_the_path() {
    let fixture = Fixture::new();
    let missing = fixture.dir.path().join("nope.toml");
    let err = fixture.error(&["--config", &missing.display().to_string()]);
    assert!(matches!(err, SettingsError::Io { ref path, .. } if path == &missing), "{err:?}");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn seed_variables_map_to_their_keys() {
    type Case = (&'static str, &'static str, fn(&mut Settings));
    let cases: &[Case] = &[
        ("TELEMETRY_ENABLED", "false", |s| s.telemetry.enabled = false),
        ("TELEMETRY_ENABLED", "0", |s| s.telemetry.enabled = false),
        ("TELEMETRY_ENABLED", "No", |s| s.telemetry.enabled = false),
        ("TELEMETRY_ENABLED", "FALSE", |s| s.telemetry.enabled = false),
        ("TELEMETRY_ENABLED", "true", |_| {}),
        ("TELEMETRY_ENABLED", "1", |_| {}),
        ("TELEMETRY_ENABLED", "YES", |_| {}),
        ("OTLP_ENDPOINT", "http://collector:4317", |s| s.exporter.endpoint = "http://collector:4317".to_owned()),
        ("OTLP_INSECURE", "false", |s| s.exporter.insecure = false),
        ("PROMETHEUS_METRICS_PORT", "9100", |s| s.prometheus.port = 9100),
    ];
    for (var, value, change) in cases {
        // Start from the opposite of every default the seed variables touch, so "true" shows.
        let fixture = Fixture::new().config_file("default.toml", "[telemetry]\nenabled = false\n").env(var, value);
        let mut want = expected(change);
        if *var != "TELEMETRY_ENABLED" {
            want.telemetry.enabled = false;
        }
        assert_eq!(fixture.settings(&[]), want, "{var}={value}");
    }
}

#[test]
fn standard_otel_variables_map_to_their_keys() {
    type Case = (&'static str, &'static str, fn(&mut Settings));
    let cases: &[Case] = &[
        ("OTEL_SDK_DISABLED", "true", |s| s.telemetry.enabled = false),
        ("OTEL_SDK_DISABLED", "TRUE", |s| s.telemetry.enabled = false),
        ("OTEL_SDK_DISABLED", "false", |_| {}),
        ("OTEL_SERVICE_NAME", "billing", |s| s.telemetry.service_name = "billing".to_owned()),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=a%2Cb", |s| {
            s.telemetry.resource_attributes.insert("deployment.environment".to_owned(), "prod".to_owned());
            s.telemetry.resource_attributes.insert("team".to_owned(), "a,b".to_owned());
        }),
        ("OTEL_TRACES_SAMPLER", "traceidratio", |s| s.telemetry.sampler = Sampler::TraceIdRatio),
        ("OTEL_TRACES_SAMPLER", "always_off", |s| s.telemetry.sampler = Sampler::AlwaysOff),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", |s| s.telemetry.sampler = Sampler::ParentBasedTraceIdRatio),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25", |s| s.telemetry.sampler_arg = 0.25),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example:4317", |s| {
            s.exporter.endpoint = "https://otlp.example:4317".to_owned()
        }),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example:4317", |s| {
            s.exporter.endpoint = "https://traces.example:4317".to_owned()
        }),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", |_| {}),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", |s| {
            s.exporter.protocol = Protocol::HttpProtobuf;
            s.exporter.endpoint = DEFAULT_HTTP_ENDPOINT.to_owned();
        }),
        ("OTEL_EXPORTER_OTLP_INSECURE", "false", |s| s.exporter.insecure = false),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret, x-tenant = 42 ", |s| {
            s.exporter.headers.insert("api-key".to_owned(), "s=cret".to_owned());
            s.exporter.headers.insert("x-tenant".to_owned(), "42".to_owned());
        }),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500", |s| s.exporter.timeout = Duration::from_millis(2500)),
        ("OTEL_BSP_EXPORT_TIMEOUT", "3000", |s| s.exporter.timeout = Duration::from_secs(3)),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "4000", |s| s.exporter.timeout = Duration::from_secs(4)),
        ("OTEL_LOGS_EXPORTER", "none", |s| s.logs.otlp = false),
        ("OTEL_LOGS_EXPORTER", "OTLP", |_| {}),
        ("OTEL_BLRP_SCHEDULE_DELAY", "500", |s| s.logs.flush_interval = Duration::from_millis(500)),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "4096", |s| s.logs.queue_capacity = 4096),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "64", |s| s.logs.max_batch_size = 64),
        ("OTEL_BSP_SCHEDULE_DELAY", "250", |s| s.span_buffer.flush_interval = Duration::from_millis(250)),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4096", |s| s.span_buffer.queue_capacity = 4096),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "128", |s| s.span_buffer.max_batch_size = 128),
        ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "4", |s| s.exporter.max_concurrent_exports = 4),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000", |s| s.metrics.export_interval = Duration::from_secs(60)),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "64", |s| s.span_limits.max_attributes_per_span = 64),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "32", |s| s.span_limits.max_events_per_span = 32),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", "16", |s| s.span_limits.max_links_per_span = 16),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "8", |s| s.span_limits.max_attributes_per_event = 8),
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "4", |s| s.span_limits.max_attributes_per_link = 4),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1024", |s| s.span_limits.max_attribute_value_length = 1024),
        ("RUST_LOG", "warn,metamcp_telemetry=debug", |s| s.logging.level = "warn,metamcp_telemetry=debug".to_owned()),
        // Empty standard variables count as unset.
        ("OTEL_SERVICE_NAME", "", |_| {}),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "  ", |_| {}),
    ];
    for (var, value, change) in cases {
        let fixture = Fixture::new().env(var, value);
        assert_eq!(fixture.settings(&[]), expected(change), "{var}={value}");
    }
}

#[test]
fn every_alias_variable_is_exercised_by_a_mapping_test() {
    // Guards against adding an alias without a test above: each alias must change its key.
    let samples: BTreeMap<&str, &str> = [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_RESOURCE_ATTRIBUTES", "a=b"),
        ("OTEL_SERVICE_NAME", "x"),
        ("OTEL_TRACES_SAMPLER", "always_off"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "false"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=b"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "1"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "1"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "1000"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "10"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1"),
        ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "3"),
        ("OTEL_BSP_SCHEDULE_DELAY", "1"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "1000"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "64"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "64"),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", "64"),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "64"),
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "64"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1024"),
        ("RUST_LOG", "debug"),
        ("TELEMETRY_ENABLED", "false"),
        ("OTLP_ENDPOINT", "http://c:1"),
        ("OTLP_INSECURE", "false"),
        ("PROMETHEUS_METRICS_PORT", "1"),
        ("DATABASE_URL", "postgres://db.example:5432/metamcp"),
    ]
    .into_iter()
    .collect();
    let defaults = Schema::of::<Settings>().expect("schema").defaults().clone();
    for alias in ALIASES.iter() {
        let sample = samples.get(alias.var).unwrap_or_else(|| panic!("no sample for {}", alias.var));
        let settings = Fixture::new().env(alias.var, sample).settings(&[]);
        let table = Table::try_from(&settings).expect("settings as TOML");
        let path: Vec<String> = alias.key.split('.').map(str::to_owned).collect();
        assert_ne!(
            lookup(&table, &path),
            lookup(&defaults, &path),
            "{}={sample} did not change {}",
            alias.var,
            alias.key
        );
    }
}

#[test]
fn resource_attribute_service_name_is_used_unless_otel_service_name_is_set() {
    let fixture = Fixture::new().env("OTEL_RESOURCE_ATTRIBUTES", "service.name=from%20attrs,region=eu");
    let settings = fixture.settings(&[]);
    assert_eq!(settings.telemetry.service_name, "from attrs");
    assert_eq!(settings.telemetry.resource_attributes, BTreeMap::from([("region".to_owned(), "eu".to_owned())]));

    let settings = fixture.env("OTEL_SERVICE_NAME", "explicit").settings(&[]);
    assert_eq!(settings.telemetry.service_name, "explicit");
}

#[test]
fn within_the_environment_otel_loses_to_seed_which_loses_to_metamcp() {
    let otel = Fixture::new().env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317");
    assert_eq!(otel.settings(&[]).exporter.endpoint, "http://otel:4317");
    let seed = otel.env("OTLP_ENDPOINT", "http://seed:4317");
    assert_eq!(seed.settings(&[]).exporter.endpoint, "http://seed:4317");
    let metamcp = seed.env("METAMCP_EXPORTER__ENDPOINT", "http://metamcp:4317");
    assert_eq!(metamcp.settings(&[]).exporter.endpoint, "http://metamcp:4317");

    let fixture = Fixture::new().env("OTEL_SDK_DISABLED", "true").env("TELEMETRY_ENABLED", "true");
    assert!(fixture.settings(&[]).telemetry.enabled);
    let fixture = fixture.env("METAMCP_TELEMETRY__ENABLED", "false");
    assert!(!fixture.settings(&[]).telemetry.enabled);

    // The more specific standard variable wins over the general one.
    let fixture = Fixture::new()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317")
        .env("OTEL_BSP_EXPORT_TIMEOUT", "1000")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "2000");
    let settings = fixture.settings(&[]);
    assert_eq!(settings.exporter.endpoint, "http://traces:4317");
    assert_eq!(settings.exporter.timeout, Duration::from_secs(2));
}

#[test]
fn http_protobuf_uses_the_http_default_endpoint_unless_one_was_given() {
    let fixture = Fixture::new().env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    assert_eq!(fixture.settings(&[]).exporter.endpoint, DEFAULT_HTTP_ENDPOINT);
    // config/default.toml writes out the gRPC default; that does not count as a choice.
    let with_default_file = Fixture::new()
        .config_file("default.toml", &format!("[exporter]\nendpoint = \"{DEFAULT_GRPC_ENDPOINT}\"\n"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    assert_eq!(with_default_file.settings(&[]).exporter.endpoint, DEFAULT_HTTP_ENDPOINT);
    let explicit = fixture.env("OTLP_ENDPOINT", "http://collector:4318");
    assert_eq!(explicit.settings(&[]).exporter.endpoint, "http://collector:4318");
    let flag = Fixture::new().settings(&["--otlp-protocol", "http/protobuf"]);
    assert_eq!(flag.exporter.endpoint, DEFAULT_HTTP_ENDPOINT);
    assert_eq!(Fixture::new().settings(&[]).exporter.endpoint, DEFAULT_GRPC_ENDPOINT);
}

#[test]
fn http_json_is_refused_with_a_clear_message() {
    let err = Fixture::new().env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json").error(&[]);
    let (key, value, allowed, origin) = invalid_parts(&err);
    assert_eq!(key, "exporter.protocol");
    assert_eq!(value, "\"http/json\"");
    assert!(allowed.contains("http/json is not supported"), "{allowed}");
    assert_eq!(origin, &Origin::Env("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned()));
}

#[test]
fn metamcp_variables_set_nested_keys_and_maps() {
    let fixture = Fixture::new()
        .env("METAMCP_EXPORTER__RETRY__MAX_INTERVAL", "45s")
        .env("METAMCP_EXPORTER__RETRY__MULTIPLIER", "2")
        .env("METAMCP_SERVER__BIND", "0.0.0.0:9000")
        .env("METAMCP_SERVER__SHUTDOWN_TIMEOUT", "1m 30s")
        .env("METAMCP_SPAN_BUFFER__QUEUE_CAPACITY", "16384")
        .env("METAMCP_TELEMETRY__SAMPLER_ARG", "0.125")
        .env("METAMCP_TELEMETRY__RESOURCE_ATTRIBUTES", "team=core,tier=gold")
        .env("METAMCP_PROMETHEUS__ENABLED", "no")
        .env("METAMCP_PROMETHEUS__BIND", "::")
        .env("METAMCP_LOGGING__FORMAT", "pretty")
        .env("METAMCP_EXPORTER__HEADERS", "a=1,b=2")
        .env("METAMCP_EXPORTER__HEADERS__X-TOKEN", "t");
    let want = expected(|s| {
        s.exporter.retry.max_interval = Duration::from_secs(45);
        s.exporter.retry.multiplier = 2.0;
        s.server.bind = "0.0.0.0:9000".parse().expect("addr");
        s.server.shutdown_timeout = Duration::from_secs(90);
        s.span_buffer.queue_capacity = 16384;
        s.telemetry.sampler_arg = 0.125;
        s.telemetry.resource_attributes =
            BTreeMap::from([("team".to_owned(), "core".to_owned()), ("tier".to_owned(), "gold".to_owned())]);
        s.prometheus.enabled = false;
        s.prometheus.bind = "::".parse().expect("ip");
        s.logging.format = LogFormat::Pretty;
        s.exporter.headers = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
            ("x-token".to_owned(), "t".to_owned()),
        ]);
    });
    assert_eq!(fixture.settings(&[]), want);
}

#[test]
fn every_key_has_a_metamcp_variable() {
    let defaults = Schema::of::<Settings>().expect("schema").defaults().clone();
    let mut keys = Vec::new();
    collect_keys(&defaults, "", &mut keys);
    for (key, default) in keys {
        let var = var_for_key(&key);
        let raw = match &default {
            Value::Table(_) => "k=v".to_owned(),
            Value::Array(_) if key == "server.allowed_origins" => "https://a.example,http://b.example:8000".to_owned(),
            Value::Array(_) if key.ends_with("_cidrs") => "10.0.0.0/8,fd00::/8".to_owned(),
            Value::Array(_) => "user-agent,x-forwarded-for".to_owned(),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let loaded = Fixture::new().env(&var, &raw).load(&[]);
        assert!(loaded.is_ok(), "{var}={raw}: {:?}", loaded.err());
    }
}

#[test]
fn unknown_metamcp_variables_are_errors_naming_the_variable() {
    for (var, key) in [
        ("METAMCP_EXPORTER__NOPE", "exporter.nope"),
        ("METAMCP_NOPE", "nope"),
        ("METAMCP_EXPORTER__RETRY", "exporter.retry"),
        ("METAMCP_SERVER__BIND__PORT", "server.bind.port"),
        ("METAMCP_SPAN_BUFFER_QUEUE_CAPACITY", "span_buffer_queue_capacity"),
    ] {
        let err = Fixture::new().env(var, "1").error(&[]);
        match &err {
            SettingsError::UnknownKey { key: got, origin, .. } => {
                assert_eq!(got, key);
                assert_eq!(origin, &Origin::Env(var.to_owned()));
            }
            other => panic!("{var}: expected UnknownKey, got {other:?}"),
        }
        assert!(err.to_string().contains(var), "{err}");
    }
    let err = Fixture::new().env("METAMCP_EXPORTER__RETRY", "1").error(&[]);
    assert!(err.to_string().contains("a key inside this section, one of exporter.retry.enabled"), "{err}");
    // The two variables that select files are not keys and not errors.
    let fixture = Fixture::new().config_file("dev.toml", "").env(ENVIRONMENT_ENV, "dev");
    assert_eq!(fixture.settings(&[]), Settings::default());
}

#[test]
fn maps_merge_key_by_key_across_layers() {
    let fixture = Fixture::new()
        .config_file("default.toml", "[exporter.headers]\nfrom-file = \"f\"\nshared = \"file\"\n")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "shared=env,from-env=e");
    let settings = fixture.settings(&["--set", "exporter.headers.from-flag=x"]);
    assert_eq!(
        settings.exporter.headers,
        BTreeMap::from([
            ("from-env".to_owned(), "e".to_owned()),
            ("from-file".to_owned(), "f".to_owned()),
            ("from-flag".to_owned(), "x".to_owned()),
            ("shared".to_owned(), "env".to_owned()),
        ])
    );
}

#[test]
fn gateway_secrets_are_masked_in_check_config_errors_and_debug() {
    let fixture = Fixture::new()
        .env("METAMCP_ADMIN__TOKEN", "admintopsecret")
        .env("METAMCP_VECTOR__OPENAI_API_KEY", "sk-keysecret")
        .env("DATABASE_URL", "postgres://app:dbsecret@db.example:5432/metamcp");
    let settings = fixture.settings(&[]);
    assert_eq!(settings.admin.token, "admintopsecret");
    assert_eq!(settings.database.url, "postgres://app:dbsecret@db.example:5432/metamcp");
    let text = settings.to_masked_toml();
    let debug = format!("{settings:?}");
    for secret in ["admintopsecret", "sk-keysecret", "dbsecret"] {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(text.contains("postgres://app:***@db.example:5432/metamcp"), "{text}");
    let err = Fixture::new().env("DATABASE_URL", "mysql://root:dbsecret@x/y").error(&[]);
    assert!(err.to_string().contains("database.url") && !err.to_string().contains("dbsecret"), "{err}");
    let err = Fixture::new().env("METAMCP_ADMIN__TOKEN", "has space secret").error(&[]);
    assert!(err.to_string().contains("admin.token") && !err.to_string().contains("secret"), "{err}");
}

#[test]
fn masked_toml_hides_header_values_and_round_trips() {
    let fixture =
        Fixture::new().env("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20topsecret,x-api-key=hunter2");
    let settings = fixture.settings(&[]);
    let text = settings.to_masked_toml();
    assert!(!text.contains("topsecret"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("authorization"), "{text}");
    assert!(text.contains("x-api-key"), "{text}");
    assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "ends with one newline: {text}");
    let parsed: Settings = toml::from_str(&text).expect("masked TOML parses as Settings");
    let mut want = settings.clone();
    for value in want.exporter.headers.values_mut() {
        *value = MASK.to_owned();
    }
    assert_eq!(parsed, want);
    // Debug output masks too (ExporterConfig's Debug).
    assert!(!format!("{settings:?}").contains("hunter2"));
}

#[test]
fn a_bad_header_value_is_masked_in_the_error() {
    let err = Fixture::new().env("METAMCP_EXPORTER__HEADERS__X-KEY", "bad\u{7}secret").error(&[]);
    let (key, value, _, origin) = invalid_parts(&err);
    assert_eq!(key, "exporter.headers.x-key");
    assert!(!value.contains("secret"), "{value}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert_eq!(origin, &Origin::Env("METAMCP_EXPORTER__HEADERS__X-KEY".to_owned()));
}

#[test]
fn errors_name_key_value_allowed_and_origin() {
    struct Case {
        env: &'static [(&'static str, &'static str)],
        args: &'static [&'static str],
        key: &'static str,
        value: &'static str,
        allowed: &'static str,
        origin: &'static str,
    }
    let cases = [
        Case {
            env: &[("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
            args: &[],
            key: "span_buffer.queue_capacity",
            value: "0",
            allowed: "an integer from 1 to",
            origin: "env OTEL_BSP_MAX_QUEUE_SIZE",
        },
        Case {
            env: &[("OTEL_BSP_MAX_QUEUE_SIZE", "100"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "200")],
            args: &[],
            key: "span_buffer.max_batch_size",
            value: "200",
            allowed: "at most span_buffer.queue_capacity (100)",
            origin: "env OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        },
        Case {
            env: &[("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "10")],
            args: &[],
            key: "span_buffer.flush_interval",
            value: "\"10\"",
            allowed: "a number with a unit",
            origin: "env METAMCP_SPAN_BUFFER__FLUSH_INTERVAL",
        },
        Case {
            env: &[("OTEL_BSP_SCHEDULE_DELAY", "1s")],
            args: &[],
            key: "span_buffer.flush_interval",
            value: "\"1s\"",
            allowed: "milliseconds",
            origin: "env OTEL_BSP_SCHEDULE_DELAY",
        },
        Case {
            env: &[("PROMETHEUS_METRICS_PORT", "abc")],
            args: &[],
            key: "prometheus.port",
            value: "\"abc\"",
            allowed: "an integer",
            origin: "env PROMETHEUS_METRICS_PORT",
        },
        Case {
            env: &[("METAMCP_PROMETHEUS__PORT", "70000")],
            args: &[],
            key: "prometheus.port",
            value: "70000",
            allowed: "an integer from 0 to 65535",
            origin: "env METAMCP_PROMETHEUS__PORT",
        },
        Case {
            env: &[],
            args: &["--bind", "localhost"],
            key: "server.bind",
            value: "\"localhost\"",
            allowed: "an IP address and port",
            origin: "flag --bind",
        },
        Case {
            env: &[],
            args: &["--metrics-bind", "999.1.1.1"],
            key: "prometheus.bind",
            value: "\"999.1.1.1\"",
            allowed: "an IP address",
            origin: "flag --metrics-bind",
        },
        Case {
            env: &[],
            args: &["--otlp-protocol", "udp"],
            key: "exporter.protocol",
            value: "\"udp\"",
            allowed: "`grpc` or `http/protobuf`",
            origin: "flag --otlp-protocol",
        },
        Case {
            env: &[],
            args: &["--log-format", "xml"],
            key: "logging.format",
            value: "\"xml\"",
            allowed: "one of `auto`, `json`, `pretty`",
            origin: "flag --log-format",
        },
        Case {
            env: &[],
            args: &["--log-level", "info,[="],
            key: "logging.level",
            value: "\"info,[=\"",
            allowed: "RUST_LOG syntax",
            origin: "flag --log-level",
        },
        Case {
            env: &[("OTEL_LOGS_EXPORTER", "console")],
            args: &[],
            key: "logs.otlp",
            value: "\"console\"",
            allowed: "otlp or none",
            origin: "env OTEL_LOGS_EXPORTER",
        },
        Case {
            env: &[("METAMCP_LOGS__LEVEL", "info,[=")],
            args: &[],
            key: "logs.level",
            value: "\"info,[=\"",
            allowed: "RUST_LOG syntax",
            origin: "env METAMCP_LOGS__LEVEL",
        },
        Case {
            env: &[("OTEL_BLRP_MAX_QUEUE_SIZE", "100"), ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "200")],
            args: &[],
            key: "logs.max_batch_size",
            value: "200",
            allowed: "at most logs.queue_capacity (100)",
            origin: "env OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
        },
        Case {
            env: &[("OTEL_TRACES_SAMPLER_ARG", "2.0")],
            args: &[],
            key: "telemetry.sampler_arg",
            value: "2",
            allowed: "a number from 0.0 to 1.0",
            origin: "env OTEL_TRACES_SAMPLER_ARG",
        },
        Case {
            env: &[("OTEL_TRACES_SAMPLER", "jaeger_remote")],
            args: &[],
            key: "telemetry.sampler",
            value: "\"jaeger_remote\"",
            allowed: "parentbased_traceidratio",
            origin: "env OTEL_TRACES_SAMPLER",
        },
        Case {
            env: &[("TELEMETRY_ENABLED", "maybe")],
            args: &[],
            key: "telemetry.enabled",
            value: "\"maybe\"",
            allowed: "true, false, 1, 0, yes or no",
            origin: "env TELEMETRY_ENABLED",
        },
        Case {
            env: &[("OTEL_SDK_DISABLED", "perhaps")],
            args: &[],
            key: "telemetry.enabled",
            value: "\"perhaps\"",
            allowed: "true disables telemetry",
            origin: "env OTEL_SDK_DISABLED",
        },
        Case {
            env: &[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")],
            args: &[],
            key: "exporter.timeout",
            value: "0s",
            allowed: "a duration from 1ms to 10m",
            origin: "env OTEL_EXPORTER_OTLP_TIMEOUT",
        },
        Case {
            env: &[("OTLP_ENDPOINT", "collector:4317")],
            args: &[],
            key: "exporter.endpoint",
            value: "collector:4317",
            allowed: "http:// or https://",
            origin: "env OTLP_ENDPOINT",
        },
        Case {
            env: &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
            args: &[],
            key: "telemetry.resource_attributes",
            value: "\"novalue\"",
            allowed: "key=value pairs",
            origin: "env OTEL_RESOURCE_ATTRIBUTES",
        },
        Case {
            env: &[],
            args: &["--set", "server.workers=300"],
            key: "server.workers",
            value: "300",
            allowed: "an integer from 0 (one per CPU core) to 256",
            origin: "flag --set server.workers",
        },
        Case {
            env: &[],
            args: &["--set", "server.shutdown_timeout=11m"],
            key: "server.shutdown_timeout",
            value: "11m",
            allowed: "a duration from 1ms to 10m",
            origin: "flag --set server.shutdown_timeout",
        },
        Case {
            env: &[("OTEL_SERVICE_NAME", "x"), ("METAMCP_TELEMETRY__SERVICE_NAME", " ")],
            args: &[],
            key: "telemetry.service_name",
            value: "\" \"",
            allowed: "a non-empty name",
            origin: "env METAMCP_TELEMETRY__SERVICE_NAME",
        },
        Case {
            env: &[("METAMCP_EXPORTER__RETRY__MULTIPLIER", "x")],
            args: &[],
            key: "exporter.retry.multiplier",
            value: "\"x\"",
            allowed: "a number",
            origin: "env METAMCP_EXPORTER__RETRY__MULTIPLIER",
        },
    ];
    for case in cases {
        let mut fixture = Fixture::new();
        for (var, value) in case.env {
            fixture = fixture.env(var, value);
        }
        let err = fixture.error(case.args);
        let (key, value, allowed, origin) = invalid_parts(&err);
        let message = err.to_string();
        assert_eq!(key, case.key, "{message}");
        assert_eq!(value, case.value, "{message}");
        assert!(allowed.contains(case.allowed), "allowed {allowed:?} lacks {:?}", case.allowed);
        assert_eq!(origin.to_string(), case.origin, "{message}");
        for part in [case.key, case.value, case.allowed, case.origin] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }
}

#[test]
fn errors_in_files_name_the_key_and_the_file() {
    let fixture = Fixture::new().config_file("default.toml", "[exporter.retry]\nmax_intervall = \"1s\"\n");
    let err = fixture.error(&[]);
    match &err {
        SettingsError::UnknownKey { key, allowed, origin } => {
            assert_eq!(key, "exporter.retry.max_intervall");
            assert!(allowed.contains("exporter.retry.max_interval"), "{allowed}");
            assert_eq!(origin, &Origin::File(fixture.config_path("default.toml")));
        }
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    assert!(err.to_string().contains("default.toml"), "{err}");

    let fixture = Fixture::new();
    let path = fixture.file("extra.toml", "[nope]\nx = 1\n");
    let err = fixture.error(&["--config", &path.display().to_string()]);
    assert!(
        matches!(&err, SettingsError::UnknownKey { key, origin: Origin::ConfigFlag(p), .. } if key == "nope" && p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("--config {}", path.display())), "{err}");

    let fixture = Fixture::new().config_file("default.toml", "[prometheus]\nport = \"9464\"\n");
    let err = fixture.error(&[]);
    let (key, value, allowed, origin) = invalid_parts(&err);
    assert_eq!((key, value), ("prometheus.port", "\"9464\""));
    assert!(allowed.contains("0 to 65535"), "{allowed}");
    assert_eq!(origin, &Origin::File(fixture.config_path("default.toml")));

    let fixture = Fixture::new().config_file("default.toml", "[server]\nbind = \n");
    let err = fixture.error(&[]);
    assert!(matches!(&err, SettingsError::Parse { origin: Origin::File(_), .. }), "{err:?}");
    assert!(err.to_string().contains("default.toml"), "{err}");

    let fixture = Fixture::new().config_file("default.toml", "exporter = 5\n");
    let err = fixture.error(&[]);
    let (key, _, allowed, _) = invalid_parts(&err);
    assert_eq!(key, "exporter");
    assert!(allowed.contains("table"), "{allowed}");
}

#[test]
fn named_flags_and_set_override_everything_below() {
    let fixture = Fixture::new().env("METAMCP_SERVER__BIND", "10.0.0.1:1").env("METAMCP_TELEMETRY__ENABLED", "true");
    let settings = fixture.settings(&[
        "--bind",
        "0.0.0.0:8080",
        "--metrics-port",
        "0",
        "--metrics-bind",
        "0.0.0.0",
        "--otlp-endpoint",
        "https://collector:4317",
        "--otlp-protocol",
        "grpc",
        "--log-level",
        "debug",
        "--log-format",
        "pretty",
        "--disable-telemetry",
        "--set",
        "exporter.retry.enabled=false",
        "--set",
        "telemetry.resource_attributes.deployment.environment=prod",
        "--set",
        "span_buffer.flush_interval=250ms",
    ]);
    let want = expected(|s| {
        s.server.bind = "0.0.0.0:8080".parse().expect("addr");
        s.prometheus.port = 0;
        s.prometheus.bind = "0.0.0.0".parse().expect("ip");
        s.exporter.endpoint = "https://collector:4317".to_owned();
        s.logging.level = "debug".to_owned();
        s.logging.format = LogFormat::Pretty;
        s.telemetry.enabled = false;
        s.exporter.retry.enabled = false;
        s.telemetry.resource_attributes.insert("deployment.environment".to_owned(), "prod".to_owned());
        s.span_buffer.flush_interval = Duration::from_millis(250);
    });
    assert_eq!(settings, want);

    // --set is applied after the named flags.
    let settings = Fixture::new().settings(&["--set", "server.bind=1.2.3.4:5", "--bind", "5.6.7.8:9"]);
    assert_eq!(settings.server.bind.to_string(), "1.2.3.4:5");
}

#[test]
fn set_needs_key_equals_value_and_a_known_key() {
    let err = Fixture::new().error(&["--set", "server.workers"]);
    let (key, _, allowed, origin) = invalid_parts(&err);
    assert_eq!(key, "server.workers");
    assert!(allowed.contains("KEY=VALUE"));
    assert_eq!(origin, &Origin::Flag("--set".to_owned()));

    let err = Fixture::new().error(&["--set", "server.wrokers=2"]);
    assert!(
        matches!(&err, SettingsError::UnknownKey { key, allowed, .. } if key == "server.wrokers" && allowed.contains("server.workers")),
        "{err:?}"
    );
}

#[test]
fn help_version_and_usage_errors_come_back_as_variants() {
    let fixture = Fixture::new();
    let help = match fixture.error(&["--help"]) {
        SettingsError::Help(text) => text,
        other => panic!("expected Help, got {other:?}"),
    };
    for flag in [
        "--config",
        "--check-config",
        "--bind",
        "--metrics-port",
        "--metrics-bind",
        "--otlp-endpoint",
        "--otlp-protocol",
        "--log-level",
        "--log-format",
        "--disable-telemetry",
        "--set",
        "--version",
        "--help",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    match fixture.error(&["--version"]) {
        SettingsError::Version(text) => assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}"),
        other => panic!("expected Version, got {other:?}"),
    }
    match fixture.error(&["--no-such-flag"]) {
        SettingsError::Usage(text) => assert!(text.contains("--no-such-flag"), "{text}"),
        other => panic!("expected Usage, got {other:?}"),
    }
}

#[test]
fn check_config_is_reported() {
    assert!(Fixture::new().load(&["--check-config"]).expect("loads").check_config);
}

#[test]
fn from_env_reads_the_files_and_the_environment() {
    let fixture = Fixture::new().config_file("default.toml", "[server]\nworkers = 3\n").env("OTEL_SERVICE_NAME", "svc");
    let settings = Settings::from_env(&fixture.env).expect("from_env");
    assert_eq!(settings.server.workers, 3);
    assert_eq!(settings.telemetry.service_name, "svc");

    let map: std::collections::HashMap<String, String> = fixture.env.clone().into_iter().collect();
    assert_eq!(Settings::from_env(&map).expect("from_env with a HashMap"), settings);
}

#[test]
fn pairs_and_percent_decoding() {
    assert_eq!(percent_decode("a%20b%2C%3D%25").as_deref(), Some("a b,=%"));
    assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
    assert_eq!(percent_decode("bad%2"), None);
    assert_eq!(percent_decode("bad%zz"), None);
    assert_eq!(percent_decode("%FF"), None);
    assert_eq!(
        parse_pairs(" a = 1 ,, b=x%3Dy ,"),
        Ok(vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), "x=y".to_owned())])
    );
    assert_eq!(parse_pairs(""), Ok(Vec::new()));
    assert!(parse_pairs("a=1,b").is_err());
    assert!(parse_pairs("=1").is_err());
}

// --- Drift checks: docs/configuration.md and config/*.toml against the Settings struct. ---

/// Every settable key (dotted) and its default: leaves and (empty) maps.
fn collect_keys(table: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            Value::Table(inner) if !inner.is_empty() => collect_keys(inner, &dotted, out),
            _ => out.push((dotted, value.clone())),
        }
    }
}

fn all_keys() -> Vec<(String, Value)> {
    let table = Table::try_from(Settings::default()).expect("defaults as TOML");
    let mut keys = Vec::new();
    collect_keys(&table, "", &mut keys);
    keys
}

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

/// Every table of the settings that holds keys, dotted: `telemetry`, `exporter`, `exporter.retry`, …
fn all_sections() -> BTreeSet<String> {
    all_keys().iter().filter_map(|(key, _)| key.rsplit_once('.').map(|(section, _)| section.to_owned())).collect()
}

/// The cells of a Markdown table row, trimmed, without the outer pipes.
fn row_cells(row: &str) -> Vec<&str> {
    row.trim().trim_start_matches('|').trim_end_matches('|').split(" | ").map(str::trim).collect()
}

/// The key rows of the reference: `(section heading they sit under, row)`, by key.
fn documented_key_rows(docs: &str) -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    let mut section = String::new();
    let mut in_keys = false;
    for line in docs.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_keys = heading.trim() == "Keys";
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            section = heading.trim().trim_matches('`').trim_start_matches('[').trim_end_matches(']').to_owned();
            continue;
        }
        if in_keys && line.starts_with("| `") {
            let key = row_cells(line)[0].trim_matches('`').to_owned();
            assert!(
                rows.insert(key.clone(), (section.clone(), line.to_owned())).is_none(),
                "docs/configuration.md documents `{key}` twice"
            );
        }
    }
    rows
}

#[test]
fn the_key_list_covers_every_section() {
    let keys = all_keys();
    assert!(keys.len() >= 39, "{keys:?}");
    let sections = all_sections();
    for section in [
        "telemetry",
        "server",
        "prometheus",
        "logging",
        "logs",
        "exporter",
        "exporter.retry",
        "span_buffer",
        "metrics",
        "health",
        "database",
        "admin",
        "gateway",
        "vector",
    ] {
        assert!(sections.contains(section), "{section} not in {sections:?}");
    }
    // Every top-level field of `Settings` is a section with keys of its own (or nested ones).
    let table = Table::try_from(Settings::default()).expect("defaults as TOML");
    for name in table.keys() {
        assert!(sections.iter().any(|s| s == name || s.starts_with(&format!("{name}."))), "{name}");
    }
}

#[test]
fn every_section_has_its_heading_in_the_reference() {
    let docs = repo_file("docs/configuration.md");
    for section in all_sections() {
        assert!(
            docs.lines().any(|line| line == format!("### `[{section}]`")),
            "docs/configuration.md has no heading ### `[{section}]`"
        );
    }
}

#[test]
fn every_key_is_documented_with_its_variables_default_range_and_meaning() {
    let docs = repo_file("docs/configuration.md");
    let rows = documented_key_rows(&docs);
    let keys = all_keys();
    for (key, default) in &keys {
        let (section, row) = rows.get(key).unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
        let expected_section = key.rsplit_once('.').map_or("", |(section, _)| section);
        assert_eq!(section, expected_section, "`{key}` is documented under the wrong heading");
        let cells = row_cells(row);
        assert_eq!(cells.len(), 5, "row of `{key}` needs key | environment | default | allowed | description: {row}");
        let (environment, default_cell, allowed, description) = (cells[1], cells[2], cells[3], cells[4]);

        // The METAMCP_* variable first, then every alias of the key, and nothing else.
        let var = var_for_key(key);
        let listed: Vec<&str> = environment.split('`').skip(1).step_by(2).collect();
        assert_eq!(listed.first().copied(), Some(var.as_str()), "row of `{key}` must list `{var}` first: {row}");
        let aliases: BTreeSet<&str> = ALIASES.iter().filter(|a| a.key == key).map(|a| a.var).collect();
        for alias in &aliases {
            assert!(listed.contains(alias), "row of `{key}` lacks its variable `{alias}`: {row}");
        }
        // Any other variable named is a real one (`OTEL_RESOURCE_ATTRIBUTES` also sets the
        // service name through its `service.name` entry).
        for name in listed.iter().skip(1).filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_')) {
            assert!(
                ALIASES.iter().any(|a| a.var == *name),
                "row of `{key}` lists `{name}`, which is no variable: {row}"
            );
        }

        let default = match default {
            Value::Table(_) => "{}".to_owned(),
            other => other.to_string(),
        };
        assert_eq!(default_cell, format!("`{default}`"), "row of `{key}`: wrong default: {row}");
        assert!(!allowed.is_empty(), "row of `{key}` says nothing about the allowed values: {row}");
        assert!(description.len() >= 10, "row of `{key}` has no description: {row}");
    }
    let known: BTreeSet<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
    for key in rows.keys() {
        assert!(known.contains(key.as_str()), "docs/configuration.md documents `{key}`, which is not a setting");
    }
}

#[test]
fn every_alias_flag_and_file_variable_is_documented() {
    let docs = repo_file("docs/configuration.md");
    for alias in ALIASES.iter() {
        let row_start = format!("| `{}` |", alias.key);
        let row = docs
            .lines()
            .find(|line| line.starts_with(&row_start))
            .unwrap_or_else(|| panic!("no row for `{}`", alias.key));
        assert!(row.contains(&format!("`{}`", alias.var)), "row of `{}` lacks `{}`", alias.key, alias.var);
        assert!(
            docs.contains(&format!("| `{}` | `{}` |", alias.var, alias.key)),
            "the variable table lacks `{}` -> `{}`",
            alias.var,
            alias.key
        );
    }
    for var in [ENVIRONMENT_ENV, CONFIG_DIR_ENV] {
        assert!(docs.contains(&format!("`{var}`")), "{var}");
    }
    for arg in cli::Cli::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(docs.contains(&format!("`--{long}")), "docs lack --{long}");
        }
    }
}

#[test]
fn default_toml_lists_every_key_with_a_comment_and_the_built_in_defaults() {
    let text = repo_file("config/default.toml");
    let table: Table = toml::from_str(&text).expect("config/default.toml parses");
    for (key, default) in all_keys() {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        assert_eq!(
            lookup(&table, &path),
            Some(&default),
            "config/default.toml: `{key}` missing or not the built-in default"
        );
    }
    let settings: Settings = toml::from_str(&text).expect("config/default.toml is Settings");
    assert_eq!(settings, Settings::default());

    // Every `key = value` line is directly preceded by a comment line.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (index, line) in lines.iter().enumerate() {
        let is_key = !line.is_empty() && !line.starts_with('#') && !line.starts_with('[');
        if is_key {
            let previous = index.checked_sub(1).map(|i| lines[i]).unwrap_or("");
            assert!(previous.starts_with('#'), "config/default.toml: no comment above {line:?}");
        }
    }
}

#[test]
fn the_shipped_config_directory_loads_with_and_without_development() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut env = BTreeMap::new();
    env.insert(CONFIG_DIR_ENV.to_owned(), dir.display().to_string());
    assert_eq!(Settings::from_env(&env).expect("config/default.toml"), Settings::default());
    env.insert(ENVIRONMENT_ENV.to_owned(), "development".to_owned());
    let settings = Settings::from_env(&env).expect("config/development.toml");
    assert_eq!(settings.logging.format, LogFormat::Pretty);
    assert_eq!(settings.logging.level, "debug");
}

#[test]
fn protocol_names_and_default_timeout_match_opentelemetry_otlp() {
    use metamcp_telemetry_actors::{ExporterConfig, Protocol};
    assert_eq!(Protocol::Grpc.to_string(), opentelemetry_otlp::OTEL_EXPORTER_OTLP_PROTOCOL_GRPC);
    assert_eq!(Protocol::HttpProtobuf.to_string(), opentelemetry_otlp::OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_PROTOBUF);
    assert_eq!(ExporterConfig::default().timeout, opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT);
}

#[test]
fn captured_headers_come_as_a_list_and_credential_headers_are_refused_by_name() {
    let settings =
        Fixture::new().env("METAMCP_TELEMETRY__CAPTURE_REQUEST_HEADERS", "User-Agent, x-forwarded-for").settings(&[]);
    assert_eq!(settings.telemetry.capture_request_headers, vec!["User-Agent".to_owned(), "x-forwarded-for".to_owned()]);
    for denied in [
        "authorization",
        "Cookie",
        "set-cookie",
        "x-api-key",
        "Mcp-Session-Id",
        "proxy-authorization",
        "x-auth-token",
        "x-client-secret",
    ] {
        let err = Fixture::new()
            .env("METAMCP_TELEMETRY__CAPTURE_REQUEST_HEADERS", &format!("user-agent,{denied}"))
            .error(&[]);
        let text = err.to_string();
        assert!(text.contains("telemetry.capture_request_headers"), "{text}");
        assert!(text.contains(denied), "{text}");
        assert!(text.contains("METAMCP_TELEMETRY__CAPTURE_REQUEST_HEADERS"), "{text}");
    }
    let err = Fixture::new()
        .config_file("default.toml", "[telemetry]\ncapture_request_headers = [\"bad header\"]\n")
        .error(&[]);
    assert!(err.to_string().contains("telemetry.capture_request_headers"), "{err}");
}

#[test]
fn upstream_address_ranges_come_as_lists_and_a_bad_range_names_its_key() {
    let settings = Fixture::new()
        .env("METAMCP_GATEWAY__UPSTREAM_DENY_CIDRS", "10.0.0.0/8, fd00::/8")
        .env("METAMCP_GATEWAY__UPSTREAM_ALLOW_CIDRS", "10.1.0.0/16,169.254.10.7")
        .env("METAMCP_TELEMETRY__PROPAGATE_BAGGAGE", "true")
        .settings(&[]);
    assert_eq!(settings.gateway.upstream_deny_cidrs, ["10.0.0.0/8", "fd00::/8"]);
    assert_eq!(settings.gateway.upstream_allow_cidrs, ["10.1.0.0/16", "169.254.10.7"]);
    assert!(settings.telemetry.propagate_baggage);
    let policy = settings.gateway.outbound_policy().expect("valid ranges");
    assert!(!policy.permits("10.2.0.1".parse().unwrap()));
    assert!(policy.permits("10.1.0.1".parse().unwrap()), "allow wins");
    assert!(policy.permits("169.254.10.7".parse().unwrap()));
    assert!(!policy.permits("169.254.169.254".parse().unwrap()), "the built-in ranges stay");
    assert!(!Settings::default().telemetry.propagate_baggage, "baggage stays home by default");

    for (var, key, value) in [
        ("METAMCP_GATEWAY__UPSTREAM_DENY_CIDRS", "gateway.upstream_deny_cidrs", "10.0.0.0/40"),
        ("METAMCP_GATEWAY__UPSTREAM_ALLOW_CIDRS", "gateway.upstream_allow_cidrs", "metadata.internal"),
    ] {
        let err = Fixture::new().env(var, &format!("127.0.0.0/8,{value}")).error(&[]);
        let (got_key, got_value, allowed, origin) = invalid_parts(&err);
        assert_eq!((got_key, got_value), (key, format!("{value:?}").as_str()), "{err}");
        assert!(allowed.contains("CIDR"), "{err}");
        assert_eq!(origin, &Origin::Env(var.to_owned()));
    }
    let err =
        Fixture::new().config_file("default.toml", "[gateway]\nupstream_deny_cidrs = [\"not a range\"]\n").error(&[]);
    assert!(err.to_string().contains("gateway.upstream_deny_cidrs"), "{err}");
}

#[test]
fn the_scrape_token_is_masked_in_check_config_errors_and_debug() {
    let settings = Fixture::new().env("METAMCP_PROMETHEUS__BEARER_TOKEN", "scr4pe-t0ken").settings(&[]);
    assert_eq!(settings.prometheus.bearer_token, "scr4pe-t0ken");
    assert!(!settings.to_masked_toml().contains("scr4pe-t0ken"));
    assert!(settings.to_masked_toml().contains("bearer_token = \"***\""));
    assert!(!format!("{settings:?}").contains("scr4pe-t0ken"));
    let err = Fixture::new().env("METAMCP_PROMETHEUS__BEARER_TOKEN", "has space").error(&[]);
    let text = err.to_string();
    assert!(text.contains("prometheus.bearer_token") && !text.contains("has space"), "{text}");
    let err = Fixture::new().env("METAMCP_PROMETHEUS__BEARER_TOKEN", "tab\tsecret").error(&[]);
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn span_limits_are_validated_naming_the_key() {
    let err = Fixture::new().env("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3").error(&[]);
    let text = err.to_string();
    assert!(text.contains("span_limits.max_attribute_value_length"), "{text}");
    assert!(text.contains("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"), "{text}");
}

#[test]
fn stdio_policy_and_list_page_size_layer_like_every_gateway_key() {
    let defaults = Settings::default();
    assert!(defaults.gateway.stdio_enabled);
    assert!(defaults.gateway.stdio_allowed_commands.is_empty());
    assert_eq!(defaults.gateway.list_page_size, 100);

    let settings = Fixture::new()
        .config_file("default.toml", "[gateway]\nstdio_allowed_commands = [\"python3\"]\nlist_page_size = 7\n")
        .env("METAMCP_GATEWAY__STDIO_ALLOWED_COMMANDS", "npx, /opt/bin/uvx")
        .env("METAMCP_GATEWAY__STDIO_ENABLED", "no")
        .settings(&["--set", "gateway.list_page_size=25"]);
    assert_eq!(settings.gateway.stdio_allowed_commands, ["npx", "/opt/bin/uvx"], "the environment wins over the file");
    assert!(!settings.gateway.stdio_enabled);
    assert_eq!(settings.gateway.list_page_size, 25, "the flag wins over the file");

    let err = Fixture::new().env("METAMCP_GATEWAY__LIST_PAGE_SIZE", "0").error(&[]);
    let (key, value, allowed, origin) = invalid_parts(&err);
    assert_eq!((key, value), ("gateway.list_page_size", "0"), "{err}");
    assert!(allowed.contains("1 to"), "{err}");
    assert_eq!(origin, &Origin::Env("METAMCP_GATEWAY__LIST_PAGE_SIZE".to_owned()));
    let err = Fixture::new().env("METAMCP_GATEWAY__STDIO_ENABLED", "maybe").error(&[]);
    assert!(err.to_string().contains("gateway.stdio_enabled"), "{err}");
    let err = Fixture::new().config_file("default.toml", "[gateway]\nstdio_allowed_commands = [\"\"]\n").error(&[]);
    assert!(err.to_string().contains("gateway.stdio_allowed_commands"), "{err}");
}
