//! Embedders turn tool descriptions and search queries into L2-normalised vectors for the tools
//! index: [`HashingEmbedder`], offline and deterministic (feature hashing of words, character
//! trigrams and word bigrams), and [`OpenAiEmbedder`], a client of an OpenAI-compatible
//! `/v1/embeddings` API. [`from_settings`] picks one from `[vector]`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::Deserialize;

use crate::config::{EmbedderKind, VectorSettings};

/// Turns texts into vectors of [`dimensions`](Embedder::dimensions) floats, L2-normalised, so the
/// cosine similarity of two of them is their dot product.
pub trait Embedder: Send + Sync + fmt::Debug {
    /// Identifies the embedder and its model (`hashing-384`, `openai:text-embedding-3-small`);
    /// stored beside vectors, so a change of embedder is known to require re-embedding.
    fn id(&self) -> &str;

    /// Length of the vectors returned; 0 while unknown (a remote model before its first answer).
    fn dimensions(&self) -> usize;

    /// One vector per text, in the order of `texts`.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The embeddings API could not be reached or answered with an error status.
    #[error("embeddings API request failed: {0}")]
    Http(String),
    /// The embeddings API did not answer within `vector.request_timeout`.
    #[error("embeddings API request timed out")]
    Timeout,
    /// The embeddings API answered something that is not the expected embeddings.
    #[error("embeddings API answered unexpectedly: {0}")]
    Protocol(String),
    /// The settings cannot make an embedder.
    #[error("embedder configuration: {0}")]
    Config(String),
}

impl EmbedError {
    /// The failure's class: `http`, `timeout`, `protocol` or `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            EmbedError::Http(_) => "http",
            EmbedError::Timeout => "timeout",
            EmbedError::Protocol(_) => "protocol",
            EmbedError::Config(_) => "config",
        }
    }
}

/// The embedder configured by `settings`: [`HashingEmbedder`] or [`OpenAiEmbedder`].
pub fn from_settings(settings: &VectorSettings) -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(match settings.embedder {
        EmbedderKind::Hashing => Arc::new(HashingEmbedder::new(settings.dimensions)),
        EmbedderKind::Openai => Arc::new(OpenAiEmbedder::new(settings)?),
    })
}

/// Scales `vector` to unit length in place; a zero vector stays zero.
pub(crate) fn l2_normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        let scale = (1.0 / norm) as f32;
        vector.iter_mut().for_each(|x| *x *= scale);
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing embedder
// ---------------------------------------------------------------------------------------------

/// Weight of a whole word.
const WORD_WEIGHT: f32 = 1.0;
/// Weight of each character trigram of `#word#`: shares meaning between forms of a word
/// (`forecast`, `forecasts`) without outweighing the word itself.
const TRIGRAM_WEIGHT: f32 = 0.5;
/// Weight of two adjacent words (stop words removed).
const BIGRAM_WEIGHT: f32 = 0.5;

/// Words too common in tool descriptions and queries to say anything about a tool.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "any", "are", "as", "at", "be", "by", "can", "do", "for", "from", "i", "in", "into", "is", "it",
    "its", "me", "my", "of", "on", "or", "so", "some", "that", "the", "this", "to", "with", "you", "your",
];

/// Feature namespaces, hashed first so a word, a trigram and a bigram never share a hash.
const WORD: u8 = b'w';
const TRIGRAM: u8 = b't';
const BIGRAM: u8 = b'b';

/// Offline, deterministic embedder: signed feature hashing of words (`snake_case`, `camelCase`
/// and `kebab-case` split into their parts, the joined form kept too), character trigrams and
/// word bigrams into a fixed number of buckets, then L2-normalised. The hash is FNV-1a 64 with a
/// fixed finaliser, so vectors are identical across runs, builds and platforms.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
    id: String,
}

