//! Tests of the embedders: the hashing embedder and the embeddings API client.

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
