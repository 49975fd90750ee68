//! Vector search over the tools registry: the query embedded, the index searched within an
//! endpoint's servers (and the built-in tools), each search with its span and metrics.

use std::collections::HashSet;
use std::time::Instant;

use opentelemetry::trace::{FutureExt as _, Status, TraceContextExt as _};
use opentelemetry::KeyValue;

use super::{ExecuteError, Gateway, BUILTIN_SERVER};
use crate::storage;

/// One result of a vector search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchResult {
    /// The tool's aggregated name (`{server}__{tool}`, or a built-in's name).
    pub name: String,
    /// The server (`builtin` for built-in tools).
    pub server: String,
    /// The tool's description.
    pub description: String,
    /// Cosine similarity to the query, -1.0 to 1.0.
    pub score: f32,
}

impl Gateway {
    /// Vector search over the tools registry: the tools of `endpoint`'s servers (and the
    /// built-in ones), or of every server when `endpoint` is `None`. Records
    /// `metamcp_vector_searches_total`, the duration, result-count and query-length histograms,
    /// and a span.
    pub async fn search(
        &self,
        query: &str,
        limit: Option<usize>,
        threshold: Option<f64>,
        endpoint: Option<&str>,
    ) -> Result<Vec<SearchResult>, ExecuteError> {
        let started = Instant::now();
        let limit = limit.unwrap_or(self.inner.vector.default_limit).clamp(1, 1000);
        let threshold = threshold.unwrap_or(self.inner.vector.default_threshold).clamp(-1.0, 1.0) as f32;
        let query_chars = query.chars().count();
        let cx = self.inner.telemetry.child_context(
            "vector_search tools".to_owned(),
            vec![
                KeyValue::new("metamcp.search.limit", limit as i64),
                KeyValue::new("metamcp.search.threshold", f64::from(threshold)),
                KeyValue::new("metamcp.search.query_length", query_chars as i64),
                KeyValue::new("metamcp.search.embedder", self.inner.embedder.id().to_owned()),
            ],
        );
        let outcome = self.search_inner(query, limit, threshold, endpoint).with_context(cx.clone()).await;
        let span = cx.span();
        match &outcome {
            Ok(results) => {
                span.set_attribute(KeyValue::new("metamcp.search.results", results.len() as i64));
                self.inner.telemetry.record_vector_search(query_chars, results.len(), started.elapsed());
            }
            Err(err) => {
                span.set_attribute(KeyValue::new("error.type", err.kind()));
                // An embeddings API's error may quote the query: the span says what failed.
                span.set_status(Status::error(err.audit_message()));
                self.inner.telemetry.record_vector_search(query_chars, 0, started.elapsed());
            }
        }
        span.end();
        outcome
    }

    async fn search_inner(
        &self,
        query: &str,
        limit: usize,
        threshold: f32,
        endpoint: Option<&str>,
    ) -> Result<Vec<SearchResult>, ExecuteError> {
        let servers = match endpoint {
            Some(endpoint) => {
                let owned = endpoint.to_owned();
                let servers = self.inner.store.run(move |c| storage::endpoint_servers(c, &owned)).await?;
                let mut names: HashSet<String> = servers.into_iter().filter(|s| s.enabled).map(|s| s.name).collect();
                names.insert(BUILTIN_SERVER.to_owned());
                Some(names)
            }
            None => None,
        };
        let vectors = self.inner.embedder.embed(&[query.to_owned()]).await?;
        let Some(vector) = vectors.into_iter().next() else {
            return Ok(Vec::new());
        };
        let hits = self.inner.index.search(&vector, limit, threshold, servers.as_ref());
        let cache = self.inner.tools.read();
        Ok(hits
            .into_iter()
            .map(|hit| {
                let name = if hit.server == BUILTIN_SERVER { hit.tool.clone() } else { hit.key.clone() };
                let description = cache.get(&name).map(|t| t.description.clone()).unwrap_or_default();
                SearchResult { name, server: hit.server, description, score: hit.score }
            })
            .collect())
    }
}
