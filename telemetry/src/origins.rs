//! Origins and host names as `server.allowed_origins` and `server.allowed_hosts` write them and
//! browsers send them: parsing, normalizing, comparing, and the loopback rules. A leaf: the
//! settings validate with it and the [gate](crate::gate) enforces with it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use metamcp_telemetry_actors::ConfigError;

/// Longest accepted entry of `server.allowed_origins` or `server.allowed_hosts`, in bytes.
const MAX_ENTRY: usize = 256;
/// Most entries of `server.allowed_origins` or `server.allowed_hosts`.
pub const MAX_ENTRIES: usize = 64;

/// An origin as browsers send it: scheme, host (lower case, IPv6 in brackets) and port (the
/// scheme's default when none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedOrigin {
    https: bool,
    host: String,
    port: u16,
}

impl AllowedOrigin {
    /// Parses `scheme://host[:port]` (one trailing `/` allowed); `http` or `https` only.
    pub(crate) fn parse(text: &str) -> Result<Self, &'static str> {
        const FORM: &str = "an origin such as \"https://gateway.example.com\" or \"http://127.0.0.1:8000\"";
        let (scheme, rest) = text.trim().split_once("://").ok_or(FORM)?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(FORM);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest).ok_or(FORM)?;
        if host.is_empty() {
            return Err(FORM);
        }
        Ok(Self { https, host: normalized_host(host), port: port.unwrap_or(if https { 443 } else { 80 }) })
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        Self::parse(text).is_ok_and(|origin| origin == *self)
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// A name `server.allowed_hosts` allows in `Host`: any port, or only the one written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    pub(crate) fn parse(text: &str) -> Result<Self, &'static str> {
        const FORM: &str =
            "a host name or address, optionally with a port, such as \"gateway.example.com\" or \"10.0.0.5:8000\"";
        let (host, port) = split_host_port(text.trim()).ok_or(FORM)?;
        if host.is_empty() {
            return Err(FORM);
        }
        Ok(Self { host: normalized_host(host), port })
    }
}

/// Host and port of `authority` (`name`, `name:port`, `1.2.3.4:80`, `[::1]:80`); `None` when
/// it is malformed: characters no host name has, an empty or non-numeric port, user
/// information, a path.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.len() > MAX_ENTRY {
        return None;
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let host = &authority[..v6.len() + 2];
        match after {
            "" => (host, None),
            port => (host, Some(port.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if !host.starts_with('[') && !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return None;
    }
    let port = match port {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some((host, port))
}

/// `host` in lower case, without a trailing dot.
fn normalized_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Whether `host` (as in a `Host` header, without the port) names the loopback interface:
/// `localhost`, an address in `127.0.0.0/8`, `[::1]`, or an IPv4-mapped loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| IpAddr::V6(ip).to_canonical().is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the peer address `ip` is on the loopback interface, IPv4-mapped IPv6 addresses
/// (`::ffff:127.0.0.1`, what a listener on `[::]` sees of an IPv4 client) included.
pub fn is_loopback_peer(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Checks `server.allowed_origins`: each an `http://` or `https://` origin without a path.
pub fn validate_origins(key: &str, origins: &[String]) -> Result<(), ConfigError> {
    if origins.len() > MAX_ENTRIES {
        return Err(ConfigError::new(key, format!("{} origins", origins.len()), format!("at most {MAX_ENTRIES}")));
    }
    for origin in origins {
        AllowedOrigin::parse(origin).map_err(|allowed| ConfigError::new(key, format!("{origin:?}"), allowed))?;
    }
    Ok(())
}

/// Checks `server.allowed_hosts`: each a host name or address with an optional port.
pub fn validate_hosts(key: &str, hosts: &[String]) -> Result<(), ConfigError> {
    if hosts.len() > MAX_ENTRIES {
        return Err(ConfigError::new(key, format!("{} hosts", hosts.len()), format!("at most {MAX_ENTRIES}")));
    }
    for host in hosts {
        AllowedHost::parse(host).map_err(|allowed| ConfigError::new(key, format!("{host:?}"), allowed))?;
    }
    Ok(())
}

/// The origins a browser uses for pages served by a listener on `bound`.
pub(crate) fn own_origins(bound: SocketAddr) -> Vec<AllowedOrigin> {
    let port = bound.port();
    let http = |host: String| AllowedOrigin { https: false, host, port };
    let ip = bound.ip().to_canonical();
    let mut origins = Vec::new();
    if ip.is_loopback() || ip.is_unspecified() {
        origins.push(http("localhost".to_owned()));
        origins.push(http("127.0.0.1".to_owned()));
        origins.push(http("[::1]".to_owned()));
    }
    if !ip.is_unspecified() {
        let own = match ip {
            IpAddr::V4(v4) => http(v4.to_string()),
            IpAddr::V6(v6) => http(format!("[{v6}]")),
        };
        if !origins.contains(&own) {
            origins.push(own);
        }
    }
    origins
}

/// Whether the `Host` header value `value` names a loopback host or one of `extra`.
pub(crate) fn host_allowed(value: &[u8], extra: &[AllowedHost]) -> bool {
    let Some((host, port)) = std::str::from_utf8(value).ok().and_then(|text| split_host_port(text.trim())) else {
        return false;
    };
    is_loopback_host(host)
        || extra.iter().any(|allowed| {
            let name = host.strip_suffix('.').unwrap_or(host);
            allowed.host.eq_ignore_ascii_case(name) && allowed.port.is_none_or(|p| Some(p) == port)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_entries_are_validated() {
        assert!(validate_origins("k", &["https://a.example".to_owned(), "http://[::1]:8000".to_owned()]).is_ok());
        for bad in ["a.example", "ftp://a.example", "https://", "https://a.example/x", "https://a b", "https://a:x"] {
            let err = validate_origins("server.allowed_origins", &[bad.to_owned()]).unwrap_err();
            assert_eq!(err.key, "server.allowed_origins", "{bad}");
        }
        assert!(validate_hosts("k", &["a.example".to_owned(), "10.0.0.1:80".to_owned(), "[::1]".to_owned()]).is_ok());
        for bad in ["", "http://a", "a/b", "a:", "a b", "[zz]"] {
            let err = validate_hosts("server.allowed_hosts", &[bad.to_owned()]).unwrap_err();
            assert_eq!(err.key, "server.allowed_hosts", "{bad}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("h{i}")).collect();
        assert!(validate_hosts("k", &many).is_err());
    }

    #[test]
    fn loopback_peers_include_ipv4_mapped_addresses() {
        for peer in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback_peer(peer.parse().unwrap()), "{peer}");
        }
        for peer in ["10.0.0.1", "::ffff:10.0.0.1", "::2", "0.0.0.0"] {
            assert!(!is_loopback_peer(peer.parse().unwrap()), "{peer}");
        }
    }
}