impl HashingEmbedder {
    /// An embedder of `dimensions` buckets (at least 1).
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(1);
        Self { dimensions, id: format!("hashing-{dimensions}") }
    }

    /// The vector of one text; all zeros when it has no word outside the stop words.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimensions];
        let mut previous: Option<String> = None;
        let mut padded: Vec<char> = Vec::with_capacity(32);
        for_each_word(text, |word, joined| {
            if STOP_WORDS.contains(&word) {
                return;
            }
            self.add(&mut vector, Feature::new(WORD).str(word), WORD_WEIGHT);
            if joined {
                // The joined form of `get_weather` matches a query that writes `getweather`; its
                // trigrams would repeat those of its parts.
                return;
            }
            padded.clear();
            padded.push('#');
            padded.extend(word.chars());
            padded.push('#');
            for window in padded.windows(3) {
                let mut feature = Feature::new(TRIGRAM);
                window.iter().for_each(|&c| feature.char(c));
                self.add(&mut vector, feature, TRIGRAM_WEIGHT);
            }
            if let Some(previous) = &previous {
                self.add(&mut vector, Feature::new(BIGRAM).str(previous).str(" ").str(word), BIGRAM_WEIGHT);
            }
            previous = Some(word.to_owned());
        });
        l2_normalize(&mut vector);
        vector
    }

    fn add(&self, vector: &mut [f32], feature: Feature, weight: f32) {
        let hash = feature.finish();
        // `dimensions` is at least 1 and the remainder is below it, so the index is in range.
        let bucket = (hash % self.dimensions as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        if let Some(slot) = vector.get_mut(bucket) {
            *slot += sign * weight;
        }
    }
}

impl Embedder for HashingEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let vectors = texts.iter().map(|text| self.embed_one(text)).collect();
        Box::pin(futures_util::future::ready(Ok(vectors)))
    }
}

/// FNV-1a 64 over a feature's namespace and bytes, finished with the MurmurHash3 `fmix64` mixer
/// so that both the low bits (the bucket) and the top bit (the sign) are well distributed.
struct Feature(u64);

impl Feature {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new(namespace: u8) -> Self {
        let mut feature = Self(Self::OFFSET);
        feature.bytes(&[namespace]);
        feature
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn str(mut self, s: &str) -> Self {
        self.bytes(s.as_bytes());
        self
    }

    fn char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.bytes(c.encode_utf8(&mut buf).as_bytes());
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }
}

/// Calls `f(word, joined)` for each lowercase word of `text`, in order. A word is a run of
/// alphanumeric characters; a compound such as `get_weather`, `getWeather` or `get-weather` gives
/// its parts (`get`, `weather`, `joined == false`) and then its joined form (`getweather`,
/// `joined == true`).
fn for_each_word(text: &str, mut f: impl FnMut(&str, bool)) {
    let chars: Vec<char> = text.chars().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        // A compound: alphanumerics joined by `_` or `-` (a connector must sit between two).
        let start = i;
        let mut end = i;
        while end < chars.len() {
            let c = chars[end];
            let connector = (c == '_' || c == '-') && chars.get(end + 1).is_some_and(|n| n.is_alphanumeric());
            if c.is_alphanumeric() || connector {
                end += 1;
            } else {
                break;
            }
        }
        split_compound(&chars[start..end], &mut parts);
        for part in &parts {
            f(part, false);
        }
        if parts.len() > 1 {
            f(&parts.concat(), true);
        }
        i = end;
    }
}

/// Splits a compound at `_`, `-` and case changes (`getHTTPResponse` → `get`, `http`, `response`).
fn split_compound(compound: &[char], parts: &mut Vec<String>) {
    parts.clear();
    let mut current = String::new();
    for (k, &c) in compound.iter().enumerate() {
        if c == '_' || c == '-' {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            continue;
        }
        let previous = if k > 0 { compound.get(k - 1).copied() } else { None };
        let next = compound.get(k + 1).copied();
        let boundary = c.is_uppercase()
            && previous.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
        if boundary && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        parts.push(current);
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible embedder
// ---------------------------------------------------------------------------------------------

/// Texts sent per request; OpenAI accepts up to 2048, smaller batches keep each answer modest.
const MAX_BATCH: usize = 256;
/// Largest answer read from the embeddings API (a batch of 256 × 3072 floats as JSON is ≈ 16 MiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest error body quoted in an [`EmbedError::Http`].
const MAX_QUOTED_ERROR: usize = 300;

/// Client of an OpenAI-compatible embeddings API: `POST {openai_url}/v1/embeddings` with
/// `{"model", "input"}`, `Authorization: Bearer` when a key is set, the W3C `traceparent` of the
/// current span, and `vector.request_timeout` per request. Vectors are L2-normalised; their
/// length is learnt from the first answer and every later answer must agree.
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: String,
    id: String,
    dimensions: AtomicUsize,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &metamcp_telemetry::redact::redact(&self.endpoint))
            .field("model", &self.model)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "<redacted>" })
            .field("dimensions", &self.dimensions.load(Ordering::Relaxed))
            .finish()
    }
}

