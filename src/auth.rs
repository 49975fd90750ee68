//! Credentials, shared by the MCP endpoints (their API keys) and the admin API (its token):
//! reading an `Authorization: Bearer` header, comparing secrets in constant time, hashing API
//! keys as they are stored, drawing random tokens, and the `WWW-Authenticate` challenge of a 401.
//!
//! Every secret comparison of the gateway goes through [`constant_time_eq`] (the `subtle`
//! crate), so neither an API key nor the admin token can be guessed byte by byte from how long
//! a refusal takes.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError as _};
use metamcp_telemetry::http::ApiError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equality of two secrets that takes the same time wherever the first difference is. Secrets of
/// different lengths are unequal (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The id of the candidate whose secret equals `given`. Every candidate is compared, so the
/// time taken does not tell which one matched.
pub fn find_match<'a, T>(given: &[u8], candidates: impl IntoIterator<Item = (T, &'a [u8])>) -> Option<T> {
    candidates
        .into_iter()
        .fold(None, |found, (id, known)| if constant_time_eq(known, given) { Some(id) } else { found })
}

/// Hex SHA-256 of an API key, as stored.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex of `bytes` random bytes from the operating system's generator.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // The OS generator failing is not recoverable in a meaningful way; mix time and fastrand.
        for byte in &mut buf {
            *byte = fastrand::u8(..);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer of `err`: a 401 carries the challenge `WWW-Authenticate: Bearer` (see [`Refused`]).
pub fn challenge<E: Refused + ?Sized>(err: &E) -> HttpResponse {
    err.response()
}

/// A refused request, as answered over HTTP.
pub trait Refused {
    /// The answer.
    fn response(&self) -> HttpResponse;
}

impl Refused for ApiError {
    /// The JSON error; a 401 carries the challenge `WWW-Authenticate: Bearer`.
    fn response(&self) -> HttpResponse {
        let mut response = self.error_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{self, HeaderMap, HeaderValue};
    use actix_web::http::StatusCode;
    use metamcp_telemetry::http::ApiError;

    use super::{bearer, challenge, constant_time_eq, find_match, hash_key, random_token};

    #[test]
    fn secrets_compare_in_constant_time() {
        assert!(constant_time_eq(b"same", b"same"), "equal");
        assert!(!constant_time_eq(b"same", b"sane"), "one byte differs");
        assert!(!constant_time_eq(b"same", b"Same"), "the first byte differs");
        assert!(!constant_time_eq(b"short", b"longer"), "different lengths");
        assert!(!constant_time_eq(b"prefix", b"prefix-and-more"), "a prefix is not equal");
        assert!(constant_time_eq(b"", b""), "two empty secrets are equal");
        assert!(!constant_time_eq(b"", b"x"), "empty against one byte");
        assert!(!constant_time_eq(b"x", b""), "one byte against empty");
    }

    #[test]
    fn every_candidate_is_compared_and_the_match_is_found() {
        let keys = [(1, &b"aa"[..]), (2, &b"bb"[..]), (3, &b"cc"[..])];
        assert_eq!(find_match(b"bb", keys), Some(2));
        assert_eq!(find_match(b"cc", keys), Some(3));
        assert_eq!(find_match(b"dd", keys), None);
        assert_eq!(find_match(b"", keys), None);
        assert_eq!(find_match::<i64>(b"aa", []), None);
    }

    #[test]
    fn keys_hash_and_tokens_are_random() {
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let token = random_token(16);
        assert_eq!(token.len(), 32);
        assert_ne!(token, random_token(16));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  k1 "));
        assert_eq!(bearer(&headers), Some("k1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn only_a_401_carries_the_challenge() {
        let unauthorized = challenge(&ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "no"));
        assert_eq!(
            unauthorized.headers().get(header::WWW_AUTHENTICATE).map(HeaderValue::as_bytes),
            Some(&b"Bearer"[..])
        );
        let forbidden = challenge(&ApiError::new(StatusCode::FORBIDDEN, "forbidden", "no"));
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
