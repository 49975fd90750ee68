//! Hostile input against the real binary: more than 10 000 requests generated from a fixed seed
//! and written as raw bytes on TCP sockets (kept alive or fresh), so they can carry what no HTTP
//! client would send — random and unknown methods, percent-encoding garbage and very long paths,
//! malformed and oversized `traceparent`/`tracestate`/`baggage`, huge and numerous headers,
//! invalid UTF-8, lying `Content-Length`s, broken chunked framing, invalid JSON-RPC (wrong
//! types, missing fields, batches, huge ids, nesting 10 000 deep, wrong content types), and the
//! `Host` and `Origin` of DNS rebinding and cross-site pages (every one refused with 403, and
//! none of the service's own names and origins) — beside ordinary requests. Afterwards the
//! process is alive and never panicked, no answer was a 5xx (nor does `metamcp_requests_total`
//! count one), the `route` label takes only the service's route templates, `/metrics` shows no
//! more series than that route table allows (a small multiple of it, far below one series per
//! request), the health endpoints answer 200 and a tools/call still works.
//!
//! The seed is printed; `HOSTILE_SEED=<n>` replays a run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::prom;
use support::service::client;
use support::{TestCollector, Transport};

/// Requests per sending thread.
const PER_THREAD: usize = 2_600;
/// Sending threads.
const THREADS: usize = 4;
/// Bound on waiting for one answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for an answer to a request whose body is shorter than it declares.
const LIE_TIMEOUT: Duration = Duration::from_millis(300);
/// The admin token of the service under test.
const ADMIN_TOKEN: &str = "hostile-admin-token";
/// The series bound of the default configuration, as docs/configuration.md states it.
const DOCUMENTED_SERIES_BOUND: usize = 166_000;
/// The service's route table: every route template, and `unmatched` for requests no route served.
/// The only values the `route` label may take.
const ROUTE_TABLE: [&str; 21] = [
    "/",
    "/status",
    "/status.json",
    "/health",
    "/health/live",
    "/health/ready",
    "/metamcp/{endpoint}/mcp",
    "/api/servers",
    "/api/servers/{name}",
    "/api/servers/{name}/refresh",
    "/api/endpoints",
    "/api/endpoints/{name}",
    "/api/endpoints/{name}/servers/{server}",
    "/api/endpoints/{name}/keys",
    "/api/endpoints/{name}/keys/{prefix}",
    "/api/tools",
    "/api/tools/search",
    "/api/tools/{name}",
    "/api/tools/{name}/execute",
    "/api/executions",
    "unmatched",
];
/// The values of the `method` label: the nine standard methods and `_OTHER`.
const METHOD_LABELS: [&str; 10] =
    ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "_OTHER"];
/// The HTTP request families, whose series grow with the route table.
const HTTP_FAMILIES: [&str; 2] = ["metamcp_requests_total", "metamcp_request_duration_seconds"];
/// Series of every other family (the pipeline's, the process's, the database's and the tools'),
/// a fixed set that is mostly on the first scrape (known label values start at 0): how many more
/// the hostile input may add, those that appear with their first event (a drop reason, a label
/// overflow, an error outcome). A series leaked per request would add thousands.
const OTHER_SERIES_GROWTH: usize = 64;
/// Largest request head the HTTP parser accepts (actix-http), documented in docs/configuration.md.
const MAX_HEAD: usize = 128 * 1024;

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_str<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn token(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~";
        (0..n).map(|_| *self.pick(CHARS) as char).collect()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b"0123456789abcdef"[self.below(16)])).collect()
    }
}

/// One generated request: its bytes and how to read its answer.
struct Generated {
    bytes: Vec<u8>,
    /// A HEAD request: the answer has no body whatever its headers say.
    head: bool,
    /// The body is shorter than declared (or the framing is cut): wait briefly, then close.
    lies: bool,
    /// What kind of input it was, for the summary.
    kind: &'static str,
}

struct Session {
    id: String,
    /// The API port, for the service's own origins.
    port: u16,
}

