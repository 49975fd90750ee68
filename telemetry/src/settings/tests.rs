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
