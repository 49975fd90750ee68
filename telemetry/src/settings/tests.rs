//! The library's own document: it reads the files and the environment it shares with the
//! gateway, leaves the gateway's sections alone and refuses everything else it does not know.
//! (The layering itself is tested with the gateway's document, in the gateway's settings tests.)

use std::collections::BTreeMap;

use super::*;

fn env_with_config(dir: &Path, pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> =
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    env.insert(CONFIG_DIR_ENV.to_owned(), dir.display().to_string());
    env
}

#[test]
fn the_gateways_sections_are_read_past() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("default.toml"),
        "[telemetry]\nservice_name = \"shop\"\n[database]\nurl = \"sqlite://x.db\"\n[admin]\ntoken = \"t\"\n",
    )
    .expect("write config");
    let env =
        env_with_config(dir.path(), &[("METAMCP_GATEWAY__MAX_BODY_BYTES", "1"), ("OTLP_ENDPOINT", "http://c:4317")]);
    let settings = Settings::from_env(&env).expect("the gateway's sections do not stop the library");
    assert_eq!(settings.telemetry.service_name, "shop");
    assert_eq!(settings.exporter.endpoint, "http://c:4317");
}

#[test]
fn any_other_unknown_section_or_key_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("default.toml"), "[exportr]\nendpoint = \"http://c:4317\"\n").expect("write config");
    let err = Settings::from_env(&env_with_config(dir.path(), &[])).expect_err("a misspelt section");
    assert!(err.to_string().contains("unknown key `exportr`"), "{err}");

    let empty = tempfile::tempdir().expect("temp dir");
    let err = Settings::from_env(&env_with_config(empty.path(), &[("METAMCP_EXPORTER__NOPE", "1")]))
        .expect_err("a misspelt key");
    assert!(err.to_string().contains("unknown key `exporter.nope`"), "{err}");
}

#[test]
fn the_library_masks_its_own_secrets() {
    let mut settings = Settings::default();
    settings.prometheus.bearer_token = "scrape-secret".to_owned();
    settings.exporter.headers.insert("x-api-key".to_owned(), "header-secret".to_owned());
    settings.exporter.endpoint = "https://user:pw@collector:4318".to_owned();
    let text = settings.to_masked_toml();
    for secret in ["scrape-secret", "header-secret", "user:pw"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    assert!(text.contains(MASK));
}

#[test]
fn tail_sampling_is_read_from_its_section_and_needs_a_sampler_that_records_every_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("default.toml"),
        "[sampling]\nmode = \"tail\"\nkeep_ratio = 0.25\nkeep_slower_than = \"250ms\"\nmax_pending_traces = 64\n",
    )
    .expect("write config");
    let settings = Settings::from_env(&env_with_config(dir.path(), &[("METAMCP_SAMPLING__MAX_DECISION_WAIT", "5s")]))
        .expect("tail sampling with the default sampler");
    assert!(settings.sampling.is_tail());
    assert_eq!(settings.sampling.keep_ratio, 0.25);
    assert_eq!(settings.sampling.keep_slower_than, Duration::from_millis(250));
    assert_eq!(settings.sampling.max_pending_traces, 64);
    assert_eq!(settings.sampling.max_decision_wait, Duration::from_secs(5));

    for sampler in ["always_off", "traceidratio", "parentbased_traceidratio"] {
        let err = Settings::from_env(&env_with_config(dir.path(), &[("OTEL_TRACES_SAMPLER", sampler)]))
            .expect_err("a head sampler that drops traces under tail sampling");
        let text = err.to_string();
        assert!(text.contains("telemetry.sampler") && text.contains("sampling.mode"), "{text}");
    }
    let settings = Settings::from_env(&env_with_config(dir.path(), &[("OTEL_TRACES_SAMPLER", "always_on")]))
        .expect("always_on records every trace");
    assert!(settings.sampling.is_tail());

    let err = Settings::from_env(&env_with_config(dir.path(), &[("METAMCP_SAMPLING__KEEP_RATIO", "2")]))
        .expect_err("a ratio above 1");
    assert!(err.to_string().contains("sampling.keep_ratio"), "{err}");
    let err = Settings::from_env(&env_with_config(dir.path(), &[("METAMCP_SAMPLING__MODE", "sometimes")]))
        .expect_err("an unknown mode");
    assert!(err.to_string().contains("sampling.mode"), "{err}");
    // Head sampling (the default) takes any sampler.
    let empty = tempfile::tempdir().expect("temp dir");
    let settings = Settings::from_env(&env_with_config(empty.path(), &[("OTEL_TRACES_SAMPLER", "always_off")]))
        .expect("head sampling with any sampler");
    assert!(!settings.sampling.is_tail());
}