fn request(method: &str, target: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() + body.len() + 256);
    out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), value.into())
}

const PATHS: &[&str] = &[
    "/health",
    "/health/live",
    "/health/ready",
    "/metamcp/default/mcp",
    "/metamcp/nope/mcp",
    "/api/tools",
    "/api/servers",
    "/api/endpoints/default",
    "/api/executions?tool=calculator&success=false",
    "/api/tools/search",
    "/",
    "/metrics",
];
const METHODS: &[&str] =
    &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO", "BREW"];

fn random_path(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => rng.pick(PATHS).to_string(),
        1 => format!("/{}/{}", rng.token(8), rng.token(12)),
        2 => {
            // Percent-encoding garbage.
            let pieces = ["%", "%z", "%zz", "%00", "%ff", "%C3%28", "%e2%82", "%2F..%2F", "%25", "%%%", "%u0041"];
            let mut path = String::from("/");
            for _ in 0..rng.below(12) + 1 {
                path.push_str(rng.pick_str(&pieces));
                let n = rng.below(4);
                path.push_str(&rng.token(n));
            }
            path
        }
        3 => format!("/{}", "a/".repeat(rng.below(4000) + 1)),
        4 => format!("{}?{}={}", rng.pick(PATHS), rng.token(5), "x".repeat(rng.below(20_000))),
        _ => {
            let n = rng.below(300) + 1;
            format!("/api/tools/{}", rng.token(n))
        }
    }
}

fn context_headers(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let traceparent = match rng.below(9) {
        0 => format!("00-{}-{}-01", rng.hex(32), rng.hex(16)),
        1 => format!("00-{}-{}-01", "0".repeat(32), "0".repeat(16)),
        2 => format!("ff-{}-{}-01", rng.hex(32), rng.hex(16)),
        3 => format!("00-{}-{}-01", rng.hex(32).to_uppercase(), rng.hex(16)),
        4 => format!("00-{}-{}-01-extra-{}", rng.hex(32), rng.hex(16), rng.token(20)),
        5 => "x".repeat(rng.below(20_000) + 1),
        6 => format!("01-{}-{}-{}", rng.hex(32), rng.hex(16), rng.hex(2)),
        7 => rng.token(55),
        _ => String::from("00--"),
    };
    let mut headers = vec![header("traceparent", traceparent)];
    if rng.chance(50) {
        let state = match rng.below(4) {
            0 => (0..40).map(|i| format!("k{i}={}", rng.token(10))).collect::<Vec<_>>().join(","),
            1 => "=,=,=,,,".repeat(100),
            2 => "v".repeat(rng.below(10_000)),
            _ => format!("vendor={}", rng.token(8)),
        };
        headers.push(header("tracestate", state));
    }
    if rng.chance(60) {
        let baggage = match rng.below(5) {
            0 => (0..500).map(|i| format!("key{i}=value{i}")).collect::<Vec<_>>().join(","),
            1 => "k=%zz,%=v,==,;;;,k=v;prop=%".to_owned(),
            2 => "b".repeat(rng.below(12_000) + 1),
            3 => format!("user={};secret=1", rng.token(30)),
            _ => String::from_utf8_lossy(&rng.bytes(64)).into_owned(),
        };
        headers.push(header("baggage", baggage));
    }
    headers
}

