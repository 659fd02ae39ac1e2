//! The one outbound guard: every URL the service calls on someone's behalf
//! (a tool's endpoint today; MCP servers, webhooks and push endpoints as
//! they come) goes through it.
//!
//! - **Addresses.** No loopback, private, shared (CGNAT), link-local
//!   (cloud metadata lives there), multicast, broadcast, unspecified or
//!   reserved address, IPv4 or IPv6 (an IPv4-mapped IPv6 address is judged
//!   as its IPv4). A literal address is judged when the URL is checked; a
//!   name is resolved by the guard's own resolver, which refuses the name
//!   if any of its addresses is refused, and the connection is made only
//!   to the addresses it returned, so the check holds on connect (a name
//!   that resolves differently later, DNS rebinding, is judged again).
//! - **Scheme.** https, and http only where private URLs are allowed.
//! - **No proxy** from the environment (`HTTP_PROXY` must not get around
//!   the address rule), **no redirects**, and bodies read to a cap.
//!
//! `--allow-private-urls` lifts the address rule and allows http (tests,
//! private networks); the other rules stay.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::Url;

/// Why the guard refuses a URL or an address (said to whoever defined it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0:?} is not a valid absolute URL")]
    Invalid(String),
    #[error("only https URLs may be called (http needs --allow-private-urls)")]
    Scheme,
    #[error("a URL with a user name or password is not accepted; send credentials in headers")]
    Credentials,
    #[error("{0} is a {1} address, which the service does not call (--allow-private-urls allows it)")]
    Address(IpAddr, &'static str),
    #[error("{0} has no address")]
    NoAddress(String),
}

/// The class of an address the service does not call, if it is one.
pub fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_class(v4),
            None => v6_class(v6),
        },
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        // 100.64.0.0/10: carrier-grade NAT, and some clouds' metadata.
        Some("shared")
    } else if ip.is_link_local() {
        // 169.254.0.0/16, with 169.254.169.254 (cloud metadata).
        Some("link-local (metadata)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        // 240.0.0.0/4 and 192.0.0.0/24 (protocol assignments).
        Some("reserved")
    } else {
        None
    }
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        // fc00::/7: unique local, with fd00:ec2::254 (cloud metadata).
        Some("private")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local (metadata)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // 64:ff9b::/96 translates to IPv4: judged as that address.
        let [.., c, d] = ip.segments();
        v4_class(Ipv4Addr::new((c >> 8) as u8, c as u8, (d >> 8) as u8, d as u8))
    } else {
        None
    }
}

/// The guard, as the operator set it.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// `--allow-private-urls`: any address, and http.
    pub allow_private: bool,
}

impl Guard {
    /// Checks a URL before it is stored or called: its form, its scheme and,
    /// when its host is an address, that address. A name is judged when it
    /// resolves (`resolve_checked`, and the client's resolver on connect).
    pub fn check_url(&self, url: &str) -> Result<Url, Refused> {
        let parsed = Url::parse(url).map_err(|_| Refused::Invalid(url.to_owned()))?;
        // (The address first: the most telling reason.)
        match parsed.host() {
            None => return Err(Refused::Invalid(url.to_owned())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err(Refused::Scheme),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Refused::Credentials);
        }
        Ok(parsed)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        match refused_class(ip) {
            Some(class) if !self.allow_private => Err(Refused::Address(ip, class)),
            _ => Ok(()),
        }
    }

    /// Checks a URL and, if its host is a name, every address it resolves
    /// to now: at definition, a clear refusal for a name that points
    /// inside; at call time, a refusal before anything is sent (the
    /// client's resolver judges the addresses again on connect). A name
    /// that does not resolve now (or within 2 s: a resolver that does not
    /// answer delays nothing) is let through; a call to it then fails.
    pub async fn check_url_resolved(&self, url: &str) -> Result<Url, Refused> {
        let parsed = self.check_url(url)?;
        if let (Some(url::Host::Domain(host)), false) = (parsed.host(), self.allow_private) {
            let lookup = tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((host, 0))).await;
            if let Ok(Ok(addrs)) = lookup {
                checked_addrs(*self, host, addrs.collect())?;
            }
        }
        Ok(parsed)
    }

    /// The guard's HTTP client in reqwest 0.13 (the MCP SDK's), with the
    /// same rules as `client`.
    pub fn client_013(&self, connect_timeout: Duration) -> reqwest013::Client {
        reqwest013::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { guard: *self }))
            .no_proxy()
            .redirect(reqwest013::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .user_agent(concat!("convo/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with no TLS or proxy settings of its own builds")
    }

    /// An HTTP client that calls only what the guard allows: its resolver
    /// refuses names with a refused address, it takes no proxy from the
    /// environment, follows no redirect, and gives up on a connection
    /// after `connect_timeout`.
    pub fn client(&self, connect_timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { guard: *self }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .user_agent(concat!("convo/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with no TLS or proxy settings of its own builds")
    }
}

/// Resolves names for the guard's client, refusing any name that has a
/// refused address (every address is checked, not only the first).
struct GuardedResolver {
    guard: Guard,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl GuardedResolver {
    /// `host`'s addresses, if the guard allows every one.
    async fn lookup(guard: Guard, host: String) -> Result<std::vec::IntoIter<SocketAddr>, BoxError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
        Ok(checked_addrs(guard, &host, addrs)?.into_iter())
    }
}

// The same resolver for both reqwest versions (the provider's client is
// 0.12, the MCP SDK's 0.13).
impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = GuardedResolver::lookup(self.guard, name.as_str().to_owned());
        Box::pin(async move { Ok(Box::new(lookup.await?) as reqwest::dns::Addrs) })
    }
}

