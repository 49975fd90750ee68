//! The outbound policy: which addresses the gateway may open a connection to when it calls an
//! upstream MCP server, so that registering a URL cannot turn the gateway into a proxy towards
//! the cloud metadata service or link-local hosts (server-side request forgery).
//!
//! Refused by default: link-local addresses (`169.254.0.0/16`, `fe80::/10`) and the metadata
//! addresses outside them (`100.100.100.200`, `fd00:ec2::254`) — [`BUILTIN_DENY`]. Loopback and
//! private ranges stay allowed: upstreams live there. `gateway.upstream_deny_cidrs` refuses more
//! ranges; `gateway.upstream_allow_cidrs` admits ranges whatever the deny lists say.
//!
//! Precedence: an address inside any allow range is admitted; otherwise an address inside a
//! built-in or configured deny range is refused; every other address is admitted. IPv4-mapped
//! (`::ffff:169.254.169.254`) and NAT64 (`64:ff9b::a9fe:a9fe`) IPv6 addresses are judged as the
//! IPv4 address they carry as well as by themselves.
//!
//! The policy applies twice: to the addresses a URL resolves to when a server is registered or
//! refreshed ([`OutboundPolicy::check_url`], a 400 for the admin), and to every connection the
//! upstream client opens — names through [`PolicyResolver`], the client's DNS resolver, which
//! hands out only admitted addresses, and IP literals (which no resolver sees) through
//! [`OutboundPolicy::check_host`]. A name that resolved to an admitted address at registration
//! and to a refused one later is refused at connect time.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use metamcp_telemetry_actors::ConfigError;
use url::Url;

/// Ranges refused unless an allow range admits them: link-local (where cloud metadata services
/// answer, `169.254.169.254`) and the metadata addresses outside it (Alibaba Cloud's
/// `100.100.100.200`, AWS's IPv6 `fd00:ec2::254`).
pub const BUILTIN_DENY: [&str; 4] = ["169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"];

/// The configuration key of the extra deny ranges.
pub const DENY_KEY: &str = "gateway.upstream_deny_cidrs";
/// The configuration key of the allow ranges.
pub const ALLOW_KEY: &str = "gateway.upstream_allow_cidrs";

/// The NAT64 well-known prefix `64:ff9b::/96`, whose last 32 bits are an IPv4 address.
const NAT64_PREFIX: [u16; 6] = [0x64, 0xff9b, 0, 0, 0, 0];

/// Which addresses upstream connections may go to.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |nets: &[IpNet]| nets.iter().map(ToString::to_string).collect::<Vec<_>>();
        f.debug_struct("OutboundPolicy").field("allow", &show(&self.allow)).field("deny", &show(&self.deny)).finish()
    }
}

impl Default for OutboundPolicy {
    /// The built-in deny ranges, nothing else.
    fn default() -> Self {
        Self { allow: Vec::new(), deny: BUILTIN_DENY.iter().filter_map(|net| parse_cidr(net).ok()).collect() }
    }
}

/// An address the policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves to {address}, which the outbound policy refuses (link-local and cloud metadata addresses \
     are refused by default, more by {DENY_KEY}; {ALLOW_KEY} admits a range)"
)]
pub struct Refusal {
    /// The host of the URL, as written.
    pub host: String,
    /// The refused address.
    pub address: IpAddr,
}

/// A range that is neither a CIDR range nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is neither a CIDR range nor an address")]
pub struct CidrError {
    /// The range as written, trimmed.
    pub text: String,
}

/// `a.b.c.d/len`, `v6::/len` or a bare address (one host).
fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| CidrError { text: text.to_owned() })
}

fn parse_list(key: &str, ranges: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    ranges
        .iter()
        .map(|range| {
            parse_cidr(range).map_err(|err| {
                ConfigError::new(
                    key,
                    format!("{:?}", err.text),
                    "a list of CIDR ranges such as \"10.0.0.0/8\" or \"fd00::/8\", or addresses",
                )
            })
        })
        .collect()
}

/// The IPv4 address an IPv6 address carries (IPv4-mapped or NAT64), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = ip.segments();
    (segments[..6] == NAT64_PREFIX).then(|| {
        let [.., a, b] = segments;
        Ipv4Addr::from((u32::from(a) << 16) | u32::from(b))
    })
}

impl OutboundPolicy {
    /// The policy of the settings: the built-in deny ranges plus `deny`, and `allow`. The error
    /// names the key of the first range that does not parse.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, ConfigError> {
        let allow = parse_list(ALLOW_KEY, allow)?;
        let mut policy = Self::default();
        policy.deny.extend(parse_list(DENY_KEY, deny)?);
        policy.allow = allow;
        Ok(policy)
    }

    /// Whether a connection to `ip` is admitted.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let forms = || std::iter::once(ip).chain(embedded);
        let within = |nets: &[IpNet]| forms().any(|ip| nets.iter().any(|net| net.contains(&ip)));
        within(&self.allow) || !within(&self.deny)
    }

    /// Refuses a URL whose host is an IP literal the policy refuses; names are left to the
    /// resolver.
    pub fn check_host(&self, url: &Url) -> Result<(), Refusal> {
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if self.permits(address) {
            Ok(())
        } else {
            Err(Refusal { host: url.host_str().unwrap_or_default().to_owned(), address })
        }
    }

    /// Refuses a URL whose host is, or resolves to, an address the policy refuses (any one of
    /// them). A name that does not resolve within `timeout` passes: the call that follows fails
    /// to connect and says so.
    pub async fn check_url(&self, url: &Url, timeout: Duration) -> Result<(), Refusal> {
        self.check_host(url)?;
        let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
        let Ok(Ok(addresses)) = tokio::time::timeout(timeout, resolve(name.to_owned())).await else { return Ok(()) };
        match addresses.iter().find(|address| !self.permits(address.ip())) {
            Some(refused) => Err(Refusal { host: name.to_owned(), address: refused.ip() }),
            None => Ok(()),
        }
    }
}