/// A JSON-RPC body that the MCP endpoint must refuse (or answer) without a 5xx.
fn bad_jsonrpc(rng: &mut Rng) -> Vec<u8> {
    match rng.below(16) {
        0 => b"{".to_vec(),
        1 => b"not json at all".to_vec(),
        2 => json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}).to_string().into_bytes(),
        3 => json!({"jsonrpc": "2.0", "id": {"nested": true}, "method": "ping"}).to_string().into_bytes(),
        4 => json!({"jsonrpc": "2.0", "id": 1}).to_string().into_bytes(),
        5 => json!({"jsonrpc": "2.0", "id": 1, "method": 42}).to_string().into_bytes(),
        6 => {
            json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}])
                .to_string()
                .into_bytes()
        }
        7 => b"[]".to_vec(),
        8 => format!(r#"{{"jsonrpc":"2.0","id":1{},"method":"ping"}}"#, "0".repeat(400)).into_bytes(),
        9 => r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.as_bytes().to_vec(),
        10 => format!(r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#, "i".repeat(50_000)).into_bytes(),
        11 => {
            let depth = 10_000;
            let mut body = String::from(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"#);
            body.push_str(&"[".repeat(depth));
            body.push_str(&"]".repeat(depth));
            body.push('}');
            body.into_bytes()
        }
        12 => {
            let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":""#.to_vec();
            body.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]);
            body.extend_from_slice(br#""}}"#);
            body
        }
        13 => {
            let n = rng.below(2000) + 1;
            rng.bytes(n)
        }
        14 => json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5, "arguments": []}})
            .to_string()
            .into_bytes(),
        _ => json!({"jsonrpc": "2.0", "id": u64::MAX, "method": "tools/call",
            "params": {"name": "calculator", "arguments": {"expression": "1/0"}}})
        .to_string()
        .into_bytes(),
    }
}