impl reqwest013::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest013::dns::Name) -> reqwest013::dns::Resolving {
        let lookup = GuardedResolver::lookup(self.guard, name.as_str().to_owned());
        Box::pin(async move { Ok(Box::new(lookup.await?) as reqwest013::dns::Addrs) })
    }
}

/// The addresses a name resolved to, if the guard allows every one.
fn checked_addrs(guard: Guard, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    if addrs.is_empty() {
        return Err(Refused::NoAddress(host.to_owned()));
    }
    for addr in &addrs {
        guard.check_ip(addr.ip())?;
    }
    Ok(addrs)
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the response body could not be read: {0}")]
    Read(#[from] reqwest::Error),
}

/// Reads a response's body up to `cap` bytes; a longer body is refused as
/// soon as it passes the cap (the rest is not read).
pub async fn read_capped(response: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body = BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The guard's refusal inside an error of its client, said plainly.
pub fn refusal_of(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.to_string());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: Guard = Guard { allow_private: false };
    const ALLOW: Guard = Guard { allow_private: true };

    #[test]
    fn every_inside_class_is_refused_and_public_addresses_pass() {
        for (ip, class) in [
            ("127.0.0.1", "loopback"),
            ("127.1.2.3", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("fd00:ec2::254", "private"),
            ("100.100.100.200", "shared"),
            ("169.254.169.254", "link-local (metadata)"),
            ("fe80::1", "link-local (metadata)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("240.0.0.1", "reserved"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (metadata)"),
            ("64:ff9b::a00:1", "private"),
        ] {
            assert_eq!(refused_class(ip.parse().unwrap()), Some(class), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert_eq!(refused_class(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn urls_are_judged_by_scheme_credentials_and_literal_address() {
        assert!(DENY.check_url("https://tools.example.com/run").is_ok());
        assert_eq!(DENY.check_url("http://tools.example.com/run"), Err(Refused::Scheme));
        assert_eq!(DENY.check_url("ftp://tools.example.com/"), Err(Refused::Scheme));
        assert_eq!(DENY.check_url("https://u:p@tools.example.com/"), Err(Refused::Credentials));
        assert!(matches!(DENY.check_url("not a url"), Err(Refused::Invalid(_))));
        // The URL parser's forms of 127.0.0.1 are all that address.
        for url in ["https://127.0.0.1/", "https://0x7f.1/", "https://2130706433/", "https://[::ffff:7f00:1]/"] {
            assert!(matches!(DENY.check_url(url), Err(Refused::Address(_, "loopback"))), "{url}");
        }
        assert!(matches!(DENY.check_url("https://169.254.169.254/latest"), Err(Refused::Address(..))));
        assert!(ALLOW.check_url("http://127.0.0.1:9/").is_ok());
        assert_eq!(ALLOW.check_url("ftp://127.0.0.1/"), Err(Refused::Scheme));
    }

    #[test]
    fn a_name_is_refused_if_any_of_its_addresses_is() {
        let public: SocketAddr = "93.184.216.34:443".parse().unwrap();
        let inside: SocketAddr = "10.1.2.3:443".parse().unwrap();
        assert_eq!(checked_addrs(DENY, "a", vec![public]), Ok(vec![public]));
        assert!(matches!(checked_addrs(DENY, "a", vec![public, inside]), Err(Refused::Address(_, "private"))));
        assert!(matches!(checked_addrs(DENY, "a", vec![]), Err(Refused::NoAddress(_))));
        assert_eq!(checked_addrs(ALLOW, "a", vec![inside]), Ok(vec![inside]));
    }

    #[tokio::test]
    async fn the_client_refuses_a_name_that_resolves_inside_on_connect() {
        // `localhost` resolves to loopback: the call fails in the resolver,
        // before any connection, and says why.
        let client = DENY.client(Duration::from_secs(2));
        let error = client.get("https://localhost:9/").send().await.unwrap_err();
        assert!(refusal_of(&error).is_some_and(|r| r.contains("loopback")), "{error:?}");
        assert!(matches!(DENY.check_url_resolved("https://localhost/").await, Err(Refused::Address(_, "loopback"))));
    }
}
