//! Scraping a Prometheus `/metrics` endpoint and reading values out of the exposition text.
//!
//! Parsing is `prometheus_parse`'s: a histogram's buckets fold into one sample named after the
//! family, while `NAME_sum` and `NAME_count` stay separate samples. Its label parser splits on `,`
//! and `=`, so label values containing those characters are not read faithfully.

use std::collections::BTreeSet;
use std::time::Duration;

use prometheus_parse::{Sample, Value};

/// Content type every scrape must answer with (the Prometheus text format, version 0.0.4).
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// Bound on one scrape, connection included.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed scrape with the raw text it came from.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The response `Content-Type`.
    pub content_type: String,
    /// The exposition text.
    pub body: String,
    /// The parsed samples.
    pub parsed: prometheus_parse::Scrape,
}

impl Scrape {
    /// Parse exposition text (no HTTP involved).
    pub fn from_text(content_type: &str, body: &str) -> Scrape {
        let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("exposition text does not parse: {e}\n{body}"));
        Scrape {
            content_type: content_type.to_string(),
            body: body.to_string(),
            parsed,
        }
    }

    /// The samples, in parse order.
    pub fn samples(&self) -> &[Sample] {
        &self.parsed.samples
    }
}

/// GET `url`, assert a 2xx answer with a [`TEXT_FORMAT`] content type, and parse it.
pub async fn scrape_async(url: &str) -> Scrape {
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("cannot build HTTP client: {e}"));
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("scrape of {url} failed: {e}"));
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading scrape body of {url} failed: {e}"));
    assert!(
        status.is_success(),
        "scrape of {url} answered {status}: {body}"
    );
    assert!(
        content_type.starts_with(TEXT_FORMAT),
        "scrape of {url}: Content-Type {content_type:?} does not start with {TEXT_FORMAT:?}"
    );
    Scrape::from_text(&content_type, &body)
}

/// [`scrape_async`] from synchronous code. Runs on a private thread and runtime, so it is safe to
/// call from inside an async test too (it blocks that test's thread meanwhile).
pub fn scrape_blocking(url: &str) -> Scrape {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot build scrape runtime: {e}"))
                .block_on(scrape_async(url))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn has_labels(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
}

fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape
        .parsed
        .samples
        .iter()
        .filter(move |s| s.metric == name && has_labels(s, labels))
}

fn scalar(sample: &Sample) -> Option<f64> {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// The value of the single counter/gauge/untyped series `name` whose labels include `labels`;
/// `None` if there is none. Panics if several series match (add labels, or use [`sum`]).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = matching(scrape, name, labels)
        .filter(|s| scalar(s).is_some())
        .collect();
    match found.as_slice() {
        [] => None,
        [one] => scalar(one),
        many => panic!(
            "{} series of {name} match {labels:?}; narrow the labels: {:?}",
            many.len(),
            many.iter()
                .map(|s| s.labels.to_string())
                .collect::<Vec<_>>()
        ),
    }
}

/// The sum over all counter/gauge/untyped series `name` whose labels include `labels`; `None` if
/// none match.
pub fn sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(scrape, name, labels)
        .filter_map(scalar)
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// `NAME_count` of histogram (or summary) `name` for the single series matching `labels`.
pub fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    value(scrape, &format!("{name}_count"), labels)
}

/// `NAME_sum` of histogram (or summary) `name` for the single series matching `labels`.
pub fn histogram_sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    value(scrape, &format!("{name}_sum"), labels)
}

/// Cumulative `(le, count)` buckets of histogram `name` for the single series matching `labels`,
/// in ascending `le` order (`+Inf` last). Panics if several series match.
pub fn histogram_buckets(
    scrape: &Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<Vec<(f64, f64)>> {
    let found: Vec<&Sample> = matching(scrape, name, labels)
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .collect();
    match found.as_slice() {
        [] => None,
        [one] => match &one.value {
            Value::Histogram(buckets) => {
                let mut out: Vec<(f64, f64)> =
                    buckets.iter().map(|b| (b.less_than, b.count)).collect();
                out.sort_by(|a, b| a.0.total_cmp(&b.0));
                Some(out)
            }
            _ => None,
        },
        many => panic!(
            "{} histogram series of {name} match {labels:?}; narrow the labels: {:?}",
            many.len(),
            many.iter()
                .map(|s| s.labels.to_string())
                .collect::<Vec<_>>()
        ),
    }
}

fn lines_of(sample: &Sample) -> usize {
    match &sample.value {
        Value::Histogram(buckets) => buckets.len(),
        Value::Summary(quantiles) => quantiles.len(),
        _ => 1,
    }
}

/// Number of time series in the scrape, i.e. sample lines: each histogram bucket, `_sum` and
/// `_count` counts as one.
pub fn series_count(scrape: &Scrape) -> usize {
    scrape.parsed.samples.iter().map(lines_of).sum()
}

/// Number of distinct label sets of `name` (a histogram counts once per label set, not per bucket).
pub fn label_set_count(scrape: &Scrape, name: &str) -> usize {
    scrape
        .parsed
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| s.labels.to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

/// The distinct values label `label` takes across the series of `name`.
pub fn label_values(scrape: &Scrape, name: &str, label: &str) -> BTreeSet<String> {
    scrape
        .parsed
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| s.labels.get(label).map(str::to_string))
        .collect()
}