/// A request to a random route with a `Host` and `Origin` of a DNS rebinding page or a cross-site
/// one (`foreign`, to be refused with 403), or of the service itself (`own`, never a 403).
fn host_and_origin(rng: &mut Rng, session: &Session) -> Generated {
    let port = session.port;
    let target = rng.pick_str(&["/health", "/health/ready", "/status.json", "/api/tools", "/metamcp/default/mcp", "/"]);
    let method = if target == "/metamcp/default/mcp" { "POST" } else { "GET" };
    let body = if method == "POST" { br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec() } else { Vec::new() };
    let own_host = |rng: &mut Rng| -> Vec<u8> {
        rng.pick(&[
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            "localhost".to_owned(),
            format!("[::1]:{port}"),
            "127.3.2.1".to_owned(),
            "gateway.example".to_owned(),
            "GATEWAY.example.:443".to_owned(),
        ])
        .clone()
        .into_bytes()
    };
    let own_origin = |rng: &mut Rng| -> Option<Vec<u8>> {
        match rng.below(4) {
            0 => None,
            1 => Some(format!("http://127.0.0.1:{port}").into_bytes()),
            2 => Some(format!("http://LOCALHOST:{port}/").into_bytes()),
            _ => Some(format!("http://[::1]:{port}").into_bytes()),
        }
    };
    let foreign = rng.chance(60);
    let (host, origins): (Option<Vec<u8>>, Vec<Vec<u8>>) = if !foreign {
        (Some(own_host(rng)), own_origin(rng).into_iter().collect())
    } else if rng.chance(50) {
        // A rebinding page: its own name in Host (its Origin would match it).
        let host = match rng.below(9) {
            0 => format!("evil.example:{port}").into_bytes(),
            1 => "evil.example".as_bytes().to_vec(),
            2 => format!("localhost.evil.example:{port}").into_bytes(),
            3 => format!("127.0.0.1.nip.io:{port}").into_bytes(),
            4 => "gateway.example.evil:80".as_bytes().to_vec(),
            5 => format!("[::2]:{port}").into_bytes(),
            6 => {
                let n = rng_len(rng, 2000);
                rng.token(n).into_bytes()
            }
            7 => rng.bytes(24).into_iter().map(|b| b | 0x80).collect(),
            _ => format!("localhost:{}x", port).into_bytes(),
        };
        (Some(host), Vec::new())
    } else {
        // A cross-site page: the right Host, a foreign Origin (some among allowed ones).
        let origin = match rng.below(9) {
            0 => b"http://evil.example".to_vec(),
            1 => b"null".to_vec(),
            2 => format!("http://127.0.0.1:{}", port.wrapping_add(1)).into_bytes(),
            3 => format!("https://127.0.0.1:{port}").into_bytes(),
            4 => b"http://[".to_vec(),
            5 => {
                let n = rng_len(rng, 8000);
                format!("http://{}", "o".repeat(n)).into_bytes()
            }
            6 => rng.bytes(32).into_iter().map(|b| b | 0x80).collect(),
            7 => format!("http://localhost:{port}/path").into_bytes(),
            _ => b"file://".to_vec(),
        };
        let mut origins = vec![origin];
        if rng.chance(30) {
            origins.insert(0, format!("http://127.0.0.1:{port}").into_bytes());
        }
        (Some(own_host(rng)), origins)
    };
    let mut bytes = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    if let Some(host) = host {
        bytes.extend_from_slice(b"host: ");
        bytes.extend_from_slice(&host);
        bytes.extend_from_slice(b"\r\n");
    }
    for origin in origins {
        bytes.extend_from_slice(b"origin: ");
        bytes.extend_from_slice(&origin);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(
        format!(
            "content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             mcp-session-id: {}\r\ncontent-length: {}\r\n\r\n",
            session.id,
            body.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(&body);
    let kind = if foreign { "foreign_host_or_origin" } else { "own_host_and_origin" };
    Generated { bytes, head: false, lies: false, kind }
}

fn rng_len(rng: &mut Rng, max: usize) -> usize {
    rng.below(max) + 1
}

fn generate(rng: &mut Rng, session: &Session) -> Generated {
    let plain = |bytes, kind| Generated { bytes, head: false, lies: false, kind };
    match rng.below(20) {
        // Random method and path, some context headers.
        0..=3 => {
            let method = *rng.pick(METHODS);
            let mut headers = Vec::new();
            if rng.chance(50) {
                headers.extend(context_headers(rng));
            }
            let body = if method == "POST" || method == "PUT" {
                let n = rng.below(64);
                rng.bytes(n)
            } else {
                Vec::new()
            };
            let bytes = request(method, &random_path(rng), &headers, &body);
            Generated { bytes, head: method == "HEAD", lies: false, kind: "random_request" }
        }
        // Malformed and oversized trace context on a real route.
        4..=5 => {
            let headers = context_headers(rng);
            plain(request("GET", rng.pick_str(PATHS), &headers, b""), "trace_context")
        }
        // Invalid JSON-RPC to the MCP endpoint, with or without a session, odd content types.
        6..=9 => {
            let content_type =
                *rng.pick(&["application/json", "text/plain", "application/json; charset=latin1", "", "a/b/c"]);
            let mut headers = vec![header("accept", "application/json, text/event-stream")];
            if !content_type.is_empty() {
                headers.push(header("content-type", content_type));
            }
            if rng.chance(60) {
                headers.push(header("mcp-session-id", session.id.clone()));
            } else if rng.chance(30) {
                headers.push(header("mcp-session-id", rng.bytes(40)));
            }
            plain(request("POST", "/metamcp/default/mcp", &headers, &bad_jsonrpc(rng)), "jsonrpc")
        }
        // The admin API with bad tokens.
        10..=11 => {
            let auth: Vec<u8> = match rng.below(6) {
                0 => b"Bearer wrong".to_vec(),
                1 => b"Bearer ".to_vec(),
                2 => b"Basic YWRtaW46YWRtaW4=".to_vec(),
                3 => format!("Bearer {}", "t".repeat(rng.below(30_000))).into_bytes(),
                4 => {
                    let mut v = b"Bearer ".to_vec();
                    v.extend(rng.bytes(32).into_iter().map(|b| b | 0x80));
                    v
                }
                _ => Vec::new(),
            };
            let headers = if auth.is_empty() { Vec::new() } else { vec![header("authorization", auth)] };
            let method = *rng.pick(&["GET", "POST", "DELETE", "PATCH"]);
            let path = *rng.pick(&["/api/tools", "/api/servers", "/api/endpoints", "/api/endpoints/default/keys"]);
            let body = if method == "GET" { Vec::new() } else { br#"{"name":"x"}"#.to_vec() };
            plain(request(method, path, &headers, &body), "admin_bad_token")
        }
        // Huge single header values and many headers (some beyond the parser's limits).
        12 => {
            let size = *rng.pick(&[1_000, 16_000, 64_000, 120_000, MAX_HEAD + 10_000, 300_000]);
            let headers = vec![header("x-huge", "h".repeat(size))];
            plain(request("GET", "/health/live", &headers, b""), "huge_header")
        }
        13 => {
            let count = *rng.pick(&[50, 90, 95, 97, 120, 400]);
            let headers: Vec<_> = (0..count).map(|i| header(&format!("x-h{i}"), rng.token(16))).collect();
            plain(request("GET", "/health/live", &headers, b""), "many_headers")
        }
        // Invalid UTF-8 in the path or in header values.
        14 => {
            let mut bytes = b"GET /health/".to_vec();
            if rng.chance(50) {
                bytes.extend(rng.bytes(8).into_iter().map(|b| b | 0x80));
                bytes.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
            } else {
                bytes.extend_from_slice(b"live HTTP/1.1\r\nhost: x\r\nuser-agent: ");
                bytes.extend(rng.bytes(16).into_iter().map(|b| b | 0x80));
                bytes.extend_from_slice(b"\r\nx-request-id: \xff\xfe\r\ntraceparent: 00-\xc3\x28\r\n\r\n");
            }
            plain(bytes, "invalid_utf8")
        }
        // Broken framing: garbage request lines, bad Content-Length, bad chunked bodies.
        15 => {
            let bytes: Vec<u8> = match rng.below(8) {
                0 => b"GARBAGE\r\n\r\n".to_vec(),
                1 => b"GET / HTTP/9.9\r\n\r\n".to_vec(),
                2 => b"POST /metamcp/default/mcp HTTP/1.1\r\ncontent-length: abc\r\n\r\n".to_vec(),
                3 => b"POST /metamcp/default/mcp HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello".to_vec(),
                4 => b"POST /metamcp/default/mcp HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n"
                    .to_vec(),
                5 => b"POST /metamcp/default/mcp HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
                6 => b"GET /health\x00/live HTTP/1.1\r\n\r\n".to_vec(),
                _ => b"GET /health HTTP/1.1\r\nbad header line\r\n\r\n".to_vec(),
            };
            plain(bytes, "framing")
        }
        // Content-Length lies: the body is shorter than declared (rare: each costs a timeout).
        16 if rng.chance(10) => {
            let mut bytes = format!(
                "POST /metamcp/default/mcp HTTP/1.1\r\ncontent-type: application/json\r\n\
                 accept: application/json, text/event-stream\r\nmcp-session-id: {}\r\n",
                session.id
            )
            .into_bytes();
            if rng.chance(50) {
                bytes.extend_from_slice(b"content-length: 5000\r\n\r\n{\"jsonrpc\":\"2.0\",");
            } else {
                bytes.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n10\r\n{\"jsonrpc\":\"2.0\",");
            }
            Generated { bytes, head: false, lies: true, kind: "content_length_lie" }
        }
        // DNS rebinding and cross-site requests, and the service's own names and origins.
        17 => host_and_origin(rng, session),
        // Ordinary requests, with and without a session.
        _ => {
            let body = json!({"jsonrpc": "2.0", "id": rng.below(1000), "method": "tools/call",
                "params": {"name": "calculator", "arguments": {"expression": format!("{} + {}", rng.below(100), rng.below(100))}}})
            .to_string();
            let headers = vec![
                header("content-type", "application/json"),
                header("accept", "application/json, text/event-stream"),
                header("mcp-session-id", session.id.clone()),
            ];
            if rng.chance(50) {
                plain(request("POST", "/metamcp/default/mcp", &headers, body.as_bytes()), "normal_mcp")
            } else {
                plain(
                    request("GET", rng.pick_str(&["/health", "/health/live", "/health/ready"]), &[], b""),
                    "normal_health",
                )
            }
        }
    }
}

/// Outcome of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A parsed status line.
    Status(u16),
    /// The connection closed without an answer.
    Closed,
    /// No answer within the read timeout.
    Timeout,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads until `buf` holds at least `n` bytes.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Result<(), Outcome> {
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Outcome::Closed),
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Outcome::Timeout)
            }
            Err(_) => return Err(Outcome::Closed),
        }
    }
    Ok(())
}