/// The system resolver's addresses for `name`, on the blocking pool as reqwest's own resolver
/// does.
async fn resolve(name: String) -> std::io::Result<Vec<SocketAddr>> {
    tokio::task::spawn_blocking(move || (name.as_str(), 0).to_socket_addrs().map(Iterator::collect))
        .await
        .map_err(std::io::Error::other)?
}

/// The upstream client's DNS resolver: the system resolver's answer without the addresses the
/// policy refuses; a name with nothing left is a [`Refusal`].
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl PolicyResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self { policy }
    }
}

impl PolicyResolver {
    /// The admitted addresses of `name`, or the refusal.
    async fn admitted(
        policy: Arc<OutboundPolicy>,
        name: String,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved = resolve(name.clone()).await?;
        let refused = resolved.iter().find(|address| !policy.permits(address.ip())).map(SocketAddr::ip);
        let admitted: Vec<SocketAddr> = resolved.into_iter().filter(|address| policy.permits(address.ip())).collect();
        match (admitted.is_empty(), refused) {
            (true, Some(address)) => Err(Box::new(Refusal { host: name, address })),
            _ => Ok(admitted),
        }
    }
}

impl reqwest_upstream::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest_upstream::dns::Name) -> reqwest_upstream::dns::Resolving {
        let future = Self::admitted(self.policy.clone(), name.as_str().to_owned());
        Box::pin(
            async move { future.await.map(|admitted| Box::new(admitted.into_iter()) as reqwest_upstream::dns::Addrs) },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn link_local_and_metadata_addresses_are_refused_by_default() {
        let policy = OutboundPolicy::default();
        for refused in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::ffff:100.100.100.200",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused}");
        }
        for admitted in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "fd00::1",
            "8.8.8.8",
            "100.100.100.201",
            "::ffff:127.0.0.1",
        ] {
            assert!(policy.permits(ip(admitted)), "{admitted}");
        }
    }

    #[test]
    fn allow_ranges_win_over_every_deny_range() {
        let policy = OutboundPolicy::new(
            &["169.254.10.0/24".to_owned(), "127.0.0.5".to_owned()],
            &["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
        )
        .unwrap();
        assert!(policy.permits(ip("169.254.10.7")), "an allow range admits part of a built-in deny range");
        assert!(!policy.permits(ip("169.254.169.254")));
        assert!(!policy.permits(ip("127.0.0.1")), "a configured deny range");
        assert!(!policy.permits(ip("::ffff:127.0.0.1")), "mapped forms are judged as IPv4 too");
        assert!(!policy.permits(ip("::1")));
        assert!(policy.permits(ip("127.0.0.5")), "a bare address is one host");
        assert!(policy.permits(ip("10.0.0.1")));
    }

    #[test]
    fn a_range_that_does_not_parse_names_its_key() {
        let err = OutboundPolicy::new(&[], &["10.0.0.0/33".to_owned()]).unwrap_err();
        assert_eq!((err.key.as_str(), err.value.as_str()), (DENY_KEY, "\"10.0.0.0/33\""));
        let err = OutboundPolicy::new(&["example.com".to_owned()], &[]).unwrap_err();
        assert_eq!(err.key, ALLOW_KEY);
    }

    #[test]
    fn ip_literals_are_judged_in_every_spelling_the_url_parser_accepts() {
        let policy = OutboundPolicy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://2852039166/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fe80::1]:8080/mcp",
            "http://100.100.100.200/",
        ] {
            let refusal = policy.check_host(&Url::parse(url).unwrap()).unwrap_err();
            assert!(!policy.permits(refusal.address), "{url}");
        }
        assert!(policy.check_host(&Url::parse("http://127.0.0.1:9/mcp").unwrap()).is_ok());
        assert!(
            policy.check_host(&Url::parse("http://metadata.example/mcp").unwrap()).is_ok(),
            "names go to the resolver"
        );
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let deny_loopback = OutboundPolicy::new(&[], &["127.0.0.0/8".to_owned(), "::1/128".to_owned()]).unwrap();
        let url = Url::parse("http://localhost:9/mcp").unwrap();
        let refusal = deny_loopback.check_url(&url, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(refusal.host, "localhost");
        assert!(refusal.address.is_loopback(), "{refusal}");
        assert!(OutboundPolicy::default().check_url(&url, Duration::from_secs(5)).await.is_ok());
        let unknown = Url::parse("http://no-such-host.invalid/mcp").unwrap();
        assert!(deny_loopback.check_url(&unknown, Duration::from_secs(5)).await.is_ok(), "a failed lookup is not ours");
    }

    #[tokio::test]
    async fn the_resolver_hands_out_only_admitted_addresses() {
        use reqwest_upstream::dns::Resolve as _;
        let resolver = PolicyResolver::new(Arc::new(
            OutboundPolicy::new(&[], &["127.0.0.0/8".to_owned(), "::1/128".to_owned()]).unwrap(),
        ));
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addresses) => panic!("localhost resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(err) => err,
        };
        assert!(err.downcast_ref::<Refusal>().is_some(), "{err}");
        let open = PolicyResolver::new(Arc::new(OutboundPolicy::default()));
        let addresses: Vec<SocketAddr> = open.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback()), "{addresses:?}");
    }
}
