//! Scraping a Prometheus `/metrics` endpoint and reading values out of the exposition text.
//!
//! Parsing is `openmetrics_parser::prometheus::parse_prometheus`, a grammar (pest) for the text
//! format 0.0.4: label values are read up to their closing quote with the `\\`, `\"` and `\n`
//! escapes resolved, so values such as `/items/{id}` or `a,b=c` come back as written. The parser
//! also checks the exposition is well formed (one family per `# TYPE`, histograms cumulative with
//! a `+Inf` bucket and both `_sum` and `_count`, no duplicate series) and panics otherwise. It is
//! stricter than the format in two ways the `prometheus` crate's encoder never runs into: every
//! series of a family must have the same label names, and samples without a `# TYPE` line are one
//! family only while they share a name.
//!
//! The parsed families are flattened back into [`Line`]s, one per sample line of the text, so a
//! histogram contributes each `NAME_bucket`, `NAME_sum` and `NAME_count` line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openmetrics_parser::{PrometheusType, PrometheusValue};

/// Content type every scrape must answer with (the Prometheus text format, version 0.0.4).
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// Bound on one scrape, connection included.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `# TYPE` of the family a sample line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The family the line belongs to (the name in its `# TYPE` line).
    pub family: String,
    /// The family's type.
    pub kind: Kind,
    /// The sample name as written: the family name, or it plus `_bucket`, `_sum` or `_count`.
    pub name: String,
    /// The labels, unescaped; without a bucket's `le` or a quantile's `quantile`.
    pub labels: BTreeMap<String, String>,
    /// A bucket's `le` or a quantile's `quantile`.
    pub bound: Option<f64>,
    /// The sample value.
    pub value: f64,
}

/// A parsed scrape with the raw text it came from.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The response `Content-Type`.
    pub content_type: String,
    /// The exposition text.
    pub body: String,
    /// The sample lines, family by family in family-name order, each family's in text order
    /// (a histogram's buckets, then `_sum`, then `_count`).
    pub parsed: Vec<Line>,
}

impl Scrape {
    /// Parse exposition text (no HTTP involved). Panics if it is not valid text format 0.0.4.
    pub fn from_text(content_type: &str, body: &str) -> Scrape {
        Scrape { content_type: content_type.to_string(), body: body.to_string(), parsed: parse(body) }
    }

    /// The sample lines (see [`Scrape::parsed`]).
    pub fn samples(&self) -> &[Line] {
        &self.parsed
    }
}

fn parse(body: &str) -> Vec<Line> {
    // The grammar wants at least one family and a newline after every sample line; an empty
    // exposition is valid and the final newline is a formality.
    if body.lines().all(|l| l.trim().is_empty()) {
        return Vec::new();
    }
    let text = if body.ends_with('\n') { body.to_string() } else { format!("{body}\n") };
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("exposition text does not parse: {e}\n{body}"));

    let mut families: Vec<_> = exposition.families.into_values().collect();
    families.sort_by(|a, b| a.family_name.cmp(&b.family_name));
    let mut lines = Vec::new();
    for family in families {
        let kind = match family.family_type {
            PrometheusType::Counter => Kind::Counter,
            PrometheusType::Gauge => Kind::Gauge,
            PrometheusType::Histogram => Kind::Histogram,
            PrometheusType::Summary => Kind::Summary,
            PrometheusType::Unknown => Kind::Untyped,
        };
        for sample in family.iter_samples() {
            let labels: BTreeMap<String, String> = sample
                .get_labelset()
                .unwrap_or_else(|e| panic!("sample of {} has no label set: {e}", family.family_name))
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut push = |suffix: &str, bound: Option<f64>, value: f64| {
                lines.push(Line {
                    family: family.family_name.clone(),
                    kind,
                    name: format!("{}{suffix}", family.family_name),
                    labels: labels.clone(),
                    bound,
                    value,
                })
            };
            match &sample.value {
                PrometheusValue::Counter(c) => push("", None, c.value.as_f64()),
                PrometheusValue::Gauge(v) | PrometheusValue::Unknown(v) => push("", None, v.as_f64()),
                PrometheusValue::Histogram(h) => {
                    for bucket in &h.buckets {
                        push("_bucket", Some(bucket.upper_bound), bucket.count.as_f64());
                    }
                    if let Some(sum) = h.sum {
                        push("_sum", None, sum.as_f64());
                    }
                    if let Some(count) = h.count {
                        push("_count", None, count as f64);
                    }
                }
                PrometheusValue::Summary(s) => {
                    for quantile in &s.quantiles {
                        push("", Some(quantile.quantile), quantile.value.as_f64());
                    }
                    if let Some(sum) = s.sum {
                        push("_sum", None, sum.as_f64());
                    }
                    if let Some(count) = s.count {
                        push("_count", None, count as f64);
                    }
                }
            }
        }
    }
    lines
}