/// Reads one response; returns its status and whether the connection can carry another request.
fn read_response(stream: &mut TcpStream, head_request: bool) -> (Outcome, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (Outcome::Closed, false),
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (Outcome::Timeout, false)
            }
            Err(_) => return (Outcome::Closed, false),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()) else {
        return (Outcome::Closed, false);
    };
    let header_value = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')).map(str::trim))
    };
    // After a refused request head the server closes the connection.
    let mut reusable = header_value("connection") != Some("close") && !matches!(status, 400 | 408 | 413 | 431);
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return (Outcome::Status(status), reusable && buf.len() == head_end);
    }
    let mut body = buf.split_off(head_end);
    if let Some(length) = header_value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if fill(stream, &mut body, length).is_err() {
            reusable = false;
        }
        reusable &= body.len() == length;
    } else if header_value("transfer-encoding") == Some("chunked") {
        // Chunked: read chunk by chunk until the last one.
        let mut offset = 0;
        loop {
            let line_end = loop {
                if let Some(end) = find(&body[offset..], b"\r\n") {
                    break offset + end;
                }
                let want = body.len() + 1;
                if fill(stream, &mut body, want).is_err() {
                    return (Outcome::Status(status), false);
                }
            };
            let size_text = String::from_utf8_lossy(&body[offset..line_end]).to_string();
            let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
                return (Outcome::Status(status), false);
            };
            let next = line_end + 2 + size + 2;
            if fill(stream, &mut body, next).is_err() {
                return (Outcome::Status(status), false);
            }
            offset = next;
            if size == 0 {
                break;
            }
        }
    } else {
        // No framing: the body runs to the end of the connection.
        reusable = false;
    }
    (Outcome::Status(status), reusable)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the service");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(READ_TIMEOUT)).expect("write timeout");
    let _ = stream.set_nodelay(true);
    stream
}

