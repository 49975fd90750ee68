//! HTTP exchanges written as raw bytes on a fresh socket, for what no HTTP client would send.

use std::net::SocketAddr;
use std::time::Duration;

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lower case.
    pub head: String,
    /// The body, decoded lossily as UTF-8.
    pub body: String,
}

impl RawResponse {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Writes `request` as is on a fresh connection to `addr` and reads one answer: the head, then the
/// body up to its `Content-Length` (or to the end of the connection). Every read waits at most
/// 10 s.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream.write_all(request).expect("write the request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk).expect("an answer");
        assert!(read > 0, "the connection closed without an answer: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let length =
        head.lines().find_map(|line| line.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = buf.split_off(head_end);
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    RawResponse { status, head, body: String::from_utf8_lossy(&body).into_owned() }
}

/// A request with `method`, `target`, the `Host` header `host` (none when empty), `headers` and
/// `body` (with its `Content-Length`), closing the connection after the answer.
pub fn raw_request(method: &str, target: &str, host: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\n");
    if !host.is_empty() {
        text.push_str(&format!("host: {host}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    text.push_str("connection: close\r\n\r\n");
    text.push_str(body);
    text.into_bytes()
}
