//! The operator files under `docker/` checked by the tools that consume them: promtool (rule
//! unit tests, rule and config checks, the PromQL of the dashboards, the lint of a live
//! `/metrics`), `docker compose config`, and the container's health probe run against the real
//! binary.
//!
//! promtool comes from scripts/setup.sh (Debian's `prometheus` package). Without it these tests
//! are skipped with a `SKIP` line, or fail under `METAMCP_CI=1`. `docker compose` needs no engine
//! for `config`; where the CLI or its compose plugin is missing that test is skipped, in CI too
//! (the one documented exception).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::ops;
use serde_json::Value;

/// Runs `program args` in `dir` (stdin closed) and returns its output.
fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} {args:?} could not run: {e}", program.display()))
}

/// Panics with the command's output unless it exited 0.
fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let Some(promtool) = support::prereq::promtool() else { return };
    let output = run(&promtool, &["test", "rules", "docker/prometheus/alerts.test.yml"], ops::repo());
    assert_success("promtool test rules docker/prometheus/alerts.test.yml", &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("SUCCESS"), "{output:?}");
}

#[test]
fn every_alert_rule_has_a_unit_test() {
    // A rule without a test could fire on anything, or never; promtool does not notice.
    let rules = std::fs::read_to_string(ops::docker_dir().join("prometheus/alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(ops::docker_dir().join("prometheus/alerts.test.yml")).expect("alerts.test.yml");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(str::trim).collect();
    assert!(alerts.len() >= 8, "alerts.yml has its rules: {alerts:?}");
    for alert in alerts {
        let tested = tests.lines().filter(|l| l.trim() == format!("alertname: {alert}")).count();
        let firing = tests.contains(&format!("alertname: {alert}\n        exp_alerts:\n          - exp_labels:"));
        assert!(tested > 0 && firing, "{alert} has no alert_rule_test in alerts.test.yml that expects it to fire");
    }
}

#[test]
fn alert_rules_and_the_prometheus_config_pass_promtool_check() {
    let Some(promtool) = support::prereq::promtool() else { return };
    let output = run(&promtool, &["check", "rules", "docker/prometheus/alerts.yml"], ops::repo());
    assert_success("promtool check rules docker/prometheus/alerts.yml", &output);
    // The compose stack's Prometheus config names its rule file relative to itself, so the
    // checkout's copy checks as is (and the check reads alerts.yml through it).
    let output = run(&promtool, &["check", "config", "docker/prometheus/prometheus.yml"], ops::repo());
    assert_success("promtool check config docker/prometheus/prometheus.yml", &output);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("1 rule files found"), "the config loads alerts.yml: {text}");
}

/// Grafana's interval variables, replaced by a duration so the expression is plain PromQL.
const GRAFANA_INTERVALS: &[&str] = &["$__rate_interval", "$__interval", "$__range"];

#[test]
fn dashboard_queries_parse_as_promql() {
    let Some(promtool) = support::prereq::promtool() else { return };
    // Each target's expr becomes a recording rule; `promtool check rules` parses them all.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut count = 0;
    for (path, text) in ops::dashboard_files() {
        let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
        for query in ops::dashboard_queries(&path, &dashboard) {
            if query.origin.contains(": variable ") {
                continue; // label_values(...) is Grafana's, not PromQL
            }
            let mut expr = query.expr.clone();
            for variable in GRAFANA_INTERVALS {
                expr = expr.replace(variable, "5m");
            }
            assert!(!expr.contains("$__"), "{}: unknown Grafana variable in {expr}", query.origin);
            count += 1;
            // A JSON string is a valid YAML double-quoted scalar.
            rules.push_str(&format!(
                "      - record: dashboard:query_{count}\n        expr: {}\n        # {}\n",
                serde_json::to_string(&expr).expect("string"),
                query.origin.replace('\n', " ")
            ));
        }
    }
    assert!(count > 20, "the dashboards have their queries ({count})");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboards.rules.yml");
    std::fs::write(&file, &rules).expect("write rules");
    let output = run(&promtool, &["check", "rules", file.to_str().expect("utf-8 path")], dir.path());
    assert_success(&format!("promtool check rules on the dashboards' queries:\n{rules}"), &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("{count} rules found")), "{output:?}");
}

#[test]
fn the_service_metrics_pass_promtool_check_metrics() {
    let Some(promtool) = support::prereq::promtool() else { return };
    let service = ops::start_service();
    ops::drive_traffic(&service);
    let url = service.metrics_url();
    // Lint the exposition once every family the traffic touches has its samples.
    let mut scrape = support::prom::scrape_blocking(&url);
    support::wait::assert_eventually(
        ops::SCRAPE_WAIT,
        Duration::from_millis(200),
        "tool, vector search and export histograms in /metrics",
        || {
            scrape = support::prom::scrape_blocking(&url);
            [
                "metamcp_tool_execution_duration_seconds_count",
                "metamcp_vector_search_duration_seconds_count",
                "metamcp_request_duration_seconds_count",
                "metamcp_telemetry_export_duration_seconds_count",
            ]
            .iter()
            .all(|name| support::prom::sum(&scrape, name, &[]).is_some_and(|v| v > 0.0))
        },
    );
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(scrape.body.as_bytes()).expect("write the scrape to promtool");
    }
    let output = child.wait_with_output().expect("promtool finishes");
    let findings = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics reports problems in /metrics ({}):\n{findings}",
        output.status
    );
}