#[derive(Default)]
struct Tally {
    sent: usize,
    outcomes: BTreeMap<(&'static str, Outcome), usize>,
    five_hundreds: Vec<String>,
}

fn send_all(addr: SocketAddr, seed: u64, session: Arc<Session>, tally: Arc<Mutex<Tally>>) {
    let mut rng = Rng(seed | 1);
    let mut stream: Option<TcpStream> = None;
    let mut local = Tally::default();
    for _ in 0..PER_THREAD {
        let generated = generate(&mut rng, &session);
        if stream.is_none() || rng.chance(25) {
            stream = Some(connect(addr));
        }
        let Some(conn) = stream.as_mut() else { unreachable!("connected above") };
        if generated.lies {
            conn.set_read_timeout(Some(LIE_TIMEOUT)).expect("read timeout");
        }
        local.sent += 1;
        // A server may answer (431, 413, 400) and close before the whole request is written.
        let written = conn.write_all(&generated.bytes).and_then(|()| conn.flush());
        let (outcome, reusable) = read_response(conn, generated.head);
        if let Outcome::Status(code) = outcome {
            if code >= 500 && local.five_hundreds.len() < 20 {
                let shown = String::from_utf8_lossy(&generated.bytes[..generated.bytes.len().min(300)]).into_owned();
                local.five_hundreds.push(format!("{code} for {}: {shown:?}", generated.kind));
            }
        }
        *local.outcomes.entry((generated.kind, outcome)).or_default() += 1;
        if generated.lies || !reusable || written.is_err() {
            stream = None;
        }
    }
    let mut total = tally.lock().unwrap();
    total.sent += local.sent;
    for (key, count) in local.outcomes {
        *total.outcomes.entry(key).or_default() += count;
    }
    total.five_hundreds.extend(local.five_hundreds);
}

fn initialize(service: &Service) -> String {
    let response = client()
        .post(service.url("/metamcp/default/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "1"}}})
            .to_string(),
        )
        .send()
        .expect("initialize");
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["mcp-session-id"].to_str().expect("ascii").to_owned()
}

fn tools_call(service: &Service, session: &str) -> Value {
    let response = client()
        .post(service.url("/metamcp/default/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "calculator", "arguments": {"expression": "6 * 7"}}})
            .to_string(),
        )
        .send()
        .expect("tools/call");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().expect("a JSON-RPC answer")
}

#[test]
fn ten_thousand_hostile_requests_leave_the_service_healthy_and_bounded() {
    let seed = std::env::var("HOSTILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_0004_u64);
    println!("hostile input seed: {seed} (replay with HOSTILE_SEED={seed})");
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    assert!(
        docs.contains(&format!("Series bound with the default configuration: {DOCUMENTED_SERIES_BOUND}.")),
        "docs drifted"
    );

    let collector = TestCollector::start(Transport::Grpc);
    let endpoint = collector.endpoint();
    let mut service = Service::start(
        &[
            ("OTLP_ENDPOINT", endpoint.as_str()),
            ("METAMCP_ADMIN__TOKEN", ADMIN_TOKEN),
            // With a token, Host is checked once allowed_hosts names a proxy's name.
            ("METAMCP_SERVER__ALLOWED_HOSTS", "gateway.example"),
            ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
            ("METAMCP_METRICS__EXPORT_INTERVAL", "200ms"),
            ("METAMCP_HEALTH__CHECK_INTERVAL", "100ms"),
            ("METAMCP_EXPORTER__TIMEOUT", "1s"),
            ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
        ],
        &[],
    );
    let session = Arc::new(Session { id: initialize(&service), port: service.api.port() });
    let before = prom::scrape_blocking(&service.metrics_url());
    let other_before = before.parsed.iter().filter(|l| !HTTP_FAMILIES.contains(&l.family.as_str())).count();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let senders: Vec<_> = (0..THREADS as u64)
        .map(|index| {
            let (session, tally, addr) = (session.clone(), tally.clone(), service.api);
            let thread_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(index);
            std::thread::spawn(move || send_all(addr, thread_seed, session, tally))
        })
        .collect();
    for sender in senders {
        sender.join().expect("a sending thread panicked");
    }
    let tally = tally.lock().unwrap();
    let mut by_status: BTreeMap<Outcome, usize> = BTreeMap::new();
    for ((_, outcome), count) in &tally.outcomes {
        *by_status.entry(*outcome).or_default() += count;
    }
    println!("sent {} requests in {:.1?}; answers: {by_status:?}", tally.sent, started.elapsed());
    for ((kind, outcome), count) in &tally.outcomes {
        println!("  {kind:>20} {outcome:?}: {count}");
    }

    assert!(tally.sent >= 10_000, "{}", tally.sent);
    assert!(tally.five_hundreds.is_empty(), "5xx answers:\n{}", tally.five_hundreds.join("\n"));
    let answered: usize = by_status.iter().filter(|(o, _)| matches!(o, Outcome::Status(_))).map(|(_, n)| n).sum();
    assert!(answered * 10 >= tally.sent * 9, "only {answered} of {} requests got an answer", tally.sent);
    // Timeouts only where the request itself lied about its length.
    let hung: usize = tally
        .outcomes
        .iter()
        .filter(|((kind, outcome), _)| *outcome == Outcome::Timeout && *kind != "content_length_lie")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(hung, 0, "requests without an answer within {READ_TIMEOUT:?}");
    for code in [200u16, 400, 401, 403, 404, 431] {
        assert!(by_status.contains_key(&Outcome::Status(code)), "no {code} among {by_status:?}");
    }
    // Every rebinding or cross-site request was refused, and none of the service's own.
    let outcomes_of =
        |kind: &'static str| -> Vec<_> { tally.outcomes.iter().filter(|((k, _), _)| *k == kind).collect() };
    let foreign = outcomes_of("foreign_host_or_origin");
    assert!(!foreign.is_empty());
    assert!(foreign.iter().all(|((_, outcome), _)| *outcome == Outcome::Status(403)), "{foreign:?}");
    let own = outcomes_of("own_host_and_origin");
    assert!(!own.is_empty());
    assert!(own.iter().all(|((_, outcome), _)| *outcome != Outcome::Status(403)), "{own:?}");

    // Still running (reaped if it had exited: a zombie would keep its /proc entry) and healthy,
    // never panicked.
    assert_eq!(service.exit_status(), None, "the service exited:\n{}", service.logs().join("\n"));
    let http = client();
    assert_eq!(http.get(service.url("/health/live")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(http.get(service.url("/health/ready")).send().unwrap().status(), StatusCode::OK);
    let answer = tools_call(&service, &session.id);
    assert_eq!(answer["result"]["content"][0]["text"], "42", "{answer}");
    let logs = service.logs();
    assert!(logs.iter().all(|line| !line.contains("panicked")), "a panic was logged");

    // No 5xx counted either, and the series stay under the documented bound.
    let scrape = prom::scrape_blocking(&service.metrics_url());
    let statuses = prom::label_values(&scrape, "metamcp_requests_total", "status_code");
    assert!(statuses.iter().all(|s| !s.starts_with('5')), "{statuses:?}");
    // Labels hold templates and enumerations only, whatever the paths and methods sent.
    let answered_statuses: Vec<String> = by_status
        .keys()
        .filter_map(|o| match o {
            Outcome::Status(code) => Some(code.to_string()),
            _ => None,
        })
        .collect();
    for family in HTTP_FAMILIES {
        let routes = prom::label_values(&scrape, family, "route");
        assert!(
            routes.iter().all(|r| ROUTE_TABLE.contains(&r.as_str())),
            "{family}: routes beyond the table {routes:?}"
        );
        let methods = prom::label_values(&scrape, family, "method");
        assert!(methods.iter().all(|m| METHOD_LABELS.contains(&m.as_str())), "{family}: methods {methods:?}");
    }
    let statuses = prom::label_values(&scrape, "metamcp_requests_total", "status_code");
    assert!(
        statuses.iter().all(|s| answered_statuses.contains(s)),
        "{statuses:?} beyond those answered {answered_statuses:?}"
    );
    // So the HTTP series are bounded by the route table: per route and method, one counter per
    // status answered and the lines of one histogram. With the rest, a fixed set, the whole
    // scrape stays a small multiple of the route table, where a series leaked per request would
    // add ten thousand.
    let duration_lines = scrape.parsed.iter().filter(|l| l.family == HTTP_FAMILIES[1]).count();
    let histogram_lines = duration_lines / prom::label_set_count(&scrape, HTTP_FAMILIES[1]).max(1);
    let http_bound = ROUTE_TABLE.len() * METHOD_LABELS.len() * (answered_statuses.len() + histogram_lines);
    let http_series = scrape.parsed.iter().filter(|l| HTTP_FAMILIES.contains(&l.family.as_str())).count();
    let other_series = prom::series_count(&scrape) - http_series;
    let other_bound = other_before + OTHER_SERIES_GROWTH;
    println!(
        "series in /metrics: {http_series} HTTP (bound {http_bound}: {} routes × {} methods × ({} statuses + {histogram_lines} histogram lines)), {other_series} other ({other_before} on the first scrape, bound {other_bound})",
        ROUTE_TABLE.len(),
        METHOD_LABELS.len(),
        answered_statuses.len()
    );
    assert!(http_series <= http_bound, "{http_series} HTTP series, more than the route table allows ({http_bound})");
    assert!(
        other_series <= other_bound,
        "{other_series} series outside the HTTP families, {other_before} before the hostile input"
    );
    let restarts = prom::sum(&scrape, "metamcp_telemetry_actor_restarts_total", &[]).unwrap_or(0.0);
    assert_eq!(restarts, 0.0, "a pipeline actor restarted");
}