/// GET `url`, assert a 2xx answer with a [`TEXT_FORMAT`] content type, and parse it.
pub async fn scrape_async(url: &str) -> Scrape {
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("cannot build HTTP client: {e}"));
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("scrape of {url} failed: {e}"));
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await.unwrap_or_else(|e| panic!("reading scrape body of {url} failed: {e}"));
    assert!(status.is_success(), "scrape of {url} answered {status}: {body}");
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

fn has_labels(line: &Line, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| line.labels.get(*k).map(String::as_str) == Some(*v))
}

/// The single line among `candidates`, `None` if there is none; panics naming `what` if several.
fn single<'a>(candidates: impl Iterator<Item = &'a Line>, what: &str, labels: &[(&str, &str)]) -> Option<&'a Line> {
    let found: Vec<&Line> = candidates.collect();
    match found.as_slice() {
        [] => None,
        [one] => Some(one),
        many => panic!(
            "{} series of {what} match {labels:?}; narrow the labels: {:?}",
            many.len(),
            many.iter().map(|l| &l.labels).collect::<Vec<_>>()
        ),
    }
}

/// The lines named `name` with a plain value (not a bucket or quantile) whose labels include
/// `labels`.
fn scalars<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Line> + 'a {
    scrape.parsed.iter().filter(move |l| l.name == name && l.bound.is_none() && has_labels(l, labels))
}

/// The value of the single series named `name` (a counter, gauge or untyped sample, or a
/// histogram's/summary's `NAME_sum`/`NAME_count`) whose labels include `labels`; `None` if there
/// is none. Panics if several series match (add labels, or use [`sum`]).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    single(scalars(scrape, name, labels), name, labels).map(|l| l.value)
}

/// The sum over all series named `name` (as for [`value`]) whose labels include `labels`; `None`
/// if none match.
pub fn sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scalars(scrape, name, labels).map(|l| l.value).fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// The `NAME{suffix}` line of histogram or summary `name` for the single series matching `labels`.
fn aggregate(scrape: &Scrape, name: &str, suffix: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let line_name = format!("{name}{suffix}");
    let candidates = scalars(scrape, &line_name, labels)
        .filter(|l| l.family == name && matches!(l.kind, Kind::Histogram | Kind::Summary));
    single(candidates, &line_name, labels).map(|l| l.value)
}

/// `NAME_count` of histogram (or summary) `name` for the single series matching `labels`.
pub fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    aggregate(scrape, name, "_count", labels)
}

/// `NAME_sum` of histogram (or summary) `name` for the single series matching `labels`.
pub fn histogram_sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    aggregate(scrape, name, "_sum", labels)
}

/// Cumulative `(le, count)` buckets of histogram `name` for the single series matching `labels`
/// (given without `le`), in ascending `le` order (`+Inf` last). Panics if several series match.
pub fn histogram_buckets(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
    let bucket_name = format!("{name}_bucket");
    let mut series: BTreeMap<&BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for line in scrape
        .parsed
        .iter()
        .filter(|l| l.family == name && l.kind == Kind::Histogram && l.name == bucket_name && has_labels(l, labels))
    {
        let le = line.bound.expect("a bucket line has an `le`");
        series.entry(&line.labels).or_default().push((le, line.value));
    }
    if series.len() > 1 {
        panic!(
            "{} histogram series of {name} match {labels:?}; narrow the labels: {:?}",
            series.len(),
            series.keys().collect::<Vec<_>>()
        );
    }
    series.into_values().next().map(|mut buckets| {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    })
}

/// Number of time series in the scrape, i.e. sample lines: each histogram bucket, `_sum` and
/// `_count` counts as one.
pub fn series_count(scrape: &Scrape) -> usize {
    scrape.parsed.len()
}

/// The lines of family `name`, or named `name` (e.g. a histogram's `NAME_count`).
fn of_family<'a>(scrape: &'a Scrape, name: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
    scrape.parsed.iter().filter(move |l| l.family == name || l.name == name)
}

/// Number of distinct label sets of `name` (a histogram counts once per label set, not per bucket).
pub fn label_set_count(scrape: &Scrape, name: &str) -> usize {
    of_family(scrape, name).map(|l| &l.labels).collect::<BTreeSet<_>>().len()
}