#[test]
fn the_container_health_probe_answers_from_the_live_endpoint() {
    let Some(bash) = support::prereq::bash() else { return };
    let service = ops::start_service();
    let probe = ops::docker_dir().join("healthcheck.sh");
    let probe_on = |port: u16| {
        Command::new(&bash)
            .arg(&probe)
            .env_clear()
            .env("METAMCP_SERVER__BIND", format!("0.0.0.0:{port}"))
            .stdin(Stdio::null())
            .output()
            .expect("the probe runs")
    };
    let healthy = probe_on(service.api.port());
    assert_success("docker/healthcheck.sh against the API port", &healthy);
    // The metrics listener has no /health/live: a 404 is unhealthy.
    let wrong = probe_on(service.metrics.expect("metrics listener").port());
    assert!(!wrong.status.success(), "a 404 is not healthy: {wrong:?}");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("404"), "{wrong:?}");
    // Nothing listening: unhealthy, promptly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    assert!(!probe_on(closed).status.success(), "a closed port is not healthy");
}

/// `./relative/path` sources of the compose file's bind mounts.
fn compose_mount_sources(compose: &str) -> Vec<String> {
    compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- ./"))
        .map(|mount| mount.split(':').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_compose_stack_mounts_only_files_under_docker() {
    let docker = ops::docker_dir();
    let compose = std::fs::read_to_string(docker.join("docker-compose.yml")).expect("docker-compose.yml");
    let mounts = compose_mount_sources(&compose);
    assert!(mounts.len() >= 5, "the collector, Prometheus and Grafana configs are mounted: {mounts:?}");
    for mount in &mounts {
        let path = docker.join(mount);
        assert!(!mount.contains(".."), "{mount} leaves docker/");
        assert!(path.exists(), "docker-compose.yml mounts ./{mount}, which does not exist under docker/");
    }
    for mounted in
        ["otel-collector/config.yaml", "prometheus/prometheus.yml", "prometheus/alerts.yml", "grafana/dashboards"]
    {
        assert!(mounts.iter().any(|m| m == mounted), "{mounted} is mounted: {mounts:?}");
    }
    // The image's build context is the repository root, with docker/Dockerfile in it, and every
    // path the Dockerfile copies exists.
    assert!(compose.contains("context: ..") && compose.contains("dockerfile: docker/Dockerfile"));
    let dockerfile = std::fs::read_to_string(docker.join("Dockerfile")).expect("Dockerfile");
    let mut copied = Vec::new();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(ops::repo().join(source).exists(), "Dockerfile copies {source}, which does not exist");
            copied.push(source.trim_end_matches('/').to_owned());
        }
    }
    // Cargo loads the manifest of every workspace member, so the image build needs them all.
    let manifest = std::fs::read_to_string(ops::repo().join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest.lines().find(|l| l.starts_with("members")).expect("a members line");
    for member in members.split('"').skip(1).step_by(2).filter(|m| *m != ".") {
        assert!(copied.iter().any(|c| c == member), "Dockerfile does not copy the workspace member {member}");
    }
}

#[test]
fn docker_compose_config_renders_the_stack_with_and_without_the_postgres_profile() {
    // The documented exception: skipped even under METAMCP_CI=1 (CI machines have no docker).
    let Some(docker) = support::prereq::docker_compose() else { return };
    let compose = "docker/docker-compose.yml";
    let output = run(&docker, &["compose", "-f", compose, "config", "--quiet"], ops::repo());
    assert_success("docker compose config", &output);
    let services = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["compose", "-f", compose];
        args.extend_from_slice(extra);
        args.extend(["config", "--services"]);
        let output = run(&docker, &args, ops::repo());
        assert_success(&format!("docker compose {extra:?} config --services"), &output);
        let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
        names.sort();
        names
    };
    assert_eq!(services(&[]), ["gateway", "grafana", "jaeger", "otel-collector", "prometheus"]);
    assert_eq!(
        services(&["--profile", "postgres"]),
        ["gateway", "gateway-a", "gateway-b", "grafana", "jaeger", "otel-collector", "postgres", "prometheus"]
    );
    let output = run(&docker, &["compose", "-f", compose, "--profile", "postgres", "config", "--quiet"], ops::repo());
    assert_success("docker compose --profile postgres config", &output);
}