impl OpenAiEmbedder {
    /// A client for `settings.openai_url` and `settings.openai_model`; makes no request yet.
    pub fn new(settings: &VectorSettings) -> Result<Self, EmbedError> {
        let base = settings.openai_url.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EmbedError::Config(format!("vector.openai_url {base:?} is not an http:// or https:// URL")));
        }
        let model = settings.openai_model.trim();
        if model.is_empty() {
            return Err(EmbedError::Config("vector.openai_model is empty".to_owned()));
        }
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint: format!("{base}/v1/embeddings"),
            model: model.to_owned(),
            api_key: settings.openai_api_key.clone(),
            id: format!("openai:{model}"),
            dimensions: AtomicUsize::new(0),
        })
    }

    /// Embeds a short text once to learn the model's vector length, and returns it.
    pub async fn probe(&self) -> Result<usize, EmbedError> {
        self.embed(&["dimensions probe".to_owned()]).await?;
        Ok(self.dimensions())
    }

    async fn request(&self, batch: &[String], trace: &HashMap<String, String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut request =
            self.client.post(&self.endpoint).json(&serde_json::json!({ "model": self.model, "input": batch }));
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        for (name, value) in trace {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request.send().await.map_err(http_error)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(EmbedError::Protocol(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let endpoint = metamcp_telemetry::redact::redact(&self.endpoint);
            return Err(EmbedError::Http(format!("{endpoint} answered {status}: {}", quote_error(&body))));
        }
        let vectors = parse_embeddings(&body, batch.len())?;
        if let Some(first) = vectors.first() {
            let got = first.len();
            match self.dimensions.compare_exchange(0, got, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {}
                Err(known) if known == got => {}
                Err(known) => {
                    return Err(EmbedError::Protocol(format!(
                        "vectors of {got} dimensions where earlier answers had {known}"
                    )))
                }
            }
        }
        Ok(vectors)
    }
}

impl Embedder for OpenAiEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimensions(&self) -> usize {
        self.dimensions.load(Ordering::Acquire)
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        // Taken now, from the caller's span, whatever context later polls the future.
        let mut trace = HashMap::new();
        TraceContextPropagator::new().inject_context(&opentelemetry::Context::current(), &mut trace);
        Box::pin(async move {
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(MAX_BATCH) {
                vectors.extend(self.request(batch, &trace).await?);
            }
            Ok(vectors)
        })
    }
}

fn http_error(error: reqwest::Error) -> EmbedError {
    if error.is_timeout() {
        return EmbedError::Timeout;
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    // reqwest quotes the URL, credentials and all.
    EmbedError::Http(metamcp_telemetry::redact::redact(&message).into_owned())
}

/// The `error.message` of an OpenAI error body, or the start of the body as text.
fn quote_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        message: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error.message,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED_ERROR) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

/// The vectors of an embeddings answer for `expected` inputs, ordered by `index`, checked and
/// L2-normalised.
fn parse_embeddings(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    #[derive(Deserialize)]
    struct Answer {
        data: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        index: usize,
        embedding: Vec<f32>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| EmbedError::Protocol(format!("not embeddings: {e}")))?;
    if answer.data.len() != expected {
        return Err(EmbedError::Protocol(format!("{} embeddings for {expected} inputs", answer.data.len())));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in answer.data {
        let slot = slots
            .get_mut(item.index)
            .ok_or_else(|| EmbedError::Protocol(format!("index {} out of range for {expected} inputs", item.index)))?;
        if slot.replace(item.embedding).is_some() {
            return Err(EmbedError::Protocol(format!("index {} appears twice", item.index)));
        }
    }
    // Every index is in range and none repeats, so with `expected` items every slot is filled.
    let mut vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
    let dimensions = vectors.first().map_or(0, Vec::len);
    for (index, vector) in vectors.iter_mut().enumerate() {
        if vector.is_empty() || vector.len() != dimensions {
            return Err(EmbedError::Protocol(format!(
                "embedding {index} has {} dimensions, embedding 0 has {dimensions}",
                vector.len()
            )));
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(EmbedError::Protocol(format!("embedding {index} holds a non-finite number")));
        }
        l2_normalize(vector);
    }
    Ok(vectors)
}

#[cfg(test)]
#[path = "embedder_tests.rs"]
mod tests;