/// The distinct values label `label` takes across the series of `name`.
pub fn label_values(scrape: &Scrape, name: &str, label: &str) -> BTreeSet<String> {
    of_family(scrape, name).filter_map(|l| l.labels.get(label).cloned()).collect()
}

/// The `Accept` header of a scrape that asks for OpenMetrics (what Prometheus sends by default).
pub const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// Content type an OpenMetrics scrape must answer with.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One exemplar of an OpenMetrics scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedExemplar {
    /// The family (histogram name, or counter name without `_total`).
    pub family: String,
    /// The series labels, without `le`.
    pub labels: BTreeMap<String, String>,
    /// The bucket's upper bound (`None` on a counter).
    pub le: Option<f64>,
    /// The exemplar's own labels (`trace_id`, `span_id`).
    pub exemplar_labels: BTreeMap<String, String>,
    /// The exemplar value.
    pub value: f64,
    /// The exemplar timestamp in seconds, if given.
    pub timestamp: Option<f64>,
}

/// A parsed OpenMetrics scrape.
#[derive(Debug, Clone)]
pub struct OpenMetricsScrape {
    /// The response `Content-Type`.
    pub content_type: String,
    /// The exposition text.
    pub body: String,
    /// Family name → type, as `# TYPE` declares it (`counter`, `histogram`, …).
    pub types: BTreeMap<String, String>,
    /// Every exemplar, with the series and bucket it sits on.
    pub exemplars: Vec<ScrapedExemplar>,
}

/// Parses OpenMetrics text with `openmetrics_parser::openmetrics::parse_openmetrics` (a grammar
/// of the OpenMetrics 1.0 ABNF that also checks the semantics: `# EOF`, counters' `_total`,
/// cumulative buckets with `+Inf`, exemplars only where the format allows them). Panics naming the
/// error if the text is not valid OpenMetrics.
pub fn parse_openmetrics(content_type: &str, body: &str) -> OpenMetricsScrape {
    use openmetrics_parser::OpenMetricsValue;
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(body)
        .unwrap_or_else(|e| panic!("OpenMetrics text does not parse: {e}\n{body}"));
    let mut types = BTreeMap::new();
    let mut exemplars = Vec::new();
    for family in exposition.families.values() {
        types.insert(family.family_name.clone(), format!("{:?}", family.family_type).to_lowercase());
        for sample in family.iter_samples() {
            let labels: BTreeMap<String, String> = sample
                .get_labelset()
                .unwrap_or_else(|e| panic!("sample of {} has no label set: {e}", family.family_name))
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut push = |le: Option<f64>, exemplar: &openmetrics_parser::Exemplar| {
                exemplars.push(ScrapedExemplar {
                    family: family.family_name.clone(),
                    labels: labels.clone(),
                    le,
                    exemplar_labels: exemplar.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    value: exemplar.id,
                    timestamp: exemplar.timestamp,
                })
            };
            match &sample.value {
                OpenMetricsValue::Histogram(histogram) => {
                    for bucket in &histogram.buckets {
                        if let Some(exemplar) = &bucket.exemplar {
                            push(Some(bucket.upper_bound), exemplar);
                        }
                    }
                }
                OpenMetricsValue::Counter(counter) => {
                    if let Some(exemplar) = &counter.exemplar {
                        push(None, exemplar);
                    }
                }
                _ => {}
            }
        }
    }
    OpenMetricsScrape { content_type: content_type.to_owned(), body: body.to_owned(), types, exemplars }
}

/// GET `url` with `accept` (none when `None`): the status, Content-Type and body.
pub async fn get_async(url: &str, accept: Option<&str>) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("cannot build HTTP client: {e}"));
    let mut request = client.get(url);
    if let Some(accept) = accept {
        request = request.header(reqwest::header::ACCEPT, accept);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("scrape of {url} failed: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await.unwrap_or_else(|e| panic!("reading scrape body of {url} failed: {e}"));
    (status, content_type, body)
}

/// GET `url` asking for OpenMetrics, assert a 200 answer with the OpenMetrics content type, and
/// parse it with [`parse_openmetrics`].
pub async fn scrape_openmetrics_async(url: &str) -> OpenMetricsScrape {
    let (status, content_type, body) = get_async(url, Some(OPENMETRICS_ACCEPT)).await;
    assert_eq!(status, 200, "OpenMetrics scrape of {url}: {body}");
    assert_eq!(content_type, OPENMETRICS_FORMAT, "OpenMetrics scrape of {url}");
    parse_openmetrics(&content_type, &body)
}
