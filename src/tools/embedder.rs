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
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn words(text: &str) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for_each_word(text, |w, joined| out.push((w.to_owned(), joined)));
        out
    }

    #[test]
    fn splits_words_and_compounds() {
        let parts =
            |text: &str| words(text).into_iter().map(|(w, j)| if j { format!("+{w}") } else { w }).collect::<Vec<_>>();
        assert_eq!(parts("Get the Weather!"), ["get", "the", "weather"]);
        assert_eq!(parts("get_weather"), ["get", "weather", "+getweather"]);
        assert_eq!(parts("getWeather"), ["get", "weather", "+getweather"]);
        assert_eq!(parts("get-weather-now"), ["get", "weather", "now", "+getweathernow"]);
        assert_eq!(parts("parseHTTPResponse2x"), ["parse", "http", "response2x", "+parsehttpresponse2x"]);
        assert_eq!(parts("a - b __c_"), ["a", "b", "c"]);
        assert_eq!(parts("Ünïcode Straße"), ["ünïcode", "straße"]);
        assert!(parts("  ... ").is_empty());
    }

    #[test]
    fn hashing_vectors_are_normalised_and_deterministic() {
        let embedder = HashingEmbedder::new(384);
        assert_eq!(embedder.id(), "hashing-384");
        assert_eq!(embedder.dimensions(), 384);
        let v = embedder.embed_one("Get the current weather forecast for a given city");
        assert_eq!(v.len(), 384);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
        assert_eq!(v, embedder.embed_one("Get the current weather forecast for a given city"));
        // Pinned buckets: a change of hash or features changes vectors already stored, which
        // must come with a new embedder id. "weather" is one word (weight 1) and seven trigrams
        // of "#weather#" (weight 0.5 each), normalised by sqrt(1 + 7 × 0.25).
        let nonzero: Vec<(usize, f32)> =
            embedder.embed_one("weather").iter().copied().enumerate().filter(|&(_, x)| x != 0.0).collect();
        let (w, t) = (1.0 / 2.75f32.sqrt(), 0.5 / 2.75f32.sqrt());
        let pinned = [(8, t), (138, t), (170, t), (249, -w), (257, -t), (275, -t), (313, -t), (318, t)];
        assert_eq!(nonzero.len(), pinned.len(), "{nonzero:?}");
        for ((bucket, value), (pinned_bucket, pinned_value)) in nonzero.iter().zip(pinned) {
            assert!(*bucket == pinned_bucket && (value - pinned_value).abs() < 1e-6, "{nonzero:?}");
        }
    }

    #[test]
    fn empty_or_stop_word_text_is_the_zero_vector() {
        let embedder = HashingEmbedder::new(64);
        for text in ["", "   ", "the of and", "!?"] {
            assert!(embedder.embed_one(text).iter().all(|&x| x == 0.0), "{text:?}");
        }
        assert_eq!(HashingEmbedder::new(0).dimensions(), 1);
    }

    #[test]
    fn related_texts_score_higher_than_unrelated_ones() {
        let embedder = HashingEmbedder::new(384);
        let query = embedder.embed_one("weather forecast for a city");
        let weather = embedder.embed_one("Get the current weather forecast for a given city");
        let add = embedder.embed_one("Add two numbers");
        let files = embedder.embed_one("Search files in a directory");
        let (w, a, f) = (dot(&query, &weather), dot(&query, &add), dot(&query, &files));
        assert!(w > 0.5 && w > a + 0.3 && w > f + 0.3, "weather {w}, add {a}, files {f}");
        // Word forms and compounds meet through trigrams and the joined form.
        let tool = embedder.embed_one("get_weather_forecast");
        assert!(dot(&embedder.embed_one("weather forecasts"), &tool) > 0.4);
        assert!(dot(&embedder.embed_one("getweatherforecast"), &tool) > 0.2);
    }

    #[tokio::test]
    async fn hashing_embed_keeps_order() {
        let embedder = HashingEmbedder::new(128);
        let texts = vec!["alpha beta".to_owned(), String::new(), "gamma".to_owned()];
        let vectors = embedder.embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), 3);
        for (text, vector) in texts.iter().zip(&vectors) {
            assert_eq!(vector, &embedder.embed_one(text));
        }
    }

    #[test]
    fn from_settings_picks_the_configured_embedder() {
        let mut settings = VectorSettings { dimensions: 256, ..VectorSettings::default() };
        assert_eq!(from_settings(&settings).unwrap().id(), "hashing-256");
        settings.embedder = EmbedderKind::Openai;
        settings.openai_api_key = "sk-secret".to_owned();
        let openai = from_settings(&settings).unwrap();
        assert_eq!(openai.id(), "openai:text-embedding-3-small");
        assert_eq!(openai.dimensions(), 0, "unknown before the first answer");
        assert!(!format!("{openai:?}").contains("sk-secret"), "the key never shows in Debug");
        settings.openai_url = "ftp://example".to_owned();
        assert!(matches!(from_settings(&settings), Err(EmbedError::Config(_))));
        settings.openai_url = "http://127.0.0.1:1".to_owned();
        settings.openai_model = " ".to_owned();
        assert!(matches!(from_settings(&settings), Err(EmbedError::Config(_))));
    }

    /// A one-request HTTP/1.1 server on a loopback socket: hands the raw request over a channel
    /// and answers with `response`, or holds the connection open (no answer) when it is `None`.
    struct FakeApi {
        url: String,
        requests: mpsc::Receiver<String>,
        _hold: mpsc::Sender<()>,
    }

    impl FakeApi {
        fn start(response: Option<(u16, String)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let (request_tx, requests) = mpsc::channel();
            let (hold, held) = mpsc::channel::<()>();
            std::thread::spawn(move || {
                listener.set_nonblocking(true).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                let stream = loop {
                    match listener.accept() {
                        Ok((stream, _)) => break stream,
                        Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                        Err(_) => return,
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut content_length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        content_length = value.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; content_length];
                reader.read_exact(&mut body).unwrap();
                request_tx.send(format!("{head}\r\n{}", String::from_utf8(body).unwrap())).unwrap();
                let mut stream = reader.into_inner();
                match response {
                    Some((status, body)) => {
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(answer.as_bytes()).unwrap();
                    }
                    None => {
                        let _ = held.recv_timeout(Duration::from_secs(10));
                    }
                }
            });
            Self { url, requests, _hold: hold }
        }

        fn settings(&self, api_key: &str) -> VectorSettings {
            VectorSettings {
                embedder: EmbedderKind::Openai,
                openai_url: format!("{}/", self.url),
                openai_model: "tiny-embed".to_owned(),
                openai_api_key: api_key.to_owned(),
                request_timeout: Duration::from_secs(5),
                ..VectorSettings::default()
            }
        }

        fn request(&self) -> (String, serde_json::Value) {
            let raw = self.requests.recv_timeout(Duration::from_secs(10)).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            (head.to_owned(), serde_json::from_str(body).unwrap())
        }
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn openai_answers_are_ordered_by_index_and_normalised() {
        let api = FakeApi::start(Some((
            200,
            r#"{"object":"list","model":"tiny-embed","data":[
                {"object":"embedding","index":1,"embedding":[0.0,3.0,4.0]},
                {"object":"embedding","index":0,"embedding":[2.0,0.0,0.0]}]}"#
                .to_owned(),
        )));
        let embedder = OpenAiEmbedder::new(&api.settings("sk-test")).unwrap();
        let vectors = embedder.embed(&texts(&["first", "second"])).await.unwrap();
        assert_eq!(vectors, vec![vec![1.0, 0.0, 0.0], vec![0.0, 0.6, 0.8]]);
        assert_eq!(embedder.dimensions(), 3);
        let (head, body) = api.request();
        assert!(head.starts_with("POST /v1/embeddings HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("authorization: bearer sk-test\r\n"), "{head}");
        assert_eq!(body, serde_json::json!({ "model": "tiny-embed", "input": ["first", "second"] }));
    }

    #[tokio::test]
    async fn openai_without_a_key_sends_no_authorization() {
        let api = FakeApi::start(Some((200, r#"{"data":[{"index":0,"embedding":[1.0,1.0]}]}"#.to_owned())));
        let embedder = OpenAiEmbedder::new(&api.settings("")).unwrap();
        assert_eq!(embedder.probe().await.unwrap(), 2);
        let (head, _) = api.request();
        assert!(!head.to_ascii_lowercase().contains("authorization"), "{head}");
    }

    #[tokio::test]
    async fn openai_requests_carry_the_callers_trace_context() {
        use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
        let api = FakeApi::start(Some((200, r#"{"data":[{"index":0,"embedding":[1.0]}]}"#.to_owned())));
        let embedder = OpenAiEmbedder::new(&api.settings("")).unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let span = provider.tracer("test").start("tools/search");
        let trace_id = span.span_context().trace_id();
        let cx = opentelemetry::Context::current_with_span(span);
        let texts = texts(&["x"]);
        let future = {
            let _attached = cx.attach();
            embedder.embed(&texts)
        };
        future.await.unwrap();
        let (head, _) = api.request();
        assert!(head.contains(&format!("traceparent: 00-{trace_id}-")), "{head}");
    }

    #[tokio::test]
    async fn openai_errors_are_mapped() {
        type Case = (u16, &'static str, fn(&EmbedError) -> bool);
        let cases: &[Case] = &[
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided"}}"#,
                |e| matches!(e, EmbedError::Http(m) if m.contains("401") && m.contains("Incorrect API key provided")),
            ),
            (500, "upstream exploded", |e| matches!(e, EmbedError::Http(m) if m.contains("upstream exploded"))),
            (200, "not json", |e| matches!(e, EmbedError::Protocol(_))),
            (
                200,
                r#"{"data":[{"index":0,"embedding":[1.0]}]}"#,
                |e| matches!(e, EmbedError::Protocol(m) if m.contains("1 embeddings for 2 inputs")),
            ),
            (
                200,
                r#"{"data":[{"index":0,"embedding":[1.0,0.0]},{"index":1,"embedding":[1.0]}]}"#,
                |e| matches!(e, EmbedError::Protocol(m) if m.contains("dimensions")),
            ),
            (
                200,
                r#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[1.0]}]}"#,
                |e| matches!(e, EmbedError::Protocol(m) if m.contains("twice")),
            ),
            (
                200,
                r#"{"data":[{"index":0,"embedding":[1.0]},{"index":7,"embedding":[1.0]}]}"#,
                |e| matches!(e, EmbedError::Protocol(m) if m.contains("out of range")),
            ),
            (200, r#"{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[]}]}"#, |e| {
                matches!(e, EmbedError::Protocol(_))
            }),
        ];
        for (status, body, check) in cases {
            let api = FakeApi::start(Some((*status, (*body).to_owned())));
            let embedder = OpenAiEmbedder::new(&api.settings("k")).unwrap();
            let error = embedder.embed(&texts(&["a", "b"])).await.unwrap_err();
            assert!(check(&error), "{status} {body}: {error:?}");
            api.request();
        }
    }

    #[tokio::test]
    async fn openai_rejects_a_change_of_dimensions() {
        let first = FakeApi::start(Some((200, r#"{"data":[{"index":0,"embedding":[1.0,0.0]}]}"#.to_owned())));
        let embedder = OpenAiEmbedder::new(&first.settings("")).unwrap();
        assert_eq!(embedder.probe().await.unwrap(), 2);
        let second = FakeApi::start(Some((200, r#"{"data":[{"index":0,"embedding":[1.0,0.0,0.0]}]}"#.to_owned())));
        let moved = OpenAiEmbedder { endpoint: format!("{}/v1/embeddings", second.url), ..embedder };
        let error = moved.embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(&error, EmbedError::Protocol(m) if m.contains("3 dimensions where earlier answers had 2")));
    }

    #[tokio::test]
    async fn openai_times_out_and_reports_unreachable_servers() {
        let api = FakeApi::start(None);
        let settings = VectorSettings { request_timeout: Duration::from_millis(200), ..api.settings("") };
        let embedder = OpenAiEmbedder::new(&settings).unwrap();
        let started = Instant::now();
        assert!(matches!(embedder.embed(&texts(&["slow"])).await, Err(EmbedError::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(5));
        api.request();

        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let embedder = OpenAiEmbedder::new(&VectorSettings { openai_url: url, ..settings }).unwrap();
        assert!(matches!(embedder.embed(&texts(&["x"])).await, Err(EmbedError::Http(_))));
    }

    #[tokio::test]
    async fn openai_with_nothing_to_embed_makes_no_request() {
        let settings = VectorSettings {
            embedder: EmbedderKind::Openai,
            openai_url: "http://127.0.0.1:1".to_owned(),
            ..VectorSettings::default()
        };
        let embedder = OpenAiEmbedder::new(&settings).unwrap();
        assert!(embedder.embed(&[]).await.unwrap().is_empty());
    }
}
